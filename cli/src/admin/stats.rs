//! Readable renderings of Pulsar's topic stats JSON: TopicStats,
//! PartitionedTopicStats and PersistentTopicInternalStats.
//!
//! Each rendering is a field/value block of the top-level numbers
//! followed by one table per list (publishers, subscriptions with their
//! backlog, consumers; ledgers and cursors for internal stats). Fields are
//! looked up by Pulsar's names and a missing one shows as `-`, so a server
//! that reports less (or more) still renders; `--json` shows everything.

use serde_json::Value;

use super::table::{Table, cell, key_values, scalar_fields};

/// Top-level TopicStats numbers, in the order they are worth reading.
const TOPIC_FIELDS: &[&str] = &[
    "msgRateIn",
    "msgThroughputIn",
    "msgRateOut",
    "msgThroughputOut",
    "msgInCounter",
    "bytesInCounter",
    "msgOutCounter",
    "bytesOutCounter",
    "averageMsgSize",
    "storageSize",
    "backlogSize",
];

const INTERNAL_FIELDS: &[&str] = &[
    "entriesAddedCounter",
    "numberOfEntries",
    "totalSize",
    "currentLedgerEntries",
    "currentLedgerSize",
    "lastLedgerCreatedTimestamp",
    "lastConfirmedEntry",
    "state",
];

/// `title:` and the table, or `title: none`.
fn section(title: &str, table: &Table) -> String {
    if table.is_empty() {
        format!("\n{title}: none\n")
    } else {
        format!("\n{title}:\n{}", table.render())
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get(name)
}

/// The entries of a JSON object (subscriptions, cursors, partitions are
/// maps keyed by name); nothing for anything else.
fn entries(v: Option<&Value>) -> Vec<(&String, &Value)> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().collect())
        .unwrap_or_default()
}

