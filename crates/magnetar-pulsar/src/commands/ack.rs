//! ACK (individual and cumulative, with batch index ack sets) and
//! REDELIVER_UNACKNOWLEDGED_MESSAGES.
//!
//! Acks are exact per message: message `batch_index` of entry `entry_id` is message index
//! `entry_id + batch_index`, so a batch index ack acknowledges just that index in the cursor
//! (no approximation). An ack without an ack set acknowledges the whole entry.

use std::ops::Range;

use crate::connection::{Connection, Handled, Reply};
use crate::error::{Answer, OrAnswer};
use crate::message_id::{acked_positions, LEDGER_ID};
use crate::proto::base_command::Type;
use crate::proto::command_ack::AckType;
use crate::proto::{BaseCommand, CommandAckResponse, MessageIdData};
use magnetar_broker::Subscription;

impl Connection {
    pub(crate) async fn on_ack(&mut self, command: BaseCommand) -> Handled {
        let Some(ack) = command.ack else {
            return Ok(Reply::Close("ACK without its body".into()));
        };
        let Some(handle) = self.consumers.get(&ack.consumer_id) else {
            tracing::debug!(peer = %self.peer, consumer_id = ack.consumer_id, "ack for an unknown consumer");
            return Ok(Reply::Nothing);
        };
        let sub = handle.subscription.clone();
        let cumulative = ack.ack_type() == AckType::Cumulative;
        let mut result = Ok(());
        // Individual acks: every message id of the command in one cursor write (one metadata
        // transaction in cluster mode), not one write per id. A client groups its acks into one
        // ACK (every 100 ms by default) and this connection reads nothing else while they are
        // written, so per-id writes (tens of ms each on etcd) fell behind a consumer's pace and
        // held up its FLOW and CLOSE_CONSUMER for as long as the backlog lasted.
        let mut ranges = Vec::new();
        for id in &ack.message_id {
            if id.ledger_id != LEDGER_ID {
                continue;
            }
            let r = if cumulative {
                match cumulative_index(&sub, id).await {
                    Some(index) => sub.ack_cumulative(index).await,
                    None => Ok(()),
                }
            } else {
                ranges.extend(individual_ranges(&sub, id).await);
                Ok(())
            };
            if let Err(e) = r {
                tracing::warn!(peer = %self.peer, subscription = %sub.name(), error = %e, "ack failed");
                result = Err(e);
            }
        }
        if !ranges.is_empty() {
            if let Err(e) = sub.ack(ranges).await {
                tracing::warn!(peer = %self.peer, subscription = %sub.name(), error = %e, "ack failed");
                result = Err(e);
            }
        }
        let Some(request_id) = ack.request_id else {
            return Ok(Reply::Nothing);
        };
        let consumer_id = ack.consumer_id;
        result.or_answer(Answer::Ack {
            consumer_id,
            request_id,
        })?;
        Ok(Reply::frame(&BaseCommand {
            r#type: Type::AckResponse as i32,
            ack_response: Some(CommandAckResponse {
                consumer_id,
                error: None,
                message: None,
                request_id: Some(request_id),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    pub(crate) fn on_redeliver(&mut self, command: BaseCommand) -> Handled {
        let Some(request) = command.redeliver_unacknowledged_messages else {
            return Ok(Reply::Close(
                "REDELIVER_UNACKNOWLEDGED_MESSAGES without its body".into(),
            ));
        };
        if let Some(handle) = self.consumers.get(&request.consumer_id) {
            let entries: Vec<u64> = request
                .message_ids
                .iter()
                .filter(|id| id.ledger_id == LEDGER_ID)
                .map(|id| id.entry_id)
                .collect();
            handle
                .subscription
                .redeliver((self.id, request.consumer_id), &entries);
        }
        Ok(Reply::Nothing)
    }
}

/// The message count of an entry: from the in-flight table, else from its header.
async fn entry_count(sub: &Subscription, entry: u64) -> Option<u32> {
    sub.entry_message_count(entry).await
}

async fn individual_ranges(sub: &Subscription, id: &MessageIdData) -> Vec<Range<u64>> {
    let entry = id.entry_id;
    if !id.ack_set.is_empty() {
        let size = match id.batch_size {
            Some(s) if s > 0 => s as u32,
            _ => entry_count(sub, entry).await.unwrap_or(0),
        };
        return acked_positions(&id.ack_set, size)
            .into_iter()
            .map(|p| entry + u64::from(p)..entry + u64::from(p) + 1)
            .collect();
    }
    match entry_count(sub, entry).await {
        Some(count) => std::iter::once(entry..entry + u64::from(count)).collect(),
        None => Vec::new(),
    }
}

/// The last message index a cumulative ack covers.
async fn cumulative_index(sub: &Subscription, id: &MessageIdData) -> Option<u64> {
    let entry = id.entry_id;
    if !id.ack_set.is_empty() {
        let size = match id.batch_size {
            Some(s) if s > 0 => s as u32,
            _ => entry_count(sub, entry).await?,
        };
        let acked = acked_positions(&id.ack_set, size);
        let prefix = acked
            .iter()
            .enumerate()
            .take_while(|(i, p)| *i as u32 == **p)
            .count() as u64;
        return if prefix > 0 {
            Some(entry + prefix - 1)
        } else {
            entry.checked_sub(1)
        };
    }
    let count = entry_count(sub, entry).await?;
    Some(entry + u64::from(count) - 1)
}
