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
    /// Messages and bytes dispatched to its subscriptions (stats).
    pub msg_out: Arc<Meter>,
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
        let msg_out = Arc::new(Meter::new());
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
                    msg_out.clone(),
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
            msg_out,
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

    /// The attached producers (stats and admin).
    pub fn producers(&self) -> Vec<AttachedProducer> {
        self.state.lock().producers.values().cloned().collect()
    }

    /// Stores a message from `publisher`; the future resolves when it is durable.
    pub async fn publish(
        &self,
        message: &[u8],
        num_messages: u32,
        publisher: Option<&PublisherStats>,
    ) -> Result<AddFuture> {
        let mut next = self.publish.lock().await;
        let count = num_messages.max(1) as u64;
        let bem = BrokerEntryMetadata {
            broker_timestamp: Some(now_ms()),
            index: Some(*next + count - 1),
        };
        let entry = codec::make_entry(&bem, message);
        let fut = self.ml.add_entry(entry).await?;
        *next += count;
        drop(next);
        self.msg_in.record(count, message.len() as u64);
        if let Some(p) = publisher {
            p.meter.record(count, message.len() as u64);
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
                self.msg_out.clone(),
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
            self.msg_out.clone(),
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
        self.msg_out.sample(now);
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
