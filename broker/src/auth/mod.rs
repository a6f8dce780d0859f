//! Authentication (Pulsar's token scheme) and authorization (roles).
//!
//! **Authentication.** A client proves a *role* with a JWT: in CONNECT
//! (`auth_method_name = "token"`, the token in `auth_data`, as the official
//! clients' `AuthenticationToken` send it) or on the admin REST API as
//! `Authorization: Bearer <jwt>`. [`AuthService::authenticate`] checks the
//! signature (HS256/384/512 with `tokenSecretKey`, or the RSA / ECDSA
//! family of `tokenPublicAlg` with `tokenPublicKey`), `exp` and `nbf` when
//! present (no clock leeway, as Pulsar), and takes the role from
//! `tokenAuthClaim` (default `sub`). A connection whose token expires is
//! sent an AUTH_CHALLENGE and must answer with a fresh token of the same
//! role within one refresh-check interval, or it is closed
//! (`crate::connection`'s auth part).
//!
//! **Authorization** (only with authentication): superuser roles may do
//! everything; a tenant's admin roles (`TenantInfo.adminRoles`) administer
//! its namespaces, topics and subscriptions; a namespace's grants
//! (`auth_policies.namespace_auth`: role → `produce` / `consume`) let a role
//! produce, consume, look topics up and read their stats ([`authz`]). What
//! each admin path needs is decided in one place ([`http::required_access`]).
//!
//! Every refusal is counted ([`AuthMetrics`]) and logged once at debug
//! level where it is answered.

pub mod authz;
pub mod http;
pub mod keys;
mod metrics;
pub mod policies;
pub mod token;

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

pub use authz::{Access, Need, Operation};
pub use metrics::AuthMetrics;
pub use policies::{AuthAction, AuthPolicies};
pub use token::TokenVerifier;

use crate::config::AuthConfig;

/// The auth method name of the token scheme.
pub const TOKEN_METHOD: &str = "token";

/// Who a client proved to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The role named by the token's role claim.
    pub role: String,
    /// The token's `exp` (seconds since the Unix epoch), if it has one.
    pub expires_at: Option<u64>,
}

impl Identity {
    /// Whether the token has expired at `now` (seconds since the epoch).
    pub fn expired_at(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|exp| exp < now)
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why a client could not be authenticated. The text goes back to the
/// client; [`AuthError::reason`] labels the failure metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token was presented (authentication is required)")]
    Missing,
    #[error("auth method {0:?} is not supported (this broker takes \"token\")")]
    UnsupportedMethod(String),
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("invalid token signature: {0}")]
    BadSignature(String),
    #[error("the token has no role in its {0:?} claim")]
    NoRole(String),
    #[error("the token expired and no fresh one came in answer to AUTH_CHALLENGE")]
    RefreshTimeout,
    #[error("the token expired and the client cannot refresh it")]
    RefreshUnsupported,
    #[error("the role cannot change on a refresh (was {was:?}, now {now:?})")]
    RoleChanged { was: String, now: String },
}

impl AuthError {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::UnsupportedMethod(_) => "unsupported_method",
            AuthError::Malformed(_) => "malformed",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::BadSignature(_) => "bad_signature",
            AuthError::NoRole(_) => "no_role",
            AuthError::RefreshTimeout => "refresh_timeout",
            AuthError::RefreshUnsupported => "refresh_unsupported",
            AuthError::RoleChanged { .. } => "role_changed",
        }
    }
}

/// A setting that keeps the broker from starting.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("authorization needs authentication: add --authentication-enabled")]
    AuthorizationWithoutAuthentication,
    #[error(
        "authentication is enabled but no key is set: give --token-secret-key or --token-public-key"
    )]
    NoKey,
    #[error("give either --token-secret-key or --token-public-key, not both")]
    TwoKeys,
    #[error(transparent)]
    Key(#[from] keys::KeyError),
}

/// The broker's authentication and authorization settings, with the token
/// verifier built from them.
pub struct AuthService {
    verifier: Option<TokenVerifier>,
    authorization: bool,
    superusers: HashSet<String>,
    /// How often connections check their token's expiry.
    pub refresh_check_interval: std::time::Duration,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("authentication", &self.authentication_enabled())
            .field("authorization", &self.authorization)
            .field("superusers", &self.superusers)
            .finish()
    }
}

impl AuthService {
    /// Everything open (the default).
    pub fn disabled() -> AuthService {
        AuthService {
            verifier: None,
            authorization: false,
            superusers: HashSet::new(),
            refresh_check_interval: AuthConfig::default().refresh_check_interval,
        }
    }

