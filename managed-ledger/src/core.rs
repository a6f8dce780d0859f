//! The state one managed ledger shares between its handle, its cursors and
//! its background tasks: the in-memory view of its ledgers, the info record
//! and its version, the write path, the readers of its ledgers.
//!
//! Locks, in the order they may be taken: `write` (tokio; serializes adds
//! and rollovers, held across awaits) → `info` (tokio; serializes info
//! record updates) → `view` / `readers` / `status` (parking_lot; never held
//! across an await). A cursor takes its own state lock before `view`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use strata_common::metadata::{self, Expect, MetadataStore, Version};
use strata_ledger::{LedgerClient, LedgerError, LedgerReader};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cache::EntryCache;
use crate::cold::{ColdLedger, ColdTier};
use crate::config::ManagedLedgerConfig;
use crate::error::{ManagedLedgerError, Result};
use crate::info::ManagedLedgerInfo;
use crate::keys;
use crate::position::Position;
use crate::view::View;
use crate::write::WriteState;

/// Open readers kept per managed ledger; past this the oldest ledger's goes.
const MAX_READERS: usize = 64;

/// Attempts of an info-record update whose outcome the store left unknown.
const INFO_ATTEMPTS: u32 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Open,
    /// Another owner took over: nothing is written any more.
    Fenced,
    Closed,
}

/// Where a ledger's entries are read from.
#[derive(Clone)]
pub(crate) enum Source {
    /// The bookies.
    Hot(Arc<LedgerReader>),
    /// A verified copy in object storage.
    Cold(Arc<dyn ColdLedger>),
}

/// The info record as last written by us, with its version.
pub(crate) struct InfoState {
    pub info: ManagedLedgerInfo,
    pub version: Version,
}

