//! Log compaction of a local ledger, through the public API, with a toy payload codec: the
//! latest value of every key stays readable at its original index, indexes only increase,
//! nothing above the cleaned range changes, tombstones go after `delete_retention_ms`, reads
//! and time lookups work across gaps, and a crash at each step of the swap leaves the old or
//! the new log.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use magnetar_storage::compaction::{CompactionRecord, EntryRecords};
use magnetar_storage::*;
use proptest::prelude::*;

/// A toy format: u16 count, then per record: u32 offset delta, i16 key length (-1: none), key,
/// i16 value length (-1: null), value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    delta: u32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

fn encode(records: &[Rec]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u16(records.len() as u16);
    for r in records {
        out.put_u32(r.delta);
        for part in [&r.key, &r.value] {
            match part {
                None => out.put_i16(-1),
                Some(b) => {
                    out.put_i16(b.len() as i16);
                    out.put_slice(b);
                }
            }
        }
    }
    out.freeze()
}

fn decode(mut b: &[u8]) -> Result<Vec<Rec>, String> {
    use bytes::Buf;
    let short = || "short".to_string();
    if b.len() < 2 {
        return Err(short());
    }
    let n = b.get_u16();
    let mut out = Vec::new();
    for _ in 0..n {
        if b.len() < 4 {
            return Err(short());
        }
        let delta = b.get_u32();
        let mut parts = [None, None];
        for part in &mut parts {
            if b.len() < 2 {
                return Err(short());
            }
            let len = b.get_i16();
            if len >= 0 {
                if b.len() < len as usize {
                    return Err(short());
                }
                *part = Some(b[..len as usize].to_vec());
                b.advance(len as usize);
            }
        }
        let [key, value] = parts;
        out.push(Rec { delta, key, value });
    }
    Ok(out)
}

struct ToyCodec;

impl CompactionCodec for ToyCodec {
    fn records(&self, header: &EntryHeader, payload: &Bytes) -> Result<EntryRecords, String> {
        if payload.first() == Some(&0xff) {
            return Ok(EntryRecords::KeepWhole); // a "control" entry
        }
        Ok(EntryRecords::Records(
            decode(payload)?
                .into_iter()
                .map(|r| CompactionRecord {
                    index: header.first_index + u64::from(r.delta),
                    key: r.key.map(Bytes::from),
                    tombstone: r.value.is_none(),
                })
                .collect(),
        ))
    }

    fn retain(
        &self,
        _header: &EntryHeader,
        payload: &Bytes,
        keep: &[bool],
    ) -> Result<Bytes, String> {
        let recs = decode(payload)?;
        let kept: Vec<Rec> = recs
            .into_iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(r, _)| r)
            .collect();
        Ok(encode(&kept))
    }
}

fn config(segment_bytes: u64) -> LedgerConfig {
    LedgerConfig {
        segment_bytes,
        index_interval_bytes: 128,
        ..LedgerConfig::default()
    }
}

/// One produced batch: records (key, value) with consecutive deltas.
type Batch = Vec<(Option<u8>, Option<u16>)>;

/// A batch in the toy format: key `k` is `[b'k', k]`, value `v` its big-endian bytes.
fn batch_payload(batch: &Batch) -> Bytes {
    let records: Vec<Rec> = batch
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Rec {
            delta: i as u32,
            key: k.map(|k| vec![b'k', k]),
            value: v.map(|v| v.to_be_bytes().to_vec()),
        })
        .collect();
    encode(&records)
}

async fn append_batch(ledger: &ManagedLedger, batch: &Batch, producer: Option<i64>) -> u64 {
    let entry = NewEntry {
        payload: batch_payload(batch),
        message_count: batch.len() as u32,
        max_timestamp_ms: 1_000,
        format: PayloadFormat::Kafka,
        producer: producer.map(|p| ProducerInfo {
            producer_id: p,
            epoch: 0,
            base_sequence: 0,
            txn: Default::default(),
        }),
        first_index_at: None,
    };
    ledger.append(entry).await.unwrap().0
}

/// Every readable record: index -> (key, value).
type Log = BTreeMap<u64, (Option<Vec<u8>>, Option<Vec<u8>>)>;

