//! In-process integration tests: a real broker over a temp dir and an in-memory metadata store,
//! the Kafka listener on 127.0.0.1:0, and a minimal client built from kafka-protocol messages.
//! Includes the raw-socket bad-input tests: each bad connection is closed (or answered with the
//! right error) and another client keeps being served.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use magnetar_testkit::kafka::{
    closed_within, read_frame, topic_name as name, KafkaClient as Client,
};
use magnetar_testkit::{wait_until, TestBroker};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The kit's broker with its Kafka listener on 127.0.0.1:0.
async fn start() -> (TestBroker, String) {
    let mut server = TestBroker::start().await;
    let addr = server.serve_kafka(|_| {}).await.to_string();
    (server, addr)
}

/// True when the server closed the connection (read returns EOF or reset) within 5 s.
async fn is_closed(stream: &mut TcpStream) -> bool {
    closed_within(stream, Duration::from_secs(5)).await
}

fn batch(count: i64, base_ts: i64, producer: Option<(i64, i32)>) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: producer.map_or(-1, |p| p.0),
            producer_epoch: producer.map_or(-1, |_| 0),
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: producer.map_or(i as i32 - 1, |p| p.1 + i as i32),
            timestamp: base_ts + i * 10,
            key: None,
            value: Some(Bytes::from(format!("value-{i}"))),
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

fn produce_request(topic: &str, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

async fn produce(client: &mut Client, topic: &str, records: Bytes) -> (i16, i64) {
    let response: ProduceResponse = client
        .call(ApiKey::Produce, 9, &produce_request(topic, records, -1))
        .await;
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
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

async fn list_offset(client: &mut Client, topic: &str, timestamp: i64) -> (i16, i64) {
    let request = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(name(topic))
        .with_partitions(vec![
            ListOffsetsPartition::default().with_timestamp(timestamp)
        ])]);
    let response: ListOffsetsResponse = client.call(ApiKey::ListOffsets, 7, &request).await;
    let p = &response.topics[0].partitions[0];
    (p.error_code, p.offset)
}

#[tokio::test]
async fn produce_fetch_list_offsets_round_trip() {
    let (mut server, addr) = start().await;
    let mut client = Client::connect(&addr).await;
    let versions: ApiVersionsResponse = client
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(versions.error_code, 0);
    // Consumer groups and transactions are served (by the coordinators); WriteTxnMarkers
    // (broker-to-broker) is not.
    assert!(versions
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::FindCoordinator as i16));
    assert!(versions
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::AddPartitionsToTxn as i16));
    assert!(!versions
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::WriteTxnMarkers as i16));

    assert_eq!(
        produce(&mut client, "orders", batch(3, 1000, None)).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut client, "orders", batch(4, 2000, None)).await,
        (0, 3)
    );
    // The other two name forms address the same topic.
    assert_eq!(
        produce(&mut client, "public/default/orders", batch(1, 3000, None)).await,
        (0, 7)
    );
    assert_eq!(
        produce(
            &mut client,
            "persistent://public/default/orders",
            batch(1, 4000, None)
        )
        .await,
        (0, 8)
    );

    // A fetch offset inside the second batch returns that whole batch (base offset 3) and more.
    let response: FetchResponse = client
        .call(ApiKey::Fetch, 12, &fetch_request("orders", 4, 100))
        .await;
    let p = &response.responses[0].partitions[0];
    assert_eq!(
        (p.error_code, p.high_watermark, p.log_start_offset),
        (0, 9, 0)
    );
    let mut records = p.records.clone().unwrap();
    let mut offsets = Vec::new();
    while !records.is_empty() {
        let decoded = RecordBatchDecoder::decode(&mut records).unwrap();
        offsets.extend(decoded.records.iter().map(|r| r.offset));
    }
    assert_eq!(offsets, vec![3, 4, 5, 6, 7, 8]);

    assert_eq!(list_offset(&mut client, "orders", -2).await, (0, 0));
    assert_eq!(list_offset(&mut client, "orders", -1).await, (0, 9));
    assert_eq!(list_offset(&mut client, "orders", 2015).await, (0, 5));
    assert_eq!(list_offset(&mut client, "orders", -3).await, (0, 8));
    assert_eq!(list_offset(&mut client, "orders", 99_999).await, (0, -1));

    // Out of range.
    let response: FetchResponse = client
        .call(ApiKey::Fetch, 12, &fetch_request("orders", 100, 0))
        .await;
    assert_eq!(response.responses[0].partitions[0].error_code, 1);

    // Metadata v12 lists it under the name a client used and with the node as leader.
    let response: MetadataResponse = client
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    let topic = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("orders"))
        .unwrap();
    assert_eq!(topic.partitions.len(), 1);
    assert!(!topic.topic_id.is_nil());
    // Fetch v13+ addresses the topic by that id.
    let mut by_id = fetch_request("orders", 0, 0);
    by_id.topics[0].topic_id = topic.topic_id;
    let response: FetchResponse = client.call(ApiKey::Fetch, 13, &by_id).await;
    assert_eq!(response.responses[0].partitions[0].error_code, 0);
    assert!(response.responses[0].partitions[0].records.is_some());
    server.stop().await;
}

