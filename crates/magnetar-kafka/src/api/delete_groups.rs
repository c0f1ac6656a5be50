//! DeleteGroups v0–v2: empty groups and their offsets are deleted (tombstones in
//! `__consumer_offsets`); active groups answer NON_EMPTY_GROUP.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId};

use super::group_common::{s, wire};
use super::{Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    let c = &ctx.coordinator;
    let mut names = std::collections::HashMap::new();
    let mut refused = Vec::new();
    for g in &request.groups_names {
        let name = s(&g.0);
        match ctx.authorize_group(&name).await {
            Ok(()) => {
                names.insert(ctx.group_key(&name), name);
            }
            Err(code) => refused.push(
                DeletableGroupResult::default()
                    .with_group_id(g.clone())
                    .with_error_code(code),
            ),
        }
    }
    let ids: Vec<String> = names.keys().cloned().collect();
    response.results = c
        .delete_groups(&ids)
        .await
        .into_iter()
        .map(|(id, error)| {
            let shown = names.get(&id).cloned().unwrap_or(id);
            DeletableGroupResult::default()
                .with_group_id(GroupId(wire(shown)))
                .with_error_code(error_code::coordinator_code(error))
        })
        .collect();
    response.results.extend(refused);
    response
}
