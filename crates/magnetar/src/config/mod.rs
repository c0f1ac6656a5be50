//! Configuration: one TOML file (`version = 1`), then environment overrides
//! `MAGNETAR_<SECTION>__<KEY>`, then command-line flags. A Pulsar/KoP `broker.conf` or
//! `standalone.conf` properties file is accepted too: the keys Magnetar maps are applied and the
//! rest are listed in one warning line. Unknown keys and out-of-range values are errors that name
//! the key. Every default is in `config/magnetar.toml`, which a test compares with
//! [`Config::default`].
//!
//! One file per section (`server`, `kafka`, `pulsar`, `http`, `storage`, `groups`, `auth`,
//! `tls`, `cluster`); the KoP/Pulsar key names and how their values convert live in `aliases`. This file
//! keeps the top-level [`Config`], loading (file, environment, flags) and the validation entry
//! point, which calls each section's checks.

mod aliases;
mod auth;
mod cleaner;
mod cluster;
mod groups;
mod http;
mod kafka;
mod pulsar;
mod schema_registry;
mod server;
mod storage;
mod tls;
mod transactions;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use aliases::{
    alias, alias_value, aliases, apply_listener_keys, apply_offload_keys, MARK_DELETE_RATE_LIMIT,
    OFFLOAD_BUCKET, OFFLOAD_DRIVER,
};
pub use aliases::{Alias, ALIASES};
pub use auth::{list, AuthSection};
pub use cleaner::CleanerSection;
pub use cluster::ClusterSection;
pub use groups::GroupsSection;
pub use http::HttpSection;
pub use kafka::{KafkaListener, KafkaSection};
pub use pulsar::PulsarSection;
pub use schema_registry::SchemaRegistrySection;
pub use server::{BrokerSection, ServerConfig};
pub use storage::StorageSection;
pub use tls::TlsSection;
pub use transactions::TransactionsSection;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub version: u32,
    pub server: ServerConfig,
    pub broker: BrokerSection,
    pub cleaner: CleanerSection,
    pub kafka: KafkaSection,
    pub pulsar: PulsarSection,
    pub http: HttpSection,
    pub storage: StorageSection,
    pub groups: GroupsSection,
    pub transactions: TransactionsSection,
    pub auth: AuthSection,
    pub tls: TlsSection,
    pub cluster: ClusterSection,
    pub schema_registry: SchemaRegistrySection,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: 1,
            server: ServerConfig::default(),
            broker: BrokerSection::default(),
            cleaner: CleanerSection::default(),
            kafka: KafkaSection::default(),
            pulsar: PulsarSection::default(),
            http: HttpSection::default(),
            storage: StorageSection::default(),
            groups: GroupsSection::default(),
            transactions: TransactionsSection::default(),
            auth: AuthSection::default(),
            tls: TlsSection::default(),
            cluster: ClusterSection::default(),
            schema_registry: SchemaRegistrySection::default(),
        }
    }
}

/// Overrides from command-line flags (applied last).
#[derive(Clone, Debug, Default)]
pub struct FlagOverrides {
    pub data_dir: Option<PathBuf>,
    pub bind: Option<String>,
    pub kafka_port: Option<u16>,
    pub pulsar_port: Option<u16>,
    pub http_port: Option<u16>,
    /// Turns the schema registry listener on, on this port.
    pub schema_registry_port: Option<u16>,
    pub advertised_host: Option<String>,
    pub object_store: Option<String>,
    pub metadata_store: Option<String>,
}

/// The loaded configuration and what a user should be told about it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn err(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

