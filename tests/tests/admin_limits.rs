//! The quota and limit policies of namespaces through the admin REST API
//! (Pulsar's paths and JSON: `publishRate`, `dispatchRate`,
//! `subscriptionDispatchRate`, the `max*` limits, Strata's `storageQuota`)
//! and through `strata admin`, against a real `strata standalone`; and the
//! broker-wide `--max-namespaces-per-tenant` (412 past it, as Pulsar).
//!
//! Only what is stored and answered is checked here; what the broker does
//! with the policies is tested where they are enforced.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use strata_tests::admin::{AdminHttp, Run, strata_admin};
use strata_tests::fault::bounded;
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;

const LIMIT: Duration = Duration::from_secs(240);

/// The integer limits: REST path and Policies field.
const INTEGER_LIMITS: [(&str, &str); 7] = [
    ("maxProducersPerTopic", "max_producers_per_topic"),
    ("maxConsumersPerTopic", "max_consumers_per_topic"),
    (
        "maxConsumersPerSubscription",
        "max_consumers_per_subscription",
    ),
    (
        "maxUnackedMessagesPerConsumer",
        "max_unacked_messages_per_consumer",
    ),
    (
        "maxUnackedMessagesPerSubscription",
        "max_unacked_messages_per_subscription",
    ),
    ("maxSubscriptionsPerTopic", "max_subscriptions_per_topic"),
    ("maxTopicsPerNamespace", "max_topics_per_namespace"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_policies_round_trip_and_refuse_bad_bodies() {
    bounded("limit_policies_round_trip_and_refuse_bad_bodies", LIMIT, async {
        let dir = TempDir::new().unwrap();
        let s = StandaloneProcess::start_in(&dir).await;
        let a = AdminHttp::new(format!("{}/admin/v2", s.admin_url()));
        use Method as M;
        a.ok(M::PUT, "/tenants/acme", None).await;
        a.ok(M::PUT, "/namespaces/acme/prod", None).await;
        let ns = "/namespaces/acme/prod";

        // Rates: stored under this cluster, answered as sent, null when unset.
        let publish = json!({"publishThrottlingRateInMsg": 100, "publishThrottlingRateInByte": 1048576});
        let dispatch = json!({"dispatchThrottlingRateInMsg": 50, "dispatchThrottlingRateInByte": -1,
                              "relativeToPublishRate": false, "ratePeriodInSecond": 2});
        let sub_dispatch = json!({"dispatchThrottlingRateInMsg": -1, "dispatchThrottlingRateInByte": 4096,
                                  "relativeToPublishRate": false, "ratePeriodInSecond": 1});
        for (path, field, body) in [
            ("publishRate", "publishMaxMessageRate", &publish),
            ("dispatchRate", "topicDispatchRate", &dispatch),
            ("subscriptionDispatchRate", "subscriptionDispatchRate", &sub_dispatch),
        ] {
            let url = format!("{ns}/{path}");
            assert_eq!(a.json(&url).await, Value::Null, "{path}");
            a.ok(M::POST, &url, Some(&body.to_string())).await;
            assert_eq!(&a.json(&url).await, body, "{path}");
            assert_eq!(&a.json(ns).await[field]["standalone"], body, "{path}");
        }
        // Each rate is its own policy.
        a.ok(M::DELETE, &format!("{ns}/dispatchRate"), None).await;
        assert_eq!(a.json(&format!("{ns}/dispatchRate")).await, Value::Null);
        assert_eq!(a.json(&format!("{ns}/subscriptionDispatchRate")).await, sub_dispatch);
        assert_eq!(a.json(&format!("{ns}/publishRate")).await, publish);
        // Omitted fields take Pulsar's defaults.
        a.ok(M::POST, &format!("{ns}/dispatchRate"), Some(r#"{"dispatchThrottlingRateInMsg":7}"#)).await;
        assert_eq!(
            a.json(&format!("{ns}/dispatchRate")).await,
            json!({"dispatchThrottlingRateInMsg": 7, "dispatchThrottlingRateInByte": -1,
                   "relativeToPublishRate": false, "ratePeriodInSecond": 1})
        );
        for path in ["publishRate", "dispatchRate", "subscriptionDispatchRate"] {
            a.ok(M::DELETE, &format!("{ns}/{path}"), None).await;
            assert_eq!(a.json(&format!("{ns}/{path}")).await, Value::Null, "{path}");
        }
        let policies = a.json(ns).await;
        assert_eq!(policies["publishMaxMessageRate"], json!({}), "{policies}");

        // Integer limits: a number or a numeric string, as Pulsar's clients send.
        for (i, (path, field)) in INTEGER_LIMITS.iter().enumerate() {
            let url = format!("{ns}/{path}");
            assert_eq!(a.json(&url).await, Value::Null, "{path}");
            a.ok(M::POST, &url, Some(&(i + 1).to_string())).await;
            assert_eq!(a.json(&url).await, json!(i + 1), "{path}");
            a.ok(M::POST, &url, Some(&format!("\"{}\"", i + 10))).await;
            assert_eq!(a.json(&url).await, json!(i + 10), "{path}");
            a.ok(M::POST, &url, Some("0")).await;
            assert_eq!(a.json(ns).await[field], 0, "{path}");
            a.fails(M::POST, &url, Some("-1"), 400, &format!("invalid field '{field}': must be >= 0")).await;
            a.fails(M::POST, &url, Some("\"many\""), 400, &format!("invalid field '{field}'")).await;
            a.fails(M::POST, &url, Some("1.5"), 400, &format!("invalid field '{field}'")).await;
            a.fails(M::POST, &url, Some("{\"value\":3}"), 400, &format!("invalid field '{field}'")).await;
            assert_eq!(a.json(&url).await, 0, "{path}: a refused body changed it");
            a.ok(M::DELETE, &url, None).await;
            assert_eq!(a.json(&url).await, Value::Null, "{path}");
        }

        // Strata's storage quota.
        let url = format!("{ns}/storageQuota");
        assert_eq!(a.json(&url).await, Value::Null);
        let quota = json!({"limitSize": 10737418240_i64, "policy": "producer_request_hold"});
        a.ok(M::POST, &url, Some(&quota.to_string())).await;
        assert_eq!(a.json(&url).await, quota);
        assert_eq!(a.json(ns).await["storage_quota"], quota);
        a.ok(M::POST, &url, Some(r#"{"limitSize":1024,"policy":"producer_exception"}"#)).await;
        assert_eq!(a.json(&url).await["policy"], "producer_exception");

        // Bad bodies: 400 naming the field, and nothing changes.
        for (path, body, reason) in [
            ("publishRate", r#"{"publishThrottlingRateInMsg":-2}"#, "publishThrottlingRateInMsg"),
            ("publishRate", r#"{"publishThrottlingRateInByte":"fast"}"#, "invalid field 'publishThrottlingRateInByte'"),
            ("publishRate", "not json", "invalid publishRate"),
            ("publishRate", "", "invalid publishRate"),
            ("dispatchRate", r#"{"ratePeriodInSecond":0}"#, "ratePeriodInSecond"),
            ("dispatchRate", r#"{"dispatchThrottlingRateInMsg":-5}"#, "dispatchThrottlingRateInMsg"),
            ("subscriptionDispatchRate", r#"{"ratePeriodInSecond":0}"#, "ratePeriodInSecond"),
            ("subscriptionDispatchRate", r#"{"relativeToPublishRate":"yes"}"#, "invalid field 'relativeToPublishRate'"),
            ("storageQuota", r#"{"limitSize":1,"policy":"consumer_backlog_eviction"}"#, "invalid field 'storage_quota.policy'"),
            ("storageQuota", r#"{"limitSize":1,"policy":"drop_everything"}"#, "invalid field 'policy'"),
            ("storageQuota", r#"{"limitSize":-2,"policy":"producer_exception"}"#, "limitSize"),
            ("storageQuota", r#"{"limitSize":"big","policy":"producer_exception"}"#, "invalid field 'limitSize'"),
            ("storageQuota", r#"{"limitSize":1}"#, "policy"),
        ] {
            a.fails(M::POST, &format!("{ns}/{path}"), Some(body), 400, reason).await;
        }
        assert_eq!(a.json(&url).await["limitSize"], 1024);
        assert_eq!(a.json(&format!("{ns}/dispatchRate")).await, Value::Null);
        a.ok(M::DELETE, &url, None).await;
        assert_eq!(a.json(&url).await, Value::Null);

        // Unknown tenant or namespace: 404 on every verb; a bad body is
        // still a 400 (it is checked first).
        for path in ["publishRate", "dispatchRate", "subscriptionDispatchRate", "storageQuota", "maxProducersPerTopic", "maxTopicsPerNamespace"] {
            for ns in ["/namespaces/acme/nope", "/namespaces/nope/prod"] {
                let url = format!("{ns}/{path}");
                a.fails(M::GET, &url, None, 404, "namespace not found").await;
                a.fails(M::DELETE, &url, None, 404, "namespace not found").await;
            }
        }
        a.fails(M::POST, "/namespaces/acme/nope/maxProducersPerTopic", Some("5"), 404, "namespace not found").await;
        a.fails(M::POST, "/namespaces/acme/nope/publishRate", Some(&publish.to_string()), 404, "namespace not found").await;
        a.fails(M::POST, "/namespaces/acme/nope/storageQuota", Some(&quota.to_string()), 404, "namespace not found").await;
        a.fails(M::POST, "/namespaces/acme/nope/maxProducersPerTopic", Some("-1"), 400, "max_producers_per_topic").await;
        a.fails(M::PUT, "/namespaces/acme/prod/publishRate", Some("{}"), 405, "not allowed").await;

        // A namespace created with these policies in its body keeps them.
        a.ok(M::PUT, "/namespaces/acme/dev", Some(r#"{"max_producers_per_topic":2,
            "publishMaxMessageRate":{"standalone":{"publishThrottlingRateInMsg":5,"publishThrottlingRateInByte":-1}},
            "storage_quota":{"limitSize":1,"policy":"producer_exception"}}"#)).await;
        assert_eq!(a.json("/namespaces/acme/dev/maxProducersPerTopic").await, 2);
        assert_eq!(a.json("/namespaces/acme/dev/publishRate").await["publishThrottlingRateInMsg"], 5);
        assert_eq!(a.json("/namespaces/acme/dev/storageQuota").await["limitSize"], 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_namespaces_per_tenant_is_a_412_past_the_limit() {
    bounded(
        "max_namespaces_per_tenant_is_a_412_past_the_limit",
        LIMIT,
        async {
            let dir = TempDir::new().unwrap();
            // Every broker-wide limit flag, so their parsing is covered too.
            let s = StandaloneProcess::start_with(
                dir.path().join("data"),
                &[
                    "--max-namespaces-per-tenant",
                    "2",
                    "--max-producers-per-topic",
                    "10",
                    "--max-consumers-per-topic",
                    "10",
                    "--max-consumers-per-subscription",
                    "10",
                    "--max-unacked-messages-per-subscription",
                    "1000",
                    "--max-subscriptions-per-topic",
                    "10",
                    "--max-topics-per-namespace",
                    "100",
                    "--backlog-quota-check-interval",
                    "30s",
                    "--message-expiry-check-interval",
                    "1m",
                ],
            )
            .await;
            let a = AdminHttp::new(format!("{}/admin/v2", s.admin_url()));
            use Method as M;
            a.ok(M::PUT, "/tenants/acme", None).await;
            a.ok(M::PUT, "/namespaces/acme/one", None).await;
            a.ok(M::PUT, "/namespaces/acme/two", None).await;
            a.fails(
                M::PUT,
                "/namespaces/acme/three",
                None,
                412,
                "Exceed the maximum number of namespace in tenant :acme",
            )
            .await;
            assert_eq!(
                a.json("/namespaces/acme").await,
                json!(["acme/one", "acme/two"])
            );
            // At the limit the limit is checked first, as in Pulsar, even for
            // a name that exists.
            a.fails(M::PUT, "/namespaces/acme/one", None, 412, "Exceed")
                .await;
            // The limit is per tenant: public already has public/default.
            a.ok(M::PUT, "/namespaces/public/second", None).await;
            a.fails(
                M::PUT,
                "/namespaces/public/third",
                None,
                412,
                "tenant :public",
            )
            .await;
            // Deleting one makes room again.
            a.ok(M::DELETE, "/namespaces/acme/one", None).await;
            a.ok(M::PUT, "/namespaces/acme/three", None).await;
            a.fails(M::PUT, "/namespaces/acme/four", None, 412, "Exceed")
                .await;

            // Concurrent creates never leave a tenant past its limit, and each
            // create that was answered 204 exists.
            a.ok(M::PUT, "/tenants/race", None).await;
            let creates = (0..6).map(|i| {
                let a = &a;
                async move {
                    a.call(M::PUT, &format!("/namespaces/race/ns-{i}"), None)
                        .await
                }
            });
            let answers = futures::future::join_all(creates).await;
            let created = answers.iter().filter(|a| a.status == 204).count();
            for answer in &answers {
                assert!([204, 412].contains(&answer.status), "{answer:?}");
            }
            let listed = a.json("/namespaces/race").await;
            let listed = listed.as_array().unwrap();
            assert!(listed.len() <= 2, "{listed:?}");
            assert_eq!(listed.len(), created, "{listed:?} vs {answers:?}");
        },
    )
    .await;
}

struct Cli<'a> {
    s: &'a StandaloneProcess,
}

impl Cli<'_> {
    async fn run(&self, args: &[&str]) -> Run {
        strata_admin(self.s.admin_url(), args).await
    }

    /// A command that must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert_eq!(run.code, Some(0), "{}", run.report());
        run.stdout
    }

    /// A command run with `--json`; the JSON it printed.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all).await;
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{all:?} printed no JSON ({e}):\n{out}"))
    }

    /// A command that must fail with `code`; its stderr.
    async fn fails(&self, code: i32, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert_eq!(run.code, Some(code), "{}", run.report());
        assert!(run.stdout.is_empty(), "{}", run.report());
        run.stderr
    }
}

/// The cells of the line of `table` whose first cell is `first`.
fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row {first:?} in\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_admin_limit_commands() {
    bounded("strata_admin_limit_commands", LIMIT, async {
        let dir = TempDir::new().unwrap();
        let s = StandaloneProcess::start_in(&dir).await;
        let cli = Cli { s: &s };
        let ns = "public/default";

        // Publish rate.
        let out = cli.ok(&["namespaces", "set-publish-rate", ns, "--msg-rate", "100", "--byte-rate", "1M"]).await;
        assert_eq!(out.trim(), "set the publish rate of public/default");
        assert_eq!(
            cli.json(&["namespaces", "get-publish-rate", ns]).await,
            json!({"publishThrottlingRateInMsg": 100, "publishThrottlingRateInByte": 1048576})
        );
        let table = cli.ok(&["namespaces", "get-publish-rate", ns]).await;
        assert_eq!(row(&table, "publishThrottlingRateInMsg"), ["publishThrottlingRateInMsg", "100"]);
        cli.ok(&["namespaces", "remove-publish-rate", ns]).await;
        assert_eq!(cli.ok(&["namespaces", "get-publish-rate", ns]).await, "not set\n");
        assert_eq!(cli.json(&["namespaces", "get-publish-rate", ns]).await, Value::Null);

        // Dispatch rates, per topic and per subscription.
        cli.ok(&["namespaces", "set-dispatch-rate", ns, "--msg-rate", "10", "--period", "2"]).await;
        cli.ok(&["namespaces", "set-subscription-dispatch-rate", ns, "--byte-rate", "512k"]).await;
        assert_eq!(
            cli.json(&["namespaces", "get-dispatch-rate", ns]).await,
            json!({"dispatchThrottlingRateInMsg": 10, "dispatchThrottlingRateInByte": -1,
                   "relativeToPublishRate": false, "ratePeriodInSecond": 2})
        );
        let sub = cli.json(&["namespaces", "get-subscription-dispatch-rate", ns]).await;
        assert_eq!(sub["dispatchThrottlingRateInByte"], 512 * 1024, "{sub}");
        assert_eq!(sub["dispatchThrottlingRateInMsg"], -1, "{sub}");
        cli.ok(&["namespaces", "remove-dispatch-rate", ns]).await;
        assert_eq!(cli.json(&["namespaces", "get-dispatch-rate", ns]).await, Value::Null);
        cli.fails(2, &["namespaces", "set-dispatch-rate", ns, "--period", "0"]).await;

        // Backlog quotas.
        cli.ok(&["namespaces", "set-backlog-quota", ns, "--limit-size", "10M", "--policy", "producer_exception"]).await;
        let out = cli.ok(&["namespaces", "set-backlog-quota", ns, "--type", "message_age",
                           "--limit-time", "1h", "--policy", "consumer_backlog_eviction"]).await;
        assert_eq!(out.trim(), "set the message_age backlog quota of public/default");
        let quotas = cli.json(&["namespaces", "get-backlog-quotas", ns]).await;
        assert_eq!(
            quotas,
            json!({"destination_storage": {"limitSize": 10485760, "limitTime": -1, "policy": "producer_exception"},
                   "message_age": {"limitSize": -1, "limitTime": 3600, "policy": "consumer_backlog_eviction"}})
        );
        let table = cli.ok(&["namespaces", "get-backlog-quotas", ns]).await;
        assert_eq!(row(&table, "message_age"), ["message_age", "-1", "3600", "consumer_backlog_eviction"]);
        cli.ok(&["namespaces", "remove-backlog-quota", ns, "--type", "message_age"]).await;
        let quotas = cli.json(&["namespaces", "get-backlog-quotas", ns]).await;
        assert_eq!(quotas.as_object().unwrap().len(), 1, "{quotas}");
        let err = cli.fails(1, &["namespaces", "set-backlog-quota", ns, "--policy", "producer_exception"]).await;
        assert!(err.contains("needs --limit-size"), "{err}");

        // Message TTL.
        cli.ok(&["namespaces", "set-message-ttl", ns, "--ttl", "1h"]).await;
        assert_eq!(cli.ok(&["namespaces", "get-message-ttl", ns]).await.trim(), "3600");
        cli.ok(&["namespaces", "remove-message-ttl", ns]).await;
        assert_eq!(cli.ok(&["namespaces", "get-message-ttl", ns]).await.trim(), "not set");

        // Integer limits, one command shape.
        let out = cli.ok(&["namespaces", "set-limit", ns, "max-producers-per-topic", "5"]).await;
        assert_eq!(out.trim(), "set max-producers-per-topic of public/default to 5");
        cli.ok(&["namespaces", "set-limit", ns, "max-unacked-messages-per-subscription", "0"]).await;
        assert_eq!(cli.json(&["namespaces", "get-limit", ns, "max-producers-per-topic"]).await, 5);
        let table = cli.ok(&["namespaces", "get-limits", ns]).await;
        assert_eq!(row(&table, "max-producers-per-topic"), ["max-producers-per-topic", "5"]);
        assert_eq!(row(&table, "max-unacked-messages-per-subscription")[1], "0");
        assert_eq!(row(&table, "max-topics-per-namespace")[1], "-");
        let limits = cli.json(&["namespaces", "get-limits", ns]).await;
        assert_eq!(limits["max_producers_per_topic"], 5, "{limits}");
        assert_eq!(limits["max_consumers_per_topic"], Value::Null, "{limits}");
        cli.ok(&["namespaces", "remove-limit", ns, "max-producers-per-topic"]).await;
        assert_eq!(cli.ok(&["namespaces", "get-limit", ns, "max-producers-per-topic"]).await.trim(), "not set");
        cli.fails(2, &["namespaces", "set-limit", ns, "max-bananas", "5"]).await;
        cli.fails(2, &["namespaces", "set-limit", ns, "max-producers-per-topic", "-1"]).await;
        let err = cli.fails(1, &["namespaces", "set-limit", "public/nope", "max-producers-per-topic", "5"]).await;
        assert!(err.starts_with("error: 404: "), "{err}");

        // Storage quota.
        cli.ok(&["namespaces", "set-storage-quota", ns, "--limit", "10G", "--policy", "producer_request_hold"]).await;
        assert_eq!(
            cli.json(&["namespaces", "get-storage-quota", ns]).await,
            json!({"limitSize": 10737418240_i64, "policy": "producer_request_hold"})
        );
        let table = cli.ok(&["namespaces", "get-storage-quota", ns]).await;
        assert_eq!(row(&table, "policy"), ["policy", "producer_request_hold"]);
        // Eviction is no storage-quota policy: refused before any request.
        cli.fails(2, &["namespaces", "set-storage-quota", ns, "--limit", "1G", "--policy", "consumer_backlog_eviction"]).await;
        cli.ok(&["namespaces", "remove-storage-quota", ns]).await;
        assert_eq!(cli.json(&["namespaces", "get-storage-quota", ns]).await, Value::Null);

        // What was left is in the namespace's policies.
        let policies = cli.json(&["namespaces", "get", ns]).await;
        assert_eq!(policies["max_unacked_messages_per_subscription"], 0, "{policies}");
        assert_eq!(
            policies["subscriptionDispatchRate"]["standalone"]["dispatchThrottlingRateInByte"],
            524288,
            "{policies}"
        );
    })
    .await;
}
