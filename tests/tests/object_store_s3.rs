//! `ColdStore` against a real S3 server (Garage): credentials through
//! `aws-config`'s provider chain, the start-up probe and what it says when
//! the bucket, the credentials or the endpoint are wrong, and multipart
//! uploads.
//!
//! The credentials reach the chain the way an operator would supply them: a
//! shared credentials file with named profiles. The process environment is
//! shared by the tests of this binary, so it is set once (see [`chain_env`])
//! to the same values for all of them, and every Garage imports the same
//! fixed keys; tests pick a profile with the URL's `profile=` parameter.

use std::sync::OnceLock;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use strata_offloader::OffloadError;
use strata_offloader::store::ColdStore;
use strata_tests::garage::Garage;

/// The key every Garage of this binary imports, readable and writable.
const KEY_ID: &str = "GK5ca1ab1e0ddba11b0a710ad5";
const SECRET: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";
/// A second key that may only read.
const READ_ONLY_KEY_ID: &str = "GK00000000000000000000beef";
const READ_ONLY_SECRET: &str = "0000000000000000000000000000000000000000000000000000000000001234";

/// The default profile (`AWS_PROFILE`) holds the good key.
const PROFILE: &str = "strata-test";

/// Points the provider chain at a credentials file of this test binary and
/// clears everything else it would look at, once per process.
fn chain_env() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("object_store_s3");
        std::fs::create_dir_all(&dir).expect("create credentials dir");
        let credentials = format!(
            "[{PROFILE}]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n\n\
             [strata-bad-secret]\naws_access_key_id = {KEY_ID}\n\
             aws_secret_access_key = {READ_ONLY_SECRET}\n\n\
             [strata-unknown-key]\naws_access_key_id = GK0123456789abcdef01234567\n\
             aws_secret_access_key = {SECRET}\n\n\
             [strata-read-only]\naws_access_key_id = {READ_ONLY_KEY_ID}\n\
             aws_secret_access_key = {READ_ONLY_SECRET}\n"
        );
        // Several test processes (nextest) may write it at once: same
        // content, atomic rename.
        let tmp = dir.join(format!("credentials.{}", std::process::id()));
        std::fs::write(&tmp, credentials).expect("write credentials");
        std::fs::rename(&tmp, dir.join("credentials")).expect("rename credentials");
        std::fs::write(dir.join("config"), "").expect("write config");
        // SAFETY: every test calls this first and waits on the OnceLock, so
        // no test thread of this binary reads the environment meanwhile.
        unsafe {
            for var in [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_ROLE_ARN",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_REGION",
                "AWS_DEFAULT_REGION",
            ] {
                std::env::remove_var(var);
            }
            std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", dir.join("credentials"));
            std::env::set_var("AWS_CONFIG_FILE", dir.join("config"));
            std::env::set_var("AWS_PROFILE", PROFILE);
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
    });
}

async fn garage() -> Garage {
    chain_env();
    let g = Garage::start().await.expect("start garage");
    g.import_key(KEY_ID, SECRET).await.expect("import key");
    g.cli(&["key", "import", "--yes", READ_ONLY_KEY_ID, READ_ONLY_SECRET])
        .await
        .expect("import read-only key");
    g.cli(&[
        "bucket",
        "allow",
        "--read",
        garage_bucket(),
        "--key",
        READ_ONLY_KEY_ID,
    ])
    .await
    .expect("allow read-only key");
    g
}

fn garage_bucket() -> &'static str {
    strata_tests::garage::BUCKET
}

