use std::sync::Arc;

use magnetar_broker::{BrokerConfig, SystemClock};
use magnetar_metadata::MemoryStore;
use serde_json::json;

use super::*;
use crate::types::{SchemaReference, SchemaType};

async fn store(dir: &std::path::Path, config: SchemaConfig) -> SchemaStore {
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let broker = Broker::open(
        BrokerConfig::for_data_dir(dir.to_path_buf()),
        metadata,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    SchemaStore::new(broker, config)
}

fn user(extra: &[serde_json::Value]) -> Schema {
    let mut fields = vec![json!({"name": "name", "type": "string"})];
    fields.extend_from_slice(extra);
    Schema::new(
        SchemaType::Avro,
        json!({"type": "record", "name": "User", "fields": fields}).to_string(),
    )
}

#[tokio::test]
async fn register_versions_ids_and_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), SchemaConfig::default()).await;
    let subject = s.subject("orders-value").unwrap();
    assert_eq!(
        subject,
        Subject::topic_value(s.broker().parse_topic("orders").unwrap())
    );
    assert_eq!(s.subject_name(&subject), "orders-value");
    let v1 = s
        .register(&subject, &user(&[]), RegisterOptions::default())
        .await
        .unwrap();
    assert_eq!((v1.id, v1.version, v1.created), (1, 1, true));
    // The same content again (other whitespace): the same version, nothing written.
    let mut again = user(&[]);
    again.data = format!("  {}  ", again.text()).into_bytes();
    let same = s
        .register(&subject, &again, RegisterOptions::default())
        .await
        .unwrap();
    assert_eq!((same.id, same.version, same.created), (1, 1, false));
    // A compatible change (BACKWARD by default): version 2, id 2.
    let v2 = s
        .register(
            &subject,
            &user(&[json!({"name": "age", "type": "int", "default": 0})]),
            RegisterOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((v2.id, v2.version), (2, 2));
    // The same schema under another subject shares its id.
    let other = s.subject("free-subject").unwrap();
    assert_eq!(other, Subject::Named("free-subject".into()));
    let shared = s
        .register(&other, &user(&[]), RegisterOptions::default())
        .await
        .unwrap();
    assert_eq!((shared.id, shared.version), (1, 1));
    assert_eq!(s.find(&subject, &user(&[])).await.unwrap(), Some((1, 1)));
    let latest = s
        .version(&subject, VersionSelector::Latest, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.version, 2);
    assert_eq!(s.schema_by_id(1).await.unwrap().unwrap(), user(&[]));
    let subjects = s.subjects(false).await.unwrap();
    assert_eq!(subjects.len(), 2);
    let mut of_id = s.subjects_of_id(1).await.unwrap();
    of_id.sort();
    assert_eq!(of_id.len(), 2);
}

#[tokio::test]
async fn incompatible_registration_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), SchemaConfig::default()).await;
    let subject = s.subject("t-value").unwrap();
    s.register(&subject, &user(&[]), RegisterOptions::default())
        .await
        .unwrap();
    let breaking = user(&[json!({"name": "age", "type": "int"})]);
    let reasons = s.check(&subject, &breaking, None).await.unwrap();
    assert!(!reasons.is_empty());
    let err = s
        .register(&subject, &breaking, RegisterOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, SchemaError::Incompatible(ref m) if m.contains("age")),
        "{err}"
    );
    assert_eq!(s.versions(&subject, true).await.unwrap().unwrap().len(), 1);
    assert!(s.schema_by_id(2).await.unwrap().is_none());
    // With NONE on the subject it goes in.
    s.set_subject_compatibility(&subject, Some(Compatibility::None))
        .await
        .unwrap();
    assert!(s.check(&subject, &breaking, None).await.unwrap().is_empty());
    let v2 = s
        .register(&subject, &breaking, RegisterOptions::default())
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    // Auto-update off: the subject keeps its versions.
    let err = s
        .register(
            &subject,
            &user(&[json!({"name": "x", "type": "int", "default": 1})]),
            RegisterOptions {
                allow_new_version: false,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SchemaError::Incompatible(_)));
}

