//! A broker in process with real ledgers: traffic recorded on partitions and requests recorded by
//! a protocol front end come out of a scrape with the right names, labels and values, in both
//! exposition formats, and the per-partition cap leaves only per-topic series.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use magnetar_broker::{
    AppendRequest, Broker, BrokerConfig, PayloadFormat, SystemClock, TopicPartition,
};
use magnetar_metadata::MemoryStore;
use magnetar_metrics::{Format, Metrics, MetricsSettings, ProtocolMetrics};

/// Samples of a Prometheus 0.0.4 text exposition: name{labels} -> value, plus `# TYPE` lines.
fn parse(text: &str) -> (HashMap<String, f64>, HashMap<String, String>) {
    let mut samples = HashMap::new();
    let mut types = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (key, value) = line.rsplit_once(' ').unwrap();
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            assert!(
                samples.insert(key.to_string(), value).is_none(),
                "duplicate {key}"
            );
        }
    }
    (samples, types)
}

async fn broker(dir: &std::path::Path) -> Arc<Broker> {
    let config = BrokerConfig {
        default_num_partitions: 3,
        ..BrokerConfig::for_data_dir(dir.to_path_buf())
    };
    Broker::open(config, Arc::new(MemoryStore::new()), Arc::new(SystemClock))
        .await
        .unwrap()
}

async fn produce(broker: &Broker, topic: &str, partitions: u32, batches: u32) {
    let name = broker.parse_topic(topic).unwrap();
    broker
        .create_topic(&name, Some(partitions), BTreeMap::new())
        .await
        .unwrap();
    for partition in 0..partitions {
        let log = broker
            .partition(&TopicPartition {
                topic: name.clone(),
                partition,
            })
            .await
            .unwrap();
        for _ in 0..batches {
            log.append(AppendRequest {
                payload: Bytes::from(vec![7u8; 100]),
                message_count: 4,
                max_timestamp_ms: 1,
                format: PayloadFormat::Pulsar,
                producer: None,
                first_index_at: None,
            })
            .await
            .unwrap();
        }
        log.record_out(100, 4);
    }
}

fn kafka_metrics() -> Arc<ProtocolMetrics> {
    Arc::new(ProtocolMetrics::new(
        "kafka",
        &[(0, "Produce"), (1, "Fetch")],
        |code| format!("E{code}"),
    ))
}

