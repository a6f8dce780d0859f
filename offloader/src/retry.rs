//! Retries of single object-store requests: a per-attempt timeout (so a hung
//! store cannot hang an offload or a read forever), exponential backoff with
//! jitter, and retrying only what may succeed next time.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::path::Path;
use object_store::retry::{RetryContext, RetryFailure};
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt};
use rand::Rng;
use tokio::sync::Semaphore;

use crate::error::{OffloadError, Result};
use crate::stats::IoSink;

/// How one request is retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub max_retries: u32,
    /// Limit on one attempt (including reading the body).
    pub request_timeout: Duration,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            request_timeout: Duration::from_secs(30),
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Limit on a request the store retries itself (a multipart part, or
    /// its completion): every attempt may take `request_timeout` and
    /// back off in between. A limit of one `request_timeout` would end the
    /// part just as the store's own timeout fires, before its retry
    /// (a store that stalled for 29 s once failed a whole offload so).
    pub fn retried_deadline(&self) -> Duration {
        self.request_timeout * (self.max_retries + 1) + self.max_backoff * self.max_retries
    }

    /// Delay before retry number `attempt` (1-based): exponential, capped,
    /// with "equal jitter" so that many clients retrying together spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_backoff);
        let half = capped / 2;
        let jitter = rand::rng().random_range(0..=half.as_micros() as u64);
        half + Duration::from_micros(jitter)
    }
}

/// Whether a failed request may succeed if repeated. Stores report server
/// errors (5xx) and connection failures as `Generic` (after their own
/// retries); everything that names a definite answer (not found, a failed
/// precondition, denied) will not change by asking again.
pub fn is_transient(e: &object_store::Error) -> bool {
    match e {
        object_store::Error::Generic { .. } => !is_range_not_satisfiable(e),
        object_store::Error::JoinError { .. } => true,
        _ => false,
    }
}

/// S3's answer (416) to a range that starts past the end of the object. The
/// client reports it only as text inside a `Generic` error, so this is a
/// best guess; [`get_range`] does not depend on it for correctness (it
/// checks the object's size once retries are exhausted), only for not
/// retrying a definite answer.
fn is_range_not_satisfiable(e: &object_store::Error) -> bool {
    e.to_string().contains("416 Range Not Satisfiable")
}

pub(crate) fn timeout_error(op: &str, after: Duration) -> object_store::Error {
    object_store::Error::Generic {
        store: "strata",
        source: format!("{op} did not finish within {after:?}").into(),
    }
}

/// Runs `attempt` until it succeeds, fails for good, or retries run out.
/// With a `limiter`, each attempt holds one permit (released while backing
/// off, so a retrying request does not starve others).
pub async fn with_retry<T, F, Fut>(
    policy: &RetryPolicy,
    io: &IoSink,
    op: &'static str,
    key: &str,
    limiter: Option<&Semaphore>,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, object_store::Error>>,
{
    let mut tries = 0u32;
    loop {
        let permit = match limiter {
            Some(s) => Some(
                s.acquire()
                    .await
                    .map_err(|_| OffloadError::Other("request limiter closed".into()))?,
            ),
            None => None,
        };
        let res = tokio::time::timeout(policy.request_timeout, attempt()).await;
        drop(permit);
        let err = match res {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e,
            Err(_) => timeout_error(op, policy.request_timeout),
        };
        if !is_transient(&err) || tries >= policy.max_retries {
            return Err(OffloadError::store(op, key, err));
        }
        tries += 1;
        io.retry();
        tracing::debug!(op, key, attempt = tries, error = %err, "retrying object store request");
        tokio::time::sleep(policy.backoff(tries)).await;
    }
}

/// One ranged GET with retries; a body of the wrong length is corrupt data
/// (a truncated object or response), not a transient failure.
pub(crate) async fn get_range(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    range: Range<u64>,
    policy: &RetryPolicy,
    io: &IoSink,
    limiter: Option<&Semaphore>,
) -> Result<Bytes> {
    let (bytes, _) = get_range_crcs(store, path, range, &[], policy, io, limiter).await?;
    Ok(bytes)
}

/// [`get_range`], also returning the CRC32C of each consecutive piece of
/// the body `lens` describes (blocks), computed while the body is copied
/// into its buffer: each byte is read once, hot, instead of once more by a
/// later check. Pieces the body does not cover get no CRC.
pub(crate) async fn get_range_crcs(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    range: Range<u64>,
    lens: &[u32],
    policy: &RetryPolicy,
    io: &IoSink,
    limiter: Option<&Semaphore>,
) -> Result<(Bytes, Vec<u32>)> {
    let key = path.as_ref();
    let want = range.end - range.start;
    let got = with_retry(policy, io, "get", key, limiter, || {
        fetch_body(store, path, range.clone(), lens)
    })
    .await;
    let (bytes, crcs) = match got {
        Ok(b) => b,
        Err(e) => {
            return Err(past_the_end(store, path, &range, policy, io)
                .await
                .unwrap_or(e));
        }
    };
    io.get(bytes.len() as u64);
    if bytes.len() as u64 != want {
        return Err(OffloadError::corrupt(
            key,
            format!(
                "GET of bytes {}..{} returned {} bytes, not {want}",
                range.start,
                range.end,
                bytes.len()
            ),
        ));
    }
    Ok((bytes, crcs))
}

/// One attempt of [`get_range_crcs`].
async fn fetch_body(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    range: Range<u64>,
    lens: &[u32],
) -> object_store::Result<(Bytes, Vec<u32>)> {
    let want = (range.end - range.start) as usize;
    let opts = GetOptions {
        range: Some(GetRange::Bounded(range)),
        ..GetOptions::default()
    };
    let res = store.get_opts(path, opts).await?;
    let mut crcs = BlockCrcs::new(lens);
    if lens.is_empty() || !matches!(res.payload, GetResultPayload::Stream(_)) {
        // A local file is read whole in one go.
        let bytes = res.bytes().await?;
        crcs.update(&bytes);
        return Ok((bytes, crcs.finish()));
    }
    let mut body = res.into_stream();
    let mut buf = BytesMut::with_capacity(want);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        // Small steps, so the CRC reads what the copy just left in cache.
        for piece in chunk.chunks(32 << 10) {
            buf.extend_from_slice(piece);
            crcs.update(piece);
        }
        // A body longer than asked is not read on (the caller reports the
        // wrong length as corrupt data).
        if buf.len() > want {
            break;
        }
    }
    Ok((buf.freeze(), crcs.finish()))
}