/// Deterministic bytes that differ from offset to offset.
fn bytes(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

async fn probe_failure(url: &str) -> (&'static str, String) {
    let cs = ColdStore::open(url).await.expect("open");
    match cs.probe().await {
        Err(OffloadError::Probe { step, reason }) => {
            eprintln!("probe of {url} failed at {step}: {reason}");
            (step, reason)
        }
        other => panic!("probe of {url}: expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn probe_passes_and_objects_land_under_the_prefix() {
    let g = garage().await;
    let url = g.url("cluster1/cold");
    let cs = ColdStore::open(&url).await.expect("open");
    assert_eq!(cs.url(), url, "the canonical form of the harness URL");
    cs.probe().await.expect("probe");

    let data = bytes(10_000, 1);
    let rel = "public/default/t/17-abc/data";
    cs.store()
        .put(&cs.path(rel), data.clone().into())
        .await
        .expect("put");
    let got = cs.store().get(&cs.path(rel)).await.unwrap().bytes().await;
    assert_eq!(got.unwrap(), data);
    let listed: Vec<_> = cs
        .store()
        .list(Some(cs.prefix()))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("list");
    assert_eq!(listed, vec![format!("cluster1/cold/{rel}")]);

    // Seen from outside: the key is under the prefix, and the probe left
    // nothing behind.
    let raw = g.object_store();
    let all: Vec<_> = raw
        .list(None)
        .map_ok(|m| (m.location.to_string(), m.size))
        .try_collect()
        .await
        .expect("list bucket");
    assert_eq!(all, vec![(format!("cluster1/cold/{rel}"), 10_000)]);
}

#[tokio::test]
async fn wrong_credentials_fail_the_probe_at_put() {
    let g = garage().await;
    let (step, reason) = probe_failure(&format!("{}&profile=strata-bad-secret", g.url("p"))).await;
    assert_eq!(step, "put", "{reason}");
    assert!(reason.contains("wrong credentials"), "{reason}");
    assert!(
        !reason.contains(READ_ONLY_SECRET),
        "the reason shows the secret: {reason}"
    );

    let (step, reason) = probe_failure(&format!("{}&profile=strata-unknown-key", g.url("p"))).await;
    assert_eq!(step, "put", "{reason}");
    assert!(reason.contains("wrong credentials"), "{reason}");

    // A profile that does not exist: the chain finds nothing.
    let (step, reason) = probe_failure(&format!("{}&profile=strata-nobody", g.url("p"))).await;
    assert_eq!(step, "put", "{reason}");
    assert!(reason.contains("no credentials"), "{reason}");

    // Nothing was written by any of them.
    let all: Vec<_> = g.object_store().list(None).try_collect().await.unwrap();
    assert!(all.is_empty(), "{all:?}");
}

#[tokio::test]
async fn read_only_credentials_are_permission_denied() {
    let g = garage().await;
    let (step, reason) = probe_failure(&format!("{}&profile=strata-read-only", g.url("p"))).await;
    assert_eq!(step, "put", "{reason}");
    assert!(reason.contains("permission denied"), "{reason}");
}

#[tokio::test]
async fn missing_bucket_is_named() {
    let g = garage().await;
    let (step, reason) = probe_failure(&g.url_in("no-such-bucket", "p")).await;
    assert_eq!(step, "put", "{reason}");
    assert!(
        reason.contains("\"no-such-bucket\" does not exist"),
        "{reason}"
    );

    // Once it exists (and the key may use it), the same URL probes fine.
    g.create_bucket("no-such-bucket").await.unwrap();
    g.allow("no-such-bucket", KEY_ID).await.unwrap();
    let cs = ColdStore::open(&g.url_in("no-such-bucket", "p"))
        .await
        .unwrap();
    cs.probe().await.expect("probe after creating the bucket");
}

#[tokio::test]
async fn unreachable_endpoint_is_reported() {
    chain_env();
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("s3://strata/p?endpoint=http://127.0.0.1:{port}&region=garage");
    // A hang guard, not a timing assertion: the probe bounds itself.
    let (step, reason) =
        tokio::time::timeout(std::time::Duration::from_secs(300), probe_failure(&url))
            .await
            .expect("the probe of an unreachable endpoint did not end");
    assert_eq!(step, "put", "{reason}");
    assert!(reason.contains("unreachable"), "{reason}");
    assert!(reason.contains(&format!("127.0.0.1:{port}")), "{reason}");
}

#[tokio::test]
async fn unresolvable_endpoint_host_is_reported() {
    chain_env();
    // `.invalid` never resolves (RFC 2606).
    let url = "s3://strata/p?endpoint=http://strata-no-such-host.invalid:9000&region=garage";
    let (step, reason) =
        tokio::time::timeout(std::time::Duration::from_secs(300), probe_failure(url))
            .await
            .expect("the probe of an unresolvable endpoint did not end");
    assert_eq!(step, "put", "{reason}");
    assert!(reason.contains("does not resolve"), "{reason}");
}

#[tokio::test]
async fn multipart_upload_over_10_mib_round_trips() {
    let g = garage().await;
    let cs = ColdStore::open(&g.url("mp")).await.expect("open");
    const PART: usize = 5 * 1024 * 1024;
    let parts = [bytes(PART, 2), bytes(PART, 3), bytes(1_234_567, 4)];
    let whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let path = cs.path("big/data");
    let mut upload = cs.store().put_multipart(&path).await.expect("start");
    for part in &parts {
        upload
            .put_part(PutPayload::from(part.clone()))
            .await
            .expect("part");
    }
    upload.complete().await.expect("complete");

    let raw = g.object_store();
    let at = Path::from("mp/big/data");
    assert_eq!(raw.head(&at).await.unwrap().size, whole.len() as u64);
    let got = raw.get(&at).await.unwrap().bytes().await.unwrap();
    assert!(
        got == whole,
        "the object read back differs from what was uploaded"
    );
    // A range across the first part boundary, through the ColdStore.
    let range = (PART - 100) as u64..(PART + 100) as u64;
    let got = cs.store().get_range(&path, range.clone()).await.unwrap();
    assert_eq!(got, whole[PART - 100..PART + 100]);
}

/// A multipart part whose answer the store holds back past the request
/// timeout is sent again, and the upload completes and verifies. Before
/// parts had a deadline of their own, the uploader gave up on a part after
/// exactly one request timeout, as the store's own timeout fired, so one
/// stall of the store failed the whole offload.
#[tokio::test]
async fn a_part_the_store_stalls_on_is_sent_again() {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use strata_offloader::retry::RetryPolicy;
    use strata_offloader::store::StoreOptions;
    use strata_offloader::{IoSink, LedgerHeader, UploadOptions, upload_ledger, verify};
    use strata_tests::stall_proxy::StallProxy;

    let g = garage().await;
    let upstream = g.endpoint().trim_start_matches("http://").parse().unwrap();
    // The second part's answer is held for 4 s; requests time out after 1 s.
    let proxy = StallProxy::start(
        upstream,
        &["PUT /", "partNumber=2&"],
        1,
        Duration::from_secs(4),
    )
    .await
    .expect("proxy");
    let url = format!(
        "s3://{}/stall?endpoint=http://{}&region={}",
        g.bucket(),
        proxy.address(),
        g.region()
    );
    let timeout = Duration::from_secs(1);
    let cs = ColdStore::open_with(
        &url,
        StoreOptions {
            request_timeout: timeout,
            ..StoreOptions::default()
        },
    )
    .await
    .expect("open");
    let sent: Vec<(u64, Bytes)> = (0..24).map(|i| (i, bytes(512 << 10, 100 + i))).collect();
    let header = LedgerHeader {
        ledger_id: 7,
        managed_ledger: "public/default/persistent/stall".into(),
        entries: sent.len() as u64,
        payload_bytes: sent.iter().map(|(_, b)| b.len() as u64).sum(),
        created_ms: 1_700_000_000_000,
        closed_ms: Some(1_700_000_001_000),
        offloaded_ms: 1_700_000_002_000,
        properties: BTreeMap::new(),
    };
    let opts = UploadOptions {
        part_size: 5 << 20,
        max_parallel_parts: 2,
        retry: RetryPolicy {
            max_retries: 3,
            request_timeout: timeout,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
        },
        ..UploadOptions::default()
    };
    let objects = upload_ledger(
        cs.store(),
        &cs.path("t/7"),
        &header,
        futures::stream::iter(sent.clone().into_iter().map(Ok)),
        &opts,
        &IoSink::default(),
        &|_| {},
    )
    .await
    .expect("the upload survives one stalled part");
    assert_eq!(proxy.stalled(), 1, "the proxy held back one part");
    verify(cs.store(), &objects, &IoSink::default())
        .await
        .expect("the object verifies");
    let stored = g
        .object_store()
        .head(&Path::parse(&objects.data_key).unwrap())
        .await
        .unwrap();
    assert_eq!(stored.size, objects.data_size);
}

/// Request bodies go out as `UNSIGNED-PAYLOAD` by default (the offloader
/// checks every block it wrote by reading it back) and signed with their
/// SHA-256 when asked for; Garage takes both, probe and multipart included.
/// A proxy drops the first request that carries the unsigned marker (the
/// client sends it again), which is how the test sees what went on the wire.
#[tokio::test]
async fn payloads_are_unsigned_unless_signing_is_asked_for() {
    use strata_offloader::store::StoreOptions;
    use strata_tests::stall_proxy::StallProxy;

    let g = garage().await;
    let upstream = g.endpoint().trim_start_matches("http://").parse().unwrap();
    for sign_payload in [false, true] {
        let proxy = StallProxy::start(
            upstream,
            &["PUT /", "UNSIGNED-PAYLOAD"],
            1,
            std::time::Duration::from_millis(10),
        )
        .await
        .expect("proxy");
        let url = format!(
            "s3://{}/signing-{sign_payload}?endpoint=http://{}&region={}",
            g.bucket(),
            proxy.address(),
            g.region()
        );
        let options = StoreOptions {
            sign_payload,
            ..StoreOptions::default()
        };
        let cs = ColdStore::open_with(&url, options).await.expect("open");
        cs.probe().await.expect("probe");
        let data = bytes(6 << 20, 9);
        let path = cs.path("obj/data");
        cs.store()
            .put(&path, data.clone().into())
            .await
            .expect("put");
        let got = cs.store().get(&path).await.unwrap().bytes().await.unwrap();
        assert!(got == data, "sign_payload={sign_payload}: object differs");
        let unsigned_seen = proxy.stalled();
        if sign_payload {
            assert_eq!(unsigned_seen, 0, "a signed store sent an unsigned PUT");
        } else {
            assert_eq!(unsigned_seen, 1, "the default store's PUTs were signed");
        }
    }
}
