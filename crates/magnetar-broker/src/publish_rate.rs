//! Publish-rate limiting (Pulsar's namespace `publishRate` policy), one limiter per partition,
//! shared by both front ends: each records what a producer appended and gets back how long the
//! producer must wait. The Kafka front end sends that as `throttle_time_ms` and delays the
//! response (Kafka's quota behaviour); the Pulsar front end stops reading from the connection
//! for that long (Pulsar's behaviour: it disables auto-read on the producer's connection).
//!
//! A token bucket per dimension (messages, bytes) that holds at most one second of rate and may
//! go into debt: an append is never refused or split, the producer waits until the debt is paid.
//! Time is the broker's [`Clock`] (milliseconds), so tests drive the refill.

use std::sync::Arc;
use std::time::Duration;

use magnetar_storage::Clock;

use serde::{Deserialize, Serialize};

/// The longest single wait handed out (Kafka caps throttle times to its quota window, too).
pub const PUBLISH_DELAY_MAX: Duration = Duration::from_secs(10);

/// A publish rate: `None` in a dimension is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRate {
    #[serde(default)]
    pub messages_per_s: Option<u64>,
    #[serde(default)]
    pub bytes_per_s: Option<u64>,
}

impl PublishRate {
    pub fn is_unlimited(&self) -> bool {
        self.messages_per_s.is_none() && self.bytes_per_s.is_none()
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    rate_per_s: f64,
    /// May be negative: the debt of appends already accepted.
    tokens: f64,
}

impl Bucket {
    fn new(rate_per_s: u64) -> Self {
        let rate_per_s = rate_per_s.max(1) as f64;
        Self {
            rate_per_s,
            tokens: rate_per_s,
        }
    }

    fn refill(&mut self, elapsed: Duration) {
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate_per_s).min(self.rate_per_s);
    }

    /// Takes `amount` and returns how long until the bucket is out of debt.
    fn take(&mut self, amount: u64) -> Duration {
        self.tokens -= amount as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((-self.tokens / self.rate_per_s).min(3600.0))
        }
    }
}

/// The limiter of one partition.
pub struct PublishLimiter {
    rate: PublishRate,
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
    clock: Arc<dyn Clock>,
    /// The clock's time of the last refill (ms).
    last_ms: i64,
}

impl std::fmt::Debug for PublishLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishLimiter")
            .field("rate", &self.rate)
            .field("messages", &self.messages)
            .field("bytes", &self.bytes)
            .field("last_ms", &self.last_ms)
            .finish_non_exhaustive()
    }
}

impl PublishLimiter {
    /// An unlimited limiter on `clock`.
    pub fn unlimited(clock: Arc<dyn Clock>) -> Self {
        Self::new(PublishRate::default(), clock)
    }

    pub fn new(rate: PublishRate, clock: Arc<dyn Clock>) -> Self {
        let last_ms = clock.now_ms();
        Self {
            rate,
            messages: rate.messages_per_s.map(Bucket::new),
            bytes: rate.bytes_per_s.map(Bucket::new),
            clock,
            last_ms,
        }
    }

    pub fn rate(&self) -> PublishRate {
        self.rate
    }

    /// Changes the rate; a change starts with full buckets, an unchanged rate keeps its state.
    pub fn set_rate(&mut self, rate: PublishRate) {
        if rate != self.rate {
            *self = Self::new(rate, self.clock.clone());
        }
    }

    /// Records an append of `messages` and `bytes`; returns how long the producer should wait.
    pub fn record(&mut self, messages: u64, bytes: u64) -> Duration {
        if self.rate.is_unlimited() {
            return Duration::ZERO;
        }
        let now_ms = self.clock.now_ms();
        // A wall clock stepping back refills nothing (and never adds debt).
        let elapsed = Duration::from_millis(u64::try_from(now_ms - self.last_ms).unwrap_or(0));
        self.last_ms = self.last_ms.max(now_ms);
        let mut delay = Duration::ZERO;
        if let Some(b) = self.messages.as_mut() {
            b.refill(elapsed);
            delay = delay.max(b.take(messages));
        }
        if let Some(b) = self.bytes.as_mut() {
            b.refill(elapsed);
            delay = delay.max(b.take(bytes));
        }
        delay.min(PUBLISH_DELAY_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magnetar_storage::ManualClock;

    fn manual() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(1_000_000))
    }

    #[test]
    fn unlimited_never_waits() {
        let mut l = PublishLimiter::unlimited(manual());
        assert_eq!(l.record(1_000_000, 1 << 30), Duration::ZERO);
    }

    #[test]
    fn a_burst_above_the_rate_waits_for_its_debt() {
        let clock = manual();
        let rate = PublishRate {
            messages_per_s: Some(100),
            bytes_per_s: None,
        };
        let mut l = PublishLimiter::new(rate, clock.clone());
        // One second of burst is free.
        assert_eq!(l.record(100, 0), Duration::ZERO);
        // 50 more: half a second of debt.
        assert_eq!(l.record(50, 0), Duration::from_millis(500));
        // After half a second the debt is paid; 10 more costs 0.1 s.
        clock.advance_ms(500);
        let d = l.record(10, 0);
        assert!((d.as_secs_f64() - 0.1).abs() < 1e-6, "{d:?}");
        // A long idle period refills to one second only.
        clock.advance_ms(60_000);
        assert_eq!(l.record(100, 0), Duration::ZERO);
        assert!(l.record(1, 0) > Duration::ZERO);
    }

    #[test]
    fn the_slower_dimension_decides_and_waits_are_capped() {
        let rate = PublishRate {
            messages_per_s: Some(1000),
            bytes_per_s: Some(1000),
        };
        let mut l = PublishLimiter::new(rate, manual());
        assert_eq!(l.record(1, 3000), Duration::from_secs(2));
        assert_eq!(l.record(1, 1 << 40), PUBLISH_DELAY_MAX);
        // Setting the same rate keeps the debt; a new rate starts afresh.
        l.set_rate(rate);
        assert!(l.record(1, 1) > Duration::ZERO);
        l.set_rate(PublishRate {
            messages_per_s: Some(10),
            bytes_per_s: None,
        });
        assert_eq!(l.record(10, 1 << 40), Duration::ZERO);
    }

    /// The limiter reads the broker's clock: debt is paid as the clock moves, and a clock that
    /// steps back neither refills nor adds debt.
    #[test]
    fn debt_is_paid_on_the_clock() {
        let clock = manual();
        let rate = PublishRate {
            messages_per_s: None,
            bytes_per_s: Some(1000),
        };
        let mut l = PublishLimiter::new(rate, clock.clone());
        assert_eq!(l.record(1, 2000), Duration::from_secs(1));
        clock.advance_ms(400);
        assert_eq!(l.record(1, 0), Duration::from_millis(600));
        clock.set_ms(0);
        assert_eq!(l.record(1, 0), Duration::from_millis(600));
        clock.set_ms(1_000_000 + 1_000);
        assert_eq!(l.record(1, 0), Duration::ZERO);
    }
}
