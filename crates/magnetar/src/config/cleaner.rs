//! The `[cleaner]` section: log compaction (`cleanup.policy=compact`) of local ledgers, Kafka's
//! `log.cleaner.*` settings.

use serde::{Deserialize, Serialize};

use super::{err, range, Config, ConfigError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CleanerSection {
    /// Kafka: `log.cleaner.enable`.
    pub enabled: bool,
    /// Kafka: `log.cleaner.threads`; one is supported.
    pub threads: u32,
    /// Kafka: `log.cleaner.dedupe.buffer.size`.
    pub dedupe_buffer_bytes: u64,
    /// Kafka: `log.cleaner.io.max.bytes.per.second`; `0` is unlimited.
    pub io_max_bytes_per_second: u64,
    /// Kafka: `log.cleaner.backoff.ms`.
    pub check_interval_ms: u64,
}

impl Default for CleanerSection {
    fn default() -> Self {
        Self {
            enabled: true,
            threads: 1,
            dedupe_buffer_bytes: 128 << 20,
            io_max_bytes_per_second: 0,
            check_interval_ms: 15_000,
        }
    }
}

impl Config {
    /// `[cleaner]` ranges.
    pub(super) fn validate_cleaner(&self) -> Result<(), ConfigError> {
        if self.cleaner.threads != 1 {
            return Err(err(format!(
                "cleaner.threads = {} is not supported: one cleaner thread per broker",
                self.cleaner.threads
            )));
        }
        range(
            "cleaner.dedupe_buffer_bytes",
            self.cleaner.dedupe_buffer_bytes,
            1 << 20,
            16 << 30,
        )?;
        range(
            "cleaner.check_interval_ms",
            self.cleaner.check_interval_ms,
            100,
            86_400_000,
        )?;
        Ok(())
    }
}
