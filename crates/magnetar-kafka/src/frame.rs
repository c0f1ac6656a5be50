//! Sans-io request framing: the 4-byte length prefix, checked before anything is allocated, and
//! the request header, parsed by hand so that a short or hostile header can never panic.

use bytes::{Buf, Bytes, BytesMut};

/// Why a frame or header was refused. Every variant closes the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {length} bytes exceeds the limit of {max} bytes")]
    TooLarge { length: i64, max: usize },
    #[error("frame length {0} is negative or too small for a request header")]
    TooSmall(i32),
    #[error("request header truncated")]
    HeaderTruncated,
    #[error("client id is not valid utf-8")]
    ClientIdNotUtf8,
}

/// Smallest possible request: api key, api version, correlation id and a client id length.
pub const HEADER_LEN_MIN: usize = 2 + 2 + 4 + 2;

/// Validates a frame's length prefix against `max_request_bytes`. Returns the body length to read.
pub fn check_length(prefix: [u8; 4], max_request_bytes: usize) -> Result<usize, FrameError> {
    let length = i32::from_be_bytes(prefix);
    if length < 0 || (length as usize) < HEADER_LEN_MIN {
        return Err(FrameError::TooSmall(length));
    }
    let length = length as usize;
    if length > max_request_bytes {
        return Err(FrameError::TooLarge {
            length: length as i64,
            max: max_request_bytes,
        });
    }
    Ok(length)
}

/// Bytes read at least per read while a frame is incomplete (the rest of a small frame and the
/// start of the next).
pub const READ_BYTES_MIN: usize = 4 * 1024;
/// A large frame's buffer grows by at most this much, or by its current size, per step.
pub const READ_GROWTH_BYTES: usize = 64 * 1024;

/// Takes the next complete frame (its body, without the length prefix) from the front of `buf`;
/// `Ok(None)` while more bytes are needed. The length is checked first, so a frame over the
/// limit is refused before its bytes are waited for.
pub fn take_frame(
    buf: &mut BytesMut,
    max_request_bytes: usize,
) -> Result<Option<Bytes>, FrameError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let length = check_length(
        [prefix[0], prefix[1], prefix[2], prefix[3]],
        max_request_bytes,
    )?;
    if buf.len() < 4 + length {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(length).freeze()))
}

