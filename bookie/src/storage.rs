//! Ledger storage: ties the journal, write cache, entry logs, index and read
//! cache together, and owns per-ledger state (fenced, deleted, LAC).
//!
//! Add path: validate → insert in the write cache → journal (durable) → ack.
//! Inserting before journaling is what makes checkpoints safe: the flush
//! swaps the write cache and reads the journal's written position under the
//! same lock, so every record before that position belongs to an entry in
//! the swapped-out buffer (see [`LedgerStorage::flush`]).
//!
//! A flush makes the buffer's entries reachable through the index. In
//! [`StorageMode::EntryLog`] it copies them into entry logs and the journal
//! is trimmed. In the default [`StorageMode::Journal`] nothing is copied:
//! each entry's journal [`Placement`] (resolved before the journal's written
//! position passes it) is indexed as its location, so every byte reaches the
//! disk once; entries still queued in the journal stay in the write cache for
//! the next flush, and failed ones are dropped.
//!
//! Read path: write cache → foyer cache → entry log via the index; the entry
//! CRC is verified on every read from disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use foyer::{Cache, CacheBuilder};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::config::{BookieConfig, StorageMode};
use crate::entrylog::{EntryLogs, Location, MAX_SPAN, StoredEntry, journal_log_id, journal_seq};
use crate::error::{BookieError, Result};
use crate::index::{Index, IndexBatch, LedgerState, LogUsage};
use crate::journal::{
    Journal, JournalConfig, JournalPos, MAX_RECORD_LEN, Placement, RECORD_HEADER, RecordIn,
    Recycler,
};
use crate::metrics::Metrics;
use crate::remover::Remover;
use strata_common::dirlock::DirLock;
use strata_common::stages::{self, Stage};

type Key = (u64, u64);
type Buffer = BTreeMap<Key, Slot>;

/// An entry in the write cache, with where the journal put it (journal mode).
#[derive(Clone)]
struct Slot {
    entry: Arc<StoredEntry>,
    placement: Option<Placement>,
}

impl Slot {
    /// The entry's location in its journal file, once the record is durable.
    fn location(&self) -> PlacementState {
        placement_state(self.placement.as_ref(), self.entry.payload.len())
    }
}

enum PlacementState {
    Placed(Location),
    Pending,
    Failed,
}

fn placement_state(p: Option<&Placement>, payload_len: usize) -> PlacementState {
    match p.and_then(|p| p.get()) {
        None => PlacementState::Pending,
        Some(Err(())) => PlacementState::Failed,
        Some(Ok(pos)) => PlacementState::Placed(Location {
            log_id: journal_log_id(pos.seq),
            offset: pos.offset,
            len: (RECORD_HEADER + JOURNAL_HEAD + payload_len) as u32,
        }),
    }
}

/// A journaled entry replaced in the write cache by a newer add of the same
/// key (a writer's resend, or recovery): its record stays indexable until
/// the newer one is durable, so a failed resend never unindexes it.
struct Displaced {
    key: Key,
    placement: Placement,
    payload_len: usize,
}

/// An accepted add on its way to the journal.
struct Journaled {
    /// Its position in the batch.
    index: usize,
    ledger: u64,
    entry_id: u64,
    lac: i64,
    recovery: bool,
    head: [u8; JOURNAL_HEAD],
    payload: Bytes,
    /// `crc32c(payload)`, when the CRC check computed it apart.
    payload_crc: Option<u32>,
    placement: Option<Placement>,
}

/// The error every add of a failed journal request reports.
fn shared_error(e: &BookieError) -> BookieError {
    match e {
        BookieError::ShuttingDown => BookieError::ShuttingDown,
        BookieError::Invalid(m) => BookieError::Invalid(m.clone()),
        other => BookieError::JournalFailed(other.to_string()),
    }
}

pub use crate::validate::MAX_ENTRY_SIZE;
const JOURNAL_ADD: u8 = 1;
/// Bytes of a journal add record before its payload.
pub(crate) const JOURNAL_HEAD: usize = 1 + 8 * 4 + 4;
/// Entry-log writes are cut into pieces of this size to bound memory.
const FLUSH_CHUNK: usize = 8 << 20;

struct WriteCache {
    active: Buffer,
    active_bytes: usize,
    /// The buffer being flushed, still readable until its flush is indexed.
    flushing: Option<Arc<Buffer>>,
    flushing_bytes: usize,
    displaced: Vec<Displaced>,
}

/// What a journal-mode flush could not index yet: buffer keys and
/// displaced records whose journal write is still pending.
#[derive(Default)]
struct Unindexed {
    keys: Vec<Key>,
    displaced: Vec<usize>,
}

/// One add as received from a writer.
#[derive(Clone)]
pub struct AddOp {
    pub entry: StoredEntry,
    pub lac: i64,
    pub recovery: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOnlyReason {
    Disk,
    JournalError,
}

pub struct LedgerStorage {
    mode: StorageMode,
    journal: Journal,
    /// Released journal files kept for reuse (shared with the journal and
    /// the entry logs).
    recycler: Arc<Recycler>,
    index: Index,
    logs: EntryLogs,
    cache: Mutex<WriteCache>,
    cache_limit: usize,
    states: Mutex<HashMap<u64, LedgerState>>,
    read_cache: Cache<Key, Arc<StoredEntry>>,
    /// Serializes flush, compaction and deletion (all blocking work).
    maintenance: Mutex<()>,
    /// Woken when the write cache has room again.
    space: Notify,
    /// Woken when a flush is wanted before the next tick.
    flush_wanted: Notify,
    read_only: Mutex<Option<ReadOnlyReason>>,
    read_only_flag: AtomicBool,
    gc_live_ratio: f64,
    pub metrics: Arc<Metrics>,
    /// This process's hold on the journal and ledger directories.
    _locks: Vec<DirLock>,
}

impl LedgerStorage {
    /// Opens (or creates) the storage and replays the journal. Blocking.
    /// Fails at once, touching nothing, when another process holds the
    /// journal or ledger directory.
    pub fn open(config: &BookieConfig, metrics: Arc<Metrics>) -> Result<LedgerStorage> {
        let mut locks = vec![DirLock::acquire(&config.journal_dir(), "journal")?];
        if config.ledger_dir() != config.journal_dir() {
            locks.push(DirLock::acquire(&config.ledger_dir(), "ledger")?);
        }
        let index = Index::open(&config.ledger_dir().join("index"))?;
        let remover = Arc::new(
            Remover::with_defaults().map_err(|e| BookieError::io("start the remover", e))?,
        );
        for dir in [config.journal_dir(), config.ledger_dir().join("logs")] {
            let left = remover
                .sweep(&dir)
                .map_err(|e| BookieError::io("list files left to delete", e))?;
            if left > 0 {
                info!(dir = %dir.display(), left, "deleting files a previous run left half-deleted");
            }
        }
        let recycler = Arc::new(
            Recycler::new(
                &config.journal_dir(),
                config.journal_reuse_files,
                metrics.clone(),
            )
            .with_grace(config.journal_reuse_grace)
            .with_remover(remover),
        );
        let logs = EntryLogs::open(
            &config.ledger_dir().join("logs"),
            &config.journal_dir(),
            config.entry_log_size_limit,
            recycler.clone(),
        )?;
        let mut states: HashMap<u64, LedgerState> = index.ledger_states()?.into_iter().collect();
        let checkpoint = index.checkpoint()?;
        let mut replay = Buffer::new();
        let journal_config = JournalConfig {
            dir: config.journal_dir(),
            group_bytes: config.journal_group_bytes,
            max_group_wait: config.journal_max_group_wait,
            flush_when_queue_empty: config.journal_flush_when_queue_empty,
            preallocate: config.journal_preallocate,
            max_file_size: config.journal_max_file_size,
            slow_threshold: config.journal_slow_threshold,
            queue_capacity: 64 * 1024,
            recycler: recycler.clone(),
        };
        let mode = config.storage_mode;
        let journal = Journal::open(journal_config, checkpoint, metrics.clone(), |rec| {
            let (op, _) = decode_journal_add(&rec.body)?;
            let state = states.entry(op.entry.ledger_id).or_default();
            if state.deleted {
                return Ok(());
            }
            state.lac = state.lac.max(op.lac);
            state.last_entry = state.last_entry.max(op.entry.entry_id as i64);
            // In journal mode the replayed record itself is the entry's home.
            let placement = (mode == StorageMode::Journal).then(|| {
                let start = rec.end.offset - (RECORD_HEADER + rec.body.len()) as u64;
                Arc::new(std::sync::OnceLock::from(Ok(JournalPos {
                    seq: rec.end.seq,
                    offset: start,
                })))
            });
            let key = (op.entry.ledger_id, op.entry.entry_id);
            let entry = Arc::new(op.entry);
            replay.insert(key, Slot { entry, placement });
            Ok(())
        })?;
        let replay_bytes = replay.values().map(|s| s.entry.record_len()).sum();
        let read_cache = CacheBuilder::new(config.read_cache_bytes.max(1 << 20))
            .with_weighter(|_k: &Key, v: &Arc<StoredEntry>| v.record_len())
            .build();
        let storage = LedgerStorage {
            mode,
            journal,
            recycler,
            index,
            logs,
            cache: Mutex::new(WriteCache {
                active: replay,
                active_bytes: replay_bytes,
                flushing: None,
                flushing_bytes: 0,
                displaced: Vec::new(),
            }),
            cache_limit: config.write_cache_bytes,
            states: Mutex::new(states),
            read_cache,
            maintenance: Mutex::new(()),
            space: Notify::new(),
            flush_wanted: Notify::new(),
            read_only: Mutex::new(None),
            read_only_flag: AtomicBool::new(false),
            gc_live_ratio: config.gc_live_ratio,
            metrics,
            _locks: locks,
        };
        // Make what replay found part of the entry logs right away, so the
        // journal can be trimmed and a crash loop never grows it.
        storage.flush()?;
        Ok(storage)
    }

