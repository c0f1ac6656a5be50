//! Connection lifecycle and pipelining over raw sockets: idle and half-sent connections are closed
//! after their timeouts (and counted by reason), a long-polling Fetch is not idle, requests sent
//! back to back are answered in order with their appends in order, requests run concurrently on
//! one connection up to the in-flight cap, and an idempotent producer's pipelined batches with a
//! retried one keep exactly-once order.
//!
//! Timeouts here are short and every wait is bounded; no test asserts how long anything took.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use magnetar_kafka::KafkaConfig;
use magnetar_testkit::kafka::{closed_within, frame, receive, topic_name as name};
use magnetar_testkit::TestBroker;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The kit's broker with its Kafka listener, recording into a metrics registry.
struct Server {
    kit: TestBroker,
    addr: String,
    metrics: Arc<magnetar_metrics::Metrics>,
}

impl Server {
    async fn start(configure: impl FnOnce(&mut KafkaConfig)) -> Self {
        let mut kit = TestBroker::start().await;
        let metrics = magnetar_metrics::Metrics::new(
            kit.broker.clone(),
            magnetar_metrics::MetricsSettings::default(),
        );
        let addr = kit
            .serve_kafka(|kafka| {
                kafka.metrics = Some(metrics.clone());
                configure(kafka);
            })
            .await
            .to_string();
        Server { kit, addr, metrics }
    }

    /// `magnetar_server_connections_closed_total` of the Kafka listener for `reason`.
    async fn closed(&self, reason: &str) -> u64 {
        let text = self
            .metrics
            .render(magnetar_metrics::Format::Prometheus)
            .await;
        let series = format!(
            "magnetar_server_connections_closed_total{{protocol=\"kafka\",reason=\"{reason}\"}} "
        );
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    }

    async fn stop(mut self) {
        self.kit.stop().await;
    }
}

/// Waits (bounded) until the server closes the connection; false if it stays open.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    closed_within(stream, Duration::from_secs(20)).await
}

fn batch(values: &[&str], producer: Option<(i64, i32)>) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: producer.map_or(-1, |p| p.0),
            producer_epoch: producer.map_or(-1, |_| 0),
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: producer.map_or(-1, |p| p.1 + i as i32),
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::from(value.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn produce_request(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

fn metadata_request(topic: &str) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(name(topic)))]))
        .with_allow_auto_topic_creation(true)
}

/// The record values of a fetch response's first partition, in offset order.
fn fetched_values(response: &FetchResponse) -> Vec<String> {
    let partition = &response.responses[0].partitions[0];
    let Some(records) = partition.records.clone() else {
        return Vec::new();
    };
    let mut records = records;
    let mut values = Vec::new();
    while !records.is_empty() {
        let set = RecordBatchDecoder::decode(&mut records).unwrap();
        for record in set.records {
            values.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
        }
    }
    values
}

/// Creates `topic` (auto-creation through Metadata) on a connection of its own.
async fn create_topic(addr: &str, topic: &str) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&frame(ApiKey::Metadata, 9, 1, &metadata_request(topic)))
        .await
        .unwrap();
    let response: MetadataResponse = receive(&mut stream, ApiKey::Metadata, 9, 1).await;
    assert_eq!(response.topics[0].error_code, 0);
}

#[tokio::test]
async fn an_idle_connection_is_closed_but_a_long_poll_is_not_idle() {
    let server = Server::start(|c| c.connections_max_idle_ms = 300).await;
    create_topic(&server.addr, "idle").await;
    // Nothing sent: closed after the idle timeout.
    let mut idle = TcpStream::connect(&server.addr).await.unwrap();
    assert!(closed_by_server(&mut idle).await);
    // A Fetch long-polling for longer than the idle timeout is answered on an open connection.
    let mut polling = TcpStream::connect(&server.addr).await.unwrap();
    polling
        .write_all(&frame(
            ApiKey::Fetch,
            12,
            7,
            &fetch_request("idle", 0, 1500),
        ))
        .await
        .unwrap();
    let response: FetchResponse = receive(&mut polling, ApiKey::Fetch, 12, 7).await;
    assert_eq!(response.responses[0].partitions[0].error_code, 0);
    // And once answered, it is idle again.
    assert!(closed_by_server(&mut polling).await);
    assert!(server.closed("idle_timeout").await >= 2);
    server.stop().await;
}

#[tokio::test]
async fn a_half_sent_frame_is_closed_after_the_request_read_timeout() {
    let server = Server::start(|c| {
        c.request_read_timeout_ms = 300;
        c.connections_max_idle_ms = 600_000;
    })
    .await;
    // A 1000-byte frame announced, 10 bytes sent.
    let mut half = TcpStream::connect(&server.addr).await.unwrap();
    half.write_all(&1000u32.to_be_bytes()).await.unwrap();
    half.write_all(&[0u8; 10]).await.unwrap();
    // Only the length prefix, half of it.
    let mut prefix = TcpStream::connect(&server.addr).await.unwrap();
    prefix.write_all(&[0u8, 0]).await.unwrap();
    assert!(closed_by_server(&mut half).await);
    assert!(closed_by_server(&mut prefix).await);
    assert_eq!(server.closed("request_read_timeout").await, 2);
    // Another client is served as usual.
    create_topic(&server.addr, "still-served").await;
    server.stop().await;
}

