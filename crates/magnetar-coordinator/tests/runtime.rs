//! The coordinator runtime over a real broker (embedded metadata store, ledgers in a temporary
//! directory): groups form through parked JoinGroup/SyncGroup requests, offsets survive a full
//! broker restart, and compaction keeps the latest values.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use magnetar_broker::{Broker, BrokerConfig, SystemClock};
use magnetar_coordinator::*;
use magnetar_metadata::{MetadataStore, RedbStore};
use magnetar_testkit::wait_until;

fn broker_config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        partitions_max: 64,
        producers_per_partition_max: 100,
        ..BrokerConfig::for_data_dir(dir.to_path_buf())
    }
}

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        offsets_topic_num_partitions: 4,
        group_initial_rebalance_delay_ms: 50,
        timer_tick_ms: 10,
        ..CoordinatorConfig::default()
    }
}

async fn open(dir: &Path) -> (Arc<Broker>, Arc<GroupCoordinator>) {
    let metadata: Arc<dyn MetadataStore> =
        Arc::new(RedbStore::open(&dir.join("metadata.redb")).await.unwrap());
    let broker = Broker::open(broker_config(dir), metadata, Arc::new(SystemClock))
        .await
        .unwrap();
    let coordinator = GroupCoordinator::start(broker.clone(), config())
        .await
        .unwrap();
    wait_loaded(&coordinator, config().offsets_topic_num_partitions as usize).await;
    (broker, coordinator)
}

/// Waits (bounded) until the startup loader has loaded every offsets partition: a request that
/// reaches a partition still loading is answered CoordinatorLoadInProgress (clients retry it),
/// which tests that assert on the first answer must not race.
async fn wait_loaded(coordinator: &GroupCoordinator, partitions: usize) {
    wait_until("every offsets partition loaded", || {
        coordinator.loaded_partitions() == partitions
    })
    .await;
}

/// Polls `future` once with a waker that does nothing: runs it up to its first wait.
fn poll_once<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}

async fn close(broker: Arc<Broker>, coordinator: Arc<GroupCoordinator>) {
    coordinator.shutdown().await;
    broker.shutdown().await.unwrap();
}

fn join(group: &str, member: &str, client: &str) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: group.into(),
        member_id: member.into(),
        group_instance_id: None,
        protocol_type: "consumer".into(),
        protocols: vec![Protocol {
            name: "range".into(),
            metadata: Bytes::from_static(b"sub"),
        }],
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        client_id: client.into(),
        client_host: "/127.0.0.1".into(),
        require_known_member_id: true,
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
                leader_epoch: 1,
                metadata: Some(format!("m{offset}")),
                commit_timestamp_ms: None,
            }],
        }],
    }
}

async fn fetch(c: &GroupCoordinator, group: &str, partition: i32) -> i64 {
    let r = c
        .fetch_offsets(OffsetFetchRequest {
            group_id: group.into(),
            topics: Some(vec![TopicPartitions {
                name: "orders".into(),
                partitions: vec![partition],
            }]),
            require_stable: true,
        })
        .await;
    assert_eq!(r.error, None);
    r.topics[0].partitions[0].offset
}

