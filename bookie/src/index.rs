//! The bookie's RocksDB: entry index, per-ledger state, entry-log usage and
//! the journal checkpoint. Keys are distinguished by a one-byte tag;
//! integers are big-endian so keys sort numerically.
//!
//! Entry locations live in their own column family ([`ENTRIES_CF`]), the
//! rest in the default one. Locations are written in entry order and almost
//! never rewritten, while the checkpoint, states and usages are rewritten by
//! every flush: kept together, every memtable flush overlapped every other
//! in the checkpoint key, so compaction had to merge-sort all the locations
//! again and again (about a fifth of a bookie's CPU with 1 KiB entries).
//! Apart, a ledger's successive location files do not overlap and
//! compaction mostly moves them down a level without rewriting them.
//! Writes to both families go in one atomic batch.
//!
//! Locations are stored a run of consecutive entries per record (see
//! [`runs`]): with 1 KiB entries, one record per entry made the index's
//! memtable inserts, flushes and compactions about a third of a bookie's
//! CPU.
//!
//! | key                          | value                                   |
//! |------------------------------|-----------------------------------------|
//! | `e` ledger last-entry        | a run of locations ([`runs`])           |
//! | `l` ledger                   | [`LedgerState`]                         |
//! | `g` log_id                   | [`LogUsage`]: bytes per ledger          |
//! | `c`                          | checkpoint: journal seq u64, offset u64 |

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions,
};

use crate::entrylog::{EntryLogs, Location};
use crate::error::{BookieError, Result};
use crate::journal::JournalPos;

mod runs;
use runs::RunView;

const ENTRY: u8 = b'e';
const LEDGER: u8 = b'l';
const LOG_USAGE: u8 = b'g';
const CHECKPOINT: &[u8] = b"c";
/// The column family of the entry locations.
pub const ENTRIES_CF: &str = "entries";
/// Locations moved per batch when an index from before [`ENTRIES_CF`] is
/// migrated at open.
const MIGRATE_CHUNK: usize = 64 * 1024;

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

/// The entry id of a location key of `ledger` (`None`: another ledger's).
fn key_entry(k: &[u8], ledger: u64) -> Option<u64> {
    (k.len() == 17 && k[0] == ENTRY && k[1..9] == ledger.to_be_bytes())
        .then(|| u64::from_be_bytes(arr8(&k[9..])))
}

