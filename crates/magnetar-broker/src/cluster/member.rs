//! This broker as a member of a cluster: its session, registration, the live set, bundle
//! ownership and the shared WAL its partitions' ledgers write to. [`crate::Broker`] consults it
//! on every partition open (serve only what this broker owns) and closes partitions whose bundle
//! left (see [`crate::Broker::join_cluster`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use magnetar_metadata::{MetadataStore, Session};
use magnetar_storage::wal::WalWriter;

use super::{
    BrokerInfo, BrokerRecord, BrokerRegistry, ClusterKeys, LeaderElection, LiveBrokers, NodeId,
    Ownership, Registration,
};
use crate::error::Result;
use crate::names::{NamespaceName, TopicName};

/// How a broker joins its cluster.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// The cluster's name; every key is under `/cluster/<name>`.
    pub cluster: String,
    /// What the others learn about this broker (its name gives its node id).
    pub info: BrokerInfo,
    /// The session (etcd lease) time-to-live: a broker that stops renewing loses its bundles
    /// after at most this long.
    pub session_ttl: Duration,
    /// Bundles per namespace (Pulsar's `defaultNumberOfNamespaceBundles`).
    pub bundles_per_namespace: u32,
    /// Rebalancing: a broker live for this long is handed the bundles the rendezvous rule gives
    /// it by their current owners; `None`: bundles move only when their owner leaves or dies,
    /// or an operator unloads them.
    pub rebalance_delay: Option<Duration>,
}

/// Who serves a partition, as this broker sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionOwner {
    /// This broker owns the partition's bundle.
    This,
    /// Another live broker owns it.
    Other(NodeId),
    /// Nobody owns it yet (a claim is under way, or its owner just died).
    Unowned,
}

/// See the [module docs](self).
pub struct ClusterMember {
    store: Arc<dyn MetadataStore>,
    session: Session,
    registration: Registration,
    live: LiveBrokers,
    ownership: Ownership,
    election: LeaderElection,
    wal: WalWriter,
    bundles_per_namespace: u32,
    /// The namespaces given to [`Ownership`] so far.
    namespaces: std::sync::Mutex<std::collections::HashSet<NamespaceName>>,
    session_metrics: Arc<SessionMetrics>,
}

/// The session's keep-alive as the metrics endpoint shows it.
#[derive(Debug, Default)]
pub struct SessionMetrics {
    /// Every refresh attempt, from its send to its answer (or to giving up).
    pub refresh_latency: magnetar_storage::LatencyHistogram,
    /// Attempts that failed (timed out, refused, store unreachable).
    pub refresh_failures: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for ClusterMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMember")
            .field("node_id", &self.registration.node_id)
            .finish_non_exhaustive()
    }
}

