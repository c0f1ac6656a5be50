//! The open partitions: the registry of [`PartitionLog`]s, opening (and recovering) their
//! ledgers on first use, closing them, deleting their data, and in cluster mode the ownership
//! check and the close of partitions whose bundle left this broker.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use magnetar_storage::{
    wal::{OwnerFence, SharedLedger},
    Clock, LocalSegmentStore, ManagedLedger, SegmentStore, StorageError,
};

use super::config::BrokerConfig;
use super::namespaces::Namespaces;
use super::topics::{config_value, SEGMENT_BYTES, SEGMENT_BYTES_MIN, SEGMENT_MS};
use crate::cluster::{BrokerRecord, Bundle, ClusterMember, PartitionOwner};
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::names::{NamespaceName, TopicName, TopicPartition};
use crate::partition::PartitionLog;
use crate::registry::{LedgerKey, PartitionRegistry};
use crate::resources::{NamespacePolicies, TopicMetadata};

/// Deletes what a ledger keeps outside its directory (a tiered ledger's objects); blocking.
pub type LedgerCleanup = Arc<dyn Fn(&Path) -> Result<(), StorageError> + Send + Sync>;

/// Makes the segment store of one partition's ledger directory: local files by default; the seam
/// for object storage later, and for tests that inject slow or failing storage.
pub type SegmentStoreFactory =
    Arc<dyn Fn(&Path) -> Result<Arc<dyn SegmentStore>, StorageError> + Send + Sync>;

/// Segments as local files in the ledger directory.
pub(crate) fn local_segment_stores() -> SegmentStoreFactory {
    Arc::new(|dir: &Path| Ok(Arc::new(LocalSegmentStore::new(dir)?) as Arc<dyn SegmentStore>))
}

/// Partitions closed at once when a broker loses bundles (cluster mode).
const CLOSE_CONCURRENCY: usize = 64;

/// The partitions service.
pub(crate) struct Partitions {
    config: Arc<BrokerConfig>,
    clock: Arc<dyn Clock>,
    /// For the namespace's publish rate, given to a partition when it opens.
    namespaces: Namespaces,
    /// The open partitions: sharded, one open-once cell per partition (see [`crate::registry`]).
    registry: PartitionRegistry,
    segment_stores: SegmentStoreFactory,
    /// Called with a deleted partition's ledger directory before it is removed (tiered storage
    /// deletes the partition's objects there); see [`Partitions::set_ledger_cleanup`].
    ledger_cleanup: RwLock<Option<LedgerCleanup>>,
    /// Cluster mode: this broker's membership (ownership, the shared WAL); unset standalone.
    cluster: OnceLock<Arc<ClusterMember>>,
    /// Held while partitions of bundles this broker no longer owns are closed, so a release
    /// can wait for a close already under way (see [`Partitions::close_where`]).
    closing: tokio::sync::Mutex<()>,
}

impl Partitions {
    pub(crate) fn new(
        config: Arc<BrokerConfig>,
        clock: Arc<dyn Clock>,
        namespaces: Namespaces,
        segment_stores: SegmentStoreFactory,
    ) -> Self {
        Self {
            config,
            clock,
            namespaces,
            registry: PartitionRegistry::default(),
            segment_stores,
            ledger_cleanup: RwLock::new(None),
            cluster: OnceLock::new(),
            closing: tokio::sync::Mutex::new(()),
        }
    }

    /// Cluster mode from now on; `false` if the broker already was in a cluster.
    pub(crate) fn set_cluster(&self, member: Arc<ClusterMember>) -> bool {
        self.cluster.set(member).is_ok()
    }

    pub(crate) fn cluster(&self) -> Option<&Arc<ClusterMember>> {
        self.cluster.get()
    }

    pub(crate) fn set_ledger_cleanup(&self, cleanup: Option<LedgerCleanup>) {
        *self
            .ledger_cleanup
            .write()
            .unwrap_or_else(|e| e.into_inner()) = cleanup;
    }

