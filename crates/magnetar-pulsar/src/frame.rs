//! The Pulsar frame codec, sans-io.
//!
//! Simple command: `[total_size u32][command_size u32][BaseCommand]`.
//! Payload command: the same, followed by an optional broker entry metadata block
//! `[0x0e02][size u32][BrokerEntryMetadata]`, then `[0x0e01][crc32c u32][metadata_size u32]
//! [MessageMetadata][payload]`, the checksum covering everything after itself. Clients older than
//! protocol v6 send no magic and no checksum. All sizes are big-endian; `total_size` counts
//! everything after itself and is checked against the frame limit before anything is allocated.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

use crate::proto::{BaseCommand, BrokerEntryMetadata, MessageMetadata};

/// Pulsar's default `maxMessageSize` (5 MiB).
pub const MESSAGE_SIZE_MAX_BYTES: usize = 5 * 1024 * 1024;
/// Room Pulsar allows on top of the message size for the command and metadata (10 KiB).
pub const FRAME_PADDING_BYTES: usize = 10 * 1024;
/// The largest frame accepted by default: `total_size` may not exceed this.
pub const FRAME_SIZE_MAX_BYTES: usize = MESSAGE_SIZE_MAX_BYTES + FRAME_PADDING_BYTES;

pub const MAGIC_CRC32C: u16 = 0x0e01;
pub const MAGIC_BROKER_ENTRY_METADATA: u16 = 0x0e02;

#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// `total_size` is above the limit: the connection must be closed (the stream cannot be
    /// resynchronised without reading the frame).
    TooLarge { size: usize, max: usize },
    /// The frame is inconsistent (sizes, protobuf): the connection is closed after a log line.
    Malformed(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds the limit of {max} bytes")
            }
            FrameError::Malformed(reason) => write!(f, "malformed frame: {reason}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// The payload part of a payload command.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// The raw `BrokerEntryMetadata` bytes, when the sender included them.
    pub broker_entry_metadata: Option<Bytes>,
    /// `Some(ok)` when a checksum was present; `None` for pre-v6 clients that send none.
    pub checksum_ok: Option<bool>,
    /// `[metadata_size][MessageMetadata][payload]`: what a Pulsar entry stores.
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub command: BaseCommand,
    pub payload: Option<Payload>,
}

/// Bytes read at least per read while a frame is incomplete.
pub const READ_BYTES_MIN: usize = 4 * 1024;
/// A large frame's buffer grows by at most this much, or by its current size, per step.
pub const READ_GROWTH_BYTES: usize = 64 * 1024;

/// Makes room in `buf` for the next read after [`decode`] returned `Ok(None)`. The buffer grows
/// with the bytes that arrive (at most doubling per step), never to the size a frame announces:
/// a connection that sends the first bytes of a 5 MiB frame and stops holds a few KiB, not 5 MiB
/// (200 such connections reserved 786 MB of address space when the announced size was reserved).
pub fn reserve_for_read(buf: &mut BytesMut, max_frame_bytes: usize) {
    let need = match buf.get(..4) {
        Some(p) => {
            let total = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
            4 + total.min(max_frame_bytes)
        }
        None => 4,
    };
    let missing = need.saturating_sub(buf.len());
    let spare = buf.capacity() - buf.len();
    if spare >= missing.clamp(1, READ_BYTES_MIN) {
        return;
    }
    let step = missing
        .min(buf.len().max(READ_GROWTH_BYTES))
        .max(READ_BYTES_MIN);
    buf.reserve(step);
}

/// Decodes one frame from the front of `buf`, consuming it; `Ok(None)` means more bytes are
/// needed. Reserves nothing: the caller grows the buffer as bytes arrive ([`reserve_for_read`]).
pub fn decode(buf: &mut BytesMut, max_frame_bytes: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let total = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if total > max_frame_bytes {
        return Err(FrameError::TooLarge {
            size: total,
            max: max_frame_bytes,
        });
    }
    if total < 4 {
        return Err(FrameError::Malformed(format!(
            "total size {total} leaves no room for the command size"
        )));
    }
    if buf.len() < 4 + total {
        // Nothing is reserved for the announced size: see `reserve_for_read`.
        return Ok(None);
    }
    buf.advance(4);
    let mut frame = buf.split_to(total).freeze();
    decode_body(&mut frame).map(Some)
}

