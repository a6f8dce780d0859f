//! Fault tests of the storage layer with real processes: `strata bookie`
//! processes (the binary built by `cargo build -p strata`), a real etcd for
//! the metadata they share with the test, and the `strata-ledger` client in
//! the test process.
//!
//! Every test fails (never skips) if the binary or etcd is missing, runs under
//! a time bound, and uses ephemeral ports and temporary directories only.
//! Payloads come from a seeded RNG; the seed is printed and can be forced
//! with `STRATA_TEST_SEED`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_common::metadata::{self, MetadataStore};
use strata_ledger::{ClientConfig, LedgerClient, LedgerError, LedgerWriter};
use strata_proto::bookie::bookie_client::BookieClient;
use strata_proto::bookie::{
    AddEntry, AddRequest, AddResult, AddStatus, Entry, InfoRequest, ReadLacRequest, ReadRequest,
};
use strata_tests::bookie::BookieProcess;
use strata_tests::etcd::EtcdServer;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Runs a test body under a time bound, so a hang fails the test.
async fn bounded<F: Future<Output = ()>>(name: &str, limit: Duration, body: F) {
    let started = Instant::now();
    if tokio::time::timeout(limit, body).await.is_err() {
        panic!("{name}: did not finish within {limit:?}");
    }
    eprintln!("{name}: passed in {:.1?}", started.elapsed());
}

/// The test's RNG seed: `STRATA_TEST_SEED` if set, else `default`. Printed.
fn seed(name: &str, default: u64) -> u64 {
    let seed = std::env::var("STRATA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    eprintln!("{name}: seed {seed} (set STRATA_TEST_SEED to change it)");
    seed
}

fn random_payload(rng: &mut StdRng, max: usize) -> Bytes {
    let len = rng.random_range(1..=max);
    let mut buf = vec![0u8; len];
    rng.fill(&mut buf[..]);
    Bytes::from(buf)
}

async fn start_etcd() -> EtcdServer {
    EtcdServer::start()
        .await
        .unwrap_or_else(|e| panic!("etcd is required for these tests: {e:#}"))
}

async fn store(url: &str) -> Arc<dyn MetadataStore> {
    metadata::open(url)
        .await
        .unwrap_or_else(|e| panic!("open metadata store {url}: {e}"))
}

/// Client settings for fault tests: failures are noticed and given up on
/// within seconds, and the outstanding window is small.
fn fast_config() -> ClientConfig {
    ClientConfig {
        add_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        ensemble_change_timeout: Duration::from_secs(2),
        max_outstanding_bytes: 1 << 20,
    }
}

async fn client(url: &str, config: ClientConfig) -> LedgerClient {
    LedgerClient::new(store(url).await, config)
}

/// Flags every test bookie gets: a short registration TTL so a killed
/// bookie's registration goes away quickly.
const BASE_ARGS: &[&str] = &["--registration-ttl", "2s"];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = BASE_ARGS.to_vec();
    v.extend_from_slice(extra);
    v
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `limit`.
async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let give_up = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < give_up,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fast pseudo-random payloads for high-rate appenders (filling every
/// payload from the RNG is slow in debug builds): random slices of a few
/// random blocks, each stamped with its entry id so no two are equal.
struct PayloadSource {
    blocks: Vec<Vec<u8>>,
}

impl PayloadSource {
    fn new(rng: &mut StdRng, max_size: usize) -> PayloadSource {
        let blocks = (0..4)
            .map(|_| {
                let mut b = vec![0u8; max_size.max(8) * 2];
                rng.fill(&mut b[..]);
                b
            })
            .collect();
        PayloadSource { blocks }
    }

    fn next(&mut self, rng: &mut StdRng, id: u64) -> Bytes {
        let max = self.blocks[0].len() / 2;
        let len = rng.random_range(8..=max.max(8));
        let block = &self.blocks[rng.random_range(0..self.blocks.len())];
        let start = rng.random_range(0..=block.len() - len);
        let mut p = block[start..start + len].to_vec();
        p[..8].copy_from_slice(&id.to_le_bytes());
        Bytes::from(p)
    }
}

/// What an [`Appender`] did: the payload of every entry id handed out, and
/// which ids were acknowledged or failed.
#[derive(Default)]
struct Record {
    /// `sent[id]` is the payload enqueued as entry `id`.
    sent: Vec<Bytes>,
    acked: BTreeSet<u64>,
    failed: BTreeMap<u64, LedgerError>,
}

/// Appends random payloads to a ledger, pipelined (bounded by the client's
/// outstanding window), until stopped or until the writer fails.
struct Appender {
    record: Arc<std::sync::Mutex<Record>>,
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<Option<LedgerError>>>,
}

impl Appender {
    /// `already` are the entries appended before (ids `0..already.len()`,
    /// all acknowledged).
    fn spawn(
        writer: Arc<LedgerWriter>,
        rng: StdRng,
        max_size: usize,
        already: Vec<Bytes>,
    ) -> Appender {
        Self::spawn_limited(writer, rng, max_size, already, None)
    }

    /// Like [`Appender::spawn`], enqueueing at most `bytes_per_sec` payload
    /// bytes per second if given.
    fn spawn_limited(
        writer: Arc<LedgerWriter>,
        mut rng: StdRng,
        max_size: usize,
        already: Vec<Bytes>,
        bytes_per_sec: Option<u64>,
    ) -> Appender {
        let prefix = Record {
            acked: (0..already.len() as u64).collect(),
            sent: already,
            failed: BTreeMap::new(),
        };
        let record = Arc::new(std::sync::Mutex::new(prefix));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (record, stop) = (record.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acks = Vec::new();
                let mut enqueue_error = None;
                let mut payloads = PayloadSource::new(&mut rng, max_size);
                let started = Instant::now();
                let mut bytes_sent = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let next_id = record.lock().unwrap().sent.len() as u64;
                    let payload = payloads.next(&mut rng, next_id);
                    if let Some(rate) = bytes_per_sec {
                        // Sleep until this payload is within the budget.
                        bytes_sent += payload.len() as u64;
                        let due = Duration::from_secs_f64(bytes_sent as f64 / rate as f64);
                        tokio::time::sleep_until((started + due).into()).await;
                    }
                    match writer.enqueue(payload.clone()).await {
                        Ok(fut) => {
                            let id = {
                                let mut r = record.lock().unwrap();
                                r.sent.push(payload);
                                (r.sent.len() - 1) as u64
                            };
                            let record = record.clone();
                            acks.push(tokio::spawn(async move {
                                match fut.await {
                                    Ok(got) => {
                                        assert_eq!(got, id, "entry ids follow enqueue order");
                                        record.lock().unwrap().acked.insert(id);
                                    }
                                    Err(e) => {
                                        record.lock().unwrap().failed.insert(id, e);
                                    }
                                }
                            }));
                        }
                        Err(e) => {
                            enqueue_error = Some(e);
                            break;
                        }
                    }
                    // Let the ack tasks run between enqueues.
                    tokio::task::yield_now().await;
                }
                for a in acks {
                    a.await.expect("ack task panicked");
                }
                enqueue_error
            })
        };
        Appender {
            record,
            stop,
            task: Some(task),
        }
    }

    fn acked(&self) -> usize {
        self.record.lock().unwrap().acked.len()
    }

    /// Waits until at least `n` entries were acknowledged.
    async fn wait_acked(&self, n: usize, limit: Duration) {
        wait_until(&format!("{n} acknowledged entries"), limit, || {
            self.acked() >= n
        })
        .await;
    }

    /// Waits until the appender stops by itself (its writer failed).
    async fn wait_stopped(&self, what: &str, limit: Duration) {
        let task = self.task.as_ref().expect("appender finished");
        wait_until(what, limit, || task.is_finished()).await;
    }

    /// Stops enqueueing and waits for every outstanding entry's outcome.
    /// Returns the record and the error that stopped enqueueing, if any.
    async fn finish(mut self, limit: Duration) -> (Record, Option<LedgerError>) {
        self.stop.store(true, Ordering::Release);
        let task = self.task.take().expect("finish twice");
        let err = tokio::time::timeout(limit, task)
            .await
            .unwrap_or_else(|_| panic!("appender did not finish within {limit:?}"))
            .expect("appender task panicked");
        let record = std::mem::take(&mut *self.record.lock().unwrap());
        (record, err)
    }
}

