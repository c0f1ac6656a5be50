//! Produce v0–2 and Fetch v0–3, the versions that carry message format v0/v1 (magic 0 and 1):
//! refused with an answer rather than a closed connection. Kafka 4.0 removed them (KIP-896) and
//! `kafka-protocol` 0.18 follows, so neither the requests nor legacy message sets decode with it.
//! Magnetar does not serve them either (README, "Message format v0/v1"), but a client that still
//! sends them (kafka-python with `api_version=(0, 10, 1)` or `(0, 9)`, 0.10-era tools) gets a
//! response in its own version with UNSUPPORTED_VERSION on every partition it named, which such
//! clients raise at once as a non-retriable error, instead of a closed connection they retry
//! until a timeout. A produce with `acks=0` expects no response: it is refused by closing the
//! connection, as before.
//!
//! Only the request's topic and partition numbers are read (written by hand, with every count
//! bounded by the bytes left and by [`PARTITIONS_MAX`]); record bytes are skipped, never decoded.
//!
//! Produce request v0–2: `acks: i16, timeout_ms: i32, topics: [name: string, partitions:
//! [index: i32, records: bytes]]`. Response: `topics: [name: string, partitions: [index: i32,
//! error_code: i16, base_offset: i64, log_append_time_ms: i64 (v2)]], throttle_time_ms: i32
//! (v1+)`.
//! Fetch request v0–3: `replica_id: i32, max_wait_ms: i32, min_bytes: i32, max_bytes: i32 (v3),
//! topics: [name: string, partitions: [index: i32, fetch_offset: i64, max_bytes: i32]]`.
//! Response: `throttle_time_ms: i32 (v1+), topics: [name: string, partitions: [index: i32,
//! error_code: i16, high_watermark: i64, records: bytes]]`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;

/// Partitions named in one refused request, over all its topics: a bound on the answer's size.
pub const PARTITIONS_MAX: usize = 100_000;

/// The error every partition of a refused request gets.
pub const REFUSAL: i16 = ResponseError::UnsupportedVersion.code();

/// Whether `api_key` at `version` is one of the removed versions answered here.
pub fn answered(api_key: ApiKey, version: i16) -> bool {
    matches!(
        (api_key, version),
        (ApiKey::Produce, 0..=2) | (ApiKey::Fetch, 0..=3)
    )
}

/// What a refused request named.
#[derive(Debug, PartialEq, Eq)]
pub struct Named {
    /// `false` for a produce with `acks=0`: no response is expected.
    pub expects_response: bool,
    pub topics: Vec<(Bytes, Vec<i32>)>,
}

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

fn count(body: &mut Bytes, what: &str, each_bytes_min: usize) -> Result<usize, String> {
    let n = i32_at(body, what)?;
    let n = usize::try_from(n).map_err(|_| format!("negative {what} count {n}"))?;
    // Every element takes at least `each_bytes_min` bytes: a count beyond what is left is a lie.
    if n > body.remaining() / each_bytes_min.max(1) {
        return Err(format!("{what} count {n} exceeds the bytes left"));
    }
    Ok(n)
}

fn string(body: &mut Bytes, what: &str) -> Result<Bytes, String> {
    need(body, 2, what)?;
    let len = body.get_i16();
    let len = usize::try_from(len).map_err(|_| format!("null or negative {what}"))?;
    need(body, len, what)?;
    Ok(body.split_to(len))
}

