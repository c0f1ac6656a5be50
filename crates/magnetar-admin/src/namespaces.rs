//! `/admin/v2/namespaces`: list, create, delete, policies, retention, message TTL and
//! deduplication.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use magnetar_broker::{NamespaceName, NamespacePolicies, TenantName};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::json::JsonBody;
use crate::AppState;

/// Pulsar's RetentionPolicies JSON: `-1` is unlimited.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionJson {
    pub retention_time_in_minutes: i64,
    #[serde(rename = "retentionSizeInMB")]
    pub retention_size_in_mb: i64,
}

impl RetentionJson {
    fn from_policies(p: &NamespacePolicies) -> Self {
        Self {
            retention_time_in_minutes: p.retention_time_ms.map_or(-1, |ms| (ms / 60_000) as i64),
            retention_size_in_mb: p
                .retention_size_bytes
                .map_or(-1, |b| (b / (1024 * 1024)) as i64),
        }
    }
}

/// The part of Pulsar's Policies JSON that Magnetar keeps.
#[derive(Debug, Serialize)]
pub struct PoliciesJson {
    pub retention_policies: RetentionJson,
    pub message_ttl_in_seconds: Option<u64>,
}

fn namespace(tenant: &str, namespace: &str) -> ApiResult<NamespaceName> {
    Ok(NamespaceName::new(tenant, namespace)?)
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<String>>> {
    let names = state
        .broker
        .list_namespaces(&TenantName::new(&tenant)?)
        .await?;
    Ok(Json(names.iter().map(ToString::to_string).collect()))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .broker
        .create_namespace(&namespace(&tenant, &ns)?, NamespacePolicies::default())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .broker
        .delete_namespace(&namespace(&tenant, &ns)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn policies(state: &AppState, name: &NamespaceName) -> ApiResult<NamespacePolicies> {
    state
        .broker
        .namespace_policies(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("namespace '{name}' does not exist")))
}

pub async fn get_policies(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<PoliciesJson>> {
    let p = policies(&state, &namespace(&tenant, &ns)?).await?;
    Ok(Json(PoliciesJson {
        retention_policies: RetentionJson::from_policies(&p),
        message_ttl_in_seconds: p.message_ttl_s,
    }))
}

pub async fn get_retention(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<RetentionJson>> {
    let p = policies(&state, &namespace(&tenant, &ns)?).await?;
    Ok(Json(RetentionJson::from_policies(&p)))
}

pub async fn set_retention(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
    JsonBody(body): JsonBody<RetentionJson>,
) -> ApiResult<StatusCode> {
    let limit = |value: i64, unit: u64, what: &str| -> ApiResult<Option<u64>> {
        match value {
            -1 => Ok(None),
            v if v >= 0 => (v as u64)
                .checked_mul(unit)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("{what} {v} is too large"))),
            v => Err(ApiError::bad_request(format!(
                "{what} {v} must be -1 (unlimited) or >= 0"
            ))),
        }
    };
    let time_ms = limit(
        body.retention_time_in_minutes,
        60_000,
        "retentionTimeInMinutes",
    )?;
    let size_bytes = limit(body.retention_size_in_mb, 1024 * 1024, "retentionSizeInMB")?;
    state
        .broker
        .update_namespace_policies(&namespace(&tenant, &ns)?, |p| {
            p.retention_time_ms = time_ms;
            p.retention_size_bytes = size_bytes;
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove_retention(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .broker
        .update_namespace_policies(&namespace(&tenant, &ns)?, |p| {
            p.retention_time_ms = None;
            p.retention_size_bytes = None;
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get_ttl(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<Option<u64>>> {
    Ok(Json(
        policies(&state, &namespace(&tenant, &ns)?)
            .await?
            .message_ttl_s,
    ))
}

pub async fn set_ttl(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
    JsonBody(seconds): JsonBody<i64>,
) -> ApiResult<StatusCode> {
    let ttl = u64::try_from(seconds)
        .map_err(|_| ApiError::bad_request(format!("message TTL {seconds} must be >= 0")))?;
    state
        .broker
        .update_namespace_policies(&namespace(&tenant, &ns)?, |p| p.message_ttl_s = Some(ttl))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove_ttl(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .broker
        .update_namespace_policies(&namespace(&tenant, &ns)?, |p| p.message_ttl_s = None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pulsar's namespace `deduplicationEnabled`: `null` when unset (the broker default applies).
pub async fn get_deduplication(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<Option<bool>>> {
    Ok(Json(
        policies(&state, &namespace(&tenant, &ns)?)
            .await?
            .deduplication_enabled,
    ))
}

pub async fn set_deduplication(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
    JsonBody(enabled): JsonBody<bool>,
) -> ApiResult<StatusCode> {
    state
        .broker
        .update_namespace_policies(&namespace(&tenant, &ns)?, |p| {
            p.deduplication_enabled = Some(enabled)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove_deduplication(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .broker
        .update_namespace_policies(&namespace(&tenant, &ns)?, |p| {
            p.deduplication_enabled = None
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
