//! JoinGroup v0–v9: KIP-394 (a member id is required from v4), KIP-345 static membership (v5+),
//! KIP-814 `skip_assignment` (v9). The response may wait for the rebalance to complete.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use magnetar_coordinator as coordinator;

use super::group_common::{opt, s, wire, wire_opt};
use super::{Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    let header = envelope.header;
    let v = header.api_version;
    let peer_host = format!("/{}", envelope.peer.ip());
    let c = &ctx.coordinator;
    if let Err(code) = ctx.authorize_group(request.group_id.0.as_str()).await {
        return JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1);
    }
    let req = coordinator::JoinGroupRequest {
        group_id: ctx.group_key(request.group_id.0.as_str()),
        member_id: s(&request.member_id),
        group_instance_id: opt(&request.group_instance_id),
        protocol_type: s(&request.protocol_type),
        protocols: request
            .protocols
            .iter()
            .map(|p| coordinator::Protocol {
                name: s(&p.name),
                metadata: p.metadata.clone(),
            })
            .collect(),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout; Kafka uses the session timeout.
        rebalance_timeout_ms: if v >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        client_id: header.client_id.as_deref().unwrap_or_default().to_string(),
        client_host: peer_host,
        require_known_member_id: v >= 4,
        reason: opt(&request.reason),
    };
    let r = c.join_group(req).await;
    let mut response = JoinGroupResponse::default()
        .with_error_code(error_code::coordinator_code(r.error))
        .with_generation_id(r.generation_id)
        .with_leader(wire(r.leader))
        .with_member_id(wire(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(wire(m.member_id))
                        // Static members exist from v5.
                        .with_group_instance_id(if v >= 5 {
                            wire_opt(m.group_instance_id)
                        } else {
                            None
                        })
                        .with_metadata(m.metadata)
                })
                .collect(),
        );
    if v >= 7 {
        response.protocol_type = wire_opt(r.protocol_type);
    }
    // Before v7 the protocol name is not nullable.
    response.protocol_name = match wire_opt(r.protocol_name) {
        Some(name) => Some(name),
        None if v < 7 => Some(wire(String::new())),
        None => None,
    };
    if v >= 9 {
        response.skip_assignment = r.skip_assignment;
    }
    response
}
