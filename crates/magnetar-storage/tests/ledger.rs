//! Behaviour of the managed ledger through its public API.

// `ack` takes a slice of ranges; one-range slices are the point here.
#![allow(clippy::single_range_in_vec_init)]

use std::sync::Arc;

use bytes::Bytes;
use magnetar_storage::*;

fn payload_for(index: u64, len: usize) -> Bytes {
    let seed = format!("entry-{index}|");
    Bytes::from(
        seed.bytes()
            .cycle()
            .take(len.max(seed.len()))
            .collect::<Vec<u8>>(),
    )
}

fn new_entry(index: u64, count: u32, ts: i64, len: usize) -> NewEntry {
    NewEntry {
        payload: payload_for(index, len),
        message_count: count,
        max_timestamp_ms: ts,
        format: if index.is_multiple_of(2) {
            PayloadFormat::Kafka
        } else {
            PayloadFormat::Pulsar
        },
        producer: index.is_multiple_of(3).then_some(ProducerInfo {
            producer_id: 7,
            epoch: 1,
            base_sequence: index as i32,
            txn: Default::default(),
        }),
        first_index_at: None,
    }
}

fn small_config(segment_bytes: u64) -> LedgerConfig {
    LedgerConfig {
        segment_bytes,
        index_interval_bytes: 256,
        ..LedgerConfig::default()
    }
}

fn open(dir: &std::path::Path, config: LedgerConfig) -> Arc<ManagedLedger> {
    ManagedLedger::open(dir, config, Arc::new(SystemClock)).unwrap()
}

/// Appends entries with counts 1..=4 cycling; returns (first index, count, len) of each.
async fn fill(ledger: &ManagedLedger, n: usize, len: usize) -> Vec<(u64, u32, usize)> {
    let mut out = Vec::new();
    for i in 0..n {
        let count = (i % 4) as u32 + 1;
        let pending = ledger
            .append_with(|first| new_entry(first, count, first as i64 * 10, len + i % 7))
            .unwrap();
        let first = pending.first_index();
        pending.wait().await.unwrap();
        out.push((first, count, len + i % 7));
    }
    out
}

async fn read_all(ledger: &ManagedLedger, from: u64) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut next = from;
    while next < ledger.end_index() {
        let batch = ledger.read(next, 700, 5).await.unwrap();
        assert!(!batch.is_empty());
        next = batch.last().unwrap().header.end_index();
        out.extend(batch);
    }
    out
}

fn check_entries(entries: &[Entry], expected: &[(u64, u32, usize)]) {
    assert_eq!(entries.len(), expected.len());
    for (e, &(first, count, len)) in entries.iter().zip(expected) {
        assert_eq!(e.header.first_index, first);
        assert_eq!(e.header.message_count, count);
        assert_eq!(e.payload, payload_for(first, len));
        assert_eq!(e.header.max_timestamp_ms, first as i64 * 10);
    }
    for w in entries.windows(2) {
        assert_eq!(
            w[0].header.end_index(),
            w[1].header.first_index,
            "indexes are continuous"
        );
    }
}

#[tokio::test]
async fn append_and_read_across_rolls_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), small_config(1_000));
    let expected = fill(&ledger, 60, 100).await;
    let stats = ledger.stats();
    assert!(stats.segments.len() > 5, "rolled by size: {stats:?}");
    assert!(stats.segments.iter().all(|s| s.bytes <= 1_000));
    assert_eq!(stats.segments.iter().map(|s| s.entries).sum::<u64>(), 60);
    for w in stats.segments.windows(2) {
        assert!(w[0].base_index < w[1].base_index);
    }
    check_entries(&read_all(&ledger, 0).await, &expected);
    let end = ledger.end_index();
    ledger.close().await.unwrap();
    assert!(matches!(
        ledger.append(new_entry(0, 1, 0, 1)).await,
        Err(StorageError::Closed)
    ));
    drop(ledger);

    let ledger = open(dir.path(), small_config(1_000));
    assert_eq!(ledger.end_index(), end);
    assert_eq!(ledger.stats().segments, stats.segments);
    let mut expected2 = expected.clone();
    expected2.extend(fill(&ledger, 10, 100).await);
    assert_eq!(expected2[60].0, end, "indexes continue after reopen");
    check_entries(&read_all(&ledger, 0).await, &expected2);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    assert!(names.contains(&"00000000000000000000.seg".to_string()));
}

