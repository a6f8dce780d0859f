//! `strata admin tokens ...`: keys and tokens of the token authentication,
//! as Pulsar's `pulsar tokens` makes them (no server involved).
//!
//! - `create-secret-key [--output FILE] [--base64]`: a random 256-bit
//!   HS256 secret, raw bytes (or base64) to the file or stdout;
//! - `create-key-pair --output-private-key F --output-public-key F
//!   [--algorithm RS256|ES256]`: PKCS#8 private and X.509 public key, DER;
//! - `create --subject ROLE [--expiry 1h] (--secret-key K | --private-key K)`:
//!   prints a token (keys as the broker takes them: `file:///path`,
//!   `data:;base64,...`, a path or base64 text);
//! - `show TOKEN`: its header and claims, unchecked;
//! - `validate TOKEN (--secret-key K | --public-key K)`: checks it as the
//!   broker would and prints its role.
//!
//! Files holding keys are created readable by their owner only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use clap::{Args, Subcommand};
use jsonwebtoken::Algorithm;
use strata_broker::auth::keys::{self, SigningKey};
use strata_broker::auth::token::{create_token, show_token};
use strata_broker::auth::{TokenVerifier, now_secs};

use super::http::AdminError;
use super::pretty;

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Make a random secret key (HS256) for --token-secret-key.
    CreateSecretKey {
        /// Write it to this file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Write it base64-encoded instead of raw bytes.
        #[arg(short, long)]
        base64: bool,
    },
    /// Make a key pair: the private key signs tokens, the public key is
    /// the broker's --token-public-key.
    CreateKeyPair {
        /// Where the private key goes (PKCS#8, DER).
        #[arg(long)]
        output_private_key: PathBuf,
        /// Where the public key goes (X.509 SubjectPublicKeyInfo, DER).
        #[arg(long)]
        output_public_key: PathBuf,
        /// RS256 (RSA 2048) or ES256 (EC P-256).
        #[arg(short, long, alias = "signature-algorithm", default_value = "RS256",
              value_parser = parse_algorithm)]
        algorithm: Algorithm,
    },
    /// Make a token for a role.
    Create {
        /// The role (the token's `sub` claim).
        #[arg(long)]
        subject: String,
        /// The token expires this long from now (30s, 1h, 7d...; default: never).
        #[arg(long, alias = "expiry-time", value_parser = humantime::parse_duration)]
        expiry: Option<Duration>,
        #[command(flatten)]
        key: SigningKeyArgs,
        /// Sign with this algorithm of the key's family instead of its own
        /// (HS384, RS512, PS256...).
        #[arg(short, long, value_parser = parse_algorithm)]
        algorithm: Option<Algorithm>,
    },
    /// Print a token's header and claims (without checking it).
    Show {
        /// The token.
        token: String,
    },
    /// Check a token as the broker would and print its role.
    Validate {
        /// The token.
        token: String,
        #[command(flatten)]
        key: VerifyingKeyArgs,
        /// The public key's algorithm (the broker's --token-public-alg).
        #[arg(long, default_value = "RS256", value_parser = parse_algorithm)]
        token_public_alg: Algorithm,
        /// The claim that holds the role.
        #[arg(long, default_value = "sub")]
        token_auth_claim: String,
    },
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct SigningKeyArgs {
    /// The secret key: file:///path, data:;base64,..., a path or base64.
    #[arg(long)]
    secret_key: Option<String>,
    /// The private key, in the same forms.
    #[arg(long)]
    private_key: Option<String>,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct VerifyingKeyArgs {
    /// The secret key: file:///path, data:;base64,..., a path or base64.
    #[arg(long)]
    secret_key: Option<String>,
    /// The public key, in the same forms.
    #[arg(long)]
    public_key: Option<String>,
}

fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    s.trim()
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| format!("unknown algorithm {s:?} (HS256, RS256, ES256...)"))
}

fn invalid(e: impl std::fmt::Display) -> AdminError {
    AdminError::Invalid(e.to_string())
}

/// Writes key material readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AdminError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| invalid(format!("cannot write {}: {e}", path.display())))
}

fn write_stdout(bytes: &[u8]) -> Result<(), AdminError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| invalid(format!("cannot write to stdout: {e}")))
}

