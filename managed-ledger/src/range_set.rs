//! Sets of acknowledged positions, kept as ranges.
//!
//! [`RangeSet`] holds u64 values as disjoint, non-adjacent inclusive ranges
//! (inserting `3..=4` next to `5..=9` leaves one range `3..=9`).
//! [`PositionRangeSet`] holds positions as one `RangeSet` of entry ids per
//! ledger: a range never spans two ledgers, because whether `(L, last)` and
//! `(L', 0)` are adjacent depends on the ledger list, which this module does
//! not know. Cursors store their individually acknowledged entries here and
//! persist them as `[ledger, first, last]` triples.

use std::collections::BTreeMap;

use crate::position::Position;

/// Disjoint, non-adjacent inclusive ranges of u64, keyed by start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    pub fn new() -> Self {
        RangeSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of ranges.
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// The ranges, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(s, e)| (*s, *e))
    }

    /// The range holding `x`.
    pub fn range_containing(&self, x: u64) -> Option<(u64, u64)> {
        let (s, e) = self.ranges.range(..=x).next_back()?;
        (x <= *e).then_some((*s, *e))
    }

    pub fn contains(&self, x: u64) -> bool {
        self.range_containing(x).is_some()
    }

    /// Adds `start..=end` (nothing if `start > end`), merging with
    /// overlapping and adjacent ranges.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start > end {
            return;
        }
        let (mut lo, mut hi) = (start, end);
        // A range starting before `start` that reaches it (or touches it).
        if let Some((s, e)) = self
            .ranges
            .range(..start)
            .next_back()
            .map(|(s, e)| (*s, *e))
            && e.saturating_add(1) >= start
        {
            lo = s;
            hi = hi.max(e);
            self.ranges.remove(&s);
        }
        // Ranges starting inside `lo..=hi+1` are swallowed.
        loop {
            let next = self
                .ranges
                .range(lo..)
                .next()
                .map(|(s, e)| (*s, *e))
                .filter(|(s, _)| *s <= hi.saturating_add(1));
            let Some((s, e)) = next else { break };
            hi = hi.max(e);
            self.ranges.remove(&s);
        }
        self.ranges.insert(lo, hi);
    }

    /// Removes every value `<= x`.
    pub fn remove_through(&mut self, x: u64) {
        let mut keep = self.ranges.split_off(&x.saturating_add(1));
        if x == u64::MAX {
            keep.clear();
        }
        if let Some((_, e)) = self.ranges.iter().next_back()
            && *e > x
        {
            keep.insert(x + 1, *e);
        }
        self.ranges = keep;
    }

    /// Number of values in `lo..=hi`.
    pub fn count_in(&self, lo: u64, hi: u64) -> u64 {
        if lo > hi {
            return 0;
        }
        let mut n = 0;
        // The range that may start before `lo`, then those starting inside.
        let first = self.range_containing(lo).map(|(s, _)| s).unwrap_or(lo);
        for (s, e) in self.ranges.range(first..=hi) {
            let (a, b) = ((*s).max(lo), (*e).min(hi));
            if a <= b {
                n += b - a + 1;
            }
        }
        n
    }
}

/// Positions as per-ledger [`RangeSet`]s of entry ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PositionRangeSet {
    ledgers: BTreeMap<u64, RangeSet>,
}

impl PositionRangeSet {
    pub fn new() -> Self {
        PositionRangeSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.ledgers.is_empty()
    }

    pub fn clear(&mut self) {
        self.ledgers.clear();
    }

    /// Number of ranges.
    pub fn range_count(&self) -> usize {
        self.ledgers.values().map(RangeSet::range_count).sum()
    }

    pub fn insert(&mut self, p: Position) {
        self.insert_range(p.ledger_id, p.entry_id, p.entry_id);
    }

    /// Adds entries `first..=last` of `ledger_id`.
    pub fn insert_range(&mut self, ledger_id: u64, first: u64, last: u64) {
        if first <= last {
            self.ledgers
                .entry(ledger_id)
                .or_default()
                .insert(first, last);
        }
    }

    pub fn contains(&self, p: Position) -> bool {
        self.ledgers
            .get(&p.ledger_id)
            .is_some_and(|r| r.contains(p.entry_id))
    }

    /// The last position of the range holding `p`.
    pub fn range_end(&self, p: Position) -> Option<Position> {
        let (_, e) = self
            .ledgers
            .get(&p.ledger_id)?
            .range_containing(p.entry_id)?;
        Some(Position::new(p.ledger_id, e))
    }

    /// Removes every position `<= p`.
    pub fn remove_through(&mut self, p: Position) {
        let mut keep = self.ledgers.split_off(&p.ledger_id);
        if let Some(r) = keep.get_mut(&p.ledger_id) {
            r.remove_through(p.entry_id);
            if r.is_empty() {
                keep.remove(&p.ledger_id);
            }
        }
        self.ledgers = keep;
    }

