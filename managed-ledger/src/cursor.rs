//! Cursors: a subscription's (durable) or a reader's (non-durable)
//! position in a managed ledger.
//!
//! The acknowledgement logic is in [`crate::cursor_state`]; this module
//! owns the handle, reading and waiting, and persistence. A durable
//! cursor's record is written with compare-and-set on its own key: at
//! most once per `cursor_persist_interval` by the managed ledger's
//! background task, right away after a [`ManagedCursor::reset`], and on
//! [`ManagedCursor::persist`] or close. A conflict means another owner took
//! the managed ledger over, which fences it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use strata_common::metadata::{self, Expect, Version};
use tokio::sync::Notify;

use crate::core::{Core, now_ms};
use crate::cursor_state::{CursorRecord, CursorState};
use crate::error::{ManagedLedgerError, Result};
use crate::keys;
use crate::position::{Entry, Position};

pub struct ManagedCursor {
    name: String,
    durable: bool,
    core: Arc<Core>,
    state: Mutex<CursorState>,
    /// One read at a time, so concurrent reads do not return the same entries.
    read_lock: tokio::sync::Mutex<()>,
    /// Version of the stored record (`None`: not written yet); held while writing.
    persist_lock: tokio::sync::Mutex<Option<Version>>,
    /// The state generation last written.
    persisted_generation: AtomicU64,
    /// Wakes `wait_entries` after a seek.
    seeked: Notify,
    deleted: AtomicBool,
}