#[tokio::test]
async fn read_starts_at_containing_entry_and_returns_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), small_config(1 << 20));
    let expected = fill(&ledger, 20, 300).await;
    // Inside an entry of 4 messages: the entry containing it comes back whole.
    let (first, count, _) = expected[3];
    assert_eq!(count, 4);
    let got = ledger.read(first + 2, 1, 100).await.unwrap();
    assert_eq!(got.len(), 1, "max_bytes below one entry still returns one");
    assert_eq!(got[0].header.first_index, first);
    // Byte budget is honoured after the first entry.
    let got = ledger.read(0, 1_000, 100).await.unwrap();
    let used: u64 = got.iter().map(|e| e.header.encoded_len()).sum();
    assert!(
        used <= 1_000 && got.len() == 2,
        "{} entries, {used} bytes",
        got.len()
    );
    let got = ledger.read(0, usize::MAX, 3).await.unwrap();
    assert_eq!(got.len(), 3);
    // End and beyond.
    let end = ledger.end_index();
    assert!(ledger.read(end, 1000, 10).await.unwrap().is_empty());
    match ledger.read(end + 1, 1000, 10).await {
        Err(StorageError::IndexOutOfRange {
            requested,
            start,
            end: e,
        }) => {
            assert_eq!((requested, start, e), (end + 1, 0, end))
        }
        other => panic!("expected out of range, got {other:?}"),
    }
}

#[tokio::test]
async fn rejects_bad_entries() {
    let dir = tempfile::tempdir().unwrap();
    let config = LedgerConfig {
        entry_bytes_max: 100,
        ..small_config(1 << 20)
    };
    let ledger = open(dir.path(), config);
    let err = ledger.append(new_entry(0, 1, 0, 101)).await.unwrap_err();
    assert!(matches!(
        err,
        StorageError::EntryTooLarge {
            size: 101,
            max: 100
        }
    ));
    assert_eq!(
        err.to_string(),
        "entry of 101 bytes exceeds the maximum of 100 bytes"
    );
    let err = ledger.append(new_entry(0, 0, 0, 10)).await.unwrap_err();
    assert!(matches!(err, StorageError::InvalidEntry { .. }));
    assert_eq!(ledger.end_index(), 0, "rejected appends take no index");
    assert_eq!(ledger.append(new_entry(0, 1, 0, 10)).await.unwrap().0, 0);
}

#[tokio::test]
async fn find_by_timestamp_and_max_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), small_config(2_000));
    // Timestamps that are not monotonic.
    let ts: Vec<i64> = (0..80).map(|i| (i * 37 % 101) as i64 * 5).collect();
    let mut headers = Vec::new();
    for &t in &ts {
        let (first, _) = ledger
            .append(new_entry(headers.len() as u64, 1, t, 90))
            .await
            .unwrap();
        headers.push((first, t));
    }
    assert!(ledger.stats().segments.len() > 2);
    for probe in [-1i64, 0, 3, 100, 250, 499, 500, 501] {
        let expected = headers.iter().find(|(_, t)| *t >= probe).map(|h| h.0);
        let got = ledger
            .find_by_timestamp(probe)
            .await
            .unwrap()
            .map(|h| h.first_index);
        assert_eq!(got, expected, "probe {probe}");
    }
    let max = *ts.iter().max().unwrap();
    let first_max = headers.iter().find(|(_, t)| *t == max).unwrap().0;
    let m = ledger.max_timestamp_entry().await.unwrap().unwrap();
    assert_eq!((m.first_index, m.max_timestamp_ms), (first_max, max));
    // After truncating past the max entry, the answer comes from what is left.
    ledger.truncate_before(first_max + 1).await.unwrap();
    let rest_max = headers
        .iter()
        .filter(|h| h.0 > first_max)
        .map(|h| h.1)
        .max()
        .unwrap();
    let m = ledger.max_timestamp_entry().await.unwrap().unwrap();
    assert_eq!(m.max_timestamp_ms, rest_max);
    assert!(m.first_index > first_max);
    let f = ledger.find_by_timestamp(-1).await.unwrap().unwrap();
    assert_eq!(
        f.first_index,
        first_max + 1,
        "entries below start are not found"
    );
}