    /// The open log of partition `tp` of the topic `metadata` describes, opening (and
    /// recovering) its ledger on first use.
    pub(crate) async fn get(
        &self,
        tp: &TopicPartition,
        metadata: &TopicMetadata,
    ) -> Result<Arc<PartitionLog>> {
        if tp.partition >= metadata.partition_count() {
            return Err(Error::PartitionNotFound {
                topic: tp.topic.to_string(),
                partition: tp.partition,
            });
        }
        let ledger_partition = metadata.ledger_partition(tp.partition);
        self.check_owner(&tp.topic, ledger_partition)?;
        let key: LedgerKey = (tp.topic.clone(), ledger_partition);
        let mut slot = self.registry.slot(&key);
        // At most two rounds: the open log, or (once) the log reopened after a failed write.
        for _ in 0..2 {
            let log = slot
                .get_or_open(|failed| self.open(tp, metadata, ledger_partition, failed))
                .await?;
            let now = std::time::Instant::now();
            if !log.ledger().is_failed() || !slot.reopen_allowed(now) {
                // A failed ledger answers its error at once until the reopen backoff has passed.
                return Ok(log);
            }
            tracing::warn!(partition = %tp, "reopening a partition whose ledger failed a write");
            slot = self.registry.replace(&key, &slot, now);
        }
        slot.get_or_open(|failed| self.open(tp, metadata, ledger_partition, failed))
            .await
    }

    /// Cluster mode: refuses a partition whose bundle this broker does not own, naming the owner
    /// when one is known. Standalone: every partition is this broker's.
    pub(crate) fn check_owner(
        &self,
        topic: &TopicName,
        ledger_partition: Option<u32>,
    ) -> Result<()> {
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

    /// The broker serving a ledger partition: `None` for this one (always standalone), else the
    /// owner's registry record.
    pub(crate) fn serving_broker(
        &self,
        topic: &TopicName,
        ledger_partition: Option<u32>,
    ) -> Result<Option<BrokerRecord>> {
        match self.cluster.get() {
            None => Ok(None),
            Some(member) => member.serving_broker(topic, ledger_partition),
        }
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
    async fn open(
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
            .namespaces
            .policies(&tp.topic.namespace)
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
    pub(crate) fn apply_publish_rate(
        &self,
        namespace: &NamespaceName,
        policies: &NamespacePolicies,
    ) {
        let rate = policies.publish_rate.unwrap_or_default();
        for log in self.registry.open_logs() {
            if &log.name().topic.namespace == namespace {
                log.set_publish_rate(rate);
            }
        }
    }

    /// Closes the open partitions of a topic and deletes their data: the ledger directories (and
    /// what the ledger cleanup deletes beside them) standalone, the ledgers' records in cluster
    /// mode (fencing their owner, wherever it is), so a topic created again under this name
    /// starts empty.
    pub(crate) async fn delete_topic_data(
        &self,
        name: &TopicName,
        metadata: &TopicMetadata,
    ) -> Result<()> {
        for slot in self.registry.remove_topic(name) {
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
            // Cluster mode: the leader's garbage collection deletes the objects the records
            // named.
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
        Ok(())
    }

    /// The partitions currently open.
    pub(crate) fn open_logs(&self) -> Vec<Arc<PartitionLog>> {
        self.registry.open_logs()
    }

    /// Closes the open partitions of `bundle` (split in `bundle_count` bundles); they reopen on
    /// their next use. Returns how many closed.
    pub(crate) async fn close_bundle(&self, bundle: &Bundle, bundle_count: u32) -> usize {
        let closing = self.registry.remove_where(|(topic, partition)| {
            Bundle::of_topic(topic, *partition, bundle_count).is_ok_and(|b| &b == bundle)
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

    /// Closes the open partitions of `bundle` (cluster mode), after any close of partitions
    /// of lost bundles under way.
    pub(crate) async fn close_bundle_of_cluster(&self, bundle: &Bundle) {
        self.close_where(|b| b == Some(bundle)).await;
    }

    /// Closes every open partition whose bundle is not in `owned` (cluster mode).
    pub(crate) async fn close_unowned(&self, owned: &BTreeSet<Bundle>) {
        self.close_where(|b| b.is_none_or(|b| !owned.contains(b)))
            .await;
    }

    /// Closes the open partitions whose bundle (`None`: it cannot be computed) `lost` picks,
    /// one pass at a time (see `closing`) and concurrently within a pass: a close may wait for
    /// the metadata store (the producer snapshot), which is slow or unreachable exactly when a
    /// fenced broker drops everything.
    async fn close_where(&self, lost: impl Fn(Option<&Bundle>) -> bool) {
        let Some(member) = self.cluster.get() else {
            return;
        };
        let _pass = self.closing.lock().await;
        let closing = self.registry.remove_where(|(topic, partition)| {
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

    /// Closes every open partition (shutdown); the first error, after trying them all.
    pub(crate) async fn close_all(&self) -> Result<()> {
        let mut first_error = None;
        for slot in self.registry.drain() {
            let Some(log) = slot.settled().await else {
                continue;
            };
            if let Err(e) = log.close().await {
                tracing::error!(partition = %log.name(), error = %e, "closing ledger failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
