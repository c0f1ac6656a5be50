//! The fixed-rate send schedule. Message `n` of a producer is due at `start + n / rate`,
//! whatever happened to messages before it: if the client or broker stalls the producer, the
//! later messages are late (send delay) instead of the schedule sliding (coordinated omission).

/// Due times of one producer's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSchedule {
    start_ns: u64,
    /// Rate in messages per 1000 seconds; 0 means as fast as possible.
    rate_milli: u128,
}

impl RateSchedule {
    /// `rate_per_s == 0.0` means no schedule: every message is due when it is sent.
    pub fn new(start_ns: u64, rate_per_s: f64) -> RateSchedule {
        let rate_milli = if rate_per_s.is_finite() && rate_per_s > 0.0 {
            ((rate_per_s * 1000.0).round() as u128).max(1)
        } else {
            0
        };
        RateSchedule {
            start_ns,
            rate_milli,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.rate_milli == 0
    }

    /// When message `seq` (0-based) is due; `None` without a schedule.
    pub fn intended_ns(&self, seq: u64) -> Option<u64> {
        if self.rate_milli == 0 {
            return None;
        }
        let offset = u128::from(seq) * 1_000_000_000_000 / self.rate_milli;
        Some(
            self.start_ns
                .saturating_add(offset.min(u128::from(u64::MAX)) as u64),
        )
    }

    /// Nanoseconds to wait before message `seq` is due (0 when due or overdue).
    pub fn wait_ns(&self, seq: u64, now_ns: u64) -> u64 {
        self.intended_ns(seq)
            .map_or(0, |due| due.saturating_sub(now_ns))
    }

    /// Messages due by `now_ns` (the count a producer that keeps up has sent).
    pub fn due_by(&self, now_ns: u64) -> Option<u64> {
        if self.rate_milli == 0 {
            return None;
        }
        let elapsed = u128::from(now_ns.saturating_sub(self.start_ns));
        Some((elapsed * self.rate_milli / 1_000_000_000_000 + 1).min(u128::from(u64::MAX)) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_follow_the_rate_without_drift() {
        let s = RateSchedule::new(1_000, 50_000.0);
        assert_eq!(s.intended_ns(0), Some(1_000));
        assert_eq!(s.intended_ns(1), Some(21_000));
        assert_eq!(s.intended_ns(50_000), Some(1_000_001_000));
        // A third of a message per microsecond does not accumulate rounding error.
        let s = RateSchedule::new(0, 3.0);
        assert_eq!(s.intended_ns(3_000), Some(1_000_000_000_000));
        assert_eq!(s.intended_ns(1), Some(333_333_333));
    }

    #[test]
    fn late_messages_stay_due_at_their_slot() {
        let s = RateSchedule::new(0, 1_000.0);
        // The producer stalled for 10 ms: message 2 is overdue by 8 ms, not rescheduled.
        assert_eq!(s.wait_ns(2, 10_000_000), 0);
        assert_eq!(10_000_000 - s.intended_ns(2).unwrap(), 8_000_000);
        assert_eq!(s.wait_ns(20, 10_000_000), 10_000_000);
        assert_eq!(s.due_by(10_000_000), Some(11));
        assert_eq!(s.due_by(0), Some(1));
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let s = RateSchedule::new(5, 0.0);
        assert!(s.is_unlimited());
        assert_eq!(s.intended_ns(10), None);
        assert_eq!(s.wait_ns(10, 0), 0);
        assert_eq!(s.due_by(100), None);
        assert!(RateSchedule::new(0, f64::NAN).is_unlimited());
    }

    #[test]
    fn fractional_rates() {
        let s = RateSchedule::new(0, 0.5);
        assert_eq!(s.intended_ns(1), Some(2_000_000_000));
        let s = RateSchedule::new(0, 12_500.0);
        assert_eq!(s.intended_ns(12_500), Some(1_000_000_000));
    }
}
