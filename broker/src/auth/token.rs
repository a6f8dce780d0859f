//! JWTs: checking one ([`TokenVerifier`]) and making one ([`create_token`]).
//!
//! As Pulsar's `AuthenticationProviderToken`: the token must be signed by
//! the configured key with an algorithm of its family; `exp` and `nbf` are
//! checked when present, with no leeway (a token without `exp` never
//! expires); the role is the role claim as a string, or the first string
//! of it when it is an array.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Header, Validation};
use serde_json::{Map, Value};

use super::keys::{self, KeyError, SigningKey};
use super::{AuthError, Identity};

pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    role_claim: String,
}

impl TokenVerifier {
    /// Checks tokens signed with `secret` (HS256, HS384 or HS512).
    pub fn with_secret(secret: &[u8], role_claim: &str) -> Result<TokenVerifier, KeyError> {
        Ok(TokenVerifier::new(
            keys::secret_decoding_key(secret)?,
            AlgorithmFamily::Hmac,
            role_claim,
        ))
    }

    /// Checks tokens signed by the private key of `public_key` with an
    /// algorithm of `alg`'s family (RSA: RS* and PS*; EC: the curve's ES*).
    pub fn with_public_key(
        public_key: &[u8],
        alg: Algorithm,
        role_claim: &str,
    ) -> Result<TokenVerifier, KeyError> {
        let key = keys::public_decoding_key(public_key, alg)?;
        let mut v = TokenVerifier::new(key, alg.family(), role_claim);
        if alg.family() == AlgorithmFamily::Ec {
            // An EC key has one curve, so one algorithm.
            v.validation.algorithms = vec![alg];
        }
        Ok(v)
    }

    fn new(key: DecodingKey, family: AlgorithmFamily, role_claim: &str) -> TokenVerifier {
        let mut validation = Validation::new_for_family(family);
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        let role_claim = match role_claim.trim() {
            "" => "sub".to_string(),
            c => c.to_string(),
        };
        TokenVerifier {
            key,
            validation,
            role_claim,
        }
    }

    /// The identity a token proves.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| classify(&e))?;
        let claims = data.claims;
        let role = match claims.get(&self.role_claim) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(items)) => items.first().and_then(Value::as_str).map(str::to_string),
            _ => None,
        }
        .filter(|r| !r.is_empty())
        .ok_or_else(|| AuthError::NoRole(self.role_claim.clone()))?;
        Ok(Identity {
            role,
            expires_at: claims.get("exp").and_then(Value::as_u64),
        })
    }
}

/// What a decoding error means to a client.
fn classify(e: &jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature => {
            AuthError::BadSignature("the signature does not match".into())
        }
        ErrorKind::InvalidAlgorithm => {
            AuthError::BadSignature("signed with an algorithm this broker does not accept".into())
        }
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            AuthError::BadSignature(e.to_string())
        }
        _ => AuthError::Malformed(e.to_string()),
    }
}

/// A token for `subject` (in the `sub` claim), expiring at `expires_at`
/// (seconds since the epoch) if given.
pub fn create_token(
    key: &SigningKey,
    subject: &str,
    expires_at: Option<u64>,
) -> Result<String, KeyError> {
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::String(subject.to_string()));
    if let Some(exp) = expires_at {
        claims.insert("exp".into(), Value::from(exp));
    }
    let header = Header {
        typ: None,
        ..Header::new(key.algorithm)
    };
    jsonwebtoken::encode(&header, &claims, &key.key).map_err(|e| KeyError::Invalid(e.to_string()))
}

