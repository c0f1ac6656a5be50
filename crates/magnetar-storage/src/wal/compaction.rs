//! Log compaction of a shared ledger (`cleanup.policy=compact` in cluster mode): sealed segment
//! objects are rewritten keeping the latest record per key, every kept record at its original
//! index, and swapped in by one metadata transaction under the ledger's fence.
//!
//! A pass is the local ledger's (see `ledger/compaction.rs`; the decisions are the shared
//! ones of [`crate::compaction`]: [`pass_gate`], [`map_entry`], [`keep_records`]): a key map
//! over the dirty part of the sealed segments (from the compaction record's `cleaned_through`
//! up to the first segment that is younger than `min_compaction_lag_ms`, holds an entry at or
//! after the last stable offset, or holds the last committed entry; the unsealed WAL tail is
//! never touched), then a rewrite of every sealed segment below where the map stopped.
//!
//! What differs is the storage:
//! - Each rewritten segment keeps its index range and its chunk points (a chunk keeps its
//!   first index and covers the same range; it may hold fewer entries, or none, and then no
//!   bytes), so the segment and range records stay contiguous for [`SharedLedger::open`]'s
//!   check, and segments are not merged. Entries keep their headers (index, count, producer);
//!   only payloads shrink. The record is marked `compacted` (gaps allowed when decoding).
//! - The new bytes go to a new object `segments/<ledger>/<first>-<end>.e<epoch>.c<seq>.seg`
//!   (a fresh `seq` per pass of this writer, so no name is ever reused), PUT create-only.
//!   A segment that the pass leaves unchanged is not uploaded.
//! - The swap is **one** transaction under the fence: it overwrites each changed segment's
//!   record (same key: its first index) to name the new object, and writes the compaction
//!   record (`<root>/<ledger>/compaction`, `cleaned_through`). A writer that lost the ledger
//!   changes nothing ([`StorageError::Fenced`]). At most [`SWAP_SEGMENTS_MAX`] segments swap
//!   per pass; a pass stops its coverage before the first one it cannot swap.
//! - A crash before the transaction leaves the old records (the uploaded objects are garbage:
//!   [`collect_garbage`](super::collect_garbage) deletes a segment object its key's record does
//!   not name, after the grace period); after it, the new records. Old objects go the same way.
//!
//! Reads: a read that picked a chunk before the swap may still fetch it from the old object
//! (kept until the grace period has passed): it sees the uncompacted entries, a superset at the
//! same indexes of what the new object holds, as it would have a moment earlier, so this is
//! harmless. The chunk cache is keyed by first index and tagged with the object, so bytes of an
//! old object never answer for a new chunk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use magnetar_metadata::TxnOp;
use tokio::time::Instant;

use super::ledger::{decode_chunk, lock, metadata_error, uncache, ChunkRef, SegmentMeta};
use super::records::{self, ChunkPoint, CompactionRecord, SegmentRecord};
use super::writer::{put_verified, WriterShared};
use super::SharedLedger;
use crate::compaction::{
    delete_horizon_ms, keep_records, map_entry, pass_gate, AbortedLookup, CleanerLimits,
    CompactionCodec, CompactionOutcome, CompactionPolicy, KeyMap, MapStep, PassFigures, PassGate,
    Throttle, TxnView,
};
use crate::entry::encode_entry;
use crate::{EntryHeader, StorageError};

/// Segments one pass swaps at most: one record write each in the swap transaction, beside the
/// fence compares and the compaction record (etcd takes 128 operations).
pub const SWAP_SEGMENTS_MAX: usize = 100;

/// Log compaction's state of one shared ledger.
pub(crate) struct CompactionState {
    /// Every index below this is compacted (persisted in the compaction record).
    cleaned_through: AtomicU64,
    /// When the oldest tombstone kept becomes removable (`i64::MAX`: none known).
    tombstones_due_ms: AtomicI64,
    /// Passes of this writer so far: names the objects of the next one.
    seq: AtomicU64,
    /// One compaction at a time.
    running: tokio::sync::Mutex<()>,
}

