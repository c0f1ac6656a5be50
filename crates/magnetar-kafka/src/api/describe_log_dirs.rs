//! DescribeLogDirs v1–v4: the one data directory, each hosted partition's size on disk and an
//! offset lag of 0 (there is no replica to catch up), and (v4, KIP-827) the volume's total and
//! usable bytes. Cluster-wide: superusers only when authorization is on (Kafka asks for DESCRIBE
//! on the cluster).

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use magnetar_broker::TopicPartition;

use super::{hosted, Context, Envelope};

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let version = envelope.version();
    let mut response = DescribeLogDirsResponse::default();
    if !ctx.cluster_allowed() {
        // v3+ has a top-level code; older versions answer with no directories, as Kafka does.
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return response;
    }
    // Null asks for every partition; a list asks for those named (unknown ones are left out, as
    // Kafka leaves out partitions it does not host).
    let wanted: Vec<(String, Option<Vec<i32>>)> = match request.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.topic.0.to_string(), Some(t.partitions)))
            .collect(),
        None => match ctx.broker.list_all_topics(false).await {
            Ok(all) => all
                .into_iter()
                .map(|(name, _)| (ctx.short_name(&name), None))
                .collect(),
            Err(e) => {
                response.error_code = crate::error_code::code(&e);
                return response;
            }
        },
    };
    let mut topics = Vec::new();
    for (name, partitions) in wanted {
        let Ok((topic, count)) = hosted::topic(ctx, &name).await else {
            continue;
        };
        let indexes: Vec<i32> = match partitions {
            Some(p) => p,
            None => (0..count).filter_map(|i| i32::try_from(i).ok()).collect(),
        };
        let mut rows = Vec::new();
        for index in indexes {
            let Ok(partition) = u32::try_from(index) else {
                continue;
            };
            if partition >= count {
                continue;
            }
            let tp = TopicPartition {
                topic: topic.clone(),
                partition,
            };
            let Ok(log) = ctx.broker.partition(&tp).await else {
                continue;
            };
            let size = i64::try_from(log.stats().total_bytes).unwrap_or(i64::MAX);
            rows.push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(index)
                    .with_partition_size(size)
                    .with_offset_lag(0),
            );
        }
        if !rows.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(rows),
            );
        }
    }
    let dir = hosted::log_dir(ctx);
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir.clone()))
        .with_topics(topics);
    if version >= 4 {
        let (total, usable) = volume_bytes(&dir).unwrap_or((-1, -1));
        result.total_bytes = total;
        result.usable_bytes = usable;
    }
    response.results = vec![result];
    response
}

/// Total and usable bytes of the volume holding `path` (-1, -1 when unknown, as KIP-827 says).
#[allow(
    unsafe_code,
    reason = "libc::statvfs: the volume's size for DescribeLogDirs"
)]
fn volume_bytes(path: &str) -> Option<(i64, i64)> {
    let c_path = std::ffi::CString::new(path).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to writable memory of
    // the right type; statvfs only writes into it and we read it only when it returned 0.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    let block = i64::try_from(stat.f_frsize).ok()?;
    let total = i64::try_from(stat.f_blocks).ok()?.checked_mul(block)?;
    let usable = i64::try_from(stat.f_bavail).ok()?.checked_mul(block)?;
    Some((total, usable))
}

#[cfg(test)]
mod tests {
    #[test]
    fn volume_of_the_temp_dir_is_known() {
        let dir = std::env::temp_dir();
        let (total, usable) = super::volume_bytes(dir.to_str().unwrap()).unwrap();
        assert!(total > 0 && usable >= 0 && usable <= total);
        assert_eq!(super::volume_bytes("/no/such/dir/anywhere"), None);
    }
}
