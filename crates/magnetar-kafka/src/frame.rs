//! Sans-io request framing: the 4-byte length prefix, checked before anything is allocated, and
//! the request header, parsed by hand so that a short or hostile header can never panic.

use bytes::{Buf, Bytes};

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