/// Checks entries `0..=last` read back against what was sent for each id.
fn check_entries(what: &str, entries: &[strata_ledger::LedgerEntry], sent: &[Bytes], last: i64) {
    assert_eq!(
        entries.len() as i64,
        last + 1,
        "{what}: expected entries 0..={last}"
    );
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.entry_id, i as u64, "{what}: entries come back in order");
        let sent = sent.get(i).unwrap_or_else(|| {
            panic!(
                "{what}: entry {i} read back but only {} were ever sent",
                sent.len()
            )
        });
        assert!(
            e.payload == *sent,
            "{what}: entry {i} differs from what was sent ({} bytes read, {} sent)",
            e.payload.len(),
            sent.len()
        );
    }
}

/// Reads `first..=last` in bounded chunks.
async fn read_all(
    reader: &strata_ledger::LedgerReader,
    last: i64,
) -> Vec<strata_ledger::LedgerEntry> {
    let mut out = Vec::new();
    let mut first = 0i64;
    while first <= last {
        let end = (first + 499).min(last);
        let got = reader
            .read(first as u64, end as u64)
            .await
            .unwrap_or_else(|e| panic!("read {first}..={end}: {e}"));
        out.extend(got);
        first = end + 1;
    }
    out
}

async fn raw_client(address: &str) -> BookieClient<Channel> {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        match BookieClient::connect(format!("http://{address}")).await {
            Ok(c) => {
                return c
                    .max_decoding_message_size(80 << 20)
                    .max_encoding_message_size(80 << 20);
            }
            Err(e) if Instant::now() < give_up => {
                eprintln!("connect {address}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("connect {address}: {e}"),
        }
    }
}

fn entry(ledger_id: u64, entry_id: u64, cumulative_length: u64, payload: Bytes) -> Entry {
    Entry {
        ledger_id,
        entry_id,
        cumulative_length,
        crc32c: strata_proto::entry_crc32c(ledger_id, entry_id, cumulative_length, &payload),
        payload,
    }
}

/// Sends one batch of adds on a fresh add stream; returns every result.
async fn raw_add(rpc: &mut BookieClient<Channel>, adds: Vec<AddEntry>) -> Vec<AddResult> {
    let n = adds.len();
    let request = futures::stream::iter(vec![AddRequest { entries: adds }]);
    let mut inbound = rpc
        .add_entries(request)
        .await
        .expect("open add stream")
        .into_inner();
    let mut results = Vec::new();
    while results.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), inbound.message()).await {
            Ok(Ok(Some(r))) => results.extend(r.results),
            Ok(Ok(None)) => break,
            Ok(Err(s)) => panic!("add stream failed: {s}"),
            Err(_) => panic!("no add result within 10 s"),
        }
    }
    assert_eq!(results.len(), n, "one result per add: {results:?}");
    results
}

fn status_of(r: &AddResult) -> AddStatus {
    AddStatus::try_from(r.status).unwrap_or_else(|_| panic!("unknown add status {}", r.status))
}

