//! Metadata store conformance: every check runs against `memory://`,
//! `rocksdb://` (in a temp dir) and `etcd://` (a real etcd per test, started by
//! the harness). The invariants are those listed in
//! `common/src/metadata/mod.rs`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use strata_common::metadata::{
    self, Expect, MetadataError, MetadataStore, PutOptions, Session, Version, WatchEvent,
    WatchStream,
};
use strata_tests::etcd::EtcdServer;
use tempfile::TempDir;

/// Bounds a whole check, including starting etcd.
const CHECK_TIMEOUT: Duration = Duration::from_secs(90);
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// etcd raises lease TTLs to about 2 s anyway, so use that everywhere.
const SESSION_TTL: Duration = Duration::from_secs(2);
/// TTL plus etcd's lease-expiry sweep plus slack for a loaded machine.
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(15);
const POLL_EVERY: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    RocksDb,
    Etcd,
}

/// A store plus whatever must outlive it; fields drop in order, store first.
struct Fixture {
    store: Arc<dyn MetadataStore>,
    _dir: Option<TempDir>,
    _etcd: Option<EtcdServer>,
}

impl Fixture {
    async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Memory => Fixture {
                store: metadata::open("memory://").await.unwrap(),
                _dir: None,
                _etcd: None,
            },
            Backend::RocksDb => {
                let dir = tempfile::tempdir().unwrap();
                // A directory that does not exist yet: open must create it.
                let url = rocksdb_url(&dir, "nested/db");
                Fixture {
                    store: metadata::open(&url).await.unwrap(),
                    _dir: Some(dir),
                    _etcd: None,
                }
            }
            Backend::Etcd => {
                let etcd = match EtcdServer::start().await {
                    Ok(etcd) => etcd,
                    Err(e) => panic!("{e:#}"),
                };
                Fixture {
                    store: metadata::open(&etcd.url()).await.unwrap(),
                    _dir: None,
                    _etcd: Some(etcd),
                }
            }
        }
    }
}

fn rocksdb_url(dir: &TempDir, sub: &str) -> String {
    format!("rocksdb://{}", dir.path().join(sub).display())
}

async fn run<F, Fut>(backend: Backend, check: F)
where
    F: FnOnce(Arc<dyn MetadataStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let run = async {
        let fixture = Fixture::new(backend).await;
        check(fixture.store.clone()).await;
    };
    if tokio::time::timeout(CHECK_TIMEOUT, run).await.is_err() {
        panic!("{backend:?}: check did not finish within {CHECK_TIMEOUT:?}");
    }
}

/// Generates one test per backend for each check.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::run(super::Backend::Memory, super::$check).await;
                }
            )*
        }
        mod rocksdb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::run(super::Backend::RocksDb, super::$check).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::run(super::Backend::Etcd, super::$check).await;
                }
            )*
        }
    };
}

conformance!(
    get_missing_is_none,
    put_get_round_trip,
    versions_strictly_increase,
    create_fails_if_present,
    compare_and_set,
    versioned_delete,
    delete_missing_with_any_is_ok,
    list_by_prefix,
    watch_sees_changes_in_order_under_prefix,
    concurrent_cas_race_counts_exactly,
    session_keys_gone_after_close,
    session_keys_gone_after_abandon_and_ttl,
    put_with_closed_session_fails,
);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn put(store: &dyn MetadataStore, key: &str, value: &str, expect: Expect) -> Version {
    store
        .put(key, b(value), PutOptions::expect(expect))
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"))
}

async fn put_in(
    store: &dyn MetadataStore,
    key: &str,
    value: &str,
    s: &Arc<dyn Session>,
) -> Version {
    let opts = PutOptions {
        expect: Expect::Any,
        session: Some(s.clone()),
    };
    store.put(key, b(value), opts).await.unwrap()
}

async fn value_of(store: &dyn MetadataStore, key: &str) -> Option<Bytes> {
    store.get(key).await.unwrap().map(|v| v.value)
}

fn assert_bad_version<T: std::fmt::Debug>(result: Result<T, MetadataError>) {
    match result {
        Err(MetadataError::BadVersion { .. }) => {}
        other => panic!("expected BadVersion, got {other:?}"),
    }
}

