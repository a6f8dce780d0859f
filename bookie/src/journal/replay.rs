//! Reading journal records back: the part of replay that only looks at the
//! bytes of one file. It is kept apart from the file handling so that the
//! bookie's start-up and the fuzzer (`fuzz/fuzz_targets/journal_record.rs`)
//! run the same parser.
//!
//! Invariants of [`replay_bytes`], whatever the bytes:
//! - records are applied in file order, each with a CRC32C that matches its
//!   body (masked with the file's [`super::crc_mask`] in `STRJRNL2` files)
//!   and a length in `1..=MAX_RECORD_LEN`; padding records (which align
//!   batches for direct I/O) are checked and skipped, never applied;
//! - a file whose header is not that of file `seq` (a reused file renamed
//!   before its new header was written) applies nothing;
//! - nothing is allocated beyond the bytes given (a length field is checked
//!   against the bytes present before it is used);
//! - the first impossible record stops the scan and names the offset to cut
//!   the file at, so nothing after a torn or corrupt record is ever applied.

use super::{
    JournalPos, MAGIC_V1, MAX_PAD, MAX_RECORD_LEN, PAD_CRC, PAD_FLAG, RECORD_HEADER,
    ReplayedRecord, header_mask,
};
use crate::error::Result;

/// How the scan of one journal file ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayEnd {
    /// The file has no header of its own (it never reached the disk, or a
    /// reused file still has its previous one): it holds no acknowledged
    /// record (the header is synced before any record is written).
    NoHeader,
    /// Every record up to the end marker (zeros) or the end of the bytes was
    /// applied.
    Clean,
    /// `STRJRNL1` file: the record at `offset` is torn or corrupt, and the
    /// file must be cut there.
    Torn { offset: u64, reason: &'static str },
    /// `STRJRNL2` file: the records end at `offset`, where what follows fails
    /// its checks. That is a torn write or the older contents of a reused
    /// file; either way nothing from there on is applied.
    Ended { offset: u64, reason: &'static str },
}

/// What [`replay_bytes`] did with one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayedFile {
    /// Records applied.
    pub records: u64,
    pub end: ReplayEnd,
}

/// Replays the contents `data` of journal file `seq` from byte `start` on,
/// calling `apply` for each record in order. An error from `apply` stops the
/// scan and is returned as is.
pub fn replay_bytes(
    seq: u64,
    data: &[u8],
    start: u64,
    apply: &mut impl FnMut(ReplayedRecord) -> Result<()>,
) -> Result<ReplayedFile> {
    let Some(mask) = header_mask(data, seq) else {
        return Ok(ReplayedFile {
            records: 0,
            end: ReplayEnd::NoHeader,
        });
    };
    let v1 = data.starts_with(MAGIC_V1);
    let mut pos = start as usize;
    let mut records = 0;
    loop {
        match parse_record(data, pos, mask) {
            Parsed::Record { body, next } => {
                apply(ReplayedRecord {
                    body: body.to_vec(),
                    end: JournalPos {
                        seq,
                        offset: next as u64,
                    },
                })?;
                records += 1;
                pos = next;
            }
            Parsed::Padding { next } => pos = next,
            Parsed::End => {
                return Ok(ReplayedFile {
                    records,
                    end: ReplayEnd::Clean,
                });
            }
            Parsed::Corrupt(reason) => {
                let offset = pos as u64;
                return Ok(ReplayedFile {
                    records,
                    end: if v1 {
                        ReplayEnd::Torn { offset, reason }
                    } else {
                        ReplayEnd::Ended { offset, reason }
                    },
                });
            }
        }
    }
}

