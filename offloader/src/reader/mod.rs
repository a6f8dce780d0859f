//! The tiered reader: serves entries of offloaded ledgers from a block cache
//! (foyer hybrid: memory + local disk) or from the object store with ranged
//! GETs, one reader per process shared by every topic.
//!
//! Invariants:
//! - no block is used or cached before its CRC32C and structure were checked
//!   against the index (blocks read back from the disk cache are checked
//!   again); a block that fails twice is an error, never data;
//! - at most `max_concurrent_requests` GETs are in flight in the process,
//!   and read-ahead may hold at most half of them, so foreground reads always
//!   get a share;
//! - a block has at most one fetch in flight (see [`fetch`]).
//!
//! Latency of the first read: an index (format version 2) carries a copy of
//! the ledger's first block, which `open` puts in the block cache, so a read
//! from the start of a ledger costs the index's GET only. For an index
//! without it, `open` fetches the index and a speculative first range of
//! `data` (offset 0) concurrently: about one GET, not two in a row.

mod cache;
mod fetch;
mod ledger;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Semaphore;

pub use ledger::ColdLedger;

use crate::error::{OffloadError, Result};
use crate::format::{LedgerIndex, check_block, decode_index};
use crate::retry::{RetryPolicy, get_range};
use crate::stats::IoSink;
use crate::upload::OffloadedObjects;
use cache::{BlockCache, BlockKey, Counters};
use fetch::Inflight;

/// Smallest disk cache: it is cut into at least 8 foyer blocks of ≥ 1 MiB.
const MIN_DISK_CACHE: u64 = 8 << 20;
/// Bytes of decoded indexes kept (a 1 GiB ledger's index is ~450 KiB).
const INDEX_CACHE_BYTES: usize = 32 << 20;

#[derive(Clone, Debug)]
pub struct ReaderConfig {
    /// Memory for cached blocks.
    pub memory_cache_bytes: u64,
    /// Directory of the disk cache; `None`: memory only.
    pub disk_cache_dir: Option<PathBuf>,
    pub disk_cache_bytes: u64,
    /// GETs in flight over the whole process.
    pub max_concurrent_requests: usize,
    /// Most bytes one ranged GET asks for (adjacent missing blocks are
    /// coalesced up to this).
    pub range_bytes: u64,
    /// How far ahead of a sequential reader blocks are fetched.
    pub read_ahead_bytes: u64,
    /// Most bytes fetched ahead and not read yet, over every reader of the
    /// process (each sequential reader holds up to `read_ahead_bytes`).
    pub read_ahead_budget_bytes: u64,
    /// A ledger not read for this long gives back what read-ahead holds for
    /// it when another reader runs out of budget.
    pub read_ahead_idle: Duration,
    /// Size of the speculative GET of a data object's start that runs next to
    /// the index GET when a ledger is opened (0: none).
    pub first_range_bytes: u64,
    /// Limit on one attempt of one request.
    pub request_timeout: Duration,
    /// Attempts after the first, for transient failures.
    pub max_retries: u32,
}

impl ReaderConfig {
    /// The read-ahead budget as semaphore permits (one per byte).
    fn ahead_budget_permits(&self) -> usize {
        self.read_ahead_budget_bytes
            .min(Semaphore::MAX_PERMITS as u64) as usize
    }
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            memory_cache_bytes: 64 << 20,
            disk_cache_dir: None,
            disk_cache_bytes: 1 << 30,
            max_concurrent_requests: 16,
            range_bytes: 16 << 20,
            read_ahead_bytes: 16 << 20,
            read_ahead_budget_bytes: 256 << 20,
            read_ahead_idle: Duration::from_secs(10),
            first_range_bytes: 256 << 10,
            request_timeout: Duration::from_secs(30),
            max_retries: 5,
        }
    }
}