/// Two members join concurrently; returns (leader id, follower id, generation).
async fn form_group(c: &Arc<GroupCoordinator>, group: &str) -> (String, String, i32) {
    let mut ids = Vec::new();
    for client in ["a", "b"] {
        let r = c.join_group(join(group, "", client)).await;
        assert_eq!(r.error, Some(CoordinatorError::MemberIdRequired));
        ids.push(r.member_id);
    }
    let (ra, rb) = tokio::join!(
        c.join_group(join(group, &ids[0], "a")),
        c.join_group(join(group, &ids[1], "b"))
    );
    assert_eq!((ra.error, rb.error), (None, None));
    assert_eq!(ra.generation_id, rb.generation_id);
    assert_eq!(ra.leader, rb.leader);
    let (leader, follower) = if ra.leader == ids[0] {
        (ra, rb)
    } else {
        (rb, ra)
    };
    assert_eq!(leader.members.len(), 2);
    assert!(follower.members.is_empty());
    let generation = leader.generation_id;
    let sync = |member: &str, assignments: Vec<MemberAssignment>| SyncGroupRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments,
    };
    let plan = vec![
        MemberAssignment {
            member_id: leader.member_id.clone(),
            assignment: Bytes::from_static(b"p0"),
        },
        MemberAssignment {
            member_id: follower.member_id.clone(),
            assignment: Bytes::from_static(b"p1"),
        },
    ];
    // The follower's SyncGroup first: one poll runs it into the coordinator, where it parks
    // until the leader's assignment is durable (no sleep orders the two).
    let mut follower_sync = std::pin::pin!(c.sync_group(sync(&follower.member_id, vec![])));
    assert!(
        poll_once(follower_sync.as_mut()).is_pending(),
        "the follower's SyncGroup waits for the leader's"
    );
    let (sf, sl) = tokio::join!(follower_sync, c.sync_group(sync(&leader.member_id, plan)));
    assert_eq!((sf.error, sf.assignment.as_ref()), (None, &b"p1"[..]));
    assert_eq!((sl.error, sl.assignment.as_ref()), (None, &b"p0"[..]));
    (leader.member_id, follower.member_id, generation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_and_groups_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, c) = open(dir.path()).await;
    assert_eq!(c.partition_count(), 4);
    let (leader, follower, generation) = form_group(&c, "orders-app").await;
    assert_eq!(
        c.heartbeat(HeartbeatRequest {
            group_id: "orders-app".into(),
            generation_id: generation,
            member_id: follower.clone(),
            group_instance_id: None
        })
        .await,
        Ok(())
    );
    for p in 0..3 {
        let r = c
            .commit_offsets(commit(
                "orders-app",
                generation,
                &leader,
                p,
                100 + i64::from(p),
            ))
            .await;
        assert_eq!(r.topics[0].partitions[0].error, None);
    }
    for g in 0..20 {
        let r = c
            .commit_offsets(commit(&format!("simple-{g}"), -1, "", 0, g))
            .await;
        assert_eq!(r.topics[0].partitions[0].error, None);
    }
    let lag = c.group_lag("orders-app").await.unwrap();
    assert_eq!(lag.len(), 3);
    close(broker, c).await;

    let (broker, c) = open(dir.path()).await;
    for p in 0..3 {
        assert_eq!(fetch(&c, "orders-app", p).await, 100 + i64::from(p));
    }
    for g in 0..20 {
        assert_eq!(fetch(&c, &format!("simple-{g}"), 0).await, g);
    }
    let view = c.group_view("orders-app").await.unwrap().unwrap();
    assert_eq!(
        (view.state, view.generation_id, view.members.len()),
        (GroupState::Stable, generation, 2)
    );
    assert_eq!(view.leader.as_deref(), Some(leader.as_str()));
    // The loaded generation keeps serving: heartbeats and commits of its members are accepted.
    assert_eq!(
        c.heartbeat(HeartbeatRequest {
            group_id: "orders-app".into(),
            generation_id: generation,
            member_id: follower.clone(),
            group_instance_id: None
        })
        .await,
        Ok(())
    );
    let listed = c.list_groups(&[]).await.unwrap();
    assert_eq!(listed.len(), 21);
    // Both leave: the group becomes Empty and can then be deleted.
    let left = c
        .leave_group(LeaveGroupRequest {
            group_id: "orders-app".into(),
            members: vec![
                LeavingMember {
                    member_id: leader,
                    group_instance_id: None,
                    reason: None,
                },
                LeavingMember {
                    member_id: follower,
                    group_instance_id: None,
                    reason: None,
                },
            ],
        })
        .await;
    assert!(left.members.iter().all(|m| m.error.is_none()), "{left:?}");
    let deleted = c.delete_groups(&["orders-app".into(), "nope".into()]).await;
    assert_eq!(
        deleted,
        vec![
            ("orders-app".to_string(), None),
            ("nope".to_string(), Some(CoordinatorError::GroupIdNotFound))
        ]
    );
    close(broker, c).await;

    let (broker, c) = open(dir.path()).await;
    assert_eq!(fetch(&c, "orders-app", 0).await, -1);
    assert_eq!(
        c.describe_groups(&["orders-app".into()]).await[0].state,
        GroupState::Dead
    );
    assert_eq!(fetch(&c, "simple-7", 0).await, 7);
    close(broker, c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_the_latest_values() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, c) = open(dir.path()).await;
    for offset in 0..300 {
        let r = c
            .commit_offsets(commit("busy", -1, "", (offset % 3) as i32, offset))
            .await;
        assert_eq!(r.topics[0].partitions[0].error, None);
    }
    let _ = c.commit_offsets(commit("gone", -1, "", 0, 1)).await;
    let _ = c.delete_groups(&["gone".into()]).await;
    let partition = c.partition_for("busy");
    let stats = c.compact(partition).await.unwrap().expect("compacted");
    assert!(stats.new_start_index >= 300, "{stats:?}");
    assert_eq!(stats.records_written, 3);
    close(broker, c).await;

    let (broker, c) = open(dir.path()).await;
    assert_eq!(c.load_partition(partition).await.unwrap().records, 3);
    assert_eq!(fetch(&c, "busy", 0).await, 297);
    assert_eq!(fetch(&c, "busy", 1).await, 298);
    assert_eq!(fetch(&c, "busy", 2).await, 299);
    assert_eq!(fetch(&c, "gone", 0).await, -1);
    close(broker, c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_joins_are_answered_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let metadata: Arc<dyn MetadataStore> = Arc::new(
        RedbStore::open(&dir.path().join("metadata.redb"))
            .await
            .unwrap(),
    );
    let broker = Broker::open(broker_config(dir.path()), metadata, Arc::new(SystemClock))
        .await
        .unwrap();
    // The initial rebalance delay keeps the join phase open well past the shutdown below.
    let config = CoordinatorConfig {
        group_initial_rebalance_delay_ms: 30_000,
        ..config()
    };
    let c = GroupCoordinator::start(broker.clone(), config)
        .await
        .unwrap();
    let r = c.join_group(join("g", "", "a")).await;
    let id = r.member_id;
    // One poll runs the JoinGroup into the coordinator, where it parks (no sleep needed).
    let mut parked = std::pin::pin!(c.join_group(join("g", &id, "a")));
    assert!(
        poll_once(parked.as_mut()).is_pending(),
        "the JoinGroup parks"
    );
    let (r, ()) = tokio::join!(parked, c.shutdown());
    assert_eq!(r.error, Some(CoordinatorError::CoordinatorNotAvailable));
    assert_eq!(
        c.heartbeat(HeartbeatRequest {
            group_id: "g".into(),
            generation_id: 0,
            member_id: "x".into(),
            group_instance_id: None
        })
        .await,
        Err(CoordinatorError::CoordinatorNotAvailable)
    );
    broker.shutdown().await.unwrap();
}

