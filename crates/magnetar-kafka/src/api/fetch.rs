//! Fetch v4–v17. Stored Kafka entries are record batches with their base offset already written,
//! so a fetch concatenates entry payloads. Long polling waits on each partition's watch of its
//! readable end (`PartitionLog::subscribe`), never on a sleep loop, until `min_bytes` are there,
//! `max_wait_ms` passes or the broker shuts down; the request's task waits on all the watches at
//! once (no task per partition). The partitions of a request are read concurrently.
//!
//! - A fetch offset inside a batch returns that whole batch; clients skip the earlier records.
//! - At least one whole batch is returned (from the first partition with data) even when it is
//!   larger than `max_bytes` or the partition's max bytes, so a consumer never stalls.
//! - The high watermark is the end index; the last stable offset is the first offset of the
//!   oldest open transaction (or the end). `read_committed` reads stop at the last stable offset
//!   and carry the aborted transactions overlapping what they return, so clients drop aborted
//!   records (and control batches) as Kafka's do.
//! - Fetch sessions (KIP-227) are not kept: every response has session id 0, which tells the
//!   client to send full fetch requests.
//! - A stored entry that cannot be served (a Pulsar entry that does not convert) never blocks a
//!   partition silently: it is counted and logged with its index, then handled by
//!   [`UnreadableEntryPolicy`]: `skip` serves an empty batch over its offsets (consumers move
//!   past it), `fail` answers CORRUPT_MESSAGE at its offset after the entries before it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use kafka_protocol::ResponseError;
use magnetar_broker::{Access, PartitionLog, PayloadFormat, TopicPartition};
use tokio::time::Instant;

use super::{Context, Envelope};
use crate::error_code;
use crate::UnreadableEntryPolicy;

/// Longest long poll honoured, whatever the client asks.
pub const MAX_WAIT_MS_MAX: i32 = 60_000;
/// Most entries read from one partition for one response.
const ENTRIES_PER_PARTITION_MAX: usize = 10_000;

const CONSUME: Access = Access::Consume { subscription: None };

struct Slot {
    /// Index into `response.responses`.
    topic: usize,
    partition: i32,
    fetch_offset: i64,
    partition_max_bytes: i32,
    log: Result<Arc<PartitionLog>, i16>,
    /// `isolation_level` 1: read up to the last stable offset only.
    read_committed: bool,
}

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: FetchRequest,
) -> FetchResponse {
    let header = envelope.header;
    let version = header.api_version;
    let mut response = FetchResponse::default();
    response.session_id = 0;
    let mut slots = Vec::new();
    for topic in request.topics {
        let resolved = if version >= 13 {
            match ctx.topic_by_id(topic.topic_id).await {
                Ok(Some(name)) => Ok(name),
                Ok(None) => Err(ResponseError::UnknownTopicId.code()),
                Err(e) => Err(error_code::code(&e)),
            }
        } else {
            ctx.parse_topic(&topic.topic.0)
                .map_err(|e| error_code::code(&e))
        };
        // Fetch needs consume (KoP's mapping). A topic addressed by id the principal may not
        // read is an unknown id, as in Kafka, so ids reveal nothing.
        let resolved = match resolved {
            Ok(name) => match ctx.authorize(&name, &CONSUME).await {
                Ok(()) => Ok(name),
                Err(_) if version >= 13 => Err(ResponseError::UnknownTopicId.code()),
                Err(code) => Err(code),
            },
            Err(code) => Err(code),
        };
        let topic_index = response.responses.len();
        response.responses.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id),
        );
        for partition in topic.partitions {
            let log = match (&resolved, u32::try_from(partition.partition)) {
                (Ok(name), Ok(index)) => ctx
                    .broker
                    .partition(&TopicPartition {
                        topic: name.clone(),
                        partition: index,
                    })
                    .await
                    .map_err(|e| error_code::code(&e))
                    .and_then(|log| {
                        super::leader_epoch::check(&log, partition.current_leader_epoch)
                            .map(|()| log)
                    }),
                (Err(code), _) => Err(*code),
                (_, Err(_)) => Err(ResponseError::UnknownTopicOrPartition.code()),
            };
            slots.push(Slot {
                topic: topic_index,
                partition: partition.partition,
                fetch_offset: partition.fetch_offset,
                partition_max_bytes: partition.partition_max_bytes,
                log,
                read_committed: request.isolation_level == 1,
            });
        }
    }
    let max_wait = Duration::from_millis(request.max_wait_ms.clamp(0, MAX_WAIT_MS_MAX) as u64);
    let deadline = Instant::now() + max_wait;
    let max_bytes = if request.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        request.max_bytes as usize
    };
    let min_bytes = request.min_bytes.max(0) as usize;
    loop {
        // Subscribe before reading so an append between the read and the wait is not missed.
        let mut watches: Vec<_> = slots
            .iter()
            .filter_map(|s| s.log.as_ref().ok())
            .map(|log| log.subscribe())
            .collect();
        for w in &mut watches {
            w.borrow_and_update();
        }
        let (partitions, bytes, errors, sent) = read_all(ctx, &slots, max_bytes).await;
        let done = bytes >= min_bytes.max(1)
            || errors
            || Instant::now() >= deadline
            || ctx.shutdown.is_cancelled()
            || watches.is_empty();
        if done {
            for ((slot, data), messages) in slots.iter().zip(partitions).zip(sent) {
                if let (Ok(log), Some(records)) = (&slot.log, &data.records) {
                    log.record_out(records.len() as u64, messages);
                }
                response.responses[slot.topic].partitions.push(data);
            }
            return response;
        }
        // The first watch that changes ends the wait: one future over all of them, in this
        // task (no task per partition).
        let changed =
            futures_util::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = ctx.shutdown.cancelled() => {}
        }
    }
}

