//! The managed ledger: append with group commit, read, indexes, roll, recovery, retention,
//! cursors.
//!
//! Concurrency: appends take a short `append` lock to assign indexes and enqueue. At most one
//! flush per ledger runs at a time, on a tokio blocking thread (`spawn_blocking` per batch,
//! so a thousand idle ledgers cost no threads); it takes the whole queue, writes it, fsyncs
//! once under [`FsyncPolicy::Always`], then publishes the new readable end and completes
//! every append of the batch. Readers snapshot segment metadata under a read lock and do
//! their positional reads on blocking threads.

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
use crate::index_file::{encode_index, index_file_name, load_index};
use crate::segment::{
    scan_entries, scan_entries_from, SegmentInfo, READ_CHUNK_BYTES_MIN, SCAN_CHUNK_BYTES,
};
use crate::segment_store::{sync_dir, LocalSegmentStore, SegmentFile, SegmentStore};
use crate::StorageError;

/// File holding the persisted logical start index.
pub const START_INDEX_FILE_NAME: &str = "start-index";
/// Written by a successful [`ManagedLedger::close`] after the active segment is fsynced and its
/// index file written; holds that segment's base index. The next open reads and deletes it and
/// may then open the active segment from its index instead of scanning it (see `recover`).
pub const CLEAN_SHUTDOWN_FILE_NAME: &str = "clean-shutdown";
/// Lower bound of the per-ledger append queue limit; the limit is the larger of this and four
/// times `entry_bytes_max`.
pub const APPEND_QUEUE_BYTES_MIN: u64 = 64 << 20;
/// Suffix of snapshot file names; the stem is the index the snapshot is valid up to (every
/// entry below it is covered), zero-padded to 20 digits.
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Snapshots kept per ledger: writing one deletes all but the newest this many.
pub const SNAPSHOTS_KEPT: usize = 2;
/// Largest snapshot blob accepted (written or read).
pub const SNAPSHOT_BYTES_MAX: u64 = 64 << 20;
const SNAPSHOT_MAGIC: &[u8; 4] = b"MGPS";
const SNAPSHOT_VERSION: u8 = 1;
/// Magic, version, reserved (8) + index (8) + blob length (4); the CRC32C of all that and the
/// blob follows the blob.
const SNAPSHOT_HEADER_LEN: usize = 20;

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

/// An append whose index is assigned; `wait` resolves when it is durable per the policy.
#[derive(Debug)]
pub struct PendingAppend {
    first_index: u64,
    done: oneshot::Receiver<Result<Position, StorageError>>,
}

impl PendingAppend {
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    pub async fn wait(self) -> Result<Position, StorageError> {
        self.done.await.map_err(|_| StorageError::Closed)?
    }
}

/// What `apply_retention` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    pub segments_deleted: u64,
    pub bytes_deleted: u64,
    pub start_index: u64,
}

/// One segment in [`LedgerStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStats {
    pub base_index: u64,
    pub bytes: u64,
    pub entries: u64,
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
}

/// What recovery found when a ledger was opened.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Torn or corrupt tails cut off the last segment (0 or 1 per open).
    pub truncations: u64,
    /// Bytes cut off by those truncations.
    pub truncated_bytes: u64,
    /// Sealed segments found corrupt (reads reaching the damage fail).
    pub corrupt_segments: u64,
    /// Segments opened from their persisted index, without reading the segment (sealed ones,
    /// and the active one after a clean close).
    pub indexes_loaded: u64,
    /// Segments whose headers were read on open: the active one (unless the last close was
    /// clean) and every sealed one whose index file could not be used.
    pub segments_scanned: u64,
    /// Sealed segments whose index file was missing or did not match, with the reason; each
    /// was rebuilt from the segment (and logged once as a warning).
    pub index_rebuilds: Vec<IndexRebuild>,
    /// The last close was clean and the active segment opened from the index written then.
    pub clean_shutdown: bool,
}

