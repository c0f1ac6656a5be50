//! Producer-state snapshots: a partition reopens from the newest usable snapshot plus the log
//! after it, and idempotent deduplication answers exactly as a rebuild from the whole log.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use magnetar_broker::*;
use magnetar_metadata::{MemoryStore, MetadataStore};
use magnetar_storage::{SNAPSHOTS_KEPT, SNAPSHOT_SUFFIX};

fn config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        default_num_partitions: 1,
        producers_per_partition_max: 100,
        ledger: LedgerConfig {
            segment_bytes: 2_000,
            index_interval_bytes: 256,
            ..LedgerConfig::default()
        },
        ..BrokerConfig::for_data_dir(dir.to_path_buf())
    }
}

fn request(producer: ProducerBatch) -> AppendRequest {
    AppendRequest {
        payload: Bytes::from(vec![0u8; 100]),
        message_count: producer.message_count,
        max_timestamp_ms: 1000,
        format: PayloadFormat::Kafka,
        producer: Some(producer),
        first_index_at: Some(0),
    }
}

fn kafka_batch(producer_id: i64, first_sequence: i32) -> ProducerBatch {
    ProducerBatch {
        producer_id,
        epoch: 0,
        first_sequence,
        message_count: 2,
        txn: magnetar_broker::TxnMark::None,
    }
}

/// Opens a broker over `dir` with the topic "snap" and returns its one partition.
async fn open(dir: &Path) -> (Arc<Broker>, Arc<PartitionLog>) {
    open_with(config(dir)).await
}

/// [`open`] with another broker config.
async fn open_with(config: BrokerConfig) -> (Arc<Broker>, Arc<PartitionLog>) {
    let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let broker = Broker::open(config, metadata, Arc::new(SystemClock))
        .await
        .unwrap();
    let topic = broker.parse_topic("snap").unwrap();
    broker
        .create_topic(&topic, None, BTreeMap::new())
        .await
        .unwrap();
    let log = broker
        .partition(&TopicPartition {
            topic,
            partition: 0,
        })
        .await
        .unwrap();
    (broker, log)
}

/// Producers 1 and 2 append `batches` batches each (2 messages, sequences 0, 2, 4, ...);
/// named producer "np" appends one entry after each pair. Returns each batch's first index.
async fn produce(log: &PartitionLog, from: i32, batches: i32) -> Vec<(i64, i32, u64)> {
    let mut out = Vec::new();
    for b in from..from + batches {
        for id in [1, 2] {
            let o = log.append(request(kafka_batch(id, b * 2))).await.unwrap();
            assert!(!o.duplicate);
            out.push((id, b * 2, o.first_index));
        }
        log.append(AppendRequest {
            producer: Some(named_producer_batch("np", 1)),
            message_count: 1,
            ..request(kafka_batch(0, 0))
        })
        .await
        .unwrap();
    }
    out
}

fn snapshot_files(dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(SNAPSHOT_SUFFIX)?.parse().ok()
        })
        .collect();
    out.sort_unstable();
    out
}

/// The last five batches of each producer are duplicates with their original index and the one
/// before them is no longer remembered (refused as out of order). Nothing new is appended.
async fn check_dedup(log: &PartitionLog, appended: &[(i64, i32, u64)]) {
    for id in [1, 2] {
        let mine: Vec<_> = appended.iter().filter(|a| a.0 == id).collect();
        for (_, seq, index) in &mine[mine.len() - 5..] {
            let again = log.append(request(kafka_batch(id, *seq))).await.unwrap();
            assert!(again.duplicate, "producer {id} seq {seq}");
            assert_eq!(again.first_index, *index, "producer {id} seq {seq}");
        }
        let forgotten = mine[mine.len() - 6].1;
        assert!(matches!(
            log.append(request(kafka_batch(id, forgotten))).await,
            Err(Error::OutOfOrderSequence { .. })
        ));
    }
}

