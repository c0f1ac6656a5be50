//! Heartbeat and LeaveGroup: a member proves it is alive or leaves; removing a member moves its
//! group on (a rebalance, or the end of a join phase that waited for it).

use super::join::{prepare_rebalance, try_complete_join};
use super::*;

impl GroupStateMachine {
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
}

/// Removes a member, answering its parked requests with UNKNOWN_MEMBER_ID.
pub(super) fn remove_member(group: &mut Group, member_id: &str, fx: &mut Effects) {
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
pub(super) fn remove_member_and_update(
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
