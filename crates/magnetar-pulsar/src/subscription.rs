//! The Pulsar side of a subscription. The subscription itself (cursor, consumers, dispatch
//! rules, redelivery, resets) is `magnetar_broker::subscription`; this module only translates:
//! [`PulsarCodec`] serves stored entries as Pulsar bodies (Kafka entries converted and cached,
//! the Key_Shared key slot read from the message metadata) and counts those it cannot serve,
//! [`PulsarConsumer`] turns a delivery into a MESSAGE frame (and a Failover change into
//! ACTIVE_CONSUMER_CHANGE) on the consumer's connection.
//!
//! An entry that cannot be served (a Kafka batch the conversion refuses, or an entry an operator
//! marked skipped, see `magnetar_broker::skipped`) is acknowledged and passed by the broker's
//! dispatcher; it is counted in `magnetar_server_unreadable_entries_total{protocol="pulsar"}`
//! and logged with its index (at most one line per subscription every 10 s). An entry corrupt on
//! disk stops the dispatcher at it (retried, counted, logged the same way) until an operator
//! marks it skipped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use magnetar_broker::{
    ConsumerSink, DelayedDelivery, Delivery, DeliveryFuture, Entry, EntryCodec, PayloadFormat,
    PreparedEntry, SubscriptionType, TopicPartition,
};
use magnetar_metrics::ProtocolMetrics;
use tokio::sync::mpsc;

use crate::convert::EntryCache;
use crate::frame;
use crate::message_id::{message_id, unacked_set};
use crate::proto::command_subscribe::SubType;
use crate::proto::{
    base_command::Type, BaseCommand, BrokerEntryMetadata, CommandActiveConsumerChange,
    CommandCloseConsumer, CommandMessage,
};

/// At most one unreadable-entry line per subscription in this interval.
const UNREADABLE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The broker's subscription type of a SUBSCRIBE's `sub_type`.
pub fn subscription_type(sub_type: SubType) -> SubscriptionType {
    match sub_type {
        SubType::Exclusive => SubscriptionType::Exclusive,
        SubType::Shared => SubscriptionType::Shared,
        SubType::Failover => SubscriptionType::Failover,
        SubType::KeyShared => SubscriptionType::KeyShared,
    }
}

/// Serves entries to the Pulsar consumers of one subscription.
pub struct PulsarCodec {
    partition: TopicPartition,
    subscription: String,
    cache: Arc<EntryCache>,
    metrics: Arc<ProtocolMetrics>,
    /// Delayed delivery (`deliver_at_time`) for Shared and Key_Shared consumers; off when
    /// `None`.
    delayed: Option<DelayedDelivery>,
    /// When an unreadable entry was last logged, and how many were not logged since.
    unreadable_log: Mutex<(Option<tokio::time::Instant>, u64)>,
    /// The topic's value schema ids: Kafka records in Confluent's wire format are served
    /// without their prefix, with the schema version (see [`crate::confluent`]).
    schema_ids: Option<Arc<crate::confluent::SchemaIds>>,
}

impl PulsarCodec {
    pub fn new(
        partition: TopicPartition,
        subscription: String,
        cache: Arc<EntryCache>,
        metrics: Arc<ProtocolMetrics>,
    ) -> Self {
        Self {
            partition,
            subscription,
            cache,
            metrics,
            delayed: None,
            unreadable_log: Mutex::new((None, 0)),
            schema_ids: None,
        }
    }

    /// Serves Confluent-framed Kafka records as typed Pulsar messages of the topic's schema.
    pub fn with_schema_ids(mut self, ids: Arc<crate::confluent::SchemaIds>) -> Self {
        self.schema_ids = Some(ids);
        self
    }

    /// Turns delayed delivery on (Pulsar's `delayedDeliveryEnabled`).
    pub fn with_delayed_delivery(mut self, delayed: DelayedDelivery) -> Self {
        self.delayed = Some(delayed);
        self
    }
}

