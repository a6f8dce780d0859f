//! Retries of single object-store requests: a per-attempt timeout (so a hung
//! store cannot hang an offload or a read forever), exponential backoff with
//! jitter, and retrying only what may succeed next time.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    let key = path.as_ref();
    let got = with_retry(policy, io, "get", key, limiter, || async {
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        store.get_opts(path, opts).await?.bytes().await
    })
    .await;
    let bytes = or_past_the_end(got, store, path, &range, policy, io).await?;
    io.get(bytes.len() as u64);
    check_length(key, &range, bytes.len() as u64)?;
    Ok(bytes)
}

fn check_length(key: &str, range: &Range<u64>, got: u64) -> Result<()> {
    let want = range.end - range.start;
    if got == want {
        return Ok(());
    }
    Err(OffloadError::corrupt(
        key,
        format!(
            "GET of bytes {}..{} returned {got} bytes, not {want}",
            range.start, range.end
        ),
    ))
}

/// Where [`get_blocks`] hands each block: its position among the blocks
/// asked for, its bytes and its CRC32C.
pub(crate) type OnBlock<'a> = &'a (dyn Fn(usize, Bytes, u32) + Sync);

/// The blocks a [`get_blocks`] range is cut into (their lengths, in order),
/// and where each goes once whole.
#[derive(Clone, Copy)]
pub(crate) struct Blocks<'a> {
    pub lens: &'a [u32],
    pub on_block: OnBlock<'a>,
}

/// [`get_range`] for a range cut into consecutive blocks (`blocks.lens`). Each
/// block goes to `blocks.on_block` as soon as its last byte is in, so whoever waits
/// for the first blocks of a long GET does not wait for the whole body. It
/// comes in an allocation of its own, with its CRC32C, both made in the one
/// copy of the body out of the response (each byte read once, hot). Separate
/// allocations let every block be cached and freed on its own: slices of one
/// body would keep all of it in memory for as long as any one of its blocks
/// is cached, many times what the cache accounts for.
///
/// An attempt that fails part-way is retried from the first block not handed
/// over, so no block is handed over twice. A body shorter or longer than
/// the range is corrupt data, reported after the blocks that did come.
pub(crate) async fn get_blocks(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    range: Range<u64>,
    blocks: Blocks<'_>,
    policy: &RetryPolicy,
    io: &IoSink,
    limiter: Option<&Semaphore>,
) -> Result<()> {
    let key = path.as_ref();
    // Blocks handed over so far, over all attempts.
    let sent = AtomicUsize::new(0);
    let got = with_retry(policy, io, "get", key, limiter, || {
        fetch_blocks(store, path, range.clone(), blocks, &sent)
    })
    .await;
    let received = or_past_the_end(got, store, path, &range, policy, io).await?;
    io.get(received);
    check_length(key, &range, received)
}

/// One attempt of [`get_blocks`], from the first block not handed over yet;
/// returns the bytes of the range received in all (earlier attempts' blocks
/// included).
async fn fetch_blocks(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    range: Range<u64>,
    Blocks { lens, on_block }: Blocks<'_>,
    sent: &AtomicUsize,
) -> object_store::Result<u64> {
    let first = sent.load(Ordering::Acquire);
    let before: u64 = lens[..first].iter().map(|l| u64::from(*l)).sum();
    if first == lens.len() {
        return Ok(before);
    }
    let start = range.start + before;
    let want = range.end - start;
    let opts = GetOptions {
        range: Some(GetRange::Bounded(start..range.end)),
        ..GetOptions::default()
    };
    let res = store.get_opts(path, opts).await?;
    let mut split = BlockSplitter::new(lens, first);
    // Counted here, as each block is handed over: a timed-out attempt's
    // blocking file read may still be cutting blocks, which go nowhere.
    let hand_over = |i: usize, block: Bytes, crc: u32| {
        sent.store(i + 1, Ordering::Release);
        on_block(i, block, crc);
    };
    match res.payload {
        GetResultPayload::Stream(mut body) => {
            while let Some(chunk) = body.next().await {
                split.push(&chunk?, &hand_over);
                // A body longer than asked is not read on (the caller
                // reports the wrong length as corrupt data).
                if split.received > want {
                    break;
                }
            }
        }
        // A local file: each block read straight into its own buffer, on a
        // blocking thread that hands the blocks back as they are read.
        GetResultPayload::File(file, file_path) => {
            let range = res.range;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let reading = tokio::task::spawn_blocking(move || {
                split.read_file(file, range, &|i, b, crc| {
                    let _ = tx.send((i, b, crc));
                })
            });
            while let Some((i, b, crc)) = rx.recv().await {
                hand_over(i, b, crc);
            }
            split = reading
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "strata",
                    source: e.into(),
                })?
                .map_err(|e| object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: format!("reading {}: {e}", file_path.display()).into(),
                })?;
        }
    }
    Ok(before + split.received)
}

