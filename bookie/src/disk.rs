//! Disk-usage watermarks: above `disk_usage_threshold` on any bookie disk the
//! bookie turns read-only (adds refused, reads served); below
//! `disk_usage_lwm` it takes adds again. The gap stops it from flapping.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::storage::{LedgerStorage, ReadOnlyReason};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DiskUsage {
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Used fraction of the fullest disk.
    pub used: f64,
}

pub struct DiskState {
    dirs: Vec<PathBuf>,
    threshold: f64,
    lwm: f64,
    last: Mutex<DiskUsage>,
}

impl DiskState {
    pub fn new(dirs: Vec<PathBuf>, threshold: f64, lwm: f64) -> Self {
        DiskState {
            dirs,
            threshold,
            lwm,
            last: Mutex::new(DiskUsage::default()),
        }
    }

    pub fn snapshot(&self) -> DiskUsage {
        *self.last.lock()
    }

    /// Measures the disks and moves the storage in or out of read-only.
    /// Returns true if the read-only state changed. Blocking (statvfs).
    pub fn check(&self, storage: &LedgerStorage) -> io::Result<bool> {
        let mut worst = self.measure()?;
        // Journal files kept for reuse are the first space to give back:
        // before turning read-only, and while read-only for lack of space
        // (garbage collection keeps releasing files into the pool).
        let short =
            worst.used >= self.threshold || storage.read_only() == Some(ReadOnlyReason::Disk);
        if short && storage.drain_journal_pool() > 0 {
            worst = self.measure()?;
        }
        *self.last.lock() = worst;
        let before = storage.read_only();
        match before {
            None if worst.used >= self.threshold => {
                storage.set_read_only(Some(ReadOnlyReason::Disk))
            }
            Some(ReadOnlyReason::Disk) if worst.used < self.lwm => storage.set_read_only(None),
            _ => {}
        }
        Ok(before != storage.read_only())
    }

    /// Usage of the fullest disk.
    fn measure(&self) -> io::Result<DiskUsage> {
        let mut worst = DiskUsage::default();
        for dir in &self.dirs {
            let u = usage(dir)?;
            if u.used >= worst.used || worst.total_bytes == 0 {
                worst = u;
            }
        }
        Ok(worst)
    }
}

/// Usage of the filesystem holding `path`.
pub fn usage(path: &Path) -> io::Result<DiskUsage> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: statvfs writes into the zeroed struct we pass; c is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let block = st.f_frsize as u64;
    let total = st.f_blocks as u64 * block;
    let free = st.f_bavail as u64 * block;
    let used = if total == 0 {
        0.0
    } else {
        1.0 - free as f64 / total as f64
    };
    Ok(DiskUsage {
        total_bytes: total,
        free_bytes: free,
        used,
    })
}