impl EntryCodec for PulsarCodec {
    fn prepare(&self, entry: &Entry, key_slot: bool) -> Result<PreparedEntry, String> {
        let body = match entry.header.format {
            PayloadFormat::Pulsar => entry.payload.clone(),
            PayloadFormat::Kafka => {
                let converted = self.cache.pulsar_body(&self.partition, entry)?;
                match &self.schema_ids {
                    Some(ids) => {
                        crate::confluent::strip_prefix(&converted, ids).unwrap_or(converted)
                    }
                    None => converted,
                }
            }
        };
        let key_slot = if key_slot {
            crate::convert::entry_sticky_slot(&body)
        } else {
            0
        };
        Ok(PreparedEntry { body, key_slot })
    }

    fn delayed_delivery(&self) -> Option<DelayedDelivery> {
        self.delayed
    }

    /// The entry's `deliver_at_time` (a batch is delayed as a whole, by its metadata); entries
    /// written by Kafka producers have none.
    fn deliver_at_ms(&self, entry: &Entry, prepared: &PreparedEntry) -> Option<i64> {
        if entry.header.format != PayloadFormat::Pulsar {
            return None;
        }
        crate::frame::split_body(&prepared.body)
            .ok()?
            .0
            .deliver_at_time
    }

    /// Pulsar-format batches compaction rewrote mark removed messages `compacted_out`; the
    /// official Java client skips those, the C++ one (and so Python) only skips what `ack_set`
    /// says is acknowledged.
    fn hidden_positions(&self, entry: &Entry, prepared: &PreparedEntry) -> Vec<u32> {
        if entry.header.format != PayloadFormat::Pulsar {
            return Vec::new();
        }
        magnetar_format::pulsar::compacted_out_positions(&prepared.body).unwrap_or_default()
    }

    fn unreadable(&self, index: u64, error: &str) {
        self.metrics.record_unreadable_entry();
        let now = tokio::time::Instant::now();
        let mut log = self
            .unreadable_log
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if log
            .0
            .is_some_and(|last| now.saturating_duration_since(last) < UNREADABLE_LOG_INTERVAL)
        {
            log.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut log.1);
        log.0 = Some(now);
        drop(log);
        tracing::warn!(
            subscription = %self.subscription,
            partition = %self.partition,
            index,
            error,
            suppressed,
            "stored entry cannot be served to pulsar consumers (a conversion failure is acknowledged and passed; a corrupt entry stops the dispatcher until an operator marks it skipped: PUT /admin/v2/persistent/{{tenant}}/{{namespace}}/{{topic}}/skippedEntries/{{index}})"
        );
    }
}

/// One Pulsar consumer: where its MESSAGE frames go.
pub struct PulsarConsumer {
    pub consumer_id: u64,
    /// The partition number in message ids (`-1` for a non-partitioned topic).
    pub id_partition: i32,
    pub tx: mpsc::Sender<Bytes>,
    /// Whether the connection asked for broker entry metadata on messages.
    pub broker_entry_metadata: bool,
}

impl ConsumerSink for PulsarConsumer {
    fn deliver(&self, delivery: Delivery) -> DeliveryFuture {
        let header = &delivery.header;
        let first = header.first_index;
        let count = header.message_count.max(1);
        let ack_set = if delivery.acked_positions.is_empty() {
            Vec::new()
        } else {
            unacked_set(count, |i| {
                delivery.acked_positions.binary_search(&i).is_ok()
            })
        };
        let command = BaseCommand {
            r#type: Type::Message as i32,
            message: Some(CommandMessage {
                consumer_id: self.consumer_id,
                message_id: message_id(self.id_partition, first, None),
                redelivery_count: Some(delivery.redelivery_count),
                ack_set,
                consumer_epoch: None,
            }),
            ..Default::default()
        };
        let bem = self.broker_entry_metadata.then(|| BrokerEntryMetadata {
            broker_timestamp: Some(header.publish_time_ms.max(0) as u64),
            index: Some(header.end_index().saturating_sub(1)),
        });
        let frame = frame::encode_with_payload(&command, bem.as_ref(), &delivery.body);
        let tx = self.tx.clone();
        Box::pin(async move {
            // A closed connection drops the frame; its consumer's removal redelivers the entry.
            let _ = tx.send(frame).await;
        })
    }

