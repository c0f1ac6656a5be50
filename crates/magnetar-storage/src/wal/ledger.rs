//! [`SharedLedger`]: one partition's ledger on the shared WAL.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use magnetar_metadata::{Expect, MetadataError, Txn, TxnOp};
use object_store::path::Path as ObjectPath;
use tokio::sync::{oneshot, watch};

use super::compaction::CompactionState;
use super::features::Features;
use super::records::{self, EpochRecord, RangeRecord, SegmentRecord};
use super::writer::{Pending, WriterShared};
use super::WalWriter;
use crate::entry::{crc_matches, decode_header, encode_entry_with_index};
use crate::{Entry, EntryHeader, NewEntry, StorageError, ENTRY_HEADER_LEN};

/// Takeover attempts when other writers race for the same ledger.
const OPEN_ATTEMPTS: u32 = 5;

/// Range records a ledger accepts at open (a bound until sealing folds them into segments).
const RANGES_MAX: usize = 1_000_000;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn metadata_error(what: &str, e: MetadataError) -> StorageError {
    StorageError::Metadata {
        reason: format!("{what}: {e}"),
    }
}

pub(crate) struct AppendState {
    next_index: u64,
    /// Set after a failed or fenced commit: appends are refused until a reopen.
    failed: Option<String>,
    fenced: bool,
    closed: bool,
}

/// Where a committed chunk's bytes are: a WAL object (unsealed) or a segment object (sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkRef {
    pub(crate) object: String,
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) first_index: u64,
    pub(crate) end_index: u64,
    pub(crate) entries: u32,
    /// The first index of its segment once sealed; `None` while it lives in a WAL object.
    pub(crate) segment: Option<u64>,
    /// Largest event timestamp of its entries: exact when `timestamp_exact`, otherwise an
    /// upper bound (its segment's, from a record written before chunks kept their own).
    pub(crate) max_timestamp_ms: i64,
    pub(crate) timestamp_exact: bool,
    /// In a segment rewritten by log compaction: its entries may leave gaps (at its start,
    /// between them, at its end); it may hold none.
    pub(crate) gaps: bool,
}

impl ChunkRef {
    fn of_range(r: &RangeRecord) -> Self {
        ChunkRef {
            object: r.object.clone(),
            offset: r.offset,
            len: r.len,
            first_index: r.first_index,
            end_index: r.end_index,
            entries: r.entries,
            segment: None,
            max_timestamp_ms: r.max_timestamp_ms,
            timestamp_exact: true,
            gaps: false,
        }
    }

    /// The chunks of a sealed segment, from its sparse index.
    pub(crate) fn of_segment(s: &SegmentRecord) -> Vec<ChunkRef> {
        let mut out: Vec<ChunkRef> = Vec::with_capacity(s.chunks.len());
        for (i, point) in s.chunks.iter().enumerate() {
            let (next_offset, next_index) = s
                .chunks
                .get(i + 1)
                .map_or((s.len, s.end_index), |n| (n.offset, n.first_index));
            out.push(ChunkRef {
                object: s.object.clone(),
                offset: point.offset,
                len: next_offset.saturating_sub(point.offset),
                first_index: point.first_index,
                end_index: next_index,
                entries: point.entries,
                segment: Some(s.first_index),
                max_timestamp_ms: point.max_timestamp_ms.unwrap_or(s.max_timestamp_ms),
                timestamp_exact: point.max_timestamp_ms.is_some(),
                gaps: s.compacted,
            });
        }
        out
    }
}

/// A sealed segment of a ledger, as retention needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    pub(crate) first_index: u64,
    pub(crate) end_index: u64,
    pub(crate) len: u64,
    pub(crate) last_publish_ms: Option<i64>,
}

impl SegmentMeta {
    pub(crate) fn of(s: &SegmentRecord) -> Self {
        SegmentMeta {
            first_index: s.first_index,
            end_index: s.end_index,
            len: s.len,
            last_publish_ms: s.last_publish_ms,
        }
    }
}