#[tokio::test]
async fn namespace_policy_sets_the_level_of_topic_subjects() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), SchemaConfig::default()).await;
    let topic = s.broker().parse_topic("public/default/evolving").unwrap();
    let subject = Subject::topic_value(topic.clone());
    assert_eq!(
        s.effective_compatibility(&subject).await.unwrap(),
        Compatibility::Backward
    );
    s.broker()
        .update_namespace_policies(&topic.namespace, |p| {
            p.schema_compatibility_strategy = Some("ALWAYS_INCOMPATIBLE".into())
        })
        .await
        .unwrap();
    assert_eq!(
        s.effective_compatibility(&subject).await.unwrap(),
        Compatibility::AlwaysIncompatible
    );
    s.register(&subject, &user(&[]), RegisterOptions::default())
        .await
        .unwrap();
    let err = s
        .register(
            &subject,
            &user(&[json!({"name": "x", "type": "int", "default": 1})]),
            RegisterOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SchemaError::Incompatible(_)));
    // The subject's own level wins over the namespace's.
    s.set_subject_compatibility(&subject, Some(Compatibility::Full))
        .await
        .unwrap();
    assert_eq!(
        s.effective_compatibility(&subject).await.unwrap(),
        Compatibility::Full
    );
}

#[tokio::test]
async fn soft_and_hard_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), SchemaConfig::default()).await;
    let subject = s.subject("d").unwrap();
    s.register(&subject, &user(&[]), RegisterOptions::default())
        .await
        .unwrap();
    s.register(
        &subject,
        &user(&[json!({"name": "x", "type": "int", "default": 1})]),
        RegisterOptions::default(),
    )
    .await
    .unwrap();
    // A live version cannot be deleted permanently.
    let err = s
        .delete_version(&subject, VersionSelector::Number(1), true)
        .await
        .unwrap_err();
    assert!(matches!(err, SchemaError::NotSoftDeleted(_)));
    assert_eq!(
        s.delete_version(&subject, VersionSelector::Number(1), false)
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.versions(&subject, false).await.unwrap().unwrap().len(), 1);
    assert_eq!(s.versions(&subject, true).await.unwrap().unwrap().len(), 2);
    assert_eq!(
        s.delete_version(&subject, VersionSelector::Number(1), true)
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.delete_subject(&subject, false).await.unwrap(), vec![2]);
    assert!(s.versions(&subject, false).await.unwrap().is_none());
    assert!(s.subjects(false).await.unwrap().is_empty());
    assert_eq!(s.subjects(true).await.unwrap(), vec![subject.clone()]);
    // Re-registering after a soft delete continues the version numbers.
    let again = s
        .register(&subject, &user(&[]), RegisterOptions::default())
        .await
        .unwrap();
    assert_eq!(again.version, 3);
    s.delete_subject(&subject, false).await.unwrap();
    assert_eq!(s.delete_subject(&subject, true).await.unwrap(), vec![2, 3]);
    assert!(s.subjects(true).await.unwrap().is_empty());
    let fresh = s
        .register(&subject, &user(&[]), RegisterOptions::default())
        .await
        .unwrap();
    assert_eq!((fresh.version, fresh.id), (1, 1));
}

