//! The `[schema_registry]` section: the Confluent Schema Registry listener and the registry's
//! limits (which apply to Pulsar schemas too: one store).

use serde::{Deserialize, Serialize};

use super::{err, range, Config, ConfigError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemaRegistrySection {
    /// Serve the Confluent Schema Registry API (KoP's `kopSchemaRegistryEnable`); the flag
    /// `--schema-registry-port` turns it on too.
    pub enabled: bool,
    /// Its port (KoP's `kopSchemaRegistryPort`); 0 picks a free port.
    pub port: u16,
    /// Largest schema definition, in bytes.
    pub schema_bytes_max: u64,
    /// Versions per subject (and per topic), soft-deleted ones included.
    pub versions_per_subject_max: u32,
    /// References one schema may have, directly and transitively.
    pub references_max: u32,
    /// The level of subjects without their own and of topics whose namespace sets none:
    /// NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE
    /// (Pulsar's names too).
    pub compatibility: String,
}

impl Default for SchemaRegistrySection {
    fn default() -> Self {
        Self {
            enabled: false,
            port: 8081,
            schema_bytes_max: 262_144,
            versions_per_subject_max: 1000,
            references_max: 64,
            compatibility: "BACKWARD".into(),
        }
    }
}

impl SchemaRegistrySection {
    /// The registry's settings. Call after [`Config::validate`].
    pub fn store_config(&self) -> magnetar_schema::SchemaConfig {
        magnetar_schema::SchemaConfig {
            schema_bytes_max: self.schema_bytes_max as usize,
            versions_per_subject_max: self.versions_per_subject_max as usize,
            references_max: self.references_max as usize,
            default_compatibility: magnetar_schema::Compatibility::parse(&self.compatibility)
                .unwrap_or(magnetar_schema::Compatibility::Backward),
        }
    }
}

impl Config {
    /// `[schema_registry]` ranges.
    pub(super) fn validate_schema_registry(&self) -> Result<(), ConfigError> {
        let s = &self.schema_registry;
        range(
            "schema_registry.schema_bytes_max",
            s.schema_bytes_max,
            1024,
            magnetar_schema::SCHEMA_BYTES_MAX_LIMIT as u64,
        )?;
        range(
            "schema_registry.versions_per_subject_max",
            s.versions_per_subject_max.into(),
            1,
            10_000,
        )?;
        range(
            "schema_registry.references_max",
            s.references_max.into(),
            0,
            1000,
        )?;
        if magnetar_schema::Compatibility::parse(&s.compatibility).is_none() {
            return Err(err(format!(
                "schema_registry.compatibility = \"{}\" is not one of NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE (or Pulsar's names)",
                s.compatibility
            )));
        }
        Ok(())
    }
}