pub(crate) struct Committed {
    pub(crate) chunks: BTreeMap<u64, ChunkRef>,
    /// Sealed segments by first index.
    pub(crate) segments: BTreeMap<u64, SegmentMeta>,
    /// Chunks still in WAL objects, and their bytes.
    pub(crate) unsealed: u64,
    pub(crate) unsealed_bytes: u64,
    /// Chunk bytes by first index with the object they were read from, newest kept, at most
    /// the configured bytes. A hit counts only when the object is the one the chunk's current
    /// [`ChunkRef`] names: log compaction replaces a chunk's bytes under the same first index.
    pub(crate) cache: BTreeMap<u64, (String, Bytes)>,
    pub(crate) cache_bytes: u64,
}

pub(crate) struct LedgerInner {
    pub(crate) name: String,
    pub(crate) root: String,
    pub(crate) fence_key: String,
    pub(crate) fence_version: u64,
    /// The fence of whoever may write the ledger (cluster mode: the bundle's epoch key), compared
    /// by every write beside the ledger's own.
    pub(crate) owner_fence: Option<OwnerFence>,
    pub(crate) epoch: u64,
    pub(crate) writer: Arc<WriterShared>,
    append: Mutex<AppendState>,
    pub(crate) committed: Mutex<Committed>,
    /// A seal of this ledger is running.
    pub(crate) sealing: std::sync::atomic::AtomicBool,
    /// Cursors, the logical start, snapshots and seal count ([`Features`]).
    pub(crate) features: Features,
    /// Log compaction's state ([`CompactionState`]).
    pub(crate) compaction: CompactionState,
    end: watch::Sender<u64>,
}

impl LedgerInner {
    /// `txn` with the compares of this writer's fences: the ledger's epoch key and, if any, the
    /// owner's fence.
    pub(crate) fn fenced(&self, txn: Txn) -> Txn {
        let txn = txn.when(self.fence_key.clone(), Expect::Version(self.fence_version));
        match &self.owner_fence {
            Some(owner) => txn.when(owner.key.clone(), Expect::Version(owner.version)),
            None => txn,
        }
    }

    /// Whether a refused compare on `key` means this writer lost the ledger.
    pub(crate) fn is_fence_key(&self, key: &str) -> bool {
        key == self.fence_key || self.owner_fence.as_ref().is_some_and(|o| o.key == key)
    }

    /// Why a refused compare on a fence key fenced this writer.
    pub(crate) fn fence_reason(&self, key: &str) -> &'static str {
        if key == self.fence_key {
            "another writer took the ledger over"
        } else {
            "the owner's fence moved (another broker claimed the ledger's bundle)"
        }
    }

    pub(crate) fn range_key(&self, first_index: u64) -> String {
        records::range_key(&self.root, &self.name, first_index)
    }

    pub(crate) fn is_fenced(&self) -> bool {
        lock(&self.append).fenced
    }

    pub(crate) fn start_index(&self) -> u64 {
        self.features.start_index.load(Ordering::Acquire)
    }

    pub(crate) fn end_index(&self) -> u64 {
        *self.end.borrow()
    }

    pub(crate) fn failed_reason(&self) -> Option<String> {
        lock(&self.append).failed.clone()
    }

    pub(crate) fn fail(&self, reason: &str) {
        {
            let mut st = lock(&self.append);
            if st.failed.is_none() {
                tracing::warn!(ledger = %self.name, reason, "shared ledger failed; reopen to recover");
                st.failed = Some(reason.to_string());
            }
        }
        // Wakes whoever waits for the end (a settling close).
        self.end.send_modify(|_| {});
    }

    pub(crate) fn fence(&self, reason: &str) {
        {
            let mut st = lock(&self.append);
            st.fenced = true;
            if st.failed.is_none() {
                tracing::warn!(ledger = %self.name, reason, "shared ledger fenced");
                st.failed = Some(format!("fenced: {reason}"));
            }
        }
        self.end.send_modify(|_| {});
    }

    pub(crate) fn on_committed(&self, record: RangeRecord, chunk: Bytes) {
        let end = record.end_index;
        {
            let mut c = lock(&self.committed);
            let first = record.first_index;
            c.unsealed += 1;
            c.unsealed_bytes += record.len;
            c.chunks.insert(first, ChunkRef::of_range(&record));
            insert_cached(
                &mut c,
                first,
                &record.object,
                chunk,
                self.writer.config.cache_bytes_per_ledger,
            );
        }
        self.end.send_replace(end);
    }
}

