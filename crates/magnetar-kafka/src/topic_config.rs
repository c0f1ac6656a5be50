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

/// Kafka's ConfigSource values.
pub mod source {
    pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    /// A default set at run time above the topic: here, its namespace's default
    /// (`topicConfigDefaults`).
    pub const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    pub const DEFAULT_CONFIG: i8 = 5;
}

/// Kafka's ConfigType values (DescribeConfigs v3+).
pub mod config_type {
    pub const BOOLEAN: i8 = 1;
    pub const STRING: i8 = 2;
    pub const INT: i8 = 3;
    pub const LONG: i8 = 5;
    pub const DOUBLE: i8 = 6;
    pub const LIST: i8 = 7;
}

/// How a value is checked (Kafka's ConfigDef validators).
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// Any value of the type.
    Any,
    /// An integer at least this.
    AtLeast(i64),
    /// An integer in `[min, max]`.
    Between(i64, i64),
    /// A double in `[0, 1]`.
    Ratio,
    /// One of these strings (case-sensitive, as Kafka's `ValidString`).
    OneOf(&'static [&'static str]),
    /// A non-empty list whose items are all among these.
    ListOf(&'static [&'static str]),
    /// `-1` (the codec's default) or `[1, 9]`: Kafka's gzip level validator.
    GzipLevel,
    /// `*` or a list of `partition:broker` pairs (Kafka's ThrottledReplicaListValidator).
    ThrottledReplicas,
}

/// What a key does in Magnetar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Enforced as Kafka does.
    Applied,
    /// Accepted, stored and described, with no effect here; the text says why.
    None(&'static str),
}

/// One Kafka 4.x topic config: name, ConfigType, default (as Kafka shows it), rule, documentation
/// and its effect in Magnetar. Defaults that depend on the broker or namespace are computed in
/// [`default_value`].
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub config_type: i8,
    pub default: &'static str,
    pub rule: Rule,
    pub doc: &'static str,
    pub effect: Effect,
}

/// Log compaction runs on every kind of ledger: local, tiered (offloaded segments are rewritten
/// and swapped in) and cluster mode's shared ones.
const COMPACTION: Effect = Effect::Applied;
const ONE_COPY: Effect = Effect::None(
    "each partition is one copy on the ledger; there are no replicas or leader elections",
);
const STORAGE: Effect =
    Effect::None("the ledger's own segment, index and flush policy decide this");
const TIERING: Effect =
    Effect::None("tiered storage is set per broker (`storage.local_retention_ms`), not per topic");
const I64_MAX: &str = "9223372036854775807";

const fn def(
    name: &'static str,
    config_type: i8,
    default: &'static str,
    rule: Rule,
    effect: Effect,
    doc: &'static str,
) -> Spec {
    Spec {
        name,
        config_type,
        default,
        rule,
        doc,
        effect,
    }
}

