//! ListGroups v0–v5 with the state filter (v4+); every group is a classic group, so a types
//! filter (v5) without "classic" lists nothing.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;
use magnetar_coordinator::GroupState;

use super::group_common::wire;
use super::{Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let version = envelope.version();
    let mut response = ListGroupsResponse::default();
    let c = &ctx.coordinator;
    if !request.types_filter.is_empty()
        && !request
            .types_filter
            .iter()
            .any(|t| t.as_str().eq_ignore_ascii_case("classic"))
    {
        return response;
    }
    let mut states = Vec::new();
    for name in &request.states_filter {
        match GroupState::parse(name.as_str()) {
            Some(state) => states.push(state),
            // A state no group can be in matches nothing.
            None => return response,
        }
    }
    match c.list_groups(&states).await {
        Ok(groups) => {
            // Only this tenant's groups, and of them those the principal may use.
            let mut visible = Vec::with_capacity(groups.len());
            for g in groups {
                if let Some(name) = ctx.group_shown(&g.group_id) {
                    if ctx.group_may(&name).await {
                        visible.push((name, g));
                    }
                }
            }
            response.groups = visible
                .into_iter()
                .map(|(name, g)| {
                    let mut listed = ListedGroup::default()
                        .with_group_id(GroupId(wire(name)))
                        .with_protocol_type(wire(g.protocol_type));
                    if version >= 4 {
                        listed.group_state = StrBytes::from_static_str(g.state.as_str());
                    }
                    if version >= 5 {
                        listed.group_type = StrBytes::from_static_str("classic");
                    }
                    listed
                })
                .collect();
        }
        Err(e) => response.error_code = error_code::coordinator_error(e).code(),
    }
    response
}
