//! Authentication (Pulsar's token and tls schemes) and authorization (roles).
//!
//! **Authentication.** A client proves a *role* through one of the enabled
//! [`AuthProvider`]s:
//! - `token`: a JWT, in CONNECT (`auth_method_name = "token"`, the token in
//!   `auth_data`, as the official clients' `AuthenticationToken` send it)
//!   or on the admin REST API as `Authorization: Bearer <jwt>`.
//!   [`AuthService::authenticate`] checks the signature (HS256/384/512 with
//!   `tokenSecretKey`, or the RSA / ECDSA family of `tokenPublicAlg` with
//!   `tokenPublicKey`), `exp` and `nbf` when present (no clock leeway, as
//!   Pulsar), and takes the role from `tokenAuthClaim` (default `sub`). A
//!   connection whose token expires is sent an AUTH_CHALLENGE and must
//!   answer with a fresh token of the same role within one refresh-check
//!   interval, or it is closed (`crate::connection`'s auth part).
//! - `tls`: the subject CN of the client certificate the TLS listener
//!   verified against its trust file (`crate::tls`), in CONNECT with
//!   `auth_method_name = "tls"` (the official clients' `AuthenticationTLS`)
//!   or, on the admin HTTPS port, for a request without `Authorization`.
//!   Such a role never expires on a connection.
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
/// The auth method name of client-certificate authentication.
pub const TLS_METHOD: &str = "tls";

/// A way for clients to prove their role (Pulsar's `authenticationProviders`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthProvider {
    /// A JWT (auth method `token`, or `Authorization: Bearer` on the admin API).
    Token,
    /// The subject CN of a client certificate the TLS listener verified
    /// (auth method `tls`, or no `Authorization` on the admin HTTPS port).
    Tls,
}

impl AuthProvider {
    /// The auth method name clients send in CONNECT for this provider.
    pub fn method(self) -> &'static str {
        match self {
            AuthProvider::Token => TOKEN_METHOD,
            AuthProvider::Tls => TLS_METHOD,
        }
    }
}

impl std::str::FromStr for AuthProvider {
    type Err = String;

    /// `token` or `tls`, or Pulsar's class names of the two providers (so
    /// a `broker.conf` value can be copied).
    fn from_str(s: &str) -> Result<AuthProvider, String> {
        let s = s.trim();
        let short = s
            .strip_prefix("org.apache.pulsar.broker.authentication.AuthenticationProvider")
            .unwrap_or(s);
        match short.to_ascii_lowercase().as_str() {
            "token" => Ok(AuthProvider::Token),
            "tls" => Ok(AuthProvider::Tls),
            _ => Err(format!(
                "unknown authentication provider {s:?} (expected token or tls)"
            )),
        }
    }
}

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
    #[error("no credentials were presented (authentication is required)")]
    Missing,
    #[error("auth method {method:?} is not enabled on this broker (it takes {supported})")]
    UnsupportedMethod { method: String, supported: String },
    #[error(
        "the tls auth method needs a client certificate with a subject CN, signed by a CA \
         the broker trusts, presented on its TLS port"
    )]
    NoClientCert,
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
            AuthError::UnsupportedMethod { .. } => "unsupported_method",
            AuthError::NoClientCert => "no_client_cert",
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
    #[error("authentication is enabled but no provider is: give --authentication-providers")]
    NoProvider,
    #[error(
        "a token key is set but the token provider is not enabled: add token to \
         --authentication-providers"
    )]
    KeyWithoutTokenProvider,
    #[error(
        "the tls authentication provider needs client certificates checked against a CA: \
         give --tls-trust-certs-file and a TLS port (--broker-port-tls, --admin-port-tls)"
    )]
    TlsWithoutTrust,
    #[error("give either --token-secret-key or --token-public-key, not both")]
    TwoKeys,
    #[error(transparent)]
    Key(#[from] keys::KeyError),
}

