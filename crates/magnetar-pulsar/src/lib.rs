//! Pulsar binary protocol front end.
//!
//! Owns: the Pulsar listener (port 6650). The protocol itself (frames, commands, subscriptions)
//! is not built yet; until it is, the listener accepts a connection, logs one line saying so and
//! closes it, so the port, the flags and the config exist and clients fail fast and clearly.
//!
//! Must not depend on: the Kafka front end or the storage crate directly (it goes through
//! `magnetar-broker`).

use std::sync::Arc;

use magnetar_broker::Broker;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves Pulsar clients on `listener` until `shutdown` is cancelled. For now every connection
/// is closed at once with a log line.
pub async fn serve(
    listener: TcpListener,
    _broker: Arc<Broker>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, peer)) => {
                        tracing::warn!(%peer, "pulsar protocol is not implemented yet; closing connection");
                        drop(stream);
                    }
                    Err(e) => tracing::warn!(error = %e, "pulsar accept failed"),
                }
            }
        }
    }
}