#[tokio::test]
async fn clean_close_snapshots_so_open_replays_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (appended, named_last, end) = {
        let (broker, log) = open(dir.path()).await;
        let appended = produce(&log, 0, 20).await;
        assert!(log.stats().segments.len() > 3, "rolled");
        let named_last = log.named_producer_last_entry(named_producer_id("np"));
        let end = log.end_index();
        broker.shutdown().await.unwrap();
        (appended, named_last, end)
    };
    let (broker, log) = open(dir.path()).await;
    let report = log.producer_state_open();
    assert_eq!(report.snapshot_index, Some(end));
    assert_eq!(report.headers_replayed, 0);
    assert_eq!(report.snapshots_rejected, 0);
    assert_eq!(
        log.named_producer_last_entry(named_producer_id("np")),
        named_last
    );
    check_dedup(&log, &appended).await;
    // And the next batch continues the sequence.
    assert!(
        !log.append(request(kafka_batch(1, 40)))
            .await
            .unwrap()
            .duplicate
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn after_a_crash_open_replays_only_the_log_after_the_roll_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (appended, ledger_dir, end) = {
        let (broker, log) = open(dir.path()).await;
        let appended = produce(&log, 0, 20).await;
        let ledger_dir = log.dir().expect("local ledger").to_path_buf();
        // Roll snapshots are written in the background once durable: wait (bounded) for one.
        let mut found = Vec::new();
        for _ in 0..200 {
            found = snapshot_files(&ledger_dir);
            if !found.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(!found.is_empty(), "a snapshot was written at a roll");
        let end = log.end_index();
        // No shutdown: the broker goes away as in a crash (data is fsynced under `always`).
        drop((log, broker));
        (appended, ledger_dir, end)
    };
    let newest = *snapshot_files(&ledger_dir).last().unwrap();
    assert!(newest < end, "no close snapshot was written");
    let (broker, log) = open(dir.path()).await;
    let report = log.producer_state_open();
    assert_eq!(report.snapshot_index, Some(newest));
    let headers = log.scan_headers(newest, usize::MAX).await.unwrap();
    assert_eq!(report.headers_replayed, headers.len() as u64);
    assert!(report.headers_replayed < appended.len() as u64);
    check_dedup(&log, &appended).await;
    drop((log, broker));

    // The same answers with no snapshot at all (a full replay).
    for index in snapshot_files(&ledger_dir) {
        std::fs::remove_file(ledger_dir.join(format!("{index:020}{SNAPSHOT_SUFFIX}"))).unwrap();
    }
    let (_broker, log) = open(dir.path()).await;
    assert_eq!(log.producer_state_open().snapshot_index, None);
    check_dedup(&log, &appended).await;
}

#[tokio::test]
async fn an_unusable_snapshot_falls_back_to_an_older_one_or_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (appended, ledger_dir) = {
        let (broker, log) = open(dir.path()).await;
        let appended = produce(&log, 0, 20).await;
        let ledger_dir = log.dir().expect("local ledger").to_path_buf();
        broker.shutdown().await.unwrap();
        (appended, ledger_dir)
    };
    let snaps = snapshot_files(&ledger_dir);
    assert_eq!(snaps.len(), SNAPSHOTS_KEPT, "{snaps:?}");
    // The newest (the close snapshot at the end) replaced by a file whose CRC checks but whose
    // blob does not decode: the broker refuses it and uses the older one.
    {
        // Through the storage layer itself: the broker does not hand its ledger out.
        let ledger = magnetar_storage::ManagedLedger::open(
            &ledger_dir,
            config(dir.path()).ledger,
            Arc::new(SystemClock),
        )
        .unwrap();
        ledger
            .write_snapshot(ledger.end_index(), Bytes::from_static(&[9, 9, 9]))
            .await
            .unwrap();
        ledger.close().await.unwrap();
    }
    let (broker, log) = open(dir.path()).await;
    let report = log.producer_state_open();
    assert_eq!(report.snapshots_rejected, 1);
    assert_eq!(report.snapshot_index, Some(snaps[0]));
    check_dedup(&log, &appended).await;
    drop((log, broker));
    // Both damaged on disk (CRC): the ledger drops them and the table comes from the log.
    for index in snapshot_files(&ledger_dir) {
        let path = ledger_dir.join(format!("{index:020}{SNAPSHOT_SUFFIX}"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[22] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
    }
    let (_broker, log) = open(dir.path()).await;
    let report = log.producer_state_open();
    assert_eq!(report.snapshot_index, None);
    assert!(report.headers_replayed >= appended.len() as u64);
    check_dedup(&log, &appended).await;
}

fn txn_batch(producer_id: i64, epoch: i16, first_sequence: i32, txn: TxnMark) -> ProducerBatch {
    ProducerBatch {
        producer_id,
        epoch,
        first_sequence,
        message_count: if txn.is_marker() { 1 } else { 2 },
        txn,
    }
}

/// What a reader needs of the transactions: the last stable offset, the aborted transactions
/// over the whole log, and the open ones.
fn txn_view(log: &PartitionLog) -> (u64, Vec<AbortedTxn>, Vec<(i64, u64)>) {
    (
        log.last_stable_index(),
        log.aborted_transactions(0, u64::MAX),
        log.open_transactions(),
    )
}

#[tokio::test]
async fn transactions_are_rebuilt_from_the_snapshot_or_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (before, ledger_dir) = {
        let (broker, log) = open(dir.path()).await;
        // Producer 10: a committed transaction; producer 11: an aborted one; producer 12: one
        // left open; non-transactional batches in between.
        log.append(request(txn_batch(10, 0, 0, TxnMark::Data)))
            .await
            .unwrap();
        let aborted_first = log
            .append(request(txn_batch(11, 0, 0, TxnMark::Data)))
            .await
            .unwrap()
            .first_index;
        log.append(request(kafka_batch(1, 0))).await.unwrap();
        log.append(request(txn_batch(10, 0, -1, TxnMark::Commit)))
            .await
            .unwrap();
        let open_first = log
            .append(request(txn_batch(12, 0, 0, TxnMark::Data)))
            .await
            .unwrap()
            .first_index;
        let marker = log
            .append(request(txn_batch(11, 0, -1, TxnMark::Abort)))
            .await
            .unwrap()
            .first_index;
        log.append(request(kafka_batch(1, 2))).await.unwrap();
        let view = txn_view(&log);
        assert_eq!(
            view.0, open_first,
            "the open transaction bounds the stable offset"
        );
        assert_eq!(
            view.1,
            vec![AbortedTxn {
                producer_id: 11,
                first_index: aborted_first,
                last_index: marker,
            }]
        );
        assert_eq!(view.2, vec![(12, open_first)]);
        // A marker of an older epoch is refused; a newer one fences the old epoch.
        log.append(request(txn_batch(12, 1, -1, TxnMark::Abort)))
            .await
            .unwrap();
        assert!(log
            .append(request(txn_batch(12, 0, 2, TxnMark::Data)))
            .await
            .is_err());
        assert_eq!(log.last_stable_index(), log.end_index());
        let ledger_dir = log.dir().unwrap().to_path_buf();
        let before = txn_view(&log);
        broker.shutdown().await.unwrap();
        (before, ledger_dir)
    };
    // From the close snapshot.
    {
        let (broker, log) = open(dir.path()).await;
        assert!(log.producer_state_open().snapshot_index.is_some());
        assert_eq!(txn_view(&log), before);
        broker.shutdown().await.unwrap();
    }
    // From the log alone.
    for index in snapshot_files(&ledger_dir) {
        std::fs::remove_file(ledger_dir.join(format!("{index:020}{SNAPSHOT_SUFFIX}"))).unwrap();
    }
    let (_broker, log) = open(dir.path()).await;
    assert_eq!(log.producer_state_open().snapshot_index, None);
    assert_eq!(txn_view(&log), before);
}

/// An open transaction holds retention back at the last stable offset, shows as the producer's
/// open transaction (DescribeProducers), and a DeleteRecords past its first entry leaves it
/// open with the stable offset at the new log start.
#[tokio::test]
async fn open_transactions_hold_retention_and_survive_delete_records() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, log) = open(dir.path()).await;
    for seq in 0..20 {
        log.append(request(kafka_batch(1, seq * 2))).await.unwrap();
    }
    let open_first = log
        .append(request(txn_batch(12, 0, 0, TxnMark::Data)))
        .await
        .unwrap()
        .first_index;
    for seq in 20..60 {
        log.append(request(kafka_batch(1, seq * 2))).await.unwrap();
    }
    assert!(log.stats().segments.len() > 3, "several segments");
    let producers = log.producers().unwrap();
    let of = |id: i64| *producers.iter().find(|p| p.producer_id == id).unwrap();
    assert_eq!(of(12).txn_start_index, Some(open_first));
    assert_eq!(of(1).txn_start_index, None);
    assert_eq!(of(1).last_sequence, 119);
    assert_eq!(of(1).last_timestamp_ms, 1000);
    // Retention everything-is-expired: stops at the segment holding the open transaction.
    let out = log.apply_retention(Some(0), None).await.unwrap();
    assert!(
        out.segments_deleted > 0,
        "segments before the transaction go"
    );
    assert!(
        log.start_index() <= open_first,
        "data of the open transaction kept"
    );
    assert_eq!(log.last_stable_index(), open_first);
    // An explicit DeleteRecords may pass it (as Kafka's, up to the high watermark).
    let past = open_first + 10;
    assert_eq!(log.truncate_before(past).await.unwrap(), past);
    assert_eq!(log.last_stable_index(), past, "never below the log start");
    assert_eq!(log.open_transactions(), vec![(12, open_first)]);
    // The marker closes it; the stable offset is the end again and retention is free.
    log.append(request(txn_batch(12, 0, -1, TxnMark::Commit)))
        .await
        .unwrap();
    assert_eq!(log.last_stable_index(), log.end_index());
    log.apply_retention(Some(0), None).await.unwrap();
    assert!(
        log.start_index() > past,
        "retention moves on once it is decided"
    );
    broker.shutdown().await.unwrap();
}

