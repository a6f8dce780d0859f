//! Tiered storage end to end: a real `strata standalone` whose cold tier is
//! a real Garage S3 server, driven by the official Python client and the
//! admin REST API.
//!
//! - 200 MB over several ledgers is offloaded, the bookies' copies are
//!   deleted, and a new subscription from earliest gets every message back
//!   byte-identical and in order (from the cold tier);
//! - offloading while a producer and a tailing consumer keep going loses
//!   and duplicates nothing;
//! - SIGKILL in the middle of an upload: nothing is marked offloaded
//!   without a complete verified copy, the restarted offloader finishes,
//!   and reconciliation leaves no orphaned object;
//! - retention by size and by time removes data from both tiers, and only
//!   consumed data.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use serde_json::{Value, json};
use strata_tests::fault::bounded;
use strata_tests::garage::Garage;
use strata_tests::python;
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;

const SCRIPT_LIMIT: Duration = Duration::from_secs(420);
const NS: &str = "public/default";

struct Cold {
    garage: Garage,
    prefix: String,
    s: StandaloneProcess,
    http: reqwest::Client,
    _dir: TempDir,
}

impl Cold {
    /// A standalone on Garage with small ledgers and a quick offloader.
    async fn start(prefix: &str, ledger_mb: u64) -> Cold {
        let garage = Garage::start().await.expect("start Garage");
        let dir = TempDir::new().unwrap();
        let url = garage.url(prefix);
        let ledger_mb = ledger_mb.to_string();
        let flags = [
            "--object-store",
            url.as_str(),
            "--managed-ledger-max-size-per-ledger-mb",
            ledger_mb.as_str(),
            "--managed-ledger-min-ledger-rollover-time",
            "0s",
            "--offload-scan-interval",
            "1s",
            "--offload-reconcile-interval",
            "2s",
            "--offload-orphan-grace",
            "0s",
        ];
        let s =
            StandaloneProcess::start_with_env(dir.path().join("data"), &flags, &garage.env()).await;
        Cold {
            garage,
            prefix: prefix.to_string(),
            s,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.s.admin_url());
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "{method} {path}: {status} {text}\n{}",
            self.s.log_tail()
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// The unlabelled samples of `/metrics`.
    async fn metric_values(&self) -> BTreeMap<String, f64> {
        let url = format!("{}/metrics", self.s.admin_url());
        let text = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.contains('{'))
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }

    fn topic_path(topic: &str) -> String {
        format!("/admin/v2/persistent/{NS}/{topic}")
    }

    /// Offload every closed ledger at once and delete the bookies' copies at once.
    async fn offload_everything(&self) {
        self.call(
            reqwest::Method::POST,
            &format!("/admin/v2/namespaces/{NS}/offloadPolicies"),
            Some(json!({
                "managedLedgerOffloadThresholdInBytes": 0,
                "managedLedgerOffloadDeletionLagInMillis": 0
            })),
        )
        .await;
    }

    async fn usage(&self, topic: &str) -> Value {
        self.get(&format!("{}/usage", Self::topic_path(topic)))
            .await
    }

