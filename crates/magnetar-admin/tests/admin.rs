//! The admin REST API through the router: success and error paths of every endpoint.

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
        let config = BrokerConfig {
            partitions_max: 64,
            producers_per_partition_max: 10,
            service_url: String::new(),
            broker_service_url: String::new(),
            ..BrokerConfig::for_data_dir(dir.path().to_path_buf())
        };
        let broker = Broker::open(config, Arc::new(MemoryStore::new()), Arc::new(SystemClock))
            .await
            .unwrap();
        let readiness = magnetar_admin::Readiness::default();
        readiness.set_ready(true);
        Self {
            router: magnetar_admin::router(broker.clone(), readiness),
            broker,
            _dir: dir,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        admin::call(&self.router, method, path, body, NotJson::Panic).await
    }
}

use Method as M;

#[tokio::test]
async fn tenants_and_clusters() {
    let api = Api::new().await;
    assert_eq!(
        api.call(M::GET, "/admin/v2/clusters", None).await,
        (StatusCode::OK, json!(["standalone"]))
    );
    assert_eq!(
        api.call(M::GET, "/admin/v2/tenants", None).await,
        (StatusCode::OK, json!(["public"]))
    );
    let info = r#"{"adminRoles":["ops"],"allowedClusters":["standalone"]}"#;
    assert_eq!(
        api.call(M::PUT, "/admin/v2/tenants/acme", Some(info))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (status, body) = api.call(M::PUT, "/admin/v2/tenants/acme", Some(info)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["reason"].as_str().unwrap().contains("acme"), "{body}");
    let (status, body) = api.call(M::GET, "/admin/v2/tenants/acme", None).await;
    assert_eq!(
        (status, body["adminRoles"].clone()),
        (StatusCode::OK, json!(["ops"]))
    );
    let update = r#"{"adminRoles":["ops","dev"]}"#;
    assert_eq!(
        api.call(M::POST, "/admin/v2/tenants/acme", Some(update))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::GET, "/admin/v2/tenants/acme", None).await.1["adminRoles"],
        json!(["ops", "dev"])
    );
    assert_eq!(
        api.call(M::GET, "/admin/v2/tenants/nobody", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(M::POST, "/admin/v2/tenants/nobody", Some(update))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Malformed JSON, unknown fields and unknown clusters are refused.
    let (status, body) = api
        .call(M::PUT, "/admin/v2/tenants/x", Some("{not json"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["reason"].as_str().unwrap().contains("malformed JSON"));
    assert_eq!(
        api.call(M::PUT, "/admin/v2/tenants/x", Some(r#"{"adminRole":[]}"#))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let other = r#"{"allowedClusters":["elsewhere"]}"#;
    assert_eq!(
        api.call(M::PUT, "/admin/v2/tenants/x", Some(other)).await.0,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        api.call(M::PUT, "/admin/v2/tenants/bad%20name", None)
            .await
            .0,
        StatusCode::PRECONDITION_FAILED
    );
    // A tenant with namespaces cannot be deleted.
    assert_eq!(
        api.call(M::PUT, "/admin/v2/namespaces/acme/ns", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::DELETE, "/admin/v2/tenants/acme", None).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        api.call(M::DELETE, "/admin/v2/namespaces/acme/ns", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::DELETE, "/admin/v2/tenants/acme", None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::DELETE, "/admin/v2/tenants/acme", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(M::GET, "/admin/v2/nothing/here", None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn namespaces_and_policies() {
    let api = Api::new().await;
    let (status, list) = api.call(M::GET, "/admin/v2/namespaces/public", None).await;
    assert_eq!(
        (status, list),
        (StatusCode::OK, json!(["public/__kafka", "public/default"]))
    );
    assert_eq!(
        api.call(M::GET, "/admin/v2/namespaces/nobody", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(M::PUT, "/admin/v2/namespaces/nobody/ns", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(M::PUT, "/admin/v2/namespaces/public/sales", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::PUT, "/admin/v2/namespaces/public/sales", None)
            .await
            .0,
        StatusCode::CONFLICT
    );

    let retention = "/admin/v2/namespaces/public/sales/retention";
    let (_, r) = api.call(M::GET, retention, None).await;
    assert_eq!(
        r,
        json!({"retentionTimeInMinutes": -1, "retentionSizeInMB": -1})
    );
    let body = r#"{"retentionTimeInMinutes": 60, "retentionSizeInMB": 10}"#;
    assert_eq!(
        api.call(M::POST, retention, Some(body)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::GET, retention, None).await.1,
        json!({"retentionTimeInMinutes": 60, "retentionSizeInMB": 10})
    );
    let stored = api
        .broker
        .namespace_policies(&NamespaceName::new("public", "sales").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.retention_time_ms, stored.retention_size_bytes),
        (Some(3_600_000), Some(10 << 20))
    );
    let bad = r#"{"retentionTimeInMinutes": -5, "retentionSizeInMB": 1}"#;
    assert_eq!(
        api.call(M::POST, retention, Some(bad)).await.0,
        StatusCode::BAD_REQUEST
    );

    let ttl = "/admin/v2/namespaces/public/sales/messageTTL";
    assert_eq!(api.call(M::GET, ttl, None).await.1, Value::Null);
    assert_eq!(
        api.call(M::POST, ttl, Some("120")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.call(M::GET, ttl, None).await.1, json!(120));
    assert_eq!(
        api.call(M::POST, ttl, Some("-1")).await.0,
        StatusCode::BAD_REQUEST
    );
    let (_, policies) = api
        .call(M::GET, "/admin/v2/namespaces/public/sales", None)
        .await;
    assert_eq!(policies["message_ttl_in_seconds"], json!(120));
    assert_eq!(
        policies["retention_policies"]["retentionSizeInMB"],
        json!(10)
    );
    assert_eq!(
        api.call(M::DELETE, retention, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::DELETE, ttl, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::GET, retention, None).await.1["retentionTimeInMinutes"],
        json!(-1)
    );

    // Non-empty namespaces cannot be deleted.
    assert_eq!(
        api.call(M::PUT, "/admin/v2/persistent/public/sales/t", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::DELETE, "/admin/v2/namespaces/public/sales", None)
            .await
            .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        api.call(M::DELETE, "/admin/v2/persistent/public/sales/t", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::DELETE, "/admin/v2/namespaces/public/sales", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::GET, retention, None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn topics_create_update_stats_delete() {
    let api = Api::new().await;
    let base = "/admin/v2/persistent/public/default";
    assert_eq!(
        api.call(M::PUT, &format!("{base}/orders/partitions"), Some("3"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::PUT, &format!("{base}/orders/partitions"), Some("3"))
            .await
            .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        api.call(M::PUT, &format!("{base}/bad/partitions"), Some("0"))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.call(M::PUT, &format!("{base}/bad/partitions"), Some("\"x\""))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.call(M::PUT, &format!("{base}/single"), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::PUT, &format!("{base}/x-partition-1"), None)
            .await
            .0,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        api.call(M::GET, &format!("{base}/orders/partitions"), None)
            .await
            .1,
        json!({"partitions": 3})
    );
    assert_eq!(
        api.call(M::GET, &format!("{base}/single/partitions"), None)
            .await
            .1,
        json!({"partitions": 0})
    );
    // Partitions only grow.
    assert_eq!(
        api.call(M::POST, &format!("{base}/orders/partitions"), Some("2"))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.call(M::POST, &format!("{base}/orders/partitions"), Some("4"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, list) = api.call(M::GET, base, None).await;
    let expected: Vec<String> = (0..4)
        .map(|n| format!("persistent://public/default/orders-partition-{n}"))
        .chain(["persistent://public/default/single".to_string()])
        .collect();
    assert_eq!(list, json!(expected));
    assert_eq!(
        api.call(M::GET, &format!("{base}/partitioned"), None)
            .await
            .1,
        json!(["persistent://public/default/orders"])
    );
    assert_eq!(
        api.call(M::GET, "/admin/v2/persistent/public/nope", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Data written through the broker shows in stats.
    let tp = TopicPartition {
        topic: api.broker.parse_topic("orders").unwrap(),
        partition: 2,
    };
    let log = api.broker.partition(&tp).await.unwrap();
    for _ in 0..3 {
        let payload = bytes::Bytes::from(vec![0u8; 100]);
        let request = AppendRequest {
            payload,
            message_count: 2,
            max_timestamp_ms: 1,
            format: PayloadFormat::Kafka,
            producer: None,
            first_index_at: Some(0),
        };
        log.append(request).await.unwrap();
    }
    let (status, stats) = api
        .call(M::GET, &format!("{base}/orders-partition-2/stats"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (stats["msgCount"].clone(), stats["logEndIndex"].clone()),
        (json!(6), json!(6))
    );
    assert!(stats["storageSize"].as_u64().unwrap() >= 300);
    let (_, all) = api
        .call(M::GET, &format!("{base}/orders/partitioned-stats"), None)
        .await;
    assert_eq!(all["msgCount"], json!(6));
    assert_eq!(all["metadata"]["partitions"], json!(4));
    let (_, internal) = api
        .call(
            M::GET,
            &format!("{base}/orders-partition-2/internal-stats"),
            None,
        )
        .await;
    assert_eq!(internal["numberOfEntries"], json!(3));
    assert_eq!(internal["segments"][0]["baseIndex"], json!(0));
    assert_eq!(
        api.call(M::GET, &format!("{base}/orders/stats"), None)
            .await
            .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        api.call(M::GET, &format!("{base}/orders-partition-9/stats"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(M::GET, &format!("{base}/single/subscriptions"), None)
            .await
            .1,
        json!([])
    );

    // A subscription (cursor) blocks deletion without force.
    assert!(log
        .create_subscription("sub", magnetar_broker::CursorStart::Earliest)
        .await
        .unwrap());
    assert_eq!(
        api.call(M::GET, &format!("{base}/orders/subscriptions"), None)
            .await
            .1,
        json!(["sub"])
    );
    let (_, stats) = api
        .call(M::GET, &format!("{base}/orders-partition-2/stats"), None)
        .await;
    assert_eq!(stats["subscriptions"]["sub"]["msgBacklog"], json!(6));
    assert_eq!(
        api.call(M::DELETE, &format!("{base}/orders/partitions"), None)
            .await
            .0,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        api.call(M::DELETE, &format!("{base}/orders"), None).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        api.call(
            M::DELETE,
            &format!("{base}/orders/partitions?force=true"),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::DELETE, &format!("{base}/orders/partitions"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn permissions_on_namespaces_topics_and_subscriptions() {
    let api = Api::new().await;
    let ns = "/admin/v2/namespaces/public/default";
    let topic = "/admin/v2/persistent/public/default/orders";
    assert_eq!(
        api.call(M::GET, &format!("{ns}/permissions"), None).await,
        (StatusCode::OK, json!({}))
    );
    let grant = api
        .call(
            M::POST,
            &format!("{ns}/permissions/app"),
            Some(r#"["consume","produce"]"#),
        )
        .await;
    assert_eq!(grant.0, StatusCode::NO_CONTENT);
    assert_eq!(
        api.call(M::GET, &format!("{ns}/permissions"), None).await,
        (StatusCode::OK, json!({"app": ["produce", "consume"]}))
    );
    // Topic grants merge with the namespace's; a partition name addresses its topic.
    let grant = api
        .call(
            M::POST,
            &format!("{topic}-partition-2/permissions/ingest"),
            Some(r#"["produce"]"#),
        )
        .await;
    assert_eq!(grant.0, StatusCode::NO_CONTENT);
    assert_eq!(
        api.call(M::GET, &format!("{topic}/permissions"), None)
            .await,
        (
            StatusCode::OK,
            json!({"app": ["produce", "consume"], "ingest": ["produce"]})
        )
    );
    let orders = api.broker.parse_topic("orders").unwrap();
    assert!(api
        .broker
        .authorize("ingest", &orders, &Access::Produce)
        .await
        .unwrap());
    // Deny rules (Kafka DENY ACLs) are listed beside the grants under `deny:`.
    let public = orders.namespace.clone();
    let lookup_produce = [DeniedAction::Lookup, DeniedAction::Produce].into();
    api.broker
        .change_denies(&public, Some(&orders), "ingest", &lookup_produce, true)
        .await
        .unwrap();
    api.broker
        .change_denies(&public, None, "app", &[DeniedAction::All].into(), true)
        .await
        .unwrap();
    api.broker
        .change_subscription_deny(&public, "audit", "app", true)
        .await
        .unwrap();
    assert_eq!(
        api.call(M::GET, &format!("{topic}/permissions"), None)
            .await,
        (
            StatusCode::OK,
            json!({"app": ["produce", "consume"], "ingest": ["produce"],
                   "deny:app": ["all"], "deny:ingest": ["produce", "lookup"]})
        )
    );
    assert_eq!(
        api.call(M::GET, &format!("{ns}/permissions"), None).await,
        (
            StatusCode::OK,
            json!({"app": ["produce", "consume"], "deny:app": ["all"]})
        )
    );
    assert_eq!(
        api.call(M::GET, &format!("{ns}/permissions/subscription"), None)
            .await,
        (StatusCode::OK, json!({"deny:audit": ["app"]}))
    );
    assert_eq!(
        api.call(
            M::POST,
            &format!("{ns}/permissions/deny:x"),
            Some(r#"["produce"]"#)
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    api.broker
        .change_denies(&public, Some(&orders), "ingest", &lookup_produce, false)
        .await
        .unwrap();
    api.broker
        .change_denies(&public, None, "app", &[DeniedAction::All].into(), false)
        .await
        .unwrap();
    api.broker
        .change_subscription_deny(&public, "audit", "app", false)
        .await
        .unwrap();
    // Subscriptions (Kafka groups) restricted to roles.
    assert_eq!(
        api.call(
            M::POST,
            &format!("{ns}/permissions/subscription/billing"),
            Some(r#"["app"]"#)
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::GET, &format!("{ns}/permissions/subscription"), None)
            .await,
        (StatusCode::OK, json!({"billing": ["app"]}))
    );
    assert_eq!(
        api.call(M::DELETE, &format!("{ns}/permissions/billing/app"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::GET, &format!("{ns}/permissions/subscription"), None)
            .await,
        (StatusCode::OK, json!({}))
    );
    // Revoke.
    for path in [
        format!("{ns}/permissions/app"),
        format!("{topic}/permissions/ingest"),
    ] {
        assert_eq!(
            api.call(M::DELETE, &path, None).await.0,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(
        api.call(M::GET, &format!("{topic}/permissions"), None)
            .await,
        (StatusCode::OK, json!({}))
    );
    // Errors: unknown action, empty list, malformed JSON, unknown namespace, bad name.
    for (path, body, status) in [
        (
            format!("{ns}/permissions/app"),
            r#"["write"]"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{ns}/permissions/app"),
            "[]",
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{ns}/permissions/app"),
            "[",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/admin/v2/namespaces/public/nope/permissions/app".to_string(),
            r#"["produce"]"#,
            StatusCode::NOT_FOUND,
        ),
        (
            format!("{ns}/permissions/subscription/g"),
            "[]",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, body) = api.call(M::POST, &path, Some(body)).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body["reason"].is_string(), "{path}: {body}");
    }
    assert_eq!(
        api.call(M::GET, "/admin/v2/namespaces/nobody/x/permissions", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}
