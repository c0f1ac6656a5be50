//! Pulsar front end: the frame reader with its prost command decode ([`frame`]); the check of a
//! SEND's body against its batch metadata ([`entry`]).

use bytes::BytesMut;
use magnetar_format::pulsar::{check_entry, entry_messages, message_metadata};
use magnetar_pulsar::frame::{decode, encode, encode_with_payload};

/// Frame limit used by the target: small, so "too large" is reachable.
const MAX_FRAME_BYTES: usize = 64 * 1024;
const FRAMES_MAX: usize = 16;

/// Input: a byte stream of frames as a client sends them.
///
/// Properties: a decoded frame consumes exactly its announced size; re-encoded with our
/// encoder (with a checksum when it has a payload) it decodes to the same command and body,
/// with a checksum that verifies.
pub fn frame(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    for _ in 0..FRAMES_MAX {
        let before = buf.len();
        let frame = match decode(&mut buf, MAX_FRAME_BYTES) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                if let Some(p) = buf.get(..4) {
                    let total = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
                    assert!(buf.len() < 4 + total, "decode waits for a complete frame");
                }
                return;
            }
            Err(_) => return,
        };
        let consumed = before - buf.len();
        assert!(consumed <= 4 + MAX_FRAME_BYTES);
        let bytes = match &frame.payload {
            None => encode(&frame.command),
            Some(p) => encode_with_payload(&frame.command, None, &p.body),
        };
        let mut again = BytesMut::from(&bytes[..]);
        let second = decode(&mut again, usize::MAX)
            .expect("a re-encoded frame decodes")
            .expect("a re-encoded frame is complete");
        assert!(again.is_empty(), "re-encoded frame has trailing bytes");
        assert_eq!(second.command, frame.command, "command round trip");
        match (&frame.payload, &second.payload) {
            (None, None) => {}
            (Some(p), Some(q)) => {
                assert_eq!(p.body, q.body, "payload round trip");
                assert_eq!(q.checksum_ok, Some(true), "our checksum verifies");
            }
            _ => panic!("payload presence changed in the round trip"),
        }
    }
}

/// The limit the SEND path passes (`DECOMPRESSED_BYTES_MAX`), smaller so bombs stay cheap.
const BYTES_MAX: usize = 1 << 20;

/// Input: one byte `n` (the SEND's `num_messages`, at least 1 as the SEND path passes it), then
/// an entry body `[metadata size][MessageMetadata][payload]`.
///
/// Properties of a body `check_entry` accepts (what is stored): unless it is encrypted or a
/// chunk (opaque to the broker), the reader that serves it later ([`entry_messages`], used by
/// the Kafka fetch conversion and by Pulsar consumers) reads exactly `n` messages from it and
/// their values fit in the limit.
pub fn entry(data: &[u8]) {
    let Some((&n, body)) = data.split_first() else {
        return;
    };
    let n = u64::from(n.max(1));
    if check_entry(body, n, BYTES_MAX).is_err() {
        return;
    }
    let size = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
    let metadata = message_metadata(&body[4..4 + size]).expect("checked metadata parses");
    if metadata.encrypted || metadata.num_chunks_from_msg > 1 {
        return;
    }
    let messages =
        entry_messages(body).unwrap_or_else(|e| panic!("a checked entry cannot be read: {e}"));
    assert_eq!(messages.len() as u64, n, "message count");
    let bytes: usize = messages.iter().map(|m| m.value.len()).sum();
    assert!(bytes <= BYTES_MAX);
}
