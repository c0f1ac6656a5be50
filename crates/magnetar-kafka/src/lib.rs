//! The Kafka wire protocol front end.
//!
//! Owns: the Kafka listener and its connections ([`serve`]), the request framing and allocation
//! guard in front of the `kafka-protocol` crate ([`frame`], [`guard`], [`codec`]), one module per
//! Kafka API under [`api`], the mapping of the domain error to Kafka error codes
//! ([`error_code::kafka_error`], one exhaustive `match`), and the Kafka view of the core:
//! a Kafka offset is a `MessageIndex`, a record batch (magic 2) is stored as one entry with its
//! exact bytes ([`batch`]).
//!
//! Must not depend on: magnetar-storage or magnetar-metadata directly. Everything goes through
//! magnetar-broker (`Broker`, `PartitionLog`, the domain `Error`), so Kafka words ("offset",
//! "record batch", error codes) stay in this crate.
//!
//! Main types: [`KafkaConfig`], [`serve`]. Transactions (InitProducerId with a transactional id,
//! AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn, Describe/ListTransactions) are
//! served by the transaction coordinator of magnetar-coordinator (`api::transactions` only
//! translates); Produce verifies transactional batches against it, Fetch and ListOffsets honour
//! `read_committed` through the partition's last stable offset. Consumer groups (FindCoordinator,
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups,
//! ListGroups, DeleteGroups, OffsetDelete) are served by the group coordinator of
//! magnetar-coordinator, which [`serve`] starts and stops; those modules only translate.

use std::sync::Arc;

use magnetar_broker::Broker;
use magnetar_metrics::CloseReason;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub mod api;
pub mod batch;
pub mod codec;
mod connection;
pub mod error_code;
pub mod frame;
pub mod guard;
pub mod metrics;
pub mod sasl;
pub mod topic_config;
pub mod validate;

/// Settings of the Kafka front end.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// Host and port written into Metadata responses.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// This broker's node id (0 in standalone).
    pub node_id: i32,
    /// Reported in Metadata and DescribeCluster.
    pub cluster_id: String,
    /// Largest request frame accepted; larger frames close the connection before allocating.
    pub max_request_bytes: usize,
    /// Most connections served at once; more are closed on accept with a log line.
    pub connections_max: usize,
    /// Kafka's `connections.max.idle.ms`: a connection with no request in flight and no bytes
    /// of a next one for this long is closed.
    pub connections_max_idle_ms: u64,
    /// A request frame that started arriving must be complete within this long, or the
    /// connection is closed.
    pub request_read_timeout_ms: u64,
    /// Requests read and not yet answered per connection (pipelining); reading pauses beyond.
    pub max_inflight_requests_per_connection: usize,
    /// Bytes of requests read and responses not yet written per connection; reading pauses
    /// beyond (a single request larger than this is still served, alone).
    pub max_inflight_bytes_per_connection: usize,
    /// Default for the topic config `max.message.bytes`.
    pub message_bytes_max: usize,
    /// The group coordinator's settings (`__consumer_offsets` partitions, session limits, ...).
    pub group_coordinator: magnetar_coordinator::CoordinatorConfig,
    /// Set on a `SASL_PLAINTEXT` listener: clients must authenticate before anything but
    /// ApiVersions and SASL is served.
    pub authenticator: Option<Arc<magnetar_auth::Authenticator>>,
    /// Whether the broker authenticates clients at all (`auth.enabled`), whatever this listener
    /// does: with it on, cluster-wide APIs on an unauthenticated listener are refused rather than
    /// allowed (SCRAM credentials: superusers only; without authentication anyone may, as in Kafka).
    pub authentication_enabled: bool,
    /// How long a failed authentication waits before the connection closes.
    pub failed_authentication_delay_ms: u64,
    /// Set on an `SSL` or `SASL_SSL` listener: the TLS handshake runs after accept (in the
    /// connection's task, within its timeout). With mTLS on an `SSL` listener the client
    /// certificate's CN is the principal.
    pub tls: Option<Arc<magnetar_auth::tls::TlsServer>>,
    /// Where `/metrics` reads this front end's request counters and the groups' lag (none: the
    /// counters are kept but not exported).
    pub metrics: Option<Arc<magnetar_metrics::Metrics>>,
    /// KoP's `entryFormat`: how new Kafka-produced batches are stored.
    pub entry_format: EntryFormat,
    /// Bytes of Pulsar entries kept converted to record batches for Kafka consumers.
    pub conversion_cache_bytes: usize,
    /// Most bytes the records of one produced batch may decompress to while it is validated
    /// (`kafka.validation_decompressed_bytes_max`); a batch past it is refused.
    pub validation_decompressed_bytes_max: usize,
    /// What a fetch does with a stored entry it cannot serve (`kafka.unreadable_entry_policy`).
    pub unreadable_entry_policy: UnreadableEntryPolicy,
    /// Kafka's `listeners` (`PROTOCOL://host:port`, comma-separated), as DescribeConfigs shows
    /// it for the broker; empty: this listener's advertised address.
    pub listeners: String,
    /// Kafka's `advertised.listeners`, the same way.
    pub advertised_listeners: String,
    /// This listener's name (its security protocol, e.g. `PLAINTEXT`). In cluster mode Metadata
    /// and FindCoordinator name the other brokers by their advertised address for the listener
    /// of the same name, as Kafka does.
    pub listener_name: String,
}

