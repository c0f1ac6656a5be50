//! In-process protocol tests on 127.0.0.1:0: a broker over a memory metadata store and a temp
//! data dir, a raw client speaking frames with this crate's own codec.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use magnetar_broker::{AppendRequest, Broker, BrokerConfig, PayloadFormat, TopicPartition};
use magnetar_format::kafka::{encode_batch, Header, Record};
use magnetar_pulsar::frame::{make_body, split_body, FRAME_SIZE_MAX_BYTES};
use magnetar_pulsar::proto::base_command::Type;
use magnetar_pulsar::proto::command_ack::AckType;
use magnetar_pulsar::proto::command_subscribe::{InitialPosition, SubType};
use magnetar_pulsar::proto::*;
use magnetar_pulsar::PulsarConfig;
use magnetar_testkit::pulsar::PulsarClient as Client;
use magnetar_testkit::TestBroker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The kit's broker with this file's settings (non-partitioned auto-created topics, Pulsar's
/// default cluster and service URLs) and its Pulsar listener; (server, broker, address).
async fn start() -> (TestBroker, Arc<Broker>, std::net::SocketAddr) {
    let mut server = TestBroker::builder()
        .config(|c| {
            *c = BrokerConfig {
                auto_topic_creation_partitioned: false,
                partitions_max: 16,
                producers_per_partition_max: 100,
                ..BrokerConfig::for_data_dir(c.data_dir.clone())
            }
        })
        .open()
        .await;
    let addr = server.serve_pulsar(PulsarConfig::default()).await;
    let broker = server.broker.clone();
    (server, broker, addr)
}

fn metadata(seq: u64, batch: Option<i32>) -> MessageMetadata {
    MessageMetadata {
        producer_name: "p".into(),
        sequence_id: seq,
        publish_time: 1000 + seq,
        num_messages_in_batch: batch,
        ..Default::default()
    }
}

fn batch_payload(values: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        let single = SingleMessageMetadata {
            payload_size: v.len() as i32,
            ..Default::default()
        };
        let size = prost::Message::encoded_len(&single);
        out.extend_from_slice(&(size as u32).to_be_bytes());
        prost::Message::encode(&single, &mut out).unwrap();
        out.extend_from_slice(v.as_bytes());
    }
    out
}

