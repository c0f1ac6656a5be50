//! The guard's schemas must read exactly what kafka-protocol reads: each request, populated with
//! two elements in every array and a value in every tagged field, is encoded by the crate at every
//! version this broker serves, and the walk must accept it. Then hostile counts are refused, and
//! decoding what the guard lets through stays within a small multiple of the frame size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchTopic, ForgottenTopic, ReplicaState,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use proptest::prelude::*;

use super::*;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

fn uuid() -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)
}

type Sample = (ApiKey, i16, i16, Box<dyn Fn(i16) -> Bytes>);

fn enc<T: Encodable>(m: &T, v: i16) -> Bytes {
    let mut b = BytesMut::new();
    m.encode(&mut b, v).expect("encode");
    b.freeze()
}

/// Each request populated with what its version can carry.
fn samples() -> Vec<Sample> {
    let metadata = |v: i16| {
        let mut t = MetadataRequestTopic::default().with_name(Some(topic("a")));
        if v >= 10 {
            t = t.with_topic_id(uuid());
        }
        let mut m = MetadataRequest::default()
            .with_topics(Some(vec![
                t,
                MetadataRequestTopic::default().with_name(Some(topic("bb"))),
            ]))
            .with_allow_auto_topic_creation(true);
        if v >= 8 {
            m = m.with_include_topic_authorized_operations(true);
        }
        enc(&m, v)
    };
    let produce = |v: i16| {
        let m = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic("t"))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(Bytes::from_static(b"abc"))),
                        PartitionProduceData::default()
                            .with_index(1)
                            .with_records(None),
                    ]),
                TopicProduceData::default().with_name(topic("u")),
            ]);
        enc(&m, v)
    };
    let fetch = |v: i16| {
        let mut p = FetchPartition::default()
            .with_partition(1)
            .with_fetch_offset(9)
            .with_partition_max_bytes(100);
        if v >= 17 {
            p = p.with_replica_directory_id(uuid());
        }
        let mut t = FetchTopic::default().with_partitions(vec![p.clone(), p]);
        let mut forgotten = ForgottenTopic::default().with_partitions(vec![1, 2]);
        if v >= 13 {
            t = t.with_topic_id(uuid());
            forgotten = forgotten.with_topic_id(uuid());
        } else {
            t = t.with_topic(topic("t"));
            forgotten = forgotten.with_topic(topic("f"));
        }
        let mut m = FetchRequest::default()
            .with_max_wait_ms(5)
            .with_topics(vec![t, FetchTopic::default()]);
        if v >= 7 {
            m = m.with_forgotten_topics_data(vec![forgotten]);
        }
        if v >= 11 {
            m = m.with_rack_id(s("rack"));
        }
        if v >= 12 {
            m = m.with_cluster_id(Some(s("cluster")));
        }
        if v >= 15 {
            m = m.with_replica_state(ReplicaState::default().with_replica_epoch(4));
        }
        enc(&m, v)
    };
    let list_offsets = |v: i16| {
        let m = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic("t"))
            .with_partitions(vec![
                ListOffsetsPartition::default().with_timestamp(-1),
                ListOffsetsPartition::default().with_partition_index(1),
            ])]);
        enc(&m, v)
    };
    let ofle = |v: i16| {
        let m = OffsetForLeaderEpochRequest::default().with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(topic("t"))
                .with_partitions(vec![
                    OffsetForLeaderPartition::default(),
                    OffsetForLeaderPartition::default(),
                ]),
        ]);
        enc(&m, v)
    };
    let init = |v: i16| {
        enc(
            &InitProducerIdRequest::default().with_transaction_timeout_ms(5),
            v,
        )
    };
    let create_topics = |v: i16| {
        let m = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic("t"))
                .with_num_partitions(3)
                .with_assignments(vec![CreatableReplicaAssignment::default()
                    .with_broker_ids(vec![BrokerId(1), BrokerId(2)])])
                .with_configs(vec![
                    CreatableTopicConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("1"))),
                    CreatableTopicConfig::default().with_name(s("x")),
                ])])
            .with_validate_only(true);
        enc(&m, v)
    };
    let delete_topics = |v: i16| {
        let m = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default()
                    .with_name(Some(topic("t")))
                    .with_topic_id(uuid()),
                DeleteTopicState::default(),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![topic("a"), topic("b")])
        };
        enc(&m, v)
    };
    let create_partitions = |v: i16| {
        let m =
            CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic("t"))
                .with_count(4)
                .with_assignments(Some(vec![
                    CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(0)])
                ]))]);
        enc(&m, v)
    };
    let describe_configs = |v: i16| {
        let m = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_configuration_keys(Some(vec![s("a"), s("b")])),
            DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(s("0")),
        ]);
        enc(&m, v)
    };
    let alter_configs = |v: i16| {
        let m =
            AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(s("k"))
                    .with_value(Some(s("v")))])]);
        enc(&m, v)
    };
    let incremental = |v: i16| {
        let m = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(s("k"))
                        .with_config_operation(0)
                        .with_value(Some(s("v"))),
                ]),
        ]);
        enc(&m, v)
    };
    let delete_records = |v: i16| {
        let m = DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic("t"))
            .with_partitions(vec![DeleteRecordsPartition::default().with_offset(3)])]);
        enc(&m, v)
    };
    let describe_cluster = |v: i16| {
        enc(
            &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
            v,
        )
    };
    let api_versions = |v: i16| {
        let mut m = ApiVersionsRequest::default();
        if v >= 3 {
            m = m
                .with_client_software_name(s("magnetar"))
                .with_client_software_version(s("1"));
        }
        enc(&m, v)
    };
    let find_coordinator = |v: i16| {
        let mut m = FindCoordinatorRequest::default();
        if v <= 3 {
            m.key = s("group");
        } else {
            m.coordinator_keys = vec![s("a"), s("b")];
        }
        if v >= 1 {
            m.key_type = 0;
        }
        enc(&m, v)
    };
    let join_group = |v: i16| {
        let mut m = JoinGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_session_timeout_ms(10_000)
            .with_member_id(s("m"))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"meta"))]);
        if v >= 1 {
            m.rebalance_timeout_ms = 30_000;
        }
        if v >= 5 {
            m.group_instance_id = Some(s("i"));
        }
        if v >= 8 {
            m.reason = Some(s("why"));
        }
        enc(&m, v)
    };
    let sync_group = |v: i16| {
        let mut m = SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(3)
            .with_member_id(s("m"))
            .with_assignments(vec![
                sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(s("m"))
                    .with_assignment(Bytes::from_static(b"a")),
            ]);
        if v >= 3 {
            m.group_instance_id = Some(s("i"));
        }
        if v >= 5 {
            m.protocol_type = Some(s("consumer"));
            m.protocol_name = Some(s("range"));
        }
        enc(&m, v)
    };
    let heartbeat = |v: i16| {
        let mut m = HeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(3)
            .with_member_id(s("m"));
        if v >= 3 {
            m.group_instance_id = Some(s("i"));
        }
        enc(&m, v)
    };
    let leave_group = |v: i16| {
        let mut m = LeaveGroupRequest::default().with_group_id(GroupId(s("g")));
        if v <= 2 {
            m.member_id = s("m");
        } else {
            let mut member = leave_group_request::MemberIdentity::default()
                .with_member_id(s("m"))
                .with_group_instance_id(Some(s("i")));
            if v >= 5 {
                member.reason = Some(s("bye"));
            }
            m.members = vec![member];
        }
        enc(&m, v)
    };
    let offset_commit = |v: i16| {
        let mut p = offset_commit_request::OffsetCommitRequestPartition::default()
            .with_partition_index(1)
            .with_committed_offset(42)
            .with_committed_metadata(Some(s("meta")));
        if v >= 6 {
            p.committed_leader_epoch = 5;
        }
        let mut m = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id_or_member_epoch(3)
            .with_member_id(s("m"))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(vec![p]),
            ]);
        if v >= 7 {
            m.group_instance_id = Some(s("i"));
        }
        if v <= 4 {
            m.retention_time_ms = 1000;
        }
        enc(&m, v)
    };
    let offset_fetch = |v: i16| {
        let mut m = OffsetFetchRequest::default();
        if v <= 7 {
            m.group_id = GroupId(s("g"));
            m.topics = Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(topic("t"))
                    .with_partition_indexes(vec![0, 1]),
            ]);
        } else {
            let mut g = offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopics::default()
                        .with_name(topic("t"))
                        .with_partition_indexes(vec![0, 1]),
                ]));
            if v >= 9 {
                g.member_id = Some(s("m"));
                g.member_epoch = 4;
            }
            m.groups = vec![g];
        }
        if v >= 7 {
            m.require_stable = true;
        }
        enc(&m, v)
    };
    let describe_groups = |v: i16| {
        let mut m = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]);
        if v >= 3 {
            m.include_authorized_operations = true;
        }
        enc(&m, v)
    };
    let list_groups = |v: i16| {
        let mut m = ListGroupsRequest::default();
        if v >= 4 {
            m.states_filter = vec![s("Stable")];
        }
        if v >= 5 {
            m.types_filter = vec![s("classic")];
        }
        enc(&m, v)
    };
    let delete_groups = |v: i16| {
        enc(
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
            v,
        )
    };
    let offset_delete = |v: i16| {
        let m = OffsetDeleteRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default()
                            .with_partition_index(2),
                    ]),
            ]);
        enc(&m, v)
    };
    let add_partitions_to_txn = |v: i16| {
        use kafka_protocol::messages::add_partitions_to_txn_request::{
            AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
        };
        let topics = vec![AddPartitionsToTxnTopic::default()
            .with_name(topic("t"))
            .with_partitions(vec![0, 3])];
        let m = if v >= 4 {
            kafka_protocol::messages::AddPartitionsToTxnRequest::default().with_transactions(vec![
                AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(TransactionalId(s("tx")))
                    .with_producer_id(ProducerId(7))
                    .with_producer_epoch(1)
                    .with_topics(topics),
            ])
        } else {
            kafka_protocol::messages::AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s("tx")))
                .with_v3_and_below_producer_id(ProducerId(7))
                .with_v3_and_below_producer_epoch(1)
                .with_v3_and_below_topics(topics)
        };
        enc(&m, v)
    };
    let add_offsets_to_txn = |v: i16| {
        let m = kafka_protocol::messages::AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s("tx")))
            .with_producer_id(ProducerId(7))
            .with_producer_epoch(1)
            .with_group_id(GroupId(s("g")));
        enc(&m, v)
    };
    let txn_offset_commit = |v: i16| {
        use kafka_protocol::messages::txn_offset_commit_request::{
            TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
        };
        let mut m = kafka_protocol::messages::TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s("tx")))
            .with_group_id(GroupId(s("g")))
            .with_producer_id(ProducerId(7))
            .with_producer_epoch(1)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(42)
                    .with_committed_metadata(Some(s("m")))])]);
        if v >= 3 {
            m = m
                .with_generation_id(3)
                .with_member_id(s("member"))
                .with_group_instance_id(Some(s("i")));
        }
        enc(&m, v)
    };
    let end_txn = |v: i16| {
        let m = kafka_protocol::messages::EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s("tx")))
            .with_producer_id(ProducerId(7))
            .with_producer_epoch(1)
            .with_committed(true);
        enc(&m, v)
    };
    let describe_transactions = |v: i16| {
        let m = kafka_protocol::messages::DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(s("tx")), TransactionalId(s("ty"))]);
        enc(&m, v)
    };
    let list_transactions = |v: i16| {
        let m = kafka_protocol::messages::ListTransactionsRequest::default()
            .with_state_filters(vec![s("Ongoing")])
            .with_producer_id_filters(vec![ProducerId(7)]);
        enc(&m, v)
    };
    let describe_producers = |v: i16| {
        let m = kafka_protocol::messages::DescribeProducersRequest::default().with_topics(vec![
            kafka_protocol::messages::describe_producers_request::TopicRequest::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0, 1, 2]),
        ]);
        enc(&m, v)
    };
    let sasl_handshake = |v: i16| {
        enc(
            &SaslHandshakeRequest::default().with_mechanism(s("PLAIN")),
            v,
        )
    };
    let sasl_authenticate = |v: i16| {
        enc(
            &SaslAuthenticateRequest::default()
                .with_auth_bytes(Bytes::from_static(b"\0tenant\0token:x")),
            v,
        )
    };
    let describe_scram = |v: i16| {
        let m = DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
            describe_user_scram_credentials_request::UserName::default().with_name(s("a")),
            describe_user_scram_credentials_request::UserName::default().with_name(s("bb")),
        ]));
        enc(&m, v)
    };
    let alter_scram = |v: i16| {
        use alter_user_scram_credentials_request::{
            ScramCredentialDeletion, ScramCredentialUpsertion,
        };
        let m = AlterUserScramCredentialsRequest::default()
            .with_deletions(vec![
                ScramCredentialDeletion::default()
                    .with_name(s("a"))
                    .with_mechanism(1),
                ScramCredentialDeletion::default()
                    .with_name(s("b"))
                    .with_mechanism(2),
            ])
            .with_upsertions(vec![
                ScramCredentialUpsertion::default()
                    .with_name(s("c"))
                    .with_mechanism(1)
                    .with_iterations(4096)
                    .with_salt(Bytes::from_static(b"salt"))
                    .with_salted_password(Bytes::from_static(&[1; 32])),
                ScramCredentialUpsertion::default()
                    .with_name(s("d"))
                    .with_mechanism(2)
                    .with_iterations(8192)
                    .with_salt(Bytes::from_static(b"pepper"))
                    .with_salted_password(Bytes::from_static(&[2; 64])),
            ]);
        enc(&m, v)
    };
    let describe_acls = |v: i16| {
        let m = kafka_protocol::messages::DescribeAclsRequest::default()
            .with_resource_type_filter(2)
            .with_resource_name_filter(Some(s("t")))
            .with_pattern_type_filter(3)
            .with_principal_filter(Some(s("User:a")))
            .with_host_filter(None)
            .with_operation(3)
            .with_permission_type(3);
        enc(&m, v)
    };
    let create_acls = |v: i16| {
        use kafka_protocol::messages::create_acls_request::AclCreation;
        let one = |name: &'static str| {
            AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(s(name))
                .with_resource_pattern_type(3)
                .with_principal(s("User:a"))
                .with_host(s("*"))
                .with_operation(4)
                .with_permission_type(3)
        };
        let m = kafka_protocol::messages::CreateAclsRequest::default()
            .with_creations(vec![one("t"), one("u")]);
        enc(&m, v)
    };
    let delete_acls = |v: i16| {
        use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
        let one = |name: Option<&'static str>| {
            DeleteAclsFilter::default()
                .with_resource_type_filter(1)
                .with_resource_name_filter(name.map(s))
                .with_pattern_type_filter(1)
                .with_principal_filter(Some(s("User:b")))
                .with_host_filter(Some(s("*")))
                .with_operation(1)
                .with_permission_type(1)
        };
        let m = kafka_protocol::messages::DeleteAclsRequest::default()
            .with_filters(vec![one(Some("t")), one(None)]);
        enc(&m, v)
    };
    let describe_log_dirs = |v: i16| {
        let m = DescribeLogDirsRequest::default().with_topics(Some(vec![
            describe_log_dirs_request::DescribableLogDirTopic::default()
                .with_topic(topic("t"))
                .with_partitions(vec![0, 1]),
        ]));
        enc(&m, v)
    };
    let alter_replica_log_dirs = |v: i16| {
        let m = AlterReplicaLogDirsRequest::default().with_dirs(vec![
            alter_replica_log_dirs_request::AlterReplicaLogDir::default()
                .with_path(s("/data"))
                .with_topics(vec![
                    alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default()
                        .with_name(topic("t"))
                        .with_partitions(vec![0, 2]),
                ]),
        ]);
        enc(&m, v)
    };
    let elect_leaders = |v: i16| {
        let mut m = ElectLeadersRequest::default()
            .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default(
            )
            .with_topic(topic("t"))
            .with_partitions(vec![3])]))
            .with_timeout_ms(1000);
        if v >= 1 {
            m = m.with_election_type(1);
        }
        enc(&m, v)
    };
    let alter_reassignments = |v: i16| {
        let m = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(vec![
                alter_partition_reassignments_request::ReassignableTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(vec![
                        alter_partition_reassignments_request::ReassignablePartition::default()
                            .with_partition_index(0)
                            .with_replicas(Some(vec![BrokerId(0)])),
                        alter_partition_reassignments_request::ReassignablePartition::default()
                            .with_partition_index(1)
                            .with_replicas(None),
                    ]),
            ]);
        enc(&m, v)
    };
    let list_reassignments = |v: i16| {
        let m = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(Some(vec![
                list_partition_reassignments_request::ListPartitionReassignmentsTopics::default()
                    .with_name(topic("t"))
                    .with_partition_indexes(vec![0]),
            ]));
        enc(&m, v)
    };
    vec![
        (ApiKey::DescribeLogDirs, 1, 4, Box::new(describe_log_dirs)),
        (
            ApiKey::AlterReplicaLogDirs,
            1,
            2,
            Box::new(alter_replica_log_dirs),
        ),
        (ApiKey::ElectLeaders, 0, 2, Box::new(elect_leaders)),
        (
            ApiKey::AlterPartitionReassignments,
            0,
            1,
            Box::new(alter_reassignments),
        ),
        (
            ApiKey::ListPartitionReassignments,
            0,
            0,
            Box::new(list_reassignments),
        ),
        (ApiKey::DescribeAcls, 1, 3, Box::new(describe_acls)),
        (ApiKey::CreateAcls, 1, 3, Box::new(create_acls)),
        (ApiKey::DeleteAcls, 1, 3, Box::new(delete_acls)),
        (ApiKey::SaslHandshake, 0, 1, Box::new(sasl_handshake)),
        (ApiKey::SaslAuthenticate, 0, 2, Box::new(sasl_authenticate)),
        (
            ApiKey::DescribeUserScramCredentials,
            0,
            0,
            Box::new(describe_scram),
        ),
        (
            ApiKey::AlterUserScramCredentials,
            0,
            0,
            Box::new(alter_scram),
        ),
        (ApiKey::ApiVersions, 0, 4, Box::new(api_versions)),
        (ApiKey::Metadata, 0, 12, Box::new(metadata)),
        (ApiKey::Produce, 3, 11, Box::new(produce)),
        (ApiKey::Fetch, 4, 17, Box::new(fetch)),
        (ApiKey::ListOffsets, 1, 9, Box::new(list_offsets)),
        (ApiKey::OffsetForLeaderEpoch, 2, 4, Box::new(ofle)),
        (ApiKey::InitProducerId, 0, 5, Box::new(init)),
        (ApiKey::CreateTopics, 2, 7, Box::new(create_topics)),
        (ApiKey::DeleteTopics, 1, 6, Box::new(delete_topics)),
        (ApiKey::CreatePartitions, 0, 3, Box::new(create_partitions)),
        (ApiKey::DescribeConfigs, 1, 4, Box::new(describe_configs)),
        (ApiKey::AlterConfigs, 0, 2, Box::new(alter_configs)),
        (ApiKey::IncrementalAlterConfigs, 0, 1, Box::new(incremental)),
        (ApiKey::DeleteRecords, 0, 2, Box::new(delete_records)),
        (ApiKey::DescribeCluster, 0, 1, Box::new(describe_cluster)),
        (ApiKey::FindCoordinator, 0, 6, Box::new(find_coordinator)),
        (ApiKey::JoinGroup, 0, 9, Box::new(join_group)),
        (ApiKey::SyncGroup, 0, 5, Box::new(sync_group)),
        (ApiKey::Heartbeat, 0, 4, Box::new(heartbeat)),
        (ApiKey::LeaveGroup, 0, 5, Box::new(leave_group)),
        (ApiKey::OffsetCommit, 2, 9, Box::new(offset_commit)),
        (ApiKey::OffsetFetch, 1, 9, Box::new(offset_fetch)),
        (ApiKey::DescribeGroups, 0, 5, Box::new(describe_groups)),
        (ApiKey::ListGroups, 0, 5, Box::new(list_groups)),
        (ApiKey::DeleteGroups, 0, 2, Box::new(delete_groups)),
        (ApiKey::OffsetDelete, 0, 0, Box::new(offset_delete)),
        (
            ApiKey::AddPartitionsToTxn,
            0,
            5,
            Box::new(add_partitions_to_txn),
        ),
        (ApiKey::AddOffsetsToTxn, 0, 4, Box::new(add_offsets_to_txn)),
        (ApiKey::TxnOffsetCommit, 0, 5, Box::new(txn_offset_commit)),
        (ApiKey::EndTxn, 0, 5, Box::new(end_txn)),
        (
            ApiKey::DescribeTransactions,
            0,
            0,
            Box::new(describe_transactions),
        ),
        (ApiKey::ListTransactions, 0, 2, Box::new(list_transactions)),
        (
            ApiKey::DescribeProducers,
            0,
            0,
            Box::new(describe_producers),
        ),
    ]
}

