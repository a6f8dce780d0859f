//! The in-memory view of a managed ledger's ledgers, and position arithmetic
//! over it.
//!
//! Invariants:
//! - `ledgers` holds every ledger of the managed ledger still stored, by id
//!   (= log order);
//! - a slot's `entries` are confirmed entries: ids `0..entries` are durable
//!   and were acknowledged to their writers (for the ledger being written
//!   it grows as adds complete, always contiguously, since a ledger writer
//!   acknowledges in order);
//! - `closed` means the count is final. Only closed ledgers are skipped over
//!   by [`View::next_position`]: a position just past the end of an open
//!   ledger is where its next entry will be;
//! - `last_confirmed` is the newest confirmed entry with no unconfirmed
//!   entry before it: it never enters a ledger while an older one is still
//!   open (being drained after a rollover).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::info::LedgerInfo;
use crate::position::Position;

/// One ledger in memory.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub info: LedgerInfo,
    /// Confirmed entries of a ledger still open whose ids may be above the
    /// last-add-confirmed its bookies know (the writer tells them LAC only
    /// with later adds), so a reader could not fetch them from bookies
    /// yet. Kept until the ledger is closed; see [`View::confirm`].
    pub tail: VecDeque<(u64, Bytes)>,
    /// Every entry up to this id is known to the bookies as confirmed.
    pub bookie_lac: i64,
}

