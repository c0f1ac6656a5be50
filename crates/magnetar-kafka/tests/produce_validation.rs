//! Produce validation over a real socket (issue #22): a batch that lies about its records is
//! refused with Kafka's error, KIP-467's message and record index, and the partition's log end
//! offset does not move; valid batches of every codec are stored and served byte-exact.
//! Also the fetch policy for a stored entry that cannot be served (see `api/fetch.rs`).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;
use magnetar_broker::Broker;
use magnetar_kafka::KafkaConfig;
use magnetar_testkit::kafka::{topic_name as name, KafkaClient};
use magnetar_testkit::TestBroker;

/// The kit's broker with its Kafka listener under the test's `KafkaConfig` (advertising the
/// listener's address).
struct Server {
    kit: TestBroker,
    addr: String,
    broker: Arc<Broker>,
}

impl Server {
    async fn start(kafka: KafkaConfig) -> Self {
        let mut kit = TestBroker::start().await;
        let addr = kit
            .serve_kafka(move |listener| {
                *listener = KafkaConfig {
                    advertised_host: listener.advertised_host.clone(),
                    advertised_port: listener.advertised_port,
                    ..kafka
                }
            })
            .await
            .to_string();
        let broker = kit.broker.clone();
        Server { kit, addr, broker }
    }

    async fn stop(mut self) {
        self.kit.stop().await;
    }
}

/// The kit's raw client with this file's produce, log-end and fetch calls.
struct Client(KafkaClient);

impl Client {
    async fn connect(addr: &str) -> Self {
        Client(KafkaClient::connect(addr).await)
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        self.0.call(api, version, request).await
    }

    async fn produce(&mut self, topic: &str, records: Bytes) -> PartitionProduceResponse {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])]);
        let response: ProduceResponse = self.call(ApiKey::Produce, 9, &request).await;
        response.responses[0].partition_responses[0].clone()
    }

    async fn log_end(&mut self, topic: &str) -> i64 {
        let request = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])]);
        let response: ListOffsetsResponse = self.call(ApiKey::ListOffsets, 7, &request).await;
        let p = &response.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        p.offset
    }

    /// (error code, records) of one fetch of partition 0 at `offset`.
    async fn fetch(&mut self, topic: &str, offset: i64) -> (i16, Bytes) {
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let response: FetchResponse = self.call(ApiKey::Fetch, 11, &request).await;
        let p = &response.responses[0].partitions[0];
        (p.error_code, p.records.clone().unwrap_or_default())
    }
}

