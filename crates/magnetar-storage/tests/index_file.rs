//! Persisted segment indexes and snapshots: opening a ledger reads only the active segment when
//! the sealed segments' index files check out; every kind of damage to an index file is
//! rebuilt from the segment with one warning, giving the same lookups as a rebuilt index.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use magnetar_storage::index_file::index_file_name;
use magnetar_storage::segment_store::segment_file_name;
use magnetar_storage::*;
use magnetar_testkit::storage::{HookedSegmentStore, SegmentHooks};

const SEGMENT_BYTES: u64 = 4_000;

fn config() -> LedgerConfig {
    LedgerConfig {
        segment_bytes: SEGMENT_BYTES,
        index_interval_bytes: 300,
        ..LedgerConfig::default()
    }
}

/// Timestamps that go up and down, so the time index matters.
fn ts_for(index: u64) -> i64 {
    ((index * 37) % 101) as i64 * 10
}

/// Bytes read per segment base, through the segment-store seam.
#[derive(Default)]
struct ReadLog(Mutex<HashMap<u64, u64>>);

impl ReadLog {
    fn take(&self) -> HashMap<u64, u64> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Counts the bytes read per segment through the kit's hooked segment store.
impl SegmentHooks for ReadLog {
    fn before_read(&self, base_index: u64, len: usize) {
        *self.0.lock().unwrap().entry(base_index).or_default() += len as u64;
    }
}

fn open_counting(dir: &Path, reads: &Arc<ReadLog>) -> Arc<ManagedLedger> {
    let store = HookedSegmentStore::new(dir, reads.clone()).unwrap();
    ManagedLedger::open_with_store(dir, config(), Arc::new(SystemClock), Arc::new(store)).unwrap()
}

fn open(dir: &Path) -> Arc<ManagedLedger> {
    ManagedLedger::open(dir, config(), Arc::new(SystemClock)).unwrap()
}

/// Warnings logged while `f` runs on this thread: each as its fields (with `message`).
fn warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<BTreeMap<String, String>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let out = tracing::subscriber::with_default(Capture(events.clone()), f);
    let events = std::mem::take(&mut *events.lock().unwrap());
    (out, events)
}

struct Capture(Arc<Mutex<Vec<BTreeMap<String, String>>>>);
struct Fields(BTreeMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut fields = Fields(BTreeMap::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A ledger of several sealed segments plus an active one; returns the sealed bases.
async fn make(dir: &Path) -> Vec<u64> {
    let ledger = open(dir);
    for i in 0..120u64 {
        let count = (i % 3) as u32 + 1;
        ledger
            .append_with(|first| NewEntry {
                payload: Bytes::from(vec![i as u8; 150 + (i as usize % 50)]),
                message_count: count,
                max_timestamp_ms: ts_for(first),
                format: PayloadFormat::Kafka,
                producer: None,
                first_index_at: None,
            })
            .unwrap()
            .wait()
            .await
            .unwrap();
    }
    ledger.close().await.unwrap();
    let stats = ledger.stats();
    let bases: Vec<u64> = stats.segments.iter().map(|s| s.base_index).collect();
    assert!(bases.len() >= 5, "want several sealed segments: {bases:?}");
    bases[..bases.len() - 1].to_vec()
}

/// Every lookup a reader can make, as printable results: the entry holding each index, the
/// first entry at or after each timestamp, the max timestamp entry, segment sizes.
async fn answers(ledger: &ManagedLedger) -> Vec<String> {
    let mut out = Vec::new();
    for i in ledger.start_index()..ledger.end_index() {
        let r = ledger.read(i, 1, 1).await;
        out.push(format!(
            "read {i}: {:?}",
            r.map(|e| e.iter().map(|e| e.header).collect::<Vec<_>>())
        ));
    }
    for t in (-10..1_020).step_by(7) {
        out.push(format!("time {t}: {:?}", ledger.find_by_timestamp(t).await));
    }
    out.push(format!("max: {:?}", ledger.max_timestamp_entry().await));
    out.push(format!("segments: {:?}", ledger.stats().segments));
    out
}

fn idx_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(index_file_name(base))
}

#[tokio::test]
async fn valid_index_files_open_without_reading_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let sealed = make(dir.path()).await;
    for base in &sealed {
        assert!(
            idx_path(dir.path(), *base).exists(),
            "index of {base} written at roll"
        );
    }
    let truth = answers(&open(dir.path())).await;

    let reads = Arc::new(ReadLog::default());
    let (ledger, warned) = warnings(|| open_counting(dir.path(), &reads));
    let opened = reads.take();
    let recovery = ledger.stats().recovery;
    assert_eq!(recovery.indexes_loaded, sealed.len() as u64);
    assert_eq!(recovery.segments_scanned, 1, "only the active segment");
    assert!(recovery.index_rebuilds.is_empty());
    assert!(warned.is_empty(), "{warned:?}");
    // Each sealed segment costs one entry header read (the last entry's, checked against the
    // index); the active one is read whole (recovery checkpoints are off by default, so the
    // index its clean close wrote is not used after the marker was consumed).
    for base in &sealed {
        assert_eq!(
            opened.get(base),
            Some(&(ENTRY_HEADER_LEN as u64)),
            "segment {base}"
        );
    }
    let active = *ledger.stats().segments.last().unwrap();
    assert_eq!(opened.get(&active.base_index), Some(&active.bytes));
    assert_eq!(recovery.checkpoint_bytes, 0);
    assert_eq!(answers(&ledger).await, truth);
}

