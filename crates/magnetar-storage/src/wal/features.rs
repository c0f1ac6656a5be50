//! The managed-ledger features of a [`SharedLedger`] beyond append and read: cursors (Pulsar
//! subscriptions), time lookups (Kafka ListOffsets by time), the logical start (retention,
//! DeleteRecords), producer-state snapshots and the seal count, with the same signatures and
//! semantics as [`crate::ManagedLedger`]'s so the broker drives both kinds of ledger alike.
//!
//! Every write is **one** metadata transaction that also compares the ledger's epoch key at the
//! version this writer holds ([`LedgerInner::commit_under_fence`]): a writer that lost the
//! ledger changes nothing, gets [`StorageError::Fenced`], and its ledger refuses appends from
//! then on. Memory changes only after the transaction committed; a transaction whose answer is
//! lost leaves memory behind the store, and the next write (or a takeover) puts them level.
//!
//! - **Cursors**: `<root>/<ledger>/cursors/<name %-encoded>` holds a [`CursorRecord`] (the
//!   [`CursorState`] and the name), written through on every change (open, ack, cumulative ack,
//!   reset; delete removes it) before the change is answered or visible. Writes arriving while
//!   one is in flight go together in the next transaction (group commit, up to 100), each
//!   computed from the state the previous left and answered on its own. All of a ledger's
//!   cursors are loaded by [`SharedLedger::open`], so a new owner continues from the persisted
//!   state;
//!   `cursor`/`cursors`/`backlog` answer from memory. The persisted copy keeps at most
//!   [`CURSOR_ACKED_RANGES_PERSISTED_MAX`] individually acknowledged ranges (the lowest, as
//!   Pulsar's `managedLedgerMaxUnackedRangesToPersist`); the ones above are kept in memory only
//!   and are delivered again after a takeover (at least once). A ledger holds at most
//!   [`CURSORS_MAX`] cursors.
//! - **Time lookups** read only what matters: each chunk knows its largest event timestamp
//!   (range records, and per chunk in segment records), so `find_by_timestamp` reads the first
//!   chunk whose maximum reaches the timestamp, and `max_timestamp_entry` the chunk holding the
//!   largest (plus the chunk cut by the start, whose maximum may belong to dropped entries).
//! - **Start**: `<root>/<ledger>/start` holds a [`StartRecord`]. `truncate_before` and
//!   `apply_retention` move it and, in the same transaction, delete the records of sealed
//!   segments wholly below it (at most [`SEGMENT_DELETES_PER_TXN`] per transaction; further
//!   ones follow, and any left by a crash go with the next pass), and of snapshots below it.
//!   A move also compares the start record at the version this writer last saw: a move whose
//!   answer was lost is read back before the next one, so the start never goes back.
//!   [`collect_garbage`](super::collect_garbage) then deletes the objects no record names once
//!   they are older than the grace period. The unsealed tail is never dropped, nor the segment
//!   holding the last committed entry. Reads below the start are refused
//!   ([`StorageError::IndexOutOfRange`]).
//! - **Snapshots**: a blob is PUT create-only as
//!   `snapshots/<ledger>/<index>.e<epoch>-<crc32c>.snap`, then recorded at
//!   `<root>/<ledger>/snapshots/<index>` ([`SnapshotRecord`]: object, length, CRC32C) in a
//!   transaction that also deletes all but the newest [`SNAPSHOTS_KEPT`] records; the objects
//!   of deleted records are deleted at once when possible, else by the garbage collector.
//!   `snapshots` returns the ones whose object checks out (length, CRC), newest first, as
//!   the local ledger does.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use magnetar_metadata::{Expect, MetadataError, Txn, TxnOp, TxnOutcome};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::ledger::{decode_chunk, load_records, lock, metadata_error, ChunkRef, LedgerInner};
use super::records::{self, CursorRecord, SnapshotRecord, StartRecord};
use super::writer::{put_verified, WriterShared};
use super::SharedLedger;
use crate::ledger::RetentionOutcome;
use crate::{
    CursorStart, CursorState, EntryHeader, RangeSet, StorageError, SNAPSHOTS_KEPT,
    SNAPSHOT_BYTES_MAX,
};

/// Individually acknowledged ranges a cursor record keeps (the lowest ones): with 20-digit
/// indexes about 44 bytes each, so a record stays well below etcd's value limit.
pub const CURSOR_ACKED_RANGES_PERSISTED_MAX: usize = 5_000;

/// Cursors one shared ledger holds at most (each is one metadata key, all loaded at open).
pub const CURSORS_MAX: usize = 10_000;

/// Segment records one start-moving transaction deletes at most (etcd takes 128 operations;
/// the fence compare, the start record and snapshot deletions need the rest).
pub const SEGMENT_DELETES_PER_TXN: usize = 100;

