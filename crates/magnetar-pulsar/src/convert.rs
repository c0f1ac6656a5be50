//! Entries as Pulsar consumers see them: Kafka-format entries converted to a Pulsar batch
//! (through `magnetar-format`), cached per entry so a hot topic is converted once, not once per
//! consumer; and the Key_Shared slot of an entry.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use magnetar_broker::{Entry, TopicPartition};
use prost::Message;

use crate::frame::{make_body, split_body};
use crate::key_shared::{sticky_slot, NONE_KEY};
use crate::proto::{CompressionType, KeyValue, MessageMetadata, SingleMessageMetadata};

/// Converted entries kept, by total bytes.
pub const CACHE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Producer name shown on messages that a Kafka client produced.
pub const KAFKA_PRODUCER_NAME: &str = "kafka";

#[derive(Default)]
struct CacheState {
    entries: HashMap<(TopicPartition, u64), Bytes>,
    order: VecDeque<(TopicPartition, u64)>,
    bytes: usize,
}

/// Pulsar bodies of converted Kafka entries, bounded by bytes (oldest out first).
#[derive(Default)]
pub struct EntryCache {
    state: Mutex<CacheState>,
    bytes_max: usize,
}

impl EntryCache {
    pub fn new(bytes_max: usize) -> Self {
        Self {
            state: Mutex::new(CacheState::default()),
            bytes_max,
        }
    }

    /// The Pulsar body (`[metadata_size][MessageMetadata][payload]`) of a Kafka-format entry.
    pub fn pulsar_body(&self, partition: &TopicPartition, entry: &Entry) -> Result<Bytes, String> {
        let key = (partition.clone(), entry.header.first_index);
        if let Ok(s) = self.state.lock() {
            if let Some(body) = s.entries.get(&key) {
                return Ok(body.clone());
            }
        }
        let body = kafka_entry_to_pulsar(entry)?;
        if let Ok(mut s) = self.state.lock() {
            if body.len() <= self.bytes_max && !s.entries.contains_key(&key) {
                s.bytes += body.len();
                s.entries.insert(key.clone(), body.clone());
                s.order.push_back(key);
                while s.bytes > self.bytes_max {
                    let Some(old) = s.order.pop_front() else {
                        break;
                    };
                    if let Some(b) = s.entries.remove(&old) {
                        s.bytes -= b.len();
                    }
                }
            }
        }
        Ok(body)
    }

    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.entries.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Converts one Kafka record batch into one uncompressed Pulsar batch: key -> partition key
/// (base64 with `partition_key_b64_encoded` when it is not UTF-8; `null_partition_key` for a
/// null key), headers -> properties (values that are not UTF-8 are base64 under a `__b64:`
/// prefixed key, see `magnetar_format::to_pulsar_message`), timestamp -> event time, a null
/// value -> `null_value`.
pub fn kafka_entry_to_pulsar(entry: &Entry) -> Result<Bytes, String> {
    let batch = magnetar_format::kafka::decode_batch(&entry.payload).map_err(|e| e.to_string())?;
    let mut payload = Vec::new();
    for record in &batch.records {
        let message = magnetar_format::to_pulsar_message(record, &batch);
        let single = SingleMessageMetadata {
            properties: message
                .properties
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            partition_key: message.partition_key.clone(),
            payload_size: message.value.len() as i32,
            compacted_out: None,
            event_time: Some(message.event_time_ms.max(0) as u64),
            partition_key_b64_encoded: message.partition_key_b64.then_some(true),
            ordering_key: None,
            sequence_id: None,
            null_value: message.null_value.then_some(true),
            null_partition_key: message.partition_key.is_none().then_some(true),
        };
        let size = single.encoded_len();
        payload.extend_from_slice(&(size as u32).to_be_bytes());
        let _ = single.encode(&mut payload);
        payload.extend_from_slice(&message.value);
    }
    let metadata = MessageMetadata {
        producer_name: KAFKA_PRODUCER_NAME.into(),
        sequence_id: entry.header.first_index,
        publish_time: entry.header.publish_time_ms.max(0) as u64,
        compression: Some(CompressionType::None as i32),
        uncompressed_size: Some(payload.len() as u32),
        num_messages_in_batch: Some(batch.records.len() as i32),
        event_time: Some(batch.max_timestamp_ms.max(0) as u64),
        ..Default::default()
    };
    Ok(make_body(&metadata, &payload))
}

/// The Key_Shared slot of an entry (see [`crate::key_shared`]): the sticky key is the ordering
/// key or partition key of the entry, else of its first message when the batch is uncompressed
/// (a batch goes whole to one consumer), else Pulsar's `NONE_KEY`.
pub fn entry_sticky_slot(body: &Bytes) -> u32 {
    let slot = |ordering: Option<&Vec<u8>>, partition: Option<&String>, b64: bool| {
        if let Some(k) = ordering {
            return Some(sticky_slot(k));
        }
        let k = partition?;
        // A base64-encoded partition key stands for binary key bytes; hash those, as Pulsar does.
        let decoded = if b64 {
            magnetar_format::base64::decode(k)
        } else {
            None
        };
        Some(sticky_slot(decoded.as_deref().unwrap_or(k.as_bytes())))
    };
    let Ok((metadata, payload)) = split_body(body) else {
        return sticky_slot(NONE_KEY);
    };
    if let Some(s) = slot(
        metadata.ordering_key.as_ref(),
        metadata.partition_key.as_ref(),
        metadata.partition_key_b64_encoded(),
    ) {
        return s;
    }
    if metadata.num_messages_in_batch.is_some()
        && metadata.compression() == CompressionType::None
        && payload.len() >= 4
    {
        let size = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
        if size <= payload.len() - 4 {
            if let Ok(single) = SingleMessageMetadata::decode(&payload[4..4 + size]) {
                if let Some(s) = slot(
                    single.ordering_key.as_ref(),
                    single.partition_key.as_ref(),
                    single.partition_key_b64_encoded(),
                ) {
                    return s;
                }
            }
        }
    }
    sticky_slot(NONE_KEY)
}
