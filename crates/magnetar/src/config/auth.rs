//! The `[auth]` section: authentication (token and basic providers, the anonymous role, SASL
//! mechanisms) and authorization.

use serde::{Deserialize, Serialize};

use super::{err, Config, ConfigError};

/// Authentication (Pulsar's names are aliases). Lists are comma-separated strings so that the
/// environment and properties files can set them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    pub enabled: bool,
    pub providers: String,
    pub authorization_enabled: bool,
    pub superuser_roles: String,
    pub token_secret_key: String,
    pub token_public_key: String,
    pub token_auth_claim: String,
    pub sasl_allowed_mechanisms: String,
    pub failed_authentication_delay_ms: u64,
    pub basic_auth_conf: String,
    pub anonymous_role: String,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            enabled: false,
            providers: "token".into(),
            authorization_enabled: false,
            superuser_roles: String::new(),
            token_secret_key: String::new(),
            token_public_key: String::new(),
            token_auth_claim: "sub".into(),
            sasl_allowed_mechanisms: "PLAIN,OAUTHBEARER,SCRAM-SHA-256,SCRAM-SHA-512".into(),
            failed_authentication_delay_ms: 300,
            basic_auth_conf: String::new(),
            anonymous_role: String::new(),
        }
    }
}

/// Splits a comma-separated list, dropping blanks.
pub fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether a provider name (Magnetar's short name or Pulsar's class) is the `basic` provider.
fn is_basic(provider: &str) -> bool {
    provider == "basic" || provider.ends_with("AuthenticationProviderBasic")
}

fn is_token(provider: &str) -> bool {
    provider == "token" || provider.ends_with("AuthenticationProviderToken")
}

impl AuthSection {
    /// Whether the `basic` provider is listed.
    pub fn basic_enabled(&self) -> bool {
        list(&self.providers).iter().any(|p| is_basic(p))
    }

    /// The settings magnetar-auth takes.
    pub fn auth_config(&self) -> magnetar_auth::AuthConfig {
        let key = |k: &str| (!k.is_empty()).then(|| k.to_string());
        magnetar_auth::AuthConfig {
            enabled: self.enabled,
            token_secret_key: key(&self.token_secret_key),
            token_public_key: key(&self.token_public_key),
            token_auth_claim: self.token_auth_claim.clone(),
            mechanisms: list(&self.sasl_allowed_mechanisms)
                .iter()
                .filter_map(|m| magnetar_auth::Mechanism::from_name(m))
                .collect(),
            superuser_roles: list(&self.superuser_roles),
            anonymous_role: key(self.anonymous_role.trim()),
            basic_auth_conf: key(&self.basic_auth_conf).filter(|_| self.basic_enabled()),
        }
    }
}

impl Config {
    pub(super) fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        for provider in list(&auth.providers) {
            // Pulsar names providers by class; the token and basic providers are built.
            if !is_token(&provider) && !is_basic(&provider) {
                return Err(err(format!(
                    "auth.providers: '{provider}' is not supported; token (AuthenticationProviderToken) and basic (AuthenticationProviderBasic) are built"
                )));
            }
        }
        if auth.authorization_enabled && !auth.enabled {
            return Err(err(
                "auth.authorization_enabled = true needs auth.enabled = true (authenticationEnabled): without authentication every client is anonymous and would be refused everything",
            ));
        }
        for mechanism in list(&auth.sasl_allowed_mechanisms) {
            if magnetar_auth::Mechanism::from_name(&mechanism).is_none() {
                return Err(err(format!(
                    "auth.sasl_allowed_mechanisms: '{mechanism}' is not one of PLAIN, OAUTHBEARER, SCRAM-SHA-256, SCRAM-SHA-512"
                )));
            }
        }
        if auth.token_auth_claim.is_empty() {
            return Err(err("auth.token_auth_claim is empty"));
        }
        if auth.failed_authentication_delay_ms > 60_000 {
            return Err(err(format!(
                "auth.failed_authentication_delay_ms = {} is outside the allowed range [0, 60000]",
                auth.failed_authentication_delay_ms
            )));
        }
        if let Some(sasl) = self
            .kafka
            .protocols()
            .into_iter()
            .find(|p| matches!(p.as_str(), "SASL_PLAINTEXT" | "SASL_SSL"))
        {
            if !auth.enabled {
                return Err(err(format!(
                    "a {sasl} Kafka listener needs auth.enabled = true (authenticationEnabled)"
                )));
            }
        }
        if !auth.enabled {
            return Ok(());
        }
        if auth.basic_enabled() {
            if auth.basic_auth_conf.is_empty() {
                return Err(err(
                    "auth.providers lists basic but auth.basic_auth_conf (basicAuthConf) is empty",
                ));
            }
            // Read the users now, so a bad file stops startup with a config error.
            magnetar_auth::basic::BasicUsers::load(&auth.basic_auth_conf).map_err(|e| {
                err(format!(
                    "auth.basic_auth_conf (basicAuthConf): {}",
                    e.to_string().trim_start_matches("invalid key: ")
                ))
            })?;
        }
        let config = auth.auth_config();
        if config.mechanisms.is_empty() {
            return Err(err(
                "auth.enabled = true but auth.sasl_allowed_mechanisms is empty",
            ));
        }
        let needs_token = config.mechanisms.iter().any(|m| {
            matches!(
                m,
                magnetar_auth::Mechanism::Plain | magnetar_auth::Mechanism::OAuthBearer
            )
        });
        // Read and parse the key now, so a bad key stops startup with a config error.
        match (&config.token_secret_key, &config.token_public_key) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "auth.token_secret_key and auth.token_public_key are both set; set one",
                ))
            }
            (Some(url), None) => magnetar_auth::key::read_key(url)
                .and_then(|k| magnetar_auth::TokenValidator::from_secret_key(&k, "sub"))
                .map(|_| ())
                .map_err(|e| err(format!("auth.token_secret_key (tokenSecretKey): {e}")))?,
            (None, Some(url)) => magnetar_auth::key::read_key(url)
                .and_then(|k| magnetar_auth::TokenValidator::from_public_key(&k, "sub"))
                .map(|_| ())
                .map_err(|e| err(format!("auth.token_public_key (tokenPublicKey): {e}")))?,
            (None, None) if needs_token => {
                return Err(err(
                    "auth.enabled = true with PLAIN or OAUTHBEARER allowed needs auth.token_secret_key (tokenSecretKey) or auth.token_public_key (tokenPublicKey)",
                ))
            }
            (None, None) => {}
        }
        Ok(())
    }
}