#[tokio::test]
async fn truncate_before_moves_start_and_deletes_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), small_config(1_000));
    let expected = fill(&ledger, 40, 100).await;
    let before = ledger.stats();
    let cut = expected[17].0 + 1; // mid-entry, likely mid-segment
    assert_eq!(ledger.truncate_before(cut).await.unwrap(), cut);
    let after = ledger.stats();
    assert_eq!(after.start_index, cut);
    assert!(after.segments.len() < before.segments.len());
    let first_seg = after.segments[0];
    assert!(
        first_seg.base_index <= cut,
        "the segment holding the new start is kept"
    );
    assert!(matches!(
        ledger.read(cut - 1, 100, 1).await,
        Err(StorageError::IndexOutOfRange { .. })
    ));
    let got = ledger.read(cut, 100, 1).await.unwrap();
    assert_eq!(
        got[0].header.first_index, expected[17].0,
        "entry containing the start"
    );
    // Lower truncation is a no-op; beyond end is an error.
    assert_eq!(ledger.truncate_before(3).await.unwrap(), cut);
    assert!(ledger
        .truncate_before(ledger.end_index() + 1)
        .await
        .is_err());
    // Never deletes the active segment.
    let end = ledger.end_index();
    assert_eq!(ledger.truncate_before(end).await.unwrap(), end);
    assert_eq!(ledger.stats().segments.len(), 1);
    assert!(ledger.read(end, 100, 1).await.unwrap().is_empty());
    drop(ledger);
    let ledger = open(dir.path(), small_config(1_000));
    assert_eq!(ledger.start_index(), end, "start persists");
    assert_eq!(ledger.end_index(), end);
}

#[tokio::test]
async fn retention_by_time_and_size_with_manual_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let ledger = ManagedLedger::open(dir.path(), small_config(1_000), clock.clone()).unwrap();
    fill(&ledger, 20, 100).await; // old data
    let old_segments = ledger.stats().segments.len();
    clock.advance_ms(60_000);
    fill(&ledger, 20, 100).await; // new data
    let stats = ledger.stats();
    let out = ledger.apply_retention(Some(30_000), None).await.unwrap();
    assert!(out.segments_deleted >= (old_segments - 1) as u64, "{out:?}");
    assert!(out.segments_deleted <= old_segments as u64);
    assert_eq!(out.start_index, ledger.start_index());
    assert!(out.start_index > 0);
    let after = ledger.stats();
    assert_eq!(after.total_bytes + out.bytes_deleted, stats.total_bytes);
    // Nothing more is old enough.
    assert_eq!(
        ledger
            .apply_retention(Some(30_000), None)
            .await
            .unwrap()
            .segments_deleted,
        0
    );
    // By size: keep at least 1500 bytes.
    let out = ledger.apply_retention(None, Some(1_500)).await.unwrap();
    let s = ledger.stats();
    assert!(out.segments_deleted > 0);
    assert!(s.total_bytes >= 1_500 || s.segments.len() == 1, "{s:?}");
    let oldest_gone = s.total_bytes + out.bytes_deleted;
    assert!(oldest_gone > 1_500);
    // Everything old: only the active segment survives.
    clock.advance_ms(1_000_000);
    ledger.apply_retention(Some(1), None).await.unwrap();
    let s = ledger.stats();
    assert_eq!(s.segments.len(), 1);
    assert_eq!(s.start_index, s.segments[0].base_index);
    let got = ledger.read(s.start_index, 1 << 20, 1000).await.unwrap();
    assert_eq!(got.last().unwrap().header.end_index(), s.end_index);
}

#[tokio::test]
async fn rolls_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let config = LedgerConfig {
        segment_ms: 1_000,
        ..small_config(1 << 20)
    };
    let ledger = ManagedLedger::open(dir.path(), config, clock.clone()).unwrap();
    fill(&ledger, 3, 10).await;
    clock.advance_ms(999);
    fill(&ledger, 1, 10).await;
    assert_eq!(ledger.stats().segments.len(), 1);
    clock.advance_ms(1);
    fill(&ledger, 1, 10).await;
    let s = ledger.stats();
    assert_eq!(s.segments.len(), 2);
    assert_eq!(s.segments[1].entries, 1);
}