    async fn ledgers(&self, topic: &str) -> Vec<Value> {
        let st = self
            .get(&format!("{}/internalStats", Self::topic_path(topic)))
            .await;
        st["ledgers"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until every ledger but the newest is offloaded and only cold.
    async fn wait_cold_only(&self, topic: &str, limit: Duration) -> u64 {
        let started = Instant::now();
        loop {
            let ledgers = self.ledgers(topic).await.len() as u64;
            let u = self.usage(topic).await;
            let cold_only = u["coldOnlyLedgers"].as_u64().unwrap_or(0);
            if ledgers >= 2 && cold_only == ledgers - 1 {
                return cold_only;
            }
            assert!(
                started.elapsed() < limit,
                "offload did not finish: {ledgers} ledgers, usage {u}\n{}",
                self.s.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The `…/{ledger}-{uuid}` directories in the bucket under our prefix.
    async fn object_bases(&self) -> BTreeSet<String> {
        let store = self.garage.object_store();
        let prefix = object_store::path::Path::from(self.prefix.as_str());
        let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
        objects
            .iter()
            .filter_map(|o| {
                let p = o.location.to_string();
                let (dir, last) = p.rsplit_once('/')?;
                (last == "data" || last == "index").then(|| dir.to_string())
            })
            .collect()
    }

    async fn script(&self, args: &[&str]) -> String {
        let mut all = vec![
            "--service-url".to_string(),
            self.s.service_url().to_string(),
            "--timeout".to_string(),
            (SCRIPT_LIMIT.as_secs() - 15).to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let run = python::run("cold_data.py", &all, SCRIPT_LIMIT).await;
        assert!(run.success(), "{}\n{}", run.report(), self.s.log_tail());
        run.output
    }
}

/// The ledger id of an object directory `…/{ledger}-{uuid}`.
fn ledger_of(base: &str) -> u64 {
    let dir = base.rsplit('/').next().unwrap_or_default();
    dir.split('-')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_mb_offloaded_and_read_back_from_the_cold_tier() {
    bounded("cold round trip", Duration::from_secs(900), async {
        let mut c = Cold::start("roundtrip", 32).await;
        let count = "200000";
        c.script(&["--mode", "produce", "--topic", "big", "--count", count])
            .await;
        c.offload_everything().await;
        let offloaded = c.wait_cold_only("big", Duration::from_secs(300)).await;
        assert!(
            offloaded >= 5,
            "200 MB in 32 MB ledgers: {offloaded} offloaded"
        );
        let ledgers = c.ledgers("big").await;
        assert!(
            ledgers[..ledgers.len() - 1]
                .iter()
                .all(|l| l["offloaded"] == json!(true)),
            "{ledgers:?}"
        );
        let usage = c.usage("big").await;
        let newest = ledgers.last().unwrap()["size"].as_u64().unwrap();
        assert_eq!(usage["hotBytes"].as_u64().unwrap(), newest, "{usage}");
        assert!(
            usage["coldBytes"].as_u64().unwrap() > 190_000_000,
            "{usage}"
        );
        // Every object in the bucket belongs to an offloaded ledger.
        assert_eq!(c.object_bases().await.len() as u64, offloaded);

        // The writes filled the broker's entry cache: unload the topic so
        // the reads must come from the cold tier.
        c.call(
            reqwest::Method::PUT,
            &format!("{}/unload", Cold::topic_path("big")),
            None,
        )
        .await;
        let out = c
            .script(&["--mode", "consume", "--topic", "big", "--count", count])
            .await;
        assert!(out.contains("consumed 200000"), "{out}");
        // The reads came from the cold tier.
        let ns = c.get(&format!("/admin/v2/namespaces/{NS}/usage")).await;
        assert!(
            ns["coldRequests"]["getBytes"].as_u64().unwrap() > 190_000_000,
            "{ns}"
        );
        let stats = c.get(&format!("{}/stats", Cold::topic_path("big"))).await;
        assert!(
            stats["offloadedStorageSize"].as_u64().unwrap() > 190_000_000,
            "{stats}"
        );
        // The tiered reader's own metrics: a scan that was fetched ahead.
        let metrics = c.metric_values().await;
        let m = |name: &str| metrics.get(name).copied().unwrap_or(-1.0);
        assert!(
            m("strata_cold_reader_get_bytes_total") > 190e6,
            "{metrics:?}"
        );
        assert!(
            m("strata_cold_read_ahead_blocks_total") > 0.0,
            "{metrics:?}"
        );
        assert!(m("strata_cold_cache_misses_total") >= 0.0, "{metrics:?}");
        assert!(m("strata_cold_read_ahead_hits_total") > 0.0, "{metrics:?}");
        // Scrub re-verifies every object.
        let scrub = c
            .call(
                reqwest::Method::POST,
                &format!("{}/offload/scrub", Cold::topic_path("big")),
                None,
            )
            .await;
        let results = scrub.as_array().unwrap();
        // The unload closed the ledger being written, which may have been
        // offloaded since.
        assert!(results.len() as u64 >= offloaded, "{scrub}");
        assert!(results.iter().all(|r| r["ok"] == json!(true)), "{scrub}");

        // A clean stop writes what the cold cache holds in memory to its
        // disk tier: after a restart, a new subscription reads the ledgers
        // again from there, not from the store.
        c.s.stop_cleanly().await;
        assert!(
            c.s.log()
                .contains("wrote the cold memory cache to the disk cache"),
            "{}",
            c.s.log_tail()
        );
        c.s.restart().await;
        let out = c
            .script(&[
                "--mode",
                "consume",
                "--topic",
                "big",
                "--count",
                count,
                "--subscription",
                "after-restart",
            ])
            .await;
        assert!(out.contains("consumed 200000"), "{out}");
        let metrics = c.metric_values().await;
        let m = |name: &str| metrics.get(name).copied().unwrap_or(-1.0);
        assert!(m("strata_cold_cache_disk_hits_total") > 0.0, "{metrics:?}");
        assert!(
            m("strata_cold_reader_get_bytes_total") < 20e6,
            "the restarted broker fetched the ledgers again: {metrics:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offload_while_producing_and_tailing_loses_and_duplicates_nothing() {
    bounded("offload under traffic", Duration::from_secs(600), async {
        let c = Cold::start("traffic", 2).await;
        c.offload_everything().await;
        let out = c
            .script(&[
                "--mode", "tail", "--topic", "live", "--count", "60000", "--rate", "4000",
            ])
            .await;
        assert!(out.contains("tailed 60000"), "{out}");
        let u = c.usage("live").await;
        assert!(
            u["offloadedLedgers"].as_u64().unwrap() >= 3,
            "offloads ran during the traffic: {u}"
        );
        c.wait_cold_only("live", Duration::from_secs(120)).await;
        let out = c
            .script(&[
                "--mode",
                "consume",
                "--topic",
                "live",
                "--count",
                "60000",
                "--subscription",
                "late",
            ])
            .await;
        assert!(out.contains("consumed 60000"), "{out}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_upload_marks_nothing_offloaded_and_leaves_no_orphan() {
    bounded("offloader crash", Duration::from_secs(900), async {
        let mut c = Cold::start("crash", 48).await;
        c.script(&["--mode", "produce", "--topic", "crash", "--count", "150000"])
            .await;
        let ledgers = c.ledgers("crash").await;
        assert!(ledgers.len() >= 3, "{ledgers:?}");
        let newest = ledgers.last().unwrap()["ledgerId"].as_u64().unwrap();
        // Manual offload of every closed ledger; kill once bytes are moving.
        c.call(
            reqwest::Method::PUT,
            &format!("{}/offload", Cold::topic_path("crash")),
            Some(json!({"ledgerId": newest, "entryId": 0})),
        )
        .await;
        let started = Instant::now();
        loop {
            let st = c
                .get(&format!("{}/offload", Cold::topic_path("crash")))
                .await;
            let done = st["bytesDone"].as_u64().unwrap_or(0);
            let total = st["bytesTotal"].as_u64().unwrap_or(0);
            if done > 0 && done < total {
                break;
            }
            assert!(
                st["status"] != json!("SUCCESS"),
                "finished before the kill: {st}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no progress: {st}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c.s.kill();
        c.s.restart().await;
        // Whatever is marked offloaded is complete and verifies.
        let scrub = c
            .call(
                reqwest::Method::POST,
                &format!("{}/offload/scrub", Cold::topic_path("crash")),
                None,
            )
            .await;
        assert!(
            scrub
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["ok"] == json!(true)),
            "{scrub}"
        );
        // The request survives the crash and the restarted offloader finishes it.
        let started = Instant::now();
        loop {
            let st = c
                .get(&format!("{}/offload", Cold::topic_path("crash")))
                .await;
            if st["status"] == json!("SUCCESS") {
                break;
            }
            assert!(st["status"] != json!("ERROR"), "{st}");
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "never finished: {st}\n{}",
                c.s.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let offloaded = c
            .ledgers("crash")
            .await
            .iter()
            .filter(|l| l["offloaded"] == json!(true))
            .count();
        assert_eq!(offloaded, ledgers.len() - 1);
        // Reconciliation (every 2 s, no grace) removes the killed upload's objects.
        let started = Instant::now();
        loop {
            let bases = c.object_bases().await;
            if bases.len() == offloaded {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "orphans remain: {bases:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let out = c
            .script(&["--mode", "consume", "--topic", "crash", "--count", "150000"])
            .await;
        assert!(out.contains("consumed 150000"), "{out}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_consumed_data_from_both_tiers_and_nothing_else() {
    bounded("retention", Duration::from_secs(900), async {
        let c = Cold::start("retention", 4).await;
        // A subscription at the start: its backlog must survive any retention.
        c.script(&["--mode", "produce", "--topic", "ret", "--count", "0"])
            .await;
        let sub = format!("{}/subscription/keeper", Cold::topic_path("ret"));
        c.call(
            reqwest::Method::PUT,
            &sub,
            Some(json!({"ledgerId": -1, "entryId": -1})),
        )
        .await;
        c.script(&["--mode", "produce", "--topic", "ret", "--count", "30000"])
            .await;
        c.offload_everything().await;
        let offloaded = c.wait_cold_only("ret", Duration::from_secs(180)).await;
        assert!(offloaded >= 4, "{offloaded}");
        let bases_before = c.object_bases().await;
        // Size retention with an unconsumed backlog: nothing goes.
        let retention = format!("/admin/v2/namespaces/{NS}/retention");
        c.call(
            reqwest::Method::POST,
            &retention,
            Some(json!({"retentionTimeInMinutes": -1, "retentionSizeInMB": 5})),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            c.object_bases().await,
            bases_before,
            "retention deleted unconsumed data"
        );
        // Size retention of 12 MB, then consume everything: about 12 MB stay.
        c.call(
            reqwest::Method::POST,
            &retention,
            Some(json!({"retentionTimeInMinutes": -1, "retentionSizeInMB": 12})),
        )
        .await;
        c.script(&[
            "--mode",
            "consume",
            "--topic",
            "ret",
            "--count",
            "30000",
            "--subscription",
            "keeper",
        ])
        .await;
        // Trimming takes ledgers out of the topic first, then deletes their
        // copies: wait for both.
        let started = Instant::now();
        let (remaining, bases) = loop {
            let ledgers = c.ledgers("ret").await;
            let size: u64 = ledgers.iter().map(|l| l["size"].as_u64().unwrap()).sum();
            let remaining: BTreeSet<u64> = ledgers
                .iter()
                .map(|l| l["ledgerId"].as_u64().unwrap())
                .collect();
            let bases = c.object_bases().await;
            let orphaned: Vec<&String> = bases
                .iter()
                .filter(|b| !remaining.contains(&ledger_of(b)))
                .collect();
            if size <= 12 << 20 && orphaned.is_empty() {
                break (remaining, bases);
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "size retention incomplete: {ledgers:?}, objects of deleted ledgers: {orphaned:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert!(
            bases.len() < bases_before.len(),
            "cold copies not deleted: {bases:?}"
        );
        // Within the size, offloaded ledgers stay, in both tiers' records.
        assert!(
            !bases.is_empty() && remaining.len() >= 2,
            "size retention deleted too much: {remaining:?} {bases:?}"
        );
        // What is left reads back, from some message on to the end.
        let out = c
            .script(&[
                "--mode",
                "consume",
                "--topic",
                "ret",
                "--count",
                "30000",
                "--subscription",
                "reader",
                "--from-any",
            ])
            .await;
        assert!(out.contains("consumed"), "{out}");
        // Time retention (one minute, Pulsar's unit) removes the rest of the
        // closed ledgers, and their cold copies.
        c.call(
            reqwest::Method::POST,
            &retention,
            Some(json!({"retentionTimeInMinutes": 1, "retentionSizeInMB": -1})),
        )
        .await;
        let started = Instant::now();
        loop {
            let ledgers = c.ledgers("ret").await;
            if ledgers.len() == 1 && c.object_bases().await.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(150),
                "time retention did nothing: {ledgers:?}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;
}

/// `strata perf cold-read` runs end to end, reports every figure (the
/// targets themselves are measured by hand on a quiet machine, not here)
/// and cleans up after itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_cold_read_reports_every_figure_and_cleans_up() {
    bounded("perf cold-read", Duration::from_secs(600), async {
        let c = Cold::start("perf", 8).await;
        let store = c.garage.url("perf");
        let out = tokio::time::timeout(
            Duration::from_secs(420),
            tokio::process::Command::new(strata_tests::bookie::strata_binary())
                .args([
                    "perf",
                    "cold-read",
                    "--url",
                    c.s.service_url(),
                    "--admin-url",
                    c.s.admin_url(),
                ])
                .args([
                    "--object-store",
                    store.as_str(),
                    "--size-mb",
                    "24",
                    "--floor",
                    "--first-message-probes",
                    "3",
                    "--probe-mb",
                    "2",
                    "--json",
                ])
                .envs(c.garage.env())
                .env("STRATA_LOG", "warn")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("perf cold-read finishes")
        .expect("run strata perf");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "perf cold-read failed:\n{}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.s.log_tail()
        );
        let r: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"));
        for field in [
            "offload_mb_per_sec",
            "cold_read_mb_per_sec",
            "cold_first_message_ms",
            "warm_read_mb_per_sec",
            "warm_first_message_ms",
            "raw_get_mb_per_sec",
            "raw_ranged_get_ms",
            "cold_vs_raw",
            "warm_vs_cold",
            "first_message_ms",
            "first_message_vs_ranged_get",
            "floor_mb_per_sec",
            "cold_vs_floor",
            "floor_vs_raw",
        ] {
            let v = r[field].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v > 0.0, "{field} = {v} in {r}");
        }
        assert!(r["data_bytes"].as_u64().unwrap() >= 24_000_000, "{r}");
        assert!(r["offloaded_bytes"].as_u64().unwrap() >= 24_000_000, "{r}");
        assert!(r["raw_bytes"].as_u64().unwrap() >= 24_000_000, "{r}");
        assert!(r["machine"]["cores"].as_u64().unwrap() >= 1, "{r}");
        // Each phase's machine CPU, a share stolen in [0, 1]; the longer
        // phases kept the machine measurably busy (the warm read of 24 MB may
        // fit between two of the kernel's 10 ms ticks).
        for phase in ["offload", "cold", "warm", "raw"] {
            let m = &r["machine_cpu"][phase];
            let busy = m["busy_cores"].as_f64().unwrap_or(-1.0);
            let steal = m["steal_share"].as_f64().unwrap_or(-1.0);
            let least = if phase == "warm" {
                0.0
            } else {
                f64::MIN_POSITIVE
            };
            assert!(busy >= least, "{phase} busy {busy} in {r}");
            assert!((0.0..=1.0).contains(&steal), "{phase} steal {steal} in {r}");
        }
        let runs = r["raw_get_runs_mb_per_sec"].as_array().unwrap();
        assert_eq!(runs.len(), 3, "{r}");
        let mut runs: Vec<f64> = runs.iter().map(|v| v.as_f64().unwrap()).collect();
        runs.sort_by(f64::total_cmp);
        assert_eq!(r["raw_get_mb_per_sec"].as_f64().unwrap(), runs[1], "{r}");
        let f = |k: &str| r[k].as_f64().unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        assert!(
            close(
                f("cold_vs_floor"),
                f("cold_read_mb_per_sec") / f("floor_mb_per_sec")
            ),
            "{r}"
        );
        assert!(
            close(
                f("floor_vs_raw"),
                f("floor_mb_per_sec") / f("raw_get_mb_per_sec")
            ),
            "{r}"
        );
        // The first message is judged on the probes' median.
        let mut probes: Vec<f64> = r["first_message_probes_ms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(probes.len(), 3, "{r}");
        assert!(probes.iter().all(|p| *p > 0.0), "{r}");
        probes.sort_by(f64::total_cmp);
        assert_eq!(f("first_message_ms"), probes[1], "{r}");
        assert!(
            close(
                f("first_message_vs_ranged_get"),
                f("first_message_ms") / f("raw_ranged_get_ms")
            ),
            "{r}"
        );
        // Its fresh topics are gone, and with it the objects the raw baseline
        // read (raw_bytes above): a run leaves nothing in the cold tier.
        let left = c.object_bases().await;
        assert!(left.is_empty(), "objects left after the run: {left:?}");
    })
    .await;
}
