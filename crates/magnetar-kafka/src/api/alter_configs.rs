//! AlterConfigs v0–v2: replaces a topic's whole config set (Kafka's non-incremental semantics).
//! Broker configs are static and cannot be altered.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use magnetar_broker::{Access, Error};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{Context, Envelope};
use crate::{error_code, topic_config};

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        let mut result = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let configs: BTreeMap<String, String> = resource
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let outcome = match resource.resource_type {
            RESOURCE_TOPIC => {
                replace(ctx, &resource.resource_name, configs, request.validate_only).await
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

async fn replace(
    ctx: &Context,
    shown: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let fail = |e: Error| (error_code::code(&e), error_code::message(&e));
    let name = ctx.parse_writable_topic(shown).map_err(fail)?;
    ctx.authorize_with_message(&name, &Access::Admin).await?;
    topic_config::validate_all(&configs).map_err(fail)?;
    if validate_only {
        return ctx
            .broker
            .topic(&name)
            .await
            .map_err(fail)?
            .map(|_| ())
            .ok_or_else(|| {
                fail(Error::TopicNotFound {
                    topic: name.to_string(),
                })
            });
    }
    ctx.broker
        .update_topic(&name, |metadata| {
            metadata.configs = configs.clone();
            Ok(())
        })
        .await
        .map_err(fail)?;
    tracing::info!(topic = %name, "replaced topic configs");
    Ok(())
}