    pub fn read_only(&self) -> Option<ReadOnlyReason> {
        *self.read_only.lock()
    }

    /// Deletes the journal files kept for reuse, to give their space back to
    /// the disk; returns the bytes freed. Blocking.
    pub fn drain_journal_pool(&self) -> u64 {
        self.recycler.drain()
    }

    pub fn set_read_only(&self, reason: Option<ReadOnlyReason>) {
        let mut ro = self.read_only.lock();
        if *ro != reason {
            match reason {
                Some(r) => warn!(reason = ?r, "bookie turns read-only"),
                None => info!("bookie is writable again"),
            }
        }
        *ro = reason;
        self.read_only_flag
            .store(reason.is_some(), Ordering::Release);
        self.metrics.read_only.set(i64::from(reason.is_some()));
    }

    /// Adds one entry; returns once it is durable.
    pub async fn add(&self, op: AddOp) -> Result<()> {
        self.add_batch(vec![op])
            .await
            .pop()
            .unwrap_or(Err(BookieError::ShuttingDown))
    }

    /// Adds entries that are journaled together, and returns each one's
    /// outcome, in order, once every accepted one is durable. Entries are
    /// judged one by one: a bad CRC or a fenced ledger fails only the
    /// entries concerned. Batching is what makes small entries cheap: one
    /// state lock, one write-cache lock and one journal request per batch
    /// instead of per entry.
    pub async fn add_batch(&self, ops: Vec<AddOp>) -> Vec<Result<()>> {
        let started = Instant::now();
        stages::mark_all(ops.iter().map(|op| op.entry.entry_id), Stage::Storing);
        let mut results: Vec<Result<()>> = Vec::with_capacity(ops.len());
        let mut kept: Vec<(usize, AddOp, Option<u32>)> = Vec::with_capacity(ops.len());
        for (i, op) in ops.into_iter().enumerate() {
            match crate::validate::check_entry(&op.entry) {
                Ok(payload_crc) => {
                    results.push(Ok(()));
                    kept.push((i, op, payload_crc));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        // Recovery adds re-replicate entries that already exist elsewhere and
        // are needed to close a ledger; a bookie read-only only by its disk
        // watermark still has the headroom the watermark reserves for them.
        if self.read_only_flag.load(Ordering::Acquire) {
            let reason = self.read_only();
            kept.retain(|(i, op, _)| {
                let allowed = op.recovery && reason == Some(ReadOnlyReason::Disk);
                if !allowed {
                    results[*i] = Err(BookieError::ReadOnly(format!(
                        "{reason:?}; adds are refused, reads are served"
                    )));
                }
                allowed
            });
        }
        {
            let mut states = self.states.lock();
            kept.retain(|(i, op, _)| {
                let ledger = op.entry.ledger_id;
                let state = states.entry(ledger).or_default();
                let refused = if state.deleted {
                    Some(BookieError::Deleted(ledger))
                } else if state.fenced && !op.recovery {
                    Some(BookieError::Fenced(ledger))
                } else {
                    None
                };
                match refused {
                    Some(e) => {
                        results[*i] = Err(e);
                        false
                    }
                    None => true,
                }
            });
        }
        if kept.is_empty() {
            return results;
        }
        let mut items = Vec::with_capacity(kept.len());
        for (i, op, payload_crc) in kept {
            let placement: Option<Placement> =
                (self.mode == StorageMode::Journal).then(|| Arc::new(std::sync::OnceLock::new()));
            let size = op.entry.record_len();
            let journaled = Journaled {
                index: i,
                ledger: op.entry.ledger_id,
                entry_id: op.entry.entry_id,
                lac: op.lac,
                recovery: op.recovery,
                head: encode_journal_head(&op),
                payload: op.entry.payload.clone(),
                payload_crc,
                placement: placement.clone(),
            };
            let slot = Slot {
                entry: Arc::new(op.entry),
                placement,
            };
            items.push((journaled, slot, size));
        }
        // In chunks of what the write cache takes: a flush frees only
        // journaled entries, so waiting for room while holding entries of
        // this batch that are in the cache but not yet journaled could wait
        // for ever (a batch larger than the cache).
        let mut items = items.into_iter().peekable();
        let mut durable: Vec<Journaled> = Vec::new();
        while items.peek().is_some() {
            let mut chunk = self.insert_in_cache(&mut items).await;
            // A fence that landed between the check above and the insert
            // (which may wait for cache space) came before a recovery read
            // that could not see these entries: acknowledging them now would
            // acknowledge entries the recovered ledger does not contain. Any
            // fence after this point is followed by reads that find the
            // entries in the cache.
            {
                let states = self.states.lock();
                chunk.retain(|j| {
                    let fenced = !j.recovery && states.get(&j.ledger).is_some_and(|s| s.fenced);
                    if fenced {
                        if let Some(p) = &j.placement {
                            let _ = p.set(Err(()));
                        }
                        results[j.index] = Err(BookieError::Fenced(j.ledger));
                    }
                    !fenced
                });
            }
            if chunk.is_empty() {
                continue;
            }
            // Payloads and placements move into the request: past this
            // point only the ids are needed.
            let records = chunk
                .iter_mut()
                .map(|j| RecordIn {
                    head: &j.head,
                    tail: std::mem::take(&mut j.payload),
                    tail_crc: j.payload_crc,
                    placement: j.placement.take(),
                })
                .collect();
            if let Err(e) = self.journal.append_many(records).await {
                if e.is_no_space() {
                    self.set_read_only(Some(ReadOnlyReason::Disk));
                } else {
                    self.set_read_only(Some(ReadOnlyReason::JournalError));
                }
                for j in chunk
                    .iter()
                    .chain(items.map(|(j, _, _)| j).collect::<Vec<_>>().iter())
                {
                    results[j.index] = Err(shared_error(&e));
                }
                break;
            }
            stages::mark_all(chunk.iter().map(|j| j.entry_id), Stage::Durable);
            if durable.is_empty() {
                durable = chunk;
            } else {
                durable.extend(chunk);
            }
        }
        if durable.is_empty() {
            return results;
        }
        {
            let mut states = self.states.lock();
            for j in &durable {
                let state = states.entry(j.ledger).or_default();
                state.lac = state.lac.max(j.lac);
                state.last_entry = state.last_entry.max(j.entry_id as i64);
            }
        }
        self.metrics.adds.inc_by(durable.len() as u64);
        let elapsed = started.elapsed().as_secs_f64();
        for _ in &durable {
            self.metrics.add_seconds.observe(elapsed);
        }
        results
    }

    /// Inserts into the write cache as many of `items`, in order, as it has
    /// room for, waiting (for flushes to make room) only until the first
    /// fits; returns the inserted ones.
    async fn insert_in_cache(
        &self,
        items: &mut std::iter::Peekable<std::vec::IntoIter<(Journaled, Slot, usize)>>,
    ) -> Vec<Journaled> {
        let started = Instant::now();
        let mut waited = false;
        loop {
            let notified = self.space.notified();
            let mut inserted = Vec::with_capacity(items.len());
            {
                let mut c = self.cache.lock();
                while let Some((_, _, size)) = items.peek() {
                    let used = c.active_bytes + c.flushing_bytes;
                    // An empty cache always takes one entry, however large.
                    if used != 0 && used + size > self.cache_limit {
                        break;
                    }
                    let Some((journaled, slot, size)) = items.next() else {
                        break;
                    };
                    let key = (slot.entry.ledger_id, slot.entry.entry_id);
                    if let Some(old) = c.active.insert(key, slot) {
                        c.active_bytes -= old.entry.record_len();
                        if let Some(placement) = old.placement {
                            c.displaced.push(Displaced {
                                key,
                                placement,
                                payload_len: old.entry.payload.len(),
                            });
                        }
                    }
                    c.active_bytes += size;
                    inserted.push(journaled);
                }
                self.metrics
                    .write_cache_bytes
                    .set((c.active_bytes + c.flushing_bytes) as i64);
                if c.active_bytes >= self.cache_limit / 2 {
                    self.flush_wanted.notify_one();
                }
                if !inserted.is_empty() || items.peek().is_none() {
                    if waited {
                        self.metrics
                            .write_cache_wait_seconds
                            .observe(started.elapsed().as_secs_f64());
                    }
                    return inserted;
                }
            }
            self.flush_wanted.notify_one();
            waited = true;
            notified.await;
        }
    }

    /// Resolves when a flush is wanted early (write cache half full).
    pub async fn flush_wanted(&self) {
        self.flush_wanted.notified().await
    }

    fn state(&self, ledger: u64) -> Result<LedgerState> {
        match self.states.lock().get(&ledger) {
            None => Err(BookieError::NoSuchLedger(ledger)),
            Some(s) if s.deleted => Err(BookieError::Deleted(ledger)),
            Some(s) => Ok(*s),
        }
    }

    /// (lac, last entry, fenced) of a ledger.
    pub fn lac(&self, ledger: u64) -> Result<LedgerState> {
        self.state(ledger)
    }

    /// Looks an entry up in the write cache.
    fn cached(&self, key: Key) -> Option<Arc<StoredEntry>> {
        let c = self.cache.lock();
        c.active
            .get(&key)
            .or_else(|| c.flushing.as_ref().and_then(|f| f.get(&key)))
            .map(|s| s.entry.clone())
    }

    /// Reads one entry (`None` if this bookie does not have it). Blocking:
    /// may touch the index and the entry logs.
    pub fn read_blocking(&self, ledger: u64, entry: u64) -> Result<Option<Arc<StoredEntry>>> {
        self.state(ledger)?;
        match self.in_memory((ledger, entry)) {
            Some(e) => Ok(Some(e)),
            None => self.read_from_disk(ledger, entry),
        }
    }

    /// One lookup of an entry in the write cache, then the read cache,
    /// counted in the read metrics.
    fn in_memory(&self, key: Key) -> Option<Arc<StoredEntry>> {
        self.metrics.reads.inc();
        if let Some(e) = self.cached(key) {
            self.metrics.write_cache_hits.inc();
            return Some(e);
        }
        self.metrics.write_cache_misses.inc();
        if let Some(e) = self.read_cache.get(&key) {
            self.metrics.read_cache_hits.inc();
            return Some(e.value().clone());
        }
        self.metrics.read_cache_misses.inc();
        None
    }

    /// Counts an entry that a span read brought along as a lookup that
    /// missed both caches, as reading it alone would have.
    fn count_span_entry(&self) {
        self.metrics.reads.inc();
        self.metrics.write_cache_misses.inc();
        self.metrics.read_cache_misses.inc();
    }

    /// An entry from where the index places it (`None` if it has no
    /// location here), into the read cache.
    fn read_from_disk(&self, ledger: u64, entry: u64) -> Result<Option<Arc<StoredEntry>>> {
        // A concurrent compaction may move the entry and delete its old log
        // between our index lookup and the read: look again once.
        for attempt in 0..2 {
            let Some(loc) = self.index.location(ledger, entry)? else {
                // It may have been in the flushing buffer a moment ago (the
                // lookup above already counted as a write-cache miss).
                return Ok(self.cached((ledger, entry)));
            };
            self.metrics.disk_reads.inc();
            match self.logs.read(loc) {
                Ok(stored) => {
                    let stored = Arc::new(checked_read(ledger, entry, stored)?);
                    self.read_cache.insert((ledger, entry), stored.clone());
                    return Ok(Some(stored));
                }
                Err(e) if attempt == 0 && matches!(e, BookieError::Corrupt { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Reads `first..=last` in order, as [`LedgerStorage::read_blocking`]
    /// would one by one, stopping before the first entry this bookie does
    /// not have, once `budget` payload bytes are in (at least one entry), or
    /// at `max_entries`. Entries that lie close together in an entry log are
    /// read with one read per span ([`EntryLogs::read_span`]): a catch-up
    /// reader then streams from the disk instead of waiting on one small
    /// read per entry. Blocking.
    pub fn read_range_blocking(
        &self,
        ledger: u64,
        first: u64,
        last: u64,
        budget: u64,
        max_entries: usize,
    ) -> Result<Vec<Arc<StoredEntry>>> {
        self.state(ledger)?;
        let mut out: Vec<Arc<StoredEntry>> = Vec::new();
        let mut bytes = 0u64;
        let mut id = first;
        let room = |out: &Vec<Arc<StoredEntry>>, bytes: u64| {
            out.len() < max_entries && (out.is_empty() || bytes < budget)
        };
        while id <= last && room(&out, bytes) {
            if let Some(e) = self.in_memory((ledger, id)) {
                bytes += e.payload.len() as u64;
                out.push(e);
                id += 1;
                continue;
            }
            let left = (max_entries - out.len()) as u64;
            let to = last.min(id.saturating_add(left - 1));
            let want = budget.saturating_sub(bytes).clamp(1, MAX_SPAN);
            let locs = self.index.location_span(ledger, id, to, want)?;
            if locs.is_empty() {
                // Not indexed (yet or any more): the one-entry path knows
                // the flushing buffer.
                match self.read_from_disk(ledger, id)? {
                    Some(e) => {
                        bytes += e.payload.len() as u64;
                        out.push(e);
                        id += 1;
                        continue;
                    }
                    None => break,
                }
            }
            let only: Vec<Location> = locs.iter().map(|(_, l)| *l).collect();
            self.metrics.disk_reads.inc();
            let checked = self.logs.read_span(&only).and_then(|entries| {
                entries
                    .into_iter()
                    .zip(&locs)
                    .map(|(stored, (entry, _))| checked_read(ledger, *entry, stored).map(Arc::new))
                    .collect::<Result<Vec<_>>>()
            });
            let entries = match checked {
                Ok(entries) => {
                    for e in &entries {
                        self.read_cache.insert((ledger, e.entry_id), e.clone());
                    }
                    entries
                }
                // A compaction may have moved them meanwhile: the one-entry
                // path looks each up again.
                Err(BookieError::Corrupt { .. }) => {
                    let mut again = Vec::with_capacity(locs.len());
                    for (entry, _) in &locs {
                        match self.read_from_disk(ledger, *entry)? {
                            Some(e) => again.push(e),
                            None => break,
                        }
                    }
                    again
                }
                Err(e) => return Err(e),
            };
            let whole = entries.len() == locs.len();
            for (i, e) in entries.into_iter().enumerate() {
                // The first was looked up in memory above.
                if i > 0 {
                    self.count_span_entry();
                }
                bytes += e.payload.len() as u64;
                out.push(e);
            }
            if !whole {
                break;
            }
            id += locs.len() as u64;
        }
        Ok(out)
    }

    /// Fences a ledger (creating its state if unknown); returns its state.
    pub fn fence_blocking(&self, ledger: u64) -> Result<LedgerState> {
        let _m = self.maintenance.lock();
        let state = {
            let mut states = self.states.lock();
            let s = states.entry(ledger).or_default();
            if s.deleted {
                return Err(BookieError::Deleted(ledger));
            }
            s.fenced = true;
            *s
        };
        let mut batch = IndexBatch::default();
        batch.put_state(ledger, &state);
        self.index.write(batch)?;
        Ok(state)
    }

    /// Deletes a ledger: its index entries go now, its bytes at the next GC.
    pub fn delete_blocking(&self, ledger: u64) -> Result<()> {
        let _m = self.maintenance.lock();
        let state = {
            let mut states = self.states.lock();
            let s = states.entry(ledger).or_default();
            s.deleted = true;
            *s
        };
        let mut batch = IndexBatch::default();
        batch.put_state(ledger, &state);
        batch.delete_entries(ledger);
        self.index.write(batch)?;
        let mut c = self.cache.lock();
        let keys: Vec<Key> = c
            .active
            .range((ledger, 0)..=(ledger, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some(s) = c.active.remove(&k) {
                c.active_bytes -= s.entry.record_len();
            }
        }
        Ok(())
    }

    /// Ledgers stored here (not deleted), ascending, after `start_after`.
    pub fn list(&self, start_after: u64, limit: usize) -> (Vec<u64>, bool) {
        let states = self.states.lock();
        let mut ids: Vec<u64> = states
            .iter()
            .filter(|(id, s)| !s.deleted && **id > start_after)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let more = ids.len() > limit;
        ids.truncate(limit);
        (ids, more)
    }

    pub fn ledger_count(&self) -> usize {
        self.states.lock().values().filter(|s| !s.deleted).count()
    }

    pub fn entry_log_count(&self) -> usize {
        self.logs.ids().len()
    }

    /// Journal files on disk (in journal mode they hold entries until GC).
    pub fn journal_file_count(&self) -> usize {
        self.journal.files().map_or(0, |f| f.len())
    }

    /// Makes the write cache reachable through the index (copying it into
    /// the entry logs in entry-log mode), records the checkpoint and trims
    /// the journal files nothing refers to. Blocking.
    pub fn flush(&self) -> Result<()> {
        let _m = self.maintenance.lock();
        let started = Instant::now();
        let (buffer, displaced, mark) = {
            let mut c = self.cache.lock();
            if c.active.is_empty() && c.displaced.is_empty() {
                // Nothing to index, but the journal may have moved past the
                // checkpoint: its last records can be of entries dropped
                // from the cache since (their ledger deleted). Read under
                // the lock, `written` passes only records whose entries were
                // inserted before now and are indexed or dropped already
                // (see the module docs), so the checkpoint may follow it.
                // Otherwise an idle bookie kept those journal files until
                // new adds came.
                let written = self.journal.written();
                drop(c);
                return self.checkpoint_idle(written);
            }
            let buffer = Arc::new(std::mem::take(&mut c.active));
            c.flushing = Some(buffer.clone());
            c.flushing_bytes = std::mem::take(&mut c.active_bytes);
            let displaced = std::mem::take(&mut c.displaced);
            (buffer, displaced, self.journal.written())
        };
        let result = match self.mode {
            StorageMode::EntryLog => self
                .write_buffer(&buffer, mark)
                .map(|()| Unindexed::default()),
            StorageMode::Journal => self.index_buffer(&buffer, &displaced, mark),
        };
        {
            let mut c = self.cache.lock();
            // Entries not indexed yet go back in front of newer adds and are
            // retried at the next flush: all of them after a failure (the
            // journal still has them), else those still queued in the journal.
            let (keys, kept): (Vec<Key>, Vec<usize>) = match &result {
                Err(_) => (
                    buffer.keys().copied().collect(),
                    (0..displaced.len()).collect(),
                ),
                Ok(u) => (u.keys.clone(), u.displaced.clone()),
            };
            for k in keys {
                let Some(v) = buffer.get(&k) else { continue };
                match c.active.entry(k) {
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(v.clone());
                        c.active_bytes += v.entry.record_len();
                    }
                    std::collections::btree_map::Entry::Occupied(_) => {
                        if let Some(placement) = v.placement.clone() {
                            let payload_len = v.entry.payload.len();
                            c.displaced.push(Displaced {
                                key: k,
                                placement,
                                payload_len,
                            });
                        }
                    }
                }
            }
            let mut displaced: Vec<Option<Displaced>> = displaced.into_iter().map(Some).collect();
            c.displaced
                .extend(kept.into_iter().filter_map(|i| displaced[i].take()));
            c.flushing = None;
            c.flushing_bytes = 0;
            self.metrics.write_cache_bytes.set(c.active_bytes as i64);
        }
        self.space.notify_waiters();
        result?;
        let trimmed = self.trim_journal(mark)?;
        self.metrics.flushes.inc();
        self.metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        if trimmed > 0 {
            info!(trimmed, ?mark, "journal trimmed after checkpoint");
        }
        Ok(())
    }

    /// With nothing to index: moves the checkpoint to `written` if the
    /// journal has passed it, and releases the files left behind. Called
    /// with the maintenance lock held.
    fn checkpoint_idle(&self, written: JournalPos) -> Result<()> {
        if written <= self.index.checkpoint()? {
            return Ok(());
        }
        let mut batch = IndexBatch::default();
        batch.put_checkpoint(written);
        // Unsynced, as a flush's: `trim_journal` syncs before a file goes.
        self.index.write_unsynced(batch)?;
        let trimmed = self.trim_journal(written)?;
        if trimmed > 0 {
            info!(trimmed, mark = ?written, "journal trimmed after an idle checkpoint");
        }
        Ok(())
    }

    /// Releases (for reuse, or deletes) the journal files before
    /// `checkpoint` that hold no indexed entry. Called with the maintenance
    /// lock held.
    ///
    /// A released file is gone for replay, so the index is synced before the
    /// first one goes: until then the checkpoint that lets replay skip it
    /// (and the locations that moved out of it) may be in the index's
    /// unsynced writes, which a power loss would drop, sending replay back
    /// into the file.
    fn trim_journal(&self, checkpoint: JournalPos) -> Result<usize> {
        let synced = std::cell::Cell::new(false);
        let released = self.journal.trim(checkpoint, |seq| {
            // When in doubt, keep the file.
            let in_use = self
                .index
                .usage(journal_log_id(seq))
                .map_or(true, |u| !u.ledgers.is_empty());
            if in_use {
                return true;
            }
            if !synced.get() {
                if let Err(e) = self.index.sync() {
                    warn!(error = %e, "cannot sync the index; journal files are kept");
                    return true;
                }
                synced.set(true);
            }
            false
        })?;
        for seq in &released {
            self.logs.forget_journal(*seq);
        }
        Ok(released.len())
    }

    /// Journal mode: indexes each durable entry of `buffer` (and each
    /// displaced record) where the journal wrote it, with the checkpoint
    /// `mark`; returns what is still queued in the journal.
    fn index_buffer(
        &self,
        buffer: &Buffer,
        displaced: &[Displaced],
        mark: JournalPos,
    ) -> Result<Unindexed> {
        let states: HashMap<u64, LedgerState> = self.states.lock().clone();
        let live = |ledger: u64| states.get(&ledger).is_none_or(|s| !s.deleted);
        let mut batch = IndexBatch::default();
        let mut usage: BTreeMap<u64, LogUsage> = BTreeMap::new();
        let mut pending = Unindexed::default();
        // Older records first, so a newer durable one of the same key wins.
        for (i, d) in displaced.iter().enumerate() {
            match placement_state(Some(&d.placement), d.payload_len) {
                PlacementState::Placed(loc) if live(d.key.0) => {
                    batch.put_location(d.key.0, d.key.1, loc);
                    self.count_usage(&mut usage, d.key.0, loc)?;
                }
                PlacementState::Pending => pending.displaced.push(i),
                _ => {}
            }
        }
        let mut touched = Vec::new();
        for (key, slot) in buffer.iter() {
            if !live(key.0) {
                continue;
            }
            match slot.location() {
                PlacementState::Placed(loc) => {
                    batch.put_location(key.0, key.1, loc);
                    self.count_usage(&mut usage, key.0, loc)?;
                    touched.push(key.0);
                }
                PlacementState::Pending => pending.keys.push(*key),
                PlacementState::Failed => {}
            }
        }
        for (log_id, u) in &usage {
            batch.put_usage(*log_id, u);
        }
        touched.dedup();
        for ledger in touched {
            if let Some(s) = states.get(&ledger) {
                batch.put_state(ledger, s);
            }
        }
        batch.put_checkpoint(mark);
        // Not synced: every record indexed here is still in the journal,
        // after the previous durable checkpoint, so replay indexes it again
        // if a power loss drops this write (`trim_journal` syncs before a
        // file it needs can go). A sync here waited behind the journal's
        // writes on the same disk, each flush, and held adds back when the
        // write cache filled meanwhile: ~15 % of a bookie's throughput with
        // 64 KiB entries.
        self.index.write_unsynced(batch)?;
        Ok(pending)
    }

    /// Entry-log mode: copies `buffer` into the entry logs and indexes it
    /// there, with the checkpoint `mark`.
    fn write_buffer(&self, buffer: &Buffer, mark: JournalPos) -> Result<()> {
        let states: HashMap<u64, LedgerState> = self.states.lock().clone();
        let live: Vec<&StoredEntry> = buffer
            .values()
            .filter(|s| states.get(&s.entry.ledger_id).is_none_or(|st| !st.deleted))
            .map(|s| s.entry.as_ref())
            .collect();
        let mut batch = IndexBatch::default();
        let mut usage: BTreeMap<u64, LogUsage> = BTreeMap::new();
        let mut start = 0;
        while start < live.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < live.len()
                && (end == start || bytes + live[end].record_len() <= FLUSH_CHUNK)
            {
                bytes += live[end].record_len();
                end += 1;
            }
            let chunk = &live[start..end];
            let locations = self.logs.append(chunk)?;
            for (e, loc) in chunk.iter().zip(locations) {
                batch.put_location(e.ledger_id, e.entry_id, loc);
                self.count_usage(&mut usage, e.ledger_id, loc)?;
            }
            start = end;
        }
        for (log_id, u) in &usage {
            batch.put_usage(*log_id, u);
        }
        let mut touched: Vec<u64> = live.iter().map(|e| e.ledger_id).collect();
        touched.dedup();
        for ledger in touched {
            if let Some(s) = states.get(&ledger) {
                batch.put_state(ledger, s);
            }
        }
        batch.put_checkpoint(mark);
        self.index.write(batch)
    }

    /// Adds an entry's bytes to the usage record of the log it went to,
    /// loading that record from the index the first time.
    fn count_usage(
        &self,
        usage: &mut BTreeMap<u64, LogUsage>,
        ledger_id: u64,
        loc: crate::entrylog::Location,
    ) -> Result<()> {
        let u = match usage.entry(loc.log_id) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(self.index.usage(loc.log_id)?)
            }
        };
        *u.ledgers.entry(ledger_id).or_default() += loc.len as u64;
        Ok(())
    }

    /// One garbage-collection pass: removes entry logs with no live data
    /// and compacts those whose live ratio is below the threshold. Returns
    /// the bytes reclaimed. Blocking.
    pub fn gc(&self) -> Result<u64> {
        self.collect(true)
    }

    /// The cheap part of [`LedgerStorage::gc`], run by the flush thread
    /// after a flush (at most once a second): files (journal files and entry
    /// logs) that hold no live entry at all are released, nothing is
    /// compacted. So a journal file goes back to the reuse pool about a
    /// second after its last ledger's deletion rather than a GC interval
    /// later. Blocking.
    pub fn release_dead(&self) -> Result<u64> {
        self.collect(false)
    }

    fn collect(&self, compact: bool) -> Result<u64> {
        let usages = self.index.log_usages()?;
        let active = self.logs.active_id();
        // Journal files from the checkpoint on are still replayed at start.
        let checkpoint = self.index.checkpoint()?;
        let mut reclaimed = 0;
        for (log_id, usage) in usages {
            let collectable = match journal_seq(log_id) {
                Some(seq) => seq < checkpoint.seq,
                None => log_id < active,
            };
            if !collectable {
                continue;
            }
            let deleted: Vec<u64> = {
                let states = self.states.lock();
                usage
                    .ledgers
                    .keys()
                    .filter(|l| states.get(l).is_some_and(|s| s.deleted))
                    .copied()
                    .collect()
            };
            let total = usage.total();
            let dead: u64 = deleted.iter().map(|l| usage.ledgers[l]).sum();
            let live = total - dead;
            if live > 0 && !compact {
                continue;
            }
            if total > 0 && (live as f64 / total as f64) >= self.gc_live_ratio {
                continue;
            }
            let _m = self.maintenance.lock();
            let size = self.logs.size(log_id);
            if live > 0 {
                self.compact_log(log_id, &usage, &deleted)?;
            }
            let mut batch = IndexBatch::default();
            batch.delete_usage(log_id);
            self.index.write(batch)?;
            self.logs.remove(log_id)?;
            let freed = size.saturating_sub(live);
            reclaimed += freed;
            self.metrics.compacted_logs.inc();
            self.metrics.reclaimed_bytes.inc_by(freed);
            match journal_seq(log_id) {
                Some(seq) => info!(seq, live, total, freed, "journal file garbage-collected"),
                None => info!(log_id, live, total, freed, "entry log garbage-collected"),
            }
        }
        // Journal files nothing refers to (all their ledgers were deleted
        // before a flush, or their batch failed) go too. (Every flush trims
        // them as well, so the pass run after flushes leaves this out.)
        if compact {
            let _m = self.maintenance.lock();
            self.trim_journal(checkpoint)?;
        }
        Ok(reclaimed)
    }

    /// Copies the live entries of `log_id` to the active log and repoints
    /// the index at them. Called with the maintenance lock held.
    fn compact_log(&self, log_id: u64, usage: &LogUsage, deleted: &[u64]) -> Result<()> {
        for ledger in usage.ledgers.keys() {
            if deleted.contains(ledger) {
                continue;
            }
            let entries = self.index.entries_in_log(*ledger, log_id)?;
            for chunk in entries.chunks(1024) {
                let mut stored = Vec::with_capacity(chunk.len());
                for (_, loc) in chunk {
                    let e = self.logs.read(*loc)?;
                    e.verify()?;
                    stored.push(e);
                }
                let refs: Vec<&StoredEntry> = stored.iter().collect();
                let locations = self.logs.append(&refs)?;
                let mut batch = IndexBatch::default();
                let mut new_usage: BTreeMap<u64, LogUsage> = BTreeMap::new();
                for (e, loc) in stored.iter().zip(locations) {
                    batch.put_location(e.ledger_id, e.entry_id, loc);
                    self.count_usage(&mut new_usage, e.ledger_id, loc)?;
                }
                for (id, u) in &new_usage {
                    batch.put_usage(*id, u);
                }
                self.index.write(batch)?;
            }
        }
        Ok(())
    }

    pub fn shutdown(&self) -> Result<()> {
        let r = self.flush();
        self.journal.shutdown();
        self.recycler.stop();
        r
    }
}

/// The fixed fields of a journal add record; the payload follows them.
pub fn encode_journal_head(op: &AddOp) -> [u8; JOURNAL_HEAD] {
    let e = &op.entry;
    let mut b = [0u8; JOURNAL_HEAD];
    b[0] = JOURNAL_ADD;
    b[1..9].copy_from_slice(&e.ledger_id.to_le_bytes());
    b[9..17].copy_from_slice(&e.entry_id.to_le_bytes());
    b[17..25].copy_from_slice(&e.cumulative_length.to_le_bytes());
    b[25..33].copy_from_slice(&op.lac.to_le_bytes());
    b[33..37].copy_from_slice(&e.crc32c.to_le_bytes());
    b
}

/// Decodes a journal add record (the inverse of [`encode_journal_head`] plus
/// payload). Public so that the journal fuzz target runs replayed records
/// through the same decoding as [`LedgerStorage::open`].
pub fn decode_journal_add(b: &[u8]) -> Result<(AddOp, usize)> {
    const HEAD: usize = JOURNAL_HEAD;
    if b.len() < HEAD || b[0] != JOURNAL_ADD || b.len() > MAX_RECORD_LEN {
        return Err(BookieError::corrupt(
            "journal record",
            format!("unknown record type or size ({} bytes)", b.len()),
        ));
    }
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(a)
    };
    let entry = StoredEntry {
        ledger_id: u64_at(1),
        entry_id: u64_at(9),
        cumulative_length: u64_at(17),
        crc32c: u32::from_le_bytes([b[33], b[34], b[35], b[36]]),
        payload: Bytes::copy_from_slice(&b[HEAD..]),
    };
    // The journal CRC already vouches for the record; the entry CRC is
    // checked again on every read.
    Ok((
        AddOp {
            entry,
            lac: u64_at(25) as i64,
            recovery: false,
        },
        b.len(),
    ))
}

/// An entry read from disk where the index said `(ledger, entry)` is: it
/// must be that entry, and match its CRC32C.
fn checked_read(ledger: u64, entry: u64, stored: StoredEntry) -> Result<StoredEntry> {
    if stored.ledger_id != ledger || stored.entry_id != entry {
        return Err(BookieError::corrupt(
            "entry index",
            format!(
                "({ledger},{entry}) points at ({},{})",
                stored.ledger_id, stored.entry_id
            ),
        ));
    }
    stored.verify()?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> BookieConfig {
        BookieConfig {
            data_dir: dir.to_path_buf(),
            journal_preallocate: 1 << 20,
            // Small files, so that GC finds closed journal files too.
            journal_max_file_size: 64 << 10,
            write_cache_bytes: 4 << 20,
            entry_log_size_limit: 64 << 10,
            // The first log holds both ledgers half and half.
            gc_live_ratio: 0.6,
            ..BookieConfig::default()
        }
    }

    fn config_in(dir: &std::path::Path, mode: StorageMode) -> BookieConfig {
        BookieConfig {
            storage_mode: mode,
            ..config(dir)
        }
    }

    /// Bytes in entry-log files (beyond their 4 KiB headers).
    fn entry_log_bytes(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir.join("ledgers/logs"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len().saturating_sub(4096))
            .sum()
    }

    fn op(ledger: u64, entry: u64, fill: u8, len: usize) -> AddOp {
        let payload = Bytes::from(vec![fill; len]);
        let cum = (entry + 1) * len as u64;
        AddOp {
            entry: StoredEntry {
                ledger_id: ledger,
                entry_id: entry,
                cumulative_length: cum,
                crc32c: strata_proto::entry_crc32c(ledger, entry, cum, &payload),
                payload,
            },
            lac: entry as i64 - 1,
            recovery: false,
        }
    }

    fn read(s: &LedgerStorage, l: u64, e: u64) -> Option<Bytes> {
        s.read_blocking(l, e).unwrap().map(|x| x.payload.clone())
    }

    /// Entries large enough that the journal combines their record CRC from
    /// the payload CRC the add check computed: replay after a restart
    /// checks every record, and reads check them again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_entries_replay_with_combined_journal_checksums() {
        for mode in [StorageMode::Journal, StorageMode::EntryLog] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = config_in(dir.path(), mode);
            let payload = |e: u64| -> Bytes {
                let len = strata_proto::crc::COMBINE_WORTH_IT + (e as usize * 4099) % 70_000;
                (0..len).map(|i| (i as u64 * 31 + e * 7) as u8).collect()
            };
            let s = LedgerStorage::open(&cfg, Arc::new(Metrics::default())).unwrap();
            let mut cum = 0u64;
            let ops: Vec<AddOp> = (0..40u64)
                .map(|e| {
                    let payload = payload(e);
                    cum += payload.len() as u64;
                    AddOp {
                        entry: StoredEntry {
                            ledger_id: 7,
                            entry_id: e,
                            cumulative_length: cum,
                            crc32c: strata_proto::entry_crc32c(7, e, cum, &payload),
                            payload,
                        },
                        lac: e as i64 - 1,
                        recovery: false,
                    }
                })
                .collect();
            // One entry with a wrong CRC among them is refused alone.
            let mut bad = ops[5].clone();
            bad.entry.entry_id = 40;
            let mut batch = ops.clone();
            batch.push(bad);
            let results = s.add_batch(batch).await;
            assert!(results[..40].iter().all(|r| r.is_ok()), "{mode:?}");
            assert!(matches!(results[40], Err(BookieError::Checksum { .. })));
            // No flush: everything comes back from the journal.
            drop(s);
            let s = LedgerStorage::open(&cfg, Arc::new(Metrics::default())).unwrap();
            assert_eq!(s.lac(7).unwrap().last_entry, 39, "{mode:?}");
            for e in 0..40u64 {
                assert_eq!(read(&s, 7, e).unwrap(), payload(e), "{mode:?} entry {e}");
            }
            tokio::task::block_in_place(|| s.flush()).unwrap();
            for e in 0..40u64 {
                assert_eq!(read(&s, 7, e).unwrap(), payload(e), "{mode:?} entry {e}");
            }
        }
    }

    /// Range reads return what single reads return, across spans, entry
    /// logs, the journal, holes and limits; a damaged record in a span is an
    /// error, never data.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn range_reads_match_single_reads_and_stop_where_they_must() {
        for mode in [StorageMode::Journal, StorageMode::EntryLog] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = config_in(dir.path(), mode);
            let size = |e: u64| 100 + (e * 37 % 3000) as usize;
            let s = LedgerStorage::open(&cfg, Arc::new(Metrics::default())).unwrap();
            // Two ledgers interleaved: other records lie between a ledger's.
            for e in 0..300u64 {
                s.add(op(1, e, (e % 251) as u8, size(e))).await.unwrap();
                s.add(op(2, e, 7, 500)).await.unwrap();
            }
            tokio::task::block_in_place(|| s.flush()).unwrap();
            // The tail only in the write cache and journal.
            for e in 300..350u64 {
                s.add(op(1, e, (e % 251) as u8, size(e))).await.unwrap();
            }
            let check = |s: &LedgerStorage, got: &[Arc<StoredEntry>], from: u64| {
                for (i, e) in got.iter().enumerate() {
                    let id = from + i as u64;
                    assert_eq!((e.ledger_id, e.entry_id), (1, id), "{mode:?}");
                    assert_eq!(
                        Some(e.payload.clone()),
                        read(s, 1, id),
                        "{mode:?} entry {id}"
                    );
                }
            };
            let all = s.read_range_blocking(1, 0, 349, u64::MAX, 10_000).unwrap();
            assert_eq!(all.len(), 350, "{mode:?}");
            check(&s, &all, 0);
            // Every lookup counted once, as single reads count them.
            let m = &s.metrics;
            assert_eq!(
                m.write_cache_hits.get() + m.write_cache_misses.get(),
                m.reads.get()
            );
            assert_eq!(
                m.read_cache_hits.get() + m.read_cache_misses.get(),
                m.write_cache_misses.get()
            );
            drop(all);
            drop(s);

            // From disk alone (nothing cached), then the limits.
            let s = LedgerStorage::open(&cfg, Arc::new(Metrics::default())).unwrap();
            let all = s.read_range_blocking(1, 0, 349, u64::MAX, 10_000).unwrap();
            assert_eq!(all.len(), 350, "{mode:?}");
            // Spans end with each 64 KiB entry log or journal file: far
            // fewer reads than entries.
            let reads = s.metrics.disk_reads.get();
            assert!(reads <= 60, "{mode:?}: {reads} disk reads for 350 entries");
            check(&s, &all, 0);
            let s2 = LedgerStorage::open(&cfg, Arc::new(Metrics::default()));
            assert!(s2.is_err(), "a second open of the same directories");
            let seven = s.read_range_blocking(1, 0, 349, u64::MAX, 7).unwrap();
            assert_eq!(seven.len(), 7);
            check(&s, &seven, 0);
            let budget = 20_000u64;
            let some = s.read_range_blocking(1, 10, 349, budget, 10_000).unwrap();
            let payload: u64 = some.iter().map(|e| e.payload.len() as u64).sum();
            let but_last = payload - some.last().unwrap().payload.len() as u64;
            assert!(
                but_last < budget && payload >= budget,
                "{payload} for {budget}"
            );
            check(&s, &some, 10);
            // Ledger 2 ends at 299: the read stops there.
            let tail = s
                .read_range_blocking(2, 290, 400, u64::MAX, 10_000)
                .unwrap();
            assert_eq!(tail.len(), 10);
            assert!(
                s.read_range_blocking(2, 300, 400, u64::MAX, 10)
                    .unwrap()
                    .is_empty()
            );
            assert!(matches!(
                s.read_range_blocking(9, 0, 5, u64::MAX, 10),
                Err(BookieError::NoSuchLedger(9))
            ));
            drop(s);

            let s = LedgerStorage::open(&cfg, Arc::new(Metrics::default())).unwrap();
            // Locations out of order (a damaged index) are refused, not read.
            let a = s.index.location(1, 10).unwrap().unwrap();
            let b = s.index.location(1, 11).unwrap().unwrap();
            assert!(s.logs.read_span(&[a, b]).is_ok());
            assert!(matches!(
                s.logs.read_span(&[b, a]),
                Err(BookieError::Corrupt { .. })
            ));

            // A flipped byte in the middle of a span.
            let loc = s.index.location(1, 150).unwrap().unwrap();
            let path = match journal_seq(loc.log_id) {
                Some(seq) => {
                    assert!(matches!(mode, StorageMode::Journal));
                    cfg.journal_dir().join(crate::journal::file_name(seq))
                }
                None => dir
                    .path()
                    .join(format!("ledgers/logs/{:016x}.log", loc.log_id)),
            };
            let mut bytes = std::fs::read(&path).unwrap();
            // Inside the payload, at the record's end.
            bytes[(loc.offset + u64::from(loc.len)) as usize - 10] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
            let err = s
                .read_range_blocking(1, 140, 160, u64::MAX, 100)
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    BookieError::Checksum { entry_id: 150, .. } | BookieError::Corrupt { .. }
                ),
                "{mode:?}: {err}"
            );
            assert_eq!(
                s.read_range_blocking(1, 140, 149, u64::MAX, 100)
                    .unwrap()
                    .len(),
                10
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn entries_survive_flush_and_restart_and_gc_reclaims_deleted_ledgers() {
        for mode in [StorageMode::Journal, StorageMode::EntryLog] {
            survive_and_reclaim(mode).await;
        }
    }

    async fn survive_and_reclaim(mode: StorageMode) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path(), mode);
        let s = LedgerStorage::open(&cfg, Arc::new(Metrics::default())).unwrap();
        // Ledgers 1 and 2 interleaved so every entry log holds both.
        for e in 0..200u64 {
            s.add(op(1, e, 1, 1000)).await.unwrap();
            s.add(op(2, e, 2, 1000)).await.unwrap();
        }
        // Half of it only in the journal (no flush) at "crash" time.
        tokio::task::block_in_place(|| s.flush()).unwrap();
        for e in 200..300u64 {
            s.add(op(1, e, 1, 1000)).await.unwrap();
        }
        assert_eq!(s.lac(1).unwrap().last_entry, 299);
        drop(s);

