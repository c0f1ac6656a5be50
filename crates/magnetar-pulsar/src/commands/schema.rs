//! Schemas on the Pulsar protocol: the `Schema` of PRODUCER and SUBSCRIBE, GET_SCHEMA and
//! GET_OR_CREATE_SCHEMA, over the schema registry (`magnetar_schema`). A topic's schema is its
//! value subject; a Pulsar schema version is the subject version minus one, sent as an 8-byte
//! big-endian long. Producers stamp that version on each message themselves (MessageMetadata
//! `schema_version`), so entries carry it as sent.
//!
//! Rules, as Pulsar's: a producer with a schema registers it (the existing version when the
//! topic has the same schema; a new version when it passes the compatibility level and the
//! namespace's `isAllowAutoUpdateSchema`); a producer without one is refused only under
//! `schemaValidationEnforced` on a topic that has a schema. A consumer with a schema registers
//! it on a topic without one, and otherwise must be compatible with the topic's versions;
//! `AUTO_CONSUME` and bytes consumers take whatever the topic has.

use magnetar_broker::{Access, TopicName};
use magnetar_schema::{
    from_pulsar_version, pulsar_version, RegisterOptions, Schema as CoreSchema, SchemaError,
    SchemaType, Subject, VersionSelector,
};

use crate::connection::{Connection, Handled, Reply};
use crate::error::{server_error, Answer, CommandFailure, OrAnswer};
use crate::proto::base_command::Type;
use crate::proto::schema::Type as WireType;
use crate::proto::{
    BaseCommand, CommandGetOrCreateSchemaResponse, CommandGetSchemaResponse, KeyValue, Schema,
    ServerError,
};
use crate::service::split_partition;

/// The registry's type of a wire schema type (`None` for `External`, which is not served).
fn core_type(wire: WireType) -> Option<SchemaType> {
    Some(match wire {
        WireType::None => SchemaType::None,
        WireType::String => SchemaType::String,
        WireType::Json => SchemaType::Json,
        WireType::Protobuf => SchemaType::Protobuf,
        WireType::Avro => SchemaType::Avro,
        WireType::Bool => SchemaType::Boolean,
        WireType::Int8 => SchemaType::Int8,
        WireType::Int16 => SchemaType::Int16,
        WireType::Int32 => SchemaType::Int32,
        WireType::Int64 => SchemaType::Int64,
        WireType::Float => SchemaType::Float,
        WireType::Double => SchemaType::Double,
        WireType::Date => SchemaType::Date,
        WireType::Time => SchemaType::Time,
        WireType::Timestamp => SchemaType::Timestamp,
        WireType::KeyValue => SchemaType::KeyValue,
        WireType::Instant => SchemaType::Instant,
        WireType::LocalDate => SchemaType::LocalDate,
        WireType::LocalTime => SchemaType::LocalTime,
        WireType::LocalDateTime => SchemaType::LocalDateTime,
        WireType::ProtobufNative => SchemaType::ProtobufNative,
        WireType::AutoConsume => SchemaType::AutoConsume,
        WireType::External => return None,
    })
}

/// The wire type of a stored schema type (the AUTO types are never stored).
fn wire_type(kind: SchemaType) -> WireType {
    match kind {
        SchemaType::None | SchemaType::AutoPublish => WireType::None,
        SchemaType::String => WireType::String,
        SchemaType::Json => WireType::Json,
        SchemaType::Protobuf => WireType::Protobuf,
        SchemaType::Avro => WireType::Avro,
        SchemaType::Boolean => WireType::Bool,
        SchemaType::Int8 => WireType::Int8,
        SchemaType::Int16 => WireType::Int16,
        SchemaType::Int32 => WireType::Int32,
        SchemaType::Int64 => WireType::Int64,
        SchemaType::Float => WireType::Float,
        SchemaType::Double => WireType::Double,
        SchemaType::Date => WireType::Date,
        SchemaType::Time => WireType::Time,
        SchemaType::Timestamp => WireType::Timestamp,
        SchemaType::KeyValue => WireType::KeyValue,
        SchemaType::Instant => WireType::Instant,
        SchemaType::LocalDate => WireType::LocalDate,
        SchemaType::LocalTime => WireType::LocalTime,
        SchemaType::LocalDateTime => WireType::LocalDateTime,
        SchemaType::ProtobufNative => WireType::ProtobufNative,
        SchemaType::AutoConsume => WireType::AutoConsume,
    }
}

