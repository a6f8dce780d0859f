//! The read path with a cold tier: ledgers with a cold copy are read from
//! it, a failing cold read falls back to the bookies' copy while there is
//! one, corrupt cold data is never served, and trimming deletes both
//! copies. The cold tier here is an in-memory fake; the real one (object
//! storage) is tested in strata-offloader and the cross-process tests.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use parking_lot::Mutex;
use strata_managed_ledger::{
    ColdError, ColdLedger, ColdTier, ManagedLedgerConfig, ManagedLedgerError, ManagedLedgerFactory,
    Position,
};

/// Entries of each (managed ledger, ledger) copy.
type Copies = HashMap<(String, u64), Arc<Vec<Bytes>>>;

/// Ledger copies kept in memory, with switches for failures.
#[derive(Default)]
struct FakeTier {
    copies: Mutex<Copies>,
    corrupt: AtomicBool,
    /// Return only the first entry asked for (a cold read handing out what
    /// it has ready).
    short: AtomicBool,
    reads: AtomicU64,
    opens: AtomicU64,
    /// How long an open of an existing copy takes, in ms.
    open_delay_ms: AtomicU64,
    deletes: Mutex<Vec<u64>>,
}

struct FakeCopy {
    entries: Arc<Vec<Bytes>>,
    tier: Arc<FakeTier>,
}

#[async_trait]
impl ColdLedger for FakeCopy {
    async fn read(
        &self,
        first: u64,
        last: u64,
        _max: usize,
    ) -> Result<Vec<(u64, Bytes)>, ColdError> {
        self.tier.reads.fetch_add(1, Ordering::Relaxed);
        if self.tier.corrupt.load(Ordering::Relaxed) {
            return Err(ColdError::new(true, "block checksum mismatch"));
        }
        let last = if self.tier.short.load(Ordering::Relaxed) {
            first
        } else {
            last
        };
        Ok((first..=last)
            .map(|i| (i, self.entries[i as usize].clone()))
            .collect())
    }
}

struct Handle(Arc<FakeTier>);

#[async_trait]
impl ColdTier for Handle {
    async fn open(
        &self,
        name: &str,
        ledger_id: u64,
    ) -> Result<Option<Arc<dyn ColdLedger>>, ColdError> {
        let delay = self.0.open_delay_ms.load(Ordering::Relaxed);
        if delay > 0
            && self
                .0
                .copies
                .lock()
                .contains_key(&(name.to_string(), ledger_id))
        {
            self.0.opens.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        Ok(self
            .0
            .copies
            .lock()
            .get(&(name.to_string(), ledger_id))
            .map(|e| {
                Arc::new(FakeCopy {
                    entries: e.clone(),
                    tier: self.0.clone(),
                }) as Arc<dyn ColdLedger>
            }))
    }

    async fn delete(&self, name: &str, ledger_id: u64) -> Result<(), ColdError> {
        self.0.copies.lock().remove(&(name.to_string(), ledger_id));
        self.0.deletes.lock().push(ledger_id);
        Ok(())
    }
}

const NAME: &str = "public/default/persistent/cold";

async fn setup(c: &Cluster, config: ManagedLedgerConfig) -> (Arc<FakeTier>, ManagedLedgerFactory) {
    let tier = Arc::new(FakeTier::default());
    let f =
        ManagedLedgerFactory::with_cold_tier(c.client(), config, 0, Arc::new(Handle(tier.clone())));
    (tier, f)
}

/// "Offloads" ledger `id` (copies its entries into the fake) and, if
/// `delete_hot`, deletes the bookies' copy.
async fn offload(c: &Cluster, tier: &FakeTier, id: u64, entries: u64, delete_hot: bool) {
    let r = c.client().open(id).await.unwrap();
    let data = r
        .read(0, entries - 1)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect();
    tier.copies
        .lock()
        .insert((NAME.to_string(), id), Arc::new(data));
    if delete_hot {
        c.client().delete(id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_cross_from_cold_ledgers_to_hot_ones() {
    let c = Cluster::start(1).await;
    let (tier, f) = setup(&c, small_ledgers(10)).await;
    let ml = f.open(NAME).await.unwrap();
    let positions = add_n(&ml, 0, 25).await;
    wait_confirmed(&ml, *positions.last().unwrap()).await;
    let first_ledger = positions[0].ledger_id;
    offload(&c, &tier, first_ledger, 10, true).await;
    assert!(!c.ledger_exists(first_ledger).await);

    let all = ml
        .read_entries(Position::EARLIEST, 100, usize::MAX)
        .await
        .unwrap();
    assert_eq!(all.len(), 25);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, positions[i]);
        assert_eq!(e.data, payload(i as u64));
    }
    assert!(
        tier.reads.load(Ordering::Relaxed) >= 1,
        "the cold copy was not read"
    );
}

/// A new subscription's cursor opens the cold ledger it starts in while the
/// cursor is written, and its first read shares that open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cursor_opens_its_cold_start_once_and_early() {
    let c = Cluster::start(1).await;
    let (tier, f) = setup(&c, small_ledgers(10)).await;
    let ml = f.open(NAME).await.unwrap();
    let positions = add_n(&ml, 0, 15).await;
    wait_confirmed(&ml, *positions.last().unwrap()).await;
    offload(&c, &tier, positions[0].ledger_id, 10, true).await;
    tier.open_delay_ms.store(300, Ordering::Relaxed);

    let cursor = ml
        .open_cursor("sub", strata_managed_ledger::InitialPosition::Earliest)
        .await
        .unwrap();
    // Opening the cursor started the open of its cold start (no read yet).
    for _ in 0..200 {
        if tier.opens.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(tier.opens.load(Ordering::Relaxed), 1);
    assert_eq!(tier.reads.load(Ordering::Relaxed), 0);
    // The first read, issued while that open is still running, shares it.
    let got = cursor.read_entries(10, usize::MAX).await.unwrap();
    assert_eq!(got.len(), 10);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.data, payload(i as u64));
    }
    assert_eq!(tier.opens.load(Ordering::Relaxed), 1, "one shared open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_cold_data_falls_back_to_bookies_or_fails() {
    let c = Cluster::start(1).await;
    let (tier, f) = setup(&c, small_ledgers(10)).await;
    let ml = f.open(NAME).await.unwrap();
    let positions = add_n(&ml, 0, 20).await;
    wait_confirmed(&ml, *positions.last().unwrap()).await;
    let first_ledger = positions[0].ledger_id;

    // The bookies still have their copy: served from there, correct bytes.
    offload(&c, &tier, first_ledger, 10, false).await;
    tier.corrupt.store(true, Ordering::Relaxed);
    let got = ml.read_entries(positions[0], 10, usize::MAX).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        (0..10).map(payload).collect::<Vec<_>>()
    );
    assert!(tier.reads.load(Ordering::Relaxed) >= 1);

