//! The authentication and authorization flags of `strata standalone`,
//! with Pulsar's setting names (each also a `STRATA_*` variable).

use clap::Args;
use jsonwebtoken::Algorithm;
use strata_broker::auth::AuthProvider;
use strata_broker::config::AuthConfig;

#[derive(Args, Debug, Clone)]
pub struct AuthArgs {
    /// Clients must present valid credentials (protocol CONNECT and admin
    /// requests) of one of --authentication-providers; off by default.
    #[arg(long, env = "STRATA_AUTHENTICATION_ENABLED")]
    pub authentication_enabled: bool,
    /// How clients may authenticate (comma-separated): `token` (a JWT) and
    /// `tls` (the subject CN of a client certificate signed by a CA of
    /// --tls-trust-certs-file, on the TLS ports); Pulsar's provider class
    /// names are accepted too.
    #[arg(
        long,
        env = "STRATA_AUTHENTICATION_PROVIDERS",
        value_delimiter = ',',
        default_value = "token"
    )]
    pub authentication_providers: Vec<AuthProvider>,
    /// Check roles: superusers, tenant admin roles, namespace grants.
    /// Needs --authentication-enabled.
    #[arg(long, env = "STRATA_AUTHORIZATION_ENABLED")]
    pub authorization_enabled: bool,
    /// Roles allowed everything (comma-separated).
    #[arg(long, env = "STRATA_SUPERUSER_ROLES", value_delimiter = ',')]
    pub superuser_roles: Vec<String>,
    /// The HS256 secret tokens are signed with: file:///path,
    /// data:;base64,..., a path or base64 text.
    #[arg(long, env = "STRATA_TOKEN_SECRET_KEY", hide_env_values = true)]
    pub token_secret_key: Option<String>,
    /// The public key (RSA or EC, DER or PEM) whose private key signs tokens,
    /// in the same forms.
    #[arg(long, env = "STRATA_TOKEN_PUBLIC_KEY")]
    pub token_public_key: Option<String>,
    /// The token claim that holds the role.
    #[arg(long, env = "STRATA_TOKEN_AUTH_CLAIM", default_value = "sub")]
    pub token_auth_claim: String,
    /// The public key's algorithm: RS256 (any RS*/PS* accepted), ES256 or ES384.
    #[arg(long, env = "STRATA_TOKEN_PUBLIC_ALG", default_value = "RS256",
          value_parser = parse_public_alg)]
    pub token_public_alg: Algorithm,
    /// How often a connection's token is checked for expiry; a connection
    /// whose token expired is sent AUTH_CHALLENGE and must answer with a
    /// fresh token before the next check.
    #[arg(long, env = "STRATA_AUTHENTICATION_REFRESH_CHECK_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub authentication_refresh_check_seconds: u64,
}

fn parse_public_alg(s: &str) -> Result<Algorithm, String> {
    let alg: Algorithm = s
        .trim()
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| format!("unknown algorithm {s:?}"))?;
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512
        | Algorithm::ES256
        | Algorithm::ES384 => Ok(alg),
        other => Err(format!(
            "{other:?} is not a public-key algorithm (RS256, ES256, ...)"
        )),
    }
}

impl AuthArgs {
    pub fn to_config(&self) -> AuthConfig {
        AuthConfig {
            authentication_enabled: self.authentication_enabled,
            providers: self.authentication_providers.clone(),
            authorization_enabled: self.authorization_enabled,
            superuser_roles: self
                .superuser_roles
                .iter()
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty())
                .collect(),
            token_secret_key: self.token_secret_key.clone(),
            token_public_key: self.token_public_key.clone(),
            token_auth_claim: self.token_auth_claim.clone(),
            token_public_alg: self.token_public_alg,
            refresh_check_interval: std::time::Duration::from_secs(
                self.authentication_refresh_check_seconds,
            ),
        }
    }
}
