//! `strata admin` (the CLI over the admin REST API) against a real
//! `strata standalone`: the real binary is run as a user would, and its
//! exit status, tables and `--json` output are checked against what was
//! done through it and through the official Python client
//! (`tests/python/admin_produce.py`).
//!
//! Each test starts its own standalone in a temporary directory. A failure
//! prints the command, its stdout and stderr, and the standalone's log
//! tail. Needs the `strata` binary (`cargo build -p strata`) and, for the
//! stats test, `python3` with `pulsar-client==3.13.0`.

use std::time::Duration;

use serde_json::Value;
use strata_tests::admin::{Run, strata_admin};
use strata_tests::bookie::free_port;
use strata_tests::fault::bounded;
use strata_tests::python;
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;

const TEST_LIMIT: Duration = Duration::from_secs(300);
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

/// The CLI pointed at one standalone.
struct Admin<'a> {
    s: &'a StandaloneProcess,
}

impl Admin<'_> {
    async fn run(&self, args: &[&str]) -> Run {
        strata_admin(self.s.admin_url(), args).await
    }

    /// Runs a command that must succeed; returns its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert_eq!(
            run.code,
            Some(0),
            "{}\n--- standalone log ---\n{}",
            run.report(),
            self.s.log_tail()
        );
        run.stdout
    }

    /// Runs a command with `--json`; returns the JSON it printed.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all).await;
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}):\n{out}", all.join(" ")))
    }

    /// Runs a command that must fail with exit status 1 and an
    /// `error: <status>: <reason>` line; returns (status, reason).
    async fn fails(&self, args: &[&str]) -> (u16, String) {
        let run = self.run(args).await;
        assert_eq!(run.code, Some(1), "expected a failure\n{}", run.report());
        let line = run
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or_else(|| panic!("no `error: ` line\n{}", run.report()));
        let (status, reason) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("no `<status>: <reason>`\n{}", run.report()));
        let status = status
            .parse()
            .unwrap_or_else(|_| panic!("no HTTP status in {line:?}\n{}", run.report()));
        assert!(!reason.trim().is_empty(), "empty reason\n{}", run.report());
        assert!(run.stdout.is_empty(), "stdout on failure\n{}", run.report());
        (status, reason.to_string())
    }
}

/// The lines of a plain-text list output.
fn lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