fn items(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn publishers(stats: &Value) -> Table {
    let mut t = Table::new(&[
        "PRODUCER",
        "ID",
        "ACCESS MODE",
        "MSG/S IN",
        "BYTES/S IN",
        "ADDRESS",
        "CONNECTED SINCE",
    ]);
    for p in items(field(stats, "publishers")) {
        t.row(
            [
                "producerName",
                "producerId",
                "accessMode",
                "msgRateIn",
                "msgThroughputIn",
                "address",
                "connectedSince",
            ]
            .iter()
            .map(|f| cell(field(p, f)))
            .collect(),
        );
    }
    t
}

/// Subscriptions with their backlog, and every subscription's consumers.
fn subscriptions(stats: &Value) -> (Table, Table) {
    let mut subs = Table::new(&[
        "SUBSCRIPTION",
        "TYPE",
        "BACKLOG",
        "UNACKED",
        "MSG/S OUT",
        "EXPIRED/S",
        "CONSUMERS",
    ]);
    let mut consumers = Table::new(&[
        "SUBSCRIPTION",
        "CONSUMER",
        "MSG/S OUT",
        "PERMITS",
        "UNACKED",
        "ADDRESS",
        "CONNECTED SINCE",
    ]);
    for (name, s) in entries(field(stats, "subscriptions")) {
        let list = items(field(s, "consumers"));
        subs.row(vec![
            name.clone(),
            cell(field(s, "type")),
            cell(field(s, "msgBacklog")),
            cell(field(s, "unackedMessages")),
            cell(field(s, "msgRateOut")),
            cell(field(s, "msgRateExpired")),
            list.len().to_string(),
        ]);
        for c in list {
            let mut row = vec![name.clone()];
            row.extend(
                [
                    "consumerName",
                    "msgRateOut",
                    "availablePermits",
                    "unackedMessages",
                    "address",
                    "connectedSince",
                ]
                .iter()
                .map(|f| cell(field(c, f))),
            );
            consumers.row(row);
        }
    }
    (subs, consumers)
}

/// The body of TopicStats (shared by the partitioned rendering).
fn topic_body(stats: &Value, header: Vec<(String, String)>) -> String {
    let mut fields = header;
    fields.extend(scalar_fields(stats, TOPIC_FIELDS));
    let mut out = key_values(&fields);
    out.push_str(&section("Publishers", &publishers(stats)));
    let (subs, consumers) = subscriptions(stats);
    out.push_str(&section("Subscriptions", &subs));
    out.push_str(&section("Consumers", &consumers));
    out
}

/// `topics stats`.
pub fn render_topic_stats(stats: &Value) -> String {
    topic_body(stats, Vec::new())
}

/// `topics partitioned-stats`: the sums, then one line per partition when
/// the server included them.
pub fn render_partitioned_stats(stats: &Value) -> String {
    let header = vec![(
        "partitions".to_string(),
        cell(stats.get("metadata").and_then(|m| m.get("partitions"))),
    )];
    let mut out = topic_body(stats, header);
    let parts = entries(field(stats, "partitions"));
    if !parts.is_empty() {
        let mut t = Table::new(&[
            "PARTITION",
            "MSG/S IN",
            "MSG/S OUT",
            "MSG IN",
            "MSG OUT",
            "STORAGE SIZE",
            "PUBLISHERS",
            "SUBSCRIPTIONS",
        ]);
        for (name, p) in parts {
            let mut row = vec![name.clone()];
            row.extend(
                [
                    "msgRateIn",
                    "msgRateOut",
                    "msgInCounter",
                    "msgOutCounter",
                    "storageSize",
                ]
                .iter()
                .map(|f| cell(field(p, f))),
            );
            row.push(items(field(p, "publishers")).len().to_string());
            row.push(entries(field(p, "subscriptions")).len().to_string());
            t.row(row);
        }
        out.push_str(&section("Partitions", &t));
    }
    out
}

/// `topics internal-stats`: the managed ledger's numbers, its ledgers and
/// its cursors.
pub fn render_internal_stats(stats: &Value) -> String {
    let mut out = key_values(&scalar_fields(stats, INTERNAL_FIELDS));
    let mut ledgers = Table::new(&["LEDGER", "ENTRIES", "SIZE", "OFFLOADED"]);
    for l in items(field(stats, "ledgers")) {
        ledgers.row(
            ["ledgerId", "entries", "size", "offloaded"]
                .iter()
                .map(|f| cell(field(l, f)))
                .collect(),
        );
    }
    out.push_str(&section("Ledgers", &ledgers));
    let mut cursors = Table::new(&[
        "CURSOR",
        "MARK DELETE",
        "READ POSITION",
        "CONSUMED",
        "ACTIVE",
        "STATE",
        "INDIVIDUALLY DELETED",
    ]);
    for (name, c) in entries(field(stats, "cursors")) {
        let mut row = vec![name.clone()];
        row.extend(
            [
                "markDeletePosition",
                "readPosition",
                "messagesConsumedCounter",
                "active",
                "state",
                "individuallyDeletedMessages",
            ]
            .iter()
            .map(|f| cell(field(c, f))),
        );
        cursors.row(row);
    }
    out.push_str(&section("Cursors", &cursors));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stats() -> Value {
        json!({
            "msgRateIn": 10.5,
            "msgInCounter": 42,
            "storageSize": 2048,
            "publishers": [{
                "producerName": "standalone-0-1",
                "producerId": 0,
                "accessMode": "Shared",
                "msgRateIn": 10.5,
                "address": "/127.0.0.1:50000",
            }],
            "subscriptions": {
                "billing": {
                    "type": "Shared",
                    "msgBacklog": 7,
                    "unackedMessages": 2,
                    "consumers": [
                        {"consumerName": "c1", "availablePermits": 998},
                        {"consumerName": "c2", "availablePermits": 1000},
                    ],
                },
                "audit": {"type": "Exclusive", "msgBacklog": 42, "consumers": []},
            },
        })
    }

    fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no line starting {needle:?} in\n{text}"))
    }

    #[test]
    fn topic_stats_show_publishers_subscriptions_and_consumers() {
        let text = render_topic_stats(&stats());
        assert!(line_with(&text, "msgRateIn").ends_with("10.50"), "{text}");
        assert!(line_with(&text, "msgInCounter").ends_with(" 42"), "{text}");
        let p = line_with(&text, "standalone-0-1");
        assert!(
            p.contains("Shared") && p.contains("/127.0.0.1:50000"),
            "{p}"
        );
        let billing: Vec<&str> = line_with(&text, "billing ").split_whitespace().collect();
        assert_eq!(billing, ["billing", "Shared", "7", "2", "-", "-", "2"]);
        let audit: Vec<&str> = line_with(&text, "audit ").split_whitespace().collect();
        assert_eq!(audit, ["audit", "Exclusive", "42", "-", "-", "-", "0"]);
        let c1: Vec<&str> = text
            .lines()
            .find(|l| l.contains(" c1 "))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(c1, ["billing", "c1", "-", "998", "-", "-", "-"]);
    }

    #[test]
    fn empty_lists_say_none() {
        let text = render_topic_stats(&json!({"msgRateIn": 0.0}));
        for title in ["Publishers: none", "Subscriptions: none", "Consumers: none"] {
            assert!(text.contains(title), "{text}");
        }
    }

    #[test]
    fn partitioned_stats_show_the_partition_count_and_each_partition() {
        let mut s = stats();
        s["metadata"] = json!({"partitions": 2});
        s["partitions"] = json!({
            "persistent://t/ns/x-partition-0": {"msgInCounter": 40, "publishers": [{}]},
            "persistent://t/ns/x-partition-1": {"msgInCounter": 2},
        });
        let text = render_partitioned_stats(&s);
        assert!(line_with(&text, "partitions").ends_with(" 2"), "{text}");
        let p0: Vec<&str> = line_with(&text, "persistent://t/ns/x-partition-0")
            .split_whitespace()
            .collect();
        assert_eq!(p0[3], "40");
        assert_eq!(p0[6], "1");
        assert!(text.contains("Partitions:"), "{text}");
    }

    #[test]
    fn internal_stats_show_ledgers_and_cursors() {
        let text = render_internal_stats(&json!({
            "entriesAddedCounter": 5,
            "state": "LedgerOpened",
            "ledgers": [{"ledgerId": 3, "entries": 5, "size": 500, "offloaded": false}],
            "cursors": {"billing": {"markDeletePosition": "3:1", "readPosition": "3:2",
                                    "messagesConsumedCounter": 2, "active": true}},
        }));
        assert!(line_with(&text, "entriesAddedCounter").ends_with(" 5"));
        let l: Vec<&str> = text
            .lines()
            .find(|l| l.trim_start().starts_with('3'))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(l, ["3", "5", "500", "false"]);
        let c: Vec<&str> = line_with(&text, "billing").split_whitespace().collect();
        assert_eq!(c, ["billing", "3:1", "3:2", "2", "true", "-", "-"]);
    }
}