/// Regression (issue 5): a request loads its offsets partition lazily while the startup loader
/// is still walking the partitions; when the loader reached that partition it reloaded it from
/// the log, dropping what records do not carry (the KIP-394 pending member here, a rebalance in
/// progress and parked requests in the wild), so the member's JoinGroup got UNKNOWN_MEMBER_ID
/// or an empty assignment. The startup loader now skips partitions already loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_startup_loader_does_not_reload_a_partition_a_request_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let metadata: Arc<dyn MetadataStore> = Arc::new(
        RedbStore::open(&dir.path().join("metadata.redb"))
            .await
            .unwrap(),
    );
    let broker = Broker::open(broker_config(dir.path()), metadata, Arc::new(SystemClock))
        .await
        .unwrap();
    let config = CoordinatorConfig {
        offsets_topic_num_partitions: 50,
        group_initial_rebalance_delay_ms: 0,
        ..config()
    };
    let c = GroupCoordinator::start(broker.clone(), config)
        .await
        .unwrap();
    // A group on the last partition, which the startup loader (walking 0..50) reaches last.
    let group = (0..)
        .map(|i| format!("late-{i}"))
        .find(|g| c.partition_for(g) == 49)
        .unwrap();
    let first = c.join_group(join(&group, "", "c")).await;
    assert_eq!(first.error, Some(CoordinatorError::MemberIdRequired));
    wait_until("the startup load finished", || c.loaded_partitions() >= 50).await;
    let joined = c.join_group(join(&group, &first.member_id, "c")).await;
    assert_eq!(
        joined.error, None,
        "the pending member survived the startup load"
    );
    assert_eq!(joined.leader, first.member_id);
    close(broker, c).await;
}

