//! The storage error type. Messages are lowercase without a trailing period.

use std::path::PathBuf;

/// Every failure the managed ledger reports. The broker maps these to its domain error.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file system call failed.
    #[error("i/o error during {op} on {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk do not decode or fail their CRC. Never served, never silently skipped.
    #[error("corrupt data in segment {segment} at file offset {file_offset}: {reason}")]
    Corrupt {
        segment: u64,
        file_offset: u64,
        reason: String,
    },
    /// A ledger metadata file (cursors, start index) does not parse.
    #[error("corrupt metadata file {path}: {reason}")]
    CorruptMetadata { path: PathBuf, reason: String },
    /// The requested message index is below the start or above the end of the ledger.
    #[error("message index {requested} out of range [{start}, {end}]")]
    IndexOutOfRange {
        requested: u64,
        start: u64,
        end: u64,
    },
    /// The entry payload is larger than `LedgerConfig::entry_bytes_max`.
    #[error("entry of {size} bytes exceeds the maximum of {max} bytes")]
    EntryTooLarge { size: u64, max: u64 },
    /// The entry is malformed (for example a message count of zero).
    #[error("invalid entry: {reason}")]
    InvalidEntry { reason: String },
    /// The append queue of this ledger holds too many bytes; the caller should retry later.
    #[error("append queue full: {queued_bytes} bytes queued, limit is {max_bytes}")]
    QueueFull { queued_bytes: u64, max_bytes: u64 },
    /// The ledger was closed.
    #[error("ledger is closed")]
    Closed,
    /// An earlier write failed; indexes already handed out can no longer be honoured, so the
    /// ledger refuses further appends until it is reopened (which recovers the tail).
    #[error("ledger failed after a write error and must be reopened: {reason}")]
    Failed { reason: String },
    /// The named cursor does not exist.
    #[error("cursor {name} not found")]
    CursorNotFound { name: String },
    /// The cursor operation is not valid (for example an ack beyond the end index).
    #[error("invalid operation on cursor {name}: {reason}")]
    CursorInvalid { name: String, reason: String },
    /// A configuration value is out of its allowed range.
    #[error("invalid ledger config: {reason}")]
    InvalidConfig { reason: String },
    /// The ledger needs a tokio runtime for its background work.
    #[error("no tokio runtime: open the ledger from inside a tokio runtime")]
    NoRuntime,
    /// This writer lost the ledger (another writer took it over, or the fence it holds is
    /// gone): nothing more is committed or acknowledged through it.
    #[error("ledger {ledger} is fenced: {reason}")]
    Fenced { ledger: String, reason: String },
    /// The committed ranges of a shared ledger are not contiguous: it refuses to open rather
    /// than skip or reuse message indexes.
    #[error("ledger {ledger} has a gap in its committed ranges: expected index {expected}, found {found}")]
    Gap {
        ledger: String,
        expected: u64,
        found: u64,
    },
    /// The object store failed or did not answer in time (retriable).
    #[error("object store {op} failed: {reason}")]
    ObjectStore { op: &'static str, reason: String },
    /// The metadata store holding the shared WAL's records failed, did not answer in time, or
    /// holds a record this build cannot read.
    #[error("wal metadata: {reason}")]
    Metadata { reason: String },
    /// Log compaction could not run on this ledger (its store cannot stage segments, the key
    /// map is too small for one entry, an entry does not decode); nothing was changed.
    #[error("compaction failed: {reason}")]
    Compaction { reason: String },
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {reason}")]
    TaskFailed { reason: String },
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<tokio::task::JoinError> for StorageError {
    fn from(e: tokio::task::JoinError) -> Self {
        StorageError::TaskFailed {
            reason: e.to_string(),
        }
    }
}
