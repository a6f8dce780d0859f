//! The disk's own figures: sequential 1 MiB writes, each followed by
//! fdatasync, into newly preallocated space (what the bookie journal does).
//! Every benchmark that touches the disk reports its result as a ratio to
//! these, measured in the same run on the same filesystem, since absolute
//! numbers on shared machines mean little.
//!
//! The same loop over blocks written before ([`RawMode::Overwrite`]) is
//! reported next to it, for context only: on ext4 it is much faster (no
//! extent conversion to commit per fdatasync), but an append-only store
//! never writes that way, so it is not what the ratios divide by.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use strata_bookie::fileio;

use super::report::{self, Latency};

/// Where and how long to measure the raw disk baseline.
#[derive(Args, Clone, Debug)]
pub struct RawArgs {
    /// Directory on the disk under test (the broker's data disk).
    #[arg(long, default_value = ".")]
    pub raw_dir: PathBuf,
    /// How long the raw write + fdatasync loop runs.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub raw_duration: Duration,
    /// Skip the raw baseline (no ratios in the report).
    #[arg(long)]
    pub no_raw: bool,
}

#[derive(Serialize, Debug, Clone)]
pub struct RawDisk {
    pub dir: String,
    pub duration_secs: f64,
    /// Appending to newly allocated space ([`RawMode::Append`]): the
    /// baseline of every ratio.
    pub fdatasync_mb_per_sec: f64,
    /// One 1 MiB write + fdatasync.
    pub fdatasync_latency_ms: Latency,
    /// Rewriting blocks written before ([`RawMode::Overwrite`]), for context.
    pub overwrite_fdatasync_mb_per_sec: f64,
    pub overwrite_fdatasync_latency_ms: Latency,
}

/// Both raw loops: append for `duration`, then overwrite for half as long.
pub fn measure_both(dir: &Path, duration: Duration) -> anyhow::Result<RawDisk> {
    let (mbps, h) = raw_fdatasync(dir, duration, RawMode::Append)?;
    let (over_mbps, over_h) = raw_fdatasync(
        dir,
        (duration / 2).max(Duration::from_secs(1)),
        RawMode::Overwrite,
    )?;
    Ok(RawDisk {
        dir: dir.display().to_string(),
        duration_secs: duration.as_secs_f64(),
        fdatasync_mb_per_sec: mbps,
        fdatasync_latency_ms: Latency::from(&h),
        overwrite_fdatasync_mb_per_sec: over_mbps,
        overwrite_fdatasync_latency_ms: Latency::from(&over_h),
    })
}

impl RawArgs {
    /// Runs the baseline unless `--no-raw`.
    pub async fn measure(&self) -> anyhow::Result<Option<RawDisk>> {
        if self.no_raw {
            return Ok(None);
        }
        let dir = self.raw_dir.clone();
        let duration = self.raw_duration;
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let raw = tokio::task::spawn_blocking(move || measure_both(&dir, duration)).await??;
        Ok(Some(raw))
    }
}

/// What the raw baseline writes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RawMode {
    /// Newly allocated space only, as a journal or log appends: when the
    /// 1 GiB file is full it is emptied and allocated again (as a journal
    /// rolls to a new preallocated file). On ext4 every fdatasync then also
    /// commits the conversion of the written extents from "unwritten".
    Append,
    /// Blocks written before (256 MiB are laid out first, untimed, then
    /// written round and round): no metadata changes, only data to flush.
    /// Faster (about 1.8x on the development VM's virtio disk), but no
    /// append-only store writes this way.
    Overwrite,
}

/// Sequential 1 MiB writes, each followed by fdatasync, into a preallocated
/// 1 GiB file in `dir` (see [`RawMode`]). Returns MB/s and the latency
/// histogram (µs) of each write + fdatasync. Re-allocating the file is not
/// counted (a journal prepares its next file in the background). The file
/// is removed afterwards.
pub fn raw_fdatasync(
    dir: &Path,
    duration: Duration,
    mode: RawMode,
) -> anyhow::Result<(f64, Histogram<u64>)> {
    const BLOCK: usize = 1 << 20;
    const FILE: u64 = 1 << 30;
    let path = dir.join("perf-raw-fdatasync.tmp");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    let result = (|| {
        let block: Vec<u8> = (0..BLOCK).map(|i| (i % 253) as u8).collect();
        let allocate = || -> std::io::Result<()> {
            file.set_len(0)?;
            fileio::fallocate(&file, 0, FILE)?;
            file.sync_all()
        };
        allocate()?;
        // Overwrite goes round a smaller region: it only needs the blocks
        // written before, and laying them out is untimed work.
        let region = match mode {
            RawMode::Append => FILE,
            RawMode::Overwrite => FILE / 4,
        };
        if mode == RawMode::Overwrite {
            let mut offset = 0;
            while offset < region {
                file.write_all_at(&block, offset)?;
                offset += BLOCK as u64;
            }
            file.sync_all()?;
        }
        let mut h = report::histogram();
        let mut offset = 0u64;
        let started = Instant::now();
        let mut bytes = 0u64;
        let mut paused = Duration::ZERO;
        while started.elapsed() < duration + paused {
            if offset + BLOCK as u64 > region {
                if mode == RawMode::Append {
                    let t = Instant::now();
                    allocate()?;
                    paused += t.elapsed();
                }
                offset = 0;
            }
            let t = Instant::now();
            file.write_all_at(&block, offset)?;
            file.sync_data()?;
            report::record(&mut h, t.elapsed().as_micros() as u64);
            offset += BLOCK as u64;
            bytes += BLOCK as u64;
        }
        let secs = (started.elapsed() - paused).as_secs_f64();
        Ok::<_, anyhow::Error>((bytes as f64 / secs / 1e6, h))
    })();
    drop(file);
    let _ = std::fs::remove_file(&path);
    result
}