#[tokio::test]
async fn a_scrape_reports_requests_traffic_storage_and_process() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path()).await;
    let metrics = Metrics::new(broker.clone(), MetricsSettings::default());
    let kafka = kafka_metrics();
    metrics.register_protocol(kafka.clone());
    metrics.register_protocol(kafka.clone()); // twice is once
    kafka.record(0, Duration::from_millis(3));
    kafka.record(0, Duration::from_millis(3));
    kafka.record(1, Duration::from_secs(2));
    kafka.record_error(0, 3);
    let _connection = kafka.connection_opened();
    produce(&broker, "orders", 2, 3).await;
    broker
        .create_tenant(
            &magnetar_broker::TenantName::new("acme").unwrap(),
            Default::default(),
        )
        .await
        .unwrap();
    broker
        .create_namespace(
            &magnetar_broker::NamespaceName::new("acme", "sales").unwrap(),
            Default::default(),
        )
        .await
        .unwrap();
    produce(&broker, "acme/sales/leads", 1, 1).await;

    let text = metrics.render(Format::Prometheus).await;
    let (s, types) = parse(&text);
    let get = |k: &str| {
        *s.get(k)
            .unwrap_or_else(|| panic!("no sample {k} in\n{text}"))
    };
    assert_eq!(
        types
            .get("magnetar_server_requests_total")
            .map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        get(r#"magnetar_server_requests_total{protocol="kafka",api="Produce"}"#),
        2.0
    );
    assert_eq!(
        get(r#"magnetar_server_requests_total{protocol="kafka",api="Fetch"}"#),
        1.0
    );
    assert_eq!(
        get(
            r#"magnetar_server_request_errors_total{protocol="kafka",api="Produce",code="3",error="E3"}"#
        ),
        1.0
    );
    assert_eq!(
        get(r#"magnetar_server_request_latency_seconds_count{protocol="kafka",api="Produce"}"#),
        2.0
    );
    assert_eq!(
        get(
            r#"magnetar_server_request_latency_seconds_bucket{le="0.005",protocol="kafka",api="Produce"}"#
        ),
        2.0
    );
    assert_eq!(
        get(
            r#"magnetar_server_request_latency_seconds_bucket{le="1.0",protocol="kafka",api="Fetch"}"#
        ),
        0.0
    );
    assert_eq!(
        get(
            r#"magnetar_server_request_latency_seconds_bucket{le="+Inf",protocol="kafka",api="Fetch"}"#
        ),
        1.0
    );
    assert_eq!(
        get(r#"magnetar_server_connections_active{protocol="kafka"}"#),
        1.0
    );
    // Traffic: 2 partitions x 3 batches x (100 bytes, 4 messages) in, one read of each out.
    assert_eq!(
        get(r#"magnetar_topic_bytes_in_total{namespace="public/default",topic="orders"}"#),
        600.0
    );
    assert_eq!(
        get(r#"magnetar_topic_messages_in_total{namespace="public/default",topic="orders"}"#),
        24.0
    );
    assert_eq!(
        get(r#"magnetar_topic_messages_out_total{namespace="public/default",topic="orders"}"#),
        8.0
    );
    assert_eq!(
        get(
            r#"magnetar_partition_bytes_in_total{namespace="public/default",topic="orders",partition="1"}"#
        ),
        300.0
    );
    assert_eq!(
        get(r#"magnetar_topic_bytes_in_total{namespace="acme/sales",topic="acme/sales/leads"}"#),
        100.0
    );
    assert_eq!(get("magnetar_metrics_partition_series_limited"), 0.0);
    assert_eq!(get("magnetar_broker_partitions_open"), 3.0);
    assert_eq!(get("magnetar_broker_append_latency_seconds_count"), 7.0);
    // Storage: every append under `always` was fsynced, and each fsync was timed.
    assert_eq!(get("magnetar_storage_appends_total"), 7.0);
    assert!(get("magnetar_storage_fsync_latency_seconds_count") >= 7.0);
    assert!(get("magnetar_storage_bytes") >= 700.0);
    assert_eq!(get("magnetar_storage_segments"), 3.0);
    assert_eq!(get("magnetar_storage_recovery_truncations_total"), 0.0);
    assert_eq!(get("magnetar_storage_recovery_index_rebuilds_total"), 0.0);
    assert!(get("magnetar_process_resident_memory_bytes") > 0.0);
    assert!(get("magnetar_process_open_fds") > 0.0);
    assert!(text.contains("# TYPE magnetar_process_cpu_seconds_total counter"));
    assert!(!text.contains("# EOF"));

    // The same scrape in OpenMetrics: counter families without `_total`, and an EOF marker.
    let open = metrics.render(Format::OpenMetrics).await;
    assert!(open.ends_with("# EOF\n"));
    assert!(open.contains("# TYPE magnetar_server_requests counter\n"));
    assert!(open.contains(r#"magnetar_server_requests_total{protocol="kafka",api="Produce"} 2"#));
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn beyond_the_cap_only_topic_series_are_exported() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path()).await;
    let metrics = Metrics::new(
        broker.clone(),
        MetricsSettings {
            partition_series_max: 2,
        },
    );
    produce(&broker, "wide", 3, 1).await;
    let text = metrics.render(Format::Prometheus).await;
    let (s, _) = parse(&text);
    assert_eq!(s["magnetar_metrics_partition_series_limited"], 1.0);
    assert!(!text.contains("magnetar_partition_bytes_in_total{"));
    assert_eq!(
        s[r#"magnetar_topic_bytes_in_total{namespace="public/default",topic="wide"}"#],
        300.0
    );
    broker.shutdown().await.unwrap();
}

#[test]
fn accept_header_chooses_the_format() {
    assert_eq!(
        Format::from_accept(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )),
        Format::OpenMetrics
    );
    assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
    assert_eq!(Format::from_accept(None), Format::Prometheus);
    assert!(Format::Prometheus.content_type().starts_with("text/plain"));
}

#[tokio::test]
async fn a_scrape_reports_the_schema_registry() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path()).await;
    let metrics = Metrics::new(broker.clone(), MetricsSettings::default());
    // Without a registry: no schema series.
    let text = metrics.render(Format::Prometheus).await;
    assert!(!text.contains("magnetar_schema_"), "{text}");

    let store = Arc::new(magnetar_schema::SchemaStore::new(
        broker.clone(),
        magnetar_schema::SchemaConfig::default(),
    ));
    metrics.set_schema_store(Some(store.clone()));
    let subject = store.subject("orders-value").unwrap();
    let record = |fields: &str| {
        magnetar_schema::Schema::new(
            magnetar_schema::SchemaType::Avro,
            format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#),
        )
    };
    let options = magnetar_schema::RegisterOptions::default();
    store
        .register(&subject, &record(r#"{"name":"a","type":"int"}"#), options)
        .await
        .unwrap();
    // A new field without a default: not BACKWARD compatible.
    assert!(store
        .register(
            &subject,
            &record(r#"{"name":"a","type":"int"},{"name":"b","type":"int"}"#),
            options
        )
        .await
        .is_err());
    store.counters().record_registry_request(200);
    store.counters().record_registry_request(409);

    let text = metrics.render(Format::Prometheus).await;
    let (s, types) = parse(&text);
    let get = |k: &str| {
        *s.get(k)
            .unwrap_or_else(|| panic!("no sample {k} in\n{text}"))
    };
    assert_eq!(get("magnetar_schema_ids"), 1.0);
    assert_eq!(get("magnetar_schema_registrations_total"), 1.0);
    assert_eq!(get("magnetar_schema_compatibility_checks_total"), 1.0);
    assert_eq!(get("magnetar_schema_compatibility_failures_total"), 1.0);
    assert_eq!(
        get(r#"magnetar_schema_registry_requests_total{status="200"}"#),
        1.0
    );
    assert_eq!(
        get(r#"magnetar_schema_registry_requests_total{status="409"}"#),
        1.0
    );
    assert_eq!(
        types.get("magnetar_schema_ids").map(String::as_str),
        Some("gauge")
    );
    assert_eq!(
        types
            .get("magnetar_schema_registrations_total")
            .map(String::as_str),
        Some("counter")
    );
}
