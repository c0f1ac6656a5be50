//! Pulsar's HTTP lookup service: `GET /lookup/v2/topic/{domain}/{tenant}/{namespace}/{topic}`,
//! so a Pulsar client built with `Client("http://host:8080")` finds its broker over HTTP. The
//! client asks the partition count at `GET /admin/v2/persistent/.../partitions` (with
//! `checkAllowAutoCreation=true` to create the topic as the namespace's policy says, see
//! [`crate::topics::get_partitions`]), then looks up each topic or partition here and connects to
//! the `brokerUrl` it gets with the binary protocol.
//!
//! Authorization is Pulsar's: the role needs the lookup permission on the topic (with
//! authentication on, the bearer token is checked by [`crate::auth`] first and its role handed
//! here in the request's extensions).

use std::sync::Arc;

use crate::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use magnetar_broker::{Access, TopicName};
use serde::Serialize;

use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Pulsar's `LookupData`. Every field is present (a TLS URL is empty when that listener is off):
/// the C++ client refuses a response without `brokerUrlTls` as malformed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LookupData {
    pub broker_url: String,
    pub broker_url_tls: String,
    pub http_url: String,
    pub http_url_tls: String,
    pub native_url: String,
}

pub(crate) async fn lookup_topic(
    State(state): State<Arc<AppState>>,
    role: Option<Extension<Role>>,
    Path((domain, tenant, ns, topic)): Path<(String, String, String, String)>,
) -> ApiResult<Json<LookupData>> {
    if domain != "persistent" {
        return Err(ApiError::not_found(format!(
            "only persistent topics are served; '{domain}://' is not"
        )));
    }
    let (name, partition) = crate::topics::topic_or_partition(&tenant, &ns, &topic)?;
    authorize(
        &state,
        role.as_ref().map(|Extension(r)| r.0.as_str()),
        &name,
    )
    .await?;
    // The same resolution as the binary LOOKUP: the topic exists or is created as the
    // namespace's auto-creation policy says, and a named partition exists.
    let metadata = state
        .broker
        .topic_or_create_for(&name, magnetar_broker::AutoCreator::Pulsar)
        .await?;
    if let Some(n) = partition {
        if !metadata.partitioned || n >= metadata.partitions {
            return Err(ApiError::not_found(format!(
                "topic '{name}' has no partition {n}"
            )));
        }
    }
    // Cluster mode: the owner of the topic's bundle serves it.
    let ledger_partition = partition.filter(|_| metadata.partitioned);
    if let Some(owner) = state.broker.serving_broker(&name, ledger_partition)? {
        let pulsar = owner.info.pulsar.unwrap_or_default();
        return Ok(Json(LookupData {
            broker_url: pulsar.clone(),
            broker_url_tls: owner.info.pulsar_tls.unwrap_or_default(),
            http_url: owner.info.http.unwrap_or_default(),
            http_url_tls: owner.info.http_tls.unwrap_or_default(),
            native_url: pulsar,
        }));
    }
    let config = state.broker.config();
    Ok(Json(LookupData {
        broker_url: config.broker_service_url.clone(),
        broker_url_tls: state
            .lookup
            .broker_service_url_tls
            .clone()
            .unwrap_or_default(),
        http_url: config.service_url.clone(),
        http_url_tls: state.lookup.web_service_url_tls.clone().unwrap_or_default(),
        native_url: config.broker_service_url.clone(),
    }))
}

/// Pulsar's lookup permission on `name`, for `role` (none without authentication). A refusal is
/// 401, as Pulsar's lookup answers it (the C++ client reports it as an authorization failure of
/// the lookup instead of a connection error, which a 403 gives).
pub(crate) async fn authorize(
    state: &AppState,
    role: Option<&str>,
    name: &TopicName,
) -> ApiResult<()> {
    if state
        .broker
        .check_access(role, name, &Access::Lookup)
        .await?
    {
        return Ok(());
    }
    tracing::warn!(role = role.unwrap_or("<none>"), topic = %name, "http lookup refused: no lookup permission");
    Err(ApiError {
        status: StatusCode::UNAUTHORIZED,
        reason: format!(
            "role '{}' may not look up '{name}'",
            role.unwrap_or("<none>")
        ),
        owner: None,
    })
}