fn decode_body(frame: &mut Bytes) -> Result<Frame, FrameError> {
    let command_size = frame.get_u32() as usize;
    if command_size > frame.len() {
        return Err(FrameError::Malformed(format!(
            "command size {command_size} exceeds the {} bytes left in the frame",
            frame.len()
        )));
    }
    let command_bytes = frame.split_to(command_size);
    let command = BaseCommand::decode(command_bytes)
        .map_err(|e| FrameError::Malformed(format!("bad command: {e}")))?;
    if frame.is_empty() {
        return Ok(Frame {
            command,
            payload: None,
        });
    }
    let mut broker_entry_metadata = None;
    if peek_u16(frame) == Some(MAGIC_BROKER_ENTRY_METADATA) {
        frame.advance(2);
        let size = take_u32(frame, "broker entry metadata size")? as usize;
        if size > frame.len() {
            return Err(FrameError::Malformed(format!(
                "broker entry metadata size {size} exceeds the {} bytes left",
                frame.len()
            )));
        }
        broker_entry_metadata = Some(frame.split_to(size));
    }
    let checksum_ok = if peek_u16(frame) == Some(MAGIC_CRC32C) {
        frame.advance(2);
        let expected = take_u32(frame, "checksum")?;
        Some(crc32c::crc32c(frame) == expected)
    } else {
        None
    };
    // A body must at least hold its metadata size; the metadata itself is decoded on demand.
    if frame.len() < 4 {
        return Err(FrameError::Malformed(
            "payload has no room for the metadata size".into(),
        ));
    }
    Ok(Frame {
        command,
        payload: Some(Payload {
            broker_entry_metadata,
            checksum_ok,
            body: std::mem::take(frame),
        }),
    })
}

fn peek_u16(b: &Bytes) -> Option<u16> {
    (b.len() >= 2).then(|| u16::from_be_bytes([b[0], b[1]]))
}

fn take_u32(b: &mut Bytes, what: &str) -> Result<u32, FrameError> {
    if b.len() < 4 {
        return Err(FrameError::Malformed(format!("truncated {what}")));
    }
    Ok(b.get_u32())
}

/// Splits a body `[metadata_size][MessageMetadata][payload]` into its decoded metadata and the
/// payload bytes.
pub fn split_body(body: &Bytes) -> Result<(MessageMetadata, Bytes), FrameError> {
    if body.len() < 4 {
        return Err(FrameError::Malformed("body has no metadata size".into()));
    }
    let size = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
    if size > body.len() - 4 {
        return Err(FrameError::Malformed(format!(
            "metadata size {size} exceeds the {} bytes of the body",
            body.len() - 4
        )));
    }
    let metadata = MessageMetadata::decode(body.slice(4..4 + size))
        .map_err(|e| FrameError::Malformed(format!("bad message metadata: {e}")))?;
    Ok((metadata, body.slice(4 + size..)))
}

/// Builds a body `[metadata_size][MessageMetadata][payload]`.
pub fn make_body(metadata: &MessageMetadata, payload: &[u8]) -> Bytes {
    let size = metadata.encoded_len();
    let mut out = BytesMut::with_capacity(4 + size + payload.len());
    out.put_u32(size as u32);
    // Encoding into a buffer with enough capacity cannot fail.
    let _ = metadata.encode(&mut out);
    out.put_slice(payload);
    out.freeze()
}

/// Encodes a simple command.
pub fn encode(command: &BaseCommand) -> Bytes {
    let command_size = command.encoded_len();
    let mut out = BytesMut::with_capacity(8 + command_size);
    out.put_u32((4 + command_size) as u32);
    out.put_u32(command_size as u32);
    let _ = command.encode(&mut out);
    out.freeze()
}

