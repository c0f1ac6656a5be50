//! Log compaction (`cleanup.policy=compact`) of the partitions this broker has open: the
//! topic configs that drive it, the background pass over every compacted topic, the operator's
//! trigger and each partition's status (Pulsar's `LongRunningProcessStatus`: not run, running,
//! success, error).
//!
//! The work itself is the storage layer's ([`magnetar_storage::ManagedLedger::compact`] for
//! ledgers on this broker's disk, tiered ones included: offloaded segments are read from the
//! object store, rewritten locally and offloaded again; [`magnetar_storage::wal::SharedLedger::compact`]
//! for cluster mode's shared ledgers: sealed segment objects are rewritten into new objects and
//! swapped in by one metadata transaction under the ledger's fence). The payload formats come
//! from above through [`CompactionCodec`] (magnetar-format's), installed by the binary with
//! [`Broker::set_compaction`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub use magnetar_storage::compaction::{
    CleanerLimits, CompactionCodec, CompactionOutcome, CompactionPolicy, CompactionRecord,
    EntryRecords,
};

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::names::TopicPartition;
use crate::partition::PartitionLog;
use crate::resources::{NamespacePolicies, TopicMetadata};

/// Topic config keys (Kafka's names) that drive compaction.
pub const CLEANUP_POLICY: &str = "cleanup.policy";
pub const MIN_COMPACTION_LAG_MS: &str = "min.compaction.lag.ms";
pub const MAX_COMPACTION_LAG_MS: &str = "max.compaction.lag.ms";
pub const MIN_CLEANABLE_DIRTY_RATIO: &str = "min.cleanable.dirty.ratio";
pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";

/// Whether `topic` lives in the internal namespace (`public/__kafka`): the group coordinator
/// keeps its offsets topic small itself (snapshot + truncate) and replays it from a snapshot,
/// which removing tombstones under it would break, so the cleaner leaves those topics alone.
fn is_internal(topic: &crate::names::TopicName) -> bool {
    topic.namespace.tenant.as_str() == crate::broker::INTERNAL_NAMESPACE.0
        && topic.namespace.namespace == crate::broker::INTERNAL_NAMESPACE.1
}

/// The topic configs a namespace may give its topics a default of
/// ([`NamespacePolicies::topic_config_defaults`]).
pub const NAMESPACE_DEFAULT_KEYS: &[&str] = &[
    CLEANUP_POLICY,
    DELETE_RETENTION_MS,
    MAX_COMPACTION_LAG_MS,
    MIN_CLEANABLE_DIRTY_RATIO,
    MIN_COMPACTION_LAG_MS,
];

/// Checks a namespace default of a topic config: the values Kafka takes for the topic config,
/// in their plain spelling (no spaces, no leading zeros, no exponent), which is what the admin
/// API's document states (`^(compact|delete)(,(compact|delete))*$`, `^(0|[1-9][0-9]{0,17})$`,
/// `^[1-9][0-9]{0,17}$` for `max.compaction.lag.ms`, `^(0(\.[0-9]{1,9})?|1(\.0{1,9})?)$`).
pub fn validate_namespace_default(key: &str, value: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::InvalidRequest(format!("{key}={value:?}: {why}")));
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    // 0, or 1 to 18 digits without a leading zero (below i64::MAX).
    let integer = |s: &str| s == "0" || (digits(s, 18) && !s.starts_with('0'));
    match key {
        CLEANUP_POLICY => {
            if value.split(',').any(|p| p != "compact" && p != "delete") {
                return bad("a comma-separated list of compact and delete");
            }
        }
        DELETE_RETENTION_MS | MIN_COMPACTION_LAG_MS => {
            if !integer(value) {
                return bad("an integer at least 0 (at most 18 digits)");
            }
        }
        MAX_COMPACTION_LAG_MS => {
            if !integer(value) || value == "0" {
                return bad("an integer at least 1 (at most 18 digits)");
            }
        }
        MIN_CLEANABLE_DIRTY_RATIO => {
            let ok = match value.split_once('.') {
                None => value == "0" || value == "1",
                Some((whole, frac)) => {
                    digits(frac, 9)
                        && (whole == "0" || (whole == "1" && frac.bytes().all(|b| b == b'0')))
                }
            };
            if !ok {
                return bad("a number in [0, 1] such as 0.5");
            }
        }
        _ => {
            return bad(&format!(
                "not a topic config a namespace sets a default of (one of {})",
                NAMESPACE_DEFAULT_KEYS.join(", ")
            ))
        }
    }
    Ok(())
}

