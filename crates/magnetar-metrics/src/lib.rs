//! Prometheus metrics: what `GET /metrics` serves.
//!
//! Owns: the metric names (`magnetar_<subsystem>_<name>_<unit>`, listed in `docs/metrics.md`),
//! the request counters the front ends record into ([`ProtocolMetrics`]: per-API counts, latency
//! histograms and errors by code, connection gauges), and the scrape ([`Metrics::render`]),
//! which reads everything else where it already lives: per-partition traffic counters on the
//! broker's `PartitionLog`s, ledger statistics (segments, bytes, fsync latency histogram,
//! recovery repairs) from storage through the broker, consumer group lag from the group
//! coordinator, and the process from `/proc`. Encoding is the `prometheus-client` crate's
//! (OpenMetrics text), with the Prometheus 0.0.4 text format derived from it for scrapers that
//! do not ask for OpenMetrics.
//!
//! Must not depend on: the front ends or wire codecs (they depend on this crate and record into
//! it), or storage and metadata directly (everything comes through magnetar-broker). Storage
//! and broker keep plain atomics and never depend on a metrics library.
//!
//! Hot-path cost: recording a request is an array index by API number and three relaxed atomic
//! adds; partition traffic is two relaxed atomic adds on the partition object the caller already
//! holds. Labels are built only at scrape time.
//!
//! Main types: [`Metrics`], [`MetricsSettings`], [`ProtocolMetrics`], [`Format`].

pub mod closes;
mod encode;
pub mod process;
pub mod protocol;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use magnetar_broker::{Broker, HistogramSnapshot};
use magnetar_coordinator::GroupCoordinator;

pub use closes::{CloseReason, ConnectionCloses};
pub use encode::{Format, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
pub use process::ProcessStats;
pub use protocol::{ConnectionGuard, ProtocolMetrics, ProtocolSnapshot};

/// How long a scrape waits for consumer group state before leaving group lag out.
const GROUP_LAG_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of the exporter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Per-partition series (traffic, group lag) are exported while the broker has at most this
    /// many open partitions (and for at most this many group partitions); beyond it only the
    /// per-topic and per-group sums are, so a large cluster cannot flood Prometheus.
    pub partition_series_max: usize,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            partition_series_max: 1000,
        }
    }
}

/// The metrics of one broker process; share as `Arc`.
pub struct Metrics {
    settings: MetricsSettings,
    broker: Arc<Broker>,
    protocols: Mutex<Vec<Arc<ProtocolMetrics>>>,
    coordinator: Mutex<Option<Arc<GroupCoordinator>>>,
    tiering: Mutex<Option<Arc<magnetar_broker::tiering::Tiering>>>,
    schemas: Mutex<Option<Arc<magnetar_schema::SchemaStore>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Traffic and storage of one open partition, read at scrape time.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartitionRow {
    pub namespace: String,
    pub topic: String,
    pub partition: u32,
    pub bytes_in: u64,
    pub messages_in: u64,
    pub bytes_out: u64,
    pub messages_out: u64,
    pub storage_bytes: u64,
    pub segments: u64,
    /// Messages between the last stable offset and the end (open transactions hold them back).
    pub lso_lag: u64,
    /// Partitions of topics with `cleanup.policy=compact` on a local ledger.
    pub compaction: Option<CompactionRow>,
}

/// Log compaction of one partition.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompactionRow {
    pub cleanable_bytes: u64,
    pub last_compaction_ms: Option<i64>,
    pub last_duration_ms: u64,
    pub bytes_reclaimed: u64,
}

/// Lag of one group on one partition.
#[derive(Debug, Clone)]
pub(crate) struct LagRow {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}

/// Tiered storage counters (when tiering is on).
#[derive(Debug, Clone, Default)]
pub(crate) struct TierRow {
    pub uploads: u64,
    pub upload_bytes: u64,
    pub upload_failures: u64,
    pub gets: u64,
    pub get_bytes: u64,
    pub get_failures: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bytes: u64,
    pub upload_latency: magnetar_broker::HistogramSnapshot,
}

