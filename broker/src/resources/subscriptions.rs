//! Admin operations on subscriptions: list, create, delete, reset the
//! cursor, skip and expire. On a partitioned topic each applies to every
//! partition. They act on the loaded topic's subscription (loading the
//! topic if needed); a reset disconnects the subscription's consumers, as a
//! protocol SEEK does, and they re-subscribe from the new position.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Deserialize;
use strata_common::names::TopicName;
use strata_managed_ledger::{Entry, InitialPosition, Position};
use strata_proto::pulsar::command_subscribe::SubType;

use crate::codec;
use crate::error::{BrokerError, Result};
use crate::service::BrokerService;
use crate::stats::now_ms;
use crate::subscription::Subscription;
use crate::topic::Topic;

/// Entries acknowledged per call while skipping.
const SKIP_CHUNK: usize = 10_000;

/// Where a new subscription starts, or a cursor is reset to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
    /// This entry is the next one delivered.
    At(Position),
}

/// A message id in a request body (Pulsar's `MessageIdImpl` /
/// `ResetCursorData`): `-1:-1` is the earliest, `Long.MAX_VALUE` the latest.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageIdBody {
    pub ledger_id: i64,
    pub entry_id: i64,
    #[serde(default = "minus_one")]
    pub partition_index: i32,
    /// Start after this message rather than at it.
    #[serde(default)]
    pub is_excluded: bool,
}

fn minus_one() -> i32 {
    -1
}

impl MessageIdBody {
    pub fn start(&self) -> Result<StartAt> {
        match (self.ledger_id, self.entry_id) {
            (-1, -1) => Ok(StartAt::Earliest),
            (i64::MAX, _) => Ok(StartAt::Latest),
            (l, e) if l > 0 && e >= 0 => Ok(StartAt::At(Position::new(l as u64, e as u64))),
            (l, e) => Err(BrokerError::InvalidArgument(format!(
                "invalid message id {l}:{e}: expected ledgerId > 0 and entryId >= 0, -1:-1 (earliest) or {}:{} (latest)",
                i64::MAX,
                i64::MAX
            ))),
        }
    }
}

/// The broker timestamp of an entry (else its publish time), ms.
pub(crate) fn entry_time(e: &Entry) -> u64 {
    codec::entry_broker_metadata(&e.data)
        .and_then(|b| b.broker_timestamp)
        .or_else(|| codec::entry_metadata(&e.data).ok().map(|m| m.publish_time))
        .unwrap_or(0)
}

impl BrokerService {
    /// The topics an operation on `topic` applies to: its partitions if it
    /// is partitioned, else itself.
    async fn targets(&self, topic: &TopicName) -> Result<Vec<TopicName>> {
        Ok(match self.partitions(topic).await? {
            0 => vec![topic.clone()],
            n => (0..n).map(|i| topic.partition_topic(i)).collect(),
        })
    }

    /// The loaded targets of `topic`. Partitions not used yet are skipped,
    /// or created with `create`.
    async fn target_topics(&self, topic: &TopicName, create: bool) -> Result<Vec<Arc<Topic>>> {
        let targets = self.targets(topic).await?;
        let partitioned = targets.len() > 1 || targets[0] != *topic;
        let mut out = Vec::with_capacity(targets.len());
        for t in &targets {
            if partitioned
                && !create
                && self.loaded_topic(t).is_none()
                && !self.topic_exists(t).await?
            {
                continue;
            }
            out.push(self.admin_topic(t, partitioned).await?);
        }
        Ok(out)
    }

    /// The subscription `name` on every target; 404 if no target has it.
    async fn target_subscriptions(
        &self,
        topic: &TopicName,
        name: &str,
    ) -> Result<Vec<(Arc<Topic>, Arc<Subscription>)>> {
        let subs: Vec<_> = self
            .target_topics(topic, false)
            .await?
            .into_iter()
            .filter_map(|t| t.subscription(name).map(|s| (t, s)))
            .collect();
        if subs.is_empty() {
            return Err(BrokerError::SubscriptionNotFound(format!(
                "{name} on {topic}"
            )));
        }
        Ok(subs)
    }

