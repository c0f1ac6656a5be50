//! Subscription endpoints through the router: create, delete, reset-cursor, skip, skip_all, with
//! their error paths.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use magnetar_broker::*;
use magnetar_metadata::MemoryStore;
use magnetar_testkit::admin::{self, NotJson};
use serde_json::{json, Value};

struct Api {
    router: axum::Router,
    broker: Arc<Broker>,
    _dir: tempfile::TempDir,
}

const BASE: &str = "/admin/v2/persistent/public/default";

impl Api {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(
            BrokerConfig::for_data_dir(dir.path().to_path_buf()),
            Arc::new(MemoryStore::new()),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let readiness = magnetar_admin::Readiness::default();
        Self {
            router: magnetar_admin::router(broker.clone(), readiness),
            broker,
            _dir: dir,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        admin::call(&self.router, method, path, body, NotJson::AsString).await
    }

    async fn log(&self, topic: &str, partition: u32) -> Arc<PartitionLog> {
        let tp = TopicPartition {
            topic: self.broker.parse_topic(topic).unwrap(),
            partition,
        };
        self.broker.partition(&tp).await.unwrap()
    }

    /// `entries` single-message entries with timestamps 1000, 2000, ...
    async fn produce(&self, topic: &str, partition: u32, entries: i64) {
        let log = self.log(topic, partition).await;
        for i in 0..entries {
            log.append(AppendRequest {
                payload: Bytes::from_static(b"x"),
                message_count: 1,
                max_timestamp_ms: (i + 1) * 1000,
                format: PayloadFormat::Pulsar,
                producer: None,
                first_index_at: None,
            })
            .await
            .unwrap();
        }
    }

    async fn cursor(&self, topic: &str, partition: u32, sub: &str) -> Option<CursorState> {
        self.log(topic, partition)
            .await
            .subscription_cursors()
            .into_iter()
            .find(|(name, _)| name == sub)
            .map(|(_, cursor)| cursor)
    }

    async fn mark(&self, topic: &str, partition: u32, sub: &str) -> u64 {
        self.cursor(topic, partition, sub)
            .await
            .unwrap()
            .mark_delete_index
    }
}

use Method as M;

/// A consumer that takes nothing (it is given no permits).
struct Idle;

impl ConsumerSink for Idle {
    fn deliver(&self, _delivery: Delivery) -> DeliveryFuture {
        Box::pin(async {})
    }

    fn active_changed(&self, _active: bool) {}

    fn closed(&self) -> DeliveryFuture {
        Box::pin(async {})
    }
}

impl EntryCodec for Idle {
    fn prepare(
        &self,
        entry: &Entry,
        _key_slot: bool,
    ) -> std::result::Result<PreparedEntry, String> {
        Ok(PreparedEntry {
            body: entry.payload.clone(),
            key_slot: 0,
        })
    }

