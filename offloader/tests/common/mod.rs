//! Helpers shared by the offloader's crate tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use rand::{Rng, SeedableRng};
use strata_offloader::retry::RetryPolicy;
use strata_offloader::{
    IoSink, IoStats, LedgerHeader, OffloadedObjects, UploadOptions, upload_ledger,
};

/// Payload of entry `id`: recognisable bytes that differ per entry.
pub fn payload(id: u64, len: usize) -> Bytes {
    (0..len)
        .map(|j| (id.wrapping_mul(31).wrapping_add(j as u64 * 7) % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Entries `0..sizes.len()` with the given payload sizes.
pub fn entries(sizes: &[usize]) -> Vec<(u64, Bytes)> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| (i as u64, payload(i as u64, s)))
        .collect()
}

/// Sizes from a seeded generator, so a failure can be replayed.
pub fn random_sizes(seed: u64, n: usize, max: usize) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0..=max)).collect()
}

pub fn header(ledger_id: u64, entries: &[(u64, Bytes)]) -> LedgerHeader {
    LedgerHeader {
        ledger_id,
        managed_ledger: "public/default/persistent/cold".into(),
        entries: entries.len() as u64,
        payload_bytes: entries.iter().map(|(_, b)| b.len() as u64).sum(),
        created_ms: 1_700_000_000_000,
        closed_ms: Some(1_700_000_001_000),
        offloaded_ms: 1_700_000_002_000,
        properties: BTreeMap::new(),
    }
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        request_timeout: Duration::from_millis(500),
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
    }
}

pub fn opts(block_target: usize) -> UploadOptions {
    UploadOptions {
        block_target,
        retry: fast_retry(),
        ..UploadOptions::default()
    }
}

pub fn sink() -> (IoSink, Arc<IoStats>) {
    let stats = IoStats::new();
    (IoSink(vec![stats.clone()]), stats)
}

pub fn memory() -> Arc<dyn ObjectStore> {
    Arc::new(InMemory::new())
}

pub fn local(dir: &tempfile::TempDir) -> Arc<dyn ObjectStore> {
    Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("local store"))
}

pub fn base(ledger_id: u64) -> Path {
    Path::from(format!(
        "cold/public/default/t/{ledger_id}-{}",
        uuid::Uuid::new_v4()
    ))
}

/// Uploads `entries` under a fresh base path.
pub async fn upload(
    store: &Arc<dyn ObjectStore>,
    ledger_id: u64,
    entries: &[(u64, Bytes)],
    opts: &UploadOptions,
) -> (Path, OffloadedObjects) {
    let base = base(ledger_id);
    let h = header(ledger_id, entries);
    let items = stream::iter(entries.iter().cloned().map(Ok));
    let objects = upload_ledger(store, &base, &h, items, opts, &IoSink::default(), &|_| {})
        .await
        .expect("upload");
    (base, objects)
}
