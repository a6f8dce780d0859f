//! TLS for the Pulsar protocol listener (`pulsar+ssl://`) and the admin
//! server (HTTPS): rustls on the `ring` provider, the certificate chain and
//! key read from PEM files, and optional client-certificate authentication
//! against a trusted CA file.
//!
//! Client certificates, when a trust file is given: a certificate the client
//! presents must chain to a trusted CA (an untrusted one fails the
//! handshake); a client without one is let in unless
//! `require_trusted_client_cert`. The subject CN of a verified certificate is
//! the connection's role for Pulsar's `tls` authentication method
//! ([`peer_cert_role`]).
//!
//! A failed handshake (plain TCP or garbage on the TLS port, an untrusted
//! client certificate, a client that never finishes) ends that one
//! connection, is logged once at info level, and is bounded by
//! [`TlsConfig::handshake_timeout`]: the listener goes on serving everyone
//! else.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use strata_client::tls::{TlsSetupError, load_certs, load_key};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{info, warn};

/// Where the TLS material is and how clients are checked.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// PEM certificate chain the server presents, leaf first (Pulsar's
    /// `tlsCertificateFilePath`).
    pub cert_file: PathBuf,
    /// PEM private key of the leaf certificate: PKCS#8, PKCS#1 (RSA) or
    /// SEC1 (EC) (`tlsKeyFilePath`).
    pub key_file: PathBuf,
    /// PEM CA certificates that client certificates must chain to
    /// (`tlsTrustCertsFilePath`); without it no client certificate is asked for.
    pub trust_certs_file: Option<PathBuf>,
    /// Refuse clients without a trusted certificate
    /// (`tlsRequireTrustedClientCertOnConnect`); needs `trust_certs_file`.
    pub require_trusted_client_cert: bool,
    /// A client that has not finished the handshake by then is dropped.
    pub handshake_timeout: Duration,
}

impl TlsConfig {
    /// Settings with the default handshake timeout and no client certificates.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            trust_certs_file: None,
            require_trusted_client_cert: false,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the TLS settings cannot be used; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key or trust file that cannot be read or parsed.
    #[error(transparent)]
    File(#[from] TlsSetupError),
    #[error("the TLS key file {key} does not hold the private key of the certificate in {cert}")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("the TLS certificate {cert} and key {key} cannot be used: {reason}")]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("the TLS trust file {path} has a certificate that cannot be a CA: {reason}")]
    BadTrustCert { path: PathBuf, reason: String },
    #[error(
        "requiring trusted client certificates needs the CA file to check them against \
         (--tls-trust-certs-file)"
    )]
    RequireWithoutTrust,
}

/// Why one client's handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake failed: {0}")]
    Failed(io::Error),
    #[error("TLS handshake not finished within {0:?}")]
    TimedOut(Duration),
}

/// The crypto provider of every Strata TLS endpoint. Named explicitly: with
/// both rustls providers compiled in (object_store brings aws-lc-rs) there
/// is no process default.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfig {
    /// Loads the files and builds the rustls server settings; `alpn` lists
    /// the application protocols offered (empty: no ALPN).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        if self.require_trusted_client_cert && self.trust_certs_file.is_none() {
            return Err(TlsError::RequireWithoutTrust);
        }
        let chain = load_certs("certificate", &self.cert_file)?;
        let key = load_key(&self.key_file)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.unusable(e))?;
        let builder = match &self.trust_certs_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in load_certs("trust", path)? {
                    roots.add(cert).map_err(|e| TlsError::BadTrustCert {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let verifier = if self.require_trusted_client_cert {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier.build().map_err(|e| TlsError::BadTrustCert {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                key: self.key_file.clone(),
                cert: self.cert_file.clone(),
            },
            e => self.unusable(e),
        })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    fn unusable(&self, e: rustls::Error) -> TlsError {
        TlsError::Unusable {
            cert: self.cert_file.clone(),
            key: self.key_file.clone(),
            reason: e.to_string(),
        }
    }
}

/// Server-side TLS handshakes, each bounded in time.
#[derive(Clone)]
pub struct TlsAcceptor {
    inner: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
}

impl TlsAcceptor {
    /// Loads `config`'s files; fails with a [`TlsError`] naming the bad one.
    pub fn new(config: &TlsConfig, alpn: &[&[u8]]) -> Result<TlsAcceptor, TlsError> {
        Ok(TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(config.server_config(alpn)?),
            handshake_timeout: config.handshake_timeout,
        })
    }

    /// Runs the server side of the handshake on `io`.
    pub async fn accept<IO>(&self, io: IO) -> Result<TlsStream<IO>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(self.handshake_timeout, self.inner.accept(io)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(HandshakeError::Failed(e)),
            Err(_) => Err(HandshakeError::TimedOut(self.handshake_timeout)),
        }
    }
}