/// A snapshot of the reader's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReaderStats {
    /// Blocks a read found in memory / on the local disk / in neither.
    pub memory_hits: u64,
    pub disk_hits: u64,
    pub misses: u64,
    /// Successful GETs of index and data objects, and their bytes.
    pub get_requests: u64,
    pub bytes_fetched: u64,
    /// Blocks (or indexes) that failed their checks twice.
    pub corrupt_blocks: u64,
    /// Blocks fetched by read-ahead / by the speculative first range.
    pub read_ahead_blocks: u64,
    /// Blocks reads took from what read-ahead held for them.
    pub read_ahead_hits: u64,
    pub speculative_blocks: u64,
    /// First blocks that came with their ledger's index.
    pub index_head_blocks: u64,
    pub index_hits: u64,
    pub index_misses: u64,
    /// GETs running now.
    pub in_flight_requests: u64,
    /// Bytes held by the memory cache.
    pub memory_cache_bytes: u64,
    /// Entries (runs of blocks, or single blocks) written to the disk
    /// cache, and their bytes.
    pub disk_cache_writes: u64,
    pub disk_cache_write_bytes: u64,
    /// Bytes fetched ahead of readers and not read yet.
    pub read_ahead_held_bytes: u64,
}

pub struct TieredReader {
    config: ReaderConfig,
    retry: RetryPolicy,
    cache: BlockCache,
    indexes: foyer::Cache<String, Arc<LedgerIndex>>,
    limiter: Semaphore,
    /// Read-ahead takes one of these before a request permit.
    ahead_limiter: Semaphore,
    /// Bytes of blocks fetched ahead and not read yet (see `ledger`).
    ahead_budget: Arc<Semaphore>,
    /// Every open ledger, for taking back read-ahead idle ones hold.
    readers: Mutex<Vec<Weak<ColdLedger>>>,
    inflight: Mutex<HashMap<BlockKey, Inflight>>,
    counters: Counters,
}

impl TieredReader {
    pub async fn new(config: ReaderConfig) -> Result<Arc<TieredReader>> {
        if config.max_concurrent_requests == 0 || config.range_bytes == 0 {
            return Err(OffloadError::Config(
                "max_concurrent_requests and range_bytes must be above zero".into(),
            ));
        }
        if config.disk_cache_dir.is_some() && config.disk_cache_bytes < MIN_DISK_CACHE {
            return Err(OffloadError::Config(format!(
                "disk_cache_bytes must be at least {MIN_DISK_CACHE} when a disk cache directory is set"
            )));
        }
        let disk = config
            .disk_cache_dir
            .as_deref()
            .map(|d| (d, config.disk_cache_bytes));
        let cache = cache::build_cache(config.memory_cache_bytes, disk).await?;
        let indexes = foyer::CacheBuilder::new(INDEX_CACHE_BYTES)
            .with_weighter(|k: &String, v: &Arc<LedgerIndex>| k.len() + v.weight())
            .build();
        let retry = RetryPolicy {
            max_retries: config.max_retries,
            request_timeout: config.request_timeout,
            ..RetryPolicy::default()
        };
        Ok(Arc::new(TieredReader {
            limiter: Semaphore::new(config.max_concurrent_requests),
            ahead_limiter: Semaphore::new((config.max_concurrent_requests / 2).max(1)),
            ahead_budget: Arc::new(Semaphore::new(config.ahead_budget_permits())),
            config,
            retry,
            cache,
            indexes,
            inflight: Mutex::new(HashMap::new()),
            readers: Mutex::new(Vec::new()),
            counters: Counters::default(),
        }))
    }