    fn active_changed(&self, active: bool) {
        let frame = frame::encode(&BaseCommand {
            r#type: Type::ActiveConsumerChange as i32,
            active_consumer_change: Some(CommandActiveConsumerChange {
                consumer_id: self.consumer_id,
                is_active: Some(active),
            }),
            ..Default::default()
        });
        // Advisory: skipped for a consumer whose queue is full.
        let _ = self.tx.try_send(frame);
    }

    fn closed(&self) -> DeliveryFuture {
        let frame = frame::encode(&BaseCommand {
            r#type: Type::CloseConsumer as i32,
            close_consumer: Some(CommandCloseConsumer {
                consumer_id: self.consumer_id,
                request_id: 0,
                ..Default::default()
            }),
            ..Default::default()
        });
        let tx = self.tx.clone();
        Box::pin(async move {
            let _ = tx.send(frame).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::make_body;
    use crate::proto::MessageMetadata;
    use magnetar_broker::{EntryHeader, NamespaceName, TopicName};

    fn entry(format: PayloadFormat, payload: Bytes) -> Entry {
        Entry {
            header: EntryHeader {
                first_index: 0,
                message_count: 1,
                publish_time_ms: 0,
                max_timestamp_ms: 0,
                format,
                producer: None,
                payload_len: payload.len() as u32,
            },
            payload,
        }
    }

    #[test]
    fn deliver_at_is_read_from_pulsar_metadata_only() {
        let partition = TopicPartition {
            topic: TopicName::parse(
                "persistent://public/default/t",
                &NamespaceName::new("public", "default").unwrap(),
            )
            .unwrap(),
            partition: 0,
        };
        let codec = PulsarCodec::new(
            partition,
            "s".into(),
            Arc::new(EntryCache::new(0)),
            crate::metrics::protocol_metrics(),
        );
        assert_eq!(codec.delayed_delivery(), None);
        let delayed = DelayedDelivery {
            tick_ms: 1000,
            tracked_max: 10,
        };
        let codec = codec.with_delayed_delivery(delayed);
        assert_eq!(codec.delayed_delivery(), Some(delayed));
        let metadata = |deliver_at_time| MessageMetadata {
            producer_name: "p".into(),
            sequence_id: 0,
            publish_time: 1,
            deliver_at_time,
            ..Default::default()
        };
        let held = entry(
            PayloadFormat::Pulsar,
            make_body(&metadata(Some(1_234)), b"x"),
        );
        let prepared = codec.prepare(&held, false).unwrap();
        assert_eq!(codec.deliver_at_ms(&held, &prepared), Some(1_234));
        let plain = entry(PayloadFormat::Pulsar, make_body(&metadata(None), b"x"));
        let prepared = codec.prepare(&plain, false).unwrap();
        assert_eq!(codec.deliver_at_ms(&plain, &prepared), None);
        // Not Pulsar metadata (a Kafka entry's own bytes, or garbage): never delayed.
        let odd = entry(PayloadFormat::Pulsar, Bytes::from_static(b"\xff\xff"));
        let prepared = PreparedEntry {
            body: odd.payload.clone(),
            key_slot: 0,
        };
        assert_eq!(codec.deliver_at_ms(&odd, &prepared), None);
        let kafka = entry(PayloadFormat::Kafka, held.payload.clone());
        assert_eq!(codec.deliver_at_ms(&kafka, &prepared), None);
    }
}