/// The whitespace-separated cells of the first line of `table` whose
/// first cell is `first`.
fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row {first:?} in\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_namespaces_and_partitioned_topics() {
    bounded(
        "tenants_namespaces_and_partitioned_topics",
        TEST_LIMIT,
        async {
            let dir = TempDir::new().unwrap();
            let s = StandaloneProcess::start_in(&dir).await;
            let admin = Admin { s: &s };

            assert_eq!(admin.ok(&["brokers", "health"]).await.trim(), "ok");
            let cluster = admin.json(&["clusters", "get", "standalone"]).await;
            assert!(cluster.is_object(), "{cluster}");

            // Tenants.
            assert!(lines(&admin.ok(&["tenants", "list"]).await).contains(&"public"));
            let out = admin
                .ok(&[
                    "tenants",
                    "create",
                    "acme",
                    "--admin-roles",
                    "ops",
                    "--allowed-clusters",
                    "standalone",
                ])
                .await;
            assert_eq!(out.trim(), "created tenant acme");
            let info = admin.json(&["tenants", "get", "acme"]).await;
            assert_eq!(info["adminRoles"], serde_json::json!(["ops"]), "{info}");
            assert_eq!(
                info["allowedClusters"],
                serde_json::json!(["standalone"]),
                "{info}"
            );
            admin
                .ok(&["tenants", "update", "acme", "--admin-roles", "ops,dev"])
                .await;
            let table = admin.ok(&["tenants", "get", "acme"]).await;
            assert_eq!(
                row(&table, "adminRoles"),
                ["adminRoles", "ops,dev"],
                "{table}"
            );
            assert_eq!(
                row(&table, "allowedClusters"),
                ["allowedClusters", "standalone"]
            );
            let (status, _) = admin
                .fails(&["tenants", "create", "acme", "-c", "standalone"])
                .await;
            assert_eq!(status, 409);
            let (status, reason) = admin.fails(&["tenants", "get", "no-such-tenant"]).await;
            assert_eq!(status, 404, "{reason}");
            // Without --allowed-clusters a tenant may use every cluster.
            admin.ok(&["tenants", "create", "beta"]).await;
            let info = admin.json(&["tenants", "get", "beta"]).await;
            assert_eq!(
                info["allowedClusters"],
                serde_json::json!(["standalone"]),
                "{info}"
            );
            admin.ok(&["tenants", "delete", "beta"]).await;

            // Namespaces, with policies.
            admin
                .ok(&[
                    "namespaces",
                    "create",
                    "acme/prod",
                    "--retention-time",
                    "3h",
                    "--retention-size",
                    "1G",
                    "--message-ttl",
                    "1h",
                ])
                .await;
            let policies = admin.json(&["namespaces", "get", "acme/prod"]).await;
            assert_eq!(
                policies["retention_policies"],
                serde_json::json!({"retentionTimeInMinutes": 180, "retentionSizeInMB": 1024}),
                "{policies}"
            );
            assert_eq!(policies["message_ttl_in_seconds"], 3600, "{policies}");
            let table = admin.ok(&["namespaces", "get", "acme/prod"]).await;
            assert_eq!(
                row(&table, "retention_policies.retentionTimeInMinutes")[1],
                "180",
                "{table}"
            );
            assert_eq!(
                lines(&admin.ok(&["namespaces", "list", "acme"]).await),
                ["acme/prod"]
            );
            let (status, reason) = admin
                .fails(&["namespaces", "create", "no-such-tenant/ns"])
                .await;
            assert_eq!(status, 404, "{reason}");
            let (status, _) = admin.fails(&["namespaces", "create", "acme/prod"]).await;
            assert_eq!(status, 409);

            // A partitioned topic.
            let out = admin
                .ok(&[
                    "topics",
                    "create-partitioned",
                    "acme/prod/orders",
                    "--partitions",
                    "3",
                ])
                .await;
            assert_eq!(
                out.trim(),
                "created partitioned topic persistent://acme/prod/orders with 3 partitions"
            );
            let meta = admin
                .json(&["topics", "get-partitions", "acme/prod/orders"])
                .await;
            assert_eq!(meta["partitions"], 3, "{meta}");
            assert_eq!(
                lines(&admin.ok(&["topics", "list-partitioned", "acme/prod"]).await),
                ["persistent://acme/prod/orders"]
            );
            admin
                .ok(&[
                    "topics",
                    "update-partitions",
                    "persistent://acme/prod/orders",
                    "-p",
                    "5",
                ])
                .await;
            let table = admin
                .ok(&["topics", "get-partitions", "acme/prod/orders"])
                .await;
            assert_eq!(row(&table, "partitions"), ["partitions", "5"]);
            // Bad partition counts are refused by the server, with its reason.
            for bad in ["0", "-1"] {
                let (status, reason) = admin
                    .fails(&[
                        "topics",
                        "create-partitioned",
                        "acme/prod/bad",
                        "--partitions",
                        bad,
                    ])
                    .await;
                assert!((400..500).contains(&status), "{bad}: {status} {reason}");
            }
            let (status, reason) = admin
                .fails(&[
                    "topics",
                    "update-partitions",
                    "acme/prod/orders",
                    "--partitions",
                    "2",
                ])
                .await;
            assert!((400..500).contains(&status), "{status} {reason}");
            let (status, _) = admin
                .fails(&[
                    "topics",
                    "create-partitioned",
                    "acme/prod/orders",
                    "-p",
                    "2",
                ])
                .await;
            assert_eq!(status, 409);

            // A non-partitioned topic.
            admin.ok(&["topics", "create", "acme/prod/plain"]).await;
            let topics = admin.ok(&["topics", "list", "acme/prod"]).await;
            assert!(
                lines(&topics).contains(&"persistent://acme/prod/plain"),
                "{topics}"
            );
            let topics = admin.ok(&["namespaces", "topics", "acme/prod"]).await;
            assert!(
                lines(&topics).contains(&"persistent://acme/prod/plain"),
                "{topics}"
            );
            let partitions = admin
                .json(&["topics", "get-partitions", "acme/prod/plain"])
                .await;
            assert_eq!(partitions["partitions"], 0, "{partitions}");

            // A tenant with namespaces cannot go without --force.
            let (status, _) = admin.fails(&["tenants", "delete", "acme"]).await;
            assert_eq!(status, 409);
            admin.ok(&["topics", "delete", "acme/prod/plain"]).await;
            admin
                .ok(&["topics", "delete-partitioned", "acme/prod/orders"])
                .await;
            let left = admin.ok(&["topics", "list-partitioned", "acme/prod"]).await;
            assert!(left.is_empty(), "{left}");
            admin.ok(&["namespaces", "delete", "acme/prod"]).await;
            admin.ok(&["tenants", "delete", "acme"]).await;
            let tenants = admin.ok(&["tenants", "list"]).await;
            assert!(!lines(&tenants).contains(&"acme"), "{tenants}");
        },
    )
    .await;
}

