//! The gRPC face of the bookie. Every request is checked before it reaches
//! the storage (the pure checks are in [`crate::validate`]); a bad one gets a
//! clear status and the server goes on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::Stream;
use futures::stream::{FuturesUnordered, StreamExt};
use strata_common::stages::{self, Stage};
use strata_proto::bookie::bookie_server::Bookie as BookieRpc;
use strata_proto::bookie::{
    AddRequest, AddResponse, AddResult, AddStatus, DeleteLedgerRequest, DeleteLedgerResponse,
    Entry, FenceRequest, FenceResponse, InfoRequest, InfoResponse, ListLedgersRequest,
    ListLedgersResponse, ReadLacRequest, ReadLacResponse, ReadRequest, ReadResponse,
};
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use crate::disk::DiskState;
use crate::entrylog::StoredEntry;
use crate::error::BookieError;
use crate::storage::LedgerStorage;
use crate::validate::{self, MAX_READ_ENTRIES, ReadEntries};

/// Adds one stream may have in flight before the bookie stops reading it.
const MAX_INFLIGHT_ADDS: usize = 16 * 1024;

pub struct BookieService {
    pub storage: Arc<LedgerStorage>,
    pub disk: Arc<DiskState>,
    pub bookie_id: String,
    /// Cancelled at shutdown: add streams end so graceful shutdown can finish.
    pub shutdown: tokio_util::sync::CancellationToken,
}

fn to_wire(e: &StoredEntry) -> Entry {
    Entry {
        ledger_id: e.ledger_id,
        entry_id: e.entry_id,
        cumulative_length: e.cumulative_length,
        crc32c: e.crc32c,
        payload: e.payload.clone(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BookieError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("bookie task failed: {e}")))?
        .map_err(Status::from)
}

/// Serves one read request: the gRPC call's work, also called directly by
/// an in-process client (the standalone's broker reading its own bookie),
/// with the same checks, errors and metrics.
pub async fn read_entries(
    storage: &Arc<LedgerStorage>,
    req: ReadRequest,
) -> Result<ReadResponse, Status> {
    let req = validate::check_read(req)?;
    let started = Instant::now();
    let storage = storage.clone();
    let metrics = storage.metrics.clone();
    let budget = req.budget;
    let result = blocking(move || {
        let ledger = req.ledger_id;
        let lac = storage.lac(ledger)?.lac;
        let mut resp = ReadResponse {
            entries: Vec::new(),
            missing: Vec::new(),
            lac,
        };
        let mut bytes = 0u64;
        let (first, last) = match req.entries {
            ReadEntries::Range { first, last } => (first, last),
            ReadEntries::List(ids) => {
                for id in ids {
                    match storage.read_blocking(ledger, id)? {
                        Some(e) if bytes < budget || resp.entries.is_empty() => {
                            bytes += e.payload.len() as u64;
                            resp.entries.push(to_wire(&e));
                        }
                        Some(_) => break,
                        None => resp.missing.push(id),
                    }
                }
                return Ok(resp);
            }
        };
        let entries = storage.read_range_blocking(ledger, first, last, budget, MAX_READ_ENTRIES)?;
        if entries.is_empty() {
            return Err(BookieError::NoSuchEntry(ledger, first));
        }
        resp.entries = entries.iter().map(|e| to_wire(e)).collect();
        Ok(resp)
    })
    .await;
    metrics
        .read_seconds
        .observe(started.elapsed().as_secs_f64());
    if result.is_err() {
        metrics.read_errors.inc();
    }
    result
}

type AddStream = Pin<Box<dyn Stream<Item = Result<AddResponse, Status>> + Send>>;

#[tonic::async_trait]
impl BookieRpc for BookieService {
    type AddEntriesStream = AddStream;

    async fn add_entries(
        &self,
        request: Request<Streaming<AddRequest>>,
    ) -> Result<Response<AddStream>, Status> {
        // Served by `crate::add_stream` in a running bookie; this is tonic's
        // own decoding of the same stream, for the generated server alone.
        Ok(Response::new(Box::pin(AddDriver::new(
            Box::pin(request.into_inner()),
            self.storage.clone(),
            self.shutdown.clone(),
        ))))
    }

