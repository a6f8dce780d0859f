//! One offloaded ledger opened for reading, and its read-ahead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::try_join_all;
use object_store::ObjectStore;
use object_store::path::Path;
use parking_lot::Mutex;

use super::TieredReader;
use super::fetch::{LedgerShared, Purpose};
use crate::error::{OffloadError, Result};
use crate::format::{BlockEntries, LedgerHeader, LedgerIndex};
use crate::stats::IoSink;

/// Where the last read ended, to tell a sequential reader from a random one.
struct SeqState {
    /// The entry after the last one returned.
    next_entry: u64,
    /// Blocks below this were already handed to read-ahead.
    ahead_until: usize,
}

pub struct ColdLedger {
    reader: Arc<TieredReader>,
    shared: Arc<LedgerShared>,
    seq: Mutex<SeqState>,
    /// At most one read-ahead per ledger runs at a time.
    ahead_running: Arc<AtomicBool>,
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
        Arc::new(ColdLedger {
            reader,
            shared: Arc::new(LedgerShared {
                store,
                data_path,
                data_key,
                index,
                io,
            }),
            seq: Mutex::new(SeqState {
                next_entry: u64::MAX,
                ahead_until: 0,
            }),
            ahead_running: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn header(&self) -> &LedgerHeader {
        &self.shared.index.header
    }

    pub fn index(&self) -> &LedgerIndex {
        &self.shared.index
    }

    /// True while a read-ahead of this ledger is running.
    pub fn read_ahead_running(&self) -> bool {
        self.ahead_running.load(Ordering::SeqCst)
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
            let pending = self
                .reader
                .request_blocks(&self.shared, b..end, Purpose::Read);
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
        self.after_read(first, next, last_block);
        Ok(out)
    }

    /// Starts read-ahead when the read continued the previous one (or began
    /// the ledger) and less than half a window is already fetched ahead.
    fn after_read(&self, first: u64, next: u64, last_block: usize) {
        let window = self.reader.config.read_ahead_bytes;
        let rows = &self.shared.index.rows;
        let range = {
            let mut st = self.seq.lock();
            let sequential = first == 0 || first == st.next_entry;
            st.next_entry = next;
            if !sequential {
                st.ahead_until = 0;
            }
            if !sequential || window == 0 {
                return;
            }
            let from = last_block + 1;
            let start = st.ahead_until.max(from);
            if start >= rows.len() {
                return;
            }
            let ahead: u64 = rows[from..start].iter().map(|r| u64::from(r.len)).sum();
            if ahead >= window / 2 {
                return;
            }
            if self.ahead_running.swap(true, Ordering::SeqCst) {
                return;
            }
            let mut end = start;
            let mut bytes = ahead;
            while end < rows.len() && bytes < window {
                bytes += u64::from(rows[end].len);
                end += 1;
            }
            st.ahead_until = end;
            start..end
        };
        let pending = self
            .reader
            .request_blocks(&self.shared, range, Purpose::ReadAhead);
        let running = self.ahead_running.clone();
        tokio::spawn(async move {
            // Errors are not reported here: a read that needs the block
            // fetches it again and reports.
            for p in pending {
                let _ = p.get().await;
            }
            running.store(false, Ordering::SeqCst);
        });
    }
}