pub(crate) fn insert_cached(c: &mut Committed, first: u64, object: &str, chunk: Bytes, max: u64) {
    if chunk.len() as u64 > max {
        return;
    }
    c.cache_bytes += chunk.len() as u64;
    if let Some((_, old)) = c.cache.insert(first, (object.to_string(), chunk)) {
        c.cache_bytes -= old.len() as u64;
    }
    while c.cache_bytes > max {
        let Some((_, (_, evicted))) = c.cache.pop_first() else {
            break;
        };
        c.cache_bytes -= evicted.len() as u64;
    }
}

/// Drops the cached bytes of the chunk at `first`, if any.
pub(crate) fn uncache(c: &mut Committed, first: u64) {
    if let Some((_, bytes)) = c.cache.remove(&first) {
        c.cache_bytes -= bytes.len() as u64;
    }
}

/// A fence kept outside a ledger that every write of the ledger also compares: a key that must
/// still be at `version`. Cluster mode passes the bundle's epoch key, so the moment another
/// broker claims the bundle, this broker's commits, seals and cursor writes are refused by the
/// store, whether or not the new owner has opened the ledger yet, and whatever this broker
/// believes about its own session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerFence {
    pub key: String,
    pub version: u64,
}

/// Sizes and state of a [`SharedLedger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedLedgerStats {
    pub start_index: u64,
    pub end_index: u64,
    /// Indexes handed out, committed or not.
    pub next_index: u64,
    pub epoch: u64,
    /// Committed chunks, sealed or not.
    pub chunks: u64,
    /// Chunks still in WAL objects.
    pub unsealed_chunks: u64,
    /// Sealed segment objects.
    pub segments: u64,
    pub cached_bytes: u64,
    pub fenced: bool,
}

/// An append whose index is assigned; `wait` resolves once its WAL object is committed.
#[derive(Debug)]
pub struct WalAppend {
    first_index: u64,
    done: oneshot::Receiver<Result<u64, StorageError>>,
}

impl WalAppend {
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// The entry's first index once committed, or why it was not.
    pub async fn wait(self) -> Result<u64, StorageError> {
        self.done.await.map_err(|_| StorageError::Closed)?
    }
}

/// See the [module docs](super).
#[derive(Clone)]
pub struct SharedLedger {
    pub(super) inner: Arc<LedgerInner>,
}

impl std::fmt::Debug for SharedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLedger")
            .field("name", &self.inner.name)
            .field("epoch", &self.inner.epoch)
            .finish()
    }
}

impl SharedLedger {
    /// Takes the ledger `name` over for `writer`: bumps its epoch under the writer's root in its
    /// metadata store (fencing any earlier writer), loads its sealed segments and committed
    /// ranges, checks they are contiguous and continues after the last one. `name` is a path
    /// (segments separated by `/`) that does not start with `_` or `/`.
    pub async fn open(writer: &WalWriter, name: &str) -> Result<Self, StorageError> {
        Self::open_fenced(writer, name, None).await
    }