        let s = LedgerStorage::open(&cfg, Arc::new(Metrics::default())).unwrap();
        assert_eq!(s.lac(1).unwrap().last_entry, 299);
        assert_eq!(s.lac(1).unwrap().lac, 298);
        for e in 0..300u64 {
            assert_eq!(
                read(&s, 1, e).unwrap(),
                Bytes::from(vec![1u8; 1000]),
                "entry {e}"
            );
        }
        assert_eq!(read(&s, 2, 199).unwrap(), Bytes::from(vec![2u8; 1000]));
        assert!(read(&s, 2, 200).is_none());
        assert!(matches!(
            s.read_blocking(9, 0),
            Err(BookieError::NoSuchLedger(9))
        ));

        // Fencing refuses later adds but not recovery adds.
        s.fence_blocking(2).unwrap();
        assert!(matches!(
            s.add(op(2, 200, 2, 10)).await,
            Err(BookieError::Fenced(2))
        ));
        let mut rec = op(2, 200, 2, 10);
        rec.recovery = true;
        s.add(rec).await.unwrap();

        // Corrupt payloads are refused.
        let mut bad = op(3, 0, 3, 10);
        bad.entry.payload = Bytes::from(vec![4u8; 10]);
        assert!(matches!(
            s.add(bad).await,
            Err(BookieError::Checksum { .. })
        ));

