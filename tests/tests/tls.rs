//! TLS on a real `strata standalone`: the `pulsar+ssl://` port with the
//! official Python client (`tests/python/tls_client.py`), the admin HTTPS
//! port with reqwest, client-certificate authentication, and what happens
//! to clients that do not speak TLS, do not trust the server, or are not
//! trusted: each fails cleanly, and the listener goes on serving everyone
//! else.
//!
//! The certificates are made here (rcgen): a CA, a server certificate for
//! 127.0.0.1 and localhost, a client certificate signed by the CA (CN
//! [`ROLE`]) and a self-signed client certificate nobody trusts.
//!
//! Needs `python3` with `pulsar-client==3.13.0` and the `strata` binary, as
//! `tests/pulsar_python.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use serde_json::Value;
use strata_tests::bookie::strata_binary;
use strata_tests::fault::{bounded, seed};
use strata_tests::python::{self, ScriptRun};
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(240);
const SCRIPT_LIMIT: Duration = Duration::from_secs(90);
/// The subject CN of the trusted client certificate: its role.
const ROLE: &str = "tls-app-1";
/// What the broker logs for every failed handshake.
const HANDSHAKE_FAILED: &str = "TLS handshake failed";

/// The certificate files of one test.
struct Pki {
    _dir: TempDir,
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    /// Signed by the CA, CN = [`ROLE`].
    client: (PathBuf, PathBuf),
    /// Self-signed: no CA vouches for it.
    rogue: (PathBuf, PathBuf),
    /// A key that belongs to no certificate above.
    stray_key: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new().unwrap();
        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Strata test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = Issuer::new(ca_params, ca_key);
        let issue = |name: &str, sans: &[&str], cn: &str, by_ca: bool| {
            let mut params =
                CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![if sans.is_empty() {
                ExtendedKeyUsagePurpose::ClientAuth
            } else {
                ExtendedKeyUsagePurpose::ServerAuth
            }];
            let key = KeyPair::generate().unwrap();
            let cert = if by_ca {
                params.signed_by(&key, &ca).unwrap()
            } else {
                params.self_signed(&key).unwrap()
            };
            (
                write(&format!("{name}.pem"), cert.pem()),
                write(&format!("{name}.key"), key.serialize_pem()),
            )
        };
        let server = issue("server", &["127.0.0.1", "localhost"], "localhost", true);
        let client = issue("client", &[], ROLE, true);
        let rogue = issue("rogue", &[], "rogue", false);
        let stray_key = write("stray.key", KeyPair::generate().unwrap().serialize_pem());
        Pki {
            ca: write("ca.pem", ca_cert.pem()),
            server,
            client,
            rogue,
            stray_key,
            _dir: dir,
        }
    }

    /// The standalone flags of both TLS ports with this PKI, then `extra`.
    fn flags(&self, extra: &[&str]) -> Vec<String> {
        let mut f: Vec<String> = [
            "--broker-port-tls",
            "0",
            "--admin-port-tls",
            "0",
            "--tls-cert-file",
            path(&self.server.0),
            "--tls-key-file",
            path(&self.server.1),
            "--tls-trust-certs-file",
            path(&self.ca),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        f.extend(extra.iter().map(|s| s.to_string()));
        f
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

async fn start(dir: &TempDir, flags: &[String], envs: &[(String, String)]) -> StandaloneProcess {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    StandaloneProcess::start_with_env(dir.path().join("data"), &flags, envs).await
}

/// How the script's client is set up.
#[derive(Default)]
struct ClientSetup<'a> {
    trust: Option<&'a Path>,
    cert: Option<&'a (PathBuf, PathBuf)>,
}

/// Runs `tls_client.py --expect <expect>` against `url`.
async fn run_client(url: &str, expect: &str, setup: ClientSetup<'_>, seed: u64) -> ScriptRun {
    let mut args: Vec<String> = vec![
        "--service-url".into(),
        url.into(),
        "--timeout".into(),
        (SCRIPT_LIMIT.as_secs() - 15).to_string(),
        "--seed".into(),
        seed.to_string(),
        "--expect".into(),
        expect.into(),
    ];
    if let Some(ca) = setup.trust {
        args.extend(["--trust-certs".into(), path(ca).into()]);
    }
    if let Some((cert, key)) = setup.cert {
        args.extend([
            "--cert".into(),
            path(cert).into(),
            "--key".into(),
            path(key).into(),
        ]);
    }
    python::run("tls_client.py", &args, SCRIPT_LIMIT).await
}

/// Panics with the script's output and the standalone's log unless the
/// script succeeded and the standalone still runs.
fn assert_passed(what: &str, run: &ScriptRun, s: &mut StandaloneProcess) {
    assert!(
        run.success(),
        "{what}: {} failed\n{}\n{}",
        run.name,
        run.report(),
        s.log_tail()
    );
    assert!(
        s.is_running(),
        "{what}: the standalone is gone\n{}",
        s.log_tail()
    );
    println!("{what}: {}", run.output.trim_end());
}

/// How many handshakes the broker logged as failed so far.
fn failed_handshakes(s: &StandaloneProcess) -> usize {
    s.log().matches(HANDSHAKE_FAILED).count()
}

/// Waits until the broker has logged more than `before` failed handshakes.
async fn wait_failed_handshake(s: &StandaloneProcess, before: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while failed_handshakes(s) <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the broker logged no failed TLS handshake\n{}",
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn host_port(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

/// Writes `bytes` (if any) to `address` and reads until the server closes
/// the connection; returns what it sent. Panics if it keeps it open.
async fn send_and_read_to_end(address: &str, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(address).await.unwrap();
    if !bytes.is_empty() {
        // The server may close before taking it all.
        let _ = tcp.write_all(bytes).await;
    }
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the TLS port kept a connection open that sent {} bytes of non-TLS",
        bytes.len()
    );
    got
}

/// What a TLS server may answer to a client that is not one: nothing, or
/// TLS alert records (content type 21), never anything else (a Pulsar
/// frame, an HTTP answer).
fn assert_no_answer_but_alerts(got: &[u8], what: &str) {
    let mut rest = got;
    while !rest.is_empty() {
        assert!(
            rest.len() >= 5 && rest[0] == 21,
            "{what}: the TLS port answered {got:02x?}"
        );
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        assert!(rest.len() >= 5 + len, "{what}: truncated record {got:02x?}");
        rest = &rest[5 + len..];
    }
}

/// A plain Pulsar CONNECT frame (total size, command size, BaseCommand
/// type=CONNECT with client_version "x" and protocol_version 21).
fn plain_connect_frame() -> Vec<u8> {
    // BaseCommand { type (1) = CONNECT (2), connect (2) = { client_version (1) = "x", protocol_version (4) = 21 } }
    let connect = [0x0a, 0x01, b'x', 0x20, 21];
    let mut command = vec![0x08, 0x02, 0x12, connect.len() as u8];
    command.extend_from_slice(&connect);
    let mut frame = Vec::new();
    frame.extend_from_slice(&((command.len() + 4) as u32).to_be_bytes());
    frame.extend_from_slice(&(command.len() as u32).to_be_bytes());
    frame.extend_from_slice(&command);
    frame
}

/// The Python client over `pulsar+ssl://`: with the CA it produces and
/// consumes (lookups answer with the TLS URL, or it could not connect to
/// the topic's broker), with or without a client certificate; the plain
/// port serves beside it; a client without the CA, or with a certificate no
/// CA vouches for, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_over_tls_produces_and_consumes() {
    bounded("python_client_over_tls", LIMIT, async {
        let seed = seed("python_client_over_tls", 0x7150_0001);
        let pki = Pki::new();
        let dir = TempDir::new().unwrap();
        let mut s = start(&dir, &pki.flags(&[]), &[]).await;
        let tls = s.service_url_tls().to_string();
        assert_eq!(
            host_port(&tls).rsplit_once(':').map(|(h, _)| h),
            Some("127.0.0.1"),
            "{tls}"
        );

        let trusted = ClientSetup {
            trust: Some(&pki.ca),
            ..Default::default()
        };
        let run = run_client(&tls, "ok", trusted, seed).await;
        assert_passed("TLS client with the CA", &run, &mut s);

        let with_cert = ClientSetup {
            trust: Some(&pki.ca),
            cert: Some(&pki.client),
        };
        let run = run_client(&tls, "ok", with_cert, seed).await;
        assert_passed("TLS client with a trusted certificate", &run, &mut s);

        let plain = s.service_url().to_string();
        let run = run_client(&plain, "ok", ClientSetup::default(), seed).await;
        assert_passed("plain client on the plain port", &run, &mut s);

        let before = failed_handshakes(&s);
        let run = run_client(&tls, "refused", ClientSetup::default(), seed).await;
        assert_passed("TLS client without the CA", &run, &mut s);
        wait_failed_handshake(&s, before, "TLS client without the CA").await;

        let before = failed_handshakes(&s);
        let rogue = ClientSetup {
            trust: Some(&pki.ca),
            cert: Some(&pki.rogue),
        };
        let run = run_client(&tls, "refused", rogue, seed).await;
        assert_passed("TLS client with an untrusted certificate", &run, &mut s);
        wait_failed_handshake(&s, before, "untrusted client certificate").await;

        s.stop_cleanly().await;
    })
    .await;
}

/// Plain TCP on the TLS port: a Pulsar CONNECT, random bytes, a client that
/// sends nothing, a plain `pulsar://` Python client. Each is closed (after
/// at most a TLS alert), stalled handshakes hold up nobody, and a TLS
/// client is served afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_on_the_tls_port_fails_cleanly() {
    bounded("plain_tcp_on_the_tls_port", LIMIT, async {
        let seed = seed("plain_tcp_on_the_tls_port", 0x7150_0002);
        let mut rng = StdRng::seed_from_u64(seed);
        let pki = Pki::new();
        let dir = TempDir::new().unwrap();
        let mut s = start(&dir, &pki.flags(&["--tls-handshake-timeout", "20s"]), &[]).await;
        let tls = s.service_url_tls().to_string();
        let address = host_port(&tls).to_string();

        // Clients that open the connection and say nothing: their
        // handshakes stall while others are served.
        let mut silent = Vec::new();
        for _ in 0..3 {
            let address = address.clone();
            silent.push(tokio::spawn(async move {
                send_and_read_to_end(&address, &[]).await
            }));
        }

        let got = send_and_read_to_end(&address, &plain_connect_frame()).await;
        assert_no_answer_but_alerts(&got, "a plain CONNECT");
        let mut garbage = vec![0u8; 4096];
        rng.fill(&mut garbage[..]);
        let got = send_and_read_to_end(&address, &garbage).await;
        assert_no_answer_but_alerts(&got, "random bytes");
        // An HTTP request, as a confused browser would send.
        let got = send_and_read_to_end(&address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_no_answer_but_alerts(&got, "an HTTP request");

        let plain_url = format!("pulsar://{address}");
        let run = run_client(&plain_url, "refused", ClientSetup::default(), seed).await;
        assert_passed("plain client on the TLS port", &run, &mut s);

        let trusted = ClientSetup {
            trust: Some(&pki.ca),
            ..Default::default()
        };
        let run = run_client(&tls, "ok", trusted, seed).await;
        assert_passed("TLS client after plain TCP", &run, &mut s);

        // The silent ones are dropped at the handshake timeout.
        for (i, task) in silent.into_iter().enumerate() {
            let got = task.await.unwrap();
            assert!(got.is_empty(), "silent client {i} was sent {got:02x?}");
        }
        assert!(
            // The three non-TLS byte streams, the three silent clients, and
            // at least one try of the plain Python client.
            failed_handshakes(&s) >= 7,
            "expected every non-TLS connection to be logged as a failed handshake\n{}",
            s.log_tail()
        );
        s.stop_cleanly().await;
    })
    .await;
}

/// `--tls-require-trusted-client-cert`: a client with a CA-signed
/// certificate (AuthenticationTLS) is served, and its certificate's CN is
/// the connection's role; one without a certificate, or with an untrusted
/// one, is refused. The admin HTTPS port asks the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_client_certificates_are_required_when_asked() {
    bounded("client_certificates_required", LIMIT, async {
        let seed = seed("client_certificates_required", 0x7150_0003);
        let pki = Pki::new();
        let dir = TempDir::new().unwrap();
        // The connection's debug line shows the role taken from the certificate.
        let envs = [(
            "STRATA_LOG".to_string(),
            "info,strata_broker::connection=debug".to_string(),
        )];
        let mut s = start(
            &dir,
            &pki.flags(&["--tls-require-trusted-client-cert"]),
            &envs,
        )
        .await;
        let tls = s.service_url_tls().to_string();

        let with_cert = ClientSetup {
            trust: Some(&pki.ca),
            cert: Some(&pki.client),
        };
        let run = run_client(&tls, "ok", with_cert, seed).await;
        assert_passed("client with a trusted certificate", &run, &mut s);
        assert!(
            s.log().lines().any(|l| l.contains("client connected")
                && l.contains("cert_role")
                && l.contains(ROLE)),
            "no connection recorded the certificate's role {ROLE}\n{}",
            s.log_tail()
        );

        let before = failed_handshakes(&s);
        let no_cert = ClientSetup {
            trust: Some(&pki.ca),
            ..Default::default()
        };
        let run = run_client(&tls, "refused", no_cert, seed).await;
        assert_passed("client without a certificate", &run, &mut s);
        wait_failed_handshake(&s, before, "client without a certificate").await;

        let before = failed_handshakes(&s);
        let rogue = ClientSetup {
            trust: Some(&pki.ca),
            cert: Some(&pki.rogue),
        };
        let run = run_client(&tls, "refused", rogue, seed).await;
        assert_passed("client with an untrusted certificate", &run, &mut s);
        wait_failed_handshake(&s, before, "untrusted client certificate").await;

        // The admin HTTPS port: a certificate is required there too.
        let url = format!("{}/admin/v2/clusters", s.admin_url_tls());
        let with = https_client(&pki, Some(&pki.client));
        let resp = with.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET {url} with a client certificate");
        let without = https_client(&pki, None);
        let e = without.get(&url).send().await;
        assert!(e.is_err(), "GET {url} without a client certificate: {e:?}");

        // And the plain ports know nothing of certificates.
        let run = run_client(s.service_url(), "ok", ClientSetup::default(), seed).await;
        assert_passed("plain client on the plain port", &run, &mut s);
        s.stop_cleanly().await;
    })
    .await;
}

