//! Connections a front end closed or refused on its own, counted by reason, and the rate limit on
//! the warnings they log.
//!
//! Why: every bad or abandoned connection used to log one WARN line, so a remote client could fill
//! the log at will (30,000 lines in one probe). Now the first [`WARNINGS_PER_INTERVAL`] warnings
//! of an interval are logged as before; later ones in the same interval are only counted, and the
//! first warning after the interval ends is preceded by one summary line with the suppressed
//! counts by reason. The counters behind `magnetar_server_connections_closed_total` count every
//! close, logged or not.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a front end closed (or refused) a connection. One label value each in
/// `magnetar_server_connections_closed_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Over the listener's connection limit at accept.
    ConnectionLimit,
    /// No request for the idle timeout (Kafka `connections_max_idle_ms`, HTTP `idle_timeout_ms`).
    IdleTimeout,
    /// A frame (or HTTP headers) started but not completed within its timeout.
    RequestReadTimeout,
    /// Pulsar: CONNECT (with authentication) not completed within `connect_timeout_ms`.
    ConnectTimeout,
    /// Pulsar: no answer to a keep-alive PING.
    KeepaliveTimeout,
    /// A frame over the size limit, or one that does not decode.
    BadFrame,
    /// A request of an API or version not served.
    UnsupportedRequest,
    /// A request not allowed in the connection's state (before authentication, before CONNECT,
    /// after the session expired, a failed authentication).
    NotAllowed,
    /// The TLS handshake failed.
    TlsHandshake,
}

impl CloseReason {
    pub const ALL: [CloseReason; 9] = [
        CloseReason::ConnectionLimit,
        CloseReason::IdleTimeout,
        CloseReason::RequestReadTimeout,
        CloseReason::ConnectTimeout,
        CloseReason::KeepaliveTimeout,
        CloseReason::BadFrame,
        CloseReason::UnsupportedRequest,
        CloseReason::NotAllowed,
        CloseReason::TlsHandshake,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::ConnectionLimit => "connection_limit",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::RequestReadTimeout => "request_read_timeout",
            CloseReason::ConnectTimeout => "connect_timeout",
            CloseReason::KeepaliveTimeout => "keepalive_timeout",
            CloseReason::BadFrame => "bad_frame",
            CloseReason::UnsupportedRequest => "unsupported_request",
            CloseReason::NotAllowed => "not_allowed",
            CloseReason::TlsHandshake => "tls_handshake",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Warnings logged per interval before the rest are only counted.
pub const WARNINGS_PER_INTERVAL: u32 = 20;
/// The length of a log interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// What the caller does with one warning.
#[derive(Debug, PartialEq, Eq)]
pub struct Admit {
    /// Log this warning.
    pub log: bool,
    /// Log this summary first: warnings suppressed in the interval that ended, by reason.
    pub summary: Option<Vec<(CloseReason, u64)>>,
}

/// The rate limiter, sans-io: time is passed in, so tests drive it.
#[derive(Debug)]
pub struct LogLimiter {
    per_interval: u32,
    interval: Duration,
    started: Option<Instant>,
    logged: u32,
    suppressed: [u64; CloseReason::ALL.len()],
}

impl LogLimiter {
    pub fn new(per_interval: u32, interval: Duration) -> Self {
        Self {
            per_interval,
            interval,
            started: None,
            logged: 0,
            suppressed: [0; CloseReason::ALL.len()],
        }
    }

    /// Decides about one warning of `reason` at `now`.
    pub fn admit(&mut self, now: Instant, reason: CloseReason) -> Admit {
        let mut summary = None;
        let expired = self
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= self.interval);
        if expired {
            summary = self.take_summary();
            self.started = Some(now);
            self.logged = 0;
        }
        if self.logged < self.per_interval {
            self.logged += 1;
            Admit { log: true, summary }
        } else {
            self.suppressed[reason.index()] += 1;
            Admit {
                log: false,
                summary,
            }
        }
    }

    /// The suppressed counts not yet reported, if any (also for a final line at shutdown).
    pub fn take_summary(&mut self) -> Option<Vec<(CloseReason, u64)>> {
        let counts: Vec<(CloseReason, u64)> = CloseReason::ALL
            .iter()
            .filter_map(|r| {
                let n = std::mem::take(&mut self.suppressed[r.index()]);
                (n > 0).then_some((*r, n))
            })
            .collect();
        (!counts.is_empty()).then_some(counts)
    }
}

/// Closes by reason and the warning limiter of one protocol's listeners.
#[derive(Debug)]
pub struct ConnectionCloses {
    protocol: &'static str,
    counts: [AtomicU64; CloseReason::ALL.len()],
    limiter: Mutex<LogLimiter>,
}

impl ConnectionCloses {
    pub fn new(protocol: &'static str) -> Self {
        Self {
            protocol,
            counts: Default::default(),
            limiter: Mutex::new(LogLimiter::new(WARNINGS_PER_INTERVAL, LOG_INTERVAL)),
        }
    }

