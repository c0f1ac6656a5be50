//! The OpenAPI document of the admin API, built from the routing itself: every route is added
//! through [`DocRouter::route`] with the output of [`methods!`], which registers each handler on
//! the axum `MethodRouter` and records the same method in the document, so the document cannot
//! list a method that is not served or miss one that is. Request body schemas come from the
//! body types' `utoipa::ToSchema` derives (which follow their serde attributes and carry the
//! numeric bounds the handlers enforce).
//!
//! The contract the document states, and `tests/python/test_admin_contract.py` checks with
//! schemathesis: path parameters carry the patterns and lengths of the validators
//! (`magnetar_broker::names`, role, subscription, group and user limits); every operation lists
//! each status it can answer (no `default`), every error as `{"reason": ...}` JSON.

use std::sync::Arc;

use axum::routing::MethodRouter;
use axum::Router;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathItem, PathsBuilder, RefOr, Required,
    ResponseBuilder, ResponsesBuilder, Schema,
};

use crate::AppState;

/// The JSON body an operation reads.
pub(crate) enum Body {
    None,
    Schema(Box<RefOr<Schema>>, Required),
}

impl Body {
    pub(crate) fn of<T: utoipa::PartialSchema>(required: bool) -> Self {
        Body::Schema(
            Box::new(T::schema()),
            if required {
                Required::True
            } else {
                Required::False
            },
        )
    }
    /// `T`'s schema with the named properties' schemas replaced: bounds that depend on the
    /// broker's config (its cluster name, its partition limit).
    pub(crate) fn of_with<T: utoipa::PartialSchema>(
        required: bool,
        properties: Vec<(&str, RefOr<Schema>)>,
    ) -> Self {
        let mut schema = T::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            for (name, property) in properties {
                object.properties.insert(name.to_string(), property);
            }
        }
        Body::Schema(
            Box::new(schema),
            if required {
                Required::True
            } else {
                Required::False
            },
        )
    }

    /// `body`'s object schema as an `anyOf` of copies, each with one case's properties replaced
    /// and its required fields added: the rules between fields that the handler enforces (which
    /// field a value of another requires). Whole objects per branch, not an `allOf` with partial
    /// branches, which generators cannot merge with `additionalProperties: false`.
    pub(crate) fn with_cases(body: Body, cases: Vec<ObjectBuilder>) -> Self {
        let Body::Schema(schema, required) = body else {
            return Body::None;
        };
        let RefOr::T(Schema::Object(base)) = *schema else {
            return Body::Schema(schema, required);
        };
        let any = cases.into_iter().fold(AnyOfBuilder::new(), |any, case| {
            let case = case.build();
            let mut branch = base.clone();
            branch.properties.extend(case.properties);
            for field in case.required {
                if !branch.required.contains(&field) {
                    branch.required.push(field);
                }
            }
            any.item(branch)
        });
        Body::Schema(Box::new(any.into()), required)
    }

    /// A JSON integer in `[minimum, maximum]` (an `i64` when `maximum` is `None`).
    pub(crate) fn integer(minimum: i64, maximum: Option<i64>) -> Self {
        Body::Schema(
            Box::new(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int64,
                    )))
                    .minimum(Some(minimum))
                    .maximum(maximum)
                    .into(),
            ),
            Required::True,
        )
    }
    /// A JSON string, one of `values`.
    pub(crate) fn enumeration(values: &[&str]) -> Self {
        Body::Schema(
            Box::new(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .enum_values(Some(values.iter().copied()))
                    .into(),
            ),
            Required::True,
        )
    }
    pub(crate) fn boolean() -> Self {
        Body::Schema(
            Box::new(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Boolean))
                    .into(),
            ),
            Required::True,
        )
    }
    /// A JSON array of strings, each as `item` describes.
    pub(crate) fn strings(item: ObjectBuilder, items_min: usize) -> Self {
        Body::Schema(
            Box::new(
                ArrayBuilder::new()
                    .items(item.schema_type(SchemaType::Type(Type::String)))
                    .min_items(Some(items_min))
                    .into(),
            ),
            Required::True,
        )
    }
}