    /// [`SharedLedger::open`] under an owner's fence: the takeover itself and every later write
    /// compare `owner` too; a refused compare on it is [`StorageError::Fenced`].
    pub async fn open_fenced(
        writer: &WalWriter,
        name: &str,
        owner: Option<OwnerFence>,
    ) -> Result<Self, StorageError> {
        let started = std::time::Instant::now();
        let shared = writer.shared.clone();
        let root = shared.root.as_str();
        let metadata = shared.metadata.clone();
        let fence_key = records::epoch_key(root, name);
        if name.starts_with('_') || name.starts_with('/') {
            return Err(StorageError::InvalidConfig {
                reason: format!("ledger name {name:?} must not start with '_' or '/'"),
            });
        }
        magnetar_metadata::validate_key(&fence_key)
            .map_err(|e| metadata_error("ledger name", e))?;
        let mut attempt = 0;
        let (epoch, fence_version) = loop {
            attempt += 1;
            let current = metadata
                .get(&fence_key)
                .await
                .map_err(|e| metadata_error("read the epoch", e))?;
            let (epoch, expect) = match &current {
                None => (1, Expect::Absent),
                Some(found) => {
                    let record: EpochRecord = records::decode(&fence_key, &found.value)?;
                    (record.epoch + 1, Expect::Version(found.version))
                }
            };
            let record = EpochRecord::new(epoch, &shared.name);
            let mut txn = Txn::new()
                .when(fence_key.clone(), expect)
                .then(TxnOp::put(&fence_key, records::encode(&record)));
            if let Some(owner) = &owner {
                txn = txn.when(owner.key.clone(), Expect::Version(owner.version));
            }
            let bumped = metadata.txn(txn).await.and_then(|outcome| {
                outcome.versions.first().copied().flatten().ok_or_else(|| {
                    MetadataError::Storage(format!("no version for {fence_key} after the bump"))
                })
            });
            match bumped {
                Ok(version) => break (epoch, version),
                Err(MetadataError::BadVersion { key, .. })
                    if owner.as_ref().is_some_and(|o| o.key == key) =>
                {
                    return Err(StorageError::Fenced {
                        ledger: name.to_string(),
                        reason: format!("the owner's fence {key} moved before the takeover"),
                    })
                }
                Err(MetadataError::BadVersion { .. }) if attempt < OPEN_ATTEMPTS => continue,
                Err(MetadataError::BadVersion { .. }) => {
                    return Err(StorageError::Fenced {
                        ledger: name.to_string(),
                        reason: format!("other writers kept taking it over ({attempt} tries)"),
                    })
                }
                Err(e) => return Err(metadata_error("bump the epoch", e)),
            }
        };
        let (chunks, segments, unsealed, unsealed_bytes) = load_chunks(&shared, root, name).await?;
        let (persisted_start, features) = Features::load(&shared, root, name).await?;
        let compaction = CompactionState::load(&shared, root, name).await?;
        // The start moved by retention or truncation, else the first committed chunk. Chunks
        // wholly below a persisted start may remain (their segment records are deleted by the
        // next retention pass): only the live ones must be contiguous, the first containing
        // the start.
        let start_index =
            persisted_start.unwrap_or_else(|| chunks.values().next().map_or(0, |c| c.first_index));
        let mut expected = start_index;
        let mut live = 0usize;
        for chunk in chunks.values().filter(|c| c.end_index > start_index) {
            let joins = if live == 0 {
                chunk.first_index <= expected
            } else {
                chunk.first_index == expected
            };
            if !joins || chunk.end_index <= chunk.first_index {
                return Err(StorageError::Gap {
                    ledger: name.to_string(),
                    expected,
                    found: chunk.first_index,
                });
            }
            live += 1;
            expected = chunk.end_index;
        }
        if live == 0 && start_index > 0 {
            // Everything is below the start: the last chunk must end exactly there (the last
            // chunk is never deleted, so committed entries at or above the start cannot go).
            let last_end = chunks.values().next_back().map_or(0, |c| c.end_index);
            if last_end != start_index {
                return Err(StorageError::Gap {
                    ledger: name.to_string(),
                    expected: start_index,
                    found: last_end,
                });
            }
        }
        let end_index = expected;
        features.start_index.store(start_index, Ordering::Release);
        shared
            .counters
            .takeovers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        shared.counters.takeover_latency.observe(started.elapsed());
        tracing::info!(
            ledger = name,
            epoch,
            start_index,
            end_index,
            chunks = chunks.len(),
            unsealed,
            "shared ledger opened"
        );
        let inner = Arc::new(LedgerInner {
            name: name.to_string(),
            root: root.to_string(),
            fence_key,
            fence_version,
            owner_fence: owner,
            epoch,
            writer: shared,
            append: Mutex::new(AppendState {
                next_index: end_index,
                failed: None,
                fenced: false,
                closed: false,
            }),
            sealing: std::sync::atomic::AtomicBool::new(false),
            committed: Mutex::new(Committed {
                chunks,
                segments,
                unsealed,
                unsealed_bytes,
                cache: BTreeMap::new(),
                cache_bytes: 0,
            }),
            features,
            compaction,
            end: watch::channel(end_index).0,
        });
        Ok(SharedLedger { inner })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    #[cfg(test)]
    pub(crate) fn inner_for_test(&self) -> Arc<LedgerInner> {
        self.inner.clone()
    }

    /// This writer's epoch of the ledger.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// The first readable index: the first committed one, or where retention or truncation
    /// moved the start (persisted, so it holds after a takeover).
    pub fn start_index(&self) -> u64 {
        self.inner.start_index()
    }

    /// The index after the last committed (readable) message.
    pub fn end_index(&self) -> u64 {
        *self.inner.end.borrow()
    }

    /// Follows the committed end index.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.end.subscribe()
    }