/// One sealed segment whose index file was rebuilt on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRebuild {
    pub segment: u64,
    pub reason: String,
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
    /// Serializes truncation and retention.
    admin: tokio::sync::Mutex<()>,
    cursors: Mutex<CursorBook>,
    /// Serializes cursor file writes; holds the last written book version.
    cursor_persist: tokio::sync::Mutex<u64>,
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
            cursors: Mutex::new(CursorBook {
                cursors,
                version: 0,
            }),
            cursor_persist: tokio::sync::Mutex::new(0),
            cursor_timer: Mutex::new(CursorTimer::default()),
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

    /// Assigns the first index under the append lock, calls `build(first_index)` for the entry
    /// (callers patch the index into their payload there), enqueues it and returns at once.
    /// The order of appends is the order of indexes.
    ///
    /// When the ledger's queue already holds its limit of bytes (see
    /// [`APPEND_QUEUE_BYTES_MIN`]) this returns [`StorageError::QueueFull`] without calling
    /// `build`; it does not wait.
    pub fn append_with<F: FnOnce(u64) -> NewEntry>(
        &self,
        build: F,
    ) -> Result<PendingAppend, StorageError> {
        let mut st = lock(&self.append);
        if st.closed {
            return Err(StorageError::Closed);
        }
        if let Some(reason) = &st.failed {
            return Err(StorageError::Failed {
                reason: reason.clone(),
            });
        }
        let queue_max = self.config.queue_bytes_max();
        if st.queued_bytes >= queue_max {
            return Err(StorageError::QueueFull {
                queued_bytes: st.queued_bytes,
                max_bytes: queue_max,
            });
        }
        let first_index = st.next_index;
        let entry = build(first_index);
        let size = entry.payload.len() as u64;
        if size > u64::from(self.config.entry_bytes_max) {
            return Err(StorageError::EntryTooLarge {
                size,
                max: u64::from(self.config.entry_bytes_max),
            });
        }
        if entry.message_count == 0 {
            return Err(StorageError::InvalidEntry {
                reason: "message count is 0".to_string(),
            });
        }
        if let Some(at) = entry.first_index_at {
            if entry.payload.len() < at.saturating_add(8) {
                return Err(StorageError::InvalidEntry {
                    reason: format!("payload of {size} bytes has no room for the index at {at}"),
                });
            }
        }
        let next = first_index
            .checked_add(u64::from(entry.message_count))
            .ok_or_else(|| StorageError::InvalidEntry {
                reason: "message index overflows".to_string(),
            })?;
        let (tx, rx) = oneshot::channel();
        st.next_index = next;
        st.queued_bytes += size + ENTRY_HEADER_LEN as u64;
        st.queue.push(Queued {
            first_index,
            entry,
            done: tx,
        });
        let start_flush = !st.flushing;
        st.flushing = true;
        drop(st);
        if start_flush {
            if let Some(me) = self.me.upgrade() {
                // Prefer the caller's runtime, so a ledger outliving the runtime it was opened
                // in keeps working.
                let handle = Handle::try_current().unwrap_or_else(|_| self.runtime.clone());
                drop(handle.spawn_blocking(move || me.flush_loop()));
            }
        }
        Ok(PendingAppend {
            first_index,
            done: rx,
        })
    }

    /// Appends and waits until durable; returns the entry's first index and position.
    pub async fn append(&self, entry: NewEntry) -> Result<(u64, Position), StorageError> {
        let pending = self.append_with(|_| entry)?;
        let first = pending.first_index();
        Ok((first, pending.wait().await?))
    }

    /// Drains the queue batch by batch; runs on a blocking thread, one per ledger at a time.
    fn flush_loop(self: Arc<Self>) {
        loop {
            let batch = {
                let mut st = lock(&self.append);
                if st.queue.is_empty() || st.failed.is_some() {
                    let leftover = std::mem::take(&mut st.queue);
                    st.queued_bytes = 0;
                    st.flushing = false;
                    let waiters = std::mem::take(&mut st.idle_waiters);
                    let reason = st.failed.clone().unwrap_or_default();
                    drop(st);
                    for q in leftover {
                        let _ = q.done.send(Err(StorageError::Failed {
                            reason: reason.clone(),
                        }));
                    }
                    for w in waiters {
                        let _ = w.send(());
                    }
                    return;
                }
                st.queued_bytes = 0;
                std::mem::take(&mut st.queue)
            };
            match self.write_batch(&batch) {
                Ok(positions) => {
                    for (q, p) in batch.into_iter().zip(positions) {
                        let _ = q.done.send(Ok(p));
                    }
                }
                Err(e) => {
                    let reason = e.to_string();
                    tracing::error!(dir = %self.dir.display(), error = %reason, "append failed, ledger refuses appends until reopened");
                    lock(&self.append).failed = Some(reason.clone());
                    for q in batch {
                        let _ = q.done.send(Err(StorageError::Failed {
                            reason: reason.clone(),
                        }));
                    }
                }
            }
        }
    }

    /// Writes one batch, rolling segments as needed; fsyncs once at the end under `always`.
    fn write_batch(&self, batch: &[Queued]) -> Result<Vec<Position>, StorageError> {
        let now = self.clock.now_ms();
        let (mut file, mut base, mut seg_bytes, mut seg_first_publish, mut expected) = {
            let s = read(&self.state);
            let a = s.active()?;
            (
                a.file.clone(),
                a.base_index,
                a.bytes,
                a.first_publish_ms,
                s.end_index,
            )
        };
        let mut buf: Vec<u8> = Vec::with_capacity(
            batch
                .iter()
                .map(|q| q.entry.payload.len() + ENTRY_HEADER_LEN)
                .sum(),
        );
        let mut written: Vec<(u64, EntryHeader, u64)> = Vec::with_capacity(batch.len());
        let mut new_segments: Vec<(u64, Arc<dyn SegmentFile>)> = Vec::new();
        let mut positions = Vec::with_capacity(batch.len());
        let mut syncs = 0u64;
        for q in batch {
            let header = EntryHeader {
                first_index: q.first_index,
                message_count: q.entry.message_count,
                publish_time_ms: now,
                max_timestamp_ms: q.entry.max_timestamp_ms,
                format: q.entry.format,
                producer: q.entry.producer,
                payload_len: q.entry.payload.len() as u32,
            };
            if header.first_index != expected {
                return Err(StorageError::Failed {
                    reason: format!(
                        "index order broken before write: expected {expected}, got {}",
                        header.first_index
                    ),
                });
            }
            let len = header.encoded_len();
            let used = seg_bytes + buf.len() as u64;
            let too_big = used + len > self.config.segment_bytes;
            let too_old = seg_first_publish
                .is_some_and(|t| now.saturating_sub(t) >= self.config.segment_ms as i64);
            if used > 0 && (too_big || too_old) {
                if !buf.is_empty() {
                    file.append(&buf)?;
                    buf.clear();
                }
                // Seal: the old segment is durable before the new one exists, so recovery
                // only ever has to repair the last segment.
                self.timed_sync(file.as_ref())?;
                syncs += 1;
                let nf = self.store.create(header.first_index)?;
                new_segments.push((header.first_index, nf.clone()));
                file = nf;
                base = header.first_index;
                seg_bytes = 0;
                seg_first_publish = None;
            }
            let pos = seg_bytes + buf.len() as u64;
            let at = buf.len();
            // The one copy of the payload (into the write buffer), with the index written in and
            // the entry CRC computed once over the bytes as they will be stored.
            encode_entry_with_index(&header, &q.entry.payload, q.entry.first_index_at, &mut buf);
            // Paired invariant, write side: what we write decodes to what we meant (index
            // order, count, lengths). It covers the header only: the CRC was computed a moment
            // ago over these very bytes of `buf`, so hashing them again would only re-read the
            // same memory (it was a third CRC pass per produced byte); the CRC is verified on
            // every read and, for the last segment, at recovery.
            match decode_header(&buf[at..]) {
                Ok((h, _)) if h == header => {}
                _ => {
                    return Err(StorageError::Failed {
                        reason: format!(
                            "entry {} failed its check before write",
                            header.first_index
                        ),
                    })
                }
            }
            seg_first_publish.get_or_insert(now);
            written.push((base, header, pos));
            positions.push(Position {
                segment_base_index: base,
                file_offset: pos,
            });
            expected = header.end_index();
        }
        if !buf.is_empty() {
            file.append(&buf)?;
        }
        let synced = match self.config.fsync {
            FsyncPolicy::Always => {
                self.timed_sync(file.as_ref())?;
                syncs += 1;
                true
            }
            FsyncPolicy::Interval { .. } => {
                self.dirty.store(true, Ordering::Release);
                false
            }
            FsyncPolicy::Os => false,
        };
        let rolled = new_segments.len();
        let sealed: Vec<SegmentInfo> = {
            let mut s = write(&self.state);
            for (b, f) in new_segments {
                s.segments
                    .push(SegmentInfo::new(b, f, self.config.index_interval_bytes));
            }
            for (b, header, pos) in &written {
                if let Some(seg) = s.segments.iter_mut().rev().find(|seg| seg.base_index == *b) {
                    seg.on_append(header, *pos);
                }
            }
            s.end_index = expected;
            let n = s.segments.len();
            s.segments[n.saturating_sub(rolled + 1)..n.saturating_sub(1)].to_vec()
        };
        if rolled > 0 {
            self.counters
                .rolls
                .fetch_add(rolled as u64, Ordering::Release);
        }
        for seg in &sealed {
            self.write_segment_index(seg);
        }
        self.end_tx.send_replace(expected);
        let n = batch.len() as u64;
        self.counters.fsyncs.fetch_add(syncs, Ordering::Relaxed);
        self.counters.appends.fetch_add(n, Ordering::Relaxed);
        if synced {
            self.counters.appends_synced.fetch_add(n, Ordering::Relaxed);
        }
        Ok(positions)
    }

    /// Persists a sealed segment's index beside it. A failure only costs a scan of that segment
    /// at the next open, so it is logged, not returned.
    fn write_segment_index(&self, seg: &SegmentInfo) {
        let sync = self.config.fsync == FsyncPolicy::Always;
        let written = encode_index(seg).and_then(|bytes| {
            self.store
                .write_index(seg.base_index, &bytes, sync)
                .map_err(|e| e.to_string())
        });
        if let Err(reason) = written {
            tracing::warn!(dir = %self.dir.display(), file = %index_file_name(seg.base_index), reason = %reason, "segment index not written; the next open rebuilds it from the segment");
        }
    }

    /// Segments sealed (rolled) since this ledger was opened; a cheap counter for callers that
    /// act once per roll (the broker's producer-state snapshot).
    pub fn segments_sealed(&self) -> u64 {
        self.counters.rolls.load(Ordering::Acquire)
    }

    /// Stores an opaque `blob` (the caller's state covering every entry below `index`) as a
    /// snapshot named by `index`, then deletes all but the newest [`SNAPSHOTS_KEPT`]. Refuses
    /// an `index` beyond the readable end: a snapshot must never cover entries a crash could
    /// still lose. The file is written atomically and fsynced.
    pub async fn write_snapshot(&self, index: u64, blob: Bytes) -> Result<(), StorageError> {
        let end = self.end_index();
        if index > end || index < self.start_index() {
            return Err(StorageError::IndexOutOfRange {
                requested: index,
                start: self.start_index(),
                end,
            });
        }
        if blob.len() as u64 > SNAPSHOT_BYTES_MAX {
            return Err(StorageError::EntryTooLarge {
                size: blob.len() as u64,
                max: SNAPSHOT_BYTES_MAX,
            });
        }
        let dir = self.dir.clone();
        let _admin = self.admin.lock().await;
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(SNAPSHOT_HEADER_LEN + blob.len() + 4);
            out.extend_from_slice(SNAPSHOT_MAGIC);
            out.extend_from_slice(&[SNAPSHOT_VERSION, 0, 0, 0]);
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&(blob.len() as u32).to_le_bytes());
            out.extend_from_slice(&blob);
            let crc = crc32c::crc32c(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            atomic_write(&dir, &snapshot_file_name(index), &out)?;
            let indexes = list_snapshots(&dir)?;
            let old = indexes.len().saturating_sub(SNAPSHOTS_KEPT);
            for i in &indexes[..old] {
                remove_snapshot(&dir, *i)?;
            }
            Ok(())
        })
        .await?
    }

    /// The valid snapshots, newest first: (index, blob). A file that does not check out (bad
    /// magic, version or CRC, truncated, or beyond the readable end) is deleted with a warning
    /// and skipped, so the caller falls back to an older one or to the log.
    pub async fn snapshots(&self) -> Result<Vec<(u64, Bytes)>, StorageError> {
        let dir = self.dir.clone();
        let end = self.end_index();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for index in list_snapshots(&dir)?.into_iter().rev() {
                match read_snapshot(&dir, index) {
                    Ok(_) if index > end => {
                        tracing::warn!(dir = %dir.display(), file = %snapshot_file_name(index), end_index = end, "deleting snapshot beyond the end of the log");
                        remove_snapshot(&dir, index)?;
                    }
                    Ok(blob) => out.push((index, blob)),
                    Err(reason) => {
                        tracing::warn!(dir = %dir.display(), file = %snapshot_file_name(index), reason = %reason, "deleting invalid snapshot");
                        remove_snapshot(&dir, index)?;
                    }
                }
            }
            Ok(out)
        })
        .await?
    }

    async fn sync_active(&self) -> Result<(), StorageError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let file = read(&self.state).active()?.file.clone();
        let me = self.me.upgrade().ok_or(StorageError::Closed)?;
        tokio::task::spawn_blocking(move || me.timed_sync(file.as_ref())).await??;
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// fdatasync of a segment file, timed into the fsync latency histogram.
    fn timed_sync(&self, file: &dyn SegmentFile) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        let result = file.sync();
        self.counters.fsync_latency.observe(started.elapsed());
        result
    }

    /// Waits for queued appends to be written, then fsyncs the active segment.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let wait = {
            let mut st = lock(&self.append);
            if st.queue.is_empty() && !st.flushing {
                None
            } else {
                let (tx, rx) = oneshot::channel();
                st.idle_waiters.push(tx);
                Some(rx)
            }
        };
        if let Some(rx) = wait {
            let _ = rx.await;
        }
        self.dirty.store(true, Ordering::Release);
        self.sync_active().await
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

    /// After a successful close: persists the active segment's index and the clean-shutdown
    /// marker naming it, so the next open need not scan the active segment. Best effort: a
    /// failure only costs that scan, so it is logged, not returned.
    async fn mark_clean_shutdown(&self) {
        let Some(me) = self.me.upgrade() else { return };
        let done = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let bytes = {
                let st = read(&me.state);
                let seg = st.active().map_err(|e| e.to_string())?;
                if seg.entries == 0 {
                    // Nothing to scan next time anyway.
                    return Ok(());
                }
                (seg.base_index, encode_index(seg)?)
            };
            let (base, bytes) = bytes;
            me.store
                .write_index(base, &bytes, true)
                .map_err(|e| e.to_string())?;
            atomic_write(
                &me.dir,
                CLEAN_SHUTDOWN_FILE_NAME,
                base.to_string().as_bytes(),
            )
            .map_err(|e| e.to_string())
        })
        .await;
        let reason = match done {
            Ok(Ok(())) => return,
            Ok(Err(reason)) => reason,
            Err(e) => e.to_string(),
        };
        tracing::warn!(dir = %self.dir.display(), reason = %reason, "clean-shutdown marker not written; the next open scans the active segment");
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

    fn check_range(&self, index: u64) -> Result<(u64, u64), StorageError> {
        let s = read(&self.state);
        if index < s.start_index || index > s.end_index {
            return Err(StorageError::IndexOutOfRange {
                requested: index,
                start: s.start_index,
                end: s.end_index,
            });
        }
        Ok((s.start_index, s.end_index))
    }

    /// Reads whole entries from within one segment starting at the entry containing `from`.
    async fn read_segment(
        &self,
        from: u64,
        verify_crc: bool,
        max_bytes: usize,
        max_entries: usize,
        at_least_one: bool,
    ) -> Result<(SegmentRead, u64), StorageError> {
        let (file, base, start, limit, seg_end) = {
            let s = read(&self.state);
            let Some(seg) = s.segment_for(from) else {
                return Ok((
                    SegmentRead {
                        items: Vec::new(),
                        bytes: 0,
                        budget_hit: false,
                    },
                    from,
                ));
            };
            (
                seg.file.clone(),
                seg.base_index,
                seg.start_point(from),
                seg.bytes,
                seg.end_index,
            )
        };
        let result = tokio::task::spawn_blocking(move || {
            read_entries(
                file.as_ref(),
                base,
                start,
                limit,
                seg_end,
                from,
                verify_crc,
                max_bytes,
                max_entries,
                at_least_one,
            )
        })
        .await?;
        if let Err(StorageError::Corrupt {
            segment,
            file_offset,
            reason,
        }) = &result
        {
            self.counters.corrupt_reads.fetch_add(1, Ordering::Relaxed);
            tracing::error!(dir = %self.dir.display(), segment, file_offset, reason = %reason, "corrupt entry on read");
        }
        Ok((result?, seg_end))
    }

    async fn read_items(
        &self,
        from_index: u64,
        verify_crc: bool,
        max_bytes: usize,
        max_entries: usize,
    ) -> Result<Vec<(EntryHeader, Option<Bytes>)>, StorageError> {
        let (_, end) = self.check_range(from_index)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut from = from_index;
        while from < end && out.len() < max_entries.max(1) {
            let (r, seg_end) = self
                .read_segment(
                    from,
                    verify_crc,
                    max_bytes.saturating_sub(bytes),
                    max_entries.max(1) - out.len(),
                    out.is_empty(),
                )
                .await?;
            if r.items.is_empty() && !r.budget_hit && seg_end == from {
                break; // index no longer in any segment (deleted under us) or end reached
            }
            bytes += r.bytes;
            out.extend(r.items);
            if r.budget_hit {
                break;
            }
            from = seg_end;
        }
        Ok(out)
    }

    /// Reads whole entries starting at the entry containing `from_index`, up to `max_bytes`
    /// (encoded size) and `max_entries`, but always at least one entry if one exists.
    /// Empty when `from_index` is the end index.
    pub async fn read(
        &self,
        from_index: u64,
        max_bytes: usize,
        max_entries: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let items = self
            .read_items(from_index, true, max_bytes, max_entries)
            .await?;
        Ok(items
            .into_iter()
            .map(|(header, payload)| Entry {
                header,
                payload: payload.unwrap_or_default(),
            })
            .collect())
    }

    /// Headers from the entry containing `from_index`, at most `max_entries` (for rebuilding
    /// producer state). Payload CRCs are not checked.
    pub async fn scan_headers(
        &self,
        from_index: u64,
        max_entries: usize,
    ) -> Result<Vec<EntryHeader>, StorageError> {
        let items = self
            .read_items(from_index, false, usize::MAX, max_entries)
            .await?;
        Ok(items.into_iter().map(|(h, _)| h).collect())
    }

    /// The first entry whose max timestamp is at or above `timestamp_ms`.
    pub async fn find_by_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<EntryHeader>, StorageError> {
        let (candidates, start) = {
            let s = read(&self.state);
            let c: Vec<_> = s
                .segments
                .iter()
                .filter(|seg| {
                    seg.end_index > s.start_index
                        && seg
                            .index
                            .max_timestamp_ms()
                            .is_some_and(|m| m >= timestamp_ms)
                })
                .map(|seg| {
                    (
                        seg.file.clone(),
                        seg.base_index,
                        seg.index.lookup_time(timestamp_ms),
                        seg.bytes,
                    )
                })
                .collect();
            (c, s.start_index)
        };
        for (file, base, point, limit) in candidates {
            let point = point.unwrap_or(IndexPoint {
                first_index: base,
                file_offset: 0,
                max_timestamp_before_ms: i64::MIN,
            });
            let found = tokio::task::spawn_blocking(move || {
                let mut found = None;
                let end = scan_entries(file.as_ref(), point, limit, false, |h, _, _| {
                    if h.max_timestamp_ms >= timestamp_ms && h.end_index() > start {
                        found = Some(*h);
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })?;
                match (found, end.bad) {
                    (None, Some(reason)) => Err(StorageError::Corrupt {
                        segment: base,
                        file_offset: end.pos,
                        reason,
                    }),
                    (found, _) => Ok(found),
                }
            })
            .await??;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// The first entry with the largest max timestamp among readable entries.
    pub async fn max_timestamp_entry(&self) -> Result<Option<EntryHeader>, StorageError> {
        let (best, partial) = {
            let s = read(&self.state);
            let mut best: Option<(i64, u64)> = None;
            let mut partial = None;
            for seg in s
                .segments
                .iter()
                .filter(|seg| seg.end_index > s.start_index)
            {
                if seg.base_index < s.start_index {
                    partial = Some(s.start_index);
                    continue;
                }
                if let (Some(m), Some((idx, _))) = (
                    seg.index.max_timestamp_ms(),
                    seg.index.max_timestamp_entry(),
                ) {
                    if best.is_none_or(|(bm, _)| m > bm) {
                        best = Some((m, idx));
                    }
                }
            }
            (best, partial)
        };
        // The first segment may be cut mid-way by truncation: its index also covers dead
        // entries, so scan its live part. It comes first, so it wins ties.
        let mut from_partial: Option<EntryHeader> = None;
        if let Some(start) = partial {
            let (r, _) = self
                .read_segment(start, false, usize::MAX, usize::MAX, true)
                .await?;
            for (h, _) in r.items {
                if from_partial.is_none_or(|p| h.max_timestamp_ms > p.max_timestamp_ms) {
                    from_partial = Some(h);
                }
            }
        }
        match (from_partial, best) {
            (Some(p), Some((ts, _))) if p.max_timestamp_ms >= ts => Ok(Some(p)),
            (Some(p), None) => Ok(Some(p)),
            (_, Some((_, idx))) => Ok(self.scan_headers(idx, 1).await?.into_iter().next()),
            (None, None) => Ok(None),
        }
    }

    async fn persist_start(&self, index: u64) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            atomic_write(&dir, START_INDEX_FILE_NAME, index.to_string().as_bytes())
        })
        .await?
    }

    /// Moves the start to `new_start` (persisted first), then deletes every sealed segment
    /// that lies wholly below it. Returns (segments deleted, bytes deleted).
    async fn advance_start(&self, new_start: u64) -> Result<(u64, u64), StorageError> {
        self.persist_start(new_start).await?;
        let removed: Vec<SegmentInfo> = {
            let mut s = write(&self.state);
            s.start_index = s.start_index.max(new_start);
            let keep_from = s
                .segments
                .iter()
                .position(|seg| seg.end_index > new_start)
                .unwrap_or(s.segments.len())
                .min(s.segments.len() - 1);
            s.segments.drain(..keep_from).collect()
        };
        let bytes: u64 = removed.iter().map(|seg| seg.bytes).sum();
        let count = removed.len() as u64;
        let store = self.store.clone();
        let bases: Vec<u64> = removed.iter().map(|seg| seg.base_index).collect();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            bases.into_iter().try_for_each(|b| store.delete(b))?;
            // Snapshots covering only deleted entries go with them (as Kafka's do with the
            // log start); opening then replays the live log.
            for i in list_snapshots(&dir)? {
                if i < new_start {
                    remove_snapshot(&dir, i)?;
                }
            }
            Ok::<(), StorageError>(())
        })
        .await??;
        Ok((count, bytes))
    }

    /// Moves the logical start to `index` (may be mid-segment; persisted) and deletes whole
    /// sealed segments below it. Returns the new start index.
    pub async fn truncate_before(&self, index: u64) -> Result<u64, StorageError> {
        let _admin = self.admin.lock().await;
        let (start, _) = match self.check_range(index) {
            Ok(r) => r,
            Err(_) if index < self.start_index() => return Ok(self.start_index()),
            Err(e) => return Err(e),
        };
        if index > start {
            self.advance_start(index).await?;
        }
        Ok(self.start_index())
    }

    /// Deletes the oldest sealed segments whose last publish time is more than `retention_ms`
    /// before now, or while the ledger stays at or above `retention_bytes` without them.
    /// Never deletes the active segment.
    pub async fn apply_retention(
        &self,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
    ) -> Result<RetentionOutcome, StorageError> {
        let _admin = self.admin.lock().await;
        let now = self.clock.now_ms();
        let new_start = {
            let s = read(&self.state);
            let mut total: u64 = s.segments.iter().map(|seg| seg.bytes).sum();
            let mut new_start = None;
            for seg in &s.segments[..s.segments.len().saturating_sub(1)] {
                let by_time = match (retention_ms, seg.last_publish_ms) {
                    (Some(r), Some(t)) => {
                        now.saturating_sub(t) > i64::try_from(r).unwrap_or(i64::MAX)
                    }
                    (Some(_), None) => true,
                    _ => false,
                };
                let by_size = retention_bytes
                    .is_some_and(|r| total.saturating_sub(seg.bytes) >= r && total > r);
                if !(by_time || by_size) {
                    break;
                }
                total -= seg.bytes;
                new_start = Some(seg.end_index);
            }
            new_start.filter(|&n| n > s.start_index)
        };
        let (segments_deleted, bytes_deleted) = match new_start {
            Some(n) => self.advance_start(n).await?,
            None => (0, 0),
        };
        Ok(RetentionOutcome {
            segments_deleted,
            bytes_deleted,
            start_index: self.start_index(),
        })
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

    /// The ledger's directory.
    /// True once a write failed (disk full, I/O error): the ledger refuses appends from then on
    /// and must be reopened, which recovers the files (a torn tail is truncated by CRC).
    pub fn is_failed(&self) -> bool {
        lock(&self.append).failed.is_some()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    // ---- cursors ----

    /// Applies `change` to cursor `name` and persists the book: at once, or for an
    /// acknowledgement (`coalesce`) at most once per `cursor_persist_interval_ms`.
    async fn update_cursor(
        &self,
        name: &str,
        coalesce: bool,
        change: impl FnOnce(
            Option<&mut CursorState>,
            u64,
            u64,
        ) -> Result<Option<CursorState>, StorageError>,
    ) -> Result<Option<CursorState>, StorageError> {
        let (start, end) = {
            let s = read(&self.state);
            (s.start_index, s.end_index)
        };
        let result = {
            let mut book = lock(&self.cursors);
            let result = change(book.cursors.get_mut(name), start, end)?;
            match &result {
                Some(state) => {
                    book.cursors.insert(name.to_string(), state.clone());
                }
                None => {
                    book.cursors.remove(name);
                }
            }
            book.version += 1;
            result
        };
        let interval_ms = self.config.cursor_persist_interval_ms;
        if coalesce && interval_ms > 0 {
            let now = self.clock.now_ms();
            let mut timer = lock(&self.cursor_timer);
            let interval = i64::try_from(interval_ms).unwrap_or(i64::MAX);
            let due = timer
                .last_write_ms
                .map_or(now, |t| t.saturating_add(interval));
            if due > now {
                // Written within the interval: a delayed write (one per ledger) takes this
                // change and every other one made until then.
                if timer.scheduled.as_ref().is_none_or(|t| t.is_finished()) {
                    let weak = self.me.clone();
                    let delay = std::time::Duration::from_millis((due - now) as u64);
                    timer.scheduled = Some(self.runtime.spawn(async move {
                        tokio::time::sleep(delay).await;
                        let Some(ledger) = weak.upgrade() else { return };
                        if let Err(e) = ledger.persist_cursors().await {
                            tracing::error!(dir = %ledger.dir.display(), error = %e, "writing the cursor file failed");
                        }
                    }));
                }
                return Ok(result);
            }
        }
        self.persist_cursors().await?;
        Ok(result)
    }

    /// Writes the cursor book if it changed since the last write.
    async fn persist_cursors(&self) -> Result<(), StorageError> {
        let mut written = self.cursor_persist.lock().await;
        let (version, bytes) = {
            let book = lock(&self.cursors);
            if book.version <= *written {
                return Ok(());
            }
            (book.version, encode_cursors(&book.cursors))
        };
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || atomic_write(&dir, CURSORS_FILE_NAME, &bytes))
            .await??;
        *written = version;
        lock(&self.cursor_timer).last_write_ms = Some(self.clock.now_ms());
        Ok(())
    }

    /// Creates cursor `name` at `start`, or returns its state if it exists.
    pub async fn open_cursor(
        &self,
        name: &str,
        start: CursorStart,
    ) -> Result<CursorState, StorageError> {
        if name.is_empty() {
            return Err(StorageError::CursorInvalid {
                name: name.to_string(),
                reason: "empty name".to_string(),
            });
        }
        if let Some(c) = self.cursor(name) {
            return Ok(c);
        }
        let state = self
            .update_cursor(name, false, |existing, s, e| {
                Ok(Some(match existing {
                    Some(c) => c.clone(),
                    None => CursorState::new(match start {
                        CursorStart::Earliest => s,
                        CursorStart::Latest => e,
                        CursorStart::Index(i) => i.clamp(s, e),
                    }),
                }))
            })
            .await?;
        state.ok_or_else(|| StorageError::CursorNotFound {
            name: name.to_string(),
        })
    }

    fn not_found(name: &str) -> StorageError {
        StorageError::CursorNotFound {
            name: name.to_string(),
        }
    }

    /// Acknowledges individual ranges of indexes (below the end index).
    pub async fn ack(
        &self,
        name: &str,
        ranges: &[Range<u64>],
    ) -> Result<CursorState, StorageError> {
        let ranges = ranges.to_vec();
        self.update_cursor(name, true, |c, _, end| {
            let c = c.ok_or_else(|| Self::not_found(name))?;
            if let Some(r) = ranges.iter().find(|r| r.end > end || r.start > r.end) {
                return Err(StorageError::CursorInvalid {
                    name: name.to_string(),
                    reason: format!(
                        "ack range {}..{} is invalid or beyond end index {end}",
                        r.start, r.end
                    ),
                });
            }
            for r in ranges {
                c.ack(r);
            }
            Ok(Some(c.clone()))
        })
        .await?
        .ok_or_else(|| Self::not_found(name))
    }

    /// Acknowledges everything up to and including `index`.
    pub async fn ack_cumulative(
        &self,
        name: &str,
        index: u64,
    ) -> Result<CursorState, StorageError> {
        self.update_cursor(name, true, |c, _, end| {
            let c = c.ok_or_else(|| Self::not_found(name))?;
            if index >= end {
                return Err(StorageError::CursorInvalid {
                    name: name.to_string(),
                    reason: format!("cumulative ack of {index} is at or beyond end index {end}"),
                });
            }
            c.ack_cumulative(index);
            Ok(Some(c.clone()))
        })
        .await?
        .ok_or_else(|| Self::not_found(name))
    }

    /// Moves the cursor to `index` (clamped into the ledger), forgetting individual acks.
    pub async fn reset_cursor(&self, name: &str, index: u64) -> Result<CursorState, StorageError> {
        self.update_cursor(name, false, |c, start, end| {
            let c = c.ok_or_else(|| Self::not_found(name))?;
            c.reset(index.clamp(start, end));
            Ok(Some(c.clone()))
        })
        .await?
        .ok_or_else(|| Self::not_found(name))
    }

    /// Deletes the cursor; returns whether it existed.
    pub async fn delete_cursor(&self, name: &str) -> Result<bool, StorageError> {
        if self.cursor(name).is_none() {
            return Ok(false);
        }
        self.update_cursor(name, false, |_, _, _| Ok(None)).await?;
        Ok(true)
    }

    pub fn cursor(&self, name: &str) -> Option<CursorState> {
        lock(&self.cursors).cursors.get(name).cloned()
    }

    pub fn cursors(&self) -> Vec<(String, CursorState)> {
        lock(&self.cursors)
            .cursors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Unacknowledged messages between the cursor and the end index.
    pub fn backlog(&self, name: &str) -> Result<u64, StorageError> {
        let c = self.cursor(name).ok_or_else(|| Self::not_found(name))?;
        let s = read(&self.state);
        Ok(c.backlog(s.start_index, s.end_index))
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

#[allow(clippy::too_many_arguments)]
fn read_entries(
    file: &dyn SegmentFile,
    base: u64,
    start: IndexPoint,
    limit: u64,
    seg_end: u64,
    from: u64,
    verify_crc: bool,
    max_bytes: usize,
    max_entries: usize,
    at_least_one: bool,
) -> Result<SegmentRead, StorageError> {
    let mut items = Vec::new();
    let mut bytes = 0usize;
    let mut budget_hit = false;
    // Sized to what was asked: the budget plus a header, within [64 KiB, 1 MiB].
    let chunk_bytes = (max_bytes as u64)
        .saturating_add(ENTRY_HEADER_LEN as u64)
        .clamp(READ_CHUNK_BYTES_MIN, SCAN_CHUNK_BYTES);
    let end = scan_entries_from(
        file,
        start,
        limit,
        verify_crc,
        from,
        chunk_bytes,
        |h, _, payload| {
            if h.end_index() <= from {
                return ControlFlow::Continue(());
            }
            let len = h.encoded_len() as usize;
            if !(items.is_empty() && at_least_one) && bytes.saturating_add(len) > max_bytes {
                budget_hit = true;
                return ControlFlow::Break(());
            }
            bytes += len;
            items.push((*h, payload));
            if items.len() >= max_entries {
                budget_hit = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        },
    )?;
    if !end.stopped && end.next_index < seg_end {
        if !items.is_empty() {
            // What precedes the bad entry is served; the next read starts at it and fails.
            return Ok(SegmentRead {
                items,
                bytes,
                budget_hit: true,
            });
        }
        return Err(StorageError::Corrupt {
            segment: base,
            file_offset: end.pos,
            reason: end.bad.unwrap_or_else(|| {
                format!("segment ends at index {} before {seg_end}", end.next_index)
            }),
        });
    }
    Ok(SegmentRead {
        items,
        bytes,
        budget_hit,
    })
}

/// Rebuilds the ledger state from the segments: headers of sealed segments, full CRC check
/// of the last one, whose torn or corrupt tail is cut off.
fn recover(
    dir: &Path,
    config: &LedgerConfig,
    store: &dyn SegmentStore,
) -> Result<LedgerState, StorageError> {
    let start_path = dir.join(START_INDEX_FILE_NAME);
    let stored_start = match std::fs::read_to_string(&start_path) {
        Ok(s) => match s.trim().parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!(path = %start_path.display(), "start index file does not parse, ignoring it");
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(StorageError::io("read start index", &start_path, e)),
    };
    let clean_base = take_clean_shutdown_marker(dir)?;
    let bases = store.list()?;
    let mut segments = Vec::with_capacity(bases.len().max(1));
    let mut recovery = RecoveryReport::default();
    if bases.is_empty() {
        let base = stored_start.unwrap_or(0);
        segments.push(SegmentInfo::new(
            base,
            store.create(base)?,
            config.index_interval_bytes,
        ));
    }
    let sync = config.fsync == FsyncPolicy::Always;
    for (i, &base) in bases.iter().enumerate() {
        let last = i + 1 == bases.len();
        let file = store.open(base)?;
        let len = file.len();
        // A sealed segment opens from its index file when that matches the segment. The active
        // one is the tail and is scanned (and CRC-checked), unless the last close was clean: then
        // it was fsynced before its index was written, and that index (checked against the
        // segment like a sealed one's) is used once; the marker is already deleted, so a crash
        // from here on scans it again.
        if last && clean_base == Some(base) {
            let max = index_file_bytes_max(len);
            let loaded = match store.read_index(base, max)? {
                None => Err("missing".to_string()),
                Some(bytes) if bytes.len() as u64 > max => {
                    Err(format!("too long for a segment of {len} bytes"))
                }
                Some(bytes) => load_index(&bytes, base, &file, config.index_interval_bytes),
            };
            match loaded {
                Ok(info) => {
                    recovery.indexes_loaded += 1;
                    recovery.clean_shutdown = true;
                    segments.push(info);
                    continue;
                }
                Err(reason) => {
                    tracing::warn!(dir = %dir.display(), segment = base, reason = %reason, "index of the active segment written at the clean shutdown is unusable; scanning the segment");
                }
            }
        }
        let mut rebuild_reason = None;
        if !last {
            let max = index_file_bytes_max(len);
            let loaded = match store.read_index(base, max)? {
                None => Err("missing".to_string()),
                Some(bytes) if bytes.len() as u64 > max => {
                    Err(format!("too long for a segment of {len} bytes"))
                }
                Some(bytes) => load_index(&bytes, base, &file, config.index_interval_bytes),
            };
            match loaded {
                Ok(info) if bases.get(i + 1) == Some(&info.end_index) => {
                    recovery.indexes_loaded += 1;
                    segments.push(info);
                    continue;
                }
                Ok(info) => {
                    rebuild_reason = Some(format!(
                        "end index {} does not meet the next segment",
                        info.end_index
                    ))
                }
                Err(reason) => rebuild_reason = Some(reason),
            }
        }
        recovery.segments_scanned += 1;
        let mut info = SegmentInfo::new(base, file.clone(), config.index_interval_bytes);
        let start = info.start_point(base);
        let end = scan_entries(file.as_ref(), start, len, last, |h, pos, _| {
            info.on_append(h, pos);
            ControlFlow::Continue(())
        })?;
        if let Some(reason) = end.bad {
            if last {
                tracing::warn!(
                    dir = %dir.display(),
                    segment = base,
                    file_offset = end.pos,
                    dropped_bytes = len - end.pos,
                    reason = %reason,
                    "truncating torn or corrupt tail of the last segment"
                );
                file.truncate(end.pos)?;
                recovery.truncations += 1;
                recovery.truncated_bytes += len - end.pos;
            } else {
                recovery.corrupt_segments += 1;
                tracing::error!(dir = %dir.display(), segment = base, file_offset = end.pos, reason = %reason, "sealed segment is corrupt; reads reaching it will fail");
                info.corrupt_at = Some(end.pos);
                info.bytes = len;
            }
        }
        if let Some(&next) = bases.get(i + 1) {
            if info.end_index > next {
                return Err(StorageError::Corrupt {
                    segment: base,
                    file_offset: info.bytes,
                    reason: format!(
                        "segment ends at index {} beyond the next segment base {next}",
                        info.end_index
                    ),
                });
            }
            if info.end_index < next {
                tracing::error!(dir = %dir.display(), segment = base, end_index = info.end_index, next, "gap before next segment; reads in it will fail");
                info.corrupt_at.get_or_insert(info.bytes);
                info.bytes = len;
                info.end_index = next;
            }
        }
        if let Some(reason) = rebuild_reason {
            let file_name = index_file_name(base);
            tracing::warn!(dir = %dir.display(), file = %file_name, reason = %reason, "rebuilding segment index from the segment");
            recovery.index_rebuilds.push(IndexRebuild {
                segment: base,
                reason,
            });
            // A corrupt segment gets no new index file: it is scanned (and reported) every open.
            if info.corrupt_at.is_none() {
                let written = encode_index(&info).and_then(|bytes| {
                    store
                        .write_index(base, &bytes, sync)
                        .map_err(|e| e.to_string())
                });
                if let Err(reason) = written {
                    tracing::warn!(dir = %dir.display(), file = %file_name, reason = %reason, "segment index not rewritten");
                }
            }
        }
        segments.push(info);
    }
    let first = segments.first().map_or(0, |s| s.base_index);
    let end_index = segments.last().map_or(0, |s| s.end_index);
    let start_index = stored_start.unwrap_or(first).clamp(first, end_index);
    Ok(LedgerState {
        segments,
        start_index,
        end_index,
        recovery,
    })
}

/// Reads and deletes the clean-shutdown marker: the base index of the segment that was active
/// at the last successful close, `None` after a crash (or an unreadable marker). The deletion is
/// durable before the ledger takes appends, so the marker never outlives the state it describes.
fn take_clean_shutdown_marker(dir: &Path) -> Result<Option<u64>, StorageError> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE_NAME);
    let base = match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u64>().ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("read clean-shutdown marker", &path, e)),
    };
    std::fs::remove_file(&path)
        .map_err(|e| StorageError::io("remove clean-shutdown marker", &path, e))?;
    sync_dir(dir)?;
    Ok(base)
}

