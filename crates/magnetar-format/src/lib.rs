//! Entry payload conversion between the Kafka and Pulsar views of a message.
//!
//! Owns: a small hand-written codec for Kafka record batches v2 ([`kafka`]: varints, records,
//! headers, decompression of gzip/snappy/lz4/zstd, an uncompressed encoder), and the mapping of
//! one Kafka record to the fields of a Pulsar message ([`to_pulsar_message`]) and back
//! ([`from_pulsar_message`]), protocol-neutral: the Pulsar front end puts the result into its
//! protobuf types, the Kafka front end into record batches.
//!
//! Must not depend on: `kafka-protocol`, `prost` or either front end (it sits below both; the
//! layering test enforces it). Its only project dependency is `magnetar-broker`.
//!
//! The mapping (both ways, lossless):
//! - key -> partition key: a UTF-8 key as is; a binary key base64-encoded with Pulsar's own
//!   `partition_key_b64_encoded` flag; a null key -> no partition key.
//! - value -> payload; a null value (tombstone) -> empty payload with `null_value`; an empty
//!   value stays an empty payload.
//! - headers -> properties: a UTF-8 value as is; a non-UTF-8 value base64-encoded and marked by
//!   a property `__kafka.b64.<key>` = `true`; a null value as `""` marked by
//!   `__kafka.null.<key>` = `true`. Marker properties are removed on the way back.
//! - timestamp -> event time.
//!
//! Also [`cache::ConversionCache`], the bounded cache of converted entries both front ends use.
//!
//! Main types: [`kafka::Batch`], [`kafka::Record`], [`PulsarMessage`], [`cache::ConversionCache`].

pub mod base64;
pub mod cache;
pub mod compaction;
pub mod kafka;
pub mod pulsar;

use bytes::Bytes;

use crate::kafka::{Batch, Header, Record};

/// Producer name shown on Pulsar messages that a Kafka client produced.
pub const KAFKA_PRODUCER_NAME: &str = "kafka";

/// Marker property prefix: the header value was base64-encoded (not UTF-8).
pub const B64_MARKER: &str = "__kafka.b64.";
/// Marker property prefix: the header value was null.
pub const NULL_MARKER: &str = "__kafka.null.";

/// The bytes a Kafka fetch returns for an entry of either format: a Kafka entry as stored (no
/// re-encoding), a Pulsar entry converted to an uncompressed v2 record batch whose base offset
/// is the entry's first message index. This is the hook for the Kafka fetch path.
pub fn entry_as_kafka(entry: &magnetar_broker::Entry) -> Result<Bytes, kafka::FormatError> {
    match entry.header.format {
        magnetar_broker::PayloadFormat::Kafka => Ok(entry.payload.clone()),
        magnetar_broker::PayloadFormat::Pulsar => {
            pulsar::entry_to_kafka_batch(&entry.payload, entry.header.first_index)
        }
    }
}

/// As [`entry_as_kafka`], a Pulsar entry's values framed with Confluent's prefix (magic 0 and
/// `confluent_id`) when one is given (see [`pulsar::entry_to_framed_kafka_batch`]).
pub fn entry_as_framed_kafka(
    entry: &magnetar_broker::Entry,
    confluent_id: Option<u32>,
) -> Result<Bytes, kafka::FormatError> {
    match entry.header.format {
        magnetar_broker::PayloadFormat::Kafka => Ok(entry.payload.clone()),
        magnetar_broker::PayloadFormat::Pulsar => pulsar::entry_to_framed_kafka_batch(
            &entry.payload,
            entry.header.first_index,
            confluent_id,
        ),
    }
}

/// A message in Pulsar's terms, independent of Pulsar's protobuf types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulsarMessage {
    pub partition_key: Option<String>,
    /// The partition key is base64 of a binary key.
    pub partition_key_b64: bool,
    pub properties: Vec<(String, String)>,
    pub value: Bytes,
    pub null_value: bool,
    pub event_time_ms: i64,
    /// Removed by log compaction from its batch (Pulsar's `compacted_out`): kept as a place
    /// holder so the other messages keep their batch index; never delivered.
    pub compacted_out: bool,
}

