//! Produce v3–v11, record batch v2 only. Each batch is stored as one entry with its exact bytes
//! (any compression, never re-compressed), after [`crate::validate`] checked its header, CRC and
//! every record (compressed ones through a capped streaming decoder); a refusal answers Kafka's
//! error with KIP-467's `error_message` and `record_errors`, and nothing of the partition's
//! batches is appended.
//! The broker writes the assigned base offset into the stored batch (`first_index_at: Some(0)`).
//! acks=0 gets no response (the dispatcher drops it); acks=1 and acks=-1 both answer once the
//! entry is durable under the ledger's fsync policy (there are no replicas to wait for).
//!
//! Two phases, so a request for N partitions waits for one group-commit round, not N in a row:
//! [`enqueue`] validates and enqueues every batch of every partition (sequence checks and index
//! assignment happen there, in the order of the request), then [`PendingProduce::respond`]
//! waits for all of them together. **Ordering point** for the pipelined connection: [`handle`]
//! calls [`crate::connection::produce_ordering_point`] between the two (for acks≠0), so the
//! connection's next request starts while this one waits for its fsync; an acks=0 Produce passes
//! its ordering point only once durable, so a request after it on the connection sees its data.

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use magnetar_broker::{
    Access, AppendRequest, Appending, Error, PayloadFormat, ProducerBatch, TopicMetadata,
    TopicName, TopicPartition, TxnMark,
};

use super::{Context, Envelope};
use crate::batch::{self, BatchError};
use crate::frame::RequestHeader;
use crate::validate::{self, Refusal};
use crate::EntryFormat;
use crate::{error_code, topic_config};

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: ProduceRequest,
) -> ProduceResponse {
    let header = envelope.header;
    let pending = enqueue(ctx, header, request).await;
    if pending.acks != 0 {
        // Indexes are assigned: the connection's next request may start while this one waits.
        crate::connection::produce_ordering_point();
    }
    pending.respond().await
}

/// A Produce whose batches are all enqueued (indexes assigned); [`PendingProduce::respond`]
/// waits for their durability and builds the response. Owns everything it needs (`'static`), so
/// a connection may run it while it reads the next request.
#[must_use = "a produce is answered by `respond`"]
pub struct PendingProduce {
    client_id: String,
    acks: i16,
    response: ProduceResponse,
    /// Per (topic, partition) slot of `response`, the enqueued batches to wait for.
    appends: Vec<PartitionAppends>,
    /// The longest publish-rate wait of any partition (the namespace's publish rate).
    throttle: std::time::Duration,
}

/// The transactional id of a Produce and the coordinator that verifies its batches.
struct TxnProduce {
    id: String,
    coordinator: std::sync::Arc<magnetar_coordinator::TransactionCoordinator>,
}

/// The enqueued batches of one partition of a Produce.
struct PartitionAppends {
    topic_slot: usize,
    partition_slot: usize,
    tp: TopicPartition,
    batches: Vec<Appending>,
    /// The append time stamped on the batches of a LogAppendTime topic (answered in
    /// `log_append_time_ms`), else -1.
    log_append_time_ms: i64,
}

