//! Real `strata standalone` processes (broker, bookie and metadata in one
//! process) on ephemeral loopback ports, for the Pulsar client
//! compatibility tests (`tests/tests/pulsar_python.rs`, `pulsar_rust.rs`).
//!
//! [`StandaloneProcess::start`] picks the broker, admin and bookie ports up
//! front (so a restart reuses them and clients can dial the same URL),
//! appends the process's output to `<data_dir>/../standalone-<port>.log`,
//! and waits until it prints `strata standalone ready`. Before that line it
//! prints `service URL: pulsar://...` and `admin URL: http://...` (and, with
//! `--broker-port-tls` / `--admin-port-tls`, `service URL TLS:
//! pulsar+ssl://...` and `admin URL TLS: https://...`); the URLs are taken
//! from those lines. The process can be killed (SIGKILL, a crash),
//! stopped (SIGTERM, a clean shutdown that must exit 0) and restarted on the
//! same ports and data directory, which keeps every topic, message and
//! subscription cursor. Dropping the handle kills the process and reaps it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::bookie::{free_port, strata_binary};
use crate::process::ServerProcess;
pub use crate::process::{START_TIMEOUT, STOP_TIMEOUT};

/// The line `strata standalone` prints on stdout once it serves clients.
pub const READY_LINE: &str = "strata standalone ready";
const SERVICE_URL_PREFIX: &str = "service URL: ";
const ADMIN_URL_PREFIX: &str = "admin URL: ";
const SERVICE_URL_TLS_PREFIX: &str = "service URL TLS: ";
const ADMIN_URL_TLS_PREFIX: &str = "admin URL TLS: ";

/// One `strata standalone` process (or, between `kill`/`stop` and
/// `restart`, the memory of one).
pub struct StandaloneProcess {
    process: ServerProcess,
    data_dir: PathBuf,
    service_url: String,
    admin_url: String,
    service_url_tls: Option<String>,
    admin_url_tls: Option<String>,
}

/// The process's own controls (log, pid, kill, stop...) come from
/// [`ServerProcess`].
impl std::ops::Deref for StandaloneProcess {
    type Target = ServerProcess;
    fn deref(&self) -> &ServerProcess {
        &self.process
    }
}

impl std::ops::DerefMut for StandaloneProcess {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}

impl StandaloneProcess {
    /// Starts a standalone with its data in `data_dir` (created if missing)
    /// on free ports. Panics with its output if it does not get ready within
    /// [`START_TIMEOUT`].
    pub async fn start(data_dir: impl AsRef<Path>) -> StandaloneProcess {
        StandaloneProcess::start_with(data_dir, &[]).await
    }

    /// As [`StandaloneProcess::start`], with `extra` flags after the ports.
    pub async fn start_with(data_dir: impl AsRef<Path>, extra: &[&str]) -> StandaloneProcess {
        StandaloneProcess::start_with_env(data_dir, extra, &[]).await
    }

