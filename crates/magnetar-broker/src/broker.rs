//! The broker: tenants, namespaces and topics in the metadata store, and the open partitions.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use magnetar_metadata::{Expect, MetadataError, MetadataStore};
use magnetar_storage::{
    wal::{OwnerFence, SharedLedger},
    Clock, LedgerConfig, LocalSegmentStore, ManagedLedger, SegmentStore, StorageError,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::cluster::{ClusterMember, PartitionOwner};
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::names::{NamespaceName, TenantName, TopicName, TopicPartition};
use crate::partition::PartitionLog;
use crate::registry::{LedgerKey, PartitionRegistry};
use crate::resources::*;

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
    /// default); see [`Broker::topic_or_create_for`].
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
    /// Pulsar's `authorizationEnabled`: the front ends check [`Broker::check_access`] before
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

pub struct Broker {
    config: BrokerConfig,
    metadata: Arc<dyn MetadataStore>,
    clock: Arc<dyn Clock>,
    /// The open partitions: sharded, one open-once cell per partition (see [`crate::registry`]).
    partitions: PartitionRegistry,
    segment_stores: SegmentStoreFactory,
    producer_ids: Mutex<IdRange>,
    /// See [`Broker::permissions_version`].
    pub(crate) permissions_version: std::sync::atomic::AtomicU64,
    /// Topic metadata read on every produce and fetch, kept in memory (see [`TopicCache`]).
    topic_cache: TopicCache,
    /// Called with a deleted partition's ledger directory before it is removed (tiered storage
    /// deletes the partition's objects there); see [`Broker::set_ledger_cleanup`].
    ledger_cleanup: std::sync::RwLock<Option<LedgerCleanup>>,
    /// Cluster mode: this broker's membership (ownership, the shared WAL); unset standalone.
    cluster: std::sync::OnceLock<Arc<ClusterMember>>,
    /// Held while partitions of bundles this broker no longer owns are closed, so a release
    /// can wait for a close already under way (see [`Broker::close_partitions_of`]).
    closing: tokio::sync::Mutex<()>,
    /// Log compaction: the payload codec, the cleaner's limits and each partition's status.
    pub(crate) compaction: crate::compaction::CompactionBook,
}

/// Deletes what a ledger keeps outside its directory (a tiered ledger's objects); blocking.
pub type LedgerCleanup = Arc<dyn Fn(&Path) -> Result<(), StorageError> + Send + Sync>;

/// Makes the segment store of one partition's ledger directory: local files by default; the seam
/// for object storage later, and for tests that inject slow or failing storage.
pub type SegmentStoreFactory =
    Arc<dyn Fn(&Path) -> Result<Arc<dyn SegmentStore>, StorageError> + Send + Sync>;

/// Segments as local files in the ledger directory.
fn local_segment_stores() -> SegmentStoreFactory {
    Arc::new(|dir: &Path| Ok(Arc::new(LocalSegmentStore::new(dir)?) as Arc<dyn SegmentStore>))
}

/// Partitions closed at once when a broker loses bundles (cluster mode).
const CLOSE_CONCURRENCY: usize = 64;

/// Partitions opened at once when a broker gains bundles (cluster mode).
const OPEN_CONCURRENCY: usize = 8;

/// Most topics whose metadata is kept in memory; past it the cache starts over.
const TOPIC_CACHE_MAX: usize = 100_000;

/// A cache of topic metadata in front of the metadata store. Every write of a topic goes through
/// this broker, which drops the entry and bumps `epoch` after the store accepted it; a reader
/// only fills the cache if no write happened since it started reading the store, so it never
/// installs a value older than the store's. (Several brokers on one store would need the store's
/// watch to invalidate too; standalone has one.)
#[derive(Default)]
struct TopicCache {
    entries: std::sync::RwLock<HashMap<TopicName, TopicMetadata>>,
    epoch: std::sync::atomic::AtomicU64,
}

impl TopicCache {
    fn get(&self, name: &TopicName) -> Option<TopicMetadata> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    fn fill(&self, name: &TopicName, metadata: &TopicMetadata, read_at_epoch: u64) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if self.epoch() != read_at_epoch {
            return;
        }
        if entries.len() >= TOPIC_CACHE_MAX {
            entries.clear();
        }
        entries.insert(name.clone(), metadata.clone());
    }

    /// Drops the entry of a topic metadata key (`/admin/topics/...`), or everything when the key
    /// does not parse.
    fn invalidate_key(&self, key: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|name, _| crate::resources::topic_key(name) != key);
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.clear();
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn invalidate(&self, name: &TopicName) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.remove(name);
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Topic policy keys the broker enforces itself (Kafka's names, which the Kafka front end stores
/// and a Pulsar topic policy maps onto). `-1` means unlimited.
pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const SEGMENT_BYTES: &str = "segment.bytes";
pub const SEGMENT_MS: &str = "segment.ms";
/// Smallest segment a topic's `segment.bytes` may ask for (Kafka's own minimum is 14 bytes,
/// which would mean a file per entry).
pub const SEGMENT_BYTES_MIN: u64 = 4096;

/// What one retention pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionSummary {
    pub partitions_checked: u64,
    pub segments_deleted: u64,
    pub bytes_deleted: u64,
    /// Messages acknowledged on subscriptions by message TTL.
    pub messages_expired: u64,
}

/// A non-negative numeric topic config; `-1` or absent is `None`.
fn config_value(metadata: &TopicMetadata, key: &str) -> Option<u64> {
    metadata
        .configs
        .get(key)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .and_then(|v| u64::try_from(v).ok())
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

/// How many producer ids one metadata write reserves.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

#[derive(Debug, Default)]
struct IdRange {
    next: i64,
    end: i64,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("cluster", &self.config.cluster_name)
            .finish_non_exhaustive()
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::Metadata(format!("cannot encode value: {e}")))
}

fn from_json<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T> {
    #[derive(serde::Deserialize)]
    struct Probe {
        format_version: u32,
    }
    let probe: Probe = serde_json::from_slice(value)
        .map_err(|e| Error::Metadata(format!("cannot decode '{key}': {e}")))?;
    if probe.format_version > FORMAT_VERSION {
        return Err(Error::Metadata(format!(
            "'{key}' has format version {} and this broker reads up to {FORMAT_VERSION}",
            probe.format_version
        )));
    }
    serde_json::from_slice(value)
        .map_err(|e| Error::Metadata(format!("cannot decode '{key}': {e}")))
}

impl Broker {
    /// Opens the broker over `metadata`; at first start creates the cluster, the tenant
    /// `public` and the namespaces `public/default` and `public/__kafka`, as Pulsar standalone does.
    pub async fn open(
        config: BrokerConfig,
        metadata: Arc<dyn MetadataStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>> {
        Self::open_with_segment_stores(config, metadata, clock, local_segment_stores()).await
    }

    /// Like [`Broker::open`], with the segments of every partition in the stores `segment_stores`
    /// makes (cursors and the start index stay in the ledger directory).
    pub async fn open_with_segment_stores(
        config: BrokerConfig,
        metadata: Arc<dyn MetadataStore>,
        clock: Arc<dyn Clock>,
        segment_stores: SegmentStoreFactory,
    ) -> Result<Arc<Self>> {
        let broker = Arc::new(Self {
            config,
            metadata,
            clock,
            partitions: PartitionRegistry::default(),
            segment_stores,
            producer_ids: Mutex::new(IdRange::default()),
            permissions_version: std::sync::atomic::AtomicU64::new(0),
            topic_cache: TopicCache::default(),
            ledger_cleanup: std::sync::RwLock::new(None),
            cluster: std::sync::OnceLock::new(),
            closing: tokio::sync::Mutex::new(()),
            compaction: crate::compaction::CompactionBook::default(),
        });
        broker.bootstrap().await?;
        Ok(broker)
    }

    /// Cluster mode: serve only the partitions whose bundle `member` owns, with their ledgers on
    /// its shared WAL. Call once, before the front ends serve. Starts two tasks: one closes the
    /// open partitions of every bundle this broker stops owning (their next request is answered
    /// "not the owner", and the new owner's open fences anything still in flight here); one
    /// drops cached topic metadata whenever another broker changes a topic.
    pub async fn join_cluster(self: &Arc<Self>, member: Arc<ClusterMember>) -> Result<()> {
        self.cluster
            .set(member.clone())
            .map_err(|_| Error::InvalidRequest("the broker is already in a cluster".into()))?;
        for namespace in [
            self.config.default_namespace.clone(),
            NamespaceName::new(INTERNAL_NAMESPACE.0, INTERNAL_NAMESPACE.1)?,
        ] {
            member.add_namespace(&namespace);
        }

        // Every broker takes part in assigning the bundles of every namespace (a namespace
        // only some brokers knew would leave its bundles of the others unowned): the existing
        // ones now, new ones as the store announces them.
        let weak = Arc::downgrade(self);
        let mut namespaces = self.metadata.watch("/admin/policies")?;
        tokio::spawn(async move {
            loop {
                let event = namespaces.recv().await;
                let Some(broker) = weak.upgrade() else { return };
                let Some(member) = broker.cluster.get() else {
                    return;
                };
                match event {
                    Ok(event) => {
                        let parts: Vec<&str> = event
                            .key
                            .trim_start_matches("/admin/policies/")
                            .split('/')
                            .collect();
                        if let [tenant, namespace] = parts.as_slice() {
                            if let Ok(ns) = NamespaceName::new(tenant, namespace) {
                                member.add_namespace(&ns);
                            }
                        }
                    }
                    Err(magnetar_metadata::WatchError::Lagged { .. }) => {
                        broker.add_all_namespaces(member).await
                    }
                    Err(magnetar_metadata::WatchError::Closed) => return,
                }
            }
        });
        // After the watch started, so no namespace falls between the two.
        self.add_all_namespaces(&member).await;
        // A release (unload, rebalancing, shutdown) closes the bundle's partitions before its
        // owner key goes: in-flight appends finish, snapshots are written, producers and
        // consumers are told, and only then may another broker claim it.
        let weak = Arc::downgrade(self);
        member
            .ownership()
            .set_drain(Arc::new(move |bundle: crate::cluster::Bundle| {
                let weak = weak.clone();
                Box::pin(async move {
                    if let Some(broker) = weak.upgrade() {
                        broker.close_partitions_of(&bundle).await;
                    }
                })
            }));
        let weak = Arc::downgrade(self);
        let mut owned = member.ownership().owned();
        tokio::spawn(async move {
            let mut before = std::collections::BTreeSet::new();
            loop {
                let current: std::collections::BTreeSet<_> =
                    owned.borrow_and_update().keys().cloned().collect();
                let Some(broker) = weak.upgrade() else { return };
                broker.close_unowned(&current).await;
                // Bundles just gained (claimed from a dead broker, or adopted again): open their
                // partitions now, several at once, rather than one by one as clients come back.
                let gained: Vec<_> = current.difference(&before).cloned().collect();
                if !gained.is_empty() {
                    let warm = broker.clone();
                    tokio::spawn(async move { warm.open_bundles(gained).await });
                }
                before = current;
                drop(broker);
                if owned.changed().await.is_err() {
                    return;
                }
            }
        });
        let weak = Arc::downgrade(self);
        let mut watch = self.metadata.watch("/admin/topics")?;
        tokio::spawn(async move {
            loop {
                let result = watch.recv().await;
                let Some(broker) = weak.upgrade() else { return };
                match result {
                    Ok(event) => broker.topic_cache.invalidate_key(&event.key),
                    Err(magnetar_metadata::WatchError::Lagged { .. }) => broker.topic_cache.clear(),
                    Err(magnetar_metadata::WatchError::Closed) => return,
                }
            }
        });
        Ok(())
    }

    /// Gives every namespace in the store to the cluster's bundle assignment.
    async fn add_all_namespaces(&self, member: &ClusterMember) {
        let tenants = match self.list_tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list tenants for bundle assignment");
                return;
            }
        };
        for tenant in tenants {
            let Ok(tenant) = TenantName::new(&tenant) else {
                continue;
            };
            match self.list_namespaces(&tenant).await {
                Ok(namespaces) => namespaces.iter().for_each(|ns| member.add_namespace(ns)),
                Err(e) => {
                    tracing::warn!(%tenant, error = %e, "cannot list namespaces for bundle assignment")
                }
            }
        }
    }

    /// This broker's cluster membership; `None` standalone.
    pub fn cluster(&self) -> Option<&Arc<ClusterMember>> {
        self.cluster.get()
    }

    /// Closes the open partitions of `bundle` (split in `bundle_count` bundles); they reopen on
    /// their next use (Pulsar's bundle unload on a standalone broker). Returns how many closed.
    pub async fn close_bundle(&self, bundle: &crate::cluster::Bundle, bundle_count: u32) -> usize {
        let closing = self.partitions.remove_where(|(topic, partition)| {
            crate::cluster::Bundle::of_topic(topic, *partition, bundle_count)
                .is_ok_and(|b| &b == bundle)
        });
        let count = closing.len();
        for slot in closing {
            if let Some(log) = slot.settled().await {
                if let Err(e) = log.close().await {
                    tracing::debug!(partition = %log.name(), error = %e, "closing an unloaded partition");
                }
            }
        }
        count
    }

    /// Opens every partition of `bundles` (cluster mode, when this broker gains them), at most
    /// [`OPEN_CONCURRENCY`] at a time: a taken-over partition's ledger takeover and producer
    /// state rebuild happen before clients ask, not in series as their retries arrive. Failures
    /// are left to the next request (logged at debug).
    async fn open_bundles(self: Arc<Self>, bundles: Vec<crate::cluster::Bundle>) {
        use futures_util::StreamExt;
        let Some(member) = self.cluster.get() else {
            return;
        };
        let count = member.bundles_per_namespace();
        let started = std::time::Instant::now();
        let mut partitions = Vec::new();
        let namespaces: std::collections::BTreeSet<_> =
            bundles.iter().map(|b| b.namespace.clone()).collect();
        for namespace in namespaces {
            let topics = match self.list_topics(&namespace).await {
                Ok(topics) => topics,
                Err(e) => {
                    tracing::debug!(%namespace, error = %e, "listing topics to open a gained bundle");
                    continue;
                }
            };
            for (topic, metadata) in topics {
                for p in 0..metadata.partition_count() {
                    let bundle = crate::cluster::Bundle::of_topic(
                        &topic,
                        metadata.ledger_partition(p),
                        count,
                    );
                    if bundle.is_ok_and(|b| bundles.contains(&b)) {
                        partitions.push(TopicPartition {
                            topic: topic.clone(),
                            partition: p,
                        });
                    }
                }
            }
        }
        let total = partitions.len();
        futures_util::stream::iter(partitions)
            .for_each_concurrent(OPEN_CONCURRENCY, |tp| {
                let broker = self.clone();
                async move {
                    if let Err(e) = broker.partition(&tp).await {
                        tracing::debug!(partition = %tp, error = %e, "opening a gained partition");
                    }
                }
            })
            .await;
        tracing::info!(
            bundles = bundles.len(),
            partitions = total,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened the partitions of gained bundles"
        );
    }

    /// Closes the open partitions of `bundle` (cluster mode), after any close of partitions
    /// of lost bundles under way.
    async fn close_partitions_of(&self, bundle: &crate::cluster::Bundle) {
        self.close_partitions_where(|b| b == Some(bundle)).await;
    }

    /// Closes every open partition whose bundle is not in `owned` (cluster mode).
    async fn close_unowned(&self, owned: &std::collections::BTreeSet<crate::cluster::Bundle>) {
        self.close_partitions_where(|b| b.is_none_or(|b| !owned.contains(b)))
            .await;
    }

    /// Closes the open partitions whose bundle (`None`: it cannot be computed) `lost` picks,
    /// one pass at a time (see `closing`) and concurrently within a pass: a close may wait for
    /// the metadata store (the producer snapshot), which is slow or unreachable exactly when a
    /// fenced broker drops everything.
    async fn close_partitions_where(&self, lost: impl Fn(Option<&crate::cluster::Bundle>) -> bool) {
        let Some(member) = self.cluster.get() else {
            return;
        };
        let _pass = self.closing.lock().await;
        let closing = self.partitions.remove_where(|(topic, partition)| {
            lost(member.bundle_of(topic, *partition).ok().as_ref())
        });
        use futures_util::StreamExt;
        futures_util::stream::iter(closing)
            .for_each_concurrent(CLOSE_CONCURRENCY, |slot| async move {
                if let Some(log) = slot.settled().await {
                    tracing::info!(partition = %log.name(), "bundle moved away: closing the partition");
                    if let Err(e) = log.close().await {
                        tracing::debug!(partition = %log.name(), error = %e, "closing a partition that moved");
                    }
                }
            })
            .await;
    }

    /// Sets what deleting a topic also deletes for each of its ledger directories (tiered
    /// storage: the partition's objects). A failure keeps the topic (the delete can be retried).
    pub fn set_ledger_cleanup(&self, cleanup: Option<LedgerCleanup>) {
        *self
            .ledger_cleanup
            .write()
            .unwrap_or_else(|e| e.into_inner()) = cleanup;
    }

    async fn bootstrap(&self) -> Result<()> {
        let cluster = ClusterData {
            format_version: FORMAT_VERSION,
            service_url: self.config.service_url.clone(),
            broker_service_url: self.config.broker_service_url.clone(),
        };
        self.put_if_absent(&cluster_key(&self.config.cluster_name), &cluster)
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
            self.put_if_absent(&tenant_key(&tenant), &info).await?;
        }
        let namespaces = [
            NamespaceName::new("public", "default")?,
            NamespaceName::new(INTERNAL_NAMESPACE.0, INTERNAL_NAMESPACE.1)?,
            self.config.default_namespace.clone(),
        ];
        for namespace in namespaces {
            let policies = NamespacePolicies {
                format_version: FORMAT_VERSION,
                ..Default::default()
            };
            self.put_if_absent(&namespace_key(&namespace), &policies)
                .await?;
        }
        Ok(())
    }

    async fn put_if_absent<T: Serialize>(&self, key: &str, value: &T) -> Result<bool> {
        match self
            .metadata
            .put(key, to_json(value)?, Expect::Absent)
            .await
        {
            Ok(_) => Ok(true),
            Err(MetadataError::BadVersion { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, u64)>> {
        match self.metadata.get(key).await? {
            Some(v) => Ok(Some((from_json(key, &v.value)?, v.version))),
            None => Ok(None),
        }
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.metadata
    }

    /// Parses a topic name in any of the three forms, bare names into the default namespace.
    pub fn parse_topic(&self, name: &str) -> Result<TopicName> {
        TopicName::parse(name, &self.config.default_namespace)
    }

    // ---- tenants and namespaces ----

    pub async fn list_tenants(&self) -> Result<Vec<String>> {
        Ok(self.metadata.list_children(TENANTS_PATH).await?)
    }

    pub async fn tenant(&self, tenant: &TenantName) -> Result<Option<TenantInfo>> {
        Ok(self.get_json(&tenant_key(tenant)).await?.map(|(v, _)| v))
    }

    pub async fn create_tenant(&self, tenant: &TenantName, mut info: TenantInfo) -> Result<()> {
        info.format_version = FORMAT_VERSION;
        if !self.put_if_absent(&tenant_key(tenant), &info).await? {
            return Err(Error::TenantAlreadyExists(tenant.to_string()));
        }
        Ok(())
    }

    pub async fn delete_tenant(&self, tenant: &TenantName) -> Result<()> {
        if !self.list_namespaces(tenant).await?.is_empty() {
            return Err(Error::NotEmpty(format!("tenant '{tenant}'")));
        }
        match self.metadata.delete(&tenant_key(tenant), Expect::Any).await {
            Ok(()) => {
                self.permissions_changed();
                Ok(())
            }
            Err(MetadataError::NotFound { .. }) => Err(Error::TenantNotFound(tenant.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_namespaces(&self, tenant: &TenantName) -> Result<Vec<NamespaceName>> {
        if !self.metadata.exists(&tenant_key(tenant)).await? {
            return Err(Error::TenantNotFound(tenant.to_string()));
        }
        self.metadata
            .list_children(&tenant_key(tenant))
            .await?
            .into_iter()
            .map(|ns| NamespaceName::new(tenant.as_str(), &ns))
            .collect()
    }

    /// Replaces a tenant's info (Pulsar's "update tenant").
    pub async fn update_tenant(&self, tenant: &TenantName, mut info: TenantInfo) -> Result<()> {
        let key = tenant_key(tenant);
        let Some((_, version)) = self.get_json::<TenantInfo>(&key).await? else {
            return Err(Error::TenantNotFound(tenant.to_string()));
        };
        info.format_version = FORMAT_VERSION;
        match self
            .metadata
            .put(&key, to_json(&info)?, Expect::Version(version))
            .await
        {
            Ok(_) => {
                self.permissions_changed();
                Ok(())
            }
            Err(MetadataError::BadVersion { .. }) => Err(Error::Metadata(format!(
                "tenant '{tenant}' changed concurrently; retry"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies `change` to a namespace's policies with compare-and-set, retrying on conflicts.
    pub async fn update_namespace_policies(
        &self,
        namespace: &NamespaceName,
        mut change: impl FnMut(&mut NamespacePolicies),
    ) -> Result<NamespacePolicies> {
        let key = namespace_key(namespace);
        for _ in 0..16 {
            let Some((mut policies, version)) = self.get_json::<NamespacePolicies>(&key).await?
            else {
                return Err(Error::NamespaceNotFound(namespace.to_string()));
            };
            change(&mut policies);
            match self
                .metadata
                .put(&key, to_json(&policies)?, Expect::Version(version))
                .await
            {
                Ok(_) => {
                    self.permissions_changed();
                    self.apply_publish_rate(namespace, &policies).await;
                    return Ok(policies);
                }
                Err(MetadataError::BadVersion { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Metadata(format!(
            "too many concurrent updates of '{namespace}'"
        )))
    }

    pub async fn namespace_policies(
        &self,
        namespace: &NamespaceName,
    ) -> Result<Option<NamespacePolicies>> {
        Ok(self
            .get_json(&namespace_key(namespace))
            .await?
            .map(|(v, _)| v))
    }

    pub async fn create_namespace(
        &self,
        namespace: &NamespaceName,
        mut policies: NamespacePolicies,
    ) -> Result<()> {
        if !self.metadata.exists(&tenant_key(&namespace.tenant)).await? {
            return Err(Error::TenantNotFound(namespace.tenant.to_string()));
        }
        policies.format_version = FORMAT_VERSION;
        if !self
            .put_if_absent(&namespace_key(namespace), &policies)
            .await?
        {
            return Err(Error::NamespaceAlreadyExists(namespace.to_string()));
        }
        Ok(())
    }

    pub async fn delete_namespace(&self, namespace: &NamespaceName) -> Result<()> {
        if !self
            .metadata
            .list_children(&topics_path(namespace))
            .await?
            .is_empty()
        {
            return Err(Error::NotEmpty(format!("namespace '{namespace}'")));
        }
        match self
            .metadata
            .delete(&namespace_key(namespace), Expect::Any)
            .await
        {
            Ok(()) => {
                self.permissions_changed();
                Ok(())
            }
            Err(MetadataError::NotFound { .. }) => {
                Err(Error::NamespaceNotFound(namespace.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    // ---- topics ----

    pub async fn topic(&self, name: &TopicName) -> Result<Option<TopicMetadata>> {
        if let Some(cached) = self.topic_cache.get(name) {
            return Ok(Some(cached));
        }
        let epoch = self.topic_cache.epoch();
        let found = self.get_json(&topic_key(name)).await?.map(|(v, _)| v);
        if let Some(metadata) = &found {
            self.topic_cache.fill(name, metadata, epoch);
        }
        Ok(found)
    }

    /// Creates a topic: `partitions = None` is a non-partitioned topic.
    pub async fn create_topic(
        &self,
        name: &TopicName,
        partitions: Option<u32>,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMetadata> {
        if let Some(count) = partitions {
            self.check_partition_count(count)?;
        }
        if !self
            .metadata
            .exists(&namespace_key(&name.namespace))
            .await?
        {
            return Err(Error::NamespaceNotFound(name.namespace.to_string()));
        }
        let metadata = TopicMetadata {
            format_version: FORMAT_VERSION,
            partitioned: partitions.is_some(),
            partitions: partitions.unwrap_or(0),
            configs,
            created_ms: self.clock.now_ms(),
            skipped_entries: BTreeMap::new(),
        };
        let created = self.put_if_absent(&topic_key(name), &metadata).await?;
        self.topic_cache.invalidate(name);
        if !created {
            return Err(Error::TopicAlreadyExists {
                topic: name.to_string(),
            });
        }
        tracing::info!(topic = %name, partitions = metadata.partition_count(), "created topic");
        Ok(metadata)
    }

    fn check_partition_count(&self, count: u32) -> Result<()> {
        if count == 0 || count > self.config.partitions_max {
            return Err(Error::InvalidPartitions(format!(
                "{count} partitions is outside [1, {}]",
                self.config.partitions_max
            )));
        }
        Ok(())
    }

    /// Looks a topic up, creating it when auto-creation allows it: the namespace's
    /// `auto_topic_creation` override if set, else the broker's settings for Kafka clients.
    pub async fn topic_or_create(&self, name: &TopicName) -> Result<TopicMetadata> {
        self.topic_or_create_for(name, AutoCreator::Kafka).await
    }

    /// [`Broker::topic_or_create`] for a client of one protocol: without a namespace override,
    /// Kafka clients get `auto_topic_creation_partitioned`, Pulsar clients
    /// `pulsar_auto_topic_creation_partitioned` (KoP's requirement and Pulsar's default differ).
    pub async fn topic_or_create_for(
        &self,
        name: &TopicName,
        creator: AutoCreator,
    ) -> Result<TopicMetadata> {
        if let Some(existing) = self.topic(name).await? {
            return Ok(existing);
        }
        let over = self
            .namespace_policies(&name.namespace)
            .await?
            .and_then(|p| p.auto_topic_creation);
        let (allow, partitioned, count) = match over {
            Some(o) => (
                o.allow,
                o.partitioned,
                o.default_num_partitions
                    .unwrap_or(self.config.default_num_partitions),
            ),
            None => (
                self.config.allow_auto_topic_creation,
                match creator {
                    AutoCreator::Kafka => self.config.auto_topic_creation_partitioned,
                    AutoCreator::Pulsar => self.config.pulsar_auto_topic_creation_partitioned,
                },
                self.config.default_num_partitions,
            ),
        };
        if !allow {
            return Err(Error::TopicNotFound {
                topic: name.to_string(),
            });
        }
        let partitions = partitioned.then_some(count);
        match self.create_topic(name, partitions, BTreeMap::new()).await {
            Ok(created) => Ok(created),
            // Another request created it first.
            Err(Error::TopicAlreadyExists { .. }) => {
                self.topic(name).await?.ok_or_else(|| Error::TopicNotFound {
                    topic: name.to_string(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &TopicName) -> Result<()> {
        let Some(metadata) = self.topic(name).await? else {
            return Err(Error::TopicNotFound {
                topic: name.to_string(),
            });
        };
        for slot in self.partitions.remove_topic(name) {
            if let Some(log) = slot.settled().await {
                log.close().await?;
            }
        }
        let cleanup = self
            .ledger_cleanup
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for partition in 0..metadata.partition_count() {
            // Cluster mode: the ledger's records go (fencing its owner, wherever it is), so a
            // topic created again under this name starts empty; the leader's garbage
            // collection deletes the objects they named.
            if let Some(member) = self.cluster.get() {
                let ledger = Self::shared_ledger_name(name, metadata.ledger_partition(partition));
                SharedLedger::delete(member.wal(), &ledger).await?;
                continue;
            }
            let dir = self.ledger_dir(name, metadata.ledger_partition(partition));
            let cleanup = cleanup.clone();
            let result = tokio::task::spawn_blocking(move || {
                if let Some(cleanup) = cleanup {
                    cleanup(&dir).map_err(std::io::Error::other)?;
                }
                match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                }
            })
            .await
            .map_err(|e| Error::Storage(format!("delete task failed: {e}")))?;
            result.map_err(|e| Error::Storage(format!("cannot delete data of '{name}': {e}")))?;
        }
        let deleted = self.metadata.delete(&topic_key(name), Expect::Any).await;
        self.topic_cache.invalidate(name);
        match deleted {
            Ok(()) | Err(MetadataError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(topic = %name, "deleted topic");
        Ok(())
    }

    pub async fn list_topics(
        &self,
        namespace: &NamespaceName,
    ) -> Result<Vec<(TopicName, TopicMetadata)>> {
        let mut topics = Vec::new();
        for local in self.metadata.list_children(&topics_path(namespace)).await? {
            let name = TopicName::new(namespace.clone(), &local)?;
            if let Some(metadata) = self.topic(&name).await? {
                topics.push((name, metadata));
            }
        }
        Ok(topics)
    }

    /// Every topic of every namespace, internal ones included when asked.
    pub async fn list_all_topics(
        &self,
        include_internal: bool,
    ) -> Result<Vec<(TopicName, TopicMetadata)>> {
        let mut all = Vec::new();
        for tenant in self.list_tenants().await? {
            let tenant = TenantName::new(&tenant)?;
            for namespace in self.list_namespaces(&tenant).await? {
                let internal = namespace.tenant.as_str() == INTERNAL_NAMESPACE.0
                    && namespace.namespace == INTERNAL_NAMESPACE.1;
                if internal && !include_internal {
                    continue;
                }
                all.extend(self.list_topics(&namespace).await?);
            }
        }
        Ok(all)
    }

    /// Raises a partitioned topic's partition count (never lowers it).
    pub async fn set_partition_count(&self, name: &TopicName, count: u32) -> Result<TopicMetadata> {
        self.check_partition_count(count)?;
        self.update_topic(name, |metadata| {
            if !metadata.partitioned {
                return Err(Error::InvalidPartitions(format!(
                    "'{name}' is not a partitioned topic"
                )));
            }
            if count <= metadata.partitions {
                return Err(Error::InvalidPartitions(format!(
                    "'{name}' has {} partitions; the count can only grow",
                    metadata.partitions
                )));
            }
            metadata.partitions = count;
            Ok(())
        })
        .await
    }

    /// Applies `change` to a topic's metadata with compare-and-set, retrying on conflicts.
    pub async fn update_topic(
        &self,
        name: &TopicName,
        mut change: impl FnMut(&mut TopicMetadata) -> Result<()>,
    ) -> Result<TopicMetadata> {
        let key = topic_key(name);
        for _ in 0..16 {
            let Some((mut metadata, version)) = self.get_json::<TopicMetadata>(&key).await? else {
                return Err(Error::TopicNotFound {
                    topic: name.to_string(),
                });
            };
            change(&mut metadata)?;
            let put = self
                .metadata
                .put(&key, to_json(&metadata)?, Expect::Version(version))
                .await;
            self.topic_cache.invalidate(name);
            match put {
                Ok(_) => return Ok(metadata),
                Err(MetadataError::BadVersion { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Metadata(format!(
            "too many concurrent updates of '{name}'"
        )))
    }

    /// Allocates a producer id for an idempotent producer. Ids are taken from the metadata store
    /// in blocks of [`PRODUCER_ID_BLOCK`] with compare-and-set, so they never repeat across
    /// restarts (or, later, across brokers).
    pub async fn allocate_producer_id(&self) -> Result<i64> {
        let mut block = self.producer_ids.lock().await;
        if block.next >= block.end {
            for attempt in 0.. {
                if attempt == 16 {
                    return Err(Error::Metadata(
                        "too many concurrent producer id allocations".into(),
                    ));
                }
                let current = self
                    .get_json::<ProducerIdBlock>(PRODUCER_ID_BLOCK_KEY)
                    .await?;
                let (start, expect) = match &current {
                    Some((b, version)) => (b.next_block_start, Expect::Version(*version)),
                    None => (0, Expect::Absent),
                };
                let next = ProducerIdBlock {
                    format_version: FORMAT_VERSION,
                    next_block_start: start + PRODUCER_ID_BLOCK,
                };
                match self
                    .metadata
                    .put(PRODUCER_ID_BLOCK_KEY, to_json(&next)?, expect)
                    .await
                {
                    Ok(_) => {
                        *block = IdRange {
                            next: start,
                            end: start + PRODUCER_ID_BLOCK,
                        };
                        break;
                    }
                    Err(MetadataError::BadVersion { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }

    fn ledger_dir(&self, name: &TopicName, partition: Option<u32>) -> PathBuf {
        self.config
            .data_dir
            .join("ledgers")
            .join(name.namespace.tenant.as_str())
            .join(&name.namespace.namespace)
            .join("persistent")
            .join(name.ledger_name(partition))
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

    /// The open log of one partition, opening (and recovering) its ledger on first use.
    pub async fn partition(&self, tp: &TopicPartition) -> Result<Arc<PartitionLog>> {
        let Some(metadata) = self.topic(&tp.topic).await? else {
            return Err(Error::TopicNotFound {
                topic: tp.topic.to_string(),
            });
        };
        if tp.partition >= metadata.partition_count() {
            return Err(Error::PartitionNotFound {
                topic: tp.topic.to_string(),
                partition: tp.partition,
            });
        }
        let ledger_partition = metadata.ledger_partition(tp.partition);
        self.check_owner(&tp.topic, ledger_partition)?;
        let key: LedgerKey = (tp.topic.clone(), ledger_partition);
        let mut slot = self.partitions.slot(&key);
        // At most two rounds: the open log, or (once) the log reopened after a failed write.
        for _ in 0..2 {
            let log = slot
                .get_or_open(|failed| self.open_partition(tp, &metadata, ledger_partition, failed))
                .await?;
            let now = std::time::Instant::now();
            if !log.ledger().is_failed() || !slot.reopen_allowed(now) {
                // A failed ledger answers its error at once until the reopen backoff has passed.
                return Ok(log);
            }
            tracing::warn!(partition = %tp, "reopening a partition whose ledger failed a write");
            slot = self.partitions.replace(&key, &slot, now);
        }
        slot.get_or_open(|failed| self.open_partition(tp, &metadata, ledger_partition, failed))
            .await
    }

    /// Cluster mode: refuses a partition whose bundle this broker does not own, naming the owner
    /// when one is known. Standalone: every partition is this broker's.
    pub fn check_owner(&self, topic: &TopicName, ledger_partition: Option<u32>) -> Result<()> {
        let Some(member) = self.cluster.get() else {
            return Ok(());
        };
        match member.owner(topic, ledger_partition)? {
            PartitionOwner::This => Ok(()),
            PartitionOwner::Other(node) => Err(Error::NotOwner {
                topic: topic.to_string(),
                owner: Some(node.0),
            }),
            PartitionOwner::Unowned => Err(Error::NotOwner {
                topic: topic.to_string(),
                owner: None,
            }),
        }
    }

    /// The broker serving ledger partition `ledger_partition` of `topic` (`None`: the topic is
    /// not partitioned): `None` for this one (always standalone), else the owner's registry
    /// record, with its Pulsar and HTTP addresses for lookups.
    pub fn serving_broker(
        &self,
        topic: &TopicName,
        ledger_partition: Option<u32>,
    ) -> Result<Option<crate::cluster::BrokerRecord>> {
        match self.cluster.get() {
            None => Ok(None),
            Some(member) => member.serving_broker(topic, ledger_partition),
        }
    }

    /// The shared WAL's name of a partition's ledger: `tenant/namespace/persistent/topic[-partition-N]`.
    fn shared_ledger_name(name: &TopicName, partition: Option<u32>) -> String {
        format!(
            "{}/{}/persistent/{}",
            name.namespace.tenant.as_str(),
            name.namespace.namespace,
            name.ledger_name(partition)
        )
    }

    /// Opens (and recovers) one partition's ledger, closing `failed` first if it replaces a log
    /// whose ledger failed a write. Runs inside the partition's own open-once cell: no lock is
    /// held, and requests for other partitions do not wait for it.
    async fn open_partition(
        &self,
        tp: &TopicPartition,
        metadata: &TopicMetadata,
        ledger_partition: Option<u32>,
        failed: Option<Arc<PartitionLog>>,
    ) -> Result<Arc<PartitionLog>> {
        if let Some(failed) = failed {
            if let Err(e) = failed.close().await {
                tracing::debug!(partition = %tp, error = %e, "closing the failed ledger");
            }
        }
        let (ledger, leader_epoch) = match self.cluster.get() {
            Some(member) => {
                // Under the bundle's fence: once another broker claims the bundle, the store
                // refuses this ledger's takeover and every later write, whatever this broker
                // believes about its ownership.
                let bundle = member.bundle_of(&tp.topic, ledger_partition)?;
                let fence = member
                    .ownership()
                    .fence(&bundle)
                    .ok_or_else(|| Error::NotOwner {
                        topic: tp.topic.to_string(),
                        owner: None,
                    })?;
                let name = Self::shared_ledger_name(&tp.topic, ledger_partition);
                let owner = OwnerFence {
                    key: fence.key.clone(),
                    version: fence.version,
                };
                let ledger = SharedLedger::open_fenced(member.wal(), &name, Some(owner)).await?;
                (Ledger::Shared(ledger), fence.epoch)
            }
            None => (
                Ledger::Local(
                    self.open_local_ledger(tp, metadata, ledger_partition)
                        .await?,
                ),
                0,
            ),
        };
        let log = Arc::new(
            PartitionLog::new(
                tp.clone(),
                ledger,
                self.config.producers_per_partition_max,
                self.clock.clone(),
            )
            .await?
            .with_leader_epoch(leader_epoch),
        );
        if let Some(rate) = self
            .namespace_policies(&tp.topic.namespace)
            .await?
            .and_then(|p| p.publish_rate)
        {
            log.set_publish_rate(rate);
        }
        Ok(log)
    }

    /// Opens (and recovers) a partition's local ledger, off the async workers.
    async fn open_local_ledger(
        &self,
        tp: &TopicPartition,
        metadata: &TopicMetadata,
        ledger_partition: Option<u32>,
    ) -> Result<Arc<ManagedLedger>> {
        let dir = self.ledger_dir(&tp.topic, ledger_partition);
        let mut config = self.config.ledger.clone();
        if let Some(bytes) = config_value(metadata, SEGMENT_BYTES) {
            config.segment_bytes = bytes.max(SEGMENT_BYTES_MIN);
        }
        if let Some(ms) = config_value(metadata, SEGMENT_MS) {
            config.segment_ms = ms.max(1);
        }
        let clock = self.clock.clone();
        let stores = self.segment_stores.clone();
        let ledger = tokio::task::spawn_blocking(move || {
            let store = stores(&dir)?;
            ManagedLedger::open_with_store(&dir, config, clock, store)
        })
        .await
        .map_err(|e| Error::Storage(format!("open task failed: {e}")))??;
        Ok(ledger)
    }

    /// Gives every open partition of `namespace` its publish rate after a policy change.
    async fn apply_publish_rate(&self, namespace: &NamespaceName, policies: &NamespacePolicies) {
        let rate = policies.publish_rate.unwrap_or_default();
        for log in self.partitions.open_logs() {
            if &log.name().topic.namespace == namespace {
                log.set_publish_rate(rate);
            }
        }
    }

    /// Producers and consumers allowed per topic partition by the namespace policy (`None`:
    /// unlimited). The Pulsar front end enforces them; Kafka has no producer or consumer
    /// registration to limit.
    pub async fn topic_limits(&self, topic: &TopicName) -> Result<(Option<u32>, Option<u32>)> {
        let policies = self.namespace_policies(&topic.namespace).await?;
        Ok(policies.map_or((None, None), |p| {
            (p.max_producers_per_topic, p.max_consumers_per_topic)
        }))
    }

    /// Applies retention to every partition of every topic: the topic's `retention.ms` /
    /// `retention.bytes`, else its namespace's policy, else infinite (Pulsar's model: nothing is
    /// deleted unless a policy says so). Whole sealed segments only; the log start moves forward.
    pub async fn enforce_retention(&self) -> Result<RetentionSummary> {
        let mut summary = RetentionSummary::default();
        for (name, metadata) in self.list_all_topics(true).await? {
            let policies = self.namespace_policies(&name.namespace).await?;
            let (time_ms, size_bytes) = effective_retention(&metadata, policies.as_ref());
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
                let Some(log) = self.partition_if_present(&tp).await? else {
                    continue;
                };
                if let Some(ttl_ms) = ttl_ms {
                    summary.messages_expired += self.expire_messages(&log, ttl_ms).await?;
                }
                if time_ms.is_none() && size_bytes.is_none() {
                    summary.partitions_checked += 1;
                    continue;
                }
                let outcome = log.ledger().apply_retention(time_ms, size_bytes).await?;
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
    async fn expire_messages(&self, log: &Arc<PartitionLog>, ttl_ms: u64) -> Result<u64> {
        let names = log.subscription_names();
        if names.is_empty() {
            return Ok(0);
        }
        let cutoff = self
            .clock
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

    /// The partitions currently open.
    pub async fn open_partitions(&self) -> Vec<Arc<PartitionLog>> {
        self.partitions.open_logs()
    }

    /// Flushes and closes every open ledger.
    pub async fn shutdown(&self) -> Result<()> {
        let mut first_error = None;
        for slot in self.partitions.drain() {
            let Some(log) = slot.settled().await else {
                continue;
            };
            if let Err(e) = log.close().await {
                tracing::error!(partition = %log.name(), error = %e, "closing ledger failed");
                first_error.get_or_insert(e);
            }
        }
        self.metadata.close().await?;
        first_error.map_or(Ok(()), Err)
    }
}