        // Delete ledger 1: logs holding only it go, mixed logs get compacted.
        tokio::task::block_in_place(|| s.flush()).unwrap();
        // Single-write mode copies nothing into entry logs on flush.
        let copied = entry_log_bytes(dir.path());
        match mode {
            StorageMode::Journal => assert_eq!(copied, 0),
            StorageMode::EntryLog => assert!(copied > 500_000, "{copied}"),
        }
        // Files that hold entries: journal files too in journal mode.
        let files = |s: &LedgerStorage| match mode {
            StorageMode::Journal => s.entry_log_count() + s.journal_file_count(),
            StorageMode::EntryLog => s.entry_log_count(),
        };
        let logs_before = files(&s);
        s.delete_blocking(1).unwrap();
        assert!(matches!(
            s.read_blocking(1, 0),
            Err(BookieError::Deleted(1))
        ));
        // A new active log, so every log holding ledger 1 is eligible.
        s.add(op(5, 0, 5, 70_000)).await.unwrap();
        tokio::task::block_in_place(|| s.flush()).unwrap();
        let reclaimed = tokio::task::block_in_place(|| s.gc()).unwrap();
        assert!(
            reclaimed > 250_000,
            "{mode:?}: reclaimed {reclaimed} of ~300 KB"
        );
        let logs_after = files(&s);
        assert!(
            logs_after < logs_before,
            "{mode:?}: {logs_after} >= {logs_before}"
        );
        if mode == StorageMode::Journal {
            // Ledger 2's entries were moved out of the mixed journal files.
            assert!(entry_log_bytes(dir.path()) > 100_000);
        }
        for e in 0..200u64 {
            assert_eq!(
                read(&s, 2, e).unwrap(),
                Bytes::from(vec![2u8; 1000]),
                "entry {e} after compaction"
            );
        }
        drop(s);
        let s = LedgerStorage::open(&cfg, Arc::new(Metrics::default())).unwrap();
        assert!(matches!(
            s.read_blocking(1, 5),
            Err(BookieError::Deleted(1))
        ));
        assert_eq!(read(&s, 2, 150).unwrap(), Bytes::from(vec![2u8; 1000]));
        assert_eq!(read(&s, 2, 200).unwrap(), Bytes::from(vec![2u8; 10]));
    }

