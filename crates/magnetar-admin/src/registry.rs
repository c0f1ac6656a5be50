//! The Confluent Schema Registry REST API, on its own listener (`schema_registry.port`):
//! subjects and versions, schemas by global id, compatibility checks, config and mode, in
//! Confluent's paths and JSON shapes, answered as `application/vnd.schemaregistry.v1+json`, with
//! Confluent's errors (`{"error_code": 40401, "message": ...}`). Subjects `<topic>-value` and
//! `<topic>-key` are the topics' schemas in the one store Pulsar clients use too.
//!
//! Authentication, when on, is the admin API's: `Authorization: Bearer <token>`, or Basic with
//! the token as the password (KoP's form; the user name is not used), or Basic user:password
//! with the basic provider. Any authenticated role may read; with authorization on, only
//! superuser roles may write (register, delete, change config or mode).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use magnetar_auth::{Authenticator, Principal};
use magnetar_schema::{
    RegisterOptions, Schema, SchemaError, SchemaReference, SchemaStore, SchemaType, StoredVersion,
    Subject, VersionSelector,
};
use serde::Deserialize;
use serde_json::{json, Value};

mod config;

use config::{
    delete_subject_config, delete_subject_mode, get_global_config, get_global_mode,
    get_subject_config, get_subject_mode, put_global_config, put_global_mode, put_subject_config,
    put_subject_mode,
};

pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What the registry listener serves.
#[derive(Clone, Debug)]
pub struct RegistryServices {
    pub schemas: Arc<SchemaStore>,
    pub authenticator: Option<Arc<Authenticator>>,
    /// Whether writes need a superuser role (`auth.authorization_enabled`).
    pub authorization: bool,
}

struct RegistryState {
    schemas: Arc<SchemaStore>,
}

/// A Confluent error: HTTP status, `error_code`, message.
#[derive(Debug)]
pub(crate) struct RegistryError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl RegistryError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        RegistryError {
            status,
            code,
            message: message.into(),
        }
    }
    fn unprocessable(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        reply(
            self.status,
            json!({"error_code": self.code, "message": self.message}),
        )
    }
}

/// The one mapping of the registry's error to Confluent's codes.
fn registry_error(err: SchemaError) -> RegistryError {
    let (status, code) = match &err {
        SchemaError::Invalid(_) | SchemaError::LimitReached(_) => {
            (StatusCode::UNPROCESSABLE_ENTITY, 42201)
        }
        SchemaError::Incompatible(_) => (StatusCode::CONFLICT, 409),
        SchemaError::SubjectNotFound(_) => (StatusCode::NOT_FOUND, 40401),
        SchemaError::VersionNotFound { .. } => (StatusCode::NOT_FOUND, 40402),
        SchemaError::SchemaNotFound(_) => (StatusCode::NOT_FOUND, 40403),
        SchemaError::InvalidRequest(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42202),
        SchemaError::NotSoftDeleted(_) => (StatusCode::NOT_FOUND, 40405),
        SchemaError::Referenced(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42206),
        SchemaError::ReadOnly(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42205),
        SchemaError::Broker(magnetar_broker::Error::InvalidName(_)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, 42202)
        }
        // The metadata store or a namespace lookup failing: Confluent's "error in the backend
        // data store".
        SchemaError::Broker(_) => (StatusCode::INTERNAL_SERVER_ERROR, 50001),
    };
    RegistryError::new(status, code, err.to_string())
}

type RegistryResult<T = Response> = Result<T, RegistryError>;

