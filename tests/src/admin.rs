//! Driving a standalone's admin side from tests: the `strata` CLI as a
//! process ([`strata`]) and the REST API over HTTP ([`AdminHttp`]).

use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::bookie::strata_binary;

/// The bound on one CLI run (each is one HTTP request or a few).
pub const CLI_LIMIT: Duration = Duration::from_secs(60);

/// How one `strata` run ended.
pub struct Run {
    pub command: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn report(&self) -> String {
        format!(
            "`{}` exited with {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts the run succeeded.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "{}", self.report());
        self
    }
}

/// Runs `strata ARGS` with `envs`, and none of the client variables of the
/// test's own environment (admin URL, tokens, TLS), within [`CLI_LIMIT`].
pub async fn strata(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(strata_binary());
    cmd.args(args)
        .env_remove("STRATA_ADMIN_URL")
        .env_remove("STRATA_ADMIN_TOKEN")
        .env_remove("STRATA_ADMIN_TOKEN_FILE")
        .env_remove("STRATA_TOKEN")
        .env_remove("STRATA_TOKEN_FILE")
        .env_remove("STRATA_TLS_TRUST_CERTS_FILE")
        .env_remove("STRATA_TLS_ALLOW_INSECURE")
        .env("STRATA_LOG", "warn")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let command = format!("strata {}", args.join(" "));
    let out = match tokio::time::timeout(CLI_LIMIT, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run `{command}`: {e}"),
        Err(_) => panic!("`{command}` did not finish within {CLI_LIMIT:?}"),
    };
    Run {
        command,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `strata standalone` on `data` (broker and admin on port 0, the bookie on
/// a free port) with `extra` flags and `envs`, for a start that is expected
/// to fail: it runs until the process exits, within [`CLI_LIMIT`].
pub async fn standalone_until_exit(
    data: &std::path::Path,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Run {
    let data = data.to_str().expect("UTF-8 data directory");
    let port = crate::bookie::free_port().to_string();
    let mut args = vec![
        "standalone",
        "--data-dir",
        data,
        "--broker-port",
        "0",
        "--admin-port",
        "0",
        "--bookie-port",
        port.as_str(),
    ];
    args.extend_from_slice(extra);
    strata(&args, envs).await
}

/// `strata admin --admin-url URL ARGS...`.
pub async fn strata_admin(url: &str, args: &[&str]) -> Run {
    let mut all = vec!["admin", "--admin-url", url];
    all.extend_from_slice(args);
    strata(&all, &[]).await
}

/// An HTTP client of the admin port, with paths relative to `base`.
pub struct AdminHttp {
    http: reqwest::Client,
    base: String,
}

/// An answer: status and body (JSON when it parses, else the text).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The `reason` of an error body ("" when there is none).
    pub fn reason(&self) -> &str {
        self.body["reason"].as_str().unwrap_or("")
    }
}

impl AdminHttp {
    /// Paths are appended to `base`, e.g. the admin URL or `{url}/admin/v2`.
    pub fn new(base: impl Into<String>) -> AdminHttp {
        AdminHttp {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            base: base.into(),
        }
    }

    /// One request, with `token` as `Authorization: Bearer` when given.
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Answer {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: body: {e}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, body }
    }

    /// One request without a token.
    pub async fn call(&self, method: Method, path: &str, body: Option<&str>) -> Answer {
        self.call_as(None, method, path, body).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    /// GET that must answer 200; its JSON.
    pub async fn json(&self, path: &str) -> Value {
        let a = self.get(path).await;
        assert_eq!(a.status, 200, "GET {path}: {a:?}");
        a.body
    }

    /// A call that must answer 204 No Content.
    pub async fn ok(&self, method: Method, path: &str, body: Option<&str>) {
        let a = self.call(method.clone(), path, body).await;
        assert_eq!(a.status, 204, "{method} {path} {body:?}: {a:?}");
    }

    /// A call that must fail with `status` and a reason containing `reason`.
    pub async fn fails(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        status: u16,
        reason: &str,
    ) {
        let a = self.call(method.clone(), path, body).await;
        assert_eq!(a.status, status, "{method} {path} {body:?}: {a:?}");
        assert!(
            a.reason().contains(reason),
            "{method} {path} {body:?}: reason {:?} lacks {reason:?}",
            a.reason()
        );
    }
}
