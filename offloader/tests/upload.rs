//! Upload, verification and deletion of offloaded ledgers against real
//! object_store backends (in-memory and local directory), with faults
//! injected through FaultyStore.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::stream;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use strata_offloader::faulty::{Fault, FaultKind, FaultyStore, Op};
use strata_offloader::format::decode_index;
use strata_offloader::upload::verify_with;
use strata_offloader::{
    IoSink, OffloadError, OffloadedObjects, UploadOptions, delete_objects, upload_ledger, verify,
};

/// Reads the data object back and checks every entry against what was sent.
async fn assert_round_trip(
    store: &Arc<dyn ObjectStore>,
    objects: &OffloadedObjects,
    sent: &[(u64, Bytes)],
) {
    let (io, stats) = sink();
    verify(store, objects, &io).await.expect("verify");
    assert_eq!(stats.snapshot().corrupt_blocks, 0);
    let index = store
        .get(&Path::parse(&objects.index_key).unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let index = decode_index(&objects.index_key, &index).unwrap();
    let data = store
        .get(&Path::parse(&objects.data_key).unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut got = Vec::new();
    for row in &index.rows {
        let block = data.slice(row.offset as usize..row.range().end as usize);
        for e in strata_offloader::format::BlockEntries::new("k", *row, block).unwrap() {
            got.push(e.unwrap());
        }
    }
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "entries differ after the round trip");
    // The index's copy of the first block, when it has one, is that block.
    let head = index.head.as_ref().map_or(0, |h| h.len());
    assert_eq!(objects.head_bytes, head as u64);
    if let Some(h) = &index.head {
        assert_eq!(h, &data.slice(..index.rows[0].len as usize));
    }
    assert_eq!(objects.entries, sent.len() as u64);
    assert_eq!(objects.blocks, index.rows.len() as u64);
}

#[tokio::test]
async fn one_entry_round_trips_on_memory_and_local_dir() {
    let dir = tempfile::tempdir().unwrap();
    for store in [memory(), local(&dir)] {
        let sent = entries(&[123]);
        let (_, objects) = upload(&store, 1, &sent, &opts(64 << 10)).await;
        assert_eq!(objects.blocks, 1);
        assert_eq!(objects.payload_bytes, 123);
        assert_eq!(objects.head_bytes, 123 + 12, "the index copies the block");
        assert_round_trip(&store, &objects, &sent).await;
    }
}

#[tokio::test]
async fn entries_bigger_than_a_block_get_a_block_each() {
    let store = memory();
    let sent = entries(&[5000, 100, 7000, 3000]);
    let (_, objects) = upload(&store, 2, &sent, &opts(1024)).await;
    // 5000 | 100 then 7000 would exceed → 100 alone | 7000 | 3000.
    assert_eq!(objects.blocks, 4);
    assert_eq!(objects.head_bytes, 5000 + 12);
    assert_round_trip(&store, &objects, &sent).await;
    // A first block above the limit is not copied into the index.
    let small_head = UploadOptions {
        head_max: 5000,
        ..opts(1024)
    };
    let (_, objects) = upload(&store, 3, &sent, &small_head).await;
    assert_eq!(objects.head_bytes, 0);
    assert_round_trip(&store, &objects, &sent).await;
}

#[tokio::test]
async fn many_tiny_entries_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let sizes = random_sizes(3, 20_000, 16);
    let sent = entries(&sizes);
    let (_, objects) = upload(&store, 3, &sent, &opts(4096)).await;
    assert!(objects.blocks > 10);
    assert_round_trip(&store, &objects, &sent).await;
}

#[tokio::test]
async fn empty_ledger_round_trips() {
    let store = memory();
    let (_, objects) = upload(&store, 4, &[], &opts(4096)).await;
    assert_eq!((objects.blocks, objects.data_size), (0, 0));
    verify(&store, &objects, &IoSink::default()).await.unwrap();
}

#[tokio::test]
async fn large_ledger_goes_multipart_with_bounded_parts_and_progress() {
    let inner = memory();
    let faulty = FaultyStore::new(inner);
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let sent = entries(&random_sizes(4, 600, 8000));
    let h = header(5, &sent);
    let o = UploadOptions {
        block_target: 16 << 10,
        part_size: 256 << 10,
        single_put_max: 256 << 10,
        max_parallel_parts: 2,
        retry: fast_retry(),
        ..UploadOptions::default()
    };
    let last = AtomicU64::new(0);
    let calls = AtomicU64::new(0);
    let progress = |p: u64| {
        let prev = last.swap(p, Ordering::SeqCst);
        assert!(p >= prev, "progress went backwards: {prev} → {p}");
        calls.fetch_add(1, Ordering::SeqCst);
    };
    let (io, stats) = sink();
    let base = base(5);
    let objects = upload_ledger(
        &store,
        &base,
        &h,
        stream::iter(sent.clone().into_iter().map(Ok)),
        &o,
        &io,
        &progress,
    )
    .await
    .unwrap();
    assert!(
        objects.head_bytes > 0,
        "the first part's first block is copied"
    );
    let parts = objects.data_size.div_ceil(256 << 10);
    // create + one request per part + complete.
    assert_eq!(faulty.requests(Op::Multipart), parts + 2);
    assert_eq!(
        faulty.requests(Op::Put),
        1,
        "only the index is a single PUT"
    );
    assert_eq!(last.load(Ordering::SeqCst), h.payload_bytes);
    assert!(calls.load(Ordering::SeqCst) > 2);
    assert!(stats.snapshot().put_bytes >= objects.data_size + objects.index_size);
    assert_round_trip(&store, &objects, &sent).await;
}

