//! A cursor's acknowledgement state and its persisted record.
//!
//! Invariants:
//! - every position `<= mark_delete` is acknowledged;
//! - `acked` (individually acknowledged entries) and `batch` (entries of
//!   which only some messages are acknowledged) hold only positions
//!   `> mark_delete`, and no position is in both;
//! - `mark_delete` is moved over acknowledged entries as soon as they
//!   follow it without a gap; "follow" is [`View::next_position`], which
//!   crosses into the next ledger only once the older one is sealed, so
//!   the move may happen later than the ack ([`CursorState::advance`] is
//!   re-run when the mark-delete position is read or persisted);
//! - the effective read position is never before the entry after
//!   `mark_delete`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::position::Position;
use crate::range_set::PositionRangeSet;
use crate::view::View;

/// Individually acknowledged ranges persisted per cursor. Past this, the
/// newest ranges are not persisted: after a restart those entries are
/// delivered again (at-least-once), and the record stays small enough for
/// the metadata store.
pub const MAX_PERSISTED_RANGES: usize = 10_000;

/// A batch entry of which some messages are acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAck {
    pub position: Position,
    /// Messages still unacknowledged: bit i of word i/64 (Pulsar's ack set,
    /// `java.util.BitSet.toLongArray` order).
    pub ack_set: Vec<i64>,
}

/// The record stored at [`crate::keys::cursor`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorRecord {
    pub mark_delete: Position,
    /// Individually acknowledged entries after `mark_delete`, as
    /// `[ledger_id, first_entry, last_entry]`, sorted.
    #[serde(default)]
    pub acked_ranges: Vec<[u64; 3]>,
    #[serde(default)]
    pub batch_acks: Vec<BatchAck>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// When it was written, ms since the Unix epoch.
    #[serde(default)]
    pub updated_ms: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct CursorState {
    pub mark_delete: Position,
    pub read_position: Position,
    pub acked: PositionRangeSet,
    pub batch: BTreeMap<Position, Vec<i64>>,
    pub properties: BTreeMap<String, String>,
    /// Bumped by every change worth persisting.
    pub generation: u64,
    /// Bumped by every explicit move of the read position: a read that
    /// started before one must not move the read position when it ends.
    pub seek_epoch: u64,
}

impl CursorState {
    pub fn new(mark_delete: Position, read_position: Position) -> Self {
        CursorState {
            mark_delete,
            read_position,
            acked: PositionRangeSet::new(),
            batch: BTreeMap::new(),
            properties: BTreeMap::new(),
            generation: 0,
            seek_epoch: 0,
        }
    }

    /// The state a record describes; the read position restarts right
    /// after the mark-delete position.
    pub fn from_record(rec: &CursorRecord, view: &View) -> Self {
        let mut st = CursorState::new(rec.mark_delete, view.next_position(rec.mark_delete));
        st.acked = PositionRangeSet::from_triples(&rec.acked_ranges);
        st.acked.remove_through(rec.mark_delete);
        for b in &rec.batch_acks {
            if b.position > rec.mark_delete && !st.acked.contains(b.position) {
                st.batch.insert(b.position, b.ack_set.clone());
            }
        }
        st.properties = rec.properties.clone();
        st
    }

    pub fn to_record(&self, updated_ms: u64) -> CursorRecord {
        let mut acked_ranges = self.acked.to_triples();
        acked_ranges.truncate(MAX_PERSISTED_RANGES);
        CursorRecord {
            mark_delete: self.mark_delete,
            acked_ranges,
            batch_acks: self
                .batch
                .iter()
                .map(|(p, s)| BatchAck {
                    position: *p,
                    ack_set: s.clone(),
                })
                .collect(),
            properties: self.properties.clone(),
            updated_ms,
        }
    }

    pub fn is_acked(&self, pos: Position) -> bool {
        pos <= self.mark_delete || self.acked.contains(pos)
    }

    /// Where the next read starts: the read position, moved past the
    /// mark-delete position and over individually acknowledged runs.
    pub fn effective_read_position(&self, view: &View) -> Position {
        let mut rp = view.normalize(self.read_position.max(view.next_position(self.mark_delete)));
        while let Some(end) = self.acked.range_end(rp) {
            rp = view.normalize(view.next_position(end));
        }
        rp
    }

    /// Moves the mark-delete position over acknowledged entries that follow
    /// it; returns whether it moved.
    pub fn advance(&mut self, view: &View) -> bool {
        let before = self.mark_delete;
        while let Some(end) = self.acked.range_end(view.next_position(self.mark_delete)) {
            self.mark_delete = end;
            self.acked.remove_through(end);
        }
        if self.mark_delete == before {
            return false;
        }
        self.batch = self.batch.split_off(&next_after(self.mark_delete));
        self.generation += 1;
        true
    }

