//! `magnetar admin` against a running standalone broker, as an operator runs it.

mod common;

use std::process::Command;

use common::Broker;

fn admin(broker: &Broker, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(common::binary())
        .arg("admin")
        .args(["--admin-url", &format!("http://{}", broker.http_addr)])
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn tenants_namespaces_topics_round_trip() {
    let broker = Broker::start();
    let ok = |args: &[&str]| {
        let (success, stdout, stderr) = admin(&broker, args);
        assert!(success, "{args:?}: {stderr}");
        stdout
    };
    assert_eq!(ok(&["tenants", "list"]), "public\n");
    ok(&["tenants", "create", "acme", "--admin-roles", "ops,dev"]);
    assert_eq!(ok(&["tenants", "list"]), "acme\npublic\n");
    ok(&["namespaces", "create", "acme/sales"]);
    assert_eq!(ok(&["namespaces", "list", "acme"]), "acme/sales\n");
    ok(&[
        "namespaces",
        "set-retention",
        "acme/sales",
        "--time-minutes",
        "-1",
        "--size-mb",
        "512",
    ]);
    ok(&["namespaces", "set-message-ttl", "acme/sales", "--ttl", "30"]);
    let policies: serde_json::Value = serde_json::from_str(&ok(&[
        "--output",
        "json",
        "namespaces",
        "policies",
        "acme/sales",
    ]))
    .unwrap();
    assert_eq!(policies["retention_policies"]["retentionSizeInMB"], 512);
    assert_eq!(policies["message_ttl_in_seconds"], 30);
    ok(&[
        "namespaces",
        "set-topic-config-defaults",
        "acme/sales",
        "-c",
        "cleanup.policy=compact",
        "-c",
        "delete.retention.ms=60000",
    ]);
    let defaults: serde_json::Value = serde_json::from_str(&ok(&[
        "--output",
        "json",
        "namespaces",
        "get-topic-config-defaults",
        "acme/sales",
    ]))
    .unwrap();
    assert_eq!(
        defaults,
        serde_json::json!({"cleanup.policy": "compact", "delete.retention.ms": "60000"})
    );
    let (success, _, stderr) = admin(
        &broker,
        &[
            "namespaces",
            "set-topic-config-defaults",
            "acme/sales",
            "-c",
            "retention.ms=1",
        ],
    );
    assert!(!success && stderr.contains("retention.ms"), "{stderr}");
    ok(&["namespaces", "remove-topic-config-defaults", "acme/sales"]);

    ok(&[
        "topics",
        "create-partitioned-topic",
        "persistent://acme/sales/orders",
        "-p",
        "2",
    ]);
    ok(&[
        "topics",
        "update-partitioned-topic",
        "acme/sales/orders",
        "-p",
        "3",
    ]);
    ok(&["topics", "create", "acme/sales/single"]);
    let listed = ok(&["topics", "list", "acme/sales"]);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        vec![
            "persistent://acme/sales/orders-partition-0",
            "persistent://acme/sales/orders-partition-1",
            "persistent://acme/sales/orders-partition-2",
            "persistent://acme/sales/single",
        ]
    );
    let stats = ok(&["topics", "stats", "acme/sales/single"]);
    assert!(
        stats.contains("msgCount") && stats.contains("storageSize"),
        "{stats}"
    );
    let stats: serde_json::Value = serde_json::from_str(&ok(&[
        "--output",
        "json",
        "topics",
        "partitioned-stats",
        "acme/sales/orders",
    ]))
    .unwrap();
    assert_eq!(stats["metadata"]["partitions"], 3);

    // Errors: a non-zero exit and the server's reason.
    let (success, _, stderr) = admin(&broker, &["tenants", "create", "acme"]);
    assert!(
        !success && stderr.contains("409") && stderr.contains("acme"),
        "{stderr}"
    );
    let (success, _, stderr) = admin(&broker, &["namespaces", "delete", "acme/sales"]);
    assert!(!success && stderr.contains("not empty"), "{stderr}");
    let (success, _, stderr) = admin(&broker, &["topics", "stats", "no-slashes"]);
    assert!(
        !success && stderr.contains("tenant/namespace/topic"),
        "{stderr}"
    );

    ok(&["topics", "delete", "acme/sales/orders"]);
    ok(&["topics", "delete", "acme/sales/single"]);
    ok(&["namespaces", "delete", "acme/sales"]);
    ok(&["tenants", "delete", "acme"]);
    assert_eq!(ok(&["tenants", "list"]), "public\n");
}

