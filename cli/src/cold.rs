//! The cold tier's settings and start-up, shared by `strata standalone`
//! (which embeds an offloader) and `strata offloader` (the service alone).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use strata_common::metadata::MetadataStore;
use strata_ledger::LedgerClient;
use strata_offloader::reader::{ReaderConfig, TieredReader};
use strata_offloader::registry::{StoreRegistry, Usage};
use strata_offloader::service::{Offloader, OffloaderConfig};
use strata_offloader::store::{ColdStore, StoreOptions};
use strata_offloader::tier::Tier;
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug, Clone)]
pub struct ColdArgs {
    /// The cold tier's object store: `file:///dir`, or
    /// `s3://bucket/prefix?endpoint=http://host:9000&region=R` (MinIO,
    /// Garage: path-style; AWS: leave out the endpoint). S3 credentials come
    /// from the AWS default chain (AWS_ACCESS_KEY_ID…, profile, web
    /// identity, instance metadata). Standalone default: DATA_DIR/cold.
    #[arg(long, env = "STRATA_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// How often the offloader looks at every topic (age thresholds,
    /// deletion lags); rollovers and requests are handled at once.
    #[arg(long, env = "STRATA_OFFLOAD_SCAN_INTERVAL", default_value = "60s",
          value_parser = humantime::parse_duration)]
    pub offload_scan_interval: Duration,
    /// How often objects no record refers to are looked for.
    #[arg(long, env = "STRATA_OFFLOAD_RECONCILE_INTERVAL", default_value = "1h",
          value_parser = humantime::parse_duration)]
    pub offload_reconcile_interval: Duration,
    /// Unreferenced objects younger than this are left alone.
    #[arg(long, env = "STRATA_OFFLOAD_ORPHAN_GRACE", default_value = "1h",
          value_parser = humantime::parse_duration)]
    pub offload_orphan_grace: Duration,
    /// Limit on one object-store request (HTTP stores), body included; a
    /// request that times out is retried.
    #[arg(long, env = "STRATA_OBJECT_STORE_TIMEOUT", default_value = "30s",
          value_parser = humantime::parse_duration)]
    pub object_store_timeout: Duration,
    /// Sign S3 request bodies with their SHA-256 instead of sending
    /// UNSIGNED-PAYLOAD (for stores that require it). Off by default: every
    /// offloaded object is read back and its blocks' CRC32C checked anyway,
    /// and the hash costs a pass over each byte here and in the store.
    #[arg(long, env = "STRATA_OBJECT_STORE_SIGN_PAYLOAD")]
    pub object_store_sign_payload: bool,
    /// Memory of the cold block cache, in MiB (default: 1/16 of the memory
    /// this process may use, RAM or its cgroup's limit, from 64 MiB to 4 GiB).
    #[arg(long, env = "STRATA_COLD_CACHE_MEMORY_MB")]
    pub cold_cache_memory_mb: Option<u64>,
    /// Local disk of the cold block cache, in MiB (0: memory only; default:
    /// twice the memory cache and at least 1 GiB, but at most a tenth of
    /// the filesystem and a quarter of its free space, none below 64 MiB).
    #[arg(long, env = "STRATA_COLD_CACHE_DISK_MB")]
    pub cold_cache_disk_mb: Option<u64>,
    /// Object-store requests the tiered reader has in flight at most (read-ahead may use half).
    #[arg(long, env = "STRATA_COLD_MAX_REQUESTS", default_value_t = 32)]
    pub cold_max_requests: usize,
    /// Bytes a sequential cold read fetches ahead, in MiB.
    #[arg(long, env = "STRATA_COLD_READ_AHEAD_MB", default_value_t = 64)]
    pub cold_read_ahead_mb: u64,
    /// Bytes fetched ahead and not read yet over all cold readers of the
    /// process, in MiB (memory held by read-ahead).
    #[arg(long, env = "STRATA_COLD_READ_AHEAD_TOTAL_MB", default_value_t = 256)]
    pub cold_read_ahead_total_mb: u64,
    /// Most bytes of one ranged GET of the tiered reader, in MiB (a read
    /// fetches only the blocks it needs; read-ahead fetches this much at a
    /// time). Blocks reach readers as they stream in, so a long GET delays
    /// no one, and it costs the store less: a GET that starts or ends inside
    /// one of the store's own chunks (1 MiB in Garage and MinIO, each read
    /// and hashed whole) reads that chunk twice.
    #[arg(long, env = "STRATA_COLD_RANGE_MB", default_value_t = 16)]
    pub cold_range_mb: u64,
}

