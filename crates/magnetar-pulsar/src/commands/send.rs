//! SEND -> SEND_RECEIPT / SEND_ERROR.
//!
//! One SEND (a single message or a batch, compressed as the client produced it) is one storage
//! entry of format `Pulsar` whose payload is the body as sent: `[metadata_size][MessageMetadata]
//! [payload]`. Its message count is the SEND's `num_messages` (= `num_messages_in_batch`) and
//! its max timestamp the batch's event time, else its publish time.
//!
//! Receipts leave in SEND order: the entry is enqueued here ([`PartitionLog::enqueue`]: index
//! assigned, bytes queued to the ledger's writer), so indexes follow SEND order, and the wait for
//! durability ([`Appending::durable`]) runs in the connection's send pipeline, which yields
//! receipts in order.
//!
//! [`PartitionLog::enqueue`]: magnetar_broker::PartitionLog::enqueue
//! [`Appending::durable`]: magnetar_broker::Appending::durable
//!
//! Before a receipt, the body is checked against its metadata and the SEND
//! ([`magnetar_format::pulsar::check_entry`]: message count, codec, sizes, single messages of a
//! batch, decompression under a bound); a body that does not hold what it says is refused with
//! `NotAllowedError` (what Pulsar answers for a message it will not store, e.g. one too large:
//! the client fails that message and goes on, where other errors make it reconnect and resend
//! the same bytes forever), with one log line naming the connection and producer.
//!
//! Every entry's header names its producer (`named_producer_batch`); with deduplication on, a
//! SEND whose sequence id was appended before is answered with the original's message id and
//! not appended again ([`crate::dedup`]).

use bytes::Bytes;
use futures_util::FutureExt;
use magnetar_broker::{named_producer_batch, AppendRequest, PayloadFormat};

use crate::connection::{Connection, Handled, ProducerHandle, Reply, SendFuture};
use crate::dedup::{Check, Outcome, SharedOutcome};
use crate::error::{server_error, Answer, CommandFailure};
use crate::frame::{self, split_body, Payload};
use crate::message_id::message_id;
use crate::proto::base_command::Type;
use crate::proto::{BaseCommand, CommandSend, CommandSendReceipt, MessageIdData, ServerError};

impl Connection {
    pub(crate) async fn on_send(
        &mut self,
        command: BaseCommand,
        payload: Option<Payload>,
    ) -> Handled {
        let Some(send) = command.send else {
            return Ok(Reply::Close("SEND without its body".into()));
        };
        let (producer_id, sequence_id) = (send.producer_id, send.sequence_id);
        if self
            .producers
            .get(&producer_id)
            .is_some_and(|p| p.link.is_closed())
        {
            // The broker closed this producer (its partition closed: unloaded or moved) and sent
            // CLOSE_PRODUCER before any answer to this SEND: the client reconnects and sends
            // again what was not acknowledged. An error here would fail the message instead.
            tracing::debug!(peer = %self.peer, producer_id, sequence_id, "SEND to a producer the broker closed: ignored");
            return Ok(Reply::Nothing);
        }
        self.refresh_failed_log(producer_id).await;
        let producer = self.sending_producer(producer_id, sequence_id)?;
        let (body, max_timestamp_ms) = self.check_send(producer, &send, payload)?;
        let message_count = send.num_messages().max(1) as u32;
        let receipt = Receipt {
            producer_id,
            sequence_id,
            highest_sequence_id: send.highest_sequence_id.unwrap_or(sequence_id),
            partition: producer.id_partition,
        };
        let name = &producer.name;
        if let Some(table) = &producer.dedup {
            let check = table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .check(name, sequence_id);
            if let Check::Duplicate(original) = check {
                tracing::debug!(peer = %self.peer, producer = %name, sequence_id, "pulsar send is a duplicate; not appended");
                let fut: SendFuture = Box::pin(async move {
                    match original {
                        Some(original) => receipt.frame(Some(original.await)),
                        None => receipt.frame(None),
                    }
                });
                return self.queue_receipt(fut).await;
            }
        }
        let request = AppendRequest {
            payload: body,
            message_count,
            max_timestamp_ms,
            format: PayloadFormat::Pulsar,
            // Tagged with the producer name in the entry header, so deduplication state can be
            // found again after a restart.
            producer: Some(named_producer_batch(name, message_count)),
            first_index_at: None,
        };
        // The namespace's publish rate: past it, stop reading from this connection for the
        // producer's debt (after queueing this SEND), as Pulsar throttles producers.
        let throttle = producer
            .log
            .publish_delay(u64::from(message_count), request.payload.len() as u64);
        let fut = append(producer, request, receipt);
        let reply = self.queue_receipt(fut).await?;
        if matches!(reply, Reply::Nothing) && !throttle.is_zero() {
            tokio::time::sleep(throttle).await;
        }
        Ok(reply)
    }

