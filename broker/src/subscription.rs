//! A subscription: a cursor, its consumers, and the dispatcher task that
//! moves entries from the cursor to the consumers.
//!
//! Invariants:
//! - an entry is sent to at most one consumer at a time; it is pending at
//!   that consumer until acknowledged, or until it goes back to the replay
//!   set (negative ack, consumer gone, redelivery request);
//! - the replay set is dispatched before new entries, in position order;
//! - Key_Shared: all messages of one key go to the consumer that owns the
//!   key's hash, and a consumer that joined late receives entries newer than
//!   its join point only after everything up to that point is acknowledged.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use strata_managed_ledger::{ManagedCursor, ManagedLedger, ManagedLedgerError, Position};
use strata_proto::pulsar::command_subscribe::SubType;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::codec;
use crate::commands;
use crate::consumer::{Consumer, HASH_RANGE_SIZE};
use crate::error::{BrokerError, Result};
use crate::limits::{RateLimiter, TopicLimits};
use crate::stats::Meter;
use crate::topic::TopicShared;

/// Points per consumer on the Key_Shared auto-split hash ring.
const RING_POINTS: u32 = 100;
/// Most entries held back for replay before the dispatcher stops reading new ones.
const MAX_REPLAY: usize = 10_000;
/// Byte budget of one dispatcher read.
const READ_BYTES: usize = 4 << 20;

struct State {
    sub_type: SubType,
    /// In connection order (Failover: the first is active on non-partitioned topics).
    consumers: Vec<Arc<Consumer>>,
    replay: BTreeSet<Position>,
    redeliveries: HashMap<Position, u32>,
    round_robin: usize,
    active: Option<u64>,
    ring: Vec<(u32, usize)>,
    last_dispatched: Option<Position>,
}

pub struct Subscription {
    pub name: String,
    pub durable: bool,
    pub cursor: Arc<ManagedCursor>,
    ml: Arc<ManagedLedger>,
    /// Partition index of the topic (-1: not a partition).
    partition: i32,
    state: Mutex<State>,
    wake: Notify,
    cancel: CancellationToken,
    batch_entries: usize,
    /// Messages and bytes dispatched (stats).
    pub out: Meter,
    /// Entries put back for redelivery (stats).
    pub redelivered: Meter,
    /// The topic's dispatch meter and rate, and its limits.
    topic: Arc<TopicShared>,
    /// This subscription's own dispatch rate.
    rate: RateLimiter,
    /// Shared / Key_Shared: unacknowledged messages over all consumers
    /// before dispatch stops (0: no limit); it resumes at half.
    max_unacked: AtomicU32,
    unacked_blocked: AtomicBool,
}