/// Older snapshot records one snapshot write deletes at most (there are more than
/// [`SNAPSHOTS_KEPT`] only if a build kept more; the next writes trim the rest).
const SNAPSHOT_DELETES_PER_TXN: usize = 100;

/// The state behind the features of one shared ledger.
pub(crate) struct Features {
    /// The first readable index (see [`SharedLedger::start_index`]).
    pub(crate) start_index: AtomicU64,
    /// The version of the start record this writer last saw (`None`: absent). Moving the
    /// start compares it, so a move whose answer was lost is never undone by a lower one.
    start_version: Mutex<Option<u64>>,
    /// Seals committed since open.
    pub(crate) seals: AtomicU64,
    /// One start move, snapshot write or compaction swap at a time.
    pub(crate) admin: tokio::sync::Mutex<()>,
    /// One cursor transaction at a time (each computes from the state the previous one
    /// left); the writes waiting for it queue in `cursor_queue` and go together next.
    cursor_writes: tokio::sync::Mutex<()>,
    cursor_queue: Mutex<Vec<CursorJob>>,
    cursors: Mutex<BTreeMap<String, CursorState>>,
    snapshots: Mutex<BTreeMap<u64, SnapshotRecord>>,
}

impl Features {
    /// Loads the persisted start (if it was ever moved), the cursors and the snapshot records
    /// of ledger `name`.
    pub(crate) async fn load(
        shared: &WriterShared,
        root: &str,
        name: &str,
    ) -> Result<(Option<u64>, Features), StorageError> {
        let key = records::start_key(root, name);
        let (start, start_version) = read_start(shared, &key).await?;
        let mut cursors = BTreeMap::new();
        let found =
            load_records::<CursorRecord>(shared, &records::cursors_path(root, name)).await?;
        if found.len() > CURSORS_MAX {
            return Err(StorageError::Metadata {
                reason: format!(
                    "ledger {name} has {} cursors, more than {CURSORS_MAX}",
                    found.len()
                ),
            });
        }
        for (key, record) in found {
            if key != records::cursor_key(root, name, &record.name) {
                return Err(StorageError::Metadata {
                    reason: format!("cursor record at {key} names cursor {:?}", record.name),
                });
            }
            cursors.insert(record.name, record.state);
        }
        let mut snapshots = BTreeMap::new();
        let found =
            load_records::<SnapshotRecord>(shared, &records::snapshots_path(root, name)).await?;
        for (key, record) in found {
            if key != records::snapshot_key(root, name, record.index) {
                return Err(StorageError::Metadata {
                    reason: format!("snapshot record at {key} says index {}", record.index),
                });
            }
            snapshots.insert(record.index, record);
        }
        Ok((
            start,
            Features {
                start_index: AtomicU64::new(start.unwrap_or(0)),
                start_version: Mutex::new(start_version),
                seals: AtomicU64::new(0),
                admin: tokio::sync::Mutex::new(()),
                cursor_writes: tokio::sync::Mutex::new(()),
                cursor_queue: Mutex::new(Vec::new()),
                cursors: Mutex::new(cursors),
                snapshots: Mutex::new(snapshots),
            },
        ))
    }
}

/// The persisted start and its record's version, if it was ever moved.
async fn read_start(
    shared: &WriterShared,
    key: &str,
) -> Result<(Option<u64>, Option<u64>), StorageError> {
    match shared
        .metadata
        .get(key)
        .await
        .map_err(|e| metadata_error("read the start", e))?
    {
        Some(found) => Ok((
            Some(records::decode::<StartRecord>(key, &found.value)?.start_index),
            Some(found.version),
        )),
        None => Ok((None, None)),
    }
}

/// Attempts at moving the start when the stored start record is not the one this writer saw
/// (a move whose answer was lost): each reads it again first.
const START_MOVE_ATTEMPTS: u32 = 3;

impl LedgerInner {
    /// Commits `txn` with a compare of the ledger's epoch key at the version this writer holds,
    /// within the commit timeout. A failed compare of the fence fences the ledger.
    pub(crate) async fn commit_under_fence(
        &self,
        txn: Txn,
        what: &str,
    ) -> Result<TxnOutcome, StorageError> {
        self.try_commit_under_fence(txn, what)
            .await?
            .map_err(|e| metadata_error(what, e))
    }

    /// [`Self::commit_under_fence`], with the store's other refusals (a failed compare of
    /// another key, say) returned as they are, inside.
    async fn try_commit_under_fence(
        &self,
        txn: Txn,
        what: &str,
    ) -> Result<Result<TxnOutcome, MetadataError>, StorageError> {
        if self.is_fenced() {
            return Err(self.fenced_error());
        }
        let txn = self.fenced(txn);
        let timeout = Duration::from_millis(self.writer.config.commit_timeout_ms);
        match tokio::time::timeout(timeout, self.writer.metadata.txn(txn)).await {
            Ok(Ok(outcome)) => Ok(Ok(outcome)),
            Ok(Err(MetadataError::BadVersion { key, .. })) if self.is_fence_key(&key) => {
                self.fence(&format!("{} (seen at {what})", self.fence_reason(&key)));
                Err(self.fenced_error())
            }
            Ok(Err(e)) => Ok(Err(e)),
            Err(_) => Err(StorageError::Metadata {
                reason: format!("{what}: not confirmed within {timeout:?}"),
            }),
        }
    }

