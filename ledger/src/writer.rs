//! The ledger writer: pipelined, quorum-acknowledged appends.
//!
//! Entry `i` is sent to the write set of `i` (Qw bookies from `i mod E`). It
//! is acknowledged to the caller once Qa bookies of its write set confirmed
//! it *and* every earlier entry was acknowledged; the last acknowledged id is
//! the last-add-confirmed (LAC), piggybacked on later adds.
//!
//! When a bookie fails, the writer replaces it for entries from LAC+1 on (an
//! ensemble change recorded by compare-and-set on the ledger metadata), drops
//! acks from bookies no longer in an entry's write set, and resends what is
//! not yet acknowledged. While a change is under way no entry at or past its
//! first entry is acknowledged, so an acknowledged entry always has Qa copies
//! in the write set the metadata names for it.
//!
//! A FENCED reply, or finding the metadata no longer OPEN when writing it,
//! means another client recovered the ledger: every pending and later append
//! fails with [`LedgerError::Fenced`].

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use strata_common::metadata::{Expect, Version};
use strata_common::stages::{self, Stage};
use strata_proto::bookie::{AddEntry, Entry};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ClientCtx;
use crate::bookie_client::{AckSink, AddAck, AddOutcome, BookieConn};
use crate::error::{LedgerError, Result};
use crate::metadata::{self, Fragment, LedgerMetadata, LedgerStatus};
use crate::metrics::BookieOp;

/// Largest entry payload.
pub const MAX_ENTRY_SIZE: usize = 5 << 20;

struct Pending {
    entry_id: u64,
    payload: Bytes,
    cumulative_length: u64,
    crc32c: u32,
    /// Slots (positions in the last fragment's ensemble) the entry was sent to
    /// and that confirmed it, as bit masks. Every pending entry belongs to
    /// the last fragment, since fragments start at LAC+1.
    sent: u64,
    acked: u64,
    /// Where the entry id goes once acknowledged, with when that was.
    done: Option<oneshot::Sender<Result<(u64, Instant)>>>,
    _permit: OwnedSemaphorePermit,
    /// When the last send to a bookie started; reset on an ensemble change,
    /// so the add timeout counts from then.
    since: Instant,
    /// When the caller queued it: the start of its add latency.
    enqueued: Instant,
}

struct State {
    md: LedgerMetadata,
    md_version: Version,
    next_entry: u64,
    length: u64,
    lac: i64,
    pending: VecDeque<Pending>,
    failed: Option<LedgerError>,
    closed: bool,
    /// First entry of the ensemble change under way, if any.
    changing_from: Option<u64>,
    /// Bookies of the current ensemble that failed and must be replaced.
    to_replace: HashSet<String>,
    /// Connections to the last fragment's bookies, by slot.
    conns: Vec<Option<Arc<BookieConn>>>,
}

struct Inner {
    ledger_id: u64,
    ctx: ClientCtx,
    state: Mutex<State>,
    ack_tx: AckSink,
    window: Arc<Semaphore>,
    window_bytes: usize,
    drained: Notify,
    cancel: CancellationToken,
}

/// Appends to one ledger. Dropping it stops its background work; call
/// [`LedgerWriter::close`] to seal the ledger.
pub struct LedgerWriter {
    inner: Arc<Inner>,
}

impl LedgerWriter {
    pub(crate) fn start(ctx: ClientCtx, md: LedgerMetadata, md_version: Version) -> LedgerWriter {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let window_bytes = ctx.config.max_outstanding_bytes;
        let inner = Arc::new(Inner {
            ledger_id: md.ledger_id,
            ctx,
            state: Mutex::new(State {
                md,
                md_version,
                next_entry: 0,
                length: 0,
                lac: -1,
                pending: VecDeque::new(),
                failed: None,
                closed: false,
                changing_from: None,
                to_replace: HashSet::new(),
                conns: Vec::new(),
            }),
            ack_tx,
            window: Arc::new(Semaphore::new(window_bytes)),
            window_bytes,
            drained: Notify::new(),
            cancel: CancellationToken::new(),
        });
        {
            let mut st = inner.state.lock();
            inner.connect(&mut st);
        }
        tokio::spawn(run_acks(inner.clone(), ack_rx));
        LedgerWriter { inner }
    }

    pub fn ledger_id(&self) -> u64 {
        self.inner.ledger_id
    }

    /// The last entry acknowledged to callers (-1: none).
    pub fn last_add_confirmed(&self) -> i64 {
        self.inner.state.lock().lac
    }

