//! LOOKUP (always authoritative: this broker standalone, the bundle's owner in cluster mode),
//! PARTITIONED_METADATA and
//! GET_TOPICS_OF_NAMESPACE.

use magnetar_broker::Access;

use crate::connection::{Connection, Handled, Reply};
use crate::error::{Answer, OrAnswer};
use crate::proto::base_command::Type;
use crate::proto::command_lookup_topic_response::LookupType;
use crate::proto::command_partitioned_topic_metadata_response::LookupType as MetadataResult;
use crate::proto::{
    BaseCommand, CommandGetTopicsOfNamespaceResponse, CommandLookupTopicResponse,
    CommandPartitionedTopicMetadataResponse,
};
use crate::service::split_partition;

impl Connection {
    pub(crate) async fn on_lookup(&mut self, command: BaseCommand) -> Handled {
        let Some(lookup) = command.lookup_topic else {
            return Ok(Reply::Close("LOOKUP without its body".into()));
        };
        let answer = Answer::Lookup(lookup.request_id);
        self.authorize(answer, &lookup.topic, &Access::Lookup)
            .await?;
        let resolved = self
            .service
            .resolve(&lookup.topic)
            .await
            .or_answer(answer)?;
        // Cluster mode: the owner of the topic's bundle serves it; the client connects there.
        let ledger_partition = u32::try_from(resolved.id_partition).ok();
        let owner = self
            .service
            .broker
            .serving_broker(&resolved.partition.topic, ledger_partition)
            .or_answer(answer)?;
        let (url, url_tls) =
            match owner.and_then(|o| o.info.pulsar.map(|url| (url, o.info.pulsar_tls))) {
                Some((url, url_tls)) => (url, url_tls),
                None => (
                    self.service.broker.config().broker_service_url.clone(),
                    Some(&self.service.config.broker_service_url_tls)
                        .filter(|url| !url.is_empty())
                        .cloned(),
                ),
            };
        Ok(Reply::frame(&BaseCommand {
            r#type: Type::LookupResponse as i32,
            lookup_topic_response: Some(CommandLookupTopicResponse {
                broker_service_url: Some(url),
                broker_service_url_tls: url_tls,
                response: Some(LookupType::Connect as i32),
                request_id: lookup.request_id,
                authoritative: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    pub(crate) async fn on_partitioned_metadata(&mut self, command: BaseCommand) -> Handled {
        let Some(request) = command.partition_metadata else {
            return Ok(Reply::Close("PARTITIONED_METADATA without its body".into()));
        };
        let answer = Answer::PartitionedMetadata(request.request_id);
        self.authorize(answer, &request.topic, &Access::Lookup)
            .await?;
        let partitions = self
            .partition_count(&request.topic, request.metadata_auto_creation_enabled())
            .await
            .or_answer(answer)?;
        Ok(Reply::frame(&BaseCommand {
            r#type: Type::PartitionedMetadataResponse as i32,
            partition_metadata_response: Some(CommandPartitionedTopicMetadataResponse {
                partitions: Some(partitions),
                request_id: request.request_id,
                response: Some(MetadataResult::Success as i32),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    /// The partition count of the topic `name` (0: not partitioned; a partition is itself a
    /// non-partitioned topic), created first when `create` asks and the policies allow.
    async fn partition_count(
        &self,
        name: &str,
        create: bool,
    ) -> Result<u32, magnetar_broker::Error> {
        let (base, partition) = split_partition(name);
        if partition.is_some() {
            self.service.resolve(name).await?;
            return Ok(0);
        }
        let topic = self.service.broker.parse_topic(base)?;
        let metadata = if create {
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
        Ok(if metadata.partitioned {
            metadata.partitions
        } else {
            0
        })
    }

    pub(crate) async fn on_topics_of_namespace(&mut self, command: BaseCommand) -> Handled {
        let Some(request) = command.get_topics_of_namespace else {
            return Ok(Reply::Close(
                "GET_TOPICS_OF_NAMESPACE without its body".into(),
            ));
        };
        let all = self
            .service
            .topics_of_namespace(&request.namespace)
            .await
            .or_answer(Answer::Request(request.request_id))?;
        // Only the topics this role may look up.
        let mut topics = Vec::with_capacity(all.len());
        for t in all {
            if self.may(&t, &Access::Lookup, false).await {
                topics.push(t);
            }
        }
        Ok(Reply::frame(&BaseCommand {
            r#type: Type::GetTopicsOfNamespaceResponse as i32,
            get_topics_of_namespace_response: Some(CommandGetTopicsOfNamespaceResponse {
                request_id: request.request_id,
                topics,
                filtered: Some(false),
                topics_hash: None,
                changed: Some(true),
            }),
            ..Default::default()
        }))
    }
}
