//! Kafka records in Confluent's wire format, read by Pulsar consumers: a value written by a
//! Confluent serializer is `[0][schema id: u32 BE][payload]`. When every non-null record of a
//! Kafka entry carries that prefix with one schema id, and that id is a version of the topic's
//! value schema (the Confluent subject `<topic>-value`, the Pulsar topic's schema), the Pulsar
//! consumer gets the records without the 5 bytes and the batch's `schema_version` set to that
//! version, so a typed consumer (Avro, JSON) decodes them as if a Pulsar producer had written
//! them. Anything else (no prefix, mixed ids, an id the topic does not have) is served as
//! converted, bytes unchanged. Pulsar-produced messages read by Kafka consumers are not given a
//! prefix (that would make the Kafka fetch path rewrite batches; see the README's interop notes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use magnetar_broker::TopicName;
use magnetar_schema::{SchemaStore, Subject};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::frame::{make_body, split_body};
use crate::proto::{CompressionType, SingleMessageMetadata};

/// Confluent's magic byte and the length of its prefix.
const MAGIC: u8 = 0;
const PREFIX_BYTES: usize = 5;
/// An unknown id is looked up again at most this often.
const REFRESH_INTERVAL: Duration = Duration::from_millis(500);

/// The topic's value schema ids and their versions, loaded at SUBSCRIBE and looked up again
/// (in the background) when records name an id it does not know.
pub struct SchemaIds {
    topic: TopicName,
    store: Arc<SchemaStore>,
    versions: RwLock<HashMap<u64, u32>>,
    last_refresh: Mutex<Option<Instant>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl SchemaIds {
    pub async fn load(
        store: Arc<SchemaStore>,
        topic: TopicName,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let ids = Arc::new(SchemaIds {
            topic,
            store,
            versions: RwLock::new(HashMap::new()),
            last_refresh: Mutex::new(Some(Instant::now())),
            tasks,
            shutdown,
        });
        ids.refresh().await;
        ids
    }

    async fn refresh(&self) {
        let subject = Subject::topic_value(self.topic.clone());
        match self.store.versions(&subject, false).await {
            Ok(found) => {
                let map = found
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| (v.id, v.version))
                    .collect();
                *self.versions.write().unwrap_or_else(|e| e.into_inner()) = map;
            }
            Err(e) => tracing::debug!(topic = %self.topic, error = %e, "schema ids not loaded"),
        }
    }

    /// The subject version of schema `id`; an unknown id starts a lookup for later entries.
    fn version_of(self: &Arc<Self>, id: u64) -> Option<u32> {
        let known = self
            .versions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied();
        if known.is_none() {
            self.refresh_later();
        }
        known
    }

