//! Cluster mode's wiring: the etcd metadata store, the shared WAL on the object store, the
//! broker's membership (session, registration, bundle ownership) and the leader's garbage
//! collection of unreferenced objects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use magnetar_broker::cluster::{BrokerInfo, ClusterMember, MemberConfig};
use magnetar_broker::{Broker, BrokerConfig, SystemClock};
use magnetar_metadata::MetadataStore;
use magnetar_storage::wal::{collect_garbage, WalConfig, WalWriter};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The metadata key prefix of every shared ledger's records (under the etcd root).
const LEDGERS_ROOT: &str = "/ledgers";

/// Where clients reach this broker, for the registry.
pub(crate) struct Advertised {
    /// Kafka advertised `host:port` by listener name (security protocol).
    pub kafka: BTreeMap<String, String>,
    pub pulsar: String,
    pub http: String,
    /// The TLS listeners' URLs, if on (`pulsar+ssl://`, `https://`).
    pub pulsar_tls: Option<String>,
    pub http_tls: Option<String>,
    /// The primary Kafka listener's `host:port`, the default broker name.
    pub kafka_primary: (String, u16),
}

/// The etcd store of `[cluster]`.
#[cfg(feature = "etcd")]
async fn metadata_store(config: &Config) -> anyhow::Result<Arc<dyn MetadataStore>> {
    use magnetar_metadata::{EtcdOptions, EtcdStore};
    let endpoints = config.cluster.etcd_endpoints()?;
    let store = EtcdStore::connect(EtcdOptions {
        endpoints: endpoints.clone(),
        root: config.cluster.metadata_root.clone(),
        request_timeout: Duration::from_millis(config.cluster.session_ttl_ms.clamp(1_000, 10_000)),
    })
    .await
    .with_context(|| format!("cannot reach etcd at {endpoints:?}"))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "etcd"))]
async fn metadata_store(_config: &Config) -> anyhow::Result<Arc<dyn MetadataStore>> {
    anyhow::bail!(
        "this magnetar was built without the `etcd` feature: cluster mode is not available"
    )
}

/// Opens the broker in cluster mode: metadata in etcd, every partition's ledger on the shared
/// WAL in the object store, serving the bundles this broker owns.
pub(crate) async fn open(
    config: &Config,
    broker_config: BrokerConfig,
    advertised: Advertised,
) -> anyhow::Result<(Arc<Broker>, Arc<ClusterMember>)> {
    let metadata = metadata_store(config).await?;
    let objects = magnetar::remote_store::open_configured(config)?;
    let broker_name = match config.cluster.broker_name.as_str() {
        "" => format!(
            "{}-{}",
            advertised.kafka_primary.0.replace(':', "_"),
            advertised.kafka_primary.1
        ),
        name => name.to_string(),
    };
    let c = &config.cluster;
    let st = &config.storage;
    let wal_config = WalConfig {
        flush_interval_ms: st.wal_flush_interval_ms,
        object_bytes_max: st.wal_object_bytes_max,
        commit_timeout_ms: st.wal_commit_timeout_ms,
        pending_bytes_max: st.wal_pending_bytes_max,
        entry_bytes_max: config.storage.entry_bytes_max,
        gc_grace_ms: WalConfig::default()
            .gc_grace_ms
            .max(st.wal_commit_timeout_ms * 2),
        ..WalConfig::default()
    };
    let writer_name: String = broker_name
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
        .collect();
    let wal = WalWriter::start(
        &writer_name,
        LEDGERS_ROOT,
        objects,
        metadata.clone(),
        wal_config,
        Arc::new(SystemClock),
    )
    .context("cannot start the shared WAL")?;
    let broker = Broker::open(broker_config, metadata.clone(), Arc::new(SystemClock))
        .await
        .context("cannot open the broker")?;
    let member = ClusterMember::join(
        metadata,
        MemberConfig {
            cluster: config.broker.cluster_name.clone(),
            info: BrokerInfo {
                broker_name: broker_name.clone(),
                kafka_listeners: advertised.kafka,
                pulsar: Some(advertised.pulsar),
                http: Some(advertised.http),
                pulsar_tls: advertised.pulsar_tls,
                http_tls: advertised.http_tls,
                pulsar_listeners: config.pulsar.named_listeners()?,
            },
            session_ttl: Duration::from_millis(c.session_ttl_ms),
            bundles_per_namespace: c.bundles_per_namespace,
            rebalance_delay: c
                .load_balancer_enabled
                .then(|| Duration::from_millis(c.rebalance_delay_ms)),
        },
        wal,
    )
    .await
    .context("cannot join the cluster")?;
    let member = Arc::new(member);
    broker.join_cluster(member.clone()).await?;
    tracing::info!(broker = %broker_name, node_id = %member.node_id(), cluster = %config.broker.cluster_name, "cluster mode: metadata in etcd, data in {}", config.storage.object_store);
    Ok((broker, member))
}

/// The elected leader deletes WAL and segment objects no record names any more, every
/// `interval`; the other brokers wait to be elected.
pub(crate) async fn run_gc(
    member: Arc<ClusterMember>,
    interval: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        won = member.election().wait_for_leadership() => {
            if let Err(e) = won {
                tracing::warn!(error = %e, "leader election ended; no garbage collection here");
                shutdown.cancelled().await;
                return Ok(());
            }
        }
    }
    tracing::info!(node_id = %member.node_id(), "elected cluster leader: collecting unreferenced objects");
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticker.tick() => match collect_garbage(member.wal()).await {
                Ok(outcome) => tracing::debug!(?outcome, "object garbage collection"),
                Err(e) => tracing::warn!(error = %e, "object garbage collection failed"),
            },
        }
    }
}

/// Ends (with an error) when this broker's session with etcd has expired: its registration and
/// bundles are gone and it cannot take part any more, so the process stops and its supervisor
/// starts it again (Pulsar's `zookeeperSessionExpiredPolicy=shutdown`, its default). A `Fenced`
/// session (etcd unreachable for a while) only pauses serving; it returns to `Live` when a
/// refresh succeeds before the expiry.
pub(crate) async fn watch_session(
    member: Arc<ClusterMember>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use magnetar_metadata::SessionState;
    let mut state = member.session_state();
    loop {
        let now = *state.borrow_and_update();
        match now {
            SessionState::Expired => {
                return Err(std::io::Error::other(
                    "the cluster session with etcd expired: this broker's bundles were handed over; restart it to join again",
                ))
            }
            SessionState::Closed => return Ok(()),
            SessionState::Fenced => {
                tracing::warn!("cluster session fenced (no refresh from etcd): serving nothing until it is live again")
            }
            SessionState::Live => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            changed = state.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}
