//! Compatibility of `strata standalone` with the official Pulsar Python
//! client (`pulsar-client` 3.13.0, which wraps the Apache C++ client).
//!
//! Each test starts its own standalone in a temporary directory and runs
//! one scenario script of `tests/python/` against it (see the docstring at
//! the top of each script for what it checks). A script exits 0 when every
//! check held; on failure the test prints the script's output and the tail
//! of the standalone's log. Crash tests SIGKILL the standalone while a
//! script works, restart it on the same ports and data directory, and check
//! with a second script that nothing acknowledged was lost.
//!
//! Needs `python3` with `pulsar-client==3.13.0` (scripts/test.sh installs
//! it; `STRATA_PYTHON` names another interpreter) and the `strata` binary.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_tests::fault::{bounded, seed};
use strata_tests::python::{self, PythonScript, ScriptRun};
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;

/// The default time a scenario script may take.
const SCRIPT_LIMIT: Duration = Duration::from_secs(180);

/// `--service-url URL --timeout T --seed S` followed by `extra`; the
/// script's own watchdog fires 15 s before the test kills it.
fn script_args(s: &StandaloneProcess, limit: Duration, seed: u64, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--service-url".to_string(),
        s.service_url().to_string(),
        "--timeout".to_string(),
        limit
            .saturating_sub(Duration::from_secs(15))
            .as_secs()
            .to_string(),
        "--seed".to_string(),
        seed.to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Panics with the script's output and the standalone's log tail unless
/// the script succeeded and the standalone still runs.
fn assert_passed(run: &ScriptRun, s: &mut StandaloneProcess) {
    assert!(
        run.success(),
        "{} failed\n{}\n{}",
        run.name,
        run.report(),
        s.log_tail()
    );
    assert!(
        s.is_running(),
        "the standalone is gone after {}\n{}\n{}",
        run.name,
        run.report(),
        s.log_tail()
    );
    println!("{}", run.output);
}

/// Runs `script` against a fresh standalone.
async fn scenario(name: &str, script: &str, extra: &[&str], limit: Duration) {
    bounded(name, limit + Duration::from_secs(90), async {
        let seed = seed(name, 0x5EED_C0DE);
        let dir = TempDir::new().unwrap();
        let mut s = StandaloneProcess::start_in(&dir).await;
        let run = python::run(script, &script_args(&s, limit, seed, extra), limit).await;
        assert_passed(&run, &mut s);
    })
    .await;
}

// ---------------------------------------------------------------------------
// The frame encoders of bad_input.py (no standalone needed)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_frame_encoders_match_the_official_client() {
    let run = python::run("test_pulsar_frames.py", &["-v"], Duration::from_secs(60)).await;
    assert!(run.success(), "{}", run.report());
}

