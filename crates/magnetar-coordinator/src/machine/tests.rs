//! Handler tests of the state machine, driven by explicit times.

use super::*;
use crate::batch::{decode_batch, encode_batch};
use crate::record::DecodedRecord;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        group_initial_rebalance_delay_ms: 0,
        ..CoordinatorConfig::default()
    }
}

fn machine() -> GroupStateMachine {
    GroupStateMachine::new(config(), 7)
}

fn protocols(meta: &[u8]) -> Vec<Protocol> {
    vec![Protocol {
        name: "range".into(),
        metadata: Bytes::copy_from_slice(meta),
    }]
}

fn join_req(group: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: group.into(),
        member_id: member.into(),
        group_instance_id: None,
        protocol_type: "consumer".into(),
        protocols: protocols(b"m"),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        require_known_member_id: true,
        reason: None,
    }
}

fn sync_req(
    group: &str,
    member: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
) -> SyncGroupRequest {
    SyncGroupRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments: assignments
            .iter()
            .map(|(m, a)| MemberAssignment {
                member_id: m.to_string(),
                assignment: Bytes::copy_from_slice(a),
            })
            .collect(),
    }
}

fn hb(group: &str, member: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
    }
}

fn join_completion<'a>(completions: &'a [Completion], member: &str) -> &'a JoinGroupResponse {
    completions
        .iter()
        .find_map(|c| match c {
            Completion::Join {
                member_id,
                response,
                ..
            } if member_id == member => Some(response),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no join completion for {member} in {completions:?}"))
}

fn sync_completion<'a>(completions: &'a [Completion], member: &str) -> &'a SyncGroupResponse {
    completions
        .iter()
        .find_map(|c| match c {
            Completion::Sync {
                member_id,
                response,
                ..
            } if member_id == member => Some(response),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no sync completion for {member} in {completions:?}"))
}

/// A member id via KIP-394 (first join, MEMBER_ID_REQUIRED).
fn member_id(m: &mut GroupStateMachine, group: &str, now: i64) -> String {
    let out = m.join_group(join_req(group, ""), now);
    let JoinOutcome::Done(r) = out.response else {
        panic!("expected MEMBER_ID_REQUIRED")
    };
    assert_eq!(r.error, Some(CoordinatorError::MemberIdRequired));
    assert!(r.member_id.starts_with("client-"));
    r.member_id
}

/// Forms a Stable group of `n` members; returns the member ids (leader first) and generation.
fn stable_group(m: &mut GroupStateMachine, group: &str, n: usize, now: i64) -> (Vec<String>, i32) {
    let ids: Vec<String> = (0..n).map(|_| member_id(m, group, now)).collect();
    let mut completions = Vec::new();
    for id in &ids {
        let out = m.join_group(join_req(group, id), now);
        assert_eq!(
            out.response,
            JoinOutcome::Parked {
                member_id: id.clone()
            }
        );
        completions.extend(out.completions);
    }
    let leader = join_completion(&completions, &ids[0]).clone();
    assert_eq!(leader.error, None);
    let generation = leader.generation_id;
    let mut ordered = vec![leader.leader.clone()];
    ordered.extend(ids.iter().filter(|i| **i != leader.leader).cloned());
    let assignments: Vec<(String, Vec<u8>)> = ordered
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), vec![i as u8]))
        .collect();
    let refs: Vec<(&str, &[u8])> = assignments
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_slice()))
        .collect();
    for id in &ordered[1..] {
        assert_eq!(
            m.sync_group(sync_req(group, id, generation, &[]), now)
                .response,
            SyncOutcome::Parked
        );
    }
    let out = m.sync_group(sync_req(group, &ordered[0], generation, &refs), now);
    let SyncOutcome::Done(r) = out.response else {
        panic!("leader sync parked")
    };
    assert_eq!(r.assignment.as_ref(), &[0u8]);
    assert_eq!(out.completions.len(), n - 1);
    assert_eq!(m.group_state(group), Some(GroupState::Stable));
    (ordered, generation)
}

#[test]
fn first_join_needs_a_member_id_then_forms_a_generation() {
    let mut m = machine();
    let id = member_id(&mut m, "g", 0);
    let out = m.join_group(join_req("g", &id), 0);
    assert_eq!(
        out.response,
        JoinOutcome::Parked {
            member_id: id.clone()
        }
    );
    let r = join_completion(&out.completions, &id);
    assert_eq!(
        (r.error, r.generation_id, r.leader.as_str()),
        (None, 1, id.as_str())
    );
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1);
    assert_eq!(m.group_state("g"), Some(GroupState::CompletingRebalance));
}