    fn fenced_error(&self) -> StorageError {
        StorageError::Fenced {
            ledger: self.name.clone(),
            reason: "another writer took the ledger over".into(),
        }
    }
}

fn not_found(name: &str) -> StorageError {
    StorageError::CursorNotFound {
        name: name.to_string(),
    }
}

/// The copy of `state` a cursor record holds: the lowest
/// [`CURSOR_ACKED_RANGES_PERSISTED_MAX`] acknowledged ranges.
fn persisted_state(state: &CursorState) -> CursorState {
    if state
        .acked
        .ranges()
        .nth(CURSOR_ACKED_RANGES_PERSISTED_MAX)
        .is_none()
    {
        return state.clone();
    }
    let mut acked = RangeSet::new();
    for range in state.acked.ranges().take(CURSOR_ACKED_RANGES_PERSISTED_MAX) {
        acked.insert(range);
    }
    CursorState {
        mark_delete_index: state.mark_delete_index,
        acked,
    }
}

/// Cursor writes one transaction carries at most (one operation each, within etcd's 128).
const CURSOR_WRITES_PER_TXN: usize = 100;

/// A change to one cursor, as the local ledger's cursor methods make it.
enum CursorOp {
    Open(CursorStart),
    Ack(Vec<Range<u64>>),
    AckCumulative(u64),
    Reset(u64),
    Delete,
}

impl CursorOp {
    /// The cursor's next state (`None`: deleted) from `current`, given the ledger's start and
    /// end and how many cursors it has; the checks and transitions of the local ledger, on
    /// [`CursorState`]'s own methods.
    fn apply(
        self,
        name: &str,
        current: Option<&CursorState>,
        start: u64,
        end: u64,
        cursors: usize,
    ) -> Result<Option<CursorState>, StorageError> {
        let invalid = |reason: String| StorageError::CursorInvalid {
            name: name.to_string(),
            reason,
        };
        if let CursorOp::Open(at) = self {
            return match current {
                Some(c) => Ok(Some(c.clone())),
                None if cursors >= CURSORS_MAX => Err(invalid(format!(
                    "the ledger already has {CURSORS_MAX} cursors"
                ))),
                None => Ok(Some(CursorState::new(match at {
                    CursorStart::Earliest => start,
                    CursorStart::Latest => end,
                    CursorStart::Index(i) => i.clamp(start, end),
                }))),
            };
        }
        let mut c = current.cloned().ok_or_else(|| not_found(name))?;
        match self {
            CursorOp::Open(_) => {}
            CursorOp::Ack(ranges) => {
                if let Some(r) = ranges.iter().find(|r| r.end > end || r.start > r.end) {
                    return Err(invalid(format!(
                        "ack range {}..{} is invalid or beyond end index {end}",
                        r.start, r.end
                    )));
                }
                for r in ranges {
                    c.ack(r);
                }
            }
            CursorOp::AckCumulative(index) => {
                if index >= end {
                    return Err(invalid(format!(
                        "cumulative ack of {index} is at or beyond end index {end}"
                    )));
                }
                c.ack_cumulative(index);
            }
            CursorOp::Reset(index) => c.reset(index.clamp(start, end)),
            CursorOp::Delete => return Ok(None),
        }
        Ok(Some(c))
    }
}

struct CursorJob {
    name: String,
    key: String,
    op: CursorOp,
    done: oneshot::Sender<Result<Option<CursorState>, StorageError>>,
}

/// The error a refused group commit answers each of its writes with.
fn same_error(e: &StorageError) -> StorageError {
    match e {
        StorageError::Fenced { ledger, reason } => StorageError::Fenced {
            ledger: ledger.clone(),
            reason: reason.clone(),
        },
        StorageError::Metadata { reason } => StorageError::Metadata {
            reason: reason.clone(),
        },
        other => StorageError::Metadata {
            reason: other.to_string(),
        },
    }
}

impl SharedLedger {
    // ---- cursors ----

