//! Real bookies in this process (real gRPC, real disks in temp dirs) over
//! an in-memory metadata store, for the managed-ledger tests.

#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
pub use strata_bookie::testing::TestCluster as Cluster;
use strata_ledger::{ClientConfig, LedgerClient};
use strata_managed_ledger::{ManagedLedger, ManagedLedgerConfig, ManagedLedgerFactory, Position};

/// Test helpers on the in-process bookies.
#[allow(async_fn_in_trait)]
pub trait ClusterExt {
    fn client(&self) -> LedgerClient;
    fn factory(&self, config: ManagedLedgerConfig, cache_bytes: usize) -> ManagedLedgerFactory;
    /// Keys under a prefix.
    async fn keys(&self, prefix: &str) -> Vec<String>;
    async fn ledger_exists(&self, ledger_id: u64) -> bool;
}

impl ClusterExt for Cluster {
    fn client(&self) -> LedgerClient {
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

    fn factory(&self, config: ManagedLedgerConfig, cache_bytes: usize) -> ManagedLedgerFactory {
        ManagedLedgerFactory::new(self.client(), config, cache_bytes)
    }

    /// Keys under a prefix.
    async fn keys(&self, prefix: &str) -> Vec<String> {
        self.store
            .list(prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|kv| kv.key)
            .collect()
    }

    async fn ledger_exists(&self, ledger_id: u64) -> bool {
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