/// What a Kafka fetch does with a stored entry it cannot serve as a record batch (a Pulsar entry
/// that does not convert: written by an older version, or corrupt). Either way the entry is
/// counted (`magnetar_server_unreadable_entries_total{protocol="kafka"}`) and logged with its
/// index, at most once per 10 s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnreadableEntryPolicy {
    /// Served as an empty record batch covering the entry's offsets (what log compaction leaves
    /// behind), so consumers move past it, as Pulsar consumers do and as KoP did. The default:
    /// one bad entry must not stop every consumer of a partition.
    #[default]
    Skip,
    /// Kafka's behaviour for a corrupt batch: the fetch at its offset answers CORRUPT_MESSAGE
    /// (entries before it are served first); the application decides, e.g. by seeking past it.
    Fail,
}

impl UnreadableEntryPolicy {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "skip" => Some(Self::Skip),
            "fail" => Some(Self::Fail),
            _ => None,
        }
    }
}

impl KafkaConfig {
    /// Whether this listener requires SASL authentication.
    pub fn sasl_required(&self) -> bool {
        self.authenticator.is_some()
    }
}

/// KoP's `entryFormat`, the storage format of new Kafka-produced entries. Entries of either
/// format are readable by both protocols; the setting chooses which side pays the conversion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EntryFormat {
    /// The batch exactly as produced (its base offset written in): Kafka consumers are served
    /// the stored bytes; Pulsar consumers read it converted (cached per entry).
    #[default]
    Kafka,
    /// As `Kafka`, for clients whose batches are not quite standard: a batch whose record offset
    /// deltas are not `0..n` or whose last offset delta disagrees with its record count is
    /// re-encoded (uncompressed, canonical deltas) instead of stored as is; well-formed batches
    /// are stored byte-exact. Costs a decompression of every batch to check.
    MixedKafka,
    /// Converted to a Pulsar batch at produce (uncompressed): Pulsar consumers read it without
    /// conversion; Kafka consumers read it converted back (cached per entry).
    Pulsar,
}

impl EntryFormat {
    /// KoP's names: `kafka`, `mixed_kafka`, `pulsar`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "kafka" => Some(Self::Kafka),
            "mixed_kafka" => Some(Self::MixedKafka),
            "pulsar" => Some(Self::Pulsar),
            _ => None,
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            advertised_host: "127.0.0.1".to_string(),
            advertised_port: 9092,
            node_id: 0,
            cluster_id: "magnetar".to_string(),
            max_request_bytes: 100 * 1024 * 1024,
            connections_max: 10_000,
            connections_max_idle_ms: 600_000,
            request_read_timeout_ms: 30_000,
            max_inflight_requests_per_connection: 32,
            max_inflight_bytes_per_connection: 100 * 1024 * 1024,
            message_bytes_max: 1024 * 1024 + 12,
            group_coordinator: magnetar_coordinator::CoordinatorConfig::default(),
            authenticator: None,
            authentication_enabled: false,
            failed_authentication_delay_ms: 300,
            tls: None,
            metrics: None,
            entry_format: EntryFormat::Kafka,
            conversion_cache_bytes: 64 * 1024 * 1024,
            validation_decompressed_bytes_max: validate::DECOMPRESSED_BYTES_MAX_DEFAULT,
            unreadable_entry_policy: UnreadableEntryPolicy::Skip,
            listeners: String::new(),
            advertised_listeners: String::new(),
            listener_name: "PLAINTEXT".to_string(),
        }
    }
}

