//! JoinGroup and SyncGroup: membership and the rebalance protocol (Kafka's
//! `GroupCoordinator.handleJoinGroup`/`handleSyncGroup`): new, known and static (KIP-345) members,
//! the pending members of KIP-394, preparing a rebalance, completing the join phase and the
//! leader's assignment.

use super::members::remove_member;
use super::*;

impl GroupStateMachine {
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
}

fn group_record(group: &Group) -> CoordinatorRecord {
    CoordinatorRecord::GroupMetadata {
        key: GroupMetadataKey {
            group: group.id.clone(),
        },
        value: Some(group.to_value()),
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

pub(super) fn prepare_rebalance(
    group: &mut Group,
    config: &CoordinatorConfig,
    now_ms: i64,
    fx: &mut Effects,
) {
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
pub(super) fn try_complete_join(group: &mut Group, now_ms: i64, fx: &mut Effects) {
    if group.state != GroupState::PreparingRebalance || group.initial_join.is_some() {
        return;
    }
    if group.members.values().all(|m| m.awaiting_join) && group.pending_members.is_empty() {
        complete_join(group, now_ms, fx);
    }
}

pub(super) fn complete_join(group: &mut Group, now_ms: i64, fx: &mut Effects) {
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
