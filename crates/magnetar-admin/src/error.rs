//! The broker's domain error as HTTP: Pulsar's status codes and a `{"reason": ...}` body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use magnetar_broker::Error;
use magnetar_coordinator::CoordinatorError;

/// An admin API error: a status and a reason shown to the user.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: String,
    /// Cluster mode: the node id of the broker that serves what was asked (a `307` is sent
    /// there, see [`crate::cluster::redirect_to_owner`]).
    pub owner: Option<u32>,
}

/// The response extension carrying [`ApiError::owner`] to the redirect layer.
#[derive(Debug, Clone, Copy)]
pub struct Owner(pub u32);

impl ApiError {
    /// Names the broker to redirect to.
    pub fn with_owner(mut self, node: u32) -> Self {
        self.owner = Some(node);
        self
    }
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason: reason.into(),
            owner: None,
        }
    }
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            reason: reason.into(),
            owner: None,
        }
    }
    pub fn conflict(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            reason: reason.into(),
            owner: None,
        }
    }
}

/// The one mapping from the domain error to HTTP (exhaustive: a new variant must be placed here).
pub fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::InvalidName(_) => StatusCode::PRECONDITION_FAILED,
        Error::TenantNotFound { .. }
        | Error::NamespaceNotFound { .. }
        | Error::TopicNotFound { .. }
        | Error::PartitionNotFound { .. } => StatusCode::NOT_FOUND,
        Error::TenantAlreadyExists { .. }
        | Error::NamespaceAlreadyExists { .. }
        | Error::TopicAlreadyExists { .. }
        | Error::TenantNotEmpty { .. }
        | Error::NamespaceNotEmpty { .. } => StatusCode::CONFLICT,
        // Pulsar answers a concurrent modification with 409: the request may be sent again.
        Error::ConcurrentUpdate { .. } => StatusCode::CONFLICT,
        Error::InvalidPartitions(_)
        | Error::InvalidConfig { .. }
        | Error::InvalidRequest(_)
        | Error::IndexOutOfRange { .. }
        | Error::MessageTooLarge { .. } => StatusCode::BAD_REQUEST,
        Error::OutOfOrderSequence { .. } | Error::InvalidProducerEpoch { .. } => {
            StatusCode::CONFLICT
        }
        Error::CorruptData(_) | Error::Storage(_) | Error::Metadata(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        Error::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        // Cluster mode: another broker serves the topic: 307 to it (Pulsar's answer), or 503
        // while nobody does.
        Error::NotOwner { owner: Some(_), .. } => StatusCode::TEMPORARY_REDIRECT,
        Error::NotOwner { owner: None, .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let status = status_of(&error);
        if status.is_server_error() {
            tracing::warn!(error = %error, "admin request failed");
        }
        let owner = if let Error::NotOwner { owner, .. } = &error {
            *owner
        } else {
            None
        };
        Self {
            status,
            reason: error.to_string(),
            owner,
        }
    }
}

/// The group coordinator's errors as HTTP (exhaustive, like [`status_of`]).
pub fn coordinator_status_of(error: &CoordinatorError) -> StatusCode {
    match error {
        CoordinatorError::CoordinatorNotAvailable
        | CoordinatorError::NotCoordinator
        | CoordinatorError::CoordinatorLoadInProgress
        | CoordinatorError::CoordinatorOverloaded => StatusCode::SERVICE_UNAVAILABLE,
        CoordinatorError::InvalidGroupId
        | CoordinatorError::InvalidSessionTimeout
        | CoordinatorError::OffsetMetadataTooLarge
        | CoordinatorError::InconsistentGroupProtocol
        | CoordinatorError::MemberIdRequired => StatusCode::BAD_REQUEST,
        CoordinatorError::GroupIdNotFound | CoordinatorError::UnknownTopicOrPartition => {
            StatusCode::NOT_FOUND
        }
        CoordinatorError::UnknownMemberId
        | CoordinatorError::IllegalGeneration
        | CoordinatorError::RebalanceInProgress
        | CoordinatorError::FencedInstanceId
        | CoordinatorError::GroupMaxSizeReached
        | CoordinatorError::NonEmptyGroup
        | CoordinatorError::GroupSubscribedToTopic
        | CoordinatorError::UnstableOffsetCommit
        | CoordinatorError::ProducerFenced
        | CoordinatorError::InvalidProducerIdMapping
        | CoordinatorError::InvalidTxnState
        | CoordinatorError::ConcurrentTransactions => StatusCode::CONFLICT,
        CoordinatorError::InvalidTransactionTimeout
        | CoordinatorError::InvalidTransactionalId
        | CoordinatorError::TransactionLimitExceeded => StatusCode::BAD_REQUEST,
        CoordinatorError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<CoordinatorError> for ApiError {
    fn from(error: CoordinatorError) -> Self {
        let status = coordinator_status_of(&error);
        if status.is_server_error() {
            tracing::warn!(error = %error, "admin group request failed");
        }
        Self {
            status,
            reason: error.to_string(),
            owner: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "reason": self.reason })),
        )
            .into_response();
        if let Some(node) = self.owner {
            response.extensions_mut().insert(Owner(node));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_concurrent_update_is_a_conflict_not_a_server_error() {
        // It was `Error::Metadata` text, answered 500; Pulsar answers 409 (retry).
        let err = Error::ConcurrentUpdate {
            what: "namespace 't/ns'".into(),
        };
        assert_eq!(status_of(&err), StatusCode::CONFLICT);
        let api = ApiError::from(err);
        assert_eq!(api.reason, "namespace 't/ns' changed concurrently; retry");
    }

    #[test]
    fn not_found_and_not_empty_keep_their_statuses() {
        let missing = Error::NamespaceNotFound {
            namespace: "t/ns".into(),
        };
        assert_eq!(status_of(&missing), StatusCode::NOT_FOUND);
        let missing = Error::TenantNotFound { tenant: "t".into() };
        assert_eq!(status_of(&missing), StatusCode::NOT_FOUND);
        let busy = Error::TenantNotEmpty { tenant: "t".into() };
        assert_eq!(status_of(&busy), StatusCode::CONFLICT);
        let busy = Error::NamespaceNotEmpty {
            namespace: "t/ns".into(),
        };
        assert_eq!(status_of(&busy), StatusCode::CONFLICT);
    }
}
