//! The read path: entries from `last_confirmed`'s side of the log, served
//! from the pinned tails of open ledgers, then the shared entry cache, then
//! bookies in ranged reads (filling the cache).
//!
//! Readers never see past `last_confirmed`, so they never see an entry
//! whose add was not acknowledged, nor a hole.

use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use strata_ledger::LedgerError;
use tracing::warn;

use crate::core::{Core, Source};
use crate::error::{ManagedLedgerError, Result};
use crate::position::{Entry, Position};
use crate::view::Segment;

/// Most entries asked of bookies in one ranged read.
const MAX_READ_BATCH: u64 = 1000;

/// Assumed entry size when a ledger has none to average over yet.
const DEFAULT_ENTRY_SIZE: u64 = 1024;

/// Most bytes one read-ahead fetches from bookies.
const READ_AHEAD_BYTES: u64 = 8 << 20;
/// Read-ahead ranges in flight per managed ledger: one read of bookies is
/// a chain of copies, encoding and checks that leaves a core idle; a few in
/// parallel use both.
const READ_AHEAD_DEPTH: usize = 3;

/// A read of bookies started ahead of a catch-up reader: while the reader
/// hands out what it just read, the entries it will ask for next are read
/// into the entry cache. Without it a reader behind the tail alternated
/// between waiting for bookies and dispatching, and caught up at a quarter
/// of the rate the same broker writes (measured: ~230 MB/s against
/// ~900 MB/s on the development VM).
pub(crate) struct ReadAhead {
    ledger_id: u64,
    first: u64,
    last: u64,
    done: Shared<BoxFuture<'static, ()>>,
}

impl ReadAhead {
    fn covers(&self, ledger_id: u64, entry_id: u64) -> bool {
        self.ledger_id == ledger_id && self.first <= entry_id && entry_id <= self.last
    }
}

impl Core {
    /// Entries from `from` (inclusive; moved forward to the oldest entry
    /// still stored, or over empty ledgers) up to `last_confirmed`, at most
    /// `max_entries` of them, stopping once `max_bytes` are reached. The
    /// first entry is returned even if it alone is larger than `max_bytes`,
    /// so a large entry cannot stall a reader.
    pub async fn read_entries(
        &self,
        from: Position,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>> {
        let segments = {
            let view = self.view.lock();
            let from = match view.first_position() {
                Some(first) if from < first => first,
                _ => from,
            };
            view.segments_from(from)
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for seg in segments {
            if out.len() >= max_entries || (bytes >= max_bytes && !out.is_empty()) {
                break;
            }
            let want = seg.count.min((max_entries - out.len()) as u64);
            let whole = self
                .read_segment(
                    Segment { count: want, ..seg },
                    max_bytes,
                    &mut bytes,
                    &mut out,
                )
                .await?;
            if !whole {
                // Stopped inside this segment (the byte budget, or a short
                // read): going on with the next one would leave a gap.
                break;
            }
        }
        if let Some(last) = out.last() {
            let next = last.position.entry_id + 1;
            self.read_ahead_from(last.position.ledger_id, next, out.len() as u64);
        }
        Ok(out)
    }

    /// Starts reading the [`READ_AHEAD_DEPTH`] ranges of about `count`
    /// entries of `ledger_id` that follow `from` into the entry cache, each
    /// unless it is there or being read already, or lies past what bookies
    /// can serve (the unconfirmed or pinned tail, which a tailing reader
    /// gets from memory). Only bookies are read ahead: the cold tier reads
    /// ahead itself.
    fn read_ahead_from(&self, ledger_id: u64, from: u64, count: u64) {
        if self.cache.capacity() == 0 {
            return;
        }
        let end = {
            let view = self.view.lock();
            let Some(end) = view.confirmed_end(ledger_id) else {
                return;
            };
            view.first_pinned(ledger_id).map_or(end, |p| end.min(p))
        };
        let avg = self.average_entry_size(ledger_id).max(1);
        let count = count
            .clamp(1, MAX_READ_BATCH)
            .min((READ_AHEAD_BYTES / avg).max(1));
        let mut from = from;
        for _ in 0..READ_AHEAD_DEPTH {
            if from >= end {
                return;
            }
            // Already being read (or read): go on after that range.
            let covered = {
                let ras = self.read_ahead.lock();
                ras.iter()
                    .find(|ra| ra.covers(ledger_id, from) && ra.done.peek().is_none())
                    .map(|ra| ra.last)
            };
            if let Some(last) = covered {
                from = last + 1;
                continue;
            }
            let last = (from + count).min(end) - 1;
            if self.cached(ledger_id, from).is_none()
                && !self.start_read_ahead(ledger_id, from, last)
            {
                return;
            }
            from = last + 1;
        }
    }

    /// Reads `first..=last` of `ledger_id` from bookies into the entry cache
    /// in the background; false when the ledger's reader is not at hand.
    fn start_read_ahead(&self, ledger_id: u64, first: u64, last: u64) -> bool {
        let Some(Source::Hot(reader)) = self.kept_source(ledger_id, last) else {
            return false;
        };
        let cache = self.cache.clone();
        let shutdown = self.shutdown.clone();
        let done = async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                read = reader.read(first, last) => {
                    // A failed read ahead is only a lost head start: the
                    // reader's own read reports the problem.
                    for e in read.into_iter().flatten() {
                        cache.insert(ledger_id, e.entry_id, e.payload);
                    }
                }
            }
        }
        .boxed()
        .shared();
        // Runs on its own; readers that need its entries await it too.
        tokio::spawn(done.clone());
        let mut ras = self.read_ahead.lock();
        ras.retain(|ra| ra.done.peek().is_none());
        if ras.len() >= READ_AHEAD_DEPTH {
            ras.pop_front();
        }
        ras.push_back(ReadAhead {
            ledger_id,
            first,
            last,
            done,
        });
        true
    }

