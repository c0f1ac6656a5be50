//! ListOffsets v0, written by hand: `kafka-protocol` 0.18 follows Kafka 4.0, which removed it
//! (KIP-896), but older clients (kafkajs, older Sarama and kafka-python configured for old
//! brokers) still send it. The request is decoded into the v1 shape the handler serves, and the
//! v1-shaped answer is written back in v0's layout, so there is one handler for both.
//!
//! Request v0: `replica_id: i32, topics: [name: string, partitions: [partition: i32,
//! timestamp: i64, max_num_offsets: i32]]`. Response v0: `topics: [name: string, partitions:
//! [partition: i32, error_code: i16, old_style_offsets: [i64]]]` (no throttle time, no header
//! tagged fields). At most one offset is answered per partition (Kafka's v0 could list several
//! segment base offsets up to `max_num_offsets`; one is what clients ask for), none when no
//! offset was found or on an error. The body has already passed the allocation guard, which
//! bounds every array count by the bytes left.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, ListOffsetsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

fn need(body: &Bytes, n: usize, what: &str) -> Result<(), String> {
    if body.remaining() < n {
        return Err(format!("truncated at {what}"));
    }
    Ok(())
}

fn i32_at(body: &mut Bytes, what: &str) -> Result<i32, String> {
    need(body, 4, what)?;
    Ok(body.get_i32())
}

fn count(body: &mut Bytes, what: &str) -> Result<usize, String> {
    let n = i32_at(body, what)?;
    usize::try_from(n).map_err(|_| format!("negative {what} count {n}"))
}

fn string(body: &mut Bytes, what: &str) -> Result<StrBytes, String> {
    need(body, 2, what)?;
    let len = body.get_i16();
    let len = usize::try_from(len).map_err(|_| format!("null or negative {what}"))?;
    need(body, len, what)?;
    StrBytes::from_utf8(body.split_to(len)).map_err(|e| format!("{what} is not UTF-8: {e}"))
}

/// Decodes a v0 request body (after the header) into the v1 shape.
pub fn decode_request(body: &mut Bytes) -> Result<ListOffsetsRequest, String> {
    let mut request =
        ListOffsetsRequest::default().with_replica_id(BrokerId(i32_at(body, "replica id")?));
    let topics = count(body, "topic")?;
    for _ in 0..topics {
        let mut topic =
            ListOffsetsTopic::default().with_name(TopicName(string(body, "topic name")?));
        let partitions = count(body, "partition")?;
        for _ in 0..partitions {
            need(body, 16, "partition")?;
            let partition_index = body.get_i32();
            let timestamp = body.get_i64();
            let _max_num_offsets = body.get_i32();
            topic.partitions.push(
                ListOffsetsPartition::default()
                    .with_partition_index(partition_index)
                    .with_timestamp(timestamp),
            );
        }
        request.topics.push(topic);
    }
    if body.has_remaining() {
        return Err(format!("{} bytes after the request", body.remaining()));
    }
    Ok(request)
}

/// Encodes a request in v0 (one offset asked per partition): for tests and the fuzz target's
/// round trip.
pub fn encode_request(request: &ListOffsetsRequest, buf: &mut BytesMut) {
    buf.put_i32(request.replica_id.0);
    buf.put_i32(request.topics.len() as i32);
    for topic in &request.topics {
        put_string(buf, &topic.name.0);
        buf.put_i32(topic.partitions.len() as i32);
        for partition in &topic.partitions {
            buf.put_i32(partition.partition_index);
            buf.put_i64(partition.timestamp);
            buf.put_i32(1);
        }
    }
}

fn put_string(buf: &mut BytesMut, s: &StrBytes) {
    // Names come from a decoded request (an i16 length) or the broker's own short names.
    let bytes = s.as_bytes();
    let len = bytes.len().min(i16::MAX as usize);
    buf.put_i16(len as i16);
    buf.put_slice(&bytes[..len]);
}

/// Writes the v1-shaped answer in v0's layout: an offset of -1 (none found) or an error is an
/// empty offsets list.
pub fn encode_response(response: &ListOffsetsResponse, buf: &mut BytesMut) {
    buf.put_i32(response.topics.len() as i32);
    for topic in &response.topics {
        put_string(buf, &topic.name.0);
        buf.put_i32(topic.partitions.len() as i32);
        for partition in &topic.partitions {
            buf.put_i32(partition.partition_index);
            buf.put_i16(partition.error_code);
            if partition.error_code == 0 && partition.offset >= 0 {
                buf.put_i32(1);
                buf.put_i64(partition.offset);
            } else {
                buf.put_i32(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::list_offsets_response::{
        ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
    };

    #[test]
    fn request_round_trip_and_the_guard_agrees() {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                    ListOffsetsPartition::default()
                        .with_partition_index(3)
                        .with_timestamp(1_700_000_000_000),
                ])]);
        let mut buf = BytesMut::new();
        encode_request(&request, &mut buf);
        let body = buf.freeze();
        assert_eq!(
            crate::guard::check_request(kafka_protocol::messages::ApiKey::ListOffsets, 0, &body),
            Ok(())
        );
        let decoded = decode_request(&mut body.clone()).unwrap();
        assert_eq!(decoded, request);
        // Every strict prefix, and a trailing byte, is refused.
        for cut in 0..body.len() {
            assert!(decode_request(&mut body.slice(..cut)).is_err(), "cut {cut}");
        }
        let mut longer = BytesMut::from(&body[..]);
        longer.put_u8(0);
        assert!(decode_request(&mut longer.freeze()).is_err());
    }

    #[test]
    fn response_layout() {
        let response =
            ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("ab")))
                .with_partitions(vec![
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(1)
                        .with_offset(42),
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(2)
                        .with_offset(-1),
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(9)
                        .with_error_code(3)
                        .with_offset(-1),
                ])]);
        let mut buf = BytesMut::new();
        encode_response(&response, &mut buf);
        let mut expected = BytesMut::new();
        expected.put_i32(1);
        expected.put_i16(2);
        expected.put_slice(b"ab");
        expected.put_i32(3);
        expected.put_i32(1);
        expected.put_i16(0);
        expected.put_i32(1);
        expected.put_i64(42);
        expected.put_i32(2);
        expected.put_i16(0);
        expected.put_i32(0);
        expected.put_i32(9);
        expected.put_i16(3);
        expected.put_i32(0);
        assert_eq!(buf, expected);
    }
}
