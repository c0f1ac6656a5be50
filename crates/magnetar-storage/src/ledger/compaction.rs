//! Log compaction of a local ledger (`cleanup.policy=compact`): sealed segments are rewritten
//! keeping the latest record per key, with every kept record at its original index (gaps are
//! normal), and swapped in crash-safely.
//!
//! One pass (Kafka's cleaner): build a [`KeyMap`] (key hash -> latest index) over the dirty
//! part of the log (from the checkpoint to the first segment younger than
//! `min_compaction_lag_ms`, never the active segment) until the map is full; then rewrite every
//! sealed segment below where the map stopped, keeping a record when its key is absent from the
//! map or the map's index for it is not newer, dropping tombstones older than
//! `delete_retention_ms`, keeping control entries and undecodable ones whole, and keeping the
//! last entry of each producer (as an empty batch if all its records go) so producer state
//! survives. Consecutive segments are merged while their sizes add up to at most
//! `segment_bytes`. An entry whose records all go is dropped; a partly kept one is rewritten by
//! the [`CompactionCodec`] with its header's index range unchanged.
//!
//! Transactions ([`TxnView`]): a pass stops before the first segment holding an entry at or
//! after the last stable offset (Kafka's first unstable offset bounds its cleaner too), and the
//! data entries of aborted transactions are dropped and never enter the key map. Commit and
//! abort markers are kept whole (Kafka removes them once their transaction's data is gone and
//! `delete.retention.ms` has passed; here they stay: a few bytes each).
//!
//! Swap: the rewritten segments (and their index files) are written under staged names and
//! fsynced; then a manifest naming each new segment and the old ones it replaces, and the new
//! checkpoint, is written atomically (the commit point); then each staged file is renamed over
//! its live name, the replaced segments are deleted, the checkpoint is written and the manifest
//! removed. Open finishes a swap whose manifest exists and discards staged files otherwise, so a
//! crash at any point leaves the old or the new segment set. The checkpoint also tells open
//! which segments may have gaps.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::*;
use crate::compaction::{
    delete_horizon_ms, keep_records, map_entry, pass_gate, AbortedLookup, CleanerLimits,
    CompactionCodec, CompactionOutcome, CompactionPolicy, KeyMap, MapStep, PassFigures, PassGate,
    Throttle, TxnView,
};
use crate::entry::encode_entry;

/// Every index below the one this file holds is compacted (Kafka's cleaner checkpoint).
pub const COMPACTION_CHECKPOINT_FILE_NAME: &str = "compaction-checkpoint";
/// Present between a compaction's commit point and the end of its swap.
pub const COMPACTION_MANIFEST_FILE_NAME: &str = "compaction-swap";

/// A committed swap: what open must finish.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Manifest {
    groups: Vec<ManifestGroup>,
    cleaned_through: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct ManifestGroup {
    /// The new segment's base (the first replaced segment's).
    base: u64,
    /// The other replaced segments, deleted after the rename.
    replaced: Vec<u64>,
    has_index: bool,
}

/// Where a crash during a swap is simulated in tests (the swap stops there, as a kill would).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapStep {
    /// After the staged files are written, before the manifest.
    Staged,
    /// After the manifest (the commit point), before any rename.
    Committed,
    /// After the first group's rename.
    FirstRenamed,
    /// After the renames and deletions, before the checkpoint.
    Renamed,
    /// After the checkpoint, before the manifest is removed.
    Checkpointed,
}

