//! The group coordinator of one offsets partition as a pure state machine, shaped like Kafka's
//! `GroupMetadataManager` for classic groups: each handler takes a request and the current time
//! and returns an [`Output`]: the response, the records to append (all of one operation go in
//! one batch), and the completions of parked JoinGroup/SyncGroup requests of other members. Time
//! only enters as `now_ms` arguments; [`GroupStateMachine::tick`] fires the deadlines.
//!
//! [`GroupStateMachine::replay`] applies a record. Loading replays the log; while serving, each
//! handler replays the records it emits, so there is one path from records to persisted state
//! (offsets change only through it; for group metadata the record is derived from the live group
//! and replaying it changes nothing, as in Kafka where classic groups are updated in place).
//!
//! Deliberate simplifications, each documented where it lives: no transactional offset commits
//! (so `require_stable` is trivially satisfied), OffsetCommit retention times (v2 to v4) are
//! ignored as in Kafka 2.1+, and the commit of a topic that does not exist is refused by the front
//! end (it knows the topics), not here.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::api::*;
use crate::config::CoordinatorConfig;
use crate::error::CoordinatorError;
use crate::group::{subscribed_topics, CommittedOffset, Group, GroupState, InitialJoin, Member};
use crate::record::{
    CoordinatorRecord, GroupMetadataKey, GroupMetadataValue, OffsetCommitKey, OffsetCommitValue,
};

/// Longest group id, member id prefix, or other string we accept (Kafka strings are int16-sized).
const STRING_BYTES_MAX: usize = i16::MAX as usize;
/// Longest client id (or instance id) kept as the prefix of a generated member id.
const MEMBER_ID_PREFIX_MAX: usize = 200;

/// A group's last persisted metadata (if any) and its committed offsets.
pub type PersistedGroup = (Option<GroupMetadataValue>, Vec<CommittedOffsetView>);

/// What a handler returns: its response, the records to append before the response (and the
/// completions) may be sent, and the parked requests of other members it completes.
#[derive(Debug)]
pub struct Output<R> {
    pub response: R,
    pub records: Vec<CoordinatorRecord>,
    pub completions: Vec<Completion>,
}

/// A parked request completed by another request or by a deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    Join {
        group_id: String,
        member_id: String,
        response: JoinGroupResponse,
    },
    Sync {
        group_id: String,
        member_id: String,
        response: SyncGroupResponse,
    },
}

/// A JoinGroup is answered at once or parked until the join phase completes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    Done(JoinGroupResponse),
    /// Parked under this member id (a new id when the request had none and KIP-394 does not
    /// apply); its response comes as a [`Completion::Join`].
    Parked {
        member_id: String,
    },
}

/// A SyncGroup is answered at once or parked until the leader's assignment arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    Done(SyncGroupResponse),
    Parked,
}

#[derive(Default)]
struct Effects {
    records: Vec<CoordinatorRecord>,
    completions: Vec<Completion>,
}

impl Effects {
    fn output<R>(self, response: R) -> Output<R> {
        Output {
            response,
            records: self.records,
            completions: self.completions,
        }
    }
}

/// The groups and offsets of one partition of `__consumer_offsets`.
#[derive(Clone, Debug)]
pub struct GroupStateMachine {
    config: CoordinatorConfig,
    groups: BTreeMap<String, Group>,
    /// State of the member id generator (splitmix64): deterministic per seed, for tests.
    id_state: u64,
    next_offsets_check_ms: Option<i64>,
}

impl GroupStateMachine {
    /// `seed` makes generated member ids unique across restarts (the runtime passes the time).
    pub fn new(config: CoordinatorConfig, seed: u64) -> Self {
        Self {
            config,
            groups: BTreeMap::new(),
            id_state: seed,
            next_offsets_check_ms: None,
        }
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    // ---- records ----

    /// Applies one record; used when loading and, for every emitted record, while serving.
    pub fn replay(&mut self, record: &CoordinatorRecord) {
        match record {
            CoordinatorRecord::OffsetCommit { key, value } => match value {
                Some(v) => {
                    let group = self
                        .groups
                        .entry(key.group.clone())
                        .or_insert_with(|| Group::new(&key.group));
                    group
                        .offsets
                        .entry(key.topic.clone())
                        .or_default()
                        .insert(key.partition, CommittedOffset::from(v));
                }
                None => {
                    if let Some(group) = self.groups.get_mut(&key.group) {
                        if let Some(partitions) = group.offsets.get_mut(&key.topic) {
                            partitions.remove(&key.partition);
                            if partitions.is_empty() {
                                group.offsets.remove(&key.topic);
                            }
                        }
                        if group.is_disposable() {
                            self.groups.remove(&key.group);
                        }
                    }
                }
            },
            CoordinatorRecord::GroupMetadata { key, value } => match value {
                Some(v) => {
                    let group = self
                        .groups
                        .entry(key.group.clone())
                        .or_insert_with(|| Group::new(&key.group));
                    group.apply_value(v);
                    group.persisted = Some(v.clone());
                }
                None => {
                    // The group is gone; offsets have their own tombstones, and a group that
                    // still has offsets lives on as a group without membership.
                    if let Some(group) = self.groups.get_mut(&key.group) {
                        let offsets = std::mem::take(&mut group.offsets);
                        let mut fresh = Group::new(&key.group);
                        fresh.offsets = offsets;
                        if fresh.offsets.is_empty() {
                            self.groups.remove(&key.group);
                        } else {
                            *group = fresh;
                        }
                    }
                }
            },
        }
    }

    /// Ends a load: members read from the log must heartbeat within their session timeout from
    /// now, as in Kafka after a coordinator failover.
    pub fn finish_load(&mut self, now_ms: i64) {
        for group in self.groups.values_mut() {
            for member in group.members.values_mut() {
                if member.heartbeat_deadline_ms == i64::MAX {
                    member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                }
            }
        }
    }

    /// The live state as records, for compaction: one group metadata record per group that has
    /// a persisted generation, then every committed offset.
    pub fn snapshot(&self) -> Vec<CoordinatorRecord> {
        let mut records = Vec::new();
        for group in self.groups.values() {
            if let Some(value) = &group.persisted {
                records.push(CoordinatorRecord::GroupMetadata {
                    key: GroupMetadataKey {
                        group: group.id.clone(),
                    },
                    value: Some(value.clone()),
                });
            }
            for (topic, partitions) in &group.offsets {
                for (partition, o) in partitions {
                    records.push(offset_record(&group.id, topic, *partition, o));
                }
            }
        }
        records
    }

    /// Keys with a live value (group metadata and offsets), for the compaction threshold.
    pub fn live_keys(&self) -> u64 {
        self.groups
            .values()
            .map(|g| g.offset_count() as u64 + 1)
            .sum()
    }

    // ---- queries ----

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    pub fn generation(&self, group_id: &str) -> Option<i32> {
        self.groups.get(group_id).map(|g| g.generation_id)
    }

    /// The group as the admin API shows it.
    pub fn group_view(&self, group_id: &str) -> Option<GroupView> {
        let g = self.groups.get(group_id)?;
        Some(GroupView {
            group_id: g.id.clone(),
            state: g.state,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol_name.clone(),
            generation_id: g.generation_id,
            leader: g.leader_id.clone(),
            members: g
                .members
                .values()
                .map(|m| MemberView {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    assignment: m.assignment.clone(),
                })
                .collect(),
            offsets: g
                .offsets
                .iter()
                .flat_map(|(topic, partitions)| {
                    partitions.iter().map(move |(p, o)| CommittedOffsetView {
                        topic: topic.clone(),
                        partition: *p,
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: o.metadata.clone(),
                        commit_timestamp_ms: o.commit_timestamp_ms,
                    })
                })
                .collect(),
        })
    }

    /// Every group's last persisted metadata and its offsets: what a reload reproduces (groups
    /// that have written nothing yet are left out).
    pub fn persisted_groups(&self) -> BTreeMap<String, PersistedGroup> {
        self.groups
            .values()
            .filter(|g| g.persisted.is_some() || !g.offsets.is_empty())
            .map(|g| {
                let offsets = self
                    .group_view(&g.id)
                    .map(|v| v.offsets)
                    .unwrap_or_default();
                (g.id.clone(), (g.persisted.clone(), offsets))
            })
            .collect()
    }

    /// The earliest deadline any group waits for, so a timer can sleep until then.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let mut next = self.next_offsets_check_ms;
        let mut consider = |t: i64| next = Some(next.map_or(t, |n: i64| n.min(t)));
        for g in self.groups.values() {
            g.join_deadline_ms.into_iter().for_each(&mut consider);
            g.sync_deadline_ms.into_iter().for_each(&mut consider);
            g.pending_members.values().copied().for_each(&mut consider);
            for m in g.members.values() {
                if !m.awaiting_join && !m.awaiting_sync && m.heartbeat_deadline_ms != i64::MAX {
                    consider(m.heartbeat_deadline_ms);
                }
            }
        }
        next
    }

