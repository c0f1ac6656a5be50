//! The HTTP listener: `GET /health`, `GET /version`, `GET /metrics` (Prometheus, rendered by
//! magnetar-metrics), and the admin REST API under `/admin/v2` in pulsar-admin's paths and JSON
//! shapes (clusters, tenants, namespaces with retention and message-TTL policies, persistent
//! topics with stats and subscriptions), and Magnetar's own `/admin/v2/kafka/groups` for Kafka
//! consumer groups; pulsar-admin's schema endpoints, and the Confluent Schema Registry API on its
//! own listener (`registry`, [`serve_registry`]), both over magnetar-schema's store.
//!
//! Owns: HTTP routing, the admin JSON shapes, and the one mapping of the broker's domain error to
//! HTTP status codes ([`error::status_of`]), with errors as `{"reason": ...}`.
//! Must not depend on: the Kafka or Pulsar front ends, or storage/metadata directly (it goes
//! through `magnetar-broker`, and `magnetar-coordinator` for groups).

mod auth;
mod cluster;
mod compaction;
pub mod error;
mod extract;
mod groups;
mod lookup;
mod namespaces;
mod offload;
mod openapi;
mod permissions;
mod registry;
mod schemas;
mod scram;
mod server;
mod skipped;
mod subscriptions;
mod tenants;
mod topics;
mod transactions;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use magnetar_broker::Broker;
use magnetar_coordinator::GroupCoordinator;
use magnetar_metrics::{Format, Metrics};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use registry::{registry_router, RegistryServices, CONTENT_TYPE as REGISTRY_CONTENT_TYPE};
pub use server::HttpLimits;

/// Readiness shared between the binary (which flips it once every listener is serving) and
/// `/health`.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub(crate) struct AppState {
    pub(crate) broker: Arc<Broker>,
    /// `None` when no Kafka front end runs: the group endpoints answer 503.
    pub(crate) coordinator: Option<Arc<GroupCoordinator>>,
    readiness: Readiness,
    openapi: utoipa::openapi::OpenApi,
    metrics: Option<Arc<Metrics>>,
    lookup: LookupUrls,
    pub(crate) schemas: Arc<magnetar_schema::SchemaStore>,
}

/// The TLS service URLs the HTTP lookup hands out beside the broker config's plain ones
/// (`None` when that TLS listener is off).
#[derive(Clone, Debug, Default)]
pub struct LookupUrls {
    pub broker_service_url_tls: Option<String>,
    pub web_service_url_tls: Option<String>,
}

/// What the admin API serves.
#[derive(Clone, Debug)]
pub struct AdminServices {
    pub broker: Arc<Broker>,
    pub readiness: Readiness,
    pub coordinator: Option<Arc<GroupCoordinator>>,
    /// Served at `GET /metrics` (404 without).
    pub metrics: Option<Arc<Metrics>>,
    /// Set when authentication is on: `/admin/...` needs a superuser's bearer token.
    pub authenticator: Option<Arc<magnetar_auth::Authenticator>>,
    /// TLS URLs for the HTTP lookup service (`/lookup/v2/topic/...`).
    pub lookup: LookupUrls,
    /// The schema registry (none: one with default limits over the broker's metadata store).
    pub schemas: Option<Arc<magnetar_schema::SchemaStore>>,
}

/// The router without the group coordinator (the group endpoints answer 503).
pub fn router(broker: Arc<Broker>, readiness: Readiness) -> Router {
    router_with(AdminServices {
        broker,
        readiness,
        coordinator: None,
        metrics: None,
        authenticator: None,
        lookup: LookupUrls::default(),
        schemas: None,
    })
}

/// The router, separate from `serve` so tests can drive it without a socket.
pub fn router_with(services: AdminServices) -> Router {
    let authenticator = services.authenticator.clone();
    let broker = services.broker.clone();
    let router = open_router(services);
    match authenticator {
        Some(authenticator) => router.layer(axum::middleware::from_fn_with_state(
            auth::AuthState {
                authenticator,
                broker,
            },
            auth::require_authorized,
        )),
        None => router,
    }
}

