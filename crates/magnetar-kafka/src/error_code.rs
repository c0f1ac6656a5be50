//! The one mapping from the domain [`Error`] to Kafka error codes, and those of the errors that
//! wrap it (the group coordinator's, the credential store's).

use kafka_protocol::ResponseError;
use magnetar_auth::AuthError;
use magnetar_broker::Error;

/// Maps a domain error to the Kafka error a client understands. Exhaustive on purpose: a new
/// domain error must be given a Kafka code here before the crate compiles.
pub fn kafka_error(err: &Error) -> ResponseError {
    match err {
        Error::InvalidName(_) => ResponseError::InvalidTopicException,
        // A topic in a tenant or namespace that does not exist is, to a Kafka client, a topic
        // that does not exist.
        Error::TenantNotFound { .. } => ResponseError::UnknownTopicOrPartition,
        Error::NamespaceNotFound { .. } => ResponseError::UnknownTopicOrPartition,
        Error::TenantAlreadyExists { .. } => ResponseError::InvalidRequest,
        Error::NamespaceAlreadyExists { .. } => ResponseError::InvalidRequest,
        Error::TenantNotEmpty { .. } | Error::NamespaceNotEmpty { .. } => {
            ResponseError::InvalidRequest
        }
        Error::TopicNotFound { .. } => ResponseError::UnknownTopicOrPartition,
        Error::TopicAlreadyExists { .. } => ResponseError::TopicAlreadyExists,
        Error::PartitionNotFound { .. } => ResponseError::UnknownTopicOrPartition,
        Error::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        Error::InvalidConfig { .. } => ResponseError::InvalidConfig,
        Error::IndexOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        Error::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        Error::CorruptData(_) => ResponseError::CorruptMessage,
        Error::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        Error::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        Error::InvalidRequest(_) => ResponseError::InvalidRequest,
        Error::Storage(_) => ResponseError::KafkaStorageError,
        Error::Metadata(_) => ResponseError::UnknownServerError,
        // A record kept changing under the update (the retries ran out): Kafka has no
        // "conflict, retry" code for the admin requests that reach it, as before.
        Error::ConcurrentUpdate { .. } => ResponseError::UnknownServerError,
        // Retriable: the client refreshes metadata and tries again (here or, later, elsewhere).
        Error::ShuttingDown => ResponseError::NotLeaderOrFollower,
        // Cluster mode: another broker leads the partition; the client refreshes its metadata,
        // which names the owner.
        Error::NotOwner { .. } => ResponseError::NotLeaderOrFollower,
    }
}

/// The wire code of a domain error.
pub fn code(err: &Error) -> i16 {
    kafka_error(err).code()
}

/// The message put into responses that carry one: the domain error's text.
pub fn message(err: &Error) -> String {
    err.to_string()
}

/// Maps an authentication or credential store error to its Kafka error: the one mapping for
/// SaslAuthenticate (`sasl.rs`) and the SCRAM credential APIs. Exhaustive, like [`kafka_error`].
///
/// Only what the client got wrong (a bad password or token, an expired token, a malformed
/// message) is SASL_AUTHENTICATION_FAILED, which clients take as final: the Java client marks the
/// connection AUTHENTICATION_FAILED and throws `SaslAuthenticationException` to the application,
/// librdkafka turns it into `ERR__AUTHENTICATION`. The broker's own failures keep the broker's
/// one mapping (the credential store unreachable, the broker shutting down: a retriable code),
/// which both clients take as a failed connection and retry (Kafka itself answers nothing and
/// closes the connection for a retriable failure; a code tells the client why).
pub fn auth_error(err: &AuthError) -> ResponseError {
    match err {
        AuthError::InvalidToken(_)
        | AuthError::TokenExpired
        | AuthError::Malformed { .. }
        | AuthError::BadCredentials => ResponseError::SaslAuthenticationFailed,
        AuthError::UnacceptableCredential(_) => ResponseError::UnacceptableCredential,
        AuthError::UnsupportedMechanism(_) => ResponseError::UnsupportedSaslMechanism,
        AuthError::IllegalState => ResponseError::IllegalSaslState,
        AuthError::Broker(broker) => kafka_error(broker),
        // The broker's key configuration (checked when the authenticator is built): not the
        // client's fault, and nothing a retry fixes.
        AuthError::InvalidKey(_) => ResponseError::UnknownServerError,
    }
}

