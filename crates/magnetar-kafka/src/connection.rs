//! One client connection, pipelined as Kafka's broker serves it: the connection keeps reading and
//! starting requests while earlier ones wait (for durability, a long-polling Fetch, a rebalance),
//! and writes the responses strictly in request order, which is what clients with
//! `max.in.flight.requests.per.connection` > 1 expect.
//!
//! Rules, and why:
//! - Requests are started in arrival order and their responses are written in that order (a
//!   `FuturesOrdered`), so correlation ids come back in sequence.
//! - A Produce is an ordering barrier: every request after it on the connection starts only
//!   once the Produce has passed its ordering point. So an idempotent producer's pipelined
//!   batches are sequence-checked and appended in the order they were sent, and a request after
//!   a Produce (acks=0 included, which has no response to wait for) sees its append, as on a
//!   broker that handles one request at a time. The ordering point is the end of the handler
//!   unless the handler calls [`produce_ordering_point`] earlier (once it has assigned its
//!   indexes, before waiting for durability): that call is the hook for a two-phase Produce and
//!   lets what follows start while the Produce waits for its fsync. Requests before a Produce,
//!   e.g. a long-polling Fetch, do not hold it up.
//! - Until a SASL listener's connection has authenticated, and for every SaslHandshake and
//!   SaslAuthenticate (KIP-368 re-authentication), the connection is strictly sequential: the
//!   request starts only once everything before it was answered, and nothing after it starts
//!   before it is done (it changes the session later requests run under).
//! - Bounded: at most `max_inflight_requests_per_connection` requests and
//!   `max_inflight_bytes_per_connection` bytes (requests read, responses not yet written) per
//!   connection; beyond that the connection stops reading and the client's sends back up in TCP.
//!   The read buffer grows with the bytes that arrive, never to a frame's announced length.
//! - Timeouts: with no request in flight and nothing buffered, a connection is closed after
//!   `connections_max_idle_ms` (Kafka's `connections.max.idle.ms`; a long-polling Fetch is not
//!   idle); a frame that started arriving must complete within `request_read_timeout_ms`; a
//!   client that stops reading its responses is closed after the idle timeout without progress.
//! - Closes for bad input are counted by reason and their warnings rate-limited
//!   (`magnetar_metrics::ConnectionCloses`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::future::{FutureExt, Shared};
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use kafka_protocol::messages::ApiKey;
use magnetar_metrics::CloseReason;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::api::{self, Context};
use crate::codec::{self, DecodeError, Decoded, Request};
use crate::frame::{self, FrameError};
use crate::sasl::{Admission, ConnectionAuth, RawOutcome};

/// Kafka's UNSUPPORTED_VERSION, counted for requests of a version not served.
const UNSUPPORTED_VERSION: i16 = kafka_protocol::ResponseError::UnsupportedVersion.code();

/// On shutdown a connection answers what it has started; a client that does not read its
/// responses holds shutdown at most this long.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

tokio::task_local! {
    /// While a Produce handler runs: the turn of the connection's next Produce.
    static PRODUCE_TURN: RefCell<Option<oneshot::Sender<()>>>;
}

/// The ordering point of a Produce on a pipelined connection: the next Produce of the same
/// connection may start its sequence checks and index assignment once this is called. A
/// handler that separates assigning indexes from waiting for durability calls this in between;
/// otherwise the connection calls it when the handler completes. Calling it outside a Produce
/// handler, or twice, does nothing.
pub(crate) fn produce_ordering_point() {
    let _ = PRODUCE_TURN.try_with(|turn| {
        if let Some(next) = turn.borrow_mut().take() {
            let _ = next.send(());
        }
    });
}

/// A started request, completing with what to write.
type Handling = Pin<Box<dyn Future<Output = Handled> + Send>>;

struct Handled {
    /// The request frame's length, released from the in-flight bytes.
    request_bytes: usize,
    result: HandledResult,
}

enum HandledResult {
    /// An encoded response frame.
    Respond(Bytes),
    /// Produce with acks=0.
    NoResponse,
    /// Close the connection without answering this or anything after it (already logged).
    Close,
}

/// Why a connection stops; it first finishes and writes what is in flight (what comes after a
/// refused request is dropped instead).
struct Stop {
    why: String,
    /// After the last response is written, wait this long before closing (failed SASL).
    linger: Duration,
}

