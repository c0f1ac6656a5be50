//! `/admin/v2/kafka/transactions`: Kafka transactions (Magnetar's extension of the Pulsar admin
//! API, as Kafka's `kafka-transactions.sh`): list the transactional ids and their state,
//! describe one (producer id and epoch, partitions, age), and abort a hanging transaction (the
//! producer is fenced by an epoch bump and the transaction aborted; its records never become
//! visible to `read_committed` readers).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use magnetar_coordinator::{TransactionCoordinator, TxnMetadata};
use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::AppState;

/// Longest transactional id accepted in a path (a Kafka string).
pub(crate) const TRANSACTIONAL_ID_BYTES_MAX: usize = 32_767;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TopicPartitionsJson {
    pub topic: String,
    pub partitions: Vec<i32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TransactionJson {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Kafka's state name: Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit,
    /// CompleteAbort.
    pub state: String,
    pub timeout_ms: i32,
    /// When the open transaction started (-1: none).
    pub start_time_ms: i64,
    pub last_update_ms: i64,
    pub partitions: Vec<TopicPartitionsJson>,
    /// Groups whose offsets the transaction commits.
    pub groups: Vec<String>,
}

impl From<TxnMetadata> for TransactionJson {
    fn from(m: TxnMetadata) -> Self {
        let mut partitions: Vec<TopicPartitionsJson> = Vec::new();
        for (topic, p) in &m.partitions {
            match partitions.last_mut() {
                Some(t) if &t.topic == topic => t.partitions.push(*p),
                _ => partitions.push(TopicPartitionsJson {
                    topic: topic.clone(),
                    partitions: vec![*p],
                }),
            }
        }
        Self {
            transactional_id: m.transactional_id,
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            state: m.status.name().to_string(),
            timeout_ms: m.timeout_ms,
            start_time_ms: m.start_ms,
            last_update_ms: m.last_update_ms,
            partitions,
            groups: m.pending_offsets.into_keys().collect(),
        }
    }
}

async fn coordinator(state: &AppState) -> ApiResult<Arc<TransactionCoordinator>> {
    let groups = state.coordinator.as_ref().ok_or_else(|| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        reason: "the Kafka coordinators are not running".into(),
        owner: None,
    })?;
    Ok(groups.transactions().await?)
}

fn check_id(id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > TRANSACTIONAL_ID_BYTES_MAX {
        return Err(ApiError::bad_request(format!(
            "transactional id must be 1 to {TRANSACTIONAL_ID_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
) -> ApiResult<Json<Vec<TransactionJson>>> {
    let txn = coordinator(&state).await?;
    Ok(Json(txn.list().await.into_iter().map(Into::into).collect()))
}

pub(crate) async fn describe(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<TransactionJson>> {
    check_id(&id)?;
    let txn = coordinator(&state).await?;
    match txn.describe(&id).await? {
        Some(m) => Ok(Json(m.into())),
        None => Err(ApiError::not_found(format!(
            "transactional id '{id}' does not exist"
        ))),
    }
}

/// Aborts the id's open transaction; 409 when none is open.
pub(crate) async fn abort(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    check_id(&id)?;
    let txn = coordinator(&state).await?;
    if txn.describe(&id).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "transactional id '{id}' does not exist"
        )));
    }
    txn.force_abort(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
