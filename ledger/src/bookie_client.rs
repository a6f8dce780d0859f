//! Connections to bookies. Each bookie gets one gRPC channel and one
//! long-lived add stream shared by every ledger this client writes: adds
//! queued while a message is being sent go out together in the next one, and
//! results come back matched by (ledger, entry). If the stream breaks, every
//! add in flight on it fails with `BookieUnavailable` and the next add opens
//! a new stream.
//!
//! A bookie running in this very process (the standalone's) can be registered
//! as a [`LocalBookie`]: adds and reads are handed over directly, skipping
//! protobuf encoding, HTTP/2 and two trips through the loopback socket
//! (about four copies of every byte). Control calls still use gRPC.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use parking_lot::Mutex;
use strata_common::stages::{self, Stage};
use strata_proto::bookie::bookie_client::BookieClient as Rpc;
use strata_proto::bookie::{AddEntry, AddResult, AddStatus, ReadRequest, ReadResponse};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tracing::debug;

use crate::add_body::{self, AddBody};
use crate::error::{LedgerError, Result};

/// Largest gRPC message exchanged with bookies.
pub const MAX_MESSAGE_BYTES: usize = 80 << 20;
/// Adds batched into one stream message at most.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// The outcome of one add on one bookie.
#[derive(Debug, Clone)]
pub enum AddOutcome {
    Ok,
    Fenced,
    /// Any other failure: the writer replaces the bookie.
    Failed(String),
}

/// Where an add's outcome is delivered: the writer's ack channel, tagged.
pub type AckSink = mpsc::UnboundedSender<AddAck>;

#[derive(Debug)]
pub struct AddAck {
    /// Shared with the connection: no allocation per acknowledgement.
    pub bookie: Arc<str>,
    pub ledger_id: u64,
    pub entry_id: u64,
    pub outcome: AddOutcome,
}

/// A bookie in this process that takes adds and reads without gRPC. `add`
/// must behave exactly like one message of the bookie's add stream (one
/// result per add, in order), and `read` like its `ReadEntries` call, errors
/// included.
pub trait LocalBookie: Send + Sync + 'static {
    fn add(&self, adds: Vec<AddEntry>) -> Pin<Box<dyn Future<Output = Vec<AddResult>> + Send>>;

    fn read(&self, req: ReadRequest) -> LocalRead;
}

/// What [`LocalBookie::read`] returns: the `ReadEntries` call's answer.
pub type LocalRead =
    Pin<Box<dyn Future<Output = std::result::Result<ReadResponse, tonic::Status>> + Send>>;

fn outcome(r: &AddResult) -> AddOutcome {
    match AddStatus::try_from(r.status) {
        Ok(AddStatus::Ok) => AddOutcome::Ok,
        Ok(AddStatus::Fenced) => AddOutcome::Fenced,
        _ => AddOutcome::Failed(r.message.clone()),
    }
}

/// Adds in flight on a stream, by (ledger, entry).
type Pending = Arc<Mutex<HashMap<(u64, u64), Sinks, KeyHash>>>;

/// Where the outcome of one (ledger, entry) goes: nearly always one writer,
/// kept inline rather than in a one-element `Vec` allocated per add.
enum Sinks {
    One(AckSink),
    Many(Vec<AckSink>),
}

impl Sinks {
    fn push(&mut self, sink: AckSink) {
        match self {
            Sinks::Many(v) => v.push(sink),
            Sinks::One(first) => {
                let first = first.clone();
                *self = Sinks::Many(vec![first, sink]);
            }
        }
    }

    /// Sends each sink the ack `ack` makes.
    fn send_each(self, ack: impl Fn() -> AddAck) {
        match self {
            Sinks::One(s) => {
                let _ = s.send(ack());
            }
            Sinks::Many(v) => {
                for s in v {
                    let _ = s.send(ack());
                }
            }
        }
    }
}

/// Hashes the (ledger, entry) keys of [`Pending`] without SipHash (the keys
/// are the client's own, not chosen by a peer) and so that the entries of a
/// ledger land in neighbouring buckets: the low bits are the entry id plus a
/// mix of the ledger id, so the adds in flight on a stream, consecutive
/// entries of a few ledgers, are inserted and removed sweeping through the
/// table's memory rather than at random places in it (a stream may hold tens
/// of thousands of adds, more than the CPU caches keep). The top 7 bits,
/// which the table keeps as each bucket's tag and compares first, are a
/// multiply-mix (the Fx hash) of the whole key.
#[derive(Clone, Copy, Default)]
struct KeyHash;

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher::default()
    }
}

