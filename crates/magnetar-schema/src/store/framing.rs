//! Pulsar -> Kafka: the Confluent id of a topic's Pulsar schema version, so Pulsar records
//! reach Kafka consumers framed for Confluent's deserializers (magic 0 + 4-byte id). The
//! broker's [`SchemaFraming`] seam lets the Kafka front end ask without depending on this crate.

use std::sync::{Arc, Weak};

use magnetar_broker::{SchemaFraming, TopicName};
use serde_json::Value;

use super::{SchemaStore, Subject, VersionSelector};
use crate::types::SchemaType;

/// Cached (topic, version) answers kept at most; the cache is emptied when it is full.
const FRAMING_IDS_MAX: usize = 10_000;

impl SchemaStore {
    /// The id to frame records of Pulsar schema version `schema_version` (8 bytes big-endian)
    /// of `topic` with: the id of that version of the topic's value schema when Confluent's
    /// deserializers read it as Pulsar writes it, that is an Avro schema (Avro binary either
    /// way) or a JSON Schema registered through Confluent (JSON text either way). Pulsar's own
    /// JSON schemas are Avro records describing the JSON, which Confluent's JSON deserializer
    /// cannot use, so those records stay unframed, as do other types and unknown versions.
    pub async fn confluent_framing_id(
        &self,
        topic: &TopicName,
        schema_version: &[u8],
    ) -> Option<u32> {
        let bytes: [u8; 8] = schema_version.try_into().ok()?;
        let pulsar = i64::from_be_bytes(bytes);
        let key = (topic.clone(), pulsar);
        if let Some(known) = self
            .framing_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return *known;
        }
        let version = crate::from_pulsar_version(pulsar)?;
        let found = self
            .version(
                &Subject::topic_value(topic.clone()),
                VersionSelector::Number(version),
                true,
            )
            .await;
        let id = match found {
            Ok(Some(v)) if frames(v.schema.kind, &v.schema.data) => u32::try_from(v.id).ok(),
            Ok(_) => None,
            // A store failure is not remembered: the next fetch asks again.
            Err(e) => {
                tracing::warn!(topic = %topic, error = %e, "schema id of a Pulsar schema version not read; records served unframed");
                return None;
            }
        };
        let mut cache = self.framing_ids.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= FRAMING_IDS_MAX {
            cache.clear();
        }
        cache.insert(key, id);
        id
    }

    pub(super) fn forget_framing_ids(&self) {
        self.framing_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

fn frames(kind: SchemaType, data: &[u8]) -> bool {
    match kind {
        SchemaType::Avro => true,
        SchemaType::Json => serde_json::from_slice::<Value>(data)
            .map(|v| v.get("type").and_then(Value::as_str) != Some("record"))
            .unwrap_or(false),
        _ => false,
    }
}

/// The store as the broker's [`SchemaFraming`], held weakly: the store holds the broker, so
/// the broker must not keep the store alive.
struct Framing(Weak<SchemaStore>);

#[async_trait::async_trait]
impl SchemaFraming for Framing {
    async fn confluent_id(&self, topic: &TopicName, schema_version: &[u8]) -> Option<u32> {
        let store = self.0.upgrade()?;
        store.confluent_framing_id(topic, schema_version).await
    }
}

impl SchemaStore {
    /// What [`magnetar_broker::Broker::set_schema_framing`] takes.
    pub fn framing(self: &Arc<Self>) -> Arc<dyn SchemaFraming> {
        Arc::new(Framing(Arc::downgrade(self)))
    }
}