    /// Journal files emptied by GC (journal mode) or trimmed after a flush
    /// (entry-log mode) become new journal files. After a restart every
    /// live entry reads back, the deleted ledger stays deleted, and nothing
    /// of what the reused files held before comes back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reused_journal_files_keep_every_entry_and_bring_back_none() {
        for mode in [StorageMode::Journal, StorageMode::EntryLog] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = BookieConfig {
                journal_reuse_files: 64,
                journal_reuse_grace: std::time::Duration::ZERO,
                ..config_in(dir.path(), mode)
            };
            let metrics = Arc::new(Metrics::default());
            let s = LedgerStorage::open(&cfg, metrics.clone()).unwrap();
            for e in 0..150u64 {
                s.add(op(1, e, 1, 1000)).await.unwrap();
                s.add(op(3, e, 3, 1000)).await.unwrap();
            }
            tokio::task::block_in_place(|| s.flush()).unwrap();
            s.delete_blocking(1).unwrap();
            s.add(op(5, 0, 5, 70_000)).await.unwrap();
            tokio::task::block_in_place(|| s.flush()).unwrap();
            tokio::task::block_in_place(|| s.gc()).unwrap();
            let pooled = metrics.journal_pooled_files.get();
            assert!(pooled >= 3, "{mode:?}: {pooled} pooled");
            // New entries go into reused files; the last batch is only in
            // the journal when the storage stops.
            for e in 0..200u64 {
                s.add(op(2, e, 2, 600)).await.unwrap();
                if e == 120 {
                    tokio::task::block_in_place(|| s.flush()).unwrap();
                }
            }
            let reused = metrics.journal_reused_files.get();
            assert!(reused >= 2, "{mode:?}: {reused} reused");
            drop(s);