    /// Reads the keys the settings name; fails on a setting that cannot work.
    pub fn new(config: &AuthConfig) -> Result<AuthService, AuthConfigError> {
        if config.authorization_enabled && !config.authentication_enabled {
            return Err(AuthConfigError::AuthorizationWithoutAuthentication);
        }
        let verifier = if config.authentication_enabled {
            let verifier = match (&config.token_secret_key, &config.token_public_key) {
                (Some(_), Some(_)) => return Err(AuthConfigError::TwoKeys),
                (None, None) => return Err(AuthConfigError::NoKey),
                (Some(secret), None) => {
                    TokenVerifier::with_secret(&keys::read_key(secret)?, &config.token_auth_claim)?
                }
                (None, Some(public)) => TokenVerifier::with_public_key(
                    &keys::read_key(public)?,
                    config.token_public_alg,
                    &config.token_auth_claim,
                )?,
            };
            Some(verifier)
        } else {
            None
        };
        Ok(AuthService {
            verifier,
            authorization: config.authorization_enabled,
            superusers: config
                .superuser_roles
                .iter()
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty())
                .collect(),
            refresh_check_interval: config.refresh_check_interval,
        })
    }

    pub fn authentication_enabled(&self) -> bool {
        self.verifier.is_some()
    }

    pub fn authorization_enabled(&self) -> bool {
        self.authorization
    }

    pub fn is_superuser(&self, role: &str) -> bool {
        self.superusers.contains(role)
    }

    /// Checks the credentials of CONNECT or AUTH_RESPONSE. `None` when
    /// authentication is off (anyone may connect, with no role).
    pub fn authenticate(
        &self,
        method: Option<&str>,
        data: Option<&[u8]>,
    ) -> Result<Option<Identity>, AuthError> {
        let Some(verifier) = &self.verifier else {
            return Ok(None);
        };
        match method {
            Some(TOKEN_METHOD) => {}
            None | Some("") | Some("none") => return Err(AuthError::Missing),
            Some(other) => return Err(AuthError::UnsupportedMethod(other.to_string())),
        }
        let data = data.unwrap_or_default();
        let token = std::str::from_utf8(data)
            .map_err(|_| AuthError::Malformed("the token is not UTF-8".into()))?;
        verifier.verify(token).map(Some)
    }

    /// Checks an HTTP `Authorization` header (`Bearer <jwt>`). `None` when
    /// authentication is off.
    pub fn authenticate_bearer(
        &self,
        header: Option<&[u8]>,
    ) -> Result<Option<Identity>, AuthError> {
        let Some(verifier) = &self.verifier else {
            return Ok(None);
        };
        let Some(header) = header else {
            return Err(AuthError::Missing);
        };
        let header = std::str::from_utf8(header)
            .map_err(|_| AuthError::Malformed("the Authorization header is not UTF-8".into()))?
            .trim();
        let (scheme, token) = header.split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed(
                "the Authorization header is not `Bearer <token>`".into(),
            ));
        }
        verifier.verify(token.trim()).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token::tests::{hs256_token, secret};

    fn service() -> AuthService {
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret());
        AuthService::new(&AuthConfig {
            authentication_enabled: true,
            authorization_enabled: true,
            superuser_roles: vec!["admin".into(), " ".into()],
            token_secret_key: Some(format!("data:;base64,{b64}")),
            ..AuthConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let no_authn = AuthConfig {
            authorization_enabled: true,
            ..AuthConfig::default()
        };
        assert!(matches!(
            AuthService::new(&no_authn),
            Err(AuthConfigError::AuthorizationWithoutAuthentication)
        ));
        let no_key = AuthConfig {
            authentication_enabled: true,
            ..AuthConfig::default()
        };
        assert!(matches!(
            AuthService::new(&no_key),
            Err(AuthConfigError::NoKey)
        ));
        let two = AuthConfig {
            authentication_enabled: true,
            token_secret_key: Some("data:;base64,AAAA".into()),
            token_public_key: Some("data:;base64,AAAA".into()),
            ..AuthConfig::default()
        };
        assert!(matches!(
            AuthService::new(&two),
            Err(AuthConfigError::TwoKeys)
        ));
        let missing_file = AuthConfig {
            authentication_enabled: true,
            token_secret_key: Some("file:///nonexistent/strata-secret.key".into()),
            ..AuthConfig::default()
        };
        let e = AuthService::new(&missing_file).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/strata-secret.key"), "{e}");
    }

    #[test]
    fn disabled_lets_everyone_in_without_a_role() {
        let s = AuthService::disabled();
        assert!(!s.authentication_enabled());
        assert_eq!(s.authenticate(None, None), Ok(None));
        assert_eq!(s.authenticate_bearer(None), Ok(None));
    }

    #[test]
    fn connect_credentials() {
        let s = service();
        assert!(s.is_superuser("admin") && !s.is_superuser(" ") && !s.is_superuser(""));
        let token = hs256_token("alice", Some(now_secs() + 60));
        let id = s
            .authenticate(Some("token"), Some(token.as_bytes()))
            .unwrap()
            .unwrap();
        assert_eq!(id.role, "alice");
        assert!(!id.expired_at(now_secs()));
        assert!(id.expired_at(now_secs() + 61));
        assert_eq!(s.authenticate(None, None), Err(AuthError::Missing));
        assert_eq!(
            s.authenticate(Some("none"), Some(b"")),
            Err(AuthError::Missing)
        );
        assert_eq!(
            s.authenticate(Some("tls"), Some(token.as_bytes())),
            Err(AuthError::UnsupportedMethod("tls".into()))
        );
        assert_eq!(
            s.authenticate(Some("token"), None).unwrap_err().reason(),
            "missing"
        );
        assert_eq!(
            s.authenticate(Some("token"), Some(&[0xff, 0xfe]))
                .unwrap_err()
                .reason(),
            "malformed"
        );
    }

    #[test]
    fn bearer_headers() {
        let s = service();
        let token = hs256_token("bob", None);
        for header in [format!("Bearer {token}"), format!("bearer  {token} ")] {
            let id = s.authenticate_bearer(Some(header.as_bytes())).unwrap();
            assert_eq!(id.unwrap().role, "bob");
        }
        assert_eq!(s.authenticate_bearer(None), Err(AuthError::Missing));
        for bad in [token.clone(), format!("Basic {token}")] {
            assert_eq!(
                s.authenticate_bearer(Some(bad.as_bytes()))
                    .unwrap_err()
                    .reason(),
                "malformed",
                "{bad}"
            );
        }
        for blank in [&b"Bearer "[..], b"Bearer"] {
            assert_eq!(s.authenticate_bearer(Some(blank)), Err(AuthError::Missing));
        }
    }
}
