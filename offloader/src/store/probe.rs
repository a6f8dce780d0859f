//! The start-up probe: one round of every operation the cold tier uses,
//! under `prefix/.strata-probe/<uuid>/`, so that a misconfigured store is
//! reported when the service starts, in words that say what to fix, rather
//! than as the first offload failing hours later.

use std::time::Duration;

use bytes::Bytes;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::credentials::NO_CREDENTIALS;
use crate::error::{OffloadError, Result};

/// The smallest part S3 accepts in a multipart upload (all but the last).
pub const MIN_PART: usize = 5 * 1024 * 1024;
/// Bound on each step, on top of the client's own timeouts and retries.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
const SMALL_LEN: usize = 4096;
const LAST_PART_LEN: usize = 1000;

/// What the probe knows about the store, for its messages.
pub(super) struct Target<'a> {
    pub store: &'a dyn ObjectStore,
    pub prefix: &'a Path,
    pub bucket: Option<&'a str>,
    pub endpoint: Option<&'a str>,
}

/// Why a step failed.
enum StepError {
    Store(object_store::Error),
    /// The store answered, with the wrong bytes or size.
    Mismatch(String),
    TimedOut,
}

impl From<object_store::Error> for StepError {
    fn from(e: object_store::Error) -> Self {
        StepError::Store(e)
    }
}

pub(super) async fn run(t: &Target<'_>) -> Result<()> {
    let base = t
        .prefix
        .clone()
        .join(".strata-probe")
        .join(uuid::Uuid::new_v4().to_string().as_str());
    let small_path = base.clone().join("small");
    let big_path = base.join("multipart");
    let small = pattern(SMALL_LEN, 7);
    let result = steps(t.store, &small_path, &big_path, &small).await;
    if result.is_err() {
        // Leave nothing behind, whatever was written before the failure.
        for p in [&small_path, &big_path] {
            let _ = tokio::time::timeout(STEP_TIMEOUT, t.store.delete(p)).await;
        }
    }
    result.map_err(|(step, e)| OffloadError::Probe {
        step,
        reason: explain(t, step, e),
    })
}

async fn steps(
    store: &dyn ObjectStore,
    small_path: &Path,
    big_path: &Path,
    small: &Bytes,
) -> Result<(), (&'static str, StepError)> {
    step("put", async {
        store.put(small_path, small.clone().into()).await?;
        Ok(())
    })
    .await?;
    step("get", async {
        let got = store.get(small_path).await?.bytes().await?;
        if got != *small {
            return Err(StepError::Mismatch(format!(
                "read back {} bytes that differ from the {} written",
                got.len(),
                small.len()
            )));
        }
        Ok(())
    })
    .await?;
    step("ranged get", async {
        let got = store.get_range(small_path, 100..300).await?;
        if got != small.slice(100..300) {
            return Err(StepError::Mismatch(format!(
                "bytes 100..300 read back as {} different bytes",
                got.len()
            )));
        }
        Ok(())
    })
    .await?;
    step("multipart", async {
        let mut upload = store.put_multipart(big_path).await?;
        let parts = [pattern(MIN_PART, 11), pattern(LAST_PART_LEN, 13)];
        for part in parts {
            if let Err(e) = upload.put_part(PutPayload::from(part)).await {
                let _ = upload.abort().await;
                return Err(e.into());
            }
        }
        if let Err(e) = upload.complete().await {
            let _ = upload.abort().await;
            return Err(e.into());
        }
        let size = store.head(big_path).await?.size;
        let want = (MIN_PART + LAST_PART_LEN) as u64;
        if size != want {
            return Err(StepError::Mismatch(format!(
                "the completed upload is {size} bytes, not {want}"
            )));
        }
        Ok(())
    })
    .await?;
    step("delete", async {
        for p in [small_path, big_path] {
            store.delete(p).await?;
        }
        for p in [small_path, big_path] {
            match store.head(p).await {
                Err(object_store::Error::NotFound { .. }) => {}
                Ok(_) => {
                    return Err(StepError::Mismatch(format!(
                        "{p} still exists after it was deleted"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    })
    .await
}

async fn step(
    name: &'static str,
    f: impl Future<Output = Result<(), StepError>>,
) -> Result<(), (&'static str, StepError)> {
    match tokio::time::timeout(STEP_TIMEOUT, f).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err((name, e)),
        Err(_) => Err((name, StepError::TimedOut)),
    }
}

/// `len` bytes that are not all alike, so a misplaced range shows.
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// The likely cause of a failed step, in words a user acts on, followed by
/// the store's own message.
fn explain(t: &Target<'_>, step: &'static str, e: StepError) -> String {
    let endpoint = t.endpoint.unwrap_or("the object store");
    let bucket = t
        .bucket
        .map_or_else(|| "the bucket".to_string(), |b| format!("bucket {b:?}"));
    let e = match e {
        StepError::Mismatch(m) => {
            return format!("the store does not keep data faithfully: {m}");
        }
        StepError::TimedOut => {
            return format!(
                "{endpoint} did not complete the {step} within {STEP_TIMEOUT:?}: \
                 is the endpoint reachable, and not overloaded?"
            );
        }
        StepError::Store(e) => e,
    };
    let text = chain_text(&e);
    let has = |s: &str| text.contains(s);
    // Garage says `AccessDenied` with a message, not the specific S3 codes.
    let lower = text.to_ascii_lowercase();
    let cause = if has(NO_CREDENTIALS) {
        "no credentials: none were found in the AWS provider chain \
         (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile)"
            .to_string()
    } else if let Some(kind) = http_kind(&e) {
        match kind {
            HttpErrorKind::Connect if has("dns error") || has("lookup") => {
                format!("endpoint unreachable: the host name of {endpoint} does not resolve (DNS)")
            }
            HttpErrorKind::Connect => format!(
                "endpoint unreachable: cannot connect to {endpoint} \
                 (connection refused or no route: is the server running, and the port right?)"
            ),
            HttpErrorKind::Timeout => {
                format!("endpoint unreachable: {endpoint} did not answer in time")
            }
            _ => format!("the connection to {endpoint} failed"),
        }
    } else if has("NoSuchBucket") {
        format!("{bucket} does not exist: create it, or fix the bucket name in the URL")
    } else if has("InvalidAccessKeyId") || lower.contains("no such key:") {
        "wrong credentials: the store does not know this access key id".to_string()
    } else if has("SignatureDoesNotMatch") || lower.contains("invalid signature") {
        "wrong credentials: the secret access key does not match the access key id".to_string()
    } else if matches!(e, object_store::Error::Unauthenticated { .. }) {
        "wrong credentials: the store refused them (401)".to_string()
    } else if matches!(e, object_store::Error::PermissionDenied { .. }) || has("AccessDenied") {
        format!(
            "permission denied: the credentials may not {step} objects in {bucket} \
             (grant read, write and delete on it)"
        )
    } else if matches!(e, object_store::Error::NotFound { .. })
        && matches!(step, "put" | "multipart")
    {
        // A write cannot miss an object: what is missing is the bucket.
        format!("{bucket} does not exist: create it, or fix the bucket name in the URL")
    } else if has("redirect") {
        "the store redirected the request: the region is probably wrong".to_string()
    } else {
        "the store refused the request".to_string()
    };
    format!("{cause} ({text})")
}

/// The HTTP-level failure kind, if the request never got an answer.
fn http_kind(e: &object_store::Error) -> Option<HttpErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<HttpError>() {
            return Some(h.kind());
        }
        source = s.source();
    }
    None
}

fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        // object_store repeats its sources in its own messages.
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        source = s.source();
    }
    out
}
