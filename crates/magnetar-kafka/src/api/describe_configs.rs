//! DescribeConfigs v1–v4 for topics (every key in [`crate::topic_config::SPECS`], with source
//! DYNAMIC_TOPIC_CONFIG when set on the topic, DYNAMIC_DEFAULT_BROKER_CONFIG when its namespace
//! sets a default of it, DEFAULT_CONFIG otherwise) and for this broker
//! (its static settings under Kafka's names, read-only, source STATIC_BROKER_CONFIG). With
//! `include_documentation` (v3+) each key carries its documentation, which for a topic key says
//! whether it has an effect here.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use magnetar_broker::{Access, Error};

use super::{Context, Envelope};
use crate::error_code;
use crate::topic_config::{self, config_type, source};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

struct Row {
    name: String,
    value: String,
    source: i8,
    config_type: i8,
    read_only: bool,
    /// The namespace's default of a topic config the topic also sets (a synonym).
    namespace_default: Option<String>,
    default: Option<String>,
    documentation: String,
}

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let version = envelope.version();
    let mut response = DescribeConfigsResponse::default();
    for resource in request.resources {
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let rows = match resource.resource_type {
            RESOURCE_TOPIC => topic_rows(ctx, &resource.resource_name).await,
            // Broker configs are cluster-wide: superusers only with authorization on.
            RESOURCE_BROKER if !ctx.cluster_allowed() => Err((
                ResponseError::ClusterAuthorizationFailed.code(),
                "describing broker configs needs a superuser role".to_string(),
            )),
            RESOURCE_BROKER => broker_rows(ctx, &resource.resource_name),
            other => Err((
                ResponseError::InvalidRequest.code(),
                format!("resource type {other} is not supported"),
            )),
        };
        match rows {
            Ok(rows) => {
                // Null (and, leniently, an empty list) means every key.
                let wanted = resource
                    .configuration_keys
                    .as_ref()
                    .filter(|keys| !keys.is_empty());
                result.configs = rows
                    .into_iter()
                    .filter(|row| {
                        wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == row.name))
                    })
                    .map(|row| {
                        let mut config = DescribeConfigsResourceResult::default()
                            .with_name(StrBytes::from_string(row.name.clone()))
                            .with_value(Some(StrBytes::from_string(row.value.clone())))
                            .with_read_only(row.read_only)
                            .with_is_sensitive(false)
                            .with_config_source(row.source);
                        if version >= 3 {
                            config.config_type = row.config_type;
                            // Null unless asked, as Kafka (the crate's default is "").
                            config.documentation = request
                                .include_documentation
                                .then(|| StrBytes::from_string(row.documentation.clone()));
                        }
                        if request.include_synonyms {
                            let mut synonyms = vec![DescribeConfigsSynonym::default()
                                .with_name(StrBytes::from_string(row.name.clone()))
                                .with_value(Some(StrBytes::from_string(row.value)))
                                .with_source(row.source)];
                            if let Some(v) = row.namespace_default {
                                synonyms.push(
                                    DescribeConfigsSynonym::default()
                                        .with_name(StrBytes::from_string(row.name.clone()))
                                        .with_value(Some(StrBytes::from_string(v)))
                                        .with_source(source::DYNAMIC_DEFAULT_BROKER_CONFIG),
                                );
                            }
                            if let Some(default) =
                                row.default.filter(|_| row.source != source::DEFAULT_CONFIG)
                            {
                                synonyms.push(
                                    DescribeConfigsSynonym::default()
                                        .with_name(StrBytes::from_string(row.name))
                                        .with_value(Some(StrBytes::from_string(default)))
                                        .with_source(source::DEFAULT_CONFIG),
                                );
                            }
                            config.synonyms = synonyms;
                        }
                        config
                    })
                    .collect();
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
            }
        }
        response.results.push(result);
    }
    response
}

