//! Shared helpers for the fault tests of the storage layer
//! (`tests/tests/bookie_crash.rs`, `ledger_replication.rs`,
//! `bookie_disk_full.rs`, `bookie_bad_input.rs`): time bounds, seeds and
//! payloads, client and bookie settings, a pipelined [`Appender`], read-back
//! checks, raw gRPC access to one bookie, and a small mounted disk.
//!
//! The tests run real `strata bookie` processes (the binary built by
//! `cargo build -p strata`), a real etcd for the metadata they share with
//! the test, and the `strata-ledger` client in the test process. Every test
//! fails (never skips) if the binary or etcd is missing, runs under a time
//! bound ([`bounded`]), and uses ephemeral ports and temporary directories
//! only. Payloads come from a seeded RNG; the seed is printed and can be
//! forced with `STRATA_TEST_SEED` ([`seed`]).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use rand::rngs::StdRng;
use strata_common::metadata::{self, MetadataStore};
use strata_ledger::{ClientConfig, LedgerClient, LedgerError, LedgerWriter};
use strata_proto::bookie::bookie_client::BookieClient;
use strata_proto::bookie::{AddEntry, AddRequest, AddResult, AddStatus, Entry, ReadRequest};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::bookie::BookieProcess;
use crate::etcd::EtcdServer;

/// Runs a test body under a time bound, so a hang fails the test.
pub async fn bounded<F: Future<Output = ()>>(name: &str, limit: Duration, body: F) {
    let started = Instant::now();
    if tokio::time::timeout(limit, body).await.is_err() {
        panic!("{name}: did not finish within {limit:?}");
    }
    eprintln!("{name}: passed in {:.1?}", started.elapsed());
}

/// The test's RNG seed: `STRATA_TEST_SEED` if set, else `default`. Printed.
pub fn seed(name: &str, default: u64) -> u64 {
    let seed = std::env::var("STRATA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    eprintln!("{name}: seed {seed} (set STRATA_TEST_SEED to change it)");
    seed
}

/// A payload of 1..=`max` random bytes.
pub fn random_payload(rng: &mut StdRng, max: usize) -> Bytes {
    let len = rng.random_range(1..=max);
    let mut buf = vec![0u8; len];
    rng.fill(&mut buf[..]);
    Bytes::from(buf)
}

/// Starts a throwaway etcd; panics (never skips) if it cannot.
pub async fn start_etcd() -> EtcdServer {
    EtcdServer::start()
        .await
        .unwrap_or_else(|e| panic!("etcd is required for these tests: {e:#}"))
}

/// Opens the metadata store at `url`; panics on failure.
pub async fn store(url: &str) -> Arc<dyn MetadataStore> {
    metadata::open(url)
        .await
        .unwrap_or_else(|e| panic!("open metadata store {url}: {e}"))
}

/// Client settings for fault tests: failures are noticed and given up on
/// within seconds, and the outstanding window is small.
pub fn fast_config() -> ClientConfig {
    ClientConfig {
        add_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        ensemble_change_timeout: Duration::from_secs(2),
        max_outstanding_bytes: 1 << 20,
    }
}

/// A ledger client on the metadata store at `url`.
pub async fn client(url: &str, config: ClientConfig) -> LedgerClient {
    LedgerClient::new(store(url).await, config)
}

/// Flags every test bookie gets: a short registration TTL so a killed
/// bookie's registration goes away quickly.
pub const BASE_ARGS: &[&str] = &["--registration-ttl", "2s"];

/// [`BASE_ARGS`] followed by `extra`.
pub fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = BASE_ARGS.to_vec();
    v.extend_from_slice(extra);
    v
}

/// Journal files a bookie keeps for reuse (`*.free`) in its journal `dir`.
pub fn pooled_journal_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".free"))
            })
            .count()
        })
        .unwrap_or(0)
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    wait_until_or_explain(what, limit, cond, String::new).await
}

