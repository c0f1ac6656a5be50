//! One client connection: a reader loop that decodes frames and runs commands, a writer task
//! that drains a bounded queue of encoded frames to the socket, and a send pipeline that turns
//! appends into receipts in order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use magnetar_broker::{PartitionLog, TopicPartition};
use magnetar_metrics::CloseReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{Answer, CommandFailure, OrAnswer};
use crate::frame::{self, Frame};
use crate::proto::base_command::Type;
use crate::proto::{BaseCommand, CommandPing, ServerError};
use crate::service::{ResolvedTopic, Service};
use magnetar_broker::Subscription;

/// The socket write buffer of a connection.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// The read buffer a connection starts with; it grows with the bytes of a frame as they arrive.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// A receipt (or error) for one SEND, computed once its append is durable.
pub(crate) type SendFuture = Pin<Box<dyn std::future::Future<Output = Bytes> + Send>>;

pub(crate) struct ProducerHandle {
    pub partition: TopicPartition,
    pub id_partition: i32,
    pub log: Arc<PartitionLog>,
    pub name: String,
    pub registration: u64,
    /// Whether it may send (fenced, waiting for exclusive access), shared with the registry.
    pub link: crate::producers::ProducerLink,
    /// The partition's deduplication table when deduplication is on for this producer.
    pub dedup: Option<Arc<std::sync::Mutex<crate::dedup::DedupTable>>>,
}

impl ProducerHandle {
    /// Gives the producer's registration (and its name, under deduplication) back.
    pub(crate) fn release(&self, service: &Service) {
        service
            .producers
            .unregister(&self.partition, self.registration);
        if let Some(table) = &self.dedup {
            table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .detach(&self.name, self.registration);
        }
    }
}

pub(crate) struct ConsumerHandle {
    pub subscription: Arc<Subscription>,
    /// The partition number in message ids (`-1` for a non-partitioned topic).
    pub id_partition: i32,
}

pub(crate) struct Connection {
    pub service: Arc<Service>,
    pub id: u64,
    pub peer: SocketAddr,
    pub out: mpsc::Sender<Bytes>,
    pub sends: mpsc::Sender<SendFuture>,
    pub connected: bool,
    pub protocol_version: i32,
    pub broker_entry_metadata: bool,
    pub producers: HashMap<u64, ProducerHandle>,
    pub consumers: HashMap<u64, ConsumerHandle>,
    /// Who the client authenticated as, when authentication is on.
    pub auth: crate::commands::auth::ConnectionAuth,
    /// On a TLS listener: the verified client certificate's subject (auth method `tls`).
    pub tls_peer: Option<magnetar_auth::tls::PeerIdentity>,
    /// This connection's authorization decisions (see `commands::authz`).
    pub access: magnetar_broker::permissions::AccessCache,
    /// The command being handled, for the errors it answers (metrics).
    pub command: usize,
}

/// What the reader loop does after a command.
pub(crate) enum Next {
    Continue,
    Close(String),
}

/// What a command handler answers when it does not refuse the command.
pub(crate) enum Reply {
    /// No frame now: the command has none, or its answer leaves later (a receipt through the
    /// send pipeline) or was written already (before a task that answers again later).
    Nothing,
    /// One encoded frame.
    Frame(Bytes),
    /// The connection closes, with no answer (a protocol violation).
    Close(String),
}

impl Reply {
    pub(crate) fn frame(command: &BaseCommand) -> Self {
        Reply::Frame(frame::encode(command))
    }

    /// SUCCESS to `request_id`.
    pub(crate) fn success(request_id: u64) -> Self {
        Reply::frame(&BaseCommand {
            r#type: Type::Success as i32,
            success: Some(crate::proto::CommandSuccess {
                request_id,
                schema: None,
            }),
            ..Default::default()
        })
    }
}

/// What a command handler returns; the refusals are answered by [`Connection::handle`].
pub(crate) type Handled = Result<Reply, CommandFailure>;

