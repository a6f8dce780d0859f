//! Writing an offloaded ledger (`base/data`, then `base/index`), reading it
//! back to verify it, and deleting it.
//!
//! Order matters for safety: the index is written only after the data object
//! is complete, and a ledger may be marked offloaded only after [`verify`]
//! passed, so a crash at any point leaves at worst unreferenced objects
//! (found by reconciliation), never a record pointing at bad data.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutMultipartOptions};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::error::{OffloadError, Result};
use crate::format::{
    BlockRow, BlockWriter, DEFAULT_BLOCK_TARGET, DEFAULT_HEAD_MAX, LedgerHeader, check_block_crc,
    encode_index,
};
use crate::retry::{
    Blocks, RetryPolicy, get_blocks, get_range, part_retry, timeout_error, with_retry,
};
use crate::stats::IoSink;

/// Name of the data object under a ledger's base path.
pub const DATA_OBJECT: &str = "data";
/// Name of the index object under a ledger's base path.
pub const INDEX_OBJECT: &str = "index";
/// Bytes of data one verification GET covers (whole blocks, so a little
/// more). Long GETs: a range that starts or ends inside one of the store's
/// own chunks (Garage's and MinIO's are 1 MiB, read and hashed whole) costs
/// the store that chunk again, a quarter more work for 4 MiB GETs of blocks
/// that do not line up with its chunks; a sixteenth for 16 MiB.
const VERIFY_RANGE: u64 = 16 << 20;
/// Verification GETs in flight at once.
const VERIFY_PARALLEL: usize = 4;

/// What was written; stored (JSON) in the ledger's offload record, so it has
/// everything needed to read and re-verify the objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffloadedObjects {
    /// Full object paths.
    pub data_key: String,
    pub index_key: String,
    pub data_size: u64,
    pub index_size: u64,
    /// CRC32C of the whole index object.
    pub index_crc32c: u32,
    pub blocks: u64,
    pub entries: u64,
    pub payload_bytes: u64,
    /// Bytes of the first block's copy in the index (0: none, as in indexes
    /// of format version 1). A reader that knows the index brings the first
    /// block does not also GET the data object's start when it opens it.
    #[serde(default)]
    pub head_bytes: u64,
}

impl OffloadedObjects {
    /// The ledger's base path (what [`delete_objects`] takes).
    pub fn base_path(&self) -> Result<Path> {
        let base = self
            .data_key
            .strip_suffix(DATA_OBJECT)
            .and_then(|b| b.strip_suffix('/'))
            .ok_or_else(|| {
                OffloadError::Other(format!(
                    "data key {:?} does not end in /{DATA_OBJECT}",
                    self.data_key
                ))
            })?;
        parse_key(base)
    }
}

#[derive(Clone, Debug)]
pub struct UploadOptions {
    /// Size at which a block is closed.
    pub block_target: usize,
    /// Multipart part size; S3 needs ≥ 5 MiB for all parts but the last.
    pub part_size: usize,
    /// Parts uploading (and so buffered) at once.
    pub max_parallel_parts: usize,
    /// Data objects up to this size are written with one PUT.
    pub single_put_max: usize,
    /// A first block up to this size is copied into the index (see
    /// [`crate::format`]); 0: never.
    pub head_max: usize,
    /// Retries and timeout of single requests. Multipart parts are retried by
    /// HTTP stores themselves (with this policy), within
    /// [`RetryPolicy::retried_deadline`]; a part that still fails fails the
    /// upload, which is aborted.
    pub retry: RetryPolicy,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            block_target: DEFAULT_BLOCK_TARGET,
            part_size: 8 << 20,
            max_parallel_parts: 4,
            single_put_max: 8 << 20,
            head_max: DEFAULT_HEAD_MAX,
            retry: RetryPolicy::default(),
        }
    }
}

/// Paths of a ledger's two objects under its base path.
pub fn object_paths(base: &Path) -> (Path, Path) {
    (
        base.clone().join(DATA_OBJECT),
        base.clone().join(INDEX_OBJECT),
    )
}

/// An open multipart upload and its parts in flight.
struct Multipart {
    upload: Box<dyn MultipartUpload>,
    /// Each part yields the payload bytes fully uploaded once it is done.
    parts: JoinSet<std::result::Result<u64, object_store::Error>>,
}

/// State of one upload while the data object is being streamed.
struct DataWriter<'a> {
    store: &'a Arc<dyn ObjectStore>,
    path: &'a Path,
    opts: &'a UploadOptions,
    io: &'a IoSink,
    progress: &'a (dyn Fn(u64) + Send + Sync),
    buf: BytesMut,
    blocks: BlockWriter,
    /// Data bytes already cut into parts.
    cut: u64,
    /// Rows (and their payload) whose blocks lie wholly in cut parts.
    rows_cut: usize,
    payload_cut: u64,
    reported: u64,
    multipart: Option<Multipart>,
    /// A copy of the first block, for the index, once it was cut.
    head: Bytes,
}