#[test]
fn unreachable_admin_url_fails_clearly() {
    let output = Command::new(common::binary())
        .args([
            "admin",
            "--admin-url",
            "http://127.0.0.1:1",
            "tenants",
            "list",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// Groups through the CLI: a real rdkafka consumer commits offsets for group `billing`, then the
/// operator lists, describes (lag), resets and deletes it.
#[test]
fn groups_list_describe_reset_delete() {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{Offset, TopicPartitionList};
    use std::time::Duration;

    let broker = Broker::start();
    let ok = |args: &[&str]| {
        let (success, stdout, stderr) = admin(&broker, args);
        assert!(success, "{args:?}: {stderr}");
        stdout
    };
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&ok(&all)).unwrap()
    };
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka_addr)
        .create()
        .unwrap();
    for i in 0..10 {
        let payload = format!("m{i}");
        producer
            .send(
                BaseRecord::<(), _>::to("orders")
                    .payload(&payload)
                    .partition(0),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka_addr)
        .set("group.id", "billing")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("orders", 0, Offset::Offset(7))
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
    drop(consumer);

    let listed = ok(&["groups", "list"]);
    assert!(
        listed.starts_with("GROUP-ID") && listed.contains("billing") && listed.contains("Empty"),
        "{listed}"
    );
    let described = ok(&["groups", "describe", "billing"]);
    assert!(described.contains("LOG-END-OFFSET"), "{described}");
    let g = json(&["groups", "describe", "billing"]);
    assert_eq!(g["offsets"][0]["committedOffset"], 7);
    assert_eq!(g["offsets"][0]["logEndOffset"], 10);
    assert_eq!(g["offsets"][0]["lag"], 3);
    // The topic's stats show the group beside the Pulsar subscriptions.
    let stats = json(&["topics", "stats", "public/default/orders-partition-0"]);
    assert_eq!(stats["kafkaGroups"]["billing"]["msgBacklog"], 3);

    let reset = json(&[
        "groups",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-earliest",
    ]);
    assert_eq!(
        reset,
        serde_json::json!([{"topic": "orders", "partition": 0, "offset": 0}])
    );
    let g = json(&["groups", "describe", "billing"]);
    assert_eq!(g["offsets"][0]["lag"], 10);
    ok(&[
        "groups",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--partitions",
        "0",
        "--to-offset",
        "4",
    ]);
    assert_eq!(
        json(&["groups", "describe", "billing"])["offsets"][0]["committedOffset"],
        4
    );
    let (success, _, stderr) = admin(
        &broker,
        &["groups", "reset-offsets", "billing", "--topic", "orders"],
    );
    assert!(!success, "{stderr}");

    ok(&["groups", "delete", "billing"]);
    let (success, _, stderr) = admin(&broker, &["groups", "describe", "billing"]);
    assert!(!success && stderr.contains("404"), "{stderr}");
}

#[test]
fn namespace_permissions_round_trip() {
    let broker = Broker::start();
    let ok = |args: &[&str]| {
        let (success, stdout, stderr) = admin(&broker, args);
        assert!(success, "{args:?}: {stderr}");
        stdout
    };
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&ok(&all)).unwrap()
    };
    ok(&[
        "namespaces",
        "grant-permission",
        "public/default",
        "--role",
        "team a/reader",
        "--actions",
        "consume,produce",
    ]);
    assert_eq!(
        json(&["namespaces", "permissions", "public/default"]),
        serde_json::json!({"team a/reader": ["produce", "consume"]})
    );
    ok(&[
        "namespaces",
        "grant-subscription-permission",
        "public/default",
        "--subscription",
        "billing",
        "--roles",
        "team a/reader,ops",
    ]);
    ok(&[
        "namespaces",
        "revoke-subscription-permission",
        "public/default",
        "--subscription",
        "billing",
        "--role",
        "ops",
    ]);
    ok(&[
        "namespaces",
        "revoke-permission",
        "public/default",
        "--role",
        "team a/reader",
    ]);
    assert_eq!(
        json(&["namespaces", "permissions", "public/default"]),
        serde_json::json!({})
    );
    let (success, _, stderr) = admin(
        &broker,
        &[
            "namespaces",
            "grant-permission",
            "public/default",
            "--role",
            "x",
            "--actions",
            "write",
        ],
    );
    assert!(!success);
    assert!(stderr.contains("unknown action 'write'"), "{stderr}");
}

/// Subscriptions through the CLI on a topic that Kafka clients wrote to.
#[test]
fn subscriptions_create_reset_skip_unsubscribe() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use std::time::Duration;

    let broker = Broker::start();
    let ok = |args: &[&str]| {
        let (success, stdout, stderr) = admin(&broker, args);
        assert!(success, "{args:?}: {stderr}");
        stdout
    };
    let backlog = |sub: &str| -> serde_json::Value {
        let stats: serde_json::Value = serde_json::from_str(&ok(&[
            "--output",
            "json",
            "topics",
            "stats",
            "public/default/events",
        ]))
        .unwrap();
        stats["subscriptions"][sub]["msgBacklog"].clone()
    };
    ok(&["topics", "create", "public/default/events"]);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka_addr)
        .create()
        .unwrap();
    for i in 0..8 {
        let payload = format!("m{i}");
        producer
            .send(BaseRecord::<(), _>::to("events").payload(&payload))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let t = "public/default/events";
    ok(&[
        "topics",
        "create-subscription",
        t,
        "-s",
        "audit",
        "-m",
        "earliest",
    ]);
    assert_eq!(backlog("audit"), 8);
    ok(&["topics", "create-subscription", t, "-s", "tail"]);
    assert_eq!(backlog("tail"), 0);
    assert_eq!(ok(&["topics", "subscriptions", t]), "audit\ntail\n");
    ok(&["topics", "skip", t, "-s", "audit", "-n", "3"]);
    assert_eq!(backlog("audit"), 5);
    ok(&["topics", "reset-cursor", t, "-s", "tail", "-m", "0:2"]);
    assert_eq!(backlog("tail"), 6);
    ok(&["topics", "reset-cursor", t, "-s", "tail", "--time", "0"]);
    assert_eq!(backlog("tail"), 8);
    ok(&["topics", "clear-backlog", t, "-s", "tail"]);
    assert_eq!(backlog("tail"), 0);
    ok(&["topics", "unsubscribe", t, "-s", "tail"]);
    let (success, _, stderr) = admin(&broker, &["topics", "unsubscribe", t, "-s", "tail"]);
    assert!(!success && stderr.contains("404"), "{stderr}");
    let (success, _, stderr) = admin(
        &broker,
        &["topics", "reset-cursor", t, "-s", "audit", "-m", "x"],
    );
    assert!(!success && stderr.contains("ledger:entry"), "{stderr}");
}

