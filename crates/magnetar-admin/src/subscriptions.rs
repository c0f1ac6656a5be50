//! `/admin/v2/persistent/{tenant}/{namespace}/{topic}/subscription/{sub}`: create (at a message
//! id, latest by default), delete, reset the cursor (to a timestamp or a message id), skip
//! messages, skip all. On a partitioned topic create, delete, reset by timestamp and skip-all
//! apply to every partition, as in Pulsar; reset by message id uses the id's `partitionIndex`,
//! and skip needs one partition (405).
//!
//! A subscription with connected consumers is refused with 412 for delete, reset and skip: the
//! dispatcher of a live subscription reads from its own position, so the cursor is only moved
//! while nobody reads (Pulsar disconnects the consumers instead; stop them first here).
//!
//! Message ids in bodies are Pulsar's `{"ledgerId", "entryId", "partitionIndex", "batchIndex"}`
//! in Magnetar's mapping: ledger id 0 and entry id = the entry's first message index, so the
//! position is `entryId + batchIndex`; `-1:-1` is the earliest position and
//! `ledgerId = i64::MAX` the latest, as in Pulsar's `MessageId.earliest`/`latest`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use magnetar_broker::names::partition_of;
use magnetar_broker::{CursorStart, NamespaceName, PartitionLog, TopicName, TopicPartition};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path, Query};
use crate::topics::DeleteParams;
use crate::AppState;

/// Longest subscription name accepted.
pub(crate) const SUBSCRIPTION_BYTES_MAX: usize = 1024;

/// Pulsar's `ResetCursorData` / `MessageIdImpl` JSON.
#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageIdJson {
    #[schema(minimum = -9_223_372_036_854_775_807_i64, maximum = 9_223_372_036_854_775_807_i64)]
    pub ledger_id: i64,
    #[schema(minimum = -9_223_372_036_854_775_807_i64, maximum = 9_223_372_036_854_775_807_i64)]
    pub entry_id: i64,
    #[serde(default = "minus_one")]
    #[schema(minimum = -2_147_483_648_i64, maximum = 2_147_483_647)]
    pub partition_index: i32,
    #[serde(default = "minus_one")]
    #[schema(minimum = -2_147_483_648_i64, maximum = 2_147_483_647)]
    pub batch_index: i32,
    /// Start after the message instead of at it.
    #[serde(default)]
    pub is_excluded: bool,
}

impl crate::extract::JsonBodyType for MessageIdJson {
    const JSON_TYPE: crate::extract::JsonType = crate::extract::JsonType::Object;
}

fn minus_one() -> i32 {
    -1
}

impl MessageIdJson {
    fn start(&self) -> ApiResult<CursorStart> {
        if self.ledger_id == i64::MAX {
            return Ok(CursorStart::Latest);
        }
        if self.ledger_id < 0 && self.entry_id < 0 {
            return Ok(CursorStart::Earliest);
        }
        let entry = u64::try_from(self.entry_id)
            .map_err(|_| ApiError::bad_request(format!("entryId {} is invalid", self.entry_id)))?;
        let index = entry
            .saturating_add(u64::try_from(self.batch_index).unwrap_or(0))
            .saturating_add(u64::from(self.is_excluded));
        Ok(CursorStart::Index(index))
    }
}

