//! `/admin/v2/clusters` and `/admin/v2/tenants`, in pulsar-admin's shapes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use magnetar_broker::{TenantInfo, TenantName};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path};
use crate::AppState;

/// Pulsar's TenantInfo JSON.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TenantInfoJson {
    #[serde(default)]
    pub admin_roles: Vec<String>,
    #[serde(default)]
    pub allowed_clusters: Vec<String>,
}

impl crate::extract::JsonBodyType for TenantInfoJson {
    const JSON_TYPE: crate::extract::JsonType = crate::extract::JsonType::Object;
}

impl From<TenantInfo> for TenantInfoJson {
    fn from(info: TenantInfo) -> Self {
        Self {
            admin_roles: info.admin_roles,
            allowed_clusters: info.allowed_clusters,
        }
    }
}

pub(crate) async fn list_clusters(State(state): State<Arc<AppState>>) -> Json<Vec<String>> {
    Json(vec![state.broker.config().cluster_name.clone()])
}

pub(crate) async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(state.broker.list_tenants().await?))
}

pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<TenantInfoJson>> {
    let name = TenantName::new(&tenant)?;
    match state.broker.tenant(&name).await? {
        Some(info) => Ok(Json(info.into())),
        None => Err(ApiError::not_found(format!(
            "tenant '{tenant}' does not exist"
        ))),
    }
}

fn checked_info(state: &AppState, body: TenantInfoJson) -> ApiResult<TenantInfo> {
    let cluster = &state.broker.config().cluster_name;
    let allowed_clusters = if body.allowed_clusters.is_empty() {
        vec![cluster.clone()]
    } else {
        body.allowed_clusters
    };
    if let Some(unknown) = allowed_clusters.iter().find(|c| *c != cluster) {
        return Err(ApiError {
            status: StatusCode::PRECONDITION_FAILED,
            reason: format!("cluster '{unknown}' does not exist (this cluster is '{cluster}')"),
            owner: None,
        });
    }
    Ok(TenantInfo {
        format_version: 0,
        admin_roles: body.admin_roles,
        allowed_clusters,
    })
}

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    body: Option<JsonBody<TenantInfoJson>>,
) -> ApiResult<StatusCode> {
    let name = TenantName::new(&tenant)?;
    let info = checked_info(&state, body.map(|b| b.0).unwrap_or_default())?;
    state.broker.create_tenant(&name, info).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn update(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<TenantInfoJson>,
) -> ApiResult<StatusCode> {
    let name = TenantName::new(&tenant)?;
    let info = checked_info(&state, body)?;
    state.broker.update_tenant(&name, info).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .broker
        .delete_tenant(&TenantName::new(&tenant)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