/// Without any roll (one large active segment), the producer state is also snapshotted after
/// each recovery checkpoint of the active segment: after a crash the ledger opens the segment
/// from its checkpoint and the producer table replays only the entries after the snapshot.
#[tokio::test]
async fn after_a_crash_without_a_roll_open_replays_only_the_log_after_the_checkpoint_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |dir: &Path| BrokerConfig {
        ledger: LedgerConfig {
            segment_bytes: 1 << 30,
            index_interval_bytes: 256,
            recovery_checkpoint_bytes: 2_000,
            ..LedgerConfig::default()
        },
        ..config(dir)
    };
    let (appended, ledger_dir, end) = {
        let (broker, log) = open_with(cfg(dir.path())).await;
        let appended = produce(&log, 0, 20).await;
        let ledger_dir = log.dir().expect("local ledger").to_path_buf();
        assert_eq!(log.stats().segments.len(), 1, "no roll");
        let mut found = Vec::new();
        for _ in 0..200 {
            found = snapshot_files(&ledger_dir);
            if !found.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            !found.is_empty(),
            "a snapshot was written after a checkpoint"
        );
        let end = log.end_index();
        drop((log, broker)); // a crash
        (appended, ledger_dir, end)
    };
    let newest = *snapshot_files(&ledger_dir).last().unwrap();
    assert!(newest > 0 && newest < end, "{newest} of {end}");
    let (_broker, log) = open_with(cfg(dir.path())).await;
    let report = log.producer_state_open();
    assert_eq!(report.snapshot_index, Some(newest));
    assert!(report.headers_replayed < appended.len() as u64);
    assert!(log.stats().recovery.checkpoint_bytes > 0);
    check_dedup(&log, &appended).await;
}