/// What the damage did to the segment itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SegmentDamage {
    /// Only the index file was damaged: lookups answer as before.
    None,
    /// Same headers, different bytes: the index is rebuilt and written again.
    Content,
    /// The segment no longer decodes to its end: it keeps no index file.
    Torn,
}

/// Damage one sealed segment's index (or the segment's length), reopen, and check the rebuild.
async fn damaged_index_is_rebuilt(
    damage: impl FnOnce(&Path, u64),
    reason_has: &str,
    segment: SegmentDamage,
) {
    let segment_damaged = segment != SegmentDamage::None;
    let dir = tempfile::tempdir().unwrap();
    let sealed = make(dir.path()).await;
    let truth = answers(&open(dir.path())).await;
    let victim = sealed[1];
    damage(dir.path(), victim);

    let (ledger, warned) = warnings(|| open(dir.path()));
    let recovery = ledger.stats().recovery;
    assert_eq!(recovery.index_rebuilds.len(), 1, "{recovery:?}");
    assert_eq!(recovery.index_rebuilds[0].segment, victim);
    assert!(
        recovery.index_rebuilds[0].reason.contains(reason_has),
        "reason {:?} should say {reason_has:?}",
        recovery.index_rebuilds[0].reason
    );
    assert_eq!(recovery.indexes_loaded, sealed.len() as u64 - 1);
    assert_eq!(recovery.segments_scanned, 2);
    let rebuilds: Vec<_> = warned
        .iter()
        .filter(|w| w["message"] == "rebuilding segment index from the segment")
        .collect();
    assert_eq!(rebuilds.len(), 1, "one warning line: {warned:?}");
    assert_eq!(rebuilds[0]["file"], index_file_name(victim));
    assert!(rebuilds[0]["reason"].contains(reason_has));
    let after = answers(&ledger).await;
    drop(ledger);

    // The same answers as an index rebuilt from scratch (every index file removed).
    let scratch = tempfile::tempdir().unwrap();
    for item in std::fs::read_dir(dir.path()).unwrap() {
        let item = item.unwrap();
        let name = item.file_name().into_string().unwrap();
        if name.ends_with(".seg") {
            std::fs::copy(item.path(), scratch.path().join(&name)).unwrap();
        }
    }
    let rebuilt = open(scratch.path());
    assert_eq!(
        rebuilt.stats().recovery.index_rebuilds.len(),
        sealed.len(),
        "all rebuilt"
    );
    assert_eq!(answers(&rebuilt).await, after);
    if !segment_damaged {
        assert_eq!(after, truth);
    }

    // The rebuilt file was written back (unless the segment itself is torn: no index is written
    // for it, so it is scanned and reported at every open).
    let (again, warned) = warnings(|| open(dir.path()));
    let recovery = again.stats().recovery;
    if segment == SegmentDamage::Torn {
        assert_eq!(recovery.index_rebuilds.len(), 1);
        assert!(recovery.index_rebuilds[0].reason.contains(reason_has));
        assert_eq!(recovery.corrupt_segments, 1);
    } else {
        assert!(recovery.index_rebuilds.is_empty(), "{recovery:?}");
        assert_eq!(recovery.indexes_loaded, sealed.len() as u64);
        assert!(warned.is_empty(), "{warned:?}");
    }
}

fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn missing_index_is_rebuilt() {
    damaged_index_is_rebuilt(
        |dir, base| std::fs::remove_file(idx_path(dir, base)).unwrap(),
        "missing",
        SegmentDamage::None,
    )
    .await;
}