fn consumed(api: ApiKey, version: i16, body: &[u8]) -> Result<usize, GuardError> {
    let schema = schema(api).expect("schema");
    let mut walker = Walker {
        buf: body,
        total: body.len(),
        flexible: version >= schema.flexible_from,
        version,
    };
    walker.fields(schema.fields)?;
    Ok(walker.position())
}

#[test]
fn schemas_read_exactly_what_the_crate_writes() {
    for (api, min, max, encode) in samples() {
        for version in min..=max {
            let body = encode(version);
            assert_eq!(
                consumed(api, version, &body),
                Ok(body.len()),
                "{api:?} v{version}"
            );
            // Every strict prefix is refused or reads less than the whole.
            for cut in 0..body.len() {
                assert!(
                    consumed(api, version, &body[..cut]).is_err(),
                    "{api:?} v{version} cut {cut}"
                );
            }
        }
    }
}

#[test]
fn huge_array_count_in_a_tiny_frame_is_refused() {
    // Produce v3: null transactional id, acks, timeout, then a topic count of 2^31-1.
    let mut body = vec![0xff, 0xff, 0, 1, 0, 0, 0, 100];
    body.extend_from_slice(&i32::MAX.to_be_bytes());
    body.extend_from_slice(&[0; 8]);
    assert!(matches!(
        check_request(ApiKey::Produce, 3, &body),
        Err(GuardError::ArrayTooLong { count, .. }) if count == i32::MAX as u64
    ));
    // Metadata v9 (compact): topic count varint 0xffffffff.
    let body = [0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0];
    assert!(matches!(
        check_request(ApiKey::Metadata, 9, &body),
        Err(GuardError::ArrayTooLong { .. })
    ));
}

