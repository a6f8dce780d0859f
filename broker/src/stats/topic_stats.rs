//! The `stats` document of a topic, with Pulsar's JSON field names
//! (`TopicStats`, `PublisherStats`, `SubscriptionStats`, `ConsumerStats`),
//! and its aggregation over the partitions of a partitioned topic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_managed_ledger::{LedgerInfo, Position};
use strata_proto::pulsar::ProducerAccessMode;
use strata_proto::pulsar::command_subscribe::SubType;

use super::format_timestamp;
use crate::subscription::Subscription;
use crate::topic::Topic;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicStats {
    pub msg_rate_in: f64,
    pub msg_throughput_in: f64,
    pub msg_rate_out: f64,
    pub msg_throughput_out: f64,
    pub bytes_in_counter: u64,
    pub msg_in_counter: u64,
    pub bytes_out_counter: u64,
    pub msg_out_counter: u64,
    pub average_msg_size: f64,
    pub storage_size: u64,
    pub backlog_size: u64,
    pub offloaded_storage_size: u64,
    pub publishers: Vec<PublisherStats>,
    pub subscriptions: BTreeMap<String, SubscriptionStats>,
    /// Partitioned stats only: the partition count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PartitionedMetadata>,
    /// Partitioned stats with `perPartition=true`: each partition's stats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<BTreeMap<String, TopicStats>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionedMetadata {
    pub partitions: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublisherStats {
    pub producer_id: u64,
    pub producer_name: String,
    pub msg_rate_in: f64,
    pub msg_throughput_in: f64,
    pub average_msg_size: f64,
    pub msg_in_counter: u64,
    pub bytes_in_counter: u64,
    pub address: String,
    pub connected_since: String,
    pub access_mode: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStats {
    pub msg_rate_out: f64,
    pub msg_throughput_out: f64,
    pub bytes_out_counter: u64,
    pub msg_out_counter: u64,
    pub msg_rate_redeliver: f64,
    pub msg_backlog: u64,
    pub backlog_size: u64,
    #[serde(rename = "type")]
    pub sub_type: String,
    pub is_durable: bool,
    pub unacked_messages: i64,
    pub blocked_subscription_on_unacked_msgs: bool,
    pub consumers: Vec<ConsumerStats>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStats {
    pub consumer_name: String,
    pub msg_rate_out: f64,
    pub msg_throughput_out: f64,
    pub bytes_out_counter: u64,
    pub msg_out_counter: u64,
    pub available_permits: i64,
    pub unacked_messages: i64,
    pub blocked_consumer_on_unacked_msgs: bool,
    pub address: String,
    pub connected_since: String,
}

/// Pulsar's spelling of a subscription type.
pub fn sub_type_name(t: SubType) -> &'static str {
    match t {
        SubType::Exclusive => "Exclusive",
        SubType::Shared => "Shared",
        SubType::Failover => "Failover",
        SubType::KeyShared => "Key_Shared",
    }
}

fn access_mode_name(m: ProducerAccessMode) -> &'static str {
    match m {
        ProducerAccessMode::Shared => "Shared",
        ProducerAccessMode::Exclusive => "Exclusive",
        ProducerAccessMode::WaitForExclusive => "WaitForExclusive",
        ProducerAccessMode::ExclusiveWithFencing => "ExclusiveWithFencing",
    }
}

/// Bytes of the entries after `mark_delete`, estimated from the ledgers'
/// sizes (a partly consumed ledger counts in proportion to its entries).
pub(crate) fn bytes_after(ledgers: &[LedgerInfo], mark_delete: Position) -> u64 {
    ledgers
        .iter()
        .map(|l| {
            if l.ledger_id > mark_delete.ledger_id {
                l.size_bytes
            } else if l.ledger_id == mark_delete.ledger_id && l.entries > 0 {
                let left = l.entries.saturating_sub(mark_delete.entry_id + 1);
                (l.size_bytes as u128 * left as u128 / l.entries as u128) as u64
            } else {
                0
            }
        })
        .sum()
}

/// Backlog of a subscription in entries and (estimated) bytes.
pub(crate) fn backlog_of(sub: &Subscription, ledgers: &[LedgerInfo]) -> (u64, u64) {
    let entries = sub.cursor.backlog();
    if entries == 0 {
        return (0, 0);
    }
    let md = sub.cursor.mark_delete_position();
    let bytes = bytes_after(ledgers, md);
    let stored: u64 = ledgers
        .iter()
        .map(|l| {
            if l.ledger_id > md.ledger_id {
                l.entries
            } else if l.ledger_id == md.ledger_id {
                l.entries.saturating_sub(md.entry_id + 1)
            } else {
                0
            }
        })
        .sum();
    // Individually acknowledged entries are not backlog: scale down.
    let bytes = if stored > entries {
        (bytes as u128 * entries as u128 / stored as u128) as u64
    } else {
        bytes
    };
    (entries, bytes)
}

/// The stats of one loaded (non-partitioned) topic.
pub fn topic_stats(topic: &Topic) -> TopicStats {
    let ml = topic.ml.stats();
    let in_ = topic.msg_in.read();
    let out = topic.shared.out.read();
    let publishers = topic
        .producers()
        .into_iter()
        .map(|p| {
            let r = p.stats.meter.read();
            PublisherStats {
                producer_id: p.entry.producer_id,
                producer_name: p.entry.name.clone(),
                msg_rate_in: r.msg_rate,
                msg_throughput_in: r.byte_rate,
                average_msg_size: r.average_msg_size(),
                msg_in_counter: r.msgs,
                bytes_in_counter: r.bytes,
                address: format!("/{}", p.entry.conn.peer),
                connected_since: format_timestamp(p.stats.connected_since_ms),
                access_mode: access_mode_name(p.entry.mode).to_string(),
            }
        })
        .collect();
    let mut subscriptions = BTreeMap::new();
    let mut backlog_size = 0;
    for sub in topic.subscriptions() {
        let r = sub.out.read();
        let (msg_backlog, sub_backlog_size) = backlog_of(&sub, &ml.ledgers);
        if sub.durable {
            backlog_size = backlog_size.max(sub_backlog_size);
        }
        let consumers: Vec<ConsumerStats> = sub
            .consumers()
            .iter()
            .map(|c| {
                let r = c.out.read();
                ConsumerStats {
                    consumer_name: c.name.clone(),
                    msg_rate_out: r.msg_rate,
                    msg_throughput_out: r.byte_rate,
                    bytes_out_counter: r.bytes,
                    msg_out_counter: r.msgs,
                    available_permits: c.permits(),
                    unacked_messages: c.unacked_messages(),
                    blocked_consumer_on_unacked_msgs: c.is_blocked(),
                    address: format!("/{}", c.conn.peer),
                    connected_since: format_timestamp(c.connected_since_ms),
                }
            })
            .collect();
        subscriptions.insert(
            sub.name.clone(),
            SubscriptionStats {
                msg_rate_out: r.msg_rate,
                msg_throughput_out: r.byte_rate,
                bytes_out_counter: r.bytes,
                msg_out_counter: r.msgs,
                msg_rate_redeliver: sub.redelivered.read().msg_rate,
                msg_backlog,
                backlog_size: sub_backlog_size,
                sub_type: sub_type_name(sub.sub_type()).to_string(),
                is_durable: sub.durable,
                unacked_messages: consumers.iter().map(|c| c.unacked_messages).sum(),
                blocked_subscription_on_unacked_msgs: sub.is_blocked_on_unacked(),
                consumers,
            },
        );
    }
    TopicStats {
        msg_rate_in: in_.msg_rate,
        msg_throughput_in: in_.byte_rate,
        msg_rate_out: out.msg_rate,
        msg_throughput_out: out.byte_rate,
        bytes_in_counter: in_.bytes,
        msg_in_counter: in_.msgs,
        bytes_out_counter: out.bytes,
        msg_out_counter: out.msgs,
        average_msg_size: in_.average_msg_size(),
        storage_size: ml.size_bytes,
        backlog_size,
        offloaded_storage_size: 0,
        publishers,
        subscriptions,
        metadata: None,
        partitions: None,
    }
}

impl TopicStats {
    /// Adds a partition's stats into these (partitioned stats).
    pub fn add(&mut self, p: &TopicStats) {
        self.msg_rate_in += p.msg_rate_in;
        self.msg_throughput_in += p.msg_throughput_in;
        self.msg_rate_out += p.msg_rate_out;
        self.msg_throughput_out += p.msg_throughput_out;
        self.bytes_in_counter += p.bytes_in_counter;
        self.msg_in_counter += p.msg_in_counter;
        self.bytes_out_counter += p.bytes_out_counter;
        self.msg_out_counter += p.msg_out_counter;
        self.storage_size += p.storage_size;
        self.backlog_size += p.backlog_size;
        self.offloaded_storage_size += p.offloaded_storage_size;
        self.average_msg_size = if self.msg_rate_in > 0.0 {
            self.msg_throughput_in / self.msg_rate_in
        } else {
            0.0
        };
        self.publishers.extend(p.publishers.iter().cloned());
        for (name, s) in &p.subscriptions {
            match self.subscriptions.get_mut(name) {
                None => {
                    self.subscriptions.insert(name.clone(), s.clone());
                }
                Some(t) => {
                    t.msg_rate_out += s.msg_rate_out;
                    t.msg_throughput_out += s.msg_throughput_out;
                    t.bytes_out_counter += s.bytes_out_counter;
                    t.msg_out_counter += s.msg_out_counter;
                    t.msg_rate_redeliver += s.msg_rate_redeliver;
                    t.msg_backlog += s.msg_backlog;
                    t.backlog_size += s.backlog_size;
                    t.unacked_messages += s.unacked_messages;
                    t.blocked_subscription_on_unacked_msgs |=
                        s.blocked_subscription_on_unacked_msgs;
                    t.consumers.extend(s.consumers.iter().cloned());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(id: u64, entries: u64, size: u64) -> LedgerInfo {
        LedgerInfo {
            ledger_id: id,
            entries,
            size_bytes: size,
            created_ms: 0,
            closed: true,
            closed_ms: None,
        }
    }

    #[test]
    fn backlog_bytes_count_partly_consumed_ledgers_in_proportion() {
        let ledgers = [ledger(3, 10, 1000), ledger(5, 4, 40)];
        assert_eq!(bytes_after(&ledgers, Position::EARLIEST), 1040);
        assert_eq!(bytes_after(&ledgers, Position::new(3, 4)), 500 + 40);
        assert_eq!(bytes_after(&ledgers, Position::new(3, 9)), 40);
        assert_eq!(bytes_after(&ledgers, Position::new(5, 3)), 0);
    }

    #[test]
    fn partitions_add_up() {
        let sub = |backlog, consumers: usize| SubscriptionStats {
            msg_backlog: backlog,
            msg_out_counter: backlog,
            sub_type: "Shared".into(),
            consumers: vec![ConsumerStats::default(); consumers],
            ..Default::default()
        };
        let part = |n: u64, subs: &[(&str, u64)]| TopicStats {
            msg_rate_in: n as f64,
            msg_throughput_in: 100.0 * n as f64,
            msg_in_counter: n,
            storage_size: 10 * n,
            publishers: vec![PublisherStats::default()],
            subscriptions: subs
                .iter()
                .map(|(s, b)| (s.to_string(), sub(*b, 1)))
                .collect(),
            ..Default::default()
        };
        let mut total = TopicStats::default();
        total.add(&part(1, &[("a", 2)]));
        total.add(&part(3, &[("a", 5), ("b", 1)]));
        assert_eq!(total.msg_in_counter, 4);
        assert_eq!(total.storage_size, 40);
        assert_eq!(total.average_msg_size, 100.0);
        assert_eq!(total.publishers.len(), 2);
        assert_eq!(total.subscriptions["a"].msg_backlog, 7);
        assert_eq!(total.subscriptions["a"].consumers.len(), 2);
        assert_eq!(total.subscriptions["b"].msg_backlog, 1);
        let json = serde_json::to_value(&total).unwrap();
        assert!(json.get("msgRateIn").is_some(), "{json}");
        assert_eq!(json["subscriptions"]["a"]["type"], "Shared");
        assert!(json.get("partitions").is_none());
    }
}
