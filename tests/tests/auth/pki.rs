//! Certificates for one test, made with rcgen: a CA, a server certificate
//! for 127.0.0.1 and localhost signed by it, and client certificates with
//! a chosen subject CN (the role of the `tls` authentication), signed by
//! the CA or self-signed (which no server trusts).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tempfile::TempDir;

/// A certificate file and its key file.
pub type CertPair = (PathBuf, PathBuf);

pub struct Pki {
    dir: TempDir,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub server: CertPair,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = TempDir::new().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Strata auth test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca = write(dir.path(), "ca.pem", &cert.pem());
        let mut pki = Pki {
            issuer: Issuer::new(params, key),
            ca,
            server: (PathBuf::new(), PathBuf::new()),
            dir,
        };
        pki.server = pki.issue("server", "localhost", &["127.0.0.1", "localhost"], true);
        pki
    }

    /// A client certificate with subject CN `cn`, signed by the CA when
    /// `trusted`, else self-signed.
    pub fn client(&self, cn: &str, trusted: bool) -> CertPair {
        let name = format!("client-{cn}-{}", if trusted { "ca" } else { "self" });
        self.issue(&name, cn, &[], trusted)
    }

    fn issue(&self, name: &str, cn: &str, sans: &[&str], by_ca: bool) -> CertPair {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let server = !sans.is_empty();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = if by_ca {
            params.signed_by(&key, &self.issuer).unwrap()
        } else {
            params.self_signed(&key).unwrap()
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

    /// The standalone flags of both TLS ports (any free port) with the
    /// server certificate, and the CA for client certificates.
    pub fn standalone_flags(&self) -> Vec<String> {
        [
            "--broker-port-tls",
            "0",
            "--admin-port-tls",
            "0",
            "--tls-cert-file",
            path(&self.server.0),
            "--tls-key-file",
            path(&self.server.1),
            "--tls-trust-certs-file",
            path(&self.ca),
        ]
        .map(String::from)
        .to_vec()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}
