//! Sans-io request decoding and response encoding: a frame body in, a typed request out (or the
//! reason to refuse it); a typed response in, a length-prefixed frame out.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::ResponseError;

use crate::api::versions;
use crate::frame::{self, FrameError, RequestHeader};
use crate::guard::{self, GuardError};

pub mod list_offsets_v0;
pub mod removed_versions;

/// A request ready for its handler.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub body: RequestKind,
}

#[derive(Debug)]
pub enum Decoded {
    Request(Box<Request>),
    /// An ApiVersions request of a version we do not serve (KIP-511): answer in v0 with
    /// UNSUPPORTED_VERSION and our ranges.
    UnsupportedApiVersions {
        correlation_id: i32,
    },
    /// Produce v0–2 or Fetch v0–3 (the message format v0/v1 versions, not served): the complete
    /// response frame, in the request's version with UNSUPPORTED_VERSION on every partition
    /// ([`removed_versions`]).
    RemovedVersion {
        api: ApiKey,
        version: i16,
        response: Bytes,
    },
}

/// Why a request could not be decoded. Each closes the connection after a log line.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("unknown api key {0}")]
    UnknownApi(i16),
    #[error("api {api:?} version {version} is not supported (supported: {min}..={max})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        min: i16,
        max: i16,
        correlation_id: i32,
    },
    #[error("api {api:?} v{version} refused by the allocation guard: {source}")]
    Guard {
        api: ApiKey,
        version: i16,
        source: GuardError,
    },
    #[error("api {api:?} v{version} cannot be decoded: {message}")]
    Body {
        api: ApiKey,
        version: i16,
        message: String,
    },
}

/// Decodes one frame body (the bytes after the length prefix).
pub fn decode_request(frame: Bytes) -> Result<Decoded, DecodeError> {
    decode_request_on(frame, false)
}

/// Decodes one frame body; with `sasl`, the SASL APIs ([`versions::SASL_SUPPORTED`]) too.
pub fn decode_request_on(mut frame: Bytes, sasl: bool) -> Result<Decoded, DecodeError> {
    let (key, version, correlation_id) = frame::peek_ids(&frame)?;
    let api_key = ApiKey::try_from(key).map_err(|_| DecodeError::UnknownApi(key))?;
    let Some((min, max)) = versions::supported_on(api_key, sasl) else {
        return Err(DecodeError::UnknownApi(key));
    };
    if version < min || version > max {
        if api_key == ApiKey::ApiVersions {
            return Ok(Decoded::UnsupportedApiVersions { correlation_id });
        }
        if removed_versions::answered(api_key, version) {
            let header = frame::parse_header(&mut frame, api_key.request_header_version(version))?;
            let named = removed_versions::decode_request(api_key, version, &mut frame).map_err(
                |message| DecodeError::Body {
                    api: api_key,
                    version,
                    message,
                },
            )?;
            if named.expects_response {
                return Ok(Decoded::RemovedVersion {
                    api: api_key,
                    version,
                    response: removed_versions::encode_response(
                        api_key,
                        version,
                        header.correlation_id,
                        &named,
                    ),
                });
            }
            // acks=0: no response is read; closing the connection is the only refusal.
        }
        return Err(DecodeError::UnsupportedVersion {
            api: api_key,
            version,
            min,
            max,
            correlation_id,
        });
    }
    let header = frame::parse_header(&mut frame, api_key.request_header_version(version))?;
    guard::check_request(api_key, version, &frame).map_err(|source| DecodeError::Guard {
        api: api_key,
        version,
        source,
    })?;
    let body = if versions::hand_decoded(api_key, version) {
        // The one hand-written codec (a version kafka-protocol no longer has).
        list_offsets_v0::decode_request(&mut frame)
            .map(RequestKind::ListOffsets)
            .map_err(|message| DecodeError::Body {
                api: api_key,
                version,
                message,
            })?
    } else {
        RequestKind::decode(api_key, &mut frame, version).map_err(|e| DecodeError::Body {
            api: api_key,
            version,
            message: format!("{e:#}"),
        })?
    };
    Ok(Decoded::Request(Box::new(Request {
        header,
        api_key,
        body,
    })))
}

/// Encodes a decoded request's body again at its version (hand-written versions included): for
/// round-trip tests and the fuzz target.
pub fn encode_request_body(request: &Request, buf: &mut BytesMut) -> Result<(), String> {
    let version = request.header.api_version;
    match &request.body {
        RequestKind::ListOffsets(body) if versions::hand_decoded(request.api_key, version) => {
            list_offsets_v0::encode_request(body, buf);
            Ok(())
        }
        body => body.encode(buf, version).map_err(|e| format!("{e:#}")),
    }
}

