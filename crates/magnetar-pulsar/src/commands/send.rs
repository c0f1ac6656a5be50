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

use crate::connection::{Connection, Next, SendFuture};
use crate::dedup::{Check, Outcome, SharedOutcome};
use crate::error::server_error;
use crate::frame::{self, split_body, Payload};
use crate::message_id::message_id;
use crate::proto::base_command::Type;
use crate::proto::{BaseCommand, CommandSendError, CommandSendReceipt, MessageIdData, ServerError};

impl Connection {
    pub(crate) async fn on_send(&mut self, command: BaseCommand, payload: Option<Payload>) -> Next {
        let Some(send) = command.send else {
            return Next::Close("SEND without its body".into());
        };
        let (producer_id, sequence_id) = (send.producer_id, send.sequence_id);
        let highest_sequence_id = send.highest_sequence_id.unwrap_or(sequence_id);
        self.refresh_failed_log(producer_id).await;
        let Some(producer) = self.producers.get(&producer_id) else {
            self.send_error(
                producer_id,
                sequence_id,
                ServerError::ProducerBusy,
                format!("producer {producer_id} is not open on this connection"),
            )
            .await;
            return Next::Continue;
        };
        if producer.link.is_fenced() || producer.link.is_waiting() {
            let (error, message) = if producer.link.is_fenced() {
                (
                    ServerError::ProducerFenced,
                    format!("producer {producer_id} was fenced out by an exclusive producer"),
                )
            } else {
                (
                    ServerError::NotAllowedError,
                    format!("producer {producer_id} is waiting for exclusive access"),
                )
            };
            self.send_error(producer_id, sequence_id, error, message)
                .await;
            return Next::Continue;
        }
        let Some(payload) = payload else {
            self.send_error(
                producer_id,
                sequence_id,
                ServerError::UnknownError,
                "SEND without a payload".into(),
            )
            .await;
            return Next::Continue;
        };
        if payload.checksum_ok == Some(false) {
            self.send_error(
                producer_id,
                sequence_id,
                ServerError::ChecksumError,
                "payload checksum does not match".into(),
            )
            .await;
            return Next::Continue;
        }
        if send.txnid_most_bits() != 0 || send.txnid_least_bits() != 0 {
            self.send_error(
                producer_id,
                sequence_id,
                ServerError::NotAllowedError,
                "transactions are not supported yet".into(),
            )
            .await;
            return Next::Continue;
        }
        let metadata = match split_body(&payload.body) {
            Ok((m, _)) => m,
            Err(e) => {
                self.send_error(
                    producer_id,
                    sequence_id,
                    ServerError::UnknownError,
                    e.to_string(),
                )
                .await;
                return Next::Continue;
            }
        };
        if let Err(e) = magnetar_format::pulsar::check_entry(
            &payload.body,
            u64::from(send.num_messages().max(1).unsigned_abs()),
            magnetar_format::kafka::DECOMPRESSED_BYTES_MAX,
        ) {
            tracing::warn!(peer = %self.peer, producer = %producer.name, error = %e, "refusing pulsar message whose body does not match its metadata");
            self.send_error(
                producer_id,
                sequence_id,
                ServerError::NotAllowedError,
                format!("message refused: {e}"),
            )
            .await;
            return Next::Continue;
        }
        let message_count = send.num_messages().max(1) as u32;
        let max_timestamp_ms = match metadata.event_time() {
            0 => metadata.publish_time as i64,
            t => t as i64,
        };
        let partition = producer.id_partition;
        let name = producer.name.clone();
        let dedup = producer.dedup.clone();
        let receipt = move |outcome: Option<Outcome>| -> Bytes {
            match outcome {
                Some(Err((error, message))) => {
                    send_error_frame(producer_id, sequence_id, error, message)
                }
                // A duplicate older than what is remembered: Pulsar's `-1:-1`.
                None => receipt_frame(
                    producer_id,
                    sequence_id,
                    highest_sequence_id,
                    MessageIdData {
                        ledger_id: u64::MAX,
                        entry_id: u64::MAX,
                        partition: Some(partition),
                        ..Default::default()
                    },
                ),
                Some(Ok(first_index)) => receipt_frame(
                    producer_id,
                    sequence_id,
                    highest_sequence_id,
                    message_id(partition, first_index, None),
                ),
            }
        };
        if let Some(table) = &dedup {
            let check = table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .check(&name, sequence_id);
            if let Check::Duplicate(original) = check {
                tracing::debug!(peer = %self.peer, producer = %name, sequence_id, "pulsar send is a duplicate; not appended");
                let fut: SendFuture = Box::pin(async move {
                    match original {
                        Some(original) => receipt(Some(original.await)),
                        None => receipt(None),
                    }
                });
                if self.sends.send(fut).await.is_err() {
                    return Next::Close("send pipeline stopped".into());
                }
                return Next::Continue;
            }
        }
        let request = AppendRequest {
            payload: payload.body,
            message_count,
            max_timestamp_ms,
            format: PayloadFormat::Pulsar,
            // Tagged with the producer name in the entry header, so deduplication state can be
            // found again after a restart.
            producer: Some(named_producer_batch(&name, message_count)),
            first_index_at: None,
        };
        let log = producer.log.clone();
        // The namespace's publish rate: past it, stop reading from this connection for the
        // producer's debt (after queueing this SEND), as Pulsar throttles producers.
        let throttle = log.publish_delay(u64::from(message_count), request.payload.len() as u64);
        // Phase one now, in SEND order: the index is assigned and the entry queued to the writer.
        let (append, refused): (SharedOutcome, Option<Outcome>) = match log.enqueue(request) {
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
        if let Some(table) = &dedup {
            let highest = highest_sequence_id.max(sequence_id);
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
            receipt(Some(outcome))
        };
        let fut: SendFuture = match refused {
            // Refused at once: settled now, so a retry of this sequence id is not a duplicate.
            Some(outcome) => {
                let bytes = settle(outcome);
                Box::pin(async move { bytes })
            }
            None => Box::pin(async move { settle(append.await) }),
        };
        if self.sends.send(fut).await.is_err() {
            return Next::Close("send pipeline stopped".into());
        }
        if !throttle.is_zero() {
            tokio::time::sleep(throttle).await;
        }
        Next::Continue
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

    async fn send_error(
        &self,
        producer_id: u64,
        sequence_id: u64,
        error: ServerError,
        message: String,
    ) {
        tracing::debug!(peer = %self.peer, producer_id, sequence_id, %message, "pulsar send refused");
        // Through the send pipeline, so errors and receipts keep SEND order.
        let bytes = send_error_frame(producer_id, sequence_id, error, message);
        let _ = self.sends.send(Box::pin(async move { bytes })).await;
    }
}

fn receipt_frame(
    producer_id: u64,
    sequence_id: u64,
    highest_sequence_id: u64,
    id: MessageIdData,
) -> Bytes {
    frame::encode(&BaseCommand {
        r#type: Type::SendReceipt as i32,
        send_receipt: Some(CommandSendReceipt {
            producer_id,
            sequence_id,
            message_id: Some(id),
            highest_sequence_id: Some(highest_sequence_id),
        }),
        ..Default::default()
    })
}

fn send_error_frame(
    producer_id: u64,
    sequence_id: u64,
    error: ServerError,
    message: String,
) -> Bytes {
    frame::encode(&BaseCommand {
        r#type: Type::SendError as i32,
        send_error: Some(CommandSendError {
            producer_id,
            sequence_id,
            error: error as i32,
            message,
        }),
        ..Default::default()
    })
}