impl CompactionState {
    /// Loads the compaction record of ledger `name` (absent: never compacted).
    pub(crate) async fn load(
        shared: &WriterShared,
        root: &str,
        name: &str,
    ) -> Result<CompactionState, StorageError> {
        let key = records::compaction_key(root, name);
        let cleaned_through = match shared
            .metadata
            .get(&key)
            .await
            .map_err(|e| metadata_error("read the compaction record", e))?
        {
            Some(found) => records::decode::<CompactionRecord>(&key, &found.value)?.cleaned_through,
            None => 0,
        };
        Ok(CompactionState {
            cleaned_through: AtomicU64::new(cleaned_through),
            // Not known after a takeover (as after a local ledger's restart): learnt by the next
            // pass over dirty data, or an operator's forced one.
            tombstones_due_ms: AtomicI64::new(i64::MAX),
            seq: AtomicU64::new(0),
            running: tokio::sync::Mutex::new(()),
        })
    }
}

/// A sealed segment as a pass sees it.
#[derive(Debug, Clone)]
struct Source {
    first: u64,
    end: u64,
    len: u64,
    object: String,
    last_publish_ms: Option<i64>,
    chunks: Vec<ChunkRef>,
}

/// What one pass plans.
struct Plan {
    sources: Vec<Source>,
    figures: PassFigures,
}

/// A rewritten segment, uploaded and not yet recorded.
struct Rewritten {
    record: SegmentRecord,
    replaced_object: String,
    /// When its object was uploaded: the swap must record it well before the garbage
    /// collector's grace period ends, or the collector could take it first.
    uploaded_at: Instant,
}

impl SharedLedger {
    /// Every index below this is compacted (0 when never compacted).
    pub fn cleaned_through(&self) -> u64 {
        self.inner
            .compaction
            .cleaned_through
            .load(Ordering::Acquire)
    }

    /// Whether this ledger can be compacted: always (its sealed segments can be rewritten).
    pub fn can_compact(&self) -> bool {
        true
    }

    /// Bytes of sealed segments not yet compacted and older than `min_compaction_lag_ms` (the
    /// cleanable bytes, open transactions aside), and the dirty ratio they make.
    pub fn cleanable(&self, min_compaction_lag_ms: u64) -> (u64, f64) {
        let figures = self.plan(min_compaction_lag_ms, u64::MAX).figures;
        (figures.dirty_bytes, figures.dirty_ratio())
    }

    /// What a pass may clean: the live sealed segments older than the lag, ending before the
    /// first one holding an entry at or after `stable_end` or the last committed entry.
    fn plan(&self, min_compaction_lag_ms: u64, stable_end: u64) -> Plan {
        let inner = &self.inner;
        let now = inner.writer.clock.now_ms();
        let lag = i64::try_from(min_compaction_lag_ms).unwrap_or(i64::MAX);
        let (start, end) = (inner.start_index(), inner.end_index());
        let cleaned = inner.compaction.cleaned_through.load(Ordering::Acquire);
        let c = lock(&inner.committed);
        let live: Vec<&SegmentMeta> = c
            .segments
            .values()
            .filter(|s| s.end_index > start)
            .collect();
        let mut cleanable_end = live.last().map_or(start, |s| s.end_index);
        for seg in &live {
            if seg.end_index >= end
                || seg.end_index > stable_end
                || seg
                    .last_publish_ms
                    .is_some_and(|t| now.saturating_sub(t) < lag)
            {
                cleanable_end = seg.first_index;
                break;
            }
        }
        let first = live.first().map_or(cleanable_end, |s| s.first_index);
        let dirty_start = cleaned.max(first);
        let mut figures = PassFigures {
            dirty_start,
            cleanable_end,
            ..PassFigures::default()
        };
        let mut sources = Vec::new();
        for seg in live.into_iter().filter(|s| s.first_index < cleanable_end) {
            if seg.end_index <= dirty_start {
                figures.clean_bytes += seg.len;
            } else {
                figures.dirty_bytes += seg.len;
                if figures.oldest_dirty_publish_ms.is_none() {
                    // Segment records keep their last publish time only: the oldest dirty
                    // entry is at least this old.
                    figures.oldest_dirty_publish_ms = seg.last_publish_ms;
                }
            }
            let chunks: Vec<ChunkRef> = c
                .chunks
                .range(seg.first_index..seg.end_index)
                .map(|(_, chunk)| chunk)
                .filter(|chunk| chunk.segment == Some(seg.first_index))
                .cloned()
                .collect();
            let Some(object) = chunks.first().map(|chunk| chunk.object.clone()) else {
                continue;
            };
            sources.push(Source {
                first: seg.first_index,
                end: seg.end_index,
                len: seg.len,
                object,
                last_publish_ms: seg.last_publish_ms,
                chunks,
            });
        }
        figures.any_cleanable = !sources.is_empty();
        Plan { sources, figures }
    }

