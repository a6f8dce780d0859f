//! The block cache (foyer hybrid: memory, plus a disk directory when
//! configured), its key, and the reader's counters.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use foyer::{
    BlockEngineConfig, Code, DeviceBuilder, Event, EventListener, FsDeviceBuilder, HybridCache,
    HybridCacheBuilder, HybridCachePolicy, LruConfig, RecoverMode,
};

use crate::error::{OffloadError, Result};

/// A cached block or disk run: the data object's key (which contains the
/// upload's uuid, so it is unique per upload and never reused for other
/// bytes), the ledger's blocks per run, and the block's (or run's) number.
/// The run size is part of every key: a run is never taken for another
/// partition's, and a block evicted from memory names its own run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BlockKey {
    pub object: Arc<str>,
    pub per_run: u32,
    /// The block's number, or the run's when `run`.
    pub block: u64,
    pub run: bool,
}

impl BlockKey {
    pub fn block(object: &Arc<str>, per_run: usize, block: usize) -> BlockKey {
        BlockKey {
            object: object.clone(),
            per_run: per_run as u32,
            block: block as u64,
            run: false,
        }
    }

    pub fn run(object: &Arc<str>, per_run: usize, run: usize) -> BlockKey {
        BlockKey {
            run: true,
            ..BlockKey::block(object, per_run, run)
        }
    }

    /// The key of the run this block belongs to.
    fn its_run(&self) -> BlockKey {
        BlockKey {
            object: self.object.clone(),
            per_run: self.per_run,
            block: self.block / u64::from(self.per_run.max(1)),
            run: true,
        }
    }

    /// Blocks in a run of this key's ledger.
    fn run_len(&self) -> usize {
        self.per_run.max(1) as usize
    }

    /// This block's place in its run.
    fn slot(&self) -> usize {
        (self.block % u64::from(self.per_run.max(1))) as usize
    }

    /// The key of block `slot` of this run (`self` a run key).
    fn member(&self, slot: usize) -> BlockKey {
        BlockKey {
            object: self.object.clone(),
            per_run: self.per_run,
            block: self.block * u64::from(self.per_run.max(1)) + slot as u64,
            run: false,
        }
    }
}

/// Longest object key accepted when decoding a key from the disk cache.
const MAX_KEY_LEN: usize = 4096;

impl Code for BlockKey {
    fn encode(&self, w: &mut impl Write) -> foyer::Result<()> {
        let k = self.object.as_bytes();
        w.write_all(&(k.len() as u32).to_le_bytes())
            .and_then(|_| w.write_all(k))
            .and_then(|_| w.write_all(&self.block.to_le_bytes()))
            .and_then(|_| w.write_all(&self.per_run.to_le_bytes()))
            .and_then(|_| w.write_all(&[u8::from(self.run)]))
            .map_err(foyer::Error::io_error)
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        let mut len = [0u8; 4];
        r.read_exact(&mut len).map_err(foyer::Error::io_error)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_KEY_LEN {
            return Err(foyer::Error::io_error(std::io::Error::other(
                "cached block key too long",
            )));
        }
        let mut k = vec![0u8; len];
        r.read_exact(&mut k).map_err(foyer::Error::io_error)?;
        let object =
            String::from_utf8(k).map_err(|e| foyer::Error::io_error(std::io::Error::other(e)))?;
        let mut block = [0u8; 8];
        r.read_exact(&mut block).map_err(foyer::Error::io_error)?;
        let mut per_run = [0u8; 4];
        r.read_exact(&mut per_run).map_err(foyer::Error::io_error)?;
        let mut run = [0u8; 1];
        r.read_exact(&mut run).map_err(foyer::Error::io_error)?;
        Ok(BlockKey {
            object: object.into(),
            per_run: u32::from_le_bytes(per_run),
            block: u64::from_le_bytes(block),
            run: run[0] != 0,
        })
    }

    fn estimated_size(&self) -> usize {
        4 + self.object.len() + 8 + 4 + 1
    }
}

/// What the disk tier keeps under one key: a run of consecutive blocks, or
/// one block on its own. Each block is an allocation of its own, in memory
/// and when read back, so the blocks of a run are cached and freed one by
/// one: a block that stayed a slice of its run would keep the whole run in
/// memory while the cache counts only the block.
///
/// On disk: [`RUN_MAGIC`], the number of blocks (u32 LE), each block's
/// length (u32 LE), then the blocks' bytes. Entries of another layout (the
/// plain byte strings of earlier versions) fail to decode and are dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Run(pub Vec<Bytes>);

/// First bytes of every disk-tier entry.
const RUN_MAGIC: [u8; 4] = *b"SRN1";

impl Run {
    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }
}

