//! ListOffsets v0–v9: earliest (-2) is the log start index, latest (-1) the end index (the last
//! stable offset for `read_committed`), max
//! timestamp (-3, KIP-734) the record with the largest timestamp, and a timestamp the first record
//! at or after it. v0 (decoded by hand, `crate::codec::list_offsets_v0`) asks for offsets before a
//! time: every record before the one found is older, so the same offset answers it, and the end
//! index when no record is that new. Lookups by time find the entry through the ledger's time index and then the
//! record inside the batch; for compressed batches (which the broker does not decompress) the
//! batch's base offset is returned, which makes a consumer read a few records early.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;
use magnetar_broker::{Access, EntryHeader, PartitionLog, TopicPartition};

use super::{Context, Envelope};
use crate::{batch, error_code};

pub const EARLIEST: i64 = -2;
pub const LATEST: i64 = -1;
pub const MAX_TIMESTAMP: i64 = -3;

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let version = envelope.version();
    let read_committed = request.isolation_level == 1;
    let mut response = ListOffsetsResponse::default();
    for topic in request.topics {
        let mut topic_response = ListOffsetsTopicResponse::default().with_name(topic.name.clone());
        // Lookup (produce or consume) on the topic, KoP's mapping.
        let name = match ctx.parse_topic(&topic.name.0) {
            Ok(name) => ctx.authorize(&name, &Access::Lookup).await.map(|()| name),
            Err(e) => Err(error_code::code(&e)),
        };
        for partition in topic.partitions {
            let mut result = ListOffsetsPartitionResponse::default()
                .with_partition_index(partition.partition_index);
            result.timestamp = -1;
            result.offset = -1;
            let mut epoch = 0;
            let found = match (&name, u32::try_from(partition.partition_index)) {
                (Ok(name), Ok(index)) => {
                    match ctx
                        .broker
                        .partition(&TopicPartition {
                            topic: name.clone(),
                            partition: index,
                        })
                        .await
                    {
                        Ok(log) => {
                            match super::leader_epoch::check(&log, partition.current_leader_epoch) {
                                Err(code) => Err(code),
                                Ok(()) => {
                                    epoch = super::leader_epoch::wire(log.leader_epoch());
                                    match lookup(&log, partition.timestamp, read_committed).await {
                                        // v0: every record is older than the time asked for.
                                        Ok(None) if version == 0 && partition.timestamp >= 0 => {
                                            Ok(Some((log.end_index() as i64, -1)))
                                        }
                                        other => other.map_err(|e| error_code::code(&e)),
                                    }
                                }
                            }
                        }
                        Err(e) => Err(error_code::code(&e)),
                    }
                }
                (Err(code), _) => Err(*code),
                (_, Err(_)) => Err(ResponseError::UnknownTopicOrPartition.code()),
            };
            match found {
                Ok(Some((offset, timestamp))) => {
                    result.offset = offset;
                    result.timestamp = timestamp;
                    if version >= 4 {
                        result.leader_epoch = epoch;
                    }
                }
                Ok(None) => {
                    if version >= 4 {
                        result.leader_epoch = epoch;
                    }
                }
                Err(code) => result.error_code = code,
            }
            topic_response.partitions.push(result);
        }
        response.topics.push(topic_response);
    }
    response
}

/// (offset, timestamp) for a ListOffsets timestamp; `None` when no record qualifies.
/// `read_committed` (isolation level 1): latest is the last stable offset, as in Kafka.
async fn lookup(
    log: &PartitionLog,
    timestamp: i64,
    read_committed: bool,
) -> Result<Option<(i64, i64)>, magnetar_broker::Error> {
    match timestamp {
        EARLIEST => Ok(Some((log.start_index() as i64, -1))),
        LATEST if read_committed => Ok(Some((log.last_stable_index() as i64, -1))),
        LATEST => Ok(Some((log.end_index() as i64, -1))),
        MAX_TIMESTAMP => match log.max_timestamp_entry().await? {
            Some(entry) => Ok(Some(record_in(log, &entry, None).await)),
            None => Ok(None),
        },
        t if t < 0 => Err(magnetar_broker::Error::InvalidRequest(format!(
            "unknown timestamp {t}"
        ))),
        t => match log.find_by_timestamp(t).await? {
            Some(entry) => Ok(Some(record_in(log, &entry, Some(t)).await)),
            None => Ok(None),
        },
    }
}

/// The record of an entry found by time, falling back to the entry's first index and max
/// timestamp when the batch cannot be read record by record.
async fn record_in(log: &PartitionLog, entry: &EntryHeader, target: Option<i64>) -> (i64, i64) {
    let fallback = (entry.first_index as i64, entry.max_timestamp_ms);
    let Ok(entries) = log.read(entry.first_index, 1, 1).await else {
        return fallback;
    };
    entries
        .first()
        .filter(|e| e.header.first_index == entry.first_index)
        .and_then(|e| batch::find_record(&e.payload, target))
        .unwrap_or(fallback)
}