impl Slot {
    pub fn new(info: LedgerInfo) -> Self {
        Slot {
            info,
            tail: VecDeque::new(),
            bookie_lac: -1,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct View {
    pub ledgers: BTreeMap<u64, Slot>,
    pub last_confirmed: Option<Position>,
}

/// A run of entries inside one ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub ledger_id: u64,
    pub first: u64,
    pub count: u64,
}

impl View {
    pub fn from_infos(infos: impl IntoIterator<Item = LedgerInfo>) -> View {
        let mut v = View {
            ledgers: infos
                .into_iter()
                .map(|i| (i.ledger_id, Slot::new(i)))
                .collect(),
            last_confirmed: None,
        };
        v.recompute_last_confirmed();
        v
    }

    /// Recomputes `last_confirmed`; returns whether it changed.
    pub fn recompute_last_confirmed(&mut self) -> bool {
        let mut last = None;
        for (id, slot) in &self.ledgers {
            if slot.info.entries > 0 {
                last = Some(Position::new(*id, slot.info.entries - 1));
            }
            if !slot.info.closed {
                break;
            }
        }
        let changed = last != self.last_confirmed;
        self.last_confirmed = last;
        changed
    }

    /// Records that `entry_id` of `ledger_id` was confirmed (entries are
    /// confirmed in order). `bookie_lac` is a LAC the writer had sent before
    /// this add, so bookies that stored it know at least that much.
    /// Returns whether `last_confirmed` moved.
    pub fn confirm(
        &mut self,
        ledger_id: u64,
        entry_id: u64,
        data: &Bytes,
        bookie_lac: i64,
    ) -> bool {
        let Some(slot) = self.ledgers.get_mut(&ledger_id) else {
            return false;
        };
        slot.info.entries = slot.info.entries.max(entry_id + 1);
        slot.info.size_bytes += data.len() as u64;
        slot.bookie_lac = slot.bookie_lac.max(bookie_lac);
        slot.tail.push_back((entry_id, data.clone()));
        while slot
            .tail
            .front()
            .is_some_and(|(id, _)| *id as i64 <= slot.bookie_lac)
        {
            slot.tail.pop_front();
        }
        // Fast path: the confirmation extends the ledger that holds
        // last_confirmed (or the first one), with no open ledger before it.
        match self.last_confirmed {
            Some(lc) if lc.ledger_id == ledger_id => {
                self.last_confirmed = Some(Position::new(ledger_id, slot.info.entries - 1));
                true
            }
            _ => self.recompute_last_confirmed(),
        }
    }

    /// A pinned entry of an open ledger (see [`Slot::tail`]).
    pub fn tail_entry(&self, ledger_id: u64, entry_id: u64) -> Option<Bytes> {
        let tail = &self.ledgers.get(&ledger_id)?.tail;
        let first = tail.front()?.0;
        let (id, data) = tail.get(entry_id.checked_sub(first)? as usize)?;
        (*id == entry_id).then(|| data.clone())
    }

    /// The oldest pinned entry of a ledger: bookies cannot serve it (nor
    /// any later one) yet.
    pub fn first_pinned(&self, ledger_id: u64) -> Option<u64> {
        self.ledgers
            .get(&ledger_id)?
            .tail
            .front()
            .map(|(id, _)| *id)
    }

    /// Sets a ledger's final count and size; returns whether
    /// `last_confirmed` moved.
    pub fn close_ledger(
        &mut self,
        ledger_id: u64,
        entries: u64,
        size_bytes: u64,
        closed_ms: u64,
    ) -> bool {
        if let Some(slot) = self.ledgers.get_mut(&ledger_id) {
            slot.info.entries = entries;
            slot.info.size_bytes = size_bytes;
            slot.info.closed = true;
            slot.info.closed_ms = Some(closed_ms);
        }
        self.recompute_last_confirmed()
    }

    /// Drops the pinned tail of a ledger whose metadata is now closed (every
    /// entry is readable from bookies).
    pub fn unpin(&mut self, ledger_id: u64) {
        if let Some(slot) = self.ledgers.get_mut(&ledger_id) {
            slot.tail.clear();
        }
    }

    pub fn first_position(&self) -> Option<Position> {
        let lc = self.last_confirmed?;
        self.ledgers
            .iter()
            .find(|(_, s)| s.info.entries > 0)
            .map(|(id, _)| Position::new(*id, 0))
            .filter(|p| *p <= lc)
    }

    /// The position after `pos`: the next entry of its ledger, or the first
    /// of the next ledger that is open or has entries (closed empty ledgers
    /// are skipped), or just past `pos` when no later ledger exists.
    pub fn next_position(&self, pos: Position) -> Position {
        for (id, slot) in self.ledgers.range(pos.ledger_id..) {
            if *id == pos.ledger_id {
                if pos.entry_id + 1 < slot.info.entries || !slot.info.closed {
                    return Position::new(*id, pos.entry_id + 1);
                }
            } else if slot.info.entries > 0 || !slot.info.closed {
                return Position::new(*id, 0);
            }
        }
        Position::new(pos.ledger_id, pos.entry_id.saturating_add(1))
    }

    /// The smallest position `>= pos` that holds or will hold an entry:
    /// `pos` itself if it is inside its ledger (or its ledger is open),
    /// else the start of the next ledger that is open or has entries, else
    /// `pos` (the end).
    pub fn normalize(&self, pos: Position) -> Position {
        for (id, slot) in self.ledgers.range(pos.ledger_id..) {
            if *id == pos.ledger_id {
                if pos.entry_id < slot.info.entries || !slot.info.closed {
                    return pos;
                }
            } else if slot.info.entries > 0 || !slot.info.closed {
                return Position::new(*id, 0);
            }
        }
        pos
    }

    /// The position before `pos`: the previous entry of its ledger, or the
    /// last entry of the nearest older ledger with entries, or
    /// [`Position::EARLIEST`].
    pub fn previous_position(&self, pos: Position) -> Position {
        if pos.entry_id > 0 {
            return Position::new(pos.ledger_id, pos.entry_id - 1);
        }
        self.ledgers
            .range(..pos.ledger_id)
            .rev()
            .find(|(_, s)| s.info.entries > 0)
            .map(|(id, s)| Position::new(*id, s.info.entries - 1))
            .unwrap_or(Position::EARLIEST)
    }

    /// One past `last_confirmed`, where the next entry goes (as far as
    /// readers are concerned; [`View::normalize`] moves it on to a newer
    /// ledger once one exists).
    pub fn end_position(&self) -> Position {
        match self.last_confirmed {
            Some(lc) => self.next_position(lc),
            None => self.normalize(Position::EARLIEST),
        }
    }

    /// Entries in `(from_exclusive, to_inclusive]`, from per-ledger counts.
    pub fn entries_between(&self, from_exclusive: Position, to_inclusive: Position) -> u64 {
        if to_inclusive <= from_exclusive {
            return 0;
        }
        let mut n = 0;
        for (id, slot) in self
            .ledgers
            .range(from_exclusive.ledger_id..=to_inclusive.ledger_id)
        {
            let lo = if *id == from_exclusive.ledger_id {
                from_exclusive.entry_id.saturating_add(1)
            } else {
                0
            };
            let hi = if *id == to_inclusive.ledger_id {
                slot.info
                    .entries
                    .min(to_inclusive.entry_id.saturating_add(1))
            } else {
                slot.info.entries
            };
            n += hi.saturating_sub(lo);
        }
        n
    }

    /// One past a ledger's last confirmed entry (0 for a ledger after
    /// `last_confirmed`'s; `None` for one not in the view).
    pub fn confirmed_end(&self, ledger_id: u64) -> Option<u64> {
        let slot = self.ledgers.get(&ledger_id)?;
        let lc = self.last_confirmed?;
        Some(match ledger_id.cmp(&lc.ledger_id) {
            std::cmp::Ordering::Less => slot.info.entries,
            std::cmp::Ordering::Equal => lc.entry_id + 1,
            std::cmp::Ordering::Greater => 0,
        })
    }

    /// The confirmed entries from `from` (normalized) to `last_confirmed`,
    /// as runs per ledger.
    pub fn segments_from(&self, from: Position) -> Vec<Segment> {
        let Some(lc) = self.last_confirmed else {
            return Vec::new();
        };
        let from = self.normalize(from);
        let mut out = Vec::new();
        if from > lc {
            return out;
        }
        for id in self
            .ledgers
            .range(from.ledger_id..=lc.ledger_id)
            .map(|(id, _)| *id)
        {
            let first = if id == from.ledger_id {
                from.entry_id
            } else {
                0
            };
            let end = self.confirmed_end(id).unwrap_or(0);
            if end > first {
                out.push(Segment {
                    ledger_id: id,
                    first,
                    count: end - first,
                });
            }
        }
        out
    }

    pub fn total_entries(&self) -> u64 {
        self.ledgers.values().map(|s| s.info.entries).sum()
    }

    pub fn total_size(&self) -> u64 {
        self.ledgers.values().map(|s| s.info.size_bytes).sum()
    }

    pub fn infos(&self) -> Vec<LedgerInfo> {
        self.ledgers.values().map(|s| s.info.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u64, entries: u64, closed: bool) -> LedgerInfo {
        LedgerInfo {
            ledger_id: id,
            entries,
            size_bytes: entries * 10,
            created_ms: 0,
            closed,
            closed_ms: None,
        }
    }

    fn p(l: u64, e: u64) -> Position {
        Position::new(l, e)
    }

    /// Ledgers 3 (5 entries), 4 (empty), 6 (3 entries), 9 (open, 2 entries).
    fn view() -> View {
        View::from_infos([
            info(3, 5, true),
            info(4, 0, true),
            info(6, 3, true),
            info(9, 2, false),
        ])
    }

    #[test]
    fn positions_cross_ledgers_and_skip_empty_ones() {
        let v = view();
        assert_eq!(v.last_confirmed, Some(p(9, 1)));
        assert_eq!(v.first_position(), Some(p(3, 0)));
        assert_eq!(v.next_position(p(3, 3)), p(3, 4));
        assert_eq!(v.next_position(p(3, 4)), p(6, 0));
        assert_eq!(v.next_position(p(6, 2)), p(9, 0));
        assert_eq!(v.next_position(p(9, 1)), p(9, 2));
        assert_eq!(v.next_position(Position::EARLIEST), p(3, 0));
        assert_eq!(v.end_position(), p(9, 2));
        assert_eq!(v.normalize(p(3, 5)), p(6, 0));
        assert_eq!(v.normalize(p(5, 0)), p(6, 0));
        assert_eq!(v.normalize(p(9, 7)), p(9, 7));
        assert_eq!(v.previous_position(p(6, 0)), p(3, 4));
        assert_eq!(v.previous_position(p(3, 0)), Position::EARLIEST);
        assert_eq!(v.previous_position(p(6, 2)), p(6, 1));
    }

    #[test]
    fn counts_between_positions() {
        let v = view();
        assert_eq!(v.entries_between(Position::EARLIEST, p(9, 1)), 10);
        assert_eq!(v.entries_between(p(3, 4), p(9, 1)), 5);
        assert_eq!(v.entries_between(p(3, 1), p(6, 0)), 4);
        assert_eq!(v.entries_between(p(9, 1), p(9, 1)), 0);
        assert_eq!(v.entries_between(p(9, 1), p(3, 1)), 0);
        assert!(v.segments_from(p(9, 2)).is_empty());
        assert!(v.segments_from(p(12, 0)).is_empty());
        assert_eq!(
            v.segments_from(p(3, 3)),
            vec![
                Segment {
                    ledger_id: 3,
                    first: 3,
                    count: 2
                },
                Segment {
                    ledger_id: 6,
                    first: 0,
                    count: 3
                },
                Segment {
                    ledger_id: 9,
                    first: 0,
                    count: 2
                },
            ]
        );
    }

    #[test]
    fn last_confirmed_waits_for_an_older_open_ledger() {
        let mut v = View::from_infos([info(3, 5, false), info(4, 0, false)]);
        assert_eq!(v.last_confirmed, Some(p(3, 4)));
        let d = Bytes::from_static(b"x");
        // The new ledger's first entry is confirmed before the old one closed.
        assert!(!v.confirm(4, 0, &d, -1));
        assert_eq!(v.last_confirmed, Some(p(3, 4)));
        assert!(v.confirm(3, 5, &d, 4));
        assert_eq!(v.last_confirmed, Some(p(3, 5)));
        assert!(v.close_ledger(3, 6, 60, 0));
        assert_eq!(v.last_confirmed, Some(p(4, 0)));
        assert!(v.confirm(4, 1, &d, 0));
        assert_eq!(v.last_confirmed, Some(p(4, 1)));
        // Entry 0 is at or below the bookies' LAC, entry 1 is pinned.
        assert_eq!(v.tail_entry(4, 0), None);
        assert_eq!(v.tail_entry(4, 1), Some(d));
    }
}
