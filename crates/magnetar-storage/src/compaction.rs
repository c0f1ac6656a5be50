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
        if let Some(delay) = self.due(bytes) {
            std::thread::sleep(delay);
        }
    }

    /// Counts `bytes` of I/O and says how long to wait if ahead of the rate (for callers on
    /// the async runtime, which must not block its thread).
    pub fn due(&mut self, bytes: u64) -> Option<std::time::Duration> {
        self.bytes = self.bytes.saturating_add(bytes);
        let rate = self.bytes_per_second?;
        let elapsed =
            u64::try_from(self.clock.now_ms().saturating_sub(self.started_ms)).unwrap_or(0);
        let delay = Self::delay_ms(self.bytes, elapsed, rate);
        // Small debts are paid with the next chunk; a single wait is capped so a stopped
        // broker does not wait long on it.
        if delay < 10 {
            return None;
        }
        let delay = delay.min(1000);
        self.slept_ms += delay;
        Some(std::time::Duration::from_millis(delay))
    }
}

/// The sizes of a ledger's cleanable part, as one pass plans it (both kinds of ledger).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PassFigures {
    /// Where the dirty part starts (the cleaned-through index, or the first sealed one).
    pub(crate) dirty_start: u64,
    /// The first index a pass must not compact (lag, last stable offset, unsealed tail).
    pub(crate) cleanable_end: u64,
    pub(crate) clean_bytes: u64,
    pub(crate) dirty_bytes: u64,
    pub(crate) oldest_dirty_publish_ms: Option<i64>,
    /// Some sealed segment starts below `cleanable_end`.
    pub(crate) any_cleanable: bool,
}

impl PassFigures {
    /// The dirty ratio (0 when nothing is cleanable).
    pub(crate) fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }
}

/// Whether pass number `pass` of a compaction runs, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PassGate {
    /// Run it; `clean_only`: nothing is dirty, the clean part is rewritten only to drop the
    /// tombstones that are due (or because an operator asked), and this is the last pass.
    Run { clean_only: bool },
    /// Stop; with the reason to report when this is the first pass.
    Stop { skipped: Option<String> },
}

/// The cleaner's decision for one pass (Kafka's): nothing dirty stops it unless tombstones are
/// due (`tombstones_due_ms` has come) or `policy.force`; the first pass also needs the dirty
/// ratio to reach the policy's or a dirty entry older than `max_compaction_lag_ms`.
pub(crate) fn pass_gate(
    pass: u32,
    figures: &PassFigures,
    policy: &CompactionPolicy,
    tombstones_due_ms: i64,
    now_ms: i64,
) -> PassGate {
    let nothing_dirty = figures.dirty_start >= figures.cleanable_end || figures.dirty_bytes == 0;
    let clean_only = nothing_dirty
        && pass == 0
        && (policy.force || tombstones_due_ms <= now_ms)
        && figures.any_cleanable;
    if nothing_dirty && !clean_only {
        return PassGate::Stop {
            skipped: (pass == 0).then(|| "nothing to compact".to_string()),
        };
    }
    if pass == 0 && !policy.force && !clean_only {
        let ratio = figures.dirty_ratio();
        let max_lag = i64::try_from(policy.max_compaction_lag_ms).unwrap_or(i64::MAX);
        let overdue = figures
            .oldest_dirty_publish_ms
            .is_some_and(|t| now_ms.saturating_sub(t) > max_lag);
        if ratio < policy.min_cleanable_dirty_ratio && !overdue {
            return PassGate::Stop {
                skipped: Some(format!(
                    "dirty ratio {ratio:.3} is below {}",
                    policy.min_cleanable_dirty_ratio
                )),
            };
        }
    }
    PassGate::Run { clean_only }
}

/// What [`map_entry`] did with one dirty entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MapStep {
    /// Its keys are in the map (or it has none to map: aborted, control, kept whole).
    Mapped,
    /// It did not decode: kept whole, counted.
    Undecodable,
    /// The map has no room for its keys: the pass's coverage ends at this entry.
    Full,
    /// Not even an empty map holds its keys: the pass cannot make progress.
    TooLarge(String),
}