    /// Individual acks; returns whether the mark-delete position moved.
    /// Positions of no stored entry are ignored.
    pub fn ack(&mut self, positions: &[Position], view: &View) -> bool {
        let mut changed = false;
        for p in positions {
            if self.is_acked(*p) || !exists(view, *p) {
                continue;
            }
            self.acked.insert(*p);
            self.batch.remove(p);
            changed = true;
        }
        if changed {
            self.generation += 1;
        }
        self.advance(view)
    }

    /// Acknowledges everything up to `pos`; returns whether the mark-delete
    /// position moved.
    pub fn ack_cumulative(&mut self, pos: Position, view: &View) -> bool {
        if pos <= self.mark_delete {
            return false;
        }
        self.mark_delete = pos;
        self.acked.remove_through(pos);
        self.batch = self.batch.split_off(&next_after(pos));
        self.generation += 1;
        self.advance(view);
        true
    }

    /// Acknowledges messages of a batch entry: `remaining` is the set the
    /// consumer still has unacknowledged (Pulsar's ack set). The cursor
    /// keeps the intersection of all such sets; once it is empty the entry
    /// is acknowledged. Returns whether the mark-delete position moved.
    pub fn ack_batch(
        &mut self,
        pos: Position,
        remaining: &[i64],
        batch_size: u32,
        view: &View,
    ) -> bool {
        if self.is_acked(pos) || !exists(view, pos) || batch_size == 0 {
            return false;
        }
        let words = (batch_size as usize).div_ceil(64);
        let current = self
            .batch
            .entry(pos)
            .or_insert_with(|| full_set(batch_size));
        current.resize(words, 0);
        for (i, w) in current.iter_mut().enumerate() {
            *w &= remaining.get(i).copied().unwrap_or(0);
        }
        self.generation += 1;
        if current.iter().all(|w| *w == 0) {
            self.batch.remove(&pos);
            return self.ack(&[pos], view);
        }
        false
    }

    /// The unacknowledged messages of a partially acknowledged batch entry
    /// (trailing zero words dropped, as `BitSet.toLongArray` does).
    pub fn batch_ack_set(&self, pos: Position) -> Option<Vec<i64>> {
        let mut set = self.batch.get(&pos)?.clone();
        while set.last() == Some(&0) {
            set.pop();
        }
        Some(set)
    }

    /// For a seek: everything before `pos` is acknowledged, nothing after
    /// it, and reading restarts at `pos`.
    pub fn reset(&mut self, pos: Position, view: &View) {
        self.mark_delete = view.previous_position(pos);
        self.acked.clear();
        self.batch.clear();
        self.read_position = pos;
        self.generation += 1;
        self.seek_epoch += 1;
    }

    pub fn seek(&mut self, read_position: Position) {
        self.read_position = read_position;
        self.seek_epoch += 1;
    }

    pub fn rewind(&mut self, view: &View) {
        self.read_position = view.next_position(self.mark_delete);
        self.seek_epoch += 1;
    }

    /// Entries up to `last_confirmed` not yet acknowledged.
    pub fn backlog(&self, view: &View) -> u64 {
        let Some(lc) = view.last_confirmed else {
            return 0;
        };
        view.entries_between(self.mark_delete, lc)
            .saturating_sub(self.acked.count_through(lc))
    }
}

/// The smallest position after `p` in key order (for splitting maps).
fn next_after(p: Position) -> Position {
    match p.entry_id.checked_add(1) {
        Some(e) => Position::new(p.ledger_id, e),
        None => Position::new(p.ledger_id.saturating_add(1), 0),
    }
}

fn exists(view: &View, p: Position) -> bool {
    view.ledgers
        .get(&p.ledger_id)
        .is_some_and(|s| p.entry_id < s.info.entries)
}

