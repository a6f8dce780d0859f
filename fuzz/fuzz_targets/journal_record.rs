//! Arbitrary bytes as a bookie journal file, replayed the way the bookie
//! replays its journal at start-up: `journal::replay_bytes` (the parser
//! `Journal::open` runs over every file) with each record decoded by
//! `storage::decode_journal_add`.
//!
//! The first input byte steers the harness, the rest is the file:
//! - bit 0: put a valid file header in front (so mutations go to records);
//!   bit 3 makes it an `STRJRNL1` header (unmasked checksums) instead of the
//!   current format's;
//! - bit 1: correct the CRC32C of the first `byte 1` records the harness can
//!   walk, masked as the header says (a fuzzer cannot forge checksums, and
//!   multi-record files need them);
//! - bit 2: replay from the offset in the next 8 bytes (LE), as from a
//!   checkpoint, instead of just past the header.
//!
//! Checked, beyond "never panics": records are contiguous, in range and
//! match their checksum; a torn or corrupt record stops the scan at an
//! offset inside the file, and the file cut there replays the same records
//! with a clean end (what the bookie does with an `STRJRNL1` file after a
//! crash; it leaves current-format files as they are); the records written
//! to a fresh file replay identically; a decoded add record re-encodes to its
//! bytes; no allocation is larger than the input justifies (no length field
//! is trusted before it is checked against the bytes present).

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strata_bookie::error::Result;
use strata_bookie::journal::{
    HEADER_LEN, MAGIC, MAGIC_V1, MAX_RECORD_LEN, RECORD_HEADER, ReplayEnd, ReplayedFile,
    ReplayedRecord, crc_mask, header_mask, replay_bytes,
};
use strata_bookie::storage::{decode_journal_add, encode_journal_head};
use strata_fuzz::LargestAlloc;

strata_fuzz::use_largest_alloc!();

const SEQ: u64 = 7;

fuzz_target!(|input: &[u8]| {
    let Some((&flags, mut rest)) = input.split_first() else {
        return;
    };
    let mut fix_crcs = 0;
    if flags & 2 != 0 {
        let Some((&n, r)) = rest.split_first() else {
            return;
        };
        fix_crcs = usize::from(n);
        rest = r;
    }
    let mut start = HEADER_LEN;
    if flags & 4 != 0 {
        let Some((offset, r)) = rest.split_first_chunk::<8>() else {
            return;
        };
        // As `Journal::open` does with a checkpoint's offset.
        start = u64::from_le_bytes(*offset).max(HEADER_LEN);
        rest = r;
    }
    let mut file = Vec::with_capacity(HEADER_LEN as usize + rest.len());
    if flags & 1 != 0 {
        file.extend_from_slice(if flags & 8 != 0 { MAGIC_V1 } else { MAGIC });
        file.extend_from_slice(&SEQ.to_le_bytes());
    }
    file.extend_from_slice(rest);
    let mask = header_mask(&file, SEQ);
    fix_checksums(&mut file, start, fix_crcs, mask.unwrap_or(0));

    let ((result, records), largest) = LargestAlloc::measure(|| replay(&file, start));
    let bound = 8 * file.len() + 4096;
    assert!(
        largest <= bound,
        "allocated {largest} bytes (bound {bound})"
    );
    let replayed = match result {
        Ok(r) => r,
        // Only `apply` fails, and only on a record that is not an add: the
        // bookie refuses to start rather than skip an acknowledged record.
        Err(e) => {
            assert!(e.to_string().contains("journal record"), "{e}");
            return;
        }
    };
    assert_eq!(replayed.records as usize, records.len());
    check_records(&file, start, &records, mask.unwrap_or(0));
    match replayed.end {
        ReplayEnd::NoHeader => {
            assert!(records.is_empty());
            assert_eq!(mask, None);
        }
        ReplayEnd::Clean => {}
        ReplayEnd::Torn { offset, reason } | ReplayEnd::Ended { offset, reason } => {
            let v1 = matches!(replayed.end, ReplayEnd::Torn { .. });
            assert_eq!(v1, file.starts_with(MAGIC_V1), "cut only old-format files");
            assert!(!reason.is_empty());
            let after_last = records.last().map_or(start, |r| r.end.offset);
            assert_eq!(
                offset, after_last,
                "cut elsewhere than after the last good record"
            );
            assert!(offset <= file.len() as u64, "cut past the end of the file");
            // Cut there (as the bookie cuts an old-format file), it replays
            // the same records and ends cleanly.
            let (again, again_records) = replay(&file[..offset as usize], start);
            let again = again.expect("records that replayed once replay again");
            assert_eq!(again.end, ReplayEnd::Clean);
            assert_eq!(bodies(&again_records), bodies(&records));
        }
    }
    // The same records written to a fresh file replay identically.
    let mut fresh = Vec::new();
    fresh.extend_from_slice(MAGIC);
    fresh.extend_from_slice(&SEQ.to_le_bytes());
    for r in &records {
        fresh.extend_from_slice(&(r.body.len() as u32).to_le_bytes());
        fresh.extend_from_slice(&(crc32c::crc32c(&r.body) ^ crc_mask(SEQ)).to_le_bytes());
        fresh.extend_from_slice(&r.body);
    }
    let (again, again_records) = replay(&fresh, HEADER_LEN);
    let again = again.expect("rewritten records replay");
    assert_eq!(again.end, ReplayEnd::Clean);
    assert_eq!(bodies(&again_records), bodies(&records));
});

