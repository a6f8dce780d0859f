//! Counters of cold-tier traffic. One [`IoStats`] is kept per namespace
//! (usage accounting) and one for the whole process; the code that talks to
//! the object store bumps the ones it is given.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct IoStats {
    /// PUT requests (single puts and multipart parts and completions).
    pub put_requests: AtomicU64,
    pub put_bytes: AtomicU64,
    /// GET requests (whole and ranged) and HEAD requests.
    pub get_requests: AtomicU64,
    pub get_bytes: AtomicU64,
    pub delete_requests: AtomicU64,
    /// Requests retried after a failure.
    pub retries: AtomicU64,
    /// Blocks whose checksum, size or structure was wrong.
    pub corrupt_blocks: AtomicU64,
}

/// A snapshot of an [`IoStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IoCounts {
    pub put_requests: u64,
    pub put_bytes: u64,
    pub get_requests: u64,
    pub get_bytes: u64,
    pub delete_requests: u64,
    pub retries: u64,
    pub corrupt_blocks: u64,
}

impl IoStats {
    pub fn new() -> Arc<IoStats> {
        Arc::new(IoStats::default())
    }

    pub fn put(&self, bytes: u64) {
        self.put_requests.fetch_add(1, Ordering::Relaxed);
        self.put_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn get(&self, bytes: u64) {
        self.get_requests.fetch_add(1, Ordering::Relaxed);
        self.get_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn delete(&self) {
        self.delete_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn corrupt_block(&self) {
        self.corrupt_blocks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> IoCounts {
        IoCounts {
            put_requests: self.put_requests.load(Ordering::Relaxed),
            put_bytes: self.put_bytes.load(Ordering::Relaxed),
            get_requests: self.get_requests.load(Ordering::Relaxed),
            get_bytes: self.get_bytes.load(Ordering::Relaxed),
            delete_requests: self.delete_requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            corrupt_blocks: self.corrupt_blocks.load(Ordering::Relaxed),
        }
    }
}

/// Several counters bumped together (e.g. the namespace's and the process's).
#[derive(Clone, Debug, Default)]
pub struct IoSink(pub Vec<Arc<IoStats>>);

impl IoSink {
    pub fn put(&self, bytes: u64) {
        self.0.iter().for_each(|s| s.put(bytes));
    }
    pub fn get(&self, bytes: u64) {
        self.0.iter().for_each(|s| s.get(bytes));
    }
    pub fn delete(&self) {
        self.0.iter().for_each(|s| s.delete());
    }
    pub fn retry(&self) {
        self.0.iter().for_each(|s| s.retry());
    }
    pub fn corrupt_block(&self) {
        self.0.iter().for_each(|s| s.corrupt_block());
    }
}