/// Produces `count` messages to `topic` with the Python client; returns
/// the last message's `ledger:entry`.
async fn produce(s: &StandaloneProcess, topic: &str, count: u32) -> String {
    let count = count.to_string();
    let args = [
        "--service-url",
        s.service_url(),
        "--timeout",
        "100",
        "--topic",
        topic,
        "--count",
        &count,
    ];
    let run = python::run("admin_produce.py", &args, SCRIPT_LIMIT).await;
    assert!(run.success(), "{}\n{}", run.report(), s.log_tail());
    run.output
        .lines()
        .find_map(|l| l.strip_prefix("LAST "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no LAST line\n{}", run.report()))
        .to_string()
}

/// `subscriptions.<sub>.msgBacklog` of a topic's stats.
async fn backlog(admin: &Admin<'_>, topic: &str, sub: &str) -> i64 {
    let stats = admin.json(&["topics", "stats", topic]).await;
    stats["subscriptions"][sub]["msgBacklog"]
        .as_i64()
        .unwrap_or_else(|| panic!("no backlog of {sub} in {stats}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_subscriptions_after_producing() {
    bounded(
        "stats_and_subscriptions_after_producing",
        TEST_LIMIT,
        async {
            let dir = TempDir::new().unwrap();
            let s = StandaloneProcess::start_in(&dir).await;
            let admin = Admin { s: &s };
            let topic = "admin-stats";

            admin.ok(&["topics", "create", topic]).await;
            admin
                .ok(&["subscriptions", "create", topic, "-s", "billing"])
                .await;
            admin
                .ok(&[
                    "subscriptions",
                    "create",
                    topic,
                    "-s",
                    "audit",
                    "--message-id",
                    "earliest",
                ])
                .await;
            let mut subs = lines(&admin.ok(&["subscriptions", "list", topic]).await)
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>();
            subs.sort();
            assert_eq!(subs, ["audit", "billing"]);

            let last = produce(&s, &format!("persistent://public/default/{topic}"), 10).await;
            let (ledger, entry) = last.split_once(':').unwrap();
            let (ledger, entry): (i64, i64) = (ledger.parse().unwrap(), entry.parse().unwrap());

            let stats = admin.json(&["topics", "stats", topic]).await;
            assert_eq!(stats["msgInCounter"], 10, "{stats}");
            assert_eq!(
                stats["subscriptions"]["billing"]["msgBacklog"], 10,
                "{stats}"
            );
            assert_eq!(stats["subscriptions"]["audit"]["msgBacklog"], 10, "{stats}");
            let table = admin.ok(&["topics", "stats", topic]).await;
            assert_eq!(
                row(&table, "msgInCounter"),
                ["msgInCounter", "10"],
                "{table}"
            );
            assert_eq!(row(&table, "billing")[2], "10", "{table}");
            assert!(table.contains("Publishers: none"), "{table}");

            let id = admin.json(&["topics", "last-message-id", topic]).await;
            assert_eq!(
                (id["ledgerId"].as_i64(), id["entryId"].as_i64()),
                (Some(ledger), Some(entry)),
                "{id}"
            );

            admin
                .ok(&[
                    "subscriptions",
                    "skip",
                    topic,
                    "-s",
                    "billing",
                    "--count",
                    "3",
                ])
                .await;
            assert_eq!(backlog(&admin, topic, "billing").await, 7);
            admin
                .ok(&["subscriptions", "skip-all", topic, "-s", "billing"])
                .await;
            assert_eq!(backlog(&admin, topic, "billing").await, 0);
            // Back to the sixth message: it and the four after it are backlog.
            let sixth = format!("{ledger}:{}", entry - 4);
            admin
                .ok(&[
                    "subscriptions",
                    "reset-cursor",
                    topic,
                    "-s",
                    "billing",
                    "--message-id",
                    &sixth,
                ])
                .await;
            assert_eq!(backlog(&admin, topic, "billing").await, 5);
            // An hour ago is before every message.
            admin
                .ok(&[
                    "subscriptions",
                    "reset-cursor",
                    topic,
                    "-s",
                    "billing",
                    "--time",
                    "1h",
                ])
                .await;
            assert_eq!(backlog(&admin, topic, "billing").await, 10);
            // Everything was published before now.
            admin
                .ok(&[
                    "subscriptions",
                    "expire",
                    topic,
                    "-s",
                    "audit",
                    "--seconds",
                    "0",
                ])
                .await;
            assert_eq!(backlog(&admin, topic, "audit").await, 0);

            let internal = admin.ok(&["topics", "internal-stats", topic]).await;
            assert!(internal.contains("Cursors:"), "{internal}");
            row(&internal, "billing");
            row(&internal, "audit");
            let internal = admin.json(&["topics", "internal-stats", topic]).await;
            assert!(internal["cursors"]["billing"].is_object(), "{internal}");

            let (status, reason) = admin
                .fails(&[
                    "subscriptions",
                    "skip",
                    topic,
                    "-s",
                    "no-such-sub",
                    "-n",
                    "1",
                ])
                .await;
            assert_eq!(status, 404, "{reason}");
            admin
                .ok(&["subscriptions", "delete", topic, "-s", "audit"])
                .await;
            assert_eq!(
                lines(&admin.ok(&["subscriptions", "list", topic]).await),
                ["billing"]
            );

            // A partitioned topic: the stats are summed over its partitions.
            admin
                .ok(&["topics", "create-partitioned", "admin-parts", "-p", "2"])
                .await;
            produce(&s, "persistent://public/default/admin-parts", 10).await;
            let stats = admin
                .json(&[
                    "topics",
                    "partitioned-stats",
                    "admin-parts",
                    "--per-partition",
                ])
                .await;
            assert_eq!(stats["metadata"]["partitions"], 2, "{stats}");
            assert_eq!(stats["msgInCounter"], 10, "{stats}");
            let table = admin
                .ok(&[
                    "topics",
                    "partitioned-stats",
                    "admin-parts",
                    "--per-partition",
                ])
                .await;
            assert_eq!(row(&table, "partitions"), ["partitions", "2"], "{table}");
            for p in 0..2 {
                row(
                    &table,
                    &format!("persistent://public/default/admin-parts-partition-{p}"),
                );
            }
        },
    )
    .await;
}

#[tokio::test]
async fn an_unreachable_or_bad_admin_url_is_an_error() {
    // Nothing listens on a port that was free a moment ago.
    let url = format!("http://127.0.0.1:{}", free_port());
    let run = strata_admin(&url, &["tenants", "list"]).await;
    assert_eq!(run.code, Some(1), "{}", run.report());
    assert!(
        run.stderr
            .contains("error: cannot reach the admin server at"),
        "{}",
        run.report()
    );
    let run = strata_admin("127.0.0.1:8080", &["tenants", "list"]).await;
    assert_eq!(run.code, Some(1), "{}", run.report());
    assert!(
        run.stderr.contains("error: bad admin URL"),
        "{}",
        run.report()
    );
    // A bad topic name is refused before any request is sent.
    let run = strata_admin(&url, &["topics", "stats", "a/b"]).await;
    assert_eq!(run.code, Some(1), "{}", run.report());
    assert!(run.stderr.contains("invalid name"), "{}", run.report());
    // Usage errors are clap's (status 2).
    let run = strata_admin(&url, &["topics", "create-partitioned", "t"]).await;
    assert_eq!(run.code, Some(2), "{}", run.report());
}
