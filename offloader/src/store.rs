//! Object stores chosen by URL.
//!
//! - `file:///abs/dir`: a local directory (created if missing), the
//!   embedded default of `strata standalone`;
//! - `s3://bucket[/prefix]?endpoint=http://host:port&region=R[&virtual_hosted=true][&profile=P]`:
//!   any S3-compatible store (MinIO, Garage, AWS). Path-style addressing
//!   unless `virtual_hosted=true`; plain HTTP when the endpoint says `http`;
//!   without `endpoint` the store is AWS itself. The region defaults to
//!   `AWS_REGION`, then `AWS_DEFAULT_REGION`, then `us-east-1`.
//!
//! Credentials never appear in the URL: they come from `aws-config`'s
//! default provider chain (see [`credentials`]), so the same deployment
//! works with environment variables, a profile, web identity or an
//! instance role. [`ColdStore::url`] is the canonical URL, which is what
//! ledger metadata records to find the objects again.
//!
//! [`ColdStore::probe`] exercises every operation once at start-up and
//! names the likely cause of a failure (see [`probe`]).

pub mod credentials;
mod probe;
pub mod url;

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AwsCredentialProvider};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::error::{OffloadError, Result};
pub use probe::MIN_PART;
pub use url::{Location, S3Location};

/// How Strata talks to HTTP object stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Limit on one HTTP request, body included: a multipart part of 8 MiB
    /// needs about 0.3 MiB/s to fit in the default. Raise it for slow links.
    pub request_timeout: Duration,
    /// Sign S3 request bodies (SigV4 `x-amz-content-sha256` with the body's
    /// SHA-256) instead of sending `UNSIGNED-PAYLOAD`. Off by default: the
    /// hash costs a pass over every uploaded byte here and another in the
    /// store, and protects nothing the offloader does not check anyway: every
    /// object is read back and each block's CRC32C compared before a ledger
    /// counts as offloaded (TLS guards the bytes in flight on `https://`).
    /// On for stores that refuse unsigned payloads.
    pub sign_payload: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            request_timeout: Duration::from_secs(30),
            sign_payload: false,
        }
    }
}

/// An object store chosen by URL, with the key prefix every Strata object
/// goes under.
#[derive(Clone)]
pub struct ColdStore {
    store: Arc<dyn ObjectStore>,
    /// The same store with short timeouts and few retries, so that the
    /// start-up probe fails fast on a store that cannot work.
    probe_store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    bucket: Option<String>,
    endpoint: Option<String>,
    options: StoreOptions,
}

impl std::fmt::Debug for ColdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdStore").field("url", &self.url).finish()
    }
}

/// How hard the client tries on normal traffic versus in the probe.
struct ClientProfile {
    connect_timeout: Duration,
    /// Whole request, body included.
    request_timeout: Duration,
    retry: RetryConfig,
    sign_payload: bool,
}

impl ClientProfile {
    /// Normal traffic: retries with backoff ride out a restarting server or
    /// a throttling burst; the reader and uploader add their own retries
    /// above this for whole operations.
    fn production(options: &StoreOptions) -> ClientProfile {
        ClientProfile {
            connect_timeout: Duration::from_secs(5),
            request_timeout: options.request_timeout,
            retry: RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: 5,
                // Room for a retry after a request that timed out.
                retry_timeout: Duration::from_secs(60).max(options.request_timeout * 3),
            },
            sign_payload: options.sign_payload,
        }
    }

    /// The probe: a store that does not answer promptly is reported, not
    /// waited for. It signs as normal traffic does, so it finds a store that
    /// refuses the configured kind of payload.
    fn probe(options: &StoreOptions) -> ClientProfile {
        ClientProfile {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(20),
            retry: RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_millis(500),
                    base: 2.0,
                },
                max_retries: 1,
                retry_timeout: Duration::from_secs(10),
            },
            sign_payload: options.sign_payload,
        }
    }

    fn client_options(&self, allow_http: bool) -> ClientOptions {
        ClientOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_timeout(self.request_timeout)
            .with_pool_idle_timeout(Duration::from_secs(60))
            .with_pool_max_idle_per_host(64)
            .with_allow_http(allow_http)
    }
}

impl ColdStore {
    /// Opens the store a URL names (see the module docs for the forms).
    /// Nothing is sent to the store here: [`ColdStore::probe`] checks it.
    /// Unknown query keys and malformed URLs are [`OffloadError::Config`]
    /// errors naming the problem.
    pub async fn open(url: &str) -> Result<ColdStore> {
        ColdStore::open_with(url, StoreOptions::default()).await
    }