impl DataWriter<'_> {
    /// Keeps a copy of the first block when `start` (the data object's
    /// first bytes, whole blocks) holds it and it is small enough.
    fn keep_head(&mut self, start: &[u8]) {
        let Some(first) = self.blocks.rows().first() else {
            return;
        };
        let len = first.len as usize;
        if self.cut == 0 && len <= self.opts.head_max && len <= start.len() {
            self.head = Bytes::copy_from_slice(&start[..len]);
        }
    }

    fn report(&mut self, done: u64) {
        if done > self.reported {
            self.reported = done;
            (self.progress)(done);
        }
    }

    async fn start_multipart(&mut self) -> Result<()> {
        let key = self.path.as_ref();
        let opts =
            PutMultipartOptions::default().with_retry_policy(part_retry(&self.opts.retry, self.io));
        let upload = with_retry(
            &self.opts.retry,
            self.io,
            "create multipart",
            key,
            None,
            || self.store.put_multipart_opts(self.path, opts.clone()),
        )
        .await?;
        self.multipart = Some(Multipart {
            upload,
            parts: JoinSet::new(),
        });
        Ok(())
    }

    /// Waits for one part; errors name the data object.
    async fn join_one(&mut self) -> Result<()> {
        let Some(mp) = self.multipart.as_mut() else {
            return Ok(());
        };
        let key = self.path.to_string();
        match mp.parts.join_next().await {
            None => Ok(()),
            Some(Ok(Ok(done))) => {
                self.report(done);
                Ok(())
            }
            Some(Ok(Err(e))) => Err(OffloadError::store("put part", key, e)),
            Some(Err(e)) => Err(OffloadError::Other(format!(
                "part upload task of {key}: {e}"
            ))),
        }
    }

    /// Cuts sealed bytes into parts (all when `last`), keeping at most
    /// `max_parallel_parts` in flight.
    async fn cut_parts(&mut self, last: bool) -> Result<()> {
        let part_size = self.opts.part_size.max(1);
        while self.blocks.sealed() >= part_size || (last && self.blocks.sealed() > 0) {
            let n = self.blocks.sealed().min(part_size);
            if self.multipart.is_none() {
                self.start_multipart().await?;
            }
            while self
                .multipart
                .as_ref()
                .is_some_and(|m| m.parts.len() >= self.opts.max_parallel_parts.max(1))
            {
                self.join_one().await?;
            }
            let part = self.buf.split_to(n).freeze();
            self.keep_head(&part);
            self.blocks.consumed(n);
            self.cut += n as u64;
            let rows = self.blocks.rows();
            while self.rows_cut < rows.len() && rows[self.rows_cut].range().end <= self.cut {
                self.payload_cut += rows[self.rows_cut].payload_bytes();
                self.rows_cut += 1;
            }
            let done = self.payload_cut;
            let timeout = self.opts.retry.retried_deadline();
            let Some(mp) = self.multipart.as_mut() else {
                return Err(OffloadError::Other("multipart upload missing".into()));
            };
            let fut = mp.upload.put_part(part.into());
            self.io.put(n as u64);
            mp.parts.spawn(async move {
                match tokio::time::timeout(timeout, fut).await {
                    Ok(r) => r.map(|_| done),
                    Err(_) => Err(timeout_error("put part", timeout)),
                }
            });
        }
        Ok(())
    }

    /// Completes the data object: the last parts and `complete`, or one PUT.
    async fn finish(&mut self) -> Result<()> {
        self.blocks.close(&self.buf);
        let key = self.path.to_string();
        if self.multipart.is_some() {
            self.cut_parts(true).await?;
            while self.multipart.as_ref().is_some_and(|m| !m.parts.is_empty()) {
                self.join_one().await?;
            }
            let timeout = self.opts.retry.retried_deadline();
            if let Some(mp) = self.multipart.as_mut() {
                match tokio::time::timeout(timeout, mp.upload.complete()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(OffloadError::store("complete multipart", key, e)),
                    Err(_) => {
                        return Err(OffloadError::store(
                            "complete multipart",
                            key,
                            timeout_error("complete multipart", timeout),
                        ));
                    }
                }
            }
            self.multipart = None;
            self.io.put(0);
        } else {
            let body = std::mem::take(&mut self.buf).freeze();
            self.keep_head(&body);
            let len = body.len() as u64;
            let payload = object_store::PutPayload::from_bytes(body);
            with_retry(&self.opts.retry, self.io, "put", &key, None, || {
                self.store.put(self.path, payload.clone())
            })
            .await?;
            self.io.put(len);
            self.cut = len;
        }
        let total = self.blocks.rows().iter().map(BlockRow::payload_bytes).sum();
        self.report(total);
        Ok(())
    }

    /// Best effort: parts stop, the store is told to drop what it has.
    async fn abort(&mut self) {
        if let Some(mut mp) = self.multipart.take() {
            mp.parts.abort_all();
            let res =
                tokio::time::timeout(self.opts.retry.request_timeout, mp.upload.abort()).await;
            if !matches!(res, Ok(Ok(()))) {
                tracing::warn!(key = %self.path, "aborting a failed multipart upload failed; reconciliation will remove its parts");
            }
        }
    }
}