fn encode(count: i64, compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            // Advancing with offsets keeps kafka-protocol's encoder writing one batch.
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}-").repeat(20))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Sets the batch header's record count (bytes 57..61), keeping the CRC valid.
fn with_count(batch: &Bytes, count: i32, last_offset_delta: i32) -> Bytes {
    let mut b = batch.to_vec();
    b[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    fix_crc(&mut b);
    Bytes::from(b)
}

/// Batches in a fetch response's records, split by their length fields.
fn batches(records: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= records.len() {
        let len = i32::from_be_bytes([
            records[at + 8],
            records[at + 9],
            records[at + 10],
            records[at + 11],
        ]) as usize;
        out.push(records.slice(at..at + 12 + len));
        at += 12 + len;
    }
    out
}

#[tokio::test]
async fn lying_batches_are_refused_and_the_log_end_does_not_move() {
    let server = Server::start(KafkaConfig::default()).await;
    let mut client = Client::connect(&server.addr).await;
    let topic = "lies";
    assert_eq!(
        client
            .produce(topic, encode(3, Compression::None))
            .await
            .error_code,
        0
    );
    assert_eq!(client.log_end(topic).await, 3);

    let one = encode(1, Compression::None);
    // The batch: record count 2^31 - 1 over one real record.
    let lying = with_count(&one, i32::MAX, 0);
    let refused = client.produce(topic, lying).await;
    assert_eq!(refused.error_code, ResponseError::InvalidRecord.code());
    let message = refused
        .error_message
        .as_deref()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("count of records"), "{message}");
    // The same lie with a consistent last offset delta: the records are missing.
    let lying = with_count(&one, i32::MAX, i32::MAX - 1);
    assert_eq!(
        client.produce(topic, lying).await.error_code,
        ResponseError::InvalidRecord.code()
    );
    let lying = with_count(&encode(1, Compression::Gzip), i32::MAX, i32::MAX - 1);
    assert_eq!(
        client.produce(topic, lying).await.error_code,
        ResponseError::InvalidRecord.code()
    );
    // A record length of 0x7fffffff (first record's length varint at byte 61): INVALID_RECORD
    // naming record 0.
    let varint_end = 61 + one[61..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
    let mut long = BytesMut::from(&one[..61]);
    long.put_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f]);
    long.put_slice(&one[varint_end..]);
    let len = (long.len() - 12) as i32;
    long[8..12].copy_from_slice(&len.to_be_bytes());
    fix_crc(&mut long);
    let refused = client.produce(topic, long.freeze()).await;
    assert_eq!(refused.error_code, ResponseError::InvalidRecord.code());
    assert_eq!(refused.record_errors.len(), 1);
    assert_eq!(refused.record_errors[0].batch_index, 0);
    // Compression codec 7.
    let mut codec7 = one.to_vec();
    codec7[22] |= 0x07;
    fix_crc(&mut codec7);
    assert_eq!(
        client.produce(topic, Bytes::from(codec7)).await.error_code,
        ResponseError::UnsupportedCompressionType.code()
    );
    // A gzip batch whose body is not gzip.
    let mut garbage = one.to_vec();
    garbage[22] |= 0x01;
    fix_crc(&mut garbage);
    assert_eq!(
        client.produce(topic, Bytes::from(garbage)).await.error_code,
        ResponseError::CorruptMessage.code()
    );
    // A good batch followed by a lying one in the same partition: neither is appended.
    let both = [encode(2, Compression::None), with_count(&one, 5, 4)].concat();
    assert_eq!(
        client.produce(topic, Bytes::from(both)).await.error_code,
        ResponseError::InvalidRecord.code()
    );

    assert_eq!(
        client.log_end(topic).await,
        3,
        "refused batches moved the log end"
    );
    let (code, records) = client.fetch(topic, 0).await;
    assert_eq!(code, 0);
    assert_eq!(batches(&records).len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn valid_batches_of_every_codec_are_stored_byte_exact() {
    let server = Server::start(KafkaConfig::default()).await;
    let mut client = Client::connect(&server.addr).await;
    let topic = "codecs";
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut sent = Vec::new();
    for (i, codec) in codecs.into_iter().enumerate() {
        let batch = encode(16, codec);
        let response = client.produce(topic, batch.clone()).await;
        assert_eq!(response.error_code, 0, "{codec:?}");
        assert_eq!(response.base_offset, 16 * i as i64);
        sent.push(batch);
    }
    let (code, records) = client.fetch(topic, 0).await;
    assert_eq!(code, 0);
    let stored = batches(&records);
    assert_eq!(stored.len(), sent.len());
    for (i, (stored, sent)) in stored.iter().zip(&sent).enumerate() {
        // The broker writes the base offset (outside the CRC); every other byte is as sent.
        assert_eq!(
            i64::from_be_bytes(stored[..8].try_into().unwrap()),
            16 * i as i64
        );
        assert_eq!(stored[8..], sent[8..], "batch {i}");
    }
    server.stop().await;
}

/// `compression.type=zstd`: batches of other codecs are stored re-compressed with zstd (records
/// and offsets intact); a zstd batch is stored byte-exact.
#[tokio::test]
async fn compression_type_recompresses_batches_of_other_codecs() {
    let server = Server::start(KafkaConfig::default()).await;
    let mut client = Client::connect(&server.addr).await;
    let topic = "recompressed";
    let configs = [("compression.type".to_string(), "zstd".to_string())].into();
    server
        .broker
        .create_topic(&topic_partition(topic).topic, Some(1), configs)
        .await
        .unwrap();
    let sent = [
        encode(16, Compression::None),
        encode(16, Compression::Gzip),
        encode(16, Compression::Zstd),
    ];
    for (i, batch) in sent.iter().enumerate() {
        let response = client.produce(topic, batch.clone()).await;
        assert_eq!(response.error_code, 0, "batch {i}");
        assert_eq!(response.base_offset, 16 * i as i64);
    }
    let (code, records) = client.fetch(topic, 0).await;
    assert_eq!(code, 0);
    let stored = batches(&records);
    assert_eq!(stored.len(), 3);
    for (i, (stored, sent)) in stored.iter().zip(&sent).enumerate() {
        let attributes = i16::from_be_bytes([stored[21], stored[22]]);
        assert_eq!(attributes & 0x07, 4, "batch {i} is stored in zstd");
        let got = magnetar_format::kafka::decode_batch(stored).unwrap();
        let want = magnetar_format::kafka::decode_batch(sent).unwrap();
        assert_eq!(got.records, want.records, "batch {i}");
        assert_eq!(got.base_offset, 16 * i as i64);
    }
    assert_eq!(
        stored[2][8..],
        sent[2][8..],
        "a zstd batch is kept byte-exact"
    );
    server.stop().await;
}

/// A Pulsar-format entry that does not convert (garbage metadata), appended as an older
/// version or a corrupt disk could have left it, between two valid Kafka batches.
async fn poisoned_partition(server: &Server, client: &mut Client, topic: &str) {
    assert_eq!(
        client
            .produce(topic, encode(1, Compression::None))
            .await
            .error_code,
        0
    );
    let namespace = magnetar_broker::NamespaceName::new("public", "default").unwrap();
    let tp = magnetar_broker::TopicPartition {
        topic: magnetar_broker::TopicName::parse(topic, &namespace).unwrap(),
        partition: 0,
    };
    let log = server.broker.partition(&tp).await.unwrap();
    let outcome = log
        .append(magnetar_broker::AppendRequest {
            payload: Bytes::from_static(b"\x00\x00\x00\x05garbage, not a pulsar entry"),
            message_count: 2,
            max_timestamp_ms: 0,
            format: magnetar_broker::PayloadFormat::Pulsar,
            producer: None,
            first_index_at: None,
        })
        .await
        .unwrap();
    assert_eq!(outcome.first_index, 1);
    let after = client.produce(topic, encode(1, Compression::None)).await;
    assert_eq!((after.error_code, after.base_offset), (0, 3));
}

/// (base offset, last offset delta, record count) of each batch.
fn shapes(records: &Bytes) -> Vec<(i64, i32, i32)> {
    batches(records)
        .iter()
        .map(|b| {
            (
                i64::from_be_bytes(b[..8].try_into().unwrap()),
                i32::from_be_bytes(b[23..27].try_into().unwrap()),
                i32::from_be_bytes(b[57..61].try_into().unwrap()),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_unreadable_entry_is_skipped_as_an_empty_batch_by_default() {
    let server = Server::start(KafkaConfig::default()).await;
    let mut client = Client::connect(&server.addr).await;
    poisoned_partition(&server, &mut client, "poison-skip").await;
    let (code, records) = client.fetch("poison-skip", 0).await;
    assert_eq!(code, 0);
    // The valid batch, an empty batch over offsets 1..=2, the valid batch at 3.
    assert_eq!(shapes(&records), vec![(0, 0, 1), (1, 1, 0), (3, 0, 1)]);
    for batch in batches(&records) {
        assert_eq!(
            crc32c::crc32c(&batch[21..]),
            u32::from_be_bytes(batch[17..21].try_into().unwrap())
        );
    }
    // A consumer positioned on the bad entry reaches the valid one.
    let (code, records) = client.fetch("poison-skip", 1).await;
    assert_eq!(code, 0);
    assert_eq!(shapes(&records), vec![(1, 1, 0), (3, 0, 1)]);
    server.stop().await;
}

#[tokio::test]
async fn an_unreadable_entry_fails_the_fetch_at_its_offset_under_fail() {
    let server = Server::start(KafkaConfig {
        unreadable_entry_policy: magnetar_kafka::UnreadableEntryPolicy::Fail,
        ..KafkaConfig::default()
    })
    .await;
    let mut client = Client::connect(&server.addr).await;
    poisoned_partition(&server, &mut client, "poison-fail").await;
    // What comes before it is served.
    let (code, records) = client.fetch("poison-fail", 0).await;
    assert_eq!(code, 0);
    assert_eq!(shapes(&records), vec![(0, 0, 1)]);
    // At its offset: CORRUPT_MESSAGE, on every fetch, until the consumer seeks past it.
    for _ in 0..2 {
        let (code, _) = client.fetch("poison-fail", 1).await;
        assert_eq!(code, ResponseError::CorruptMessage.code());
    }
    let (code, records) = client.fetch("poison-fail", 3).await;
    assert_eq!(code, 0);
    assert_eq!(shapes(&records), vec![(3, 0, 1)]);
    // An operator marks the entry skipped (by any index inside it): its offsets are then
    // served as an empty batch under `fail` too, and the mark is in the topic's metadata.
    let tp = topic_partition("poison-fail");
    assert_eq!(server.broker.skip_entry(&tp, 2).await.unwrap(), 1..3);
    assert_eq!(
        server.broker.skipped_entries(&tp).await.unwrap(),
        vec![1..3]
    );
    let (code, records) = client.fetch("poison-fail", 1).await;
    assert_eq!(code, 0);
    assert_eq!(shapes(&records), vec![(1, 1, 0), (3, 0, 1)]);
    // Unmarked: the policy applies again.
    assert!(server.broker.unskip_entry(&tp, 1).await.unwrap());
    let (code, _) = client.fetch("poison-fail", 1).await;
    assert_eq!(code, ResponseError::CorruptMessage.code());
    // An index past the end cannot be marked.
    assert!(server.broker.skip_entry(&tp, 4).await.is_err());
    server.stop().await;
}

fn topic_partition(topic: &str) -> magnetar_broker::TopicPartition {
    let namespace = magnetar_broker::NamespaceName::new("public", "default").unwrap();
    magnetar_broker::TopicPartition {
        topic: magnetar_broker::TopicName::parse(topic, &namespace).unwrap(),
        partition: 0,
    }
}

#[tokio::test]
async fn an_entry_corrupt_on_disk_answers_corrupt_message_until_an_operator_skips_it() {
    let server = Server::start(KafkaConfig::default()).await;
    let mut client = Client::connect(&server.addr).await;
    let batch = encode(1, Compression::None);
    for expected in 0..3 {
        let r = client.produce("rot", batch.clone()).await;
        assert_eq!((r.error_code, r.base_offset), (0, expected));
    }
    // Flip one byte inside the second entry's payload, in the segment file itself.
    let tp = topic_partition("rot");
    let log = server.broker.partition(&tp).await.unwrap();
    // The storage layout (magnetar-storage): `{base index:020}.seg`, entries of a 54-byte header
    // and the payload (here the batch as produced).
    const ENTRY_HEADER_LEN: usize = 54;
    let path = log
        .dir()
        .expect("local ledger")
        .join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&path).unwrap();
    let entry_len = ENTRY_HEADER_LEN + batch.len();
    let at = entry_len + ENTRY_HEADER_LEN + batch.len() - 1;
    bytes[at] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let (code, records) = client.fetch("rot", 0).await;
    assert_eq!(code, 0);
    assert_eq!(
        shapes(&records),
        vec![(0, 0, 1)],
        "what precedes it is served"
    );
    let (code, _) = client.fetch("rot", 1).await;
    assert_eq!(code, ResponseError::CorruptMessage.code());
    // The header is still readable, so the operator can mark it; the fetch then passes it.
    assert_eq!(server.broker.skip_entry(&tp, 1).await.unwrap(), 1..2);
    let (code, records) = client.fetch("rot", 1).await;
    assert_eq!(code, 0);
    assert_eq!(shapes(&records), vec![(1, 0, 0)]);
    let (code, records) = client.fetch("rot", 2).await;
    assert_eq!(code, 0);
    assert_eq!(shapes(&records), vec![(2, 0, 1)]);
    server.stop().await;
}

/// DescribeProducers (KIP-664) over the wire: an idempotent producer's epoch, last sequence and
/// last batch timestamp as the partition remembers them; an unknown partition's error.
#[tokio::test]
async fn describe_producers_lists_the_idempotent_producer() {
    let server = Server::start(KafkaConfig::default()).await;
    let mut client = Client::connect(&server.addr).await;
    let init: InitProducerIdResponse = client
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transaction_timeout_ms(-1)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await;
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    for (first, count) in [(0i32, 3i64), (3, 4)] {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: pid,
                producer_epoch: init.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: first + i as i32,
                timestamp: 1_700_000_000_000 + i64::from(first) + i,
                key: None,
                value: Some(Bytes::from_static(b"v")),
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
        let produced = client.produce("producers", buf.freeze()).await;
        assert_eq!(produced.error_code, 0);
    }
    let request = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(name("producers"))
            .with_partition_indexes(vec![0, 7]),
    ]);
    let response: DescribeProducersResponse =
        client.call(ApiKey::DescribeProducers, 0, &request).await;
    let partitions = &response.topics[0].partitions;
    assert_eq!(partitions[0].error_code, 0);
    let producers = &partitions[0].active_producers;
    assert_eq!(producers.len(), 1, "{producers:?}");
    let p = &producers[0];
    assert_eq!(p.producer_id.0, pid);
    assert_eq!(p.producer_epoch, i32::from(init.producer_epoch));
    assert_eq!(p.last_sequence, 6);
    assert_eq!(p.last_timestamp, 1_700_000_000_006);
    assert_eq!(p.current_txn_start_offset, -1, "not transactional");
    assert_eq!(
        partitions[1].error_code,
        ResponseError::UnknownTopicOrPartition.code(),
        "partition 7 of a one-partition topic"
    );
    server.stop().await;
}
