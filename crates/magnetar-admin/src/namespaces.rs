//! `/admin/v2/namespaces`: list, create, delete, policies: retention, message TTL,
//! deduplication, auto topic creation override, max producers/consumers per topic, publish rate.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use magnetar_broker::{
    AutoTopicCreation, NamespaceName, NamespacePolicies, PublishRate, TenantName,
};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path};
use crate::AppState;

/// Pulsar's RetentionPolicies JSON: `-1` is unlimited.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RetentionJson {
    /// `-1` or at most `u64::MAX` milliseconds in minutes.
    #[schema(minimum = -1, maximum = 307_445_734_561_825_i64)]
    pub retention_time_in_minutes: i64,
    /// `-1` or at most `u64::MAX` bytes in MiB.
    #[serde(rename = "retentionSizeInMB")]
    #[schema(minimum = -1, maximum = 17_592_186_044_415_i64)]
    pub retention_size_in_mb: i64,
}

impl crate::extract::JsonBodyType for RetentionJson {
    const JSON_TYPE: crate::extract::JsonType = crate::extract::JsonType::Object;
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

/// The part of Pulsar's Policies JSON that Magnetar keeps (Pulsar's own field names).
#[derive(Debug, Serialize)]
pub(crate) struct PoliciesJson {
    pub retention_policies: RetentionJson,
    pub message_ttl_in_seconds: Option<u64>,
    #[serde(rename = "autoTopicCreationOverride")]
    pub auto_topic_creation_override: Option<AutoTopicCreationJson>,
    pub max_producers_per_topic: Option<u32>,
    pub max_consumers_per_topic: Option<u32>,
    #[serde(rename = "compaction_threshold")]
    pub compaction_threshold: Option<u64>,
    /// Magnetar's: defaults of the Kafka topic configs of log compaction.
    #[serde(
        rename = "topicConfigDefaults",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub topic_config_defaults: BTreeMap<String, String>,
    /// Pulsar keeps one rate per cluster.
    #[serde(rename = "publishMaxMessageRate")]
    pub publish_max_message_rate: std::collections::BTreeMap<String, PublishRateJson>,
    /// Pulsar's names (`UNDEFINED` when unset: the registry's level applies).
    pub schema_compatibility_strategy: String,
    pub is_allow_auto_update_schema: bool,
    pub schema_validation_enforced: bool,
}

/// Pulsar's AutoTopicCreationOverride JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AutoTopicCreationJson {
    pub allow_auto_topic_creation: bool,
    /// `partitioned` or `non-partitioned`; required when creation is allowed.
    #[serde(default)]
    #[schema(pattern = "^(partitioned|non-partitioned)$")]
    pub topic_type: Option<String>,
    /// 1 to the broker's `partitionsMax`, for partitioned topics.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub default_num_partitions: Option<i64>,
}

impl crate::extract::JsonBodyType for AutoTopicCreationJson {
    const JSON_TYPE: crate::extract::JsonType = crate::extract::JsonType::Object;
}

impl AutoTopicCreationJson {
    fn from_policy(a: &AutoTopicCreation) -> Self {
        Self {
            allow_auto_topic_creation: a.allow,
            topic_type: Some(
                if a.partitioned {
                    "partitioned"
                } else {
                    "non-partitioned"
                }
                .into(),
            ),
            default_num_partitions: a.default_num_partitions.map(i64::from),
        }
    }
}

/// Pulsar's PublishRate JSON: `-1` disables a dimension.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PublishRateJson {
    #[serde(default = "unlimited")]
    #[schema(minimum = -1)]
    pub publish_throttling_rate_in_msg: i64,
    #[serde(default = "unlimited")]
    #[schema(minimum = -1)]
    pub publish_throttling_rate_in_byte: i64,
}

impl crate::extract::JsonBodyType for PublishRateJson {
    const JSON_TYPE: crate::extract::JsonType = crate::extract::JsonType::Object;
}

fn unlimited() -> i64 {
    -1
}

impl PublishRateJson {
    fn from_policy(r: &PublishRate) -> Self {
        let shown = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        Self {
            publish_throttling_rate_in_msg: shown(r.messages_per_s),
            publish_throttling_rate_in_byte: shown(r.bytes_per_s),
        }
    }
}

fn precondition(reason: String) -> ApiError {
    ApiError {
        status: StatusCode::PRECONDITION_FAILED,
        reason,
        owner: None,
    }
}

