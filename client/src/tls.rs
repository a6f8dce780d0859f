//! TLS on the client side, for `pulsar+ssl://` (and `strata admin`'s
//! HTTPS): rustls on the `ring` provider, with Pulsar's client settings.
//!
//! The server's certificate must chain to a CA of `trust_certs_file`
//! (`tlsTrustCertsFilePath`) and name the host dialled; no other roots
//! (system or bundled) are trusted, so without that file every server is
//! refused, unless `allow_insecure` (`tlsAllowInsecureConnection`) turns
//! verification off. A client certificate (`cert_file` and `key_file`) is
//! presented when the server asks for one: the `tls` authentication method
//! takes its subject CN as the role.
//!
//! Bad files are named in the error ([`TlsSetupError`]); a failed handshake
//! is sorted into what the user can act on ([`TlsFailure`]).

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError, DigitallySignedStruct, RootCertStore};

/// How TLS connections are verified and authenticated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM CA certificates the server's certificate must chain to.
    pub trust_certs_file: Option<PathBuf>,
    /// PEM client certificate chain (leaf first), presented when asked.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate: encryption without authentication.
    pub allow_insecure: bool,
}

/// Why the TLS settings cannot be used; every variant names the file or
/// setting. `Clone` (with the I/O error as text) like [`crate::ClientError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the TLS {what} file {path}: {reason}")]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the TLS {what} file {path} is not valid PEM: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the TLS {what} file {path} holds no {expected} (PEM `-----BEGIN {expected}-----`)")]
    Missing {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("a client certificate needs its key file too (and the key its certificate)")]
    HalfAPair,
    #[error("the trust file {path} has a certificate that cannot be a CA: {reason}")]
    BadTrustCert { path: PathBuf, reason: String },
    #[error("the key file {key} does not hold the private key of the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the client certificate {cert} and key {key} cannot be used: {reason}")]
    BadClientCert {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("{host:?} cannot be a TLS server name: {reason}")]
    BadServerName { host: String, reason: String },
    #[error("cannot set up TLS: {0}")]
    Unusable(String),
}

/// What went wrong in a TLS handshake, sorted by what the user can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFailure {
    /// The server's certificate does not chain to a trusted CA (or is
    /// expired, badly signed...).
    #[error("the server's certificate is not trusted: {0}")]
    UntrustedServer(String),
    /// The server's certificate does not name the host dialled.
    #[error("the server's certificate is not valid for this host: {0}")]
    WrongHost(String),
    /// The server wants a client certificate and got none.
    #[error("the server requires a client certificate")]
    ClientCertRequired,
    /// The server did not accept the client certificate.
    #[error("the server refused the client certificate ({0})")]
    ClientCertRefused(String),
    /// Anything else (no common protocol version, a non-TLS server...).
    #[error("{0}")]
    Other(String),
}

/// The crypto provider of every Strata TLS endpoint, named explicitly: with
/// both rustls providers compiled into a binary there is no process default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|e| TlsSetupError::Read {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn pem_error(what: &'static str, path: &Path, e: pem::Error) -> TlsSetupError {
    match e {
        pem::Error::NoItemsFound => TlsSetupError::Missing {
            what,
            path: path.to_path_buf(),
            expected: if what == "key" {
                "PRIVATE KEY"
            } else {
                "CERTIFICATE"
            },
        },
        e => TlsSetupError::Pem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    }
}

/// Every certificate of a PEM file (at least one); `what` names the file in
/// errors ("certificate", "trust"...). Shared with the broker's listeners.
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, e))?;
    if certs.is_empty() {
        return Err(pem_error(what, path, pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let bytes = read("key", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| pem_error("key", path, e))
}

impl TlsOptions {
    /// Reads the files and builds the rustls settings.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Unusable(e.to_string()))?;
        let builder = if self.allow_insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
        } else {
            let mut roots = RootCertStore::empty();
            if let Some(path) = &self.trust_certs_file {
                for cert in load_certs("trust", path)? {
                    roots.add(cert).map_err(|e| TlsSetupError::BadTrustCert {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                }
            }
            builder.with_root_certificates(roots)
        };
        let config = match (&self.cert_file, &self.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(load_certs("certificate", cert)?, load_key(key)?)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => TlsSetupError::KeyMismatch {
                        cert: cert.clone(),
                        key: key.clone(),
                    },
                    e => TlsSetupError::BadClientCert {
                        cert: cert.clone(),
                        key: key.clone(),
                        reason: e.to_string(),
                    },
                })?,
            _ => return Err(TlsSetupError::HalfAPair),
        };
        Ok(Arc::new(config))
    }
}

