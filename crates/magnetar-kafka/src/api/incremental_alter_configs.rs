//! IncrementalAlterConfigs v0–v1: SET and DELETE on any topic config, APPEND and SUBTRACT on the
//! list configs (`cleanup.policy`, the throttled-replica lists). All operations of a resource are
//! validated before any is stored.

use std::collections::BTreeMap;

use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use magnetar_broker::{Access, Error};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{Context, Envelope};
use crate::{error_code, topic_config};

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        let mut result = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let outcome = match resource.resource_type {
            RESOURCE_TOPIC => {
                alter(
                    ctx,
                    &resource.resource_name,
                    &resource.configs,
                    request.validate_only,
                )
                .await
            }
            RESOURCE_BROKER => Err((
                ResponseError::InvalidRequest.code(),
                "broker configs are static in this broker".to_string(),
            )),
            other => Err((
                ResponseError::InvalidRequest.code(),
                format!("resource type {other} is not supported"),
            )),
        };
        if let Err((code, message)) = outcome {
            result.error_code = code;
            result.error_message = Some(StrBytes::from_string(message));
        }
        response.responses.push(result);
    }
    response
}

/// Applies the operations to `configs`.
pub fn apply(configs: &mut BTreeMap<String, String>, ops: &[AlterableConfig]) -> Result<(), Error> {
    for op in ops {
        let key = op.name.to_string();
        let value = op.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
        let invalid = |reason: &str| Error::InvalidConfig {
            key: key.clone(),
            reason: reason.to_string(),
        };
        match op.config_operation {
            SET => {
                topic_config::validate(&key, &value)?;
                configs.insert(key, value);
            }
            DELETE => {
                // Deleting an unknown key is refused so typos are visible.
                if topic_config::spec(&key).is_none() {
                    return Err(invalid("unknown topic config"));
                }
                configs.remove(&key);
            }
            APPEND | SUBTRACT => {
                let Some(spec) = topic_config::spec(&key) else {
                    return Err(invalid("unknown topic config"));
                };
                if spec.config_type != topic_config::config_type::LIST {
                    return Err(invalid("APPEND and SUBTRACT apply only to list configs"));
                }
                // As Kafka: the current value, else the default.
                let current = configs
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| spec.default.to_string());
                let mut items: Vec<String> = current
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if op.config_operation == APPEND {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                let joined = items.join(",");
                topic_config::validate(&key, &joined)?;
                configs.insert(key, joined);
            }
            other => return Err(invalid(&format!("unknown operation {other}"))),
        }
    }
    Ok(())
}

async fn alter(
    ctx: &Context,
    shown: &str,
    ops: &[AlterableConfig],
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let fail = |e: Error| (error_code::code(&e), error_code::message(&e));
    let name = ctx.parse_writable_topic(shown).map_err(fail)?;
    ctx.authorize_with_message(&name, &Access::Admin).await?;
    let Some(current) = ctx.broker.topic(&name).await.map_err(fail)? else {
        return Err(fail(Error::TopicNotFound {
            topic: name.to_string(),
        }));
    };
    let mut preview = current.configs.clone();
    apply(&mut preview, ops).map_err(fail)?;
    if validate_only {
        return Ok(());
    }
    ctx.broker
        .update_topic(&name, |metadata| apply(&mut metadata.configs, ops))
        .await
        .map_err(fail)?;
    tracing::info!(topic = %name, "altered topic configs");
    Ok(())
}
