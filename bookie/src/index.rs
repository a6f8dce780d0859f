//! The bookie's RocksDB: entry index, per-ledger state, entry-log usage and
//! the journal checkpoint. All keys live in the default column family,
//! distinguished by a one-byte tag; integers are big-endian so keys sort
//! numerically.
//!
//! | key                          | value                                   |
//! |------------------------------|-----------------------------------------|
//! | `e` ledger entry             | log_id u64, offset u64, len u32         |
//! | `l` ledger                   | [`LedgerState`]                         |
//! | `g` log_id                   | [`LogUsage`]: bytes per ledger          |
//! | `c`                          | checkpoint: journal seq u64, offset u64 |

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use crate::entrylog::Location;
use crate::error::{BookieError, Result};
use crate::journal::JournalPos;

const ENTRY: u8 = b'e';
const LEDGER: u8 = b'l';
const LOG_USAGE: u8 = b'g';
const CHECKPOINT: &[u8] = b"c";

/// Durable state of one ledger on this bookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerState {
    pub fenced: bool,
    pub deleted: bool,
    /// Highest last-add-confirmed seen from the writer (-1: none).
    pub lac: i64,
    /// Highest entry id stored (-1: none).
    pub last_entry: i64,
}

impl Default for LedgerState {
    fn default() -> Self {
        Self::new()
    }
}

impl LedgerState {
    pub fn new() -> Self {
        LedgerState {
            fenced: false,
            deleted: false,
            lac: -1,
            last_entry: -1,
        }
    }

    fn encode(&self) -> [u8; 17] {
        let mut b = [0u8; 17];
        b[0] = u8::from(self.fenced) | (u8::from(self.deleted) << 1);
        b[1..9].copy_from_slice(&self.lac.to_be_bytes());
        b[9..17].copy_from_slice(&self.last_entry.to_be_bytes());
        b
    }

    fn decode(v: &[u8]) -> Result<Self> {
        if v.len() != 17 {
            return Err(BookieError::corrupt(
                "ledger state",
                format!("{} bytes", v.len()),
            ));
        }
        Ok(LedgerState {
            fenced: v[0] & 1 != 0,
            deleted: v[0] & 2 != 0,
            lac: i64::from_be_bytes(arr8(&v[1..9])),
            last_entry: i64::from_be_bytes(arr8(&v[9..17])),
        })
    }
}

/// Bytes each ledger occupies in one entry log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogUsage {
    pub ledgers: BTreeMap<u64, u64>,
}

impl LogUsage {
    pub fn total(&self) -> u64 {
        self.ledgers.values().sum()
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.ledgers.len() * 16);
        for (l, n) in &self.ledgers {
            b.extend_from_slice(&l.to_be_bytes());
            b.extend_from_slice(&n.to_be_bytes());
        }
        b
    }

    fn decode(v: &[u8]) -> Result<Self> {
        if !v.len().is_multiple_of(16) {
            return Err(BookieError::corrupt(
                "entry log usage",
                format!("{} bytes", v.len()),
            ));
        }
        let ledgers = v
            .chunks_exact(16)
            .map(|c| {
                (
                    u64::from_be_bytes(arr8(&c[..8])),
                    u64::from_be_bytes(arr8(&c[8..])),
                )
            })
            .collect();
        Ok(LogUsage { ledgers })
    }
}

fn arr8(s: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    a
}

fn entry_key(ledger: u64, entry: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = ENTRY;
    k[1..9].copy_from_slice(&ledger.to_be_bytes());
    k[9..].copy_from_slice(&entry.to_be_bytes());
    k
}

fn ledger_key(tag: u8, id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = tag;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn encode_location(loc: Location) -> [u8; 20] {
    let mut v = [0u8; 20];
    v[..8].copy_from_slice(&loc.log_id.to_be_bytes());
    v[8..16].copy_from_slice(&loc.offset.to_be_bytes());
    v[16..].copy_from_slice(&loc.len.to_be_bytes());
    v
}

fn decode_location(v: &[u8]) -> Result<Location> {
    if v.len() != 20 {
        return Err(BookieError::corrupt(
            "entry index",
            format!("{} byte location", v.len()),
        ));
    }
    Ok(Location {
        log_id: u64::from_be_bytes(arr8(&v[..8])),
        offset: u64::from_be_bytes(arr8(&v[8..16])),
        len: u32::from_be_bytes([v[16], v[17], v[18], v[19]]),
    })
}

/// A batch of index changes applied atomically and durably.
#[derive(Default)]
pub struct IndexBatch {
    batch: WriteBatch,
}

impl IndexBatch {
    pub fn put_location(&mut self, ledger: u64, entry: u64, loc: Location) {
        self.batch
            .put(entry_key(ledger, entry), encode_location(loc));
    }
    pub fn put_state(&mut self, ledger: u64, state: &LedgerState) {
        self.batch.put(ledger_key(LEDGER, ledger), state.encode());
    }
    pub fn put_usage(&mut self, log_id: u64, usage: &LogUsage) {
        self.batch
            .put(ledger_key(LOG_USAGE, log_id), usage.encode());
    }
    pub fn delete_usage(&mut self, log_id: u64) {
        self.batch.delete(ledger_key(LOG_USAGE, log_id));
    }
    pub fn delete_entries(&mut self, ledger: u64) {
        self.batch
            .delete_range(entry_key(ledger, 0), entry_key(ledger.wrapping_add(1), 0));
    }
    pub fn put_checkpoint(&mut self, pos: JournalPos) {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&pos.seq.to_be_bytes());
        v[8..].copy_from_slice(&pos.offset.to_be_bytes());
        self.batch.put(CHECKPOINT, v);
    }
}

