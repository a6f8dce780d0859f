//! Sessions for the in-process backends (memory, RocksDB).
//!
//! A session is a deadline in the [`SessionTable`]. A keepalive task pushes the
//! deadline forward every ttl/3 until the session is closed, abandoned or
//! dropped; a per-store reaper task ends sessions whose deadline passed and
//! asks the backend ([`SessionKeys`]) to delete their keys. The table also
//! indexes which keys each session owns, so reaping needs no full scan; the
//! backend keeps that index in step under its own write lock.
//!
//! Tasks are spawned only from async fns (stores may be built outside a
//! runtime) and stop when the store shuts the table down on drop.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Result, Session};

/// Process-wide, so a session handed to the wrong store is never mistaken for
/// one of its own (it is simply unknown there, hence expired).
static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

/// How long the reaper sleeps when no session is live, and how soon it
/// retries a failed key deletion.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// Renewing more often than this buys nothing and would spin on tiny TTLs.
const MIN_RENEW_EVERY: Duration = Duration::from_millis(1);

/// The backend half of a session: removing the keys of an ended session.
#[async_trait]
pub(crate) trait SessionKeys: Send + Sync + 'static {
    /// Deletes the keys still bound to `session_id` (see [`SessionTable::take_keys`]),
    /// publishing a delete event for each.
    async fn remove_session_keys(self: Arc<Self>, session_id: u64) -> Result<()>;
}

struct Live {
    deadline: Instant,
    ttl: Duration,
}

#[derive(Default)]
struct TableState {
    live: HashMap<u64, Live>,
    /// Ended sessions whose key deletion failed; the reaper retries them.
    retry: HashSet<u64>,
    keys: HashMap<u64, BTreeSet<String>>,
}

pub(crate) struct SessionTable {
    state: Mutex<TableState>,
    /// Wakes the reaper when a deadline may have moved earlier.
    changed: Notify,
    reaper: Mutex<Option<JoinHandle<()>>>,
    shutdown: CancellationToken,
}

impl SessionTable {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(SessionTable {
            state: Mutex::new(TableState::default()),
            changed: Notify::new(),
            reaper: Mutex::new(None),
            shutdown: CancellationToken::new(),
        })
    }

    /// Stops the reaper and every keepalive task; the owning store calls this on drop.
    pub(crate) fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// True while the session exists and its deadline has not passed, even if
    /// the reaper has not yet got round to it. Sessions die with their store.
    pub(crate) fn is_alive(&self, session_id: u64) -> bool {
        !self.shutdown.is_cancelled()
            && self
                .state
                .lock()
                .live
                .get(&session_id)
                .is_some_and(|live| Instant::now() < live.deadline)
    }

    /// Records that `key` is now owned by `session_id`. Call under the backend write lock.
    pub(crate) fn bind(&self, key: &str, session_id: u64) {
        self.state
            .lock()
            .keys
            .entry(session_id)
            .or_default()
            .insert(key.to_string());
    }

    /// Records that `key` is no longer owned by `session_id`. Call under the backend write lock.
    pub(crate) fn unbind(&self, key: &str, session_id: u64) {
        let mut state = self.state.lock();
        if let Some(keys) = state.keys.get_mut(&session_id) {
            keys.remove(key);
            if keys.is_empty() {
                state.keys.remove(&session_id);
            }
        }
    }

    /// The keys bound to `session_id`, forgetting them. Call under the backend
    /// write lock and delete those whose record still names this session.
    pub(crate) fn take_keys(&self, session_id: u64) -> Vec<String> {
        self.state
            .lock()
            .keys
            .remove(&session_id)
            .map(|keys| keys.into_iter().collect())
            .unwrap_or_default()
    }

    /// Starts a session owned by `owner`. Must run inside a tokio runtime.
    pub(crate) fn start_session(
        self: &Arc<Self>,
        owner: Weak<dyn SessionKeys>,
        ttl: Duration,
    ) -> Arc<dyn Session> {
        let id = NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed);
        self.state.lock().live.insert(
            id,
            Live {
                deadline: Instant::now() + ttl,
                ttl,
            },
        );
        self.ensure_reaper(owner.clone());
        self.changed.notify_one();

        let stop = self.shutdown.child_token();
        let every = (ttl / 3).max(MIN_RENEW_EVERY);
        tokio::spawn(keep_alive(Arc::downgrade(self), id, every, stop.clone()));
        Arc::new(LocalSession {
            id,
            ttl,
            table: Arc::downgrade(self),
            owner,
            stop,
        })
    }

    /// Pushes the deadline forward unless the session already ended: an
    /// expired session must not come back to life.
    fn renew(&self, session_id: u64) -> bool {
        let mut state = self.state.lock();
        let now = Instant::now();
        match state.live.get_mut(&session_id) {
            Some(live) if now < live.deadline => {
                live.deadline = now + live.ttl;
                true
            }
            _ => false,
        }
    }

    /// Removes the session from the live set; later puts with it fail.
    fn end(&self, session_id: u64) {
        self.state.lock().live.remove(&session_id);
    }

    /// Ends every session whose deadline passed; returns them (plus earlier
    /// failures to retry) and the earliest remaining deadline.
    fn take_expired(&self, now: Instant) -> (Vec<u64>, Option<Instant>) {
        let mut state = self.state.lock();
        let mut expired: Vec<u64> = state.retry.drain().collect();
        state.live.retain(|id, live| {
            let keep = now < live.deadline;
            if !keep {
                expired.push(*id);
            }
            keep
        });
        let next = state.live.values().map(|live| live.deadline).min();
        (expired, next)
    }

    fn retry_later(&self, session_id: u64) {
        self.state.lock().retry.insert(session_id);
    }

    fn ensure_reaper(self: &Arc<Self>, owner: Weak<dyn SessionKeys>) {
        let mut reaper = self.reaper.lock();
        // A reaper from a runtime that has since shut down is gone; replace it.
        if reaper.as_ref().is_none_or(|task| task.is_finished()) {
            *reaper = Some(tokio::spawn(reap(
                self.clone(),
                owner,
                self.shutdown.clone(),
            )));
        }
    }
}

