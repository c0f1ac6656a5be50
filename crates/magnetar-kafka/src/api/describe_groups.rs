//! DescribeGroups v0–v5: state, protocol and members (metadata and assignment while Stable).

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use kafka_protocol::protocol::StrBytes;

use super::group_common::{s, wire, wire_opt};
use super::{Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let version = envelope.version();
    let mut response = DescribeGroupsResponse::default();
    let c = &ctx.coordinator;
    // The coordinator's ids (per tenant) of the groups the principal may describe, with the
    // names the client asked for; the others are refused.
    let mut names = std::collections::HashMap::new();
    let mut refused = Vec::new();
    for g in &request.groups {
        let name = s(&g.0);
        match ctx.authorize_group(&name).await {
            Ok(()) => {
                names.insert(ctx.group_key(&name), name);
            }
            Err(code) => refused.push(
                DescribedGroup::default()
                    .with_group_id(g.clone())
                    .with_error_code(code)
                    .with_authorized_operations(i32::MIN),
            ),
        }
    }
    let ids: Vec<String> = names.keys().cloned().collect();
    response.groups = c
        .describe_groups(&ids)
        .await
        .into_iter()
        .map(|g| {
            let shown = names.get(&g.group_id).cloned().unwrap_or(g.group_id);
            DescribedGroup::default()
                .with_group_id(GroupId(wire(shown)))
                .with_error_code(error_code::coordinator_code(g.error))
                .with_group_state(StrBytes::from_static_str(g.state.as_str()))
                .with_protocol_type(wire(g.protocol_type))
                .with_protocol_data(wire(g.protocol_data))
                // Kafka's "not requested" value.
                .with_authorized_operations(i32::MIN)
                .with_members(
                    g.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(wire(m.member_id))
                                .with_group_instance_id(if version >= 4 {
                                    wire_opt(m.group_instance_id)
                                } else {
                                    None
                                })
                                .with_client_id(wire(m.client_id))
                                .with_client_host(wire(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                )
        })
        .collect();
    response.groups.extend(refused);
    response
}
