//! Produce v3–v11, record batch v2 only. Each batch is stored as one entry with its exact bytes
//! (any compression, never decompressed); only the 61-byte header is read and its CRC verified.
//! The broker writes the assigned base offset into the stored batch (`first_index_at: Some(0)`).
//! acks=0 gets no response; acks=1 and acks=-1 both answer once the entry is durable under the
//! ledger's fsync policy (there are no replicas to wait for).

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use magnetar_broker::{
    AppendRequest, Error, PayloadFormat, ProducerBatch, TopicMetadata, TopicName, TopicPartition,
};

use super::Context;
use crate::batch::{self, BatchError};
use crate::frame::RequestHeader;
use crate::{error_code, topic_config};

pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    request: ProduceRequest,
) -> Option<ProduceResponse> {
    let client_id = header.client_id.as_deref().unwrap_or("");
    let transactional = request
        .transactional_id
        .as_ref()
        .is_some_and(|id| !id.is_empty());
    let mut response = ProduceResponse::default();
    // The longest publish-rate wait of any partition (the namespace's publish rate).
    let mut throttle = std::time::Duration::ZERO;
    for topic in request.topic_data {
        let mut topic_response = TopicProduceResponse::default().with_name(topic.name.clone());
        let resolved = resolve(ctx, &topic.name.0).await;
        for partition in topic.partition_data {
            let mut result = PartitionProduceResponse::default().with_index(partition.index);
            result.base_offset = -1;
            result.log_append_time_ms = -1;
            result.log_start_offset = -1;
            let outcome = match (&resolved, transactional) {
                (_, true) => Err(ResponseError::TransactionalIdAuthorizationFailed.code()),
                (Err(e), _) => Err(*e),
                (Ok((name, metadata)), false) => {
                    produce_partition(
                        ctx,
                        client_id,
                        name,
                        metadata,
                        partition.index,
                        partition.records,
                    )
                    .await
                }
            };
            match outcome {
                Ok((base_offset, log_start_offset, wait)) => {
                    throttle = throttle.max(wait);
                    result.base_offset = base_offset;
                    result.log_start_offset = log_start_offset;
                }
                Err(code) => result.error_code = code,
            }
            topic_response.partition_responses.push(result);
        }
        response.responses.push(topic_response);
    }
    if transactional {
        tracing::warn!(
            client_id,
            "transactional produce refused: transactions are not implemented yet"
        );
    }
    if !throttle.is_zero() {
        // Kafka's quota behaviour: the response says how long it was held, and is held that
        // long; one request at a time per connection, so the producer pauses too.
        response.throttle_time_ms = i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX);
        tracing::debug!(
            client_id,
            throttle_ms = response.throttle_time_ms,
            "produce throttled by the publish rate"
        );
        tokio::time::sleep(throttle).await;
    }
    (request.acks != 0).then_some(response)
}

async fn resolve(ctx: &Context, shown: &StrBytes) -> Result<(TopicName, TopicMetadata), i16> {
    let name = ctx.parse_topic(shown).map_err(|e| {
        tracing::info!(topic = %shown, error = %e, "produce to an invalid topic name");
        error_code::code(&e)
    })?;
    match ctx.broker.topic_or_create(&name).await {
        Ok(metadata) => Ok((name, metadata)),
        Err(e) => {
            if matches!(e, Error::NamespaceNotFound(_) | Error::TenantNotFound(_)) {
                tracing::warn!(topic = %shown, error = %e, "produce to a topic in a namespace that does not exist");
            }
            Err(error_code::code(&e))
        }
    }
}

/// Appends every batch of one partition; returns (base offset of the first, log start offset,
/// publish-rate wait).
async fn produce_partition(
    ctx: &Context,
    client_id: &str,
    name: &TopicName,
    metadata: &TopicMetadata,
    partition: i32,
    records: Option<Bytes>,
) -> Result<(i64, i64, std::time::Duration), i16> {
    let Ok(index) = u32::try_from(partition) else {
        return Err(ResponseError::UnknownTopicOrPartition.code());
    };
    let tp = TopicPartition {
        topic: name.clone(),
        partition: index,
    };
    let log = ctx
        .broker
        .partition(&tp)
        .await
        .map_err(|e| error_code::code(&e))?;
    let records = records.unwrap_or_default();
    let batches = batch::split(&records).map_err(|e| match e {
        BatchError::UnsupportedMagic(magic) => {
            tracing::warn!(client_id, topic = %tp, magic, "refusing record batch of an old format (only magic 2 is supported); upgrade the client");
            ResponseError::UnsupportedVersion.code()
        }
        BatchError::CrcMismatch { .. } => {
            tracing::warn!(client_id, topic = %tp, error = %e, "refusing corrupt record batch");
            ResponseError::CorruptMessage.code()
        }
        other => {
            tracing::warn!(client_id, topic = %tp, error = %other, "refusing malformed record batch");
            ResponseError::CorruptMessage.code()
        }
    })?;
    if batches.is_empty() {
        return Err(ResponseError::InvalidRecord.code());
    }
    let size_max = topic_config::max_message_bytes(ctx, metadata);
    if let Some((_, too_big)) = batches.iter().find(|(_, bytes)| bytes.len() > size_max) {
        tracing::debug!(client_id, topic = %tp, size = too_big.len(), size_max, "record batch too large");
        return Err(ResponseError::MessageTooLarge.code());
    }
    let mut first = None;
    let mut log_start = 0;
    let mut wait = std::time::Duration::ZERO;
    for (header, bytes) in batches {
        wait = wait.max(log.publish_delay(
            u64::try_from(header.record_count).unwrap_or(0),
            bytes.len() as u64,
        ));
        let producer = (header.producer_id >= 0).then_some(ProducerBatch {
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            first_sequence: header.base_sequence,
            message_count: header.record_count as u32,
        });
        let outcome = log
            .append(AppendRequest {
                payload: bytes,
                message_count: header.record_count as u32,
                max_timestamp_ms: header.max_timestamp,
                format: PayloadFormat::Kafka,
                producer,
                first_index_at: Some(0),
            })
            .await
            .map_err(|e| {
                match &e {
                    Error::OutOfOrderSequence { .. } | Error::InvalidProducerEpoch { .. } => {
                        tracing::info!(client_id, topic = %tp, error = %e, "produce refused")
                    }
                    _ => tracing::warn!(client_id, topic = %tp, error = %e, "append failed"),
                }
                error_code::code(&e)
            })?;
        first.get_or_insert(outcome.first_index);
        log_start = outcome.log_start_index;
    }
    let base = first.unwrap_or_default();
    Ok((base as i64, log_start as i64, wait))
}
