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
        Error::TenantNotFound(_) => ResponseError::UnknownTopicOrPartition,
        Error::NamespaceNotFound(_) => ResponseError::UnknownTopicOrPartition,
        Error::TenantAlreadyExists(_) => ResponseError::InvalidRequest,
        Error::NamespaceAlreadyExists(_) => ResponseError::InvalidRequest,
        Error::NotEmpty(_) => ResponseError::InvalidRequest,
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

/// Maps a credential store or authentication error to its Kafka error (SCRAM credential APIs).
/// Exhaustive, like [`kafka_error`]; the broker's errors keep their one mapping, so a retriable
/// one (the broker shutting down) stays retriable for the client.
pub fn auth_error(err: &AuthError) -> ResponseError {
    match err {
        AuthError::UnacceptableCredential(_) => ResponseError::UnacceptableCredential,
        AuthError::UnsupportedMechanism(_) => ResponseError::UnsupportedSaslMechanism,
        AuthError::Broker(broker) => kafka_error(broker),
        // Errors of an authentication exchange or of token checks: the credential store does
        // not produce them, so they are unexpected where this mapping is used.
        AuthError::InvalidKey(_)
        | AuthError::InvalidToken(_)
        | AuthError::TokenExpired
        | AuthError::Malformed { .. }
        | AuthError::BadCredentials
        | AuthError::IllegalState => ResponseError::UnknownServerError,
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
