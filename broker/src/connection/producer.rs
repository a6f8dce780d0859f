//! PRODUCER, SEND and CLOSE_PRODUCER.
//!
//! Receipts go out in the order the messages were sent: each producer has a
//! task that awaits its messages' durability one after the other (the
//! managed ledger completes them in order anyway, so this adds no wait).

use std::sync::Arc;
use std::time::Instant;

use strata_common::names::TopicName;
use strata_managed_ledger::AddFuture;
use strata_proto::pulsar::{
    CommandCloseProducer, CommandProducer, CommandSend, ProducerAccessMode,
};
use tokio::sync::mpsc;
use tracing::debug;

use super::{Conn, Fatal, ProducerState, spawn};
use crate::auth::{Need, Operation};
use crate::codec::{self, MessageError};
use crate::commands;
use crate::error::BrokerError;
use crate::metrics::BrokerMetrics;
use crate::outbound::ConnHandle;
use crate::topic::{ProducerAdmission, ProducerEntry};

/// One message waiting for its receipt.
pub(crate) struct Receipt {
    sequence_id: u64,
    highest_sequence_id: Option<u64>,
    result: Result<AddFuture, BrokerError>,
    /// When the SEND was decoded: the start of its publish latency.
    received: Instant,
}

async fn receipt_loop(
    handle: Arc<ConnHandle>,
    metrics: Arc<BrokerMetrics>,
    producer_id: u64,
    mut rx: mpsc::UnboundedReceiver<Receipt>,
) {
    while let Some(r) = rx.recv().await {
        let outcome = match r.result {
            Ok(fut) => fut.await.map_err(BrokerError::from),
            Err(e) => Err(e),
        };
        let ok = outcome.is_ok();
        let cmd = match outcome {
            Ok(pos) => commands::send_receipt(
                producer_id,
                r.sequence_id,
                r.highest_sequence_id,
                pos.ledger_id,
                pos.entry_id,
            ),
            Err(e) => {
                debug!(producer_id, sequence_id = r.sequence_id, error = %e, "send failed");
                commands::send_error(producer_id, r.sequence_id, &e)
            }
        };
        handle.send(cmd).await;
        if ok {
            metrics
                .publish_latency
                .observe(r.received.elapsed().as_secs_f64());
        } else {
            metrics.publish_errors.inc();
        }
    }
}

impl Conn {
    pub(super) fn spawn_producer(self: &Arc<Self>, cmd: CommandProducer) {
        spawn(self, |conn| async move {
            let request_id = cmd.request_id;
            if let Err(e) = conn.create_producer(cmd).await {
                conn.reply_error("create producer", request_id, &e).await;
            }
        });
    }

    async fn create_producer(self: &Arc<Self>, cmd: CommandProducer) -> Result<(), BrokerError> {
        let name = TopicName::parse(&cmd.topic)?;
        self.authorize_topic(&name, Need::Produce, Operation::Produce)
            .await?;
        let topic = self.service.topic(&name, true).await?;
        let producer_name = cmd
            .producer_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.service.generate_producer_name());
        let mode = cmd
            .producer_access_mode
            .and_then(|m| ProducerAccessMode::try_from(m).ok())
            .unwrap_or(ProducerAccessMode::Shared);
        let attached = {
            let mut producers = self.producers.lock();
            match producers.get(&cmd.producer_id) {
                // Still attached to this very topic: a client's retry of
                // a create that already succeeded.
                Some(p)
                    if Arc::ptr_eq(&p.topic, &topic)
                        && topic.publisher(self.handle.id, cmd.producer_id).is_some() =>
                {
                    true
                }
                // The broker closed it (unload, quota, fencing): the
                // client re-creates it, and it is admitted afresh.
                Some(_) => {
                    producers.remove(&cmd.producer_id);
                    false
                }
                None => false,
            }
        };
        if attached {
            // A retry of a create that already succeeded: answer again.
            self.handle
                .send(commands::producer_success(
                    cmd.request_id,
                    producer_name,
                    None,
                    true,
                ))
                .await;
            return Ok(());
        }
        self.service.admit_producer_quota(&topic).await?;
        let entry = ProducerEntry {
            producer_id: cmd.producer_id,
            name: producer_name.clone(),
            conn: self.handle.clone(),
            mode,
        };
        let epoch = match topic.add_producer(entry)? {
            ProducerAdmission::Ready { epoch } => epoch,
            ProducerAdmission::Waiting(rx) => {
                self.handle
                    .send(commands::producer_success(
                        cmd.request_id,
                        producer_name.clone(),
                        None,
                        false,
                    ))
                    .await;
                match rx.await {
                    Ok(epoch) => epoch,
                    Err(_) => return Ok(()), // the client gave up waiting
                }
            }
        };
        if self.handle.is_closed() {
            topic.remove_producer(self.handle.id, cmd.producer_id);
            return Ok(());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(receipt_loop(
            self.handle.clone(),
            self.service.metrics.clone(),
            cmd.producer_id,
            rx,
        ));
        self.producers.lock().insert(
            cmd.producer_id,
            ProducerState {
                topic: topic.clone(),
                receipts: tx,
            },
        );
        let epoch = (mode != ProducerAccessMode::Shared).then_some(epoch);
        self.handle
            .send(commands::producer_success(
                cmd.request_id,
                producer_name,
                epoch,
                true,
            ))
            .await;
        Ok(())
    }

