//! Producers: client-side batching, pipelined sends with a bounded window
//! of unacknowledged messages, and round robin over the partitions of a
//! partitioned topic.
//!
//! Each partition has its own broker-side producer (`Part`). A send takes
//! a permit from the part's window (waiting when `max_pending_messages` are
//! unacknowledged) and room for its payload in the client's memory limit
//! (waiting while all producers of the client hold `memory_limit_bytes`
//! without receipts), appends the message to the open batch, and returns a
//! future of its [`MessageId`]. A batch is sent when it holds
//! `batch_max_messages` or `batch_max_bytes`, or `batch_max_delay` after its
//! first message (a flusher task per part). Batches are queued on the
//! connection in sequence-id order, and the broker answers in send order, so
//! receipts are matched against the front of the pending queue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::Shared;
use parking_lot::Mutex;
use strata_proto::pulsar::{
    BaseCommand, CommandCloseProducer, CommandProducer, MessageMetadata, base_command::Type,
};
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::Client;
use crate::codec::{BatchBuilder, SendHeader, encode_send};
use crate::connection::{Connection, Outgoing};
use crate::error::{ClientError, Result};
use crate::memory::{Held, MemoryLimit};
use crate::message::MessageId;

/// Room left in a batch for the broker's frame overhead.
const BATCH_HEADROOM: usize = 16 << 10;

/// How a producer batches and how far it runs ahead of the broker.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// Producer name; the broker picks one when absent.
    pub name: Option<String>,
    /// Messages per batch at most; 0 or 1 sends every message alone.
    pub batch_max_messages: u32,
    /// Payload bytes per batch at most (capped by the broker's message size).
    pub batch_max_bytes: usize,
    /// A batch is sent at the latest this long after its first message.
    pub batch_max_delay: Duration,
    /// Unacknowledged messages per partition at most; sends wait beyond
    /// (0: no limit but the client's memory limit).
    pub max_pending_messages: u32,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            name: None,
            batch_max_messages: 1000,
            batch_max_bytes: 128 << 10,
            batch_max_delay: Duration::from_millis(1),
            max_pending_messages: 10_000,
        }
    }
}

impl ProducerOptions {
    fn batching(&self) -> bool {
        self.batch_max_messages > 1
    }

    /// The window's size in messages.
    fn window(&self) -> u32 {
        match self.max_pending_messages {
            0 => u32::MAX,
            n => n,
        }
    }
}

/// What a receipt says about a batch (or a lone message).
#[derive(Debug, Clone, Copy)]
struct Receipt {
    ledger_id: u64,
    entry_id: u64,
    count: u32,
}

type ReceiptResult = std::result::Result<Receipt, ClientError>;
type ReceiptRx = Shared<oneshot::Receiver<ReceiptResult>>;

/// Resolves to the id of a sent message once the broker has stored it.
#[must_use = "a send is only known to be stored once its future resolves"]
pub struct SendFuture {
    rx: ReceiptRx,
    partition: i32,
    /// Index in the batch; -1 when sent alone.
    batch_index: i32,
}

impl std::future::Future for SendFuture {
    type Output = Result<MessageId>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let partition = self.partition;
        let batch_index = self.batch_index;
        self.rx.poll_unpin(cx).map(|r| match r {
            Ok(Ok(receipt)) => Ok(MessageId {
                ledger_id: receipt.ledger_id,
                entry_id: receipt.entry_id,
                partition,
                batch_index,
                batch_size: if batch_index >= 0 {
                    receipt.count as i32
                } else {
                    0
                },
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::ProducerClosed(
                "dropped before the send completed".into(),
            )),
        })
    }
}

/// One batch (or lone message) sent and not yet acknowledged.
struct Pending {
    sequence_id: u64,
    count: u32,
    done: oneshot::Sender<ReceiptResult>,
    /// Its payload's room in the client's memory limit, given back with it.
    _memory: Option<Held>,
}

/// The part of a producer the connection's reader completes receipts on.
pub(crate) struct ProducerShared {
    name: String,
    pending: Mutex<VecDeque<Pending>>,
    window: Semaphore,
    failed: Mutex<Option<ClientError>>,
}

impl ProducerShared {
    fn complete(&self, p: Pending, result: ReceiptResult) {
        let count = p.count;
        let _ = p.done.send(result);
        self.window.add_permits(count as usize);
    }

