//! Token keys: where a setting reads them from, the forms they take, and
//! making new ones (`strata admin tokens`).
//!
//! Settings name keys as Pulsar's `readKeyFromUrl` does: `data:` URLs
//! (`data:;base64,...`), `file:` URLs, a path to a file, or the key itself
//! in base64. Files hold what Pulsar's `tokens create-secret-key` and
//! `create-key-pair` write: the secret's raw bytes, a PKCS#8 private key and
//! an X.509 SubjectPublicKeyInfo public key, both DER. PEM files
//! (`-----BEGIN PUBLIC KEY-----`...) are accepted too.

use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{self, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED,
    ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair, ParsedPublicKey,
    RSA_PKCS1_2048_8192_SHA256, VerificationAlgorithm,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};

/// Bytes of a new HS256 secret (Pulsar's `create-secret-key`: 256 bits).
pub const SECRET_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "bad key setting {0:?}: expected file:///path, data:;base64,..., a file path or base64 text"
    )]
    BadSetting(String),
    #[error("invalid key: {0}")]
    Invalid(String),
    #[error("cannot generate a key: {0}")]
    Generate(String),
}

/// Reads the key a setting names (see the module docs).
pub fn read_key(setting: &str) -> Result<Vec<u8>, KeyError> {
    let setting = setting.trim();
    let bad = || KeyError::BadSetting(shorten(setting));
    if setting.is_empty() {
        return Err(bad());
    }
    if let Some(rest) = setting.strip_prefix("data:") {
        // RFC 2397: data:[<mediatype>][;base64],<data>
        let (params, data) = rest.split_once(',').ok_or_else(bad)?;
        return if params.ends_with(";base64") || params == "base64" {
            STANDARD
                .decode(data.trim())
                .or_else(|_| STANDARD_NO_PAD.decode(data.trim()))
                .map_err(|_| bad())
        } else {
            percent_decode(data).ok_or_else(bad)
        };
    }
    if let Some(rest) = setting.strip_prefix("file:") {
        // file:///abs/path, file:/abs/path or file://localhost/abs/path.
        let path = rest
            .strip_prefix("//localhost")
            .or_else(|| rest.strip_prefix("//"))
            .unwrap_or(rest);
        let path = percent_decode(path)
            .and_then(|p| String::from_utf8(p).ok())
            .ok_or_else(bad)?;
        if path.is_empty() {
            return Err(bad());
        }
        return read_file(Path::new(&path));
    }
    let path = Path::new(setting);
    if path.is_file() {
        return read_file(path);
    }
    STANDARD.decode(setting).map_err(|_| bad())
}

fn read_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A setting shown in an error without a whole inline key.
fn shorten(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The DER inside a PEM document (`-----BEGIN <label>-----`), with its
/// label; `None` if `bytes` is not PEM.
pub fn pem_to_der(bytes: &[u8]) -> Option<Result<(String, Vec<u8>), KeyError>> {
    let text = std::str::from_utf8(bytes).ok()?.trim_start();
    let rest = text.strip_prefix("-----BEGIN ")?;
    let parse = || {
        let bad = |why: &str| KeyError::Invalid(format!("bad PEM document: {why}"));
        let (label, body) = rest
            .split_once("-----")
            .ok_or_else(|| bad("no header end"))?;
        let end = format!("-----END {label}-----");
        let (body, _) = body.split_once(&end).ok_or_else(|| bad("no END line"))?;
        let b64: String = body.split_whitespace().collect();
        let der = STANDARD
            .decode(b64)
            .map_err(|e| bad(&format!("bad base64: {e}")))?;
        Ok((label.to_string(), der))
    };
    Some(parse())
}

/// `der` in a PEM document labelled `label`.
pub fn der_to_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The HMAC key of a secret.
pub fn secret_decoding_key(secret: &[u8]) -> Result<DecodingKey, KeyError> {
    if secret.is_empty() {
        return Err(KeyError::Invalid("the secret key is empty".into()));
    }
    DecodingKey::from_secret(secret).map_err(|e| KeyError::Invalid(e.to_string()))
}

/// The verification key of a public key (DER or PEM) for `alg`, checked
/// now so that a bad key stops the broker at start, not every client later.
pub fn public_decoding_key(bytes: &[u8], alg: Algorithm) -> Result<DecodingKey, KeyError> {
    let der = match pem_to_der(bytes) {
        Some(pem) => pem?.1,
        None => bytes.to_vec(),
    };
    let check = |v: &'static dyn VerificationAlgorithm, what: &str| {
        ParsedPublicKey::new(v, &der)
            .map(|_| ())
            .map_err(|e| KeyError::Invalid(format!("not an {what} public key: {e}")))
    };
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            check(&RSA_PKCS1_2048_8192_SHA256, "RSA (2048 to 8192 bits)")?;
            Ok(DecodingKey::from_rsa_der(&der))
        }
        Algorithm::ES256 => {
            check(&ECDSA_P256_SHA256_FIXED, "EC P-256")?;
            Ok(DecodingKey::from_ec_der(&der))
        }
        Algorithm::ES384 => {
            check(&ECDSA_P384_SHA384_FIXED, "EC P-384")?;
            Ok(DecodingKey::from_ec_der(&der))
        }
        other => Err(KeyError::Invalid(format!(
            "{other:?} is not a public-key algorithm (use RS256, RS384, RS512, PS256, PS384, PS512, ES256 or ES384)"
        ))),
    }
}

