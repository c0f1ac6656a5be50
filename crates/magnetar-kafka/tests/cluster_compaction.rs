//! Log compaction in cluster mode: a broker of a testkit `Cluster` (shared WAL over an
//! in-memory object store and metadata store) serves a `cleanup.policy=compact` topic over the
//! Kafka protocol; once its shared ledger has sealed segments, the operator's trigger compacts
//! them and a Fetch from offset 0 returns each key's latest value, at its original offset.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use magnetar_broker::compaction::{CleanerLimits, CompactionState};
use magnetar_broker::TopicPartition;
use magnetar_testkit::cluster::Cluster;
use magnetar_testkit::eventually;
use magnetar_testkit::kafka::{topic_name as name, KafkaClient as Client};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const KEYS: u64 = 10;
const ROUNDS: u64 = 12;

/// One record batch holding one keyed record.
fn keyed_batch(key: u64, value: &str) -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_000,
        key: Some(Bytes::from(format!("key-{key}"))),
        value: Some(Bytes::from(value.to_string())),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

async fn produce(client: &mut Client, topic: &str, records: Bytes) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request).await;
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Every record from `offset` to the high watermark: (offset, key, value).
async fn fetch_all(client: &mut Client, topic: &str) -> Vec<(i64, String, String)> {
    let mut out = Vec::new();
    let mut offset = 0i64;
    for _ in 0..1000 {
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let response: FetchResponse = client.call(ApiKey::Fetch, 12, &request).await;
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch at {offset}");
        let Some(mut records) = p.records.clone().filter(|r| !r.is_empty()) else {
            break;
        };
        while !records.is_empty() {
            let batch = RecordBatchDecoder::decode(&mut records).unwrap();
            for r in &batch.records {
                assert!(r.offset >= offset, "offsets only increase");
                out.push((
                    r.offset,
                    String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(),
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
                ));
                offset = r.offset + 1;
            }
        }
        if offset >= p.high_watermark {
            break;
        }
    }
    out
}

#[tokio::test]
async fn a_compacted_topic_in_cluster_mode_is_compacted_and_fetched_latest_values() {
    let mut cluster = Cluster::new();
    // Small segments: a few hundred bytes per entry, sealed every ~4 KiB.
    cluster.wal.seal_bytes = 4096;
    let node = cluster.start_node("b1").await;
    let broker = node.broker.clone();
    broker.set_compaction(
        Arc::new(magnetar_format::compaction::EntryCompaction),
        CleanerLimits::default(),
    );
    let topic = broker
        .parse_topic("persistent://public/default/compacted")
        .unwrap();
    broker
        .create_topic(
            &topic,
            Some(1),
            BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        )
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(magnetar_kafka::serve(
        listener,
        broker.clone(),
        magnetar_kafka::KafkaConfig {
            advertised_host: "127.0.0.1".into(),
            advertised_port: addr.port(),
            ..magnetar_kafka::KafkaConfig::default()
        },
        shutdown.clone(),
    ));
    let mut client = Client::connect(addr).await;

    // Each round updates every key; the value names its round, key and offset.
    let padding = "x".repeat(200);
    for round in 0..ROUNDS {
        for key in 0..KEYS {
            let offset = round * KEYS + key;
            let value = format!("r{round}-k{key}-o{offset}-{padding}");
            let (error, base) = produce(&mut client, "compacted", keyed_batch(key, &value)).await;
            assert_eq!((error, base), (0, offset as i64));
        }
    }
    let tp = TopicPartition {
        topic: topic.clone(),
        partition: 0,
    };
    let log = broker.partition(&tp).await.unwrap();
    assert!(
        log.is_shared(),
        "cluster mode serves it from the shared WAL"
    );
    let metadata = broker.topic(&topic).await.unwrap().unwrap();
    eventually("sealed segments to compact", async || {
        broker
            .cleanable_bytes(&log, &metadata)
            .is_some_and(|b| b > 4096)
    })
    .await;

    // The operator's trigger (the admin API's PUT .../compaction).
    assert!(broker.start_compaction(&tp).await.unwrap());
    eventually("the compaction to finish", async || {
        broker.compaction_status(&tp).state != CompactionState::Running
    })
    .await;
    let status = broker.compaction_status(&tp);
    assert_eq!(status.state, CompactionState::Success, "{status:?}");
    let outcome = status.last_outcome.clone().unwrap();
    assert!(outcome.passes > 0, "{outcome:?}");
    assert!(outcome.records_removed > 0, "{outcome:?}");
    assert!(status.bytes_reclaimed > 0);
    assert!(status.last_compaction_ms.is_some());
    let cleaned = outcome.cleaned_through as i64;
    assert!(cleaned > KEYS as i64, "{outcome:?}");
    assert_eq!(log.compacted_below(), outcome.cleaned_through);

    // Fetch from 0: original offsets, only the latest value of each key below the cleaned
    // part, and everything above it.
    let records = fetch_all(&mut client, "compacted").await;
    assert!(
        records.len() < (KEYS * ROUNDS) as usize,
        "{}",
        records.len()
    );
    let mut latest: HashMap<String, i64> = HashMap::new();
    for (offset, key, value) in &records {
        assert!(
            value.contains(&format!("-o{offset}-")),
            "{offset}: {value} at its original offset"
        );
        latest.insert(key.clone(), *offset);
    }
    assert_eq!(latest.len(), KEYS as usize);
    for (key, offset) in &latest {
        let k: u64 = key.trim_start_matches("key-").parse().unwrap();
        assert_eq!(
            *offset as u64,
            (ROUNDS - 1) * KEYS + k,
            "the latest value of {key}"
        );
    }
    let below: Vec<_> = records.iter().filter(|(o, _, _)| *o < cleaned).collect();
    let mut seen = HashMap::new();
    for (offset, key, _) in &below {
        assert!(
            seen.insert(key.clone(), *offset).is_none(),
            "{key} twice below the cleaned offset {cleaned}"
        );
    }
    let above = records.iter().filter(|(o, _, _)| *o >= cleaned).count() as i64;
    assert_eq!(
        above,
        (KEYS * ROUNDS) as i64 - cleaned,
        "nothing above it changed"
    );

    // The background pass finds nothing more to do (the dirty ratio is 0).
    let summary = broker.enforce_compaction().await.unwrap();
    assert_eq!(summary.failures, 0, "{summary:?}");

    shutdown.cancel();
    let _ = server.await;
}