/// Reads the topics and partitions of a Produce v0–2 or Fetch v0–3 body (after the header).
pub fn decode_request(api_key: ApiKey, version: i16, body: &mut Bytes) -> Result<Named, String> {
    let mut expects_response = true;
    match api_key {
        ApiKey::Produce => {
            need(body, 6, "acks and timeout")?;
            expects_response = body.get_i16() != 0;
            body.advance(4);
        }
        ApiKey::Fetch => {
            let fixed = if version >= 3 { 16 } else { 12 };
            need(body, fixed, "fetch limits")?;
            body.advance(fixed);
        }
        other => return Err(format!("{other:?} has no removed version answered here")),
    }
    let mut partitions_total = 0usize;
    let topics_count = count(body, "topic", 6)?;
    let mut topics = Vec::with_capacity(topics_count.min(1024));
    for _ in 0..topics_count {
        let name = string(body, "topic name")?;
        let per_partition = if api_key == ApiKey::Produce { 8 } else { 16 };
        let n = count(body, "partition", per_partition)?;
        partitions_total += n;
        if partitions_total > PARTITIONS_MAX {
            return Err(format!("more than {PARTITIONS_MAX} partitions"));
        }
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            let index = i32_at(body, "partition index")?;
            if api_key == ApiKey::Produce {
                let size = i32_at(body, "records size")?;
                // -1 is null records; records are skipped unread.
                if size < -1 {
                    return Err(format!("records size {size}"));
                }
                if size >= 0 {
                    let size = size as usize;
                    need(body, size, "records")?;
                    body.advance(size);
                }
            } else {
                need(body, 12, "fetch offset and max bytes")?;
                body.advance(12);
            }
            partitions.push(index);
        }
        topics.push((name, partitions));
    }
    if body.has_remaining() {
        return Err(format!("{} bytes after the request", body.remaining()));
    }
    Ok(Named {
        expects_response,
        topics,
    })
}

