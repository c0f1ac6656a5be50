//! The managed ledger: append with group commit, read, indexes, roll, recovery, retention,
//! cursors.
//!
//! Concurrency: appends take a short `append` lock to assign indexes and enqueue. At most one
//! flush per ledger runs at a time, on a tokio blocking thread (`spawn_blocking` per batch,
//! so a thousand idle ledgers cost no threads); it takes the whole queue, writes it, fsyncs
//! once under [`FsyncPolicy::Always`], then publishes the new readable end and completes
//! every append of the batch. A roll under `always` fsyncs the old segment before creating the
//! new one (so only the last segment can be torn); under `os`/`interval` the old segment's
//! fsync runs on the blocking pool, off the append path (it may flush up to a whole segment of
//! dirty pages). Readers snapshot segment metadata under a read lock and do their positional
//! reads on blocking threads.
//!
//! Layout: this file has the ledger's state, `open`, `close` and stats; `append` (queueing,
//! group commit, rolls, fsync), `read`, `recovery` (what `open` finds, the clean-shutdown
//! marker), `retention` (start index, truncation, retention), `cursors` and `snapshots`.

mod append;
mod compaction;
mod cursors;
mod read;
mod recovery;
pub(crate) mod retention;
mod snapshots;

use std::collections::BTreeMap;
use std::ops::{ControlFlow, Range};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::cursor::{
    atomic_write, encode_cursors, load_cursors, CursorStart, CursorState, CURSORS_FILE_NAME,
};
use crate::entry::{
    decode_header, encode_entry_with_index, Entry, EntryHeader, NewEntry, ENTRY_HEADER_LEN,
};
use crate::histogram::{HistogramSnapshot, LatencyHistogram};
use crate::index::IndexPoint;
use crate::index_file::{encode_index, index_file_name, load_index, load_prefix_index};
use crate::segment::{
    scan_entries, scan_entries_from, SegmentInfo, READ_CHUNK_BYTES_MIN, SCAN_CHUNK_BYTES,
};
use crate::segment_store::{
    sync_dir, LocalSegmentStore, OffloadOutcome, SegmentFile, SegmentStore,
};
use crate::StorageError;

pub use append::PendingAppend;
#[doc(hidden)]
pub use compaction::SwapStep;
pub use compaction::{COMPACTION_CHECKPOINT_FILE_NAME, COMPACTION_MANIFEST_FILE_NAME};
use recovery::recover;
pub use recovery::{IndexRebuild, RecoveryReport};
pub use retention::RetentionOutcome;
use snapshots::discard_snapshots_beyond;
pub use snapshots::{SNAPSHOTS_KEPT, SNAPSHOT_BYTES_MAX, SNAPSHOT_SUFFIX};

/// File holding the persisted logical start index.
pub const START_INDEX_FILE_NAME: &str = "start-index";
/// Written by a successful [`ManagedLedger::close`] after the active segment is fsynced and its
/// index file written; holds that segment's base index. The next open reads and deletes it and
/// may then open the active segment from its index instead of scanning it (see `recover`).
pub const CLEAN_SHUTDOWN_FILE_NAME: &str = "clean-shutdown";
/// Lower bound of the per-ledger append queue limit; the limit is the larger of this and four
/// times `entry_bytes_max`.
pub const APPEND_QUEUE_BYTES_MIN: u64 = 64 << 20;

/// When appended data is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Acknowledge after fdatasync; concurrent appends share one fsync (group commit).
    Always,
    /// Acknowledge after the write; fsync every `interval_ms` when data was written.
    Interval { interval_ms: u64 },
    /// Acknowledge after the write; leave flushing to the operating system.
    Os,
}