/// Smallest and largest default memory of the cold block cache.
const DEFAULT_MEMORY_CACHE: std::ops::RangeInclusive<u64> = (64 << 20)..=(4 << 30);

impl ColdArgs {
    /// The cold block cache's memory: as configured, or 1/16 of what this
    /// process may use. A warm re-read of what fits there is served from
    /// memory, about 1.5 to 2 times as fast as from the disk tier on the
    /// development VM (see README, cold-read figures).
    pub fn cold_cache_memory_bytes(&self) -> u64 {
        match self.cold_cache_memory_mb {
            Some(mb) => mb << 20,
            None => default_memory_cache(strata_common::sysmem::memory_limit_bytes()),
        }
    }
}

fn default_memory_cache(limit: Option<u64>) -> u64 {
    let (low, high) = DEFAULT_MEMORY_CACHE.into_inner();
    limit.map_or(low, |l| (l / 16).clamp(low, high))
}

impl ColdArgs {
    /// The cold block cache's disk tier in `dir`, in bytes (0: none): as
    /// configured, or sized from the memory tier and the filesystem (see
    /// [`default_disk_cache`]). What a cache already in `dir` takes counts
    /// as free, so a restart does not shrink it.
    pub fn cold_cache_disk_bytes(&self, dir: &Path) -> u64 {
        if let Some(mb) = self.cold_cache_disk_mb {
            return mb << 20;
        }
        let fs = filesystem_of(dir).map(|u| (u.total_bytes, u.free_bytes + bytes_in(dir)));
        default_disk_cache(self.cold_cache_memory_bytes(), fs)
    }
}

/// Smallest default disk tier, and the size it aims at without a bigger
/// memory tier.
const MIN_DISK_CACHE: u64 = 64 << 20;
const BASE_DISK_CACHE: u64 = 1 << 30;

/// The default disk tier, given the memory tier and the filesystem's total
/// and free bytes: a disk tier is worth having when it holds more than
/// memory (twice, at least 1 GiB), but it shares its disk with the bookie,
/// whose disk-usage watermark turns it read-only, so it takes at most a
/// tenth of the filesystem and a quarter of what is free (the foyer files
/// fill as the cache does). Below 64 MiB there is no disk tier; unknown
/// filesystem figures leave 1 GiB.
fn default_disk_cache(memory: u64, fs: Option<(u64, u64)>) -> u64 {
    let want = memory.saturating_mul(2).max(BASE_DISK_CACHE);
    let Some((total, free)) = fs else {
        return BASE_DISK_CACHE;
    };
    let bytes = want.min(total / 10).min(free / 4) >> 20 << 20;
    if bytes < MIN_DISK_CACHE { 0 } else { bytes }
}

/// The filesystem that holds `dir`, or will once it is created.
fn filesystem_of(dir: &Path) -> Option<strata_bookie::disk::DiskUsage> {
    dir.ancestors()
        .find(|p| p.exists())
        .and_then(|p| strata_bookie::disk::usage(p).ok())
}

