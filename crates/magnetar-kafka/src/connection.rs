//! One client connection: read a frame, handle it, write the response, in order. Requests are
//! handled one at a time per connection, as Kafka does: responses must go out in request order and
//! an idempotent producer's pipelined batches must be appended in the order they were sent.
//! Pipelined requests wait in the socket buffer (in flight: one being handled per connection).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};

use crate::api::{self, Context};
use crate::codec::{self, DecodeError, Decoded};
use crate::frame::{self, FrameError};
use crate::sasl::{Admission, ConnectionAuth, RawOutcome};

/// Kafka's UNSUPPORTED_VERSION, counted for requests of a version not served.
const UNSUPPORTED_VERSION: i16 = kafka_protocol::ResponseError::UnsupportedVersion.code();

/// Serves one connection over any byte stream (TCP, or TLS over TCP).
pub async fn serve_connection<S>(stream: S, peer: SocketAddr, mut context: Arc<Context>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (read, write) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let mut writer = BufWriter::with_capacity(64 * 1024, write);
    tracing::debug!(%peer, "kafka connection opened");
    // On a SASL listener: the connection's authentication state (see `sasl`).
    let mut auth = context.config.authenticator.clone().map(|authenticator| {
        ConnectionAuth::new(
            authenticator,
            &context.broker.config().default_namespace,
            context.config.failed_authentication_delay_ms,
        )
    });
    loop {
        if let Some(auth) = auth.as_mut().filter(|a| a.expects_raw_token()) {
            let outcome = tokio::select! {
                biased;
                _ = context.shutdown.cancelled() => break,
                outcome = auth.raw_exchange(&mut reader, &mut writer) => outcome,
            };
            match outcome {
                RawOutcome::Continue => continue,
                RawOutcome::Authenticated(session) => {
                    context = Arc::new(context.with_session(session));
                    continue;
                }
                RawOutcome::Close(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
            }
        }
        let frame = tokio::select! {
            biased;
            _ = context.shutdown.cancelled() => break,
            frame = read_frame(&mut reader, context.config.max_request_bytes) => frame,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(ReadError::Frame(e)) => {
                tracing::warn!(%peer, error = %e, "closing kafka connection: bad frame");
                break;
            }
            Err(ReadError::Io(e)) => {
                tracing::debug!(%peer, error = %e, "kafka connection read failed");
                break;
            }
        };
        if let Some(auth) = &auth {
            let api_key = frame::peek_ids(&frame).map(|(key, _, _)| key).unwrap_or(-1);
            if let Admission::Close(reason) = auth.admit(api_key) {
                tracing::warn!(%peer, reason, "closing kafka connection");
                break;
            }
        }
        let response = match codec::decode_request_on(frame, auth.is_some()) {
            Ok(Decoded::Request(request)) if auth.is_some() && is_sasl(request.api_key) => {
                let (api_key, version) = (request.api_key, request.header.api_version);
                let correlation_id = request.header.correlation_id;
                let started = Instant::now();
                let Some(reply) = (match auth.as_mut() {
                    Some(auth) => auth.handle(*request).await,
                    None => None,
                }) else {
                    break;
                };
                let api = api_key as i16 as usize;
                context.metrics.record(api, started.elapsed());
                crate::metrics::for_each_error_code(&reply.response, |code| {
                    context.metrics.record_error(api, i32::from(code))
                });
                if let Some(session) = reply.session {
                    context = Arc::new(context.with_session(session));
                }
                let written = match codec::encode_response(
                    api_key,
                    version,
                    correlation_id,
                    &reply.response,
                ) {
                    Ok(bytes) => write_response(&mut writer, &bytes).await.is_ok(),
                    Err(e) => {
                        tracing::error!(%peer, ?api_key, version, error = %e, "cannot encode kafka response; closing connection");
                        false
                    }
                };
                if let Some(delay) = reply.close_after {
                    tokio::time::sleep(delay).await;
                    break;
                }
                if !written {
                    break;
                }
                continue;
            }
            Ok(Decoded::Request(request)) => {
                let api_key = request.api_key;
                let version = request.header.api_version;
                let correlation_id = request.header.correlation_id;
                let client_id = request.header.client_id.clone();
                let started = Instant::now();
                let outcome = api::handle(&context, peer, *request).await;
                record(&context, api_key, started, &outcome);
                let body = match outcome {
                    api::Outcome::Respond(body) => *body,
                    api::Outcome::NoResponse => continue, // Produce with acks=0
                    api::Outcome::Close(reason) => {
                        tracing::warn!(%peer, ?api_key, version, client_id, reason, "closing kafka connection");
                        break;
                    }
                };
                match codec::encode_response(api_key, version, correlation_id, &body) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        tracing::error!(%peer, ?api_key, version, client_id, error = %e, "cannot encode kafka response; closing connection");
                        break;
                    }
                }
            }
            Ok(Decoded::UnsupportedApiVersions { correlation_id }) => {
                tracing::info!(%peer, "ApiVersions of an unknown version; answering in v0 with our ranges");
                let api = ApiKey::ApiVersions as i16 as usize;
                context.metrics.record(api, Duration::ZERO);
                context
                    .metrics
                    .record_error(api, i32::from(UNSUPPORTED_VERSION));
                codec::unsupported_api_versions(correlation_id)
            }
            Err(e) => {
                log_decode_error(&peer, &e);
                if let DecodeError::UnsupportedVersion { api, .. } = &e {
                    context
                        .metrics
                        .record_error(*api as i16 as usize, i32::from(UNSUPPORTED_VERSION));
                }
                break;
            }
        };
        if let Err(e) = write_response(&mut writer, &response).await {
            tracing::debug!(%peer, error = %e, "kafka connection write failed");
            break;
        }
    }
    let _ = writer.shutdown().await;
    tracing::debug!(%peer, "kafka connection closed");
}

