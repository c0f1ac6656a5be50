//! InitProducerId v0–v5: for an idempotent producer a fresh producer id from the broker,
//! epoch 0; for a transactional id the transaction coordinator's producer id and epoch (the
//! epoch bumped on every init, fencing older producers of the id; KIP-360's producer id and
//! epoch in v3+ let a producer re-initialize after an error).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

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
        if let Err(code) = ctx.authorize_transactional_id(&id.0).await {
            response.error_code = code;
            return response;
        }
        let txn = match ctx.coordinator.transactions().await {
            Ok(txn) => txn,
            Err(e) => {
                response.error_code = error_code::coordinator_error(e).code();
                return response;
            }
        };
        let expected =
            (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
        match txn
            .init_producer_id(&id.0, request.transaction_timeout_ms, expected)
            .await
        {
            Ok((producer_id, epoch)) => {
                response.producer_id = ProducerId(producer_id);
                response.producer_epoch = epoch;
            }
            Err(e) => {
                tracing::debug!(
                    client_id = header.client_id.as_deref().unwrap_or(""),
                    transactional_id = %id.0,
                    error = %e,
                    "InitProducerId refused"
                );
                response.error_code = error_code::coordinator_error(e).code();
            }
        }
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
