//! The `[transactions]` section: the Kafka transaction coordinator's settings (Kafka's
//! `transaction.*` broker configs).

use serde::{Deserialize, Serialize};

use super::{range, Config, ConfigError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransactionsSection {
    /// Kafka: `transaction.state.log.num.partitions` (KoP `kafkaTxnLogTopicNumPartitions`);
    /// used only when `__transaction_state` is created.
    pub state_log_num_partitions: u32,
    /// Kafka: `transaction.max.timeout.ms`.
    pub max_timeout_ms: u32,
    /// Kafka: `transactional.id.expiration.ms`.
    pub id_expiration_ms: u64,
    /// Kafka: `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_check_interval_ms: u64,
    /// Partitions (and group offsets) in one transaction at most (no Kafka equivalent).
    pub partitions_max: u32,
}

impl Default for TransactionsSection {
    fn default() -> Self {
        // The coordinator's own defaults (Kafka's), so the two cannot drift apart.
        let c = magnetar_coordinator::CoordinatorConfig::default();
        Self {
            state_log_num_partitions: c.transaction_state_log_num_partitions,
            max_timeout_ms: c.transaction_max_timeout_ms.unsigned_abs(),
            id_expiration_ms: c.transactional_id_expiration_ms.unsigned_abs(),
            abort_check_interval_ms: c.transaction_abort_check_interval_ms,
            partitions_max: u32::try_from(c.transaction_partitions_max).unwrap_or(u32::MAX),
        }
    }
}

impl TransactionsSection {
    /// These keys over `base` (the group coordinator's settings built from `[groups]`).
    pub fn apply(
        &self,
        base: magnetar_coordinator::CoordinatorConfig,
    ) -> magnetar_coordinator::CoordinatorConfig {
        magnetar_coordinator::CoordinatorConfig {
            transaction_state_log_num_partitions: self.state_log_num_partitions,
            transaction_max_timeout_ms: i32::try_from(self.max_timeout_ms).unwrap_or(i32::MAX),
            transactional_id_expiration_ms: i64::try_from(self.id_expiration_ms)
                .unwrap_or(i64::MAX),
            transaction_abort_check_interval_ms: self.abort_check_interval_ms,
            transaction_partitions_max: self.partitions_max as usize,
            ..base
        }
    }
}

impl Config {
    /// `[transactions]` ranges.
    pub(super) fn validate_transactions(&self) -> Result<(), ConfigError> {
        let t = &self.transactions;
        range(
            "transactions.state_log_num_partitions",
            t.state_log_num_partitions.into(),
            1,
            self.broker.partitions_max.min(1000).into(),
        )?;
        range(
            "transactions.max_timeout_ms",
            t.max_timeout_ms.into(),
            1,
            i32::MAX as u64,
        )?;
        range(
            "transactions.id_expiration_ms",
            t.id_expiration_ms,
            1_000,
            100 * 365 * 86_400_000,
        )?;
        range(
            "transactions.abort_check_interval_ms",
            t.abort_check_interval_ms,
            10,
            86_400_000,
        )?;
        range(
            "transactions.partitions_max",
            t.partitions_max.into(),
            1,
            1_000_000,
        )?;
        Ok(())
    }
}
