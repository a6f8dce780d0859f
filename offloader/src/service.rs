//! The offload service: decides which ledgers go to object storage, uploads
//! and verifies them, deletes the bookies' copy after the deletion lag, and
//! answers manual requests.
//!
//! Several offloaders may run against one metadata store. A topic is worked
//! on by one of them at a time: the one holding its lock, a session-bound
//! key that vanishes when its holder dies. Triggers: a change of a topic's
//! managed-ledger record (a rollover closes a ledger), a manual request, and
//! a timer that looks at every topic (for age thresholds and lags).
//!
//! Order of a ledger's offload (each step survives a crash at any point):
//! 1. its record is written `uploading` with the upload's uuid and object
//!    base, so the objects are never unreferenced;
//! 2. data and index are uploaded, then read back and verified;
//! 3. the record turns `complete` (compare-and-set): from now on readers
//!    use the objects;
//! 4. after the namespace's deletion lag, the bookies' copy is deleted and
//!    the record says so.
//!
//! A crash in 1–2 leaves an `uploading` record; the next holder of the lock
//! deletes its objects and starts again. Nothing is ever marked complete
//! without a verified copy, and the bookies' copy never goes before that.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use parking_lot::Mutex;
use strata_common::metadata::{
    self, Expect, MetadataStore, PutOptions, Session, Version, WatchEvent,
};
use strata_common::paths;
use strata_ledger::{LedgerClient, LedgerError};
use strata_managed_ledger::keys as ml_keys;
use strata_managed_ledger::{LedgerInfo, ManagedLedgerInfo};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::{OffloadError, Result};
use crate::format::LedgerHeader;
use crate::keys;
use crate::metrics::OffloaderMetrics;
use crate::policy::{self, Effective, NamespaceOffload};
use crate::records::{OffloadRecord, OffloadRequest, OffloadState, OffloadStatus, RunStatus};
use crate::registry::{StoreRegistry, Usage, namespace_of, object_base};
use crate::upload::{self, UploadOptions};

/// Payload bytes read from bookies per request while uploading.
const READ_CHUNK_BYTES: u64 = 8 << 20;

#[derive(Clone, Debug)]
pub struct OffloaderConfig {
    /// Unique per process; written into records and locks.
    pub id: String,
    /// How often every topic is looked at (age thresholds, deletion lags).
    pub scan_interval: Duration,
    /// Topics offloaded at the same time.
    pub max_concurrent_topics: usize,
    pub upload: UploadOptions,
    /// How often objects no record refers to are looked for.
    pub reconcile_interval: Duration,
    /// An unreferenced object younger than this is left alone.
    pub orphan_grace: Duration,
    /// TTL of the session holding this offloader's topic locks.
    pub session_ttl: Duration,
}

impl Default for OffloaderConfig {
    fn default() -> Self {
        OffloaderConfig {
            id: format!("offloader-{}", uuid::Uuid::new_v4()),
            scan_interval: Duration::from_secs(60),
            max_concurrent_topics: 2,
            upload: UploadOptions::default(),
            reconcile_interval: Duration::from_secs(3600),
            orphan_grace: Duration::from_secs(3600),
            session_ttl: Duration::from_secs(10),
        }
    }
}

pub(crate) struct Inner {
    pub cfg: OffloaderConfig,
    pub meta: Arc<dyn MetadataStore>,
    pub client: LedgerClient,
    pub stores: Arc<StoreRegistry>,
    pub usage: Arc<Usage>,
    pub metrics: Arc<OffloaderMetrics>,
    session: Arc<dyn Session>,
    /// Topics waiting to be looked at (deduplicated).
    pending: Mutex<(VecDeque<String>, HashSet<String>)>,
    wake: Notify,
    /// Stores already probed by this offloader.
    probed: tokio::sync::Mutex<HashSet<String>>,
}

/// A running offload service; stops when its cancel token fires.
#[derive(Clone)]
pub struct Offloader {
    pub(crate) inner: Arc<Inner>,
}