#[tokio::test]
async fn bad_input_is_refused_and_no_index_is_written() {
    let store = memory();
    let sent = entries(&[10, 20, 30]);
    let cases: Vec<(&str, Vec<(u64, Bytes)>)> = vec![
        ("gap", vec![sent[0].clone(), sent[2].clone()]),
        ("too few", sent[..2].to_vec()),
        (
            "too many",
            [sent.clone(), vec![(3, Bytes::from_static(b"x"))]].concat(),
        ),
        ("not from zero", sent[1..].to_vec()),
    ];
    for (name, items) in cases {
        let base = base(6);
        let h = header(6, &sent);
        let res = upload_ledger(
            &store,
            &base,
            &h,
            stream::iter(items.into_iter().map(Ok)),
            &opts(64),
            &IoSink::default(),
            &|_| {},
        )
        .await;
        assert!(
            matches!(res, Err(OffloadError::Input(_))),
            "{name}: {res:?}"
        );
        assert!(
            store.head(&base.clone().join("index")).await.is_err(),
            "{name}: index written"
        );
    }
    // An error from the source stream is passed on.
    let base = base(6);
    let items = stream::iter(vec![
        Ok(sent[0].clone()),
        Err(OffloadError::Source {
            ledger_id: 6,
            reason: "bookies gone".into(),
        }),
    ]);
    let res = upload_ledger(
        &store,
        &base,
        &header(6, &sent),
        items,
        &opts(64),
        &IoSink::default(),
        &|_| {},
    )
    .await;
    assert!(matches!(res, Err(OffloadError::Source { .. })), "{res:?}");
}

/// Replaces an object with other bytes.
async fn overwrite(store: &Arc<dyn ObjectStore>, key: &str, bytes: Vec<u8>) {
    store
        .put(&Path::parse(key).unwrap(), PutPayload::from(bytes))
        .await
        .unwrap();
}