enum Event {
    Shutdown,
    /// Cluster mode: this broker's etcd session is not live; it serves nothing, so the client
    /// is let go at once (it asks another bootstrap broker for metadata).
    Fenced,
    Completed(Handled),
    Wrote(std::io::Result<usize>),
    Flushed(std::io::Result<()>),
    Read(std::io::Result<usize>),
    Deadline(CloseReason),
}

struct Connection {
    peer: SocketAddr,
    context: Arc<Context>,
    /// On a SASL listener: the connection's authentication state (see `sasl`).
    auth: Option<ConnectionAuth>,
    authenticated: bool,
    buf: BytesMut,
    /// A complete frame waiting for room in flight, or for the connection to be quiet.
    held: Option<Bytes>,
    inflight: FuturesOrdered<Handling>,
    /// Bytes of the requests in `inflight` and of the responses in `outgoing`.
    inflight_bytes: usize,
    outgoing: VecDeque<Bytes>,
    /// Bytes of `outgoing`'s front already written.
    written: usize,
    needs_flush: bool,
    /// Completed at the last Produce's ordering point; what comes after waits for it.
    produce_turn: Option<Shared<oneshot::Receiver<()>>>,
    /// When the bytes now in `buf` started arriving (while reading).
    partial_since: Option<Instant>,
    /// The last read, write or completed request.
    last_activity: Instant,
    stop: Option<Stop>,
    /// Set at shutdown: the end of the drain.
    drain_until: Option<Instant>,
}