    // Once the bookies' copy is gone, corrupt data is an error, never data.
    c.client().delete(first_ledger).await.unwrap();
    match ml.read_entries(positions[0], 10, usize::MAX).await {
        Err(ManagedLedgerError::Cold { ledger_id, error }) => {
            assert_eq!(ledger_id, first_ledger);
            assert!(error.corrupt);
        }
        other => panic!("expected a cold error, got {other:?}"),
    }
    // The hot ledger still reads.
    let rest = ml
        .read_entries(positions[10], 100, usize::MAX)
        .await
        .unwrap();
    assert_eq!(rest.len(), 10);
    // And once the cold copy is good again, so does the cold one.
    tier.corrupt.store(false, Ordering::Relaxed);
    assert_eq!(
        ml.read_entries(positions[0], 10, usize::MAX)
            .await
            .unwrap()
            .len(),
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_deletes_both_copies() {
    let c = Cluster::start(1).await;
    let (tier, f) = setup(&c, small_ledgers(10)).await;
    let ml = f.open(NAME).await.unwrap();
    let positions = add_n(&ml, 0, 25).await;
    wait_confirmed(&ml, *positions.last().unwrap()).await;
    let first_ledger = positions[0].ledger_id;
    offload(&c, &tier, first_ledger, 10, true).await;
    // Retention from now on keeps nothing consumed (set after the offload
    // so the background trim cannot run first).
    ml.set_config(ManagedLedgerConfig {
        retention_size_bytes: Some(0),
        ..small_ledgers(10)
    })
    .unwrap();
    // No durable cursor: everything confirmed counts as consumed.
    ml.trim().await.unwrap();
    assert!(tier.deletes.lock().contains(&first_ledger));
    assert!(tier.copies.lock().is_empty());
    assert!(ml.first_position().unwrap().ledger_id > first_ledger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_read_from_bookies_before_its_offload_is_read_from_cold_after() {
    let c = Cluster::start(1).await;
    let (tier, f) = setup(&c, small_ledgers(10)).await;
    let ml = f.open(NAME).await.unwrap();
    let positions = add_n(&ml, 0, 15).await;
    wait_confirmed(&ml, *positions.last().unwrap()).await;
    let first_ledger = positions[0].ledger_id;
    // A reader catches up while the ledger is only on bookies...
    assert_eq!(
        ml.read_entries(positions[0], 10, usize::MAX)
            .await
            .unwrap()
            .len(),
        10
    );
    // ...then the offloader copies it and deletes the bookies' copy.
    offload(&c, &tier, first_ledger, 10, true).await;
    let got = ml.read_entries(positions[0], 10, usize::MAX).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        (0..10).map(payload).collect::<Vec<_>>()
    );
    assert!(tier.reads.load(Ordering::Relaxed) >= 1);
}

/// A cold read may return fewer entries than asked (what it had ready): the
/// read must end there, not go on with the next ledger and leave a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_cold_reads_never_leave_a_gap() {
    let c = Cluster::start(1).await;
    let (tier, f) = setup(&c, small_ledgers(10)).await;
    let ml = f.open(NAME).await.unwrap();
    let positions = add_n(&ml, 0, 30).await;
    wait_confirmed(&ml, *positions.last().unwrap()).await;
    for l in [positions[0].ledger_id, positions[10].ledger_id] {
        offload(&c, &tier, l, 10, true).await;
    }
    tier.short.store(true, Ordering::Relaxed);
    let sub = ml
        .open_cursor("short", strata_managed_ledger::InitialPosition::Earliest)
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 30 {
        let batch = sub.read_entries(100, usize::MAX).await.unwrap();
        assert!(!batch.is_empty());
        got.extend(batch.into_iter().map(|e| (e.position, e.data)));
    }
    let want: Vec<_> = positions
        .iter()
        .copied()
        .zip((0..30).map(payload))
        .collect();
    assert_eq!(got, want);
}