#[tokio::test]
async fn truncated_index_is_rebuilt() {
    damaged_index_is_rebuilt(
        |dir, base| rewrite(&idx_path(dir, base), |b| b.truncate(b.len() - 10)),
        "truncated",
        SegmentDamage::None,
    )
    .await;
}

#[tokio::test]
async fn bit_flipped_index_is_rebuilt() {
    damaged_index_is_rebuilt(
        |dir, base| {
            rewrite(&idx_path(dir, base), |b| {
                let at = b.len() - 20;
                b[at] ^= 0x10;
            })
        },
        "crc mismatch",
        SegmentDamage::None,
    )
    .await;
}

#[tokio::test]
async fn index_of_another_version_is_rebuilt() {
    damaged_index_is_rebuilt(
        |dir, base| {
            rewrite(&idx_path(dir, base), |b| {
                // An older format with a CRC that checks: only the version says no.
                b[4] = 0;
                let end = b.len() - 4;
                let crc = crc32c::crc32c(&b[..end]);
                b[end..].copy_from_slice(&crc.to_le_bytes());
            })
        },
        "unsupported format version 0",
        SegmentDamage::None,
    )
    .await;
}

#[tokio::test]
async fn index_of_a_segment_whose_length_changed_is_rebuilt() {
    damaged_index_is_rebuilt(
        |dir, base| {
            // Cut the sealed segment by a few bytes: its last entry is torn.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join(segment_file_name(base)))
                .unwrap();
            let len = f.metadata().unwrap().len();
            f.set_len(len - 5).unwrap();
        },
        "segment length differs",
        SegmentDamage::Torn,
    )
    .await;
}

#[tokio::test]
async fn index_whose_last_entry_differs_is_rebuilt() {
    damaged_index_is_rebuilt(
        |dir, base| {
            // Same length, different content: the last entry's stored CRC is changed.
            let seg = dir.join(segment_file_name(base));
            let bytes = std::fs::read(idx_path(dir, base)).unwrap();
            let last_offset = u64::from_le_bytes(bytes[40..48].try_into().unwrap()) as usize;
            rewrite(&seg, |b| b[last_offset + 50] ^= 1);
        },
        "last entry of the segment differs",
        SegmentDamage::Content,
    )
    .await;
}

#[tokio::test]
async fn retention_and_truncation_delete_index_files() {
    let dir = tempfile::tempdir().unwrap();
    let sealed = make(dir.path()).await;
    let ledger = open(dir.path());
    let second = ledger.stats().segments[2].base_index;
    ledger.truncate_before(second).await.unwrap();
    for base in &sealed[..2] {
        assert!(
            !idx_path(dir.path(), *base).exists(),
            "index of {base} deleted"
        );
        assert!(!dir.path().join(segment_file_name(*base)).exists());
    }
    let out = ledger.apply_retention(None, Some(1)).await.unwrap();
    assert!(out.segments_deleted > 0);
    for base in &sealed {
        assert!(
            !idx_path(dir.path(), *base).exists(),
            "index of {base} deleted"
        );
    }
}

#[tokio::test]
async fn snapshots_are_bounded_checked_and_follow_the_log() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path()).await;
    let ledger = open(dir.path());
    let end = ledger.end_index();
    assert!(matches!(
        ledger
            .write_snapshot(end + 1, Bytes::from_static(b"x"))
            .await,
        Err(StorageError::IndexOutOfRange { .. })
    ));
    for (i, index) in [10, 20, 30, end].into_iter().enumerate() {
        ledger
            .write_snapshot(index, Bytes::from(vec![i as u8; 3]))
            .await
            .unwrap();
    }
    let snaps = ledger.snapshots().await.unwrap();
    assert_eq!(
        snaps,
        vec![
            (end, Bytes::from(vec![3u8; 3])),
            (30, Bytes::from(vec![2u8; 3]))
        ],
        "the newest {SNAPSHOTS_KEPT}, newest first"
    );
    // A damaged newest snapshot is dropped with a warning; the older one is still offered.
    let newest = dir.path().join(format!("{end:020}{SNAPSHOT_SUFFIX}"));
    rewrite(&newest, |b| b[21] ^= 1);
    let snaps = ledger.snapshots().await.unwrap();
    assert_eq!(snaps, vec![(30, Bytes::from(vec![2u8; 3]))]);
    assert!(!newest.exists());
    // Truncation past a snapshot deletes it with the data it covered.
    ledger.truncate_before(31).await.unwrap();
    assert!(ledger.snapshots().await.unwrap().is_empty());
    ledger.write_snapshot(end, Bytes::new()).await.unwrap();
    ledger.close().await.unwrap();
    drop(ledger);

    // A snapshot beyond the recovered end (the tail it covered was lost) is never offered.
    let active = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .max()
        .unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 1).unwrap();
    let ledger = open(dir.path());
    assert!(ledger.end_index() < end);
    assert!(ledger.snapshots().await.unwrap().is_empty());
}