enum Parsed<'a> {
    Record { body: &'a [u8], next: usize },
    Padding { next: usize },
    End,
    Corrupt(&'static str),
}

fn parse_record(data: &[u8], pos: usize, mask: u32) -> Parsed<'_> {
    // `pos` may come from a checkpoint read from disk, so it may be anywhere
    // (even near `usize::MAX`): a start past the end finds nothing to replay.
    let header_end = pos.saturating_add(RECORD_HEADER);
    let Some(header) = data.get(pos..header_end) else {
        // Fewer than 8 bytes left: either the end, or a torn header.
        return if data.get(pos..).unwrap_or_default().iter().all(|b| *b == 0) {
            Parsed::End
        } else {
            Parsed::Corrupt("truncated record header")
        };
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 {
        return if crc == 0 {
            Parsed::End
        } else {
            Parsed::Corrupt("zero length with a checksum")
        };
    }
    if len & PAD_FLAG as usize != 0 {
        let n = len & !(PAD_FLAG as usize);
        if n > MAX_PAD || crc != PAD_CRC ^ mask {
            return Parsed::Corrupt("impossible padding record");
        }
        return match data.get(header_end..header_end + n) {
            Some(pad) if pad.iter().all(|b| *b == 0) => Parsed::Padding {
                next: header_end + n,
            },
            Some(_) => Parsed::Corrupt("padding record with data in it"),
            None => Parsed::Corrupt("padding runs past the end of the file"),
        };
    }
    if len > MAX_RECORD_LEN {
        return Parsed::Corrupt("record length out of range");
    }
    // `header_end <= data.len()` here, so this cannot overflow.
    let Some(body) = data.get(header_end..header_end + len) else {
        return Parsed::Corrupt("record runs past the end of the file");
    };
    if strata_proto::crc::crc32c(body) ^ mask != crc {
        return Parsed::Corrupt("record checksum mismatch");
    }
    Parsed::Record {
        body,
        next: header_end + len,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{HEADER_LEN, MAGIC, crc_mask};
    use super::*;

    /// Both file formats: (magic, checksum mask of file 1).
    fn formats() -> [(&'static [u8; 8], u32); 2] {
        [(MAGIC, crc_mask(1)), (MAGIC_V1, 0)]
    }

    fn header_of(magic: &[u8; 8], seq: u64) -> Vec<u8> {
        let mut file = magic.to_vec();
        file.extend_from_slice(&seq.to_le_bytes());
        file
    }

    fn record(body: &[u8], mask: u32) -> Vec<u8> {
        let mut r = (body.len() as u32).to_le_bytes().to_vec();
        r.extend_from_slice(&(strata_proto::crc::crc32c(body) ^ mask).to_le_bytes());
        r.extend_from_slice(body);
        r
    }

    fn replay_1(data: &[u8], start: u64) -> (Vec<Vec<u8>>, ReplayEnd) {
        let mut got = Vec::new();
        let replayed = replay_bytes(1, data, start, &mut |r: ReplayedRecord| {
            got.push(r.body);
            Ok(())
        })
        .unwrap();
        assert_eq!(replayed.records as usize, got.len());
        (got, replayed.end)
    }

    /// Where the scan stopped, whatever the format.
    fn stop(end: ReplayEnd) -> Option<u64> {
        match end {
            ReplayEnd::Torn { offset, .. } | ReplayEnd::Ended { offset, .. } => Some(offset),
            _ => None,
        }
    }

    fn padding(n: usize, fill: u8, mask: u32) -> Vec<u8> {
        let mut r = (PAD_FLAG | n as u32).to_le_bytes().to_vec();
        r.extend_from_slice(&(PAD_CRC ^ mask).to_le_bytes());
        r.extend(std::iter::repeat_n(fill, n));
        r
    }

    #[test]
    fn padding_records_are_skipped_and_checked() {
        for (magic, mask) in formats() {
            let mut file = header_of(magic, 1);
            file.extend(padding(100, 0, mask));
            file.extend(record(b"one", mask));
            file.extend(padding(0, 0, mask));
            file.extend(record(b"two", mask));
            let (got, end) = replay_1(&file, HEADER_LEN);
            assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
            assert_eq!(end, ReplayEnd::Clean);
            let other_mask = mask ^ crc_mask(2);
            for bad in [
                padding(10, 1, mask),
                padding(MAX_PAD + 1, 0, mask),
                padding(10, 0, other_mask),
            ] {
                let mut file = header_of(magic, 1);
                file.extend(record(b"one", mask));
                let at = file.len() as u64;
                file.extend(bad);
                file.extend(record(b"two", mask));
                let (got, end) = replay_1(&file, HEADER_LEN);
                assert_eq!(got.len(), 1);
                assert_eq!(stop(end), Some(at));
            }
        }
    }

    /// Found by the `journal_record` fuzz target (input `25 ff ff ff ff ff ff
    /// ff ff`: a header, then a checkpoint offset of `u64::MAX`): the start
    /// plus the record header overflowed, a panic in debug builds. A start
    /// past the end of the file, however far, replays nothing.
    #[test]
    fn checkpoint_offset_past_the_end_replays_nothing() {
        let mut file = header_of(MAGIC, 1);
        file.extend_from_slice(&record(b"one", crc_mask(1)));
        for start in [u64::MAX, u64::MAX - 7, usize::MAX as u64 - 3, 1 << 40] {
            assert_eq!(
                replay_1(&file, start),
                (vec![], ReplayEnd::Clean),
                "{start}"
            );
        }
        assert_eq!(replay_1(&file, HEADER_LEN).0, vec![b"one".to_vec()]);
    }

    #[test]
    fn torn_records_stop_the_scan_where_they_start() {
        for (magic, mask) in formats() {
            let mut file = header_of(magic, 1);
            file.extend_from_slice(&record(b"one", mask));
            let cut = file.len() as u64;
            let mut torn = file.clone();
            torn.extend_from_slice(&record(b"two", mask)[..9]);
            let (got, end) = replay_1(&torn, HEADER_LEN);
            assert_eq!(got, vec![b"one".to_vec()]);
            assert_eq!(stop(end), Some(cut));
            // Only the old format is cut; a reused-format file just ends.
            assert_eq!(
                matches!(end, ReplayEnd::Torn { .. }),
                magic == MAGIC_V1,
                "{end:?}"
            );
            // Zeros after the last record are the preallocated tail, not damage.
            file.extend_from_slice(&[0; 5]);
            assert_eq!(replay_1(&file, HEADER_LEN).1, ReplayEnd::Clean);
        }
        assert_eq!(replay_1(b"STRJRNL", HEADER_LEN).1, ReplayEnd::NoHeader);
    }

    /// A reused file: the new records, then what the file held in its
    /// earlier lives (records of files 3 and 2, and of an unmasked old-format
    /// file). The old records are intact, but none of them is applied.
    #[test]
    fn a_reused_files_older_records_never_replay() {
        let mut file = header_of(MAGIC, 7);
        file.extend(record(b"new", crc_mask(7)));
        let end = file.len() as u64;
        for old_mask in [crc_mask(3), crc_mask(2), 0] {
            let mut reused = file.clone();
            reused.extend(padding(20, 0, old_mask));
            reused.extend(record(b"old", old_mask));
            reused.extend(record(b"older", old_mask));
            let mut got = Vec::new();
            let r = replay_bytes(7, &reused, HEADER_LEN, &mut |rec| {
                got.push(rec.body);
                Ok(())
            })
            .unwrap();
            assert_eq!(got, vec![b"new".to_vec()]);
            assert!(
                matches!(r.end, ReplayEnd::Ended { offset, .. } if offset == end),
                "{:?}",
                r.end
            );
        }
    }

    /// A pooled file renamed to its new name, with the header of its previous
    /// life still in place: nothing in it is applied, however valid.
    #[test]
    fn a_file_with_another_files_header_applies_nothing() {
        for (magic, _) in formats() {
            let mut file = header_of(magic, 3);
            file.extend(record(b"old", crc_mask(3)));
            file.extend(record(b"old", 0));
            let mut applied = 0;
            let r = replay_bytes(9, &file, HEADER_LEN, &mut |_| {
                applied += 1;
                Ok(())
            })
            .unwrap();
            assert_eq!((applied, r.end), (0, ReplayEnd::NoHeader));
        }
    }

    #[test]
    fn masks_differ_between_files_and_are_never_zero() {
        let mut seen = std::collections::HashSet::new();
        for seq in (1..100_000u64).chain([u32::MAX as u64]) {
            assert_ne!(crc_mask(seq), 0, "{seq}");
            assert!(seen.insert(crc_mask(seq)), "{seq}");
        }
    }
}
