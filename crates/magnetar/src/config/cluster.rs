//! The `[cluster]` section: cluster mode (stateless brokers on etcd and object storage). Empty
//! `metadata_store` is standalone.

use serde::{Deserialize, Serialize};

use super::{err, range, Config, ConfigError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// The etcd cluster holding metadata, ownership and commit records, Pulsar's
    /// `metadataStoreUrl` form: `etcd:http://host:2379[,http://host2:2379]`. Empty: standalone.
    pub metadata_store: String,
    /// Prefix of every key this cluster writes in etcd (several clusters may share one etcd).
    pub metadata_root: String,
    /// This broker's stable name (its Kafka node id follows it across restarts); empty:
    /// `<advertised host>-<kafka port>`.
    pub broker_name: String,
    /// Session (etcd lease) time-to-live: a broker that stops renewing loses its bundles
    /// after at most this long.
    pub session_ttl_ms: u64,
    /// Bundles per namespace (Pulsar's `defaultNumberOfNamespaceBundles`).
    pub bundles_per_namespace: u32,
    /// How often the elected leader deletes WAL and segment objects no record names.
    pub wal_gc_interval_ms: u64,
    /// Rebalancing (Pulsar's `loadBalancerEnabled`): owners hand a broker that joined the
    /// bundles the rendezvous rule gives it, once it has been live for `rebalance_delay_ms`.
    /// Off: bundles move only when their owner leaves or dies, or on an unload.
    pub load_balancer_enabled: bool,
    /// How long a broker must have been live before it is handed bundles (so a broker that
    /// restarts or flaps does not pull bundles back and forth).
    pub rebalance_delay_ms: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            metadata_store: String::new(),
            metadata_root: "/magnetar".into(),
            broker_name: String::new(),
            session_ttl_ms: 10_000,
            bundles_per_namespace: 4,
            wal_gc_interval_ms: 300_000,
            load_balancer_enabled: true,
            rebalance_delay_ms: 10_000,
        }
    }
}

impl ClusterSection {
    /// Whether cluster mode is on.
    pub fn enabled(&self) -> bool {
        !self.metadata_store.trim().is_empty()
    }

    /// The etcd endpoints of `metadata_store`.
    pub fn etcd_endpoints(&self) -> Result<Vec<String>, ConfigError> {
        let url = self.metadata_store.trim();
        let Some(rest) = url.strip_prefix("etcd:") else {
            let what = if url.starts_with("zk:") || !url.contains(':') || url.contains("2181") {
                "ZooKeeper is not supported: Magnetar keeps its metadata in etcd"
            } else {
                "only etcd is supported"
            };
            return Err(err(format!(
                "cluster.metadata_store = \"{url}\": {what} (etcd:http://host:2379[,http://host2:2379])"
            )));
        };
        let endpoints: Vec<String> = rest
            .split(',')
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty()
            || endpoints
                .iter()
                .any(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        {
            return Err(err(format!(
                "cluster.metadata_store = \"{url}\": endpoints must be http://host:port, comma-separated"
            )));
        }
        Ok(endpoints)
    }
}

impl Config {
    /// `[cluster]` ranges; in cluster mode an object store is required (it holds the data).
    pub(super) fn validate_cluster(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        range("cluster.session_ttl_ms", c.session_ttl_ms, 1_000, 300_000)?;
        range(
            "cluster.bundles_per_namespace",
            u64::from(c.bundles_per_namespace),
            1,
            128,
        )?;
        range(
            "cluster.wal_gc_interval_ms",
            c.wal_gc_interval_ms,
            1_000,
            86_400_000,
        )?;
        range(
            "cluster.rebalance_delay_ms",
            c.rebalance_delay_ms,
            0,
            86_400_000,
        )?;
        if !c.metadata_root.starts_with('/') || c.metadata_root.ends_with('/') {
            return Err(err(format!(
                "cluster.metadata_root = \"{}\" must start with '/' and not end with one",
                c.metadata_root
            )));
        }
        if !c.broker_name.is_empty()
            && !c
                .broker_name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.' | '_'))
        {
            return Err(err(format!(
                "cluster.broker_name = \"{}\" may hold letters, digits, '-', '.' and '_' only",
                c.broker_name
            )));
        }
        if c.enabled() {
            c.etcd_endpoints()?;
            if self.storage.object_store.trim().is_empty() {
                return Err(err(
                    "cluster mode (cluster.metadata_store set) needs storage.object_store: every partition's data is there",
                ));
            }
        }
        Ok(())
    }
}
