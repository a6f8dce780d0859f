//! One offloaded ledger opened for reading, and its read-ahead.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::try_join_all;
use object_store::ObjectStore;
use object_store::path::Path;
use parking_lot::Mutex;
use tokio::sync::OwnedSemaphorePermit;

use super::TieredReader;
use super::cache::{Counters, run_blocks};
use super::fetch::{LedgerShared, Pending, Purpose};
use crate::error::{OffloadError, Result};
use crate::format::{BlockEntries, LedgerHeader, LedgerIndex};
use crate::stats::IoSink;

/// Where the last read ended, to tell a sequential reader from a random
/// one, and the blocks fetched ahead of it.
struct SeqState {
    /// The entry after the last one returned.
    next_entry: u64,
    /// Blocks below this were already handed to read-ahead.
    ahead_until: usize,
    /// Blocks fetched (or being fetched) ahead of the reader, held here
    /// until read so the block cache cannot evict them first; each holds
    /// its share of the process's read-ahead budget.
    held: BTreeMap<usize, (Pending, OwnedSemaphorePermit)>,
    /// When this ledger was last read.
    last_read: Instant,
    /// Bytes read-ahead may hold now (0: not started): two ranges at
    /// first, doubled on every read up to the configured window (see
    /// `after_read`).
    ramp: u64,
}

impl SeqState {
    /// Forgets the read-ahead (the reader jumped elsewhere).
    fn reset(&mut self) {
        self.ahead_until = 0;
        self.held.clear();
        self.ramp = 0;
    }
}

pub struct ColdLedger {
    reader: Arc<TieredReader>,
    shared: Arc<LedgerShared>,
    seq: Mutex<SeqState>,
}

impl ColdLedger {
    pub(crate) fn new(
        reader: Arc<TieredReader>,
        store: Arc<dyn ObjectStore>,
        data_path: Path,
        data_key: Arc<str>,
        index: Arc<LedgerIndex>,
        io: IoSink,
    ) -> Arc<ColdLedger> {
        let ledger = Arc::new(ColdLedger {
            reader,
            shared: Arc::new(LedgerShared {
                store,
                data_path,
                data_key,
                per_run: run_blocks(index.data_size, index.rows.len()),
                index,
                io,
            }),
            seq: Mutex::new(SeqState {
                next_entry: u64::MAX,
                ahead_until: 0,
                held: BTreeMap::new(),
                last_read: Instant::now(),
                ramp: 0,
            }),
        });
        ledger.reader.register_reader(&ledger);
        ledger
    }

    /// Gives back what read-ahead holds if this ledger was not read for
    /// `idle` (its reader went away or stalled); false if it is busy.
    pub(crate) fn release_if_idle(&self, idle: Duration) -> bool {
        let Some(mut st) = self.seq.try_lock() else {
            return false;
        };
        if st.held.is_empty() || st.last_read.elapsed() < idle {
            return false;
        }
        st.reset();
        // The reader starts over as a new one if it comes back.
        st.next_entry = u64::MAX;
        true
    }

    pub fn header(&self) -> &LedgerHeader {
        &self.shared.index.header
    }

    pub fn index(&self) -> &LedgerIndex {
        &self.shared.index
    }

    /// True while a block fetched ahead of this ledger's reader is still
    /// on its way.
    pub fn read_ahead_running(&self) -> bool {
        self.seq.lock().held.values().any(|(p, _)| !p.is_done())
    }

    /// Blocks fetched ahead and not read yet, and their bytes.
    pub fn read_ahead_held(&self) -> (usize, u64) {
        let rows = &self.shared.index.rows;
        let st = self.seq.lock();
        let bytes = st.held.keys().map(|b| u64::from(rows[*b].len)).sum();
        (st.held.len(), bytes)
    }

