//! Consumer group APIs over the wire, in process: a real broker, the Kafka listener on
//! 127.0.0.1:0 with its group coordinator, and a minimal client built from kafka-protocol.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use magnetar_coordinator::CoordinatorConfig;
use magnetar_testkit::kafka::KafkaClient as Client;
use magnetar_testkit::TestBroker;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The kit's broker with the topic `orders` (2 partitions) and its Kafka listener, whose group
/// coordinator has 4 offsets partitions and no initial rebalance delay; (server, address,
/// port).
async fn start() -> (TestBroker, String, u16) {
    let mut server = TestBroker::start().await;
    let orders = server.broker.parse_topic("orders").unwrap();
    server
        .broker
        .create_topic(&orders, Some(2), BTreeMap::new())
        .await
        .unwrap();
    let addr = server
        .serve_kafka(|kafka| {
            kafka.group_coordinator = CoordinatorConfig {
                offsets_topic_num_partitions: 4,
                group_initial_rebalance_delay_ms: 0,
                timer_tick_ms: 10,
                ..CoordinatorConfig::default()
            };
        })
        .await;
    (server, addr.to_string(), addr.port())
}

fn join(member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s("app")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(s("range"))
        .with_metadata(Bytes::from_static(b"sub"))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_forms_commits_and_is_deleted_over_the_wire() {
    let (mut server, addr, port) = start().await;
    let mut a = Client::connect(&addr).await;
    let mut b = Client::connect(&addr).await;

    let found: FindCoordinatorResponse = a
        .call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(s("app")),
        )
        .await;
    assert_eq!((found.error_code, found.port), (0, i32::from(port)));
    let found: FindCoordinatorResponse = a
        .call(
            ApiKey::FindCoordinator,
            4,
            &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("app"), s("other")]),
        )
        .await;
    assert_eq!(found.coordinators.len(), 2);
    assert!(found
        .coordinators
        .iter()
        .all(|c| c.error_code == 0 && c.port == i32::from(port)));

    // KIP-394: the first JoinGroup (v5) answers MEMBER_ID_REQUIRED with the id to use.
    let mut ids = Vec::new();
    for c in [&mut a, &mut b] {
        let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join("")).await;
        assert_eq!(r.error_code, ResponseError::MemberIdRequired.code());
        ids.push(r.member_id.to_string());
    }
    let (join_a, join_b) = (join(&ids[0]), join(&ids[1]));
    let (ja, jb) = tokio::join!(
        a.call::<_, JoinGroupResponse>(ApiKey::JoinGroup, 5, &join_a),
        b.call::<_, JoinGroupResponse>(ApiKey::JoinGroup, 7, &join_b),
    );
    assert_eq!((ja.error_code, jb.error_code), (0, 0));
    assert_eq!(ja.generation_id, jb.generation_id);
    let generation = ja.generation_id;
    let (leader, follower) = if ja.leader.as_str() == ids[0] {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let (leader_id, follower_id) = if ja.leader.as_str() == ids[0] {
        (ids[0].clone(), ids[1].clone())
    } else {
        (ids[1].clone(), ids[0].clone())
    };
    let sync = |member: &str, assignments: Vec<sync_group_request::SyncGroupRequestAssignment>| {
        SyncGroupRequest::default()
            .with_group_id(GroupId(s("app")))
            .with_generation_id(generation)
            .with_member_id(s(member))
            .with_assignments(assignments)
    };
    let plan = vec![
        sync_group_request::SyncGroupRequestAssignment::default()
            .with_member_id(s(&leader_id))
            .with_assignment(Bytes::from_static(b"p0")),
        sync_group_request::SyncGroupRequestAssignment::default()
            .with_member_id(s(&follower_id))
            .with_assignment(Bytes::from_static(b"p1")),
    ];
    let follower_sync = sync(&follower_id, vec![]);
    let leader_sync = sync(&leader_id, plan);
    // The follower's SyncGroup goes out first and waits for the leader's assignment. The two
    // connections race on the server, and the answers are the same in either order (a follower
    // arriving last is answered from the stored assignment); the parked path itself is tested
    // without timing in magnetar-coordinator's tests/runtime.rs.
    let follower_sync_id = follower.send(ApiKey::SyncGroup, 5, &follower_sync).await;
    let sl: SyncGroupResponse = leader.call(ApiKey::SyncGroup, 3, &leader_sync).await;
    let sf: SyncGroupResponse = follower
        .receive(ApiKey::SyncGroup, 5, follower_sync_id)
        .await;
    assert_eq!((sf.error_code, sf.assignment.as_ref()), (0, &b"p1"[..]));
    assert_eq!(sf.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    assert_eq!((sl.error_code, sl.assignment.as_ref()), (0, &b"p0"[..]));

    let hb: HeartbeatResponse = a
        .call(
            ApiKey::Heartbeat,
            4,
            &HeartbeatRequest::default()
                .with_group_id(GroupId(s("app")))
                .with_generation_id(generation)
                .with_member_id(s(&ids[0])),
        )
        .await;
    assert_eq!(hb.error_code, 0);

    // Commit: partition 0 and 1 of "orders", and partition 9 which does not exist.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("app")))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(&ids[0]))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(
                    [0, 1, 9]
                        .iter()
                        .map(|p| {
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(10 + i64::from(*p))
                                .with_committed_metadata(Some(s("m")))
                        })
                        .collect(),
                ),
        ]);
    let r: OffsetCommitResponse = a.call(ApiKey::OffsetCommit, 8, &commit).await;
    let codes: Vec<i16> = r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(
        codes,
        vec![0, 0, ResponseError::UnknownTopicOrPartition.code()]
    );

    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("app")))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partition_indexes(vec![0, 1]),
        ]))
        .with_require_stable(true);
    let r: OffsetFetchResponse = a.call(ApiKey::OffsetFetch, 7, &fetch).await;
    let offsets: Vec<i64> = r.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect();
    assert_eq!(offsets, vec![10, 11]);
    // Multi-group form (v8): all offsets of "app", none of "nobody".
    let fetch = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("app")))
            .with_topics(None),
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("nobody")))
            .with_topics(None),
    ]);
    let r: OffsetFetchResponse = a.call(ApiKey::OffsetFetch, 8, &fetch).await;
    assert_eq!(r.groups.len(), 2);
    assert_eq!(r.groups[0].topics[0].partitions.len(), 2);
    assert!(r.groups[1].topics.is_empty());

    let d: DescribeGroupsResponse = a
        .call(
            ApiKey::DescribeGroups,
            5,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("app"))]),
        )
        .await;
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(d.groups[0].members.len(), 2);
    let l: ListGroupsResponse = a
        .call(
            ApiKey::ListGroups,
            4,
            &ListGroupsRequest::default().with_states_filter(vec![s("Stable")]),
        )
        .await;
    assert_eq!(l.groups.len(), 1);
    let del: DeleteGroupsResponse = a
        .call(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("app"))]),
        )
        .await;
    assert_eq!(
        del.results[0].error_code,
        ResponseError::NonEmptyGroup.code()
    );

    // Both leave (v3+ batch form), then the group and its offsets can be deleted.
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("app")))
        .with_members(
            ids.iter()
                .map(|id| leave_group_request::MemberIdentity::default().with_member_id(s(id)))
                .collect(),
        );
    let r: LeaveGroupResponse = a.call(ApiKey::LeaveGroup, 4, &leave).await;
    assert_eq!(r.error_code, 0);
    assert!(r.members.iter().all(|m| m.error_code == 0));
    let od: OffsetDeleteResponse = a
        .call(
            ApiKey::OffsetDelete,
            0,
            &OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("app")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(s("orders")))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(1),
                        ]),
                ]),
        )
        .await;
    assert_eq!(
        (od.error_code, od.topics[0].partitions[0].error_code),
        (0, 0)
    );
    let del: DeleteGroupsResponse = a
        .call(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("app"))]),
        )
        .await;
    assert_eq!(del.results[0].error_code, 0);
    let d: DescribeGroupsResponse = a
        .call(
            ApiKey::DescribeGroups,
            0,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("app"))]),
        )
        .await;
    assert_eq!(d.groups[0].group_state.as_str(), "Dead");

    // JoinGroup v0 (no member id required, no rebalance timeout) parks and completes alone.
    let r: JoinGroupResponse = a
        .call(
            ApiKey::JoinGroup,
            0,
            &join("").with_rebalance_timeout_ms(-1),
        )
        .await;
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    assert_eq!(r.leader, r.member_id);

    server.stop().await;
}