/// Replays `file` as `LedgerStorage::open` does: each record must decode as
/// an add, or replay fails.
fn replay(file: &[u8], start: u64) -> (Result<ReplayedFile>, Vec<ReplayedRecord>) {
    let mut records = Vec::new();
    let result = replay_bytes(SEQ, file, start, &mut |r: ReplayedRecord| {
        let (op, len) = decode_journal_add(&r.body)?;
        assert_eq!(len, r.body.len());
        let head = encode_journal_head(&op);
        assert_eq!(
            [&head[..], &op.entry.payload[..]].concat(),
            r.body,
            "a decoded add does not re-encode to its record"
        );
        assert_eq!(
            op.entry.payload,
            Bytes::copy_from_slice(&r.body[head.len()..])
        );
        records.push(r);
        Ok(())
    });
    (result, records)
}

/// Records follow each other from `start`, each with a good length and CRC
/// (masked with `mask`).
fn check_records(file: &[u8], start: u64, records: &[ReplayedRecord], mask: u32) {
    let mut pos = start as usize;
    for r in records {
        assert_eq!(r.end.seq, SEQ);
        assert!((1..=MAX_RECORD_LEN).contains(&r.body.len()));
        let end = pos + RECORD_HEADER + r.body.len();
        assert_eq!(r.end.offset, end as u64, "records are not contiguous");
        let header = &file[pos..pos + RECORD_HEADER];
        assert_eq!(header[..4], (r.body.len() as u32).to_le_bytes());
        assert_eq!(header[4..], (crc32c::crc32c(&r.body) ^ mask).to_le_bytes());
        assert_eq!(&file[pos + RECORD_HEADER..end], &r.body[..]);
        pos = end;
    }
}

fn bodies(records: &[ReplayedRecord]) -> Vec<&[u8]> {
    records.iter().map(|r| &r.body[..]).collect()
}

/// Writes the right CRC32C (masked with `mask`) into the first `n` records
/// found from `start`.
fn fix_checksums(file: &mut [u8], start: u64, n: usize, mask: u32) {
    let Ok(mut pos) = usize::try_from(start) else {
        return;
    };
    for _ in 0..n {
        let Some(header) = pos
            .checked_add(RECORD_HEADER)
            .and_then(|end| file.get(pos..end))
        else {
            return;
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let body_start = pos + RECORD_HEADER;
        let Some(body) = file.get(body_start..body_start + len) else {
            return;
        };
        if len == 0 {
            return;
        }
        let crc = crc32c::crc32c(body) ^ mask;
        file[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos = body_start + len;
    }
}
