//! Log compaction of shared ledgers: the latest value per key stays at its original index,
//! tombstones go after the delete retention, the unsealed tail is untouched, a takeover reads
//! the compacted view, a fenced writer changes nothing, a crash before or after the swap
//! leaves the old or the new segment set, and garbage collection takes the replaced objects
//! only. With a toy payload codec (records `key=value`, `key!` a tombstone, `=value` no key).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use magnetar_metadata::MetadataStore;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;

use super::tests::{collector, entry, Env, ROOT};
use super::*;
use crate::compaction::{
    CleanerLimits, CompactionCodec, CompactionPolicy, CompactionRecord as Record, EntryRecords,
    TxnView,
};
use crate::{EntryHeader, ManualClock, NewEntry, StorageError};

struct ToyCodec;

/// One toy record: its offset in the entry, key, value (`None`: tombstone).
type Rec = (u64, Option<String>, Option<String>);

fn parse(payload: &[u8]) -> Vec<Rec> {
    String::from_utf8_lossy(payload)
        .split('\n')
        .filter(|r| !r.is_empty())
        .map(|r| {
            let (delta, r) = r.split_once('|').unwrap_or(("0", r));
            let delta = delta.parse().unwrap_or(0);
            if let Some(k) = r.strip_suffix('!') {
                (delta, Some(k.to_string()), None)
            } else {
                let (k, v) = r.split_once('=').unwrap_or(("", r));
                (
                    delta,
                    (!k.is_empty()).then(|| k.to_string()),
                    Some(v.to_string()),
                )
            }
        })
        .collect()
}

fn render(records: &[Rec]) -> String {
    records
        .iter()
        .map(|(d, k, v)| match (k, v) {
            (Some(k), None) => format!("{d}|{k}!\n"),
            (k, Some(v)) => format!("{d}|{}={v}\n", k.as_deref().unwrap_or("")),
            (None, None) => format!("{d}|=\n"),
        })
        .collect()
}

