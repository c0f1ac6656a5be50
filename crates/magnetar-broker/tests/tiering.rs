//! Tiered storage through the broker (issue #16, mode 1) on `object_store`'s `InMemory`:
//! the offload pass moves sealed segments beyond the local retention to object storage, reads
//! and a restarted broker serve every entry from there, and a recreated topic never sees the
//! objects of the topic it replaced.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use magnetar_broker::tiering::{Tiering, TieringSettings, PREFIX_FILE_NAME};
use magnetar_broker::*;
use magnetar_metadata::MemoryStore;
use magnetar_storage::tiered::TieringConfig;
use magnetar_storage::{Clock, ManualClock, SystemClock};
use object_store::memory::InMemory;
use object_store::ObjectStore;

fn batch(i: u64) -> AppendRequest {
    let mut bytes = vec![0u8; 8];
    bytes.extend((0..400).map(|k| (i * 7 + k) as u8));
    AppendRequest {
        payload: Bytes::from(bytes),
        message_count: 1,
        max_timestamp_ms: 1_000 + i as i64,
        format: PayloadFormat::Kafka,
        producer: None,
        first_index_at: Some(0),
    }
}

fn settings(dir: &std::path::Path, bytes: Option<u64>, ms: Option<u64>) -> TieringSettings {
    TieringSettings {
        data_dir: dir.to_path_buf(),
        root: "magnetar".into(),
        read: TieringConfig {
            block_bytes: 4 << 10,
            readahead_blocks: 2,
            cache_bytes: 64 << 10,
        },
        local_retention_bytes: bytes,
        local_retention_ms: ms,
    }
}

async fn open(
    metadata: &Arc<MemoryStore>,
    dir: &std::path::Path,
    remote: Arc<dyn ObjectStore>,
    settings: TieringSettings,
    clock: Arc<dyn Clock>,
) -> (Arc<Broker>, Arc<Tiering>) {
    let tiering = Tiering::new(
        settings,
        remote,
        clock.clone(),
        tokio::runtime::Handle::current(),
    )
    .unwrap();
    let broker = Broker::open_with_segment_stores(
        BrokerConfig::for_data_dir(dir),
        metadata.clone(),
        clock,
        tiering.factory(),
    )
    .await
    .unwrap();
    (broker, tiering)
}

async fn payloads(log: &PartitionLog) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = log.start_index();
    while at < log.end_index() {
        let got = log.read(at, 64 << 10, 100).await.unwrap();
        at = got.last().unwrap().header.end_index();
        out.extend(got.into_iter().map(|e| e.payload.slice(8..)));
    }
    out
}

