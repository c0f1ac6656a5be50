//! Latency histograms (HdrHistogram, microseconds, 3 significant digits: sub-millisecond values
//! keep their resolution, unlike OMB's millisecond end-to-end figures) and their summaries.

use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest value a histogram keeps (one hour); larger values are clamped to it.
pub const HISTOGRAM_MAX_US: u64 = 3_600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("valid histogram bounds")
}

/// A histogram that several threads record into; the reporter takes it each interval.
#[derive(Debug)]
pub struct SharedHistogram(Mutex<Histogram<u64>>);

impl Default for SharedHistogram {
    fn default() -> Self {
        SharedHistogram(Mutex::new(new_histogram()))
    }
}

impl SharedHistogram {
    pub fn record_ns(&self, value_ns: u64) {
        let us = (value_ns / 1_000).clamp(1, HISTOGRAM_MAX_US);
        let mut h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        h.saturating_record(us);
    }

    /// The values recorded since the last call; the shared histogram starts empty again.
    pub fn take(&self) -> Histogram<u64> {
        let mut h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let out = h.clone();
        h.reset();
        out
    }
}

/// Summary of one histogram in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub max_ms: f64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            mean_ms: h.mean() / 1_000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p75_ms: ms(h.value_at_quantile(0.75)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p99_9_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Percentiles plotted in the report's distribution chart.
pub const DISTRIBUTION_PERCENTILES: &[f64] = &[
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
];

/// `(percentile, milliseconds)` pairs for the distribution chart; empty for an empty histogram.
pub fn distribution(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    DISTRIBUTION_PERCENTILES
        .iter()
        .map(|&p| {
            let value = if p >= 100.0 {
                h.max()
            } else {
                h.value_at_quantile(p / 100.0)
            };
            (p, ms(value))
        })
        .collect()
}

/// Whole-run histograms built from the intervals of the measured phases.
#[derive(Debug, Clone)]
pub struct Aggregate {
    pub publish_latency: Histogram<u64>,
    pub send_delay: Histogram<u64>,
    pub e2e_latency: Histogram<u64>,
    pub e2e_from_intended: Histogram<u64>,
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate {
            publish_latency: new_histogram(),
            send_delay: new_histogram(),
            e2e_latency: new_histogram(),
            e2e_from_intended: new_histogram(),
        }
    }
}

/// Adds one interval's histogram into a whole-run one (same bounds, so `add` cannot fail).
pub fn merge(into: &mut Histogram<u64>, interval: &Histogram<u64>) {
    into.add(interval).expect("histograms share bounds");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let shared = SharedHistogram::default();
        for us in 1..=10_000u64 {
            shared.record_ns(us * 1_000);
        }
        let h = shared.take();
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 10_000);
        assert!((p.p50_ms - 5.0).abs() < 0.01, "{p:?}");
        assert!((p.p99_ms - 9.9).abs() < 0.01, "{p:?}");
        assert!((p.p99_9_ms - 9.99).abs() < 0.01, "{p:?}");
        assert!((p.max_ms - 10.0).abs() < 0.01, "{p:?}");
        assert!(p.p50_ms <= p.p75_ms && p.p75_ms <= p.p95_ms && p.p95_ms <= p.p99_ms);
        assert!(p.p99_ms <= p.p99_9_ms && p.p99_9_ms <= p.max_ms);
        // take() empties the shared histogram.
        assert_eq!(Percentiles::of(&shared.take()), Percentiles::default());
    }

    #[test]
    fn merging_intervals_equals_recording_everything_once() {
        let shared = SharedHistogram::default();
        let mut whole = new_histogram();
        let mut merged = new_histogram();
        let mut rng = crate::payload::SplitMix64::new(42);
        for _interval in 0..10 {
            for _ in 0..1_000 {
                let ns = rng.next_u64() % 50_000_000 + 1_000;
                shared.record_ns(ns);
                whole.saturating_record((ns / 1_000).max(1));
            }
            merge(&mut merged, &shared.take());
        }
        assert_eq!(Percentiles::of(&merged), Percentiles::of(&whole));
        assert_eq!(merged.len(), 10_000);
    }

    #[test]
    fn sub_microsecond_and_huge_values_are_clamped() {
        let shared = SharedHistogram::default();
        shared.record_ns(10);
        shared.record_ns(u64::MAX);
        let p = Percentiles::of(&shared.take());
        assert_eq!(p.count, 2);
        assert_eq!(p.p50_ms, 0.001);
        assert!(p.max_ms >= 3_600_000.0 * 0.999);
    }

    #[test]
    fn distribution_is_monotonic() {
        let mut h = new_histogram();
        for v in [5u64, 50, 500, 5_000, 50_000] {
            h.saturating_record(v);
        }
        let d = distribution(&h);
        assert_eq!(d.len(), DISTRIBUTION_PERCENTILES.len());
        assert!(d.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!((d.last().unwrap().1 - 50.0).abs() < 0.05);
        assert!(distribution(&new_histogram()).is_empty());
    }
}