fn reply(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

fn ok(body: Value) -> RegistryResult {
    Ok(reply(StatusCode::OK, body))
}

/// The registry's router (tests drive it without a socket).
pub fn registry_router(services: RegistryServices) -> Router {
    let state = Arc::new(RegistryState {
        schemas: services.schemas.clone(),
    });
    let body_max = services.schemas.config().schema_bytes_max * 2 + 64 * 1024;
    let router = Router::new()
        .route("/", get(|| async { ok(json!({})) }))
        .route("/schemas/types", get(types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_of_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_raw_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility_with_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compatibility_with_all),
        )
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route("/mode", get(get_global_mode).put(put_global_mode))
        .route(
            "/mode/{subject}",
            get(get_subject_mode)
                .put(put_subject_mode)
                .delete(delete_subject_mode),
        )
        .fallback(|| async { RegistryError::new(StatusCode::NOT_FOUND, 404, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            RegistryError::new(StatusCode::METHOD_NOT_ALLOWED, 405, "method not allowed")
        })
        .layer(axum::extract::DefaultBodyLimit::max(body_max))
        .with_state(state);
    let router = match services.authenticator {
        Some(authenticator) => router.layer(axum::middleware::from_fn_with_state(
            (authenticator, services.authorization),
            require_role,
        )),
        None => router,
    };
    // Outermost, so refused credentials are counted too.
    router.layer(axum::middleware::from_fn_with_state(
        services.schemas,
        count_request,
    ))
}

/// Counts every answer by status (`magnetar_schema_registry_requests_total`).
async fn count_request(
    State(schemas): State<Arc<SchemaStore>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    schemas
        .counters()
        .record_registry_request(response.status().as_u16());
    response
}

/// The admin API's authentication, plus KoP's Basic form with the token as the password.
async fn require_role(
    State((authenticator, authorization)): State<(Arc<Authenticator>, bool)>,
    request: Request,
    next: Next,
) -> Response {
    let role = match role_of(&authenticator, &request) {
        Ok(role) => role,
        Err(message) => {
            tracing::warn!(%message, path = %request.uri().path(), "schema registry request refused: authentication failed");
            return RegistryError::new(StatusCode::UNAUTHORIZED, 40101, message).into_response();
        }
    };
    let method = request.method();
    let write = !(method == Method::GET
        || method == Method::HEAD
        || (method == Method::POST && is_read_post(request.uri().path())));
    if write && authorization && !authenticator.is_superuser(&Principal { role: role.clone() }) {
        return RegistryError::new(
            StatusCode::FORBIDDEN,
            40301,
            format!("role '{role}' may not change the schema registry (superuser roles only)"),
        )
        .into_response();
    }
    next.run(request).await
}

/// POSTs that only read: a lookup (`/subjects/{s}`) and the compatibility checks.
fn is_read_post(path: &str) -> bool {
    path.starts_with("/compatibility/")
        || (path.starts_with("/subjects/") && path.matches('/').count() == 2)
}

fn role_of(authenticator: &Authenticator, request: &Request) -> Result<String, String> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return authenticator.anonymous_role().map(str::to_string).ok_or_else(|| {
            "authentication required: send Authorization: Bearer <token> or Basic with the token as the password".into()
        });
    };
    let (scheme, credentials) = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .map(|(scheme, rest)| (scheme.to_ascii_lowercase(), rest.trim()))
        .ok_or("malformed Authorization header")?;
    let authenticated = match scheme.as_str() {
        "bearer" => authenticator.authenticate_token(credentials),
        "basic" => {
            let decoded = magnetar_auth::key::decode_base64(credentials)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or("the Basic credentials are not base64 of user:password")?;
            let (_, password) = decoded.split_once(':').unwrap_or(("", decoded.as_str()));
            match authenticator.authenticate_token(password) {
                Ok(a) => Ok(a),
                Err(e) if !authenticator.basic_enabled() => Err(e),
                Err(_) => authenticator.authenticate_basic(&decoded),
            }
        }
        _ => return Err("the Authorization header must be Bearer or Basic".into()),
    };
    authenticated
        .map(|a| a.principal.role)
        .map_err(|e| format!("authentication failed: {e}"))
}

// ---- request bodies and parameters ----

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<ReferenceBody>>,
    /// IMPORT mode: the schema's id and version in the registry it comes from.
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    version: Option<i64>,
}

#[derive(Deserialize)]
struct ReferenceBody {
    name: String,
    subject: String,
    version: i64,
}

/// Parses a request body (Confluent accepts its own content type, JSON, or none).
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> RegistryResult<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        RegistryError::new(
            StatusCode::BAD_REQUEST,
            400,
            format!("malformed request body: {e}"),
        )
    })
}

fn schema_of(store: &SchemaStore, body: SchemaBody) -> RegistryResult<Schema> {
    let kind = match body.schema_type.as_deref() {
        None | Some("") => SchemaType::Avro,
        Some(t) => match SchemaType::parse(t) {
            Some(k @ (SchemaType::Avro | SchemaType::Json | SchemaType::Protobuf)) => k,
            _ => {
                return Err(RegistryError::unprocessable(
                    42201,
                    format!("unknown schema type '{t}' (AVRO, JSON or PROTOBUF)"),
                ))
            }
        },
    };
    let references = body.references.unwrap_or_default();
    if references.len() > store.config().references_max {
        return Err(RegistryError::unprocessable(
            42201,
            format!(
                "{} references, more than schema_registry.references_max ({})",
                references.len(),
                store.config().references_max
            ),
        ));
    }
    let mut schema = Schema::new(kind, body.schema.into_bytes());
    for r in references {
        let version = u32::try_from(r.version)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| {
                RegistryError::unprocessable(42202, "a reference's version is at least 1")
            })?;
        schema.references.push(SchemaReference {
            name: r.name,
            subject: r.subject,
            version,
        });
    }
    Ok(schema)
}