impl Code for Run {
    fn encode(&self, w: &mut impl Write) -> foyer::Result<()> {
        let mut head = Vec::with_capacity(8 + 4 * self.0.len());
        head.extend_from_slice(&RUN_MAGIC);
        head.extend_from_slice(&(self.0.len() as u32).to_le_bytes());
        for b in &self.0 {
            head.extend_from_slice(&(b.len() as u32).to_le_bytes());
        }
        w.write_all(&head).map_err(foyer::Error::io_error)?;
        for b in &self.0 {
            w.write_all(b).map_err(foyer::Error::io_error)?;
        }
        Ok(())
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        let bad = |what: &str| foyer::Error::io_error(std::io::Error::other(what.to_string()));
        let mut head = [0u8; 8];
        r.read_exact(&mut head).map_err(foyer::Error::io_error)?;
        if head[..4] != RUN_MAGIC {
            return Err(bad("not a cached run of this version"));
        }
        let n = u32::from_le_bytes(head[4..].try_into().expect("4 bytes")) as usize;
        if n == 0 || n as u64 > MAX_RUN_BLOCKS {
            return Err(bad("cached run with an impossible block count"));
        }
        let mut lens = vec![0u8; 4 * n];
        r.read_exact(&mut lens).map_err(foyer::Error::io_error)?;
        let lens: Vec<usize> = lens
            .chunks_exact(4)
            .map(|l| u32::from_le_bytes(l.try_into().expect("4 bytes")) as usize)
            .collect();
        if lens.iter().sum::<usize>() > MAX_RUN_DECODE {
            return Err(bad("cached run too long"));
        }
        let mut blocks = Vec::with_capacity(n);
        for len in lens {
            let mut block = Vec::with_capacity(len);
            r.take(len as u64)
                .read_to_end(&mut block)
                .map_err(foyer::Error::io_error)?;
            if block.len() != len {
                return Err(bad("cached run ends early"));
            }
            blocks.push(Bytes::from(block));
        }
        Ok(Run(blocks))
    }

    fn estimated_size(&self) -> usize {
        8 + 4 * self.0.len() + self.len()
    }
}

/// Longest run [`Run::decode`] accepts (no foyer block is larger).
const MAX_RUN_DECODE: usize = 64 << 20;

/// The block cache: blocks in memory, and runs of consecutive blocks on
/// the local disk.
///
/// The disk keeps runs of about [`RUN_BYTES`] rather than single blocks: a
/// warm read from disk then costs one read of ~1 MiB per run instead of
/// one per 64 KiB block. On the development VM a 64 KiB direct read tops
/// out at ~1.2 GB/s and is what bounded warm reads; 1 MiB reads reach
/// ~1.5 GB/s, with 16 times fewer thread hand-overs. Memory stays per
/// block, so a random read still fetches and holds one small block.
///
/// The disk tier is written when memory evicts, not when a block arrives
/// (see [`EvictToDisk`]): a scan of what fits in memory writes nothing to
/// disk. Writing every fetched run at once cost a cold scan on the
/// development VM a fifth of its CPU time to the hypervisor (the disk
/// writes push the VM over its host's CPU quota) and ~30 % of its speed;
/// the copy was never read while memory still held the blocks. [`close`]
/// writes what memory holds, so a restarted broker still finds what the
/// previous one fetched.
///
/// [`close`]: BlockCache::close
pub(crate) struct BlockCache {
    pub memory: Arc<foyer::Cache<BlockKey, Bytes>>,
    pub disk: Option<DiskRuns>,
    evicted: Option<Arc<EvictToDisk>>,
}

impl BlockCache {
    /// A block memory evicted that is parked until its run is whole (see
    /// [`EvictToDisk`]): in neither tier meanwhile, but here.
    pub fn evicted(&self, key: &BlockKey) -> Option<Bytes> {
        self.evicted.as_ref()?.parked(key)
    }

    /// Entries (runs or single blocks) given to the disk tier so far, and
    /// their bytes.
    pub fn disk_writes(&self) -> (u64, u64) {
        self.evicted.as_ref().map_or((0, 0), |e| {
            (Counters::get(&e.writes), Counters::get(&e.write_bytes))
        })
    }

