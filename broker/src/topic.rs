//! A loaded topic: its managed ledger, producers and subscriptions.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use strata_common::names::TopicName;
use strata_managed_ledger::{AddFuture, InitialPosition, ManagedLedger, Position};
use strata_proto::pulsar::{BrokerEntryMetadata, ProducerAccessMode, command_subscribe::SubType};
use tokio::sync::oneshot;
use tracing::info;

use crate::codec;
use crate::commands;
use crate::error::{BrokerError, Result};
use crate::limits::{self, QuotaBlock, RateLimiter, TopicLimits};
use crate::metrics::BrokerMetrics;
use crate::outbound::ConnHandle;
use crate::stats::{Meter, now_ms};
use crate::subscription::Subscription;

/// A producer attached to the topic.
#[derive(Clone)]
pub struct ProducerEntry {
    pub producer_id: u64,
    pub name: String,
    pub conn: Arc<ConnHandle>,
    pub mode: ProducerAccessMode,
}

/// What the stats know of one producer.
#[derive(Debug, Default)]
pub struct PublisherStats {
    /// Messages and bytes it published.
    pub meter: Meter,
    /// When it was admitted, ms since the Unix epoch.
    pub connected_since_ms: u64,
}

/// A producer admitted to the topic, with its counters.
#[derive(Clone)]
pub struct AttachedProducer {
    pub entry: ProducerEntry,
    pub stats: Arc<PublisherStats>,
}

impl AttachedProducer {
    fn new(entry: ProducerEntry) -> Self {
        AttachedProducer {
            entry,
            stats: Arc::new(PublisherStats {
                meter: Meter::new(),
                connected_since_ms: now_ms(),
            }),
        }
    }
}

struct Waiter {
    producer: ProducerEntry,
    ready: oneshot::Sender<u64>,
}

struct State {
    producers: HashMap<(u64, u64), AttachedProducer>,
    /// WaitForExclusive producers queued for the topic.
    waiting: VecDeque<Waiter>,
    subscriptions: HashMap<String, Arc<Subscription>>,
    /// Bumped each time an exclusive producer takes the topic.
    epoch: u64,
}

/// What adding a producer gave.
pub enum ProducerAdmission {
    Ready {
        epoch: u64,
    },
    /// WaitForExclusive: resolves with the epoch once the producer owns the topic.
    Waiting(oneshot::Receiver<u64>),
}

/// What a topic shares with its subscriptions' dispatchers.
pub struct TopicShared {
    /// Messages and bytes dispatched to its subscriptions (stats); shared
    /// so the topic's totals outlive a deleted subscription.
    pub out: Meter,
    /// The topic's dispatch rate, over all its subscriptions.
    pub dispatch_rate: RateLimiter,
    limits: parking_lot::RwLock<Arc<TopicLimits>>,
    pub metrics: Arc<BrokerMetrics>,
}

impl TopicShared {
    pub fn new(limits: Arc<TopicLimits>, metrics: Arc<BrokerMetrics>) -> TopicShared {
        let dispatch_rate = RateLimiter::new(limits.dispatch_rate);
        TopicShared {
            out: Meter::new(),
            dispatch_rate,
            limits: parking_lot::RwLock::new(limits),
            metrics,
        }
    }

    /// The limits in force now.
    pub fn limits(&self) -> Arc<TopicLimits> {
        self.limits.read().clone()
    }
}

pub struct Topic {
    pub name: TopicName,
    pub ml: Arc<ManagedLedger>,
    state: Mutex<State>,
    /// Serializes publishes so broker-entry indexes follow the log order;
    /// holds the index of the next message.
    publish: tokio::sync::Mutex<u64>,
    batch_entries: usize,
    /// Messages and bytes published to the topic (stats).
    pub msg_in: Meter,
    /// Dispatch meter, rate and limits, shared with the subscriptions.
    pub shared: Arc<TopicShared>,
    /// The namespace's publish rate for this topic.
    pub publish_rate: RateLimiter,
    /// Set while a quota blocks the topic's producers.
    quota_block: Mutex<Option<QuotaBlock>>,
    /// Entries added since the topic was loaded (internal stats).
    pub entries_added: AtomicU64,
    /// Serializes admin changes of subscriptions (create, delete), so that
    /// two concurrent creates of one name give one success and one conflict.
    pub admin_lock: tokio::sync::Mutex<()>,
}

