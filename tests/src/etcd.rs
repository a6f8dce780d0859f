//! A throwaway single-member etcd server on ephemeral loopback ports.
//!
//! Each [`EtcdServer`] owns its data directory and process; dropping it kills
//! the process (SIGKILL) and reaps it, so no test leaves etcd running.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

/// Where Debian's `etcd-server` package installs the binary; overridable for
/// other systems.
const DEFAULT_ETCD_BIN: &str = "/usr/bin/etcd";
const ETCD_BIN_ENV: &str = "STRATA_ETCD_BIN";

/// Startup is normally well under a second; 30 s covers a loaded CI machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Another process may grab a port between our probe and etcd's bind.
const START_ATTEMPTS: usize = 3;

pub struct EtcdServer {
    child: Child,
    client_port: u16,
    dir: TempDir,
}

/// The etcd binary to run; an error (never a skip) if it is missing, since
/// the metadata conformance suite is meaningless without it.
pub fn etcd_binary() -> Result<PathBuf> {
    let path = std::env::var_os(ETCD_BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ETCD_BIN));
    if !path.is_file() {
        bail!(
            "etcd not installed: run scripts/test.sh (looked for {}; set {ETCD_BIN_ENV} to override)",
            path.display()
        );
    }
    Ok(path)
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a probe port")?;
    Ok(listener.local_addr()?.port())
}

impl EtcdServer {
    /// Starts etcd and waits until it serves requests.
    pub async fn start() -> Result<Self> {
        let bin = etcd_binary()?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&bin).await {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    async fn start_once(bin: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("strata-etcd-")
            .tempdir()
            .context("creating etcd temp dir")?;
        let client_port = free_port()?;
        let mut peer_port = free_port()?;
        while peer_port == client_port {
            peer_port = free_port()?;
        }
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = File::create(dir.path().join("etcd.log")).context("creating etcd log")?;
        let child = Command::new(bin)
            .arg("--name")
            .arg("t")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("t={peer_url}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        // From here on Drop kills the process, whatever happens.
        let mut server = EtcdServer {
            child,
            client_port,
            dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let give_up = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("etcd exited early with {status}; log:\n{}", self.log_tail());
            }
            // Connecting through the store also probes with a real request.
            let attempt = tokio::time::timeout(
                Duration::from_secs(2),
                strata_common::metadata::open(&self.url()),
            )
            .await;
            let last_error = match attempt {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "connect attempt timed out".to_string(),
            };
            if Instant::now() >= give_up {
                bail!(
                    "etcd not ready after {READY_TIMEOUT:?}: {last_error}; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The metadata store URL of this server, `etcd://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.client_port)
    }

    /// The client endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The end of etcd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // SIGKILL: nothing in a test server is worth a graceful shutdown.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