/// A buffer for a block of `len` bytes, its pages mapped in ahead of the
/// copy ([`strata_common::sysmem::prefault`]): blocks go to the block cache,
/// and a cache filling up takes fresh memory for every block.
fn block_buffer(len: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(len);
    strata_common::sysmem::prefault(&mut buf.spare_capacity_mut()[..len]);
    buf
}

/// Cuts a byte stream into blocks of the given lengths, each copied into a
/// buffer of its own while its CRC32C is computed, and hands each over once
/// whole.
struct BlockSplitter {
    lens: Vec<u32>,
    /// The block being filled (`lens.len()` once all are whole).
    next: usize,
    /// The block being filled, and its CRC so far.
    current: BytesMut,
    crc: u32,
    /// Bytes received in this attempt (also past the last block).
    received: u64,
}

impl BlockSplitter {
    /// Cuts from block `first` of `lens` on.
    fn new(lens: &[u32], first: usize) -> Self {
        BlockSplitter {
            current: block_buffer(lens.get(first).map_or(0, |l| *l as usize)),
            lens: lens.to_vec(),
            next: first,
            crc: 0,
            received: 0,
        }
    }

    /// The block being filled (`None` once all are whole).
    fn next(&self) -> Option<usize> {
        (self.next < self.lens.len()).then_some(self.next)
    }

    fn push(&mut self, mut data: &[u8], on_block: OnBlock<'_>) {
        self.received += data.len() as u64;
        while let Some(i) = self.next().filter(|_| !data.is_empty()) {
            let len = self.lens[i] as usize;
            // Small steps, so the CRC reads what the copy just left in cache.
            let n = (len - self.current.len()).min(data.len()).min(32 << 10);
            self.current.extend_from_slice(&data[..n]);
            self.crc = strata_proto::crc::crc32c_append(self.crc, &data[..n]);
            data = &data[n..];
            if self.current.len() == len {
                let next = self.lens.get(i + 1).map_or(0, |l| *l as usize);
                let block = std::mem::replace(&mut self.current, block_buffer(next));
                let crc = std::mem::take(&mut self.crc);
                self.next = i + 1;
                on_block(i, block.freeze(), crc);
            }
        }
    }

    /// Reads `range` of `file` block by block (a blocking read).
    fn read_file(
        mut self,
        mut file: std::fs::File,
        range: Range<u64>,
        on_block: OnBlock<'_>,
    ) -> std::io::Result<Self> {
        use std::io::{Read, Seek, SeekFrom};
        file.seek(SeekFrom::Start(range.start))?;
        let mut file = file.take(range.end - range.start);
        while let Some(i) = self.next() {
            let len = self.lens[i] as usize;
            let mut buf = Vec::with_capacity(len);
            strata_common::sysmem::prefault(&mut buf.spare_capacity_mut()[..len]);
            let n = (&mut file).take(len as u64).read_to_end(&mut buf)?;
            self.received += n as u64;
            if n < len {
                return Ok(self);
            }
            let crc = strata_proto::crc::crc32c(&buf);
            self.next = i + 1;
            on_block(i, Bytes::from(buf), crc);
        }
        // Anything past the blocks only counts (as a wrong length).
        self.received += std::io::copy(&mut file, &mut std::io::sink())?;
        Ok(self)
    }
}

