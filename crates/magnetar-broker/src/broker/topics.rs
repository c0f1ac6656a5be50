//! Topics: their metadata (`TopicMetadata`: partition count, configs, skipped entries) in the
//! metadata store, behind an in-memory cache, and auto-creation. What a topic's partitions hold
//! (ledgers, open logs) is the partitions service's.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use magnetar_metadata::{Expect, MetadataError};
use magnetar_storage::Clock;

use super::config::{AutoCreator, BrokerConfig, INTERNAL_NAMESPACE};
use super::namespaces::Namespaces;
use super::records::Records;
use super::tenants::Tenants;
use crate::error::{Error, Result};
use crate::names::{NamespaceName, TenantName, TopicName};
use crate::resources::{namespace_key, topic_key, topics_path, TopicMetadata, FORMAT_VERSION};

/// Topic policy keys the broker enforces itself (Kafka's names, which the Kafka front end stores
/// and a Pulsar topic policy maps onto). `-1` means unlimited.
pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const SEGMENT_BYTES: &str = "segment.bytes";
pub const SEGMENT_MS: &str = "segment.ms";
/// Smallest segment a topic's `segment.bytes` may ask for (Kafka's own minimum is 14 bytes,
/// which would mean a file per entry).
pub const SEGMENT_BYTES_MIN: u64 = 4096;

/// A non-negative numeric topic config; `-1` or absent is `None`.
pub(crate) fn config_value(metadata: &TopicMetadata, key: &str) -> Option<u64> {
    metadata
        .configs
        .get(key)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .and_then(|v| u64::try_from(v).ok())
}

/// Most topics whose metadata is kept in memory; past it the cache starts over.
const TOPIC_CACHE_MAX: usize = 100_000;

/// A cache of topic metadata in front of the metadata store. Every write of a topic goes through
/// this broker, which drops the entry and bumps `epoch` after the store accepted it; a reader
/// only fills the cache if no write happened since it started reading the store, so it never
/// installs a value older than the store's. In cluster mode the store's watch invalidates it
/// too (see `Broker::join_cluster`).
#[derive(Default)]
pub(crate) struct TopicCache {
    entries: RwLock<HashMap<TopicName, TopicMetadata>>,
    epoch: AtomicU64,
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
        self.epoch.load(Ordering::Acquire)
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
    pub(crate) fn invalidate_key(&self, key: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|name, _| topic_key(name) != key);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.clear();
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn invalidate(&self, name: &TopicName) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.remove(name);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// The topics service: topic records and their cache.
pub(crate) struct Topics {
    config: Arc<BrokerConfig>,
    clock: Arc<dyn Clock>,
    records: Records,
    tenants: Tenants,
    namespaces: Namespaces,
    cache: TopicCache,
}

impl Topics {
    pub(crate) fn new(
        config: Arc<BrokerConfig>,
        clock: Arc<dyn Clock>,
        records: Records,
        tenants: Tenants,
        namespaces: Namespaces,
    ) -> Self {
        Self {
            config,
            clock,
            records,
            tenants,
            namespaces,
            cache: TopicCache::default(),
        }
    }

    pub(crate) fn cache(&self) -> &TopicCache {
        &self.cache
    }

    pub(crate) async fn get(&self, name: &TopicName) -> Result<Option<TopicMetadata>> {
        if let Some(cached) = self.cache.get(name) {
            return Ok(Some(cached));
        }
        let epoch = self.cache.epoch();
        let mut found: Option<TopicMetadata> =
            self.records.get(&topic_key(name)).await?.map(|(v, _)| v);
        if let Some(metadata) = &mut found {
            // A namespace policy update clears the cache after its write (so an older read is
            // never installed: the epoch moved).
            metadata.namespace_defaults = self.namespace_defaults(&name.namespace).await?;
            self.cache.fill(name, metadata, epoch);
        }
        Ok(found)
    }

    /// The namespace's topic config defaults (empty when it has none).
    async fn namespace_defaults(
        &self,
        namespace: &NamespaceName,
    ) -> Result<BTreeMap<String, String>> {
        Ok(self
            .namespaces
            .policies(namespace)
            .await?
            .map(|p| p.topic_config_defaults)
            .unwrap_or_default())
    }

    /// A topic's metadata, or `TopicNotFound`.
    pub(crate) async fn existing(&self, name: &TopicName) -> Result<TopicMetadata> {
        self.get(name).await?.ok_or_else(|| Error::TopicNotFound {
            topic: name.to_string(),
        })
    }

