//! ElectLeaders v0–v2: this broker is the only replica and already leads every partition, so a
//! named partition answers ELECTION_NOT_NEEDED (UNKNOWN_TOPIC_OR_PARTITION if it does not exist)
//! and a request for all partitions answers an empty list (Kafka leaves out the partitions that
//! needed no election). Election types other than preferred (0) and unclean (1) are refused.
//! Cluster-wide: superusers only when authorization is on.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{hosted, Context, Envelope};

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: ElectLeadersRequest,
) -> ElectLeadersResponse {
    let version = envelope.version();
    let mut response = ElectLeadersResponse::default();
    let top_level = if !ctx.cluster_allowed() {
        Some(ResponseError::ClusterAuthorizationFailed)
    } else if version >= 1 && !matches!(request.election_type, 0 | 1) {
        Some(ResponseError::InvalidRequest)
    } else {
        None
    };
    let Some(topics) = request.topic_partitions else {
        if let Some(e) = top_level {
            response.error_code = e.code();
        }
        return response;
    };
    for topic in topics {
        let found = hosted::topic(ctx, &topic.topic.0).await;
        let partition_result = topic
            .partitions
            .iter()
            .map(|&index| {
                let (code, message) = match top_level {
                    Some(e) => (e.code(), None),
                    None => match hosted::partition_code(&found, index) {
                        0 => (
                            ResponseError::ElectionNotNeeded.code(),
                            Some("this broker is the only replica and already the leader"),
                        ),
                        code => (code, None),
                    },
                };
                PartitionResult::default()
                    .with_partition_id(index)
                    .with_error_code(code)
                    .with_error_message(message.map(StrBytes::from_static_str))
            })
            .collect();
        response.replica_election_results.push(
            ReplicaElectionResult::default()
                .with_topic(topic.topic)
                .with_partition_result(partition_result),
        );
    }
    if version >= 1 {
        if let Some(e) = top_level {
            response.error_code = e.code();
        }
    }
    response
}