/// Per-ledger limits and policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Roll to a new segment before the active one would exceed this size.
    pub segment_bytes: u64,
    /// Roll when the active segment's first entry is this old.
    pub segment_ms: u64,
    /// Distance between sparse index points.
    pub index_interval_bytes: u32,
    /// Largest payload accepted.
    pub entry_bytes_max: u32,
    pub fsync: FsyncPolicy,
    /// Acknowledgements move cursors in memory at once but write the cursor file at most once
    /// per this interval (Pulsar's mark-delete rate limit); `0` writes on every change. Opening,
    /// resetting and deleting a cursor and closing the ledger always write. After a crash, the
    /// acknowledgements of the last interval are lost and those messages are delivered again
    /// (at-least-once, as in Pulsar).
    pub cursor_persist_interval_ms: u64,
    /// Under `fsync = always`: after the active segment has grown by this many bytes since its
    /// last recovery checkpoint, its index (up to what was just fsynced) is written beside it,
    /// so recovery after a crash CRC-checks only the segment's tail after that point instead
    /// of the whole segment (Kafka's recovery point). `0` (the default) turns checkpoints off.
    pub recovery_checkpoint_bytes: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            entry_bytes_max: 8 << 20,
            fsync: FsyncPolicy::Always,
            cursor_persist_interval_ms: 1000,
            // Off by default: each checkpoint writes the active segment's whole index and
            // fsyncs it inline, which at 50 MB/s into one partition raised the publish p99 under
            // `always` from 1.9 to 3.6 ms (`perf/results/2026-12-04/checkpoint-latency/`).
            recovery_checkpoint_bytes: 0,
        }
    }
}

impl LedgerConfig {
    pub fn validate(&self) -> Result<(), StorageError> {
        let bad = |reason: &str| {
            Err(StorageError::InvalidConfig {
                reason: reason.to_string(),
            })
        };
        if self.segment_bytes < ENTRY_HEADER_LEN as u64 {
            return bad("segment_bytes must be at least one entry header");
        }
        if self.segment_ms == 0 {
            return bad("segment_ms must be positive");
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes must be positive");
        }
        if self.entry_bytes_max == 0 {
            return bad("entry_bytes_max must be positive");
        }
        if let FsyncPolicy::Interval { interval_ms: 0 } = self.fsync {
            return bad("fsync interval_ms must be positive");
        }
        Ok(())
    }

    fn queue_bytes_max(&self) -> u64 {
        APPEND_QUEUE_BYTES_MIN.max(4 * u64::from(self.entry_bytes_max))
    }
}

/// Where an entry was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub segment_base_index: u64,
    pub file_offset: u64,
}

/// One segment in [`LedgerStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStats {
    pub base_index: u64,
    pub bytes: u64,
    pub entries: u64,
    /// Offloaded to object storage (tiered storage); read from there.
    pub offloaded: bool,
}

/// A snapshot of a ledger's size and counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LedgerStats {
    pub segments: Vec<SegmentStats>,
    pub total_bytes: u64,
    pub start_index: u64,
    pub end_index: u64,
    /// fdatasync calls made on segment files.
    pub fsyncs: u64,
    /// Appends completed.
    pub appends: u64,
    /// Appends completed by a flush that ended in an fsync (`appends_synced / fsyncs` is the
    /// group commit factor under `always`).
    pub appends_synced: u64,
    /// Reads that met corrupt data.
    pub corrupt_reads: u64,
    pub queued_bytes: u64,
    /// Latency of every fdatasync counted in `fsyncs`.
    pub fsync_latency: HistogramSnapshot,
    /// What recovery repaired when this ledger was opened.
    pub recovery: RecoveryReport,
}

struct Queued {
    first_index: u64,
    entry: NewEntry,
    done: oneshot::Sender<Result<Position, StorageError>>,
}

#[derive(Default)]
struct AppendState {
    next_index: u64,
    queue: Vec<Queued>,
    queued_bytes: u64,
    flushing: bool,
    closed: bool,
    failed: Option<String>,
    idle_waiters: Vec<oneshot::Sender<()>>,
}

struct LedgerState {
    /// Ascending; the last one is active (written to), all others are sealed.
    segments: Vec<SegmentInfo>,
    start_index: u64,
    /// Readable end: index after the last written (and, under `always`, fsynced) entry.
    end_index: u64,
    /// What recovery repaired when the ledger was opened.
    recovery: RecoveryReport,
    /// Every index below this was compacted (log compaction's checkpoint).
    cleaned_through: u64,
}

impl LedgerState {
    fn segment_for(&self, index: u64) -> Option<&SegmentInfo> {
        let p = self.segments.partition_point(|s| s.base_index <= index);
        self.segments
            .get(p.checked_sub(1)?)
            .filter(|s| index < s.end_index)
    }

    fn active(&self) -> Result<&SegmentInfo, StorageError> {
        self.segments.last().ok_or_else(|| StorageError::Failed {
            reason: "ledger has no segments".to_string(),
        })
    }
}

#[derive(Default)]
struct Counters {
    /// Segments sealed (rolled) since open.
    rolls: AtomicU64,
    /// Recovery checkpoints of the active segment written since open.
    checkpoints: AtomicU64,
    fsyncs: AtomicU64,
    appends: AtomicU64,
    appends_synced: AtomicU64,
    corrupt_reads: AtomicU64,
    fsync_latency: LatencyHistogram,
}