/// Appends `n` more entries (continuing `make`'s pattern) and waits for each.
async fn append_more(ledger: &ManagedLedger, n: u64) {
    for i in 0..n {
        ledger
            .append_with(|first| NewEntry {
                payload: Bytes::from(vec![i as u8; 120 + (i as usize % 40)]),
                message_count: 1,
                max_timestamp_ms: ts_for(first),
                format: PayloadFormat::Kafka,
                producer: None,
                first_index_at: None,
            })
            .unwrap()
            .wait()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn clean_close_opens_the_active_segment_from_its_index_once() {
    let dir = tempfile::tempdir().unwrap();
    let sealed = make(dir.path()).await;
    let marker = dir.path().join(CLEAN_SHUTDOWN_FILE_NAME);
    assert!(marker.exists(), "a clean close leaves the marker");

    let reads = Arc::new(ReadLog::default());
    let (ledger, warned) = warnings(|| open_counting(dir.path(), &reads));
    let opened = reads.take();
    let recovery = ledger.stats().recovery;
    assert!(recovery.clean_shutdown, "{recovery:?}");
    assert_eq!(recovery.segments_scanned, 0, "{recovery:?}");
    assert_eq!(recovery.indexes_loaded, sealed.len() as u64 + 1);
    assert!(warned.is_empty(), "{warned:?}");
    assert!(!marker.exists(), "the marker is used once");
    // Every segment, the active one too, cost one entry header read.
    let active = *ledger.stats().segments.last().unwrap();
    assert!(active.bytes > ENTRY_HEADER_LEN as u64);
    assert_eq!(
        opened.get(&active.base_index),
        Some(&(ENTRY_HEADER_LEN as u64))
    );
    let from_index = answers(&ledger).await;

    // The same answers as a scan of the same segments (after a crash there is no marker).
    drop(ledger);
    let scanned = open(dir.path());
    assert!(!scanned.stats().recovery.clean_shutdown);
    assert_eq!(scanned.stats().recovery.segments_scanned, 1);
    assert_eq!(answers(&scanned).await, from_index);
    drop(scanned);

    // A ledger opened from the marker keeps appending into its active segment (the sparse and
    // time index continue where they were), and a crash afterwards is recovered by a scan.
    let continued = open(dir.path());
    assert!(
        !continued.stats().recovery.clean_shutdown,
        "marker consumed"
    );
    continued.close().await.unwrap();
    let continued = open(dir.path());
    assert!(continued.stats().recovery.clean_shutdown);
    append_more(&continued, 40).await;
    let live = answers(&continued).await;
    drop(continued); // a crash: no close, no marker
    assert!(!marker.exists());
    let recovered = open(dir.path());
    let recovery = recovered.stats().recovery;
    assert!(!recovery.clean_shutdown);
    assert_eq!(recovery.segments_scanned, 1, "{recovery:?}");
    assert!(recovery.index_rebuilds.is_empty(), "{recovery:?}");
    assert_eq!(answers(&recovered).await, live);
}

#[tokio::test]
async fn clean_shutdown_marker_with_a_damaged_active_index_scans() {
    for damage in ["bit flip", "grown segment", "missing index"] {
        let dir = tempfile::tempdir().unwrap();
        make(dir.path()).await;
        let scanned_truth = {
            // Read the truth without consuming the marker: copy the directory.
            let copy = tempfile::tempdir().unwrap();
            for e in std::fs::read_dir(dir.path()).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), copy.path().join(e.file_name())).unwrap();
            }
            std::fs::remove_file(copy.path().join(CLEAN_SHUTDOWN_FILE_NAME)).unwrap();
            answers(&open(copy.path())).await
        };
        let active = {
            let mut bases: Vec<u64> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| {
                    let name = e.unwrap().file_name().into_string().unwrap();
                    name.strip_suffix(".seg").map(|s| s.parse().unwrap())
                })
                .collect();
            bases.sort();
            *bases.last().unwrap()
        };
        match damage {
            "bit flip" => rewrite(&idx_path(dir.path(), active), |b| b[30] ^= 0x40),
            "grown segment" => rewrite(&dir.path().join(segment_file_name(active)), |b| {
                b.extend_from_slice(&[0u8; 37])
            }),
            _ => std::fs::remove_file(idx_path(dir.path(), active)).unwrap(),
        }
        let (ledger, warned) = warnings(|| open(dir.path()));
        let recovery = ledger.stats().recovery;
        assert!(!recovery.clean_shutdown, "{damage}: {recovery:?}");
        assert_eq!(recovery.segments_scanned, 1, "{damage}: {recovery:?}");
        assert!(
            warned
                .iter()
                .any(|w| w["message"].contains("clean shutdown is unusable")),
            "{damage}: {warned:?}"
        );
        assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE_NAME).exists());
        if damage == "grown segment" {
            assert_eq!(recovery.truncated_bytes, 37, "{damage}");
        }
        assert_eq!(answers(&ledger).await, scanned_truth, "{damage}");
    }
}