/// Reads every slot once. Returns the partition results, the bytes of records in them, whether
/// any partition has an error (which ends a long poll at once), and the messages per slot.
///
/// The partitions are read concurrently (each ledger read runs on the blocking pool, so reads of
/// different partitions overlap), each within its own max bytes; the response then takes them in
/// request order within `max_bytes`, as Kafka fills it: a partition that no longer fits is
/// answered without records (the consumer asks again from the same offset), and an entry larger
/// than the limits is kept only as the first data of the response (KIP-74).
async fn read_all(
    ctx: &Context,
    slots: &[Slot],
    max_bytes: usize,
) -> (Vec<PartitionData>, usize, bool, Vec<u64>) {
    let reads =
        futures_util::future::join_all(slots.iter().map(|slot| read_slot(ctx, slot, max_bytes)))
            .await;
    let mut out = Vec::with_capacity(slots.len());
    let mut sent = Vec::with_capacity(slots.len());
    let mut total = 0usize;
    let mut errors = false;
    for (slot, (mut data, messages)) in slots.iter().zip(reads) {
        errors |= data.error_code != 0;
        let mut messages = messages;
        if let Some(records) = &data.records {
            let len = records.len();
            let partition_max = usize::try_from(slot.partition_max_bytes.max(0)).unwrap_or(0);
            let fits = len <= partition_max && total.saturating_add(len) <= max_bytes;
            if total == 0 || fits {
                total += len;
            } else {
                // Empty, not null: librdkafka refuses a null record set ("invalid
                // MessageSetSize -1") and drops the whole response.
                data.records = Some(Bytes::new());
                messages = 0;
            }
        }
        out.push(data);
        sent.push(messages);
    }
    (out, total, errors, sent)
}

