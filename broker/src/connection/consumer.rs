//! SUBSCRIBE, FLOW, ACK, REDELIVER, SEEK, GET_LAST_MESSAGE_ID, UNSUBSCRIBE
//! and CLOSE_CONSUMER.

use std::sync::Arc;

use strata_common::names::TopicName;
use strata_managed_ledger::{InitialPosition, Position};
use strata_proto::pulsar::{
    CommandAck, CommandCloseConsumer, CommandFlow, CommandGetLastMessageId,
    CommandRedeliverUnacknowledgedMessages, CommandSeek, CommandSubscribe, CommandUnsubscribe,
    KeySharedMode, MessageIdData, command_ack::AckType, command_subscribe,
    command_subscribe::SubType,
};
use tracing::debug;

use super::{Conn, ConsumerState, spawn};
use crate::auth::{Need, Operation};
use crate::codec;
use crate::commands;
use crate::consumer::{Consumer, HASH_RANGE_SIZE};
use crate::error::BrokerError;
use crate::topic::Topic;

/// A message id as clients send it: -1 arrives as u64::MAX.
enum WireId {
    Earliest,
    Latest,
    At(Position),
}

fn wire_id(id: &MessageIdData) -> WireId {
    if id.ledger_id as i64 == -1 {
        WireId::Earliest
    } else if id.ledger_id >= i64::MAX as u64 {
        WireId::Latest
    } else {
        WireId::At(Position::new(id.ledger_id, id.entry_id))
    }
}

/// The position after the newest entry (where "latest" starts).
fn end_position(topic: &Topic) -> Position {
    topic.ml.end_position()
}

fn to_wire(pos: Position) -> MessageIdData {
    commands::message_id(pos.ledger_id, pos.entry_id, -1, -1)
}

impl Conn {
    fn consumer_state(&self, consumer_id: u64) -> Result<ConsumerState, BrokerError> {
        self.consumers
            .lock()
            .get(&consumer_id)
            .map(|c| ConsumerState {
                topic: c.topic.clone(),
                sub: c.sub.clone(),
                consumer: c.consumer.clone(),
            })
            .ok_or(BrokerError::ConsumerNotFound(consumer_id))
    }

    pub(super) fn spawn_subscribe(self: &Arc<Self>, cmd: CommandSubscribe) {
        spawn(self, |conn| async move {
            let request_id = cmd.request_id;
            match conn.subscribe(cmd).await {
                Ok(()) => conn.handle.send(commands::success(request_id)).await,
                Err(e) => conn.reply_error("subscribe", request_id, &e).await,
            }
        });
    }

    async fn subscribe(self: &Arc<Self>, cmd: CommandSubscribe) -> Result<(), BrokerError> {
        let name = TopicName::parse(&cmd.topic)?;
        self.authorize_topic(&name, Need::Consume, Operation::Consume)
            .await?;
        if cmd.subscription.is_empty() {
            return Err(BrokerError::NotAllowed("empty subscription name".into()));
        }
        let sub_type = SubType::try_from(cmd.sub_type)
            .map_err(|_| BrokerError::NotAllowed(format!("unknown sub type {}", cmd.sub_type)))?;
        let topic = self
            .service
            .topic(&name, cmd.force_topic_creation.unwrap_or(true))
            .await?;
        let durable = cmd.durable.unwrap_or(true);
        let sub = if durable {
            let initial = match cmd
                .initial_position
                .and_then(|p| command_subscribe::InitialPosition::try_from(p).ok())
            {
                Some(command_subscribe::InitialPosition::Earliest) => InitialPosition::Earliest,
                _ => InitialPosition::Latest,
            };
            topic
                .durable_subscription(&cmd.subscription, initial, sub_type)
                .await?
        } else {
            let start = match cmd.start_message_id.as_ref().map(wire_id) {
                None | Some(WireId::Latest) => end_position(&topic),
                Some(WireId::Earliest) => Position::EARLIEST,
                // The start entry itself is sent: the client drops what
                // precedes its start id (the entry itself when exclusive,
                // earlier messages of a batch when inclusive), as with Pulsar.
                Some(WireId::At(p)) => p,
            };
            topic.non_durable_subscription(&cmd.subscription, start, sub_type)?
        };
        let sticky = match cmd.key_shared_meta.as_ref() {
            Some(m) if m.key_shared_mode == KeySharedMode::Sticky as i32 => {
                let ranges: Vec<(u32, u32)> = m
                    .hash_ranges
                    .iter()
                    .map(|r| (r.start.max(0) as u32, r.end.max(0) as u32))
                    .collect();
                if ranges.is_empty()
                    || ranges
                        .iter()
                        .any(|(lo, hi)| lo > hi || *hi >= HASH_RANGE_SIZE)
                {
                    return Err(BrokerError::ConsumerAssign(format!(
                        "invalid sticky hash ranges {ranges:?} (0..={})",
                        HASH_RANGE_SIZE - 1
                    )));
                }
                Some(ranges)
            }
            _ => None,
        };
        let consumer = Arc::new(Consumer::new(
            cmd.consumer_id,
            cmd.consumer_name.clone().unwrap_or_default(),
            self.handle.clone(),
            cmd.priority_level.unwrap_or(0),
            sub_type,
            sticky,
            topic.limits().max_unacked_per_consumer,
        ));
        // A re-subscribe with the same id replaces the old registration.
        if let Some(old) = self.consumers.lock().remove(&cmd.consumer_id) {
            old.sub.remove_consumer(cmd.consumer_id, self.handle.id);
            old.topic.drop_if_non_durable(&old.sub);
        }
        if let Err(e) = topic
            .check_consumer_limit(&sub)
            .and_then(|()| sub.add_consumer(consumer.clone()))
        {
            topic.drop_if_non_durable(&sub);
            return Err(e);
        }
        if self.handle.is_closed() {
            sub.remove_consumer(cmd.consumer_id, self.handle.id);
            topic.drop_if_non_durable(&sub);
            return Ok(());
        }
        self.consumers.lock().insert(
            cmd.consumer_id,
            ConsumerState {
                topic,
                sub,
                consumer,
            },
        );
        Ok(())
    }

