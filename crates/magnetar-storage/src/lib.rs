//! magnetar-storage: the managed ledger.
//!
//! This crate owns how a topic partition's data lives on disk: a **managed ledger** per
//! partition is a directory of **segments** (files named by their base message index), each
//! an append-only sequence of **entries** (one producer batch, opaque payload) with a
//! CRC32C-checked header carrying the entry's first **message index**. It owns group commit
//! and fsync policy, sparse index and time index (persisted per sealed segment), segment roll, crash recovery (torn tail
//! truncation), retention, truncation and durable named **cursors**.
//!
//! It must not depend on wire codecs (Kafka or Pulsar) or the broker: payloads are opaque bytes
//! tagged with a [`PayloadFormat`], and the API speaks message indexes, never offsets or message
//! ids. It uses the `MetadataStore` trait (never a particular backend) only for the shared
//! WAL's epochs and commit records ([`wal`]), under a root the caller names.
//!
//! Main types: [`ManagedLedger`] (open, append, read, find by time, retention, cursors),
//! [`LedgerConfig`] and [`FsyncPolicy`], [`NewEntry`] / [`Entry`] / [`EntryHeader`] (the
//! on-disk layout is documented in [`entry`]), [`SegmentStore`] (where segment bytes live;
//! local files now, object storage later) with [`segment_store_conformance`], [`RangeSet`]
//! and [`CursorState`], [`Clock`] with [`SystemClock`] and [`ManualClock`], and
//! [`StorageError`]. [`wal`] is the shared write-ahead log ([`wal::WalWriter`],
//! [`wal::SharedLedger`]): entries of all ledgers batched into objects, committed in the
//! metadata store under a fence, for brokers that keep no data. [`faulty_store`] wraps an
//! object store to inject faults in tests.
//!
//! Log compaction ([`ManagedLedger::compact`], [`compaction`]): sealed segments rewritten
//! keeping the latest record per key at its original index, swapped in crash-safely; the
//! payload formats come in through a [`CompactionCodec`] implemented above this crate.
//!
//! Operational contract:
//! - [`ManagedLedger::open`] blocks on file I/O: sealed segments open from their persisted
//!   index file ([`index_file`], written at roll and checked against the segment: length, the
//!   last entry's header and CRC, the file's own CRC), so they are not read; a missing or
//!   mismatching index is rebuilt from the segment's headers with one warning and written
//!   again. The active (last) segment is scanned and CRC-checked, its torn tail cut off,
//!   unless the last [`ManagedLedger::close`] was clean: that close wrote the active segment's
//!   index and a [`CLEAN_SHUTDOWN_FILE_NAME`] marker, which the next open deletes (durably,
//!   before any append) and uses once. After a crash, the active segment's index file (a
//!   recovery checkpoint written every [`LedgerConfig::recovery_checkpoint_bytes`] under
//!   `always`, or the last clean close's) spares the scan of the prefix it covers. Call it at
//!   startup or inside `spawn_blocking`; it needs a tokio runtime.
//! - Snapshots: [`ManagedLedger::write_snapshot`] stores an opaque blob named by the index it
//!   covers (the broker's producer state), refusing an index beyond the readable end;
//!   [`ManagedLedger::snapshots`] returns the CRC-valid ones, newest first. The newest
//!   [`SNAPSHOTS_KEPT`] are kept; those below the start go with retention and truncation,
//!   those beyond the recovered end (a crash lost what they covered) are deleted on open.
//! - Appends are queued per ledger; a flush batch runs on a tokio blocking thread (at most one
//!   per ledger), so idle ledgers cost no threads. Under `always` one fdatasync covers the
//!   whole batch (group commit) and readers see entries only after it.
//! - The queue is bounded ([`APPEND_QUEUE_BYTES_MIN`] or four times `entry_bytes_max`);
//!   when full, `append_with` returns [`StorageError::QueueFull`] at once, it never waits.
//! - The `build` closure of `append_with` runs under the append lock: it must not call back
//!   into the same ledger.
//! - After a write error the ledger refuses appends ([`StorageError::Failed`]) until
//!   reopened, because indexes already handed out can no longer be honoured.
//! - Cursor acknowledgements change the in-memory cursor at once; the cursor file is written
//!   at most once per [`LedgerConfig::cursor_persist_interval_ms`] (open, reset, delete and
//!   close write at once), so a crash can lose the last interval's acknowledgements: those
//!   messages are delivered again (at-least-once, as Pulsar's mark-delete rate limit).

pub mod clock;
pub mod compaction;
pub mod cursor;
pub mod entry;
pub mod error;
pub mod faulty_store;
pub mod histogram;
pub mod index;
pub mod index_file;
pub mod ledger;
pub mod range_set;
mod segment;
pub mod segment_store;
pub mod tiered;
pub mod wal;

pub use clock::{Clock, ManualClock, SystemClock};
pub use compaction::{
    CleanerLimits, CompactionCodec, CompactionOutcome, CompactionPolicy, CompactionRecord,
    EntryRecords, TxnView,
};
pub use cursor::{CursorStart, CursorState};
pub use entry::{
    AbortedTxn, Entry, EntryHeader, NewEntry, PayloadFormat, ProducerInfo, TxnMark,
    ENTRY_HEADER_LEN,
};
pub use error::StorageError;
pub use histogram::{HistogramSnapshot, LatencyHistogram, LATENCY_BUCKETS_US};
pub use ledger::{
    FsyncPolicy, IndexRebuild, LedgerConfig, LedgerStats, ManagedLedger, PendingAppend, Position,
    RecoveryReport, RetentionOutcome, SegmentStats, SwapStep, APPEND_QUEUE_BYTES_MIN,
    CLEAN_SHUTDOWN_FILE_NAME, COMPACTION_CHECKPOINT_FILE_NAME, COMPACTION_MANIFEST_FILE_NAME,
    SNAPSHOTS_KEPT, SNAPSHOT_BYTES_MAX, SNAPSHOT_SUFFIX,
};
pub use range_set::RangeSet;
pub use segment_store::{
    segment_store_conformance, LocalSegmentStore, OffloadOutcome, SegmentFile, SegmentStore,
};