/// Serves one connection over any byte stream (TCP, or TLS over TCP). `tls_peer` is the
/// verified client certificate's subject on a TLS listener with client certificates.
pub(crate) async fn run<S>(
    service: Arc<Service>,
    stream: S,
    peer: SocketAddr,
    tls_peer: Option<magnetar_auth::tls::PeerIdentity>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let cancel = service.shutdown.child_token();
    // Cluster mode: a fenced broker serves nothing; its clients are let go at once so they look
    // their topics up again elsewhere (as the Kafka front end does).
    if let Some(member) = service.broker.cluster() {
        let mut state = member.session_state();
        let fence_cancel = cancel.clone();
        service.tasks.spawn(async move {
            tokio::select! {
                _ = fence_cancel.cancelled() => {}
                _ = state.wait_for(|s| *s != magnetar_broker::MetadataSessionState::Live) => {
                    tracing::debug!(%peer, "cluster session not live: closing the pulsar connection");
                    fence_cancel.cancel();
                }
            }
        });
    }
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(service.config.outbound_frames_max);
    let (send_tx, mut send_rx) = mpsc::channel::<SendFuture>(service.config.pending_sends_max);

    let writer_cancel = cancel.clone();
    let writer_task = service.tasks.spawn(async move {
        // Buffered: receipts and messages queued together go out in one write; the buffer is
        // flushed whenever the queue is empty. Every write races the cancel token, so a client
        // that stops reading cannot hold up shutdown.
        let mut writer = tokio::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer);
        loop {
            let frame = tokio::select! {
                _ = writer_cancel.cancelled() => break,
                frame = out_rx.recv() => match frame {
                    Some(frame) => frame,
                    None => break,
                },
            };
            // Biased to the write: a frame already taken from the queue (a final error before a
            // close) is written when the socket takes it at once; only a blocked write yields
            // to the cancel.
            tokio::select! {
                biased;
                written = async {
                    writer.write_all(&frame).await?;
                    if out_rx.is_empty() {
                        writer.flush().await?;
                    }
                    Ok::<(), std::io::Error>(())
                } => if written.is_err() { break },
                _ = writer_cancel.cancelled() => break,
            }
        }
        // Whatever is still queued after the reader stopped (a final error) is written too,
        // within a bound.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Ok(frame) = out_rx.try_recv() {
                if writer.write_all(&frame).await.is_err() {
                    break;
                }
            }
            let _ = writer.flush().await;
            let _ = writer.shutdown().await;
        })
        .await;
        writer_cancel.cancel();
    });

    let pipeline_out = out_tx.clone();
    let pipeline_cancel = cancel.clone();
    let pipeline_task = service.tasks.spawn(async move {
        let mut in_flight: FuturesOrdered<SendFuture> = FuturesOrdered::new();
        loop {
            tokio::select! {
                _ = pipeline_cancel.cancelled() => break,
                next = send_rx.recv() => match next {
                    Some(fut) => in_flight.push_back(fut),
                    None if in_flight.is_empty() => break,
                    None => {
                        while let Some(receipt) = in_flight.next().await {
                            let _ = pipeline_out.send(receipt).await;
                        }
                        break;
                    }
                },
                Some(receipt) = in_flight.next(), if !in_flight.is_empty() => {
                    if pipeline_out.send(receipt).await.is_err() {
                        break;
                    }
                }
            }
        }
    });

    let mut conn = Connection {
        id: service.connection_id(),
        service: service.clone(),
        peer,
        out: out_tx,
        sends: send_tx,
        connected: false,
        protocol_version: 0,
        broker_entry_metadata: false,
        producers: HashMap::new(),
        consumers: HashMap::new(),
        auth: Default::default(),
        tls_peer,
        access: magnetar_broker::permissions::AccessCache::for_host(peer.ip()),
        command: 0,
    };
    let reason = conn.read_loop(&mut reader, &cancel).await;
    tracing::debug!(%peer, %reason, "pulsar connection closing");
    conn.release().await;
    // Let the writer flush the frames already queued (a final error), then stop everything.
    drop(conn);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = pipeline_task.await;
    })
    .await;
    cancel.cancel();
    let _ = writer_task.await;
}