    /// The read ahead in flight (or just done) that covers entry `entry_id`.
    fn read_ahead_covering(
        &self,
        ledger_id: u64,
        entry_id: u64,
    ) -> Option<Shared<BoxFuture<'static, ()>>> {
        let ras = self.read_ahead.lock();
        ras.iter()
            .find(|ra| ra.covers(ledger_id, entry_id))
            .map(|ra| ra.done.clone())
    }

    /// Reads one confirmed entry.
    pub async fn read_entry(&self, pos: Position) -> Result<Entry> {
        let readable = {
            let view = self.view.lock();
            let in_ledger = view
                .ledgers
                .get(&pos.ledger_id)
                .is_some_and(|s| pos.entry_id < s.info.entries);
            in_ledger && view.last_confirmed.is_some_and(|lc| pos <= lc)
        };
        if !readable {
            return Err(ManagedLedgerError::NoSuchEntry(pos));
        }
        let mut out = Vec::with_capacity(1);
        let seg = Segment {
            ledger_id: pos.ledger_id,
            first: pos.entry_id,
            count: 1,
        };
        self.read_segment(seg, usize::MAX, &mut 0, &mut out).await?;
        out.pop().ok_or(ManagedLedgerError::NoSuchEntry(pos))
    }

    /// Appends the entries of `seg` to `out`, in order, until `*bytes`
    /// reaches `max_bytes` (always at least one entry in `out`), or the
    /// store returns a short read. True when every entry of `seg` was
    /// appended; after `false` the caller must not read past the gap.
    async fn read_segment(
        &self,
        seg: Segment,
        max_bytes: usize,
        bytes: &mut usize,
        out: &mut Vec<Entry>,
    ) -> Result<bool> {
        let end = seg.first + seg.count;
        let mut next = seg.first;
        let (mut hits, mut misses) = (0u64, 0u64);
        let result = async {
            while next < end {
                if *bytes >= max_bytes && !out.is_empty() {
                    break;
                }
                if let Some(data) = self.cached(seg.ledger_id, next) {
                    hits += 1;
                    push(out, bytes, seg.ledger_id, next, data);
                    next += 1;
                    continue;
                }
                // Being read ahead: wait for that read rather than make
                // the same one.
                if let Some(done) = self.read_ahead_covering(seg.ledger_id, next) {
                    done.await;
                    if self.cached(seg.ledger_id, next).is_some() {
                        continue;
                    }
                }
                // A miss: read from bookies up to the next cached entry, as
                // many as the byte budget is likely to take.
                let budget = max_bytes.saturating_sub(*bytes) as u64;
                let avg = self.average_entry_size(seg.ledger_id);
                // What is left of the budget would not hold another entry:
                // hand out what we have rather than wait for a store read.
                if !out.is_empty() && budget < avg {
                    break;
                }
                let mut last = next + (budget / avg).clamp(1, MAX_READ_BATCH) - 1;
                last = last.min(end - 1);
                if let Some(c) = self.cache.first_cached(seg.ledger_id, next + 1, last) {
                    last = c - 1;
                }
                // Nor into the pinned tail: bookies do not know those
                // entries are confirmed and would refuse the whole read.
                let pinned = self.view.lock().first_pinned(seg.ledger_id);
                if let Some(p) = pinned.filter(|p| *p > next && *p <= last) {
                    last = p - 1;
                }
                let entries = self.read_stored(seg.ledger_id, next, last).await?;
                let asked_from = next;
                let mut expect = next;
                for (entry_id, payload) in entries {
                    if entry_id != expect {
                        break;
                    }
                    expect += 1;
                    misses += 1;
                    self.cache.insert(seg.ledger_id, entry_id, payload.clone());
                    if *bytes < max_bytes || out.is_empty() {
                        push(out, bytes, seg.ledger_id, entry_id, payload);
                        next = expect;
                    }
                }
                if expect <= last {
                    if expect > asked_from {
                        // A prefix (the cold tier returns what it has
                        // ready): hand it out; the rest comes next read.
                        break;
                    }
                    // The store returned none of the entries asked for.
                    return Err(ManagedLedgerError::NoSuchEntry(Position::new(
                        seg.ledger_id,
                        expect,
                    )));
                }
            }
            Ok(())
        }
        .await;
        self.count_hits(hits, misses);
        result.map(|()| next >= end)
    }

    /// Entries `first..=last` of a ledger from where it is stored: its cold
    /// copy if it has one (falling back to the bookies' copy when the cold
    /// read fails and the bookies still have theirs), else the bookies
    /// (going to the cold copy when they no longer have the ledger: the
    /// offloader deleted it after its deletion lag).
    async fn read_stored(
        &self,
        ledger_id: u64,
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, Bytes)>> {
        match self.source(ledger_id, last).await? {
            Source::Hot(r) => match r.read(first, last).await {
                Ok(entries) => Ok(entries
                    .into_iter()
                    .map(|e| (e.entry_id, e.payload))
                    .collect()),
                // The bookies may no longer have the ledger: the offloader
                // deleted their copy after its deletion lag, and a reader
                // opened before that still points at them (they answer "no
                // such entry", not "no such ledger"). The cold copy has it.
                Err(e) if self.cold.is_some() => {
                    if matches!(e, LedgerError::NoSuchLedger(_)) {
                        self.drop_reader(ledger_id);
                    }
                    let Some(cold) = self.open_cold(ledger_id).await else {
                        return Err(e.into());
                    };
                    self.drop_reader(ledger_id);
                    cold.read(first, last, usize::MAX)
                        .await
                        .map_err(|error| ManagedLedgerError::Cold { ledger_id, error })
                }
                Err(e) => Err(e.into()),
            },
            Source::Cold(cold) => match cold.read(first, last, usize::MAX).await {
                Ok(entries) => Ok(entries),
                Err(error) => {
                    // Read again from the cold copy next time (the failure may
                    // pass); this time, try the bookies.
                    self.drop_reader(ledger_id);
                    warn!(managed_ledger = %self.name, ledger_id, corrupt = error.corrupt, error = %error, "cold read failed; trying the bookies' copy");
                    let hot = async {
                        let r = self.client.open(ledger_id).await?;
                        r.read(first, last).await
                    };
                    match hot.await {
                        Ok(entries) => Ok(entries
                            .into_iter()
                            .map(|e| (e.entry_id, e.payload))
                            .collect()),
                        Err(_) => Err(ManagedLedgerError::Cold { ledger_id, error }),
                    }
                }
            },
        }
    }

    /// An entry from the pinned tail of an open ledger or from the cache.
    fn cached(&self, ledger_id: u64, entry_id: u64) -> Option<Bytes> {
        if let Some(d) = self.view.lock().tail_entry(ledger_id, entry_id) {
            return Some(d);
        }
        self.cache.get(ledger_id, entry_id)
    }

    fn average_entry_size(&self, ledger_id: u64) -> u64 {
        let view = self.view.lock();
        match view.ledgers.get(&ledger_id) {
            Some(s) if s.info.entries > 0 => (s.info.size_bytes / s.info.entries).max(1),
            _ => DEFAULT_ENTRY_SIZE,
        }
    }

    /// The newest entry from `start` on for which `pred` holds, by binary
    /// search; see [`crate::ManagedLedger::find_newest_matching`].
    pub async fn find_newest_matching<F>(
        self: &Arc<Self>,
        start: Position,
        mut pred: F,
    ) -> Result<Option<Position>>
    where
        F: FnMut(&Entry) -> bool + Send,
    {
        let segments = self.view.lock().segments_from(start);
        let total: u64 = segments.iter().map(|s| s.count).sum();
        let at = |mut i: u64| -> Position {
            for s in &segments {
                if i < s.count {
                    return Position::new(s.ledger_id, s.first + i);
                }
                i -= s.count;
            }
            // Unreachable for i < total; the end otherwise.
            Position::new(start.ledger_id, start.entry_id)
        };
        if total == 0 || !pred(&self.read_entry(at(0)).await?) {
            return Ok(None);
        }
        // Invariant: pred(at(lo)) is true; pred(at(hi)) is false or hi == total.
        let (mut lo, mut hi) = (0u64, total);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if pred(&self.read_entry(at(mid)).await?) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(Some(at(lo)))
    }
}

fn push(out: &mut Vec<Entry>, bytes: &mut usize, ledger_id: u64, entry_id: u64, data: Bytes) {
    *bytes += data.len();
    out.push(Entry {
        position: Position::new(ledger_id, entry_id),
        data,
    });
}