    /// How many [`SharedLedger::subscribe`] receivers are alive (see
    /// `ManagedLedger::end_waiters`).
    pub fn end_waiters(&self) -> usize {
        self.inner.end.receiver_count()
    }

    pub fn stats(&self) -> SharedLedgerStats {
        let st = lock(&self.inner.append);
        let c = lock(&self.inner.committed);
        SharedLedgerStats {
            start_index: self.inner.start_index(),
            end_index: self.end_index(),
            next_index: st.next_index,
            epoch: self.inner.epoch,
            chunks: c.chunks.len() as u64,
            unsealed_chunks: c.unsealed,
            segments: c.segments.len() as u64,
            cached_bytes: c.cache_bytes,
            fenced: st.fenced,
        }
    }

    /// Whether a failed or fenced commit made the ledger refuse appends (reopen it).
    pub fn is_failed(&self) -> bool {
        lock(&self.inner.append).failed.is_some()
    }

    /// Stops accepting appends (those already accepted still complete).
    pub fn close(&self) {
        lock(&self.inner.append).closed = true;
    }

    /// Closes (see [`SharedLedger::close`]) and waits until every append already queued is
    /// committed or the ledger failed (a failed or fenced commit), at most the writer's commit
    /// timeout. Returns whether everything queued was committed: only then is the ledger's end
    /// the end of everything this writer handed out (a producer-state snapshot taken now agrees
    /// with the log).
    pub async fn close_settled(&self) -> bool {
        let next = {
            let mut st = lock(&self.inner.append);
            st.closed = true;
            st.next_index
        };
        let inner = &self.inner;
        let settled = |end: &u64| *end >= next || inner.failed_reason().is_some();
        let mut end = inner.end.subscribe();
        let limit = std::time::Duration::from_millis(
            inner.writer.config.commit_timeout_ms.saturating_add(1_000),
        );
        let _ = tokio::time::timeout(limit, end.wait_for(settled)).await;
        inner.end_index() >= next && inner.failed_reason().is_none()
    }

    /// Assigns the first index under the append lock, calls `build(first_index)`, encodes the
    /// entry and queues it for the writer's next object; returns at once. The order of appends
    /// is the order of indexes. Refused with [`StorageError::QueueFull`] when the writer holds
    /// its limit of uncommitted bytes, and with [`StorageError::Failed`] after a failed or
    /// fenced commit.
    pub fn append_with<F: FnOnce(u64) -> NewEntry>(
        &self,
        build: F,
    ) -> Result<WalAppend, StorageError> {
        let inner = &self.inner;
        let writer = &inner.writer;
        let mut st = lock(&inner.append);
        if st.closed {
            return Err(StorageError::Closed);
        }
        if st.fenced {
            return Err(StorageError::Fenced {
                ledger: inner.name.clone(),
                reason: st.failed.clone().unwrap_or_default(),
            });
        }
        if let Some(reason) = &st.failed {
            return Err(StorageError::Failed {
                reason: reason.clone(),
            });
        }
        writer.check_room()?;
        let first_index = st.next_index;
        let entry = build(first_index);
        let end_index = entry.check(first_index, writer.config.entry_bytes_max)?;
        let header = entry.header(first_index, writer.clock.now_ms());
        let mut bytes = Vec::with_capacity(ENTRY_HEADER_LEN + entry.payload.len());
        encode_entry_with_index(&header, &entry.payload, entry.first_index_at, &mut bytes);
        let (done, receiver) = oneshot::channel();
        writer.enqueue(Pending {
            ledger: inner.clone(),
            first_index,
            end_index,
            max_timestamp_ms: entry.max_timestamp_ms,
            bytes,
            done,
        })?;
        st.next_index = end_index;
        Ok(WalAppend {
            first_index,
            done: receiver,
        })
    }

    /// Appends one entry and waits for its commit.
    pub async fn append(&self, entry: NewEntry) -> Result<u64, StorageError> {
        self.append_with(|_| entry)?.wait().await
    }

