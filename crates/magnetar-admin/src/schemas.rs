//! Pulsar's schema endpoints in pulsar-admin's shapes: a topic's schema
//! (`/admin/v2/schemas/{tenant}/{namespace}/{topic}/schema[/{version}]`, `.../schemas`,
//! `.../compatibility`) and the namespace schema policies (`schemaCompatibilityStrategy`,
//! `isAllowAutoUpdateSchema`, `schemaValidationEnforced`), over the schema registry. Pulsar
//! versions count from 0 (a subject version minus one).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use magnetar_broker::{NamespaceName, TopicName};
use magnetar_schema::{
    from_pulsar_version, pulsar_version, Compatibility, RegisterOptions, Schema, SchemaError,
    SchemaType, StoredVersion, Subject, VersionSelector,
};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path, Query};
use crate::AppState;

/// The one mapping of the registry's error to HTTP on the admin port (Pulsar's statuses:
/// 409 incompatible, 422 invalid schema data).
pub(crate) fn schema_error(err: SchemaError) -> ApiError {
    let status = match &err {
        SchemaError::Incompatible(_) => StatusCode::CONFLICT,
        SchemaError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        SchemaError::LimitReached(_) | SchemaError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        SchemaError::SubjectNotFound(_)
        | SchemaError::VersionNotFound { .. }
        | SchemaError::SchemaNotFound(_) => StatusCode::NOT_FOUND,
        SchemaError::NotSoftDeleted(_) | SchemaError::Referenced(_) => StatusCode::CONFLICT,
        SchemaError::ReadOnly(_) => StatusCode::FORBIDDEN,
        SchemaError::Broker(e) => crate::error::status_of(e),
    };
    ApiError {
        status,
        reason: err.to_string(),
        owner: None,
    }
}

/// The strategy names a namespace accepts: Pulsar's, and Confluent's `NONE`.
pub(crate) const COMPATIBILITY_NAMES: [&str; 10] = [
    "UNDEFINED",
    "ALWAYS_INCOMPATIBLE",
    "ALWAYS_COMPATIBLE",
    "BACKWARD",
    "FORWARD",
    "FULL",
    "BACKWARD_TRANSITIVE",
    "FORWARD_TRANSITIVE",
    "FULL_TRANSITIVE",
    "NONE",
];

/// The schema types a payload may name (Pulsar's names).
const TYPE_PATTERN: &str = "^(AVRO|JSON|PROTOBUF|PROTOBUF_NATIVE|KEY_VALUE|STRING|BYTES|NONE|BOOLEAN|INT8|INT16|INT32|INT64|FLOAT|DOUBLE|DATE|TIME|TIMESTAMP|INSTANT|LOCAL_DATE|LOCAL_TIME|LOCAL_DATE_TIME)$";

fn topic(tenant: &str, ns: &str, topic: &str) -> ApiResult<TopicName> {
    let namespace = crate::topics::namespace(tenant, ns)?;
    Ok(TopicName::new(namespace, topic)?)
}

/// Pulsar's `GetSchemaResponse`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SchemaJson {
    version: i64,
    r#type: String,
    timestamp: i64,
    data: String,
    properties: BTreeMap<String, String>,
}

fn schema_json(v: StoredVersion) -> SchemaJson {
    SchemaJson {
        version: pulsar_version(v.version),
        r#type: v.schema.kind.name().to_string(),
        timestamp: v.created_ms,
        data: v.schema.text(),
        properties: v.schema.properties,
    }
}

/// Pulsar's `PostSchemaPayload`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PostSchemaJson {
    /// `AVRO`, `JSON`, `PROTOBUF`, `STRING`, `KEY_VALUE`, ...
    #[schema(
        pattern = "^(AVRO|JSON|PROTOBUF|PROTOBUF_NATIVE|KEY_VALUE|STRING|BYTES|NONE|BOOLEAN|INT8|INT16|INT32|INT64|FLOAT|DOUBLE|DATE|TIME|TIMESTAMP|INSTANT|LOCAL_DATE|LOCAL_TIME|LOCAL_DATE_TIME)$"
    )]
    r#type: String,
    /// The definition (an Avro or JSON document as text; empty for primitive types).
    #[serde(default)]
    schema: String,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