    fn unreadable(&self, _index: u64, _error: &str) {}
}

#[tokio::test]
async fn create_reset_skip_delete_on_a_topic() {
    let api = Api::new().await;
    api.call(M::PUT, &format!("{BASE}/events"), None).await;
    api.produce("events", 0, 10).await;
    let sub = |rest: &str| format!("{BASE}/events/subscription/{rest}");

    // Created at the latest position by default, or where a message id says.
    assert_eq!(
        api.call(M::PUT, &sub("late"), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.mark("events", 0, "late").await, 10);
    let at = r#"{"ledgerId":0,"entryId":4,"partitionIndex":-1}"#;
    assert_eq!(
        api.call(M::PUT, &sub("mid"), Some(at)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.mark("events", 0, "mid").await, 4);
    let earliest = r#"{"ledgerId":-1,"entryId":-1}"#;
    api.call(M::PUT, &sub("early"), Some(earliest)).await;
    assert_eq!(api.mark("events", 0, "early").await, 0);
    let (status, body) = api.call(M::PUT, &sub("mid"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, subs) = api
        .call(M::GET, &format!("{BASE}/events/subscriptions"), None)
        .await;
    assert_eq!(subs, json!(["early", "late", "mid"]));

    // Reset by timestamp: the first message at or after it (entry 3 has timestamp 4000).
    assert_eq!(
        api.call(M::POST, &sub("late/resetcursor/3500"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.mark("events", 0, "late").await, 3);
    // After the last timestamp: the end.
    api.call(M::POST, &sub("late/resetcursor/999999"), None)
        .await;
    assert_eq!(api.mark("events", 0, "late").await, 10);
    // Reset by message id.
    let id = r#"{"ledgerId":0,"entryId":6}"#;
    assert_eq!(
        api.call(M::POST, &sub("late/resetcursor"), Some(id))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.mark("events", 0, "late").await, 6);

    // Skip counts unacknowledged messages: with 2 and 3 acked, skipping 3 from 0 acks 0, 1, 4.
    let log = api.log("events", 0).await;
    let acked = [std::ops::Range { start: 2, end: 4 }];
    let early = log.subscription("early").unwrap();
    early.ack(acked.to_vec()).await.unwrap();
    drop(early);
    assert_eq!(
        api.call(M::POST, &sub("early/skip/3"), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.mark("events", 0, "early").await, 5);
    assert_eq!(log.subscription("early").unwrap().backlog(), 5);
    // Skipping more than the backlog stops at the end.
    api.call(M::POST, &sub("early/skip/100"), None).await;
    assert_eq!(log.subscription("early").unwrap().backlog(), 0);
    api.call(M::POST, &sub("early/resetcursor/0"), None).await;
    assert_eq!(log.subscription("early").unwrap().backlog(), 10);
    assert_eq!(
        api.call(M::POST, &sub("early/skip_all"), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(log.subscription("early").unwrap().backlog(), 0);

    // A subscription with a connected consumer is not moved or deleted (412).
    // Attached through the broker's subscription, as the Pulsar front end does.
    let mid = log.subscription("mid").unwrap();
    let dispatcher = mid
        .add_consumer(
            Consumer {
                key: (1, 1),
                name: "c".into(),
                priority: 0,
                key_shared: Default::default(),
                sink: Arc::new(Idle),
            },
            SubscriptionType::Shared,
            Arc::new(Idle),
            1000,
        )
        .unwrap();
    assert!(dispatcher.is_some());
    for (method, path) in [
        (M::POST, sub("mid/resetcursor/0")),
        (M::POST, sub("mid/skip/1")),
        (M::POST, sub("mid/skip_all")),
        (M::DELETE, sub("mid")),
        (M::DELETE, sub("mid?force=true")),
    ] {
        let (status, body) = api.call(method, &path, None).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{path}: {body}");
        assert!(body["reason"].as_str().unwrap().contains("consumers"));
    }
    assert_eq!(api.mark("events", 0, "mid").await, 4);
    assert_eq!(mid.remove_consumer((1, 1)), 0);
    drop(mid);
    assert_eq!(
        api.call(M::DELETE, &sub("mid"), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert!(api.cursor("events", 0, "mid").await.is_none());

    // Errors: unknown subscription and topic 404, bad numbers and JSON 400.
    for (method, path, body, status) in [
        (M::DELETE, sub("mid"), None, StatusCode::NOT_FOUND),
        (M::POST, sub("nope/skip/1"), None, StatusCode::NOT_FOUND),
        (M::POST, sub("nope/skip_all"), None, StatusCode::NOT_FOUND),
        (
            M::POST,
            sub("nope/resetcursor/5"),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            M::POST,
            sub("nope/resetcursor"),
            Some(id),
            StatusCode::NOT_FOUND,
        ),
        (
            M::PUT,
            format!("{BASE}/missing/subscription/s"),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            M::POST,
            sub("late/skip/many"),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (M::POST, sub("late/skip/-1"), None, StatusCode::BAD_REQUEST),
        (
            M::POST,
            sub("late/resetcursor/soon"),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            M::POST,
            sub("late/resetcursor"),
            Some("{oops"),
            StatusCode::BAD_REQUEST,
        ),
        (M::PUT, sub("new"), Some("{oops"), StatusCode::BAD_REQUEST),
        (
            M::PUT,
            sub("new"),
            Some(r#"{"ledgerId":0,"entryId":-7}"#),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, reply) = api.call(method, &path, body).await;
        assert_eq!(got, status, "{path}: {reply}");
        assert!(reply["reason"].is_string(), "{path}: {reply}");
    }
}

#[tokio::test]
async fn partitioned_topics_apply_to_every_partition() {
    let api = Api::new().await;
    api.call(M::PUT, &format!("{BASE}/orders/partitions"), Some("2"))
        .await;
    api.produce("orders", 0, 4).await;
    api.produce("orders", 1, 6).await;
    let sub = |rest: &str| format!("{BASE}/orders/subscription/{rest}");
    let earliest = r#"{"ledgerId":-1,"entryId":-1}"#;
    assert_eq!(
        api.call(M::PUT, &sub("s"), Some(earliest)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        (
            api.mark("orders", 0, "s").await,
            api.mark("orders", 1, "s").await
        ),
        (0, 0)
    );
    let (_, subs) = api
        .call(M::GET, &format!("{BASE}/orders/subscriptions"), None)
        .await;
    assert_eq!(subs, json!(["s"]));
    // One partition by its name.
    let one = format!("{BASE}/orders-partition-1/subscription/s/skip/2");
    assert_eq!(
        api.call(M::POST, &one, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        (
            api.mark("orders", 0, "s").await,
            api.mark("orders", 1, "s").await
        ),
        (0, 2)
    );
    // Skip on the whole partitioned topic is refused, as Pulsar does.
    assert_eq!(
        api.call(M::POST, &sub("s/skip/1"), None).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // Reset by timestamp on every partition; by message id on the id's partition.
    api.call(M::POST, &sub("s/resetcursor/3000"), None).await;
    assert_eq!(
        (
            api.mark("orders", 0, "s").await,
            api.mark("orders", 1, "s").await
        ),
        (2, 2)
    );
    let id = r#"{"ledgerId":0,"entryId":5,"partitionIndex":1}"#;
    api.call(M::POST, &sub("s/resetcursor"), Some(id)).await;
    assert_eq!(
        (
            api.mark("orders", 0, "s").await,
            api.mark("orders", 1, "s").await
        ),
        (2, 5)
    );
    let no_partition = r#"{"ledgerId":0,"entryId":5}"#;
    assert_eq!(
        api.call(M::POST, &sub("s/resetcursor"), Some(no_partition))
            .await
            .0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    api.call(M::POST, &sub("s/skip_all"), None).await;
    assert_eq!(
        (
            api.mark("orders", 0, "s").await,
            api.mark("orders", 1, "s").await
        ),
        (4, 6)
    );
    assert_eq!(
        api.call(M::DELETE, &sub("s"), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert!(api.cursor("orders", 1, "s").await.is_none());
    assert_eq!(
        api.call(
            M::PUT,
            &format!("{BASE}/orders-partition-7/subscription/s"),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}
