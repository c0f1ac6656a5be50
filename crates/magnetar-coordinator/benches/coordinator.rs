//! Criterion benches of the group coordinator: offset commits per second (state machine and
//! runtime over a real broker; one member, and 100 members committing concurrently), a
//! 10-member rebalance (state machine and runtime), and the load time of an offsets partition
//! holding 100k committed offsets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use magnetar_broker::{Broker, BrokerConfig, FsyncPolicy, LedgerConfig, SystemClock};
use magnetar_coordinator::*;
use magnetar_metadata::{MemoryStore, MetadataStore};

fn join(group: &str, member: &str, client: &str) -> JoinGroupRequest {
    join_round(group, member, client, 0)
}

/// A join whose metadata changes with `round`, so every member's rejoin is part of a rebalance
/// (a follower rejoining with unchanged metadata would just get the current generation back).
fn join_round(group: &str, member: &str, client: &str, round: u64) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: group.into(),
        member_id: member.into(),
        group_instance_id: None,
        protocol_type: "consumer".into(),
        protocols: vec![Protocol {
            name: "range".into(),
            metadata: Bytes::from(round.to_be_bytes().to_vec()),
        }],
        session_timeout_ms: 30_000,
        rebalance_timeout_ms: 30_000,
        client_id: client.into(),
        client_host: "/127.0.0.1".into(),
        require_known_member_id: false,
        reason: None,
    }
}

fn commit(
    group: &str,
    generation: i32,
    member: &str,
    partition: i32,
    offset: i64,
) -> OffsetCommitRequest {
    OffsetCommitRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        topics: vec![CommitTopic {
            name: "orders".into(),
            partitions: vec![CommitPartition {
                partition,
                offset,
                leader_epoch: 0,
                metadata: None,
                commit_timestamp_ms: None,
            }],
        }],
    }
}

fn sync(
    group: &str,
    generation: i32,
    member: &str,
    assignments: Vec<MemberAssignment>,
) -> SyncGroupRequest {
    SyncGroupRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        protocol_type: None,
        protocol_name: None,
        assignments,
    }
}

fn machine_config() -> CoordinatorConfig {
    CoordinatorConfig {
        group_initial_rebalance_delay_ms: 100,
        ..CoordinatorConfig::default()
    }
}

/// A Stable group of `n` members in a bare state machine; returns member ids and generation.
fn machine_group(m: &mut GroupStateMachine, n: usize, now: i64) -> (Vec<String>, i32) {
    let mut ids = Vec::new();
    for i in 0..n {
        let out = m.join_group(join("g", "", &format!("c{i}")), now);
        if let JoinOutcome::Parked { member_id } = out.response {
            ids.push(member_id);
        }
    }
    // The initial rebalance delay runs out (extended once, as members kept arriving): one
    // generation with every member.
    let mut completions = m.tick(now + 1_000).completions;
    completions.extend(m.tick(now + 2_000).completions);
    let mut generation = 0;
    let mut leader = String::new();
    for c in &completions {
        if let Completion::Join { response, .. } = c {
            generation = response.generation_id;
            leader = response.leader.clone();
        }
    }
    for id in ids.iter().filter(|i| **i != leader) {
        let _ = m.sync_group(sync("g", generation, id, vec![]), now + 2_000);
    }
    let plan = ids
        .iter()
        .map(|id| MemberAssignment {
            member_id: id.clone(),
            assignment: Bytes::from_static(b"assignment"),
        })
        .collect();
    let out = m.sync_group(sync("g", generation, &leader, plan), now + 2_000);
    assert_eq!(out.completions.len(), n - 1);
    (ids, generation)
}