    /// [`ColdStore::open`] with other [`StoreOptions`] (HTTP stores only).
    pub async fn open_with(url: &str, options: StoreOptions) -> Result<ColdStore> {
        let env_region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        let location = Location::parse(url, env_region)?;
        let canonical = location.canonical();
        match location {
            Location::Local { dir } => {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    OffloadError::Config(format!(
                        "cannot create cold-tier directory {}: {e}",
                        dir.display()
                    ))
                })?;
                let fs = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| {
                        OffloadError::Config(format!(
                            "cannot use cold-tier directory {}: {e}",
                            dir.display()
                        ))
                    })?
                    // Deleting a ledger's objects leaves no empty directories.
                    .with_automatic_cleanup(true);
                let store: Arc<dyn ObjectStore> = Arc::new(fs);
                Ok(ColdStore {
                    probe_store: store.clone(),
                    store,
                    prefix: Path::default(),
                    url: canonical,
                    bucket: None,
                    endpoint: None,
                    options,
                })
            }
            Location::S3(s3) => {
                let credentials: AwsCredentialProvider = Arc::new(
                    credentials::ChainCredentials::default_chain(&s3.region, s3.profile.as_deref())
                        .await,
                );
                let store = build_s3(&s3, &credentials, &ClientProfile::production(&options))?;
                let probe_store = build_s3(&s3, &credentials, &ClientProfile::probe(&options))?;
                Ok(ColdStore {
                    store,
                    probe_store,
                    prefix: s3.prefix,
                    url: canonical,
                    bucket: Some(s3.bucket),
                    endpoint: Some(
                        s3.endpoint
                            .unwrap_or_else(|| format!("AWS S3 in {}", s3.region)),
                    ),
                    options,
                })
            }
        }
    }

    /// Wraps an existing store (tests wrap one in a fault injector); `url`
    /// is only a label and `prefix` is split on `/`.
    pub fn from_parts(url: &str, store: Arc<dyn ObjectStore>, prefix: &str) -> ColdStore {
        ColdStore {
            probe_store: store.clone(),
            store,
            prefix: Path::from(prefix),
            url: url.to_string(),
            bucket: None,
            endpoint: None,
            options: StoreOptions::default(),
        }
    }

    /// The options it was opened with; other stores the server opens
    /// (namespaces' own buckets) take the same.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The URL without any secret, canonical: ledger metadata stores this
    /// string to find the objects again.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `prefix/rel` as an object path (`rel` is split on `/`; empty
    /// segments are dropped).
    pub fn path(&self, rel: &str) -> Path {
        if self.prefix.is_root() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.prefix.as_ref()))
        }
    }

    /// Start-up probe under `prefix/.strata-probe/<uuid>/`: put, get (bytes
    /// equal), ranged get, a two-part multipart upload (5 MiB, the S3
    /// minimum, and a short last part; then its size read back), delete
    /// (both objects, then checked gone). Stops at the first failing step
    /// with [`OffloadError::Probe`], whose reason names the likely cause
    /// (missing bucket, wrong or missing credentials, unreachable endpoint,
    /// permission denied). Always tries to remove what it wrote; bounded in
    /// time by short client timeouts, one retry, and a limit per step.
    pub async fn probe(&self) -> Result<()> {
        probe::run(&probe::Target {
            store: self.probe_store.as_ref(),
            prefix: &self.prefix,
            bucket: self.bucket.as_deref(),
            endpoint: self.endpoint.as_deref(),
        })
        .await
    }
}

fn build_s3(
    s3: &S3Location,
    credentials: &AwsCredentialProvider,
    profile: &ClientProfile,
) -> Result<Arc<dyn ObjectStore>> {
    let allow_http = s3
        .endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        .with_region(&s3.region)
        .with_credentials(credentials.clone())
        .with_virtual_hosted_style_request(s3.virtual_hosted)
        .with_client_options(profile.client_options(allow_http))
        .with_retry(profile.retry.clone())
        .with_unsigned_payload(!profile.sign_payload);
    if let Some(endpoint) = &s3.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let store = builder
        .build()
        .map_err(|e| OffloadError::Config(format!("cannot set up the S3 client: {e}")))?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;

    use super::*;

    #[tokio::test]
    async fn file_store_is_created_and_probes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cold").join("nested");
        let url = format!("file://{}/", dir.display());
        let cs = ColdStore::open(&url).await.unwrap();
        assert!(dir.is_dir());
        assert_eq!(cs.url(), format!("file://{}", dir.display()));
        assert!(cs.prefix().is_root());
        cs.probe().await.unwrap();
        // The probe leaves nothing behind.
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert!(left.is_empty(), "probe left {left:?}");
        // Objects land where `path` says.
        let p = cs.path("t/ns/ledger-1/index");
        cs.store().put(&p, b"x".as_slice().into()).await.unwrap();
        assert!(dir.join("t/ns/ledger-1/index").is_file());
    }

    #[tokio::test]
    async fn open_refuses_bad_urls() {
        for url in ["s3://bkt?nope=1", "ftp://x/y", "s3://bkt?endpoint=ftp://h"] {
            match ColdStore::open(url).await {
                Err(OffloadError::Config(_)) => {}
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn s3_url_is_canonical_without_opening_a_connection() {
        let cs = ColdStore::open("s3://bkt//pre/fix/?region=r1&endpoint=http://127.0.0.1:1/")
            .await
            .unwrap();
        assert_eq!(
            cs.url(),
            "s3://bkt/pre/fix?endpoint=http://127.0.0.1:1&region=r1"
        );
        assert_eq!(cs.prefix().as_ref(), "pre/fix");
        assert_eq!(cs.path("a/b").as_ref(), "pre/fix/a/b");
    }

    #[test]
    fn from_parts_paths() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let cs = ColdStore::from_parts("mem://x", store.clone(), "a/b");
        assert_eq!(cs.url(), "mem://x");
        assert_eq!(cs.path("c").as_ref(), "a/b/c");
        let root = ColdStore::from_parts("mem://x", store, "");
        assert_eq!(root.path("c/d").as_ref(), "c/d");
    }
}
