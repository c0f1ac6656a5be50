//! SUBSCRIBE (Exclusive, Shared, Failover, Key_Shared; durable cursors or non-durable readers),
//! CLOSE_CONSUMER and UNSUBSCRIBE.

use std::sync::Arc;

use magnetar_broker::{
    Access, Consumer, CursorStart, DelayedDelivery, PartitionLog, Subscription, SubscriptionType,
};

use crate::connection::{Connection, ConsumerHandle, Handled, Reply};
use crate::error::{Answer, CommandFailure, OrAnswer};
use crate::message_id::position;
use crate::proto::command_subscribe::InitialPosition;
use crate::proto::{BaseCommand, CommandSubscribe, KeySharedMode, MessageIdData, ServerError};
use crate::service::ResolvedTopic;
use crate::subscription::{subscription_type, PulsarCodec, PulsarConsumer};

impl Connection {
    pub(crate) async fn on_subscribe(&mut self, command: BaseCommand) -> Handled {
        let Some(request) = command.subscribe else {
            return Ok(Reply::Close("SUBSCRIBE without its body".into()));
        };
        let answer = Answer::Request(request.request_id);
        if let Some(existing) = self.consumers.get(&request.consumer_id) {
            if existing
                .subscription
                .has_consumer((self.id, request.consumer_id))
            {
                // A retried SUBSCRIBE for a consumer that exists.
                return Ok(Reply::success(request.request_id));
            }
            // The broker closed this consumer (CLOSE_CONSUMER: its partition closed, unloaded or
            // moved) and the client subscribes again on the same connection: attach it to the
            // partition as it is served now, not to the closed one.
            self.drop_consumer(request.consumer_id);
        }
        self.check_subscribe(&request)?;
        let consume = Access::Consume {
            subscription: Some(request.subscription.clone()),
        };
        self.authorize(answer, &request.topic, &consume).await?;
        let (resolved, log) = self.open_partition(&request.topic, answer).await?;
        self.consumer_schema(&resolved.partition.topic, request.schema.as_ref(), answer)
            .await?;
        self.check_consumer_limit(&resolved, &log, answer).await?;
        let subscription = self.open_subscription(&request, &resolved, &log).await?;
        let schema_ids = crate::confluent::SchemaIds::load(
            self.service.schemas.clone(),
            resolved.partition.topic.clone(),
            self.service.tasks.clone(),
            self.service.shutdown.clone(),
        )
        .await;
        self.attach_consumer(&request, resolved, subscription, schema_ids)?;
        Ok(Reply::success(request.request_id))
    }

    /// What a SUBSCRIBE is refused for before its topic is looked at: the connection's consumer
    /// limit, an empty subscription name, Key_Shared's STICKY mode.
    fn check_subscribe(&self, request: &CommandSubscribe) -> Result<(), CommandFailure> {
        let refuse = |code, message: String| {
            Err(CommandFailure::new(
                Answer::Request(request.request_id),
                code,
                message,
            ))
        };
        if self.consumers.len() >= self.service.config.consumers_per_connection_max {
            return refuse(
                ServerError::NotAllowedError,
                format!(
                    "connection has {} consumers, the limit",
                    self.consumers.len()
                ),
            );
        }
        if request.subscription.is_empty() {
            return refuse(
                ServerError::NotAllowedError,
                "empty subscription name".into(),
            );
        }
        if subscription_type(request.sub_type()) == SubscriptionType::KeyShared {
            if let Err(message) = key_shared_mode(request) {
                return refuse(ServerError::ConsumerAssignError, message);
            }
        }
        Ok(())
    }

    /// The namespace's maxConsumersPerTopic, over every subscription of the partition.
    async fn check_consumer_limit(
        &self,
        resolved: &ResolvedTopic,
        log: &PartitionLog,
        answer: Answer,
    ) -> Result<(), CommandFailure> {
        let (_, max) = self
            .service
            .broker
            .topic_limits(&resolved.partition.topic)
            .await
            .or_answer(answer)?;
        match max {
            Some(max) if max > 0 && log.consumers_total() >= max as usize => {
                Err(CommandFailure::new(
                    answer,
                    ServerError::ConsumerBusy,
                    format!("Topic reached max consumers limit ({max})"),
                ))
            }
            Some(_) | None => Ok(()),
        }
    }

    /// The durable subscription SUBSCRIBE names (opened, or created at its start), or a
    /// non-durable reader's own.
    async fn open_subscription(
        &self,
        request: &CommandSubscribe,
        resolved: &ResolvedTopic,
        log: &Arc<PartitionLog>,
    ) -> Result<Arc<Subscription>, CommandFailure> {
        let answer = Answer::Request(request.request_id);
        let initial = match request.initial_position() {
            InitialPosition::Earliest => CursorStart::Earliest,
            InitialPosition::Latest => CursorStart::Latest,
        };
        // Where a new cursor starts: a reader's start message id wins over the initial position.
        let start = request
            .start_message_id
            .as_ref()
            .map_or(initial, cursor_start);
        if request.durable() {
            return log
                .open_subscription(&request.subscription, start)
                .await
                .or_answer(answer);
        }
        // A non-durable reader gets a subscription of its own even when the name repeats,
        // but not the name of a durable subscription with consumers.
        if log.consumers_of(&request.subscription) > 0 {
            return Err(CommandFailure::new(
                answer,
                ServerError::ConsumerBusy,
                format!(
                    "subscription '{}' is in use by a durable consumer",
                    request.subscription
                ),
            ));
        }
        let key = (resolved.partition.clone(), request.subscription.clone());
        // The reconnect after a SEEK resumes where the seek put the reader.
        let index = self
            .service
            .take_reseek(&key)
            .unwrap_or_else(|| log.start_position(start));
        Ok(log.open_reader(&request.subscription, index))
    }