/// Flips one byte in entry `k` of the tail segment; reopen must cut exactly there.
#[tokio::test]
async fn byte_flip_in_tail_truncates_at_the_corrupt_entry() {
    for (k, offset_in_entry) in [(7usize, 60u64), (0, 3), (19, 20)] {
        let dir = tempfile::tempdir().unwrap();
        let ledger = open(dir.path(), small_config(1 << 20));
        let mut positions = Vec::new();
        for i in 0..20u64 {
            positions.push(
                ledger
                    .append(new_entry(i, 1, i as i64 * 10, 100))
                    .await
                    .unwrap(),
            );
        }
        ledger.close().await.unwrap();
        drop(ledger);
        // As after a crash: without the clean-shutdown marker, and with recovery checkpoints
        // off, the tail is scanned and CRC-checked. (After a clean close, or from a recovery
        // checkpoint, it opens from its index like a sealed segment, and damage inside the part
        // the index covers is found by the CRC check of the read that reaches it.)
        std::fs::remove_file(dir.path().join(CLEAN_SHUTDOWN_FILE_NAME)).unwrap();
        let path = dir.path().join("00000000000000000000.seg");
        let mut bytes = std::fs::read(&path).unwrap();
        let at = (positions[k].1.file_offset + offset_in_entry) as usize;
        bytes[at] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();

        let no_checkpoints = LedgerConfig {
            recovery_checkpoint_bytes: 0,
            ..small_config(1 << 20)
        };
        let ledger = open(dir.path(), no_checkpoints);
        assert_eq!(ledger.end_index(), k as u64, "cut at entry {k}");
        let recovery = ledger.stats().recovery;
        assert_eq!(recovery.truncations, 1);
        assert_eq!(
            recovery.truncated_bytes,
            bytes.len() as u64 - positions[k].1.file_offset
        );
        assert_eq!(recovery.corrupt_segments, 0);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            positions[k].1.file_offset
        );
        let got = if k > 0 {
            ledger.read(0, usize::MAX, 1000).await.unwrap()
        } else {
            Vec::new()
        };
        assert_eq!(got.len(), k);
        for (i, e) in got.iter().enumerate() {
            assert_eq!(e.payload, payload_for(i as u64, 100));
        }
        // The ledger continues from the cut.
        assert_eq!(
            ledger.append(new_entry(0, 1, 0, 5)).await.unwrap().0,
            k as u64
        );
    }
}

