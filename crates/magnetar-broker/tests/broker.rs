//! The broker core in process: topics in the metadata store, partitions over real ledgers,
//! idempotent appends, and producer state rebuilt from the log after a reopen.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use magnetar_broker::*;
use magnetar_metadata::{MemoryStore, MetadataStore};

fn config(dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        default_num_partitions: 3,
        partitions_max: 16,
        producers_per_partition_max: 100,
        ..BrokerConfig::for_data_dir(dir.to_path_buf())
    }
}

fn batch(payload: &str, producer: Option<ProducerBatch>) -> AppendRequest {
    let mut bytes = vec![0u8; 8];
    bytes.extend_from_slice(payload.as_bytes());
    AppendRequest {
        payload: Bytes::from(bytes),
        message_count: producer.map_or(1, |p| p.message_count),
        max_timestamp_ms: 1000,
        format: PayloadFormat::Kafka,
        producer,
        first_index_at: Some(0),
    }
}

#[tokio::test]
async fn topic_lifecycle_and_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let broker = Broker::open(config(dir.path()), metadata.clone(), Arc::new(SystemClock))
        .await
        .unwrap();
    assert_eq!(
        broker.list_tenants().await.unwrap(),
        vec!["public".to_string()]
    );

    let t = broker.parse_topic("orders").unwrap();
    let created = broker
        .create_topic(&t, Some(2), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(created.partition_count(), 2);
    assert!(matches!(
        broker.create_topic(&t, Some(2), BTreeMap::new()).await,
        Err(Error::TopicAlreadyExists { .. })
    ));
    // Auto-creation uses the default partition count.
    let auto = broker
        .topic_or_create(&broker.parse_topic("auto").unwrap())
        .await
        .unwrap();
    assert_eq!(auto.partition_count(), 3);
    // A missing namespace is a clear error.
    let elsewhere = broker.parse_topic("nosuch/ns/t").unwrap();
    assert!(matches!(
        broker.topic_or_create(&elsewhere).await,
        Err(Error::NamespaceNotFound { namespace }) if namespace == "nosuch/ns"
    ));
    // Partitions only grow.
    assert!(broker.set_partition_count(&t, 1).await.is_err());
    assert_eq!(
        broker.set_partition_count(&t, 4).await.unwrap().partitions,
        4
    );
    let names: Vec<String> = broker
        .list_all_topics(false)
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _)| n.local)
        .collect();
    assert_eq!(names, vec!["auto".to_string(), "orders".to_string()]);
    // A namespace with topics cannot be deleted.
    let ns = NamespaceName::new("public", "default").unwrap();
    assert!(matches!(
        broker.delete_namespace(&ns).await,
        Err(Error::NamespaceNotEmpty { .. })
    ));

    // Data, then delete: the topic and its ledgers are gone.
    let log = broker
        .partition(&TopicPartition {
            topic: t.clone(),
            partition: 3,
        })
        .await
        .unwrap();
    log.append(batch("x", None)).await.unwrap();
    assert!(matches!(
        broker
            .partition(&TopicPartition {
                topic: t.clone(),
                partition: 4
            })
            .await,
        Err(Error::PartitionNotFound { .. })
    ));
    broker.delete_topic(&t).await.unwrap();
    assert!(broker.topic(&t).await.unwrap().is_none());
    assert!(!dir
        .path()
        .join("ledgers/public/default/persistent/orders-partition-3")
        .exists());
    broker
        .create_topic(&t, Some(4), BTreeMap::new())
        .await
        .unwrap();
    let log = broker
        .partition(&TopicPartition {
            topic: t,
            partition: 3,
        })
        .await
        .unwrap();
    assert_eq!(log.end_index(), 0, "a re-created topic starts empty");
}