/// Phase one of a Produce: resolves every topic, validates every partition's batches and
/// enqueues them (sequence checks and index assignment, in the order of the request). Returns
/// without waiting for durability.
pub async fn enqueue(
    ctx: &Context,
    header: &RequestHeader,
    request: ProduceRequest,
) -> PendingProduce {
    let client_id = header.client_id.as_deref().unwrap_or("");
    let transactional_id = request
        .transactional_id
        .as_ref()
        .filter(|id| !id.is_empty())
        .map(|id| id.0.to_string());
    // A transactional produce: the id must be authorized (Kafka's TRANSACTIONAL_ID WRITE) and
    // the coordinator running; each transactional batch is then verified against the id's open
    // transaction (KIP-890, in-process).
    let txn: Result<Option<TxnProduce>, i16> = match &transactional_id {
        None => Ok(None),
        Some(id) => match ctx.authorize_transactional_id(id).await {
            Err(code) => Err(code),
            Ok(()) => match ctx.coordinator.transactions().await {
                Ok(coordinator) => Ok(Some(TxnProduce {
                    id: id.clone(),
                    coordinator,
                })),
                Err(e) => Err(error_code::coordinator_error(e).code()),
            },
        },
    };
    let mut response = ProduceResponse::default();
    let mut appends = Vec::new();
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
            let outcome = match (&resolved, &txn) {
                (_, Err(code)) => Err((*code).into()),
                (Err(e), _) => Err((*e).into()),
                (Ok((name, metadata)), Ok(txn)) => {
                    produce_partition(
                        ctx,
                        client_id,
                        name,
                        metadata,
                        partition.index,
                        partition.records,
                        txn.as_ref(),
                    )
                    .await
                }
            };
            match outcome {
                Ok(Enqueued {
                    tp,
                    batches,
                    wait,
                    log_append_time_ms,
                }) => {
                    throttle = throttle.max(wait);
                    appends.push(PartitionAppends {
                        topic_slot: response.responses.len(),
                        partition_slot: topic_response.partition_responses.len(),
                        tp,
                        batches,
                        log_append_time_ms,
                    });
                }
                Err(refused) => {
                    result.error_code = refused.code;
                    if let Some(refusal) = refused.refusal {
                        // KIP-467: the message, and the record to blame when there is one.
                        result.error_message = Some(StrBytes::from_string(refusal.to_string()));
                        // Encoded from Produce v8 (the codec leaves them out below).
                        result.record_errors = refusal
                            .record_errors()
                            .into_iter()
                            .map(|(index, message)| {
                                BatchIndexAndErrorMessage::default()
                                    .with_batch_index(index)
                                    .with_batch_index_error_message(Some(StrBytes::from_string(
                                        message,
                                    )))
                            })
                            .collect();
                    }
                }
            }
            topic_response.partition_responses.push(result);
        }
        response.responses.push(topic_response);
    }
    PendingProduce {
        client_id: client_id.to_string(),
        acks: request.acks,
        response,
        appends,
        throttle,
    }
}

impl PendingProduce {
    /// Phase two: waits until every enqueued batch is durable (all partitions together: they
    /// were all queued before the first wait, so their ledgers' writers run concurrently and
    /// each flushes them in one round), fills in offsets or errors, and holds the response for
    /// the publish-rate throttle. Built for acks=0 too; the dispatcher does not send it.
    pub async fn respond(self) -> ProduceResponse {
        let PendingProduce {
            client_id,
            acks: _,
            mut response,
            appends,
            throttle,
        } = self;
        for partition in appends {
            let outcome = durable(&client_id, &partition.tp, partition.batches).await;
            let Some(result) = response
                .responses
                .get_mut(partition.topic_slot)
                .and_then(|t| t.partition_responses.get_mut(partition.partition_slot))
            else {
                continue;
            };
            match outcome {
                Ok((base_offset, log_start_offset)) => {
                    result.base_offset = base_offset;
                    result.log_start_offset = log_start_offset;
                    result.log_append_time_ms = partition.log_append_time_ms;
                }
                Err(code) => result.error_code = code,
            }
        }
        if !throttle.is_zero() {
            // Kafka's quota behaviour: the response says how long it was held, and is held that
            // long; the connection's next Produce waits behind it, so the producer pauses too.
            response.throttle_time_ms = i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX);
            tracing::debug!(
                client_id,
                throttle_ms = response.throttle_time_ms,
                "produce throttled by the publish rate"
            );
            tokio::time::sleep(throttle).await;
        }
        response
    }
}

/// Waits for one partition's enqueued batches; returns (base offset of the first, log start
/// offset).
async fn durable(
    client_id: &str,
    tp: &TopicPartition,
    batches: Vec<Appending>,
) -> Result<(i64, i64), i16> {
    let mut first = None;
    let mut log_start = 0;
    for appending in batches {
        let outcome = appending.durable().await.map_err(|e| {
            tracing::warn!(client_id, topic = %tp, error = %e, "append failed");
            error_code::code(&e)
        })?;
        first.get_or_insert(outcome.first_index);
        log_start = outcome.log_start_index;
    }
    let base = first.unwrap_or_default();
    Ok((base as i64, log_start as i64))
}

