//! Adds, reads, rollover, the cache, and the factory, against real bookies.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use strata_managed_ledger::{Entry, InitialPosition, ManagedLedgerConfig, Position, keys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_keep_their_order_across_rollovers_and_read_back() {
    let c = Cluster::start(1).await;
    let f = c.factory(small_ledgers(10), 64 << 20);
    let ml = f.open("public/default/persistent/order").await.unwrap();
    let positions = add_n(&ml, 0, 35).await;
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let ledgers: std::collections::BTreeSet<u64> = positions.iter().map(|p| p.ledger_id).collect();
    assert_eq!(ledgers.len(), 4, "{positions:?}");
    for p in &positions {
        assert!(p.entry_id < 10);
    }
    let last = *positions.last().unwrap();
    wait_confirmed(&ml, last).await;
    assert_eq!(ml.last_confirmed(), Some(last));
    assert_eq!(ml.first_position(), Some(positions[0]));

    let all = ml
        .read_entries(Position::EARLIEST, 1000, usize::MAX)
        .await
        .unwrap();
    assert_eq!(all.len(), 35);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, positions[i]);
        assert_eq!(e.data, payload(i as u64));
    }
    // Limits: entries, bytes (at least one entry even if over).
    let some = ml.read_entries(positions[8], 5, usize::MAX).await.unwrap();
    assert_eq!(
        some.iter().map(|e| e.position).collect::<Vec<_>>(),
        positions[8..13].to_vec()
    );
    let one = ml.read_entries(positions[3], 100, 1).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(
        ml.read_entry(positions[20]).await.unwrap().data,
        payload(20)
    );
    assert!(
        ml.read_entries(ml.next_position(last), 10, usize::MAX)
            .await
            .unwrap()
            .is_empty()
    );

    // Position arithmetic across ledger boundaries.
    assert_eq!(ml.next_position(positions[9]), positions[10]);
    assert_eq!(ml.previous_position(positions[10]), positions[9]);
    assert_eq!(ml.entries_between(positions[5], positions[25]), 20);
    assert_eq!(ml.entries_between(Position::EARLIEST, last), 35);
    let stats = ml.stats();
    assert_eq!(stats.entries, 35);
    assert_eq!(stats.ledgers.len(), 4);
    let size: u64 = (0..35).map(|i| payload(i).len() as u64).sum();
    assert_eq!(stats.size_bytes, size);
    ml.close().await.unwrap();
    assert!(ml.add_entry(payload(0)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_bookies_without_a_cache_including_the_unsealed_tail() {
    let c = Cluster::start(2).await;
    let config = ManagedLedgerConfig {
        ensemble_size: 2,
        write_quorum: 2,
        ack_quorum: 2,
        ..small_ledgers(25)
    };
    // No cache at all: every read goes to bookies, except entries the
    // bookies cannot serve yet (past the LAC they know).
    let f = c.factory(config, 0);
    let ml = f.open("t/bookie-reads").await.unwrap();
    let positions = add_n(&ml, 0, 60).await;
    wait_confirmed(&ml, positions[59]).await;
    let all = ml
        .read_entries(Position::EARLIEST, 1000, usize::MAX)
        .await
        .unwrap();
    assert_eq!(all.len(), 60);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.data, payload(i as u64), "entry {i}");
    }
    assert!(ml.stats().cache_misses > 0);
    // The newest entry right after its add, when its ledger is still open.
    let p = ml.add_entry(payload(60)).await.unwrap().await.unwrap();
    assert_eq!(ml.read_entry(p).await.unwrap().data, payload(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailing_reads_are_served_from_the_cache() {
    let c = Cluster::start(1).await;
    let f = c.factory(small_ledgers(1000), 64 << 20);
    let ml = f.open("t/tail").await.unwrap();
    let sub = ml
        .open_cursor("sub", InitialPosition::Latest)
        .await
        .unwrap();
    let reader = {
        let sub = sub.clone();
        tokio::spawn(async move {
            let mut got: Vec<Entry> = Vec::new();
            while got.len() < 50 {
                tokio::time::timeout(Duration::from_secs(20), sub.wait_entries())
                    .await
                    .unwrap();
                got.extend(sub.read_entries(10, 1 << 20).await.unwrap());
            }
            got
        })
    };
    let positions = add_n(&ml, 0, 50).await;
    let got = reader.await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.position).collect::<Vec<_>>(),
        positions
    );
    let stats = ml.stats();
    assert_eq!(stats.cache_hits, 50);
    assert_eq!(stats.cache_misses, 0, "tailing reads touched bookies");
    assert!(f.cache_stats().bytes > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_newest_matching_binary_searches_across_ledgers() {
    let c = Cluster::start(1).await;
    let f = c.factory(small_ledgers(7), 64 << 20);
    let ml = f.open("t/find").await.unwrap();
    let mut positions = Vec::new();
    for i in 0..40u64 {
        positions.push(
            ml.add_entry(Bytes::copy_from_slice(&i.to_be_bytes()))
                .await
                .unwrap(),
        );
    }
    let mut pos = Vec::new();
    for p in positions {
        pos.push(p.await.unwrap());
    }
    wait_confirmed(&ml, pos[39]).await;
    let value = |e: &Entry| u64::from_be_bytes(e.data[..8].try_into().unwrap());
    for k in [1u64, 7, 8, 23, 39, 40] {
        let mut reads = 0;
        let found = ml
            .find_newest_matching(Position::EARLIEST, |e| {
                reads += 1;
                value(e) < k
            })
            .await
            .unwrap();
        assert_eq!(found, Some(pos[k as usize - 1]), "k={k}");
        assert!(reads <= 8, "k={k}: {reads} reads");
    }
    assert_eq!(
        ml.find_newest_matching(Position::EARLIEST, |e| value(e) < 1 && value(e) > 0)
            .await
            .unwrap(),
        None
    );
    // From a start position: only entries from there on are considered.
    assert_eq!(
        ml.find_newest_matching(pos[10], |e| value(e) < 5)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        ml.find_newest_matching(pos[10], |e| value(e) < 12)
            .await
            .unwrap(),
        Some(pos[11])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_after_close_keeps_entries() {
    let c = Cluster::start(1).await;
    let name = "public/default/persistent/reopen";
    let first = {
        let f = c.factory(small_ledgers(8), 1 << 20);
        let ml = f.open(name).await.unwrap();
        let p = add_n(&ml, 0, 20).await;
        f.close_all().await;
        assert!(ml.is_closed());
        p
    };
    let f = c.factory(small_ledgers(8), 1 << 20);
    let ml = f.open(name).await.unwrap();
    assert_eq!(ml.last_confirmed(), first.last().copied());
    let all = ml
        .read_entries(Position::EARLIEST, 100, usize::MAX)
        .await
        .unwrap();
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), first);
    // New adds go to a new ledger, after the old entries.
    let more = add_n(&ml, 20, 3).await;
    assert!(more[0] > *first.last().unwrap());
    assert!(more[0].ledger_id > first.last().unwrap().ledger_id);
    let all = ml
        .read_entries(Position::EARLIEST, 100, usize::MAX)
        .await
        .unwrap();
    assert_eq!(all.len(), 23);
    assert_eq!(all[22].data, payload(22));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_without_close_recovers_and_fences_the_old_owner() {
    let c = Cluster::start(1).await;
    let name = "t/takeover";
    let old_factory = c.factory(small_ledgers(1000), 1 << 20);
    let old = old_factory.open(name).await.unwrap();
    let acked = add_n(&old, 0, 30).await;
    let sub = old
        .open_cursor("sub", InitialPosition::Earliest)
        .await
        .unwrap();
    sub.ack_cumulative(acked[9]);
    sub.persist().await.unwrap();

    // A second broker takes over without the first closing anything.
    let new_factory = c.factory(small_ledgers(1000), 1 << 20);
    let ml = new_factory.open(name).await.unwrap();
    assert_eq!(ml.last_confirmed(), Some(acked[29]));
    let all = ml
        .read_entries(Position::EARLIEST, 100, usize::MAX)
        .await
        .unwrap();
    assert_eq!(all.len(), 30);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.data, payload(i as u64));
    }
    let sub2 = ml
        .open_cursor("sub", InitialPosition::Latest)
        .await
        .unwrap();
    assert_eq!(sub2.mark_delete_position(), acked[9]);
    let new = add_n(&ml, 30, 5).await;
    assert!(new[0] > acked[29]);

    // The old owner's adds now fail, fenced.
    let err = match old.add_entry(payload(99)).await {
        Err(e) => e,
        Ok(fut) => fut.await.unwrap_err(),
    };
    assert!(err.is_fenced(), "{err}");
    assert!(old.is_fenced());
    let err = old.add_entry(payload(100)).await.unwrap_err();
    assert!(err.is_fenced(), "{err}");
    // Its cursor writes are refused too.
    sub.ack_cumulative(acked[20]);
    assert!(sub.persist().await.unwrap_err().is_fenced());
    assert_eq!(sub2.mark_delete_position(), acked[9]);
    // And the new owner is not disturbed.
    let more = add_n(&ml, 35, 2).await;
    wait_confirmed(&ml, more[1]).await;
    assert_eq!(
        ml.read_entries(Position::EARLIEST, 100, usize::MAX)
            .await
            .unwrap()
            .len(),
        37
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_writer_fails_its_adds_and_the_next_add_gets_a_new_ledger() {
    let mut c = Cluster::start(2).await;
    let config = ManagedLedgerConfig {
        ensemble_size: 2,
        write_quorum: 2,
        ack_quorum: 2,
        ..small_ledgers(1000)
    };
    let f = c.factory(config, 1 << 20);
    let ml = f.open("t/writer-failure").await.unwrap();
    let before = add_n(&ml, 0, 10).await;
    let failed_ledger = before[0].ledger_id;
    // With one of two bookies gone no ensemble change is possible: the
    // writer gives up after its ensemble-change timeout.
    c.stop_bookie(1).await;
    let err = ml.add_entry(payload(10)).await.unwrap().await.unwrap_err();
    assert!(!err.is_fenced(), "{err}");
    // No bookie to create a new ledger on either.
    assert!(ml.add_entry(payload(10)).await.is_err());
    c.add_bookie().await;
    let p = ml.add_entry(payload(10)).await.unwrap().await.unwrap();
    assert!(p.ledger_id > failed_ledger);
    assert_eq!(p.entry_id, 0);
    wait_confirmed(&ml, p).await;
    // What was acknowledged before the failure is still there, in order.
    let all = ml
        .read_entries(Position::EARLIEST, 100, usize::MAX)
        .await
        .unwrap();
    let got: Vec<Position> = all.iter().map(|e| e.position).collect();
    let mut want = before.clone();
    want.push(p);
    assert_eq!(got, want);
    assert_eq!(all[10].data, payload(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn factory_shares_instances_lists_and_deletes() {
    let c = Cluster::start(1).await;
    let f = c.factory(small_ledgers(4), 1 << 20);
    let a = f.open("public/default/persistent/a").await.unwrap();
    let a2 = f.open("public/default/persistent/a").await.unwrap();
    assert!(Arc::ptr_eq(&a, &a2));
    let b = f.open("public/default/persistent/b/c").await.unwrap();
    f.open("public/other/persistent/x").await.unwrap();
    assert_eq!(
        f.list("public/default/persistent/").await.unwrap(),
        vec![
            "public/default/persistent/a",
            "public/default/persistent/b/c"
        ]
    );
    assert!(f.exists("public/default/persistent/a").await.unwrap());
    assert!(!f.exists("public/default/persistent/zz").await.unwrap());
    assert!(f.open("").await.is_err());

    let positions = add_n(&b, 0, 10).await;
    let ledgers: Vec<u64> = b.stats().ledgers.iter().map(|l| l.ledger_id).collect();
    b.open_cursor("s/1", InitialPosition::Earliest)
        .await
        .unwrap();
    assert_eq!(
        c.keys(&keys::cursors_of("public/default/persistent/b/c"))
            .await
            .len(),
        1
    );
    // Cursors of b/c are not cursors of b.
    assert!(
        c.keys(&keys::cursors_of("public/default/persistent/b"))
            .await
            .is_empty()
    );
    assert!(positions.len() == 10 && ledgers.len() >= 3);

    f.delete("public/default/persistent/b/c").await.unwrap();
    assert!(b.is_closed());
    assert!(!f.exists("public/default/persistent/b/c").await.unwrap());
    assert!(
        c.keys(&keys::cursors_of("public/default/persistent/b/c"))
            .await
            .is_empty()
    );
    for l in ledgers {
        assert!(!c.ledger_exists(l).await, "ledger {l} still exists");
    }
    assert!(f.delete("public/default/persistent/b/c").await.is_err());
    // A closed instance is replaced on the next open.
    a.close().await.unwrap();
    let a3 = f.open("public/default/persistent/a").await.unwrap();
    assert!(!Arc::ptr_eq(&a, &a3));
    f.close_all().await;
    assert!(a3.is_closed());
}

/// The broker spawns tasks around these futures.
#[allow(dead_code)]
fn futures_are_send(f: strata_managed_ledger::ManagedLedgerFactory) {
    fn send<T: Send>(_: T) {}
    send(async move {
        let ml = f.open("x").await.unwrap();
        let add = ml.add_entry(Bytes::new()).await.unwrap();
        send(add);
        ml.read_entries(Position::EARLIEST, 1, 1).await.unwrap();
        ml.find_newest_matching(Position::EARLIEST, |_| true)
            .await
            .unwrap();
        let c = ml
            .open_cursor("c", InitialPosition::Earliest)
            .await
            .unwrap();
        c.read_entries(1, 1).await.unwrap();
        c.wait_entries().await;
        c.persist().await.unwrap();
        ml.trim().await.unwrap();
        ml.close().await.unwrap();
        f.close_all().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adders_get_distinct_gapless_positions_across_rollovers() {
    let c = Cluster::start(1).await;
    let f = c.factory(small_ledgers(16), 1 << 20);
    let ml = f.open("t/concurrent").await.unwrap();
    let tasks: Vec<_> = (0..4u64)
        .map(|t| {
            let ml = ml.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                for i in 0..100u64 {
                    let data = Bytes::from(format!("{t}-{i}"));
                    pending.push((data.clone(), ml.add_entry(data).await.unwrap()));
                }
                let mut out = Vec::new();
                for (data, p) in pending {
                    out.push((p.await.unwrap(), data));
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        // Each task's own adds are in its order.
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
        all.extend(got);
    }
    all.sort();
    let last = all.last().unwrap().0;
    wait_confirmed(&ml, last).await;
    let read = ml
        .read_entries(Position::EARLIEST, 1000, usize::MAX)
        .await
        .unwrap();
    assert_eq!(read.len(), 400);
    for (e, (p, data)) in read.iter().zip(&all) {
        assert_eq!(e.position, *p);
        assert_eq!(&e.data, data);
    }
    // Every ledger holds ids 0..n without holes.
    for l in ml.stats().ledgers {
        let n = read
            .iter()
            .filter(|e| e.position.ledger_id == l.ledger_id)
            .count() as u64;
        assert_eq!(n, l.entries);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aged_ledger_rolls_over_on_the_timer() {
    let c = Cluster::start(1).await;
    let config = ManagedLedgerConfig {
        max_ledger_age: Duration::from_millis(300),
        ..small_ledgers(1000)
    };
    let f = c.factory(config, 1 << 20);
    let ml = f.open("t/aged").await.unwrap();
    let first = ml.current_ledger().await.unwrap();
    // An empty ledger is never rolled over for its age.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ml.current_ledger().await, Some(first));
    let p = add_n(&ml, 0, 1).await[0];
    assert_eq!(p.ledger_id, first);
    eventually("the aged ledger is rolled over", async || {
        ml.current_ledger().await.is_some_and(|l| l > first)
    })
    .await;
    // Sealed with its entry; the next add goes to the new ledger.
    eventually("the old ledger is sealed", async || {
        ml.stats()
            .ledgers
            .iter()
            .any(|l| l.ledger_id == first && l.closed && l.entries == 1)
    })
    .await;
    let q = add_n(&ml, 1, 1).await[0];
    assert!(q.ledger_id > first && q.entry_id == 0);
    assert_eq!(ml.next_position(p), q);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_from_bookies_stops_where_the_pinned_tail_starts() {
    let c = Cluster::start(1).await;
    // No cache: entries below the LAC the bookies know come from them, the
    // rest from the pinned tail of the open ledger.
    let f = c.factory(small_ledgers(1000), 0);
    let ml = f.open("t/pinned-tail").await.unwrap();
    // One at a time: each add tells the bookies the previous one is
    // confirmed, so only the newest entry is pinned.
    for i in 0..10 {
        ml.add_entry(payload(i)).await.unwrap().await.unwrap();
    }
    let all = ml
        .read_entries(Position::EARLIEST, 1000, usize::MAX)
        .await
        .unwrap();
    assert_eq!(all.len(), 10);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.data, payload(i as u64), "entry {i}");
    }
}

/// A reader behind the tail finds its next entries already read: each read
/// from bookies starts one for what follows, and the reader's next read is
/// served from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_reader_finds_its_next_entries_read_ahead() {
    let c = Cluster::start(1).await;
    let f = c.factory(small_ledgers(10_000), 64 << 20);
    let ml = f.open("t/catch-up").await.unwrap();
    let positions = add_n(&ml, 0, 300).await;
    wait_confirmed(&ml, positions[299]).await;
    ml.close().await.unwrap();
    drop(f);
    // A fresh cache: every entry is on bookies only.
    let f = c.factory(small_ledgers(10_000), 64 << 20);
    let ml = f.open("t/catch-up").await.unwrap();
    let first = ml
        .read_entries(Position::EARLIEST, 10, usize::MAX)
        .await
        .unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(ml.stats().cache_misses, 10);
    // The next ten arrive in the cache without being asked for.
    eventually("the read ahead fills the cache", async || {
        f.cache_stats().entries >= 20
    })
    .await;
    let next = ml
        .read_entries(after(first[9].position), 10, usize::MAX)
        .await
        .unwrap();
    assert_eq!(next.len(), 10);
    let stats = ml.stats();
    assert_eq!(stats.cache_misses, 10, "the second read went to bookies");
    assert_eq!(stats.cache_hits, 10);
    // Reading on to the end returns every entry in order; after the first
    // read, bookies are asked ahead of the reader, not by it.
    let mut got: Vec<_> = first.into_iter().chain(next).collect();
    while got.len() < 300 {
        let from = after(got.last().unwrap().position);
        got.extend(ml.read_entries(from, 10, usize::MAX).await.unwrap());
    }
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.position, positions[i]);
        assert_eq!(e.data, payload(i as u64), "entry {i}");
    }
    let stats = ml.stats();
    assert!(
        stats.cache_hits >= 250,
        "{} hits, {} misses",
        stats.cache_hits,
        stats.cache_misses
    );
}

fn after(p: Position) -> Position {
    Position::new(p.ledger_id, p.entry_id + 1)
}
