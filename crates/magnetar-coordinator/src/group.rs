//! A classic Kafka group: its state, members and committed offsets, and its conversion to and
//! from the `GroupMetadataValue` record.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::Bytes;

use crate::api::Protocol;
use crate::record::{GroupMetadataValue, MemberMetadata, OffsetCommitValue};

/// Kafka's group states (classic protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupState {
    /// No members; the group may still hold committed offsets.
    Empty,
    /// Waiting for the members to (re)join.
    PreparingRebalance,
    /// A generation is formed; waiting for the leader's assignment.
    CompletingRebalance,
    Stable,
    /// Removed (or never existed).
    Dead,
}

impl GroupState {
    /// Kafka's names, as DescribeGroups and ListGroups report them.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Parses a state name case-insensitively (ListGroups v4+ state filter).
    pub fn parse(name: &str) -> Option<Self> {
        [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One committed offset, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// From old value version 1 records; `-1` otherwise.
    pub expire_timestamp_ms: i64,
}

impl From<&OffsetCommitValue> for CommittedOffset {
    fn from(v: &OffsetCommitValue) -> Self {
        Self {
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: v.metadata.clone(),
            commit_timestamp_ms: v.commit_timestamp_ms,
            expire_timestamp_ms: v.expire_timestamp_ms,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    pub(crate) protocols: Vec<Protocol>,
    pub(crate) assignment: Bytes,
    /// A JoinGroup of this member is parked until the join phase completes.
    pub(crate) awaiting_join: bool,
    /// A SyncGroup of this member is parked until the leader's assignment arrives.
    pub(crate) awaiting_sync: bool,
    /// The member is removed when this passes without a heartbeat (unless parked).
    pub(crate) heartbeat_deadline_ms: i64,
    /// Join order, for leader election.
    pub(crate) seq: u64,
}

impl Member {
    pub(crate) fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|name| self.protocols.iter().find(|p| p.name == name))
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    pub(crate) fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    /// Kafka's `matches`: the same protocols with the same metadata, in the same order.
    pub(crate) fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }
}

#[derive(Clone, Debug)]
pub(crate) struct InitialJoin {
    pub(crate) delay_ms: i64,
    pub(crate) remaining_ms: i64,
    pub(crate) new_member_added: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub(crate) id: String,
    pub(crate) state: GroupState,
    /// When the group entered its state (`-1` unknown); KIP-211 expiry counts from it.
    pub(crate) state_timestamp_ms: i64,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) generation_id: i32,
    pub(crate) leader_id: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// `group.instance.id` -> member id.
    pub(crate) static_members: BTreeMap<String, String>,
    /// KIP-394: ids handed out with MEMBER_ID_REQUIRED, with the deadline to rejoin by.
    pub(crate) pending_members: BTreeMap<String, i64>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pub(crate) pending_sync: BTreeSet<String>,
    /// PreparingRebalance: when the join phase completes even if members are missing.
    pub(crate) join_deadline_ms: Option<i64>,
    /// When members still in `pending_sync` are removed.
    pub(crate) sync_deadline_ms: Option<i64>,
    /// Set while the first rebalance out of Empty waits `group.initial.rebalance.delay.ms`.
    pub(crate) initial_join: Option<InitialJoin>,
    pub(crate) offsets: BTreeMap<String, BTreeMap<i32, CommittedOffset>>,
    pub(crate) next_seq: u64,
    /// The last group metadata value written (or loaded): what a snapshot writes.
    pub(crate) persisted: Option<GroupMetadataValue>,
}

impl Group {
    pub(crate) fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            state: GroupState::Empty,
            state_timestamp_ms: -1,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            join_deadline_ms: None,
            sync_deadline_ms: None,
            initial_join: None,
            offsets: BTreeMap::new(),
            next_seq: 0,
            persisted: None,
        }
    }

    pub(crate) fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    pub(crate) fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    pub(crate) fn offset_count(&self) -> usize {
        self.offsets.values().map(BTreeMap::len).sum()
    }

    /// Nothing left to keep: no members, no offsets, no persisted generation.
    pub(crate) fn is_disposable(&self) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending_members.is_empty()
            && self.offsets.is_empty()
            && self.generation_id == 0
            && self.protocol_type.is_none()
    }

    /// `Some(instance)` when `instance` is held by a member other than `member_id`.
    pub(crate) fn is_fenced(&self, group_instance_id: Option<&str>, member_id: &str) -> bool {
        group_instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|holder| holder != member_id)
    }

    pub(crate) fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty protocol set; otherwise
    /// the protocol type must match and one protocol must be supported by every member.
    pub(crate) fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.values().all(|m| m.supports(&p.name)))
    }

    /// The protocol supported by every member with the most first-choice votes; ties go to the
    /// name that sorts first, so the choice is deterministic.
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(choice) = member
                .protocols
                .iter()
                .find(|p| candidates.contains(&p.name.as_str()))
            {
                *votes.entry(choice.name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, n)| *n == best)
            .map(|(name, _)| name.to_string())
    }

    /// The persisted view of the group, as a `GroupMetadataValue`.
    pub(crate) fn to_value(&self) -> GroupMetadataValue {
        let protocol = self.protocol_name.as_deref();
        GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: self.protocol_name.clone(),
            leader: self.leader_id.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberMetadata {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Makes the persisted fields equal `value`. On a group being served the value was just
    /// derived from it, so only loading changes anything; transient state (parked requests,
    /// deadlines) of members that stay is left alone.
    pub(crate) fn apply_value(&mut self, value: &GroupMetadataValue) {
        self.protocol_type = (!value.protocol_type.is_empty()).then(|| value.protocol_type.clone());
        self.generation_id = value.generation;
        self.protocol_name = value.protocol.clone();
        self.leader_id = value.leader.clone();
        self.state_timestamp_ms = value.current_state_timestamp_ms;
        let keep: BTreeSet<&str> = value.members.iter().map(|m| m.member_id.as_str()).collect();
        self.members.retain(|id, _| keep.contains(id.as_str()));
        for m in &value.members {
            let protocols = match &value.protocol {
                Some(name) => vec![Protocol {
                    name: name.clone(),
                    metadata: m.subscription.clone(),
                }],
                None => Vec::new(),
            };
            match self.members.get_mut(&m.member_id) {
                Some(live) => {
                    live.assignment = m.assignment.clone();
                    live.session_timeout_ms = m.session_timeout_ms;
                    live.rebalance_timeout_ms = m.rebalance_timeout_ms;
                    if live.metadata(value.protocol.as_deref()) != m.subscription {
                        live.protocols = protocols;
                    }
                }
                None => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.members.insert(
                        m.member_id.clone(),
                        Member {
                            member_id: m.member_id.clone(),
                            group_instance_id: m.group_instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            rebalance_timeout_ms: m.rebalance_timeout_ms,
                            session_timeout_ms: m.session_timeout_ms,
                            protocols,
                            assignment: m.assignment.clone(),
                            awaiting_join: false,
                            awaiting_sync: false,
                            // Set when the load finishes (`GroupStateMachine::finish_load`).
                            heartbeat_deadline_ms: i64::MAX,
                            seq,
                        },
                    );
                }
            }
        }
        self.static_members = self
            .members
            .values()
            .filter_map(|m| Some((m.group_instance_id.clone()?, m.member_id.clone())))
            .collect();
        if matches!(self.state, GroupState::Empty | GroupState::Stable) {
            self.state = if self.members.is_empty() {
                GroupState::Empty
            } else {
                GroupState::Stable
            };
        }
    }
}

/// The topics a consumer-protocol subscription names (ConsumerProtocolSubscription: version
/// int16, then an array of topic strings). `None` when the bytes do not parse.
pub(crate) fn subscribed_topics(metadata: &[u8]) -> Option<BTreeSet<String>> {
    let mut r = crate::record::Reader::new(metadata);
    let _version = r.i16().ok()?;
    let count = r.i32().ok()?;
    if count < 0 || count as usize > r.remaining() {
        return None;
    }
    let mut topics = BTreeSet::new();
    for _ in 0..count {
        topics.insert(r.nullable_string().ok()??);
    }
    Some(topics)
}
