//! An [`ObjectStore`] wrapper that injects faults, for tests (here and in
//! the cross-process tests against Garage): failed requests (a 503-like
//! `Generic` error), hangs, added latency, truncated and corrupted GET
//! bodies. Controls may be changed while the store is in use.
//!
//! Faults are queued with [`FaultyStore::inject`]; each request takes the
//! first queued fault that matches its op class (and path filter) and has
//! uses left. GET bodies are read whole inside the wrapper, which keeps the
//! corruption logic trivial and makes "concurrent GETs" mean "requests whose
//! bodies are still being read".

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, UploadPart,
};
use parking_lot::Mutex;

/// Request classes faults and counters are kept for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Put,
    Get,
    Head,
    Delete,
    List,
    /// Creating a multipart upload, its parts, completion and abort.
    Multipart,
}

const OPS: [Op; 6] = [
    Op::Put,
    Op::Get,
    Op::Head,
    Op::Delete,
    Op::List,
    Op::Multipart,
];

fn op_index(op: Op) -> usize {
    OPS.iter().position(|o| *o == op).unwrap_or(0)
}

/// What a matching request suffers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Fails with `object_store::Error::Generic` ("503 Slow Down").
    Fail,
    /// Waits this long, then proceeds normally (a caller's timeout fires first).
    Hang(Duration),
    /// GET only: the body loses this many bytes at its end.
    Truncate(usize),
    /// GET only: one byte in the middle of the body is inverted.
    FlipByte,
    /// GET only: the body breaks off with an error after this many bytes
    /// (a connection lost mid-body).
    BreakAfter(usize),
    /// GET only: the body pauses this long after this many bytes, then
    /// comes whole (a store that sends the start of a body, then stalls).
    StallAfter(usize, Duration),
}

/// One queued fault.
#[derive(Clone, Debug)]
pub struct Fault {
    pub op: Op,
    pub kind: FaultKind,
    /// How many requests it applies to (`u32::MAX`: until cleared).
    pub times: u32,
    /// Only requests whose path contains this string.
    pub path_contains: Option<String>,
    /// Matching requests let through before the fault starts.
    pub skip: u32,
}

impl Fault {
    /// A fault on the next request of `op`.
    pub fn new(op: Op, kind: FaultKind) -> Fault {
        Fault {
            op,
            kind,
            times: 1,
            path_contains: None,
            skip: 0,
        }
    }

    pub fn times(mut self, n: u32) -> Fault {
        self.times = n;
        self
    }

    pub fn always(self) -> Fault {
        self.times(u32::MAX)
    }

    pub fn on_path(mut self, part: impl Into<String>) -> Fault {
        self.path_contains = Some(part.into());
        self
    }

    /// Lets the first `n` matching requests through.
    pub fn after(mut self, n: u32) -> Fault {
        self.skip = n;
        self
    }
}

#[derive(Debug, Default)]
struct State {
    faults: Mutex<Vec<Fault>>,
    latency: Mutex<Duration>,
    requests: [AtomicU64; 6],
    gets_in_flight: AtomicU64,
    max_gets_in_flight: AtomicU64,
    aborts: AtomicU64,
    /// Byte ranges the store answered GETs with, by object path.
    ranges: Mutex<Vec<(String, Range<u64>)>>,
}

impl State {
    /// Counts the request and takes the first matching fault with uses left.
    fn take(&self, op: Op, path: &Path) -> Option<FaultKind> {
        self.requests[op_index(op)].fetch_add(1, Ordering::Relaxed);
        let mut faults = self.faults.lock();
        let p = path.as_ref();
        let found = faults.iter_mut().find(|f| {
            f.op == op && f.times > 0 && f.path_contains.as_deref().is_none_or(|s| p.contains(s))
        });
        let f = found?;
        if f.skip > 0 {
            f.skip -= 1;
            return None;
        }
        if f.times != u32::MAX {
            f.times -= 1;
        }
        Some(f.kind.clone())
    }