/// Maps a group coordinator error to its Kafka error. Exhaustive, like [`kafka_error`].
pub fn coordinator_error(err: magnetar_coordinator::CoordinatorError) -> ResponseError {
    use magnetar_coordinator::CoordinatorError as E;
    match err {
        E::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        E::NotCoordinator => ResponseError::NotCoordinator,
        E::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        E::InvalidGroupId => ResponseError::InvalidGroupId,
        E::UnknownMemberId => ResponseError::UnknownMemberId,
        E::MemberIdRequired => ResponseError::MemberIdRequired,
        E::IllegalGeneration => ResponseError::IllegalGeneration,
        E::RebalanceInProgress => ResponseError::RebalanceInProgress,
        E::FencedInstanceId => ResponseError::FencedInstanceId,
        E::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        E::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        E::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        E::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        E::NonEmptyGroup => ResponseError::NonEmptyGroup,
        E::GroupIdNotFound => ResponseError::GroupIdNotFound,
        E::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        E::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        E::UnstableOffsetCommit => ResponseError::UnstableOffsetCommit,
        E::ProducerFenced => ResponseError::ProducerFenced,
        E::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        E::InvalidTxnState => ResponseError::InvalidTxnState,
        E::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        E::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
        E::InvalidTransactionalId => ResponseError::InvalidRequest,
        E::TransactionLimitExceeded => ResponseError::PolicyViolation,
        // Retriable: the client backs off and finds the coordinator again.
        E::CoordinatorOverloaded => ResponseError::CoordinatorNotAvailable,
        E::Internal => ResponseError::UnknownServerError,
    }
}

/// The wire code of an optional coordinator error (0 for none).
pub fn coordinator_code(err: Option<magnetar_coordinator::CoordinatorError>) -> i16 {
    err.map_or(0, |e| coordinator_error(e).code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_clients_own_failures_are_authentication_failures() {
        for e in [
            AuthError::BadCredentials,
            AuthError::TokenExpired,
            AuthError::InvalidToken("bad signature".into()),
            AuthError::Malformed {
                mechanism: "PLAIN",
                reason: "no user".into(),
            },
        ] {
            assert_eq!(
                auth_error(&e),
                ResponseError::SaslAuthenticationFailed,
                "{e}"
            );
        }
        // The broker shutting down or its store failing: retriable, never an authentication
        // failure (the client would give up).
        let shutting_down = AuthError::Broker(Error::ShuttingDown);
        assert_eq!(
            auth_error(&shutting_down),
            ResponseError::NotLeaderOrFollower
        );
        assert!(auth_error(&shutting_down).is_retriable());
        let store = AuthError::Broker(Error::Metadata("store unreachable".into()));
        assert_eq!(auth_error(&store), ResponseError::UnknownServerError);
        assert_eq!(
            auth_error(&AuthError::IllegalState),
            ResponseError::IllegalSaslState
        );
        assert_eq!(
            auth_error(&AuthError::UnsupportedMechanism("GSSAPI".into())),
            ResponseError::UnsupportedSaslMechanism
        );
    }

    #[test]
    fn common_errors_map_to_the_codes_clients_expect() {
        assert_eq!(code(&Error::TopicNotFound { topic: "t".into() }), 3);
        assert_eq!(code(&Error::InvalidName("x y".into())), 17);
        assert_eq!(code(&Error::TopicAlreadyExists { topic: "t".into() }), 36);
        assert_eq!(
            code(&Error::IndexOutOfRange {
                requested: 9,
                start: 0,
                end: 1
            }),
            1
        );
        assert_eq!(code(&Error::MessageTooLarge { size: 2, max: 1 }), 10);
        assert_eq!(code(&Error::CorruptData("crc".into())), 2);
        assert_eq!(
            code(&Error::InvalidConfig {
                key: "k".into(),
                reason: "r".into()
            }),
            40
        );
        assert_eq!(
            code(&Error::OutOfOrderSequence {
                producer_id: 1,
                expected: 0,
                received: 3
            }),
            45
        );
    }
}
