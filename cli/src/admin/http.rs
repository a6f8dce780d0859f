//! The HTTP side of `strata admin`: one client for the broker's
//! Pulsar-compatible `/admin/v2` REST API, over HTTP or HTTPS (rustls with
//! strata-client's settings: only the CAs of the trust file, an optional
//! client certificate). A failed TLS handshake is reported with the flag
//! that fixes it.
//!
//! URLs are built from path segments (each one percent-encoded by `url`),
//! so a topic's local name may hold any character Pulsar allows. Every
//! answer is read whole: an error status becomes [`AdminError::Http`] with
//! the server's `{"reason": ...}`, a success is [`Body`] (empty, JSON or
//! plain text such as the health check's `ok`).

use std::fmt::Write as _;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use strata_client::{TlsFailure, TlsOptions};
use strata_common::names::NameError;

use crate::client_args::tls_hint;

/// A whole admin request, connect included, may take this long; admin
/// calls are metadata operations, so only a stuck server takes longer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest piece of a non-JSON error body quoted in an error message.
const MAX_QUOTED_BODY: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The server answered with an error status; `reason` is its
    /// `{"reason": ...}` (or its body, or the status's canonical text).
    #[error("{}: {reason}", status.as_u16())]
    Http { status: StatusCode, reason: String },
    #[error("cannot reach the admin server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "TLS with the admin server at {url} failed: {failure}; {}",
        tls_hint(failure)
    )]
    Tls { url: String, failure: TlsFailure },
    #[error("TLS settings: {0}")]
    TlsSetup(#[from] strata_client::TlsSetupError),
    #[error("bad admin URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("unexpected answer from {url}: {reason}")]
    BadResponse { url: String, reason: String },
    #[error(transparent)]
    Name(#[from] NameError),
    /// A command-line value that cannot be turned into a request.
    #[error("{0}")]
    Invalid(String),
}

/// What a successful request returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Empty,
    Json(Value),
    Text(String),
}

impl Body {
    /// Interprets a response body: JSON if it parses as JSON, else text.
    pub fn from_bytes(bytes: &[u8]) -> Body {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Body::Empty;
        }
        match serde_json::from_slice(bytes) {
            Ok(v) => Body::Json(v),
            Err(_) => Body::Text(String::from_utf8_lossy(bytes).into_owned()),
        }
    }
}

/// The reason of an error answer: Pulsar's `{"reason": "..."}`, else the
/// body itself (shortened), else the status's canonical text.
pub fn error_reason(status: StatusCode, bytes: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        match v.get("reason").or_else(|| v.get("message")) {
            Some(Value::String(s)) if !s.is_empty() => return s.clone(),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_string();
    }
    let mut quoted: String = text.chars().take(MAX_QUOTED_BODY).collect();
    if quoted.len() < text.len() {
        quoted.push_str("...");
    }
    quoted
}

/// `err` and its sources, joined by `: ` (reqwest's own message alone
/// hides the useful part, e.g. "Connection refused").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let _ = write!(out, ": {s}");
        source = s.source();
    }
    out
}

