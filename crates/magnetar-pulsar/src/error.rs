//! Errors on the Pulsar protocol: the domain error as a Pulsar `ServerError` (one exhaustive
//! match, no catch-all arm), and [`CommandFailure`], what a command handler returns when it
//! refuses a command: the code, the message and the frame that carries them to the client, which
//! the connection's dispatcher writes (`Connection::handle`), so no handler writes its own.

use bytes::Bytes;
use magnetar_broker::Error;

use crate::frame;
use crate::proto::base_command::Type;
use crate::proto::command_lookup_topic_response::LookupType;
use crate::proto::command_partitioned_topic_metadata_response::LookupType as MetadataResult;
use crate::proto::{
    BaseCommand, CommandAckResponse, CommandError, CommandGetOrCreateSchemaResponse,
    CommandGetSchemaResponse, CommandLookupTopicResponse, CommandPartitionedTopicMetadataResponse,
    CommandSendError, ServerError,
};

pub fn server_error(err: &Error) -> ServerError {
    match err {
        Error::InvalidName(_) => ServerError::InvalidTopicName,
        Error::TenantNotFound { .. }
        | Error::NamespaceNotFound { .. }
        | Error::TopicNotFound { .. } => ServerError::TopicNotFound,
        Error::PartitionNotFound { .. } => ServerError::TopicNotFound,
        Error::TenantAlreadyExists { .. }
        | Error::NamespaceAlreadyExists { .. }
        | Error::TopicAlreadyExists { .. }
        | Error::TenantNotEmpty { .. }
        | Error::NamespaceNotEmpty { .. } => ServerError::NotAllowedError,
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
        Error::Metadata(_) | Error::ConcurrentUpdate { .. } => ServerError::MetadataError,
        Error::ShuttingDown => ServerError::ServiceNotReady,
        // Cluster mode: the client looks the topic up again and is sent to its owner.
        Error::NotOwner { .. } => ServerError::ServiceNotReady,
    }
}

/// The frame a refused command is answered with, with the ids it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// ERROR to a request.
    Request(u64),
    /// SEND_ERROR, through the send pipeline, so it keeps its place among the receipts.
    Send { producer_id: u64, sequence_id: u64 },
    /// LOOKUP_RESPONSE of type `Failed`.
    Lookup(u64),
    /// PARTITIONED_METADATA_RESPONSE of type `Failed`.
    PartitionedMetadata(u64),
    /// ACK_RESPONSE carrying the error (an ACK that asked for a response).
    Ack { consumer_id: u64, request_id: u64 },
    /// GET_SCHEMA_RESPONSE carrying the error.
    GetSchema(u64),
    /// GET_OR_CREATE_SCHEMA_RESPONSE carrying the error.
    GetOrCreateSchema(u64),
}

/// A command refused: `code` and `message` go to the client in the frame `answer` names; with
/// `close`, the connection closes after it for that reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandFailure {
    pub answer: Answer,
    pub code: ServerError,
    pub message: String,
    pub close: Option<String>,
}

impl CommandFailure {
    pub(crate) fn new(answer: Answer, code: ServerError, message: impl Into<String>) -> Self {
        Self {
            answer,
            code,
            message: message.into(),
            close: None,
        }
    }

    /// A domain error, with its `ServerError` from [`server_error`] and its text.
    pub(crate) fn domain(answer: Answer, err: &Error) -> Self {
        Self::new(answer, server_error(err), err.to_string())
    }

    /// The connection closes after the answer.
    pub(crate) fn then_close(mut self, reason: String) -> Self {
        self.close = Some(reason);
        self
    }

    /// The encoded answer.
    pub(crate) fn frame(&self) -> Bytes {
        frame::encode(&self.command())
    }

