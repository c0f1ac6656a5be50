//! A fixed-bucket latency histogram of plain atomics, cheap enough for hot paths (one bucket
//! search over a short array, three relaxed atomic adds, no lock, no allocation). Storage
//! keeps its fsync latencies in one; the metrics exporter reads [`LatencyHistogram::snapshot`]
//! at scrape time, so this crate needs no metrics library.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets in microseconds (Prometheus `le`), from 50 µs to 30 s; one more
/// bucket (+Inf) takes the rest. Finer between 0.5 and 25 ms, where fsync and produce
/// latencies sit, so a p99 read from the buckets (e.g. by `magnetar-perf --broker-metrics`)
/// is within ~30 % there.
pub const LATENCY_BUCKETS_US: [u64; 27] = [
    50, 100, 250, 500, 750, 1_000, 1_500, 2_000, 2_500, 3_000, 4_000, 5_000, 7_500, 10_000, 15_000,
    20_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
    30_000_000, 60_000_000,
];

const BUCKETS: usize = LATENCY_BUCKETS_US.len() + 1;

/// Durations observed into fixed buckets; counts are per bucket (not cumulative).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

/// What a [`LatencyHistogram`] held when read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Count per bucket, aligned with [`LATENCY_BUCKETS_US`] plus the last (+Inf) bucket.
    pub buckets: Vec<u64>,
    pub sum_us: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Adds `other` bucket by bucket (to sum the histograms of many ledgers).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_us += other.sum_us;
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.observe_us(us);
    }

    pub fn observe_us(&self, us: u64) {
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets() {
        let h = LatencyHistogram::new();
        h.observe_us(0);
        h.observe_us(50);
        h.observe_us(51);
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(3600));
        let s = h.snapshot();
        assert_eq!(s.buckets.len(), LATENCY_BUCKETS_US.len() + 1);
        assert_eq!(s.buckets[0], 2, "0 and 50 µs are <= 50");
        assert_eq!(s.buckets[1], 1, "51 µs is <= 100");
        assert_eq!(s.buckets[9], 1, "3 ms is <= 3 ms");
        assert_eq!(*s.buckets.last().unwrap(), 1, "an hour is +Inf");
        assert_eq!(s.count(), 5);
        assert_eq!(s.sum_us, 50 + 51 + 3_000 + 3_600_000_000);
        let mut total = HistogramSnapshot::default();
        total.merge(&s);
        total.merge(&s);
        assert_eq!(total.count(), 10);
        assert_eq!(total.sum_us, 2 * s.sum_us);
    }
}