    /// Applies `op` to cursor `name` and persists the result under the fence before it is
    /// installed in memory or answered. Writes queued while one is in flight go together in
    /// the next transaction (group commit: one etcd round trip for many acks), each answered
    /// with its own result; a refused transaction refuses them all and changes nothing.
    async fn update_cursor(
        &self,
        name: &str,
        op: CursorOp,
    ) -> Result<Option<CursorState>, StorageError> {
        let inner = &self.inner;
        let features = &inner.features;
        let key = records::cursor_key(&inner.root, &inner.name, name);
        magnetar_metadata::validate_key(&key).map_err(|e| StorageError::CursorInvalid {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        let (done, mut answer) = oneshot::channel();
        lock(&features.cursor_queue).push(CursorJob {
            name: name.to_string(),
            key,
            op,
            done,
        });
        loop {
            let _writing = features.cursor_writes.lock().await;
            match answer.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(StorageError::Metadata {
                        reason: format!(
                            "the write of cursor {name} was abandoned with its caller; it may \
                             or may not be committed"
                        ),
                    })
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let jobs: Vec<CursorJob> = {
                let mut queue = lock(&features.cursor_queue);
                let n = queue.len().min(CURSOR_WRITES_PER_TXN);
                queue.drain(..n).collect()
            };
            self.write_cursors(jobs).await;
        }
    }

    /// One group commit of cursor writes: each job's change is computed from the state the
    /// previous ones leave, all are written in one transaction under the fence, then installed
    /// and answered.
    async fn write_cursors(&self, jobs: Vec<CursorJob>) {
        let inner = &self.inner;
        let features = &inner.features;
        let (start, end) = (inner.start_index(), inner.end_index());
        // The new state of every cursor touched, with its key, and the answers due.
        let mut staged: BTreeMap<String, (String, Option<CursorState>)> = BTreeMap::new();
        let mut answers = Vec::with_capacity(jobs.len());
        {
            let committed = lock(&features.cursors);
            let mut count = committed.len();
            for job in jobs {
                let current = match staged.get(&job.name) {
                    Some((_, state)) => state.clone(),
                    None => committed.get(&job.name).cloned(),
                };
                match job.op.apply(&job.name, current.as_ref(), start, end, count) {
                    Ok(next) => {
                        match (&current, &next) {
                            (None, Some(_)) => count += 1,
                            (Some(_), None) => count -= 1,
                            _ => {}
                        }
                        staged.insert(job.name, (job.key, next.clone()));
                        answers.push((job.done, next));
                    }
                    Err(e) => {
                        let _ = job.done.send(Err(e));
                    }
                }
            }
            for (name, (_, next)) in &staged {
                let Some(next) = next else { continue };
                let was_capped = committed
                    .get(name)
                    .is_some_and(|c| persisted_state(c).acked != c.acked);
                if !was_capped && persisted_state(next).acked != next.acked {
                    tracing::warn!(
                        ledger = %inner.name,
                        cursor = %name,
                        persisted_max = CURSOR_ACKED_RANGES_PERSISTED_MAX,
                        "cursor holds more individually acknowledged ranges than are persisted; \
                         those above are delivered again after a takeover"
                    );
                }
            }
        }
        if staged.is_empty() {
            return;
        }
        let mut txn = Txn::new();
        for (name, (key, next)) in &staged {
            txn = txn.then(match next {
                Some(state) => TxnOp::put(
                    key.clone(),
                    records::encode(&CursorRecord::new(name, persisted_state(state))),
                ),
                None => TxnOp::delete(key.clone()),
            });
        }
        match inner.commit_under_fence(txn, "cursor write").await {
            Ok(_) => {
                {
                    let mut cursors = lock(&features.cursors);
                    for (name, (_, next)) in staged {
                        match next {
                            Some(state) => {
                                cursors.insert(name, state);
                            }
                            None => {
                                cursors.remove(&name);
                            }
                        }
                    }
                }
                for (done, next) in answers {
                    let _ = done.send(Ok(next));
                }
            }
            Err(e) => {
                for (done, _) in answers {
                    let _ = done.send(Err(same_error(&e)));
                }
            }
        }
    }

    /// Creates cursor `name` at `start`, or returns its state if it exists.
    pub async fn open_cursor(
        &self,
        name: &str,
        start: CursorStart,
    ) -> Result<CursorState, StorageError> {
        crate::cursor::check_name(name)?;
        if let Some(c) = self.cursor(name) {
            return Ok(c);
        }
        self.update_cursor(name, CursorOp::Open(start))
            .await?
            .ok_or_else(|| not_found(name))
    }

    /// Acknowledges individual ranges of indexes (below the end index).
    pub async fn ack(
        &self,
        name: &str,
        ranges: &[Range<u64>],
    ) -> Result<CursorState, StorageError> {
        self.update_cursor(name, CursorOp::Ack(ranges.to_vec()))
            .await?
            .ok_or_else(|| not_found(name))
    }

    /// Acknowledges everything up to and including `index`.
    pub async fn ack_cumulative(
        &self,
        name: &str,
        index: u64,
    ) -> Result<CursorState, StorageError> {
        self.update_cursor(name, CursorOp::AckCumulative(index))
            .await?
            .ok_or_else(|| not_found(name))
    }

    /// Moves the cursor to `index` (clamped into the ledger), forgetting individual acks.
    pub async fn reset_cursor(&self, name: &str, index: u64) -> Result<CursorState, StorageError> {
        self.update_cursor(name, CursorOp::Reset(index))
            .await?
            .ok_or_else(|| not_found(name))
    }

    /// Deletes the cursor; returns whether it existed.
    pub async fn delete_cursor(&self, name: &str) -> Result<bool, StorageError> {
        if self.cursor(name).is_none() {
            return Ok(false);
        }
        self.update_cursor(name, CursorOp::Delete).await?;
        Ok(true)
    }

    pub fn cursor(&self, name: &str) -> Option<CursorState> {
        lock(&self.inner.features.cursors).get(name).cloned()
    }

    pub fn cursors(&self) -> Vec<(String, CursorState)> {
        lock(&self.inner.features.cursors)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Unacknowledged messages between the cursor and the end index.
    pub fn backlog(&self, name: &str) -> Result<u64, StorageError> {
        let c = self.cursor(name).ok_or_else(|| not_found(name))?;
        Ok(c.backlog(self.start_index(), self.end_index()))
    }

    // ---- time lookups ----

    /// Calls `visit` under the lock on each committed chunk holding readable entries at or
    /// above `from` (and the start), in index order, until it answers `false`; nothing is
    /// cloned but what `visit` keeps.
    fn visit_live_chunks(&self, from: u64, mut visit: impl FnMut(&ChunkRef) -> bool) {
        let from = from.max(self.start_index());
        let c = lock(&self.inner.committed);
        let first = c
            .chunks
            .range((Bound::Unbounded, Bound::Included(from)))
            .next_back()
            .map_or(from, |(&first, _)| first);
        for chunk in c.chunks.range(first..).map(|(_, chunk)| chunk) {
            if chunk.end_index > from && !visit(chunk) {
                return;
            }
        }
    }

    /// The readable headers of one chunk (CRC-checked, as reads are).
    async fn chunk_headers(&self, chunk: &ChunkRef) -> Result<Vec<EntryHeader>, StorageError> {
        let start = self.start_index();
        let bytes = self.inner.chunk_bytes(chunk).await?;
        Ok(decode_chunk(&self.inner.name, chunk, &bytes)?
            .into_iter()
            .map(|e| e.header)
            .filter(|h| h.end_index() > start)
            .collect())
    }

    /// The first entry whose max timestamp is at or above `timestamp_ms`.
    pub async fn find_by_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<EntryHeader>, StorageError> {
        // A chunk's maximum is exact (or an upper bound for old records): the first chunk
        // reaching the timestamp holds the answer, unless its maximum belongs to entries below
        // the start or was only a bound; then the next candidate is read.
        let mut from = 0;
        loop {
            let mut candidate = None;
            self.visit_live_chunks(from, |c| {
                if c.max_timestamp_ms >= timestamp_ms {
                    candidate = Some(c.clone());
                    return false;
                }
                true
            });
            let Some(chunk) = candidate else {
                return Ok(None);
            };
            let found = self
                .chunk_headers(&chunk)
                .await?
                .into_iter()
                .find(|h| h.max_timestamp_ms >= timestamp_ms);
            if found.is_some() {
                return Ok(found);
            }
            from = chunk.end_index;
        }
    }

    /// The first entry with the largest max timestamp among readable entries.
    pub async fn max_timestamp_entry(&self) -> Result<Option<EntryHeader>, StorageError> {
        let start = self.start_index();
        // The best chunk by exact maximum among those wholly readable (the first on ties).
        let mut best: Option<(u64, i64)> = None;
        self.visit_live_chunks(start, |c| {
            if c.timestamp_exact
                && c.first_index >= start
                && best.is_none_or(|(_, m)| c.max_timestamp_ms > m)
            {
                best = Some((c.first_index, c.max_timestamp_ms));
            }
            true
        });
        // Chunks whose maximum is not known exactly (cut by the start, or an old record's
        // bound) are read when they could beat or tie it; with the best, in index order.
        let floor = best.map_or(i64::MIN, |(_, m)| m);
        let mut candidates = Vec::new();
        self.visit_live_chunks(start, |c| {
            if best.is_some_and(|(first, _)| first == c.first_index)
                || ((!c.timestamp_exact || c.first_index < start) && c.max_timestamp_ms >= floor)
            {
                candidates.push(c.clone());
            }
            true
        });
        let mut winner: Option<EntryHeader> = None;
        for chunk in &candidates {
            for h in self.chunk_headers(chunk).await? {
                if winner.is_none_or(|w| h.max_timestamp_ms > w.max_timestamp_ms) {
                    winner = Some(h);
                }
            }
        }
        Ok(winner)
    }

    // ---- start ----

    /// Moves the start to `new_start` (never back) and deletes the records of sealed segments
    /// wholly below it (except one holding the last committed entry) and of snapshots below
    /// it, under the fence. Returns (segments deleted, their bytes). The caller holds the
    /// admin lock.
    async fn advance_start(&self, new_start: u64) -> Result<(u64, u64), StorageError> {
        let inner = &self.inner;
        let key = records::start_key(&inner.root, &inner.name);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.advance_start_once(new_start).await? {
                Some(deleted) => return Ok(deleted),
                None if attempt < START_MOVE_ATTEMPTS => {
                    // The start moved without this writer seeing the answer: catch up.
                    let (stored, version) = read_start(&inner.writer, &key).await?;
                    *lock(&inner.features.start_version) = version;
                    if let Some(stored) = stored {
                        inner
                            .features
                            .start_index
                            .fetch_max(stored, Ordering::AcqRel);
                    }
                }
                None => {
                    return Err(StorageError::Metadata {
                        reason: format!("{key} kept changing under this writer"),
                    })
                }
            }
        }
    }

    /// One attempt of [`Self::advance_start`]; `None` when the start record is not at the
    /// version this writer saw.
    async fn advance_start_once(&self, new_start: u64) -> Result<Option<(u64, u64)>, StorageError> {
        let inner = &self.inner;
        let (root, name) = (&inner.root, &inner.name);
        let start = inner.start_index();
        let end = inner.end_index();
        let new_start = new_start.max(start);
        let doomed: Vec<(u64, u64)> = {
            let c = lock(&inner.committed);
            c.segments
                .values()
                .filter(|s| s.end_index <= new_start && s.end_index < end)
                .map(|s| (s.first_index, s.len))
                .collect()
        };
        let snapshots: Vec<SnapshotRecord> = lock(&inner.features.snapshots)
            .values()
            .filter(|s| s.index < new_start)
            .cloned()
            .collect();
        // The first transaction moves the start (and drops the snapshots below it); each
        // deletes up to SEGMENT_DELETES_PER_TXN segment records.
        let mut batches: Vec<&[(u64, u64)]> = doomed.chunks(SEGMENT_DELETES_PER_TXN).collect();
        if batches.is_empty() {
            if new_start == start && snapshots.is_empty() {
                return Ok(Some((0, 0)));
            }
            batches.push(&[]);
        }
        let mut first = true;
        let mut deleted = (0u64, 0u64);
        for batch in batches {
            let mut txn = Txn::new();
            let moves = first && new_start > start;
            if moves {
                let seen = *lock(&inner.features.start_version);
                txn = txn
                    .when(
                        records::start_key(root, name),
                        seen.map_or(Expect::Absent, Expect::Version),
                    )
                    .then(TxnOp::put(
                        records::start_key(root, name),
                        records::encode(&StartRecord::new(new_start)),
                    ));
            }
            if first {
                for s in &snapshots {
                    txn = txn.then(TxnOp::delete(records::snapshot_key(root, name, s.index)));
                }
            }
            for (first_index, _) in batch {
                txn = txn.then(TxnOp::delete(records::segment_key(
                    root,
                    name,
                    *first_index,
                )));
            }
            let outcome = match inner.try_commit_under_fence(txn, "move the start").await? {
                Ok(outcome) => outcome,
                Err(MetadataError::BadVersion { key, .. })
                    if moves && key == records::start_key(root, name) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(metadata_error("move the start", e)),
            };
            if moves {
                *lock(&inner.features.start_version) = outcome.versions.first().copied().flatten();
            }
            if first {
                inner
                    .features
                    .start_index
                    .fetch_max(new_start, Ordering::AcqRel);
                let mut kept = lock(&inner.features.snapshots);
                for s in &snapshots {
                    kept.remove(&s.index);
                }
                first = false;
            }
            let mut c = lock(&inner.committed);
            for (first_index, len) in batch {
                let Some(segment) = c.segments.remove(first_index) else {
                    continue;
                };
                let gone: Vec<u64> = c
                    .chunks
                    .range(segment.first_index..segment.end_index)
                    .filter(|(_, chunk)| chunk.segment == Some(segment.first_index))
                    .map(|(&k, _)| k)
                    .collect();
                for k in gone {
                    c.chunks.remove(&k);
                    super::ledger::uncache(&mut c, k);
                }
                deleted.0 += 1;
                deleted.1 += len;
            }
        }
        for s in &snapshots {
            self.delete_object(&s.object).await;
        }
        if deleted.0 > 0 || new_start > start {
            tracing::info!(
                ledger = %name,
                start_index = new_start,
                segments_deleted = deleted.0,
                bytes_deleted = deleted.1,
                "shared ledger start moved"
            );
        }
        Ok(Some(deleted))
    }

    /// Deletes an object nothing refers to any more; a failure leaves it to the garbage
    /// collector.
    async fn delete_object(&self, object: &str) {
        let path = ObjectPath::from(object);
        match self.inner.writer.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(ledger = %self.inner.name, object, error = %e, "object not deleted; the garbage collector will");
            }
        }
    }

