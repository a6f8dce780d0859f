//! `perf bookie --floor`: the paced add latency this disk and this machine
//! allow at all, measured in the same run as the bookie's.
//!
//! The bookie's paced latency is compared with the raw loop's (one 1 MiB
//! write + fdatasync after another), but a paced group commit does
//! something else: entries arrive at their own times, and each waits for
//! the write and sync of the batch it lands in, plus the one in progress
//! when it arrived. So the floor runs the smallest group commit there is,
//! at the bookie run's rate and entry size, on the same directory:
//! - a sending thread, paced as the bookie run's is (same tick, real-time
//!   priority when allowed), copies each entry into the open batch;
//! - a writing thread takes whatever has gathered, writes it with one
//!   `O_DIRECT` write into preallocated space and makes it durable with
//!   `fdatasync`, then takes the next batch.
//!
//! An entry's latency runs from its scheduled time to the end of the
//! `fdatasync` that covered it. There is no network, checksum, index or
//! runtime in it, so what the bookie adds beyond it is the bookie's; what it
//! shows itself is the disk's and the OS scheduler's share.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use strata_bookie::fileio::{self, AlignedBuf};

use super::pacer::InlinePacer;
use super::report;

/// Space allocated ahead of the writes, as the journal preallocates.
const ALLOCATE_AHEAD: u64 = 16 << 20;
/// A file is left for a new one past this size, as the journal rolls.
const MAX_FILE: u64 = 128 << 20;

/// How the floor run paces its entries.
#[derive(Clone, Copy, Debug)]
pub struct FloorPlan {
    pub entry_size: usize,
    /// Entries per second.
    pub rate: f64,
    pub duration: Duration,
    /// The pacer's shortest sleep.
    pub tick: Duration,
    /// Whether the sending thread asks for real-time scheduling.
    pub realtime: bool,
}

/// What the floor run measured.
pub struct Floor {
    /// Latency (µs) of each entry, scheduled time to durable.
    pub hist: Histogram<u64>,
    pub entries: u64,
    pub batches: u64,
}

/// The open batch, shared by the two threads.
struct Open {
    buf: AlignedBuf,
    due: Vec<Instant>,
    /// The sender is done (the writer writes what is left, then stops), or
    /// the writer stopped on an error (the sender stops sending: nothing
    /// would take its entries).
    ended: bool,
}

/// Runs the floor group commit in `dir` (blocking; removes its files).
pub fn paced_group_commit(dir: &Path, plan: FloorPlan) -> anyhow::Result<Floor> {
    anyhow::ensure!(plan.rate > 0.0, "the floor run needs a rate");
    let open = Mutex::new(Open {
        buf: AlignedBuf::with_capacity(4 << 20),
        due: Vec::new(),
        ended: false,
    });
    let ready = Condvar::new();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let written = write_batches(dir, &open, &ready);
            // However it ended, the sender has nobody to send to any more.
            open.lock().unwrap_or_else(|p| p.into_inner()).ended = true;
            written
        });
        let sent = send_entries(plan, &open, &ready);
        let written = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the floor's writing thread panicked"))?;
        let floor = written?;
        anyhow::ensure!(
            floor.entries == sent,
            "the floor run made {} of {sent} entries durable",
            floor.entries
        );
        Ok(floor)
    })
}

/// The sending thread: copies each entry into the open batch at its time.
/// Returns how many it sent.
fn send_entries(plan: FloorPlan, open: &Mutex<Open>, ready: &Condvar) -> u64 {
    let entry: Vec<u8> = (0..plan.entry_size).map(|i| (i % 251) as u8).collect();
    let _realtime = if plan.realtime {
        super::priority::Realtime::enter().ok()
    } else {
        None
    };
    let started = Instant::now();
    let mut pacer = InlinePacer::new(started, plan.rate, 0.0, started + plan.duration, plan.tick);
    let mut sent = 0;
    while let Some(due) = pacer.next_blocking() {
        let was_empty = {
            let mut o = open.lock().unwrap_or_else(|p| p.into_inner());
            if o.ended {
                break;
            }
            o.buf.extend_from_slice(&entry);
            o.due.push(due);
            o.due.len() == 1
        };
        // The writer waits only on an empty batch.
        if was_empty {
            ready.notify_one();
        }
        sent += 1;
    }
    open.lock().unwrap_or_else(|p| p.into_inner()).ended = true;
    ready.notify_one();
    sent
}

/// One file of the floor run, written from its start.
struct FloorFile {
    path: PathBuf,
    file: File,
    direct: Option<File>,
    offset: u64,
    allocated: u64,
}