/// Serves one connection over any byte stream (TCP, or TLS over TCP).
pub(crate) async fn serve_connection<S>(stream: S, peer: SocketAddr, context: Arc<Context>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    tracing::debug!(%peer, "kafka connection opened");
    let auth = context.config.authenticator.clone().map(|authenticator| {
        ConnectionAuth::new(
            authenticator,
            &context.broker.config().default_namespace,
            context.config.failed_authentication_delay_ms,
        )
    });
    let mut connection = Connection {
        peer,
        authenticated: auth.is_none(),
        auth,
        context,
        buf: BytesMut::new(),
        held: None,
        inflight: FuturesOrdered::new(),
        inflight_bytes: 0,
        outgoing: VecDeque::new(),
        written: 0,
        needs_flush: false,
        produce_turn: None,
        partial_since: None,
        last_activity: Instant::now(),
        stop: None,
        drain_until: None,
    };
    let stop = connection.run(&mut reader, &mut writer).await;
    if !stop.linger.is_zero() {
        tokio::time::sleep(stop.linger).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
    tracing::debug!(%peer, why = %stop.why, "kafka connection closed");
}

impl Connection {
    async fn run<R, W>(&mut self, reader: &mut R, writer: &mut W) -> Stop
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut session = self
            .context
            .broker
            .cluster()
            .map(|member| member.session_state());
        loop {
            if self.stop.is_none() {
                if let Err(stop) = self.start_ready(reader, writer).await {
                    self.stop = Some(stop);
                }
            }
            if let Some(stop) = &mut self.stop {
                if self.inflight.is_empty() && self.outgoing.is_empty() && !self.needs_flush {
                    return Stop {
                        why: std::mem::take(&mut stop.why),
                        linger: stop.linger,
                    };
                }
            }
            // Not while a frame waits to start (or a raw SASL token waits for the response before
            // it to be written), and never beyond one frame of the largest size.
            let reading = self.stop.is_none()
                && self.held.is_none()
                && self.has_room(0)
                && !self.auth.as_ref().is_some_and(|a| a.expects_raw_token())
                && self.buf.len() < 4 + self.context.config.max_request_bytes;
            if reading {
                frame::reserve_for_read(&mut self.buf, self.context.config.max_request_bytes);
            } else if !self.buf.is_empty() {
                // A paused read is not the client's delay.
                self.partial_since = Some(Instant::now());
            }
            let deadline = self.deadline();
            let event = {
                let outgoing_front = self.outgoing.front().map(|b| &b[self.written..]);
                let writing = outgoing_front.is_some() || self.needs_flush;
                let write = async {
                    match outgoing_front {
                        Some(bytes) => Event::Wrote(writer.write(bytes).await),
                        None => Event::Flushed(writer.flush().await),
                    }
                };
                let (at, reason) = deadline.unwrap_or((Instant::now(), CloseReason::IdleTimeout));
                let fenced = async {
                    match session.as_mut() {
                        Some(state) => {
                            let _ = state
                                .wait_for(|s| *s != magnetar_broker::MetadataSessionState::Live)
                                .await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    biased;
                    _ = self.context.shutdown.cancelled(), if self.drain_until.is_none() => Event::Shutdown,
                    _ = fenced, if self.stop.is_none() => Event::Fenced,
                    Some(handled) = self.inflight.next(), if !self.inflight.is_empty() => Event::Completed(handled),
                    event = write, if writing => event,
                    read = reader.read_buf(&mut self.buf), if reading => Event::Read(read),
                    _ = tokio::time::sleep_until(at), if deadline.is_some() => Event::Deadline(reason),
                }
            };
            match event {
                Event::Fenced => {
                    // Nothing in flight can be acknowledged by a fenced broker: drop it and close.
                    self.inflight = FuturesOrdered::new();
                    self.held = None;
                    self.outgoing.clear();
                    self.needs_flush = false;
                    self.stop = Some(Stop {
                        why: "cluster session not live (fenced)".into(),
                        linger: Duration::ZERO,
                    });
                }
                Event::Shutdown => {
                    self.drain_until = Some(Instant::now() + SHUTDOWN_DRAIN);
                    if self.stop.is_none() {
                        self.stop = Some(Stop {
                            why: "shutting down".into(),
                            linger: Duration::ZERO,
                        });
                    }
                }
                Event::Completed(handled) => {
                    self.last_activity = Instant::now();
                    self.inflight_bytes -= handled.request_bytes;
                    match handled.result {
                        HandledResult::Respond(bytes) => {
                            self.inflight_bytes += bytes.len();
                            self.outgoing.push_back(bytes);
                        }
                        HandledResult::NoResponse => {}
                        HandledResult::Close => {
                            // Nothing after a refused request is answered.
                            self.inflight = FuturesOrdered::new();
                            self.held = None;
                            self.stop = Some(Stop {
                                why: "request refused".into(),
                                linger: Duration::ZERO,
                            });
                        }
                    }
                }
                Event::Wrote(Ok(n)) if n > 0 => {
                    self.last_activity = Instant::now();
                    self.written += n;
                    self.needs_flush = true;
                    if let Some(front) = self.outgoing.front() {
                        if self.written >= front.len() {
                            self.inflight_bytes -= front.len();
                            self.outgoing.pop_front();
                            self.written = 0;
                        }
                    }
                }
                Event::Wrote(Ok(_)) => return self.failed("write returned zero bytes".into()),
                Event::Wrote(Err(e)) | Event::Flushed(Err(e)) => {
                    return self.failed(format!("write failed: {e}"))
                }
                Event::Flushed(Ok(())) => self.needs_flush = false,
                Event::Read(Ok(0)) => {
                    if !self.buf.is_empty() {
                        tracing::debug!(peer = %self.peer, buffered = self.buf.len(), "kafka connection closed by the client in the middle of a frame");
                    }
                    self.buf.clear();
                    self.stop = Some(Stop {
                        why: "closed by the client".into(),
                        linger: Duration::ZERO,
                    });
                }
                Event::Read(Ok(_)) => {
                    self.last_activity = Instant::now();
                    self.partial_since.get_or_insert(self.last_activity);
                }
                Event::Read(Err(e)) => return self.failed(format!("read failed: {e}")),
                Event::Deadline(reason) => {
                    if self.drain_until.is_some_and(|end| end <= Instant::now()) {
                        return self.failed("shutdown drain timed out".into());
                    }
                    return self.timed_out(reason);
                }
            }
        }
    }

    fn failed(&self, why: String) -> Stop {
        tracing::debug!(peer = %self.peer, %why, "kafka connection closing");
        Stop {
            why,
            linger: Duration::ZERO,
        }
    }

    fn timed_out(&self, reason: CloseReason) -> Stop {
        let config = &self.context.config;
        let closes = self.context.metrics.closes();
        let peer = self.peer;
        match reason {
            CloseReason::RequestReadTimeout => {
                let (buffered, timeout_ms) = (self.buf.len(), config.request_read_timeout_ms);
                closes.closed(reason, || {
                    tracing::warn!(%peer, buffered, timeout_ms, "closing kafka connection: request frame not completed in time")
                });
            }
            _ => {
                // An idle client is not an incident: Kafka closes it quietly too.
                closes.count(reason);
                tracing::debug!(%peer, idle_ms = config.connections_max_idle_ms, "closing idle kafka connection");
            }
        }
        Stop {
            why: reason.label().into(),
            linger: Duration::ZERO,
        }
    }

    /// When the connection times out as it stands, and why.
    fn deadline(&self) -> Option<(Instant, CloseReason)> {
        let config = &self.context.config;
        let idle = Duration::from_millis(config.connections_max_idle_ms);
        let read = Duration::from_millis(config.request_read_timeout_ms);
        if let Some(end) = self.drain_until {
            Some((end, CloseReason::IdleTimeout))
        } else if !self.outgoing.is_empty() {
            // The client is not reading what it asked for.
            Some((self.last_activity + idle, CloseReason::IdleTimeout))
        } else if self.stop.is_some() || self.held.is_some() {
            None
        } else if let Some(since) = self.partial_since.filter(|_| !self.buf.is_empty()) {
            Some((since + read, CloseReason::RequestReadTimeout))
        } else if self.inflight.is_empty() {
            Some((self.last_activity + idle, CloseReason::IdleTimeout))
        } else {
            None
        }
    }

    /// Whether a request of `bytes` may start now besides those in flight.
    fn has_room(&self, bytes: usize) -> bool {
        let config = &self.context.config;
        let count = self.inflight.len() + self.outgoing.len();
        count == 0
            || (count < config.max_inflight_requests_per_connection
                && self.inflight_bytes + bytes <= config.max_inflight_bytes_per_connection)
    }

    fn quiet(&self) -> bool {
        self.inflight.is_empty() && self.outgoing.is_empty() && !self.needs_flush
    }

    /// Starts the complete frames in the buffer, as far as the rules allow.
    async fn start_ready<R, W>(&mut self, reader: &mut R, writer: &mut W) -> Result<(), Stop>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            if self.auth.as_ref().is_some_and(|a| a.expects_raw_token()) {
                if !self.quiet() {
                    return Ok(());
                }
                self.raw_exchange(reader, writer).await?;
                continue;
            }
            let frame = match self.held.take() {
                Some(frame) => frame,
                None => {
                    match frame::take_frame(&mut self.buf, self.context.config.max_request_bytes) {
                        Ok(Some(frame)) => {
                            self.partial_since =
                                (!self.buf.is_empty()).then_some(self.last_activity);
                            frame
                        }
                        Ok(None) => return Ok(()),
                        Err(e) => return Err(self.bad_frame(e)),
                    }
                }
            };
            let api_key = frame::peek_ids(&frame).map(|(key, _, _)| key).unwrap_or(-1);
            let sequential = !self.authenticated
                || (self.auth.is_some()
                    && (api_key == ApiKey::SaslHandshake as i16
                        || api_key == ApiKey::SaslAuthenticate as i16));
            let may_start = if sequential {
                self.quiet()
            } else {
                self.has_room(frame.len())
            };
            if !may_start {
                self.held = Some(frame);
                return Ok(());
            }
            if let Some(auth) = &self.auth {
                if let Admission::Close(reason) = auth.admit(api_key) {
                    let peer = self.peer;
                    self.context.metrics.closes().closed(
                        CloseReason::NotAllowed,
                        || tracing::warn!(%peer, reason, "closing kafka connection"),
                    );
                    return Err(Stop {
                        why: "request not allowed".into(),
                        linger: Duration::ZERO,
                    });
                }
            }
            let request_bytes = frame.len();
            match codec::decode_request_on(frame, self.auth.is_some()) {
                Ok(Decoded::Request(request))
                    if self.auth.is_some() && is_sasl(request.api_key) =>
                {
                    self.sasl(*request).await.map_err(|linger| Stop {
                        why: "authentication failed".into(),
                        linger,
                    })?;
                }
                Ok(Decoded::Request(request)) => self.start(*request, request_bytes),
                Ok(Decoded::UnsupportedApiVersions { correlation_id }) => {
                    tracing::info!(peer = %self.peer, "ApiVersions of an unknown version; answering in v0 with our ranges");
                    let api = ApiKey::ApiVersions as i16 as usize;
                    self.context.metrics.record(api, Duration::ZERO);
                    self.context
                        .metrics
                        .record_error(api, i32::from(UNSUPPORTED_VERSION));
                    let response = codec::unsupported_api_versions(correlation_id);
                    self.inflight_bytes += request_bytes;
                    self.inflight.push_back(Box::pin(async move {
                        Handled {
                            request_bytes,
                            result: HandledResult::Respond(response),
                        }
                    }));
                }
                Ok(Decoded::RemovedVersion {
                    api,
                    version,
                    response,
                }) => {
                    tracing::info!(peer = %self.peer, ?api, version, "message format v0/v1 request (removed in Kafka 4.0, not served); answering UNSUPPORTED_VERSION per partition");
                    let api = api as i16 as usize;
                    self.context.metrics.record(api, Duration::ZERO);
                    self.context
                        .metrics
                        .record_error(api, i32::from(UNSUPPORTED_VERSION));
                    self.inflight_bytes += request_bytes;
                    self.inflight.push_back(Box::pin(async move {
                        Handled {
                            request_bytes,
                            result: HandledResult::Respond(response),
                        }
                    }));
                }
                Err(e) => {
                    self.log_decode_error(&e);
                    if let DecodeError::UnsupportedVersion { api, .. } = &e {
                        self.context
                            .metrics
                            .record_error(*api as i16 as usize, i32::from(UNSUPPORTED_VERSION));
                    }
                    return Err(Stop {
                        why: "request not decoded".into(),
                        linger: Duration::ZERO,
                    });
                }
            }
        }
    }

    /// Starts a (non-SASL) request; its response is queued in order when it completes.
    fn start(&mut self, request: Request, request_bytes: usize) {
        let context = self.context.clone();
        let peer = self.peer;
        self.inflight_bytes += request_bytes;
        let previous = self.produce_turn.clone();
        let handling: Handling = if request.api_key == ApiKey::Produce {
            let (turn, next_turn) = oneshot::channel();
            self.produce_turn = Some(next_turn.shared());
            Box::pin(PRODUCE_TURN.scope(RefCell::new(Some(turn)), async move {
                if let Some(previous) = previous {
                    // Err: the previous Produce was dropped (connection closing); go on.
                    let _ = previous.await;
                }
                let handled = handle(context, peer, request, request_bytes).await;
                produce_ordering_point();
                handled
            }))
        } else if let Some(previous) = previous {
            Box::pin(async move {
                let _ = previous.await;
                handle(context, peer, request, request_bytes).await
            })
        } else {
            Box::pin(handle(context, peer, request, request_bytes))
        };
        self.inflight.push_back(handling);
    }

    /// SaslHandshake or SaslAuthenticate, handled while nothing else is in flight. `Err(delay)`:
    /// the exchange failed; the response is written, then the connection closes after `delay`.
    async fn sasl(&mut self, request: Request) -> Result<(), Duration> {
        let (api_key, version) = (request.api_key, request.header.api_version);
        let correlation_id = request.header.correlation_id;
        let started = std::time::Instant::now();
        let Some(reply) = (match self.auth.as_mut() {
            Some(auth) => auth.handle(request).await,
            None => None,
        }) else {
            return Err(Duration::ZERO);
        };
        let api = api_key as i16 as usize;
        self.context.metrics.record(api, started.elapsed());
        crate::metrics::for_each_error_code(&reply.response, |code| {
            self.context.metrics.record_error(api, i32::from(code))
        });
        if let Some(mut session) = reply.session {
            session.host = Some(self.peer.ip());
            self.context = Arc::new(self.context.with_session(session));
            self.authenticated = true;
        }
        match codec::encode_response(api_key, version, correlation_id, &reply.response) {
            Ok(bytes) => {
                self.inflight_bytes += bytes.len();
                self.outgoing.push_back(bytes);
            }
            Err(e) => {
                tracing::error!(peer = %self.peer, ?api_key, version, error = %e, "cannot encode kafka response; closing connection");
                return Err(Duration::ZERO);
            }
        }
        if let Some(delay) = reply.close_after {
            self.context.metrics.closes().count(CloseReason::NotAllowed);
            return Err(delay);
        }
        Ok(())
    }

    /// One legacy raw SASL token (after SaslHandshake v0), read from the buffer and then the
    /// socket, within the request read timeout.
    async fn raw_exchange<R, W>(&mut self, reader: &mut R, writer: &mut W) -> Result<(), Stop>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Some(auth) = self.auth.as_mut() else {
            return Ok(());
        };
        let timeout = Duration::from_millis(self.context.config.request_read_timeout_ms);
        let mut chained = AsyncReadExt::chain(&self.buf[..], &mut *reader);
        let outcome = tokio::select! {
            biased;
            _ = self.context.shutdown.cancelled() => None,
            outcome = tokio::time::timeout(timeout, auth.raw_exchange(&mut chained, writer)) => Some(outcome),
        };
        let unread = chained.into_inner().0.len();
        let consumed = self.buf.len() - unread;
        self.buf.advance(consumed);
        self.last_activity = Instant::now();
        let stop = |why: &str, linger| Stop {
            why: why.into(),
            linger,
        };
        match outcome {
            None => Err(stop("shutting down", Duration::ZERO)),
            Some(Err(_)) => Err(self.timed_out(CloseReason::RequestReadTimeout)),
            Some(Ok(RawOutcome::Continue)) => Ok(()),
            Some(Ok(RawOutcome::Authenticated(mut session))) => {
                session.host = Some(self.peer.ip());
                self.context = Arc::new(self.context.with_session(session));
                self.authenticated = true;
                Ok(())
            }
            Some(Ok(RawOutcome::Close(delay))) => {
                self.context.metrics.closes().count(CloseReason::NotAllowed);
                Err(stop("authentication failed", delay))
            }
        }
    }

    fn bad_frame(&self, e: FrameError) -> Stop {
        let peer = self.peer;
        self.context.metrics.closes().closed(
            CloseReason::BadFrame,
            || tracing::warn!(%peer, error = %e, "closing kafka connection: bad frame"),
        );
        Stop {
            why: "bad frame".into(),
            linger: Duration::ZERO,
        }
    }

    fn log_decode_error(&self, e: &DecodeError) {
        let peer = self.peer;
        let closes = self.context.metrics.closes();
        match e {
            DecodeError::UnsupportedVersion { .. } | DecodeError::UnknownApi(_) => closes
                .closed(CloseReason::UnsupportedRequest, || {
                    tracing::warn!(%peer, error = %e, "closing kafka connection: request not supported")
                }),
            _ => closes.closed(CloseReason::BadFrame, || {
                tracing::warn!(%peer, error = %e, "closing kafka connection: malformed request")
            }),
        }
    }
}