impl Config {
    /// Loads defaults <- file <- environment <- flags, then validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &FlagOverrides,
    ) -> Result<Loaded, ConfigError> {
        let text = match file {
            None => None,
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| err(format!("cannot read config file {}: {e}", path.display())))?,
            ),
        };
        Self::load_text(file.zip(text.as_deref()), env, flags)
    }

    /// [`Config::load`] with the file's text already read: `file` is its path (the extension
    /// picks the syntax: `.toml`, else properties) and text. The fuzz target `config` calls this.
    #[doc(hidden)]
    pub fn load_text(
        file: Option<(&Path, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &FlagOverrides,
    ) -> Result<Loaded, ConfigError> {
        let defaults =
            Table::try_from(Config::default()).map_err(|e| err(format!("defaults: {e}")))?;
        let mut warnings = Vec::new();
        let mut root = match file {
            None => Table::new(),
            Some((path, text)) => {
                if path.extension().is_some_and(|e| e == "toml") {
                    parse_toml(path, text, &defaults)?
                } else {
                    let (table, unused) = parse_properties(path, text, &defaults)?;
                    if !unused.is_empty() {
                        warnings.push(format!(
                            "{}: {} keys are not used by magnetar: {}",
                            path.display(),
                            unused.len(),
                            unused.join(", ")
                        ));
                    }
                    table
                }
            }
        };
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix("MAGNETAR_") else {
                continue;
            };
            // Variables of the process itself, not config keys.
            if matches!(rest, "BIN" | "LOG") {
                continue;
            }
            let Some((section, key)) = rest.split_once("__") else {
                return Err(err(format!(
                    "environment variable {name} is not of the form MAGNETAR_<SECTION>__<KEY>"
                )));
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let value = typed_value(&defaults, &section, &key, &raw)
                .map_err(|reason| err(format!("{name}: {reason}")))?;
            set(&mut root, &section, &key, value);
        }
        let flag_values: [(&str, &str, Option<Value>); 10] = [
            (
                "schema_registry",
                "port",
                flags.schema_registry_port.map(|p| Value::Integer(p.into())),
            ),
            (
                "schema_registry",
                "enabled",
                flags.schema_registry_port.map(|_| Value::Boolean(true)),
            ),
            (
                "cluster",
                "metadata_store",
                flags.metadata_store.clone().map(Value::String),
            ),
            (
                "storage",
                "object_store",
                flags.object_store.clone().map(Value::String),
            ),
            (
                "server",
                "data_dir",
                flags
                    .data_dir
                    .as_ref()
                    .map(|p| Value::String(p.display().to_string())),
            ),
            ("server", "bind", flags.bind.clone().map(Value::String)),
            (
                "server",
                "advertised_host",
                flags.advertised_host.clone().map(Value::String),
            ),
            (
                "kafka",
                "port",
                flags.kafka_port.map(|p| Value::Integer(p.into())),
            ),
            (
                "pulsar",
                "port",
                flags.pulsar_port.map(|p| Value::Integer(p.into())),
            ),
            (
                "http",
                "port",
                flags.http_port.map(|p| Value::Integer(p.into())),
            ),
        ];
        for (section, key, value) in flag_values {
            if let Some(value) = value {
                set(&mut root, section, key, value);
            }
        }
        apply_listener_keys(&mut root)?;
        apply_offload_keys(&mut root)?;
        let config: Config = Value::Table(root)
            .try_into()
            .map_err(|e: toml::de::Error| err(format!("config: {}", e.message())))?;
        config.validate()?;
        Ok(Loaded { config, warnings })
    }

    /// Range checks: each error names the key and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.version != 1 {
            return Err(err(format!(
                "version = {} is not supported; this magnetar reads version = 1",
                self.version
            )));
        }
        self.validate_server()?;
        self.validate_broker()?;
        self.validate_cleaner()?;
        self.validate_kafka()?;
        self.validate_auth()?;
        self.validate_tls()?;
        self.validate_storage()?;
        self.validate_pulsar()?;
        self.validate_groups()?;
        self.validate_transactions()?;
        self.validate_cluster()?;
        self.validate_schema_registry()?;
        self.validate_http()
    }
}

/// `key` = `value` between `min` and `max`, else an error naming the key and the range.
fn range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(err(format!(
            "{key} = {value} is outside the allowed range [{min}, {max}]"
        )));
    }
    Ok(())
}

/// `key` = `value` is one of `allowed`, else an error naming the key and the values.
fn one_of(key: &str, value: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    if !allowed.contains(&value) {
        return Err(err(format!(
            "{key} = \"{value}\" is not one of {}",
            allowed.join(", ")
        )));
    }
    Ok(())
}

fn set(root: &mut Table, section: &str, key: &str, value: Value) {
    let entry = root
        .entry(section.to_string())
        .or_insert_with(|| Value::Table(Table::new()));
    if !entry.is_table() {
        *entry = Value::Table(Table::new());
    }
    if let Value::Table(t) = entry {
        t.insert(key.to_string(), value);
    }
}

