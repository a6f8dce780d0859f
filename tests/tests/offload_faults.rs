//! Object-store faults against the cold tier, on a real Garage S3 server.
//!
//! Everything runs in this process except Garage: real bookies
//! (`strata_bookie::testing::TestCluster`), a managed ledger whose factory
//! has the cold tier (`Tier`), and an `Offloader` with a short scan
//! interval, all sharing one `StoreRegistry` whose default store is Garage
//! behind a `FaultyStore`. Offloads are driven the way the broker drives
//! them: a namespace record with offload policies (threshold 0, a deletion
//! lag) in the metadata store; the offloader's own timer does the passes.
//!
//! Each test injects one family of faults and checks what must hold
//! whatever the store does:
//! - no ledger is marked offloaded without a verified copy, and the bookies'
//!   copy never goes before that (a monitor watches this while offloads
//!   run);
//! - data read back through the managed ledger is byte-identical, or the
//!   read fails — wrong bytes are never returned;
//! - corrupt cold data is detected (counted, `ManagedLedgerError::Cold`
//!   with `corrupt`, scrub reports it) and read from bookies while they
//!   still have a copy.
//!
//! Payloads come from a seeded RNG (`STRATA_TEST_SEED` replays a run). No
//! test asserts a duration: waits poll with generous bounds.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use strata_bookie::testing::TestCluster;
use strata_common::metadata::{self, Expect, MetadataStore};
use strata_common::paths;
use strata_ledger::{ClientConfig, LedgerClient};
use strata_managed_ledger::{
    ManagedLedger, ManagedLedgerConfig, ManagedLedgerError, ManagedLedgerFactory, Position,
};
use strata_offloader::UploadOptions;
use strata_offloader::faulty::{Fault, FaultKind, FaultyStore, Op};
use strata_offloader::reader::{ReaderConfig, TieredReader};
use strata_offloader::records::OffloadRecord;
use strata_offloader::registry::{StoreRegistry, Usage};
use strata_offloader::retry::RetryPolicy;
use strata_offloader::service::{Offloader, OffloaderConfig, records_of};
use strata_offloader::store::ColdStore;
use strata_offloader::tier::Tier;
use strata_tests::fault::{bounded, seed};
use strata_tests::garage::Garage;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(300);
/// Bound on waiting for background work (offload passes, deletions).
const WAIT: Duration = Duration::from_secs(120);
const TENANT: &str = "public";
const NAMESPACE: &str = "default";
/// S3's smallest part size (for all parts but the last).
const MIB5: usize = 5 << 20;

/// A payload of `min..=max` seeded random bytes.
fn payload(rng: &mut StdRng, min: usize, max: usize) -> Bytes {
    let mut buf = vec![0u8; rng.random_range(min..=max)];
    rng.fill(&mut buf[..]);
    Bytes::from(buf)
}

