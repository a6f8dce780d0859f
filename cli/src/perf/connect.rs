//! How `strata perf` reaches a Pulsar service with authentication or TLS
//! on: a token (`--token`, or `--token-file`, read again whenever the
//! broker asks for a fresh one), or for `pulsar+ssl://` a client certificate
//! (the `tls` method when no token is given), and the trust file. The token
//! also goes to the admin REST calls a benchmark makes (creating topics,
//! tenants, namespaces).
//!
//! The same token rules as `strata admin` (a flag or a file, `file://`
//! accepted, trimmed, never empty), under the variables STRATA_TOKEN and
//! STRATA_TOKEN_FILE: a benchmark usually runs as an application role,
//! `strata admin` (STRATA_ADMIN_TOKEN) as an administrator.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use strata_client::{Authentication, Client, ClientError, ClientOptions, TlsOptions};
use strata_proto::pulsar::ServerError;

use crate::client_args::{TlsClientArgs, read_token, tls_hint};

#[derive(Args, Clone, Debug, Default)]
pub struct ConnectArgs {
    /// A token (JWT) for brokers with authentication on.
    #[arg(
        long,
        env = "STRATA_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// A file holding the token (also `file:///path`), read again whenever
    /// the broker asks for a fresh token.
    #[arg(long, env = "STRATA_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsClientArgs,
}

fn is_tls_url(url: &str) -> bool {
    url.trim_start()
        .get(..13)
        .is_some_and(|s| s.eq_ignore_ascii_case("pulsar+ssl://"))
}

impl ConnectArgs {
    /// `base` with this run's credentials and, for a `pulsar+ssl://` `url`,
    /// TLS settings. Reads the token once now, so that a bad one stops the
    /// run before it starts.
    pub fn client_options(&self, url: &str, base: ClientOptions) -> anyhow::Result<ClientOptions> {
        let tls_url = is_tls_url(url);
        let token = self.admin_token()?;
        let auth = match (token, &self.token, &self.token_file) {
            (Some(token), Some(_), _) => Some(Authentication::token(token)),
            (Some(_), None, Some(path)) => Some(Authentication::token_file(path.clone())),
            _ if tls_url && self.tls.has_client_cert() => Some(Authentication::Tls),
            _ => None,
        };
        let tls = if tls_url {
            self.tls.options().map_err(|e| anyhow!(e))?
        } else {
            TlsOptions::default()
        };
        Ok(ClientOptions { auth, tls, ..base })
    }

    /// The token, for the admin REST calls.
    pub fn admin_token(&self) -> anyhow::Result<Option<String>> {
        read_token(self.token.as_deref(), self.token_file.as_deref()).map_err(|e| anyhow!(e))
    }
}

/// [`Client::connect`], with an error that says what to do about a refused
/// handshake or credentials.
pub async fn connect(url: &str, opts: ClientOptions) -> anyhow::Result<Client> {
    Client::connect(url, opts).await.map_err(|e| {
        let hint = match &e {
            ClientError::Tls { failure, .. } => Some(tls_hint(failure)),
            e if e.server_error() == Some(ServerError::AuthenticationError) => {
                Some("give a valid token with --token or --token-file (or a client certificate)")
            }
            _ => None,
        };
        match hint {
            Some(hint) => anyhow!("connect to {url}: {e}; {hint}"),
            None => anyhow!("connect to {url}: {e}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_tls_by_url() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.token");
        std::fs::write(&file, "jwt\n").unwrap();
        let with_file = ConnectArgs {
            token_file: Some(file.clone()),
            tls: TlsClientArgs {
                tls_trust_certs_file: Some("ca.pem".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let o = with_file
            .client_options("pulsar://h:6650", ClientOptions::default())
            .unwrap();
        assert!(matches!(
            o.auth,
            Some(Authentication::Token(strata_client::TokenSource::File(ref p))) if *p == file
        ));
        // The trust file is for pulsar+ssl:// only.
        assert_eq!(o.tls, TlsOptions::default());
        let o = with_file
            .client_options("pulsar+ssl://h:6651", ClientOptions::default())
            .unwrap();
        assert_eq!(o.tls.trust_certs_file, Some("ca.pem".into()));
        assert_eq!(with_file.admin_token().unwrap().as_deref(), Some("jwt"));

        // A client certificate and no token: the tls method, on TLS only.
        let cert = ConnectArgs {
            tls: TlsClientArgs {
                tls_cert_file: Some("c.pem".into()),
                tls_key_file: Some("c.key".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let o = cert
            .client_options("pulsar+ssl://h", ClientOptions::default())
            .unwrap();
        assert!(matches!(o.auth, Some(Authentication::Tls)));
        let o = cert
            .client_options("pulsar://h", ClientOptions::default())
            .unwrap();
        assert!(o.auth.is_none());

        std::fs::write(&file, " ").unwrap();
        let e = with_file
            .client_options("pulsar://h", ClientOptions::default())
            .unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }
}
