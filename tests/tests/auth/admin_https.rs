//! `strata admin` against the admin HTTPS port (`--admin-port-tls`): the
//! server's certificate checked against `--tls-trust-certs-file` (or the
//! variable), refused with the flag to use when it is not trusted,
//! `--tls-allow-insecure` with its warning; with authentication on, a token
//! or a client certificate (the `tls` provider: its CN is the role).

use strata_tests::fault::bounded;
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;

use crate::TEST_LIMIT;
use crate::harness::{Run, secret_key, strata, token};
use crate::pki::{Pki, path};

/// Runs `strata admin --url URL ARGS` with `envs`.
async fn admin_at(url: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut all = vec!["admin", "--url", url];
    all.extend_from_slice(args);
    strata(&all, envs).await
}

/// Asserts that the run failed with every one of `wanted` in its stderr.
fn assert_refused(run: &Run, wanted: &[&str]) {
    assert_eq!(run.code, Some(1), "{}", run.report());
    for w in wanted {
        assert!(run.stderr.contains(w), "{w:?} not in:\n{}", run.report());
    }
}

async fn start(dir: &TempDir, flags: Vec<String>) -> StandaloneProcess {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    StandaloneProcess::start_with(dir.path().join("data"), &flags).await
}

/// Without authentication: the trust file (flag or variable) is what
/// makes HTTPS work; without it the error names the flag; insecure mode
/// works and warns; plain HTTP to the HTTPS port and HTTPS to the HTTP
/// port fail with an error, not an answer.
#[tokio::test]
async fn admin_cli_over_https() {
    bounded("admin_cli_over_https", TEST_LIMIT, async {
        let pki = Pki::new();
        let dir = TempDir::new().unwrap();
        let mut s = start(&dir, pki.standalone_flags()).await;
        let https = s.admin_url_tls().to_string();
        let ca = path(&pki.ca);

        let run = admin_at(
            &https,
            &["--tls-trust-certs-file", ca, "tenants", "list"],
            &[],
        )
        .await
        .ok();
        assert_eq!(run.stdout.trim(), "public", "{}", run.report());
        assert!(!run.stderr.contains("warning"), "{}", run.report());
        let run = admin_at(
            &https,
            &["namespaces", "create", "public/over-https"],
            &[("STRATA_TLS_TRUST_CERTS_FILE", ca)],
        )
        .await
        .ok();
        assert!(run.stdout.contains("public/over-https"), "{}", run.report());
        // Seen over plain HTTP too: the same broker.
        let run = admin_at(s.admin_url(), &["namespaces", "list", "public"], &[])
            .await
            .ok();
        assert!(run.stdout.contains("public/over-https"), "{}", run.report());

        // No trust file: no CA is trusted, and the error says what to give.
        let run = admin_at(&https, &["tenants", "list"], &[]).await;
        assert_refused(&run, &["not trusted", "--tls-trust-certs-file"]);
        assert!(run.stdout.is_empty(), "{}", run.report());
        // A trust file with another CA: the same.
        let other = Pki::new();
        let run = admin_at(
            &https,
            &["--tls-trust-certs-file", path(&other.ca), "tenants", "list"],
            &[],
        )
        .await;
        assert_refused(&run, &["not trusted", "--tls-trust-certs-file"]);

        // Insecure: no check, but a warning.
        let run = admin_at(&https, &["--tls-allow-insecure", "tenants", "list"], &[])
            .await
            .ok();
        assert_eq!(run.stdout.trim(), "public", "{}", run.report());
        assert!(
            run.stderr.contains("warning") && run.stderr.contains("--tls-allow-insecure"),
            "{}",
            run.report()
        );

        // Bad settings and wrong ports.
        let missing = dir.path().join("no-such-ca.pem");
        let run = admin_at(
            &https,
            &["--tls-trust-certs-file", path(&missing), "tenants", "list"],
            &[],
        )
        .await;
        assert_refused(&run, &["no-such-ca.pem", "cannot read"]);
        let client = pki.client("someone", true);
        let run = admin_at(
            &https,
            &[
                "--tls-trust-certs-file",
                ca,
                "--tls-cert-file",
                path(&client.0),
                "tenants",
                "list",
            ],
            &[],
        )
        .await;
        assert_refused(&run, &["--tls-cert-file needs --tls-key-file"]);
        let http_to_https = https.replacen("https://", "http://", 1);
        let run = admin_at(&http_to_https, &["tenants", "list"], &[]).await;
        assert_refused(&run, &["cannot reach the admin server"]);
        let https_to_http = s.admin_url().replacen("http://", "https://", 1);
        let run = admin_at(
            &https_to_http,
            &["--tls-trust-certs-file", ca, "tenants", "list"],
            &[],
        )
        .await;
        assert_refused(&run, &["TLS with the admin server", "TLS port"]);
        assert!(s.is_running(), "{}", s.log_tail());
        s.stop_cleanly().await;
    })
    .await;
}