/// One documented operation.
pub(crate) struct Op {
    pub(crate) method: HttpMethod,
    pub(crate) method_name: &'static str,
    pub(crate) handler: &'static str,
    pub(crate) body: Body,
    /// Optional query parameters: (name, JSON schema type `boolean` or `string`).
    pub(crate) query: Vec<(&'static str, &'static str)>,
}

/// Registers handlers on a `MethodRouter` and records them as operations:
/// `methods!(get tenants::list, put tenants::create => Body::of::<TenantInfoJson>(false))`;
/// optional query parameters go between the method and the handler:
/// `methods!(delete [force: boolean] topics::delete)`.
macro_rules! methods {
    ($($method:ident $([$($q:ident : $qt:ident),* $(,)?])? $handler:path $(=> $body:expr)?),+ $(,)?) => {{
        let mut router = axum::routing::MethodRouter::<std::sync::Arc<crate::AppState>>::new();
        let mut ops = Vec::new();
        $(
            router = router.$method($handler);
            ops.push(crate::openapi::Op {
                method: crate::openapi::http_method(stringify!($method)),
                method_name: stringify!($method),
                handler: stringify!($handler),
                body: crate::openapi::body_or_none(vec![$($body)?]),
                query: vec![$($((stringify!($q), stringify!($qt))),*)?],
            });
        )+
        (router, ops)
    }};
}
pub(crate) use methods;

pub(crate) fn body_or_none(mut bodies: Vec<Body>) -> Body {
    bodies.pop().unwrap_or(Body::None)
}

