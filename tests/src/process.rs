//! One server process under test: spawned with its output appended to a log
//! file, ready once a given line appears in that output, crashed with
//! SIGKILL, stopped with SIGTERM, restarted with the same arguments.
//!
//! [`crate::bookie::BookieProcess`] and
//! [`crate::standalone::StandaloneProcess`] wrap this with their own flags
//! and ready lines. Dropping a [`ServerProcess`] kills and reaps the process.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start (journal replay included).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a clean shutdown may take before the test fails.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A server process (or, between `kill`/`stop` and a new spawn, the memory
/// of one): what to run, where its output goes, and when it is ready.
pub struct ServerProcess {
    /// Names the process in messages, e.g. `bookie 127.0.0.1:3181`.
    name: String,
    bin: PathBuf,
    args: Vec<OsString>,
    ready_line: String,
    log_path: PathBuf,
    child: Option<Child>,
    /// Extra environment for the process (on top of the test's own).
    envs: Vec<(OsString, OsString)>,
}

impl ServerProcess {
    /// Describes a process; nothing runs until [`ServerProcess::spawn_and_wait`].
    pub fn new(
        name: impl Into<String>,
        bin: impl Into<PathBuf>,
        args: Vec<OsString>,
        ready_line: impl Into<String>,
        log_path: impl Into<PathBuf>,
    ) -> ServerProcess {
        ServerProcess {
            name: name.into(),
            bin: bin.into(),
            args,
            ready_line: ready_line.into(),
            log_path: log_path.into(),
            child: None,
            envs: Vec::new(),
        }
    }

    /// Adds environment variables the process is started (and restarted)
    /// with, e.g. object store credentials.
    pub fn with_envs(mut self, envs: &[(String, String)]) -> ServerProcess {
        self.envs
            .extend(envs.iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log (all incarnations).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last lines of the log, for failure messages (without terminal
    /// colour codes).
    pub fn log_tail(&self) -> String {
        let log = strip_ansi(&self.log());
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- {} (last 40 lines) ---\n{}",
            self.log_path.display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// OS process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True if the process is running (not exited, not killed).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// Freezes the process (SIGSTOP): its sockets stay open, nothing is
    /// answered until [`ServerProcess::resume`].
    pub fn pause(&self) {
        if let Some(c) = self.child.as_ref() {
            signal(c, libc::SIGSTOP);
        }
    }

    /// Lets a paused process run on (SIGCONT).
    pub fn resume(&self) {
        if let Some(c) = self.child.as_ref() {
            signal(c, libc::SIGCONT);
        }
    }

    /// Crashes the process: SIGKILL, then reaps it. A no-op if not running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Shuts the process down cleanly (SIGTERM) and waits for it to exit;
    /// returns its exit status. Panics if it is not running, or does not
    /// exit within [`STOP_TIMEOUT`] (after killing it).
    pub async fn stop(&mut self) -> ExitStatus {
        let mut c = self
            .child
            .take()
            .unwrap_or_else(|| panic!("stop: {} is not running", self.name));
        signal(&c, libc::SIGTERM);
        let give_up = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = c.try_wait().expect("wait for a server process") {
                return status;
            }
            if Instant::now() >= give_up {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Spawns the process and waits for the ready line; returns what it
    /// printed since it was spawned. On failure the process is gone and the
    /// error carries its output (an error containing `Address already in
    /// use` means a port was taken; callers retry on that).
    pub async fn spawn_and_wait(&mut self) -> Result<String, String> {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("open {}: {e}", self.log_path.display()))?;
        let start_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        // Info unless the test's environment or the process's own says otherwise.
        if std::env::var_os("STRATA_LOG").is_none()
            && !self.envs.iter().any(|(k, _)| k == "STRATA_LOG")
        {
            cmd.env("STRATA_LOG", "info");
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let give_up = Instant::now() + START_TIMEOUT;
        loop {
            let text = read_from(&self.log_path, start_offset);
            if text.contains(&self.ready_line) {
                return Ok(text);
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!(
                    "{} exited during startup with {status}; its output:\n{text}",
                    self.name
                ));
            }
            if Instant::now() >= give_up {
                self.kill();
                return Err(format!(
                    "{} not ready within {START_TIMEOUT:?}; its output:\n{text}",
                    self.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process if it still runs, then spawns it again with the
    /// same arguments and waits until it is ready. A port that is still
    /// taken (the old listening socket lingering) is retried within
    /// [`START_TIMEOUT`]; any other failure is an `Err` with its output.
    pub async fn respawn(&mut self) -> Result<String, String> {
        self.kill();
        let give_up = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_and_wait().await {
                Err(e) if e.contains("Address already in use") && Instant::now() < give_up => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: plain kill(2) on the pid of a child we have not reaped yet.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "kill({}, {sig}): {}",
        child.id(),
        std::io::Error::last_os_error()
    );
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The contents of `path` from byte `offset` on (lossy UTF-8).
fn read_from(path: &Path, offset: u64) -> String {
    let mut out = Vec::new();
    if let Ok(mut f) = File::open(path)
        && f.seek(SeekFrom::Start(offset)).is_ok()
    {
        let _ = f.read_to_end(&mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn strip_ansi_removes_colour_codes() {
        assert_eq!(
            super::strip_ansi("\u{1b}[2m12:00\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m ready"),
            "12:00  INFO ready"
        );
        assert_eq!(super::strip_ansi("plain [text]"), "plain [text]");
    }
}