async fn raw_read(
    rpc: &mut BookieClient<Channel>,
    ledger_id: u64,
    first: u64,
    last: u64,
) -> Result<Vec<Entry>, tonic::Status> {
    rpc.read_entries(ReadRequest {
        ledger_id,
        first_entry: first,
        last_entry: last,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().entries)
}

/// Reads each id singly from one bookie and checks payload and checksum.
async fn check_on_bookie(address: &str, ledger_id: u64, ids: &BTreeSet<u64>, sent: &[Bytes]) {
    let mut rpc = raw_client(address).await;
    for &id in ids {
        let got = raw_read(&mut rpc, ledger_id, id, id)
            .await
            .unwrap_or_else(|s| panic!("read of acknowledged entry {id} from {address}: {s}"));
        assert_eq!(got.len(), 1, "entry {id}: one entry back");
        let e = &got[0];
        assert_eq!(e.entry_id, id);
        assert_eq!(
            e.crc32c,
            strata_proto::entry_crc32c(ledger_id, id, e.cumulative_length, &e.payload),
            "entry {id}: checksum"
        );
        assert!(
            e.payload == sent[id as usize],
            "entry {id}: payload differs"
        );
    }
}

// ---------------------------------------------------------------------------
// a. SIGKILL during appends
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_appends_loses_no_acknowledged_entry() {
    let name = "sigkill_during_appends";
    bounded(name, Duration::from_secs(180), async {
        let seed = seed(name, 0x5EED_000A);
        let etcd = start_etcd().await;
        let dir = TempDir::new().unwrap();
        let mut bookie = BookieProcess::start(dir.path().join("b0"), &etcd.url(), &args(&[])).await;
        let writer_client = client(&etcd.url(), fast_config()).await;
        let writer = Arc::new(writer_client.create(1, 1, 1).await.expect("create ledger"));
        let ledger = writer.ledger_id();

        let appender = Appender::spawn(writer.clone(), StdRng::seed_from_u64(seed), 32 << 10, Vec::new());
        appender.wait_acked(300, Duration::from_secs(60)).await;
        bookie.kill();
        let acked_at_kill = appender.acked();
        // The writer finds no replacement and fails; every outstanding
        // entry resolves one way or the other.
        appender
            .wait_stopped("the writer to fail", Duration::from_secs(60))
            .await;
        let (record, stop_error) = appender.finish(Duration::from_secs(60)).await;
        eprintln!(
            "{name}: killed after {acked_at_kill} acks; sent {}, acked {}, failed {}, writer stopped with {:?}",
            record.sent.len(),
            record.acked.len(),
            record.failed.len(),
            stop_error
        );
        assert!(stop_error.is_some(), "the writer must fail with its only bookie dead");
        // Entries were in flight (or queued) when the bookie died.
        assert!(!record.failed.is_empty(), "the kill came mid-stream");
        drop(writer);

        bookie.restart().await;
        let reader = client(&etcd.url(), fast_config())
            .await
            .open_and_recover(ledger)
            .await
            .unwrap_or_else(|e| panic!("recover: {e}\n{}", bookie.log_tail()));
        let last = reader.last_readable();
        let max_acked = record.acked.last().map_or(-1, |a| *a as i64);
        eprintln!("{name}: recovered up to {last}; last acknowledged {max_acked}");
        assert!(
            last >= max_acked,
            "recovered ledger ends at {last} but entry {max_acked} was acknowledged"
        );
        assert!(
            record.acked.iter().enumerate().all(|(i, id)| i as u64 == *id),
            "acknowledged ids form a prefix"
        );
        let entries = read_all(&reader, last).await;
        check_entries(name, &entries, &record.sent, last);
    })
    .await;
}

// ---------------------------------------------------------------------------
// b. Torn / corrupt journal tail
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// Cut the file in the middle of the last record.
    Truncate,
    /// Flip a byte inside the last record's body.
    FlipByte,
}

/// The newest journal file and the (offset, body length) of its last record.
fn last_journal_record(journal_dir: &Path) -> (PathBuf, u64, usize) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(journal_dir)
        .expect("list journal dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
        .collect();
    files.sort();
    // The newest file holding a record (a restart leaves an empty new one).
    for path in files.iter().rev() {
        let data = std::fs::read(path).unwrap();
        let mut pos = 16usize;
        let mut last = None;
        while pos + 8 <= data.len() {
            let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            if len == 0 || pos + 8 + len > data.len() {
                break;
            }
            last = Some((pos as u64, len));
            pos += 8 + len;
        }
        if let Some((offset, len)) = last {
            return (path.clone(), offset, len);
        }
    }
    panic!("no journal record in {}", journal_dir.display());
}

