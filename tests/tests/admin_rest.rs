//! The admin REST API (`/admin/v2`, Pulsar's paths and JSON) of a real
//! `strata standalone`, over plain HTTP: every endpoint, its error statuses
//! and reasons, and the `/metrics` families of the broker's topics. What
//! the stats say after real traffic is checked with the official Python
//! client in `tests/python/admin_stats.py` (the last test here).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use strata_tests::admin::AdminHttp as Admin;
use strata_tests::fault::{bounded, seed};
use strata_tests::python;
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;

const LIMIT: Duration = Duration::from_secs(240);

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

async fn standalone(dir: &TempDir) -> (StandaloneProcess, Admin) {
    let s = StandaloneProcess::start_in(dir).await;
    let a = Admin::new(s.admin_url());
    (s, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_tenants_and_namespaces() {
    bounded("clusters_tenants_and_namespaces", LIMIT, async {
        let dir = TempDir::new().unwrap();
        let (s, a) = standalone(&dir).await;
        use Method as M;

        assert_eq!(a.get("/admin/v2/brokers/health").await.body, "ok");
        assert_eq!(a.json("/admin/v2/clusters").await, json!(["standalone"]));
        let c = a.json("/admin/v2/clusters/standalone").await;
        assert_eq!(c["serviceUrl"], s.admin_url());
        assert_eq!(c["brokerServiceUrl"], s.service_url());
        a.fails(M::GET, "/admin/v2/clusters/mars", None, 404, "cluster mars does not exist").await;
        a.fails(M::GET, "/admin/v2/nothing/here", None, 404, "no such endpoint: GET /admin/v2/nothing/here").await;
        a.fails(M::GET, "/admin/v2/tenants/%FF", None, 400, "invalid path")
            .await;
        a.fails(M::PATCH, "/admin/v2/tenants", None, 405, "method PATCH is not allowed").await;

        // Tenants.
        assert_eq!(strings(&a.json("/admin/v2/tenants").await), ["public"]);
        let info = r#"{"adminRoles":["ops"],"allowedClusters":["standalone"]}"#;
        a.ok(M::PUT, "/admin/v2/tenants/acme", Some(info)).await;
        a.fails(M::PUT, "/admin/v2/tenants/acme", Some(info), 409, "already exists: tenant acme").await;
        assert_eq!(
            a.json("/admin/v2/tenants/acme").await,
            json!({"adminRoles": ["ops"], "allowedClusters": ["standalone"]})
        );
        assert_eq!(strings(&a.json("/admin/v2/tenants").await), ["acme", "public"]);
        a.ok(M::POST, "/admin/v2/tenants/acme", Some(r#"{"adminRoles":[],"allowedClusters":["standalone"]}"#)).await;
        assert_eq!(a.json("/admin/v2/tenants/acme").await["adminRoles"], json!([]));
        a.fails(M::POST, "/admin/v2/tenants/ghost", Some(info), 404, "tenant not found: ghost").await;
        a.fails(M::GET, "/admin/v2/tenants/ghost", None, 404, "tenant not found: ghost").await;
        a.fails(M::DELETE, "/admin/v2/tenants/ghost", None, 404, "tenant not found").await;
        a.fails(M::PUT, "/admin/v2/tenants/bad%20name", Some(info), 400, "invalid tenant name").await;
        a.fails(M::PUT, "/admin/v2/tenants/x", Some(r#"{"allowedClusters":"standalone"}"#), 400, "invalid field 'allowedClusters'").await;
        a.fails(M::PUT, "/admin/v2/tenants/x", Some("{oops"), 400, "invalid tenant info").await;
        a.fails(M::PUT, "/admin/v2/tenants/x", Some(r#"{"allowedClusters":["mars"]}"#), 412, "cluster \"mars\" does not exist").await;
        // An empty body is this cluster.
        a.ok(M::PUT, "/admin/v2/tenants/empty", None).await;
        assert_eq!(a.json("/admin/v2/tenants/empty").await["allowedClusters"], json!(["standalone"]));

        // Namespaces.
        assert_eq!(strings(&a.json("/admin/v2/namespaces/acme").await), Vec::<String>::new());
        a.ok(M::PUT, "/admin/v2/namespaces/acme/prod", None).await;
        a.fails(M::PUT, "/admin/v2/namespaces/acme/prod", None, 409, "already exists: namespace acme/prod").await;
        a.fails(M::PUT, "/admin/v2/namespaces/ghost/prod", None, 404, "tenant not found: ghost").await;
        a.fails(M::GET, "/admin/v2/namespaces/ghost", None, 404, "tenant not found: ghost").await;
        a.fails(M::GET, "/admin/v2/namespaces/acme/nope", None, 404, "namespace not found: acme/nope").await;
        a.fails(M::DELETE, "/admin/v2/namespaces/acme/nope", None, 404, "namespace not found").await;
        let policies = r#"{"retention_policies":{"retentionTimeInMinutes":60,"retentionSizeInMB":512},
            "message_ttl_in_seconds":3600,
            "backlog_quota_map":{"destination_storage":{"limitSize":1048576,"policy":"producer_exception"}},
            "publishMaxMessageRate":{"standalone":{"publishThrottlingRateInMsg":100,"publishThrottlingRateInByte":-1}}}"#;
        a.ok(M::PUT, "/admin/v2/namespaces/acme/dev", Some(policies)).await;
        let p = a.json("/admin/v2/namespaces/acme/dev").await;
        assert_eq!(p["retention_policies"], json!({"retentionTimeInMinutes": 60, "retentionSizeInMB": 512}));
        assert_eq!(p["message_ttl_in_seconds"], 3600);
        assert_eq!(p["backlog_quota_map"]["destination_storage"]["limitSize"], 1048576);
        assert_eq!(p["backlog_quota_map"]["destination_storage"]["policy"], "producer_exception");
        assert_eq!(p["publishMaxMessageRate"]["standalone"]["publishThrottlingRateInMsg"], 100);
        assert_eq!(p["replication_clusters"], json!(["standalone"]));
        assert_eq!(strings(&a.json("/admin/v2/namespaces/acme").await), ["acme/dev", "acme/prod"]);
        a.fails(M::PUT, "/admin/v2/namespaces/acme/bad", Some(r#"{"message_ttl_in_seconds":"soon"}"#), 400, "invalid field 'message_ttl_in_seconds'").await;
        a.fails(M::PUT, "/admin/v2/namespaces/acme/bad", Some(r#"{"message_ttl_in_seconds":-1}"#), 400, "must be >= 0").await;
        a.fails(M::PUT, "/admin/v2/namespaces/acme/bad", Some(r#"{"backlog_quota_map":{"destination_storage":{"policy":"drop"}}}"#), 400, "invalid field 'backlog_quota_map.destination_storage.policy'").await;
        a.fails(M::PUT, "/admin/v2/namespaces/acme/b%20d", None, 400, "invalid namespace name").await;

        // Single policies.
        assert_eq!(a.json("/admin/v2/namespaces/acme/prod/retention").await, Value::Null);
        a.ok(M::POST, "/admin/v2/namespaces/acme/prod/retention", Some(r#"{"retentionTimeInMinutes":-1,"retentionSizeInMB":10}"#)).await;
        assert_eq!(a.json("/admin/v2/namespaces/acme/prod/retention").await["retentionSizeInMB"], 10);
        a.ok(M::POST, "/admin/v2/namespaces/acme/prod/messageTTL", Some("120")).await;
        assert_eq!(a.json("/admin/v2/namespaces/acme/prod/messageTTL").await, 120);
        a.fails(M::POST, "/admin/v2/namespaces/acme/prod/messageTTL", Some("\"x\""), 400, "invalid field 'message_ttl_in_seconds'").await;
        a.ok(M::DELETE, "/admin/v2/namespaces/acme/prod/messageTTL", None).await;
        assert_eq!(a.json("/admin/v2/namespaces/acme/prod/messageTTL").await, Value::Null);
        a.ok(M::POST, "/admin/v2/namespaces/acme/prod/backlogQuota?backlogQuotaType=message_age", Some(r#"{"limitTime":60,"policy":"consumer_backlog_eviction"}"#)).await;
        assert_eq!(a.json("/admin/v2/namespaces/acme/prod/backlogQuotaMap").await["message_age"]["limitTime"], 60);
        a.fails(M::POST, "/admin/v2/namespaces/acme/prod/backlogQuota?backlogQuotaType=x", Some("{}"), 400, "backlogQuotaType").await;
        a.fails(M::POST, "/admin/v2/namespaces/ghost/ns/retention", Some(r#"{"retentionTimeInMinutes":1,"retentionSizeInMB":1}"#), 404, "namespace not found").await;

        // A namespace with topics is not deleted unless forced; nor is a
        // tenant with namespaces.
        a.ok(M::PUT, "/admin/v2/persistent/acme/prod/orders", None).await;
        a.ok(M::PUT, "/admin/v2/persistent/acme/prod/events/partitions", Some("2")).await;
        a.fails(M::DELETE, "/admin/v2/namespaces/acme/prod", None, 409, "namespace acme/prod still has topics").await;
        a.fails(M::DELETE, "/admin/v2/tenants/acme", None, 409, "tenant acme still has namespaces").await;
        a.fails(M::DELETE, "/admin/v2/namespaces/acme/prod?force=maybe", None, 400, "invalid query parameter 'force'").await;
        a.ok(M::DELETE, "/admin/v2/namespaces/acme/prod?force=true", None).await;
        assert_eq!(strings(&a.json("/admin/v2/namespaces/acme").await), ["acme/dev"]);
        a.ok(M::DELETE, "/admin/v2/namespaces/acme/dev", None).await;
        a.ok(M::PUT, "/admin/v2/namespaces/acme/last", None).await;
        a.ok(M::PUT, "/admin/v2/persistent/acme/last/t", None).await;
        a.ok(M::DELETE, "/admin/v2/tenants/acme?force=true", None).await;
        a.fails(M::GET, "/admin/v2/tenants/acme", None, 404, "tenant not found").await;
        // Recreated, it is empty: the force delete removed the topics' data too.
        a.ok(M::PUT, "/admin/v2/tenants/acme", Some(info)).await;
        a.ok(M::PUT, "/admin/v2/namespaces/acme/last", None).await;
        assert_eq!(a.json("/admin/v2/persistent/acme/last").await, json!([]));
        a.ok(M::DELETE, "/admin/v2/namespaces/acme/last", None).await;
        a.ok(M::DELETE, "/admin/v2/tenants/acme", None).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_partitions_and_subscriptions() {
    bounded("topics_partitions_and_subscriptions", LIMIT, async {
        let dir = TempDir::new().unwrap();
        let (_s, a) = standalone(&dir).await;
        use Method as M;
        const NS: &str = "/admin/v2/persistent/public/default";

        // Non-partitioned topics.
        a.ok(M::PUT, &format!("{NS}/plain"), None).await;
        a.fails(M::PUT, &format!("{NS}/plain"), None, 409, "already exists: topic persistent://public/default/plain").await;
        a.ok(M::PUT, &format!("{NS}/with%20space"), None).await;
        a.fails(M::PUT, "/admin/v2/persistent/public/nope/t", None, 404, "namespace not found: public/nope").await;
        a.fails(M::GET, "/admin/v2/persistent/public/nope", None, 404, "namespace not found").await;
        assert_eq!(a.json(&format!("{NS}/plain/partitions")).await, json!({"partitions": 0}));

        // Partitioned topics.
        a.ok(M::PUT, &format!("{NS}/parted/partitions"), Some("3")).await;
        a.fails(M::PUT, &format!("{NS}/parted/partitions"), Some("3"), 409, "already exists: partitioned topic persistent://public/default/parted").await;
        a.fails(M::PUT, &format!("{NS}/plain/partitions"), Some("3"), 409, "as a non-partitioned topic").await;
        a.fails(M::PUT, &format!("{NS}/parted"), None, 409, "as a partitioned topic").await;
        a.fails(M::PUT, &format!("{NS}/x/partitions"), Some("\"abc\""), 400,
            r#"invalid field 'partitions': expected a positive integer, got "\"abc\"""#).await;
        a.fails(M::PUT, &format!("{NS}/x/partitions"), Some("0"), 400, "invalid field 'partitions'").await;
        a.fails(M::PUT, &format!("{NS}/x-partition-1/partitions"), Some("2"), 400, "may not contain").await;
        a.ok(M::PUT, &format!("{NS}/strung/partitions"), Some("\"2\"")).await;
        assert_eq!(a.json(&format!("{NS}/parted/partitions")).await, json!({"partitions": 3}));
        a.fails(M::POST, &format!("{NS}/parted/partitions"), Some("2"), 409, "the count can only grow").await;
        a.fails(M::POST, &format!("{NS}/parted/partitions"), Some("3"), 409, "the count can only grow").await;
        a.fails(M::POST, &format!("{NS}/ghost/partitions"), Some("5"), 404, "partitioned topic persistent://public/default/ghost").await;
        a.ok(M::POST, &format!("{NS}/parted/partitions"), Some("4")).await;
        assert_eq!(a.json(&format!("{NS}/parted/partitions")).await, json!({"partitions": 4}));
        assert_eq!(
            strings(&a.json(&format!("{NS}/partitioned")).await),
            ["persistent://public/default/parted", "persistent://public/default/strung"]
        );
        let mut all = strings(&a.json(NS).await);
        all.sort();
        let mut want: Vec<String> = vec!["plain".into(), "with space".into(), "strung-partition-0".into(), "strung-partition-1".into()];
        want.extend((0..4).map(|i| format!("parted-partition-{i}")));
        let mut want: Vec<String> = want.into_iter().map(|t| format!("persistent://public/default/{t}")).collect();
        want.sort();
        assert_eq!(all, want);
        let mut listed = strings(&a.json("/admin/v2/namespaces/public/default/topics").await);
        listed.sort();
        assert_eq!(listed, want);

        // Concurrent creates of one name: exactly one succeeds.
        let path = format!("{NS}/race/partitions");
        let results = futures::future::join_all((0..4).map(|_| a.call(M::PUT, &path, Some("2")))).await;
        let statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 204).count(), 1, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 3, "{statuses:?}");
        let path = format!("{NS}/race2");
        let results = futures::future::join_all((0..4).map(|_| a.call(M::PUT, &path, None))).await;
        let statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 204).count(), 1, "{statuses:?}");

        // Stats of a fresh topic, and the partitioned aggregate.
        let st = a.json(&format!("{NS}/plain/stats")).await;
        for field in ["msgRateIn", "msgThroughputIn", "msgRateOut", "msgThroughputOut", "averageMsgSize"] {
            assert_eq!(st[field], 0.0, "{field}: {st}");
        }
        for field in ["bytesInCounter", "msgInCounter", "bytesOutCounter", "msgOutCounter", "storageSize", "backlogSize"] {
            assert_eq!(st[field], 0, "{field}: {st}");
        }
        assert_eq!(st["publishers"], json!([]));
        assert_eq!(st["subscriptions"], json!({}));
        a.fails(M::GET, &format!("{NS}/ghost/stats"), None, 404, "topic not found").await;
        a.fails(M::GET, &format!("{NS}/parted/stats"), None, 405, "is a partitioned topic").await;
        let ps = a.json(&format!("{NS}/parted/partitioned-stats")).await;
        assert_eq!(ps["metadata"]["partitions"], 4);
        assert_eq!(ps["partitions"].as_object().unwrap().len(), 4, "{ps}");
        let ps = a.json(&format!("{NS}/parted/partitioned-stats?perPartition=false")).await;
        assert!(ps.get("partitions").is_none(), "{ps}");
        a.fails(M::GET, &format!("{NS}/plain/partitioned-stats"), None, 404, "partitioned topic").await;
        let internal = a.json(&format!("{NS}/plain/internalStats")).await;
        assert_eq!(internal["numberOfEntries"], 0);
        assert_eq!(internal["state"], "LedgerOpened");
        assert_eq!(internal["ledgers"].as_array().unwrap().len(), 1, "{internal}");
        let ledger = internal["ledgers"][0]["ledgerId"].as_i64().unwrap();
        assert_eq!(internal["lastConfirmedEntry"], format!("{ledger}:-1"));
        let last = a.json(&format!("{NS}/plain/lastMessageId")).await;
        assert_eq!(last, json!({"ledgerId": ledger, "entryId": -1, "partitionIndex": -1, "batchIndex": -1}));
        a.fails(M::GET, &format!("{NS}/ghost/lastMessageId"), None, 404, "topic not found").await;
        a.fails(M::GET, &format!("{NS}/parted/lastMessageId"), None, 405, "partitioned").await;
        a.fails(M::GET, &format!("{NS}/parted/internalStats"), None, 405, "partitioned").await;

        // Subscriptions.
        assert_eq!(a.json(&format!("{NS}/plain/subscriptions")).await, json!([]));
        a.ok(M::PUT, &format!("{NS}/plain/subscription/s1"), None).await;
        a.fails(M::PUT, &format!("{NS}/plain/subscription/s1"), None, 409, "already exists: subscription s1").await;
        a.ok(M::PUT, &format!("{NS}/plain/subscription/s2"), Some(r#"{"ledgerId":-1,"entryId":-1}"#)).await;
        a.fails(M::PUT, &format!("{NS}/plain/subscription/s3"), Some(r#"{"ledgerId":"x","entryId":1}"#), 400, "invalid field 'ledgerId'").await;
        a.fails(M::PUT, &format!("{NS}/plain/subscription/s3"), Some(r#"{"ledgerId":-5,"entryId":1}"#), 400, "invalid message id -5:1").await;
        a.fails(M::PUT, &format!("{NS}/ghost/subscription/s1"), None, 404, "topic not found").await;
        assert_eq!(strings(&a.json(&format!("{NS}/plain/subscriptions")).await), ["s1", "s2"]);
        let st = a.json(&format!("{NS}/plain/stats")).await;
        let s1 = &st["subscriptions"]["s1"];
        assert_eq!((s1["msgBacklog"].as_u64(), s1["type"].as_str(), s1["isDurable"].as_bool()), (Some(0), Some("Exclusive"), Some(true)), "{st}");
        let internal = a.json(&format!("{NS}/plain/internalStats")).await;
        assert_eq!(internal["cursors"]["s1"]["individuallyDeletedMessages"], "[]");
        assert_eq!(internal["cursors"]["s1"]["state"], "Open");
        for (method, path) in [
            (M::POST, "subscription/ghost/skip/1"),
            (M::POST, "subscription/ghost/skip_all"),
            (M::POST, "subscription/ghost/expireMessages/10"),
            (M::POST, "subscription/ghost/resetcursor/0"),
            (M::DELETE, "subscription/ghost"),
        ] {
            a.fails(method, &format!("{NS}/plain/{path}"), None, 404, "subscription not found: ghost").await;
        }
        a.fails(M::POST, &format!("{NS}/plain/subscription/s1/skip/many"), None, 400, "invalid path parameter 'count'").await;
        a.fails(M::POST, &format!("{NS}/plain/subscription/s1/expireMessages/-3"), None, 400, "invalid path parameter 'seconds'").await;
        a.fails(M::POST, &format!("{NS}/plain/subscription/s1/resetcursor/yesterday"), None, 400, "invalid path parameter 'timestamp'").await;
        a.fails(M::POST, &format!("{NS}/plain/subscription/s1/resetcursor"), Some("{}"), 400, "missing field `ledgerId`").await;
        a.ok(M::POST, &format!("{NS}/plain/subscription/s1/skip/5"), None).await;
        a.ok(M::POST, &format!("{NS}/plain/subscription/s1/skip_all"), None).await;
        a.ok(M::POST, &format!("{NS}/plain/subscription/s1/expireMessages/1"), None).await;
        a.ok(M::POST, &format!("{NS}/plain/all_subscription/expireMessages/1"), None).await;
        a.ok(M::POST, &format!("{NS}/plain/subscription/s1/resetcursor/0"), None).await;
        a.ok(M::DELETE, &format!("{NS}/plain/subscription/s2"), None).await;
        assert_eq!(strings(&a.json(&format!("{NS}/plain/subscriptions")).await), ["s1"]);

        // On a partitioned topic a subscription goes to every partition.
        a.ok(M::PUT, &format!("{NS}/parted/subscription/all"), None).await;
        assert_eq!(strings(&a.json(&format!("{NS}/parted/subscriptions")).await), ["all"]);
        for i in 0..4 {
            assert_eq!(strings(&a.json(&format!("{NS}/parted-partition-{i}/subscriptions")).await), ["all"]);
        }
        let ps = a.json(&format!("{NS}/parted/partitioned-stats")).await;
        assert_eq!(ps["subscriptions"]["all"]["msgBacklog"], 0, "{ps}");
        a.ok(M::POST, &format!("{NS}/parted/subscription/all/skip_all"), None).await;
        a.ok(M::DELETE, &format!("{NS}/parted/subscription/all"), None).await;
        assert_eq!(a.json(&format!("{NS}/parted-partition-2/subscriptions")).await, json!([]));

        // Metrics of the loaded topics.
        let metrics = a.get("/metrics").await.body;
        let text = metrics.as_str().unwrap();
        assert!(text.contains("# TYPE strata_broker_topic_msg_rate_in gauge"), "{text}");
        assert_eq!(text.matches("# TYPE strata_broker_topic_storage_size ").count(), 1);
        assert!(
            text.contains(r#"strata_broker_topic_subscriptions{namespace="public/default",topic="persistent://public/default/plain"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"strata_broker_namespace_topics{namespace="public/default"}"#), "{text}");
        assert!(text.lines().any(|l| l.starts_with("strata_broker_topics ")), "{text}");

        // Deletes.
        a.fails(M::DELETE, &format!("{NS}/parted"), None, 409, "is a partitioned topic").await;
        a.ok(M::DELETE, &format!("{NS}/parted/partitions"), None).await;
        a.fails(M::DELETE, &format!("{NS}/parted/partitions"), None, 404, "partitioned topic").await;
        assert_eq!(a.json(&format!("{NS}/parted/partitions")).await, json!({"partitions": 0}));
        a.ok(M::DELETE, &format!("{NS}/plain"), None).await;
        a.fails(M::DELETE, &format!("{NS}/plain"), None, 404, "topic not found").await;
        a.fails(M::GET, &format!("{NS}/plain/stats"), None, 404, "topic not found").await;
        a.ok(M::PUT, &format!("{NS}/plain"), None).await;
        assert_eq!(a.json(&format!("{NS}/plain/subscriptions")).await, json!([]), "a recreated topic starts without subscriptions");
        a.ok(M::PUT, &format!("{NS}/plain/unload"), None).await;
        a.fails(M::PUT, &format!("{NS}/ghost/unload"), None, 404, "topic not found").await;
        assert_eq!(a.json(&format!("{NS}/plain/stats")).await["msgInCounter"], 0);
    })
    .await;
}

/// Stats, internal stats, last message id, reset, skip and expire against
/// what the official Python client did; delete with connected clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_follow_real_traffic_python() {
    let limit = Duration::from_secs(180);
    bounded(
        "admin_stats_python",
        limit + Duration::from_secs(60),
        async {
            let seed = seed("admin_stats_python", 0xAD41);
            let dir = TempDir::new().unwrap();
            let mut s = StandaloneProcess::start_in(&dir).await;
            let args = vec![
                "--service-url".to_string(),
                s.service_url().to_string(),
                "--admin-url".to_string(),
                s.admin_url().to_string(),
                "--timeout".to_string(),
                (limit.as_secs() - 15).to_string(),
                "--seed".to_string(),
                seed.to_string(),
            ];
            let run = python::run("admin_stats.py", &args, limit).await;
            assert!(run.success(), "{}\n{}", run.report(), s.log_tail());
            assert!(s.is_running(), "the standalone is gone\n{}", s.log_tail());
            println!("{}", run.output);
        },
    )
    .await;
}