impl ClusterMember {
    /// Opens a session, registers this broker (refused while its name is held by another live
    /// session), follows the live set and starts bundle ownership. Owns nothing until
    /// namespaces are added ([`ClusterMember::add_namespace`]).
    pub async fn join(
        store: Arc<dyn MetadataStore>,
        config: MemberConfig,
        wal: WalWriter,
    ) -> Result<Self> {
        let keys = ClusterKeys::new(&config.cluster)?;
        let session = store.open_session(config.session_ttl).await?;
        let session_metrics = Arc::new(SessionMetrics::default());
        let observed = Arc::clone(&session_metrics);
        session.observe_refreshes(Arc::new(move |elapsed, ok| {
            observed.refresh_latency.observe(elapsed);
            if !ok {
                observed
                    .refresh_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
        let registration =
            BrokerRegistry::register(store.as_ref(), &keys, &session, config.info.clone()).await?;
        let live = LiveBrokers::start(store.clone(), &keys).await?;
        let ownership = Ownership::start(
            store.clone(),
            registration.clone(),
            LiveBrokers::start(store.clone(), &keys).await?,
            config.bundles_per_namespace,
            config.rebalance_delay,
        )
        .await?;
        let election = LeaderElection::new(store.clone(), registration.clone());
        tracing::info!(node_id = %registration.node_id, broker = %config.info.broker_name, "joined the cluster");
        Ok(ClusterMember {
            store,
            session,
            registration,
            live,
            ownership,
            election,
            wal,
            namespaces: std::sync::Mutex::default(),
            session_metrics,
            bundles_per_namespace: config.bundles_per_namespace,
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.registration.node_id
    }

    /// Bundles per namespace in this cluster.
    pub fn bundles_per_namespace(&self) -> u32 {
        self.bundles_per_namespace
    }

    /// The store's id of this broker's session (tests end it to simulate a dead broker).
    pub fn session_id(&self) -> magnetar_metadata::SessionId {
        self.session.id()
    }

    pub fn info(&self) -> &BrokerInfo {
        &self.registration.info
    }

    /// The live brokers by node id (this one included once its own key is seen).
    pub fn live_brokers(&self) -> Arc<BTreeMap<NodeId, BrokerRecord>> {
        self.live.current()
    }

    /// The session's state: `Live`, `Fenced` (no refresh for a while: this broker serves
    /// nothing until it is `Live` again), or final (`Expired`, `Closed`).
    pub fn session_state(&self) -> tokio::sync::watch::Receiver<magnetar_metadata::SessionState> {
        self.session.state()
    }

    /// The session keep-alive's refresh latency and failures.
    pub fn session_metrics(&self) -> &SessionMetrics {
        &self.session_metrics
    }

    pub fn ownership(&self) -> &Ownership {
        &self.ownership
    }

    pub fn election(&self) -> &LeaderElection {
        &self.election
    }

    pub fn wal(&self) -> &WalWriter {
        &self.wal
    }

    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    /// Takes part in assigning the bundles of `namespace` (idempotent).
    pub fn add_namespace(&self, namespace: &NamespaceName) {
        let new = self
            .namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(namespace.clone());
        if new {
            self.ownership.add_namespace(namespace.clone());
        }
    }

    /// Who serves the ledger partition `partition` of `topic` (`None`: non-partitioned).
    pub fn owner(&self, topic: &TopicName, partition: Option<u32>) -> Result<PartitionOwner> {
        Ok(self.owner_and_epoch(topic, partition)?.0)
    }

    /// [`ClusterMember::owner`] with the epoch of the owner's claim (this broker's own fence if
    /// it owns the bundle, else the owner key as last seen; 0 while unowned): Kafka's leader
    /// epoch of the partition.
    pub fn owner_and_epoch(
        &self,
        topic: &TopicName,
        partition: Option<u32>,
    ) -> Result<(PartitionOwner, u64)> {
        self.add_namespace(&topic.namespace);
        let (bundle, owner) = self.ownership.owner_of(topic, partition)?;
        if let Some(fence) = self.ownership.fence(&bundle) {
            return Ok((PartitionOwner::This, fence.epoch));
        }
        Ok(match owner {
            Some(o) if o.node_id == self.node_id() => (PartitionOwner::Unowned, 0),
            Some(o) => (PartitionOwner::Other(o.node_id), o.epoch),
            None => (PartitionOwner::Unowned, 0),
        })
    }

    /// The broker serving a ledger partition: `None` for this broker, else the owner's record
    /// (its addresses). Nobody yet, or an owner not in the live set: `NotOwner` without an
    /// owner (the client asks again).
    pub fn serving_broker(
        &self,
        topic: &TopicName,
        partition: Option<u32>,
    ) -> Result<Option<BrokerRecord>> {
        match self.owner(topic, partition)? {
            PartitionOwner::This => Ok(None),
            PartitionOwner::Other(node) => match self.live.current().get(&node) {
                Some(record) => Ok(Some(record.clone())),
                None => Err(crate::error::Error::NotOwner {
                    topic: topic.to_string(),
                    owner: Some(node.0),
                }),
            },
            PartitionOwner::Unowned => Err(crate::error::Error::NotOwner {
                topic: topic.to_string(),
                owner: None,
            }),
        }
    }

    /// The bundle of a partition, for comparing with [`Ownership::owned`].
    pub fn bundle_of(&self, topic: &TopicName, partition: Option<u32>) -> Result<super::Bundle> {
        Ok(self.ownership.owner_of(topic, partition)?.0)
    }

    /// Graceful leave (SIGTERM): releases every bundle at once so the others take them over
    /// without waiting for the session to expire, then closes the session.
    pub async fn leave(&self) -> Result<usize> {
        let released = self.ownership.release_all().await;
        self.ownership.shutdown();
        if let Err(e) = self.session.close().await {
            tracing::debug!(error = %e, "closing the cluster session");
        }
        released
    }

    /// Stops following the cluster without releasing anything (tests of a crashed broker).
    pub fn abandon(&self) {
        self.ownership.shutdown();
    }
}

impl From<super::NodeId> for i32 {
    fn from(id: super::NodeId) -> i32 {
        i32::try_from(id.0).unwrap_or(i32::MAX)
    }
}