#[test]
fn join_before_v4_gets_an_id_and_parks() {
    let mut m = machine();
    let mut req = join_req("g", "");
    req.require_known_member_id = false;
    let out = m.join_group(req, 0);
    let JoinOutcome::Parked { member_id } = out.response else {
        panic!()
    };
    assert_eq!(
        join_completion(&out.completions, &member_id).generation_id,
        1
    );
}

#[test]
fn join_validation_errors() {
    let mut m = machine();
    let err = |o: Output<JoinOutcome>| match o.response {
        JoinOutcome::Done(r) => r.error,
        JoinOutcome::Parked { .. } => None,
    };
    assert_eq!(
        err(m.join_group(join_req("", ""), 0)),
        Some(CoordinatorError::InvalidGroupId)
    );
    let mut short = join_req("g", "");
    short.session_timeout_ms = 10;
    assert_eq!(
        err(m.join_group(short, 0)),
        Some(CoordinatorError::InvalidSessionTimeout)
    );
    let mut none = join_req("g", "");
    none.protocols.clear();
    assert_eq!(
        err(m.join_group(none, 0)),
        Some(CoordinatorError::InconsistentGroupProtocol)
    );
    assert_eq!(
        err(m.join_group(join_req("g", "nobody"), 0)),
        Some(CoordinatorError::UnknownMemberId)
    );
    // Failed joins leave no group behind.
    assert_eq!(m.group_count(), 0);

    let (_, _) = stable_group(&mut m, "g", 1, 0);
    let mut other = join_req("g", "");
    other.protocol_type = "connect".into();
    assert_eq!(
        err(m.join_group(other, 0)),
        Some(CoordinatorError::InconsistentGroupProtocol)
    );
    let mut other = join_req("g", "");
    other.protocols[0].name = "roundrobin".into();
    assert_eq!(
        err(m.join_group(other, 0)),
        Some(CoordinatorError::InconsistentGroupProtocol)
    );
}

#[test]
fn group_max_size_is_enforced() {
    let mut m = GroupStateMachine::new(
        CoordinatorConfig {
            group_max_size: 1,
            ..config()
        },
        1,
    );
    stable_group(&mut m, "g", 1, 0);
    let out = m.join_group(join_req("g", ""), 0);
    let JoinOutcome::Done(r) = out.response else {
        panic!()
    };
    assert_eq!(r.error, Some(CoordinatorError::GroupMaxSizeReached));
}

#[test]
fn two_members_sync_and_persist_assignments() {
    let mut m = machine();
    let (ids, generation) = stable_group(&mut m, "g", 2, 0);
    let view = m.group_view("g").unwrap();
    assert_eq!(view.generation_id, generation);
    assert_eq!(view.leader.as_deref(), Some(ids[0].as_str()));
    let follower = view.members.iter().find(|v| v.member_id == ids[1]).unwrap();
    assert_eq!(follower.assignment.as_ref(), &[1u8]);
    // The follower's parked sync was completed with its assignment; describe shows it.
    let d = m.describe_group("g");
    assert_eq!(
        (d.state, d.protocol_data.as_str(), d.members.len()),
        (GroupState::Stable, "range", 2)
    );
    // A follower rejoining with the same metadata gets the current generation back.
    let out = m.join_group(join_req("g", &ids[1]), 5);
    let JoinOutcome::Done(r) = out.response else {
        panic!("follower rejoin parked")
    };
    assert_eq!((r.generation_id, r.members.len()), (generation, 0));
    assert_eq!(m.group_state("g"), Some(GroupState::Stable));
}

#[test]
fn sync_errors() {
    let mut m = machine();
    let (ids, generation) = stable_group(&mut m, "g", 2, 0);
    let err = |o: Output<SyncOutcome>| match o.response {
        SyncOutcome::Done(r) => r.error,
        SyncOutcome::Parked => None,
    };
    assert_eq!(
        err(m.sync_group(sync_req("x", &ids[0], generation, &[]), 0)),
        Some(CoordinatorError::UnknownMemberId)
    );
    assert_eq!(
        err(m.sync_group(sync_req("g", "nobody", generation, &[]), 0)),
        Some(CoordinatorError::UnknownMemberId)
    );
    assert_eq!(
        err(m.sync_group(sync_req("g", &ids[0], generation + 1, &[]), 0)),
        Some(CoordinatorError::IllegalGeneration)
    );
    let mut wrong = sync_req("g", &ids[0], generation, &[]);
    wrong.protocol_name = Some("roundrobin".into());
    assert_eq!(
        err(m.sync_group(wrong, 0)),
        Some(CoordinatorError::InconsistentGroupProtocol)
    );
    // Stable: a late sync gets the stored assignment.
    let out = m.sync_group(sync_req("g", &ids[1], generation, &[]), 0);
    assert_eq!(
        out.response,
        SyncOutcome::Done(SyncGroupResponse {
            error: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignment: Bytes::from_static(&[1]),
        })
    );
    // Preparing: rebalance in progress.
    let _ = m.join_group(join_req("g", &ids[0]), 0);
    assert_eq!(
        err(m.sync_group(sync_req("g", &ids[1], generation, &[]), 0)),
        Some(CoordinatorError::RebalanceInProgress)
    );
}