/// A signing key read from a file: a secret (HS256) or a private key
/// (PKCS#8 DER or PEM, RSA or EC), with the algorithm it signs with.
pub struct SigningKey {
    pub key: EncodingKey,
    pub algorithm: Algorithm,
}

impl SigningKey {
    pub fn secret(secret: &[u8]) -> Result<SigningKey, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::Invalid("the secret key is empty".into()));
        }
        Ok(SigningKey {
            key: EncodingKey::from_secret(secret).map_err(|e| KeyError::Invalid(e.to_string()))?,
            algorithm: Algorithm::HS256,
        })
    }

    /// A private key; its type picks the algorithm (RS256, ES256 or ES384).
    pub fn private(bytes: &[u8]) -> Result<SigningKey, KeyError> {
        let (label, der) = match pem_to_der(bytes) {
            Some(pem) => pem?,
            None => ("PRIVATE KEY".to_string(), bytes.to_vec()),
        };
        let invalid = |e: jsonwebtoken::errors::Error| KeyError::Invalid(e.to_string());
        if label == "RSA PRIVATE KEY" {
            // PKCS#1, what the signer takes as it is.
            rsa::KeyPair::from_der(&der)
                .map_err(|e| KeyError::Invalid(format!("bad RSA private key: {e}")))?;
            return Ok(SigningKey {
                key: EncodingKey::from_rsa_der(&der),
                algorithm: Algorithm::RS256,
            });
        }
        if label != "PRIVATE KEY" {
            return Err(KeyError::Invalid(format!(
                "expected a PKCS#8 private key, got a PEM {label:?}"
            )));
        }
        if rsa::KeyPair::from_pkcs8(&der).is_ok() {
            let pem = der_to_pem("PRIVATE KEY", &der);
            return Ok(SigningKey {
                key: EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(invalid)?,
                algorithm: Algorithm::RS256,
            });
        }
        for (alg, signing) in [
            (Algorithm::ES256, &ECDSA_P256_SHA256_FIXED_SIGNING),
            (Algorithm::ES384, &ECDSA_P384_SHA384_FIXED_SIGNING),
        ] {
            if EcdsaKeyPair::from_pkcs8(signing, &der).is_ok() {
                return Ok(SigningKey {
                    key: EncodingKey::from_ec_der(&der),
                    algorithm: alg,
                });
            }
        }
        Err(KeyError::Invalid(
            "not a PKCS#8 RSA, EC P-256 or EC P-384 private key".into(),
        ))
    }

    /// Signs with `alg` instead (same family: RS256 → RS512, PS256...).
    pub fn with_algorithm(mut self, alg: Algorithm) -> Result<SigningKey, KeyError> {
        let same = alg.family() == self.algorithm.family()
            && (alg.family() != AlgorithmFamily::Ec || alg == self.algorithm);
        if !same {
            return Err(KeyError::Invalid(format!(
                "a {:?} key cannot sign {alg:?}",
                self.algorithm
            )));
        }
        self.algorithm = alg;
        Ok(self)
    }
}

/// A new random HS256 secret.
pub fn generate_secret_key() -> Result<Vec<u8>, KeyError> {
    let mut key = vec![0u8; SECRET_KEY_BYTES];
    aws_lc_rs::rand::fill(&mut key).map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok(key)
}

