//! Encodes a [`Snapshot`] with `prometheus-client`'s OpenMetrics text encoder, and derives the
//! Prometheus 0.0.4 text format from it (the two differ only in counter family names, `# UNIT`
//! and `# EOF` for the metrics exported here).

use std::collections::HashSet;

use magnetar_broker::{HistogramSnapshot, LATENCY_BUCKETS_US};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::{sum_by, Snapshot};

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition format of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// Prometheus text format 0.0.4 (what `curl` and most parsers expect).
    Prometheus,
}

impl Format {
    /// OpenMetrics when the scraper's `Accept` header asks for it (Prometheus does), else the
    /// Prometheus text format.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Prometheus => PROMETHEUS_CONTENT_TYPE,
        }
    }
}

type Labels = Vec<(&'static str, String)>;

pub(crate) fn encode(snapshot: Snapshot, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ScrapeCollector(snapshot)));
    let mut text = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug in a metric name.
    if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
        text.clear();
    }
    match format {
        Format::OpenMetrics => text,
        Format::Prometheus => openmetrics_to_prometheus(&text),
    }
}

/// Renames counter families to their `_total` sample name and drops the OpenMetrics-only
/// `# UNIT` and `# EOF` lines.
pub(crate) fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len() + counters.len() * 12);
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Holds one scrape's snapshot for the registry's encode call.
#[derive(Debug)]
struct ScrapeCollector(Snapshot);

impl Collector for ScrapeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_snapshot(&self.0, &mut e)
    }
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        if labels.is_empty() {
            m.encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        } else {
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
    }
    Ok(())
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        if labels.is_empty() {
            m.encode_gauge(&value)?;
        } else {
            m.encode_family(&labels)?.encode_gauge(&value)?;
        }
    }
    Ok(())
}

fn histogram(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, HistogramSnapshot)>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in rows {
        let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_US
            .iter()
            .map(|us| *us as f64 / 1e6)
            .chain([f64::MAX])
            .zip(h.buckets.iter().copied().chain(std::iter::repeat(0)))
            .collect();
        // Counts beyond the known bounds (none today) belong to +Inf.
        let extra: u64 = h.buckets.iter().skip(buckets.len()).sum();
        if let Some(last) = buckets.last_mut() {
            last.1 += extra;
        }
        let (sum, count) = (h.sum_us as f64 / 1e6, h.count());
        if labels.is_empty() {
            m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        } else {
            m.encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
    }
    Ok(())
}

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

