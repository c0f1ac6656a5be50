//! Property test: simulated clients run any interleaving of join, sync, heartbeat, leave,
//! commit, crash and time passing against one group. Checked after every step: generation ids
//! never go down; each generation has exactly one leader, named alike in every JoinGroup answer;
//! every member that synced a generation got the assignment that generation's leader chose for
//! it, and no partition is assigned twice in a generation; no partition is owned by two clients
//! that are both members of the group, whatever their generations (clients own what they last
//! synced and give it up, as eager consumers do, before they rejoin, when they leave or crash,
//! and when told they are no longer members: so a join into a Stable group must not complete
//! before every member still owning partitions has rejoined or been removed); Stable and Empty
//! groups equal their last record. At the end, replaying every emitted record from scratch
//! (through the record and batch codecs) reproduces the persisted state.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::tests::replayed;
use super::*;

const GROUP: &str = "g";
const CLIENTS: usize = 4;
const PARTITIONS: u8 = 6;

#[derive(Clone, Debug)]
enum Action {
    Join(usize),
    Sync(usize),
    Heartbeat(usize),
    Leave(usize),
    Commit(usize),
    /// The client process dies without leaving; its member lingers until its session ends.
    Crash(usize),
    Advance(i64),
}

fn action() -> impl Strategy<Value = Action> {
    let c = 0..CLIENTS;
    prop_oneof![
        3 => c.clone().prop_map(Action::Join),
        3 => c.clone().prop_map(Action::Sync),
        2 => c.clone().prop_map(Action::Heartbeat),
        1 => c.clone().prop_map(Action::Leave),
        1 => c.clone().prop_map(Action::Commit),
        1 => c.prop_map(Action::Crash),
        2 => (1i64..15_000).prop_map(Action::Advance),
    ]
}

#[derive(Clone, Debug, Default)]
struct Client {
    member_id: String,
    generation: i32,
    awaiting_join: bool,
    awaiting_sync: bool,
    /// Joined `generation`, not synced yet; the leader holds the members to assign.
    to_sync: Option<Vec<String>>,
    is_static: bool,
    /// The partitions this client consumes: what it last synced, until it revokes them.
    owned: Vec<u8>,
}

#[derive(Default)]
struct World {
    clients: Vec<Client>,
    records: Vec<CoordinatorRecord>,
    /// Per generation, the client that leads it (a static member keeps leading across restarts
    /// under a new member id, so leaders are compared by client).
    leaders: BTreeMap<i32, Option<usize>>,
    /// Which client each member id was handed to.
    owners: BTreeMap<String, usize>,
    /// Per generation: what the leader assigned, and what members received.
    /// Keyed by client: a static member's assignment follows it to its new member id.
    proposed: BTreeMap<i32, BTreeMap<usize, Bytes>>,
    received: BTreeMap<i32, BTreeMap<usize, Bytes>>,
    last_generation: i32,
    /// Crashed dynamic members counted so far (see [`GHOST_BASE`]).
    ghosts: usize,
}

/// Owner numbers of crashed dynamic members start here, so they never collide with a client.
const GHOST_BASE: usize = 1_000;

impl World {
    fn request(&self, i: usize) -> JoinGroupRequest {
        let c = &self.clients[i];
        JoinGroupRequest {
            group_id: GROUP.into(),
            member_id: c.member_id.clone(),
            group_instance_id: c.is_static.then(|| format!("instance-{i}")),
            protocol_type: "consumer".into(),
            protocols: vec![Protocol {
                name: "range".into(),
                metadata: Bytes::from(vec![i as u8]),
            }],
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 20_000,
            client_id: format!("c{i}"),
            client_host: "/h".into(),
            require_known_member_id: true,
            reason: None,
        }
    }

    fn client_of(&mut self, member_id: &str) -> Option<&mut Client> {
        self.clients
            .iter_mut()
            .find(|c| !member_id.is_empty() && c.member_id == member_id)
    }