/// A new key pair for `alg`: (PKCS#8 private key, X.509 public key), DER,
/// as Pulsar's `tokens create-key-pair` writes them. RSA keys have 2048 bits.
pub fn generate_key_pair(alg: Algorithm) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    let err = |e: &dyn std::fmt::Display| KeyError::Generate(e.to_string());
    let ec = |signing: &'static EcdsaSigningAlgorithm| {
        let pair = EcdsaKeyPair::generate(signing).map_err(|e| err(&e))?;
        let private = pair.to_pkcs8v1().map_err(|e| err(&e))?;
        let public: PublicKeyX509Der = pair.public_key().as_der().map_err(|e| err(&e))?;
        Ok((private.as_ref().to_vec(), public.as_ref().to_vec()))
    };
    match alg.family() {
        AlgorithmFamily::Rsa => {
            let pair = rsa::KeyPair::generate(KeySize::Rsa2048).map_err(|e| err(&e))?;
            let private: Pkcs8V1Der = pair.as_der().map_err(|e| err(&e))?;
            let public: PublicKeyX509Der = pair.public_key().as_der().map_err(|e| err(&e))?;
            Ok((private.as_ref().to_vec(), public.as_ref().to_vec()))
        }
        AlgorithmFamily::Ec if alg == Algorithm::ES256 => ec(&ECDSA_P256_SHA256_FIXED_SIGNING),
        AlgorithmFamily::Ec if alg == Algorithm::ES384 => ec(&ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => Err(KeyError::Generate(format!(
            "{alg:?} has no key pair (use RS256 or ES256)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_keys_as_pulsar_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my key.bin");
        std::fs::write(&path, b"\x00\x01secret").unwrap();
        let p = path.display().to_string();
        assert_eq!(read_key(&format!("file://{p}")).unwrap(), b"\x00\x01secret");
        assert_eq!(read_key(&format!("file:{p}")).unwrap(), b"\x00\x01secret");
        let encoded = p.replace(' ', "%20");
        assert_eq!(
            read_key(&format!("file://{encoded}")).unwrap(),
            b"\x00\x01secret"
        );
        assert_eq!(read_key(&p).unwrap(), b"\x00\x01secret");
        assert_eq!(
            read_key("data:;base64,AAFzZWNyZXQ=").unwrap(),
            b"\x00\x01secret"
        );
        assert_eq!(
            read_key("data:application/octet-stream;base64,AAFzZWNyZXQ").unwrap(),
            b"\x00\x01secret"
        );
        assert_eq!(read_key("data:,plain%20text").unwrap(), b"plain text");
        assert_eq!(read_key("AAFzZWNyZXQ=").unwrap(), b"\x00\x01secret");

        let missing = read_key("file:///nonexistent/key").unwrap_err();
        assert!(matches!(missing, KeyError::Io { .. }), "{missing}");
        for bad in [
            "data:;base64",
            "data:;base64,!!!",
            "not a key!",
            "",
            "file://",
        ] {
            assert!(
                matches!(read_key(bad), Err(KeyError::BadSetting(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn pem_round_trip() {
        let der: Vec<u8> = (0..200u8).collect();
        let pem = der_to_pem("PUBLIC KEY", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let (label, back) = pem_to_der(pem.as_bytes()).unwrap().unwrap();
        assert_eq!((label.as_str(), back), ("PUBLIC KEY", der));
        assert!(pem_to_der(b"\x30\x82binary").is_none());
        assert!(pem_to_der(b"-----BEGIN X-----\nAAAA\n").unwrap().is_err());
    }

    #[test]
    fn generated_pairs_load_in_both_forms() {
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::ES384] {
            let (private, public) = generate_key_pair(alg).unwrap();
            public_decoding_key(&public, alg).unwrap();
            public_decoding_key(der_to_pem("PUBLIC KEY", &public).as_bytes(), alg).unwrap();
            let signing = SigningKey::private(&private).unwrap();
            assert_eq!(signing.algorithm, alg);
            let pem = der_to_pem("PRIVATE KEY", &private);
            assert_eq!(SigningKey::private(pem.as_bytes()).unwrap().algorithm, alg);
        }
        let (_, rsa_public) = generate_key_pair(Algorithm::RS256).unwrap();
        // An RSA key is not an EC key, and the other way round.
        assert!(public_decoding_key(&rsa_public, Algorithm::ES256).is_err());
        let (_, ec_public) = generate_key_pair(Algorithm::ES256).unwrap();
        assert!(public_decoding_key(&ec_public, Algorithm::RS256).is_err());
        assert!(public_decoding_key(&ec_public, Algorithm::ES384).is_err());
        assert!(public_decoding_key(&ec_public, Algorithm::HS256).is_err());
        assert!(public_decoding_key(b"garbage", Algorithm::RS256).is_err());
        assert!(SigningKey::private(b"garbage").is_err());
        assert!(generate_key_pair(Algorithm::HS256).is_err());
        assert_eq!(generate_secret_key().unwrap().len(), SECRET_KEY_BYTES);
        assert_ne!(
            generate_secret_key().unwrap(),
            generate_secret_key().unwrap()
        );
    }

    #[test]
    fn algorithm_overrides_stay_in_the_family() {
        let (private, _) = generate_key_pair(Algorithm::RS256).unwrap();
        let k = SigningKey::private(&private).unwrap();
        assert_eq!(
            k.with_algorithm(Algorithm::PS512).unwrap().algorithm,
            Algorithm::PS512
        );
        let k = SigningKey::private(&private).unwrap();
        assert!(k.with_algorithm(Algorithm::ES256).is_err());
        let s = SigningKey::secret(b"0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            s.with_algorithm(Algorithm::HS512).unwrap().algorithm,
            Algorithm::HS512
        );
        let (ec, _) = generate_key_pair(Algorithm::ES256).unwrap();
        let k = SigningKey::private(&ec).unwrap();
        assert!(k.with_algorithm(Algorithm::ES384).is_err());
        assert!(SigningKey::secret(b"").is_err());
    }
}
