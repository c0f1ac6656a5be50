//! The HTTP listener: `GET /health` and `GET /version` (later the admin REST API in
//! pulsar-admin's shape, and `/metrics`).
//!
//! Owns: HTTP routing and the mapping of the broker's domain error to HTTP status codes.
//! Must not depend on: the Kafka or Pulsar front ends, or storage/metadata directly (it goes
//! through `magnetar-broker`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use magnetar_broker::Broker;
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

#[derive(Clone)]
struct AppState {
    #[allow(dead_code)] // the admin API (a later issue) reads it
    broker: Arc<Broker>,
    readiness: Readiness,
}

/// The router, separate from `serve` so tests can drive it without a socket.
pub fn router(broker: Arc<Broker>, readiness: Readiness) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .with_state(AppState { broker, readiness })
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
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
    broker: Arc<Broker>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(broker, readiness))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
