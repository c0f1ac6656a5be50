//! Time: the deadlines groups wait for (join phase, sync phase, KIP-394 pending members, member
//! sessions) and the offsets-expiry check, fired by [`GroupStateMachine::tick`].

use super::join::{complete_join, prepare_rebalance, try_complete_join};
use super::members::{remove_member, remove_member_and_update};
use super::*;

impl GroupStateMachine {
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
