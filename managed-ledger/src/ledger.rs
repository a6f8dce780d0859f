//! The managed ledger of one topic: the public handle over [`Core`] (see
//! `core.rs`, `write.rs`, `read.rs`), its cursors, trimming and its
//! background task.
//!
//! The background task (one per managed ledger, stopped by the core's
//! shutdown token on close or fence, or when the handle is dropped)
//! persists dirty cursors every `cursor_persist_interval` (and at once
//! when asked after a reset), rolls over a ledger past `max_ledger_age`,
//! and trims every `trim_interval` and after each rollover.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use strata_common::metadata::{self, Expect};
use strata_ledger::{LedgerClient, LedgerError};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use crate::cache::EntryCache;
use crate::cold::ColdTier;
use crate::config::ManagedLedgerConfig;
use crate::core::{Core, Status, now_ms};
use crate::cursor::ManagedCursor;
use crate::cursor_state::{CursorRecord, CursorState};
use crate::error::{ManagedLedgerError, Result};
use crate::info::LedgerInfo;
use crate::keys;
use crate::position::{Entry, InitialPosition, Position};

/// Resolves once an entry given to [`ManagedLedger::add_entry`] is durable,
/// to its position.
pub struct AddFuture {
    pub(crate) rx: oneshot::Receiver<Result<Position>>,
    pub(crate) name: Arc<str>,
}

impl std::fmt::Debug for AddFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddFuture")
            .field("managed_ledger", &self.name)
            .finish()
    }
}

