//! The broker: one facade over the services that keep tenants, namespaces and topics in the
//! metadata store, the open partitions, producer ids and permissions.
//!
//! Read this file first: [`Broker`]'s public methods are the whole API the front ends and the
//! admin API call, grouped by service, each forwarding to the service that owns the state. The
//! services (crate-private, one file each):
//! - `records.rs` — `Records`: JSON records with a `format_version` in the metadata store;
//! - `tenants.rs` — `Tenants`: tenant records;
//! - `namespaces.rs` — `Namespaces`: namespace policies, updated with compare-and-set;
//! - `topics.rs` — `Topics`: topic metadata behind an in-memory cache, auto-creation, the
//!   topic config keys the broker enforces;
//! - `partitions.rs` — `Partitions`: the registry of open [`PartitionLog`]s, opening their
//!   ledgers (local, or shared under the bundle's fence in cluster mode), ownership checks,
//!   closing, deleting a topic's data;
//! - `producer_ids.rs` — `ProducerIds`: producer id blocks;
//! - `permissions.rs` — `Permissions`: authorization decisions and grants over the model in
//!   [`crate::permissions`].
//!
//! Passes that span services are functions over the broker: `retention.rs` (retention and
//! message TTL), `cluster.rs` (joining a cluster: its watch tasks); `config.rs` holds
//! [`BrokerConfig`]. Services never call the facade; where one operation needs two services
//! (deleting a topic, a policy change that moves publish rates) the facade does both. (Grants
//! and revokes write the namespace policies through `Namespaces` directly: they never change a
//! publish rate, so they skip that step.) Services share state only through cheap handles:
//! `Records` (the store), `PermissionsVersion` (the counter every permission write moves),
//! `Tenants` and `Namespaces` (stateless over the store), and the `Arc<BrokerConfig>`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use magnetar_metadata::MetadataStore;
use magnetar_storage::Clock;

use crate::cluster::{BrokerRecord, Bundle, ClusterMember};
use crate::error::{Error, Result};
use crate::names::{NamespaceName, TenantName, TopicName, TopicPartition};
use crate::partition::PartitionLog;
use crate::permissions::{
    Access, AclRule, AuthAction, AuthPolicies, DeniedAction, Grants, RuleAction,
};
use crate::resources::{ClusterData, NamespacePolicies, TenantInfo, TopicMetadata, FORMAT_VERSION};

mod cluster;
mod config;
mod namespaces;
mod partitions;
mod permissions;
mod producer_ids;
mod records;
mod retention;
mod tenants;
mod topics;

pub use config::{AutoCreator, BrokerConfig, INTERNAL_NAMESPACE};
pub use partitions::{LedgerCleanup, SegmentStoreFactory};
pub use producer_ids::PRODUCER_ID_BLOCK;
pub use retention::{effective_retention, RetentionSummary};
pub use topics::{RETENTION_BYTES, RETENTION_MS, SEGMENT_BYTES, SEGMENT_BYTES_MIN, SEGMENT_MS};

use namespaces::Namespaces;
use partitions::Partitions;
use permissions::{Permissions, PermissionsVersion};
use producer_ids::ProducerIds;
use records::Records;
use tenants::Tenants;
use topics::Topics;

/// The broker core, as the front ends see it. Each method forwards to the service that owns
/// what it touches (see the module documentation).
pub struct Broker {
    config: Arc<BrokerConfig>,
    clock: Arc<dyn Clock>,
    records: Records,
    tenants: Tenants,
    namespaces: Namespaces,
    topics: Topics,
    partitions: Partitions,
    producer_ids: ProducerIds,
    permissions: Permissions,
    /// Log compaction: the payload codec, the cleaner's limits and each partition's status.
    pub(crate) compaction: crate::compaction::CompactionBook,
    /// See [`SchemaFraming`].
    schema_framing: std::sync::RwLock<Option<Arc<dyn SchemaFraming>>>,
}

