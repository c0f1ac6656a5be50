//! The Kafka front end's request metrics: one slot per served API (labelled with Kafka's API
//! name), errors by Kafka error code read from the response bodies, and the walk that finds
//! those codes.

use std::sync::Arc;

use kafka_protocol::messages::ResponseKind;
use kafka_protocol::ResponseError;
use magnetar_metrics::ProtocolMetrics;

use crate::api::versions::SUPPORTED;

/// Counters for every API in [`SUPPORTED`], by API key.
pub fn protocol_metrics() -> Arc<ProtocolMetrics> {
    let names: Vec<(usize, String)> = SUPPORTED
        .iter()
        .map(|(key, _, _)| (*key as i16 as usize, format!("{key:?}")))
        .collect();
    let apis: Vec<(usize, &str)> = names.iter().map(|(k, n)| (*k, n.as_str())).collect();
    Arc::new(ProtocolMetrics::new("kafka", &apis, error_name))
}

/// Kafka's name of an error code, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
fn error_name(code: i32) -> String {
    let known = i16::try_from(code)
        .ok()
        .and_then(ResponseError::try_from_code);
    match known {
        Some(ResponseError::Unknown(_)) | None => "UNKNOWN".to_string(),
        Some(e) => screaming_snake(&format!("{e:?}")),
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Calls `f` with every error code in a response (top level, per topic, per partition, per
/// group), so a produce to three failing partitions counts three errors. APIs without per-item
/// codes in this list report only their top-level code where they have one.
pub fn for_each_error_code(response: &ResponseKind, mut f: impl FnMut(i16)) {
    match response {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| f(p.error_code)),
        ResponseKind::Fetch(r) => {
            f(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| f(p.error_code));
        }
        ResponseKind::Metadata(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        ResponseKind::ApiVersions(r) => f(r.error_code),
        ResponseKind::InitProducerId(r) => f(r.error_code),
        ResponseKind::FindCoordinator(r) => {
            f(r.error_code);
            r.coordinators.iter().for_each(|c| f(c.error_code));
        }
        ResponseKind::JoinGroup(r) => f(r.error_code),
        ResponseKind::SyncGroup(r) => f(r.error_code),
        ResponseKind::Heartbeat(r) => f(r.error_code),
        ResponseKind::LeaveGroup(r) => f(r.error_code),
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            f(r.error_code);
            r.groups.iter().for_each(|g| f(g.error_code));
        }
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        ResponseKind::ListGroups(r) => f(r.error_code),
        ResponseKind::DeleteGroups(r) => r.results.iter().for_each(|g| f(g.error_code)),
        ResponseKind::SaslHandshake(r) => f(r.error_code),
        ResponseKind::SaslAuthenticate(r) => f(r.error_code),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::ProduceResponse;

    #[test]
    fn error_codes_are_named_and_found_per_partition() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(17), "INVALID_TOPIC_EXCEPTION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(30_000), "UNKNOWN");
        let mut r = ProduceResponse::default();
        r.responses.push(
            TopicProduceResponse::default().with_partition_responses(vec![
                PartitionProduceResponse::default().with_error_code(3),
                PartitionProduceResponse::default(),
                PartitionProduceResponse::default().with_error_code(10),
            ]),
        );
        let mut codes = Vec::new();
        for_each_error_code(&ResponseKind::Produce(r), |c| codes.push(c));
        assert_eq!(codes, vec![3, 0, 10]);
        let m = protocol_metrics();
        assert!(m
            .snapshot()
            .apis
            .iter()
            .any(|a| a.api == "Produce" || a.api == "OffsetDelete"));
    }
}
