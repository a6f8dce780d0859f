//! Fencing versus adds that wait for write-cache space.
//!
//! An add checks the ledger's fence flag, then inserts into the write cache,
//! which may wait for a flush to make room. If a recovery fences the ledger
//! and reads past that entry during the wait, the read finds nothing, the
//! recovered ledger ends before the entry, and the add must not then be
//! acknowledged.

use std::sync::Arc;

use bytes::Bytes;
use strata_bookie::BookieError;
use strata_bookie::config::BookieConfig;
use strata_bookie::entrylog::StoredEntry;
use strata_bookie::metrics::Metrics;
use strata_bookie::storage::{AddOp, LedgerStorage};

fn add(ledger_id: u64, entry_id: u64, cumulative_length: u64, payload: Vec<u8>) -> AddOp {
    let payload = Bytes::from(payload);
    AddOp {
        entry: StoredEntry {
            ledger_id,
            entry_id,
            cumulative_length,
            crc32c: strata_proto::entry_crc32c(ledger_id, entry_id, cumulative_length, &payload),
            payload,
        },
        lac: entry_id as i64 - 1,
        recovery: false,
    }
}

// Single-threaded runtime: the spawned add runs exactly until it parks.
#[tokio::test]
async fn add_parked_for_cache_space_fails_if_fenced_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let config = BookieConfig {
        data_dir: dir.path().to_path_buf(),
        write_cache_bytes: 1 << 20,
        ..Default::default()
    };
    let storage = Arc::new(
        tokio::task::spawn_blocking(move || {
            LedgerStorage::open(&config, Arc::new(Metrics::default()))
        })
        .await
        .unwrap()
        .unwrap(),
    );

    // Entry 0 fills the write cache (an empty cache takes any one entry);
    // nothing flushes it in this test until we say so.
    storage
        .add(add(1, 0, 1 << 20, vec![7; 1 << 20]))
        .await
        .unwrap();
    let parked = tokio::spawn({
        let storage = storage.clone();
        async move {
            storage
                .add(add(1, 1, (1 << 20) + 6, b"parked".to_vec()))
                .await
        }
    });
    tokio::task::yield_now().await;
    assert!(!parked.is_finished(), "entry 1 waits for cache space");

    // A recovery fences the ledger and finds no entry 1.
    storage.fence_blocking(1).unwrap();
    assert!(storage.read_blocking(1, 1).unwrap().is_none());

    // Room is made; the parked add must now fail as fenced.
    storage.flush().unwrap();
    let result = parked.await.unwrap();
    assert!(
        matches!(result, Err(BookieError::Fenced(1))),
        "a parked add completed after the fence and a read that missed it: {result:?}"
    );
    // Entry 0 is still there.
    assert!(storage.read_blocking(1, 0).unwrap().is_some());
    storage.shutdown().unwrap();
}