    /// Counts a close of `reason` and runs `warn` (the caller's WARN line, with its own fields)
    /// unless the interval's quota of warnings is used up.
    pub fn closed(&self, reason: CloseReason, warn: impl FnOnce()) {
        self.counts[reason.index()].fetch_add(1, Ordering::Relaxed);
        let admit = self
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(Instant::now(), reason);
        if let Some(summary) = admit.summary {
            self.log_summary(&summary);
        }
        if admit.log {
            warn();
        }
    }

    /// Counts a close of `reason` that is not worth a warning (e.g. an idle client).
    pub fn count(&self, reason: CloseReason) {
        self.counts[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Logs what is still suppressed (at shutdown).
    pub fn flush(&self) {
        let summary = self
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take_summary();
        if let Some(summary) = summary {
            self.log_summary(&summary);
        }
    }

    fn log_summary(&self, summary: &[(CloseReason, u64)]) {
        let counts = summary
            .iter()
            .map(|(r, n)| format!("{}={n}", r.label()))
            .collect::<Vec<_>>()
            .join(", ");
        tracing::warn!(
            protocol = self.protocol,
            suppressed = %counts,
            "connection warnings suppressed in the last interval, by reason"
        );
    }

    /// (reason label, count) for every reason, zeros included.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        CloseReason::ALL
            .iter()
            .map(|r| (r.label(), self.counts[r.index()].load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_logs_a_quota_then_one_summary_by_reason() {
        let mut limiter = LogLimiter::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        let admit = |l: &mut LogLimiter, s: u64, r| l.admit(t0 + Duration::from_secs(s), r);
        assert!(admit(&mut limiter, 0, CloseReason::BadFrame).log);
        assert!(admit(&mut limiter, 1, CloseReason::BadFrame).log);
        for _ in 0..5 {
            let a = admit(&mut limiter, 2, CloseReason::BadFrame);
            assert_eq!((a.log, a.summary), (false, None));
        }
        let a = admit(&mut limiter, 3, CloseReason::IdleTimeout);
        assert_eq!((a.log, a.summary), (false, None));
        // The next interval: the summary comes first, then logging resumes.
        let a = admit(&mut limiter, 10, CloseReason::NotAllowed);
        assert!(a.log);
        assert_eq!(
            a.summary,
            Some(vec![
                (CloseReason::IdleTimeout, 1),
                (CloseReason::BadFrame, 5)
            ])
        );
        let a = admit(&mut limiter, 11, CloseReason::NotAllowed);
        assert_eq!((a.log, a.summary), (true, None));
        assert_eq!(limiter.take_summary(), None);
    }

    #[test]
    fn every_close_is_counted_logged_or_not() {
        let closes = ConnectionCloses::new("kafka");
        let mut logged = 0;
        for _ in 0..(WARNINGS_PER_INTERVAL + 30) {
            closes.closed(CloseReason::BadFrame, || logged += 1);
        }
        closes.count(CloseReason::IdleTimeout);
        assert_eq!(logged, WARNINGS_PER_INTERVAL);
        let snapshot = closes.snapshot();
        let get = |label| snapshot.iter().find(|(l, _)| *l == label).unwrap().1;
        assert_eq!(get("bad_frame"), u64::from(WARNINGS_PER_INTERVAL) + 30);
        assert_eq!(get("idle_timeout"), 1);
        assert_eq!(get("connect_timeout"), 0);
    }
}
