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
/// `CreateTime` (the producer's record timestamps, range-checked) or `LogAppendTime` (the
/// broker stamps each batch with its append time).
pub const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
/// Deprecated since Kafka 3.6 (KIP-937): the fallback for the two keys below when they are not
/// set.
pub const MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS: &str = "message.timestamp.difference.max.ms";
/// KIP-937: how far before the broker's clock a CreateTime record timestamp may be.
pub const MESSAGE_TIMESTAMP_BEFORE_MAX_MS: &str = "message.timestamp.before.max.ms";
/// KIP-937: how far after the broker's clock a CreateTime record timestamp may be.
pub const MESSAGE_TIMESTAMP_AFTER_MAX_MS: &str = "message.timestamp.after.max.ms";

pub const CREATE_TIME: &str = "CreateTime";
pub const LOG_APPEND_TIME: &str = "LogAppendTime";

/// Every topic config key accepted, in the order DescribeConfigs lists them.
pub const KEYS: &[&str] = &[
    CLEANUP_POLICY,
    MAX_MESSAGE_BYTES,
    MESSAGE_TIMESTAMP_AFTER_MAX_MS,
    MESSAGE_TIMESTAMP_BEFORE_MAX_MS,
    MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS,
    MESSAGE_TIMESTAMP_TYPE,
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
        RETENTION_MS
        | RETENTION_BYTES
        | MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS
        | MESSAGE_TIMESTAMP_BEFORE_MAX_MS
        | MESSAGE_TIMESTAMP_AFTER_MAX_MS => config_type::LONG,
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
        MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS
        | MESSAGE_TIMESTAMP_BEFORE_MAX_MS
        | MESSAGE_TIMESTAMP_AFTER_MAX_MS => long_at_least(0),
        MESSAGE_TIMESTAMP_TYPE => match value.trim() {
            CREATE_TIME | LOG_APPEND_TIME => Ok(()),
            _ => Err(invalid(
                key,
                format!("'{value}' is not one of '{CREATE_TIME}', '{LOG_APPEND_TIME}'"),
            )),
        },
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
        MESSAGE_TIMESTAMP_TYPE => CREATE_TIME.to_string(),
        MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS
        | MESSAGE_TIMESTAMP_BEFORE_MAX_MS
        | MESSAGE_TIMESTAMP_AFTER_MAX_MS => i64::MAX.to_string(),
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

/// Whether a topic's `cleanup.policy` includes `compact` (then every produced record needs a
/// key, as Kafka's log validator requires).
pub fn compacted(configs: &BTreeMap<String, String>) -> bool {
    configs
        .get(CLEANUP_POLICY)
        .is_some_and(|v| v.split(',').any(|p| p.trim() == "compact"))
}

/// A topic's timestamp policy (`message.timestamp.*`), as the produce validator applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampPolicy {
    /// `message.timestamp.type=LogAppendTime`.
    pub log_append_time: bool,
    pub before_max_ms: i64,
    pub after_max_ms: i64,
}

/// The timestamp policy of a topic. As Kafka's LogConfig does since KIP-937, an unset (or
/// `Long.MAX_VALUE`) `before`/`after` falls back to the deprecated `difference` key. Values were
/// validated when set; a value that does not parse counts as unset.
pub fn timestamp_policy(configs: &BTreeMap<String, String>) -> TimestampPolicy {
    let long = |key: &str| {
        configs
            .get(key)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|v| *v >= 0)
            .unwrap_or(i64::MAX)
    };
    let difference = long(MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS);
    let or_difference = |v: i64| if v == i64::MAX { difference } else { v };
    TimestampPolicy {
        log_append_time: configs
            .get(MESSAGE_TIMESTAMP_TYPE)
            .is_some_and(|v| v.trim() == LOG_APPEND_TIME),
        before_max_ms: or_difference(long(MESSAGE_TIMESTAMP_BEFORE_MAX_MS)),
        after_max_ms: or_difference(long(MESSAGE_TIMESTAMP_AFTER_MAX_MS)),
    }
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
        validate(MESSAGE_TIMESTAMP_TYPE, "LogAppendTime").unwrap();
        validate(MESSAGE_TIMESTAMP_TYPE, "CreateTime").unwrap();
        assert!(validate(MESSAGE_TIMESTAMP_TYPE, "Now").is_err());
        validate(MESSAGE_TIMESTAMP_AFTER_MAX_MS, "3600000").unwrap();
        assert!(validate(MESSAGE_TIMESTAMP_BEFORE_MAX_MS, "-1").is_err());
        let err = validate("no.such.key", "1").unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { ref key, .. } if key == "no.such.key"));
    }

    #[test]
    fn timestamp_policy_falls_back_to_the_difference_key() {
        let configs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let none = timestamp_policy(&configs(&[]));
        assert_eq!(
            none,
            TimestampPolicy {
                log_append_time: false,
                before_max_ms: i64::MAX,
                after_max_ms: i64::MAX
            }
        );
        let difference = timestamp_policy(&configs(&[
            (MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS, "1000"),
            (MESSAGE_TIMESTAMP_AFTER_MAX_MS, "50"),
        ]));
        assert_eq!(difference.before_max_ms, 1000);
        assert_eq!(difference.after_max_ms, 50);
        let append = timestamp_policy(&configs(&[(MESSAGE_TIMESTAMP_TYPE, "LogAppendTime")]));
        assert!(append.log_append_time);
    }
}
