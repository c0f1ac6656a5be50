//! The sparse per-segment index: a pure data structure, no I/O.
//!
//! One point is recorded for the first entry of a segment and then for the first entry after
//! every `interval_bytes` of data, so a lookup is a binary search (O(log n)) followed by a
//! bounded forward scan of at most about `interval_bytes`. The same points carry the running
//! maximum event timestamp of all entries before them, which makes a time index: every entry
//! before a point with `max_timestamp_before < t` has a max timestamp below `t`.
//!
//! The index lives in memory. A sealed segment's index is also persisted beside it (see
//! [`crate::index_file`]) so opening a ledger need not read the segment; the active segment's
//! index is rebuilt from its headers on open.

/// One sparse index point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexPoint {
    /// First message index of the entry at `file_offset`.
    pub first_index: u64,
    /// Byte position of that entry in the segment file.
    pub file_offset: u64,
    /// Largest max timestamp of all entries of the segment before this point.
    pub max_timestamp_before_ms: i64,
}

/// Sparse offset and time index of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseIndex {
    interval_bytes: u64,
    bytes_since_point: u64,
    points: Vec<IndexPoint>,
    max_timestamp_ms: i64,
    /// First entry holding `max_timestamp_ms`: (first index, file offset).
    max_timestamp_entry: Option<(u64, u64)>,
}

impl SparseIndex {
    pub fn new(interval_bytes: u32) -> Self {
        SparseIndex {
            interval_bytes: u64::from(interval_bytes.max(1)),
            bytes_since_point: 0,
            points: Vec::new(),
            max_timestamp_ms: i64::MIN,
            max_timestamp_entry: None,
        }
    }

    /// Records an entry; entries must be added in file order.
    pub fn on_append(
        &mut self,
        first_index: u64,
        file_offset: u64,
        entry_len: u64,
        max_timestamp_ms: i64,
    ) {
        if self.points.is_empty() || self.bytes_since_point >= self.interval_bytes {
            self.points.push(IndexPoint {
                first_index,
                file_offset,
                max_timestamp_before_ms: self.max_timestamp_ms,
            });
            self.bytes_since_point = 0;
        }
        self.bytes_since_point += entry_len;
        if self.max_timestamp_entry.is_none() || max_timestamp_ms > self.max_timestamp_ms {
            self.max_timestamp_ms = max_timestamp_ms;
            self.max_timestamp_entry = Some((first_index, file_offset));
        }
    }

    /// The point to start scanning from to find the entry containing `index`:
    /// the last point whose first index is at or below `index` (or the first point).
    pub fn lookup_index(&self, index: u64) -> Option<IndexPoint> {
        let p = self.points.partition_point(|pt| pt.first_index <= index);
        self.points.get(p.saturating_sub(1)).copied()
    }

    /// The point to start scanning from to find the first entry whose max timestamp is at
    /// or above `timestamp_ms`. All entries before the returned point are below it.
    pub fn lookup_time(&self, timestamp_ms: i64) -> Option<IndexPoint> {
        let p = self
            .points
            .partition_point(|pt| pt.max_timestamp_before_ms < timestamp_ms);
        self.points.get(p.saturating_sub(1)).copied()
    }

    /// Largest max timestamp in the segment, `None` when empty.
    pub fn max_timestamp_ms(&self) -> Option<i64> {
        self.max_timestamp_entry.map(|_| self.max_timestamp_ms)
    }

    /// (first index, file offset) of the first entry holding the segment's max timestamp.
    pub fn max_timestamp_entry(&self) -> Option<(u64, u64)> {
        self.max_timestamp_entry
    }

    pub fn points(&self) -> &[IndexPoint] {
        &self.points
    }

    pub fn interval_bytes(&self) -> u64 {
        self.interval_bytes
    }

    /// Bytes appended since the last point (decides when the next point is taken).
    pub fn bytes_since_point(&self) -> u64 {
        self.bytes_since_point
    }

    /// An index as it was persisted: the inverse of the accessors above. `max_timestamp_entry`
    /// `None` means no entry was recorded (then `max_timestamp_ms` is ignored).
    pub fn from_parts(
        interval_bytes: u32,
        bytes_since_point: u64,
        points: Vec<IndexPoint>,
        max_timestamp_ms: i64,
        max_timestamp_entry: Option<(u64, u64)>,
    ) -> Self {
        SparseIndex {
            interval_bytes: u64::from(interval_bytes.max(1)),
            bytes_since_point,
            points,
            max_timestamp_ms: if max_timestamp_entry.is_some() {
                max_timestamp_ms
            } else {
                i64::MIN
            },
            max_timestamp_entry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (message count, encoded length, max timestamp) per entry.
    fn arb_entries() -> impl Strategy<Value = Vec<(u32, u64, i64)>> {
        proptest::collection::vec((1u32..5, 54u64..3000, -50i64..1000), 1..200)
    }

    proptest! {
        #[test]
        fn index_lookup_matches_linear_scan(entries in arb_entries(), interval in 1u32..10_000, probe in 0u64..1000) {
            let mut idx = SparseIndex::new(interval);
            let mut layout = Vec::new();
            let (mut index, mut pos) = (100u64, 0u64);
            for (count, len, ts) in &entries {
                idx.on_append(index, pos, *len, *ts);
                layout.push((index, pos, *count, *ts));
                index += u64::from(*count);
                pos += len;
            }
            let target = 100 + probe % (index - 100);
            let pt = idx.lookup_index(target).unwrap();
            // The point must be at or before the entry containing target, and scanning
            // forward from it must reach that entry.
            let containing = layout.iter().find(|(i, _, c, _)| target >= *i && target < i + u64::from(*c)).unwrap();
            prop_assert!(pt.file_offset <= containing.1);
            prop_assert!(layout.iter().any(|(i, p, _, _)| *i == pt.first_index && *p == pt.file_offset));
            // And there is no later point that would also qualify (tightness).
            prop_assert!(idx.points().iter().all(|q| q.first_index <= pt.first_index || q.first_index > target));
        }

        #[test]
        fn time_lookup_never_skips_the_answer(entries in arb_entries(), interval in 1u32..10_000, t in -60i64..1100) {
            let mut idx = SparseIndex::new(interval);
            let mut layout = Vec::new();
            let (mut index, mut pos) = (0u64, 0u64);
            for (count, len, ts) in &entries {
                idx.on_append(index, pos, *len, *ts);
                layout.push((index, pos, *ts));
                index += u64::from(*count);
                pos += len;
            }
            let expected = layout.iter().find(|(_, _, ts)| *ts >= t);
            let pt = idx.lookup_time(t).unwrap();
            if let Some(e) = expected {
                prop_assert!(pt.file_offset <= e.1, "scan start {} after answer {}", pt.file_offset, e.1);
            }
            let max = layout.iter().map(|e| e.2).max().unwrap();
            prop_assert_eq!(idx.max_timestamp_ms(), Some(max));
            let first_max = layout.iter().find(|e| e.2 == max).unwrap();
            prop_assert_eq!(idx.max_timestamp_entry(), Some((first_max.0, first_max.1)));
        }
    }

    #[test]
    fn empty_index_has_no_points() {
        let idx = SparseIndex::new(4096);
        assert!(idx.lookup_index(0).is_none());
        assert!(idx.lookup_time(0).is_none());
        assert_eq!(idx.max_timestamp_ms(), None);
    }
}
