//! `/admin/v2/kafka/groups`: Kafka consumer groups (Magnetar's extension of the Pulsar admin
//! API): list, describe (members, assignments, committed offsets, log end offsets and lag),
//! reset the offsets of an inactive group, delete an empty group.
//!
//! Kafka's rule for resetting offsets (`kafka-consumer-groups --reset-offsets`) holds here: only a
//! group without members (state `Empty`, or a group that does not exist yet) may be reset; an
//! active group answers 409. The reset is a commit outside group management (generation `-1`),
//! which the coordinator itself refuses for a group that gained members meanwhile, so the check
//! cannot race with a joining consumer.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use magnetar_broker::{PartitionLog, TopicName, TopicPartition};
use magnetar_coordinator::{
    CommitPartition, CommitTopic, CoordinatorError, GroupCoordinator, GroupState, GroupView,
    OffsetCommitRequest,
};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path};
use crate::AppState;

/// Longest group id accepted in a path (Kafka strings are at most `i16::MAX` bytes).
pub(crate) const GROUP_ID_BYTES_MAX: usize = 32_767;
/// Most groups a topic's stats look through for committed offsets.
pub(crate) const GROUPS_SCANNED_MAX: usize = 10_000;
/// Most partitions one reset request may name.
pub(crate) const RESET_PARTITIONS_MAX: usize = 4096;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupSummary {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AssignedPartitions {
    pub topic: String,
    pub partitions: Vec<i32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemberJson {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// The decoded consumer assignment; `None` for another protocol type or undecodable bytes.
    pub assignment: Option<Vec<AssignedPartitions>>,
    pub assignment_bytes: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OffsetJson {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: i64,
    /// `None` when the partition no longer exists.
    pub log_end_offset: Option<i64>,
    pub lag: Option<i64>,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupJson {
    pub group_id: String,
    pub state: String,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation_id: i32,
    pub leader: Option<String>,
    pub members: Vec<MemberJson>,
    pub offsets: Vec<OffsetJson>,
}

/// Where to move a group's offsets.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ResetTo {
    Earliest,
    Latest,
    /// The first offset whose timestamp is at or after `timestamp` (the end when none is).
    Timestamp,
    /// `offset`, clamped into the partition's range (as Kafka's tool does).
    Offset,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ResetRequest {
    /// A topic name in any Kafka form (`t`, `tenant/ns/t`, `persistent://tenant/ns/t`); it is
    /// committed under this name, so use the name the group's consumers use.
    #[schema(
        pattern = "^((persistent://)?([A-Za-z0-9_.=:-]*[A-Za-z0-9_=:-][A-Za-z0-9_.=:-]*|[.]{3,})/([A-Za-z0-9_.=:-]*[A-Za-z0-9_=:-][A-Za-z0-9_.=:-]*|[.]{3,})/([A-Za-z0-9_.=:-]*[A-Za-z0-9_=:-][A-Za-z0-9_.=:-]*|[.]{3,})|([A-Za-z0-9_.=:-]*[A-Za-z0-9_=:-][A-Za-z0-9_.=:-]*|[.]{3,}))$",
        max_length = 249
    )]
    pub topic: String,
    /// Partitions to reset; every partition of the topic when absent.
    #[serde(default)]
    #[schema(max_items = 4096, minimum = 0, maximum = 2_147_483_647)]
    pub partitions: Option<Vec<i32>>,
    #[schema(inline)]
    pub to: ResetTo,
    #[serde(default)]
    #[schema(minimum = -9_223_372_036_854_775_807_i64, maximum = 9_223_372_036_854_775_807_i64)]
    pub timestamp: Option<i64>,
    #[serde(default)]
    #[schema(minimum = -9_223_372_036_854_775_807_i64, maximum = 9_223_372_036_854_775_807_i64)]
    pub offset: Option<i64>,
}

impl crate::extract::JsonBodyType for ResetRequest {
    const JSON_TYPE: crate::extract::JsonType = crate::extract::JsonType::Object;
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResetResult {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

fn coordinator(state: &AppState) -> ApiResult<&Arc<GroupCoordinator>> {
    state.coordinator.as_ref().ok_or_else(|| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        reason: "the Kafka group coordinator is not running".into(),
        owner: None,
    })
}

fn check_group_id(group: &str) -> ApiResult<()> {
    if group.is_empty() || group.len() > GROUP_ID_BYTES_MAX {
        return Err(ApiError::bad_request(format!(
            "group id must be 1 to {GROUP_ID_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

pub(crate) async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<GroupSummary>>> {
    let mut groups = coordinator(&state)?.list_groups(&[]).await?;
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    Ok(Json(
        groups
            .into_iter()
            .map(|g| GroupSummary {
                group_id: g.group_id,
                state: g.state.to_string(),
                protocol_type: g.protocol_type,
            })
            .collect(),
    ))
}

async fn view(state: &AppState, group: &str) -> ApiResult<GroupView> {
    check_group_id(group)?;
    match coordinator(state)?.group_view(group).await? {
        Some(v) if v.state != GroupState::Dead => Ok(v),
        _ => Err(ApiError::not_found(format!(
            "group '{group}' does not exist"
        ))),
    }
}

/// The log of a partition named the way a Kafka client names it; `None` when it does not exist.
async fn kafka_partition(
    state: &AppState,
    topic: &str,
    partition: i32,
) -> ApiResult<Option<Arc<PartitionLog>>> {
    let Ok(name) = state.broker.parse_topic(topic) else {
        return Ok(None);
    };
    let Ok(partition) = u32::try_from(partition) else {
        return Ok(None);
    };
    match state
        .broker
        .partition(&TopicPartition {
            topic: name,
            partition,
        })
        .await
    {
        Ok(log) => Ok(Some(log)),
        Err(magnetar_broker::Error::TopicNotFound { .. })
        | Err(magnetar_broker::Error::PartitionNotFound { .. })
        | Err(magnetar_broker::Error::InvalidName(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn describe(
    State(state): State<Arc<AppState>>,
    Path(group): Path<String>,
) -> ApiResult<Json<GroupJson>> {
    let v = view(&state, &group).await?;
    let consumer = v.protocol_type.as_deref() == Some("consumer");
    let mut offsets = Vec::with_capacity(v.offsets.len());
    for o in &v.offsets {
        let end = kafka_partition(&state, &o.topic, o.partition)
            .await?
            .and_then(|log| i64::try_from(log.end_index()).ok());
        offsets.push(OffsetJson {
            topic: o.topic.clone(),
            partition: o.partition,
            committed_offset: o.offset,
            log_end_offset: end,
            lag: end.map(|e| (e - o.offset).max(0)),
            metadata: o.metadata.clone(),
            commit_timestamp_ms: o.commit_timestamp_ms,
        });
    }
    let members = v
        .members
        .iter()
        .map(|m| MemberJson {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            session_timeout_ms: m.session_timeout_ms,
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            assignment: if consumer {
                decode_assignment(&m.assignment)
            } else {
                None
            },
            assignment_bytes: m.assignment.len(),
        })
        .collect();
    Ok(Json(GroupJson {
        group_id: v.group_id,
        state: v.state.to_string(),
        protocol_type: v.protocol_type,
        protocol: v.protocol_name,
        generation_id: v.generation_id,
        leader: v.leader,
        members,
        offsets,
    }))
}

pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Path(group): Path<String>,
) -> ApiResult<StatusCode> {
    check_group_id(&group)?;
    let results = coordinator(&state)?
        .delete_groups(std::slice::from_ref(&group))
        .await;
    match results.into_iter().next() {
        Some((_, None)) => Ok(StatusCode::NO_CONTENT),
        Some((_, Some(e))) => Err(group_error(&group, e)),
        None => Err(CoordinatorError::Internal.into()),
    }
}

fn group_error(group: &str, e: CoordinatorError) -> ApiError {
    match e {
        CoordinatorError::GroupIdNotFound => {
            ApiError::not_found(format!("group '{group}' does not exist"))
        }
        CoordinatorError::NonEmptyGroup
        | CoordinatorError::UnknownMemberId
        | CoordinatorError::IllegalGeneration
        | CoordinatorError::RebalanceInProgress => ApiError::conflict(format!(
            "group '{group}' has active members; stop its consumers first"
        )),
        other => other.into(),
    }
}

pub(crate) async fn reset_offsets(
    State(state): State<Arc<AppState>>,
    Path(group): Path<String>,
    JsonBody(request): JsonBody<ResetRequest>,
) -> ApiResult<Json<Vec<ResetResult>>> {
    check_group_id(&group)?;
    let coordinator = coordinator(&state)?;
    let name: TopicName = state.broker.parse_topic(&request.topic)?;
    let metadata = state
        .broker
        .topic(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("topic '{name}' does not exist")))?;
    let partitions: Vec<i32> = match &request.partitions {
        Some(list) if list.is_empty() => {
            return Err(ApiError::bad_request("partitions must not be empty"))
        }
        Some(list) if list.len() > RESET_PARTITIONS_MAX => {
            return Err(ApiError::bad_request(format!(
                "at most {RESET_PARTITIONS_MAX} partitions per request"
            )))
        }
        Some(list) => list.clone(),
        None => (0..metadata.partition_count())
            .map(|p| i32::try_from(p).unwrap_or(i32::MAX))
            .collect(),
    };
    match (request.to, request.timestamp, request.offset) {
        (ResetTo::Timestamp, None, _) => {
            return Err(ApiError::bad_request("to=timestamp needs 'timestamp'"))
        }
        (ResetTo::Offset, _, None) => {
            return Err(ApiError::bad_request("to=offset needs 'offset'"))
        }
        (ResetTo::Offset, _, Some(o)) if o < 0 => {
            return Err(ApiError::bad_request(format!("offset {o} must be >= 0")))
        }
        _ => {}
    }
    // Kafka's rule, checked here for a clear answer (the commit below enforces it atomically).
    if let Some(v) = coordinator.group_view(&group).await? {
        if !matches!(v.state, GroupState::Empty | GroupState::Dead) {
            return Err(ApiError::conflict(format!(
                "group '{group}' is {}; offsets can only be reset while it has no members",
                v.state
            )));
        }
    }
    let mut targets = BTreeMap::new();
    for p in partitions {
        let log = u32::try_from(p)
            .ok()
            .filter(|n| *n < metadata.partition_count())
            .ok_or_else(|| ApiError::not_found(format!("topic '{name}' has no partition {p}")))?;
        let log = state
            .broker
            .partition(&TopicPartition {
                topic: name.clone(),
                partition: log,
            })
            .await?;
        let (start, end) = (log.start_index(), log.end_index());
        let index = match request.to {
            ResetTo::Earliest => start,
            ResetTo::Latest => end,
            ResetTo::Timestamp => match log
                .find_by_timestamp(request.timestamp.unwrap_or_default())
                .await?
            {
                Some(header) => header.first_index.max(start),
                None => end,
            },
            ResetTo::Offset => u64::try_from(request.offset.unwrap_or_default())
                .unwrap_or(0)
                .clamp(start, end),
        };
        let offset = i64::try_from(index)
            .map_err(|_| ApiError::bad_request(format!("offset {index} is out of range")))?;
        targets.insert(p, offset);
    }
    let response = coordinator
        .commit_offsets(OffsetCommitRequest {
            group_id: group.clone(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            topics: vec![CommitTopic {
                name: request.topic.clone(),
                partitions: targets
                    .iter()
                    .map(|(p, o)| CommitPartition {
                        partition: *p,
                        offset: *o,
                        leader_epoch: -1,
                        metadata: None,
                        commit_timestamp_ms: None,
                    })
                    .collect(),
            }],
        })
        .await;
    if let Some(e) = response
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .find_map(|p| p.error)
    {
        return Err(group_error(&group, e));
    }
    Ok(Json(
        targets
            .into_iter()
            .map(|(partition, offset)| ResetResult {
                topic: request.topic.clone(),
                partition,
                offset,
            })
            .collect(),
    ))
}

/// Committed offsets on one topic partition by Kafka consumer group: group -> committed offset.
/// Groups commit under the name their consumers use, so every form of the name matches.
pub(crate) async fn committed_on(
    state: &AppState,
    topic: &TopicName,
) -> ApiResult<BTreeMap<String, BTreeMap<i32, i64>>> {
    let Some(coordinator) = state.coordinator.as_ref() else {
        return Ok(BTreeMap::new());
    };
    let mut out: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    let groups = coordinator.list_groups(&[]).await?;
    for g in groups.into_iter().take(GROUPS_SCANNED_MAX) {
        let Some(view) = coordinator.group_view(&g.group_id).await? else {
            continue;
        };
        for o in view.offsets {
            if state.broker.parse_topic(&o.topic).ok().as_ref() == Some(topic) {
                out.entry(g.group_id.clone())
                    .or_default()
                    .insert(o.partition, o.offset);
            }
        }
    }
    Ok(out)
}

/// Decodes a `ConsumerProtocolAssignment` (any version: the assigned partitions come first and
/// are laid out the same; no version is flexible). `None` when the bytes do not parse.
pub(crate) fn decode_assignment(bytes: &[u8]) -> Option<Vec<AssignedPartitions>> {
    struct Reader<'a>(&'a [u8]);
    impl Reader<'_> {
        fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
            let (head, rest) = self.0.split_first_chunk::<N>()?;
            self.0 = rest;
            Some(*head)
        }
        fn i16(&mut self) -> Option<i16> {
            self.take::<2>().map(i16::from_be_bytes)
        }
        fn i32(&mut self) -> Option<i32> {
            self.take::<4>().map(i32::from_be_bytes)
        }
        /// A count no larger than the bytes left could hold at `min_size` bytes per item.
        fn count(&mut self, min_size: usize) -> Option<usize> {
            let n = usize::try_from(self.i32()?).ok()?;
            (n.checked_mul(min_size)? <= self.0.len()).then_some(n)
        }
        fn string(&mut self) -> Option<String> {
            let n = usize::try_from(self.i16()?).ok()?;
            if n > self.0.len() {
                return None;
            }
            let (s, rest) = self.0.split_at(n);
            self.0 = rest;
            String::from_utf8(s.to_vec()).ok()
        }
    }
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader(bytes);
    let _version = r.i16()?;
    let topics = r.count(6)?;
    let mut out = Vec::with_capacity(topics);
    for _ in 0..topics {
        let topic = r.string()?;
        let n = r.count(4)?;
        let partitions = (0..n).map(|_| r.i32()).collect::<Option<Vec<_>>>()?;
        out.push(AssignedPartitions { topic, partitions });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_consumer_assignment() {
        let mut b = vec![0, 1, 0, 0, 0, 1, 0, 2, b'a', b'b', 0, 0, 0, 2];
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&3i32.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes()); // null user data
        let a = decode_assignment(&b).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].topic, "ab");
        assert_eq!(a[0].partitions, vec![0, 3]);
        assert!(decode_assignment(&[]).unwrap().is_empty());
    }

    #[test]
    fn refuses_counts_larger_than_the_bytes() {
        assert!(decode_assignment(&[0, 1, 0x7f, 0xff, 0xff, 0xff]).is_none());
        assert!(decode_assignment(&[0, 1, 0, 0, 0, 1, 0, 9, b'a']).is_none());
        assert!(decode_assignment(&[0, 1, 0xff, 0xff, 0xff, 0xff]).is_none());
    }
}
