//! Getting blocks: memory, then the disk cache, then ranged GETs that
//! coalesce adjacent missing blocks, with one fetch per block in flight.
//!
//! A caller that finds a block neither in memory nor in flight claims it by
//! putting a shared future into `TieredReader::inflight`; later callers wait
//! on that future. The fetch itself runs in a spawned task, so a reader that
//! gives up (its future dropped) does not fail the others waiting on the
//! same blocks. A block leaves `inflight` only after it was put into the
//! cache (or failed), so no one can miss both.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use foyer::Load;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared, join_all};
use object_store::ObjectStore;
use object_store::path::Path;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::TieredReader;
use super::cache::{BlockKey, Counters, DiskRuns, Run, clone_error};
use crate::error::{OffloadError, Result};
use crate::format::{LedgerIndex, check_block, check_block_crc};
use crate::retry::{Blocks, get_blocks, get_range};
use crate::stats::IoSink;

type Shared1 = std::result::Result<Bytes, Arc<OffloadError>>;
/// One block's fetch, awaited by everyone who needs the block.
pub(crate) type Inflight = Shared<BoxFuture<'static, Shared1>>;

/// What reading one ledger needs, shared with background fetches.
pub(crate) struct LedgerShared {
    pub store: Arc<dyn ObjectStore>,
    pub data_path: Path,
    pub data_key: Arc<str>,
    pub index: Arc<LedgerIndex>,
    pub io: IoSink,
    /// Blocks per disk-cache run (see [`cache::run_blocks`]).
    pub per_run: usize,
}

impl LedgerShared {
    fn key(&self, block: usize) -> BlockKey {
        BlockKey::block(&self.data_key, self.per_run, block)
    }

    fn run_of(&self, block: usize) -> usize {
        block / self.per_run
    }

    /// The blocks of run `run`.
    fn run_blocks(&self, run: usize) -> Range<usize> {
        let start = run * self.per_run;
        start..(start + self.per_run).min(self.index.rows.len())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A consumer waits for these blocks.
    Read,
    /// Blocks ahead of a sequential reader; counted apart, limited harder.
    ReadAhead,
}

#[derive(Clone)]
pub(crate) enum Pending {
    Ready(Bytes),
    Wait(Inflight),
}

impl Pending {
    /// True when the block is here (or its fetch failed).
    pub fn is_done(&self) -> bool {
        match self {
            Pending::Ready(_) => true,
            // Polled once: nobody may have polled the shared fetch yet.
            Pending::Wait(f) => f.clone().now_or_never().is_some(),
        }
    }

    pub async fn get(self) -> Result<Bytes> {
        match self {
            Pending::Ready(b) => Ok(b),
            Pending::Wait(f) => f.await.map_err(|e| clone_error(&e)),
        }
    }
}

/// One entry (a run or a block) from the disk tier; errors are logged and
/// count as a miss, and an entry that cannot be decoded is dropped.
async fn load(disk: &DiskRuns, key: &BlockKey, object: &str) -> Option<Run> {
    match disk.cache.storage().load(key).await {
        Ok(Load::Entry { value, .. }) => Some(value),
        Ok(Load::Piece { piece, .. }) => Some(piece.value().clone()),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(key = %object, entry = %key.block, error = %e, "disk cache read failed; dropping the entry");
            disk.cache.remove(key);
            None
        }
    }
}

/// Blocks this task promised to fetch. Dropping it (a panic) releases the
/// claims so later reads try again instead of waiting on a dead fetch.
struct Claim {
    reader: Arc<TieredReader>,
    ledger: Arc<LedgerShared>,
    senders: HashMap<usize, oneshot::Sender<Shared1>>,
}

