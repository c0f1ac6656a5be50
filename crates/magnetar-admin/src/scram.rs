//! SCRAM credentials of Kafka clients (Magnetar's extension, next to Kafka's
//! Describe/AlterUserScramCredentials): list users with their mechanisms and iterations, set a
//! password (salted here; the password is never stored), delete. The same store the Kafka SASL
//! SCRAM mechanisms read.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use magnetar_auth::{AuthError, ScramCredential, ScramMechanism, ScramStore};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path, Query};
use crate::AppState;

/// Longest password accepted (the PBKDF2 input).
pub(crate) const PASSWORD_BYTES_MAX: usize = 1024;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ScramUser {
    pub user: String,
    pub mechanisms: Vec<ScramMechanismInfo>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ScramMechanismInfo {
    pub mechanism: String,
    pub iterations: u32,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SetPassword {
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[schema(pattern = "^SCRAM-SHA-(256|512)$")]
    pub mechanism: String,
    #[schema(min_length = 1, max_length = 1024)]
    pub password: String,
    /// 4096 to 16384 (default 4096).
    #[serde(default)]
    #[schema(minimum = 4096, maximum = 16384)]
    pub iterations: Option<u32>,
}

impl crate::extract::JsonBodyType for SetPassword {
    const JSON_TYPE: crate::extract::JsonType = crate::extract::JsonType::Object;
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeleteQuery {
    /// Only this mechanism's credential (default: every mechanism of the user).
    pub mechanism: Option<String>,
}

/// A credential error as HTTP. Exhaustive (no catch-all arm): the broker's errors keep their
/// one HTTP mapping ([`crate::error::status_of`]).
fn auth_error(e: AuthError) -> ApiError {
    match e {
        AuthError::Broker(e) => e.into(),
        AuthError::UnacceptableCredential(reason) => ApiError::bad_request(reason),
        e @ (AuthError::UnsupportedMechanism(_)
        | AuthError::InvalidKey(_)
        | AuthError::InvalidToken(_)
        | AuthError::TokenExpired
        | AuthError::Malformed { .. }
        | AuthError::BadCredentials
        | AuthError::IllegalState) => ApiError::bad_request(e.to_string()),
    }
}

fn mechanism(name: &str) -> ApiResult<ScramMechanism> {
    ScramMechanism::from_name(name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "mechanism '{name}' is not SCRAM-SHA-256 or SCRAM-SHA-512"
        ))
    })
}

pub(crate) async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<ScramUser>>> {
    let store = ScramStore::new(state.broker.clone());
    let users = store.describe(None).await.map_err(auth_error)?;
    Ok(Json(
        users
            .into_iter()
            .filter(|(_, mechanisms)| !mechanisms.is_empty())
            .map(|(user, mechanisms)| ScramUser {
                user,
                mechanisms: mechanisms
                    .into_iter()
                    .map(|(m, iterations)| ScramMechanismInfo {
                        mechanism: m.name().to_string(),
                        iterations,
                    })
                    .collect(),
            })
            .collect(),
    ))
}

pub(crate) async fn set(
    State(state): State<Arc<AppState>>,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<SetPassword>,
) -> ApiResult<StatusCode> {
    let mechanism = mechanism(&body.mechanism)?;
    if body.password.is_empty() || body.password.len() > PASSWORD_BYTES_MAX {
        return Err(ApiError::bad_request(format!(
            "the password must have 1 to {PASSWORD_BYTES_MAX} bytes"
        )));
    }
    let iterations = body
        .iterations
        .unwrap_or(magnetar_auth::scram::ITERATIONS_MIN);
    let credential = ScramCredential::from_password(mechanism, &body.password, iterations)
        .map_err(auth_error)?;
    ScramStore::new(state.broker.clone())
        .put(&user, mechanism, &credential)
        .await
        .map_err(auth_error)?;
    tracing::info!(user = %user, mechanism = mechanism.name(), "scram credential set over the admin API");
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Path(user): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let mechanisms = match &query.mechanism {
        Some(name) => vec![mechanism(name)?],
        None => ScramMechanism::ALL.to_vec(),
    };
    let store = ScramStore::new(state.broker.clone());
    let mut any = false;
    for m in mechanisms {
        any |= store.delete(&user, m).await.map_err(auth_error)?;
    }
    if !any {
        return Err(ApiError::not_found(format!(
            "user '{user}' has no such SCRAM credential"
        )));
    }
    tracing::info!(user = %user, "scram credential deleted over the admin API");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn broker_errors_keep_their_http_status() {
        let e = auth_error(AuthError::Broker(magnetar_broker::Error::ShuttingDown));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        let e = auth_error(AuthError::UnacceptableCredential("short".into()));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
