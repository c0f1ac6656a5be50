//! The retention pass: each topic's retention (its configs, else its namespace's policy) and
//! Pulsar's message TTL, applied to every partition. A pass over the services (topics,
//! namespaces, partitions), so it is a function over the broker rather than a service of its own.

use std::sync::Arc;

use super::topics::{config_value, RETENTION_BYTES, RETENTION_MS};
use super::Broker;
use crate::error::Result;
use crate::names::TopicPartition;
use crate::partition::PartitionLog;
use crate::resources::{NamespacePolicies, TopicMetadata};

/// What one retention pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionSummary {
    pub partitions_checked: u64,
    pub segments_deleted: u64,
    pub bytes_deleted: u64,
    /// Messages acknowledged on subscriptions by message TTL.
    pub messages_expired: u64,
}

/// (time, size) retention of a topic: its own configs first, then its namespace's policy.
pub fn effective_retention(
    metadata: &TopicMetadata,
    policies: Option<&NamespacePolicies>,
) -> (Option<u64>, Option<u64>) {
    let pick = |key: &str, namespace: Option<u64>| {
        if metadata.configs.contains_key(key) {
            config_value(metadata, key)
        } else {
            namespace
        }
    };
    (
        pick(RETENTION_MS, policies.and_then(|p| p.retention_time_ms)),
        pick(
            RETENTION_BYTES,
            policies.and_then(|p| p.retention_size_bytes),
        ),
    )
}

/// Applies retention to every partition of every topic: the topic's `retention.ms` /
/// `retention.bytes`, else its namespace's policy, else infinite (Pulsar's model: nothing is
/// deleted unless a policy says so). Whole sealed segments only; the log start moves forward.
/// A topic whose `cleanup.policy` lacks `delete` (`compact` alone) is never deleted by time or
/// size, as in Kafka: its old segments hold the latest value of keys not written since.
pub(super) async fn enforce(broker: &Broker) -> Result<RetentionSummary> {
    let mut summary = RetentionSummary::default();
    for (name, metadata) in broker.list_all_topics(true).await? {
        let policies = broker.namespace_policies(&name.namespace).await?;
        let (time_ms, size_bytes) = if crate::compaction::deletes(&metadata) {
            effective_retention(&metadata, policies.as_ref())
        } else {
            (None, None)
        };
        let ttl_ms = policies
            .as_ref()
            .and_then(|p| p.message_ttl_s)
            .map(|s| s.saturating_mul(1000));
        if time_ms.is_none() && size_bytes.is_none() && ttl_ms.is_none() {
            continue;
        }
        for partition in 0..metadata.partition_count() {
            let tp = TopicPartition {
                topic: name.clone(),
                partition,
            };
            let Some(log) = broker.partition_if_present(&tp).await? else {
                continue;
            };
            if let Some(ttl_ms) = ttl_ms {
                summary.messages_expired += expire_messages(broker, &log, ttl_ms).await?;
            }
            if time_ms.is_none() && size_bytes.is_none() {
                summary.partitions_checked += 1;
                continue;
            }
            let outcome = log.apply_retention(time_ms, size_bytes).await?;
            summary.partitions_checked += 1;
            if outcome.segments_deleted > 0 {
                tracing::info!(
                    partition = %tp,
                    segments = outcome.segments_deleted,
                    bytes = outcome.bytes_deleted,
                    start_index = outcome.start_index,
                    "retention deleted segments"
                );
            }
            summary.segments_deleted += outcome.segments_deleted;
            summary.bytes_deleted += outcome.bytes_deleted;
        }
    }
    Ok(summary)
}

/// Message TTL (Pulsar's): every subscription of `log` acknowledges the messages older than
/// `ttl_ms`, judged by the entry's max timestamp (event time, else publish time). Kafka
/// consumer groups keep their own offsets and are not affected, as in Pulsar/KoP.
async fn expire_messages(broker: &Broker, log: &Arc<PartitionLog>, ttl_ms: u64) -> Result<u64> {
    let names = log.subscription_names();
    if names.is_empty() {
        return Ok(0);
    }
    let cutoff = broker
        .clock()
        .now_ms()
        .saturating_sub(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
    // The first entry young enough to keep; everything before it has expired.
    let keep_from = log.index_at_time(cutoff).await?;
    let mut expired = 0;
    for name in names {
        // Through the subscription, so a live one's dispatcher sees the acknowledgement.
        let Some(sub) = log.subscription(&name) else {
            continue;
        };
        if keep_from > sub.cursor().mark_delete_index && keep_from > 0 {
            let before = sub.backlog();
            sub.ack_cumulative(keep_from - 1).await?;
            expired += before.saturating_sub(sub.backlog());
        }
    }
    if expired > 0 {
        tracing::info!(partition = %log.name(), expired, "message ttl expired messages");
    }
    Ok(expired)
}
