//! CreatePartitions v0–v3: raises a partitioned topic's partition count. Assignments are ignored
//! (this broker leads every partition).

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use magnetar_broker::{Access, Error};

use super::Context;
use crate::error_code;

pub async fn handle(ctx: &Context, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        if let Ok(name) = ctx.parse_topic(&topic.name.0) {
            if let Err((code, message)) = ctx.authorize_with_message(&name, &Access::Admin).await {
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
                response.results.push(result);
                continue;
            }
        }
        let outcome = async {
            let name = ctx.parse_topic(&topic.name.0)?;
            let count = u32::try_from(topic.count).map_err(|_| {
                Error::InvalidPartitions(format!("{} partitions is invalid", topic.count))
            })?;
            if request.validate_only {
                let Some(metadata) = ctx.broker.topic(&name).await? else {
                    return Err(Error::TopicNotFound(name.to_string()));
                };
                if !metadata.partitioned
                    || count <= metadata.partitions
                    || count > ctx.broker.config().partitions_max
                {
                    return Err(Error::InvalidPartitions(format!(
                        "'{name}' has {} partitions; cannot change to {count}",
                        metadata.partition_count()
                    )));
                }
                return Ok(());
            }
            ctx.broker
                .set_partition_count(&name, count)
                .await
                .map(|_| ())
        }
        .await;
        if let Err(e) = outcome {
            tracing::info!(topic = %topic.name.0, error = %e, "create partitions failed");
            result.error_code = error_code::code(&e);
            result.error_message = Some(StrBytes::from_string(error_code::message(&e)));
        }
        response.results.push(result);
    }
    response
}