/// A wire schema in the registry's terms; `Err` for a type that is not served.
pub(crate) fn to_core(schema: &Schema) -> Result<CoreSchema, String> {
    let wire = WireType::try_from(schema.r#type)
        .map_err(|_| format!("unknown schema type {}", schema.r#type))?;
    let kind = core_type(wire).ok_or_else(|| "EXTERNAL schemas are not supported".to_string())?;
    let mut core = CoreSchema::new(kind, schema.schema_data.clone());
    for p in &schema.properties {
        core.properties.insert(p.key.clone(), p.value.clone());
    }
    Ok(core)
}

fn to_wire(schema: &CoreSchema, name: &str) -> Schema {
    Schema {
        name: name.to_string(),
        schema_data: schema.data.clone(),
        r#type: wire_type(schema.kind) as i32,
        properties: schema
            .properties
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    }
}

/// The 8-byte big-endian Pulsar version of a subject version.
pub(crate) fn version_bytes(version: u32) -> Vec<u8> {
    pulsar_version(version).to_be_bytes().to_vec()
}

/// The subject version an 8-byte Pulsar version names.
fn parse_version(bytes: &[u8]) -> Option<u32> {
    let bytes: [u8; 8] = bytes.try_into().ok()?;
    from_pulsar_version(i64::from_be_bytes(bytes))
}

/// A registry refusal as a Pulsar code (one exhaustive match).
pub(crate) fn schema_failure(answer: Answer, err: SchemaError) -> CommandFailure {
    let code = match &err {
        SchemaError::Invalid(_) | SchemaError::Incompatible(_) => ServerError::IncompatibleSchema,
        SchemaError::SubjectNotFound(_)
        | SchemaError::VersionNotFound { .. }
        | SchemaError::SchemaNotFound(_) => ServerError::TopicNotFound,
        SchemaError::LimitReached(_)
        | SchemaError::InvalidRequest(_)
        | SchemaError::NotSoftDeleted(_)
        | SchemaError::Referenced(_)
        | SchemaError::ReadOnly(_) => ServerError::NotAllowedError,
        SchemaError::Broker(e) => server_error(e),
    };
    let message = match err {
        SchemaError::Incompatible(m) => m,
        other => other.to_string(),
    };
    CommandFailure::new(answer, code, message)
}

/// The topic (not the partition) a name means, without creating it.
fn base_topic(connection: &Connection, name: &str) -> Result<TopicName, magnetar_broker::Error> {
    let (base, _) = split_partition(name);
    connection.service.broker.parse_topic(base)
}

impl Connection {
    /// PRODUCER's schema on `topic`: the version to answer (`None` for a producer without
    /// one), or the refusal.
    pub(crate) async fn producer_schema(
        &self,
        topic: &TopicName,
        schema: Option<&Schema>,
        answer: Answer,
    ) -> Result<Option<Vec<u8>>, CommandFailure> {
        let store = &self.service.schemas;
        let subject = Subject::topic_value(topic.clone());
        let (_, auto_update, enforced) = store
            .namespace_policy(&topic.namespace)
            .await
            .map_err(|e| schema_failure(answer, e))?;
        let core = match schema.map(to_core).transpose() {
            Ok(core) => core,
            Err(message) => {
                return Err(CommandFailure::new(
                    answer,
                    ServerError::IncompatibleSchema,
                    message,
                ))
            }
        };
        let Some(core) = core.filter(|c| c.kind != SchemaType::None) else {
            if enforced && self.has_schema(&subject, answer).await? {
                return Err(CommandFailure::new(
                    answer,
                    ServerError::IncompatibleSchema,
                    "the topic has a schema and its namespace enforces schema validation: a producer must declare a schema",
                ));
            }
            return Ok(None);
        };
        if core.kind == SchemaType::AutoConsume {
            return Err(CommandFailure::new(
                answer,
                ServerError::IncompatibleSchema,
                "AUTO_CONSUME is a consumer's schema",
            ));
        }
        let registered = store
            .register(
                &subject,
                &core,
                RegisterOptions {
                    allow_new_version: auto_update,
                },
            )
            .await
            .map_err(|e| schema_failure(answer, e))?;
        Ok(Some(version_bytes(registered.version)))
    }

    async fn has_schema(&self, subject: &Subject, answer: Answer) -> Result<bool, CommandFailure> {
        Ok(self
            .service
            .schemas
            .versions(subject, false)
            .await
            .map_err(|e| schema_failure(answer, e))?
            .is_some())
    }

    /// SUBSCRIBE's schema on `topic`: registered when the topic has none, else checked.
    pub(crate) async fn consumer_schema(
        &self,
        topic: &TopicName,
        schema: Option<&Schema>,
        answer: Answer,
    ) -> Result<(), CommandFailure> {
        let core = match schema.map(to_core).transpose() {
            Ok(Some(core)) => core,
            Ok(None) => return Ok(()),
            Err(message) => {
                return Err(CommandFailure::new(
                    answer,
                    ServerError::IncompatibleSchema,
                    message,
                ))
            }
        };
        if matches!(core.kind, SchemaType::None | SchemaType::AutoConsume) {
            return Ok(());
        }
        let store = &self.service.schemas;
        let subject = Subject::topic_value(topic.clone());
        if !self.has_schema(&subject, answer).await? {
            let (_, auto_update, _) = store
                .namespace_policy(&topic.namespace)
                .await
                .map_err(|e| schema_failure(answer, e))?;
            store
                .register(
                    &subject,
                    &core,
                    RegisterOptions {
                        allow_new_version: auto_update,
                    },
                )
                .await
                .map_err(|e| schema_failure(answer, e))?;
            return Ok(());
        }
        let reasons = store
            .check(&subject, &core, None)
            .await
            .map_err(|e| schema_failure(answer, e))?;
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(CommandFailure::new(
                answer,
                ServerError::IncompatibleSchema,
                reasons.join("; "),
            ))
        }
    }

    pub(crate) async fn on_get_schema(&mut self, command: BaseCommand) -> Handled {
        let Some(request) = command.get_schema else {
            return Ok(Reply::Close("GET_SCHEMA without its body".into()));
        };
        let answer = Answer::GetSchema(request.request_id);
        let consume = Access::Consume { subscription: None };
        self.authorize(answer, &request.topic, &consume).await?;
        let topic = base_topic(self, &request.topic).or_answer(answer)?;
        let selector = match request.schema_version.as_deref() {
            None | Some([]) => VersionSelector::Latest,
            Some(bytes) => match parse_version(bytes) {
                Some(v) => VersionSelector::Number(v),
                None => {
                    return Err(CommandFailure::new(
                        answer,
                        ServerError::TopicNotFound,
                        "not a schema version",
                    ))
                }
            },
        };
        let subject = Subject::topic_value(topic.clone());
        let found = self
            .service
            .schemas
            .version(&subject, selector, false)
            .await
            .map_err(|e| schema_failure(answer, e))?;
        let Some(stored) = found else {
            return Err(CommandFailure::new(
                answer,
                ServerError::TopicNotFound,
                format!("Topic not found or no-schema: {}", request.topic),
            ));
        };
        Ok(Reply::frame(&BaseCommand {
            r#type: Type::GetSchemaResponse as i32,
            get_schema_response: Some(CommandGetSchemaResponse {
                request_id: request.request_id,
                schema: Some(to_wire(&stored.schema, &topic.local)),
                schema_version: Some(version_bytes(stored.version)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    pub(crate) async fn on_get_or_create_schema(&mut self, command: BaseCommand) -> Handled {
        let Some(request) = command.get_or_create_schema else {
            return Ok(Reply::Close("GET_OR_CREATE_SCHEMA without its body".into()));
        };
        let answer = Answer::GetOrCreateSchema(request.request_id);
        self.authorize(answer, &request.topic, &Access::Produce)
            .await?;
        let topic = base_topic(self, &request.topic).or_answer(answer)?;
        let version = self
            .producer_schema(&topic, Some(&request.schema), answer)
            .await?;
        Ok(Reply::frame(&BaseCommand {
            r#type: Type::GetOrCreateSchemaResponse as i32,
            get_or_create_schema_response: Some(CommandGetOrCreateSchemaResponse {
                request_id: request.request_id,
                schema_version: Some(version.unwrap_or_else(|| 0i64.to_be_bytes().to_vec())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_as_pulsar_longs() {
        assert_eq!(version_bytes(1), 0i64.to_be_bytes().to_vec());
        assert_eq!(parse_version(&version_bytes(7)), Some(7));
        assert_eq!(parse_version(&(-1i64).to_be_bytes()), None);
        assert_eq!(parse_version(&[1, 2]), None);
    }

    #[test]
    fn every_wire_type_maps_back() {
        for raw in 0..=22 {
            let Ok(wire) = WireType::try_from(raw) else {
                continue;
            };
            if let Some(kind) = core_type(wire) {
                assert_eq!(wire_type(kind), wire, "{kind}");
            }
        }
    }
}
