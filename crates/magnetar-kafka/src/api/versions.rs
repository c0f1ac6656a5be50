//! The table of what is served: every API with the versions advertised in ApiVersions and
//! decoded by [`crate::codec`]. A leaf: it imports nothing from the handlers, the dispatcher or
//! the codec, so the codec can consult it without depending on the code that serves requests.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// Every API served, with the versions advertised in ApiVersions. Exactly these are decoded;
/// anything else closes the connection. (kafka-protocol 0.18 decodes CreateTopics from v2,
/// DeleteTopics from v1, DescribeConfigs from v1 and OffsetForLeaderEpoch from v2, so older
/// versions of those are not offered; ListOffsets v0 is decoded by hand, see [`HAND_DECODED`].)
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 0, 9),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::AlterReplicaLogDirs, 1, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 0),
    (ApiKey::DescribeProducers, 0, 0),
];

/// Served only on a listener with SASL (`SASL_PLAINTEXT`, `SASL_SSL`) and advertised only there,
/// answered by the connection's SASL state ([`crate::sasl`]). The SCRAM credential and ACL APIs are
/// in [`SUPPORTED`]: Kafka serves them on every listener (their handlers decide who may use them).
pub const SASL_SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// Versions served that kafka-protocol 0.18 cannot decode (Kafka 4.0 removed them), with a
/// codec of our own (`crate::codec::list_offsets_v0`): ListOffsets v0, still sent by kafkajs and
/// by clients configured for old brokers.
pub const HAND_DECODED: &[(ApiKey, i16)] = &[(ApiKey::ListOffsets, 0)];

/// Whether `version` of `api_key` goes through a hand-written codec ([`HAND_DECODED`]).
pub fn hand_decoded(api_key: ApiKey, version: i16) -> bool {
    HAND_DECODED.contains(&(api_key, version))
}

pub fn supported(api_key: ApiKey) -> Option<(i16, i16)> {
    supported_on(api_key, false)
}

/// The versions served of `api_key`, with the SASL APIs when `sasl` is set.
pub fn supported_on(api_key: ApiKey, sasl: bool) -> Option<(i16, i16)> {
    let sasl_table: &[(ApiKey, i16, i16)] = if sasl { SASL_SUPPORTED } else { &[] };
    SUPPORTED
        .iter()
        .chain(sasl_table)
        .find(|(k, _, _)| *k == api_key)
        .map(|(_, min, max)| (*min, *max))
}

/// The ApiVersions answer for this table, with the SASL APIs on a listener that requires SASL.
pub fn versions(sasl: bool) -> ApiVersionsResponse {
    let sasl_table: &[_] = if sasl { SASL_SUPPORTED } else { &[] };
    let mut response = ApiVersionsResponse::default();
    response.api_keys = SUPPORTED
        .iter()
        .chain(sasl_table)
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect();
    response
}

/// [`versions`] of a listener without SASL (the KIP-511 answer to an unknown ApiVersions version).
pub fn supported_versions() -> ApiVersionsResponse {
    versions(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_versions_are_decodable_by_the_crate() {
        for (api, min, max) in SUPPORTED.iter().chain(SASL_SUPPORTED) {
            let range = api.valid_versions();
            let min_decoded = (*min..=*max)
                .find(|v| !hand_decoded(*api, *v))
                .unwrap_or(*max);
            assert!(range.min <= min_decoded && *max <= range.max, "{api:?}");
            assert!(
                crate::guard::schema(*api).is_some(),
                "{api:?} has no guard schema"
            );
        }
    }

    /// The advertised set is Kafka 4.1.0's (kafka-protocol 0.18's generated ranges) but for
    /// ListOffsets v0 and the maxima below, which the README lists; a change to either shows here.
    #[test]
    fn the_set_follows_kafka_4_1_with_the_documented_differences() {
        let lower_max = [
            (ApiKey::Produce, 11, 13),
            (ApiKey::Fetch, 17, 18),
            (ApiKey::ListOffsets, 9, 10),
            (ApiKey::Metadata, 12, 13),
            (ApiKey::DescribeCluster, 1, 2),
            (ApiKey::DescribeGroups, 5, 6),
            (ApiKey::OffsetCommit, 9, 10),
            (ApiKey::OffsetFetch, 9, 10),
            (ApiKey::InitProducerId, 5, 6),
            (ApiKey::AddPartitionsToTxn, 3, 5),
            (ApiKey::AddOffsetsToTxn, 3, 4),
            (ApiKey::TxnOffsetCommit, 3, 5),
            (ApiKey::EndTxn, 3, 5),
            (ApiKey::ListTransactions, 0, 2),
        ];
        for (api, min, max) in SUPPORTED.iter().chain(SASL_SUPPORTED) {
            let kafka = api.valid_versions();
            let expected_min = if hand_decoded(*api, *min) {
                kafka.min - 1
            } else {
                kafka.min
            };
            assert_eq!(*min, expected_min, "{api:?} lowest version");
            match lower_max.iter().find(|(k, _, _)| k == api) {
                Some((_, ours, theirs)) => {
                    assert_eq!((*max, kafka.max), (*ours, *theirs), "{api:?}")
                }
                None => assert_eq!(*max, kafka.max, "{api:?} highest version"),
            }
        }
    }

    /// The table is a leaf and the codec reads only the table: neither imports the handlers or
    /// the dispatcher, so there is no import loop between the codec and the API modules.
    #[test]
    fn the_table_and_the_codec_import_no_handler() {
        fn imports(source: &str) -> Vec<&str> {
            let code = source.split("#[cfg(test)]").next().unwrap_or(source);
            code.lines()
                .map(str::trim_start)
                .filter(|l| l.starts_with("use crate::") || l.starts_with("use super::"))
                .collect()
        }
        assert_eq!(imports(include_str!("versions.rs")), Vec::<&str>::new());
        let codec = imports(include_str!("../codec.rs"));
        assert!(
            codec
                .iter()
                .filter(|l| l.contains("api"))
                .all(|l| *l == "use crate::api::versions;"),
            "{codec:?}"
        );
    }

    #[test]
    fn sasl_apis_are_served_only_with_sasl() {
        assert_eq!(supported_on(ApiKey::SaslHandshake, false), None);
        assert_eq!(supported_on(ApiKey::SaslHandshake, true), Some((0, 1)));
        assert_eq!(supported(ApiKey::Produce), Some((3, 11)));
        assert!(!versions(false)
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::SaslAuthenticate as i16));
        assert!(versions(true)
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::SaslAuthenticate as i16));
    }
}
