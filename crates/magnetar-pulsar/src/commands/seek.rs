//! SEEK (to a message id or a publish time) and GET_LAST_MESSAGE_ID.
//!
//! A seek moves the subscription's cursor (`Subscription::reset_to`, `reset_to_time`) and then,
//! as Pulsar does, disconnects the subscription's consumers (`Subscription::close`, which sends
//! each CLOSE_CONSUMER); they resubscribe and receive from the new position.

use magnetar_broker::Error;

use crate::commands::subscribe::cursor_start;
use crate::connection::{Connection, Next};
use crate::error::server_error;
use crate::message_id::{message_id, LEDGER_ID};
use crate::proto::base_command::Type;
use crate::proto::{BaseCommand, CommandGetLastMessageIdResponse, MessageIdData, ServerError};

impl Connection {
    pub(crate) async fn on_seek(&mut self, command: BaseCommand) -> Next {
        let Some(seek) = command.seek else {
            return Next::Close("SEEK without its body".into());
        };
        let Some(handle) = self.consumers.get(&seek.consumer_id) else {
            self.error(
                seek.request_id,
                ServerError::ConsumerNotFound,
                format!(
                    "consumer {} is not open on this connection",
                    seek.consumer_id
                ),
            )
            .await;
            return Next::Continue;
        };
        let sub = handle.subscription.clone();
        let result: Result<u64, Error> = if let Some(id) = &seek.message_id {
            sub.reset_to(cursor_start(id)).await
        } else if let Some(time_ms) = seek.message_publish_time {
            // The first entry whose newest timestamp is at or after the time.
            sub.reset_to_time(time_ms as i64).await
        } else {
            Err(Error::InvalidRequest(
                "seek needs a message id or a publish time".into(),
            ))
        };
        if let Ok(index) = result {
            if !sub.is_durable() {
                self.service
                    .record_reseek((sub.log().name().clone(), sub.name().to_string()), index);
            }
        }
        match result {
            Ok(_) => {
                // Disconnect every consumer of the subscription, this one included.
                for (connection, consumer_id) in sub.close().await {
                    if connection == self.id {
                        self.consumers.remove(&consumer_id);
                    }
                }
                self.success(seek.request_id).await;
            }
            Err(e) => {
                self.error(seek.request_id, server_error(&e), e.to_string())
                    .await
            }
        }
        Next::Continue
    }

    pub(crate) async fn on_get_last_message_id(&mut self, command: BaseCommand) -> Next {
        let Some(request) = command.get_last_message_id else {
            return Next::Close("GET_LAST_MESSAGE_ID without its body".into());
        };
        let Some(handle) = self.consumers.get(&request.consumer_id) else {
            self.error(
                request.request_id,
                ServerError::ConsumerNotFound,
                format!(
                    "consumer {} is not open on this connection",
                    request.consumer_id
                ),
            )
            .await;
            return Next::Continue;
        };
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
        self.send(BaseCommand {
            r#type: Type::GetLastMessageIdResponse as i32,
            get_last_message_id_response: Some(CommandGetLastMessageIdResponse {
                last_message_id,
                request_id: request.request_id,
                consumer_mark_delete_position: Some(mark_delete),
            }),
            ..Default::default()
        })
        .await;
        Next::Continue
    }
}
