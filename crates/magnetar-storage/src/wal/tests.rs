//! Shared WAL tests on object_store's `InMemory` (atomic create-only puts) and the metadata
//! crate's `MemoryStore`, with faults injected by [`FaultyObjectStore`] and a metadata wrapper.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use magnetar_metadata::{
    Expect, MemoryStore, MetadataError, MetadataStore, Txn, TxnOutcome, Versioned, Watch,
};
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::*;
use crate::faulty_store::{FaultOp, FaultyObjectStore};
use crate::{NewEntry, PayloadFormat, ProducerInfo, StorageError, SystemClock};

pub(super) const ROOT: &str = "/ledgers";

pub(super) fn config() -> WalConfig {
    WalConfig {
        flush_interval_ms: 5,
        commit_timeout_ms: 500,
        ..WalConfig::default()
    }
}

pub(super) fn entry(text: &str, count: u32) -> NewEntry {
    NewEntry {
        payload: Bytes::from(text.to_string()),
        message_count: count,
        max_timestamp_ms: 1000,
        format: PayloadFormat::Kafka,
        producer: Some(ProducerInfo {
            producer_id: 7,
            epoch: 0,
            base_sequence: 0,
            txn: Default::default(),
        }),
        first_index_at: None,
    }
}

pub(super) struct Env {
    pub(super) objects: Arc<FaultyObjectStore>,
    pub(super) metadata: Arc<FaultyMetadata>,
}

impl Env {
    pub(super) fn new() -> Env {
        Env {
            objects: Arc::new(FaultyObjectStore::new(Arc::new(InMemory::new()))),
            metadata: Arc::new(FaultyMetadata::new()),
        }
    }

    pub(super) fn writer(&self, name: &str, config: WalConfig) -> WalWriter {
        WalWriter::start(
            name,
            ROOT,
            self.objects.clone(),
            self.metadata.clone(),
            config,
            Arc::new(SystemClock),
        )
        .expect("writer")
    }

    pub(super) async fn wal_objects(&self) -> Vec<ObjectPath> {
        use futures_util::TryStreamExt;
        let mut all: Vec<ObjectPath> = self
            .objects
            .list(Some(&ObjectPath::from("wal")))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .expect("list");
        all.sort();
        all
    }
}

/// A metadata store whose transactions can be made to fail, before or after they apply.
pub(super) struct FaultyMetadata {
    inner: MemoryStore,
    pub(super) fail_txns: AtomicU64,
    pub(super) fail_txns_after_commit: AtomicU64,
    /// Transactions that reached the store.
    pub(super) txns: AtomicU64,
    /// How long each transaction takes (as a remote etcd would).
    pub(super) txn_delay_ms: AtomicU64,
}

impl FaultyMetadata {
    fn new() -> Self {
        FaultyMetadata {
            inner: MemoryStore::new(),
            fail_txns: AtomicU64::new(0),
            fail_txns_after_commit: AtomicU64::new(0),
            txns: AtomicU64::new(0),
            txn_delay_ms: AtomicU64::new(0),
        }
    }
}

fn take(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl MetadataStore for FaultyMetadata {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, MetadataError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Bytes, expect: Expect) -> Result<u64, MetadataError> {
        self.inner.put(key, value, expect).await
    }
    async fn delete(&self, key: &str, expect: Expect) -> Result<(), MetadataError> {
        self.inner.delete(key, expect).await
    }
    async fn list_children(&self, path: &str) -> Result<Vec<String>, MetadataError> {
        self.inner.list_children(path).await
    }
    async fn exists(&self, key: &str) -> Result<bool, MetadataError> {
        self.inner.exists(key).await
    }
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, MetadataError> {
        if take(&self.fail_txns) {
            return Err(MetadataError::Storage("injected: etcd unreachable".into()));
        }
        self.txns.fetch_add(1, Ordering::Relaxed);
        let delay_ms = self.txn_delay_ms.load(Ordering::Relaxed);
        if delay_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        }
        let outcome = self.inner.txn(txn).await?;
        if take(&self.fail_txns_after_commit) {
            return Err(MetadataError::Storage(
                "injected: the answer was lost after the commit".into(),
            ));
        }
        Ok(outcome)
    }
    async fn open_session(
        &self,
        ttl: std::time::Duration,
    ) -> Result<magnetar_metadata::Session, MetadataError> {
        self.inner.open_session(ttl).await
    }
    fn watch(&self, prefix: &str) -> Result<Watch, MetadataError> {
        self.inner.watch(prefix)
    }
    async fn close(&self) -> Result<(), MetadataError> {
        self.inner.close().await
    }
}

