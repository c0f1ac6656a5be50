//! GET_SCHEMA and GET_OR_CREATE_SCHEMA for the schemas that need no registry: bytes (no schema)
//! and string. Any other schema gets `IncompatibleSchema` with a message saying why, until the
//! schema registry exists.

use crate::connection::{Connection, Handled, Reply};
use crate::error::{Answer, CommandFailure};
use crate::proto::base_command::Type;
use crate::proto::schema::Type as SchemaType;
use crate::proto::{BaseCommand, CommandGetOrCreateSchemaResponse, Schema, ServerError};

/// The version reported for the built-in schemas (Pulsar versions are big-endian longs).
pub const BUILTIN_SCHEMA_VERSION: [u8; 8] = 0i64.to_be_bytes();

/// `Ok` for bytes and string schemas, else the error message for the client.
pub fn check_schema(schema: Option<&Schema>) -> Result<(), String> {
    match schema.map(|s| s.r#type()) {
        None | Some(SchemaType::None) | Some(SchemaType::String) => Ok(()),
        Some(other) => Err(format!(
            "schema type {} is not supported yet (only bytes and string schemas are, until the schema registry exists)",
            other.as_str_name()
        )),
    }
}

impl Connection {
    pub(crate) fn on_get_schema(&mut self, command: BaseCommand) -> Handled {
        let Some(request) = command.get_schema else {
            return Ok(Reply::Close("GET_SCHEMA without its body".into()));
        };
        // No topic has a stored schema: answer as Pulsar does for a topic without one.
        Err(CommandFailure::new(
            Answer::GetSchema(request.request_id),
            ServerError::TopicNotFound,
            format!("topic '{}' has no schema", request.topic),
        ))
    }

    pub(crate) fn on_get_or_create_schema(&mut self, command: BaseCommand) -> Handled {
        let Some(request) = command.get_or_create_schema else {
            return Ok(Reply::Close("GET_OR_CREATE_SCHEMA without its body".into()));
        };
        check_schema(Some(&request.schema)).map_err(|message| {
            CommandFailure::new(
                Answer::GetOrCreateSchema(request.request_id),
                ServerError::IncompatibleSchema,
                message,
            )
        })?;
        Ok(Reply::frame(&BaseCommand {
            r#type: Type::GetOrCreateSchemaResponse as i32,
            get_or_create_schema_response: Some(CommandGetOrCreateSchemaResponse {
                request_id: request.request_id,
                schema_version: Some(BUILTIN_SCHEMA_VERSION.to_vec()),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}
