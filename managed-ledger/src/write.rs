//! The write path: adds, ledger rollover, and sealing ledgers.
//!
//! Adds are serialized by the `write` lock: each one gets its place in the
//! current ledger's writer (`enqueue`) before the lock is released, so the
//! order of positions is the order in which `add_entry` returned, even
//! across a rollover (a new ledger has a higher id, and its entries become
//! visible to readers only once every older ledger is sealed).
//!
//! Each ledger being written has a tracker task that awaits its adds in
//! order: it moves the in-memory view forward (`last_confirmed`, entry
//! counts, the entry cache) whether or not the caller polls its
//! [`AddFuture`], then completes the caller's future.
//!
//! Rollover (entry count / size once the ledger is old enough, age, or a
//! failed writer): create the next ledger, add it to the info record (CAS),
//! switch adds to it, and seal the old one in the background: wait for its
//! tracker, close its writer (or, if it failed, recover it so its
//! confirmed entries are readable), then record its final count (CAS).
//! The next ledger is created eagerly: at open, and at each rollover; after
//! a failure (of the writer or of creating a ledger) at the next add.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_ledger::{LedgerError, LedgerWriter};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::core::{Core, now_ms};
use crate::error::{ManagedLedgerError, Result};
use crate::info::LedgerInfo;
use crate::ledger::AddFuture;
use crate::position::Position;
use crate::view::Slot;

/// Adds queued per ledger between the write path and its tracker; a full
/// queue makes `add_entry` wait (the writer's byte window is the main limit).
const TRACKER_QUEUE: usize = 8192;

/// After failing to create a ledger for a rollover, keep writing to the old
/// one this long before trying again.
const ROLLOVER_RETRY: Duration = Duration::from_secs(5);

type AddResult = Pin<Box<dyn Future<Output = strata_ledger::Result<u64>> + Send>>;

struct PendingAdd {
    result: AddResult,
    data: Bytes,
    /// The writer's LAC before this add was enqueued (sent along with it).
    lac_before: i64,
    done: oneshot::Sender<Result<Position>>,
}

/// The ledger adds currently go to.
pub(crate) struct CurrentLedger {
    ledger_id: u64,
    writer: Arc<LedgerWriter>,
    tx: mpsc::Sender<PendingAdd>,
    tracker: JoinHandle<Option<LedgerError>>,
    /// Set by the tracker on the writer's first failure.
    failed: Arc<AtomicBool>,
    entries: u64,
    bytes: u64,
    created: Instant,
}

#[derive(Default)]
pub(crate) struct WriteState {
    current: Option<CurrentLedger>,
    /// No size/count/age rollover before this (ledger creation failed).
    retry_rollover_at: Option<Instant>,
    /// Seals of earlier ledgers still running; close waits for them.
    sealing: Vec<JoinHandle<()>>,
}

impl WriteState {
    fn track_seal(&mut self, seal: JoinHandle<()>) {
        self.sealing.retain(|h| !h.is_finished());
        self.sealing.push(seal);
    }

    pub fn set_current(&mut self, current: CurrentLedger) {
        self.current = Some(current);
    }

    pub fn current_ledger(&self) -> Option<u64> {
        self.current.as_ref().map(|c| c.ledger_id)
    }
}

impl CurrentLedger {
    /// Stops taking adds and waits for the ones in flight: returns the
    /// ledger, its writer and the error that failed it, if any.
    async fn drain(self) -> (u64, Arc<LedgerWriter>, Option<LedgerError>) {
        let CurrentLedger {
            ledger_id,
            writer,
            tx,
            tracker,
            ..
        } = self;
        drop(tx);
        let error = tracker.await.ok().flatten();
        (ledger_id, writer, error)
    }

    fn should_roll(&self, cfg: &crate::ManagedLedgerConfig) -> bool {
        let age = self.created.elapsed();
        (self.entries > 0 && age >= cfg.max_ledger_age)
            || (age >= cfg.min_ledger_age_for_rollover
                && (self.entries >= cfg.max_entries_per_ledger
                    || self.bytes >= cfg.max_ledger_size_bytes))
    }
}