pub(super) async fn read_all(ledger: &SharedLedger) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut next = ledger.start_index();
    loop {
        let entries = ledger.read(next, 1 << 20, 1000).await.expect("read");
        if entries.is_empty() {
            return out;
        }
        for e in entries {
            next = e.header.end_index();
            out.push((
                e.header.first_index,
                String::from_utf8_lossy(&e.payload).into_owned(),
            ));
        }
    }
}

#[tokio::test]
async fn many_ledgers_share_one_object_per_flush_and_read_back() {
    let env = Env::new();
    let writer = env.writer(
        "b1",
        WalConfig {
            flush_interval_ms: 50,
            ..config()
        },
    );
    let mut ledgers = Vec::new();
    for p in 0..8 {
        ledgers.push(
            SharedLedger::open(&writer, &format!("t/p{p}"))
                .await
                .unwrap(),
        );
    }
    let mut waits = Vec::new();
    for (p, ledger) in ledgers.iter().enumerate() {
        for i in 0..5 {
            waits.push(
                ledger
                    .append_with(|_| entry(&format!("p{p}-{i}"), 2))
                    .unwrap(),
            );
        }
    }
    for (n, w) in waits.into_iter().enumerate() {
        assert_eq!(w.wait().await.unwrap(), (n as u64 % 5) * 2);
    }
    // 40 entries of 8 ledgers in one flush window: one object, one commit.
    assert_eq!(env.wal_objects().await.len(), 1);
    assert_eq!(writer.counters().objects.load(Ordering::Relaxed), 1);
    assert_eq!(writer.counters().commits.load(Ordering::Relaxed), 1);
    assert_eq!(writer.pending_bytes(), 0);
    for (p, ledger) in ledgers.iter().enumerate() {
        assert_eq!(ledger.end_index(), 10);
        let read = read_all(ledger).await;
        let expected: Vec<(u64, String)> = (0..5).map(|i| (i * 2, format!("p{p}-{i}"))).collect();
        assert_eq!(read, expected);
        // From the middle of an entry: the entry containing the index.
        let from3 = ledger.read(3, 1 << 20, 1).await.unwrap();
        assert_eq!(from3[0].header.first_index, 2);
    }
    writer.close().await;
}

#[tokio::test]
async fn a_new_writer_continues_and_reads_from_the_object_store() {
    let env = Env::new();
    let first = env.writer("b1", config());
    let ledger = SharedLedger::open(&first, "t/p0").await.unwrap();
    for i in 0..10 {
        ledger.append(entry(&format!("m{i}"), 1)).await.unwrap();
    }
    first.close().await;
    let gets_before = env.objects.gets.load(Ordering::Relaxed);

    let second = env.writer("b2", config());
    let taken = SharedLedger::open(&second, "t/p0").await.unwrap();
    assert_eq!(taken.epoch(), 2);
    assert_eq!(taken.end_index(), 10);
    assert_eq!(second.counters().takeovers.load(Ordering::Relaxed), 1);
    assert_eq!(second.counters().takeover_latency.snapshot().count(), 1);
    let read = read_all(&taken).await;
    assert_eq!(read.len(), 10);
    assert_eq!(read[9], (9, "m9".to_string()));
    assert!(
        env.objects.gets.load(Ordering::Relaxed) > gets_before,
        "read from the store"
    );
    assert_eq!(taken.append(entry("after", 1)).await.unwrap(), 10);
    assert_eq!(taken.end_index(), 11);
    second.close().await;
}

#[tokio::test]
async fn the_old_writer_is_fenced_after_a_takeover() {
    let env = Env::new();
    let old = env.writer("old", config());
    let old_ledger = SharedLedger::open(&old, "t/p0").await.unwrap();
    old_ledger.append(entry("a", 1)).await.unwrap();

    let new = env.writer("new", config());
    let new_ledger = SharedLedger::open(&new, "t/p0").await.unwrap();
    assert_eq!(new_ledger.end_index(), 1);

    // The old writer does not know yet: its append is assigned index 1, PUT, and refused at
    // commit; nothing it sent is acknowledged or readable.
    let refused = old_ledger.append(entry("stale", 1)).await;
    assert!(
        matches!(refused, Err(StorageError::Fenced { .. })),
        "{refused:?}"
    );
    assert!(matches!(
        old_ledger.append_with(|_| entry("later", 1)),
        Err(StorageError::Fenced { .. })
    ));
    assert_eq!(old.counters().fenced.load(Ordering::Relaxed), 1);
    assert_eq!(new_ledger.append(entry("b", 1)).await.unwrap(), 1);

    let third = env.writer("third", config());
    let reader = SharedLedger::open(&third, "t/p0").await.unwrap();
    assert_eq!(
        read_all(&reader).await,
        vec![(0, "a".to_string()), (1, "b".to_string())]
    );
}