    /// Number of positions `<= p`.
    pub fn count_through(&self, p: Position) -> u64 {
        let mut n = 0;
        for (l, r) in self.ledgers.range(..=p.ledger_id) {
            n += if *l == p.ledger_id {
                r.count_in(0, p.entry_id)
            } else {
                r.count_in(0, u64::MAX)
            };
        }
        n
    }

    /// The ranges as `[ledger, first, last]`, in order.
    pub fn to_triples(&self) -> Vec<[u64; 3]> {
        self.ledgers
            .iter()
            .flat_map(|(l, r)| r.iter().map(move |(s, e)| [*l, s, e]))
            .collect()
    }

    /// The inverse of [`PositionRangeSet::to_triples`]; triples with
    /// `first > last` are skipped.
    pub fn from_triples(triples: &[[u64; 3]]) -> Self {
        let mut set = PositionRangeSet::new();
        for [l, s, e] in triples {
            set.insert_range(*l, *s, *e);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(r: &RangeSet) -> Vec<(u64, u64)> {
        r.iter().collect()
    }

    #[test]
    fn insert_merges_overlapping_and_adjacent() {
        let mut r = RangeSet::new();
        r.insert(5, 9);
        r.insert(20, 20);
        assert_eq!(ranges(&r), vec![(5, 9), (20, 20)]);
        r.insert(3, 4); // adjacent below
        r.insert(10, 10); // adjacent above
        assert_eq!(ranges(&r), vec![(3, 10), (20, 20)]);
        r.insert(12, 18);
        assert_eq!(ranges(&r), vec![(3, 10), (12, 18), (20, 20)]);
        r.insert(11, 19); // bridges all three
        assert_eq!(ranges(&r), vec![(3, 20)]);
        r.insert(0, 100); // swallows
        assert_eq!(ranges(&r), vec![(0, 100)]);
        r.insert(50, 60); // inside
        assert_eq!(ranges(&r), vec![(0, 100)]);
        r.insert(9, 3); // empty
        assert_eq!(ranges(&r), vec![(0, 100)]);
        r.insert(u64::MAX - 1, u64::MAX);
        r.insert(102, u64::MAX - 2);
        assert_eq!(ranges(&r), vec![(0, 100), (102, u64::MAX)]);
    }

    #[test]
    fn contains_and_range_containing() {
        let mut r = RangeSet::new();
        r.insert(5, 9);
        r.insert(15, 15);
        assert!(!r.contains(4));
        assert!(r.contains(5) && r.contains(9) && r.contains(15));
        assert!(!r.contains(10) && !r.contains(16));
        assert_eq!(r.range_containing(7), Some((5, 9)));
        assert_eq!(r.range_containing(12), None);
    }

    #[test]
    fn remove_through_truncates() {
        let mut r = RangeSet::new();
        r.insert(5, 9);
        r.insert(15, 20);
        r.remove_through(4);
        assert_eq!(ranges(&r), vec![(5, 9), (15, 20)]);
        r.remove_through(7);
        assert_eq!(ranges(&r), vec![(8, 9), (15, 20)]);
        r.remove_through(9);
        assert_eq!(ranges(&r), vec![(15, 20)]);
        r.remove_through(17);
        assert_eq!(ranges(&r), vec![(18, 20)]);
        r.remove_through(u64::MAX);
        assert!(r.is_empty());
    }

    #[test]
    fn count_in_counts_partial_overlaps() {
        let mut r = RangeSet::new();
        r.insert(5, 9);
        r.insert(15, 20);
        assert_eq!(r.count_in(0, u64::MAX), 11);
        assert_eq!(r.count_in(7, 16), 5);
        assert_eq!(r.count_in(10, 14), 0);
        assert_eq!(r.count_in(9, 9), 1);
        assert_eq!(r.count_in(9, 8), 0);
    }

    #[test]
    fn position_sets_keep_ledgers_apart() {
        let mut s = PositionRangeSet::new();
        s.insert(Position::new(1, 9));
        s.insert(Position::new(2, 0));
        // Not merged across ledgers.
        assert_eq!(s.range_count(), 2);
        s.insert(Position::new(2, 1));
        s.insert_range(3, 4, 6);
        assert_eq!(s.to_triples(), vec![[1, 9, 9], [2, 0, 1], [3, 4, 6]]);
        assert_eq!(s.range_end(Position::new(2, 0)), Some(Position::new(2, 1)));
        assert_eq!(s.count_through(Position::new(3, 5)), 5);
        assert_eq!(s.count_through(Position::new(2, 0)), 2);
        s.remove_through(Position::new(2, 0));
        assert_eq!(s.to_triples(), vec![[2, 1, 1], [3, 4, 6]]);
        assert!(s.contains(Position::new(3, 6)));
        assert!(!s.contains(Position::new(1, 9)));
        let back = PositionRangeSet::from_triples(&s.to_triples());
        assert_eq!(back, s);
        s.remove_through(Position::new(9, 0));
        assert!(s.is_empty());
    }
}
