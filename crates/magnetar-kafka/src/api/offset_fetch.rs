//! OffsetFetch v1–v9, single group (v1–v7) and multi-group (v8+) forms. With `require_stable`
//! (v7+, KIP-447) a partition whose offsets an open or completing transaction will commit
//! answers UNSTABLE_OFFSET_COMMIT (retriable) until the transaction completes.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use std::collections::HashSet;

use kafka_protocol::ResponseError;
use magnetar_broker::Access;
use magnetar_coordinator as coordinator;

use super::group_common::{s, wire};
use super::{Context, Envelope};
use crate::error_code;

/// One group's committed offsets, with authorization applied: `Err` with the group's error
/// (GROUP_AUTHORIZATION_FAILED), or the coordinator's answer and the topics in it the principal
/// may not look up. Those are dropped when the client asked for every topic (as Kafka does) and
/// answered TOPIC_AUTHORIZATION_FAILED when it named them.
async fn fetch_one(
    ctx: &Context,
    group: String,
    topics: Option<Vec<coordinator::TopicPartitions>>,
    require_stable: bool,
) -> Result<(coordinator::OffsetFetchResponse, HashSet<String>), i16> {
    ctx.authorize_group(&group).await?;
    let all_topics = topics.is_none();
    let mut r = ctx
        .coordinator
        .fetch_offsets(coordinator::OffsetFetchRequest {
            group_id: ctx.group_key(&group),
            topics,
            require_stable,
        })
        .await;
    if require_stable {
        if let Some(txn) = ctx.coordinator.transactions_if_started() {
            let pending = txn.pending_offsets(&ctx.group_key(&group)).await;
            if !pending.is_empty() {
                for t in &mut r.topics {
                    for p in &mut t.partitions {
                        if pending.contains(&(t.name.clone(), p.partition)) {
                            p.error = Some(coordinator::CoordinatorError::UnstableOffsetCommit);
                        }
                    }
                }
            }
        }
    }
    let mut refused = HashSet::new();
    if ctx.broker.authorization_enabled() {
        for t in &r.topics {
            let allowed = match ctx.parse_topic(&t.name) {
                Ok(name) if all_topics => ctx.may(&name, &Access::Lookup).await,
                Ok(name) => ctx.allowed(&name, &Access::Lookup).await,
                Err(_) => true,
            };
            if !allowed {
                refused.insert(t.name.clone());
            }
        }
        if all_topics {
            r.topics.retain(|t| !refused.contains(&t.name));
            refused.clear();
        }
    }
    Ok((r, refused))
}

/// A partition's error: TOPIC_AUTHORIZATION_FAILED for a refused topic, else the coordinator's.
fn partition_code(
    refused: &HashSet<String>,
    topic: &str,
    error: Option<coordinator::CoordinatorError>,
) -> i16 {
    if refused.contains(topic) {
        ResponseError::TopicAuthorizationFailed.code()
    } else {
        error_code::coordinator_code(error)
    }
}

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let version = envelope.version();
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
            let (r, refused) =
                match fetch_one(ctx, s(&group.group_id.0), topics, request.require_stable).await {
                    Ok(found) => found,
                    Err(code) => {
                        response.groups.push(
                            OffsetFetchResponseGroup::default()
                                .with_group_id(group.group_id)
                                .with_error_code(code),
                        );
                        continue;
                    }
                };
            response.groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id)
                    .with_error_code(error_code::coordinator_code(r.error))
                    .with_topics(
                        r.topics
                            .into_iter()
                            .map(|t| {
                                let code = |e| partition_code(&refused, &t.name, e);
                                let denied = refused.contains(&t.name);
                                OffsetFetchResponseTopics::default()
                                    .with_partitions(
                                        t.partitions
                                            .into_iter()
                                            .map(|p| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p.partition)
                                                    .with_committed_offset(if denied {
                                                        -1
                                                    } else {
                                                        p.offset
                                                    })
                                                    .with_committed_leader_epoch(p.leader_epoch)
                                                    .with_metadata(Some(wire(if denied {
                                                        String::new()
                                                    } else {
                                                        p.metadata
                                                    })))
                                                    .with_error_code(code(p.error))
                                            })
                                            .collect(),
                                    )
                                    .with_name(TopicName(wire(t.name)))
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
    let (r, refused) = match fetch_one(ctx, s(&group_id), topics, request.require_stable).await {
        Ok(found) => found,
        Err(code) => {
            // v1 has no top-level error and the refusal has no partitions to carry it: an empty
            // answer, as for a group without offsets.
            if version >= 2 {
                response.error_code = code;
            }
            return response;
        }
    };
    // v1 has no top-level error: it goes to every partition instead.
    if version >= 2 {
        response.error_code = error_code::coordinator_code(r.error);
    }
    let v1_error = if version < 2 { r.error } else { None };
    response.topics = r
        .topics
        .into_iter()
        .map(|t| {
            let denied = refused.contains(&t.name);
            let code = |e| partition_code(&refused, &t.name, e);
            OffsetFetchResponseTopic::default()
                .with_partitions(
                    t.partitions
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p.partition)
                                .with_committed_offset(if denied { -1 } else { p.offset })
                                // Leader epochs are returned from v5.
                                .with_committed_leader_epoch(if version >= 5 {
                                    p.leader_epoch
                                } else {
                                    -1
                                })
                                .with_metadata(Some(wire(if denied {
                                    String::new()
                                } else {
                                    p.metadata
                                })))
                                .with_error_code(code(p.error.or(v1_error)))
                        })
                        .collect(),
                )
                .with_name(TopicName(wire(t.name)))
        })
        .collect();
    response
}