    /// As [`StandaloneProcess::start_with`], with extra environment
    /// variables (kept on restart), e.g. [`crate::garage::Garage::env`].
    pub async fn start_with_env(
        data_dir: impl AsRef<Path>,
        extra: &[&str],
        envs: &[(String, String)],
    ) -> StandaloneProcess {
        let data_dir = data_dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&data_dir).expect("create standalone data dir");
        let bin = strata_binary();
        let log_dir = data_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| data_dir.clone());
        // The embedded bookie gets the test watermark too (see
        // `SHARED_DISK_WATERMARK`), unless the test gives its own config.
        let watermark = (!extra.contains(&"--bookie-config")).then(|| {
            let path = log_dir.join("strata-test-bookie.toml");
            std::fs::write(&path, crate::bookie::SHARED_DISK_WATERMARK_TOML)
                .expect("write the test bookie config");
            path
        });
        // The port probes can race with other processes; try a few sets.
        let mut last = String::new();
        for _ in 0..3 {
            let (broker, admin, bookie) = distinct_free_ports();
            let mut args: Vec<OsString> = vec![
                "standalone".into(),
                "--data-dir".into(),
                data_dir.clone().into(),
                "--broker-port".into(),
                broker.to_string().into(),
                "--admin-port".into(),
                admin.to_string().into(),
                "--bookie-port".into(),
                bookie.to_string().into(),
            ];
            if let Some(path) = &watermark {
                args.extend(["--bookie-config".into(), path.clone().into()]);
            }
            args.extend(extra.iter().map(OsString::from));
            let mut s = StandaloneProcess {
                process: ServerProcess::new(
                    format!("standalone (broker port {broker})"),
                    &bin,
                    args,
                    READY_LINE,
                    log_dir.join(format!("standalone-{broker}.log")),
                )
                .with_envs(envs),
                data_dir: data_dir.clone(),
                service_url: String::new(),
                admin_url: String::new(),
                service_url_tls: None,
                admin_url_tls: None,
            };
            match s.process.spawn_and_wait().await {
                Ok(output) => {
                    s.take_urls(&output);
                    return s;
                }
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("standalone could not bind its ports: {last}");
    }

    /// Starts a standalone with its data in `<dir>/data` and its log in `dir`.
    pub async fn start_in(dir: &TempDir) -> StandaloneProcess {
        StandaloneProcess::start(dir.path().join("data")).await
    }

    /// `pulsar://127.0.0.1:PORT`, as the process printed it.
    pub fn service_url(&self) -> &str {
        &self.service_url
    }

    /// `http://127.0.0.1:PORT`, as the process printed it.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// `pulsar+ssl://127.0.0.1:PORT`, as the process printed it; panics if
    /// it was started without `--broker-port-tls`.
    pub fn service_url_tls(&self) -> &str {
        self.service_url_tls
            .as_deref()
            .expect("the standalone has no TLS port (--broker-port-tls)")
    }

    /// `https://127.0.0.1:PORT`, as the process printed it; panics if it was
    /// started without `--admin-port-tls`.
    pub fn admin_url_tls(&self) -> &str {
        self.admin_url_tls
            .as_deref()
            .expect("the standalone has no admin HTTPS port (--admin-port-tls)")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Like [`StandaloneProcess::stop`], and panics with the log tail unless
    /// the process exited with status 0.
    pub async fn stop_cleanly(&mut self) {
        let status = self.stop().await;
        assert!(
            status.success(),
            "standalone exited with {status} after SIGTERM (expected 0)\n{}",
            self.log_tail()
        );
    }

    /// Starts the standalone again on the same ports and data directory
    /// (killing it first if it still runs). Panics with its output if it
    /// does not get ready.
    pub async fn restart(&mut self) {
        match self.process.respawn().await {
            Ok(output) => self.take_urls(&output),
            Err(e) => panic!("restart: {e}"),
        }
    }

    /// Reads the URLs from the output of the incarnation that just started.
    fn take_urls(&mut self, output: &str) {
        let line_after = |prefix: &str| {
            output.lines().rev().find_map(|l| {
                l.find(prefix)
                    .map(|i| l[i + prefix.len()..].trim().to_string())
            })
        };
        let (Some(service), Some(admin)) =
            (line_after(SERVICE_URL_PREFIX), line_after(ADMIN_URL_PREFIX))
        else {
            panic!(
                "{} printed {READY_LINE:?} without the {SERVICE_URL_PREFIX:?} and \
                 {ADMIN_URL_PREFIX:?} lines; its output:\n{output}",
                self.process.name()
            );
        };
        assert!(
            service.starts_with("pulsar://"),
            "bad service URL {service:?}"
        );
        assert!(admin.starts_with("http://"), "bad admin URL {admin:?}");
        self.service_url = service;
        self.admin_url = admin;
        self.service_url_tls = line_after(SERVICE_URL_TLS_PREFIX);
        if let Some(url) = &self.service_url_tls {
            assert!(
                url.starts_with("pulsar+ssl://"),
                "bad TLS service URL {url:?}"
            );
        }
        self.admin_url_tls = line_after(ADMIN_URL_TLS_PREFIX);
        if let Some(url) = &self.admin_url_tls {
            assert!(url.starts_with("https://"), "bad TLS admin URL {url:?}");
        }
    }
}

/// Three different free loopback ports.
fn distinct_free_ports() -> (u16, u16, u16) {
    loop {
        let (a, b, c) = (free_port(), free_port(), free_port());
        if a != b && b != c && a != c {
            return (a, b, c);
        }
    }
}