#[tokio::test]
async fn limits_and_bad_input_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = SchemaConfig {
        schema_bytes_max: 200,
        versions_per_subject_max: 2,
        references_max: 2,
        ..SchemaConfig::default()
    };
    let s = store(dir.path(), config).await;
    let subject = s.subject("limits").unwrap();
    let huge = Schema::new(SchemaType::Avro, format!("\"{}\"", "x".repeat(300)));
    assert!(matches!(
        s.register(&subject, &huge, RegisterOptions::default())
            .await,
        Err(SchemaError::LimitReached(_))
    ));
    let malformed = Schema::new(SchemaType::Avro, "{\"type\": ");
    assert!(matches!(
        s.register(&subject, &malformed, RegisterOptions::default())
            .await,
        Err(SchemaError::Invalid(_))
    ));
    assert!(s.subjects(true).await.unwrap().is_empty());
    s.set_subject_compatibility(&subject, Some(Compatibility::None))
        .await
        .unwrap();
    for t in ["int", "long"] {
        s.register(
            &subject,
            &Schema::new(SchemaType::Avro, format!("\"{t}\"")),
            RegisterOptions::default(),
        )
        .await
        .unwrap();
    }
    assert!(matches!(
        s.register(
            &subject,
            &Schema::new(SchemaType::Avro, "\"string\""),
            RegisterOptions::default()
        )
        .await,
        Err(SchemaError::LimitReached(_))
    ));
    // A reference to something that does not exist.
    let mut dangling = Schema::new(SchemaType::Avro, "\"int\"");
    dangling.references.push(SchemaReference {
        name: "x".into(),
        subject: "nowhere".into(),
        version: 1,
    });
    assert!(matches!(
        s.register(
            &s.subject("r").unwrap(),
            &dangling,
            RegisterOptions::default()
        )
        .await,
        Err(SchemaError::Invalid(_))
    ));
}

#[tokio::test]
async fn references_resolve_named_types_and_loops_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), SchemaConfig::default()).await;
    let address = Schema::new(
        SchemaType::Avro,
        json!({"type": "record", "name": "Address", "namespace": "ex", "fields": [{"name": "city", "type": "string"}]}).to_string(),
    );
    let address_subject = s.subject("address").unwrap();
    s.register(&address_subject, &address, RegisterOptions::default())
        .await
        .unwrap();
    let mut person = Schema::new(
        SchemaType::Avro,
        json!({"type": "record", "name": "Person", "namespace": "ex", "fields": [{"name": "home", "type": "ex.Address"}]}).to_string(),
    );
    person.references.push(SchemaReference {
        name: "ex.Address".into(),
        subject: "address".into(),
        version: 1,
    });
    let registered = s
        .register(
            &s.subject("person").unwrap(),
            &person,
            RegisterOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(registered.version, 1);
    // Without the reference, the named type is unknown.
    person.references.clear();
    assert!(matches!(
        s.register(
            &s.subject("person2").unwrap(),
            &person,
            RegisterOptions::default()
        )
        .await,
        Err(SchemaError::Invalid(_))
    ));
    // A loop cannot be made through `register` (a reference must exist first and ids are
    // immutable), but records written by other means must not hang or overflow the resolver:
    // "a" v1 is id 100 referencing "b" v1, which is id 101 referencing "a" v1.
    let md = s.broker().metadata().clone();
    for (subject, id, other) in [("a", 100u64, "b"), ("b", 101, "a")] {
        let mut schema = Schema::new(SchemaType::Avro, "\"int\"");
        schema.references.push(SchemaReference {
            name: other.into(),
            subject: other.into(),
            version: 1,
        });
        let id_record = IdRecord {
            format_version: 1,
            id,
            schema,
        };
        md.put(
            &format!("{ROOT}/ids/{id}"),
            SchemaStore::to_json(&id_record).unwrap(),
            Expect::Any,
        )
        .await
        .unwrap();
        let record = SubjectRecord {
            format_version: 1,
            versions: vec![VersionEntry {
                version: 1,
                id,
                deleted: false,
                created_ms: 0,
            }],
            next_version: 2,
            compatibility: None,
            mode: None,
        };
        md.put(
            &SchemaStore::subject_key(&Subject::Named(subject.into())),
            SchemaStore::to_json(&record).unwrap(),
            Expect::Any,
        )
        .await
        .unwrap();
    }
    let mut looped = Schema::new(SchemaType::Avro, "\"int\"");
    looped.references.push(SchemaReference {
        name: "a".into(),
        subject: "a".into(),
        version: 1,
    });
    let err = s
        .register(
            &s.subject("c").unwrap(),
            &looped,
            RegisterOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reference loop"), "{err}");
    assert!(s
        .versions(&s.subject("c").unwrap(), true)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn global_config_and_modes() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), SchemaConfig::default()).await;
    s.set_global_compatibility(Some(Compatibility::Forward))
        .await
        .unwrap();
    let subject = s.subject("m").unwrap();
    assert_eq!(
        s.effective_compatibility(&subject).await.unwrap(),
        Compatibility::Forward
    );
    s.set_global_mode(Some(Mode::ReadOnly)).await.unwrap();
    assert!(matches!(
        s.register(&subject, &user(&[]), RegisterOptions::default())
            .await,
        Err(SchemaError::ReadOnly(_))
    ));
    s.set_subject_mode(&subject, Some(Mode::ReadWrite))
        .await
        .unwrap();
    s.register(&subject, &user(&[]), RegisterOptions::default())
        .await
        .unwrap();
    // Key subjects of topics are the topic's key record.
    let key = s.subject("t/ns/orders-key").unwrap();
    assert!(matches!(key, Subject::Topic { key: true, .. }));
    assert_eq!(s.subject_name(&key), "t/ns/orders-key");
    assert!(s.subject("").is_err());
    assert!(s.subject(&"x".repeat(300)).is_err());
}