impl Connection {
    async fn read_loop<R: tokio::io::AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        cancel: &CancellationToken,
    ) -> String {
        let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
        let keepalive = Duration::from_secs(self.service.config.keepalive_interval_s.max(1));
        let max_frame = self.service.config.frame_size_max_bytes;
        // CONNECT (with its authentication) must complete by then; keep-alive runs from accept.
        let connect_deadline = tokio::time::Instant::now()
            + Duration::from_millis(self.service.config.connect_timeout_ms);
        let mut last_read = Instant::now();
        let mut ping_sent = false;
        let mut ticker = tokio::time::interval(keepalive);
        ticker.tick().await;
        loop {
            loop {
                match frame::decode(&mut buf, max_frame) {
                    Ok(Some(frame)) => {
                        last_read = Instant::now();
                        ping_sent = false;
                        // Timed here rather than in a wrapper around `handle`, which would nest
                        // one more (large) future on the stack.
                        self.command = usize::try_from(frame.command.r#type).unwrap_or(usize::MAX);
                        let next = self.handle(frame).await;
                        self.service
                            .metrics
                            .record(self.command, last_read.elapsed());
                        match next {
                            Next::Continue => {}
                            Next::Close(reason) => {
                                if !self.connected {
                                    self.service.metrics.closes().count(CloseReason::NotAllowed);
                                }
                                return reason;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let peer = self.peer;
                        self.service.metrics.closes().closed(
                            CloseReason::BadFrame,
                            || tracing::warn!(%peer, error = %e, "closing pulsar connection"),
                        );
                        return e.to_string();
                    }
                }
            }
            frame::reserve_for_read(&mut buf, max_frame);
            let auth_deadline = self.auth.next_deadline();
            tokio::select! {
                _ = cancel.cancelled() => return "shutting down".into(),
                _ = tokio::time::sleep_until(connect_deadline), if !self.connected => {
                    let (peer, buffered) = (self.peer, buf.len());
                    self.service.metrics.closes().closed(CloseReason::ConnectTimeout, || {
                        tracing::warn!(%peer, buffered, "closing pulsar connection: CONNECT not completed in time")
                    });
                    return "connect timeout".into();
                }
                _ = tokio::time::sleep(auth_deadline.unwrap_or_default()), if auth_deadline.is_some() => {
                    if let Next::Close(reason) = self.on_auth_deadline().await {
                        tracing::info!(peer = %self.peer, %reason, "closing pulsar connection");
                        return reason;
                    }
                }
                _ = ticker.tick() => {
                    // Before CONNECT no PING can be answered; silence closes the same way.
                    if last_read.elapsed() >= keepalive * 2 && (ping_sent || !self.connected) {
                        self.service.metrics.closes().count(CloseReason::KeepaliveTimeout);
                        return "keep-alive timeout".into();
                    }
                    if last_read.elapsed() >= keepalive && self.connected {
                        ping_sent = true;
                        self.send(ping()).await;
                    }
                }
                read = reader.read_buf(&mut buf) => match read {
                    Ok(0) => return "closed by peer".into(),
                    Ok(_) => {}
                    Err(e) => return format!("read failed: {e}"),
                }
            }
        }
    }

    /// Runs a command and writes its answer, or its refusal: the one place a failure becomes
    /// a frame.
    async fn handle(&mut self, frame: Frame) -> Next {
        match self.dispatch(frame).await {
            Ok(Reply::Nothing) => Next::Continue,
            Ok(Reply::Frame(bytes)) => {
                let _ = self.out.send(bytes).await;
                Next::Continue
            }
            Ok(Reply::Close(reason)) => Next::Close(reason),
            Err(failure) => self.refuse(failure).await,
        }
    }

    async fn dispatch(&mut self, frame: Frame) -> Handled {
        let Frame { command, payload } = frame;
        let kind = Type::try_from(command.r#type).ok();
        if !self.connected && kind != Some(Type::Connect) {
            return Ok(Reply::Close(format!(
                "command {} before CONNECT",
                command.r#type
            )));
        }
        match kind {
            Some(Type::Connect) => self.on_connect(command),
            Some(Type::Ping) => Ok(Reply::frame(&BaseCommand {
                r#type: Type::Pong as i32,
                pong: Some(crate::proto::CommandPong {}),
                ..Default::default()
            })),
            Some(Type::Pong) => Ok(Reply::Nothing),
            Some(Type::AuthResponse) => self.on_auth_response(command),
            // The commands that open topics or read policies are boxed: their state would
            // otherwise sit inline in every connection's reader future (a debug build's worker
            // stack overflowed).
            Some(Type::Lookup) => Box::pin(self.on_lookup(command)).await,
            Some(Type::PartitionedMetadata) => {
                Box::pin(self.on_partitioned_metadata(command)).await
            }
            Some(Type::GetTopicsOfNamespace) => {
                Box::pin(self.on_topics_of_namespace(command)).await
            }
            Some(Type::Producer) => Box::pin(self.on_producer(command)).await,
            Some(Type::CloseProducer) => self.on_close_producer(command),
            Some(Type::Send) => self.on_send(command, payload).await,
            Some(Type::Subscribe) => Box::pin(self.on_subscribe(command)).await,
            Some(Type::Flow) => self.on_flow(command),
            Some(Type::Ack) => self.on_ack(command).await,
            Some(Type::RedeliverUnacknowledgedMessages) => self.on_redeliver(command),
            Some(Type::CloseConsumer) => self.on_close_consumer(command),
            Some(Type::Unsubscribe) => self.on_unsubscribe(command).await,
            Some(Type::Seek) => self.on_seek(command).await,
            Some(Type::GetLastMessageId) => self.on_get_last_message_id(command).await,
            Some(Type::GetSchema) => Box::pin(self.on_get_schema(command)).await,
            Some(Type::GetOrCreateSchema) => Box::pin(self.on_get_or_create_schema(command)).await,
            _ => self.on_unsupported(command),
        }
    }

    /// Writes a refused command's answer: SEND_ERROR through the send pipeline (so it keeps
    /// SEND order), every other answer at once; ERROR is counted in the metrics.
    async fn refuse(&mut self, failure: CommandFailure) -> Next {
        let bytes = failure.frame();
        match failure.answer {
            Answer::Send {
                producer_id,
                sequence_id,
            } => {
                let message = &failure.message;
                tracing::debug!(peer = %self.peer, producer_id, sequence_id, %message, "pulsar send refused");
                let _ = self.sends.send(Box::pin(async move { bytes })).await;
            }
            Answer::Request(_) => {
                self.service
                    .metrics
                    .record_error(self.command, failure.code as i32);
                let _ = self.out.send(bytes).await;
            }
            Answer::Lookup(_)
            | Answer::PartitionedMetadata(_)
            | Answer::Ack { .. }
            | Answer::GetSchema(_)
            | Answer::GetOrCreateSchema(_) => {
                let _ = self.out.send(bytes).await;
            }
        }
        match failure.close {
            Some(reason) => Next::Close(reason),
            None => Next::Continue,
        }
    }

    /// A command this broker does not serve: an error for requests that carry an id, a log line
    /// for the rest; the connection stays open.
    fn on_unsupported(&mut self, command: BaseCommand) -> Handled {
        tracing::warn!(peer = %self.peer, command = command.r#type, "unsupported pulsar command");
        match request_id_of(&command) {
            Some(request_id) => Err(CommandFailure::new(
                Answer::Request(request_id),
                ServerError::NotAllowedError,
                format!("command {} is not supported by this broker", command.r#type),
            )),
            None => Ok(Reply::Nothing),
        }
    }

    pub(crate) async fn send(&self, command: BaseCommand) {
        let _ = self.out.send(frame::encode(&command)).await;
    }

    /// The topic partition `name` names, and its log.
    pub(crate) async fn open_partition(
        &self,
        name: &str,
        answer: Answer,
    ) -> Result<(ResolvedTopic, Arc<PartitionLog>), CommandFailure> {
        let resolved = self.service.resolve(name).await.or_answer(answer)?;
        let log = self
            .service
            .broker
            .partition(&resolved.partition)
            .await
            .or_answer(answer)?;
        Ok((resolved, log))
    }

    /// Releases producers and consumers when the connection ends.
    async fn release(&mut self) {
        for (_, p) in self.producers.drain() {
            p.release(&self.service);
        }
        let consumers: Vec<u64> = self.consumers.keys().copied().collect();
        for id in consumers {
            self.drop_consumer(id);
        }
    }

    /// Removes a consumer from its subscription (the last one leaving stops its dispatcher).
    pub(crate) fn drop_consumer(&mut self, consumer_id: u64) -> Option<Arc<Subscription>> {
        let handle = self.consumers.remove(&consumer_id)?;
        handle.subscription.remove_consumer((self.id, consumer_id));
        Some(handle.subscription)
    }
}

fn ping() -> BaseCommand {
    BaseCommand {
        r#type: Type::Ping as i32,
        ping: Some(CommandPing {}),
        ..Default::default()
    }
}

/// The request id of commands that expect a response carrying one.
fn request_id_of(c: &BaseCommand) -> Option<u64> {
    c.consumer_stats
        .as_ref()
        .map(|x| x.request_id)
        .or(c.new_txn.as_ref().map(|x| x.request_id))
        .or(c.add_partition_to_txn.as_ref().map(|x| x.request_id))
        .or(c.add_subscription_to_txn.as_ref().map(|x| x.request_id))
        .or(c.end_txn.as_ref().map(|x| x.request_id))
        .or(c.watch_topic_list.as_ref().map(|x| x.request_id))
}