#[tokio::test]
async fn idempotent_duplicates_get_the_original_offset_and_bad_crc_is_refused() {
    let (mut server, addr) = start().await;
    let mut client = Client::connect(&addr).await;
    let init: InitProducerIdResponse = client
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default().with_transaction_timeout_ms(1000),
        )
        .await;
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    assert_eq!(
        produce(&mut client, "idem", batch(2, 0, Some((pid, 0)))).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut client, "idem", batch(3, 0, Some((pid, 2)))).await,
        (0, 2)
    );
    assert_eq!(
        produce(&mut client, "idem", batch(2, 0, Some((pid, 0)))).await,
        (0, 0)
    );
    assert_eq!(list_offset(&mut client, "idem", -1).await, (0, 5));
    // A gap in sequence numbers.
    assert_eq!(
        produce(&mut client, "idem", batch(1, 0, Some((pid, 9))))
            .await
            .0,
        45
    );

    let mut corrupt = batch(2, 0, None).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(
        produce(&mut client, "idem", Bytes::from(corrupt)).await.0,
        2
    );
    let mut old = batch(1, 0, None).to_vec();
    old[16] = 1;
    // magic 1 in Produce v3+: INVALID_RECORD, as Kafka 4 answers
    assert_eq!(produce(&mut client, "idem", Bytes::from(old)).await.0, 87);
    // The connection is still fine.
    assert_eq!(list_offset(&mut client, "idem", -1).await, (0, 5));

    // A transactional id is refused clearly.
    let txn = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))));
    let init: InitProducerIdResponse = client.call(ApiKey::InitProducerId, 4, &txn).await;
    assert_ne!(init.error_code, 0);
    server.stop().await;
}

#[tokio::test]
async fn acks_zero_gets_no_response_and_order_is_kept() {
    let (mut server, addr) = start().await;
    let mut client = Client::connect(&addr).await;
    // Pipeline: acks=0 produce, then a ListOffsets; the first response is the ListOffsets one.
    client
        .send(
            ApiKey::Produce,
            9,
            &produce_request("quiet", batch(2, 0, None), 0),
        )
        .await;
    let request = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(name("quiet"))
        .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])]);
    let id = client.send(ApiKey::ListOffsets, 7, &request).await;
    let response: ListOffsetsResponse = client.receive(ApiKey::ListOffsets, 7, id).await;
    assert_eq!(response.topics[0].partitions[0].offset, 2);
    server.stop().await;
}

#[tokio::test]
async fn long_poll_is_woken_by_an_append() {
    let (mut server, addr) = start().await;
    let mut consumer = Client::connect(&addr).await;
    let mut producer = Client::connect(&addr).await;
    assert_eq!(
        produce(&mut producer, "poll", batch(1, 0, None)).await,
        (0, 0)
    );
    let started = Instant::now();
    let id = consumer
        .send(ApiKey::Fetch, 12, &fetch_request("poll", 1, 10_000))
        .await;
    // The fetch has nothing at offset 1: wait until it waits on the partition's end.
    let log = server
        .broker
        .partition(&magnetar_broker::TopicPartition {
            topic: server.broker.parse_topic("poll").unwrap(),
            partition: 0,
        })
        .await
        .unwrap();
    wait_until("the fetch long-polls the partition", || {
        log.end_waiters() > 0
    })
    .await;
    assert_eq!(
        produce(&mut producer, "poll", batch(2, 0, None)).await,
        (0, 1)
    );
    let response: FetchResponse = consumer.receive(ApiKey::Fetch, 12, id).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(response.responses[0].partitions[0].records.is_some());
    // With nothing to read, max_wait_ms bounds the wait.
    let started = Instant::now();
    let _: FetchResponse = consumer
        .call(ApiKey::Fetch, 12, &fetch_request("poll", 3, 300))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    server.stop().await;
}

