//! Consumers: SUBSCRIBE, flow control, batch unpacking, acknowledgements.
//!
//! The consumer grants the broker `receiver_queue_size` permits at start
//! and gives back what the application has taken once that reaches half the
//! queue, so the broker never has more than a queue's worth in flight. The
//! broker counts a batch as one permit per message; skipped messages (batch
//! indexes acknowledged earlier) are given back too, so the count does not
//! drift. Acknowledging one message of a batch is tracked here; the entry is
//! acknowledged once all its messages are. `receive` is cancel-safe.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use strata_proto::pulsar::{
    BaseCommand, CommandAck, CommandCloseConsumer, CommandFlow, CommandMessage, CommandSubscribe,
    CommandUnsubscribe, CompressionType, MessageIdData, base_command::Type, command_ack::AckType,
    command_subscribe,
};
use tokio::sync::mpsc;

use crate::Client;
use crate::codec::{BatchMessages, split_message};
use crate::connection::{Connection, Delivery};
use crate::error::{ClientError, Result};
use crate::message::{Message, MessageId};

/// How messages of a subscription are spread over its consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionType {
    #[default]
    Exclusive,
    Shared,
    Failover,
    KeyShared,
}

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitialPosition {
    #[default]
    Latest,
    Earliest,
}

#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    pub subscription_type: SubscriptionType,
    pub initial_position: InitialPosition,
    /// Messages the broker may send ahead of `receive`.
    pub receiver_queue_size: u32,
    pub name: Option<String>,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            subscription_type: SubscriptionType::Exclusive,
            initial_position: InitialPosition::Latest,
            receiver_queue_size: 1000,
            name: None,
        }
    }
}

/// Which indexes of a delivered batch are not acknowledged yet.
#[derive(Debug)]
struct BatchAcks {
    unacked: Vec<u64>,
    remaining: u32,
}

impl BatchAcks {
    fn clear(&mut self, index: u32) -> bool {
        let (w, b) = ((index / 64) as usize, index % 64);
        match self.unacked.get_mut(w) {
            Some(word) if *word & (1 << b) != 0 => {
                *word &= !(1 << b);
                self.remaining -= 1;
                true
            }
            _ => false,
        }
    }
}

fn bit_is_set(words: &[i64], index: u32) -> bool {
    words
        .get((index / 64) as usize)
        .is_some_and(|w| (*w as u64) & (1 << (index % 64)) != 0)
}

/// The partition index in a topic name's `-partition-N` suffix, or -1.
fn partition_of(topic: &str) -> i32 {
    topic
        .rsplit_once("-partition-")
        .and_then(|(_, n)| n.parse::<i32>().ok())
        .unwrap_or(-1)
}

/// A consumer on one topic (or one partition).
pub struct Consumer {
    conn: Arc<Connection>,
    consumer_id: u64,
    topic: String,
    subscription: String,
    partition: i32,
    rx: mpsc::Receiver<Delivery>,
    ready: VecDeque<Message>,
    receiver_queue: u32,
    /// Messages handed out (or skipped) since the last FLOW.
    taken: u32,
    batch_acks: HashMap<(u64, u64), BatchAcks>,
}