    pub(super) fn handle_flow(&self, cmd: CommandFlow) {
        if let Ok(c) = self.consumer_state(cmd.consumer_id) {
            c.consumer.add_permits(cmd.message_permits);
            c.sub.wake();
        } else {
            debug!(consumer_id = cmd.consumer_id, "FLOW for unknown consumer");
        }
    }

    pub(super) async fn handle_ack(&self, cmd: CommandAck) {
        let result = self.ack(&cmd);
        if let Some(request_id) = cmd.request_id {
            self.handle
                .send(commands::ack_response(
                    cmd.consumer_id,
                    request_id,
                    result.as_ref().err(),
                ))
                .await;
        } else if let Err(e) = result {
            debug!(error = %e, "ack ignored");
        }
    }

    fn ack(&self, cmd: &CommandAck) -> Result<(), BrokerError> {
        let c = self.consumer_state(cmd.consumer_id)?;
        let Some(last) = c.topic.ml.last_confirmed() else {
            return Err(BrokerError::NotAllowed("ack on an empty topic".into()));
        };
        let cumulative = cmd.ack_type == AckType::Cumulative as i32;
        if cumulative && matches!(c.sub.sub_type(), SubType::Shared | SubType::KeyShared) {
            return Err(BrokerError::NotAllowed(
                "cumulative ack is not allowed on Shared / Key_Shared subscriptions".into(),
            ));
        }
        let mut whole = Vec::new();
        for id in &cmd.message_id {
            let WireId::At(pos) = wire_id(id) else {
                continue;
            };
            if pos > last || pos.ledger_id == 0 {
                continue; // never stored: nothing to acknowledge
            }
            if !id.ack_set.is_empty() {
                if cumulative {
                    // Everything before the batch is acknowledged; within it,
                    // the ack set says what is.
                    let before = c.topic.ml.previous_position(pos);
                    if before != Position::EARLIEST {
                        c.sub.ack_cumulative(&c.consumer, before);
                    }
                }
                let size = id.batch_size.unwrap_or(0).max(0) as u32;
                c.sub.ack_batch_index(&c.consumer, pos, &id.ack_set, size);
            } else if cumulative {
                c.sub.ack_cumulative(&c.consumer, pos);
            } else {
                whole.push(pos);
            }
        }
        if !whole.is_empty() {
            c.sub.ack(&c.consumer, &whole);
        }
        Ok(())
    }

    pub(super) fn handle_redeliver(&self, cmd: CommandRedeliverUnacknowledgedMessages) {
        let Ok(c) = self.consumer_state(cmd.consumer_id) else {
            return;
        };
        if cmd.message_ids.is_empty() {
            c.sub.redeliver(&c.consumer, None);
        } else {
            let ids: Vec<Position> = cmd
                .message_ids
                .iter()
                .filter_map(|id| match wire_id(id) {
                    WireId::At(p) => Some(p),
                    _ => None,
                })
                .collect();
            c.sub.redeliver(&c.consumer, Some(&ids));
        }
    }

