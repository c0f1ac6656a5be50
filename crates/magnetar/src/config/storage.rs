//! The `[storage]` section: fsync policy, segment size and age, index interval, entry limit.

use serde::{Deserialize, Serialize};

use super::{one_of, range, Config, ConfigError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    pub fsync: String,
    pub fsync_interval_ms: u64,
    pub segment_bytes: u64,
    pub segment_ms: u64,
    pub index_interval_bytes: u32,
    pub entry_bytes_max: u32,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            fsync: "always".into(),
            fsync_interval_ms: 1000,
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            entry_bytes_max: 16 * 1024 * 1024,
        }
    }
}

impl Config {
    /// `[storage]` ranges and the fsync policy.
    pub(super) fn validate_storage(&self) -> Result<(), ConfigError> {
        one_of(
            "storage.fsync",
            &self.storage.fsync,
            &["always", "interval", "os"],
        )?;
        range(
            "storage.fsync_interval_ms",
            self.storage.fsync_interval_ms,
            1,
            3_600_000,
        )?;
        range(
            "storage.segment_bytes",
            self.storage.segment_bytes,
            64 * 1024,
            1 << 40,
        )?;
        range(
            "storage.segment_ms",
            self.storage.segment_ms,
            1000,
            365 * 24 * 3_600_000,
        )?;
        range(
            "storage.index_interval_bytes",
            self.storage.index_interval_bytes.into(),
            64,
            16 * 1024 * 1024,
        )?;
        range(
            "storage.entry_bytes_max",
            self.storage.entry_bytes_max.into(),
            1024,
            1024 * 1024 * 1024,
        )?;
        Ok(())
    }
}
