//! The OpenAPI document of the admin API, built from the routing itself: every route is added
//! through [`DocRouter::route`] with the output of [`methods!`], which registers each handler on
//! the axum `MethodRouter` and records the same method in the document, so the document cannot
//! list a method that is not served or miss one that is. Request body schemas come from the
//! body types' `utoipa::ToSchema` derives (which follow their serde attributes).

use std::sync::Arc;

use axum::routing::MethodRouter;
use axum::Router;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
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
    pub(crate) fn integer() -> Self {
        Body::Schema(
            Box::new(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int64,
                    )))
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
    pub(crate) fn strings() -> Self {
        Body::Schema(
            Box::new(
                ArrayBuilder::new()
                    .items(ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)))
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
                        .schema(Some(
                            ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)),
                        )),
                );
            }
            for (name, ty) in &op.query {
                let ty = if *ty == "boolean" {
                    Type::Boolean
                } else {
                    Type::String
                };
                builder = builder.parameter(
                    ParameterBuilder::new()
                        .name(*name)
                        .parameter_in(ParameterIn::Query)
                        .required(Required::False)
                        .schema(Some(ObjectBuilder::new().schema_type(SchemaType::Type(ty)))),
                );
            }
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
            let error = ContentBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .property(
                            "reason",
                            ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)),
                        )
                        .required("reason"),
                ))
                .build();
            let responses = ResponsesBuilder::new()
                .response("200", ResponseBuilder::new().description("JSON result"))
                .response("204", ResponseBuilder::new().description("done"))
                .response(
                    "default",
                    ResponseBuilder::new()
                        .description("an error: 400 bad input, 404 unknown, 409 exists or busy, 412 precondition, 503 unavailable")
                        .content("application/json", error),
                )
                .build();
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
