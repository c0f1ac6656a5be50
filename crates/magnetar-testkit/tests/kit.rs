//! The kit's own checks: a broker on a manual clock drives the publish-rate limiter; the Kafka and
//! Pulsar listeners start on 127.0.0.1:0, answer the raw clients and stop; two brokers over one
//! shared store each serve a share of a topic's partitions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use magnetar_broker::{Error, ManualClock, PublishRate, TopicPartition};
use magnetar_pulsar::proto::base_command::Type;
use magnetar_pulsar::proto::{BaseCommand, CommandPing};
use magnetar_pulsar::PulsarConfig;
use magnetar_testkit::cluster::Cluster;
use magnetar_testkit::kafka::KafkaClient;
use magnetar_testkit::pulsar::PulsarClient;
use magnetar_testkit::{eventually, TestBroker};

#[tokio::test]
async fn the_publish_rate_follows_the_brokers_manual_clock() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let kit = TestBroker::builder().clock(clock.clone()).open().await;
    let topic = kit.broker.parse_topic("paced").unwrap();
    kit.broker
        .create_topic(&topic, Some(1), BTreeMap::new())
        .await
        .unwrap();
    let log = kit
        .broker
        .partition(&TopicPartition {
            topic,
            partition: 0,
        })
        .await
        .unwrap();
    log.set_publish_rate(PublishRate {
        messages_per_s: Some(10),
        bytes_per_s: None,
    });
    // One second of burst, then a second of debt that only the clock pays.
    assert_eq!(log.publish_delay(10, 0), Duration::ZERO);
    assert_eq!(log.publish_delay(10, 0), Duration::from_secs(1));
    assert_eq!(log.publish_delay(0, 0), Duration::from_secs(1));
    clock.advance_ms(1_000);
    assert_eq!(log.publish_delay(0, 0), Duration::ZERO);
    kit.shutdown().await;
}

#[tokio::test]
async fn both_listeners_serve_the_raw_clients_and_stop() {
    let mut kit = TestBroker::start().await;
    let kafka = kit.serve_kafka(|_| {}).await;
    let pulsar = kit.serve_pulsar(PulsarConfig::default()).await;
    let mut client = KafkaClient::connect(kafka).await;
    let versions: ApiVersionsResponse = client
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(versions.error_code, 0);
    assert!(!versions.api_keys.is_empty());
    let mut pulsar = PulsarClient::connect(pulsar).await;
    pulsar
        .send(BaseCommand {
            r#type: Type::Ping as i32,
            ping: Some(CommandPing {}),
            ..Default::default()
        })
        .await;
    assert_eq!(pulsar.next().await.command.r#type, Type::Pong as i32);
    kit.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_over_one_store_share_a_topics_partitions() {
    let cluster = Cluster::new();
    let a = cluster.start_node("a").await;
    let b = cluster.start_node("b").await;
    let topic = a.broker.parse_topic("shared").unwrap();
    a.broker
        .create_topic(&topic, Some(8), BTreeMap::new())
        .await
        .unwrap();
    // Every partition served by exactly one of the two once the bundles are claimed.
    eventually("each partition served by exactly one broker", async || {
        for partition in 0..8 {
            let tp = TopicPartition {
                topic: topic.clone(),
                partition,
            };
            let mut serving = 0;
            for node in [&a, &b] {
                match node.broker.partition(&tp).await {
                    Ok(_) => serving += 1,
                    Err(Error::NotOwner { .. }) => {}
                    Err(_) => return false,
                }
            }
            if serving != 1 {
                return false;
            }
        }
        true
    })
    .await;
}