/// The cold tier's parts around one managed ledger.
struct Env {
    _garage: Garage,
    _cluster: TestCluster,
    meta: Arc<dyn MetadataStore>,
    client: LedgerClient,
    faulty: Arc<FaultyStore>,
    /// Garage without the fault wrapper, to inspect or damage objects.
    raw: Arc<dyn ObjectStore>,
    prefix: String,
    usage: Arc<Usage>,
    tier: Arc<Tier>,
    offloader: Offloader,
    ml: Arc<ManagedLedger>,
    name: String,
    /// What was written, by position.
    written: BTreeMap<Position, Bytes>,
    cancel: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Offload requests: fast retries and timeouts so that a hung store costs
/// seconds, not minutes; 5 MiB parts so that a 10 MiB ledger is a multipart
/// upload.
fn upload_options() -> UploadOptions {
    UploadOptions {
        part_size: MIB5,
        single_put_max: MIB5,
        max_parallel_parts: 2,
        retry: RetryPolicy {
            max_retries: 4,
            request_timeout: Duration::from_secs(2),
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
        },
        ..UploadOptions::default()
    }
}

impl Env {
    /// Garage, one bookie, the cold tier over Garage behind a
    /// `FaultyStore`, an offloader scanning every 300 ms, and the managed
    /// ledger `public/default/persistent/{topic}` rolling over every
    /// `entries_per_ledger` entries. No offload policy yet.
    async fn start(topic: &str, entries_per_ledger: u64) -> Env {
        // `RUST_LOG=strata_offloader=debug` shows what the cold tier did.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let garage = Garage::start().await.expect("start Garage");
        let cluster = TestCluster::start(1).await;
        let meta = cluster.store.clone();
        let client = LedgerClient::new(
            meta.clone(),
            ClientConfig {
                ensemble_change_timeout: Duration::from_secs(2),
                add_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(5),
                ..ClientConfig::default()
            },
        );
        let prefix = format!("faults-{topic}");
        let raw = garage.object_store();
        let faulty = FaultyStore::new(raw.clone());
        // The URL is only a label here; records carry it and the registry
        // hands back this (wrapped) store for it.
        let cold = ColdStore::from_parts(&garage.url(&prefix), faulty.clone(), &prefix);
        let stores = StoreRegistry::new(cold);
        let usage = Usage::new();
        let reader = TieredReader::new(ReaderConfig {
            memory_cache_bytes: 32 << 20,
            disk_cache_dir: None,
            request_timeout: Duration::from_secs(1),
            max_retries: 4,
            ..ReaderConfig::default()
        })
        .await
        .expect("tiered reader");
        let tier = Tier::new(meta.clone(), stores.clone(), reader, usage.clone());
        let config = ManagedLedgerConfig {
            max_entries_per_ledger: entries_per_ledger,
            min_ledger_age_for_rollover: Duration::ZERO,
            ..ManagedLedgerConfig::default()
        };
        // No entry cache: every read of a closed ledger goes to a tier.
        let factory = ManagedLedgerFactory::with_cold_tier(client.clone(), config, 0, tier.clone());
        let name = format!("{TENANT}/{NAMESPACE}/persistent/{topic}");
        let ml = factory.open(&name).await.expect("open managed ledger");
        let cancel = CancellationToken::new();
        let offloader = Offloader::start(
            OffloaderConfig {
                id: format!("faults-{topic}"),
                scan_interval: Duration::from_millis(300),
                upload: upload_options(),
                ..OffloaderConfig::default()
            },
            meta.clone(),
            client.clone(),
            stores,
            usage.clone(),
            cancel.clone(),
        )
        .await
        .expect("offloader starts (probes Garage)");
        Env {
            _garage: garage,
            _cluster: cluster,
            meta,
            client,
            faulty,
            raw,
            prefix,
            usage,
            tier,
            offloader,
            ml,
            name,
            written: BTreeMap::new(),
            cancel,
        }
    }

    /// Adds `n` entries of `min..=max` random bytes (pipelined).
    async fn write(&mut self, rng: &mut StdRng, n: usize, min: usize, max: usize) {
        let mut pending = Vec::with_capacity(n);
        for _ in 0..n {
            let data = payload(rng, min, max);
            let add = self.ml.add_entry(data.clone()).await.expect("add");
            pending.push((add, data));
        }
        for (add, data) in pending {
            let pos = add.await.expect("add confirmed");
            self.written.insert(pos, data);
        }
    }

    /// Waits until `n` ledgers are closed (a ledger rolled over is closed
    /// in the background) and returns them.
    async fn wait_closed(&self, n: usize) -> Vec<u64> {
        wait_for("ledgers closed", || async {
            self.closed_ledgers().len() >= n
        })
        .await;
        let ids = self.closed_ledgers();
        assert_eq!(ids.len(), n, "ledgers: {:?}", self.ml.stats().ledgers);
        ids
    }

    /// Ledgers that the policy will offload: closed, not the newest, with entries.
    fn closed_ledgers(&self) -> Vec<u64> {
        let ledgers = self.ml.stats().ledgers;
        let newest = ledgers.last().map(|l| l.ledger_id);
        ledgers
            .iter()
            .filter(|l| l.closed && l.entries > 0 && Some(l.ledger_id) != newest)
            .map(|l| l.ledger_id)
            .collect()
    }

