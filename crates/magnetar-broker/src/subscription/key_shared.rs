//! Key_Shared dispatch: the sticky key of a message (its ordering key, else its partition key,
//! else Pulsar's `NONE_KEY`) is hashed with Murmur3 (32-bit, seed 0, sign bit cleared, as
//! Pulsar's `Murmur3_32Hash`) and taken modulo [`HASH_RANGE_SIZE`]; the slot's owner gets it.
//! Two modes, as Pulsar's, one per subscription (set by its first consumer):
//!
//! - **AUTO_SPLIT** ([`HashRanges`]): each consumer owns one contiguous slice, split and merged
//!   as consumers come and go (below).
//! - **STICKY** ([`StickyRanges`], Pulsar's `HashRangeExclusiveStickyKeyConsumerSelector`): each
//!   consumer declares its own inclusive ranges; a range overlapping another consumer's is
//!   refused, and a slot no consumer declared is not delivered until one does.
//!
//! Slices, as Pulsar's `HashRangeAutoSplitStickyKeyConsumerSelector`: the first consumer owns the
//! whole range; each consumer that joins takes the lower half of the largest slice; a consumer
//! that leaves gives its slice to the consumer of the slice above it (for the top slice, the
//! consumer below takes over the top). A slice is stored by its inclusive upper bound and a hash
//! belongs to the first slice whose bound is at or above it.

use std::collections::{BTreeMap, HashMap};

/// Pulsar's `DEFAULT_RANGE_SIZE` (2 << 15).
pub const HASH_RANGE_SIZE: u32 = 65_536;

/// The sticky key Pulsar uses for messages without a key.
pub const NONE_KEY: &[u8] = b"NONE_KEY";

/// Murmur3 x86 32-bit with seed 0, as Pulsar's `Murmur3_32Hash.makeHash0`.
pub fn murmur3_32(bytes: &[u8]) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix_k1 = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut h1: u32 = 0;
    let mut chunks = bytes.chunks_exact(4);
    for chunk in &mut chunks {
        let k1 = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        h1 ^= mix_k1(k1);
        h1 = h1.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let mut k1: u32 = 0;
    for (i, b) in chunks.remainder().iter().enumerate() {
        k1 ^= u32::from(*b) << (i * 8);
    }
    h1 ^= mix_k1(k1);
    h1 ^= bytes.len() as u32;
    h1 ^= h1 >> 16;
    h1 = h1.wrapping_mul(0x85eb_ca6b);
    h1 ^= h1 >> 13;
    h1 = h1.wrapping_mul(0xc2b2_ae35);
    h1 ^= h1 >> 16;
    h1
}

/// The slot of a sticky key in `0..HASH_RANGE_SIZE`, as Pulsar computes it
/// (`(makeHash0(key) & Integer.MAX_VALUE) % rangeSize`).
pub fn sticky_slot(key: &[u8]) -> u32 {
    (murmur3_32(key) & 0x7fff_ffff) % HASH_RANGE_SIZE
}

/// Consumers' slices of the hash range, generic over the consumer key.
#[derive(Debug, Clone)]
pub struct HashRanges<K> {
    /// Inclusive upper bound of a slice -> its consumer.
    by_end: BTreeMap<u32, K>,
    end_of: HashMap<K, u32>,
}

