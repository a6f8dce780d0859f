//! The tiered reader against real object_store backends with faults
//! injected through FaultyStore.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use object_store::ObjectStore;
use rand::{Rng, SeedableRng};
use strata_offloader::faulty::{Fault, FaultKind, FaultyStore, Op};
use strata_offloader::{
    ColdLedger, IoSink, OffloadError, OffloadedObjects, ReaderConfig, TieredReader, UploadOptions,
};

fn config() -> ReaderConfig {
    ReaderConfig {
        memory_cache_bytes: 64 << 20,
        disk_cache_dir: None,
        disk_cache_bytes: 0,
        max_concurrent_requests: 8,
        range_bytes: 64 << 10,
        read_ahead_bytes: 0,
        read_ahead_budget_bytes: 64 << 20,
        read_ahead_idle: Duration::from_secs(10),
        first_range_bytes: 0,
        request_timeout: Duration::from_millis(500),
        max_retries: 4,
    }
}

struct Setup {
    faulty: Arc<FaultyStore>,
    store: Arc<dyn ObjectStore>,
    sent: Vec<(u64, Bytes)>,
    objects: OffloadedObjects,
}

/// A ledger of `sizes` entries in blocks of about `block` bytes, with no
/// copy of its first block in the index, so every block a read needs comes
/// from a GET of the data object (`setup_with_head` for the default).
async fn setup(seed: u64, sizes: &[usize], block: usize) -> Setup {
    let o = UploadOptions {
        head_max: 0,
        ..opts(block)
    };
    setup_with(seed, sizes, &o).await
}

async fn setup_with(seed: u64, sizes: &[usize], o: &UploadOptions) -> Setup {
    let faulty = FaultyStore::new(memory());
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let sent = entries(sizes);
    let (_, objects) = upload(&store, seed, &sent, o).await;
    faulty.reset_counters();
    Setup {
        faulty,
        store,
        sent,
        objects,
    }
}

async fn reader_with(config: ReaderConfig) -> Arc<TieredReader> {
    TieredReader::new(config).await.expect("reader")
}

async fn open(
    reader: &Arc<TieredReader>,
    s: &Setup,
) -> (Arc<ColdLedger>, IoSink, Arc<strata_offloader::IoStats>) {
    let (io, stats) = sink();
    let ledger = reader
        .open(s.store.clone(), &s.objects, io.clone())
        .await
        .expect("open");
    (ledger, io, stats)
}