    /// Subscription names of a topic (across its partitions), sorted.
    pub async fn list_subscriptions(&self, topic: &TopicName) -> Result<Vec<String>> {
        let mut names = BTreeSet::new();
        for t in self.target_topics(topic, false).await? {
            names.extend(t.subscriptions().iter().map(|s| s.name.clone()));
        }
        Ok(names.into_iter().collect())
    }

    /// Creates a durable subscription starting at `start`.
    pub async fn create_subscription(
        &self,
        topic: &TopicName,
        name: &str,
        start: StartAt,
    ) -> Result<()> {
        if name.is_empty() {
            return Err(BrokerError::InvalidArgument(
                "invalid subscription name: empty".into(),
            ));
        }
        let topics = self.target_topics(topic, true).await?;
        let mut guards = Vec::with_capacity(topics.len());
        for t in &topics {
            guards.push(t.admin_lock.lock().await);
        }
        if topics.iter().any(|t| t.subscription(name).is_some()) {
            return Err(BrokerError::AlreadyExists(format!(
                "subscription {name} on {topic}"
            )));
        }
        for t in &topics {
            let initial = match start {
                StartAt::Earliest => InitialPosition::Earliest,
                StartAt::Latest | StartAt::At(_) => InitialPosition::Latest,
            };
            let sub = t
                .durable_subscription(name, initial, SubType::Exclusive)
                .await?;
            if let StartAt::At(pos) = start {
                sub.reset(pos);
                sub.cursor.persist().await?;
            }
        }
        Ok(())
    }