/// Every route, before authentication is layered on.
fn open_router(services: AdminServices) -> Router {
    let config = services.broker.config();
    let doc = routes(config.partitions_max, &config.cluster_name);
    let schemas = services.schemas.unwrap_or_else(|| {
        Arc::new(magnetar_schema::SchemaStore::new(
            services.broker.clone(),
            magnetar_schema::SchemaConfig::default(),
        ))
    });
    let state = Arc::new(AppState {
        schemas,
        broker: services.broker,
        coordinator: services.coordinator,
        readiness: services.readiness,
        openapi: doc.document(),
        metrics: services.metrics,
        lookup: services.lookup,
    });
    doc.router
        // Not an admin operation: kept out of the OpenAPI document.
        .route("/metrics", axum::routing::get(scrape))
        .fallback(|| async { error::ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            error::ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                reason: "method not allowed on this endpoint".into(),
                owner: None,
            }
        })
        .layer(axum::extract::DefaultBodyLimit::max(
            extract::BODY_BYTES_MAX,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cluster::redirect_to_owner,
        ))
        .with_state(state)
}

/// Every routed path with its methods (`get`, `put`, ...), as the OpenAPI document lists them.
pub fn routed_paths() -> Vec<(String, Vec<String>)> {
    // The bounds do not change the paths.
    routes(u32::MAX, "")
        .routes
        .into_iter()
        .map(|(path, methods)| (path, methods.into_iter().map(str::to_string).collect()))
        .collect()
}

/// `GET /admin/v2/openapi.json`: the document built from [`routes`].
async fn openapi_json(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    Json(state.openapi.clone())
}

/// A tenant's body: `allowedClusters` may name this cluster only (412 otherwise).
fn tenant_info(cluster: &str, required: bool) -> openapi::Body {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder};
    openapi::Body::of_with::<tenants::TenantInfoJson>(
        required,
        vec![(
            "allowedClusters",
            ArrayBuilder::new()
                .items(
                    ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::SchemaType::Type(
                            utoipa::openapi::schema::Type::String,
                        ))
                        .enum_values(Some([cluster])),
                )
                .build()
                .into(),
        )],
    )
}

/// The auto topic creation override: `defaultNumPartitions` up to the broker's limit; when
/// creation is allowed `topicType` is required, and for partitioned topics the partition count.
fn auto_topic_creation(partitions_max: u32) -> openapi::Body {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let constant = |ty: Type, v: serde_json::Value| {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(ty))
            .enum_values(Some([v]))
    };
    let partitions = || {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .minimum(Some(1))
            .maximum(Some(partitions_max))
    };
    let body = openapi::Body::of_with::<namespaces::AutoTopicCreationJson>(
        true,
        vec![(
            "defaultNumPartitions",
            partitions()
                .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
                .build()
                .into(),
        )],
    );
    openapi::Body::with_cases(
        body,
        vec![
            ObjectBuilder::new().property(
                "allowAutoTopicCreation",
                constant(Type::Boolean, false.into()),
            ),
            ObjectBuilder::new()
                .property(
                    "allowAutoTopicCreation",
                    constant(Type::Boolean, true.into()),
                )
                .property(
                    "topicType",
                    constant(Type::String, "non-partitioned".into()),
                )
                .required("topicType"),
            ObjectBuilder::new()
                .property(
                    "allowAutoTopicCreation",
                    constant(Type::Boolean, true.into()),
                )
                .property("topicType", constant(Type::String, "partitioned".into()))
                .property("defaultNumPartitions", partitions())
                .required("topicType")
                .required("defaultNumPartitions"),
        ],
    )
}

