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

use bytes::Bytes;
use foyer::{HybridCacheProperties, Load, Location};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared, join_all};
use object_store::ObjectStore;
use object_store::path::Path;
use tokio::sync::oneshot;

use super::TieredReader;
use super::cache::{BlockKey, Counters, clone_error};
use crate::error::{OffloadError, Result};
use crate::format::{LedgerIndex, check_block, check_block_crc};
use crate::retry::{get_range, get_range_crcs};
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
}

impl LedgerShared {
    fn key(&self, block: usize) -> BlockKey {
        BlockKey {
            object: self.data_key.clone(),
            block: block as u64,
        }
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

/// Blocks this task promised to fetch. Dropping it (a panic) releases the
/// claims so later reads try again instead of waiting on a dead fetch.
struct Claim {
    reader: Arc<TieredReader>,
    ledger: Arc<LedgerShared>,
    senders: HashMap<usize, oneshot::Sender<Shared1>>,
}

impl Claim {
    fn resolve(&mut self, block: usize, res: Shared1, cache: bool) {
        let key = self.ledger.key(block);
        if let (Ok(bytes), true) = (&res, cache) {
            self.reader.cache.insert(key.clone(), bytes.clone());
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
            match self.cache.memory().get(&ledger.key(b)) {
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
                } else if let Some(e) = self.cache.memory().get(&key) {
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
        if self.cache.is_hybrid() {
            let loads = join_all(blocks.iter().map(|b| self.load_from_disk(&ledger, *b))).await;
            let mut left = Vec::with_capacity(blocks.len());
            for (b, found) in blocks.into_iter().zip(loads) {
                match found {
                    Some(bytes) => {
                        if purpose == Purpose::Read {
                            Counters::add(&self.counters.disk_hits, 1);
                        }
                        claim.resolve(b, Ok(bytes), false);
                    }
                    None => left.push(b),
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
        let groups = self.coalesce(&ledger.index, &blocks);
        let results = join_all(
            groups
                .into_iter()
                .map(|g| self.fetch_group(&ledger, g, purpose)),
        )
        .await;
        for (b, res) in results.into_iter().flatten() {
            claim.resolve(b, res, true);
        }
    }

    /// A block from the disk cache, checked again (disks rot too); a bad
    /// copy is dropped from the cache and counts as a miss. A good one is
    /// put in memory without being written to disk again.
    async fn load_from_disk(&self, ledger: &LedgerShared, block: usize) -> Option<Bytes> {
        let key = ledger.key(block);
        let bytes = match self.cache.storage().load(&key).await {
            Ok(Load::Entry { value, .. }) => value,
            Ok(Load::Piece { piece, .. }) => piece.value().clone(),
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(key = %ledger.data_key, block, error = %e, "disk cache read failed");
                return None;
            }
        };
        let row = ledger.index.rows.get(block)?;
        if let Err(e) = check_block(&ledger.data_key, row, &bytes) {
            tracing::warn!(error = %e, "damaged block in the disk cache; fetching it again");
            self.cache.remove(&key);
            return None;
        }
        let props = HybridCacheProperties::default().with_location(Location::InMem);
        self.cache.insert_with_properties(key, bytes.clone(), props);
        Some(bytes)
    }

    /// Runs of adjacent blocks, each at most `range_bytes` (a bigger single
    /// block is a run of its own).
    fn coalesce(&self, index: &LedgerIndex, blocks: &[usize]) -> Vec<Range<usize>> {
        let mut runs: Vec<Range<usize>> = Vec::new();
        let mut bytes = 0u64;
        for &b in blocks {
            let len = u64::from(index.rows[b].len);
            match runs.last_mut() {
                Some(r) if r.end == b && bytes + len <= self.config.range_bytes => {
                    r.end = b + 1;
                    bytes += len;
                }
                _ => {
                    runs.push(b..b + 1);
                    bytes = len;
                }
            }
        }
        runs
    }

    /// One ranged GET for a run of blocks; blocks that fail their checks
    /// (or a short body) are fetched once more on their own.
    async fn fetch_group(
        &self,
        ledger: &LedgerShared,
        blocks: Range<usize>,
        purpose: Purpose,
    ) -> Vec<(usize, Shared1)> {
        let rows = &ledger.index.rows[blocks.clone()];
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Vec::new();
        };
        let _ahead = match purpose {
            Purpose::ReadAhead => self.ahead_limiter.acquire().await.ok(),
            Purpose::Read => None,
        };
        let start = first.offset;
        let lens: Vec<u32> = rows.iter().map(|r| r.len).collect();
        let fetched = get_range_crcs(
            &ledger.store,
            &ledger.data_path,
            start..last.range().end,
            &lens,
            &self.retry,
            &ledger.io,
            Some(&self.limiter),
        )
        .await;
        let mut out = Vec::with_capacity(rows.len());
        let mut again = Vec::new();
        match fetched {
            Ok((bytes, crcs)) => {
                self.count_get(bytes.len());
                for (i, (row, crc)) in rows.iter().zip(crcs).enumerate() {
                    let at = (row.offset - start) as usize;
                    let block = bytes.slice(at..at + row.len as usize);
                    match check_block_crc(&ledger.data_key, row, &block, crc) {
                        Ok(()) => out.push((blocks.start + i, Ok(block))),
                        Err(_) => again.push(blocks.start + i),
                    }
                }
            }
            Err(e) if e.is_corrupt() => again.extend(blocks.clone()),
            Err(e) => {
                let e = Arc::new(e);
                return blocks.map(|b| (b, Err(e.clone()))).collect();
            }
        }
        for b in again {
            out.push((b, self.refetch(ledger, b).await.map_err(Arc::new)));
        }
        out
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
