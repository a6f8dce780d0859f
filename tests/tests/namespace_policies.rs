//! Namespace policies (issue 6) enforced by a real `strata standalone` and
//! seen through the official Python client: publish-rate isolation between
//! namespaces, the three backlog-quota policies, the message-age quota,
//! message TTL, the producer / consumer / subscription / topic / unacked
//! limits, and the storage quota over both tiers. Each test runs one
//! scenario of `tests/python/namespace_policies.py` (its docstring says
//! what each checks) against its own standalone, started with 1 s quota
//! and TTL check intervals.

use std::time::Duration;

use strata_tests::fault::{bounded, seed};
use strata_tests::python;
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;

const LIMIT: Duration = Duration::from_secs(150);

async fn scenario(name: &str) {
    bounded(name, LIMIT + Duration::from_secs(60), async {
        let dir = TempDir::new().unwrap();
        let mut s = StandaloneProcess::start_with(
            dir.path().join("data"),
            &[
                "--backlog-quota-check-interval",
                "1s",
                "--message-expiry-check-interval",
                "1s",
            ],
        )
        .await;
        let timeout = (LIMIT - Duration::from_secs(15)).as_secs().to_string();
        let seed = seed(name, 0x9011_C1E5).to_string();
        let args = [
            "--service-url",
            s.service_url(),
            "--admin-url",
            s.admin_url(),
            "--timeout",
            &timeout,
            "--seed",
            &seed,
            "--scenario",
            name,
        ]
        .map(String::from);
        let run = python::run("namespace_policies.py", &args, LIMIT).await;
        assert!(
            run.success(),
            "{name} failed\n{}\n{}",
            run.report(),
            s.log_tail()
        );
        assert!(s.is_running(), "the standalone died\n{}", s.log_tail());
        println!("{}", run.output);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_rate_limits_one_namespace_and_not_its_neighbour() {
    scenario("rate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_rate_paces_consumers() {
    scenario("dispatch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_quota_hold_makes_sends_wait_then_time_out() {
    scenario("hold").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_quota_exception_fails_producers_at_once() {
    scenario("exception").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_quota_eviction_moves_the_slowest_cursor() {
    scenario("eviction").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_age_quota_evicts_old_messages() {
    scenario("age").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_ttl_expires_unconsumed_messages() {
    scenario("ttl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_consumer_subscription_topic_and_unacked_limits() {
    scenario("limits").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_quota_blocks_a_namespace_over_both_tiers() {
    scenario("storage").await;
}