/// Runs one request's handler, records its metrics and encodes its response.
async fn handle(
    context: Arc<Context>,
    peer: SocketAddr,
    request: Request,
    request_bytes: usize,
) -> Handled {
    let api_key = request.api_key;
    let version = request.header.api_version;
    let correlation_id = request.header.correlation_id;
    let client_id = request.header.client_id.clone();
    let started = std::time::Instant::now();
    let outcome = api::handle(&context, peer, request).await;
    record(&context, api_key, started, &outcome);
    let result = match outcome {
        api::Outcome::Respond(body) => {
            match codec::encode_response(api_key, version, correlation_id, &body) {
                Ok(bytes) => HandledResult::Respond(bytes),
                Err(e) => {
                    tracing::error!(%peer, ?api_key, version, client_id, error = %e, "cannot encode kafka response; closing connection");
                    HandledResult::Close
                }
            }
        }
        api::Outcome::NoResponse => HandledResult::NoResponse, // Produce with acks=0
        api::Outcome::Close(reason) => {
            context
                .metrics
                .closes()
                .closed(CloseReason::NotAllowed, || {
                    tracing::warn!(%peer, ?api_key, version, client_id, reason, "closing kafka connection")
                });
            HandledResult::Close
        }
    };
    Handled {
        request_bytes,
        result,
    }
}

/// Counts a handled request, its latency (decoded to response ready) and its error codes.
fn record(context: &Context, api_key: ApiKey, started: std::time::Instant, outcome: &api::Outcome) {
    let api = api_key as i16 as usize;
    context.metrics.record(api, started.elapsed());
    if let api::Outcome::Respond(body) = outcome {
        crate::metrics::for_each_error_code(body, |code| {
            context.metrics.record_error(api, i32::from(code))
        });
    }
}

fn is_sasl(api_key: ApiKey) -> bool {
    matches!(api_key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
}