pub struct AdminClient {
    base: Url,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer` when set.
    token: Option<String>,
}

/// Whether `url` is an `https://` URL.
pub fn is_https(url: &str) -> bool {
    url.trim_start()
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

impl AdminClient {
    /// A client for the admin server at `base` (`http://host:port` or
    /// `https://host:port`, optionally with a path prefix); an `https://`
    /// one trusts no CA.
    #[cfg(test)]
    pub fn new(base: &str) -> Result<AdminClient, AdminError> {
        AdminClient::with_tls(base, None)
    }

    /// A client for the admin server at `base`, with `tls` for an
    /// `https://` URL (ignored for `http://`; none: trust no CA).
    pub fn with_tls(base: &str, tls: Option<&TlsOptions>) -> Result<AdminClient, AdminError> {
        let bad = |reason: String| AdminError::BadUrl {
            url: base.to_string(),
            reason,
        };
        let url = Url::parse(base).map_err(|e| bad(e.to_string()))?;
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(bad(format!("unsupported scheme {other:?}"))),
        };
        if url.cannot_be_a_base() || url.host().is_none() {
            return Err(bad("expected http://host:port or https://host:port".into()));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT);
        if https {
            let config = tls.cloned().unwrap_or_default().client_config()?;
            builder = builder.tls_backend_preconfigured(rustls::ClientConfig::clone(&config));
        }
        let http = builder.build().map_err(|e| bad(error_chain(&e)))?;
        Ok(AdminClient {
            base: url,
            http,
            token: None,
        })
    }

    /// Sends `token` with every request.
    pub fn with_token(mut self, token: Option<String>) -> AdminClient {
        self.token = token;
        self
    }

    /// The base URL followed by `segments`, each percent-encoded.
    pub fn url(&self, segments: &[impl AsRef<str>], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url.set_query(None);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends one request and reads the whole answer.
    pub async fn request(
        &self,
        method: Method,
        segments: &[impl AsRef<str>],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Body, AdminError> {
        let url = self.url(segments, query);
        let mut req = self.http.request(method, url.clone());
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let unreachable = |e: reqwest::Error| match strata_client::tls::tls_failure(&e) {
            Some(failure) => AdminError::Tls {
                url: url.to_string(),
                failure,
            },
            None => AdminError::Unreachable {
                url: url.to_string(),
                reason: error_chain(&e),
            },
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| match strata_client::tls::tls_failure(&e) {
                Some(failure) => AdminError::Tls {
                    url: url.to_string(),
                    failure,
                },
                None => AdminError::BadResponse {
                    url: url.to_string(),
                    reason: error_chain(&e),
                },
            })?;
        if !status.is_success() {
            return Err(AdminError::Http {
                status,
                reason: error_reason(status, &bytes),
            });
        }
        Ok(Body::from_bytes(&bytes))
    }

    pub async fn get(
        &self,
        segments: &[impl AsRef<str>],
        query: &[(&str, &str)],
    ) -> Result<Body, AdminError> {
        self.request(Method::GET, segments, query, None).await
    }

    pub async fn put(
        &self,
        segments: &[impl AsRef<str>],
        body: Option<&Value>,
    ) -> Result<Body, AdminError> {
        self.request(Method::PUT, segments, &[], body).await
    }

    pub async fn post(
        &self,
        segments: &[impl AsRef<str>],
        body: Option<&Value>,
    ) -> Result<Body, AdminError> {
        self.request(Method::POST, segments, &[], body).await
    }

    /// DELETE, with `?force=true` when `force`.
    pub async fn delete(
        &self,
        segments: &[impl AsRef<str>],
        force: bool,
    ) -> Result<Body, AdminError> {
        let query: &[(&str, &str)] = if force { &[("force", "true")] } else { &[] };
        self.request(Method::DELETE, segments, query, None).await
    }

    /// GET that must answer JSON (e.g. the current tenant before an update).
    pub async fn get_json(&self, segments: &[impl AsRef<str>]) -> Result<Value, AdminError> {
        match self.get(segments, &[]).await? {
            Body::Json(v) => Ok(v),
            other => Err(AdminError::BadResponse {
                url: self.url(segments, &[]).to_string(),
                reason: format!("expected JSON, got {other:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encodes_segments_and_keeps_a_prefix() {
        let c = AdminClient::new("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            c.url(&["admin", "v2", "persistent", "t", "ns", "a b/c?"], &[])
                .as_str(),
            "http://127.0.0.1:8080/admin/v2/persistent/t/ns/a%20b%2Fc%3F"
        );
        let c = AdminClient::new("http://h:1/prefix/").unwrap();
        assert_eq!(
            c.url(&["admin", "v2", "tenants"], &[("force", "true")])
                .as_str(),
            "http://h:1/prefix/admin/v2/tenants?force=true"
        );
    }

    #[test]
    fn bad_admin_urls_are_refused() {
        for url in ["127.0.0.1:8080", "ftp://h", "not a url", "https://"] {
            assert!(
                matches!(AdminClient::new(url), Err(AdminError::BadUrl { .. })),
                "{url}"
            );
        }
        assert!(AdminClient::new("https://h:8443").is_ok());
        assert!(is_https("HTTPS://h:8443") && !is_https("http://h") && !is_https("h"));
    }

    #[test]
    fn bad_tls_files_are_named() {
        let tls = TlsOptions {
            trust_certs_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = AdminClient::with_tls("https://h:8443", Some(&tls))
            .err()
            .expect("refused");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        // Not read for plain HTTP.
        assert!(AdminClient::with_tls("http://h:8080", Some(&tls)).is_ok());
    }

    #[test]
    fn tls_errors_name_the_flag() {
        let e = AdminError::Tls {
            url: "https://h:8443/admin/v2/tenants".into(),
            failure: TlsFailure::UntrustedServer("invalid peer certificate: UnknownIssuer".into()),
        };
        let text = e.to_string();
        assert!(
            text.contains("not trusted") && text.contains("--tls-trust-certs-file"),
            "{text}"
        );
    }

    #[test]
    fn bodies_are_json_text_or_empty() {
        assert_eq!(Body::from_bytes(b""), Body::Empty);
        assert_eq!(Body::from_bytes(b" \n"), Body::Empty);
        assert_eq!(Body::from_bytes(b"ok"), Body::Text("ok".into()));
        assert_eq!(
            Body::from_bytes(br#"{"partitions":3}"#),
            Body::Json(serde_json::json!({"partitions": 3}))
        );
    }

    #[test]
    fn error_reasons() {
        let nf = StatusCode::NOT_FOUND;
        assert_eq!(
            error_reason(nf, br#"{"reason":"Tenant does not exist"}"#),
            "Tenant does not exist"
        );
        assert_eq!(error_reason(nf, b"plain words\n"), "plain words");
        assert_eq!(error_reason(nf, b""), "Not Found");
        let long = vec![b'x'; 1000];
        assert_eq!(error_reason(nf, &long).len(), MAX_QUOTED_BODY + 3);
        let e = AdminError::Http {
            status: nf,
            reason: "Tenant does not exist".into(),
        };
        assert_eq!(e.to_string(), "404: Tenant does not exist");
    }
}
