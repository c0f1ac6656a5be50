//! DeleteRecords v0–v2: moves a partition's log start (`PartitionLog::truncate_before`); offset -1
//! means the high watermark. A topic whose `cleanup.policy` lacks `delete` (`compact` alone) is
//! answered POLICY_VIOLATION, as Kafka does: its records are removed by compaction only.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;
use magnetar_broker::{Access, Error, TopicPartition};

use super::{Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut response = DeleteRecordsResponse::default();
    for topic in request.topics {
        let mut topic_result = DeleteRecordsTopicResult::default().with_name(topic.name.clone());
        // Deleting records is for the tenant's admins.
        let name = match ctx.parse_writable_topic(&topic.name.0) {
            Ok(name) => ctx.authorize(&name, &Access::Admin).await.map(|()| name),
            Err(e) => Err(error_code::code(&e)),
        };
        for partition in topic.partitions {
            let mut result = DeleteRecordsPartitionResult::default()
                .with_partition_index(partition.partition_index);
            result.low_watermark = -1;
            let outcome = match (&name, u32::try_from(partition.partition_index)) {
                (Ok(name), Ok(index)) => {
                    truncate(
                        ctx,
                        TopicPartition {
                            topic: name.clone(),
                            partition: index,
                        },
                        partition.offset,
                    )
                    .await
                }
                (Err(code), _) => Err(*code),
                (_, Err(_)) => Err(ResponseError::UnknownTopicOrPartition.code()),
            };
            match outcome {
                Ok(low) => result.low_watermark = low,
                Err(code) => result.error_code = code,
            }
            topic_result.partitions.push(result);
        }
        response.topics.push(topic_result);
    }
    response
}

async fn truncate(ctx: &Context, tp: TopicPartition, offset: i64) -> Result<i64, i16> {
    let metadata = ctx
        .broker
        .topic(&tp.topic)
        .await
        .map_err(|e| error_code::code(&e))?;
    if metadata
        .as_ref()
        .is_some_and(|m| !magnetar_broker::compaction::deletes(m))
    {
        tracing::info!(partition = %tp, "delete records refused: cleanup.policy has no delete");
        return Err(ResponseError::PolicyViolation.code());
    }
    let log = ctx
        .broker
        .partition(&tp)
        .await
        .map_err(|e| error_code::code(&e))?;
    let index = match offset {
        -1 => log.end_index(),
        o if o < 0 => {
            let e = Error::IndexOutOfRange {
                requested: 0,
                start: log.start_index(),
                end: log.end_index(),
            };
            return Err(error_code::code(&e));
        }
        o => o as u64,
    };
    match log.truncate_before(index).await {
        Ok(start) => {
            tracing::info!(partition = %tp, start, "deleted records");
            Ok(start as i64)
        }
        Err(e) => {
            tracing::info!(partition = %tp, error = %e, "delete records failed");
            Err(error_code::code(&e))
        }
    }
}
