//! Recovery on open: sealed segments from their index files (or scanned), the active one scanned
//! and CRC-checked with a torn tail cut off, or taken from its index after a clean close; and the
//! clean-shutdown marker a successful close writes.

use super::*;

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
    /// After a crash: bytes of the active segment taken from its recovery checkpoint (its
    /// index as of an fsync: a `recovery_checkpoint_bytes` checkpoint or the last clean
    /// close) instead of being read; only the tail after them was scanned. `0`: none usable.
    pub checkpoint_bytes: u64,
}

/// One sealed segment whose index file was rebuilt on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRebuild {
    pub segment: u64,
    pub reason: String,
}

impl ManagedLedger {
    /// After a successful close: persists the active segment's index and the clean-shutdown
    /// marker naming it, so the next open need not scan the active segment. Best effort: a
    /// failure only costs that scan, so it is logged, not returned.
    pub(super) async fn mark_clean_shutdown(&self) {
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
}

/// Rebuilds the ledger state from the segments: headers of sealed segments, full CRC check
/// of the last one, whose torn or corrupt tail is cut off.
pub(super) fn recover(
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
    // A compaction swap that was committed (its manifest written) is finished, one that was
    // not is discarded, before the segments are listed.
    compaction::finish_swap(dir, store)?;
    let cleaned_through = compaction::read_checkpoint(dir)?;
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
        // Segments below the compaction checkpoint were rewritten by compaction (gaps allowed);
        // the active one never is.
        let compacted = !last && base < cleaned_through;
        let file = store.open(base)?;
        let len = file.len();
        // A sealed segment opens from its index file when that matches the segment. The active
        // one is the tail and is scanned (and CRC-checked), unless the last close was clean: then
        // it was fsynced before its index was written, and that index (checked against the
        // segment like a sealed one's) is used once; the marker is already deleted, so a crash
        // from here on scans it again.
        if last && clean_base == Some(base) {
            let loaded = persisted_index(store, base, &file, config.index_interval_bytes, false)?;
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
        // After a crash, the active segment's recovery checkpoint (its index up to a point that
        // was fsynced, see `LedgerConfig::recovery_checkpoint_bytes`) spares the scan of that
        // prefix: only the tail after it is read and CRC-checked.
        let mut checkpoint = None;
        if last && !compacted && config.recovery_checkpoint_bytes > 0 {
            let loaded = match read_persisted_index(store, base, &file, |bytes| {
                load_prefix_index(bytes, base, &file, config.index_interval_bytes)
            })? {
                None => None,
                Some(Ok(info)) => Some(info),
                Some(Err(reason)) => {
                    tracing::info!(dir = %dir.display(), segment = base, reason = %reason, "recovery checkpoint of the active segment unusable; scanning the whole segment");
                    None
                }
            };
            if let Some(info) = loaded {
                tracing::info!(dir = %dir.display(), segment = base, checkpoint_bytes = info.bytes, segment_bytes = len, "active segment opened from its recovery checkpoint; scanning the tail after it");
                recovery.checkpoint_bytes = info.bytes;
                checkpoint = Some(info);
            }
        }
        let mut rebuild_reason = None;
        if !last {
            let loaded =
                persisted_index(store, base, &file, config.index_interval_bytes, compacted)?;
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
                // An empty compacted segment has no index file: nothing to rebuild.
                Err(_) if compacted && len == 0 => {}
                Err(reason) => rebuild_reason = Some(reason),
            }
        }
        recovery.segments_scanned += 1;
        let (mut info, start) = match checkpoint {
            Some(info) => {
                let start = IndexPoint {
                    first_index: info.end_index,
                    file_offset: info.bytes,
                    max_timestamp_before_ms: i64::MIN,
                };
                (info, start)
            }
            None => {
                let mut info = SegmentInfo::new(base, file.clone(), config.index_interval_bytes);
                info.compacted = compacted;
                let start = info.start_point(base);
                (info, start)
            }
        };
        let end = scan_entries(file.as_ref(), start, len, last, compacted, |h, pos, _| {
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
            if info.end_index < next && compacted && info.corrupt_at.is_none() {
                // Compaction removed the segment's last records: the gap is expected.
                info.end_index = next;
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
        cleaned_through,
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

/// The persisted index of segment `base` checked against the segment (see
/// [`crate::index_file`]); `Ok(Err(reason))` when it is missing or does not match, `Err` when the
/// store cannot be read.
fn persisted_index(
    store: &dyn SegmentStore,
    base: u64,
    file: &Arc<dyn SegmentFile>,
    index_interval_bytes: u32,
    compacted: bool,
) -> Result<Result<SegmentInfo, String>, StorageError> {
    Ok(read_persisted_index(store, base, file, |bytes| {
        load_index(bytes, base, file, index_interval_bytes, compacted)
    })?
    .unwrap_or_else(|| Err("missing".to_string())))
}

/// The index file of segment `base`, bounded by what a segment of its length can need, handed
/// to `load`: `None` when there is none, `Some(Err)` when it is too long or `load` refuses it.
fn read_persisted_index(
    store: &dyn SegmentStore,
    base: u64,
    file: &Arc<dyn SegmentFile>,
    load: impl FnOnce(&[u8]) -> Result<SegmentInfo, String>,
) -> Result<Option<Result<SegmentInfo, String>>, StorageError> {
    let len = file.len();
    let max = index_file_bytes_max(len);
    Ok(store.read_index(base, max)?.map(|bytes| {
        if bytes.len() as u64 > max {
            Err(format!("too long for a segment of {len} bytes"))
        } else {
            load(&bytes)
        }
    }))
}

/// Upper bound of a valid index file for a segment of `segment_len` bytes: at most one point
/// per entry, and an entry is at least a header long.
fn index_file_bytes_max(segment_len: u64) -> u64 {
    (segment_len / ENTRY_HEADER_LEN as u64 + 1)
        .saturating_mul(24)
        .saturating_add(112)
}
