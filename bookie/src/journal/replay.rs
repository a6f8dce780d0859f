//! Reading journal records back: the part of replay that only looks at the
//! bytes of one file. It is kept apart from the file handling so that the
//! bookie's start-up and the fuzzer (`fuzz/fuzz_targets/journal_record.rs`)
//! run the same parser.
//!
//! Invariants of [`replay_bytes`], whatever the bytes:
//! - records are applied in file order, each with a CRC32C that matches its
//!   body and a length in `1..=MAX_RECORD_LEN`; padding records (which
//!   align batches for direct I/O) are checked and skipped, never applied;
//! - nothing is allocated beyond the bytes given (a length field is checked
//!   against the bytes present before it is used);
//! - the first impossible record stops the scan and names the offset to cut
//!   the file at, so nothing after a torn or corrupt record is ever applied.

use super::{
    HEADER_LEN, JournalPos, MAGIC, MAX_PAD, MAX_RECORD_LEN, PAD_CRC, PAD_FLAG, RECORD_HEADER,
    ReplayedRecord,
};
use crate::error::Result;

/// How the scan of one journal file ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayEnd {
    /// The file's header never reached the disk: it holds no acknowledged
    /// record (the header is synced before any record is written).
    NoHeader,
    /// Every record up to the end marker (zeros) or the end of the bytes was
    /// applied.
    Clean,
    /// The record at `offset` is torn or corrupt: the file must be cut there.
    Torn { offset: u64, reason: &'static str },
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
    if data.len() < HEADER_LEN as usize || &data[..MAGIC.len()] != MAGIC {
        return Ok(ReplayedFile {
            records: 0,
            end: ReplayEnd::NoHeader,
        });
    }
    let mut pos = start as usize;
    let mut records = 0;
    loop {
        match parse_record(data, pos) {
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
                return Ok(ReplayedFile {
                    records,
                    end: ReplayEnd::Torn {
                        offset: pos as u64,
                        reason,
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

fn parse_record(data: &[u8], pos: usize) -> Parsed<'_> {
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
        if n > MAX_PAD || crc != PAD_CRC {
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
    if crc32c::crc32c(body) != crc {
        return Parsed::Corrupt("record checksum mismatch");
    }
    Parsed::Record {
        body,
        next: header_end + len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<u8> {
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&1u64.to_le_bytes());
        file
    }

    fn record(body: &[u8]) -> Vec<u8> {
        let mut r = (body.len() as u32).to_le_bytes().to_vec();
        r.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
        r.extend_from_slice(body);
        r
    }

    fn bodies(data: &[u8], start: u64) -> (Vec<Vec<u8>>, ReplayEnd) {
        let mut got = Vec::new();
        let replayed = replay_bytes(1, data, start, &mut |r: ReplayedRecord| {
            got.push(r.body);
            Ok(())
        })
        .unwrap();
        assert_eq!(replayed.records as usize, got.len());
        (got, replayed.end)
    }

    /// Found by the `journal_record` fuzz target (input `25 ff ff ff ff ff ff
    /// ff ff`: a header, then a checkpoint offset of `u64::MAX`): the start
    /// plus the record header overflowed, a panic in debug builds. A start
    /// past the end of the file, however far, replays nothing.
    fn padding(n: usize, fill: u8) -> Vec<u8> {
        let mut r = (PAD_FLAG | n as u32).to_le_bytes().to_vec();
        r.extend_from_slice(&PAD_CRC.to_le_bytes());
        r.extend(std::iter::repeat_n(fill, n));
        r
    }

    #[test]
    fn padding_records_are_skipped_and_checked() {
        let mut file = header();
        file.extend(padding(100, 0));
        file.extend(record(b"one"));
        file.extend(padding(0, 0));
        file.extend(record(b"two"));
        let mut got = Vec::new();
        let r = replay_bytes(1, &file, HEADER_LEN, &mut |rec| {
            got.push(rec.body);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(r.end, ReplayEnd::Clean);
        for bad in [padding(10, 1), padding(MAX_PAD + 1, 0)] {
            let mut file = header();
            file.extend(record(b"one"));
            let at = file.len() as u64;
            file.extend(bad);
            file.extend(record(b"two"));
            let r = replay_bytes(1, &file, HEADER_LEN, &mut |_| Ok(())).unwrap();
            assert_eq!(r.records, 1);
            assert!(matches!(r.end, ReplayEnd::Torn { offset, .. } if offset == at));
        }
    }

    #[test]
    fn checkpoint_offset_past_the_end_replays_nothing() {
        let mut file = header();
        file.extend_from_slice(&record(b"one"));
        for start in [u64::MAX, u64::MAX - 7, usize::MAX as u64 - 3, 1 << 40] {
            assert_eq!(bodies(&file, start), (vec![], ReplayEnd::Clean), "{start}");
        }
        assert_eq!(bodies(&file, HEADER_LEN).0, vec![b"one".to_vec()]);
    }

    #[test]
    fn torn_records_stop_the_scan_where_they_start() {
        let mut file = header();
        file.extend_from_slice(&record(b"one"));
        let cut = file.len() as u64;
        let mut torn = file.clone();
        torn.extend_from_slice(&record(b"two")[..9]);
        let (got, end) = bodies(&torn, HEADER_LEN);
        assert_eq!(got, vec![b"one".to_vec()]);
        assert!(matches!(end, ReplayEnd::Torn { offset, .. } if offset == cut));
        // Zeros after the last record are the preallocated tail, not damage.
        file.extend_from_slice(&[0; 5]);
        assert_eq!(bodies(&file, HEADER_LEN).1, ReplayEnd::Clean);
        assert_eq!(bodies(b"STRJRNL", HEADER_LEN).1, ReplayEnd::NoHeader);
    }
}