/// Whether a topic's `cleanup.policy` (its own, else its namespace's default) includes
/// `compact`.
pub fn is_compacted(metadata: &TopicMetadata) -> bool {
    metadata
        .config(CLEANUP_POLICY)
        .is_some_and(|v| v.split(',').any(|p| p.trim() == "compact"))
}

/// Whether a topic's `cleanup.policy` includes `delete` (the default when unset): only then do
/// retention by time and size (`retention.ms`/`retention.bytes`, or the namespace's policy)
/// delete its old segments. A `compact`-only topic keeps every key's latest value however old,
/// as Kafka's; Pulsar keeps a compacted topic's compacted view past retention too.
pub fn deletes(metadata: &TopicMetadata) -> bool {
    metadata
        .config(CLEANUP_POLICY)
        .is_none_or(|v| v.split(',').any(|p| p.trim() == "delete"))
}

/// A topic's compaction policy: its configs, else its namespace's defaults, else Kafka's.
pub fn topic_policy(metadata: &TopicMetadata) -> CompactionPolicy {
    let d = CompactionPolicy::default();
    let num = |key: &str| {
        metadata
            .config(key)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .and_then(|v| u64::try_from(v).ok())
    };
    let ratio = metadata
        .config(MIN_CLEANABLE_DIRTY_RATIO)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|r| r.is_finite() && (0.0..=1.0).contains(r));
    CompactionPolicy {
        min_compaction_lag_ms: num(MIN_COMPACTION_LAG_MS).unwrap_or(d.min_compaction_lag_ms),
        max_compaction_lag_ms: num(MAX_COMPACTION_LAG_MS).unwrap_or(d.max_compaction_lag_ms),
        min_cleanable_dirty_ratio: ratio.unwrap_or(d.min_cleanable_dirty_ratio),
        delete_retention_ms: num(DELETE_RETENTION_MS).unwrap_or(d.delete_retention_ms),
        force: false,
    }
}

/// Where a partition's compaction stands (Pulsar's `LongRunningProcessStatus.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionState {
    NotRun,
    Running,
    Success,
    Error,
}

impl CompactionState {
    /// Pulsar's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CompactionState::NotRun => "NOT_RUN",
            CompactionState::Running => "RUNNING",
            CompactionState::Success => "SUCCESS",
            CompactionState::Error => "ERROR",
        }
    }
}

/// A partition's compaction status and the figures the metrics export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionStatus {
    pub state: CompactionState,
    pub last_error: Option<String>,
    /// When the last pass that rewrote segments ended, and how long it took.
    pub last_compaction_ms: Option<i64>,
    pub last_duration_ms: u64,
    /// Bytes reclaimed by compaction since the broker started.
    pub bytes_reclaimed: u64,
    pub last_outcome: Option<CompactionOutcome>,
}

impl Default for CompactionStatus {
    fn default() -> Self {
        CompactionStatus {
            state: CompactionState::NotRun,
            last_error: None,
            last_compaction_ms: None,
            last_duration_ms: 0,
            bytes_reclaimed: 0,
            last_outcome: None,
        }
    }
}

/// What one background pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionSummary {
    pub partitions_checked: u64,
    pub partitions_compacted: u64,
    pub bytes_reclaimed: u64,
    pub failures: u64,
}

/// The broker's compaction state (a field of [`Broker`]).
#[derive(Default)]
pub struct CompactionBook {
    codec: OnceLock<(Arc<dyn CompactionCodec>, CleanerLimits)>,
    statuses: Mutex<HashMap<TopicPartition, CompactionStatus>>,
}