            let metrics = Arc::new(Metrics::default());
            let s = LedgerStorage::open(&cfg, metrics.clone()).unwrap();
            assert_eq!(s.lac(2).unwrap().last_entry, 199, "{mode:?}");
            assert_eq!(s.lac(3).unwrap().last_entry, 149, "{mode:?}");
            for e in 0..200u64 {
                assert_eq!(read(&s, 2, e).unwrap(), Bytes::from(vec![2u8; 600]), "{e}");
            }
            for e in 0..150u64 {
                assert_eq!(read(&s, 3, e).unwrap(), Bytes::from(vec![3u8; 1000]), "{e}");
                assert!(matches!(
                    s.read_blocking(1, e),
                    Err(BookieError::Deleted(1))
                ));
            }
            assert_eq!(read(&s, 5, 0).unwrap().len(), 70_000);
            assert!(read(&s, 2, 200).is_none());
            assert_eq!(metrics.read_errors.get(), 0);
            // Without reuse the pool is deleted at the next start.
            drop(s);
            let none = BookieConfig {
                journal_reuse_files: 0,
                ..cfg.clone()
            };
            let s = LedgerStorage::open(&none, Arc::new(Metrics::default())).unwrap();
            let pooled = std::fs::read_dir(cfg.journal_dir())
                .unwrap()
                .filter(|e| {
                    let name = e.as_ref().unwrap().file_name();
                    name.to_string_lossy().ends_with(".free")
                })
                .count();
            assert_eq!(pooled, 0, "{mode:?}");
            assert_eq!(read(&s, 2, 10).unwrap(), Bytes::from(vec![2u8; 600]));
        }
    }

    /// Journal-mode storage in `dir` whose released journal files are pooled
    /// for reuse; its config and metrics.
    fn reusing_journal_files(dir: &std::path::Path) -> (BookieConfig, Arc<Metrics>, LedgerStorage) {
        let cfg = BookieConfig {
            journal_reuse_files: 64,
            ..config_in(dir, StorageMode::Journal)
        };
        let metrics = Arc::new(Metrics::default());
        let s = LedgerStorage::open(&cfg, metrics.clone()).unwrap();
        (cfg, metrics, s)
    }

    /// A ledger deleted before its last entries were flushed takes those
    /// entries out of the write cache, so the next flush has nothing to
    /// index; it still moves the checkpoint to where the journal got, and
    /// the files behind it go back to the pool without waiting for new
    /// adds. The deleted ledger stays deleted after a restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_flush_moves_the_checkpoint_past_a_deleted_ledgers_last_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, metrics, s) = reusing_journal_files(dir.path());
        for e in 0..100u64 {
            s.add(op(1, e, 1, 1000)).await.unwrap();
        }
        tokio::task::block_in_place(|| s.flush()).unwrap();
        let flushed_at = s.index.checkpoint().unwrap();
        // Five more files' worth, never flushed.
        for e in 100..420u64 {
            s.add(op(1, e, 1, 1000)).await.unwrap();
        }
        let written = s.journal.written();
        assert!(
            written.seq >= flushed_at.seq + 4,
            "{flushed_at:?} {written:?}"
        );
        s.delete_blocking(1).unwrap();
        tokio::task::block_in_place(|| s.flush()).unwrap();
        assert_eq!(s.index.checkpoint().unwrap(), written);
        tokio::task::block_in_place(|| s.release_dead()).unwrap();
        let left: Vec<u64> = s
            .journal
            .files()
            .unwrap()
            .into_iter()
            .filter(|seq| *seq < written.seq)
            .collect();
        assert!(left.is_empty(), "journal files kept: {left:?}");
        assert!(metrics.journal_pooled_files.get() >= 5);
        // Nothing to do when idle and caught up.
        tokio::task::block_in_place(|| s.flush()).unwrap();
        assert_eq!(s.index.checkpoint().unwrap(), written);
        drop(s);
        let s = LedgerStorage::open(&cfg, Arc::new(Metrics::default())).unwrap();
        for e in [0u64, 150, 419] {
            assert!(matches!(
                s.read_blocking(1, e),
                Err(BookieError::Deleted(1))
            ));
        }
        s.add(op(2, 0, 2, 1000)).await.unwrap();
        assert_eq!(read(&s, 2, 0).unwrap(), Bytes::from(vec![2u8; 1000]));
    }

    /// The pass run after flushes releases the files a deletion emptied,
    /// and leaves the files with live entries (and all compaction) to GC.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn emptied_journal_files_are_released_without_waiting_for_gc() {
        // The next file is prepared in the background after each roll, so
        // whether it is there yet is left out of the counts.
        fn written_journal_files(s: &LedgerStorage) -> usize {
            let current = s.journal.written().seq;
            s.journal
                .files()
                .unwrap()
                .into_iter()
                .filter(|seq| *seq <= current)
                .count()
        }
        let dir = tempfile::tempdir().unwrap();
        let (_, metrics, s) = reusing_journal_files(dir.path());
        for e in 0..200u64 {
            s.add(op(1, e, 1, 1000)).await.unwrap();
        }
        // A file holding both ledgers, then ledger 2 alone.
        for e in 0..100u64 {
            s.add(op(1, 200 + e, 1, 1000)).await.unwrap();
            s.add(op(2, e, 2, 1000)).await.unwrap();
        }
        for e in 100..200u64 {
            s.add(op(2, e, 2, 1000)).await.unwrap();
        }
        tokio::task::block_in_place(|| s.flush()).unwrap();
        let files = written_journal_files(&s);
        s.delete_blocking(1).unwrap();
        tokio::task::block_in_place(|| s.flush()).unwrap();
        let released = tokio::task::block_in_place(|| s.release_dead()).unwrap();
        let pooled = metrics.journal_pooled_files.get();
        assert!(released > 150_000, "released {released} bytes");
        assert!(pooled >= 2, "{pooled} pooled");
        assert_eq!(written_journal_files(&s), files - pooled as usize);
        // Nothing was compacted: the mixed files wait for GC.
        assert_eq!(entry_log_bytes(dir.path()), 0);
        for e in 0..200u64 {
            assert_eq!(read(&s, 2, e).unwrap(), Bytes::from(vec![2u8; 1000]), "{e}");
        }
        tokio::task::block_in_place(|| s.gc()).unwrap();
        assert!(
            entry_log_bytes(dir.path()) > 0,
            "GC compacts the mixed files"
        );
        assert_eq!(read(&s, 2, 50).unwrap(), Bytes::from(vec![2u8; 1000]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn switching_storage_mode_keeps_journal_resident_entries() {
        let dir = tempfile::tempdir().unwrap();
        let journal = config_in(dir.path(), StorageMode::Journal);
        let s = LedgerStorage::open(&journal, Arc::new(Metrics::default())).unwrap();
        for e in 0..300u64 {
            s.add(op(4, e, 4, 1000)).await.unwrap();
        }
        tokio::task::block_in_place(|| s.shutdown()).unwrap();
        drop(s);
        assert_eq!(entry_log_bytes(dir.path()), 0);

        // Entry-log mode trims only journal files that nothing points into.
        let copy = config_in(dir.path(), StorageMode::EntryLog);
        let s = LedgerStorage::open(&copy, Arc::new(Metrics::default())).unwrap();
        for e in 0..10u64 {
            s.add(op(5, e, 5, 1000)).await.unwrap();
        }
        tokio::task::block_in_place(|| s.flush()).unwrap();
        tokio::task::block_in_place(|| s.gc()).unwrap();
        for e in 0..300u64 {
            assert_eq!(read(&s, 4, e).unwrap(), Bytes::from(vec![4u8; 1000]), "{e}");
        }
        assert!(entry_log_bytes(dir.path()) >= 10_000);
        // Once ledger 4 is deleted, GC removes its journal files.
        let files = s.journal_file_count();
        s.delete_blocking(4).unwrap();
        tokio::task::block_in_place(|| s.gc()).unwrap();
        assert!(
            s.journal_file_count() < files,
            "{} >= {files}",
            s.journal_file_count()
        );
        assert_eq!(read(&s, 5, 9).unwrap(), Bytes::from(vec![5u8; 1000]));
    }

    /// Journal files whose entries were all deleted before any flush
    /// indexed them are released by the flush itself, the index synced
    /// first (its checkpoint is written unsynced); what is still live
    /// reads back after a restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_of_ledgers_deleted_before_a_flush_are_released_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = LedgerStorage::open(&config(dir.path()), Arc::new(Metrics::default())).unwrap();
        for e in 0..300u64 {
            s.add(op(6, e, 6, 1000)).await.unwrap();
        }
        s.add(op(7, 0, 7, 1000)).await.unwrap();
        let files = s.journal_file_count();
        assert!(files >= 4, "{files} journal files");
        s.delete_blocking(6).unwrap();
        tokio::task::block_in_place(|| s.flush()).unwrap();
        assert!(
            s.journal_file_count() <= 2,
            "{} of {files} journal files left",
            s.journal_file_count()
        );
        tokio::task::block_in_place(|| s.shutdown()).unwrap();
        drop(s);
        let s = LedgerStorage::open(&config(dir.path()), Arc::new(Metrics::default())).unwrap();
        assert_eq!(read(&s, 7, 0).unwrap(), Bytes::from(vec![7u8; 1000]));
        assert!(matches!(
            s.read_blocking(6, 0),
            Err(BookieError::Deleted(6))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_only_refuses_adds_but_serves_reads() {
        let dir = tempfile::tempdir().unwrap();
        let s = LedgerStorage::open(&config(dir.path()), Arc::new(Metrics::default())).unwrap();
        s.add(op(1, 0, 1, 100)).await.unwrap();
        s.set_read_only(Some(ReadOnlyReason::Disk));
        assert!(matches!(
            s.add(op(1, 1, 1, 100)).await,
            Err(BookieError::ReadOnly(_))
        ));
        assert!(read(&s, 1, 0).is_some());
        // Recovery adds still go through under the disk watermark...
        let mut rec = op(1, 1, 1, 100);
        rec.recovery = true;
        s.add(rec).await.unwrap();
        // ...but not when the journal itself failed.
        s.set_read_only(Some(ReadOnlyReason::JournalError));
        let mut rec = op(1, 2, 1, 100);
        rec.recovery = true;
        assert!(matches!(s.add(rec).await, Err(BookieError::ReadOnly(_))));
        s.set_read_only(None);
        s.add(op(1, 2, 1, 100)).await.unwrap();
    }
}
