//! The admin API's request extractors: `Path`, `Query` and `JsonBody` in place of axum's, so that
//! every rejection (a path segment that does not decode, a malformed query string, a body that
//! is not JSON, is JSON of the wrong type, is too large or is sent with another content type)
//! answers the API's one error shape `{"reason": ...}` with the status the OpenAPI document
//! declares (400, 413, 415), in this one place rather than per handler.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest admin request body accepted (also the router's `DefaultBodyLimit`).
pub(crate) const BODY_BYTES_MAX: usize = 1024 * 1024;

/// The first letter of an axum rejection text in lowercase, as our error messages are.
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError {
            status: rejection.status(),
            reason: format!("invalid path: {}", lowercase_first(&rejection.body_text())),
            owner: None,
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError {
            status: rejection.status(),
            reason: format!(
                "invalid query string: {}",
                lowercase_first(&rejection.body_text())
            ),
            owner: None,
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body is larger than {BODY_BYTES_MAX} bytes")
        } else {
            format!(
                "cannot read the request body: {}",
                lowercase_first(&rejection.body_text())
            )
        };
        ApiError {
            status,
            reason,
            owner: None,
        }
    }
}

/// Path parameters; a rejection is `{"reason": ...}` (400 for a segment that does not decode).
pub(crate) struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(value))
    }
}

/// The query string; a rejection is `{"reason": ...}` with 400.
pub(crate) struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

/// The JSON type a body must have at its top level. serde's derived `Deserialize` for a struct
/// also accepts a JSON array (its fields in order, missing ones defaulted), so `[]` would read as
/// a struct of defaults; checking the top-level type first refuses that with 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JsonType {
    Object,
    Array,
    Integer,
    Boolean,
    String,
}

impl JsonType {
    fn name(self) -> &'static str {
        match self {
            JsonType::Object => "a JSON object",
            JsonType::Array => "a JSON array",
            JsonType::Integer => "a JSON integer",
            JsonType::Boolean => "a JSON boolean",
            JsonType::String => "a JSON string",
        }
    }

    /// Whether a document starting with `first` (its first non-blank byte) is of this type.
    fn starts(self, first: u8) -> bool {
        match self {
            JsonType::Object => first == b'{',
            JsonType::Array => first == b'[',
            // A float is refused by the integer's own deserializer, with its reason.
            JsonType::Integer => first == b'-' || first.is_ascii_digit(),
            JsonType::Boolean => first == b't' || first == b'f',
            JsonType::String => first == b'"',
        }
    }
}

/// What a JSON value starting with `first` is, for the refusal.
fn found(first: u8) -> &'static str {
    match first {
        b'{' => "an object",
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        b'-' | b'0'..=b'9' => "a number",
        _ => "not JSON",
    }
}

/// A request body type: the JSON type its document must have at the top level.
pub(crate) trait JsonBodyType: DeserializeOwned {
    const JSON_TYPE: JsonType;
}

impl JsonBodyType for i64 {
    const JSON_TYPE: JsonType = JsonType::Integer;
}

impl JsonBodyType for String {
    const JSON_TYPE: JsonType = JsonType::String;
}

impl JsonBodyType for bool {
    const JSON_TYPE: JsonType = JsonType::Boolean;
}

impl<T: DeserializeOwned> JsonBodyType for Vec<T> {
    const JSON_TYPE: JsonType = JsonType::Array;
}

impl<T: DeserializeOwned + Ord> JsonBodyType for std::collections::BTreeSet<T> {
    const JSON_TYPE: JsonType = JsonType::Array;
}

/// A JSON body; every rejection is `{"reason": ...}`: 415 for a content type other than JSON,
/// 413 above [`BODY_BYTES_MAX`], 400 for malformed JSON or JSON of the wrong type.
pub(crate) struct JsonBody<T>(pub T);

/// 415 unless the request has no content type (curl-less clients) or a JSON one
/// (`application/json`, `application/*+json`, with any parameters).
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match essence {
        Some(e)
            if e == "application/json"
                || (e.starts_with("application/") && e.ends_with("+json")) =>
        {
            Ok(())
        }
        _ => Err(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            reason: format!(
                "content type '{}' is not supported; send application/json",
                String::from_utf8_lossy(value.as_bytes())
            ),
            owner: None,
        }),
    }
}

/// The body's bytes, or `None` when it is empty or blank.
async fn body_bytes<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<Option<axum::body::Bytes>, ApiError> {
    check_content_type(req.headers())?;
    let bytes = axum::body::Bytes::from_request(req, state).await?;
    if bytes.len() > BODY_BYTES_MAX {
        return Err(ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            reason: format!("request body is larger than {BODY_BYTES_MAX} bytes"),
            owner: None,
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    Ok(Some(bytes))
}

/// Parses `bytes` as a `T`, refusing JSON of another top-level type first.
pub(crate) fn parse<T: JsonBodyType>(bytes: &[u8]) -> Result<T, ApiError> {
    let expected = T::JSON_TYPE;
    let first = bytes
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace())
        .ok_or_else(|| {
            ApiError::bad_request(format!("request body must be {}", expected.name()))
        })?;
    if !expected.starts(first) {
        return Err(ApiError::bad_request(format!(
            "request body must be {}, got {}",
            expected.name(),
            found(first)
        )));
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    integral_floats_as_integers(&mut value, JSON_DEPTH_MAX);
    T::deserialize(value).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

/// How deep [`integral_floats_as_integers`] looks (serde_json itself stops at 128 levels).
const JSON_DEPTH_MAX: usize = 128;

/// JSON Schema's `integer` is any number without a fractional part, so `625.0` is one (and
/// Pulsar's Jackson reads it as 625); serde reads it as a float only. Integral floats within
/// `i64` become integers here, before the body's own deserializer runs.
fn integral_floats_as_integers(value: &mut serde_json::Value, depth_left: usize) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                // The range test is exact: both bounds are powers of two.
                let in_range =
                    (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f);
                if f.fract() == 0.0 && in_range {
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) if depth_left > 0 => {
            for item in items {
                integral_floats_as_integers(item, depth_left - 1);
            }
        }
        Value::Object(fields) if depth_left > 0 => {
            for item in fields.values_mut() {
                integral_floats_as_integers(item, depth_left - 1);
            }
        }
        _ => {}
    }
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: JsonBodyType,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match body_bytes(req, state).await? {
            Some(bytes) => parse(&bytes).map(JsonBody),
            None => Err(ApiError::bad_request(format!(
                "request body must be {}, got an empty body",
                T::JSON_TYPE.name()
            ))),
        }
    }
}