/// Counts a handled request, its latency (decoded to response ready) and its error codes.
fn record(context: &Context, api_key: ApiKey, started: Instant, outcome: &api::Outcome) {
    let api = api_key as i16 as usize;
    context.metrics.record(api, started.elapsed());
    if let api::Outcome::Respond(body) = outcome {
        crate::metrics::for_each_error_code(body, |code| {
            context.metrics.record_error(api, i32::from(code))
        });
    }
}

fn is_sasl(api_key: kafka_protocol::messages::ApiKey) -> bool {
    use kafka_protocol::messages::ApiKey;
    matches!(api_key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
}

fn log_decode_error(peer: &SocketAddr, e: &DecodeError) {
    match e {
        DecodeError::UnsupportedVersion { .. } | DecodeError::UnknownApi(_) => {
            tracing::warn!(%peer, error = %e, "closing kafka connection: request not supported")
        }
        _ => tracing::warn!(%peer, error = %e, "closing kafka connection: malformed request"),
    }
}

async fn write_response<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    response: &Bytes,
) -> std::io::Result<()> {
    writer.write_all(response).await?;
    writer.flush().await
}

#[derive(Debug)]
pub(crate) enum ReadError {
    Frame(FrameError),
    Io(std::io::Error),
}

/// Reads one frame body. `Ok(None)` on a clean end of stream between frames. The length is checked
/// before any buffer is sized for it, and the buffer then grows with the bytes that actually
/// arrive, so a client announcing a large frame and sending nothing holds no memory.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_request_bytes: usize,
) -> Result<Option<Bytes>, ReadError> {
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(ReadError::Io(e)),
    }
    reader
        .read_exact(&mut prefix[1..])
        .await
        .map_err(ReadError::Io)?;
    let length = frame::check_length(prefix, max_request_bytes).map_err(ReadError::Frame)?;
    let mut body = BytesMut::with_capacity(length.min(64 * 1024));
    let mut limited = reader.take(length as u64);
    while body.len() < length {
        if body.capacity() == body.len() {
            body.reserve((length - body.len()).min(body.len().max(64 * 1024)));
        }
        let n = limited.read_buf(&mut body).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("frame truncated at {} of {length} bytes", body.len()),
            )));
        }
    }
    Ok(Some(body.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_and_limits_enforced() {
        let mut input: &[u8] = &[0, 0, 0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        let frame = read_frame(&mut input, 100).await.unwrap().unwrap();
        assert_eq!(frame.len(), 10);
        assert!(read_frame(&mut input, 100).await.unwrap().is_none());
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut huge, 1 << 20).await,
            Err(ReadError::Frame(FrameError::TooLarge { .. }))
        ));
        let mut truncated: &[u8] = &[0, 0, 0, 20, 1, 2];
        assert!(matches!(
            read_frame(&mut truncated, 100).await,
            Err(ReadError::Io(_))
        ));
    }
}
