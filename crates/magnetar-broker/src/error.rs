//! The one domain error. Each front end maps it to its wire codes in one exhaustive `match`.

use magnetar_metadata::MetadataError;
use magnetar_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid name: {0}")]
    InvalidName(String),
    #[error("tenant '{0}' does not exist")]
    TenantNotFound(String),
    #[error("tenant '{0}' already exists")]
    TenantAlreadyExists(String),
    #[error("namespace '{0}' does not exist")]
    NamespaceNotFound(String),
    #[error("namespace '{0}' already exists")]
    NamespaceAlreadyExists(String),
    #[error("{0} is not empty")]
    NotEmpty(String),
    #[error("topic '{0}' does not exist")]
    TopicNotFound(String),
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
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
    #[error("the broker is shutting down")]
    ShuttingDown,
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
            other => Error::Storage(other.to_string()),
        }
    }
}

impl From<MetadataError> for Error {
    fn from(err: MetadataError) -> Self {
        match err {
            MetadataError::Closed => Error::ShuttingDown,
            other => Error::Metadata(other.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
