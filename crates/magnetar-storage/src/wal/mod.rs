//! The shared write-ahead log: the object-storage ledger's second mode, where a broker keeps no
//! data of its own (the cluster mode's data path).
//!
//! # How a write becomes durable
//! 1. [`SharedLedger::append_with`] assigns the entry's message index under the ledger's append
//!    lock (as the local ledger does), encodes it with the same header and CRC as on disk, and
//!    hands it to the broker's one [`WalWriter`].
//! 2. The writer batches the entries of **all** its ledgers for
//!    [`WalConfig::flush_interval_ms`] or until [`WalConfig::object_bytes_max`] bytes, whichever
//!    comes first, and PUTs them as **one** object `wal/<writer>/<seq>.wal` (create-only: a
//!    retry that finds the object already there compares its bytes instead of trusting it).
//!    Inside the object each ledger's entries are one contiguous chunk.
//! 3. It then commits one **range record** per ledger chunk in the metadata store, all in one
//!    transaction (up to [`LEDGERS_PER_TXN`] ledgers; more are split): each record is created at
//!    `<root>/<ledger>/ranges/<first index>` (compare: absent) and the transaction compares the
//!    ledger's fence key at the version this writer holds. A writer that lost its epoch
//!    cannot commit, so it cannot acknowledge.
//! 4. Only then are the appends acknowledged and the entries readable.
//!
//! A PUT or commit that fails is retried with backoff until [`WalConfig::commit_timeout_ms`];
//! after that the appends fail with [`StorageError::ObjectStore`] (or
//! [`StorageError::Metadata`]) and the ledger refuses further appends until it is reopened
//! (indexes were handed out and their fate may be unknown: a reopen reads the truth). A commit
//! whose answer was lost is retried under the same keys, and a range key found already holding
//! this writer's record counts as committed.
//!
//! # Takeover
//! [`SharedLedger::open`] bumps the ledger's epoch (one compare-and-set on
//! `<root>/<ledger>/epoch`), which fences the previous writer's commits from then on, lists the
//! committed range records, requires them to be **contiguous** (a gap refuses to open with
//! [`StorageError::Gap`]: never skipped), and continues at the last end index. Message indexes
//! are never reused or skipped.
//!
//! # Reads
//! Entries are read by range GETs of the chunk a range record names, every entry's CRC checked
//! ([`StorageError::Corrupt`] otherwise: a corrupted or truncated object is never served). A
//! bounded per-ledger cache keeps recent chunks, so tail reads (what consumers mostly do) are
//! served from memory: a chunk is cached when it is committed.
//!
//! # Sealing and garbage collection
//! Once a ledger's unsealed chunks hold [`WalConfig::seal_bytes`] or number
//! [`SEAL_CHUNKS_MAX`], its writer copies the oldest of them (CRC-checked) into one segment
//! object `segments/<ledger>/<first>-<end>.e<epoch>.seg` (named with the epoch, so a stale
//! writer never overwrites; the same bytes as a local segment file), then in one transaction
//! under the fence creates the segment record and deletes the chunks' range records and WAL
//! references. [`collect_garbage`] deletes WAL objects no reference is left on, segment
//! objects no record names (a seal that did not commit, or a segment retention dropped) and
//! snapshot objects no record names, once older than
//! [`WalConfig::gc_grace_ms`]; any broker may run it, it is idempotent.
//!
//! # Compaction
//! [`SharedLedger::compact`] (log compaction, `cleanup.policy=compact`; see `compaction.rs`)
//! has the local ledger's API and semantics and rewrites **sealed segments only**, below the
//! compaction lag, the last stable offset and the segment holding the last committed entry:
//! the unsealed tail is never touched. Each segment a pass changes is written to a new object
//! `segments/<ledger>/<first>-<end>.e<epoch>.c<seq>.seg` (a fresh `seq` per pass of this writer:
//! no name is ever reused) in the same format, entries keeping their headers (only payloads
//! shrink, gaps between indexes are normal), with the same index range and chunk points (a
//! chunk may hold fewer entries or none), so open's contiguity check is unchanged. Then **one**
//! transaction under the fence overwrites those segments' records (marked `compacted`) and
//! writes `<root>/<ledger>/compaction` ([`CompactionRecord`]: `cleaned_through`), at most
//! [`SWAP_SEGMENTS_MAX`] segments per pass. A fenced writer changes nothing; a crash before the
//! transaction leaves the old records, after it the new ones; either way the objects no record
//! names are left to [`collect_garbage`]. A read at an index compacted away returns the next
//! kept entry.
//!
//! # Cursors, time lookups, start, snapshots
//! [`SharedLedger`] has the local ledger's feature API with the same signatures and semantics
//! (see `features.rs`): cursors persisted one key each at `<root>/<ledger>/cursors/<name>` and
//! loaded at open; time lookups that read only the chunk that matters (chunks and segment
//! chunk points carry their largest timestamp); a persisted start at `<root>/<ledger>/start`
//! moved by truncation and retention, which delete the sealed segments' records below it (the
//! collector deletes their objects), never the unsealed tail; producer-state snapshots as
//! objects recorded at `<root>/<ledger>/snapshots/<index>`, the newest
//! [`SNAPSHOTS_KEPT`](crate::SNAPSHOTS_KEPT) kept. Every one of these writes is one transaction
//! under the fence, like a commit.

