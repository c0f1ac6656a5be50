//! The one domain error. Each front end maps it to its wire codes in one exhaustive `match`; the
//! conversions from the storage and metadata errors below are exhaustive too (no catch-all arm),
//! so a new lower-layer error must be given a domain meaning before the crate compiles.

use magnetar_metadata::MetadataError;
use magnetar_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid name: {0}")]
    InvalidName(String),
    #[error("tenant '{tenant}' does not exist")]
    TenantNotFound { tenant: String },
    #[error("tenant '{tenant}' already exists")]
    TenantAlreadyExists { tenant: String },
    /// Deleting a tenant that still has namespaces.
    #[error("tenant '{tenant}' is not empty")]
    TenantNotEmpty { tenant: String },
    #[error("namespace '{namespace}' does not exist")]
    NamespaceNotFound { namespace: String },
    #[error("namespace '{namespace}' already exists")]
    NamespaceAlreadyExists { namespace: String },
    /// Deleting a namespace that still has topics.
    #[error("namespace '{namespace}' is not empty")]
    NamespaceNotEmpty { namespace: String },
    #[error("topic '{topic}' does not exist")]
    TopicNotFound { topic: String },
    #[error("topic '{topic}' already exists")]
    TopicAlreadyExists { topic: String },
    #[error("partition {partition} of topic '{topic}' does not exist")]
    PartitionNotFound { topic: String, partition: u32 },
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    #[error("invalid config '{key}': {reason}")]
    InvalidConfig { key: String, reason: String },
    #[error("index {requested} is outside the log [{start}, {end}]")]
    IndexOutOfRange {
        requested: u64,
        start: u64,
        end: u64,
    },
    #[error("entry of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge { size: u64, max: u64 },
    #[error("corrupt data: {0}")]
    CorruptData(String),
    #[error(
        "out of order sequence for producer {producer_id}: expected {expected}, got {received}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        received: i32,
    },
    #[error("producer {producer_id} epoch {received} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        current: i16,
        received: i16,
    },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("metadata: {0}")]
    Metadata(String),
    /// A compare-and-set update of a record (`what`: "tenant 't'", "namespace 't/ns'", "topic
    /// '...'", "the producer id block") kept losing to concurrent writers; the caller may retry.
    #[error("{what} changed concurrently; retry")]
    ConcurrentUpdate { what: String },
    #[error("the broker is shutting down")]
    ShuttingDown,
    /// Cluster mode: another broker serves this partition (`owner`: its node id, when known), or
    /// this broker lost it (its ledger was fenced by the new owner).
    #[error("'{topic}' is served by {}", owner.map_or("another broker (owner not known yet)".to_string(), |n| format!("broker {n}")))]
    NotOwner { topic: String, owner: Option<u32> },
}

impl From<StorageError> for Error {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::IndexOutOfRange {
                requested,
                start,
                end,
            } => Error::IndexOutOfRange {
                requested,
                start,
                end,
            },
            StorageError::EntryTooLarge { size, max } => Error::MessageTooLarge { size, max },
            StorageError::Corrupt { .. } => Error::CorruptData(err.to_string()),
            StorageError::Closed => Error::ShuttingDown,
            // Another broker took the ledger over: this one is no longer its owner.
            StorageError::Fenced { ledger, .. } => Error::NotOwner {
                topic: ledger,
                owner: None,
            },
            // The broker's own storage failing, or a ledger that must be reopened: the client
            // may retry (Kafka's KAFKA_STORAGE_ERROR is retriable), the operator reads the text.
            StorageError::Io { .. }
            | StorageError::CorruptMetadata { .. }
            | StorageError::Failed { .. }
            | StorageError::TaskFailed { .. }
            | StorageError::NoRuntime
            // Back-pressure of a ledger's append queue: retriable as a storage error.
            | StorageError::QueueFull { .. }
            // The shared WAL: a gap, an object store or metadata store that failed or
            // did not answer (retriable after a reopen), a gap that keeps a ledger closed.
            | StorageError::Gap { .. }
            | StorageError::ObjectStore { .. }
            | StorageError::Metadata { .. }
            // Entries, cursors and ledger settings are the broker's to build and name, so a
            // refusal of one is a server-side failure rather than a bad client request.
            | StorageError::InvalidEntry { .. }
            | StorageError::CursorNotFound { .. }
            | StorageError::CursorInvalid { .. }
            | StorageError::InvalidConfig { .. }
            | StorageError::Compaction { .. } => Error::Storage(err.to_string()),
        }
    }
}

impl From<MetadataError> for Error {
    fn from(err: MetadataError) -> Self {
        match err {
            MetadataError::Closed => Error::ShuttingDown,
            // Callers that expect a key to be missing or a compare-and-set to lose (topic
            // creation, policy updates) match the store's result before converting it; what
            // reaches this conversion is unexpected, and so is every engine or record failure.
            MetadataError::NotFound { .. }
            | MetadataError::BadVersion { .. }
            | MetadataError::InvalidKey { .. }
            | MetadataError::ValueTooLarge { .. }
            | MetadataError::UnsupportedFormat { .. }
            | MetadataError::CorruptRecord { .. }
            | MetadataError::TxnTooLarge { .. }
            | MetadataError::TxnSizeTooLarge { .. }
            | MetadataError::SessionExpired { .. }
            | MetadataError::InvalidTtl { .. }
            | MetadataError::Storage(_) => Error::Metadata(err.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_lower_layers_are_shutting_down() {
        assert!(matches!(
            Error::from(StorageError::Closed),
            Error::ShuttingDown
        ));
        assert!(matches!(
            Error::from(MetadataError::Closed),
            Error::ShuttingDown
        ));
    }

    #[test]
    fn storage_errors_keep_their_domain_meaning_and_text() {
        assert!(matches!(
            Error::from(StorageError::IndexOutOfRange {
                requested: 9,
                start: 0,
                end: 3
            }),
            Error::IndexOutOfRange {
                requested: 9,
                start: 0,
                end: 3
            }
        ));
        assert!(matches!(
            Error::from(StorageError::EntryTooLarge { size: 2, max: 1 }),
            Error::MessageTooLarge { size: 2, max: 1 }
        ));
        let queue_full = StorageError::QueueFull {
            queued_bytes: 10,
            max_bytes: 5,
        };
        let text = queue_full.to_string();
        assert!(matches!(Error::from(queue_full), Error::Storage(t) if t == text));
    }

    #[test]
    fn unexpected_metadata_results_are_metadata_errors_with_the_key() {
        let err = Error::from(MetadataError::BadVersion {
            key: "/admin/policies/t".into(),
            expected: Some(1),
            actual: Some(2),
        });
        assert!(matches!(&err, Error::Metadata(t) if t.contains("/admin/policies/t")));
    }

    #[test]
    fn name_errors_carry_the_name_as_a_field() {
        let err = Error::NamespaceNotFound {
            namespace: "t/ns".into(),
        };
        assert_eq!(err.to_string(), "namespace 't/ns' does not exist");
        let err = Error::TenantNotEmpty { tenant: "t".into() };
        assert_eq!(err.to_string(), "tenant 't' is not empty");
        let err = Error::ConcurrentUpdate {
            what: "namespace 't/ns'".into(),
        };
        assert_eq!(
            err.to_string(),
            "namespace 't/ns' changed concurrently; retry"
        );
    }

    #[test]
    fn topic_errors_name_the_topic() {
        let err = Error::TopicNotFound {
            topic: "persistent://public/default/t".into(),
        };
        assert_eq!(
            err.to_string(),
            "topic 'persistent://public/default/t' does not exist"
        );
    }
}