fn subject(store: &SchemaStore, name: &str) -> RegistryResult<Subject> {
    store.subject(name).map_err(registry_error)
}

fn version_selector(text: &str) -> RegistryResult<VersionSelector> {
    if text == "latest" || text == "-1" {
        return Ok(VersionSelector::Latest);
    }
    text.parse::<u32>()
        .ok()
        .filter(|v| *v >= 1 && *v <= i32::MAX as u32)
        .map(VersionSelector::Number)
        .ok_or_else(|| {
            RegistryError::unprocessable(
                42202,
                "The specified version is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"",
            )
        })
}

/// Query flags; values as Confluent's clients send them (`true`, `True`, `false`, ...).
#[derive(Deserialize)]
struct Flags {
    #[serde(default)]
    deleted: Option<String>,
    #[serde(default)]
    permanent: Option<String>,
    #[serde(default)]
    verbose: Option<String>,
    #[serde(default, rename = "defaultToGlobal")]
    default_to_global: Option<String>,
    /// `PUT /mode?force=true`: IMPORT on a registry or subject that has schemas.
    #[serde(default)]
    force: Option<String>,
}

fn on(flag: &Option<String>) -> bool {
    flag.as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn schema_fields(schema: &Schema) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert("schema".into(), Value::String(schema.text()));
    if schema.kind != SchemaType::Avro {
        out.insert(
            "schemaType".into(),
            Value::String(schema.kind.name().into()),
        );
    }
    if !schema.references.is_empty() {
        out.insert(
            "references".into(),
            Value::Array(
                schema
                    .references
                    .iter()
                    .map(|r| json!({"name": r.name, "subject": r.subject, "version": r.version}))
                    .collect(),
            ),
        );
    }
    out
}

fn version_json(subject: &str, v: &StoredVersion) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("subject".into(), Value::String(subject.into()));
    out.insert("version".into(), json!(v.version));
    out.insert("id".into(), json!(v.id));
    out.extend(schema_fields(&v.schema));
    Value::Object(out)
}

// ---- handlers ----

async fn types() -> RegistryResult {
    ok(json!(["JSON", "PROTOBUF", "AVRO"]))
}

async fn by_id(state: &RegistryState, id: u64) -> RegistryResult<Schema> {
    state
        .schemas
        .schema_by_id(id)
        .await
        .map_err(registry_error)?
        .ok_or_else(|| registry_error(SchemaError::SchemaNotFound(id)))
}

async fn schema_by_id(
    State(state): State<Arc<RegistryState>>,
    Path(id): Path<u64>,
) -> RegistryResult {
    let schema = by_id(&state, id).await?;
    ok(Value::Object(schema_fields(&schema)))
}

async fn raw_schema_by_id(
    State(state): State<Arc<RegistryState>>,
    Path(id): Path<u64>,
) -> RegistryResult {
    let schema = by_id(&state, id).await?;
    Ok(raw(schema))
}

