//! The checks a bookie request passes before it touches the storage. They
//! need nothing but the request, so the gRPC handlers and the fuzzer
//! (`fuzz/fuzz_targets/bookie_request.rs`) run the same code; whatever a
//! client sends, these return a value or an error, never panic.

use strata_proto::bookie::{AddEntry, ListLedgersRequest, ReadRequest};

use crate::entrylog::StoredEntry;
use crate::error::{BookieError, Result};
use crate::storage::AddOp;

/// Most entries one read returns, and the default and largest byte budgets.
pub const MAX_READ_ENTRIES: usize = 10_000;
pub const DEFAULT_READ_BYTES: u64 = 4 << 20;
pub const MAX_READ_BYTES: u64 = 64 << 20;
/// Largest payload a single entry may carry.
pub const MAX_ENTRY_SIZE: usize = 5 << 20;
/// Ledger ids one list returns by default and at most.
pub const DEFAULT_LIST_LIMIT: usize = 1000;
pub const MAX_LIST_LIMIT: usize = 100_000;

/// A read request, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedRead {
    pub ledger_id: u64,
    /// Payload bytes after which the read stops (at least one entry is
    /// always returned); in `1..=MAX_READ_BYTES`.
    pub budget: u64,
    pub entries: ReadEntries,
}

/// Which entries a read wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadEntries {
    /// Exactly these (at most [`MAX_READ_ENTRIES`], never empty).
    List(Vec<u64>),
    /// `first..=last`, with `first <= last`.
    Range { first: u64, last: u64 },
}

/// Checks a read: a bounded list of ids, or a non-empty range.
pub fn check_read(req: ReadRequest) -> Result<CheckedRead> {
    let budget = match req.max_bytes {
        0 => DEFAULT_READ_BYTES,
        n => n.min(MAX_READ_BYTES),
    };
    if req.entry_ids.len() > MAX_READ_ENTRIES {
        return Err(BookieError::Invalid(format!(
            "at most {MAX_READ_ENTRIES} entry ids per read, got {}",
            req.entry_ids.len()
        )));
    }
    let entries = if !req.entry_ids.is_empty() {
        ReadEntries::List(req.entry_ids)
    } else if req.last_entry < req.first_entry {
        return Err(BookieError::Invalid(format!(
            "empty range: first_entry={} > last_entry={}",
            req.first_entry, req.last_entry
        )));
    } else {
        ReadEntries::Range {
            first: req.first_entry,
            last: req.last_entry,
        }
    };
    Ok(CheckedRead {
        ledger_id: req.ledger_id,
        budget,
        entries,
    })
}

/// Turns one add of an add stream into the storage's [`AddOp`]. The entry's
/// size and checksum are checked by [`check_entry`], which the storage runs
/// on every add (so the CRC is computed once).
pub fn check_add(add: AddEntry) -> Result<AddOp> {
    let entry = add
        .entry
        .ok_or_else(|| BookieError::Invalid("add without an entry".into()))?;
    Ok(AddOp {
        entry: StoredEntry {
            ledger_id: entry.ledger_id,
            entry_id: entry.entry_id,
            cumulative_length: entry.cumulative_length,
            crc32c: entry.crc32c,
            payload: entry.payload,
        },
        lac: add.lac,
        recovery: add.recovery,
    })
}

/// An entry is stored only if it fits the size limit and matches its CRC32C.
/// Returns the payload's own CRC32C when it was computed apart (see
/// [`StoredEntry::verify_payload`]).
pub fn check_entry(entry: &StoredEntry) -> Result<Option<u32>> {
    if entry.payload.len() > MAX_ENTRY_SIZE {
        return Err(BookieError::Invalid(format!(
            "entry of {} bytes exceeds the {MAX_ENTRY_SIZE} byte limit",
            entry.payload.len()
        )));
    }
    entry.verify_payload()
}

/// The number of ledger ids a list request returns at most, in
/// `1..=MAX_LIST_LIMIT` (0 asks for the default).
pub fn list_limit(req: &ListLedgersRequest) -> usize {
    match req.limit {
        0 => DEFAULT_LIST_LIMIT,
        n => (n as usize).min(MAX_LIST_LIMIT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use strata_proto::bookie::Entry;

    #[test]
    fn reads_are_bounded_and_ranges_non_empty() {
        let r = check_read(ReadRequest {
            ledger_id: 3,
            first_entry: 5,
            last_entry: 5,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.budget, DEFAULT_READ_BYTES);
        assert_eq!(r.entries, ReadEntries::Range { first: 5, last: 5 });
        let r = check_read(ReadRequest {
            entry_ids: vec![9, 1],
            first_entry: 7,
            last_entry: 0,
            max_bytes: u64::MAX,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.budget, MAX_READ_BYTES);
        assert_eq!(r.entries, ReadEntries::List(vec![9, 1]));
        for bad in [
            ReadRequest {
                first_entry: 2,
                last_entry: 1,
                ..Default::default()
            },
            ReadRequest {
                entry_ids: vec![0; MAX_READ_ENTRIES + 1],
                ..Default::default()
            },
        ] {
            assert!(matches!(check_read(bad), Err(BookieError::Invalid(_))));
        }
    }

    #[test]
    fn adds_need_an_entry_within_limits_and_its_checksum() {
        assert!(matches!(
            check_add(AddEntry::default()),
            Err(BookieError::Invalid(_))
        ));
        let payload = Bytes::from_static(b"abc");
        let entry = Entry {
            ledger_id: 1,
            entry_id: 0,
            cumulative_length: 3,
            crc32c: strata_proto::entry_crc32c(1, 0, 3, &payload),
            payload,
        };
        let op = check_add(AddEntry {
            entry: Some(entry.clone()),
            lac: -1,
            recovery: true,
        })
        .unwrap();
        assert!(op.recovery && op.lac == -1);
        check_entry(&op.entry).unwrap();
        let mut bad = op.entry;
        bad.crc32c ^= 1;
        assert!(matches!(
            check_entry(&bad),
            Err(BookieError::Checksum { .. })
        ));
        let big = Bytes::from(vec![0u8; MAX_ENTRY_SIZE + 1]);
        let crc = strata_proto::entry_crc32c(1, 0, big.len() as u64, &big);
        let big = StoredEntry {
            ledger_id: 1,
            entry_id: 0,
            cumulative_length: big.len() as u64,
            crc32c: crc,
            payload: big,
        };
        assert!(matches!(check_entry(&big), Err(BookieError::Invalid(_))));
    }

    #[test]
    fn list_limits_default_and_cap() {
        let limit = |limit| {
            list_limit(&ListLedgersRequest {
                start_after: 0,
                limit,
            })
        };
        assert_eq!(limit(0), DEFAULT_LIST_LIMIT);
        assert_eq!(limit(7), 7);
        assert_eq!(limit(u32::MAX), MAX_LIST_LIMIT);
    }
}