/// Every topic config key accepted, in the order DescribeConfigs lists them (by name). These are
/// Kafka 4.x's topic configs plus the deprecated `message.timestamp.difference.max.ms`, still
/// sent by older tools.
pub const SPECS: &[Spec] = &[
    def(
        CLEANUP_POLICY,
        config_type::LIST,
        "delete",
        Rule::ListOf(&["compact", "delete"]),
        Effect::Applied,
        "Retention policy of old segments: 'delete' removes them by time or size, 'compact' keeps \
         the latest value of each key (sealed segments are rewritten by the broker's cleaner; \
         offsets are kept, so gaps are normal). With 'compact' every produced record must have \
         a key. Compaction runs on local, tiered and cluster-mode ledgers alike; the active \
         segment (in cluster mode the unsealed tail) is never compacted.",
    ),
    def(
        COMPRESSION_GZIP_LEVEL,
        config_type::INT,
        "-1",
        Rule::GzipLevel,
        Effect::Applied,
        "Compression level when compression.type is gzip.",
    ),
    def(
        COMPRESSION_LZ4_LEVEL,
        config_type::INT,
        "9",
        Rule::Between(1, 17),
        Effect::None("the lz4 encoder here has one level"),
        "Compression level when compression.type is lz4.",
    ),
    def(
        COMPRESSION_TYPE,
        config_type::STRING,
        "producer",
        Rule::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        Effect::Applied,
        "Final compression of the topic's data: 'producer' stores batches as produced; a codec (or \
         'uncompressed') re-compresses every batch in another codec at produce.",
    ),
    def(
        COMPRESSION_ZSTD_LEVEL,
        config_type::INT,
        "3",
        Rule::Between(-131072, 22),
        Effect::Applied,
        "Compression level when compression.type is zstd.",
    ),
    def(
        DELETE_RETENTION_MS,
        config_type::LONG,
        "86400000",
        Rule::AtLeast(0),
        COMPACTION,
        "How long delete tombstones are kept on a compacted topic.",
    ),
    def(
        FILE_DELETE_DELAY_MS,
        config_type::LONG,
        "60000",
        Rule::AtLeast(0),
        STORAGE,
        "How long to wait before deleting a file from the file system.",
    ),
    def(
        FLUSH_MESSAGES,
        config_type::LONG,
        I64_MAX,
        Rule::AtLeast(1),
        Effect::None("durability follows the broker's fsync policy (`storage.fsync`)"),
        "Messages written between forced fsyncs of the log.",
    ),
    def(
        FLUSH_MS,
        config_type::LONG,
        I64_MAX,
        Rule::AtLeast(0),
        Effect::None("durability follows the broker's fsync policy (`storage.fsync`)"),
        "Time between forced fsyncs of the log.",
    ),
    def(
        FOLLOWER_REPLICATION_THROTTLED_REPLICAS,
        config_type::LIST,
        "",
        Rule::ThrottledReplicas,
        ONE_COPY,
        "Replicas whose log replication is throttled on the follower side: '*' or partition:broker \
         pairs.",
    ),
    def(
        INDEX_INTERVAL_BYTES,
        config_type::INT,
        "4096",
        Rule::AtLeast(0),
        STORAGE,
        "How often an entry is added to the offset index.",
    ),
    def(
        LEADER_REPLICATION_THROTTLED_REPLICAS,
        config_type::LIST,
        "",
        Rule::ThrottledReplicas,
        ONE_COPY,
        "Replicas whose log replication is throttled on the leader side: '*' or partition:broker \
         pairs.",
    ),
    def(
        LOCAL_RETENTION_BYTES,
        config_type::LONG,
        "-2",
        Rule::AtLeast(-2),
        TIERING,
        "Bytes a partition keeps locally before its segments are eligible for deletion once in \
         tiered storage; -2 means retention.bytes.",
    ),
    def(
        LOCAL_RETENTION_MS,
        config_type::LONG,
        "-2",
        Rule::AtLeast(-2),
        TIERING,
        "Milliseconds a segment is kept locally once in tiered storage; -2 means retention.ms.",
    ),
    def(
        MAX_COMPACTION_LAG_MS,
        config_type::LONG,
        I64_MAX,
        Rule::AtLeast(1),
        COMPACTION,
        "Longest time a message stays ineligible for compaction.",
    ),
    def(
        MAX_MESSAGE_BYTES,
        config_type::INT,
        "1048588",
        Rule::AtLeast(0),
        Effect::Applied,
        "Largest record batch the topic accepts (after compression).",
    ),
    def(
        MESSAGE_TIMESTAMP_AFTER_MAX_MS,
        config_type::LONG,
        I64_MAX,
        Rule::AtLeast(0),
        Effect::Applied,
        "How far after the broker's clock a CreateTime record timestamp may be; later batches are \
         refused.",
    ),
    def(
        MESSAGE_TIMESTAMP_BEFORE_MAX_MS,
        config_type::LONG,
        I64_MAX,
        Rule::AtLeast(0),
        Effect::Applied,
        "How far before the broker's clock a CreateTime record timestamp may be; older batches are \
         refused.",
    ),
    def(
        MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS,
        config_type::LONG,
        I64_MAX,
        Rule::AtLeast(0),
        Effect::Applied,
        "Deprecated (removed in Kafka 4.0): the fallback for message.timestamp.before.max.ms and \
         message.timestamp.after.max.ms when they are not set.",
    ),
    def(
        MESSAGE_TIMESTAMP_TYPE,
        config_type::STRING,
        "CreateTime",
        Rule::OneOf(&[CREATE_TIME, LOG_APPEND_TIME]),
        Effect::Applied,
        "Whether record timestamps are the producer's (CreateTime) or the broker's append time \
         (LogAppendTime, stamped on each batch; ListOffsets by time follows).",
    ),
    def(
        MIN_CLEANABLE_DIRTY_RATIO,
        config_type::DOUBLE,
        "0.5",
        Rule::Ratio,
        COMPACTION,
        "Share of the log that must be uncompacted before it is compacted.",
    ),
    def(
        MIN_COMPACTION_LAG_MS,
        config_type::LONG,
        "0",
        Rule::AtLeast(0),
        COMPACTION,
        "Shortest time a message stays uncompacted.",
    ),
    def(
        MIN_INSYNC_REPLICAS,
        config_type::INT,
        "1",
        Rule::AtLeast(1),
        ONE_COPY,
        "Fewest in-sync replicas that must acknowledge a write with acks=all.",
    ),
    def(
        PREALLOCATE,
        config_type::BOOLEAN,
        "false",
        Rule::Any,
        STORAGE,
        "Whether segment files are preallocated when created.",
    ),
    def(
        REMOTE_LOG_COPY_DISABLE,
        config_type::BOOLEAN,
        "false",
        Rule::Any,
        TIERING,
        "Stops copying segments to tiered storage while keeping what is there readable.",
    ),
    def(
        REMOTE_LOG_DELETE_ON_DISABLE,
        config_type::BOOLEAN,
        "false",
        Rule::Any,
        TIERING,
        "Whether turning remote storage off deletes the tiered segments.",
    ),
    def(
        REMOTE_STORAGE_ENABLE,
        config_type::BOOLEAN,
        "false",
        Rule::Any,
        TIERING,
        "Whether the topic uses tiered storage.",
    ),
    def(
        RETENTION_BYTES,
        config_type::LONG,
        "-1",
        Rule::AtLeast(-1),
        Effect::Applied,
        "Most bytes a partition keeps before its oldest segments are deleted; -1 means no limit \
         (default: the namespace's retention policy).",
    ),
    def(
        RETENTION_MS,
        config_type::LONG,
        "604800000",
        Rule::AtLeast(-1),
        Effect::Applied,
        "How long a segment is kept after its last write before it is deleted; -1 means no limit \
         (default: the namespace's retention policy).",
    ),
    def(
        SEGMENT_BYTES,
        config_type::INT,
        "1073741824",
        Rule::AtLeast(14),
        Effect::Applied,
        "Size of a segment file (Magnetar rounds values below 4096 up to 4096).",
    ),
    def(
        SEGMENT_INDEX_BYTES,
        config_type::INT,
        "10485760",
        Rule::AtLeast(4),
        STORAGE,
        "Size of a segment's offset index.",
    ),
    def(
        SEGMENT_JITTER_MS,
        config_type::LONG,
        "0",
        Rule::AtLeast(0),
        Effect::None("segments roll by size only"),
        "Random jitter subtracted from segment.ms.",
    ),
    def(
        SEGMENT_MS,
        config_type::LONG,
        "604800000",
        Rule::AtLeast(1),
        Effect::Applied,
        "Time after which a segment is rolled even if not full (taken when the partition is \
         opened, like segment.bytes).",
    ),
    def(
        UNCLEAN_LEADER_ELECTION_ENABLE,
        config_type::BOOLEAN,
        "false",
        Rule::Any,
        ONE_COPY,
        "Whether an out-of-sync replica may become leader.",
    ),
];