impl Consumer {
    pub(crate) async fn subscribe(
        client: &Client,
        topic: &str,
        subscription: &str,
        opts: ConsumerOptions,
    ) -> Result<Consumer> {
        let conn = client.lookup(topic).await?;
        let consumer_id = client.next_id();
        let receiver_queue = opts.receiver_queue_size.max(1);
        // A batch is one frame, so a queue's worth of frames always fits.
        let (tx, rx) = mpsc::channel(receiver_queue as usize);
        conn.register_consumer(consumer_id, tx)?;
        let request_id = conn.next_request_id();
        let sub_type = match opts.subscription_type {
            SubscriptionType::Exclusive => command_subscribe::SubType::Exclusive,
            SubscriptionType::Shared => command_subscribe::SubType::Shared,
            SubscriptionType::Failover => command_subscribe::SubType::Failover,
            SubscriptionType::KeyShared => command_subscribe::SubType::KeyShared,
        };
        let initial = match opts.initial_position {
            InitialPosition::Latest => command_subscribe::InitialPosition::Latest,
            InitialPosition::Earliest => command_subscribe::InitialPosition::Earliest,
        };
        let cmd = BaseCommand {
            r#type: Type::Subscribe as i32,
            subscribe: Some(CommandSubscribe {
                topic: topic.to_string(),
                subscription: subscription.to_string(),
                sub_type: sub_type as i32,
                consumer_id,
                request_id,
                consumer_name: opts.name.clone(),
                durable: Some(true),
                initial_position: Some(initial as i32),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Err(e) = conn.request(request_id, &cmd, "subscribe").await {
            conn.deregister_consumer(consumer_id);
            return Err(e);
        }
        let consumer = Consumer {
            conn,
            consumer_id,
            topic: topic.to_string(),
            subscription: subscription.to_string(),
            partition: partition_of(topic),
            rx,
            ready: VecDeque::new(),
            receiver_queue,
            taken: 0,
            batch_acks: HashMap::new(),
        };
        consumer.flow(receiver_queue).await?;
        Ok(consumer)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    async fn flow(&self, permits: u32) -> Result<()> {
        let cmd = BaseCommand {
            r#type: Type::Flow as i32,
            flow: Some(CommandFlow {
                consumer_id: self.consumer_id,
                message_permits: permits,
            }),
            ..Default::default()
        };
        self.conn.send_command(&cmd).await
    }

    /// The next message. Cancel-safe: a message is only taken out once
    /// nothing is awaited any more.
    pub async fn receive(&mut self) -> Result<Message> {
        loop {
            // Permits go back before anything is taken, so a cancelled
            // FLOW loses nothing (it is sent on the next call).
            if self.taken >= (self.receiver_queue / 2).max(1) {
                self.flow(self.taken).await?;
                self.taken = 0;
            }
            if let Some(m) = self.ready.pop_front() {
                self.taken += 1;
                return Ok(m);
            }
            match self.rx.recv().await {
                Some((cmd, data)) => {
                    if let Err(e) = self.unpack(cmd, data) {
                        // The broker counted at least one permit for it.
                        self.taken += 1;
                        return Err(e);
                    }
                }
                None if self.conn.is_closed() => return Err(self.conn.close_reason()),
                None => return Err(ClientError::ConsumerClosed(self.topic.clone())),
            }
        }
    }

    /// Splits one delivered entry into its messages.
    fn unpack(&mut self, cmd: CommandMessage, data: Bytes) -> Result<()> {
        let (md, payload) = split_message(&data)?;
        let compression = md.compression.unwrap_or(CompressionType::None as i32);
        if compression != CompressionType::None as i32 {
            return Err(ClientError::Unsupported(format!(
                "compressed message (codec {compression}) on {}",
                self.topic
            )));
        }
        let id = &cmd.message_id;
        let base = MessageId {
            ledger_id: id.ledger_id,
            entry_id: id.entry_id,
            partition: self.partition,
            batch_index: -1,
            batch_size: 0,
        };
        let redelivery_count = cmd.redelivery_count.unwrap_or(0);
        let Some(n) = md.num_messages_in_batch else {
            self.ready.push_back(Message {
                id: base,
                payload,
                sequence_id: md.sequence_id,
                publish_time: md.publish_time,
                event_time: md.event_time.unwrap_or(0),
                partition_key: md.partition_key,
                properties: md.properties,
                redelivery_count,
            });
            return Ok(());
        };
        let n = u32::try_from(n).map_err(|_| {
            ClientError::Protocol(format!("batch of {n} messages on {}", self.topic))
        })?;
        let mut acks = BatchAcks {
            unacked: vec![0; n.div_ceil(64) as usize],
            remaining: 0,
        };
        // Straight into the queue; a malformed message takes the whole
        // batch back out (none of it is delivered).
        let queued = self.ready.len();
        let mut skipped = 0;
        for (i, m) in BatchMessages::new(&payload, n).enumerate() {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    self.ready.truncate(queued);
                    return Err(e.into());
                }
            };
            let i = i as u32;
            let already_acked = !cmd.ack_set.is_empty() && !bit_is_set(&cmd.ack_set, i);
            if already_acked || m.metadata.compacted_out.unwrap_or(false) {
                skipped += 1;
                continue;
            }
            acks.unacked[(i / 64) as usize] |= 1 << (i % 64);
            acks.remaining += 1;
            self.ready.push_back(Message {
                id: MessageId {
                    batch_index: i as i32,
                    batch_size: n as i32,
                    ..base
                },
                payload: m.payload,
                sequence_id: m
                    .metadata
                    .sequence_id
                    .unwrap_or(md.sequence_id + u64::from(i)),
                publish_time: md.publish_time,
                event_time: m.metadata.event_time.unwrap_or(0),
                partition_key: m.metadata.partition_key,
                properties: m.metadata.properties,
                redelivery_count,
            });
        }
        self.taken += skipped;
        if n > 1 && acks.remaining > 0 {
            self.batch_acks.insert((id.ledger_id, id.entry_id), acks);
        }
        Ok(())
    }

    async fn send_ack(&self, ack_type: AckType, id: MessageIdData) -> Result<()> {
        let cmd = BaseCommand {
            r#type: Type::Ack as i32,
            ack: Some(CommandAck {
                consumer_id: self.consumer_id,
                ack_type: ack_type as i32,
                message_id: vec![id],
                ..Default::default()
            }),
            ..Default::default()
        };
        self.conn.send_command(&cmd).await
    }

    /// Acknowledges one message. For a message of a batch, the entry is
    /// acknowledged once every message of it is.
    pub async fn ack(&mut self, id: &MessageId) -> Result<()> {
        if id.is_batched() {
            let key = (id.ledger_id, id.entry_id);
            let Some(acks) = self.batch_acks.get_mut(&key) else {
                return Ok(()); // already complete (or never delivered here)
            };
            if !acks.clear(id.batch_index as u32) || acks.remaining > 0 {
                return Ok(());
            }
            self.batch_acks.remove(&key);
        }
        self.send_ack(AckType::Individual, id.entry_data()).await
    }

    /// Acknowledges every message up to and including `id` (Exclusive and
    /// Failover subscriptions). Inside a batch, the later messages of the
    /// batch stay unacknowledged (a batch-index ack set).
    pub async fn ack_cumulative(&mut self, id: &MessageId) -> Result<()> {
        let key = (id.ledger_id, id.entry_id);
        self.batch_acks.retain(|k, _| *k > key);
        let mut wire = id.entry_data();
        if id.is_batched() && id.batch_index < id.batch_size - 1 {
            let size = id.batch_size as u32;
            let mut rest = BatchAcks {
                unacked: vec![0; size.div_ceil(64) as usize],
                remaining: 0,
            };
            for i in (id.batch_index as u32 + 1)..size {
                rest.unacked[(i / 64) as usize] |= 1 << (i % 64);
                rest.remaining += 1;
            }
            wire.ack_set = rest.unacked.iter().map(|w| *w as i64).collect();
            wire.batch_size = Some(id.batch_size);
            self.batch_acks.insert(key, rest);
        }
        self.send_ack(AckType::Cumulative, wire).await
    }

    /// Detaches this consumer (the subscription stays).
    pub async fn close(self) -> Result<()> {
        let request_id = self.conn.next_request_id();
        let cmd = BaseCommand {
            r#type: Type::CloseConsumer as i32,
            close_consumer: Some(CommandCloseConsumer {
                consumer_id: self.consumer_id,
                request_id,
                ..Default::default()
            }),
            ..Default::default()
        };
        let result = self.conn.request(request_id, &cmd, "close consumer").await;
        self.conn.deregister_consumer(self.consumer_id);
        result.map(|_| ())
    }

    /// Deletes the subscription (this must be its only consumer).
    pub async fn unsubscribe(self) -> Result<()> {
        let request_id = self.conn.next_request_id();
        let cmd = BaseCommand {
            r#type: Type::Unsubscribe as i32,
            unsubscribe: Some(CommandUnsubscribe {
                consumer_id: self.consumer_id,
                request_id,
                ..Default::default()
            }),
            ..Default::default()
        };
        let result = self.conn.request(request_id, &cmd, "unsubscribe").await;
        self.conn.deregister_consumer(self.consumer_id);
        result.map(|_| ())
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.conn.deregister_consumer(self.consumer_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_suffixes() {
        assert_eq!(partition_of("persistent://a/b/t-partition-7"), 7);
        assert_eq!(partition_of("persistent://a/b/t"), -1);
        assert_eq!(partition_of("t-partition-x"), -1);
    }

    #[test]
    fn batch_acks_complete_once() {
        let mut a = BatchAcks {
            unacked: vec![0b101],
            remaining: 2,
        };
        assert!(!a.clear(1), "index 1 was never unacked");
        assert!(a.clear(0));
        assert!(!a.clear(0), "a second ack of the same index is ignored");
        assert!(a.clear(2));
        assert_eq!(a.remaining, 0);
        assert!(!a.clear(500));
        assert!(bit_is_set(&[0b100], 2));
        assert!(!bit_is_set(&[0b100], 1));
        assert!(!bit_is_set(&[], 0));
    }
}
