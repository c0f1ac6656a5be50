//! Kafka front end: request framing, the allocation guard and `kafka-protocol` decoding
//! ([`request`]); the produce batch validator ([`batch`]).

use bytes::{Bytes, BytesMut};
use magnetar_kafka::codec::{decode_request_on, encode_request_body, Decoded};
use magnetar_kafka::frame::{parse_header, take_frame, HEADER_LEN_MIN};
use magnetar_kafka::validate::{validate_batch, Limits};

/// Frame limit used by the target: small, so "too large" is reachable.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Most frames taken from one input.
const FRAMES_MAX: usize = 16;

/// Input: a flags byte (bit 0: SASL APIs allowed), then a byte stream of length-prefixed
/// requests as a client sends them.
///
/// Properties: a frame is never longer than the limit nor shorter than a header; `Ok(None)`
/// only while the announced frame is incomplete; a decoded request re-encodes (with the
/// `kafka-protocol` encoder at its version) to a body that decodes to the same request.
pub fn request(data: &[u8]) {
    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    let sasl = flags & 1 != 0;
    let mut buf = BytesMut::from(stream);
    for _ in 0..FRAMES_MAX {
        let before = buf.len();
        match take_frame(&mut buf, MAX_REQUEST_BYTES) {
            Ok(Some(frame)) => {
                assert!(frame.len() <= MAX_REQUEST_BYTES && frame.len() >= HEADER_LEN_MIN);
                assert_eq!(before, buf.len() + 4 + frame.len(), "take_frame lost bytes");
                decode_one(frame, sasl);
            }
            Ok(None) => {
                if let Some(p) = buf.get(..4) {
                    let announced = i32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                    assert!(
                        usize::try_from(announced).is_ok_and(|n| buf.len() < 4 + n),
                        "take_frame waits although the frame is complete"
                    );
                }
                return;
            }
            Err(_) => return,
        }
    }
}

fn decode_one(frame: Bytes, sasl: bool) {
    let Ok(Decoded::Request(request)) = decode_request_on(frame.clone(), sasl) else {
        return;
    };
    let version = request.header.api_version;
    let mut rest = frame.clone();
    let header = parse_header(&mut rest, request.api_key.request_header_version(version))
        .expect("a decoded request's header parses");
    assert_eq!(header, request.header);
    let header_len = frame.len() - rest.len();
    let mut again = BytesMut::from(&frame[..header_len]);
    encode_request_body(&request, &mut again).expect("a decoded request encodes at its version");
    match decode_request_on(again.freeze(), sasl) {
        Ok(Decoded::Request(second)) => {
            assert_eq!(
                second.body, request.body,
                "decode -> encode -> decode differs"
            )
        }
        Ok(Decoded::UnsupportedApiVersions { .. } | Decoded::RemovedVersion { .. }) => {
            panic!("re-encoded request lost its version")
        }
        Err(e) => panic!("re-encoded request does not decode: {e}"),
    }
}

/// Limit on decompressed records in the target (small, so bombs stay cheap).
const DECOMPRESSED_BYTES_MAX: usize = 1 << 20;

/// Input: a flags byte, then one record batch. Unless flag bit 0 is set, the batch's length
/// and CRC fields are fixed up first ([`crate::fix_kafka_batch`]) so the records get checked.
/// Bits 1, 2 and 3 pick `offset_deltas_rewritten`, `log_append_time` and `key_required`.
///
/// Properties of an accepted batch: its length field is the input's length; the independent
/// decoder of magnetar-format (which serves fetches and conversions) decodes it to exactly
/// `record count` records; offset deltas are `0..n` unless they will be rewritten; the max
/// timestamp is the records' largest; decompressed bytes stay under the limit.
pub fn batch(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if flags & 1 == 0 {
        crate::fix_kafka_batch(&mut bytes);
    }
    let limits = Limits {
        decompressed_bytes_max: DECOMPRESSED_BYTES_MAX,
        offset_deltas_rewritten: flags & 2 != 0,
        log_append_time: flags & 4 != 0,
        key_required: flags & 8 != 0,
        ..Limits::default()
    };
    let Ok(valid) = validate_batch(&bytes, &limits) else {
        return;
    };
    assert_eq!(valid.header.size, bytes.len());
    assert!(valid.records_bytes <= DECOMPRESSED_BYTES_MAX);
    let decoded = magnetar_format::kafka::decode_batch(&bytes)
        .unwrap_or_else(|e| panic!("a validated batch does not decode: {e}"));
    let count = usize::try_from(valid.header.record_count).expect("validated count is positive");
    assert_eq!(decoded.records.len(), count, "record count differs");
    if !limits.offset_deltas_rewritten {
        for (i, r) in decoded.records.iter().enumerate() {
            assert_eq!(
                usize::try_from(r.offset_delta).ok(),
                Some(i),
                "offset delta"
            );
        }
    }
    // Kafka's validator starts from NO_TIMESTAMP (-1).
    let max = decoded
        .records
        .iter()
        .map(|r| r.timestamp_ms)
        .fold(-1, i64::max);
    assert_eq!(valid.max_timestamp_ms, max, "max timestamp");
}
