//! The `[groups]` section: the Kafka group coordinator's settings.

use serde::{Deserialize, Serialize};

use super::{range, Config, ConfigError};

/// Kafka consumer-group coordinator settings (Kafka's broker configs of the same meaning).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsSection {
    /// `offsets.topic.num.partitions`: used only when `__consumer_offsets` is created.
    pub offsets_topic_num_partitions: u32,
    /// `offsets.retention.minutes`.
    pub offsets_retention_minutes: u64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: u32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: u32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: u32,
    /// `group.max.size`.
    pub max_size: u32,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: u32,
    /// Groups per `__consumer_offsets` partition (no Kafka equivalent).
    pub groups_per_partition_max: u32,
}

impl Default for GroupsSection {
    fn default() -> Self {
        // The coordinator's own defaults (Kafka's), so the two cannot drift apart.
        let c = magnetar_coordinator::CoordinatorConfig::default();
        Self {
            offsets_topic_num_partitions: c.offsets_topic_num_partitions,
            offsets_retention_minutes: (c.offsets_retention_ms / 60_000).unsigned_abs(),
            offsets_retention_check_interval_ms: c
                .offsets_retention_check_interval_ms
                .unsigned_abs(),
            min_session_timeout_ms: c.group_min_session_timeout_ms.unsigned_abs(),
            max_session_timeout_ms: c.group_max_session_timeout_ms.unsigned_abs(),
            initial_rebalance_delay_ms: c.group_initial_rebalance_delay_ms.unsigned_abs(),
            max_size: u32::try_from(c.group_max_size).unwrap_or(u32::MAX),
            offset_metadata_max_bytes: u32::try_from(c.offset_metadata_max_bytes)
                .unwrap_or(u32::MAX),
            groups_per_partition_max: u32::try_from(c.groups_per_partition_max).unwrap_or(u32::MAX),
        }
    }
}

impl GroupsSection {
    /// The coordinator's settings: these keys over the coordinator's defaults for the rest.
    /// Call after [`Config::validate`] (the ranges keep every value within the target type).
    pub fn coordinator_config(&self) -> magnetar_coordinator::CoordinatorConfig {
        let clamp_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        magnetar_coordinator::CoordinatorConfig {
            offsets_topic_num_partitions: self.offsets_topic_num_partitions,
            group_min_session_timeout_ms: clamp_i32(self.min_session_timeout_ms),
            group_max_session_timeout_ms: clamp_i32(self.max_session_timeout_ms),
            group_initial_rebalance_delay_ms: clamp_i32(self.initial_rebalance_delay_ms),
            group_max_size: self.max_size as usize,
            offset_metadata_max_bytes: self.offset_metadata_max_bytes as usize,
            offsets_retention_ms: i64::try_from(self.offsets_retention_minutes)
                .unwrap_or(i64::MAX / 60_000)
                .saturating_mul(60_000),
            offsets_retention_check_interval_ms: i64::try_from(
                self.offsets_retention_check_interval_ms,
            )
            .unwrap_or(i64::MAX),
            groups_per_partition_max: self.groups_per_partition_max as usize,
            ..Default::default()
        }
    }
}

impl Config {
    /// `[groups]` ranges (the offsets topic within `broker.partitions_max`).
    pub(super) fn validate_groups(&self) -> Result<(), ConfigError> {
        let g = &self.groups;
        range(
            "groups.offsets_topic_num_partitions",
            g.offsets_topic_num_partitions.into(),
            1,
            self.broker.partitions_max.min(1000).into(),
        )?;
        // Up to 100 years, so the value in ms stays far inside an i64.
        range(
            "groups.offsets_retention_minutes",
            g.offsets_retention_minutes,
            1,
            100 * 365 * 24 * 60,
        )?;
        range(
            "groups.offsets_retention_check_interval_ms",
            g.offsets_retention_check_interval_ms,
            1000,
            86_400_000,
        )?;
        range(
            "groups.min_session_timeout_ms",
            g.min_session_timeout_ms.into(),
            1,
            g.max_session_timeout_ms.into(),
        )?;
        range(
            "groups.max_session_timeout_ms",
            g.max_session_timeout_ms.into(),
            1,
            3_600_000,
        )?;
        range(
            "groups.initial_rebalance_delay_ms",
            g.initial_rebalance_delay_ms.into(),
            0,
            300_000,
        )?;
        range("groups.max_size", g.max_size.into(), 1, 1_000_000)?;
        range(
            "groups.offset_metadata_max_bytes",
            g.offset_metadata_max_bytes.into(),
            0,
            i16::MAX as u64,
        )?;
        range(
            "groups.groups_per_partition_max",
            g.groups_per_partition_max.into(),
            1,
            10_000_000,
        )?;
        Ok(())
    }
}