    /// Writes every block memory holds (and every parked one) to the disk
    /// tier, as runs where they are whole, waits for the writes and closes
    /// the disk tier. Memory is empty afterwards.
    pub async fn close(&self) -> Result<()> {
        let (Some(disk), Some(evicted)) = (&self.disk, &self.evicted) else {
            return Ok(());
        };
        evicted.start_closing();
        self.memory.evict_all();
        let blocks = evicted.take_all();
        let started = std::time::Instant::now();
        let (mut bytes, mut batch) = (0u64, 0u64);
        for (key, run) in group_runs(blocks, disk) {
            let len = run.len() as u64;
            // More than the disk holds would only push out what was written.
            if bytes + len > disk.capacity {
                break;
            }
            evicted.write(key, run);
            bytes += len;
            batch += len;
            // Past the flushers' queue foyer drops what it is given.
            if batch >= disk.queue_bytes / 2 {
                disk.cache.storage().wait().await;
                batch = 0;
            }
        }
        if bytes > 0 {
            tracing::info!(
                mb = bytes >> 20,
                secs = started.elapsed().as_secs_f64(),
                "wrote the cold memory cache to the disk cache"
            );
        }
        disk.cache
            .close()
            .await
            .map_err(|e| OffloadError::Other(format!("closing the block cache: {e}")))
    }
}

/// Runs and single blocks to write for `blocks` (memory's whole content
/// and the parked blocks):
/// sorted, a whole run of blocks
/// becomes one run, anything else its blocks one by one; what the disk
/// already has is left out.
fn group_runs(mut blocks: Vec<(BlockKey, Bytes)>, disk: &DiskRuns) -> Vec<(BlockKey, Run)> {
    blocks.sort_by(|a, b| {
        (&a.0.object, a.0.per_run, a.0.block).cmp(&(&b.0.object, b.0.per_run, b.0.block))
    });
    blocks.dedup_by(|a, b| a.0 == b.0);
    let mut out = Vec::new();
    let mut rest = blocks.as_slice();
    while let Some((first, _)) = rest.first() {
        let run = first.its_run();
        let n = rest.iter().take_while(|(k, _)| k.its_run() == run).count();
        let (group, tail) = rest.split_at(n);
        rest = tail;
        if disk.cache.contains(&run) {
            continue;
        }
        let bytes: u64 = group.iter().map(|(_, b)| b.len() as u64).sum();
        if n == first.run_len() && bytes <= disk.max_run_bytes {
            out.push((run, Run(group.iter().map(|(_, b)| b.clone()).collect())));
            continue;
        }
        for (key, block) in group {
            if block.len() as u64 <= disk.max_run_bytes && !disk.cache.contains(key) {
                out.push((key.clone(), Run(vec![block.clone()])));
            }
        }
    }
    out
}

/// Writes what memory evicts to the disk tier, by runs where it can.
///
/// A block memory evicts takes the rest of its run along when memory (or
/// the blocks parked here) holds all of it: the run goes to disk as one
/// piece and its blocks leave memory together, so a scan, whose runs
/// arrive together, is evicted by runs. A block whose run is not whole is
/// parked until a run-mate's eviction completes it (foyer may evict two
/// blocks of a run in one go, and reports them one after the other), and
/// goes to disk on its own once the parked blocks pass `limit` bytes,
/// oldest run first: a random reader's blocks, a ledger's short last run.
/// Parked blocks are in neither tier, so reads look here too
/// ([`BlockCache::evicted`]). Removals and replacements are not written:
/// only evictions carry blocks memory had no room for.
struct EvictToDisk {
    disk: HybridCache<BlockKey, Run>,
    /// The memory tier the events come from (set once it is built).
    memory: OnceLock<Weak<foyer::Cache<BlockKey, Bytes>>>,
    max_bytes: u64,
    limit: u64,
    state: parking_lot::Mutex<Parked>,
    /// Entries (runs or single blocks) given to the disk tier, and bytes.
    writes: AtomicU64,
    write_bytes: AtomicU64,
}

#[derive(Default)]
struct Parked {
    /// Evicted blocks by run key, each run's by slot.
    runs: HashMap<BlockKey, Partial>,
    /// The same runs, oldest first.
    order: BTreeMap<u64, BlockKey>,
    next: u64,
    bytes: u64,
    /// While closing: everything memory gives up, for `close` to write.
    closing: Option<Vec<(BlockKey, Bytes)>>,
}

struct Partial {
    seq: u64,
    blocks: Vec<Option<Bytes>>,
    bytes: u64,
}

impl EventListener for EvictToDisk {
    type Key = BlockKey;
    type Value = Bytes;

