//! Tests of the shared ledger's managed-ledger features (cursors, time lookups, the start and
//! retention, snapshots), on the same `InMemory` object store and `MemoryStore` as `tests.rs`.

// Acks take slices of ranges; one range in one is meant, and a reversed one is the point.
#![allow(clippy::single_range_in_vec_init, clippy::reversed_empty_ranges)]

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use magnetar_metadata::MetadataStore;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::features::CURSOR_ACKED_RANGES_PERSISTED_MAX;
use super::ledger::ChunkRef;
use super::records::{self, CursorRecord, SegmentRecord};
use super::tests::{collector, config, entry, read_all, Env, ROOT};
use super::*;
use crate::{
    CursorStart, CursorState, EntryHeader, ManualClock, NewEntry, StorageError, SNAPSHOTS_KEPT,
    SNAPSHOT_BYTES_MAX,
};

/// Sealing only when a test asks for it (below 60 chunks).
fn manual_sealing() -> WalConfig {
    WalConfig {
        seal_bytes: 1 << 30,
        gc_grace_ms: 1000,
        ..config()
    }
}

fn entry_at(text: &str, timestamp_ms: i64) -> NewEntry {
    NewEntry {
        max_timestamp_ms: timestamp_ms,
        ..entry(text, 1)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn writer_with_clock(env: &Env, name: &str, clock: Arc<ManualClock>) -> WalWriter {
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

/// Seals every unsealed chunk of `ledger` into one segment.
async fn seal(ledger: &SharedLedger) {
    let sealed = super::seal::seal_once(&ledger.inner_for_test()).await;
    assert!(sealed.unwrap().is_some(), "nothing to seal");
}

async fn append_n(ledger: &SharedLedger, n: u64) {
    for _ in 0..n {
        let at = ledger.end_index();
        assert_eq!(
            ledger.append(entry(&format!("m{at}"), 1)).await.unwrap(),
            at
        );
    }
}

async fn children(env: &Env, path: &str) -> Vec<String> {
    env.metadata.list_children(path).await.unwrap()
}

async fn objects(env: &Env, prefix: &str) -> Vec<String> {
    use futures_util::TryStreamExt;
    let mut all: Vec<String> = env
        .objects
        .list(Some(&ObjectPath::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    all.sort();
    all
}

fn out_of_range<T: std::fmt::Debug>(r: Result<T, StorageError>) -> bool {
    matches!(r, Err(StorageError::IndexOutOfRange { .. }))
}

fn fenced<T: std::fmt::Debug>(r: Result<T, StorageError>) -> bool {
    matches!(r, Err(StorageError::Fenced { .. }))
}

// ---- cursors ----

#[tokio::test]
async fn cursors_survive_a_takeover() {
    let env = Env::new();
    let first = env.writer("b1", config());
    let ledger = SharedLedger::open(&first, "t/p0").await.unwrap();
    append_n(&ledger, 10).await;
    assert_eq!(
        ledger
            .open_cursor("sub", CursorStart::Earliest)
            .await
            .unwrap(),
        CursorState::new(0)
    );
    ledger.ack_cumulative("sub", 2).await.unwrap();
    let sub = ledger.ack("sub", &[5..7, 8..9]).await.unwrap();
    assert_eq!(sub.mark_delete_index, 3);
    assert_eq!(ledger.backlog("sub").unwrap(), 4);
    // Opening an existing cursor returns it as it is.
    assert_eq!(
        ledger
            .open_cursor("sub", CursorStart::Latest)
            .await
            .unwrap(),
        sub
    );
    let late = ledger
        .open_cursor("late", CursorStart::Latest)
        .await
        .unwrap();
    assert_eq!(late.mark_delete_index, 10);
    // Any name is one key segment.
    let odd = "persistent://a/b/c sub.é/..";
    let at = ledger
        .open_cursor(odd, CursorStart::Index(4))
        .await
        .unwrap();
    assert_eq!(at.mark_delete_index, 4);
    ledger
        .open_cursor("gone", CursorStart::Earliest)
        .await
        .unwrap();
    assert!(ledger.delete_cursor("gone").await.unwrap());
    assert!(!ledger.delete_cursor("gone").await.unwrap());
    let before = ledger.cursors();
    assert_eq!(before.len(), 3);
    let keys = children(&env, &format!("{ROOT}/t/p0/cursors")).await;
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys
        .iter()
        .any(|k| records::cursor_key(ROOT, "t/p0", odd).ends_with(&format!("/{k}"))));
    first.close().await;

    let second = env.writer("b2", config());
    let taken = SharedLedger::open(&second, "t/p0").await.unwrap();
    assert_eq!(taken.cursors(), before);
    assert_eq!(taken.backlog("sub").unwrap(), 4);
    assert!(taken.cursor("gone").is_none());
    // The new owner continues from the persisted state.
    let sub = taken.ack("sub", &[3..5]).await.unwrap();
    assert_eq!(sub.mark_delete_index, 7);
    assert_eq!(taken.backlog("sub").unwrap(), 2);
    assert_eq!(
        taken.reset_cursor("sub", 100).await.unwrap(),
        CursorState::new(10)
    );
    assert_eq!(
        taken.open_cursor(odd, CursorStart::Latest).await.unwrap(),
        at
    );
    second.close().await;
}

#[tokio::test]
async fn a_fenced_owners_cursor_writes_are_refused_and_change_nothing() {
    let env = Env::new();
    let old = env.writer("old", config());
    let old_ledger = SharedLedger::open(&old, "t/p0").await.unwrap();
    append_n(&old_ledger, 5).await;
    old_ledger
        .open_cursor("sub", CursorStart::Earliest)
        .await
        .unwrap();
    old_ledger.ack_cumulative("sub", 1).await.unwrap();

    let new = env.writer("new", config());
    let new_ledger = SharedLedger::open(&new, "t/p0").await.unwrap();
    assert_eq!(new_ledger.cursor("sub").unwrap().mark_delete_index, 2);

    // The old owner does not know yet: its ack is refused by the fence, in memory too.
    assert!(fenced(old_ledger.ack_cumulative("sub", 3).await));
    assert_eq!(old_ledger.cursor("sub").unwrap().mark_delete_index, 2);
    assert!(fenced(old_ledger.ack("sub", &[4..5]).await));
    assert!(fenced(old_ledger.reset_cursor("sub", 0).await));
    assert!(fenced(old_ledger.delete_cursor("sub").await));
    assert!(fenced(
        old_ledger.open_cursor("other", CursorStart::Earliest).await
    ));
    assert!(old_ledger.cursor("other").is_none());
    // The fence seen by a cursor write stops appends as well.
    assert!(fenced(old_ledger.append_with(|_| entry("late", 1))));

    new_ledger.ack_cumulative("sub", 2).await.unwrap();
    let third = env.writer("third", config());
    let reader = SharedLedger::open(&third, "t/p0").await.unwrap();
    assert_eq!(
        reader.cursors(),
        vec![("sub".to_string(), CursorState::new(3))]
    );
}

#[tokio::test]
async fn a_cursor_write_the_store_refuses_changes_nothing_and_a_lost_answer_is_caught_up() {
    let env = Env::new();
    let writer = env.writer("b1", config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    append_n(&ledger, 5).await;
    ledger
        .open_cursor("sub", CursorStart::Earliest)
        .await
        .unwrap();
    env.metadata.fail_txns.store(1, Ordering::Release);
    assert!(matches!(
        ledger.ack_cumulative("sub", 1).await,
        Err(StorageError::Metadata { .. })
    ));
    assert_eq!(ledger.cursor("sub"), Some(CursorState::new(0)));
    // Committed with its answer lost: memory stays behind, the next write carries it on.
    env.metadata
        .fail_txns_after_commit
        .store(1, Ordering::Release);
    assert!(ledger.ack_cumulative("sub", 1).await.is_err());
    assert_eq!(ledger.cursor("sub"), Some(CursorState::new(0)));
    assert_eq!(
        ledger.ack_cumulative("sub", 2).await.unwrap(),
        CursorState::new(3)
    );
    assert!(!ledger.is_failed(), "a cursor write does not fail appends");
    let next = env.writer("b2", config());
    let taken = SharedLedger::open(&next, "t/p0").await.unwrap();
    assert_eq!(taken.cursor("sub"), Some(CursorState::new(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cursor_writes_share_transactions_and_each_gets_its_answer() {
    let env = Env::new();
    let writer = env.writer("b1", config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    ledger.append(entry("many", 200)).await.unwrap();
    for sub in ["a", "b"] {
        ledger
            .open_cursor(sub, CursorStart::Earliest)
            .await
            .unwrap();
    }
    env.metadata.txn_delay_ms.store(5, Ordering::Relaxed);
    let before = env.metadata.txns.load(Ordering::Relaxed);
    let mut tasks = Vec::new();
    for i in 0..100u64 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let sub = if i % 2 == 0 { "a" } else { "b" };
            let state = ledger.ack(sub, &[i..i + 1]).await.unwrap();
            assert!(state.is_acked(i), "its own ack is in its answer");
            // And a refused one in the same batches does not spoil the others.
            assert!(ledger.ack(sub, &[0..1000]).await.is_err());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let txns = env.metadata.txns.load(Ordering::Relaxed) - before;
    assert!(
        txns < 50,
        "{txns} transactions for 100 acks (and 100 refused)"
    );
    for sub in ["a", "b"] {
        assert_eq!(ledger.backlog(sub).unwrap(), 150);
    }
    let next = env.writer("b2", config());
    let taken = SharedLedger::open(&next, "t/p0").await.unwrap();
    assert_eq!(taken.cursors(), ledger.cursors());
}

#[tokio::test]
async fn acks_beyond_the_end_and_unknown_cursors_are_refused() {
    let env = Env::new();
    let writer = env.writer("b1", config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    for i in 0..3 {
        ledger.append(entry(&format!("e{i}"), 2)).await.unwrap();
    }
    assert_eq!(ledger.end_index(), 6);
    ledger
        .open_cursor("sub", CursorStart::Earliest)
        .await
        .unwrap();
    let invalid = |r: Result<CursorState, StorageError>| {
        assert!(
            matches!(r, Err(StorageError::CursorInvalid { .. })),
            "{r:?}"
        )
    };
    invalid(ledger.ack("sub", &[4..7]).await);
    invalid(ledger.ack("sub", &[0..1, 5..3]).await);
    invalid(ledger.ack_cumulative("sub", 6).await);
    invalid(ledger.open_cursor("", CursorStart::Earliest).await);
    assert_eq!(ledger.cursor("sub"), Some(CursorState::new(0)));
    assert!(matches!(
        ledger.ack("nope", &[0..1]).await,
        Err(StorageError::CursorNotFound { .. })
    ));
    assert!(matches!(
        ledger.backlog("nope"),
        Err(StorageError::CursorNotFound { .. })
    ));
    assert_eq!(
        ledger
            .open_cursor("far", CursorStart::Index(100))
            .await
            .unwrap(),
        CursorState::new(6)
    );
    assert_eq!(
        ledger.ack_cumulative("sub", 5).await.unwrap(),
        CursorState::new(6)
    );
    // Nothing refused was persisted.
    let next = env.writer("b2", config());
    let taken = SharedLedger::open(&next, "t/p0").await.unwrap();
    assert_eq!(taken.cursor("sub"), Some(CursorState::new(6)));
    assert_eq!(taken.backlog("sub").unwrap(), 0);
}

#[tokio::test]
async fn a_cursor_record_keeps_the_lowest_acked_ranges_and_the_rest_are_redelivered() {
    let env = Env::new();
    let writer = env.writer("b1", config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    let ranges_n = CURSOR_ACKED_RANGES_PERSISTED_MAX as u64 + 5;
    ledger
        .append(entry("many", (2 * ranges_n + 2) as u32))
        .await
        .unwrap();
    ledger
        .open_cursor("sub", CursorStart::Earliest)
        .await
        .unwrap();
    let ranges: Vec<_> = (0..ranges_n).map(|i| 2 * i + 1..2 * i + 2).collect();
    let state = ledger.ack("sub", &ranges).await.unwrap();
    assert_eq!(state.acked.ranges().count() as u64, ranges_n);
    assert_eq!(ledger.cursor("sub").unwrap(), state, "memory keeps all");
    let key = records::cursor_key(ROOT, "t/p0", "sub");
    let stored = env.metadata.get(&key).await.unwrap().unwrap();
    assert!(
        stored.value.len() < 256 << 10,
        "{} bytes",
        stored.value.len()
    );
    let record: CursorRecord = records::decode(&key, &stored.value).unwrap();
    assert_eq!(
        record.state.acked.ranges().count(),
        CURSOR_ACKED_RANGES_PERSISTED_MAX
    );
    let last = 2 * (ranges_n - 1) + 1;
    assert!(state.is_acked(last));

    let next = env.writer("b2", config());
    let taken = SharedLedger::open(&next, "t/p0").await.unwrap();
    let after = taken.cursor("sub").unwrap();
    assert!(after.is_acked(1) && !after.is_acked(last));
    assert_eq!(
        taken.backlog("sub").unwrap(),
        ledger.backlog("sub").unwrap() + 5
    );
}

// ---- time lookups ----

/// The answers the local ledger's definitions give, from every readable header.
async fn expected_by_time(ledger: &SharedLedger, timestamp_ms: i64) -> Option<EntryHeader> {
    let headers = ledger
        .scan_headers(ledger.start_index(), usize::MAX)
        .await
        .unwrap();
    headers
        .into_iter()
        .find(|h| h.max_timestamp_ms >= timestamp_ms)
}

async fn expected_max(ledger: &SharedLedger) -> Option<EntryHeader> {
    let headers = ledger
        .scan_headers(ledger.start_index(), usize::MAX)
        .await
        .unwrap();
    let mut best: Option<EntryHeader> = None;
    for h in headers {
        if best.is_none_or(|b| h.max_timestamp_ms > b.max_timestamp_ms) {
            best = Some(h);
        }
    }
    best
}

async fn check_time_lookups(ledger: &SharedLedger) {
    for t in (900..=5100).step_by(25) {
        assert_eq!(
            ledger.find_by_timestamp(t).await.unwrap(),
            expected_by_time(ledger, t).await,
            "timestamp {t}"
        );
    }
    assert_eq!(
        ledger.max_timestamp_entry().await.unwrap(),
        expected_max(ledger).await
    );
}

#[tokio::test]
async fn time_lookups_span_sealed_segments_and_unsealed_chunks() {
    let env = Env::new();
    let writer = env.writer("b1", manual_sealing());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    // Out of order, with the largest twice (a sealed and an unsealed entry).
    let stamps: Vec<i64> = (0..12)
        .map(|i| match i {
            2 | 10 => 5000,
            _ => 1000 + (i * 37 % 23) * 100 + i * 5,
        })
        .collect();
    for (i, ts) in stamps.iter().enumerate() {
        ledger
            .append(entry_at(&format!("m{i}"), *ts))
            .await
            .unwrap();
        if i == 3 || i == 7 {
            seal(&ledger).await;
        }
    }
    assert_eq!(ledger.stats().segments, 2);
    assert_eq!(ledger.stats().unsealed_chunks, 4);
    assert_eq!(ledger.segments_sealed(), 2);
    check_time_lookups(&ledger).await;
    assert_eq!(
        ledger
            .max_timestamp_entry()
            .await
            .unwrap()
            .unwrap()
            .first_index,
        2,
        "the first of the largest"
    );
    assert_eq!(ledger.find_by_timestamp(5001).await.unwrap(), None);

    // A new owner (no cache) reads one chunk to answer, not the log.
    let next = env.writer("b2", manual_sealing());
    let taken = SharedLedger::open(&next, "t/p0").await.unwrap();
    assert_eq!(taken.segments_sealed(), 0);
    let gets = env.objects.gets.load(Ordering::Relaxed);
    let found = taken.find_by_timestamp(5000).await.unwrap().unwrap();
    assert_eq!(found.first_index, 2);
    assert_eq!(env.objects.gets.load(Ordering::Relaxed) - gets, 1);
    check_time_lookups(&taken).await;

    // Past a start inside the second segment, the first largest is gone.
    assert_eq!(taken.truncate_before(5).await.unwrap(), 5);
    check_time_lookups(&taken).await;
    assert_eq!(
        taken
            .max_timestamp_entry()
            .await
            .unwrap()
            .unwrap()
            .first_index,
        10
    );
    assert!(
        taken
            .find_by_timestamp(0)
            .await
            .unwrap()
            .unwrap()
            .first_index
            >= 5
    );
}

#[test]
fn segment_records_written_before_chunk_timestamps_still_parse() {
    let old = br#"{"format":1,"object":"segments/t/p0/x.seg","len":10,"first_index":0,
        "end_index":4,"epoch":1,"max_timestamp_ms":77,
        "chunks":[{"first_index":0,"offset":0,"entries":2},{"first_index":2,"offset":5,"entries":2}]}"#;
    let record: SegmentRecord = records::decode("/k", old).unwrap();
    assert_eq!(record.last_publish_ms, None);
    let chunks = ChunkRef::of_segment(&record);
    assert!(chunks
        .iter()
        .all(|c| !c.timestamp_exact && c.max_timestamp_ms == 77));
    // Written again, the new fields are kept.
    let mut record = record;
    record.last_publish_ms = Some(5);
    record.chunks[0].max_timestamp_ms = Some(70);
    let again: SegmentRecord = records::decode("/k", &records::encode(&record)).unwrap();
    assert_eq!(again, record);
}

// ---- start: truncation and retention ----

#[tokio::test]
async fn truncation_moves_a_persisted_start_and_keeps_the_tail() {
    let env = Env::new();
    let writer = env.writer("b1", manual_sealing());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    append_n(&ledger, 3).await;
    seal(&ledger).await; // [0, 3)
    append_n(&ledger, 3).await;
    seal(&ledger).await; // [3, 6)
    append_n(&ledger, 4).await; // unsealed [6, 10)

    assert_eq!(ledger.truncate_before(4).await.unwrap(), 4);
    assert_eq!(ledger.start_index(), 4);
    assert_eq!(ledger.stats().segments, 1, "the first segment went");
    assert_eq!(
        children(&env, &format!("{ROOT}/t/p0/segments")).await.len(),
        1
    );
    assert!(out_of_range(ledger.read(3, 1 << 20, 10).await));
    assert!(out_of_range(ledger.scan_headers(0, 10).await));
    assert_eq!(
        ledger.read(4, 1 << 20, 1).await.unwrap()[0]
            .header
            .first_index,
        4
    );
    assert_eq!(ledger.truncate_before(2).await.unwrap(), 4, "never back");
    assert!(out_of_range(ledger.truncate_before(11).await));
    assert_eq!(
        ledger
            .open_cursor("sub", CursorStart::Earliest)
            .await
            .unwrap(),
        CursorState::new(4)
    );
    assert_eq!(ledger.backlog("sub").unwrap(), 6);

    // The start holds after a takeover; the old owner can no longer move it.
    let next = env.writer("b2", manual_sealing());
    let taken = SharedLedger::open(&next, "t/p0").await.unwrap();
    assert_eq!((taken.start_index(), taken.end_index()), (4, 10));
    assert!(fenced(ledger.truncate_before(6).await));
    assert_eq!(ledger.start_index(), 4);
    assert_eq!(read_all(&taken).await.len(), 6);

    // Up to the end: the sealed segment goes, the unsealed tail stays.
    assert_eq!(taken.truncate_before(10).await.unwrap(), 10);
    assert_eq!(taken.stats().segments, 0);
    assert_eq!(taken.stats().unsealed_chunks, 4);
    assert!(taken.read(10, 1 << 20, 1).await.unwrap().is_empty());
    // Sealed to the last entry, the segment holding it is kept, and the ledger continues.
    seal(&taken).await; // [6, 10), wholly below the start but the last
    assert_eq!(taken.truncate_before(10).await.unwrap(), 10);
    assert_eq!(
        taken
            .apply_retention(Some(0), Some(0))
            .await
            .unwrap()
            .segments_deleted,
        0
    );
    assert_eq!(taken.stats().segments, 1);
    let third = env.writer("b3", manual_sealing());
    let again = SharedLedger::open(&third, "t/p0").await.unwrap();
    assert_eq!((again.start_index(), again.end_index()), (10, 10));
    assert_eq!(again.append(entry("next", 1)).await.unwrap(), 10);
    assert_eq!(read_all(&again).await, vec![(10, "next".to_string())]);
}

#[tokio::test]
async fn segments_left_below_the_start_by_a_crash_are_dropped_by_the_next_pass() {
    let env = Env::new();
    let writer = env.writer("b1", manual_sealing());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    for _ in 0..3 {
        append_n(&ledger, 2).await;
        seal(&ledger).await;
    }
    append_n(&ledger, 2).await; // unsealed [6, 8)
                                // A crash after the start moved to 5 and before its segment deletions (what the later
                                // batches of a large move do).
    let key = records::start_key(ROOT, "t/p0");
    env.metadata
        .put(
            &key,
            records::encode(&records::StartRecord::new(5)),
            magnetar_metadata::Expect::Absent,
        )
        .await
        .unwrap();
    let next = env.writer("b2", manual_sealing());
    let taken = SharedLedger::open(&next, "t/p0").await.unwrap();
    assert_eq!((taken.start_index(), taken.end_index()), (5, 8));
    assert_eq!(taken.stats().segments, 3);
    assert_eq!(read_all(&taken).await.len(), 3);
    let pass = taken.apply_retention(None, None).await.unwrap();
    assert_eq!((pass.segments_deleted, pass.start_index), (2, 5));
    assert_eq!(
        children(&env, &format!("{ROOT}/t/p0/segments")).await.len(),
        1
    );
    // A start the chunks do not reach is a gap, never skipped.
    env.metadata
        .put(
            &key,
            records::encode(&records::StartRecord::new(9)),
            magnetar_metadata::Expect::Any,
        )
        .await
        .unwrap();
    let third = env.writer("b3", manual_sealing());
    assert!(matches!(
        SharedLedger::open(&third, "t/p0").await,
        Err(StorageError::Gap { .. })
    ));
}

#[tokio::test]
async fn a_start_move_whose_answer_was_lost_is_never_undone() {
    let env = Env::new();
    let writer = env.writer("b1", manual_sealing());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    append_n(&ledger, 3).await;
    seal(&ledger).await; // [0, 3)
    append_n(&ledger, 3).await;
    env.metadata
        .fail_txns_after_commit
        .store(1, Ordering::Release);
    assert!(ledger.truncate_before(4).await.is_err());
    assert_eq!(ledger.start_index(), 0, "memory did not see the answer");
    // A lower move reads the stored start first and keeps it.
    assert_eq!(ledger.truncate_before(2).await.unwrap(), 4);
    assert!(out_of_range(ledger.read(3, 1 << 20, 1).await));
    assert_eq!(ledger.stats().segments, 0, "and drops the segment below it");
    assert_eq!(ledger.truncate_before(5).await.unwrap(), 5);
    let next = env.writer("b2", manual_sealing());
    let taken = SharedLedger::open(&next, "t/p0").await.unwrap();
    assert_eq!((taken.start_index(), taken.end_index()), (5, 6));
    assert_eq!(
        children(&env, &format!("{ROOT}/t/p0/segments")).await.len(),
        0
    );
}

#[tokio::test]
async fn retention_by_time_and_size_drops_sealed_segments_across_a_takeover() {
    let env = Env::new();
    let clock = Arc::new(ManualClock::new(now_ms()));
    let writer = writer_with_clock(&env, "b1", clock.clone());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    let mut lens = Vec::new();
    for _ in 0..3 {
        append_n(&ledger, 4).await;
        seal(&ledger).await;
        lens.push(
            ledger
                .inner_for_test()
                .committed
                .lock()
                .unwrap()
                .segments
                .last_key_value()
                .unwrap()
                .1
                .len,
        );
        clock.advance_ms(60_000);
    }
    append_n(&ledger, 2).await; // unsealed [12, 14)
    let unsealed = ledger
        .inner_for_test()
        .committed
        .lock()
        .unwrap()
        .unsealed_bytes;
    assert_eq!(ledger.segments_sealed(), 3);

    // By time: the first segment was last written 180 s ago, the second 120 s ago.
    let none = ledger.apply_retention(Some(200_000), None).await.unwrap();
    assert_eq!((none.segments_deleted, none.start_index), (0, 0));
    let by_time = ledger.apply_retention(Some(150_000), None).await.unwrap();
    assert_eq!(by_time.segments_deleted, 1);
    assert_eq!(by_time.bytes_deleted, lens[0]);
    assert_eq!(by_time.start_index, 4);
    assert!(out_of_range(ledger.read(3, 1 << 20, 1).await));

    // By size: keeping at least the last segment and the tail drops the second.
    let by_size = ledger
        .apply_retention(None, Some(lens[2] + unsealed))
        .await
        .unwrap();
    assert_eq!((by_size.segments_deleted, by_size.start_index), (1, 8));
    assert_eq!(by_size.bytes_deleted, lens[1]);
    assert_eq!(
        children(&env, &format!("{ROOT}/t/p0/segments")).await.len(),
        1
    );
    // Their objects go with the garbage collector, once past the grace period.
    assert_eq!(objects(&env, "segments").await.len(), 3);
    let patient = env.writer(
        "patient",
        WalConfig {
            gc_grace_ms: 600_000,
            ..manual_sealing()
        },
    );
    let young = collect_garbage(&patient).await.unwrap();
    assert_eq!(young.segment_objects_deleted, 0);
    let gc = collect_garbage(&collector(&env)).await.unwrap();
    assert_eq!(gc.segment_objects_deleted, 2);
    assert_eq!(objects(&env, "segments").await.len(), 1);

    // A new owner starts at the persisted start and goes on dropping.
    let next = writer_with_clock(&env, "b2", clock.clone());
    let taken = SharedLedger::open(&next, "t/p0").await.unwrap();
    assert_eq!((taken.start_index(), taken.end_index()), (8, 14));
    assert!(out_of_range(taken.read(7, 1 << 20, 1).await));
    assert_eq!(read_all(&taken).await.len(), 6);
    let last = taken.apply_retention(Some(0), Some(1)).await.unwrap();
    assert_eq!((last.segments_deleted, last.start_index), (1, 12));
    // The unsealed tail is never dropped.
    let nothing = taken.apply_retention(Some(0), Some(0)).await.unwrap();
    assert_eq!((nothing.segments_deleted, nothing.start_index), (0, 12));
    assert_eq!(
        read_all(&taken).await,
        vec![(12, "m12".to_string()), (13, "m13".to_string())]
    );
    let gc = collect_garbage(&collector(&env)).await.unwrap();
    assert_eq!(gc.segment_objects_deleted, 1);
    let third = writer_with_clock(&env, "b3", clock);
    let reader = SharedLedger::open(&third, "t/p0").await.unwrap();
    assert_eq!((reader.start_index(), reader.end_index()), (12, 14));
    assert_eq!(read_all(&reader).await.len(), 2);
}

// ---- snapshots ----

#[tokio::test]
async fn snapshots_round_trip_are_capped_and_fenced() {
    let env = Env::new();
    let writer = env.writer("b1", config());
    let ledger = SharedLedger::open(&writer, "t/p0").await.unwrap();
    append_n(&ledger, 10).await;
    assert!(ledger.snapshots().await.unwrap().is_empty());
    let blob = |s: &str| Bytes::from(s.to_string());
    for (i, text) in [(3, "a"), (6, "b"), (9, "c")] {
        ledger.write_snapshot(i, blob(text)).await.unwrap();
    }
    assert_eq!(SNAPSHOTS_KEPT, 2);
    assert_eq!(
        ledger.snapshots().await.unwrap(),
        vec![(9, blob("c")), (6, blob("b"))],
        "the newest kept, newest first"
    );
    assert_eq!(
        children(&env, &format!("{ROOT}/t/p0/snapshots"))
            .await
            .len(),
        2
    );
    assert_eq!(objects(&env, "snapshots").await.len(), 2);
    assert!(out_of_range(ledger.write_snapshot(11, blob("x")).await));
    assert!(matches!(
        ledger
            .write_snapshot(5, Bytes::from(vec![0u8; SNAPSHOT_BYTES_MAX as usize + 1]))
            .await,
        Err(StorageError::EntryTooLarge { .. })
    ));
    // One older than the kept ones is not kept (as the local ledger deletes it at once).
    ledger.write_snapshot(4, blob("old")).await.unwrap();
    assert_eq!(
        ledger.snapshots().await.unwrap(),
        vec![(9, blob("c")), (6, blob("b"))]
    );
    // The same index again replaces it.
    ledger.write_snapshot(9, blob("d")).await.unwrap();
    assert_eq!(
        ledger.snapshots().await.unwrap(),
        vec![(9, blob("d")), (6, blob("b"))]
    );
    assert_eq!(objects(&env, "snapshots").await.len(), 2);

    // A new owner finds them; the old one can no longer write any.
    let next = env.writer("b2", config());
    let taken = SharedLedger::open(&next, "t/p0").await.unwrap();
    assert_eq!(
        taken.snapshots().await.unwrap(),
        vec![(9, blob("d")), (6, blob("b"))]
    );
    assert!(fenced(ledger.write_snapshot(10, blob("stale")).await));
    assert_eq!(taken.snapshots().await.unwrap().len(), 2);

    // A damaged object is skipped, the older one still offered.
    let newest = objects(&env, "snapshots")
        .await
        .into_iter()
        .find(|o| o.contains(&format!("{:020}", 9)))
        .unwrap();
    env.objects
        .put(&ObjectPath::from(newest.as_str()), Bytes::from("D").into())
        .await
        .unwrap();
    assert_eq!(taken.snapshots().await.unwrap(), vec![(6, blob("b"))]);

    // Truncation past a snapshot drops it with the data it covered.
    taken.truncate_before(7).await.unwrap();
    assert!(taken.snapshots().await.unwrap().is_empty());
    taken.write_snapshot(10, blob("e")).await.unwrap();
    assert_eq!(taken.snapshots().await.unwrap(), vec![(10, blob("e"))]);
    // The stale owner's unrecorded object goes with the garbage collector.
    let gc = collect_garbage(&collector(&env)).await.unwrap();
    assert!(gc.snapshot_objects_deleted >= 1, "{gc:?}");
    assert_eq!(
        objects(&env, "snapshots").await.len(),
        2,
        "9 (damaged) and 10"
    );
}