    fn refresh_later(self: &Arc<Self>) {
        {
            let mut last = self.last_refresh.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < REFRESH_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let ids = self.clone();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = ids.refresh() => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }

    /// Whether the topic has any value schema (nothing to strip otherwise).
    fn is_empty(&self) -> bool {
        self.versions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

/// The body of a converted Kafka entry (`[size][MessageMetadata][batch payload]`, uncompressed)
/// with the Confluent prefix stripped and `schema_version` set, or `None` to serve it as is.
pub fn strip_prefix(body: &Bytes, ids: &Arc<SchemaIds>) -> Option<Bytes> {
    if ids.is_empty() {
        return None;
    }
    let (mut metadata, payload) = split_body(body).ok()?;
    if metadata.compression() != CompressionType::None || metadata.schema_version.is_some() {
        return None;
    }
    let count = metadata.num_messages_in_batch?;
    let mut singles = Vec::with_capacity(count.min(10_000) as usize);
    let mut id = None;
    let mut at = 0usize;
    for _ in 0..count {
        let size = u32::from_be_bytes(payload.get(at..at + 4)?.try_into().ok()?) as usize;
        let single = SingleMessageMetadata::decode(payload.get(at + 4..at + 4 + size)?).ok()?;
        let start = at + 4 + size;
        let len = usize::try_from(single.payload_size).ok()?;
        let value = payload.get(start..start.checked_add(len)?)?;
        at = start + len;
        if single.null_value() {
            singles.push((single, &[][..]));
            continue;
        }
        if value.len() < PREFIX_BYTES || value[0] != MAGIC {
            return None;
        }
        let this = u64::from(u32::from_be_bytes(value[1..PREFIX_BYTES].try_into().ok()?));
        if *id.get_or_insert(this) != this {
            return None;
        }
        singles.push((single, &value[PREFIX_BYTES..]));
    }
    if at != payload.len() {
        return None;
    }
    let version = ids.version_of(id?)?;
    let mut out = BytesMut::with_capacity(payload.len());
    for (mut single, value) in singles {
        single.payload_size = i32::try_from(value.len()).ok()?;
        out.put_u32(single.encoded_len() as u32);
        single.encode(&mut out).ok()?;
        out.put_slice(value);
    }
    metadata.schema_version = Some(crate::commands::schema_version_bytes(version));
    if metadata.uncompressed_size.is_some() {
        metadata.uncompressed_size = Some(out.len() as u32);
    }
    Some(make_body(&metadata, &out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::MessageMetadata;
    use magnetar_broker::{Broker, BrokerConfig, SystemClock};
    use magnetar_schema::{RegisterOptions, Schema, SchemaType};

    fn batch(values: &[Option<&[u8]>]) -> Bytes {
        let mut payload = BytesMut::new();
        for v in values {
            let single = SingleMessageMetadata {
                payload_size: v.map_or(0, |v| v.len() as i32),
                null_value: v.is_none().then_some(true),
                ..Default::default()
            };
            payload.put_u32(single.encoded_len() as u32);
            single.encode(&mut payload).unwrap();
            payload.put_slice(v.unwrap_or_default());
        }
        let metadata = MessageMetadata {
            producer_name: "k".into(),
            num_messages_in_batch: Some(values.len() as i32),
            ..Default::default()
        };
        make_body(&metadata, &payload)
    }

    fn framed(id: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[tokio::test]
    async fn strips_one_known_id_and_leaves_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(
            BrokerConfig::for_data_dir(dir.path().to_path_buf()),
            Arc::new(magnetar_metadata::MemoryStore::new()),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let store = Arc::new(SchemaStore::new(broker.clone(), Default::default()));
        let topic = broker.parse_topic("t").unwrap();
        let tasks = TaskTracker::new();
        let empty = SchemaIds::load(
            store.clone(),
            topic.clone(),
            tasks.clone(),
            CancellationToken::new(),
        )
        .await;
        let body = batch(&[Some(&framed(1, b"abc"))]);
        assert!(strip_prefix(&body, &empty).is_none(), "no schema: as is");
        let registered = store
            .register(
                &Subject::topic_value(topic.clone()),
                &Schema::new(SchemaType::Avro, "\"string\""),
                RegisterOptions::default(),
            )
            .await
            .unwrap();
        let id = registered.id as u32;
        let ids = SchemaIds::load(store, topic, tasks, CancellationToken::new()).await;
        let body = batch(&[Some(&framed(id, b"abc")), None, Some(&framed(id, b""))]);
        let stripped = strip_prefix(&body, &ids).unwrap();
        let (metadata, payload) = split_body(&stripped).unwrap();
        assert_eq!(metadata.schema_version, Some(0i64.to_be_bytes().to_vec()));
        let size = u32::from_be_bytes(payload[..4].try_into().unwrap()) as usize;
        let first = SingleMessageMetadata::decode(&payload[4..4 + size]).unwrap();
        assert_eq!(first.payload_size, 3);
        assert_eq!(&payload[4 + size..4 + size + 3], b"abc");
        // Mixed ids, an unknown id, a record without the prefix, a short record: as they are.
        for values in [
            vec![Some(framed(id, b"a")), Some(framed(id + 1, b"b"))],
            vec![Some(framed(id + 7, b"a"))],
            vec![Some(framed(id, b"a")), Some(b"plain".to_vec())],
            vec![Some(vec![0, 0])],
        ] {
            let values: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_deref()).collect();
            assert!(strip_prefix(&batch(&values), &ids).is_none());
        }
        // Garbage never panics.
        for garbage in [&b""[..], &[0, 0, 0, 9, 1], &[0, 0, 0, 0, 0xff, 0xff]] {
            assert!(strip_prefix(&Bytes::copy_from_slice(garbage), &ids).is_none());
        }
    }
}
