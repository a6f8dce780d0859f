//! Pulsar's `tls` authentication end to end: a standalone with
//! `--authentication-providers tls`, authorization on and
//! `--tls-require-trusted-client-cert`. The role is the subject CN of the
//! client certificate: `alice` (signed by the test CA, granted produce and
//! consume on one namespace) produces and consumes there and nowhere else;
//! `mallory` (signed by the CA, no grants) connects but is refused with an
//! authorization error; no certificate, or a self-signed one claiming
//! `alice`, is refused in the handshake. With the official Python client
//! (`tests/python/tls_auth.py`), strata-client and `strata admin`.

use std::time::Duration;

use strata_client::{
    Authentication, Client, ClientError, ClientOptions, ConsumerOptions, InitialPosition,
    ProducerOptions, TlsFailure, TlsOptions,
};
use strata_proto::pulsar::ServerError;
use strata_tests::fault::bounded;
use strata_tests::python;
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;

use crate::harness::{Admin, SCRIPT_LIMIT, assert_script, denials, failures, script_args, strata};
use crate::pki::{CertPair, Pki, path};
use crate::{TEST_LIMIT, within};

const NS: &str = "acme/orders";
const TOPIC: &str = "persistent://acme/orders/tls-auth";
/// A namespace of the same tenant where alice has no grant.
const OTHER_TOPIC: &str = "persistent://acme/other/tls-auth";

/// Runs `tls_auth.py --expect EXPECT` against `url` as `cert`'s role.
async fn python_client(
    url: &str,
    pki: &Pki,
    cert: Option<&CertPair>,
    expect: &str,
    s: &mut StandaloneProcess,
) {
    let mut extra: Vec<String> = [
        "--expect",
        expect,
        "--trust-certs",
        path(&pki.ca),
        "--topic",
        TOPIC,
        "--other-topic",
        OTHER_TOPIC,
    ]
    .map(String::from)
    .to_vec();
    if let Some((c, k)) = cert {
        extra.extend(["--cert", path(c), "--key", path(k)].map(String::from));
    }
    let run = python::run("tls_auth.py", &script_args(url, &extra), SCRIPT_LIMIT).await;
    assert_script(&run, s);
}

