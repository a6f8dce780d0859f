//! A throwaway single-node Garage (a real S3 server, v2.5) on ephemeral
//! loopback ports, for the tiered-storage tests.
//!
//! [`Garage::start`] writes a config into a temp dir (SQLite metadata,
//! replication factor 1, region `garage`, a random RPC secret), runs
//! `garage server`, and through the `garage` CLI assigns the node a layout
//! role, applies it, creates an access key and a bucket and grants the key
//! read, write and owner rights on it. Several Garages can run at once.
//! Dropping a [`Garage`] kills the server (SIGKILL) and removes its files.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};
use tempfile::TempDir;

const GARAGE_BIN_ENV: &str = "STRATA_GARAGE_BIN";
/// The region Garage is configured to answer to.
pub const REGION: &str = "garage";
/// The bucket every Garage starts with.
pub const BUCKET: &str = "strata";
/// Start-up and set-up are a second or two; 60 s covers a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Another process may grab a port between our probe and Garage's bind.
const START_ATTEMPTS: usize = 3;

pub struct Garage {
    child: Child,
    dir: TempDir,
    bin: PathBuf,
    s3_port: u16,
    admin_port: u16,
    admin_token: String,
    key_id: String,
    secret: String,
}

/// The garage binary: `$STRATA_GARAGE_BIN`, else `garage` on `PATH`. An
/// error (never a skip) if missing: the S3 tests mean nothing without it.
pub fn garage_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(GARAGE_BIN_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{GARAGE_BIN_ENV}={} is not a file", path.display());
        }
        return Ok(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("garage"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "garage not installed: run scripts/test.sh (it runs `cargo install garage@2.5.0 \
                 --locked`), or set {GARAGE_BIN_ENV}"
            )
        })
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a probe port")?;
    Ok(listener.local_addr()?.port())
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