pub fn run(cmd: TokensCommand) -> Result<(), AdminError> {
    match cmd {
        TokensCommand::CreateSecretKey { output, base64 } => {
            let mut key = keys::generate_secret_key().map_err(invalid)?;
            if base64 {
                key = base64::engine::general_purpose::STANDARD
                    .encode(&key)
                    .into_bytes();
            }
            match output {
                Some(path) => write_private(&path, &key)?,
                None if base64 => write_stdout(&[&key[..], b"\n"].concat())?,
                None => write_stdout(&key)?,
            }
        }
        TokensCommand::CreateKeyPair {
            output_private_key,
            output_public_key,
            algorithm,
        } => {
            let (private, public) = keys::generate_key_pair(algorithm).map_err(invalid)?;
            write_private(&output_private_key, &private)?;
            std::fs::write(&output_public_key, &public).map_err(|e| {
                invalid(format!("cannot write {}: {e}", output_public_key.display()))
            })?;
        }
        TokensCommand::Create {
            subject,
            expiry,
            key,
            algorithm,
        } => {
            let mut signing = match (&key.secret_key, &key.private_key) {
                (Some(s), _) => SigningKey::secret(&keys::read_key(s).map_err(invalid)?),
                (None, Some(p)) => SigningKey::private(&keys::read_key(p).map_err(invalid)?),
                (None, None) => return Err(invalid("give --secret-key or --private-key")),
            }
            .map_err(invalid)?;
            if let Some(alg) = algorithm {
                signing = signing.with_algorithm(alg).map_err(invalid)?;
            }
            let subject = subject.trim();
            if subject.is_empty() {
                return Err(invalid("--subject must not be empty"));
            }
            let expires_at = expiry.map(|d| now_secs() + d.as_secs().max(1));
            let token = create_token(&signing, subject, expires_at).map_err(invalid)?;
            write_stdout(format!("{token}\n").as_bytes())?;
        }
        TokensCommand::Show { token } => {
            let (header, claims) = show_token(&token).map_err(invalid)?;
            write_stdout(pretty(&header).as_bytes())?;
            write_stdout(pretty(&claims).as_bytes())?;
        }
        TokensCommand::Validate {
            token,
            key,
            token_public_alg,
            token_auth_claim,
        } => {
            let verifier = match (&key.secret_key, &key.public_key) {
                (Some(s), _) => TokenVerifier::with_secret(
                    &keys::read_key(s).map_err(invalid)?,
                    &token_auth_claim,
                ),
                (None, Some(p)) => TokenVerifier::with_public_key(
                    &keys::read_key(p).map_err(invalid)?,
                    token_public_alg,
                    &token_auth_claim,
                ),
                (None, None) => return Err(invalid("give --secret-key or --public-key")),
            }
            .map_err(invalid)?;
            let id = verifier
                .verify(&token)
                .map_err(|e| invalid(format!("invalid token: {e}")))?;
            let expiry = match id.expires_at {
                Some(exp) => format!("expires at {exp} (in {}s)", exp.saturating_sub(now_secs())),
                None => "never expires".to_string(),
            };
            write_stdout(format!("valid: role {}, {expiry}\n", id.role).as_bytes())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: TokensCommand,
    }

    fn parse(args: &[&str]) -> Result<TokensCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("tokens").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn create_takes_exactly_one_key_and_pulsar_spellings() {
        assert!(parse(&["create", "--subject", "a"]).is_err());
        assert!(
            parse(&[
                "create",
                "--subject",
                "a",
                "--secret-key",
                "x",
                "--private-key",
                "y"
            ])
            .is_err()
        );
        let TokensCommand::Create { expiry, .. } = parse(&[
            "create",
            "--subject",
            "a",
            "--secret-key",
            "x",
            "--expiry-time",
            "1h",
        ])
        .unwrap() else {
            panic!("not create");
        };
        assert_eq!(expiry, Some(Duration::from_secs(3600)));
        let TokensCommand::CreateKeyPair { algorithm, .. } = parse(&[
            "create-key-pair",
            "--output-private-key",
            "p",
            "--output-public-key",
            "q",
            "--signature-algorithm",
            "es256",
        ])
        .unwrap() else {
            panic!("not create-key-pair");
        };
        assert_eq!(algorithm, Algorithm::ES256);
        assert!(parse(&["create-key-pair", "--output-private-key", "p"]).is_err());
    }

    #[test]
    fn key_files_are_written_for_their_owner_only() {
        let dir = std::env::temp_dir().join(format!(
            "strata-tokens-test-{}-{}",
            std::process::id(),
            now_secs()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret.key");
        let (private, public) = (dir.join("k.der"), dir.join("k.pub"));
        run(parse(&["create-secret-key", "-o", secret.to_str().unwrap()]).unwrap()).unwrap();
        assert_eq!(
            std::fs::read(&secret).unwrap().len(),
            keys::SECRET_KEY_BYTES
        );
        run(parse(&[
            "create-key-pair",
            "--algorithm",
            "ES256",
            "--output-private-key",
            private.to_str().unwrap(),
            "--output-public-key",
            public.to_str().unwrap(),
        ])
        .unwrap())
        .unwrap();
        SigningKey::private(&std::fs::read(&private).unwrap()).unwrap();
        keys::public_decoding_key(&std::fs::read(&public).unwrap(), Algorithm::ES256).unwrap();
        #[cfg(unix)]
        for path in [&secret, &private] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{}: {mode:o}", path.display());
        }
        let bad = run(parse(&["create", "--subject", " ", "--secret-key", "AAAA"]).unwrap());
        assert!(bad.is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