/// The server name of `host:port` (or `[v6]:port`, or a bare host) for the
/// certificate check: a DNS name or an IP address.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, TlsSetupError> {
    let host = match addr.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| TlsSetupError::BadServerName {
        host: host.to_string(),
        reason: e.to_string(),
    })
}

/// The TLS failure behind `err`, if it is one: looks through its sources,
/// and inside `io::Error`s (which is how tokio-rustls and hyper carry it,
/// sometimes one inside another: an `io::Error`'s `source()` skips the
/// error it wraps, `get_ref()` does not).
pub fn tls_failure(err: &(dyn StdError + 'static)) -> Option<TlsFailure> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(classify(r));
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}

fn classify(e: &rustls::Error) -> TlsFailure {
    match e {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => TlsFailure::WrongHost(e.to_string()),
        rustls::Error::InvalidCertificate(_) => TlsFailure::UntrustedServer(e.to_string()),
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            TlsFailure::ClientCertRequired
        }
        rustls::Error::AlertReceived(
            a @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied),
        ) => TlsFailure::ClientCertRefused(format!("{a:?}")),
        e => TlsFailure::Other(e.to_string()),
    }
}

/// `allow_insecure`: any server certificate is accepted, but the handshake
/// signatures are still checked against the certificate presented.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn server_names_from_addresses() {
        assert_eq!(
            server_name("127.0.0.1:6651").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            server_name("broker.example:6651").unwrap(),
            ServerName::try_from("broker.example").unwrap()
        );
        assert_eq!(
            server_name("[::1]:6651").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert!(matches!(
            server_name("bad host:1"),
            Err(TlsSetupError::BadServerName { .. })
        ));
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = TlsOptions {
            trust_certs_file: Some(missing),
            ..Default::default()
        }
        .client_config()
        .unwrap_err();
        assert!(
            matches!(e, TlsSetupError::Read { what: "trust", .. })
                && e.to_string().contains("nope.pem"),
            "{e}"
        );
        let not_pem = write(dir.path(), "words.pem", "hello\n");
        let e = TlsOptions {
            trust_certs_file: Some(not_pem.clone()),
            ..Default::default()
        }
        .client_config()
        .unwrap_err();
        assert!(
            e.to_string().contains("words.pem") && e.to_string().contains("CERTIFICATE"),
            "{e}"
        );
        let e = TlsOptions {
            cert_file: Some(not_pem),
            ..Default::default()
        }
        .client_config()
        .unwrap_err();
        assert_eq!(e, TlsSetupError::HalfAPair);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(Vec::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert = write(dir.path(), "c.pem", &cert.pem());
        let other = write(
            dir.path(),
            "other.key",
            &rcgen::KeyPair::generate().unwrap().serialize_pem(),
        );
        let e = TlsOptions {
            cert_file: Some(cert.clone()),
            key_file: Some(other),
            ..Default::default()
        }
        .client_config()
        .unwrap_err();
        assert!(matches!(e, TlsSetupError::KeyMismatch { .. }), "{e}");
        let ok = write(dir.path(), "c.key", &key.serialize_pem());
        let config = TlsOptions {
            cert_file: Some(cert),
            key_file: Some(ok),
            ..Default::default()
        }
        .client_config();
        assert!(config.is_ok(), "{config:?}");
    }

    #[test]
    fn failures_are_found_inside_io_errors() {
        let untrusted = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(matches!(
            tls_failure(&untrusted),
            Some(TlsFailure::UntrustedServer(_))
        ));
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(matches!(tls_failure(&name), Some(TlsFailure::WrongHost(_))));
        // As hyper-rustls reports it: an io::Error inside an io::Error.
        let required = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
        ));
        assert_eq!(tls_failure(&required), Some(TlsFailure::ClientCertRequired));
        let refused = rustls::Error::AlertReceived(AlertDescription::UnknownCA);
        assert!(matches!(
            tls_failure(&refused),
            Some(TlsFailure::ClientCertRefused(_))
        ));
        let plain = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(tls_failure(&plain), None);
    }
}