fn local_segments(dir: &std::path::Path) -> usize {
    walk(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .count()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn small_segments() -> BTreeMap<String, String> {
    BTreeMap::from([("segment.bytes".to_string(), "4096".to_string())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_segments_beyond_local_retention_are_served_from_object_storage() {
    let dir = tempfile::tempdir().unwrap();
    let remote: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let metadata = Arc::new(MemoryStore::new());
    let (broker, tiering) = open(
        &metadata,
        dir.path(),
        remote.clone(),
        settings(dir.path(), Some(8 << 10), None),
        Arc::new(SystemClock),
    )
    .await;
    let topic = broker.parse_topic("tiered").unwrap();
    broker
        .create_topic(&topic, None, small_segments())
        .await
        .unwrap();
    let tp = TopicPartition {
        topic,
        partition: 0,
    };
    let log = broker.partition(&tp).await.unwrap();
    for i in 0..100 {
        log.append(batch(i)).await.unwrap();
    }
    let expected: Vec<Bytes> = (0..100).map(|i| batch(i).payload.slice(8..)).collect();
    let before = local_segments(dir.path());
    assert!(before > 6, "{before} segments");

    let t = tiering.clone();
    let report = tokio::task::spawn_blocking(move || t.offload_pass())
        .await
        .unwrap();
    assert_eq!(report.failures, 0);
    assert!(report.offloaded >= 1);
    // 8 KiB of sealed segments (two of ~4 KiB) stay local, plus the active one.
    let after = local_segments(dir.path());
    assert_eq!(after, 3, "{report:?}");
    assert_eq!(after as u64 + report.offloaded, before as u64);
    assert_eq!(payloads(&log).await, expected);
    assert!(
        tiering
            .counters()
            .gets
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    // A second pass has nothing to do.
    let t = tiering.clone();
    let again = tokio::task::spawn_blocking(move || t.offload_pass())
        .await
        .unwrap();
    assert_eq!(again.offloaded, 0);
    // (Broker::shutdown would close the shared metadata store; closing the log is enough.)
    log.close().await.unwrap();
    drop((log, broker, tiering));

    // A restarted broker over the same disk and bucket serves the same entries.
    let (broker, _tiering) = open(
        &metadata,
        dir.path(),
        remote.clone(),
        settings(dir.path(), Some(8 << 10), None),
        Arc::new(SystemClock),
    )
    .await;
    let log = broker.partition(&tp).await.unwrap();
    assert_eq!(payloads(&log).await, expected);
    assert_eq!(
        log.find_by_timestamp(1_010)
            .await
            .unwrap()
            .map(|h| h.first_index),
        Some(10)
    );

    // Deleting the topic and creating it again: the new topic starts empty even though the
    // old one's objects may still be in the bucket under the old prefix.
    let prefix_files: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == PREFIX_FILE_NAME))
        .collect();
    assert_eq!(prefix_files.len(), 1);
    let old_prefix = std::fs::read_to_string(&prefix_files[0]).unwrap();
    assert!(old_prefix.starts_with("magnetar/"), "{old_prefix}");
    drop(log);
    let objects = |remote: Arc<dyn ObjectStore>, prefix: String| async move {
        let prefix = object_store::path::Path::from(prefix.trim());
        futures_util::StreamExt::collect::<Vec<_>>(remote.list(Some(&prefix)))
            .await
            .len()
    };
    assert!(objects(remote.clone(), old_prefix.clone()).await > 0);
    broker.set_ledger_cleanup(Some(_tiering.ledger_cleanup()));
    broker.delete_topic(&tp.topic).await.unwrap();
    assert_eq!(
        objects(remote.clone(), old_prefix.clone()).await,
        0,
        "deleting the topic deletes its objects"
    );
    broker
        .create_topic(&tp.topic, None, small_segments())
        .await
        .unwrap();
    let log = broker.partition(&tp).await.unwrap();
    assert_eq!(log.end_index(), 0);
    assert!(payloads(&log).await.is_empty());
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_older_than_the_local_retention_time_are_offloaded() {
    let dir = tempfile::tempdir().unwrap();
    let remote: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let metadata = Arc::new(MemoryStore::new());
    let (broker, tiering) = open(
        &metadata,
        dir.path(),
        remote,
        settings(dir.path(), None, Some(60_000)),
        clock.clone(),
    )
    .await;
    let topic = broker.parse_topic("aged").unwrap();
    broker
        .create_topic(&topic, None, small_segments())
        .await
        .unwrap();
    let log = broker
        .partition(&TopicPartition {
            topic,
            partition: 0,
        })
        .await
        .unwrap();
    for i in 0..40 {
        log.append(batch(i)).await.unwrap();
    }
    let before = local_segments(dir.path());
    // Ages are measured from the files' last writes (wall time): place the manual clock
    // relative to now, however long the appends took.
    clock.set_ms(SystemClock.now_ms());
    let t = tiering.clone();
    let fresh = tokio::task::spawn_blocking(move || t.offload_pass())
        .await
        .unwrap();
    assert_eq!(fresh.offloaded, 0, "nothing is a minute old yet");
    clock.set_ms(SystemClock.now_ms() + 61_000);
    let t = tiering.clone();
    let aged = tokio::task::spawn_blocking(move || t.offload_pass())
        .await
        .unwrap();
    assert_eq!(
        aged.offloaded as usize,
        before - 1,
        "every sealed segment: {aged:?}"
    );
    assert_eq!(local_segments(dir.path()), 1);
    assert_eq!(payloads(&log).await.len(), 40);
    broker.shutdown().await.unwrap();
}