struct CursorBook {
    cursors: BTreeMap<String, CursorState>,
    version: u64,
}

/// A managed ledger: one topic partition's ordered segments of entries. Share as `Arc`.
pub struct ManagedLedger {
    dir: PathBuf,
    config: LedgerConfig,
    clock: Arc<dyn Clock>,
    store: Arc<dyn SegmentStore>,
    runtime: Handle,
    me: Weak<ManagedLedger>,
    append: Mutex<AppendState>,
    state: RwLock<LedgerState>,
    end_tx: watch::Sender<u64>,
    counters: Counters,
    dirty: AtomicBool,
    interval_task: Mutex<Option<JoinHandle<()>>>,
    /// Serializes truncation, retention and the swap of compacted segments.
    admin: tokio::sync::Mutex<()>,
    /// One compaction at a time.
    compacting: tokio::sync::Mutex<()>,
    /// When the oldest tombstone the last compaction kept may go (`i64::MAX`: none known).
    tombstones_due_ms: std::sync::atomic::AtomicI64,
    cursors: Mutex<CursorBook>,
    /// Serializes cursor file writes; holds the last written book version.
    cursor_persist: tokio::sync::Mutex<u64>,
    /// The active segment's last recovery checkpoint: (segment base, its length then). Touched
    /// only by the append path (see [`LedgerConfig::recovery_checkpoint_bytes`]).
    checkpoint: Mutex<(u64, u64)>,
    /// When the cursor file was last written and whether a delayed write is scheduled (see
    /// [`LedgerConfig::cursor_persist_interval_ms`]).
    cursor_timer: Mutex<CursorTimer>,
}