#[derive(Clone)]
pub struct Index {
    db: Arc<DB>,
}

impl Index {
    pub fn open(dir: &Path) -> Result<Index> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_max_open_files(256);
        opts.set_keep_log_file_num(4);
        let db = DB::open(&opts, dir)?;
        Ok(Index { db: Arc::new(db) })
    }

    /// Applies a batch; it is durable when this returns. Blocking.
    pub fn write(&self, batch: IndexBatch) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch.batch, &wo)?;
        Ok(())
    }

    pub fn location(&self, ledger: u64, entry: u64) -> Result<Option<Location>> {
        match self.db.get_pinned(entry_key(ledger, entry))? {
            None => Ok(None),
            Some(v) => decode_location(&v).map(Some),
        }
    }

    /// Highest indexed entry of a ledger.
    pub fn last_entry(&self, ledger: u64) -> Result<Option<u64>> {
        let upper = entry_key(ledger, u64::MAX);
        let mut it = self
            .db
            .iterator(IteratorMode::From(&upper, Direction::Reverse));
        match it.next() {
            Some(Ok((k, _)))
                if k.len() == 17 && k[0] == ENTRY && k[1..9] == ledger.to_be_bytes() =>
            {
                Ok(Some(u64::from_be_bytes(arr8(&k[9..]))))
            }
            Some(Err(e)) => Err(e.into()),
            _ => Ok(None),
        }
    }

    /// Every indexed entry of `ledger` stored in `log_id`, in entry order.
    pub fn entries_in_log(&self, ledger: u64, log_id: u64) -> Result<Vec<(u64, Location)>> {
        let start = entry_key(ledger, 0);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item?;
            if k.len() != 17 || k[0] != ENTRY || k[1..9] != ledger.to_be_bytes() {
                break;
            }
            let loc = decode_location(&v)?;
            if loc.log_id == log_id {
                out.push((u64::from_be_bytes(arr8(&k[9..])), loc));
            }
        }
        Ok(out)
    }

    pub fn ledger_states(&self) -> Result<Vec<(u64, LedgerState)>> {
        self.scan_tag(LEDGER, LedgerState::decode)
    }

    pub fn log_usages(&self) -> Result<Vec<(u64, LogUsage)>> {
        self.scan_tag(LOG_USAGE, LogUsage::decode)
    }

    pub fn usage(&self, log_id: u64) -> Result<LogUsage> {
        match self.db.get_pinned(ledger_key(LOG_USAGE, log_id))? {
            None => Ok(LogUsage::default()),
            Some(v) => LogUsage::decode(&v),
        }
    }

    fn scan_tag<T>(&self, tag: u8, decode: impl Fn(&[u8]) -> Result<T>) -> Result<Vec<(u64, T)>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&[tag], Direction::Forward))
        {
            let (k, v) = item?;
            if k.first() != Some(&tag) {
                break;
            }
            if k.len() != 9 {
                return Err(BookieError::corrupt("index key", format!("{k:?}")));
            }
            out.push((u64::from_be_bytes(arr8(&k[1..])), decode(&v)?));
        }
        Ok(out)
    }

    pub fn checkpoint(&self) -> Result<JournalPos> {
        match self.db.get_pinned(CHECKPOINT)? {
            None => Ok(JournalPos::default()),
            Some(v) if v.len() == 16 => Ok(JournalPos {
                seq: u64::from_be_bytes(arr8(&v[..8])),
                offset: u64::from_be_bytes(arr8(&v[8..])),
            }),
            Some(v) => Err(BookieError::corrupt(
                "checkpoint",
                format!("{} bytes", v.len()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_scans() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path()).unwrap();
        let loc = |o| Location {
            log_id: 3,
            offset: o,
            len: 40,
        };
        let mut b = IndexBatch::default();
        for e in 0..5 {
            b.put_location(10, e, loc(e * 40));
        }
        b.put_location(
            11,
            0,
            Location {
                log_id: 4,
                offset: 16,
                len: 40,
            },
        );
        let st = LedgerState {
            fenced: true,
            deleted: false,
            lac: 3,
            last_entry: 4,
        };
        b.put_state(10, &st);
        let mut usage = LogUsage::default();
        usage.ledgers.insert(10, 200);
        b.put_usage(3, &usage);
        b.put_checkpoint(JournalPos { seq: 2, offset: 99 });
        idx.write(b).unwrap();

        assert_eq!(idx.location(10, 2).unwrap(), Some(loc(80)));
        assert_eq!(idx.location(10, 9).unwrap(), None);
        assert_eq!(idx.last_entry(10).unwrap(), Some(4));
        assert_eq!(idx.last_entry(12).unwrap(), None);
        assert_eq!(idx.entries_in_log(10, 3).unwrap().len(), 5);
        assert_eq!(idx.ledger_states().unwrap(), vec![(10, st)]);
        assert_eq!(idx.log_usages().unwrap(), vec![(3, usage)]);
        assert_eq!(idx.checkpoint().unwrap(), JournalPos { seq: 2, offset: 99 });

        let mut b = IndexBatch::default();
        b.delete_entries(10);
        idx.write(b).unwrap();
        assert_eq!(idx.last_entry(10).unwrap(), None);
        assert_eq!(idx.location(11, 0).unwrap().map(|l| l.log_id), Some(4));
    }
}
