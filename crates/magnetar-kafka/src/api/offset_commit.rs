//! OffsetCommit v2–v9. Partitions of topics that do not exist get UNKNOWN_TOPIC_OR_PARTITION
//! here (the front end knows the topics); the rest go to the coordinator. The retention time of
//! v2–v4 is ignored, as in Kafka since KIP-211.

use std::collections::HashMap;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;
use magnetar_broker::Access;
use magnetar_coordinator as coordinator;

use super::group_common::{opt, s};
use super::{Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let mut response = OffsetCommitResponse::default();
    let c = &ctx.coordinator;
    let group = request.group_id.0.as_str();
    let group_refused = ctx.authorize_group(group).await.err();
    // Committing needs consume on the topic with this group as the subscription.
    let consume = Access::Consume {
        subscription: Some(group.to_string()),
    };
    // Partition counts of the named topics; `None` for a topic that does not exist.
    let mut counts: HashMap<String, Option<u32>> = HashMap::new();
    // Topics the principal may not commit for, with the error to answer.
    let mut refused: HashMap<String, i16> = HashMap::new();
    for t in &request.topics {
        let name = s(&t.name.0);
        if counts.contains_key(&name) {
            continue;
        }
        let count = match ctx.parse_topic(&name) {
            Ok(topic) => {
                if let Some(code) = group_refused {
                    refused.insert(name.clone(), code);
                } else if let Err(code) = ctx.authorize(&topic, &consume).await {
                    refused.insert(name.clone(), code);
                }
                ctx.broker
                    .topic(&topic)
                    .await
                    .ok()
                    .flatten()
                    .map(|m| m.partition_count())
            }
            Err(_) => None,
        };
        counts.insert(name, count);
    }
    let exists = |topic: &str, partition: i32| {
        !refused.contains_key(topic)
            && counts
                .get(topic)
                .copied()
                .flatten()
                .is_some_and(|n| partition >= 0 && (partition as u32) < n)
    };
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let name = s(&t.name.0);
            coordinator::CommitTopic {
                partitions: t
                    .partitions
                    .iter()
                    .filter(|p| exists(&name, p.partition_index))
                    .map(|p| coordinator::CommitPartition {
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: opt(&p.committed_metadata),
                        commit_timestamp_ms: None,
                    })
                    .collect(),
                name,
            }
        })
        .collect();
    let r = c
        .commit_offsets(coordinator::OffsetCommitRequest {
            group_id: ctx.group_key(group),
            generation_id: request.generation_id_or_member_epoch,
            member_id: s(&request.member_id),
            group_instance_id: opt(&request.group_instance_id),
            topics,
        })
        .await;
    let results: HashMap<(String, i32), Option<coordinator::CoordinatorError>> = r
        .topics
        .into_iter()
        .flat_map(|t| {
            let name = t.name;
            t.partitions
                .into_iter()
                .map(move |p| ((name.clone(), p.partition), p.error))
        })
        .collect();
    response.topics = request
        .topics
        .iter()
        .map(|t| {
            let name = s(&t.name.0);
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let code = match (
                                refused.get(&name),
                                results.get(&(name.clone(), p.partition_index)),
                            ) {
                                (Some(code), _) => *code,
                                (None, Some(error)) => error_code::coordinator_code(*error),
                                (None, None) => ResponseError::UnknownTopicOrPartition.code(),
                            };
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    response
}
