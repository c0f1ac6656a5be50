//! `/admin/v2/kafka/groups` and the Kafka groups in topic stats, through the router, over a real
//! group coordinator (members join through its API, as the Kafka front end would call it).

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use magnetar_broker::*;
use magnetar_coordinator::*;
use magnetar_metadata::MemoryStore;
use magnetar_testkit::admin::{self, NotJson};
use serde_json::{json, Value};

struct Api {
    router: axum::Router,
    broker: Arc<Broker>,
    coordinator: Arc<GroupCoordinator>,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            partitions_max: 64,
            ..BrokerConfig::for_data_dir(dir.path().to_path_buf())
        };
        let broker = Broker::open(config, Arc::new(MemoryStore::new()), Arc::new(SystemClock))
            .await
            .unwrap();
        let coordinator = GroupCoordinator::start(
            broker.clone(),
            CoordinatorConfig {
                offsets_topic_num_partitions: 2,
                group_initial_rebalance_delay_ms: 0,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let readiness = magnetar_admin::Readiness::default();
        readiness.set_ready(true);
        let router = magnetar_admin::router_with(magnetar_admin::AdminServices {
            broker: broker.clone(),
            readiness,
            coordinator: Some(coordinator.clone()),
            metrics: None,
            authenticator: None,
            lookup: magnetar_admin::LookupUrls::default(),
            schemas: None,
        });
        Self {
            router,
            broker,
            coordinator,
            _dir: dir,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        admin::call(&self.router, method, path, body, NotJson::Panic).await
    }

    /// Appends `entries` entries of 2 messages each (timestamps 1000, 2000, ...) to a partition.
    async fn produce(&self, topic: &str, partition: u32, entries: i64) {
        let tp = TopicPartition {
            topic: self.broker.parse_topic(topic).unwrap(),
            partition,
        };
        let log = self.broker.partition(&tp).await.unwrap();
        for i in 0..entries {
            log.append(AppendRequest {
                payload: Bytes::from(vec![0u8; 64]),
                message_count: 2,
                max_timestamp_ms: (i + 1) * 1000,
                format: PayloadFormat::Pulsar,
                producer: None,
                first_index_at: None,
            })
            .await
            .unwrap();
        }
    }

    async fn commit(&self, group: &str, topic: &str, partition: i32, offset: i64) {
        let r = self
            .coordinator
            .commit_offsets(OffsetCommitRequest {
                group_id: group.into(),
                generation_id: -1,
                member_id: String::new(),
                group_instance_id: None,
                topics: vec![CommitTopic {
                    name: topic.into(),
                    partitions: vec![CommitPartition {
                        partition,
                        offset,
                        leader_epoch: -1,
                        metadata: Some("m".into()),
                        commit_timestamp_ms: None,
                    }],
                }],
            })
            .await;
        assert_eq!(r.topics[0].partitions[0].error, None);
    }

    /// One member joins `group` and receives an assignment of `topic` partitions 0 and 1.
    async fn join(&self, group: &str, topic: &str) -> String {
        let join = |member: &str| JoinGroupRequest {
            group_id: group.into(),
            member_id: member.into(),
            group_instance_id: Some("instance-1".into()),
            protocol_type: "consumer".into(),
            protocols: vec![Protocol {
                name: "range".into(),
                metadata: Bytes::new(),
            }],
            session_timeout_ms: 30_000,
            rebalance_timeout_ms: 30_000,
            client_id: "client-a".into(),
            client_host: "/127.0.0.1".into(),
            require_known_member_id: false,
            reason: None,
        };
        let r = self.coordinator.join_group(join("")).await;
        assert_eq!(r.error, None, "{r:?}");
        let mut assignment = vec![0u8, 0, 0, 0, 0, 1];
        assignment.extend_from_slice(&(topic.len() as i16).to_be_bytes());
        assignment.extend_from_slice(topic.as_bytes());
        for p in [2i32, 0, 1] {
            assignment.extend_from_slice(&p.to_be_bytes());
        }
        assignment.extend_from_slice(&(-1i32).to_be_bytes());
        let s = self
            .coordinator
            .sync_group(SyncGroupRequest {
                group_id: group.into(),
                generation_id: r.generation_id,
                member_id: r.member_id.clone(),
                group_instance_id: Some("instance-1".into()),
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignments: vec![MemberAssignment {
                    member_id: r.member_id.clone(),
                    assignment: Bytes::from(assignment),
                }],
            })
            .await;
        assert_eq!(s.error, None);
        r.member_id
    }
}

use Method as M;

const GROUPS: &str = "/admin/v2/kafka/groups";

#[tokio::test]
async fn list_describe_and_lag() {
    let api = Api::new().await;
    assert_eq!(
        api.call(M::GET, GROUPS, None).await,
        (StatusCode::OK, json!([]))
    );
    api.call(
        M::PUT,
        "/admin/v2/persistent/public/default/orders/partitions",
        Some("2"),
    )
    .await;
    api.produce("orders", 0, 5).await; // end offset 10
    api.produce("orders", 1, 2).await; // end offset 4
    api.commit("billing", "orders", 0, 7).await;
    api.commit("billing", "orders", 1, 4).await;
    let member = api.join("shipping", "orders").await;

    let (status, list) = api.call(M::GET, GROUPS, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list,
        json!([
            {"groupId": "billing", "state": "Empty", "protocolType": ""},
            {"groupId": "shipping", "state": "Stable", "protocolType": "consumer"},
        ])
    );

    let (status, g) = api.call(M::GET, &format!("{GROUPS}/billing"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(g["state"], "Empty");
    assert_eq!(g["members"], json!([]));
    let offsets = g["offsets"].as_array().unwrap();
    assert_eq!(offsets.len(), 2);
    assert_eq!(
        (
            &offsets[0]["topic"],
            &offsets[0]["partition"],
            &offsets[0]["committedOffset"],
            &offsets[0]["logEndOffset"],
            &offsets[0]["lag"],
            &offsets[0]["metadata"]
        ),
        (
            &json!("orders"),
            &json!(0),
            &json!(7),
            &json!(10),
            &json!(3),
            &json!("m")
        )
    );
    assert_eq!(
        (&offsets[1]["lag"], &offsets[1]["logEndOffset"]),
        (&json!(0), &json!(4))
    );

    let (status, g) = api.call(M::GET, &format!("{GROUPS}/shipping"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(g["state"], "Stable");
    assert_eq!(g["protocolType"], "consumer");
    assert_eq!(g["protocol"], "range");
    assert_eq!(g["leader"], json!(member));
    let m = &g["members"][0];
    assert_eq!(m["memberId"], json!(member));
    assert_eq!(m["groupInstanceId"], "instance-1");
    assert_eq!(m["clientId"], "client-a");
    assert_eq!(m["clientHost"], "/127.0.0.1");
    assert_eq!(
        m["assignment"],
        json!([{"topic": "orders", "partitions": [0, 1]}])
    );

    // Topic stats show Kafka groups next to Pulsar subscriptions.
    let base = "/admin/v2/persistent/public/default";
    let (status, stats) = api
        .call(M::GET, &format!("{base}/orders-partition-0/stats"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        stats["kafkaGroups"],
        json!({"billing": {"committedOffset": 7, "msgBacklog": 3}})
    );
    let (status, stats) = api
        .call(M::GET, &format!("{base}/orders/partitioned-stats"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["kafkaGroups"], json!({"billing": {"msgBacklog": 3}}));

    // Unknown groups.
    assert_eq!(
        api.call(M::GET, &format!("{GROUPS}/nobody"), None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn reset_offsets_of_an_empty_group() {
    let api = Api::new().await;
    api.call(
        M::PUT,
        "/admin/v2/persistent/public/default/orders/partitions",
        Some("2"),
    )
    .await;
    api.produce("orders", 0, 5).await; // 10 messages, entries at 1000..5000 ms
    api.produce("orders", 1, 2).await;
    api.commit("billing", "orders", 0, 7).await;
    let reset = |body: Value| {
        let api = &api;
        async move {
            api.call(
                M::POST,
                &format!("{GROUPS}/billing/offsets"),
                Some(&body.to_string()),
            )
            .await
        }
    };
    assert_eq!(
        reset(json!({"topic": "orders", "to": "earliest"})).await,
        (
            StatusCode::OK,
            json!([
                {"topic": "orders", "partition": 0, "offset": 0},
                {"topic": "orders", "partition": 1, "offset": 0},
            ])
        )
    );
    assert_eq!(
        reset(json!({"topic": "orders", "partitions": [1], "to": "latest"})).await,
        (
            StatusCode::OK,
            json!([{"topic": "orders", "partition": 1, "offset": 4}])
        )
    );
    // The entry at 3000 ms holds offsets 4 and 5.
    assert_eq!(
        reset(json!({"topic": "orders", "partitions": [0], "to": "timestamp", "timestamp": 2500}))
            .await
            .1,
        json!([{"topic": "orders", "partition": 0, "offset": 4}])
    );
    // Out of range offsets are clamped, as Kafka's tool does.
    assert_eq!(
        reset(json!({"topic": "orders", "partitions": [0], "to": "offset", "offset": 99}))
            .await
            .1,
        json!([{"topic": "orders", "partition": 0, "offset": 10}])
    );
    let (_, g) = api.call(M::GET, &format!("{GROUPS}/billing"), None).await;
    let committed: Vec<_> = g["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["partition"].clone(), o["committedOffset"].clone()))
        .collect();
    assert_eq!(committed, vec![(json!(0), json!(10)), (json!(1), json!(4))]);
    // A group that does not exist yet may be given offsets (Kafka's tool allows it).
    let (status, _) = api
        .call(
            M::POST,
            &format!("{GROUPS}/newcomer/offsets"),
            Some(r#"{"topic":"orders","to":"latest"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, g) = api.call(M::GET, &format!("{GROUPS}/newcomer"), None).await;
    assert_eq!(g["offsets"][0]["committedOffset"], json!(10));

    // Errors: bad input 400, unknown topic/partition 404, active group 409.
    for (body, status) in [
        ("{not json", StatusCode::BAD_REQUEST),
        (
            r#"{"topic":"orders","to":"sideways"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"topic":"orders","to":"timestamp"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"topic":"orders","to":"offset","offset":-5}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"topic":"orders","to":"earliest","partitions":[]}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"topic":"orders","to":"earliest","extra":1}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"topic":"missing","to":"earliest"}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            r#"{"topic":"orders","to":"earliest","partitions":[7]}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            r#"{"topic":"orders","to":"earliest","partitions":[-1]}"#,
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (got, reply) = api
            .call(M::POST, &format!("{GROUPS}/billing/offsets"), Some(body))
            .await;
        assert_eq!(got, status, "{body}: {reply}");
        assert!(reply["reason"].is_string(), "{reply}");
    }
    api.join("shipping", "orders").await;
    let (status, reply) = api
        .call(
            M::POST,
            &format!("{GROUPS}/shipping/offsets"),
            Some(r#"{"topic":"orders","to":"earliest"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert!(reply["reason"].as_str().unwrap().contains("Stable"));
}

#[tokio::test]
async fn delete_groups() {
    let api = Api::new().await;
    api.call(M::PUT, "/admin/v2/persistent/public/default/orders", None)
        .await;
    api.commit("billing", "orders", 0, 0).await;
    api.join("shipping", "orders").await;
    let (status, reply) = api
        .call(M::DELETE, &format!("{GROUPS}/shipping"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert_eq!(
        api.call(M::DELETE, &format!("{GROUPS}/billing"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::DELETE, &format!("{GROUPS}/billing"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(M::GET, &format!("{GROUPS}/billing"), None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, list) = api.call(M::GET, GROUPS, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn groups_without_a_coordinator_answer_503() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(
        BrokerConfig::for_data_dir(dir.path().to_path_buf()),
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let router = magnetar_admin::router(broker, magnetar_admin::Readiness::default());
    let (status, _) = admin::call(&router, Method::GET, GROUPS, None, NotJson::AsString).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