/// The subject CN of the client's certificate, if it presented one (which
/// the verifier then checked against the trust file: an untrusted one never
/// gets this far). It is the role of Pulsar's `tls` authentication method.
pub fn peer_cert_role(conn: &rustls::ServerConnection) -> Option<String> {
    let leaf = conn.peer_certificates()?.first()?;
    common_name(leaf)
}

/// The first subject common name of a DER certificate.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// A TLS listener for `axum::serve`: accepts TCP connections and runs each
/// handshake in its own task, so that a slow or failing client holds up
/// nobody; only finished handshakes come out of [`accept`](axum::serve::Listener::accept).
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    /// Stops the accept task when the listener goes.
    _stop: DropGuard,
}

/// Handshaken connections waiting for the server to take them.
const READY_QUEUE: usize = 64;

impl TlsListener {
    /// Serves handshakes on `listener` until `cancel` or until dropped.
    pub fn new(
        listener: TcpListener,
        acceptor: TlsAcceptor,
        what: &'static str,
        cancel: CancellationToken,
    ) -> io::Result<TlsListener> {
        let local_addr = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let stop = cancel.child_token();
        tokio::spawn(accept_loop(listener, acceptor, what, tx, stop.clone()));
        Ok(TlsListener {
            local_addr,
            ready,
            _stop: stop.drop_guard(),
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    what: &'static str,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let ready = ready.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let stream = tokio::select! {
                        s = acceptor.accept(tcp) => s,
                        _ = stop.cancelled() => return,
                    };
                    match stream {
                        Ok(stream) => {
                            let _ = ready.send((stream, peer)).await;
                        }
                        Err(e) => info!(%peer, listener = what, error = %e, "TLS handshake failed"),
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                warn!(listener = what, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What an admin HTTPS request knows of its connection (axum's
/// `ConnectInfo`): the peer, and the CN of the client certificate the
/// handshake verified, for the `tls` authentication provider.
#[derive(Clone, Debug)]
pub struct TlsConnectInfo {
    pub peer: SocketAddr,
    pub cert_role: Option<String>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for TlsConnectInfo
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> TlsConnectInfo {
        TlsConnectInfo {
            peer: *stream.remote_addr(),
            cert_role: peer_cert_role(stream.io().get_ref().1),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task stopped (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsConfig::new(dir.path().join("nope.pem"), dir.path().join("key.pem"));
        let e = missing.server_config(&[]).unwrap_err().to_string();
        assert!(e.contains("nope.pem") && e.contains("certificate"), "{e}");

        let not_pem = write(dir.path(), "cert.pem", "hello\n");
        let e = TlsConfig::new(&not_pem, dir.path().join("key.pem"))
            .server_config(&[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cert.pem") && e.contains("CERTIFICATE"), "{e}");

        let broken = write(
            dir.path(),
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let e = TlsConfig::new(&broken, dir.path().join("key.pem"))
            .server_config(&[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("broken.pem") && e.contains("not valid PEM"),
            "{e}"
        );
    }

    #[test]
    fn requiring_client_certs_needs_a_trust_file() {
        let mut c = TlsConfig::new("c.pem", "k.pem");
        c.require_trusted_client_cert = true;
        let e = c.server_config(&[]).unwrap_err();
        assert!(matches!(e, TlsError::RequireWithoutTrust), "{e}");
    }

    /// A CA, a server certificate for localhost and client certificates.
    struct Pki {
        dir: tempfile::TempDir,
        ca: rcgen::Issuer<'static, rcgen::KeyPair>,
        ca_cert: CertificateDer<'static>,
    }

    impl Pki {
        fn new() -> Pki {
            let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "test CA");
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "ca.pem", &cert.pem());
            Pki {
                dir,
                ca: rcgen::Issuer::new(params, key),
                ca_cert: cert.der().clone(),
            }
        }

        /// Writes `<name>.pem` and `<name>.key` signed by the CA (or
        /// self-signed) with subject CN `cn`.
        fn issue(&self, name: &str, cn: &str, self_signed: bool) -> (PathBuf, PathBuf) {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = if self_signed {
                params.self_signed(&key).unwrap()
            } else {
                params.signed_by(&key, &self.ca).unwrap()
            };
            (
                write(self.dir.path(), &format!("{name}.pem"), &cert.pem()),
                write(
                    self.dir.path(),
                    &format!("{name}.key"),
                    &key.serialize_pem(),
                ),
            )
        }

        fn server(&self, require: bool) -> TlsAcceptor {
            let (cert, key) = self.issue("server", "localhost", false);
            let mut c = TlsConfig::new(cert, key);
            c.trust_certs_file = Some(self.dir.path().join("ca.pem"));
            c.require_trusted_client_cert = require;
            TlsAcceptor::new(&c, &[]).unwrap()
        }

        /// A client trusting the CA, with the certificate `cert` if given.
        fn client(&self, cert: Option<(PathBuf, PathBuf)>) -> tokio_rustls::TlsConnector {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca_cert.clone()).unwrap();
            let builder = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
            let config = match cert {
                Some((cert, key)) => builder
                    .with_client_auth_cert(
                        load_certs("certificate", &cert).unwrap(),
                        load_key(&key).unwrap(),
                    )
                    .unwrap(),
                None => builder.with_no_client_auth(),
            };
            tokio_rustls::TlsConnector::from(Arc::new(config))
        }
    }

    /// Runs a handshake over an in-memory pipe; the server's result.
    async fn handshake(
        server: &TlsAcceptor,
        client: tokio_rustls::TlsConnector,
    ) -> Result<Option<String>, HandshakeError> {
        let (a, b) = tokio::io::duplex(64 << 10);
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let client = tokio::spawn(async move {
            // Keep the client's stream open until the server is done.
            let s = client.connect(name, a).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(s);
        });
        let result = server
            .accept(b)
            .await
            .map(|s| peer_cert_role(s.get_ref().1));
        client.await.unwrap();
        result
    }

    #[tokio::test]
    async fn client_certificates_give_the_role_or_are_refused() {
        let pki = Pki::new();
        let alice = pki.issue("alice", "alice", false);
        let mallory = pki.issue("mallory", "mallory", true);

        let optional = pki.server(false);
        let role = handshake(&optional, pki.client(Some(alice.clone()))).await;
        assert_eq!(role.unwrap().as_deref(), Some("alice"));
        let role = handshake(&optional, pki.client(None)).await;
        assert_eq!(role.unwrap(), None);
        let e = handshake(&optional, pki.client(Some(mallory.clone()))).await;
        assert!(matches!(e, Err(HandshakeError::Failed(_))), "{e:?}");

        let required = pki.server(true);
        let role = handshake(&required, pki.client(Some(alice))).await;
        assert_eq!(role.unwrap().as_deref(), Some("alice"));
        let e = handshake(&required, pki.client(None)).await;
        assert!(matches!(e, Err(HandshakeError::Failed(_))), "{e:?}");
        let e = handshake(&required, pki.client(Some(mallory))).await;
        assert!(matches!(e, Err(HandshakeError::Failed(_))), "{e:?}");
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let pki = Pki::new();
        let (cert, key) = pki.issue("server", "localhost", false);
        let mut c = TlsConfig::new(cert, key);
        c.handshake_timeout = Duration::from_millis(200);
        let server = TlsAcceptor::new(&c, &[]).unwrap();
        let (_client, io) = tokio::io::duplex(1024);
        let e = server.accept(io).await.map(|_| ());
        assert!(matches!(e, Err(HandshakeError::TimedOut(_))), "{e:?}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let pki = Pki::new();
        let (cert, _) = pki.issue("server", "localhost", false);
        let (_, other_key) = pki.issue("other", "other", false);
        let e = TlsConfig::new(&cert, &other_key)
            .server_config(&[])
            .unwrap_err();
        assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
        assert!(e.to_string().contains("other.key"), "{e}");
    }
}