/// Makes room in `buf` for the next read. The buffer grows with the bytes that arrive (at most
/// doubling per step), never to the length a frame announces: a client that announces a large
/// frame and sends little holds little memory. Call after [`take_frame`] returned `Ok(None)`.
pub fn reserve_for_read(buf: &mut BytesMut, max_request_bytes: usize) {
    let need = match buf.get(..4) {
        Some(p) => 4 + check_length([p[0], p[1], p[2], p[3]], max_request_bytes).unwrap_or(0),
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

/// The fields of a request header the broker uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

/// The first 8 bytes of a header: enough to answer (or refuse) any request.
pub fn peek_ids(frame: &[u8]) -> Result<(i16, i16, i32), FrameError> {
    let b = frame.get(..8).ok_or(FrameError::HeaderTruncated)?;
    Ok((
        i16::from_be_bytes([b[0], b[1]]),
        i16::from_be_bytes([b[2], b[3]]),
        i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
    ))
}

/// Parses a request header of `header_version` (1 or 2) from the front of `frame`, leaving the
/// body in `frame`. Header v2 adds tagged fields after the client id, which are skipped.
pub fn parse_header(frame: &mut Bytes, header_version: i16) -> Result<RequestHeader, FrameError> {
    let (api_key, api_version, correlation_id) = peek_ids(frame)?;
    frame.advance(8);
    if frame.remaining() < 2 {
        return Err(FrameError::HeaderTruncated);
    }
    let length = frame.get_i16();
    let client_id = if length < 0 {
        None
    } else {
        let length = length as usize;
        if frame.remaining() < length {
            return Err(FrameError::HeaderTruncated);
        }
        let raw = frame.split_to(length);
        Some(String::from_utf8(raw.to_vec()).map_err(|_| FrameError::ClientIdNotUtf8)?)
    };
    if header_version >= 2 {
        let count = read_unsigned_varint(frame)?;
        for _ in 0..count {
            let _tag = read_unsigned_varint(frame)?;
            let size = read_unsigned_varint(frame)? as usize;
            if frame.remaining() < size {
                return Err(FrameError::HeaderTruncated);
            }
            frame.advance(size);
        }
    }
    Ok(RequestHeader {
        api_key,
        api_version,
        correlation_id,
        client_id,
    })
}

/// Reads an unsigned varint of at most 5 bytes.
pub fn read_unsigned_varint(buf: &mut Bytes) -> Result<u32, FrameError> {
    let mut value: u32 = 0;
    for i in 0..5 {
        if !buf.has_remaining() {
            return Err(FrameError::HeaderTruncated);
        }
        let byte = buf.get_u8();
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(FrameError::HeaderTruncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn length_is_checked_before_allocating() {
        assert_eq!(check_length(100i32.to_be_bytes(), 1000), Ok(100));
        assert_eq!(
            check_length(i32::MAX.to_be_bytes(), 1 << 20),
            Err(FrameError::TooLarge {
                length: i32::MAX as i64,
                max: 1 << 20
            })
        );
        assert_eq!(
            check_length((-1i32).to_be_bytes(), 1000),
            Err(FrameError::TooSmall(-1))
        );
        assert_eq!(
            check_length(3i32.to_be_bytes(), 1000),
            Err(FrameError::TooSmall(3))
        );
    }

    #[test]
    fn frames_are_taken_whole_and_the_buffer_grows_with_what_arrives() {
        let mut buf = BytesMut::new();
        assert_eq!(take_frame(&mut buf, 1 << 30), Ok(None));
        reserve_for_read(&mut buf, 1 << 30);
        assert!(buf.capacity() >= 4 && buf.capacity() <= 2 * READ_BYTES_MIN);
        // A 500 MiB frame announced, 100 bytes of it sent: nothing near its size is reserved.
        buf.extend_from_slice(&(500u32 << 20).to_be_bytes());
        buf.extend_from_slice(&[7u8; 100]);
        for _ in 0..4 {
            assert_eq!(take_frame(&mut buf, 1 << 30), Ok(None));
            reserve_for_read(&mut buf, 1 << 30);
        }
        assert!(
            buf.capacity() <= 4 * READ_GROWTH_BYTES,
            "{}",
            buf.capacity()
        );
        // As bytes arrive the buffer grows at most in proportion to them.
        let mut received = buf.len();
        while received < (8 << 20) {
            reserve_for_read(&mut buf, 1 << 30);
            let room = buf.capacity() - buf.len();
            assert!(room > 0);
            buf.extend_from_slice(&vec![1u8; room.min(100_000)]);
            received = buf.len();
            assert!(
                buf.capacity() <= 2 * received + 2 * READ_GROWTH_BYTES,
                "{}",
                buf.capacity()
            );
        }
        // Two small frames back to back come out one at a time.
        let mut buf = BytesMut::new();
        for body in [&[1u8; 10][..], &[2u8; 12][..]] {
            buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
            buf.extend_from_slice(body);
        }
        buf.extend_from_slice(&[0, 0]);
        assert_eq!(take_frame(&mut buf, 100).unwrap().unwrap().len(), 10);
        assert_eq!(take_frame(&mut buf, 100).unwrap().unwrap().len(), 12);
        assert_eq!(take_frame(&mut buf, 100), Ok(None));
        buf.extend_from_slice(&[1, 0]);
        assert!(matches!(
            take_frame(&mut buf, 100),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn header_v1_and_v2() {
        let mut raw = vec![0, 18, 0, 3, 0, 0, 0, 7, 0, 3, b'c', b'l', b'i'];
        let mut v1 = Bytes::from(raw.clone());
        let h = parse_header(&mut v1, 1).unwrap();
        assert_eq!(
            h,
            RequestHeader {
                api_key: 18,
                api_version: 3,
                correlation_id: 7,
                client_id: Some("cli".into())
            }
        );
        assert!(v1.is_empty());
        raw.extend_from_slice(&[1, 5, 2, 0xaa, 0xbb, 0x42]);
        let mut v2 = Bytes::from(raw);
        parse_header(&mut v2, 2).unwrap();
        assert_eq!(&v2[..], &[0x42]);
    }

    #[test]
    fn null_client_id() {
        let mut raw = Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff]);
        assert_eq!(parse_header(&mut raw, 1).unwrap().client_id, None);
    }

    #[test]
    fn truncated_headers_are_errors() {
        for len in 0..13 {
            let raw = [0u8, 18, 0, 3, 0, 0, 0, 7, 0, 3, b'c', b'l', b'i'];
            let mut b = Bytes::copy_from_slice(&raw[..len]);
            if len < 13 {
                assert!(parse_header(&mut b, 1).is_err(), "{len}");
            }
        }
    }

    proptest! {
        #[test]
        fn random_headers_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..64), v in 1i16..3) {
            let mut b = Bytes::from(raw);
            let _ = parse_header(&mut b, v);
        }
    }
}
