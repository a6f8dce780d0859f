//! The `internalStats` document of a topic: its managed ledger and cursors,
//! with Pulsar's field names (`PersistentTopicInternalStats`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use strata_managed_ledger::Position;

use super::format_timestamp;
use crate::topic::Topic;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InternalStats {
    pub entries_added_counter: u64,
    pub number_of_entries: u64,
    pub total_size: u64,
    pub current_ledger_entries: u64,
    pub current_ledger_size: u64,
    pub last_ledger_created_timestamp: String,
    pub waiting_cursors_count: u64,
    pub pending_add_entries_count: u64,
    pub last_confirmed_entry: String,
    pub state: String,
    pub ledgers: Vec<LedgerInternalStats>,
    pub cursors: BTreeMap<String, CursorInternalStats>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerInternalStats {
    pub ledger_id: u64,
    pub entries: u64,
    pub size: u64,
    pub offloaded: bool,
    pub under_replicated: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CursorInternalStats {
    pub mark_delete_position: String,
    pub read_position: String,
    pub waiting_read_op: bool,
    pub pending_read_ops: u64,
    pub messages_consumed_counter: u64,
    pub cursor_ledger: i64,
    pub cursor_ledger_last_entry: i64,
    pub individually_deleted_messages: String,
    pub last_ledger_switch_timestamp: String,
    pub state: String,
    pub number_of_entries_since_first_not_acked_message: u64,
    pub total_non_contiguous_deleted_messages_range: u64,
    pub properties: BTreeMap<String, String>,
}

/// `L:E`; the "nothing" position ([`Position::EARLIEST`]) as Pulsar shows a
/// position before the first entry of ledger `first_ledger`: `L:-1`.
fn position_text(p: Position, first_ledger: Option<u64>) -> String {
    if p == Position::EARLIEST {
        match first_ledger {
            Some(l) => format!("{l}:-1"),
            None => "-1:-1".into(),
        }
    } else {
        p.to_string()
    }
}

/// Pulsar's rendering of individually acknowledged ranges: each range of
/// entries `first..=last` of ledger `L` as the open-closed `(L:first-1..L:last]`.
pub fn individually_deleted(ranges: &[[u64; 3]]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .map(|[l, first, last]| format!("({l}:{}..{l}:{last}]", *first as i64 - 1))
        .collect();
    format!("[{}]", parts.join(", "))
}

pub async fn internal_stats(topic: &Topic) -> InternalStats {
    let ml = topic.ml.stats();
    let current = topic.ml.current_ledger().await;
    let first_ledger = ml.ledgers.first().map(|l| l.ledger_id);
    let current_info = match current {
        Some(id) => ml.ledgers.iter().find(|l| l.ledger_id == id),
        None => ml.ledgers.last(),
    };
    let state = if topic.ml.is_fenced() {
        "Fenced"
    } else if topic.ml.is_closed() {
        "Closed"
    } else {
        "LedgerOpened"
    };
    let last_confirmed_entry = match ml.last_confirmed {
        Some(p) => p.to_string(),
        None => format!(
            "{}:-1",
            current
                .or(ml.ledgers.last().map(|l| l.ledger_id))
                .map_or(-1, |l| l as i64)
        ),
    };
    let mut cursors = BTreeMap::new();
    for sub in topic.subscriptions() {
        let c = &sub.cursor;
        let rec = c.state_record();
        let backlog = c.backlog();
        let since_first_unacked = match ml.last_confirmed {
            Some(lc) => topic.ml.entries_between(rec.mark_delete, lc),
            None => 0,
        };
        cursors.insert(
            sub.name.clone(),
            CursorInternalStats {
                mark_delete_position: position_text(rec.mark_delete, first_ledger),
                read_position: c.read_position().to_string(),
                waiting_read_op: false,
                pending_read_ops: 0,
                messages_consumed_counter: ml.entries.saturating_sub(backlog),
                cursor_ledger: -1,
                cursor_ledger_last_entry: -1,
                individually_deleted_messages: individually_deleted(&rec.acked_ranges),
                last_ledger_switch_timestamp: String::new(),
                state: if sub.durable { "Open" } else { "NonDurable" }.into(),
                number_of_entries_since_first_not_acked_message: since_first_unacked,
                total_non_contiguous_deleted_messages_range: rec.acked_ranges.len() as u64,
                properties: rec.properties.clone(),
            },
        );
    }
    InternalStats {
        entries_added_counter: topic.entries_added.load(Ordering::Relaxed),
        number_of_entries: ml.entries,
        total_size: ml.size_bytes,
        current_ledger_entries: current_info.map_or(0, |l| l.entries),
        current_ledger_size: current_info.map_or(0, |l| l.size_bytes),
        last_ledger_created_timestamp: ml
            .ledgers
            .last()
            .map(|l| format_timestamp(l.created_ms))
            .unwrap_or_default(),
        waiting_cursors_count: 0,
        pending_add_entries_count: 0,
        last_confirmed_entry,
        state: state.into(),
        ledgers: ml
            .ledgers
            .iter()
            .map(|l| LedgerInternalStats {
                ledger_id: l.ledger_id,
                entries: l.entries,
                size: l.size_bytes,
                // Filled in from the offload records by the admin handler.
                offloaded: false,
                under_replicated: false,
            })
            .collect(),
        cursors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_ranges_render_like_pulsar() {
        assert_eq!(position_text(Position::EARLIEST, Some(7)), "7:-1");
        assert_eq!(position_text(Position::EARLIEST, None), "-1:-1");
        assert_eq!(position_text(Position::new(7, 3), Some(7)), "7:3");
        assert_eq!(individually_deleted(&[]), "[]");
        assert_eq!(
            individually_deleted(&[[3, 0, 0], [3, 5, 7]]),
            "[(3:-1..3:0], (3:4..3:7]]"
        );
    }
}