/// Writes the whole response frame (length prefix, correlation id, body) at the request's
/// version, every partition answered with [`REFUSAL`].
pub fn encode_response(api_key: ApiKey, version: i16, correlation_id: i32, named: &Named) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    if api_key == ApiKey::Fetch && version >= 1 {
        buf.put_i32(0); // throttle time
    }
    buf.put_i32(named.topics.len() as i32);
    for (name, partitions) in &named.topics {
        buf.put_i16(name.len() as i16); // read with an i16 length
        buf.put_slice(name);
        buf.put_i32(partitions.len() as i32);
        for index in partitions {
            buf.put_i32(*index);
            buf.put_i16(REFUSAL);
            buf.put_i64(-1); // base offset / high watermark
            if api_key == ApiKey::Produce && version >= 2 {
                buf.put_i64(-1); // log append time
            }
            if api_key == ApiKey::Fetch {
                buf.put_i32(0); // no records
            }
        }
    }
    if api_key == ApiKey::Produce && version >= 1 {
        buf.put_i32(0); // throttle time
    }
    let length = (buf.len() - 4) as i32; // bounded by PARTITIONS_MAX and the request's names
    buf[..4].copy_from_slice(&length.to_be_bytes());
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (partition, records bytes)
    type Partition<'a> = (i32, &'a [u8]);

    fn produce_body(acks: i16, topics: &[(&str, &[Partition<'_>])]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(acks);
        b.put_i32(30_000);
        b.put_i32(topics.len() as i32);
        for (name, partitions) in topics {
            b.put_i16(name.len() as i16);
            b.put_slice(name.as_bytes());
            b.put_i32(partitions.len() as i32);
            for (index, records) in *partitions {
                b.put_i32(*index);
                b.put_i32(records.len() as i32);
                b.put_slice(records);
            }
        }
        b.freeze()
    }

    #[test]
    fn produce_v2_is_answered_per_partition() {
        // a magic 1 message (its bytes are never read)
        let message = [0u8; 34];
        let mut body = produce_body(1, &[("t", &[(0, &message), (3, &[])])]);
        let named = decode_request(ApiKey::Produce, 2, &mut body).unwrap();
        assert!(named.expects_response);
        assert_eq!(named.topics, vec![(Bytes::from_static(b"t"), vec![0, 3])]);
        let frame = encode_response(ApiKey::Produce, 2, 9, &named);
        let mut expected = BytesMut::new();
        expected.put_i32(9);
        expected.put_i32(1);
        expected.put_i16(1);
        expected.put_slice(b"t");
        expected.put_i32(2);
        for index in [0, 3] {
            expected.put_i32(index);
            expected.put_i16(35);
            expected.put_i64(-1);
            expected.put_i64(-1);
        }
        expected.put_i32(0);
        assert_eq!(&frame[4..], &expected[..]);
        assert_eq!(
            i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
    }

    #[test]
    fn produce_v0_has_no_throttle_time_and_acks_0_expects_nothing() {
        let mut body = produce_body(0, &[("t", &[(1, b"x")])]);
        let named = decode_request(ApiKey::Produce, 0, &mut body).unwrap();
        assert!(!named.expects_response);
        let frame = encode_response(ApiKey::Produce, 0, 1, &named);
        // id, topic count, name, partition count, (index, error, base offset)
        assert_eq!(frame.len(), 4 + 4 + 4 + 3 + 4 + 14);
    }

    #[test]
    fn fetch_v3_and_v0_are_answered_per_partition() {
        for version in [0i16, 3] {
            let mut b = BytesMut::new();
            b.put_i32(-1);
            b.put_i32(500);
            b.put_i32(1);
            if version >= 3 {
                b.put_i32(1 << 20);
            }
            b.put_i32(1);
            b.put_i16(2);
            b.put_slice(b"tt");
            b.put_i32(1);
            b.put_i32(4);
            b.put_i64(17);
            b.put_i32(1 << 20);
            let mut body = b.freeze();
            let named = decode_request(ApiKey::Fetch, version, &mut body).unwrap();
            assert_eq!(named.topics, vec![(Bytes::from_static(b"tt"), vec![4])]);
            let frame = encode_response(ApiKey::Fetch, version, 5, &named);
            let throttle = if version >= 1 { 4 } else { 0 };
            let mut at = 8 + throttle + 4 + 4 + 4;
            assert_eq!(&frame[at..at + 4], &4i32.to_be_bytes());
            at += 4;
            assert_eq!(&frame[at..at + 2], &35i16.to_be_bytes());
            assert_eq!(frame.len(), at + 2 + 8 + 4);
        }
    }

    #[test]
    fn truncated_lying_and_trailing_bodies_are_errors_not_panics() {
        let good = produce_body(1, &[("topic", &[(0, b"abcdef")])]);
        for cut in 0..good.len() {
            let mut body = good.slice(..cut);
            assert!(
                decode_request(ApiKey::Produce, 2, &mut body).is_err(),
                "{cut}"
            );
        }
        let mut trailing = BytesMut::from(&good[..]);
        trailing.put_u8(0);
        assert!(decode_request(ApiKey::Produce, 2, &mut trailing.freeze()).is_err());
        // a topic count far beyond the bytes left is refused before any allocation
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i32(0);
        b.put_i32(i32::MAX);
        assert!(decode_request(ApiKey::Produce, 1, &mut b.freeze())
            .unwrap_err()
            .contains("exceeds"));
        // a negative records size other than -1 (null) is an error
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i32(0);
        b.put_i32(1);
        b.put_i16(1);
        b.put_slice(b"t");
        b.put_i32(1);
        b.put_i32(0);
        b.put_i32(-5);
        assert!(decode_request(ApiKey::Produce, 1, &mut b.freeze()).is_err());
        assert!(decode_request(ApiKey::Metadata, 0, &mut Bytes::new()).is_err());
    }

    proptest::proptest! {
        /// Any body: an error or a bounded answer, never a panic; an answer's length prefix is
        /// its length.
        #[test]
        fn any_body_decodes_or_errors(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256), fetch: bool, version in 0i16..4) {
            let api = if fetch { ApiKey::Fetch } else { ApiKey::Produce };
            let version = if fetch { version } else { version.min(2) };
            if let Ok(named) = decode_request(api, version, &mut Bytes::from(bytes)) {
                let frame = encode_response(api, version, 1, &named);
                proptest::prop_assert_eq!(i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize, frame.len() - 4);
            }
        }
    }

    #[test]
    fn only_the_removed_produce_and_fetch_versions_are_answered() {
        assert!(answered(ApiKey::Produce, 0) && answered(ApiKey::Produce, 2));
        assert!(!answered(ApiKey::Produce, 3));
        assert!(answered(ApiKey::Fetch, 0) && answered(ApiKey::Fetch, 3));
        assert!(!answered(ApiKey::Fetch, 4));
        assert!(!answered(ApiKey::Metadata, 0));
    }
}
