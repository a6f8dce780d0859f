//! One process per data directory.
//!
//! Two processes writing the same journal or entry logs would destroy each
//! other's data (each takes the other's live tail for a torn one and cuts
//! it). [`DirLock::acquire`] takes an exclusive `flock` on `DIR/.strata.lock`
//! and keeps it for as long as the guard lives. The kernel drops it when the
//! process ends, however it ends (a SIGKILLed bookie restarts without any
//! clean-up). A second process gets an error that names the directory and
//! the process holding it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name inside a locked directory.
pub const LOCK_FILE: &str = ".strata.lock";

/// Holds a directory for this process until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum DirLockError {
    #[error(
        "the {what} directory {dir} is in use by another Strata process{holder}; \
         two processes must never share it (stop the other one, or give this one \
         its own directory)"
    )]
    InUse {
        what: String,
        dir: PathBuf,
        /// ` (pid N: command)` when the holder wrote it, or empty.
        holder: String,
    },
    #[error("cannot lock the {what} directory {dir}: {source}")]
    Io {
        what: String,
        dir: PathBuf,
        source: std::io::Error,
    },
}

impl DirLock {
    /// Locks `dir` (created if missing) for this process. `what` names the
    /// directory's role in errors ("journal", "data").
    pub fn acquire(dir: &Path, what: &str) -> Result<DirLock, DirLockError> {
        let io = |source| DirLockError::Io {
            what: what.to_string(),
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        // SAFETY: flock on a descriptor this function owns; no memory involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut held = String::new();
                let _ = file.read_to_string(&mut held);
                let held = held.trim();
                return Err(DirLockError::InUse {
                    what: what.to_string(),
                    dir: dir.to_path_buf(),
                    holder: if held.is_empty() {
                        String::new()
                    } else {
                        format!(" ({held})")
                    },
                });
            }
            return Err(io(err));
        }
        // Who holds it, for the next process's error message.
        let me = format!(
            "pid {}: {}",
            std::process::id(),
            // Lossy: an argument that is not UTF-8 must not stop the start.
            std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let _ = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()));
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_fails_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let first = DirLock::acquire(&dir, "journal").expect("first lock");
        let err = DirLock::acquire(&dir, "journal").expect_err("second lock");
        let text = err.to_string();
        assert!(matches!(err, DirLockError::InUse { .. }), "{text}");
        assert!(text.contains("journal directory"), "{text}");
        assert!(text.contains(&dir.display().to_string()), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        DirLock::acquire(&dir, "journal").expect("lock again after drop");
    }

    #[test]
    fn an_unwritable_place_is_an_io_error_naming_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = DirLock::acquire(&file.join("sub"), "data").expect_err("not a directory");
        assert!(matches!(err, DirLockError::Io { .. }), "{err}");
        assert!(err.to_string().contains("plain-file"), "{err}");
    }
}