async fn journal_tail_damage(name: &str, damage: Damage, default_seed: u64) {
    let seed = seed(name, default_seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let etcd = start_etcd().await;
    let dir = TempDir::new().unwrap();
    // Nothing leaves the journal before the kill: no periodic flush, and a
    // write cache far larger than what the test writes.
    let mut bookie = BookieProcess::start(
        dir.path().join("b0"),
        &etcd.url(),
        &args(&["--flush-interval", "1h", "--write-cache-bytes", "268435456"]),
    )
    .await;
    let writer = client(&etcd.url(), fast_config())
        .await
        .create(1, 1, 1)
        .await
        .expect("create ledger");
    let ledger = writer.ledger_id();
    // One append at a time: one journal record per entry, in entry order.
    let mut sent = Vec::new();
    for i in 0..50u64 {
        let payload = random_payload(&mut rng, 4 << 10);
        let id = writer.append(payload.clone()).await.expect("append");
        assert_eq!(id, i);
        sent.push(payload);
    }
    let damaged = sent.len() as u64 - 1;
    bookie.kill();
    drop(writer);

    let (path, offset, len) = last_journal_record(&bookie.journal_dir());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut body = vec![0u8; len];
    file.read_exact_at(&mut body, offset + 8).unwrap();
    // The record is the add of our last entry: [type][ledger][entry]...
    assert_eq!(body[0], 1, "journal add record");
    assert_eq!(u64::from_le_bytes(body[1..9].try_into().unwrap()), ledger);
    assert_eq!(u64::from_le_bytes(body[9..17].try_into().unwrap()), damaged);
    match damage {
        Damage::Truncate => file.set_len(offset + 8 + len as u64 / 2).unwrap(),
        Damage::FlipByte => {
            let at = offset + 8 + len as u64 / 2;
            let mut b = [0u8; 1];
            file.read_exact_at(&mut b, at).unwrap();
            file.write_all_at(&[b[0] ^ 0xFF], at).unwrap();
        }
    }
    file.sync_all().unwrap();
    drop(file);
    eprintln!(
        "{name}: damaged ({damage:?}) the record of entry {damaged} at {}:{offset}",
        path.display()
    );

    bookie.restart().await;
    let log = bookie.log();
    assert!(
        log.contains("journal tail is torn or corrupt"),
        "the bookie logs the cut\n{}",
        bookie.log_tail()
    );

    // The bookie itself: every entry before the damaged one, and the
    // damaged one either absent or intact, never garbage.
    let mut rpc = raw_client(&bookie.address()).await;
    let lac = rpc
        .read_lac(ReadLacRequest { ledger_id: ledger })
        .await
        .expect("read lac")
        .into_inner();
    let mut damaged_present = false;
    for id in 0..=damaged {
        match raw_read(&mut rpc, ledger, id, id).await {
            Ok(got) => {
                assert_eq!(got.len(), 1);
                assert!(
                    got[0].payload == sent[id as usize],
                    "entry {id} is not what was sent"
                );
                assert_eq!(
                    got[0].crc32c,
                    strata_proto::entry_crc32c(
                        ledger,
                        id,
                        got[0].cumulative_length,
                        &got[0].payload
                    )
                );
                if id == damaged {
                    damaged_present = true;
                }
            }
            Err(s) if id == damaged && s.code() == tonic::Code::NotFound => {}
            Err(s) => panic!("read entry {id}: {s}\n{}", bookie.log_tail()),
        }
    }
    eprintln!(
        "{name}: after restart last_entry={} damaged entry {}",
        lac.last_entry,
        if damaged_present { "intact" } else { "absent" }
    );
    assert_eq!(
        lac.last_entry,
        if damaged_present {
            damaged as i64
        } else {
            damaged as i64 - 1
        }
    );

    // Recovery from a fresh client seals the ledger where the data ends.
    let reader = client(&etcd.url(), fast_config())
        .await
        .open_and_recover(ledger)
        .await
        .unwrap_or_else(|e| panic!("recover: {e}\n{}", bookie.log_tail()));
    let last = reader.last_readable();
    assert!(last >= damaged as i64 - 1, "recovered only up to {last}");
    let entries = read_all(&reader, last).await;
    check_entries(name, &entries, &sent, last);

    // And the bookie takes new adds after the cut.
    let w = client(&etcd.url(), fast_config())
        .await
        .create(1, 1, 1)
        .await
        .expect("create after restart");
    w.append(Bytes::from_static(b"after the cut"))
        .await
        .expect("append after the cut");
    w.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn journal_torn_tail_is_cut_on_restart() {
    let name = "journal_torn_tail";
    bounded(
        name,
        Duration::from_secs(120),
        journal_tail_damage(name, Damage::Truncate, 0x5EED_000B),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn journal_corrupt_tail_is_cut_on_restart() {
    let name = "journal_corrupt_tail";
    bounded(
        name,
        Duration::from_secs(120),
        journal_tail_damage(name, Damage::FlipByte, 0x5EED_000C),
    )
    .await;
}

// ---------------------------------------------------------------------------
// c. Ensemble change when a bookie dies
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ensemble_change_after_sigkill_keeps_every_append() {
    let name = "ensemble_change_after_sigkill";
    bounded(name, Duration::from_secs(180), async {
        let seed = seed(name, 0x5EED_000D);
        let etcd = start_etcd().await;
        let dir = TempDir::new().unwrap();
        let mut bookies = Vec::new();
        for i in 0..4 {
            bookies.push(
                BookieProcess::start(dir.path().join(format!("b{i}")), &etcd.url(), &args(&[]))
                    .await,
            );
        }
        let c = client(&etcd.url(), fast_config()).await;
        let writer = Arc::new(c.create(3, 2, 2).await.expect("create ledger"));
        let ledger = writer.ledger_id();
        let first_ensemble = writer.metadata().ensembles[0].bookies.clone();
        let appender = Appender::spawn(
            writer.clone(),
            StdRng::seed_from_u64(seed),
            16 << 10,
            Vec::new(),
        );
        appender.wait_acked(300, Duration::from_secs(60)).await;

        let victim = first_ensemble[1].clone();
        let idx = bookies
            .iter()
            .position(|b| b.address() == victim)
            .expect("ensemble bookie is one of ours");
        bookies[idx].kill();
        let acked_at_kill = appender.acked();
        eprintln!("{name}: killed {victim} after {acked_at_kill} acks");

        // Appends go on, on a new ensemble.
        wait_until("an ensemble change", Duration::from_secs(60), || {
            writer.metadata().ensembles.len() >= 2
        })
        .await;
        appender
            .wait_acked(acked_at_kill + 300, Duration::from_secs(60))
            .await;
        let (record, stop_error) = appender.finish(Duration::from_secs(60)).await;
        assert!(stop_error.is_none(), "no enqueue failed: {stop_error:?}");
        assert!(
            record.failed.is_empty(),
            "no append failed: {:?}",
            record.failed.iter().take(5).collect::<Vec<_>>()
        );
        let last = writer.close().await.expect("close");
        assert_eq!(
            last,
            record.sent.len() as i64 - 1,
            "close seals at the last append"
        );
        let md = writer.metadata();
        eprintln!("{name}: ensembles {:?}", md.ensembles);
        assert!(md.ensembles.len() >= 2, "the writer changed ensembles");
        assert!(
            !md.last_fragment().bookies.contains(&victim),
            "the dead bookie left the ensemble"
        );

        let reader = client(&etcd.url(), fast_config())
            .await
            .open(ledger)
            .await
            .expect("open closed ledger");
        assert_eq!(reader.last_readable(), last);
        let entries = read_all(&reader, last).await;
        check_entries(name, &entries, &record.sent, last);
        assert_eq!(
            record.acked.len() as i64,
            last + 1,
            "every entry acknowledged"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------
// d. Fencing
// ---------------------------------------------------------------------------

fn is_fenced(e: &LedgerError) -> bool {
    match e {
        LedgerError::Fenced(_) => true,
        LedgerError::WriterFailed(m) => m.contains("fenced"),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_fences_out_the_old_writer() {
    let name = "recovery_fences_out_the_old_writer";
    bounded(name, Duration::from_secs(180), async {
        let seed = seed(name, 0x5EED_000E);
        let mut rng = StdRng::seed_from_u64(seed);
        let etcd = start_etcd().await;
        let dir = TempDir::new().unwrap();
        let mut bookies = Vec::new();
        for i in 0..3 {
            bookies.push(
                BookieProcess::start(dir.path().join(format!("b{i}")), &etcd.url(), &args(&[])).await,
            );
        }
        let a = client(&etcd.url(), fast_config()).await;
        let writer = Arc::new(a.create(3, 3, 3).await.expect("create ledger"));
        let ledger = writer.ledger_id();
        let mut sent = Vec::new();
        for i in 0..100u64 {
            let p = random_payload(&mut rng, 8 << 10);
            assert_eq!(writer.append(p.clone()).await.expect("append"), i);
            sent.push(p);
        }
        // A keeps appending, pipelined, while B recovers.
        let appender = Appender::spawn(
            writer.clone(),
            StdRng::seed_from_u64(seed ^ 1),
            8 << 10,
            sent,
        );
        appender.wait_acked(200, Duration::from_secs(60)).await;

        let b = client(&etcd.url(), fast_config()).await;
        let reader = b.open_and_recover(ledger).await.expect("recover");
        let recovered_last = reader.last_readable();

        // A's appender stops on its own: its writer is fenced.
        let (record, stop_error) = appender.finish(Duration::from_secs(60)).await;
        eprintln!(
            "{name}: B recovered up to {recovered_last}; A's appender sent {}, acked {}, failed {}, stopped with {stop_error:?}",
            record.sent.len(),
            record.acked.len(),
            record.failed.len()
        );
        let stop_error = stop_error.expect("A's appender stopped because its writer failed");
        assert!(is_fenced(&stop_error), "A's writer failed as fenced: {stop_error}");
        for (id, e) in &record.failed {
            assert!(is_fenced(e), "A's entry {id} failed with {e}, not as fenced");
        }
        let sent = record.sent;
        let max_acked = record.acked.last().map_or(-1, |id| *id as i64);
        assert!(max_acked >= 199);

        let err = writer
            .append(Bytes::from_static(b"too late"))
            .await
            .expect_err("append after recovery must fail");
        assert!(is_fenced(&err), "append after recovery: {err}");
        let err = writer.close().await.expect_err("close after recovery must fail");
        assert!(is_fenced(&err), "close after recovery: {err}");

        assert!(
            recovered_last >= max_acked,
            "B recovered up to {recovered_last} but A saw {max_acked} acknowledged"
        );
        let entries = read_all(&reader, recovered_last).await;
        check_entries(name, &entries, &sent, recovered_last);

        // The metadata is sealed where B put it.
        let md = client(&etcd.url(), fast_config())
            .await
            .metadata(ledger)
            .await
            .unwrap();
        assert!(md.is_closed());
        assert_eq!(md.last_entry_id, recovered_last);
    })
    .await;
}

/// Recovery while most of a writer's burst of adds is parked in the bookie
/// waiting for write-cache space (1 MiB cache, entries up to 600 KiB): no
/// add may be acknowledged past where the recovered ledger ends, and every
/// entry it contains is exactly what was sent. (Whether a parked add passed
/// the fence check before the fence depends on timing here; the race itself
/// is reproduced deterministically by `bookie/tests/fence_race.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_fences_adds_waiting_for_cache_space() {
    let name = "recovery_fences_parked_adds";
    bounded(name, Duration::from_secs(180), async {
        let seed = seed(name, 0x5EED_0012);
        let mut rng = StdRng::seed_from_u64(seed);
        let etcd = start_etcd().await;
        let dir = TempDir::new().unwrap();
        let bookie = BookieProcess::start(
            dir.path().join("b0"),
            &etcd.url(),
            &args(&["--write-cache-bytes", "1048576", "--flush-interval", "1h"]),
        )
        .await;
        let config = ClientConfig {
            max_outstanding_bytes: 64 << 20,
            ..fast_config()
        };
        let writer = client(&etcd.url(), config)
            .await
            .create(1, 1, 1)
            .await
            .expect("create ledger");
        let ledger = writer.ledger_id();
        let mut payloads = PayloadSource::new(&mut rng, 600 << 10);
        let mut sent = Vec::new();
        let mut acks = Vec::new();
        for id in 0..40u64 {
            let p = payloads.next(&mut rng, id);
            acks.push(writer.enqueue(p.clone()).await.expect("enqueue"));
            sent.push(p);
        }
        let reader = client(&etcd.url(), fast_config())
            .await
            .open_and_recover(ledger)
            .await
            .unwrap_or_else(|e| panic!("recover: {e}\n{}", bookie.log_tail()));
        let recovered_last = reader.last_readable();
        let outcomes = futures::future::join_all(acks).await;
        let acked: Vec<u64> = outcomes.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
        let max_acked = acked.last().map_or(-1, |id| *id as i64);
        eprintln!(
            "{name}: recovered up to {recovered_last}; {} of {} adds acknowledged, up to {max_acked}",
            acked.len(),
            sent.len()
        );
        for r in outcomes.iter().filter_map(|r| r.as_ref().err()) {
            assert!(is_fenced(r), "adds fail only as fenced: {r}");
        }
        assert!(
            max_acked <= recovered_last,
            "entry {max_acked} was acknowledged to the writer but the recovered ledger ends at {recovered_last}"
        );
        let entries = read_all(&reader, recovered_last).await;
        check_entries(name, &entries, &sent, recovered_last);
    })
    .await;
}

// ---------------------------------------------------------------------------
// e. Full disk
// ---------------------------------------------------------------------------

/// A small filesystem mounted for one test; unmounted on drop.
struct SmallDisk {
    mountpoint: PathBuf,
    image: Option<PathBuf>,
}

impl SmallDisk {
    /// A 64 MiB tmpfs at `mountpoint`, or failing that a loop-mounted ext4
    /// image. Panics with what failed if neither works.
    fn mount(mountpoint: &Path, image: &Path) -> SmallDisk {
        std::fs::create_dir_all(mountpoint).unwrap();
        let tmpfs = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(mountpoint)
            .output()
            .expect("run mount");
        if tmpfs.status.success() {
            return SmallDisk {
                mountpoint: mountpoint.to_path_buf(),
                image: None,
            };
        }
        let tmpfs_err = String::from_utf8_lossy(&tmpfs.stderr).into_owned();
        let file = std::fs::File::create(image).unwrap();
        file.set_len(64 << 20).unwrap();
        drop(file);
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(image)
            .output()
            .expect("run mkfs.ext4");
        assert!(
            mkfs.status.success(),
            "cannot mount a small disk: tmpfs: {tmpfs_err}; mkfs.ext4: {}",
            String::from_utf8_lossy(&mkfs.stderr)
        );
        let lo = Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(mountpoint)
            .output()
            .expect("run mount -o loop");
        assert!(
            lo.status.success(),
            "cannot mount a small disk: tmpfs: {tmpfs_err}; loop ext4: {}",
            String::from_utf8_lossy(&lo.stderr)
        );
        SmallDisk {
            mountpoint: mountpoint.to_path_buf(),
            image: Some(image.to_path_buf()),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.mountpoint)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
        if let Some(image) = &self.image {
            let _ = std::fs::remove_file(image);
        }
    }
}

async fn registration_state(store: &dyn MetadataStore, address: &str) -> Option<String> {
    let v = store
        .get(&strata_common::paths::bookie(address))
        .await
        .expect("read registration")?;
    let json: serde_json::Value = serde_json::from_slice(&v.value).expect("registration is JSON");
    json.get("state")
        .and_then(|s| s.as_str())
        .map(str::to_string)
}

async fn wait_registration_state(store: &dyn MetadataStore, bookie: &BookieProcess, want: &str) {
    let address = bookie.address();
    let address = address.as_str();
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let state = registration_state(store, address).await;
        if state.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "registration of {address} is {state:?}, expected {want:?}\n{}",
            bookie.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fills a 64 MiB disk through one bookie until its adds fail, then checks
/// that it is read-only, refuses adds, serves every acknowledged entry, and
/// still serves them after a crash and restart.
///
/// With `watermark`, appends are rate-limited so that the 200 ms disk check
/// sees the `threshold` crossed long before the disk is full: the bookie
/// must turn read-only without ever hitting ENOSPC, and is still over its
/// low watermark (so still read-only) after the restart. Without it, appends
/// go as fast as they can with a threshold the disk check cannot catch in
/// time, so the bookie does run out of space (ENOSPC) and must cope.
async fn full_disk(name: &str, default_seed: u64, threshold: &str, lwm: &str, watermark: bool) {
    let seed = seed(name, default_seed);
    let etcd = start_etcd().await;
    let dir = TempDir::new().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("disk"), &dir.path().join("disk.img"));
    // Space an operator can free later (written, so tmpfs really holds it).
    let ballast = disk.mountpoint.join("ballast");
    std::fs::write(&ballast, vec![0xBAu8; 4 << 20]).unwrap();
    let data_dir = disk.mountpoint.join("b0");
    let mut bookie = BookieProcess::start(
        &data_dir,
        &etcd.url(),
        &args(&[
            "--journal-preallocate",
            "1048576",
            "--write-cache-bytes",
            "4194304",
            "--read-cache-bytes",
            "1048576",
            "--disk-check-interval",
            "200ms",
            "--disk-usage-threshold",
            threshold,
            "--disk-usage-lwm",
            lwm,
        ]),
    )
    .await;
    let address = bookie.address();
    let meta = store(&etcd.url()).await;
    assert_eq!(
        registration_state(meta.as_ref(), &address).await.as_deref(),
        Some("writable")
    );

    let writer = Arc::new(
        client(&etcd.url(), fast_config())
            .await
            .create(1, 1, 1)
            .await
            .expect("create ledger"),
    );
    let ledger = writer.ledger_id();
    let appender = Appender::spawn_limited(
        writer.clone(),
        StdRng::seed_from_u64(seed),
        64 << 10,
        Vec::new(),
        watermark.then_some(8 << 20),
    );
    // Append until the writer fails (its only bookie refuses adds).
    appender
        .wait_stopped("appends to fail on the full disk", Duration::from_secs(120))
        .await;
    let (record, stop_error) = appender.finish(Duration::from_secs(60)).await;
    eprintln!(
        "{name}: sent {}, acked {} ({} bytes), failed {}, stopped with {stop_error:?}; disk {:?}",
        record.sent.len(),
        record.acked.len(),
        record
            .acked
            .iter()
            .map(|id| record.sent[*id as usize].len())
            .sum::<usize>(),
        record.failed.len(),
        disk_usage(&disk.mountpoint),
    );
    assert!(record.acked.len() > 100, "the disk filled up too early");
    let enospc = bookie.log().contains("No space left on device");
    if watermark {
        assert!(
            !enospc,
            "the disk ran out before the watermark stopped adds\n{}",
            bookie.log_tail()
        );
    } else {
        assert!(enospc, "the disk never ran out\n{}", bookie.log_tail());
    }
    drop(writer);

    wait_registration_state(meta.as_ref(), &bookie, "read_only").await;
    assert!(
        bookie.is_running(),
        "the bookie is still up\n{}",
        bookie.log_tail()
    );
    let mut rpc = raw_client(&address).await;
    let info = rpc.info(InfoRequest {}).await.expect("info").into_inner();
    assert_eq!(info.state, "read_only");
    let results = raw_add(
        &mut rpc,
        vec![AddEntry {
            entry: Some(entry(ledger + 1000, 0, 3, Bytes::from_static(b"abc"))),
            lac: -1,
            recovery: false,
        }],
    )
    .await;
    assert_eq!(status_of(&results[0]), AddStatus::ReadOnly, "{results:?}");
    check_on_bookie(&address, ledger, &record.acked, &record.sent).await;

    // After a crash and restart everything acknowledged is still there. A
    // bookie that is still over its threshold is read-only from the start;
    // one whose restart reclaimed space (replay checkpoints the journal and
    // deletes the old file) may be writable again, and then takes adds.
    bookie.kill();
    if let Err(e) = bookie.try_restart().await {
        // A disk with no room at all can keep the bookie from starting
        // (its index must write on open); it must say so, and start once
        // an operator frees some space.
        assert!(
            !watermark && e.contains("No space left on device"),
            "restart failed: {e}"
        );
        eprintln!("{name}: the bookie cannot start on the full disk; freeing space");
        std::fs::remove_file(&ballast).unwrap();
        bookie.restart().await;
    }
    let state = if watermark {
        wait_registration_state(meta.as_ref(), &bookie, "read_only").await;
        "read_only".to_string()
    } else {
        registration_state(meta.as_ref(), &address)
            .await
            .expect("registered after restart")
    };
    eprintln!(
        "{name}: after restart the bookie is {state}; disk {:?}",
        disk_usage(&disk.mountpoint)
    );
    let mut rpc = raw_client(&address).await;
    let results = raw_add(
        &mut rpc,
        vec![AddEntry {
            entry: Some(entry(ledger + 1001, 0, 3, Bytes::from_static(b"abc"))),
            lac: -1,
            recovery: false,
        }],
    )
    .await;
    let want = if state == "read_only" {
        AddStatus::ReadOnly
    } else {
        AddStatus::Ok
    };
    assert_eq!(status_of(&results[0]), want, "{results:?}");
    check_on_bookie(&address, ledger, &record.acked, &record.sent).await;
    // Also through the ledger client, up to the LAC the bookie knows.
    let reader = client(&etcd.url(), fast_config())
        .await
        .open(ledger)
        .await
        .expect("open ledger");
    let lac = reader.last_readable();
    assert!(lac >= 0, "the bookie knows a LAC");
    let entries = read_all(&reader, lac).await;
    check_entries(name, &entries, &record.sent, lac);

    // Clean shutdown still works on the full disk.
    let status = bookie.stop().await;
    assert!(
        status.success(),
        "clean exit: {status}\n{}",
        bookie.log_tail()
    );
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_disk_turns_bookie_read_only_without_losing_data() {
    let name = "full_disk_watermark";
    bounded(
        name,
        Duration::from_secs(240),
        full_disk(name, 0x5EED_000F, "0.8", "0.7", true),
    )
    .await;
}

/// The same with watermarks the disk never reaches in time: the journal
/// itself runs out of space (ENOSPC) and the bookie must cope.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_space_turns_bookie_read_only_without_losing_data() {
    let name = "full_disk_enospc";
    bounded(
        name,
        Duration::from_secs(240),
        full_disk(name, 0x5EED_0011, "0.999", "0.9", false),
    )
    .await;
}

fn disk_usage(path: &Path) -> String {
    let out = Command::new("df").arg("-k").arg(path).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// f. Bad input against a live bookie
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_are_rejected_and_the_bookie_survives() {
    let name = "bad_requests";
    bounded(name, Duration::from_secs(120), async {
        let seed = seed(name, 0x5EED_0010);
        let mut rng = StdRng::seed_from_u64(seed);
        let etcd = start_etcd().await;
        let dir = TempDir::new().unwrap();
        let mut bookie = BookieProcess::start(dir.path().join("b0"), &etcd.url(), &args(&[])).await;
        let address = bookie.address();
        let mut rpc = raw_client(&address).await;

        // Wrong checksum: rejected, nothing stored (the ledger stays unknown).
        let mut bad = entry(7001, 0, 5, Bytes::from_static(b"hello"));
        bad.crc32c ^= 1;
        let r = raw_add(
            &mut rpc,
            vec![AddEntry {
                entry: Some(bad),
                lac: -1,
                recovery: false,
            }],
        )
        .await;
        assert_eq!(status_of(&r[0]), AddStatus::BadChecksum, "{r:?}");
        let s = raw_read(&mut rpc, 7001, 0, 0)
            .await
            .expect_err("nothing stored");
        assert_eq!(s.code(), tonic::Code::NotFound, "{s}");

        // An add without an entry.
        let r = raw_add(
            &mut rpc,
            vec![AddEntry {
                entry: None,
                lac: -1,
                recovery: false,
            }],
        )
        .await;
        assert_eq!(status_of(&r[0]), AddStatus::Invalid, "{r:?}");

        // Reads of what does not exist, and of an empty range.
        let s = raw_read(&mut rpc, 999_999, 0, 0)
            .await
            .expect_err("unknown ledger");
        assert_eq!(s.code(), tonic::Code::NotFound, "{s}");
        let payload = random_payload(&mut rng, 1024);
        let len = payload.len() as u64;
        let r = raw_add(
            &mut rpc,
            vec![AddEntry {
                entry: Some(entry(7002, 0, len, payload.clone())),
                lac: -1,
                recovery: false,
            }],
        )
        .await;
        assert_eq!(status_of(&r[0]), AddStatus::Ok, "{r:?}");
        // A bad checksum on a known ledger stores nothing either.
        let mut bad = entry(7002, 1, len + 3, Bytes::from_static(b"xyz"));
        bad.payload = Bytes::from_static(b"xyZ");
        let r = raw_add(
            &mut rpc,
            vec![AddEntry {
                entry: Some(bad),
                lac: 0,
                recovery: false,
            }],
        )
        .await;
        assert_eq!(status_of(&r[0]), AddStatus::BadChecksum, "{r:?}");
        let s = raw_read(&mut rpc, 7002, 1, 1)
            .await
            .expect_err("corrupt entry not stored");
        assert_eq!(s.code(), tonic::Code::NotFound, "{s}");
        let s = raw_read(&mut rpc, 7002, 5, 5)
            .await
            .expect_err("unknown entry");
        assert_eq!(s.code(), tonic::Code::NotFound, "{s}");
        let s = raw_read(&mut rpc, 7002, 3, 1)
            .await
            .expect_err("first > last");
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s}");
        let s = rpc
            .read_entries(ReadRequest {
                ledger_id: 7002,
                entry_ids: (0..10_001).collect(),
                ..Default::default()
            })
            .await
            .expect_err("too many ids");
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s}");

        // An entry over the 5 MiB limit (with a valid checksum).
        let big = Bytes::from(vec![0x5Au8; (5 << 20) + 1]);
        let big_len = len + big.len() as u64;
        let r = raw_add(
            &mut rpc,
            vec![AddEntry {
                entry: Some(entry(7002, 1, big_len, big)),
                lac: 0,
                recovery: false,
            }],
        )
        .await;
        assert_eq!(status_of(&r[0]), AddStatus::Invalid, "{r:?}");
        let s = raw_read(&mut rpc, 7002, 1, 1)
            .await
            .expect_err("oversized entry not stored");
        assert_eq!(s.code(), tonic::Code::NotFound, "{s}");

        // Raw garbage on the TCP port: random bytes; an HTTP/2 preface then
        // junk frames; an HTTP/1 request; a connection closed mid-preface.
        let mut junk = vec![0u8; 64 << 10];
        rng.fill(&mut junk[..]);
        let mut preface_then_junk = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        preface_then_junk.extend_from_slice(&junk[..4096]);
        let payloads: Vec<Vec<u8>> = vec![
            junk,
            preface_then_junk,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"PRI * HTTP".to_vec(),
            vec![0xFF; 9],
        ];
        for p in payloads {
            let mut s = TcpStream::connect(&address).expect("connect to bookie port");
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            // The server may close on us mid-write; that is fine.
            let _ = s.write_all(&p);
            let _ = s.flush();
            drop(s);
        }
        assert!(
            bookie.is_running(),
            "bookie died on garbage\n{}",
            bookie.log_tail()
        );

        // After all that, a normal add and read work on a new connection.
        let mut rpc = raw_client(&address).await;
        let p2 = random_payload(&mut rng, 1024);
        let r = raw_add(
            &mut rpc,
            vec![AddEntry {
                entry: Some(entry(7002, 1, len + p2.len() as u64, p2.clone())),
                lac: 0,
                recovery: false,
            }],
        )
        .await;
        assert_eq!(status_of(&r[0]), AddStatus::Ok, "{r:?}");
        let got = raw_read(&mut rpc, 7002, 0, 1).await.expect("read back");
        assert_eq!(got.len(), 2);
        assert!(got[0].payload == payload && got[1].payload == p2);

        // And through the ledger client end to end.
        let c = client(&etcd.url(), fast_config()).await;
        let w = c.create(1, 1, 1).await.expect("create");
        w.append(Bytes::from_static(b"still fine"))
            .await
            .expect("append");
        let last = w.close().await.expect("close");
        let got = c
            .open(w.ledger_id())
            .await
            .unwrap()
            .read(0, last as u64)
            .await
            .unwrap();
        assert_eq!(&got[0].payload[..], b"still fine");
        assert!(
            bookie.is_running(),
            "bookie alive at the end\n{}",
            bookie.log_tail()
        );
    })
    .await;
}
