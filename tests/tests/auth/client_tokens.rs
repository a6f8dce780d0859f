//! strata-client (and so `strata perf`) with token authentication, over
//! `pulsar://` and `pulsar+ssl://`: a granted token produces and consumes;
//! a wrongly signed, missing or empty token is refused with an
//! authentication error; TLS needs the trust file; a token file is read
//! again when the broker challenges an expired token, which keeps the
//! connection; `strata perf produce --token` runs against an
//! authentication-enabled standalone.

use std::time::{Duration, Instant};

use serde_json::Value;
use strata_client::{
    Authentication, Client, ClientError, ClientOptions, Consumer, ConsumerOptions, InitialPosition,
    Producer, ProducerOptions, TlsFailure, TlsOptions,
};
use strata_proto::pulsar::ServerError;
use strata_tests::fault::bounded;
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;

use crate::harness::{Admin, admin_cli, failures, secret_key, strata, token};
use crate::pki::{Pki, path};
use crate::{TEST_LIMIT, within};

const NS: &str = "acme/app";
const TOPIC: &str = "persistent://acme/app/client-tokens";

/// A standalone with token authentication, authorization, TLS ports, and
/// a refresh check every second; `acme/app` grants produce and consume to
/// the role `app`. Returns it with the secret's `file://` URL.
async fn standalone(dir: &TempDir, pki: &Pki) -> (StandaloneProcess, String) {
    let secret = secret_key(dir.path(), "secret.key").await;
    let admin_token = token(("--secret-key", &secret), "admin", Some("1h")).await;
    let mut flags = pki.standalone_flags();
    flags.extend(
        [
            "--authentication-enabled",
            "--authorization-enabled",
            "--superuser-roles",
            "admin",
            "--token-secret-key",
            &secret,
            "--authentication-refresh-check-seconds",
            "1",
        ]
        .map(String::from),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let s = StandaloneProcess::start_with(dir.path().join("data"), &flags).await;
    let su = [("STRATA_ADMIN_TOKEN", admin_token.as_str())];
    for args in [
        &[
            "tenants",
            "create",
            "acme",
            "--allowed-clusters",
            "standalone",
        ][..],
        &["namespaces", "create", NS],
        &[
            "namespaces",
            "grant-permission",
            NS,
            "--role",
            "app",
            "--actions",
            "produce,consume",
        ],
    ] {
        admin_cli(&s, args, &su).await.ok();
    }
    (s, secret)
}

fn with_auth(auth: Authentication) -> ClientOptions {
    ClientOptions {
        operation_timeout: Duration::from_secs(15),
        auth: Some(auth),
        ..ClientOptions::default()
    }
}

fn earliest() -> ConsumerOptions {
    ConsumerOptions {
        initial_position: InitialPosition::Earliest,
        ..ConsumerOptions::default()
    }
}

/// Sends `count` messages tagged `what` and receives each of them.
async fn round_trip(producer: &Producer, consumer: &mut Consumer, what: &str, count: usize) {
    let sent: Vec<Vec<u8>> = (0..count)
        .map(|i| format!("{what} {i}").into_bytes())
        .collect();
    for p in &sent {
        within(what, async { producer.send(p).await?.await }).await;
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let msg = within(what, consumer.receive()).await;
        within(what, consumer.ack(&msg.id)).await;
        if msg.payload.starts_with(what.as_bytes()) {
            got.push(msg.payload.to_vec());
        }
    }
    assert_eq!(got, sent, "{what}");
}

/// Connects, subscribes and round-trips `count` messages on `topic`.
async fn produce_and_consume(url: &str, opts: ClientOptions, what: &str, topic: &str) {
    let client = within(what, Client::connect(url, opts)).await;
    let mut consumer = within(what, client.subscribe(topic, what, earliest())).await;
    let producer = within(
        what,
        client.create_producer(topic, ProducerOptions::default()),
    )
    .await;
    round_trip(&producer, &mut consumer, what, 20).await;
    client.close().await;
}

async fn refused(url: &str, opts: ClientOptions, what: &str) -> ClientError {
    match tokio::time::timeout(Duration::from_secs(30), Client::connect(url, opts)).await {
        Ok(Ok(_)) => panic!("{what}: connected"),
        Ok(Err(e)) => e,
        Err(_) => panic!("{what}: no answer within 30s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_client_with_tokens_and_tls() {
    bounded("strata_client_tokens", TEST_LIMIT, async {
        let pki = Pki::new();
        let dir = TempDir::new().unwrap();
        let (mut s, secret) = standalone(&dir, &pki).await;
        let http = Admin::new(&s);
        let app = token(("--secret-key", &secret), "app", Some("1h")).await;
        let other_secret = secret_key(dir.path(), "other.key").await;
        let wrong = token(("--secret-key", &other_secret), "app", Some("1h")).await;
        let plain = s.service_url().to_string();
        let tls = s.service_url_tls().to_string();

        produce_and_consume(
            &plain,
            with_auth(Authentication::token(app.clone())),
            "plain-token",
            TOPIC,
        )
        .await;
        let tls_with_ca = |auth| ClientOptions {
            tls: TlsOptions {
                trust_certs_file: Some(pki.ca.clone()),
                ..TlsOptions::default()
            },
            ..with_auth(auth)
        };
        // Over TLS: the lookup answers the TLS URL, which the client follows.
        produce_and_consume(
            &tls,
            tls_with_ca(Authentication::token(app.clone())),
            "tls-token",
            TOPIC,
        )
        .await;

        // The role is checked too: app has nothing on public/default.
        let client = within(
            "connect",
            Client::connect(&plain, with_auth(Authentication::token(app.clone()))),
        )
        .await;
        let e = client
            .create_producer("persistent://public/default/x", ProducerOptions::default())
            .await
            .err()
            .expect("app produced to public/default");
        assert_eq!(
            e.server_error(),
            Some(ServerError::AuthorizationError),
            "{e}"
        );
        client.close().await;

        // Bad credentials: AuthenticationError, with the broker's reason.
        let bad_signature = http.metric(&failures("bad_signature")).await;
        let e = refused(
            &plain,
            with_auth(Authentication::token(wrong)),
            "a wrongly signed token",
        )
        .await;
        assert_eq!(
            e.server_error(),
            Some(ServerError::AuthenticationError),
            "{e}"
        );
        assert!(e.to_string().contains("signature"), "{e}");
        assert!(http.metric(&failures("bad_signature")).await > bad_signature);
        let e = refused(&plain, ClientOptions::default(), "no token").await;
        assert_eq!(
            e.server_error(),
            Some(ServerError::AuthenticationError),
            "{e}"
        );
        assert!(e.to_string().contains("no credentials"), "{e}");
        let e = refused(
            &tls,
            tls_with_ca(Authentication::token("not.a.jwt")),
            "a malformed token over TLS",
        )
        .await;
        assert_eq!(
            e.server_error(),
            Some(ServerError::AuthenticationError),
            "{e}"
        );
        // A token file that is empty or missing never reaches the broker.
        let empty = dir.path().join("empty.token");
        std::fs::write(&empty, "\n").unwrap();
        let e = refused(
            &plain,
            with_auth(Authentication::token_file(&empty)),
            "an empty token file",
        )
        .await;
        assert!(
            matches!(e, ClientError::Auth(_)) && e.to_string().contains("empty.token"),
            "{e}"
        );

        // TLS without the CA: the broker is not trusted.
        let e = refused(
            &tls,
            with_auth(Authentication::token(app.clone())),
            "TLS without the trust file",
        )
        .await;
        assert!(
            matches!(
                e,
                ClientError::Tls {
                    failure: TlsFailure::UntrustedServer(_),
                    ..
                }
            ),
            "{e}"
        );
        // A plain client on the TLS port, and a TLS client on the plain one.
        let tls_port_as_plain = tls.replacen("pulsar+ssl://", "pulsar://", 1);
        refused(
            &tls_port_as_plain,
            with_auth(Authentication::token(app.clone())),
            "plain on the TLS port",
        )
        .await;
        let plain_port_as_tls = plain.replacen("pulsar://", "pulsar+ssl://", 1);
        let e = refused(
            &plain_port_as_tls,
            tls_with_ca(Authentication::token(app.clone())),
            "TLS on the plain port",
        )
        .await;
        assert!(matches!(e, ClientError::Tls { .. }), "{e}");

        // strata perf produce with the token, plain and over TLS.
        perf_produce(&plain, &["--token", &app]).await;
        let app_file = dir.path().join("app.token");
        std::fs::write(&app_file, format!("{app}\n")).unwrap();
        perf_produce(
            &tls,
            &[
                "--token-file",
                path(&app_file),
                "--tls-trust-certs-file",
                path(&pki.ca),
            ],
        )
        .await;
        // And without a good one: a clear refusal.
        let run = strata(
            &perf_args(&plain, &["--token", "not.a.jwt"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            &[],
        )
        .await;
        assert_ne!(run.code, Some(0), "{}", run.report());
        assert!(
            run.stderr.contains("AuthenticationError") && run.stderr.contains("--token"),
            "{}",
            run.report()
        );
        assert!(s.is_running(), "{}", s.log_tail());
        s.stop_cleanly().await;
    })
    .await;
}

fn perf_args(url: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "perf",
        "produce",
        "--url",
        url,
        "--topic-prefix",
        "persistent://acme/app/perf",
        "--rate",
        "200",
        "--warmup",
        "0s",
        "--duration",
        "2s",
        "--drain-timeout",
        "20s",
        "--no-raw",
        "--json",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `strata perf produce` for 2 s at 200 msg/s: it must succeed, every
/// message acknowledged and none failed.
async fn perf_produce(url: &str, extra: &[&str]) {
    let args = perf_args(url, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = strata(&args, &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.report());
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e})\n{}", run.report()));
    let produced = report["produced"].as_u64().unwrap_or(0);
    assert!(produced > 0, "{}", run.report());
    assert_eq!(report["errors"].as_u64(), Some(0), "{}", run.report());
}

/// A connection whose token expires: answered from the token file (which
/// meanwhile holds a fresh token) it stays open and keeps producing; with
/// the same expired token it is closed by the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_client_refreshes_its_token_from_a_file() {
    bounded("strata_client_token_refresh", TEST_LIMIT, async {
        let pki = Pki::new();
        let dir = TempDir::new().unwrap();
        let (mut s, secret) = standalone(&dir, &pki).await;
        let http = Admin::new(&s);
        let key = ("--secret-key", secret.as_str());
        let short = token(key, "app", Some("4s")).await;
        let file = dir.path().join("app.token");
        std::fs::write(&file, &short).unwrap();
        let started = Instant::now();

        let renewed = Client::connect(
            s.service_url(),
            with_auth(Authentication::token_file(&file)),
        );
        let renewed = within("connect with the token file", renewed).await;
        let fixed = within(
            "connect with a fixed token",
            Client::connect(
                s.service_url(),
                with_auth(Authentication::token(short.clone())),
            ),
        )
        .await;
        let p_renewed = within(
            "producer",
            renewed.create_producer(TOPIC, ProducerOptions::default()),
        )
        .await;
        let p_fixed = within(
            "producer",
            fixed.create_producer(TOPIC, ProducerOptions::default()),
        )
        .await;
        let mut consumer =
            within("subscribe", renewed.subscribe(TOPIC, "refresh", earliest())).await;
        round_trip(&p_renewed, &mut consumer, "before expiry", 5).await;

        // Whoever renews tokens rewrites the file.
        let fresh = token(key, "app", Some("1h")).await;
        std::fs::write(&file, format!("{fresh}\n")).unwrap();
        // Past the expiry and two refresh checks (one to challenge, one to
        // close an unanswered challenge).
        let past = Duration::from_secs(4 + 4);
        tokio::time::sleep(past.saturating_sub(started.elapsed())).await;

        round_trip(&p_renewed, &mut consumer, "after expiry", 5).await;
        assert!(http.metric("strata_broker_auth_refreshes_total").await >= 1.0);
        // The fixed token answered the challenge with itself: expired, closed.
        let e = match p_fixed.send(b"with an expired token").await {
            Ok(receipt) => receipt.await.err(),
            Err(e) => Some(e),
        };
        let e = e.expect("a connection with an expired token still produced");
        assert_eq!(
            e.server_error(),
            Some(ServerError::AuthenticationError),
            "{e}"
        );
        assert!(e.to_string().contains("expired"), "{e}");
        assert!(http.metric(&failures("expired")).await >= 1.0);
        renewed.close().await;
        fixed.close().await;
        s.stop_cleanly().await;
    })
    .await;
}