fn ledger_key(tag: u8, id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = tag;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// A batch of index changes applied atomically and durably.
#[derive(Default)]
pub struct IndexBatch {
    /// Changes to the entry locations ([`ENTRIES_CF`]), applied in order.
    entries: Vec<EntryOp>,
    /// Changes to the default column family.
    meta: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

enum EntryOp {
    Put(u64, u64, Location),
    DeleteLedger(u64),
}

impl IndexBatch {
    pub fn put_location(&mut self, ledger: u64, entry: u64, loc: Location) {
        self.entries.push(EntryOp::Put(ledger, entry, loc));
    }
    pub fn put_state(&mut self, ledger: u64, state: &LedgerState) {
        self.meta.push((
            ledger_key(LEDGER, ledger).to_vec(),
            Some(state.encode().to_vec()),
        ));
    }
    pub fn put_usage(&mut self, log_id: u64, usage: &LogUsage) {
        self.meta
            .push((ledger_key(LOG_USAGE, log_id).to_vec(), Some(usage.encode())));
    }
    pub fn delete_usage(&mut self, log_id: u64) {
        self.meta
            .push((ledger_key(LOG_USAGE, log_id).to_vec(), None));
    }
    pub fn delete_entries(&mut self, ledger: u64) {
        self.entries.push(EntryOp::DeleteLedger(ledger));
    }
    pub fn put_checkpoint(&mut self, pos: JournalPos) {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&pos.seq.to_be_bytes());
        v[8..].copy_from_slice(&pos.offset.to_be_bytes());
        self.meta.push((CHECKPOINT.to_vec(), Some(v.to_vec())));
    }
}

#[derive(Clone)]
pub struct Index {
    db: Arc<DB>,
    /// Writes read the runs they may overlap, so they go one at a time.
    writing: Arc<Mutex<()>>,
}

impl Index {
    pub fn open(dir: &Path) -> Result<Index> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_open_files(256);
        opts.set_keep_log_file_num(4);
        let existed = dir.join("CURRENT").exists();
        let had_entries_cf = existed
            && DB::list_cf(&opts, dir)
                .map_err(BookieError::from)?
                .iter()
                .any(|c| c == ENTRIES_CF);
        let families = [
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, Options::default()),
            ColumnFamilyDescriptor::new(ENTRIES_CF, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&opts, dir, families)?;
        let index = Index {
            db: Arc::new(db),
            writing: Arc::new(Mutex::new(())),
        };
        if existed && !had_entries_cf {
            index.migrate_locations()?;
        }
        Ok(index)
    }

    fn entries_cf(&self) -> &ColumnFamily {
        // Opened with the database, which it lives as long as.
        self.db
            .cf_handle(ENTRIES_CF)
            .expect("the entries column family is opened with the index")
    }

    /// Moves the locations an index from before [`ENTRIES_CF`] kept in the
    /// default column family, in atomic chunks: a crash in between leaves
    /// every location in one of the two, and the next open moves the rest.
    fn migrate_locations(&self) -> Result<()> {
        let cf = self.entries_cf();
        let mut moved = 0usize;
        // Each chunk starts just past the last key moved, not over the
        // deletions of the chunks before.
        let mut from = vec![ENTRY];
        loop {
            let mut batch = WriteBatch::default();
            let mut n = 0;
            for item in self
                .db
                .iterator(IteratorMode::From(&from, Direction::Forward))
            {
                let (k, v) = item?;
                if k.first() != Some(&ENTRY) || n == MIGRATE_CHUNK {
                    break;
                }
                batch.put_cf(cf, &k, &v);
                batch.delete(&k);
                n += 1;
                // The smallest key after `k`.
                from.clear();
                from.extend_from_slice(&k);
                from.push(0);
            }
            if n == 0 {
                break;
            }
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            self.db.write_opt(batch, &wo)?;
            moved += n;
        }
        if moved > 0 {
            tracing::info!(moved, "entry index moved to its own column family");
        }
        Ok(())
    }

    /// Applies a batch; it is durable when this returns. Blocking.
    ///
    /// Locations are applied as if one by one in batch order (a later one
    /// for the same entry wins, a ledger's deletion drops those before it),
    /// then stored as runs. New locations past a ledger's indexed entries
    /// (the usual case: a flush of newly added entries) only add runs; ones
    /// that overlap indexed runs (recovery re-adds, compaction moving
    /// entries) rewrite the runs they touch.
    pub fn write(&self, batch: IndexBatch) -> Result<()> {
        self.write_with(batch, true)
    }

    /// As [`Index::write`], but durable only once a later synced write or
    /// [`Index::sync`] returns: a power loss may drop it (with every write
    /// after it, never some of one), a process crash does not. For what
    /// replay rebuilds from records that are still in the journal.
    pub fn write_unsynced(&self, batch: IndexBatch) -> Result<()> {
        self.write_with(batch, false)
    }

    /// Makes every write so far durable. Blocking.
    pub fn sync(&self) -> Result<()> {
        let _writing = self.writing.lock();
        self.db.flush_wal(true)?;
        Ok(())
    }

    fn write_with(&self, batch: IndexBatch, sync: bool) -> Result<()> {
        let _writing = self.writing.lock();
        let cf = self.entries_cf();
        let mut wb = WriteBatch::default();
        // Per ledger, in batch order (usually already in entry order).
        let mut puts: BTreeMap<u64, Vec<(u64, Location)>> = BTreeMap::new();
        let mut deleted = HashSet::new();
        for op in batch.entries {
            match op {
                EntryOp::Put(ledger, entry, loc) => {
                    puts.entry(ledger).or_default().push((entry, loc));
                }
                EntryOp::DeleteLedger(ledger) => {
                    puts.remove(&ledger);
                    deleted.insert(ledger);
                    wb.delete_range_cf(
                        cf,
                        entry_key(ledger, 0),
                        entry_key(ledger.wrapping_add(1), 0),
                    );
                }
            }
        }
        for (ledger, mut locs) in puts {
            if !locs.is_sorted_by(|a, b| a.0 < b.0) {
                // Sorted by entry, the last location of each entry kept.
                locs.reverse();
                locs.sort_by_key(|(e, _)| *e);
                locs.dedup_by_key(|(e, _)| *e);
            }
            if !deleted.contains(&ledger) {
                self.merge_overlapping(ledger, &mut locs, &mut wb)?;
            }
            runs::build(locs, |last, v| wb.put_cf(cf, entry_key(ledger, last), v));
        }
        for (k, v) in &batch.meta {
            match v {
                Some(v) => wb.put(k, v),
                None => wb.delete(k),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo)?;
        Ok(())
    }

    /// Folds the indexed runs of `ledger` that overlap the entry range of
    /// `locs` (sorted, one per entry) into it, its own locations winning,
    /// and deletes them in `wb`, so the runs built from `locs` replace them.
    fn merge_overlapping(
        &self,
        ledger: u64,
        locs: &mut Vec<(u64, Location)>,
        wb: &mut WriteBatch,
    ) -> Result<()> {
        let (Some(&(low, _)), Some(&(high, _))) = (locs.first(), locs.last()) else {
            return Ok(());
        };
        let cf = self.entries_cf();
        let mut merged: Option<BTreeMap<u64, Location>> = None;
        self.runs_from(ledger, low, |key, run| {
            if run.first() > high {
                return false;
            }
            let merged = merged.get_or_insert_with(|| locs.iter().copied().collect());
            for (entry, loc) in run.entries() {
                merged.entry(entry).or_insert(loc);
            }
            wb.delete_cf(cf, key);
            true
        })?;
        if let Some(merged) = merged {
            *locs = merged.into_iter().collect();
        }
        Ok(())
    }

    /// Calls `f` with each run of `ledger` from the one that would hold
    /// `from` on, in entry order, while it returns true.
    fn runs_from(
        &self,
        ledger: u64,
        from: u64,
        mut f: impl FnMut(&[u8], RunView<'_>) -> bool,
    ) -> Result<()> {
        let mut it = self.db.raw_iterator_cf(self.entries_cf());
        it.seek(entry_key(ledger, from));
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let Some(last) = key_entry(k, ledger) else {
                break;
            };
            if !f(k, RunView::decode(last, v)?) {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    pub fn location(&self, ledger: u64, entry: u64) -> Result<Option<Location>> {
        let mut found = None;
        // Only the first run can hold it: runs are keyed by their last entry.
        self.runs_from(ledger, entry, |_, run| {
            found = run.get(entry);
            false
        })?;
        Ok(found)
    }

    /// Locations of `ledger`'s consecutive entries `from..=to` that one
    /// read can fetch ([`EntryLogs::span_len`]): it stops before the first
    /// entry not indexed here, the first one too far from the others, or
    /// once the span would pass `max_span` bytes (it always holds `from`'s
    /// location, when `from` is indexed).
    pub fn location_span(
        &self,
        ledger: u64,
        from: u64,
        to: u64,
        max_span: u64,
    ) -> Result<Vec<(u64, Location)>> {
        let mut out: Vec<(u64, Location)> = Vec::new();
        let mut next = from;
        self.runs_from(ledger, from, |_, run| {
            for (entry, loc) in run.entries() {
                if entry < next {
                    continue;
                }
                if entry != next || entry > to {
                    return false;
                }
                if let (Some((_, start)), Some((_, prev))) = (out.first(), out.last()) {
                    match EntryLogs::span_len(*start, *prev, loc) {
                        Some(len) if len <= max_span => {}
                        _ => return false,
                    }
                }
                out.push((entry, loc));
                next += 1;
            }
            // The next run may go on where this one ended.
            next <= to
        })?;
        Ok(out)
    }

    /// Highest indexed entry of a ledger.
    pub fn last_entry(&self, ledger: u64) -> Result<Option<u64>> {
        let upper = entry_key(ledger, u64::MAX);
        let mut it = self.db.iterator_cf(
            self.entries_cf(),
            IteratorMode::From(&upper, Direction::Reverse),
        );
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
        let mut out = Vec::new();
        self.runs_from(ledger, 0, |_, run| {
            if run.log_id() == log_id {
                out.extend(run.entries());
            }
            true
        })?;
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

    /// An index written before locations had their own column family (all
    /// keys in the default one) opens with every location moved over.
    #[test]
    fn an_index_without_the_entries_family_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let n = MIGRATE_CHUNK as u64 + 10;
        {
            let mut opts = Options::default();
            opts.create_if_missing(true);
            let db = DB::open(&opts, dir.path()).unwrap();
            let mut wb = WriteBatch::default();
            for e in 0..n {
                let loc = Location {
                    log_id: 1,
                    offset: e * 10,
                    len: 10,
                };
                wb.put(entry_key(7, e), runs::encode_legacy(loc));
            }
            wb.put(CHECKPOINT, [0u8; 16]);
            db.write(wb).unwrap();
        }
        let idx = Index::open(dir.path()).unwrap();
        assert_eq!(idx.last_entry(7).unwrap(), Some(n - 1));
        assert_eq!(
            idx.location(7, n - 1).unwrap().map(|l| l.offset),
            Some((n - 1) * 10)
        );
        assert_eq!(idx.entries_in_log(7, 1).unwrap().len() as u64, n);
        // Nothing is left behind in the default family.
        assert!(
            idx.db
                .iterator(IteratorMode::From(&[ENTRY], Direction::Forward))
                .all(|i| i.unwrap().0.first() != Some(&ENTRY))
        );
        drop(idx);
        let again = Index::open(dir.path()).unwrap();
        assert_eq!(again.last_entry(7).unwrap(), Some(n - 1));
    }

    fn at(log_id: u64, offset: u64) -> Location {
        Location {
            log_id,
            offset,
            len: 10,
        }
    }

    fn put_all(idx: &Index, ledger: u64, locs: &[(u64, Location)]) {
        let mut b = IndexBatch::default();
        for (e, l) in locs {
            b.put_location(ledger, *e, *l);
        }
        idx.write(b).unwrap();
    }

    fn all(idx: &Index, ledger: u64, log_id: u64) -> Vec<(u64, Location)> {
        idx.entries_in_log(ledger, log_id).unwrap()
    }

    /// Appends make runs; rewriting some entries (compaction moving them,
    /// a recovery re-add) keeps every other entry where it was.
    #[test]
    fn overlapping_writes_replace_only_their_entries() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path()).unwrap();
        let first: Vec<_> = (0..3000).map(|e| (e, at(1, e * 10))).collect();
        put_all(&idx, 5, &first);
        let more: Vec<_> = (3000..3100).map(|e| (e, at(2, e * 10))).collect();
        put_all(&idx, 5, &more);
        // Three runs for the first write, one for the second.
        let records = idx
            .db
            .iterator_cf(idx.entries_cf(), IteratorMode::Start)
            .count();
        assert_eq!(records, 4);

        // Entries 1000..1100 move to log 3; entry 2999 is re-added.
        let mut moved: Vec<_> = (1000..1100).map(|e| (e, at(3, e))).collect();
        moved.push((2999, at(4, 0)));
        put_all(&idx, 5, &moved);
        for e in [0, 999, 1100, 2998, 3000, 3099] {
            let log = if e < 3000 { 1 } else { 2 };
            assert_eq!(idx.location(5, e).unwrap(), Some(at(log, e * 10)), "{e}");
        }
        assert_eq!(idx.location(5, 1050).unwrap(), Some(at(3, 1050)));
        assert_eq!(idx.location(5, 2999).unwrap(), Some(at(4, 0)));
        assert_eq!(idx.location(5, 3100).unwrap(), None);
        assert_eq!(all(&idx, 5, 1).len(), 3000 - 100 - 1);
        assert_eq!(all(&idx, 5, 3).len(), 100);
        assert_eq!(idx.last_entry(5).unwrap(), Some(3099));
    }

    /// A bookie holding every other entry of a striped ledger stores them
    /// in runs with holes, and the missing ids read as absent.
    #[test]
    fn striped_entries_leave_holes() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path()).unwrap();
        let mine: Vec<_> = (0..100)
            .filter(|e| e % 3 != 2)
            .map(|e| (e, at(1, e * 10)))
            .collect();
        put_all(&idx, 8, &mine);
        for e in 0..100 {
            let want = (e % 3 != 2).then(|| at(1, e * 10));
            assert_eq!(idx.location(8, e).unwrap(), want, "{e}");
        }
        assert_eq!(all(&idx, 8, 1), mine);
        assert_eq!(idx.last_entry(8).unwrap(), Some(99));
        // Another ledger's lookups never see ledger 8's runs.
        assert_eq!(idx.location(7, 5).unwrap(), None);
        assert_eq!(idx.location(9, 0).unwrap(), None);
    }

    /// Locations written one per record before runs existed are read, and
    /// folded into runs when written over.
    #[test]
    fn single_location_records_from_before_runs_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path()).unwrap();
        let cf = idx.entries_cf();
        for e in 0..10 {
            idx.db
                .put_cf(cf, entry_key(4, e), runs::encode_legacy(at(1, e * 10)))
                .unwrap();
        }
        assert_eq!(idx.location(4, 7).unwrap(), Some(at(1, 70)));
        assert_eq!(idx.last_entry(4).unwrap(), Some(9));
        put_all(&idx, 4, &[(5, at(2, 0)), (10, at(2, 10))]);
        assert_eq!(idx.location(4, 4).unwrap(), Some(at(1, 40)));
        assert_eq!(idx.location(4, 5).unwrap(), Some(at(2, 0)));
        assert_eq!(idx.location(4, 10).unwrap(), Some(at(2, 10)));
        assert_eq!(all(&idx, 4, 1).len(), 9);
    }

    /// Within one batch a ledger's deletion drops its earlier locations and
    /// keeps the later ones.
    #[test]
    fn deletion_applies_in_batch_order() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path()).unwrap();
        put_all(&idx, 3, &[(0, at(1, 0)), (1, at(1, 10))]);
        let mut b = IndexBatch::default();
        b.put_location(3, 2, at(1, 20));
        b.delete_entries(3);
        b.put_location(3, 7, at(1, 70));
        idx.write(b).unwrap();
        assert_eq!(idx.location(3, 0).unwrap(), None);
        assert_eq!(idx.location(3, 2).unwrap(), None);
        assert_eq!(idx.location(3, 7).unwrap(), Some(at(1, 70)));
        assert_eq!(idx.last_entry(3).unwrap(), Some(7));
    }

    /// Locations out of entry order, and several for one entry, in one
    /// batch: the last one given for an entry wins.
    #[test]
    fn a_batch_out_of_order_keeps_the_last_location_of_each_entry() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path()).unwrap();
        put_all(
            &idx,
            6,
            &[
                (4, at(1, 0)),
                (2, at(1, 10)),
                (4, at(2, 40)),
                (3, at(1, 30)),
                (2, at(2, 20)),
            ],
        );
        assert_eq!(idx.location(6, 2).unwrap(), Some(at(2, 20)));
        assert_eq!(idx.location(6, 3).unwrap(), Some(at(1, 30)));
        assert_eq!(idx.location(6, 4).unwrap(), Some(at(2, 40)));
        assert_eq!(idx.last_entry(6).unwrap(), Some(4));
    }
}