/// With authentication (token and tls providers, authorization on): over
/// HTTPS a superuser token works, no credentials get 401, a role without
/// the right 403; a client certificate whose CN is a superuser role works
/// without a token, one whose CN is not gets 403, and a self-signed one is
/// refused in the handshake, with the reason.
#[tokio::test]
async fn admin_cli_over_https_with_a_token_or_a_certificate() {
    bounded("admin_cli_over_https_auth", TEST_LIMIT, async {
        let pki = Pki::new();
        let dir = TempDir::new().unwrap();
        let secret = secret_key(dir.path(), "secret.key").await;
        let key = ("--secret-key", secret.as_str());
        let admin_token = token(key, "admin", Some("1h")).await;
        let app_token = token(key, "app", Some("1h")).await;
        let mut flags = pki.standalone_flags();
        flags.extend(
            [
                "--authentication-enabled",
                "--authentication-providers",
                "token,tls",
                "--authorization-enabled",
                "--superuser-roles",
                "admin,ops",
                "--token-secret-key",
                &secret,
            ]
            .map(String::from),
        );
        let mut s = start(&dir, flags).await;
        let https = s.admin_url_tls().to_string();
        let ca = path(&pki.ca);
        let trust = ["--tls-trust-certs-file", ca];
        let with = |extra: &[&'static str]| {
            let mut a: Vec<&str> = trust.to_vec();
            a.extend_from_slice(extra);
            a
        };

        let mut args = with(&["tenants", "list"]);
        args.splice(0..0, ["--token", admin_token.as_str()]);
        let run = admin_at(&https, &args, &[]).await.ok();
        assert_eq!(run.stdout.trim(), "public", "{}", run.report());
        let run = admin_at(
            &https,
            &with(&["tenants", "list"]),
            &[("STRATA_ADMIN_TOKEN", app_token.as_str())],
        )
        .await;
        assert_refused(&run, &["error: 403"]);
        let run = admin_at(&https, &with(&["tenants", "list"]), &[]).await;
        assert_refused(&run, &["error: 401", "no credentials"]);
        // The token still needs the trust file.
        let run = admin_at(
            &https,
            &["--token", admin_token.as_str(), "tenants", "list"],
            &[],
        )
        .await;
        assert_refused(&run, &["not trusted", "--tls-trust-certs-file"]);

        // The tls provider: the certificate's CN is the role.
        let ops = pki.client("ops", true);
        let mut args = with(&[
            "tenants",
            "create",
            "by-cert",
            "--allowed-clusters",
            "standalone",
        ]);
        args.extend([
            "--tls-cert-file",
            path(&ops.0),
            "--tls-key-file",
            path(&ops.1),
        ]);
        admin_at(&https, &args, &[]).await.ok();
        let mut args = with(&["tenants", "list"]);
        args.extend([
            "--tls-cert-file",
            path(&ops.0),
            "--tls-key-file",
            path(&ops.1),
        ]);
        let run = admin_at(&https, &args, &[]).await.ok();
        assert!(run.stdout.contains("by-cert"), "{}", run.report());
        let nobody = pki.client("nobody", true);
        let mut args = with(&["tenants", "list"]);
        args.extend([
            "--tls-cert-file",
            path(&nobody.0),
            "--tls-key-file",
            path(&nobody.1),
        ]);
        let run = admin_at(&https, &args, &[]).await;
        assert_refused(&run, &["error: 403", "nobody"]);
        // A self-signed certificate claiming a superuser's CN.
        let forged = pki.client("ops", false);
        let mut args = with(&["tenants", "list"]);
        args.extend([
            "--tls-cert-file",
            path(&forged.0),
            "--tls-key-file",
            path(&forged.1),
        ]);
        let run = admin_at(&https, &args, &[]).await;
        assert_refused(&run, &["refused the client certificate", "--tls-cert-file"]);
        // The plain port knows nothing of certificates: the token is needed there.
        let run = admin_at(s.admin_url(), &["tenants", "list"], &[]).await;
        assert_refused(&run, &["error: 401"]);

        assert!(s.is_running(), "{}", s.log_tail());
        s.stop_cleanly().await;
    })
    .await;
}