/// One partition of a fetch: its offsets and, when there is data at the fetch offset, the
/// batches from there within its max bytes (at least one), with their message count.
async fn read_slot(ctx: &Context, slot: &Slot, max_bytes: usize) -> (PartitionData, u64) {
    let mut messages = 0;
    let mut data = PartitionData::default().with_partition_index(slot.partition);
    data.high_watermark = -1;
    data.last_stable_offset = -1;
    data.log_start_offset = -1;
    let log = match &slot.log {
        Err(code) => {
            data.error_code = *code;
            return (data, messages);
        }
        Ok(log) => log,
    };
    // The stable offset first: it never passes the end read after it.
    let stable = log.last_stable_index();
    let (start, end) = (log.start_index(), log.end_index());
    data.high_watermark = end as i64;
    data.last_stable_offset = stable as i64;
    data.log_start_offset = start as i64;
    // Kafka sends null to read_uncommitted readers; an empty list reads the same everywhere.
    data.aborted_transactions = Some(Vec::new());
    let upper = if slot.read_committed { stable } else { end };
    let offset = slot.fetch_offset;
    if offset < start as i64 || offset > end as i64 {
        data.error_code = ResponseError::OffsetOutOfRange.code();
    } else if (offset as u64) < upper {
        let partition_max = usize::try_from(slot.partition_max_bytes.max(0)).unwrap_or(0);
        let budget = partition_max.min(max_bytes);
        match read_partition(ctx, log, offset as u64, upper, budget, true).await {
            Ok(Some((records, count, read_end))) => {
                data.records = Some(records);
                messages = count;
                if slot.read_committed {
                    data.aborted_transactions = Some(
                        log.aborted_transactions(offset as u64, read_end)
                            .into_iter()
                            .map(|a| {
                                AbortedTransaction::default()
                                    .with_producer_id(ProducerId(a.producer_id))
                                    .with_first_offset(a.first_index as i64)
                            })
                            .collect(),
                    );
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(partition = %log.name(), error = %e, "fetch read failed");
                data.error_code = error_code::code(&e);
            }
        }
    }
    (data, messages)
}

/// Concatenated batches from `offset` that start before `upper`, within `budget` bytes unless
/// `first` (then at least one), with the number of messages in them and the index after them.
async fn read_partition(
    ctx: &Context,
    log: &PartitionLog,
    offset: u64,
    upper: u64,
    budget: usize,
    first: bool,
) -> Result<Option<(Bytes, u64, u64)>, magnetar_broker::Error> {
    let entries = match log.read(offset, budget, ENTRIES_PER_PARTITION_MAX).await {
        Ok(entries) => entries,
        Err(e @ magnetar_broker::Error::CorruptData(_)) => {
            // Corrupt on disk: an operator may have marked the entry skipped (see
            // `magnetar_broker::skipped`); its offsets are then served as an empty batch.
            let Some(range) = ctx.broker.skipped_entry(log.name(), offset).await else {
                return Err(e);
            };
            let count = range.end - range.start;
            let empty = magnetar_format::kafka::empty_batch(
                range.start as i64,
                u32::try_from(count).unwrap_or(u32::MAX),
            );
            return Ok(Some((empty, count, range.end)));
        }
        Err(e) => return Err(e),
    };
    let mut size = 0usize;
    let mut messages = 0u64;
    let mut read_end = offset;
    let mut chosen = Vec::with_capacity(entries.len());
    for entry in entries {
        if entry.header.first_index >= upper {
            break;
        }
        let entry_end = entry.header.end_index();
        let framing = match (entry.header.format, ctx.broker.schema_framing()) {
            (PayloadFormat::Pulsar, Some(framing)) => {
                match magnetar_format::pulsar::entry_schema_version(&entry.payload) {
                    Ok(Some(version)) => framing.confluent_id(&log.name().topic, &version).await,
                    _ => None,
                }
            }
            _ => None,
        };
        // Kafka entries are served as stored; Pulsar entries are converted to an uncompressed
        // record batch with the same offsets, cached so each is converted once, not per fetch.
        let payload = match entry.header.format {
            PayloadFormat::Kafka => entry.payload,
            PayloadFormat::Pulsar => match ctx.conversions.get_or_convert(
                log.name(),
                &entry,
                // Records of a Pulsar schema version reach Confluent deserializers framed with
                // the version's schema id (README, schema registry interop). The id of a
                // version never changes, so the framed form is what the cache keeps.
                |e| magnetar_format::entry_as_framed_kafka(e, framing),
            ) {
                Ok(batch) => batch,
                Err(_)
                    if ctx
                        .broker
                        .skipped_entry(log.name(), entry.header.first_index)
                        .await
                        .is_some() =>
                {
                    magnetar_format::kafka::empty_batch(
                        entry.header.first_index as i64,
                        entry.header.message_count,
                    )
                }
                Err(e) => {
                    let policy = ctx.config.unreadable_entry_policy;
                    ctx.metrics.record_unreadable_entry();
                    log_unreadable(log.name(), entry.header.first_index, &e, policy);
                    match policy {
                        UnreadableEntryPolicy::Skip => magnetar_format::kafka::empty_batch(
                            entry.header.first_index as i64,
                            entry.header.message_count,
                        ),
                        // What came before it is served; the next fetch starts at it.
                        UnreadableEntryPolicy::Fail if !chosen.is_empty() => break,
                        UnreadableEntryPolicy::Fail => {
                            return Err(magnetar_broker::Error::CorruptData(format!(
                                "pulsar entry at index {} of {} cannot be converted to a kafka batch: {e}",
                                entry.header.first_index,
                                log.name()
                            )))
                        }
                    }
                }
            },
        };
        let len = payload.len();
        if size + len > budget && !(first && chosen.is_empty()) {
            break;
        }
        size += len;
        messages += u64::from(entry.header.message_count);
        read_end = entry_end;
        chosen.push(payload);
    }
    Ok(match chosen.len() {
        0 => None,
        1 => chosen.pop().map(|b| (b, messages, read_end)),
        _ => {
            let mut buf = BytesMut::with_capacity(size);
            for payload in chosen {
                buf.extend_from_slice(&payload);
            }
            Some((buf.freeze(), messages, read_end))
        }
    })
}

/// One log line per 10 s at most for unreadable entries (a consumer polling a bad entry under
/// `fail` meets it on every fetch); the lines in between are counted and reported with the next.
fn log_unreadable(
    partition: &TopicPartition,
    index: u64,
    error: &magnetar_format::kafka::FormatError,
    policy: UnreadableEntryPolicy,
) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    static NEXT_LOG_MS: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    const INTERVAL_MS: u64 = 10_000;
    let now_ms = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64;
    let next = NEXT_LOG_MS.load(Ordering::Relaxed);
    if now_ms < next
        || NEXT_LOG_MS
            .compare_exchange(
                next,
                now_ms + INTERVAL_MS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
    {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
    tracing::warn!(
        partition = %partition,
        index,
        error = %error,
        ?policy,
        suppressed,
        "stored entry cannot be served to kafka consumers (kafka.unreadable_entry_policy decides: skip serves an empty batch over its offsets, fail answers CORRUPT_MESSAGE until an operator marks it skipped: PUT /admin/v2/persistent/{{tenant}}/{{namespace}}/{{topic}}/skippedEntries/{{index}})"
    );
}
