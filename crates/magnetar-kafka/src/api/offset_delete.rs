//! OffsetDelete v0: deletes committed offsets of topics the group does not consume.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, TopicName};
use magnetar_coordinator as coordinator;

use super::group_common::{s, wire};
use super::{Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let mut response = OffsetDeleteResponse::default();
    let c = &ctx.coordinator;
    if let Err(code) = ctx.authorize_group(request.group_id.0.as_str()).await {
        response.error_code = code;
        return response;
    }
    let r = c
        .delete_offsets(coordinator::OffsetDeleteRequest {
            group_id: ctx.group_key(request.group_id.0.as_str()),
            topics: request
                .topics
                .iter()
                .map(|t| coordinator::TopicPartitions {
                    name: s(&t.name.0),
                    partitions: t.partitions.iter().map(|p| p.partition_index).collect(),
                })
                .collect(),
        })
        .await;
    response.error_code = error_code::coordinator_code(r.error);
    response.topics = r
        .topics
        .into_iter()
        .map(|t| {
            OffsetDeleteResponseTopic::default()
                .with_name(TopicName(wire(t.name)))
                .with_partitions(
                    t.partitions
                        .into_iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition)
                                .with_error_code(error_code::coordinator_code(p.error))
                        })
                        .collect(),
                )
        })
        .collect();
    response
}