/// Waits (bounded) until the ledger's read-ahead finished.
async fn read_ahead_done(ledger: &ColdLedger) {
    for _ in 0..2000 {
        if !ledger.read_ahead_running() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("read-ahead did not finish");
}

/// Reads the whole ledger in order, 50 entries a read, letting read-ahead
/// finish after each read (then `after_each`); returns how many GETs the
/// reads themselves waited for.
async fn scan(s: &Setup, ledger: &ColdLedger, after_each: impl Fn(&ColdLedger)) -> u64 {
    let mut next = 0u64;
    let mut fetched_by_reads = 0;
    while next < s.sent.len() as u64 {
        let before = s.faulty.requests(Op::Get);
        let got = ledger.read(next, next + 49, usize::MAX).await.unwrap();
        expect(&s.sent, next, &got);
        fetched_by_reads += s.faulty.requests(Op::Get) - before;
        next = got.last().unwrap().0 + 1;
        read_ahead_done(ledger).await;
        after_each(ledger);
    }
    fetched_by_reads
}

fn expect(sent: &[(u64, Bytes)], first: u64, got: &[(u64, Bytes)]) {
    assert!(!got.is_empty());
    for (i, (id, payload)) in got.iter().enumerate() {
        assert_eq!(*id, first + i as u64);
        assert!(payload == &sent[*id as usize].1, "entry {id} differs");
    }
}

/// Reads `first..=last`, reading on after short reads.
async fn read_on(ledger: &ColdLedger, first: u64, last: u64) -> Vec<(u64, Bytes)> {
    let mut got = ledger.read(first, last, usize::MAX).await.unwrap();
    while got.last().unwrap().0 < last {
        let from = got.last().unwrap().0 + 1;
        got.extend(ledger.read(from, last, usize::MAX).await.unwrap());
    }
    got
}

#[tokio::test]
async fn arbitrary_ranges_return_exact_bytes_within_max_bytes() {
    let sizes = random_sizes(21, 2000, 3000);
    let s = setup(21, &sizes, 8192).await;
    let reader = reader_with(config()).await;
    let (ledger, _, _) = open(&reader, &s).await;
    assert_eq!(ledger.header().entries, 2000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    for _ in 0..300 {
        let first = rng.random_range(0..2000u64);
        let last = first + rng.random_range(0..200u64);
        let max = rng.random_range(0..40_000usize);
        // A read returns a prefix (what was ready); reading on from where
        // it ended gives the rest, until the range or the budget is used.
        let mut got = ledger.read(first, last, max).await.unwrap();
        let mut bytes: usize = got.iter().map(|(_, p)| p.len()).sum();
        loop {
            let end = got.last().unwrap().0;
            if end >= last.min(1999) {
                break;
            }
            let next = s.sent[end as usize + 1].1.len();
            if bytes + next > max {
                break;
            }
            let more = ledger.read(end + 1, last, max - bytes).await.unwrap();
            bytes += more.iter().map(|(_, p)| p.len()).sum::<usize>();
            got.extend(more);
        }
        expect(&s.sent, first, &got);
        assert!(got.last().unwrap().0 <= last.min(1999));
        if got.len() > 1 {
            assert!(bytes <= max, "{bytes} > max {max}");
        }
    }
    // The whole ledger, read on until the end (clamped).
    let mut all = ledger.read(0, u64::MAX, usize::MAX).await.unwrap();
    while all.last().unwrap().0 < 1999 {
        let from = all.last().unwrap().0 + 1;
        all.extend(ledger.read(from, u64::MAX, usize::MAX).await.unwrap());
    }
    expect(&s.sent, 0, &all);
    assert_eq!(all.len(), 2000);
    // Past the end.
    for (f, l) in [(2000, 2000), (5000, 6000), (10, 9)] {
        let r = ledger.read(f, l, 1000).await;
        assert!(
            matches!(r, Err(OffloadError::NoSuchEntries { .. })),
            "{f}..={l}: {r:?}"
        );
    }
}

#[tokio::test]
async fn a_second_read_is_served_from_memory_without_gets() {
    let s = setup(22, &random_sizes(22, 500, 2000), 4096).await;
    let reader = reader_with(config()).await;
    let (ledger, _, io) = open(&reader, &s).await;
    let first = ledger.read(100, 300, usize::MAX).await.unwrap();
    let gets = s.faulty.requests(Op::Get);
    assert!(gets >= 2, "index and data were fetched");
    let before = reader.stats();
    let again = ledger.read(100, 300, usize::MAX).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(
        s.faulty.requests(Op::Get),
        gets,
        "second read went to the store"
    );
    let after = reader.stats();
    assert!(after.memory_hits > before.memory_hits);
    assert_eq!(after.misses, before.misses);
    assert_eq!(io.snapshot().get_requests, gets);

    // A second open of the same ledger finds the index in the cache.
    let (ledger2, _, _) = open(&reader, &s).await;
    assert_eq!(reader.stats().index_hits, 1);
    assert_eq!(ledger2.read(100, 300, usize::MAX).await.unwrap(), first);
    assert_eq!(s.faulty.requests(Op::Get), gets);
}

#[tokio::test]
async fn one_read_of_a_block_costs_one_small_get() {
    // 4 MiB ledger in 64 KiB blocks.
    let s = setup(23, &vec![1000; 4000], 64 << 10).await;
    let reader = reader_with(config()).await;
    let (ledger, _, io) = open(&reader, &s).await;
    let index_bytes = io.snapshot().get_bytes;
    ledger.read(2500, 2500, 1).await.unwrap();
    let c = io.snapshot();
    assert_eq!(c.get_requests, 2);
    assert!(
        c.get_bytes - index_bytes <= 64 << 10,
        "{} bytes for one entry",
        c.get_bytes - index_bytes
    );
}

/// What a read hands out keeps at most its own block in memory, never the
/// whole GET it came in: one entry kept from a 1 MiB range read, with
/// everything else dropped, holds a buffer of one 8 KiB block (the memory
/// cache counts blocks; a slice of the GET's body would hold all of it).
/// The same for blocks from the first range fetched with the index, and for
/// runs read back from the disk cache.
#[tokio::test]
async fn an_entry_keeps_only_its_block_in_memory() {
    let s = setup(25, &vec![1000; 1000], 8192).await;
    let dir = tempfile::tempdir().unwrap();
    for (case, first_range_bytes, disk) in [
        ("one GET", 0, false),
        ("first range", 1 << 20, false),
        ("disk run", 0, true),
    ] {
        let mut cfg = ReaderConfig {
            range_bytes: 1 << 20,
            first_range_bytes,
            ..config()
        };
        if disk {
            cfg.disk_cache_dir = Some(dir.path().to_path_buf());
            cfg.disk_cache_bytes = 32 << 20;
            // Fill the disk cache with runs, then read them with a new reader.
            let reader = read_all_with_a_new_reader(&s, cfg.clone()).await;
            reader.close().await.unwrap();
        }
        let reader = reader_with(cfg).await;
        let (ledger, _, _) = open(&reader, &s).await;
        let got = read_on(&ledger, 0, 999).await;
        expect(&s.sent, 0, &got);
        if disk {
            assert!(reader.stats().disk_hits > 0, "{:?}", reader.stats());
        }
        let kept = got[500].1.clone();
        drop(got);
        reader.close().await.unwrap();
        drop((ledger, reader));
        assert!(
            kept.is_unique(),
            "{case}: something else still holds the entry"
        );
        let buffer = Vec::from(kept).capacity();
        assert!(
            buffer <= 3 * 8192,
            "{case}: one entry holds a buffer of {buffer} bytes"
        );
    }
}

/// Opens `s`'s ledger with a reader that fetches 32 KiB of the data's start
/// next to an index without the first block, on a store that answers every
/// request after 100 ms (so concurrent GETs show).
async fn open_slowly_with_a_first_range(s: &Setup) -> (Arc<TieredReader>, Arc<ColdLedger>) {
    let reader = reader_with(ReaderConfig {
        first_range_bytes: 32 << 10,
        ..config()
    })
    .await;
    s.faulty.set_latency(Duration::from_millis(100));
    let (ledger, _, _) = open(&reader, s).await;
    (reader, ledger)
}

/// An index without a copy of the first block (version 1, or a first block
/// over the uploader's limit): the data's start is fetched next to it.
#[tokio::test]
async fn open_fetches_the_first_range_with_the_index() {
    let s = setup(24, &random_sizes(24, 400, 1000), 4096).await;
    let (reader, ledger) = open_slowly_with_a_first_range(&s).await;
    assert_eq!(s.faulty.requests(Op::Get), 2, "index + first range");
    assert_eq!(
        s.faulty.max_concurrent_gets(),
        2,
        "the two GETs ran together"
    );
    let st = reader.stats();
    assert!(st.speculative_blocks >= 4, "{st:?}");
    let got = ledger.read(0, 20, usize::MAX).await.unwrap();
    expect(&s.sent, 0, &got);
    assert_eq!(
        s.faulty.requests(Op::Get),
        2,
        "the first read needed no GET"
    );
}

/// An index with a copy of the first block opens a ledger with one GET
/// (no speculative GET of the data next to it) and serves the first block
/// from it; the rest comes from the data object as usual.
#[tokio::test]
async fn the_first_block_comes_with_the_index() {
    let s = setup_with(26, &random_sizes(26, 400, 1000), &opts(4096)).await;
    assert!(s.objects.head_bytes > 0);
    let (reader, ledger) = open_slowly_with_a_first_range(&s).await;
    assert_eq!(s.faulty.requests(Op::Get), 1, "the index only");
    let st = reader.stats();
    assert_eq!(
        (st.index_head_blocks, st.speculative_blocks),
        (1, 0),
        "{st:?}"
    );
    let first = ledger.index().rows[0];
    let got = ledger
        .read(0, first.last_entry(), usize::MAX)
        .await
        .unwrap();
    expect(&s.sent, 0, &got);
    assert_eq!(got.len(), first.entries as usize);
    assert_eq!(
        s.faulty.requests(Op::Get),
        1,
        "the first block needed no GET"
    );
    let rest = read_on(&ledger, first.last_entry() + 1, 399).await;
    expect(&s.sent, first.last_entry() + 1, &rest);
    assert!(s.faulty.requests(Op::Get) > 1);
    // A second reader of the process finds the index and the block cached.
    let (again, _, _) = open(&reader, &s).await;
    let gets = s.faulty.requests(Op::Get);
    expect(&s.sent, 0, &again.read(0, 0, usize::MAX).await.unwrap());
    assert_eq!(s.faulty.requests(Op::Get), gets);
    assert_eq!(reader.stats().index_head_blocks, 1);
}

#[tokio::test]
async fn sequential_reads_fetch_ahead() {
    let s = setup(25, &vec![500; 4000], 4096).await;
    let reader = reader_with(ReaderConfig {
        read_ahead_bytes: 256 << 10,
        range_bytes: 64 << 10,
        ..config()
    })
    .await;
    let (ledger, _, _) = open(&reader, &s).await;
    let fetched_by_reads = scan(&s, &ledger, |_| {}).await;
    let st = reader.stats();
    assert!(st.read_ahead_blocks > 0, "{st:?}");
    // Only the first read waited for the store; read-ahead stayed in front.
    assert_eq!(fetched_by_reads, 1, "{st:?}");
    assert!(st.misses <= 8, "only the first read missed: {st:?}");

    // A random read elsewhere does not start read-ahead.
    let other = reader_with(ReaderConfig {
        read_ahead_bytes: 256 << 10,
        ..config()
    })
    .await;
    let (l2, _, _) = open(&other, &s).await;
    l2.read(2000, 2000, 1).await.unwrap();
    read_ahead_done(&l2).await;
    assert_eq!(other.stats().read_ahead_blocks, 0);
}

/// Blocks fetched ahead are held for the reader, not just cached: with a
/// memory cache far smaller than the window, nothing is fetched twice.
#[tokio::test]
async fn read_ahead_outlives_a_small_block_cache() {
    let s = setup(27, &vec![500; 4000], 4096).await;
    let reader = reader_with(ReaderConfig {
        memory_cache_bytes: 16 << 10,
        read_ahead_bytes: 256 << 10,
        range_bytes: 64 << 10,
        ..config()
    })
    .await;
    let (ledger, _, _) = open(&reader, &s).await;
    // Two passes: a second reader from the start (a new subscription)
    // gets read-ahead again, though the first left the ledger's end.
    for pass in 1..=2u64 {
        let fetched_by_reads = scan(&s, &ledger, |ledger| {
            // The window, half a range over it at most, and the block the
            // last read ended in.
            let (_, held) = ledger.read_ahead_held();
            assert!(
                held <= (256 << 10) + (32 << 10) + 8192,
                "held {held} bytes ahead"
            );
        })
        .await;
        let st = reader.stats();
        assert_eq!(fetched_by_reads, 1, "pass {pass}: {st:?}");
        assert!(st.read_ahead_hits > 400 * pass, "pass {pass}: {st:?}");
        // Every byte of the ledger was fetched once a pass (plus the index).
        let data = s.objects.data_size;
        assert!(
            st.bytes_fetched < pass * (data + data / 10),
            "pass {pass}: {st:?}"
        );
    }
}

/// The process-wide budget bounds what read-ahead holds, whatever the
/// window; reads still get everything.
#[tokio::test]
async fn read_ahead_stays_within_the_budget() {
    let s = setup(28, &vec![500; 4000], 4096).await;
    let reader = reader_with(ReaderConfig {
        read_ahead_bytes: 1 << 20,
        read_ahead_budget_bytes: 32 << 10,
        range_bytes: 16 << 10,
        ..config()
    })
    .await;
    let (a, _, _) = open(&reader, &s).await;
    let max_held = std::cell::Cell::new(0);
    scan(&s, &a, |a| {
        max_held.set(max_held.get().max(a.read_ahead_held().1))
    })
    .await;
    let max_held = max_held.get();
    assert!(max_held > 0, "read-ahead ran");
    assert!(max_held <= 32 << 10, "held {max_held} bytes ahead");
    assert!(reader.stats().read_ahead_blocks > 0);
}

/// Read-ahead opens at two ranges and doubles with every read up to its
/// window, so a reader's next read does not wait behind a whole window of
/// GETs.
#[tokio::test]
async fn read_ahead_opens_small_and_doubles_up_to_its_window() {
    let s = setup(30, &vec![500; 4000], 4096).await;
    let reader = reader_with(ReaderConfig {
        read_ahead_bytes: 256 << 10,
        read_ahead_budget_bytes: 64 << 20,
        range_bytes: 16 << 10,
        ..config()
    })
    .await;
    let (a, _, _) = open(&reader, &s).await;
    let mut held = Vec::new();
    let mut next = 0;
    for _ in 0..6 {
        let got = a.read(next, next + 9, usize::MAX).await.unwrap();
        expect(&s.sent, next, &got);
        next = got.last().unwrap().0 + 1;
        read_ahead_done(&a).await;
        held.push(a.read_ahead_held().1);
    }
    // Each step may also keep the block the read ended in (4 KiB), and
    // run over its window by up to half a range (steps are whole ranges).
    let over = (4 << 10) + (8 << 10);
    assert!(held[0] <= (32 << 10) + over, "{held:?}");
    assert!(
        held[1] > held[0] && held[1] <= (64 << 10) + over,
        "{held:?}"
    );
    assert!(
        held[2] > held[1] && held[2] <= (128 << 10) + over,
        "{held:?}"
    );
    assert!(
        held[5] > 192 << 10 && held[5] <= (256 << 10) + over,
        "{held:?}"
    );
}

/// Read-ahead asks for whole ranges, one GET each: topping the window up
/// by what the reader just passed would add a GET of a block or two after
/// each full one, and a store that reads its objects in chunks (Garage,
/// MinIO) reads a whole chunk, or two, for it.
#[tokio::test]
async fn read_ahead_gets_are_whole_ranges() {
    let s = setup(31, &vec![500; 4000], 4096).await;
    let range = 16u64 << 10;
    let reader = reader_with(ReaderConfig {
        read_ahead_bytes: 128 << 10,
        range_bytes: range,
        ..config()
    })
    .await;
    let (a, _, _) = open(&reader, &s).await;
    let mut next = 0;
    while next < 4000 {
        let got = a.read(next, next + 12, usize::MAX).await.unwrap();
        expect(&s.sent, next, &got);
        next = got.last().unwrap().0 + 1;
        read_ahead_done(&a).await;
    }
    let data = &s.objects.data_key;
    let gets: Vec<_> = s
        .faulty
        .get_ranges_seen()
        .into_iter()
        .filter(|(path, _)| path == data)
        .map(|(_, r)| r)
        .collect();
    let block = 4096 + 1024;
    let short: Vec<_> = gets
        .iter()
        .filter(|r| r.end - r.start + block <= range && r.end < s.objects.data_size)
        .collect();
    // The first read's own GET is the only short one (the ledger's last
    // may be short too, and is not counted).
    assert!(short.len() <= 1, "short GETs {short:?} of {}", gets.len());
    assert!(gets.iter().all(|r| r.end - r.start <= range), "{gets:?}");
    assert!(
        gets.len() as u64 >= s.objects.data_size / range,
        "{}",
        gets.len()
    );
}

/// A reader that stopped does not keep the budget for ever: once it was
/// idle for `read_ahead_idle`, another reader out of budget takes it back.
#[tokio::test]
async fn idle_readers_give_their_read_ahead_back() {
    let s = setup(29, &vec![500; 4000], 4096).await;
    let reader = reader_with(ReaderConfig {
        read_ahead_bytes: 1 << 20,
        read_ahead_budget_bytes: 64 << 10,
        read_ahead_idle: Duration::from_millis(200),
        range_bytes: 16 << 10,
        ..config()
    })
    .await;
    let (a, _, _) = open(&reader, &s).await;
    let (b, _, _) = open(&reader, &s).await;
    // Two reads: read-ahead opens at two ranges and doubles with each.
    expect(&s.sent, 0, &a.read(0, 29, usize::MAX).await.unwrap());
    read_ahead_done(&a).await;
    expect(&s.sent, 30, &a.read(30, 59, usize::MAX).await.unwrap());
    read_ahead_done(&a).await;
    let held_by_a = a.read_ahead_held().1;
    assert!(held_by_a > 32 << 10, "a holds {held_by_a}");
    // A is not idle yet: B finds no budget and reads without read-ahead.
    expect(&s.sent, 0, &b.read(0, 29, usize::MAX).await.unwrap());
    assert_eq!(a.read_ahead_held().1, held_by_a);
    assert!(
        b.read_ahead_held().1 <= 8 << 10,
        "{:?}",
        b.read_ahead_held()
    );
    // A stays away: B's next read takes the budget back from it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = b.read(30, 59, usize::MAX).await.unwrap();
    expect(&s.sent, 30, &got);
    read_ahead_done(&b).await;
    assert_eq!(a.read_ahead_held(), (0, 0));
    assert!(
        b.read_ahead_held().1 > 32 << 10,
        "{:?}",
        b.read_ahead_held()
    );
    // A can go on reading where it stopped.
    let got = a.read(60, 89, usize::MAX).await.unwrap();
    expect(&s.sent, 60, &got);
}

#[tokio::test]
async fn concurrent_gets_never_exceed_the_limit() {
    let s = setup(26, &vec![2000; 3000], 4096).await;
    let reader = reader_with(ReaderConfig {
        max_concurrent_requests: 3,
        range_bytes: 4096,
        ..config()
    })
    .await;
    let (ledger, _, _) = open(&reader, &s).await;
    s.faulty.reset_counters();
    s.faulty.set_latency(Duration::from_millis(10));
    let reads = (0..60u64).map(|i| {
        let ledger = ledger.clone();
        async move { ledger.read(i * 50, i * 50 + 3, usize::MAX).await }
    });
    for r in futures::future::join_all(reads).await {
        r.unwrap();
    }
    let max = s.faulty.max_concurrent_gets();
    assert!(max <= 3, "{max} GETs at once");
    assert!(max >= 2, "reads did not run in parallel at all");
}

#[tokio::test]
async fn concurrent_reads_of_one_block_share_one_get() {
    let s = setup(27, &vec![100; 1000], 4096).await;
    let reader = reader_with(config()).await;
    let (ledger, _, _) = open(&reader, &s).await;
    s.faulty.reset_counters();
    s.faulty.set_latency(Duration::from_millis(50));
    let reads = (0..10).map(|_| ledger.read(500, 500, 1));
    for r in futures::future::join_all(reads).await {
        expect(&s.sent, 500, &r.unwrap());
    }
    assert_eq!(s.faulty.requests(Op::Get), 1);
}

#[tokio::test]
async fn transient_failures_and_hangs_are_retried() {
    let s = setup(28, &random_sizes(28, 300, 1000), 4096).await;
    let reader = reader_with(ReaderConfig {
        request_timeout: Duration::from_millis(200),
        ..config()
    })
    .await;
    s.faulty.fail_next(Op::Get, 2);
    s.faulty.inject(Fault::new(
        Op::Get,
        FaultKind::Hang(Duration::from_secs(3600)),
    ));
    let (ledger, _, io) = open(&reader, &s).await;
    assert_eq!(io.snapshot().retries, 3);
    s.faulty.fail_next(Op::Get, 1);
    s.faulty.inject(Fault::new(
        Op::Get,
        FaultKind::Hang(Duration::from_secs(3600)),
    ));
    // Read to the end: a first read returns with the blocks that came
    // first, maybe before the GET that hung was sent again.
    let got = read_on(&ledger, 0, 299).await;
    expect(&s.sent, 0, &got);
    assert_eq!(io.snapshot().retries, 5);

    // Failures beyond the retries are errors, and the reader recovers.
    s.faulty
        .inject(Fault::new(Op::Get, FaultKind::Fail).always());
    let fresh = reader_with(config()).await;
    let r = fresh
        .open(s.store.clone(), &s.objects, IoSink::default())
        .await;
    assert!(
        matches!(r, Err(OffloadError::Store { .. })),
        "{:?}",
        r.err()
    );
    s.faulty.clear_faults();
    let (l2, _, _) = open(&fresh, &s).await;
    expect(&s.sent, 7, &l2.read(7, 7, 1).await.unwrap());
}

#[tokio::test]
async fn a_damaged_response_is_fetched_again_and_succeeds() {
    for kind in [FaultKind::FlipByte, FaultKind::Truncate(7)] {
        let s = setup(29, &random_sizes(29, 300, 1000), 4096).await;
        let reader = reader_with(config()).await;
        let (ledger, _, io) = open(&reader, &s).await;
        s.faulty
            .inject(Fault::new(Op::Get, kind.clone()).on_path("data"));
        let got = ledger.read(0, 299, usize::MAX).await.unwrap();
        expect(&s.sent, 0, &got);
        assert_eq!(io.snapshot().corrupt_blocks, 0, "{kind:?}");
        assert_eq!(reader.stats().corrupt_blocks, 0, "{kind:?}");
    }
}

#[tokio::test]
async fn a_persistently_corrupt_block_is_an_error_never_data() {
    let s = setup(30, &vec![300; 200], 4096).await;
    let reader = reader_with(config()).await;
    let (ledger, _, io) = open(&reader, &s).await;
    s.faulty.inject(
        Fault::new(Op::Get, FaultKind::FlipByte)
            .always()
            .on_path("data"),
    );
    for _ in 0..2 {
        let r = ledger.read(20, 20, 1).await;
        assert!(matches!(r, Err(OffloadError::Corrupt { .. })), "{r:?}");
    }
    assert_eq!(io.snapshot().corrupt_blocks, 2);
    assert_eq!(reader.stats().corrupt_blocks, 2);
    // Nothing damaged was cached: once the store is healthy the read works.
    s.faulty.clear_faults();
    expect(&s.sent, 20, &ledger.read(20, 20, 1).await.unwrap());

    // A damaged index fails the open the same way.
    s.faulty.inject(
        Fault::new(Op::Get, FaultKind::FlipByte)
            .always()
            .on_path("index"),
    );
    let fresh = reader_with(config()).await;
    let r = fresh
        .open(s.store.clone(), &s.objects, IoSink::default())
        .await;
    assert!(
        matches!(r, Err(OffloadError::Corrupt { .. })),
        "{:?}",
        r.err()
    );
}

/// A ledger of 1,000 entries and a reader config with a small memory and a
/// disk cache in `dir`; one reader has read the whole ledger through it and
/// closed, so the disk cache holds the ledger.
async fn read_once_through_a_disk_cache(
    seed: u64,
    dir: &tempfile::TempDir,
) -> (Setup, ReaderConfig) {
    let s = setup(seed, &random_sizes(seed, 1000, 2000), 8192).await;
    let cfg = ReaderConfig {
        memory_cache_bytes: 1 << 20,
        disk_cache_dir: Some(dir.path().to_path_buf()),
        disk_cache_bytes: 32 << 20,
        ..config()
    };
    let reader = reader_with(cfg.clone()).await;
    let (ledger, _, _) = open(&reader, &s).await;
    expect(&s.sent, 0, &read_on(&ledger, 0, 999).await);
    reader.close().await.unwrap();
    (s, cfg)
}

/// A new reader (the store's counters reset first) reads the whole ledger
/// and gets exactly the entries sent.
async fn read_all_with_a_new_reader(s: &Setup, cfg: ReaderConfig) -> Arc<TieredReader> {
    s.faulty.reset_counters();
    let reader = reader_with(cfg).await;
    let (ledger, _, _) = open(&reader, s).await;
    let got = read_on(&ledger, 0, 999).await;
    expect(&s.sent, 0, &got);
    assert_eq!(got.len(), 1000);
    reader
}

#[tokio::test]
async fn the_disk_cache_survives_a_new_reader() {
    let dir = tempfile::tempdir().unwrap();
    let (s, cfg) = read_once_through_a_disk_cache(31, &dir).await;
    let reader = read_all_with_a_new_reader(&s, cfg).await;
    let st = reader.stats();
    assert_eq!(
        s.faulty.requests(Op::Get),
        1,
        "only the index was fetched: {st:?}"
    );
    assert_eq!(st.misses, 0, "{st:?}");
    assert!(st.disk_hits > 0, "{st:?}");
}

/// A scan that fits in memory writes nothing to the disk cache while it
/// runs (the copy would not be read while memory holds the blocks); closing
/// the reader writes it, as whole runs, and a new reader reads it back.
#[tokio::test]
async fn a_scan_that_fits_in_memory_reaches_the_disk_cache_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(37, &random_sizes(37, 1000, 2000), 8192).await;
    let cfg = ReaderConfig {
        memory_cache_bytes: 32 << 20,
        disk_cache_dir: Some(dir.path().to_path_buf()),
        disk_cache_bytes: 32 << 20,
        ..config()
    };
    let reader = read_all_with_a_new_reader(&s, cfg.clone()).await;
    let st = reader.stats();
    assert_eq!((st.disk_cache_writes, st.disk_cache_write_bytes), (0, 0));
    reader.close().await.unwrap();
    let st = reader.stats();
    // ~1 MB in 8 KiB blocks, 64 to a run: two runs, and the short last
    // one's blocks alone.
    let payload: usize = s.sent.iter().map(|(_, b)| b.len()).sum();
    assert!(st.disk_cache_write_bytes >= payload as u64, "{st:?}");
    assert!(st.disk_cache_writes <= 2 + 64, "{st:?}");
    drop(reader);
    let reader = read_all_with_a_new_reader(&s, cfg).await;
    assert_eq!(s.faulty.requests(Op::Get), 1, "{:?}", reader.stats());
}

/// A scan of more than memory holds writes the disk cache as memory
/// evicts, in whole runs (not block by block), before anyone closes it.
#[tokio::test]
async fn a_scan_bigger_than_memory_writes_whole_runs_as_memory_evicts() {
    let dir = tempfile::tempdir().unwrap();
    // ~12 MB in 8 KiB blocks (64 to a run), through 4 MiB of memory.
    let s = setup(38, &random_sizes(38, 6000, 4000), 8192).await;
    let reader = reader_with(ReaderConfig {
        memory_cache_bytes: 4 << 20,
        disk_cache_dir: Some(dir.path().to_path_buf()),
        disk_cache_bytes: 32 << 20,
        ..config()
    })
    .await;
    let (ledger, _, _) = open(&reader, &s).await;
    // As a consumer reads: a bounded batch at a time.
    let mut next = 0;
    while next < 6000 {
        let got = ledger.read(next, 5999, 256 << 10).await.unwrap();
        expect(&s.sent, next, &got);
        next = got.last().unwrap().0 + 1;
    }
    let st = reader.stats();
    assert!(st.disk_cache_write_bytes >= 6 << 20, "{st:?}");
    assert!(
        st.disk_cache_write_bytes / st.disk_cache_writes >= 256 << 10,
        "written block by block: {st:?}"
    );
    assert_eq!(
        st.disk_hits, 0,
        "blocks left memory before they were read: {st:?}"
    );
}

/// A disk cache reopened smaller leaves no file of its bigger past behind,
/// and one reopened at the same size keeps what it holds.
#[tokio::test]
async fn a_disk_cache_reopened_smaller_frees_the_rest_of_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = || {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("foyer-storage-direct-fs-"))
            .collect();
        names.sort();
        names
    };
    let open = |mb: u64| {
        reader_with(ReaderConfig {
            disk_cache_dir: Some(dir.path().to_path_buf()),
            disk_cache_bytes: mb << 20,
            ..config()
        })
    };
    // 16 MiB foyer blocks: 64 files for 1 GiB, 32 for 512 MiB.
    open(1024).await.close().await.unwrap();
    let big = files();
    assert!(big.len() >= 64, "{big:?}");
    open(512).await.close().await.unwrap();
    let small = files();
    assert!(
        small.len() < big.len(),
        "{} files left of {}",
        small.len(),
        big.len()
    );
    assert_eq!(small[..], big[..small.len()], "the first files are kept");
    // The disk cache still works, and the same size keeps every file.
    let (s, cfg) = read_once_through_a_disk_cache(35, &dir).await;
    let kept = files();
    let reader = read_all_with_a_new_reader(&s, cfg).await;
    assert!(reader.stats().disk_hits > 0, "{:?}", reader.stats());
    assert_eq!(files(), kept);
}