    fn on_leave(&self, reason: Event, key: &BlockKey, value: &Bytes) {
        // Before any lock: the removals below report here too.
        if reason != Event::Evict || key.run || value.len() as u64 > self.max_bytes {
            return;
        }
        let run = key.its_run();
        let mut st = self.state.lock();
        if let Some(all) = &mut st.closing {
            all.push((key.clone(), value.clone()));
            return;
        }
        if self.disk.contains(&run) || self.disk.contains(key) {
            return;
        }
        let memory = self.memory.get().and_then(Weak::upgrade);
        if let Some((blocks, in_memory)) = memory
            .as_ref()
            .and_then(|m| self.whole_run(&st, m, key, value))
        {
            if st.runs.contains_key(&run) {
                st.remove(&run);
            }
            drop(st);
            self.write(run, Run(blocks));
            let memory = memory.expect("gathered from it");
            for k in in_memory {
                memory.remove(&k);
            }
            return;
        }
        let (per_run, slot) = (key.run_len(), key.slot());
        let seq = st.next;
        if !st.runs.contains_key(&run) {
            st.next += 1;
            st.order.insert(seq, run.clone());
        }
        let p = st.runs.entry(run).or_insert_with(|| Partial {
            seq,
            blocks: vec![None; per_run],
            bytes: 0,
        });
        if p.blocks[slot].is_none() {
            p.blocks[slot] = Some(value.clone());
            p.bytes += value.len() as u64;
            st.bytes += value.len() as u64;
        }
        let mut spill = Vec::new();
        while st.bytes > self.limit {
            let Some(oldest) = st.order.first_key_value().map(|(_, k)| k.clone()) else {
                break;
            };
            let p = st.remove(&oldest);
            spill.extend(singles(&oldest, p));
        }
        drop(st);
        for (key, block) in spill {
            self.write(key, Run(vec![block]));
        }
    }
}

impl EvictToDisk {
    /// The run of `key` (just evicted, with `value`) when the blocks parked
    /// and memory hold all the rest of it and it fits a disk entry: its
    /// blocks in order, and the keys of those in memory.
    fn whole_run(
        &self,
        st: &Parked,
        memory: &foyer::Cache<BlockKey, Bytes>,
        key: &BlockKey,
        value: &Bytes,
    ) -> Option<(Vec<Bytes>, Vec<BlockKey>)> {
        let run = key.its_run();
        let parked = st.runs.get(&run);
        let mut blocks = Vec::with_capacity(key.run_len());
        let mut in_memory = Vec::with_capacity(key.run_len());
        let mut bytes = 0u64;
        for slot in 0..key.run_len() {
            let block = if slot == key.slot() {
                value.clone()
            } else if let Some(block) = parked.and_then(|p| p.blocks[slot].clone()) {
                block
            } else {
                let k = run.member(slot);
                let block = memory.get(&k)?.value().clone();
                in_memory.push(k);
                block
            };
            bytes += block.len() as u64;
            if bytes > self.max_bytes {
                return None;
            }
            blocks.push(block);
        }
        Some((blocks, in_memory))
    }

    fn write(&self, key: BlockKey, run: Run) {
        Counters::add(&self.writes, 1);
        Counters::add(&self.write_bytes, run.len() as u64);
        self.disk.insert(key, run);
    }

    fn parked(&self, key: &BlockKey) -> Option<Bytes> {
        let st = self.state.lock();
        st.runs.get(&key.its_run())?.blocks[key.slot()].clone()
    }

    /// Starts closing: from now on memory's evictions are collected, not
    /// written.
    fn start_closing(&self) {
        self.state.lock().closing = Some(Vec::new());
    }

    /// What was collected since closing began, and every parked block.
    fn take_all(&self) -> Vec<(BlockKey, Bytes)> {
        let mut st = self.state.lock();
        let mut all = st.closing.take().unwrap_or_default();
        let runs = std::mem::take(&mut st.runs);
        st.order.clear();
        st.bytes = 0;
        for (run, p) in runs {
            all.extend(singles(&run, p));
        }
        all
    }
}

impl Parked {
    fn remove(&mut self, run: &BlockKey) -> Partial {
        let p = self.runs.remove(run).expect("a parked run");
        self.order.remove(&p.seq);
        self.bytes -= p.bytes;
        p
    }
}

/// The parked blocks of a run, each under its own key.
fn singles(run: &BlockKey, p: Partial) -> impl Iterator<Item = (BlockKey, Bytes)> + '_ {
    p.blocks
        .into_iter()
        .enumerate()
        .filter_map(move |(slot, b)| Some((run.member(slot), b?)))
}

/// Runs on disk (see [`BlockCache`]).
pub(crate) struct DiskRuns {
    pub cache: HybridCache<BlockKey, Run>,
    /// Largest run the disk takes: what fits in one foyer block with its
    /// header; a bigger run (of big blocks) stays in memory only.
    pub max_run_bytes: u64,
    /// Bytes the flushers take in before foyer drops what it is given.
    queue_bytes: u64,
    /// The disk tier's size.
    capacity: u64,
}

/// Bytes of blocks a disk run aims at (see [`run_blocks`]).
pub(crate) const RUN_BYTES: u64 = 1 << 20;
/// Most blocks in one run.
const MAX_RUN_BLOCKS: u64 = 64;
/// Bounds of the blocks parked until their runs are whole (an eighth of the
/// memory tier, but never more than the memory tier itself).
const MIN_PARKED_BYTES: u64 = 4 << 20;
const MAX_PARKED_BYTES: u64 = 64 << 20;
/// Memory of the disk tier's own foyer front: runs wait there only until
/// written (the blocks themselves live in [`BlockCache::memory`]).
const RUN_FRONT_BYTES: usize = 8 << 20;