impl Core {
    pub async fn add_entry(
        self: &Arc<Self>,
        data: Bytes,
        crc32c: Option<u32>,
    ) -> Result<AddFuture> {
        let mut ws = self.write.lock().await;
        self.check_open()?;
        let must_roll = match &ws.current {
            None => true,
            Some(c) => c.failed.load(Ordering::Acquire),
        };
        let may_roll = ws.retry_rollover_at.is_none_or(|t| Instant::now() >= t);
        let wants_roll = ws
            .current
            .as_ref()
            .is_some_and(|c| c.should_roll(&self.config.lock()));
        if must_roll || (wants_roll && may_roll) {
            self.rollover(&mut ws).await?;
        }
        let mut retried = false;
        loop {
            let Some(cur) = ws.current.as_mut() else {
                return Err(ManagedLedgerError::Closed(self.name.to_string()));
            };
            let lac_before = cur.writer.last_add_confirmed();
            match cur.writer.enqueue_with_crc(data.clone(), crc32c).await {
                Ok(result) => {
                    cur.entries += 1;
                    cur.bytes += data.len() as u64;
                    let (done, rx) = oneshot::channel();
                    let add = PendingAdd {
                        result: Box::pin(result),
                        data,
                        lac_before,
                        done,
                    };
                    if cur.tx.send(add).await.is_err() {
                        // The tracker only stops once its queue is closed.
                        return Err(ManagedLedgerError::Closed(self.name.to_string()));
                    }
                    return Ok(AddFuture {
                        rx,
                        name: self.name.clone(),
                    });
                }
                Err(e @ LedgerError::EntryTooLarge { .. }) => return Err(e.into()),
                Err(e) if retried => return Err(e.into()),
                Err(e) => {
                    // The writer failed since the check above: give the add
                    // its place in a new ledger instead.
                    warn!(managed_ledger = %self.name, ledger_id = cur.ledger_id, error = %e, "ledger writer failed; rolling over");
                    cur.failed.store(true, Ordering::Release);
                    retried = true;
                    self.rollover(&mut ws).await?;
                }
            }
        }
    }

    /// Switches adds to a new ledger and seals the old one in the background.
    async fn rollover(self: &Arc<Self>, ws: &mut WriteState) -> Result<()> {
        let old = ws.current.take();
        let old_failed = old
            .as_ref()
            .is_some_and(|c| c.failed.load(Ordering::Acquire));
        let old = match old {
            Some(old) if old_failed => {
                // Learn why it failed before writing anything: a fenced
                // ledger means another owner recovered it.
                let (ledger_id, writer, error) = old.drain().await;
                if matches!(error, Some(LedgerError::Fenced(_))) {
                    self.fence();
                    return Err(ManagedLedgerError::Fenced(self.name.to_string()));
                }
                let core = self.clone();
                ws.track_seal(tokio::spawn(async move {
                    core.seal(ledger_id, writer, false, error).await
                }));
                None
            }
            other => other,
        };
        match self.create_ledger().await {
            Ok(new) => {
                ws.current = Some(new);
                ws.retry_rollover_at = None;
                if let Some(old) = old {
                    ws.track_seal(tokio::spawn(self.clone().seal_current(old)));
                }
                Ok(())
            }
            Err(e) => {
                if let Some(old) = old {
                    if e.is_fenced() {
                        ws.track_seal(tokio::spawn(self.clone().seal_current(old)));
                    } else {
                        warn!(managed_ledger = %self.name, error = %e, "could not create a ledger; writing on to the current one");
                        ws.current = Some(old);
                        ws.retry_rollover_at = Some(Instant::now() + ROLLOVER_RETRY);
                        return Ok(());
                    }
                }
                Err(e)
            }
        }
    }

    /// Creates a ledger, adds it to the info record and the view, and
    /// starts its tracker.
    pub(crate) async fn create_ledger(self: &Arc<Self>) -> Result<CurrentLedger> {
        let cfg = self.config();
        let custom = BTreeMap::from([
            ("component".to_string(), "managed-ledger".to_string()),
            ("managed-ledger".to_string(), self.name.to_string()),
        ]);
        let writer = self
            .client
            .create_with(cfg.ensemble_size, cfg.write_quorum, cfg.ack_quorum, custom)
            .await?;
        let ledger_id = writer.ledger_id();
        let info = LedgerInfo {
            ledger_id,
            entries: 0,
            size_bytes: 0,
            created_ms: now_ms(),
            closed: false,
            closed_ms: None,
        };
        let recorded = info.clone();
        if let Err(e) = self.update_info(move |i| i.ledgers.push(recorded)).await {
            // Not in the record, so nobody will ever read it.
            let client = self.client.clone();
            tokio::spawn(async move {
                let _ = writer.close().await;
                let _ = client.delete(ledger_id).await;
            });
            return Err(e);
        }
        {
            let mut view = self.view.lock();
            view.ledgers.insert(ledger_id, Slot::new(info));
        }
        debug!(managed_ledger = %self.name, ledger_id, "created ledger");
        let (tx, rx) = mpsc::channel(TRACKER_QUEUE);
        let failed = Arc::new(AtomicBool::new(false));
        let tracker = tokio::spawn(track(self.clone(), ledger_id, rx, failed.clone()));
        Ok(CurrentLedger {
            ledger_id,
            writer: Arc::new(writer),
            tx,
            tracker,
            failed,
            entries: 0,
            bytes: 0,
            created: Instant::now(),
        })
    }

    /// Seals the ledger adds went to until now.
    async fn seal_current(self: Arc<Self>, old: CurrentLedger) {
        let (ledger_id, writer, error) = old.drain().await;
        self.seal(ledger_id, writer, true, error).await;
    }