    fn command(&self) -> BaseCommand {
        let (code, message) = (self.code as i32, self.message.clone());
        match self.answer {
            Answer::Request(request_id) => BaseCommand {
                r#type: Type::Error as i32,
                error: Some(CommandError {
                    request_id,
                    error: code,
                    message,
                }),
                ..Default::default()
            },
            Answer::Send {
                producer_id,
                sequence_id,
            } => BaseCommand {
                r#type: Type::SendError as i32,
                send_error: Some(CommandSendError {
                    producer_id,
                    sequence_id,
                    error: code,
                    message,
                }),
                ..Default::default()
            },
            Answer::Lookup(request_id) => BaseCommand {
                r#type: Type::LookupResponse as i32,
                lookup_topic_response: Some(CommandLookupTopicResponse {
                    response: Some(LookupType::Failed as i32),
                    request_id,
                    error: Some(code),
                    message: Some(message),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Answer::PartitionedMetadata(request_id) => BaseCommand {
                r#type: Type::PartitionedMetadataResponse as i32,
                partition_metadata_response: Some(CommandPartitionedTopicMetadataResponse {
                    request_id,
                    response: Some(MetadataResult::Failed as i32),
                    error: Some(code),
                    message: Some(message),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Answer::Ack {
                consumer_id,
                request_id,
            } => BaseCommand {
                r#type: Type::AckResponse as i32,
                ack_response: Some(CommandAckResponse {
                    consumer_id,
                    error: Some(code),
                    message: Some(message),
                    request_id: Some(request_id),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Answer::GetSchema(request_id) => BaseCommand {
                r#type: Type::GetSchemaResponse as i32,
                get_schema_response: Some(CommandGetSchemaResponse {
                    request_id,
                    error_code: Some(code),
                    error_message: Some(message),
                    schema: None,
                    schema_version: None,
                }),
                ..Default::default()
            },
            Answer::GetOrCreateSchema(request_id) => BaseCommand {
                r#type: Type::GetOrCreateSchemaResponse as i32,
                get_or_create_schema_response: Some(CommandGetOrCreateSchemaResponse {
                    request_id,
                    error_code: Some(code),
                    error_message: Some(message),
                    schema_version: None,
                }),
                ..Default::default()
            },
        }
    }
}

/// `?` on a domain result inside a command handler: the error answered as `answer` says.
pub(crate) trait OrAnswer<T> {
    fn or_answer(self, answer: Answer) -> Result<T, CommandFailure>;
}

impl<T> OrAnswer<T> for Result<T, Error> {
    fn or_answer(self, answer: Answer) -> Result<T, CommandFailure> {
        self.map_err(|e| CommandFailure::domain(answer, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::decode;
    use bytes::BytesMut;

    fn decoded(failure: &CommandFailure) -> BaseCommand {
        let mut buf = BytesMut::from(&failure.frame()[..]);
        decode(&mut buf, 1 << 20).unwrap().unwrap().command
    }

    #[test]
    fn a_request_failure_is_an_error_frame_with_its_request_id() {
        let failure = CommandFailure::new(Answer::Request(7), ServerError::ConsumerBusy, "busy");
        let expected = frame::encode(&BaseCommand {
            r#type: Type::Error as i32,
            error: Some(CommandError {
                request_id: 7,
                error: ServerError::ConsumerBusy as i32,
                message: "busy".into(),
            }),
            ..Default::default()
        });
        assert_eq!(failure.frame(), expected);
    }

    #[test]
    fn a_send_failure_is_a_send_error_with_producer_and_sequence_ids() {
        let answer = Answer::Send {
            producer_id: 3,
            sequence_id: 9,
        };
        let command = decoded(&CommandFailure::new(
            answer,
            ServerError::ChecksumError,
            "bad",
        ));
        assert_eq!(command.r#type, Type::SendError as i32);
        let e = command.send_error.unwrap();
        assert_eq!((e.producer_id, e.sequence_id), (3, 9));
        assert_eq!(e.error, ServerError::ChecksumError as i32);
        assert_eq!(e.message, "bad");
    }

    #[test]
    fn response_failures_carry_the_code_in_their_own_frame() {
        let err = Error::TopicNotFound { topic: "t".into() };
        let lookup = decoded(&CommandFailure::domain(Answer::Lookup(1), &err));
        let r = lookup.lookup_topic_response.unwrap();
        assert_eq!(r.response, Some(LookupType::Failed as i32));
        assert_eq!(r.error, Some(ServerError::TopicNotFound as i32));
        assert_eq!(r.message, Some(err.to_string()));
        let metadata = decoded(&CommandFailure::domain(
            Answer::PartitionedMetadata(2),
            &err,
        ));
        let r = metadata.partition_metadata_response.unwrap();
        assert_eq!(
            (r.request_id, r.response),
            (2, Some(MetadataResult::Failed as i32))
        );
        let answer = Answer::Ack {
            consumer_id: 4,
            request_id: 5,
        };
        let ack = decoded(&CommandFailure::domain(answer, &err));
        let r = ack.ack_response.unwrap();
        assert_eq!((r.consumer_id, r.request_id), (4, Some(5)));
        assert_eq!(r.error, Some(ServerError::TopicNotFound as i32));
        let schema = decoded(&CommandFailure::new(
            Answer::GetOrCreateSchema(6),
            ServerError::IncompatibleSchema,
            "no",
        ));
        let r = schema.get_or_create_schema_response.unwrap();
        assert_eq!(r.error_code, Some(ServerError::IncompatibleSchema as i32));
        assert_eq!(r.schema_version, None);
        let schema = decoded(&CommandFailure::new(
            Answer::GetSchema(8),
            ServerError::TopicNotFound,
            "none",
        ));
        assert_eq!(schema.r#type, Type::GetSchemaResponse as i32);
    }
}
