//! The disk's own figures: sequential 1 MiB writes, each followed by
//! fdatasync, into newly preallocated space, with `O_DIRECT` (what the bookie
//! journal does). Every benchmark that touches the disk reports its result
//! as a ratio to these, measured in the same run on the same filesystem,
//! since absolute numbers on shared machines mean little.
//!
//! Two more loops are reported next to it, for context only:
//! - the same writes over blocks written before ([`Space::Written`]). On
//!   ext4 that needs no metadata commit per fdatasync, and on the
//!   development VM it ran ~1.8× faster than into new space: the ceiling a
//!   journal that reuses its files could reach;
//! - the loop through the page cache (plain writes, [`Io::Buffered`]). It
//!   measures the kernel's page-cache path as much as the disk, and that
//!   varies with the machine's memory state (on the development VM from
//!   ~1,450 MB/s down to ~500 with the same disk, while `O_DIRECT` stayed
//!   at ~1,750).

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
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
    /// The baseline of every ratio: `O_DIRECT` writes ([`Io::Direct`]), or
    /// plain ones where the filesystem refuses `O_DIRECT` (`direct_io`).
    pub fdatasync_mb_per_sec: f64,
    /// One 1 MiB write + fdatasync.
    pub fdatasync_latency_ms: Latency,
    /// False when the filesystem refused `O_DIRECT` (tmpfs): the baseline
    /// then went through the page cache.
    pub direct_io: bool,
    /// The same loop through the page cache ([`Io::Buffered`]), for context.
    pub buffered_fdatasync_mb_per_sec: f64,
    pub buffered_fdatasync_latency_ms: Latency,
    /// The baseline's loop over blocks written before ([`Space::Written`]),
    /// for context.
    pub overwrite_fdatasync_mb_per_sec: f64,
    pub overwrite_fdatasync_latency_ms: Latency,
}

/// Both raw loops: `O_DIRECT` for `duration`, then buffered for half as long.
pub fn measure_both(dir: &Path, duration: Duration) -> anyhow::Result<RawDisk> {
    let (mbps, h, direct_io) = match raw_fdatasync(dir, duration, Io::Direct, Space::New) {
        Ok((mbps, h)) => (mbps, h, true),
        Err(e) if is_einval(&e) => {
            let (mbps, h) = raw_fdatasync(dir, duration, Io::Buffered, Space::New)?;
            (mbps, h, false)
        }
        Err(e) => return Err(e),
    };
    let context = (duration / 2).max(Duration::from_secs(1));
    let (buf_mbps, buf_h) = raw_fdatasync(dir, context, Io::Buffered, Space::New)?;
    let io = if direct_io { Io::Direct } else { Io::Buffered };
    let (over_mbps, over_h) = raw_fdatasync(dir, context, io, Space::Written)?;
    Ok(RawDisk {
        dir: dir.display().to_string(),
        duration_secs: duration.as_secs_f64(),
        fdatasync_mb_per_sec: mbps,
        fdatasync_latency_ms: Latency::from(&h),
        direct_io,
        buffered_fdatasync_mb_per_sec: buf_mbps,
        buffered_fdatasync_latency_ms: Latency::from(&buf_h),
        overwrite_fdatasync_mb_per_sec: over_mbps,
        overwrite_fdatasync_latency_ms: Latency::from(&over_h),
    })
}

/// `O_DIRECT` refused (at open or at the first write).
fn is_einval(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::EINVAL))
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

/// How the raw loop writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Io {
    /// `O_DIRECT` from an aligned buffer, as the journal writes batches: the
    /// data goes to the device, and each fdatasync also commits the
    /// conversion of the written extents from "unwritten" (ext4).
    Direct,
    /// Plain writes into the page cache, flushed by the fdatasync.
    Buffered,
}

/// Where the raw loop writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// Newly preallocated space, as the journal writes today.
    New,
    /// Blocks written (and synced) before the timed loop, as a journal
    /// reusing its old files would.
    Written,
}

/// Sequential 1 MiB writes, each followed by fdatasync, into a 1 GiB file in
/// `dir` (256 MiB for [`Space::Written`], written once before the clock
/// starts). When the file is full it is emptied and allocated again (as a
/// journal rolls to a new preallocated file), untimed; with
/// [`Space::Written`] the writes start over at its beginning. Returns MB/s
/// and the latency histogram (µs) of each write + fdatasync. The file is
/// removed afterwards.
pub fn raw_fdatasync(
    dir: &Path,
    duration: Duration,
    io: Io,
    space: Space,
) -> anyhow::Result<(f64, Histogram<u64>)> {
    const BLOCK: usize = 1 << 20;
    let file_len: u64 = match space {
        Space::New => 1 << 30,
        Space::Written => 256 << 20,
    };
    let path = dir.join("perf-raw-fdatasync.tmp");
    let mut options = OpenOptions::new();
    options.create(true).truncate(true).read(true).write(true);
    if io == Io::Direct {
        options.custom_flags(libc::O_DIRECT);
    }
    let file = options
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    let result = (|| {
        // Block-aligned, as direct I/O needs (the journal's buffer type).
        let mut block = fileio::AlignedBuf::with_capacity(BLOCK);
        let pattern: Vec<u8> = (0..BLOCK).map(|i| (i % 253) as u8).collect();
        block.extend_from_slice(&pattern);
        let allocate = || -> std::io::Result<()> {
            file.set_len(0)?;
            fileio::fallocate(&file, 0, file_len)?;
            if space == Space::Written {
                let mut offset = 0;
                while offset < file_len {
                    file.write_all_at(block.as_slice(), offset)?;
                    offset += BLOCK as u64;
                }
            }
            file.sync_all()
        };
        allocate()?;
        let mut h = report::histogram();
        let mut offset = 0u64;
        let started = Instant::now();
        let mut bytes = 0u64;
        let mut paused = Duration::ZERO;
        while started.elapsed() < duration + paused {
            if offset + BLOCK as u64 > file_len {
                if space == Space::New {
                    let t = Instant::now();
                    allocate()?;
                    paused += t.elapsed();
                }
                offset = 0;
            }
            let t = Instant::now();
            file.write_all_at(block.as_slice(), offset)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_loops_measure_and_clean_up() {
        let dir = tempfile::tempdir().unwrap();
        let r = measure_both(dir.path(), Duration::from_millis(200)).unwrap();
        assert!(r.fdatasync_mb_per_sec > 0.0, "{r:?}");
        assert!(r.buffered_fdatasync_mb_per_sec > 0.0, "{r:?}");
        assert!(r.overwrite_fdatasync_mb_per_sec > 0.0, "{r:?}");
        assert!(r.overwrite_fdatasync_latency_ms.p99 > 0.0, "{r:?}");
        assert!(r.fdatasync_latency_ms.p99 > 0.0, "{r:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn only_einval_counts_as_direct_io_refused() {
        let refused = anyhow::Error::from(std::io::Error::from_raw_os_error(libc::EINVAL))
            .context("create the file");
        assert!(is_einval(&refused));
        let other = anyhow::Error::from(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(!is_einval(&other));
    }
}