    /// Writes the namespace's offload policies as the broker's admin API
    /// does: offload every closed ledger, delete the bookies' copy
    /// `lag_ms` after a verified offload. The first call checks that
    /// nothing was offloaded before (no policy means no offload).
    async fn set_policy(&self, lag_ms: i64) {
        if self
            .meta
            .get(&paths::namespace(TENANT, NAMESPACE))
            .await
            .expect("get")
            .is_none()
        {
            let records = self.records().await;
            assert!(
                records.is_empty(),
                "offloaded without a policy: {records:#?}"
            );
        }
        let record = json!({
            "offload_policies": {
                "managedLedgerOffloadThresholdInBytes": 0,
                "managedLedgerOffloadDeletionLagInMillis": lag_ms,
            }
        });
        metadata::put_json(
            self.meta.as_ref(),
            &paths::namespace(TENANT, NAMESPACE),
            &record,
            Expect::Any,
        )
        .await
        .expect("write namespace policies");
    }

    async fn records(&self) -> BTreeMap<u64, OffloadRecord> {
        records_of(self.meta.as_ref(), &self.name)
            .await
            .expect("offload records")
            .into_iter()
            .map(|(id, (r, _))| (id, r))
            .collect()
    }

    /// Waits until every ledger of `ids` has a complete record (and, with
    /// `bookie_deleted`, its bookies' copy deleted and recorded so).
    async fn wait_offloaded(&self, ids: &[u64], bookie_deleted: bool) {
        wait_for("ledgers offloaded", || async {
            let records = self.records().await;
            let mut done = true;
            for id in ids {
                let ok = records.get(id).is_some_and(|r| {
                    r.is_complete() && (!bookie_deleted || r.bookie_deleted_ms.is_some())
                });
                let gone = !bookie_deleted || self.client.metadata(*id).await.is_err();
                done &= ok && gone;
            }
            done
        })
        .await;
    }

    /// Waits until at least `n` offload passes have failed.
    async fn wait_failed_passes(&self, n: u64) {
        let metrics = self.offloader.metrics();
        wait_for("failed offload passes", || async {
            metrics.failures.get() >= n
        })
        .await;
    }

    /// Reads every written entry of `ledgers` through the managed ledger,
    /// one batch per call; every entry returned must be the one written.
    async fn read_back(&self, ledgers: &[u64]) -> Result<usize, ManagedLedgerError> {
        let mut read = 0;
        for &id in ledgers {
            let want: Vec<(&Position, &Bytes)> = self
                .written
                .range(Position::new(id, 0)..Position::new(id, u64::MAX))
                .collect();
            let mut next = 0;
            while next < want.len() {
                let got = self.ml.read_entries(*want[next].0, 64, 1 << 20).await?;
                assert!(!got.is_empty(), "empty read at {}", want[next].0);
                for e in got.into_iter().take_while(|e| e.position.ledger_id == id) {
                    let (pos, data) = want[next];
                    assert_eq!(e.position, *pos, "entries out of order");
                    assert!(e.data == *data, "wrong bytes served at {pos}");
                    next += 1;
                    read += 1;
                }
            }
        }
        Ok(read)
    }

    /// Reads every written entry of `ledger` through the managed ledger
    /// one at a time; returns the positions whose read failed (each with
    /// its error). Entries that are returned must be the ones written.
    async fn read_each(&self, ledger: u64) -> Vec<(Position, ManagedLedgerError)> {
        let mut failed = Vec::new();
        for (pos, data) in self
            .written
            .range(Position::new(ledger, 0)..Position::new(ledger, u64::MAX))
        {
            match self.ml.read_entry(*pos).await {
                Ok(e) => assert!(e.data == *data, "wrong bytes served at {pos}"),
                Err(e) => failed.push((*pos, e)),
            }
        }
        failed
    }

    /// Checks that the bookies still have `ledger`, whole and unchanged.
    async fn assert_hot_copy(&self, ledger: u64) {
        let reader = self
            .client
            .open(ledger)
            .await
            .unwrap_or_else(|e| panic!("bookies lost ledger {ledger}: {e}"));
        let want: Vec<(&Position, &Bytes)> = self
            .written
            .range(Position::new(ledger, 0)..Position::new(ledger, u64::MAX))
            .collect();
        let got = reader
            .read(0, want.len() as u64 - 1)
            .await
            .expect("read the bookies' copy");
        assert_eq!(got.len(), want.len());
        for (g, (_, data)) in got.iter().zip(want) {
            assert!(g.payload == *data, "bookies' copy of {ledger} differs");
        }
    }

