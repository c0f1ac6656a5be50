//! AlterPartitionReassignments v0–v1: a reassignment to exactly this broker is a no-op (NONE),
//! to any other replica list INVALID_REPLICA_ASSIGNMENT with the reason, and a cancellation
//! (null replicas) NO_REASSIGNMENT_IN_PROGRESS, since none is ever in progress. Cluster-wide:
//! superusers only when authorization is on.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{hosted, replica_assignment, Context, Envelope};

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut response = AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(request.allow_replication_factor_change);
    if !ctx.cluster_allowed() {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        response.error_message = Some(StrBytes::from_static_str(
            "reassigning partitions needs a superuser role",
        ));
        return response;
    }
    for topic in request.topics {
        let found = hosted::topic(ctx, &topic.name.0).await;
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let index = p.partition_index;
                let (code, message) = match (hosted::partition_code(&found, index), &p.replicas) {
                    (0, None) => (
                        ResponseError::NoReassignmentInProgress.code(),
                        Some(format!(
                            "no reassignment of partition {index} is in progress"
                        )),
                    ),
                    (0, Some(replicas)) => {
                        match replica_assignment::check_replicas(
                            ctx.config.node_id,
                            usize::try_from(index).unwrap_or(0),
                            replicas,
                        ) {
                            Ok(()) => (0, None),
                            Err(m) => (ResponseError::InvalidReplicaAssignment.code(), Some(m)),
                        }
                    }
                    (code, _) => (code, None),
                };
                ReassignablePartitionResponse::default()
                    .with_partition_index(index)
                    .with_error_code(code)
                    .with_error_message(message.map(StrBytes::from_string))
            })
            .collect();
        response.responses.push(
            ReassignableTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    response
}
