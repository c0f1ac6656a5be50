//! The HTTP connection loop, in place of `axum::serve`, for its limits: `axum::serve` sets no
//! timer, so a connection that sends half a request's headers, or keeps a keep-alive connection
//! open without requests, was held as long as the client liked.
//!
//! Each connection is served by hyper's HTTP/1 server with a watch on it: the bytes read (counted
//! by a wrapper around the stream) and the requests in flight (counted by a wrapper around the
//! router). With no request in flight, a connection that has read bytes of a next request must
//! complete its headers within `header_read_timeout_ms` of the first of them; one that has read
//! nothing is closed after `idle_timeout_ms`. A request being handled (e.g. a large upload read by
//! its handler, or a slow admin operation) is never timed out here. Closes are counted by reason
//! in the `http` protocol's metrics, their warnings rate-limited.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use magnetar_metrics::{CloseReason, ProtocolMetrics};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The HTTP listener's connection limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's headers must be complete this long after their first byte arrived.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight and no bytes of a next one is closed after this
    /// long (from accept, or from the end of the previous request).
    pub idle_timeout_ms: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 30_000,
            idle_timeout_ms: 120_000,
        }
    }
}

/// On shutdown, requests in flight get this long to finish.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// The counters of the `http` or `https` listener (connections; no per-API series).
pub(crate) fn protocol_metrics(protocol: &'static str) -> Arc<ProtocolMetrics> {
    Arc::new(ProtocolMetrics::new(protocol, &[], |code| code.to_string()))
}

/// What a connection's watch sees, in milliseconds since the connection's start.
struct Watch {
    origin: Instant,
    bytes_read: AtomicU64,
    /// `bytes_read` when the connection last became idle (accept or the end of a request).
    bytes_at_idle: AtomicU64,
    idle_since_ms: AtomicU64,
    /// When the first byte after `idle_since_ms` was read.
    first_byte_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Watch {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn became_idle(&self) {
        self.bytes_at_idle
            .store(self.bytes_read.load(Ordering::Relaxed), Ordering::Relaxed);
        self.idle_since_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Whether the connection has timed out, and why.
    fn expired(&self, limits: &HttpLimits) -> Option<CloseReason> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let now = self.now_ms();
        if self.bytes_read.load(Ordering::Relaxed) > self.bytes_at_idle.load(Ordering::Relaxed) {
            let since = self.first_byte_ms.load(Ordering::Relaxed);
            (now.saturating_sub(since) >= limits.header_read_timeout_ms)
                .then_some(CloseReason::RequestReadTimeout)
        } else {
            let since = self.idle_since_ms.load(Ordering::Relaxed);
            (now.saturating_sub(since) >= limits.idle_timeout_ms)
                .then_some(CloseReason::IdleTimeout)
        }
    }
}

/// The stream, counting the bytes read into the watch.
struct Watched<S> {
    inner: S,
    watch: Arc<Watch>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            let watch = &self.watch;
            let read = watch.bytes_read.fetch_add(n, Ordering::Relaxed);
            if read == watch.bytes_at_idle.load(Ordering::Relaxed) {
                watch.first_byte_ms.store(watch.now_ms(), Ordering::Relaxed);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Counts a request in flight until dropped (response ready, or the request abandoned).
struct InFlight(Arc<Watch>);

impl InFlight {
    fn new(watch: Arc<Watch>) -> Self {
        watch.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(watch)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.became_idle();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `router` on the connections `listener` yields until `shutdown` is cancelled, then
/// lets requests in flight finish (within [`SHUTDOWN_DRAIN`]) and returns.
pub(crate) async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: HttpLimits,
    metrics: Arc<ProtocolMetrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (io, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let open = metrics.connection_opened();
        let (router, metrics, shutdown) = (router.clone(), metrics.clone(), shutdown.clone());
        connections.spawn(async move {
            serve_connection(io, peer, router, limits, &metrics, shutdown).await;
            drop(open);
        });
    }
    let drained = tokio::time::timeout(SHUTDOWN_DRAIN * 2, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    metrics.closes().flush();
    Ok(())
}

async fn serve_connection<S>(
    io: S,
    peer: std::net::SocketAddr,
    router: Router,
    limits: HttpLimits,
    metrics: &ProtocolMetrics,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let watch = Arc::new(Watch {
        origin: Instant::now(),
        bytes_read: AtomicU64::new(0),
        bytes_at_idle: AtomicU64::new(0),
        idle_since_ms: AtomicU64::new(0),
        first_byte_ms: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let service = {
        let watch = watch.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = InFlight::new(watch.clone());
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(axum::body::Body::new)).await;
                drop(in_flight);
                response
            }
        })
    };
    let io = TokioIo::new(Watched {
        inner: io,
        watch: watch.clone(),
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The timeouts are this module's (see the module docs); hyper's needs a timer.
    builder.header_read_timeout(None::<Duration>);
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let tick = Duration::from_millis(
        (limits.header_read_timeout_ms.min(limits.idle_timeout_ms) / 4).clamp(10, 1000),
    );
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut draining: Option<Instant> = None;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "http connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if draining.is_none() => {
                connection.as_mut().graceful_shutdown();
                draining = Some(Instant::now() + SHUTDOWN_DRAIN);
            }
            _ = ticker.tick() => {
                if draining.is_some_and(|end| end <= Instant::now()) {
                    return;
                }
                match watch.expired(&limits) {
                    Some(CloseReason::RequestReadTimeout) => {
                        let timeout_ms = limits.header_read_timeout_ms;
                        metrics.closes().closed(CloseReason::RequestReadTimeout, || {
                            tracing::warn!(%peer, timeout_ms, "closing http connection: request headers not completed in time")
                        });
                        return;
                    }
                    Some(reason) => {
                        metrics.closes().count(reason);
                        tracing::debug!(%peer, "closing idle http connection");
                        return;
                    }
                    None => {}
                }
            }
        }
    }
}