/// Converts a string to the type the default of `section.key` has; unknown keys are errors.
fn typed_value(defaults: &Table, section: &str, key: &str, raw: &str) -> Result<Value, String> {
    // The listener strings are KoP-only inputs, resolved in `apply_listener_keys`.
    if section == "kafka" && (key == "listeners" || key == "advertised_listeners") {
        return Ok(Value::String(raw.to_string()));
    }
    // Pulsar's offload driver and bucket, resolved in `apply_offload_keys`.
    if section == "storage" && (key == OFFLOAD_DRIVER || key == OFFLOAD_BUCKET) {
        return Ok(Value::String(raw.to_string()));
    }
    let Some(Value::Table(s)) = defaults.get(section) else {
        let sections: Vec<&String> = defaults
            .iter()
            .filter(|(_, v)| v.is_table())
            .map(|(k, _)| k)
            .collect();
        return Err(format!(
            "unknown config section '{section}' (sections: {sections:?})"
        ));
    };
    let Some(default) = s.get(key) else {
        let keys: Vec<&String> = s.keys().collect();
        return Err(format!(
            "unknown config key '{section}.{key}' (keys of [{section}]: {keys:?})"
        ));
    };
    let raw = raw.trim();
    match default {
        Value::Integer(_) => raw
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("{section}.{key} = \"{raw}\" is not an integer")),
        Value::Boolean(_) => raw
            .parse::<bool>()
            .map(Value::Boolean)
            .map_err(|_| format!("{section}.{key} = \"{raw}\" is not true or false")),
        _ => Ok(Value::String(raw.to_string())),
    }
}

fn parse_toml(path: &Path, text: &str, defaults: &Table) -> Result<Table, ConfigError> {
    let mut table: Table =
        toml::from_str(text).map_err(|e| err(format!("{}: {}", path.display(), e.message())))?;
    if !table.contains_key("version") {
        return Err(err(format!("{}: missing 'version = 1'", path.display())));
    }
    // KoP keys at the top level move to their section.
    let top: Vec<String> = table
        .keys()
        .filter(|k| alias(k).is_some())
        .cloned()
        .collect();
    for name in top {
        let Some(value) = table.remove(&name) else {
            continue;
        };
        for a in aliases(&name) {
            let value = match &value {
                Value::String(s) => {
                    let s = alias_value(&name, s).map_err(|r| err(format!("{name}: {r}")))?;
                    typed_value(defaults, a.section, a.key, &s)
                        .map_err(|r| err(format!("{name}: {r}")))?
                }
                Value::Integer(_) | Value::Float(_) if name == MARK_DELETE_RATE_LIMIT => {
                    let s = alias_value(&name, &value.to_string())
                        .map_err(|r| err(format!("{name}: {r}")))?;
                    typed_value(defaults, a.section, a.key, &s)
                        .map_err(|r| err(format!("{name}: {r}")))?
                }
                other => other.clone(),
            };
            set(&mut table, a.section, a.key, value);
        }
    }
    Ok(table)
}

/// Parses `key=value` lines; returns the mapped keys as a table and the names not used.
fn parse_properties(
    path: &Path,
    text: &str,
    defaults: &Table,
) -> Result<(Table, Vec<String>), ConfigError> {
    let mut table = Table::new();
    let mut unused = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((name, value)) = line.split_once(['=', ':']) else {
            return Err(err(format!(
                "{}:{}: expected key=value, got '{line}'",
                path.display(),
                number + 1
            )));
        };
        let (name, value) = (name.trim(), value.trim());
        match alias(name) {
            // Pulsar files carry many keys with empty values: they mean "unset".
            Some(_) if value.is_empty() => {}
            Some(_) => {
                let value = alias_value(name, value)
                    .map_err(|r| err(format!("{}:{}: {name}: {r}", path.display(), number + 1)))?;
                for a in aliases(name) {
                    let typed = typed_value(defaults, a.section, a.key, &value).map_err(|r| {
                        err(format!("{}:{}: {name}: {r}", path.display(), number + 1))
                    })?;
                    set(&mut table, a.section, a.key, typed);
                }
            }
            None => unused.push(name.to_string()),
        }
    }
    table.insert("version".into(), Value::Integer(1));
    Ok((table, unused))
}

#[cfg(test)]
mod tests;
