//! Real bookies in this process (real gRPC, real disks in temp dirs) over
//! an in-memory metadata store, for the managed-ledger tests.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_bookie::{Bookie, BookieConfig};
use strata_common::metadata::{MemoryStore, MetadataStore};
use strata_ledger::{ClientConfig, LedgerClient};
use strata_managed_ledger::{ManagedLedger, ManagedLedgerConfig, ManagedLedgerFactory, Position};

pub struct Cluster {
    pub store: Arc<dyn MetadataStore>,
    pub bookies: Vec<Option<Bookie>>,
    dirs: Vec<tempfile::TempDir>,
}

/// Bookies are shut down when the test ends, so that no flush or RocksDB
/// work is still running when the test process exits (RocksDB aborts the
/// process if its statics are destroyed under a live database).
impl Drop for Cluster {
    fn drop(&mut self) {
        let bookies: Vec<Bookie> = self.bookies.iter_mut().filter_map(Option::take).collect();
        if bookies.is_empty() {
            return;
        }
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                for b in bookies {
                    let _ = b.shutdown().await;
                }
            })
        });
    }
}

impl Cluster {
    pub async fn start(n: usize) -> Cluster {
        let store: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
        let mut c = Cluster {
            store,
            bookies: Vec::new(),
            dirs: Vec::new(),
        };
        for _ in 0..n {
            c.add_bookie().await;
        }
        c
    }

    pub async fn add_bookie(&mut self) {
        let dir = tempfile::tempdir().unwrap();
        let config = BookieConfig {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().to_path_buf(),
            journal_preallocate: 1 << 20,
            gc_interval: Duration::from_millis(200),
            ..BookieConfig::default()
        };
        self.bookies.push(Some(
            Bookie::start_with_store(config, self.store.clone())
                .await
                .unwrap(),
        ));
        self.dirs.push(dir);
    }

    pub async fn stop_bookie(&mut self, i: usize) {
        if let Some(b) = self.bookies[i].take() {
            b.shutdown().await.unwrap();
        }
    }

    pub fn client(&self) -> LedgerClient {
        LedgerClient::new(
            self.store.clone(),
            ClientConfig {
                ensemble_change_timeout: Duration::from_secs(2),
                add_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_secs(5),
                ..ClientConfig::default()
            },
        )
    }

    pub fn factory(&self, config: ManagedLedgerConfig, cache_bytes: usize) -> ManagedLedgerFactory {
        ManagedLedgerFactory::new(self.client(), config, cache_bytes)
    }

    /// Keys under a prefix.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        self.store
            .list(prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|kv| kv.key)
            .collect()
    }

    pub async fn ledger_exists(&self, ledger_id: u64) -> bool {
        self.client().metadata(ledger_id).await.is_ok()
    }
}

/// Small ledgers that roll over on entry count right away.
pub fn small_ledgers(max_entries: u64) -> ManagedLedgerConfig {
    ManagedLedgerConfig {
        max_entries_per_ledger: max_entries,
        min_ledger_age_for_rollover: Duration::ZERO,
        cursor_persist_interval: Duration::from_millis(100),
        ..ManagedLedgerConfig::default()
    }
}

pub fn payload(i: u64) -> Bytes {
    Bytes::from(format!("message-{i:06}-").repeat((i % 5 + 1) as usize))
}

/// Adds `payload(first..first+n)` pipelined; returns their positions.
pub async fn add_n(ml: &ManagedLedger, first: u64, n: u64) -> Vec<Position> {
    let mut pending = Vec::new();
    for i in first..first + n {
        pending.push(ml.add_entry(payload(i)).await.unwrap());
    }
    let mut out = Vec::new();
    for p in pending {
        out.push(p.await.unwrap());
    }
    out
}

/// Waits (bounded) until `last_confirmed` reaches `pos`.
pub async fn wait_confirmed(ml: &ManagedLedger, pos: Position) {
    let mut rx = ml.subscribe_confirmed();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if rx.borrow_and_update().is_some_and(|lc| lc >= pos) {
                return;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "last_confirmed never reached {pos}: {:?}",
            ml.last_confirmed()
        )
    });
}

/// Waits (bounded) for a condition that background work makes true.
pub async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}
