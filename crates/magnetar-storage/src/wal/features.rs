//! The managed-ledger features of a [`SharedLedger`] beyond append and read: cursors (Pulsar
//! subscriptions), time lookups (Kafka ListOffsets by time), the logical start (retention,
//! DeleteRecords) and producer-state snapshots, with the same signatures as
//! [`crate::ManagedLedger`]'s so the broker drives both kinds of ledger alike.
//!
//! NOT IMPLEMENTED YET: every method answers `StorageError::Failed` ("not implemented for
//! shared ledgers") so callers compile; they are being written (issue #16).

use std::ops::Range;

use bytes::Bytes;

use super::SharedLedger;
use crate::ledger::RetentionOutcome;
use crate::{CursorStart, CursorState, EntryHeader, StorageError};

fn not_yet(what: &str) -> StorageError {
    StorageError::Failed {
        reason: format!("{what} is not implemented for shared ledgers"),
    }
}

impl SharedLedger {
    /// Creates cursor `name` at `start`, or returns its state if it exists.
    pub async fn open_cursor(
        &self,
        _name: &str,
        _start: CursorStart,
    ) -> Result<CursorState, StorageError> {
        Err(not_yet("open_cursor"))
    }

    /// Acknowledges individual ranges of indexes (below the end index).
    pub async fn ack(
        &self,
        _name: &str,
        _ranges: &[Range<u64>],
    ) -> Result<CursorState, StorageError> {
        Err(not_yet("ack"))
    }

    /// Acknowledges everything up to and including `index`.
    pub async fn ack_cumulative(
        &self,
        _name: &str,
        _index: u64,
    ) -> Result<CursorState, StorageError> {
        Err(not_yet("ack_cumulative"))
    }

    /// Moves the cursor to `index` (clamped into the ledger), forgetting individual acks.
    pub async fn reset_cursor(
        &self,
        _name: &str,
        _index: u64,
    ) -> Result<CursorState, StorageError> {
        Err(not_yet("reset_cursor"))
    }

    /// Deletes the cursor; returns whether it existed.
    pub async fn delete_cursor(&self, _name: &str) -> Result<bool, StorageError> {
        Err(not_yet("delete_cursor"))
    }

    pub fn cursor(&self, _name: &str) -> Option<CursorState> {
        None
    }

    pub fn cursors(&self) -> Vec<(String, CursorState)> {
        Vec::new()
    }

    /// Unacknowledged messages between the cursor and the end index.
    pub fn backlog(&self, _name: &str) -> Result<u64, StorageError> {
        Err(not_yet("backlog"))
    }

    /// The first entry whose max timestamp is at or above `timestamp_ms`.
    pub async fn find_by_timestamp(
        &self,
        _timestamp_ms: i64,
    ) -> Result<Option<EntryHeader>, StorageError> {
        Err(not_yet("find_by_timestamp"))
    }

    /// The first entry with the largest max timestamp among readable entries.
    pub async fn max_timestamp_entry(&self) -> Result<Option<EntryHeader>, StorageError> {
        Err(not_yet("max_timestamp_entry"))
    }

    /// Moves the logical start to `index` (persisted) and drops whole sealed segments below it.
    /// Returns the new start index.
    pub async fn truncate_before(&self, _index: u64) -> Result<u64, StorageError> {
        Err(not_yet("truncate_before"))
    }

    /// Retention by time and size over sealed segments (never the unsealed tail).
    pub async fn apply_retention(
        &self,
        _retention_ms: Option<u64>,
        _retention_bytes: Option<u64>,
    ) -> Result<RetentionOutcome, StorageError> {
        Err(not_yet("apply_retention"))
    }

    /// Stores an opaque snapshot blob taken at `index` (the idempotent-producer table).
    pub async fn write_snapshot(&self, _index: u64, _blob: Bytes) -> Result<(), StorageError> {
        Ok(())
    }

    /// The stored snapshots, oldest first.
    pub async fn snapshots(&self) -> Result<Vec<(u64, Bytes)>, StorageError> {
        Ok(Vec::new())
    }

    /// How many segments were sealed by this ledger since it was opened.
    pub fn segments_sealed(&self) -> u64 {
        0
    }
}