/// A message id: `entryId` is at least 0 unless it names the earliest position (`ledgerId` and
/// `entryId` negative) or the latest (`ledgerId` `i64::MAX`).
fn message_id(required: bool) -> openapi::Body {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let integer = || {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .minimum(Some(i64::MIN + 1))
            .maximum(Some(i64::MAX))
    };
    openapi::Body::with_cases(
        openapi::Body::of::<subscriptions::MessageIdJson>(required),
        vec![
            ObjectBuilder::new().property("entryId", integer().minimum(Some(0))),
            ObjectBuilder::new()
                .property("ledgerId", integer().maximum(Some(-1)))
                .property("entryId", integer().maximum(Some(-1))),
            ObjectBuilder::new().property("ledgerId", integer().minimum(Some(i64::MAX))),
        ],
    )
}

/// The items of a grant body: Pulsar's action names.
fn actions() -> utoipa::openapi::schema::ObjectBuilder {
    utoipa::openapi::schema::ObjectBuilder::new()
        .enum_values(Some(magnetar_broker::AuthAction::ALL.map(|a| a.as_str())))
}

/// The items of a subscription grant body: role names.
fn roles() -> utoipa::openapi::schema::ObjectBuilder {
    utoipa::openapi::schema::ObjectBuilder::new()
        .min_length(Some(1))
        .max_length(Some(magnetar_broker::permissions::ROLE_BYTES_MAX))
        .pattern(Some(openapi::ROLE_PATTERN))
}