/// Encodes a response frame: length prefix, response header, body.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Bytes, String> {
    // A fetch response is mostly record bytes: allocated once at its computed size rather than
    // grown by doubling. Other responses are small.
    let body_size = match response {
        ResponseKind::Fetch(fetch) => fetch.compute_size(version).unwrap_or(0),
        _ => 0,
    };
    let mut buf = BytesMut::with_capacity(256 + body_size);
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    if api_key.response_header_version(version) >= 1 {
        buf.put_u8(0); // no tagged fields
    }
    match response {
        ResponseKind::ListOffsets(r) if versions::hand_decoded(api_key, version) => {
            list_offsets_v0::encode_response(r, &mut buf)
        }
        _ => response
            .encode(&mut buf, version)
            .map_err(|e| format!("{e:#}"))?,
    }
    let length =
        i32::try_from(buf.len() - 4).map_err(|_| "response larger than 2 GiB".to_string())?;
    buf[..4].copy_from_slice(&length.to_be_bytes());
    Ok(buf.freeze())
}

/// The KIP-511 answer to an ApiVersions request of a version we do not know: v0 format.
pub fn unsupported_api_versions(correlation_id: i32) -> Bytes {
    let mut response = versions::supported_versions();
    response.error_code = ResponseError::UnsupportedVersion.code();
    match encode_response(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &ResponseKind::ApiVersions(response),
    ) {
        Ok(bytes) => bytes,
        // Unreachable with our static table; answer with a bare error rather than nothing.
        Err(_) => {
            let mut buf = BytesMut::new();
            buf.put_i32(10);
            buf.put_i32(correlation_id);
            buf.put_i16(ResponseError::UnsupportedVersion.code());
            buf.put_i32(0);
            buf.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, MetadataRequest};
    use kafka_protocol::protocol::{Decodable, Encodable};
    use proptest::prelude::*;

    fn frame_of(api: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(api as i16);
        buf.put_i16(version);
        buf.put_i32(77);
        buf.put_i16(4);
        buf.put_slice(b"test");
        if api.request_header_version(version) >= 2 {
            buf.put_u8(0);
        }
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_api_versions_v3_and_metadata_v12() {
        let req = ApiVersionsRequest::default();
        let Decoded::Request(r) = decode_request(frame_of(ApiKey::ApiVersions, 3, &req)).unwrap()
        else {
            panic!("expected request")
        };
        assert_eq!(r.header.correlation_id, 77);
        assert_eq!(r.header.client_id.as_deref(), Some("test"));
        let req = MetadataRequest::default();
        assert!(matches!(
            decode_request(frame_of(ApiKey::Metadata, 12, &req)).unwrap(),
            Decoded::Request(_)
        ));
    }

    #[test]
    fn unsupported_api_versions_is_answered_in_v0() {
        let mut raw = BytesMut::new();
        raw.put_i16(18);
        raw.put_i16(99);
        raw.put_i32(5);
        raw.put_slice(b"whatever follows");
        let decoded = decode_request(raw.freeze()).unwrap();
        assert!(matches!(
            decoded,
            Decoded::UnsupportedApiVersions { correlation_id: 5 }
        ));
        let mut frame = unsupported_api_versions(5).slice(4..);
        assert_eq!(&frame[..4], &5i32.to_be_bytes());
        let mut body = frame.split_off(4);
        let response = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert_eq!(response.error_code, 35);
        assert!(response.api_keys.iter().any(|k| k.api_key == 0));
    }

    #[test]
    fn unknown_api_and_unsupported_version_are_errors() {
        let raw = Bytes::from_static(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert!(matches!(
            decode_request(raw),
            Err(DecodeError::UnknownApi(0x7f00))
        ));
        // WriteTxnMarkers (27) is broker-to-broker: not served.
        let raw = Bytes::from_static(&[0, 27, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert!(matches!(
            decode_request(raw),
            Err(DecodeError::UnknownApi(27))
        ));
        // DescribeConfigs v0 (removed by KIP-896)
        let raw = Bytes::from_static(&[0, 32, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert!(matches!(
            decode_request(raw),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        // Produce v1 without a body: malformed
        let raw = Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0]);
        assert!(matches!(decode_request(raw), Err(DecodeError::Body { .. })));
        // Produce v1 with acks=0 and no topics: no response expected, so the connection closes
        let raw = Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            decode_request(raw),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        // the same with acks=1: answered (no topics, so an empty list and a throttle time)
        let raw = Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        match decode_request(raw) {
            Ok(Decoded::RemovedVersion {
                api: ApiKey::Produce,
                version: 1,
                response,
            }) => assert_eq!(
                &response[..],
                &[0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn response_framing() {
        let response = versions::supported_versions();
        let frame = encode_response(
            ApiKey::ApiVersions,
            3,
            9,
            &ResponseKind::ApiVersions(response),
        )
        .unwrap();
        let length = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(length, frame.len() - 4);
        // ApiVersions responses always use header v0: no tagged-field byte after the id.
        let mut body = frame.slice(8..);
        let decoded = ApiVersionsResponse::decode(&mut body, 3).unwrap();
        assert_eq!(decoded.error_code, 0);
        assert!(body.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, .. ProptestConfig::default() })]
        #[test]
        fn random_frames_never_panic(key in 0i16..70, version in -1i16..20, tail in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut raw = BytesMut::new();
            raw.put_i16(key);
            raw.put_i16(version);
            raw.put_i32(1);
            raw.put_slice(&tail);
            let _ = decode_request(raw.freeze());
        }

        #[test]
        fn random_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_request(Bytes::from(raw));
        }
    }
}