impl<S, T> axum::extract::OptionalFromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: JsonBodyType,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        match body_bytes(req, state).await? {
            Some(bytes) => parse(&bytes).map(|v| Some(JsonBody(v))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::response::IntoResponse;
    use axum::routing::post;
    use axum::Router;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Both {
        #[serde(default)]
        a: i64,
        #[serde(default)]
        b: Vec<String>,
    }

    impl JsonBodyType for Both {
        const JSON_TYPE: JsonType = JsonType::Object;
    }

    #[test]
    fn an_array_is_not_a_struct() {
        // serde alone reads `[]` as a struct of defaults: the reason for the type check.
        assert!(serde_json::from_slice::<Both>(b"[]").is_ok());
        let e = parse::<Both>(b" []").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.reason, "request body must be a JSON object, got an array");
        let e = parse::<i64>(b"{\"x\": 1}").unwrap_err();
        assert_eq!(
            e.reason,
            "request body must be a JSON integer, got an object"
        );
        let e = parse::<bool>(b"null").unwrap_err();
        assert_eq!(e.reason, "request body must be a JSON boolean, got null");
        let e = parse::<Vec<String>>(b"\"x\"").unwrap_err();
        assert_eq!(e.reason, "request body must be a JSON array, got a string");
        assert_eq!(
            parse::<Both>(b"{\"a\": 3}").unwrap(),
            Both { a: 3, b: vec![] }
        );
        assert!(parse::<Both>(b"{\"c\": 3}")
            .unwrap_err()
            .reason
            .contains("unknown field"));
        assert!(parse::<Both>(b"{")
            .unwrap_err()
            .reason
            .starts_with("malformed JSON"));
    }

    #[test]
    fn integral_floats_are_integers() {
        assert_eq!(parse::<i64>(b"625.0").unwrap(), 625);
        assert_eq!(parse::<i64>(b"-1.0").unwrap(), -1);
        assert_eq!(parse::<Both>(b"{\"a\": 2e3}").unwrap().a, 2000);
        assert!(parse::<i64>(b"1.5").is_err());
        // 2^63 does not fit an i64: still a float, refused by the integer.
        assert!(parse::<i64>(b"9223372036854775808.0").is_err());
        assert_eq!(parse::<i64>(b"-9223372036854775808.0").unwrap(), i64::MIN);
    }

    async fn answer(router: Router, request: Request) -> (StatusCode, String, String) {
        let response = router.oneshot(request).await.unwrap().into_response();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    fn router() -> Router {
        async fn handler(
            Path(n): Path<u32>,
            Query(q): Query<std::collections::HashMap<String, bool>>,
            JsonBody(body): JsonBody<Both>,
        ) -> String {
            format!("{n} {} {}", q.len(), body.a)
        }
        Router::new()
            .route("/x/{n}", post(handler))
            .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
    }

    fn request(uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request {
        let mut builder = Request::builder().method("POST").uri(uri);
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        builder.body(body.into()).unwrap()
    }

    #[tokio::test]
    async fn every_rejection_is_a_json_reason() {
        let json = Some("application/json");
        let cases: Vec<(Request, StatusCode, &str)> = vec![
            (
                request("/x/abc", json, "{}"),
                StatusCode::BAD_REQUEST,
                "invalid path: ",
            ),
            (
                request("/x/%FF", json, "{}"),
                StatusCode::BAD_REQUEST,
                "invalid path: ",
            ),
            (
                request("/x/1?k=maybe", json, "{}"),
                StatusCode::BAD_REQUEST,
                "invalid query string: ",
            ),
            (
                request("/x/1", json, "[]"),
                StatusCode::BAD_REQUEST,
                "request body must be a JSON object",
            ),
            (
                request("/x/1", json, ""),
                StatusCode::BAD_REQUEST,
                "request body must be a JSON object",
            ),
            (
                request("/x/1", Some("text/plain"), "{}"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content type 'text/plain'",
            ),
            (
                request("/x/1", json, vec![b' '; BODY_BYTES_MAX + 1]),
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body is larger",
            ),
        ];
        for (req, status, reason) in cases {
            let uri = req.uri().to_string();
            let (got, content_type, body) = answer(router(), req).await;
            assert_eq!(got, status, "{uri}: {body}");
            assert_eq!(content_type, "application/json", "{uri}");
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            let text = body["reason"].as_str().unwrap();
            assert!(text.starts_with(reason), "{uri}: {text}");
        }
        for ct in [
            None,
            Some("application/json; charset=utf-8"),
            Some("application/vnd.x+json"),
        ] {
            let (status, _, body) =
                answer(router(), request("/x/7?k=true", ct, "{\"a\": 2.0}")).await;
            assert_eq!((status, body.as_str()), (StatusCode::OK, "7 1 2"));
        }
    }
}