impl<K> Default for HashRanges<K> {
    fn default() -> Self {
        Self {
            by_end: BTreeMap::new(),
            end_of: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + std::hash::Hash> HashRanges<K> {
    /// Gives a new consumer a slice; `Err` when no slice can be split further (65 536
    /// consumers).
    pub fn add(&mut self, consumer: K) -> Result<(), String> {
        if self.end_of.contains_key(&consumer) {
            return Ok(());
        }
        if self.by_end.is_empty() {
            self.by_end.insert(HASH_RANGE_SIZE, consumer);
            self.end_of.insert(consumer, HASH_RANGE_SIZE);
            return Ok(());
        }
        // The largest slice (the first one found on ties, as Pulsar).
        let mut lower = 0;
        let mut best = (0, HASH_RANGE_SIZE, 0);
        for end in self.by_end.keys() {
            if end - lower > best.0 {
                best = (end - lower, *end, lower);
            }
            lower = *end;
        }
        let (size, end, lower) = best;
        if size <= 1 {
            return Err(format!(
                "no hash range left to split among {} consumers",
                self.by_end.len()
            ));
        }
        let split = end - (end - lower) / 2;
        self.by_end.insert(split, consumer);
        self.end_of.insert(consumer, split);
        Ok(())
    }

    /// Takes a consumer's slice away and hands it to a neighbour.
    pub fn remove(&mut self, consumer: K) {
        let Some(end) = self.end_of.remove(&consumer) else {
            return;
        };
        self.by_end.remove(&end);
        if end == HASH_RANGE_SIZE {
            // The top slice must stay covered: the consumer below moves its bound to the top.
            if let Some((&below, &owner)) = self.by_end.iter().next_back() {
                self.by_end.remove(&below);
                self.by_end.insert(HASH_RANGE_SIZE, owner);
                self.end_of.insert(owner, HASH_RANGE_SIZE);
            }
        }
    }

    /// The consumer owning `slot` (`< HASH_RANGE_SIZE`), if any consumer is registered.
    pub fn select(&self, slot: u32) -> Option<K> {
        self.by_end.range(slot..).next().map(|(_, k)| *k)
    }

    /// `(start, end)` inclusive-exclusive slices per consumer, in hash order (for tests and stats).
    pub fn slices(&self) -> Vec<(u32, u32, K)> {
        let mut lower = 0;
        let mut out = Vec::with_capacity(self.by_end.len());
        for (end, k) in &self.by_end {
            out.push((lower, *end, *k));
            lower = *end;
        }
        out
    }

    pub fn len(&self) -> usize {
        self.by_end.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_end.is_empty()
    }
}

/// How a Key_Shared consumer takes its part of the hash range.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KeySharedMode {
    /// Given a slice of the range (split from the largest).
    #[default]
    AutoSplit,
    /// Declares its own inclusive `(start, end)` ranges within `0..HASH_RANGE_SIZE`.
    Sticky(Vec<(u32, u32)>),
}

/// Consumers' declared ranges (STICKY mode).
#[derive(Debug, Clone)]
pub struct StickyRanges<K> {
    /// Start of a range -> (its inclusive end, its consumer).
    by_start: BTreeMap<u32, (u32, K)>,
    starts_of: HashMap<K, Vec<u32>>,
}

impl<K> Default for StickyRanges<K> {
    fn default() -> Self {
        Self {
            by_start: BTreeMap::new(),
            starts_of: HashMap::new(),
        }
    }
}

/// Most ranges one consumer may declare.
pub const STICKY_RANGES_PER_CONSUMER_MAX: usize = 1_024;

impl<K: Copy + Eq + std::hash::Hash + std::fmt::Debug> StickyRanges<K> {
    /// Registers `consumer`'s ranges; refused (nothing registered) when a range is empty,
    /// reversed, outside `0..HASH_RANGE_SIZE`, or overlaps one of its own or another consumer's.
    pub fn add(&mut self, consumer: K, ranges: &[(u32, u32)]) -> Result<(), String> {
        if ranges.is_empty() {
            return Err("Key_Shared STICKY needs at least one hash range".into());
        }
        if ranges.len() > STICKY_RANGES_PER_CONSUMER_MAX {
            return Err(format!(
                "{} hash ranges; at most {STICKY_RANGES_PER_CONSUMER_MAX} per consumer",
                ranges.len()
            ));
        }
        if self.starts_of.contains_key(&consumer) {
            return Err(format!("consumer {consumer:?} already has hash ranges"));
        }
        let mut sorted = ranges.to_vec();
        sorted.sort_unstable();
        for (i, &(start, end)) in sorted.iter().enumerate() {
            if start > end || end >= HASH_RANGE_SIZE {
                return Err(format!(
                    "invalid hash range [{start}, {end}]: ranges are within [0, {}] and start <= end",
                    HASH_RANGE_SIZE - 1
                ));
            }
            if i > 0 && sorted[i - 1].1 >= start {
                return Err(format!(
                    "hash ranges [{}, {}] and [{start}, {end}] overlap",
                    sorted[i - 1].0,
                    sorted[i - 1].1
                ));
            }
            if let Some((other_start, (other_end, other))) = self.overlapping(start, end) {
                return Err(format!(
                    "range conflict: [{start}, {end}] overlaps [{other_start}, {other_end}] of consumer {other:?}"
                ));
            }
        }
        for &(start, end) in &sorted {
            self.by_start.insert(start, (end, consumer));
        }
        self.starts_of
            .insert(consumer, sorted.iter().map(|r| r.0).collect());
        Ok(())
    }

    fn overlapping(&self, start: u32, end: u32) -> Option<(u32, (u32, K))> {
        // The range starting at or before `start` may reach it; any starting within overlaps.
        if let Some((s, (e, k))) = self.by_start.range(..=start).next_back() {
            if *e >= start {
                return Some((*s, (*e, *k)));
            }
        }
        self.by_start
            .range(start..=end)
            .next()
            .map(|(s, (e, k))| (*s, (*e, *k)))
    }

    pub fn remove(&mut self, consumer: K) {
        for start in self.starts_of.remove(&consumer).unwrap_or_default() {
            self.by_start.remove(&start);
        }
    }

    /// The consumer whose range holds `slot`, if one declared it.
    pub fn select(&self, slot: u32) -> Option<K> {
        self.by_start
            .range(..=slot)
            .next_back()
            .filter(|(_, (end, _))| slot <= *end)
            .map(|(_, (_, k))| *k)
    }

    pub fn is_empty(&self) -> bool {
        self.starts_of.is_empty()
    }
}

/// A Key_Shared subscription's selector in its mode (the first consumer's).
#[derive(Debug, Clone)]
pub enum KeySelector<K> {
    AutoSplit(HashRanges<K>),
    Sticky(StickyRanges<K>),
}

impl<K> Default for KeySelector<K> {
    fn default() -> Self {
        KeySelector::AutoSplit(HashRanges::default())
    }
}

impl<K: Copy + Eq + std::hash::Hash + std::fmt::Debug> KeySelector<K> {
    fn is_empty(&self) -> bool {
        match self {
            KeySelector::AutoSplit(r) => r.is_empty(),
            KeySelector::Sticky(r) => r.is_empty(),
        }
    }

    /// Adds a consumer in `mode`; the first consumer sets the subscription's mode and a
    /// consumer in the other mode is refused, as in Pulsar.
    pub fn add(&mut self, consumer: K, mode: &KeySharedMode) -> Result<(), String> {
        if self.is_empty() {
            *self = match mode {
                KeySharedMode::AutoSplit => KeySelector::AutoSplit(HashRanges::default()),
                KeySharedMode::Sticky(_) => KeySelector::Sticky(StickyRanges::default()),
            };
        }
        match (self, mode) {
            (KeySelector::AutoSplit(r), KeySharedMode::AutoSplit) => r.add(consumer),
            (KeySelector::Sticky(r), KeySharedMode::Sticky(ranges)) => r.add(consumer, ranges),
            (KeySelector::AutoSplit(_), KeySharedMode::Sticky(_)) => Err(
                "the Key_Shared subscription is in AUTO_SPLIT mode; a STICKY consumer cannot join"
                    .into(),
            ),
            (KeySelector::Sticky(_), KeySharedMode::AutoSplit) => Err(
                "the Key_Shared subscription is in STICKY mode; an AUTO_SPLIT consumer cannot join"
                    .into(),
            ),
        }
    }

    pub fn remove(&mut self, consumer: K) {
        match self {
            KeySelector::AutoSplit(r) => r.remove(consumer),
            KeySelector::Sticky(r) => r.remove(consumer),
        }
    }

    /// The consumer owning `slot`; `None` with no consumers or (STICKY) when no consumer
    /// declared the slot.
    pub fn select(&self, slot: u32) -> Option<K> {
        match self {
            KeySelector::AutoSplit(r) => r.select(slot),
            KeySelector::Sticky(r) => r.select(slot),
        }
    }

    /// Whether a slot can be left without an owner while consumers are attached (STICKY).
    pub fn may_leave_slots_uncovered(&self) -> bool {
        matches!(self, KeySelector::Sticky(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_ranges_are_exclusive_and_select_only_declared_slots() {
        let mut s = KeySelector::default();
        s.add(1, &KeySharedMode::Sticky(vec![(0, 99), (200, 299)]))
            .unwrap();
        assert!(s.add(2, &KeySharedMode::AutoSplit).is_err());
        let conflict = s.add(2, &KeySharedMode::Sticky(vec![(250, 400)]));
        assert!(conflict.unwrap_err().contains("range conflict"));
        let conflict = s.add(2, &KeySharedMode::Sticky(vec![(100, 199), (50, 60)]));
        assert!(conflict.is_err());
        // Nothing of a refused consumer stays registered.
        assert_eq!(s.select(150), None);
        assert!(s.add(2, &KeySharedMode::Sticky(vec![])).is_err());
        assert!(s.add(2, &KeySharedMode::Sticky(vec![(10, 5)])).is_err());
        assert!(s
            .add(2, &KeySharedMode::Sticky(vec![(0, HASH_RANGE_SIZE)]))
            .is_err());
        assert!(s
            .add(2, &KeySharedMode::Sticky(vec![(100, 120), (110, 130)]))
            .is_err());
        s.add(2, &KeySharedMode::Sticky(vec![(100, 199)])).unwrap();
        assert_eq!(s.select(0), Some(1));
        assert_eq!(s.select(99), Some(1));
        assert_eq!(s.select(100), Some(2));
        assert_eq!(s.select(199), Some(2));
        assert_eq!(s.select(299), Some(1));
        assert_eq!(s.select(300), None);
        assert_eq!(s.select(HASH_RANGE_SIZE - 1), None);
        s.remove(1);
        assert_eq!(s.select(0), None);
        assert_eq!(s.select(150), Some(2));
        s.remove(2);
        // Empty again: the next consumer sets the mode.
        s.add(3, &KeySharedMode::AutoSplit).unwrap();
        assert_eq!(s.select(42), Some(3));
    }

    #[test]
    fn murmur3_matches_reference_vectors() {
        // Vectors of MurmurHash3_x86_32 with seed 0 (Appleby's reference implementation).
        assert_eq!(murmur3_32(b""), 0);
        assert_eq!(murmur3_32(b"hello"), 0x248b_fa47);
        assert_eq!(murmur3_32(b"hello, world"), 0x149b_bb7f);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
        assert!(sticky_slot(b"key-1") < HASH_RANGE_SIZE);
    }

    #[test]
    fn slices_split_the_largest_and_merge_on_leave() {
        let mut r = HashRanges::default();
        r.add(1).unwrap();
        assert_eq!(r.slices(), vec![(0, 65_536, 1)]);
        r.add(2).unwrap();
        assert_eq!(r.slices(), vec![(0, 32_768, 2), (32_768, 65_536, 1)]);
        r.add(3).unwrap();
        assert_eq!(
            r.slices(),
            vec![(0, 16_384, 3), (16_384, 32_768, 2), (32_768, 65_536, 1)]
        );
        assert_eq!(r.select(0), Some(3));
        assert_eq!(r.select(16_384), Some(3));
        assert_eq!(r.select(16_385), Some(2));
        assert_eq!(r.select(65_535), Some(1));
        // The top consumer leaves: the one below takes the top.
        r.remove(1);
        assert_eq!(r.slices(), vec![(0, 16_384, 3), (16_384, 65_536, 2)]);
        // A middle/bottom consumer leaves: the slice above absorbs it.
        r.remove(3);
        assert_eq!(r.slices(), vec![(0, 65_536, 2)]);
        r.remove(2);
        assert!(r.is_empty());
        assert_eq!(r.select(5), None);
    }

    #[test]
    fn every_slot_has_exactly_one_owner() {
        let mut r = HashRanges::default();
        for c in 0..7u32 {
            r.add(c).unwrap();
        }
        r.remove(3);
        r.remove(0);
        let slices = r.slices();
        assert_eq!(slices.first().map(|s| s.0), Some(0));
        assert_eq!(slices.last().map(|s| s.1), Some(HASH_RANGE_SIZE));
        for w in slices.windows(2) {
            assert_eq!(w[0].1, w[1].0);
        }
        for slot in (0..HASH_RANGE_SIZE).step_by(97) {
            assert!(r.select(slot).is_some());
        }
    }
}
