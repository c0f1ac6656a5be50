//! The transaction APIs (KIP-98) over the transaction coordinator: AddPartitionsToTxn v0–v3,
//! AddOffsetsToTxn v0–v3, TxnOffsetCommit v0–v3, EndTxn v0–v3, DescribeTransactions v0 and
//! ListTransactions v0. (AddPartitionsToTxn v4+ is Kafka's broker-to-broker batch form of
//! KIP-890, and EndTxn v5 its per-transaction epoch bump: not served; the produce path
//! verifies transactional writes in-process instead.)
//!
//! Authorization: a transactional id (Kafka's TRANSACTIONAL_ID resource) needs the produce
//! permission on the client's default namespace ([`Context::authorize_transactional_id`]); the
//! partitions added need produce on their topics, and offsets committed in a transaction need
//! the group and consume on the topics, as OffsetCommit does.

use std::collections::HashMap;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use magnetar_broker::Access;
use magnetar_coordinator::{CoordinatorError, PendingOffset, TransactionCoordinator};
use std::sync::Arc;

use super::{Context, Envelope};
use crate::error_code;

/// The transaction coordinator, started on first use.
async fn coordinator(ctx: &Context) -> Result<Arc<TransactionCoordinator>, i16> {
    ctx.coordinator
        .transactions()
        .await
        .map_err(|e| error_code::coordinator_error(e).code())
}

