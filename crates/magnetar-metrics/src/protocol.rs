//! Request metrics of one protocol front end: per-API request counts, latency histograms and
//! errors by code, and the connection gauge. Everything is a fixed array of atomics allocated at
//! startup and indexed by the API's number, so recording a request costs no label lookup, no
//! lock and no allocation.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use magnetar_broker::{HistogramSnapshot, LatencyHistogram};

use crate::closes::ConnectionCloses;

/// API numbers at or above this are counted under the API named `other`.
pub const API_NUMBER_MAX: usize = 256;

/// Error codes recorded per API: the range `ERROR_CODE_MIN ..= ERROR_CODE_MIN + ERROR_CODES - 2`;
/// codes outside it are counted in one last slot reported as code `other`.
const ERROR_CODE_MIN: i32 = -1;
const ERROR_CODES: usize = 200;

/// Names an error code for the `error` label (e.g. `UNKNOWN_TOPIC_OR_PARTITION`).
pub type ErrorNamer = fn(i32) -> String;

struct ApiSlot {
    name: String,
    requests: AtomicU64,
    latency: LatencyHistogram,
    errors: Box<[AtomicU64]>,
}

impl ApiSlot {
    fn new(name: String) -> Self {
        Self {
            name,
            requests: AtomicU64::new(0),
            latency: LatencyHistogram::new(),
            errors: (0..ERROR_CODES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// The request counters of one protocol (`kafka`, `pulsar`).
pub struct ProtocolMetrics {
    protocol: &'static str,
    /// API number -> slot index; `u16::MAX` for numbers without a named API.
    index: Box<[u16]>,
    /// One slot per named API, then the `other` slot.
    slots: Box<[ApiSlot]>,
    error_name: ErrorNamer,
    connections_active: AtomicI64,
    connections_opened: AtomicU64,
    unreadable_entries: AtomicU64,
    closes: ConnectionCloses,
}

impl std::fmt::Debug for ProtocolMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtocolMetrics")
            .field("protocol", &self.protocol)
            .field("apis", &(self.slots.len() - 1))
            .finish_non_exhaustive()
    }
}

/// One API's counters, read at scrape time.
#[derive(Debug, Clone)]
pub struct ApiSnapshot {
    pub api: String,
    pub requests: u64,
    pub latency: HistogramSnapshot,
    /// (code, error name, count) for codes seen at least once.
    pub errors: Vec<(String, String, u64)>,
}

/// A protocol's counters, read at scrape time.
#[derive(Debug, Clone)]
pub struct ProtocolSnapshot {
    pub protocol: &'static str,
    pub apis: Vec<ApiSnapshot>,
    pub connections_active: i64,
    pub connections_opened: u64,
    /// Stored entries this protocol could not serve (see `record_unreadable_entry`).
    pub unreadable_entries: u64,
    /// Connections the front end closed or refused, by reason label (zeros included).
    pub connections_closed: Vec<(&'static str, u64)>,
}

impl ProtocolMetrics {
    /// `apis` are (API number, name) pairs; numbers at or above [`API_NUMBER_MAX`] are ignored.
    pub fn new(protocol: &'static str, apis: &[(usize, &str)], error_name: ErrorNamer) -> Self {
        let mut index = vec![u16::MAX; API_NUMBER_MAX].into_boxed_slice();
        let mut slots = Vec::with_capacity(apis.len() + 1);
        for (number, name) in apis {
            if *number < API_NUMBER_MAX && index[*number] == u16::MAX {
                index[*number] = slots.len() as u16;
                slots.push(ApiSlot::new((*name).to_string()));
            }
        }
        slots.push(ApiSlot::new("other".to_string()));
        Self {
            protocol,
            index,
            slots: slots.into_boxed_slice(),
            error_name,
            connections_active: AtomicI64::new(0),
            connections_opened: AtomicU64::new(0),
            unreadable_entries: AtomicU64::new(0),
            closes: ConnectionCloses::new(protocol),
        }
    }

    /// Closes by reason, with the rate-limited warnings that go with them.
    pub fn closes(&self) -> &ConnectionCloses {
        &self.closes
    }

    pub fn protocol(&self) -> &'static str {
        self.protocol
    }

    fn slot(&self, api: usize) -> &ApiSlot {
        let i = self.index.get(api).copied().unwrap_or(u16::MAX);
        let other = self.slots.len() - 1;
        &self.slots[if i == u16::MAX { other } else { usize::from(i) }]
    }

    /// Counts one request of `api` that took `elapsed` from decoded to answered.
    pub fn record(&self, api: usize, elapsed: Duration) {
        let slot = self.slot(api);
        slot.requests.fetch_add(1, Ordering::Relaxed);
        slot.latency.observe(elapsed);
    }

    /// Counts one error `code` answered to a request of `api` (0 is not an error and is ignored).
    pub fn record_error(&self, api: usize, code: i32) {
        if code == 0 {
            return;
        }
        let at = usize::try_from(code - ERROR_CODE_MIN)
            .ok()
            .filter(|i| *i < ERROR_CODES - 1)
            .unwrap_or(ERROR_CODES - 1);
        self.slot(api).errors[at].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a stored entry that could not be served to a reader of this protocol (it could
    /// not be converted or is corrupt), whatever the unreadable-entry policy did with it.
    pub fn record_unreadable_entry(&self) {
        self.unreadable_entries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an opened connection; the guard counts it closed when dropped.
    pub fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        self.connections_active.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    pub fn snapshot(&self) -> ProtocolSnapshot {
        let apis = self
            .slots
            .iter()
            .map(|slot| ApiSnapshot {
                api: slot.name.clone(),
                requests: slot.requests.load(Ordering::Relaxed),
                latency: slot.latency.snapshot(),
                errors: slot
                    .errors
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| {
                        let n = n.load(Ordering::Relaxed);
                        (n > 0).then(|| {
                            if i == ERROR_CODES - 1 {
                                ("other".to_string(), "OTHER".to_string(), n)
                            } else {
                                let code = i as i32 + ERROR_CODE_MIN;
                                (code.to_string(), (self.error_name)(code), n)
                            }
                        })
                    })
                    .collect(),
            })
            .collect();
        ProtocolSnapshot {
            protocol: self.protocol,
            apis,
            connections_active: self.connections_active.load(Ordering::Relaxed),
            connections_opened: self.connections_opened.load(Ordering::Relaxed),
            unreadable_entries: self.unreadable_entries.load(Ordering::Relaxed),
            connections_closed: self.closes.snapshot(),
        }
    }
}

/// Held by a connection while it is open.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<ProtocolMetrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namer(code: i32) -> String {
        format!("E{code}")
    }

    #[test]
    fn requests_errors_and_connections_are_counted_per_api() {
        let m = Arc::new(ProtocolMetrics::new(
            "kafka",
            &[(0, "Produce"), (1, "Fetch")],
            namer,
        ));
        m.record(0, Duration::from_micros(70));
        m.record(0, Duration::from_millis(2));
        m.record(1, Duration::from_millis(600));
        m.record(200, Duration::ZERO); // unnamed: "other"
        m.record(100_000, Duration::ZERO); // beyond the table: "other"
        m.record_error(0, 3);
        m.record_error(0, 3);
        m.record_error(0, 0); // not an error
        m.record_error(1, -1);
        m.record_error(1, 5000); // outside the range: "other"
        let guard = m.connection_opened();
        let _second = m.connection_opened();
        drop(guard);
        let s = m.snapshot();
        assert_eq!((s.connections_active, s.connections_opened), (1, 2));
        let api = |name: &str| s.apis.iter().find(|a| a.api == name).unwrap().clone();
        assert_eq!(api("Produce").requests, 2);
        assert_eq!(api("Produce").latency.count(), 2);
        assert_eq!(api("Produce").latency.sum_us, 2_070);
        assert_eq!(
            api("Produce").errors,
            vec![("3".to_string(), "E3".to_string(), 2)]
        );
        assert_eq!(api("Fetch").requests, 1);
        assert_eq!(
            api("Fetch").errors,
            vec![
                ("-1".to_string(), "E-1".to_string(), 1),
                ("other".to_string(), "OTHER".to_string(), 1)
            ]
        );
        assert_eq!(api("other").requests, 2);
    }
}