#[tokio::test]
async fn a_moved_owner_fence_refuses_every_write_before_anyone_reopens_the_ledger() {
    use crate::wal::OwnerFence;
    let env = Env::new();
    let owner_key = "/cluster/c/bundles/public/default/0x0_0x4/epoch";
    let version = env
        .metadata
        .put(owner_key, Bytes::from_static(b"1"), Expect::Absent)
        .await
        .unwrap();
    let fence = OwnerFence {
        key: owner_key.to_string(),
        version,
    };
    let old = env.writer("old", config());
    let a = SharedLedger::open_fenced(&old, "t/p0", Some(fence.clone()))
        .await
        .unwrap();
    let b = SharedLedger::open_fenced(&old, "t/p1", Some(fence.clone()))
        .await
        .unwrap();
    a.append(entry("a", 1)).await.unwrap();
    a.open_cursor("sub", crate::CursorStart::Earliest)
        .await
        .unwrap();

    // Another broker claims the bundle (bumps its epoch key); it has opened neither ledger.
    env.metadata
        .put(
            owner_key,
            Bytes::from_static(b"2"),
            Expect::Version(version),
        )
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(a.append(entry("stale", 1)), b.append(entry("stale", 1)));
    assert!(matches!(ra, Err(StorageError::Fenced { .. })), "{ra:?}");
    assert!(matches!(rb, Err(StorageError::Fenced { .. })), "{rb:?}");
    let acked = a.ack_cumulative("sub", 0).await;
    assert!(
        matches!(acked, Err(StorageError::Fenced { .. })),
        "{acked:?}"
    );
    // A takeover under the stale fence is refused too.
    let late = SharedLedger::open_fenced(&old, "t/p2", Some(fence)).await;
    assert!(matches!(late, Err(StorageError::Fenced { .. })), "{late:?}");

    let reader = SharedLedger::open(&env.writer("new", config()), "t/p0")
        .await
        .unwrap();
    assert_eq!(read_all(&reader).await, vec![(0, "a".to_string())]);
}