    /// Fetches (or finds in a small cache) the ledger's index and checks it
    /// against `objects`. Reads of the returned ledger bump `io`.
    pub async fn open(
        self: &Arc<Self>,
        store: Arc<dyn ObjectStore>,
        objects: &OffloadedObjects,
        io: IoSink,
    ) -> Result<Arc<ColdLedger>> {
        let data_path = parse_key(&objects.data_key)?;
        let index_path = parse_key(&objects.index_key)?;
        let data_key: Arc<str> = objects.data_key.as_str().into();
        let cache_key = format!("{}#{:08x}", objects.index_key, objects.index_crc32c);
        let index = match self.indexes.get(&cache_key) {
            Some(e) => {
                Counters::add(&self.counters.index_hits, 1);
                e.value().clone()
            }
            None => {
                Counters::add(&self.counters.index_misses, 1);
                let per_run = cache::run_blocks(objects.data_size, objects.blocks as usize);
                let first = BlockKey::block(&data_key, per_run, 0);
                let first_run = BlockKey::run(&data_key, per_run, 0);
                // The index brings the first block itself.
                let spec_len = if objects.head_bytes > 0 {
                    0
                } else {
                    self.config.first_range_bytes.min(objects.data_size)
                };
                let speculate = spec_len > 0
                    && !self.cache.memory.contains(&first)
                    && !self
                        .cache
                        .disk
                        .as_ref()
                        .is_some_and(|d| d.cache.contains(&first_run));
                let started = std::time::Instant::now();
                let spec = async {
                    if !speculate {
                        return None;
                    }
                    let r = get_range(
                        &store,
                        &data_path,
                        0..spec_len,
                        &self.retry,
                        &io,
                        Some(&self.limiter),
                    )
                    .await;
                    Some((r, started.elapsed()))
                };
                let index = async {
                    let index = self.fetch_index(&store, &index_path, objects, &io).await;
                    (index, started.elapsed())
                };
                let ((index, index_took), spec) = tokio::join!(index, spec);
                tracing::debug!(
                    key = %index_path,
                    index = ?index_took,
                    first_range = ?spec.as_ref().map(|(_, took)| *took),
                    "fetched a cold ledger's index and first range"
                );
                let spec = spec.map(|(r, _)| r);
                let (index, head) = index?;
                if let Some(head) = head
                    && !self.cache.memory.contains(&first)
                {
                    self.cache.memory.insert(first, head);
                    Counters::add(&self.counters.index_head_blocks, 1);
                }
                if let Some(Ok(bytes)) = spec {
                    self.count_get(bytes.len());
                    self.absorb_speculative(&data_key, &index, bytes);
                }
                self.indexes.insert(cache_key, index.clone());
                index
            }
        };
        Ok(ColdLedger::new(
            self.clone(),
            store,
            data_path,
            data_key,
            index,
            io,
        ))
    }