    /// Compacts the sealed segments of a ledger without transactions (see the
    /// [shared WAL's docs](super)); one call at a time per ledger. Skips (with the reason in
    /// [`CompactionOutcome::skipped`]) as [`crate::ManagedLedger::compact`] does.
    pub async fn compact(
        &self,
        codec: Arc<dyn CompactionCodec>,
        policy: CompactionPolicy,
        limits: CleanerLimits,
    ) -> Result<CompactionOutcome, StorageError> {
        self.compact_with_txns(codec, policy, limits, TxnView::default())
            .await
    }

    /// [`SharedLedger::compact`] of a ledger written transactionally: nothing at or after
    /// `txns.stable_end` is compacted, and the aborted transactions' data is dropped.
    pub async fn compact_with_txns(
        &self,
        codec: Arc<dyn CompactionCodec>,
        policy: CompactionPolicy,
        limits: CleanerLimits,
        txns: TxnView,
    ) -> Result<CompactionOutcome, StorageError> {
        self.compact_inner(codec, policy, limits, txns, false).await
    }

    /// `stop_before_swap`: the first pass uploads its objects and stops before the swap, as a
    /// crash there would (tests).
    pub(crate) async fn compact_inner(
        &self,
        codec: Arc<dyn CompactionCodec>,
        policy: CompactionPolicy,
        limits: CleanerLimits,
        txns: TxnView,
        stop_before_swap: bool,
    ) -> Result<CompactionOutcome, StorageError> {
        let inner = &self.inner;
        let _one = inner.compaction.running.lock().await;
        if inner.is_fenced() {
            return Err(StorageError::Fenced {
                ledger: inner.name.clone(),
                reason: "another writer took the ledger over".into(),
            });
        }
        let mut outcome = CompactionOutcome {
            segments_before: lock(&inner.committed).segments.len() as u64,
            ..CompactionOutcome::default()
        };
        let mut throttle = Throttle::new(inner.writer.clock.clone(), limits.io_bytes_per_second);
        let aborted = AbortedLookup::new(&txns.aborted);
        for pass in 0..limits.passes_max.max(1) {
            let plan = self.plan(policy.min_compaction_lag_ms, txns.stable_end);
            let now = inner.writer.clock.now_ms();
            let due = inner.compaction.tombstones_due_ms.load(Ordering::Acquire);
            let clean_only = match pass_gate(pass, &plan.figures, &policy, due, now) {
                PassGate::Run { clean_only } => clean_only,
                PassGate::Stop { skipped } => {
                    if skipped.is_some() {
                        outcome.skipped = skipped;
                    }
                    break;
                }
            };
            let inputs = PassInputs {
                codec: codec.as_ref(),
                policy,
                limits,
                aborted: &aborted,
                now_ms: now,
            };
            let (rewritten, pass_outcome) = self.run_pass(&plan, inputs, &mut throttle).await?;
            if stop_before_swap && pass == 0 {
                return Ok(outcome);
            }
            self.swap(rewritten, pass_outcome.cleaned_through).await?;
            outcome.passes += 1;
            outcome.bytes_before += pass_outcome.bytes_before;
            outcome.bytes_after += pass_outcome.bytes_after;
            outcome.records_removed += pass_outcome.records_removed;
            outcome.tombstones_removed += pass_outcome.tombstones_removed;
            outcome.aborted_entries_removed += pass_outcome.aborted_entries_removed;
            outcome.entries_undecodable += pass_outcome.entries_undecodable;
            outcome.empty_batches_kept += pass_outcome.empty_batches_kept;
            outcome.tombstones_due_ms = pass_outcome.tombstones_due_ms;
            inner.compaction.tombstones_due_ms.store(
                pass_outcome.tombstones_due_ms.unwrap_or(i64::MAX),
                Ordering::Release,
            );
            if clean_only {
                break;
            }
        }
        outcome.cleaned_through = self.cleaned_through();
        outcome.segments_after = lock(&inner.committed).segments.len() as u64;
        Ok(outcome)
    }