/// Bytes flipped all over the disk cache's files between two readers: the
/// second still returns exactly the entries sent (damaged runs are fetched
/// again from the store), never the damaged bytes.
#[tokio::test]
async fn a_damaged_disk_cache_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let (s, cfg) = read_once_through_a_disk_cache(34, &dir).await;
    let mut damaged = 0;
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let path = f.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        // Past foyer's first page; every 3 KiB a byte, so every run is hit.
        for at in (4096..bytes.len()).step_by(3072) {
            bytes[at] ^= 0x5a;
            damaged += 1;
        }
        std::fs::write(&path, &bytes).unwrap();
    }
    assert!(damaged > 100, "the cache files were too small to damage");
    let reader = read_all_with_a_new_reader(&s, cfg).await;
    assert!(s.faulty.requests(Op::Get) > 1, "{:?}", reader.stats());
}

/// A random reader's blocks (whose runs never fill) reach the disk cache
/// one by one as memory evicts them: a new reader gets them back without
/// GETs.
#[tokio::test]
async fn a_random_readers_blocks_are_kept_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(35, &random_sizes(35, 1000, 2000), 8192).await;
    let cfg = ReaderConfig {
        memory_cache_bytes: 64 << 10,
        disk_cache_dir: Some(dir.path().to_path_buf()),
        disk_cache_bytes: 32 << 20,
        ..config()
    };
    // Every 20th entry, backwards: no read continues the one before.
    let picks: Vec<u64> = (0..50u64).rev().map(|i| i * 20).collect();
    let random_reads = |ledger: Arc<ColdLedger>, sent: Vec<(u64, Bytes)>, picks: Vec<u64>| async move {
        for e in picks {
            expect(&sent, e, &ledger.read(e, e, 1).await.unwrap());
        }
    };
    {
        let reader = reader_with(cfg.clone()).await;
        let (ledger, _, _) = open(&reader, &s).await;
        random_reads(ledger, s.sent.clone(), picks.clone()).await;
        // Another ledger read at random pushes every block of the first
        // out of memory (out of each of the memory cache's shards).
        let other = setup(36, &random_sizes(36, 1000, 2000), 8192).await;
        let (ledger, _, _) = open(&reader, &other).await;
        let flood = (0..200u64).rev().map(|i| i * 5).collect();
        random_reads(ledger, other.sent.clone(), flood).await;
        reader.close().await.unwrap();
    }
    s.faulty.reset_counters();
    let reader = reader_with(cfg).await;
    let (ledger, _, _) = open(&reader, &s).await;
    random_reads(ledger, s.sent.clone(), picks.clone()).await;
    let st = reader.stats();
    assert_eq!(s.faulty.requests(Op::Get), 1, "only the index: {st:?}");
    assert_eq!(st.disk_hits, picks.len() as u64, "{st:?}");
}

