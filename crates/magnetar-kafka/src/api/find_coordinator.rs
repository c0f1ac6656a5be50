//! FindCoordinator v0–v6 for group keys (single and batched forms): a group's coordinator is the
//! leader of its `__consumer_offsets` partition (Kafka's placement): this broker standalone, the
//! partition's bundle owner in cluster mode. A transactional id's coordinator (key type 1) is
//! the leader of its `__transaction_state` partition, placed the same way.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{cluster_view, Context, Envelope};

/// `key_type` of a group key.
const GROUP_KEY: i8 = 0;
/// `key_type` of a transactional id.
const TRANSACTION_KEY: i8 = 1;

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let version = envelope.version();
    // Transactional ids: the transaction coordinator (started on first use) places them.
    let transactions = if request.key_type == TRANSACTION_KEY {
        match ctx.coordinator.transactions().await {
            Ok(txn) => Some(txn),
            Err(e) => {
                tracing::warn!(error = %e, "transaction coordinator not available");
                None
            }
        }
    } else {
        None
    };
    // The coordinator of one key, or the error to answer for it.
    let find = |key: &str| -> Result<cluster_view::Node, ResponseError> {
        match request.key_type {
            // Retriable: nobody owns the partition yet; the client asks again.
            GROUP_KEY => cluster_view::group_coordinator(ctx, key)
                .ok_or(ResponseError::CoordinatorNotAvailable),
            TRANSACTION_KEY => transactions
                .as_ref()
                .and_then(|txn| cluster_view::transaction_coordinator(ctx, txn, key))
                .ok_or(ResponseError::CoordinatorNotAvailable),
            _ => Err(ResponseError::InvalidRequest),
        }
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let mut c = Coordinator::default().with_key(key.clone());
                match find(key.as_str()) {
                    Err(e) => {
                        c.node_id = BrokerId(-1);
                        c.port = -1;
                        c.error_code = e.code();
                    }
                    Ok((node, host, port)) => {
                        c.node_id = BrokerId(node);
                        c.host = StrBytes::from_string(host);
                        c.port = port;
                    }
                }
                c
            })
            .collect();
        return response;
    }
    match find(request.key.as_str()) {
        Err(e) => {
            response.error_code = e.code();
            response.node_id = BrokerId(-1);
            response.port = -1;
        }
        Ok((node, host, port)) => {
            response.node_id = BrokerId(node);
            response.host = StrBytes::from_string(host);
            response.port = port;
        }
    }
    response
}
