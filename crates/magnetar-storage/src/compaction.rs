//! Log compaction's pure parts: what a caller tells the compactor (the [`CompactionCodec`] that
//! knows the payload formats, the [`CompactionPolicy`] of a topic, the broker's
//! [`CleanerLimits`]), what it reports ([`CompactionOutcome`]), the fixed-size key map
//! ([`KeyMap`], Kafka's `log.cleaner.dedupe.buffer.size`) and the I/O throttle ([`Throttle`]).
//!
//! The compactor itself (which segments, the rewrite, the crash-safe swap) is
//! [`crate::ManagedLedger::compact`]. This crate knows no wire format: the codec, given an entry,
//! lists its records' keys and rewrites the entry keeping some of them, with their offsets
//! (message indexes) unchanged.

use std::sync::Arc;

use bytes::Bytes;

use crate::clock::Clock;
use crate::entry::{AbortedTxn, EntryHeader};

/// One record of an entry as compaction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionRecord {
    /// The record's message index (Kafka offset); unchanged by compaction.
    pub index: u64,
    /// `None`: the record has no key and is always kept.
    pub key: Option<Bytes>,
    /// A null value: a delete marker, itself removed after `delete_retention_ms`.
    pub tombstone: bool,
}

/// What an entry holds, for compaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryRecords {
    /// Kept as written: control batches (transaction markers), formats the codec does not
    /// compact.
    KeepWhole,
    /// Keyed records, in the entry's order.
    Records(Vec<CompactionRecord>),
}

/// The payload formats, as compaction needs them. Implemented above this crate (the Kafka
/// record batch and Pulsar batch codecs live in `magnetar-format`).
pub trait CompactionCodec: Send + Sync + 'static {
    /// The records of an entry. `Err` (an entry that does not decode) keeps it whole.
    fn records(&self, header: &EntryHeader, payload: &Bytes) -> Result<EntryRecords, String>;
    /// The payload with only the records whose `keep` flag is set (same order as
    /// [`CompactionCodec::records`]), each at its original index. With no flag set, an empty
    /// batch that keeps the entry's producer information (the last batch of a producer).
    fn retain(&self, header: &EntryHeader, payload: &Bytes, keep: &[bool])
        -> Result<Bytes, String>;
}

/// A topic's compaction settings (Kafka's topic configs of the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionPolicy {
    /// Entries published less than this long ago are not compacted.
    pub min_compaction_lag_ms: u64,
    /// Compact when the oldest dirty entry is this old, whatever the dirty ratio.
    pub max_compaction_lag_ms: u64,
    /// Compact when dirty bytes / (clean + dirty bytes) reaches this.
    pub min_cleanable_dirty_ratio: f64,
    /// A tombstone is removed once its entry was published this long ago.
    pub delete_retention_ms: u64,
    /// Run even below the dirty ratio (an operator's trigger).
    pub force: bool,
}

impl Default for CompactionPolicy {
    /// Kafka's defaults.
    fn default() -> Self {
        CompactionPolicy {
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX as u64,
            min_cleanable_dirty_ratio: 0.5,
            delete_retention_ms: 24 * 3600 * 1000,
            force: false,
        }
    }
}

/// What compaction must know of a partition's transactions (from its transaction table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnView {
    /// The last stable offset: no segment holding an entry at or after it is compacted (Kafka's
    /// cleaner stops at the first unstable offset), so every transaction whose data is compacted
    /// is decided.
    pub stable_end: u64,
    /// The aborted transactions: their data entries are dropped (the last entry of a producer
    /// stays as an empty batch), and never enter the key map, so an aborted value never hides
    /// a committed one. Markers are kept.
    pub aborted: Vec<AbortedTxn>,
}

impl Default for TxnView {
    /// No transactions: nothing held back, nothing aborted.
    fn default() -> Self {
        TxnView {
            stable_end: u64::MAX,
            aborted: Vec::new(),
        }
    }
}

/// [`TxnView::aborted`] by producer, for a lookup per entry.
#[derive(Debug, Default)]
pub(crate) struct AbortedLookup {
    by_producer: std::collections::HashMap<i64, Vec<AbortedTxn>>,
}