/// Found by the fuzz target `kafka_request` (fuzz/regressions/kafka_request): tagged fields
/// out of order, or with a tag past `i32::MAX`, passed the guard and decoded (the crate keys
/// unknown tags by `i32` and writes such a request back wrongly); Kafka refuses them ("Invalid
/// or out-of-order tag"), and so does the guard now.
#[test]
fn tagged_fields_must_ascend_within_i32() {
    // ApiVersions v3: two empty compact strings, then the tagged fields.
    let with_tags = |tags: &[u8]| [&[1u8, 1][..], tags].concat();
    let ok = with_tags(&[2, 0, 0, 1, 0]);
    assert_eq!(check_request(ApiKey::ApiVersions, 3, &ok), Ok(()));
    let out_of_order = with_tags(&[2, 1, 0, 0, 0]);
    assert_eq!(
        check_request(ApiKey::ApiVersions, 3, &out_of_order),
        Err(GuardError::TagOrder(0))
    );
    let repeated = with_tags(&[2, 1, 0, 1, 0]);
    assert_eq!(
        check_request(ApiKey::ApiVersions, 3, &repeated),
        Err(GuardError::TagOrder(1))
    );
    let past_i32 = with_tags(&[1, 0x80, 0x80, 0x80, 0x80, 0x08, 0]);
    assert_eq!(
        check_request(ApiKey::ApiVersions, 3, &past_i32),
        Err(GuardError::TagOrder(1 << 31))
    );
}