/// Every member rejoins, then syncs; the leader assigns.
fn rebalance_machine(m: &mut GroupStateMachine, ids: &[String], now: i64, generation: &mut i32) {
    let round = *generation as u64 + 1;
    let mut responses = Vec::new();
    for id in ids {
        let out = m.join_group(join_round("g", id, "c", round), now);
        if let JoinOutcome::Done(r) = out.response {
            responses.push(r);
        }
        for c in out.completions {
            if let Completion::Join { response, .. } = c {
                responses.push(response);
            }
        }
    }
    let mut leader = String::new();
    for r in &responses {
        *generation = r.generation_id;
        leader = r.leader.clone();
    }
    for id in ids.iter().filter(|i| **i != leader) {
        let _ = m.sync_group(sync("g", *generation, id, vec![]), now);
    }
    let plan = ids
        .iter()
        .map(|id| MemberAssignment {
            member_id: id.clone(),
            assignment: Bytes::from_static(b"assignment"),
        })
        .collect();
    let out = m.sync_group(sync("g", *generation, &leader, plan), now);
    assert_eq!(
        out.completions.len(),
        ids.len() - 1,
        "every follower gets its assignment"
    );
}

fn state_machine(c: &mut Criterion) {
    let mut group = c.benchmark_group("state_machine");
    group.throughput(Throughput::Elements(1));
    for members in [1usize, 100] {
        let mut m = GroupStateMachine::new(machine_config(), 1);
        let (ids, generation) = machine_group(&mut m, members, 0);
        let mut n = 0i64;
        group.bench_function(format!("commit_{members}_members"), |b| {
            b.iter(|| {
                n += 1;
                let id = &ids[n as usize % ids.len()];
                let out = m.commit_offsets(commit("g", generation, id, (n % 100) as i32, n), 3_000);
                assert!(out.response.topics[0].partitions[0].error.is_none());
                out.records
            })
        });
    }
    let mut m = GroupStateMachine::new(machine_config(), 1);
    let (ids, mut generation) = machine_group(&mut m, 10, 0);
    group.bench_function("rebalance_10_members", |b| {
        b.iter(|| rebalance_machine(&mut m, &ids, 3_000, &mut generation))
    });
    group.finish();
}

fn broker_config(dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        partitions_max: 64,
        producers_per_partition_max: 100,
        ledger: LedgerConfig {
            fsync: FsyncPolicy::Always,
            ..LedgerConfig::default()
        },
        ..BrokerConfig::for_data_dir(dir)
    }
}

async fn start(dir: &std::path::Path) -> (Arc<Broker>, Arc<GroupCoordinator>) {
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let broker = Broker::open(broker_config(dir), metadata, Arc::new(SystemClock))
        .await
        .unwrap();
    let config = CoordinatorConfig {
        group_initial_rebalance_delay_ms: 100,
        offsets_topic_num_partitions: 1,
        ..CoordinatorConfig::default()
    };
    let coordinator = GroupCoordinator::start(broker.clone(), config)
        .await
        .unwrap();
    (broker, coordinator)
}