    /// Takes the pending entry for `sequence_id`; entries before it got no
    /// receipt (the broker skipped them) and fail.
    fn take(&self, sequence_id: u64) -> Option<Pending> {
        loop {
            let front = {
                let mut pending = self.pending.lock();
                match pending.front() {
                    None => return None,
                    Some(f) if f.sequence_id > sequence_id => return None,
                    Some(_) => pending.pop_front()?,
                }
            };
            if front.sequence_id == sequence_id {
                return Some(front);
            }
            let missed = front.sequence_id;
            self.complete(
                front,
                Err(ClientError::Protocol(format!(
                    "no receipt for sequence id {missed} (the broker answered {sequence_id})"
                ))),
            );
        }
    }

    pub(crate) fn on_receipt(&self, sequence_id: u64, id: Option<(u64, u64)>) {
        let Some(p) = self.take(sequence_id) else {
            debug!(producer = %self.name, sequence_id, "receipt for nothing pending ignored");
            return;
        };
        let result = match id {
            Some((ledger_id, entry_id)) => Ok(Receipt {
                ledger_id,
                entry_id,
                count: p.count,
            }),
            None => Err(ClientError::Protocol(format!(
                "receipt for sequence id {sequence_id} without a message id"
            ))),
        };
        self.complete(p, result);
    }

    pub(crate) fn on_send_error(&self, sequence_id: u64, e: ClientError) {
        if let Some(p) = self.take(sequence_id) {
            self.complete(p, Err(e));
        }
    }

    /// Fails everything pending and every later send.
    pub(crate) fn fail_all(&self, e: &ClientError) {
        self.failed.lock().get_or_insert_with(|| e.clone());
        let drained: Vec<Pending> = self.pending.lock().drain(..).collect();
        for p in drained {
            let _ = p.done.send(Err(e.clone()));
        }
        self.window.close();
    }

    fn failure(&self) -> Option<ClientError> {
        self.failed.lock().clone()
    }
}

struct PartState {
    batch: BatchBuilder,
    /// The open batch's room in the client's memory limit.
    batch_memory: Option<Held>,
    batch_done: Option<(oneshot::Sender<ReceiptResult>, ReceiptRx)>,
    batch_started: Option<Instant>,
    next_sequence_id: u64,
    closed: bool,
}

