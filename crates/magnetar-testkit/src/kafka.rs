//! A raw Kafka client: request frames encoded with `kafka-protocol` (header v1 or v2 as the API
//! version needs, client id `test`), responses read with a bounded wait and checked against
//! their correlation id.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a response may take (only reached when a test fails).
pub const RESPONSE_WAIT: Duration = Duration::from_secs(30);

/// A Kafka topic name for a request.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Encodes a request frame (length prefix included).
pub fn frame<Req: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    buf.put_i16(api as i16);
    buf.put_i16(version);
    buf.put_i32(correlation_id);
    buf.put_i16(4);
    buf.put_slice(b"test");
    if api.request_header_version(version) >= 2 {
        buf.put_u8(0);
    }
    request.encode(&mut buf, version).expect("request encodes");
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

/// Reads one length-prefixed frame (bounded by [`RESPONSE_WAIT`]); `None` on EOF, error or
/// timeout.
pub async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    tokio::time::timeout(RESPONSE_WAIT, stream.read_exact(&mut len))
        .await
        .ok()?
        .ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}

/// Decodes a response frame's body after checking its correlation id.
pub fn decode_response<Resp: Decodable>(
    mut body: Bytes,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
) -> Resp {
    let id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    assert_eq!(id, correlation_id, "responses come in request order");
    let skip = if api.response_header_version(version) >= 1 {
        5
    } else {
        4
    };
    let mut rest = body.split_off(skip);
    Resp::decode(&mut rest, version).expect("response decodes")
}

/// Reads a response from `stream`, checking its correlation id.
pub async fn receive<Resp: Decodable>(
    stream: &mut TcpStream,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
) -> Resp {
    let body = read_frame(stream).await.expect("response");
    decode_response(body, api, version, correlation_id)
}

/// True when the server closes the connection (EOF or reset) within `timeout`.
pub async fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(timeout, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// One connection with its own correlation ids.
pub struct KafkaClient {
    pub stream: TcpStream,
    pub correlation_id: i32,
}

impl KafkaClient {
    pub async fn connect(addr: impl tokio::net::ToSocketAddrs) -> Self {
        KafkaClient {
            stream: TcpStream::connect(addr).await.expect("connect"),
            correlation_id: 0,
        }
    }

    /// Sends a request without waiting for its response; returns its correlation id.
    pub async fn send<Req: Encodable>(&mut self, api: ApiKey, version: i16, request: &Req) -> i32 {
        self.correlation_id += 1;
        let bytes = frame(api, version, self.correlation_id, request);
        self.stream.write_all(&bytes).await.expect("send");
        self.correlation_id
    }

    /// Reads the response to the request `correlation_id`.
    pub async fn receive<Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Resp {
        receive(&mut self.stream, api, version, correlation_id).await
    }

    /// Sends a request and reads its response.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        let id = self.send(api, version, request).await;
        self.receive(api, version, id).await
    }
}