#[test]
fn heartbeats_and_session_expiry() {
    let mut m = machine();
    let (ids, generation) = stable_group(&mut m, "g", 2, 0);
    assert_eq!(
        m.heartbeat(hb("g", &ids[0], generation), 1_000).response,
        Ok(())
    );
    assert_eq!(
        m.heartbeat(hb("g", &ids[0], generation + 1), 1_000)
            .response,
        Err(CoordinatorError::IllegalGeneration)
    );
    assert_eq!(
        m.heartbeat(hb("g", "nobody", generation), 1_000).response,
        Err(CoordinatorError::UnknownMemberId)
    );
    assert_eq!(
        m.heartbeat(hb("nope", &ids[0], generation), 1_000).response,
        Err(CoordinatorError::UnknownMemberId)
    );
    // Member 0 keeps heartbeating; member 1 goes silent and expires after its session.
    for t in (2_000..=10_000).step_by(2_000) {
        assert_eq!(
            m.heartbeat(hb("g", &ids[0], generation), t).response,
            Ok(())
        );
        let _ = m.tick(t);
    }
    assert_eq!(m.group_state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(
        m.heartbeat(hb("g", &ids[0], generation), 12_500).response,
        Err(CoordinatorError::RebalanceInProgress)
    );
    // The survivor rejoins: every remaining member has joined, so the generation forms at once.
    let out = m.join_group(join_req("g", &ids[0]), 12_600);
    let r = join_completion(&out.completions, &ids[0]);
    assert_eq!((r.generation_id, r.members.len()), (generation + 1, 1));
}

#[test]
fn batch_leave_empties_the_group() {
    let mut m = machine();
    let (ids, generation) = stable_group(&mut m, "g", 3, 0);
    let out = m.leave_group(
        LeaveGroupRequest {
            group_id: "g".into(),
            members: vec![
                LeavingMember {
                    member_id: ids[1].clone(),
                    group_instance_id: None,
                    reason: None,
                },
                LeavingMember {
                    member_id: "nobody".into(),
                    group_instance_id: None,
                    reason: None,
                },
            ],
        },
        100,
    );
    let errors: Vec<_> = out.response.members.iter().map(|m| m.error).collect();
    assert_eq!(errors, vec![None, Some(CoordinatorError::UnknownMemberId)]);
    assert_eq!(m.group_state("g"), Some(GroupState::PreparingRebalance));
    let out = m.leave_group(
        LeaveGroupRequest {
            group_id: "g".into(),
            members: [0, 2]
                .iter()
                .map(|&i| LeavingMember {
                    member_id: ids[i].clone(),
                    group_instance_id: None,
                    reason: None,
                })
                .collect(),
        },
        200,
    );
    assert!(out.response.members.iter().all(|m| m.error.is_none()));
    assert_eq!(m.group_state("g"), Some(GroupState::Empty));
    assert_eq!(m.generation("g"), Some(generation + 1));
    // The empty generation is persisted.
    assert!(
        matches!(out.records.last(), Some(CoordinatorRecord::GroupMetadata { value: Some(v), .. }) if v.members.is_empty())
    );
    // Unknown group: per-member errors.
    let out = m.leave_group(
        LeaveGroupRequest {
            group_id: "x".into(),
            members: vec![LeavingMember {
                member_id: "a".into(),
                group_instance_id: None,
                reason: None,
            }],
        },
        0,
    );
    assert_eq!(
        out.response.members[0].error,
        Some(CoordinatorError::UnknownMemberId)
    );
}

fn static_join(instance: &str, member: &str, meta: &[u8]) -> JoinGroupRequest {
    JoinGroupRequest {
        group_instance_id: Some(instance.into()),
        protocols: protocols(meta),
        ..join_req("g", member)
    }
}

#[test]
fn static_member_restart_keeps_the_generation() {
    let mut m = machine();
    // Static members get their id at once (no MEMBER_ID_REQUIRED).
    let out = m.join_group(static_join("i-1", "", b"m"), 0);
    let JoinOutcome::Parked { member_id: old } = out.response else {
        panic!()
    };
    let generation = join_completion(&out.completions, &old).generation_id;
    let out = m.sync_group(sync_req("g", &old, generation, &[(&old, b"a")]), 0);
    assert!(matches!(
        out.response,
        SyncOutcome::Done(SyncGroupResponse { error: None, .. })
    ));

    // The process restarts: same instance id, no member id, same metadata.
    let out = m.join_group(static_join("i-1", "", b"m"), 5_000);
    let JoinOutcome::Done(r) = out.response else {
        panic!("static rejoin parked")
    };
    assert_eq!(r.error, None);
    assert_ne!(r.member_id, old);
    assert_eq!(r.generation_id, generation, "no rebalance");
    assert!(r.skip_assignment, "the static leader keeps the assignment");
    assert_eq!(m.group_state("g"), Some(GroupState::Stable));
    assert!(matches!(
        &out.records[..],
        [CoordinatorRecord::GroupMetadata { .. }]
    ));
    let new = r.member_id;
    // The old id is fenced.
    let mut old_hb = hb("g", &old, generation);
    old_hb.group_instance_id = Some("i-1".into());
    assert_eq!(
        m.heartbeat(old_hb, 5_000).response,
        Err(CoordinatorError::FencedInstanceId)
    );
    let out = m.sync_group(
        SyncGroupRequest {
            group_instance_id: Some("i-1".into()),
            ..sync_req("g", &new, generation, &[])
        },
        5_000,
    );
    let SyncOutcome::Done(r) = out.response else {
        panic!()
    };
    assert_eq!(r.assignment.as_ref(), b"a");

    // Changed metadata on restart triggers a rebalance.
    let out = m.join_group(static_join("i-1", "", b"other"), 6_000);
    assert!(matches!(out.response, JoinOutcome::Parked { .. }));
    let r = out
        .completions
        .iter()
        .find_map(|c| match c {
            Completion::Join { response, .. } if response.error.is_none() => Some(response),
            _ => None,
        })
        .unwrap();
    assert_eq!(r.generation_id, generation + 1);
    m.check_persisted_matches_live()
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn static_member_leaves_by_instance_id() {
    let mut m = machine();
    let out = m.join_group(static_join("i-1", "", b"m"), 0);
    let JoinOutcome::Parked { member_id } = out.response else {
        panic!()
    };
    let out = m.leave_group(
        LeaveGroupRequest {
            group_id: "g".into(),
            members: vec![LeavingMember {
                member_id: String::new(),
                group_instance_id: Some("i-1".into()),
                reason: None,
            }],
        },
        1,
    );
    assert_eq!(out.response.members[0].error, None);
    assert!(m.group_view("g").unwrap().members.is_empty());
    let _ = member_id;
}

#[test]
fn pending_member_blocks_the_join_until_its_session_ends() {
    let mut m = machine();
    let (ids, generation) = stable_group(&mut m, "g", 1, 0);
    let pending = member_id(&mut m, "g", 100); // never rejoins
    let out = m.join_group(join_req("g", &ids[0]), 200);
    assert!(out.completions.is_empty(), "waits for the pending member");
    let out = m.tick(100 + i64::from(SESSION));
    let r = join_completion(&out.completions, &ids[0]);
    assert_eq!((r.generation_id, r.members.len()), (generation + 1, 1));
    let _ = pending;
}

/// Issue 20: a member joining a Stable group (dynamic after KIP-394, or static at once) waits
/// until every existing member has rejoined; the existing member learns of the rebalance from
/// its heartbeat, and the new generation holds both.
#[test]
fn a_join_into_a_stable_group_waits_for_the_existing_member() {
    for newcomer_static in [false, true] {
        let mut m = machine();
        let (ids, generation) = stable_group(&mut m, "g", 1, 0);
        let out = if newcomer_static {
            m.join_group(static_join("i-new", "", b"m"), 1_000)
        } else {
            let id = member_id(&mut m, "g", 1_000);
            m.join_group(join_req("g", &id), 1_000)
        };
        let JoinOutcome::Parked {
            member_id: newcomer,
        } = out.response
        else {
            panic!("the newcomer was answered at once: {:?}", out.response)
        };
        assert!(
            out.completions.is_empty(),
            "completed without the existing member"
        );
        assert_eq!(m.group_state("g"), Some(GroupState::PreparingRebalance));
        // The existing member is told through its heartbeat, and is not dropped while it
        // heartbeats within its rebalance timeout.
        for t in (2_000..1_000 + i64::from(REBALANCE)).step_by(3_000) {
            assert_eq!(
                m.heartbeat(hb("g", &ids[0], generation), t).response,
                Err(CoordinatorError::RebalanceInProgress)
            );
            assert!(m.tick(t).completions.is_empty(), "completed at {t}");
        }
        let out = m.join_group(join_req("g", &ids[0]), 29_000);
        let JoinOutcome::Parked { .. } = out.response else {
            panic!("the rejoin was answered at once")
        };
        let leader = join_completion(&out.completions, &ids[0]);
        let follower = join_completion(&out.completions, &newcomer);
        assert_eq!(leader.generation_id, generation + 1);
        assert_eq!(follower.generation_id, generation + 1);
        assert_eq!(leader.leader, ids[0], "the existing leader keeps leading");
        let mut members: Vec<&str> = leader
            .members
            .iter()
            .map(|m| m.member_id.as_str())
            .collect();
        members.sort_unstable();
        let mut expected = vec![ids[0].as_str(), newcomer.as_str()];
        expected.sort_unstable();
        assert_eq!(members, expected);
    }
}

/// The other way the join phase ends: the existing member neither rejoins nor stops
/// heartbeating (a client stuck between polls); at its rebalance timeout it is removed and the
/// newcomer forms the generation alone, and the removed member's heartbeat is refused.
#[test]
fn a_stuck_member_is_removed_at_its_rebalance_timeout() {
    let mut stuck = join_req("g", "");
    stuck.rebalance_timeout_ms = 8_000; // its max.poll.interval.ms
    let mut m2 = machine();
    let out = m2.join_group(stuck.clone(), 0);
    let JoinOutcome::Done(r) = out.response else {
        panic!()
    };
    let old = r.member_id;
    stuck.member_id = old.clone();
    let out = m2.join_group(stuck, 0);
    let first = join_completion(&out.completions, &old).clone();
    let out = m2.sync_group(sync_req("g", &old, first.generation_id, &[(&old, b"p")]), 0);
    assert!(matches!(out.response, SyncOutcome::Done(_)));
    let newcomer = member_id(&mut m2, "g", 1_000);
    let out = m2.join_group(join_req("g", &newcomer), 1_000);
    assert!(out.completions.is_empty());
    // The join phase lasts the longest rebalance timeout of the members (Kafka's rule): the
    // newcomer's 30 s here.
    for t in (1_500..1_000 + i64::from(REBALANCE)).step_by(1_500) {
        let _ = m2.heartbeat(hb("g", &old, first.generation_id), t);
        assert!(m2.tick(t).completions.is_empty(), "completed at {t}");
    }
    let out = m2.tick(1_000 + i64::from(REBALANCE));
    let r = join_completion(&out.completions, &newcomer);
    assert_eq!(
        (r.generation_id, r.members.len()),
        (first.generation_id + 1, 1)
    );
    assert_eq!(
        m2.heartbeat(hb("g", &old, first.generation_id), 31_100)
            .response,
        Err(CoordinatorError::UnknownMemberId)
    );
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut m = machine();
    let (ids, generation) = stable_group(&mut m, "g", 2, 0);
    let _ = m.join_group(join_req("g", &ids[0]), 1_000);
    // Member 1 keeps heartbeating (REBALANCE_IN_PROGRESS) but never rejoins.
    for t in (2_000..31_000).step_by(3_000) {
        let _ = m.heartbeat(hb("g", &ids[1], generation), t);
        assert!(m.tick(t).completions.is_empty());
    }
    let out = m.tick(1_000 + i64::from(REBALANCE));
    let r = join_completion(&out.completions, &ids[0]);
    assert_eq!((r.generation_id, r.members.len()), (generation + 1, 1));
    assert_eq!(m.group_view("g").unwrap().members.len(), 1);
}

#[test]
fn members_that_never_sync_are_removed() {
    let mut m = machine();
    let a = member_id(&mut m, "g", 0);
    let b = member_id(&mut m, "g", 0);
    let _ = m.join_group(join_req("g", &a), 0);
    let out = m.join_group(join_req("g", &b), 0);
    let leader = join_completion(&out.completions, &a).leader.clone();
    let follower = if leader == a { b.clone() } else { a.clone() };
    // Only the follower syncs; the leader never does.
    assert_eq!(
        m.sync_group(sync_req("g", &follower, 1, &[]), 10).response,
        SyncOutcome::Parked
    );
    let out = m.tick(i64::from(REBALANCE) + 1);
    // The follower's parked sync learns of the new rebalance; the leader is gone.
    assert_eq!(
        sync_completion(&out.completions, &follower).error,
        Some(CoordinatorError::RebalanceInProgress)
    );
    assert!(m
        .group_view("g")
        .unwrap()
        .members
        .iter()
        .all(|v| v.member_id != leader));
}

#[test]
fn initial_rebalance_delay_waits_for_more_members() {
    let cfg = CoordinatorConfig {
        group_initial_rebalance_delay_ms: 100,
        ..config()
    };
    let mut m = GroupStateMachine::new(cfg, 3);
    let a = member_id(&mut m, "g", 0);
    let out = m.join_group(join_req("g", &a), 0);
    assert!(out.completions.is_empty());
    let b = member_id(&mut m, "g", 50);
    let _ = m.join_group(join_req("g", &b), 50);
    // A member arrived during the delay: wait another delay.
    assert!(m.tick(100).completions.is_empty());
    let out = m.tick(200);
    assert_eq!(join_completion(&out.completions, &a).generation_id, 1);
    assert_eq!(join_completion(&out.completions, &b).generation_id, 1);
}

#[test]
fn cooperative_two_round_incremental_rebalance() {
    // Assignments are opaque; here a byte per owned partition. Round 1 revokes, round 2 assigns.
    let mut m = machine();
    let (ids, g1) = stable_group(&mut m, "g", 2, 0);
    let (a, b) = (ids[0].clone(), ids[1].clone()); // a leads
    let c = member_id(&mut m, "g", 100);
    let out = m.join_group(join_req("g", &c), 100);
    assert!(out.completions.is_empty());
    assert_eq!(
        m.heartbeat(hb("g", &b, g1), 110).response,
        Err(CoordinatorError::RebalanceInProgress)
    );
    // Round 1: everyone rejoins with its owned partitions in its metadata.
    let _ = m.join_group(
        JoinGroupRequest {
            protocols: protocols(b"owns 0 1 2"),
            ..join_req("g", &a)
        },
        120,
    );
    let out = m.join_group(
        JoinGroupRequest {
            protocols: protocols(b"owns 3 4 5"),
            ..join_req("g", &b)
        },
        130,
    );
    let g2 = join_completion(&out.completions, &a).generation_id;
    assert_eq!(g2, g1 + 1);
    assert_eq!(join_completion(&out.completions, &a).members.len(), 3);
    // The leader keeps what is not moving and revokes 2 and 5 (cooperative-sticky).
    let _ = m.sync_group(sync_req("g", &b, g2, &[]), 140);
    let _ = m.sync_group(sync_req("g", &c, g2, &[]), 140);
    let out = m.sync_group(
        sync_req("g", &a, g2, &[(&a, &[0, 1]), (&b, &[3, 4]), (&c, &[])]),
        150,
    );
    assert_eq!(
        sync_completion(&out.completions, &b).assignment.as_ref(),
        &[3, 4]
    );
    assert!(sync_completion(&out.completions, &c).assignment.is_empty());
    assert_eq!(m.group_state("g"), Some(GroupState::Stable));
    // Round 2: the members that revoked rejoin with their new ownership; a follower's changed
    // metadata starts the next rebalance, the others follow.
    let out = m.join_group(
        JoinGroupRequest {
            protocols: protocols(b"owns 3 4"),
            ..join_req("g", &b)
        },
        200,
    );
    assert!(matches!(out.response, JoinOutcome::Parked { .. }));
    let _ = m.join_group(
        JoinGroupRequest {
            protocols: protocols(b"owns 0 1"),
            ..join_req("g", &a)
        },
        210,
    );
    let out = m.join_group(join_req("g", &c), 220);
    let g3 = join_completion(&out.completions, &a).generation_id;
    assert_eq!(g3, g2 + 1);
    let _ = m.sync_group(sync_req("g", &b, g3, &[]), 230);
    let _ = m.sync_group(sync_req("g", &c, g3, &[]), 230);
    let out = m.sync_group(
        sync_req("g", &a, g3, &[(&a, &[0, 1]), (&b, &[3, 4]), (&c, &[2, 5])]),
        240,
    );
    assert_eq!(
        sync_completion(&out.completions, &c).assignment.as_ref(),
        &[2, 5]
    );
    m.check_persisted_matches_live()
        .unwrap_or_else(|e| panic!("{e}"));
}

fn commit(
    group: &str,
    generation: i32,
    member: &str,
    offset: i64,
    metadata: &str,
) -> OffsetCommitRequest {
    OffsetCommitRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        topics: vec![CommitTopic {
            name: "t".into(),
            partitions: vec![CommitPartition {
                partition: 0,
                offset,
                leader_epoch: 3,
                metadata: Some(metadata.into()),
                commit_timestamp_ms: None,
            }],
        }],
    }
}

fn commit_error(out: &Output<OffsetCommitResponse>) -> Option<CoordinatorError> {
    out.response.topics[0].partitions[0].error
}

fn fetch(m: &GroupStateMachine, group: &str) -> i64 {
    let r = m.fetch_offsets(&OffsetFetchRequest {
        group_id: group.into(),
        topics: Some(vec![TopicPartitions {
            name: "t".into(),
            partitions: vec![0],
        }]),
        require_stable: true,
    });
    r.topics[0].partitions[0].offset
}

#[test]
fn offset_commit_and_fetch() {
    let mut m = machine();
    // A simple consumer (no group management) commits with generation -1.
    let out = m.commit_offsets(commit("simple", -1, "", 10, "meta"), 5);
    assert_eq!(commit_error(&out), None);
    assert_eq!(out.records.len(), 1);
    assert_eq!(fetch(&m, "simple"), 10);
    assert_eq!(fetch(&m, "unknown"), -1);
    let all = m.fetch_offsets(&OffsetFetchRequest {
        group_id: "simple".into(),
        topics: None,
        require_stable: false,
    });
    assert_eq!(all.topics[0].partitions[0].metadata, "meta");
    assert_eq!(all.topics[0].partitions[0].leader_epoch, 3);
    // Unknown group with a generation: a stale member.
    assert_eq!(
        commit_error(&m.commit_offsets(commit("x", 1, "m", 1, ""), 0)),
        Some(CoordinatorError::IllegalGeneration)
    );
    assert_eq!(m.group_count(), 1);

    let (ids, generation) = stable_group(&mut m, "g", 2, 0);
    assert_eq!(
        commit_error(&m.commit_offsets(commit("g", generation, &ids[1], 7, ""), 10)),
        None
    );
    assert_eq!(fetch(&m, "g"), 7);
    assert_eq!(
        commit_error(&m.commit_offsets(commit("g", generation + 1, &ids[1], 8, ""), 10)),
        Some(CoordinatorError::IllegalGeneration)
    );
    assert_eq!(
        commit_error(&m.commit_offsets(commit("g", generation, "nobody", 8, ""), 10)),
        Some(CoordinatorError::UnknownMemberId)
    );
    assert_eq!(
        commit_error(&m.commit_offsets(commit("g", -1, "", 8, ""), 10)),
        Some(CoordinatorError::UnknownMemberId)
    );
    let big = "x".repeat(5_000);
    assert_eq!(
        commit_error(&m.commit_offsets(commit("g", generation, &ids[0], 9, &big), 10)),
        Some(CoordinatorError::OffsetMetadataTooLarge)
    );
    assert_eq!(fetch(&m, "g"), 7);
    // While the group completes a rebalance, commits are refused.
    let _ = m.join_group(join_req("g", &ids[0]), 20);
    let out = m.join_group(join_req("g", &ids[1]), 20);
    let g2 = join_completion(&out.completions, &ids[1]).generation_id;
    assert_eq!(
        commit_error(&m.commit_offsets(commit("g", g2, &ids[1], 9, ""), 21)),
        Some(CoordinatorError::RebalanceInProgress)
    );
}

#[test]
fn describe_and_list() {
    let mut m = machine();
    stable_group(&mut m, "a", 1, 0);
    let _ = m.commit_offsets(commit("b", -1, "", 1, ""), 0);
    let d = m.describe_group("nope");
    assert_eq!((d.state, d.error), (GroupState::Dead, None));
    assert_eq!(m.describe_group("b").state, GroupState::Empty);
    let all = m.list_groups(&[]);
    assert_eq!(all.len(), 2);
    let stable = m.list_groups(&[GroupState::Stable]);
    assert_eq!(stable.len(), 1);
    assert_eq!(
        (
            stable[0].group_id.as_str(),
            stable[0].protocol_type.as_str()
        ),
        ("a", "consumer")
    );
    assert_eq!(GroupState::parse("stable"), Some(GroupState::Stable));
}

#[test]
fn delete_groups() {
    let mut m = machine();
    stable_group(&mut m, "busy", 1, 0);
    let _ = m.commit_offsets(commit("idle", -1, "", 1, ""), 0);
    let out = m.delete_groups(&["busy".into(), "idle".into(), "none".into()]);
    assert_eq!(
        out.response,
        vec![
            ("busy".to_string(), Some(CoordinatorError::NonEmptyGroup)),
            ("idle".to_string(), None),
            ("none".to_string(), Some(CoordinatorError::GroupIdNotFound)),
        ]
    );
    // An offset tombstone and a group tombstone.
    assert_eq!(out.records.len(), 2);
    assert!(out.records.iter().all(|r| matches!(
        r,
        CoordinatorRecord::OffsetCommit { value: None, .. }
            | CoordinatorRecord::GroupMetadata { value: None, .. }
    )));
    assert_eq!(m.describe_group("idle").state, GroupState::Dead);
}

/// ConsumerProtocolSubscription v0 with the given topics.
fn subscription(topics: &[&str]) -> Vec<u8> {
    let mut out = vec![0, 0];
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        out.extend_from_slice(&(t.len() as i16).to_be_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(&(-1i32).to_be_bytes()); // user data
    out
}

#[test]
fn offset_delete() {
    let mut m = machine();
    let id = member_id(&mut m, "g", 0);
    let out = m.join_group(
        JoinGroupRequest {
            protocols: protocols(&subscription(&["t"])),
            ..join_req("g", &id)
        },
        0,
    );
    let generation = join_completion(&out.completions, &id).generation_id;
    let _ = m.sync_group(sync_req("g", &id, generation, &[(&id, b"x")]), 0);
    let _ = m.commit_offsets(commit("g", generation, &id, 5, ""), 0);
    let mut other = commit("g", generation, &id, 6, "");
    other.topics[0].name = "u".into();
    let _ = m.commit_offsets(other, 0);
    let req = OffsetDeleteRequest {
        group_id: "g".into(),
        topics: vec![
            TopicPartitions {
                name: "t".into(),
                partitions: vec![0],
            },
            TopicPartitions {
                name: "u".into(),
                partitions: vec![0],
            },
        ],
    };
    let out = m.delete_offsets(&req);
    assert_eq!(
        out.response.topics[0].partitions[0].error,
        Some(CoordinatorError::GroupSubscribedToTopic)
    );
    assert_eq!(out.response.topics[1].partitions[0].error, None);
    assert_eq!(out.records.len(), 1);
    assert_eq!(fetch(&m, "g"), 5);
    let out = m.delete_offsets(&OffsetDeleteRequest {
        group_id: "x".into(),
        topics: vec![],
    });
    assert_eq!(out.response.error, Some(CoordinatorError::GroupIdNotFound));
}

#[test]
fn offsets_expire_only_for_empty_groups() {
    let cfg = CoordinatorConfig {
        offsets_retention_ms: 1_000_000,
        offsets_retention_check_interval_ms: 1_000,
        ..config()
    };
    let mut m = GroupStateMachine::new(cfg, 1);
    let _ = m.tick(0);
    let (ids, generation) = stable_group(&mut m, "active", 1, 0);
    let _ = m.commit_offsets(commit("active", generation, &ids[0], 1, ""), 0);
    let _ = m.commit_offsets(commit("simple", -1, "", 1, ""), 0);
    // Keep the active member alive well past the retention.
    let mut t = 0;
    while t < 2_000_000 {
        t += 5_000;
        let _ = m.heartbeat(hb("active", &ids[0], generation), t);
        let _ = m.tick(t);
    }
    assert_eq!(
        fetch(&m, "active"),
        1,
        "never while the group is active (KIP-211)"
    );
    assert_eq!(
        m.describe_group("simple").state,
        GroupState::Dead,
        "simple group offsets expire by commit time"
    );
    // Once empty, the retention counts from when the group became empty.
    let _ = m.leave_group(
        LeaveGroupRequest {
            group_id: "active".into(),
            members: vec![LeavingMember {
                member_id: ids[0].clone(),
                group_instance_id: None,
                reason: None,
            }],
        },
        t,
    );
    let _ = m.tick(t + 999_000);
    assert_eq!(fetch(&m, "active"), 1);
    let out = m.tick(t + 1_001_000);
    assert_eq!(fetch(&m, "active"), -1);
    assert_eq!(m.describe_group("active").state, GroupState::Dead);
    assert!(out
        .records
        .iter()
        .any(|r| matches!(r, CoordinatorRecord::GroupMetadata { value: None, .. })));
}

/// Replays `records` (through the batch codec) into a fresh machine.
pub(crate) fn replayed(records: &[CoordinatorRecord]) -> GroupStateMachine {
    let raw: Vec<_> = records
        .iter()
        .map(|r| (r.encode_key().unwrap(), r.encode_value().unwrap()))
        .collect();
    let batch = decode_batch(&Bytes::from(encode_batch(&raw, 0))).unwrap();
    let mut fresh = machine();
    for (k, v) in &batch.records {
        let DecodedRecord::Known(r) = CoordinatorRecord::decode(k, v.as_deref()).unwrap() else {
            panic!()
        };
        fresh.replay(&r);
    }
    fresh.finish_load(0);
    fresh
}

#[test]
fn replay_and_snapshot_reproduce_the_persisted_state() {
    let mut m = machine();
    let mut log = Vec::new();
    let (ids, generation) = stable_group(&mut m, "g", 3, 0);
    // stable_group's records went through replay already; rebuild the log from a snapshot first.
    log.extend(m.snapshot());
    log.extend(
        m.commit_offsets(commit("g", generation, &ids[0], 42, "x"), 1)
            .records,
    );
    log.extend(m.commit_offsets(commit("s", -1, "", 1, ""), 1).records);
    log.extend(m.delete_groups(&["s".into()]).records);
    let fresh = replayed(&log);
    assert_eq!(fresh.persisted_groups(), m.persisted_groups());
    assert_eq!(fresh.group_state("g"), Some(GroupState::Stable));
    assert_eq!(fresh.describe_group("s").state, GroupState::Dead);
    // A reloaded Stable member may heartbeat its generation.
    let mut fresh = fresh;
    assert_eq!(
        fresh.heartbeat(hb("g", &ids[1], generation), 5).response,
        Ok(())
    );
    let again = replayed(&fresh.snapshot());
    assert_eq!(again.persisted_groups(), m.persisted_groups());
}
