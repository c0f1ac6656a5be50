//! Kafka topic configs: the keys served, their validation, defaults and types. Values set by a
//! client are stored as strings in `TopicMetadata.configs` under their Kafka names.

use std::collections::BTreeMap;

use magnetar_broker::{Error, NamespacePolicies, TopicMetadata};

use crate::api::Context;

pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const SEGMENT_BYTES: &str = "segment.bytes";
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
pub const CLEANUP_POLICY: &str = "cleanup.policy";

/// Every topic config key accepted, in the order DescribeConfigs lists them.
pub const KEYS: &[&str] = &[
    CLEANUP_POLICY,
    MAX_MESSAGE_BYTES,
    RETENTION_BYTES,
    RETENTION_MS,
    SEGMENT_BYTES,
];

/// Kafka's ConfigSource values.
pub mod source {
    pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    pub const DEFAULT_CONFIG: i8 = 5;
}

/// Kafka's ConfigType values (DescribeConfigs v3+).
pub mod config_type {
    pub const BOOLEAN: i8 = 1;
    pub const STRING: i8 = 2;
    pub const INT: i8 = 3;
    pub const LONG: i8 = 5;
    pub const LIST: i8 = 7;
}

pub fn config_type(key: &str) -> i8 {
    match key {
        RETENTION_MS | RETENTION_BYTES => config_type::LONG,
        SEGMENT_BYTES | MAX_MESSAGE_BYTES => config_type::INT,
        CLEANUP_POLICY => config_type::LIST,
        _ => config_type::STRING,
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// Checks one key and value; unknown keys are refused with their name.
pub fn validate(key: &str, value: &str) -> Result<(), Error> {
    let long_at_least = |min: i64| -> Result<(), Error> {
        match value.trim().parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            Ok(v) => Err(invalid(key, format!("{v} is below the minimum {min}"))),
            Err(_) => Err(invalid(key, format!("'{value}' is not a number"))),
        }
    };
    let int_at_least = |min: i64| -> Result<(), Error> {
        long_at_least(min)?;
        match value.trim().parse::<i32>() {
            Ok(_) => Ok(()),
            Err(_) => Err(invalid(
                key,
                format!("'{value}' is larger than {}", i32::MAX),
            )),
        }
    };
    match key {
        RETENTION_MS | RETENTION_BYTES => long_at_least(-1),
        SEGMENT_BYTES => int_at_least(14),
        MAX_MESSAGE_BYTES => int_at_least(0),
        CLEANUP_POLICY => {
            let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
            parts.sort_unstable();
            parts.dedup();
            if parts.is_empty() || parts.iter().any(|p| !matches!(*p, "delete" | "compact")) {
                return Err(invalid(
                    key,
                    format!("'{value}' is not a list of 'delete' and 'compact'"),
                ));
            }
            Ok(())
        }
        _ => Err(invalid(key, "unknown or unsupported topic config")),
    }
}

/// Validates a whole set of configs.
pub fn validate_all(configs: &BTreeMap<String, String>) -> Result<(), Error> {
    configs.iter().try_for_each(|(k, v)| validate(k, v))
}

/// The value a topic has when `key` is not set on it.
pub fn default_value(
    ctx: &Context,
    policies: Option<&NamespacePolicies>,
    key: &str,
) -> Option<String> {
    let or_infinite = |v: Option<u64>| v.map_or_else(|| "-1".to_string(), |v| v.to_string());
    Some(match key {
        RETENTION_MS => or_infinite(policies.and_then(|p| p.retention_time_ms)),
        RETENTION_BYTES => or_infinite(policies.and_then(|p| p.retention_size_bytes)),
        SEGMENT_BYTES => ctx
            .broker
            .config()
            .ledger
            .segment_bytes
            .min(i32::MAX as u64)
            .to_string(),
        MAX_MESSAGE_BYTES => ctx.config.message_bytes_max.to_string(),
        CLEANUP_POLICY => "delete".to_string(),
        _ => return None,
    })
}

/// The batch size limit of a topic: its `max.message.bytes`, else the broker default.
pub fn max_message_bytes(ctx: &Context, metadata: &TopicMetadata) -> usize {
    metadata
        .configs
        .get(MAX_MESSAGE_BYTES)
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(ctx.config.message_bytes_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        validate(RETENTION_MS, "-1").unwrap();
        validate(RETENTION_MS, "86400000").unwrap();
        assert!(validate(RETENTION_MS, "-2").is_err());
        assert!(validate(RETENTION_MS, "abc").is_err());
        validate(SEGMENT_BYTES, "1048576").unwrap();
        assert!(validate(SEGMENT_BYTES, "99999999999").is_err());
        validate(CLEANUP_POLICY, "compact,delete").unwrap();
        assert!(validate(CLEANUP_POLICY, "shred").is_err());
        let err = validate("no.such.key", "1").unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { ref key, .. } if key == "no.such.key"));
    }
}
