//! Pulsar binary protocol front end (port 6650).
//!
//! Owns: the Pulsar listener and connections ([`serve`]), the frame codec ([`frame`]: simple
//! and payload commands, CRC32C checksums, broker entry metadata), the protocol types generated
//! from the vendored `proto/PulsarApi.proto` ([`proto`]), one file per command
//! (`commands/`), the Pulsar side of the broker's subscriptions ([`subscription`]: entries as
//! Pulsar bodies, deliveries as MESSAGE frames), the MessageId mapping ([`message_id`]: "MessageId" is a Pulsar word and
//! stays here), the mapping of the domain error to `ServerError` ([`error`]), and the Pulsar
//! view of Kafka-format entries, cached per entry ([`convert`]).
//!
//! Must not depend on: the Kafka front end, `kafka-protocol`, or the storage and metadata
//! crates directly: it goes through `magnetar-broker` (which re-exports the storage types a
//! front end needs) and `magnetar-format` (Kafka record batches).
//!
//! Main types: [`PulsarConfig`] (limits), [`service::Service`] (state shared by connections),
//! [`subscription::PulsarConsumer`], [`frame::Frame`].

pub mod commands;
pub mod confluent;
pub mod connection;
pub mod convert;
pub mod dedup;
pub mod error;
pub mod frame;
pub mod message_id;
pub mod metrics;
pub mod producers;
pub mod proto;
pub mod service;
pub mod subscription;

use std::sync::Arc;

use magnetar_broker::Broker;
use magnetar_metrics::CloseReason;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::service::Service;

/// Limits of the Pulsar front end. Defaults follow Pulsar's broker defaults where it has one.
#[derive(Clone, Debug)]
pub struct PulsarConfig {
    /// Largest frame (`total_size`) accepted; Pulsar's `maxMessageSize` plus 10 KiB.
    pub frame_size_max_bytes: usize,
    /// Announced to clients in CONNECTED (`max_message_size`).
    pub message_size_max_bytes: usize,
    /// Open connections; more are accepted and closed at once.
    pub connections_max: usize,
    pub producers_per_connection_max: usize,
    pub consumers_per_connection_max: usize,
    /// Encoded frames queued for one connection's socket.
    pub outbound_frames_max: usize,
    /// SENDs whose append is not yet durable, per connection (back-pressure beyond).
    pub pending_sends_max: usize,
    /// Pulsar's `maxUnackedMessagesPerConsumer`: dispatch to a consumer pauses beyond this.
    pub unacked_messages_per_consumer_max: u64,
    /// Pulsar's `keepAliveIntervalSeconds`: a PING after this much silence, a close after twice
    /// (from accept: a connection silent before CONNECT is closed the same way).
    pub keepalive_interval_s: u64,
    /// A connection that has not completed CONNECT (including authentication) this long after
    /// accept is closed.
    pub connect_timeout_ms: u64,
    /// Send broker entry metadata (publish time, index) to clients that announce support.
    pub broker_entry_metadata: bool,
    /// Pulsar's `brokerDeduplicationEnabled`: deduplicate SENDs by producer name and sequence
    /// id ([`dedup`]); a namespace's `deduplicationEnabled` policy overrides it.
    pub deduplication_enabled: bool,
    /// Producer names whose sequence state is kept per partition for deduplication.
    pub deduplication_producers_max: usize,
    /// Set when authentication is on: CONNECT must carry a valid token ([`commands`]'s `auth`).
    /// Kafka-format entries kept converted to Pulsar batches, by total bytes (`0` disables).
    pub conversion_cache_bytes: usize,
    /// Pulsar's `delayedDeliveryEnabled`: Shared and Key_Shared subscriptions hold a message
    /// back until its `deliver_at_time` (see `magnetar_broker::subscription::delayed`).
    pub delayed_delivery_enabled: bool,
    /// Pulsar's `delayedDeliveryTickTimeMillis`: how often a dispatcher holding messages looks
    /// at the clock (a message is sent at most this much after its time).
    pub delayed_delivery_tick_ms: u64,
    /// Entries (a batch is one) held per subscription; reading pauses while this many are held.
    pub delayed_delivery_tracked_max: usize,
    pub authenticator: Option<Arc<magnetar_auth::Authenticator>>,
    /// `pulsar+ssl://host:port` of the TLS port, answered in LOOKUP (`brokerServiceUrlTls`);
    /// empty without one.
    pub broker_service_url_tls: String,
    /// Pulsar's named advertised listeners (`advertisedListeners`): a LOOKUP naming one
    /// (`advertised_listener_name`, the client's `listenerName`) is answered with its URLs, and
    /// one naming a listener that does not exist is refused.
    pub advertised_listeners:
        std::collections::BTreeMap<String, magnetar_broker::cluster::ListenerUrls>,
    /// Where `/metrics` reads this front end's request counters (none: kept, not exported).
    pub metrics: Option<Arc<magnetar_metrics::Metrics>>,
    /// The schema registry; none: one with default limits over the broker's metadata store.
    pub schemas: Option<Arc<magnetar_schema::SchemaStore>>,
}