/// After a crash under `fsync = always`, the active segment opens from its latest recovery
/// checkpoint (written every `recovery_checkpoint_bytes` appended, right after an fsync): only
/// the tail after it is read and CRC-checked, lookups answer as after a full scan, a torn tail
/// after it is cut off as before, and with checkpoints off the whole segment is read.
#[tokio::test]
async fn a_crash_recovers_the_active_segment_from_its_recovery_checkpoint() {
    let cfg = |checkpoint: u64| LedgerConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 300,
        recovery_checkpoint_bytes: checkpoint,
        ..LedgerConfig::default()
    };
    let open_with = |dir: &Path, c: LedgerConfig, reads: &Arc<ReadLog>| {
        let store = HookedSegmentStore::new(dir, reads.clone()).unwrap();
        ManagedLedger::open_with_store(dir, c, Arc::new(SystemClock), Arc::new(store)).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let reads = Arc::new(ReadLog::default());
    let ledger = open_with(dir.path(), cfg(2_000), &reads);
    append_more(&ledger, 100).await;
    let live = answers(&ledger).await;
    let active = *ledger.stats().segments.last().unwrap();
    assert_eq!(ledger.stats().segments.len(), 1, "one (active) segment");
    drop(ledger); // a crash: no close, no marker
    reads.take();

    let (ledger, warned) = warnings(|| open_with(dir.path(), cfg(2_000), &reads));
    let opened = reads.take();
    let recovery = ledger.stats().recovery;
    assert!(!recovery.clean_shutdown);
    assert!(warned.is_empty(), "{warned:?}");
    // The last checkpoint is within one checkpoint interval (plus a batch) of the end.
    assert!(
        recovery.checkpoint_bytes > 0 && active.bytes - recovery.checkpoint_bytes < 2_000 + 200,
        "{recovery:?}, segment {} bytes",
        active.bytes
    );
    let read = opened[&active.base_index];
    assert!(
        read <= active.bytes - recovery.checkpoint_bytes + ENTRY_HEADER_LEN as u64,
        "read {read} of {} bytes",
        active.bytes
    );
    assert_eq!(answers(&ledger).await, live);
    // It keeps appending where the checkpointed index left off.
    append_more(&ledger, 10).await;
    let live = answers(&ledger).await;
    drop(ledger);

    // A torn tail after the checkpoint is cut off as before.
    let seg = dir.path().join(segment_file_name(active.base_index));
    rewrite(&seg, |b| b.extend_from_slice(&[7u8; 41]));
    let ledger = open_with(dir.path(), cfg(2_000), &reads);
    let recovery = ledger.stats().recovery;
    assert!(recovery.checkpoint_bytes > 0, "{recovery:?}");
    assert_eq!(recovery.truncated_bytes, 41, "{recovery:?}");
    assert_eq!(answers(&ledger).await, live);
    drop(ledger);

    // Checkpoints off: the segment is read whole (the index file left behind is not used).
    reads.take();
    let ledger = open_with(dir.path(), cfg(0), &reads);
    let opened = reads.take();
    let recovery = ledger.stats().recovery;
    assert_eq!(recovery.checkpoint_bytes, 0, "{recovery:?}");
    let active = *ledger.stats().segments.last().unwrap();
    assert!(opened[&active.base_index] >= active.bytes);
    assert_eq!(answers(&ledger).await, live);
}
