//! OffsetForLeaderEpoch v2–v4: the end offset of a leader epoch (see [`super::leader_epoch`]).

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;
use magnetar_broker::{Access, TopicPartition};

use super::{Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in request.topics {
        let mut result = OffsetForLeaderTopicResult::default().with_topic(topic.topic.clone());
        // Lookup (produce or consume) on the topic, KoP's mapping.
        let name = match ctx.parse_topic(&topic.topic.0) {
            Ok(name) => ctx.authorize(&name, &Access::Lookup).await.map(|()| name),
            Err(e) => Err(error_code::code(&e)),
        };
        for partition in topic.partitions {
            let mut entry = EpochEndOffset::default().with_partition(partition.partition);
            entry.leader_epoch = -1;
            entry.end_offset = -1;
            let log = match (&name, u32::try_from(partition.partition)) {
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
            match log {
                Ok(log) => {
                    (entry.leader_epoch, entry.end_offset) =
                        super::leader_epoch::end_offset_for(&log, partition.leader_epoch);
                }
                Err(code) => entry.error_code = code,
            }
            result.partitions.push(entry);
        }
        response.topics.push(result);
    }
    response
}
