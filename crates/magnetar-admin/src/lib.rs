//! The HTTP listener: `GET /health`, `GET /version`, and the admin REST API under `/admin/v2`
//! in pulsar-admin's paths and JSON shapes (clusters, tenants, namespaces with retention and
//! message-TTL policies, persistent topics with stats and subscriptions), and Magnetar's own
//! `/admin/v2/kafka/groups` for Kafka consumer groups.
//!
//! Owns: HTTP routing, the admin JSON shapes, and the one mapping of the broker's domain error to
//! HTTP status codes ([`error::status_of`]), with errors as `{"reason": ...}`.
//! Must not depend on: the Kafka or Pulsar front ends, or storage/metadata directly (it goes
//! through `magnetar-broker`, and `magnetar-coordinator` for groups).

pub mod error;
mod groups;
mod json;
mod namespaces;
mod permissions;
mod subscriptions;
mod tenants;
mod topics;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use magnetar_broker::Broker;
use magnetar_coordinator::GroupCoordinator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
}

/// What the admin API serves.
#[derive(Clone, Debug)]
pub struct AdminServices {
    pub broker: Arc<Broker>,
    pub readiness: Readiness,
    pub coordinator: Option<Arc<GroupCoordinator>>,
}

/// The router without the group coordinator (the group endpoints answer 503).
pub fn router(broker: Arc<Broker>, readiness: Readiness) -> Router {
    router_with(AdminServices {
        broker,
        readiness,
        coordinator: None,
    })
}

/// The router, separate from `serve` so tests can drive it without a socket.
pub fn router_with(services: AdminServices) -> Router {
    let state = Arc::new(AppState {
        broker: services.broker,
        coordinator: services.coordinator,
        readiness: services.readiness,
    });
    let group = "/admin/v2/kafka/groups/{group}";
    let ns = "/admin/v2/namespaces/{tenant}/{namespace}";
    let topic = "/admin/v2/persistent/{tenant}/{namespace}/{topic}";
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/admin/v2/clusters", get(tenants::list_clusters))
        .route("/admin/v2/tenants", get(tenants::list))
        .route(
            "/admin/v2/tenants/{tenant}",
            get(tenants::get)
                .put(tenants::create)
                .post(tenants::update)
                .delete(tenants::delete),
        )
        .route("/admin/v2/namespaces/{tenant}", get(namespaces::list))
        .route(
            ns,
            get(namespaces::get_policies)
                .put(namespaces::create)
                .delete(namespaces::delete),
        )
        .route(
            &format!("{ns}/retention"),
            get(namespaces::get_retention)
                .post(namespaces::set_retention)
                .delete(namespaces::remove_retention),
        )
        .route(
            &format!("{ns}/messageTTL"),
            get(namespaces::get_ttl)
                .post(namespaces::set_ttl)
                .delete(namespaces::remove_ttl),
        )
        .route(
            &format!("{ns}/permissions"),
            get(permissions::namespace_permissions),
        )
        .route(
            &format!("{ns}/permissions/{{role}}"),
            axum::routing::post(permissions::grant_namespace).delete(permissions::revoke_namespace),
        )
        .route(
            &format!("{ns}/permissions/subscription"),
            get(permissions::subscription_permissions),
        )
        .route(
            &format!("{ns}/permissions/subscription/{{subscription}}"),
            axum::routing::post(permissions::grant_subscription),
        )
        .route(
            &format!("{ns}/permissions/{{subscription}}/{{role}}"),
            axum::routing::delete(permissions::revoke_subscription),
        )
        .route(
            &format!("{topic}/permissions"),
            get(permissions::topic_permissions),
        )
        .route(
            &format!("{topic}/permissions/{{role}}"),
            axum::routing::post(permissions::grant_topic).delete(permissions::revoke_topic),
        )
        .route(
            &format!("{ns}/deduplication"),
            get(namespaces::get_deduplication)
                .post(namespaces::set_deduplication)
                .delete(namespaces::remove_deduplication),
        )
        .route(
            &format!("{ns}/autoTopicCreation"),
            get(namespaces::get_auto_topic_creation)
                .post(namespaces::set_auto_topic_creation)
                .delete(namespaces::remove_auto_topic_creation),
        )
        .route(
            &format!("{ns}/maxProducersPerTopic"),
            get(namespaces::get_max_producers)
                .post(namespaces::set_max_producers)
                .delete(namespaces::remove_max_producers),
        )
        .route(
            &format!("{ns}/maxConsumersPerTopic"),
            get(namespaces::get_max_consumers)
                .post(namespaces::set_max_consumers)
                .delete(namespaces::remove_max_consumers),
        )
        .route(
            &format!("{ns}/publishRate"),
            get(namespaces::get_publish_rate)
                .post(namespaces::set_publish_rate)
                .delete(namespaces::remove_publish_rate),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}",
            get(topics::list),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/partitioned",
            get(topics::list_partitioned),
        )
        .route(
            topic,
            axum::routing::put(topics::create_non_partitioned)
                .delete(topics::delete_non_partitioned),
        )
        .route(
            &format!("{topic}/partitions"),
            get(topics::get_partitions)
                .put(topics::create_partitioned)
                .post(topics::update_partitions)
                .delete(topics::delete_partitioned),
        )
        .route(&format!("{topic}/stats"), get(topics::stats))
        .route(
            &format!("{topic}/partitioned-stats"),
            get(topics::partitioned_stats),
        )
        .route(
            &format!("{topic}/internal-stats"),
            get(topics::internal_stats),
        )
        .route(
            &format!("{topic}/subscriptions"),
            get(topics::subscriptions),
        )
        .route(
            &format!("{topic}/subscription/{{subscription}}"),
            axum::routing::put(subscriptions::create).delete(subscriptions::delete),
        )
        .route(
            &format!("{topic}/subscription/{{subscription}}/resetcursor/{{timestamp}}"),
            axum::routing::post(subscriptions::reset_to_timestamp),
        )
        .route(
            &format!("{topic}/subscription/{{subscription}}/resetcursor"),
            axum::routing::post(subscriptions::reset_to_message_id),
        )
        .route(
            &format!("{topic}/subscription/{{subscription}}/skip/{{count}}"),
            axum::routing::post(subscriptions::skip),
        )
        .route(
            &format!("{topic}/subscription/{{subscription}}/skip_all"),
            axum::routing::post(subscriptions::skip_all),
        )
        .route("/admin/v2/kafka/groups", get(groups::list))
        .route(group, get(groups::describe).delete(groups::delete))
        .route(
            &format!("{group}/offsets"),
            axum::routing::post(groups::reset_offsets),
        )
        .fallback(|| async { error::ApiError::not_found("no such endpoint") })
        .with_state(state)
}

async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
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

async fn version() -> impl IntoResponse {
    Json(serde_json::json!({
        "name": "magnetar",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Serves HTTP on `listener` until `shutdown` is cancelled; in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    services: AdminServices,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router_with(services))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
