//! The protocol-neutral schema vocabulary: schema types, a schema as stored, compatibility
//! levels and the error of this crate.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The kind of a schema. The names are Pulsar's `SchemaType` names (what pulsar-admin shows);
/// Confluent's `AVRO`, `JSON` and `PROTOBUF` are three of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SchemaType {
    /// Pulsar `BYTES` (`Schema.Type.None` on the wire): no schema.
    None,
    String,
    Json,
    Protobuf,
    Avro,
    Boolean,
    Int8,
    Int16,
    Int32,
    Int64,
    Float,
    Double,
    Date,
    Time,
    Timestamp,
    KeyValue,
    Instant,
    LocalDate,
    LocalTime,
    LocalDateTime,
    ProtobufNative,
    /// A consumer that takes whatever the topic has; never stored.
    AutoConsume,
    /// A producer that publishes with the topic's schema; never stored.
    AutoPublish,
}

impl SchemaType {
    pub const ALL: [SchemaType; 23] = [
        SchemaType::None,
        SchemaType::String,
        SchemaType::Json,
        SchemaType::Protobuf,
        SchemaType::Avro,
        SchemaType::Boolean,
        SchemaType::Int8,
        SchemaType::Int16,
        SchemaType::Int32,
        SchemaType::Int64,
        SchemaType::Float,
        SchemaType::Double,
        SchemaType::Date,
        SchemaType::Time,
        SchemaType::Timestamp,
        SchemaType::KeyValue,
        SchemaType::Instant,
        SchemaType::LocalDate,
        SchemaType::LocalTime,
        SchemaType::LocalDateTime,
        SchemaType::ProtobufNative,
        SchemaType::AutoConsume,
        SchemaType::AutoPublish,
    ];

    /// Pulsar's name (`AVRO`, `KEY_VALUE`, `BYTES` for no schema).
    pub fn name(self) -> &'static str {
        match self {
            SchemaType::None => "BYTES",
            SchemaType::String => "STRING",
            SchemaType::Json => "JSON",
            SchemaType::Protobuf => "PROTOBUF",
            SchemaType::Avro => "AVRO",
            SchemaType::Boolean => "BOOLEAN",
            SchemaType::Int8 => "INT8",
            SchemaType::Int16 => "INT16",
            SchemaType::Int32 => "INT32",
            SchemaType::Int64 => "INT64",
            SchemaType::Float => "FLOAT",
            SchemaType::Double => "DOUBLE",
            SchemaType::Date => "DATE",
            SchemaType::Time => "TIME",
            SchemaType::Timestamp => "TIMESTAMP",
            SchemaType::KeyValue => "KEY_VALUE",
            SchemaType::Instant => "INSTANT",
            SchemaType::LocalDate => "LOCAL_DATE",
            SchemaType::LocalTime => "LOCAL_TIME",
            SchemaType::LocalDateTime => "LOCAL_DATE_TIME",
            SchemaType::ProtobufNative => "PROTOBUF_NATIVE",
            SchemaType::AutoConsume => "AUTO_CONSUME",
            SchemaType::AutoPublish => "AUTO_PUBLISH",
        }
    }

    /// Parses a Pulsar or Confluent type name, case-insensitively (`NONE` is `BYTES`).
    pub fn parse(name: &str) -> Option<SchemaType> {
        let upper = name.to_ascii_uppercase();
        match upper.as_str() {
            "NONE" => Some(SchemaType::None),
            "BOOL" => Some(SchemaType::Boolean),
            "AUTO" | "AUTO_PRODUCE" => Some(SchemaType::AutoPublish),
            _ => SchemaType::ALL.into_iter().find(|t| t.name() == upper),
        }
    }

    /// Types whose definition is a document (Avro, JSON, Protobuf) rather than empty.
    pub fn has_definition(self) -> bool {
        matches!(
            self,
            SchemaType::Json
                | SchemaType::Protobuf
                | SchemaType::Avro
                | SchemaType::KeyValue
                | SchemaType::ProtobufNative
        )
    }

    /// Whether a schema of this type is versioned in the store (the AUTO types are requests to
    /// use what the topic has, not schemas).
    pub fn is_storable(self) -> bool {
        !matches!(self, SchemaType::AutoConsume | SchemaType::AutoPublish)
    }
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A reference from one schema to another subject's version (Confluent's `references`): the
/// referenced schema's named types are visible to the referring one under `name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SchemaReference {
    pub name: String,
    pub subject: String,
    pub version: u32,
}

/// One schema: its type, its definition (bytes: JSON text for Avro/JSON, Protobuf source or a
/// descriptor set, Pulsar's KeyValue layout), Pulsar's properties and Confluent's references.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub kind: SchemaType,
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
}