async fn next_event(watch: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(EVENT_TIMEOUT, watch.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

/// Polls `cond` until it holds; panics after `EXPIRY_TIMEOUT`.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let give_up = tokio::time::Instant::now() + EXPIRY_TIMEOUT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < give_up,
            "{what}: not within {EXPIRY_TIMEOUT:?}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

async fn get_missing_is_none(store: Arc<dyn MetadataStore>) {
    assert_eq!(store.get("/missing").await.unwrap(), None);
    assert!(store.list("/missing/").await.unwrap().is_empty());
}

async fn put_get_round_trip(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let version = put(store, "/k", "hello", Expect::Any).await;
    let got = store.get("/k").await.unwrap().unwrap();
    assert_eq!(got.value, b("hello"));
    assert_eq!(got.version, version);

    let binary = Bytes::from_static(&[0, 255, 1, 254, b'/']);
    let version = store
        .put("/bin", binary.clone(), PutOptions::default())
        .await
        .unwrap();
    let got = store.get("/bin").await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (binary, version));

    put(store, "/empty", "", Expect::Any).await;
    assert_eq!(value_of(store, "/empty").await, Some(Bytes::new()));
}

async fn versions_strictly_increase(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let mut last = 0;
    for i in 0..10 {
        let key = if i % 2 == 0 { "/v/same" } else { "/v/other" };
        let version = put(store, key, &i.to_string(), Expect::Any).await;
        assert!(version > last, "version {version} after {last}");
        assert_eq!(store.get(key).await.unwrap().unwrap().version, version);
        last = version;
        if i == 5 {
            store.delete("/v/other", Expect::Any).await.unwrap();
        }
    }
}

async fn create_fails_if_present(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let version = put(store, "/c", "first", Expect::Absent).await;
    assert_bad_version(
        store
            .put("/c", b("second"), PutOptions::expect(Expect::Absent))
            .await,
    );
    let got = store.get("/c").await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (b("first"), version));
}

async fn compare_and_set(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let v1 = put(store, "/cas", "1", Expect::Absent).await;
    let v2 = put(store, "/cas", "2", Expect::Version(v1)).await;
    assert!(v2 > v1);
    assert_bad_version(
        store
            .put("/cas", b("stale"), PutOptions::expect(Expect::Version(v1)))
            .await,
    );
    let got = store.get("/cas").await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (b("2"), v2));

    // A version is not a licence to create a missing key.
    assert_bad_version(
        store
            .put("/nope", b("x"), PutOptions::expect(Expect::Version(v2)))
            .await,
    );
    assert_bad_version(
        store
            .put("/nope", b("x"), PutOptions::expect(Expect::Version(0)))
            .await,
    );
    assert_eq!(store.get("/nope").await.unwrap(), None);
}

async fn versioned_delete(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let v1 = put(store, "/d", "1", Expect::Any).await;
    let v2 = put(store, "/d", "2", Expect::Any).await;
    assert_bad_version(store.delete("/d", Expect::Version(v1)).await);
    assert_bad_version(store.delete("/d", Expect::Absent).await);
    assert_eq!(value_of(store, "/d").await, Some(b("2")));
    store.delete("/d", Expect::Version(v2)).await.unwrap();
    assert_eq!(store.get("/d").await.unwrap(), None);
    assert_bad_version(store.delete("/d", Expect::Version(v2)).await);
    store.delete("/d", Expect::Absent).await.unwrap();
}

async fn delete_missing_with_any_is_ok(store: Arc<dyn MetadataStore>) {
    store.delete("/never-written", Expect::Any).await.unwrap();
    let v = put(&*store, "/x", "1", Expect::Any).await;
    store.delete("/x", Expect::Any).await.unwrap();
    store.delete("/x", Expect::Any).await.unwrap();
    assert!(put(&*store, "/x", "2", Expect::Absent).await > v);
}

async fn list_by_prefix(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let mut expected = Vec::new();
    for key in [
        "/a/b/2", "/a/bc", "/a/b/10", "/a/b", "/a/b/1", "/a/c/1", "/a/b/1/x", "/b",
    ] {
        let version = put(store, key, &format!("v{key}"), Expect::Any).await;
        if key.starts_with("/a/b/") {
            expected.push((key.to_string(), b(&format!("v{key}")), version));
        }
    }
    expected.sort();
    let listed: Vec<_> = store
        .list("/a/b/")
        .await
        .unwrap()
        .into_iter()
        .map(|kv| (kv.key, kv.value, kv.version))
        .collect();
    assert_eq!(listed, expected);
    let keys: Vec<_> = expected.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(keys, ["/a/b/1", "/a/b/1/x", "/a/b/10", "/a/b/2"]);

    let all: Vec<_> = store
        .list("/")
        .await
        .unwrap()
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(all.len(), 8);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "not sorted: {all:?}");
}