/// Cluster mode: ownership and shared-WAL counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterRow {
    pub live_brokers: u64,
    pub owned_bundles: u64,
    pub claims: u64,
    pub claim_failures: u64,
    pub fence_events: u64,
    pub releases: u64,
    pub rebalanced: u64,
    pub session_refresh_failures: u64,
    pub session_refresh_latency: magnetar_broker::HistogramSnapshot,
    pub wal_objects: u64,
    pub wal_bytes: u64,
    pub wal_put_failures: u64,
    pub wal_commits: u64,
    pub wal_commit_failures: u64,
    pub wal_fenced: u64,
    pub wal_timed_out: u64,
    pub wal_commit_latency: magnetar_broker::HistogramSnapshot,
    pub wal_seals: u64,
    pub wal_seal_failures: u64,
    pub wal_sealed_bytes: u64,
    pub wal_collected_wal_objects: u64,
    pub wal_collected_segment_objects: u64,
    pub wal_takeovers: u64,
    pub wal_takeover_latency: magnetar_broker::HistogramSnapshot,
}

/// Everything one scrape reports; encoded by [`encode`].
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub protocols: Vec<ProtocolSnapshot>,
    pub partitions: Vec<PartitionRow>,
    pub partition_series: bool,
    pub append_latency: HistogramSnapshot,
    pub fsync_latency: HistogramSnapshot,
    pub fsyncs: u64,
    pub storage_appends: u64,
    pub corrupt_reads: u64,
    pub recovery_truncations: u64,
    pub recovery_truncated_bytes: u64,
    pub recovery_corrupt_segments: u64,
    pub recovery_index_rebuilds: u64,
    pub queued_bytes: u64,
    /// `None` when no group coordinator is running or its state could not be read in time.
    pub group_lag: Option<Vec<LagRow>>,
    pub group_lag_series: bool,
    pub process: ProcessStats,
    pub tiering: Option<TierRow>,
    pub cluster: Option<ClusterRow>,
    /// `None` while no transaction coordinator runs.
    pub transactions: Option<TxnRow>,
    /// `None` without a schema registry.
    pub schemas: Option<SchemaRow>,
}

/// The schema registry.
#[derive(Debug, Clone, Default)]
pub(crate) struct SchemaRow {
    /// Global ids assigned; `None` when the metadata store did not answer in time.
    pub ids: Option<u64>,
    pub registrations: u64,
    pub compatibility_checks: u64,
    pub compatibility_failures: u64,
    pub registry_requests: Vec<(u16, u64)>,
}

/// The transaction coordinator.
#[derive(Debug, Clone, Default)]
pub(crate) struct TxnRow {
    pub ongoing: u64,
    pub commits: u64,
    pub aborts: u64,
    pub timed_out: u64,
}

