//! Entries as Pulsar consumers see them: Kafka-format entries converted to a Pulsar batch
//! (through `magnetar-format`), cached per entry so a hot topic is converted once, not once per
//! consumer; and the Key_Shared slot of an entry.

use bytes::Bytes;
use magnetar_broker::{Entry, TopicPartition};
use prost::Message;

use magnetar_format::cache::ConversionCache;

use crate::frame::split_body;
use crate::proto::{CompressionType, SingleMessageMetadata};
use magnetar_broker::subscription::key_shared::{sticky_slot, NONE_KEY};

/// Converted entries kept by default, by total bytes (`pulsar.conversion_cache_bytes`).
pub const CACHE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Producer name shown on messages that a Kafka client produced.
pub const KAFKA_PRODUCER_NAME: &str = magnetar_format::KAFKA_PRODUCER_NAME;

/// Pulsar bodies of converted Kafka entries, bounded by bytes (oldest out first).
pub struct EntryCache {
    cache: ConversionCache,
}

impl EntryCache {
    pub fn new(bytes_max: usize) -> Self {
        Self {
            cache: ConversionCache::new(bytes_max),
        }
    }

    /// The Pulsar body (`[metadata_size][MessageMetadata][payload]`) of a Kafka-format entry.
    pub fn pulsar_body(&self, partition: &TopicPartition, entry: &Entry) -> Result<Bytes, String> {
        self.cache
            .get_or_convert(partition, entry, kafka_entry_to_pulsar)
    }

    pub fn len(&self) -> usize {
        self.cache.stats().entries
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Converts one Kafka record batch into one uncompressed Pulsar batch (see
/// `magnetar_format::pulsar::kafka_batch_to_entry` for the mapping); the sequence id is the
/// entry's first message index.
pub fn kafka_entry_to_pulsar(entry: &Entry) -> Result<Bytes, String> {
    magnetar_format::pulsar::kafka_batch_to_entry(
        &entry.payload,
        KAFKA_PRODUCER_NAME,
        entry.header.first_index,
        entry.header.publish_time_ms.max(0) as u64,
    )
    .map_err(|e| e.to_string())
}

/// The Key_Shared slot of an entry (see `magnetar_broker::subscription::key_shared`): the sticky key is the ordering
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