/// Every route of the HTTP listener, each recorded in the OpenAPI document as it is registered;
/// `partitions_max` and `cluster` are the broker's, stated as bounds of the bodies.
fn routes(partitions_max: u32, cluster: &str) -> openapi::DocRouter {
    let group = "/admin/v2/kafka/groups/{group}";
    let ns = "/admin/v2/namespaces/{tenant}/{namespace}";
    let topic = "/admin/v2/persistent/{tenant}/{namespace}/{topic}";
    let schema = "/admin/v2/schemas/{tenant}/{namespace}/{topic}";
    crate::openapi::DocRouter::new()
        .route(
            "/health",
            crate::openapi::methods!(get health),
        )
        .route(
            "/version",
            crate::openapi::methods!(get version),
        )
        .route(
            "/lookup/v2/topic/{domain}/{tenant}/{namespace}/{topic}",
            crate::openapi::methods!(get lookup::lookup_topic),
        )
        .route(
            "/admin/v2/clusters",
            crate::openapi::methods!(get tenants::list_clusters),
        )
        .route(
            "/admin/v2/brokers/{cluster}",
            crate::openapi::methods!(get cluster::list_brokers),
        )
        .route(
            &format!("{ns}/bundles"),
            crate::openapi::methods!(get cluster::bundles),
        )
        .route(
            &format!("{ns}/{{bundle}}/unload"),
            crate::openapi::methods!(put cluster::unload_bundle),
        )
        .route(
            "/admin/v2/tenants",
            crate::openapi::methods!(get tenants::list),
        )
        .route(
            "/admin/v2/tenants/{tenant}",
            crate::openapi::methods!(get tenants::get, put tenants::create => tenant_info(cluster, false), post tenants::update => tenant_info(cluster, true), delete tenants::delete),
        )
        .route(
            "/admin/v2/namespaces/{tenant}",
            crate::openapi::methods!(get namespaces::list),
        )
        .route(
            ns,
            crate::openapi::methods!(get namespaces::get_policies, put namespaces::create, delete namespaces::delete),
        )
        .route(
            &format!("{ns}/retention"),
            crate::openapi::methods!(get namespaces::get_retention, post namespaces::set_retention => crate::openapi::Body::of::<namespaces::RetentionJson>(true), delete namespaces::remove_retention),
        )
        .route(
            &format!("{ns}/compactionThreshold"),
            crate::openapi::methods!(get namespaces::get_compaction_threshold, put namespaces::set_compaction_threshold => crate::openapi::Body::integer(0, None), post namespaces::set_compaction_threshold => crate::openapi::Body::integer(0, None), delete namespaces::remove_compaction_threshold),
        )
        .route(
            &format!("{ns}/topicConfigDefaults"),
            crate::openapi::methods!(get namespaces::get_topic_config_defaults, post namespaces::set_topic_config_defaults => crate::openapi::Body::of::<namespaces::TopicConfigDefaultsJson>(true), delete namespaces::remove_topic_config_defaults),
        )
        .route(
            &format!("{ns}/messageTTL"),
            crate::openapi::methods!(get namespaces::get_ttl, post namespaces::set_ttl => crate::openapi::Body::integer(0, None), delete namespaces::remove_ttl),
        )
        .route(
            &format!("{ns}/permissions"),
            crate::openapi::methods!(get permissions::namespace_permissions),
        )
        .route(
            &format!("{ns}/permissions/{{role}}"),
            crate::openapi::methods!(post permissions::grant_namespace => crate::openapi::Body::strings(actions(), 1), delete permissions::revoke_namespace),
        )
        .route(
            &format!("{ns}/permissions/subscription"),
            crate::openapi::methods!(get permissions::subscription_permissions),
        )
        .route(
            &format!("{ns}/permissions/subscription/{{subscription}}"),
            crate::openapi::methods!(post permissions::grant_subscription => crate::openapi::Body::strings(roles(), 1)),
        )
        .route(
            &format!("{ns}/permissions/{{subscription}}/{{role}}"),
            crate::openapi::methods!(delete permissions::revoke_subscription),
        )
        .route(
            &format!("{topic}/permissions"),
            crate::openapi::methods!(get permissions::topic_permissions),
        )
        .route(
            &format!("{topic}/permissions/{{role}}"),
            crate::openapi::methods!(post permissions::grant_topic => crate::openapi::Body::strings(actions(), 1), delete permissions::revoke_topic),
        )
        .route(
            &format!("{ns}/deduplication"),
            crate::openapi::methods!(get namespaces::get_deduplication, post namespaces::set_deduplication => crate::openapi::Body::boolean(), delete namespaces::remove_deduplication),
        )
        .route(
            &format!("{ns}/schemaCompatibilityStrategy"),
            crate::openapi::methods!(get schemas::get_strategy, put schemas::set_strategy => crate::openapi::Body::enumeration(&schemas::COMPATIBILITY_NAMES), post schemas::set_strategy => crate::openapi::Body::enumeration(&schemas::COMPATIBILITY_NAMES), delete schemas::remove_strategy),
        )
        .route(
            &format!("{ns}/isAllowAutoUpdateSchema"),
            crate::openapi::methods!(get schemas::get_auto_update, post schemas::set_auto_update => crate::openapi::Body::boolean()),
        )
        .route(
            &format!("{ns}/schemaValidationEnforced"),
            crate::openapi::methods!(get schemas::get_validation, post schemas::set_validation => crate::openapi::Body::boolean()),
        )
        .route(
            &format!("{schema}/schema"),
            crate::openapi::methods!(get schemas::get_schema, post schemas::post_schema => crate::openapi::Body::of::<schemas::PostSchemaJson>(true), delete [force: boolean] schemas::delete_schema),
        )
        .route(
            &format!("{schema}/schema/{{version}}"),
            crate::openapi::methods!(get schemas::get_schema_version),
        )
        .route(
            &format!("{schema}/schemas"),
            crate::openapi::methods!(get schemas::get_all),
        )
        .route(
            &format!("{schema}/compatibility"),
            crate::openapi::methods!(post schemas::test_compatibility => crate::openapi::Body::of::<schemas::PostSchemaJson>(true)),
        )
        .route(
            &format!("{ns}/autoTopicCreation"),
            crate::openapi::methods!(get namespaces::get_auto_topic_creation, post namespaces::set_auto_topic_creation => auto_topic_creation(partitions_max), delete namespaces::remove_auto_topic_creation),
        )
        .route(
            &format!("{ns}/maxProducersPerTopic"),
            crate::openapi::methods!(get namespaces::get_max_producers, post namespaces::set_max_producers => crate::openapi::Body::integer(0, Some(u32::MAX.into())), delete namespaces::remove_max_producers),
        )
        .route(
            &format!("{ns}/maxConsumersPerTopic"),
            crate::openapi::methods!(get namespaces::get_max_consumers, post namespaces::set_max_consumers => crate::openapi::Body::integer(0, Some(u32::MAX.into())), delete namespaces::remove_max_consumers),
        )
        .route(
            &format!("{ns}/publishRate"),
            crate::openapi::methods!(get namespaces::get_publish_rate, post namespaces::set_publish_rate => crate::openapi::Body::of::<namespaces::PublishRateJson>(true), delete namespaces::remove_publish_rate),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}",
            crate::openapi::methods!(get topics::list),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/partitioned",
            crate::openapi::methods!(get topics::list_partitioned),
        )
        .route(
            topic,
            crate::openapi::methods!(put topics::create_non_partitioned, delete [force: boolean] topics::delete_non_partitioned),
        )
        .route(
            &format!("{topic}/partitions"),
            crate::openapi::methods!(get [checkAllowAutoCreation: boolean] topics::get_partitions, put topics::create_partitioned => crate::openapi::Body::integer(1, Some(partitions_max.into())), post topics::update_partitions => crate::openapi::Body::integer(1, Some(partitions_max.into())), delete [force: boolean] topics::delete_partitioned),
        )
        .route(
            &format!("{topic}/stats"),
            crate::openapi::methods!(get topics::stats),
        )
        .route(
            &format!("{topic}/partitioned-stats"),
            crate::openapi::methods!(get topics::partitioned_stats),
        )
        .route(
            &format!("{topic}/internal-stats"),
            crate::openapi::methods!(get topics::internal_stats),
        )
        .route(
            &format!("{topic}/compaction"),
            crate::openapi::methods!(put compaction::trigger, get compaction::status),
        )
        .route(
            &format!("{topic}/offload"),
            crate::openapi::methods!(put offload::trigger => message_id(true), get offload::status),
        )
        .route(
            &format!("{topic}/skippedEntries"),
            crate::openapi::methods!(get skipped::list),
        )
        .route(
            &format!("{topic}/skippedEntries/{{index}}"),
            crate::openapi::methods!(put skipped::skip, delete skipped::unskip),
        )
        .route(
            &format!("{topic}/subscriptions"),
            crate::openapi::methods!(get topics::subscriptions),
        )
        .route(
            &format!("{topic}/subscription/{{subscription}}"),
            crate::openapi::methods!(put subscriptions::create => message_id(false), delete subscriptions::delete),
        )
        .route(
            &format!("{topic}/subscription/{{subscription}}/resetcursor/{{timestamp}}"),
            crate::openapi::methods!(post subscriptions::reset_to_timestamp),
        )
        .route(
            &format!("{topic}/subscription/{{subscription}}/resetcursor"),
            crate::openapi::methods!(post subscriptions::reset_to_message_id => message_id(true)),
        )
        .route(
            &format!("{topic}/subscription/{{subscription}}/skip/{{count}}"),
            crate::openapi::methods!(post subscriptions::skip),
        )
        .route(
            &format!("{topic}/subscription/{{subscription}}/skip_all"),
            crate::openapi::methods!(post subscriptions::skip_all),
        )
        .route(
            "/admin/v2/kafka/groups",
            crate::openapi::methods!(get groups::list),
        )
        .route(
            group,
            crate::openapi::methods!(get groups::describe, delete groups::delete),
        )
        .route(
            &format!("{group}/offsets"),
            crate::openapi::methods!(post groups::reset_offsets => crate::openapi::Body::of::<groups::ResetRequest>(true)),
        )
        .route(
            "/admin/v2/kafka/transactions",
            crate::openapi::methods!(get transactions::list),
        )
        .route(
            "/admin/v2/kafka/transactions/{transactionalId}",
            crate::openapi::methods!(get transactions::describe),
        )
        .route(
            "/admin/v2/kafka/transactions/{transactionalId}/abort",
            crate::openapi::methods!(post transactions::abort),
        )
        .route(
            "/admin/v2/kafka/scram-users",
            crate::openapi::methods!(get scram::list),
        )
        .route(
            "/admin/v2/kafka/scram-users/{user}",
            crate::openapi::methods!(put scram::set => crate::openapi::Body::of::<scram::SetPassword>(true), delete [mechanism: string] scram::delete),
        )
        .route(
            "/admin/v2/openapi.json",
            crate::openapi::methods!(get openapi_json),
        )
}

