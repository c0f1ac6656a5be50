//! LOOKUP (always authoritative, this broker), PARTITIONED_METADATA and
//! GET_TOPICS_OF_NAMESPACE.

use crate::connection::{Connection, Next};
use crate::error::server_error;
use crate::proto::base_command::Type;
use crate::proto::command_lookup_topic_response::LookupType;
use crate::proto::command_partitioned_topic_metadata_response::LookupType as MetadataResult;
use crate::proto::{
    BaseCommand, CommandGetTopicsOfNamespaceResponse, CommandLookupTopicResponse,
    CommandPartitionedTopicMetadataResponse, ServerError,
};
use crate::service::split_partition;

impl Connection {
    pub(crate) async fn on_lookup(&mut self, command: BaseCommand) -> Next {
        let Some(lookup) = command.lookup_topic else {
            return Next::Close("LOOKUP without its body".into());
        };
        if !self
            .may(&lookup.topic, &magnetar_broker::Access::Lookup, true)
            .await
        {
            let message = self.lookup_refusal(&lookup.topic);
            self.send(BaseCommand {
                r#type: Type::LookupResponse as i32,
                lookup_topic_response: Some(CommandLookupTopicResponse {
                    response: Some(LookupType::Failed as i32),
                    request_id: lookup.request_id,
                    error: Some(ServerError::AuthorizationError as i32),
                    message: Some(message),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
            return Next::Continue;
        }
        let response = match self.service.resolve(&lookup.topic).await {
            Ok(_) => CommandLookupTopicResponse {
                broker_service_url: Some(self.service.broker.config().broker_service_url.clone()),
                broker_service_url_tls: Some(&self.service.config.broker_service_url_tls)
                    .filter(|url| !url.is_empty())
                    .cloned(),
                response: Some(LookupType::Connect as i32),
                request_id: lookup.request_id,
                authoritative: Some(true),
                ..Default::default()
            },
            Err(e) => CommandLookupTopicResponse {
                response: Some(LookupType::Failed as i32),
                request_id: lookup.request_id,
                error: Some(server_error(&e) as i32),
                message: Some(e.to_string()),
                ..Default::default()
            },
        };
        self.send(BaseCommand {
            r#type: Type::LookupResponse as i32,
            lookup_topic_response: Some(response),
            ..Default::default()
        })
        .await;
        Next::Continue
    }

    pub(crate) async fn on_partitioned_metadata(&mut self, command: BaseCommand) -> Next {
        let Some(request) = command.partition_metadata else {
            return Next::Close("PARTITIONED_METADATA without its body".into());
        };
        if !self
            .may(&request.topic, &magnetar_broker::Access::Lookup, true)
            .await
        {
            let message = self.lookup_refusal(&request.topic);
            self.send(BaseCommand {
                r#type: Type::PartitionedMetadataResponse as i32,
                partition_metadata_response: Some(CommandPartitionedTopicMetadataResponse {
                    request_id: request.request_id,
                    response: Some(MetadataResult::Failed as i32),
                    error: Some(ServerError::AuthorizationError as i32),
                    message: Some(message),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
            return Next::Continue;
        }
        let result = async {
            let (base, partition) = split_partition(&request.topic);
            if partition.is_some() {
                // A partition is itself a non-partitioned topic.
                self.service.resolve(&request.topic).await?;
                return Ok(0);
            }
            let topic = self.service.broker.parse_topic(base)?;
            let metadata = if request.metadata_auto_creation_enabled() {
                self.service
                    .broker
                    .topic_or_create_for(&topic, magnetar_broker::AutoCreator::Pulsar)
                    .await?
            } else {
                self.service.broker.topic(&topic).await?.ok_or_else(|| {
                    magnetar_broker::Error::TopicNotFound {
                        topic: topic.to_string(),
                    }
                })?
            };
            Ok::<u32, magnetar_broker::Error>(if metadata.partitioned {
                metadata.partitions
            } else {
                0
            })
        }
        .await;
        let response = match result {
            Ok(partitions) => CommandPartitionedTopicMetadataResponse {
                partitions: Some(partitions),
                request_id: request.request_id,
                response: Some(MetadataResult::Success as i32),
                ..Default::default()
            },
            Err(e) => CommandPartitionedTopicMetadataResponse {
                request_id: request.request_id,
                response: Some(MetadataResult::Failed as i32),
                error: Some(server_error(&e) as i32),
                message: Some(e.to_string()),
                ..Default::default()
            },
        };
        self.send(BaseCommand {
            r#type: Type::PartitionedMetadataResponse as i32,
            partition_metadata_response: Some(response),
            ..Default::default()
        })
        .await;
        Next::Continue
    }

    pub(crate) async fn on_topics_of_namespace(&mut self, command: BaseCommand) -> Next {
        let Some(request) = command.get_topics_of_namespace else {
            return Next::Close("GET_TOPICS_OF_NAMESPACE without its body".into());
        };
        match self.service.topics_of_namespace(&request.namespace).await {
            Ok(all) => {
                // Only the topics this role may look up.
                let mut topics = Vec::with_capacity(all.len());
                for t in all {
                    if self.may(&t, &magnetar_broker::Access::Lookup, false).await {
                        topics.push(t);
                    }
                }
                self.send(BaseCommand {
                    r#type: Type::GetTopicsOfNamespaceResponse as i32,
                    get_topics_of_namespace_response: Some(CommandGetTopicsOfNamespaceResponse {
                        request_id: request.request_id,
                        topics,
                        filtered: Some(false),
                        topics_hash: None,
                        changed: Some(true),
                    }),
                    ..Default::default()
                })
                .await
            }
            Err(e) => {
                self.error(request.request_id, server_error(&e), e.to_string())
                    .await
            }
        }
        Next::Continue
    }
}
