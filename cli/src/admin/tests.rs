//! Argument parsing of `strata admin` and the request paths it builds.

use clap::Parser;
use serde_json::json;

use super::namespaces::NamespacesCommand;
use super::subscriptions::SubscriptionsCommand;
use super::topics::TopicsCommand;
use super::*;

#[derive(Parser, Debug)]
struct TestCli {
    #[command(flatten)]
    admin: AdminArgs,
}

fn parse(args: &[&str]) -> Result<AdminArgs, clap::Error> {
    TestCli::try_parse_from(std::iter::once("admin").chain(args.iter().copied())).map(|c| c.admin)
}

#[test]
fn global_flags_go_before_or_after_the_command() {
    let a = parse(&["--json", "tenants", "list"]).unwrap();
    assert!(a.json);
    let a = parse(&["tenants", "list", "--json", "--admin-url", "http://h:1"]).unwrap();
    assert!(a.json);
    assert_eq!(a.admin_url, "http://h:1");
    // `--url` is the same flag; the TLS flags are global too.
    let a = parse(&[
        "--url",
        "https://h:8443",
        "tenants",
        "list",
        "--tls-trust-certs-file",
        "ca.pem",
        "--tls-cert-file",
        "c.pem",
        "--tls-key-file",
        "c.key",
    ])
    .unwrap();
    assert_eq!(a.admin_url, "https://h:8443");
    assert_eq!(a.tls.tls_trust_certs_file, Some("ca.pem".into()));
    assert_eq!(a.tls.tls_cert_file, Some("c.pem".into()));
    assert_eq!(a.tls.tls_key_file, Some("c.key".into()));
    // Only checks the default when the environment does not override it.
    if std::env::var_os("STRATA_ADMIN_URL").is_none() {
        let a = parse(&["brokers", "health"]).unwrap();
        assert_eq!(a.admin_url, "http://127.0.0.1:8080");
        assert!(!a.json);
    }
}

#[test]
fn short_topic_names_expand_to_full_paths() {
    let t = topic_arg("my-topic").unwrap();
    assert_eq!(
        topic_path(&t, &["stats"]),
        [
            "admin",
            "v2",
            "persistent",
            "public",
            "default",
            "my-topic",
            "stats"
        ]
    );
    let t = topic_arg("acme/prod/orders").unwrap();
    assert_eq!(
        topic_path(&t, &[]).join("/"),
        "admin/v2/persistent/acme/prod/orders"
    );
    let t = topic_arg("persistent://acme/prod/orders").unwrap();
    assert_eq!(t.to_string(), "persistent://acme/prod/orders");
    assert!(topic_arg("non-persistent://a/b/c").is_err());
    assert!(topic_arg("a/b").is_err());
    let ns = namespace_arg("acme/prod").unwrap();
    assert_eq!(
        namespace_path(&ns, &["topics"]).join("/"),
        "admin/v2/namespaces/acme/prod/topics"
    );
    assert!(namespace_arg("acme").is_err());
}

#[test]
fn partitions_may_be_negative_so_the_server_can_refuse_them() {
    let a = parse(&["topics", "create-partitioned", "t", "--partitions", "-1"]).unwrap();
    match a.group {
        Group::Topics(TopicsCommand::CreatePartitioned { topic, partitions }) => {
            assert_eq!((topic.as_str(), partitions), ("t", -1));
        }
        other => panic!("{other:?}"),
    }
    assert!(parse(&["topics", "create-partitioned", "t"]).is_err());
    assert!(parse(&["topics", "create-partitioned", "t", "-p", "many"]).is_err());
}

#[test]
fn reset_cursor_takes_exactly_one_target() {
    let base = ["subscriptions", "reset-cursor", "t", "-s", "sub"];
    let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
    match with(&["--time", "10m"]).unwrap().group {
        Group::Subscriptions(SubscriptionsCommand::ResetCursor {
            subscription,
            target,
            ..
        }) => {
            assert_eq!(subscription, "sub");
            assert_eq!(target.time.as_deref(), Some("10m"));
            assert!(target.message_id.is_none());
        }
        other => panic!("{other:?}"),
    }
    assert!(with(&["--message-id", "3:4"]).is_ok());
    assert!(with(&[]).is_err());
    assert!(with(&["--time", "10m", "--message-id", "3:4"]).is_err());
}

#[test]
fn namespace_policy_flags_become_pulsar_policies() {
    let a = parse(&[
        "namespaces",
        "create",
        "acme/prod",
        "--retention-time",
        "3h",
        "--retention-size",
        "-1",
        "--message-ttl",
        "1h",
        "--clusters",
        "standalone",
    ])
    .unwrap();
    let Group::Namespaces(NamespacesCommand::Create { policies, .. }) = a.group else {
        panic!("not a namespace creation");
    };
    assert_eq!(
        policies.to_json().unwrap(),
        Some(json!({
            "retention_policies": {"retentionTimeInMinutes": 180, "retentionSizeInMB": -1},
            "message_ttl_in_seconds": 3600,
            "replication_clusters": ["standalone"],
        }))
    );
    let a = parse(&["namespaces", "create", "acme/prod"]).unwrap();
    let Group::Namespaces(NamespacesCommand::Create { policies, .. }) = a.group else {
        panic!("not a namespace creation");
    };
    assert_eq!(policies.to_json().unwrap(), None);
    // One half of the retention pair alone leaves the other unlimited.
    let a = parse(&["namespaces", "create", "a/b", "--retention-time", "1h"]).unwrap();
    let Group::Namespaces(NamespacesCommand::Create { policies, .. }) = a.group else {
        panic!("not a namespace creation");
    };
    assert_eq!(
        policies.to_json().unwrap(),
        Some(json!({
            "retention_policies": {"retentionTimeInMinutes": 60, "retentionSizeInMB": -1},
        }))
    );
    let a = parse(&["namespaces", "create", "a/b", "--message-ttl", "soon"]).unwrap();
    let Group::Namespaces(NamespacesCommand::Create { policies, .. }) = a.group else {
        panic!("not a namespace creation");
    };
    assert!(policies.to_json().is_err());
}

#[test]
fn names_render_one_per_line_and_fields_as_pairs() {
    assert_eq!(render_names(&json!(["a", "b"])), "a\nb\n");
    assert_eq!(render_names(&json!([])), "");
    assert_eq!(render_fields(&json!({"partitions": 3})), "partitions  3\n");
    assert_eq!(render_fields(&json!("ok")), "ok\n");
}
