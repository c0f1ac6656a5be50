//! DescribeCluster v0–v1: this one broker, which is also the controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Context, Envelope};

/// All operations allowed until authorization exists (bits 3..=12 of Kafka's AclOperation codes).
pub const ALL_OPERATIONS: i32 = 0x1ff8;

/// Every operation that applies to a topic (READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE,
/// DESCRIBE_CONFIGS, ALTER_CONFIGS): what an admin of the topic's tenant may do.
pub const TOPIC_OPERATIONS: i32 = 0xdf8;
/// What the `produce` permission allows on a topic: WRITE, DESCRIBE, DESCRIBE_CONFIGS.
pub const PRODUCE_OPERATIONS: i32 = (1 << 4) | (1 << 8) | (1 << 10);
/// What the `consume` permission allows on a topic: READ, DESCRIBE, DESCRIBE_CONFIGS.
pub const CONSUME_OPERATIONS: i32 = (1 << 3) | (1 << 8) | (1 << 10);

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    response.cluster_id = StrBytes::from_string(ctx.config.cluster_id.clone());
    response.controller_id = BrokerId(ctx.config.node_id);
    response.endpoint_type = request.endpoint_type;
    // Standalone: this broker; cluster mode: every live broker on this listener's name.
    response.brokers = super::cluster_view::nodes(ctx)
        .into_iter()
        .map(|(id, host, port)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
        })
        .collect();
    if request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = if ctx.is_superuser() {
            ALL_OPERATIONS
        } else {
            0
        };
    }
    response
}
