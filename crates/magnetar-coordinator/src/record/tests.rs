//! Codec tests against byte vectors written out from Kafka's JSON schemas by hand.

use super::*;
use crate::batch::{decode_batch, encode_batch};
use proptest::prelude::*;

fn offset_record() -> CoordinatorRecord {
    CoordinatorRecord::OffsetCommit {
        key: OffsetCommitKey {
            group: "g".into(),
            topic: "t".into(),
            partition: 1,
        },
        value: Some(OffsetCommitValue {
            offset: 42,
            leader_epoch: 5,
            metadata: "m".into(),
            commit_timestamp_ms: 1000,
            expire_timestamp_ms: -1,
        }),
    }
}

fn group_record() -> CoordinatorRecord {
    CoordinatorRecord::GroupMetadata {
        key: GroupMetadataKey { group: "g".into() },
        value: Some(GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 1,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp_ms: 7,
            members: vec![MemberMetadata {
                member_id: "m1".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/h".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 10_000,
                subscription: Bytes::from_static(&[1, 2]),
                assignment: Bytes::from_static(&[3]),
            }],
        }),
    }
}

#[test]
fn offset_commit_key_v1_and_value_v3_bytes() {
    let r = offset_record();
    // OffsetCommitKey: version int16 = 1, group string, topic string, partition int32.
    assert_eq!(
        r.encode_key().unwrap(),
        vec![0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 1]
    );
    // OffsetCommitValue v3: offset int64, leaderEpoch int32, metadata string,
    // commitTimestamp int64.
    let value = vec![
        0, 3, 0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 5, 0, 1, b'm', 0, 0, 0, 0, 0, 0, 0x03, 0xe8,
    ];
    assert_eq!(r.encode_value().unwrap(), Some(value.clone()));
    let decoded = CoordinatorRecord::decode(&r.encode_key().unwrap(), Some(&value)).unwrap();
    assert_eq!(decoded, DecodedRecord::Known(r));
}

#[test]
fn group_metadata_key_v2_and_value_v3_bytes() {
    let r = group_record();
    assert_eq!(r.encode_key().unwrap(), vec![0, 2, 0, 1, b'g']);
    let mut value = vec![0, 3];
    value.extend_from_slice(&[0, 8]);
    value.extend_from_slice(b"consumer");
    value.extend_from_slice(&[0, 0, 0, 1]); // generation
    value.extend_from_slice(&[0, 5]);
    value.extend_from_slice(b"range");
    value.extend_from_slice(&[0, 2, b'm', b'1']); // leader
    value.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]); // currentStateTimestamp
    value.extend_from_slice(&[0, 0, 0, 1]); // one member
    value.extend_from_slice(&[0, 2, b'm', b'1']); // memberId
    value.extend_from_slice(&[0xff, 0xff]); // groupInstanceId null
    value.extend_from_slice(&[0, 1, b'c']); // clientId
    value.extend_from_slice(&[0, 2, b'/', b'h']); // clientHost
    value.extend_from_slice(&300_000i32.to_be_bytes()); // rebalanceTimeout
    value.extend_from_slice(&10_000i32.to_be_bytes()); // sessionTimeout
    value.extend_from_slice(&[0, 0, 0, 2, 1, 2]); // subscription
    value.extend_from_slice(&[0, 0, 0, 1, 3]); // assignment
    assert_eq!(r.encode_value().unwrap(), Some(value.clone()));
    let decoded = CoordinatorRecord::decode(&[0, 2, 0, 1, b'g'], Some(&value)).unwrap();
    assert_eq!(decoded, DecodedRecord::Known(r));
}

#[test]
fn old_value_versions_decode() {
    // OffsetCommitValue v1: offset, metadata, commitTimestamp, expireTimestamp.
    let mut v1 = vec![0, 1];
    v1.extend_from_slice(&9i64.to_be_bytes());
    v1.extend_from_slice(&[0, 0]);
    v1.extend_from_slice(&5i64.to_be_bytes());
    v1.extend_from_slice(&99i64.to_be_bytes());
    let key = [0, 0, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 0]; // key version 0
    let DecodedRecord::Known(CoordinatorRecord::OffsetCommit { value: Some(v), .. }) =
        CoordinatorRecord::decode(&key, Some(&v1)).unwrap()
    else {
        panic!("not an offset commit");
    };
    assert_eq!(
        (
            v.offset,
            v.leader_epoch,
            v.commit_timestamp_ms,
            v.expire_timestamp_ms
        ),
        (9, -1, 5, 99)
    );

    // GroupMetadataValue v0: no currentStateTimestamp, no rebalanceTimeout, no instance id.
    let mut v0 = vec![0, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff];
    v0.extend_from_slice(&[0, 0, 0, 0]);
    let DecodedRecord::Known(CoordinatorRecord::GroupMetadata { value: Some(g), .. }) =
        CoordinatorRecord::decode(&[0, 2, 0, 1, b'g'], Some(&v0)).unwrap()
    else {
        panic!("not group metadata");
    };
    assert_eq!(
        (g.generation, g.protocol, g.current_state_timestamp_ms),
        (3, None, -1)
    );
}