/// The compaction checkpoint of the ledger in `dir` (0 when never compacted).
pub(super) fn read_checkpoint(dir: &Path) -> Result<u64, StorageError> {
    let path = dir.join(COMPACTION_CHECKPOINT_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .map_err(|e| StorageError::CorruptMetadata {
                path,
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(StorageError::io("read compaction checkpoint", &path, e)),
    }
}

/// Finishes a committed swap (its manifest exists) or discards an uncommitted one's staged files.
pub(super) fn finish_swap(dir: &Path, store: &dyn SegmentStore) -> Result<(), StorageError> {
    let path = dir.join(COMPACTION_MANIFEST_FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let manifest: Manifest =
                serde_json::from_slice(&bytes).map_err(|e| StorageError::CorruptMetadata {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            tracing::warn!(dir = %dir.display(), groups = manifest.groups.len(), "finishing an interrupted compaction swap");
            apply_manifest(dir, store, &manifest, None)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StorageError::io("read compaction manifest", &path, e)),
    }
    if store.can_compact() {
        store.discard_staged()?;
    }
    Ok(())
}

/// The swap after the commit point; idempotent, so open can repeat it. `stop` simulates a crash.
fn apply_manifest(
    dir: &Path,
    store: &dyn SegmentStore,
    manifest: &Manifest,
    stop: Option<SwapStep>,
) -> Result<bool, StorageError> {
    let live: std::collections::BTreeSet<u64> = store.list()?.into_iter().collect();
    for (i, g) in manifest.groups.iter().enumerate() {
        store.commit_staged(g.base, g.has_index)?;
        for &old in &g.replaced {
            if live.contains(&old) {
                store.delete_replaced(old)?;
            }
        }
        if i == 0 && stop == Some(SwapStep::FirstRenamed) {
            store.sync_staged()?;
            return Ok(false);
        }
    }
    store.sync_staged()?;
    if stop == Some(SwapStep::Renamed) {
        return Ok(false);
    }
    atomic_write(
        dir,
        COMPACTION_CHECKPOINT_FILE_NAME,
        manifest.cleaned_through.to_string().as_bytes(),
    )?;
    if stop == Some(SwapStep::Checkpointed) {
        return Ok(false);
    }
    let path = dir.join(COMPACTION_MANIFEST_FILE_NAME);
    std::fs::remove_file(&path)
        .map_err(|e| StorageError::io("remove compaction manifest", &path, e))?;
    sync_dir(dir)?;
    Ok(true)
}

/// A sealed segment as a pass sees it.
#[derive(Clone)]
struct Source {
    base: u64,
    end: u64,
    bytes: u64,
    file: Arc<dyn SegmentFile>,
    compacted: bool,
    first_publish_ms: Option<i64>,
    last_publish_ms: Option<i64>,
}

/// One rewritten segment, staged.
struct Staged {
    info: SegmentInfo,
    replaced: Vec<u64>,
    has_index: bool,
}

/// What one pass plans: the sealed segments and where the dirty part starts and ends.
struct Plan {
    sources: Vec<Source>,
    dirty_start: u64,
    cleanable_end: u64,
    clean_bytes: u64,
    dirty_bytes: u64,
    oldest_dirty_publish_ms: Option<i64>,
}

impl Plan {
    fn figures(&self) -> PassFigures {
        PassFigures {
            dirty_start: self.dirty_start,
            cleanable_end: self.cleanable_end,
            clean_bytes: self.clean_bytes,
            dirty_bytes: self.dirty_bytes,
            oldest_dirty_publish_ms: self.oldest_dirty_publish_ms,
            any_cleanable: self.sources.iter().any(|s| s.base < self.cleanable_end),
        }
    }
}

impl ManagedLedger {
    /// Every index below this is compacted.
    pub fn cleaned_through(&self) -> u64 {
        read(&self.state).cleaned_through
    }

    /// Whether this ledger's store supports compaction (local and tiered segment stores).
    pub fn can_compact(&self) -> bool {
        self.store.can_compact()
    }

    /// Bytes of sealed segments not yet compacted and older than `min_compaction_lag_ms` (the
    /// cleanable bytes, open transactions aside), and the dirty ratio they make.
    pub fn cleanable(&self, min_compaction_lag_ms: u64) -> (u64, f64) {
        let figures = self.plan(min_compaction_lag_ms, u64::MAX).figures();
        (figures.dirty_bytes, figures.dirty_ratio())
    }

    /// What a pass may clean: sealed segments older than the lag, ending before the first
    /// segment holding an entry at or after `stable_end` (an open transaction's).
    fn plan(&self, min_compaction_lag_ms: u64, stable_end: u64) -> Plan {
        let now = self.clock.now_ms();
        let lag = i64::try_from(min_compaction_lag_ms).unwrap_or(i64::MAX);
        let s = read(&self.state);
        let sealed = &s.segments[..s.segments.len().saturating_sub(1)];
        let mut cleanable_end = s.segments.last().map_or(0, |a| a.base_index);
        for seg in sealed {
            if seg.end_index > stable_end
                || seg
                    .last_publish_ms
                    .is_some_and(|t| now.saturating_sub(t) < lag)
            {
                cleanable_end = seg.base_index;
                break;
            }
        }
        let first = sealed.first().map_or(cleanable_end, |seg| seg.base_index);
        let dirty_start = s.cleaned_through.max(first);
        let mut plan = Plan {
            sources: Vec::new(),
            dirty_start,
            cleanable_end,
            clean_bytes: 0,
            dirty_bytes: 0,
            oldest_dirty_publish_ms: None,
        };
        for seg in sealed.iter().filter(|seg| seg.base_index < cleanable_end) {
            if seg.end_index <= dirty_start {
                plan.clean_bytes += seg.bytes;
            } else {
                plan.dirty_bytes += seg.bytes;
                if plan.oldest_dirty_publish_ms.is_none() {
                    plan.oldest_dirty_publish_ms = seg.first_publish_ms;
                }
            }
            plan.sources.push(Source {
                base: seg.base_index,
                end: seg.end_index,
                bytes: seg.bytes,
                file: seg.file.clone(),
                compacted: seg.compacted,
                first_publish_ms: seg.first_publish_ms,
                last_publish_ms: seg.last_publish_ms,
            });
        }
        plan
    }

    /// Compacts the sealed segments (see the [module docs](self)) of a ledger without
    /// transactions; one call at a time per ledger. Skips (with the reason in
    /// [`CompactionOutcome::skipped`]) when nothing is cleanable or, unless `policy.force`, the
    /// dirty ratio is below the policy's and no dirty entry is older than
    /// `max_compaction_lag_ms`.
    pub async fn compact(
        &self,
        codec: Arc<dyn CompactionCodec>,
        policy: CompactionPolicy,
        limits: CleanerLimits,
    ) -> Result<CompactionOutcome, StorageError> {
        self.compact_with_txns(codec, policy, limits, TxnView::default())
            .await
    }

    /// [`ManagedLedger::compact`] of a ledger written transactionally: nothing at or after
    /// `txns.stable_end` is compacted, and the aborted transactions' data is dropped.
    pub async fn compact_with_txns(
        &self,
        codec: Arc<dyn CompactionCodec>,
        policy: CompactionPolicy,
        limits: CleanerLimits,
        txns: TxnView,
    ) -> Result<CompactionOutcome, StorageError> {
        self.compact_inner(codec, policy, limits, txns, None).await
    }

    #[doc(hidden)]
    /// [`ManagedLedger::compact`] stopping its first swap at `stop` (a simulated crash; tests).
    pub async fn compact_with_stop(
        &self,
        codec: Arc<dyn CompactionCodec>,
        policy: CompactionPolicy,
        limits: CleanerLimits,
        stop: Option<SwapStep>,
    ) -> Result<CompactionOutcome, StorageError> {
        self.compact_inner(codec, policy, limits, TxnView::default(), stop)
            .await
    }

    async fn compact_inner(
        &self,
        codec: Arc<dyn CompactionCodec>,
        policy: CompactionPolicy,
        limits: CleanerLimits,
        txns: TxnView,
        stop: Option<SwapStep>,
    ) -> Result<CompactionOutcome, StorageError> {
        if !self.store.can_compact() {
            return Err(StorageError::Compaction {
                reason: "the segment store of this ledger does not support compaction".to_string(),
            });
        }
        let _one = self.compacting.lock().await;
        let mut outcome = CompactionOutcome {
            segments_before: read(&self.state).segments.len() as u64,
            ..CompactionOutcome::default()
        };
        let throttle = Arc::new(Mutex::new(Throttle::new(
            self.clock.clone(),
            limits.io_bytes_per_second,
        )));
        let aborted = Arc::new(AbortedLookup::new(&txns.aborted));
        for pass in 0..limits.passes_max.max(1) {
            let plan = self.plan(policy.min_compaction_lag_ms, txns.stable_end);
            let figures = plan.figures();
            let tombstones_due_ms = self.tombstones_due_ms.load(Ordering::Acquire);
            let clean_only = match pass_gate(
                pass,
                &figures,
                &policy,
                tombstones_due_ms,
                self.clock.now_ms(),
            ) {
                PassGate::Run { clean_only } => clean_only,
                PassGate::Stop { skipped } => {
                    if skipped.is_some() {
                        outcome.skipped = skipped;
                    }
                    break;
                }
            };
            let Some(me) = self.me.upgrade() else {
                return Err(StorageError::Closed);
            };
            let codec = codec.clone();
            let throttle = throttle.clone();
            let aborted = aborted.clone();
            let now = self.clock.now_ms();
            let staged = tokio::task::spawn_blocking(move || {
                let mut throttle = lock(&throttle);
                let inputs = PassInputs {
                    codec: codec.as_ref(),
                    policy,
                    limits,
                    aborted: &aborted,
                    now_ms: now,
                };
                me.run_pass(plan, inputs, &mut throttle)
            })
            .await;
            let (staged, pass_outcome) = match staged {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    self.discard_staged_quietly().await;
                    return Err(e);
                }
                Err(e) => {
                    self.discard_staged_quietly().await;
                    return Err(e.into());
                }
            };
            let cleaned_through = pass_outcome.cleaned_through;
            self.swap(staged, cleaned_through, if pass == 0 { stop } else { None })
                .await?;
            outcome.passes += 1;
            outcome.bytes_before += pass_outcome.bytes_before;
            outcome.bytes_after += pass_outcome.bytes_after;
            outcome.records_removed += pass_outcome.records_removed;
            outcome.tombstones_removed += pass_outcome.tombstones_removed;
            outcome.aborted_entries_removed += pass_outcome.aborted_entries_removed;
            outcome.entries_undecodable += pass_outcome.entries_undecodable;
            outcome.empty_batches_kept += pass_outcome.empty_batches_kept;
            outcome.tombstones_due_ms = pass_outcome.tombstones_due_ms;
            self.tombstones_due_ms.store(
                pass_outcome.tombstones_due_ms.unwrap_or(i64::MAX),
                Ordering::Release,
            );
            if stop.is_some() || clean_only {
                break;
            }
        }
        outcome.cleaned_through = self.cleaned_through();
        outcome.segments_after = read(&self.state).segments.len() as u64;
        Ok(outcome)
    }

    async fn discard_staged_quietly(&self) {
        let store = self.store.clone();
        let done = tokio::task::spawn_blocking(move || store.discard_staged()).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(dir = %self.dir.display(), error = %e, "staged compaction files not removed; the next open removes them");
        }
    }

    /// Builds the key map and stages the rewritten segments (blocking).
    fn run_pass(
        &self,
        plan: Plan,
        inputs: PassInputs<'_>,
        throttle: &mut Throttle,
    ) -> Result<(Vec<Staged>, CompactionOutcome), StorageError> {
        let PassInputs {
            codec,
            policy,
            limits,
            aborted,
            now_ms,
        } = inputs;
        let interval = self.config.index_interval_bytes;
        // 1. The key map over the dirty part, until it is full.
        let mut map = KeyMap::with_bytes(limits.dedupe_buffer_bytes);
        let mut coverage_end = plan.cleanable_end;
        let mut undecodable = 0u64;
        'segments: for src in plan.sources.iter().filter(|s| s.end > plan.dirty_start) {
            let mut failure = None;
            let mut stopped_at = None;
            let scan = scan_entries(
                src.file.as_ref(),
                start_point(src),
                src.bytes,
                true,
                src.compacted,
                |h, _, payload| {
                    if h.first_index < plan.dirty_start {
                        return ControlFlow::Continue(());
                    }
                    throttle.on_io(h.encoded_len());
                    let payload = payload.unwrap_or_default();
                    match map_entry(
                        h,
                        &payload,
                        codec,
                        aborted,
                        &mut map,
                        limits.dedupe_buffer_bytes,
                    ) {
                        MapStep::Mapped => ControlFlow::Continue(()),
                        MapStep::Undecodable => {
                            undecodable += 1;
                            ControlFlow::Continue(())
                        }
                        MapStep::Full => {
                            stopped_at = Some(h.first_index);
                            ControlFlow::Break(())
                        }
                        MapStep::TooLarge(reason) => {
                            failure = Some(reason);
                            stopped_at = Some(h.first_index);
                            ControlFlow::Break(())
                        }
                    }
                },
            )?;
            if let Some(reason) = failure {
                return Err(StorageError::Compaction { reason });
            }
            if let Some(at) = stopped_at {
                coverage_end = at;
                break 'segments;
            }
            if let Some(reason) = scan.bad {
                return Err(StorageError::Corrupt {
                    segment: src.base,
                    file_offset: scan.pos,
                    reason,
                });
            }
        }
        // 2. The last entry of each producer below the coverage end (header scan).
        let rewritten: Vec<&Source> = plan
            .sources
            .iter()
            .filter(|s| s.base < coverage_end)
            .collect();
        let mut producer_last: HashMap<i64, u64> = HashMap::new();
        for src in &rewritten {
            scan_entries(
                src.file.as_ref(),
                start_point(src),
                src.bytes,
                false,
                src.compacted,
                |h, _, _| {
                    if h.first_index < coverage_end {
                        if let Some(p) = h.producer {
                            producer_last.insert(p.producer_id, h.first_index);
                        }
                    }
                    ControlFlow::Continue(())
                },
            )?;
        }
        // 3. Groups of consecutive segments, rewritten into one staged segment each.
        let mut groups: Vec<Vec<&Source>> = Vec::new();
        let mut group_bytes = 0u64;
        for src in rewritten {
            match groups.last_mut() {
                Some(g) if group_bytes.saturating_add(src.bytes) <= self.config.segment_bytes => {
                    g.push(src);
                    group_bytes += src.bytes;
                }
                _ => {
                    groups.push(vec![src]);
                    group_bytes = src.bytes;
                }
            }
        }
        let delete_horizon = delete_horizon_ms(now_ms, &policy);
        let mut out = CompactionOutcome {
            entries_undecodable: undecodable,
            // Never backwards: a pass over the clean part only stops where it starts.
            cleaned_through: coverage_end.max(plan.dirty_start),
            ..CompactionOutcome::default()
        };
        let mut staged: Vec<Staged> = Vec::with_capacity(groups.len());
        for group in groups {
            let base = group[0].base;
            let file = self.store.create_staged(base)?;
            let mut info = SegmentInfo::new(base, file.clone(), interval);
            info.compacted = true;
            let mut buf: Vec<u8> = Vec::new();
            for src in &group {
                out.bytes_before += src.bytes;
                let mut failure: Option<StorageError> = None;
                let scan = scan_entries(
                    src.file.as_ref(),
                    start_point(src),
                    src.bytes,
                    true,
                    src.compacted,
                    |h, _, payload| {
                        let payload = payload.unwrap_or_default();
                        throttle.on_io(h.encoded_len());
                        let kept = if h.first_index >= coverage_end {
                            Some(payload)
                        } else {
                            match keep_records(
                                h,
                                &payload,
                                codec,
                                &map,
                                aborted.is_aborted(h),
                                delete_horizon,
                                policy.delete_retention_ms,
                                producer_last.get(&h.producer.map_or(-1, |p| p.producer_id))
                                    == Some(&h.first_index)
                                    && h.producer.is_some(),
                                &mut out,
                            ) {
                                Ok(k) => k,
                                Err(reason) => {
                                    failure = Some(StorageError::Compaction { reason });
                                    return ControlFlow::Break(());
                                }
                            }
                        };
                        let Some(payload) = kept else {
                            return ControlFlow::Continue(());
                        };
                        let Ok(payload_len) = u32::try_from(payload.len()) else {
                            failure = Some(StorageError::Compaction {
                                reason: "a rewritten entry is too large".to_string(),
                            });
                            return ControlFlow::Break(());
                        };
                        let header = EntryHeader { payload_len, ..*h };
                        let at = file.len() + buf.len() as u64;
                        encode_entry(&header, &payload, &mut buf);
                        info.on_append(&header, at);
                        if buf.len() >= SCAN_CHUNK_BYTES as usize {
                            if let Err(e) = file.append(&buf) {
                                failure = Some(e);
                                return ControlFlow::Break(());
                            }
                            throttle.on_io(buf.len() as u64);
                            buf.clear();
                        }
                        ControlFlow::Continue(())
                    },
                )?;
                if let Some(e) = failure {
                    return Err(e);
                }
                if let Some(reason) = scan.bad {
                    return Err(StorageError::Corrupt {
                        segment: src.base,
                        file_offset: scan.pos,
                        reason,
                    });
                }
            }
            if !buf.is_empty() {
                file.append(&buf)?;
                throttle.on_io(buf.len() as u64);
            }
            file.sync()?;
            // The group covers its segments' whole range, and keeps their publish times, so
            // retention by time treats it as it treated them.
            let last = group[group.len() - 1];
            info.end_index = last.end;
            info.first_publish_ms = group.iter().find_map(|s| s.first_publish_ms);
            info.last_publish_ms = group.iter().rev().find_map(|s| s.last_publish_ms);
            // A group left empty joins the previous one (whose end moves up to its end), so
            // compaction does not leave empty segments behind; only a first group can stay empty.
            if info.entries == 0 {
                if let Some(prev) = staged.last_mut() {
                    prev.replaced.push(base);
                    prev.replaced.extend(group[1..].iter().map(|s| s.base));
                    prev.info.end_index = last.end;
                    if info.last_publish_ms.is_some() {
                        prev.info.last_publish_ms = info.last_publish_ms;
                    }
                    if prev.has_index {
                        let bytes = encode_index(&prev.info).map_err(|reason| {
                            StorageError::Compaction {
                                reason: format!("index of rewritten segment {base}: {reason}"),
                            }
                        })?;
                        self.store
                            .write_staged_index(prev.info.base_index, &bytes)?;
                    }
                    continue;
                }
            }
            let has_index = info.entries > 0;
            if has_index {
                let bytes = encode_index(&info).map_err(|reason| StorageError::Compaction {
                    reason: format!("index of rewritten segment {base}: {reason}"),
                })?;
                self.store.write_staged_index(base, &bytes)?;
            }
            out.bytes_after += info.bytes;
            staged.push(Staged {
                info,
                replaced: group[1..].iter().map(|s| s.base).collect(),
                has_index,
            });
        }
        Ok((staged, out))
    }

    /// Commits the staged segments and puts them in the ledger's state (see the module docs).
    async fn swap(
        &self,
        staged: Vec<Staged>,
        cleaned_through: u64,
        stop: Option<SwapStep>,
    ) -> Result<(), StorageError> {
        // Retention and truncation delete segments: not while they are being replaced.
        let _admin = self.admin.lock().await;
        let still_there = {
            let s = read(&self.state);
            let live: std::collections::BTreeSet<u64> = s.segments
                [..s.segments.len().saturating_sub(1)]
                .iter()
                .map(|seg| seg.base_index)
                .collect();
            staged.iter().all(|g| {
                live.contains(&g.info.base_index) && g.replaced.iter().all(|b| live.contains(b))
            })
        };
        if !still_there {
            self.discard_staged_quietly().await;
            return Err(StorageError::Compaction {
                reason: "segments were deleted by retention during compaction; retrying later"
                    .to_string(),
            });
        }
        let manifest = Manifest {
            groups: staged
                .iter()
                .map(|g| ManifestGroup {
                    base: g.info.base_index,
                    replaced: g.replaced.clone(),
                    has_index: g.has_index,
                })
                .collect(),
            cleaned_through,
        };
        let store = self.store.clone();
        let dir = self.dir.clone();
        let done = tokio::task::spawn_blocking(move || -> Result<bool, StorageError> {
            store.sync_staged()?;
            if stop == Some(SwapStep::Staged) {
                return Ok(false);
            }
            let bytes = serde_json::to_vec(&manifest).map_err(|e| StorageError::Compaction {
                reason: e.to_string(),
            })?;
            atomic_write(&dir, COMPACTION_MANIFEST_FILE_NAME, &bytes)?;
            if stop == Some(SwapStep::Committed) {
                return Ok(false);
            }
            apply_manifest(&dir, store.as_ref(), &manifest, stop)
        })
        .await??;
        if !done {
            // A simulated crash: the state in memory is left as it was; reopen to recover.
            return Ok(());
        }
        // Staged files of groups that joined another one (the manifest is gone: safe).
        self.discard_staged_quietly().await;
        let mut s = write(&self.state);
        for g in staged {
            let Some(from) = s
                .segments
                .iter()
                .position(|seg| seg.base_index == g.info.base_index)
            else {
                continue;
            };
            let count = 1 + g.replaced.len();
            let to = (from + count).min(s.segments.len().saturating_sub(1));
            s.segments.splice(from..to, std::iter::once(g.info));
        }
        s.cleaned_through = s.cleaned_through.max(cleaned_through);
        Ok(())
    }
}

/// Where a full scan of `src` starts.
fn start_point(src: &Source) -> IndexPoint {
    IndexPoint {
        first_index: src.base,
        file_offset: 0,
        max_timestamp_before_ms: i64::MIN,
    }
}

/// What one pass is given besides its plan.
struct PassInputs<'a> {
    codec: &'a dyn CompactionCodec,
    policy: CompactionPolicy,
    limits: CleanerLimits,
    aborted: &'a AbortedLookup,
    now_ms: i64,
}