    /// Closes (or, after a failure, recovers) a ledger whose tracker has
    /// finished, then records its final count. `healthy`: the writer did
    /// not fail and may be closed normally.
    async fn seal(
        self: Arc<Self>,
        ledger_id: u64,
        writer: Arc<LedgerWriter>,
        healthy: bool,
        error: Option<LedgerError>,
    ) {
        let closed = match (healthy, error) {
            (_, Some(LedgerError::Fenced(_))) => Err(LedgerError::Fenced(ledger_id)),
            (true, None) => writer.close().await.map(|_| ()),
            (_, Some(e)) => Err(e),
            (false, None) => Err(LedgerError::WriterFailed("writer failed".into())),
        };
        let sealed = match closed {
            Ok(()) => true,
            Err(LedgerError::Fenced(_)) => {
                self.fence();
                return;
            }
            Err(e) => {
                // What the tracker counted is what callers were told is
                // durable; recovery seals the ledger so bookies serve it
                // (it may find more: adds whose success never reached us,
                // which stay hidden behind the recorded count).
                warn!(managed_ledger = %self.name, ledger_id, error = %e, "ledger writer failed; recovering the ledger");
                match self.client.open_and_recover(ledger_id).await {
                    Ok(_) => true,
                    Err(e) => {
                        warn!(managed_ledger = %self.name, ledger_id, error = %e, "could not recover the ledger; readers will retry");
                        false
                    }
                }
            }
        };
        drop(writer);
        let closed_ms = now_ms();
        let (entries, size, lc) = {
            let mut view = self.view.lock();
            let (entries, size) = view
                .ledgers
                .get(&ledger_id)
                .map(|s| (s.info.entries, s.info.size_bytes))
                .unwrap_or((0, 0));
            view.close_ledger(ledger_id, entries, size, closed_ms);
            if sealed {
                view.unpin(ledger_id);
            }
            (entries, size, view.last_confirmed)
        };
        self.drop_reader(ledger_id);
        self.publish_confirmed(lc);
        let result = self
            .update_info(|i| {
                if let Some(l) = i.ledger_mut(ledger_id) {
                    l.entries = entries;
                    l.size_bytes = size;
                    l.closed = true;
                    l.closed_ms = Some(closed_ms);
                }
            })
            .await;
        match result {
            Ok(()) => self.trim_wanted.notify_one(),
            Err(e) if e.is_fenced() => {}
            // The record keeps the ledger as open: the next owner recovers it.
            Err(e) => {
                warn!(managed_ledger = %self.name, ledger_id, error = %e, "could not record a sealed ledger")
            }
        }
    }

    /// Seals the current ledger and stops taking adds (close of the
    /// managed ledger). Returns once the ledger is sealed and recorded.
    pub async fn close_writes(self: &Arc<Self>) {
        let mut ws = self.write.lock().await;
        if let Some(cur) = ws.current.take() {
            self.clone().seal_current(cur).await;
        }
        for seal in std::mem::take(&mut ws.sealing) {
            let _ = seal.await;
        }
        self.mark_closed();
    }

    /// Rolls over a ledger that has reached its maximum age even if no add
    /// comes (called by the managed ledger's timer).
    pub async fn roll_if_aged(self: &Arc<Self>) -> Result<()> {
        let mut ws = self.write.lock().await;
        if self.check_open().is_err() {
            return Ok(());
        }
        let max_age = self.config.lock().max_ledger_age;
        let aged = ws
            .current
            .as_ref()
            .is_some_and(|c| c.entries > 0 && c.created.elapsed() >= max_age);
        let may_roll = ws.retry_rollover_at.is_none_or(|t| Instant::now() >= t);
        if aged && may_roll {
            self.rollover(&mut ws).await?;
        }
        Ok(())
    }

    pub async fn current_ledger(&self) -> Option<u64> {
        self.write.lock().await.current_ledger()
    }
}

/// Awaits a ledger's adds in order; see the module docs. Returns the
/// writer's first error.
async fn track(
    core: Arc<Core>,
    ledger_id: u64,
    mut rx: mpsc::Receiver<PendingAdd>,
    failed: Arc<AtomicBool>,
) -> Option<LedgerError> {
    let mut first_error: Option<LedgerError> = None;
    loop {
        let add = tokio::select! {
            add = rx.recv() => add,
            _ = core.dropped.cancelled() => None,
        };
        let Some(add) = add else { break };
        let outcome = match (add.result.await, &first_error) {
            (Ok(entry_id), None) => Ok(entry_id),
            // A success after a failure cannot happen (a failed writer fails
            // everything pending); if it did, counting it would leave a hole.
            (Ok(_), Some(e)) => Err(e.clone()),
            (Err(e), _) => Err(e),
        };
        match outcome {
            Ok(entry_id) => {
                core.cache.insert(ledger_id, entry_id, add.data.clone());
                let lc = {
                    let mut view = core.view.lock();
                    view.confirm(ledger_id, entry_id, &add.data, add.lac_before);
                    view.last_confirmed
                };
                core.publish_confirmed(lc);
                let _ = add.done.send(Ok(Position::new(ledger_id, entry_id)));
            }
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e.clone());
                    failed.store(true, Ordering::Release);
                    if matches!(e, LedgerError::Fenced(_)) {
                        core.fence();
                    }
                }
                let err = match e {
                    LedgerError::Fenced(_) => ManagedLedgerError::Fenced(core.name.to_string()),
                    other => ManagedLedgerError::Ledger(other),
                };
                let _ = add.done.send(Err(err));
            }
        }
    }
    first_error
}
