//! Cursors and trimming against real bookies.

mod common;

use std::time::Duration;

use common::*;
use strata_common::metadata;
use strata_managed_ledger::{CursorRecord, InitialPosition, ManagedLedgerConfig, Position, keys};

const NAME: &str = "public/default/persistent/cursors";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn individual_acks_with_holes_survive_a_reopen() {
    let c = Cluster::start(1).await;
    let (positions, md) = {
        let f = c.factory(small_ledgers(6), 1 << 20);
        let ml = f.open(NAME).await.unwrap();
        let positions = add_n(&ml, 0, 20).await;
        wait_confirmed(&ml, positions[19]).await;
        let sub = ml
            .open_cursor("sub", InitialPosition::Earliest)
            .await
            .unwrap();
        assert_eq!(sub.mark_delete_position(), Position::EARLIEST);
        assert_eq!(sub.read_position(), positions[0]);
        assert_eq!(sub.backlog(), 20);
        // Acks 0..=2, 4, 6..=8 (crossing into the second ledger), 15.
        let acked: Vec<Position> = [0, 1, 2, 4, 6, 7, 8, 15]
            .iter()
            .map(|i| positions[*i])
            .collect();
        assert!(sub.ack(&acked));
        assert_eq!(sub.mark_delete_position(), positions[2]);
        assert_eq!(sub.backlog(), 12);
        assert!(sub.is_acked(positions[4]) && !sub.is_acked(positions[3]));
        let rec = sub.state_record();
        assert_eq!(rec.acked_ranges.len(), 3, "{rec:?}");
        ml.close().await.unwrap();
        (positions, sub.mark_delete_position())
    };
    let f = c.factory(small_ledgers(6), 1 << 20);
    let ml = f.open(NAME).await.unwrap();
    assert_eq!(ml.cursors().len(), 1);
    let sub = ml
        .open_cursor("sub", InitialPosition::Latest)
        .await
        .unwrap();
    assert_eq!(sub.mark_delete_position(), md);
    assert_eq!(sub.backlog(), 12);
    for (i, p) in positions.iter().enumerate() {
        let acked = [0, 1, 2, 4, 6, 7, 8, 15].contains(&i);
        assert_eq!(sub.is_acked(*p), acked, "entry {i}");
    }
    // Reading resumes after mark-delete and skips what was acknowledged.
    let got = sub.read_entries(100, usize::MAX).await.unwrap();
    let want: Vec<Position> = [3, 5, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19]
        .iter()
        .map(|i| positions[*i])
        .collect();
    assert_eq!(got.iter().map(|e| e.position).collect::<Vec<_>>(), want);
    assert!(sub.read_entries(100, usize::MAX).await.unwrap().is_empty());
    // Filling the holes moves mark-delete over the acked ranges.
    assert!(sub.ack(&[positions[3], positions[5]]));
    assert_eq!(sub.mark_delete_position(), positions[8]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_state_is_persisted_in_the_background_rate_limited() {
    let c = Cluster::start(1).await;
    let f = c.factory(small_ledgers(100), 1 << 20);
    let ml = f.open(NAME).await.unwrap();
    let positions = add_n(&ml, 0, 10).await;
    let sub = ml
        .open_cursor("bg", InitialPosition::Earliest)
        .await
        .unwrap();
    sub.ack(&[positions[0], positions[1], positions[5]]);
    sub.set_property("k", "v");
    let key = keys::cursor(NAME, "bg");
    eventually("the acks reach the store", async || {
        let rec: Option<(CursorRecord, _)> =
            metadata::get_json(c.store.as_ref(), &key).await.unwrap();
        rec.is_some_and(|(r, _)| {
            r.mark_delete == positions[1]
                && r.acked_ranges == vec![[positions[5].ledger_id, 5, 5]]
                && r.properties.get("k").map(String::as_str) == Some("v")
        })
    })
    .await;
    // Reopen without close (another factory): the state is what was persisted.
    let f2 = c.factory(small_ledgers(100), 1 << 20);
    let ml2 = f2.open(NAME).await.unwrap();
    let sub2 = ml2
        .open_cursor("bg", InitialPosition::Latest)
        .await
        .unwrap();
    assert_eq!(sub2.mark_delete_position(), positions[1]);
    assert!(sub2.is_acked(positions[5]));
    assert_eq!(sub2.properties().get("k").map(String::as_str), Some("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cumulative_acks_and_backlog() {
    let c = Cluster::start(1).await;
    let f = c.factory(small_ledgers(4), 1 << 20);
    let ml = f.open(NAME).await.unwrap();
    let positions = add_n(&ml, 0, 10).await;
    wait_confirmed(&ml, positions[9]).await;
    let sub = ml
        .open_cursor("cum", InitialPosition::Earliest)
        .await
        .unwrap();
    sub.ack(&[positions[7]]);
    assert_eq!(sub.backlog(), 9);
    sub.ack_cumulative(positions[5]);
    assert_eq!(sub.mark_delete_position(), positions[5]);
    assert_eq!(sub.backlog(), 3);
    // Moving back does nothing.
    sub.ack_cumulative(positions[2]);
    assert_eq!(sub.mark_delete_position(), positions[5]);
    sub.ack_cumulative(positions[6]);
    // 7 was acked individually, so mark-delete moves on over it.
    assert_eq!(sub.mark_delete_position(), positions[7]);
    assert_eq!(sub.backlog(), 2);
    assert_eq!(sub.read_position(), positions[8]);
    let latest = ml
        .open_cursor("latest", InitialPosition::Latest)
        .await
        .unwrap();
    assert_eq!(latest.backlog(), 0);
    assert_eq!(latest.mark_delete_position(), positions[9]);
    assert!(
        latest
            .read_entries(10, usize::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    let more = add_n(&ml, 10, 1).await;
    wait_confirmed(&ml, more[0]).await;
    assert_eq!(latest.backlog(), 1);
    assert_eq!(
        latest.read_entries(10, usize::MAX).await.unwrap()[0].position,
        more[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_index_acks_are_kept_and_restored() {
    let c = Cluster::start(1).await;
    let positions = {
        let f = c.factory(small_ledgers(100), 1 << 20);
        let ml = f.open(NAME).await.unwrap();
        let positions = add_n(&ml, 0, 3).await;
        let sub = ml
            .open_cursor("batch", InitialPosition::Earliest)
            .await
            .unwrap();
        // Batch of 10 in entry 0: the consumer acks messages 0 and 3, i.e.
        // its remaining set is every bit but 0 and 3.
        let remaining = 0b11_1111_1111i64 & !0b1001;
        sub.ack_batch_indexes(positions[0], &[remaining], 10);
        assert!(!sub.is_acked(positions[0]));
        assert_eq!(sub.batch_ack_set(positions[0]), Some(vec![remaining]));
        assert_eq!(sub.backlog(), 3);
        // Entry 1: all messages acked one call at a time.
        for i in 0..4 {
            let remaining = 0b1111i64 & !(1 << i);
            sub.ack_batch_indexes(positions[1], &[remaining], 4);
        }
        assert!(sub.is_acked(positions[1]));
        assert_eq!(sub.batch_ack_set(positions[1]), None);
        assert_eq!(sub.backlog(), 2);
        ml.close().await.unwrap();
        positions
    };
    let f = c.factory(small_ledgers(100), 1 << 20);
    let ml = f.open(NAME).await.unwrap();
    let sub = ml
        .open_cursor("batch", InitialPosition::Latest)
        .await
        .unwrap();
    let remaining = 0b11_1111_1111i64 & !0b1001;
    assert_eq!(sub.batch_ack_set(positions[0]), Some(vec![remaining]));
    assert!(sub.is_acked(positions[1]));
    // Acking the rest of entry 0 acknowledges it and moves mark-delete.
    sub.ack_batch_indexes(positions[0], &[0], 10);
    assert_eq!(sub.mark_delete_position(), positions[1]);
    assert_eq!(sub.batch_ack_set(positions[0]), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_rewind_and_reset() {
    let c = Cluster::start(1).await;
    let f = c.factory(small_ledgers(5), 1 << 20);
    let ml = f.open(NAME).await.unwrap();
    let positions = add_n(&ml, 0, 12).await;
    wait_confirmed(&ml, positions[11]).await;
    let sub = ml
        .open_cursor("seek", InitialPosition::Earliest)
        .await
        .unwrap();
    let first = sub.read_entries(4, usize::MAX).await.unwrap();
    assert_eq!(first.len(), 4);
    assert_eq!(sub.read_position(), positions[4]);
    sub.ack(&[positions[0], positions[2]]);
    // seek moves only the read position.
    sub.seek(positions[8]);
    assert_eq!(
        sub.read_entries(1, usize::MAX).await.unwrap()[0].position,
        positions[8]
    );
    assert_eq!(sub.mark_delete_position(), positions[0]);
    // rewind: from after mark-delete, skipping individual acks.
    sub.rewind();
    let again = sub.read_entries(3, usize::MAX).await.unwrap();
    assert_eq!(
        again.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![positions[1], positions[3], positions[4]]
    );
    // reset (subscription seek): before is acked, after is not; persisted.
    sub.reset(positions[6]);
    assert_eq!(sub.mark_delete_position(), positions[5]);
    assert_eq!(sub.read_position(), positions[6]);
    assert!(!sub.is_acked(positions[6]));
    assert_eq!(sub.backlog(), 6);
    let key = keys::cursor(NAME, "seek");
    eventually("the reset reaches the store", async || {
        let rec: Option<(CursorRecord, _)> =
            metadata::get_json(c.store.as_ref(), &key).await.unwrap();
        rec.is_some_and(|(r, _)| r.mark_delete == positions[5] && r.acked_ranges.is_empty())
    })
    .await;
    // Reset to the very beginning: nothing acknowledged.
    sub.reset(positions[0]);
    assert_eq!(sub.mark_delete_position(), Position::EARLIEST);
    assert_eq!(sub.backlog(), 12);
    assert_eq!(
        sub.read_entries(1, usize::MAX).await.unwrap()[0].position,
        positions[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_durable_cursors_read_but_are_not_stored() {
    let c = Cluster::start(1).await;
    let f = c.factory(small_ledgers(5), 1 << 20);
    let ml = f.open(NAME).await.unwrap();
    let positions = add_n(&ml, 0, 8).await;
    wait_confirmed(&ml, positions[7]).await;
    let reader = ml.new_non_durable_cursor(positions[3]);
    assert!(!reader.is_durable());
    let got = reader.read_entries(100, usize::MAX).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.position).collect::<Vec<_>>(),
        positions[3..].to_vec()
    );
    reader.ack(&[positions[3]]);
    reader.persist().await.unwrap();
    assert!(ml.cursors().is_empty());
    assert!(c.keys(&keys::cursors_of(NAME)).await.is_empty());
    // From the earliest position and from the end.
    let all = ml.new_non_durable_cursor(Position::EARLIEST);
    assert_eq!(all.read_entries(100, usize::MAX).await.unwrap().len(), 8);
    let tail = ml.new_non_durable_cursor(ml.end_position());
    assert!(tail.read_entries(100, usize::MAX).await.unwrap().is_empty());
    let waiter = {
        let tail = tail.clone();
        tokio::spawn(async move { tail.wait_entries().await })
    };
    let more = add_n(&ml, 8, 1).await;
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        tail.read_entries(100, usize::MAX).await.unwrap()[0].position,
        more[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_entries_returns_on_close() {
    let c = Cluster::start(1).await;
    let f = c.factory(small_ledgers(5), 1 << 20);
    let ml = f.open(NAME).await.unwrap();
    let sub = ml.open_cursor("w", InitialPosition::Latest).await.unwrap();
    let waiter = {
        let sub = sub.clone();
        tokio::spawn(async move { sub.wait_entries().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished());
    ml.close().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trim_deletes_only_consumed_ledgers_outside_retention() {
    let c = Cluster::start(1).await;
    let config = ManagedLedgerConfig {
        retention_time: Some(Duration::ZERO),
        trim_interval: Duration::from_secs(3600),
        ..small_ledgers(5)
    };
    let f = c.factory(config, 1 << 20);
    let ml = f.open(NAME).await.unwrap();
    let slow = ml
        .open_cursor("slow", InitialPosition::Earliest)
        .await
        .unwrap();
    let fast = ml
        .open_cursor("fast", InitialPosition::Earliest)
        .await
        .unwrap();
    let positions = add_n(&ml, 0, 17).await;
    wait_confirmed(&ml, positions[16]).await;
    let ledgers: Vec<u64> = ml.stats().ledgers.iter().map(|l| l.ledger_id).collect();
    assert_eq!(ledgers.len(), 4, "{ledgers:?}");

    fast.ack_cumulative(positions[16]);
    // The slow cursor is in the middle of the second ledger.
    slow.ack_cumulative(positions[7]);
    ml.trim().await.unwrap();
    let left: Vec<u64> = ml.stats().ledgers.iter().map(|l| l.ledger_id).collect();
    assert_eq!(left, ledgers[1..].to_vec());
    assert!(!c.ledger_exists(ledgers[0]).await);
    assert!(c.ledger_exists(ledgers[1]).await);
    assert_eq!(ml.first_position(), Some(positions[5]));
    // Reads from before the first stored entry start at it.
    let got = ml
        .read_entries(Position::EARLIEST, 1, usize::MAX)
        .await
        .unwrap();
    assert_eq!(got[0].position, positions[5]);

    // Everything consumed: all but the newest ledger go.
    slow.ack_cumulative(positions[16]);
    ml.trim().await.unwrap();
    let left: Vec<u64> = ml.stats().ledgers.iter().map(|l| l.ledger_id).collect();
    assert_eq!(left.len(), 1);
    assert!(left[0] > ledgers[2]);
    assert_eq!(ml.last_confirmed(), Some(positions[16]));
    assert_eq!(slow.backlog(), 0);
    // The trimmed state survives a reopen.
    ml.close().await.unwrap();
    let f2 = c.factory(small_ledgers(5), 1 << 20);
    let ml2 = f2.open(NAME).await.unwrap();
    assert!(
        ml2.stats()
            .ledgers
            .iter()
            .all(|l| !ledgers.contains(&l.ledger_id) || l.ledger_id == ledgers[3])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_consumed_ledgers_and_deleting_a_cursor_releases_them() {
    let c = Cluster::start(1).await;
    // Default retention: keep forever.
    let f = c.factory(small_ledgers(3), 1 << 20);
    let ml = f.open(NAME).await.unwrap();
    let sub = ml
        .open_cursor("s", InitialPosition::Earliest)
        .await
        .unwrap();
    let positions = add_n(&ml, 0, 9).await;
    wait_confirmed(&ml, positions[8]).await;
    sub.ack_cumulative(positions[8]);
    ml.trim().await.unwrap();
    // The tenth add would roll over: three ledgers, none deleted.
    assert_eq!(ml.stats().ledgers.len(), 3);

    // The blocker opens before retention changes: the ack above may have
    // woken the background trim, which must not find "s" alone under the
    // new retention (it would trim before the blocker exists).
    let blocker = ml
        .open_cursor("blocker", InitialPosition::Earliest)
        .await
        .unwrap();
    // Size retention: keep at most ~one ledger of consumed data.
    let one_ledger: u64 = (0..3).map(|i| payload(i).len() as u64).max().unwrap() * 3;
    ml.set_config(ManagedLedgerConfig {
        retention_size_bytes: Some(one_ledger),
        ..ml.config()
    })
    .unwrap();
    ml.trim().await.unwrap();
    assert_eq!(
        ml.stats().ledgers.len(),
        3,
        "an unconsumed cursor blocks trimming"
    );
    ml.delete_cursor("blocker").await.unwrap();
    assert!(blocker.persist().await.is_ok());
    assert!(ml.delete_cursor("blocker").await.is_err());
    assert_eq!(c.keys(&keys::cursors_of(NAME)).await.len(), 1);
    ml.trim().await.unwrap();
    let stats = ml.stats();
    // Oldest first until what is left fits: only the newest ledger stays.
    assert_eq!(stats.ledgers.len(), 1, "{:?}", stats.ledgers);
    let stored: u64 = stats.ledgers.iter().map(|l| l.size_bytes).sum();
    assert!(stored <= one_ledger, "{stored} > {one_ledger}");
}