    /// The producer a SEND names, if it is open on this connection and may send.
    fn sending_producer(
        &self,
        producer_id: u64,
        sequence_id: u64,
    ) -> Result<&ProducerHandle, CommandFailure> {
        let answer = Answer::Send {
            producer_id,
            sequence_id,
        };
        let Some(producer) = self.producers.get(&producer_id) else {
            return Err(CommandFailure::new(
                answer,
                ServerError::ProducerBusy,
                format!("producer {producer_id} is not open on this connection"),
            ));
        };
        if producer.link.is_fenced() {
            return Err(CommandFailure::new(
                answer,
                ServerError::ProducerFenced,
                format!("producer {producer_id} was fenced out by an exclusive producer"),
            ));
        }
        if producer.link.is_waiting() {
            return Err(CommandFailure::new(
                answer,
                ServerError::NotAllowedError,
                format!("producer {producer_id} is waiting for exclusive access"),
            ));
        }
        Ok(producer)
    }

    /// A SEND's body, checked against its checksum, its metadata and the SEND, and its max
    /// timestamp (the batch's event time, else its publish time).
    fn check_send(
        &self,
        producer: &ProducerHandle,
        send: &CommandSend,
        payload: Option<Payload>,
    ) -> Result<(Bytes, i64), CommandFailure> {
        let refuse = |code, message: String| {
            CommandFailure::new(
                Answer::Send {
                    producer_id: send.producer_id,
                    sequence_id: send.sequence_id,
                },
                code,
                message,
            )
        };
        let Some(payload) = payload else {
            return Err(refuse(
                ServerError::UnknownError,
                "SEND without a payload".into(),
            ));
        };
        if payload.checksum_ok == Some(false) {
            return Err(refuse(
                ServerError::ChecksumError,
                "payload checksum does not match".into(),
            ));
        }
        if send.txnid_most_bits() != 0 || send.txnid_least_bits() != 0 {
            return Err(refuse(
                ServerError::NotAllowedError,
                "transactions are not supported yet".into(),
            ));
        }
        let (metadata, _) = split_body(&payload.body)
            .map_err(|e| refuse(ServerError::UnknownError, e.to_string()))?;
        if let Err(e) = magnetar_format::pulsar::check_entry(
            &payload.body,
            u64::from(send.num_messages().max(1).unsigned_abs()),
            magnetar_format::kafka::DECOMPRESSED_BYTES_MAX,
        ) {
            tracing::warn!(peer = %self.peer, producer = %producer.name, error = %e, "refusing pulsar message whose body does not match its metadata");
            return Err(refuse(
                ServerError::NotAllowedError,
                format!("message refused: {e}"),
            ));
        }
        let max_timestamp_ms = match metadata.event_time() {
            0 => metadata.publish_time as i64,
            t => t as i64,
        };
        Ok((payload.body, max_timestamp_ms))
    }

    /// Queues a SEND's receipt (or error) to the send pipeline, which writes them in SEND
    /// order.
    async fn queue_receipt(&self, receipt: SendFuture) -> Handled {
        if self.sends.send(receipt).await.is_err() {
            return Ok(Reply::Close("send pipeline stopped".into()));
        }
        Ok(Reply::Nothing)
    }

