//! `/admin/v2/persistent/{tenant}/{namespace}/{topic}/subscription/{sub}`: create (at a message
//! id, latest by default), delete, reset the cursor (to a timestamp or a message id), skip
//! messages, skip all. On a partitioned topic create, delete, reset by timestamp and skip-all
//! apply to every partition, as in Pulsar; reset by message id uses the id's `partitionIndex`,
//! and skip needs one partition (405).
//!
//! Every change goes through the broker's subscription (`magnetar_broker::Subscription`: reset,
//! skip, clear backlog), the same object a front end's consumers use, so nothing here moves a
//! storage cursor itself. A subscription with connected consumers is still refused with 412 for
//! delete, reset and skip (Pulsar disconnects the consumers instead; stop them first here).
//!
//! Message ids in bodies are Pulsar's `{"ledgerId", "entryId", "partitionIndex", "batchIndex"}`
//! read by the broker's one position rule (`magnetar_broker::Position`): ledger id 0 and entry
//! id = the entry's first message index, so the position is `entryId + batchIndex`; `-1:-1` is
//! the earliest position and `ledgerId = i64::MAX` the latest, as in Pulsar's
//! `MessageId.earliest`/`latest`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use magnetar_broker::names::partition_of;
use magnetar_broker::{
    CursorStart, NamespaceName, PartitionLog, Position, Subscription, TopicName, TopicPartition,
};
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
pub(crate) struct MessageIdJson {
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
    /// The position this id names.
    pub(crate) fn position(&self) -> ApiResult<Position> {
        if self.entry_id < 0 && self.ledger_id >= 0 && self.ledger_id != i64::MAX {
            return Err(ApiError::bad_request(format!(
                "entryId {} is invalid",
                self.entry_id
            )));
        }
        Ok(Position::of(
            self.ledger_id as u64,
            self.entry_id as u64,
            Some(self.batch_index),
        ))
    }

    fn start(&self) -> ApiResult<CursorStart> {
        Ok(self.position()?.cursor_start(self.is_excluded))
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
        owner: None,
    }
}

fn not_allowed(reason: &str) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        reason: reason.to_string(),
        owner: None,
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

/// The subscriptions `sub` on the partitions the path names; 404 when none has it, 412 when
/// consumers are connected. The flag says whether the path named a whole partitioned topic.
async fn idle_subscription(
    state: &AppState,
    tenant: &str,
    ns: &str,
    topic: &str,
    sub: &str,
) -> ApiResult<(Vec<Arc<Subscription>>, bool)> {
    check_subscription(sub)?;
    let (logs, partitioned) = logs_of(state, tenant, ns, topic).await?;
    let holding: Vec<Arc<Subscription>> = logs.iter().filter_map(|l| l.subscription(sub)).collect();
    if holding.is_empty() {
        return Err(ApiError::not_found(format!(
            "subscription '{sub}' not found"
        )));
    }
    let consumers: usize = holding.iter().map(|s| s.consumer_count()).sum();
    if consumers > 0 {
        return Err(precondition(format!(
            "subscription '{sub}' has {consumers} active connected consumers; close them first"
        )));
    }
    Ok((holding, partitioned))
}

pub(crate) async fn create(
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
    if logs.iter().any(|l| l.has_subscription(&sub)) {
        return Err(ApiError::conflict(format!(
            "subscription '{sub}' already exists for topic"
        )));
    }
    for log in logs {
        log.create_subscription(&sub, start).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic, sub)): Path<(String, String, String, String)>,
    Query(_params): Query<DeleteParams>,
) -> ApiResult<StatusCode> {
    let (subs, _) = idle_subscription(&state, &tenant, &ns, &topic, &sub).await?;
    for s in subs {
        s.log().delete_subscription(&sub).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

fn parse_number(what: &str, raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::bad_request(format!("{what} '{raw}' is not a number")))
}

pub(crate) async fn reset_to_timestamp(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic, sub, timestamp)): Path<(String, String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let timestamp = parse_number("timestamp", &timestamp)?;
    let (subs, _) = idle_subscription(&state, &tenant, &ns, &topic, &sub).await?;
    for s in subs {
        s.reset_to_time(timestamp).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn reset_to_message_id(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic, sub)): Path<(String, String, String, String)>,
    JsonBody(id): JsonBody<MessageIdJson>,
) -> ApiResult<StatusCode> {
    let start = id.start()?;
    let (mut subs, partitioned) = idle_subscription(&state, &tenant, &ns, &topic, &sub).await?;
    if partitioned {
        // The message id's partition picks the partition, as a Pulsar client's seek does.
        let wanted = u32::try_from(id.partition_index).map_err(|_| {
            not_allowed(
                "reset-cursor to a message id of a partitioned topic needs its partitionIndex",
            )
        })?;
        subs.retain(|s| s.log().name().partition == wanted);
        if subs.is_empty() {
            return Err(ApiError::not_found(format!(
                "subscription '{sub}' not found on partition {wanted}"
            )));
        }
    }
    for s in subs {
        s.reset_to(start).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn skip(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic, sub, count)): Path<(String, String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let count = u64::try_from(parse_number("numMessages", &count)?)
        .map_err(|_| ApiError::bad_request("numMessages must be >= 0"))?;
    let (subs, partitioned) = idle_subscription(&state, &tenant, &ns, &topic, &sub).await?;
    if partitioned {
        return Err(not_allowed(
            "skip messages on a partitioned topic is not allowed; name one partition",
        ));
    }
    for s in subs {
        s.skip(count).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn skip_all(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic, sub)): Path<(String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let (subs, _) = idle_subscription(&state, &tenant, &ns, &topic, &sub).await?;
    for s in subs {
        s.clear_backlog().await?;
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
