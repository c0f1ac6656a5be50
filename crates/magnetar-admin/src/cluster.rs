//! Cluster mode's admin endpoints (Pulsar's): the live brokers, a namespace's bundles, unloading
//! a bundle; and the redirection of topic-scoped calls that reached a broker not owning the
//! topic (`307 Temporary Redirect` to the owner's HTTP address, as Pulsar answers).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use magnetar_broker::cluster::{bundle_ranges, Bundle, BundleRange, BUNDLE_COUNT_DEFAULT};
use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::AppState;

/// `GET /admin/v2/brokers/{cluster}`: the live brokers' HTTP addresses (`host:port`), as
/// `pulsar-admin brokers list` prints them. Standalone: this broker.
pub(crate) async fn list_brokers(
    State(state): State<Arc<AppState>>,
    Path(cluster): Path<String>,
) -> ApiResult<Json<Vec<String>>> {
    let config = state.broker.config();
    if cluster != config.cluster_name {
        return Err(ApiError::not_found(format!(
            "cluster '{cluster}' does not exist (this is '{}')",
            config.cluster_name
        )));
    }
    let strip = |url: &str| {
        url.trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string()
    };
    Ok(Json(match state.broker.cluster() {
        None => vec![strip(&config.service_url)],
        Some(member) => member
            .live_brokers()
            .values()
            .filter_map(|record| record.info.http.as_deref().map(strip))
            .collect(),
    }))
}

/// Pulsar's `BundlesData`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BundlesData {
    /// `numBundles + 1` boundaries, `0x00000000` to `0xffffffff`.
    pub boundaries: Vec<String>,
    pub num_bundles: u32,
}

fn bundle_count(state: &AppState) -> u32 {
    state
        .broker
        .cluster()
        .map_or(BUNDLE_COUNT_DEFAULT, |m| m.bundles_per_namespace())
}

/// `GET /admin/v2/namespaces/{tenant}/{namespace}/bundles`.
pub(crate) async fn bundles(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<BundlesData>> {
    let namespace = crate::topics::namespace(&tenant, &ns)?;
    if state.broker.namespace_policies(&namespace).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "namespace '{namespace}' does not exist"
        )));
    }
    let count = bundle_count(&state);
    let ranges = bundle_ranges(count)?;
    let mut boundaries: Vec<String> = ranges
        .iter()
        .map(|r| format!("0x{:08x}", r.lower))
        .collect();
    boundaries.push("0xffffffff".into());
    Ok(Json(BundlesData {
        boundaries,
        num_bundles: count,
    }))
}

/// `PUT /admin/v2/namespaces/{tenant}/{namespace}/{bundle}/unload`. Cluster mode: the owner
/// releases the bundle (its topics close; the broker the bundle is assigned to claims it and
/// reopens them from the shared log); another broker's bundle: 307 to it. Standalone: the
/// bundle's open topics close and reopen on their next use, as Pulsar standalone does.
pub(crate) async fn unload_bundle(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, bundle)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let namespace = crate::topics::namespace(&tenant, &ns)?;
    if state.broker.namespace_policies(&namespace).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "namespace '{namespace}' does not exist"
        )));
    }
    let range = BundleRange::parse(&bundle)?;
    let count = bundle_count(&state);
    if !bundle_ranges(count)?.contains(&range) {
        return Err(ApiError::not_found(format!(
            "'{bundle}' is not a bundle of '{namespace}' ({count} bundles)"
        )));
    }
    let bundle = Bundle { namespace, range };
    let Some(member) = state.broker.cluster() else {
        let closed = state.broker.close_bundle(&bundle, count).await;
        tracing::info!(%bundle, closed, "bundle unloaded by an admin request");
        return Ok(StatusCode::NO_CONTENT);
    };
    if member.ownership().fence(&bundle).is_none() {
        return match member.ownership().owner_of_bundle(&bundle) {
            Some(owner) if owner.node_id != member.node_id() => Err(ApiError {
                status: StatusCode::TEMPORARY_REDIRECT,
                reason: format!("bundle is owned by broker {}", owner.node_id),
                owner: Some(owner.node_id.0),
            }),
            _ => Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                reason: "the bundle is not owned by any broker right now; retry".into(),
                owner: None,
            }),
        };
    }
    member.ownership().release(&bundle).await?;
    tracing::info!(%bundle, "bundle unloaded by an admin request");
    Ok(StatusCode::NO_CONTENT)
}

/// Answers a `307` from a handler (the topic or bundle is another broker's) with `Location` set
/// to the owner's HTTP address and the same path and query; `503` when the owner's address is
/// not known.
pub(crate) async fn redirect_to_owner(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let mut response = next.run(request).await;
    if response.status() != StatusCode::TEMPORARY_REDIRECT
        || response.headers().contains_key(header::LOCATION)
    {
        return response;
    }
    let owner = response.extensions().get::<crate::error::Owner>().copied();
    let http = owner.and_then(|crate::error::Owner(node)| {
        let member = state.broker.cluster()?;
        let live = member.live_brokers();
        let record = live.get(&magnetar_broker::cluster::NodeId(node))?;
        record.info.http.clone()
    });
    match http.and_then(|base| {
        HeaderValue::from_str(&format!("{}{path_and_query}", base.trim_end_matches('/'))).ok()
    }) {
        Some(location) => {
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        None => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: "another broker serves this; its address is not known yet, retry".into(),
            owner: None,
        }
        .into_response(),
    }
}