#[test]
fn tombstones_and_unknown_keys() {
    let key = offset_record().encode_key().unwrap();
    let DecodedRecord::Known(r) = CoordinatorRecord::decode(&key, None).unwrap() else {
        panic!("unknown");
    };
    assert_eq!(r.encode_value().unwrap(), None);
    // KIP-848 consumer group records use key versions 3 and up.
    assert_eq!(
        CoordinatorRecord::decode(&[0, 3, 0, 0], Some(&[0, 0])).unwrap(),
        DecodedRecord::Unknown(3)
    );
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    assert!(CoordinatorRecord::decode(&[], None).is_err());
    assert!(CoordinatorRecord::decode(&[0, 1, 0, 9, b'g'], None).is_err());
    assert!(CoordinatorRecord::decode(&[0, 2, 0, 1, b'g'], Some(&[0, 9])).is_err());
    // A huge member count with no bytes behind it.
    let value = [
        0, 3, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff,
        0xff,
    ];
    assert!(CoordinatorRecord::decode(&[0, 2, 0, 1, b'g'], Some(&value)).is_err());
}

#[test]
fn batch_layout_is_kafka_v2() {
    let records = vec![(vec![1u8, 2], Some(vec![3u8])), (vec![4u8], None)];
    let batch = encode_batch(&records, 1_000);
    assert_eq!(&batch[0..8], &[0; 8]); // base offset, written by the log
    assert_eq!(
        i32::from_be_bytes(batch[8..12].try_into().unwrap()) as usize,
        batch.len() - 12
    );
    assert_eq!(batch[16], 2); // magic
    let crc = u32::from_be_bytes(batch[17..21].try_into().unwrap());
    assert_eq!(crc, crc32c::crc32c(&batch[21..]));
    assert_eq!(&batch[21..23], &[0, 0]); // attributes
    assert_eq!(&batch[23..27], &[0, 0, 0, 1]); // last offset delta
    assert_eq!(&batch[43..51], &(-1i64).to_be_bytes()); // producer id
    assert_eq!(&batch[57..61], &[0, 0, 0, 2]); // record count
                                               // Record 0: length 9 (zigzag 18), attributes 0, timestamp delta 0, offset delta 0,
                                               // key length 2 (zigzag 4) and key, value length 1 (zigzag 2) and value, 0 headers.
    assert_eq!(&batch[61..71], &[18, 0, 0, 0, 4, 1, 2, 2, 3, 0]);
    // Record 1: a tombstone has value length -1 (zigzag 1).
    assert_eq!(&batch[71..], &[14, 0, 0, 2, 2, 4, 1, 0]);
    let decoded = decode_batch(&Bytes::from(batch.clone())).unwrap();
    assert_eq!(decoded.records.len(), 2);
    assert_eq!(&decoded.records[0].0[..], &[1, 2]);
    assert_eq!(decoded.records[0].1.as_deref(), Some(&[3u8][..]));
    assert_eq!(decoded.records[1].1, None);

    let mut corrupt = batch;
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(decode_batch(&Bytes::from(corrupt)).is_err());
}

fn arb_string() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{0,20}"
}

fn arb_record() -> impl Strategy<Value = CoordinatorRecord> {
    let offset = (
        arb_string(),
        arb_string(),
        any::<i32>(),
        proptest::option::of((any::<i64>(), any::<i32>(), arb_string(), any::<i64>())),
    )
        .prop_map(
            |(group, topic, partition, value)| CoordinatorRecord::OffsetCommit {
                key: OffsetCommitKey {
                    group,
                    topic,
                    partition,
                },
                value: value.map(|(offset, leader_epoch, metadata, commit_timestamp_ms)| {
                    OffsetCommitValue {
                        offset,
                        leader_epoch,
                        metadata,
                        commit_timestamp_ms,
                        expire_timestamp_ms: -1,
                    }
                }),
            },
        );
    let member = (
        arb_string(),
        proptest::option::of(arb_string()),
        arb_string(),
        arb_string(),
        any::<i32>(),
        any::<i32>(),
        proptest::collection::vec(any::<u8>(), 0..16),
        proptest::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(
            |(member_id, group_instance_id, client_id, client_host, r, s, sub, asg)| {
                MemberMetadata {
                    member_id,
                    group_instance_id,
                    client_id,
                    client_host,
                    rebalance_timeout_ms: r.max(0),
                    session_timeout_ms: s,
                    subscription: Bytes::from(sub),
                    assignment: Bytes::from(asg),
                }
            },
        );
    let group = (
        arb_string(),
        proptest::option::of((
            arb_string(),
            any::<i32>(),
            proptest::option::of(arb_string()),
            proptest::option::of(arb_string()),
            any::<i64>(),
            proptest::collection::vec(member, 0..4),
        )),
    )
        .prop_map(|(group, value)| CoordinatorRecord::GroupMetadata {
            key: GroupMetadataKey { group },
            value: value.map(
                |(protocol_type, generation, protocol, leader, ts, members)| GroupMetadataValue {
                    protocol_type,
                    generation,
                    protocol,
                    leader,
                    current_state_timestamp_ms: ts,
                    members,
                },
            ),
        });
    prop_oneof![offset, group]
}

proptest! {
    #[test]
    fn records_round_trip_through_batches(records in proptest::collection::vec(arb_record(), 1..20), ts in any::<i64>()) {
        let raw: Vec<_> = records.iter().map(|r| (r.encode_key().unwrap(), r.encode_value().unwrap())).collect();
        let batch = decode_batch(&Bytes::from(encode_batch(&raw, ts))).unwrap();
        prop_assert_eq!(batch.records.len(), records.len());
        for (record, (k, v)) in records.iter().zip(&batch.records) {
            prop_assert_eq!(CoordinatorRecord::decode(k, v.as_deref()).unwrap(), DecodedRecord::Known(record.clone()));
        }
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200))) {
        let _ = CoordinatorRecord::decode(&bytes, value.as_deref());
        let _ = decode_batch(&Bytes::from(bytes));
    }
}
