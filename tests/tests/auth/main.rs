//! Token authentication and role authorization of a real `strata
//! standalone`: keys and tokens made with `strata admin tokens` (which
//! tests that command too), the official Python client and raw frames on
//! the protocol port (`tests/python/auth_tokens.py`, `auth_refresh.py`),
//! plain HTTP and `strata admin` on the admin port, and the failure and
//! denial counters on `/metrics`. Also: `strata admin` over HTTPS
//! (`admin_https`), strata-client and `strata perf` with tokens and TLS
//! (`client_tokens`), and the `tls` method, roles from client certificates
//! (`tls_method`).
//!
//! Needs the `strata` binary (`cargo build -p strata`) and `python3` with
//! `pulsar-client==3.13.0`.

mod admin_https;
mod client_tokens;
mod harness;
mod pki;
mod tls_method;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use strata_tests::bookie::{free_port, strata_binary};
use strata_tests::fault::bounded;
use strata_tests::python;
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;

use harness::{
    Admin, SCRIPT_LIMIT, admin_cli, assert_script, denials, failures, file_url, key_pair,
    script_args, secret_key, strata, token,
};

const TEST_LIMIT: Duration = Duration::from_secs(600);
/// Bound on one client call in the strata-client cases.
const CALL_LIMIT: Duration = Duration::from_secs(30);

/// Awaits one strata-client call; panics with `what` if it fails or hangs.
async fn within<T>(what: &str, fut: impl Future<Output = strata_client::Result<T>>) -> T {
    match tokio::time::timeout(CALL_LIMIT, fut).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: no answer within {CALL_LIMIT:?}"),
    }
}

