//! PRODUCER -> PRODUCER_SUCCESS (name generation, access modes) and CLOSE_PRODUCER.
//!
//! Access modes (`Shared`, `Exclusive`, `ExclusiveWithFencing`, `WaitForExclusive`) and the
//! topic epoch are decided by [`crate::producers`]. A producer that waits for exclusive access
//! gets PRODUCER_SUCCESS with `producer_ready = false`, then a second one when it is granted.
//!
//! With deduplication on ([`crate::dedup`]), a producer name is held by one producer at a time
//! and PRODUCER_SUCCESS carries the name's last sequence id, restored from the log.

use std::sync::{Arc, Mutex};

use magnetar_broker::{named_producer_id, Access, PartitionLog, PayloadFormat, TopicPartition};
use tokio::sync::oneshot;

use crate::connection::{Connection, Handled, ProducerHandle, Reply, SendFuture};
use crate::dedup::{DedupTable, Restored};
use crate::error::{Answer, CommandFailure, OrAnswer};
use crate::frame::split_body;
use crate::producers::{Granted, ProducerLink, Refused, Registration};
use crate::proto::base_command::Type;
use crate::proto::{BaseCommand, CommandProducer, CommandProducerSuccess, ServerError};

impl Connection {
    pub(crate) async fn on_producer(&mut self, command: BaseCommand) -> Handled {
        let Some(request) = command.producer else {
            return Ok(Reply::Close("PRODUCER without its body".into()));
        };
        let answer = Answer::Request(request.request_id);
        if let Some(reply) = self.retried_producer(&request) {
            return Ok(reply);
        }
        self.check_producer(&request)?;
        self.authorize(answer, &request.topic, &Access::Produce)
            .await?;
        let (resolved, log) = self.open_partition(&request.topic, answer).await?;
        let schema_version = self
            .producer_schema(&resolved.partition.topic, request.schema.as_ref(), answer)
            .await?;
        let (max_producers, _) = self
            .service
            .broker
            .topic_limits(&resolved.partition.topic)
            .await
            .or_answer(answer)?;
        let link = ProducerLink::new(self.out.clone(), request.producer_id);
        let granted = self
            .service
            .producers
            .register(Registration {
                partition: &resolved.partition,
                mode: request.producer_access_mode(),
                max: max_producers,
                epoch: request.topic_epoch,
                link: link.clone(),
            })
            .map_err(|refused| {
                let (code, message) = match refused {
                    Refused::Busy(m) => (ServerError::ProducerBusy, m),
                    Refused::Fenced(m) => (ServerError::ProducerFenced, m),
                };
                CommandFailure::new(answer, code, message)
            })?;
        let (registration, topic_epoch, queued) = match granted {
            Granted::Ready {
                registration,
                epoch,
            } => (registration, epoch, None),
            Granted::Queued {
                registration,
                ready,
            } => (registration, None, Some(ready)),
        };
        let name = match request.producer_name.as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => self.service.producer_name(),
        };
        let deduplication = self
            .attach_dedup(&resolved.partition, &log, &name, registration, answer)
            .await;
        let (dedup, last_sequence_id) = match deduplication {
            Ok(attached) => attached,
            Err(failure) => {
                self.service
                    .producers
                    .unregister(&resolved.partition, registration);
                return Err(failure);
            }
        };
        tracing::debug!(peer = %self.peer, topic = %resolved.partition, producer = %name, "pulsar producer attached");
        self.close_with_partition(&log, &link);
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
        let success = ProducerSuccess {
            request_id: request.request_id,
            name,
            last_sequence_id,
            schema_version,
        };
        let Some(ready) = queued else {
            return Ok(Reply::frame(&success.command(true, topic_epoch)));
        };
        // WaitForExclusive on a taken topic: "queued" now, "ready" (or fenced) when decided.
        self.send(success.command(false, None)).await;
        self.wait_for_exclusive(ready, success);
        Ok(Reply::Nothing)
    }

    /// A PRODUCER for a producer id this connection has: a retry is answered as before (`Some`);
    /// a producer fenced out by another is released, so it registers again (and is refused
    /// while the fencing producer holds the topic), and so is one the broker closed when its
    /// partition closed (it attaches to the partition as reopened).
    fn retried_producer(&mut self, request: &CommandProducer) -> Option<Reply> {
        let existing = self.producers.get(&request.producer_id)?;
        if existing.link.is_fenced() || existing.link.is_closed() {
            if let Some(p) = self.producers.remove(&request.producer_id) {
                p.release(&self.service);
            }
            return None;
        }
        let (name, ready) = (existing.name.clone(), !existing.link.is_waiting());
        let mut success = producer_success(request.request_id, name, -1);
        if let Some(s) = success.producer_success.as_mut() {
            s.producer_ready = Some(ready);
        }
        Some(Reply::frame(&success))
    }

    /// What a PRODUCER is refused for before its topic is looked at: the connection's producer
    /// limit, a transaction (its schema is checked once its topic is known).
    fn check_producer(&self, request: &CommandProducer) -> Result<(), CommandFailure> {
        let answer = Answer::Request(request.request_id);
        if self.producers.len() >= self.service.config.producers_per_connection_max {
            return Err(CommandFailure::new(
                answer,
                ServerError::NotAllowedError,
                format!(
                    "connection has {} producers, the limit",
                    self.producers.len()
                ),
            ));
        }
        if request.txn_enabled() {
            return Err(CommandFailure::new(
                answer,
                ServerError::NotAllowedError,
                "transactions are not supported yet",
            ));
        }
        Ok(())
    }

    /// With deduplication on for the topic: the partition's table, with `name` held by this
    /// registration, and the name's last sequence id (restored from the log when the table
    /// does not know it); without: no table and -1.
    async fn attach_dedup(
        &self,
        partition: &TopicPartition,
        log: &PartitionLog,
        name: &str,
        registration: u64,
        answer: Answer,
    ) -> Result<(Option<Arc<Mutex<DedupTable>>>, i64), CommandFailure> {
        let enabled = self
            .service
            .deduplication_enabled(&partition.topic)
            .await
            .or_answer(answer)?;
        if !enabled {
            return Ok((None, -1));
        }
        let table = self.service.dedup_table(partition);
        let known = table.lock().unwrap_or_else(|e| e.into_inner()).knows(name);
        let restored = if known {
            None
        } else {
            restore_sequences(log, name).await
        };
        let attached =
            table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .attach(name, registration, restored);
        match attached {
            Ok(last) => Ok((Some(table), last)),
            Err(message) => Err(CommandFailure::new(
                answer,
                ServerError::ProducerBusy,
                message,
            )),
        }
    }

    /// When the partition closes (unloaded, moved to another broker, deleted), the producer is
    /// closed with CLOSE_PRODUCER, so its client looks the topic up again and reconnects to
    /// wherever it is served now (Pulsar's behaviour on a bundle unload). The frame goes through
    /// the connection's receipt pipeline, behind the receipts of every SEND queued before it: a
    /// client that got CLOSE_PRODUCER first would drop those receipts and send the messages
    /// again (stored twice). The task ends with the partition, the connection or the service,
    /// whichever goes first.
    fn close_with_partition(&self, log: &PartitionLog, link: &ProducerLink) {
        let closed = log.closed();
        let link = link.clone();
        let sends = self.sends.clone();
        let cancel = self.service.shutdown.clone();
        self.service.tasks.spawn(async move {
            tokio::select! {
                _ = closed => {
                    if let Some(frame) = link.close_by_broker() {
                        let after_receipts: SendFuture = Box::pin(async move { frame });
                        let _ = sends.send(after_receipts).await;
                    }
                }
                _ = sends.closed() => {}
                _ = cancel.cancelled() => {}
            }
        });
    }

    /// Sends the second PRODUCER_SUCCESS of a producer waiting for exclusive access when it is
    /// granted (or ProducerFenced when it is fenced out while waiting).
    fn wait_for_exclusive(
        &self,
        ready: oneshot::Receiver<Result<u64, Refused>>,
        success: ProducerSuccess,
    ) {
        let out = self.out.clone();
        let cancel = self.service.shutdown.clone();
        self.service.tasks.spawn(async move {
            let frame = tokio::select! {
                _ = cancel.cancelled() => return,
                decided = ready => match decided {
                    Ok(Ok(epoch)) => {
                        let mut granted = success.command(true, None);
                        if let Some(s) = granted.producer_success.as_mut() {
                            s.topic_epoch = Some(epoch);
                        }
                        crate::frame::encode(&granted)
                    }
                    Ok(Err(Refused::Fenced(message) | Refused::Busy(message))) => {
                        CommandFailure::new(
                            Answer::Request(success.request_id),
                            ServerError::ProducerFenced,
                            message,
                        )
                        .frame()
                    }
                    // The producer went away while waiting.
                    Err(_) => return,
                },
            };
            let _ = out.send(frame).await;
        });
    }

    pub(crate) fn on_close_producer(&mut self, command: BaseCommand) -> Handled {
        let Some(request) = command.close_producer else {
            return Ok(Reply::Close("CLOSE_PRODUCER without its body".into()));
        };
        if let Some(p) = self.producers.remove(&request.producer_id) {
            p.release(&self.service);
        }
        // Receipts of sends already queued are sent before this success (same pipeline order
        // is not guaranteed; the client ignores receipts after closing).
        Ok(Reply::success(request.request_id))
    }
}

/// What the PRODUCER_SUCCESS frames of one PRODUCER carry.
struct ProducerSuccess {
    request_id: u64,
    name: String,
    last_sequence_id: i64,
    schema_version: Option<Vec<u8>>,
}

impl ProducerSuccess {
    fn command(&self, ready: bool, epoch: Option<u64>) -> BaseCommand {
        let mut success =
            producer_success(self.request_id, self.name.clone(), self.last_sequence_id);
        if let Some(s) = success.producer_success.as_mut() {
            s.schema_version = self.schema_version.clone();
            s.topic_epoch = epoch;
            s.producer_ready = Some(ready);
        }
        success
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
