//! The block cache (foyer hybrid: memory, plus a disk directory when
//! configured), its key, and the reader's counters.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
/// A block that leaves memory while its run is not on disk (a random
/// reader's block, whose run never completes, or a block of a run too big
/// for the disk) goes to disk on its own, under its block key, so random
/// reads keep the disk cache too.
pub(crate) struct BlockCache {
    pub memory: foyer::Cache<BlockKey, Bytes>,
    pub disk: Option<DiskRuns>,
}

/// Writes a block that memory evicts to disk unless its run is there.
struct SpillToDisk {
    disk: HybridCache<BlockKey, Run>,
    max_bytes: u64,
}

impl EventListener for SpillToDisk {
    type Key = BlockKey;
    type Value = Bytes;

    fn on_leave(&self, reason: Event, key: &BlockKey, value: &Bytes) {
        if reason != Event::Evict
            || value.len() as u64 > self.max_bytes
            || self.disk.contains(&key.its_run())
            || self.disk.contains(key)
        {
            return;
        }
        self.disk.insert(key.clone(), Run(vec![value.clone()]));
    }
}

/// Runs on disk (see [`BlockCache`]).
pub(crate) struct DiskRuns {
    pub cache: HybridCache<BlockKey, Run>,
    /// Largest run the disk takes: what fits in one foyer block with its
    /// header; a bigger run (of big blocks) stays in memory only.
    pub max_run_bytes: u64,
}

/// Bytes of blocks a disk run aims at (see [`run_blocks`]).
pub(crate) const RUN_BYTES: u64 = 1 << 20;
/// Most blocks in one run.
const MAX_RUN_BLOCKS: u64 = 64;
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

/// Builds the cache. The disk tier (when configured) is written when a run
/// is complete, not when memory evicts: a sequential scan writes each run
/// once, as one piece, and what it writes is on disk by the time the scan
/// ends (also on close, which waits for pending writes), so a restarted
/// broker finds what the previous one fetched; foyer recovers the disk
/// cache's index when it opens the directory again.
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
            memory: memory.build(),
            disk: None,
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
    let memory = memory
        .with_event_listener(Arc::new(SpillToDisk {
            disk: disk.cache.clone(),
            max_bytes: disk.max_run_bytes,
        }))
        .build();
    Ok(BlockCache {
        memory,
        disk: Some(disk),
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
