//! The block cache (foyer hybrid: memory, plus a disk directory when
//! configured), its key, and the reader's counters.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use foyer::{
    BlockEngineConfig, Code, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, LruConfig, RecoverMode,
};

use crate::error::{OffloadError, Result};

/// A cached block: the data object's key (which contains the upload's uuid,
/// so it is unique per upload and never reused for other bytes) and the
/// block's number in the index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BlockKey {
    pub object: Arc<str>,
    pub block: u64,
}

/// Longest object key accepted when decoding a key from the disk cache.
const MAX_KEY_LEN: usize = 4096;

impl Code for BlockKey {
    fn encode(&self, w: &mut impl Write) -> foyer::Result<()> {
        let k = self.object.as_bytes();
        w.write_all(&(k.len() as u32).to_le_bytes())
            .and_then(|_| w.write_all(k))
            .and_then(|_| w.write_all(&self.block.to_le_bytes()))
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
        Ok(BlockKey {
            object: object.into(),
            block: u64::from_le_bytes(block),
        })
    }

    fn estimated_size(&self) -> usize {
        4 + self.object.len() + 8
    }
}

pub(crate) type BlockCache = HybridCache<BlockKey, Bytes>;

/// Builds the cache. Blocks go to disk when memory evicts them (not on
/// insertion: a sequential scan then costs no disk writes in its read path),
/// and what memory holds is flushed on close, so a restarted broker finds
/// what the previous one fetched; foyer recovers the disk cache's index when
/// it opens the directory again.
///
/// The disk cache uses direct I/O where the file system allows it: a cold
/// scan evicts everything it reads, and buffered writes cost a page-cache
/// copy of every byte (a third of the broker's CPU in a scan, measured);
/// direct writes and reads are DMA and leave the page cache to the journal
/// and entry logs. Where O_DIRECT is refused (tmpfs), it falls back to
/// buffered I/O.
pub(crate) async fn build_cache(
    memory_bytes: u64,
    disk: Option<(&std::path::Path, u64)>,
) -> Result<BlockCache> {
    let direct = disk.is_some() && cfg!(target_os = "linux");
    match build(memory_bytes, disk, direct).await {
        Err(e) if direct => {
            let dir = disk.map(|d| d.0.display().to_string()).unwrap_or_default();
            tracing::warn!(%dir, error = %e, "the cold disk cache could not start with direct I/O; trying buffered I/O");
            build(memory_bytes, disk, false).await
        }
        built => built,
    }
}

async fn build(
    memory_bytes: u64,
    disk: Option<(&std::path::Path, u64)>,
    direct: bool,
) -> Result<BlockCache> {
    let builder = HybridCacheBuilder::new()
        .with_name("strata-cold-blocks")
        .with_policy(HybridCachePolicy::WriteOnEviction)
        .with_flush_on_close(true)
        .memory(memory_bytes.max(1) as usize)
        .with_eviction_config(LruConfig::default())
        .with_weighter(|k: &BlockKey, v: &Bytes| k.object.len() + v.len() + 64)
        .storage();
    let builder = match disk {
        None => builder,
        Some((dir, bytes)) => {
            let device = FsDeviceBuilder::new(dir).with_capacity(bytes as usize);
            #[cfg(target_os = "linux")]
            let device = device.with_direct(direct);
            #[cfg(not(target_os = "linux"))]
            let _ = direct;
            let device = device.build().map_err(|e| {
                OffloadError::Config(format!("disk cache in {}: {e}", dir.display()))
            })?;
            // Several foyer blocks even for a small cache; each must hold
            // the largest block we cache (bigger ones stay memory-only).
            let block_size = (bytes / 16).clamp(1 << 20, 16 << 20) as usize;
            // Evicted blocks wait in these buffers for the flushers; past
            // them foyer drops what memory evicts. A scan evicts as fast as
            // it reads, so give the flushers room (two, each with a buffer
            // of at least two foyer blocks).
            let buffers = (4 * block_size).max(16 << 20);
            builder
                .with_engine_config(
                    BlockEngineConfig::new(device)
                        .with_block_size(block_size)
                        .with_flushers(2)
                        .with_buffer_pool_size(buffers)
                        .with_submit_queue_size_threshold(2 * buffers),
                )
                .with_recover_mode(RecoverMode::Quiet)
        }
    };
    builder
        .build()
        .await
        .map_err(|e| OffloadError::Config(format!("building the block cache: {e}")))
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
    fn block_key_codec_round_trips_and_rejects_junk() {
        let k = BlockKey {
            object: "a/b/7-uuid/data".into(),
            block: 42,
        };
        let mut buf = Vec::new();
        k.encode(&mut buf).unwrap();
        assert_eq!(buf.len(), k.estimated_size());
        assert_eq!(BlockKey::decode(&mut buf.as_slice()).unwrap(), k);
        assert!(BlockKey::decode(&mut &buf[..5]).is_err());
        assert!(BlockKey::decode(&mut &[0xff, 0xff, 0xff, 0xff][..]).is_err());
    }
}
