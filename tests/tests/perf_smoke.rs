//! `strata perf bookie` runs end to end and reports every field the issue
//! names. This checks the benchmark works, not how fast anything is: speed
//! is reported by the benchmark itself, never asserted in tests.

use std::path::Path;
use std::process::Command;

use strata_tests::bookie::strata_binary;

/// Runs `strata perf bookie --dir DIR --raw-duration 300ms ARGS --json`.
fn run_perf_bookie(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(strata_binary())
        .args(["perf", "bookie", "--dir"])
        .arg(dir)
        .args(["--raw-duration", "300ms", "--json"])
        .args(args)
        .env("STRATA_LOG", "warn")
        .output()
        .expect("run strata perf bookie")
}

/// [`run_perf_bookie`], which must succeed: its report.
fn perf_bookie(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = run_perf_bookie(dir, args);
    assert!(
        out.status.success(),
        "perf failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

/// A window of the machine's CPU: some of a core busy (the benchmark ran in
/// it), and a share of stolen time between 0 and 1.
fn assert_machine_cpu(m: &serde_json::Value, report: &serde_json::Value) {
    let busy = m["busy_cores"].as_f64().unwrap_or(-1.0);
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert!(
        busy > 0.0 && busy <= cores + 0.01,
        "busy {busy} in {report}"
    );
    let steal = m["steal_share"].as_f64().unwrap_or(-1.0);
    assert!((0.0..=1.0).contains(&steal), "steal {steal} in {report}");
}

#[test]
fn perf_bookie_reports_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let report = perf_bookie(
        dir.path(),
        &[
            "--duration",
            "1s",
            "--entry-size",
            "4096",
            "--ensemble",
            "2",
            "--write-quorum",
            "2",
            "--ack-quorum",
            "2",
            "--rate",
            "2000",
            "--stages",
        ],
    );
    // Every 16th entry was traced through all seven steps of the gRPC path.
    let stages = &report["stages"];
    let traced = stages["entries"].as_u64().unwrap();
    assert!((30..=130).contains(&traced), "{report}");
    let steps: Vec<(&str, &str)> = stages["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["from"].as_str().unwrap(), s["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("queued", "in_body"),
            ("in_body", "received"),
            ("received", "storing"),
            ("storing", "durable"),
            ("durable", "answered"),
            ("answered", "answer_received"),
            ("answer_received", "acknowledged"),
        ],
        "{report}"
    );
    assert!(
        stages["total_ms"]["p99_ms"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    for field in [
        "entries_per_sec",
        "mb_per_sec",
        "raw_fdatasync_mb_per_sec",
        "raw_fdatasync_p99_ms",
        "raw_buffered_fdatasync_mb_per_sec",
        "raw_buffered_fdatasync_p99_ms",
        "raw_overwrite_fdatasync_mb_per_sec",
        "raw_overwrite_fdatasync_p99_ms",
        "ratio",
    ] {
        let v = report[field].as_f64().unwrap_or(-1.0);
        assert!(v > 0.0, "{field} = {v} in {report}");
    }
    for q in ["p50", "p99", "p999", "max"] {
        assert!(
            report["add_latency_ms"][q]
                .as_f64()
                .is_some_and(|v| v > 0.0),
            "{q} in {report}"
        );
    }
    assert!(report["raw_direct_io"].is_boolean(), "{report}");
    // The whole machine's CPU and the hypervisor's share, while appending
    // and during the baseline.
    for field in ["machine_cpu", "raw_machine_cpu"] {
        assert_machine_cpu(&report[field], &report);
    }
    // Paced: how late each append left is reported too.
    assert!(
        report["send_lateness_ms"]["p99"]
            .as_f64()
            .is_some_and(|v| v > 0.0),
        "{report}"
    );
    assert_eq!(report["ensemble"], 2);
    // With --rate there is one run, the paced one.
    assert!(report["latency_phase"].is_null(), "{report}");
    assert!(report["saturated_add_latency_ms"].is_null(), "{report}");
    // Slow journal I/O is counted (a 1 s run on a healthy disk has none to
    // speak of; the field must be there).
    for field in ["journal_slow_writes", "journal_slow_syncs"] {
        assert!(report["bookie"][field].is_u64(), "{field} in {report}");
    }
    // Paced at 2000/s for 1 s: about 2000 entries, certainly more than a few.
    let entries = report["entries"].as_u64().unwrap();
    assert!((500..=2100).contains(&entries), "entries {entries}");
    // The benchmark cleans up after itself.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Unpaced, the benchmark runs twice on fresh bookies: at full speed, then
/// paced at half the peak it found, whose latency is the one reported. With
/// `--floor` the smallest group commit then runs at that rate too.
#[test]
fn perf_bookie_measures_latency_at_half_of_its_peak() {
    let dir = tempfile::tempdir().unwrap();
    let report = perf_bookie(
        dir.path(),
        &[
            "--duration",
            "1s",
            "--entry-size",
            "4096",
            "--transport",
            "local",
            "--floor",
        ],
    );
    let peak = report["entries_per_sec"].as_f64().unwrap();
    let phase = &report["latency_phase"];
    assert_eq!(phase["share_of_peak"].as_f64(), Some(0.5), "{report}");
    let rate = phase["rate"].as_f64().unwrap();
    assert!((rate - peak / 2.0).abs() < 1.0, "{report}");
    // It ran for its second at about that rate (a slow disk may lag).
    let entries = phase["entries"].as_u64().unwrap() as f64;
    assert!(
        entries > rate * 0.25 && entries <= rate * 1.05 + 1.0,
        "{report}"
    );
    assert!(
        phase["bookie"]["journal_syncs"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_machine_cpu(&phase["machine_cpu"], &report);
    for latency in [
        "add_latency_ms",
        "saturated_add_latency_ms",
        "send_lateness_ms",
    ] {
        assert!(
            report[latency]["p99"].as_f64().is_some_and(|v| v > 0.0),
            "{latency} in {report}"
        );
    }
    assert!(report["sender_realtime"].is_boolean(), "{report}");
    let floor = &report["floor"];
    assert_eq!(floor["rate"].as_f64(), Some(rate), "{report}");
    // Every entry it paced over the paced run's length was made durable.
    let floor_entries = floor["entries"].as_u64().unwrap() as f64;
    assert!(
        floor_entries > rate * 0.5 && floor_entries <= rate * 1.05 + 1.0,
        "{report}"
    );
    assert!(floor["batches"].as_u64().unwrap() >= 1, "{report}");
    assert_machine_cpu(&floor["machine_cpu"], &report);
    let floor_p99 = floor["add_latency_ms"]["p99"].as_f64().unwrap();
    assert!(floor_p99 > 0.0, "{report}");
    let bookie_p99 = report["add_latency_ms"]["p99"].as_f64().unwrap();
    let ratio = floor["bookie_p99_to_floor_p99"].as_f64().unwrap();
    assert!((ratio - bookie_p99 / floor_p99).abs() < 1e-6, "{report}");
    // The window is the ledger client's own.
    assert_eq!(report["window_bytes"], 64 << 20);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// With `--retain-mb` the benchmark rolls and deletes ledgers, and the
/// bookie reuses the journal files garbage collection freed.
#[test]
fn perf_bookie_with_retention_deletes_ledgers_and_reuses_journal_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bookie.toml");
    // Small journal files, so that several are freed within the run. GC
    // stays at its default (60 s): files emptied by the deletions are
    // released after flushes.
    std::fs::write(
        &config,
        "journal_max_file_size = 4194304\njournal_preallocate = 1048576\n\
         journal_reuse_grace = \"1s\"\njournal_reuse_files = 64\n",
    )
    .unwrap();
    let report = perf_bookie(
        &dir.path().join("data"),
        &[
            "--bookie-config",
            config.to_str().expect("UTF-8 temp path"),
            "--duration",
            "6s",
            "--entry-size",
            "65536",
            "--retain-mb",
            "16",
            "--transport",
            "local",
            "--latency-at",
            "0",
        ],
    );
    assert_eq!(report["retain_mb"], 16);
    let ledgers = report["ledgers"].as_u64().unwrap();
    let deleted = report["ledgers_deleted"].as_u64().unwrap();
    // Ledgers of 16 MB, one kept: all but the newest two are deleted.
    assert!(ledgers >= 3, "{report}");
    assert_eq!(deleted, ledgers - 2, "{report}");
    let reused = report["bookie"]["journal_reused_files"].as_u64().unwrap();
    assert!(reused >= 1, "no journal file reused: {report}");
}

/// A bookie whose disk reaches its usage watermark during the benchmark
/// stops the run at once, saying why, instead of the writer giving up after
/// its ensemble-change timeout with "not enough writable bookies".
#[test]
fn perf_bookie_stops_with_the_reason_when_a_bookie_turns_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // The watermark sits 64 MiB above what the disk uses now: the run
    // crosses it within its first second or so (or, if other tests filled
    // the disk meanwhile, the bookie starts read-only; the answer is the same).
    let usage = strata_bookie::disk::usage(&data).unwrap();
    let threshold =
        1.0 - (usage.free_bytes.saturating_sub(64 << 20)) as f64 / usage.total_bytes as f64;
    let config = dir.path().join("bookie.toml");
    std::fs::write(
        &config,
        format!(
            "disk_usage_threshold = {threshold}\ndisk_usage_lwm = {threshold}\n\
             disk_check_interval = \"100ms\"\n"
        ),
    )
    .unwrap();
    let out = run_perf_bookie(
        &data,
        &[
            "--bookie-config",
            config.to_str().expect("UTF-8 temp path"),
            "--duration",
            "60s",
            "--entry-size",
            "65536",
            "--transport",
            "local",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run succeeded: {stderr}");
    assert!(
        stderr.contains("read-only (Disk)") && stderr.contains("disk_usage_threshold"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not enough writable bookies"),
        "the writer gave up first: {stderr}"
    );
    // The bookie's data is cleaned up, as after a run that completes.
    let left: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("perf-bookie-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