pub(crate) fn http_method(name: &str) -> HttpMethod {
    match name {
        "put" => HttpMethod::Put,
        "post" => HttpMethod::Post,
        "delete" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

/// An axum router that records every route it serves in an OpenAPI document.
pub(crate) struct DocRouter {
    pub(crate) router: Router<Arc<AppState>>,
    paths: Vec<(String, PathItem)>,
    /// (path, methods) in registration order, for tests.
    pub(crate) routes: Vec<(String, Vec<&'static str>)>,
}

impl DocRouter {
    pub(crate) fn new() -> Self {
        Self {
            router: Router::new(),
            paths: Vec::new(),
            routes: Vec::new(),
        }
    }

    pub(crate) fn route(
        mut self,
        path: &str,
        (methods, ops): (MethodRouter<Arc<AppState>>, Vec<Op>),
    ) -> Self {
        self.router = self.router.route(path, methods);
        let params: Vec<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_string)
            .collect();
        let mut seen = Vec::new();
        let mut item: Option<PathItem> = None;
        for op in ops {
            seen.push(op.method_name);
            let mut builder = OperationBuilder::new()
                .operation_id(Some(format!(
                    "{}_{}",
                    op.handler.replace("::", "_"),
                    op.method_name
                )))
                .summary(Some(op.handler.replace("::", ": ").replace('_', " ")));
            for p in &params {
                builder = builder.parameter(
                    ParameterBuilder::new()
                        .name(p)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(path_param_schema(p))),
                );
            }
            for (name, ty) in &op.query {
                builder = builder.parameter(
                    ParameterBuilder::new()
                        .name(*name)
                        .parameter_in(ParameterIn::Query)
                        .required(Required::False)
                        .schema(Some(query_param_schema(name, ty))),
                );
            }
            let has_body = matches!(op.body, Body::Schema(..));
            if let Body::Schema(schema, required) = op.body {
                builder = builder.request_body(Some(
                    RequestBodyBuilder::new()
                        .content(
                            "application/json",
                            ContentBuilder::new().schema(Some(*schema)).build(),
                        )
                        .required(Some(required))
                        .build(),
                ));
            }
            let shape = OpShape {
                path,
                method: op.method_name,
                handler: op.handler,
                params: &params,
                has_body,
                has_query: !op.query.is_empty(),
            };
            let responses = responses(&shape);
            let operation = builder.responses(responses).build();
            item = Some(match item {
                None => PathItem::new(op.method, operation),
                Some(mut existing) => {
                    existing.merge_operations(PathItem::new(op.method, operation));
                    existing
                }
            });
        }
        if let Some(item) = item {
            self.paths.push((path.to_string(), item));
        }
        self.routes.push((path.to_string(), seen));
        self
    }

    pub(crate) fn document(&self) -> OpenApi {
        OpenApiBuilder::new()
            .info(
                InfoBuilder::new()
                    .title("Magnetar admin API")
                    .version(env!("CARGO_PKG_VERSION"))
                    .description(Some(
                        "Pulsar admin v2 paths and shapes, plus /admin/v2/kafka/groups",
                    )),
            )
            .paths(
                self.paths
                    .iter()
                    .fold(PathsBuilder::new(), |b, (path, item)| {
                        b.path(path, item.clone())
                    })
                    .build(),
            )
            .build()
    }
}

/// Pulsar's rule for tenant, namespace and topic names as `magnetar_broker::names` applies it:
/// letters, digits and `- _ . = :`, not `.` or `..` (the second branch allows only dots from
/// three on).
pub(crate) const NAME_PATTERN: &str =
    "^([A-Za-z0-9_.=:-]*[A-Za-z0-9_=:-][A-Za-z0-9_.=:-]*|[.]{3,})$";

/// No control characters (`char::is_control`: C0, DEL and C1), as `check_role` refuses.
pub(crate) const ROLE_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

fn string_schema(min: usize, max: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .min_length(Some(min))
        .max_length(Some(max))
}

/// The schema of a path parameter, by its name: the limits its handler enforces. Byte limits
/// are stated as character limits (equal for ASCII; longer UTF-8 answers 400 or 412).
fn path_param_schema(name: &str) -> ObjectBuilder {
    use magnetar_broker::names::NAME_LENGTH_MAX;
    use magnetar_broker::permissions::ROLE_BYTES_MAX;
    match name {
        "tenant" | "namespace" | "topic" => {
            string_schema(1, NAME_LENGTH_MAX).pattern(Some(NAME_PATTERN))
        }
        "subscription" => string_schema(1, crate::subscriptions::SUBSCRIPTION_BYTES_MAX),
        "role" => string_schema(1, ROLE_BYTES_MAX).pattern(Some(ROLE_PATTERN)),
        "group" => string_schema(1, crate::groups::GROUP_ID_BYTES_MAX),
        "transactionalId" => string_schema(1, crate::transactions::TRANSACTIONAL_ID_BYTES_MAX),
        "user" => string_schema(1, magnetar_auth::scram::USER_BYTES_MAX),
        "cluster" => string_schema(1, magnetar_broker::names::NAME_LENGTH_MAX),
        // Pulsar's bundle name: `0x00000000_0x40000000`.
        "bundle" => string_schema(21, 21).pattern(Some("^0x[0-9a-fA-F]{8}_0x[0-9a-fA-F]{8}$")),
        "domain" => ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .enum_values(Some(["persistent"])),
        "timestamp" => ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            ))),
        // A message index (u64; stated up to i64::MAX).
        "index" => ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .minimum(Some(0))
            .maximum(Some(i64::MAX)),
        // A Pulsar schema version (counted from 0).
        "version" => ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            )))
            .minimum(Some(0)),
        "count" => ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            )))
            .minimum(Some(0)),
        _ => ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)),
    }
}

/// The schema of a query parameter: `boolean`, or a string (`mechanism` is one of two).
fn query_param_schema(name: &str, ty: &str) -> ObjectBuilder {
    match (name, ty) {
        (_, "boolean") => ObjectBuilder::new().schema_type(SchemaType::Type(Type::Boolean)),
        ("mechanism", _) => ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .enum_values(Some(["SCRAM-SHA-256", "SCRAM-SHA-512"])),
        _ => ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)),
    }
}

/// What [`responses`] looks at in an operation.
struct OpShape<'a> {
    path: &'a str,
    method: &'a str,
    handler: &'a str,
    params: &'a [String],
    has_body: bool,
    has_query: bool,
}

