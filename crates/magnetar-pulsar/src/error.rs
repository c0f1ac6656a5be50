//! The domain error as a Pulsar `ServerError`: one exhaustive match, no catch-all arm.

use magnetar_broker::Error;

use crate::proto::ServerError;

pub fn server_error(err: &Error) -> ServerError {
    match err {
        Error::InvalidName(_) => ServerError::InvalidTopicName,
        Error::TenantNotFound(_) | Error::NamespaceNotFound(_) | Error::TopicNotFound { .. } => {
            ServerError::TopicNotFound
        }
        Error::PartitionNotFound { .. } => ServerError::TopicNotFound,
        Error::TenantAlreadyExists(_)
        | Error::NamespaceAlreadyExists(_)
        | Error::TopicAlreadyExists { .. }
        | Error::NotEmpty(_) => ServerError::NotAllowedError,
        Error::InvalidPartitions(_) | Error::InvalidConfig { .. } | Error::InvalidRequest(_) => {
            ServerError::NotAllowedError
        }
        Error::IndexOutOfRange { .. } => ServerError::UnknownError,
        Error::MessageTooLarge { .. } => ServerError::NotAllowedError,
        Error::CorruptData(_) => ServerError::PersistenceError,
        Error::OutOfOrderSequence { .. } | Error::InvalidProducerEpoch { .. } => {
            ServerError::ProducerFenced
        }
        Error::Storage(_) => ServerError::PersistenceError,
        Error::Metadata(_) => ServerError::MetadataError,
        Error::ShuttingDown => ServerError::ServiceNotReady,
    }
}