    /// The ledger's metadata as this writer last wrote it.
    pub fn metadata(&self) -> LedgerMetadata {
        self.inner.state.lock().md.clone()
    }

    /// Queues an entry (waiting only for room in the outstanding window) and
    /// returns a future that resolves to its entry id once acknowledged.
    /// Entries are ordered by the order in which `enqueue` calls return.
    pub async fn enqueue(
        &self,
        payload: Bytes,
    ) -> Result<impl Future<Output = Result<u64>> + use<>> {
        self.enqueue_with_crc(payload, None).await
    }

    /// As [`LedgerWriter::enqueue`], with `crc32c(payload)` when the caller
    /// has it (a broker has the producer's checksum of most of the bytes):
    /// the entry's CRC is then combined from it instead of read from the
    /// payload again. The bookies check every entry's CRC against its
    /// bytes, so a wrong one gets the entry refused, never stored.
    pub async fn enqueue_with_crc(
        &self,
        payload: Bytes,
        payload_crc: Option<u32>,
    ) -> Result<impl Future<Output = Result<u64>> + use<>> {
        let acked = self.enqueue_timed(payload, payload_crc).await?;
        Ok(async move { acked.await.map(|(entry_id, _)| entry_id) })
    }

    /// As [`LedgerWriter::enqueue_with_crc`]; the future also gives the
    /// instant the entry was acknowledged, which a caller that gets to the
    /// future later (a benchmark awaiting thousands in order) cannot tell.
    pub async fn enqueue_timed(
        &self,
        payload: Bytes,
        payload_crc: Option<u32>,
    ) -> Result<impl Future<Output = Result<(u64, Instant)>> + use<>> {
        if payload.len() > MAX_ENTRY_SIZE {
            return Err(LedgerError::EntryTooLarge {
                size: payload.len(),
                max: MAX_ENTRY_SIZE,
            });
        }
        let cost = payload.len().clamp(1, self.inner.window_bytes) as u32;
        let permit = self
            .inner
            .window
            .clone()
            .acquire_many_owned(cost)
            .await
            .map_err(|_| {
                // The window is closed when the writer fails: report why.
                match &self.inner.state.lock().failed {
                    Some(e) => LedgerError::WriterFailed(e.to_string()),
                    None => LedgerError::Closed(self.inner.ledger_id),
                }
            })?;
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.inner.state.lock();
            if let Some(e) = &st.failed {
                return Err(LedgerError::WriterFailed(e.to_string()));
            }
            if st.closed {
                return Err(LedgerError::Closed(self.inner.ledger_id));
            }
            let entry_id = st.next_entry;
            st.next_entry += 1;
            st.length += payload.len() as u64;
            let cumulative_length = st.length;
            let crc32c = strata_proto::entry_crc32c_known(
                self.inner.ledger_id,
                entry_id,
                st.length,
                &payload,
                payload_crc,
            );
            let now = Instant::now();
            stages::mark(entry_id, Stage::Queued);
            st.pending.push_back(Pending {
                entry_id,
                payload,
                cumulative_length,
                crc32c,
                sent: 0,
                acked: 0,
                done: Some(tx),
                _permit: permit,
                since: now,
                enqueued: now,
            });
            if st.changing_from.is_none() {
                let i = st.pending.len() - 1;
                self.inner.send(&mut st, i);
            }
        }
        let ledger_id = self.inner.ledger_id;
        Ok(async move { rx.await.map_err(|_| LedgerError::Closed(ledger_id))? })
    }

    /// Appends one entry and waits for its acknowledgement.
    pub async fn append(&self, payload: Bytes) -> Result<u64> {
        self.enqueue(payload).await?.await
    }

    /// Waits for every queued entry, then seals the ledger in the metadata
    /// store with its last entry and length. Returns the last entry id.
    pub async fn close(&self) -> Result<i64> {
        loop {
            let notified = self.inner.drained.notified();
            {
                let mut st = self.inner.state.lock();
                if let Some(e) = &st.failed {
                    return Err(e.clone());
                }
                if st.pending.is_empty() {
                    st.closed = true;
                    break;
                }
            }
            notified.await;
        }
        let (mut md, version, lac, length) = {
            let st = self.inner.state.lock();
            (st.md.clone(), st.md_version, st.lac, st.length)
        };
        md.status = LedgerStatus::Closed;
        md.last_entry_id = lac;
        md.length = length;
        md.closed_at_ms = Some(metadata::now_ms());
        let store = self.inner.ctx.store.as_ref();
        let result = match metadata::write(store, &md, Expect::Version(version)).await {
            Ok(v) => {
                let mut st = self.inner.state.lock();
                st.md = md;
                st.md_version = v;
                Ok(lac)
            }
            Err(e) if e.is_bad_version() => {
                // Someone recovered the ledger: fine if they sealed it where we did.
                let (current, _) = metadata::read(store, self.inner.ledger_id).await?;
                if current.is_closed() && current.last_entry_id == lac {
                    Ok(lac)
                } else {
                    Err(LedgerError::Fenced(self.inner.ledger_id))
                }
            }
            Err(e) => Err(e.into()),
        };
        self.inner.cancel.cancel();
        result
    }
}

