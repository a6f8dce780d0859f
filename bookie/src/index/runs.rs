//! Entry locations stored a run at a time.
//!
//! A run is a ledger's consecutive entries lying in one log: one index
//! record for up to [`MAX_RUN`] entries instead of one each. It is keyed by
//! the run's *last* entry id, so a forward seek from `(ledger, entry)` lands
//! on the only run that can hold `entry`, and a reverse seek from the
//! ledger's end gives its last entry directly. A ledger's runs never
//! overlap.
//!
//! Value layout (big-endian):
//!
//! | bytes        | field                                           |
//! |--------------|-------------------------------------------------|
//! | 0            | [`RUN_TAG`]                                     |
//! | 1..9         | log id                                          |
//! | 9..17        | base offset in the log                          |
//! | 17..21       | `n`: entries covered, ending at the key's entry |
//! | then n × 8   | offset from the base (u32), record length (u32) |
//!
//! A record length of 0 is a hole: an entry id inside the run this bookie
//! does not hold (with striping, a bookie holds only some of a ledger's
//! entries). Runs never start or end with a hole.
//!
//! A value of exactly 20 bytes is a single location written before runs
//! existed (log id u64, offset u64, length u32): a run of one entry.

use crate::entrylog::Location;
use crate::error::{BookieError, Result};

pub(super) const RUN_TAG: u8 = b'R';
const RUN_HEAD: usize = 21;
const SLOT: usize = 8;
/// Most entries in one run (a record of ~8 KiB).
pub(super) const MAX_RUN: usize = 1024;
/// Longest stretch of missing entry ids a run bridges with holes.
const MAX_HOLES: u64 = 8;
/// Length of a pre-run single location.
const LEGACY_LEN: usize = 20;

fn u32_at(v: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]])
}

fn u64_at(v: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(super::arr8(&v[at..at + 8]))
}

#[cfg(test)]
pub(super) fn encode_legacy(loc: Location) -> [u8; LEGACY_LEN] {
    let mut v = [0u8; LEGACY_LEN];
    v[..8].copy_from_slice(&loc.log_id.to_be_bytes());
    v[8..16].copy_from_slice(&loc.offset.to_be_bytes());
    v[16..].copy_from_slice(&loc.len.to_be_bytes());
    v
}

/// A decoded view of one run record.
pub(super) struct RunView<'a> {
    /// Entry id of the run's first slot.
    first: u64,
    kind: Kind<'a>,
}

enum Kind<'a> {
    Single(Location),
    Run {
        log_id: u64,
        base: u64,
        slots: &'a [u8],
    },
}

impl<'a> RunView<'a> {
    /// Decodes the record keyed by entry `last`.
    pub(super) fn decode(last: u64, v: &'a [u8]) -> Result<RunView<'a>> {
        let corrupt = |why: String| BookieError::corrupt("entry index", why);
        if v.len() == LEGACY_LEN {
            let loc = Location {
                log_id: u64_at(v, 0),
                offset: u64_at(v, 8),
                len: u32_at(v, 16),
            };
            return Ok(RunView {
                first: last,
                kind: Kind::Single(loc),
            });
        }
        if v.len() < RUN_HEAD || v[0] != RUN_TAG {
            return Err(corrupt(format!("{} byte location record", v.len())));
        }
        let n = u32_at(v, 17) as usize;
        let slots = &v[RUN_HEAD..];
        if n == 0 || slots.len() != n * SLOT || (n as u64 - 1) > last {
            return Err(corrupt(format!(
                "run of {n} entries ending at {last} in {} bytes",
                v.len()
            )));
        }
        Ok(RunView {
            first: last - (n as u64 - 1),
            kind: Kind::Run {
                log_id: u64_at(v, 1),
                base: u64_at(v, 9),
                slots,
            },
        })
    }

    pub(super) fn first(&self) -> u64 {
        self.first
    }

    /// The location of `entry`, if the run holds it.
    pub(super) fn get(&self, entry: u64) -> Option<Location> {
        let i = usize::try_from(entry.checked_sub(self.first)?).ok()?;
        match &self.kind {
            Kind::Single(loc) => (i == 0).then_some(*loc),
            Kind::Run {
                log_id,
                base,
                slots,
            } => {
                let at = i.checked_mul(SLOT)?;
                if at >= slots.len() {
                    return None;
                }
                let len = u32_at(slots, at + 4);
                (len != 0).then(|| Location {
                    log_id: *log_id,
                    offset: base + u64::from(u32_at(slots, at)),
                    len,
                })
            }
        }
    }

    pub(super) fn log_id(&self) -> u64 {
        match &self.kind {
            Kind::Single(loc) => loc.log_id,
            Kind::Run { log_id, .. } => *log_id,
        }
    }

    /// Every entry the run holds, in order.
    pub(super) fn entries(&self) -> impl Iterator<Item = (u64, Location)> + '_ {
        let n = match &self.kind {
            Kind::Single(_) => 1,
            Kind::Run { slots, .. } => slots.len() / SLOT,
        };
        (0..n as u64).filter_map(move |i| {
            let e = self.first + i;
            self.get(e).map(|l| (e, l))
        })
    }
}