    async fn read_entries(
        &self,
        request: Request<ReadRequest>,
    ) -> Result<Response<ReadResponse>, Status> {
        read_entries(&self.storage, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn read_lac(
        &self,
        request: Request<ReadLacRequest>,
    ) -> Result<Response<ReadLacResponse>, Status> {
        let s = self.storage.lac(request.into_inner().ledger_id)?;
        Ok(Response::new(ReadLacResponse {
            lac: s.lac,
            last_entry: s.last_entry,
            fenced: s.fenced,
        }))
    }

    async fn fence(
        &self,
        request: Request<FenceRequest>,
    ) -> Result<Response<FenceResponse>, Status> {
        let ledger = request.into_inner().ledger_id;
        let storage = self.storage.clone();
        let s = blocking(move || storage.fence_blocking(ledger)).await?;
        Ok(Response::new(FenceResponse {
            lac: s.lac,
            last_entry: s.last_entry,
        }))
    }

    async fn delete_ledger(
        &self,
        request: Request<DeleteLedgerRequest>,
    ) -> Result<Response<DeleteLedgerResponse>, Status> {
        let ledger = request.into_inner().ledger_id;
        let storage = self.storage.clone();
        blocking(move || storage.delete_blocking(ledger)).await?;
        Ok(Response::new(DeleteLedgerResponse {}))
    }

    async fn list_ledgers(
        &self,
        request: Request<ListLedgersRequest>,
    ) -> Result<Response<ListLedgersResponse>, Status> {
        let req = request.into_inner();
        let limit = validate::list_limit(&req);
        let (ledger_ids, more) = self.storage.list(req.start_after, limit);
        Ok(Response::new(ListLedgersResponse { ledger_ids, more }))
    }

    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let usage = self.disk.snapshot();
        Ok(Response::new(InfoResponse {
            bookie_id: self.bookie_id.clone(),
            state: if self.storage.read_only().is_some() {
                "read_only".into()
            } else {
                "writable".into()
            },
            total_bytes: usage.total_bytes,
            free_bytes: usage.free_bytes,
            journal_bytes_written: self.storage.metrics.journal_bytes.get(),
            entry_log_count: self.storage.entry_log_count() as u64,
            ledger_count: self.storage.ledger_count() as u64,
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }
}

/// One add, validated and made durable: what the add stream does per entry
/// (also the in-process path of the standalone's ledger client).
pub async fn add_one(storage: &LedgerStorage, add: strata_proto::bookie::AddEntry) -> AddResult {
    add_many(storage, vec![add])
        .await
        .pop()
        .unwrap_or_else(|| result(0, 0, Err(BookieError::ShuttingDown)))
}

/// One add stream, driven by the response it returns: each poll takes the
/// requests that arrived (up to [`MAX_INFLIGHT_ADDS`] adds in flight, past
/// which the stream is not read and HTTP/2 flow control holds the client
/// back), works on them, and answers with every result ready so far in one
/// message. No task of its own sits between the request and the response
/// streams: a finished journal sync wakes the response's sender directly,
/// one wake-up per round trip less than a relay task and a channel.
pub(crate) struct AddDriver {
    inbound: Inbound,
    inbound_open: bool,
    /// Why the requests ended, if not by the client closing them.
    inbound_error: Option<Status>,
    inflight: FuturesUnordered<Pin<Box<dyn Future<Output = Vec<AddResult>> + Send>>>,
    /// Adds in the requests being worked on (a request is one future).
    inflight_adds: usize,
    storage: Arc<LedgerStorage>,
    shutdown: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    ended: bool,
}

/// The add requests of one stream, however they are decoded.
pub(crate) type Inbound = Pin<Box<dyn Stream<Item = Result<AddRequest, Status>> + Send>>;

impl AddDriver {
    pub(crate) fn new(
        inbound: Inbound,
        storage: Arc<LedgerStorage>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> AddDriver {
        AddDriver {
            inbound,
            inbound_open: true,
            inbound_error: None,
            inflight: FuturesUnordered::new(),
            inflight_adds: 0,
            storage,
            shutdown: Box::pin(shutdown.cancelled_owned()),
            ended: false,
        }
    }
}

/// Adds being worked on are finished even when the stream goes away (the
/// client disconnected, or the bookie is shutting down): an add dropped
/// halfway could hold write-cache room that only its journal write frees,
/// or be durable without its ledger's state knowing.
impl Drop for AddDriver {
    fn drop(&mut self) {
        if self.inflight.is_empty() {
            return;
        }
        let mut inflight = std::mem::take(&mut self.inflight);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { while inflight.next().await.is_some() {} });
        }
    }
}

impl Stream for AddDriver {
    type Item = Result<AddResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if this.shutdown.as_mut().poll(cx).is_ready() {
            this.ended = true;
            return Poll::Ready(Some(Err(Status::unavailable("bookie is shutting down"))));
        }
        while this.inbound_open && this.inflight_adds < MAX_INFLIGHT_ADDS {
            match this.inbound.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(req))) => {
                    let storage = this.storage.clone();
                    stages::mark_all(
                        req.entries
                            .iter()
                            .filter_map(|a| a.entry.as_ref().map(|e| e.entry_id)),
                        Stage::Received,
                    );
                    this.inflight_adds += req.entries.len();
                    this.inflight.push(Box::pin(
                        async move { add_many(&storage, req.entries).await },
                    ));
                }
                Poll::Ready(Some(Err(status))) => {
                    debug!(%status, "add stream ended by a bad request or a client error");
                    this.inbound_open = false;
                    this.inbound_error = Some(status);
                }
                Poll::Ready(None) => this.inbound_open = false,
                Poll::Pending => break,
            }
        }
        // Everything already done goes in the same message.
        let mut results: Vec<AddResult> = Vec::new();
        while let Poll::Ready(Some(r)) = this.inflight.poll_next_unpin(cx) {
            if results.is_empty() {
                results = r;
            } else {
                results.extend(r);
            }
        }
        if !results.is_empty() {
            stages::mark_all(results.iter().map(|r| r.entry_id), Stage::Answered);
            this.inflight_adds -= results.len();
            return Poll::Ready(Some(Ok(AddResponse { results })));
        }
        if !this.inbound_open && this.inflight.is_empty() {
            this.ended = true;
            // The adds before a bad request are answered first; then the
            // stream ends with what was wrong (a client that went away
            // sees nothing of it).
            return Poll::Ready(this.inbound_error.take().map(Err));
        }
        Poll::Pending
    }
}