    /// The decoded entries of one chunk of a segment being compacted (CRC-checked, not cached).
    async fn source_entries(
        &self,
        chunk: &ChunkRef,
        throttle: &mut Throttle,
    ) -> Result<Vec<crate::Entry>, StorageError> {
        let bytes = self.inner.fetch_chunk(chunk, false).await?;
        if let Some(wait) = throttle.due(bytes.len() as u64) {
            tokio::time::sleep(wait).await;
        }
        decode_chunk(&self.inner.name, chunk, &bytes)
    }

    /// Builds the key map and uploads the rewritten segments that changed.
    async fn run_pass(
        &self,
        plan: &Plan,
        inputs: PassInputs<'_>,
        throttle: &mut Throttle,
    ) -> Result<(Vec<Rewritten>, CompactionOutcome), StorageError> {
        let PassInputs {
            codec,
            policy,
            limits,
            aborted,
            now_ms,
        } = inputs;
        let inner = &self.inner;
        let dirty_start = plan.figures.dirty_start;
        // 1. The key map over the dirty part, until it is full.
        let mut map = KeyMap::with_bytes(limits.dedupe_buffer_bytes);
        let mut coverage_end = plan.figures.cleanable_end;
        let mut undecodable = 0u64;
        'segments: for src in plan.sources.iter().filter(|s| s.end > dirty_start) {
            for chunk in src.chunks.iter().filter(|c| c.end_index > dirty_start) {
                for entry in self.source_entries(chunk, throttle).await? {
                    let h = &entry.header;
                    if h.first_index < dirty_start {
                        continue;
                    }
                    match map_entry(
                        h,
                        &entry.payload,
                        codec,
                        aborted,
                        &mut map,
                        limits.dedupe_buffer_bytes,
                    ) {
                        MapStep::Mapped => {}
                        MapStep::Undecodable => undecodable += 1,
                        MapStep::Full => {
                            coverage_end = h.first_index;
                            break 'segments;
                        }
                        MapStep::TooLarge(reason) => {
                            return Err(StorageError::Compaction { reason })
                        }
                    }
                }
            }
        }
        // 2. The last entry of each producer below the coverage end.
        let rewritten: Vec<&Source> = plan
            .sources
            .iter()
            .filter(|s| s.first < coverage_end)
            .collect();
        let mut producer_last: HashMap<i64, u64> = HashMap::new();
        for src in &rewritten {
            for chunk in &src.chunks {
                for entry in self.source_entries(chunk, throttle).await? {
                    let h = &entry.header;
                    if h.first_index < coverage_end {
                        if let Some(p) = h.producer {
                            producer_last.insert(p.producer_id, h.first_index);
                        }
                    }
                }
            }
        }
        // 3. Each segment rewritten into a new object, uploaded if it changed.
        let delete_horizon = delete_horizon_ms(now_ms, &policy);
        let mut out = CompactionOutcome {
            entries_undecodable: undecodable,
            ..CompactionOutcome::default()
        };
        let seq = inner.compaction.seq.fetch_add(1, Ordering::AcqRel) + 1;
        let window = upload_window(&inner.writer.config);
        let mut uploaded: Vec<Rewritten> = Vec::new();
        for src in rewritten {
            let late = uploaded
                .first()
                .is_some_and(|r| r.uploaded_at.elapsed() > window / 2);
            if uploaded.len() >= SWAP_SEGMENTS_MAX || late {
                // The rest waits for the next pass: what is swapped is a prefix, so a record
                // dropped for a newer one or a tombstone's older values are gone together.
                coverage_end = coverage_end.min(src.first);
                break;
            }
            let mut body: Vec<u8> = Vec::with_capacity(src.len as usize);
            let mut points = Vec::with_capacity(src.chunks.len());
            let mut changed = false;
            let mut max_timestamp_ms = i64::MIN;
            let mut last_publish_ms = src.last_publish_ms;
            let mut pass_out = CompactionOutcome::default();
            for chunk in &src.chunks {
                let offset = body.len() as u64;
                let mut entries = 0u32;
                let mut chunk_max_ms = i64::MIN;
                for entry in self.source_entries(chunk, throttle).await? {
                    let h: &EntryHeader = &entry.header;
                    if src.last_publish_ms.is_none() {
                        last_publish_ms = Some(h.publish_time_ms);
                    }
                    let kept = if h.first_index >= coverage_end {
                        Some(entry.payload.clone())
                    } else {
                        let last = h.producer.is_some_and(|p| {
                            producer_last.get(&p.producer_id) == Some(&h.first_index)
                        });
                        keep_records(
                            h,
                            &entry.payload,
                            codec,
                            &map,
                            aborted.is_aborted(h),
                            delete_horizon,
                            policy.delete_retention_ms,
                            last,
                            &mut pass_out,
                        )
                        .map_err(|reason| StorageError::Compaction { reason })?
                    };
                    let Some(payload) = kept else {
                        changed = true;
                        continue;
                    };
                    let Ok(payload_len) = u32::try_from(payload.len()) else {
                        return Err(StorageError::Compaction {
                            reason: "a rewritten entry is too large".to_string(),
                        });
                    };
                    changed |= payload_len != h.payload_len || payload != entry.payload;
                    let header = EntryHeader { payload_len, ..*h };
                    encode_entry(&header, &payload, &mut body);
                    entries += 1;
                    chunk_max_ms = chunk_max_ms.max(h.max_timestamp_ms);
                }
                max_timestamp_ms = max_timestamp_ms.max(chunk_max_ms);
                points.push(ChunkPoint {
                    first_index: chunk.first_index,
                    offset,
                    entries,
                    max_timestamp_ms: Some(chunk_max_ms),
                });
            }
            out.bytes_before += src.len;
            out.records_removed += pass_out.records_removed;
            out.tombstones_removed += pass_out.tombstones_removed;
            out.aborted_entries_removed += pass_out.aborted_entries_removed;
            out.empty_batches_kept += pass_out.empty_batches_kept;
            out.tombstones_due_ms = match (out.tombstones_due_ms, pass_out.tombstones_due_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if !changed {
                out.bytes_after += src.len;
                continue;
            }
            let object = records::compacted_segment_object(
                &inner.name,
                src.first,
                src.end,
                inner.epoch,
                seq,
            );
            let body = Bytes::from(body);
            if let Some(wait) = throttle.due(body.len() as u64) {
                tokio::time::sleep(wait).await;
            }
            let uploaded_at = Instant::now();
            let deadline =
                uploaded_at + Duration::from_millis(inner.writer.config.commit_timeout_ms);
            put_verified(&inner.writer, &object, body.clone(), deadline).await?;
            out.bytes_after += body.len() as u64;
            let mut record = SegmentRecord::new(
                &object,
                body.len() as u64,
                src.first,
                src.end,
                inner.epoch,
                max_timestamp_ms,
                last_publish_ms,
                points,
            );
            record.compacted = true;
            uploaded.push(Rewritten {
                record,
                replaced_object: src.object.clone(),
                uploaded_at,
            });
        }
        // Never backwards: a pass over the clean part only stops where it starts.
        out.cleaned_through = coverage_end.max(dirty_start);
        Ok((uploaded, out))
    }

