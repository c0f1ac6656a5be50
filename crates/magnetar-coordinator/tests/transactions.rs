//! The transaction coordinator over a real broker: a commit writes markers into every partition
//! and commits the group offsets; a transaction the broker left prepared (the decision written,
//! the markers not) is completed when the coordinator loads again; a timed-out transaction is
//! aborted and its producer fenced.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use magnetar_broker::{
    AppendRequest, Broker, BrokerConfig, PartitionLog, PayloadFormat, ProducerBatch, SystemClock,
    TopicPartition, TxnMark,
};
use magnetar_coordinator::batch::encode_batch;
use magnetar_coordinator::txn::record::{TxnLogValue, TxnRecord};
use magnetar_coordinator::*;
use magnetar_metadata::{MetadataStore, RedbStore};
use magnetar_testkit::eventually;

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        offsets_topic_num_partitions: 2,
        transaction_state_log_num_partitions: 2,
        transaction_abort_check_interval_ms: 20,
        timer_tick_ms: 10,
        ..CoordinatorConfig::default()
    }
}

async fn open(dir: &Path) -> (Arc<Broker>, Arc<GroupCoordinator>) {
    let metadata: Arc<dyn MetadataStore> =
        Arc::new(RedbStore::open(&dir.join("metadata.redb")).await.unwrap());
    let broker = Broker::open(
        BrokerConfig {
            partitions_max: 64,
            producers_per_partition_max: 100,
            ..BrokerConfig::for_data_dir(dir.to_path_buf())
        },
        metadata,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let groups = GroupCoordinator::start(broker.clone(), config())
        .await
        .unwrap();
    (broker, groups)
}

async fn data_partition(broker: &Broker, partition: u32) -> Arc<PartitionLog> {
    let topic = broker.parse_topic("data").unwrap();
    if broker.topic(&topic).await.unwrap().is_none() {
        broker
            .create_topic(&topic, Some(2), BTreeMap::new())
            .await
            .unwrap();
    }
    broker
        .partition(&TopicPartition { topic, partition })
        .await
        .unwrap()
}

/// A transactional batch of `producer` as the Kafka front end appends it.
async fn produce(log: &PartitionLog, producer: (i64, i16), sequence: i32) -> u64 {
    log.append(AppendRequest {
        payload: Bytes::from(vec![0u8; 80]),
        message_count: 1,
        max_timestamp_ms: 1,
        format: PayloadFormat::Kafka,
        producer: Some(ProducerBatch {
            producer_id: producer.0,
            epoch: producer.1,
            first_sequence: sequence,
            message_count: 1,
            txn: TxnMark::Data,
        }),
        first_index_at: Some(0),
    })
    .await
    .unwrap()
    .first_index
}

#[tokio::test]
async fn commit_marks_every_partition_and_commits_the_group_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, groups) = open(dir.path()).await;
    let txn = groups.transactions().await.unwrap();
    let producer = txn.init_producer_id("tx", 60_000, None).await.unwrap();
    let (p0, p1) = (
        data_partition(&broker, 0).await,
        data_partition(&broker, 1).await,
    );
    let topic = p0.name().topic.to_string();
    txn.add_partitions("tx", producer, &[(topic.clone(), 0), (topic.clone(), 1)])
        .await
        .unwrap();
    txn.add_offsets("tx", producer, "g").await.unwrap();
    produce(&p0, producer, 0).await;
    produce(&p1, producer, 0).await;
    txn.txn_offset_commit(
        "tx",
        producer,
        "g",
        vec![PendingOffset {
            topic: "in".into(),
            partition: 0,
            offset: 42,
            leader_epoch: -1,
            metadata: String::new(),
        }],
    )
    .await
    .unwrap();
    assert_eq!(p0.last_stable_index(), 0, "open: nothing stable");
    assert_eq!(
        txn.pending_offsets("g")
            .await
            .into_iter()
            .collect::<Vec<_>>(),
        vec![("in".to_string(), 0)]
    );
    txn.end_txn("tx", producer, true).await.unwrap();
    for log in [&p0, &p1] {
        assert_eq!(log.end_index(), 2, "data and marker");
        assert_eq!(log.last_stable_index(), 2);
        assert!(log.aborted_transactions(0, 2).is_empty());
    }
    let fetched = groups
        .fetch_offsets(OffsetFetchRequest {
            group_id: "g".into(),
            topics: None,
            require_stable: true,
        })
        .await;
    assert_eq!(fetched.topics[0].partitions[0].offset, 42);
    assert!(txn.pending_offsets("g").await.is_empty());
    assert_eq!(
        txn.describe("tx").await.unwrap().unwrap().status,
        TxnStatus::CompleteCommit
    );
    // A retried EndTxn(commit) is answered success; an abort now is refused.
    txn.end_txn("tx", producer, true).await.unwrap();
    assert_eq!(
        txn.end_txn("tx", producer, false).await,
        Err(CoordinatorError::InvalidTxnState)
    );
    groups.shutdown().await;
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_prepared_transaction_is_completed_when_the_coordinator_loads_again() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (broker, groups) = open(dir.path()).await;
        let txn = groups.transactions().await.unwrap();
        let producer = txn.init_producer_id("tx", 60_000, None).await.unwrap();
        let p0 = data_partition(&broker, 0).await;
        let topic = p0.name().topic.to_string();
        txn.add_partitions("tx", producer, &[(topic.clone(), 0)])
            .await
            .unwrap();
        produce(&p0, producer, 0).await;
        // The broker stops after writing the decision and before any marker: write the
        // PrepareAbort record straight into the transaction log, as the coordinator would.
        let state = broker
            .partition(&TopicPartition {
                topic: txn.topic().clone(),
                partition: txn.partition_for("tx"),
            })
            .await
            .unwrap();
        let record = TxnRecord::Metadata {
            transactional_id: "tx".into(),
            value: Some(TxnLogValue {
                producer_id: producer.0,
                producer_epoch: producer.1,
                timeout_ms: 60_000,
                status: TxnStatus::PrepareAbort,
                partitions: vec![(topic.clone(), vec![0])],
                last_update_ms: 1,
                start_ms: 1,
            }),
        };
        let raw = vec![(record.encode_key().unwrap(), record.encode_value().unwrap())];
        state
            .append(AppendRequest {
                payload: Bytes::from(encode_batch(&raw, 1)),
                message_count: 1,
                max_timestamp_ms: 1,
                format: PayloadFormat::Kafka,
                producer: None,
                first_index_at: Some(0),
            })
            .await
            .unwrap();
        assert_eq!(p0.last_stable_index(), 0);
        // Stop without completing: no coordinator shutdown (it would not complete it either).
        broker.shutdown().await.unwrap();
        drop(groups);
    }
    let (broker, groups) = open(dir.path()).await;
    // `__transaction_state` exists, so the coordinator started with the broker and completes
    // the prepared transaction without any request.
    let txn = groups.transactions_if_started().cloned().expect("started");
    let p0 = data_partition(&broker, 0).await;
    eventually("the abort marker", async || p0.end_index() == 2).await;
    assert_eq!(p0.last_stable_index(), 2);
    assert_eq!(p0.aborted_transactions(0, 2).len(), 1);
    eventually("CompleteAbort", async || {
        txn.describe("tx").await.unwrap().map(|m| m.status) == Some(TxnStatus::CompleteAbort)
    })
    .await;
    groups.shutdown().await;
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_timed_out_transaction_is_aborted_and_its_producer_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, groups) = open(dir.path()).await;
    let txn = groups.transactions().await.unwrap();
    let producer = txn.init_producer_id("slow", 50, None).await.unwrap();
    let p1 = data_partition(&broker, 1).await;
    let topic = p1.name().topic.to_string();
    txn.add_partitions("slow", producer, &[(topic, 1)])
        .await
        .unwrap();
    produce(&p1, producer, 0).await;
    eventually("the timeout abort", async || {
        txn.describe("slow").await.unwrap().map(|m| m.status) == Some(TxnStatus::CompleteAbort)
    })
    .await;
    assert_eq!(p1.last_stable_index(), p1.end_index());
    assert_eq!(p1.aborted_transactions(0, u64::MAX).len(), 1);
    // The old epoch is fenced everywhere: at the coordinator and in the partition.
    assert_eq!(
        txn.end_txn("slow", producer, true).await,
        Err(CoordinatorError::ProducerFenced)
    );
    let refused = p1
        .append(AppendRequest {
            payload: Bytes::from(vec![0u8; 80]),
            message_count: 1,
            max_timestamp_ms: 1,
            format: PayloadFormat::Kafka,
            producer: Some(ProducerBatch {
                producer_id: producer.0,
                epoch: producer.1,
                first_sequence: 1,
                message_count: 1,
                txn: TxnMark::Data,
            }),
            first_index_at: Some(0),
        })
        .await;
    assert!(refused.is_err(), "a zombie write after the fencing marker");
    groups.shutdown().await;
    broker.shutdown().await.unwrap();
}