    /// Adds this SUBSCRIBE's consumer to the subscription (running its dispatcher when it is the
    /// first) and keeps it on the connection.
    fn attach_consumer(
        &mut self,
        request: &CommandSubscribe,
        resolved: ResolvedTopic,
        subscription: Arc<Subscription>,
        schema_ids: Arc<crate::confluent::SchemaIds>,
    ) -> Result<(), CommandFailure> {
        let kind = subscription_type(request.sub_type());
        let consumer = Consumer {
            key: (self.id, request.consumer_id),
            name: request
                .consumer_name
                .clone()
                .unwrap_or_else(|| format!("consumer-{}-{}", self.id, request.consumer_id)),
            priority: request.priority_level(),
            key_shared: key_shared_mode(request).unwrap_or_default(),
            sink: Arc::new(PulsarConsumer {
                consumer_id: request.consumer_id,
                id_partition: resolved.id_partition,
                tx: self.out.clone(),
                broker_entry_metadata: self.broker_entry_metadata,
            }),
        };
        let config = &self.service.config;
        let mut codec = PulsarCodec::new(
            resolved.partition.clone(),
            request.subscription.clone(),
            self.service.cache.clone(),
            self.service.metrics.clone(),
        )
        .with_schema_ids(schema_ids);
        if config.delayed_delivery_enabled {
            codec = codec.with_delayed_delivery(DelayedDelivery {
                tick_ms: config.delayed_delivery_tick_ms,
                tracked_max: config.delayed_delivery_tracked_max,
            });
        }
        let codec = Arc::new(codec);
        let sticky = kind == SubscriptionType::KeyShared
            && matches!(
                key_shared_mode(request),
                Ok(magnetar_broker::subscription::key_shared::KeySharedMode::Sticky(_))
            );
        let dispatcher = subscription
            .add_consumer(
                consumer,
                kind,
                codec,
                self.service.config.unacked_messages_per_consumer_max,
            )
            .map_err(|message| {
                // A STICKY consumer's ranges refused (a conflict, a mode mismatch): Pulsar's
                // ConsumerAssignError; anything else (an exclusive subscription taken, another
                // type): ConsumerBusy.
                let code = if sticky {
                    ServerError::ConsumerAssignError
                } else {
                    ServerError::ConsumerBusy
                };
                CommandFailure::new(Answer::Request(request.request_id), code, message)
            })?;
        if let Some(dispatcher) = dispatcher {
            let broker = self.service.broker.clone();
            let shutdown = self.service.shutdown.clone();
            self.service.tasks.spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = dispatcher.run(broker) => {}
                }
            });
        }
        let durable = request.durable();
        tracing::debug!(peer = %self.peer, topic = %resolved.partition, subscription = %request.subscription, ?kind, durable, "pulsar consumer attached");
        self.consumers.insert(
            request.consumer_id,
            ConsumerHandle {
                subscription,
                id_partition: resolved.id_partition,
            },
        );
        Ok(())
    }

    pub(crate) fn on_close_consumer(&mut self, command: BaseCommand) -> Handled {
        let Some(request) = command.close_consumer else {
            return Ok(Reply::Close("CLOSE_CONSUMER without its body".into()));
        };
        self.drop_consumer(request.consumer_id);
        Ok(Reply::success(request.request_id))
    }

    pub(crate) async fn on_unsubscribe(&mut self, command: BaseCommand) -> Handled {
        let Some(request) = command.unsubscribe else {
            return Ok(Reply::Close("UNSUBSCRIBE without its body".into()));
        };
        let answer = Answer::Request(request.request_id);
        let sub = self
            .consumer(request.consumer_id, request.request_id)?
            .subscription
            .clone();
        if sub.consumer_count() > 1 && !request.force() {
            return Err(CommandFailure::new(
                answer,
                ServerError::ConsumerBusy,
                format!("subscription '{}' has other consumers", sub.name()),
            ));
        }
        self.drop_consumer(request.consumer_id);
        if sub.is_durable() {
            sub.log()
                .delete_subscription(sub.name())
                .await
                .or_answer(answer)?;
        }
        Ok(Reply::success(request.request_id))
    }
}

/// Where a client-supplied message id (a reader's start, a SEEK target) positions a cursor. As
/// Pulsar: at the entry itself; the client drops the messages before (or, when exclusive, at) the
/// batch index it named.
pub(crate) fn cursor_start(id: &MessageIdData) -> CursorStart {
    position(id).entry_start()
}

/// The Key_Shared mode a SUBSCRIBE asks for: AUTO_SPLIT (the default), or STICKY with the
/// consumer's own inclusive hash ranges (Pulsar's `KeySharedMeta.hashRanges`).
fn key_shared_mode(
    request: &CommandSubscribe,
) -> Result<magnetar_broker::subscription::key_shared::KeySharedMode, String> {
    use magnetar_broker::subscription::key_shared::KeySharedMode as Mode;
    let Some(meta) = request.key_shared_meta.as_ref() else {
        return Ok(Mode::AutoSplit);
    };
    if meta.key_shared_mode() != KeySharedMode::Sticky {
        return Ok(Mode::AutoSplit);
    }
    let ranges = meta
        .hash_ranges
        .iter()
        .map(|r| match (u32::try_from(r.start), u32::try_from(r.end)) {
            (Ok(start), Ok(end)) => Ok((start, end)),
            _ => Err(format!("invalid hash range [{}, {}]", r.start, r.end)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ranges.is_empty() {
        return Err("Key_Shared STICKY needs at least one hash range".into());
    }
    Ok(Mode::Sticky(ranges))
}
