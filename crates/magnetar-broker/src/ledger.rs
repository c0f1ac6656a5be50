//! The ledger under a partition: a local [`ManagedLedger`] (standalone, optionally tiered) or a
//! [`SharedLedger`] on the shared WAL (cluster mode: entries in object storage, commit records in
//! the metadata store, so another broker can take the partition over). Both have the same
//! features with the same signatures; this enum forwards each call, so the partition, the
//! subscriptions and retention do not care which one they drive.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use magnetar_storage::compaction::{
    CleanerLimits, CompactionCodec, CompactionOutcome, CompactionPolicy,
};
use magnetar_storage::wal::{SharedLedger, WalAppend};
use magnetar_storage::{
    CursorStart, CursorState, Entry, EntryHeader, LedgerStats, ManagedLedger, NewEntry,
    PendingAppend, RetentionOutcome, StorageError, TxnView,
};
use tokio::sync::watch;

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) enum Ledger {
    Local(Arc<ManagedLedger>),
    Shared(SharedLedger),
}

/// An append whose index is assigned, of either kind of ledger.
#[derive(Debug)]
pub(crate) enum Pending {
    Local(PendingAppend),
    Shared(WalAppend),
}

impl Pending {
    pub(crate) fn first_index(&self) -> u64 {
        match self {
            Pending::Local(p) => p.first_index(),
            Pending::Shared(p) => p.first_index(),
        }
    }

    /// Waits until the entry is durable (local: the fsync policy; shared: its WAL object PUT
    /// and its commit record written).
    pub(crate) async fn wait(self) -> Result<(), StorageError> {
        match self {
            Pending::Local(p) => p.wait().await.map(|_| ()),
            Pending::Shared(p) => p.wait().await.map(|_| ()),
        }
    }
}

/// Forwards `$method($args)` to whichever ledger this is.
macro_rules! forward {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Ledger::Local(l) => l.$method($($arg),*),
            Ledger::Shared(l) => l.$method($($arg),*),
        }
    };
    ($self:ident . $method:ident ( $($arg:expr),* ) . await) => {
        match $self {
            Ledger::Local(l) => l.$method($($arg),*).await,
            Ledger::Shared(l) => l.$method($($arg),*).await,
        }
    };
}