#[tokio::test]
async fn admin_apis() {
    let (mut server, addr) = start().await;
    let mut client = Client::connect(&addr).await;
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name("admin"))
        .with_num_partitions(2)
        .with_replication_factor(-1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("retention.ms"))
            .with_value(Some(StrBytes::from_static_str("60000")))])]);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &create).await;
    assert_eq!(
        response.topics[0].error_code, 0,
        "{:?}",
        response.topics[0].error_message
    );
    assert_eq!(response.topics[0].num_partitions, 2);
    let again: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 4, &create).await;
    assert_eq!(again.topics[0].error_code, 36);

    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let describe =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("admin"))]);
    let response: DescribeConfigsResponse =
        client.call(ApiKey::DescribeConfigs, 4, &describe).await;
    assert_eq!(
        response.results[0].error_code, 0,
        "{:?}",
        response.results[0].error_message
    );
    let configs = &response.results[0].configs;
    assert!(!configs.is_empty(), "{configs:?}");
    let retention = configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(
        (retention.value.as_deref(), retention.config_source),
        (Some("60000"), 1)
    );
    let cleanup = configs
        .iter()
        .find(|c| c.name.as_str() == "cleanup.policy")
        .unwrap();
    assert_eq!(
        (cleanup.value.as_deref(), cleanup.config_source),
        (Some("delete"), 5)
    );
    assert!(
        configs.iter().all(|c| c.documentation.is_none()),
        "documentation only when asked"
    );
    // With include_documentation every key is documented; a key with no effect here says so.
    let documented: DescribeConfigsResponse = client
        .call(
            ApiKey::DescribeConfigs,
            4,
            &describe.clone().with_include_documentation(true),
        )
        .await;
    let configs = &documented.results[0].configs;
    assert!(configs
        .iter()
        .all(|c| c.documentation.as_deref().is_some_and(|d| !d.is_empty())));
    let min_isr = configs
        .iter()
        .find(|c| c.name.as_str() == "min.insync.replicas")
        .unwrap();
    assert_eq!(min_isr.value.as_deref(), Some("1"));
    assert!(min_isr
        .documentation
        .as_deref()
        .unwrap()
        .contains("no effect in Magnetar"));

    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let alter = |key: &'static str, value: &'static str| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("admin"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str(key))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_static_str(value)))]),
        ])
    };
    let response: IncrementalAlterConfigsResponse = client
        .call(
            ApiKey::IncrementalAlterConfigs,
            1,
            &alter("max.message.bytes", "100"),
        )
        .await;
    assert_eq!(response.responses[0].error_code, 0);
    let response: IncrementalAlterConfigsResponse = client
        .call(
            ApiKey::IncrementalAlterConfigs,
            1,
            &alter("no.such.key", "1"),
        )
        .await;
    assert_eq!(response.responses[0].error_code, 40);
    // The new max.message.bytes applies to produce.
    assert_eq!(
        produce(&mut client, "admin", batch(10, 0, None)).await.0,
        10
    );

    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    let grow =
        CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
            .with_name(name("admin"))
            .with_count(4)]);
    let response: CreatePartitionsResponse = client.call(ApiKey::CreatePartitions, 3, &grow).await;
    assert_eq!(response.results[0].error_code, 0);
    let response: CreatePartitionsResponse = client.call(ApiKey::CreatePartitions, 3, &grow).await;
    assert_eq!(response.results[0].error_code, 37);

    assert_eq!(
        produce(&mut client, "trim", batch(5, 0, None)).await,
        (0, 0)
    );
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    let trim = DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
        .with_name(name("trim"))
        .with_partitions(vec![DeleteRecordsPartition::default().with_offset(5)])]);
    let response: DeleteRecordsResponse = client.call(ApiKey::DeleteRecords, 2, &trim).await;
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert!(p.low_watermark <= 5);

    let delete = DeleteTopicsRequest::default().with_topic_names(vec![name("admin")]);
    let response: DeleteTopicsResponse = client.call(ApiKey::DeleteTopics, 5, &delete).await;
    assert_eq!(response.responses[0].error_code, 0);
    let response: DeleteTopicsResponse = client.call(ApiKey::DeleteTopics, 5, &delete).await;
    assert_eq!(response.responses[0].error_code, 3);

    let cluster: DescribeClusterResponse = client
        .call(
            ApiKey::DescribeCluster,
            1,
            &DescribeClusterRequest::default(),
        )
        .await;
    assert_eq!(cluster.brokers.len(), 1);
    server.stop().await;
}