impl crate::extract::JsonBodyType for PostSchemaJson {
    const JSON_TYPE: crate::extract::JsonType = crate::extract::JsonType::Object;
}

fn payload(body: PostSchemaJson) -> ApiResult<Schema> {
    let pattern = TYPE_PATTERN.trim_start_matches("^(").trim_end_matches(")$");
    let kind = pattern
        .split('|')
        .any(|name| name == body.r#type)
        .then(|| SchemaType::parse(&body.r#type))
        .flatten()
        .ok_or_else(|| ApiError::bad_request(format!("unknown schema type '{}'", body.r#type)))?;
    let mut schema = Schema::new(kind, body.schema.into_bytes());
    schema.properties = body.properties;
    Ok(schema)
}

async fn stored(
    state: &AppState,
    topic: TopicName,
    selector: VersionSelector,
) -> ApiResult<Json<SchemaJson>> {
    let found = state
        .schemas
        .version(&Subject::topic_value(topic.clone()), selector, false)
        .await
        .map_err(schema_error)?;
    found
        .map(|v| Json(schema_json(v)))
        .ok_or_else(|| ApiError::not_found(format!("topic '{topic}' has no such schema")))
}

pub(crate) async fn get_schema(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, name)): Path<(String, String, String)>,
) -> ApiResult<Json<SchemaJson>> {
    stored(&state, topic(&tenant, &ns, &name)?, VersionSelector::Latest).await
}

pub(crate) async fn get_schema_version(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, name, version)): Path<(String, String, String, i64)>,
) -> ApiResult<Json<SchemaJson>> {
    let selector = from_pulsar_version(version)
        .map(VersionSelector::Number)
        .ok_or_else(|| ApiError::bad_request("a schema version is at least 0"))?;
    stored(&state, topic(&tenant, &ns, &name)?, selector).await
}

/// `{"getSchemaResponses": [...]}`: every live version, oldest first.
pub(crate) async fn get_all(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, name)): Path<(String, String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let subject = Subject::topic_value(topic(&tenant, &ns, &name)?);
    let versions = state
        .schemas
        .versions(&subject, false)
        .await
        .map_err(schema_error)?
        .unwrap_or_default();
    let mut out = Vec::with_capacity(versions.len());
    for v in versions {
        if let Some(found) = state
            .schemas
            .version(&subject, VersionSelector::Number(v.version), false)
            .await
            .map_err(schema_error)?
        {
            out.push(schema_json(found));
        }
    }
    Ok(Json(serde_json::json!({ "getSchemaResponses": out })))
}

/// Registers a schema as a producer would: `{"version": n}` (Pulsar's version).
pub(crate) async fn post_schema(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, name)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<PostSchemaJson>,
) -> ApiResult<Json<serde_json::Value>> {
    let topic = topic(&tenant, &ns, &name)?;
    let schema = payload(body)?;
    let (_, auto_update, _) = state
        .schemas
        .namespace_policy(&topic.namespace)
        .await
        .map_err(schema_error)?;
    let registered = state
        .schemas
        .register(
            &Subject::topic_value(topic),
            &schema,
            RegisterOptions {
                allow_new_version: auto_update,
            },
        )
        .await
        .map_err(schema_error)?;
    Ok(Json(
        serde_json::json!({ "version": pulsar_version(registered.version) }),
    ))
}

#[derive(Deserialize)]
pub(crate) struct DeleteQuery {
    #[serde(default)]
    force: Option<bool>,
}

/// Deletes a topic's schema: soft (its versions kept as deleted), or with `force=true` also
/// removed; `{"version": n}` of the last version.
pub(crate) async fn delete_schema(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, name)): Path<(String, String, String)>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let subject = Subject::topic_value(topic(&tenant, &ns, &name)?);
    let store = &state.schemas;
    let live = store
        .versions(&subject, false)
        .await
        .map_err(schema_error)?
        .is_some();
    let mut versions = Vec::new();
    if live {
        versions = store
            .delete_subject(&subject, false)
            .await
            .map_err(schema_error)?;
    }
    if query.force == Some(true) {
        versions = match store.delete_subject(&subject, true).await {
            Ok(v) => v,
            Err(SchemaError::SubjectNotFound(_)) if live => versions,
            Err(e) => return Err(schema_error(e)),
        };
    } else if !live {
        return Err(ApiError::not_found("the topic has no schema"));
    }
    let last = versions.last().copied().map_or(-1, pulsar_version);
    Ok(Json(serde_json::json!({ "version": last })))
}