/// CRC32Cs of consecutive pieces of a byte stream.
struct BlockCrcs<'a> {
    lens: &'a [u32],
    done: Vec<u32>,
    /// Bytes of the current piece still to come, and its CRC so far.
    left: usize,
    crc: u32,
}

impl<'a> BlockCrcs<'a> {
    fn new(lens: &'a [u32]) -> Self {
        BlockCrcs {
            lens,
            done: Vec::with_capacity(lens.len()),
            left: lens.first().map_or(0, |l| *l as usize),
            crc: 0,
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.done.len() < self.lens.len() {
            let n = self.left.min(data.len());
            self.crc = strata_proto::crc::crc32c_append(self.crc, &data[..n]);
            self.left -= n;
            data = &data[n..];
            if self.left == 0 {
                self.done.push(self.crc);
                self.crc = 0;
                self.left = self.lens.get(self.done.len()).map_or(0, |l| *l as usize);
            }
        }
    }

    fn finish(self) -> Vec<u32> {
        self.done
    }
}

/// After a ranged GET failed for good: is the object shorter than the range
/// (a truncated object, which S3 answers with 416)? That is corrupt data,
/// not a failing store, and is reported so. One HEAD, not retried: if it
/// fails too, the GET's own error stands.
async fn past_the_end(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    range: &Range<u64>,
    policy: &RetryPolicy,
    io: &IoSink,
) -> Option<OffloadError> {
    let meta = tokio::time::timeout(policy.request_timeout, store.head(path))
        .await
        .ok()?
        .ok()?;
    io.get(0);
    (meta.size < range.end).then(|| {
        OffloadError::corrupt(
            path,
            format!(
                "object is {} bytes, shorter than its record says: bytes {}..{} are past its end",
                meta.size, range.start, range.end
            ),
        )
    })
}

/// Retry policy handed to HTTP stores for multipart parts, which cannot be
/// retried from outside (a repeated `put_part` would be a new part).
#[derive(Debug)]
pub(crate) struct PartRetry {
    pub policy: RetryPolicy,
    pub io: IoSink,
}

#[async_trait]
impl object_store::retry::RetryPolicy for PartRetry {
    async fn retry(&self, ctx: RetryContext) -> bool {
        let transient = match ctx.failure {
            RetryFailure::Status(s) => {
                s.is_server_error() || s.as_u16() == 429 || s.as_u16() == 408
            }
            RetryFailure::Transport(_) => true,
            _ => false,
        };
        if !transient || ctx.attempt > self.policy.max_retries as usize {
            return false;
        }
        self.io.retry();
        tokio::time::sleep(self.policy.backoff(ctx.attempt as u32)).await;
        true
    }
}

pub(crate) fn part_retry(
    policy: &RetryPolicy,
    io: &IoSink,
) -> Arc<dyn object_store::retry::RetryPolicy> {
    Arc::new(PartRetry {
        policy: policy.clone(),
        io: io.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn block_crcs_match_whatever_the_chunking() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let lens = [1000u32, 1, 4999, 3000, 1000];
        let mut want = Vec::new();
        let mut at = 0;
        for l in lens {
            want.push(strata_proto::crc::crc32c(&data[at..at + l as usize]));
            at += l as usize;
        }
        for chunk in [1, 7, 999, 1000, 1001, 4096, 10_000] {
            let mut c = BlockCrcs::new(&lens);
            for piece in data.chunks(chunk) {
                c.update(piece);
            }
            assert_eq!(c.finish(), want, "chunks of {chunk}");
        }
        // A short body: only the whole pieces get a CRC.
        let mut c = BlockCrcs::new(&lens);
        c.update(&data[..6500]);
        assert_eq!(c.finish(), want[..3]);
        // No pieces asked: nothing computed.
        let mut c = BlockCrcs::new(&[]);
        c.update(&data);
        assert!(c.finish().is_empty());
    }

    #[tokio::test]
    async fn ranged_gets_return_the_range_and_its_block_crcs() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let path = Path::from("a/data");
        let data = Bytes::from((0..300_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        store.put(&path, data.clone().into()).await.unwrap();
        let policy = RetryPolicy::default();
        let (got, crcs) = get_range_crcs(
            &store,
            &path,
            1000..201_000,
            &[100_000, 100_000],
            &policy,
            &IoSink::default(),
            None,
        )
        .await
        .unwrap();
        assert_eq!(got, data.slice(1000..201_000));
        assert_eq!(
            crcs,
            [
                strata_proto::crc::crc32c(&data[1000..101_000]),
                strata_proto::crc::crc32c(&data[101_000..201_000])
            ]
        );
    }

    fn generic() -> object_store::Error {
        object_store::Error::Generic {
            store: "t",
            source: "503".into(),
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            request_timeout: Duration::from_millis(100),
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
        }
    }

    #[tokio::test]
    async fn transient_failures_and_timeouts_are_retried() {
        let calls = AtomicU32::new(0);
        let stats = crate::IoStats::new();
        let io = IoSink(vec![stats.clone()]);
        let v = with_retry(&fast(), &io, "get", "k", None, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(generic()),
                1 => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(0)
                }
                n => Ok(n),
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 2);
        assert_eq!(stats.snapshot().retries, 2);
    }

    #[tokio::test]
    async fn definite_answers_are_not_retried_and_retries_run_out() {
        let calls = AtomicU32::new(0);
        let io = IoSink::default();
        let e = with_retry(&fast(), &io, "get", "k", None, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(object_store::Error::NotFound {
                path: "k".into(),
                source: "gone".into(),
            })
        })
        .await
        .unwrap_err();
        assert!(matches!(
            e,
            OffloadError::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        calls.store(0, Ordering::SeqCst);
        let e = with_retry(&fast(), &io, "put", "k", None, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(generic())
        })
        .await
        .unwrap_err();
        assert!(matches!(e, OffloadError::Store { op: "put", .. }));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn reads_past_the_end_of_a_short_object_are_corrupt() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let p = Path::from("data");
        store
            .put(&p, Bytes::from_static(b"0123456789").into())
            .await
            .unwrap();
        let io = IoSink::default();
        for range in [4..16, 12..16] {
            let e = get_range(&store, &p, range.clone(), &fast(), &io, None)
                .await
                .unwrap_err();
            assert!(e.is_corrupt(), "{range:?}: {e}");
        }
        // A missing object is not called corrupt here (verification does).
        let e = get_range(&store, &Path::from("gone"), 0..4, &fast(), &io, None)
            .await
            .unwrap_err();
        assert!(!e.is_corrupt(), "{e}");
        assert_eq!(
            get_range(&store, &p, 2..4, &fast(), &io, None)
                .await
                .unwrap()
                .as_ref(),
            b"23"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..fast()
        };
        for a in 1..40 {
            let d = p.backoff(a);
            assert!(d <= Duration::from_millis(1000), "{a}: {d:?}");
        }
        assert!(p.backoff(1) >= Duration::from_millis(50));
        assert!(p.backoff(10) >= Duration::from_millis(500));
    }
}