    /// Records the rewritten segments and the new `cleaned_through` in one transaction under
    /// the fence, then puts them in memory.
    async fn swap(
        &self,
        rewritten: Vec<Rewritten>,
        cleaned_through: u64,
    ) -> Result<(), StorageError> {
        let inner = &self.inner;
        // Retention and truncation delete segment records: not while they are being replaced.
        let _admin = inner.features.admin.lock().await;
        let still_there = {
            let c = lock(&inner.committed);
            rewritten.iter().all(|r| {
                c.segments.contains_key(&r.record.first_index)
                    && c.chunks
                        .get(&r.record.first_index)
                        .is_some_and(|chunk| chunk.object == r.replaced_object)
            })
        };
        if !still_there {
            return Err(StorageError::Compaction {
                reason: "segments were deleted by retention during compaction; retrying later"
                    .to_string(),
            });
        }
        if rewritten
            .first()
            .is_some_and(|r| r.uploaded_at.elapsed() > upload_window(&inner.writer.config))
        {
            // Its objects may be collected before the transaction lands: they stay garbage.
            return Err(StorageError::Compaction {
                reason: "the pass took too long for the garbage collector's grace period; \
                         retrying later"
                    .to_string(),
            });
        }
        let cleaned_through = cleaned_through.max(self.cleaned_through());
        if rewritten.is_empty() && cleaned_through == self.cleaned_through() {
            return Ok(());
        }
        let mut txn = magnetar_metadata::Txn::new();
        for r in &rewritten {
            let key = records::segment_key(&inner.root, &inner.name, r.record.first_index);
            txn = txn.then(TxnOp::put(key, records::encode(&r.record)));
        }
        let key = records::compaction_key(&inner.root, &inner.name);
        txn = txn.then(TxnOp::put(
            key,
            records::encode(&CompactionRecord::new(cleaned_through)),
        ));
        if let Err(e) = inner
            .commit_under_fence(txn, "swap compacted segments")
            .await
        {
            if matches!(e, StorageError::Fenced { .. }) || rewritten.is_empty() {
                return Err(e);
            }
            // The answer may have been lost after the swap applied: read the records back, so
            // memory never keeps naming objects the collector may delete.
            match self.swapped(&rewritten).await {
                Ok(true) => {}
                Ok(false) => return Err(e),
                Err(read) => {
                    inner.fail(&format!(
                        "compaction swap outcome unknown ({e}; reading it back: {read})"
                    ));
                    return Err(e);
                }
            }
        }
        let mut bytes_swapped = 0;
        {
            let mut c = lock(&inner.committed);
            for r in &rewritten {
                let record = &r.record;
                bytes_swapped += record.len;
                let old: Vec<u64> = c
                    .chunks
                    .range(record.first_index..record.end_index)
                    .filter(|(_, chunk)| chunk.segment == Some(record.first_index))
                    .map(|(&k, _)| k)
                    .collect();
                for k in old {
                    c.chunks.remove(&k);
                    uncache(&mut c, k);
                }
                for chunk in ChunkRef::of_segment(record) {
                    c.chunks.insert(chunk.first_index, chunk);
                }
                c.segments
                    .insert(record.first_index, SegmentMeta::of(record));
            }
        }
        inner
            .compaction
            .cleaned_through
            .fetch_max(cleaned_through, Ordering::AcqRel);
        tracing::info!(
            ledger = %inner.name,
            segments = rewritten.len(),
            bytes = bytes_swapped,
            cleaned_through,
            "compacted segments swapped in"
        );
        Ok(())
    }

    /// Whether every rewritten segment's record names its new object (a swap whose answer
    /// was lost).
    async fn swapped(&self, rewritten: &[Rewritten]) -> Result<bool, StorageError> {
        let inner = &self.inner;
        for r in rewritten {
            let key = records::segment_key(&inner.root, &inner.name, r.record.first_index);
            let found = inner
                .writer
                .metadata
                .get(&key)
                .await
                .map_err(|e| metadata_error("read a segment record", e))?;
            let names_new = match found {
                Some(found) => {
                    records::decode::<SegmentRecord>(&key, &found.value)?.object == r.record.object
                }
                None => false,
            };
            if !names_new {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// How long after its first upload a pass may still swap: the garbage collector's grace period
/// less the swap transaction's own timeout (at least the commit timeout, as the grace period is
/// at least twice it).
fn upload_window(config: &super::WalConfig) -> Duration {
    Duration::from_millis(config.gc_grace_ms.saturating_sub(config.commit_timeout_ms))
}

/// What one pass is given besides its plan.
struct PassInputs<'a> {
    codec: &'a dyn CompactionCodec,
    policy: CompactionPolicy,
    limits: CleanerLimits,
    aborted: &'a AbortedLookup,
    now_ms: i64,
}
