//! Heartbeat v0–v4.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use magnetar_coordinator as coordinator;

use super::group_common::{opt, s};
use super::{Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    let c = &ctx.coordinator;
    if let Err(code) = ctx.authorize_group(request.group_id.0.as_str()).await {
        return HeartbeatResponse::default().with_error_code(code);
    }
    let result = c
        .heartbeat(coordinator::HeartbeatRequest {
            group_id: ctx.group_key(request.group_id.0.as_str()),
            generation_id: request.generation_id,
            member_id: s(&request.member_id),
            group_instance_id: opt(&request.group_instance_id),
        })
        .await;
    HeartbeatResponse::default().with_error_code(error_code::coordinator_code(result.err()))
}