pub const COMPRESSION_TYPE: &str = "compression.type";
pub const COMPRESSION_GZIP_LEVEL: &str = "compression.gzip.level";
pub const COMPRESSION_LZ4_LEVEL: &str = "compression.lz4.level";
pub const COMPRESSION_ZSTD_LEVEL: &str = "compression.zstd.level";
pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";
pub const FILE_DELETE_DELAY_MS: &str = "file.delete.delay.ms";
pub const FLUSH_MESSAGES: &str = "flush.messages";
pub const FLUSH_MS: &str = "flush.ms";
pub const FOLLOWER_REPLICATION_THROTTLED_REPLICAS: &str = "follower.replication.throttled.replicas";
pub const LEADER_REPLICATION_THROTTLED_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const INDEX_INTERVAL_BYTES: &str = "index.interval.bytes";
pub const LOCAL_RETENTION_BYTES: &str = "local.retention.bytes";
pub const LOCAL_RETENTION_MS: &str = "local.retention.ms";
pub const MAX_COMPACTION_LAG_MS: &str = "max.compaction.lag.ms";
pub const MIN_CLEANABLE_DIRTY_RATIO: &str = "min.cleanable.dirty.ratio";
pub const MIN_COMPACTION_LAG_MS: &str = "min.compaction.lag.ms";
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
pub const PREALLOCATE: &str = "preallocate";
pub const REMOTE_LOG_COPY_DISABLE: &str = "remote.log.copy.disable";
pub const REMOTE_LOG_DELETE_ON_DISABLE: &str = "remote.log.delete.on.disable";
pub const REMOTE_STORAGE_ENABLE: &str = "remote.storage.enable";
pub const SEGMENT_INDEX_BYTES: &str = "segment.index.bytes";
pub const SEGMENT_JITTER_MS: &str = "segment.jitter.ms";
pub const SEGMENT_MS: &str = "segment.ms";
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// The spec of a key, if it is a topic config.
pub fn spec(key: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == key)
}