#[tokio::test]
async fn tokens_roles_and_grants() {
    bounded("tokens_roles_and_grants", TEST_LIMIT, async {
        let dir = TempDir::new().unwrap();
        let secret = secret_key(dir.path(), "secret.key").await;
        let other_secret = secret_key(dir.path(), "other.key").await;
        let key = ("--secret-key", secret.as_str());
        let admin_token = token(key, "admin", Some("1h")).await;
        let app = token(key, "app", Some("1h")).await;
        let reader = token(key, "reader", None).await;
        let app_b = token(key, "app-b", Some("1h")).await;
        let a_admin = token(key, "a-admin", Some("1h")).await;
        let wrong = token(("--secret-key", &other_secret), "app", Some("1h")).await;
        let expired = token(key, "app", Some("1s")).await;

        let mut s = StandaloneProcess::start_with(
            dir.path().join("data"),
            &[
                "--authentication-enabled",
                "--authorization-enabled",
                "--superuser-roles",
                "admin,ops",
                "--token-secret-key",
                &secret,
            ],
        )
        .await;
        let http = Admin::new(&s);

        // Tenants, namespaces and grants, set up through the CLI with the
        // superuser's token in STRATA_ADMIN_TOKEN.
        let su = [("STRATA_ADMIN_TOKEN", admin_token.as_str())];
        for args in [
            &[
                "tenants",
                "create",
                "tenant-a",
                "--admin-roles",
                "a-admin",
                "--allowed-clusters",
                "standalone",
            ][..],
            &[
                "tenants",
                "create",
                "tenant-b",
                "--allowed-clusters",
                "standalone",
            ],
            &["namespaces", "create", "tenant-a/ns"],
            &["namespaces", "create", "tenant-b/ns"],
            &[
                "namespaces",
                "grant-permission",
                "tenant-a/ns",
                "--role",
                "app",
                "--actions",
                "produce,consume",
            ],
            &[
                "namespaces",
                "grant-permission",
                "tenant-a/ns",
                "--role",
                "reader",
                "--actions",
                "consume",
            ],
            &[
                "namespaces",
                "grant-permission",
                "tenant-b/ns",
                "--role",
                "app-b",
                "--actions",
                "produce,consume",
            ],
            &[
                "namespaces",
                "grant-permission",
                "tenant-b/ns",
                "--role",
                "gone",
                "--actions",
                "produce",
            ],
            &[
                "namespaces",
                "revoke-permission",
                "tenant-b/ns",
                "--role",
                "gone",
            ],
        ] {
            admin_cli(&s, args, &su).await.ok();
        }
        let perms = admin_cli(
            &s,
            &["--json", "namespaces", "permissions", "tenant-a/ns"],
            &su,
        )
        .await
        .ok();
        let perms: Value = serde_json::from_str(&perms.stdout).unwrap();
        assert_eq!(
            perms,
            json!({"app": ["produce", "consume"], "reader": ["consume"]})
        );
        let su_token = Some(admin_token.as_str());
        let perms = http
            .request(su_token, "GET /admin/v2/namespaces/tenant-b/ns/permissions")
            .await;
        assert_eq!(perms.body, json!({"app-b": ["produce", "consume"]}));
        // The grant is in the namespace's policies as Pulsar's auth_policies.
        let policies = http
            .request(su_token, "GET /admin/v2/namespaces/tenant-a/ns")
            .await;
        assert_eq!(
            policies.body["auth_policies"]["namespace_auth"]["reader"],
            json!(["consume"])
        );
        let bad = http
            .call(
                su_token,
                Method::POST,
                "/admin/v2/namespaces/tenant-a/ns/permissions/x",
                Some(r#"["write"]"#),
            )
            .await;
        assert_eq!(bad.status, 400, "{bad:?}");

        // The protocol side, with the official client and raw frames.
        tokio::time::sleep(Duration::from_secs(2)).await; // `expired` is now past its exp.
        let topic_a = "persistent://tenant-a/ns/orders";
        let topic_b = "persistent://tenant-b/ns/secrets";
        let extra: Vec<String> = [
            format!("app={app}"),
            format!("reader={reader}"),
            format!("app_b={app_b}"),
            format!("expired={expired}"),
            format!("wrong={wrong}"),
        ]
        .into_iter()
        .flat_map(|t| ["--token".to_string(), t])
        .chain(
            [
                "--topic-a",
                topic_a,
                "--topic-b",
                topic_b,
                "--namespace-b",
                "tenant-b/ns",
            ]
            .map(String::from),
        )
        .collect();
        let run = python::run(
            "auth_tokens.py",
            &script_args(s.service_url(), &extra),
            SCRIPT_LIMIT,
        )
        .await;
        assert_script(&run, &mut s);

        // The admin side: 401 without (good) credentials, 403 for a role
        // without the right, 200 / 204 with it.
        let a = http.request(None, "GET /admin/v2/tenants").await;
        assert!(
            a.status == 401 && a.reason().contains("no credentials"),
            "{a:?}"
        );
        let a = http.request(Some(&expired), "GET /admin/v2/tenants").await;
        assert!(a.status == 401 && a.reason().contains("expired"), "{a:?}");
        let a = http
            .request(
                Some(&app),
                "GET /admin/v2/persistent/tenant-b/ns/secrets/stats",
            )
            .await;
        assert!(a.status == 403 && a.reason().contains("app"), "{a:?}");
        let stats_a = "/admin/v2/persistent/tenant-a/ns/orders/stats";
        let stats_b = "/admin/v2/persistent/tenant-b/ns/secrets/stats";
        let (app, reader, app_b, a_admin) =
            (Some(&*app), Some(&*reader), Some(&*app_b), Some(&*a_admin));
        http.expect_all(&[
            (None, "GET /admin/v2/brokers/health", 200),
            (None, "GET /metrics", 200),
            (Some(&*wrong), "GET /admin/v2/tenants", 401),
            (Some("garbage"), "GET /admin/v2/tenants", 401),
            (None, &format!("GET {stats_a}"), 401),
            (None, "PUT /admin/v2/tenants/x", 401),
            // app: produce + consume on tenant-a/ns.
            (app, &format!("GET {stats_a}"), 200),
            (app, "GET /admin/v2/namespaces/tenant-a/ns/topics", 200),
            (app, "GET /admin/v2/persistent/tenant-a/ns", 200),
            (app, &format!("GET {stats_b}"), 403),
            (app, "GET /admin/v2/namespaces/tenant-b/ns/topics", 403),
            (app, "GET /admin/v2/persistent/tenant-b/ns", 403),
            (app, "GET /admin/v2/namespaces/tenant-b", 403),
            (app, "GET /admin/v2/namespaces/tenant-b/ns", 403),
            (app, "GET /admin/v2/tenants", 403),
            (app, "GET /admin/v2/tenants/tenant-a", 403),
            (app, "GET /admin/v2/namespaces/tenant-a/ns", 403),
            (app, "GET /admin/v2/clusters", 403),
            (app, "PUT /admin/v2/persistent/tenant-a/ns/made-by-app", 403),
            (
                app,
                "POST /admin/v2/namespaces/tenant-a/ns/permissions/app",
                403,
            ),
            // Nothing is said about a namespace that does not exist either.
            (app, "GET /admin/v2/persistent/nowhere/ns/x/stats", 403),
            // reader: consume only; app-b: nothing on tenant A.
            (
                reader,
                "GET /admin/v2/persistent/tenant-a/ns/orders/subscriptions",
                200,
            ),
            (reader, &format!("GET {stats_a}"), 200),
            (
                app_b,
                "GET /admin/v2/persistent/tenant-a/ns/orders/subscriptions",
                403,
            ),
            // a-admin: tenant A's admin.
            (
                a_admin,
                "PUT /admin/v2/persistent/tenant-a/ns/made-by-admin",
                204,
            ),
            (a_admin, "GET /admin/v2/namespaces/tenant-a", 200),
            (a_admin, "GET /admin/v2/tenants/tenant-a", 200),
            (
                a_admin,
                "GET /admin/v2/namespaces/tenant-a/ns/permissions",
                200,
            ),
            (a_admin, &format!("GET {stats_b}"), 403),
            (a_admin, "GET /admin/v2/tenants/tenant-b", 403),
            (a_admin, "PUT /admin/v2/tenants/tenant-c", 403),
            (a_admin, "DELETE /admin/v2/tenants/tenant-a", 403),
            // The superuser may do anything.
            (su_token, &format!("GET {stats_b}"), 200),
            (su_token, "GET /admin/v2/tenants", 200),
        ])
        .await;
        // Revoking takes the right away at once.
        admin_cli(
            &s,
            &[
                "namespaces",
                "revoke-permission",
                "tenant-a/ns",
                "--role",
                "reader",
            ],
            &su,
        )
        .await
        .ok();
        http.expect_all(&[(reader, &format!("GET {stats_a}"), 403)])
            .await;

        // The CLI: no token, a role without the right, a token file.
        let run = admin_cli(&s, &["tenants", "list"], &[]).await;
        assert_eq!(run.code, Some(1), "{}", run.report());
        assert!(run.stderr.contains("error: 401"), "{}", run.report());
        let run = admin_cli(&s, &["--token", app.unwrap(), "tenants", "list"], &[]).await;
        assert_eq!(run.code, Some(1), "{}", run.report());
        assert!(run.stderr.contains("error: 403"), "{}", run.report());
        let token_file = dir.path().join("admin.token");
        std::fs::write(&token_file, format!("{admin_token}\n")).unwrap();
        let run = admin_cli(
            &s,
            &[
                "--token-file",
                token_file.to_str().unwrap(),
                "tenants",
                "list",
            ],
            &[],
        )
        .await
        .ok();
        assert!(
            run.stdout.contains("tenant-a") && run.stdout.contains("tenant-b"),
            "{}",
            run.report()
        );

        // Every refusal above was counted.
        for reason in [
            "expired",
            "bad_signature",
            "malformed",
            "missing",
            "unsupported_method",
        ] {
            let v = http.metric(&failures(reason)).await;
            assert!(v >= 1.0, "no authentication failure counted as {reason}");
        }
        for op in [
            "produce",
            "consume",
            "lookup",
            "partitioned_metadata",
            "topics_of_namespace",
            "admin",
        ] {
            let v = http.metric(&denials(op)).await;
            assert!(v >= 1.0, "no authorization denial counted for {op}");
        }
        assert!(
            http.metric("strata_broker_authentication_success_total")
                .await
                >= 1.0
        );
        s.stop_cleanly().await;
    })
    .await;
}

/// RS256 and ES256: the broker holds the public key, tokens are signed
/// with the private key; a token of another key pair, or an HS256 token,
/// is refused.
#[tokio::test]
async fn public_key_tokens() {
    bounded("public_key_tokens", TEST_LIMIT, async {
        let dir = TempDir::new().unwrap();
        let hs_secret = secret_key(dir.path(), "hs.key").await;
        for alg in ["RS256", "ES256"] {
            let (private, public) = key_pair(dir.path(), alg, alg).await;
            let (other_private, _) = key_pair(dir.path(), &format!("other-{alg}"), alg).await;
            let key = ("--private-key", private.as_str());
            let app = token(key, "app", Some("1h")).await;
            let wrong = token(("--private-key", &other_private), "app", Some("1h")).await;
            let hs = token(("--secret-key", &hs_secret), "app", Some("1h")).await;
            let expired = token(key, "app", Some("1s")).await;
            // `strata admin tokens validate` agrees with the broker.
            let run = strata(
                &[
                    "admin",
                    "tokens",
                    "validate",
                    &app,
                    "--public-key",
                    &public,
                    "--token-public-alg",
                    alg,
                ],
                &[],
            )
            .await
            .ok();
            assert!(run.stdout.contains("role app"), "{}", run.report());
            let run = strata(
                &[
                    "admin",
                    "tokens",
                    "validate",
                    &wrong,
                    "--public-key",
                    &public,
                    "--token-public-alg",
                    alg,
                ],
                &[],
            )
            .await;
            assert_eq!(run.code, Some(1), "{}", run.report());
            let shown = strata(&["admin", "tokens", "show", &app], &[]).await.ok();
            assert!(
                shown.stdout.contains(&format!("\"alg\": \"{alg}\"")),
                "{}",
                shown.report()
            );
            assert!(
                shown.stdout.contains("\"sub\": \"app\""),
                "{}",
                shown.report()
            );

            let mut s = StandaloneProcess::start_with(
                dir.path().join(format!("data-{alg}")),
                &[
                    "--authentication-enabled",
                    "--token-public-key",
                    &public,
                    "--token-public-alg",
                    alg,
                ],
            )
            .await;
            tokio::time::sleep(Duration::from_secs(2)).await; // `expired` is past.
            let http = Admin::new(&s);
            // Authentication only: any valid token may do anything.
            http.expect_all(&[
                (Some(&*app), "GET /admin/v2/tenants", 200),
                (Some(&*wrong), "GET /admin/v2/tenants", 401),
                (Some(&*hs), "GET /admin/v2/tenants", 401),
                (Some(&*expired), "GET /admin/v2/tenants", 401),
            ])
            .await;
            let extra: Vec<String> = [
                format!("app={app}"),
                format!("reader={app}"),
                format!("app_b={app}"),
                format!("expired={expired}"),
                format!("wrong={wrong}"),
            ]
            .into_iter()
            .flat_map(|t| ["--token".to_string(), t])
            .chain(
                [
                    "--topic-a",
                    "persistent://public/default/signed",
                    "--topic-b",
                    "persistent://public/default/unused",
                    "--namespace-b",
                    "public/default",
                    "--case",
                    "valid",
                    "--case",
                    "bad_tokens",
                ]
                .map(String::from),
            )
            .collect();
            let run = python::run(
                "auth_tokens.py",
                &script_args(s.service_url(), &extra),
                SCRIPT_LIMIT,
            )
            .await;
            assert_script(&run, &mut s);
            assert!(http.metric(&failures("bad_signature")).await >= 2.0);
            s.stop_cleanly().await;
        }
    })
    .await;
}

/// AUTH_CHALLENGE refresh with 4-second tokens and a check every second.
#[tokio::test]
async fn token_refresh() {
    bounded("token_refresh", TEST_LIMIT, async {
        let dir = TempDir::new().unwrap();
        let secret = secret_key(dir.path(), "secret.key").await;
        let mut s = StandaloneProcess::start_with(
            dir.path().join("data"),
            &[
                "--authentication-enabled",
                "--token-secret-key",
                &secret,
                "--authentication-refresh-check-seconds",
                "1",
            ],
        )
        .await;
        let http = Admin::new(&s);
        let bin = strata_binary().display().to_string();
        let service_url = s.service_url().to_string();
        let args = |case: &str| {
            script_args(
                &service_url,
                &[
                    "--strata-bin",
                    &bin,
                    "--secret-key",
                    &secret,
                    "--case",
                    case,
                ]
                .map(String::from),
            )
        };

        // A supplier of fresh tokens keeps the connection: refreshed, and
        // never closed for its token.
        let run = python::run("auth_refresh.py", &args("refresh"), SCRIPT_LIMIT).await;
        assert_script(&run, &mut s);
        assert!(http.metric("strata_broker_auth_refreshes_total").await >= 1.0);
        assert!(http.metric("strata_broker_auth_challenges_total").await >= 1.0);
        for reason in [
            "expired",
            "refresh_timeout",
            "refresh_unsupported",
            "role_changed",
        ] {
            assert_eq!(
                http.metric(&failures(reason)).await,
                0.0,
                "a refreshing client was refused ({reason})"
            );
        }

        // A supplier of one stale token: refused at the refresh.
        let refreshes = http.metric("strata_broker_auth_refreshes_total").await;
        let run = python::run("auth_refresh.py", &args("stale"), SCRIPT_LIMIT).await;
        assert_script(&run, &mut s);
        assert!(http.metric(&failures("expired")).await >= 1.0);
        assert_eq!(
            http.metric("strata_broker_auth_refreshes_total").await,
            refreshes
        );

        // By hand: answered, unanswered, another role, no refresh support.
        let run = python::run("auth_refresh.py", &args("raw"), SCRIPT_LIMIT).await;
        assert_script(&run, &mut s);
        for reason in ["refresh_timeout", "role_changed", "refresh_unsupported"] {
            assert!(
                http.metric(&failures(reason)).await >= 1.0,
                "{reason} not counted"
            );
        }
        s.stop_cleanly().await;
    })
    .await;
}

/// Off by default; settings that cannot work keep the standalone from
/// starting, with a reason.
#[tokio::test]
async fn defaults_and_bad_settings() {
    bounded("defaults_and_bad_settings", TEST_LIMIT, async {
        let dir = TempDir::new().unwrap();
        let s = StandaloneProcess::start_in(&dir).await;
        let http = Admin::new(&s);
        http.expect_all(&[(None, "GET /admin/v2/tenants", 200)])
            .await;
        drop(s);

        let data = dir.path().join("bad").display().to_string();
        let (broker, admin) = (free_port().to_string(), free_port().to_string());
        let missing: PathBuf = dir.path().join("no-such.key");
        let missing = file_url(&missing);
        let cases: [(&[&str], &str); 3] = [
            (
                &["--authorization-enabled"],
                "authorization needs authentication",
            ),
            (&["--authentication-enabled"], "no key is set"),
            (
                &["--authentication-enabled", "--token-secret-key", &missing],
                "no-such.key",
            ),
        ];
        for (flags, want) in cases {
            let mut args = vec![
                "standalone",
                "--data-dir",
                &data,
                "--broker-port",
                &broker,
                "--admin-port",
                &admin,
            ];
            args.extend_from_slice(flags);
            let run = strata(&args, &[]).await;
            assert_ne!(run.code, Some(0), "{}", run.report());
            assert!(
                run.stderr.contains(want),
                "expected {want:?}: {}",
                run.report()
            );
        }
    })
    .await;
}
