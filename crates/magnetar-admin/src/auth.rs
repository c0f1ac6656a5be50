//! `Authorization: Bearer <token>` (or `Basic` with the basic provider) on the admin API when
//! authentication is on, as Pulsar's web service does: `/health`, `/version` and `/metrics` stay
//! open; every `/admin/...` request needs valid credentials (401 otherwise), or, without an
//! `Authorization` header, gets the anonymous role when one is set. Which role may do what (403
//! otherwise):
//! - with authorization on (Pulsar's model): superusers everything; a tenant's admin roles
//!   everything under that tenant (`/admin/v2/tenants/{t}` read, `/admin/v2/namespaces/{t}/...`,
//!   `/admin/v2/persistent/{t}/...`); cluster-wide paths (clusters, tenant list/create/update/
//!   delete, Kafka groups and SCRAM users, which are not per tenant) stay superuser-only;
//! - with authorization off: superusers only (stricter than Pulsar, which then lets every
//!   authenticated role administer).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use magnetar_auth::Authenticator;

use crate::error::ApiError;

fn refuse(status: StatusCode, reason: String) -> Response {
    let mut response = ApiError {
        status,
        reason,
        owner: None,
    }
    .into_response();
    if status == StatusCode::UNAUTHORIZED {
        if let Ok(value) = header::HeaderValue::from_str("Bearer") {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// What the middleware needs: the token check and the permission model.
/// The role a bearer token authenticated, handed to handlers that authorize by topic (the HTTP
/// lookup) in the request's extensions.
#[derive(Clone, Debug)]
pub(crate) struct Role(pub(crate) String);

/// `GET /admin/v2/persistent/{tenant}/{namespace}/{topic}/partitions`: the partition count a
/// Pulsar client asks before a lookup, allowed with the lookup permission on the topic (as
/// Pulsar does), not only to admins.
fn partitions_lookup(
    method: &axum::http::Method,
    path: &str,
) -> Option<magnetar_broker::TopicName> {
    if method != axum::http::Method::GET {
        return None;
    }
    let rest = path.strip_prefix("/admin/v2/persistent/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [tenant, namespace, topic, "partitions"] = parts.as_slice() else {
        return None;
    };
    let namespace =
        magnetar_broker::NamespaceName::new(&percent_decode(tenant)?, &percent_decode(namespace)?)
            .ok()?;
    magnetar_broker::TopicName::new(namespace, &percent_decode(topic)?).ok()
}

#[derive(Clone)]
pub(crate) struct AuthState {
    pub(crate) authenticator: Arc<Authenticator>,
    pub(crate) broker: Arc<magnetar_broker::Broker>,
}

/// The tenant a path is under, when a tenant's admins may use it: `/admin/v2/namespaces/{t}...`,
/// `/admin/v2/persistent/{t}...`, and reading `/admin/v2/tenants/{t}`.
fn tenant_of(method: &axum::http::Method, path: &str) -> Option<String> {
    let rest = path.strip_prefix("/admin/v2/")?;
    let mut parts = rest.split('/');
    let kind = parts.next()?;
    let tenant = parts.next().filter(|t| !t.is_empty())?;
    let decoded = percent_decode(tenant)?;
    match kind {
        "namespaces" | "persistent" => Some(decoded),
        "tenants" if method == axum::http::Method::GET && parts.next().is_none() => Some(decoded),
        _ => None,
    }
}

/// `%XX` escapes of a path segment (tenant names are plain, but a client may escape them).
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The role a request authenticates as: `Authorization: Bearer <token>`, `Authorization: Basic
/// base64(user:password)` with the basic provider on, or, without the header, the anonymous role
/// when one is set (as Pulsar's `anonymousUserRole`). Bad credentials are refused even with an
/// anonymous role (Pulsar would fall back to it; a typo should not silently change the role).
fn authenticate(authenticator: &Authenticator, request: &Request) -> Result<String, String> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return authenticator
            .anonymous_role()
            .map(str::to_string)
            .ok_or_else(|| "authentication required: send Authorization: Bearer <token>".into());
    };
    let malformed = || {
        if authenticator.basic_enabled() {
            "the Authorization header must be 'Bearer <token>' or 'Basic <base64 user:password>'"
                .to_string()
        } else {
            "the Authorization header must be 'Bearer <token>'".to_string()
        }
    };
    let (scheme, credentials) = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .map(|(scheme, rest)| (scheme.to_ascii_lowercase(), rest.trim()))
        .ok_or_else(malformed)?;
    let authenticated = match scheme.as_str() {
        "bearer" => authenticator.authenticate_token(credentials),
        "basic" if authenticator.basic_enabled() => {
            let decoded = magnetar_auth::key::decode_base64(credentials)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    "the Basic credentials are not base64 of user:password".to_string()
                })?;
            authenticator.authenticate_basic(&decoded)
        }
        _ => return Err(malformed()),
    };
    authenticated
        .map(|a| a.principal.role)
        .map_err(|e| format!("authentication failed: {e}"))
}