#[tokio::test]
async fn corrupt_entry_in_sealed_segment_is_an_error_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), small_config(1_000));
    let mut positions = Vec::new();
    for i in 0..30u64 {
        positions.push(ledger.append(new_entry(i, 1, 0, 100)).await.unwrap());
    }
    ledger.close().await.unwrap();
    drop(ledger);
    // Entry 3 lies in the first (sealed) segment.
    let (idx, pos) = positions[3];
    assert_eq!(pos.segment_base_index, 0);
    let path = dir.path().join("00000000000000000000.seg");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[pos.file_offset as usize + 80] ^= 1;
    std::fs::write(&path, &bytes).unwrap();

    let ledger = open(dir.path(), small_config(1_000));
    assert_eq!(ledger.end_index(), 30, "sealed segments are not truncated");
    // Sealed segments are scanned by header only at open: a flipped payload byte is found by
    // the read's CRC check, not by recovery, and nothing is truncated.
    assert_eq!(ledger.stats().recovery.truncations, 0);
    assert_eq!(ledger.read(0, 400, 2).await.unwrap().len(), 2);
    match ledger.read(idx, 100, 10).await {
        Err(StorageError::Corrupt {
            segment,
            file_offset,
            ..
        }) => {
            assert_eq!((segment, file_offset), (0, pos.file_offset))
        }
        other => panic!("expected corrupt, got {other:?}"),
    }
    // A read spanning it serves what precedes it and stops there; the next read, at it, fails.
    let spanning = ledger.read(0, usize::MAX, 100).await.unwrap();
    assert_eq!(spanning.last().map(|e| e.header.end_index()), Some(idx));
    assert!(matches!(
        ledger.read(idx, usize::MAX, 100).await,
        Err(StorageError::Corrupt { .. })
    ));
    assert_eq!(ledger.stats().corrupt_reads, 2);
    // A reader past it (a consumer that sought beyond it) is not stopped by it.
    let after = ledger.read(idx + 1, 400, 2).await.unwrap();
    assert_eq!(after.first().map(|e| e.header.first_index), Some(idx + 1));
    // Later segments are fine.
    let later = positions
        .iter()
        .find(|p| p.1.segment_base_index > 0)
        .unwrap()
        .0;
    assert!(!ledger.read(later, 100, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_fsyncs_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), small_config(1 << 20));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut firsts = Vec::new();
            for _ in 0..10 {
                let p = ledger
                    .append_with(|first| new_entry(first, 2, 0, 50))
                    .unwrap();
                let first = p.first_index();
                let pos = p.wait().await.unwrap();
                firsts.push((first, pos));
            }
            firsts
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    for (i, (first, _)) in all.iter().enumerate() {
        assert_eq!(*first, i as u64 * 2);
    }
    for w in all.windows(2) {
        assert!(w[0].1 < w[1].1, "positions follow index order");
    }
    let s = ledger.stats();
    assert_eq!(s.appends, 320);
    assert_eq!(s.appends_synced, 320);
    assert!(
        s.fsyncs < 320,
        "group commit: {} fsyncs for 320 appends",
        s.fsyncs
    );
    assert_eq!(s.fsync_latency.count(), s.fsyncs, "every fsync is timed");
    assert!(s.fsync_latency.sum_us > 0);
    let entries = ledger.read(0, usize::MAX, 1000).await.unwrap();
    assert_eq!(entries.len(), 320);
    for e in &entries {
        assert_eq!(e.payload, payload_for(e.header.first_index, 50));
    }
}

#[tokio::test]
async fn fsync_policies_and_subscribe() {
    for fsync in [FsyncPolicy::Os, FsyncPolicy::Interval { interval_ms: 5 }] {
        let dir = tempfile::tempdir().unwrap();
        let config = LedgerConfig {
            fsync,
            ..small_config(1 << 20)
        };
        let ledger = open(dir.path(), config.clone());
        let mut rx = ledger.subscribe();
        assert_eq!(*rx.borrow(), 0);
        ledger.append(new_entry(0, 3, 0, 10)).await.unwrap();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), 3);
        if let FsyncPolicy::Interval { .. } = fsync {
            // The interval fsync runs on its own: wait (bounded) for it, not for a time.
            magnetar_testkit::wait_until("the interval fsync ran", || ledger.stats().fsyncs >= 1)
                .await;
            assert_eq!(ledger.stats().appends_synced, 0);
        }
        ledger.flush().await.unwrap();
        ledger.close().await.unwrap();
        drop(ledger);
        assert_eq!(open(dir.path(), config).end_index(), 3);
    }
}

#[tokio::test]
async fn scan_headers_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), small_config(1_000));
    let expected = fill(&ledger, 30, 100).await;
    let h = ledger.scan_headers(expected[5].0, 12).await.unwrap();
    assert_eq!(h.len(), 12);
    assert_eq!(h[0].first_index, expected[5].0);
    assert_eq!(
        h[0].producer.map(|p| p.base_sequence),
        Some(expected[5].0 as i32).filter(|_| expected[5].0.is_multiple_of(3))
    );
    let all = ledger.scan_headers(0, usize::MAX).await.unwrap();
    assert_eq!(all.len(), 30);
}