fn encode_snapshot(s: &Snapshot, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    gauge(
        e,
        "magnetar_build_info",
        "Always 1; the version label is the running build.",
        [(labels([("version", env!("CARGO_PKG_VERSION"))]), 1.0)],
    )?;

    // ---- server: requests per protocol and API ----
    // APIs appear once used: a protocol has many command types no client sends.
    let apis = || {
        s.protocols.iter().flat_map(|p| {
            p.apis
                .iter()
                .filter(|a| a.requests > 0 || !a.errors.is_empty())
                .map(move |a| (p.protocol, a))
        })
    };
    counter(
        e,
        "magnetar_server_requests",
        "Requests handled, by protocol and API (Kafka API name or Pulsar command).",
        apis().map(|(p, a)| (labels([("protocol", p), ("api", &a.api)]), a.requests)),
    )?;
    counter(
        e,
        "magnetar_server_request_errors",
        "Error codes answered, by protocol, API and code (one request can carry several, e.g. one per partition).",
        apis().flat_map(|(p, a)| {
            a.errors.iter().map(move |(code, name, n)| {
                (
                    labels([("protocol", p), ("api", &a.api), ("code", code), ("error", name)]),
                    *n,
                )
            })
        }),
    )?;
    histogram(
        e,
        "magnetar_server_request_latency_seconds",
        "Time from a request decoded to its response queued, by protocol and API.",
        apis().map(|(p, a)| {
            (
                labels([("protocol", p), ("api", &a.api)]),
                a.latency.clone(),
            )
        }),
    )?;
    gauge(
        e,
        "magnetar_server_connections_active",
        "Client connections open now, by protocol.",
        s.protocols.iter().map(|p| {
            (
                labels([("protocol", p.protocol)]),
                p.connections_active as f64,
            )
        }),
    )?;
    counter(
        e,
        "magnetar_server_connections_opened",
        "Client connections accepted, by protocol.",
        s.protocols
            .iter()
            .map(|p| (labels([("protocol", p.protocol)]), p.connections_opened)),
    )?;
    counter(
        e,
        "magnetar_server_unreadable_entries",
        "Stored entries a reader of this protocol could not be served (not convertible or corrupt), by protocol.",
        s.protocols
            .iter()
            .map(|p| (labels([("protocol", p.protocol)]), p.unreadable_entries)),
    )?;
    counter(
        e,
        "magnetar_server_connections_closed",
        "Client connections the broker closed or refused, by protocol and reason (idle_timeout, request_read_timeout, connect_timeout, keepalive_timeout, bad_frame, unsupported_request, not_allowed, connection_limit, tls_handshake).",
        s.protocols.iter().flat_map(|p| {
            p.connections_closed
                .iter()
                .map(move |(reason, n)| (labels([("protocol", p.protocol), ("reason", *reason)]), *n))
        }),
    )?;

    // ---- topics and partitions ----
    let topic_key = |r: &crate::PartitionRow| (r.namespace.clone(), r.topic.clone());
    let per_topic = |help: &str, value: fn(&crate::PartitionRow) -> u64| {
        let sums = sum_by(&s.partitions, topic_key, |r| i128::from(value(r)));
        (
            help.to_string(),
            sums.into_iter()
                .map(|((ns, topic), v)| {
                    (
                        labels([("namespace", &ns), ("topic", &topic)]),
                        u64::try_from(v).unwrap_or(u64::MAX),
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    type Field = fn(&crate::PartitionRow) -> u64;
    let traffic: [(&str, &str, &str, Field); 4] = [
        (
            "bytes_in",
            "Bytes appended durably (every protocol; idempotent duplicates excluded)",
            "magnetar_partition_bytes_in",
            |r| r.bytes_in,
        ),
        (
            "messages_in",
            "Messages appended durably (every protocol; idempotent duplicates excluded)",
            "magnetar_partition_messages_in",
            |r| r.messages_in,
        ),
        (
            "bytes_out",
            "Bytes sent to consumers (Kafka fetch and Pulsar dispatch)",
            "magnetar_partition_bytes_out",
            |r| r.bytes_out,
        ),
        (
            "messages_out",
            "Messages sent to consumers (Kafka fetch and Pulsar dispatch)",
            "magnetar_partition_messages_out",
            |r| r.messages_out,
        ),
    ];
    for (short, help, _, value) in &traffic {
        let (help, rows) = per_topic(help, *value);
        counter(
            e,
            &format!("magnetar_topic_{short}"),
            &format!("{help}, per topic, since its partitions were opened."),
            rows,
        )?;
    }
    let (_, storage_rows) = per_topic("", |r| r.storage_bytes);
    gauge(
        e,
        "magnetar_topic_storage_bytes",
        "Bytes of segment files, per topic (open partitions).",
        storage_rows.into_iter().map(|(l, v)| (l, v as f64)),
    )?;
    if s.partition_series {
        gauge(
            e,
            "magnetar_partition_lso_lag_messages",
            "Messages between the last stable offset and the end of the partition: what open transactions hold back from read_committed consumers.",
            s.partitions.iter().map(|r| {
                (
                    labels([
                        ("namespace", &r.namespace),
                        ("topic", &r.topic),
                        ("partition", &r.partition.to_string()),
                    ]),
                    r.lso_lag as f64,
                )
            }),
        )?;
    }
    if let Some(r) = &s.schemas {
        if let Some(ids) = r.ids {
            gauge(
                e,
                "magnetar_schema_ids",
                "Schemas registered: global ids assigned (one per distinct content, either protocol).",
                [(Labels::new(), ids as f64)],
            )?;
        }
        counter(
            e,
            "magnetar_schema_registrations",
            "New schema versions written (Pulsar producers and consumers, Confluent REST, pulsar-admin) since start.",
            [(Labels::new(), r.registrations)],
        )?;
        counter(
            e,
            "magnetar_schema_compatibility_checks",
            "Checks of a schema against a subject's versions under its compatibility level, since start.",
            [(Labels::new(), r.compatibility_checks)],
        )?;
        counter(
            e,
            "magnetar_schema_compatibility_failures",
            "Compatibility checks that found the schema incompatible, since start.",
            [(Labels::new(), r.compatibility_failures)],
        )?;
        counter(
            e,
            "magnetar_schema_registry_requests",
            "Confluent Schema Registry REST requests by HTTP status, since start.",
            r.registry_requests
                .iter()
                .map(|(status, n)| (labels([("status", &status.to_string())]), *n)),
        )?;
    }
    if let Some(t) = &s.transactions {
        gauge(
            e,
            "magnetar_transactions_ongoing",
            "Kafka transactions open or completing.",
            [(Labels::new(), t.ongoing as f64)],
        )?;
        counter(
            e,
            "magnetar_transactions_committed",
            "Kafka transactions committed (markers written) since start.",
            [(Labels::new(), t.commits)],
        )?;
        counter(
            e,
            "magnetar_transactions_aborted",
            "Kafka transactions aborted (markers written) since start.",
            [(Labels::new(), t.aborts)],
        )?;
        counter(
            e,
            "magnetar_transactions_timed_out",
            "Kafka transactions aborted because they outlived their timeout, since start.",
            [(Labels::new(), t.timed_out)],
        )?;
    }
    if s.partition_series {
        let compacted: Vec<_> = s
            .partitions
            .iter()
            .filter_map(|r| r.compaction.as_ref().map(|c| (r, c)))
            .collect();
        let rows = |value: &dyn Fn(&crate::CompactionRow) -> Option<f64>| {
            compacted
                .iter()
                .filter_map(|(r, c)| {
                    let v = value(c)?;
                    Some((
                        labels([
                            ("namespace", &r.namespace),
                            ("topic", &r.topic),
                            ("partition", &r.partition.to_string()),
                        ]),
                        v,
                    ))
                })
                .collect::<Vec<_>>()
        };
        gauge(
            e,
            "magnetar_partition_compaction_cleanable_bytes",
            "Bytes of sealed segments not yet compacted and older than min.compaction.lag.ms, per partition of a compacted topic.",
            rows(&|c| Some(c.cleanable_bytes as f64)),
        )?;
        gauge(
            e,
            "magnetar_partition_compaction_last_timestamp_seconds",
            "When the last compaction that rewrote segments of the partition ended (Unix time).",
            rows(&|c| c.last_compaction_ms.map(|ms| ms as f64 / 1000.0)),
        )?;
        gauge(
            e,
            "magnetar_partition_compaction_last_duration_seconds",
            "How long the last compaction that rewrote segments of the partition took.",
            rows(&|c| {
                c.last_compaction_ms
                    .map(|_| c.last_duration_ms as f64 / 1000.0)
            }),
        )?;
        counter(
            e,
            "magnetar_partition_compaction_reclaimed_bytes",
            "Bytes reclaimed by compacting the partition since the broker started.",
            rows(&|c| Some(c.bytes_reclaimed as f64))
                .into_iter()
                .map(|(l, v)| (l, v as u64)),
        )?;
    }
    gauge(
        e,
        "magnetar_metrics_partition_series_limited",
        "1 when more partitions are open than http.metrics_partition_series_max, so per-partition series are left out.",
        [(Labels::new(), if s.partition_series { 0.0 } else { 1.0 })],
    )?;
    if s.partition_series {
        for (_, help, name, value) in &traffic {
            counter(
                e,
                name,
                &format!("{help}, per partition, since it was opened."),
                s.partitions.iter().map(|r| {
                    (
                        labels([
                            ("namespace", &r.namespace),
                            ("topic", &r.topic),
                            ("partition", &r.partition.to_string()),
                        ]),
                        value(r),
                    )
                }),
            )?;
        }
    }

    // ---- broker ----
    gauge(
        e,
        "magnetar_broker_partitions_open",
        "Partitions (managed ledgers) open in this broker.",
        [(Labels::new(), s.partitions.len() as f64)],
    )?;
    histogram(
        e,
        "magnetar_broker_append_latency_seconds",
        "Produce latency inside the broker: from an append call to the entry being durable under the fsync policy (every protocol).",
        [(Labels::new(), s.append_latency.clone())],
    )?;

    // ---- storage ----
    gauge(
        e,
        "magnetar_storage_bytes",
        "Bytes of segment files of the open partitions.",
        [(
            Labels::new(),
            s.partitions.iter().map(|r| r.storage_bytes).sum::<u64>() as f64,
        )],
    )?;
    gauge(
        e,
        "magnetar_storage_segments",
        "Segment files of the open partitions.",
        [(
            Labels::new(),
            s.partitions.iter().map(|r| r.segments).sum::<u64>() as f64,
        )],
    )?;
    gauge(
        e,
        "magnetar_storage_append_queue_bytes",
        "Bytes queued for the next group commit, over all open partitions.",
        [(Labels::new(), s.queued_bytes as f64)],
    )?;
    histogram(
        e,
        "magnetar_storage_fsync_latency_seconds",
        "Latency of each fdatasync of a segment file (count is the number of fsyncs).",
        [(Labels::new(), s.fsync_latency.clone())],
    )?;
    counter(
        e,
        "magnetar_storage_appends",
        "Entries (producer batches) written to segment files.",
        [(Labels::new(), s.storage_appends)],
    )?;
    counter(
        e,
        "magnetar_storage_corrupt_reads",
        "Reads that met a CRC or framing error.",
        [(Labels::new(), s.corrupt_reads)],
    )?;
    counter(
        e,
        "magnetar_storage_recovery_truncations",
        "Torn or corrupt segment tails cut off by recovery when partitions were opened.",
        [(Labels::new(), s.recovery_truncations)],
    )?;
    counter(
        e,
        "magnetar_storage_recovery_truncated_bytes",
        "Bytes cut off by those truncations.",
        [(Labels::new(), s.recovery_truncated_bytes)],
    )?;
    counter(
        e,
        "magnetar_storage_recovery_corrupt_segments",
        "Sealed segments found inconsistent by recovery (reads reaching the damage fail).",
        [(Labels::new(), s.recovery_corrupt_segments)],
    )?;
    counter(
        e,
        "magnetar_storage_recovery_index_rebuilds",
        "Sealed segments whose index file was missing or did not match when partitions were opened, rebuilt from the segment.",
        [(Labels::new(), s.recovery_index_rebuilds)],
    )?;
    if let Some(c) = &s.cluster {
        encode_cluster(e, c)?;
    }
    if let Some(t) = &s.tiering {
        encode_tiering(e, t)?;
    }

    // ---- consumer groups ----
    if let Some(rows) = &s.group_lag {
        let per_group = sum_by(rows, |r| r.group.clone(), |r| i128::from(r.lag.max(0)));
        gauge(
            e,
            "magnetar_group_lag_messages",
            "Messages between a consumer group's committed offsets and the log ends, summed over its partitions.",
            per_group
                .into_iter()
                .map(|(g, v)| (labels([("group", &g)]), v as f64)),
        )?;
        if s.group_lag_series {
            gauge(
                e,
                "magnetar_group_partition_lag_messages",
                "Messages between a consumer group's committed offset and the log end of one partition.",
                rows.iter().map(|r| {
                    (
                        labels([
                            ("group", &r.group),
                            ("topic", &r.topic),
                            ("partition", &r.partition.to_string()),
                        ]),
                        r.lag as f64,
                    )
                }),
            )?;
        }
    }

    // ---- process ----
    let p = &s.process;
    if let Some(v) = p.cpu_seconds {
        let mut m = e.encode_descriptor(
            "magnetar_process_cpu_seconds",
            "User and system CPU time of the process.",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, _, u64>(&v, None)?;
    }
    let gauges: [(&str, &str, Option<f64>); 6] = [
        (
            "magnetar_process_resident_memory_bytes",
            "Resident memory of the process.",
            p.resident_memory_bytes.map(|v| v as f64),
        ),
        (
            "magnetar_process_virtual_memory_bytes",
            "Virtual memory of the process.",
            p.virtual_memory_bytes.map(|v| v as f64),
        ),
        (
            "magnetar_process_open_fds",
            "Open file descriptors.",
            p.open_fds.map(|v| v as f64),
        ),
        (
            "magnetar_process_max_fds",
            "Limit of open file descriptors.",
            p.max_fds.map(|v| v as f64),
        ),
        (
            "magnetar_process_threads",
            "Threads of the process.",
            p.threads.map(|v| v as f64),
        ),
        (
            "magnetar_process_start_time_seconds",
            "Start time of the process since the Unix epoch.",
            p.start_time_seconds,
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(v) = value {
            gauge(e, name, help, [(Labels::new(), v)])?;
        }
    }
    Ok(())
}

/// Tiered storage: uploads of sealed segments, range reads of offloaded ones, the block cache.
fn encode_tiering(e: &mut DescriptorEncoder, t: &crate::TierRow) -> Result<(), std::fmt::Error> {
    let one = |v: u64| [(Labels::new(), v)];
    counter(
        e,
        "magnetar_storage_tier_uploads",
        "Sealed segments offloaded to the object store.",
        one(t.uploads),
    )?;
    counter(
        e,
        "magnetar_storage_tier_upload_bytes",
        "Bytes of sealed segments offloaded to the object store.",
        one(t.upload_bytes),
    )?;
    counter(
        e,
        "magnetar_storage_tier_upload_failures",
        "Offloads that failed (the local copy is kept and retried).",
        one(t.upload_failures),
    )?;
    histogram(
        e,
        "magnetar_storage_tier_upload_latency_seconds",
        "Time of each successful offload of a sealed segment (upload, size check, index).",
        [(Labels::new(), t.upload_latency.clone())],
    )?;
    counter(
        e,
        "magnetar_storage_tier_gets",
        "Range reads of offloaded segments from the object store.",
        one(t.gets),
    )?;
    counter(
        e,
        "magnetar_storage_tier_get_bytes",
        "Bytes read from the object store for offloaded segments.",
        one(t.get_bytes),
    )?;
    counter(
        e,
        "magnetar_storage_tier_get_failures",
        "Range reads of offloaded segments that failed or came back short.",
        one(t.get_failures),
    )?;
    counter(
        e,
        "magnetar_storage_tier_cache_hits",
        "Blocks of offloaded segments served from the block cache.",
        one(t.cache_hits),
    )?;
    counter(
        e,
        "magnetar_storage_tier_cache_misses",
        "Blocks of offloaded segments not in the block cache (fetched with read-ahead).",
        one(t.cache_misses),
    )?;
    gauge(
        e,
        "magnetar_storage_tier_cache_bytes",
        "Bytes held by the block cache of offloaded segments.",
        [(Labels::new(), t.cache_bytes as f64)],
    )
}

/// Cluster mode: the live set, bundle ownership, and the shared WAL (objects, commits, seals,
/// garbage collection, takeovers).
fn encode_cluster(e: &mut DescriptorEncoder, c: &crate::ClusterRow) -> Result<(), std::fmt::Error> {
    let one = |v: u64| [(Labels::new(), v)];
    gauge(
        e,
        "magnetar_cluster_live_brokers",
        "Brokers this broker sees alive in the cluster (itself included).",
        [(Labels::new(), c.live_brokers as f64)],
    )?;
    gauge(
        e,
        "magnetar_cluster_owned_bundles",
        "Namespace bundles this broker owns and serves.",
        [(Labels::new(), c.owned_bundles as f64)],
    )?;
    let counters: [(&str, &str, u64); 19] = [
        ("magnetar_cluster_bundle_claims", "Bundle claims that committed.", c.claims),
        ("magnetar_cluster_bundle_claim_failures", "Bundle claims refused by a compare or by the session.", c.claim_failures),
        ("magnetar_cluster_fence_events", "Times this broker dropped bundles: its session was fenced or ended, or another broker's claim replaced its own.", c.fence_events),
        ("magnetar_cluster_bundle_releases", "Bundles released (graceful shutdown, rebalancing).", c.releases),
        ("magnetar_cluster_bundle_rebalanced", "Bundles released to hand them to the broker the rendezvous rule gives them (rebalancing).", c.rebalanced),
        ("magnetar_cluster_session_refresh_failures", "Session (etcd lease) refreshes that failed or timed out.", c.session_refresh_failures),
        ("magnetar_wal_objects", "Shared WAL objects written.", c.wal_objects),
        ("magnetar_wal_bytes", "Bytes of shared WAL objects written.", c.wal_bytes),
        ("magnetar_wal_put_failures", "WAL object PUTs that failed or timed out.", c.wal_put_failures),
        ("magnetar_wal_commits", "WAL commit transactions that succeeded.", c.wal_commits),
        ("magnetar_wal_commit_failures", "WAL commits that failed for a reason other than a lost fence.", c.wal_commit_failures),
        ("magnetar_wal_fenced_chunks", "Ledger chunks refused because another broker took the ledger over.", c.wal_fenced),
        ("magnetar_wal_timed_out_appends", "Appends failed after the WAL commit timeout.", c.wal_timed_out),
        ("magnetar_wal_seals", "Segments sealed from WAL chunks.", c.wal_seals),
        ("magnetar_wal_seal_failures", "Seals that failed (retried).", c.wal_seal_failures),
        ("magnetar_wal_sealed_bytes", "Bytes moved from WAL objects into segment objects.", c.wal_sealed_bytes),
        ("magnetar_wal_collected_wal_objects", "WAL objects deleted by garbage collection.", c.wal_collected_wal_objects),
        ("magnetar_wal_collected_segment_objects", "Unrecorded segment objects deleted by garbage collection.", c.wal_collected_segment_objects),
        ("magnetar_wal_takeovers", "Ledgers opened on the shared WAL (each one fences the previous writer).", c.wal_takeovers),
    ];
    for (name, help, value) in counters {
        counter(e, name, help, one(value))?;
    }
    histogram(
        e,
        "magnetar_cluster_session_refresh_seconds",
        "Session (etcd lease) refresh attempts, from the send to the answer or to giving up.",
        [(Labels::new(), c.session_refresh_latency.clone())],
    )?;
    histogram(
        e,
        "magnetar_wal_commit_latency_seconds",
        "From the start of a WAL flush (PUT) to the end of its commit.",
        [(Labels::new(), c.wal_commit_latency.clone())],
    )?;
    histogram(
        e,
        "magnetar_wal_takeover_latency_seconds",
        "Time to open a ledger on the shared WAL (epoch bump, records loaded and checked).",
        [(Labels::new(), c.wal_takeover_latency.clone())],
    )
}
