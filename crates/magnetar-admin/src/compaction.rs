//! `/admin/v2/persistent/{tenant}/{namespace}/{topic}/compaction`: Pulsar's `topics compact`
//! and `topics compaction-status`. `PUT` starts compacting every partition the path names (a
//! partition `x-partition-N`, a non-partitioned topic, or all partitions of a partitioned one)
//! in the background, whatever the dirty ratio, and answers 204, or 409 while one is running;
//! the topic needs `cleanup.policy=compact` and a local ledger. `GET` answers Pulsar's
//! `LongRunningProcessStatus` (for several partitions: the first error, else running if any
//! is, else success if any ran).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use magnetar_broker::compaction::CompactionState;
use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::subscriptions::logs_of;
use crate::AppState;

/// Pulsar's `LongRunningProcessStatus`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CompactionStatusJson {
    /// `NOT_RUN`, `RUNNING`, `SUCCESS` or `ERROR`.
    pub status: &'static str,
    pub last_error: String,
}

pub(crate) async fn trigger(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let (logs, _) = logs_of(&state, &tenant, &ns, &topic).await?;
    let mut started = 0;
    for log in &logs {
        if state.broker.start_compaction(log.name()).await? {
            started += 1;
        }
    }
    if started == 0 && !logs.is_empty() {
        return Err(ApiError::conflict(
            "a compaction of this topic is already running",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn status(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic)): Path<(String, String, String)>,
) -> ApiResult<Json<CompactionStatusJson>> {
    let (logs, _) = logs_of(&state, &tenant, &ns, &topic).await?;
    let statuses: Vec<_> = logs
        .iter()
        .map(|log| state.broker.compaction_status(log.name()))
        .collect();
    let any = |s: CompactionState| statuses.iter().find(|st| st.state == s);
    let (status, last_error) = if let Some(e) = any(CompactionState::Error) {
        ("ERROR", e.last_error.clone().unwrap_or_default())
    } else if any(CompactionState::Running).is_some() {
        ("RUNNING", String::new())
    } else if any(CompactionState::Success).is_some() {
        ("SUCCESS", String::new())
    } else {
        ("NOT_RUN", String::new())
    };
    Ok(Json(CompactionStatusJson { status, last_error }))
}
