//! `/admin/v2/persistent/{tenant}/{namespace}[/{topic}]`: list, create (partitioned or not),
//! update partitions, delete, stats, partitioned-stats, internal-stats, subscriptions.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use magnetar_broker::names::partition_of;
use magnetar_broker::{NamespaceName, PartitionLog, TopicMetadata, TopicName, TopicPartition};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path, Query};
use crate::AppState;

#[derive(Debug, Deserialize)]
pub(crate) struct DeleteParams {
    #[serde(default)]
    pub force: bool,
}

pub(crate) fn namespace(tenant: &str, ns: &str) -> ApiResult<NamespaceName> {
    Ok(NamespaceName::new(tenant, ns)?)
}

/// A topic path segment: a topic, or one partition of it (`t-partition-N`).
pub(crate) fn topic_or_partition(
    tenant: &str,
    ns: &str,
    topic: &str,
) -> ApiResult<(TopicName, Option<u32>)> {
    let namespace = namespace(tenant, ns)?;
    match partition_of(topic) {
        Some(n) => {
            let base = &topic[..topic.len() - format!("-partition-{n}").len()];
            Ok((TopicName::new(namespace, base)?, Some(n)))
        }
        None => Ok((TopicName::new(namespace, topic)?, None)),
    }
}

async fn metadata(state: &AppState, name: &TopicName) -> ApiResult<TopicMetadata> {
    state
        .broker
        .topic(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("topic '{name}' does not exist")))
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<Vec<String>>> {
    let namespace = namespace(&tenant, &ns)?;
    require_namespace(&state, &namespace).await?;
    let mut names = Vec::new();
    for (name, meta) in state.broker.list_topics(&namespace).await? {
        if meta.partitioned {
            names.extend((0..meta.partitions).map(|n| format!("{name}-partition-{n}")));
        } else {
            names.push(name.to_string());
        }
    }
    Ok(Json(names))
}

async fn require_namespace(state: &AppState, namespace: &NamespaceName) -> ApiResult<()> {
    match state.broker.namespace_policies(namespace).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!(
            "namespace '{namespace}' does not exist"
        ))),
    }
}