impl Claim {
    /// Hands block `block` to its waiters; a good block goes into memory
    /// first, so no one can miss both.
    fn resolve(&mut self, block: usize, res: Shared1) {
        let key = self.ledger.key(block);
        if let Ok(bytes) = &res {
            self.reader.cache.memory.insert(key.clone(), bytes.clone());
        }
        self.reader.inflight.lock().remove(&key);
        if let Some(tx) = self.senders.remove(&block) {
            let _ = tx.send(res);
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut map = self.reader.inflight.lock();
        for block in self.senders.keys() {
            map.remove(&self.ledger.key(*block));
        }
    }
}

impl TieredReader {
    /// Returns one [`Pending`] per block of `blocks`, starting fetches for
    /// blocks nobody has or is fetching.
    pub(crate) fn request_blocks(
        self: &Arc<Self>,
        ledger: &Arc<LedgerShared>,
        blocks: Range<usize>,
        purpose: Purpose,
    ) -> Vec<Pending> {
        let mut out: Vec<Option<Pending>> = Vec::with_capacity(blocks.len());
        let mut missing = Vec::new();
        for b in blocks.clone() {
            match self.cache.memory.get(&ledger.key(b)) {
                Some(e) => out.push(Some(Pending::Ready(e.value().clone()))),
                None => {
                    missing.push(b);
                    out.push(None);
                }
            }
        }
        if purpose == Purpose::Read {
            let hits = (blocks.len() - missing.len()) as u64;
            Counters::add(&self.counters.memory_hits, hits);
        }
        let mut mine = HashMap::new();
        if !missing.is_empty() {
            let mut map = self.inflight.lock();
            for b in missing {
                let key = ledger.key(b);
                let slot = &mut out[b - blocks.start];
                if let Some(f) = map.get(&key) {
                    *slot = Some(Pending::Wait(f.clone()));
                } else if let Some(e) = self.cache.memory.get(&key) {
                    // Cached between the first look and taking the lock.
                    *slot = Some(Pending::Ready(e.value().clone()));
                } else {
                    let (tx, rx) = oneshot::channel();
                    let fut: Inflight = rx
                        .map(|r| {
                            r.unwrap_or_else(|_| {
                                Err(Arc::new(OffloadError::Other(
                                    "block fetch was abandoned".into(),
                                )))
                            })
                        })
                        .boxed()
                        .shared();
                    map.insert(key, fut.clone());
                    *slot = Some(Pending::Wait(fut));
                    mine.insert(b, tx);
                }
            }
        }
        if !mine.is_empty() {
            let claim = Claim {
                reader: self.clone(),
                ledger: ledger.clone(),
                senders: mine,
            };
            tokio::spawn(self.clone().fetch_claimed(claim, purpose));
        }
        out.into_iter().flatten().collect()
    }