impl Topic {
    /// Wraps an opened managed ledger; durable subscriptions found on it are restored.
    pub async fn load(
        name: TopicName,
        ml: Arc<ManagedLedger>,
        batch_entries: usize,
        shared: Arc<TopicShared>,
    ) -> Result<Arc<Topic>> {
        // The next broker index continues from the last entry's.
        let mut next_index = 0;
        if let Some(last) = ml.last_confirmed()
            && let Ok(entry) = ml.read_entry(last).await
            && let Some(bem) = codec::entry_broker_metadata(&entry.data)
            && let Some(i) = bem.index
        {
            next_index = i + 1;
        }
        let partition = name.partition().map(|p| p as i32).unwrap_or(-1);
        let mut subscriptions = HashMap::new();
        for cursor in ml.cursors() {
            if cursor.is_durable() {
                let sub = Subscription::start(
                    cursor.name().to_string(),
                    true,
                    cursor.clone(),
                    ml.clone(),
                    partition,
                    SubType::Exclusive,
                    batch_entries,
                    shared.clone(),
                );
                subscriptions.insert(cursor.name().to_string(), sub);
            }
        }
        info!(topic = %name, subscriptions = subscriptions.len(), "topic loaded");
        Ok(Arc::new(Topic {
            name,
            ml,
            state: Mutex::new(State {
                producers: HashMap::new(),
                waiting: VecDeque::new(),
                subscriptions,
                epoch: 0,
            }),
            publish: tokio::sync::Mutex::new(next_index),
            batch_entries,
            msg_in: Meter::new(),
            publish_rate: RateLimiter::new(shared.limits().publish_rate),
            shared,
            quota_block: Mutex::new(None),
            entries_added: AtomicU64::new(0),
            admin_lock: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn partition(&self) -> i32 {
        self.name.partition().map(|p| p as i32).unwrap_or(-1)
    }

    /// Admits a producer according to its access mode.
    pub fn add_producer(&self, p: ProducerEntry) -> Result<ProducerAdmission> {
        let mut st = self.state.lock();
        let key = (p.conn.id, p.producer_id);
        if st.producers.values().any(|e| e.entry.name == p.name) {
            return Err(BrokerError::ProducerBusy(format!(
                "producer named {} is already connected to {}",
                p.name, self.name
            )));
        }
        let max = self.limits().max_producers;
        if max > 0 && st.producers.len() >= max as usize {
            self.shared.metrics.limit_rejections.inc();
            return Err(BrokerError::ProducerBusy(limits::over(
                "producers",
                max,
                &self.name,
            )));
        }
        let exclusive_held = st
            .producers
            .values()
            .any(|e| e.entry.mode != ProducerAccessMode::Shared);
        match p.mode {
            ProducerAccessMode::Shared => {
                if exclusive_held {
                    return Err(BrokerError::ProducerBusy(format!(
                        "{} has an exclusive producer",
                        self.name
                    )));
                }
            }
            ProducerAccessMode::Exclusive => {
                if !st.producers.is_empty() {
                    return Err(BrokerError::ProducerBusy(format!(
                        "{} already has producers; an exclusive one cannot join",
                        self.name
                    )));
                }
                st.epoch += 1;
            }
            ProducerAccessMode::ExclusiveWithFencing => {
                for (_, old) in st.producers.drain() {
                    old.entry
                        .conn
                        .post(commands::close_producer(old.entry.producer_id));
                }
                st.epoch += 1;
            }
            ProducerAccessMode::WaitForExclusive => {
                if !st.producers.is_empty() {
                    let (tx, rx) = oneshot::channel();
                    st.waiting.push_back(Waiter {
                        producer: p,
                        ready: tx,
                    });
                    return Ok(ProducerAdmission::Waiting(rx));
                }
                st.epoch += 1;
            }
        }
        st.producers.insert(key, AttachedProducer::new(p));
        Ok(ProducerAdmission::Ready { epoch: st.epoch })
    }

    pub fn remove_producer(&self, conn_id: u64, producer_id: u64) {
        let mut st = self.state.lock();
        st.waiting
            .retain(|w| !(w.producer.conn.id == conn_id && w.producer.producer_id == producer_id));
        if st.producers.remove(&(conn_id, producer_id)).is_some() && st.producers.is_empty() {
            // The next WaitForExclusive producer whose client is still waiting takes over.
            while let Some(w) = st.waiting.pop_front() {
                st.epoch += 1;
                let epoch = st.epoch;
                let key = (w.producer.conn.id, w.producer.producer_id);
                if w.ready.send(epoch).is_ok() {
                    st.producers.insert(key, AttachedProducer::new(w.producer));
                    break;
                }
            }
        }
    }

    /// The counters of an attached producer (`None`: not, or no longer, attached).
    pub fn publisher(&self, conn_id: u64, producer_id: u64) -> Option<Arc<PublisherStats>> {
        self.state
            .lock()
            .producers
            .get(&(conn_id, producer_id))
            .map(|p| p.stats.clone())
    }

    /// The limits in force now.
    pub fn limits(&self) -> Arc<TopicLimits> {
        self.shared.limits()
    }

    /// Puts new limits in force: rates change at once, and counts over a
    /// new maximum refuse newcomers (nobody connected is dropped).
    pub fn set_limits(&self, limits: Arc<TopicLimits>) {
        self.publish_rate.set(limits.publish_rate);
        self.shared.dispatch_rate.set(limits.dispatch_rate);
        *self.shared.limits.write() = limits.clone();
        for s in self.subscriptions() {
            s.apply_limits(&limits);
        }
    }

    /// Refuses a new subscription past the topic's maximum.
    fn check_subscription_limit(&self) -> Result<()> {
        let max = self.limits().max_subscriptions;
        if max > 0 && self.state.lock().subscriptions.len() >= max as usize {
            self.shared.metrics.limit_rejections.inc();
            return Err(BrokerError::NotAllowed(limits::over(
                "subscriptions",
                max,
                &self.name,
            )));
        }
        Ok(())
    }

    /// Refuses a consumer past the topic's maximum, or past the maximum of
    /// its subscription `sub`.
    pub fn check_consumer_limit(&self, sub: &Subscription) -> Result<()> {
        let limits = self.limits();
        let on_topic: usize = self
            .subscriptions()
            .iter()
            .map(|s| s.consumers().len())
            .sum();
        let (max, what, count) =
            if limits.max_consumers > 0 && on_topic >= limits.max_consumers as usize {
                (limits.max_consumers, "consumers", on_topic)
            } else if limits.max_consumers_per_subscription > 0
                && sub.consumers().len() >= limits.max_consumers_per_subscription as usize
            {
                (
                    limits.max_consumers_per_subscription,
                    "consumers on subscription",
                    sub.consumers().len(),
                )
            } else {
                return Ok(());
            };
        debug_assert!(count >= max as usize);
        self.shared.metrics.limit_rejections.inc();
        Err(BrokerError::ConsumerBusy(limits::over(
            what, max, &self.name,
        )))
    }

    /// The quota block in force, if any.
    pub fn quota_block(&self) -> Option<QuotaBlock> {
        self.quota_block.lock().clone()
    }

    /// Sets or lifts the quota block; a new block closes the producers
    /// (their clients re-create them and meet the block).
    pub fn set_quota_block(&self, block: Option<QuotaBlock>) {
        let newly = {
            let mut b = self.quota_block.lock();
            let newly = block.is_some() && b.is_none();
            if *b != block {
                match &block {
                    Some(q) => {
                        tracing::warn!(topic = %self.name, reason = %q.reason, policy = ?q.policy, "backlog quota exceeded; producers blocked")
                    }
                    None if b.is_some() => {
                        info!(topic = %self.name, "backlog quota no longer exceeded")
                    }
                    None => {}
                }
            }
            *b = block;
            newly
        };
        if newly {
            self.close_producers();
        }
    }

    /// Tells every producer's client to close it (it reconnects).
    pub fn close_producers(&self) {
        let producers: Vec<AttachedProducer> = {
            let mut st = self.state.lock();
            st.producers.drain().map(|(_, p)| p).collect()
        };
        for p in producers {
            p.entry
                .conn
                .post(commands::close_producer(p.entry.producer_id));
        }
    }

    /// The attached producers (stats and admin).
    pub fn producers(&self) -> Vec<AttachedProducer> {
        self.state.lock().producers.values().cloned().collect()
    }

    /// Stores a message (one or a batch) from `publisher` as one entry; the
    /// future resolves when it is durable. `checksum` is the producer's
    /// verified CRC32C of the message past its checksum header, if it sent
    /// one: the entry's CRC is combined from it.
    pub async fn publish(
        &self,
        message: codec::Payload,
        checksum: Option<u32>,
        num_messages: u32,
        publisher: Option<&PublisherStats>,
    ) -> Result<AddFuture> {
        let mut next = self.publish.lock().await;
        let count = num_messages.max(1) as u64;
        let bem = BrokerEntryMetadata {
            broker_timestamp: Some(now_ms()),
            index: Some(*next + count - 1),
        };
        let message_len = message.len();
        let entry = message.into_entry(&bem);
        // Small messages are cheaper to checksum again than to combine.
        let crc = checksum
            .filter(|_| message_len >= strata_proto::crc::COMBINE_WORTH_IT)
            .map(|c| codec::entry_crc32c_from_checksum(&entry, message_len, c));
        let fut = self.ml.add_entry_with_crc(entry, crc).await?;
        *next += count;
        drop(next);
        self.msg_in.record(count, message_len as u64);
        if let Some(p) = publisher {
            p.meter.record(count, message_len as u64);
        }
        self.entries_added.fetch_add(1, Ordering::Relaxed);
        Ok(fut)
    }

    pub fn subscription(&self, name: &str) -> Option<Arc<Subscription>> {
        self.state.lock().subscriptions.get(name).cloned()
    }

    pub fn subscriptions(&self) -> Vec<Arc<Subscription>> {
        self.state.lock().subscriptions.values().cloned().collect()
    }

    /// The durable subscription `name`, created at `initial` if new.
    pub async fn durable_subscription(
        &self,
        name: &str,
        initial: InitialPosition,
        sub_type: SubType,
    ) -> Result<Arc<Subscription>> {
        if let Some(s) = self.subscription(name) {
            return Ok(s);
        }
        self.check_subscription_limit()?;
        let cursor = self.ml.open_cursor(name, initial).await?;
        let mut st = self.state.lock();
        let sub = st.subscriptions.entry(name.to_string()).or_insert_with(|| {
            Subscription::start(
                name.to_string(),
                true,
                cursor,
                self.ml.clone(),
                self.partition(),
                sub_type,
                self.batch_entries,
                self.shared.clone(),
            )
        });
        Ok(sub.clone())
    }

    /// A reader's subscription on a non-durable cursor starting at `start`.
    pub fn non_durable_subscription(
        &self,
        name: &str,
        start: Position,
        sub_type: SubType,
    ) -> Result<Arc<Subscription>> {
        let mut st = self.state.lock();
        if st.subscriptions.contains_key(name) {
            return Err(BrokerError::ConsumerBusy(format!(
                "subscription {name} already exists on {}",
                self.name
            )));
        }
        let cursor = self.ml.new_non_durable_cursor(start);
        let sub = Subscription::start(
            name.to_string(),
            false,
            cursor,
            self.ml.clone(),
            self.partition(),
            sub_type,
            self.batch_entries,
            self.shared.clone(),
        );
        st.subscriptions.insert(name.to_string(), sub.clone());
        Ok(sub)
    }

    /// Drops a reader's subscription once its last consumer left.
    pub fn drop_if_non_durable(&self, sub: &Arc<Subscription>) {
        if sub.durable || sub.has_consumers() {
            return;
        }
        let mut st = self.state.lock();
        if st
            .subscriptions
            .get(&sub.name)
            .is_some_and(|s| Arc::ptr_eq(s, sub))
        {
            st.subscriptions.remove(&sub.name);
            sub.close();
        }
    }

    /// Deletes a durable subscription (UNSUBSCRIBE).
    pub async fn unsubscribe(&self, name: &str) -> Result<()> {
        let sub = self
            .subscription(name)
            .ok_or_else(|| BrokerError::SubscriptionNotFound(name.to_string()))?;
        if sub.has_consumers() {
            return Err(BrokerError::ConsumerBusy(format!(
                "subscription {name} has connected consumers"
            )));
        }
        self.state.lock().subscriptions.remove(name);
        sub.close();
        if sub.durable {
            self.ml.delete_cursor(name).await?;
        }
        Ok(())
    }

    /// Stops every subscription task and closes every client's producers and
    /// consumers on this topic (they reconnect elsewhere or later).
    pub fn shutdown(&self) {
        let st = self.state.lock();
        for p in st.producers.values() {
            p.entry
                .conn
                .post(commands::close_producer(p.entry.producer_id));
        }
        for s in st.subscriptions.values() {
            s.disconnect_all();
            s.close();
        }
    }

    /// Whether any producer or consumer is attached (admin deletes refuse
    /// such a topic unless forced).
    pub fn has_clients(&self) -> bool {
        let st = self.state.lock();
        !st.producers.is_empty()
            || !st.waiting.is_empty()
            || st.subscriptions.values().any(|s| s.has_consumers())
    }

    /// Closes the stats window of every meter of the topic (the stats task).
    pub fn sample_stats(&self, now: Instant) {
        self.msg_in.sample(now);
        self.shared.out.sample(now);
        let (producers, subs) = {
            let st = self.state.lock();
            let p: Vec<Arc<PublisherStats>> =
                st.producers.values().map(|p| p.stats.clone()).collect();
            let s: Vec<Arc<Subscription>> = st.subscriptions.values().cloned().collect();
            (p, s)
        };
        for p in producers {
            p.meter.sample(now);
        }
        for s in subs {
            s.out.sample(now);
            s.redelivered.sample(now);
            for c in s.consumers() {
                c.out.sample(now);
            }
        }
    }
}