pub(crate) async fn list_partitioned(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<Vec<String>>> {
    let namespace = namespace(&tenant, &ns)?;
    require_namespace(&state, &namespace).await?;
    let topics = state.broker.list_topics(&namespace).await?;
    Ok(Json(
        topics
            .into_iter()
            .filter(|(_, m)| m.partitioned)
            .map(|(n, _)| n.to_string())
            .collect(),
    ))
}

pub(crate) async fn create_non_partitioned(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let name = TopicName::new(namespace(&tenant, &ns)?, &topic)?;
    reject_partition_name(&topic)?;
    state
        .broker
        .create_topic(&name, None, BTreeMap::new())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn reject_partition_name(topic: &str) -> ApiResult<()> {
    if partition_of(topic).is_some() {
        return Err(ApiError {
            status: StatusCode::PRECONDITION_FAILED,
            reason: format!("'{topic}' names a partition; create the partitioned topic instead"),
            owner: None,
        });
    }
    Ok(())
}

pub(crate) async fn create_partitioned(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic)): Path<(String, String, String)>,
    JsonBody(partitions): JsonBody<i64>,
) -> ApiResult<StatusCode> {
    reject_partition_name(&topic)?;
    let name = TopicName::new(namespace(&tenant, &ns)?, &topic)?;
    let count = u32::try_from(partitions)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!("partitions {partitions} must be a positive number"))
        })?;
    state
        .broker
        .create_topic(&name, Some(count), BTreeMap::new())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn update_partitions(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic)): Path<(String, String, String)>,
    JsonBody(partitions): JsonBody<i64>,
) -> ApiResult<StatusCode> {
    let name = TopicName::new(namespace(&tenant, &ns)?, &topic)?;
    let count = u32::try_from(partitions).map_err(|_| {
        ApiError::bad_request(format!("partitions {partitions} must be a positive number"))
    })?;
    state.broker.set_partition_count(&name, count).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?checkAllowAutoCreation=true`: a Pulsar client over the HTTP lookup asks to create the topic
/// as the namespace's auto-creation policy says, as the binary PARTITIONED_METADATA does.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PartitionsParams {
    #[serde(default, rename = "checkAllowAutoCreation")]
    check_allow_auto_creation: bool,
}

pub(crate) async fn get_partitions(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic)): Path<(String, String, String)>,
    Query(params): Query<PartitionsParams>,
) -> ApiResult<Json<Value>> {
    let name = TopicName::new(namespace(&tenant, &ns)?, &topic)?;
    // Pulsar answers 0 for a non-partitioned or unknown topic; clients rely on it for lookups.
    let metadata = if params.check_allow_auto_creation {
        // A Pulsar client's HTTP lookup: Pulsar's auto-creation type.
        Some(
            state
                .broker
                .topic_or_create_for(&name, magnetar_broker::AutoCreator::Pulsar)
                .await?,
        )
    } else {
        state.broker.topic(&name).await?
    };
    let partitions = match metadata {
        Some(m) if m.partitioned => m.partitions,
        _ => 0,
    };
    Ok(Json(json!({ "partitions": partitions })))
}

async fn delete_topic(
    state: &AppState,
    name: &TopicName,
    partitioned: bool,
    force: bool,
) -> ApiResult<StatusCode> {
    let meta = metadata(state, name).await?;
    if meta.partitioned != partitioned {
        return Err(ApiError::conflict(if partitioned {
            format!("'{name}' is not a partitioned topic; delete it without /partitions")
        } else {
            format!("'{name}' is a partitioned topic; delete it with /partitions")
        }));
    }
    if !force {
        // Without force Pulsar refuses topics with subscriptions.
        for partition in 0..meta.partition_count() {
            let log = state
                .broker
                .partition(&TopicPartition {
                    topic: name.clone(),
                    partition,
                })
                .await?;
            let subscriptions = log.subscription_names();
            if !subscriptions.is_empty() {
                return Err(ApiError {
                    status: StatusCode::PRECONDITION_FAILED,
                    reason: format!(
                        "'{name}' has {} subscriptions; delete with force=true",
                        subscriptions.len()
                    ),
                    owner: None,
                });
            }
        }
    }
    state.broker.delete_topic(name).await?;
    // Pulsar deletes a topic's schema with the topic (since 2.10; a partitioned topic's with its
    // metadata). The value schema is also the Confluent subject `<topic>-value`: deleting the
    // topic through pulsar-admin removes it too, while Kafka's DeleteTopics keeps the subjects,
    // as Confluent's registry does (README, schema registry).
    state
        .schemas
        .delete_topic_schemas(name)
        .await
        .map_err(crate::schemas::schema_error)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn delete_non_partitioned(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic)): Path<(String, String, String)>,
    Query(params): Query<DeleteParams>,
) -> ApiResult<StatusCode> {
    let name = TopicName::new(namespace(&tenant, &ns)?, &topic)?;
    delete_topic(&state, &name, false, params.force).await
}

pub(crate) async fn delete_partitioned(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic)): Path<(String, String, String)>,
    Query(params): Query<DeleteParams>,
) -> ApiResult<StatusCode> {
    let name = TopicName::new(namespace(&tenant, &ns)?, &topic)?;
    delete_topic(&state, &name, true, params.force).await
}

/// The open log of a topic path: a non-partitioned topic, or one partition.
async fn log_of(
    state: &AppState,
    tenant: &str,
    ns: &str,
    topic: &str,
) -> ApiResult<Arc<PartitionLog>> {
    let (name, partition) = topic_or_partition(tenant, ns, topic)?;
    let meta = match (state.broker.topic(&name).await?, partition) {
        (Some(m), _) => m,
        // `x-partition-3` may also be a plain topic of that name.
        (None, Some(_)) => {
            let whole = TopicName::new(namespace(tenant, ns)?, topic)?;
            metadata(state, &whole).await?;
            return Ok(state
                .broker
                .partition(&TopicPartition {
                    topic: whole,
                    partition: 0,
                })
                .await?);
        }
        (None, None) => {
            return Err(ApiError::not_found(format!(
                "topic '{name}' does not exist"
            )))
        }
    };
    let index = match (meta.partitioned, partition) {
        (false, None) => 0,
        (true, Some(n)) => n,
        (true, None) => {
            return Err(ApiError::conflict(format!(
                "'{name}' is a partitioned topic: ask for partitioned-stats or one partition"
            )))
        }
        (false, Some(_)) => {
            return Err(ApiError::not_found(format!("'{name}' is not partitioned")))
        }
    };
    Ok(state
        .broker
        .partition(&TopicPartition {
            topic: name,
            partition: index,
        })
        .await?)
}

/// Committed offsets by group on one topic: group -> partition -> offset.
type GroupOffsets = BTreeMap<String, BTreeMap<i32, i64>>;

fn stats_json(log: &PartitionLog, groups: &GroupOffsets) -> Value {
    let stats = log.stats();
    let partition = i32::try_from(log.name().partition).unwrap_or(i32::MAX);
    // Kafka consumer groups beside Pulsar subscriptions: the backlog is the lag behind the end.
    let kafka_groups: serde_json::Map<String, Value> = groups
        .iter()
        .filter_map(|(group, offsets)| {
            let committed = *offsets.get(&partition)?;
            let end = i64::try_from(stats.end_index).unwrap_or(i64::MAX);
            Some((
                group.clone(),
                json!({ "committedOffset": committed, "msgBacklog": (end - committed).max(0) }),
            ))
        })
        .collect();
    let subscriptions: serde_json::Map<String, Value> = log
        .subscription_cursors()
        .into_iter()
        .map(|(name, cursor)| {
            let backlog = cursor.backlog(stats.start_index, stats.end_index);
            // Pulsar's `msgDelayed`: entries held back for delayed delivery (live ones only).
            let delayed = log.delayed_entries_of(&name);
            (
                name,
                json!({ "msgBacklog": backlog, "msgDelayed": delayed, "type": "Durable" }),
            )
        })
        .collect();
    json!({
        "storageSize": stats.total_bytes,
        "msgCount": stats.end_index - stats.start_index,
        "logStartIndex": stats.start_index,
        "logEndIndex": stats.end_index,
        "subscriptions": subscriptions,
        "kafkaGroups": kafka_groups,
    })
}

pub(crate) async fn stats(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let log = log_of(&state, &tenant, &ns, &topic).await?;
    let groups = crate::groups::committed_on(&state, &log.name().topic).await?;
    Ok(Json(stats_json(&log, &groups)))
}

pub(crate) async fn partitioned_stats(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let name = TopicName::new(namespace(&tenant, &ns)?, &topic)?;
    let meta = metadata(&state, &name).await?;
    if !meta.partitioned {
        return Err(ApiError::conflict(format!(
            "'{name}' is not a partitioned topic"
        )));
    }
    let groups = crate::groups::committed_on(&state, &name).await?;
    let mut partitions = serde_json::Map::new();
    let mut group_backlog: BTreeMap<String, u64> = BTreeMap::new();
    let (mut storage, mut count) = (0u64, 0u64);
    for n in 0..meta.partitions {
        let log = state
            .broker
            .partition(&TopicPartition {
                topic: name.clone(),
                partition: n,
            })
            .await?;
        let s = stats_json(&log, &groups);
        if let Some(per_group) = s["kafkaGroups"].as_object() {
            for (group, g) in per_group {
                *group_backlog.entry(group.clone()).or_default() +=
                    g["msgBacklog"].as_u64().unwrap_or(0);
            }
        }
        storage += s["storageSize"].as_u64().unwrap_or(0);
        count += s["msgCount"].as_u64().unwrap_or(0);
        partitions.insert(format!("{name}-partition-{n}"), s);
    }
    Ok(Json(json!({
        "metadata": { "partitions": meta.partitions },
        "storageSize": storage,
        "msgCount": count,
        "kafkaGroups": group_backlog
            .into_iter()
            .map(|(g, backlog)| (g, json!({ "msgBacklog": backlog })))
            .collect::<serde_json::Map<_, _>>(),
        "partitions": partitions,
    })))
}

pub(crate) async fn internal_stats(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let log = log_of(&state, &tenant, &ns, &topic).await?;
    let stats = log.stats();
    let segments: Vec<Value> = stats
        .segments
        .iter()
        .map(|s| json!({ "baseIndex": s.base_index, "entries": s.entries, "size": s.bytes, "offloaded": s.offloaded }))
        .collect();
    // Pulsar's shape: each segment is a "ledger" named by its base index (message ids carry
    // ledger id 0 here: the index is continuous over segments).
    let ledgers: Vec<Value> = stats
        .segments
        .iter()
        .map(|s| json!({ "ledgerId": s.base_index, "entries": s.entries, "size": s.bytes, "offloaded": s.offloaded }))
        .collect();
    let cursors: serde_json::Map<String, Value> = log
        .subscription_cursors()
        .into_iter()
        .map(|(name, c)| {
            let acked: Vec<String> = c.acked.ranges().map(|r| format!("[{}..{})", r.start, r.end)).collect();
            (name, json!({ "markDeleteIndex": c.mark_delete_index, "individuallyDeletedMessages": acked }))
        })
        .collect();
    Ok(Json(json!({
        "numberOfEntries": stats.segments.iter().map(|s| s.entries).sum::<u64>(),
        "totalSize": stats.total_bytes,
        "logStartIndex": stats.start_index,
        "logEndIndex": stats.end_index,
        "fsyncs": stats.fsyncs,
        "segments": segments,
        "ledgers": ledgers,
        "cursors": cursors,
    })))
}

pub(crate) async fn subscriptions(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, topic)): Path<(String, String, String)>,
) -> ApiResult<Json<Vec<String>>> {
    let (name, partition) = topic_or_partition(&tenant, &ns, &topic)?;
    let meta = state.broker.topic(&name).await?;
    // A partitioned topic lists the union of its partitions' subscriptions.
    if let (Some(m), None) = (&meta, partition) {
        if m.partitioned {
            let mut all = std::collections::BTreeSet::new();
            for n in 0..m.partitions {
                let log = state
                    .broker
                    .partition(&TopicPartition {
                        topic: name.clone(),
                        partition: n,
                    })
                    .await?;
                all.extend(log.subscription_names());
            }
            return Ok(Json(all.into_iter().collect()));
        }
    }
    let log = log_of(&state, &tenant, &ns, &topic).await?;
    Ok(Json(log.subscription_names()))
}
