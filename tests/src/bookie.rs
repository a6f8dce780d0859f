//! Real `strata bookie` processes on ephemeral loopback ports.
//!
//! [`BookieProcess::start`] spawns the binary built by `cargo build -p strata`
//! with its output appended to `<data_dir>/../bookie-<port>.log`, and waits
//! until it prints `bookie listening on ...` (it does so only once it is
//! serving and registered). A bookie can be killed (SIGKILL, a crash),
//! stopped (SIGTERM, a clean shutdown) and restarted on the same port and
//! directory; dropping the handle kills the process and reaps it.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::process::ServerProcess;
pub use crate::process::{START_TIMEOUT, STOP_TIMEOUT};

/// Overrides where the `strata` binary is looked for.
pub const STRATA_BIN_ENV: &str = "STRATA_BIN";
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
        crate::manifest_dir()
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
    process: ServerProcess,
    port: u16,
    data_dir: PathBuf,
}

/// The process's own controls (log, pid, kill, stop...) come from
/// [`ServerProcess`].
impl std::ops::Deref for BookieProcess {
    type Target = ServerProcess;
    fn deref(&self) -> &ServerProcess {
        &self.process
    }
}

impl std::ops::DerefMut for BookieProcess {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}

/// The disk watermark of a test bookie that does not set its own. Test
/// bookies keep their data on the machine's disk, next to build caches
/// that grow by tens of GB: with the default 95 %, a development disk that
/// crossed it mid-run turned bookies read-only and a test failed on a side
/// effect (a read-only bookie keeps no journal files for reuse, and GC
/// never pooled any).
const SHARED_DISK_WATERMARK: &[&str] =
    &["--disk-usage-threshold", "0.99", "--disk-usage-lwm", "0.98"];

/// [`SHARED_DISK_WATERMARK`] as a bookie config file's lines, for the
/// bookie embedded in a test standalone (`--bookie-config`).
pub const SHARED_DISK_WATERMARK_TOML: &str = "disk_usage_threshold = 0.99\ndisk_usage_lwm = 0.98\n";

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
        let log_dir = data_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| data_dir.clone());
        // The port probe can race with another process; try a few ports.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let address = format!("127.0.0.1:{port}");
            let mut args: Vec<OsString> = vec![
                "bookie".into(),
                "--listen".into(),
                address.clone().into(),
                "--data-dir".into(),
                data_dir.clone().into(),
                "--metadata-url".into(),
                metadata_url.into(),
            ];
            if !extra_args.contains(&"--disk-usage-threshold") {
                args.extend(SHARED_DISK_WATERMARK.iter().map(OsString::from));
            }
            args.extend(extra_args.iter().map(OsString::from));
            let mut b = BookieProcess {
                process: ServerProcess::new(
                    format!("bookie {address}"),
                    &bin,
                    args,
                    READY_LINE,
                    log_dir.join(format!("bookie-{port}.log")),
                ),
                port,
                data_dir: data_dir.clone(),
            };
            match b.process.spawn_and_wait().await {
                Ok(_) => return b,
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
        self.process.respawn().await.map(drop)
    }
}
