//! `Authorization: Bearer <token>` on the admin API when authentication is on, as Pulsar's web
//! service does with token authentication: `/health` and `/version` stay open; every
//! `/admin/...` request needs a valid token (401 otherwise) whose role is a superuser (403
//! otherwise). The permission model's finer decisions (tenant admins) are not applied here yet.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use magnetar_auth::Authenticator;

use crate::error::ApiError;

fn refuse(status: StatusCode, reason: String) -> Response {
    let mut response = ApiError { status, reason }.into_response();
    if status == StatusCode::UNAUTHORIZED {
        if let Ok(value) = header::HeaderValue::from_str("Bearer") {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

pub(crate) async fn require_superuser(
    State(authenticator): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with("/admin/") {
        return next.run(request).await;
    }
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "authentication required: send Authorization: Bearer <token>".into(),
        );
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(token) = token else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the Authorization header must be 'Bearer <token>'".into(),
        );
    };
    match authenticator.authenticate_token(token) {
        Ok(authenticated) if authenticator.is_superuser(&authenticated.principal) => {
            next.run(request).await
        }
        Ok(authenticated) => {
            tracing::warn!(role = %authenticated.principal.role, path = %request.uri().path(), "admin request refused: not a superuser");
            refuse(
                StatusCode::FORBIDDEN,
                format!("role '{}' is not a superuser", authenticated.principal.role),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, path = %request.uri().path(), "admin request refused: authentication failed");
            refuse(
                StatusCode::UNAUTHORIZED,
                format!("authentication failed: {e}"),
            )
        }
    }
}