    pub(super) async fn handle_send(
        self: &Arc<Self>,
        cmd: CommandSend,
        payload: Option<codec::Payload>,
    ) -> Result<(), Fatal> {
        let received = Instant::now();
        let (topic, receipts) = match self.producers.lock().get(&cmd.producer_id) {
            Some(p) => (p.topic.clone(), p.receipts.clone()),
            None => {
                return Err(Fatal(format!(
                    "SEND for unknown producer_id={}",
                    cmd.producer_id
                )));
            }
        };
        let Some(payload) = payload else {
            return Err(Fatal("SEND without a message".into()));
        };
        let mut throttle = std::time::Duration::ZERO;
        let result = match codec::parse_message(&payload) {
            Ok(parsed) => {
                let n = parsed
                    .metadata
                    .num_messages_in_batch
                    .or(cmd.num_messages)
                    .unwrap_or(1)
                    .max(1) as u32;
                match topic.publisher(self.handle.id, cmd.producer_id) {
                    None => Err(BrokerError::ProducerFenced(format!(
                        "producer {} was fenced on {}",
                        cmd.producer_id, topic.name
                    ))),
                    Some(publisher) => {
                        throttle = topic.publish_rate.consume(n as u64, payload.len() as u64);
                        topic
                            .publish(payload, parsed.checksum, n, Some(&publisher))
                            .await
                    }
                }
            }
            Err(MessageError::Checksum { .. }) => Err(BrokerError::Checksum(format!(
                "message {} of producer {} failed its checksum",
                cmd.sequence_id, cmd.producer_id
            ))),
            Err(e) => Err(BrokerError::NotAllowed(e.to_string())),
        };
        if let Err(e) = &result {
            self.service.log_client_error("publish", e);
        }
        let _ = receipts.send(Receipt {
            sequence_id: cmd.sequence_id,
            highest_sequence_id: cmd.highest_sequence_id.filter(|h| *h > 0),
            result,
            received,
        });
        if !throttle.is_zero() {
            // The topic's publish rate is used up: stop reading this
            // connection until it is paid back (its socket fills and the
            // client's sends wait; nothing is dropped).
            let m = &self.service.metrics;
            m.publish_throttled.inc();
            m.publish_throttled_ms.inc_by(throttle.as_millis() as u64);
            tokio::select! {
                _ = tokio::time::sleep(throttle) => {}
                _ = self.handle.closed() => {}
            }
        }
        Ok(())
    }

    pub(super) async fn close_producer(self: &Arc<Self>, cmd: CommandCloseProducer) {
        if let Some(p) = self.producers.lock().remove(&cmd.producer_id) {
            p.topic.remove_producer(self.handle.id, cmd.producer_id);
        }
        self.handle.send(commands::success(cmd.request_id)).await;
    }
}