/// Joins `n` members concurrently and syncs them; returns member ids and generation.
async fn runtime_rebalance(
    c: &Arc<GroupCoordinator>,
    group: &str,
    ids: &[String],
    round: u64,
) -> (Vec<String>, i32) {
    let joins: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let c = c.clone();
            let req = join_round(group, id, &format!("c{i}"), round);
            tokio::spawn(async move { c.join_group(req).await })
        })
        .collect();
    let mut responses = Vec::new();
    for j in joins {
        responses.push(j.await.unwrap());
    }
    let generation = responses[0].generation_id;
    for r in &responses {
        if r.error.is_some() || r.generation_id != generation {
            panic!("join in round {round}: {r:?} (first generation {generation})");
        }
    }
    let leader = responses
        .iter()
        .find(|r| !r.members.is_empty())
        .map(|r| r.member_id.clone())
        .unwrap();
    let members: Vec<String> = responses.iter().map(|r| r.member_id.clone()).collect();
    let syncs: Vec<_> = members
        .iter()
        .map(|id| {
            let c = c.clone();
            let plan = if *id == leader {
                members
                    .iter()
                    .map(|m| MemberAssignment {
                        member_id: m.clone(),
                        assignment: Bytes::from_static(b"assignment"),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let req = sync(group, generation, id, plan);
            tokio::spawn(async move { c.sync_group(req).await })
        })
        .collect();
    for (s, id) in syncs.into_iter().zip(&members) {
        let r = s.await.unwrap();
        if r.error.is_some() {
            let view = c.group_view(group).await.unwrap();
            panic!(
                "sync of {id} (leader {leader}, generation {generation}): {r:?}; group {view:#?}"
            );
        }
    }
    (members, generation)
}

fn runtime(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (broker, coordinator) = rt.block_on(start(dir.path()));
    let mut group = c.benchmark_group("runtime");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));

    let (ids, generation) = rt.block_on(runtime_rebalance(&coordinator, "g1", &[String::new()], 0));
    group.throughput(Throughput::Elements(1));
    group.bench_function("commit_1_member_fsync_always", |b| {
        let mut n = 0;
        b.iter(|| {
            n += 1;
            let c = coordinator.clone();
            let id = ids[0].clone();
            rt.block_on(async move { c.commit_offsets(commit("g1", generation, &id, 0, n)).await })
        })
    });

    let empty: Vec<String> = (0..100).map(|_| String::new()).collect();
    let (ids, generation) = rt.block_on(runtime_rebalance(&coordinator, "g100", &empty, 0));
    group.throughput(Throughput::Elements(100));
    group.bench_function("commit_100_members_concurrently_fsync_always", |b| {
        let mut n = 0i64;
        b.iter(|| {
            n += 1;
            let c = coordinator.clone();
            let ids = ids.clone();
            rt.block_on(async move {
                let tasks: Vec<_> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        let c = c.clone();
                        let req = commit("g100", generation, id, i as i32, n);
                        tokio::spawn(async move { c.commit_offsets(req).await })
                    })
                    .collect();
                for t in tasks {
                    assert!(t.await.unwrap().topics[0].partitions[0].error.is_none());
                }
            })
        })
    });

    let empty: Vec<String> = (0..10).map(|_| String::new()).collect();
    let (ids, _) = rt.block_on(runtime_rebalance(&coordinator, "g10", &empty, 0));
    let mut round = 0;
    group.throughput(Throughput::Elements(1));
    group.bench_function("rebalance_10_members", |b| {
        b.iter(|| {
            let c = coordinator.clone();
            let ids = ids.clone();
            round += 1;
            rt.block_on(async move { runtime_rebalance(&c, "g10", &ids, round).await })
        })
    });
    group.finish();
    rt.block_on(async {
        coordinator.shutdown().await;
        broker.shutdown().await.unwrap();
    });
}

fn load(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (broker, coordinator) = rt.block_on(start(dir.path()));
    // 100k distinct committed offsets (1000 topics x 100 partitions), 1000 per commit request.
    let setup = Instant::now();
    rt.block_on(async {
        for t in 0..100 {
            let topics = (0..10)
                .map(|k| CommitTopic {
                    name: format!("topic-{t}-{k}"),
                    partitions: (0..100)
                        .map(|p| CommitPartition {
                            partition: p,
                            offset: i64::from(p),
                            leader_epoch: 0,
                            metadata: None,
                            commit_timestamp_ms: None,
                        })
                        .collect(),
                })
                .collect();
            let r = coordinator
                .commit_offsets(OffsetCommitRequest {
                    group_id: "big".into(),
                    generation_id: -1,
                    member_id: String::new(),
                    group_instance_id: None,
                    topics,
                })
                .await;
            assert!(r
                .topics
                .iter()
                .all(|t| t.partitions.iter().all(|p| p.error.is_none())));
        }
    });
    eprintln!("wrote 100k offsets in {:?}", setup.elapsed());
    let mut group = c.benchmark_group("load");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("partition_with_100k_offsets", |b| {
        b.iter(|| {
            let c = coordinator.clone();
            rt.block_on(async move {
                let stats = c.load_partition(0).await.unwrap();
                assert_eq!(stats.records, 100_000);
                stats
            })
        })
    });
    group.finish();
    rt.block_on(async {
        coordinator.shutdown().await;
        broker.shutdown().await.unwrap();
    });
}

criterion_group!(benches, state_machine, runtime, load);
criterion_main!(benches);