/// The producer on one topic or one partition.
struct Part {
    conn: Arc<Connection>,
    topic: String,
    producer_id: u64,
    partition: i32,
    name: String,
    opts: ProducerOptions,
    batch_max_bytes: usize,
    state: tokio::sync::Mutex<PartState>,
    shared: Arc<ProducerShared>,
    batch_opened: Notify,
    memory: Option<MemoryLimit>,
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Part {
    async fn create(
        client: &Client,
        topic: String,
        partition: i32,
        opts: &ProducerOptions,
    ) -> Result<Arc<Part>> {
        let conn = client.lookup(&topic).await?;
        let producer_id = client.next_id();
        let request_id = conn.next_request_id();
        let cmd = BaseCommand {
            r#type: Type::Producer as i32,
            producer: Some(CommandProducer {
                topic: topic.clone(),
                producer_id,
                request_id,
                producer_name: opts.name.clone(),
                user_provided_producer_name: Some(opts.name.is_some()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let answer = conn.request(request_id, &cmd, "create producer").await?;
        let success = answer.producer_success.ok_or_else(|| {
            ClientError::Protocol(format!(
                "PRODUCER answered with command type {}",
                answer.r#type
            ))
        })?;
        let max_pending = opts.window();
        let shared = Arc::new(ProducerShared {
            name: success.producer_name.clone(),
            pending: Mutex::new(VecDeque::new()),
            window: Semaphore::new(max_pending as usize),
            failed: Mutex::new(None),
        });
        conn.register_producer(producer_id, shared.clone())?;
        let next_sequence_id = success
            .last_sequence_id
            .filter(|s| *s >= 0)
            .map_or(0, |s| s as u64 + 1);
        let batch_max_bytes = opts
            .batch_max_bytes
            .min(conn.max_message_size.saturating_sub(BATCH_HEADROOM))
            .max(1);
        Ok(Arc::new(Part {
            conn,
            topic,
            producer_id,
            partition,
            name: success.producer_name,
            opts: opts.clone(),
            batch_max_bytes,
            state: tokio::sync::Mutex::new(PartState {
                batch: BatchBuilder::new(),
                batch_memory: None,
                batch_done: None,
                batch_started: None,
                next_sequence_id,
                closed: false,
            }),
            shared,
            batch_opened: Notify::new(),
            memory: client.memory().cloned(),
        }))
    }

    async fn send(&self, payload: &[u8]) -> Result<SendFuture> {
        if payload.len() + BATCH_HEADROOM > self.conn.max_message_size {
            return Err(ClientError::MessageTooLarge {
                size: payload.len(),
                max: self.conn.max_message_size.saturating_sub(BATCH_HEADROOM),
            });
        }
        // The window usually has room: take it without building a waiter.
        let permit = match self.shared.window.try_acquire() {
            Err(tokio::sync::TryAcquireError::NoPermits) => self.shared.window.acquire().await.ok(),
            taken => taken.ok(),
        };
        let Some(permit) = permit else {
            return Err(self.failure());
        };
        // Until the send is sure to go, the permit is a guard: an error or
        // a cancelled send gives it back by dropping it.
        let memory = match &self.memory {
            Some(m) => match m.try_take(payload.len()) {
                Ok(held) => held,
                Err(()) => {
                    // This part's open batch may hold room itself: send it
                    // now rather than wait for its delay.
                    self.flush().await?;
                    m.take(payload.len()).await
                }
            },
            None => None,
        };
        let mut st = self.state.lock().await;
        if st.closed || self.shared.failure().is_some() {
            return Err(self.failure());
        }
        // From here the receipt gives it back (`ProducerShared::complete`).
        permit.forget();
        let sequence_id = st.next_sequence_id;
        st.next_sequence_id += 1;
        if !self.opts.batching() {
            let (tx, rx) = oneshot::channel();
            let md = MessageMetadata {
                producer_name: self.name.clone(),
                sequence_id,
                publish_time: now_millis(),
                uncompressed_size: Some(payload.len() as u32),
                ..Default::default()
            };
            let frame = encode_send(
                SendHeader {
                    producer_id: self.producer_id,
                    sequence_id,
                    highest_sequence_id: None,
                    num_messages: None,
                },
                &md,
                Bytes::copy_from_slice(payload),
            );
            self.transmit(sequence_id, 1, tx, frame, memory).await?;
            return Ok(SendFuture {
                rx: rx.shared(),
                partition: self.partition,
                batch_index: -1,
            });
        }
        // A message that does not fit closes the open batch first.
        if !st.batch.is_empty() && st.batch.bytes() + payload.len() + 32 > self.batch_max_bytes {
            self.flush_locked(&mut st).await?;
        }
        if st.batch.is_empty() {
            let (tx, rx) = oneshot::channel();
            st.batch_done = Some((tx, rx.shared()));
            st.batch_started = Some(Instant::now());
            self.batch_opened.notify_one();
        }
        let index = st.batch.push(sequence_id, payload);
        match (&mut st.batch_memory, memory) {
            (Some(held), Some(more)) => held.merge(more),
            (held, more) => *held = held.take().or(more),
        }
        let rx = match &st.batch_done {
            Some((_, rx)) => rx.clone(),
            None => return Err(ClientError::Protocol("batch without its receipt".into())),
        };
        if st.batch.len() >= self.opts.batch_max_messages
            || st.batch.bytes() >= self.batch_max_bytes
        {
            self.flush_locked(&mut st).await?;
        }
        Ok(SendFuture {
            rx,
            partition: self.partition,
            batch_index: index as i32,
        })
    }

    fn failure(&self) -> ClientError {
        self.shared
            .failure()
            .unwrap_or_else(|| ClientError::ProducerClosed(self.name.clone()))
    }

    /// Sends the open batch, if any.
    async fn flush_locked(&self, st: &mut PartState) -> Result<()> {
        let Some((tx, _)) = st.batch_done.take() else {
            return Ok(());
        };
        st.batch_started = None;
        let batch = st.batch.take();
        let md = MessageMetadata {
            producer_name: self.name.clone(),
            sequence_id: batch.first_sequence_id,
            publish_time: now_millis(),
            num_messages_in_batch: Some(batch.count as i32),
            uncompressed_size: Some(batch.payload.len() as u32),
            highest_sequence_id: Some(batch.last_sequence_id),
            ..Default::default()
        };
        let frame = encode_send(
            SendHeader {
                producer_id: self.producer_id,
                sequence_id: batch.first_sequence_id,
                highest_sequence_id: Some(batch.last_sequence_id),
                num_messages: Some(batch.count as i32),
            },
            &md,
            batch.payload,
        );
        let memory = st.batch_memory.take();
        self.transmit(batch.first_sequence_id, batch.count, tx, frame, memory)
            .await
    }

    /// Records the send as pending, then queues its frame (in that order:
    /// the receipt can come back before `send` returns).
    async fn transmit(
        &self,
        sequence_id: u64,
        count: u32,
        done: oneshot::Sender<ReceiptResult>,
        (head, body): (Bytes, Bytes),
        memory: Option<Held>,
    ) -> Result<()> {
        self.shared.pending.lock().push_back(Pending {
            sequence_id,
            count,
            done,
            _memory: memory,
        });
        if let Err(e) = self.conn.send(Outgoing::Message(head, body)).await {
            self.shared.fail_all(&e);
            return Err(e);
        }
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        let mut st = self.state.lock().await;
        self.flush_locked(&mut st).await
    }

    /// Sends open batches once they are `batch_max_delay` old.
    async fn flusher(self: Arc<Part>, stop: CancellationToken) {
        let delay = self.opts.batch_max_delay;
        loop {
            let started = self.state.lock().await.batch_started;
            let Some(started) = started else {
                tokio::select! {
                    _ = self.batch_opened.notified() => continue,
                    _ = stop.cancelled() => return,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until((started + delay).into()) => {}
                _ = stop.cancelled() => return,
            }
            let mut st = self.state.lock().await;
            if st
                .batch_started
                .is_some_and(|s| s + delay <= Instant::now())
                && let Err(e) = self.flush_locked(&mut st).await
            {
                debug!(topic = %self.topic, error = %e, "timed batch flush failed");
            }
        }
    }

    async fn close(&self) -> Result<()> {
        {
            let mut st = self.state.lock().await;
            let flushed = self.flush_locked(&mut st).await;
            st.closed = true;
            flushed?;
        }
        // Every permit back means every receipt is in (or the producer failed).
        let all = self.opts.window();
        let drained = tokio::time::timeout(
            self.conn.operation_timeout(),
            self.shared.window.acquire_many(all),
        )
        .await;
        if drained.is_err() {
            return Err(ClientError::Timeout(format!(
                "waiting for the receipts of {}",
                self.topic
            )));
        }
        self.conn.deregister_producer(self.producer_id);
        if let Some(e) = self.shared.failure() {
            return Err(e);
        }
        let request_id = self.conn.next_request_id();
        let cmd = BaseCommand {
            r#type: Type::CloseProducer as i32,
            close_producer: Some(CommandCloseProducer {
                producer_id: self.producer_id,
                request_id,
                ..Default::default()
            }),
            ..Default::default()
        };
        self.conn
            .request(request_id, &cmd, "close producer")
            .await
            .map(|_| ())
    }
}

/// A producer on a topic; on a partitioned topic, one per partition, used
/// round robin. With batching, the producer moves to the next partition
/// after each `batch_max_messages` messages so batches fill.
pub struct Producer {
    topic: String,
    parts: Vec<Arc<Part>>,
    next: AtomicU64,
    switch_every: u64,
    stop: CancellationToken,
}

impl Producer {
    pub(crate) async fn create(
        client: &Client,
        topic: &str,
        opts: ProducerOptions,
    ) -> Result<Producer> {
        let partitions = client.partitions(topic).await?;
        let targets: Vec<(String, i32)> = if partitions == 0 {
            vec![(topic.to_string(), -1)]
        } else {
            (0..partitions)
                .map(|i| (format!("{topic}-partition-{i}"), i as i32))
                .collect()
        };
        let parts = futures::future::try_join_all(
            targets
                .into_iter()
                .map(|(t, i)| Part::create(client, t, i, &opts)),
        )
        .await?;
        let stop = CancellationToken::new();
        if opts.batching() {
            for p in &parts {
                tokio::spawn(p.clone().flusher(stop.clone()));
            }
        }
        Ok(Producer {
            topic: topic.to_string(),
            parts,
            next: AtomicU64::new(0),
            switch_every: u64::from(opts.batch_max_messages.max(1)),
            stop,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Number of partitions written (1 for a non-partitioned topic).
    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// Producer names the broker knows, one per partition.
    pub fn names(&self) -> Vec<String> {
        self.parts.iter().map(|p| p.name.clone()).collect()
    }

    /// Queues a message; waits while the window is full. The returned
    /// future resolves once the broker has stored it.
    pub async fn send(&self, payload: &[u8]) -> Result<SendFuture> {
        let i = if self.parts.len() == 1 {
            0
        } else {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            ((n / self.switch_every) % self.parts.len() as u64) as usize
        };
        self.parts[i].send(payload).await
    }

    /// Sends the open batches now.
    pub async fn flush(&self) -> Result<()> {
        for p in &self.parts {
            p.flush().await?;
        }
        Ok(())
    }

    /// Sends the open batches, waits for every receipt, and closes the
    /// producer on the broker.
    pub async fn close(self) -> Result<()> {
        let results = futures::future::join_all(self.parts.iter().map(|p| p.close())).await;
        self.stop.cancel();
        results.into_iter().collect()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
