//! SEEK (to a message id or a publish time) and GET_LAST_MESSAGE_ID.
//!
//! A seek moves the subscription's cursor (`Subscription::reset_to`, `reset_to_time`) and then,
//! as Pulsar does, disconnects the subscription's consumers (`Subscription::close`, which sends
//! each CLOSE_CONSUMER); they resubscribe and receive from the new position.

use magnetar_broker::{Error, Subscription};

use crate::commands::subscribe::cursor_start;
use crate::connection::{Connection, ConsumerHandle, Handled, Reply};
use crate::error::{Answer, CommandFailure, OrAnswer};
use crate::message_id::{message_id, LEDGER_ID};
use crate::proto::base_command::Type;
use crate::proto::{BaseCommand, CommandGetLastMessageIdResponse, MessageIdData, ServerError};

impl Connection {
    pub(crate) async fn on_seek(&mut self, command: BaseCommand) -> Handled {
        let Some(seek) = command.seek else {
            return Ok(Reply::Close("SEEK without its body".into()));
        };
        let sub = self
            .consumer(seek.consumer_id, seek.request_id)?
            .subscription
            .clone();
        let index = reset(&sub, seek.message_id.as_ref(), seek.message_publish_time)
            .await
            .or_answer(Answer::Request(seek.request_id))?;
        if !sub.is_durable() {
            self.service
                .record_reseek((sub.log().name().clone(), sub.name().to_string()), index);
        }
        // Disconnect every consumer of the subscription, this one included.
        for (connection, consumer_id) in sub.close().await {
            if connection == self.id {
                self.consumers.remove(&consumer_id);
            }
        }
        Ok(Reply::success(seek.request_id))
    }

    /// The consumer `consumer_id` of this connection, else ConsumerNotFound to `request_id`.
    pub(crate) fn consumer(
        &self,
        consumer_id: u64,
        request_id: u64,
    ) -> Result<&ConsumerHandle, CommandFailure> {
        self.consumers.get(&consumer_id).ok_or_else(|| {
            CommandFailure::new(
                Answer::Request(request_id),
                ServerError::ConsumerNotFound,
                format!("consumer {consumer_id} is not open on this connection"),
            )
        })
    }

    pub(crate) async fn on_get_last_message_id(&mut self, command: BaseCommand) -> Handled {
        let Some(request) = command.get_last_message_id else {
            return Ok(Reply::Close("GET_LAST_MESSAGE_ID without its body".into()));
        };
        let handle = self.consumer(request.consumer_id, request.request_id)?;
        let sub = handle.subscription.clone();
        let partition = handle.id_partition;
        let log = sub.log();
        let (start, end) = (log.start_index(), log.end_index());
        let last = if end == start {
            None
        } else {
            match log.read(end - 1, 1, 1).await {
                Ok(entries) => entries.into_iter().next(),
                Err(_) => None,
            }
        };
        let last_message_id = match last {
            Some(entry) => {
                let count = entry.header.message_count.max(1);
                let batch = (count > 1
                    || entry.header.format == magnetar_broker::PayloadFormat::Kafka)
                    .then(|| count as i32 - 1);
                message_id(partition, entry.header.first_index, batch)
            }
            // An empty partition: entry -1, as Pulsar answers for a topic with no messages.
            None => MessageIdData {
                ledger_id: LEDGER_ID,
                entry_id: u64::MAX,
                partition: Some(partition),
                batch_index: Some(-1),
                ..Default::default()
            },
        };
        let mark = sub.cursor().mark_delete_index;
        let mark_delete = message_id(partition, mark.saturating_sub(1), None);
        Ok(Reply::frame(&BaseCommand {
            r#type: Type::GetLastMessageIdResponse as i32,
            get_last_message_id_response: Some(CommandGetLastMessageIdResponse {
                last_message_id,
                request_id: request.request_id,
                consumer_mark_delete_position: Some(mark_delete),
            }),
            ..Default::default()
        }))
    }
}

/// Moves the subscription's cursor to a message id or, without one, to a publish time (the
/// first entry whose newest timestamp is at or after it); the index it now starts at.
async fn reset(
    sub: &Subscription,
    message_id: Option<&MessageIdData>,
    publish_time_ms: Option<u64>,
) -> Result<u64, Error> {
    match (message_id, publish_time_ms) {
        (Some(id), _) => sub.reset_to(cursor_start(id)).await,
        (None, Some(time_ms)) => sub.reset_to_time(time_ms as i64).await,
        (None, None) => Err(Error::InvalidRequest(
            "seek needs a message id or a publish time".into(),
        )),
    }
}
