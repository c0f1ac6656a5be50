//! Namespace policy endpoints through the router: auto topic creation override, max producers
//! and consumers per topic, publish rate; and that they reach the broker (auto-creation, the
//! partitions' publish rate).

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use magnetar_broker::*;
use magnetar_metadata::MemoryStore;
use magnetar_testkit::admin::{self, NotJson};
use serde_json::{json, Value};

struct Api {
    router: axum::Router,
    broker: Arc<Broker>,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(
            BrokerConfig {
                partitions_max: 64,
                ..BrokerConfig::for_data_dir(dir.path().to_path_buf())
            },
            Arc::new(MemoryStore::new()),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        Self {
            router: magnetar_admin::router(broker.clone(), magnetar_admin::Readiness::default()),
            broker,
            _dir: dir,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        admin::call(&self.router, method, path, body, NotJson::Panic).await
    }
}

use Method as M;
const NS: &str = "/admin/v2/namespaces/public/default";

#[tokio::test]
async fn auto_topic_creation_override_takes_effect() {
    let api = Api::new().await;
    let path = format!("{NS}/autoTopicCreation");
    assert_eq!(
        api.call(M::GET, &path, None).await,
        (StatusCode::OK, Value::Null)
    );
    let body =
        r#"{"allowAutoTopicCreation":true,"topicType":"partitioned","defaultNumPartitions":3}"#;
    assert_eq!(
        api.call(M::POST, &path, Some(body)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::GET, &path, None).await.1,
        json!({"allowAutoTopicCreation": true, "topicType": "partitioned", "defaultNumPartitions": 3})
    );
    let (_, policies) = api.call(M::GET, NS, None).await;
    assert_eq!(
        policies["autoTopicCreationOverride"]["defaultNumPartitions"],
        3
    );
    let created = api
        .broker
        .topic_or_create(&api.broker.parse_topic("auto-a").unwrap())
        .await
        .unwrap();
    assert_eq!((created.partitioned, created.partitions), (true, 3));

    let body = r#"{"allowAutoTopicCreation":true,"topicType":"non-partitioned"}"#;
    api.call(M::POST, &path, Some(body)).await;
    let created = api
        .broker
        .topic_or_create(&api.broker.parse_topic("auto-b").unwrap())
        .await
        .unwrap();
    assert!(!created.partitioned);

    api.call(M::POST, &path, Some(r#"{"allowAutoTopicCreation":false}"#))
        .await;
    let refused = api
        .broker
        .topic_or_create(&api.broker.parse_topic("auto-c").unwrap())
        .await;
    assert!(
        matches!(refused, Err(Error::TopicNotFound { .. })),
        "{refused:?}"
    );
    // Another namespace keeps the broker's setting.
    api.call(M::PUT, "/admin/v2/namespaces/public/other", None)
        .await;
    let other = TopicName::new(NamespaceName::new("public", "other").unwrap(), "x").unwrap();
    assert!(api.broker.topic_or_create(&other).await.is_ok());

    assert_eq!(
        api.call(M::DELETE, &path, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert!(api
        .broker
        .topic_or_create(&api.broker.parse_topic("auto-c").unwrap())
        .await
        .is_ok());

    for (body, status) in [
        ("{nope", StatusCode::BAD_REQUEST),
        (
            r#"{"allowAutoTopicCreation":"yes"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"allowAutoTopicCreation":true}"#,
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            r#"{"allowAutoTopicCreation":true,"topicType":"sideways"}"#,
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            r#"{"allowAutoTopicCreation":true,"topicType":"partitioned"}"#,
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            r#"{"allowAutoTopicCreation":true,"topicType":"partitioned","defaultNumPartitions":0}"#,
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            r#"{"allowAutoTopicCreation":true,"topicType":"partitioned","defaultNumPartitions":65}"#,
            StatusCode::PRECONDITION_FAILED,
        ),
    ] {
        let (got, reply) = api.call(M::POST, &path, Some(body)).await;
        assert_eq!(got, status, "{body}: {reply}");
        assert!(reply["reason"].is_string());
    }
    let (status, _) = api
        .call(
            M::POST,
            "/admin/v2/namespaces/public/missing/autoTopicCreation",
            Some(r#"{"allowAutoTopicCreation":false}"#),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn max_producers_and_consumers() {
    let api = Api::new().await;
    for (name, key) in [
        ("maxProducersPerTopic", "max_producers_per_topic"),
        ("maxConsumersPerTopic", "max_consumers_per_topic"),
    ] {
        let path = format!("{NS}/{name}");
        assert_eq!(api.call(M::GET, &path, None).await.1, Value::Null);
        assert_eq!(
            api.call(M::POST, &path, Some("2")).await.0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(api.call(M::GET, &path, None).await.1, json!(2));
        assert_eq!(api.call(M::GET, NS, None).await.1[key], json!(2));
        assert_eq!(
            api.call(M::POST, &path, Some("-3")).await.0,
            StatusCode::PRECONDITION_FAILED
        );
        assert_eq!(
            api.call(M::POST, &path, Some("\"x\"")).await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            api.call(
                M::POST,
                &format!("/admin/v2/namespaces/public/none/{name}"),
                Some("1")
            )
            .await
            .0,
            StatusCode::NOT_FOUND
        );
    }
    let topic = api.broker.parse_topic("t").unwrap();
    assert_eq!(
        api.broker.topic_limits(&topic).await.unwrap(),
        (Some(2), Some(2))
    );
    api.call(M::DELETE, &format!("{NS}/maxProducersPerTopic"), None)
        .await;
    assert_eq!(
        api.broker.topic_limits(&topic).await.unwrap(),
        (None, Some(2))
    );
}

#[tokio::test]
async fn publish_rate_reaches_open_and_new_partitions() {
    let api = Api::new().await;
    let path = format!("{NS}/publishRate");
    api.call(M::PUT, "/admin/v2/persistent/public/default/before", None)
        .await;
    let tp = |t: &str| TopicPartition {
        topic: api.broker.parse_topic(t).unwrap(),
        partition: 0,
    };
    let before = api.broker.partition(&tp("before")).await.unwrap();
    assert!(before.publish_rate().is_unlimited());
    let body = r#"{"publishThrottlingRateInMsg":100,"publishThrottlingRateInByte":-1}"#;
    assert_eq!(
        api.call(M::POST, &path, Some(body)).await.0,
        StatusCode::NO_CONTENT
    );
    let expected = PublishRate {
        messages_per_s: Some(100),
        bytes_per_s: None,
    };
    assert_eq!(before.publish_rate(), expected);
    assert_eq!(
        api.call(M::GET, &path, None).await.1,
        json!({"publishThrottlingRateInMsg": 100, "publishThrottlingRateInByte": -1})
    );
    assert_eq!(
        api.call(M::GET, NS, None).await.1["publishMaxMessageRate"]["standalone"]
            ["publishThrottlingRateInMsg"],
        json!(100)
    );
    api.call(M::PUT, "/admin/v2/persistent/public/default/after", None)
        .await;
    let after = api.broker.partition(&tp("after")).await.unwrap();
    assert_eq!(after.publish_rate(), expected);
    // One second of burst, then the debt of 50 messages is half a second.
    assert!(after.publish_delay(100, 0).is_zero());
    let wait = after.publish_delay(50, 0);
    assert!(
        wait.as_millis() >= 450 && wait.as_millis() <= 500,
        "{wait:?}"
    );

    for (body, status) in [
        ("5", StatusCode::BAD_REQUEST),
        (
            r#"{"publishThrottlingRateInMsg":-5}"#,
            StatusCode::PRECONDITION_FAILED,
        ),
        (r#"{"rate":1}"#, StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(
            api.call(M::POST, &path, Some(body)).await.0,
            status,
            "{body}"
        );
    }
    assert_eq!(
        api.call(M::DELETE, &path, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert!(before.publish_rate().is_unlimited() && after.publish_rate().is_unlimited());
    assert_eq!(api.call(M::GET, &path, None).await.1, Value::Null);
}

#[tokio::test]
async fn topic_config_defaults_reach_the_namespaces_topics() {
    let api = Api::new().await;
    let path = format!("{NS}/topicConfigDefaults");
    assert_eq!(
        api.call(M::GET, &path, None).await,
        (StatusCode::OK, json!({}))
    );
    // A topic read (and cached) before the defaults exist.
    let name = api.broker.parse_topic("ns-defaults").unwrap();
    api.broker
        .create_topic(&name, Some(1), Default::default())
        .await
        .unwrap();
    let before = api.broker.topic(&name).await.unwrap().unwrap();
    assert!(!compaction::is_compacted(&before) && compaction::deletes(&before));

    for bad in [
        r#"{"cleanup.policy":"compress"}"#,
        r#"{"retention.ms":"1000"}"#,
        r#"{"min.cleanable.dirty.ratio":"2"}"#,
        r#"{"max.compaction.lag.ms":"0"}"#,
        r#"{"delete.retention.ms":5}"#,
        r#"{"delete.retention.ms":" 5000"}"#,
        r#"["cleanup.policy"]"#,
    ] {
        let (status, _) = api.call(M::POST, &path, Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let body = r#"{"cleanup.policy":"compact","delete.retention.ms":"5000","min.compaction.lag.ms":"0","max.compaction.lag.ms":null}"#;
    assert_eq!(
        api.call(M::POST, &path, Some(body)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::GET, &path, None).await.1,
        json!({"cleanup.policy": "compact", "delete.retention.ms": "5000", "min.compaction.lag.ms": "0"})
    );
    assert_eq!(
        api.call(M::GET, NS, None).await.1["topicConfigDefaults"]["cleanup.policy"],
        "compact"
    );
    // The cached topic now carries the namespace's defaults; its own configs still win.
    let after = api.broker.topic(&name).await.unwrap().unwrap();
    assert!(compaction::is_compacted(&after) && !compaction::deletes(&after));
    assert_eq!(compaction::topic_policy(&after).delete_retention_ms, 5000);
    assert!(
        after.configs.is_empty(),
        "defaults are not stored with the topic"
    );
    let own = api.broker.parse_topic("ns-defaults-own").unwrap();
    let created = api
        .broker
        .create_topic(
            &own,
            Some(1),
            [("cleanup.policy".to_string(), "delete".to_string())].into(),
        )
        .await
        .unwrap();
    assert_eq!(created.config("cleanup.policy"), Some("delete"));
    assert_eq!(created.config("delete.retention.ms"), Some("5000"));

    assert_eq!(
        api.call(M::DELETE, &path, None).await.0,
        StatusCode::NO_CONTENT
    );
    let removed = api.broker.topic(&name).await.unwrap().unwrap();
    assert!(!compaction::is_compacted(&removed));
    assert_eq!(api.call(M::GET, &path, None).await.1, json!({}));
}