pub fn config_type(key: &str) -> i8 {
    spec(key).map_or(config_type::STRING, |s| s.config_type)
}

/// The documentation DescribeConfigs returns: Kafka's meaning, then what it does here.
pub fn documentation(spec: &Spec) -> String {
    match spec.effect {
        Effect::Applied => spec.doc.to_string(),
        Effect::None(why) => format!("{} Accepted with no effect in Magnetar: {why}.", spec.doc),
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// Checks one key and value (Kafka's parsing: values trimmed, booleans case-insensitive); unknown
/// keys are refused with their name.
pub fn validate(key: &str, value: &str) -> Result<(), Error> {
    let Some(spec) = spec(key) else {
        return Err(invalid(key, "unknown topic config"));
    };
    let v = value.trim();
    let fail = |reason: String| Err(invalid(key, reason));
    let number = || -> Result<i64, Error> {
        let n = v
            .parse::<i64>()
            .map_err(|_| invalid(key, format!("'{value}' is not a number")))?;
        if spec.config_type == config_type::INT && i32::try_from(n).is_err() {
            return Err(invalid(key, format!("'{value}' is not a 32-bit integer")));
        }
        Ok(n)
    };
    match spec.config_type {
        config_type::BOOLEAN
            if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") =>
        {
            return fail(format!("'{value}' is not 'true' or 'false'"));
        }
        config_type::INT | config_type::LONG => {
            let n = number()?;
            match spec.rule {
                Rule::AtLeast(min) if n < min => {
                    return fail(format!("{n} is below the minimum {min}"));
                }
                Rule::Between(min, max) if n < min || n > max => {
                    return fail(format!("{n} is not in [{min}, {max}]"));
                }
                Rule::GzipLevel if n != -1 && !(1..=9).contains(&n) => {
                    return fail(format!("{n} is not -1 or in [1, 9]"));
                }
                _ => {}
            }
        }
        config_type::DOUBLE => match v.parse::<f64>() {
            Ok(d) if (0.0..=1.0).contains(&d) => {}
            Ok(d) => return fail(format!("{d} is not in [0, 1]")),
            Err(_) => return fail(format!("'{value}' is not a number")),
        },
        _ => {}
    }
    match spec.rule {
        Rule::OneOf(allowed) if !allowed.contains(&v) => {
            fail(format!("'{value}' is not one of {}", quoted(allowed)))
        }
        Rule::ListOf(allowed) => {
            let items: Vec<&str> = v.split(',').map(str::trim).collect();
            if items.iter().any(|i| !allowed.contains(i)) {
                return fail(format!("'{value}' is not a list of {}", quoted(allowed)));
            }
            Ok(())
        }
        Rule::ThrottledReplicas => {
            let items: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .collect();
            let pair = |i: &str| {
                i.split_once(':').is_some_and(|(p, b)| {
                    !p.is_empty()
                        && !b.is_empty()
                        && p.bytes().all(|c| c.is_ascii_digit())
                        && b.bytes().all(|c| c.is_ascii_digit())
                })
            };
            if items == ["*"] || items.iter().all(|i| pair(i)) {
                Ok(())
            } else {
                fail(format!(
                    "'{value}' is not '*' or a list of partition:broker pairs"
                ))
            }
        }
        _ => Ok(()),
    }
}

fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(", ")
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
        _ => spec(key)?.default.to_string(),
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

/// The codec and levels a topic's `compression.type` asks batches to be stored in; `None` for
/// `producer` (stored as produced).
pub fn compression(configs: &BTreeMap<String, String>) -> Option<(i16, crate::batch::Levels)> {
    let codec = crate::batch::target_codec(configs.get(COMPRESSION_TYPE)?)?;
    let level = |key: &str, default: i32| {
        configs
            .get(key)
            .and_then(|v| v.trim().parse::<i32>().ok())
            .unwrap_or(default)
    };
    Some((
        codec,
        crate::batch::Levels {
            gzip: level(COMPRESSION_GZIP_LEVEL, -1),
            zstd: level(COMPRESSION_ZSTD_LEVEL, 3),
        },
    ))
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
    fn every_default_is_valid_and_keys_are_sorted_and_unique() {
        for spec in SPECS {
            validate(spec.name, spec.default)
                .unwrap_or_else(|e| panic!("default of {}: {e}", spec.name));
        }
        let names: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn kafka_4_keys_accepted_with_their_rules() {
        // The keys tools were refused with (issue #20).
        validate(COMPRESSION_TYPE, "zstd").unwrap();
        validate(COMPRESSION_TYPE, "producer").unwrap();
        assert!(validate(COMPRESSION_TYPE, "brotli").is_err());
        assert!(validate(COMPRESSION_TYPE, "ZSTD").is_err());
        validate(DELETE_RETENTION_MS, "0").unwrap();
        assert!(validate(DELETE_RETENTION_MS, "-1").is_err());
        validate(FILE_DELETE_DELAY_MS, "1000").unwrap();
        validate(MAX_COMPACTION_LAG_MS, "1").unwrap();
        assert!(validate(MAX_COMPACTION_LAG_MS, "0").is_err());
        // Types: INT is 32-bit, LONG 64-bit, DOUBLE a ratio, BOOLEAN case-insensitive.
        validate(MIN_INSYNC_REPLICAS, "2").unwrap();
        assert!(validate(MIN_INSYNC_REPLICAS, "0").is_err());
        assert!(validate(MIN_INSYNC_REPLICAS, "4294967296").is_err());
        validate(SEGMENT_MS, "9223372036854775807").unwrap();
        assert!(validate(SEGMENT_MS, "9223372036854775808").is_err());
        validate(MIN_CLEANABLE_DIRTY_RATIO, "0.01").unwrap();
        assert!(validate(MIN_CLEANABLE_DIRTY_RATIO, "1.5").is_err());
        assert!(validate(MIN_CLEANABLE_DIRTY_RATIO, "half").is_err());
        validate(UNCLEAN_LEADER_ELECTION_ENABLE, "TRUE").unwrap();
        validate(PREALLOCATE, " false ").unwrap();
        assert!(validate(UNCLEAN_LEADER_ELECTION_ENABLE, "yes").is_err());
        // Codec levels.
        validate(COMPRESSION_GZIP_LEVEL, "-1").unwrap();
        validate(COMPRESSION_GZIP_LEVEL, "9").unwrap();
        assert!(validate(COMPRESSION_GZIP_LEVEL, "0").is_err());
        validate(COMPRESSION_ZSTD_LEVEL, "-5").unwrap();
        assert!(validate(COMPRESSION_ZSTD_LEVEL, "23").is_err());
        assert!(validate(COMPRESSION_LZ4_LEVEL, "18").is_err());
        validate(LOCAL_RETENTION_MS, "-2").unwrap();
        assert!(validate(LOCAL_RETENTION_BYTES, "-3").is_err());
        // Throttled-replica lists.
        validate(LEADER_REPLICATION_THROTTLED_REPLICAS, "*").unwrap();
        validate(LEADER_REPLICATION_THROTTLED_REPLICAS, "").unwrap();
        validate(FOLLOWER_REPLICATION_THROTTLED_REPLICAS, "0:1, 1:2").unwrap();
        assert!(validate(FOLLOWER_REPLICATION_THROTTLED_REPLICAS, "0:1,*").is_err());
        assert!(validate(FOLLOWER_REPLICATION_THROTTLED_REPLICAS, "0-1").is_err());
        assert!(validate(CLEANUP_POLICY, "").is_err());
    }

    #[test]
    fn refusals_name_the_key_and_the_rule() {
        let Error::InvalidConfig { key, reason } =
            validate(COMPRESSION_TYPE, "brotli").unwrap_err()
        else {
            panic!("not InvalidConfig");
        };
        assert_eq!(key, COMPRESSION_TYPE);
        assert!(reason.contains("'zstd'"), "{reason}");
        let Error::InvalidConfig { reason, .. } = validate(SEGMENT_MS, "0").unwrap_err() else {
            panic!("not InvalidConfig");
        };
        assert_eq!(reason, "0 is below the minimum 1");
    }

    #[test]
    fn documentation_says_when_a_key_has_no_effect() {
        let doc = documentation(spec(MIN_INSYNC_REPLICAS).unwrap());
        assert!(doc.contains("no effect in Magnetar"), "{doc}");
        let doc = documentation(spec(RETENTION_MS).unwrap());
        assert!(!doc.contains("no effect"), "{doc}");
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