impl Ledger {
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Ledger::Shared(_))
    }

    pub(crate) fn append_with<F: FnOnce(u64) -> NewEntry>(
        &self,
        build: F,
    ) -> Result<Pending, StorageError> {
        Ok(match self {
            Ledger::Local(l) => Pending::Local(l.append_with(build)?),
            Ledger::Shared(l) => Pending::Shared(l.append_with(build)?),
        })
    }

    pub(crate) async fn read(
        &self,
        from_index: u64,
        max_bytes: usize,
        max_entries: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        forward!(self.read(from_index, max_bytes, max_entries).await)
    }

    pub(crate) async fn scan_headers(
        &self,
        from_index: u64,
        max_entries: usize,
    ) -> Result<Vec<EntryHeader>, StorageError> {
        forward!(self.scan_headers(from_index, max_entries).await)
    }

    pub(crate) fn start_index(&self) -> u64 {
        forward!(self.start_index())
    }

    pub(crate) fn end_index(&self) -> u64 {
        forward!(self.end_index())
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        forward!(self.subscribe())
    }

    pub(crate) fn end_waiters(&self) -> usize {
        forward!(self.end_waiters())
    }

    pub(crate) fn is_failed(&self) -> bool {
        forward!(self.is_failed())
    }

    /// Rolls (and, locally, recovery checkpoints) since open: the producer state is snapshotted
    /// after each.
    pub(crate) fn snapshot_points(&self) -> u64 {
        forward!(self.snapshot_points())
    }

    /// Local: the ledger's own statistics. Shared: its indexes, and its sealed segments as
    /// segments (sizes are in the WAL's own statistics).
    pub(crate) fn stats(&self) -> LedgerStats {
        match self {
            Ledger::Local(l) => l.stats(),
            Ledger::Shared(l) => {
                let s = l.stats();
                LedgerStats {
                    start_index: s.start_index,
                    end_index: s.end_index,
                    ..LedgerStats::default()
                }
            }
        }
    }

    /// Local: flushes queued appends and closes the files. Shared: refuses new appends and
    /// waits (bounded by the commit timeout) for those already queued to commit or fail.
    /// Returns whether every append handed out is durable in the log now (Local: the flush
    /// succeeded; Shared: nothing queued failed or was left undecided).
    pub(crate) async fn close(&self) -> Result<bool, StorageError> {
        match self {
            Ledger::Local(l) => l.close().await.map(|()| true),
            Ledger::Shared(l) => Ok(l.close_settled().await),
        }
    }

    pub(crate) async fn find_by_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<EntryHeader>, StorageError> {
        forward!(self.find_by_timestamp(timestamp_ms).await)
    }

    pub(crate) async fn max_timestamp_entry(&self) -> Result<Option<EntryHeader>, StorageError> {
        forward!(self.max_timestamp_entry().await)
    }

    pub(crate) async fn truncate_before(&self, index: u64) -> Result<u64, StorageError> {
        forward!(self.truncate_before(index).await)
    }

    pub(crate) async fn apply_retention_until(
        &self,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
        stable_end: u64,
    ) -> Result<RetentionOutcome, StorageError> {
        forward!(
            self.apply_retention_until(retention_ms, retention_bytes, stable_end)
                .await
        )
    }

    pub(crate) async fn write_snapshot(&self, index: u64, blob: Bytes) -> Result<(), StorageError> {
        forward!(self.write_snapshot(index, blob).await)
    }

    pub(crate) async fn snapshots(&self) -> Result<Vec<(u64, Bytes)>, StorageError> {
        forward!(self.snapshots().await)
    }

    pub(crate) async fn open_cursor(
        &self,
        name: &str,
        start: CursorStart,
    ) -> Result<CursorState, StorageError> {
        forward!(self.open_cursor(name, start).await)
    }

    pub(crate) async fn ack(
        &self,
        name: &str,
        ranges: &[Range<u64>],
    ) -> Result<CursorState, StorageError> {
        forward!(self.ack(name, ranges).await)
    }

    pub(crate) async fn ack_cumulative(
        &self,
        name: &str,
        index: u64,
    ) -> Result<CursorState, StorageError> {
        forward!(self.ack_cumulative(name, index).await)
    }

    pub(crate) async fn reset_cursor(
        &self,
        name: &str,
        index: u64,
    ) -> Result<CursorState, StorageError> {
        forward!(self.reset_cursor(name, index).await)
    }

    pub(crate) async fn delete_cursor(&self, name: &str) -> Result<bool, StorageError> {
        forward!(self.delete_cursor(name).await)
    }

    pub(crate) fn cursor(&self, name: &str) -> Option<CursorState> {
        forward!(self.cursor(name))
    }

    pub(crate) fn cursors(&self) -> Vec<(String, CursorState)> {
        forward!(self.cursors())
    }

    /// Whether log compaction can rewrite this ledger's sealed segments (local: its segment
    /// store's; shared: always).
    pub(crate) fn can_compact(&self) -> bool {
        forward!(self.can_compact())
    }

    /// Cleanable bytes and dirty ratio (see `ManagedLedger::cleanable`).
    pub(crate) fn cleanable(&self, min_compaction_lag_ms: u64) -> (u64, f64) {
        forward!(self.cleanable(min_compaction_lag_ms))
    }

    /// Every index below this is compacted.
    pub(crate) fn cleaned_through(&self) -> u64 {
        forward!(self.cleaned_through())
    }

    pub(crate) async fn compact_with_txns(
        &self,
        codec: Arc<dyn CompactionCodec>,
        policy: CompactionPolicy,
        limits: CleanerLimits,
        txns: TxnView,
    ) -> Result<CompactionOutcome, StorageError> {
        forward!(self.compact_with_txns(codec, policy, limits, txns).await)
    }

    /// The local ledger, for what only it has (its directory, tiered offload).
    pub(crate) fn local(&self) -> Option<&Arc<ManagedLedger>> {
        match self {
            Ledger::Local(l) => Some(l),
            Ledger::Shared(_) => None,
        }
    }
}