#[tokio::test]
async fn reads_work_on_a_local_directory_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let sent = entries(&random_sizes(32, 700, 5000));
    let (_, objects) = upload(&store, 32, &sent, &opts(16 << 10)).await;
    let reader = reader_with(ReaderConfig {
        read_ahead_bytes: 128 << 10,
        first_range_bytes: 64 << 10,
        ..config()
    })
    .await;
    let ledger = reader
        .open(store, &objects, IoSink::default())
        .await
        .unwrap();
    let mut next = 0;
    while next < 700 {
        let got = ledger.read(next, 699, 50_000).await.unwrap();
        expect(&sent, next, &got);
        next = got.last().unwrap().0 + 1;
    }
}

#[tokio::test]
async fn entries_larger_than_a_disk_cache_block_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    // 8 MiB of disk cache is cut into 1 MiB foyer blocks; these entries
    // (and so their blocks) are bigger and can only be cached in memory.
    let s = setup(33, &[3 << 20, 10, 2 << 20, 5], 64 << 10).await;
    let cfg = ReaderConfig {
        disk_cache_dir: Some(dir.path().to_path_buf()),
        disk_cache_bytes: 8 << 20,
        ..config()
    };
    let reader = reader_with(cfg.clone()).await;
    let (ledger, _, _) = open(&reader, &s).await;
    expect(&s.sent, 0, &ledger.read(0, 3, usize::MAX).await.unwrap());
    expect(&s.sent, 2, &ledger.read(2, 2, 1).await.unwrap());
    reader.close().await.unwrap();
    drop(reader);
    let reader = reader_with(cfg).await;
    let (ledger, _, _) = open(&reader, &s).await;
    expect(&s.sent, 0, &ledger.read(0, 3, usize::MAX).await.unwrap());

    let too_small = ReaderConfig {
        disk_cache_bytes: 1 << 20,
        ..reader.config().clone()
    };
    assert!(matches!(
        TieredReader::new(too_small).await,
        Err(OffloadError::Config(_))
    ));
}

/// Blocks reach their readers as they arrive, not when their GET ends: a
/// first read, which takes the blocks that are there once its first one is,
/// returns while the store holds back the rest of that GET's body.
#[tokio::test]
async fn blocks_reach_readers_before_their_get_ends() {
    let s = setup(41, &vec![1000; 400], 4096).await;
    let reader = reader_with(ReaderConfig {
        range_bytes: 1 << 20,
        request_timeout: Duration::from_secs(600),
        ..config()
    })
    .await;
    let (ledger, _, _) = open(&reader, &s).await;
    s.faulty.reset_counters();
    // The data GET sends 16 KiB of its ~400 KB, then nothing for an hour.
    s.faulty.inject(
        Fault::new(
            Op::Get,
            FaultKind::StallAfter(16 << 10, Duration::from_secs(3600)),
        )
        .on_path("data"),
    );
    let got = tokio::time::timeout(Duration::from_secs(30), ledger.read(0, 399, usize::MAX))
        .await
        .expect("the read waited for the whole GET")
        .unwrap();
    expect(&s.sent, 0, &got);
    assert!(got.len() < 400, "all {} entries came", got.len());
    assert_eq!(
        s.faulty.requests(Op::Get),
        1,
        "one GET for the whole ledger"
    );
}