#[tokio::test]
async fn idempotent_appends_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let tp = {
        let broker = Broker::open(config(dir.path()), metadata.clone(), Arc::new(SystemClock))
            .await
            .unwrap();
        let topic = broker.parse_topic("idem").unwrap();
        broker
            .create_topic(&topic, None, BTreeMap::new())
            .await
            .unwrap();
        let tp = TopicPartition {
            topic,
            partition: 0,
        };
        let log = broker.partition(&tp).await.unwrap();
        let producer_id = broker.allocate_producer_id().await.unwrap();
        assert_ne!(producer_id, broker.allocate_producer_id().await.unwrap());
        let b0 = ProducerBatch {
            producer_id,
            epoch: 0,
            first_sequence: 0,
            message_count: 2,
            txn: magnetar_broker::TxnMark::None,
        };
        let b1 = ProducerBatch {
            first_sequence: 2,
            message_count: 3,
            txn: magnetar_broker::TxnMark::None,
            ..b0
        };
        assert_eq!(
            log.append(batch("a", Some(b0))).await.unwrap().first_index,
            0
        );
        assert_eq!(
            log.append(batch("b", Some(b1))).await.unwrap().first_index,
            2
        );
        let dup = log.append(batch("b", Some(b1))).await.unwrap();
        assert!(dup.duplicate);
        assert_eq!(dup.first_index, 2);
        assert_eq!(log.end_index(), 5);
        // Traffic counts the two durable appends, not the duplicate.
        let traffic = log.traffic();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(load(&traffic.messages_in), 5);
        assert_eq!(load(&traffic.bytes_in), (8 + 1) * 2);
        assert_eq!(traffic.append_latency.snapshot().count(), 2);
        log.record_out(9, 2);
        assert_eq!(
            (load(&traffic.bytes_out), load(&traffic.messages_out)),
            (9, 2)
        );
        // The index was written into the stored payload.
        let entries = log.read(2, 1 << 20, 10).await.unwrap();
        assert_eq!(&entries[0].payload[..8], &2u64.to_be_bytes());
        broker.shutdown().await.unwrap();
        tp
    };
    // A new broker over the same data: the duplicate is still recognised, gaps and old epochs refused.
    let metadata2: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let broker = Broker::open(config(dir.path()), metadata2, Arc::new(SystemClock))
        .await
        .unwrap();
    broker
        .create_topic(&tp.topic, None, BTreeMap::new())
        .await
        .unwrap();
    let log = broker.partition(&tp).await.unwrap();
    assert_eq!(log.end_index(), 5);
    let b1 = ProducerBatch {
        producer_id: 0,
        epoch: 0,
        first_sequence: 2,
        message_count: 3,
        txn: magnetar_broker::TxnMark::None,
    };
    let again = log.append(batch("b", Some(b1))).await.unwrap();
    assert!(again.duplicate && again.first_index == 2);
    let gap = ProducerBatch {
        first_sequence: 9,
        message_count: 1,
        txn: magnetar_broker::TxnMark::None,
        ..b1
    };
    assert!(matches!(
        log.append(batch("c", Some(gap))).await,
        Err(Error::OutOfOrderSequence { expected: 5, .. })
    ));
    let bumped = ProducerBatch {
        epoch: 1,
        first_sequence: 0,
        message_count: 1,
        txn: magnetar_broker::TxnMark::None,
        ..b1
    };
    assert_eq!(
        log.append(batch("d", Some(bumped)))
            .await
            .unwrap()
            .first_index,
        5
    );
    let old = ProducerBatch {
        epoch: 0,
        first_sequence: 5,
        message_count: 1,
        txn: magnetar_broker::TxnMark::None,
        ..b1
    };
    assert!(matches!(
        log.append(batch("e", Some(old))).await,
        Err(Error::InvalidProducerEpoch { .. })
    ));
    // DeleteRecords-style truncation.
    assert_eq!(log.truncate_before(2).await.unwrap(), 2);
    assert!(matches!(
        log.read(0, 100, 1).await,
        Err(Error::IndexOutOfRange { start: 2, .. })
    ));
    assert!(matches!(
        log.truncate_before(99).await,
        Err(Error::IndexOutOfRange { .. })
    ));
}