/// Streams `entries` (ids `0..header.entries` in order, exactly that many)
/// into `base/data` — one PUT when small, multipart with parts uploaded in
/// parallel (at most `max_parallel_parts` buffered) when large; on any error
/// the multipart upload is aborted — then writes `base/index`. The index's
/// `payload_bytes` is what was counted, not what the header said.
/// `progress` gets the payload bytes uploaded so far.
pub async fn upload_ledger<S>(
    store: &Arc<dyn ObjectStore>,
    base: &Path,
    header: &LedgerHeader,
    entries: S,
    opts: &UploadOptions,
    io: &IoSink,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<OffloadedObjects>
where
    S: Stream<Item = Result<(u64, Bytes)>> + Send,
{
    let (data_path, index_path) = object_paths(base);
    let mut w = DataWriter {
        store,
        path: &data_path,
        opts,
        io,
        progress,
        buf: BytesMut::with_capacity(opts.part_size.min(opts.single_put_max).min(64 << 20)),
        blocks: BlockWriter::new(opts.block_target),
        cut: 0,
        rows_cut: 0,
        payload_cut: 0,
        reported: 0,
        multipart: None,
        head: Bytes::new(),
    };
    let counted = match stream_data(&mut w, header, entries).await {
        Ok(n) => n,
        Err(e) => {
            w.abort().await;
            return Err(e);
        }
    };
    let rows = std::mem::replace(&mut w.blocks, BlockWriter::new(1)).into_rows();
    let data_size = rows.last().map_or(0, |r| r.range().end);
    let payload_bytes = rows.iter().map(BlockRow::payload_bytes).sum();
    let mut written = header.clone();
    written.entries = counted;
    written.payload_bytes = payload_bytes;
    let head_bytes = w.head.len() as u64;
    let index = encode_index(&written, &rows, &w.head)?;
    let index_crc32c = strata_proto::crc::crc32c(&index);
    let index_size = index.len() as u64;
    let payload = object_store::PutPayload::from_bytes(index);
    with_retry(&opts.retry, io, "put", index_path.as_ref(), None, || {
        store.put(&index_path, payload.clone())
    })
    .await?;
    io.put(index_size);
    Ok(OffloadedObjects {
        data_key: data_path.to_string(),
        index_key: index_path.to_string(),
        data_size,
        index_size,
        index_crc32c,
        blocks: rows.len() as u64,
        entries: counted,
        payload_bytes,
        head_bytes,
    })
}

/// Feeds the entries through the block writer and out as parts or one PUT;
/// returns the number of entries.
async fn stream_data<S>(w: &mut DataWriter<'_>, header: &LedgerHeader, entries: S) -> Result<u64>
where
    S: Stream<Item = Result<(u64, Bytes)>> + Send,
{
    let mut entries = std::pin::pin!(entries);
    let mut next = 0u64;
    while let Some(item) = entries.next().await {
        let (id, payload) = item?;
        if id != next {
            return Err(OffloadError::Input(format!(
                "ledger {}: got entry {id} where entry {next} was expected",
                header.ledger_id
            )));
        }
        if id >= header.entries {
            return Err(OffloadError::Input(format!(
                "ledger {}: entry {id} is past the {} entries the header declares",
                header.ledger_id, header.entries
            )));
        }
        let closed = w.blocks.push(&mut w.buf, id, &payload)?;
        next += 1;
        if closed {
            if w.multipart.is_none() && w.buf.len() > w.opts.single_put_max {
                w.start_multipart().await?;
            }
            if w.multipart.is_some() {
                w.cut_parts(false).await?;
            }
        }
    }
    if next != header.entries {
        return Err(OffloadError::Input(format!(
            "ledger {}: stream ended after {next} entries, the header declares {}",
            header.ledger_id, header.entries
        )));
    }
    w.finish().await?;
    Ok(next)
}

fn parse_key(key: &str) -> Result<Path> {
    Path::parse(key).map_err(|e| OffloadError::Other(format!("invalid object key {key:?}: {e}")))
}

/// Reads both objects back and checks everything, with the default retry
/// policy: see [`verify_with`].
pub async fn verify(
    store: &Arc<dyn ObjectStore>,
    objects: &OffloadedObjects,
    io: &IoSink,
) -> Result<()> {
    verify_with(store, objects, io, &RetryPolicy::default()).await
}

/// HEAD sizes, the index bytes' CRC against `index_crc32c`, the decoded
/// index against `objects` (blocks, entries, payload, data size), then every
/// data block's CRC and structure (ranged GETs, a few in parallel, each a few
/// MiB). Any mismatch, including a missing object, is `Corrupt`.
pub async fn verify_with(
    store: &Arc<dyn ObjectStore>,
    objects: &OffloadedObjects,
    io: &IoSink,
    policy: &RetryPolicy,
) -> Result<()> {
    let data = parse_key(&objects.data_key)?;
    let index = parse_key(&objects.index_key)?;
    let corrupt = |key: &str, reason: String| {
        io.corrupt_block();
        OffloadError::corrupt(key, reason)
    };
    for (path, want) in [(&data, objects.data_size), (&index, objects.index_size)] {
        let meta = with_retry(policy, io, "head", path.as_ref(), None, || store.head(path)).await;
        io.get(0);
        let size = match meta {
            Ok(m) => m.size,
            Err(OffloadError::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }) => return Err(corrupt(path.as_ref(), "object is missing".into())),
            Err(e) => return Err(e),
        };
        if size != want {
            return Err(corrupt(
                path.as_ref(),
                format!("object is {size} bytes, the record says {want}"),
            ));
        }
    }
    let index_bytes = if objects.index_size == 0 {
        Bytes::new()
    } else {
        get_range(store, &index, 0..objects.index_size, policy, io, None).await?
    };
    let decoded = crate::reader::check_index(objects, &index_bytes).inspect_err(|e| {
        if e.is_corrupt() {
            io.corrupt_block();
        }
    })?;
    // Owned group bounds, not borrowed slices, as the closure's argument: a
    // closure over `&[BlockRow]` returning a borrowing future makes the
    // caller's future not `Send` (higher-ranked lifetimes).
    let rows = &decoded.rows;
    futures::stream::iter(group_rows(rows, VERIFY_RANGE))
        .map(|g| verify_blocks(store, &data, &rows[g], policy, io))
        .buffer_unordered(VERIFY_PARALLEL)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Splits rows into runs of whole blocks of about `target` bytes each (as
/// index ranges into `rows`).
pub(crate) fn group_rows(rows: &[BlockRow], target: u64) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, r) in rows.iter().enumerate() {
        if i > start && bytes + u64::from(r.len) > target {
            groups.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += u64::from(r.len);
    }
    if start < rows.len() {
        groups.push(start..rows.len());
    }
    groups
}

async fn verify_blocks(
    store: &Arc<dyn ObjectStore>,
    data: &Path,
    rows: &[BlockRow],
    policy: &RetryPolicy,
    io: &IoSink,
) -> Result<()> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(());
    };
    let lens: Vec<u32> = rows.iter().map(|r| r.len).collect();
    // The first bad block's error; each block is checked as it arrives and
    // dropped (a verification holds one block per GET, not the body).
    let bad = Mutex::new(None);
    get_blocks(
        store,
        data,
        first.offset..last.range().end,
        Blocks {
            lens: &lens,
            on_block: &|i, block, crc| {
                if let Err(e) = check_block_crc(data.as_ref(), &rows[i], &block, crc) {
                    bad.lock().get_or_insert(e);
                }
            },
        },
        policy,
        io,
        None,
    )
    .await
    .inspect_err(|e| {
        if e.is_corrupt() {
            io.corrupt_block();
        }
    })?;
    match bad.into_inner() {
        Some(e) => {
            io.corrupt_block();
            Err(e)
        }
        None => Ok(()),
    }
}

/// Deletes both objects under `objects_base`; missing ones are fine.
pub async fn delete_objects(
    store: &Arc<dyn ObjectStore>,
    objects_base: &Path,
    io: &IoSink,
) -> Result<()> {
    let (data, index) = object_paths(objects_base);
    let policy = RetryPolicy::default();
    for path in [&index, &data] {
        let res = with_retry(&policy, io, "delete", path.as_ref(), None, || {
            store.delete(path)
        })
        .await;
        io.delete();
        match res {
            Ok(())
            | Err(OffloadError::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