    pub(crate) async fn create(
        &self,
        name: &TopicName,
        partitions: Option<u32>,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMetadata> {
        if let Some(count) = partitions {
            self.check_partition_count(count)?;
        }
        if !self
            .records
            .store()
            .exists(&namespace_key(&name.namespace))
            .await?
        {
            return Err(Error::NamespaceNotFound {
                namespace: name.namespace.to_string(),
            });
        }
        let metadata = TopicMetadata {
            format_version: FORMAT_VERSION,
            partitioned: partitions.is_some(),
            partitions: partitions.unwrap_or(0),
            configs,
            created_ms: self.clock.now_ms(),
            skipped_entries: BTreeMap::new(),
            namespace_defaults: BTreeMap::new(),
        };
        let created = self
            .records
            .put_if_absent(&topic_key(name), &metadata)
            .await?;
        self.cache.invalidate(name);
        if !created {
            return Err(Error::TopicAlreadyExists {
                topic: name.to_string(),
            });
        }
        tracing::info!(topic = %name, partitions = metadata.partition_count(), "created topic");
        let mut metadata = metadata;
        metadata.namespace_defaults = self.namespace_defaults(&name.namespace).await?;
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
    /// `auto_topic_creation` override if set, else the broker's settings for `creator`.
    pub(crate) async fn get_or_create(
        &self,
        name: &TopicName,
        creator: AutoCreator,
    ) -> Result<TopicMetadata> {
        if let Some(existing) = self.get(name).await? {
            return Ok(existing);
        }
        let over = self
            .namespaces
            .policies(&name.namespace)
            .await?
            .and_then(|p| p.auto_topic_creation);
        let config = &self.config;
        let (allow, partitioned, count) = match over {
            Some(o) => (
                o.allow,
                o.partitioned,
                o.default_num_partitions
                    .unwrap_or(config.default_num_partitions),
            ),
            None => (
                config.allow_auto_topic_creation,
                match creator {
                    AutoCreator::Kafka => config.auto_topic_creation_partitioned,
                    AutoCreator::Pulsar => config.pulsar_auto_topic_creation_partitioned,
                },
                config.default_num_partitions,
            ),
        };
        if !allow {
            return Err(Error::TopicNotFound {
                topic: name.to_string(),
            });
        }
        let partitions = partitioned.then_some(count);
        match self.create(name, partitions, BTreeMap::new()).await {
            Ok(created) => Ok(created),
            // Another request created it first.
            Err(Error::TopicAlreadyExists { .. }) => self.existing(name).await,
            Err(e) => Err(e),
        }
    }

    /// Deletes a topic's record (its data is gone first, see `Broker::delete_topic`); a record
    /// already gone is no error.
    pub(crate) async fn delete_record(&self, name: &TopicName) -> Result<()> {
        let deleted = self
            .records
            .store()
            .delete(&topic_key(name), Expect::Any)
            .await;
        self.cache.invalidate(name);
        match deleted {
            Ok(()) | Err(MetadataError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(topic = %name, "deleted topic");
        Ok(())
    }

    pub(crate) async fn list(
        &self,
        namespace: &NamespaceName,
    ) -> Result<Vec<(TopicName, TopicMetadata)>> {
        let mut topics = Vec::new();
        for local in self
            .records
            .store()
            .list_children(&topics_path(namespace))
            .await?
        {
            let name = TopicName::new(namespace.clone(), &local)?;
            if let Some(metadata) = self.get(&name).await? {
                topics.push((name, metadata));
            }
        }
        Ok(topics)
    }

    /// Every topic of every namespace, internal ones included when asked.
    pub(crate) async fn list_all(
        &self,
        include_internal: bool,
    ) -> Result<Vec<(TopicName, TopicMetadata)>> {
        let mut all = Vec::new();
        for tenant in self.tenants.list().await? {
            let tenant = TenantName::new(&tenant)?;
            for namespace in self.namespaces.list(&tenant).await? {
                let internal = namespace.tenant.as_str() == INTERNAL_NAMESPACE.0
                    && namespace.namespace == INTERNAL_NAMESPACE.1;
                if internal && !include_internal {
                    continue;
                }
                all.extend(self.list(&namespace).await?);
            }
        }
        Ok(all)
    }

    /// Raises a partitioned topic's partition count (never lowers it).
    pub(crate) async fn set_partition_count(
        &self,
        name: &TopicName,
        count: u32,
    ) -> Result<TopicMetadata> {
        self.check_partition_count(count)?;
        self.update(name, |metadata| {
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
    pub(crate) async fn update(
        &self,
        name: &TopicName,
        mut change: impl FnMut(&mut TopicMetadata) -> Result<()>,
    ) -> Result<TopicMetadata> {
        let key = topic_key(name);
        for _ in 0..16 {
            let Some((mut metadata, version)) = self.records.get::<TopicMetadata>(&key).await?
            else {
                return Err(Error::TopicNotFound {
                    topic: name.to_string(),
                });
            };
            change(&mut metadata)?;
            let put = self
                .records
                .put(&key, &metadata, Expect::Version(version))
                .await?;
            self.cache.invalidate(name);
            match put {
                Ok(_) => {
                    metadata.namespace_defaults = self.namespace_defaults(&name.namespace).await?;
                    return Ok(metadata);
                }
                Err(MetadataError::BadVersion { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::ConcurrentUpdate {
            what: format!("topic '{name}'"),
        })
    }
}
