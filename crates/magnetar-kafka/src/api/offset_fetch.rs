//! OffsetFetch v1–v9, single group (v1–v7) and multi-group (v8+) forms. Without transactions
//! every committed offset is stable, so `require_stable` (v7+) is honoured without waiting.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use magnetar_coordinator as coordinator;

use super::group_common::{s, wire};
use super::Context;
use crate::error_code;

async fn fetch_one(
    ctx: &Context,
    group_id: String,
    topics: Option<Vec<coordinator::TopicPartitions>>,
    require_stable: bool,
) -> coordinator::OffsetFetchResponse {
    match &ctx.coordinator {
        Some(c) => {
            c.fetch_offsets(coordinator::OffsetFetchRequest {
                group_id,
                topics,
                require_stable,
            })
            .await
        }
        None => coordinator::OffsetFetchResponse {
            error: Some(coordinator::CoordinatorError::CoordinatorNotAvailable),
            topics: Vec::new(),
        },
    }
}

pub async fn handle(
    ctx: &Context,
    version: i16,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        for group in request.groups {
            let topics = group.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| coordinator::TopicPartitions {
                        name: s(&t.name.0),
                        partitions: t.partition_indexes,
                    })
                    .collect()
            });
            let r = fetch_one(ctx, s(&group.group_id.0), topics, request.require_stable).await;
            response.groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id)
                    .with_error_code(error_code::coordinator_code(r.error))
                    .with_topics(
                        r.topics
                            .into_iter()
                            .map(|t| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(wire(t.name)))
                                    .with_partitions(
                                        t.partitions
                                            .into_iter()
                                            .map(|p| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p.partition)
                                                    .with_committed_offset(p.offset)
                                                    .with_committed_leader_epoch(p.leader_epoch)
                                                    .with_metadata(Some(wire(p.metadata)))
                                                    .with_error_code(error_code::coordinator_code(
                                                        p.error,
                                                    ))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
            );
        }
        return response;
    }
    // v1 has no "all topics" form: a null list is read as an empty one.
    let topics = match request.topics {
        Some(ts) => Some(
            ts.into_iter()
                .map(|t| coordinator::TopicPartitions {
                    name: s(&t.name.0),
                    partitions: t.partition_indexes,
                })
                .collect(),
        ),
        None if version < 2 => Some(Vec::new()),
        None => None,
    };
    let GroupId(group_id) = request.group_id;
    let r = fetch_one(ctx, s(&group_id), topics, request.require_stable).await;
    // v1 has no top-level error: it goes to every partition instead.
    if version >= 2 {
        response.error_code = error_code::coordinator_code(r.error);
    }
    let v1_error = if version < 2 { r.error } else { None };
    response.topics = r
        .topics
        .into_iter()
        .map(|t| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(wire(t.name)))
                .with_partitions(
                    t.partitions
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p.partition)
                                .with_committed_offset(p.offset)
                                // Leader epochs are returned from v5.
                                .with_committed_leader_epoch(if version >= 5 {
                                    p.leader_epoch
                                } else {
                                    -1
                                })
                                .with_metadata(Some(wire(p.metadata)))
                                .with_error_code(error_code::coordinator_code(p.error.or(v1_error)))
                        })
                        .collect(),
                )
        })
        .collect();
    response
}