/// The tls provider needs the TLS listeners to check client certificates
/// against a CA (`tls`'s trust file); without one no client could use it.
pub fn check_tls_provider(
    config: &AuthConfig,
    tls: Option<&crate::tls::TlsConfig>,
) -> Result<(), AuthConfigError> {
    let wants_tls = config.authentication_enabled && config.providers.contains(&AuthProvider::Tls);
    if wants_tls && tls.and_then(|t| t.trust_certs_file.as_ref()).is_none() {
        return Err(AuthConfigError::TlsWithoutTrust);
    }
    Ok(())
}

/// The broker's authentication and authorization settings, with the token
/// verifier built from them.
pub struct AuthService {
    enabled: bool,
    /// Set when the token provider is enabled.
    verifier: Option<TokenVerifier>,
    /// The tls provider is enabled.
    tls: bool,
    authorization: bool,
    superusers: HashSet<String>,
    /// How often connections check their token's expiry.
    pub refresh_check_interval: std::time::Duration,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("authentication", &self.enabled)
            .field("token", &self.verifier.is_some())
            .field("tls", &self.tls)
            .field("authorization", &self.authorization)
            .field("superusers", &self.superusers)
            .finish()
    }
}

impl AuthService {
    /// Everything open (the default).
    pub fn disabled() -> AuthService {
        AuthService {
            enabled: false,
            verifier: None,
            tls: false,
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
        let enabled = config.authentication_enabled;
        let token = enabled && config.providers.contains(&AuthProvider::Token);
        let tls = enabled && config.providers.contains(&AuthProvider::Tls);
        if enabled && !token && !tls {
            return Err(AuthConfigError::NoProvider);
        }
        let has_key = config.token_secret_key.is_some() || config.token_public_key.is_some();
        if enabled && !token && has_key {
            return Err(AuthConfigError::KeyWithoutTokenProvider);
        }
        let verifier = if token {
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
            enabled,
            verifier,
            tls,
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
        self.enabled
    }

    pub fn authorization_enabled(&self) -> bool {
        self.authorization
    }

    pub fn is_superuser(&self, role: &str) -> bool {
        self.superusers.contains(role)
    }

    /// The enabled methods, for error messages: `"token"`, `"token" or "tls"`.
    fn supported(&self) -> String {
        let mut methods = Vec::new();
        if self.verifier.is_some() {
            methods.push(format!("{TOKEN_METHOD:?}"));
        }
        if self.tls {
            methods.push(format!("{TLS_METHOD:?}"));
        }
        methods.join(" or ")
    }

    fn unsupported(&self, method: &str) -> AuthError {
        AuthError::UnsupportedMethod {
            method: method.to_string(),
            supported: self.supported(),
        }
    }

    /// Checks the credentials of CONNECT or AUTH_RESPONSE: `method` and
    /// `data` as the client sent them, `cert_role` the CN of the client
    /// certificate the TLS listener verified (if any). `None` when
    /// authentication is off (anyone may connect, with no role).
    pub fn authenticate(
        &self,
        method: Option<&str>,
        data: Option<&[u8]>,
        cert_role: Option<&str>,
    ) -> Result<Option<Identity>, AuthError> {
        if !self.enabled {
            return Ok(None);
        }
        match method {
            None | Some("") | Some("none") => Err(AuthError::Missing),
            Some(TOKEN_METHOD) => {
                let Some(verifier) = &self.verifier else {
                    return Err(self.unsupported(TOKEN_METHOD));
                };
                let data = data.unwrap_or_default();
                let token = std::str::from_utf8(data)
                    .map_err(|_| AuthError::Malformed("the token is not UTF-8".into()))?;
                verifier.verify(token).map(Some)
            }
            Some(TLS_METHOD) if self.tls => self.cert_identity(cert_role).map(Some),
            Some(other) => Err(self.unsupported(other)),
        }
    }

    fn cert_identity(&self, cert_role: Option<&str>) -> Result<Identity, AuthError> {
        match cert_role.map(str::trim) {
            Some(role) if !role.is_empty() => Ok(Identity {
                role: role.to_string(),
                expires_at: None,
            }),
            _ => Err(AuthError::NoClientCert),
        }
    }

    /// Checks an admin request: its `Authorization` header (`Bearer
    /// <jwt>`) if it has one, else (with the tls provider) the CN of the
    /// client certificate of its HTTPS connection. `None` when
    /// authentication is off.
    pub fn authenticate_http(
        &self,
        header: Option<&[u8]>,
        cert_role: Option<&str>,
    ) -> Result<Option<Identity>, AuthError> {
        if !self.enabled {
            return Ok(None);
        }
        let Some(header) = header else {
            return match cert_role {
                Some(_) if self.tls => self.cert_identity(cert_role).map(Some),
                _ => Err(AuthError::Missing),
            };
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
        let Some(verifier) = &self.verifier else {
            return Err(self.unsupported(TOKEN_METHOD));
        };
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
        assert_eq!(s.authenticate(None, None, None), Ok(None));
        assert_eq!(s.authenticate_http(None, None), Ok(None));
    }

    #[test]
    fn connect_credentials() {
        let s = service();
        assert!(s.is_superuser("admin") && !s.is_superuser(" ") && !s.is_superuser(""));
        let token = hs256_token("alice", Some(now_secs() + 60));
        let id = s
            .authenticate(Some("token"), Some(token.as_bytes()), None)
            .unwrap()
            .unwrap();
        assert_eq!(id.role, "alice");
        assert!(!id.expired_at(now_secs()));
        assert!(id.expired_at(now_secs() + 61));
        assert_eq!(s.authenticate(None, None, None), Err(AuthError::Missing));
        assert_eq!(
            s.authenticate(Some("none"), Some(b""), Some("alice")),
            Err(AuthError::Missing)
        );
        // The tls provider is not enabled: a certificate proves nothing.
        let e = s
            .authenticate(Some("tls"), Some(token.as_bytes()), Some("alice"))
            .unwrap_err();
        assert_eq!(e.reason(), "unsupported_method");
        assert_eq!(
            e.to_string(),
            r#"auth method "tls" is not enabled on this broker (it takes "token")"#
        );
        assert_eq!(
            s.authenticate(Some("token"), None, None)
                .unwrap_err()
                .reason(),
            "missing"
        );
        assert_eq!(
            s.authenticate(Some("token"), Some(&[0xff, 0xfe]), None)
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
            let id = s.authenticate_http(Some(header.as_bytes()), None).unwrap();
            assert_eq!(id.unwrap().role, "bob");
        }
        assert_eq!(s.authenticate_http(None, None), Err(AuthError::Missing));
        for bad in [token.clone(), format!("Basic {token}")] {
            assert_eq!(
                s.authenticate_http(Some(bad.as_bytes()), None)
                    .unwrap_err()
                    .reason(),
                "malformed",
                "{bad}"
            );
        }
        for blank in [&b"Bearer "[..], b"Bearer"] {
            assert_eq!(
                s.authenticate_http(Some(blank), None),
                Err(AuthError::Missing)
            );
        }
        // Without the tls provider a client certificate is no credential.
        assert_eq!(
            s.authenticate_http(None, Some("alice")),
            Err(AuthError::Missing)
        );
    }

    fn with_providers(providers: &[AuthProvider], key: bool) -> AuthConfig {
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret());
        AuthConfig {
            authentication_enabled: true,
            providers: providers.to_vec(),
            token_secret_key: key.then(|| format!("data:;base64,{b64}")),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn providers_parse_with_short_and_pulsar_names() {
        for (text, want) in [
            ("token", AuthProvider::Token),
            (" TLS ", AuthProvider::Tls),
            (
                "org.apache.pulsar.broker.authentication.AuthenticationProviderToken",
                AuthProvider::Token,
            ),
            (
                "org.apache.pulsar.broker.authentication.AuthenticationProviderTls",
                AuthProvider::Tls,
            ),
        ] {
            assert_eq!(text.parse::<AuthProvider>(), Ok(want), "{text}");
        }
        let e = "basic".parse::<AuthProvider>().unwrap_err();
        assert!(e.contains("basic") && e.contains("token or tls"), "{e}");
    }

    #[test]
    fn tls_provider_takes_the_certificate_role() {
        let s = AuthService::new(&with_providers(&[AuthProvider::Tls], false)).unwrap();
        assert!(s.authentication_enabled());
        let id = s.authenticate(Some("tls"), None, Some("alice")).unwrap();
        assert_eq!(id.as_ref().map(|i| i.role.as_str()), Some("alice"));
        assert_eq!(id.and_then(|i| i.expires_at), None);
        // No (or an empty) certificate role: refused, with its own reason.
        for none in [None, Some(""), Some("  ")] {
            let e = s.authenticate(Some("tls"), None, none).unwrap_err();
            assert_eq!(e, AuthError::NoClientCert);
            assert_eq!(e.reason(), "no_client_cert");
        }
        // A token is no credential when only tls is enabled.
        let token = hs256_token("alice", None);
        let e = s
            .authenticate(Some("token"), Some(token.as_bytes()), Some("alice"))
            .unwrap_err();
        assert_eq!(e.reason(), "unsupported_method");
        assert!(e.to_string().contains(r#"it takes "tls""#), "{e}");
        assert_eq!(
            s.authenticate(None, None, Some("alice")),
            Err(AuthError::Missing)
        );
        // Admin requests: the certificate when there is no header; a
        // Bearer header is not accepted in its place.
        let id = s.authenticate_http(None, Some("alice")).unwrap().unwrap();
        assert_eq!(id.role, "alice");
        assert_eq!(s.authenticate_http(None, None), Err(AuthError::Missing));
        let header = format!("Bearer {token}");
        let e = s
            .authenticate_http(Some(header.as_bytes()), Some("alice"))
            .unwrap_err();
        assert_eq!(e.reason(), "unsupported_method");
    }

    #[test]
    fn token_and_tls_together() {
        let both = [AuthProvider::Token, AuthProvider::Tls];
        let s = AuthService::new(&with_providers(&both, true)).unwrap();
        let token = hs256_token("bob", None);
        let id = s
            .authenticate(Some("token"), Some(token.as_bytes()), Some("alice"))
            .unwrap();
        assert_eq!(id.unwrap().role, "bob");
        let id = s.authenticate(Some("tls"), None, Some("alice")).unwrap();
        assert_eq!(id.unwrap().role, "alice");
        let e = s.authenticate(Some("basic"), None, None).unwrap_err();
        assert!(
            e.to_string().contains(r#"it takes "token" or "tls""#),
            "{e}"
        );
        // A header, when present, is what counts.
        let header = format!("Bearer {token}");
        let id = s
            .authenticate_http(Some(header.as_bytes()), Some("alice"))
            .unwrap();
        assert_eq!(id.unwrap().role, "bob");
        let id = s.authenticate_http(None, Some("alice")).unwrap();
        assert_eq!(id.unwrap().role, "alice");
    }

    #[test]
    fn provider_settings_that_cannot_work_are_refused() {
        assert!(matches!(
            AuthService::new(&with_providers(&[], true)),
            Err(AuthConfigError::NoProvider)
        ));
        assert!(matches!(
            AuthService::new(&with_providers(&[AuthProvider::Tls], true)),
            Err(AuthConfigError::KeyWithoutTokenProvider)
        ));
        assert!(matches!(
            AuthService::new(&with_providers(
                &[AuthProvider::Token, AuthProvider::Tls],
                false
            )),
            Err(AuthConfigError::NoKey)
        ));
        // The tls provider needs a trust file on the TLS listeners.
        let tls_only = with_providers(&[AuthProvider::Tls], false);
        let mut listener = crate::tls::TlsConfig::new("server.pem", "server.key");
        assert!(matches!(
            check_tls_provider(&tls_only, None),
            Err(AuthConfigError::TlsWithoutTrust)
        ));
        assert!(matches!(
            check_tls_provider(&tls_only, Some(&listener)),
            Err(AuthConfigError::TlsWithoutTrust)
        ));
        listener.trust_certs_file = Some("ca.pem".into());
        assert!(check_tls_provider(&tls_only, Some(&listener)).is_ok());
        // Only when it is enabled.
        assert!(check_tls_provider(&with_providers(&[AuthProvider::Token], true), None).is_ok());
        let off = AuthConfig {
            providers: vec![AuthProvider::Tls],
            ..AuthConfig::default()
        };
        assert!(check_tls_provider(&off, None).is_ok());
    }
}
