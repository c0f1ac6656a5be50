//! The admin HTTP API in process: a request goes straight to the router (no listener), its
//! answer comes back as a status and a JSON value.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// How a response body that is not JSON is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotJson {
    /// The test fails: every answer of the API under test is JSON.
    Panic,
    /// The body as a JSON string (endpoints that answer plain text too).
    AsString,
}

/// Sends `method path` with an optional JSON `body` to `router`; (status, JSON body, `Null` when
/// empty).
pub async fn call(
    router: &axum::Router,
    method: Method,
    path: &str,
    body: Option<&str>,
    not_json: NotJson,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request builds");
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        match (serde_json::from_slice(&bytes), not_json) {
            (Ok(value), _) => value,
            (Err(_), NotJson::AsString) => {
                Value::String(String::from_utf8_lossy(&bytes).into_owned())
            }
            (Err(e), NotJson::Panic) => panic!(
                "{path}: the answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    };
    (status, value)
}
