//! DescribeUserScramCredentials v0 (KIP-554): the SCRAM mechanisms and iterations of users,
//! never their salts or keys. Served on every listener ([`may_manage_credentials`] decides who).

use std::collections::HashSet;

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{Context, Envelope};

/// Kafka's wire code of a SCRAM mechanism.
pub fn mechanism_code(mechanism: magnetar_auth::ScramMechanism) -> i8 {
    match mechanism {
        magnetar_auth::ScramMechanism::Sha256 => 1,
        magnetar_auth::ScramMechanism::Sha512 => 2,
    }
}

/// Whether the connection may manage SCRAM credentials. With authentication on, only a superuser
/// principal may, on whatever listener it connected (an anonymous client of a plaintext listener
/// is refused); with authentication off anyone may, as Kafka allows every operation when no
/// authorizer is configured (the credentials take effect once SASL is turned on).
pub fn may_manage_credentials(ctx: &Context) -> bool {
    if !ctx.config.authentication_enabled {
        return true;
    }
    ctx.role().is_some_and(|role| ctx.broker.is_superuser(role))
}

/// The SCRAM credentials in the metadata store (the same ones the SASL listeners check).
pub fn credential_store(ctx: &Context) -> magnetar_auth::ScramStore {
    magnetar_auth::ScramStore::new(ctx.broker.clone())
}

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let mut response = DescribeUserScramCredentialsResponse::default();
    if !may_manage_credentials(ctx) {
        // Asked about named users: each gets the refusal and the top level stays NONE
        // (librdkafka 2.16 aborts the process on a top-level error in this response). Asked
        // about every user: the top-level error, as Kafka answers.
        let code = ResponseError::ClusterAuthorizationFailed.code();
        let message =
            StrBytes::from_static_str("describing SCRAM credentials needs a superuser role");
        if request.users.as_ref().is_none_or(|u| u.is_empty()) {
            response.error_code = code;
            response.error_message = Some(message);
            return response;
        }
        response.results = request
            .users
            .iter()
            .flatten()
            .map(|u| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(u.name.clone())
                    .with_error_code(code)
                    .with_error_message(Some(message.clone()))
            })
            .collect();
        return response;
    }
    let requested: Option<Vec<String>> = request
        .users
        .filter(|users| !users.is_empty())
        .map(|users| users.iter().map(|u| u.name.to_string()).collect());
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = requested
        .iter()
        .flatten()
        .filter(|u| !seen.insert(u.as_str()))
        .cloned()
        .collect();
    let unique: Option<Vec<String>> = requested.as_ref().map(|users| {
        let mut seen = HashSet::new();
        users
            .iter()
            .filter(|u| !duplicates.contains(*u) && seen.insert(u.as_str()))
            .cloned()
            .collect()
    });
    let described = match credential_store(ctx).describe(unique.as_deref()).await {
        Ok(described) => described,
        Err(e) => {
            response.error_code = crate::error_code::auth_error(&e).code();
            response.error_message = Some(StrBytes::from_string(e.to_string()));
            return response;
        }
    };
    for user in duplicates {
        response.results.push(
            DescribeUserScramCredentialsResult::default()
                .with_user(StrBytes::from_string(user))
                .with_error_code(ResponseError::DuplicateResource.code())
                .with_error_message(Some(StrBytes::from_static_str("user named more than once"))),
        );
    }
    for (user, mechanisms) in described {
        let mut result =
            DescribeUserScramCredentialsResult::default().with_user(StrBytes::from_string(user));
        if mechanisms.is_empty() {
            result.error_code = ResponseError::ResourceNotFound.code();
            result.error_message = Some(StrBytes::from_static_str(
                "attempt to describe a user credential that does not exist",
            ));
        }
        result.credential_infos = mechanisms
            .into_iter()
            .map(|(mechanism, iterations)| {
                CredentialInfo::default()
                    .with_mechanism(mechanism_code(mechanism))
                    .with_iterations(i32::try_from(iterations).unwrap_or(i32::MAX))
            })
            .collect();
        response.results.push(result);
    }
    response
}