impl ManagedCursor {
    pub(crate) fn new(
        core: Arc<Core>,
        name: &str,
        durable: bool,
        state: CursorState,
        version: Option<Version>,
    ) -> ManagedCursor {
        let generation = state.generation;
        ManagedCursor {
            name: name.to_string(),
            durable,
            core,
            state: Mutex::new(state),
            read_lock: tokio::sync::Mutex::new(()),
            persist_lock: tokio::sync::Mutex::new(version),
            persisted_generation: AtomicU64::new(generation),
            seeked: Notify::new(),
            deleted: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// Every entry at or before it is acknowledged ([`Position::EARLIEST`]:
    /// none).
    pub fn mark_delete_position(&self) -> Position {
        let mut st = self.state.lock();
        st.advance(&self.core.view.lock());
        st.mark_delete
    }

    /// The next entry [`ManagedCursor::read_entries`] returns (once it
    /// exists): past the mark-delete position and individually acknowledged
    /// entries. May be one past `last_confirmed`.
    pub fn read_position(&self) -> Position {
        let st = self.state.lock();
        st.effective_read_position(&self.core.view.lock())
    }

    /// Entries from the read position on, skipping acknowledged ones, at
    /// most `max_entries` and about `max_bytes` (at least one entry when
    /// there is one); moves the read position past them. Empty when there
    /// is nothing new.
    pub async fn read_entries(&self, max_entries: usize, max_bytes: usize) -> Result<Vec<Entry>> {
        let _one_reader = self.read_lock.lock().await;
        let mut out: Vec<Entry> = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max_entries && (out.is_empty() || bytes < max_bytes) {
            let (from, epoch) = {
                let st = self.state.lock();
                let view = self.core.view.lock();
                (st.effective_read_position(&view), st.seek_epoch)
            };
            let asked = max_entries - out.len();
            let entries = self
                .core
                .read_entries(from, asked, max_bytes.saturating_sub(bytes).max(1))
                .await?;
            let got = entries.len();
            let Some(last) = entries.last().map(|e| e.position) else {
                break;
            };
            let mut st = self.state.lock();
            let seeked = st.seek_epoch != epoch;
            if !seeked {
                st.read_position = self.core.view.lock().next_position(last);
            }
            for e in entries {
                // Acknowledged meanwhile, or in the middle of the batch.
                if !st.is_acked(e.position) {
                    bytes += e.data.len();
                    out.push(e);
                }
            }
            // Hand out what was read after a seek (the new read position
            // stays), and when the read came back short (the byte budget, a
            // ledger's end, a cold read returning what it had ready):
            // reading on would make the caller wait for entries it does not
            // have yet before it can send any. A read thinned out only by
            // acknowledged entries goes on.
            if seeked || (!out.is_empty() && got < asked) {
                break;
            }
        }
        Ok(out)
    }

    /// Resolves once an entry exists at or past the read position, or the
    /// managed ledger is closed or fenced.
    pub async fn wait_entries(&self) {
        let mut confirmed = self.core.confirmed_tx.subscribe();
        loop {
            let seeked = self.seeked.notified();
            tokio::pin!(seeked);
            seeked.as_mut().enable();
            let lc = *confirmed.borrow_and_update();
            let ready = lc.is_some_and(|lc| {
                let st = self.state.lock();
                lc >= st.effective_read_position(&self.core.view.lock())
            });
            if ready || self.core.shutdown.is_cancelled() {
                return;
            }
            tokio::select! {
                changed = confirmed.changed() => if changed.is_err() { return },
                _ = &mut seeked => {}
                _ = self.core.shutdown.cancelled() => return,
            }
        }
    }

    /// Moves only the read position (acknowledgements stay).
    pub fn seek(&self, read_position: Position) {
        self.state.lock().seek(read_position);
        self.seeked.notify_waiters();
    }

    /// Reads again from the entry after the mark-delete position.
    pub fn rewind(&self) {
        {
            let mut st = self.state.lock();
            st.rewind(&self.core.view.lock());
        }
        self.seeked.notify_waiters();
    }

    /// For a subscription seek: everything before `pos` becomes
    /// acknowledged and everything from it on unacknowledged; reading
    /// restarts at `pos`. Persisted right away (in the background).
    pub fn reset(&self, pos: Position) {
        {
            let mut st = self.state.lock();
            st.reset(pos, &self.core.view.lock());
        }
        self.seeked.notify_waiters();
        if self.durable {
            self.core.persist_wanted.notify_one();
        }
    }

    /// Individual acks; returns whether the mark-delete position moved.
    pub fn ack(&self, positions: &[Position]) -> bool {
        let mut st = self.state.lock();
        st.ack(positions, &self.core.view.lock())
    }

    /// Acknowledges everything up to and including `pos`.
    pub fn ack_cumulative(&self, pos: Position) {
        let mut st = self.state.lock();
        st.ack_cumulative(pos, &self.core.view.lock());
    }

    /// Acknowledges messages of a batch entry. `acked_bits` is Pulsar's ack
    /// set from CommandAck: bit i (of word i/64, `BitSet.toLongArray`
    /// order) set means message i is still *unacknowledged*. The cursor
    /// keeps the intersection of the sets it receives; once no bit is left
    /// the whole entry is acknowledged.
    pub fn ack_batch_indexes(&self, pos: Position, acked_bits: &[i64], batch_size: u32) {
        let mut st = self.state.lock();
        st.ack_batch(pos, acked_bits, batch_size, &self.core.view.lock());
    }

    /// The still-unacknowledged messages of a partially acknowledged batch
    /// entry, in the same form (for redelivery).
    pub fn batch_ack_set(&self, pos: Position) -> Option<Vec<i64>> {
        self.state.lock().batch_ack_set(pos)
    }

    pub fn is_acked(&self, pos: Position) -> bool {
        self.state.lock().is_acked(pos)
    }

    /// Entries up to `last_confirmed` not acknowledged (a partially
    /// acknowledged batch counts as unacknowledged).
    pub fn backlog(&self) -> u64 {
        let st = self.state.lock();
        st.backlog(&self.core.view.lock())
    }

    pub fn properties(&self) -> BTreeMap<String, String> {
        self.state.lock().properties.clone()
    }

    /// Sets a property stored with the cursor (persisted with its state).
    pub fn set_property(&self, key: &str, value: &str) {
        let mut st = self.state.lock();
        st.properties.insert(key.to_string(), value.to_string());
        st.generation += 1;
    }

    /// Whether the state changed since it was last written.
    pub(crate) fn is_dirty(&self) -> bool {
        self.durable
            && !self.deleted.load(Ordering::Acquire)
            && self.state.lock().generation != self.persisted_generation.load(Ordering::Acquire)
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    /// Writes the cursor's state now (nothing for a non-durable cursor, or
    /// when nothing changed since the last write).
    pub async fn persist(&self) -> Result<()> {
        if !self.durable {
            return Ok(());
        }
        let mut version = self.persist_lock.lock().await;
        let result = self.write_record(&mut version, false).await;
        if result.as_ref().is_err_and(|e| e.is_fenced()) {
            self.core.fence();
        }
        result
    }

    /// Rewrites the record even if unchanged, so that its version moves on
    /// and a previous owner still holding the old version can no longer
    /// write it (called when a new owner opens the managed ledger). A
    /// conflict is returned, not acted on: the caller reads the record again.
    pub(crate) async fn claim(&self) -> Result<()> {
        let mut version = self.persist_lock.lock().await;
        self.write_record(&mut version, true).await
    }

    async fn write_record(&self, version: &mut Option<Version>, force: bool) -> Result<()> {
        if self.deleted.load(Ordering::Acquire) {
            return Ok(());
        }
        let (record, generation) = {
            let mut st = self.state.lock();
            st.advance(&self.core.view.lock());
            (st.to_record(now_ms()), st.generation)
        };
        if !force
            && version.is_some()
            && generation == self.persisted_generation.load(Ordering::Acquire)
        {
            return Ok(());
        }
        let key = keys::cursor(&self.core.name, &self.name);
        let expect = match *version {
            Some(v) => Expect::Version(v),
            None => Expect::Absent,
        };
        match metadata::put_json(self.core.store.as_ref(), &key, &record, expect).await {
            Ok(v) => {
                *version = Some(v);
                self.persisted_generation
                    .store(generation, Ordering::Release);
                Ok(())
            }
            Err(e) if e.is_bad_version() => {
                Err(ManagedLedgerError::Fenced(self.core.name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The cursor's state in its stored form (for admin and stats: it
    /// lists the individually acknowledged ranges and partial batches).
    pub fn state_record(&self) -> CursorRecord {
        self.state.lock().to_record(now_ms())
    }
}

impl std::fmt::Debug for ManagedCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("ManagedCursor")
            .field("name", &self.name)
            .field("durable", &self.durable)
            .field("mark_delete", &st.mark_delete)
            .field("read_position", &st.read_position)
            .finish()
    }
}
