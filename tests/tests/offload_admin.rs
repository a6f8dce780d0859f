//! The cold tier's admin surface and services as users meet them:
//! - the namespace offload paths of the REST API (Pulsar's names), with
//!   their validation errors;
//! - `strata admin topics offload --wait | offload-status | scrub | usage`
//!   against a standalone on its default cold tier (a local directory),
//!   including a scrub that finds a corrupted object;
//! - a standalone whose object store is unusable does not start, and says why;
//! - two `strata offloader` processes on one etcd share the topics: every
//!   ledger is offloaded once, and the bookies' copies go.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use serde_json::{Value, json};
use strata_common::metadata::{self, Expect};
use strata_ledger::{ClientConfig, LedgerClient};
use strata_managed_ledger::{ManagedLedgerConfig, ManagedLedgerFactory};
use strata_offloader::keys;
use strata_offloader::records::OffloadRecord;
use strata_tests::admin::{standalone_until_exit, strata_admin};
use strata_tests::bookie::{BookieProcess, strata_binary};
use strata_tests::etcd::EtcdServer;
use strata_tests::fault::bounded;
use strata_tests::garage::Garage;
use strata_tests::process::ServerProcess;
use strata_tests::python;
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;

const LIMIT: Duration = Duration::from_secs(300);

async fn call(
    s: &StandaloneProcess,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", s.admin_url()));
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_offload_paths_store_validate_and_answer() {
    bounded("offload REST", LIMIT, async {
        let dir = TempDir::new().unwrap();
        let s = StandaloneProcess::start_in(&dir).await;
        let ns = "/admin/v2/namespaces/public/default";
        let get = |p: &'static str| call(&s, reqwest::Method::GET, p, None);
        assert_eq!(get("/admin/v2/namespaces/public/default/offloadPolicies").await, (200, Value::Null));
        assert_eq!(get("/admin/v2/namespaces/public/default/offloadThreshold").await, (200, json!(-1)));

        let body = r#"{"managedLedgerOffloadDriver":"aws-s3","s3ManagedLedgerOffloadBucket":"b",
            "managedLedgerOffloadThresholdInBytes":1048576,"managedLedgerOffloadDeletionLagInMillis":5000,
            "s3ManagedLedgerOffloadRegion":"eu-1","offloadersDirectory":"./offloaders"}"#;
        let (st, _) = call(&s, reqwest::Method::POST, &format!("{ns}/offloadPolicies"), Some(body)).await;
        assert_eq!(st, 204);
        let (_, p) = get("/admin/v2/namespaces/public/default/offloadPolicies").await;
        assert_eq!(p["s3ManagedLedgerOffloadBucket"], "b");
        assert_eq!(p["managedLedgerOffloadThresholdInBytes"], 1048576);
        // Fields Strata does not use are kept as given.
        assert_eq!(p["offloadersDirectory"], "./offloaders");
        assert_eq!(get("/admin/v2/namespaces/public/default/offloadThreshold").await, (200, json!(1048576)));
        assert_eq!(get("/admin/v2/namespaces/public/default/offloadDeletionLagMs").await, (200, json!(5000)));

        // Setting a threshold keeps the policies in step, as Pulsar does.
        let (st, _) = call(&s, reqwest::Method::PUT, &format!("{ns}/offloadThreshold"), Some("2048")).await;
        assert_eq!(st, 204);
        let (_, p) = get("/admin/v2/namespaces/public/default/offloadPolicies").await;
        assert_eq!(p["managedLedgerOffloadThresholdInBytes"], 2048);
        let (st, _) = call(&s, reqwest::Method::PUT, &format!("{ns}/offloadThresholdInSeconds"), Some("\"60\"")).await;
        assert_eq!(st, 204);
        assert_eq!(get("/admin/v2/namespaces/public/default/offloadThresholdInSeconds").await, (200, json!(60)));
        let (st, _) = call(&s, reqwest::Method::DELETE, &format!("{ns}/offloadDeletionLagMs"), None).await;
        assert_eq!(st, 204);
        assert_eq!(get("/admin/v2/namespaces/public/default/offloadDeletionLagMs").await, (200, Value::Null));

        // Bad bodies: 400 naming the field.
        for (path, body, field) in [
            ("offloadPolicies", r#"{"managedLedgerOffloadThresholdInBytes":-5}"#, "managedLedgerOffloadThresholdInBytes"),
            ("offloadPolicies", r#"{"managedLedgerOffloadDriver":"tape"}"#, "managedLedgerOffloadDriver"),
            ("offloadPolicies", r#"{"managedLedgerOffloadDriver":"aws-s3"}"#, "managedLedgerOffloadDriver"),
            ("offloadPolicies", r#"{"managedLedgerOffloadThresholdInSeconds":"soon"}"#, "managedLedgerOffloadThresholdInSeconds"),
            ("offloadThreshold", "-2", "offload_threshold"),
            ("offloadThreshold", "\"lots\"", "offload_threshold"),
            ("offloadDeletionLagMs", "{}", "offload_deletion_lag_ms"),
        ] {
            let method = if path == "offloadPolicies" { reqwest::Method::POST } else { reqwest::Method::PUT };
            let (st, v) = call(&s, method, &format!("{ns}/{path}"), Some(body)).await;
            assert_eq!(st, 400, "{path} {body}: {v}");
            assert!(v["reason"].as_str().unwrap_or("").contains(field), "{path} {body}: {v}");
        }
        // Unknown namespace: 404.
        let (st, _) = call(&s, reqwest::Method::GET, "/admin/v2/namespaces/public/nope/offloadPolicies", None).await;
        assert_eq!(st, 404);
        // Removal.
        let (st, _) = call(&s, reqwest::Method::DELETE, &format!("{ns}/removeOffloadPolicies"), None).await;
        assert_eq!(st, 204);
        assert_eq!(get("/admin/v2/namespaces/public/default/offloadPolicies").await, (200, Value::Null));
        // A topic that does not exist cannot be offloaded.
        let (st, _) = call(&s, reqwest::Method::PUT, "/admin/v2/persistent/public/default/ghost/offload", Some(r#"{"ledgerId":1,"entryId":0}"#)).await;
        assert_eq!(st, 404);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_offloads_with_progress_and_scrub_finds_corruption() {
    bounded("offload CLI", LIMIT, async {
        let dir = TempDir::new().unwrap();
        let s = StandaloneProcess::start_with(
            dir.path().join("data"),
            &[
                "--managed-ledger-max-size-per-ledger-mb",
                "1",
                "--managed-ledger-min-ledger-rollover-time",
                "0s",
            ],
        )
        .await;
        let args = [
            "--service-url",
            s.service_url(),
            "--timeout",
            "100",
            "--mode",
            "produce",
            "--topic",
            "cli",
            "--count",
            "5000",
        ];
        let run = python::run("cold_data.py", &args, Duration::from_secs(120)).await;
        assert!(run.success(), "{}", run.report());
        let run_admin = |extra: &'static [&'static str]| {
            let url = s.admin_url().to_string();
            async move {
                let r = strata_admin(&url, extra).await;
                (r.code, r.stdout, r.stderr)
            }
        };
        let (code, out, err) = run_admin(&["topics", "offload-status", "cli"]).await;
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.contains("NOT_RUN"), "{out}");
        let (code, out, err) = run_admin(&["topics", "offload", "cli", "--wait"]).await;
        assert_eq!(code, Some(0), "{out}{err}\n{}", s.log_tail());
        assert!(out.contains("SUCCESS"), "{out}");
        assert!(err.contains("ledgers"), "progress lines on stderr: {err}");
        let (code, out, _) = run_admin(&["--json", "topics", "usage", "cli"]).await;
        assert_eq!(code, Some(0));
        let usage: Value = serde_json::from_str(&out).unwrap();
        let offloaded = usage["offloadedLedgers"].as_u64().unwrap();
        // Every ledger but the one being written (how many there are
        // depends on the client's batching).
        let (_, st) = call(
            &s,
            reqwest::Method::GET,
            "/admin/v2/persistent/public/default/cli/internalStats",
            None,
        )
        .await;
        let ledgers = st["ledgers"].as_array().unwrap();
        assert!(ledgers.len() >= 2, "{st}");
        assert_eq!(offloaded, ledgers.len() as u64 - 1, "{usage}\n{st}");
        let (code, out, err) = run_admin(&["topics", "scrub", "cli"]).await;
        assert_eq!(code, Some(0), "{out}{err}");
        assert_eq!(out.matches(" ok").count() as u64, offloaded, "{out}");

        // Flip one byte of one data object on disk: scrub reports it, exit 1.
        let cold = dir.path().join("data").join("cold");
        let data = walk(&cold)
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n == "data"))
            .expect("a data object");
        let mut bytes = std::fs::read(&data).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&data, &bytes).unwrap();
        let (code, out, err) = run_admin(&["topics", "scrub", "cli"]).await;
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(
            out.contains("BAD") && err.contains("failed verification"),
            "{out}{err}"
        );
        let (code, out, _) = run_admin(&["namespaces", "usage", "public/default"]).await;
        assert_eq!(code, Some(0));
        assert!(
            out.contains("coldBytes") || out.contains("cold_bytes") || out.contains("coldRequests"),
            "{out}"
        );
    })
    .await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_with_an_unusable_object_store_says_why() {
    bounded("bad store", LIMIT, async {
        let dir = TempDir::new().unwrap();
        let run = standalone_until_exit(
            &dir.path().join("data"),
            &[
                "--object-store",
                "s3://strata?endpoint=http://127.0.0.1:1&region=x",
            ],
            &[
                ("AWS_ACCESS_KEY_ID", "GKtest"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
        )
        .await;
        let (code, out, err) = (run.code, run.stdout, run.stderr);
        assert_ne!(code, Some(0), "{out}{err}");
        assert!(
            err.contains("probe") && err.contains("unreachable"),
            "{err}"
        );
        assert!(!out.contains("strata standalone ready"), "{out}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_offloader_processes_share_the_topics() {
    bounded("two offloaders", LIMIT, async {
        let dir = TempDir::new().unwrap();
        let etcd = EtcdServer::start().await.expect("etcd");
        let garage = Garage::start().await.expect("garage");
        let _bookie = BookieProcess::start(dir.path().join("bookie"), &etcd.url(), &[]).await;
        let store = strata_common::metadata::open(&etcd.url()).await.unwrap();
        let client = LedgerClient::new(store.clone(), ClientConfig::default());
        // Offload every closed ledger at once; no deletion lag.
        let policies = json!({"offload_threshold": 0, "offload_deletion_lag_ms": 0});
        metadata::put_json(
            store.as_ref(),
            &strata_common::paths::namespace("public", "default"),
            &policies,
            Expect::Any,
        )
        .await
        .unwrap();
        let factory = ManagedLedgerFactory::new(
            client.clone(),
            ManagedLedgerConfig {
                max_entries_per_ledger: 20,
                min_ledger_age_for_rollover: Duration::ZERO,
                ..ManagedLedgerConfig::default()
            },
            0,
        );
        let mut closed = BTreeSet::new();
        for t in 0..6 {
            let name = format!("public/default/persistent/shared-{t}");
            let ml = factory.open(&name).await.unwrap();
            let mut last = None;
            for i in 0..100u32 {
                let f = ml
                    .add_entry(Bytes::from(format!("{t}-{i}").repeat(50)))
                    .await
                    .unwrap();
                last = Some(f);
            }
            last.unwrap().await.unwrap();
            let current = ml.current_ledger().await;
            for l in ml.stats().ledgers {
                if Some(l.ledger_id) != current && l.entries > 0 {
                    closed.insert((name.clone(), l.ledger_id));
                }
            }
        }
        assert!(closed.len() >= 24, "{closed:?}");

        let url = garage.url("shared");
        let mut offloaders = Vec::new();
        for i in 0..2 {
            let args: Vec<OsString> = [
                "offloader",
                "--metadata-url",
                &etcd.url(),
                "--object-store",
                &url,
                "--id",
                &format!("off-{i}"),
                "--offload-scan-interval",
                "1s",
                "--offload-orphan-grace",
                "0s",
                "--offload-reconcile-interval",
                "2s",
            ]
            .iter()
            .map(OsString::from)
            .collect();
            let mut p = ServerProcess::new(
                format!("offloader {i}"),
                strata_binary(),
                args,
                "offloader running",
                dir.path().join(format!("offloader-{i}.log")),
            )
            .with_envs(&garage.env());
            p.spawn_and_wait().await.expect("offloader starts");
            offloaders.push(p);
        }
        // Every closed ledger gets one complete record and loses its bookie copy.
        let started = Instant::now();
        let records = loop {
            let records: Vec<OffloadRecord> = store
                .list(keys::LEDGERS)
                .await
                .unwrap()
                .iter()
                .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
                .collect();
            let done: BTreeSet<(String, u64)> = records
                .iter()
                .filter(|r| r.is_complete() && r.bookie_deleted_ms.is_some())
                .map(|r| (r.managed_ledger.clone(), r.ledger_id))
                .collect();
            if done == closed {
                break records;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{} of {} offloaded\n{}\n{}",
                done.len(),
                closed.len(),
                offloaders[0].log_tail(),
                offloaders[1].log_tail()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        for (_, id) in &closed {
            assert!(
                client.metadata(*id).await.is_err(),
                "ledger {id} still on bookies"
            );
        }
        // One upload per ledger in the bucket (after reconciliation).
        let objects: Vec<_> = garage
            .object_store()
            .list(None)
            .try_collect()
            .await
            .unwrap();
        let bases: BTreeSet<String> = objects
            .iter()
            .filter_map(|o| {
                o.location
                    .as_ref()
                    .rsplit_once('/')
                    .map(|(d, _)| d.to_string())
            })
            .collect();
        assert_eq!(bases.len(), closed.len(), "{bases:?}");
        let by: BTreeSet<&str> = records.iter().map(|r| r.offloader.as_str()).collect();
        println!("offloaded by {by:?}");
    })
    .await;
}