    /// Moves the logical start to `index` (persisted) and drops whole sealed segments below it.
    /// Returns the new start index.
    pub async fn truncate_before(&self, index: u64) -> Result<u64, StorageError> {
        let _admin = self.inner.features.admin.lock().await;
        let (start, end) = (self.start_index(), self.end_index());
        if index < start {
            return Ok(start);
        }
        if index > end {
            return Err(StorageError::IndexOutOfRange {
                requested: index,
                start,
                end,
            });
        }
        if index > start {
            self.advance_start(index).await?;
        }
        Ok(self.start_index())
    }

    /// Retention by time and size over sealed segments (never the unsealed tail): deletes the
    /// oldest sealed segments whose last publish time is more than `retention_ms` before now,
    /// or while the ledger stays at or above `retention_bytes` without them, and moves the
    /// start past them. Segments a crash left below the start go too.
    pub async fn apply_retention(
        &self,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
    ) -> Result<RetentionOutcome, StorageError> {
        self.apply_retention_until(retention_ms, retention_bytes, u64::MAX)
            .await
    }

    /// [`SharedLedger::apply_retention`] that keeps every segment holding an entry at or after
    /// `stable_end` (a partition's last stable offset).
    pub async fn apply_retention_until(
        &self,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
        stable_end: u64,
    ) -> Result<RetentionOutcome, StorageError> {
        let _admin = self.inner.features.admin.lock().await;
        let now = self.inner.writer.clock.now_ms();
        let (start, end) = (self.start_index(), self.end_index());
        let (segments, unsealed_bytes, leftovers) = {
            let c = lock(&self.inner.committed);
            let live: Vec<_> = c
                .segments
                .values()
                .filter(|s| s.end_index > start)
                .cloned()
                .collect();
            let leftovers = c.segments.values().any(|s| s.end_index <= start);
            (live, c.unsealed_bytes, leftovers)
        };
        let mut total: u64 = segments.iter().map(|s| s.len).sum::<u64>() + unsealed_bytes;
        let mut new_start = None;
        for segment in &segments {
            if segment.end_index >= end || segment.end_index > stable_end {
                break; // holds the last committed entry, or an open transaction's
            }
            let by_time = match retention_ms {
                Some(r) => {
                    let last = match segment.last_publish_ms {
                        Some(t) => t,
                        None => self.last_publish_ms(segment.first_index).await?,
                    };
                    crate::ledger::retention::expired(now, r, last)
                }
                None => false,
            };
            let by_size = crate::ledger::retention::over_size(retention_bytes, total, segment.len);
            if !(by_time || by_size) {
                break;
            }
            total -= segment.len;
            new_start = Some(segment.end_index);
        }
        let (segments_deleted, bytes_deleted) = match new_start {
            Some(n) => self.advance_start(n).await?,
            None if leftovers => self.advance_start(start).await?,
            None => (0, 0),
        };
        Ok(RetentionOutcome {
            segments_deleted,
            bytes_deleted,
            start_index: self.start_index(),
        })
    }