    /// Every object under the prefix, by upload base (`…/{ledger}-{uuid}`).
    async fn objects(&self) -> Vec<Path> {
        let prefix = Path::from(self.prefix.as_str());
        let mut found: Vec<Path> = self
            .raw
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .expect("list objects");
        found.sort();
        found
    }

    /// No object is left that no record refers to; with `complete_only`,
    /// every object belongs to a complete record. Objects listed whose
    /// record is gone by the time records are read must be gone too
    /// (records outlive their objects), which a HEAD confirms.
    async fn assert_no_orphans(&self, complete_only: bool) {
        let listed = self.objects().await;
        let records = self.records().await;
        let bases: HashSet<String> = records
            .values()
            .filter(|r| r.is_complete() || !complete_only)
            .map(|r| format!("{}/", r.base))
            .collect();
        for p in listed {
            if bases.iter().any(|b| p.as_ref().starts_with(b.as_str())) {
                continue;
            }
            match self.raw.head(&p).await {
                Err(object_store::Error::NotFound { .. }) => {}
                other => panic!(
                    "object {p} is referenced by no {}record: {other:?}; records: {records:#?}",
                    if complete_only { "complete " } else { "" }
                ),
            }
        }
    }

    /// Clears the faults; then every ledger of `ids` is offloaded and its
    /// bookies' copy deleted (never before: `monitor` watched), no object
    /// is orphaned, and the 120 entries read back from the cold tier.
    async fn offloads_once_faults_clear(
        &self,
        ids: &[u64],
        monitor: (Arc<AtomicBool>, tokio::task::JoinHandle<()>),
    ) {
        self.faulty.clear_faults();
        self.wait_offloaded(ids, true).await;
        stop_monitor(monitor).await;
        self.assert_no_orphans(true).await;
        assert_eq!(self.read_back(ids).await.expect("cold reads"), 120);
        self.report();
    }

