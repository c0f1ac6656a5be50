//! PRODUCER -> PRODUCER_SUCCESS (name generation, access modes) and CLOSE_PRODUCER.
//!
//! Access modes (`Shared`, `Exclusive`, `ExclusiveWithFencing`, `WaitForExclusive`) and the
//! topic epoch are decided by [`crate::producers`]. A producer that waits for exclusive access
//! gets PRODUCER_SUCCESS with `producer_ready = false`, then a second one when it is granted.
//!
//! With deduplication on ([`crate::dedup`]), a producer name is held by one producer at a time
//! and PRODUCER_SUCCESS carries the name's last sequence id, restored from the log.

use magnetar_broker::{named_producer_id, PartitionLog, PayloadFormat};

use crate::commands::schema::{check_schema, BUILTIN_SCHEMA_VERSION};
use crate::connection::{Connection, Next, ProducerHandle};
use crate::dedup::Restored;
use crate::error::server_error;
use crate::frame::split_body;
use crate::producers::{Granted, ProducerLink, Refused, Registration};
use crate::proto::base_command::Type;
use crate::proto::{BaseCommand, CommandError, CommandProducerSuccess, ServerError};

impl Connection {
    pub(crate) async fn on_producer(&mut self, command: BaseCommand) -> Next {
        let Some(request) = command.producer else {
            return Next::Close("PRODUCER without its body".into());
        };
        let request_id = request.request_id;
        match self.producers.get(&request.producer_id) {
            Some(existing) if existing.link.is_fenced() => {
                // Fenced out by another producer: its client reconnects with the same id and
                // registers again (and is refused while the fencing producer holds the topic).
                if let Some(p) = self.producers.remove(&request.producer_id) {
                    p.release(&self.service);
                }
            }
            Some(existing) => {
                // A retried PRODUCER for a producer that exists: answer as before.
                let (name, ready) = (existing.name.clone(), !existing.link.is_waiting());
                let mut success = producer_success(request_id, name, -1);
                if let Some(s) = success.producer_success.as_mut() {
                    s.producer_ready = Some(ready);
                }
                self.send(success).await;
                return Next::Continue;
            }
            None => {}
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
        let link = ProducerLink::new(self.out.clone(), request.producer_id);
        let granted = self.service.producers.register(Registration {
            partition: &resolved.partition,
            mode: request.producer_access_mode(),
            max: max_producers,
            epoch: request.topic_epoch,
            link: link.clone(),
        });
        let (registration, topic_epoch, queued) = match granted {
            Ok(Granted::Ready {
                registration,
                epoch,
            }) => (registration, epoch, None),
            Ok(Granted::Queued {
                registration,
                ready,
            }) => (registration, None, Some(ready)),
            Err(refused) => {
                let (error, message) = match refused {
                    Refused::Busy(m) => (ServerError::ProducerBusy, m),
                    Refused::Fenced(m) => (ServerError::ProducerFenced, m),
                };
                self.error(request_id, error, message).await;
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
                    .producers
                    .unregister(&resolved.partition, registration);
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
                        .producers
                        .unregister(&resolved.partition, registration);
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
                link,
                dedup,
            },
        );
        let schema_version = request
            .schema
            .as_ref()
            .map(|_| BUILTIN_SCHEMA_VERSION.to_vec());
        let success = |ready: bool, epoch: Option<u64>| {
            let mut success = producer_success(request_id, name.clone(), last_sequence_id);
            if let Some(s) = success.producer_success.as_mut() {
                s.schema_version = schema_version.clone();
                s.topic_epoch = epoch;
                s.producer_ready = Some(ready);
            }
            success
        };
        let Some(ready) = queued else {
            self.send(success(true, topic_epoch)).await;
            return Next::Continue;
        };
        // WaitForExclusive on a taken topic: "queued" now, "ready" (or fenced) when decided.
        self.send(success(false, None)).await;
        let granted = success(true, None);
        let out = self.out.clone();
        let cancel = self.service.shutdown.clone();
        self.service.tasks.spawn(async move {
            let frame = tokio::select! {
                _ = cancel.cancelled() => return,
                decided = ready => match decided {
                    Ok(Ok(epoch)) => {
                        let mut granted = granted;
                        if let Some(s) = granted.producer_success.as_mut() {
                            s.topic_epoch = Some(epoch);
                        }
                        granted
                    }
                    Ok(Err(Refused::Fenced(message) | Refused::Busy(message))) => BaseCommand {
                        r#type: Type::Error as i32,
                        error: Some(CommandError {
                            request_id,
                            error: ServerError::ProducerFenced as i32,
                            message,
                        }),
                        ..Default::default()
                    },
                    // The producer went away while waiting.
                    Err(_) => return,
                },
            };
            let _ = out.send(crate::frame::encode(&frame)).await;
        });
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
