//! The partitions a cluster-admin request names, as this broker hosts them.
//!
//! DescribeLogDirs, AlterReplicaLogDirs, ElectLeaders and the partition-reassignment APIs address
//! partitions by Kafka topic name and index. This broker hosts every partition of every topic (one
//! copy, in one data directory), so "hosted" is "the topic exists and the index is below its
//! partition count". Internal topics (`public/__kafka`) are not addressable by Kafka name here.

use kafka_protocol::ResponseError;
use magnetar_broker::TopicName;

use super::Context;

/// A topic a request named: its parsed name and partition count, or the error code for all of
/// its partitions.
pub(super) async fn topic(ctx: &Context, name: &str) -> Result<(TopicName, u32), i16> {
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    let parsed = ctx.parse_topic(name).map_err(|_| unknown)?;
    match ctx.broker.topic(&parsed).await {
        Ok(Some(metadata)) => Ok((parsed, metadata.partition_count())),
        Ok(None) => Err(unknown),
        Err(e) => Err(crate::error_code::code(&e)),
    }
}

/// The code for one partition index of a topic looked up with [`topic`].
pub(super) fn partition_code(topic: &Result<(TopicName, u32), i16>, index: i32) -> i16 {
    match topic {
        Ok((_, count)) if u32::try_from(index).is_ok_and(|i| i < *count) => 0,
        Ok(_) => ResponseError::UnknownTopicOrPartition.code(),
        Err(code) => *code,
    }
}

/// The data directory Kafka clients see as this broker's one log dir.
pub(super) fn log_dir(ctx: &Context) -> String {
    ctx.broker.config().data_dir.display().to_string()
}
