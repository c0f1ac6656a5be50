//! DeleteGroups v0–v2: empty groups and their offsets are deleted (tombstones in
//! `__consumer_offsets`); active groups answer NON_EMPTY_GROUP.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId};
use kafka_protocol::ResponseError;

use super::group_common::{s, wire};
use super::Context;
use crate::error_code;

pub async fn handle(ctx: &Context, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    let Some(c) = &ctx.coordinator else {
        response.results = request
            .groups_names
            .into_iter()
            .map(|g| {
                DeletableGroupResult::default()
                    .with_group_id(g)
                    .with_error_code(ResponseError::CoordinatorNotAvailable.code())
            })
            .collect();
        return response;
    };
    let ids: Vec<String> = request.groups_names.iter().map(|g| s(&g.0)).collect();
    response.results = c
        .delete_groups(&ids)
        .await
        .into_iter()
        .map(|(id, error)| {
            DeletableGroupResult::default()
                .with_group_id(GroupId(wire(id)))
                .with_error_code(error_code::coordinator_code(error))
        })
        .collect();
    response
}
