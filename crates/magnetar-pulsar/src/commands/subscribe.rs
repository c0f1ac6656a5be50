//! SUBSCRIBE (Exclusive, Shared, Failover, Key_Shared; durable cursors or non-durable readers),
//! CLOSE_CONSUMER and UNSUBSCRIBE.

use std::sync::Arc;

use magnetar_broker::{Consumer, CursorStart, SubscriptionType};

use crate::connection::{Connection, ConsumerHandle, Next};
use crate::error::server_error;
use crate::message_id::position;
use crate::proto::command_subscribe::InitialPosition;
use crate::proto::{BaseCommand, KeySharedMode, MessageIdData, ServerError};
use crate::subscription::{subscription_type, PulsarCodec, PulsarConsumer};

impl Connection {
    pub(crate) async fn on_subscribe(&mut self, command: BaseCommand) -> Next {
        let Some(request) = command.subscribe else {
            return Next::Close("SUBSCRIBE without its body".into());
        };
        let request_id = request.request_id;
        if self.consumers.contains_key(&request.consumer_id) {
            // A retried SUBSCRIBE for a consumer that exists.
            self.success(request_id).await;
            return Next::Continue;
        }
        if self.consumers.len() >= self.service.config.consumers_per_connection_max {
            self.error(
                request_id,
                ServerError::NotAllowedError,
                format!(
                    "connection has {} consumers, the limit",
                    self.consumers.len()
                ),
            )
            .await;
            return Next::Continue;
        }
        if request.subscription.is_empty() {
            self.error(
                request_id,
                ServerError::NotAllowedError,
                "empty subscription name".into(),
            )
            .await;
            return Next::Continue;
        }
        if let Err(message) = crate::commands::schema::check_schema(request.schema.as_ref()) {
            self.error(request_id, ServerError::IncompatibleSchema, message)
                .await;
            return Next::Continue;
        }
        let kind = subscription_type(request.sub_type());
        if kind == SubscriptionType::KeyShared
            && request
                .key_shared_meta
                .as_ref()
                .is_some_and(|m| m.key_shared_mode() == KeySharedMode::Sticky)
        {
            self.error(
                request_id,
                ServerError::NotAllowedError,
                "Key_Shared STICKY mode (consumer-chosen hash ranges) is not supported; use AUTO_SPLIT".into(),
            )
            .await;
            return Next::Continue;
        }
        let consume = magnetar_broker::Access::Consume {
            subscription: Some(request.subscription.clone()),
        };
        if self
            .refuse_unauthorized(request_id, &request.topic, &consume)
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
        // The namespace's maxConsumersPerTopic, over every subscription of the partition.
        match self
            .service
            .broker
            .topic_limits(&resolved.partition.topic)
            .await
        {
            Ok((_, Some(max))) if max > 0 && log.consumers_total() >= max as usize => {
                self.error(
                    request_id,
                    ServerError::ConsumerBusy,
                    format!("Topic reached max consumers limit ({max})"),
                )
                .await;
                return Next::Continue;
            }
            Ok(_) => {}
            Err(e) => {
                self.error(request_id, server_error(&e), e.to_string())
                    .await;
                return Next::Continue;
            }
        }
        let durable = request.durable();
        let initial = match request.initial_position() {
            InitialPosition::Earliest => CursorStart::Earliest,
            InitialPosition::Latest => CursorStart::Latest,
        };
        // Where a new cursor starts: a reader's start message id wins over the initial position.
        let start = request
            .start_message_id
            .as_ref()
            .map_or(initial, cursor_start);
        let subscription = if durable {
            match log.open_subscription(&request.subscription, start).await {
                Ok(sub) => sub,
                Err(e) => {
                    self.error(request_id, server_error(&e), e.to_string())
                        .await;
                    return Next::Continue;
                }
            }
        } else {
            // A non-durable reader gets a subscription of its own even when the name repeats,
            // but not the name of a durable subscription with consumers.
            if log.consumers_of(&request.subscription) > 0 {
                self.error(
                    request_id,
                    ServerError::ConsumerBusy,
                    format!(
                        "subscription '{}' is in use by a durable consumer",
                        request.subscription
                    ),
                )
                .await;
                return Next::Continue;
            }
            let key = (resolved.partition.clone(), request.subscription.clone());
            // The reconnect after a SEEK resumes where the seek put the reader.
            let index = self
                .service
                .take_reseek(&key)
                .unwrap_or_else(|| log.start_position(start));
            log.open_reader(&request.subscription, index)
        };
        let consumer = Consumer {
            key: (self.id, request.consumer_id),
            name: request
                .consumer_name
                .clone()
                .unwrap_or_else(|| format!("consumer-{}-{}", self.id, request.consumer_id)),
            priority: request.priority_level(),
            sink: Arc::new(PulsarConsumer {
                consumer_id: request.consumer_id,
                id_partition: resolved.id_partition,
                tx: self.out.clone(),
                broker_entry_metadata: self.broker_entry_metadata,
            }),
        };
        let codec = Arc::new(PulsarCodec::new(
            resolved.partition.clone(),
            request.subscription.clone(),
            self.service.cache.clone(),
            self.service.metrics.clone(),
        ));
        match subscription.add_consumer(
            consumer,
            kind,
            codec,
            self.service.config.unacked_messages_per_consumer_max,
        ) {
            Ok(dispatcher) => {
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
                tracing::debug!(peer = %self.peer, topic = %resolved.partition, subscription = %request.subscription, ?kind, durable, "pulsar consumer attached");
                self.consumers.insert(
                    request.consumer_id,
                    ConsumerHandle {
                        subscription,
                        id_partition: resolved.id_partition,
                    },
                );
                self.success(request_id).await;
            }
            Err(message) => {
                self.error(request_id, ServerError::ConsumerBusy, message)
                    .await;
            }
        }
        Next::Continue
    }

    pub(crate) async fn on_close_consumer(&mut self, command: BaseCommand) -> Next {
        let Some(request) = command.close_consumer else {
            return Next::Close("CLOSE_CONSUMER without its body".into());
        };
        self.drop_consumer(request.consumer_id);
        self.success(request.request_id).await;
        Next::Continue
    }

    pub(crate) async fn on_unsubscribe(&mut self, command: BaseCommand) -> Next {
        let Some(request) = command.unsubscribe else {
            return Next::Close("UNSUBSCRIBE without its body".into());
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
        if sub.consumer_count() > 1 && !request.force() {
            self.error(
                request.request_id,
                ServerError::ConsumerBusy,
                format!("subscription '{}' has other consumers", sub.name()),
            )
            .await;
            return Next::Continue;
        }
        self.drop_consumer(request.consumer_id);
        if sub.is_durable() {
            if let Err(e) = sub.log().delete_subscription(sub.name()).await {
                self.error(request.request_id, server_error(&e), e.to_string())
                    .await;
                return Next::Continue;
            }
        }
        self.success(request.request_id).await;
        Next::Continue
    }
}

/// Where a client-supplied message id (a reader's start, a SEEK target) positions a cursor. As
/// Pulsar: at the entry itself; the client drops the messages before (or, when exclusive, at) the
/// batch index it named.
pub(crate) fn cursor_start(id: &MessageIdData) -> CursorStart {
    position(id).entry_start()
}