    /// Applies latency, hangs and failures of a taken fault; returns what
    /// remains to be done to the body.
    async fn apply(
        &self,
        fault: Option<FaultKind>,
        op: Op,
        path: &Path,
    ) -> object_store::Result<Option<FaultKind>> {
        let latency = *self.latency.lock();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match fault {
            Some(FaultKind::Fail) => Err(injected(op, path)),
            Some(FaultKind::Hang(d)) => {
                tokio::time::sleep(d).await;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    async fn before(&self, op: Op, path: &Path) -> object_store::Result<Option<FaultKind>> {
        let fault = self.take(op, path);
        self.apply(fault, op, path).await
    }
}

fn injected(op: Op, path: &Path) -> object_store::Error {
    object_store::Error::Generic {
        store: "faulty",
        source: format!("injected fault: 503 Slow Down ({op:?} {path})").into(),
    }
}

/// Decrements the in-flight GET count when a GET ends, however it ends.
struct GetGuard<'a>(&'a State);

impl<'a> GetGuard<'a> {
    fn new(s: &'a State) -> Self {
        let now = s.gets_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_gets_in_flight.fetch_max(now, Ordering::SeqCst);
        GetGuard(s)
    }
}

impl Drop for GetGuard<'_> {
    fn drop(&mut self) {
        self.0.gets_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// See the module docs.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    state: Arc<State>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<FaultyStore> {
        Arc::new(FaultyStore {
            inner,
            state: Arc::new(State::default()),
        })
    }

    /// Queues a fault.
    pub fn inject(&self, fault: Fault) {
        self.state.faults.lock().push(fault);
    }

    /// Fails the next `n` requests of `op`.
    pub fn fail_next(&self, op: Op, n: u32) {
        self.inject(Fault::new(op, FaultKind::Fail).times(n));
    }

    /// Removes every queued fault (latency stays).
    pub fn clear_faults(&self) {
        self.state.faults.lock().clear();
    }

    /// Latency added to every request from now on (zero: none).
    pub fn set_latency(&self, d: Duration) {
        *self.state.latency.lock() = d;
    }

    /// Requests of `op` seen so far (including failed ones).
    pub fn requests(&self, op: Op) -> u64 {
        self.state.requests[op_index(op)].load(Ordering::Relaxed)
    }

    /// Most GETs (and HEADs) ever in flight at once.
    pub fn max_concurrent_gets(&self) -> u64 {
        self.state.max_gets_in_flight.load(Ordering::SeqCst)
    }

    /// Multipart uploads aborted through this store.
    pub fn aborts(&self) -> u64 {
        self.state.aborts.load(Ordering::Relaxed)
    }

    /// The byte ranges of the GETs answered so far, by object path, in the
    /// order they were answered.
    pub fn get_ranges_seen(&self) -> Vec<(String, Range<u64>)> {
        self.state.ranges.lock().clone()
    }

    /// Zeroes request counters and the concurrency high-water mark, and
    /// forgets the ranges seen.
    pub fn reset_counters(&self) {
        self.state.ranges.lock().clear();
        for r in &self.state.requests {
            r.store(0, Ordering::Relaxed);
        }
        self.state.max_gets_in_flight.store(0, Ordering::SeqCst);
        self.state.aborts.store(0, Ordering::Relaxed);
    }
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({:?})", self.inner)
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

fn damage(mut body: Bytes, fault: Option<FaultKind>) -> Bytes {
    match fault {
        Some(FaultKind::Truncate(n)) => {
            body.truncate(body.len().saturating_sub(n));
            body
        }
        Some(FaultKind::FlipByte) if !body.is_empty() => {
            let mut v = body.to_vec();
            let mid = v.len() / 2;
            v[mid] = !v[mid];
            Bytes::from(v)
        }
        _ => body,
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.state.before(Op::Put, location).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.state.before(Op::Multipart, location).await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner,
            path: location.clone(),
            state: self.state.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let op = if options.head { Op::Head } else { Op::Get };
        let _guard = GetGuard::new(&self.state);
        let fault = self.state.before(op, location).await?;
        let res = self.inner.get_opts(location, options).await?;
        if op == Op::Head {
            return Ok(res);
        }
        self.state
            .ranges
            .lock()
            .push((location.to_string(), res.range.clone()));
        let (meta, range, attributes, extensions) = (
            res.meta.clone(),
            res.range.clone(),
            res.attributes.clone(),
            res.extensions.clone(),
        );
        let mut body = damage(res.bytes().await?, fault.clone());
        let payload = match fault {
            Some(FaultKind::BreakAfter(n)) => {
                let head = body.split_to(n.min(body.len()));
                stream::iter([
                    Ok(head),
                    Err(object_store::Error::Generic {
                        store: "FaultyStore",
                        source: "connection lost mid-body (injected)".into(),
                    }),
                ])
                .boxed()
            }
            Some(FaultKind::StallAfter(n, pause)) => {
                let head = body.split_to(n.min(body.len()));
                stream::iter([Ok(head)])
                    .chain(stream::once(async move {
                        tokio::time::sleep(pause).await;
                        Ok(body)
                    }))
                    .boxed()
            }
            _ => stream::once(async move { Ok(body) }).boxed(),
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(payload),
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            out.push(self.get_range(location, r.clone()).await?);
        }
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let state = self.state.clone();
        let inner = self.inner.clone();
        locations
            .then(move |p| {
                let (state, inner) = (state.clone(), inner.clone());
                async move {
                    let p = p?;
                    state.before(Op::Delete, &p).await?;
                    inner.delete(&p).await.map(|_| p)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let state = self.state.clone();
        let inner = self.inner.clone();
        let prefix = prefix.cloned();
        stream::once(async move {
            let at = prefix.clone().unwrap_or_default();
            match state.before(Op::List, &at).await {
                Ok(_) => inner.list(prefix.as_ref()),
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let state = self.state.clone();
        let inner = self.inner.clone();
        let prefix = prefix.cloned();
        let offset = offset.clone();
        stream::once(async move {
            let at = prefix.clone().unwrap_or_default();
            match state.before(Op::List, &at).await {
                Ok(_) => inner.list_with_offset(prefix.as_ref(), &offset),
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let at = prefix.cloned().unwrap_or_default();
        self.state.before(Op::List, &at).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.state.before(Op::Put, to).await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.state.before(Op::Put, to).await?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    path: Path,
    state: Arc<State>,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        // The part is handed to the inner upload only once the fault check
        // passed, so a failed part never reaches the store.
        let state = self.state.clone();
        let path = self.path.clone();
        let fault = state.take(Op::Multipart, &path);
        if fault == Some(FaultKind::Fail) {
            return Box::pin(async move { Err(injected(Op::Multipart, &path)) });
        }
        let part = self.inner.put_part(data);
        Box::pin(async move {
            state.apply(fault, Op::Multipart, &path).await?;
            part.await
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.state.before(Op::Multipart, &self.path).await?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.state.aborts.fetch_add(1, Ordering::Relaxed);
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn faults_apply_in_order_and_only_where_asked() {
        let store = FaultyStore::new(Arc::new(InMemory::new()));
        let a = Path::from("x/data");
        let b = Path::from("x/index");
        store
            .put(&a, Bytes::from_static(b"0123456789").into())
            .await
            .unwrap();
        store
            .put(&b, Bytes::from_static(b"abc").into())
            .await
            .unwrap();

        store.inject(Fault::new(Op::Get, FaultKind::Fail).after(1));
        assert!(store.get_range(&a, 0..4).await.is_ok());
        assert!(store.get_range(&a, 0..4).await.is_err());
        assert_eq!(store.get_range(&a, 0..4).await.unwrap().as_ref(), b"0123");

        store.inject(Fault::new(Op::Get, FaultKind::Truncate(3)).on_path("data"));
        assert_eq!(
            store.get(&b).await.unwrap().bytes().await.unwrap().as_ref(),
            b"abc"
        );
        assert_eq!(
            store.get(&a).await.unwrap().bytes().await.unwrap().as_ref(),
            b"0123456"
        );

        store.inject(Fault::new(Op::Get, FaultKind::FlipByte).times(2));
        for _ in 0..2 {
            let got = store.get_range(&a, 0..4).await.unwrap();
            assert_ne!(got.as_ref(), b"0123");
        }
        assert_eq!(store.get_range(&a, 0..4).await.unwrap().as_ref(), b"0123");

        store.fail_next(Op::Head, 1);
        assert!(store.head(&a).await.is_err());
        assert_eq!(store.head(&a).await.unwrap().size, 10);

        store.fail_next(Op::Delete, 1);
        assert!(store.delete(&a).await.is_err());
        store.delete(&a).await.unwrap();

        store.fail_next(Op::List, 1);
        assert!(store.list(None).next().await.unwrap().is_err());
        assert_eq!(store.list(None).collect::<Vec<_>>().await.len(), 1);

        assert_eq!(store.requests(Op::Get), 8);
        assert_eq!(store.requests(Op::Head), 2);
        assert!(store.max_concurrent_gets() >= 1);
    }

    #[tokio::test]
    async fn multipart_faults_and_aborts() {
        let store = FaultyStore::new(Arc::new(InMemory::new()));
        let p = Path::from("m");
        store.fail_next(Op::Multipart, 1);
        assert!(store.put_multipart(&p).await.is_err());
        let mut up = store.put_multipart(&p).await.unwrap();
        store.fail_next(Op::Multipart, 1);
        assert!(up.put_part(Bytes::from_static(b"a").into()).await.is_err());
        up.abort().await.unwrap();
        assert_eq!(store.aborts(), 1);
        assert!(store.head(&p).await.is_err());
    }

    #[tokio::test]
    async fn hangs_delay_requests() {
        let store = FaultyStore::new(Arc::new(InMemory::new()));
        let p = Path::from("h");
        store
            .put(&p, Bytes::from_static(b"x").into())
            .await
            .unwrap();
        store.inject(Fault::new(
            Op::Get,
            FaultKind::Hang(Duration::from_secs(3600)),
        ));
        let r = tokio::time::timeout(Duration::from_millis(50), store.get_range(&p, 0..1)).await;
        assert!(r.is_err(), "a hung GET must not complete");
        assert_eq!(store.get_range(&p, 0..1).await.unwrap().as_ref(), b"x");
    }
}