    /// Reads whole committed entries from the one containing `from_index`, up to `max_bytes`
    /// (encoded) and `max_entries`, at least one when one exists. Empty at the end index.
    pub async fn read(
        &self,
        from_index: u64,
        max_bytes: usize,
        max_entries: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let end = self.end_index();
        let start = self.inner.start_index();
        if from_index == end {
            return Ok(Vec::new());
        }
        if from_index < start || from_index > end {
            return Err(StorageError::IndexOutOfRange {
                requested: from_index,
                start,
                end,
            });
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next = from_index;
        while next < end && out.len() < max_entries.max(1) {
            let record = {
                let c = lock(&self.inner.committed);
                c.chunks
                    .range((Bound::Unbounded, Bound::Included(next)))
                    .next_back()
                    .map(|(_, r)| r.clone())
            };
            let Some(record) = record.filter(|r| r.end_index > next) else {
                break;
            };
            let chunk = self.chunk(&record).await?;
            for entry in decode_chunk(&self.inner.name, &record, &chunk)? {
                if entry.header.end_index() <= next {
                    continue;
                }
                let size = entry.header.encoded_len() as usize;
                if !out.is_empty() && (bytes + size > max_bytes || out.len() >= max_entries) {
                    return Ok(out);
                }
                bytes += size;
                next = entry.header.end_index();
                out.push(entry);
            }
            // Past the chunk, whatever compaction left at its end (a gap, or no entry at all):
            // a read from an index that was compacted away returns the next kept entry.
            next = next.max(record.end_index);
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Headers of committed entries from the one containing `from_index` (for rebuilding
    /// producer state after a takeover). CRCs are checked as for reads.
    pub async fn scan_headers(
        &self,
        from_index: u64,
        max_entries: usize,
    ) -> Result<Vec<EntryHeader>, StorageError> {
        Ok(self
            .read(from_index, usize::MAX, max_entries)
            .await?
            .into_iter()
            .map(|e| e.header)
            .collect())
    }

    /// The chunk a range record names, from the cache or by a range GET.
    async fn chunk(&self, record: &ChunkRef) -> Result<Bytes, StorageError> {
        self.inner.chunk_bytes(record).await
    }
}

impl LedgerInner {
    /// A committed chunk's bytes, from the cache or by a range GET.
    pub(crate) async fn chunk_bytes(&self, record: &ChunkRef) -> Result<Bytes, StorageError> {
        self.fetch_chunk(record, true).await
    }

    /// [`Self::chunk_bytes`]; `cache`: keep what was fetched (compaction reads whole segments
    /// it is about to replace, and does not).
    pub(crate) async fn fetch_chunk(
        &self,
        record: &ChunkRef,
        cache: bool,
    ) -> Result<Bytes, StorageError> {
        if let Some((object, hit)) = lock(&self.committed).cache.get(&record.first_index) {
            if *object == record.object {
                return Ok(hit.clone());
            }
        }
        if record.len == 0 {
            // A chunk compaction emptied: nothing to fetch.
            return Ok(Bytes::new());
        }
        let path = ObjectPath::from(record.object.as_str());
        let range = record.offset..record.offset + record.len;
        let store = &self.writer.store;
        let parts = store
            .get_ranges(&path, std::slice::from_ref(&range))
            .await
            .map_err(|e| StorageError::ObjectStore {
                op: "get",
                reason: format!("{}: {e}", record.object),
            })?;
        let chunk = parts.into_iter().next().unwrap_or_default();
        if chunk.len() as u64 != record.len {
            return Err(StorageError::Corrupt {
                segment: record.first_index,
                file_offset: record.offset,
                reason: format!(
                    "object {} answered {} bytes for a chunk of {}",
                    record.object,
                    chunk.len(),
                    record.len
                ),
            });
        }
        if cache {
            let max = self.writer.config.cache_bytes_per_ledger;
            insert_cached(
                &mut lock(&self.committed),
                record.first_index,
                &record.object,
                chunk.clone(),
                max,
            );
        }
        Ok(chunk)
    }
}

/// Decodes a chunk into entries, checking every CRC and that the indexes are the record's.
pub(crate) fn decode_chunk(
    ledger: &str,
    record: &ChunkRef,
    chunk: &Bytes,
) -> Result<Vec<Entry>, StorageError> {
    let corrupt = |at: usize, reason: String| StorageError::Corrupt {
        segment: record.first_index,
        file_offset: record.offset + at as u64,
        reason: format!("ledger {ledger}, object {}: {reason}", record.object),
    };
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut expected = record.first_index;
    while at < chunk.len() {
        let (header, crc) = decode_header(&chunk[at..]).map_err(|r| corrupt(at, r))?;
        let body = at + ENTRY_HEADER_LEN;
        let end = body + header.payload_len as usize;
        if end > chunk.len() {
            return Err(corrupt(at, "entry runs past the chunk".into()));
        }
        if !crc_matches(&chunk[at..body], &chunk[body..end], crc) {
            return Err(corrupt(at, "crc mismatch".into()));
        }
        let in_order = if record.gaps {
            header.first_index >= expected
        } else {
            header.first_index == expected
        };
        if !in_order {
            return Err(corrupt(
                at,
                format!(
                    "entry index {} where {expected} was expected",
                    header.first_index
                ),
            ));
        }
        expected = header.end_index();
        out.push(Entry {
            header,
            payload: chunk.slice(body..end),
        });
        at = end;
    }
    let ends = if record.gaps {
        expected <= record.end_index
    } else {
        expected == record.end_index
    };
    if !ends || out.len() != record.entries as usize {
        return Err(corrupt(
            at,
            format!(
                "chunk ends at index {expected} with {} entries, its record says {} with {}",
                out.len(),
                record.end_index,
                record.entries
            ),
        ));
    }
    Ok(out)
}

/// Reads every record under `path` (a listing, then one get per child).
pub(crate) async fn load_records<T: for<'de> serde::Deserialize<'de> + records::HasFormat>(
    shared: &WriterShared,
    path: &str,
) -> Result<Vec<(String, T)>, StorageError> {
    let children = shared
        .metadata
        .list_children(path)
        .await
        .map_err(|e| metadata_error("list records", e))?;
    if children.len() > RANGES_MAX {
        return Err(StorageError::Metadata {
            reason: format!(
                "{path} has {} records, more than {RANGES_MAX}",
                children.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(children.len());
    for child in children {
        let key = format!("{path}/{child}");
        let Some(found) = shared
            .metadata
            .get(&key)
            .await
            .map_err(|e| metadata_error("read a record", e))?
        else {
            continue; // deleted since the listing
        };
        let record: T = records::decode(&key, &found.value)?;
        out.push((key, record));
    }
    Ok(out)
}

/// Loads a ledger's sealed segments and unsealed ranges as chunks by first index, with the
/// count and bytes of the unsealed ones. Ranges are listed before segments and a segment wins
/// over a range it covers, so a seal committing between the two listings loses nothing (after
/// the epoch bump none can, but the order costs nothing).
async fn load_chunks(
    shared: &WriterShared,
    root: &str,
    name: &str,
) -> Result<
    (
        BTreeMap<u64, ChunkRef>,
        BTreeMap<u64, SegmentMeta>,
        u64,
        u64,
    ),
    StorageError,
> {
    let ranges = load_records::<RangeRecord>(shared, &records::ranges_path(root, name)).await?;
    let segments =
        load_records::<SegmentRecord>(shared, &records::segments_path(root, name)).await?;
    let mut chunks = BTreeMap::new();
    let mut metas = BTreeMap::new();
    let mut spans = Vec::new();
    for (key, segment) in segments {
        if key != records::segment_key(root, name, segment.first_index) {
            return Err(StorageError::Metadata {
                reason: format!(
                    "segment record at {key} says it starts at {}",
                    segment.first_index
                ),
            });
        }
        spans.push(segment.first_index..segment.end_index);
        metas.insert(segment.first_index, SegmentMeta::of(&segment));
        for chunk in ChunkRef::of_segment(&segment) {
            chunks.insert(chunk.first_index, chunk);
        }
    }
    let (mut unsealed, mut unsealed_bytes) = (0, 0);
    for (key, range) in ranges {
        if key != records::range_key(root, name, range.first_index) {
            return Err(StorageError::Metadata {
                reason: format!(
                    "range record at {key} says it starts at {}",
                    range.first_index
                ),
            });
        }
        if spans.iter().any(|span| span.contains(&range.first_index)) {
            continue;
        }
        unsealed += 1;
        unsealed_bytes += range.len;
        chunks.insert(range.first_index, ChunkRef::of_range(&range));
    }
    Ok((chunks, metas, unsealed, unsealed_bytes))
}
