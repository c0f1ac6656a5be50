//! Real-client tests of the Kafka front end with rdkafka (librdkafka built from source by
//! rdkafka-sys) against the real `magnetar standalone` binary started by the harness:
//! produce/consume round trips with every compression codec, the idempotent producer, and a
//! restart after which everything is consumed again with the same offsets.

mod common;

use std::time::{Duration, Instant};

use common::Broker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(30);

fn producer(broker: &Broker, extra: &[(&str, &str)]) -> BaseProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &broker.kafka_addr)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "20000");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

fn produce(producer: &BaseProducer, topic: &str, count: usize, prefix: &str) {
    for i in 0..count {
        let payload = format!("{prefix}-{i}");
        let key = format!("k{i}");
        let mut record = BaseRecord::to(topic)
            .payload(&payload)
            .key(&key)
            .partition(0);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) => {
                    // Queue full: let deliveries drain.
                    assert!(
                        matches!(e, rdkafka::error::KafkaError::MessageProduction(_)),
                        "{e}"
                    );
                    producer.poll(Duration::from_millis(10));
                    record = r;
                }
            }
        }
    }
    producer.flush(WAIT).expect("flush");
}

/// Reads partition 0 from the beginning until `count` messages arrived.
fn consume(broker: &Broker, topic: &str, count: usize) -> Vec<(i64, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka_addr)
        // librdkafka needs a group id even for assign(); nothing is committed (no group APIs yet).
        .set("group.id", "magnetar-rdkafka-test")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT;
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "got {} of {count} messages",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )),
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out
}

fn check_sequence(messages: &[(i64, String)], prefix: &str, first_offset: i64) {
    for (i, (offset, payload)) in messages.iter().enumerate() {
        assert_eq!(*offset, first_offset + i as i64);
        assert_eq!(payload, &format!("{prefix}-{i}"));
    }
}

#[test]
fn round_trip_with_every_compression_codec() {
    let broker = Broker::start();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        let p = producer(&broker, &[("compression.type", codec)]);
        produce(&p, &topic, 500, codec);
        let messages = consume(&broker, &topic, 500);
        check_sequence(&messages, codec, 0);
    }
}

#[test]
fn idempotent_producer() {
    let broker = Broker::start();
    let p = producer(&broker, &[("enable.idempotence", "true"), ("acks", "all")]);
    produce(&p, "idempotent", 2000, "idem");
    produce(&p, "idempotent", 1000, "more");
    let messages = consume(&broker, "idempotent", 3000);
    check_sequence(&messages[..2000], "idem", 0);
    check_sequence(&messages[2000..], "more", 2000);
}

#[test]
fn restart_keeps_every_offset() {
    let mut broker = Broker::start();
    let p = producer(&broker, &[("compression.type", "lz4")]);
    produce(&p, "durable", 1500, "d");
    drop(p);
    let before = consume(&broker, "durable", 1500);
    broker.restart();
    let after = consume(&broker, "durable", 1500);
    assert_eq!(before, after);
    check_sequence(&after, "d", 0);
    // Appends after the restart continue the offsets.
    let p = producer(&broker, &[]);
    produce(&p, "durable", 10, "x");
    let all = consume(&broker, "durable", 1510);
    assert_eq!(all[1500].0, 1500);
}