/// Every status an operation can answer. Errors come from: an extractor (400 bad path, query or
/// body, 413 too large, 415 not JSON), a name validator (412, Pulsar's status for an invalid
/// name and for the handlers' preconditions), a missing or existing resource (404, 409), a
/// request target longer than hyper's 64 KiB (414, without a body), the
/// authentication layer on `/admin` and `/lookup` when it is on (401, 403), a storage failure
/// (500) and shutdown or a missing group coordinator (503).
fn responses(op: &OpShape<'_>) -> utoipa::openapi::Responses {
    let error = || {
        ContentBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .property(
                        "reason",
                        ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)),
                    )
                    .required("reason"),
            ))
            .build()
    };
    let mut statuses: Vec<(&str, &str)> = Vec::new();
    let json_ok = op.method == "get"
        || op.handler == "groups::reset_offsets"
        || op.handler == "skipped::skip"
        || op.handler == "schemas::post_schema"
        || op.handler == "schemas::delete_schema"
        || op.handler == "schemas::test_compatibility";
    if json_ok {
        statuses.push(("200", ""));
    } else {
        statuses.push(("204", ""));
    }
    let named = !op.params.is_empty();
    if named || op.has_body || op.has_query {
        statuses.push((
            "400",
            "bad input: a path, query or body the handler refuses",
        ));
    }
    if op.path.starts_with("/admin/") || op.path.starts_with("/lookup/") {
        statuses.push((
            "401",
            "authentication is on and the request has no valid token",
        ));
        statuses.push(("403", "authentication is on and the role may not do this"));
    }
    if named {
        statuses.push((
            "404",
            "the tenant, namespace, topic, subscription, group or user does not exist",
        ));
    }
    if op.handler == "schemas::post_schema" || op.handler == "schemas::test_compatibility" {
        statuses.push(("422", "the schema does not parse"));
    }
    if op.handler == "subscriptions::reset_to_message_id"
        || op.handler == "subscriptions::skip"
        || op.handler.starts_with("skipped::")
        || op.handler.starts_with("offload::")
    {
        statuses.push(("405", "not allowed on a whole partitioned topic"));
    }
    if named && op.handler != "lookup::lookup_topic" {
        statuses.push((
            "409",
            "already exists, not empty, or the wrong kind of topic",
        ));
    }
    // A topic name in a group offset reset's body is validated as the path's names are.
    if op.params.iter().any(|p| p == "tenant") || op.handler == "groups::reset_offsets" {
        statuses.push((
            "412",
            "an invalid name, or a precondition of the operation failed",
        ));
    }
    if named || op.has_query {
        statuses.push(("414", ""));
    }
    if op.has_body {
        statuses.push(("413", "the body is larger than the limit"));
        statuses.push(("415", "the body is not sent as application/json"));
    }
    if op.handler != "health" && op.handler != "version" && op.handler != "openapi_json" {
        statuses.push(("500", "a storage or metadata failure"));
    }
    if op.handler != "version" && op.handler != "openapi_json" {
        statuses.push((
            "503",
            "shutting down, not ready, or no Kafka group coordinator",
        ));
    }
    let mut builder = ResponsesBuilder::new();
    for (status, description) in statuses {
        builder = match status {
            "200" => builder.response(
                status,
                ResponseBuilder::new().description("JSON result").content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(ok_schema(op.handler)))
                        .build(),
                ),
            ),
            // `/health` answers its own shape while starting.
            "503" if op.handler == "health" => builder.response(
                status,
                ResponseBuilder::new().description("starting").content(
                    "application/json",
                    ContentBuilder::new().schema(Some(health_schema())).build(),
                ),
            ),
            "204" => builder.response(status, ResponseBuilder::new().description("done")),
            // hyper's own answer, before routing: no body.
            "414" => builder.response(
                status,
                ResponseBuilder::new().description("the request target is longer than 64 KiB"),
            ),
            _ => builder.response(
                status,
                ResponseBuilder::new()
                    .description(description)
                    .content("application/json", error()),
            ),
        };
    }
    builder.build()
}

