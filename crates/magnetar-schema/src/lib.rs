//! The schema registry core: schemas as metadata, versioned per topic (Pulsar's "schema per
//! topic") and per Confluent subject, identified by global ids, with compatibility levels.
//!
//! Owns: the schema vocabulary ([`SchemaType`], [`Schema`], [`Compatibility`], the error
//! [`SchemaError`]), the parsers and compatibility rules of the schema languages ([`compat`]:
//! Avro through `apache-avro`, JSON Schema through `jsonschema`, Protobuf through `protox` and
//! its `prost-reflect` descriptors), and the store
//! ([`SchemaStore`]) over the broker's metadata store. Confluent subjects `<topic>-value` and
//! `<topic>-key` are a topic's value and key schemas; other subjects are stored beside them.
//!
//! Must not depend on: any wire protocol (no Pulsar protobuf, no HTTP, no Kafka types). The
//! front ends translate: magnetar-pulsar maps the Pulsar `Schema` message and its 8-byte schema
//! versions (a Pulsar version is the subject version minus one), magnetar-admin the Confluent
//! REST API and pulsar-admin's schema endpoints, each with its own mapping of [`SchemaError`].

pub mod compat;
pub mod store;
pub mod types;

pub use compat::{check_compatibility, check_schema, split_key_value, Checked, Parsed};
pub use store::{
    Mode, RegisterOptions, Registered, SchemaConfig, SchemaCounters, SchemaStore, StoredVersion,
    Subject, VersionEntry, VersionSelector, SCHEMA_BYTES_MAX_LIMIT, SUBJECT_LENGTH_MAX,
};
pub use types::{Compatibility, Result, Schema, SchemaError, SchemaReference, SchemaType};

/// The Pulsar version number of a subject version (Pulsar counts from 0, Confluent from 1).
pub fn pulsar_version(version: u32) -> i64 {
    i64::from(version) - 1
}

/// The subject version of a Pulsar version number, if it is one.
pub fn from_pulsar_version(version: i64) -> Option<u32> {
    u32::try_from(version.checked_add(1)?)
        .ok()
        .filter(|v| *v >= 1)
}