async fn watch_sees_changes_in_order_under_prefix(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    put(store, "/w/before", "old", Expect::Any).await;
    let mut watch = store.watch("/w/").await.unwrap();

    let v1 = put(store, "/w/a", "1", Expect::Any).await;
    put(store, "/x/a", "outside", Expect::Any).await;
    put(store, "/wx", "sibling", Expect::Any).await;
    let v2 = put(store, "/w/b", "2", Expect::Any).await;
    let v3 = put(store, "/w/a", "3", Expect::Version(v1)).await;
    store.delete("/w/a", Expect::Version(v3)).await.unwrap();
    store.delete("/x/a", Expect::Any).await.unwrap();
    let v5 = put(store, "/w/z", "sentinel", Expect::Any).await;

    let put_event = |key: &str, value: &str, version| WatchEvent::Put {
        key: key.to_string(),
        value: b(value),
        version,
    };
    assert_eq!(next_event(&mut watch).await, put_event("/w/a", "1", v1));
    assert_eq!(next_event(&mut watch).await, put_event("/w/b", "2", v2));
    assert_eq!(next_event(&mut watch).await, put_event("/w/a", "3", v3));
    match next_event(&mut watch).await {
        WatchEvent::Delete { key, version } => {
            assert_eq!(key, "/w/a");
            assert!(v3 < version && version < v5, "delete version {version}");
        }
        other => panic!("expected delete of /w/a, got {other:?}"),
    }
    // Nothing from outside the prefix slipped in before the sentinel.
    assert_eq!(
        next_event(&mut watch).await,
        put_event("/w/z", "sentinel", v5)
    );
}

