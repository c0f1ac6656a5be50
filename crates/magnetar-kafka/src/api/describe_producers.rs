//! DescribeProducers v0 (KIP-664, what `kafka-transactions.sh describe-producers` sends): the
//! idempotent and transactional producers a partition remembers, with their epoch, last
//! sequence, last batch timestamp and the first offset of their open transaction (the
//! "hanging transaction" tool reads it). Needs read (consume) permission on the topic, as
//! Kafka's DESCRIBE... READ ACL. `coordinator_epoch` is -1: markers are written in-process, no
//! coordinator epoch is stored.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::ResponseError;
use magnetar_broker::{Access, TopicPartition};

use super::{Context, Envelope};
use crate::error_code;

pub async fn handle(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let mut response = DescribeProducersResponse::default();
    for topic in request.topics {
        let mut topic_response = TopicResponse::default().with_name(topic.name.clone());
        let name = match ctx.parse_topic(&topic.name.0) {
            Ok(name) => ctx
                .authorize(&name, &Access::Consume { subscription: None })
                .await
                .map(|()| name),
            Err(e) => Err(error_code::code(&e)),
        };
        for index in topic.partition_indexes {
            let mut result = PartitionResponse::default().with_partition_index(index);
            let producers = match (&name, u32::try_from(index)) {
                (Ok(name), Ok(partition)) => {
                    let tp = TopicPartition {
                        topic: name.clone(),
                        partition,
                    };
                    match ctx.broker.partition(&tp).await {
                        Ok(log) => log.producers().map_err(|e| error_code::code(&e)),
                        Err(e) => Err(error_code::code(&e)),
                    }
                }
                (Err(code), _) => Err(*code),
                (_, Err(_)) => Err(ResponseError::UnknownTopicOrPartition.code()),
            };
            match producers {
                Ok(producers) => {
                    result.active_producers = producers
                        .into_iter()
                        .map(|p| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(p.producer_id))
                                .with_producer_epoch(i32::from(p.epoch))
                                .with_last_sequence(p.last_sequence)
                                .with_last_timestamp(p.last_timestamp_ms)
                                .with_coordinator_epoch(-1)
                                .with_current_txn_start_offset(
                                    p.txn_start_index.map_or(-1, |i| i as i64),
                                )
                        })
                        .collect();
                }
                Err(code) => result.error_code = code,
            }
            topic_response.partitions.push(result);
        }
        response.topics.push(topic_response);
    }
    response
}