/// The header and claims of a token, unchecked (`strata admin tokens show`).
pub fn show_token(token: &str) -> Result<(Value, Value), AuthError> {
    let malformed = |what: &str| AuthError::Malformed(what.to_string());
    let mut parts = token.trim().split('.');
    let (Some(header), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected three dot-separated parts"));
    };
    let part = |p: &str, what: &str| -> Result<Value, AuthError> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .map_err(|_| malformed(&format!("the {what} is not base64url")))?;
        serde_json::from_slice(&bytes).map_err(|_| malformed(&format!("the {what} is not JSON")))
    };
    Ok((part(header, "header")?, part(claims, "claims")?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::keys::generate_key_pair;
    use crate::auth::now_secs;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    pub(crate) fn secret() -> Vec<u8> {
        b"an-hs256-secret-of-32-bytes-long".to_vec()
    }

    pub(crate) fn hs256_token(sub: &str, exp: Option<u64>) -> String {
        create_token(&SigningKey::secret(&secret()).unwrap(), sub, exp).unwrap()
    }

    fn verifier() -> TokenVerifier {
        TokenVerifier::with_secret(&secret(), "sub").unwrap()
    }

    /// A token with these claims, signed with the test secret.
    fn signed(claims: Value) -> String {
        let key = SigningKey::secret(&secret()).unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key.key).unwrap()
    }

    #[test]
    fn valid_tokens_give_their_role_and_expiry() {
        let v = verifier();
        let exp = now_secs() + 3600;
        let id = v.verify(&hs256_token("alice", Some(exp))).unwrap();
        assert_eq!(
            id,
            Identity {
                role: "alice".into(),
                expires_at: Some(exp)
            }
        );
        // No exp: valid forever, as Pulsar's tokens without --expiry-time.
        let id = v.verify(&hs256_token("bob", None)).unwrap();
        assert_eq!(id.expires_at, None);
        // Surrounding whitespace (a token file's newline) is not part of it.
        assert!(v.verify(&format!(" {}\n", hs256_token("c", None))).is_ok());
        // nbf in the past is fine.
        let t = signed(serde_json::json!({"sub": "d", "nbf": now_secs() - 10}));
        assert_eq!(v.verify(&t).unwrap().role, "d");
        // HS384 / HS512 with the same secret are accepted, as by Pulsar.
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let key = SigningKey::secret(&secret())
                .unwrap()
                .with_algorithm(alg)
                .unwrap();
            let t = create_token(&key, "e", None).unwrap();
            assert_eq!(v.verify(&t).unwrap().role, "e");
        }
    }

    #[test]
    fn time_claims_are_checked_without_leeway() {
        let v = verifier();
        let past = now_secs() - 2;
        assert_eq!(
            v.verify(&hs256_token("a", Some(past))),
            Err(AuthError::Expired)
        );
        let t = signed(serde_json::json!({"sub": "a", "nbf": now_secs() + 30}));
        assert_eq!(v.verify(&t), Err(AuthError::NotYetValid));
        let t = signed(serde_json::json!({"sub": "a", "exp": "tomorrow"}));
        assert_eq!(v.verify(&t).unwrap_err().reason(), "malformed");
    }

    #[test]
    fn wrong_keys_and_algorithms_are_bad_signatures() {
        let v = verifier();
        let other = TokenVerifier::with_secret(b"another-secret-another-secret-!!", "sub").unwrap();
        let t = hs256_token("a", None);
        assert_eq!(other.verify(&t).unwrap_err().reason(), "bad_signature");
        // A tampered payload: same header and signature, other claims.
        let parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin"}"#);
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(v.verify(&tampered).unwrap_err().reason(), "bad_signature");
        // alg "none" (no signature) is never accepted.
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert!(v.verify(&unsigned).is_err());
        // An RSA-signed token against a secret, and the other way round.
        let (private, public) = generate_key_pair(Algorithm::RS256).unwrap();
        let rsa_key = SigningKey::private(&private).unwrap();
        let rsa_token = create_token(&rsa_key, "a", None).unwrap();
        assert_eq!(v.verify(&rsa_token).unwrap_err().reason(), "bad_signature");
        let rsa = TokenVerifier::with_public_key(&public, Algorithm::RS256, "sub").unwrap();
        assert_eq!(rsa.verify(&rsa_token).unwrap().role, "a");
        assert_eq!(rsa.verify(&t).unwrap_err().reason(), "bad_signature");
        // An HS256 token whose secret is the RSA public key (the classic
        // algorithm confusion) is refused.
        let confused = create_token(&SigningKey::secret(&public).unwrap(), "admin", None).unwrap();
        assert_eq!(rsa.verify(&confused).unwrap_err().reason(), "bad_signature");
    }

    #[test]
    fn ec_keys() {
        for alg in [Algorithm::ES256, Algorithm::ES384] {
            let (private, public) = generate_key_pair(alg).unwrap();
            let v = TokenVerifier::with_public_key(&public, alg, "sub").unwrap();
            let key = SigningKey::private(&private).unwrap();
            let t = create_token(&key, "ec-role", Some(now_secs() + 60)).unwrap();
            assert_eq!(v.verify(&t).unwrap().role, "ec-role");
            let (other, _) = generate_key_pair(alg).unwrap();
            let t = create_token(&SigningKey::private(&other).unwrap(), "x", None).unwrap();
            assert_eq!(v.verify(&t).unwrap_err().reason(), "bad_signature");
        }
    }

    #[test]
    fn malformed_tokens() {
        let v = verifier();
        assert_eq!(v.verify(""), Err(AuthError::Missing));
        assert_eq!(v.verify("   "), Err(AuthError::Missing));
        for bad in [
            "not-a-jwt",
            "a.b",
            "a.b.c",
            "a.b.c.d",
            "eyJhbGciOiJIUzI1NiJ9.!!!.sig",
            "\u{0}\u{1}",
        ] {
            let e = v.verify(bad).unwrap_err();
            assert!(
                matches!(e, AuthError::Malformed(_) | AuthError::BadSignature(_)),
                "{bad:?}: {e:?}"
            );
        }
        // Valid signature over claims that are not a JSON object.
        let key = SigningKey::secret(&secret()).unwrap();
        let t =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &vec![1, 2], &key.key).unwrap();
        assert_eq!(v.verify(&t).unwrap_err().reason(), "malformed");
    }

    #[test]
    fn the_role_claim() {
        let v = verifier();
        let t = signed(serde_json::json!({"exp": now_secs() + 60}));
        assert_eq!(v.verify(&t), Err(AuthError::NoRole("sub".into())));
        let t = signed(serde_json::json!({"sub": ""}));
        assert_eq!(v.verify(&t).unwrap_err().reason(), "no_role");
        let t = signed(serde_json::json!({"sub": 42}));
        assert_eq!(v.verify(&t).unwrap_err().reason(), "no_role");
        let t = signed(serde_json::json!({"sub": "x", "roles": ["ops", "dev"]}));
        let by_roles = TokenVerifier::with_secret(&secret(), "roles").unwrap();
        assert_eq!(by_roles.verify(&t).unwrap().role, "ops");
        let blank_claim = TokenVerifier::with_secret(&secret(), " ").unwrap();
        assert_eq!(blank_claim.verify(&t).unwrap().role, "x");
    }

    #[test]
    fn show_decodes_without_checking() {
        let t = hs256_token("alice", Some(123));
        let (header, claims) = show_token(&t).unwrap();
        assert_eq!(header["alg"], "HS256");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["exp"], 123);
        assert!(show_token("a.b").is_err());
        assert!(show_token("!!.e30.x").is_err());
    }
}
