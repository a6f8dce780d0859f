//! Helpers of the auth tests: `strata` runs (keys and tokens through
//! `strata admin tokens`, admin CLI calls), an admin-port HTTP client that
//! names its token, `/metrics` samples and the Python scripts' arguments.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use strata_tests::admin::{AdminHttp, Answer};
use strata_tests::python::ScriptRun;
use strata_tests::standalone::StandaloneProcess;

pub const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

pub use strata_tests::admin::{Run, strata};

pub fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// `strata admin tokens create-secret-key --output DIR/NAME`; its `file://` URL.
pub async fn secret_key(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    strata(
        &[
            "admin",
            "tokens",
            "create-secret-key",
            "--output",
            path.to_str().unwrap(),
        ],
        &[],
    )
    .await
    .ok();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 32, "an HS256 secret has 256 bits");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the secret is readable by others: {mode:o}"
        );
    }
    file_url(&path)
}

/// `strata admin tokens create-key-pair`; the (private, public) `file://` URLs.
pub async fn key_pair(dir: &Path, name: &str, alg: &str) -> (String, String) {
    let private = dir.join(format!("{name}.private.der"));
    let public = dir.join(format!("{name}.public.der"));
    strata(
        &[
            "admin",
            "tokens",
            "create-key-pair",
            "--algorithm",
            alg,
            "--output-private-key",
            private.to_str().unwrap(),
            "--output-public-key",
            public.to_str().unwrap(),
        ],
        &[],
    )
    .await
    .ok();
    (file_url(&private), file_url(&public))
}

/// A token for `subject` signed with `key` (`--secret-key URL` or
/// `--private-key URL`), expiring after `expiry` if given.
pub async fn token(key: (&str, &str), subject: &str, expiry: Option<&str>) -> String {
    let mut args = vec![
        "admin",
        "tokens",
        "create",
        key.0,
        key.1,
        "--subject",
        subject,
    ];
    if let Some(e) = expiry {
        args.extend(["--expiry", e]);
    }
    let run = strata(&args, &[]).await.ok();
    let token = run.stdout.trim().to_string();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {}", run.report());
    token
}

/// An admin-port client; every call names its token.
pub struct Admin(AdminHttp);

impl Admin {
    pub fn new(s: &StandaloneProcess) -> Admin {
        Admin(AdminHttp::new(s.admin_url()))
    }

    pub async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Answer {
        self.0.call_as(token, method, path, body).await
    }

    /// `"METHOD /path"` with `token`.
    pub async fn request(&self, token: Option<&str>, request: &str) -> Answer {
        let (method, path) = request.split_once(' ').expect("METHOD /path");
        let method = Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        self.call(token, method, path, None).await
    }

    /// Asserts the status of each request, and for refusals a reason.
    pub async fn expect_all(&self, cases: &[(Option<&str>, &str, u16)]) {
        for (token, request, status) in cases {
            let a = self.request(*token, request).await;
            assert_eq!(a.status, *status, "{request} with {token:?}: {a:?}");
            if *status == 401 || *status == 403 {
                assert!(!a.reason().is_empty(), "{request}: no reason: {a:?}");
            }
        }
    }

    /// The value of one sample on `/metrics` (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let a = self.call(None, Method::GET, "/metrics", None).await;
        assert_eq!(a.status, 200, "/metrics: {a:?}");
        let text = a.body.as_str().unwrap_or_default().to_string();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    }
}

pub fn failures(reason: &str) -> String {
    format!("strata_broker_authentication_failures_total{{reason=\"{reason}\"}}")
}

pub fn denials(op: &str) -> String {
    format!("strata_broker_authorization_denials_total{{operation=\"{op}\"}}")
}

pub fn assert_script(run: &ScriptRun, s: &mut StandaloneProcess) {
    assert!(run.success(), "{}\n{}", run.report(), s.log_tail());
    assert!(
        s.is_running(),
        "the standalone is gone after {}\n{}",
        run.name,
        s.log_tail()
    );
    println!("{}", run.output);
}

pub fn script_args(service_url: &str, extra: &[String]) -> Vec<String> {
    let mut args = vec![
        "--service-url".to_string(),
        service_url.to_string(),
        "--timeout".to_string(),
        (SCRIPT_LIMIT.as_secs() - 15).to_string(),
    ];
    args.extend(extra.iter().cloned());
    args
}

/// Runs `strata admin --admin-url URL ARGS` with `envs`.
pub async fn admin_cli(s: &StandaloneProcess, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut all = vec!["admin", "--admin-url", s.admin_url()];
    all.extend_from_slice(args);
    strata(&all, envs).await
}
