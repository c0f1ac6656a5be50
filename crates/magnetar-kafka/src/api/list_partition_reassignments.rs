//! ListPartitionReassignments v0: no reassignment is ever in progress on a single-copy broker,
//! so the answer is an empty list (for all partitions or those named). Cluster-wide: superusers
//! only when authorization is on.

use kafka_protocol::messages::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{Context, Envelope};

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    _request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let mut response = ListPartitionReassignmentsResponse::default();
    if !ctx.cluster_allowed() {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        response.error_message = Some(StrBytes::from_static_str(
            "listing partition reassignments needs a superuser role",
        ));
    }
    response
}