#[derive(Default)]
struct KeyHasher {
    /// The Fx mix of every word written.
    mixed: u64,
    /// The mix of the words before the last one.
    prefix: u64,
    last: u64,
}

/// The bits of a hash the table takes as the tag (hashbrown's `h2`).
const TAG_BITS: u64 = 0x7f << 57;

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.prefix = self.mixed;
        self.mixed = (self.mixed.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        self.last = v;
    }

    fn finish(&self) -> u64 {
        (self.last.wrapping_add(self.prefix) & !TAG_BITS) | (self.mixed & TAG_BITS)
    }
}

/// `first` and whatever else is queued, up to [`MAX_BATCH_BYTES`]: their
/// (ledger, entry) keys, the adds and where each add's outcome goes.
#[allow(clippy::type_complexity)]
fn take_batch(
    first: (AddEntry, AckSink),
    rx: &mut mpsc::UnboundedReceiver<(AddEntry, AckSink)>,
) -> (Vec<(u64, u64)>, Vec<AddEntry>, Vec<AckSink>) {
    // What is queued now is about what this batch takes (4,096 covers
    // MAX_BATCH_BYTES of 1 KiB adds): sized once, not grown add by add.
    let room = (rx.len() + 1).min(4096);
    let mut bytes = 0;
    let mut keys = Vec::with_capacity(room);
    let mut adds = Vec::with_capacity(room);
    let mut sinks = Vec::with_capacity(room);
    let mut next = Some(first);
    while let Some((add, sink)) = next.take() {
        // `add` only queues adds that carry an entry.
        let e = add.entry.as_ref();
        bytes += e.map_or(0, |e| e.payload.len());
        keys.push(e.map_or((0, 0), |e| (e.ledger_id, e.entry_id)));
        adds.push(add);
        sinks.push(sink);
        if bytes < MAX_BATCH_BYTES {
            next = rx.try_recv().ok();
        }
    }
    (keys, adds, sinks)
}

/// Sends each add of a hand-over its outcome from the local bookie.
fn deliver(bookie: &Arc<str>, keys: Vec<(u64, u64)>, sinks: Vec<AckSink>, results: Vec<AddResult>) {
    for (i, ((ledger_id, entry_id), sink)) in keys.into_iter().zip(sinks).enumerate() {
        let outcome = results.get(i).map_or_else(
            || AddOutcome::Failed("no result from the local bookie".into()),
            outcome,
        );
        let _ = sink.send(AddAck {
            bookie: bookie.clone(),
            ledger_id,
            entry_id,
            outcome,
        });
    }
}

struct AddStream {
    tx: mpsc::UnboundedSender<AddEntry>,
    pending: Pending,
}

/// One bookie, as seen by this client.
pub struct BookieConn {
    pub address: Arc<str>,
    pub rpc: Rpc<Channel>,
    /// The channel under `rpc`, for the add stream (see `add_body`).
    channel: Channel,
    stream: Mutex<Option<AddStream>>,
    local: Option<Arc<dyn LocalBookie>>,
    /// Queue to the in-process bookie (see [`BookieConn::local_queue`]).
    local_tx: Mutex<Option<mpsc::UnboundedSender<(AddEntry, AckSink)>>>,
}