/// Every message of a batch of `size` unacknowledged.
fn full_set(size: u32) -> Vec<i64> {
    let size = size as usize;
    (0..size.div_ceil(64))
        .map(|i| {
            let bits = (size - i * 64).min(64);
            if bits == 64 {
                -1
            } else {
                ((1u64 << bits) - 1) as i64
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::LedgerInfo;

    fn p(l: u64, e: u64) -> Position {
        Position::new(l, e)
    }

    /// Ledger 1: 5 entries (sealed), ledger 2: 4 entries (open).
    fn view() -> View {
        let info = |id, entries, closed| LedgerInfo {
            ledger_id: id,
            entries,
            size_bytes: entries,
            created_ms: 0,
            closed,
            closed_ms: None,
        };
        View::from_infos([info(1, 5, true), info(2, 4, false)])
    }

    #[test]
    fn individual_acks_move_mark_delete_across_ledgers() {
        let v = view();
        let mut c = CursorState::new(Position::EARLIEST, p(1, 0));
        assert_eq!(c.backlog(&v), 9);
        assert!(!c.ack(&[p(1, 1), p(1, 3), p(2, 0)], &v));
        assert_eq!(c.backlog(&v), 6);
        assert!(c.ack(&[p(1, 0)], &v));
        assert_eq!(c.mark_delete, p(1, 1));
        assert!(c.ack(&[p(1, 2), p(1, 4)], &v));
        // 1:4 is the last of ledger 1, so 2:0 follows it.
        assert_eq!(c.mark_delete, p(2, 0));
        assert_eq!(c.backlog(&v), 3);
        assert!(c.acked.is_empty());
        // Unknown positions and repeated acks change nothing.
        assert!(!c.ack(&[p(9, 9), p(2, 0), p(2, 99)], &v));
    }

    #[test]
    fn read_position_skips_acked_runs() {
        let v = view();
        let mut c = CursorState::new(Position::EARLIEST, p(1, 0));
        c.ack(&[p(1, 1), p(1, 2)], &v);
        c.read_position = p(1, 1);
        assert_eq!(c.effective_read_position(&v), p(1, 3));
        c.ack(&[p(1, 3), p(1, 4)], &v);
        assert_eq!(c.effective_read_position(&v), p(2, 0));
        c.ack(&[p(1, 0)], &v);
        assert_eq!(c.mark_delete, p(1, 4));
        c.rewind(&v);
        assert_eq!(c.read_position, p(2, 0));
    }

    #[test]
    fn cumulative_and_reset() {
        let v = view();
        let mut c = CursorState::new(Position::EARLIEST, p(1, 0));
        c.ack(&[p(2, 1)], &v);
        c.ack_batch(p(2, 3), &[0b110], 3, &v);
        assert!(c.ack_cumulative(p(2, 0), &v));
        // 2:1 was acked individually, so mark-delete moves on over it.
        assert_eq!(c.mark_delete, p(2, 1));
        assert_eq!(c.batch_ack_set(p(2, 3)), Some(vec![0b110]));
        assert!(!c.ack_cumulative(p(1, 3), &v));
        c.reset(p(1, 2), &v);
        assert_eq!(c.mark_delete, p(1, 1));
        assert_eq!(c.read_position, p(1, 2));
        assert!(c.batch.is_empty() && c.acked.is_empty());
        c.reset(p(1, 0), &v);
        assert_eq!(c.mark_delete, Position::EARLIEST);
        c.reset(p(2, 0), &v);
        assert_eq!(c.mark_delete, p(1, 4));
    }

    #[test]
    fn batch_index_acks_intersect_remaining_sets() {
        let v = view();
        let mut c = CursorState::new(p(1, 4), p(2, 0));
        // A batch of 70 messages: message 0 acked, then 1..69 acked.
        let mut remaining = full_set(70);
        remaining[0] &= !1;
        assert!(!c.ack_batch(p(2, 0), &remaining, 70, &v));
        assert!(!c.is_acked(p(2, 0)));
        let set = c.batch_ack_set(p(2, 0)).unwrap();
        assert_eq!(set[0], -2);
        assert_eq!(set[1], 0b11_1111);
        // A set acking only message 0 again, and one acking the rest: the
        // cursor keeps the intersection.
        assert!(!c.ack_batch(p(2, 0), &[-2, 0b11_1111], 70, &v));
        assert!(c.ack_batch(p(2, 0), &[1], 70, &v));
        assert!(c.is_acked(p(2, 0)));
        assert_eq!(c.mark_delete, p(2, 0));
        assert_eq!(c.batch_ack_set(p(2, 0)), None);
        assert_eq!(full_set(64), vec![-1]);
        assert_eq!(full_set(3), vec![0b111]);
    }

    #[test]
    fn record_round_trip() {
        let v = view();
        let mut c = CursorState::new(Position::EARLIEST, p(1, 0));
        c.ack(&[p(1, 2), p(1, 3), p(2, 1)], &v);
        c.ack_batch(p(2, 2), &[0b10], 2, &v);
        c.properties.insert("k".into(), "v".into());
        let rec = c.to_record(7);
        assert_eq!(rec.acked_ranges, vec![[1, 2, 3], [2, 1, 1]]);
        let json = serde_json::to_string(&rec).unwrap();
        let back: CursorRecord = serde_json::from_str(&json).unwrap();
        let r = CursorState::from_record(&back, &v);
        assert_eq!(r.mark_delete, Position::EARLIEST);
        assert_eq!(r.read_position, p(1, 0));
        assert_eq!(r.acked, c.acked);
        assert_eq!(r.batch, c.batch);
        assert_eq!(r.properties, c.properties);
        // Old records without the optional fields still load.
        let old: CursorRecord =
            serde_json::from_str(r#"{"mark_delete":{"ledger_id":1,"entry_id":2}}"#).unwrap();
        assert!(old.acked_ranges.is_empty());
    }
}