impl Default for PulsarConfig {
    fn default() -> Self {
        Self {
            frame_size_max_bytes: frame::FRAME_SIZE_MAX_BYTES,
            message_size_max_bytes: frame::MESSAGE_SIZE_MAX_BYTES,
            connections_max: 10_000,
            producers_per_connection_max: 10_000,
            consumers_per_connection_max: 10_000,
            outbound_frames_max: 4096,
            pending_sends_max: 1000,
            unacked_messages_per_consumer_max: 50_000,
            keepalive_interval_s: 30,
            connect_timeout_ms: 10_000,
            broker_entry_metadata: true,
            deduplication_enabled: false,
            deduplication_producers_max: 10_000,
            conversion_cache_bytes: convert::CACHE_BYTES_MAX,
            delayed_delivery_enabled: true,
            delayed_delivery_tick_ms: 1000,
            delayed_delivery_tracked_max: 100_000,
            authenticator: None,
            broker_service_url_tls: String::new(),
            advertised_listeners: std::collections::BTreeMap::new(),
            metrics: None,
            schemas: None,
        }
    }
}

/// Serves Pulsar clients on `listener` until `shutdown` is cancelled, with default limits.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, broker, PulsarConfig::default(), shutdown).await
}

/// Serves Pulsar clients with the given limits. Every connection and dispatcher task is tracked
/// and stopped (and awaited) before this returns.
pub async fn serve_with(
    listener: TcpListener,
    broker: Arc<Broker>,
    config: PulsarConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_listeners(vec![(listener, None)], broker, config, shutdown).await
}

/// [`serve_with`] on several listeners sharing one service and one connection limit: the plain
/// port, and the TLS port (`brokerServicePortTls`) with its TLS server side. The TLS handshake
/// runs in the connection's task, bounded by its timeout, so a slow client cannot stall accept.
pub async fn serve_listeners(
    listeners: Vec<(TcpListener, Option<Arc<magnetar_auth::tls::TlsServer>>)>,
    broker: Arc<Broker>,
    config: PulsarConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let service = Arc::new(Service::new(broker, config, shutdown.clone()));
    if let Some(metrics) = &service.config.metrics {
        metrics.register_protocol(service.metrics.clone());
    }
    let connections = Arc::new(tokio::sync::Semaphore::new(service.config.connections_max));
    let mut accepts = tokio::task::JoinSet::new();
    for (listener, tls) in listeners {
        accepts.spawn(accept_loop(
            listener,
            tls,
            service.clone(),
            connections.clone(),
            shutdown.clone(),
        ));
    }
    while accepts.join_next().await.is_some() {}
    service.tasks.close();
    service.tasks.wait().await;
    service.metrics.closes().flush();
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<magnetar_auth::tls::TlsServer>>,
    service: Arc<Service>,
    connections: Arc<tokio::sync::Semaphore>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Cluster mode: a fenced broker refuses connections (see `connection::run`).
                    if service.broker.cluster().is_some_and(|member| {
                        *member.session_state().borrow() != magnetar_broker::MetadataSessionState::Live
                    }) {
                        tracing::debug!(%peer, "cluster session not live: pulsar connection refused");
                        drop(stream);
                        continue;
                    }
                    let Ok(permit) = connections.clone().try_acquire_owned() else {
                        let limit = service.config.connections_max;
                        service.metrics.closes().closed(CloseReason::ConnectionLimit, || {
                            tracing::warn!(%peer, limit, "pulsar connection limit reached; closing")
                        });
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let (service2, tls) = (service.clone(), tls.clone());
                    let open = service.metrics.connection_opened();
                    service.tasks.spawn(async move {
                        match tls {
                            None => connection::run(service2, stream, peer, None).await,
                            Some(tls) => match tls.accept(stream).await {
                                Ok((stream, identity)) => {
                                    connection::run(service2, stream, peer, identity).await
                                }
                                Err(e) => service2.metrics.closes().closed(CloseReason::TlsHandshake, || {
                                    tracing::info!(%peer, error = %e, "pulsar TLS handshake failed; closing connection")
                                }),
                            },
                        }
                        drop((permit, open));
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pulsar accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}