pub(crate) struct Core {
    pub name: Arc<str>,
    pub client: LedgerClient,
    pub store: Arc<dyn MetadataStore>,
    pub cache: Arc<EntryCache>,
    pub config: Mutex<ManagedLedgerConfig>,
    pub view: Mutex<View>,
    pub confirmed_tx: watch::Sender<Option<Position>>,
    pub info: tokio::sync::Mutex<InfoState>,
    pub write: tokio::sync::Mutex<WriteState>,
    pub status: Mutex<Status>,
    /// Cancelled once the managed ledger is closed or fenced: wakes waiting
    /// readers and stops background work.
    pub shutdown: CancellationToken,
    pub readers: Mutex<HashMap<u64, Source>>,
    /// A ledger's source is opened by one caller at a time, so a read and a
    /// prefetch of the same ledger share one open (one index GET).
    opening: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    /// The cold tier, when the broker has one.
    pub cold: Option<Arc<dyn ColdTier>>,
    /// Asks the background task to trim (after a ledger was closed).
    pub trim_wanted: Notify,
    /// Asks the background task to persist dirty cursors now (after a reset).
    pub persist_wanted: Notify,
    /// Cancelled when the managed ledger handle is dropped: stops the
    /// trackers, which otherwise keep the core alive.
    pub dropped: CancellationToken,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Reads of bookies started ahead of catch-up readers (oldest first).
    pub read_ahead: Mutex<std::collections::VecDeque<crate::read::ReadAhead>>,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Core {
    /// Loads (or creates) the info record, recovers every ledger not
    /// recorded as closed (fencing whoever wrote it), and records their
    /// final counts. Creating the ledger for new adds is left to the caller.
    pub async fn open(
        name: &str,
        client: LedgerClient,
        cache: Arc<EntryCache>,
        config: ManagedLedgerConfig,
        cold: Option<Arc<dyn ColdTier>>,
    ) -> Result<Arc<Core>> {
        let store = client.store().clone();
        let key = keys::managed_ledger(name);
        let (mut info, mut version) = loop {
            match metadata::get_json::<ManagedLedgerInfo>(store.as_ref(), &key).await? {
                Some(found) => break found,
                None => {
                    let fresh = ManagedLedgerInfo::default();
                    match metadata::put_json(store.as_ref(), &key, &fresh, Expect::Absent).await {
                        Ok(v) => break (fresh, v),
                        // Created meanwhile by someone else: read theirs.
                        Err(e) if e.is_bad_version() => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        };
        info.validate()
            .map_err(|reason| ManagedLedgerError::Corrupt {
                key: key.clone(),
                reason,
            })?;

        let mut changed = false;
        let mut empty = Vec::new();
        for l in info.ledgers.iter_mut().filter(|l| !l.closed) {
            changed = true;
            match client.open_and_recover(l.ledger_id).await {
                Ok(r) => {
                    let md = r.metadata();
                    l.entries = (md.last_entry_id + 1).max(0) as u64;
                    l.size_bytes = md.length;
                    l.closed_ms = Some(md.closed_at_ms.unwrap_or_else(now_ms));
                    info!(
                        managed_ledger = name,
                        ledger_id = l.ledger_id,
                        entries = l.entries,
                        "recovered ledger"
                    );
                }
                // Never written to bookies (the creator died first).
                Err(LedgerError::NoSuchLedger(_)) => l.entries = 0,
                Err(e) => return Err(e.into()),
            }
            l.closed = true;
            if l.entries == 0 {
                empty.push(l.ledger_id);
            }
        }
        if changed {
            info.ledgers.retain(|l| !empty.contains(&l.ledger_id));
            version =
                match metadata::put_json(store.as_ref(), &key, &info, Expect::Version(version))
                    .await
                {
                    Ok(v) => v,
                    Err(e) if e.is_bad_version() => {
                        return Err(ManagedLedgerError::Fenced(name.into()));
                    }
                    Err(e) => return Err(e.into()),
                };
            for id in empty {
                if let Err(e) = client.delete(id).await
                    && !matches!(e, LedgerError::NoSuchLedger(_))
                {
                    warn!(managed_ledger = name, ledger_id = id, error = %e, "could not delete an empty ledger");
                }
            }
        }

        let view = View::from_infos(info.ledgers.iter().cloned());
        let (confirmed_tx, _) = watch::channel(view.last_confirmed);
        Ok(Arc::new(Core {
            name: name.into(),
            client,
            store,
            cache,
            config: Mutex::new(config),
            view: Mutex::new(view),
            confirmed_tx,
            info: tokio::sync::Mutex::new(InfoState { info, version }),
            write: tokio::sync::Mutex::new(WriteState::default()),
            status: Mutex::new(Status::Open),
            shutdown: CancellationToken::new(),
            readers: Mutex::new(HashMap::new()),
            opening: Mutex::new(HashMap::new()),
            cold,
            trim_wanted: Notify::new(),
            persist_wanted: Notify::new(),
            dropped: CancellationToken::new(),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            read_ahead: Mutex::new(std::collections::VecDeque::new()),
        }))
    }

    pub fn config(&self) -> ManagedLedgerConfig {
        self.config.lock().clone()
    }

    pub fn status(&self) -> Status {
        *self.status.lock()
    }

    /// Errors unless adds are allowed.
    pub fn check_open(&self) -> Result<()> {
        match self.status() {
            Status::Open => Ok(()),
            Status::Fenced => Err(ManagedLedgerError::Fenced(self.name.to_string())),
            Status::Closed => Err(ManagedLedgerError::Closed(self.name.to_string())),
        }
    }

    /// Another owner took over: stop writing, wake waiters.
    pub fn fence(&self) {
        let mut status = self.status.lock();
        if *status == Status::Open {
            warn!(managed_ledger = %self.name, "managed ledger fenced: another owner took it over");
            *status = Status::Fenced;
        }
        drop(status);
        self.shutdown.cancel();
    }

    pub fn mark_closed(&self) {
        let mut status = self.status.lock();
        if *status == Status::Open {
            *status = Status::Closed;
        }
        drop(status);
        self.shutdown.cancel();
    }

    /// Publishes `last_confirmed` to waiting readers.
    pub fn publish_confirmed(&self, lc: Option<Position>) {
        self.confirmed_tx.send_if_modified(|cur| {
            let changed = *cur != lc;
            *cur = lc;
            changed
        });
    }

    /// Applies `change` to the info record with a compare-and-set. A
    /// version conflict means another owner wrote it: the managed ledger is
    /// fenced. When the store's answer was lost (timeout, connection cut)
    /// the write may still have landed; a conflict whose stored record is
    /// exactly ours is that case, not a takeover.
    pub async fn update_info<F>(&self, change: F) -> Result<()>
    where
        F: FnOnce(&mut ManagedLedgerInfo),
    {
        let mut st = self.info.lock().await;
        self.check_not_fenced()?;
        let mut next = st.info.clone();
        change(&mut next);
        if next == st.info {
            return Ok(());
        }
        let key = keys::managed_ledger(&self.name);
        let mut backoff = Duration::from_millis(50);
        let mut last_error = None;
        for _ in 0..INFO_ATTEMPTS {
            match metadata::put_json(
                self.store.as_ref(),
                &key,
                &next,
                Expect::Version(st.version),
            )
            .await
            {
                Ok(v) => {
                    st.info = next;
                    st.version = v;
                    return Ok(());
                }
                Err(e) if e.is_bad_version() => {
                    if let Ok(Some((stored, v))) =
                        metadata::get_json::<ManagedLedgerInfo>(self.store.as_ref(), &key).await
                        && stored == next
                        && last_error.is_some()
                    {
                        st.info = next;
                        st.version = v;
                        return Ok(());
                    }
                    self.fence();
                    return Err(ManagedLedgerError::Fenced(self.name.to_string()));
                }
                Err(e) => {
                    warn!(managed_ledger = %self.name, error = %e, "info record update failed; retrying");
                    last_error = Some(e);
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
        Err(last_error
            .map(ManagedLedgerError::from)
            .unwrap_or_else(|| ManagedLedgerError::Closed(self.name.to_string())))
    }

    fn check_not_fenced(&self) -> Result<()> {
        if self.status() == Status::Fenced {
            return Err(ManagedLedgerError::Fenced(self.name.to_string()));
        }
        Ok(())
    }

    /// Where to read `ledger_id` up to entry `need` from: its cold copy
    /// when it is closed and has a verified one, else the bookies.
    pub async fn source(&self, ledger_id: u64, need: u64) -> Result<Source> {
        if let Some(s) = self.kept_source(ledger_id, need) {
            return Ok(s);
        }
        let gate = self.opening.lock().entry(ledger_id).or_default().clone();
        let opened = async {
            let _one = gate.lock().await;
            match self.kept_source(ledger_id, need) {
                Some(s) => Ok(s),
                None => self.open_source(ledger_id, need).await,
            }
        }
        .await;
        let mut opening = self.opening.lock();
        if opening
            .get(&ledger_id)
            .is_some_and(|g| Arc::strong_count(g) <= 2)
        {
            opening.remove(&ledger_id);
        }
        opened
    }

    async fn open_source(&self, ledger_id: u64, need: u64) -> Result<Source> {
        if let Some(c) = self.open_cold(ledger_id).await {
            self.keep_reader(ledger_id, Source::Cold(c.clone()));
            return Ok(Source::Cold(c));
        }
        Ok(Source::Hot(self.reader(ledger_id, need).await?))
    }

    pub(crate) fn kept_source(&self, ledger_id: u64, need: u64) -> Option<Source> {
        match self.readers.lock().get(&ledger_id) {
            Some(Source::Cold(c)) => Some(Source::Cold(c.clone())),
            Some(Source::Hot(r)) if r.last_readable() >= need as i64 => {
                Some(Source::Hot(r.clone()))
            }
            _ => None,
        }
    }

    /// The cold copy of a closed ledger, if there is a verified one. A
    /// failure to find out is logged and reads go to the bookies.
    pub async fn open_cold(&self, ledger_id: u64) -> Option<Arc<dyn ColdLedger>> {
        let cold = self.cold.as_ref()?;
        let closed = self
            .view
            .lock()
            .ledgers
            .get(&ledger_id)
            .is_some_and(|s| s.info.closed);
        if !closed {
            return None;
        }
        match cold.open(&self.name, ledger_id).await {
            Ok(found) => found,
            Err(e) => {
                warn!(managed_ledger = %self.name, ledger_id, error = %e, "could not open the cold copy; reading from bookies");
                None
            }
        }
    }

    /// A bookie reader of `ledger_id` that can read up to `need`.
    pub async fn reader(&self, ledger_id: u64, need: u64) -> Result<Arc<LedgerReader>> {
        if let Some(Source::Hot(r)) = self.readers.lock().get(&ledger_id)
            && r.last_readable() >= need as i64
        {
            return Ok(r.clone());
        }
        let closed_here = self
            .view
            .lock()
            .ledgers
            .get(&ledger_id)
            .is_some_and(|s| s.info.closed);
        let mut r = self.client.open(ledger_id).await?;
        if r.last_readable() < need as i64 && closed_here && !r.metadata().is_closed() {
            // Our writer of it failed and its recovery did not finish: the
            // bookies may not know the LAC of the last confirmed entries.
            r = self.client.open_and_recover(ledger_id).await?;
        }
        if r.last_readable() < need as i64 {
            return Err(ManagedLedgerError::NoSuchEntry(Position::new(
                ledger_id, need,
            )));
        }
        let r = Arc::new(r);
        self.keep_reader(ledger_id, Source::Hot(r.clone()));
        Ok(r)
    }

    fn keep_reader(&self, ledger_id: u64, source: Source) {
        let mut readers = self.readers.lock();
        if readers.len() >= MAX_READERS
            && let Some(oldest) = readers.keys().min().copied()
        {
            readers.remove(&oldest);
        }
        readers.insert(ledger_id, source);
    }

    /// Forgets a ledger's reader (after it was closed or deleted).
    pub fn drop_reader(&self, ledger_id: u64) {
        self.readers.lock().remove(&ledger_id);
    }

    pub fn count_hits(&self, hits: u64, misses: u64) {
        if hits > 0 {
            self.cache_hits.fetch_add(hits, Ordering::Relaxed);
        }
        if misses > 0 {
            self.cache_misses.fetch_add(misses, Ordering::Relaxed);
        }
    }
}