#[test]
fn namespace_policy_commands() {
    let broker = Broker::start();
    let ok = |args: &[&str]| {
        let (success, stdout, stderr) = admin(&broker, args);
        assert!(success, "{args:?}: {stderr}");
        stdout
    };
    let ns = "public/default";
    ok(&[
        "namespaces",
        "set-auto-topic-creation",
        ns,
        "--type",
        "partitioned",
        "-n",
        "4",
    ]);
    ok(&["namespaces", "set-max-producers-per-topic", ns, "-p", "3"]);
    ok(&["namespaces", "set-max-consumers-per-topic", ns, "-c", "5"]);
    ok(&["namespaces", "set-publish-rate", ns, "-m", "100"]);
    let policies: serde_json::Value =
        serde_json::from_str(&ok(&["--output", "json", "namespaces", "policies", ns])).unwrap();
    assert_eq!(
        policies["autoTopicCreationOverride"]["defaultNumPartitions"],
        4
    );
    assert_eq!(policies["max_producers_per_topic"], 3);
    assert_eq!(policies["max_consumers_per_topic"], 5);
    assert_eq!(
        policies["publishMaxMessageRate"]["standalone"],
        serde_json::json!({"publishThrottlingRateInMsg": 100, "publishThrottlingRateInByte": -1})
    );
    ok(&["namespaces", "remove-publish-rate", ns]);
    ok(&["namespaces", "remove-auto-topic-creation", ns]);
    let policies: serde_json::Value =
        serde_json::from_str(&ok(&["--output", "json", "namespaces", "policies", ns])).unwrap();
    assert!(policies["autoTopicCreationOverride"].is_null());
    assert_eq!(policies["publishMaxMessageRate"], serde_json::json!({}));
    let (success, _, stderr) = admin(
        &broker,
        &[
            "namespaces",
            "set-auto-topic-creation",
            ns,
            "--type",
            "sideways",
        ],
    );
    assert!(!success && stderr.contains("412"), "{stderr}");
}

#[test]
fn schemas_get_upload_delete() {
    let broker = Broker::start();
    let ok = |args: &[&str]| {
        let (success, stdout, stderr) = admin(&broker, args);
        assert!(success, "{args:?}: {stderr}");
        stdout
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schema.json");
    let definition =
        r#"{"type":"record","name":"User","fields":[{"name":"name","type":"string"}]}"#;
    std::fs::write(
        &file,
        serde_json::json!({"type": "AVRO", "schema": definition, "properties": {}}).to_string(),
    )
    .unwrap();
    let topic = "public/default/users";
    let file_arg = file.display().to_string();
    let uploaded: serde_json::Value = serde_json::from_str(&ok(&[
        "--output", "json", "schemas", "upload", topic, "-f", &file_arg,
    ]))
    .unwrap();
    assert_eq!(uploaded["version"], 0);
    let got: serde_json::Value =
        serde_json::from_str(&ok(&["--output", "json", "schemas", "get", topic])).unwrap();
    assert_eq!(got["type"], "AVRO");
    assert_eq!(got["data"], definition);
    let v0: serde_json::Value = serde_json::from_str(&ok(&[
        "--output",
        "json",
        "schemas",
        "get",
        topic,
        "--version",
        "0",
    ]))
    .unwrap();
    assert_eq!(v0["version"], 0);
    // An incompatible upload is refused with the reason (409).
    std::fs::write(
        &file,
        serde_json::json!({"type": "AVRO", "schema": r#"{"type":"record","name":"User","fields":[{"name":"name","type":"string"},{"name":"n","type":"int"}]}"#}).to_string(),
    )
    .unwrap();
    let (success, _, stderr) = admin(&broker, &["schemas", "upload", topic, "-f", &file_arg]);
    assert!(!success && stderr.contains("n"), "{stderr}");
    ok(&["schemas", "delete", topic]);
    let (success, _, _) = admin(&broker, &["schemas", "get", topic]);
    assert!(!success);
    ok(&["schemas", "delete", topic, "--force"]);
}