/// The schema text itself (its JSON for Avro and JSON Schema).
fn raw(schema: Schema) -> Response {
    let mut response = (StatusCode::OK, schema.data).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

async fn subjects_of_id(
    State(state): State<Arc<RegistryState>>,
    Path(id): Path<u64>,
) -> RegistryResult {
    by_id(&state, id).await?;
    let found = state
        .schemas
        .subjects_of_id(id)
        .await
        .map_err(registry_error)?;
    let mut names: Vec<String> = found
        .iter()
        .map(|(s, _)| state.schemas.subject_name(s))
        .collect();
    names.dedup();
    ok(json!(names))
}

async fn versions_of_id(
    State(state): State<Arc<RegistryState>>,
    Path(id): Path<u64>,
) -> RegistryResult {
    by_id(&state, id).await?;
    let found = state
        .schemas
        .subjects_of_id(id)
        .await
        .map_err(registry_error)?;
    let out: Vec<Value> = found
        .iter()
        .map(|(s, v)| json!({"subject": state.schemas.subject_name(s), "version": v}))
        .collect();
    ok(json!(out))
}

async fn list_subjects(
    State(state): State<Arc<RegistryState>>,
    Query(flags): Query<Flags>,
) -> RegistryResult {
    let subjects = state
        .schemas
        .subjects(on(&flags.deleted))
        .await
        .map_err(registry_error)?;
    let names: Vec<String> = subjects
        .iter()
        .map(|s| state.schemas.subject_name(s))
        .collect();
    ok(json!(names))
}

async fn list_versions(
    State(state): State<Arc<RegistryState>>,
    Path(name): Path<String>,
    Query(flags): Query<Flags>,
) -> RegistryResult {
    let subject = subject(&state.schemas, &name)?;
    let versions = state
        .schemas
        .versions(&subject, on(&flags.deleted))
        .await
        .map_err(registry_error)?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| registry_error(SchemaError::SubjectNotFound(name)))?;
    ok(json!(versions
        .iter()
        .map(|v| v.version)
        .collect::<Vec<_>>()))
}