    /// One [`Pending`] per block of `blocks`: those read-ahead holds, and
    /// the others from the cache or new fetches.
    fn blocks(&self, blocks: Range<usize>) -> Vec<Pending> {
        // Left in place: `after_read` drops what the reader passed.
        let mut held: Vec<Option<Pending>> = {
            let st = self.seq.lock();
            blocks
                .clone()
                .map(|b| st.held.get(&b).map(|(p, _)| p.clone()))
                .collect()
        };
        let hits = held.iter().filter(|h| h.is_some()).count() as u64;
        Counters::add(&self.reader.counters.read_ahead_hits, hits);
        let mut out = Vec::with_capacity(held.len());
        let mut i = 0;
        while i < held.len() {
            if let Some(p) = held[i].take() {
                out.push(p);
                i += 1;
                continue;
            }
            let run = i..(i..held.len())
                .find(|j| held[*j].is_some())
                .unwrap_or(held.len());
            i = run.end;
            let range = blocks.start + run.start..blocks.start + run.end;
            out.extend(
                self.reader
                    .request_blocks(&self.shared, range, Purpose::Read),
            );
        }
        out
    }

    /// Entries `first..=last` (clamped to the ledger; `NoSuchEntries` if
    /// `first` is past the end), at most `max_bytes` of payload but always at
    /// least one entry. Payloads are slices of cached blocks (no copies).
    /// Blocks come from the cache or from ranged GETs (adjacent missing
    /// blocks coalesced up to `range_bytes`, in parallel, within the process
    /// limit); each fetched block is checked before use, a damaged one is
    /// fetched once more and then reported as `Corrupt`, never returned.
    /// Sequential reads start a background read-ahead. A read that does not
    /// continue the previous one waits for its first block only and returns
    /// the entries of the blocks ready by then, so it may end before `last`
    /// (never before `first`).
    pub async fn read(&self, first: u64, last: u64, max_bytes: usize) -> Result<Vec<(u64, Bytes)>> {
        let index = &self.shared.index;
        let entries = index.header.entries;
        let no_such = || OffloadError::NoSuchEntries {
            ledger_id: index.header.ledger_id,
            first,
            last,
        };
        if first > last {
            return Err(no_such());
        }
        let last = last.min(entries.saturating_sub(1));
        let Some(b0) = index.block_of(first) else {
            return Err(no_such());
        };
        let mut out = Vec::new();
        let mut total = 0usize;
        let mut b = b0;
        let mut last_block = b0;
        let mut last_bytes = Bytes::new();
        // Usually one round; another when the estimate below (whole blocks'
        // payload, including entries before `first`) fell short.
        'rounds: while b < index.rows.len() {
            // Blocks up to the one holding `last`, or until max_bytes is covered.
            let mut end = b;
            let mut estimate = total as u64;
            while end < index.rows.len() {
                let row = &index.rows[end];
                end += 1;
                estimate += row.payload_bytes();
                if row.last_entry() >= last || estimate >= max_bytes as u64 {
                    break;
                }
            }
            let pending = self.blocks(b..end);
            // A read that does not continue the previous one (a reader's
            // first) awaits its first block only and then takes just the
            // blocks already here: the first message of a cold ledger costs
            // about one small GET, not a whole range (the rest keeps coming
            // into the cache for the next read). Sequential reads wait for
            // all their blocks, which come in parallel (from the store or
            // the disk cache).
            let first_read = b == b0 && self.seq.lock().next_entry != first;
            let mut blocks = Vec::with_capacity(pending.len());
            let mut short = false;
            if first_read {
                for (i, p) in pending.into_iter().enumerate() {
                    if i == 0 {
                        blocks.push(p.get().await?);
                        continue;
                    }
                    match p.get().now_or_never() {
                        Some(block) => blocks.push(block?),
                        None => {
                            short = true;
                            break;
                        }
                    }
                }
            } else {
                blocks = try_join_all(pending.into_iter().map(|p| p.get())).await?;
            }
            for (i, block) in blocks.into_iter().enumerate() {
                let row = index.rows[b + i];
                last_block = b + i;
                last_bytes = block.clone();
                for e in BlockEntries::new(&self.shared.data_key, row, block)? {
                    let (id, payload) = e?;
                    if id < first {
                        continue;
                    }
                    if id > last || (!out.is_empty() && total + payload.len() > max_bytes) {
                        break 'rounds;
                    }
                    total += payload.len();
                    out.push((id, payload));
                }
            }
            if short || out.last().is_some_and(|(id, _)| *id >= last) {
                break;
            }
            b = end;
        }
        let next = out.last().map_or(first, |(id, _)| id + 1);
        self.after_read(first, next, last_block, last_bytes);
        Ok(out)
    }

    /// Keeps a window of blocks fetched ahead of a sequential reader (one
    /// that continued the previous read, or began the ledger): as the reader
    /// moves on, more blocks are requested, a range at a time, so GETs run
    /// back to back instead of in waves. Held blocks count against the
    /// process's read-ahead budget; without budget, no more is fetched ahead.
    ///
    /// The window opens at two ranges and doubles with every read up to
    /// `read_ahead_bytes`: a reader's second read waits for blocks its first
    /// read asked for, and those share the store's bandwidth with every GET
    /// read-ahead has in flight. With the whole 64 MiB window asked for at
    /// once (16 GETs), that second read waited ~190 ms on the development
    /// VM, for ~68 MiB to arrive.
    fn after_read(&self, first: u64, next: u64, last_block: usize, last_bytes: Bytes) {
        let config = &self.reader.config;
        let full = config.read_ahead_bytes;
        let rows = &self.shared.index.rows;
        let mut st = self.seq.lock();
        st.last_read = Instant::now();
        // A read elsewhere (a new reader from the start included) drops
        // what was fetched ahead of the old position.
        let continues = first == st.next_entry;
        st.next_entry = next;
        if !continues {
            st.reset();
        }
        if !(continues || first == 0) || full == 0 {
            return;
        }
        // Ask in steps of about one range, so each GET is a full one.
        let step = config.range_bytes.min(full / 2).max(1);
        st.ramp = match st.ramp {
            0 => 2 * step,
            r => r.saturating_mul(2),
        }
        .min(full);
        let window = st.ramp;
        // What the reader passed is no longer needed; the block it ended
        // in is kept, as the next read starts there.
        st.held = st.held.split_off(&last_block);
        if !st.held.contains_key(&last_block)
            && let Ok(permit) = self
                .reader
                .ahead_budget
                .clone()
                .try_acquire_many_owned(rows[last_block].len)
        {
            st.held
                .insert(last_block, (Pending::Ready(last_bytes), permit));
        }
        let from = last_block + 1;
        let start = st.ahead_until.max(from);
        if start >= rows.len() {
            return;
        }
        let ahead: u64 = rows[from..start].iter().map(|r| u64::from(r.len)).sum();
        // Whole steps only, each its own GET: a request of a step and a
        // bit would be coalesced into a full GET and a GET of a block or
        // two, and a store that reads its objects in chunks (1 MiB in
        // Garage and MinIO, read and hashed whole) would read one or two
        // chunks for that bit, and the chunks at both ends of every GET
        // twice. Steps are asked for while at least half a step is free,
        // so the window holds `window` on average (give or take half a
        // step), as much as a top-up to the byte did (asking only while a
        // whole step is free would keep it a step short at worst, half a
        // step on average: 7/8 of the default 64 MiB).
        let mut room = window.saturating_sub(ahead);
        let mut end = start;
        let mut reclaimed = false;
        let mut out_of_budget = false;
        while room >= step.div_ceil(2) && end < rows.len() && !out_of_budget {
            let first = end;
            let mut bytes = 0u64;
            let mut permits = Vec::new();
            while end < rows.len() {
                let len = rows[end].len;
                if end > first && bytes + u64::from(len) > step {
                    break;
                }
                let budget = &self.reader.ahead_budget;
                let permit = match budget.clone().try_acquire_many_owned(len) {
                    Ok(p) => p,
                    // Out of budget: take back what idle readers hold, once.
                    Err(_) if !reclaimed => {
                        reclaimed = true;
                        if self.reader.release_idle_read_ahead(self) > 0 {
                            continue;
                        }
                        out_of_budget = true;
                        break;
                    }
                    Err(_) => {
                        out_of_budget = true;
                        break;
                    }
                };
                permits.push(permit);
                bytes += u64::from(len);
                end += 1;
            }
            if end == first {
                break;
            }
            room = room.saturating_sub(bytes);
            let pending = self
                .reader
                .request_blocks(&self.shared, first..end, Purpose::ReadAhead);
            for ((b, p), permit) in (first..end).zip(pending).zip(permits) {
                st.held.insert(b, (p, permit));
            }
        }
        st.ahead_until = end.max(st.ahead_until);
    }
}
