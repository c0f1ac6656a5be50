//! PRODUCER -> PRODUCER_SUCCESS (name generation, Shared/Exclusive access) and CLOSE_PRODUCER.
//!
//! Access modes: `Shared` producers coexist; `Exclusive` is refused (`ProducerBusy`) while any
//! other producer is attached, and refuses later ones. `ExclusiveWithFencing` and
//! `WaitForExclusive` are treated as `Exclusive` (no fencing, no waiting).
//!
//! With deduplication on ([`crate::dedup`]), a producer name is held by one producer at a time
//! and PRODUCER_SUCCESS carries the name's last sequence id, restored from the log.

use magnetar_broker::{named_producer_id, PartitionLog, PayloadFormat};

use crate::commands::schema::{check_schema, BUILTIN_SCHEMA_VERSION};
use crate::connection::{Connection, Next, ProducerHandle};
use crate::dedup::Restored;
use crate::error::server_error;
use crate::frame::split_body;
use crate::proto::base_command::Type;
use crate::proto::{BaseCommand, CommandProducerSuccess, ProducerAccessMode, ServerError};

impl Connection {
    pub(crate) async fn on_producer(&mut self, command: BaseCommand) -> Next {
        let Some(request) = command.producer else {
            return Next::Close("PRODUCER without its body".into());
        };
        let request_id = request.request_id;
        if let Some(existing) = self.producers.get(&request.producer_id) {
            // A retried PRODUCER for a producer that exists: answer as before.
            let name = existing.name.clone();
            self.send(producer_success(request_id, name, -1)).await;
            return Next::Continue;
        }
        if self.producers.len() >= self.service.config.producers_per_connection_max {
            self.error(
                request_id,
                ServerError::NotAllowedError,
                format!(
                    "connection has {} producers, the limit",
                    self.producers.len()
                ),
            )
            .await;
            return Next::Continue;
        }
        if let Err(message) = check_schema(request.schema.as_ref()) {
            self.error(request_id, ServerError::IncompatibleSchema, message)
                .await;
            return Next::Continue;
        }
        if request.txn_enabled() {
            self.error(
                request_id,
                ServerError::NotAllowedError,
                "transactions are not supported yet".into(),
            )
            .await;
            return Next::Continue;
        }
        if self
            .refuse_unauthorized(
                request_id,
                &request.topic,
                &magnetar_broker::Access::Produce,
            )
            .await
        {
            return Next::Continue;
        }
        let resolved = match self.service.resolve(&request.topic).await {
            Ok(r) => r,
            Err(e) => {
                self.error(request_id, server_error(&e), e.to_string())
                    .await;
                return Next::Continue;
            }
        };
        let log = match self.service.broker.partition(&resolved.partition).await {
            Ok(log) => log,
            Err(e) => {
                self.error(request_id, server_error(&e), e.to_string())
                    .await;
                return Next::Continue;
            }
        };
        let exclusive = request.producer_access_mode() != ProducerAccessMode::Shared;
        let max_producers = match self
            .service
            .broker
            .topic_limits(&resolved.partition.topic)
            .await
        {
            Ok((max, _)) => max,
            Err(e) => {
                self.error(request_id, server_error(&e), e.to_string())
                    .await;
                return Next::Continue;
            }
        };
        let registration =
            match self
                .service
                .register_producer(&resolved.partition, exclusive, max_producers)
            {
                Ok(r) => r,
                Err(message) => {
                    self.error(request_id, ServerError::ProducerBusy, message)
                        .await;
                    return Next::Continue;
                }
            };
        let name = match request.producer_name.as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => self.service.producer_name(),
        };
        let dedup = match self
            .service
            .deduplication_enabled(&resolved.partition.topic)
            .await
        {
            Ok(enabled) => enabled,
            Err(e) => {
                self.service
                    .unregister_producer(&resolved.partition, registration);
                self.error(request_id, server_error(&e), e.to_string())
                    .await;
                return Next::Continue;
            }
        };
        let mut last_sequence_id = -1;
        let dedup = if dedup {
            let table = self.service.dedup_table(&resolved.partition);
            let known = table.lock().unwrap_or_else(|e| e.into_inner()).knows(&name);
            let restored = if known {
                None
            } else {
                restore_sequences(&log, &name).await
            };
            let attached = table.lock().unwrap_or_else(|e| e.into_inner()).attach(
                &name,
                registration,
                restored,
            );
            match attached {
                Ok(last) => last_sequence_id = last,
                Err(message) => {
                    self.service
                        .unregister_producer(&resolved.partition, registration);
                    self.error(request_id, ServerError::ProducerBusy, message)
                        .await;
                    return Next::Continue;
                }
            }
            Some(table)
        } else {
            None
        };
        tracing::debug!(peer = %self.peer, topic = %resolved.partition, producer = %name, "pulsar producer attached");
        self.producers.insert(
            request.producer_id,
            ProducerHandle {
                partition: resolved.partition,
                id_partition: resolved.id_partition,
                log,
                name: name.clone(),
                registration,
                dedup,
            },
        );
        let mut success = producer_success(request_id, name, last_sequence_id);
        if let Some(s) = success.producer_success.as_mut() {
            s.schema_version = request
                .schema
                .as_ref()
                .map(|_| BUILTIN_SCHEMA_VERSION.to_vec());
        }
        self.send(success).await;
        Next::Continue
    }

    pub(crate) async fn on_close_producer(&mut self, command: BaseCommand) -> Next {
        let Some(request) = command.close_producer else {
            return Next::Close("CLOSE_PRODUCER without its body".into());
        };
        if let Some(p) = self.producers.remove(&request.producer_id) {
            p.release(&self.service);
        }
        // Receipts of sends already queued are sent before this success (same pipeline order
        // is not guaranteed; the client ignores receipts after closing).
        self.success(request.request_id).await;
        Next::Continue
    }
}

/// A name's last appended SEND, from the log: the partition remembers the name's last entry
/// (from entry headers), whose metadata holds the name and sequence ids.
async fn restore_sequences(log: &PartitionLog, name: &str) -> Option<Restored> {
    let index = log.named_producer_last_entry(named_producer_id(name))?;
    let entry = log.read(index, 1, 1).await.ok()?.into_iter().next()?;
    if entry.header.first_index != index || entry.header.format != PayloadFormat::Pulsar {
        return None;
    }
    let (metadata, _) = split_body(&entry.payload).ok()?;
    if metadata.producer_name != name {
        // Another name with the same id (a hash collision): nothing known about this one.
        return None;
    }
    let lowest = metadata.sequence_id;
    let count = u64::from(entry.header.message_count.max(1));
    let highest = metadata
        .highest_sequence_id
        .filter(|h| *h >= lowest)
        .unwrap_or(lowest.saturating_add(count - 1));
    Some(Restored {
        lowest,
        highest,
        first_index: index,
    })
}

fn producer_success(request_id: u64, producer_name: String, last_sequence_id: i64) -> BaseCommand {
    BaseCommand {
        r#type: Type::ProducerSuccess as i32,
        producer_success: Some(CommandProducerSuccess {
            request_id,
            producer_name,
            last_sequence_id: Some(last_sequence_id),
            schema_version: None,
            topic_epoch: None,
            producer_ready: Some(true),
        }),
        ..Default::default()
    }
}
