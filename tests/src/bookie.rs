//! Real `strata bookie` processes on ephemeral loopback ports.
//!
//! [`BookieProcess::start`] spawns the binary built by `cargo build -p strata`
//! with its output appended to `<data_dir>/../bookie-<port>.log`, and waits
//! until it prints `bookie listening on ...` (it does so only once it is
//! serving and registered). A bookie can be killed (SIGKILL, a crash),
//! stopped (SIGTERM, a clean shutdown) and restarted on the same port and
//! directory; dropping the handle kills the process and reaps it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Overrides where the `strata` binary is looked for.
pub const STRATA_BIN_ENV: &str = "STRATA_BIN";
/// How long a bookie may take to start (journal replay included).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a clean shutdown may take before the test fails.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The line `strata bookie` prints on stdout once it serves.
const READY_LINE: &str = "bookie listening on ";

/// The `strata` binary: `$STRATA_BIN`, else next to the test binary's
/// `deps/` directory (`<target>/<profile>/strata`). Panics, never skips, if
/// it is missing.
pub fn strata_binary() -> PathBuf {
    if let Some(p) = std::env::var_os(STRATA_BIN_ENV) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{STRATA_BIN_ENV}={} does not name a file",
            p.display()
        );
        return p;
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // <target>/debug/deps/<test>-<hash> -> <target>/debug/strata
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            candidates.push(profile_dir.join("strata"));
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("debug").join("strata"));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("debug")
            .join("strata"),
    );
    for c in &candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    panic!(
        "strata binary not built: run `cargo build -p strata` (looked at {candidates:?}; \
         set {STRATA_BIN_ENV} to override)"
    );
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    l.local_addr().expect("probe port address").port()
}

/// One `strata bookie` process (or, between `kill`/`stop` and `restart`, the
/// memory of one).
pub struct BookieProcess {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
    metadata_url: String,
    extra_args: Vec<String>,
    log_path: PathBuf,
}

impl BookieProcess {
    /// Starts a bookie on a free port with its data in `data_dir` and its
    /// registration in the store at `metadata_url`; `extra_args` are more
    /// `strata bookie` flags. Panics if it does not come up within
    /// [`START_TIMEOUT`].
    pub async fn start(
        data_dir: impl AsRef<Path>,
        metadata_url: &str,
        extra_args: &[&str],
    ) -> BookieProcess {
        let data_dir = data_dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&data_dir).expect("create bookie data dir");
        let bin = strata_binary();
        // The port probe can race with another process; try a few ports.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log_dir = data_dir
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| data_dir.clone());
            let mut b = BookieProcess {
                bin: bin.clone(),
                child: None,
                port,
                log_path: log_dir.join(format!("bookie-{port}.log")),
                data_dir: data_dir.clone(),
                metadata_url: metadata_url.to_string(),
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            };
            match b.spawn_and_wait().await {
                Ok(()) => return b,
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("bookie could not bind a port: {last}");
    }

    /// `127.0.0.1:PORT`: the address clients dial and the bookie's id.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.data_dir.join("journal")
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log (all incarnations on this port).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
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

    /// Crashes the bookie: SIGKILL, then reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Shuts the bookie down cleanly (SIGTERM) and waits for it to exit;
    /// returns its exit status. Panics if it does not exit within
    /// [`STOP_TIMEOUT`] (after killing it).
    pub async fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("stop: bookie is not running");
        signal(&c, libc::SIGTERM);
        let give_up = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = c.try_wait().expect("wait for bookie") {
                return status;
            }
            if Instant::now() >= give_up {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "bookie {} did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.address(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the bookie again on the same port and directory (killing it
    /// first if it still runs). Panics if it does not come up.
    pub async fn restart(&mut self) {
        if let Err(e) = self.try_restart().await {
            panic!("{e}");
        }
    }

    /// Like [`BookieProcess::restart`], but a bookie that exits during
    /// startup (or does not get ready in time) is an `Err` with its output,
    /// for tests that expect a start to fail.
    pub async fn try_restart(&mut self) -> Result<(), String> {
        self.kill();
        // The listening socket is gone once the process is reaped; a bind
        // can still fail briefly, so retry within the start timeout.
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

    /// Spawns the process and waits for the ready line; on failure the
    /// process is gone and the error carries the log tail.
    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("open {}: {e}", self.log_path.display()))?;
        let start_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(&self.bin);
        cmd.arg("bookie")
            .arg("--listen")
            .arg(self.address())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--metadata-url")
            .arg(&self.metadata_url)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        if std::env::var_os("STRATA_LOG").is_none() {
            cmd.env("STRATA_LOG", "info");
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let give_up = Instant::now() + START_TIMEOUT;
        loop {
            let text = read_from(&self.log_path, start_offset);
            if text.contains(READY_LINE) {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!(
                    "bookie {} exited during startup with {status}; its output:\n{text}",
                    self.address()
                ));
            }
            if Instant::now() >= give_up {
                self.kill();
                return Err(format!(
                    "bookie {} not ready within {START_TIMEOUT:?}; its output:\n{text}",
                    self.address()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for BookieProcess {
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