/// Cuts a ledger's locations, sorted by entry id, into runs; `emit` gets
/// each run's last entry id and encoded record.
pub(super) fn build(
    locs: impl IntoIterator<Item = (u64, Location)>,
    mut emit: impl FnMut(u64, &[u8]),
) {
    /// Fills in the slot count (the slots written so far) and emits.
    fn finish(buf: &mut Vec<u8>, last: u64, emit: &mut impl FnMut(u64, &[u8])) {
        let n = ((buf.len() - RUN_HEAD) / SLOT) as u32;
        buf[17..RUN_HEAD].copy_from_slice(&n.to_be_bytes());
        emit(last, buf);
        buf.clear();
    }
    let mut buf: Vec<u8> = Vec::with_capacity(RUN_HEAD + MAX_RUN * SLOT);
    // (last entry, log id, base offset) of the open run, whose slots are in `buf`.
    let mut open: Option<(u64, u64, u64)> = None;
    for (entry, loc) in locs {
        if let Some((last, log_id, base)) = open {
            let slots = ((buf.len() - RUN_HEAD) / SLOT) as u64;
            let fits = entry > last
                && entry - last - 1 <= MAX_HOLES
                && slots + (entry - last) <= MAX_RUN as u64
                && loc.log_id == log_id
                && loc.len != 0
                && loc.offset >= base
                && loc.offset - base <= u64::from(u32::MAX);
            if fits {
                for _ in last + 1..entry {
                    buf.extend_from_slice(&[0u8; SLOT]);
                }
                buf.extend_from_slice(&((loc.offset - base) as u32).to_be_bytes());
                buf.extend_from_slice(&loc.len.to_be_bytes());
                open = Some((entry, log_id, base));
                continue;
            }
            finish(&mut buf, last, &mut emit);
        }
        buf.push(RUN_TAG);
        buf.extend_from_slice(&loc.log_id.to_be_bytes());
        buf.extend_from_slice(&loc.offset.to_be_bytes());
        // The count, filled in by `finish`; then the first slot.
        buf.extend_from_slice(&[0u8; 4]);
        buf.extend_from_slice(&0u32.to_be_bytes());
        buf.extend_from_slice(&loc.len.to_be_bytes());
        open = Some((entry, loc.log_id, loc.offset));
    }
    if let Some((last, _, _)) = open {
        finish(&mut buf, last, &mut emit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(log_id: u64, offset: u64, len: u32) -> Location {
        Location {
            log_id,
            offset,
            len,
        }
    }

    fn runs(locs: &[(u64, Location)]) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        build(locs.iter().copied(), |last, v| out.push((last, v.to_vec())));
        out
    }

    #[test]
    fn consecutive_entries_make_one_run_and_read_back() {
        let locs: Vec<_> = (0..10).map(|e| (e, loc(7, 100 + e * 50, 50))).collect();
        let r = runs(&locs);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, 9);
        assert_eq!(r[0].1.len(), RUN_HEAD + 10 * SLOT);
        let view = RunView::decode(r[0].0, &r[0].1).unwrap();
        assert_eq!(view.first(), 0);
        for (e, l) in &locs {
            assert_eq!(view.get(*e), Some(*l));
        }
        assert_eq!(view.get(10), None);
        assert_eq!(view.entries().collect::<Vec<_>>(), locs);
    }

    #[test]
    fn runs_break_at_log_changes_long_gaps_offsets_and_size() {
        let mut locs = vec![(0, loc(1, 0, 10)), (1, loc(1, 10, 10))];
        // A new log.
        locs.push((2, loc(2, 0, 10)));
        // A short gap: bridged with holes.
        locs.push((5, loc(2, 30, 10)));
        // A long gap: a new run.
        locs.push((50, loc(2, 40, 10)));
        // An offset before the run's base: a new run.
        locs.push((51, loc(2, 0, 10)));
        let r = runs(&locs);
        let lasts: Vec<u64> = r.iter().map(|(l, _)| *l).collect();
        assert_eq!(lasts, vec![1, 5, 50, 51]);
        let bridged = RunView::decode(5, &r[1].1).unwrap();
        assert_eq!(bridged.first(), 2);
        assert_eq!(bridged.get(3), None);
        assert_eq!(bridged.get(4), None);
        assert_eq!(bridged.get(5), Some(loc(2, 30, 10)));
        assert_eq!(bridged.entries().count(), 2);

        let many: Vec<_> = (0..(MAX_RUN as u64 * 2 + 1))
            .map(|e| (e, loc(1, e * 10, 10)))
            .collect();
        let lasts: Vec<u64> = runs(&many).iter().map(|(l, _)| *l).collect();
        assert_eq!(
            lasts,
            vec![
                MAX_RUN as u64 - 1,
                2 * MAX_RUN as u64 - 1,
                2 * MAX_RUN as u64
            ]
        );
    }

    #[test]
    fn legacy_single_locations_decode_as_runs_of_one() {
        let l = loc(9, 1234, 77);
        let v = encode_legacy(l);
        let view = RunView::decode(42, &v).unwrap();
        assert_eq!(view.first(), 42);
        assert_eq!(view.get(42), Some(l));
        assert_eq!(view.get(41), None);
        assert_eq!(view.log_id(), 9);
    }

    #[test]
    fn corrupt_records_are_errors() {
        assert!(RunView::decode(5, &[RUN_TAG; 3]).is_err());
        let mut out = Vec::new();
        build([(3, loc(1, 0, 10)), (4, loc(1, 10, 10))], |l, v| {
            out.push((l, v.to_vec()))
        });
        let (_, mut v) = out.pop().unwrap();
        // More entries than ids up to the key.
        assert!(RunView::decode(0, &v).is_err());
        // A slot cut short.
        v.pop();
        assert!(RunView::decode(4, &v).is_err());
        v[0] = b'X';
        assert!(RunView::decode(4, &v).is_err());
    }
}