/// Counts bytes allocated by the current thread, so tests running in parallel do not disturb
/// each other's measurement.
struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn allocated() -> usize {
    ALLOCATED.try_with(Cell::get).unwrap_or(0)
}

#[allow(
    unsafe_code,
    reason = "a counting allocator around System, to measure allocations"
)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + layout.size()));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The crate's decode of a guarded body; bytes allocated while decoding.
fn decode_allocation(api: ApiKey, version: i16, body: &[u8]) -> Option<usize> {
    check_request(api, version, body).ok()?;
    let mut buf = Bytes::copy_from_slice(body);
    let before = allocated();
    let _ = decode_any(api, version, &mut buf);
    Some(allocated().saturating_sub(before))
}

fn decode_any(api: ApiKey, version: i16, buf: &mut Bytes) -> bool {
    match api {
        ApiKey::Produce => ProduceRequest::decode(buf, version).is_ok(),
        ApiKey::Fetch => FetchRequest::decode(buf, version).is_ok(),
        ApiKey::Metadata => MetadataRequest::decode(buf, version).is_ok(),
        ApiKey::CreateTopics => CreateTopicsRequest::decode(buf, version).is_ok(),
        ApiKey::DescribeConfigs => DescribeConfigsRequest::decode(buf, version).is_ok(),
        ApiKey::AlterUserScramCredentials => {
            AlterUserScramCredentialsRequest::decode(buf, version).is_ok()
        }
        ApiKey::DescribeUserScramCredentials => {
            DescribeUserScramCredentialsRequest::decode(buf, version).is_ok()
        }
        _ => false,
    }
}