#[tokio::test]
async fn cursors_persist_and_track_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), small_config(1 << 20));
    for i in 0..10 {
        ledger.append(new_entry(i, 1, 0, 10)).await.unwrap();
    }
    let c = ledger
        .open_cursor("sub-a", CursorStart::Earliest)
        .await
        .unwrap();
    assert_eq!(c.mark_delete_index, 0);
    assert_eq!(
        ledger
            .open_cursor("sub-b", CursorStart::Latest)
            .await
            .unwrap()
            .mark_delete_index,
        10
    );
    assert_eq!(ledger.backlog("sub-a").unwrap(), 10);
    assert_eq!(ledger.backlog("sub-b").unwrap(), 0);
    let c = ledger.ack("sub-a", &[2..4, 6..7]).await.unwrap();
    assert_eq!(c.mark_delete_index, 0);
    assert_eq!(ledger.backlog("sub-a").unwrap(), 7);
    let c = ledger.ack("sub-a", &[0..2]).await.unwrap();
    assert_eq!(
        c.mark_delete_index, 4,
        "mark-delete advances over contiguous acks"
    );
    assert!(
        ledger.ack("sub-a", &[9..11]).await.is_err(),
        "cannot ack beyond the end"
    );
    assert!(matches!(
        ledger.ack("nope", &[0..1]).await,
        Err(StorageError::CursorNotFound { .. })
    ));
    ledger.ack_cumulative("sub-b", 9).await.unwrap();
    // Opening an existing cursor returns it unchanged.
    assert_eq!(
        ledger
            .open_cursor("sub-a", CursorStart::Latest)
            .await
            .unwrap()
            .mark_delete_index,
        4
    );
    ledger
        .open_cursor("gone", CursorStart::Index(5))
        .await
        .unwrap();
    assert!(ledger.delete_cursor("gone").await.unwrap());
    assert!(!ledger.delete_cursor("gone").await.unwrap());
    let before = ledger.cursors();
    drop(ledger);

    let ledger = open(dir.path(), small_config(1 << 20));
    assert_eq!(ledger.cursors(), before);
    assert_eq!(before.len(), 2);
    assert_eq!(ledger.backlog("sub-a").unwrap(), 5);
    let c = ledger.reset_cursor("sub-a", 100).await.unwrap();
    assert_eq!(c.mark_delete_index, 10, "reset clamps to the end");
    assert!(c.acked.is_empty());
    // Truncation past a cursor shrinks its backlog.
    ledger.reset_cursor("sub-a", 0).await.unwrap();
    ledger.truncate_before(8).await.unwrap();
    assert_eq!(ledger.backlog("sub-a").unwrap(), 2);
}

#[tokio::test]
async fn acknowledgements_are_written_at_most_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let config = LedgerConfig {
        cursor_persist_interval_ms: 60_000,
        ..small_config(1 << 20)
    };
    let ledger = ManagedLedger::open(dir.path(), config.clone(), clock.clone()).unwrap();
    for i in 0..10 {
        ledger.append(new_entry(i, 1, 0, 10)).await.unwrap();
    }
    let file = dir.path().join("cursors.json");
    let on_disk = || std::fs::read(&file).unwrap();
    ledger
        .open_cursor("sub", CursorStart::Earliest)
        .await
        .unwrap();
    let opened = on_disk();
    clock.advance_ms(60_000);
    // The first acknowledgement is written (none was within the interval)...
    ledger.ack_cumulative("sub", 1).await.unwrap();
    let first = on_disk();
    assert_ne!(first, opened);
    // ...the next ones within the interval move the cursor in memory only.
    ledger.ack_cumulative("sub", 4).await.unwrap();
    ledger.ack("sub", &[6..8]).await.unwrap();
    assert_eq!(ledger.cursor("sub").unwrap().mark_delete_index, 5);
    assert_eq!(on_disk(), first, "written within the interval");
    // A reset is written at once (and takes the acknowledgements with it).
    ledger.reset_cursor("sub", 3).await.unwrap();
    let reset = on_disk();
    assert_ne!(reset, first);
    clock.advance_ms(60_000);
    ledger.ack_cumulative("sub", 8).await.unwrap();
    assert_ne!(on_disk(), reset, "written once the interval has passed");
    clock.advance_ms(1);
    ledger.ack_cumulative("sub", 9).await.unwrap();
    let state = ledger.cursor("sub").unwrap();
    // Closing writes what is pending; a reopened ledger sees every acknowledgement.
    ledger.close().await.unwrap();
    drop(ledger);
    let reopened = ManagedLedger::open(dir.path(), config, clock).unwrap();
    assert_eq!(reopened.cursor("sub").unwrap(), state);
    assert_eq!(reopened.backlog("sub").unwrap(), 0);
}