impl BookieConn {
    fn new(
        address: &str,
        timeout: Duration,
        local: Option<Arc<dyn LocalBookie>>,
    ) -> Result<BookieConn> {
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| LedgerError::BookieUnavailable {
                bookie: address.to_string(),
                reason: format!("bad address: {e}"),
            })?
            .connect_timeout(Duration::from_secs(3))
            .timeout(timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(10))
            // Reads stream back large batches: avoid a round trip per 64 KiB.
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(16 << 20)
            .max_frame_size(strata_proto::HTTP2_MAX_FRAME_SIZE);
        let channel = endpoint.connect_lazy();
        let rpc = Rpc::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(BookieConn {
            address: Arc::from(address),
            rpc,
            channel,
            stream: Mutex::new(None),
            local,
            local_tx: Mutex::new(None),
        })
    }

    /// Sends one add; its outcome arrives on `sink` as an [`AddAck`].
    pub fn add(self: &Arc<Self>, add: AddEntry, sink: AckSink) {
        let Some(entry) = add.entry.as_ref() else {
            return;
        };
        let key = (entry.ledger_id, entry.entry_id);
        if let Some(local) = &self.local {
            let mut guard = self.local_tx.lock();
            let tx = guard.get_or_insert_with(|| self.local_queue(local.clone()));
            if let Err(mpsc::error::SendError((_, sink))) = tx.send((add, sink)) {
                *guard = None;
                let _ = sink.send(self.ack(key, AddOutcome::Failed("local bookie gone".into())));
            }
            return;
        }
        let mut guard = self.stream.lock();
        if guard.as_ref().is_none_or(|s| s.tx.is_closed()) {
            *guard = Some(self.open_stream());
        }
        let Some(stream) = guard.as_ref() else { return };
        match stream.pending.lock().entry(key) {
            Entry::Occupied(mut e) => e.get_mut().push(sink),
            Entry::Vacant(e) => {
                e.insert(Sinks::One(sink));
            }
        }
        if stream.tx.send(add).is_err() {
            // The stream died between the check and the send.
            if let Some(sinks) = stream.pending.lock().remove(&key) {
                sinks.send_each(|| self.ack(key, AddOutcome::Failed("add stream closed".into())));
            }
            *guard = None;
        }
    }

    /// One read: handed to the bookie directly when it runs in this
    /// process (its entries come back without a copy), else over gRPC.
    pub async fn read_entries(
        &self,
        req: ReadRequest,
    ) -> std::result::Result<ReadResponse, tonic::Status> {
        match &self.local {
            Some(local) => local.read(req).await,
            None => Ok(self.rpc.clone().read_entries(req).await?.into_inner()),
        }
    }

    fn ack(&self, key: (u64, u64), outcome: AddOutcome) -> AddAck {
        AddAck {
            bookie: self.address.clone(),
            ledger_id: key.0,
            entry_id: key.1,
            outcome,
        }
    }

    /// Starts the task that hands queued adds to the in-process bookie:
    /// whatever queued while the previous batch was being handed over goes
    /// in the next one, so the bookie takes one lock and makes one journal
    /// request per batch rather than per add. Batches are not waited for
    /// one by one: while one is being made durable the next is journaled.
    fn local_queue(
        self: &Arc<Self>,
        local: Arc<dyn LocalBookie>,
    ) -> mpsc::UnboundedSender<(AddEntry, AckSink)> {
        let (tx, mut rx) = mpsc::unbounded_channel::<(AddEntry, AckSink)>();
        // Only the address, not the connection: the connection holds `tx`,
        // and the task must end when the connection is dropped.
        let bookie = self.address.clone();
        tokio::spawn(async move {
            // Hand-overs in flight, driven by this task: a new batch is
            // handed over (validated, cached, queued to the journal) as soon
            // as it is formed, and its acks go out as soon as it is durable,
            // without a task per batch waiting on the scheduler.
            let mut in_flight = FuturesUnordered::new();
            let mut open = true;
            loop {
                tokio::select! {
                    biased;
                    Some((keys, sinks, results)) = in_flight.next(), if !in_flight.is_empty() => {
                        deliver(&bookie, keys, sinks, results);
                    }
                    first = rx.recv(), if open => {
                        let Some(first) = first else {
                            open = false;
                            continue;
                        };
                        let (keys, adds, sinks) = take_batch(first, &mut rx);
                        let done = local.add(adds);
                        in_flight.push(async move { (keys, sinks, done.await) });
                    }
                    else => break,
                }
            }
        });
        tx
    }

    fn open_stream(self: &Arc<Self>) -> AddStream {
        let (tx, rx) = mpsc::unbounded_channel::<AddEntry>();
        let pending: Pending = Arc::new(Mutex::new(HashMap::default()));
        // The request body, polled by the HTTP/2 connection itself: each
        // poll sends everything queued so far as one message, and large
        // payloads are not copied on their way (see `add_body`).
        let body = AddBody::new(rx, MAX_BATCH_BYTES);
        let conn = self.clone();
        let pending2 = pending.clone();
        tokio::spawn(async move {
            let opened = add_body::open(conn.channel.clone(), body, MAX_MESSAGE_BYTES).await;
            let reason = match opened {
                Err(status) => format!("add stream refused: {}", status.message()),
                Ok(mut inbound) => {
                    loop {
                        match inbound.message().await {
                            Ok(Some(resp)) => {
                                // One lock per response, not per result.
                                let mut pending = pending2.lock();
                                for r in resp.results {
                                    stages::mark(r.entry_id, Stage::AnswerReceived);
                                    let key = (r.ledger_id, r.entry_id);
                                    if let Some(sinks) = pending.remove(&key) {
                                        sinks.send_each(|| conn.ack(key, outcome(&r)));
                                    }
                                }
                            }
                            Ok(None) => break "add stream closed by the bookie".to_string(),
                            Err(status) => {
                                break format!("add stream failed: {}", status.message());
                            }
                        }
                    }
                }
            };
            debug!(bookie = %conn.address, %reason, "add stream ended");
            // Fail everything still in flight on this stream. Holding the
            // stream slot while draining means no add can join the dead
            // stream's pending set afterwards (adds insert under that lock).
            let drained: Vec<_> = {
                let mut guard = conn.stream.lock();
                let drained = pending2.lock().drain().collect();
                if guard
                    .as_ref()
                    .is_some_and(|s| Arc::ptr_eq(&s.pending, &pending2))
                {
                    *guard = None;
                }
                drained
            };
            for (key, sinks) in drained {
                sinks.send_each(|| conn.ack(key, AddOutcome::Failed(reason.clone())));
            }
        });
        AddStream { tx, pending }
    }
}