async fn reap(table: Arc<SessionTable>, owner: Weak<dyn SessionKeys>, shutdown: CancellationToken) {
    loop {
        let (expired, next) = table.take_expired(Instant::now());
        let mut failed = false;
        for id in expired {
            let Some(owner) = owner.upgrade() else { return };
            if let Err(e) = owner.remove_session_keys(id).await {
                tracing::warn!(session_id = id, error = %e, "deleting keys of expired session failed; will retry");
                table.retry_later(id);
                failed = true;
            }
        }
        let idle = Instant::now() + IDLE_WAKE;
        let wake = match next {
            Some(deadline) if !failed => deadline.min(idle),
            _ => idle,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = table.changed.notified() => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

async fn keep_alive(
    table: Weak<SessionTable>,
    session_id: u64,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(table) = table.upgrade() else { return };
        if !table.renew(session_id) {
            return;
        }
    }
}

/// The [`Session`] handed out by the in-process backends. Holds only weak
/// references, so an open session never keeps a dropped store alive.
pub(crate) struct LocalSession {
    id: u64,
    ttl: Duration,
    table: Weak<SessionTable>,
    owner: Weak<dyn SessionKeys>,
    stop: CancellationToken,
}

impl fmt::Debug for LocalSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSession")
            .field("id", &self.id)
            .field("ttl", &self.ttl)
            .field("alive", &self.is_alive())
            .finish()
    }
}

#[async_trait]
impl Session for LocalSession {
    fn id(&self) -> u64 {
        self.id
    }

    fn is_alive(&self) -> bool {
        self.table
            .upgrade()
            .is_some_and(|table| table.is_alive(self.id))
    }

    async fn close(&self) -> Result<()> {
        self.stop.cancel();
        if let Some(table) = self.table.upgrade() {
            table.end(self.id);
        }
        match self.owner.upgrade() {
            Some(owner) => owner.remove_session_keys(self.id).await,
            None => Ok(()),
        }
    }

    fn abandon(&self) {
        self.stop.cancel();
    }
}

impl Drop for LocalSession {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records which sessions had their keys removed.
    #[derive(Default)]
    struct Recorder {
        removed: Mutex<Vec<u64>>,
    }

    #[async_trait]
    impl SessionKeys for Recorder {
        async fn remove_session_keys(self: Arc<Self>, session_id: u64) -> Result<()> {
            self.removed.lock().push(session_id);
            Ok(())
        }
    }

    fn owner(recorder: &Arc<Recorder>) -> Weak<dyn SessionKeys> {
        let owner: Arc<dyn SessionKeys> = recorder.clone();
        Arc::downgrade(&owner)
    }

    /// Real time with a short TTL: several renewals must happen within it.
    const TTL: Duration = Duration::from_millis(300);

    async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let give_up = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < give_up, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn keepalive_holds_and_abandon_expires() {
        let table = SessionTable::new();
        let recorder = Arc::new(Recorder::default());
        let session = table.start_session(owner(&recorder), TTL);
        tokio::time::sleep(TTL * 4).await;
        assert!(session.is_alive(), "keepalive should renew");
        assert!(recorder.removed.lock().is_empty());

        session.abandon();
        wait_until("expiry", || !recorder.removed.lock().is_empty()).await;
        assert!(!session.is_alive());
        assert_eq!(*recorder.removed.lock(), vec![session.id()]);
        table.shutdown();
    }

    #[tokio::test]
    async fn close_removes_keys_once_and_never_revives() {
        let table = SessionTable::new();
        let recorder = Arc::new(Recorder::default());
        let session = table.start_session(owner(&recorder), TTL);
        session.close().await.unwrap();
        assert!(!session.is_alive());
        assert!(!table.renew(session.id()));
        tokio::time::sleep(TTL * 2).await;
        assert_eq!(*recorder.removed.lock(), vec![session.id()]);
        table.shutdown();
    }

    #[tokio::test]
    async fn dropped_session_stops_renewing() {
        let table = SessionTable::new();
        let recorder = Arc::new(Recorder::default());
        let id = table.start_session(owner(&recorder), TTL).id();
        wait_until("expiry", || !recorder.removed.lock().is_empty()).await;
        assert_eq!(*recorder.removed.lock(), vec![id]);
        table.shutdown();
    }

    #[test]
    fn key_index_tracks_bindings() {
        let table = SessionTable::new();
        table.bind("/a", 7);
        table.bind("/b", 7);
        table.unbind("/a", 7);
        table.unbind("/zzz", 8);
        assert_eq!(table.take_keys(7), vec!["/b".to_string()]);
        assert!(table.take_keys(7).is_empty());
        assert!(!table.is_alive(7));
    }
}