#[tokio::test]
async fn five_produces_back_to_back_are_answered_and_appended_in_order() {
    let server = Server::start(|_| {}).await;
    create_topic(&server.addr, "pipelined").await;
    let mut stream = TcpStream::connect(&server.addr).await.unwrap();
    let mut requests = BytesMut::new();
    for i in 0..5 {
        let values = [format!("r{i}-a"), format!("r{i}-b")];
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let request = produce_request("pipelined", batch(&values, None));
        requests.extend_from_slice(&frame(ApiKey::Produce, 9, 100 + i, &request));
    }
    // One write: the five requests arrive together.
    stream.write_all(&requests).await.unwrap();
    for i in 0..5 {
        let response: ProduceResponse = receive(&mut stream, ApiKey::Produce, 9, 100 + i).await;
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 0);
        assert_eq!(
            partition.base_offset,
            2 * i64::from(i),
            "appended in request order"
        );
    }
    stream
        .write_all(&frame(
            ApiKey::Fetch,
            12,
            200,
            &fetch_request("pipelined", 0, 0),
        ))
        .await
        .unwrap();
    let response: FetchResponse = receive(&mut stream, ApiKey::Fetch, 12, 200).await;
    let expected: Vec<String> = (0..5)
        .flat_map(|i| [format!("r{i}-a"), format!("r{i}-b")])
        .collect();
    assert_eq!(fetched_values(&response), expected);
    server.stop().await;
}

/// A long-polling Fetch on an empty partition, then a Produce to it on the same connection: with
/// room for both in flight the Produce runs while the Fetch waits and wakes it (the Fetch answers
/// with the record); without, the Produce starts only after the Fetch gave up (the Fetch answers
/// empty). Responses come in request order either way.
async fn fetch_then_produce(configure: impl FnOnce(&mut KafkaConfig)) -> Vec<String> {
    let server = Server::start(configure).await;
    create_topic(&server.addr, "concurrent").await;
    let mut stream = TcpStream::connect(&server.addr).await.unwrap();
    let mut requests = BytesMut::new();
    requests.extend_from_slice(&frame(
        ApiKey::Fetch,
        12,
        1,
        &fetch_request("concurrent", 0, 3000),
    ));
    requests.extend_from_slice(&frame(
        ApiKey::Produce,
        9,
        2,
        &produce_request("concurrent", batch(&["woke"], None)),
    ));
    stream.write_all(&requests).await.unwrap();
    let fetched: FetchResponse = receive(&mut stream, ApiKey::Fetch, 12, 1).await;
    let produced: ProduceResponse = receive(&mut stream, ApiKey::Produce, 9, 2).await;
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    server.stop().await;
    fetched_values(&fetched)
}

#[tokio::test]
async fn requests_run_concurrently_on_one_connection_up_to_the_inflight_cap() {
    let woke = vec!["woke".to_string()];
    assert_eq!(
        fetch_then_produce(|c| c.max_inflight_requests_per_connection = 2).await,
        woke
    );
    assert_eq!(
        fetch_then_produce(|c| c.max_inflight_requests_per_connection = 1).await,
        Vec::<String>::new()
    );
    // The byte cap: room for the Fetch's frame and 1000 bytes more, then for only the Fetch.
    let fetch_bytes = frame(ApiKey::Fetch, 12, 1, &fetch_request("concurrent", 0, 3000)).len() - 4;
    assert_eq!(
        fetch_then_produce(|c| c.max_inflight_bytes_per_connection = fetch_bytes + 1000).await,
        woke
    );
    assert_eq!(
        fetch_then_produce(|c| c.max_inflight_bytes_per_connection = fetch_bytes).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn an_idempotent_producer_with_five_in_flight_and_a_retry_stays_exactly_once() {
    let server = Server::start(|_| {}).await;
    create_topic(&server.addr, "idem").await;
    let mut stream = TcpStream::connect(&server.addr).await.unwrap();
    stream
        .write_all(&frame(
            ApiKey::InitProducerId,
            4,
            1,
            &InitProducerIdRequest::default().with_transaction_timeout_ms(1000),
        ))
        .await
        .unwrap();
    let init: InitProducerIdResponse = receive(&mut stream, ApiKey::InitProducerId, 4, 1).await;
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    // Five batches of two records in flight at once (sequences 0, 2, 4, 6, 8), then a retry of
    // the third (as a client does when it timed out waiting), then the sixth.
    let batches: Vec<(i32, [String; 2])> = (0..5)
        .map(|i| (2 * i, [format!("b{i}-0"), format!("b{i}-1")]))
        .chain([(4, ["b2-0".to_string(), "b2-1".to_string()])])
        .chain([(10, ["b5-0".to_string(), "b5-1".to_string()])])
        .collect();
    let mut requests = BytesMut::new();
    for (n, (sequence, values)) in batches.iter().enumerate() {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let request = produce_request("idem", batch(&values, Some((pid, *sequence))));
        requests.extend_from_slice(&frame(ApiKey::Produce, 9, 10 + n as i32, &request));
    }
    stream.write_all(&requests).await.unwrap();
    let mut offsets = Vec::new();
    for n in 0..batches.len() {
        let response: ProduceResponse =
            receive(&mut stream, ApiKey::Produce, 9, 10 + n as i32).await;
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 0, "batch {n}");
        offsets.push(partition.base_offset);
    }
    // The retry gets the original's offset; nothing is stored twice.
    assert_eq!(offsets, vec![0, 2, 4, 6, 8, 4, 10]);
    stream
        .write_all(&frame(ApiKey::Fetch, 12, 50, &fetch_request("idem", 0, 0)))
        .await
        .unwrap();
    let response: FetchResponse = receive(&mut stream, ApiKey::Fetch, 12, 50).await;
    let expected: Vec<String> = (0..6)
        .flat_map(|i| [format!("b{i}-0"), format!("b{i}-1")])
        .collect();
    assert_eq!(fetched_values(&response), expected);
    server.stop().await;
}
