//! CreateTopics v2–v7. `num_partitions` -1 means the broker default; explicit replica
//! assignments fix the partition count to their number. The replication factor is accepted and
//! ignored when it is -1 or positive (storage durability is the ledger's concern); 0 and below -1
//! are refused. Kafka-created topics are partitioned topics (`t-partition-N` in Pulsar terms).
//! Configs are validated ([`crate::topic_config`]) and stored in `TopicMetadata.configs`.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use magnetar_broker::{Access, Error};

use super::{replica_assignment, Context, Envelope};
use crate::{error_code, topic_config};

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let version = envelope.version();
    let mut response = CreateTopicsResponse::default();
    for topic in request.topics {
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        result.num_partitions = -1;
        result.replication_factor = -1;
        match create(ctx, &topic, request.validate_only).await {
            Ok((name, metadata, partitions)) => {
                result.num_partitions = partitions as i32;
                result.replication_factor = 1;
                // Configs in the response exist from v5 (the crate refuses to encode them before).
                result.configs = (version >= 5).then(|| {
                    topic_config::SPECS
                        .iter()
                        .filter_map(|spec| {
                            let key = spec.name;
                            let (value, source) = match metadata.get(key) {
                                Some(v) => (v.clone(), topic_config::source::DYNAMIC_TOPIC_CONFIG),
                                None => (
                                    topic_config::default_value(ctx, None, key)?,
                                    topic_config::source::DEFAULT_CONFIG,
                                ),
                            };
                            Some(
                                CreatableTopicConfigs::default()
                                    .with_name(StrBytes::from_static_str(key))
                                    .with_value(Some(StrBytes::from_string(value)))
                                    .with_config_source(source)
                                    .with_read_only(false)
                                    .with_is_sensitive(false),
                            )
                        })
                        .collect()
                });
                if let Some(name) = name {
                    result.topic_id = name;
                }
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
            }
        }
        response.topics.push(result);
    }
    response
}

type Created = (Option<uuid::Uuid>, BTreeMap<String, String>, u32);

async fn create(
    ctx: &Context,
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    validate_only: bool,
) -> Result<Created, (i16, String)> {
    let fail = |e: Error| (error_code::code(&e), error_code::message(&e));
    let name = ctx.parse_writable_topic(&topic.name.0).map_err(fail)?;
    // Creating topics is for the tenant's admins (KoP's mapping).
    ctx.authorize_with_message(&name, &Access::Admin).await?;
    if topic.replication_factor == 0 || topic.replication_factor < -1 {
        return Err((
            ResponseError::InvalidReplicationFactor.code(),
            format!("replication factor {} is invalid", topic.replication_factor),
        ));
    }
    let partitions = if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err((
                ResponseError::InvalidRequest.code(),
                "both num_partitions or replication_factor and replica assignments were set"
                    .to_string(),
            ));
        }
        let invalid = |m: String| (ResponseError::InvalidReplicaAssignment.code(), m);
        for (i, a) in topic.assignments.iter().enumerate() {
            if usize::try_from(a.partition_index).ok() != Some(i) {
                return Err(invalid(format!(
                    "partitions must be assigned in order from 0; got {} at position {i}",
                    a.partition_index
                )));
            }
            replica_assignment::check_replicas(ctx.config.node_id, i, &a.broker_ids)
                .map_err(invalid)?;
        }
        topic.assignments.len() as u32
    } else if topic.num_partitions == -1 {
        ctx.broker.config().default_num_partitions
    } else if topic.num_partitions <= 0 {
        return Err((
            ResponseError::InvalidPartitions.code(),
            format!("number of partitions {} is invalid", topic.num_partitions),
        ));
    } else {
        topic.num_partitions as u32
    };
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        if let Some(value) = &config.value {
            configs.insert(config.name.to_string(), value.to_string());
        }
    }
    topic_config::validate_all(&configs).map_err(fail)?;
    if validate_only {
        if ctx.broker.topic(&name).await.map_err(fail)?.is_some() {
            return Err(fail(Error::TopicAlreadyExists {
                topic: name.to_string(),
            }));
        }
        if partitions == 0 || partitions > ctx.broker.config().partitions_max {
            return Err(fail(Error::InvalidPartitions(format!(
                "{partitions} partitions is outside [1, {}]",
                ctx.broker.config().partitions_max
            ))));
        }
        return Ok((None, configs, partitions));
    }
    let metadata = ctx
        .broker
        .create_topic(&name, Some(partitions), configs)
        .await
        .map_err(|e| {
            if !matches!(e, Error::TopicAlreadyExists { .. }) {
                tracing::info!(topic = %name, error = %e, "create topic failed");
            }
            fail(e)
        })?;
    let id = ctx.topic_id(&name, &metadata);
    Ok((Some(id), metadata.configs, partitions))
}