/// Adds a batch (one stream message, or what the in-process client queued),
/// journaled together; one result per add, in order.
pub async fn add_many(
    storage: &LedgerStorage,
    adds: Vec<strata_proto::bookie::AddEntry>,
) -> Vec<AddResult> {
    let mut out: Vec<Option<AddResult>> = Vec::with_capacity(adds.len());
    let mut ops = Vec::with_capacity(adds.len());
    let mut keys = Vec::with_capacity(adds.len());
    for add in adds {
        match validate::check_add(add) {
            Ok(op) => {
                keys.push((out.len(), op.entry.ledger_id, op.entry.entry_id));
                out.push(None);
                ops.push(op);
            }
            Err(e) => out.push(Some(result(0, 0, Err(e)))),
        }
    }
    let results = storage.add_batch(ops).await;
    for ((i, ledger_id, entry_id), r) in keys.into_iter().zip(results) {
        if r.is_err() {
            storage.metrics.add_errors.inc();
        }
        out[i] = Some(result(ledger_id, entry_id, r));
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| result(0, 0, Err(BookieError::ShuttingDown))))
        .collect()
}

fn result(ledger_id: u64, entry_id: u64, r: crate::error::Result<()>) -> AddResult {
    match r {
        Ok(()) => AddResult {
            ledger_id,
            entry_id,
            status: AddStatus::Ok as i32,
            message: String::new(),
        },
        Err(e) => AddResult {
            ledger_id,
            entry_id,
            status: e.add_status() as i32,
            message: e.to_string(),
        },
    }
}