async fn resolve(ctx: &Context, shown: &StrBytes) -> Result<(TopicName, TopicMetadata), i16> {
    let name = ctx.parse_writable_topic(shown).map_err(|e| {
        tracing::info!(topic = %shown, error = %e, "produce to an invalid topic name");
        error_code::code(&e)
    })?;
    // Before the topic is looked up or created: a refusal says nothing about its existence.
    ctx.authorize(&name, &Access::Produce).await?;
    match ctx.broker.topic_or_create(&name).await {
        Ok(metadata) => Ok((name, metadata)),
        Err(e) => {
            if matches!(
                e,
                Error::NamespaceNotFound { .. } | Error::TenantNotFound { .. }
            ) {
                tracing::warn!(topic = %shown, error = %e, "produce to a topic in a namespace that does not exist");
            }
            Err(error_code::code(&e))
        }
    }
}

/// A batch in the storage format `entryFormat` asks for: the payload, its format tag, and where
/// the assigned base offset is written into it.
type StoredForm = (Bytes, PayloadFormat, Option<usize>);

fn stored_form(
    ctx: &Context,
    header: &batch::BatchHeader,
    bytes: Bytes,
) -> Result<StoredForm, magnetar_format::kafka::FormatError> {
    // Control batches (transaction markers) have no Pulsar form, and transactional batches keep
    // theirs so read_committed readers see their producer id and transactional bit: both stay
    // Kafka batches.
    let control = header.attributes & 0x30 != 0;
    match ctx.config.entry_format {
        EntryFormat::Kafka => Ok((bytes, PayloadFormat::Kafka, Some(0))),
        EntryFormat::Pulsar if !control => {
            let body = magnetar_format::pulsar::kafka_batch_to_entry(
                &bytes,
                magnetar_format::KAFKA_PRODUCER_NAME,
                header.base_sequence.max(0) as u64,
                ctx.broker.clock().now_ms().max(0) as u64,
            )?;
            Ok((body, PayloadFormat::Pulsar, None))
        }
        EntryFormat::Pulsar => Ok((bytes, PayloadFormat::Kafka, Some(0))),
        EntryFormat::MixedKafka if control => Ok((bytes, PayloadFormat::Kafka, Some(0))),
        EntryFormat::MixedKafka => Ok((
            normalize_batch(bytes, header.record_count)?,
            PayloadFormat::Kafka,
            Some(0),
        )),
    }
}

/// `mixed_kafka`: a batch whose record offset deltas are `0..n` and agree with its header is kept
/// byte-exact; otherwise it is re-encoded (uncompressed) with canonical deltas, so its offsets are
/// continuous whatever the client wrote.
fn normalize_batch(
    bytes: Bytes,
    record_count: i32,
) -> Result<Bytes, magnetar_format::kafka::FormatError> {
    let decoded = magnetar_format::kafka::decode_batch(&bytes)?;
    let n = decoded.records.len();
    if n as i64 != i64::from(record_count) {
        return Err(magnetar_format::kafka::FormatError(format!(
            "batch says {record_count} records and holds {n}"
        )));
    }
    let canonical = decoded.last_offset_delta as i64 == n as i64 - 1
        && decoded
            .records
            .iter()
            .enumerate()
            .all(|(i, r)| r.offset_delta as i64 == i as i64);
    if canonical {
        return Ok(bytes);
    }
    Ok(magnetar_format::kafka::encode_batch(0, &decoded.records))
}

/// One partition's batches, validated and enqueued.
struct Enqueued {
    tp: TopicPartition,
    /// In the order of the request.
    batches: Vec<Appending>,
    /// The publish-rate wait.
    wait: std::time::Duration,
    /// The append time of a LogAppendTime topic, else -1.
    log_append_time_ms: i64,
}