impl Drop for LedgerWriter {
    fn drop(&mut self) {
        self.inner.cancel.cancel();
    }
}

impl Inner {
    /// (Re)opens connections to the last fragment's bookies, by slot.
    fn connect(&self, st: &mut State) {
        let bookies = st.md.last_fragment().bookies.clone();
        st.conns = bookies
            .iter()
            .map(|b| match self.ctx.pool.get(b) {
                Ok(c) => Some(c),
                Err(e) => {
                    warn!(bookie = %b, error = %e, "cannot reach bookie");
                    st.to_replace.insert(b.clone());
                    None
                }
            })
            .collect();
    }

    /// Slots of the last fragment holding `entry`.
    fn slots(st: &State, entry: u64) -> impl Iterator<Item = usize> + use<> {
        let e = st.conns.len().max(1) as u64;
        (0..st.md.write_quorum as u64).map(move |r| ((entry + r) % e) as usize)
    }

    fn slot_of(st: &State, bookie: &str) -> Option<usize> {
        st.md
            .last_fragment()
            .bookies
            .iter()
            .position(|b| b == bookie)
    }

    /// Sends pending entry `i` to the members of its write set that do not
    /// have it yet.
    fn send(&self, st: &mut State, i: usize) {
        let lac = st.lac;
        let entry_id = st.pending[i].entry_id;
        for slot in Self::slots(st, entry_id) {
            let bit = 1u64 << slot;
            let p = &st.pending[i];
            if (p.sent | p.acked) & bit != 0 {
                continue;
            }
            if !st.to_replace.is_empty()
                && st.to_replace.contains(&st.md.last_fragment().bookies[slot])
            {
                continue;
            }
            let Some(conn) = st.conns[slot].clone() else {
                continue;
            };
            let p = &mut st.pending[i];
            p.sent |= bit;
            conn.add(
                AddEntry {
                    entry: Some(Entry {
                        ledger_id: self.ledger_id,
                        entry_id,
                        cumulative_length: p.cumulative_length,
                        crc32c: p.crc32c,
                        payload: p.payload.clone(),
                    }),
                    lac,
                    recovery: false,
                },
                self.ack_tx.clone(),
            );
        }
    }

    /// Takes in acknowledgements (all that arrived since the last call,
    /// under one lock), then completes what they gave quorum.
    fn on_acks(self: &Arc<Self>, acks: &mut Vec<AddAck>) {
        let mut st = self.state.lock();
        for ack in acks.drain(..) {
            self.on_ack(&mut st, ack);
        }
        self.complete_ready(&mut st);
    }

    /// Records one acknowledgement. Entries an OK gives quorum are
    /// completed by the caller, once per batch of acks; a failure first
    /// completes them, so an ensemble change starts after the last entry
    /// that already has its quorum (as it would if each ack completed).
    fn on_ack(self: &Arc<Self>, st: &mut State, ack: AddAck) {
        if st.failed.is_some() {
            return;
        }
        if !matches!(ack.outcome, AddOutcome::Ok) {
            self.complete_ready(st);
        }
        let Some(front) = st.pending.front().map(|p| p.entry_id) else {
            return;
        };
        if ack.entry_id < front {
            return;
        }
        let i = (ack.entry_id - front) as usize;
        if i >= st.pending.len() {
            return;
        }
        // An answer from a bookie that has left the ensemble counts for nothing.
        let slot = Self::slot_of(st, &ack.bookie)
            .filter(|s| Self::slots(st, ack.entry_id).any(|w| w == *s));
        match ack.outcome {
            AddOutcome::Ok => {
                if let Some(slot) = slot {
                    st.pending[i].acked |= 1 << slot;
                }
            }
            AddOutcome::Fenced => {
                self.fail(st, LedgerError::Fenced(self.ledger_id));
            }
            AddOutcome::Failed(reason) => {
                let Some(slot) = slot else { return };
                self.ctx.metrics.bookie_error(BookieOp::Add);
                st.pending[i].sent &= !(1 << slot);
                if st.to_replace.insert(ack.bookie.to_string()) {
                    warn!(ledger_id = self.ledger_id, bookie = %ack.bookie, %reason, "bookie failed; replacing it");
                }
                self.start_ensemble_change(st);
            }
        }
    }

