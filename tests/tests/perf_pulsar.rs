//! `strata perf produce | consume | e2e | topics | tenants` against a real
//! `strata standalone`: short runs with `--json`, checking that every
//! report field is there and consistent, that e2e consumes exactly what it
//! produced, and that nothing failed. Speed is never asserted here: the
//! benchmark reports it.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use strata_tests::bookie::strata_binary;
use strata_tests::fault::bounded;
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;

const LIMIT: Duration = Duration::from_secs(300);

/// Runs `strata perf ARGS`; returns (exit success, stdout, stderr).
async fn perf(args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(strata_binary())
            .arg("perf")
            .args(args)
            .env("STRATA_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("strata perf finishes within 180 s")
    .expect("run strata perf");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `strata perf ARGS --json`, which must succeed; returns the report.
async fn perf_json(s: &StandaloneProcess, args: &[&str]) -> Value {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--json");
    let (ok, stdout, stderr) = perf(&all).await;
    assert!(
        ok,
        "strata perf {args:?} failed:\n{stderr}\n{stdout}\n{}",
        s.log_tail()
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}"))
}

fn f64_at(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {v:#}"))
}

fn u64_at(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count in {v:#}"))
}

fn check_latency(v: &Value, field: &str) {
    let (p50, p99, p999, max) = (
        f64_at(v, &[field, "p50"]),
        f64_at(v, &[field, "p99"]),
        f64_at(v, &[field, "p999"]),
        f64_at(v, &[field, "max"]),
    );
    assert!(p50 > 0.0, "{field}.p50 = {p50} in {v:#}");
    assert!(
        p50 <= p99 && p99 <= p999 && p999 <= max,
        "{field} percentiles out of order in {v:#}"
    );
}

fn check_no_errors(v: &Value) {
    assert_eq!(u64_at(v, "errors"), 0, "errors in {v:#}");
    assert_eq!(v["error_samples"], Value::Array(vec![]), "{v:#}");
}

fn check_machine(v: &Value) {
    assert!(f64_at(v, &["machine", "cores"]) >= 1.0, "{v:#}");
    assert!(f64_at(v, &["machine", "memory_bytes"]) > 0.0, "{v:#}");
    assert!(
        v["machine"]["kernel"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );
    assert!(v["machine"]["cpu_model"].is_string(), "{v:#}");
}

/// The raw disk figures and the ratios derived from them.
fn check_raw(v: &Value, dir: &Path) {
    assert_eq!(v["raw"]["dir"].as_str(), Some(dir.to_str().unwrap()));
    assert!(f64_at(v, &["raw", "fdatasync_mb_per_sec"]) > 0.0, "{v:#}");
    check_latency(&v["raw"], "fdatasync_latency_ms");
    assert!(
        f64_at(v, &["raw", "buffered_fdatasync_mb_per_sec"]) > 0.0,
        "{v:#}"
    );
    check_latency(&v["raw"], "buffered_fdatasync_latency_ms");
    assert!(
        f64_at(v, &["raw", "overwrite_fdatasync_mb_per_sec"]) > 0.0,
        "{v}"
    );
    check_latency(&v["raw"], "overwrite_fdatasync_latency_ms");
    let publish = f64_at(v, &["publish", "mb_per_sec"]);
    let raw = f64_at(v, &["raw", "fdatasync_mb_per_sec"]);
    let ratio = f64_at(v, &["ratios", "throughput_to_raw"]);
    assert!(
        (ratio - publish / raw).abs() < 1e-6 * ratio.max(1.0),
        "{v:#}"
    );
    let p99_ratio = f64_at(v, &["ratios", "publish_p99_to_raw_p99"]);
    let expected = f64_at(v, &["publish_latency_ms", "p99"])
        / f64_at(v, &["raw", "fdatasync_latency_ms", "p99"]);
    assert!(
        (p99_ratio - expected).abs() < 1e-6 * expected.max(1.0),
        "{v:#}"
    );
    // The baseline cleans up after itself.
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn check_e2e(v: &Value) {
    check_no_errors(v);
    assert_eq!(v["command"], "e2e");
    let produced = u64_at(v, "produced");
    assert!(produced > 0, "{v:#}");
    assert_eq!(
        u64_at(v, "consumed"),
        produced,
        "consumed != produced: {v:#}"
    );
    assert!(f64_at(v, &["publish", "msg_per_sec"]) > 0.0, "{v:#}");
    assert!(f64_at(v, &["consume", "msg_per_sec"]) > 0.0, "{v:#}");
    check_latency(v, "publish_latency_ms");
    check_latency(v, "end_to_end_latency_ms");
    check_machine(v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_produce_then_consume() {
    bounded(
        "perf_produce_then_consume",
        LIMIT,
        Box::pin(async {
            let dir = TempDir::new().unwrap();
            let s = StandaloneProcess::start_in(&dir).await;
            let raw_dir = dir.path().join("raw");
            std::fs::create_dir_all(&raw_dir).unwrap();
            let prefix = "persistent://public/default/pc";
            let produce = perf_json(
                &s,
                &[
                    "produce",
                    "--url",
                    s.service_url(),
                    "--topics",
                    "2",
                    "--producers-per-topic",
                    "2",
                    "--topic-prefix",
                    prefix,
                    "--size",
                    "512",
                    "--rate",
                    "1000",
                    "--batch",
                    "50",
                    "--warmup",
                    "1s",
                    "--duration",
                    "2s",
                    "--raw-dir",
                    raw_dir.to_str().unwrap(),
                    "--raw-duration",
                    "300ms",
                ],
            )
            .await;
            check_no_errors(&produce);
            assert_eq!(produce["command"], "produce");
            assert_eq!(u64_at(&produce, "topics"), 2);
            assert_eq!(u64_at(&produce, "message_size"), 512);
            // The window by default: the client's 64 MiB, no message count.
            assert_eq!(u64_at(&produce, "memory_limit_mb"), 64);
            assert_eq!(u64_at(&produce, "max_pending"), 0);
            assert_eq!(u64_at(&produce, "consumed"), 0);
            assert!(produce["consume"].is_null() && produce["end_to_end_latency_ms"].is_null());
            let produced = u64_at(&produce, "produced");
            let window = u64_at(&produce["publish"], "messages");
            // Paced at 1000 msg/s over 3 s: everything sent was stored.
            assert!(window > 0 && window <= produced, "{produce:#}");
            assert!(produced <= 3000, "{produce:#}");
            check_latency(&produce, "publish_latency_ms");
            check_raw(&produce, &raw_dir);
            check_machine(&produce);

            // A new subscription from the earliest message reads what was produced.
            let consume = perf_json(
                &s,
                &[
                    "consume",
                    "--url",
                    s.service_url(),
                    "--topics",
                    "2",
                    "--topic-prefix",
                    prefix,
                    "--initial-position",
                    "earliest",
                    "--subscription",
                    "reader",
                    "--warmup",
                    "0s",
                    "--duration",
                    "3s",
                    "--no-raw",
                ],
            )
            .await;
            check_no_errors(&consume);
            assert_eq!(consume["command"], "consume");
            assert!(consume["raw"].is_null() && consume["ratios"].is_null());
            assert!(consume["publish"].is_null());
            let consumed = u64_at(&consume, "consumed");
            assert!(consumed > 0 && consumed <= produced, "{consume:#}");
            assert_eq!(consume["subscription"], "reader");
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_e2e_batched_and_unbatched() {
    bounded(
        "perf_e2e_batched_and_unbatched",
        LIMIT,
        Box::pin(async {
            let dir = TempDir::new().unwrap();
            let s = StandaloneProcess::start_in(&dir).await;
            let raw_dir = dir.path().join("raw");
            std::fs::create_dir_all(&raw_dir).unwrap();
            let batched = perf_json(
                &s,
                &[
                    "e2e",
                    "--url",
                    s.service_url(),
                    "--topics",
                    "2",
                    "--producers-per-topic",
                    "2",
                    "--topic-prefix",
                    "persistent://public/default/e2e-batched",
                    "--rate",
                    "2000",
                    "--batch",
                    "100",
                    "--batch-delay",
                    "2ms",
                    "--warmup",
                    "1s",
                    "--duration",
                    "2s",
                    "--raw-dir",
                    raw_dir.to_str().unwrap(),
                    "--raw-duration",
                    "300ms",
                ],
            )
            .await;
            check_e2e(&batched);
            check_raw(&batched, &raw_dir);
            assert!(f64_at(&batched, &["ratios", "end_to_end_p99_to_raw_p99"]) > 0.0);
            assert_eq!(u64_at(&batched, "batch_max_messages"), 100);

            // Unpaced, batching off, two consumers sharing each subscription.
            let single = perf_json(
                &s,
                &[
                    "e2e",
                    "--url",
                    s.service_url(),
                    "--topic-prefix",
                    "persistent://public/default/e2e-single",
                    "--batch",
                    "0",
                    "--consumers-per-topic",
                    "2",
                    "--max-pending",
                    "200",
                    "--warmup",
                    "500ms",
                    "--duration",
                    "1s",
                    "--no-raw",
                ],
            )
            .await;
            check_e2e(&single);
            assert!(single["ratios"].is_null());
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_e2e_partitioned() {
    bounded(
        "perf_e2e_partitioned",
        LIMIT,
        Box::pin(async {
            let dir = TempDir::new().unwrap();
            let s = StandaloneProcess::start_in(&dir).await;
            let args = [
                "e2e",
                "--url",
                s.service_url(),
                "--admin-url",
                s.admin_url(),
                "--partitions",
                "3",
                "--topics",
                "2",
                "--topic-prefix",
                "persistent://public/default/e2e-part",
                "--rate",
                "1500",
                "--batch",
                "20",
                "--warmup",
                "500ms",
                "--duration",
                "2s",
                "--no-raw",
                "--json",
            ];
            let (ok, stdout, stderr) = perf(&args).await;
            if !ok && stderr.contains("404 Not Found") {
                // The admin REST endpoint for partitioned topics is not in this
                // build yet; without it perf refuses clearly, which is checked.
                assert!(stderr.contains("/partitions"), "{stderr}");
                eprintln!("perf_e2e_partitioned: admin endpoint missing, checked the refusal only");
                return;
            }
            assert!(
                ok,
                "strata perf e2e --partitions failed:\n{stderr}\n{}",
                s.log_tail()
            );
            let v: Value = serde_json::from_str(&stdout).expect("JSON report");
            check_e2e(&v);
            assert_eq!(u64_at(&v, "partitions"), 3);
            // Asking for a different count on the same topics is refused.
            let (ok, _, stderr) = perf(&[
                "produce",
                "--url",
                s.service_url(),
                "--partitions",
                "5",
                "--topics",
                "1",
                "--topic-prefix",
                "persistent://public/default/e2e-part",
                "--duration",
                "1s",
                "--no-raw",
            ])
            .await;
            assert!(!ok && stderr.contains("has 3 partitions"), "{stderr}");
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_topics_reports_memory_per_topic() {
    bounded(
        "perf_topics_reports_memory_per_topic",
        LIMIT,
        Box::pin(async {
            let dir = TempDir::new().unwrap();
            let s = StandaloneProcess::start_in(&dir).await;
            let v = perf_json(
                &s,
                &[
                    "topics",
                    "--url",
                    s.service_url(),
                    "--admin-url",
                    s.admin_url(),
                    "--topics",
                    "60",
                    "--concurrency",
                    "8",
                    "--settle",
                    "200ms",
                ],
            )
            .await;
            check_no_errors(&v);
            assert_eq!(u64_at(&v, "topics"), 60);
            assert_eq!(u64_at(&v, "loaded"), 60);
            let before = u64_at(&v, "rss_before_bytes");
            let after = u64_at(&v, "rss_after_bytes");
            assert!(before > 1 << 20 && after > 1 << 20, "{v:#}");
            let per_topic = f64_at(&v, &["bytes_per_topic"]);
            let expected = (after as f64 - before as f64) / 60.0;
            assert!((per_topic - expected).abs() < 1e-6, "{v:#}");
            assert!((f64_at(&v, &["kib_per_topic"]) * 1024.0 - per_topic).abs() < 1e-6);
            check_machine(&v);
            // A wrong admin URL is a clear error, not a hang or a panic.
            let (ok, _, stderr) = perf(&[
                "topics",
                "--url",
                s.service_url(),
                "--admin-url",
                "http://127.0.0.1:1",
                "--topics",
                "1",
            ])
            .await;
            assert!(!ok && stderr.contains("127.0.0.1:1"), "{stderr}");
        }),
    )
    .await;
}

/// The counters and CPU figures of one `perf tenants` phase.
fn check_phase(p: &Value, v: &Value) {
    let produced = u64_at(p, "quiet_produced");
    assert!(produced > 0, "{v:#}");
    assert_eq!(u64_at(p, "quiet_consumed"), produced, "{v:#}");
    assert!(f64_at(p, &["quiet_publish", "msg_per_sec"]) > 0.0, "{v:#}");
    assert!(u64_at(&p["quiet_publish"], "messages") <= produced, "{v:#}");
    check_latency(p, "quiet_publish_latency_ms");
    check_latency(p, "quiet_end_to_end_latency_ms");
    let series = p["quiet_publish_latency_by_second_ms"]
        .as_array()
        .expect("quiet_publish_latency_by_second_ms");
    // One entry per second of the 2 s window (a late last one may add a third).
    assert!((2..=3).contains(&series.len()), "{v:#}");
    for l in series {
        assert!(
            l["p99"].as_f64().is_some() && l["max"].as_f64().is_some(),
            "{v:#}"
        );
    }
    for c in [
        "publish_throttled",
        "publish_throttled_ms",
        "backlog_quota_blocks",
    ] {
        assert!(f64_at(p, &["broker", c]) >= 0.0, "{v:#}");
    }
    assert!(f64_at(p, &["cpu", "secs"]) > 0.0, "{v:#}");
    assert!(f64_at(p, &["cpu", "client_cores"]) >= 0.0, "{v:#}");
    assert!(f64_at(p, &["cpu", "load_cores"]) >= 0.0, "{v:#}");
    // The broker serves process_cpu_seconds_total.
    assert!(f64_at(p, &["cpu", "broker_cores"]) >= 0.0, "{v:#}");
    let busy = f64_at(p, &["cpu", "machine_busy"]);
    assert!((0.0..=1.0).contains(&busy), "{v:#}");
    assert!(f64_at(p, &["cpu", "machine_cores_busy"]) >= 0.0, "{v:#}");
    assert!(f64_at(p, &["cpu", "machine_steal"]) >= 0.0, "{v:#}");
    assert!(f64_at(p, &["cpu", "other_cores"]) >= 0.0, "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_tenants_reports_both_phases() {
    bounded(
        "perf_tenants_reports_both_phases",
        LIMIT,
        Box::pin(async {
            let dir = TempDir::new().unwrap();
            // Quotas checked every second, so the noisy tenant's is reached
            // within a short phase.
            let s = StandaloneProcess::start_with(
                dir.path().join("data"),
                &["--backlog-quota-check-interval", "1s"],
            )
            .await;
            let v = perf_json(
                &s,
                &[
                    "tenants",
                    "--url",
                    s.service_url(),
                    "--admin-url",
                    s.admin_url(),
                    "--id",
                    "smoke",
                    "--quiet-rate",
                    "400",
                    "--noisy-producers",
                    "2",
                    "--noisy-rate-limit",
                    "200",
                    "--noisy-backlog-quota",
                    "16K",
                    "--size",
                    "512",
                    "--warmup",
                    "1s",
                    "--duration",
                    "2s",
                    "--rounds",
                    "2",
                    "--pause",
                    "200ms",
                ],
            )
            .await;
            check_no_errors(&v);
            check_machine(&v);
            assert_eq!(v["command"], "tenants");
            assert_eq!(u64_at(&v, "message_size"), 512);
            assert_eq!(f64_at(&v, &["duration_secs"]), 2.0);
            assert_eq!(v["quiet"]["namespace"], "perf-quiet-smoke/ns");
            assert_eq!(f64_at(&v, &["quiet", "rate"]), 400.0);
            assert_eq!(v["noisy"]["namespace"], "perf-noisy-smoke/ns");
            assert_eq!(u64_at(&v["noisy"], "producers"), 2);
            assert_eq!(u64_at(&v["noisy"], "publish_rate_msg_per_sec"), 200);
            assert_eq!(u64_at(&v["noisy"], "backlog_quota_bytes"), 16 << 10);
            assert_eq!(v["noisy"]["backlog_quota_policy"], "producer_request_hold");

            assert_eq!(u64_at(&v, "rounds"), 2);
            let phases = v["phases"].as_array().expect("phases");
            assert_eq!(phases.len(), 4, "{v:#}");
            for (i, p) in phases.iter().enumerate() {
                assert_eq!(u64_at(p, "round"), 1 + i as u64 / 2, "{v:#}");
                let name = if i % 2 == 0 { "alone" } else { "with_noisy" };
                assert_eq!(p["name"], name, "{v:#}");
                check_phase(p, &v);
            }
            let p99 = |p: &Value| f64_at(p, &["quiet_publish_latency_ms", "p99"]);
            let mut throttled = 0.0;
            for round in phases.chunks(2) {
                let (alone, with) = (&round[0], &round[1]);
                // Only the noisy tenant has limits: nothing throttled or blocked alone.
                assert!(alone["noisy"].is_null() && alone["p99_to_alone"].is_null());
                assert!(alone["quiet_while_flooding_latency_ms"].is_null());
                assert!(alone["quiet_while_blocked_latency_ms"].is_null());
                // The window's seconds before and after the quota's block: at
                // least one side has some.
                let split = [
                    "quiet_while_flooding_latency_ms",
                    "quiet_while_blocked_latency_ms",
                ];
                for f in split {
                    assert!(with[f].is_null() || with[f]["p99"].is_f64(), "{f} in {v:#}");
                }
                assert!(split.iter().any(|f| !with[*f].is_null()), "{v:#}");
                assert_eq!(f64_at(alone, &["broker", "publish_throttled"]), 0.0);
                assert_eq!(f64_at(alone, &["broker", "backlog_quota_blocks"]), 0.0);
                assert_eq!(f64_at(alone, &["cpu", "load_cores"]), 0.0, "{v:#}");
                let ratio = f64_at(with, &["p99_to_alone"]);
                assert!((ratio - p99(with) / p99(alone)).abs() < 1e-9 * ratio.max(1.0));
                // Flooding past 200 msg/s and a 16 KiB quota (a new topic
                // each round) leaves evidence.
                throttled += f64_at(with, &["broker", "publish_throttled"]);
                assert!(
                    f64_at(with, &["broker", "publish_throttled"]) > 0.0,
                    "{v:#}"
                );
                assert!(
                    f64_at(with, &["broker", "backlog_quota_blocks"]) >= 1.0,
                    "{v:#}"
                );
                let n = &with["noisy"];
                assert_eq!(u64_at(n, "producers"), 2);
                assert_eq!(f64_at(n, &["rate_limit_msg_per_sec"]), 200.0);
                let acked = u64_at(n, "acked");
                let rate = f64_at(n, &["achieved_msg_per_sec"]);
                assert!((rate - acked as f64 / 2.0).abs() < 1e-6, "{v:#}");
                assert!(f64_at(n, &["mb_per_sec"]) >= 0.0);
                assert!(f64_at(n, &["quota_blocked_after_secs"]) > 0.0, "{v:#}");
                assert!(
                    u64_at(n, "quota_refusals") + u64_at(n, "producers_closed") > 0,
                    "{v:#}"
                );
                let _ = u64_at(n, "failed_sends");
                for f in ["unblocked_msg_per_sec", "unblocked_to_limit"] {
                    assert!(n[f].is_null() || n[f].is_f64(), "{f} in {v:#}");
                }
                let per_second = n["acked_per_second"].as_array().expect("acked_per_second");
                assert_eq!(per_second.len(), 2, "{v:#}");
                let total: u64 = per_second.iter().map(|c| c.as_u64().unwrap()).sum();
                assert_eq!(total, acked, "{v:#}");
                // The bookie runs in the standalone: its journal is on /metrics.
                let fsyncs = u64_at(&alone["journal_fsync"], "fsyncs");
                assert!(fsyncs > 0, "{v:#}");
                assert!(u64_at(&alone["journal_fsync"], "over_50ms") <= fsyncs);
                assert!(f64_at(with, &["journal_fsync", "mean_ms"]) > 0.0, "{v:#}");
                assert!(
                    f64_at(with, &["journal_fsync", "p99_at_most_ms"]) > 0.0,
                    "{v:#}"
                );
            }
            assert_eq!(
                f64_at(&v, &["broker_with_noisy", "publish_throttled"]),
                throttled
            );
            assert_eq!(f64_at(&v, &["broker_alone", "publish_throttled"]), 0.0);
            assert!(f64_at(&v, &["broker_with_noisy", "backlog_quota_blocks"]) >= 2.0);
            assert!(f64_at(&v, &["noisy_achieved_msg_per_sec"]) >= 0.0, "{v:#}");
            for f in [
                "noisy_unblocked_msg_per_sec",
                "noisy_unblocked_to_limit",
                "p99_ratio_while_flooding",
                "p99_ratio_while_blocked",
            ] {
                assert!(v[f].is_null() || v[f].is_f64(), "{f} in {v:#}");
            }

            // Merged over the rounds: each percentile lies between the rounds'.
            for f in [
                "quiet_while_flooding_latency_ms",
                "quiet_while_blocked_latency_ms",
            ] {
                assert!(v[f].is_null() || v[f]["p99"].is_f64(), "{f} in {v:#}");
            }
            check_latency(&v, "quiet_alone_latency_ms");
            check_latency(&v, "quiet_with_noisy_latency_ms");
            for (field, name) in [
                ("quiet_alone_latency_ms", "alone"),
                ("quiet_with_noisy_latency_ms", "with_noisy"),
            ] {
                let rounds: Vec<f64> = phases
                    .iter()
                    .filter(|p| p["name"] == name)
                    .map(p99)
                    .collect();
                let merged = f64_at(&v, &[field, "p99"]);
                let (lo, hi) = (rounds[0].min(rounds[1]), rounds[0].max(rounds[1]));
                assert!(
                    merged >= lo * 0.999 && merged <= hi * 1.001,
                    "{field}: {v:#}"
                );
            }
            let ratio = f64_at(&v, &["p99_ratio"]);
            let expected = f64_at(&v, &["quiet_with_noisy_latency_ms", "p99"])
                / f64_at(&v, &["quiet_alone_latency_ms", "p99"]);
            assert!((ratio - expected).abs() < 1e-9 * ratio.max(1.0), "{v:#}");
            assert!(f64_at(&v, &["p999_ratio"]) > 0.0);
            assert_eq!(f64_at(&v, &["target_p99_ratio"]), 1.2);
            assert_eq!(v["target_met"].as_bool(), Some(ratio < 1.2), "{v:#}");

            // The run removes its tenants.
            let tenants: Vec<String> = reqwest::get(format!("{}/admin/v2/tenants", s.admin_url()))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(
                !tenants.iter().any(|t| t.ends_with("-smoke")),
                "{tenants:?}"
            );
        }),
    )
    .await;
}
