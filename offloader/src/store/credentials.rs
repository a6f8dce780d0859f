//! `aws-config`'s default credential chain (environment, shared profile
//! files, web identity, ECS task role, EC2 instance metadata) as an
//! `object_store` credential provider.
//!
//! The chain itself does not cache: resolving it can mean file reads or
//! HTTP calls to a metadata service, so the adapter keeps the last
//! credentials and asks the chain again only when they are about to expire
//! (static credentials, which never expire, are resolved once).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::CredentialProvider;
use object_store::aws::AwsCredential;

/// Refresh this long before expiry, so that a request signed with the old
/// credentials (and retried for a while) does not outlive them.
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
/// Bound on one resolution of the whole chain (the instance-metadata step
/// waits on timeouts when there is no metadata service).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Words the probe recognises in an error caused by missing credentials.
pub(crate) const NO_CREDENTIALS: &str = "no AWS credentials found";

#[derive(Clone)]
struct Cached {
    credential: Arc<AwsCredential>,
    expiry: Option<SystemTime>,
}

impl Cached {
    fn fresh(&self, now: SystemTime) -> bool {
        self.expiry.is_none_or(|e| {
            e.duration_since(now)
                .is_ok_and(|left| left > REFRESH_BEFORE)
        })
    }

    fn valid(&self, now: SystemTime) -> bool {
        self.expiry.is_none_or(|e| e > now)
    }
}

/// Caching adapter from an `aws-config` provider to `object_store`.
pub struct ChainCredentials {
    chain: SharedCredentialsProvider,
    /// Read on every request; written only after a resolution.
    cached: parking_lot::RwLock<Option<Cached>>,
    /// One resolution at a time; the others wait for its result.
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ChainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials themselves.
        f.debug_struct("ChainCredentials").finish_non_exhaustive()
    }
}

impl ChainCredentials {
    pub fn new(chain: impl ProvideCredentials + 'static) -> ChainCredentials {
        ChainCredentials {
            chain: SharedCredentialsProvider::new(chain),
            cached: parking_lot::RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// The default chain with `region` (used by the STS-based providers) and
    /// optionally a named profile.
    pub async fn default_chain(region: &str, profile: Option<&str>) -> ChainCredentials {
        let mut builder =
            aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                .region(aws_config::Region::new(region.to_string()));
        if let Some(profile) = profile {
            builder = builder.profile_name(profile);
        }
        ChainCredentials::new(builder.build().await)
    }

    fn cached(&self, fresh_only: bool) -> Option<Arc<AwsCredential>> {
        let now = SystemTime::now();
        self.cached
            .read()
            .as_ref()
            .filter(|c| {
                if fresh_only {
                    c.fresh(now)
                } else {
                    c.valid(now)
                }
            })
            .map(|c| c.credential.clone())
    }

    async fn resolve(&self) -> Result<Credentials, String> {
        match tokio::time::timeout(RESOLVE_TIMEOUT, self.chain.provide_credentials()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(error_chain(&e)),
            Err(_) => Err(format!(
                "resolving credentials took longer than {RESOLVE_TIMEOUT:?}"
            )),
        }
    }
}

#[async_trait]
impl CredentialProvider for ChainCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        if let Some(c) = self.cached(true) {
            return Ok(c);
        }
        let _one_at_a_time = self.refresh.lock().await;
        // Someone else may have refreshed while we waited.
        if let Some(c) = self.cached(true) {
            return Ok(c);
        }
        match self.resolve().await {
            Ok(creds) => {
                let credential = Arc::new(AwsCredential {
                    key_id: creds.access_key_id().to_string(),
                    secret_key: creds.secret_access_key().to_string(),
                    token: creds.session_token().map(str::to_string),
                });
                *self.cached.write() = Some(Cached {
                    credential: credential.clone(),
                    expiry: creds.expiry(),
                });
                Ok(credential)
            }
            Err(reason) => {
                // Early refresh failed: keep using what still works.
                if let Some(c) = self.cached(false) {
                    tracing::warn!(%reason, "refreshing object store credentials failed; using the current ones until they expire");
                    return Ok(c);
                }
                Err(object_store::Error::Unauthenticated {
                    path: String::new(),
                    source: format!(
                        "{NO_CREDENTIALS} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                         or a profile in ~/.aws/credentials, or run with an instance/task role): \
                         {reason}"
                    )
                    .into(),
                })
            }
        }
    }
}

/// An error and its sources on one line (the SDK's top-level messages are
/// terse; the cause is in the sources).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_credential_types::provider::{error::CredentialsError, future};

    use super::*;

    /// Hands out credentials numbered by call, expiring `ttl` from now, or
    /// fails once `fail_after` calls have been made.
    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        ttl: Option<Duration>,
        fail_after: usize,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n >= self.fail_after {
                return future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
                    "nothing configured",
                )));
            }
            let mut b = Credentials::builder()
                .access_key_id(format!("AKID{n}"))
                .secret_access_key("secret")
                .provider_name("test");
            if let Some(ttl) = self.ttl {
                b = b.expiry(SystemTime::now() + ttl);
            }
            future::ProvideCredentials::ready(Ok(b.build()))
        }
    }

    fn provider(ttl: Option<Duration>, fail_after: usize) -> (ChainCredentials, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let p = ChainCredentials::new(Counting {
            calls: calls.clone(),
            ttl,
            fail_after,
        });
        (p, calls)
    }

    #[tokio::test]
    async fn static_credentials_are_resolved_once() {
        let (p, calls) = provider(None, usize::MAX);
        for _ in 0..5 {
            assert_eq!(p.get_credential().await.unwrap().key_id, "AKID0");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn expiring_credentials_are_refreshed() {
        // Expires within the refresh margin: every request asks again.
        let (p, calls) = provider(Some(Duration::from_secs(60)), usize::MAX);
        assert_eq!(p.get_credential().await.unwrap().key_id, "AKID0");
        assert_eq!(p.get_credential().await.unwrap().key_id, "AKID1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Long-lived: cached.
        let (p, calls) = provider(Some(Duration::from_secs(3600)), usize::MAX);
        p.get_credential().await.unwrap();
        p.get_credential().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failed_refresh_keeps_still_valid_credentials() {
        let (p, _) = provider(Some(Duration::from_secs(60)), 1);
        assert_eq!(p.get_credential().await.unwrap().key_id, "AKID0");
        assert_eq!(p.get_credential().await.unwrap().key_id, "AKID0");
    }

    #[tokio::test]
    async fn no_credentials_is_an_explained_error() {
        let (p, _) = provider(None, 0);
        let err = p.get_credential().await.unwrap_err();
        assert!(matches!(err, object_store::Error::Unauthenticated { .. }));
        let text = err.to_string();
        assert!(text.contains(NO_CREDENTIALS), "{text}");
        assert!(text.contains("AWS_ACCESS_KEY_ID"), "{text}");
        assert!(text.contains("nothing configured"), "{text}");
    }
}
