//! `/admin/v2/persistent/{tenant}/{namespace}/{topic}/skippedEntries[/{index}]`: the operator's
//! way past a stored entry that cannot be served (see `magnetar_broker::skipped`). `index` is a
//! message index (the Kafka offset, and the index the broker logs for an unreadable entry); the
//! topic must name one partition (`x-partition-N`) or a non-partitioned topic.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use magnetar_broker::{PartitionLog, TopicPartition};
use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::subscriptions::logs_of;
use crate::AppState;

/// One skipped entry: the message indexes it holds, `[firstIndex, endIndex)`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SkippedEntryJson {
    pub first_index: u64,
    pub end_index: u64,
}

/// The one partition a path names (`x-partition-N` or a non-partitioned topic); 405 for a
/// whole partitioned topic, `what` saying what belongs to one partition.
pub(crate) async fn one_partition(
    state: &AppState,
    tenant: &str,
    ns: &str,
    topic: &str,
    what: &str,
) -> ApiResult<Arc<PartitionLog>> {
    let (mut logs, partitioned) = logs_of(state, tenant, ns, topic).await?;
    match (logs.len(), partitioned) {
        (1, false) => Ok(logs.remove(0)),
        _ => Err(ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            reason: format!("{what} one partition; name it as '<topic>-partition-<n>'"),
            owner: None,
        }),
    }
}

const SKIPPED: &str = "skipped entries belong to";

fn parse_index(raw: &str) -> ApiResult<u64> {
    raw.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("index '{raw}' is not a message index")))
}

fn partition(log: &PartitionLog) -> TopicPartition {
    log.name().clone()
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic)): Path<(String, String, String)>,
) -> ApiResult<Json<Vec<SkippedEntryJson>>> {
    let log = one_partition(&state, &tenant, &ns, &topic, SKIPPED).await?;
    let entries = state.broker.skipped_entries(&partition(&log)).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|r| SkippedEntryJson {
                first_index: r.start,
                end_index: r.end,
            })
            .collect(),
    ))
}

/// Marks the entry holding `index` skipped; answers the whole entry's indexes.
pub(crate) async fn skip(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic, index)): Path<(String, String, String, String)>,
) -> ApiResult<Json<SkippedEntryJson>> {
    let index = parse_index(&index)?;
    let log = one_partition(&state, &tenant, &ns, &topic, SKIPPED).await?;
    let range = state.broker.skip_entry(&partition(&log), index).await?;
    Ok(Json(SkippedEntryJson {
        first_index: range.start,
        end_index: range.end,
    }))
}

/// Removes the skip mark of the entry starting at `index`.
pub(crate) async fn unskip(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic, index)): Path<(String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let index = parse_index(&index)?;
    let log = one_partition(&state, &tenant, &ns, &topic, SKIPPED).await?;
    if state.broker.unskip_entry(&partition(&log), index).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no skipped entry starts at index {index}"
        )))
    }
}