impl CompactionBook {
    fn statuses(&self) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, CompactionStatus>> {
        self.statuses.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Broker {
    /// Installs the payload codec and the cleaner's limits; until then compaction does not run.
    pub fn set_compaction(&self, codec: Arc<dyn CompactionCodec>, limits: CleanerLimits) {
        let _ = self.compaction.codec.set((codec, limits));
    }

    /// A partition's compaction status (`NOT_RUN` when it never ran since the broker started).
    pub fn compaction_status(&self, tp: &TopicPartition) -> CompactionStatus {
        self.compaction
            .statuses()
            .get(tp)
            .cloned()
            .unwrap_or_default()
    }

    /// Every partition's compaction status, for the metrics.
    pub fn compaction_statuses(&self) -> Vec<(TopicPartition, CompactionStatus)> {
        let mut v: Vec<_> = self
            .compaction
            .statuses()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Cleanable (dirty, older than the topic's `min.compaction.lag.ms`) bytes of an open
    /// partition of a compacted topic; `None` when the partition cannot be compacted.
    pub fn cleanable_bytes(&self, log: &PartitionLog, metadata: &TopicMetadata) -> Option<u64> {
        let ledger = log.ledger();
        if !is_compacted(metadata) || is_internal(&log.name().topic) || !ledger.can_compact() {
            return None;
        }
        Some(
            ledger
                .cleanable(topic_policy(metadata).min_compaction_lag_ms)
                .0,
        )
    }

    /// Compacts one partition now. `force`: whatever the dirty ratio (an operator's request).
    /// Refused for a topic whose `cleanup.policy` lacks `compact`.
    pub async fn compact_partition(
        &self,
        tp: &TopicPartition,
        force: bool,
    ) -> Result<CompactionOutcome> {
        let Some(metadata) = self.topic(&tp.topic).await? else {
            return Err(Error::TopicNotFound {
                topic: tp.topic.to_string(),
            });
        };
        let policies = self.namespace_policies(&tp.topic.namespace).await?;
        let log = self.partition(tp).await?;
        self.compact_log(&log, &metadata, policies.as_ref(), force)
            .await
    }

    /// An operator's trigger (Pulsar's `topics compact`): checks that the partition can be
    /// compacted, marks it RUNNING (so a status read right after sees it) and compacts it in the
    /// background whatever its dirty ratio. `Ok(false)`: a compaction of it is already running.
    pub async fn start_compaction(self: &Arc<Self>, tp: &TopicPartition) -> Result<bool> {
        let Some(metadata) = self.topic(&tp.topic).await? else {
            return Err(Error::TopicNotFound {
                topic: tp.topic.to_string(),
            });
        };
        let log = self.partition(tp).await?;
        self.compaction_inputs(&log, &metadata)?;
        {
            let mut statuses = self.compaction.statuses();
            let status = statuses.entry(tp.clone()).or_default();
            if status.state == CompactionState::Running {
                return Ok(false);
            }
            status.state = CompactionState::Running;
            status.last_error = None;
        }
        let broker = Arc::clone(self);
        let tp = tp.clone();
        tokio::spawn(async move {
            // The outcome and any error land in the partition's status.
            let _ = broker.compact_partition(&tp, true).await;
        });
        Ok(true)
    }

    /// The codec, limits and ledger (local or shared) to compact `log` with, or why it cannot
    /// be.
    fn compaction_inputs(
        &self,
        log: &PartitionLog,
        metadata: &TopicMetadata,
    ) -> Result<(Arc<dyn CompactionCodec>, CleanerLimits, Arc<Ledger>)> {
        let Some((codec, limits)) = self.compaction.codec.get() else {
            return Err(Error::InvalidRequest(
                "log compaction is not enabled on this broker (cleaner.enabled)".to_string(),
            ));
        };
        if !is_compacted(metadata) {
            return Err(Error::InvalidRequest(format!(
                "topic {} does not have cleanup.policy=compact",
                log.name().topic
            )));
        }
        if is_internal(&log.name().topic) {
            return Err(Error::InvalidRequest(format!(
                "topic {} is internal: the group coordinator compacts it (snapshot and truncate)",
                log.name().topic
            )));
        }
        let ledger = log.ledger();
        if !ledger.can_compact() {
            return Err(Error::InvalidRequest(
                "the segment store of this ledger does not support log compaction".to_string(),
            ));
        }
        Ok((codec.clone(), *limits, ledger.clone()))
    }

    async fn compact_log(
        &self,
        log: &Arc<PartitionLog>,
        metadata: &TopicMetadata,
        policies: Option<&NamespacePolicies>,
        force: bool,
    ) -> Result<CompactionOutcome> {
        let tp = log.name().clone();
        let checked = self.compaction_inputs(log, metadata);
        let (codec, limits, ledger) = match checked {
            Ok(c) => c,
            Err(e) => {
                let mut statuses = self.compaction.statuses();
                if let Some(s) = statuses.get_mut(&tp) {
                    if s.state == CompactionState::Running {
                        s.state = CompactionState::Error;
                        s.last_error = Some(e.to_string());
                    }
                }
                return Err(e);
            }
        };
        let mut policy = topic_policy(metadata);
        policy.force = force;
        // Pulsar's namespace `compactionThreshold`: compact once this many bytes are cleanable,
        // whatever the dirty ratio.
        if let Some(threshold) = policies.and_then(|p| p.compaction_threshold_bytes) {
            if threshold > 0 && ledger.cleanable(policy.min_compaction_lag_ms).0 >= threshold {
                policy.force = true;
            }
        }
        self.compaction
            .statuses()
            .entry(tp.clone())
            .or_default()
            .state = CompactionState::Running;
        let started = self.clock().now_ms();
        let result = ledger
            .compact_with_txns(codec, policy, limits, log.txn_view())
            .await;
        let ended = self.clock().now_ms();
        let mut statuses = self.compaction.statuses();
        let status = statuses.entry(tp.clone()).or_default();
        match &result {
            Ok(outcome) => {
                status.state = CompactionState::Success;
                status.last_error = None;
                if outcome.passes > 0 {
                    status.last_compaction_ms = Some(ended);
                    status.last_duration_ms = u64::try_from(ended - started).unwrap_or(0);
                    status.bytes_reclaimed += outcome.bytes_reclaimed();
                    tracing::info!(partition = %tp, passes = outcome.passes, bytes_before = outcome.bytes_before, bytes_after = outcome.bytes_after, records_removed = outcome.records_removed, "compacted");
                }
                status.last_outcome = Some(outcome.clone());
            }
            Err(e) => {
                status.state = CompactionState::Error;
                status.last_error = Some(e.to_string());
                tracing::warn!(partition = %tp, error = %e, "compaction failed");
            }
        }
        Ok(result?)
    }

    /// One background pass: every partition this broker has open of every topic with
    /// `cleanup.policy=compact` (local or shared ledger), compacted when its policy says it is
    /// due. Failures are counted and
    /// logged, not returned, so one bad partition does not stop the others.
    pub async fn enforce_compaction(&self) -> Result<CompactionSummary> {
        let mut summary = CompactionSummary::default();
        if self.compaction.codec.get().is_none() {
            return Ok(summary);
        }
        for (name, metadata) in self.list_all_topics(true).await? {
            if !is_compacted(&metadata) || is_internal(&name) {
                continue;
            }
            let policies = self.namespace_policies(&name.namespace).await?;
            for partition in 0..metadata.partition_count() {
                let tp = TopicPartition {
                    topic: name.clone(),
                    partition,
                };
                let Some(log) = self.partition_if_present(&tp).await? else {
                    continue;
                };
                if !log.ledger().can_compact() {
                    continue;
                }
                if self.compaction_status(&tp).state == CompactionState::Running {
                    continue;
                }
                summary.partitions_checked += 1;
                match self
                    .compact_log(&log, &metadata, policies.as_ref(), false)
                    .await
                {
                    Ok(outcome) if outcome.passes > 0 => {
                        summary.partitions_compacted += 1;
                        summary.bytes_reclaimed += outcome.bytes_reclaimed();
                    }
                    Ok(_) => {}
                    Err(_) => summary.failures += 1,
                }
            }
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(configs: &[(&str, &str)]) -> TopicMetadata {
        TopicMetadata {
            format_version: 1,
            partitioned: true,
            partitions: 1,
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created_ms: 0,
            skipped_entries: Default::default(),
            namespace_defaults: Default::default(),
        }
    }

    #[test]
    fn namespace_defaults_apply_under_the_topics_own_configs() {
        let mut m = metadata(&[(DELETE_RETENTION_MS, "100")]);
        m.namespace_defaults = [
            (CLEANUP_POLICY, "compact"),
            (DELETE_RETENTION_MS, "5"),
            (MIN_COMPACTION_LAG_MS, "7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert!(is_compacted(&m), "the namespace's cleanup.policy applies");
        assert!(!deletes(&m));
        let p = topic_policy(&m);
        assert_eq!(p.delete_retention_ms, 100, "the topic's own value wins");
        assert_eq!(p.min_compaction_lag_ms, 7);
        m.configs
            .insert(CLEANUP_POLICY.to_string(), "delete".to_string());
        assert!(!is_compacted(&m) && deletes(&m));
    }

    #[test]
    fn namespace_defaults_are_checked() {
        for (k, v) in [
            (CLEANUP_POLICY, "compact"),
            (CLEANUP_POLICY, "compact,delete"),
            (DELETE_RETENTION_MS, "0"),
            (MIN_COMPACTION_LAG_MS, "10"),
            (MAX_COMPACTION_LAG_MS, "1"),
            (MAX_COMPACTION_LAG_MS, "999999999999999999"),
            (MIN_CLEANABLE_DIRTY_RATIO, "0.5"),
            (MIN_CLEANABLE_DIRTY_RATIO, "0"),
            (MIN_CLEANABLE_DIRTY_RATIO, "1.000"),
        ] {
            validate_namespace_default(k, v).unwrap();
        }
        for (k, v) in [
            (CLEANUP_POLICY, ""),
            (CLEANUP_POLICY, "compress"),
            (CLEANUP_POLICY, "compact, delete"),
            (CLEANUP_POLICY, "compact,"),
            (DELETE_RETENTION_MS, "-1"),
            (DELETE_RETENTION_MS, "+5"),
            (DELETE_RETENTION_MS, " 5"),
            (DELETE_RETENTION_MS, "05"),
            (DELETE_RETENTION_MS, "1000000000000000000"),
            (MIN_CLEANABLE_DIRTY_RATIO, "1.01"),
            (MIN_CLEANABLE_DIRTY_RATIO, ".5"),
            (MIN_CLEANABLE_DIRTY_RATIO, "5e-1"),
            (MAX_COMPACTION_LAG_MS, "0"),
            (MIN_COMPACTION_LAG_MS, "x"),
            (MIN_CLEANABLE_DIRTY_RATIO, "1.5"),
            (MIN_CLEANABLE_DIRTY_RATIO, "NaN"),
            ("retention.ms", "1"),
        ] {
            assert!(validate_namespace_default(k, v).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn policy_comes_from_topic_configs_else_kafka_defaults() {
        assert!(deletes(&metadata(&[])));
        assert!(deletes(&metadata(&[(CLEANUP_POLICY, "compact, delete")])));
        assert!(!deletes(&metadata(&[(CLEANUP_POLICY, "compact")])));
        assert!(!is_compacted(&metadata(&[])));
        assert!(!is_compacted(&metadata(&[(CLEANUP_POLICY, "delete")])));
        assert!(is_compacted(&metadata(&[(CLEANUP_POLICY, "compact")])));
        assert!(is_compacted(&metadata(&[(
            CLEANUP_POLICY,
            "delete, compact"
        )])));
        let p = topic_policy(&metadata(&[
            (MIN_CLEANABLE_DIRTY_RATIO, "0.01"),
            (MIN_COMPACTION_LAG_MS, "0"),
            (DELETE_RETENTION_MS, "100"),
            (MAX_COMPACTION_LAG_MS, "-1"),
        ]));
        assert_eq!(p.min_cleanable_dirty_ratio, 0.01);
        assert_eq!((p.min_compaction_lag_ms, p.delete_retention_ms), (0, 100));
        assert_eq!(
            p.max_compaction_lag_ms,
            CompactionPolicy::default().max_compaction_lag_ms
        );
        let d = topic_policy(&metadata(&[(MIN_CLEANABLE_DIRTY_RATIO, "7")]));
        assert_eq!(
            d,
            CompactionPolicy::default(),
            "an out-of-range ratio is ignored"
        );
    }
}