fn check_subscription(sub: &str) -> ApiResult<()> {
    if sub.is_empty() || sub.len() > SUBSCRIPTION_BYTES_MAX {
        return Err(ApiError::bad_request(format!(
            "subscription name must be 1 to {SUBSCRIPTION_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

fn precondition(reason: String) -> ApiError {
    ApiError {
        status: StatusCode::PRECONDITION_FAILED,
        reason,
    }
}

fn not_allowed(reason: &str) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        reason: reason.to_string(),
    }
}

/// The logs a topic path names: every partition of a partitioned topic, one partition
/// (`x-partition-N`), or a non-partitioned topic. The flag says whether it was a whole
/// partitioned topic.
pub(crate) async fn logs_of(
    state: &AppState,
    tenant: &str,
    ns: &str,
    topic: &str,
) -> ApiResult<(Vec<Arc<PartitionLog>>, bool)> {
    let namespace = NamespaceName::new(tenant, ns)?;
    let whole = TopicName::new(namespace.clone(), topic)?;
    if let Some(meta) = state.broker.topic(&whole).await? {
        let mut logs = Vec::new();
        for partition in 0..meta.partition_count() {
            logs.push(
                state
                    .broker
                    .partition(&TopicPartition {
                        topic: whole.clone(),
                        partition,
                    })
                    .await?,
            );
        }
        return Ok((logs, meta.partitioned));
    }
    if let Some(n) = partition_of(topic) {
        let base = &topic[..topic.len() - format!("-partition-{n}").len()];
        let name = TopicName::new(namespace, base)?;
        if let Some(meta) = state.broker.topic(&name).await? {
            if meta.partitioned && n < meta.partitions {
                let log = state
                    .broker
                    .partition(&TopicPartition {
                        topic: name,
                        partition: n,
                    })
                    .await?;
                return Ok((vec![log], false));
            }
        }
    }
    Err(ApiError::not_found(format!(
        "topic 'persistent://{tenant}/{ns}/{topic}' does not exist"
    )))
}

/// The logs that hold `sub`; 404 when none does, 412 when consumers are connected.
async fn idle_subscription(
    state: &AppState,
    tenant: &str,
    ns: &str,
    topic: &str,
    sub: &str,
) -> ApiResult<(Vec<Arc<PartitionLog>>, bool)> {
    check_subscription(sub)?;
    let (logs, partitioned) = logs_of(state, tenant, ns, topic).await?;
    let holding: Vec<_> = logs
        .into_iter()
        .filter(|l| l.ledger().cursor(sub).is_some())
        .collect();
    if holding.is_empty() {
        return Err(ApiError::not_found(format!(
            "subscription '{sub}' not found"
        )));
    }
    let consumers: usize = holding.iter().map(|l| l.consumers_of(sub)).sum();
    if consumers > 0 {
        return Err(precondition(format!(
            "subscription '{sub}' has {consumers} active connected consumers; close them first"
        )));
    }
    Ok((holding, partitioned))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic, sub)): Path<(String, String, String, String)>,
    body: Option<JsonBody<MessageIdJson>>,
) -> ApiResult<StatusCode> {
    check_subscription(&sub)?;
    let start = match &body {
        Some(JsonBody(id)) => id.start()?,
        None => CursorStart::Latest,
    };
    let (logs, _) = logs_of(&state, &tenant, &ns, &topic).await?;
    if logs.iter().any(|l| l.ledger().cursor(&sub).is_some()) {
        return Err(ApiError::conflict(format!(
            "subscription '{sub}' already exists for topic"
        )));
    }
    for log in logs {
        log.ledger()
            .open_cursor(&sub, start)
            .await
            .map_err(magnetar_broker::Error::from)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic, sub)): Path<(String, String, String, String)>,
    Query(_params): Query<DeleteParams>,
) -> ApiResult<StatusCode> {
    let (logs, _) = idle_subscription(&state, &tenant, &ns, &topic, &sub).await?;
    for log in logs {
        log.ledger()
            .delete_cursor(&sub)
            .await
            .map_err(magnetar_broker::Error::from)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

fn parse_number(what: &str, raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::bad_request(format!("{what} '{raw}' is not a number")))
}

pub async fn reset_to_timestamp(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic, sub, timestamp)): Path<(String, String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let timestamp = parse_number("timestamp", &timestamp)?;
    let (logs, _) = idle_subscription(&state, &tenant, &ns, &topic, &sub).await?;
    for log in logs {
        let index = match log.find_by_timestamp(timestamp).await? {
            Some(header) => header.first_index,
            None => log.end_index(),
        };
        log.ledger()
            .reset_cursor(&sub, index)
            .await
            .map_err(magnetar_broker::Error::from)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn reset_to_message_id(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic, sub)): Path<(String, String, String, String)>,
    JsonBody(id): JsonBody<MessageIdJson>,
) -> ApiResult<StatusCode> {
    let start = id.start()?;
    let (mut logs, partitioned) = idle_subscription(&state, &tenant, &ns, &topic, &sub).await?;
    if partitioned {
        // The message id's partition picks the partition, as a Pulsar client's seek does.
        let wanted = u32::try_from(id.partition_index).map_err(|_| {
            not_allowed(
                "reset-cursor to a message id of a partitioned topic needs its partitionIndex",
            )
        })?;
        logs.retain(|l| l.name().partition == wanted);
        if logs.is_empty() {
            return Err(ApiError::not_found(format!(
                "subscription '{sub}' not found on partition {wanted}"
            )));
        }
    }
    for log in logs {
        let index = match start {
            CursorStart::Earliest => log.start_index(),
            CursorStart::Latest => log.end_index(),
            CursorStart::Index(i) => i,
        };
        log.ledger()
            .reset_cursor(&sub, index)
            .await
            .map_err(magnetar_broker::Error::from)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Acknowledges the first `count` unacknowledged messages of `sub` on `log`.
async fn skip_on(log: &PartitionLog, sub: &str, count: u64) -> ApiResult<()> {
    let Some(cursor) = log.ledger().cursor(sub) else {
        return Ok(());
    };
    let end = log.end_index();
    let mut ranges = Vec::new();
    let mut left = count;
    let mut at = cursor.mark_delete_index.max(log.start_index());
    let acked: Vec<_> = cursor.acked.ranges().collect();
    let mut gaps = acked
        .iter()
        .map(|r| (r.start, r.end))
        .chain(std::iter::once((end, end)));
    while left > 0 && at < end {
        let Some((acked_start, acked_end)) = gaps.next() else {
            break;
        };
        if acked_end <= at {
            continue;
        }
        let gap_end = acked_start.clamp(at, end);
        let take = left.min(gap_end - at);
        if take > 0 {
            ranges.push(at..at + take);
            left -= take;
        }
        at = acked_end.max(at);
    }
    if !ranges.is_empty() {
        log.ledger()
            .ack(sub, &ranges)
            .await
            .map_err(magnetar_broker::Error::from)?;
    }
    Ok(())
}

pub async fn skip(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic, sub, count)): Path<(String, String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let count = u64::try_from(parse_number("numMessages", &count)?)
        .map_err(|_| ApiError::bad_request("numMessages must be >= 0"))?;
    let (logs, partitioned) = idle_subscription(&state, &tenant, &ns, &topic, &sub).await?;
    if partitioned {
        return Err(not_allowed(
            "skip messages on a partitioned topic is not allowed; name one partition",
        ));
    }
    for log in logs {
        skip_on(&log, &sub, count).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn skip_all(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic, sub)): Path<(String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let (logs, _) = idle_subscription(&state, &tenant, &ns, &topic, &sub).await?;
    for log in logs {
        let end = log.end_index();
        log.ledger()
            .reset_cursor(&sub, end)
            .await
            .map_err(magnetar_broker::Error::from)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_map_to_positions() {
        let id = |l: i64, e: i64, b: i32, x: bool| MessageIdJson {
            ledger_id: l,
            entry_id: e,
            partition_index: -1,
            batch_index: b,
            is_excluded: x,
        };
        assert_eq!(
            id(-1, -1, -1, false).start().unwrap(),
            CursorStart::Earliest
        );
        assert_eq!(
            id(i64::MAX, i64::MAX, -1, false).start().unwrap(),
            CursorStart::Latest
        );
        assert_eq!(
            id(0, 10, -1, false).start().unwrap(),
            CursorStart::Index(10)
        );
        assert_eq!(id(0, 10, 3, false).start().unwrap(), CursorStart::Index(13));
        assert_eq!(id(0, 10, 3, true).start().unwrap(), CursorStart::Index(14));
        assert!(id(0, -5, -1, false).start().is_err());
    }
}