impl Future for AddFuture {
    type Output = Result<Position>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            // The tracker went away: the managed ledger was dropped.
            Poll::Ready(Err(_)) => {
                Poll::Ready(Err(ManagedLedgerError::Closed(self.name.to_string())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What a managed ledger holds, for stats and admin.
#[derive(Clone, Debug, Default)]
pub struct ManagedLedgerStats {
    pub name: String,
    /// Ledgers oldest first; for open ones the entries confirmed so far.
    pub ledgers: Vec<LedgerInfo>,
    pub entries: u64,
    pub size_bytes: u64,
    pub last_confirmed: Option<Position>,
    pub first_position: Option<Position>,
    /// Entries read from the pinned tail or the entry cache.
    pub cache_hits: u64,
    /// Entries read from bookies.
    pub cache_misses: u64,
    /// Durable cursors.
    pub cursors: usize,
}

pub struct ManagedLedger {
    core: Arc<Core>,
    cursors: Mutex<BTreeMap<String, Arc<ManagedCursor>>>,
    /// Serializes cursor creation and deletion.
    cursor_ops: tokio::sync::Mutex<()>,
    /// One trim at a time.
    trim_lock: tokio::sync::Mutex<()>,
}

impl ManagedLedger {
    /// Opens (recovering if needed) the managed ledger `name`, loads its
    /// cursors, creates the ledger for new adds (on failure: at the first
    /// add) and starts the background task.
    pub(crate) async fn open(
        name: &str,
        client: LedgerClient,
        cache: Arc<EntryCache>,
        config: ManagedLedgerConfig,
        cold: Option<Arc<dyn ColdTier>>,
    ) -> Result<Arc<ManagedLedger>> {
        let core = Core::open(name, client, cache, config, cold).await?;
        let cursors = load_cursors(&core).await?;
        {
            let mut ws = core.write.lock().await;
            match core.create_ledger().await {
                Ok(cur) => ws.set_current(cur),
                Err(e) if e.is_fenced() => return Err(e),
                Err(e) => {
                    warn!(managed_ledger = name, error = %e, "could not create a ledger; will retry at the first add")
                }
            }
        }
        let ml = Arc::new(ManagedLedger {
            core,
            cursors: Mutex::new(cursors),
            cursor_ops: tokio::sync::Mutex::new(()),
            trim_lock: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(background(Arc::downgrade(&ml), ml.core.clone()));
        debug!(managed_ledger = name, "opened managed ledger");
        Ok(ml)
    }

    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Queues an entry. Returns once the entry has its place in the log
    /// (positions follow the order in which `add_entry` calls return, across
    /// rollovers too); the returned future resolves to its position once it
    /// is durable. Waits while the writer's outstanding-bytes window is full.
    pub async fn add_entry(&self, data: Bytes) -> Result<AddFuture> {
        self.core.add_entry(data, None).await
    }

    /// As [`ManagedLedger::add_entry`], with `crc32c(data)` when the caller
    /// has it without reading `data` (see
    /// `strata_ledger::LedgerWriter::enqueue_with_crc`).
    pub async fn add_entry_with_crc(&self, data: Bytes, crc32c: Option<u32>) -> Result<AddFuture> {
        self.core.add_entry(data, crc32c).await
    }

    /// The newest durable entry with no entry missing before it.
    pub fn last_confirmed(&self) -> Option<Position> {
        self.core.view.lock().last_confirmed
    }

    /// Follows [`ManagedLedger::last_confirmed`] (tailing readers wait on it).
    pub fn subscribe_confirmed(&self) -> watch::Receiver<Option<Position>> {
        self.core.confirmed_tx.subscribe()
    }

    /// The oldest entry still stored.
    pub fn first_position(&self) -> Option<Position> {
        self.core.view.lock().first_position()
    }

    /// Where the next entry will be, as far as readers are concerned (one
    /// past `last_confirmed`); a read position for "latest".
    pub fn end_position(&self) -> Position {
        self.core.view.lock().end_position()
    }

    /// Entries from `from` (inclusive) on, across ledgers, up to
    /// `last_confirmed`: at most `max_entries`, stopping once `max_bytes`
    /// are reached (the first entry is returned whatever its size). A
    /// position before the oldest stored entry reads from that entry.
    pub async fn read_entries(
        &self,
        from: Position,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>> {
        self.core.read_entries(from, max_entries, max_bytes).await
    }

    /// One entry, which must be stored and confirmed.
    pub async fn read_entry(&self, pos: Position) -> Result<Entry> {
        self.core.read_entry(pos).await
    }

    /// The position after `pos`: the next entry of its ledger, else the
    /// first entry of the next non-empty ledger, else one past `pos`.
    pub fn next_position(&self, pos: Position) -> Position {
        self.core.view.lock().next_position(pos)
    }

    /// The position before `pos` ([`Position::EARLIEST`] if none is stored).
    pub fn previous_position(&self, pos: Position) -> Position {
        self.core.view.lock().previous_position(pos)
    }

    /// Entries in `(from_exclusive, to_inclusive]`, counted from the
    /// ledgers' entry counts (no reads).
    pub fn entries_between(&self, from_exclusive: Position, to_inclusive: Position) -> u64 {
        self.core
            .view
            .lock()
            .entries_between(from_exclusive, to_inclusive)
    }

    /// Binary search for the newest entry matching `pred`, among the
    /// entries from `start` (inclusive) to `last_confirmed`.
    ///
    /// `pred` must hold for a prefix of those entries and not after it
    /// (e.g. "published before T"). Returns the last entry of that prefix,
    /// or `None` if `pred` fails on the first entry or there are no entries.
    /// Reads about log2(n) entries; if `pred` is not monotonic the result is
    /// some entry for which it holds, followed by one for which it does not.
    pub async fn find_newest_matching<F>(
        &self,
        start: Position,
        pred: F,
    ) -> Result<Option<Position>>
    where
        F: FnMut(&Entry) -> bool + Send,
    {
        self.core.find_newest_matching(start, pred).await
    }

    /// Opens a durable cursor; an existing one keeps its state, a new one
    /// starts at `initial` and is written to the store before this returns.
    pub async fn open_cursor(
        &self,
        name: &str,
        initial: InitialPosition,
    ) -> Result<Arc<ManagedCursor>> {
        keys::validate_name(name).map_err(|r| ManagedLedgerError::InvalidName(name.into(), r))?;
        let _op = self.cursor_ops.lock().await;
        if let Some(c) = self.cursors.lock().get(name) {
            return Ok(c.clone());
        }
        self.core.check_open()?;
        let key = keys::cursor(&self.core.name, name);
        let cursor =
            match metadata::get_json::<CursorRecord>(self.core.store.as_ref(), &key).await? {
                Some((rec, version)) => {
                    let state = CursorState::from_record(&rec, &self.core.view.lock());
                    ManagedCursor::new(self.core.clone(), name, true, state, Some(version))
                }
                None => {
                    let (state, closed_start) = {
                        let view = self.core.view.lock();
                        let mark_delete = match initial {
                            InitialPosition::Earliest => match view.first_position() {
                                Some(first) => view.previous_position(first),
                                None => view.last_confirmed.unwrap_or(Position::EARLIEST),
                            },
                            InitialPosition::Latest => {
                                view.last_confirmed.unwrap_or(Position::EARLIEST)
                            }
                        };
                        let start = view.next_position(mark_delete);
                        let closed = view
                            .ledgers
                            .get(&start.ledger_id)
                            .is_some_and(|l| l.info.closed);
                        (
                            CursorState::new(mark_delete, start),
                            closed.then_some(start),
                        )
                    };
                    // A new subscription reads at once: while its cursor is
                    // written, open the closed ledger it starts in (for a
                    // cold copy: its index and first blocks), so the first
                    // read finds them. A failure here is the read's to report.
                    if let Some(at) = closed_start {
                        let core = self.core.clone();
                        tokio::spawn(async move {
                            let _ = core.source(at.ledger_id, at.entry_id).await;
                        });
                    }
                    let c = ManagedCursor::new(self.core.clone(), name, true, state, None);
                    c.persist().await?;
                    c
                }
            };
        let cursor = Arc::new(cursor);
        self.cursors.lock().insert(name.to_string(), cursor.clone());
        Ok(cursor)
    }

    /// A cursor for a reader: starts reading at `start`, is never
    /// persisted and does not hold back trimming.
    pub fn new_non_durable_cursor(&self, start: Position) -> Arc<ManagedCursor> {
        let state = {
            let view = self.core.view.lock();
            let start = match view.first_position() {
                Some(first) if start < first => first,
                _ => start,
            };
            CursorState::new(view.previous_position(start), start)
        };
        Arc::new(ManagedCursor::new(
            self.core.clone(),
            "",
            false,
            state,
            None,
        ))
    }

    /// Deletes a durable cursor and its record.
    pub async fn delete_cursor(&self, name: &str) -> Result<()> {
        let _op = self.cursor_ops.lock().await;
        let Some(cursor) = self.cursors.lock().remove(name) else {
            return Err(ManagedLedgerError::NoSuchCursor {
                ledger: self.core.name.to_string(),
                cursor: name.to_string(),
            });
        };
        cursor.mark_deleted();
        let key = keys::cursor(&self.core.name, name);
        self.core.store.delete(&key, Expect::Any).await?;
        self.core.trim_wanted.notify_one();
        Ok(())
    }

    /// The durable cursors (non-durable ones are owned by their readers).
    pub fn cursors(&self) -> Vec<Arc<ManagedCursor>> {
        self.cursors.lock().values().cloned().collect()
    }

    pub fn stats(&self) -> ManagedLedgerStats {
        let (ledgers, entries, size_bytes, last_confirmed, first_position) = {
            let view = self.core.view.lock();
            (
                view.infos(),
                view.total_entries(),
                view.total_size(),
                view.last_confirmed,
                view.first_position(),
            )
        };
        ManagedLedgerStats {
            name: self.core.name.to_string(),
            ledgers,
            entries,
            size_bytes,
            last_confirmed,
            first_position,
            cache_hits: self
                .core
                .cache_hits
                .load(std::sync::atomic::Ordering::Relaxed),
            cache_misses: self
                .core
                .cache_misses
                .load(std::sync::atomic::Ordering::Relaxed),
            cursors: self.cursors.lock().len(),
        }
    }

    /// The ledger adds currently go to.
    pub async fn current_ledger(&self) -> Option<u64> {
        self.core.current_ledger().await
    }

    pub fn config(&self) -> ManagedLedgerConfig {
        self.core.config()
    }

    /// Changes the configuration (e.g. new retention policies); quorums
    /// apply from the next ledger on, the cursor persist interval from the
    /// next open.
    pub fn set_config(&self, config: ManagedLedgerConfig) -> Result<()> {
        config
            .validate()
            .map_err(ManagedLedgerError::InvalidConfig)?;
        *self.core.config.lock() = config;
        Ok(())
    }

    /// Asks the background task to trim now (e.g. after retention changed).
    pub fn trim_soon(&self) {
        self.core.trim_wanted.notify_one();
    }

    /// Properties of the managed ledger, stored in its info record.
    pub async fn properties(&self) -> BTreeMap<String, String> {
        self.core.info.lock().await.info.properties.clone()
    }

    /// Sets (or with `None` removes) a property (one info-record CAS).
    pub async fn set_property(&self, key: &str, value: Option<&str>) -> Result<()> {
        self.core.check_open()?;
        self.core
            .update_info(|i| match value {
                Some(v) => {
                    i.properties.insert(key.to_string(), v.to_string());
                }
                None => {
                    i.properties.remove(key);
                }
            })
            .await
    }

    /// Deletes the oldest ledgers that every durable cursor has consumed
    /// (all entries at or before its mark-delete position; with no durable
    /// cursor, everything confirmed counts as consumed) and that retention
    /// no longer keeps: closed for `retention_time`, or beyond
    /// `retention_size_bytes` counting from the newest. Empty sealed ledgers
    /// go regardless of retention. The newest ledger is never deleted.
    pub async fn trim(&self) -> Result<()> {
        let _one = self.trim_lock.lock().await;
        match self.core.status() {
            Status::Open => {}
            Status::Closed => return Ok(()),
            Status::Fenced => return Err(ManagedLedgerError::Fenced(self.core.name.to_string())),
        }
        let cfg = self.core.config();
        let slowest = self
            .cursors()
            .iter()
            .map(|c| c.mark_delete_position())
            .min();
        let doomed: Vec<u64> = {
            let view = self.core.view.lock();
            let Some(bound) = slowest.or(view.last_confirmed) else {
                return Ok(());
            };
            let now = now_ms();
            let mut size = view.total_size();
            let newest = view.ledgers.keys().next_back().copied();
            let mut doomed = Vec::new();
            for (id, slot) in &view.ledgers {
                let l = &slot.info;
                let consumed = l.entries == 0 || Position::new(*id, l.entries - 1) <= bound;
                if Some(*id) == newest || !l.closed || !consumed {
                    break;
                }
                let closed_ms = l.closed_ms.unwrap_or(l.created_ms);
                let expired = cfg
                    .retention_time
                    .is_some_and(|t| now.saturating_sub(closed_ms) >= t.as_millis() as u64);
                let over_size = cfg.retention_size_bytes.is_some_and(|max| size > max);
                if l.entries == 0 || expired || over_size {
                    doomed.push(*id);
                    size -= l.size_bytes;
                } else {
                    break;
                }
            }
            doomed
        };
        if doomed.is_empty() {
            return Ok(());
        }
        self.core
            .update_info(|i| i.ledgers.retain(|l| !doomed.contains(&l.ledger_id)))
            .await?;
        {
            // last_confirmed stays: it is still the newest entry ever confirmed.
            let mut view = self.core.view.lock();
            for id in &doomed {
                view.ledgers.remove(id);
            }
        }
        for id in doomed {
            self.core.cache.invalidate_ledger(id);
            self.core.drop_reader(id);
            match self.core.client.delete(id).await {
                Ok(()) | Err(LedgerError::NoSuchLedger(_)) => {
                    info!(managed_ledger = %self.core.name, ledger_id = id, "deleted consumed ledger")
                }
                // Out of the record already; only its space leaks.
                Err(e) => {
                    warn!(managed_ledger = %self.core.name, ledger_id = id, error = %e, "could not delete a trimmed ledger")
                }
            }
            if let Some(cold) = &self.core.cold
                && let Err(e) = cold.delete(&self.core.name, id).await
            {
                // The offloader's reconciliation removes what is left.
                warn!(managed_ledger = %self.core.name, ledger_id = id, error = %e, "could not delete a trimmed ledger's cold copy")
            }
        }
        Ok(())
    }

    /// Seals the current ledger, persists every cursor and stops the
    /// background task. Reads keep working; adds fail with `Closed`.
    pub async fn close(&self) -> Result<()> {
        if self.core.status() == Status::Closed {
            return Ok(());
        }
        self.core.close_writes().await;
        // A trim under way finishes its info update before we report closed.
        drop(self.trim_lock.lock().await);
        let mut first_error = None;
        for c in self.cursors() {
            if let Err(e) = c.persist().await {
                warn!(managed_ledger = %self.core.name, cursor = c.name(), error = %e, "could not persist cursor on close");
                first_error.get_or_insert(e);
            }
        }
        // Its entries are of no use here any more (the topic may move to
        // another broker, or come back later as a fresh instance).
        let ids: Vec<u64> = self.core.view.lock().ledgers.keys().copied().collect();
        for id in ids {
            self.core.cache.invalidate_ledger(id);
        }
        if self.core.status() == Status::Fenced {
            return Err(ManagedLedgerError::Fenced(self.core.name.to_string()));
        }
        info!(managed_ledger = %self.core.name, "closed managed ledger");
        first_error.map_or(Ok(()), Err)
    }

    /// True once closed or fenced: the factory then opens a new instance.
    pub fn is_closed(&self) -> bool {
        self.core.status() != Status::Open
    }

    /// True once another owner took the managed ledger over.
    pub fn is_fenced(&self) -> bool {
        self.core.status() == Status::Fenced
    }

    /// Persists every cursor whose state changed.
    async fn persist_dirty_cursors(&self) {
        for c in self.cursors() {
            if c.is_dirty()
                && let Err(e) = c.persist().await
            {
                warn!(managed_ledger = %self.core.name, cursor = c.name(), error = %e, "could not persist cursor");
            }
        }
    }
}

impl Drop for ManagedLedger {
    fn drop(&mut self) {
        self.core.dropped.cancel();
        self.core.shutdown.cancel();
    }
}

impl std::fmt::Debug for ManagedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedLedger")
            .field("name", &self.core.name)
            .field("last_confirmed", &self.last_confirmed())
            .finish()
    }
}

/// Loads every cursor of the managed ledger and claims it (see
/// [`ManagedCursor::claim`]). A cursor its previous owner writes between our
/// read and our claim is read again, so no acknowledgement it stored is lost.
async fn load_cursors(core: &Arc<Core>) -> Result<BTreeMap<String, Arc<ManagedCursor>>> {
    const CLAIM_ATTEMPTS: usize = 3;
    let mut cursors = BTreeMap::new();
    let prefix = keys::cursors_of(&core.name);
    for kv in core.store.list(&prefix).await? {
        let Some(name) = keys::cursor_name(&core.name, &kv.key) else {
            warn!(key = %kv.key, "ignoring a cursor key that does not decode");
            continue;
        };
        let mut found = Some((kv.value, kv.version));
        for attempt in 1..=CLAIM_ATTEMPTS {
            let Some((value, version)) = found.take() else {
                break; // Deleted meanwhile.
            };
            let rec: CursorRecord =
                serde_json::from_slice(&value).map_err(|e| ManagedLedgerError::Corrupt {
                    key: kv.key.clone(),
                    reason: e.to_string(),
                })?;
            let state = CursorState::from_record(&rec, &core.view.lock());
            let c = ManagedCursor::new(core.clone(), &name, true, state, Some(version));
            match c.claim().await {
                Ok(()) => {
                    cursors.insert(name.clone(), Arc::new(c));
                    break;
                }
                Err(e) if e.is_fenced() && attempt < CLAIM_ATTEMPTS => {
                    found = core.store.get(&kv.key).await?.map(|v| (v.value, v.version));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(cursors)
}

/// The background task; see the module docs.
async fn background(ml: Weak<ManagedLedger>, core: Arc<Core>) {
    // Validated non-zero at open; the floor only guards `interval`'s panic.
    let period = core
        .config()
        .cursor_persist_interval
        .max(Duration::from_millis(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_trim = Instant::now();
    loop {
        let (mut persist, mut trim) = (false, false);
        tokio::select! {
            _ = core.shutdown.cancelled() => return,
            _ = tick.tick() => persist = true,
            _ = core.persist_wanted.notified() => persist = true,
            _ = core.trim_wanted.notified() => trim = true,
        }
        let Some(ml) = ml.upgrade() else { return };
        if persist {
            ml.persist_dirty_cursors().await;
            if let Err(e) = core.roll_if_aged().await {
                warn!(managed_ledger = %core.name, error = %e, "age rollover failed");
            }
        }
        if trim || last_trim.elapsed() >= core.config().trim_interval {
            last_trim = Instant::now();
            if let Err(e) = ml.trim().await {
                warn!(managed_ledger = %core.name, error = %e, "trim failed");
            }
        }
    }
}