impl Offloader {
    /// Probes the default store (failing with what is wrong), then starts
    /// the triggers and workers.
    pub async fn start(
        cfg: OffloaderConfig,
        meta: Arc<dyn MetadataStore>,
        client: LedgerClient,
        stores: Arc<StoreRegistry>,
        usage: Arc<Usage>,
        cancel: CancellationToken,
    ) -> Result<Offloader> {
        stores.default_store().probe().await?;
        let session = meta.session(cfg.session_ttl).await?;
        let inner = Arc::new(Inner {
            metrics: Arc::new(OffloaderMetrics::default()),
            probed: tokio::sync::Mutex::new(HashSet::from([stores
                .default_store()
                .url()
                .to_string()])),
            cfg,
            meta,
            client,
            stores,
            usage,
            session,
            pending: Mutex::new((VecDeque::new(), HashSet::new())),
            wake: Notify::new(),
        });
        let me = Offloader { inner };
        tokio::spawn(
            me.clone()
                .watch_loop(ml_keys::MANAGED_LEDGERS, cancel.clone()),
        );
        tokio::spawn(me.clone().watch_loop(keys::REQUESTS, cancel.clone()));
        tokio::spawn(me.clone().timer_loop(cancel.clone()));
        tokio::spawn(me.clone().reconcile_loop(cancel.clone()));
        for _ in 0..me.inner.cfg.max_concurrent_topics.max(1) {
            tokio::spawn(me.clone().worker(cancel.clone()));
        }
        let session = me.inner.session.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            let _ = session.close().await;
        });
        info!(id = %me.inner.cfg.id, store = %me.inner.stores.default_store().url(), "offloader started");
        Ok(me)
    }

    pub fn metrics(&self) -> Arc<OffloaderMetrics> {
        self.inner.metrics.clone()
    }

    /// Asks for `managed_ledger` to be looked at soon.
    pub fn enqueue(&self, managed_ledger: &str) {
        let mut p = self.inner.pending.lock();
        if p.1.insert(managed_ledger.to_string()) {
            p.0.push_back(managed_ledger.to_string());
            drop(p);
            self.inner.wake.notify_one();
        }
    }

    fn next_pending(&self) -> Option<String> {
        let mut p = self.inner.pending.lock();
        let ml = p.0.pop_front()?;
        p.1.remove(&ml);
        Some(ml)
    }

    async fn worker(self, cancel: CancellationToken) {
        loop {
            let Some(ml) = self.next_pending() else {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.inner.wake.notified() => continue,
                }
            };
            if let Err(e) = self.run_topic(&ml).await {
                warn!(managed_ledger = %ml, error = %e, "offload pass failed; will retry");
                self.inner.metrics.failures.inc();
            }
        }
    }

    async fn watch_loop(self, prefix: &'static str, cancel: CancellationToken) {
        loop {
            let mut events = match self.inner.meta.watch(prefix).await {
                Ok(w) => w,
                Err(e) => {
                    warn!(prefix, error = %e, "offloader watch failed; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                let ev = tokio::select! {
                    _ = cancel.cancelled() => return,
                    ev = events.next() => ev,
                };
                match ev {
                    Some(Ok(WatchEvent::Put { key, .. })) => {
                        let ml = if prefix == keys::REQUESTS {
                            keys::managed_ledger_of(keys::REQUESTS, &key)
                        } else {
                            ml_keys::managed_ledger_name(&key)
                        };
                        if let Some(ml) = ml {
                            self.enqueue(&ml);
                        }
                    }
                    Some(Ok(WatchEvent::Delete { .. })) => {}
                    // Missed events: the timer's full scan covers them.
                    Some(Ok(WatchEvent::Lagged)) => self.scan_all().await,
                    Some(Err(_)) | None => break,
                }
            }
        }
    }

    async fn timer_loop(self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.inner.cfg.scan_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => self.scan_all().await,
            }
        }
    }

    /// Queues every topic.
    pub async fn scan_all(&self) {
        match self.inner.meta.list(ml_keys::MANAGED_LEDGERS).await {
            Ok(kvs) => {
                for kv in kvs {
                    if let Some(ml) = ml_keys::managed_ledger_name(&kv.key) {
                        self.enqueue(&ml);
                    }
                }
            }
            Err(e) => warn!(error = %e, "offloader could not list topics"),
        }
    }

    async fn reconcile_loop(self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.inner.cfg.reconcile_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.reconcile().await {
                        warn!(error = %e, "reconciliation failed");
                    }
                }
            }
        }
    }

    /// One pass over a topic: offload what its policies or a request ask
    /// for, delete bookie copies whose lag has passed. Skipped when another
    /// offloader holds the topic.
    pub async fn run_topic(&self, ml: &str) -> Result<()> {
        let meta = self.inner.meta.as_ref();
        let Some((info, _)) =
            metadata::get_json::<ManagedLedgerInfo>(meta, &ml_keys::managed_ledger(ml)).await?
        else {
            return Ok(()); // Deleted.
        };
        let policy = self.policy_of(ml).await?;
        let request = metadata::get_json::<OffloadRequest>(meta, &keys::request(ml)).await?;
        let records = self.records(ml).await?;
        let (wanted, lag_due) = plan(
            &info,
            &policy,
            request.as_ref().map(|(r, _)| r.ledger_id),
            &records,
            now_ms(),
        );
        if wanted.is_empty() && lag_due.is_empty() && request.is_none() {
            return Ok(());
        }
        let Some(lock) = self.lock(ml).await? else {
            debug!(managed_ledger = ml, "another offloader holds the topic");
            return Ok(());
        };
        let result = self
            .work(ml, &info, &policy, request, wanted, lag_due)
            .await;
        if let Err(e) = meta.delete(&keys::lock(ml), Expect::Version(lock)).await {
            debug!(managed_ledger = ml, error = %e, "releasing the offload lock");
        }
        result
    }

    async fn work(
        &self,
        ml: &str,
        info: &ManagedLedgerInfo,
        policy: &Effective,
        request: Option<(OffloadRequest, Version)>,
        wanted: Vec<u64>,
        lag_due: Vec<u64>,
    ) -> Result<()> {
        let ledgers: HashMap<u64, &LedgerInfo> =
            info.ledgers.iter().map(|l| (l.ledger_id, l)).collect();
        let mut status = request.as_ref().map(|(r, _)| OffloadStatus {
            status: RunStatus::Running,
            last_error: String::new(),
            request: r.clone(),
            ledgers_total: wanted.len() as u64,
            ledgers_done: 0,
            bytes_total: wanted
                .iter()
                .filter_map(|id| ledgers.get(id))
                .map(|l| l.size_bytes)
                .sum(),
            bytes_done: 0,
            updated_ms: now_ms(),
        });
        if let Some(s) = &status {
            self.put_status(ml, s).await;
        }
        let mut outcome = Ok(());
        let mut lag_due = lag_due;
        // One progress report for the whole pass: the status as of the
        // last ledger done, when the last report went and what it said
        // (rate-limited, and never going back: two ledgers may report).
        let progress_state = Arc::new(Mutex::new((
            status.clone(),
            std::time::Instant::now(),
            0u64,
        )));
        let progress_for = |done_before: u64| {
            let state = progress_state.clone();
            let me = self.clone();
            let ml = ml.to_string();
            move |bytes: u64| {
                let done = done_before + bytes;
                let mut s = {
                    let mut st = state.lock();
                    let (Some(s), at, last) = &mut *st else {
                        return;
                    };
                    if done <= *last || at.elapsed() < Duration::from_millis(500) {
                        return;
                    }
                    (*at, *last) = (std::time::Instant::now(), done);
                    s.clone()
                };
                s.bytes_done = done;
                s.updated_ms = now_ms();
                let me = me.clone();
                let ml = ml.clone();
                tokio::spawn(async move { me.put_status(&ml, &s).await });
            }
        };
        // Ledgers go in order, one uploading at a time: each takes the
        // upload slot before it starts and gives it back once uploaded, so
        // the next one uploads while it is read back and verified. A failure
        // closes the slot: no further ledger starts, those running finish.
        let upload_slot = tokio::sync::Semaphore::new(1);
        let mut before = 0;
        let mut running: futures::stream::FuturesOrdered<_> = wanted
            .iter()
            .filter_map(|id| ledgers.get(id).copied())
            .map(|l| {
                let done_before = before;
                before += l.size_bytes;
                let progress = progress_for(done_before);
                let slot = &upload_slot;
                async move {
                    let permit = Mutex::new(Some(slot.acquire().await.ok()?));
                    let uploaded = || drop(permit.lock().take());
                    let res = self
                        .offload_ledger(ml, l, policy, &progress, &uploaded)
                        .await;
                    if res.is_err() {
                        // Before a slot this ledger still holds goes to the next.
                        slot.close();
                    }
                    Some((l, done_before, res))
                }
            })
            .collect();
        while let Some(finished) = running.next().await {
            let Some((l, done_before, res)) = finished else {
                continue;
            };
            match res {
                Ok(()) => {
                    // The bookies' copy goes now (no lag) or when its lag
                    // has passed, rather than at the next full scan.
                    match policy.deletion_lag {
                        Some(lag) if lag.is_zero() => lag_due.push(l.ledger_id),
                        Some(lag) if lag < self.inner.cfg.scan_interval => {
                            let me = self.clone();
                            let ml = ml.to_string();
                            tokio::spawn(async move {
                                tokio::time::sleep(lag).await;
                                me.enqueue(&ml);
                            });
                        }
                        _ => {}
                    }
                    if let Some(s) = &mut status {
                        s.ledgers_done += 1;
                        s.bytes_done = s.bytes_done.max(done_before + l.size_bytes);
                        s.updated_ms = now_ms();
                        progress_state.lock().0 = Some(s.clone());
                        self.put_status(ml, s).await;
                    }
                }
                Err(e) if outcome.is_ok() => outcome = Err(e),
                Err(e) => {
                    warn!(managed_ledger = ml, ledger_id = l.ledger_id, error = %e, "offload failed")
                }
            }
        }
        for id in lag_due {
            if let Err(e) = self.delete_bookie_copy(ml, id).await {
                warn!(managed_ledger = ml, ledger_id = id, error = %e, "could not delete the bookies' copy");
            }
        }
        if let (Some(mut s), Some((req, version))) = (status, request) {
            match &outcome {
                Ok(()) => s.status = RunStatus::Success,
                Err(e) => {
                    s.status = RunStatus::Error;
                    s.last_error = e.to_string();
                }
            }
            s.updated_ms = now_ms();
            self.put_status(ml, &s).await;
            // Done with it either way (the status says how it went); a
            // newer request (another version) stays for the next pass.
            let _ = req;
            let _ = self
                .inner
                .meta
                .delete(&keys::request(ml), Expect::Version(version))
                .await;
        }
        outcome
    }

    /// Uploads, verifies and records one ledger; see the module docs.
    /// `uploaded` is called once its objects are written, before they are
    /// read back.
    async fn offload_ledger(
        &self,
        ml: &str,
        l: &LedgerInfo,
        policy: &Effective,
        progress: &(dyn Fn(u64) + Send + Sync),
        uploaded: &(dyn Fn() + Send + Sync),
    ) -> Result<()> {
        let meta = self.inner.meta.as_ref();
        let key = keys::record(ml, l.ledger_id);
        let store = self.inner.stores.get(policy.store_url.as_deref()).await?;
        self.probe_once(&store).await?;
        let io = self.inner.usage.sink_for(ml);
        // A leftover `uploading` record: its writer died (we hold the lock).
        let expect = match metadata::get_json::<OffloadRecord>(meta, &key).await? {
            Some((old, v)) if old.is_complete() => {
                let _ = v;
                return Ok(());
            }
            Some((old, v)) => {
                self.delete_upload_objects(old).await;
                Expect::Version(v)
            }
            None => Expect::Absent,
        };
        let uuid = uuid::Uuid::new_v4().to_string();
        let base = store.path(&object_base(ml, l.ledger_id, &uuid));
        let mut record = OffloadRecord {
            managed_ledger: ml.to_string(),
            ledger_id: l.ledger_id,
            state: OffloadState::Uploading,
            store_url: store.url().to_string(),
            base: base.to_string(),
            uuid,
            offloader: self.inner.cfg.id.clone(),
            started_ms: now_ms(),
            objects: None,
            completed_ms: None,
            bookie_deleted_ms: None,
            scrubbed_ms: None,
        };
        let version = metadata::put_json(meta, &key, &record, expect).await?;
        let started = std::time::Instant::now();
        let result = async {
            let reader = Arc::new(
                self.inner
                    .client
                    .open(l.ledger_id)
                    .await
                    .map_err(|e| source(l.ledger_id, e))?,
            );
            let header = LedgerHeader {
                ledger_id: l.ledger_id,
                managed_ledger: ml.to_string(),
                entries: l.entries,
                payload_bytes: l.size_bytes,
                created_ms: l.created_ms,
                closed_ms: l.closed_ms,
                offloaded_ms: now_ms(),
                properties: BTreeMap::new(),
            };
            let per_read =
                (READ_CHUNK_BYTES / (l.size_bytes / l.entries.max(1)).max(1)).clamp(1, 10_000);
            let ranges: Vec<(u64, u64)> = (0..l.entries)
                .step_by(per_read as usize)
                .map(|first| (first, (first + per_read).min(l.entries) - 1))
                .collect();
            let ledger_id = l.ledger_id;
            let entries = stream::iter(ranges)
                .map(move |(first, last)| {
                    let reader = reader.clone();
                    async move {
                        let got = reader
                            .read(first, last)
                            .await
                            .map_err(|e| source(ledger_id, e))?;
                        if got.len() as u64 != last - first + 1 {
                            return Err(OffloadError::Source {
                                ledger_id,
                                reason: format!(
                                    "asked entries {first}..={last}, got {}",
                                    got.len()
                                ),
                            });
                        }
                        Ok(stream::iter(got.into_iter().map(|e| {
                            Ok::<(u64, Bytes), OffloadError>((e.entry_id, e.payload))
                        })))
                    }
                })
                // Read the next chunk while the current one uploads.
                .buffered(2)
                .try_flatten()
                .boxed();
            let objects = upload::upload_ledger(
                store.store(),
                &base,
                &header,
                entries,
                &self.inner.cfg.upload,
                &io,
                progress,
            )
            .await?;
            uploaded();
            let upload_time = started.elapsed();
            // With the configured timeouts and retries: a hung store must
            // fail the pass in bounded time, like the upload's requests.
            upload::verify_with(store.store(), &objects, &io, &self.inner.cfg.upload.retry).await?;
            Ok::<_, OffloadError>((objects, upload_time, started.elapsed() - upload_time))
        }
        .await;
        let (objects, upload_time, verify_time) = match result {
            Ok(o) => o,
            Err(e) => {
                self.delete_upload_objects(record.clone()).await;
                let _ = meta.delete(&key, Expect::Version(version)).await;
                return Err(e);
            }
        };
        let bytes = objects.data_size + objects.index_size;
        record.state = OffloadState::Complete;
        record.objects = Some(objects);
        record.completed_ms = Some(now_ms());
        if let Err(e) = metadata::put_json(meta, &key, &record, Expect::Version(version)).await {
            // Someone else took over the record (our lock lapsed) or it was
            // deleted by retention: our objects are nobody's.
            self.delete_upload_objects(record.clone()).await;
            return Err(e.into());
        }
        let secs = started.elapsed().as_secs_f64();
        self.inner.metrics.ledgers_offloaded.inc();
        self.inner.metrics.bytes_offloaded.inc_by(bytes);
        info!(
            managed_ledger = ml,
            ledger_id = l.ledger_id,
            bytes,
            secs,
            upload_secs = upload_time.as_secs_f64(),
            verify_secs = verify_time.as_secs_f64(),
            mb_per_s = bytes as f64 / 1e6 / secs.max(1e-9),
            "ledger offloaded and verified"
        );
        Ok(())
    }

    async fn delete_upload_objects(&self, record: OffloadRecord) {
        let io = self.inner.usage.sink_for(&record.managed_ledger);
        match self.inner.stores.get(Some(&record.store_url)).await {
            Ok(store) => {
                let base = object_store::path::Path::from(record.base.as_str());
                if let Err(e) = upload::delete_objects(store.store(), &base, &io).await {
                    warn!(base = %record.base, error = %e, "could not delete an upload's objects; reconciliation will");
                }
            }
            Err(e) => {
                warn!(store = %record.store_url, error = %e, "could not open a store to delete objects")
            }
        }
    }

    /// Deletes the bookies' copy of an offloaded ledger (its lag passed).
    async fn delete_bookie_copy(&self, ml: &str, ledger_id: u64) -> Result<()> {
        let meta = self.inner.meta.as_ref();
        let key = keys::record(ml, ledger_id);
        let Some((mut record, version)) = metadata::get_json::<OffloadRecord>(meta, &key).await?
        else {
            return Ok(());
        };
        if !record.is_complete() || record.bookie_deleted_ms.is_some() {
            return Ok(());
        }
        match self.inner.client.delete(ledger_id).await {
            Ok(()) | Err(LedgerError::NoSuchLedger(_)) => {}
            Err(e) => return Err(source(ledger_id, e)),
        }
        record.bookie_deleted_ms = Some(now_ms());
        metadata::put_json(meta, &key, &record, Expect::Version(version)).await?;
        self.inner.metrics.bookie_copies_deleted.inc();
        info!(
            managed_ledger = ml,
            ledger_id, "deleted the bookies' copy of an offloaded ledger"
        );
        Ok(())
    }

    async fn probe_once(&self, store: &crate::store::ColdStore) -> Result<()> {
        let mut probed = self.inner.probed.lock().await;
        if !probed.contains(store.url()) {
            store.probe().await?;
            probed.insert(store.url().to_string());
        }
        Ok(())
    }

    /// The topic lock's version, or `None` if another offloader has it.
    async fn lock(&self, ml: &str) -> Result<Option<Version>> {
        let opts = PutOptions {
            expect: Expect::Absent,
            session: Some(self.inner.session.clone()),
        };
        match self
            .inner
            .meta
            .put(
                &keys::lock(ml),
                Bytes::from(self.inner.cfg.id.clone()),
                opts,
            )
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_bad_version() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn policy_of(&self, ml: &str) -> Result<Effective> {
        let ns = namespace_of(ml);
        let (tenant, namespace) = ns.split_once('/').unwrap_or((&ns, ""));
        let found = metadata::get_json::<NamespaceOffload>(
            self.inner.meta.as_ref(),
            &paths::namespace(tenant, namespace),
        )
        .await?;
        Ok(found.map(|(n, _)| n).unwrap_or_default().effective())
    }

    /// The offload records of a topic, by ledger id.
    pub async fn records(&self, ml: &str) -> Result<BTreeMap<u64, (OffloadRecord, Version)>> {
        records_of(self.inner.meta.as_ref(), ml).await
    }

    async fn put_status(&self, ml: &str, s: &OffloadStatus) {
        if let Err(e) =
            metadata::put_json(self.inner.meta.as_ref(), &keys::status(ml), s, Expect::Any).await
        {
            debug!(managed_ledger = ml, error = %e, "could not write offload status");
        }
    }
}