/// Issue 20: the leader's SyncGroup moves the group to Stable before its assignment record is
/// durable. A follower's SyncGroup arriving in that window was answered at once, with an
/// assignment not yet persisted and ahead of the leader's own answer (aiokafka then saw the new
/// member own its partition while the leader had not taken its new assignment). Now an answer
/// that writes nothing waits for the records queued before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_shows_a_state_that_is_not_durable_yet() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    let dir = tempfile::tempdir().unwrap();
    let (broker, c) = open(dir.path()).await;
    let group = "durable-first";
    let mut ids = Vec::new();
    for client in ["a", "b"] {
        let r = c.join_group(join(group, "", client)).await;
        assert_eq!(r.error, Some(CoordinatorError::MemberIdRequired));
        ids.push(r.member_id);
    }
    let (ra, rb) = tokio::join!(
        c.join_group(join(group, &ids[0], "a")),
        c.join_group(join(group, &ids[1], "b"))
    );
    assert_eq!((ra.error, rb.error), (None, None));
    let (leader, follower) = if ra.leader == ra.member_id {
        (ra, rb)
    } else {
        (rb, ra)
    };
    let generation = leader.generation_id;
    let sync = |member: &str, assignments: Vec<MemberAssignment>| SyncGroupRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments,
    };
    let plan = vec![
        MemberAssignment {
            member_id: leader.member_id.clone(),
            assignment: Bytes::from_static(b"p0"),
        },
        MemberAssignment {
            member_id: follower.member_id.clone(),
            assignment: Bytes::from_static(b"p1"),
        },
    ];

    {
        let held = c.hold_writes().await;
        let noop = &mut Context::from_waker(Waker::noop());
        // One poll runs the leader's request to its wait for its record: the state machine is
        // Stable from here, the record held.
        let mut leader_sync = std::pin::pin!(c.sync_group(sync(&leader.member_id, plan)));
        assert!(leader_sync.as_mut().poll(noop).is_pending());
        // Neither the follower's SyncGroup, nor a heartbeat, nor an offset fetch may be answered
        // before that record is durable.
        let mut follower_sync = std::pin::pin!(c.sync_group(sync(&follower.member_id, vec![])));
        let first = follower_sync.as_mut().poll(noop);
        assert!(
            matches!(first, Poll::Pending),
            "the follower got an assignment that is not durable yet: {first:?}"
        );
        let mut heartbeat = std::pin::pin!(c.heartbeat(HeartbeatRequest {
            group_id: group.into(),
            generation_id: generation,
            member_id: follower.member_id.clone(),
            group_instance_id: None,
        }));
        assert!(heartbeat.as_mut().poll(noop).is_pending());
        let described_ids = [group.to_string()];
        let mut described = std::pin::pin!(c.describe_groups(&described_ids));
        assert!(described.as_mut().poll(noop).is_pending());

        drop(held);
        let (sl, sf, hb, described) =
            tokio::join!(leader_sync, follower_sync, heartbeat, described);
        assert_eq!((sl.error, sl.assignment.as_ref()), (None, &b"p0"[..]));
        assert_eq!((sf.error, sf.assignment.as_ref()), (None, &b"p1"[..]));
        assert_eq!(hb, Ok(()));
        assert_eq!(described[0].state, GroupState::Stable);
        // Nothing is pending any more: answers come at once again.
        let mut again = std::pin::pin!(c.sync_group(sync(&follower.member_id, vec![])));
        match again.as_mut().poll(noop) {
            Poll::Ready(r) => assert_eq!(r.assignment.as_ref(), b"p1"),
            Poll::Pending => panic!("an answer waited with no write queued"),
        }
    }
    close(broker, c).await;
}
