//! The entry cache shared by every managed ledger of a factory.
//!
//! Filled with each entry once its add is confirmed and with entries read
//! from bookies, so tailing readers and consumers close behind each other
//! read from memory. Bounded in payload bytes; when full it evicts in
//! insertion order (oldest first), which for a log is close to least
//! recently useful: tailing readers want the newest entries.
//!
//! Keys are (ledger id, entry id): ledger ids are unique across managed
//! ledgers, so no topic name is needed. A ledger's entries are dropped when
//! it is deleted.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

type Key = (u64, u64);

struct Inner {
    /// Entry → (insertion sequence, payload).
    entries: BTreeMap<Key, (u64, Bytes)>,
    /// Insertion order; an item whose sequence no longer matches the map
    /// (the entry was removed or re-inserted) is skipped on eviction.
    order: VecDeque<(u64, Key)>,
    bytes: usize,
    next_seq: u64,
}

/// Counters of a cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub capacity_bytes: usize,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

pub struct EntryCache {
    capacity: usize,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl EntryCache {
    /// A cache holding at most `capacity` payload bytes (0 disables it).
    pub fn new(capacity: usize) -> Self {
        EntryCache {
            capacity,
            inner: Mutex::new(Inner {
                entries: BTreeMap::new(),
                order: VecDeque::new(),
                bytes: 0,
                next_seq: 0,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// Payload bytes it may hold (0: disabled).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn insert(&self, ledger_id: u64, entry_id: u64, data: Bytes) {
        if data.len() > self.capacity {
            return;
        }
        let key = (ledger_id, entry_id);
        let mut inner = self.inner.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let len = data.len();
        if let Some((_, old)) = inner.entries.insert(key, (seq, data)) {
            inner.bytes -= old.len();
        }
        inner.bytes += len;
        inner.order.push_back((seq, key));
        let mut evicted = 0;
        while inner.bytes > self.capacity {
            let Some((seq, key)) = inner.order.pop_front() else {
                break;
            };
            if inner.entries.get(&key).is_some_and(|(s, _)| *s == seq)
                && let Some((_, old)) = inner.entries.remove(&key)
            {
                inner.bytes -= old.len();
                evicted += 1;
            }
        }
        // Stale order items pile up when entries are invalidated; compact
        // once they outnumber live ones so memory stays bounded.
        if inner.order.len() > 2 * inner.entries.len() + 1024 {
            let Inner { entries, order, .. } = &mut *inner;
            order.retain(|(s, k)| entries.get(k).is_some_and(|(cur, _)| cur == s));
        }
        drop(inner);
        if evicted > 0 {
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
    }

    /// The entry, counting a hit or a miss.
    pub fn get(&self, ledger_id: u64, entry_id: u64) -> Option<Bytes> {
        let found = self
            .inner
            .lock()
            .entries
            .get(&(ledger_id, entry_id))
            .map(|(_, b)| b.clone());
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The first cached entry id of `ledger_id` in `first..=last`, without
    /// counting hits or misses (where a ranged read from bookies can stop).
    pub fn first_cached(&self, ledger_id: u64, first: u64, last: u64) -> Option<u64> {
        if first > last {
            return None;
        }
        self.inner
            .lock()
            .entries
            .range((ledger_id, first)..=(ledger_id, last))
            .next()
            .map(|((_, e), _)| *e)
    }

    /// Drops every entry of a ledger.
    pub fn invalidate_ledger(&self, ledger_id: u64) {
        let mut inner = self.inner.lock();
        let keys: Vec<Key> = inner
            .entries
            .range((ledger_id, 0)..=(ledger_id, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some((_, old)) = inner.entries.remove(&k) {
                inner.bytes -= old.len();
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.inner.lock();
        CacheStats {
            entries: inner.entries.len(),
            bytes: inner.bytes,
            capacity_bytes: self.capacity,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn evicts_oldest_first_within_the_byte_bound() {
        let c = EntryCache::new(100);
        for i in 0..10 {
            c.insert(1, i, b(20));
        }
        let s = c.stats();
        assert!(s.bytes <= 100);
        assert_eq!(s.entries, 5);
        assert!(c.get(1, 4).is_none());
        assert!(c.get(1, 5).is_some());
        assert!(c.get(1, 9).is_some());
        assert_eq!(c.first_cached(1, 0, 9), Some(5));
        assert_eq!(c.first_cached(1, 6, 6), Some(6));
        assert_eq!(c.first_cached(1, 0, 4), None);
        assert_eq!(c.stats().hits, 2);
        assert_eq!(c.stats().misses, 1);
        // Too large for the cache at all.
        c.insert(2, 0, b(101));
        assert!(c.get(2, 0).is_none());
    }

    #[test]
    fn reinsert_and_invalidate_keep_accounting_right() {
        let c = EntryCache::new(100);
        c.insert(1, 0, b(30));
        c.insert(1, 0, b(40));
        assert_eq!(c.stats().bytes, 40);
        c.insert(2, 0, b(10));
        c.invalidate_ledger(1);
        assert_eq!(c.stats().bytes, 10);
        assert_eq!(c.stats().entries, 1);
        // The stale order items of ledger 1 do not evict the new entry.
        for i in 0..9 {
            c.insert(3, i, b(10));
        }
        assert!(c.get(2, 0).is_some());
        c.insert(3, 9, b(10));
        assert!(c.get(2, 0).is_none());
    }
}