/// strata-client options for `pulsar+ssl://` as `cert`'s role.
fn tls_options(pki: &Pki, cert: Option<&CertPair>) -> ClientOptions {
    ClientOptions {
        operation_timeout: Duration::from_secs(15),
        auth: cert.map(|_| Authentication::Tls),
        tls: TlsOptions {
            trust_certs_file: Some(pki.ca.clone()),
            cert_file: cert.map(|c| c.0.clone()),
            key_file: cert.map(|c| c.1.clone()),
            allow_insecure: false,
        },
        ..ClientOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_method_roles_from_client_certificates() {
    bounded("tls_method_roles", TEST_LIMIT, async {
        let pki = Pki::new();
        let ops = pki.client("ops", true);
        let alice = pki.client("alice", true);
        let mallory = pki.client("mallory", true);
        let forged_alice = pki.client("alice", false);
        let dir = TempDir::new().unwrap();
        let mut flags = pki.standalone_flags();
        flags.extend(
            [
                "--tls-require-trusted-client-cert",
                "--authentication-enabled",
                "--authentication-providers",
                "tls",
                "--authorization-enabled",
                "--superuser-roles",
                "ops",
            ]
            .map(String::from),
        );
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let mut s = StandaloneProcess::start_with(dir.path().join("data"), &flags).await;
        let tls_url = s.service_url_tls().to_string();
        let http = Admin::new(&s);

        // The set-up, over HTTPS as the superuser `ops` by its certificate.
        let https = s.admin_url_tls().to_string();
        let as_ops = |args: &[&'static str]| {
            let mut all = vec![
                "admin",
                "--url",
                https.as_str(),
                "--tls-trust-certs-file",
                path(&pki.ca),
                "--tls-cert-file",
                path(&ops.0),
                "--tls-key-file",
                path(&ops.1),
            ];
            all.extend_from_slice(args);
            all
        };
        for args in [
            &[
                "tenants",
                "create",
                "acme",
                "--allowed-clusters",
                "standalone",
            ][..],
            &["namespaces", "create", NS],
            &["namespaces", "create", "acme/other"],
            &[
                "namespaces",
                "grant-permission",
                NS,
                "--role",
                "alice",
                "--actions",
                "produce,consume",
            ],
        ] {
            strata(&as_ops(args), &[]).await.ok();
        }
        // Without a certificate the admin HTTPS port refuses the handshake.
        let run = strata(
            &[
                "admin",
                "--url",
                &https,
                "--tls-trust-certs-file",
                path(&pki.ca),
                "tenants",
                "list",
            ],
            &[],
        )
        .await;
        assert_eq!(run.code, Some(1), "{}", run.report());
        assert!(
            run.stderr.contains("requires a client certificate")
                && run.stderr.contains("--tls-cert-file"),
            "{}",
            run.report()
        );

        // The official client.
        python_client(&tls_url, &pki, Some(&alice), "ok", &mut s).await;
        // The client asks for the partitioned metadata first: that is
        // where mallory's role is refused.
        let denied = denials("partitioned_metadata");
        let before = http.metric(&denied).await;
        python_client(&tls_url, &pki, Some(&mallory), "unauthorized", &mut s).await;
        assert!(http.metric(&denied).await > before);
        python_client(&tls_url, &pki, None, "refused", &mut s).await;
        python_client(&tls_url, &pki, Some(&forged_alice), "refused", &mut s).await;
        // AuthenticationTLS over the plain port: no certificate there.
        let no_cert = http.metric(&failures("no_client_cert")).await;
        let plain = s.service_url().to_string();
        python_client(&plain, &pki, Some(&alice), "refused", &mut s).await;
        assert!(http.metric(&failures("no_client_cert")).await > no_cert);

        // strata-client: alice round-trips, mallory is refused by role,
        // no certificate by the handshake.
        let client = within(
            "connect as alice",
            Client::connect(&tls_url, tls_options(&pki, Some(&alice))),
        )
        .await;
        let mut consumer = within(
            "subscribe as alice",
            client.subscribe(
                TOPIC,
                "strata-client",
                ConsumerOptions {
                    initial_position: InitialPosition::Earliest,
                    ..ConsumerOptions::default()
                },
            ),
        )
        .await;
        let producer = within(
            "producer as alice",
            client.create_producer(TOPIC, ProducerOptions::default()),
        )
        .await;
        let payload = b"from strata-client as alice".to_vec();
        within("send", async { producer.send(&payload).await?.await }).await;
        loop {
            let msg = within("receive", consumer.receive()).await;
            within("ack", consumer.ack(&msg.id)).await;
            if msg.payload.as_ref() == payload.as_slice() {
                break;
            }
        }
        let e = client
            .create_producer(OTHER_TOPIC, ProducerOptions::default())
            .await
            .err()
            .expect("alice produced outside her namespace");
        assert_eq!(
            e.server_error(),
            Some(ServerError::AuthorizationError),
            "{e}"
        );
        client.close().await;

        let client = within(
            "connect as mallory",
            Client::connect(&tls_url, tls_options(&pki, Some(&mallory))),
        )
        .await;
        let e = client
            .create_producer(TOPIC, ProducerOptions::default())
            .await
            .err()
            .expect("mallory produced");
        assert_eq!(
            e.server_error(),
            Some(ServerError::AuthorizationError),
            "{e}"
        );
        assert!(e.to_string().contains("mallory"), "{e}");
        client.close().await;

        let e = Client::connect(&tls_url, tls_options(&pki, None))
            .await
            .err()
            .expect("a client without a certificate connected");
        assert!(
            matches!(
                e,
                ClientError::Tls {
                    failure: TlsFailure::ClientCertRequired,
                    ..
                }
            ),
            "{e}"
        );
        let e = Client::connect(&tls_url, tls_options(&pki, Some(&forged_alice)))
            .await
            .err()
            .expect("a self-signed certificate connected");
        assert!(
            matches!(
                e,
                ClientError::Tls {
                    failure: TlsFailure::ClientCertRefused(_),
                    ..
                }
            ),
            "{e}"
        );
        assert!(s.is_running(), "{}", s.log_tail());
        s.stop_cleanly().await;
    })
    .await;
}

/// The tls provider without a trust file cannot authenticate anyone: the
/// standalone refuses to start, naming the flag.
#[tokio::test]
async fn tls_provider_needs_a_trust_file() {
    bounded("tls_provider_needs_a_trust_file", TEST_LIMIT, async {
        let pki = Pki::new();
        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data").display().to_string();
        let run = strata(
            &[
                "standalone",
                "--data-dir",
                &data,
                "--broker-port",
                "0",
                "--admin-port",
                "0",
                "--broker-port-tls",
                "0",
                "--tls-cert-file",
                path(&pki.server.0),
                "--tls-key-file",
                path(&pki.server.1),
                "--authentication-enabled",
                "--authentication-providers",
                "tls",
            ],
            &[],
        )
        .await;
        assert_ne!(run.code, Some(0), "{}", run.report());
        assert!(
            run.stderr.contains("--tls-trust-certs-file"),
            "{}",
            run.report()
        );
        let run = strata(
            &[
                "standalone",
                "--data-dir",
                &data,
                "--authentication-enabled",
                "--authentication-providers",
                "tls,kerberos",
            ],
            &[],
        )
        .await;
        assert_ne!(run.code, Some(0), "{}", run.report());
        assert!(run.stderr.contains("kerberos"), "{}", run.report());
    })
    .await;
}