/// Encodes a payload command with a CRC32C checksum over `body`, preceded by broker entry
/// metadata when given.
pub fn encode_with_payload(
    command: &BaseCommand,
    broker_entry_metadata: Option<&BrokerEntryMetadata>,
    body: &[u8],
) -> Bytes {
    let command_size = command.encoded_len();
    let bem_size = broker_entry_metadata.map(|m| m.encoded_len());
    let bem_total = bem_size.map(|s| 2 + 4 + s).unwrap_or(0);
    let total = 4 + command_size + bem_total + 2 + 4 + body.len();
    let mut out = BytesMut::with_capacity(4 + total);
    out.put_u32(total as u32);
    out.put_u32(command_size as u32);
    let _ = command.encode(&mut out);
    if let (Some(m), Some(size)) = (broker_entry_metadata, bem_size) {
        out.put_u16(MAGIC_BROKER_ENTRY_METADATA);
        out.put_u32(size as u32);
        let _ = m.encode(&mut out);
    }
    out.put_u16(MAGIC_CRC32C);
    out.put_u32(crc32c::crc32c(body));
    out.put_slice(body);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{base_command::Type, CommandPing, CommandSend};
    use proptest::prelude::*;

    fn ping() -> BaseCommand {
        BaseCommand {
            r#type: Type::Ping as i32,
            ping: Some(CommandPing {}),
            ..Default::default()
        }
    }

    #[test]
    fn an_announced_frame_size_is_not_reserved() {
        // A frame of the largest size announced, its first 8 bytes sent, as a connection that
        // never sends CONNECT would: the buffer stays near its first read.
        let mut buf = BytesMut::new();
        reserve_for_read(&mut buf, FRAME_SIZE_MAX_BYTES);
        buf.extend_from_slice(&(FRAME_SIZE_MAX_BYTES as u32).to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, 4]);
        for _ in 0..4 {
            assert_eq!(decode(&mut buf, FRAME_SIZE_MAX_BYTES), Ok(None));
            reserve_for_read(&mut buf, FRAME_SIZE_MAX_BYTES);
        }
        assert!(
            buf.capacity() <= 2 * READ_GROWTH_BYTES,
            "{}",
            buf.capacity()
        );
        // As the bytes arrive the buffer grows in proportion to them, up to the whole frame.
        let frame = encode(&ping());
        let mut big = BytesMut::new();
        let total = FRAME_SIZE_MAX_BYTES - 100;
        big.extend_from_slice(&(total as u32).to_be_bytes());
        big.extend_from_slice(&frame[4..]);
        big.resize(4 + total, 0);
        let mut buf = BytesMut::new();
        let mut sent = 0;
        while sent < big.len() {
            assert_eq!(
                decode(&mut buf, FRAME_SIZE_MAX_BYTES).map(|f| f.is_some()),
                Ok(false)
            );
            reserve_for_read(&mut buf, FRAME_SIZE_MAX_BYTES);
            let room = buf.capacity() - buf.len();
            assert!(room > 0);
            let n = room.min(big.len() - sent).min(50_000);
            buf.extend_from_slice(&big[sent..sent + n]);
            sent += n;
            assert!(
                buf.capacity() <= 2 * sent + 2 * READ_GROWTH_BYTES,
                "{} after {sent}",
                buf.capacity()
            );
        }
        assert!(matches!(
            decode(&mut buf, FRAME_SIZE_MAX_BYTES),
            Ok(Some(_)) | Err(FrameError::Malformed(_))
        ));
    }

    fn send(seq: u64) -> BaseCommand {
        BaseCommand {
            r#type: Type::Send as i32,
            send: Some(CommandSend {
                producer_id: 1,
                sequence_id: seq,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn simple_round_trip() {
        let mut buf = BytesMut::from(&encode(&ping())[..]);
        let frame = decode(&mut buf, FRAME_SIZE_MAX_BYTES).unwrap().unwrap();
        assert_eq!(frame.command, ping());
        assert!(frame.payload.is_none());
        assert!(buf.is_empty());
    }

    #[test]
    fn payload_round_trip_and_checksum() {
        let metadata = MessageMetadata {
            producer_name: "p".into(),
            sequence_id: 3,
            publish_time: 7,
            ..Default::default()
        };
        let body = make_body(&metadata, b"hello");
        let bem = BrokerEntryMetadata {
            broker_timestamp: Some(1),
            index: Some(2),
        };
        let bytes = encode_with_payload(&send(3), Some(&bem), &body);
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = decode(&mut buf, FRAME_SIZE_MAX_BYTES).unwrap().unwrap();
        let payload = frame.payload.unwrap();
        assert_eq!(payload.checksum_ok, Some(true));
        assert!(payload.broker_entry_metadata.is_some());
        assert_eq!(payload.body, body);
        let (m, p) = split_body(&payload.body).unwrap();
        assert_eq!(m, metadata);
        assert_eq!(&p[..], b"hello");

        // Flip one payload byte: the frame still decodes but the checksum fails.
        let mut corrupt = BytesMut::from(&bytes[..]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let frame = decode(&mut corrupt, FRAME_SIZE_MAX_BYTES).unwrap().unwrap();
        assert_eq!(frame.payload.unwrap().checksum_ok, Some(false));
    }

    #[test]
    fn oversized_frame_is_refused_before_reading_it() {
        let mut buf = BytesMut::from(&(u32::MAX).to_be_bytes()[..]);
        assert!(matches!(
            decode(&mut buf, FRAME_SIZE_MAX_BYTES),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let bytes = encode(&send(1));
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(decode(&mut buf, FRAME_SIZE_MAX_BYTES).unwrap(), None);
        }
    }

    #[test]
    fn bad_sizes_are_malformed() {
        // command size larger than the frame
        let mut buf = BytesMut::new();
        buf.put_u32(8);
        buf.put_u32(100);
        buf.put_u32(0);
        assert!(matches!(
            decode(&mut buf, FRAME_SIZE_MAX_BYTES),
            Err(FrameError::Malformed(_))
        ));
        // total size too small
        let mut buf = BytesMut::new();
        buf.put_u32(2);
        buf.put_u16(0);
        assert!(decode(&mut buf, FRAME_SIZE_MAX_BYTES).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&bytes[..]);
            for _ in 0..8 {
                match decode(&mut buf, 4096) {
                    Ok(Some(frame)) => {
                        if let Some(p) = frame.payload { let _ = split_body(&p.body); }
                    }
                    _ => break,
                }
            }
        }

        #[test]
        fn payload_frames_round_trip(seq in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let metadata = MessageMetadata { producer_name: "x".into(), sequence_id: seq, publish_time: 1, ..Default::default() };
            let body = make_body(&metadata, &payload);
            let mut buf = BytesMut::from(&encode_with_payload(&send(seq), None, &body)[..]);
            let frame = decode(&mut buf, FRAME_SIZE_MAX_BYTES).unwrap().unwrap();
            prop_assert_eq!(frame.command, send(seq));
            let p = frame.payload.unwrap();
            prop_assert_eq!(p.checksum_ok, Some(true));
            prop_assert_eq!(p.body, body);
        }
    }
}
