//! Credentials for CONNECT, as Pulsar's `AuthenticationToken` and
//! `AuthenticationTls` send them.
//!
//! A token goes in CONNECT (`auth_method_name = "token"`, the JWT in
//! `auth_data`) and again in answer to every AUTH_CHALLENGE the broker
//! sends when it sees the token expire: the token is taken from its source
//! each time, so a token file rewritten by whoever renews it keeps a
//! long-lived connection open. The `tls` method sends only its name; the
//! broker takes the role from the client certificate of the TLS connection
//! ([`crate::TlsOptions`]).

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{ClientError, Result};

/// How the client proves its role.
#[derive(Clone, Debug)]
pub enum Authentication {
    /// A JWT (Pulsar's `token` method).
    Token(TokenSource),
    /// The subject CN of the client certificate (Pulsar's `tls` method);
    /// needs `pulsar+ssl://` with [`crate::TlsOptions::cert_file`].
    Tls,
}

/// Where a token comes from.
#[derive(Clone)]
pub enum TokenSource {
    /// This token, always.
    Static(String),
    /// The contents of a file (also `file:///path`), read again for every
    /// CONNECT and AUTH_CHALLENGE.
    File(PathBuf),
    /// Asked again for every CONNECT and AUTH_CHALLENGE.
    Supplier(Arc<dyn Fn() -> std::result::Result<String, String> + Send + Sync>),
}

/// The token itself never shows.
impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Static(_) => f.write_str("Static(<redacted>)"),
            TokenSource::File(p) => f.debug_tuple("File").field(p).finish(),
            TokenSource::Supplier(_) => f.write_str("Supplier(..)"),
        }
    }
}

/// Pulsar's auth method names.
const TOKEN_METHOD: &str = "token";
const TLS_METHOD: &str = "tls";

impl TokenSource {
    /// A token file path as users write it: a path or `file:///path`.
    pub fn file(path: impl Into<PathBuf>) -> TokenSource {
        let path: PathBuf = path.into();
        match path.to_str().and_then(|p| p.strip_prefix("file://")) {
            Some(stripped) => TokenSource::File(PathBuf::from(stripped)),
            None => TokenSource::File(path),
        }
    }

    /// The current token, trimmed; an empty one is an error.
    pub async fn token(&self) -> Result<String> {
        let bad = |reason: String| ClientError::Auth(reason);
        let token = match self {
            TokenSource::Static(t) => t.clone(),
            TokenSource::File(path) => tokio::fs::read_to_string(path).await.map_err(|e| {
                bad(format!(
                    "cannot read the token file {}: {e}",
                    path.display()
                ))
            })?,
            TokenSource::Supplier(f) => {
                f().map_err(|e| bad(format!("the token supplier failed: {e}")))?
            }
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(bad(match self {
                TokenSource::File(path) => format!("the token file {} is empty", path.display()),
                _ => "the token is empty".to_string(),
            }));
        }
        Ok(token.to_string())
    }
}

impl Authentication {
    /// A fixed token.
    pub fn token(token: impl Into<String>) -> Authentication {
        Authentication::Token(TokenSource::Static(token.into()))
    }

    /// A token read from `path` whenever it is needed.
    pub fn token_file(path: impl Into<PathBuf>) -> Authentication {
        Authentication::Token(TokenSource::file(path))
    }

    /// What CONNECT and AUTH_RESPONSE carry: the method and its data.
    pub(crate) async fn credentials(&self) -> Result<(&'static str, Option<bytes::Bytes>)> {
        match self {
            Authentication::Token(source) => Ok((TOKEN_METHOD, Some(source.token().await?.into()))),
            Authentication::Tls => Ok((TLS_METHOD, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_come_from_their_source_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.token");
        std::fs::write(&path, "first\n").unwrap();
        let auth = Authentication::token_file(format!("file://{}", path.display()));
        let (method, data) = auth.credentials().await.unwrap();
        assert_eq!((method, data.as_deref()), ("token", Some(&b"first"[..])));
        std::fs::write(&path, "  second ").unwrap();
        let (_, data) = auth.credentials().await.unwrap();
        assert_eq!(data.as_deref(), Some(&b"second"[..]));

        std::fs::write(&path, "\n").unwrap();
        let e = auth.credentials().await.unwrap_err().to_string();
        assert!(e.contains("app.token") && e.contains("empty"), "{e}");
        std::fs::remove_file(&path).unwrap();
        let e = auth.credentials().await.unwrap_err().to_string();
        assert!(e.contains("cannot read the token file"), "{e}");

        let e = Authentication::token(" ").credentials().await.unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let (method, data) = Authentication::Tls.credentials().await.unwrap();
        assert_eq!((method, data), ("tls", None));
    }

    #[test]
    fn debug_hides_the_token() {
        let shown = format!("{:?}", Authentication::token("secret-jwt"));
        assert!(!shown.contains("secret-jwt"), "{shown}");
    }
}