#[test]
fn subject_segments_round_trip() {
    for name in ["a", "a.b", "..", "x/y z%", "ünï"] {
        let encoded = encode_segment(name);
        assert!(encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'%'));
        assert_eq!(decode_segment(&encoded).as_deref(), Some(name));
    }
}

#[tokio::test]
async fn deleting_a_topics_schemas_removes_its_value_and_key_subjects_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), SchemaConfig::default()).await;
    let value = s.subject("orders-value").unwrap();
    let key = s.subject("orders-key").unwrap();
    let other = s.subject("payments-value").unwrap();
    let id = s
        .register(&value, &user(&[]), RegisterOptions::default())
        .await
        .unwrap()
        .id;
    let string = Schema::new(SchemaType::Avro, "\"string\"");
    for subject in [&key, &other] {
        s.register(subject, &string, RegisterOptions::default())
            .await
            .unwrap();
    }
    let topic = s.broker().parse_topic("orders").unwrap();
    assert_eq!(s.delete_topic_schemas(&topic).await.unwrap(), 2);
    assert_eq!(s.versions(&value, true).await.unwrap(), None);
    assert_eq!(s.versions(&key, true).await.unwrap(), None);
    assert!(s.versions(&other, false).await.unwrap().is_some());
    assert_eq!(s.subjects(true).await.unwrap(), vec![other]);
    // Ids stay readable; a topic without schemas is no error.
    assert!(s.schema_by_id(id).await.unwrap().is_some());
    assert_eq!(s.delete_topic_schemas(&topic).await.unwrap(), 0);
    // The re-created topic takes any schema.
    let v = s
        .register(
            &value,
            &Schema::new(SchemaType::Avro, "\"int\""),
            RegisterOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(v.version, 1);
}

#[tokio::test]
async fn counters_count_registrations_and_compatibility_checks() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), SchemaConfig::default()).await;
    let subject = s.subject("counted-value").unwrap();
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    s.register(&subject, &user(&[]), RegisterOptions::default())
        .await
        .unwrap();
    // The same schema again writes nothing and checks nothing.
    s.register(&subject, &user(&[]), RegisterOptions::default())
        .await
        .unwrap();
    s.register(
        &subject,
        &user(&[json!({"name": "age", "type": "int", "default": 0})]),
        RegisterOptions::default(),
    )
    .await
    .unwrap();
    let refused = s
        .register(
            &subject,
            &user(&[json!({"name": "score", "type": "int"})]),
            RegisterOptions::default(),
        )
        .await;
    assert!(matches!(refused, Err(SchemaError::Incompatible(_))));
    let c = s.counters();
    assert_eq!(get(&c.registrations), 2);
    assert_eq!(get(&c.compatibility_checks), 2);
    assert_eq!(get(&c.compatibility_failures), 1);
    assert_eq!(s.ids_assigned().await.unwrap(), 2);
    c.record_registry_request(200);
    c.record_registry_request(409);
    c.record_registry_request(200);
    assert_eq!(c.registry_requests(), vec![(200, 2), (409, 1)]);
}