/// Blocks per run for one ledger: about [`RUN_BYTES`] at the ledger's mean
/// block size. It depends on the index alone, so a restarted reader finds
/// the runs an earlier one wrote.
pub(crate) fn run_blocks(data_size: u64, blocks: usize) -> usize {
    let mean = (data_size / blocks.max(1) as u64).max(1);
    (RUN_BYTES / mean).clamp(1, MAX_RUN_BLOCKS) as usize
}

/// Builds the cache. The disk tier (when configured) takes what memory
/// evicts and, on [`BlockCache::close`], what it holds; foyer recovers the
/// disk cache's index when it opens the directory again.
///
/// The disk cache uses direct I/O where the file system allows it: a cold
/// scan writes everything it reads, and buffered writes cost a page-cache
/// copy of every byte (a third of the broker's CPU in a scan, measured);
/// direct writes and reads are DMA and leave the page cache to the journal
/// and entry logs. Where O_DIRECT is refused (tmpfs), it falls back to
/// buffered I/O.
pub(crate) async fn build_cache(
    memory_bytes: u64,
    disk: Option<(&std::path::Path, u64)>,
) -> Result<BlockCache> {
    let memory = foyer::CacheBuilder::new(memory_bytes.max(1) as usize)
        .with_name("strata-cold-blocks")
        .with_eviction_config(LruConfig::default())
        .with_weighter(|k: &BlockKey, v: &Bytes| k.object.len() + v.len() + 64);
    let Some((dir, bytes)) = disk else {
        return Ok(BlockCache {
            memory: Arc::new(memory.build()),
            disk: None,
            evicted: None,
        });
    };
    let direct = cfg!(target_os = "linux");
    let disk = match build_disk(dir, bytes, direct).await {
        Err(e) if direct => {
            tracing::warn!(dir = %dir.display(), error = %e, "the cold disk cache could not start with direct I/O; trying buffered I/O");
            build_disk(dir, bytes, false).await
        }
        built => built,
    }?;
    let evicted = Arc::new(EvictToDisk {
        disk: disk.cache.clone(),
        memory: OnceLock::new(),
        max_bytes: disk.max_run_bytes,
        limit: (memory_bytes / 8)
            .clamp(MIN_PARKED_BYTES, MAX_PARKED_BYTES)
            .min(memory_bytes),
        state: Default::default(),
        writes: AtomicU64::new(0),
        write_bytes: AtomicU64::new(0),
    });
    let memory = Arc::new(memory.with_event_listener(evicted.clone()).build());
    let _ = evicted.memory.set(Arc::downgrade(&memory));
    Ok(BlockCache {
        memory,
        disk: Some(disk),
        evicted: Some(evicted),
    })
}

async fn build_disk(dir: &std::path::Path, bytes: u64, direct: bool) -> Result<DiskRuns> {
    let device = FsDeviceBuilder::new(dir).with_capacity(bytes as usize);
    #[cfg(target_os = "linux")]
    let device = device.with_direct(direct);
    #[cfg(not(target_os = "linux"))]
    let _ = direct;
    let device = device
        .build()
        .map_err(|e| OffloadError::Config(format!("disk cache in {}: {e}", dir.display())))?;
    // Several foyer blocks even for a small cache; each must hold the
    // largest run we write.
    let block_size = (bytes / 16).clamp(1 << 20, 16 << 20) as usize;
    // Runs wait in these buffers for the flushers; past them foyer drops
    // what it was given. A scan writes as fast as it reads, so give the
    // flushers room (two, each with a buffer of at least two foyer blocks).
    let buffers = (4 * block_size).max(16 << 20);
    let cache = HybridCacheBuilder::new()
        .with_name("strata-cold-runs")
        .with_policy(HybridCachePolicy::WriteOnInsertion)
        .with_flush_on_close(true)
        .memory(RUN_FRONT_BYTES)
        .with_eviction_config(LruConfig::default())
        .with_weighter(|k: &BlockKey, v: &Run| k.object.len() + v.len() + 64 * v.0.len())
        .storage()
        .with_engine_config(
            BlockEngineConfig::new(device.clone())
                .with_block_size(block_size)
                .with_flushers(2)
                .with_buffer_pool_size(buffers)
                .with_submit_queue_size_threshold(2 * buffers),
        )
        .with_recover_mode(RecoverMode::Quiet)
        .build()
        .await
        .map_err(|e| OffloadError::Config(format!("building the block cache: {e}")))?;
    remove_stale_files(dir, device.partitions());
    Ok(DiskRuns {
        cache,
        // Room for foyer's entry header, the key and alignment.
        max_run_bytes: (block_size - (64 << 10)) as u64,
        queue_bytes: 2 * buffers as u64,
        capacity: bytes,
    })
}