    fn on_join(&mut self, member_id: &str, r: &JoinGroupResponse) -> Result<(), TestCaseError> {
        if r.error.is_none() {
            let client = self.owners.get(&r.leader).copied();
            let leader = *self.leaders.entry(r.generation_id).or_insert(client);
            prop_assert_eq!(
                leader,
                client,
                "two leaders in generation {}",
                r.generation_id
            );
            prop_assert_eq!(
                !r.members.is_empty(),
                r.leader == member_id,
                "only the leader gets members"
            );
        }
        let Some(c) = self.client_of(member_id) else {
            return Ok(());
        };
        c.awaiting_join = false;
        match r.error {
            None => {
                c.generation = r.generation_id;
                c.to_sync = Some(r.members.iter().map(|m| m.member_id.clone()).collect());
            }
            Some(CoordinatorError::MemberIdRequired) => c.member_id = r.member_id.clone(),
            Some(CoordinatorError::UnknownMemberId | CoordinatorError::FencedInstanceId) => {
                c.member_id.clear();
                c.to_sync = None;
                c.owned.clear();
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn on_sync(&mut self, member_id: &str, r: &SyncGroupResponse) -> Result<(), TestCaseError> {
        let owner = self.owners.get(member_id).copied();
        let Some(c) = self.client_of(member_id) else {
            return Ok(());
        };
        c.awaiting_sync = false;
        c.to_sync = None;
        let generation = c.generation;
        match r.error {
            None => {
                let client = owner.unwrap_or(usize::MAX);
                let proposal = self
                    .proposed
                    .get(&generation)
                    .and_then(|p| p.get(&client))
                    .cloned()
                    .unwrap_or_default();
                prop_assert_eq!(
                    &r.assignment,
                    &proposal,
                    "member {} got what its leader did not assign in generation {}",
                    member_id,
                    generation
                );
                self.received
                    .entry(generation)
                    .or_default()
                    .insert(client, r.assignment.clone());
                let mut seen = BTreeSet::new();
                for bytes in self.received[&generation].values() {
                    for p in bytes.iter() {
                        prop_assert!(
                            seen.insert(*p),
                            "partition {} assigned twice in generation {}",
                            p,
                            generation
                        );
                    }
                }
                if let Some(c) = self.client_of(member_id) {
                    c.owned = r.assignment.to_vec();
                }
            }
            Some(CoordinatorError::UnknownMemberId | CoordinatorError::FencedInstanceId) => {
                c.member_id.clear();
                c.owned.clear();
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// No partition is owned by two clients that are both members of the group now. A client
    /// the coordinator removed may still own partitions until it learns (a zombie, fenced by
    /// its generation), so only live members are compared.
    fn check_ownership(&self, m: &GroupStateMachine) -> Result<(), TestCaseError> {
        let live: BTreeSet<String> = m
            .group_view(GROUP)
            .map(|g| g.members.into_iter().map(|v| v.member_id).collect())
            .unwrap_or_default();
        let mut owners: BTreeMap<u8, usize> = BTreeMap::new();
        for (i, c) in self.clients.iter().enumerate() {
            if c.member_id.is_empty() || !live.contains(&c.member_id) {
                continue;
            }
            for p in &c.owned {
                if let Some(other) = owners.insert(*p, i) {
                    return Err(TestCaseError::fail(format!(
                        "partition {p} owned by live members {other} ({:?}, generation {}) \
                         and {i} ({:?}, generation {})",
                        self.clients[other].member_id,
                        self.clients[other].generation,
                        c.member_id,
                        c.generation
                    )));
                }
            }
        }
        Ok(())
    }

    fn absorb<R>(&mut self, out: Output<R>) -> Result<R, TestCaseError> {
        self.records.extend(out.records);
        for completion in out.completions {
            match completion {
                Completion::Join {
                    member_id,
                    response,
                    ..
                } => self.on_join(&member_id, &response)?,
                Completion::Sync {
                    member_id,
                    response,
                    ..
                } => self.on_sync(&member_id, &response)?,
            }
        }
        Ok(out.response)
    }
}

fn step(
    m: &mut GroupStateMachine,
    w: &mut World,
    now: &mut i64,
    action: Action,
) -> Result<(), TestCaseError> {
    match action {
        Action::Advance(ms) => {
            *now += ms;
            let out = m.tick(*now);
            w.absorb(out)?;
        }
        Action::Join(i) => {
            if w.clients[i].awaiting_join || w.clients[i].awaiting_sync {
                return Ok(());
            }
            // An eager consumer revokes everything before it (re)joins.
            w.clients[i].owned.clear();
            let out = m.join_group(w.request(i), *now);
            match &out.response {
                JoinOutcome::Parked { member_id } => {
                    w.owners.insert(member_id.clone(), i);
                    let c = &mut w.clients[i];
                    c.member_id = member_id.clone();
                    c.awaiting_join = true;
                }
                JoinOutcome::Done(r) if !r.member_id.is_empty() => {
                    w.owners.insert(r.member_id.clone(), i);
                }
                JoinOutcome::Done(_) => {}
            }
            if let JoinOutcome::Done(r) = w.absorb(out)? {
                if w.clients[i].member_id.is_empty() || r.error.is_none() {
                    w.clients[i].member_id = r.member_id.clone();
                }
                let id = w.clients[i].member_id.clone();
                w.on_join(&id, &r)?;
            }
        }
        Action::Sync(i) => {
            let c = w.clients[i].clone();
            let Some(members) = c.to_sync.clone() else {
                return Ok(());
            };
            if c.awaiting_join || c.awaiting_sync || c.member_id.is_empty() {
                return Ok(());
            }
            let mut assignments = Vec::new();
            if !members.is_empty() {
                let mut plan: BTreeMap<String, Vec<u8>> =
                    members.iter().map(|id| (id.clone(), Vec::new())).collect();
                for p in 0..PARTITIONS {
                    let id = &members[p as usize % members.len()];
                    if let Some(v) = plan.get_mut(id) {
                        v.push(p);
                    }
                }
                let plan: BTreeMap<String, Bytes> =
                    plan.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect();
                if m.group_state(GROUP) == Some(GroupState::CompletingRebalance)
                    && m.generation(GROUP) == Some(c.generation)
                {
                    let by_client = plan
                        .iter()
                        .map(|(id, a)| (w.owners.get(id).copied().unwrap_or(usize::MAX), a.clone()))
                        .collect();
                    w.proposed.entry(c.generation).or_insert(by_client);
                }
                assignments = plan
                    .into_iter()
                    .map(|(member_id, assignment)| MemberAssignment {
                        member_id,
                        assignment,
                    })
                    .collect();
            }
            let req = SyncGroupRequest {
                group_id: GROUP.into(),
                generation_id: c.generation,
                member_id: c.member_id.clone(),
                group_instance_id: c.is_static.then(|| format!("instance-{i}")),
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignments,
            };
            let out = m.sync_group(req, *now);
            match w.absorb(out)? {
                SyncOutcome::Done(r) => w.on_sync(&c.member_id, &r)?,
                SyncOutcome::Parked => w.clients[i].awaiting_sync = true,
            }
        }
        Action::Heartbeat(i) => {
            let c = w.clients[i].clone();
            if c.member_id.is_empty() || c.awaiting_join || c.awaiting_sync {
                return Ok(());
            }
            let out = m.heartbeat(
                HeartbeatRequest {
                    group_id: GROUP.into(),
                    generation_id: c.generation,
                    member_id: c.member_id.clone(),
                    group_instance_id: c.is_static.then(|| format!("instance-{i}")),
                },
                *now,
            );
            if let Err(CoordinatorError::UnknownMemberId | CoordinatorError::FencedInstanceId) =
                w.absorb(out)?
            {
                w.clients[i].member_id.clear();
                w.clients[i].owned.clear();
            }
        }
        Action::Leave(i) => {
            let c = w.clients[i].clone();
            if c.member_id.is_empty() {
                return Ok(());
            }
            w.clients[i] = Client {
                is_static: c.is_static,
                ..Client::default()
            };
            let out = m.leave_group(
                LeaveGroupRequest {
                    group_id: GROUP.into(),
                    members: vec![LeavingMember {
                        member_id: c.member_id,
                        group_instance_id: c.is_static.then(|| format!("instance-{i}")),
                        reason: None,
                    }],
                },
                *now,
            );
            w.absorb(out)?;
        }
        Action::Commit(i) => {
            let c = w.clients[i].clone();
            let out = m.commit_offsets(
                OffsetCommitRequest {
                    group_id: GROUP.into(),
                    generation_id: if c.member_id.is_empty() {
                        -1
                    } else {
                        c.generation
                    },
                    member_id: c.member_id.clone(),
                    group_instance_id: None,
                    topics: vec![CommitTopic {
                        name: "t".into(),
                        partitions: vec![CommitPartition {
                            partition: i as i32,
                            offset: *now,
                            leader_epoch: -1,
                            metadata: None,
                            commit_timestamp_ms: None,
                        }],
                    }],
                },
                *now,
            );
            w.absorb(out)?;
        }
        Action::Crash(i) => {
            let is_static = w.clients[i].is_static;
            // The dead process's member lingers until its session ends, and the leader may still
            // assign it partitions. A restarted dynamic client joins as a different member, so
            // the old member id now belongs to nobody alive (a static member's id is replaced on
            // rejoin and its assignment follows the client, so it stays keyed by the client).
            let old = w.clients[i].member_id.clone();
            if !is_static && !old.is_empty() {
                w.ghosts += 1;
                let ghost = GHOST_BASE + w.ghosts;
                w.owners.insert(old, ghost);
                for leader in w.leaders.values_mut() {
                    if *leader == Some(i) {
                        *leader = Some(ghost);
                    }
                }
            }
            w.clients[i] = Client {
                is_static,
                ..Client::default()
            };
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_keeps_the_invariants(
        actions in proptest::collection::vec(action(), 1..120),
        statics in proptest::collection::vec(any::<bool>(), CLIENTS),
        delay in prop_oneof![Just(0), Just(500)],
    ) {
        let config = CoordinatorConfig {
            group_initial_rebalance_delay_ms: delay,
            offsets_retention_check_interval_ms: i64::MAX / 4,
            ..CoordinatorConfig::default()
        };
        let mut m = GroupStateMachine::new(config, 11);
        let mut w = World {
            clients: statics.iter().map(|s| Client { is_static: *s, ..Client::default() }).collect(),
            ..World::default()
        };
        let mut now = 0i64;
        for action in actions {
            step(&mut m, &mut w, &mut now, action)?;
            w.check_ownership(&m)?;
            let generation = m.generation(GROUP).unwrap_or(w.last_generation);
            prop_assert!(generation >= w.last_generation, "generation went from {} to {}", w.last_generation, generation);
            w.last_generation = generation;
            if let Err(e) = m.check_persisted_matches_live() {
                return Err(TestCaseError::fail(e));
            }
        }
        let fresh = replayed(&w.records);
        prop_assert_eq!(fresh.persisted_groups(), m.persisted_groups());
        if let Err(e) = fresh.check_persisted_matches_live() {
            return Err(TestCaseError::fail(e));
        }
    }
}

/// The shrunk input the property test found in CI (2026-11-22), replayed with every choice of
/// static members and initial delay the property can draw.
#[test]
fn regression_assignment_of_a_crashed_member_rejoining() {
    use Action::*;
    let actions = [
        Join(0),
        Advance(10000),
        Join(0),
        Join(1),
        Join(2),
        Join(1),
        Crash(1),
        Join(0),
        Join(0),
        Join(1),
        Join(1),
        Advance(500),
        Advance(500),
        Sync(2),
        Sync(1),
    ];
    for bits in 0..(1u32 << CLIENTS) {
        for delay in [0, 500] {
            let config = CoordinatorConfig {
                group_initial_rebalance_delay_ms: delay,
                offsets_retention_check_interval_ms: i64::MAX / 4,
                ..CoordinatorConfig::default()
            };
            let mut m = GroupStateMachine::new(config, 11);
            let mut w = World {
                clients: (0..CLIENTS)
                    .map(|i| Client {
                        is_static: bits & (1 << i) != 0,
                        ..Client::default()
                    })
                    .collect(),
                ..World::default()
            };
            let mut now = 0i64;
            for a in actions.iter() {
                if let Err(e) =
                    step(&mut m, &mut w, &mut now, a.clone()).and_then(|()| w.check_ownership(&m))
                {
                    panic!("statics {bits:04b} delay {delay} at {a:?}: {e}");
                }
            }
        }
    }
}