/// Upper bound of a valid index file for a segment of `segment_len` bytes: at most one point
/// per entry, and an entry is at least a header long.
fn index_file_bytes_max(segment_len: u64) -> u64 {
    (segment_len / ENTRY_HEADER_LEN as u64 + 1)
        .saturating_mul(24)
        .saturating_add(112)
}

fn snapshot_file_name(index: u64) -> String {
    format!("{index:020}{SNAPSHOT_SUFFIX}")
}

/// Indexes of the snapshot files in `dir`, ascending.
fn list_snapshots(dir: &Path) -> Result<Vec<u64>, StorageError> {
    let rd = std::fs::read_dir(dir).map_err(|e| StorageError::io("list directory", dir, e))?;
    let mut out = Vec::new();
    for item in rd {
        let item = item.map_err(|e| StorageError::io("list directory", dir, e))?;
        let name = item.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SNAPSHOT_SUFFIX)) else {
            continue;
        };
        if let (20, Ok(index)) = (stem.len(), stem.parse::<u64>()) {
            out.push(index);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn remove_snapshot(dir: &Path, index: u64) -> Result<(), StorageError> {
    let path = dir.join(snapshot_file_name(index));
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("delete snapshot", &path, e)),
    }
}

/// The blob of snapshot `index`, or why it is not valid.
fn read_snapshot(dir: &Path, index: u64) -> Result<Bytes, String> {
    use std::io::Read;
    let path = dir.join(snapshot_file_name(index));
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| {
            f.take(SNAPSHOT_BYTES_MAX + SNAPSHOT_HEADER_LEN as u64 + 5)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() < SNAPSHOT_HEADER_LEN + 4 {
        return Err(format!("truncated: {} bytes", bytes.len()));
    }
    if &bytes[..4] != SNAPSHOT_MAGIC {
        return Err("bad magic".to_string());
    }
    if bytes[4] != SNAPSHOT_VERSION {
        return Err(format!("unsupported format version {}", bytes[4]));
    }
    let mut len4 = [0u8; 4];
    len4.copy_from_slice(&bytes[16..20]);
    let blob_len = u32::from_le_bytes(len4) as usize;
    if bytes.len() != SNAPSHOT_HEADER_LEN + blob_len + 4 {
        return Err(format!(
            "truncated: {} bytes for a blob of {blob_len}",
            bytes.len()
        ));
    }
    let body_end = bytes.len() - 4;
    len4.copy_from_slice(&bytes[body_end..]);
    if crc32c::crc32c(&bytes[..body_end]) != u32::from_le_bytes(len4) {
        return Err("crc mismatch".to_string());
    }
    let mut idx8 = [0u8; 8];
    idx8.copy_from_slice(&bytes[8..16]);
    if u64::from_le_bytes(idx8) != index {
        return Err("index in the file differs from its name".to_string());
    }
    Ok(Bytes::from(bytes).slice(SNAPSHOT_HEADER_LEN..body_end))
}

/// Deletes snapshots beyond the recovered end: they cover entries a crash lost (possible
/// under the `interval` and `os` fsync policies), so they must never be used.
fn discard_snapshots_beyond(dir: &Path, end_index: u64) -> Result<(), StorageError> {
    for index in list_snapshots(dir)? {
        if index > end_index {
            tracing::warn!(dir = %dir.display(), file = %snapshot_file_name(index), end_index, "deleting snapshot beyond the recovered end of the log");
            remove_snapshot(dir, index)?;
        }
    }
    Ok(())
}