impl AbortedLookup {
    pub(crate) fn new(aborted: &[AbortedTxn]) -> Self {
        let mut by_producer: std::collections::HashMap<i64, Vec<AbortedTxn>> =
            std::collections::HashMap::new();
        for a in aborted {
            by_producer.entry(a.producer_id).or_default().push(*a);
        }
        for list in by_producer.values_mut() {
            list.sort_by_key(|a| a.first_index);
        }
        AbortedLookup { by_producer }
    }

    /// Whether `header` is a data entry of an aborted transaction.
    pub(crate) fn is_aborted(&self, header: &EntryHeader) -> bool {
        let Some(p) = header.producer else {
            return false;
        };
        let Some(list) = self.by_producer.get(&p.producer_id) else {
            return false;
        };
        // The last transaction starting at or before the entry is the only one that can hold
        // it (a producer's transactions do not overlap).
        let at = list.partition_point(|a| a.first_index <= header.first_index);
        at > 0 && list[at - 1].covers(header)
    }
}

/// The broker's cleaner limits (Kafka's `log.cleaner.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerLimits {
    /// Memory for the key map; a log with more distinct dirty keys takes several passes.
    pub dedupe_buffer_bytes: u64,
    /// Bytes read plus written per second, at most; `None`: unthrottled.
    pub io_bytes_per_second: Option<u64>,
    /// Passes one call may make (each rewrites the cleaned part of the log once).
    pub passes_max: u32,
}

impl Default for CleanerLimits {
    fn default() -> Self {
        CleanerLimits {
            dedupe_buffer_bytes: 128 << 20,
            io_bytes_per_second: None,
            passes_max: 64,
        }
    }
}

/// What one [`crate::ManagedLedger::compact`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Passes made (0: nothing was cleanable, or the dirty ratio was below the threshold).
    pub passes: u32,
    /// Why nothing ran, when `passes` is 0.
    pub skipped: Option<String>,
    pub segments_before: u64,
    pub segments_after: u64,
    /// Bytes of the rewritten segments before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    /// Entries of aborted transactions dropped (their records count in `records_removed`).
    pub aborted_entries_removed: u64,
    /// Entries kept whole because they did not decode.
    pub entries_undecodable: u64,
    /// Entries left as empty batches: the last of their producer.
    pub empty_batches_kept: u64,
    /// Every index below this is compacted.
    pub cleaned_through: u64,
    /// When the oldest tombstone kept becomes removable (a pass is due then even with no dirty
    /// data).
    pub tombstones_due_ms: Option<i64>,
}

impl CompactionOutcome {
    pub fn bytes_reclaimed(&self) -> u64 {
        self.bytes_before.saturating_sub(self.bytes_after)
    }
}

/// Bytes one slot of the key map takes: a 128-bit key hash and an index.
pub const KEY_MAP_SLOT_BYTES: u64 = 24;
/// The map counts as full at this load (Kafka's `log.cleaner.io.buffer.load.factor`).
const KEY_MAP_LOAD: f64 = 0.9;

/// A fixed-size open-addressing map from a key's 128-bit hash to the latest index seen for it.
/// Sized once from a byte budget; [`KeyMap::has_room`] says when a pass must stop.
pub struct KeyMap {
    hashes: Vec<u128>,
    /// `u64::MAX`: empty slot.
    indexes: Vec<u64>,
    len: usize,
    limit: usize,
}

impl KeyMap {
    /// A map using about `bytes` of memory (at least 16 slots).
    pub fn with_bytes(bytes: u64) -> Self {
        let slots = usize::try_from(bytes / KEY_MAP_SLOT_BYTES)
            .unwrap_or(usize::MAX)
            .max(16);
        KeyMap {
            hashes: vec![0; slots],
            indexes: vec![u64::MAX; slots],
            len: 0,
            limit: ((slots as f64) * KEY_MAP_LOAD) as usize,
        }
    }

