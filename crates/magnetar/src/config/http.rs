//! The `[http]` section: the admin API / metrics port and its connection timeouts.

use serde::{Deserialize, Serialize};

use super::{range, Config, ConfigError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    pub port: u16,
    /// `/metrics` exports per-partition series while at most this many partitions are open.
    pub metrics_partition_series_max: u32,
    /// A request's headers must be complete this long after their first byte.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight and no bytes of a next one is closed after this
    /// long.
    pub idle_timeout_ms: u64,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            port: 8080,
            metrics_partition_series_max: 1000,
            header_read_timeout_ms: 30_000,
            idle_timeout_ms: 120_000,
        }
    }
}

impl Config {
    /// `[http]` ranges.
    pub(super) fn validate_http(&self) -> Result<(), ConfigError> {
        range(
            "http.metrics_partition_series_max",
            self.http.metrics_partition_series_max.into(),
            0,
            1_000_000,
        )?;
        range(
            "http.header_read_timeout_ms",
            self.http.header_read_timeout_ms,
            100,
            3_600_000,
        )?;
        range(
            "http.idle_timeout_ms",
            self.http.idle_timeout_ms,
            100,
            86_400_000,
        )?;
        Ok(())
    }
}