#[tokio::test]
async fn a_settling_close_waits_for_queued_appends_and_says_whether_they_all_committed() {
    let env = Env::new();
    let writer = env.writer("w", config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    env.metadata.txn_delay_ms.store(200, Ordering::Relaxed);
    let queued = ledger.append_with(|_| entry("a", 1)).unwrap();
    assert!(ledger.close_settled().await);
    assert_eq!(ledger.end_index(), 1);
    assert_eq!(queued.wait().await.unwrap(), 0);
    assert!(matches!(
        ledger.append_with(|_| entry("late", 1)),
        Err(StorageError::Closed)
    ));

    // Queued, then taken over by another writer before its commit: the close does not wait for
    // the timeout and says the queued entry is not in the log.
    let other = SharedLedger::open(&writer, "t/p1").await.unwrap();
    let queued = other.append_with(|_| entry("b", 1)).unwrap();
    let _thief = SharedLedger::open(&env.writer("thief", config()), "t/p1")
        .await
        .unwrap();
    assert!(!other.close_settled().await);
    assert!(matches!(
        queued.wait().await,
        Err(StorageError::Fenced { .. })
    ));
}

#[tokio::test]
async fn two_writers_racing_for_one_ledger_get_distinct_epochs_and_one_commits() {
    let env = Env::new();
    let a = env.writer("a", config());
    let b = env.writer("b", config());
    let (la, lb) = tokio::join!(
        SharedLedger::open(&a, "t/p0"),
        SharedLedger::open(&b, "t/p0")
    );
    let (la, lb) = (la.unwrap(), lb.unwrap());
    assert_ne!(la.epoch(), lb.epoch());
    let (ra, rb) = tokio::join!(la.append(entry("a", 1)), lb.append(entry("b", 1)));
    // Only the later epoch holds the fence.
    let (winner, loser) = if la.epoch() > lb.epoch() {
        (ra, rb)
    } else {
        (rb, ra)
    };
    assert_eq!(winner.unwrap(), 0);
    assert!(matches!(loser, Err(StorageError::Fenced { .. })));
}

#[tokio::test]
async fn put_failures_are_retried_under_the_same_key() {
    let env = Env::new();
    let writer = env.writer("b1", config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    env.objects.faults().fail_puts.store(2, Ordering::Release);
    assert_eq!(ledger.append(entry("x", 1)).await.unwrap(), 0);
    assert_eq!(writer.counters().put_failures.load(Ordering::Relaxed), 2);
    // A PUT whose answer is lost: the retry finds the object, compares it, and commits.
    env.objects
        .faults()
        .fail_puts_after_write
        .store(1, Ordering::Release);
    assert_eq!(ledger.append(entry("y", 1)).await.unwrap(), 1);
    assert_eq!(env.wal_objects().await.len(), 2);
    assert_eq!(
        read_all(&ledger).await,
        vec![(0, "x".to_string()), (1, "y".to_string())]
    );
}

#[tokio::test]
async fn a_commit_whose_answer_was_lost_is_recognised_not_duplicated() {
    let env = Env::new();
    let writer = env.writer("b1", config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    env.metadata.fail_txns.store(1, Ordering::Release);
    assert_eq!(ledger.append(entry("x", 1)).await.unwrap(), 0);
    env.metadata
        .fail_txns_after_commit
        .store(1, Ordering::Release);
    assert_eq!(ledger.append(entry("y", 1)).await.unwrap(), 1);
    assert_eq!(ledger.append(entry("z", 1)).await.unwrap(), 2);
    let reopened = SharedLedger::open(&env.writer("b2", config()), "t/p0")
        .await
        .unwrap();
    assert_eq!(reopened.end_index(), 3);
    assert_eq!(read_all(&reopened).await.len(), 3);
}

#[tokio::test]
async fn a_stalled_store_fails_appends_after_the_timeout_and_acknowledges_nothing() {
    let env = Env::new();
    let writer = env.writer("b1", config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    ledger.append(entry("ok", 1)).await.unwrap();
    env.objects.stall(&[FaultOp::Put]);
    let waits: Vec<_> = (0..3)
        .map(|i| ledger.append_with(|_| entry(&format!("s{i}"), 1)).unwrap())
        .collect();
    for w in waits {
        let result = w.wait().await;
        assert!(
            matches!(result, Err(StorageError::ObjectStore { .. })),
            "{result:?}"
        );
    }
    assert_eq!(ledger.end_index(), 1, "nothing false is readable");
    assert_eq!(writer.pending_bytes(), 0, "memory is released");
    // The ledger refuses appends until it is reopened (indexes 1..4 were handed out).
    assert!(matches!(
        ledger.append_with(|_| entry("n", 1)),
        Err(StorageError::Failed { .. })
    ));
    env.objects.release();
    let reopened = SharedLedger::open(&writer, "t/p0").await.unwrap();
    assert_eq!(reopened.end_index(), 1);
    assert_eq!(reopened.append(entry("again", 1)).await.unwrap(), 1);
}

#[tokio::test]
async fn an_unreachable_metadata_store_fails_appends_after_the_timeout() {
    let env = Env::new();
    let writer = env.writer("b1", config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    env.metadata.fail_txns.store(u64::MAX, Ordering::Release);
    let result = ledger.append(entry("x", 1)).await;
    assert!(
        matches!(result, Err(StorageError::Metadata { .. })),
        "{result:?}"
    );
    env.metadata.fail_txns.store(0, Ordering::Release);
    // The object was written and never committed: an orphan, invisible to readers.
    assert_eq!(env.wal_objects().await.len(), 1);
    let reopened = SharedLedger::open(&writer, "t/p0").await.unwrap();
    assert_eq!(reopened.end_index(), 0);
}

#[tokio::test]
async fn the_pending_bytes_limit_pushes_back() {
    let env = Env::new();
    let writer = env.writer(
        "b1",
        WalConfig {
            object_bytes_max: 4096,
            pending_bytes_max: 8192,
            entry_bytes_max: 4096,
            ..config()
        },
    );
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    env.objects.stall(&[FaultOp::Put]);
    let big = "x".repeat(3000);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        match ledger.append_with(|_| entry(&big, 1)) {
            Ok(w) => accepted.push(w),
            Err(StorageError::QueueFull { .. }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        refused > 0 && accepted.len() <= 3,
        "{} accepted",
        accepted.len()
    );
    env.objects.release();
    for w in accepted {
        w.wait().await.unwrap();
    }
}

#[tokio::test]
async fn killed_between_put_and_commit_leaves_an_orphan_and_no_gap() {
    let env = Env::new();
    let writer = env.writer("b1", config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    ledger.append(entry("a", 1)).await.unwrap();
    // The commit never happens: the process dies after the PUT.
    env.metadata.fail_txns.store(u64::MAX, Ordering::Release);
    let lost = ledger.append_with(|_| entry("unacked", 1)).unwrap();
    // Bounded: wait for the PUT, not for a time.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while env.wal_objects().await.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the unacknowledged entry's WAL object was never written"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    writer.abort();
    drop(lost);
    env.metadata.fail_txns.store(0, Ordering::Release);

    let next = env.writer("b2", config());
    let taken = SharedLedger::open(&next, "t/p0").await.unwrap();
    assert_eq!(
        taken.end_index(),
        1,
        "the unacknowledged entry is not there"
    );
    // Its index is given again: it was never acknowledged, so nothing is reused.
    assert_eq!(taken.append(entry("b", 1)).await.unwrap(), 1);
    assert_eq!(
        read_all(&taken).await,
        vec![(0, "a".to_string()), (1, "b".to_string())]
    );
}

#[tokio::test]
async fn a_gap_in_the_committed_ranges_refuses_to_open() {
    let env = Env::new();
    let writer = env.writer("b1", config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    for i in 0..3 {
        ledger.append(entry(&format!("m{i}"), 1)).await.unwrap();
    }
    env.metadata
        .delete(&records::range_key(ROOT, "t/p0", 1), Expect::Any)
        .await
        .unwrap();
    let opened = SharedLedger::open(&writer, "t/p0").await;
    assert!(
        matches!(
            opened,
            Err(StorageError::Gap {
                expected: 1,
                found: 2,
                ..
            })
        ),
        "{opened:?}"
    );
}

#[tokio::test]
async fn corrupted_and_truncated_objects_are_errors_not_data() {
    let env = Env::new();
    let writer = env.writer("b1", config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    ledger.append(entry("hello world", 1)).await.unwrap();
    writer.close().await;
    // Flip a payload byte in the stored object.
    let object = env.wal_objects().await.remove(0);
    let mut bytes = env
        .objects
        .get(&object)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    env.objects.put(&object, bytes.into()).await.unwrap();

    let reader = env.writer("b2", config());
    let opened = SharedLedger::open(&reader, "t/p0").await.unwrap();
    let read = opened.read(0, 1 << 20, 10).await;
    assert!(
        matches!(read, Err(StorageError::Corrupt { .. })),
        "{read:?}"
    );

    env.objects
        .faults()
        .short_reads
        .store(true, Ordering::Release);
    let other = SharedLedger::open(&reader, "t/p0").await.unwrap();
    let read = other.read(0, 1 << 20, 10).await;
    assert!(
        matches!(read, Err(StorageError::Corrupt { .. })),
        "{read:?}"
    );
}

#[tokio::test]
async fn reads_respect_budgets_and_bounds() {
    let env = Env::new();
    let writer = env.writer("b1", config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    let waits: Vec<_> = (0..20)
        .map(|i| {
            ledger
                .append_with(|_| entry(&format!("m{i:02}"), 1))
                .unwrap()
        })
        .collect();
    for w in waits {
        w.wait().await.unwrap();
    }
    assert_eq!(
        ledger.read(0, 1, 100).await.unwrap().len(),
        1,
        "at least one"
    );
    assert_eq!(ledger.read(0, 1 << 20, 7).await.unwrap().len(), 7);
    assert_eq!(ledger.read(20, 1 << 20, 7).await.unwrap().len(), 0);
    assert!(matches!(
        ledger.read(21, 1 << 20, 7).await,
        Err(StorageError::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        ledger.append_with(|_| NewEntry {
            message_count: 0,
            ..entry("zero", 1)
        }),
        Err(StorageError::InvalidEntry { .. })
    ));
    let stats = ledger.stats();
    assert_eq!(
        (stats.end_index, stats.next_index, stats.epoch),
        (20, 20, 1)
    );
    assert!(stats.cached_bytes > 0);
}

#[test]
fn config_limits_are_checked() {
    assert!(WalConfig::default().validate().is_ok());
    for bad in [
        WalConfig {
            flush_interval_ms: 0,
            ..WalConfig::default()
        },
        WalConfig {
            object_bytes_max: 10,
            ..WalConfig::default()
        },
        WalConfig {
            pending_bytes_max: 1,
            ..WalConfig::default()
        },
        WalConfig {
            commit_timeout_ms: 1,
            ..WalConfig::default()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

pub(super) fn sealing_config() -> WalConfig {
    WalConfig {
        seal_bytes: 4096,
        gc_grace_ms: 1000,
        ..config()
    }
}

/// Appends `rounds` entries of ~1 KiB one commit at a time.
async fn fill(ledger: &SharedLedger, from: u64, rounds: u64) {
    for i in from..from + rounds {
        let text = format!("{i:04}-{}", "x".repeat(1000));
        assert_eq!(ledger.append(entry(&text, 1)).await.unwrap(), i);
    }
}

/// Waits (bounded) until `done` holds.
pub(super) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen within 5 s");
}

/// A writer whose clock runs an hour ahead, so every object is past the grace period.
pub(super) fn collector(env: &Env) -> WalWriter {
    let clock = crate::ManualClock::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            + 3_600_000,
    );
    WalWriter::start(
        "gc",
        ROOT,
        env.objects.clone(),
        env.metadata.clone(),
        sealing_config(),
        Arc::new(clock),
    )
    .unwrap()
}

#[tokio::test]
async fn committed_chunks_are_sealed_into_segments_and_read_back_after_a_takeover() {
    let env = Env::new();
    let writer = env.writer("b1", sealing_config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    fill(&ledger, 0, 20).await;
    eventually("a seal", || {
        writer.counters().seals.load(Ordering::Relaxed) >= 2
    })
    .await;
    let stats = ledger.stats();
    assert!(stats.segments >= 2, "{stats:?}");
    assert!(stats.unsealed_chunks < 20, "{stats:?}");
    let unsealed_records = env
        .metadata
        .list_children(&format!("{ROOT}/t/p0/ranges"))
        .await
        .unwrap()
        .len() as u64;
    assert_eq!(unsealed_records, stats.unsealed_chunks);
    assert_eq!(read_all(&ledger).await.len(), 20);

    let next = env.writer("b2", sealing_config());
    let taken = SharedLedger::open(&next, "t/p0").await.unwrap();
    assert_eq!(taken.end_index(), 20);
    let all = read_all(&taken).await;
    assert_eq!(all.len(), 20);
    for (i, (index, text)) in all.iter().enumerate() {
        assert_eq!(*index, i as u64);
        assert!(text.starts_with(&format!("{i:04}-")));
    }
    assert_eq!(taken.stats().segments, stats.segments);
    fill(&taken, 20, 3).await;
}

#[tokio::test]
async fn garbage_collection_deletes_sealed_and_orphaned_objects_only() {
    let env = Env::new();
    let writer = env.writer("b1", sealing_config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    let other = SharedLedger::open(&writer, "t/p1").await.unwrap();
    fill(&ledger, 0, 12).await;
    other.append(entry("kept", 1)).await.unwrap();
    eventually("a seal", || {
        writer.counters().seals.load(Ordering::Relaxed) >= 1
    })
    .await;
    // An orphan: a WAL object whose commit never happened.
    env.metadata.fail_txns.store(u64::MAX, Ordering::Release);
    assert!(other.append(entry("lost", 1)).await.is_err());
    env.metadata.fail_txns.store(0, Ordering::Release);
    let before = env.wal_objects().await.len();

    // Young objects are kept whatever they hold.
    let young = collect_garbage(&writer).await.unwrap();
    assert_eq!(
        (young.wal_objects_deleted, young.segment_objects_deleted),
        (0, 0)
    );

    let gc = collector(&env);
    let outcome = collect_garbage(&gc).await.unwrap();
    // The orphan, and at least one object whose chunks were all sealed.
    assert!(ledger.stats().segments >= 1);
    assert!(outcome.wal_objects_deleted >= 2, "{outcome:?}");
    assert_eq!(outcome.segment_objects_deleted, 0);
    assert_eq!(
        env.wal_objects().await.len(),
        before - outcome.wal_objects_deleted as usize
    );
    // Everything committed is still readable, from a fresh writer (no cache).
    let reader = env.writer("b2", sealing_config());
    assert_eq!(
        read_all(&SharedLedger::open(&reader, "t/p0").await.unwrap())
            .await
            .len(),
        12
    );
    assert_eq!(
        read_all(&SharedLedger::open(&reader, "t/p1").await.unwrap()).await,
        vec![(0, "kept".to_string())]
    );
    // A second pass finds nothing more.
    let again = collect_garbage(&gc).await.unwrap();
    assert_eq!(
        (again.wal_objects_deleted, again.segment_objects_deleted),
        (0, 0)
    );
}

#[tokio::test]
async fn a_seal_that_is_not_recorded_leaves_the_chunks_and_an_orphan_segment() {
    let env = Env::new();
    let writer = env.writer("b1", sealing_config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    fill(&ledger, 0, 3).await;
    // The seal's upload succeeds and its record fails (a kill between the two): commits of
    // new chunks go through, the seal's transaction does not.
    let inner = ledger.inner_for_test();
    env.metadata.fail_txns.store(1, Ordering::Release);
    assert!(super::seal::seal_once(&inner).await.is_err());
    let segments: Vec<_> = {
        use futures_util::TryStreamExt;
        env.objects
            .list(Some(&ObjectPath::from("segments")))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .unwrap()
    };
    assert_eq!(segments.len(), 1, "the orphan segment object");
    assert_eq!(ledger.stats().segments, 0);
    let reader = env.writer("b2", sealing_config());
    let taken = SharedLedger::open(&reader, "t/p0").await.unwrap();
    assert_eq!(read_all(&taken).await.len(), 3);
    let outcome = collect_garbage(&collector(&env)).await.unwrap();
    assert_eq!(outcome.segment_objects_deleted, 1);
    assert_eq!(
        outcome.wal_objects_deleted, 0,
        "the chunks still refer to them"
    );
    // The new writer seals for real.
    assert!(super::seal::seal_once(&taken.inner_for_test())
        .await
        .unwrap()
        .is_some());
    assert_eq!(taken.stats().segments, 1);
    assert_eq!(read_all(&taken).await.len(), 3);
    // The old writer's seal is refused: it lost the fence.
    assert!(matches!(
        super::seal::seal_once(&inner).await,
        Err(StorageError::Fenced { .. })
    ));
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Step {
    /// Appends `n` entries to ledger `ledger` and waits for their outcome.
    Append { ledger: usize, n: usize },
    /// The next `k` PUTs fail before reaching the store.
    FailPuts(u64),
    /// The next PUT reaches the store and its answer is lost.
    LosePutAnswer,
    /// The next `k` metadata transactions fail (unreachable).
    FailTxns(u64),
    /// The next transaction commits and its answer is lost.
    LoseTxnAnswer,
    /// A new writer takes ledger `ledger` over (the old one is not told).
    Takeover { ledger: usize },
    /// Seals what ledger `ledger` has.
    Seal { ledger: usize },
    /// Runs the garbage collector as if an hour had passed.
    Collect,
    /// Moves ledger `ledger`'s start to `back` before its end.
    Truncate { ledger: usize, back: u64 },
    /// Retention by size (a few KiB) on ledger `ledger`.
    Retain { ledger: usize },
    /// Acknowledges cumulatively, on cursor `c` of ledger `ledger`, up to `back` before its end.
    Ack { ledger: usize, back: u64 },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (0..3usize, 1..6usize).prop_map(|(ledger, n)| Step::Append { ledger, n }),
        1 => (1..3u64).prop_map(Step::FailPuts),
        1 => Just(Step::LosePutAnswer),
        1 => (1..3u64).prop_map(Step::FailTxns),
        1 => Just(Step::LoseTxnAnswer),
        1 => (0..3usize).prop_map(|ledger| Step::Takeover { ledger }),
        1 => (0..3usize).prop_map(|ledger| Step::Seal { ledger }),
        1 => Just(Step::Collect),
        1 => (0..3usize, 0..4u64).prop_map(|(ledger, back)| Step::Truncate { ledger, back }),
        1 => (0..3usize).prop_map(|ledger| Step::Retain { ledger }),
        2 => (0..3usize, 0..4u64).prop_map(|(ledger, back)| Step::Ack { ledger, back }),
    ]
}

async fn run_model(steps: Vec<Step>) {
    let env = Env::new();
    let config = WalConfig {
        commit_timeout_ms: 300,
        seal_bytes: 4096,
        gc_grace_ms: 600,
        ..config()
    };
    let names = ["m/p0", "m/p1", "m/p2"];
    let mut writers = vec![env.writer("w0", config.clone())];
    let mut ledgers = Vec::new();
    for name in names {
        ledgers.push(SharedLedger::open(&writers[0], name).await.unwrap());
    }
    let mut all = ledgers.clone();
    // What each ledger acknowledged: index -> payload.
    let mut acked: Vec<std::collections::BTreeMap<u64, String>> = vec![Default::default(); 3];
    let mut counter = 0u64;
    // The highest start each ledger reported, and its cursor's state after the last write
    // known to be the last committed (`None` after a write that failed: it may be committed).
    let mut starts = [0u64; 3];
    let mut cursors: Vec<Option<crate::CursorState>> = vec![None; 3];
    for step in steps {
        match step {
            Step::Append { ledger, n } => {
                let mut waits = Vec::new();
                for _ in 0..n {
                    counter += 1;
                    let text = format!("e{counter}");
                    if let Ok(w) = ledgers[ledger].append_with(|_| entry(&text, 1)) {
                        waits.push((text, w));
                    }
                }
                for (text, w) in waits {
                    if let Ok(index) = w.wait().await {
                        assert!(acked[ledger].insert(index, text).is_none(), "index reused");
                    }
                }
                // A failed ledger is reopened by the newest writer, as a broker would.
                if ledgers[ledger].is_failed() {
                    let writer = writers.last().unwrap();
                    if let Ok(reopened) = SharedLedger::open(writer, names[ledger]).await {
                        all.push(reopened.clone());
                        ledgers[ledger] = reopened;
                    }
                }
            }
            Step::FailPuts(k) => env.objects.faults().fail_puts.store(k, Ordering::Release),
            Step::LosePutAnswer => env
                .objects
                .faults()
                .fail_puts_after_write
                .store(1, Ordering::Release),
            Step::FailTxns(k) => env.metadata.fail_txns.store(k, Ordering::Release),
            Step::LoseTxnAnswer => env
                .metadata
                .fail_txns_after_commit
                .store(1, Ordering::Release),
            Step::Takeover { ledger } => {
                let writer = env.writer(&format!("w{}", writers.len()), config.clone());
                if let Ok(taken) = SharedLedger::open(&writer, names[ledger]).await {
                    all.push(taken.clone());
                    ledgers[ledger] = taken;
                }
                writers.push(writer);
            }
            Step::Seal { ledger } => {
                let _ = super::seal::seal_once(&ledgers[ledger].inner_for_test()).await;
            }
            Step::Collect => {
                // The collector's clock runs an hour ahead, so first let background seals
                // finish: in real time the grace period covers them.
                eventually("seals to finish", || {
                    all.iter()
                        .all(|l| !l.inner_for_test().sealing.load(Ordering::Acquire))
                })
                .await;
                let _ = collect_garbage(&collector(&env)).await;
            }
            Step::Truncate { ledger, back } => {
                let l = &ledgers[ledger];
                if let Ok(start) = l.truncate_before(l.end_index().saturating_sub(back)).await {
                    starts[ledger] = starts[ledger].max(start);
                }
            }
            Step::Retain { ledger } => {
                if let Ok(outcome) = ledgers[ledger].apply_retention(None, Some(6000)).await {
                    starts[ledger] = starts[ledger].max(outcome.start_index);
                }
            }
            Step::Ack { ledger, back } => {
                let l = &ledgers[ledger];
                let result = match l.open_cursor("c", crate::CursorStart::Earliest).await {
                    Ok(_) if l.end_index() > back => {
                        l.ack_cumulative("c", l.end_index() - 1 - back).await
                    }
                    Ok(state) => Ok(state),
                    Err(e) => Err(e),
                };
                cursors[ledger] = result.ok();
            }
        }
    }
    // Faults off; a fresh writer takes every ledger over and must find exactly what was
    // acknowledged at its index, with no gap (unacknowledged entries may be there too: an
    // append whose commit answer was lost is committed but reported failed).
    env.objects.faults().fail_puts.store(0, Ordering::Release);
    env.objects
        .faults()
        .fail_puts_after_write
        .store(0, Ordering::Release);
    env.metadata.fail_txns.store(0, Ordering::Release);
    env.metadata
        .fail_txns_after_commit
        .store(0, Ordering::Release);
    let last = env.writer("final", config);
    for (l, name) in names.iter().enumerate() {
        let ledger = SharedLedger::open(&last, name).await.unwrap();
        let start = ledger.start_index();
        assert!(start >= starts[l], "the start never goes back");
        if start > 0 {
            assert!(matches!(
                ledger.read(start - 1, 1 << 20, 1).await,
                Err(StorageError::IndexOutOfRange { .. })
            ));
        }
        if let Some(state) = &cursors[l] {
            assert_eq!(ledger.cursor("c").as_ref(), Some(state), "cursor of {name}");
        }
        let read = read_all(&ledger).await;
        for (i, (index, _)) in read.iter().enumerate() {
            assert_eq!(*index, start + i as u64, "indexes are continuous");
        }
        let found: std::collections::BTreeMap<u64, String> = read.into_iter().collect();
        for (index, text) in acked[l].range(start..) {
            assert_eq!(
                found.get(index),
                Some(text),
                "acknowledged entry at {index} of {name}"
            );
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    /// Any mix of appends, failed or lost PUTs and commits, takeovers by writers that do not
    /// tell the old one, seals, garbage collection, truncation, retention and cursor acks:
    /// every acknowledged entry at or above the start is readable at its index exactly once,
    /// indexes are continuous from the start, the start never goes back, and a cursor holds
    /// its last committed state.
    #[test]
    fn acknowledged_entries_survive_faults_takeovers_seals_and_gc(
        steps in proptest::collection::vec(step(), 1..25)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run_model(steps));
    }
}