async fn subscribe(c: &mut Client, topic: &str, sub: &str, kind: SubType) {
    c.send(BaseCommand {
        r#type: Type::Subscribe as i32,
        subscribe: Some(CommandSubscribe {
            topic: topic.into(),
            subscription: sub.into(),
            sub_type: kind as i32,
            consumer_id: 1,
            request_id: 10,
            initial_position: Some(InitialPosition::Earliest as i32),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    let f = c.next().await;
    assert_eq!(f.command.r#type, Type::Success as i32, "{:?}", f.command);
    c.send(BaseCommand {
        r#type: Type::Flow as i32,
        flow: Some(CommandFlow {
            consumer_id: 1,
            message_permits: 100,
        }),
        ..Default::default()
    })
    .await;
}

#[tokio::test]
async fn produce_consume_ack_with_message_ids_over_the_index() {
    let (mut server, broker, addr) = start().await;
    let topic = "persistent://public/default/in-process";
    let mut c = Client::connect(addr).await;
    c.send(BaseCommand {
        r#type: Type::Producer as i32,
        producer: Some(CommandProducer {
            topic: topic.into(),
            producer_id: 7,
            request_id: 1,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    let f = c.next().await;
    let name = f.command.producer_success.unwrap().producer_name;
    assert!(name.starts_with("standalone-"), "{name}");

    // A batch of two, then a single message.
    let send = |seq: u64, n: i32| BaseCommand {
        r#type: Type::Send as i32,
        send: Some(CommandSend {
            producer_id: 7,
            sequence_id: seq,
            num_messages: Some(n),
            ..Default::default()
        }),
        ..Default::default()
    };
    c.send_payload(
        send(0, 2),
        &make_body(&metadata(0, Some(2)), &batch_payload(&["a", "b"])),
    )
    .await;
    c.send_payload(send(1, 1), &make_body(&metadata(1, None), b"c"))
        .await;
    let mut entries = Vec::new();
    for seq in 0..2 {
        let r = c.next().await.command.send_receipt.unwrap();
        assert_eq!(r.sequence_id, seq);
        entries.push(r.message_id.unwrap().entry_id);
    }
    // Entry ids are the entries' first message indexes.
    assert_eq!(entries, vec![0, 2]);

    subscribe(&mut c, topic, "s", SubType::Shared).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let f = c.next().await;
        let m = f.command.message.unwrap();
        let (meta, _) = split_body(&f.payload.unwrap().body).unwrap();
        ids.push((m.message_id.entry_id, meta.num_messages_in_batch));
    }
    assert_eq!(ids, vec![(0, Some(2)), (2, None)]);

    // Batch index ack of message 1 of entry 0 (ack set: bit 0 still unacked), then entry 2.
    let ack = |entry: u64, ack_set: Vec<i64>| BaseCommand {
        r#type: Type::Ack as i32,
        ack: Some(CommandAck {
            consumer_id: 1,
            ack_type: AckType::Individual as i32,
            message_id: vec![MessageIdData {
                ledger_id: 0,
                entry_id: entry,
                ack_set,
                batch_size: Some(2),
                ..Default::default()
            }],
            request_id: Some(99),
            ..Default::default()
        }),
        ..Default::default()
    };
    c.send(ack(0, vec![0b01])).await;
    assert_eq!(c.next().await.command.r#type, Type::AckResponse as i32);
    c.send(ack(2, vec![])).await;
    assert_eq!(c.next().await.command.r#type, Type::AckResponse as i32);
    let log = broker
        .partition(&TopicPartition {
            topic: broker.parse_topic(topic).unwrap(),
            partition: 0,
        })
        .await
        .unwrap();
    // Only message index 0 (batch index 0 of entry 0) is left.
    let sub = log.subscription("s").unwrap();
    assert_eq!(sub.backlog(), 1);
    let cursor = sub.cursor();
    assert_eq!(cursor.mark_delete_index, 0);
    assert!(cursor.is_acked(1) && cursor.is_acked(2));

    server.stop().await;
}

#[tokio::test]
async fn kafka_entries_reach_pulsar_consumers_converted_and_cached() {
    let (mut server, broker, addr) = start().await;
    let topic = broker.parse_topic("mixed").unwrap();
    broker
        .create_topic(&topic, None, BTreeMap::new())
        .await
        .unwrap();
    let log = broker
        .partition(&TopicPartition {
            topic: topic.clone(),
            partition: 0,
        })
        .await
        .unwrap();
    let records = vec![
        Record {
            offset_delta: 0,
            timestamp_ms: 5000,
            key: Some(bytes::Bytes::from_static(b"k")),
            value: Some(bytes::Bytes::from_static(b"v0")),
            headers: vec![Header {
                key: "h".into(),
                value: Some(bytes::Bytes::from_static(b"x")),
            }],
        },
        Record {
            offset_delta: 1,
            timestamp_ms: 5001,
            key: None,
            value: None,
            headers: vec![],
        },
    ];
    log.append(AppendRequest {
        payload: encode_batch(0, &records),
        message_count: 2,
        max_timestamp_ms: 5001,
        format: PayloadFormat::Kafka,
        producer: None,
        first_index_at: Some(0),
    })
    .await
    .unwrap();

    for sub in ["a", "b"] {
        let mut c = Client::connect(addr).await;
        subscribe(&mut c, &topic.to_string(), sub, SubType::Exclusive).await;
        let f = c.next().await;
        assert_eq!(f.command.message.unwrap().message_id.entry_id, 0);
        let (meta, payload) = split_body(&f.payload.unwrap().body).unwrap();
        assert_eq!(meta.num_messages_in_batch, Some(2));
        let size = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
        let single: SingleMessageMetadata = prost::Message::decode(&payload[4..4 + size]).unwrap();
        assert_eq!(single.partition_key.as_deref(), Some("k"));
        assert_eq!(single.event_time, Some(5000));
        assert_eq!(single.properties[0].key, "h");
        assert_eq!(&payload[4 + size..4 + size + 2], b"v0");
    }

    server.stop().await;
}

/// A connection that never completes CONNECT is closed after `connect_timeout_ms`, whether it
/// sends nothing or the start of a frame announcing the largest size; a connected client on the
/// same listener stays served.
#[tokio::test]
async fn connections_without_connect_are_closed_after_the_connect_timeout() {
    let mut server = TestBroker::builder()
        .config(|c| *c = BrokerConfig::for_data_dir(c.data_dir.clone()))
        .open()
        .await;
    let addr = server
        .serve_pulsar(PulsarConfig {
            connect_timeout_ms: 300,
            ..Default::default()
        })
        .await;
    let mut connected = Client::connect(addr).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(&(FRAME_SIZE_MAX_BYTES as u32).to_be_bytes())
        .await
        .unwrap();
    half.write_all(&4u32.to_be_bytes()).await.unwrap();
    for stream in [&mut silent, &mut half] {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "closed by the broker: {read:?}"
        );
    }
    // The connected client was not affected by the timeout.
    connected
        .send(BaseCommand {
            r#type: Type::Ping as i32,
            ping: Some(CommandPing {}),
            ..Default::default()
        })
        .await;
    assert_eq!(connected.next().await.command.r#type, Type::Pong as i32);
    server.stop().await;
}
