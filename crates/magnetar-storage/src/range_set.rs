//! A set of `u64` indexes stored as disjoint half-open ranges; pure, no I/O.

use std::collections::BTreeMap;
use std::ops::Range;

/// Disjoint, non-adjacent half-open ranges, merged on insert.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "Vec<(u64, u64)>", into = "Vec<(u64, u64)>")]
pub struct RangeSet {
    /// start -> end (exclusive)
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `range`, merging with overlapping or adjacent ranges. Empty ranges are ignored.
    pub fn insert(&mut self, range: Range<u64>) {
        if range.start >= range.end {
            return;
        }
        let (mut start, mut end) = (range.start, range.end);
        // A range starting at or before `start` may overlap or touch.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
            }
        }
        // Absorb every range starting inside [start, end].
        let absorbed: Vec<(u64, u64)> = self
            .ranges
            .range(start..=end)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in absorbed {
            self.ranges.remove(&s);
            end = end.max(e);
        }
        self.ranges.insert(start, end);
    }

    pub fn contains(&self, index: u64) -> bool {
        self.ranges
            .range(..=index)
            .next_back()
            .is_some_and(|(_, &e)| index < e)
    }

    /// Drops everything below `index`.
    pub fn remove_below(&mut self, index: u64) {
        let below: Vec<(u64, u64)> = self.ranges.range(..index).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in below {
            self.ranges.remove(&s);
            if e > index {
                self.ranges.insert(index, e);
            }
        }
    }

    /// Moves a mark (everything below it is in the set, implicitly) forward over any range
    /// touching it, drops everything below the new mark, and returns the new mark.
    pub fn advance_mark(&mut self, mark: u64) -> u64 {
        self.remove_below(mark);
        match self.ranges.first_key_value() {
            Some((&s, &e)) if s <= mark => {
                self.ranges.remove(&s);
                e
            }
            _ => mark,
        }
    }

    /// How many indexes of `within` are in the set.
    pub fn count_in(&self, within: Range<u64>) -> u64 {
        let mut n = 0;
        let first = self
            .ranges
            .range(..=within.start)
            .next_back()
            .map(|(&s, _)| s)
            .unwrap_or(within.start);
        for (&s, &e) in self.ranges.range(first..within.end) {
            let (a, b) = (s.max(within.start), e.min(within.end));
            if a < b {
                n += b - a;
            }
        }
        n
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn ranges(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.ranges.iter().map(|(&s, &e)| s..e)
    }

    pub fn clear(&mut self) {
        self.ranges.clear();
    }
}

impl From<Vec<(u64, u64)>> for RangeSet {
    fn from(v: Vec<(u64, u64)>) -> Self {
        let mut set = RangeSet::new();
        for (s, e) in v {
            set.insert(s..e);
        }
        set
    }
}

impl From<RangeSet> for Vec<(u64, u64)> {
    fn from(set: RangeSet) -> Self {
        set.ranges.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn model_of(ops: &[(u64, u64)]) -> BTreeSet<u64> {
        ops.iter().flat_map(|&(s, l)| s..s + l).collect()
    }

    proptest! {
        #[test]
        fn matches_a_set_model(ops in proptest::collection::vec((0u64..200, 0u64..20), 0..40)) {
            let mut set = RangeSet::new();
            for &(s, l) in &ops {
                set.insert(s..s + l);
            }
            let model = model_of(&ops);
            for i in 0..230 {
                prop_assert_eq!(set.contains(i), model.contains(&i), "index {}", i);
            }
            // Normal form: sorted, disjoint, non-adjacent, non-empty.
            let rs: Vec<_> = set.ranges().collect();
            for w in rs.windows(2) {
                prop_assert!(w[0].end < w[1].start);
            }
            prop_assert!(rs.iter().all(|r| r.start < r.end));
            prop_assert_eq!(set.count_in(0..230), model.len() as u64);
            prop_assert_eq!(set.count_in(50..120), model.range(50..120).count() as u64);
            // Serde round trip.
            let json = serde_json::to_string(&set).unwrap();
            let back: RangeSet = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, set);
        }

        #[test]
        fn advance_mark_moves_over_contiguous(ops in proptest::collection::vec((0u64..100, 1u64..10), 0..30), mark in 0u64..60) {
            let mut set = RangeSet::new();
            for &(s, l) in &ops {
                set.insert(s..s + l);
            }
            let mut model = model_of(&ops);
            let new_mark = set.advance_mark(mark);
            let mut expected = mark;
            while model.contains(&expected) {
                expected += 1;
            }
            prop_assert_eq!(new_mark, expected);
            model.retain(|&i| i >= new_mark);
            for i in 0..120 {
                prop_assert_eq!(set.contains(i), model.contains(&i));
            }
        }
    }

    #[test]
    fn merges_adjacent() {
        let mut set = RangeSet::new();
        set.insert(5..7);
        set.insert(7..9);
        set.insert(1..3);
        assert_eq!(set.ranges().collect::<Vec<_>>(), vec![1..3, 5..9]);
        set.insert(3..5);
        assert_eq!(set.ranges().collect::<Vec<_>>(), vec![1..9]);
    }
}