async fn read_log(ledger: &ManagedLedger) -> Log {
    let mut out = Log::new();
    let mut next = ledger.start_index();
    let mut last_first = None;
    for _ in 0..100_000 {
        if next >= ledger.end_index() {
            break;
        }
        let entries = ledger.read(next, 4096, 16).await.unwrap();
        assert!(!entries.is_empty(), "a read below the end returns an entry");
        for e in &entries {
            assert!(
                last_first.is_none_or(|l| e.header.first_index > l),
                "entries come in increasing index order"
            );
            last_first = Some(e.header.first_index);
            if e.payload.first() == Some(&0xff) {
                continue;
            }
            for r in decode(&e.payload).unwrap() {
                let index = e.header.first_index + u64::from(r.delta);
                assert!(index < e.header.end_index(), "a record inside its entry");
                assert!(out.insert(index, (r.key, r.value)).is_none());
            }
        }
        next = entries.last().unwrap().header.end_index();
    }
    out
}

fn latest_by_key(log: &Log) -> BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)> {
    let mut m = BTreeMap::new();
    for (i, (k, v)) in log {
        if let Some(k) = k {
            m.insert(k.clone(), (*i, v.clone()));
        }
    }
    m
}

fn policy() -> CompactionPolicy {
    CompactionPolicy {
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: u64::MAX,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: u64::MAX / 4,
        force: true,
    }
}

fn codec() -> Arc<dyn CompactionCodec> {
    Arc::new(ToyCodec)
}