    /// Disk cache first, then the store for what is left.
    async fn fetch_claimed(self: Arc<Self>, mut claim: Claim, purpose: Purpose) {
        let ledger = claim.ledger.clone();
        let mut blocks: Vec<usize> = claim.senders.keys().copied().collect();
        blocks.sort_unstable();
        // Blocks memory evicted that wait for the rest of their runs.
        blocks.retain(|&b| match self.cache.evicted(&ledger.key(b)) {
            Some(bytes) => {
                if purpose == Purpose::Read {
                    Counters::add(&self.counters.memory_hits, 1);
                }
                claim.resolve(b, Ok(bytes));
                false
            }
            None => true,
        });
        if self.cache.disk.is_some() {
            let mut runs: Vec<usize> = blocks.iter().map(|b| ledger.run_of(*b)).collect();
            runs.dedup();
            let loads = join_all(runs.iter().map(|r| self.load_run(&ledger, *r))).await;
            let mut found = HashMap::new();
            for loaded in loads.into_iter().flatten() {
                found.extend(loaded);
            }
            // Blocks whose run is not on disk may be there on their own.
            let single: Vec<usize> = blocks
                .iter()
                .copied()
                .filter(|b| !found.contains_key(b))
                .collect();
            let loads = join_all(single.iter().map(|b| self.load_block(&ledger, *b))).await;
            for (b, loaded) in single.into_iter().zip(loads) {
                if let Some(bytes) = loaded {
                    found.insert(b, bytes);
                }
            }
            let mut left = Vec::with_capacity(blocks.len());
            for b in blocks {
                match found.remove(&b) {
                    Some(bytes) => {
                        if purpose == Purpose::Read {
                            Counters::add(&self.counters.disk_hits, 1);
                        }
                        claim.resolve(b, Ok(bytes));
                    }
                    None => left.push(b),
                }
            }
            // The rest of a loaded run goes to memory too: a sequential
            // reader wants it next.
            for (b, bytes) in found {
                let key = ledger.key(b);
                if !self.cache.memory.contains(&key) {
                    self.cache.memory.insert(key, bytes);
                }
            }
            blocks = left;
        }
        if blocks.is_empty() {
            return;
        }
        match purpose {
            Purpose::Read => Counters::add(&self.counters.misses, blocks.len() as u64),
            Purpose::ReadAhead => {
                Counters::add(&self.counters.read_ahead_blocks, blocks.len() as u64)
            }
        }
        let groups = self.coalesce(&ledger, &blocks);
        // Blocks are handed to their waiters as each arrives, not when its
        // GET ends.
        let claim = Mutex::new(claim);
        join_all(
            groups
                .into_iter()
                .map(|g| self.fetch_group(&ledger, g, purpose, &claim)),
        )
        .await;
    }

    /// A block the disk cache holds on its own (see [`BlockCache`]),
    /// checked again; a bad copy is dropped and counts as a miss.
    ///
    /// [`BlockCache`]: super::cache::BlockCache
    async fn load_block(&self, ledger: &LedgerShared, block: usize) -> Option<Bytes> {
        let mut one = self
            .load_checked(ledger, ledger.key(block), block..block + 1)
            .await?;
        one.pop().map(|(_, bytes)| bytes)
    }

    /// A run from the disk cache, split into its blocks.
    async fn load_run(&self, ledger: &LedgerShared, run: usize) -> Option<Vec<(usize, Bytes)>> {
        let key = BlockKey::run(&ledger.data_key, ledger.per_run, run);
        self.load_checked(ledger, key, ledger.run_blocks(run)).await
    }

    /// The disk cache's entry `key`, which holds blocks `ids`, each checked
    /// again (disks rot too); a bad entry is dropped from the cache and
    /// counts as a miss.
    async fn load_checked(
        &self,
        ledger: &LedgerShared,
        key: BlockKey,
        ids: Range<usize>,
    ) -> Option<Vec<(usize, Bytes)>> {
        let disk = self.cache.disk.as_ref()?;
        let Run(blocks) = load(disk, &key, &ledger.data_key).await?;
        let checked = if blocks.len() == ids.len() {
            ids.zip(blocks)
                .map(|(b, block)| {
                    check_block(&ledger.data_key, &ledger.index.rows[b], &block)?;
                    Ok((b, block))
                })
                .collect::<Result<Vec<_>>>()
        } else {
            Err(OffloadError::corrupt(
                &ledger.data_key,
                format!(
                    "cached entry {} has {} blocks, not {}",
                    key.block,
                    blocks.len(),
                    ids.len()
                ),
            ))
        };
        match checked {
            Ok(out) => Some(out),
            Err(e) => {
                tracing::warn!(error = %e, "damaged entry in the disk cache; fetching its blocks again");
                disk.cache.remove(&key);
                None
            }
        }
    }

    /// Groups of adjacent blocks, each at most `range_bytes` (a bigger
    /// single block is a group of its own).
    fn coalesce(&self, ledger: &LedgerShared, blocks: &[usize]) -> Vec<Range<usize>> {
        let rows = &ledger.index.rows;
        let len = |b: usize| u64::from(rows[b].len);
        let mut groups: Vec<Range<usize>> = Vec::new();
        let mut bytes = 0u64;
        for &b in blocks {
            match groups.last_mut() {
                Some(g) if g.end == b && bytes + len(b) <= self.config.range_bytes => {
                    g.end = b + 1;
                    bytes += len(b);
                }
                _ => {
                    groups.push(b..b + 1);
                    bytes = len(b);
                }
            }
        }
        groups
    }