impl CompactionCodec for ToyCodec {
    fn records(&self, header: &EntryHeader, payload: &Bytes) -> Result<EntryRecords, String> {
        if payload.first() == Some(&b'#') {
            return Ok(EntryRecords::KeepWhole); // a "control" entry
        }
        Ok(EntryRecords::Records(
            parse(payload)
                .into_iter()
                .map(|(d, k, v)| Record {
                    index: header.first_index + d,
                    key: k.map(Bytes::from),
                    tombstone: v.is_none(),
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
        let kept: Vec<_> = parse(payload)
            .into_iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(r, _)| r)
            .collect();
        Ok(Bytes::from(render(&kept)))
    }
}

fn codec() -> Arc<dyn CompactionCodec> {
    Arc::new(ToyCodec)
}

fn forced() -> CompactionPolicy {
    CompactionPolicy {
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: u64::MAX,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: u64::MAX / 4,
        force: true,
    }
}

/// Sealing only when a test asks for it.
fn manual_sealing() -> WalConfig {
    WalConfig {
        seal_bytes: 1 << 30,
        gc_grace_ms: 1000,
        ..super::tests::config()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn writer_at(env: &Env, name: &str, clock: Arc<ManualClock>) -> WalWriter {
    WalWriter::start(
        name,
        ROOT,
        env.objects.clone(),
        env.metadata.clone(),
        manual_sealing(),
        clock,
    )
    .unwrap()
}

/// One entry of `records` (key, value; `None` value: tombstone) from `producer`.
fn keyed(records: &[(&str, Option<&str>)], producer: i64) -> NewEntry {
    let recs: Vec<Rec> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            (
                i as u64,
                (!k.is_empty()).then(|| k.to_string()),
                v.map(str::to_string),
            )
        })
        .collect();
    let mut e = entry(&render(&recs), records.len() as u32);
    if let Some(p) = e.producer.as_mut() {
        p.producer_id = producer;
    }
    e
}

async fn seal(ledger: &SharedLedger) {
    let sealed = super::seal::seal_once(&ledger.inner_for_test()).await;
    assert!(sealed.unwrap().is_some(), "nothing to seal");
}

/// Every readable record: index -> (key, value), read from the start in small reads; checks
/// that entries come in increasing index order and that every read below the end returns one.
async fn read_log(ledger: &SharedLedger) -> BTreeMap<u64, (Option<String>, Option<String>)> {
    let mut out = BTreeMap::new();
    let mut next = ledger.start_index();
    let mut last_first = None;
    for _ in 0..100_000 {
        if next >= ledger.end_index() {
            break;
        }
        let entries = ledger.read(next, 64, 3).await.expect("read");
        assert!(
            !entries.is_empty(),
            "a read at {next} below the end returns an entry"
        );
        for e in &entries {
            assert!(last_first.is_none_or(|l| e.header.first_index > l));
            assert!(e.header.end_index() > next || e.header.first_index >= next);
            last_first = Some(e.header.first_index);
            if e.payload.first() == Some(&b'#') {
                continue;
            }
            for (d, k, v) in parse(&e.payload) {
                assert!(d < u64::from(e.header.message_count));
                assert!(out.insert(e.header.first_index + d, (k, v)).is_none());
            }
        }
        next = entries.last().unwrap().header.end_index();
    }
    out
}

type Log = BTreeMap<u64, (Option<String>, Option<String>)>;

/// The latest (index, value) of every key.
fn latest(log: &Log) -> BTreeMap<String, (u64, Option<String>)> {
    let mut m = BTreeMap::new();
    for (i, (k, v)) in log {
        if let Some(k) = k {
            m.insert(k.clone(), (*i, v.clone()));
        }
    }
    m
}

async fn segment_records(env: &Env, ledger: &str) -> Vec<(String, Bytes)> {
    let path = format!("{ROOT}/{ledger}/segments");
    let mut out = Vec::new();
    for child in env.metadata.list_children(&path).await.unwrap() {
        let key = format!("{path}/{child}");
        let value = env.metadata.get(&key).await.unwrap().unwrap().value;
        out.push((key, value));
    }
    out
}

async fn segment_objects(env: &Env) -> Vec<String> {
    let mut all: Vec<String> = env
        .objects
        .list(Some(&ObjectPath::from("segments")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    all.sort();
    all
}

/// Three sealed segments of keyed updates (keys a..d, a tombstone for c, a keyless record, a
/// control entry) and an unsealed tail; returns the ledger's log as written.
async fn fill_keyed(ledger: &SharedLedger) -> Log {
    let rounds: [&[(&str, Option<&str>)]; 9] = [
        &[("a", Some("a1")), ("b", Some("b1"))],
        &[("c", Some("c1"))],
        &[("", Some("nokey1")), ("a", Some("a2"))],
        &[("b", Some("b2")), ("d", Some("d1"))],
        &[("c", None)],
        &[("a", Some("a3"))],
        &[("b", Some("b3"))],
        &[("d", Some("d2")), ("a", Some("a4"))],
        &[("b", Some("b4"))],
    ];
    for (i, round) in rounds.iter().enumerate() {
        ledger.append(keyed(round, 7)).await.unwrap();
        if i == 3 {
            ledger.append(entry("#marker", 1)).await.unwrap();
        }
        if i % 3 == 2 {
            seal(ledger).await;
        }
    }
    // The unsealed tail.
    ledger.append(keyed(&[("a", Some("a5"))], 7)).await.unwrap();
    ledger.append(keyed(&[("a", Some("a6"))], 7)).await.unwrap();
    read_log(ledger).await
}

/// The compacted log must hold, below `cleaned`, the latest record of every key there
/// (tombstones only if `tombstones_kept`) and every keyless record, each at its original
/// index; above it, exactly the original.
fn check_compacted(before: &Log, after: &Log, cleaned: u64, tombstones_kept: bool) {
    let below: Log = before
        .range(..cleaned)
        .map(|(i, r)| (*i, r.clone()))
        .collect();
    let latest_before = latest(&below);
    for (i, rec) in after {
        assert_eq!(before.get(i), Some(rec), "record at {i} is an original one");
    }
    for (i, rec) in before.range(cleaned..) {
        assert_eq!(
            after.get(i),
            Some(rec),
            "record at {i} above the cleaned part"
        );
    }
    for (i, (k, v)) in before.range(..cleaned) {
        let expect = match k {
            None => true,
            Some(k) => latest_before[k].0 == *i && (v.is_some() || tombstones_kept),
        };
        assert_eq!(after.contains_key(i), expect, "record at {i}: {k:?}={v:?}");
    }
}

#[tokio::test]
async fn compaction_keeps_the_latest_value_per_key_at_its_index_and_survives_a_takeover() {
    let env = Env::new();
    let writer = env.writer("b1", manual_sealing());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    let before = fill_keyed(&ledger).await;
    let ranges_before = env
        .metadata
        .list_children(&format!("{ROOT}/t/p0/ranges"))
        .await
        .unwrap();
    assert_eq!(ranges_before.len(), 2, "the unsealed tail");
    let stats = ledger.stats();
    assert_eq!(stats.segments, 3);
    let (dirty, ratio) = ledger.cleanable(0);
    assert!(dirty > 0 && ratio == 1.0, "{dirty} {ratio}");
    let tail_start = ledger.end_index() - 2;

    let outcome = ledger
        .compact(codec(), forced(), CleanerLimits::default())
        .await
        .unwrap();
    assert_eq!(outcome.passes, 1, "{outcome:?}");
    assert!(
        outcome.records_removed > 0 && outcome.bytes_reclaimed() > 0,
        "{outcome:?}"
    );
    assert_eq!(outcome.cleaned_through, tail_start, "all the sealed part");
    assert_eq!(ledger.cleaned_through(), tail_start);
    assert_eq!((outcome.segments_before, outcome.segments_after), (3, 3));
    let after = read_log(&ledger).await;
    check_compacted(&before, &after, tail_start, true);
    assert_eq!(
        latest(&after),
        latest(&before),
        "the latest value of every key"
    );
    // The unsealed tail is untouched.
    assert_eq!(
        env.metadata
            .list_children(&format!("{ROOT}/t/p0/ranges"))
            .await
            .unwrap(),
        ranges_before
    );
    assert_eq!(ledger.cleanable(0).0, 0);
    // A read at an index compacted away returns the next kept entry.
    let gone = (0..tail_start).find(|i| !after.contains_key(i)).unwrap();
    let next_kept = *after.range(gone..).next().unwrap().0;
    let read = ledger.read(gone, 1 << 20, 1).await.unwrap();
    assert!(read[0].header.first_index <= next_kept && read[0].header.end_index() > next_kept);
    // Time lookups cope with gaps (every entry has timestamp 1000).
    let found = ledger.find_by_timestamp(1000).await.unwrap().unwrap();
    assert_eq!(found.first_index, *after.keys().next().unwrap());

    // A takeover reads the compacted view and the compaction record.
    let next = env.writer("b2", manual_sealing());
    let taken = SharedLedger::open(&next, "t/p0").await.unwrap();
    assert_eq!(taken.epoch(), ledger.epoch() + 1);
    assert_eq!(read_log(&taken).await, after);
    assert_eq!(taken.cleaned_through(), tail_start);
    // A second compaction finds nothing dirty, and appending and compacting go on.
    let again = taken
        .compact(
            codec(),
            CompactionPolicy {
                force: false,
                ..forced()
            },
            CleanerLimits::default(),
        )
        .await
        .unwrap();
    assert_eq!(again.passes, 0, "{again:?}");
    taken.append(keyed(&[("a", Some("a7"))], 7)).await.unwrap();
    seal(&taken).await;
    taken.append(keyed(&[("b", Some("b5"))], 7)).await.unwrap();
    let before2 = read_log(&taken).await;
    let end = taken.end_index() - 1;
    let second = taken
        .compact(codec(), forced(), CleanerLimits::default())
        .await
        .unwrap();
    assert_eq!(second.passes, 1);
    let after2 = read_log(&taken).await;
    check_compacted(&before2, &after2, end, true);
    assert_eq!(
        after2
            .values()
            .filter(|(k, _)| k.as_deref() == Some("a"))
            .count(),
        1
    );
}

#[tokio::test]
async fn tombstones_go_after_the_delete_retention() {
    let env = Env::new();
    let clock = Arc::new(ManualClock::new(now_ms()));
    let writer = writer_at(&env, "b1", clock.clone());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    ledger
        .append(keyed(&[("k", Some("v1")), ("j", Some("w"))], 1))
        .await
        .unwrap();
    ledger.append(keyed(&[("k", None)], 2)).await.unwrap();
    ledger.append(keyed(&[("j", Some("w2"))], 3)).await.unwrap();
    seal(&ledger).await;
    ledger
        .append(keyed(&[("z", Some("tail"))], 3))
        .await
        .unwrap();
    let policy = CompactionPolicy {
        delete_retention_ms: 60_000,
        force: false,
        ..forced()
    };
    let first = ledger
        .compact(codec(), policy, CleanerLimits::default())
        .await
        .unwrap();
    assert_eq!(
        (first.passes, first.tombstones_removed),
        (1, 0),
        "{first:?}"
    );
    assert!(first.tombstones_due_ms.is_some());
    let log = read_log(&ledger).await;
    assert_eq!(
        log.get(&2),
        Some(&(Some("k".into()), None)),
        "the tombstone stays"
    );
    assert!(!log.contains_key(&0), "the value it deletes is gone");
    // Nothing dirty and no tombstone due: skipped.
    let idle = ledger
        .compact(codec(), policy, CleanerLimits::default())
        .await
        .unwrap();
    assert_eq!(idle.passes, 0, "{idle:?}");
    clock.advance_ms(60_001);
    let second = ledger
        .compact(codec(), policy, CleanerLimits::default())
        .await
        .unwrap();
    assert_eq!(
        (second.passes, second.tombstones_removed),
        (1, 1),
        "{second:?}"
    );
    let log = read_log(&ledger).await;
    assert!(!log.contains_key(&2), "the tombstone is gone: {log:?}");
    assert_eq!(log.get(&4), Some(&(Some("z".into()), Some("tail".into()))));
    // Producer 2's only entry stays as an empty batch (its producer state survives).
    let e = ledger.read(2, 1 << 20, 1).await.unwrap();
    assert_eq!(e[0].header.first_index, 2);
    assert!(e[0].payload.is_empty());
}

#[tokio::test]
async fn a_fenced_writer_cannot_compact_and_changes_nothing() {
    let env = Env::new();
    let writer = env.writer("b1", manual_sealing());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    let before = fill_keyed(&ledger).await;
    let records = segment_records(&env, "t/p0").await;
    let _taken = SharedLedger::open(&env.writer("b2", manual_sealing()), "t/p0")
        .await
        .unwrap();
    let result = ledger
        .compact(codec(), forced(), CleanerLimits::default())
        .await;
    assert!(
        matches!(result, Err(StorageError::Fenced { .. })),
        "{result:?}"
    );
    assert_eq!(segment_records(&env, "t/p0").await, records);
    assert_eq!(
        read_log(&ledger).await,
        before,
        "the old writer still reads the old set"
    );
    // Its uploads are garbage: the collector takes them, never a live object.
    let objects = segment_objects(&env).await;
    assert_eq!(objects.len(), 6, "3 live + 3 uploaded: {objects:?}");
    let gc = collect_garbage(&collector(&env)).await.unwrap();
    assert_eq!(gc.segment_objects_deleted, 3);
    let fresh = SharedLedger::open(&env.writer("b3", manual_sealing()), "t/p0")
        .await
        .unwrap();
    assert_eq!(read_log(&fresh).await, before);
}

#[tokio::test]
async fn a_crash_before_the_swap_keeps_the_old_set_and_after_it_the_new_one() {
    let env = Env::new();
    let writer = env.writer("b1", manual_sealing());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    let before = fill_keyed(&ledger).await;
    let records = segment_records(&env, "t/p0").await;
    let live = segment_objects(&env).await;

    // A crash between the uploads and the swap.
    ledger
        .compact_inner(
            codec(),
            forced(),
            CleanerLimits::default(),
            TxnView::default(),
            true,
        )
        .await
        .unwrap();
    assert_eq!(segment_records(&env, "t/p0").await, records);
    assert_eq!(segment_objects(&env).await.len(), 6);
    let reopened = SharedLedger::open(&env.writer("b2", manual_sealing()), "t/p0")
        .await
        .unwrap();
    assert_eq!(read_log(&reopened).await, before);
    assert_eq!(reopened.cleaned_through(), 0);
    let gc = collect_garbage(&collector(&env)).await.unwrap();
    assert_eq!(
        gc.segment_objects_deleted, 3,
        "the uploads nothing recorded"
    );
    assert_eq!(segment_objects(&env).await, live, "never a live one");

    // The swap transaction fails: nothing changes, and a retry works.
    env.metadata.fail_txns.store(1, Ordering::Release);
    assert!(reopened
        .compact(codec(), forced(), CleanerLimits::default())
        .await
        .is_err());
    assert_eq!(segment_records(&env, "t/p0").await, records);
    assert_eq!(read_log(&reopened).await, before);

    // The swap applies and its answer is lost: the ledger reads it back and uses the new set.
    env.metadata
        .fail_txns_after_commit
        .store(1, Ordering::Release);
    let outcome = reopened
        .compact(codec(), forced(), CleanerLimits::default())
        .await
        .unwrap();
    assert_eq!(outcome.passes, 1);
    let after = read_log(&reopened).await;
    check_compacted(&before, &after, reopened.cleaned_through(), true);
    assert_ne!(after, before);
    let taken = SharedLedger::open(&env.writer("b3", manual_sealing()), "t/p0")
        .await
        .unwrap();
    assert_eq!(read_log(&taken).await, after);

    // The replaced objects (and the failed attempt's uploads) are collected, the live ones kept.
    let gc = collect_garbage(&collector(&env)).await.unwrap();
    assert_eq!(gc.segment_objects_deleted, 6, "{gc:?}");
    let objects = segment_objects(&env).await;
    assert_eq!(objects.len(), 3);
    assert!(objects.iter().all(|o| o.contains(".c")), "{objects:?}");
    let fresh = SharedLedger::open(&env.writer("b4", manual_sealing()), "t/p0")
        .await
        .unwrap();
    assert_eq!(read_log(&fresh).await, after);
}

#[tokio::test]
async fn cached_chunks_of_replaced_segments_are_not_served_after_the_swap() {
    let env = Env::new();
    let writer = env.writer("b1", manual_sealing());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    let before = fill_keyed(&ledger).await; // reads (and caches) every chunk
    assert!(ledger.stats().cached_bytes > 0);
    ledger
        .compact(codec(), forced(), CleanerLimits::default())
        .await
        .unwrap();
    let after = read_log(&ledger).await;
    assert_ne!(after, before);
    let fresh = SharedLedger::open(&env.writer("b2", manual_sealing()), "t/p0")
        .await
        .unwrap();
    assert_eq!(read_log(&fresh).await, after);
}

#[tokio::test]
async fn nothing_at_or_after_the_last_stable_offset_is_compacted() {
    let env = Env::new();
    let writer = env.writer("b1", manual_sealing());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    let before = fill_keyed(&ledger).await;
    // Stable end inside the second segment: only the first is compacted.
    let first_end = {
        let inner = ledger.inner_for_test();
        let c = super::ledger::lock(&inner.committed);
        c.segments.values().next().unwrap().end_index
    };
    let txns = TxnView {
        stable_end: first_end + 1,
        aborted: Vec::new(),
    };
    let outcome = ledger
        .compact_with_txns(codec(), forced(), CleanerLimits::default(), txns)
        .await
        .unwrap();
    assert_eq!(outcome.cleaned_through, first_end);
    let after = read_log(&ledger).await;
    check_compacted(&before, &after, first_end, true);
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test]
async fn model_random_keyed_logs_compact_to_the_latest_value_per_key() {
    for seed in [1u64, 7, 42, 1234] {
        let env = Env::new();
        let writer = env.writer("b1", manual_sealing());
        let mut ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut writers = Vec::new();
        let mut written = Log::new();
        let limits = CleanerLimits {
            // A small key map: several passes.
            dedupe_buffer_bytes: 24 * 20,
            ..CleanerLimits::default()
        };
        for round in 0..6 {
            for _ in 0..rng.next(12) + 1 {
                let n = rng.next(3) + 1;
                let recs: Vec<(String, Option<String>)> = (0..n)
                    .map(|_| {
                        let k = format!("k{}", rng.next(20));
                        let v = (rng.next(8) != 0).then(|| format!("v{}", rng.next(1000)));
                        (k, v)
                    })
                    .collect();
                let refs: Vec<(&str, Option<&str>)> = recs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_deref()))
                    .collect();
                let at = ledger
                    .append(keyed(&refs, rng.next(3) as i64))
                    .await
                    .unwrap();
                for (i, (k, v)) in recs.into_iter().enumerate() {
                    written.insert(at + i as u64, (Some(k), v));
                }
            }
            if rng.next(3) != 0 {
                seal(&ledger).await;
            }
            if rng.next(2) == 0 {
                let before = read_log(&ledger).await;
                ledger.compact(codec(), forced(), limits).await.unwrap();
                let after = read_log(&ledger).await;
                check_compacted(&before, &after, ledger.cleaned_through(), true);
                // Against the model: the latest value of every key is what was last written.
                let model = latest(&written);
                assert_eq!(latest(&after), model, "seed {seed} round {round}");
            }
            if rng.next(4) == 0 {
                let w = env.writer(&format!("b{round}-{seed}"), manual_sealing());
                let expected = read_log(&ledger).await;
                ledger = SharedLedger::open(&w, "t/p0").await.unwrap();
                writers.push(w);
                assert_eq!(read_log(&ledger).await, expected, "after a takeover");
            }
        }
    }
}

#[tokio::test]
async fn start_retention_and_time_lookups_cope_with_gaps() {
    let env = Env::new();
    let clock = Arc::new(ManualClock::new(now_ms()));
    let writer = writer_at(&env, "b1", clock.clone());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    let before = fill_keyed(&ledger).await;
    ledger
        .compact(codec(), forced(), CleanerLimits::default())
        .await
        .unwrap();
    let after = read_log(&ledger).await;
    assert_ne!(after, before);
    // The largest timestamp (all are 1000) is the first kept entry's.
    let max = ledger.max_timestamp_entry().await.unwrap().unwrap();
    assert_eq!(max.first_index, *after.keys().next().unwrap());
    // Truncating at an index compacted away: reads from the start give the entry holding it
    // (whose records below the start a Kafka client skips) or the next kept one.
    let gone = (1..ledger.end_index())
        .find(|i| !after.contains_key(i) && after.range(..i).next().is_some())
        .unwrap();
    assert_eq!(ledger.truncate_before(gone).await.unwrap(), gone);
    let from =
        |log: Log, start: u64| -> Log { log.into_iter().filter(|(i, _)| *i >= start).collect() };
    assert_eq!(
        from(read_log(&ledger).await, gone),
        from(after.clone(), gone)
    );
    // Retention by time keeps the segments' publish times through compaction: nothing is
    // expired yet; an hour later every sealed segment but the last goes.
    let kept = ledger.apply_retention(Some(3_600_000), None).await.unwrap();
    assert_eq!(kept.segments_deleted, 0, "{kept:?}");
    clock.advance_ms(3_600_001);
    let expired = ledger.apply_retention(Some(3_600_000), None).await.unwrap();
    assert!(expired.segments_deleted >= 2, "{expired:?}");
    let start = expired.start_index;
    let rest = from(read_log(&ledger).await, start);
    assert_eq!(rest, from(after.clone(), start));
    // A takeover agrees.
    let taken = SharedLedger::open(&writer_at(&env, "b2", clock.clone()), "t/p0")
        .await
        .unwrap();
    assert_eq!(taken.start_index(), start);
    assert_eq!(from(read_log(&taken).await, start), rest);
}

#[tokio::test]
async fn a_segment_left_empty_keeps_its_index_range() {
    let env = Env::new();
    let writer = env.writer("b1", manual_sealing());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    ledger.append(keyed(&[("a", Some("1"))], 1)).await.unwrap();
    ledger.append(keyed(&[("b", Some("1"))], 1)).await.unwrap();
    seal(&ledger).await;
    ledger.append(keyed(&[("a", Some("2"))], 1)).await.unwrap();
    ledger.append(keyed(&[("b", Some("2"))], 1)).await.unwrap();
    seal(&ledger).await;
    ledger
        .append(keyed(&[("z", Some("tail"))], 2))
        .await
        .unwrap();
    let outcome = ledger
        .compact(codec(), forced(), CleanerLimits::default())
        .await
        .unwrap();
    assert_eq!(outcome.records_removed, 2, "{outcome:?}");
    let expected: Log = [
        (2, (Some("a".to_string()), Some("2".to_string()))),
        (3, (Some("b".to_string()), Some("2".to_string()))),
        (4, (Some("z".to_string()), Some("tail".to_string()))),
    ]
    .into_iter()
    .collect();
    assert_eq!(read_log(&ledger).await, expected);
    // The first segment is an empty object covering 0..2.
    let inner = ledger.inner_for_test();
    {
        let c = super::ledger::lock(&inner.committed);
        let first = c.segments.values().next().unwrap();
        assert_eq!((first.first_index, first.end_index, first.len), (0, 2, 0));
    }
    let read = ledger.read(0, 1 << 20, 10).await.unwrap();
    assert_eq!(read[0].header.first_index, 2);
    assert_eq!(
        ledger
            .find_by_timestamp(0)
            .await
            .unwrap()
            .unwrap()
            .first_index,
        2
    );
    let taken = SharedLedger::open(&env.writer("b2", manual_sealing()), "t/p0")
        .await
        .unwrap();
    assert_eq!((taken.start_index(), taken.end_index()), (0, 5));
    assert_eq!(read_log(&taken).await, expected);
    // A second compaction leaves the empty segment as it is.
    let again = taken
        .compact(codec(), forced(), CleanerLimits::default())
        .await
        .unwrap();
    assert_eq!(again.records_removed, 0, "{again:?}");
    assert_eq!(read_log(&taken).await, expected);
}
