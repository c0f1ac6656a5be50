//! The coordinator's error: Kafka's group coordinator errors in Kafka's own terms, without wire
//! codes. The Kafka front end maps each variant to its error code in one exhaustive `match`.

/// Why a group or offset operation failed. Variants carry no data, so responses can hold them
/// per member or per partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum CoordinatorError {
    /// The coordinator is shutting down or the group is being removed; find it again.
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    /// The group's offsets partition is not served here (it was unloaded after a write error).
    #[error("this broker is not the coordinator of the group")]
    NotCoordinator,
    /// The group's offsets partition is still being loaded.
    #[error("the coordinator is loading the group's offsets partition")]
    CoordinatorLoadInProgress,
    #[error("the group id is not valid")]
    InvalidGroupId,
    #[error("the member id is not known in the group")]
    UnknownMemberId,
    /// KIP-394: the first join of a member returns the id it must rejoin with.
    #[error("a member id is required to join the group")]
    MemberIdRequired,
    #[error("the generation id is not the group's current generation")]
    IllegalGeneration,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    /// KIP-345: another member now holds this `group.instance.id`.
    #[error("the static member was fenced by a newer member with the same instance id")]
    FencedInstanceId,
    #[error("the group has reached its maximum size")]
    GroupMaxSizeReached,
    #[error("the session timeout is outside the allowed range")]
    InvalidSessionTimeout,
    /// The protocol type differs from the group's, or no protocol is supported by all members.
    #[error("the member's protocols are not compatible with the group")]
    InconsistentGroupProtocol,
    #[error("the offset metadata is too large")]
    OffsetMetadataTooLarge,
    #[error("the group is not empty")]
    NonEmptyGroup,
    #[error("the group does not exist")]
    GroupIdNotFound,
    /// The front end raises this when a committed topic or partition does not exist.
    #[error("the topic or partition does not exist")]
    UnknownTopicOrPartition,
    /// OffsetDelete on a topic the active group still consumes.
    #[error("the group is subscribed to the topic")]
    GroupSubscribedToTopic,
    /// A transaction's offsets for the requested partitions are not committed or aborted yet.
    #[error("there are unstable offsets for the requested partitions")]
    UnstableOffsetCommit,
    /// A newer producer with the same transactional id exists (its epoch is higher).
    #[error("the producer was fenced by a newer producer with the same transactional id")]
    ProducerFenced,
    /// The producer id is not the one the transactional id maps to.
    #[error("the producer id does not match the transactional id")]
    InvalidProducerIdMapping,
    /// The request does not fit the transaction's state (e.g. EndTxn without a transaction).
    #[error("the request is not valid in the transaction's current state")]
    InvalidTxnState,
    /// The transaction is completing; the client retries.
    #[error("a transaction with this transactional id is still completing")]
    ConcurrentTransactions,
    #[error("the transaction timeout is larger than transaction.max.timeout.ms")]
    InvalidTransactionTimeout,
    #[error("the transactional id is not valid")]
    InvalidTransactionalId,
    /// Too many partitions in one transaction, or another bounded input.
    #[error("the request exceeds a limit of the transaction coordinator")]
    TransactionLimitExceeded,
    /// The write queue of the offsets partition is full; the client retries.
    #[error("the coordinator is overloaded")]
    CoordinatorOverloaded,
    /// A stored record could not be decoded, or an internal invariant failed.
    #[error("internal coordinator error")]
    Internal,
}
