//! The partition registry holds no broker-wide lock: a partition being opened (its segment store
//! held at a gate) does not delay produce or fetch on another partition, and concurrent requests
//! for the partition being opened share one open. A ledger that failed a write is reopened when
//! asked for again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use magnetar_broker::*;
use magnetar_metadata::MemoryStore;
use magnetar_storage::{LocalSegmentStore, SegmentStore, StorageError};
use magnetar_testkit::storage::{HookedSegmentStore, SegmentHooks};

/// Bound on every wait in these tests; a wait that reaches it fails the test (it is never the
/// thing measured).
const WAIT: Duration = Duration::from_secs(30);

fn batch(payload: &str) -> AppendRequest {
    let mut bytes = vec![0u8; 8];
    bytes.extend_from_slice(payload.as_bytes());
    AppendRequest {
        payload: Bytes::from(bytes),
        message_count: 1,
        max_timestamp_ms: 1000,
        format: PayloadFormat::Kafka,
        producer: None,
        first_index_at: Some(0),
    }
}

/// A gate the slow store waits at, opened by the test.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn wait(&self) -> bool {
        let open = self.open.lock().unwrap();
        let (open, _) = self
            .changed
            .wait_timeout_while(open, WAIT, |o| !*o)
            .unwrap();
        *open
    }

    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }
}

/// Hooks of the kit's segment store: `list` (the first thing a ledger open does) says it was
/// entered, then waits at the gate.
struct GatedList {
    gate: Arc<Gate>,
    entered: mpsc::Sender<()>,
}

impl SegmentHooks for GatedList {
    fn before_list(&self) -> Result<(), StorageError> {
        let _ = self.entered.send(());
        if !self.gate.wait() {
            return Err(StorageError::Failed {
                reason: "test gate never opened".into(),
            });
        }
        Ok(())
    }
}

#[tokio::test]
async fn opening_one_partition_does_not_block_another() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let (entered_tx, entered_rx) = mpsc::channel();
    let slow_opens = Arc::new(AtomicUsize::new(0));
    let factory: SegmentStoreFactory = {
        let (gate, slow_opens) = (gate.clone(), slow_opens.clone());
        let entered = Mutex::new(entered_tx);
        Arc::new(move |dir: &Path| {
            if dir.to_string_lossy().contains("slow") {
                slow_opens.fetch_add(1, Ordering::SeqCst);
                let hooks = Arc::new(GatedList {
                    gate: gate.clone(),
                    entered: entered.lock().unwrap().clone(),
                });
                Ok(Arc::new(HookedSegmentStore::new(dir, hooks)?) as Arc<dyn SegmentStore>)
            } else {
                Ok(Arc::new(LocalSegmentStore::new(dir)?) as Arc<dyn SegmentStore>)
            }
        })
    };
    let broker = Broker::open_with_segment_stores(
        BrokerConfig::for_data_dir(dir.path()),
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
        factory,
    )
    .await
    .unwrap();
    let slow = broker.parse_topic("slow").unwrap();
    let fast = broker.parse_topic("fast").unwrap();
    for t in [&slow, &fast] {
        broker.create_topic(t, None, BTreeMap::new()).await.unwrap();
    }
    let tp = |topic: &TopicName| TopicPartition {
        topic: topic.clone(),
        partition: 0,
    };

    // Two requests for the slow partition; the first one's open waits at the gate.
    let first = tokio::spawn({
        let (broker, tp) = (broker.clone(), tp(&slow));
        async move { broker.partition(&tp).await }
    });
    let entered = tokio::task::spawn_blocking(move || entered_rx.recv_timeout(WAIT))
        .await
        .unwrap();
    assert!(entered.is_ok(), "the slow open never reached its store");
    let second = tokio::spawn({
        let (broker, tp) = (broker.clone(), tp(&slow));
        async move { broker.partition(&tp).await }
    });

    // Meanwhile another partition opens, takes a produce and serves a fetch.
    let served = tokio::time::timeout(WAIT, async {
        let log = broker.partition(&tp(&fast)).await.unwrap();
        let outcome = log.append(batch("hello")).await.unwrap();
        let entries = log.read(outcome.first_index, 1 << 20, 10).await.unwrap();
        assert_eq!(broker.open_partitions().await.len(), 1);
        entries
    })
    .await
    .expect("the fast partition waited for the slow partition's open");
    assert_eq!(served.len(), 1);
    assert_eq!(&served[0].payload[8..], b"hello");
    assert!(!first.is_finished() && !second.is_finished());

    gate.release();
    let a = tokio::time::timeout(WAIT, first)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let b = tokio::time::timeout(WAIT, second)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(Arc::ptr_eq(&a, &b), "both requests share one open");
    assert_eq!(slow_opens.load(Ordering::SeqCst), 1, "opened once");
    assert_eq!(a.append(batch("late")).await.unwrap().first_index, 0);
    assert_eq!(broker.open_partitions().await.len(), 2);
    broker.shutdown().await.unwrap();
}

/// Hooks of the kit's segment store: the next append fails once armed.
#[derive(Default)]
struct FailNextAppend(AtomicBool);

impl SegmentHooks for FailNextAppend {
    fn before_append(&self, _base_index: u64) -> Result<(), StorageError> {
        if self.0.swap(false, Ordering::SeqCst) {
            return Err(StorageError::Failed {
                reason: "injected write error".into(),
            });
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_ledger_is_reopened_when_asked_for_again() {
    let dir = tempfile::tempdir().unwrap();
    let fail = Arc::new(FailNextAppend::default());
    let factory: SegmentStoreFactory = {
        let fail = fail.clone();
        Arc::new(move |dir: &Path| {
            Ok(Arc::new(HookedSegmentStore::new(dir, fail.clone())?) as Arc<dyn SegmentStore>)
        })
    };
    let broker = Broker::open_with_segment_stores(
        BrokerConfig::for_data_dir(dir.path()),
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
        factory,
    )
    .await
    .unwrap();
    let t = broker.parse_topic("t").unwrap();
    broker
        .create_topic(&t, None, BTreeMap::new())
        .await
        .unwrap();
    let tp = TopicPartition {
        topic: t,
        partition: 0,
    };
    let log = broker.partition(&tp).await.unwrap();
    assert_eq!(log.append(batch("a")).await.unwrap().first_index, 0);

    fail.0.store(true, Ordering::SeqCst);
    assert!(log.append(batch("lost")).await.is_err());
    assert!(log.is_failed());
    assert!(log.append(batch("refused")).await.is_err());

    // Asked for again: a new log over the recovered files, taking appends.
    let reopened = broker.partition(&tp).await.unwrap();
    assert!(!Arc::ptr_eq(&log, &reopened));
    assert!(!reopened.is_failed());
    assert_eq!(reopened.append(batch("b")).await.unwrap().first_index, 1);
    let entries = reopened.read(0, 1 << 20, 10).await.unwrap();
    let payloads: Vec<&[u8]> = entries.iter().map(|e| &e.payload[8..]).collect();
    assert_eq!(payloads, vec![&b"a"[..], &b"b"[..]]);
    assert_eq!(broker.open_partitions().await.len(), 1);
    broker.shutdown().await.unwrap();
}