#[derive(Default)]
struct CursorTimer {
    last_write_ms: Option<i64>,
    scheduled: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// Result of a bounded read inside one segment.
struct SegmentRead {
    items: Vec<(EntryHeader, Option<Bytes>)>,
    bytes: usize,
    budget_hit: bool,
}

impl ManagedLedger {
    /// Opens (creating or recovering) the ledger in `dir` with local segment files.
    /// Blocks on file I/O: call from a blocking context or at startup. Needs a tokio runtime.
    pub fn open(
        dir: &Path,
        config: LedgerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StorageError> {
        let store = LocalSegmentStore::new(dir)?;
        Self::open_with_store(dir, config, clock, Arc::new(store))
    }

    /// Like [`ManagedLedger::open`] with segments in `store`; `dir` keeps cursors and the
    /// start index.
    pub fn open_with_store(
        dir: &Path,
        config: LedgerConfig,
        clock: Arc<dyn Clock>,
        store: Arc<dyn SegmentStore>,
    ) -> Result<Arc<Self>, StorageError> {
        config.validate()?;
        let runtime = Handle::try_current().map_err(|_| StorageError::NoRuntime)?;
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create directory", dir, e))?;
        let state = recover(dir, &config, store.as_ref())?;
        discard_snapshots_beyond(dir, state.end_index)?;
        let cursors = load_cursors(dir)?;
        let end = state.end_index;
        let (end_tx, _) = watch::channel(end);
        // The recovered active segment counts as checkpointed: its next checkpoint comes after
        // `recovery_checkpoint_bytes` more.
        let checkpoint = state
            .segments
            .last()
            .map_or((0, 0), |s| (s.base_index, s.bytes));
        let ledger = Arc::new_cyclic(|me| ManagedLedger {
            dir: dir.to_path_buf(),
            config: config.clone(),
            clock,
            store,
            runtime: runtime.clone(),
            me: me.clone(),
            append: Mutex::new(AppendState {
                next_index: end,
                ..AppendState::default()
            }),
            state: RwLock::new(state),
            end_tx,
            counters: Counters::default(),
            dirty: AtomicBool::new(false),
            interval_task: Mutex::new(None),
            admin: tokio::sync::Mutex::new(()),
            compacting: tokio::sync::Mutex::new(()),
            tombstones_due_ms: std::sync::atomic::AtomicI64::new(i64::MAX),
            cursors: Mutex::new(CursorBook {
                cursors,
                version: 0,
            }),
            cursor_persist: tokio::sync::Mutex::new(0),
            cursor_timer: Mutex::new(CursorTimer::default()),
            checkpoint: Mutex::new(checkpoint),
        });
        if let FsyncPolicy::Interval { interval_ms } = config.fsync {
            let weak = Arc::downgrade(&ledger);
            let task = runtime.spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(interval_ms));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(ledger) = weak.upgrade() else { break };
                    if let Err(e) = ledger.sync_active().await {
                        tracing::error!(dir = %ledger.dir.display(), error = %e, "interval fsync failed");
                    }
                }
            });
            *lock(&ledger.interval_task) = Some(task);
        }
        Ok(ledger)
    }

    /// Segments sealed (rolled) since this ledger was opened; a cheap counter for callers that
    /// act once per roll (the broker's producer-state snapshot).
    pub fn segments_sealed(&self) -> u64 {
        self.counters.rolls.load(Ordering::Acquire)
    }

    /// Points after which a caller's state snapshot (the broker's producer state) shortens
    /// recovery: rolls and recovery checkpoints since open. After a crash, recovery reads the
    /// log from the newest snapshot and the active segment from its checkpoint, so snapshotting
    /// at each keeps both reads to the tail.
    pub fn snapshot_points(&self) -> u64 {
        self.counters.rolls.load(Ordering::Acquire)
            + self.counters.checkpoints.load(Ordering::Acquire)
    }

    /// Refuses new appends, flushes and fsyncs, stops background work.
    pub async fn close(&self) -> Result<(), StorageError> {
        lock(&self.append).closed = true;
        let result = self.flush().await;
        if let Some(task) = lock(&self.interval_task).take() {
            task.abort();
        }
        // Acknowledgements still waiting for their coalesced write.
        let cursors = self.persist_cursors().await;
        if let Some(task) = lock(&self.cursor_timer).scheduled.take() {
            task.abort();
        }
        if result.is_ok() && !self.is_failed() {
            self.mark_clean_shutdown().await;
        }
        result.and(cursors)
    }

    pub fn start_index(&self) -> u64 {
        read(&self.state).start_index
    }

    pub fn end_index(&self) -> u64 {
        read(&self.state).end_index
    }

    /// The readable end index, for long polling.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.end_tx.subscribe()
    }

    /// How many [`ManagedLedger::subscribe`] receivers are alive (long polls waiting for an
    /// append): an observable condition tests wait on instead of sleeping.
    pub fn end_waiters(&self) -> usize {
        self.end_tx.receiver_count()
    }

    pub fn stats(&self) -> LedgerStats {
        let s = read(&self.state);
        let segments: Vec<SegmentStats> = s
            .segments
            .iter()
            .map(|seg| SegmentStats {
                base_index: seg.base_index,
                bytes: seg.bytes,
                entries: seg.entries,
                offloaded: seg.file.is_remote(),
            })
            .collect();
        LedgerStats {
            total_bytes: segments.iter().map(|seg| seg.bytes).sum(),
            segments,
            start_index: s.start_index,
            end_index: s.end_index,
            fsyncs: self.counters.fsyncs.load(Ordering::Relaxed),
            appends: self.counters.appends.load(Ordering::Relaxed),
            appends_synced: self.counters.appends_synced.load(Ordering::Relaxed),
            corrupt_reads: self.counters.corrupt_reads.load(Ordering::Relaxed),
            queued_bytes: lock(&self.append).queued_bytes,
            fsync_latency: self.counters.fsync_latency.snapshot(),
            recovery: s.recovery.clone(),
        }
    }

    /// Whether the ledger's sealed segments can be offloaded (tiered storage is on).
    pub fn can_offload(&self) -> bool {
        self.store.can_offload()
    }

    /// Offloads the sealed segments that end at or before `before_index` now (tiered storage;
    /// blocking: call it from a blocking thread). `None` when the ledger's store does not
    /// offload.
    pub fn offload_before(
        &self,
        before_index: u64,
    ) -> Option<Result<OffloadOutcome, StorageError>> {
        self.store.offload_before(before_index)
    }

    /// The ledger's directory.
    /// True once a write failed (disk full, I/O error): the ledger refuses appends from then on
    /// and must be reopened, which recovers the files (a torn tail is truncated by CRC).
    pub fn is_failed(&self) -> bool {
        lock(&self.append).failed.is_some()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ManagedLedger {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.interval_task).take() {
            task.abort();
        }
        if let Some(task) = lock(&self.cursor_timer).scheduled.take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for ManagedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedLedger")
            .field("dir", &self.dir)
            .field("start_index", &self.start_index())
            .field("end_index", &self.end_index())
            .finish()
    }
}
