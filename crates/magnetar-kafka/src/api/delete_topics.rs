//! DeleteTopics v1–v6 (by name; v6 also by topic id).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName as WireTopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use magnetar_broker::Access;

use super::{Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let version = envelope.version();
    let mut response = DeleteTopicsResponse::default();
    let targets: Vec<(Option<WireTopicName>, uuid::Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), uuid::Uuid::nil()))
            .collect()
    };
    for (shown, id) in targets {
        let mut result = DeletableTopicResult::default()
            .with_name(shown.clone())
            .with_topic_id(id);
        let name = match &shown {
            Some(shown) => ctx
                .parse_writable_topic(&shown.0)
                .map_err(|e| (error_code::code(&e), error_code::message(&e))),
            None => match ctx.topic_by_id(id).await {
                Ok(Some(name)) if super::is_internal(&name) => {
                    result.name = Some(WireTopicName(StrBytes::from_string(ctx.short_name(&name))));
                    Err((
                        ResponseError::InvalidTopicException.code(),
                        format!(
                            "topic '{}' is internal to the broker and cannot be deleted",
                            ctx.short_name(&name)
                        ),
                    ))
                }
                Ok(Some(name)) => {
                    result.name = Some(WireTopicName(StrBytes::from_string(ctx.short_name(&name))));
                    Ok(name)
                }
                Ok(None) => Err((
                    ResponseError::UnknownTopicId.code(),
                    format!("no topic has id {id}"),
                )),
                Err(e) => Err((error_code::code(&e), error_code::message(&e))),
            },
        };
        let name = match name {
            Ok(name) => match ctx.authorize_with_message(&name, &Access::Admin).await {
                Ok(()) => Ok(name),
                // An id the principal may not see is unknown, as in Kafka.
                Err(_) if shown.is_none() => Err((
                    ResponseError::UnknownTopicId.code(),
                    format!("no topic has id {id}"),
                )),
                Err(refused) => Err(refused),
            },
            Err(failure) => Err(failure),
        };
        let outcome = match name {
            Ok(name) => ctx.broker.delete_topic(&name).await.map_err(|e| {
                tracing::info!(topic = %name, error = %e, "delete topic failed");
                (error_code::code(&e), error_code::message(&e))
            }),
            Err(failure) => Err(failure),
        };
        if let Err((code, message)) = outcome {
            result.error_code = code;
            result.error_message = Some(StrBytes::from_string(message));
        }
        response.responses.push(result);
    }
    response
}
