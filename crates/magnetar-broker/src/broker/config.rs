//! The broker's settings: [`BrokerConfig`] (the binary builds it from its config file) and what
//! it names.

use std::path::PathBuf;

use magnetar_storage::LedgerConfig;

use crate::names::{NamespaceName, TenantName};

/// The namespace that holds internal topics (consumer offsets, later transaction state).
pub const INTERNAL_NAMESPACE: (&str, &str) = ("public", "__kafka");

/// Protocol-neutral broker settings (the binary builds them from its config file).
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub cluster_name: String,
    /// Ledgers live under `data_dir/ledgers/{tenant}/{namespace}/persistent/{topic}`.
    pub data_dir: PathBuf,
    /// Where bare topic names land (KoP's `kafkaTenant`/`kafkaNamespace`).
    pub default_namespace: NamespaceName,
    pub allow_auto_topic_creation: bool,
    /// Topics auto-created for Kafka clients are partitioned (true) or non-partitioned (false).
    pub auto_topic_creation_partitioned: bool,
    /// The same for Pulsar clients (Pulsar's `allowAutoTopicCreationType`, non-partitioned by
    /// default); see [`Broker::topic_or_create_for`](crate::Broker::topic_or_create_for).
    pub pulsar_auto_topic_creation_partitioned: bool,
    pub default_num_partitions: u32,
    pub partitions_max: u32,
    pub producers_per_partition_max: usize,
    pub ledger: LedgerConfig,
    /// Service URLs recorded in the cluster data at first start.
    pub service_url: String,
    pub broker_service_url: String,
    /// Roles allowed everything (Pulsar's `superUserRoles`); see [`crate::permissions`].
    pub superuser_roles: Vec<String>,
    /// Pulsar's `authorizationEnabled`: the front ends check [`Broker::check_access`](crate::Broker::check_access) before
    /// serving a topic; off, every client may do everything.
    pub authorization_enabled: bool,
}

/// Which protocol's client a topic is auto-created for (their default types differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCreator {
    Kafka,
    Pulsar,
}

impl BrokerConfig {
    /// A standalone broker's defaults (those of `config/magnetar.toml`) over `data_dir`, for
    /// embedding and tests; override fields with struct-update syntax. The binary sets every field
    /// from its configuration instead.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            cluster_name: "standalone".into(),
            data_dir: data_dir.into(),
            default_namespace: NamespaceName {
                tenant: TenantName("public".into()),
                namespace: "default".into(),
            },
            allow_auto_topic_creation: true,
            auto_topic_creation_partitioned: true,
            pulsar_auto_topic_creation_partitioned: false,
            default_num_partitions: 1,
            partitions_max: 4096,
            producers_per_partition_max: 10_000,
            ledger: LedgerConfig::default(),
            service_url: "http://127.0.0.1:8080".into(),
            broker_service_url: "pulsar://127.0.0.1:6650".into(),
            superuser_roles: Vec::new(),
            authorization_enabled: false,
        }
    }
}
