//! Metadata v0–v12: the brokers, the cluster id, the controller (this broker) and topics with
//! their partitions at leader epoch 0, led by this broker standalone and by their bundle's
//! owner in cluster mode (see [`cluster_view`]). Topics named in the request are
//! auto-created when the request allows it (v4+; always before) and the broker's
//! `allowAutoTopicCreation` does; a client sees each topic under the name it asked for.

use kafka_protocol::messages::metadata_response::{
    MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use magnetar_broker::{Access, Error, TopicMetadata, TopicName, INTERNAL_NAMESPACE};

use super::describe_cluster::{
    ALL_OPERATIONS, CONSUME_OPERATIONS, PRODUCE_OPERATIONS, TOPIC_OPERATIONS,
};
use super::{cluster_view, Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: MetadataRequest,
) -> MetadataResponse {
    let header = envelope.header;
    let version = header.api_version;
    let node = BrokerId(ctx.config.node_id);
    let mut response = MetadataResponse::default();
    response.brokers = cluster_view::metadata_brokers(ctx);
    response.cluster_id = Some(StrBytes::from_string(ctx.config.cluster_id.clone()));
    response.controller_id = node;
    if request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = if ctx.is_superuser() {
            ALL_OPERATIONS
        } else {
            0
        };
    }
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
    let with_operations = request.include_topic_authorized_operations;
    let requested = match request.topics {
        // v0: an empty list means all topics; v1+: null means all topics.
        Some(topics) if !(version == 0 && topics.is_empty()) => topics,
        _ => {
            // Kafka lists `__consumer_offsets` (internal) among all topics; clients' own
            // `exclude.internal.topics` logic relies on it.
            match ctx.broker.list_all_topics(true).await {
                Ok(all) => {
                    for (name, metadata) in all {
                        if super::is_internal(&name) && name.local != super::OFFSETS_TOPIC {
                            continue;
                        }
                        // Only the topics the principal may look up: nothing else is named.
                        if !ctx.may(&name, &Access::Lookup).await {
                            continue;
                        }
                        let shown = ctx.short_name(&name);
                        let operations = operations(ctx, &name, with_operations).await;
                        response
                            .topics
                            .push(topic_entry(ctx, shown, &name, &metadata, operations));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list topics for metadata"),
            }
            return response;
        }
    };
    for topic in requested {
        let (shown, lookup) = match (&topic.name, topic.topic_id.is_nil()) {
            (Some(name), _) => (name.0.to_string(), ctx.parse_topic(name)),
            (None, false) => match ctx.topic_by_id(topic.topic_id).await {
                Ok(Some(name)) => (ctx.short_name(&name), Ok(name)),
                Ok(None) => {
                    let mut entry = MetadataResponseTopic::default().with_topic_id(topic.topic_id);
                    entry.error_code = ResponseError::UnknownTopicId.code();
                    response.topics.push(entry);
                    continue;
                }
                Err(e) => (String::new(), Err(e)),
            },
            (None, true) => (
                String::new(),
                Err(Error::InvalidName(
                    "topic has neither a name nor an id".into(),
                )),
            ),
        };
        // Authorized before the topic is looked up or created, so a refusal reveals nothing;
        // a topic id the principal may not see is unknown, as in Kafka.
        let lookup = match lookup {
            Ok(name) if !ctx.allowed(&name, &Access::Lookup).await => {
                let mut entry = MetadataResponseTopic::default();
                if topic.name.is_some() {
                    entry.name = Some(kafka_protocol::messages::TopicName(StrBytes::from_string(
                        shown,
                    )));
                    entry.error_code = ResponseError::TopicAuthorizationFailed.code();
                } else {
                    entry.topic_id = topic.topic_id;
                    entry.error_code = ResponseError::UnknownTopicId.code();
                }
                response.topics.push(entry);
                continue;
            }
            other => other,
        };
        let found = match lookup {
            Ok(name) => {
                let result = if allow_auto_create {
                    ctx.broker.topic_or_create(&name).await
                } else {
                    ctx.broker.topic(&name).await.and_then(|t| {
                        t.ok_or_else(|| Error::TopicNotFound {
                            topic: name.to_string(),
                        })
                    })
                };
                result.map(|metadata| (name, metadata))
            }
            Err(e) => Err(e),
        };
        match found {
            Ok((name, metadata)) => {
                let operations = operations(ctx, &name, with_operations).await;
                response
                    .topics
                    .push(topic_entry(ctx, shown, &name, &metadata, operations))
            }
            Err(e) => {
                match &e {
                    Error::NamespaceNotFound { .. } | Error::TenantNotFound { .. } => {
                        tracing::warn!(topic = %shown, error = %e, "metadata for a topic in a namespace that does not exist")
                    }
                    Error::InvalidName(_) => {
                        tracing::info!(topic = %shown, error = %e, "metadata for an invalid topic name")
                    }
                    _ => tracing::debug!(topic = %shown, error = %e, "metadata lookup failed"),
                }
                let mut entry = MetadataResponseTopic::default().with_name(Some(
                    kafka_protocol::messages::TopicName(StrBytes::from_string(shown)),
                ));
                entry.error_code = error_code::code(&e);
                response.topics.push(entry);
            }
        }
    }
    response
}

/// The topic's authorized operations (KIP-430) when the client asked for them: everything with
/// authorization off or for the tenant's admins; what `produce` and `consume` allow otherwise;
/// less what deny rules refuse (WRITE, READ, DESCRIBE), tenant admins included.
async fn operations(ctx: &Context, name: &TopicName, wanted: bool) -> Option<i32> {
    if !wanted {
        return None;
    }
    let mut ops = 0;
    if ctx.may(name, &Access::Admin).await {
        ops |= TOPIC_OPERATIONS & !(READ | WRITE);
    }
    if ctx.may(name, &Access::Produce).await {
        ops |= PRODUCE_OPERATIONS;
    }
    if ctx.may(name, &Access::Consume { subscription: None }).await {
        ops |= CONSUME_OPERATIONS;
    }
    if ops != 0 && !ctx.may(name, &Access::Lookup).await {
        ops &= !DESCRIBE;
    }
    Some(ops)
}

/// KIP-430 operation bits (1 << Kafka's AclOperation code).
const READ: i32 = 1 << 3;
const WRITE: i32 = 1 << 4;
const DESCRIBE: i32 = 1 << 8;

fn topic_entry(
    ctx: &Context,
    shown: String,
    name: &TopicName,
    metadata: &TopicMetadata,
    operations: Option<i32>,
) -> MetadataResponseTopic {
    let mut entry = MetadataResponseTopic::default()
        .with_name(Some(kafka_protocol::messages::TopicName(
            StrBytes::from_string(shown),
        )))
        .with_topic_id(ctx.topic_id(name, metadata))
        .with_is_internal(
            name.namespace.tenant.as_str() == INTERNAL_NAMESPACE.0
                && name.namespace.namespace == INTERNAL_NAMESPACE.1,
        );
    entry.partitions = (0..metadata.partition_count())
        .map(|p| {
            let partition = MetadataResponsePartition::default().with_partition_index(p as i32);
            match cluster_view::leader(ctx, name, metadata, p) {
                Some((leader, epoch)) => partition
                    .with_leader_epoch(epoch)
                    .with_leader_id(BrokerId(leader))
                    .with_replica_nodes(vec![BrokerId(leader)])
                    .with_isr_nodes(vec![BrokerId(leader)]),
                // Retriable: the client asks again once a broker has claimed the partition.
                None => partition
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1)),
            }
        })
        .collect();
    if let Some(operations) = operations {
        entry.topic_authorized_operations = operations;
    }
    entry
}