impl Subscription {
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        name: String,
        durable: bool,
        cursor: Arc<ManagedCursor>,
        ml: Arc<ManagedLedger>,
        partition: i32,
        sub_type: SubType,
        batch_entries: usize,
        topic: Arc<TopicShared>,
    ) -> Arc<Subscription> {
        let limits = topic.limits();
        let sub = Arc::new(Subscription {
            name,
            durable,
            cursor,
            ml,
            partition,
            state: Mutex::new(State {
                sub_type,
                consumers: Vec::new(),
                replay: BTreeSet::new(),
                redeliveries: HashMap::new(),
                round_robin: 0,
                active: None,
                ring: Vec::new(),
                last_dispatched: None,
            }),
            wake: Notify::new(),
            cancel: CancellationToken::new(),
            batch_entries: batch_entries.max(1),
            out: Meter::new(),
            redelivered: Meter::new(),
            rate: RateLimiter::new(limits.subscription_dispatch_rate),
            max_unacked: AtomicU32::new(limits.max_unacked_per_subscription),
            unacked_blocked: AtomicBool::new(false),
            topic,
        });
        tokio::spawn(sub.clone().run());
        sub
    }

    pub fn sub_type(&self) -> SubType {
        self.state.lock().sub_type
    }

    pub fn consumers(&self) -> Vec<Arc<Consumer>> {
        self.state.lock().consumers.clone()
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Adds a consumer, enforcing the subscription type's rules.
    pub fn add_consumer(&self, consumer: Arc<Consumer>) -> Result<()> {
        let mut st = self.state.lock();
        if st.consumers.is_empty() {
            st.sub_type = consumer.sub_type;
        } else if st.sub_type != consumer.sub_type {
            return Err(BrokerError::ConsumerBusy(format!(
                "subscription {} is {:?}; a {:?} consumer cannot join",
                self.name, st.sub_type, consumer.sub_type
            )));
        }
        match st.sub_type {
            SubType::Exclusive if !st.consumers.is_empty() => {
                return Err(BrokerError::ConsumerBusy(format!(
                    "exclusive consumer is already connected to subscription {}",
                    self.name
                )));
            }
            SubType::KeyShared => {
                if let Some(ranges) = &consumer.sticky_ranges {
                    for c in &st.consumers {
                        if let Some(other) = &c.sticky_ranges
                            && ranges
                                .iter()
                                .any(|(lo, hi)| other.iter().any(|(a, b)| lo <= b && a <= hi))
                        {
                            return Err(BrokerError::ConsumerAssign(format!(
                                "hash ranges of consumer {} overlap those of {}",
                                consumer.name, c.name
                            )));
                        }
                    }
                }
                consumer.set_joined_at(if st.consumers.is_empty() {
                    None
                } else {
                    st.last_dispatched
                });
            }
            _ => {}
        }
        st.consumers.push(consumer);
        self.rebuild(&mut st);
        drop(st);
        self.wake();
        Ok(())
    }

    /// Removes a consumer; what it held unacknowledged is redelivered.
    pub fn remove_consumer(&self, consumer_id: u64, conn_id: u64) -> Option<Arc<Consumer>> {
        let mut st = self.state.lock();
        let i = st
            .consumers
            .iter()
            .position(|c| c.consumer_id == consumer_id && c.conn.id == conn_id)?;
        let c = st.consumers.remove(i);
        let pending = c.take_pending(None);
        self.to_replay(&mut st, pending);
        self.rebuild(&mut st);
        drop(st);
        self.wake();
        Some(c)
    }

    /// Removes every consumer, telling each client to re-subscribe (seek).
    pub fn disconnect_all(&self) {
        let consumers = {
            let mut st = self.state.lock();
            let cs = std::mem::take(&mut st.consumers);
            st.replay.clear();
            st.redeliveries.clear();
            st.last_dispatched = None;
            st.active = None;
            st.ring.clear();
            cs
        };
        for c in consumers {
            c.take_pending(None);
            c.conn.post(commands::close_consumer(c.consumer_id));
        }
    }

    /// Puts the topic's new limits in force on this subscription and its
    /// consumers.
    pub fn apply_limits(&self, limits: &TopicLimits) {
        self.rate.set(limits.subscription_dispatch_rate);
        self.max_unacked
            .store(limits.max_unacked_per_subscription, Ordering::Release);
        for c in self.consumers() {
            c.set_max_unacked(limits.max_unacked_per_consumer);
        }
        self.wake();
    }

    /// Whether dispatch stops for the subscription's unacknowledged limit
    /// (Shared / Key_Shared): on at the limit, off again at half of it.
    pub fn is_blocked_on_unacked(&self) -> bool {
        let max = self.max_unacked.load(Ordering::Acquire);
        let (limited, total) = {
            let st = self.state.lock();
            let limited = matches!(st.sub_type, SubType::Shared | SubType::KeyShared);
            let total: i64 = st.consumers.iter().map(|c| c.unacked_messages()).sum();
            (limited, total)
        };
        if max == 0 || !limited {
            self.unacked_blocked.store(false, Ordering::Release);
            return false;
        }
        let was = self.unacked_blocked.load(Ordering::Acquire);
        let now = if was {
            total > (max / 2) as i64
        } else {
            total >= max as i64
        };
        self.unacked_blocked.store(now, Ordering::Release);
        now
    }

    pub fn has_consumers(&self) -> bool {
        !self.state.lock().consumers.is_empty()
    }

    /// Sends entries the consumer holds (or all of them) again.
    pub fn redeliver(&self, consumer: &Consumer, only: Option<&[Position]>) {
        let taken = consumer.take_pending(only);
        if taken.is_empty() {
            return;
        }
        let mut st = self.state.lock();
        self.to_replay(&mut st, taken);
        drop(st);
        self.wake();
    }

    fn to_replay(&self, st: &mut State, positions: Vec<Position>) {
        self.redelivered.record(positions.len() as u64, 0);
        for p in positions {
            *st.redeliveries.entry(p).or_insert(0) += 1;
            st.replay.insert(p);
        }
    }

    /// Individual acknowledgements from `consumer`.
    pub fn ack(&self, consumer: &Consumer, positions: &[Position]) {
        self.cursor.ack(positions);
        self.forget(positions);
        if consumer.on_acked(positions) {
            self.wake();
        }
        self.after_ack();
    }

    /// Batch-index acknowledgement: `ack_set` holds the still-unacked bits.
    pub fn ack_batch_index(&self, consumer: &Consumer, pos: Position, ack_set: &[i64], size: u32) {
        self.cursor.ack_batch_indexes(pos, ack_set, size);
        if self.cursor.is_acked(pos) {
            self.forget(&[pos]);
            if consumer.on_acked(&[pos]) {
                self.wake();
            }
        }
        self.after_ack();
    }

    /// Cumulative acknowledgement up to and including `pos`.
    pub fn ack_cumulative(&self, consumer: &Consumer, pos: Position) {
        self.cursor.ack_cumulative(pos);
        self.forget_through(pos);
        if consumer.on_acked_up_to(pos) {
            self.wake();
        }
        self.after_ack();
    }

    /// Drops what is pending redelivery up to and including `pos`.
    fn forget_through(&self, pos: Position) {
        let mut st = self.state.lock();
        let rest = st.replay.split_off(&Position::new(
            pos.ledger_id,
            pos.entry_id.saturating_add(1),
        ));
        st.replay = rest;
        st.redeliveries.retain(|p, _| *p > pos);
    }

    fn forget(&self, positions: &[Position]) {
        let mut st = self.state.lock();
        for p in positions {
            st.replay.remove(p);
            st.redeliveries.remove(p);
        }
    }

    fn after_ack(&self) {
        // Key_Shared consumers waiting for the mark-delete position to pass
        // their join point may be able to receive now; a subscription held
        // on its unacked limit may resume.
        if self.state.lock().sub_type == SubType::KeyShared
            || self.unacked_blocked.load(Ordering::Acquire)
        {
            self.wake();
        }
    }

    /// Acknowledges entries on behalf of an admin operation (skip, expire).
    /// Entries a consumer holds stay pending at it; its later ack is a no-op.
    pub fn admin_ack(&self, positions: &[Position]) {
        if positions.is_empty() {
            return;
        }
        self.cursor.ack(positions);
        self.forget(positions);
        self.wake();
    }

    /// Acknowledges everything up to and including `pos` for an admin
    /// operation (skip all, expire).
    pub fn admin_ack_through(&self, pos: Position) {
        self.cursor.ack_cumulative(pos);
        self.forget_through(pos);
        self.wake();
    }

    /// Moves the cursor (SEEK / reset): consumers are disconnected and will
    /// re-subscribe from the new position.
    pub fn reset(&self, pos: Position) {
        self.disconnect_all();
        self.cursor.reset(pos);
        self.wake();
    }

    pub fn close(&self) {
        self.cancel.cancel();
    }

    fn rebuild(&self, st: &mut State) {
        // Failover: the active consumer. On a partition, consumers sorted by
        // priority and name take partitions round robin; otherwise the
        // first connected consumer is active.
        if st.sub_type == SubType::Failover {
            let active = if st.consumers.is_empty() {
                None
            } else if self.partition >= 0 {
                let mut sorted: Vec<&Arc<Consumer>> = st.consumers.iter().collect();
                sorted.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name)));
                Some(sorted[self.partition as usize % sorted.len()].consumer_id)
            } else {
                let best = st.consumers.iter().map(|c| c.priority).min().unwrap_or(0);
                st.consumers
                    .iter()
                    .find(|c| c.priority == best)
                    .map(|c| c.consumer_id)
            };
            if active != st.active {
                // Whatever the old active consumer held goes to the new one.
                if let Some(old) = st.active
                    && let Some(c) = st.consumers.iter().find(|c| c.consumer_id == old)
                {
                    let pending = c.take_pending(None);
                    self.to_replay(st, pending);
                }
                st.active = active;
            }
            for c in &st.consumers {
                c.conn.post(commands::active_consumer_change(
                    c.consumer_id,
                    Some(c.consumer_id) == st.active,
                ));
            }
        }
        if st.sub_type == SubType::KeyShared {
            let mut ring = Vec::new();
            for (i, c) in st.consumers.iter().enumerate() {
                if c.sticky_ranges.is_some() {
                    continue;
                }
                for k in 0..RING_POINTS {
                    let point = strata_proto::crc::crc32c(
                        format!("{}#{}#{k}", c.name, c.consumer_id).as_bytes(),
                    ) % HASH_RANGE_SIZE;
                    ring.push((point, i));
                }
            }
            ring.sort_unstable();
            st.ring = ring;
        }
    }

    /// The dispatcher task.
    async fn run(self: Arc<Self>) {
        let mut confirmed = self.ml.subscribe_confirmed();
        // Pause after a failed round: 500 ms, doubling up to 10 s while the
        // failure lasts (a corrupt cold block, an unreachable store).
        let mut pause = std::time::Duration::from_millis(500);
        loop {
            let outcome = match self.dispatch_round().await {
                Ok(o) => {
                    pause = std::time::Duration::from_millis(500);
                    o
                }
                Err(e) => {
                    warn!(subscription = %self.name, topic = %self.ml.name(), error = %e, retry_in = ?pause, "dispatch failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.cancel.cancelled() => return,
                    }
                    pause = (pause * 2).min(std::time::Duration::from_secs(10));
                    continue;
                }
            };
            match outcome {
                Round::More => tokio::task::yield_now().await,
                Round::WaitEntries => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        r = confirmed.changed() => if r.is_err() { return },
                        _ = self.cancel.cancelled() => return,
                    }
                }
                Round::WaitConsumers => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = self.cancel.cancelled() => return,
                    }
                }
                Round::Throttled(pause) => {
                    self.topic.metrics.dispatch_throttled.inc();
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.cancel.cancelled() => return,
                    }
                }
            }
        }
    }

    async fn dispatch_round(&self) -> Result<Round> {
        let (permits, replay) = {
            let st = self.state.lock();
            let permits: i64 = st
                .consumers
                .iter()
                .filter(|c| c.available())
                .map(|c| c.permits())
                .sum();
            let replay: Vec<Position> =
                st.replay.iter().take(self.batch_entries).copied().collect();
            (permits, replay)
        };
        if permits <= 0 || self.is_blocked_on_unacked() {
            return Ok(Round::WaitConsumers);
        }
        // Dispatch rates (the topic's, the subscription's): wait out a debt.
        let pause = self.topic.dispatch_rate.delay().max(self.rate.delay());
        if !pause.is_zero() {
            return Ok(Round::Throttled(pause));
        }
        let mut held: HashSet<u64> = HashSet::new();
        let mut sent_any = false;
        // Once no consumer can take an entry, nothing after it goes out in
        // this round: a FLOW that arrives meanwhile must not let a later
        // entry overtake the held one (Exclusive and Failover keep order).
        let mut blocked = false;
        if !replay.is_empty() {
            for pos in replay {
                if self.cursor.is_acked(pos) {
                    self.forget(&[pos]);
                    continue;
                }
                let entry = match self.ml.read_entry(pos).await {
                    Ok(e) => e,
                    // Trimmed away: nothing left to redeliver.
                    Err(e @ ManagedLedgerError::NoSuchEntry(_)) => {
                        debug!(position = %pos, error = %e, "replay entry gone; dropped");
                        self.forget(&[pos]);
                        continue;
                    }
                    // Unreadable for now (e.g. the cold tier failed): keep it
                    // for redelivery and retry the round after a pause.
                    Err(e) => return Err(e.into()),
                };
                let info = EntryInfo::of(&entry.data);
                match self.pick(pos, &info, &held) {
                    Pick::To(c) => {
                        self.state.lock().replay.remove(&pos);
                        self.send(&c, pos, entry.data, info.messages).await;
                        sent_any = true;
                    }
                    Pick::Hold(Some(id)) => {
                        held.insert(id);
                    }
                    Pick::Hold(None) => {
                        blocked = true;
                        break;
                    }
                }
            }
            if sent_any {
                return Ok(Round::More);
            }
            if blocked || self.state.lock().replay.len() >= MAX_REPLAY {
                return Ok(Round::WaitConsumers);
            }
        }
        let allowed = self
            .topic
            .dispatch_rate
            .available_msgs()
            .min(self.rate.available_msgs());
        let n = (permits as usize)
            .min(self.batch_entries)
            .min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let entries = self.cursor.read_entries(n, READ_BYTES).await?;
        if entries.is_empty() {
            return Ok(if held.is_empty() {
                Round::WaitEntries
            } else {
                Round::WaitConsumers
            });
        }
        for entry in entries {
            let pos = entry.position;
            {
                let mut st = self.state.lock();
                st.last_dispatched = Some(st.last_dispatched.map_or(pos, |p| p.max(pos)));
            }
            if blocked {
                self.state.lock().replay.insert(pos);
                continue;
            }
            let info = EntryInfo::of(&entry.data);
            match self.pick(pos, &info, &held) {
                Pick::To(c) => self.send(&c, pos, entry.data, info.messages).await,
                Pick::Hold(target) => {
                    match target {
                        Some(id) => {
                            held.insert(id);
                        }
                        None => blocked = true,
                    }
                    self.state.lock().replay.insert(pos);
                }
            }
        }
        Ok(Round::More)
    }

    /// Chooses the consumer for an entry.
    fn pick(&self, pos: Position, info: &EntryInfo, held: &HashSet<u64>) -> Pick {
        let mut st = self.state.lock();
        if st.consumers.is_empty() {
            return Pick::Hold(None);
        }
        match st.sub_type {
            SubType::Exclusive => {
                let c = &st.consumers[0];
                if c.available() {
                    Pick::To(c.clone())
                } else {
                    Pick::Hold(None)
                }
            }
            SubType::Failover => match st
                .consumers
                .iter()
                .find(|c| Some(c.consumer_id) == st.active)
            {
                Some(c) if c.available() => Pick::To(c.clone()),
                _ => Pick::Hold(None),
            },
            SubType::Shared => {
                let n = st.consumers.len();
                for k in 0..n {
                    let i = (st.round_robin + k) % n;
                    if st.consumers[i].available() {
                        st.round_robin = (i + 1) % n;
                        return Pick::To(st.consumers[i].clone());
                    }
                }
                Pick::Hold(None)
            }
            SubType::KeyShared => {
                let hash = info.key_hash;
                let owner = st
                    .consumers
                    .iter()
                    .find(|c| c.covers(hash))
                    .cloned()
                    .or_else(|| {
                        if st.ring.is_empty() {
                            return None;
                        }
                        let i = st.ring.partition_point(|(p, _)| *p < hash);
                        let (_, ci) = st.ring[i % st.ring.len()];
                        st.consumers.get(ci).cloned()
                    });
                let Some(c) = owner else {
                    return Pick::Hold(None);
                };
                if held.contains(&c.consumer_id)
                    || !c.available()
                    || !c.may_receive(pos, self.cursor.mark_delete_position())
                {
                    return Pick::Hold(Some(c.consumer_id));
                }
                Pick::To(c)
            }
        }
    }

    async fn send(&self, c: &Arc<Consumer>, pos: Position, data: Bytes, messages: u32) {
        let redelivery_count = self
            .state
            .lock()
            .redeliveries
            .get(&pos)
            .copied()
            .unwrap_or(0);
        let ack_set = self.cursor.batch_ack_set(pos).unwrap_or_default();
        c.on_sent(pos, messages);
        // Stats count the message as produced (without broker-entry metadata).
        let message = codec::split_entry(&data).1;
        for m in [&c.out, &self.out, &self.topic.out] {
            m.record(messages as u64, message.len() as u64);
        }
        self.topic
            .dispatch_rate
            .consume(messages as u64, message.len() as u64);
        self.rate.consume(messages as u64, message.len() as u64);
        let cmd = commands::message(
            c.consumer_id,
            commands::message_id(pos.ledger_id, pos.entry_id, self.partition, -1),
            redelivery_count,
            ack_set,
        );
        let body = if c.conn.broker_entry_metadata {
            data
        } else {
            message
        };
        let header = codec::encode_command_with_body(&cmd, body.len());
        c.conn.send_message(header, body).await;
    }
}

enum Round {
    More,
    WaitEntries,
    WaitConsumers,
    /// A dispatch rate is used up for this long.
    Throttled(Duration),
}

enum Pick {
    To(Arc<Consumer>),
    /// Not now; `Some(id)` names the consumer it waits for (Key_Shared),
    /// whose later entries must wait too.
    Hold(Option<u64>),
}

/// What dispatch needs of an entry's metadata, decoded once per entry.
struct EntryInfo {
    /// Messages in the entry (flow permits it uses).
    messages: u32,
    /// Key_Shared hash: of the ordering key, else of the partition key.
    key_hash: u32,
}

impl EntryInfo {
    fn of(data: &Bytes) -> EntryInfo {
        let Ok(md) = codec::entry_metadata(data) else {
            return EntryInfo {
                messages: 1,
                key_hash: 0,
            };
        };
        let key_hash = if let Some(k) = md.ordering_key.as_ref().filter(|k| !k.is_empty()) {
            Consumer::key_hash(k)
        } else if let Some(k) = md.partition_key.as_ref() {
            Consumer::key_hash(k.as_bytes())
        } else {
            0
        };
        EntryInfo {
            messages: md.num_messages_in_batch.unwrap_or(1).max(1) as u32,
            key_hash,
        }
    }
}