#[tokio::test]
async fn a_referenced_version_is_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), SchemaConfig::default()).await;
    let address = s.subject("address").unwrap();
    let record = |name: &str, field_type: &str| {
        Schema::new(
            SchemaType::Avro,
            json!({"type": "record", "name": name, "namespace": "ex",
                   "fields": [{"name": "f", "type": field_type}]})
            .to_string(),
        )
    };
    s.register(
        &address,
        &record("Address", "string"),
        RegisterOptions::default(),
    )
    .await
    .unwrap();
    let person = s.subject("person").unwrap();
    let mut p = record("Person", "ex.Address");
    p.references.push(SchemaReference {
        name: "ex.Address".into(),
        subject: "address".into(),
        version: 1,
    });
    s.register(&person, &p, RegisterOptions::default())
        .await
        .unwrap();
    for result in [
        s.delete_version(&address, VersionSelector::Number(1), false)
            .await
            .map(|_| ()),
        s.delete_subject(&address, false).await.map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(SchemaError::Referenced(_))),
            "{result:?}"
        );
    }
    // Once the referring subject is gone, the version may go.
    s.delete_subject(&person, false).await.unwrap();
    s.delete_version(&address, VersionSelector::Number(1), false)
        .await
        .unwrap();
}

#[tokio::test]
async fn import_mode_keeps_the_given_ids_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), SchemaConfig::default()).await;
    let subject = s.subject("migrated").unwrap();
    // Not in IMPORT mode: an id cannot be given.
    assert!(matches!(
        s.import(&subject, &user(&[]), 40, Some(3)).await,
        Err(SchemaError::ReadOnly(_))
    ));
    s.check_import_allowed(None, false).await.unwrap();
    s.set_global_mode(Some(Mode::Import)).await.unwrap();
    let r = s.import(&subject, &user(&[]), 40, Some(3)).await.unwrap();
    assert_eq!((r.id, r.version, r.created), (40, 3, true));
    // Again: the same; the id with other content, or the version with another id: refused.
    assert!(
        !s.import(&subject, &user(&[]), 40, Some(3))
            .await
            .unwrap()
            .created
    );
    let incompatible = user(&[json!({"name": "score", "type": "int"})]);
    assert!(s
        .import(&subject, &incompatible, 40, Some(4))
        .await
        .is_err());
    assert!(s
        .import(&subject, &incompatible, 41, Some(3))
        .await
        .is_err());
    // No compatibility check in IMPORT mode; without a version, the next one.
    let r = s.import(&subject, &incompatible, 41, None).await.unwrap();
    assert_eq!((r.id, r.version), (41, 4));
    // A plain registration names no id: refused in IMPORT mode.
    assert!(matches!(
        s.register(
            &subject,
            &user(&[json!({"name": "x", "type": "int", "default": 0})]),
            RegisterOptions::default()
        )
        .await,
        Err(SchemaError::ReadOnly(_))
    ));
    // The registry is no longer empty.
    assert!(s.check_import_allowed(None, false).await.is_err());
    s.check_import_allowed(None, true).await.unwrap();
    // Back to READWRITE: new ids come after the imported ones.
    s.set_global_mode(Some(Mode::ReadWrite)).await.unwrap();
    let other = s.subject("fresh").unwrap();
    let r = s
        .register(
            &other,
            &Schema::new(SchemaType::Avro, "\"long\""),
            RegisterOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.id, 42);
    assert_eq!(
        s.versions(&subject, false)
            .await
            .unwrap()
            .unwrap()
            .iter()
            .map(|v| (v.version, v.id))
            .collect::<Vec<_>>(),
        vec![(3, 40), (4, 41)]
    );
}