impl Garage {
    /// Starts Garage with bucket [`BUCKET`] and a key that owns it; returns
    /// once the S3 API serves that key.
    pub async fn start() -> Result<Garage> {
        let bin = garage_binary()?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&bin).await {
                Ok(g) => return Ok(g),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("garage did not start")))
    }

    async fn start_once(bin: &Path) -> Result<Garage> {
        let dir = tempfile::Builder::new()
            .prefix("strata-garage-")
            .tempdir()
            .context("creating garage temp dir")?;
        let mut ports = Vec::new();
        while ports.len() < 3 {
            let p = free_port()?;
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let (rpc_port, s3_port, admin_port) = (ports[0], ports[1], ports[2]);
        let admin_token = random_hex(32);
        let config = format!(
            r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
admin_token = "{admin_token}"
"#,
            meta = dir.path().join("meta").display(),
            data = dir.path().join("data").display(),
            rpc_secret = random_hex(32),
        );
        std::fs::write(dir.path().join("garage.toml"), config).context("writing garage.toml")?;
        let log = File::create(dir.path().join("garage.log")).context("creating garage log")?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(dir.path().join("garage.toml"))
            .arg("server")
            .env("RUST_LOG", "garage=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        // From here on Drop kills the process, whatever happens.
        let mut g = Garage {
            child,
            dir,
            bin: bin.to_path_buf(),
            s3_port,
            admin_port,
            admin_token,
            key_id: String::new(),
            secret: String::new(),
        };
        let give_up = Instant::now() + READY_TIMEOUT;
        g.set_up(give_up)
            .await
            .with_context(|| format!("setting up garage; its log:\n{}", g.log_tail()))?;
        Ok(g)
    }

    async fn set_up(&mut self, give_up: Instant) -> Result<()> {
        let node = self.cli_retrying(&["node", "id", "-q"], give_up).await?;
        let node = node
            .trim()
            .split('@')
            .next()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| anyhow!("`garage node id` printed {node:?}"))?
            .to_string();
        self.cli_retrying(
            &["layout", "assign", "-z", "dc1", "-c", "1G", &node],
            give_up,
        )
        .await?;
        self.cli_retrying(&["layout", "apply", "--version", "1"], give_up)
            .await?;
        let key = self
            .cli_retrying(&["key", "create", "strata-test"], give_up)
            .await?;
        self.key_id = field(&key, "Key ID:")?;
        self.secret = field(&key, "Secret key:")?;
        self.create_bucket(BUCKET).await?;
        // The bucket exists once the CLI says so; wait until the S3 API
        // serves it with the key (a missing object answers 404, which is
        // the answer we want).
        let store = self.object_store();
        let probe = object_store::path::Path::from("strata-harness-probe");
        loop {
            let last = match store.head(&probe).await {
                Err(object_store::Error::NotFound { .. }) => return Ok(()),
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= give_up {
                bail!("S3 API not ready after {READY_TIMEOUT:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `garage -c CONFIG args...` and returns its stdout, or an error
    /// with its stderr.
    pub async fn cli(&self, args: &[&str]) -> Result<String> {
        let out = tokio::process::Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running garage {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "`garage {}` failed with {}: {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// [`Garage::cli`] until it succeeds: right after start the server may
    /// not accept RPC yet, nor have the new layout everywhere.
    async fn cli_retrying(&mut self, args: &[&str], give_up: Instant) -> Result<String> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("garage exited early with {status}");
            }
            match self.cli(args).await {
                Ok(out) => return Ok(out),
                Err(e) if Instant::now() >= give_up => {
                    return Err(e.context(format!("garage not ready after {READY_TIMEOUT:?}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Creates a bucket and gives this Garage's key full rights on it.
    pub async fn create_bucket(&self, name: &str) -> Result<()> {
        self.cli(&["bucket", "create", name]).await?;
        self.allow(name, &self.key_id).await
    }

    /// Grants a key read, write and owner rights on a bucket.
    pub async fn allow(&self, bucket: &str, key_id: &str) -> Result<()> {
        self.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", key_id,
        ])
        .await
        .map(drop)
    }

    /// Adds a key with a chosen id (`GK` + 24 hex digits) and secret (64 hex
    /// digits), e.g. one a test wrote into a credentials file beforehand,
    /// and gives it full rights on [`BUCKET`].
    pub async fn import_key(&self, key_id: &str, secret: &str) -> Result<()> {
        self.cli(&["key", "import", "--yes", "-n", "imported", key_id, secret])
            .await?;
        self.allow(BUCKET, key_id).await
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The admin API endpoint, `http://127.0.0.1:PORT`, and its bearer token.
    pub fn admin(&self) -> (String, &str) {
        (
            format!("http://127.0.0.1:{}", self.admin_port),
            &self.admin_token,
        )
    }

    pub fn region(&self) -> &str {
        REGION
    }

    pub fn bucket(&self) -> &str {
        BUCKET
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The cold-tier URL of `prefix` in [`BUCKET`]:
    /// `s3://strata/PREFIX?endpoint=http://127.0.0.1:PORT&region=garage`.
    pub fn url(&self, prefix: &str) -> String {
        self.url_in(BUCKET, prefix)
    }

    /// As [`Garage::url`] for another bucket.
    pub fn url_in(&self, bucket: &str, prefix: &str) -> String {
        let prefix = prefix.trim_matches('/');
        let sep = if prefix.is_empty() { "" } else { "/" };
        format!(
            "s3://{bucket}{sep}{prefix}?endpoint={}&region={REGION}",
            self.endpoint()
        )
    }

    /// The AWS environment under which a child process finds this Garage's
    /// credentials through the default provider chain.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", self.key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.as_str()),
            ("AWS_REGION", REGION),
            // No instance-metadata lookups if something goes wrong.
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// A client of [`BUCKET`] with this Garage's key, for tests to inspect
    /// or corrupt objects behind the code under test.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.object_store_in(BUCKET)
    }

    /// As [`Garage::object_store`] for another bucket.
    pub fn object_store_in(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        let store = AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region(REGION)
            .with_bucket_name(bucket)
            .with_access_key_id(&self.key_id)
            .with_secret_access_key(&self.secret)
            .build();
        match store {
            Ok(s) => Arc::new(s),
            // Only a malformed endpoint or bucket can fail, and both are ours.
            Err(e) => panic!("building the S3 client of {}: {e}", self.endpoint()),
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("garage.log")
    }

    /// The end of Garage's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// The value after `label` on its line of CLI output.
fn field(output: &str, label: &str) -> Result<String> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow!("no {label:?} in garage output:\n{output}"))
}

impl Drop for Garage {
    fn drop(&mut self) {
        // SIGKILL: nothing in a test server is worth a graceful shutdown.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