/// Serves Kafka clients on `listener` until `shutdown` is cancelled. On shutdown each connection
/// reads no more requests, finishes those in flight (a long-polling Fetch returns early; at most
/// 10 s for a client that does not read its responses), sends their responses and closes; this returns when all connections are closed. The group coordinator is started
/// first (creating `__consumer_offsets` if needed) and stopped last, after the connections, so
/// the broker may be shut down once this returns.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    config: KafkaConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let coordinator = magnetar_coordinator::GroupCoordinator::start(
        broker.clone(),
        config.group_coordinator.clone(),
    )
    .await
    .map_err(|e| std::io::Error::other(format!("cannot start the group coordinator: {e}")))?;
    let result =
        serve_with_coordinator(listener, broker, config, coordinator.clone(), shutdown).await;
    coordinator.shutdown().await;
    result
}

/// [`serve`] with a group coordinator the caller started (and shares, e.g. with the admin API)
/// and stops once this returns.
pub async fn serve_with_coordinator(
    listener: TcpListener,
    broker: Arc<Broker>,
    config: KafkaConfig,
    coordinator: Arc<magnetar_coordinator::GroupCoordinator>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(config.connections_max));
    let context = Arc::new(api::Context::new(
        broker,
        config,
        coordinator.clone(),
        shutdown.clone(),
    ));
    if let Some(metrics) = &context.config.metrics {
        metrics.register_protocol(context.metrics.clone());
        metrics.set_group_coordinator(Some(coordinator.clone()));
    }
    let mut connections = JoinSet::new();
    let result = loop {
        // Reap finished connections so the set does not grow with history.
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            // Per-connection accept errors (e.g. reset before accept) are not fatal.
            Err(e) if is_transient(&e) => {
                tracing::debug!(error = %e, "kafka accept failed");
                continue;
            }
            Err(e) => break Err(e),
        };
        // Cluster mode: a fenced broker serves nothing; refusing the connection sends the client
        // to another bootstrap broker.
        if context.broker.cluster().is_some_and(|member| {
            *member.session_state().borrow() != magnetar_broker::MetadataSessionState::Live
        }) {
            tracing::debug!(%peer, "cluster session not live: kafka connection refused");
            drop(stream);
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let limit = context.config.connections_max;
            context.metrics.closes().closed(CloseReason::ConnectionLimit, || {
                tracing::warn!(%peer, limit, "kafka connection limit reached; closing connection")
            });
            drop(stream);
            continue;
        };
        let context = context.clone();
        let open = context.metrics.connection_opened();
        connections.spawn(async move {
            let _ = stream.set_nodelay(true);
            match context.config.tls.clone() {
                None => connection::serve_connection(stream, peer, context).await,
                Some(tls) => match tls.accept(stream).await {
                    Ok((stream, identity)) => {
                        let context = match identity.and_then(|id| id.common_name) {
                            // SASL_SSL: the SASL exchange names the principal, as in Kafka.
                            Some(role) if !context.config.sasl_required() => {
                                tracing::info!(%peer, %role, "kafka client authenticated by TLS certificate");
                                Arc::new(context.with_session(api::Session {
                                    principal: Some(magnetar_auth::Principal { role }),
                                    default_namespace: None,
                                    host: Some(peer.ip()),
                                }))
                            }
                            _ => context,
                        };
                        connection::serve_connection(stream, peer, context).await
                    }
                    Err(e) => context.metrics.closes().closed(CloseReason::TlsHandshake, || {
                        tracing::info!(%peer, error = %e, "kafka TLS handshake failed; closing connection")
                    }),
                },
            }
            drop((slot, open));
        });
    };
    shutdown.cancel();
    while connections.join_next().await.is_some() {}
    context.metrics.closes().flush();
    if let Some(metrics) = &context.config.metrics {
        metrics.set_group_coordinator(None);
    }
    result
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || e.raw_os_error() == Some(24) // EMFILE: too many open files; keep serving the others
}
