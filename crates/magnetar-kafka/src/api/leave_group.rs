//! LeaveGroup v0–v5: one member (v0–v2) or a batch of members, static ones by instance id (v3+).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use magnetar_coordinator as coordinator;

use super::group_common::{opt, s, wire, wire_opt};
use super::{Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let version = envelope.version();
    let c = &ctx.coordinator;
    if let Err(code) = ctx.authorize_group(request.group_id.0.as_str()).await {
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let members = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| coordinator::LeavingMember {
                member_id: s(&m.member_id),
                group_instance_id: opt(&m.group_instance_id),
                reason: opt(&m.reason),
            })
            .collect()
    } else {
        vec![coordinator::LeavingMember {
            member_id: s(&request.member_id),
            group_instance_id: None,
            reason: None,
        }]
    };
    let r = c
        .leave_group(coordinator::LeaveGroupRequest {
            group_id: ctx.group_key(request.group_id.0.as_str()),
            members,
        })
        .await;
    let mut response = LeaveGroupResponse::default();
    if version >= 3 {
        response.error_code = error_code::coordinator_code(r.error);
        response.members = r
            .members
            .into_iter()
            .map(|m| {
                MemberResponse::default()
                    .with_member_id(wire(m.member_id))
                    .with_group_instance_id(wire_opt(m.group_instance_id))
                    .with_error_code(error_code::coordinator_code(m.error))
            })
            .collect();
    } else {
        // One member: its error is the response's.
        response.error_code =
            error_code::coordinator_code(r.error.or(r.members.first().and_then(|m| m.error)));
    }
    response
}
