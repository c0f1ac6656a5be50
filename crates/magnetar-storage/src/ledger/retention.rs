//! The log start: truncation before an index and retention by time and size delete whole sealed
//! segments (and their index files) and persist the new start index.

use super::snapshots::{list_snapshots, remove_snapshot};
use super::*;

/// What `apply_retention` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    pub segments_deleted: u64,
    pub bytes_deleted: u64,
    pub start_index: u64,
}

/// Retention by time: the segment's last publish time `last_publish_ms` is more than
/// `retention_ms` before `now_ms` (the same rule for local and shared ledgers).
pub(crate) fn expired(now_ms: i64, retention_ms: u64, last_publish_ms: i64) -> bool {
    now_ms.saturating_sub(last_publish_ms) > i64::try_from(retention_ms).unwrap_or(i64::MAX)
}

/// Retention by size: with `total` bytes, the ledger stays at or above `retention_bytes`
/// without the oldest segment of `segment_bytes`.
pub(crate) fn over_size(retention_bytes: Option<u64>, total: u64, segment_bytes: u64) -> bool {
    retention_bytes.is_some_and(|r| total.saturating_sub(segment_bytes) >= r && total > r)
}

impl ManagedLedger {
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
        self.apply_retention_until(retention_ms, retention_bytes, u64::MAX)
            .await
    }

    /// [`ManagedLedger::apply_retention`] that keeps every segment holding an entry at or
    /// after `stable_end` (a partition's last stable offset: the data of an open transaction
    /// stays until the transaction is decided).
    pub async fn apply_retention_until(
        &self,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
        stable_end: u64,
    ) -> Result<RetentionOutcome, StorageError> {
        let _admin = self.admin.lock().await;
        let now = self.clock.now_ms();
        let new_start = {
            let s = read(&self.state);
            let mut total: u64 = s.segments.iter().map(|seg| seg.bytes).sum();
            let mut new_start = None;
            for seg in &s.segments[..s.segments.len().saturating_sub(1)] {
                if seg.end_index > stable_end {
                    break;
                }
                let by_time = match (retention_ms, seg.last_publish_ms) {
                    (Some(r), Some(t)) => expired(now, r, t),
                    (Some(_), None) => true,
                    _ => false,
                };
                let by_size = over_size(retention_bytes, total, seg.bytes);
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
}