    /// After a write failed (e.g. the disk was full) the partition's ledger refuses appends
    /// until the broker reopens it; take the reopened log (the broker rate-limits reopening),
    /// so the producer recovers without reconnecting once space is back.
    async fn refresh_failed_log(&mut self, producer_id: u64) {
        let Some(producer) = self.producers.get(&producer_id) else {
            return;
        };
        if !producer.log.is_failed() {
            return;
        }
        let partition = producer.partition.clone();
        if let Ok(log) = self.service.broker.partition(&partition).await {
            if let Some(producer) = self.producers.get_mut(&producer_id) {
                producer.log = log;
            }
        }
    }
}

/// Phase one of an append, now, in SEND order: the index is assigned and the entry queued to
/// the writer (and, under deduplication, the sequence id pushed). The future it returns is the
/// receipt once the entry is durable, or the SEND_ERROR.
fn append(producer: &ProducerHandle, request: AppendRequest, receipt: Receipt) -> SendFuture {
    let (append, refused): (SharedOutcome, Option<Outcome>) = match producer.log.enqueue(request) {
        Ok(appending) => (
            async move {
                appending
                    .durable()
                    .await
                    .map(|o| o.first_index)
                    .map_err(|e| (server_error(&e), e.to_string()))
            }
            .boxed()
            .shared(),
            None,
        ),
        Err(e) => {
            let outcome: Outcome = Err((server_error(&e), e.to_string()));
            let settled = outcome.clone();
            (async move { settled }.boxed().shared(), Some(outcome))
        }
    };
    let (name, dedup, sequence_id) = (
        producer.name.clone(),
        producer.dedup.clone(),
        receipt.sequence_id,
    );
    if let Some(table) = &dedup {
        let highest = receipt.highest_sequence_id.max(sequence_id);
        table.lock().unwrap_or_else(|e| e.into_inner()).pushed(
            &name,
            sequence_id,
            highest,
            append.clone(),
        );
    }
    let settle = move |outcome: Outcome| -> Bytes {
        if let (Err(_), Some(table)) = (&outcome, &dedup) {
            table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .failed(&name, sequence_id);
        }
        receipt.frame(Some(outcome))
    };
    match refused {
        // Refused at once: settled now, so a retry of this sequence id is not a duplicate.
        Some(outcome) => {
            let bytes = settle(outcome);
            Box::pin(async move { bytes })
        }
        None => Box::pin(async move { settle(append.await) }),
    }
}

/// What a SEND's receipt names.
#[derive(Clone, Copy)]
struct Receipt {
    producer_id: u64,
    sequence_id: u64,
    highest_sequence_id: u64,
    /// The partition in message ids.
    partition: i32,
}

impl Receipt {
    /// SEND_RECEIPT for an append's outcome (`None`: a duplicate older than what is
    /// remembered, Pulsar's `-1:-1`), or SEND_ERROR for its failure.
    fn frame(self, outcome: Option<Outcome>) -> Bytes {
        let id = match outcome {
            Some(Err((code, message))) => {
                let answer = Answer::Send {
                    producer_id: self.producer_id,
                    sequence_id: self.sequence_id,
                };
                return CommandFailure::new(answer, code, message).frame();
            }
            None => MessageIdData {
                ledger_id: u64::MAX,
                entry_id: u64::MAX,
                partition: Some(self.partition),
                ..Default::default()
            },
            Some(Ok(first_index)) => message_id(self.partition, first_index, None),
        };
        frame::encode(&BaseCommand {
            r#type: Type::SendReceipt as i32,
            send_receipt: Some(CommandSendReceipt {
                producer_id: self.producer_id,
                sequence_id: self.sequence_id,
                message_id: Some(id),
                highest_sequence_id: Some(self.highest_sequence_id),
            }),
            ..Default::default()
        })
    }
}