    pub(super) async fn close_consumer(&self, cmd: CommandCloseConsumer) {
        if let Some(c) = self.consumers.lock().remove(&cmd.consumer_id) {
            c.sub.remove_consumer(cmd.consumer_id, self.handle.id);
            c.topic.drop_if_non_durable(&c.sub);
        }
        self.handle.send(commands::success(cmd.request_id)).await;
    }

    pub(super) fn spawn_unsubscribe(self: &Arc<Self>, cmd: CommandUnsubscribe) {
        spawn(self, |conn| async move {
            let result = async {
                let c = conn.consumer_state(cmd.consumer_id)?;
                let others =
                    c.sub.consumers().iter().any(|o| {
                        !(o.consumer_id == cmd.consumer_id && o.conn.id == conn.handle.id)
                    });
                if others && !cmd.force.unwrap_or(false) {
                    return Err(BrokerError::ConsumerBusy(format!(
                        "subscription {} has other connected consumers",
                        c.sub.name
                    )));
                }
                if others {
                    c.sub.disconnect_all();
                }
                c.sub.remove_consumer(cmd.consumer_id, conn.handle.id);
                conn.consumers.lock().remove(&cmd.consumer_id);
                if c.sub.durable {
                    c.topic.unsubscribe(&c.sub.name).await
                } else {
                    c.topic.drop_if_non_durable(&c.sub);
                    Ok(())
                }
            }
            .await;
            match result {
                Ok(()) => conn.handle.send(commands::success(cmd.request_id)).await,
                Err(e) => conn.reply_error("unsubscribe", cmd.request_id, &e).await,
            }
        });
    }

    pub(super) fn spawn_seek(self: &Arc<Self>, cmd: CommandSeek) {
        spawn(self, |conn| async move {
            let result = async {
                let c = conn.consumer_state(cmd.consumer_id)?;
                let ml = &c.topic.ml;
                let pos = if let Some(id) = &cmd.message_id {
                    match wire_id(id) {
                        WireId::Earliest => Position::EARLIEST,
                        WireId::Latest => end_position(&c.topic),
                        WireId::At(p) => p,
                    }
                } else if let Some(t) = cmd.message_publish_time {
                    // The first entry published at or after t.
                    let before = ml
                        .find_newest_matching(Position::EARLIEST, |e| {
                            codec::entry_metadata(&e.data)
                                .map(|m| m.publish_time < t)
                                .unwrap_or(true)
                        })
                        .await?;
                    match before {
                        Some(p) => ml.next_position(p),
                        None => Position::EARLIEST,
                    }
                } else {
                    return Err(BrokerError::NotAllowed(
                        "SEEK needs a message id or a publish time".into(),
                    ));
                };
                // The consumers are told to go; they re-subscribe and read from pos.
                c.sub.reset(pos);
                conn.consumers
                    .lock()
                    .retain(|_, s| !Arc::ptr_eq(&s.sub, &c.sub));
                Ok(())
            }
            .await;
            match result {
                Ok(()) => conn.handle.send(commands::success(cmd.request_id)).await,
                Err(e) => conn.reply_error("seek", cmd.request_id, &e).await,
            }
        });
    }

    pub(super) fn spawn_last_message_id(self: &Arc<Self>, cmd: CommandGetLastMessageId) {
        spawn(self, |conn| async move {
            let result = async {
                let c = conn.consumer_state(cmd.consumer_id)?;
                let partition = c.topic.partition();
                let last = match c.topic.ml.last_confirmed() {
                    None => commands::message_id(u64::MAX, u64::MAX, partition, -1),
                    Some(p) => {
                        let entry = c.topic.ml.read_entry(p).await?;
                        let batch_index = codec::entry_metadata(&entry.data)
                            .ok()
                            .and_then(|m| m.num_messages_in_batch)
                            .map(|n| n.max(1) - 1)
                            .unwrap_or(-1);
                        commands::message_id(p.ledger_id, p.entry_id, partition, batch_index)
                    }
                };
                let md = c.sub.cursor.mark_delete_position();
                let mark_delete = if md == Position::EARLIEST {
                    commands::message_id(u64::MAX, u64::MAX, partition, -1)
                } else {
                    to_wire(md)
                };
                Ok::<_, BrokerError>(commands::last_message_id(
                    cmd.request_id,
                    last,
                    Some(mark_delete),
                ))
            }
            .await;
            match result {
                Ok(reply) => conn.handle.send(reply).await,
                Err(e) => {
                    conn.reply_error("get last message id", cmd.request_id, &e)
                        .await
                }
            }
        });
    }
}