    /// Acknowledges the longest prefix of pending entries that has quorum.
    fn complete_ready(&self, st: &mut State) {
        let qa = st.md.ack_quorum;
        // One clock read for every entry completed by this batch of acks.
        let mut now = None;
        while let Some(p) = st.pending.front() {
            if p.acked.count_ones() < qa || st.changing_from.is_some_and(|f| p.entry_id >= f) {
                break;
            }
            let Some(mut p) = st.pending.pop_front() else {
                break;
            };
            st.lac = p.entry_id as i64;
            let m = &self.ctx.metrics;
            m.adds.inc();
            m.add_bytes.inc_by(p.payload.len() as u64);
            let now = *now.get_or_insert_with(Instant::now);
            m.add_latency
                .observe(now.saturating_duration_since(p.enqueued).as_secs_f64());
            stages::mark(p.entry_id, Stage::Acknowledged);
            if let Some(done) = p.done.take() {
                let _ = done.send(Ok((p.entry_id, now)));
            }
        }
        if st.pending.is_empty() {
            self.drained.notify_waiters();
        }
    }

    fn fail(&self, st: &mut State, error: LedgerError) {
        if st.failed.is_none() {
            warn!(ledger_id = self.ledger_id, %error, "ledger writer failed");
            st.failed = Some(error.clone());
        }
        for mut p in st.pending.drain(..) {
            self.ctx.metrics.add_errors.inc();
            if let Some(done) = p.done.take() {
                let _ = done.send(Err(error.clone()));
            }
        }
        self.window.close();
        self.drained.notify_waiters();
    }

    fn start_ensemble_change(self: &Arc<Self>, st: &mut State) {
        if st.changing_from.is_some() || st.to_replace.is_empty() {
            return;
        }
        st.changing_from = Some((st.lac + 1) as u64);
        let inner = self.clone();
        tokio::spawn(async move { inner.ensemble_change().await });
    }