fn namespace(tenant: &str, namespace: &str) -> ApiResult<NamespaceName> {
    Ok(NamespaceName::new(tenant, namespace)?)
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<String>>> {
    let names = state
        .broker
        .list_namespaces(&TenantName::new(&tenant)?)
        .await?;
    Ok(Json(names.iter().map(ToString::to_string).collect()))
}

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .broker
        .create_namespace(&namespace(&tenant, &ns)?, NamespacePolicies::default())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn delete(
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

pub(crate) async fn get_policies(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<PoliciesJson>> {
    let p = policies(&state, &namespace(&tenant, &ns)?).await?;
    Ok(Json(PoliciesJson {
        retention_policies: RetentionJson::from_policies(&p),
        message_ttl_in_seconds: p.message_ttl_s,
        auto_topic_creation_override: p
            .auto_topic_creation
            .as_ref()
            .map(AutoTopicCreationJson::from_policy),
        max_producers_per_topic: p.max_producers_per_topic,
        max_consumers_per_topic: p.max_consumers_per_topic,
        compaction_threshold: p.compaction_threshold_bytes,
        topic_config_defaults: p.topic_config_defaults.clone(),
        schema_compatibility_strategy: p
            .schema_compatibility_strategy
            .as_deref()
            .and_then(magnetar_schema::Compatibility::parse)
            .map_or("UNDEFINED", |c| c.pulsar_name())
            .to_string(),
        is_allow_auto_update_schema: p.schema_auto_update_allowed.unwrap_or(true),
        schema_validation_enforced: p.schema_validation_enforced.unwrap_or(false),
        publish_max_message_rate: p
            .publish_rate
            .iter()
            .map(|r| {
                (
                    state.broker.config().cluster_name.clone(),
                    PublishRateJson::from_policy(r),
                )
            })
            .collect(),
    }))
}

pub(crate) async fn get_retention(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<RetentionJson>> {
    let p = policies(&state, &namespace(&tenant, &ns)?).await?;
    Ok(Json(RetentionJson::from_policies(&p)))
}

pub(crate) async fn set_retention(
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
    change_policies(&state, &tenant, &ns, |p| {
        p.retention_time_ms = time_ms;
        p.retention_size_bytes = size_bytes;
    })
    .await
}

pub(crate) async fn remove_retention(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    change_policies(&state, &tenant, &ns, |p| {
        p.retention_time_ms = None;
        p.retention_size_bytes = None;
    })
    .await
}

pub(crate) async fn get_ttl(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<Option<u64>>> {
    Ok(Json(
        policies(&state, &namespace(&tenant, &ns)?)
            .await?
            .message_ttl_s,
    ))
}

pub(crate) async fn set_ttl(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
    JsonBody(seconds): JsonBody<i64>,
) -> ApiResult<StatusCode> {
    let ttl = u64::try_from(seconds)
        .map_err(|_| ApiError::bad_request(format!("message TTL {seconds} must be >= 0")))?;
    change_policies(&state, &tenant, &ns, |p| p.message_ttl_s = Some(ttl)).await
}

pub(crate) async fn remove_ttl(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    change_policies(&state, &tenant, &ns, |p| p.message_ttl_s = None).await
}

/// Applies `change` to the namespace's policies (compare-and-set, see
/// `Broker::update_namespace_policies`): 204.
async fn change_policies(
    state: &AppState,
    tenant: &str,
    ns: &str,
    change: impl FnMut(&mut NamespacePolicies),
) -> ApiResult<StatusCode> {
    state
        .broker
        .update_namespace_policies(&namespace(tenant, ns)?, change)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pulsar's namespace `compactionThreshold` (bytes): a `cleanup.policy=compact` topic is
/// compacted once that many bytes are cleanable, whatever its dirty ratio; `0` turns it off.
pub(crate) async fn get_compaction_threshold(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<Option<u64>>> {
    Ok(Json(
        policies(&state, &namespace(&tenant, &ns)?)
            .await?
            .compaction_threshold_bytes,
    ))
}

pub(crate) async fn set_compaction_threshold(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
    JsonBody(bytes): JsonBody<i64>,
) -> ApiResult<StatusCode> {
    let bytes = u64::try_from(bytes)
        .map_err(|_| ApiError::bad_request(format!("compaction threshold {bytes} must be >= 0")))?;
    change_policies(&state, &tenant, &ns, |p| {
        p.compaction_threshold_bytes = Some(bytes)
    })
    .await
}

pub(crate) async fn remove_compaction_threshold(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    change_policies(&state, &tenant, &ns, |p| {
        p.compaction_threshold_bytes = None
    })
    .await
}

/// Defaults of the Kafka topic configs that drive log compaction (`cleanup.policy`,
/// `delete.retention.ms`, `min.compaction.lag.ms`, `max.compaction.lag.ms`,
/// `min.cleanable.dirty.ratio`) for the namespace's topics: a topic's own config wins.
/// DescribeConfigs shows such a value with source DYNAMIC_DEFAULT_BROKER_CONFIG.
pub(crate) async fn get_topic_config_defaults(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<BTreeMap<String, String>>> {
    Ok(Json(
        policies(&state, &namespace(&tenant, &ns)?)
            .await?
            .topic_config_defaults,
    ))
}

/// The body of `POST .../topicConfigDefaults`: the compaction topic configs under Kafka's names,
/// each optional (`null` or absent: no default), in the spelling
/// [`magnetar_broker::compaction::validate_namespace_default`] takes.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TopicConfigDefaultsJson {
    #[serde(rename = "cleanup.policy", default)]
    #[schema(pattern = "^(compact|delete)(,(compact|delete))*$")]
    cleanup_policy: Option<String>,
    #[serde(rename = "delete.retention.ms", default)]
    #[schema(pattern = "^(0|[1-9][0-9]{0,17})$")]
    delete_retention_ms: Option<String>,
    #[serde(rename = "min.compaction.lag.ms", default)]
    #[schema(pattern = "^(0|[1-9][0-9]{0,17})$")]
    min_compaction_lag_ms: Option<String>,
    #[serde(rename = "max.compaction.lag.ms", default)]
    #[schema(pattern = "^[1-9][0-9]{0,17}$")]
    max_compaction_lag_ms: Option<String>,
    #[serde(rename = "min.cleanable.dirty.ratio", default)]
    #[schema(pattern = "^(0([.][0-9]{1,9})?|1([.]0{1,9})?)$")]
    min_cleanable_dirty_ratio: Option<String>,
}

impl crate::extract::JsonBodyType for TopicConfigDefaultsJson {
    const JSON_TYPE: crate::extract::JsonType = crate::extract::JsonType::Object;
}

/// Replaces the namespace's topic config defaults (an empty object removes them); every value
/// is checked first.
pub(crate) async fn set_topic_config_defaults(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
    JsonBody(body): JsonBody<TopicConfigDefaultsJson>,
) -> ApiResult<StatusCode> {
    use magnetar_broker::compaction as c;
    let defaults: BTreeMap<String, String> = [
        (c::CLEANUP_POLICY, body.cleanup_policy),
        (c::DELETE_RETENTION_MS, body.delete_retention_ms),
        (c::MIN_COMPACTION_LAG_MS, body.min_compaction_lag_ms),
        (c::MAX_COMPACTION_LAG_MS, body.max_compaction_lag_ms),
        (c::MIN_CLEANABLE_DIRTY_RATIO, body.min_cleanable_dirty_ratio),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_string(), v?)))
    .collect();
    for (key, value) in &defaults {
        c::validate_namespace_default(key, value)?;
    }
    change_policies(&state, &tenant, &ns, |p| {
        p.topic_config_defaults = defaults.clone()
    })
    .await
}

pub(crate) async fn remove_topic_config_defaults(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    change_policies(&state, &tenant, &ns, |p| p.topic_config_defaults.clear()).await
}

pub(crate) async fn get_auto_topic_creation(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<Option<AutoTopicCreationJson>>> {
    let p = policies(&state, &namespace(&tenant, &ns)?).await?;
    Ok(Json(
        p.auto_topic_creation
            .as_ref()
            .map(AutoTopicCreationJson::from_policy),
    ))
}

pub(crate) async fn set_auto_topic_creation(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
    JsonBody(body): JsonBody<AutoTopicCreationJson>,
) -> ApiResult<StatusCode> {
    let invalid = |why: &str| {
        precondition(format!(
            "Invalid configuration for autoTopicCreationOverride: {why}"
        ))
    };
    let partitioned = match body.topic_type.as_deref() {
        Some("partitioned") => true,
        Some("non-partitioned") => false,
        None if !body.allow_auto_topic_creation => false,
        None => return Err(invalid("topicType is required")),
        Some(other) => {
            return Err(invalid(&format!(
                "topicType '{other}' is not partitioned or non-partitioned"
            )))
        }
    };
    let max = state.broker.config().partitions_max;
    let default_num_partitions = match body.default_num_partitions {
        Some(n) if partitioned => Some(
            u32::try_from(n)
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    invalid(&format!("defaultNumPartitions {n} is outside [1, {max}]"))
                })?,
        ),
        None if partitioned && body.allow_auto_topic_creation => {
            return Err(invalid(
                "defaultNumPartitions is required for partitioned topics",
            ))
        }
        _ => None,
    };
    let over = AutoTopicCreation {
        allow: body.allow_auto_topic_creation,
        partitioned,
        default_num_partitions,
    };
    change_policies(&state, &tenant, &ns, |p| p.auto_topic_creation = Some(over)).await
}

pub(crate) async fn remove_auto_topic_creation(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    change_policies(&state, &tenant, &ns, |p| p.auto_topic_creation = None).await
}

/// Which per-topic limit an endpoint sets.
#[derive(Clone, Copy)]
enum Limit {
    Producers,
    Consumers,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::Producers => "maxProducersPerTopic",
            Limit::Consumers => "maxConsumersPerTopic",
        }
    }
    fn slot(self, p: &mut NamespacePolicies) -> &mut Option<u32> {
        match self {
            Limit::Producers => &mut p.max_producers_per_topic,
            Limit::Consumers => &mut p.max_consumers_per_topic,
        }
    }
}

async fn get_limit(
    state: &AppState,
    tenant: &str,
    ns: &str,
    limit: Limit,
) -> ApiResult<Json<Option<u32>>> {
    let mut p = policies(state, &namespace(tenant, ns)?).await?;
    Ok(Json(*limit.slot(&mut p)))
}

async fn set_limit(
    state: &AppState,
    tenant: &str,
    ns: &str,
    limit: Limit,
    value: Option<i64>,
) -> ApiResult<StatusCode> {
    let value = match value {
        None => None,
        Some(v) => Some(
            u32::try_from(v)
                .map_err(|_| precondition(format!("{} must be 0 or more", limit.name())))?,
        ),
    };
    change_policies(state, tenant, ns, |p| *limit.slot(p) = value).await
}

pub(crate) async fn get_max_producers(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<Option<u32>>> {
    get_limit(&state, &tenant, &ns, Limit::Producers).await
}

pub(crate) async fn set_max_producers(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
    JsonBody(value): JsonBody<i64>,
) -> ApiResult<StatusCode> {
    set_limit(&state, &tenant, &ns, Limit::Producers, Some(value)).await
}

pub(crate) async fn remove_max_producers(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    set_limit(&state, &tenant, &ns, Limit::Producers, None).await
}

pub(crate) async fn get_max_consumers(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<Option<u32>>> {
    get_limit(&state, &tenant, &ns, Limit::Consumers).await
}

pub(crate) async fn set_max_consumers(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
    JsonBody(value): JsonBody<i64>,
) -> ApiResult<StatusCode> {
    set_limit(&state, &tenant, &ns, Limit::Consumers, Some(value)).await
}

pub(crate) async fn remove_max_consumers(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    set_limit(&state, &tenant, &ns, Limit::Consumers, None).await
}

pub(crate) async fn get_publish_rate(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<Option<PublishRateJson>>> {
    let p = policies(&state, &namespace(&tenant, &ns)?).await?;
    Ok(Json(
        p.publish_rate.as_ref().map(PublishRateJson::from_policy),
    ))
}

pub(crate) async fn set_publish_rate(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
    JsonBody(body): JsonBody<PublishRateJson>,
) -> ApiResult<StatusCode> {
    let dimension = |v: i64, what: &str| -> ApiResult<Option<u64>> {
        match v {
            v if v < -1 => Err(precondition(format!(
                "{what} {v} must be -1 (unlimited) or more"
            ))),
            -1 | 0 => Ok(None),
            v => Ok(u64::try_from(v).ok()),
        }
    };
    let rate = PublishRate {
        messages_per_s: dimension(
            body.publish_throttling_rate_in_msg,
            "publishThrottlingRateInMsg",
        )?,
        bytes_per_s: dimension(
            body.publish_throttling_rate_in_byte,
            "publishThrottlingRateInByte",
        )?,
    };
    change_policies(&state, &tenant, &ns, |p| {
        p.publish_rate = (!rate.is_unlimited()).then_some(rate)
    })
    .await
}

pub(crate) async fn remove_publish_rate(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    change_policies(&state, &tenant, &ns, |p| p.publish_rate = None).await
}

/// Pulsar's namespace `deduplicationEnabled`: `null` when unset (the broker default applies).
pub(crate) async fn get_deduplication(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<Option<bool>>> {
    Ok(Json(
        policies(&state, &namespace(&tenant, &ns)?)
            .await?
            .deduplication_enabled,
    ))
}

pub(crate) async fn set_deduplication(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
    JsonBody(enabled): JsonBody<bool>,
) -> ApiResult<StatusCode> {
    change_policies(&state, &tenant, &ns, |p| {
        p.deduplication_enabled = Some(enabled)
    })
    .await
}

pub(crate) async fn remove_deduplication(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    change_policies(&state, &tenant, &ns, |p| p.deduplication_enabled = None).await
}
