//! Ledger client against real bookies running in this process (real gRPC,
//! real disks in temp dirs, in-memory metadata). The multi-process fault
//! tests with SIGKILL live in the `strata-tests` crate.

use std::time::Duration;

use bytes::Bytes;
use strata_bookie::testing::TestCluster as Cluster;
use strata_ledger::metrics::BookieOp;
use strata_ledger::{ClientConfig, LedgerClient, LedgerError, LedgerStatus};

/// Test helpers on the in-process bookies.
trait ClusterExt {
    fn client(&self) -> LedgerClient;
}

impl ClusterExt for Cluster {
    fn client(&self) -> LedgerClient {
        LedgerClient::new(
            self.store.clone(),
            ClientConfig {
                ensemble_change_timeout: Duration::from_secs(5),
                ..ClientConfig::default()
            },
        )
    }
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("entry-{i}-").repeat((i % 7 + 1) as usize))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_close_read_with_striping() {
    let c = Cluster::start(3).await;
    let client = c.client();
    let w = client.create(3, 2, 2).await.unwrap();
    let mut acks = Vec::new();
    for i in 0..200u64 {
        acks.push(w.enqueue(payload(i)).await.unwrap());
    }
    for (i, a) in acks.into_iter().enumerate() {
        assert_eq!(a.await.unwrap(), i as u64);
    }
    assert_eq!(w.last_add_confirmed(), 199);
    assert_eq!(w.close().await.unwrap(), 199);
    assert!(w.append(payload(0)).await.is_err(), "append after close");

    let md = client.metadata(w.ledger_id()).await.unwrap();
    assert_eq!(md.status, LedgerStatus::Closed);
    assert_eq!(md.last_entry_id, 199);
    let total: u64 = (0..200).map(|i| payload(i).len() as u64).sum();
    assert_eq!(md.length, total);

    let r = client.open(w.ledger_id()).await.unwrap();
    let entries = r.read(0, 199).await.unwrap();
    assert_eq!(entries.len(), 200);
    for e in entries {
        assert_eq!(e.payload, payload(e.entry_id));
    }
    assert!(r.read(0, 200).await.is_err(), "past the end");

    // The client's metrics saw every add and the read.
    let m = client.metrics();
    assert_eq!(m.adds.get(), 200);
    assert_eq!(m.add_latency.count(), 200);
    assert_eq!(m.add_bytes.get(), total);
    assert_eq!(m.ledgers_created.get(), 1);
    assert_eq!(m.ledgers_opened.get(), 1);
    assert_eq!(m.read_entries.get(), 200);
    assert_eq!(m.read_latency.count(), 1);
    assert_eq!(m.ensemble_changes.get(), 0);
    let text = m.render();
    assert!(
        text.lines()
            .any(|l| l == "strata_ledger_client_add_latency_seconds_count 200"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "strata_ledger_client_bookie_errors_total{op=\"add\"} 0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_ledger_is_readable_up_to_lac_and_recovery_fences_the_writer() {
    let c = Cluster::start(2).await;
    let client = c.client();
    let w = client.create(2, 2, 2).await.unwrap();
    for i in 0..50u64 {
        w.append(payload(i)).await.unwrap();
    }
    // A tailing reader sees what is confirmed (the LAC piggybacks on later
    // adds, so the very last entry may not be visible yet).
    let mut tail = client.open(w.ledger_id()).await.unwrap();
    assert!(tail.last_readable() >= 48, "lac {}", tail.last_readable());
    w.append(payload(50)).await.unwrap();
    assert!(tail.refresh_lac().await.unwrap() >= 49);
    let got = tail.read(0, 49).await.unwrap();
    assert_eq!(got[49].payload, payload(49));

    // A second client recovers: the ledger is closed where the acked data ends.
    let other = c.client();
    let r = other.open_and_recover(w.ledger_id()).await.unwrap();
    assert_eq!(r.metadata().status, LedgerStatus::Closed);
    assert_eq!(r.last_readable(), 50);
    assert_eq!(r.read(50, 50).await.unwrap()[0].payload, payload(50));

    // The first writer is fenced out.
    let err = w.append(payload(51)).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::Fenced(_)) || err.to_string().contains("fenced"),
        "{err}"
    );
    assert!(w.close().await.is_err());
    // Recovery is idempotent.
    let again = other.open_and_recover(w.ledger_id()).await.unwrap();
    assert_eq!(again.last_readable(), 50);
    // Recovered once (the second call found it closed); the fenced writer's
    // queued add failed.
    assert_eq!(other.metrics().ledgers_recovered.get(), 1);
    assert_eq!(other.metrics().ledgers_opened.get(), 2);
    assert!(client.metrics().add_errors.get() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_change_replaces_a_stopped_bookie() {
    let mut c = Cluster::start(4).await;
    let client = c.client();
    let w = client.create(3, 2, 2).await.unwrap();
    for i in 0..100u64 {
        w.append(payload(i)).await.unwrap();
    }
    let victim = w.metadata().ensembles[0].bookies[0].clone();
    let idx = c
        .bookies
        .iter()
        .position(|b| b.as_ref().is_some_and(|b| b.bookie_id == victim))
        .unwrap();
    c.bookies[idx].take().unwrap().shutdown().await.unwrap();
    for i in 100..300u64 {
        assert_eq!(w.append(payload(i)).await.unwrap(), i);
    }
    let md = w.metadata();
    assert!(md.ensembles.len() >= 2, "{:?}", md.ensembles);
    assert!(!md.last_fragment().bookies.contains(&victim));
    let m = client.metrics();
    assert!(m.ensemble_changes.get() >= 1);
    assert!(m.bookie_error_count(BookieOp::Add) >= 1);
    assert_eq!(m.adds.get(), 300);
    assert_eq!(m.add_errors.get(), 0);
    w.close().await.unwrap();
    let r = c.client().open(w.ledger_id()).await.unwrap();
    let entries = r.read(0, 299).await.unwrap();
    assert_eq!(entries.len(), 300);
    for e in entries {
        assert_eq!(e.payload, payload(e.entry_id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_needs_enough_bookies_and_valid_quorums() {
    let c = Cluster::start(1).await;
    let client = c.client();
    assert!(matches!(
        client.create(2, 2, 2).await,
        Err(LedgerError::NotEnoughBookies {
            needed: 2,
            available: 1
        })
    ));
    assert!(matches!(
        client.create(1, 2, 1).await,
        Err(LedgerError::InvalidQuorum { .. })
    ));
    let w = client.create(1, 1, 1).await.unwrap();
    w.append(Bytes::from_static(b"x")).await.unwrap();
    w.close().await.unwrap();
    client.delete(w.ledger_id()).await.unwrap();
    assert!(matches!(
        client.open(w.ledger_id()).await,
        Err(LedgerError::NoSuchLedger(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookies_drop_ledgers_whose_metadata_was_deleted_behind_their_back() {
    let c = Cluster::start(1).await;
    let client = c.client();
    let keep = client.create(1, 1, 1).await.unwrap();
    let gone = client.create(1, 1, 1).await.unwrap();
    for i in 0..10 {
        keep.append(payload(i)).await.unwrap();
        gone.append(payload(i)).await.unwrap();
    }
    let storage = c.bookies[0].as_ref().unwrap().storage.clone();
    assert_eq!(
        storage.list(0, 10).0,
        vec![keep.ledger_id(), gone.ledger_id()]
    );
    // As if a delete ran while this bookie was unreachable.
    c.store
        .delete(
            &strata_common::paths::ledger(gone.ledger_id()),
            strata_common::metadata::Expect::Any,
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while storage.list(0, 10).0 != vec![keep.ledger_id()] {
        assert!(std::time::Instant::now() < deadline, "orphan never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client.open(keep.ledger_id()).await.unwrap();
    assert_eq!(r.read(0, 8).await.unwrap().len(), 9);
}

/// An in-process bookie that counts the adds and reads handed to it directly.
struct CountingLocal {
    storage: std::sync::Arc<strata_bookie::storage::LedgerStorage>,
    adds: std::sync::Arc<std::sync::atomic::AtomicU64>,
    reads: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl strata_ledger::bookie_client::LocalBookie for CountingLocal {
    fn add(
        &self,
        adds: Vec<strata_proto::bookie::AddEntry>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Vec<strata_proto::bookie::AddResult>> + Send>,
    > {
        self.adds
            .fetch_add(adds.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let storage = self.storage.clone();
        Box::pin(async move { strata_bookie::service::add_many(&storage, adds).await })
    }

    fn read(
        &self,
        req: strata_proto::bookie::ReadRequest,
    ) -> strata_ledger::bookie_client::LocalRead {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let storage = self.storage.clone();
        Box::pin(async move { strata_bookie::service::read_entries(&storage, req).await })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_bookie_takes_adds_in_process_with_the_same_checks() {
    let c = Cluster::start(1).await;
    let client = c.client();
    let bookie = c.bookies[0].as_ref().unwrap();
    let adds = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reads = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    client.register_local_bookie(
        &bookie.bookie_id,
        std::sync::Arc::new(CountingLocal {
            storage: bookie.storage.clone(),
            adds: adds.clone(),
            reads: reads.clone(),
        }),
    );
    let w = client.create(1, 1, 1).await.unwrap();
    for i in 0..100u64 {
        w.append(payload(i)).await.unwrap();
    }
    assert_eq!(adds.load(std::sync::atomic::Ordering::Relaxed), 100);
    // This client's reads are handed over in-process too.
    let r = client.open(w.ledger_id()).await.unwrap();
    let readable = r.last_readable();
    assert!(readable >= 98, "LAC {readable}");
    let got = r.read(0, readable as u64).await.unwrap();
    assert_eq!(got.len() as i64, readable + 1);
    for e in &got {
        assert_eq!(e.payload, payload(e.entry_id));
    }
    assert!(reads.load(std::sync::atomic::Ordering::Relaxed) > 0);
    // Another client reads them over gRPC, recovers and fences the ledger...
    let other = c.client();
    let r = other.open_and_recover(w.ledger_id()).await.unwrap();
    assert_eq!(r.last_readable(), 99);
    for e in r.read(0, 99).await.unwrap() {
        assert_eq!(e.payload, payload(e.entry_id));
    }
    // ...and the local path reports the fence like the add stream does.
    let err = w.append(payload(100)).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::Fenced(_)) || err.to_string().contains("fenced"),
        "{err}"
    );
}