    /// GETs the index (twice if the first copy is damaged) and checks it;
    /// returns it without its copy of the first block, and that block.
    async fn fetch_index(
        &self,
        store: &Arc<dyn ObjectStore>,
        path: &Path,
        objects: &OffloadedObjects,
        io: &IoSink,
    ) -> Result<(Arc<LedgerIndex>, Option<Bytes>)> {
        let mut tries = 0;
        loop {
            tries += 1;
            let got = get_range(
                store,
                path,
                0..objects.index_size,
                &self.retry,
                io,
                Some(&self.limiter),
            )
            .await
            .inspect(|b| self.count_get(b.len()))
            .and_then(|bytes| check_index(objects, &bytes));
            match got {
                Ok(mut index) => {
                    let head = index.head.take();
                    return Ok((Arc::new(index), head));
                }
                Err(e) if e.is_corrupt() => {
                    if tries >= 2 {
                        io.corrupt_block();
                        Counters::add(&self.counters.corrupt_blocks, 1);
                        return Err(e);
                    }
                    tracing::warn!(key = %path, error = %e, "damaged index read; fetching it again");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Caches the whole, valid blocks at the start of a speculative range.
    fn absorb_speculative(&self, data_key: &Arc<str>, index: &LedgerIndex, bytes: Bytes) {
        let per_run = cache::run_blocks(index.data_size, index.rows.len());
        for (i, row) in index.rows.iter().enumerate() {
            let end = row.range().end as usize;
            if end > bytes.len() {
                break;
            }
            // A copy: a slice would keep the whole range in memory for as
            // long as any of its blocks is cached.
            let block = Bytes::copy_from_slice(&bytes[row.offset as usize..end]);
            if check_block(data_key, row, &block).is_err() {
                // Not counted as corrupt: the regular read path refetches
                // and judges this block.
                break;
            }
            let key = BlockKey::block(data_key, per_run, i);
            if !self.cache.memory.contains(&key) {
                self.cache.memory.insert(key, block);
                Counters::add(&self.counters.speculative_blocks, 1);
            }
        }
    }

    pub(crate) fn register_reader(&self, ledger: &Arc<ColdLedger>) {
        let mut readers = self.readers.lock();
        readers.retain(|r| r.strong_count() > 0);
        readers.push(Arc::downgrade(ledger));
    }

    /// Takes back the read-ahead of ledgers other than `except` that were
    /// not read for `read_ahead_idle`; returns how many gave theirs back.
    pub(crate) fn release_idle_read_ahead(&self, except: &ColdLedger) -> usize {
        let others: Vec<Arc<ColdLedger>> = self
            .readers
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|l| !std::ptr::eq(Arc::as_ptr(l), except))
            .collect();
        others
            .iter()
            .filter(|l| l.release_if_idle(self.config.read_ahead_idle))
            .count()
    }

    fn count_get(&self, bytes: usize) {
        Counters::add(&self.counters.get_requests, 1);
        Counters::add(&self.counters.bytes_fetched, bytes as u64);
    }

    pub fn stats(&self) -> ReaderStats {
        let c = &self.counters;
        let (disk_cache_writes, disk_cache_write_bytes) = self.cache.disk_writes();
        ReaderStats {
            memory_hits: Counters::get(&c.memory_hits),
            disk_hits: Counters::get(&c.disk_hits),
            misses: Counters::get(&c.misses),
            get_requests: Counters::get(&c.get_requests),
            bytes_fetched: Counters::get(&c.bytes_fetched),
            corrupt_blocks: Counters::get(&c.corrupt_blocks),
            read_ahead_blocks: Counters::get(&c.read_ahead_blocks),
            read_ahead_hits: Counters::get(&c.read_ahead_hits),
            speculative_blocks: Counters::get(&c.speculative_blocks),
            index_head_blocks: Counters::get(&c.index_head_blocks),
            index_hits: Counters::get(&c.index_hits),
            index_misses: Counters::get(&c.index_misses),
            in_flight_requests: (self.config.max_concurrent_requests
                - self.limiter.available_permits()) as u64,
            memory_cache_bytes: self.cache.memory.usage() as u64,
            disk_cache_writes,
            disk_cache_write_bytes,
            read_ahead_held_bytes: (self.config.ahead_budget_permits()
                - self.ahead_budget.available_permits()) as u64,
        }
    }

    pub fn config(&self) -> &ReaderConfig {
        &self.config
    }

    /// Writes what the memory cache holds to the disk cache, waits for the
    /// writes and closes the cache: call before dropping the last reader
    /// (at shutdown) when the disk cache should survive a restart.
    pub async fn close(&self) -> Result<()> {
        self.cache.close().await
    }
}

fn parse_key(key: &str) -> Result<Path> {
    Path::parse(key).map_err(|e| OffloadError::Other(format!("invalid object key {key:?}: {e}")))
}

/// The index bytes must be exactly what the offload record describes
/// (checksum, then the counts it decodes to); used by reads and by the
/// upload's verification.
pub(crate) fn check_index(objects: &OffloadedObjects, bytes: &Bytes) -> Result<LedgerIndex> {
    let key = &objects.index_key;
    let crc = strata_proto::crc::crc32c(bytes);
    if crc != objects.index_crc32c {
        return Err(OffloadError::corrupt(
            key,
            format!(
                "index checksum {crc:#010x}, the record says {:#010x}",
                objects.index_crc32c
            ),
        ));
    }
    let index = decode_index(key, bytes)?;
    let found = (
        index.rows.len() as u64,
        index.header.entries,
        index.header.payload_bytes,
        index.data_size,
        index.head.as_ref().map_or(0, |h| h.len() as u64),
    );
    let want = (
        objects.blocks,
        objects.entries,
        objects.payload_bytes,
        objects.data_size,
        objects.head_bytes,
    );
    if found != want {
        return Err(OffloadError::corrupt(
            key,
            format!(
                "index holds (blocks, entries, payload, data size, head) {found:?}, the record says {want:?}"
            ),
        ));
    }
    Ok(index)
}
