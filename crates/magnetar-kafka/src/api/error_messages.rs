//! Successful results carry a null `error_message`, as Kafka's broker answers.
//!
//! `kafka-protocol` defaults every nullable `error_message` to `Some("")`, and handlers set a
//! message only on errors, so without this pass a success would be sent with an empty string.
//! Clients check for null (aiokafka and kafkajs treat `""` as an error text), so one pass over the
//! response, run by the dispatcher for every API, turns an empty message into null. No handler
//! has to remember it, and a new API is covered by adding its arm here.

use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::StrBytes;

fn clear(message: &mut Option<StrBytes>) {
    if message.as_ref().is_some_and(|m| m.is_empty()) {
        *message = None;
    }
}

/// Replaces every empty `error_message` of `response` with null.
pub(super) fn null_empty_messages(response: &mut ResponseKind) {
    match response {
        ResponseKind::FindCoordinator(r) => {
            clear(&mut r.error_message);
            r.coordinators
                .iter_mut()
                .for_each(|c| clear(&mut c.error_message));
        }
        ResponseKind::CreateTopics(r) => r
            .topics
            .iter_mut()
            .for_each(|t| clear(&mut t.error_message)),
        ResponseKind::AlterConfigs(r) => r
            .responses
            .iter_mut()
            .for_each(|x| clear(&mut x.error_message)),
        ResponseKind::IncrementalAlterConfigs(r) => r
            .responses
            .iter_mut()
            .for_each(|x| clear(&mut x.error_message)),
        ResponseKind::DescribeConfigs(r) => r
            .results
            .iter_mut()
            .for_each(|x| clear(&mut x.error_message)),
        ResponseKind::DescribeAcls(r) => clear(&mut r.error_message),
        ResponseKind::CreateAcls(r) => r
            .results
            .iter_mut()
            .for_each(|x| clear(&mut x.error_message)),
        ResponseKind::DeleteAcls(r) => {
            for f in &mut r.filter_results {
                clear(&mut f.error_message);
                f.matching_acls
                    .iter_mut()
                    .for_each(|a| clear(&mut a.error_message));
            }
        }
        ResponseKind::DescribeUserScramCredentials(r) => {
            clear(&mut r.error_message);
            r.results
                .iter_mut()
                .for_each(|x| clear(&mut x.error_message));
        }
        ResponseKind::AlterUserScramCredentials(r) => r
            .results
            .iter_mut()
            .for_each(|x| clear(&mut x.error_message)),
        ResponseKind::SaslAuthenticate(r) => clear(&mut r.error_message),
        ResponseKind::ElectLeaders(r) => {
            for t in &mut r.replica_election_results {
                t.partition_result
                    .iter_mut()
                    .for_each(|p| clear(&mut p.error_message));
            }
        }
        ResponseKind::AlterPartitionReassignments(r) => {
            clear(&mut r.error_message);
            for t in &mut r.responses {
                t.partitions
                    .iter_mut()
                    .for_each(|p| clear(&mut p.error_message));
            }
        }
        ResponseKind::ListPartitionReassignments(r) => clear(&mut r.error_message),
        // The other responses served have no `error_message` that defaults to "" in
        // kafka-protocol 0.18 (their nullable messages default to None).
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;

    fn message_of(r: &ResponseKind) -> Vec<Option<StrBytes>> {
        match r {
            ResponseKind::FindCoordinator(r) => {
                let mut v = vec![r.error_message.clone()];
                v.extend(r.coordinators.iter().map(|c| c.error_message.clone()));
                v
            }
            ResponseKind::CreateTopics(r) => {
                r.topics.iter().map(|t| t.error_message.clone()).collect()
            }
            ResponseKind::AlterConfigs(r) => r
                .responses
                .iter()
                .map(|t| t.error_message.clone())
                .collect(),
            ResponseKind::DescribeConfigs(r) => {
                r.results.iter().map(|t| t.error_message.clone()).collect()
            }
            ResponseKind::SaslAuthenticate(r) => vec![r.error_message.clone()],
            _ => vec![],
        }
    }

    #[test]
    fn success_messages_become_null_and_errors_stay() {
        let mut responses = vec![
            ResponseKind::FindCoordinator(
                FindCoordinatorResponse::default()
                    .with_coordinators(vec![find_coordinator_response::Coordinator::default()]),
            ),
            ResponseKind::CreateTopics(
                CreateTopicsResponse::default()
                    .with_topics(vec![create_topics_response::CreatableTopicResult::default()]),
            ),
            ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(vec![
                alter_configs_response::AlterConfigsResourceResponse::default(),
            ])),
            ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(vec![
                describe_configs_response::DescribeConfigsResult::default(),
            ])),
            ResponseKind::SaslAuthenticate(SaslAuthenticateResponse::default()),
        ];
        for r in &mut responses {
            // The crate's default is the empty string this pass exists for.
            assert!(message_of(r).iter().all(|m| m.as_deref() == Some("")));
            null_empty_messages(r);
            assert!(message_of(r).iter().all(Option::is_none), "{r:?}");
        }
        let mut error = ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(
            vec![create_topics_response::CreatableTopicResult::default()
                .with_error_message(Some(StrBytes::from_static_str("topic already exists")))],
        ));
        null_empty_messages(&mut error);
        assert_eq!(
            message_of(&error),
            vec![Some(StrBytes::from_static_str("topic already exists"))]
        );
    }
}