pub(crate) async fn require_authorized(
    State(state): State<AuthState>,
    request: Request,
    next: Next,
) -> Response {
    let authenticator = &state.authenticator;
    let lookup = request.uri().path().starts_with("/lookup/");
    if !request.uri().path().starts_with("/admin/") && !lookup {
        return next.run(request).await;
    }
    let role = match authenticate(authenticator, &request) {
        Ok(role) => role,
        Err(reason) => {
            tracing::warn!(%reason, path = %request.uri().path(), "admin request refused: authentication failed");
            return refuse(StatusCode::UNAUTHORIZED, reason);
        }
    };
    match role {
        role if lookup => {
            // The lookup handler checks the role's lookup permission on the topic.
            let mut request = request;
            request.extensions_mut().insert(Role(role));
            next.run(request).await
        }
        role if authenticator.is_superuser(&magnetar_auth::Principal { role: role.clone() }) => {
            next.run(request).await
        }
        role => {
            let path = request.uri().path().to_string();
            if let Some(topic) = partitions_lookup(request.method(), &path) {
                match state
                    .broker
                    .check_access(Some(&role), &topic, &magnetar_broker::Access::Lookup)
                    .await
                {
                    Ok(true) => return next.run(request).await,
                    Ok(false) => {}
                    Err(e) => tracing::debug!(error = %e, "lookup permission check failed"),
                }
            }
            let tenant =
                tenant_of(request.method(), &path).filter(|_| state.broker.authorization_enabled());
            if let Some(tenant) = &tenant {
                let admin = match magnetar_broker::TenantName::new(tenant) {
                    Ok(name) => state.broker.is_tenant_admin(&role, &name).await,
                    Err(e) => Err(e),
                };
                match admin {
                    Ok(true) => return next.run(request).await,
                    Ok(false) => {}
                    // An unknown tenant or a bad name: the same refusal, nothing revealed.
                    Err(e) => tracing::debug!(error = %e, "tenant admin check failed"),
                }
            }
            tracing::warn!(role = %role, path = %path, "admin request refused: not authorized");
            let reason = match tenant {
                Some(tenant) => {
                    format!("role '{role}' is not a superuser or an admin of tenant '{tenant}'")
                }
                None => format!("role '{role}' is not a superuser"),
            };
            refuse(StatusCode::FORBIDDEN, reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magnetar_broker::{Broker, BrokerConfig, SystemClock};
    use magnetar_metadata::MemoryStore;

    async fn authenticator(anonymous_role: Option<&str>) -> (Authenticator, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(
            BrokerConfig::for_data_dir(dir.path()),
            Arc::new(MemoryStore::new()),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let users = dir.path().join("htpasswd");
        // `openssl passwd -apr1 -salt saltsalt password`.
        std::fs::write(&users, "alice:$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/\n").unwrap();
        let config = magnetar_auth::AuthConfig {
            enabled: true,
            mechanisms: vec![magnetar_auth::Mechanism::ScramSha256],
            anonymous_role: anonymous_role.map(str::to_string),
            basic_auth_conf: Some(users.display().to_string()),
            ..Default::default()
        };
        (Authenticator::new(&config, broker).unwrap(), dir)
    }

    fn request(authorization: Option<&str>) -> Request {
        let mut builder = Request::builder().uri("/admin/v2/tenants");
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn basic_credentials_and_the_anonymous_role() {
        let (auth, _dir) = authenticator(Some("guest")).await;
        // "alice:password" in base64.
        let ok = request(Some("Basic YWxpY2U6cGFzc3dvcmQ="));
        assert_eq!(authenticate(&auth, &ok).unwrap(), "alice");
        // "alice:wrong": refused, not downgraded to the anonymous role.
        let bad = request(Some("Basic YWxpY2U6d3Jvbmc="));
        assert!(authenticate(&auth, &bad)
            .unwrap_err()
            .contains("invalid credentials"));
        assert!(authenticate(&auth, &request(Some("Basic !!")))
            .unwrap_err()
            .contains("base64"));
        assert!(authenticate(&auth, &request(Some("Digest x")))
            .unwrap_err()
            .contains("'Basic <base64 user:password>'"));
        assert_eq!(authenticate(&auth, &request(None)).unwrap(), "guest");
        let (auth, _dir) = authenticator(None).await;
        assert!(authenticate(&auth, &request(None))
            .unwrap_err()
            .contains("authentication required"));
    }
}