/// Checks the compacted log against the original: same record at every index it still has,
/// the latest value of every key kept (tombstones too unless `tombstones_gone`), nothing at or
/// above `cleaned_through` changed, at most one record per key below it.
fn check_compacted(before: &Log, after: &Log, cleaned_through: u64, tombstones_gone: bool) {
    for (i, rec) in after {
        assert_eq!(
            before.get(i),
            Some(rec),
            "record at {i} differs from the original"
        );
    }
    for (i, rec) in before.range(cleaned_through..) {
        assert_eq!(
            after.get(i),
            Some(rec),
            "record at {i} above the cleaned range changed"
        );
    }
    let latest_before = latest_by_key(before);
    let latest_after = latest_by_key(after);
    for (k, (i, v)) in &latest_before {
        let tombstone_gone = tombstones_gone && v.is_none() && *i < cleaned_through;
        if tombstone_gone {
            assert!(
                !latest_after.contains_key(k),
                "key {k:?}: deleted key still there"
            );
        } else {
            assert_eq!(latest_after.get(k), Some(&(*i, v.clone())), "key {k:?}");
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (_, (k, _)) in after.range(..cleaned_through) {
        if let Some(k) = k {
            assert!(
                seen.insert(k.clone()),
                "key {k:?} appears twice in the cleaned range"
            );
        }
    }
    // Key-less records are never removed.
    for (i, (k, _)) in before.range(..cleaned_through) {
        if k.is_none() {
            assert!(after.contains_key(i), "key-less record {i} removed");
        }
    }
}

async fn fill(ledger: &ManagedLedger, batches: &[Batch]) {
    for (n, b) in batches.iter().enumerate() {
        append_batch(ledger, b, (n % 5 == 0).then_some(n as i64 % 3)).await;
    }
}

fn batches_strategy() -> impl Strategy<Value = Vec<Batch>> {
    let record = (
        prop::option::weighted(0.95, 0u8..12),
        prop::option::weighted(0.85, any::<u16>()),
    );
    prop::collection::vec(prop::collection::vec(record, 1..5), 10..120)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// The model check: a random keyed log (tombstones, key-less records), compacted with a
    /// roomy and with a tiny key map (several passes), then reopened.
    #[test]
    fn compacted_log_matches_the_model(batches in batches_strategy(), tiny_map in any::<bool>()) {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let ledger = ManagedLedger::open(dir.path(), config(400), Arc::new(SystemClock)).unwrap();
            fill(&ledger, &batches).await;
            let before = read_log(&ledger).await;
            let limits = CleanerLimits {
                dedupe_buffer_bytes: if tiny_map { 1 } else { 1 << 20 },
                ..CleanerLimits::default()
            };
            let outcome = ledger.compact(codec(), policy(), limits).await.unwrap();
            let cleaned = ledger.cleaned_through();
            let active_base = ledger.stats().segments.last().unwrap().base_index;
            assert_eq!(cleaned, if outcome.passes > 0 { active_base } else { cleaned });
            let after = read_log(&ledger).await;
            check_compacted(&before, &after, cleaned, false);
            assert!(outcome.bytes_after <= outcome.bytes_before);
            ledger.close().await.unwrap();
            drop(ledger);
            let reopened = ManagedLedger::open(dir.path(), config(400), Arc::new(SystemClock)).unwrap();
            assert_eq!(reopened.stats().recovery.index_rebuilds, vec![]);
            assert_eq!(read_log(&reopened).await, after, "reopened log differs");
            // A second run finds nothing new to do and changes nothing.
            reopened.compact(codec(), policy(), limits).await.unwrap();
            assert_eq!(read_log(&reopened).await, after);
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_go_after_delete_retention_and_reads_cross_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let ledger = ManagedLedger::open(dir.path(), config(300), clock.clone()).unwrap();
    // Key 1 written 20 times, key 2 written then deleted, key 3 once.
    let mut batches: Vec<Batch> = (0..20).map(|v| vec![(Some(1), Some(v))]).collect();
    batches.push(vec![(Some(2), Some(7))]);
    batches.push(vec![(Some(3), Some(9)), (Some(2), None)]);
    batches.extend((20..40).map(|v| vec![(Some(1), Some(v))]));
    for b in &batches {
        append_batch(&ledger, b, None).await;
    }
    let before = read_log(&ledger).await;
    let mut p = policy();
    p.delete_retention_ms = 60_000;
    ledger
        .compact(codec(), p, CleanerLimits::default())
        .await
        .unwrap();
    let after = read_log(&ledger).await;
    let cleaned = ledger.cleaned_through();
    assert!(
        cleaned > 22,
        "the tombstone's segment is cleaned ({cleaned})"
    );
    check_compacted(&before, &after, cleaned, false);
    assert!(
        after
            .values()
            .any(|(k, v)| k.as_deref() == Some(b"k\x02") && v.is_none()),
        "the tombstone stays until delete_retention_ms"
    );
    // A read at a compacted-away index returns the next batch.
    let gone = (0..cleaned).find(|i| !after.contains_key(i)).unwrap();
    let next = ledger.read(gone, 1 << 20, 1).await.unwrap();
    assert!(next[0].header.first_index > gone);
    // Time lookups still work.
    assert!(ledger.find_by_timestamp(0).await.unwrap().is_some());

    clock.advance_ms(61_000);
    let outcome = ledger
        .compact(codec(), p, CleanerLimits::default())
        .await
        .unwrap();
    assert_eq!(outcome.tombstones_removed, 1, "{outcome:?}");
    let after2 = read_log(&ledger).await;
    assert!(
        !after2.values().any(|(k, _)| k.as_deref() == Some(b"k\x02")),
        "a deleted key is gone after delete_retention_ms"
    );
    assert!(after2
        .values()
        .any(|(k, v)| k.as_deref() == Some(b"k\x03") && v.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_ratio_and_lag_decide_whether_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let ledger = ManagedLedger::open(dir.path(), config(300), clock.clone()).unwrap();
    for v in 0..30 {
        append_batch(&ledger, &vec![(Some((v % 3) as u8), Some(v))], None).await;
    }
    let mut p = policy();
    p.force = false;
    p.min_compaction_lag_ms = 10_000;
    let outcome = ledger
        .compact(codec(), p, CleanerLimits::default())
        .await
        .unwrap();
    assert_eq!(outcome.passes, 0, "everything is younger than the lag");
    assert_eq!(outcome.skipped.as_deref(), Some("nothing to compact"));
    clock.advance_ms(20_000);
    let (cleanable, ratio) = ledger.cleanable(10_000);
    assert!(cleanable > 0 && ratio > 0.99, "{cleanable} {ratio}");
    p.min_cleanable_dirty_ratio = 1.5;
    let outcome = ledger
        .compact(codec(), p, CleanerLimits::default())
        .await
        .unwrap();
    assert!(outcome.skipped.unwrap().contains("dirty ratio"));
    p.min_cleanable_dirty_ratio = 0.5;
    let outcome = ledger
        .compact(codec(), p, CleanerLimits::default())
        .await
        .unwrap();
    assert_eq!(outcome.passes, 1);
    assert!(outcome.bytes_reclaimed() > 0);
    assert!(
        outcome.segments_after < outcome.segments_before,
        "small segments merge"
    );
    assert_eq!(ledger.cleanable(10_000).0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_batch_of_a_producer_stays_as_an_empty_batch() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ManagedLedger::open(dir.path(), config(300), Arc::new(SystemClock)).unwrap();
    let first = append_batch(&ledger, &vec![(Some(1), Some(1))], Some(42)).await;
    for v in 2..20 {
        append_batch(&ledger, &vec![(Some(1), Some(v))], None).await;
    }
    let outcome = ledger
        .compact(codec(), policy(), CleanerLimits::default())
        .await
        .unwrap();
    assert_eq!(outcome.empty_batches_kept, 1);
    let e = ledger.read(first, 1 << 20, 1).await.unwrap();
    assert_eq!(e[0].header.first_index, first);
    assert_eq!(e[0].header.producer.unwrap().producer_id, 42);
    assert!(decode(&e[0].payload).unwrap().is_empty());
    // A control entry is kept whole.
    let dir = tempfile::tempdir().unwrap();
    let ledger = ManagedLedger::open(dir.path(), config(300), Arc::new(SystemClock)).unwrap();
    let control = NewEntry {
        payload: Bytes::from_static(&[0xff, 1, 2, 3]),
        message_count: 1,
        max_timestamp_ms: 0,
        format: PayloadFormat::Kafka,
        producer: None,
        first_index_at: None,
    };
    let (at, _) = ledger.append(control).await.unwrap();
    for v in 0..20 {
        append_batch(&ledger, &vec![(Some(1), Some(v))], None).await;
    }
    ledger
        .compact(codec(), policy(), CleanerLimits::default())
        .await
        .unwrap();
    let e = ledger.read(at, 1 << 20, 1).await.unwrap();
    assert_eq!(&e[0].payload[..], &[0xff, 1, 2, 3]);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        std::fs::copy(item.path(), to.join(item.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_each_step_of_the_swap_leaves_the_old_or_the_new_log() {
    let steps = [
        SwapStep::Staged,
        SwapStep::Committed,
        SwapStep::FirstRenamed,
        SwapStep::Renamed,
        SwapStep::Checkpointed,
    ];
    // The log, and what a complete compaction makes of it.
    let original = tempfile::tempdir().unwrap();
    {
        let ledger =
            ManagedLedger::open(original.path(), config(300), Arc::new(SystemClock)).unwrap();
        let batches: Vec<Batch> = (0..80u16)
            .map(|v| {
                vec![
                    (Some((v % 7) as u8), Some(v)),
                    (Some(100), (v % 9 == 0).then_some(v)),
                ]
            })
            .collect();
        fill(&ledger, &batches).await;
        ledger.close().await.unwrap();
    }
    let (before, after) = {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let ledger = ManagedLedger::open(dir.path(), config(300), Arc::new(SystemClock)).unwrap();
        let before = read_log(&ledger).await;
        let limits = CleanerLimits {
            passes_max: 1,
            ..CleanerLimits::default()
        };
        ledger.compact(codec(), policy(), limits).await.unwrap();
        (before, read_log(&ledger).await)
    };
    assert_ne!(before, after);
    for step in steps {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        {
            let ledger =
                ManagedLedger::open(dir.path(), config(300), Arc::new(SystemClock)).unwrap();
            ledger
                .compact_with_stop(codec(), policy(), CleanerLimits::default(), Some(step))
                .await
                .unwrap();
            // Dropped without close, as a kill would leave it.
        }
        let reopened = ManagedLedger::open(dir.path(), config(300), Arc::new(SystemClock)).unwrap();
        let log = read_log(&reopened).await;
        let expected = if matches!(step, SwapStep::Staged) {
            &before
        } else {
            &after
        };
        assert_eq!(&log, expected, "after a crash at {step:?}");
        let leftovers: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cleaned") || n == COMPACTION_MANIFEST_FILE_NAME)
            .collect();
        assert!(leftovers.is_empty(), "{step:?}: leftovers {leftovers:?}");
        // Compacting after the crash reaches the same log.
        reopened
            .compact(codec(), policy(), CleanerLimits::default())
            .await
            .unwrap();
        assert_eq!(
            read_log(&reopened).await,
            after,
            "{step:?}: compacting again"
        );
    }
}

/// Appends a transactional entry of producer `pid`: data records, or (with `mark` a marker and
/// no records) a control entry.
async fn append_txn(ledger: &ManagedLedger, batch: &Batch, pid: i64, mark: TxnMark) -> u64 {
    let payload = if mark.is_marker() {
        Bytes::from_static(&[0xff])
    } else {
        batch_payload(batch)
    };
    let entry = NewEntry {
        payload,
        message_count: batch.len().max(1) as u32,
        max_timestamp_ms: 1_000,
        format: PayloadFormat::Kafka,
        producer: Some(ProducerInfo {
            producer_id: pid,
            epoch: 0,
            base_sequence: 0,
            txn: mark,
        }),
        first_index_at: None,
    };
    ledger.append(entry).await.unwrap().0
}

/// Compaction of a log written transactionally: an aborted transaction's values never become a
/// key's latest and are dropped, a committed one's stay, nothing from the last stable offset on
/// is touched; retention stops at the last stable offset too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_transactions_are_dropped_and_the_last_stable_offset_bounds_cleaning() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ManagedLedger::open(dir.path(), config(200), Arc::new(SystemClock)).unwrap();
    // Committed: k1 = 1 (producer 7).
    append_txn(&ledger, &vec![(Some(1), Some(1))], 7, TxnMark::Data).await;
    append_txn(&ledger, &vec![], 7, TxnMark::Commit).await;
    // Aborted: k1 = 99 and k2 = 5 (producer 8).
    let aborted_first = append_txn(&ledger, &vec![(Some(1), Some(99))], 8, TxnMark::Data).await;
    append_txn(&ledger, &vec![(Some(2), Some(5))], 8, TxnMark::Data).await;
    let aborted_marker = append_txn(&ledger, &vec![], 8, TxnMark::Abort).await;
    for v in 0..20 {
        append_batch(&ledger, &vec![(Some(3), Some(v))], None).await;
    }
    // Open (producer 9): k1 = 100, then more data after it.
    let open_first = append_txn(&ledger, &vec![(Some(1), Some(100))], 9, TxnMark::Data).await;
    for v in 20..40 {
        append_batch(&ledger, &vec![(Some(3), Some(v))], None).await;
    }
    let before = read_log(&ledger).await;
    let segments_before = ledger.stats().segments.len();
    assert!(segments_before > 4, "the log spans several segments");
    let txns = TxnView {
        stable_end: open_first,
        aborted: vec![AbortedTxn {
            producer_id: 8,
            first_index: aborted_first,
            last_index: aborted_marker,
        }],
    };
    let outcome = ledger
        .compact_with_txns(codec(), policy(), CleanerLimits::default(), txns.clone())
        .await
        .unwrap();
    assert!(outcome.passes > 0);
    assert_eq!(outcome.aborted_entries_removed, 2);
    let cleaned = ledger.cleaned_through();
    assert!(
        cleaned <= open_first,
        "nothing at or after the last stable offset is cleaned"
    );
    let after = read_log(&ledger).await;
    assert_eq!(
        after.get(&0),
        Some(&(Some(vec![b'k', 1]), Some(1u16.to_be_bytes().to_vec()))),
        "the committed value of k1 is kept: the aborted k1 = 99 did not hide it"
    );
    assert!(
        !after.contains_key(&aborted_first),
        "aborted k1 = 99 dropped"
    );
    assert!(
        !after
            .values()
            .any(|(k, _)| k.as_deref() == Some(&[b'k', 2][..])),
        "k2 only ever had an aborted value"
    );
    for (i, rec) in before.range(open_first..) {
        assert_eq!(after.get(i), Some(rec), "record {i} after the LSO changed");
    }
    let segments = ledger.stats().segments;
    let holding_lso = segments
        .iter()
        .rposition(|s| s.base_index <= open_first)
        .unwrap();
    let out = ledger
        .apply_retention_until(Some(0), None, open_first)
        .await
        .unwrap();
    assert!(out.start_index <= open_first, "retention stops at the LSO");
    assert_eq!(
        ledger.stats().segments[0].base_index,
        segments[holding_lso].base_index,
        "the segment holding the open transaction's first entry is kept"
    );
    let out = ledger.apply_retention(Some(0), None).await.unwrap();
    assert!(out.start_index > open_first, "without the hold it goes");
}

/// A tiered store over `remote` (the kit's), with small blocks.
async fn tiered_store(
    dir: &std::path::Path,
    remote: Arc<dyn object_store::ObjectStore>,
) -> Arc<tiered::TieredSegmentStore> {
    let tiering = tiered::TieringConfig {
        block_bytes: 4 << 10,
        readahead_blocks: 1,
        cache_bytes: 16 << 10,
    };
    magnetar_testkit::storage::tiered_store(dir, remote, "ledgers/t/0", tiering)
        .await
        .0
}

/// Offloaded segments are compacted: read from their objects, rewritten locally and swapped in
/// (their objects deleted, their bases out of the offload manifest), offloaded again, and the
/// log reads the same after a reopen, also after a crash just past the swap's commit point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offloaded_segments_are_compacted_and_offloaded_again() {
    let remote: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::memory::InMemory::new());
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Batch> = (0..150u16)
        .map(|v| vec![(Some((v % 7) as u8), Some(v)), (Some(100), Some(v))])
        .collect();
    let (before, expected) = {
        let store = tiered_store(dir.path(), remote.clone()).await;
        let ledger = ManagedLedger::open_with_store(
            dir.path(),
            config(400),
            Arc::new(SystemClock),
            store.clone(),
        )
        .unwrap();
        for b in &batches {
            append_batch(&ledger, b, None).await;
        }
        let before = read_log(&ledger).await;
        let end = ledger.end_index();
        let s = store.clone();
        let off = tokio::task::spawn_blocking(move || s.offload_before(end).unwrap().unwrap())
            .await
            .unwrap();
        assert!(off.segments > 5, "sealed segments offloaded: {off:?}");
        let offloaded_before = store.offloaded().len();
        // A crash right after the commit point: the reopen finishes the swap.
        ledger
            .compact_with_stop(
                codec(),
                policy(),
                CleanerLimits::default(),
                Some(SwapStep::Committed),
            )
            .await
            .unwrap();
        drop(ledger);
        drop(store);
        let store = tiered_store(dir.path(), remote.clone()).await;
        let ledger = ManagedLedger::open_with_store(
            dir.path(),
            config(400),
            Arc::new(SystemClock),
            store.clone(),
        )
        .unwrap();
        let after = read_log(&ledger).await;
        check_compacted(&before, &after, ledger.cleaned_through(), false);
        assert!(
            ledger.cleaned_through() > 0,
            "the swap was finished on open"
        );
        assert!(
            store.offloaded().len() < offloaded_before,
            "compacted-away segments left the offload manifest"
        );
        let listed: Vec<_> = futures_util::StreamExt::collect::<Vec<_>>(remote.list(None)).await;
        let objects = listed
            .into_iter()
            .filter(|m| m.as_ref().unwrap().location.as_ref().ends_with(".seg"))
            .count();
        assert_eq!(
            objects,
            store.offloaded().len(),
            "their objects were deleted"
        );
        // Offloaded again by the next pass.
        let end = ledger.end_index();
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.offload_before(end).unwrap().unwrap())
            .await
            .unwrap();
        assert_eq!(read_log(&ledger).await, after);
        ledger.close().await.unwrap();
        (before, after)
    };
    let store = tiered_store(dir.path(), remote.clone()).await;
    let ledger =
        ManagedLedger::open_with_store(dir.path(), config(400), Arc::new(SystemClock), store)
            .unwrap();
    assert_eq!(read_log(&ledger).await, expected);
    check_compacted(&before, &expected, ledger.cleaned_through(), false);
}