    /// Watches, until the returned flag is set, that no ledger of `ids`
    /// leaves the bookies before its record is complete.
    fn monitor_hot_copies(&self, ids: Vec<u64>) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
        let stop = Arc::new(AtomicBool::new(false));
        let (meta, client, name, flag) = (
            self.meta.clone(),
            self.client.clone(),
            self.name.clone(),
            stop.clone(),
        );
        let task = tokio::spawn(async move {
            while !flag.load(Ordering::SeqCst) {
                for id in &ids {
                    if client.metadata(*id).await.is_ok() {
                        continue;
                    }
                    // Completion is recorded before the deletion starts,
                    // and nothing turns a record back.
                    let records = records_of(meta.as_ref(), &name).await.expect("records");
                    let complete = records.get(id).is_some_and(|(r, _)| r.is_complete());
                    assert!(
                        complete,
                        "ledger {id} left the bookies without a verified cold copy"
                    );
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
        (stop, task)
    }

    /// Prints what the store and the offloader went through (for the log).
    fn report(&self) {
        let f = &self.faulty;
        eprintln!(
            "{}: requests put={} multipart={} get={} head={} aborts={}; io {:?}; \
             failed passes {}; reader {:?}",
            self.name,
            f.requests(Op::Put),
            f.requests(Op::Multipart),
            f.requests(Op::Get),
            f.requests(Op::Head),
            f.aborts(),
            self.usage.total().snapshot(),
            self.offloader.metrics().failures.get(),
            self.tier.reader().stats(),
        );
    }

    fn corrupt_blocks(&self) -> u64 {
        self.usage
            .namespace(&format!("{TENANT}/{NAMESPACE}"))
            .snapshot()
            .corrupt_blocks
    }
}

async fn stop_monitor(m: (Arc<AtomicBool>, tokio::task::JoinHandle<()>)) {
    m.0.store(true, Ordering::SeqCst);
    m.1.await.expect("hot-copy monitor found a violation");
}

/// Polls `f` every 100 ms until it holds; fails after [`WAIT`].
async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let give_up = Instant::now() + WAIT;
    while !f().await {
        assert!(Instant::now() < give_up, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_cold_error(e: &ManagedLedgerError, corrupt: bool) -> bool {
    matches!(e, ManagedLedgerError::Cold { error, .. } if error.corrupt == corrupt)
}

/// 5xx answers on the first PUTs and on a multipart part, a PUT slower than
/// the request timeout, and latency on every request: the offload retries
/// (requests, then whole passes) and completes with verified records; the
/// bookies' copy goes (lag 0) and every entry reads back byte-identical
/// from Garage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_failures_and_slow_responses_are_retried() {
    let mut rng = StdRng::seed_from_u64(seed("put_failures", 501));
    let mut env = Env::start("put-faults", 100).await;
    bounded("put_failures", LIMIT, async {
        // Ledger 1: ~10 MiB (multipart); ledger 2: ~250 KiB (one PUT);
        // then the open ledger, which stays on bookies.
        env.write(&mut rng, 100, 90 << 10, 110 << 10).await;
        env.write(&mut rng, 100, 1 << 10, 4 << 10).await;
        env.write(&mut rng, 10, 1 << 10, 4 << 10).await;
        let ids = env.wait_closed(2).await;

        let f = &env.faulty;
        f.inject(Fault::new(Op::Put, FaultKind::Fail).times(3));
        f.inject(Fault::new(Op::Put, FaultKind::Hang(Duration::from_secs(5))));
        // The create passes; the first part fails, which fails the pass.
        f.inject(Fault::new(Op::Multipart, FaultKind::Fail).after(1));
        f.set_latency(Duration::from_millis(100));
        let monitor = env.monitor_hot_copies(ids.clone());
        env.set_policy(0).await;

        env.wait_offloaded(&ids, true).await;
        stop_monitor(monitor).await;
        f.set_latency(Duration::ZERO);

        let io = env.usage.total().snapshot();
        assert!(
            io.retries >= 4,
            "PUT failures and the hang were retried: {io:?}"
        );
        assert!(
            f.aborts() >= 1,
            "the multipart upload with a failed part was aborted"
        );
        assert!(
            env.offloader.metrics().failures.get() >= 1,
            "a pass failed and was redone"
        );
        let records = env.records().await;
        let stats = env.ml.stats();
        for id in &ids {
            let r = &records[id];
            let o = r.objects.as_ref().expect("objects of a complete record");
            let info = stats.ledgers.iter().find(|l| l.ledger_id == *id).unwrap();
            assert_eq!(
                (o.entries, o.payload_bytes),
                (info.entries, info.size_bytes)
            );
            assert!(r.bookie_deleted_ms.is_some());
        }
        // Failed attempts left nothing behind.
        env.assert_no_orphans(true).await;

        let gets = f.requests(Op::Get);
        let n = env.read_back(&ids).await.expect("read back from Garage");
        assert_eq!(n, 200);
        assert!(f.requests(Op::Get) > gets, "reads went to the object store");
        assert_eq!(env.corrupt_blocks(), 0);
        env.report();
    })
    .await;
}

/// A fault on every verification GET blocks every offload pass: the ledger
/// is never marked offloaded, the bookies keep their copy (lag 0 notwithstanding),
/// the failed uploads' objects are deleted; once the fault clears the next
/// pass completes.
async fn verification_fault_blocks_offload(topic: &str, fault: Fault, corrupt: bool) {
    let mut rng = StdRng::seed_from_u64(seed(topic, 502));
    let mut env = Env::start(topic, 60).await;
    bounded(topic, LIMIT, async {
        env.write(&mut rng, 130, 2 << 10, 20 << 10).await;
        let ids = env.wait_closed(2).await;
        let monitor = env.monitor_hot_copies(ids.clone());
        env.faulty.inject(fault);
        // The probe at start-up did GETs; only verification does from now on.
        let gets = env.faulty.requests(Op::Get);
        env.set_policy(0).await;

        env.wait_failed_passes(2).await;
        assert!(
            env.faulty.requests(Op::Get) >= gets + 2,
            "verification did GET"
        );
        let records = env.records().await;
        assert!(
            records.values().all(|r| !r.is_complete()),
            "a ledger was marked offloaded without verification: {records:#?}"
        );
        for id in &ids {
            env.assert_hot_copy(*id).await;
        }
        // Reads go to the bookies meanwhile.
        assert_eq!(env.read_back(&ids).await.expect("hot reads"), 120);
        env.assert_no_orphans(false).await;
        if corrupt {
            assert!(
                env.corrupt_blocks() >= 1,
                "bad bytes in verification were counted"
            );
        }

        env.offloads_once_faults_clear(&ids, monitor).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_get_hangs_block_the_offload() {
    let hang = Fault::new(Op::Get, FaultKind::Hang(Duration::from_secs(3600))).always();
    verification_fault_blocks_offload("verify-hang", hang, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_reading_corrupt_bytes_blocks_the_offload() {
    let flip = Fault::new(Op::Get, FaultKind::FlipByte)
        .always()
        .on_path("/data");
    verification_fault_blocks_offload("verify-flip", flip, true).await;
}

/// A ledger's verification overlaps the next ledger's upload: while every
/// GET of the first ledger's objects hangs (its verification cannot end),
/// the second ledger is uploaded, verified, marked offloaded and its
/// bookies' copy deleted; the first is none of these until the fault
/// clears. Offloading one ledger after the other would leave the second
/// waiting behind the first for as long as the store hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_ledger_uploads_while_one_is_verified() {
    let topic = "pipeline";
    let mut rng = StdRng::seed_from_u64(seed(topic, 503));
    let mut env = Env::start(topic, 60).await;
    bounded(topic, LIMIT, async {
        env.write(&mut rng, 130, 2 << 10, 20 << 10).await;
        let ids = env.wait_closed(2).await;
        let monitor = env.monitor_hot_copies(ids.clone());
        let hang = Fault::new(Op::Get, FaultKind::Hang(Duration::from_secs(3600)))
            .always()
            .on_path(format!("/{}-", ids[0]));
        env.faulty.inject(hang);
        env.set_policy(0).await;

        env.wait_offloaded(&ids[1..], true).await;
        let records = env.records().await;
        assert!(
            !records.get(&ids[0]).is_some_and(OffloadRecord::is_complete),
            "ledger {} was marked offloaded, unverified: {records:#?}",
            ids[0]
        );
        env.assert_hot_copy(ids[0]).await;

        env.offloads_once_faults_clear(&ids, monitor).await;
    })
    .await;
}

/// Damaged objects in the store after a complete offload (a flipped byte in
/// one ledger's data, another's data cut short): while the bookies have a
/// copy, reads through the managed ledger return the right bytes from it;
/// once they do not, reads of the damaged parts fail as corrupt (counted),
/// never with wrong data, an intact ledger still reads from Garage, and a
/// scrub names the damaged ledgers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_truncated_objects_are_never_served() {
    let mut rng = StdRng::seed_from_u64(seed("corrupt_objects", 503));
    let mut env = Env::start("damaged", 80).await;
    bounded("corrupt_objects", LIMIT, async {
        env.write(&mut rng, 250, 4 << 10, 16 << 10).await;
        let ids = env.wait_closed(3).await;
        env.set_policy(24 * 3600 * 1000).await;
        env.wait_offloaded(&ids, false).await;
        let (flipped, truncated, intact) = (ids[0], ids[1], ids[2]);

        let records = env.records().await;
        let data_key = |id: u64| {
            let o = records[&id].objects.as_ref().expect("objects");
            (Path::from(o.data_key.as_str()), o.data_size)
        };
        let (key, size) = data_key(flipped);
        let mut body = env
            .raw
            .get(&key)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        assert_eq!(body.len() as u64, size);
        body[size as usize / 2] ^= 0x40;
        env.raw.put(&key, Bytes::from(body).into()).await.unwrap();
        let (key, size) = data_key(truncated);
        let body = env.raw.get(&key).await.unwrap().bytes().await.unwrap();
        env.raw
            .put(&key, body.slice(..size as usize / 2).into())
            .await
            .unwrap();

        // The bookies still have every ledger: reads fall back to them.
        let before = env.corrupt_blocks();
        assert_eq!(env.read_back(&ids).await.expect("reads with fallback"), 240);
        assert!(
            env.corrupt_blocks() > before,
            "damage was detected and counted"
        );

        env.set_policy(0).await;
        env.wait_offloaded(&ids, true).await;
        let before = env.corrupt_blocks();
        for id in [flipped, truncated] {
            let failed = env.read_each(id).await;
            assert!(
                !failed.is_empty(),
                "ledger {id}: damaged data was read without error"
            );
            // Blocks are checked one by one: the intact first half of
            // the object still reads.
            assert!(
                failed.len() < 60,
                "ledger {id}: {} entries failed",
                failed.len()
            );
            for (pos, e) in &failed {
                assert!(
                    is_cold_error(e, true),
                    "{pos}: expected a corrupt cold read, got {e:?}"
                );
            }
        }
        assert!(env.corrupt_blocks() > before);
        assert!(env.tier.reader().stats().corrupt_blocks > 0);
        let failed = env.read_each(intact).await;
        assert!(failed.is_empty(), "intact ledger failed: {failed:?}");

        let scrub = env.tier.scrub(&env.name).await.expect("scrub");
        let bad: Vec<u64> = scrub
            .iter()
            .filter(|r| !r.ok)
            .map(|r| r.ledger_id)
            .collect();
        assert_eq!(bad, vec![flipped, truncated], "scrub: {scrub:?}");
        env.report();
    })
    .await;
}

/// Every GET fails (a 5xx storm) while a consumer reads offloaded ledgers
/// whose bookie copies are gone: reads fail, never with wrong data. A burst
/// of failures, a hung GET and a damaged body are ridden out by retries.
/// Once the store recovers every entry reads back byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_storm_during_cold_reads_then_recovery() {
    let mut rng = StdRng::seed_from_u64(seed("get_storm", 504));
    let mut env = Env::start("get-storm", 80).await;
    bounded("get_storm", LIMIT, async {
        env.write(&mut rng, 170, 4 << 10, 16 << 10).await;
        let ids = env.wait_closed(2).await;
        env.set_policy(0).await;
        env.wait_offloaded(&ids, true).await;

        let f = &env.faulty;
        f.inject(Fault::new(Op::Get, FaultKind::Fail).always());
        let gets = f.requests(Op::Get);
        for _ in 0..3 {
            let r = env.read_back(&ids).await;
            assert!(r.is_err(), "reads during the storm cannot succeed: {r:?}");
        }
        assert!(f.requests(Op::Get) > gets, "the storm was met");

        // A short burst: each request fails at most 4 times, fewer than
        // the reader's attempts; a damaged body is fetched again.
        f.clear_faults();
        f.inject(Fault::new(Op::Get, FaultKind::Fail).times(3));
        f.inject(Fault::new(
            Op::Get,
            FaultKind::Hang(Duration::from_secs(3600)),
        ));
        f.inject(Fault::new(Op::Get, FaultKind::FlipByte).on_path("/data"));
        let retries = env.usage.total().snapshot().retries;
        assert_eq!(
            env.read_back(&[ids[0]])
                .await
                .expect("reads ride out a burst"),
            80
        );
        assert!(env.usage.total().snapshot().retries >= retries + 4);

        f.clear_faults();
        assert_eq!(
            env.read_back(&ids).await.expect("reads after recovery"),
            160
        );
        assert_eq!(
            env.corrupt_blocks(),
            0,
            "a damaged transfer is not a corrupt block"
        );
        env.report();
    })
    .await;
}

/// An upload that fails half-way (parts accepted, then the store fails),
/// with the deletion lag 0: the bookies keep their copy through every
/// failed pass, the aborted upload leaves nothing, and once the store
/// recovers the offload completes and only then does the hot copy go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_upload_keeps_the_hot_copy() {
    let mut rng = StdRng::seed_from_u64(seed("failed_upload", 505));
    let mut env = Env::start("half-upload", 120).await;
    bounded("failed_upload", LIMIT, async {
        // ~12 MiB: three parts.
        env.write(&mut rng, 125, 90 << 10, 110 << 10).await;
        let ids = env.wait_closed(1).await;
        let monitor = env.monitor_hot_copies(ids.clone());
        // The create and the first part go through, then every multipart
        // request fails.
        env.faulty
            .inject(Fault::new(Op::Multipart, FaultKind::Fail).after(2).always());
        env.set_policy(0).await;

        env.wait_failed_passes(3).await;
        assert!(env.faulty.aborts() >= 1, "the half-done upload was aborted");
        assert!(env.usage.total().snapshot().put_bytes >= MIB5 as u64);
        let records = env.records().await;
        assert!(records.values().all(|r| !r.is_complete()), "{records:#?}");
        env.assert_hot_copy(ids[0]).await;
        // Aborted multipart uploads leave no object; the index is never written.
        let left = env.objects().await;
        assert!(left.is_empty(), "a failed upload left {left:?}");

        env.offloads_once_faults_clear(&ids, monitor).await;
    })
    .await;
}