/// What foyer names the files of a directory device, before the number.
const DEVICE_FILE_PREFIX: &str = "foyer-storage-direct-fs-";

/// Deletes the device files of `dir` past the `partitions` that foyer
/// opened: what is left of a bigger cache. The default size follows the
/// free disk space, and foyer itself never shrinks a directory, so a cache
/// reopened smaller would otherwise keep the rest of its old files (and
/// their disk space) for good.
fn remove_stale_files(dir: &std::path::Path, partitions: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let stale = name
            .to_str()
            .and_then(|n| n.strip_prefix(DEVICE_FILE_PREFIX))
            .and_then(|id| id.parse::<usize>().ok())
            .is_some_and(|id| id >= partitions);
        if stale {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed a disk cache file past the cache's size")
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "could not remove a disk cache file past the cache's size")
                }
            }
        }
    }
}

/// Counters behind [`super::ReaderStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub memory_hits: AtomicU64,
    pub disk_hits: AtomicU64,
    pub misses: AtomicU64,
    pub get_requests: AtomicU64,
    pub bytes_fetched: AtomicU64,
    pub corrupt_blocks: AtomicU64,
    pub read_ahead_blocks: AtomicU64,
    pub read_ahead_hits: AtomicU64,
    pub index_hits: AtomicU64,
    pub index_misses: AtomicU64,
    pub speculative_blocks: AtomicU64,
    pub index_head_blocks: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// A copy of an error shared by every waiter of one fetch (errors are not
/// `Clone`: the store's source error is rebuilt with the same kind and text).
pub(crate) fn clone_error(e: &OffloadError) -> OffloadError {
    match e {
        OffloadError::Corrupt { key, reason } => OffloadError::Corrupt {
            key: key.clone(),
            reason: reason.clone(),
        },
        OffloadError::NoSuchEntries {
            ledger_id,
            first,
            last,
        } => OffloadError::NoSuchEntries {
            ledger_id: *ledger_id,
            first: *first,
            last: *last,
        },
        OffloadError::Store { op, key, source } => OffloadError::Store {
            op,
            key: key.clone(),
            source: clone_store_error(source),
        },
        other => OffloadError::Other(other.to_string()),
    }
}

