//! Requests and responses of the coordinator, in Kafka's terms but free of wire types: the Kafka
//! front end fills these from its decoded requests (one struct serves every version of an API)
//! and writes its responses from them.

use bytes::Bytes;

use crate::error::CoordinatorError;
use crate::group::GroupState;

/// One protocol a member supports (an assignor for consumers), with its opaque metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinGroupRequest {
    pub group_id: String,
    /// Empty when the member does not know its id yet.
    pub member_id: String,
    /// KIP-345 `group.instance.id` (static membership), JoinGroup v5+.
    pub group_instance_id: Option<String>,
    pub protocol_type: String,
    /// In the member's order of preference.
    pub protocols: Vec<Protocol>,
    pub session_timeout_ms: i32,
    /// JoinGroup v0 has none: the front end passes the session timeout, as Kafka does.
    pub rebalance_timeout_ms: i32,
    pub client_id: String,
    pub client_host: String,
    /// KIP-394: true for JoinGroup v4+, where a first join without member id gets
    /// [`CoordinatorError::MemberIdRequired`] and the id to rejoin with.
    pub require_known_member_id: bool,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct JoinGroupResponse {
    pub error: Option<CoordinatorError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    /// KIP-814 (v9+): the static leader rejoined without a rebalance and must not reassign.
    pub skip_assignment: bool,
    pub member_id: String,
    /// The members and their metadata for the selected protocol; only the leader gets them.
    pub members: Vec<JoinGroupMember>,
}

impl JoinGroupResponse {
    pub fn error(error: CoordinatorError, member_id: &str) -> Self {
        Self {
            error: Some(error),
            generation_id: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinGroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncGroupRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// SyncGroup v5+; checked against the group's when present.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment (empty from followers).
    pub assignments: Vec<MemberAssignment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAssignment {
    pub member_id: String,
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SyncGroupResponse {
    pub error: Option<CoordinatorError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncGroupResponse {
    pub fn error(error: CoordinatorError) -> Self {
        Self {
            error: Some(error),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// LeaveGroup; versions 0 to 2 carry one member (the front end makes a one-member batch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveGroupRequest {
    pub group_id: String,
    pub members: Vec<LeavingMember>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeavingMember {
    /// May be empty for a static member identified by its instance id (v3+).
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LeaveGroupResponse {
    /// An error for the whole request; per-member errors are in `members`.
    pub error: Option<CoordinatorError>,
    pub members: Vec<LeftMember>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub error: Option<CoordinatorError>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    /// `-1` for a commit outside group management (a "simple" consumer or an admin tool).
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub topics: Vec<CommitTopic>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitTopic {
    pub name: String,
    pub partitions: Vec<CommitPartition>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitPartition {
    pub partition: i32,
    pub offset: i64,
    /// `-1` when unknown (before OffsetCommit v6).
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    /// OffsetCommit v1 only; the commit time is the coordinator's clock otherwise.
    pub commit_timestamp_ms: Option<i64>,
}

/// A per-topic list of per-partition outcomes (OffsetCommit, OffsetDelete).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicResults {
    pub name: String,
    pub partitions: Vec<PartitionResult>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionResult {
    pub partition: i32,
    pub error: Option<CoordinatorError>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OffsetCommitResponse {
    pub topics: Vec<TopicResults>,
}

/// Topics and partitions named by a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPartitions {
    pub name: String,
    pub partitions: Vec<i32>,
}

/// OffsetFetch for one group (v8+ multi-group requests are one call per group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetFetchRequest {
    pub group_id: String,
    /// `None`: every committed offset of the group.
    pub topics: Option<Vec<TopicPartitions>>,
    /// Without transactions every committed offset is stable, so this never delays or fails.
    pub require_stable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OffsetFetchResponse {
    pub error: Option<CoordinatorError>,
    pub topics: Vec<FetchedTopic>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedTopic {
    pub name: String,
    pub partitions: Vec<FetchedPartition>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedPartition {
    pub partition: i32,
    /// `-1` when nothing is committed.
    pub offset: i64,
    pub leader_epoch: i32,
    /// Empty when nothing is committed (Kafka's `NO_METADATA`).
    pub metadata: String,
    pub error: Option<CoordinatorError>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedGroup {
    pub group_id: String,
    pub error: Option<CoordinatorError>,
    /// `Dead` for a group that does not exist (Kafka answers so, without error).
    pub state: GroupState,
    pub protocol_type: String,
    /// The selected protocol while Stable, empty otherwise.
    pub protocol_data: String,
    pub members: Vec<DescribedMember>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Metadata and assignment are filled only while the group is Stable, as Kafka does.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetDeleteRequest {
    pub group_id: String,
    pub topics: Vec<TopicPartitions>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OffsetDeleteResponse {
    pub error: Option<CoordinatorError>,
    pub topics: Vec<TopicResults>,
}

/// A group as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation_id: i32,
    pub leader: Option<String>,
    pub members: Vec<MemberView>,
    pub offsets: Vec<CommittedOffsetView>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// Opaque bytes chosen by the leader (a ConsumerProtocolAssignment for consumers).
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffsetView {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// A committed offset beside its partition's log end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    /// `None` when the partition's end is unknown (the topic was deleted).
    pub log_end: Option<i64>,
    pub lag: Option<i64>,
}

impl GroupView {
    /// Lag per committed partition; `log_end(topic, partition)` gives the partition's end
    /// (the admin API passes a closure over the broker).
    pub fn lag(&self, log_end: impl Fn(&str, i32) -> Option<i64>) -> Vec<PartitionLag> {
        self.offsets
            .iter()
            .map(|o| {
                let end = log_end(&o.topic, o.partition);
                PartitionLag {
                    topic: o.topic.clone(),
                    partition: o.partition,
                    committed: o.offset,
                    log_end: end,
                    lag: end.map(|e| (e - o.offset).max(0)),
                }
            })
            .collect()
    }
}