/// Connections to every bookie this client talks to.
#[derive(Clone)]
pub struct BookiePool {
    conns: Arc<Mutex<HashMap<String, Arc<BookieConn>>>>,
    locals: Arc<Mutex<HashMap<String, Arc<dyn LocalBookie>>>>,
    timeout: Duration,
}

impl BookiePool {
    pub fn new(timeout: Duration) -> Self {
        BookiePool {
            conns: Arc::new(Mutex::new(HashMap::new())),
            locals: Arc::new(Mutex::new(HashMap::new())),
            timeout,
        }
    }

    /// Sends adds for the bookie `address` straight to `bookie`, which runs
    /// in this process. Connections made before keep using gRPC.
    pub fn register_local(&self, address: &str, bookie: Arc<dyn LocalBookie>) {
        self.locals.lock().insert(address.to_string(), bookie);
        self.conns.lock().remove(address);
    }

    pub fn get(&self, address: &str) -> Result<Arc<BookieConn>> {
        let mut conns = self.conns.lock();
        if let Some(c) = conns.get(address) {
            return Ok(c.clone());
        }
        let local = self.locals.lock().get(address).cloned();
        let c = Arc::new(BookieConn::new(address, self.timeout, local)?);
        conns.insert(address.to_string(), c.clone());
        Ok(c)
    }
}

/// Maps a gRPC failure from `bookie` to a ledger error.
pub fn status_error(bookie: &str, status: tonic::Status) -> LedgerError {
    use tonic::Code;
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            LedgerError::BookieUnavailable {
                bookie: bookie.to_string(),
                reason: status.message().to_string(),
            }
        }
        _ => LedgerError::BookieError {
            bookie: bookie.to_string(),
            reason: format!("{:?}: {}", status.code(), status.message()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack_entry(rx: &mut mpsc::UnboundedReceiver<AddAck>) -> Option<u64> {
        rx.try_recv().ok().map(|a| a.entry_id)
    }

    /// An add sent twice on one stream (a resend) is answered on every sink
    /// it was sent for, and the map finds keys that differ only in order.
    #[test]
    fn pending_adds_keep_every_sink_by_exact_key() {
        let (a, mut rx_a) = mpsc::unbounded_channel();
        let (b, mut rx_b) = mpsc::unbounded_channel();
        let mut pending: HashMap<(u64, u64), Sinks, KeyHash> = HashMap::default();
        pending.insert((1, 2), Sinks::One(a));
        pending.get_mut(&(1, 2)).unwrap().push(b);
        assert!(!pending.contains_key(&(2, 1)));
        let sent = std::cell::Cell::new(0);
        pending.remove(&(1, 2)).unwrap().send_each(|| {
            sent.set(sent.get() + 1);
            AddAck {
                bookie: Arc::from("b"),
                ledger_id: 1,
                entry_id: 2,
                outcome: AddOutcome::Ok,
            }
        });
        assert_eq!(sent.get(), 2);
        assert_eq!(ack_entry(&mut rx_a), Some(2));
        assert_eq!(ack_entry(&mut rx_b), Some(2));
        assert!(pending.is_empty());
    }

    /// Consecutive entries of a ledger hash to consecutive buckets, with
    /// tags that still tell them apart; other ledgers start elsewhere.
    #[test]
    fn a_ledgers_entries_hash_to_neighbouring_buckets() {
        use std::hash::BuildHasher;
        let h = |k: (u64, u64)| KeyHash.hash_one(k);
        let low = |x: u64| x & !TAG_BITS;
        for e in [0, 1, 1000, u64::MAX >> 8] {
            assert_eq!(low(h((7, e + 1))), low(h((7, e))) + 1);
            assert_ne!(low(h((8, e))), low(h((7, e))));
        }
        let tags: std::collections::HashSet<u64> = (0..64).map(|e| h((7, e)) & TAG_BITS).collect();
        assert!(tags.len() > 32, "{} tags for 64 entries", tags.len());
    }
}