impl Schema {
    pub fn new(kind: SchemaType, data: impl Into<Vec<u8>>) -> Self {
        Schema {
            kind,
            data: data.into(),
            properties: BTreeMap::new(),
            references: Vec::new(),
        }
    }

    /// The definition as text (lossy for binary definitions, which only KeyValue has).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// A compatibility level: Confluent's seven names; Pulsar's `SchemaCompatibilityStrategy` names
/// are aliases ([`Compatibility::parse`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    /// Any change is accepted (Pulsar `ALWAYS_COMPATIBLE`).
    None,
    /// A new schema must read data written with the latest version.
    Backward,
    BackwardTransitive,
    /// The latest version must read data written with a new schema.
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
    /// Pulsar `ALWAYS_INCOMPATIBLE`: no new version once a schema exists.
    AlwaysIncompatible,
}

impl Compatibility {
    /// Parses Confluent's names and Pulsar's aliases, case-insensitively. Pulsar's `UNDEFINED`
    /// is `None` here (the caller falls back to the next level).
    pub fn parse(name: &str) -> Option<Compatibility> {
        let upper = name.to_ascii_uppercase();
        Some(match upper.as_str() {
            "NONE" | "ALWAYS_COMPATIBLE" => Compatibility::None,
            "BACKWARD" => Compatibility::Backward,
            "BACKWARD_TRANSITIVE" => Compatibility::BackwardTransitive,
            "FORWARD" => Compatibility::Forward,
            "FORWARD_TRANSITIVE" => Compatibility::ForwardTransitive,
            "FULL" => Compatibility::Full,
            "FULL_TRANSITIVE" => Compatibility::FullTransitive,
            "ALWAYS_INCOMPATIBLE" => Compatibility::AlwaysIncompatible,
            _ => return None,
        })
    }

    /// Confluent's name (Pulsar's for the two Pulsar-only levels).
    pub fn name(self) -> &'static str {
        match self {
            Compatibility::None => "NONE",
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
            Compatibility::AlwaysIncompatible => "ALWAYS_INCOMPATIBLE",
        }
    }

    /// Pulsar's name of the level (`ALWAYS_COMPATIBLE` for `NONE`).
    pub fn pulsar_name(self) -> &'static str {
        match self {
            Compatibility::None => "ALWAYS_COMPATIBLE",
            other => other.name(),
        }
    }

    /// Whether every earlier version is checked, not only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            Compatibility::BackwardTransitive
                | Compatibility::ForwardTransitive
                | Compatibility::FullTransitive
        )
    }

    /// (new schema must read old data, old schema must read new data)
    pub fn directions(self) -> (bool, bool) {
        match self {
            Compatibility::None | Compatibility::AlwaysIncompatible => (false, false),
            Compatibility::Backward | Compatibility::BackwardTransitive => (true, false),
            Compatibility::Forward | Compatibility::ForwardTransitive => (false, true),
            Compatibility::Full | Compatibility::FullTransitive => (true, true),
        }
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the registry answers besides a result. Each front end maps it to its codes in one
/// exhaustive `match` (Pulsar `ServerError`, Confluent `error_code`, HTTP status).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The schema does not parse or breaks a rule of its language (Confluent 42201).
    #[error("invalid schema: {0}")]
    Invalid(String),
    /// The schema is not compatible with the versions it must be checked against (409).
    #[error("incompatible schema: {0}")]
    Incompatible(String),
    /// A limit of the registry (`schema_registry.*`) was reached.
    #[error("{0}")]
    LimitReached(String),
    #[error("subject '{0}' not found")]
    SubjectNotFound(String),
    #[error("version {version} of subject '{subject}' not found")]
    VersionNotFound { subject: String, version: String },
    #[error("schema {0} not found")]
    SchemaNotFound(u64),
    /// A bad request that is not a schema: a version number, a compatibility name, a mode.
    #[error("{0}")]
    InvalidRequest(String),
    /// Confluent: a version must be soft-deleted before it is deleted permanently (40405/40407).
    #[error("{0}")]
    NotSoftDeleted(String),
    /// Confluent: a version referenced by another schema may not be deleted (42206).
    #[error("{0}")]
    Referenced(String),
    /// Writes are refused in READONLY mode (42205).
    #[error("{0}")]
    ReadOnly(String),
    /// From the broker: a topic name, a namespace, the metadata store.
    #[error(transparent)]
    Broker(#[from] magnetar_broker::Error),
}

pub type Result<T, E = SchemaError> = std::result::Result<T, E>;
