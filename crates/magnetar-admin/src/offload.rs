//! `/admin/v2/persistent/{tenant}/{namespace}/{topic}/offload`: Pulsar's `topics offload` and
//! `topics offload-status` for one partition (`x-partition-N`) or a non-partitioned topic.
//! `PUT` with a message id starts offloading, in the background, every sealed segment whose
//! messages all come before that id (`latest`: every sealed segment) and answers 204, or 409
//! while one is running; `GET` answers Pulsar's `OffloadProcessStatus`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use magnetar_broker::subscription::position::LEDGER_ID;
use magnetar_broker::{OffloadStatus, Position};
use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path};
use crate::skipped::one_partition;
use crate::subscriptions::MessageIdJson;
use crate::AppState;

const OFFLOAD: &str = "an offload is of";

/// Pulsar's `OffloadProcessStatus`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OffloadStatusJson {
    /// `NOT_RUN`, `RUNNING`, `SUCCESS` or `ERROR`.
    pub status: &'static str,
    pub last_error: String,
    /// The first message still only on local disk (after a successful offload).
    pub first_unoffloaded_message: Option<MessageIdOut>,
}

/// A message id in a response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageIdOut {
    pub ledger_id: u64,
    pub entry_id: u64,
    pub partition_index: i32,
    pub batch_index: i32,
}

pub(crate) async fn trigger(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic)): Path<(String, String, String)>,
    JsonBody(id): JsonBody<MessageIdJson>,
) -> ApiResult<StatusCode> {
    let log = one_partition(&state, &tenant, &ns, &topic, OFFLOAD).await?;
    let before = match id.position()? {
        Position::Earliest => 0,
        Position::Latest => u64::MAX,
        at @ Position::Message { .. } => at.message_index().unwrap_or(0),
    };
    if log.start_offload(before)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::conflict(
            "an offload of this partition is already running",
        ))
    }
}

pub(crate) async fn status(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic)): Path<(String, String, String)>,
) -> ApiResult<Json<OffloadStatusJson>> {
    let log = one_partition(&state, &tenant, &ns, &topic, OFFLOAD).await?;
    let (status, last_error, first) = match log.offload_status() {
        OffloadStatus::NotRun => ("NOT_RUN", String::new(), None),
        OffloadStatus::Running => ("RUNNING", String::new(), None),
        OffloadStatus::Success { first_local_index } => {
            ("SUCCESS", String::new(), Some(first_local_index))
        }
        OffloadStatus::Error(e) => ("ERROR", e, None),
    };
    Ok(Json(OffloadStatusJson {
        status,
        last_error,
        first_unoffloaded_message: first.map(|index| MessageIdOut {
            ledger_id: LEDGER_ID,
            entry_id: index,
            partition_index: -1,
            batch_index: -1,
        }),
    }))
}