async fn read_all(store: &Arc<dyn ObjectStore>, key: &str) -> Vec<u8> {
    store
        .get(&Path::parse(key).unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

fn corrupt_reason(r: Result<(), OffloadError>) -> String {
    match r {
        Err(OffloadError::Corrupt { reason, .. }) => reason,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn verify_catches_damaged_objects_and_wrong_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let sent = entries(&random_sizes(7, 300, 2000));
    let (_, objects) = upload(&store, 7, &sent, &opts(8192)).await;
    let data = read_all(&store, &objects.data_key).await;
    let index = read_all(&store, &objects.index_key).await;
    let check = |o: OffloadedObjects| {
        let store = store.clone();
        async move {
            let (io, stats) = sink();
            let r = verify(&store, &o, &io).await;
            assert!(stats.snapshot().corrupt_blocks >= 1 || r.is_ok());
            corrupt_reason(r)
        }
    };

    // Truncated data (and the record's size no longer matches).
    overwrite(&store, &objects.data_key, data[..data.len() - 10].to_vec()).await;
    assert!(check(objects.clone()).await.contains("bytes"));
    // Truncated data with a record claiming the truncated size.
    let mut shrunk = objects.clone();
    shrunk.data_size -= 10;
    assert!(check(shrunk).await.contains("index holds"));

    // One byte flipped in data.
    let mut flipped = data.clone();
    flipped[data.len() / 3] ^= 0x10;
    overwrite(&store, &objects.data_key, flipped).await;
    assert!(check(objects.clone()).await.contains("checksum"));
    overwrite(&store, &objects.data_key, data.clone()).await;
    verify(&store, &objects, &IoSink::default()).await.unwrap();

    // One byte flipped in the index.
    let mut bad_index = index.clone();
    bad_index[index.len() / 2] ^= 0x01;
    overwrite(&store, &objects.index_key, bad_index).await;
    assert!(check(objects.clone()).await.contains("index checksum"));
    overwrite(&store, &objects.index_key, index.clone()).await;

    // Records that do not match the objects.
    for (what, o) in [
        (
            "data size",
            OffloadedObjects {
                data_size: objects.data_size + 1,
                ..objects.clone()
            },
        ),
        (
            "index size",
            OffloadedObjects {
                index_size: objects.index_size - 1,
                ..objects.clone()
            },
        ),
        (
            "crc",
            OffloadedObjects {
                index_crc32c: objects.index_crc32c ^ 1,
                ..objects.clone()
            },
        ),
        (
            "blocks",
            OffloadedObjects {
                blocks: objects.blocks + 1,
                ..objects.clone()
            },
        ),
        (
            "entries",
            OffloadedObjects {
                entries: objects.entries - 1,
                ..objects.clone()
            },
        ),
        (
            "payload",
            OffloadedObjects {
                payload_bytes: 1,
                ..objects.clone()
            },
        ),
        (
            "head",
            OffloadedObjects {
                head_bytes: 0,
                ..objects.clone()
            },
        ),
    ] {
        let reason = check(o).await;
        assert!(!reason.is_empty(), "{what}");
    }

    // A missing object.
    store
        .delete(&Path::parse(&objects.data_key).unwrap())
        .await
        .unwrap();
    assert!(check(objects.clone()).await.contains("missing"));
}

#[tokio::test]
async fn verify_catches_a_truncated_response_and_retries_transient_failures() {
    let faulty = FaultyStore::new(memory());
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let sent = entries(&random_sizes(8, 200, 3000));
    let (_, objects) = upload(&store, 8, &sent, &opts(8192)).await;

    faulty.fail_next(Op::Head, 1);
    faulty.fail_next(Op::Get, 2);
    let (io, stats) = sink();
    verify_with(&store, &objects, &io, &fast_retry())
        .await
        .unwrap();
    assert_eq!(stats.snapshot().retries, 3);

    faulty.inject(Fault::new(Op::Get, FaultKind::Truncate(5)).on_path("data"));
    let r = verify_with(&store, &objects, &IoSink::default(), &fast_retry()).await;
    assert!(corrupt_reason(r).contains("returned"));

    // Persistent failures end in a Store error, not Corrupt: nothing was
    // learned about the objects.
    faulty.inject(Fault::new(Op::Get, FaultKind::Fail).always());
    let r = verify_with(&store, &objects, &IoSink::default(), &fast_retry()).await;
    assert!(matches!(r, Err(OffloadError::Store { .. })), "{r:?}");
}

#[tokio::test]
async fn upload_retries_through_transient_put_failures_and_hangs() {
    let faulty = FaultyStore::new(memory());
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let sent = entries(&random_sizes(9, 100, 500));
    faulty.fail_next(Op::Put, 2);
    // Taken once the two failures are used up.
    faulty.inject(Fault::new(
        Op::Put,
        FaultKind::Hang(Duration::from_secs(3600)),
    ));
    let (io, stats) = sink();
    let base = base(9);
    let mut o = opts(4096);
    o.retry.request_timeout = Duration::from_millis(200);
    let objects = upload_ledger(
        &store,
        &base,
        &header(9, &sent),
        stream::iter(sent.clone().into_iter().map(Ok)),
        &o,
        &io,
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(stats.snapshot().retries, 3);
    assert_round_trip(&store, &objects, &sent).await;
}

#[tokio::test]
async fn a_failed_multipart_upload_is_aborted() {
    for kind in [FaultKind::Fail, FaultKind::Hang(Duration::from_secs(3600))] {
        let faulty = FaultyStore::new(memory());
        let store: Arc<dyn ObjectStore> = faulty.clone();
        let sent = entries(&random_sizes(10, 400, 4000));
        // Request 1 creates the upload; the third part fails.
        faulty.inject(
            Fault::new(Op::Multipart, kind.clone())
                .after(3)
                .on_path("data"),
        );
        let o = UploadOptions {
            block_target: 8192,
            part_size: 64 << 10,
            single_put_max: 64 << 10,
            max_parallel_parts: 2,
            retry: strata_offloader::retry::RetryPolicy {
                request_timeout: Duration::from_millis(300),
                ..fast_retry()
            },
            ..UploadOptions::default()
        };
        let base = base(10);
        let res = upload_ledger(
            &store,
            &base,
            &header(10, &sent),
            stream::iter(sent.into_iter().map(Ok)),
            &o,
            &IoSink::default(),
            &|_| {},
        )
        .await;
        assert!(
            matches!(res, Err(OffloadError::Store { .. })),
            "{kind:?}: {res:?}"
        );
        assert_eq!(faulty.aborts(), 1, "{kind:?}");
        assert!(
            store.head(&base.clone().join("data")).await.is_err(),
            "{kind:?}: data object exists"
        );
        assert!(
            store.head(&base.clone().join("index")).await.is_err(),
            "{kind:?}: index written"
        );
    }
}

#[tokio::test]
async fn delete_removes_both_objects_and_tolerates_missing_ones() {
    let faulty = FaultyStore::new(memory());
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let sent = entries(&[10, 20]);
    let (base, objects) = upload(&store, 11, &sent, &opts(4096)).await;
    assert_eq!(objects.base_path().unwrap(), base);
    faulty.fail_next(Op::Delete, 1);
    let (io, stats) = sink();
    delete_objects(&store, &base, &io).await.unwrap();
    assert_eq!(stats.snapshot().retries, 1);
    for key in [&objects.data_key, &objects.index_key] {
        assert!(store.head(&Path::parse(key).unwrap()).await.is_err());
    }
    delete_objects(&store, &base, &IoSink::default())
        .await
        .unwrap();
}