mod compaction;
mod delete;
mod features;
mod ledger;
mod records;
mod seal;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_compaction;
#[cfg(test)]
mod tests_features;
mod writer;

pub use compaction::SWAP_SEGMENTS_MAX;
pub use features::{CURSORS_MAX, CURSOR_ACKED_RANGES_PERSISTED_MAX, SEGMENT_DELETES_PER_TXN};
pub use ledger::{OwnerFence, SharedLedger, SharedLedgerStats, WalAppend};
pub use records::{
    ChunkPoint, CompactionRecord, CursorRecord, EpochRecord, RangeRecord, SegmentRecord,
    SnapshotRecord, StartRecord,
};
pub use seal::{collect_garbage, GcOutcome};
pub use writer::{WalCounters, WalWriter};

use crate::StorageError;

/// Most ledgers committed by one metadata transaction: each takes up to three compares (its
/// fence, its owner's fence in cluster mode, and its new range key), and etcd accepts 128 per
/// transaction by default.
pub const LEDGERS_PER_TXN: usize = 42;

/// Most chunks one seal folds into a segment: its transaction deletes each chunk's range
/// record and WAL reference and creates the segment record (2 per chunk + 1 within etcd's 128).
pub const SEAL_CHUNKS_MAX: usize = 60;

/// Settings of the shared WAL.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Longest time an entry waits for its object to be written (`storage.wal_flush_interval_ms`).
    pub flush_interval_ms: u64,
    /// An object is written as soon as this many bytes are pending
    /// (`storage.wal_object_bytes_max`).
    pub object_bytes_max: u64,
    /// How long a flush retries its PUT and commit before its appends fail
    /// (`storage.wal_commit_timeout_ms`).
    pub commit_timeout_ms: u64,
    /// Bytes accepted and not yet committed, over all ledgers of the writer; appends beyond it
    /// get [`StorageError::QueueFull`] at once (`storage.wal_pending_bytes_max`).
    pub pending_bytes_max: u64,
    /// Largest entry payload.
    pub entry_bytes_max: u32,
    /// Bytes of recent chunks each ledger keeps in memory for reads.
    pub cache_bytes_per_ledger: u64,
    /// A ledger's unsealed chunks are sealed into a segment object once they hold this many
    /// bytes or number [`SEAL_CHUNKS_MAX`] (`storage.wal_seal_bytes`).
    pub seal_bytes: u64,
    /// An object no record refers to is deleted only once it is older than this
    /// (`storage.wal_gc_grace_ms`); at least twice the commit timeout, so an object whose
    /// commit may still land is never taken.
    pub gc_grace_ms: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            flush_interval_ms: 20,
            object_bytes_max: 8 << 20,
            commit_timeout_ms: 10_000,
            pending_bytes_max: 64 << 20,
            entry_bytes_max: 8 << 20,
            cache_bytes_per_ledger: 4 << 20,
            seal_bytes: 32 << 20,
            gc_grace_ms: 600_000,
        }
    }
}

impl WalConfig {
    pub fn validate(&self) -> Result<(), StorageError> {
        let bad = |reason: String| Err(StorageError::InvalidConfig { reason });
        if !(1..=10_000).contains(&self.flush_interval_ms) {
            return bad(format!(
                "wal_flush_interval_ms must be 1..=10000, got {}",
                self.flush_interval_ms
            ));
        }
        if !(4096..=(1 << 30)).contains(&self.object_bytes_max) {
            return bad(format!(
                "wal_object_bytes_max must be 4096..=1073741824, got {}",
                self.object_bytes_max
            ));
        }
        if !(100..=600_000).contains(&self.commit_timeout_ms) {
            return bad(format!(
                "wal_commit_timeout_ms must be 100..=600000, got {}",
                self.commit_timeout_ms
            ));
        }
        if self.pending_bytes_max < self.object_bytes_max {
            return bad(format!(
                "wal_pending_bytes_max ({}) must be at least wal_object_bytes_max ({})",
                self.pending_bytes_max, self.object_bytes_max
            ));
        }
        if self.entry_bytes_max == 0 || u64::from(self.entry_bytes_max) > self.pending_bytes_max {
            return bad(format!(
                "entry_bytes_max must be 1..=wal_pending_bytes_max, got {}",
                self.entry_bytes_max
            ));
        }
        if self.seal_bytes < 4096 {
            return bad(format!(
                "wal_seal_bytes must be at least 4096, got {}",
                self.seal_bytes
            ));
        }
        if self.gc_grace_ms < 2 * self.commit_timeout_ms {
            return bad(format!(
                "wal_gc_grace_ms ({}) must be at least twice wal_commit_timeout_ms ({})",
                self.gc_grace_ms, self.commit_timeout_ms
            ));
        }
        Ok(())
    }
}
