//! CreatePartitions v0–v3: raises a partitioned topic's partition count. Assignments, when given,
//! must name one list per new partition holding only this broker
//! ([`super::replica_assignment`]); this broker leads every partition.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use magnetar_broker::{Access, Error};

use super::{replica_assignment, Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        if let Ok(name) = ctx.parse_writable_topic(&topic.name.0) {
            if let Err((code, message)) = ctx.authorize_with_message(&name, &Access::Admin).await {
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
                response.results.push(result);
                continue;
            }
        }
        if let Err(message) = check_assignments(ctx, &topic).await {
            result.error_code = ResponseError::InvalidReplicaAssignment.code();
            result.error_message = Some(StrBytes::from_string(message));
            response.results.push(result);
            continue;
        }
        let outcome = async {
            let name = ctx.parse_writable_topic(&topic.name.0)?;
            let count = u32::try_from(topic.count).map_err(|_| {
                Error::InvalidPartitions(format!("{} partitions is invalid", topic.count))
            })?;
            if request.validate_only {
                let Some(metadata) = ctx.broker.topic(&name).await? else {
                    return Err(Error::TopicNotFound {
                        topic: name.to_string(),
                    });
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

/// Kafka's checks of explicit assignments: one replica list per partition being added, each
/// naming only brokers that exist. Without assignments there is nothing to check; an unknown topic
/// or a count that does not grow is left to the count checks, which answer with their own codes.
async fn check_assignments(
    ctx: &Context,
    topic: &kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic,
) -> Result<(), String> {
    // An empty list is taken as none (kafka-protocol's default is an empty list, not null).
    let Some(assignments) = topic.assignments.as_ref().filter(|a| !a.is_empty()) else {
        return Ok(());
    };
    let Ok(name) = ctx.parse_writable_topic(&topic.name.0) else {
        return Ok(());
    };
    let Ok(Some(metadata)) = ctx.broker.topic(&name).await else {
        return Ok(());
    };
    let current = i64::from(metadata.partition_count());
    let adding = i64::from(topic.count) - current;
    if adding > 0 && assignments.len() as i64 != adding {
        return Err(format!(
            "increasing the number of partitions by {adding} but {} assignments provided",
            assignments.len()
        ));
    }
    for (i, a) in assignments.iter().enumerate() {
        let index = usize::try_from(current).unwrap_or(0) + i;
        replica_assignment::check_replicas(ctx.config.node_id, index, &a.broker_ids)?;
    }
    Ok(())
}
