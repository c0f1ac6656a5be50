//! InitProducerId v0–v5 for idempotent producers: a fresh producer id from the broker, epoch 0.
//! Transactional ids are refused until transactions exist.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::{Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let header = envelope.header;
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if let Some(id) = request
        .transactional_id
        .as_ref()
        .filter(|id| !id.is_empty())
    {
        tracing::warn!(
            client_id = header.client_id.as_deref().unwrap_or(""),
            transactional_id = %id.0,
            "transactions are not implemented yet; refusing InitProducerId with a transactional id"
        );
        // Not retriable, so the client fails fast with a clear error instead of retrying.
        response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return response;
    }
    match ctx.broker.allocate_producer_id().await {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            response.error_code = error_code::code(&e);
        }
    }
    response
}