    /// The publish time of the last entry of the segment at `first_index`, from its last
    /// chunk's headers (for segment records written before they kept it).
    async fn last_publish_ms(&self, first_index: u64) -> Result<i64, StorageError> {
        let last = {
            let c = lock(&self.inner.committed);
            c.chunks
                .range(first_index..)
                .take_while(|(_, chunk)| chunk.segment == Some(first_index))
                .last()
                .map(|(_, chunk)| chunk.clone())
        };
        let Some(chunk) = last else {
            return Ok(i64::MIN);
        };
        let bytes = self.inner.chunk_bytes(&chunk).await?;
        Ok(decode_chunk(&self.inner.name, &chunk, &bytes)?
            .last()
            .map_or(i64::MIN, |e| e.header.publish_time_ms))
    }

    // ---- snapshots ----

    /// Stores an opaque `blob` (the caller's state covering every entry below `index`) as a
    /// snapshot object recorded under the fence, then drops all but the newest
    /// [`SNAPSHOTS_KEPT`]. Refuses an `index` outside the readable range and a blob over
    /// [`SNAPSHOT_BYTES_MAX`].
    pub async fn write_snapshot(&self, index: u64, blob: Bytes) -> Result<(), StorageError> {
        let inner = &self.inner;
        let (start, end) = (self.start_index(), self.end_index());
        if index > end || index < start {
            return Err(StorageError::IndexOutOfRange {
                requested: index,
                start,
                end,
            });
        }
        if blob.len() as u64 > SNAPSHOT_BYTES_MAX {
            return Err(StorageError::EntryTooLarge {
                size: blob.len() as u64,
                max: SNAPSHOT_BYTES_MAX,
            });
        }
        let _admin = inner.features.admin.lock().await;
        if inner.is_fenced() {
            return Err(inner.fenced_error());
        }
        {
            // Older than the newest SNAPSHOTS_KEPT: the local ledger would write it and delete
            // it at once.
            let kept = lock(&inner.features.snapshots);
            let newer = kept.keys().filter(|&&i| i > index).count();
            if newer >= SNAPSHOTS_KEPT {
                return Ok(());
            }
        }
        let crc = crc32c::crc32c(&blob);
        let object = records::snapshot_object(&inner.name, index, inner.epoch, crc);
        let deadline =
            Instant::now() + Duration::from_millis(inner.writer.config.commit_timeout_ms);
        let len = blob.len() as u64;
        put_verified(&inner.writer, &object, blob, deadline).await?;
        let record = SnapshotRecord::new(index, &object, len, crc, inner.epoch);
        let (replaced, dropped): (Option<SnapshotRecord>, Vec<SnapshotRecord>) = {
            let kept = lock(&inner.features.snapshots);
            let others: Vec<&SnapshotRecord> = kept.values().filter(|s| s.index != index).collect();
            // The newest SNAPSHOTS_KEPT of the others and the new one stay.
            let mut indexes: Vec<u64> = others.iter().map(|s| s.index).collect();
            indexes.push(index);
            indexes.sort_unstable();
            let cut = indexes.len().saturating_sub(SNAPSHOTS_KEPT);
            let oldest_kept = indexes.get(cut).copied().unwrap_or(0);
            (
                kept.get(&index).cloned(),
                others
                    .into_iter()
                    .filter(|s| s.index < oldest_kept)
                    .take(SNAPSHOT_DELETES_PER_TXN)
                    .cloned()
                    .collect(),
            )
        };
        let mut txn = Txn::new().then(TxnOp::put(
            records::snapshot_key(&inner.root, &inner.name, index),
            records::encode(&record),
        ));
        for s in &dropped {
            txn = txn.then(TxnOp::delete(records::snapshot_key(
                &inner.root,
                &inner.name,
                s.index,
            )));
        }
        inner.commit_under_fence(txn, "record a snapshot").await?;
        {
            let mut kept = lock(&inner.features.snapshots);
            kept.insert(index, record);
            for s in &dropped {
                kept.remove(&s.index);
            }
        }
        for s in dropped
            .iter()
            .chain(replaced.iter().filter(|r| r.object != object))
        {
            self.delete_object(&s.object).await;
        }
        Ok(())
    }