/// Disk space the files under `dir` take (allocated blocks, not lengths:
/// the cache's files are sparse until filled).
fn bytes_in(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => bytes_in(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Opens the default store (`url`), failing with a message naming what is wrong.
pub async fn open_stores(url: &str, args: &ColdArgs) -> anyhow::Result<Arc<StoreRegistry>> {
    let options = StoreOptions {
        request_timeout: args.object_store_timeout,
        sign_payload: args.object_store_sign_payload,
    };
    let store = ColdStore::open_with(url, options)
        .await
        .with_context(|| format!("opening the object store {url}"))?;
    Ok(StoreRegistry::new(store))
}

/// The broker's side: the tiered reader with its block cache, whose disk
/// tier of `disk_bytes` (0: none) lives in `cache_dir`.
pub async fn start_tier(
    args: &ColdArgs,
    meta: Arc<dyn MetadataStore>,
    stores: Arc<StoreRegistry>,
    usage: Arc<Usage>,
    cache_dir: &Path,
    disk_bytes: u64,
) -> anyhow::Result<Arc<Tier>> {
    let reader = TieredReader::new(ReaderConfig {
        memory_cache_bytes: args.cold_cache_memory_bytes(),
        disk_cache_dir: (disk_bytes > 0).then(|| cache_dir.to_path_buf()),
        disk_cache_bytes: disk_bytes,
        max_concurrent_requests: args.cold_max_requests.max(1),
        read_ahead_bytes: args.cold_read_ahead_mb << 20,
        read_ahead_budget_bytes: args.cold_read_ahead_total_mb << 20,
        range_bytes: (args.cold_range_mb << 20).max(64 << 10),
        request_timeout: args.object_store_timeout,
        ..ReaderConfig::default()
    })
    .await
    .context("starting the cold block cache")?;
    Ok(Tier::new(meta, stores, reader, usage))
}

/// The offload service (probes the default store first).
pub async fn start_offloader(
    args: &ColdArgs,
    id: Option<String>,
    meta: Arc<dyn MetadataStore>,
    client: LedgerClient,
    stores: Arc<StoreRegistry>,
    usage: Arc<Usage>,
    cancel: CancellationToken,
) -> anyhow::Result<Offloader> {
    let mut cfg = OffloaderConfig {
        scan_interval: args.offload_scan_interval,
        reconcile_interval: args.offload_reconcile_interval,
        orphan_grace: args.offload_orphan_grace,
        ..OffloaderConfig::default()
    };
    cfg.upload.retry.request_timeout = args.object_store_timeout;
    if let Some(id) = id {
        cfg.id = id;
    }
    Offloader::start(cfg, meta, client, stores, usage, cancel)
        .await
        .context("starting the offloader")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cold: ColdArgs,
    }

    fn parse(args: &[&str]) -> ColdArgs {
        Cli::try_parse_from(std::iter::once("standalone").chain(args.iter().copied()))
            .expect("parse")
            .cold
    }

    #[test]
    fn the_store_timeout_and_cache_memory_come_from_flags() {
        let args = parse(&[
            "--object-store-timeout",
            "2m",
            "--cold-cache-memory-mb",
            "100",
        ]);
        assert_eq!(args.object_store_timeout, Duration::from_secs(120));
        assert_eq!(args.cold_cache_memory_bytes(), 100 << 20);
        let args = parse(&[]);
        assert_eq!(args.object_store_timeout, Duration::from_secs(30));
        assert_eq!(
            args.cold_cache_memory_bytes(),
            default_memory_cache(strata_common::sysmem::memory_limit_bytes())
        );
    }

    #[test]
    fn the_default_disk_cache_outgrows_memory_within_the_filesystems_room() {
        const G: u64 = 1 << 30;
        // Twice the memory tier, at least 1 GiB, on a roomy disk.
        assert_eq!(
            default_disk_cache(1536 << 20, Some((250 * G, 100 * G))),
            3 * G
        );
        assert_eq!(default_disk_cache(64 << 20, Some((250 * G, 100 * G))), G);
        // A tenth of the filesystem, a quarter of its free space, whole MiB.
        assert_eq!(default_disk_cache(4 * G, Some((20 * G, 19 * G))), 2 * G);
        assert_eq!(default_disk_cache(4 * G, Some((250 * G, 2 * G + 3))), G / 2);
        // Nearly full: no disk tier rather than a useless one.
        assert_eq!(default_disk_cache(G, Some((250 * G, 200 << 20))), 0);
        // Filesystem unknown: the old fixed 1 GiB.
        assert_eq!(default_disk_cache(4 * G, None), G);
        // Set by flag, 0 included: taken as it is.
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            parse(&["--cold-cache-disk-mb", "0"]).cold_cache_disk_bytes(dir.path()),
            0
        );
        assert_eq!(
            parse(&["--cold-cache-disk-mb", "300"]).cold_cache_disk_bytes(dir.path()),
            300 << 20
        );
    }

    /// The default looks at the filesystem the directory will be on, and
    /// counts the space a cache already there takes (sparse files by their
    /// allocated blocks, directories included) as its own.
    #[test]
    fn the_default_disk_cache_finds_its_filesystem_and_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("data/cold-cache");
        let fs = filesystem_of(&cache).expect("the temp dir's filesystem");
        assert!(fs.total_bytes > 0);
        assert_eq!(bytes_in(&cache), 0);
        std::fs::create_dir_all(cache.join("sub")).unwrap();
        std::fs::write(cache.join("block"), vec![1u8; 1 << 20]).unwrap();
        std::fs::write(cache.join("sub/block"), vec![1u8; 1 << 20]).unwrap();
        let sparse = std::fs::File::create(cache.join("sparse")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        let held = bytes_in(&cache);
        assert!((2 << 20..4 << 20).contains(&held), "{held}");
    }

    #[test]
    fn the_default_memory_cache_follows_the_memory_within_bounds() {
        assert_eq!(default_memory_cache(Some(24 << 30)), 1536 << 20);
        assert_eq!(default_memory_cache(Some(512 << 20)), 64 << 20);
        assert_eq!(default_memory_cache(Some(512 << 30)), 4 << 30);
        assert_eq!(default_memory_cache(None), 64 << 20);
    }
}
