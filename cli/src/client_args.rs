//! The client-side TLS flags of `strata admin` and `strata perf`, with the
//! meanings of Pulsar's `client.conf` (`tlsTrustCertsFilePath`,
//! `tlsAllowInsecureConnection`, `tlsCertificateFilePath` /
//! `tlsKeyFilePath`), and the hints that turn a failed handshake into the
//! flag to use.
//!
//! They only apply to `https://` and `pulsar+ssl://` URLs: the trust file's
//! variable is the one `strata standalone` reads for its own trust file, so
//! a shell that exported it must not break plain-URL commands.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;
use strata_client::{TlsFailure, TlsOptions};

#[derive(Args, Debug, Clone, Default)]
pub struct TlsClientArgs {
    /// PEM CA certificates the server's certificate must chain to (for
    /// https:// and pulsar+ssl:// URLs); no other CA is trusted.
    #[arg(long, env = "STRATA_TLS_TRUST_CERTS_FILE", global = true)]
    pub tls_trust_certs_file: Option<PathBuf>,
    /// Accept any server certificate: the connection is encrypted but the
    /// server is not authenticated.
    #[arg(long, env = "STRATA_TLS_ALLOW_INSECURE", global = true)]
    pub tls_allow_insecure: bool,
    /// PEM client certificate (with --tls-key-file), presented to a server
    /// that asks for one; for the `tls` authentication its subject CN is
    /// the role.
    #[arg(long, global = true)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, global = true)]
    pub tls_key_file: Option<PathBuf>,
}

impl TlsClientArgs {
    /// The client's TLS settings; warns on stderr when verification is off.
    pub fn options(&self) -> Result<TlsOptions, String> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => return Err("--tls-cert-file needs --tls-key-file".into()),
            (None, Some(_)) => return Err("--tls-key-file needs --tls-cert-file".into()),
            _ => {}
        }
        // Once per process, however many clients a benchmark makes.
        static WARNED: AtomicBool = AtomicBool::new(false);
        if self.tls_allow_insecure && !WARNED.swap(true, Ordering::Relaxed) {
            eprintln!(
                "warning: --tls-allow-insecure: the server's certificate is not verified; \
                 anyone between here and the server can read and change the traffic"
            );
        }
        Ok(TlsOptions {
            trust_certs_file: self.tls_trust_certs_file.clone(),
            cert_file: self.tls_cert_file.clone(),
            key_file: self.tls_key_file.clone(),
            allow_insecure: self.tls_allow_insecure,
        })
    }

    /// Whether a client certificate is given (for the `tls` auth method).
    pub fn has_client_cert(&self) -> bool {
        self.tls_cert_file.is_some()
    }
}

/// What to do about a failed handshake, naming the flag.
pub fn tls_hint(failure: &TlsFailure) -> &'static str {
    match failure {
        TlsFailure::UntrustedServer(_) => {
            "give the CA that signed the server's certificate with --tls-trust-certs-file \
             (or skip the check with --tls-allow-insecure)"
        }
        TlsFailure::WrongHost(_) => {
            "connect through a host name or address the certificate names \
             (or skip the check with --tls-allow-insecure)"
        }
        TlsFailure::ClientCertRequired => {
            "give a certificate signed by a CA the server trusts with --tls-cert-file and \
             --tls-key-file"
        }
        TlsFailure::ClientCertRefused(_) => {
            "the certificate of --tls-cert-file must be signed by a CA the server trusts"
        }
        TlsFailure::Other(_) => "check that the URL names a TLS port",
    }
}

/// A token from a flag or a file (also `file:///path`), trimmed; an empty
/// one is an error. The same rules for `strata admin` and `strata perf`.
pub fn read_token(
    token: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>, String> {
    let token = match (token, file) {
        (Some(t), _) => t.to_string(),
        (None, Some(path)) => {
            let path = path.to_string_lossy();
            let path = path.strip_prefix("file://").unwrap_or(&path);
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the token file {path}: {e}"))?
        }
        (None, None) => return Ok(None),
    };
    match token.trim() {
        "" => Err("the token is empty".into()),
        t => Ok(Some(t.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_needs_its_key() {
        let half = TlsClientArgs {
            tls_cert_file: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(half.options().unwrap_err().contains("--tls-key-file"));
        let other_half = TlsClientArgs {
            tls_key_file: Some("c.key".into()),
            ..Default::default()
        };
        assert!(
            other_half
                .options()
                .unwrap_err()
                .contains("--tls-cert-file")
        );
        let both = TlsClientArgs {
            tls_cert_file: Some("c.pem".into()),
            tls_key_file: Some("c.key".into()),
            ..Default::default()
        };
        assert_eq!(both.options().unwrap().cert_file, Some("c.pem".into()));
    }

    #[test]
    fn hints_name_the_flag() {
        let untrusted = TlsFailure::UntrustedServer("UnknownIssuer".into());
        assert!(tls_hint(&untrusted).contains("--tls-trust-certs-file"));
        assert!(tls_hint(&TlsFailure::ClientCertRequired).contains("--tls-cert-file"));
    }

    #[test]
    fn tokens_from_flags_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, " jwt\n").unwrap();
        assert_eq!(read_token(Some("a"), Some(&path)), Ok(Some("a".into())));
        assert_eq!(read_token(None, Some(&path)), Ok(Some("jwt".into())));
        let url = PathBuf::from(format!("file://{}", path.display()));
        assert_eq!(read_token(None, Some(&url)), Ok(Some("jwt".into())));
        assert_eq!(read_token(None, None), Ok(None));
        std::fs::write(&path, "\n").unwrap();
        assert!(read_token(None, Some(&path)).unwrap_err().contains("empty"));
        let e = read_token(None, Some(&dir.path().join("none"))).unwrap_err();
        assert!(e.contains("cannot read the token file"), "{e}");
    }
}
