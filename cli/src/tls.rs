//! The TLS flags of `strata standalone`, with Pulsar's names: the
//! `pulsar+ssl://` port, the admin HTTPS port and their certificate files.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use strata_broker::tls::TlsConfig;

#[derive(Args, Debug, Clone)]
pub struct TlsArgs {
    /// Port of the `pulsar+ssl://` listener (Pulsar's brokerServicePortTls,
    /// conventionally 6651; 0: any free port). Off unless given.
    #[arg(long, env = "STRATA_BROKER_PORT_TLS")]
    pub broker_port_tls: Option<u16>,
    /// Port of the admin HTTPS listener (Pulsar's webServicePortTls,
    /// conventionally 8443; 0: any free port). Off unless given.
    #[arg(long, env = "STRATA_ADMIN_PORT_TLS")]
    pub admin_port_tls: Option<u16>,
    /// PEM certificate chain of the TLS ports, leaf first.
    #[arg(long, env = "STRATA_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "STRATA_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to. Without
    /// it no client certificate is asked for; with it a client may present
    /// one (its subject CN is the client's role) and must if
    /// --tls-require-trusted-client-cert.
    #[arg(long, env = "STRATA_TLS_TRUST_CERTS_FILE")]
    pub tls_trust_certs_file: Option<PathBuf>,
    /// Refuse TLS clients without a certificate signed by a CA of
    /// --tls-trust-certs-file (Pulsar's tlsRequireTrustedClientCertOnConnect).
    #[arg(long, env = "STRATA_TLS_REQUIRE_TRUSTED_CLIENT_CERT")]
    pub tls_require_trusted_client_cert: bool,
    /// A TLS client that has not finished its handshake by then is dropped.
    #[arg(long, env = "STRATA_TLS_HANDSHAKE_TIMEOUT", default_value = "10s",
          value_parser = humantime::parse_duration)]
    pub tls_handshake_timeout: Duration,
}

impl TlsArgs {
    /// The TLS settings when a TLS port is asked for, with their files
    /// checked (so that a bad one stops the start-up before anything runs,
    /// with an error naming it); an error naming the missing flag when the
    /// certificate or key is not given.
    pub fn config(&self) -> anyhow::Result<Option<TlsConfig>> {
        if self.broker_port_tls.is_none() && self.admin_port_tls.is_none() {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) else {
            anyhow::bail!(
                "--broker-port-tls and --admin-port-tls need --tls-cert-file and --tls-key-file"
            );
        };
        let config = TlsConfig {
            cert_file: cert.clone(),
            key_file: key.clone(),
            trust_certs_file: self.tls_trust_certs_file.clone(),
            require_trusted_client_cert: self.tls_require_trusted_client_cert,
            handshake_timeout: self.tls_handshake_timeout,
        };
        config.server_config(&[])?;
        Ok(Some(config))
    }
}
