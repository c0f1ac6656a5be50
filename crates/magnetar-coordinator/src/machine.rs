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
//!
//! The handlers live along Kafka's own seams: `join` (JoinGroup, SyncGroup, rebalance),
//! `members` (Heartbeat, LeaveGroup), `offsets` (commit, fetch, delete, expiry), `admin`
//! (DescribeGroups, ListGroups, DeleteGroups) and `timers` (deadlines and `tick`); this file
//! keeps the state, `replay`, loading and snapshots, and the queries.

mod admin;
mod join;
mod members;
mod offsets;
mod timers;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::api::*;
use crate::config::CoordinatorConfig;
use crate::error::CoordinatorError;
use crate::group::{subscribed_topics, CommittedOffset, Group, GroupState, InitialJoin, Member};
use crate::record::{
    CoordinatorRecord, GroupMetadataKey, GroupMetadataValue, OffsetCommitKey, OffsetCommitValue,
};

use offsets::offset_record;

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