async fn concurrent_cas_race_counts_exactly(store: Arc<dyn MetadataStore>) {
    const TASKS: usize = 10;
    const INCREMENTS: usize = 5;
    put(&*store, "/counter", "0", Expect::Absent).await;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0usize;
            for _ in 0..INCREMENTS {
                loop {
                    let current = store.get("/counter").await.unwrap().unwrap();
                    let n: usize = std::str::from_utf8(&current.value)
                        .unwrap()
                        .parse()
                        .unwrap();
                    let next = b(&(n + 1).to_string());
                    match store
                        .put(
                            "/counter",
                            next,
                            PutOptions::expect(Expect::Version(current.version)),
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(e) if e.is_bad_version() => conflicts += 1,
                        Err(e) => panic!("increment failed: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = (TASKS * INCREMENTS).to_string();
    assert_eq!(value_of(&*store, "/counter").await, Some(b(&total)));
}

async fn session_keys_gone_after_close(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let session = store.session(SESSION_TTL).await.unwrap();
    assert!(session.is_alive());
    let mut watch = store.watch("/s/").await.unwrap();
    let version = put_in(store, "/s/eph", "mine", &session).await;
    put(store, "/s/durable", "stays", Expect::Any).await;
    assert_eq!(value_of(store, "/s/eph").await, Some(b("mine")));

    session.close().await.unwrap();
    assert!(!session.is_alive());
    assert_eq!(store.get("/s/eph").await.unwrap(), None);
    assert_eq!(value_of(store, "/s/durable").await, Some(b("stays")));

    assert!(
        matches!(next_event(&mut watch).await, WatchEvent::Put { version: v, .. } if v == version)
    );
    assert!(
        matches!(next_event(&mut watch).await, WatchEvent::Put { key, .. } if key == "/s/durable")
    );
    match next_event(&mut watch).await {
        WatchEvent::Delete { key, version: v } => {
            assert_eq!(key, "/s/eph");
            assert!(v > version);
        }
        other => panic!("expected delete of /s/eph, got {other:?}"),
    }
}

async fn session_keys_gone_after_abandon_and_ttl(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let abandoned = store.session(SESSION_TTL).await.unwrap();
    let kept = store.session(SESSION_TTL).await.unwrap();
    put_in(store, "/s/abandoned", "a", &abandoned).await;
    put_in(store, "/s/kept", "k", &kept).await;
    let mut watch = store.watch("/s/").await.unwrap();

    abandoned.abandon();
    // A crashed owner's keys linger until the TTL runs out.
    assert_eq!(value_of(store, "/s/abandoned").await, Some(b("a")));

    let started = tokio::time::Instant::now();
    match tokio::time::timeout(EXPIRY_TIMEOUT, watch.next()).await {
        Ok(Some(Ok(WatchEvent::Delete { key, .. }))) => assert_eq!(key, "/s/abandoned"),
        other => panic!("expected delete of /s/abandoned, got {other:?}"),
    }
    assert_eq!(store.get("/s/abandoned").await.unwrap(), None);
    eventually("abandoned session reported dead", || async {
        !abandoned.is_alive()
    })
    .await;

    // The other session outlived the TTL only because it was renewed.
    assert!(started.elapsed() >= SESSION_TTL / 2, "expired too early");
    tokio::time::sleep(SESSION_TTL).await;
    assert!(kept.is_alive());
    assert_eq!(value_of(store, "/s/kept").await, Some(b("k")));
    kept.close().await.unwrap();
}

async fn put_with_closed_session_fails(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let session = store.session(SESSION_TTL).await.unwrap();
    session.close().await.unwrap();
    let opts = PutOptions {
        expect: Expect::Any,
        session: Some(session.clone()),
    };
    match store.put("/s/late", b("x"), opts).await {
        Err(MetadataError::SessionExpired(id)) => assert_eq!(id, session.id()),
        other => panic!("expected SessionExpired, got {other:?}"),
    }
    assert_eq!(store.get("/s/late").await.unwrap(), None);
}

#[tokio::test]
async fn invalid_urls_are_rejected() {
    for url in [
        "",
        "memory",
        "nonsense://x",
        "rocksdb://",
        "etcd://",
        "etcd://,,/",
    ] {
        match metadata::open(url).await {
            Err(MetadataError::InvalidUrl { .. }) => {}
            other => panic!("{url:?}: expected InvalidUrl, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksdb_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = rocksdb_url(&dir, "db");
    let (v_a, v_b) = {
        let store = metadata::open(&url).await.unwrap();
        let v_a = put(&*store, "/p/a", "1", Expect::Absent).await;
        let v_b = put(&*store, "/p/b", "2", Expect::Any).await;
        let v_b = put(&*store, "/p/b", "3", Expect::Version(v_b)).await;
        put(&*store, "/p/gone", "x", Expect::Any).await;
        store.delete("/p/gone", Expect::Any).await.unwrap();
        (v_a, v_b)
    };
    let store = metadata::open(&url).await.unwrap();
    let listed: Vec<_> = store
        .list("/p/")
        .await
        .unwrap()
        .into_iter()
        .map(|kv| (kv.key, kv.value, kv.version))
        .collect();
    assert_eq!(
        listed,
        [
            ("/p/a".to_string(), b("1"), v_a),
            ("/p/b".to_string(), b("3"), v_b)
        ]
    );
    // The revision counter survived too: no version is ever handed out twice.
    let v_c = put(&*store, "/p/c", "4", Expect::Any).await;
    assert!(v_c > v_b + 1, "version {v_c} reused after reopen");
    put(&*store, "/p/b", "5", Expect::Version(v_b)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksdb_session_keys_gone_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = rocksdb_url(&dir, "db");
    let session = {
        let store = metadata::open(&url).await.unwrap();
        let session = store.session(Duration::from_secs(60)).await.unwrap();
        put_in(&*store, "/e/1", "eph", &session).await;
        put(&*store, "/e/2", "durable", Expect::Any).await;
        session
    };
    let store = metadata::open(&url).await.unwrap();
    assert_eq!(store.get("/e/1").await.unwrap(), None);
    assert_eq!(value_of(&*store, "/e/2").await, Some(b("durable")));
    // The old process's session means nothing to the new store.
    assert!(!session.is_alive());
    let opts = PutOptions {
        expect: Expect::Any,
        session: Some(session.clone()),
    };
    assert!(matches!(
        store.put("/e/3", b("x"), opts).await,
        Err(MetadataError::SessionExpired(_))
    ));
}