async fn register(
    State(state): State<Arc<RegistryState>>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> RegistryResult {
    let subject = subject(&state.schemas, &name)?;
    let request: SchemaBody = body(&bytes)?;
    let import = match (request.id, request.version) {
        (None, None) => None,
        (Some(id), version) => {
            let id = u64::try_from(id).map_err(|_| {
                RegistryError::unprocessable(42202, "a schema id is between 1 and 2^31-1")
            })?;
            let version = version
                .map(|v| {
                    u32::try_from(v)
                        .ok()
                        .filter(|v| *v >= 1 && *v <= i32::MAX as u32)
                        .ok_or_else(|| {
                            RegistryError::unprocessable(42202, "a version is between 1 and 2^31-1")
                        })
                })
                .transpose()?;
            Some((id, version))
        }
        (None, Some(_)) => {
            return Err(RegistryError::unprocessable(
                42202,
                "a version is given only with a schema id (IMPORT mode)",
            ))
        }
    };
    let schema = schema_of(&state.schemas, request)?;
    let registered = match import {
        Some((id, version)) => state.schemas.import(&subject, &schema, id, version).await,
        None => {
            state
                .schemas
                .register(&subject, &schema, RegisterOptions::default())
                .await
        }
    }
    .map_err(registry_error)?;
    ok(json!({"id": registered.id}))
}

async fn lookup(
    State(state): State<Arc<RegistryState>>,
    Path(name): Path<String>,
    Query(flags): Query<Flags>,
    bytes: Bytes,
) -> RegistryResult {
    let subject = subject(&state.schemas, &name)?;
    let schema = schema_of(&state.schemas, body(&bytes)?)?;
    if state
        .schemas
        .versions(&subject, on(&flags.deleted))
        .await
        .map_err(registry_error)?
        .is_none()
    {
        return Err(registry_error(SchemaError::SubjectNotFound(name)));
    }
    let Some((version, _)) = state
        .schemas
        .find(&subject, &schema)
        .await
        .map_err(registry_error)?
    else {
        return Err(RegistryError::new(
            StatusCode::NOT_FOUND,
            40403,
            "Schema not found",
        ));
    };
    let stored = state
        .schemas
        .version(&subject, VersionSelector::Number(version), false)
        .await
        .map_err(registry_error)?
        .ok_or_else(|| RegistryError::new(StatusCode::NOT_FOUND, 40403, "Schema not found"))?;
    ok(version_json(&name, &stored))
}

async fn stored_version(
    state: &RegistryState,
    name: &str,
    version: &str,
    include_deleted: bool,
) -> RegistryResult<StoredVersion> {
    let subject = subject(&state.schemas, name)?;
    let selector = version_selector(version)?;
    if state
        .schemas
        .versions(&subject, true)
        .await
        .map_err(registry_error)?
        .filter(|v| !v.is_empty())
        .is_none()
    {
        return Err(registry_error(SchemaError::SubjectNotFound(name.into())));
    }
    state
        .schemas
        .version(&subject, selector, include_deleted)
        .await
        .map_err(registry_error)?
        .ok_or_else(|| {
            registry_error(SchemaError::VersionNotFound {
                subject: name.into(),
                version: version.into(),
            })
        })
}

async fn get_version(
    State(state): State<Arc<RegistryState>>,
    Path((name, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
) -> RegistryResult {
    let stored = stored_version(&state, &name, &version, on(&flags.deleted)).await?;
    ok(version_json(&name, &stored))
}

async fn get_raw_version(
    State(state): State<Arc<RegistryState>>,
    Path((name, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
) -> RegistryResult {
    let stored = stored_version(&state, &name, &version, on(&flags.deleted)).await?;
    Ok(raw(stored.schema))
}

/// The ids of schemas that reference this version (a scan over the subjects).
async fn referenced_by(
    State(state): State<Arc<RegistryState>>,
    Path((name, version)): Path<(String, String)>,
) -> RegistryResult {
    let stored = stored_version(&state, &name, &version, false).await?;
    let store = &state.schemas;
    let mut ids = Vec::new();
    for s in store.subjects(false).await.map_err(registry_error)? {
        for v in store
            .versions(&s, false)
            .await
            .map_err(registry_error)?
            .unwrap_or_default()
        {
            let Some(schema) = store.schema_by_id(v.id).await.map_err(registry_error)? else {
                continue;
            };
            let refers = schema.references.iter().any(|r| {
                r.version == stored.version
                    && store.subject(&r.subject).ok().as_ref() == store.subject(&name).ok().as_ref()
            });
            if refers && !ids.contains(&v.id) {
                ids.push(v.id);
            }
        }
    }
    ok(json!(ids))
}

async fn delete_subject(
    State(state): State<Arc<RegistryState>>,
    Path(name): Path<String>,
    Query(flags): Query<Flags>,
) -> RegistryResult {
    let subject = subject(&state.schemas, &name)?;
    let permanent = on(&flags.permanent);
    match state.schemas.delete_subject(&subject, permanent).await {
        Ok(versions) => ok(json!(versions)),
        Err(SchemaError::SubjectNotFound(m)) if m.ends_with("(soft-deleted)") => {
            Err(RegistryError::new(
                StatusCode::NOT_FOUND,
                40404,
                format!(
                    "Subject '{name}' was soft deleted. Set permanent=true to delete permanently"
                ),
            ))
        }
        Err(e) => Err(registry_error(e)),
    }
}

async fn delete_version(
    State(state): State<Arc<RegistryState>>,
    Path((name, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
) -> RegistryResult {
    let subject = subject(&state.schemas, &name)?;
    let selector = version_selector(&version)?;
    let permanent = on(&flags.permanent);
    match state
        .schemas
        .delete_version(&subject, selector, permanent)
        .await
    {
        Ok(v) => ok(json!(v)),
        Err(SchemaError::VersionNotFound { version, .. })
            if version.ends_with("(soft-deleted)") =>
        {
            Err(RegistryError::new(
                StatusCode::NOT_FOUND,
                40406,
                format!(
                    "Subject '{name}' Version {version}. Set permanent=true to delete permanently"
                ),
            ))
        }
        Err(SchemaError::NotSoftDeleted(m)) => {
            Err(RegistryError::new(StatusCode::NOT_FOUND, 40407, m))
        }
        Err(e) => Err(registry_error(e)),
    }
}

async fn compatibility(
    state: &RegistryState,
    name: &str,
    version: Option<&str>,
    verbose: bool,
    bytes: &Bytes,
) -> RegistryResult {
    let subject = subject(&state.schemas, name)?;
    let schema = schema_of(&state.schemas, body(bytes)?)?;
    let selector = version.map(version_selector).transpose()?;
    if selector.is_some()
        && state
            .schemas
            .versions(&subject, false)
            .await
            .map_err(registry_error)?
            .is_none()
    {
        return Err(registry_error(SchemaError::SubjectNotFound(name.into())));
    }
    let reasons = state
        .schemas
        .check(&subject, &schema, selector)
        .await
        .map_err(registry_error)?;
    let mut out = json!({"is_compatible": reasons.is_empty()});
    if verbose {
        out["messages"] = json!(reasons);
    }
    ok(out)
}

async fn compatibility_with_version(
    State(state): State<Arc<RegistryState>>,
    Path((name, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
    bytes: Bytes,
) -> RegistryResult {
    compatibility(&state, &name, Some(&version), on(&flags.verbose), &bytes).await
}

async fn compatibility_with_all(
    State(state): State<Arc<RegistryState>>,
    Path(name): Path<String>,
    Query(flags): Query<Flags>,
    bytes: Bytes,
) -> RegistryResult {
    compatibility(&state, &name, None, on(&flags.verbose), &bytes).await
}