    /// One ranged GET for a run of blocks, each resolved in `claim` as it
    /// arrives; blocks that fail their checks (or a short body) are fetched
    /// once more on their own.
    async fn fetch_group(
        &self,
        ledger: &LedgerShared,
        blocks: Range<usize>,
        purpose: Purpose,
        claim: &Mutex<Claim>,
    ) {
        let rows = &ledger.index.rows[blocks.clone()];
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return;
        };
        let _ahead = match purpose {
            Purpose::ReadAhead => self.ahead_limiter.acquire().await.ok(),
            Purpose::Read => None,
        };
        let lens: Vec<u32> = rows.iter().map(|r| r.len).collect();
        // Blocks handed over (good or not), and those to fetch again.
        let arrived = AtomicUsize::new(0);
        let again = Mutex::new(Vec::new());
        let started = std::time::Instant::now();
        let fetched = get_blocks(
            &ledger.store,
            &ledger.data_path,
            first.offset..last.range().end,
            Blocks {
                lens: &lens,
                on_block: &|i, block, crc| {
                    arrived.store(i + 1, Ordering::Relaxed);
                    let b = blocks.start + i;
                    match check_block_crc(&ledger.data_key, &rows[i], &block, crc) {
                        Ok(()) => claim.lock().resolve(b, Ok(block)),
                        Err(_) => again.lock().push(b),
                    }
                },
            },
            &self.retry,
            &ledger.io,
            Some(&self.limiter),
        )
        .await;
        let arrived = arrived.into_inner();
        tracing::debug!(
            key = %ledger.data_key,
            blocks = ?blocks,
            bytes = last.range().end - first.offset,
            ?purpose,
            ms = started.elapsed().as_secs_f64() * 1e3,
            ok = fetched.is_ok(),
            "ranged GET of blocks"
        );
        if arrived > 0 {
            self.count_get(lens[..arrived].iter().map(|l| *l as usize).sum());
        }
        let mut again = again.into_inner();
        let rest = blocks.start + arrived..blocks.end;
        match fetched {
            Ok(()) => {}
            // A short or damaged body: what did not come is fetched on its own.
            Err(e) if e.is_corrupt() => again.extend(rest),
            Err(e) => {
                let e = Arc::new(e);
                let mut claim = claim.lock();
                for b in rest {
                    claim.resolve(b, Err(e.clone()));
                }
            }
        }
        for b in again {
            let res = self.refetch(ledger, b).await.map_err(Arc::new);
            claim.lock().resolve(b, res);
        }
    }

    /// The second and last try of a block that came back damaged.
    async fn refetch(&self, ledger: &LedgerShared, block: usize) -> Result<Bytes> {
        let row = &ledger.index.rows[block];
        tracing::warn!(key = %ledger.data_key, block, "damaged block fetched; fetching it again");
        let res = self
            .get(ledger, row.range())
            .await
            .and_then(|b| check_block(&ledger.data_key, row, &b).map(|_| b));
        if let Err(e) = &res
            && e.is_corrupt()
        {
            ledger.io.corrupt_block();
            Counters::add(&self.counters.corrupt_blocks, 1);
            tracing::error!(error = %e, "block is corrupt in the object store");
        }
        res
    }

    async fn get(&self, ledger: &LedgerShared, range: Range<u64>) -> Result<Bytes> {
        let res = get_range(
            &ledger.store,
            &ledger.data_path,
            range,
            &self.retry,
            &ledger.io,
            Some(&self.limiter),
        )
        .await;
        if let Ok(b) = &res {
            self.count_get(b.len());
        }
        res
    }
}