/// An HTTPS client trusting `pki`'s CA, presenting `cert` if given.
fn https_client(pki: &Pki, cert: Option<&(PathBuf, PathBuf)>) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&pki.ca).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(cert).unwrap()],
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

/// The admin REST API over HTTPS with the CA: the cluster record names both
/// ports of both services, and a namespace created over HTTPS is seen over
/// HTTP. Plain HTTP to the HTTPS port fails cleanly; a client that does not
/// trust the CA is refused; both ports keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_over_https() {
    bounded("admin_over_https", LIMIT, async {
        let pki = Pki::new();
        let dir = TempDir::new().unwrap();
        let mut s = start(&dir, &pki.flags(&[]), &[]).await;
        let https = s.admin_url_tls().to_string();
        assert!(https.starts_with("https://127.0.0.1:"), "{https}");
        let client = https_client(&pki, None);

        let clusters: Value = client
            .get(format!("{https}/admin/v2/clusters"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let cluster = clusters[0].as_str().expect("a cluster name").to_string();
        let c: Value = client
            .get(format!("{https}/admin/v2/clusters/{cluster}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(c["serviceUrl"], s.admin_url(), "{c}");
        assert_eq!(c["serviceUrlTls"], https, "{c}");
        assert_eq!(c["brokerServiceUrl"], s.service_url(), "{c}");
        assert_eq!(c["brokerServiceUrlTls"], s.service_url_tls(), "{c}");

        let resp = client
            .put(format!("{https}/admin/v2/namespaces/public/over-https"))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "create a namespace: {resp:?}");
        let plain = reqwest::Client::builder().no_proxy().build().unwrap();
        let namespaces: Value = plain
            .get(format!("{}/admin/v2/namespaces/public", s.admin_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            namespaces
                .as_array()
                .is_some_and(|a| a.iter().any(|n| n == "public/over-https")),
            "{namespaces}"
        );

        // Plain HTTP to the HTTPS port: an error, not an answer.
        let before = failed_handshakes(&s);
        let http_to_https = https.replacen("https://", "http://", 1);
        let e = plain
            .get(format!("{http_to_https}/admin/v2/clusters"))
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        assert!(e.is_err(), "plain HTTP to the HTTPS port answered: {e:?}");
        wait_failed_handshake(&s, before, "plain HTTP to the HTTPS port").await;
        let got =
            send_and_read_to_end(host_port(&https), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_no_answer_but_alerts(&got, "plain HTTP on the HTTPS port");

        // A client without the CA does not trust the server.
        let untrusting = reqwest::Client::builder()
            .no_proxy()
            .tls_backend_preconfigured(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            )
            .build()
            .unwrap();
        let e = untrusting
            .get(format!("{https}/admin/v2/clusters"))
            .send()
            .await;
        assert!(e.is_err(), "a client without the CA got {e:?}");

        // Both ports still serve.
        let resp = client
            .get(format!("{https}/admin/v2/brokers/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let resp = plain
            .get(format!("{}/admin/v2/brokers/health", s.admin_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(s.is_running());
        s.stop_cleanly().await;
    })
    .await;
}

/// Runs `strata standalone` with `flags` and returns its exit status and
/// stderr; it must exit by itself (a bad start-up) within a minute.
async fn failed_start(dir: &TempDir, flags: &[String]) -> (std::process::ExitStatus, String) {
    let mut cmd = tokio::process::Command::new(strata_binary());
    cmd.arg("standalone")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--broker-port", "0", "--admin-port", "0"])
        .args(flags)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("a standalone with bad TLS settings did not exit")
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Bad TLS settings stop the start-up with an error naming the file (or
/// the flag) and what is wrong.
#[tokio::test]
async fn bad_tls_files_stop_the_start_up_with_a_clear_error() {
    bounded("bad_tls_files", LIMIT, async {
        let pki = Pki::new();
        let dir = TempDir::new().unwrap();
        let not_pem = dir.path().join("not-a-cert.pem");
        std::fs::write(&not_pem, "this is no certificate\n").unwrap();
        let missing = dir.path().join("missing.key");
        let server_cert = path(&pki.server.0).to_string();
        let server_key = path(&pki.server.1).to_string();
        let cases: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
            (
                "a certificate file without a certificate",
                vec![
                    "--broker-port-tls".into(),
                    "0".into(),
                    "--tls-cert-file".into(),
                    path(&not_pem).into(),
                    "--tls-key-file".into(),
                    server_key.clone(),
                ],
                vec!["not-a-cert.pem", "CERTIFICATE"],
            ),
            (
                "a missing key file",
                vec![
                    "--admin-port-tls".into(),
                    "0".into(),
                    "--tls-cert-file".into(),
                    server_cert.clone(),
                    "--tls-key-file".into(),
                    path(&missing).into(),
                ],
                vec!["missing.key", "cannot read"],
            ),
            (
                "the key of another certificate",
                vec![
                    "--broker-port-tls".into(),
                    "0".into(),
                    "--tls-cert-file".into(),
                    server_cert.clone(),
                    "--tls-key-file".into(),
                    path(&pki.stray_key).into(),
                ],
                vec!["stray.key", "does not hold the private key"],
            ),
            (
                "a TLS port without a certificate",
                vec!["--broker-port-tls".into(), "0".into()],
                vec!["--tls-cert-file"],
            ),
            (
                "client certificates required without a CA",
                vec![
                    "--broker-port-tls".into(),
                    "0".into(),
                    "--tls-cert-file".into(),
                    server_cert.clone(),
                    "--tls-key-file".into(),
                    server_key.clone(),
                    "--tls-require-trusted-client-cert".into(),
                ],
                vec!["--tls-trust-certs-file"],
            ),
        ];
        for (what, flags, wanted) in cases {
            let (status, stderr) = failed_start(&dir, &flags).await;
            assert!(
                !status.success(),
                "{what}: the standalone started\n{stderr}"
            );
            for w in wanted {
                assert!(
                    stderr.contains(w),
                    "{what}: {w:?} not in the error:\n{stderr}"
                );
            }
        }
    })
    .await;
}