/// [`wait_until`], with `explain()` (the state a timeout leaves behind: a
/// directory's files, a server's log) appended to the panic message.
pub async fn wait_until_or_explain(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    let give_up = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= give_up {
            panic!(
                "timed out after {limit:?} waiting for {what}\n{}",
                explain()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fast pseudo-random payloads for high-rate appenders (filling every
/// payload from the RNG is slow in debug builds): random slices of a few
/// random blocks, each stamped with its entry id so no two are equal.
pub struct PayloadSource {
    blocks: Vec<Vec<u8>>,
}

impl PayloadSource {
    /// Blocks for payloads of 8..=`max_size` bytes.
    pub fn new(rng: &mut StdRng, max_size: usize) -> PayloadSource {
        let blocks = (0..4)
            .map(|_| {
                let mut b = vec![0u8; max_size.max(8) * 2];
                rng.fill(&mut b[..]);
                b
            })
            .collect();
        PayloadSource { blocks }
    }

    /// The payload for entry `id`.
    pub fn next(&mut self, rng: &mut StdRng, id: u64) -> Bytes {
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
pub struct Record {
    /// `sent[id]` is the payload enqueued as entry `id`.
    pub sent: Vec<Bytes>,
    /// Ids whose add was acknowledged.
    pub acked: BTreeSet<u64>,
    /// Ids whose add failed, with the error.
    pub failed: BTreeMap<u64, LedgerError>,
}

/// Appends random payloads to a ledger, pipelined (bounded by the client's
/// outstanding window), until stopped or until the writer fails.
pub struct Appender {
    record: Arc<std::sync::Mutex<Record>>,
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<Option<LedgerError>>>,
}

impl Appender {
    /// `already` are the entries appended before (ids `0..already.len()`,
    /// all acknowledged).
    pub fn spawn(
        writer: Arc<LedgerWriter>,
        rng: StdRng,
        max_size: usize,
        already: Vec<Bytes>,
    ) -> Appender {
        Self::spawn_limited(writer, rng, max_size, already, None)
    }

    /// Like [`Appender::spawn`], enqueueing at most `bytes_per_sec` payload
    /// bytes per second if given.
    pub fn spawn_limited(
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

    /// How many entries were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.record.lock().unwrap().acked.len()
    }

    /// Waits until at least `n` entries were acknowledged.
    pub async fn wait_acked(&self, n: usize, limit: Duration) {
        wait_until(&format!("{n} acknowledged entries"), limit, || {
            self.acked() >= n
        })
        .await;
    }

    /// Waits until the appender stops by itself (its writer failed).
    pub async fn wait_stopped(&self, what: &str, limit: Duration) {
        let task = self.task.as_ref().expect("appender finished");
        wait_until(what, limit, || task.is_finished()).await;
    }

    /// Stops enqueueing and waits for every outstanding entry's outcome.
    /// Returns the record and the error that stopped enqueueing, if any.
    pub async fn finish(mut self, limit: Duration) -> (Record, Option<LedgerError>) {
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
pub fn check_entries(
    what: &str,
    entries: &[strata_ledger::LedgerEntry],
    sent: &[Bytes],
    last: i64,
) {
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
pub async fn read_all(
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

/// A raw gRPC client of the bookie at `address` (retried for up to 10 s),
/// for requests the ledger client would never send.
pub async fn raw_client(address: &str) -> BookieClient<Channel> {
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

/// An entry with a correct checksum.
pub fn entry(ledger_id: u64, entry_id: u64, cumulative_length: u64, payload: Bytes) -> Entry {
    Entry {
        ledger_id,
        entry_id,
        cumulative_length,
        crc32c: strata_proto::entry_crc32c(ledger_id, entry_id, cumulative_length, &payload),
        payload,
    }
}

/// Sends one batch of adds on a fresh add stream; returns every result.
pub async fn raw_add(rpc: &mut BookieClient<Channel>, adds: Vec<AddEntry>) -> Vec<AddResult> {
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

/// An add result's status; panics on an unknown value.
pub fn status_of(r: &AddResult) -> AddStatus {
    AddStatus::try_from(r.status).unwrap_or_else(|_| panic!("unknown add status {}", r.status))
}

/// Reads `first..=last` of a ledger straight from a bookie.
pub async fn raw_read(
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
pub async fn check_on_bookie(address: &str, ledger_id: u64, ids: &BTreeSet<u64>, sent: &[Bytes]) {
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

/// A small filesystem mounted for one test; unmounted on drop.
pub struct SmallDisk {
    /// Where the filesystem is mounted.
    pub mountpoint: PathBuf,
    image: Option<PathBuf>,
}

impl SmallDisk {
    /// A 64 MiB tmpfs at `mountpoint`, or failing that a loop-mounted ext4
    /// image. Panics with what failed if neither works.
    pub fn mount(mountpoint: &Path, image: &Path) -> SmallDisk {
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

/// The `state` in a bookie's registration (`writable`, `read_only`), or
/// `None` if it is not registered.
pub async fn registration_state(store: &dyn MetadataStore, address: &str) -> Option<String> {
    let v = store
        .get(&strata_common::paths::bookie(address))
        .await
        .expect("read registration")?;
    let json: serde_json::Value = serde_json::from_slice(&v.value).expect("registration is JSON");
    json.get("state")
        .and_then(|s| s.as_str())
        .map(str::to_string)
}

/// Waits up to 30 s for `bookie`'s registration state to be `want`.
pub async fn wait_registration_state(
    store: &dyn MetadataStore,
    bookie: &BookieProcess,
    want: &str,
) {
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

/// `df -k` of the filesystem holding `path`, for log lines.
pub fn disk_usage(path: &Path) -> String {
    let out = Command::new("df").arg("-k").arg(path).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