    pub fn hash(key: &[u8]) -> u128 {
        twox_hash::XxHash3_128::oneshot(key)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `n` more keys surely fit.
    pub fn has_room(&self, n: usize) -> bool {
        self.len.saturating_add(n) <= self.limit
    }

    fn slot(&self, hash: u128) -> usize {
        let slots = self.hashes.len();
        let mut i = (hash as u64 as usize) % slots;
        loop {
            if self.indexes[i] == u64::MAX || self.hashes[i] == hash {
                return i;
            }
            i = (i + 1) % slots;
        }
    }

    /// Records `index` as the latest for `hash`. Returns false (and changes nothing) when the
    /// map is at its load limit and the key is new.
    pub fn put(&mut self, hash: u128, index: u64) -> bool {
        let i = self.slot(hash);
        if self.indexes[i] == u64::MAX {
            if self.len >= self.limit {
                return false;
            }
            self.len += 1;
            self.hashes[i] = hash;
        }
        self.indexes[i] = index;
        true
    }

    pub fn get(&self, hash: u128) -> Option<u64> {
        let i = self.slot(hash);
        (self.indexes[i] != u64::MAX).then_some(self.indexes[i])
    }
}

/// Keeps compaction's I/O under a rate: after each chunk the caller reports, sleeps as long as
/// the bytes done so far are ahead of `bytes_per_second` (time from the [`Clock`]).
pub struct Throttle {
    clock: Arc<dyn Clock>,
    bytes_per_second: Option<u64>,
    started_ms: i64,
    bytes: u64,
    /// Total time slept, for tests and logs.
    pub slept_ms: u64,
}

impl Throttle {
    pub fn new(clock: Arc<dyn Clock>, bytes_per_second: Option<u64>) -> Self {
        let started_ms = clock.now_ms();
        Throttle {
            clock,
            bytes_per_second: bytes_per_second.filter(|&r| r > 0),
            started_ms,
            bytes: 0,
            slept_ms: 0,
        }
    }

    /// How long to wait after `bytes` in `elapsed_ms` at `rate` bytes per second.
    pub fn delay_ms(bytes: u64, elapsed_ms: u64, rate: u64) -> u64 {
        let due_ms = (u128::from(bytes) * 1000 / u128::from(rate.max(1))) as u64;
        due_ms.saturating_sub(elapsed_ms)
    }

    /// Counts `bytes` of I/O and sleeps (this is a blocking thread) if ahead of the rate.
    pub fn on_io(&mut self, bytes: u64) {
        self.bytes = self.bytes.saturating_add(bytes);
        let Some(rate) = self.bytes_per_second else {
            return;
        };
        let elapsed =
            u64::try_from(self.clock.now_ms().saturating_sub(self.started_ms)).unwrap_or(0);
        let delay = Self::delay_ms(self.bytes, elapsed, rate);
        // Small debts are paid with the next chunk; a single sleep is capped so a stopped
        // broker does not wait long on it.
        if delay >= 10 {
            let delay = delay.min(1000);
            std::thread::sleep(std::time::Duration::from_millis(delay));
            self.slept_ms += delay;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_map_keeps_the_latest_index_and_stops_at_its_limit() {
        let mut m = KeyMap::with_bytes(24 * 100);
        assert!(m.is_empty());
        for i in 0..90u64 {
            assert!(m.put(KeyMap::hash(&i.to_be_bytes()), i), "key {i}");
        }
        assert!(!m.has_room(1));
        assert!(
            !m.put(KeyMap::hash(b"new"), 1),
            "a new key past the limit is refused"
        );
        assert!(
            m.put(KeyMap::hash(&5u64.to_be_bytes()), 500),
            "an update always fits"
        );
        assert_eq!(m.get(KeyMap::hash(&5u64.to_be_bytes())), Some(500));
        assert_eq!(m.get(KeyMap::hash(&6u64.to_be_bytes())), Some(6));
        assert_eq!(m.get(KeyMap::hash(b"absent")), None);
        assert_eq!(m.len(), 90);
    }

    #[test]
    fn throttle_delay_follows_the_rate() {
        assert_eq!(Throttle::delay_ms(1000, 0, 1000), 1000);
        assert_eq!(Throttle::delay_ms(1000, 400, 1000), 600);
        assert_eq!(Throttle::delay_ms(1000, 2000, 1000), 0);
        assert_eq!(Throttle::delay_ms(10 << 20, 0, 1 << 20), 10_000);
    }
}