// ---------------------------------------------------------------------------
// Produce and consume
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_consume_with_batching_and_every_compression() {
    scenario("produce_consume", "produce_consume.py", &[], SCRIPT_LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_properties_and_event_time_round_trip() {
    scenario("message_fields", "message_fields.py", &[], SCRIPT_LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_topics_open_at_once() {
    scenario(
        "many_topics",
        "many_topics.py",
        &["--topics", "1000"],
        Duration::from_secs(300),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_entry_metadata_only_to_clients_that_announce_it() {
    scenario(
        "broker_entry_metadata",
        "broker_entry_metadata.py",
        &[],
        SCRIPT_LIMIT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_pattern_subscription_and_protocol_versions() {
    scenario("namespace_ops", "namespace_ops.py", &[], SCRIPT_LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_access_modes_shared_exclusive_wait_and_fencing() {
    scenario(
        "producer_access_modes",
        "producer_access_modes.py",
        &[],
        SCRIPT_LIMIT,
    )
    .await;
}

// ---------------------------------------------------------------------------
// Subscription types
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_subscription_rejects_a_second_consumer() {
    scenario(
        "subscription_exclusive",
        "subscription_exclusive.py",
        &[],
        SCRIPT_LIMIT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_subscription_switches_to_the_standby() {
    scenario(
        "subscription_failover",
        "subscription_failover.py",
        &[],
        SCRIPT_LIMIT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_spreads_and_delivers_once() {
    scenario(
        "subscription_shared",
        "subscription_shared.py",
        &[],
        SCRIPT_LIMIT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_shared_subscription_keeps_keys_on_one_consumer_in_order() {
    scenario(
        "subscription_key_shared",
        "subscription_key_shared.py",
        &[],
        SCRIPT_LIMIT,
    )
    .await;
}

// ---------------------------------------------------------------------------
// Redelivery
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_ack_redelivers_with_redelivery_count() {
    scenario("negative_ack", "negative_ack.py", &[], SCRIPT_LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_timeout_redelivers() {
    scenario("ack_timeout", "ack_timeout.py", &[], SCRIPT_LIMIT).await;
}

// ---------------------------------------------------------------------------
// Readers, seek, last message id
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_from_earliest_latest_and_message_id() {
    scenario("readers", "readers.py", &[], SCRIPT_LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_by_message_id_and_publish_time() {
    scenario("seek", "seek.py", &[], SCRIPT_LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_message_id_and_has_message_available() {
    scenario("last_message_id", "last_message_id.py", &[], SCRIPT_LIMIT).await;
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_the_broker_keeps_serving() {
    scenario("bad_input", "bad_input.py", &[], Duration::from_secs(300)).await;
}

// ---------------------------------------------------------------------------
// Crashes and restarts
// ---------------------------------------------------------------------------

/// Lines in `path` (0 if it does not exist yet).
fn lines_in(path: &std::path::Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// SIGKILL while a producer sends (after a seeded number of acks), restart,
/// then every message acknowledged to the producer must be delivered to the
/// subscription created before the crash, in order.
async fn crash_while_producing(name: &str, batching: bool) {
    bounded(name, Duration::from_secs(420), async {
        let seed = seed(name, 0x5EED_C4A5);
        let mut rng = StdRng::seed_from_u64(seed);
        let kill_after = rng.random_range(200..2_000);
        let dir = TempDir::new().unwrap();
        let acked = dir.path().join("acked.txt");
        let acked_arg = acked.to_str().expect("UTF-8 temp path").to_string();
        let topic = format!("persistent://public/default/crash-{seed:x}");
        let mut s = StandaloneProcess::start_in(&dir).await;

        let limit = Duration::from_secs(150);
        let common = vec![
            "--topic",
            &topic,
            "--subscription",
            "crash-sub",
            "--acked-file",
            &acked_arg,
            "--count",
            "100000",
        ];
        let mut producer_args = common.clone();
        if batching {
            producer_args.push("--batching");
        }
        let mut producer = PythonScript::spawn(
            "crash_producer.py",
            &script_args(&s, limit, seed, &producer_args),
        );
        let give_up = Instant::now() + Duration::from_secs(90);
        while lines_in(&acked) < kill_after {
            if let Some(status) = producer.try_status() {
                panic!(
                    "crash_producer.py ended ({status}) before {kill_after} acknowledgements\n{}\n{}",
                    producer.output(),
                    s.log_tail()
                );
            }
            assert!(
                Instant::now() < give_up,
                "only {} of {kill_after} acknowledgements within 90 s\n{}\n{}",
                lines_in(&acked),
                producer.output(),
                s.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        s.kill();
        eprintln!("{name}: SIGKILL after {} acknowledgements", lines_in(&acked));
        // The producer stops at its first failed send and exits once every
        // outstanding send failed (the broker is down, nothing is resent).
        let run = producer.wait(limit).await;
        assert!(run.success(), "{}\n{}", run.report(), s.log_tail());
        println!("{}", run.output);

        s.restart().await;
        let run = python::run(
            "crash_consumer.py",
            &script_args(&s, limit, seed, &common),
            limit,
        )
        .await;
        assert_passed(&run, &mut s);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_producing_loses_no_acknowledged_message() {
    crash_while_producing("crash_while_producing", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_producing_batches_loses_no_acknowledged_message() {
    crash_while_producing("crash_while_producing_batches", true).await;
}

/// A consumer acknowledges some messages (a prefix and a few holes), the
/// standalone goes down (`clean`: SIGTERM, which must exit 0; else SIGKILL)
/// and comes back; the subscription resumes exactly after the acknowledged
/// ones (clean), or at least delivers every unacknowledged one in order
/// (crash).
async fn cursor_across_restart(name: &str, clean: bool) {
    bounded(name, Duration::from_secs(300), async {
        let seed = seed(name, 0x5EED_C525);
        let dir = TempDir::new().unwrap();
        let topic = format!("persistent://public/default/cursor-{seed:x}");
        let mut s = StandaloneProcess::start_in(&dir).await;
        let common = ["--topic", topic.as_str(), "--count", "100", "--acked", "40"];

        let mut before = common.to_vec();
        before.extend(["--phase", "before"]);
        let run = python::run(
            "cursor_resume.py",
            &script_args(&s, SCRIPT_LIMIT, seed, &before),
            SCRIPT_LIMIT,
        )
        .await;
        assert_passed(&run, &mut s);

        if clean {
            s.stop_cleanly().await;
        } else {
            s.kill();
        }
        s.restart().await;

        let mut after = common.to_vec();
        after.extend(["--phase", "after"]);
        if clean {
            after.push("--exact");
        }
        let run = python::run(
            "cursor_resume.py",
            &script_args(&s, SCRIPT_LIMIT, seed, &after),
            SCRIPT_LIMIT,
        )
        .await;
        assert_passed(&run, &mut s);
        if clean {
            s.stop_cleanly().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_resumes_exactly_after_a_clean_restart() {
    cursor_across_restart("cursor_clean_restart", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_survives_a_crash_without_losing_unacknowledged_messages() {
    cursor_across_restart("cursor_crash", false).await;
}

// ---------------------------------------------------------------------------
// Partitioned topics (created through the admin REST API)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_topics_route_consume_read_and_grow() {
    let name = "partitioned";
    bounded(name, SCRIPT_LIMIT + Duration::from_secs(90), async {
        let seed = seed(name, 0x5EED_C0DE);
        let dir = TempDir::new().unwrap();
        let mut s = StandaloneProcess::start_in(&dir).await;
        let admin = s.admin_url().to_string();
        let args = script_args(&s, SCRIPT_LIMIT, seed, &["--admin-url", &admin]);
        let run = python::run("partitioned.py", &args, SCRIPT_LIMIT).await;
        assert_passed(&run, &mut s);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_topic_creation_can_create_partitioned_topics() {
    let name = "auto_partitioned";
    bounded(name, SCRIPT_LIMIT + Duration::from_secs(90), async {
        let seed = seed(name, 0x5EED_C0DE);
        let dir = TempDir::new().unwrap();
        let mut s = StandaloneProcess::start_with(
            dir.path().join("data"),
            &[
                "--auto-topic-creation-type",
                "partitioned",
                "--default-num-partitions",
                "3",
            ],
        )
        .await;
        let args = script_args(&s, SCRIPT_LIMIT, seed, &[]);
        let run = python::run("auto_partitioned.py", &args, SCRIPT_LIMIT).await;
        assert_passed(&run, &mut s);
    })
    .await;
}
