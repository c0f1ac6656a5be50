//! Authentication, protocol-neutral.
//!
//! Owns: JWT tokens as Pulsar makes them ([`token`]: HS256 secret keys, RS256/ES256 key pairs,
//! keys given as `file:///path` or `data:;base64,...`, the role claim, expiry), the SASL
//! mechanisms PLAIN (KoP's `token:<jwt>` password), OAUTHBEARER (RFC 7628) and
//! SCRAM-SHA-256/512 (RFC 5802/7677) as byte-in/byte-out state machines ([`sasl`], [`scram`]),
//! the SCRAM credentials kept salted in the metadata store ([`ScramStore`]), Pulsar's `basic`
//! provider's htpasswd-style users ([`basic`]), the anonymous role, the [`Principal`],
//! and the one error of this layer, [`AuthError`], which each front end maps to its wire codes.
//!
//! Must not depend on: any wire protocol (the Kafka framing of SASL tokens lives in
//! magnetar-kafka), nor on magnetar-metadata directly (the store is reached through
//! magnetar-broker's re-export).
//!
//! Main types: [`Authenticator`] (what the front ends call), [`SaslSession`],
//! [`token::TokenValidator`], [`token::SigningKey`].

use std::sync::Arc;

use magnetar_broker::Broker;

pub mod basic;
mod error;
pub mod key;
pub mod sasl;
pub mod scram;
pub mod tls;
pub mod token;

pub use error::AuthError;
pub use sasl::{Mechanism, SaslSession, SaslStep};
pub use scram::{ScramCredential, ScramMechanism, ScramStore};
pub use token::{SigningKey, TokenClaims, TokenValidator};

/// Who a client is once authenticated: Pulsar's "role".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    pub role: String,
}

/// The outcome of a successful authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub principal: Principal,
    /// When the credential stops being valid (a token's `exp`), in Unix milliseconds. A session
    /// must re-authenticate before then (Kafka KIP-368, Pulsar AUTH_CHALLENGE).
    pub expires_at_ms: Option<i64>,
    /// KoP's PLAIN username: `tenant` or `tenant/namespace`, the namespace a client's bare topic
    /// names resolve in. `None` for the other mechanisms.
    pub namespace_scope: Option<String>,
}

/// Authentication settings, resolved from the configuration.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    /// When false every client is anonymous and no SASL is offered.
    pub enabled: bool,
    /// The key tokens are checked with; required when `enabled` (PLAIN and OAUTHBEARER use it).
    pub token_secret_key: Option<String>,
    pub token_public_key: Option<String>,
    /// The claim that names the role (Pulsar's `tokenAuthClaim`, default `sub`).
    pub token_auth_claim: String,
    /// SASL mechanisms offered, in the order given.
    pub mechanisms: Vec<Mechanism>,
    /// Roles allowed to administer everything (and to manage SCRAM credentials).
    pub superuser_roles: Vec<String>,
    /// Pulsar's `anonymousUserRole`: the role of a Pulsar or HTTP client that sends no
    /// credentials while authentication is on. `None`: such clients are refused.
    pub anonymous_role: Option<String>,
    /// Pulsar's `basicAuthConf` (path, `file:`, `data:` or base64), set when the `basic`
    /// provider is on.
    pub basic_auth_conf: Option<String>,
}

/// What the front ends call to authenticate clients.
pub struct Authenticator {
    enabled: bool,
    validator: Option<TokenValidator>,
    mechanisms: Vec<Mechanism>,
    superuser_roles: Vec<String>,
    scram: ScramStore,
    anonymous_role: Option<String>,
    basic: Option<basic::BasicUsers>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("enabled", &self.enabled)
            .field("validator", &self.validator)
            .field("mechanisms", &self.mechanisms)
            .field("superuser_roles", &self.superuser_roles)
            .field("anonymous_role", &self.anonymous_role)
            .field("basic", &self.basic)
            .finish()
    }
}

