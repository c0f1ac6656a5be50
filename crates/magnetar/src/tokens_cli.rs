//! `magnetar tokens`: make and check the JWT tokens the broker accepts, in the shape of
//! `pulsar tokens` (create-secret-key, create-key-pair, create, show, validate). Keys are
//! given as Pulsar gives them: `file:///path`, `data:;base64,...`, a path or base64.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine;
use clap::{Args, Subcommand};
use magnetar_auth::token::{self, KeyPairAlgorithm, SigningKey, TokenValidator};

#[derive(Args, Debug)]
pub(crate) struct TokensArgs {
    #[command(subcommand)]
    command: TokensCommand,
}

#[derive(Subcommand, Debug)]
enum TokensCommand {
    /// Creates a secret key for HS256 tokens (32 random bytes).
    CreateSecretKey {
        /// Write the key to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Write the key base64-encoded.
        #[arg(short, long)]
        base64: bool,
    },
    /// Creates a key pair for RS256 or ES256 tokens (PKCS#8 DER private key, X.509 DER public
    /// key, as Pulsar writes them).
    CreateKeyPair {
        #[arg(
            short = 'a',
            long,
            visible_alias = "signature-algorithm",
            default_value = "RS256"
        )]
        algorithm: String,
        #[arg(long, value_name = "FILE")]
        output_private_key: PathBuf,
        #[arg(long, value_name = "FILE")]
        output_public_key: PathBuf,
    },
    /// Creates a token for a role, signed with a secret key or a private key.
    Create {
        #[arg(long, value_name = "KEY", conflicts_with = "private_key")]
        secret_key: Option<String>,
        #[arg(long, value_name = "KEY")]
        private_key: Option<String>,
        /// The role (`sub` claim).
        #[arg(short, long)]
        subject: String,
        /// Relative expiry: 30s, 10m, 3h, 1d, 2w, 1y. Without it the token never expires.
        #[arg(short, long, value_name = "TIME")]
        expiry_time: Option<String>,
    },
    /// Prints a token's header and claims without checking its signature.
    Show(TokenInput),
    /// Checks a token's signature and expiry against a key and prints its claims.
    Validate {
        #[command(flatten)]
        input: TokenInput,
        #[arg(long, value_name = "KEY", conflicts_with = "public_key")]
        secret_key: Option<String>,
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
        /// The claim naming the role.
        #[arg(long, default_value = "sub")]
        claim: String,
    },
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct TokenInput {
    /// The token.
    #[arg(short = 'i', long = "token-string", value_name = "TOKEN")]
    token: Option<String>,
    /// A file holding the token.
    #[arg(short = 'f', long = "token-file", value_name = "FILE")]
    file: Option<PathBuf>,
}

impl TokenInput {
    fn read(&self) -> Result<String, String> {
        match (&self.token, &self.file) {
            (Some(token), _) => Ok(token.trim().to_string()),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|t| t.trim().to_string())
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            (None, None) => Err("give a token with -i or -f".into()),
        }
    }
}

pub(crate) fn main(args: TokensArgs) -> ExitCode {
    match run(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("magnetar tokens: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_file(path: &PathBuf, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn run(command: TokensCommand) -> Result<(), String> {
    let e = |e: magnetar_auth::AuthError| e.to_string();
    match command {
        TokensCommand::CreateSecretKey { output, base64 } => {
            let key = token::generate_secret_key();
            let bytes = if base64 {
                base64::engine::general_purpose::STANDARD
                    .encode(&key)
                    .into_bytes()
            } else {
                key
            };
            match output {
                Some(path) => write_file(&path, &bytes),
                None => std::io::stdout()
                    .write_all(&bytes)
                    .map_err(|e| e.to_string()),
            }
        }
        TokensCommand::CreateKeyPair {
            algorithm,
            output_private_key,
            output_public_key,
        } => {
            let algorithm: KeyPairAlgorithm = algorithm.parse()?;
            let (private, public) = token::generate_key_pair(algorithm).map_err(e)?;
            write_file(&output_private_key, &private)?;
            write_file(&output_public_key, &public)
        }
        TokensCommand::Create {
            secret_key,
            private_key,
            subject,
            expiry_time,
        } => {
            let signer = match (secret_key, private_key) {
                (Some(k), None) => {
                    SigningKey::from_secret_key(&magnetar_auth::key::read_key(&k).map_err(e)?)
                        .map_err(e)?
                }
                (None, Some(k)) => {
                    SigningKey::from_private_key(&magnetar_auth::key::read_key(&k).map_err(e)?)
                        .map_err(e)?
                }
                _ => return Err("give --secret-key or --private-key".into()),
            };
            let expires = match expiry_time {
                Some(t) => Some(now_s().saturating_add(token::parse_relative_time_s(&t)?)),
                None => None,
            };
            println!("{}", signer.create_token(&subject, expires).map_err(e)?);
            Ok(())
        }
        TokensCommand::Show(input) => {
            let (header, claims) = token::inspect(&input.read()?).map_err(e)?;
            println!("{header}\n---\n{claims}");
            Ok(())
        }
        TokensCommand::Validate {
            input,
            secret_key,
            public_key,
            claim,
        } => {
            let validator = match (secret_key, public_key) {
                (Some(k), None) => TokenValidator::from_secret_key(
                    &magnetar_auth::key::read_key(&k).map_err(e)?,
                    &claim,
                ),
                (None, Some(k)) => TokenValidator::from_public_key(
                    &magnetar_auth::key::read_key(&k).map_err(e)?,
                    &claim,
                ),
                _ => return Err("give --secret-key or --public-key".into()),
            }
            .map_err(e)?;
            let claims = validator.validate(&input.read()?).map_err(e)?;
            println!("{}", serde_json::Value::Object(claims.claims));
            Ok(())
        }
    }
}