async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    // Cluster mode: a broker whose etcd session is not live serves nothing.
    let session_live = state.broker.cluster().is_none_or(|member| {
        *member.session_state().borrow() == magnetar_broker::MetadataSessionState::Live
    });
    if state.readiness.is_ready() && !session_live {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "fenced" })),
        );
    }
    if state.readiness.is_ready() {
        (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "starting" })),
        )
    }
}

/// Prometheus scrape: OpenMetrics when the `Accept` header asks for it, else text 0.0.4.
async fn scrape(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(metrics) = &state.metrics else {
        return error::ApiError::not_found("metrics are not enabled").into_response();
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    let body = metrics.render(format).await;
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

async fn version() -> impl IntoResponse {
    Json(serde_json::json!({
        "name": "magnetar",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Serves HTTP on `listener` until `shutdown` is cancelled; in-flight requests finish. Idle
/// connections and connections stalled in their headers are closed after `limits`.
pub async fn serve(
    listener: TcpListener,
    services: AdminServices,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let metrics = http_metrics(&services, "http");
    server::serve(listener, router_with(services), limits, metrics, shutdown).await
}

/// The listener's connection counters, exported with the others when metrics are on.
fn http_metrics(
    services: &AdminServices,
    protocol: &'static str,
) -> Arc<magnetar_metrics::ProtocolMetrics> {
    let metrics = server::protocol_metrics(protocol);
    if let Some(registry) = &services.metrics {
        registry.register_protocol(metrics.clone());
    }
    metrics
}

/// Serves HTTPS (`webServicePortTls`) on `listener` until `shutdown` is cancelled. Handshakes
/// run in their own tasks (bounded by the TLS server's timeout and by [`HANDSHAKES_MAX`] at once)
/// so a slow or garbage handshake never holds up accept.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<magnetar_auth::tls::TlsServer>,
    services: AdminServices,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = TlsListener::start(listener, tls, shutdown.clone())?;
    let metrics = http_metrics(&services, "https");
    server::serve(listener, router_with(services), limits, metrics, shutdown).await
}

/// Serves the Confluent Schema Registry API on its own listener until `shutdown` is
/// cancelled, with the HTTP port's connection limits.
pub async fn serve_registry(
    listener: TcpListener,
    services: RegistryServices,
    limits: HttpLimits,
    metrics: Option<Arc<Metrics>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let counters = server::protocol_metrics("schema_registry");
    if let Some(registry) = &metrics {
        registry.register_protocol(counters.clone());
    }
    server::serve(
        listener,
        registry_router(services),
        limits,
        counters,
        shutdown,
    )
    .await
}

/// Most TLS handshakes in progress at once on the HTTPS port; more connections wait in the
/// kernel's accept queue.
pub const HANDSHAKES_MAX: usize = 256;

/// An axum listener yielding connections whose TLS handshake has completed.
struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(
        magnetar_auth::tls::TlsStream<tokio::net::TcpStream>,
        std::net::SocketAddr,
    )>,
    local: std::net::SocketAddr,
}

impl TlsListener {
    fn start(
        listener: TcpListener,
        tls: Arc<magnetar_auth::tls::TlsServer>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let slots = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_MAX));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let (stream, peer) = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tx.closed() => break,
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            tracing::debug!(error = %e, "https accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    match tls.accept(stream).await {
                        Ok((stream, _)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Err(e) => {
                            tracing::info!(%peer, error = %e, "https TLS handshake failed; closing connection")
                        }
                    }
                    drop(slot);
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = magnetar_auth::tls::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The acceptor stopped (shutdown): wait for axum's graceful shutdown to end serving.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