    /// Deletes a subscription. With connected consumers it is refused
    /// unless `force`, which disconnects them.
    pub async fn delete_subscription(
        &self,
        topic: &TopicName,
        name: &str,
        force: bool,
    ) -> Result<()> {
        let subs = self.target_subscriptions(topic, name).await?;
        if !force && subs.iter().any(|(_, s)| s.has_consumers()) {
            return Err(BrokerError::PreconditionFailed(format!(
                "subscription {name} on {topic} has connected consumers; use force=true to disconnect them"
            )));
        }
        for (t, s) in subs {
            let _admin = t.admin_lock.lock().await;
            s.disconnect_all();
            match t.unsubscribe(name).await {
                Ok(()) | Err(BrokerError::SubscriptionNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Moves a subscription's cursor to `start` (everything before it
    /// acknowledged, everything from it on not); `excluded` starts after
    /// the given message instead. `partition` limits a partitioned topic's
    /// reset to one partition.
    pub async fn reset_cursor(
        &self,
        topic: &TopicName,
        name: &str,
        start: StartAt,
        excluded: bool,
        partition: Option<u32>,
    ) -> Result<()> {
        for (t, s) in self.target_subscriptions(topic, name).await? {
            if partition.is_some() && t.name.partition() != partition {
                continue;
            }
            let pos = match start {
                StartAt::Earliest => Position::EARLIEST,
                StartAt::Latest => t.ml.end_position(),
                StartAt::At(p) if excluded => t.ml.next_position(p),
                StartAt::At(p) => p,
            };
            s.reset(pos);
            s.cursor.persist().await?;
        }
        Ok(())
    }

    /// Moves a subscription's cursor to the first message published at or
    /// after `timestamp_ms`.
    pub async fn reset_cursor_to_time(
        &self,
        topic: &TopicName,
        name: &str,
        timestamp_ms: u64,
    ) -> Result<()> {
        for (t, s) in self.target_subscriptions(topic, name).await? {
            let before =
                t.ml.find_newest_matching(Position::EARLIEST, |e| {
                    codec::entry_metadata(&e.data)
                        .map(|m| m.publish_time < timestamp_ms)
                        .unwrap_or(true)
                })
                .await?;
            let pos = match before {
                Some(p) => t.ml.next_position(p),
                None => Position::EARLIEST,
            };
            s.reset(pos);
            s.cursor.persist().await?;
        }
        Ok(())
    }

    /// Acknowledges the next `count` unacknowledged entries.
    pub async fn skip(&self, topic: &TopicName, name: &str, count: u64) -> Result<()> {
        for (t, s) in self.target_subscriptions(topic, name).await? {
            let Some(last) = t.ml.last_confirmed() else {
                continue;
            };
            if count >= s.cursor.backlog() {
                s.admin_ack_through(last);
                continue;
            }
            let mut left = count;
            let mut pos = t.ml.next_position(s.cursor.mark_delete_position());
            let mut chunk = Vec::new();
            while left > 0 && pos <= last {
                if !s.cursor.is_acked(pos) {
                    chunk.push(pos);
                    left -= 1;
                    if chunk.len() == SKIP_CHUNK {
                        s.admin_ack(&chunk);
                        chunk.clear();
                    }
                }
                pos = t.ml.next_position(pos);
            }
            s.admin_ack(&chunk);
        }
        Ok(())
    }

    /// Acknowledges everything (clears the backlog).
    pub async fn skip_all(&self, topic: &TopicName, name: &str) -> Result<()> {
        for (t, s) in self.target_subscriptions(topic, name).await? {
            if let Some(last) = t.ml.last_confirmed() {
                s.admin_ack_through(last);
            }
        }
        Ok(())
    }

    /// Acknowledges every message published more than `seconds` ago.
    pub async fn expire_messages(&self, topic: &TopicName, name: &str, seconds: u64) -> Result<()> {
        let subs = self.target_subscriptions(topic, name).await?;
        let cutoff = now_ms().saturating_sub(seconds.saturating_mul(1000));
        for (t, s) in subs {
            expire_before(&t, &s, cutoff).await?;
        }
        Ok(())
    }

    /// [`BrokerService::expire_messages`] on every subscription of the topic.
    pub async fn expire_messages_all(&self, topic: &TopicName, seconds: u64) -> Result<()> {
        let cutoff = now_ms().saturating_sub(seconds.saturating_mul(1000));
        for t in self.target_topics(topic, false).await? {
            for s in t.subscriptions() {
                expire_before(&t, &s, cutoff).await?;
            }
        }
        Ok(())
    }
}

/// Acknowledges every entry of `t` stored before `cutoff_ms` on `s`;
/// true if that moved its mark-delete position.
pub(crate) async fn expire_before(t: &Topic, s: &Subscription, cutoff_ms: u64) -> Result<bool> {
    let newest_expired =
        t.ml.find_newest_matching(Position::EARLIEST, |e| entry_time(e) < cutoff_ms)
            .await?;
    if let Some(p) = newest_expired
        && p > s.cursor.mark_delete_position()
    {
        s.admin_ack_through(p);
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::parse_json;

    #[test]
    fn message_id_bodies() {
        let id: MessageIdBody = parse_json(br#"{"ledgerId":5,"entryId":3}"#, "message id").unwrap();
        assert_eq!(id.start().unwrap(), StartAt::At(Position::new(5, 3)));
        assert_eq!((id.partition_index, id.is_excluded), (-1, false));
        let id: MessageIdBody = parse_json(
            br#"{"ledgerId":-1,"entryId":-1,"partitionIndex":2}"#,
            "message id",
        )
        .unwrap();
        assert_eq!(id.start().unwrap(), StartAt::Earliest);
        let id: MessageIdBody = parse_json(
            format!(r#"{{"ledgerId":{},"entryId":{}}}"#, i64::MAX, i64::MAX).as_bytes(),
            "message id",
        )
        .unwrap();
        assert_eq!(id.start().unwrap(), StartAt::Latest);
        let id: MessageIdBody =
            parse_json(br#"{"ledgerId":-7,"entryId":1}"#, "message id").unwrap();
        assert!(
            id.start()
                .unwrap_err()
                .to_string()
                .starts_with("invalid message id -7:1")
        );
        let e = parse_json::<MessageIdBody>(br#"{"entryId":1}"#, "message id")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `ledgerId`"), "{e}");
        let e = parse_json::<MessageIdBody>(br#"{"ledgerId":"x","entryId":1}"#, "message id")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid field 'ledgerId'"), "{e}");
    }
}