/// `{"isCompatible": bool, "schemaCompatibilityStrategy": name}` for a payload.
pub(crate) async fn test_compatibility(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, name)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<PostSchemaJson>,
) -> ApiResult<Json<serde_json::Value>> {
    let subject = Subject::topic_value(topic(&tenant, &ns, &name)?);
    let schema = payload(body)?;
    let level = state
        .schemas
        .effective_compatibility(&subject)
        .await
        .map_err(schema_error)?;
    let reasons = state
        .schemas
        .check(&subject, &schema, None)
        .await
        .map_err(schema_error)?;
    Ok(Json(serde_json::json!({
        "isCompatible": reasons.is_empty(),
        "schemaCompatibilityStrategy": level.pulsar_name(),
        "reasons": reasons,
    })))
}

// ---- namespace policies ----

async fn update(
    state: &AppState,
    namespace: &NamespaceName,
    change: impl FnMut(&mut magnetar_broker::NamespacePolicies),
) -> ApiResult<StatusCode> {
    state
        .broker
        .update_namespace_policies(namespace, change)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn policies(
    state: &AppState,
    namespace: &NamespaceName,
) -> ApiResult<magnetar_broker::NamespacePolicies> {
    state
        .broker
        .namespace_policies(namespace)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("namespace '{namespace}' does not exist")))
}

/// The namespace's strategy, in Pulsar's names; `null` when unset (the registry's level).
pub(crate) async fn get_strategy(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<Option<String>>> {
    let p = policies(&state, &crate::topics::namespace(&tenant, &ns)?).await?;
    Ok(Json(
        p.schema_compatibility_strategy
            .as_deref()
            .and_then(Compatibility::parse)
            .map(|c| c.pulsar_name().to_string()),
    ))
}

pub(crate) async fn set_strategy(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
    JsonBody(name): JsonBody<String>,
) -> ApiResult<StatusCode> {
    let namespace = crate::topics::namespace(&tenant, &ns)?;
    let level = if name == "UNDEFINED" {
        None
    } else if !COMPATIBILITY_NAMES.contains(&name.as_str()) {
        return Err(ApiError {
            status: StatusCode::PRECONDITION_FAILED,
            reason: format!("unknown schema compatibility strategy '{name}'"),
            owner: None,
        });
    } else {
        Some(Compatibility::parse(&name).ok_or_else(|| ApiError {
            status: StatusCode::PRECONDITION_FAILED,
            reason: format!("unknown schema compatibility strategy '{name}'"),
            owner: None,
        })?)
    };
    update(&state, &namespace, |p| {
        p.schema_compatibility_strategy = level.map(|l| l.name().to_string())
    })
    .await
}

pub(crate) async fn remove_strategy(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let namespace = crate::topics::namespace(&tenant, &ns)?;
    update(&state, &namespace, |p| {
        p.schema_compatibility_strategy = None
    })
    .await
}

pub(crate) async fn get_auto_update(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<bool>> {
    let p = policies(&state, &crate::topics::namespace(&tenant, &ns)?).await?;
    Ok(Json(p.schema_auto_update_allowed.unwrap_or(true)))
}

pub(crate) async fn set_auto_update(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
    JsonBody(allowed): JsonBody<bool>,
) -> ApiResult<StatusCode> {
    let namespace = crate::topics::namespace(&tenant, &ns)?;
    update(&state, &namespace, |p| {
        p.schema_auto_update_allowed = Some(allowed)
    })
    .await
}

pub(crate) async fn get_validation(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<bool>> {
    let p = policies(&state, &crate::topics::namespace(&tenant, &ns)?).await?;
    Ok(Json(p.schema_validation_enforced.unwrap_or(false)))
}

pub(crate) async fn set_validation(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
    JsonBody(enforced): JsonBody<bool>,
) -> ApiResult<StatusCode> {
    let namespace = crate::topics::namespace(&tenant, &ns)?;
    update(&state, &namespace, |p| {
        p.schema_validation_enforced = Some(enforced)
    })
    .await
}
