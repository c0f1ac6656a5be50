//! SyncGroup v0–v5: the leader's assignment is stored and handed to every member; followers wait
//! for it.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use magnetar_coordinator as coordinator;

use super::group_common::{opt, s, wire_opt};
use super::{Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    let version = envelope.version();
    let c = &ctx.coordinator;
    if let Err(code) = ctx.authorize_group(request.group_id.0.as_str()).await {
        return SyncGroupResponse::default().with_error_code(code);
    }
    let req = coordinator::SyncGroupRequest {
        group_id: ctx.group_key(request.group_id.0.as_str()),
        generation_id: request.generation_id,
        member_id: s(&request.member_id),
        group_instance_id: opt(&request.group_instance_id),
        protocol_type: opt(&request.protocol_type),
        protocol_name: opt(&request.protocol_name),
        assignments: request
            .assignments
            .iter()
            .map(|a| coordinator::MemberAssignment {
                member_id: s(&a.member_id),
                assignment: a.assignment.clone(),
            })
            .collect(),
    };
    let r = c.sync_group(req).await;
    let mut response = SyncGroupResponse::default()
        .with_error_code(error_code::coordinator_code(r.error))
        .with_assignment(r.assignment);
    if version >= 5 {
        response.protocol_type = wire_opt(r.protocol_type);
        response.protocol_name = wire_opt(r.protocol_name);
    }
    response
}
