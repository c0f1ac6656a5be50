//! AlterReplicaLogDirs v1–v2: this broker has one data directory, so moving a replica to it is
//! already done (NONE) and any other path is LOG_DIR_NOT_FOUND, as Kafka answers for a directory
//! it does not have. Cluster-wide: superusers only when authorization is on.

use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::{AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse};
use kafka_protocol::ResponseError;

use super::{hosted, Context, Envelope};

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: AlterReplicaLogDirsRequest,
) -> AlterReplicaLogDirsResponse {
    let allowed = ctx.cluster_allowed();
    let dir = hosted::log_dir(ctx);
    let mut response = AlterReplicaLogDirsResponse::default();
    for target in request.dirs {
        let same_dir = target.path.as_str().trim_end_matches('/') == dir.trim_end_matches('/');
        for topic in target.topics {
            let found = hosted::topic(ctx, &topic.name.0).await;
            let partitions = topic
                .partitions
                .iter()
                .map(|&index| {
                    let code = if !allowed {
                        ResponseError::ClusterAuthorizationFailed.code()
                    } else {
                        match hosted::partition_code(&found, index) {
                            0 if same_dir => 0,
                            0 => ResponseError::LogDirNotFound.code(),
                            code => code,
                        }
                    };
                    AlterReplicaLogDirPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                })
                .collect();
            response.results.push(
                AlterReplicaLogDirTopicResult::default()
                    .with_topic_name(topic.name)
                    .with_partitions(partitions),
            );
        }
    }
    response
}