/// The Confluent Schema Registry id of a topic's Pulsar schema version (the bytes of a Pulsar
/// message's `schema_version`), when records of that version are to reach Kafka consumers
/// framed for Confluent's deserializers; `None` leaves them as they are. The schema registry
/// sits above the broker, so the binary sets it ([`Broker::set_schema_framing`]) and the Kafka
/// front end asks through it.
#[async_trait::async_trait]
pub trait SchemaFraming: Send + Sync {
    async fn confluent_id(&self, topic: &TopicName, schema_version: &[u8]) -> Option<u32>;
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("cluster", &self.config.cluster_name)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Opens the broker over `metadata`; at first start creates the cluster, the tenant
    /// `public` and the namespaces `public/default` and `public/__kafka`, as Pulsar standalone does.
    pub async fn open(
        config: BrokerConfig,
        metadata: Arc<dyn MetadataStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>> {
        Self::open_with_segment_stores(config, metadata, clock, partitions::local_segment_stores())
            .await
    }

    /// Like [`Broker::open`], with the segments of every partition in the stores `segment_stores`
    /// makes (cursors and the start index stay in the ledger directory).
    pub async fn open_with_segment_stores(
        config: BrokerConfig,
        metadata: Arc<dyn MetadataStore>,
        clock: Arc<dyn Clock>,
        segment_stores: SegmentStoreFactory,
    ) -> Result<Arc<Self>> {
        let config = Arc::new(config);
        let records = Records::new(metadata);
        let version = PermissionsVersion::default();
        let tenants = Tenants::new(records.clone(), version.clone());
        let namespaces = Namespaces::new(records.clone(), version.clone());
        let broker = Arc::new(Self {
            topics: Topics::new(
                config.clone(),
                clock.clone(),
                records.clone(),
                tenants.clone(),
                namespaces.clone(),
            ),
            partitions: Partitions::new(
                config.clone(),
                clock.clone(),
                namespaces.clone(),
                segment_stores,
            ),
            producer_ids: ProducerIds::new(records.clone()),
            permissions: Permissions::new(
                config.superuser_roles.clone(),
                config.authorization_enabled,
                version,
                tenants.clone(),
                namespaces.clone(),
            ),
            config,
            clock,
            records,
            tenants,
            namespaces,
            compaction: crate::compaction::CompactionBook::default(),
            schema_framing: std::sync::RwLock::new(None),
        });
        broker.bootstrap().await?;
        Ok(broker)
    }

    /// Creates what a first start needs and keeps what exists: the cluster record, the default
    /// and internal tenants and namespaces.
    async fn bootstrap(&self) -> Result<()> {
        let cluster = ClusterData {
            format_version: FORMAT_VERSION,
            service_url: self.config.service_url.clone(),
            broker_service_url: self.config.broker_service_url.clone(),
        };
        self.records
            .put_if_absent(
                &crate::resources::cluster_key(&self.config.cluster_name),
                &cluster,
            )
            .await?;
        let mut tenants = vec![
            self.config.default_namespace.tenant.clone(),
            TenantName::new(INTERNAL_NAMESPACE.0)?,
        ];
        tenants.dedup();
        for tenant in tenants {
            let info = TenantInfo {
                format_version: FORMAT_VERSION,
                admin_roles: Vec::new(),
                allowed_clusters: vec![self.config.cluster_name.clone()],
            };
            self.tenants.create_if_absent(&tenant, info).await?;
        }
        let namespaces = [
            NamespaceName::new("public", "default")?,
            NamespaceName::new(INTERNAL_NAMESPACE.0, INTERNAL_NAMESPACE.1)?,
            self.config.default_namespace.clone(),
        ];
        for namespace in namespaces {
            self.namespaces
                .create_if_absent(&namespace, NamespacePolicies::default())
                .await?;
        }
        Ok(())
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        self.records.store()
    }

    /// Parses a topic name in any of the three forms, bare names into the default namespace.
    pub fn parse_topic(&self, name: &str) -> Result<TopicName> {
        TopicName::parse(name, &self.config.default_namespace)
    }

    /// Flushes and closes every open ledger, then the metadata store.
    pub async fn shutdown(&self) -> Result<()> {
        let closed = self.partitions.close_all().await;
        self.records.store().close().await?;
        closed
    }

    // ---- cluster mode ----

    /// Cluster mode: serve only the partitions whose bundle `member` owns, with their ledgers on
    /// its shared WAL. Call once, before the front ends serve. Starts the tasks that close the
    /// partitions of bundles this broker stops owning, open those of bundles it gains, and drop
    /// cached topic metadata another broker changed (see `cluster.rs`).
    pub async fn join_cluster(self: &Arc<Self>, member: Arc<ClusterMember>) -> Result<()> {
        cluster::join(self, member).await
    }

    /// This broker's cluster membership; `None` standalone.
    pub fn cluster(&self) -> Option<&Arc<ClusterMember>> {
        self.partitions.cluster()
    }

    /// Closes the open partitions of `bundle` (split in `bundle_count` bundles); they reopen on
    /// their next use (Pulsar's bundle unload on a standalone broker). Returns how many closed.
    pub async fn close_bundle(&self, bundle: &Bundle, bundle_count: u32) -> usize {
        self.partitions.close_bundle(bundle, bundle_count).await
    }

    /// Cluster mode: refuses a partition whose bundle this broker does not own, naming the owner
    /// when one is known. Standalone: every partition is this broker's.
    pub fn check_owner(&self, topic: &TopicName, ledger_partition: Option<u32>) -> Result<()> {
        self.partitions.check_owner(topic, ledger_partition)
    }

    /// The broker serving ledger partition `ledger_partition` of `topic` (`None`: the topic is
    /// not partitioned): `None` for this one (always standalone), else the owner's registry
    /// record, with its Pulsar and HTTP addresses for lookups.
    pub fn serving_broker(
        &self,
        topic: &TopicName,
        ledger_partition: Option<u32>,
    ) -> Result<Option<BrokerRecord>> {
        self.partitions.serving_broker(topic, ledger_partition)
    }

    // ---- tenants ----

    pub async fn list_tenants(&self) -> Result<Vec<String>> {
        self.tenants.list().await
    }

    pub async fn tenant(&self, tenant: &TenantName) -> Result<Option<TenantInfo>> {
        self.tenants.get(tenant).await
    }

    pub async fn create_tenant(&self, tenant: &TenantName, info: TenantInfo) -> Result<()> {
        self.tenants.create(tenant, info).await
    }

    /// Replaces a tenant's info (Pulsar's "update tenant").
    pub async fn update_tenant(&self, tenant: &TenantName, info: TenantInfo) -> Result<()> {
        self.tenants.update(tenant, info).await
    }

    /// Deletes a tenant that has no namespace left.
    pub async fn delete_tenant(&self, tenant: &TenantName) -> Result<()> {
        self.tenants.delete(tenant).await
    }

    // ---- namespaces ----

    pub async fn list_namespaces(&self, tenant: &TenantName) -> Result<Vec<NamespaceName>> {
        self.namespaces.list(tenant).await
    }

    pub async fn namespace_policies(
        &self,
        namespace: &NamespaceName,
    ) -> Result<Option<NamespacePolicies>> {
        self.namespaces.policies(namespace).await
    }

    pub async fn create_namespace(
        &self,
        namespace: &NamespaceName,
        policies: NamespacePolicies,
    ) -> Result<()> {
        self.namespaces.create(namespace, policies).await
    }

    /// Deletes a namespace that has no topic left.
    pub async fn delete_namespace(&self, namespace: &NamespaceName) -> Result<()> {
        self.namespaces.delete(namespace).await
    }

    /// Applies `change` to a namespace's policies with compare-and-set, retrying on conflicts,
    /// then gives the namespace's open partitions the publish rate the policies now set, and
    /// drops the topic cache (its entries carry the namespace's topic config defaults).
    pub async fn update_namespace_policies(
        &self,
        namespace: &NamespaceName,
        change: impl FnMut(&mut NamespacePolicies),
    ) -> Result<NamespacePolicies> {
        let policies = self.namespaces.update(namespace, change);
        let policies = policies.await;
        self.topics.cache().clear();
        let policies = policies?;
        self.partitions.apply_publish_rate(namespace, &policies);
        Ok(policies)
    }

    /// Producers and consumers allowed per topic partition by the namespace policy (`None`:
    /// unlimited). The Pulsar front end enforces them; Kafka has no producer or consumer
    /// registration to limit.
    pub async fn topic_limits(&self, topic: &TopicName) -> Result<(Option<u32>, Option<u32>)> {
        self.namespaces.topic_limits(topic).await
    }

    // ---- topics ----

    pub async fn topic(&self, name: &TopicName) -> Result<Option<TopicMetadata>> {
        self.topics.get(name).await
    }

    /// Creates a topic: `partitions = None` is a non-partitioned topic.
    pub async fn create_topic(
        &self,
        name: &TopicName,
        partitions: Option<u32>,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMetadata> {
        self.topics.create(name, partitions, configs).await
    }

    /// Looks a topic up, creating it when auto-creation allows it: the namespace's
    /// `auto_topic_creation` override if set, else the broker's settings for Kafka clients.
    pub async fn topic_or_create(&self, name: &TopicName) -> Result<TopicMetadata> {
        self.topics.get_or_create(name, AutoCreator::Kafka).await
    }

    /// [`Broker::topic_or_create`] for a client of one protocol: without a namespace override,
    /// Kafka clients get `auto_topic_creation_partitioned`, Pulsar clients
    /// `pulsar_auto_topic_creation_partitioned` (KoP's requirement and Pulsar's default differ).
    pub async fn topic_or_create_for(
        &self,
        name: &TopicName,
        creator: AutoCreator,
    ) -> Result<TopicMetadata> {
        self.topics.get_or_create(name, creator).await
    }

    /// Deletes a topic and its data: its partitions close and their data goes first, then its
    /// record (a failure keeps the topic, so the delete can be retried).
    pub async fn delete_topic(&self, name: &TopicName) -> Result<()> {
        let metadata = self.topics.existing(name).await?;
        self.partitions.delete_topic_data(name, &metadata).await?;
        self.topics.delete_record(name).await
    }

    pub async fn list_topics(
        &self,
        namespace: &NamespaceName,
    ) -> Result<Vec<(TopicName, TopicMetadata)>> {
        self.topics.list(namespace).await
    }

    /// Every topic of every namespace, internal ones included when asked.
    pub async fn list_all_topics(
        &self,
        include_internal: bool,
    ) -> Result<Vec<(TopicName, TopicMetadata)>> {
        self.topics.list_all(include_internal).await
    }

    /// Raises a partitioned topic's partition count (never lowers it).
    pub async fn set_partition_count(&self, name: &TopicName, count: u32) -> Result<TopicMetadata> {
        self.topics.set_partition_count(name, count).await
    }

    /// Applies `change` to a topic's metadata with compare-and-set, retrying on conflicts.
    pub async fn update_topic(
        &self,
        name: &TopicName,
        change: impl FnMut(&mut TopicMetadata) -> Result<()>,
    ) -> Result<TopicMetadata> {
        self.topics.update(name, change).await
    }

    /// Applies retention to every partition of every topic: the topic's `retention.ms` /
    /// `retention.bytes`, else its namespace's policy, else infinite (Pulsar's model: nothing is
    /// deleted unless a policy says so), and the namespaces' message TTL to their subscriptions.
    pub async fn enforce_retention(&self) -> Result<RetentionSummary> {
        retention::enforce(self).await
    }

    // ---- partitions ----

    /// The open log of one partition, opening (and recovering) its ledger on first use.
    pub async fn partition(&self, tp: &TopicPartition) -> Result<Arc<PartitionLog>> {
        let metadata = self.topics.existing(&tp.topic).await?;
        self.partitions.get(tp, &metadata).await
    }

    /// [`Broker::partition`] for background passes over every topic: `None` when the topic was
    /// deleted or shrunk since it was listed.
    pub(crate) async fn partition_if_present(
        &self,
        tp: &TopicPartition,
    ) -> Result<Option<Arc<PartitionLog>>> {
        match self.partition(tp).await {
            Ok(log) => Ok(Some(log)),
            Err(Error::TopicNotFound { .. } | Error::PartitionNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The partitions currently open.
    pub async fn open_partitions(&self) -> Vec<Arc<PartitionLog>> {
        self.partitions.open_logs()
    }

    /// Sets what deleting a topic also deletes for each of its ledger directories (tiered
    /// storage: the partition's objects). A failure keeps the topic (the delete can be retried).
    pub fn set_ledger_cleanup(&self, cleanup: Option<LedgerCleanup>) {
        self.partitions.set_ledger_cleanup(cleanup);
    }

    /// Sets how Kafka fetches frame Pulsar records that carry a schema version.
    pub fn set_schema_framing(&self, framing: Option<Arc<dyn SchemaFraming>>) {
        *self
            .schema_framing
            .write()
            .unwrap_or_else(|e| e.into_inner()) = framing;
    }

    pub fn schema_framing(&self) -> Option<Arc<dyn SchemaFraming>> {
        self.schema_framing
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    // ---- producer ids ----

    /// Allocates a producer id for an idempotent producer. Ids are taken from the metadata store
    /// in blocks of [`PRODUCER_ID_BLOCK`] with compare-and-set, so they never repeat across
    /// restarts (or across brokers).
    pub async fn allocate_producer_id(&self) -> Result<i64> {
        self.producer_ids.allocate().await
    }

    // ---- permissions (the rules: crate::permissions) ----

    /// Changes whenever a policy or a tenant's admin roles change: a cached decision taken
    /// under another version is stale.
    pub fn permissions_version(&self) -> u64 {
        self.permissions.version()
    }

    pub fn is_superuser(&self, role: &str) -> bool {
        self.permissions.is_superuser(role)
    }

    /// Superuser, or one of the tenant's admin roles.
    pub async fn is_tenant_admin(&self, role: &str, tenant: &TenantName) -> Result<bool> {
        self.permissions.is_tenant_admin(role, tenant).await
    }

    /// Is authorization on (Pulsar's `authorizationEnabled`)?
    pub fn authorization_enabled(&self) -> bool {
        self.permissions.authorization_enabled()
    }

    /// The front ends' check: with authorization off everything is allowed; with it on, a
    /// client without a role (unauthenticated) is refused everything, and a role gets what
    /// [`Broker::authorize`] decides.
    pub async fn check_access(
        &self,
        role: Option<&str>,
        topic: &TopicName,
        access: &Access,
    ) -> Result<bool> {
        self.permissions.check_access(role, topic, access).await
    }

    /// [`Broker::check_access`] for a client connected from `host` (rules of one host apply).
    pub async fn check_access_from(
        &self,
        role: Option<&str>,
        host: Option<IpAddr>,
        topic: &TopicName,
        access: &Access,
    ) -> Result<bool> {
        self.permissions
            .check_access_from(role, host, topic, access)
            .await
    }

    /// May `role` administer `tenant` (superuser or one of its admin roles)? Always with
    /// authorization off; never for a client without a role.
    pub async fn check_tenant_admin(
        &self,
        role: Option<&str>,
        tenant: &TenantName,
    ) -> Result<bool> {
        self.permissions.check_tenant_admin(role, tenant).await
    }

    /// May `role` do cluster-wide operations (superusers only)? Always with authorization off.
    pub fn check_superuser(&self, role: Option<&str>) -> bool {
        self.permissions.check_superuser(role)
    }

    /// May `role` use the Kafka group `group`, whose permissions live in `namespace` (the
    /// client's namespace)? Tenant admins may; others per [`AuthPolicies::allows_group`].
    pub async fn authorize_group(
        &self,
        role: &str,
        namespace: &NamespaceName,
        group: &str,
    ) -> Result<bool> {
        self.permissions
            .authorize_group(role, namespace, group)
            .await
    }

    /// [`Broker::authorize_group`] for a client connected from `host`.
    pub async fn authorize_group_from(
        &self,
        role: &str,
        host: Option<IpAddr>,
        namespace: &NamespaceName,
        group: &str,
    ) -> Result<bool> {
        self.permissions
            .authorize_group_from(role, host, namespace, group)
            .await
    }

    /// [`Broker::authorize_group`] behind the authorization switch, as [`Broker::check_access`].
    pub async fn check_group(
        &self,
        role: Option<&str>,
        namespace: &NamespaceName,
        group: &str,
    ) -> Result<bool> {
        self.permissions.check_group(role, namespace, group).await
    }

    /// [`Broker::check_group`] for a client connected from `host`.
    pub async fn check_group_from(
        &self,
        role: Option<&str>,
        host: Option<IpAddr>,
        namespace: &NamespaceName,
        group: &str,
    ) -> Result<bool> {
        self.permissions
            .check_group_from(role, host, namespace, group)
            .await
    }

    /// Whether a DENY rule refuses `role` from `host` the transactional id `id` of `namespace`
    /// (deny overrides any allow, including the namespace produce permission Kafka transactional
    /// ids are mapped onto). Superusers are never refused.
    pub async fn transactional_id_denied(
        &self,
        role: Option<&str>,
        host: Option<IpAddr>,
        namespace: &NamespaceName,
        id: &str,
        wanted: RuleAction,
    ) -> Result<bool> {
        self.permissions
            .transactional_id_denied(role, host, namespace, id, wanted)
            .await
    }

    /// May `role` from `host` use the Kafka transactional id `id` of `namespace` (the client's
    /// namespace) for `wanted`? Always with authorization off; never without a role; superusers
    /// always; tenant admins unless a deny rule refuses them; other roles per
    /// [`AuthPolicies::allows_transactional_id`] (an allow rule is needed, as in Kafka).
    pub async fn check_transactional_id(
        &self,
        role: Option<&str>,
        host: Option<IpAddr>,
        namespace: &NamespaceName,
        id: &str,
        wanted: RuleAction,
    ) -> Result<bool> {
        self.permissions
            .check_transactional_id(role, host, namespace, id, wanted)
            .await
    }

    /// May `role` do `access` on `topic`? (See [`crate::permissions`] for the rules.) An
    /// unknown namespace grants nothing but to superusers and tenant admins. A deny rule
    /// refuses tenant admins too (Kafka: deny overrides allow); superusers bypass it.
    pub async fn authorize(&self, role: &str, topic: &TopicName, access: &Access) -> Result<bool> {
        self.permissions.authorize(role, topic, access).await
    }

    /// [`Broker::authorize`] for a client connected from `host` (`None`: not known; only rules
    /// of every host apply).
    pub async fn authorize_from(
        &self,
        role: &str,
        host: Option<IpAddr>,
        topic: &TopicName,
        access: &Access,
    ) -> Result<bool> {
        self.permissions
            .authorize_from(role, host, topic, access)
            .await
    }

    /// The namespace's own grants (role -> actions on every topic of it).
    pub async fn namespace_permissions(&self, namespace: &NamespaceName) -> Result<Grants> {
        self.permissions.namespace_permissions(namespace).await
    }

    /// Grants `actions` to `role` on every topic of the namespace (replacing its earlier grant).
    pub async fn grant_namespace_permission(
        &self,
        namespace: &NamespaceName,
        role: &str,
        actions: BTreeSet<AuthAction>,
    ) -> Result<()> {
        self.permissions
            .grant_namespace_permission(namespace, role, actions)
            .await
    }

    pub async fn revoke_namespace_permission(
        &self,
        namespace: &NamespaceName,
        role: &str,
    ) -> Result<()> {
        self.permissions
            .revoke_namespace_permission(namespace, role)
            .await
    }

    /// The grants that apply to a topic: its namespace's merged with its own.
    pub async fn topic_permissions(&self, topic: &TopicName) -> Result<Grants> {
        self.permissions.topic_permissions(topic).await
    }

    pub async fn grant_topic_permission(
        &self,
        topic: &TopicName,
        role: &str,
        actions: BTreeSet<AuthAction>,
    ) -> Result<()> {
        self.permissions
            .grant_topic_permission(topic, role, actions)
            .await
    }

    pub async fn revoke_topic_permission(&self, topic: &TopicName, role: &str) -> Result<()> {
        self.permissions.revoke_topic_permission(topic, role).await
    }

    /// Restricts a subscription (Kafka group) of the namespace to `roles` (added to those
    /// already allowed).
    pub async fn grant_subscription_permission(
        &self,
        namespace: &NamespaceName,
        subscription: &str,
        roles: &BTreeSet<String>,
    ) -> Result<()> {
        self.permissions
            .grant_subscription_permission(namespace, subscription, roles)
            .await
    }

    pub async fn revoke_subscription_permission(
        &self,
        namespace: &NamespaceName,
        subscription: &str,
        role: &str,
    ) -> Result<()> {
        self.permissions
            .revoke_subscription_permission(namespace, subscription, role)
            .await
    }

    /// Adds (`add`) or removes deny rules of `role`: on every topic of the namespace, or on
    /// `topic` (which must be in `namespace`). A role left with nothing denied is dropped.
    pub async fn change_denies(
        &self,
        namespace: &NamespaceName,
        topic: Option<&TopicName>,
        role: &str,
        actions: &BTreeSet<DeniedAction>,
        add: bool,
    ) -> Result<()> {
        self.permissions
            .change_denies(namespace, topic, role, actions, add)
            .await
    }

    /// Adds (`add`) or removes a deny rule refusing `role` the subscription (Kafka group).
    pub async fn change_subscription_deny(
        &self,
        namespace: &NamespaceName,
        subscription: &str,
        role: &str,
        add: bool,
    ) -> Result<()> {
        self.permissions
            .change_subscription_deny(namespace, subscription, role, add)
            .await
    }

    /// Adds (`add`) or removes a rule of the namespace (a prefixed, host-bound or
    /// transactional-id Kafka ACL). Adding a rule already there, or removing one that is not, is
    /// no change.
    pub async fn change_acl_rule(
        &self,
        namespace: &NamespaceName,
        rule: &AclRule,
        add: bool,
    ) -> Result<()> {
        self.permissions.change_acl_rule(namespace, rule, add).await
    }

    /// The namespace's permissions: Pulsar's auth policies, grants and deny rules.
    pub async fn auth_policies(&self, namespace: &NamespaceName) -> Result<AuthPolicies> {
        self.permissions.auth_policies(namespace).await
    }

    /// Subscription -> roles of the namespace.
    pub async fn subscription_permissions(
        &self,
        namespace: &NamespaceName,
    ) -> Result<BTreeMap<String, BTreeSet<String>>> {
        self.permissions.subscription_permissions(namespace).await
    }
}