async fn raw(addr: &str, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

#[tokio::test]
async fn bad_input_closes_only_that_connection() {
    let (mut server, addr) = start().await;
    let mut good = Client::connect(&addr).await;

    // A 2 GiB frame length: closed before anything is allocated.
    let mut s = raw(&addr, &0x7fff_ffffi32.to_be_bytes()).await;
    assert!(is_closed(&mut s).await);
    // A negative length.
    let mut s = raw(&addr, &(-5i32).to_be_bytes()).await;
    assert!(is_closed(&mut s).await);
    // Unknown api key.
    let mut s = raw(&addr, &[0, 0, 0, 10, 0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0, 0]).await;
    assert!(is_closed(&mut s).await);
    // Garbage after a valid Metadata v1 header: a topic count larger than the frame.
    let mut frame = vec![0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff];
    frame.extend_from_slice(&i32::MAX.to_be_bytes());
    frame.extend_from_slice(b"garbage");
    let mut bytes = (frame.len() as i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&frame);
    let mut s = raw(&addr, &bytes).await;
    assert!(is_closed(&mut s).await);
    // Truncated frame: the client announces 100 bytes, sends 10 and hangs up.
    let s = raw(&addr, &[0, 0, 0, 100, 0, 18, 0, 3, 0, 0, 0, 1, 0, 0]).await;
    drop(s);
    // ApiVersions of an unknown version: answered in v0 with UNSUPPORTED_VERSION.
    let mut s = raw(&addr, &[0, 0, 0, 10, 0, 18, 0, 99, 0, 0, 0, 7, 0, 0]).await;
    let body = read_frame(&mut s).await.unwrap();
    assert_eq!(&body[..4], &7i32.to_be_bytes());
    let mut rest = body.slice(4..);
    let versions = ApiVersionsResponse::decode(&mut rest, 0).unwrap();
    assert_eq!(versions.error_code, 35);

    // The good client is still served.
    let response: MetadataResponse = good
        .call(ApiKey::Metadata, 1, &MetadataRequest::default())
        .await;
    assert_eq!(response.brokers.len(), 1);
    server.stop().await;
}

/// A broker error under a SCRAM credential change keeps its Kafka mapping: a metadata store that
/// closed (the broker shutting down) answers the retriable NOT_LEADER_OR_FOLLOWER, not
/// UNKNOWN_SERVER_ERROR.
#[tokio::test]
async fn scram_credential_change_during_shutdown_is_retriable() {
    use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
    use magnetar_metadata::MetadataStore;
    let (server, addr) = start().await;
    let mut client = Client::connect(&addr).await;
    server.store.close().await.unwrap();
    let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
        ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_static_str("alice"))
            .with_mechanism(1)
            .with_iterations(4096)
            .with_salt(Bytes::from_static(b"0123456789abcdef"))
            .with_salted_password(Bytes::from(vec![7u8; 32])),
    ]);
    let response: AlterUserScramCredentialsResponse = client
        .call(ApiKey::AlterUserScramCredentials, 0, &request)
        .await;
    let result = &response.results[0];
    assert_eq!(
        result.error_code,
        kafka_protocol::ResponseError::NotLeaderOrFollower.code(),
        "{:?}",
        result.error_message
    );
    server.shutdown.cancel();
}