fn typed(ty: Type) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::Type(ty))
}

/// `{"status": "ready"|"starting"}`.
fn health_schema() -> RefOr<Schema> {
    typed(Type::Object)
        .property(
            "status",
            typed(Type::String).enum_values(Some(["ready", "starting"])),
        )
        .required("status")
        .into()
}

/// `schema` or JSON `null` (an unset policy).
fn or_null(schema: RefOr<Schema>) -> RefOr<Schema> {
    AnyOfBuilder::new()
        .item(schema)
        .item(typed(Type::Null))
        .into()
}

/// The schema of an operation's 200 answer, by its handler: the JSON shapes the handlers build
/// (a JSON object or array where the shape is open, such as stats).
fn ok_schema(handler: &str) -> RefOr<Schema> {
    use utoipa::PartialSchema;
    let strings = || -> RefOr<Schema> { ArrayBuilder::new().items(typed(Type::String)).into() };
    let count_or_null = || -> RefOr<Schema> {
        typed(Type::Integer)
            .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
            .minimum(Some(0))
            .into()
    };
    match handler {
        "health" => health_schema(),
        "version" => typed(Type::Object)
            .property("name", typed(Type::String))
            .property("version", typed(Type::String))
            .required("name")
            .required("version")
            .into(),
        "tenants::list_clusters"
        | "cluster::list_brokers"
        | "tenants::list"
        | "namespaces::list"
        | "topics::list"
        | "topics::list_partitioned"
        | "topics::subscriptions" => strings(),
        "tenants::get" => crate::tenants::TenantInfoJson::schema(),
        "namespaces::get_retention" => crate::namespaces::RetentionJson::schema(),
        "namespaces::get_ttl"
        | "namespaces::get_compaction_threshold"
        | "namespaces::get_max_producers"
        | "namespaces::get_max_consumers" => count_or_null(),
        "schemas::get_auto_update" | "schemas::get_validation" => typed(Type::Boolean).into(),
        "schemas::get_strategy" => typed(Type::String)
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .into(),
        "schemas::get_schema" | "schemas::get_schema_version" => {
            crate::schemas::SchemaJson::schema()
        }
        "namespaces::get_deduplication" => typed(Type::Boolean)
            .schema_type(SchemaType::from_iter([Type::Boolean, Type::Null]))
            .into(),
        "namespaces::get_auto_topic_creation" => {
            or_null(crate::namespaces::AutoTopicCreationJson::schema())
        }
        "namespaces::get_publish_rate" => or_null(crate::namespaces::PublishRateJson::schema()),
        "topics::get_partitions" => typed(Type::Object)
            .property("partitions", typed(Type::Integer).minimum(Some(0)))
            .required("partitions")
            .into(),
        "lookup::lookup_topic" => crate::lookup::LookupData::schema(),
        "cluster::bundles" => crate::cluster::BundlesData::schema(),
        "skipped::list" => ArrayBuilder::new().items(skipped_entry()).into(),
        "skipped::skip" => skipped_entry().into(),
        "offload::status" => crate::offload::OffloadStatusJson::schema(),
        "compaction::status" => crate::compaction::CompactionStatusJson::schema(),
        "groups::list" | "scram::list" | "transactions::list" => {
            ArrayBuilder::new().items(typed(Type::Object)).into()
        }
        "groups::reset_offsets" => ArrayBuilder::new()
            .items(
                typed(Type::Object)
                    .property("topic", typed(Type::String))
                    .property("partition", typed(Type::Integer))
                    .property("offset", typed(Type::Integer))
                    .required("topic")
                    .required("partition")
                    .required("offset"),
            )
            .into(),
        _ => typed(Type::Object).into(),
    }
}

/// `{"firstIndex", "endIndex"}`: a skipped entry's message indexes.
fn skipped_entry() -> ObjectBuilder {
    typed(Type::Object)
        .property("firstIndex", typed(Type::Integer).minimum(Some(0)))
        .property("endIndex", typed(Type::Integer).minimum(Some(0)))
        .required("firstIndex")
        .required("endIndex")
}
