//! FindCoordinator v0–v6 for group keys (single and batched forms): every group's coordinator is
//! this broker, the owner of every partition of `__consumer_offsets` in standalone. Transaction
//! coordinator keys are refused until transactions exist.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{Context, Envelope};

/// `key_type` of a group key (1 is a transactional id).
const GROUP_KEY: i8 = 0;

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let version = envelope.version();
    let host = StrBytes::from_string(ctx.config.advertised_host.clone());
    let port = i32::from(ctx.config.advertised_port);
    let error = (request.key_type != GROUP_KEY).then_some(ResponseError::CoordinatorNotAvailable);
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let mut c = Coordinator::default().with_key(key);
                match error {
                    Some(e) => {
                        c.node_id = BrokerId(-1);
                        c.port = -1;
                        c.error_code = e.code();
                    }
                    None => {
                        c.node_id = BrokerId(ctx.config.node_id);
                        c.host = host.clone();
                        c.port = port;
                    }
                }
                c
            })
            .collect();
        return response;
    }
    match error {
        Some(e) => {
            response.error_code = e.code();
            response.node_id = BrokerId(-1);
            response.port = -1;
        }
        None => {
            response.node_id = BrokerId(ctx.config.node_id);
            response.host = host;
            response.port = port;
        }
    }
    response
}
