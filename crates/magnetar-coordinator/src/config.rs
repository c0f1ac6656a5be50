//! Coordinator settings, named after Kafka's broker configs, with Kafka's defaults.

/// Settings of the group coordinator; the binary builds them from its config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// `offsets.topic.num.partitions` (KoP `offsetsTopicNumPartitions`); used when the offsets
    /// topic is created. An existing topic keeps its partition count.
    pub offsets_topic_num_partitions: u32,
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members (extended while members keep arriving, up to the rebalance timeout).
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.max.size`: members (joined or pending) per group.
    pub group_max_size: usize,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes`, in ms: how long an empty group's offsets are kept.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// Groups per offsets partition; joins and commits that would create more are refused.
    pub groups_per_partition_max: usize,
    /// Operations queued for writing per offsets partition before callers get
    /// `CoordinatorOverloaded`.
    pub write_queue_max: usize,
    /// Records merged into one appended batch at most.
    pub write_batch_records_max: usize,
    /// Compact a partition when its log holds more than this many records...
    pub compaction_records_min: u64,
    /// ...and more than this many records per live key.
    pub compaction_ratio: u64,
    /// How often the timer checks session, join and sync deadlines.
    pub timer_tick_ms: u64,
    /// How long a request waits for its partition to load before answering
    /// `CoordinatorLoadInProgress`.
    pub load_wait_ms: u64,
    /// `transaction.state.log.num.partitions` (KoP `kafkaTxnLogTopicNumPartitions`); used when
    /// `__transaction_state` is created.
    pub transaction_state_log_num_partitions: u32,
    /// `transaction.max.timeout.ms`: the largest transaction timeout a producer may ask for.
    pub transaction_max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: an idle transactional id (no open transaction) is
    /// forgotten after this long.
    pub transactional_id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often timed-out
    /// transactions are aborted (and expired ids removed).
    pub transaction_abort_check_interval_ms: u64,
    /// Partitions in one transaction at most (no Kafka equivalent; a bound on its state).
    pub transaction_partitions_max: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            offsets_topic_num_partitions: 50,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_max_size: 1_000,
            offset_metadata_max_bytes: 4_096,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            groups_per_partition_max: 100_000,
            write_queue_max: 10_000,
            write_batch_records_max: 10_000,
            compaction_records_min: 100_000,
            compaction_ratio: 4,
            timer_tick_ms: 100,
            load_wait_ms: 1_000,
            transaction_state_log_num_partitions: 50,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 3600 * 1000,
            transaction_abort_check_interval_ms: 10_000,
            transaction_partitions_max: 10_000,
        }
    }
}

impl CoordinatorConfig {
    /// Checks the settings; the error names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        let fail = |key: &str, reason: &str| Err(format!("{key}: {reason}"));
        if self.offsets_topic_num_partitions == 0 {
            return fail("offsets_topic_num_partitions", "must be positive");
        }
        if self.group_min_session_timeout_ms <= 0
            || self.group_min_session_timeout_ms > self.group_max_session_timeout_ms
        {
            return fail(
                "group_min_session_timeout_ms",
                "must be positive and at most group_max_session_timeout_ms",
            );
        }
        if self.group_initial_rebalance_delay_ms < 0 {
            return fail("group_initial_rebalance_delay_ms", "must not be negative");
        }
        if self.group_max_size == 0 {
            return fail("group_max_size", "must be positive");
        }
        if self.offset_metadata_max_bytes > i16::MAX as usize {
            return fail("offset_metadata_max_bytes", "must be at most 32767");
        }
        if self.offsets_retention_ms <= 0 {
            return fail("offsets_retention_ms", "must be positive");
        }
        if self.offsets_retention_check_interval_ms <= 0 {
            return fail("offsets_retention_check_interval_ms", "must be positive");
        }
        if self.groups_per_partition_max == 0 {
            return fail("groups_per_partition_max", "must be positive");
        }
        if self.write_queue_max == 0 || self.write_batch_records_max == 0 {
            return fail("write_queue_max", "queue and batch limits must be positive");
        }
        if self.compaction_ratio < 2 {
            return fail("compaction_ratio", "must be at least 2");
        }
        if self.timer_tick_ms == 0 {
            return fail("timer_tick_ms", "must be positive");
        }
        if self.transaction_state_log_num_partitions == 0 {
            return fail("transaction_state_log_num_partitions", "must be positive");
        }
        if self.transaction_max_timeout_ms <= 0 {
            return fail("transaction_max_timeout_ms", "must be positive");
        }
        if self.transactional_id_expiration_ms <= 0 {
            return fail("transactional_id_expiration_ms", "must be positive");
        }
        if self.transaction_abort_check_interval_ms == 0 {
            return fail("transaction_abort_check_interval_ms", "must be positive");
        }
        if self.transaction_partitions_max == 0 {
            return fail("transaction_partitions_max", "must be positive");
        }
        Ok(())
    }
}