async fn topic_rows(ctx: &Context, shown: &str) -> Result<Vec<Row>, (i16, String)> {
    let fail = |e: Error| (error_code::code(&e), error_code::message(&e));
    let name = ctx.parse_topic(shown).map_err(fail)?;
    ctx.authorize_with_message(&name, &Access::Lookup).await?;
    let metadata = ctx
        .broker
        .topic(&name)
        .await
        .map_err(fail)?
        .ok_or_else(|| {
            fail(Error::TopicNotFound {
                topic: name.to_string(),
            })
        })?;
    let policies = ctx
        .broker
        .namespace_policies(&name.namespace)
        .await
        .map_err(fail)?;
    Ok(topic_config::SPECS
        .iter()
        .filter_map(|spec| {
            let key = spec.name;
            let default = topic_config::default_value(ctx, policies.as_ref(), key);
            // The topic's own value, else its namespace's default (shown with Kafka's source for
            // a default set at run time above the topic), else Kafka's default.
            let namespace_default = metadata.namespace_defaults.get(key).cloned();
            let (value, source, namespace_default) =
                match (metadata.configs.get(key), namespace_default) {
                    (Some(v), ns) => (v.clone(), source::DYNAMIC_TOPIC_CONFIG, ns),
                    (None, Some(ns)) => (ns, source::DYNAMIC_DEFAULT_BROKER_CONFIG, None),
                    (None, None) => (default.clone()?, source::DEFAULT_CONFIG, None),
                };
            Some(Row {
                name: key.to_string(),
                value,
                source,
                config_type: spec.config_type,
                read_only: false,
                namespace_default,
                default,
                documentation: topic_config::documentation(spec),
            })
        })
        .collect())
}

fn broker_rows(ctx: &Context, name: &str) -> Result<Vec<Row>, (i16, String)> {
    if !name.is_empty() && name != ctx.config.node_id.to_string() {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!(
                "broker '{name}' is not this broker ({})",
                ctx.config.node_id
            ),
        ));
    }
    let broker = ctx.broker.config();
    let row = |name: &str, value: String, config_type: i8, doc: &str| Row {
        name: name.to_string(),
        value,
        source: source::STATIC_BROKER_CONFIG,
        config_type,
        read_only: true,
        namespace_default: None,
        default: None,
        documentation: doc.to_string(),
    };
    let advertised = if ctx.config.advertised_listeners.is_empty() {
        format!(
            "PLAINTEXT://{}:{}",
            ctx.config.advertised_host, ctx.config.advertised_port
        )
    } else {
        ctx.config.advertised_listeners.clone()
    };
    let listeners = if ctx.config.listeners.is_empty() {
        advertised.clone()
    } else {
        ctx.config.listeners.clone()
    };
    let segment_bytes = broker.ledger.segment_bytes.min(i32::MAX as u64).to_string();
    use config_type::{BOOLEAN, INT, LIST, LONG, STRING};
    Ok(vec![
        row("advertised.listeners", advertised, LIST,
            "Addresses clients are told to connect to (kafka.advertised_host/advertised_port and the additional listeners)."),
        row("auto.create.topics.enable", broker.allow_auto_topic_creation.to_string(), BOOLEAN,
            "Whether Metadata requests for an unknown topic create it (kafka.allow_auto_topic_creation)."),
        row("broker.id", ctx.config.node_id.to_string(), INT, "This broker's id."),
        row("compression.type", "producer".to_string(), STRING,
            "Batches are stored as produced."),
        row("default.replication.factor", "1".to_string(), INT,
            "Each partition is one copy on the ledger; durability is the ledger's."),
        row("delete.topic.enable", "true".to_string(), BOOLEAN, "Topics may be deleted."),
        row("kafka.namespace", broker.default_namespace.to_string(), STRING,
            "The Pulsar namespace bare Kafka topic names live in (kafkaTenant/kafkaNamespace)."),
        row("listeners", listeners, LIST, "Addresses the broker listens on for Kafka clients."),
        row("log.dirs", broker.data_dir.display().to_string(), LIST,
            "The data directory (server.data_dir); ledgers live under it."),
        row("log.retention.bytes", "-1".to_string(), LONG,
            "No broker-wide size retention: topics follow their retention.bytes or their namespace's policy."),
        row("log.retention.ms", "-1".to_string(), LONG,
            "No broker-wide time retention: topics follow their retention.ms or their namespace's policy."),
        row("log.segment.bytes", segment_bytes, INT,
            "Size of a segment file (storage.segment_bytes)."),
        row("message.max.bytes", ctx.config.message_bytes_max.to_string(), INT,
            "Largest record batch accepted; the default of the topic config max.message.bytes (kafka.message_bytes_max)."),
        row("min.insync.replicas", "1".to_string(), INT,
            "One copy per partition; accepted with no effect."),
        row("node.id", ctx.config.node_id.to_string(), INT, "This broker's id."),
        row("num.partitions", broker.default_num_partitions.to_string(), INT,
            "Partitions of a topic created without a count (kafka.default_num_partitions)."),
        row("offsets.topic.num.partitions", ctx.config.group_coordinator.offsets_topic_num_partitions.to_string(), INT,
            "Partitions of __consumer_offsets."),
        row("socket.request.max.bytes", ctx.config.max_request_bytes.to_string(), INT,
            "Largest request frame accepted (kafka.max_request_bytes)."),
        row("unclean.leader.election.enable", "false".to_string(), BOOLEAN,
            "One copy per partition; accepted with no effect."),
    ])
}
