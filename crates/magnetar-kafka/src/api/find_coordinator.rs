//! FindCoordinator v0–v6 for group keys (single and batched forms): a group's coordinator is the
//! leader of its `__consumer_offsets` partition (Kafka's placement): this broker standalone, the
//! partition's bundle owner in cluster mode. Transaction
//! coordinator keys are refused until transactions exist.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{cluster_view, Context, Envelope};

/// `key_type` of a group key (1 is a transactional id).
const GROUP_KEY: i8 = 0;

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let version = envelope.version();
    // The coordinator of one key, or the error to answer for it.
    let find = |key: &str| -> Result<cluster_view::Node, ResponseError> {
        if request.key_type != GROUP_KEY {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        // Retriable: nobody owns the group's offsets partition yet; the client asks again.
        cluster_view::group_coordinator(ctx, key).ok_or(ResponseError::CoordinatorNotAvailable)
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
