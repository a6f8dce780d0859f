//! The disk's own figures: sequential 1 MiB writes, each followed by
//! fdatasync, into a preallocated file (the technique the bookie journal
//! uses). Every benchmark that touches the disk reports its result as a
//! ratio to these, measured in the same run on the same filesystem, since
//! absolute numbers on shared machines mean little.

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
    pub fdatasync_mb_per_sec: f64,
    /// One 1 MiB write + fdatasync.
    pub fdatasync_latency_ms: Latency,
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
        let (mbps, h) =
            tokio::task::spawn_blocking(move || raw_fdatasync(&dir, duration)).await??;
        Ok(Some(RawDisk {
            dir: self.raw_dir.display().to_string(),
            duration_secs: duration.as_secs_f64(),
            fdatasync_mb_per_sec: mbps,
            fdatasync_latency_ms: Latency::from(&h),
        }))
    }
}

/// Sequential 1 MiB writes, each followed by fdatasync, into a preallocated
/// file in `dir`. Returns MB/s and the latency histogram (µs) of each
/// write + fdatasync. The file is removed afterwards.
pub fn raw_fdatasync(dir: &Path, duration: Duration) -> anyhow::Result<(f64, Histogram<u64>)> {
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
        let prealloc = 256 << 20;
        file.set_len(0)?;
        fileio::fallocate(&file, 0, prealloc)?;
        file.sync_all()?;
        let block: Vec<u8> = (0..BLOCK).map(|i| (i % 253) as u8).collect();
        let mut h = report::histogram();
        let mut offset = 0u64;
        let mut allocated = prealloc;
        let started = Instant::now();
        let mut bytes = 0u64;
        while started.elapsed() < duration {
            if offset + BLOCK as u64 > allocated {
                if allocated >= FILE {
                    offset = 0;
                } else {
                    fileio::fallocate(&file, allocated, prealloc)?;
                    file.sync_all()?;
                    allocated += prealloc;
                }
            }
            let t = Instant::now();
            file.write_all_at(&block, offset)?;
            file.sync_data()?;
            report::record(&mut h, t.elapsed().as_micros() as u64);
            offset += BLOCK as u64;
            bytes += BLOCK as u64;
        }
        let secs = started.elapsed().as_secs_f64();
        Ok::<_, anyhow::Error>((bytes as f64 / secs / 1e6, h))
    })();
    drop(file);
    let _ = std::fs::remove_file(&path);
    result
}