    async fn ensemble_change(self: Arc<Self>) {
        let deadline = Instant::now() + self.ctx.config.ensemble_change_timeout;
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let (md, version, first, failed) = {
                let st = self.state.lock();
                let first = st.changing_from.unwrap_or((st.lac + 1) as u64);
                (st.md.clone(), st.md_version, first, st.to_replace.clone())
            };
            match self.try_change(&md, version, first, &failed).await {
                Ok(Some((new_md, new_version))) => {
                    let mut st = self.state.lock();
                    self.ctx.metrics.ensemble_changes.inc();
                    info!(ledger_id = self.ledger_id, first, ensemble = ?new_md.last_fragment().bookies, "ensemble changed");
                    let old_bookies = st.md.last_fragment().bookies.clone();
                    st.md = new_md;
                    st.md_version = new_version;
                    for b in &failed {
                        st.to_replace.remove(b);
                    }
                    self.resume(&mut st, &old_bookies);
                    // New failures may have come in meanwhile.
                    if !st.to_replace.is_empty() {
                        self.start_ensemble_change(&mut st);
                    }
                    return;
                }
                Ok(None) => {
                    // No replacement yet: try again, or give up at the deadline.
                    if Instant::now() >= deadline {
                        let mut st = self.state.lock();
                        let needed = st.md.ensemble_size as usize;
                        let available = needed.saturating_sub(st.to_replace.len());
                        self.fail(&mut st, LedgerError::NotEnoughBookies { needed, available });
                        return;
                    }
                }
                Err(e @ (LedgerError::Fenced(_) | LedgerError::WriterFailed(_))) => {
                    let mut st = self.state.lock();
                    self.fail(&mut st, e);
                    return;
                }
                Err(e) => {
                    warn!(ledger_id = self.ledger_id, error = %e, "ensemble change attempt failed");
                    if Instant::now() >= deadline {
                        let mut st = self.state.lock();
                        self.fail(&mut st, e);
                        return;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// One attempt: pick replacements and write the new metadata. `Ok(None)`
    /// when no writable bookie can replace a failed one yet.
    async fn try_change(
        &self,
        md: &LedgerMetadata,
        version: Version,
        first: u64,
        failed: &HashSet<String>,
    ) -> Result<Option<(LedgerMetadata, Version)>> {
        let current = md.last_fragment().bookies.clone();
        let mut exclude: HashSet<String> = current.iter().cloned().collect();
        exclude.extend(failed.iter().cloned());
        let needed = current.iter().filter(|b| failed.contains(*b)).count();
        let candidates = self.ctx.writable_bookies(&exclude).await?;
        if candidates.len() < needed {
            return Ok(None);
        }
        let mut replacements = candidates.into_iter();
        let bookies: Vec<String> = current
            .iter()
            .map(|b| {
                if failed.contains(b) {
                    replacements.next().unwrap_or_else(|| b.clone())
                } else {
                    b.clone()
                }
            })
            .collect();
        let mut new_md = md.clone();
        match new_md.ensembles.last_mut() {
            Some(last) if last.first_entry >= first => last.bookies = bookies,
            _ => new_md.ensembles.push(Fragment {
                first_entry: first,
                bookies,
            }),
        }
        let store = self.ctx.store.as_ref();
        match metadata::write(store, &new_md, Expect::Version(version)).await {
            Ok(v) => Ok(Some((new_md, v))),
            Err(e) if e.is_bad_version() => {
                // Only this writer changes an OPEN ledger's metadata; any
                // other change means a recoverer took the ledger over.
                let (current, _) = metadata::read(store, self.ledger_id).await?;
                if current.status != LedgerStatus::Open {
                    return Err(LedgerError::Fenced(self.ledger_id));
                }
                Err(LedgerError::WriterFailed(
                    "ledger metadata changed by another client".into(),
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// After an ensemble change: forget what the replaced slots confirmed,
    /// and send every entry where it is missing.
    fn resume(&self, st: &mut State, old_bookies: &[String]) {
        st.changing_from = None;
        let replaced: u64 = st
            .md
            .last_fragment()
            .bookies
            .iter()
            .zip(old_bookies)
            .enumerate()
            .filter(|(_, (new, old))| new != old)
            .fold(0, |mask, (slot, _)| mask | 1 << slot);
        self.connect(st);
        for i in 0..st.pending.len() {
            let p = &mut st.pending[i];
            p.acked &= !replaced;
            p.sent &= !replaced;
            self.send(st, i);
        }
        self.complete_ready(st);
    }

    /// Treats bookies that have not answered an old add as failed.
    fn check_timeouts(self: &Arc<Self>) {
        let mut st = self.state.lock();
        if st.failed.is_some() || st.changing_from.is_some() {
            return;
        }
        let timeout = self.ctx.config.add_timeout;
        let mut slow = Vec::new();
        let bookies = &st.md.last_fragment().bookies;
        for p in st
            .pending
            .iter()
            .take_while(|p| p.since.elapsed() > timeout)
        {
            let waiting = p.sent & !p.acked;
            for (slot, b) in bookies.iter().enumerate() {
                if waiting & (1 << slot) != 0 {
                    slow.push(b.clone());
                }
            }
        }
        if slow.is_empty() {
            return;
        }
        for b in slow {
            self.ctx.metrics.bookie_error(BookieOp::Add);
            if st.to_replace.insert(b.clone()) {
                warn!(ledger_id = self.ledger_id, bookie = %b, "add timed out; replacing bookie");
            }
        }
        for p in st.pending.iter_mut() {
            p.since = Instant::now();
        }
        self.start_ensemble_change(&mut st);
    }
}

async fn run_acks(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<AddAck>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    // Grows with bursts and is given back once the writer goes quiet: a
    // broker holds a writer per topic, most of them idle (a buffer of 256
    // acks made up 14 KiB of each idle topic's memory).
    let mut acks = Vec::new();
    let mut busy = false;
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => break,
            n = rx.recv_many(&mut acks, 1024) => match n {
                0 => break,
                _ => {
                    busy = true;
                    inner.on_acks(&mut acks);
                }
            },
            _ = tick.tick() => {
                inner.check_timeouts();
                if !busy {
                    acks = Vec::new();
                }
                busy = false;
            }
        }
    }
    // Anything still pending when the writer goes away fails now.
    let mut st = inner.state.lock();
    if !st.pending.is_empty() {
        inner.fail(&mut st, LedgerError::Closed(inner.ledger_id));
    }
}