pub async fn add_partitions(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let id = request.v3_and_below_transactional_id.0.to_string();
    let producer = (
        request.v3_and_below_producer_id.0,
        request.v3_and_below_producer_epoch,
    );
    let mut response = AddPartitionsToTxnResponse::default();
    // Per topic: the error of the topic itself (unknown, not authorized), if any.
    let mut topic_errors: HashMap<String, i16> = HashMap::new();
    let mut adds: Vec<(String, i32)> = Vec::new();
    let id_refused = ctx.authorize_transactional_id(&id).await.err();
    for topic in &request.v3_and_below_topics {
        let name = topic.name.0.to_string();
        let error = match ctx.parse_topic(&name) {
            Err(_) => Some(ResponseError::UnknownTopicOrPartition.code()),
            Ok(parsed) => match ctx.broker.topic(&parsed).await {
                Ok(Some(metadata)) => {
                    if let Err(code) = ctx.authorize(&parsed, &Access::Produce).await {
                        Some(code)
                    } else if let Some(p) = topic.partitions.iter().find(|p| {
                        u32::try_from(**p).map_or(true, |p| p >= metadata.partition_count())
                    }) {
                        tracing::debug!(topic = %parsed, partition = p, "AddPartitionsToTxn for a partition that does not exist");
                        Some(ResponseError::UnknownTopicOrPartition.code())
                    } else {
                        for p in &topic.partitions {
                            adds.push((parsed.to_string(), *p));
                        }
                        None
                    }
                }
                Ok(None) => Some(ResponseError::UnknownTopicOrPartition.code()),
                Err(e) => Some(error_code::code(&e)),
            },
        };
        if let Some(code) = error {
            topic_errors.insert(name, code);
        }
    }
    // Kafka: when some partitions fail, the others answer OPERATION_NOT_ATTEMPTED and nothing
    // is added.
    let outcome: Result<(), i16> = if let Some(code) = id_refused {
        Err(code)
    } else if !topic_errors.is_empty() {
        Err(ResponseError::OperationNotAttempted.code())
    } else {
        match coordinator(ctx).await {
            Err(code) => Err(code),
            Ok(txn) => txn
                .add_partitions(&id, producer, &adds)
                .await
                .map_err(|e| error_code::coordinator_error(e).code()),
        }
    };
    response.results_by_topic_v3_and_below = request
        .v3_and_below_topics
        .iter()
        .map(|topic| {
            let own = topic_errors.get(topic.name.0.as_str()).copied();
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            let code = partition_code(&outcome, own);
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    response
}

/// A partition's error code: its topic's own error, else the request's outcome.
fn partition_code(outcome: &Result<(), i16>, topic_error: Option<i16>) -> i16 {
    match (outcome, topic_error) {
        (_, Some(code)) | (&Err(code), None) => code,
        (Ok(()), None) => 0,
    }
}

pub async fn add_offsets(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let id = request.transactional_id.0.to_string();
    let group = request.group_id.0.to_string();
    let mut response = AddOffsetsToTxnResponse::default();
    if let Err(code) = ctx.authorize_transactional_id(&id).await {
        response.error_code = code;
        return response;
    }
    if let Err(code) = ctx.authorize_group(&group).await {
        response.error_code = code;
        return response;
    }
    response.error_code = match coordinator(ctx).await {
        Err(code) => code,
        Ok(txn) => match txn
            .add_offsets(
                &id,
                (request.producer_id.0, request.producer_epoch),
                &ctx.group_key(&group),
            )
            .await
        {
            Ok(()) => 0,
            Err(e) => error_code::coordinator_error(e).code(),
        },
    };
    response
}

pub async fn txn_offset_commit(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let id = request.transactional_id.0.to_string();
    let group = request.group_id.0.to_string();
    let mut refused: Option<i16> = ctx.authorize_transactional_id(&id).await.err();
    if refused.is_none() {
        refused = ctx.authorize_group(&group).await.err();
    }
    let consume = Access::Consume {
        subscription: Some(group.clone()),
    };
    let mut topic_errors: HashMap<String, i16> = HashMap::new();
    let mut offsets = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let error = match ctx.parse_topic(&name) {
            Err(_) => Some(ResponseError::UnknownTopicOrPartition.code()),
            Ok(parsed) => match ctx.broker.topic(&parsed).await {
                Ok(Some(_)) => ctx.authorize(&parsed, &consume).await.err(),
                Ok(None) => Some(ResponseError::UnknownTopicOrPartition.code()),
                Err(e) => Some(error_code::code(&e)),
            },
        };
        match error {
            Some(code) => {
                topic_errors.insert(name, code);
            }
            None => {
                for p in &topic.partitions {
                    offsets.push(PendingOffset {
                        topic: name.clone(),
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                    });
                }
            }
        }
    }
    let outcome: Result<(), i16> = match refused {
        Some(code) => Err(code),
        None if offsets.len() > ctx.config.group_coordinator.transaction_partitions_max => {
            Err(ResponseError::PolicyViolation.code())
        }
        None => match coordinator(ctx).await {
            Err(code) => Err(code),
            Ok(txn) => txn
                .txn_offset_commit(
                    &id,
                    (request.producer_id.0, request.producer_epoch),
                    &ctx.group_key(&group),
                    offsets,
                )
                .await
                .map_err(|e| error_code::coordinator_error(e).code()),
        },
    };
    let mut response = TxnOffsetCommitResponse::default();
    response.topics = request
        .topics
        .iter()
        .map(|topic| {
            let own = topic_errors.get(topic.name.0.as_str()).copied();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            let code = partition_code(&outcome, own);
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    response
}

pub async fn end_txn(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let id = request.transactional_id.0.to_string();
    let mut response = EndTxnResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if let Err(code) = ctx.authorize_transactional_id(&id).await {
        response.error_code = code;
        return response;
    }
    response.error_code = match coordinator(ctx).await {
        Err(code) => code,
        Ok(txn) => match txn
            .end_txn(
                &id,
                (request.producer_id.0, request.producer_epoch),
                request.committed,
            )
            .await
        {
            Ok(()) => 0,
            Err(e) => {
                tracing::debug!(transactional_id = %id, error = %e, "EndTxn refused");
                error_code::coordinator_error(e).code()
            }
        },
    };
    response
}

pub async fn describe(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut response = DescribeTransactionsResponse::default();
    let txn = coordinator(ctx).await;
    for id in request.transactional_ids {
        let mut state = TransactionState::default().with_transactional_id(id.clone());
        state.producer_id = ProducerId(-1);
        state.producer_epoch = -1;
        let auth = ctx.authorize_transactional_id(&id.0).await;
        let described = match (&txn, auth) {
            (_, Err(code)) => Err(code),
            (Err(code), _) => Err(*code),
            (Ok(txn), Ok(())) => txn
                .describe(&id.0)
                .await
                .map_err(|e| error_code::coordinator_error(e).code()),
        };
        match described {
            Err(code) => state.error_code = code,
            Ok(None) => state.error_code = ResponseError::TransactionalIdNotFound.code(),
            Ok(Some(meta)) => {
                state.transaction_state = StrBytes::from_static_str(meta.status.name());
                state.transaction_timeout_ms = meta.timeout_ms;
                state.transaction_start_time_ms = meta.start_ms;
                state.producer_id = ProducerId(meta.producer_id);
                state.producer_epoch = meta.producer_epoch;
                let mut topics: Vec<TopicData> = Vec::new();
                for (topic, p) in &meta.partitions {
                    match topics.last_mut() {
                        Some(t) if t.topic.0.as_str() == topic => t.partitions.push(*p),
                        _ => topics.push(
                            TopicData::default()
                                .with_topic(StrBytes::from_string(topic.clone()).into())
                                .with_partitions(vec![*p]),
                        ),
                    }
                }
                state.topics = topics;
            }
        }
        response.transaction_states.push(state);
    }
    response
}

pub async fn list(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut response = ListTransactionsResponse::default();
    let txn = match coordinator(ctx).await {
        Ok(txn) => txn,
        Err(code) => {
            response.error_code = code;
            return response;
        }
    };
    for meta in txn.list().await {
        let state = meta.status.name();
        if !request.state_filters.is_empty()
            && !request.state_filters.iter().any(|s| s.as_str() == state)
        {
            continue;
        }
        if !request.producer_id_filters.is_empty()
            && !request
                .producer_id_filters
                .iter()
                .any(|p| p.0 == meta.producer_id)
        {
            continue;
        }
        // Listing shows only the ids the client may use (Kafka filters by DESCRIBE).
        if ctx
            .authorize_transactional_id(&meta.transactional_id)
            .await
            .is_err()
        {
            continue;
        }
        response.transaction_states.push(
            ListedState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(
                    meta.transactional_id.clone(),
                )))
                .with_producer_id(ProducerId(meta.producer_id))
                .with_transaction_state(StrBytes::from_static_str(state)),
        );
    }
    response
}

/// The coordinator error for a refused transactional write (used by Produce).
pub fn refusal(e: CoordinatorError) -> i16 {
    match e {
        // Not part of an open transaction that added the partition (KIP-890 verification).
        CoordinatorError::InvalidTxnState => ResponseError::InvalidTxnState.code(),
        other => error_code::coordinator_error(other).code(),
    }
}
