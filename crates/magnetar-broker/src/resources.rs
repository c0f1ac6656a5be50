//! What the broker keeps in the metadata store, and where. Every value is JSON with a
//! `format_version` so later versions can read what earlier ones wrote.
//!
//! | key | value |
//! |---|---|
//! | `/admin/clusters/{cluster}` | [`ClusterData`] |
//! | `/admin/policies/{tenant}` | [`TenantInfo`] |
//! | `/admin/policies/{tenant}/{namespace}` | [`NamespacePolicies`] |
//! | `/admin/topics/{tenant}/{namespace}/persistent/{topic}` | [`TopicMetadata`] |
//! | `/admin/producer-id-block` | [`ProducerIdBlock`] |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::names::{NamespaceName, TenantName, TopicName};

/// The format version written into every value; readers refuse newer ones.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterData {
    pub format_version: u32,
    pub service_url: String,
    pub broker_service_url: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantInfo {
    pub format_version: u32,
    #[serde(default)]
    pub admin_roles: Vec<String>,
    #[serde(default)]
    pub allowed_clusters: Vec<String>,
}

/// Namespace policies. Unset fields fall back to the broker's defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NamespacePolicies {
    pub format_version: u32,
    #[serde(default)]
    pub retention_time_ms: Option<u64>,
    #[serde(default)]
    pub retention_size_bytes: Option<u64>,
    #[serde(default)]
    pub message_ttl_s: Option<u64>,
    /// Overrides the broker's auto topic creation settings for this namespace.
    #[serde(default)]
    pub auto_topic_creation: Option<AutoTopicCreation>,
    /// Producers per topic partition (Pulsar front end); `None` is unlimited.
    #[serde(default)]
    pub max_producers_per_topic: Option<u32>,
    /// Consumers per topic partition, over all its subscriptions (Pulsar front end).
    #[serde(default)]
    pub max_consumers_per_topic: Option<u32>,
    /// Publish rate per topic partition, for producers of both protocols.
    #[serde(default)]
    pub publish_rate: Option<crate::publish_rate::PublishRate>,
    /// Who may produce and consume (Pulsar's `auth_policies`).
    #[serde(default)]
    pub auth_policies: crate::permissions::AuthPolicies,
    /// Pulsar's namespace `deduplicationEnabled`: unset follows the broker default
    /// (`brokerDeduplicationEnabled`).
    #[serde(default)]
    pub deduplication_enabled: Option<bool>,
    /// Pulsar's namespace `compactionThreshold`: a topic with `cleanup.policy=compact` is
    /// compacted once this many bytes are cleanable, whatever its dirty ratio; unset or `0`: off.
    #[serde(default)]
    pub compaction_threshold_bytes: Option<u64>,
    /// Pulsar's namespace `schemaCompatibilityStrategy` (a compatibility name, checked by the
    /// schema registry); unset follows the registry's global level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_compatibility_strategy: Option<String>,
    /// Pulsar's `isAllowAutoUpdateSchema`: whether a producer may add a new schema version
    /// (unset: allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_auto_update_allowed: Option<bool>,
    /// Pulsar's `schemaValidationEnforced`: a producer without a schema is refused on a topic
    /// that has one (unset: not enforced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_validation_enforced: Option<bool>,
    /// Defaults of Kafka topic configs (Kafka's names) for the namespace's topics: a topic's
    /// own config wins, then this, then Kafka's default. Only the log compaction keys
    /// ([`crate::compaction::NAMESPACE_DEFAULT_KEYS`]); checked when set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topic_config_defaults: BTreeMap<String, String>,
}

/// A namespace's auto topic creation override (Pulsar's `autoTopicCreationOverride`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoTopicCreation {
    pub allow: bool,
    pub partitioned: bool,
    /// Partitions of an auto-created partitioned topic; the broker's default when `None`.
    #[serde(default)]
    pub default_num_partitions: Option<u32>,
}

/// A topic. `partitioned == false` is a Pulsar non-partitioned topic: Kafka sees one partition
/// whose ledger is the topic itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub format_version: u32,
    pub partitioned: bool,
    pub partitions: u32,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    pub created_ms: i64,
    /// Stored entries an operator marked as skipped because they cannot be served (see
    /// [`crate::skipped`]): per partition, first message index -> message count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped_entries: BTreeMap<u32, BTreeMap<u64, u32>>,
    /// The namespace's topic config defaults ([`NamespacePolicies::topic_config_defaults`])
    /// as of when this was read through the broker; not stored with the topic.
    #[serde(skip)]
    pub namespace_defaults: BTreeMap<String, String>,
}

impl TopicMetadata {
    /// A config's effective value: the topic's own, else its namespace's default.
    pub fn config(&self, key: &str) -> Option<&str> {
        self.configs
            .get(key)
            .or_else(|| self.namespace_defaults.get(key))
            .map(String::as_str)
    }

    /// The number of partitions a Kafka client sees.
    pub fn partition_count(&self) -> u32 {
        if self.partitioned {
            self.partitions
        } else {
            1
        }
    }

    /// The ledger of Kafka partition `partition`: `None` is the topic itself.
    pub fn ledger_partition(&self, partition: u32) -> Option<u32> {
        self.partitioned.then_some(partition)
    }
}

pub(crate) fn cluster_key(cluster: &str) -> String {
    format!("/admin/clusters/{cluster}")
}

pub(crate) const TENANTS_PATH: &str = "/admin/policies";

pub(crate) fn tenant_key(tenant: &TenantName) -> String {
    format!("{TENANTS_PATH}/{tenant}")
}

pub(crate) fn namespace_key(namespace: &NamespaceName) -> String {
    format!(
        "{TENANTS_PATH}/{}/{}",
        namespace.tenant, namespace.namespace
    )
}

pub(crate) fn topics_path(namespace: &NamespaceName) -> String {
    format!(
        "/admin/topics/{}/{}/persistent",
        namespace.tenant, namespace.namespace
    )
}

pub(crate) fn topic_key(topic: &TopicName) -> String {
    format!("{}/{}", topics_path(&topic.namespace), topic.local)
}

pub(crate) const PRODUCER_ID_BLOCK_KEY: &str = "/admin/producer-id-block";

/// The next unreserved block of idempotent-producer ids.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProducerIdBlock {
    pub format_version: u32,
    pub next_block_start: i64,
}