#[tokio::test]
async fn retention_follows_topic_configs_then_namespace_policy() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let broker = Broker::open(config(dir.path()), metadata, clock.clone())
        .await
        .unwrap();
    let configs: BTreeMap<String, String> = [("retention.ms", "60000"), ("segment.bytes", "4096")]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let timed = broker.parse_topic("timed").unwrap();
    broker.create_topic(&timed, None, configs).await.unwrap();
    let forever = broker.parse_topic("forever").unwrap();
    broker
        .create_topic(
            &forever,
            None,
            [("segment.bytes".to_string(), "4096".to_string())].into(),
        )
        .await
        .unwrap();
    let payload = "x".repeat(1000);
    for topic in [&timed, &forever] {
        let log = broker
            .partition(&TopicPartition {
                topic: topic.clone(),
                partition: 0,
            })
            .await
            .unwrap();
        for _ in 0..20 {
            log.append(batch(&payload, None)).await.unwrap();
        }
        assert!(log.stats().segments.len() > 3, "segment.bytes was applied");
    }
    // Nothing is old enough yet.
    assert_eq!(
        broker.enforce_retention().await.unwrap().segments_deleted,
        0
    );
    clock.advance_ms(120_000);
    let summary = broker.enforce_retention().await.unwrap();
    assert!(summary.segments_deleted > 0, "{summary:?}");
    let timed_log = broker
        .partition(&TopicPartition {
            topic: timed,
            partition: 0,
        })
        .await
        .unwrap();
    let forever_log = broker
        .partition(&TopicPartition {
            topic: forever,
            partition: 0,
        })
        .await
        .unwrap();
    assert!(
        timed_log.start_index() > 0,
        "old sealed segments of 'timed' were deleted"
    );
    assert_eq!(timed_log.end_index(), 20, "the active segment stays");
    assert_eq!(
        forever_log.start_index(),
        0,
        "no policy means infinite retention"
    );

    // A namespace policy applies to topics without their own setting.
    let ns = NamespaceName::new("public", "sized").unwrap();
    let policies = NamespacePolicies {
        retention_size_bytes: Some(5000),
        ..Default::default()
    };
    broker
        .create_namespace(&ns, policies.clone())
        .await
        .unwrap();
    let sized = TopicName::new(ns, "t").unwrap();
    broker
        .create_topic(
            &sized,
            None,
            [("segment.bytes".to_string(), "4096".to_string())].into(),
        )
        .await
        .unwrap();
    let log = broker
        .partition(&TopicPartition {
            topic: sized.clone(),
            partition: 0,
        })
        .await
        .unwrap();
    for _ in 0..20 {
        log.append(batch(&payload, None)).await.unwrap();
    }
    let meta = broker.topic(&sized).await.unwrap().unwrap();
    assert_eq!(
        effective_retention(&meta, Some(&policies)),
        (None, Some(5000))
    );
    broker.enforce_retention().await.unwrap();
    assert!(log.start_index() > 0);
    assert!(
        log.stats().total_bytes >= 5000,
        "size retention keeps at least the limit"
    );

    // cleanup.policy=compact alone: neither the namespace's policy nor the topic's own
    // retention.ms deletes anything (Kafka's rule: old segments hold keys' latest values);
    // compact,delete is deleted like any topic.
    let mut logs = Vec::new();
    for (name, policy) in [
        ("compact-only", "compact"),
        ("compact-delete", "compact,delete"),
    ] {
        let topic = TopicName::new(NamespaceName::new("public", "sized").unwrap(), name).unwrap();
        let configs = [
            ("segment.bytes", "4096"),
            ("cleanup.policy", policy),
            ("retention.ms", "1000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        broker.create_topic(&topic, None, configs).await.unwrap();
        let log = broker
            .partition(&TopicPartition {
                topic,
                partition: 0,
            })
            .await
            .unwrap();
        for _ in 0..20 {
            log.append(batch(&payload, None)).await.unwrap();
        }
        logs.push(log);
    }
    clock.advance_ms(60_000);
    broker.enforce_retention().await.unwrap();
    assert_eq!(
        logs[0].start_index(),
        0,
        "a compact-only topic is not deleted by retention"
    );
    assert!(
        logs[1].start_index() > 0,
        "compact,delete is deleted by retention"
    );
}

#[tokio::test]
async fn message_ttl_expires_old_messages_on_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let broker = Broker::open(
        config(dir.path()),
        Arc::new(MemoryStore::new()),
        clock.clone(),
    )
    .await
    .unwrap();
    let ns = NamespaceName::new("public", "ttl").unwrap();
    broker
        .create_namespace(
            &ns,
            NamespacePolicies {
                message_ttl_s: Some(60),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let topic = TopicName::new(ns, "t").unwrap();
    broker
        .create_topic(&topic, None, BTreeMap::new())
        .await
        .unwrap();
    let log = broker
        .partition(&TopicPartition {
            topic,
            partition: 0,
        })
        .await
        .unwrap();
    assert!(log
        .create_subscription("sub", CursorStart::Earliest)
        .await
        .unwrap());
    let at = |ts: i64| AppendRequest {
        max_timestamp_ms: ts,
        ..batch("m", None)
    };
    for ts in [1_000_000, 1_010_000, 1_100_000] {
        log.append(at(ts)).await.unwrap();
    }
    // At 1_065_000 the cutoff is 1_005_000: only the first message is older than 60 s.
    clock.set_ms(1_065_000);
    assert_eq!(
        broker.enforce_retention().await.unwrap().messages_expired,
        1
    );
    assert_eq!(log.subscription("sub").unwrap().backlog(), 2);
    // Much later, everything has expired; the data itself stays (no retention policy).
    clock.set_ms(2_000_000);
    assert_eq!(
        broker.enforce_retention().await.unwrap().messages_expired,
        2
    );
    assert_eq!(log.subscription("sub").unwrap().backlog(), 0);
    assert_eq!(log.start_index(), 0);
}

#[tokio::test]
async fn permissions_are_granted_revoked_and_decided_as_pulsar_does() {
    let dir = tempfile::tempdir().unwrap();
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let config = BrokerConfig {
        superuser_roles: vec!["root".into()],
        ..config(dir.path())
    };
    let broker = Broker::open(config, metadata, Arc::new(SystemClock))
        .await
        .unwrap();
    let tenant = TenantName::new("acme").unwrap();
    broker
        .create_tenant(
            &tenant,
            TenantInfo {
                admin_roles: vec!["acme-admin".into()],
                ..TenantInfo::default()
            },
        )
        .await
        .unwrap();
    let ns = NamespaceName::new("acme", "app").unwrap();
    broker
        .create_namespace(&ns, NamespacePolicies::default())
        .await
        .unwrap();
    let orders = TopicName::new(ns.clone(), "orders").unwrap();
    let other = broker.parse_topic("public/default/x").unwrap();
    let consume = |g: &str| Access::Consume {
        subscription: Some(g.into()),
    };

    // Nobody but superusers and the tenant's admins before any grant.
    assert!(broker
        .authorize("root", &orders, &Access::Admin)
        .await
        .unwrap());
    assert!(broker
        .authorize("acme-admin", &orders, &Access::Produce)
        .await
        .unwrap());
    assert!(!broker
        .authorize("acme-admin", &other, &Access::Lookup)
        .await
        .unwrap());
    assert!(!broker
        .authorize("app", &orders, &Access::Lookup)
        .await
        .unwrap());

    let v0 = broker.permissions_version();
    broker
        .grant_namespace_permission(&ns, "app", [AuthAction::Consume].into())
        .await
        .unwrap();
    assert!(
        broker.permissions_version() > v0,
        "a grant invalidates cached decisions"
    );
    broker
        .grant_topic_permission(&orders, "ingest", [AuthAction::Produce].into())
        .await
        .unwrap();
    assert!(broker
        .authorize("app", &orders, &consume("g1"))
        .await
        .unwrap());
    assert!(!broker
        .authorize("app", &orders, &Access::Produce)
        .await
        .unwrap());
    assert!(broker
        .authorize("ingest", &orders, &Access::Produce)
        .await
        .unwrap());
    assert!(broker
        .authorize("ingest", &orders, &Access::Lookup)
        .await
        .unwrap());
    assert!(!broker
        .authorize("app", &orders, &Access::Admin)
        .await
        .unwrap());

    // A subscription (group) restricted to other roles.
    broker
        .grant_subscription_permission(&ns, "g1", &["billing".to_string()].into())
        .await
        .unwrap();
    assert!(!broker
        .authorize("app", &orders, &consume("g1"))
        .await
        .unwrap());
    assert!(broker
        .authorize("app", &orders, &consume("g2"))
        .await
        .unwrap());
    broker
        .revoke_subscription_permission(&ns, "g1", "billing")
        .await
        .unwrap();
    assert!(broker
        .authorize("app", &orders, &consume("g1"))
        .await
        .unwrap());

    let grants = broker.topic_permissions(&orders).await.unwrap();
    assert_eq!(
        grants.len(),
        2,
        "namespace and topic grants merged: {grants:?}"
    );
    broker
        .revoke_namespace_permission(&ns, "app")
        .await
        .unwrap();
    broker
        .revoke_topic_permission(&orders, "ingest")
        .await
        .unwrap();
    assert!(broker.topic_permissions(&orders).await.unwrap().is_empty());
    assert!(!broker
        .authorize("app", &orders, &Access::Lookup)
        .await
        .unwrap());
    assert!(matches!(
        broker
            .grant_namespace_permission(
                &NamespaceName::new("acme", "nope").unwrap(),
                "x",
                [].into()
            )
            .await,
        Err(Error::NamespaceNotFound { .. })
    ));
    assert!(broker
        .grant_namespace_permission(&ns, "", [AuthAction::Produce].into())
        .await
        .is_err());
}

/// Deny rules are stored in the namespace's policies, override grants and tenant admin roles
/// (Kafka: deny overrides allow), leave superusers alone, and invalidate cached decisions.
#[tokio::test]
async fn deny_rules_override_grants_and_tenant_admins_but_not_superusers() {
    let dir = tempfile::tempdir().unwrap();
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let config = BrokerConfig {
        superuser_roles: vec!["root".into()],
        ..config(dir.path())
    };
    let broker = Broker::open(config, metadata, Arc::new(SystemClock))
        .await
        .unwrap();
    let tenant = TenantName::new("acme").unwrap();
    broker
        .create_tenant(
            &tenant,
            TenantInfo {
                admin_roles: vec!["acme-admin".into()],
                ..TenantInfo::default()
            },
        )
        .await
        .unwrap();
    let ns = NamespaceName::new("acme", "app").unwrap();
    broker
        .create_namespace(&ns, NamespacePolicies::default())
        .await
        .unwrap();
    let orders = TopicName::new(ns.clone(), "orders").unwrap();
    broker
        .grant_namespace_permission(
            &ns,
            "app",
            [AuthAction::Produce, AuthAction::Consume].into(),
        )
        .await
        .unwrap();
    let produce = [DeniedAction::Produce].into();
    let v0 = broker.permissions_version();
    for role in ["app", "acme-admin", "root"] {
        broker
            .change_denies(&ns, Some(&orders), role, &produce, true)
            .await
            .unwrap();
    }
    assert!(
        broker.permissions_version() > v0,
        "a deny invalidates cached decisions"
    );
    for (role, allowed) in [("app", false), ("acme-admin", false), ("root", true)] {
        assert_eq!(
            broker
                .authorize(role, &orders, &Access::Produce)
                .await
                .unwrap(),
            allowed,
            "{role}"
        );
        assert!(broker
            .authorize(role, &orders, &Access::Lookup)
            .await
            .unwrap());
    }
    broker
        .change_subscription_deny(&ns, "g", "acme-admin", true)
        .await
        .unwrap();
    assert!(!broker
        .authorize_group("acme-admin", &ns, "g")
        .await
        .unwrap());
    assert!(broker
        .authorize_group("acme-admin", &ns, "h")
        .await
        .unwrap());
    let auth = broker.auth_policies(&ns).await.unwrap();
    assert_eq!(auth.topic_denies(&orders).len(), 3);
    // Removing the rules restores the grants' decisions, and leaves nothing behind.
    for role in ["app", "acme-admin", "root"] {
        broker
            .change_denies(&ns, Some(&orders), role, &produce, false)
            .await
            .unwrap();
    }
    broker
        .change_subscription_deny(&ns, "g", "acme-admin", false)
        .await
        .unwrap();
    assert!(broker
        .authorize("app", &orders, &Access::Produce)
        .await
        .unwrap());
    let auth = broker.auth_policies(&ns).await.unwrap();
    assert!(auth.destination_deny.is_empty() && auth.subscription_deny_roles.is_empty());
    let elsewhere = TopicName::new(NamespaceName::new("acme", "other").unwrap(), "x").unwrap();
    assert!(broker
        .change_denies(&ns, Some(&elsewhere), "app", &produce, true)
        .await
        .is_err());
}

/// Topic metadata is cached in memory; every write through the broker is seen by the next read.
#[tokio::test]
async fn cached_topic_metadata_follows_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let broker = Broker::open(config(dir.path()), metadata, Arc::new(SystemClock))
        .await
        .unwrap();
    let t = broker.parse_topic("cached").unwrap();
    assert!(broker.topic(&t).await.unwrap().is_none());
    broker
        .create_topic(&t, Some(2), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(broker.topic(&t).await.unwrap().unwrap().partitions, 2);
    broker.set_partition_count(&t, 4).await.unwrap();
    assert_eq!(broker.topic(&t).await.unwrap().unwrap().partitions, 4);
    broker
        .update_topic(&t, |m| {
            m.configs.insert("retention.ms".into(), "1000".into());
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(
        broker.topic(&t).await.unwrap().unwrap().configs["retention.ms"],
        "1000"
    );
    broker.delete_topic(&t).await.unwrap();
    assert!(broker.topic(&t).await.unwrap().is_none());
    broker
        .create_topic(&t, None, BTreeMap::new())
        .await
        .unwrap();
    let again = broker.topic(&t).await.unwrap().unwrap();
    assert!(!again.partitioned && again.configs.is_empty());
}

#[tokio::test]
async fn check_access_and_the_connection_cache_follow_grants_and_the_switch() {
    use magnetar_broker::permissions::AccessCache;
    let dir = tempfile::tempdir().unwrap();
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let broker = Broker::open(
        BrokerConfig {
            superuser_roles: vec!["root".into()],
            authorization_enabled: true,
            ..config(dir.path())
        },
        metadata.clone(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let ns = NamespaceName::new("public", "default").unwrap();
    let topic = TopicName::new(ns.clone(), "t").unwrap();
    // No role (an unauthenticated client) gets nothing; superusers everything.
    assert!(!broker
        .check_access(None, &topic, &Access::Lookup)
        .await
        .unwrap());
    assert!(!broker.check_superuser(None));
    assert!(broker.check_superuser(Some("root")));
    assert!(!broker.check_superuser(Some("app")));
    assert!(broker
        .check_tenant_admin(Some("root"), &ns.tenant)
        .await
        .unwrap());
    assert!(!broker
        .check_tenant_admin(Some("app"), &ns.tenant)
        .await
        .unwrap());

    let mut cache = AccessCache::default();
    assert!(!cache
        .check(&broker, Some("app"), &topic, &Access::Produce)
        .await
        .unwrap());
    broker
        .grant_namespace_permission(&ns, "app", [AuthAction::Produce].into())
        .await
        .unwrap();
    // The cached refusal is dropped because the grant moved the permissions version.
    assert!(cache
        .check(&broker, Some("app"), &topic, &Access::Produce)
        .await
        .unwrap());
    broker
        .revoke_namespace_permission(&ns, "app")
        .await
        .unwrap();
    assert!(!cache
        .check(&broker, Some("app"), &topic, &Access::Produce)
        .await
        .unwrap());

    // Authorization off: everyone may do everything, with or without a role.
    let dir2 = tempfile::tempdir().unwrap();
    let open = Broker::open(
        config(dir2.path()),
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    assert!(open
        .check_access(None, &topic, &Access::Admin)
        .await
        .unwrap());
    assert!(AccessCache::default()
        .check(&open, Some("x"), &topic, &Access::Produce)
        .await
        .unwrap());
}
