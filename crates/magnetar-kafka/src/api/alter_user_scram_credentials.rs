//! AlterUserScramCredentials v0 (KIP-554): upsert (salt, salted password, iterations as the
//! client computed them) or delete SCRAM credentials. Served on every listener, to superusers when
//! authentication is on.
//! Results are per user; a user named twice for the same mechanism is DUPLICATE_RESOURCE.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use magnetar_auth::{AuthError, ScramCredential, ScramMechanism};

use super::describe_user_scram_credentials::{credential_store, may_manage_credentials};
use super::{Context, Envelope};
use crate::error_code;

fn mechanism(code: i8) -> Option<ScramMechanism> {
    match code {
        1 => Some(ScramMechanism::Sha256),
        2 => Some(ScramMechanism::Sha512),
        _ => None,
    }
}

enum Change {
    Delete,
    Upsert {
        iterations: i32,
        salt: bytes::Bytes,
        salted_password: bytes::Bytes,
    },
}

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut errors: BTreeMap<String, (ResponseError, String)> = BTreeMap::new();
    let mut changes: Vec<(String, i8, Change)> = Vec::new();
    for d in request.deletions {
        changes.push((d.name.to_string(), d.mechanism, Change::Delete));
    }
    for u in request.upsertions {
        changes.push((
            u.name.to_string(),
            u.mechanism,
            Change::Upsert {
                iterations: u.iterations,
                salt: u.salt,
                salted_password: u.salted_password,
            },
        ));
    }
    let mut users: Vec<String> = changes.iter().map(|(u, _, _)| u.clone()).collect();
    users.sort();
    users.dedup();
    if !may_manage_credentials(ctx) {
        let mut response = AlterUserScramCredentialsResponse::default();
        response.results = users
            .into_iter()
            .map(|user| {
                AlterUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(user))
                    .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "altering SCRAM credentials needs a superuser role",
                    )))
            })
            .collect();
        return response;
    }
    let store = credential_store(ctx);
    let mut counts: HashMap<(String, i8), usize> = HashMap::new();
    for (user, code, _) in &changes {
        *counts.entry((user.clone(), *code)).or_default() += 1;
    }
    for (user, code, change) in changes {
        if errors.contains_key(&user) {
            continue;
        }
        if user.is_empty() {
            errors.insert(
                user,
                (
                    ResponseError::UnacceptableCredential,
                    "user name is empty".into(),
                ),
            );
            continue;
        }
        if counts.get(&(user.clone(), code)).copied().unwrap_or(0) > 1 {
            errors.insert(
                user,
                (
                    ResponseError::DuplicateResource,
                    "a user's mechanism appears more than once".into(),
                ),
            );
            continue;
        }
        let Some(mechanism) = mechanism(code) else {
            errors.insert(
                user,
                (
                    ResponseError::UnsupportedSaslMechanism,
                    format!("unknown SCRAM mechanism {code}"),
                ),
            );
            continue;
        };
        let outcome = match change {
            Change::Delete => match store.delete(&user, mechanism).await {
                Ok(true) => Ok(()),
                Ok(false) => Err((
                    ResponseError::ResourceNotFound,
                    "attempt to delete a user credential that does not exist".to_string(),
                )),
                Err(e) => Err(map(e)),
            },
            Change::Upsert {
                iterations,
                salt,
                salted_password,
            } => {
                let iterations = u32::try_from(iterations).unwrap_or(0);
                match ScramCredential::from_salted_password(
                    mechanism,
                    &salt,
                    &salted_password,
                    iterations,
                ) {
                    Ok(credential) => store.put(&user, mechanism, &credential).await.map_err(map),
                    Err(e) => Err(map(e)),
                }
            }
        };
        match outcome {
            Ok(()) => tracing::info!(
                user,
                mechanism = mechanism.name(),
                "scram credential changed"
            ),
            Err(e) => {
                errors.insert(user, e);
            }
        }
    }
    let mut response = AlterUserScramCredentialsResponse::default();
    response.results = users
        .into_iter()
        .map(|user| {
            let mut result = AlterUserScramCredentialsResult::default()
                .with_user(StrBytes::from_string(user.clone()));
            if let Some((code, message)) = errors.remove(&user) {
                result.error_code = code.code();
                result.error_message = Some(StrBytes::from_string(message));
            }
            result
        })
        .collect();
    response
}

/// A credential error as the user's result: the one mapping of [`error_code::auth_error`].
fn map(e: AuthError) -> (ResponseError, String) {
    (error_code::auth_error(&e), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use magnetar_broker::Error;

    #[test]
    fn a_broker_shutting_down_stays_retriable() {
        let (code, message) = map(AuthError::Broker(Error::ShuttingDown));
        assert_eq!(code, error_code::kafka_error(&Error::ShuttingDown));
        assert_ne!(code, ResponseError::UnknownServerError);
        assert!(code.is_retriable(), "{code:?}");
        assert_eq!(message, "the broker is shutting down");
    }

    #[test]
    fn broker_errors_keep_their_kafka_codes() {
        let (code, _) = map(AuthError::Broker(Error::Storage("disk".into())));
        assert_eq!(code, ResponseError::KafkaStorageError);
        let (code, _) = map(AuthError::Broker(Error::InvalidName("a b".into())));
        assert_eq!(code, ResponseError::InvalidTopicException);
    }

    #[test]
    fn credential_errors_keep_their_codes() {
        let (code, _) = map(AuthError::UnacceptableCredential("short".into()));
        assert_eq!(code, ResponseError::UnacceptableCredential);
        let (code, _) = map(AuthError::UnsupportedMechanism("MD5".into()));
        assert_eq!(code, ResponseError::UnsupportedSaslMechanism);
    }
}
