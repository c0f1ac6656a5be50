//! The Confluent Schema Registry router without a socket: authentication (bearer token, Basic
//! with the token as the password as KoP does, none), write authorization, and Confluent's
//! error shape and content type.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use magnetar_broker::{Broker, BrokerConfig, SystemClock};
use magnetar_metadata::MemoryStore;
use tower::ServiceExt;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

async fn router(dir: &std::path::Path) -> axum::Router {
    let broker = Broker::open(
        BrokerConfig::for_data_dir(dir.to_path_buf()),
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let secret: String = SECRET.iter().map(|b| *b as char).collect();
    let config = magnetar_auth::AuthConfig {
        enabled: true,
        token_secret_key: Some(format!("data:;base64,{}", base64(&secret))),
        superuser_roles: vec!["admin".into()],
        mechanisms: vec![magnetar_auth::Mechanism::Plain],
        ..Default::default()
    };
    let authenticator =
        Arc::new(magnetar_auth::Authenticator::new(&config, broker.clone()).unwrap());
    magnetar_admin::registry_router(magnetar_admin::RegistryServices {
        schemas: Arc::new(magnetar_schema::SchemaStore::new(
            broker,
            Default::default(),
        )),
        authenticator: Some(authenticator),
        authorization: true,
    })
}

fn base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn token(role: &str) -> String {
    magnetar_auth::SigningKey::from_secret_key(SECRET)
        .unwrap()
        .create_token(role, None)
        .unwrap()
}

async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    authorization: Option<String>,
    body: Option<&str>,
) -> (StatusCode, String, serde_json::Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let request = request
        .body(Body::from(body.unwrap_or_default().to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, content_type, json)
}

#[tokio::test]
async fn tokens_basic_with_token_password_and_superuser_writes() {
    let dir = tempfile::tempdir().unwrap();
    let r = router(dir.path()).await;
    let schema = r#"{"schema": "\"string\""}"#;
    // No credentials: 401 in Confluent's shape.
    let (status, content_type, body) = call(&r, "GET", "/subjects", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(content_type, magnetar_admin::REGISTRY_CONTENT_TYPE);
    assert_eq!(body["error_code"], 40101);
    // A bad token.
    let (status, _, _) = call(&r, "GET", "/subjects", Some("Bearer nope".into()), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A superuser's token registers; Basic with the token as the password too (KoP's form).
    let admin = Some(format!("Bearer {}", token("admin")));
    let (status, _, body) = call(&r, "POST", "/subjects/a/versions", admin, Some(schema)).await;
    assert_eq!((status, body["id"].as_u64()), (StatusCode::OK, Some(1)));
    let basic = Some(format!(
        "Basic {}",
        base64(&format!("any:{}", token("admin")))
    ));
    let (status, _, _) = call(&r, "POST", "/subjects/b/versions", basic, Some(schema)).await;
    assert_eq!(status, StatusCode::OK);
    // Another role reads (and looks up, and checks compatibility) but does not write.
    let reader = || Some(format!("Bearer {}", token("app")));
    let (status, _, body) = call(&r, "GET", "/subjects", reader(), None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, serde_json::json!(["a", "b"]))
    );
    let (status, _, _) = call(&r, "POST", "/subjects/a", reader(), Some(schema)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = call(
        &r,
        "POST",
        "/compatibility/subjects/a/versions/latest",
        reader(),
        Some(schema),
    )
    .await;
    assert_eq!(
        (status, body["is_compatible"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (status, _, body) = call(&r, "POST", "/subjects/c/versions", reader(), Some(schema)).await;
    assert_eq!(
        (status, body["error_code"].as_u64()),
        (StatusCode::FORBIDDEN, Some(40301))
    );
    let (status, _, _) = call(&r, "DELETE", "/subjects/a", reader(), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Unknown paths and methods answer in Confluent's shape too.
    let (status, _, body) = call(&r, "GET", "/nope", reader(), None).await;
    assert_eq!(
        (status, body["error_code"].as_u64()),
        (StatusCode::NOT_FOUND, Some(404))
    );
}