impl FloorFile {
    fn create(dir: &Path, n: u32) -> anyhow::Result<FloorFile> {
        let path = dir.join(format!("perf-floor-{n}.tmp"));
        let file =
            fileio::create_empty(&path).with_context(|| format!("create {}", path.display()))?;
        let direct = fileio::open_direct(&path);
        fileio::fallocate(&file, 0, ALLOCATE_AHEAD).context("preallocate the floor file")?;
        file.sync_all().context("sync the floor file")?;
        Ok(FloorFile {
            path,
            file,
            direct,
            offset: 0,
            allocated: ALLOCATE_AHEAD,
        })
    }

    /// Writes `buf` (a multiple of the direct-I/O block) at the end and
    /// makes it durable.
    fn append_durably(&mut self, buf: &[u8]) -> anyhow::Result<()> {
        let len = buf.len() as u64;
        if self.offset + len > self.allocated {
            let more = ALLOCATE_AHEAD.max(len);
            fileio::fallocate(&self.file, self.allocated, more)
                .context("preallocate the floor file")?;
            self.allocated += more;
        }
        let wrote = fileio::write_at_direct(&self.file, self.direct.as_ref(), buf, self.offset)
            .context("write the floor file")?;
        if wrote == fileio::Wrote::DirectRefused {
            self.direct = None;
        }
        self.file.sync_data().context("fdatasync the floor file")?;
        self.offset += len;
        Ok(())
    }
}

/// The writing thread: writes and syncs each gathered batch, and times its
/// entries at the end of the sync.
fn write_batches(dir: &Path, open: &Mutex<Open>, ready: &Condvar) -> anyhow::Result<Floor> {
    let mut hist = report::histogram();
    let mut entries = 0;
    let mut batches = 0;
    let mut files = 0;
    let mut current = FloorFile::create(dir, files)?;
    let mut done: Vec<PathBuf> = Vec::new();
    let mut buf = AlignedBuf::with_capacity(4 << 20);
    let mut due: Vec<Instant> = Vec::new();
    let result = loop {
        let ended = {
            let mut o = open.lock().unwrap_or_else(|p| p.into_inner());
            while o.due.is_empty() && !o.ended {
                o = ready.wait(o).unwrap_or_else(|p| p.into_inner());
            }
            std::mem::swap(&mut o.buf, &mut buf);
            std::mem::swap(&mut o.due, &mut due);
            o.ended
        };
        if !due.is_empty() {
            let tail = buf.len() % fileio::DIRECT_ALIGN;
            if tail != 0 {
                buf.extend_zeros(fileio::DIRECT_ALIGN - tail);
            }
            if let Err(e) = current.append_durably(buf.as_slice()) {
                break Err(e);
            }
            let durable = Instant::now();
            entries += due.len() as u64;
            for d in due.drain(..) {
                report::record(
                    &mut hist,
                    durable.saturating_duration_since(d).as_micros() as u64,
                );
            }
            batches += 1;
            buf.clear();
            if current.offset >= MAX_FILE {
                files += 1;
                let next = match FloorFile::create(dir, files) {
                    Ok(f) => f,
                    Err(e) => break Err(e),
                };
                // Kept until the end, as the bookie keeps its data during
                // its run: freeing blocks meanwhile (with discard) would
                // load the disk with work the bookie run did not have.
                done.push(std::mem::replace(&mut current, next).path);
            }
        }
        if ended {
            break Ok(());
        }
    };
    done.push(current.path);
    for path in done {
        let _ = std::fs::remove_file(path);
    }
    result.map(|()| Floor {
        hist,
        entries,
        batches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_paced_entry_is_made_durable_and_timed() {
        let dir = tempfile::tempdir().unwrap();
        let plan = FloorPlan {
            entry_size: 4096 + 100,
            rate: 2000.0,
            duration: Duration::from_millis(400),
            tick: Duration::from_micros(200),
            realtime: false,
        };
        let floor = paced_group_commit(dir.path(), plan).unwrap();
        // 400 ms at 2000/s: 800 entries, each timed once.
        assert_eq!(floor.entries, 800);
        assert_eq!(floor.hist.len(), 800);
        assert!(floor.batches >= 1 && floor.batches <= 800);
        assert!(floor.hist.min() > 0, "a sync takes some time");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    /// A directory the floor cannot write to fails the run with the reason,
    /// at once: the sender does not go on pacing entries into a batch that
    /// nobody takes.
    #[test]
    fn a_floor_that_cannot_write_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir");
        let plan = FloorPlan {
            entry_size: 4096,
            rate: 1000.0,
            duration: Duration::from_secs(60),
            tick: Duration::from_micros(200),
            realtime: false,
        };
        let started = Instant::now();
        let err = paced_group_commit(&missing, plan)
            .err()
            .expect("no directory");
        assert!(format!("{err:#}").contains("perf-floor-0.tmp"), "{err:#}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ran on: {:?}",
            started.elapsed()
        );
    }
}