/// Validates and enqueues every batch of one partition.
async fn produce_partition(
    ctx: &Context,
    client_id: &str,
    name: &TopicName,
    metadata: &TopicMetadata,
    partition: i32,
    records: Option<Bytes>,
    txn: Option<&TxnProduce>,
) -> Result<Enqueued, Refused> {
    let Ok(index) = u32::try_from(partition) else {
        return Err(ResponseError::UnknownTopicOrPartition.code().into());
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
    let mut batches = batch::split(&records).map_err(|e| match e {
        BatchError::UnsupportedMagic(magic) => {
            tracing::warn!(client_id, topic = %tp, magic, "refusing record batch of an old format (only magic 2 is supported); upgrade the client");
            // INVALID_RECORD with the reason, as Kafka answers magic 0/1 in Produce v3+.
            Refused::from(Refusal::UnsupportedMagic(magic))
        }
        BatchError::CrcMismatch { .. } => {
            tracing::warn!(client_id, topic = %tp, error = %e, "refusing corrupt record batch");
            ResponseError::CorruptMessage.code().into()
        }
        other => {
            tracing::warn!(client_id, topic = %tp, error = %other, "refusing malformed record batch");
            ResponseError::CorruptMessage.code().into()
        }
    })?;
    if batches.is_empty() {
        return Err(ResponseError::InvalidRecord.code().into());
    }
    for (header, _) in &batches {
        if !header.is_transactional() {
            continue;
        }
        // Kafka: transactional records need an authorized transactional id on the request.
        let Some(txn) = txn else {
            tracing::warn!(client_id, topic = %tp, "transactional record batch without a transactional id");
            return Err(ResponseError::TransactionalIdAuthorizationFailed
                .code()
                .into());
        };
        if let Err(e) = txn
            .coordinator
            .verify(&txn.id, (header.producer_id, header.producer_epoch), &tp)
            .await
        {
            tracing::debug!(client_id, topic = %tp, transactional_id = %txn.id, error = %e, "transactional batch refused");
            return Err(super::transactions::refusal(e).into());
        }
    }
    let size_max = topic_config::max_message_bytes(ctx, metadata);
    if let Some((_, too_big)) = batches.iter().find(|(_, bytes)| bytes.len() > size_max) {
        tracing::debug!(client_id, topic = %tp, size = too_big.len(), size_max, "record batch too large");
        return Err(ResponseError::MessageTooLarge.code().into());
    }
    // Every batch is validated before any is appended (see `validate`); the time index gets
    // the records' max timestamp, not the header's claim.
    let now_ms = ctx.broker.clock().now_ms();
    let timestamps = topic_config::timestamp_policy(&metadata.configs);
    let compression = topic_config::compression(&metadata.configs);
    let limits = validate::Limits {
        decompressed_bytes_max: ctx.config.validation_decompressed_bytes_max,
        now_ms,
        offset_deltas_rewritten: ctx.config.entry_format != EntryFormat::Kafka,
        log_append_time: timestamps.log_append_time,
        timestamp_before_max_ms: timestamps.before_max_ms,
        timestamp_after_max_ms: timestamps.after_max_ms,
        // `cleanup.policy` includes `compact` (the topic's, else its namespace's default):
        // every record needs a key, as Kafka's log validator requires.
        key_required: magnetar_broker::compaction::is_compacted(metadata),
    };
    for (header, bytes) in &mut batches {
        let validated = if header.compression() == 0 {
            validate::validate_batch(bytes, &limits)
        } else {
            // Decompressing may cost up to the cap's worth of CPU (a bomb): off the runtime.
            let batch = bytes.clone();
            match tokio::task::spawn_blocking(move || validate::validate_batch(&batch, &limits))
                .await
            {
                Ok(result) => result,
                Err(e) => {
                    tracing::error!(client_id, topic = %tp, error = %e, "record batch validation task failed");
                    return Err(ResponseError::UnknownServerError.code().into());
                }
            }
        };
        let validated = validated.map_err(|refusal| {
            tracing::warn!(client_id, topic = %tp, error = %refusal, "refusing record batch");
            Refused::from(refusal)
        })?;
        header.max_timestamp = validated.max_timestamp_ms;
        // `compression.type` other than `producer`: written again in the topic's codec.
        if let Some((codec, levels)) = compression.filter(|(c, _)| *c != header.compression()) {
            let batch = std::mem::take(bytes);
            let recompressed =
                tokio::task::spawn_blocking(move || batch::recompress(batch, codec, levels))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
            match recompressed {
                Ok(out) => {
                    *bytes = out;
                    header.attributes = (header.attributes & !0x07) | codec;
                }
                Err(e) => {
                    tracing::warn!(client_id, topic = %tp, error = %e, "cannot recompress record batch");
                    return Err(ResponseError::CorruptMessage.code().into());
                }
            }
        }
        if timestamps.log_append_time {
            *bytes = batch::stamp_log_append_time(std::mem::take(bytes), now_ms);
            header.max_timestamp = now_ms;
            header.attributes |= 0x08;
        }
    }
    let mut enqueued = Vec::with_capacity(batches.len());
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
            txn: if header.is_transactional() {
                TxnMark::Data
            } else {
                TxnMark::None
            },
        });
        let (payload, format, first_index_at) =
            stored_form(ctx, &header, bytes).map_err(|e| {
                tracing::warn!(client_id, topic = %tp, error = %e, "cannot store record batch in the configured entry format");
                ResponseError::CorruptMessage.code()
            })?;
        let appending = log
            .enqueue(AppendRequest {
                payload,
                message_count: header.record_count as u32,
                max_timestamp_ms: header.max_timestamp,
                format,
                producer,
                first_index_at,
            })
            .map_err(|e| {
                match &e {
                    Error::OutOfOrderSequence { .. } | Error::InvalidProducerEpoch { .. } => {
                        tracing::info!(client_id, topic = %tp, error = %e, "produce refused")
                    }
                    _ => tracing::warn!(client_id, topic = %tp, error = %e, "append failed"),
                }
                error_code::code(&e)
            })?;
        enqueued.push(appending);
    }
    Ok(Enqueued {
        tp,
        batches: enqueued,
        wait,
        log_append_time_ms: if timestamps.log_append_time {
            now_ms
        } else {
            -1
        },
    })
}