impl Metrics {
    pub fn new(broker: Arc<Broker>, settings: MetricsSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            broker,
            protocols: Mutex::new(Vec::new()),
            coordinator: Mutex::new(None),
            tiering: Mutex::new(None),
            schemas: Mutex::new(None),
        })
    }

    /// The tiered storage whose uploads, reads and block cache are reported (`None`: off).
    pub fn set_tiering(&self, tiering: Option<Arc<magnetar_broker::tiering::Tiering>>) {
        *self.tiering.lock().unwrap_or_else(|e| e.into_inner()) = tiering;
    }

    /// The schema registry whose counters a scrape reports.
    pub fn set_schema_store(&self, schemas: Option<Arc<magnetar_schema::SchemaStore>>) {
        *self.schemas.lock().unwrap_or_else(|e| e.into_inner()) = schemas;
    }

    pub fn settings(&self) -> &MetricsSettings {
        &self.settings
    }

    /// Adds a front end's request counters to what is scraped (once per front end, at startup).
    pub fn register_protocol(&self, protocol: Arc<ProtocolMetrics>) {
        let mut protocols = self.protocols.lock().unwrap_or_else(|e| e.into_inner());
        if !protocols.iter().any(|p| Arc::ptr_eq(p, &protocol)) {
            protocols.push(protocol);
        }
    }

    /// The group coordinator whose groups' lag is reported (`None` when it stops).
    pub fn set_group_coordinator(&self, coordinator: Option<Arc<GroupCoordinator>>) {
        *self.coordinator.lock().unwrap_or_else(|e| e.into_inner()) = coordinator;
    }

    /// Reads every metric and encodes it in `format`.
    pub async fn render(&self, format: Format) -> String {
        let snapshot = self.snapshot().await;
        encode::encode(snapshot, format)
    }

    async fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            protocols: self
                .protocols
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|p| p.snapshot())
                .collect(),
            ..Snapshot::default()
        };
        let default_namespace = &self.broker.config().default_namespace;
        let mut logs = self.broker.open_partitions().await;
        logs.sort_by(|a, b| a.name().cmp(b.name()));
        for log in &logs {
            let traffic = log.traffic();
            let stats = log.stats();
            let name = log.name();
            let compaction = match self.broker.topic(&name.topic).await {
                Ok(Some(metadata)) => {
                    self.broker
                        .cleanable_bytes(log, &metadata)
                        .map(|cleanable| {
                            let status = self.broker.compaction_status(name);
                            CompactionRow {
                                cleanable_bytes: cleanable,
                                last_compaction_ms: status.last_compaction_ms,
                                last_duration_ms: status.last_duration_ms,
                                bytes_reclaimed: status.bytes_reclaimed,
                            }
                        })
                }
                _ => None,
            };
            s.partitions.push(PartitionRow {
                compaction,
                namespace: name.topic.namespace.to_string(),
                topic: name.topic.short_name(default_namespace),
                partition: name.partition,
                bytes_in: traffic.bytes_in.load(Ordering::Relaxed),
                messages_in: traffic.messages_in.load(Ordering::Relaxed),
                bytes_out: traffic.bytes_out.load(Ordering::Relaxed),
                messages_out: traffic.messages_out.load(Ordering::Relaxed),
                storage_bytes: stats.total_bytes,
                segments: stats.segments.len() as u64,
                lso_lag: log.end_index().saturating_sub(log.last_stable_index()),
            });
            s.append_latency.merge(&traffic.append_latency.snapshot());
            s.fsync_latency.merge(&stats.fsync_latency);
            s.fsyncs += stats.fsyncs;
            s.storage_appends += stats.appends;
            s.corrupt_reads += stats.corrupt_reads;
            s.recovery_truncations += stats.recovery.truncations;
            s.recovery_truncated_bytes += stats.recovery.truncated_bytes;
            s.recovery_corrupt_segments += stats.recovery.corrupt_segments;
            s.recovery_index_rebuilds += stats.recovery.index_rebuilds.len() as u64;
            s.queued_bytes += stats.queued_bytes;
        }
        s.partition_series = logs.len() <= self.settings.partition_series_max;
        let coordinator = self
            .coordinator
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(txn) = coordinator
            .as_ref()
            .and_then(|c| c.transactions_if_started())
        {
            let c = txn.counters();
            let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            if let Ok(ongoing) = tokio::time::timeout(GROUP_LAG_TIMEOUT, txn.ongoing()).await {
                s.transactions = Some(TxnRow {
                    ongoing,
                    commits: get(&c.commits),
                    aborts: get(&c.aborts),
                    timed_out: get(&c.timed_out),
                });
            }
        }
        if let Some(coordinator) = coordinator {
            match tokio::time::timeout(GROUP_LAG_TIMEOUT, group_lag(&coordinator)).await {
                Ok(Some(rows)) => {
                    s.group_lag_series = rows.len() <= self.settings.partition_series_max;
                    s.group_lag = Some(rows);
                }
                Ok(None) => {}
                Err(_) => tracing::warn!("group lag left out of a scrape: the group coordinator did not answer in {GROUP_LAG_TIMEOUT:?}"),
            }
        }
        let schemas = self
            .schemas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(store) = schemas {
            let c = store.counters();
            let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            let ids = match tokio::time::timeout(GROUP_LAG_TIMEOUT, store.ids_assigned()).await {
                Ok(Ok(ids)) => Some(ids),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "schema ids left out of a scrape");
                    None
                }
                Err(_) => None,
            };
            s.schemas = Some(SchemaRow {
                ids,
                registrations: get(&c.registrations),
                compatibility_checks: get(&c.compatibility_checks),
                compatibility_failures: get(&c.compatibility_failures),
                registry_requests: c.registry_requests(),
            });
        }
        s.process = ProcessStats::read();
        let tiering = self
            .tiering
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        s.tiering = tiering.map(|t| {
            let c = t.counters();
            let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            TierRow {
                uploads: get(&c.uploads),
                upload_bytes: get(&c.upload_bytes),
                upload_failures: get(&c.upload_failures),
                gets: get(&c.gets),
                get_bytes: get(&c.get_bytes),
                get_failures: get(&c.get_failures),
                cache_hits: get(&c.cache_hits),
                cache_misses: get(&c.cache_misses),
                cache_bytes: t.cache_bytes(),
                upload_latency: c.upload_latency.snapshot(),
            }
        });
        s.cluster = self.broker.cluster().map(|member| {
            let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            let o = member.ownership().metrics();
            let w = member.wal().counters();
            ClusterRow {
                live_brokers: member.live_brokers().len() as u64,
                owned_bundles: get(&o.owned_bundles),
                claims: get(&o.claims),
                claim_failures: get(&o.claim_failures),
                fence_events: get(&o.fence_events),
                releases: get(&o.releases),
                rebalanced: get(&o.rebalanced),
                session_refresh_failures: get(&member.session_metrics().refresh_failures),
                session_refresh_latency: member.session_metrics().refresh_latency.snapshot(),
                wal_objects: get(&w.objects),
                wal_bytes: get(&w.bytes),
                wal_put_failures: get(&w.put_failures),
                wal_commits: get(&w.commits),
                wal_commit_failures: get(&w.commit_failures),
                wal_fenced: get(&w.fenced),
                wal_timed_out: get(&w.timed_out),
                wal_commit_latency: w.commit_latency.snapshot(),
                wal_seals: get(&w.seals),
                wal_seal_failures: get(&w.seal_failures),
                wal_sealed_bytes: get(&w.sealed_bytes),
                wal_collected_wal_objects: get(&w.collected_wal_objects),
                wal_collected_segment_objects: get(&w.collected_segment_objects),
                wal_takeovers: get(&w.takeovers),
                wal_takeover_latency: w.takeover_latency.snapshot(),
            }
        });
        s
    }
}

/// Lag of every partition every group has committed, or `None` while groups are loading.
async fn group_lag(coordinator: &GroupCoordinator) -> Option<Vec<LagRow>> {
    let groups = coordinator.list_groups(&[]).await.ok()?;
    let mut rows = Vec::new();
    for group in groups {
        let Ok(lags) = coordinator.group_lag(&group.group_id).await else {
            continue;
        };
        for lag in lags {
            if let Some(value) = lag.lag {
                rows.push(LagRow {
                    group: group.group_id.clone(),
                    topic: lag.topic,
                    partition: lag.partition,
                    lag: value,
                });
            }
        }
    }
    rows.sort_by(|a, b| (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition)));
    Some(rows)
}

/// Sums rows by a key (per-topic totals of per-partition rows).
pub(crate) fn sum_by<K: Ord, R>(
    rows: &[R],
    key: impl Fn(&R) -> K,
    value: impl Fn(&R) -> i128,
) -> BTreeMap<K, i128> {
    let mut sums = BTreeMap::new();
    for row in rows {
        *sums.entry(key(row)).or_insert(0) += value(row);
    }
    sums
}