/// A ranged GET's outcome, its error replaced by [`past_the_end`]'s when
/// the range lies past the object's end.
async fn or_past_the_end<T>(
    got: Result<T>,
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    range: &Range<u64>,
    policy: &RetryPolicy,
    io: &IoSink,
) -> Result<T> {
    match got {
        Ok(v) => Ok(v),
        Err(e) => Err(past_the_end(store, path, range, policy, io)
            .await
            .unwrap_or(e)),
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

    /// Blocks of `data` as `lens` cut it, with their CRCs.
    fn expected(data: &[u8], lens: &[u32]) -> Vec<(Bytes, u32)> {
        let mut at = 0;
        lens.iter()
            .map(|l| {
                let b = &data[at..at + *l as usize];
                at += *l as usize;
                (Bytes::copy_from_slice(b), strata_proto::crc::crc32c(b))
            })
            .collect()
    }

    /// No block lies right behind the one before it in memory: each is an
    /// allocation of its own (the allocator puts its own header between two
    /// allocations), not a slice of one body.
    fn assert_separate(blocks: &[(Bytes, u32)]) {
        for w in blocks.windows(2) {
            let (a, b) = (&w[0].0, &w[1].0);
            assert_ne!(
                a.as_ptr().wrapping_add(a.len()),
                b.as_ptr(),
                "two blocks share one buffer"
            );
        }
    }

    /// Collects what a GET hands over, checking that blocks come in order.
    #[derive(Default)]
    struct Collect(parking_lot::Mutex<Vec<(Bytes, u32)>>);

    impl Collect {
        fn on_block(&self) -> impl Fn(usize, Bytes, u32) + Sync + '_ {
            |i, b, crc| {
                let mut got = self.0.lock();
                assert_eq!(i, got.len(), "blocks out of order");
                got.push((b, crc));
            }
        }

        fn take(&self) -> Vec<(Bytes, u32)> {
            std::mem::take(&mut *self.0.lock())
        }
    }

    #[test]
    fn bodies_are_cut_into_separate_blocks_whatever_the_chunking() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let lens = [1000u32, 1, 4999, 3000, 1000];
        let want = expected(&data, &lens);
        let got = Collect::default();
        for chunk in [1, 7, 999, 1000, 1001, 4096, 10_000] {
            let mut split = BlockSplitter::new(&lens, 0);
            for piece in data.chunks(chunk) {
                split.push(piece, &got.on_block());
            }
            assert_eq!(split.received, 10_000);
            let blocks = got.take();
            assert_eq!(blocks, want, "chunks of {chunk}");
            assert_separate(&blocks);
        }
        // A short body: only the whole blocks are handed over, each as soon
        // as it is whole, and the length tells the caller it is short.
        let mut split = BlockSplitter::new(&lens, 0);
        split.push(&data[..1000], &got.on_block());
        assert_eq!(got.0.lock().len(), 1, "a whole block waits for no more");
        split.push(&data[1000..6500], &got.on_block());
        assert_eq!((split.received, &got.take()[..]), (6500, &want[..3]));
        // A long one: the blocks, and a length that gives it away.
        let mut split = BlockSplitter::new(&lens, 0);
        split.push(&data, &got.on_block());
        split.push(&data[..10], &got.on_block());
        assert_eq!((split.received, got.take()), (10_010, want.clone()));
        // Resumed after two blocks (a retried GET starts at the third).
        let mut split = BlockSplitter::new(&lens, 2);
        let seen = parking_lot::Mutex::new(Vec::new());
        split.push(&data[1001..], &|i, b, crc| seen.lock().push((i, b, crc)));
        let seen = seen.into_inner();
        assert_eq!(seen.iter().map(|(i, ..)| *i).collect::<Vec<_>>(), [2, 3, 4]);
        assert!(
            seen.iter()
                .map(|(_, b, c)| (b.clone(), *c))
                .eq(want[2..].iter().cloned())
        );
    }

    #[tokio::test]
    async fn ranged_gets_return_the_blocks_of_the_range_from_any_store() {
        let dir = tempfile::tempdir().unwrap();
        let local = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let stores: [Arc<dyn ObjectStore>; 2] = [
            Arc::new(object_store::memory::InMemory::new()),
            Arc::new(local),
        ];
        let path = Path::from("a/data");
        let data = Bytes::from((0..300_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let policy = RetryPolicy::default();
        for store in stores {
            store.put(&path, data.clone().into()).await.unwrap();
            let lens = [100_000, 1, 99_999];
            let got = Collect::default();
            get_blocks(
                &store,
                &path,
                1000..201_000,
                Blocks {
                    lens: &lens,
                    on_block: &got.on_block(),
                },
                &policy,
                &IoSink::default(),
                None,
            )
            .await
            .unwrap();
            let blocks = got.take();
            assert_eq!(blocks, expected(&data[1000..201_000], &lens), "{store}");
            assert_separate(&blocks);
            // A range past the end of the object is corrupt data; the
            // blocks before the end still come.
            let e = get_blocks(
                &store,
                &path,
                250_000..350_000,
                Blocks {
                    lens: &[50_000, 50_000],
                    on_block: &got.on_block(),
                },
                &policy,
                &IoSink::default(),
                None,
            )
            .await
            .unwrap_err();
            assert!(e.is_corrupt(), "{store}: {e}");
            assert_eq!(
                got.take(),
                expected(&data[250_000..300_000], &[50_000]),
                "{store}"
            );
        }
    }

    /// A GET that breaks off after some blocks is taken up again at the first
    /// block not handed over: nothing comes twice, nothing is missing.
    #[tokio::test]
    async fn a_get_that_breaks_off_resumes_at_the_first_missing_block() {
        use crate::faulty::{Fault, FaultKind, FaultyStore, Op};

        let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let path = Path::from("a/data");
        let data = Bytes::from((0..40_000u32).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
        inner.put(&path, data.clone().into()).await.unwrap();
        let faulty = FaultyStore::new(inner);
        // The first GET's body stops after 25,000 bytes with an error.
        faulty.inject(Fault::new(Op::Get, FaultKind::BreakAfter(25_000)));
        let store: Arc<dyn ObjectStore> = faulty.clone();
        let lens = [10_000u32; 4];
        let got = Collect::default();
        get_blocks(
            &store,
            &path,
            0..40_000,
            Blocks {
                lens: &lens,
                on_block: &got.on_block(),
            },
            &fast(),
            &IoSink::default(),
            None,
        )
        .await
        .unwrap();
        // In order and once each (`Collect` checks), all of them, in two GETs.
        assert_eq!(got.take(), expected(&data, &lens));
        assert_eq!(faulty.requests(Op::Get), 2);
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