/// A partition's produce error: the code, and the validation refusal behind it if any.
struct Refused {
    code: i16,
    refusal: Option<Refusal>,
}

impl From<i16> for Refused {
    fn from(code: i16) -> Self {
        Self {
            code,
            refusal: None,
        }
    }
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Self {
        Self {
            code: refusal.code(),
            refusal: Some(refusal),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use magnetar_format::kafka::{decode_batch, encode_batch, Record};

    use super::normalize_batch;

    #[test]
    fn mixed_kafka_reencodes_only_non_canonical_batches() {
        let record = |delta: i32| Record {
            offset_delta: delta,
            timestamp_ms: 5,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
        };
        let good = encode_batch(0, &[record(0), record(1)]);
        assert_eq!(normalize_batch(good.clone(), 2).unwrap(), good);
        // A client whose header disagrees with its records: last_offset_delta (bytes 23..27)
        // says 0 for two records (the CRC at 17..21, over bytes 21.., is made valid again).
        let mut bad = bytes::BytesMut::from(&good[..]);
        bad[23..27].copy_from_slice(&0i32.to_be_bytes());
        let crc = crc32c::crc32c(&bad[21..]);
        bad[17..21].copy_from_slice(&crc.to_be_bytes());
        let fixed = normalize_batch(bad.freeze(), 2).unwrap();
        let decoded = decode_batch(&fixed).unwrap();
        assert_eq!(decoded.last_offset_delta, 1);
        assert_eq!(
            decoded
                .records
                .iter()
                .map(|r| r.offset_delta)
                .collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert!(normalize_batch(good, 3).is_err());
    }
}