impl Authenticator {
    /// Builds the authenticator; fails with a message naming the setting when a key is missing or
    /// unreadable, so a misconfigured broker does not start.
    pub fn new(config: &AuthConfig, broker: Arc<Broker>) -> Result<Self, AuthError> {
        let claim = if config.token_auth_claim.is_empty() {
            "sub".to_string()
        } else {
            config.token_auth_claim.clone()
        };
        let validator = match (&config.token_secret_key, &config.token_public_key) {
            (Some(_), Some(_)) => {
                return Err(AuthError::InvalidKey(
                    "set either a token secret key or a token public key, not both".into(),
                ))
            }
            (Some(secret), None) => Some(TokenValidator::from_secret_key(
                &key::read_key(secret)?,
                &claim,
            )?),
            (None, Some(public)) => Some(TokenValidator::from_public_key(
                &key::read_key(public)?,
                &claim,
            )?),
            (None, None) => None,
        };
        let needs_token = config
            .mechanisms
            .iter()
            .any(|m| matches!(m, Mechanism::Plain | Mechanism::OAuthBearer));
        if config.enabled && needs_token && validator.is_none() {
            return Err(AuthError::InvalidKey(
                "authentication is enabled with token mechanisms but no token secret key or public key is set".into(),
            ));
        }
        if config.enabled && config.mechanisms.is_empty() {
            return Err(AuthError::InvalidKey(
                "authentication is enabled but no SASL mechanism is allowed".into(),
            ));
        }
        Ok(Self {
            enabled: config.enabled,
            validator,
            mechanisms: config.mechanisms.clone(),
            superuser_roles: config.superuser_roles.clone(),
            scram: ScramStore::new(broker),
            anonymous_role: config.anonymous_role.clone().filter(|r| !r.is_empty()),
            basic: config
                .basic_auth_conf
                .as_deref()
                .map(basic::BasicUsers::load)
                .transpose()?,
        })
    }

    /// The role of a client without credentials, if the configuration names one.
    pub fn anonymous_role(&self) -> Option<&str> {
        self.anonymous_role.as_deref()
    }

    /// Whether the `basic` provider is on.
    pub fn basic_enabled(&self) -> bool {
        self.basic.is_some()
    }

    /// Pulsar's `basic` provider: `user:password`; the role is the user.
    pub fn authenticate_basic(&self, credentials: &str) -> Result<Authenticated, AuthError> {
        let users = self.basic.as_ref().ok_or_else(|| {
            AuthError::UnsupportedMechanism("basic (the basic provider is not enabled)".into())
        })?;
        let (user, password) = basic::split_credentials(credentials)?;
        users.verify(user, password)?;
        Ok(Authenticated {
            principal: Principal {
                role: user.to_string(),
            },
            expires_at_ms: None,
            namespace_scope: None,
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The SASL mechanisms offered, by their IANA names.
    pub fn mechanisms(&self) -> &[Mechanism] {
        &self.mechanisms
    }

    pub fn is_superuser(&self, principal: &Principal) -> bool {
        self.superuser_roles.iter().any(|r| r == &principal.role)
    }

    pub fn scram(&self) -> &ScramStore {
        &self.scram
    }

    /// Validates a token and returns its principal.
    pub fn authenticate_token(&self, token: &str) -> Result<Authenticated, AuthError> {
        let validator = self
            .validator
            .as_ref()
            .ok_or_else(|| AuthError::InvalidToken("no token key is configured".into()))?;
        let claims = validator.validate(token)?;
        Ok(Authenticated {
            principal: Principal { role: claims.role },
            expires_at_ms: claims.expires_at_s.map(|s| {
                i64::try_from(s)
                    .unwrap_or(i64::MAX / 1000)
                    .saturating_mul(1000)
            }),
            namespace_scope: None,
        })
    }

    /// Starts a SASL exchange for the mechanism a client named.
    pub fn start(&self, mechanism: &str) -> Result<SaslSession, AuthError> {
        let mechanism = self
            .mechanisms
            .iter()
            .copied()
            .find(|m| m.name() == mechanism)
            .ok_or_else(|| AuthError::UnsupportedMechanism(mechanism.chars().take(64).collect()))?;
        Ok(SaslSession::new(mechanism))
    }
}