/// The Pulsar view of one Kafka record.
pub fn to_pulsar_message(record: &Record, _batch: &Batch) -> PulsarMessage {
    let (partition_key, partition_key_b64) = match &record.key {
        None => (None, false),
        Some(k) => match std::str::from_utf8(k) {
            Ok(s) => (Some(s.to_string()), false),
            Err(_) => (Some(base64::encode(k)), true),
        },
    };
    let mut properties = Vec::with_capacity(record.headers.len());
    for h in &record.headers {
        match &h.value {
            None => {
                properties.push((h.key.clone(), String::new()));
                properties.push((format!("{NULL_MARKER}{}", h.key), "true".into()));
            }
            Some(v) => match std::str::from_utf8(v) {
                Ok(s) => properties.push((h.key.clone(), s.to_string())),
                Err(_) => {
                    properties.push((h.key.clone(), base64::encode(v)));
                    properties.push((format!("{B64_MARKER}{}", h.key), "true".into()));
                }
            },
        }
    }
    PulsarMessage {
        partition_key,
        partition_key_b64,
        properties,
        value: record.value.clone().unwrap_or_default(),
        null_value: record.value.is_none(),
        event_time_ms: record.timestamp_ms,
        compacted_out: false,
    }
}

/// The Kafka view of one Pulsar message (the inverse of [`to_pulsar_message`]); `timestamp_ms`
/// is the event time when set, else the publish time, chosen by the caller.
pub fn from_pulsar_message(message: &PulsarMessage, offset_delta: i32) -> Record {
    let key = message.partition_key.as_ref().map(|k| {
        if message.partition_key_b64 {
            base64::decode(k)
                .map(Bytes::from)
                .unwrap_or_else(|| Bytes::from(k.clone()))
        } else {
            Bytes::from(k.clone())
        }
    });
    let marked = |prefix: &str, key: &str| {
        message
            .properties
            .iter()
            .any(|(k, v)| k.strip_prefix(prefix) == Some(key) && v == "true")
    };
    let mut headers = Vec::new();
    for (k, v) in &message.properties {
        if k.starts_with(B64_MARKER) || k.starts_with(NULL_MARKER) {
            continue;
        }
        let value = if marked(NULL_MARKER, k) {
            None
        } else if marked(B64_MARKER, k) {
            Some(
                base64::decode(v)
                    .map(Bytes::from)
                    .unwrap_or_else(|| Bytes::from(v.clone())),
            )
        } else {
            Some(Bytes::from(v.clone()))
        };
        headers.push(Header {
            key: k.clone(),
            value,
        });
    }
    Record {
        offset_delta,
        timestamp_ms: message.event_time_ms,
        key,
        value: (!message.null_value).then(|| message.value.clone()),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_survives_pulsar_and_back() {
        let record = Record {
            offset_delta: 3,
            timestamp_ms: 1234,
            key: Some(Bytes::from_static(&[0x00, 0xff, 0x10])),
            value: None,
            headers: vec![
                Header {
                    key: "text".into(),
                    value: Some(Bytes::from_static(b"hello")),
                },
                Header {
                    key: "bin".into(),
                    value: Some(Bytes::from_static(&[0xc3, 0x28])),
                },
                Header {
                    key: "null".into(),
                    value: None,
                },
                Header {
                    key: "empty".into(),
                    value: Some(Bytes::new()),
                },
            ],
        };
        let batch =
            kafka::decode_batch(&kafka::encode_batch(0, std::slice::from_ref(&record))).unwrap();
        let message = to_pulsar_message(&batch.records[0], &batch);
        assert!(message.partition_key_b64);
        assert!(message.null_value);
        assert_eq!(message.event_time_ms, 1234);
        let back = from_pulsar_message(&message, 3);
        assert_eq!(back, record);
    }

    #[test]
    fn null_key_and_empty_value() {
        let record = Record {
            offset_delta: 0,
            timestamp_ms: 1,
            key: None,
            value: Some(Bytes::new()),
            headers: vec![],
        };
        let batch =
            kafka::decode_batch(&kafka::encode_batch(0, std::slice::from_ref(&record))).unwrap();
        let m = to_pulsar_message(&batch.records[0], &batch);
        assert_eq!(m.partition_key, None);
        assert!(!m.null_value);
        assert_eq!(from_pulsar_message(&m, 0), record);
    }
}