/// Worst case bytes of memory per byte of input the crate may use after the guard: the largest
/// element type (a Fetch partition) per byte of a minimal element, plus allocator slack.
const ALLOCATION_PER_FRAME_BYTE_MAX: usize = 64;
const ALLOCATION_SLACK_BYTES: usize = 64 * 1024;

#[test]
fn decode_allocation_is_bounded() {
    // Many minimal elements: a Metadata v1 request listing 10_000 empty-named... topics of 2 bytes.
    let mut body = Vec::new();
    body.extend_from_slice(&10_000i32.to_be_bytes());
    for _ in 0..10_000 {
        body.extend_from_slice(&0i16.to_be_bytes());
    }
    let used = decode_allocation(ApiKey::Metadata, 1, &body).expect("guard passes");
    assert!(
        used <= body.len() * ALLOCATION_PER_FRAME_BYTE_MAX + ALLOCATION_SLACK_BYTES,
        "{used}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn random_bodies_never_panic_nor_overallocate(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        which in 0usize..5,
        version in 0i16..18,
    ) {
        let api = [ApiKey::Produce, ApiKey::Fetch, ApiKey::Metadata, ApiKey::CreateTopics, ApiKey::DescribeConfigs][which];
        let range = api.valid_versions();
        let version = range.min + version % (range.max - range.min + 1);
        if let Some(used) = decode_allocation(api, version, &body) {
            prop_assert!(used <= body.len() * ALLOCATION_PER_FRAME_BYTE_MAX + ALLOCATION_SLACK_BYTES, "{used}");
        }
    }

    #[test]
    fn mutated_valid_bodies_never_panic(flip in any::<prop::sample::Index>(), byte in any::<u8>(), pick in any::<prop::sample::Index>()) {
        let all = samples();
        let (api, min, max, encode) = &all[pick.index(all.len())];
        let version = *max - (flip.index(100) as i16 % (*max - *min + 1));
        let mut body = encode(version).to_vec();
        if !body.is_empty() {
            let i = flip.index(body.len());
            body[i] = byte;
        }
        let _ = check_request(*api, version, &body);
    }
}
