//! Deleting large files without stalling the disk's other writers.
//!
//! On ext4 (the development VM's disk), unlinking a written 135 MB file took
//! ~100 ms, and a 256 KiB write + fdatasync running next to it waited up to
//! as long (its p99 went from 4 to 9 ms, its max to 99 ms): the journal's
//! group commits would wait the same way whenever GC or retention deleted a
//! journal file or an entry log. Cutting the file from its end in 4 MiB steps
//! with 5 ms pauses, then unlinking what is left, kept that writer's max at
//! 12 ms and its p99 at 5.5 ms.
//!
//! So a large file is first renamed out of the way (`NAME.deleting`, which
//! no listing of journal files or entry logs matches, so it is gone for the
//! bookie at once), then cut and unlinked by a background thread. Files left
//! half-cut by a crash are found by [`Remover::sweep`] at the next start.
//! Small files are unlinked at once.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tracing::warn;

/// Suffix of files waiting for (or in) deletion.
pub const DOOMED_SUFFIX: &str = ".deleting";
/// Bytes cut per step.
pub const STEP: u64 = 4 << 20;
/// Pause after each step.
pub const PAUSE: Duration = Duration::from_millis(5);
/// Niceness of the deleting thread (as the flush thread's).
const NICE: i32 = 5;

/// The deleting thread and what it was handed.
#[derive(Debug)]
pub struct Remover {
    step: u64,
    tx: Mutex<Option<mpsc::Sender<PathBuf>>>,
    /// Files handed over and not deleted yet.
    pending: Arc<(Mutex<usize>, Condvar)>,
    /// Set when stopping: the rest is unlinked without steps or pauses.
    hurry: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Remover {
    /// Files above `step` bytes are cut in steps of `step` with `pause`
    /// after each.
    pub fn new(step: u64, pause: Duration) -> std::io::Result<Remover> {
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let pending = Arc::new((Mutex::new(0usize), Condvar::new()));
        let hurry = Arc::new(AtomicBool::new(false));
        let thread = {
            let pending = pending.clone();
            let hurry = hurry.clone();
            std::thread::Builder::new()
                .name("remover".into())
                .spawn(move || {
                    // SAFETY: setpriority on the calling thread (who = 0); no memory is passed.
                    unsafe {
                        libc::setpriority(libc::PRIO_PROCESS, 0, NICE);
                    }
                    while let Ok(path) = rx.recv() {
                        delete_in_steps(&path, step, pause, &hurry);
                        finished(&pending);
                    }
                })?
        };
        Ok(Remover {
            step,
            tx: Mutex::new(Some(tx)),
            pending,
            hurry,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// With the default step and pause.
    pub fn with_defaults() -> std::io::Result<Remover> {
        Remover::new(STEP, PAUSE)
    }

    /// Deletes `path`: at once if it is small, else renames it out of the
    /// way and hands it to the deleting thread. Returns its size (0 if it
    /// did not exist).
    pub fn remove(&self, path: &Path) -> std::io::Result<u64> {
        let Some(size) = size_of(path)? else {
            return Ok(0);
        };
        if size <= self.step {
            return unlink(path).map(|()| size);
        }
        let doomed = doomed_name(path);
        match fs::rename(path, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        }
        self.hand_over(doomed);
        Ok(size)
    }

    /// Deletes (in the background) the files of `dir` a previous run left
    /// waiting for deletion; returns how many.
    pub fn sweep(&self, dir: &Path) -> std::io::Result<usize> {
        let mut found = 0;
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(DOOMED_SUFFIX))
            {
                self.hand_over(entry.path());
                found += 1;
            }
        }
        Ok(found)
    }

    fn hand_over(&self, doomed: PathBuf) {
        *self.pending.0.lock() += 1;
        let sent = self
            .tx
            .lock()
            .as_ref()
            .map(|tx| tx.send(doomed.clone()).is_ok());
        if sent != Some(true) {
            // Stopped: delete it here.
            delete_in_steps(&doomed, self.step, Duration::ZERO, &self.hurry);
            finished(&self.pending);
        }
    }

    /// Files handed over and not deleted yet.
    pub fn pending(&self) -> usize {
        *self.pending.0.lock()
    }

    /// Waits until everything handed over is deleted, at most `limit`;
    /// true if it was.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let (count, idle) = &*self.pending;
        let mut n = count.lock();
        let deadline = std::time::Instant::now() + limit;
        while *n > 0 {
            if idle.wait_until(&mut n, deadline).timed_out() {
                return *n == 0;
            }
        }
        true
    }

    /// Deletes what is left without pauses and stops the thread.
    pub fn stop(&self) {
        self.hurry.store(true, Ordering::Relaxed);
        drop(self.tx.lock().take());
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Remover {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Counts one handed-over file as deleted, waking [`Remover::wait_idle`]
/// when none is left.
fn finished(pending: &(Mutex<usize>, Condvar)) {
    let (count, idle) = pending;
    let mut n = count.lock();
    *n = n.saturating_sub(1);
    if *n == 0 {
        idle.notify_all();
    }
}

fn doomed_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(DOOMED_SUFFIX);
    path.with_file_name(name)
}

/// Unlinks `path` at once; returns its size (0 if it did not exist).
pub fn remove_now(path: &Path) -> std::io::Result<u64> {
    let Some(size) = size_of(path)? else {
        return Ok(0);
    };
    unlink(path).map(|()| size)
}

/// The size of `path`, `None` if it does not exist.
fn size_of(path: &Path) -> std::io::Result<Option<u64>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Unlinks `path` at once (a missing file is not an error).
pub fn unlink(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Cuts `path` from its end, `step` bytes at a time with `pause` after each
/// (none once `hurry` is set), then unlinks it. Failures are logged: the
/// file is left for the next start's sweep.
fn delete_in_steps(path: &Path, step: u64, pause: Duration, hurry: &AtomicBool) {
    let cut = || -> std::io::Result<()> {
        let file = fs::OpenOptions::new().write(true).open(path)?;
        let mut size = file.metadata()?.len();
        while size > step && !hurry.load(Ordering::Relaxed) {
            size -= step;
            file.set_len(size)?;
            nap(pause, hurry);
        }
        Ok(())
    };
    match cut() {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => warn!(path = %path.display(), error = %e, "cannot cut a file before deleting it"),
    }
    if let Err(e) = unlink(path) {
        warn!(path = %path.display(), error = %e, "cannot delete a file; the next start retries");
    }
}

/// Sleeps for `pause`, or less once `hurry` is set.
fn nap(pause: Duration, hurry: &AtomicBool) {
    let until = std::time::Instant::now() + pause;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || hurry.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(5)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::names;

    fn file(dir: &Path, name: &str, len: u64) -> PathBuf {
        let p = dir.join(name);
        let f = fs::File::create(&p).unwrap();
        f.set_len(len).unwrap();
        p
    }

    #[test]
    fn small_files_go_at_once_large_ones_shrink_in_steps_then_go() {
        let dir = tempfile::tempdir().unwrap();
        let r = Remover::new(1 << 20, Duration::from_millis(100)).unwrap();
        let small = file(dir.path(), "a.log", 1 << 20);
        assert_eq!(r.remove(&small).unwrap(), 1 << 20);
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
        assert_eq!(r.pending(), 0);

        let big = file(dir.path(), "b.log", 10 << 20);
        assert_eq!(r.remove(&big).unwrap(), 10 << 20);
        // Gone under its name at once, waiting under the doomed one.
        assert!(!big.exists());
        let doomed = dir.path().join("b.log.deleting");
        // It shrinks a step at a time (100 ms apart, so a busy machine still sees one) before it goes.
        let mut sizes = Vec::new();
        while let Ok(m) = fs::metadata(&doomed) {
            sizes.push(m.len());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            sizes.iter().any(|s| *s > 0 && *s < 10 << 20),
            "never seen part-cut: {sizes:?}"
        );
        assert!(sizes.windows(2).all(|w| w[1] <= w[0]), "{sizes:?}");
        assert!(r.wait_idle(Duration::from_secs(10)));
        assert!(names(dir.path()).is_empty());
        assert_eq!(r.remove(&big).unwrap(), 0, "already gone");
    }

    #[test]
    fn leftovers_are_swept_and_stopping_finishes_without_pauses() {
        let dir = tempfile::tempdir().unwrap();
        file(dir.path(), "0001.jnl.deleting", 64 << 20);
        file(dir.path(), "0002.jnl", 64 << 20);
        // A pause so long that only stopping can finish in time.
        let r = Remover::new(1 << 20, Duration::from_secs(3600)).unwrap();
        assert_eq!(r.sweep(dir.path()).unwrap(), 1);
        assert_eq!(r.sweep(&dir.path().join("missing")).unwrap(), 0);
        // Let it start on the file (it shrinks once), then stop.
        let doomed = dir.path().join("0001.jnl.deleting");
        while fs::metadata(&doomed).is_ok_and(|m| m.len() == 64 << 20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let started = std::time::Instant::now();
        r.stop();
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(names(dir.path()), vec!["0002.jnl"]);
        assert_eq!(r.pending(), 0);
        // Stopped, it still deletes, on the caller's thread.
        r.remove(&dir.path().join("0002.jnl")).unwrap();
        assert!(names(dir.path()).is_empty());
    }
}
