//! GET_SCHEMA and GET_OR_CREATE_SCHEMA for the schemas that need no registry: bytes (no schema)
//! and string. Any other schema gets `IncompatibleSchema` with a message saying why, until the
//! schema registry exists.

use crate::connection::{Connection, Next};
use crate::proto::base_command::Type;
use crate::proto::schema::Type as SchemaType;
use crate::proto::{
    BaseCommand, CommandGetOrCreateSchemaResponse, CommandGetSchemaResponse, Schema, ServerError,
};

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
    pub(crate) async fn on_get_schema(&mut self, command: BaseCommand) -> Next {
        let Some(request) = command.get_schema else {
            return Next::Close("GET_SCHEMA without its body".into());
        };
        // No topic has a stored schema: answer as Pulsar does for a topic without one.
        self.send(BaseCommand {
            r#type: Type::GetSchemaResponse as i32,
            get_schema_response: Some(CommandGetSchemaResponse {
                request_id: request.request_id,
                error_code: Some(ServerError::TopicNotFound as i32),
                error_message: Some(format!("topic '{}' has no schema", request.topic)),
                schema: None,
                schema_version: None,
            }),
            ..Default::default()
        })
        .await;
        Next::Continue
    }

    pub(crate) async fn on_get_or_create_schema(&mut self, command: BaseCommand) -> Next {
        let Some(request) = command.get_or_create_schema else {
            return Next::Close("GET_OR_CREATE_SCHEMA without its body".into());
        };
        let response = match check_schema(Some(&request.schema)) {
            Ok(()) => CommandGetOrCreateSchemaResponse {
                request_id: request.request_id,
                schema_version: Some(BUILTIN_SCHEMA_VERSION.to_vec()),
                ..Default::default()
            },
            Err(message) => CommandGetOrCreateSchemaResponse {
                request_id: request.request_id,
                error_code: Some(ServerError::IncompatibleSchema as i32),
                error_message: Some(message),
                schema_version: None,
            },
        };
        self.send(BaseCommand {
            r#type: Type::GetOrCreateSchemaResponse as i32,
            get_or_create_schema_response: Some(response),
            ..Default::default()
        })
        .await;
        Next::Continue
    }
}