/// Adds the keys of one dirty entry to `map` (the first phase of a pass, both kinds of ledger):
/// entries of aborted transactions and entries the codec keeps whole add nothing.
pub(crate) fn map_entry(
    h: &EntryHeader,
    payload: &Bytes,
    codec: &dyn CompactionCodec,
    aborted: &AbortedLookup,
    map: &mut KeyMap,
    dedupe_buffer_bytes: u64,
) -> MapStep {
    if aborted.is_aborted(h) {
        return MapStep::Mapped;
    }
    let records = match codec.records(h, payload) {
        Ok(EntryRecords::Records(r)) => r,
        Ok(EntryRecords::KeepWhole) => return MapStep::Mapped,
        Err(_) => return MapStep::Undecodable,
    };
    if !map.has_room(records.len()) {
        if map.is_empty() {
            return MapStep::TooLarge(format!(
                "the key map ({dedupe_buffer_bytes} bytes) cannot hold the {} records of entry {}",
                records.len(),
                h.first_index
            ));
        }
        return MapStep::Full;
    }
    for r in &records {
        if let Some(key) = &r.key {
            // Cannot fail: room was checked for every record.
            map.put(KeyMap::hash(key), r.index);
        }
    }
    MapStep::Mapped
}

/// The payload to write for entry `h` below the coverage end, `None` to drop it (the second
/// phase of a pass, both kinds of ledger). A record stays when the map holds no newer index for
/// its key, unless it is a tombstone published before `delete_horizon_ms`; an entry of an
/// aborted transaction keeps none; an entry left with no record is dropped unless it is its
/// producer's last (`producer_last`), which stays as an empty batch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn keep_records(
    h: &EntryHeader,
    payload: &Bytes,
    codec: &dyn CompactionCodec,
    map: &KeyMap,
    aborted: bool,
    delete_horizon_ms: i64,
    delete_retention_ms: u64,
    producer_last: bool,
    out: &mut CompactionOutcome,
) -> Result<Option<Bytes>, String> {
    let records = match codec.records(h, payload) {
        Ok(EntryRecords::Records(r)) => r,
        Ok(EntryRecords::KeepWhole) | Err(_) => return Ok(Some(payload.clone())),
    };
    if aborted {
        out.aborted_entries_removed += 1;
    }
    let keep: Vec<bool> = records
        .iter()
        .map(|r| {
            if aborted {
                return false;
            }
            let Some(key) = &r.key else { return true };
            let latest = map
                .get(KeyMap::hash(key))
                .is_none_or(|latest| latest <= r.index);
            if !latest {
                return false;
            }
            if r.tombstone {
                if h.publish_time_ms <= delete_horizon_ms {
                    out.tombstones_removed += 1;
                    return false;
                }
                let due = h
                    .publish_time_ms
                    .saturating_add(i64::try_from(delete_retention_ms).unwrap_or(i64::MAX));
                out.tombstones_due_ms = Some(out.tombstones_due_ms.map_or(due, |d| d.min(due)));
            }
            true
        })
        .collect();
    let kept = keep.iter().filter(|k| **k).count();
    out.records_removed += (keep.len() - kept) as u64;
    if kept == keep.len() {
        return Ok(Some(payload.clone()));
    }
    if kept == 0 && !producer_last {
        return Ok(None);
    }
    if kept == 0 {
        out.empty_batches_kept += 1;
    }
    codec.retain(h, payload, &keep).map(Some)
}

/// The time before which a tombstone is removable under `policy` at `now_ms`.
pub(crate) fn delete_horizon_ms(now_ms: i64, policy: &CompactionPolicy) -> i64 {
    now_ms.saturating_sub(i64::try_from(policy.delete_retention_ms).unwrap_or(i64::MAX))
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