/// The offload records of a topic, by ledger id.
pub async fn records_of(
    meta: &dyn MetadataStore,
    ml: &str,
) -> Result<BTreeMap<u64, (OffloadRecord, Version)>> {
    let mut out = BTreeMap::new();
    for kv in meta.list(&keys::records_of(ml)).await? {
        match serde_json::from_slice::<OffloadRecord>(&kv.value) {
            Ok(r) => {
                out.insert(r.ledger_id, (r, kv.version));
            }
            Err(e) => {
                warn!(key = %kv.key, error = %e, "ignoring an offload record that does not parse")
            }
        }
    }
    Ok(out)
}

/// Which ledgers to offload and whose bookie copy may go now. A plain
/// function: iterator closures over borrowed records must not live in the
/// async state machines (they would make them not `Send`).
fn plan(
    info: &ManagedLedgerInfo,
    policy: &Effective,
    requested_before: Option<u64>,
    records: &BTreeMap<u64, (OffloadRecord, Version)>,
    now: u64,
) -> (Vec<u64>, Vec<u64>) {
    let wanted = policy::candidates(info, policy, requested_before, now)
        .into_iter()
        .filter(|id| !records.get(id).is_some_and(|(r, _)| r.is_complete()))
        .collect();
    let lag_due = records
        .values()
        .filter(|(r, _)| r.is_complete() && r.bookie_deleted_ms.is_none())
        .filter(|(r, _)| {
            policy.deletion_lag.is_some_and(|lag| {
                now.saturating_sub(r.completed_ms.unwrap_or(now)) >= lag.as_millis() as u64
            })
        })
        .map(|(r, _)| r.ledger_id)
        .collect();
    (wanted, lag_due)
}

fn source(ledger_id: u64, e: LedgerError) -> OffloadError {
    OffloadError::Source {
        ledger_id,
        reason: e.to_string(),
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
