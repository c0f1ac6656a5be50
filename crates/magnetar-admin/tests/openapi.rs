//! `/admin/v2/openapi.json` matches what is served: every routed path and method is in the
//! document, and every documented operation is answered by its handler (not 405, not the
//! "no such endpoint" fallback), while undocumented methods on those paths are 405.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use magnetar_broker::*;
use magnetar_metadata::MemoryStore;
use serde_json::Value;
use tower::ServiceExt;

async fn router() -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(
        BrokerConfig::for_data_dir(dir.path().to_path_buf()),
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    (
        magnetar_admin::router(broker, magnetar_admin::Readiness::default()),
        dir,
    )
}

async fn call(router: &axum::Router, method: Method, path: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn every_routed_path_is_documented_and_served() {
    let (router, _dir) = router().await;
    let (status, doc) = call(&router, Method::GET, "/admin/v2/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let routed = magnetar_admin::routed_paths();
    assert!(routed.len() > 30, "{}", routed.len());
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(
        paths.len(),
        routed.len(),
        "documented and routed paths differ"
    );
    for (path, methods) in &routed {
        let item = &paths[path.as_str()];
        for method in ["get", "put", "post", "delete"] {
            assert_eq!(
                item.get(method).is_some(),
                methods.iter().any(|m| m == method),
                "{method} {path}"
            );
        }
        // Path parameters are declared.
        for param in path.split('/').filter(|s| s.starts_with('{')) {
            let name = param.trim_matches(|c| c == '{' || c == '}');
            for m in methods {
                let declared = item[m.as_str()]["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path");
                assert!(declared, "{m} {path}: {name}");
            }
        }
        let concrete: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "probe" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for (method, name) in [
            (Method::GET, "get"),
            (Method::PUT, "put"),
            (Method::POST, "post"),
            (Method::DELETE, "delete"),
        ] {
            let (status, body) = call(&router, method, &concrete).await;
            if methods.iter().any(|m| m == name) {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{name} {concrete}");
                assert_ne!(body["reason"], "no such endpoint", "{name} {concrete}");
            } else {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{name} {concrete}");
            }
        }
    }
    // Request bodies carry the schemas of the handlers' body types.
    let retention = &paths["/admin/v2/namespaces/{tenant}/{namespace}/retention"]["post"];
    let schema = &retention["requestBody"]["content"]["application/json"]["schema"];
    assert!(
        schema["properties"]["retentionSizeInMB"].is_object(),
        "{schema}"
    );
    // Query parameters the handlers read are declared (optional).
    let delete = &paths["/admin/v2/persistent/{tenant}/{namespace}/{topic}"]["delete"];
    let force = delete["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "force")
        .expect("force is declared");
    assert_eq!(force["in"], "query");
    assert_eq!(force["required"], false);
    assert_eq!(force["schema"]["type"], "boolean");
    let reset = &paths["/admin/v2/kafka/groups/{group}/offsets"]["post"];
    let schema = &reset["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(
        schema["properties"]["to"]["enum"],
        serde_json::json!(["earliest", "latest", "timestamp", "offset"]),
        "{schema}"
    );
}

/// The document states the contract the server keeps: no catch-all `default` answer, every
/// error status with the `{"reason"}` schema, 413/415 where a body is read, and the name
/// pattern the validators apply (checked against `TenantName::new` on names either side of it).
#[tokio::test]
async fn the_document_declares_statuses_and_name_patterns() {
    let (router, _dir) = router().await;
    let (_, doc) = call(&router, Method::GET, "/admin/v2/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.contains_key("default"), "{method} {path}");
            for (status, response) in responses {
                let reason =
                    &response["content"]["application/json"]["schema"]["properties"]["reason"];
                let is_error = status.starts_with('4') || status.starts_with('5');
                if is_error && status != "414" && path != "/health" {
                    assert_eq!(reason["type"], "string", "{method} {path} {status}");
                }
            }
            let has_body = op.get("requestBody").is_some();
            for status in ["413", "415"] {
                assert_eq!(
                    responses.contains_key(status),
                    has_body,
                    "{method} {path} {status}"
                );
            }
            if path.contains("{tenant}") {
                assert!(responses.contains_key("412"), "{method} {path}");
                assert!(responses.contains_key("404"), "{method} {path}");
            }
        }
    }
    let get = &paths["/admin/v2/namespaces/{tenant}/{namespace}"]["get"];
    let tenant = get["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tenant")
        .unwrap();
    assert_eq!(tenant["schema"]["maxLength"], names::NAME_LENGTH_MAX);
    let pattern = tenant["schema"]["pattern"].as_str().unwrap();
    // A tiny matcher for this pattern's two branches, so the test needs no regex crate.
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.=:-".contains(c);
    assert_eq!(
        pattern,
        "^([A-Za-z0-9_.=:-]*[A-Za-z0-9_=:-][A-Za-z0-9_.=:-]*|[.]{3,})$"
    );
    let matches = |s: &str| s.chars().all(allowed) && (s.chars().any(|c| c != '.') || s.len() >= 3);
    for name in [
        "a", "public", "a.b", "...", "-_=:", ".x", "", ".", "..", "a b", "a/b", "é", "a%",
    ] {
        let valid = !name.is_empty() && TenantName::new(name).is_ok();
        assert_eq!(matches(name), valid, "{name:?}");
    }
}
