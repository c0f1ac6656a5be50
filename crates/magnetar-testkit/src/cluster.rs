//! Several brokers in one process over one shared metadata store and one object store: cluster
//! mode without etcd or S3 (the shared WAL on the object store, bundle ownership through the
//! store's sessions). Each broker has its own temporary data dir.

use std::sync::Arc;
use std::time::Duration;

use magnetar_broker::cluster::{BrokerInfo, ClusterMember, MemberConfig};
use magnetar_broker::{Broker, BrokerConfig, Clock, SystemClock};
use magnetar_metadata::{MemoryStore, MetadataStore};
use magnetar_storage::wal::{WalConfig, WalWriter};
use object_store::memory::InMemory;
use object_store::ObjectStore;

/// The shared stores of the brokers started from it.
pub struct Cluster {
    pub store: Arc<MemoryStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub clock: Arc<dyn Clock>,
    /// The WAL settings of new nodes (short flush window, bounded commits).
    pub wal: WalConfig,
    /// Bundles per namespace of new nodes.
    pub bundles_per_namespace: u32,
    pub session_ttl: Duration,
}

/// One broker of a [`Cluster`], joined.
pub struct Node {
    pub broker: Arc<Broker>,
    pub member: Arc<ClusterMember>,
    pub dir: tempfile::TempDir,
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Cluster {
    /// A memory metadata store, an in-memory object store, the system clock.
    pub fn new() -> Self {
        Cluster {
            store: Arc::new(MemoryStore::new()),
            objects: Arc::new(InMemory::new()),
            clock: Arc::new(SystemClock),
            wal: WalConfig {
                flush_interval_ms: 2,
                commit_timeout_ms: 2_000,
                ..WalConfig::default()
            },
            bundles_per_namespace: 4,
            session_ttl: Duration::from_secs(30),
        }
    }

    /// Opens a broker named `name` over the shared stores and joins it to the cluster.
    pub async fn start_node(&self, name: &str) -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let metadata: Arc<dyn MetadataStore> = self.store.clone();
        let wal = WalWriter::start(
            name,
            "/ledgers",
            self.objects.clone(),
            metadata.clone(),
            self.wal.clone(),
            self.clock.clone(),
        )
        .expect("WAL writer starts");
        let broker = Broker::open(
            BrokerConfig::for_data_dir(dir.path()),
            metadata.clone(),
            self.clock.clone(),
        )
        .await
        .expect("broker opens");
        let member = Arc::new(
            ClusterMember::join(
                metadata,
                MemberConfig {
                    cluster: "test".into(),
                    info: BrokerInfo {
                        broker_name: name.into(),
                        ..BrokerInfo::default()
                    },
                    session_ttl: self.session_ttl,
                    bundles_per_namespace: self.bundles_per_namespace,
                    rebalance_delay: None,
                },
                wal,
            )
            .await
            .expect("member joins"),
        );
        broker
            .join_cluster(member.clone())
            .await
            .expect("broker joins the cluster");
        Node {
            broker,
            member,
            dir,
        }
    }
}