fn clone_store_error(e: &object_store::Error) -> object_store::Error {
    match e {
        object_store::Error::NotFound { path, source } => object_store::Error::NotFound {
            path: path.clone(),
            source: source.to_string().into(),
        },
        object_store::Error::Generic { store, source } => object_store::Error::Generic {
            store,
            source: source.to_string().into(),
        },
        other => object_store::Error::Generic {
            store: "strata",
            source: other.to_string().into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(object: &Arc<str>, per_run: usize, b: usize, len: usize) -> (BlockKey, Bytes) {
        let key = BlockKey::block(object, per_run, b);
        (key, Bytes::from(vec![b as u8; len]))
    }

    async fn load(disk: &DiskRuns, key: &BlockKey) -> Option<Run> {
        match disk.cache.storage().load(key).await.unwrap() {
            foyer::Load::Entry { value, .. } => Some(value),
            foyer::Load::Piece { piece, .. } => Some(piece.value().clone()),
            _ => None,
        }
    }

    /// A block memory evicts takes its run to disk when memory (and the
    /// parked blocks) hold the rest of it, and the run's blocks leave
    /// memory together; a block whose run is not whole is parked, and
    /// written alone once the parked blocks pass the limit; removals, and
    /// blocks whose run is on disk already, are not written.
    #[tokio::test]
    async fn an_evicted_block_takes_its_whole_run_to_disk_or_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = build_cache(8 << 20, Some((dir.path(), 64 << 20)))
            .await
            .unwrap();
        let (disk, evict) = (
            cache.disk.as_ref().unwrap(),
            cache.evicted.as_ref().unwrap(),
        );
        assert_eq!(evict.limit, MIN_PARKED_BYTES);
        let a: Arc<str> = "t/1-u/data".into();
        let run0: Vec<_> = (0..4).map(|b| block(&a, 4, b, 1000 + b)).collect();
        for (k, v) in &run0[..3] {
            cache.memory.insert(k.clone(), v.clone());
        }
        let (k3, v3) = &run0[3];
        evict.on_leave(Event::Remove, k3, v3);
        assert_eq!(cache.disk_writes(), (0, 0), "a removal is not written");
        // Block 2 evicted while 0, 1 and 3 are in memory: the run goes.
        cache.memory.insert(k3.clone(), v3.clone());
        cache.memory.remove(&run0[2].0);
        evict.on_leave(Event::Evict, &run0[2].0, &run0[2].1);
        assert_eq!(cache.disk_writes(), (1, 4006));
        assert_eq!(cache.memory.usage(), 0, "the run left memory together");
        let got = load(disk, &BlockKey::run(&a, 4, 0)).await.unwrap();
        let want: Vec<Bytes> = run0.iter().map(|(_, b)| b.clone()).collect();
        assert_eq!(got.0, want, "the run's blocks, in order");
        // Evicted again (read back from the run meanwhile): already there.
        evict.on_leave(Event::Evict, &run0[1].0, &run0[1].1);
        assert_eq!(cache.disk_writes(), (1, 4006));

        // Blocks 4 and 5 evicted in one go: 4 is parked (and at hand), 5
        // completes the run with 6 and 7 from memory.
        let run1: Vec<_> = (4..8).map(|b| block(&a, 4, b, 2000)).collect();
        for (k, v) in &run1[2..] {
            cache.memory.insert(k.clone(), v.clone());
        }
        evict.on_leave(Event::Evict, &run1[0].0, &run1[0].1);
        assert_eq!(cache.disk_writes(), (1, 4006));
        assert_eq!(cache.evicted(&run1[0].0), Some(run1[0].1.clone()));
        assert_eq!(cache.evicted(&run1[1].0), None);
        evict.on_leave(Event::Evict, &run1[1].0, &run1[1].1);
        assert_eq!(cache.disk_writes(), (2, 4006 + 8000));
        assert_eq!(cache.evicted(&run1[0].0), None);
        assert_eq!(cache.memory.usage(), 0);
        let got = load(disk, &BlockKey::run(&a, 4, 1)).await.unwrap();
        assert_eq!(got.0[0], run1[0].1);

        // Lone blocks (runs that never fill) stay parked up to the limit;
        // past it the oldest run's blocks go to disk one by one.
        let lone = [9, 10].map(|b| block(&a, 4, b, 1000));
        for (k, v) in &lone {
            evict.on_leave(Event::Evict, k, v);
        }
        let others: Vec<_> = (0..8)
            .map(|i| block(&a, 4, 100 + 4 * i, 512 << 10))
            .collect();
        for (k, v) in &others[..7] {
            evict.on_leave(Event::Evict, k, v);
        }
        assert_eq!(
            cache.disk_writes(),
            (2, 12_006),
            "3.5 MiB + 2000 bytes parked"
        );
        evict.on_leave(Event::Evict, &others[7].0, &others[7].1);
        assert_eq!(cache.disk_writes(), (4, 14_006), "the oldest run went");
        for (k, v) in &lone {
            assert_eq!(cache.evicted(k), None);
            assert_eq!(load(disk, k).await.unwrap().0, vec![v.clone()]);
        }
        assert_eq!(cache.evicted(&others[0].0), Some(others[0].1.clone()));
    }

    /// `close` writes no more than the disk tier holds.
    #[tokio::test]
    async fn close_writes_at_most_the_disk_tiers_size() {
        let dir = tempfile::tempdir().unwrap();
        let cache = build_cache(64 << 20, Some((dir.path(), 16 << 20)))
            .await
            .unwrap();
        let a: Arc<str> = "t/3-u/data".into();
        for b in 0..384 {
            let (k, v) = block(&a, 16, b, 64 << 10);
            cache.memory.insert(k, v);
        }
        assert!(cache.memory.usage() >= 24 << 20);
        cache.close().await.unwrap();
        let (writes, bytes) = cache.disk_writes();
        assert!(
            bytes <= 16 << 20 && writes > 0,
            "{writes} writes, {bytes} bytes"
        );
    }

    /// `close` writes memory's blocks and the parked ones: whole runs as
    /// runs, the rest one by one; a cache opened again on the directory
    /// finds them.
    #[tokio::test]
    async fn close_writes_what_memory_holds_as_runs() {
        let dir = tempfile::tempdir().unwrap();
        let a: Arc<str> = "t/2-u/data".into();
        let blocks: Vec<_> = (0..10).map(|b| block(&a, 4, b, 3000)).collect();
        {
            let cache = build_cache(8 << 20, Some((dir.path(), 64 << 20)))
                .await
                .unwrap();
            // Runs 0 and 1 whole in memory but for block 5, which is
            // parked; run 2 in part (blocks 8, 9).
            for (k, v) in blocks.iter().filter(|(k, _)| k.block != 5) {
                cache.memory.insert(k.clone(), v.clone());
            }
            let (k5, v5) = &blocks[5];
            let evict = cache.evicted.as_ref().unwrap();
            // As if evicted with one of its run-mates, reported second.
            cache.memory.remove(&blocks[4].0);
            evict.on_leave(Event::Evict, k5, v5);
            cache
                .memory
                .insert(blocks[4].0.clone(), blocks[4].1.clone());
            assert_eq!(cache.evicted(k5), Some(v5.clone()));
            cache.close().await.unwrap();
            assert_eq!(cache.memory.usage(), 0);
            assert_eq!(cache.disk_writes(), (4, 30_000));
        }
        let cache = build_cache(8 << 20, Some((dir.path(), 64 << 20)))
            .await
            .unwrap();
        let disk = cache.disk.as_ref().unwrap();
        for run in 0..2 {
            let got = load(disk, &BlockKey::run(&a, 4, run)).await.unwrap();
            assert_eq!(got.0.len(), 4);
            assert_eq!(got.0[0], blocks[4 * run].1);
        }
        for b in [8, 9] {
            let got = load(disk, &blocks[b].0).await.unwrap();
            assert_eq!(got.0, vec![blocks[b].1.clone()]);
        }
        assert!(load(disk, &BlockKey::run(&a, 4, 2)).await.is_none());
    }

    #[test]
    fn runs_are_about_a_mebibyte_of_blocks_and_differ_in_key_by_size() {
        assert_eq!(run_blocks(64 << 20, 1024), 16); // 64 KiB blocks
        assert_eq!(run_blocks(128 << 20, 1024), 8); // 128 KiB entries
        assert_eq!(run_blocks(8 << 20, 2048), 64); // small blocks: capped
        assert_eq!(run_blocks(4 << 30, 2), 1); // huge blocks: one each
        assert_eq!(run_blocks(0, 0), 64);
        let o: Arc<str> = "o/data".into();
        assert_ne!(BlockKey::run(&o, 16, 3), BlockKey::run(&o, 8, 3));
        assert_eq!(BlockKey::run(&o, 16, 3), BlockKey::run(&o, 16, 3));
        assert_ne!(BlockKey::run(&o, 16, 3), BlockKey::block(&o, 16, 3));
        assert_eq!(
            BlockKey::block(&o, 16, 53).its_run(),
            BlockKey::run(&o, 16, 3)
        );
        assert_eq!(BlockKey::block(&o, 16, 53).slot(), 5);
        assert_eq!(BlockKey::block(&o, 16, 53).run_len(), 16);
        assert_eq!(
            BlockKey::run(&o, 16, 3).member(5),
            BlockKey::block(&o, 16, 53)
        );
    }

    #[test]
    fn run_codec_round_trips_into_separate_blocks_and_rejects_other_layouts() {
        let run = Run(vec![
            Bytes::from(vec![1u8; 5000]),
            Bytes::from_static(b"x"),
            Bytes::from(vec![3u8; 70_000]),
        ]);
        let mut buf = Vec::new();
        run.encode(&mut buf).unwrap();
        assert_eq!(buf.len(), run.estimated_size());
        let back = Run::decode(&mut buf.as_slice()).unwrap();
        assert_eq!(back, run);
        // Each block decodes into a buffer of its own.
        for w in back.0.windows(2) {
            assert_ne!(w[0].as_ptr().wrapping_add(w[0].len()), w[1].as_ptr());
        }
        // Cut short anywhere: an error, never a shorter run.
        for cut in [0, 3, 8, 15, 20, 5020, buf.len() - 1] {
            assert!(Run::decode(&mut &buf[..cut]).is_err(), "cut at {cut}");
        }
        // What earlier versions wrote (a length, then the bytes) is refused.
        let mut old = Vec::new();
        Bytes::from(vec![7u8; 4096]).encode(&mut old).unwrap();
        assert!(Run::decode(&mut old.as_slice()).is_err());
        // Impossible block counts.
        for n in [0u32, 65, u32::MAX] {
            let mut junk = RUN_MAGIC.to_vec();
            junk.extend_from_slice(&n.to_le_bytes());
            junk.extend_from_slice(&[0u8; 64]);
            assert!(Run::decode(&mut junk.as_slice()).is_err(), "{n} blocks");
        }
    }

    #[test]
    fn block_key_codec_round_trips_and_rejects_junk() {
        let k = BlockKey::run(&"a/b/7-uuid/data".into(), 16, 42);
        let mut buf = Vec::new();
        k.encode(&mut buf).unwrap();
        assert_eq!(buf.len(), k.estimated_size());
        assert_eq!(BlockKey::decode(&mut buf.as_slice()).unwrap(), k);
        assert!(BlockKey::decode(&mut &buf[..5]).is_err());
        assert!(BlockKey::decode(&mut &[0xff, 0xff, 0xff, 0xff][..]).is_err());
    }
}