    /// The stored snapshots whose object checks out (length and CRC) and whose index is within
    /// the readable range: (index, blob), newest first, as [`crate::ManagedLedger::snapshots`]
    /// answers (the broker uses the first that decodes). One that does not check out is
    /// skipped with a warning, so the caller falls back to an older one or to the log.
    pub async fn snapshots(&self) -> Result<Vec<(u64, Bytes)>, StorageError> {
        let (start, end) = (self.start_index(), self.end_index());
        let records: Vec<SnapshotRecord> = lock(&self.inner.features.snapshots)
            .values()
            .rev()
            .filter(|s| s.index >= start && s.index <= end)
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            match self.read_snapshot(&record).await {
                Ok(blob) => out.push((record.index, blob)),
                Err(reason) => {
                    tracing::warn!(ledger = %self.inner.name, object = %record.object, reason = %reason, "skipping invalid snapshot");
                }
            }
        }
        Ok(out)
    }

    /// The blob of a snapshot, or why it is not valid.
    async fn read_snapshot(&self, record: &SnapshotRecord) -> Result<Bytes, String> {
        if record.len > SNAPSHOT_BYTES_MAX {
            return Err(format!(
                "recorded length {} is over {SNAPSHOT_BYTES_MAX}",
                record.len
            ));
        }
        let path = ObjectPath::from(record.object.as_str());
        let blob = self
            .inner
            .writer
            .store
            .get(&path)
            .await
            .map_err(|e| format!("cannot read: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("cannot read: {e}"))?;
        if blob.len() as u64 != record.len {
            return Err(format!(
                "{} bytes where the record says {}",
                blob.len(),
                record.len
            ));
        }
        if crc32c::crc32c(&blob) != record.crc32c {
            return Err("crc mismatch".to_string());
        }
        Ok(blob)
    }

    /// How many segments were sealed by this ledger since it was opened.
    pub fn segments_sealed(&self) -> u64 {
        self.inner.features.seals.load(Ordering::Acquire)
    }

    /// Points after which a caller's state snapshot shortens recovery: here the seals (a shared
    /// ledger has no recovery checkpoints).
    pub fn snapshot_points(&self) -> u64 {
        self.segments_sealed()
    }
}
