//! Cluster mode in one process: two brokers over one metadata store and one object store,
//! each partition served by exactly one of them; when one dies (its session ended), the other
//! takes its partitions over with every acknowledged entry, and the dead broker's late
//! appends are refused and never readable. Waits are bounded polls on conditions.

use std::collections::BTreeMap;

use bytes::Bytes;
use magnetar_broker::{AppendRequest, Error, PayloadFormat, TopicName, TopicPartition};
use magnetar_testkit::cluster::{Cluster, Node};
use magnetar_testkit::eventually;

const PARTITIONS: u32 = 8;
const PER_PARTITION: u64 = 20;

fn tp(topic: &TopicName, partition: u32) -> TopicPartition {
    TopicPartition {
        topic: topic.clone(),
        partition,
    }
}

fn entry(text: String) -> AppendRequest {
    AppendRequest {
        payload: Bytes::from(text),
        message_count: 1,
        max_timestamp_ms: 1_000,
        format: PayloadFormat::Pulsar,
        producer: None,
        first_index_at: None,
    }
}

/// Which of `nodes` serves each partition (exactly one must, once all bundles are claimed).
async fn owners(nodes: &[&Node], topic: &TopicName) -> Option<BTreeMap<u32, usize>> {
    let mut owners = BTreeMap::new();
    for p in 0..PARTITIONS {
        let mut serving = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            match node.broker.partition(&tp(topic, p)).await {
                Ok(_) => serving.push(i),
                Err(Error::NotOwner { .. }) => {}
                Err(e) => panic!("partition {p} on node {i}: {e}"),
            }
        }
        match serving.as_slice() {
            [one] => {
                owners.insert(p, *one);
            }
            [] => return None,
            many => panic!("partition {p} served by several brokers: {many:?}"),
        }
    }
    Some(owners)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_brokers_partitions_move_with_every_acknowledged_entry() {
    let cluster = Cluster::new();
    let store = cluster.store.clone();
    let a = cluster.start_node("a").await;
    let b = cluster.start_node("b").await;
    let topic = a
        .broker
        .parse_topic("persistent://public/default/orders")
        .unwrap();
    a.broker
        .create_topic(&topic, Some(PARTITIONS), BTreeMap::new())
        .await
        .unwrap();
    // Created through a, visible through b (its topic cache follows the store).
    eventually("b sees the topic", || async {
        b.broker.topic(&topic).await.unwrap().is_some()
    })
    .await;

    let nodes = [&a, &b];
    let mut placement = None;
    eventually("every partition served by exactly one broker", async || {
        placement = owners(&nodes, &topic).await;
        placement.is_some()
    })
    .await;
    let placement = placement.expect("a placement");

    // Acknowledged appends on each partition's owner.
    for p in 0..PARTITIONS {
        let log = nodes[placement[&p]]
            .broker
            .partition(&tp(&topic, p))
            .await
            .unwrap();
        for i in 0..PER_PARTITION {
            let outcome = log.append(entry(format!("p{p}-{i}"))).await.unwrap();
            assert_eq!(outcome.first_index, i);
        }
    }

    // Make sure `a` leads something, then kill it: it stops following the cluster and the
    // store ends its session (what etcd does when a killed broker's lease runs out).
    let a_partitions: Vec<u32> = placement
        .iter()
        .filter(|(_, &n)| n == 0)
        .map(|(&p, _)| p)
        .collect();
    assert!(!a_partitions.is_empty(), "a leads nothing: {placement:?}");
    let held = Some(
        a.broker
            .partition(&tp(&topic, a_partitions[0]))
            .await
            .unwrap(),
    );
    a.member.abandon();
    assert!(store.expire_session(a.member.session_id()));

    eventually("b serves every partition", || async {
        let mut all = true;
        for p in 0..PARTITIONS {
            all &= b.broker.partition(&tp(&topic, p)).await.is_ok();
        }
        all
    })
    .await;
    for p in 0..PARTITIONS {
        let log = b.broker.partition(&tp(&topic, p)).await.unwrap();
        assert_eq!(log.end_index(), PER_PARTITION, "partition {p}");
        let read = log.read(0, usize::MAX, 1_000).await.unwrap();
        let texts: Vec<String> = read
            .iter()
            .map(|e| String::from_utf8(e.payload.to_vec()).unwrap())
            .collect();
        let expected: Vec<String> = (0..PER_PARTITION).map(|i| format!("p{p}-{i}")).collect();
        assert_eq!(texts, expected, "partition {p}");
        // The new owner continues the indexes.
        let next = log.append(entry(format!("p{p}-after"))).await.unwrap();
        assert_eq!(next.first_index, PER_PARTITION);
    }

    // The dead broker's late append (it still holds a partition it had open) is refused, and
    // nothing of it is readable at the new owner.
    if let Some(held) = held {
        let late = held.append(entry("late".into())).await;
        assert!(late.is_err(), "a fenced broker's append was acknowledged");
        let p = held.name().partition;
        let log = b.broker.partition(&tp(&topic, p)).await.unwrap();
        let read = log.read(0, usize::MAX, 1_000).await.unwrap();
        assert!(read.iter().all(|e| e.payload != "late"));
        assert_eq!(log.end_index(), PER_PARTITION + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broker_takes_part_in_new_namespaces_bundles() {
    let cluster = Cluster::new();
    let a = cluster.start_node("a").await;
    let b = cluster.start_node("b").await;
    // Each must see the other live first, or one may claim bundles the rule gives the other.
    eventually("both brokers see both live", || async {
        a.member.live_brokers().len() == 2 && b.member.live_brokers().len() == 2
    })
    .await;
    // Created through a, and no request names them at b: b learns them from the store.
    let namespaces: Vec<_> = ["n1", "n2", "n3", "n4"]
        .iter()
        .map(|n| magnetar_broker::NamespaceName::new("public", n).unwrap())
        .collect();
    for namespace in &namespaces {
        a.broker
            .create_namespace(namespace, Default::default())
            .await
            .unwrap();
    }
    let owned_in = |node: &Node| {
        node.member
            .ownership()
            .owned()
            .borrow()
            .keys()
            .filter(|bundle| namespaces.contains(&bundle.namespace))
            .count()
    };
    // A bundle is claimed only by the live broker it is assigned to, so all sixteen are owned
    // only if both brokers follow the new namespaces.
    eventually("all bundles of the new namespaces owned", || async {
        owned_in(&a) + owned_in(&b) == 16
    })
    .await;
    assert!(
        owned_in(&a) > 0 && owned_in(&b) > 0,
        "both brokers own bundles of the new namespaces: a {} b {}",
        owned_in(&a),
        owned_in(&b)
    );
}

/// A namespace's topic config defaults written through one broker reach the topic metadata
/// another broker has cached (its watch on the namespace policies drops the cache), and their
/// removal does too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_topic_config_defaults_reach_every_brokers_cached_topics() {
    let cluster = Cluster::new();
    let a = cluster.start_node("a").await;
    let b = cluster.start_node("b").await;
    let topic = a.broker.parse_topic("ns-defaults-everywhere").unwrap();
    a.broker
        .create_topic(&topic, Some(1), BTreeMap::new())
        .await
        .unwrap();
    // b reads (and caches) the topic before the defaults exist.
    let cached = b.broker.topic(&topic).await.unwrap().unwrap();
    assert!(!magnetar_broker::compaction::is_compacted(&cached));

    a.broker
        .update_namespace_policies(&topic.namespace, |p| {
            p.topic_config_defaults =
                [("cleanup.policy".to_string(), "compact".to_string())].into();
        })
        .await
        .unwrap();
    eventually("b sees the namespace's cleanup.policy", async || {
        let m = b.broker.topic(&topic).await.unwrap().unwrap();
        magnetar_broker::compaction::is_compacted(&m)
    })
    .await;
    a.broker
        .update_namespace_policies(&topic.namespace, |p| p.topic_config_defaults.clear())
        .await
        .unwrap();
    eventually("b sees the defaults removed", async || {
        let m = b.broker.topic(&topic).await.unwrap().unwrap();
        !magnetar_broker::compaction::is_compacted(&m)
    })
    .await;
}