    // ---- JoinGroup ----

    pub fn join_group(&mut self, req: JoinGroupRequest, now_ms: i64) -> Output<JoinOutcome> {
        let mut fx = Effects::default();
        let fail = |e| JoinOutcome::Done(JoinGroupResponse::error(e, &req.member_id));
        if req.group_id.is_empty() || req.group_id.len() > STRING_BYTES_MAX {
            return fx.output(fail(CoordinatorError::InvalidGroupId));
        }
        if req.session_timeout_ms < self.config.group_min_session_timeout_ms
            || req.session_timeout_ms > self.config.group_max_session_timeout_ms
        {
            return fx.output(fail(CoordinatorError::InvalidSessionTimeout));
        }
        let unknown_member = req.member_id.is_empty();
        if !self.groups.contains_key(&req.group_id) {
            if !unknown_member {
                return fx.output(fail(CoordinatorError::UnknownMemberId));
            }
            if self.groups.len() >= self.config.groups_per_partition_max {
                return fx.output(fail(CoordinatorError::CoordinatorNotAvailable));
            }
            self.groups
                .insert(req.group_id.clone(), Group::new(&req.group_id));
        }
        let new_id = if unknown_member {
            let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
            Some(self.generate_member_id(prefix))
        } else {
            None
        };
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return fx.output(fail(CoordinatorError::Internal));
        };
        let outcome = join_checked(group, &self.config, req, new_id, now_ms, &mut fx);
        let group_id = group.id.clone();
        if group.is_disposable() {
            self.groups.remove(&group_id);
        }
        self.replay_all(&fx.records);
        fx.output(outcome)
    }

    // ---- SyncGroup ----

    pub fn sync_group(&mut self, req: SyncGroupRequest, now_ms: i64) -> Output<SyncOutcome> {
        let mut fx = Effects::default();
        let fail = |e| SyncOutcome::Done(SyncGroupResponse::error(e));
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return fx.output(fail(CoordinatorError::UnknownMemberId));
        };
        if group.state == GroupState::Dead {
            return fx.output(fail(CoordinatorError::CoordinatorNotAvailable));
        }
        if group.is_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            return fx.output(fail(CoordinatorError::FencedInstanceId));
        }
        if !group.members.contains_key(&req.member_id) {
            return fx.output(fail(CoordinatorError::UnknownMemberId));
        }
        if req.generation_id != group.generation_id {
            return fx.output(fail(CoordinatorError::IllegalGeneration));
        }
        let type_mismatch =
            matches!((&req.protocol_type, &group.protocol_type), (Some(a), Some(b)) if a != b);
        let name_mismatch =
            matches!((&req.protocol_name, &group.protocol_name), (Some(a), Some(b)) if a != b);
        if type_mismatch || name_mismatch {
            return fx.output(fail(CoordinatorError::InconsistentGroupProtocol));
        }
        let outcome = match group.state {
            GroupState::Empty => fail(CoordinatorError::UnknownMemberId),
            GroupState::Dead => fail(CoordinatorError::CoordinatorNotAvailable),
            GroupState::PreparingRebalance => fail(CoordinatorError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                group.pending_sync.remove(&req.member_id);
                let is_leader = group.is_leader(&req.member_id);
                if let Some(member) = group.members.get_mut(&req.member_id) {
                    member.awaiting_sync = true;
                    member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                }
                if is_leader {
                    let mut given: BTreeMap<String, Bytes> = req
                        .assignments
                        .into_iter()
                        .map(|a| (a.member_id, a.assignment))
                        .collect();
                    for member in group.members.values_mut() {
                        // Members the leader left out get an empty assignment, as in Kafka.
                        member.assignment = given.remove(&member.member_id).unwrap_or_default();
                    }
                    group.transition(GroupState::Stable, now_ms);
                    fx.records.push(group_record(group));
                    let mut own = None;
                    for member in group.members.values_mut() {
                        if !member.awaiting_sync {
                            continue;
                        }
                        member.awaiting_sync = false;
                        let response = SyncGroupResponse {
                            error: None,
                            protocol_type: group.protocol_type.clone(),
                            protocol_name: group.protocol_name.clone(),
                            assignment: member.assignment.clone(),
                        };
                        if member.member_id == req.member_id {
                            own = Some(response);
                        } else {
                            fx.completions.push(Completion::Sync {
                                group_id: group.id.clone(),
                                member_id: member.member_id.clone(),
                                response,
                            });
                        }
                    }
                    if group.pending_sync.is_empty() {
                        group.sync_deadline_ms = None;
                    }
                    SyncOutcome::Done(own.unwrap_or_default())
                } else {
                    SyncOutcome::Parked
                }
            }
            GroupState::Stable => {
                group.pending_sync.remove(&req.member_id);
                if group.pending_sync.is_empty() {
                    group.sync_deadline_ms = None;
                }
                match group.members.get_mut(&req.member_id) {
                    Some(member) => {
                        member.heartbeat_deadline_ms =
                            now_ms + i64::from(member.session_timeout_ms);
                        SyncOutcome::Done(SyncGroupResponse {
                            error: None,
                            protocol_type: group.protocol_type.clone(),
                            protocol_name: group.protocol_name.clone(),
                            assignment: member.assignment.clone(),
                        })
                    }
                    None => fail(CoordinatorError::UnknownMemberId),
                }
            }
        };
        self.replay_all(&fx.records);
        fx.output(outcome)
    }

    // ---- Heartbeat ----

    pub fn heartbeat(
        &mut self,
        req: HeartbeatRequest,
        now_ms: i64,
    ) -> Output<Result<(), CoordinatorError>> {
        let fx = Effects::default();
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return fx.output(Err(CoordinatorError::UnknownMemberId));
        };
        let result = (|| {
            if group.state == GroupState::Dead {
                return Err(CoordinatorError::CoordinatorNotAvailable);
            }
            if group.is_fenced(req.group_instance_id.as_deref(), &req.member_id) {
                return Err(CoordinatorError::FencedInstanceId);
            }
            let generation = group.generation_id;
            let state = group.state;
            let Some(member) = group.members.get_mut(&req.member_id) else {
                return Err(CoordinatorError::UnknownMemberId);
            };
            if req.generation_id != generation {
                return Err(CoordinatorError::IllegalGeneration);
            }
            match state {
                GroupState::Empty | GroupState::Dead => Err(CoordinatorError::UnknownMemberId),
                GroupState::PreparingRebalance => {
                    member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                    Err(CoordinatorError::RebalanceInProgress)
                }
                GroupState::CompletingRebalance | GroupState::Stable => {
                    member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                    Ok(())
                }
            }
        })();
        fx.output(result)
    }

    // ---- LeaveGroup ----

    pub fn leave_group(
        &mut self,
        req: LeaveGroupRequest,
        now_ms: i64,
    ) -> Output<LeaveGroupResponse> {
        let mut fx = Effects::default();
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            let members = req
                .members
                .into_iter()
                .map(|m| LeftMember {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    error: Some(CoordinatorError::UnknownMemberId),
                })
                .collect();
            return fx.output(LeaveGroupResponse {
                error: None,
                members,
            });
        };
        if group.state == GroupState::Dead {
            return fx.output(LeaveGroupResponse {
                error: Some(CoordinatorError::CoordinatorNotAvailable),
                members: Vec::new(),
            });
        }
        let mut results = Vec::with_capacity(req.members.len());
        for leaving in req.members {
            let error = leave_one(group, &self.config, &leaving, now_ms, &mut fx).err();
            results.push(LeftMember {
                member_id: leaving.member_id,
                group_instance_id: leaving.group_instance_id,
                error,
            });
        }
        self.replay_all(&fx.records);
        fx.output(LeaveGroupResponse {
            error: None,
            members: results,
        })
    }

    // ---- OffsetCommit ----

    pub fn commit_offsets(
        &mut self,
        req: OffsetCommitRequest,
        now_ms: i64,
    ) -> Output<OffsetCommitResponse> {
        let mut fx = Effects::default();
        let all = |e: CoordinatorError| OffsetCommitResponse {
            topics: req
                .topics
                .iter()
                .map(|t| TopicResults {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| PartitionResult {
                            partition: p.partition,
                            error: Some(e),
                        })
                        .collect(),
                })
                .collect(),
        };
        if req.group_id.len() > STRING_BYTES_MAX {
            return fx.output(all(CoordinatorError::InvalidGroupId));
        }
        if !self.groups.contains_key(&req.group_id) {
            if req.generation_id >= 0 {
                // A generation of a group we do not know: a stale member (Kafka's answer).
                return fx.output(all(CoordinatorError::IllegalGeneration));
            }
            if self.groups.len() >= self.config.groups_per_partition_max {
                return fx.output(all(CoordinatorError::CoordinatorNotAvailable));
            }
            self.groups
                .insert(req.group_id.clone(), Group::new(&req.group_id));
        }
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return fx.output(all(CoordinatorError::Internal));
        };
        if let Err(e) = validate_commit(group, &req, now_ms) {
            if group.is_disposable() {
                self.groups.remove(&req.group_id);
            }
            return fx.output(all(e));
        }
        let mut response = OffsetCommitResponse {
            topics: Vec::with_capacity(req.topics.len()),
        };
        for topic in req.topics {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in topic.partitions {
                let metadata = p.metadata.unwrap_or_default();
                let error = if metadata.len() > self.config.offset_metadata_max_bytes {
                    Some(CoordinatorError::OffsetMetadataTooLarge)
                } else if topic.name.len() > STRING_BYTES_MAX {
                    Some(CoordinatorError::UnknownTopicOrPartition)
                } else {
                    fx.records.push(CoordinatorRecord::OffsetCommit {
                        key: OffsetCommitKey {
                            group: req.group_id.clone(),
                            topic: topic.name.clone(),
                            partition: p.partition,
                        },
                        value: Some(OffsetCommitValue {
                            offset: p.offset,
                            leader_epoch: p.leader_epoch,
                            metadata,
                            commit_timestamp_ms: p
                                .commit_timestamp_ms
                                .filter(|t| *t >= 0)
                                .unwrap_or(now_ms),
                            expire_timestamp_ms: -1,
                        }),
                    });
                    None
                };
                partitions.push(PartitionResult {
                    partition: p.partition,
                    error,
                });
            }
            response.topics.push(TopicResults {
                name: topic.name,
                partitions,
            });
        }
        if fx.records.is_empty()
            && self
                .groups
                .get(&req.group_id)
                .is_some_and(Group::is_disposable)
        {
            self.groups.remove(&req.group_id);
        }
        self.replay_all(&fx.records);
        fx.output(response)
    }

    // ---- OffsetFetch ----

    /// Committed offsets of one group. Without transactions nothing is pending, so
    /// `require_stable` needs no waiting.
    pub fn fetch_offsets(&self, req: &OffsetFetchRequest) -> OffsetFetchResponse {
        let group = self.groups.get(&req.group_id);
        let lookup = |topic: &str, partition: i32| match group
            .and_then(|g| g.offsets.get(topic)?.get(&partition))
        {
            Some(o) => FetchedPartition {
                partition,
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata.clone(),
                error: None,
            },
            None => FetchedPartition {
                partition,
                offset: -1,
                leader_epoch: -1,
                metadata: String::new(),
                error: None,
            },
        };
        let topics = match &req.topics {
            Some(topics) => topics
                .iter()
                .map(|t| FetchedTopic {
                    name: t.name.clone(),
                    partitions: t.partitions.iter().map(|p| lookup(&t.name, *p)).collect(),
                })
                .collect(),
            None => group
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|(topic, partitions)| FetchedTopic {
                            name: topic.clone(),
                            partitions: partitions.keys().map(|p| lookup(topic, *p)).collect(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        OffsetFetchResponse {
            error: None,
            topics,
        }
    }

    // ---- DescribeGroups / ListGroups ----

    pub fn describe_group(&self, group_id: &str) -> DescribedGroup {
        let Some(g) = self.groups.get(group_id) else {
            return DescribedGroup {
                group_id: group_id.to_string(),
                error: None,
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol_data: String::new(),
                members: Vec::new(),
            };
        };
        let stable = g.state == GroupState::Stable;
        DescribedGroup {
            group_id: g.id.clone(),
            error: None,
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol_data: if stable {
                g.protocol_name.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members: g
                .members
                .values()
                .map(|m| DescribedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(g.protocol_name.as_deref())
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    /// Groups whose state is in `states` (every state when empty).
    pub fn list_groups(&self, states: &[GroupState]) -> Vec<ListedGroup> {
        self.groups
            .values()
            .filter(|g| states.is_empty() || states.contains(&g.state))
            .map(|g| ListedGroup {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect()
    }

    // ---- DeleteGroups / OffsetDelete ----

    pub fn delete_groups(
        &mut self,
        group_ids: &[String],
    ) -> Output<Vec<(String, Option<CoordinatorError>)>> {
        let mut fx = Effects::default();
        let mut results = Vec::with_capacity(group_ids.len());
        for id in group_ids {
            let error = match self.groups.get(id) {
                None => Some(CoordinatorError::GroupIdNotFound),
                Some(g) => match g.state {
                    GroupState::Dead => Some(CoordinatorError::GroupIdNotFound),
                    GroupState::Empty => {
                        let mut records = Vec::new();
                        for (topic, partitions) in &g.offsets {
                            for partition in partitions.keys() {
                                records.push(offset_tombstone(id, topic, *partition));
                            }
                        }
                        records.push(CoordinatorRecord::GroupMetadata {
                            key: GroupMetadataKey { group: id.clone() },
                            value: None,
                        });
                        self.replay_all(&records);
                        // A group that never had records (no commit, no generation) goes too.
                        self.groups.remove(id);
                        fx.records.extend(records);
                        None
                    }
                    _ => Some(CoordinatorError::NonEmptyGroup),
                },
            };
            results.push((id.clone(), error));
        }
        fx.output(results)
    }

    pub fn delete_offsets(&mut self, req: &OffsetDeleteRequest) -> Output<OffsetDeleteResponse> {
        let mut fx = Effects::default();
        let top = |e| OffsetDeleteResponse {
            error: Some(e),
            topics: Vec::new(),
        };
        let Some(group) = self.groups.get(&req.group_id) else {
            return fx.output(top(CoordinatorError::GroupIdNotFound));
        };
        // Topics the active group consumes; `None` means "cannot tell, so all of them".
        let subscribed: Option<Option<BTreeSet<String>>> = match group.state {
            GroupState::Dead => return fx.output(top(CoordinatorError::GroupIdNotFound)),
            GroupState::Empty => Some(Some(BTreeSet::new())),
            _ if group.protocol_type.as_deref() == Some("consumer") => {
                let mut topics = BTreeSet::new();
                let mut known = true;
                for m in group.members.values() {
                    let metadata = match group.protocol_name.as_deref() {
                        Some(p) => m.metadata(Some(p)),
                        None => m
                            .protocols
                            .first()
                            .map(|p| p.metadata.clone())
                            .unwrap_or_default(),
                    };
                    match subscribed_topics(&metadata) {
                        Some(t) => topics.extend(t),
                        None => known = false,
                    }
                }
                Some(known.then_some(topics))
            }
            _ => None,
        };
        let Some(subscribed) = subscribed else {
            return fx.output(top(CoordinatorError::NonEmptyGroup));
        };
        let mut response = OffsetDeleteResponse::default();
        for topic in &req.topics {
            let in_use = subscribed.as_ref().is_none_or(|s| s.contains(&topic.name));
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for &partition in &topic.partitions {
                let error = if in_use {
                    Some(CoordinatorError::GroupSubscribedToTopic)
                } else {
                    if group
                        .offsets
                        .get(&topic.name)
                        .is_some_and(|p| p.contains_key(&partition))
                    {
                        fx.records
                            .push(offset_tombstone(&req.group_id, &topic.name, partition));
                    }
                    None
                };
                partitions.push(PartitionResult { partition, error });
            }
            response.topics.push(TopicResults {
                name: topic.name.clone(),
                partitions,
            });
        }
        self.replay_all(&fx.records);
        fx.output(response)
    }

    // ---- time ----

    /// Fires every deadline that has passed: expired sessions and KIP-394 pending members,
    /// join phases (including the initial delay) and sync phases that ran out of time, and,
    /// every `offsets_retention_check_interval_ms`, offset expiry.
    pub fn tick(&mut self, now_ms: i64) -> Output<()> {
        let mut fx = Effects::default();
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in &ids {
            let Some(group) = self.groups.get_mut(id) else {
                continue;
            };
            tick_group(group, &self.config, now_ms, &mut fx);
        }
        let check_due = match self.next_offsets_check_ms {
            Some(at) => now_ms >= at,
            None => {
                self.next_offsets_check_ms =
                    Some(now_ms + self.config.offsets_retention_check_interval_ms);
                false
            }
        };
        self.replay_all(&fx.records);
        if check_due {
            self.next_offsets_check_ms =
                Some(now_ms + self.config.offsets_retention_check_interval_ms);
            let expired = self.expire_offsets(now_ms);
            fx.records.extend(expired);
        }
        fx.output(())
    }

    /// KIP-211: offsets of an Empty group expire `offsets_retention_ms` after the group became
    /// empty (after their commit for groups that never had members); offsets of an active
    /// consumer group expire only for topics no member subscribes to. A group left Empty with no
    /// offsets is removed with a tombstone.
    fn expire_offsets(&mut self, now_ms: i64) -> Vec<CoordinatorRecord> {
        let retention = self.config.offsets_retention_ms;
        let mut expired_groups = Vec::new();
        let mut all_records = Vec::new();
        for group in self.groups.values() {
            let mut records = Vec::new();
            let subscribed: Option<BTreeSet<String>> = match group.state {
                GroupState::Empty => None,
                _ if group.protocol_type.as_deref() == Some("consumer")
                    && group.protocol_name.is_some() =>
                {
                    let mut topics = BTreeSet::new();
                    let mut known = true;
                    for m in group.members.values() {
                        match subscribed_topics(&m.metadata(group.protocol_name.as_deref())) {
                            Some(t) => topics.extend(t),
                            None => known = false,
                        }
                    }
                    if !known {
                        continue;
                    }
                    Some(topics)
                }
                _ => continue,
            };
            for (topic, partitions) in &group.offsets {
                if subscribed.as_ref().is_some_and(|s| s.contains(topic)) {
                    continue;
                }
                for (partition, o) in partitions {
                    let base = if subscribed.is_none()
                        && group.protocol_type.is_some()
                        && group.state_timestamp_ms >= 0
                    {
                        group.state_timestamp_ms
                    } else {
                        o.commit_timestamp_ms
                    };
                    let expires_at = if o.expire_timestamp_ms >= 0 {
                        o.expire_timestamp_ms
                    } else {
                        base.saturating_add(retention)
                    };
                    if now_ms >= expires_at {
                        records.push(offset_tombstone(&group.id, topic, *partition));
                    }
                }
            }
            let all_gone = records.len() == group.offset_count();
            if group.state == GroupState::Empty && group.members.is_empty() && all_gone {
                records.push(CoordinatorRecord::GroupMetadata {
                    key: GroupMetadataKey {
                        group: group.id.clone(),
                    },
                    value: None,
                });
                expired_groups.push(group.id.clone());
            }
            all_records.extend(records);
        }
        self.replay_all(&all_records);
        for id in expired_groups {
            if self
                .groups
                .get(&id)
                .is_some_and(|g| g.state == GroupState::Empty && g.members.is_empty())
            {
                self.groups.remove(&id);
            }
        }
        all_records
    }

    fn replay_all(&mut self, records: &[CoordinatorRecord]) {
        for record in records {
            self.replay(record);
        }
    }

    /// `prefix-xxxxxxxx-xxxx-4xxx-xxxx-xxxxxxxxxxxx`, as Kafka's `clientId-UUID`.
    fn generate_member_id(&mut self, prefix: &str) -> String {
        let mut next = || {
            self.id_state = self.id_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.id_state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let (hi, lo) = (next(), next());
        let mut cut = prefix.len().min(MEMBER_ID_PREFIX_MAX);
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        format!(
            "{}-{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            &prefix[..cut],
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0x0fff,
            ((lo >> 48) & 0x3fff) | 0x8000,
            lo & 0xffff_ffff_ffff
        )
    }
}

// ---- helpers over one group ----

fn group_record(group: &Group) -> CoordinatorRecord {
    CoordinatorRecord::GroupMetadata {
        key: GroupMetadataKey {
            group: group.id.clone(),
        },
        value: Some(group.to_value()),
    }
}

fn offset_record(
    group: &str,
    topic: &str,
    partition: i32,
    o: &CommittedOffset,
) -> CoordinatorRecord {
    CoordinatorRecord::OffsetCommit {
        key: OffsetCommitKey {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
        },
        value: Some(OffsetCommitValue {
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata: o.metadata.clone(),
            commit_timestamp_ms: o.commit_timestamp_ms,
            expire_timestamp_ms: o.expire_timestamp_ms,
        }),
    }
}

fn offset_tombstone(group: &str, topic: &str, partition: i32) -> CoordinatorRecord {
    CoordinatorRecord::OffsetCommit {
        key: OffsetCommitKey {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
        },
        value: None,
    }
}

/// The JoinGroup answer for a member of the current generation: the leader gets the members.
fn current_join_response(
    group: &Group,
    member_id: &str,
    skip_assignment: bool,
) -> JoinGroupResponse {
    let is_leader = group.is_leader(member_id);
    JoinGroupResponse {
        error: None,
        generation_id: group.generation_id,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader: group.leader_id.clone().unwrap_or_default(),
        skip_assignment,
        member_id: member_id.to_string(),
        members: if is_leader {
            group
                .members
                .values()
                .map(|m| JoinGroupMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata(group.protocol_name.as_deref()),
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

fn join_checked(
    group: &mut Group,
    config: &CoordinatorConfig,
    req: JoinGroupRequest,
    new_id: Option<String>,
    now_ms: i64,
    fx: &mut Effects,
) -> JoinOutcome {
    let fail = |e| JoinOutcome::Done(JoinGroupResponse::error(e, &req.member_id));
    if group.state == GroupState::Dead {
        return fail(CoordinatorError::CoordinatorNotAvailable);
    }
    let known = group.members.contains_key(&req.member_id);
    let is_static_rejoin = req
        .group_instance_id
        .as_ref()
        .is_some_and(|i| group.static_members.contains_key(i));
    if !known
        && !is_static_rejoin
        && !group.pending_members.contains_key(&req.member_id)
        && group.members.len() + group.pending_members.len() >= config.group_max_size
    {
        return fail(CoordinatorError::GroupMaxSizeReached);
    }
    if !group.supports_protocols(&req.protocol_type, &req.protocols) {
        return fail(CoordinatorError::InconsistentGroupProtocol);
    }
    match new_id {
        Some(new_id) => join_new_member(group, config, req, new_id, now_ms, fx),
        None => join_known_member(group, config, req, now_ms, fx),
    }
}

fn join_new_member(
    group: &mut Group,
    config: &CoordinatorConfig,
    req: JoinGroupRequest,
    new_id: String,
    now_ms: i64,
    fx: &mut Effects,
) -> JoinOutcome {
    if let Some(instance) = req.group_instance_id.clone() {
        if let Some(old_id) = group.static_members.get(&instance).cloned() {
            return replace_static_member(group, config, req, &old_id, new_id, now_ms, fx);
        }
        return add_member_and_rebalance(group, config, req, new_id, now_ms, fx);
    }
    if req.require_known_member_id {
        // KIP-394: hand out the id; the member must rejoin with it before its session ends.
        group
            .pending_members
            .insert(new_id.clone(), now_ms + i64::from(req.session_timeout_ms));
        return JoinOutcome::Done(JoinGroupResponse::error(
            CoordinatorError::MemberIdRequired,
            &new_id,
        ));
    }
    add_member_and_rebalance(group, config, req, new_id, now_ms, fx)
}

fn join_known_member(
    group: &mut Group,
    config: &CoordinatorConfig,
    req: JoinGroupRequest,
    now_ms: i64,
    fx: &mut Effects,
) -> JoinOutcome {
    let fail = |e| JoinOutcome::Done(JoinGroupResponse::error(e, &req.member_id));
    let id = req.member_id.clone();
    if group.pending_members.contains_key(&id) {
        if req.group_instance_id.is_some() {
            return fail(CoordinatorError::UnknownMemberId);
        }
        return add_member_and_rebalance(group, config, req, id, now_ms, fx);
    }
    if group.is_fenced(req.group_instance_id.as_deref(), &id) {
        return fail(CoordinatorError::FencedInstanceId);
    }
    let Some(member) = group.members.get(&id) else {
        return fail(CoordinatorError::UnknownMemberId);
    };
    let matches = member.matches(&req.protocols);
    match group.state {
        GroupState::Empty | GroupState::Dead => fail(CoordinatorError::UnknownMemberId),
        GroupState::PreparingRebalance => {
            update_member_and_rebalance(group, config, req, now_ms, fx)
        }
        GroupState::CompletingRebalance => {
            if matches {
                // Same metadata: it missed the JoinGroup answer; give it again.
                JoinOutcome::Done(current_join_response(group, &id, false))
            } else {
                update_member_and_rebalance(group, config, req, now_ms, fx)
            }
        }
        GroupState::Stable => {
            if group.is_leader(&id) || !matches {
                // The leader rejoining (e.g. the second round of a cooperative rebalance) or
                // changed metadata starts a rebalance.
                update_member_and_rebalance(group, config, req, now_ms, fx)
            } else {
                JoinOutcome::Done(current_join_response(group, &id, false))
            }
        }
    }
}

fn add_member_and_rebalance(
    group: &mut Group,
    config: &CoordinatorConfig,
    req: JoinGroupRequest,
    member_id: String,
    now_ms: i64,
    fx: &mut Effects,
) -> JoinOutcome {
    if group.members.is_empty() {
        group.protocol_type = Some(req.protocol_type.clone());
    }
    if group.leader_id.is_none() {
        group.leader_id = Some(member_id.clone());
    }
    if let Some(instance) = &req.group_instance_id {
        group
            .static_members
            .insert(instance.clone(), member_id.clone());
    }
    group.pending_members.remove(&member_id);
    if let Some(initial) = group.initial_join.as_mut() {
        initial.new_member_added = true;
    }
    let seq = group.next_seq;
    group.next_seq += 1;
    group.members.insert(
        member_id.clone(),
        Member {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: true,
            awaiting_sync: false,
            heartbeat_deadline_ms: now_ms + i64::from(req.session_timeout_ms),
            seq,
        },
    );
    maybe_prepare_rebalance(group, config, now_ms, fx);
    try_complete_join(group, now_ms, fx);
    JoinOutcome::Parked { member_id }
}

fn update_member_and_rebalance(
    group: &mut Group,
    config: &CoordinatorConfig,
    req: JoinGroupRequest,
    now_ms: i64,
    fx: &mut Effects,
) -> JoinOutcome {
    let id = req.member_id.clone();
    if let Some(member) = group.members.get_mut(&id) {
        member.protocols = req.protocols;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.session_timeout_ms = req.session_timeout_ms;
        member.awaiting_join = true;
        member.heartbeat_deadline_ms = now_ms + i64::from(req.session_timeout_ms);
    }
    maybe_prepare_rebalance(group, config, now_ms, fx);
    try_complete_join(group, now_ms, fx);
    JoinOutcome::Parked { member_id: id }
}

/// KIP-345: a known `group.instance.id` joins with a new member id. The old id is fenced; with
/// unchanged protocols a Stable group keeps its generation and assignment (no rebalance);
/// otherwise, or while a generation is being assigned, the group rebalances.
fn replace_static_member(
    group: &mut Group,
    config: &CoordinatorConfig,
    req: JoinGroupRequest,
    old_id: &str,
    new_id: String,
    now_ms: i64,
    fx: &mut Effects,
) -> JoinOutcome {
    let Some(mut member) = group.members.remove(old_id) else {
        return JoinOutcome::Done(JoinGroupResponse::error(
            CoordinatorError::UnknownMemberId,
            &req.member_id,
        ));
    };
    if member.awaiting_join {
        fx.completions.push(Completion::Join {
            group_id: group.id.clone(),
            member_id: old_id.to_string(),
            response: JoinGroupResponse::error(CoordinatorError::FencedInstanceId, old_id),
        });
    }
    if member.awaiting_sync {
        fx.completions.push(Completion::Sync {
            group_id: group.id.clone(),
            member_id: old_id.to_string(),
            response: SyncGroupResponse::error(CoordinatorError::FencedInstanceId),
        });
        member.awaiting_sync = false;
    }
    let protocols_unchanged = member.matches(&req.protocols);
    member.member_id = new_id.clone();
    member.client_id = req.client_id.clone();
    member.client_host = req.client_host.clone();
    member.rebalance_timeout_ms = req.rebalance_timeout_ms;
    member.session_timeout_ms = req.session_timeout_ms;
    member.heartbeat_deadline_ms = now_ms + i64::from(req.session_timeout_ms);
    if let Some(instance) = &req.group_instance_id {
        group
            .static_members
            .insert(instance.clone(), new_id.clone());
    }
    if group.is_leader(old_id) {
        group.leader_id = Some(new_id.clone());
    }
    if group.pending_sync.remove(old_id) {
        group.pending_sync.insert(new_id.clone());
    }
    member.awaiting_join = false;
    group.members.insert(new_id.clone(), member);
    match group.state {
        GroupState::Stable if protocols_unchanged => {
            // Persist the new member id; the generation and assignments stay.
            fx.records.push(group_record(group));
            let is_leader = group.is_leader(&new_id);
            JoinOutcome::Done(current_join_response(group, &new_id, is_leader))
        }
        // CompletingRebalance: the leader may already be assigning to the old member id, which
        // the new one would never get; so rebalance, as Kafka does.
        GroupState::PreparingRebalance | GroupState::Stable | GroupState::CompletingRebalance => {
            if let Some(m) = group.members.get_mut(&new_id) {
                m.protocols = req.protocols;
                m.awaiting_join = true;
            }
            maybe_prepare_rebalance(group, config, now_ms, fx);
            try_complete_join(group, now_ms, fx);
            JoinOutcome::Parked { member_id: new_id }
        }
        GroupState::Empty | GroupState::Dead => JoinOutcome::Done(JoinGroupResponse::error(
            CoordinatorError::UnknownMemberId,
            &req.member_id,
        )),
    }
}

fn maybe_prepare_rebalance(
    group: &mut Group,
    config: &CoordinatorConfig,
    now_ms: i64,
    fx: &mut Effects,
) {
    if matches!(
        group.state,
        GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
    ) {
        prepare_rebalance(group, config, now_ms, fx);
    }
}

fn prepare_rebalance(group: &mut Group, config: &CoordinatorConfig, now_ms: i64, fx: &mut Effects) {
    if group.state == GroupState::CompletingRebalance {
        // The assignment being formed is void: parked SyncGroups learn so.
        for member in group.members.values_mut() {
            member.assignment = Bytes::new();
            if member.awaiting_sync {
                member.awaiting_sync = false;
                fx.completions.push(Completion::Sync {
                    group_id: group.id.clone(),
                    member_id: member.member_id.clone(),
                    response: SyncGroupResponse::error(CoordinatorError::RebalanceInProgress),
                });
            }
        }
    }
    group.pending_sync.clear();
    group.sync_deadline_ms = None;
    let rebalance_timeout_ms = group.rebalance_timeout_ms();
    let delay_ms = i64::from(config.group_initial_rebalance_delay_ms);
    if group.state == GroupState::Empty && delay_ms > 0 {
        group.initial_join = Some(InitialJoin {
            delay_ms,
            remaining_ms: (rebalance_timeout_ms - delay_ms).max(0),
            new_member_added: false,
        });
        group.join_deadline_ms = Some(now_ms + delay_ms);
    } else {
        group.initial_join = None;
        group.join_deadline_ms = Some(now_ms + rebalance_timeout_ms);
    }
    group.transition(GroupState::PreparingRebalance, now_ms);
}

/// Completes the join phase when every member has rejoined and no KIP-394 member is pending
/// (never during the initial delay, which always runs out, as in Kafka).
fn try_complete_join(group: &mut Group, now_ms: i64, fx: &mut Effects) {
    if group.state != GroupState::PreparingRebalance || group.initial_join.is_some() {
        return;
    }
    if group.members.values().all(|m| m.awaiting_join) && group.pending_members.is_empty() {
        complete_join(group, now_ms, fx);
    }
}

fn complete_join(group: &mut Group, now_ms: i64, fx: &mut Effects) {
    let missing: Vec<String> = group
        .members
        .values()
        .filter(|m| !m.awaiting_join)
        .map(|m| m.member_id.clone())
        .collect();
    for id in missing {
        remove_member(group, &id, fx);
    }
    group.initial_join = None;
    group.join_deadline_ms = None;
    group.generation_id = group.generation_id.saturating_add(1);
    if group.members.is_empty() {
        group.protocol_name = None;
        group.leader_id = None;
        group.transition(GroupState::Empty, now_ms);
        fx.records.push(group_record(group));
        return;
    }
    group.protocol_name = group.select_protocol();
    if !group
        .leader_id
        .as_ref()
        .is_some_and(|l| group.members.contains_key(l))
    {
        group.leader_id = group
            .members
            .values()
            .min_by_key(|m| m.seq)
            .map(|m| m.member_id.clone());
    }
    group.transition(GroupState::CompletingRebalance, now_ms);
    let ids: Vec<String> = group.members.keys().cloned().collect();
    for id in &ids {
        if let Some(m) = group.members.get_mut(id) {
            m.awaiting_join = false;
            m.heartbeat_deadline_ms = now_ms + i64::from(m.session_timeout_ms);
        }
        fx.completions.push(Completion::Join {
            group_id: group.id.clone(),
            member_id: id.clone(),
            response: current_join_response(group, id, false),
        });
    }
    group.pending_sync = ids.into_iter().collect();
    group.sync_deadline_ms = Some(now_ms + group.rebalance_timeout_ms());
}

/// Removes a member, answering its parked requests with UNKNOWN_MEMBER_ID.
fn remove_member(group: &mut Group, member_id: &str, fx: &mut Effects) {
    let Some(member) = group.members.remove(member_id) else {
        return;
    };
    if member.awaiting_join {
        fx.completions.push(Completion::Join {
            group_id: group.id.clone(),
            member_id: member_id.to_string(),
            response: JoinGroupResponse::error(CoordinatorError::UnknownMemberId, member_id),
        });
    }
    if member.awaiting_sync {
        fx.completions.push(Completion::Sync {
            group_id: group.id.clone(),
            member_id: member_id.to_string(),
            response: SyncGroupResponse::error(CoordinatorError::UnknownMemberId),
        });
    }
    if let Some(instance) = &member.group_instance_id {
        if group.static_members.get(instance).map(String::as_str) == Some(member_id) {
            group.static_members.remove(instance);
        }
    }
    group.pending_sync.remove(member_id);
    if group.is_leader(member_id) {
        group.leader_id = group
            .members
            .values()
            .min_by_key(|m| m.seq)
            .map(|m| m.member_id.clone());
    }
}

/// Removes a member and moves the group on: a Stable or CompletingRebalance group rebalances,
/// a PreparingRebalance group may now have everyone it waits for.
fn remove_member_and_update(
    group: &mut Group,
    config: &CoordinatorConfig,
    member_id: &str,
    now_ms: i64,
    fx: &mut Effects,
) {
    remove_member(group, member_id, fx);
    match group.state {
        GroupState::Stable | GroupState::CompletingRebalance => {
            prepare_rebalance(group, config, now_ms, fx);
            try_complete_join(group, now_ms, fx);
        }
        GroupState::PreparingRebalance => try_complete_join(group, now_ms, fx),
        GroupState::Empty | GroupState::Dead => {}
    }
}

fn leave_one(
    group: &mut Group,
    config: &CoordinatorConfig,
    leaving: &LeavingMember,
    now_ms: i64,
    fx: &mut Effects,
) -> Result<(), CoordinatorError> {
    let member_id = if leaving.member_id.is_empty() {
        let instance = leaving
            .group_instance_id
            .as_ref()
            .ok_or(CoordinatorError::UnknownMemberId)?;
        group
            .static_members
            .get(instance)
            .cloned()
            .ok_or(CoordinatorError::UnknownMemberId)?
    } else {
        if group.is_fenced(leaving.group_instance_id.as_deref(), &leaving.member_id) {
            return Err(CoordinatorError::FencedInstanceId);
        }
        if group.pending_members.remove(&leaving.member_id).is_some() {
            try_complete_join(group, now_ms, fx);
            return Ok(());
        }
        leaving.member_id.clone()
    };
    if !group.members.contains_key(&member_id) {
        return Err(CoordinatorError::UnknownMemberId);
    }
    remove_member_and_update(group, config, &member_id, now_ms, fx);
    Ok(())
}

fn validate_commit(
    group: &mut Group,
    req: &OffsetCommitRequest,
    now_ms: i64,
) -> Result<(), CoordinatorError> {
    if group.state == GroupState::Dead {
        return Err(CoordinatorError::CoordinatorNotAvailable);
    }
    if req.generation_id < 0 && group.state == GroupState::Empty {
        // Offsets stored for a consumer that does its own assignment.
        return Ok(());
    }
    if group.is_fenced(req.group_instance_id.as_deref(), &req.member_id) {
        return Err(CoordinatorError::FencedInstanceId);
    }
    let generation = group.generation_id;
    let state = group.state;
    let Some(member) = group.members.get_mut(&req.member_id) else {
        return Err(CoordinatorError::UnknownMemberId);
    };
    if req.generation_id != generation {
        return Err(CoordinatorError::IllegalGeneration);
    }
    if state == GroupState::CompletingRebalance {
        return Err(CoordinatorError::RebalanceInProgress);
    }
    member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
    Ok(())
}

fn tick_group(group: &mut Group, config: &CoordinatorConfig, now_ms: i64, fx: &mut Effects) {
    let expired_pending: Vec<String> = group
        .pending_members
        .iter()
        .filter(|(_, deadline)| **deadline <= now_ms)
        .map(|(id, _)| id.clone())
        .collect();
    for id in expired_pending {
        group.pending_members.remove(&id);
        try_complete_join(group, now_ms, fx);
    }
    let expired: Vec<String> = group
        .members
        .values()
        .filter(|m| !m.awaiting_join && !m.awaiting_sync && m.heartbeat_deadline_ms <= now_ms)
        .map(|m| m.member_id.clone())
        .collect();
    for id in expired {
        remove_member_and_update(group, config, &id, now_ms, fx);
    }
    if group.state == GroupState::PreparingRebalance
        && group.join_deadline_ms.is_some_and(|d| d <= now_ms)
    {
        match group.initial_join.as_mut() {
            Some(initial) if initial.new_member_added && initial.remaining_ms > 0 => {
                // Members keep arriving: wait another delay, within the rebalance timeout.
                let delay = initial.delay_ms.min(initial.remaining_ms);
                initial.remaining_ms -= delay;
                initial.new_member_added = false;
                group.join_deadline_ms = Some(now_ms + delay);
            }
            _ => complete_join(group, now_ms, fx),
        }
    }
    if matches!(
        group.state,
        GroupState::CompletingRebalance | GroupState::Stable
    ) && group.sync_deadline_ms.is_some_and(|d| d <= now_ms)
    {
        group.sync_deadline_ms = None;
        let late: Vec<String> = group.pending_sync.iter().cloned().collect();
        if !late.is_empty() {
            for id in &late {
                remove_member(group, id, fx);
            }
            prepare_rebalance(group, config, now_ms, fx);
            try_complete_join(group, now_ms, fx);
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;

#[cfg(test)]
impl GroupStateMachine {
    /// Stable and Empty groups persist every change: their live value is their last record.
    pub(crate) fn check_persisted_matches_live(&self) -> Result<(), String> {
        for g in self.groups.values() {
            if let (Some(p), GroupState::Stable | GroupState::Empty) = (&g.persisted, g.state) {
                let live = g.to_value();
                if &live != p {
                    return Err(format!("group {}: live {live:?} != persisted {p:?}", g.id));
                }
            }
        }
        Ok(())
    }
}
