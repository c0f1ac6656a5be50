//! Request → handler routing. Every handler has one shape,
//! `async fn handle(ctx: &Context, envelope: &Envelope<'_>, request: XRequest) -> XResponse`:
//! Kafka answers errors inside the response (per topic, partition, group or member, or at the top
//! level, as each API defines), so a handler's result is its response, and the domain error is
//! turned into a code by the one mapping in [`crate::error_code`]. What every response shares is
//! done here once: empty error messages sent as null, acks=0 produce answered with nothing, and an
//! API without a handler closing the connection.

use kafka_protocol::messages::{RequestKind, ResponseKind};

use super::context::{Context, Envelope};
use super::*;
use crate::codec::Request;

/// What the connection does after a request.
#[derive(Debug)]
pub enum Outcome {
    Respond(Box<ResponseKind>),
    /// Produce with acks=0.
    NoResponse,
    Close(&'static str),
}

/// Hands a decoded request to its API module.
pub async fn handle(ctx: &Context, peer: std::net::SocketAddr, request: Request) -> Outcome {
    let envelope = Envelope {
        header: &request.header,
        peer,
    };
    let e = &envelope;
    let response = match request.body {
        RequestKind::ApiVersions(r) => {
            ResponseKind::ApiVersions(api_versions::handle(ctx, e, r).await)
        }
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(ctx, e, r).await),
        RequestKind::Produce(r) => {
            let acks = r.acks;
            let response = produce::handle(ctx, e, r).await;
            if acks == 0 {
                return Outcome::NoResponse;
            }
            ResponseKind::Produce(response)
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, e, r).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(ctx, e, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(ctx, e, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(ctx, e, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(ctx, e, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(ctx, e, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(ctx, e, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(ctx, e, r).await)
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(alter_configs::handle(ctx, e, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            incremental_alter_configs::handle(ctx, e, r).await,
        ),
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(ctx, e, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(ctx, e, r).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(ctx, e, r).await)
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(join_group::handle(ctx, e, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(sync_group::handle(ctx, e, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(ctx, e, r).await),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(leave_group::handle(ctx, e, r).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offset_commit::handle(ctx, e, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(ctx, e, r).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(ctx, e, r).await)
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(list_groups::handle(ctx, e, r).await)
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(delete_groups::handle(ctx, e, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offset_delete::handle(ctx, e, r).await)
        }
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(
            describe_user_scram_credentials::handle(ctx, e, r).await,
        ),
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            alter_user_scram_credentials::handle(ctx, e, r).await,
        ),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(acls::describe(ctx, e, r).await),
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create(ctx, e, r).await),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete(ctx, e, r).await),
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(ctx, e, r).await)
        }
        RequestKind::AlterReplicaLogDirs(r) => {
            ResponseKind::AlterReplicaLogDirs(alter_replica_log_dirs::handle(ctx, e, r).await)
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(ctx, e, r).await)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            alter_partition_reassignments::handle(ctx, e, r).await,
        ),
        RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(
            list_partition_reassignments::handle(ctx, e, r).await,
        ),
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(transactions::add_partitions(ctx, e, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(transactions::add_offsets(ctx, e, r).await)
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(transactions::txn_offset_commit(ctx, e, r).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(transactions::end_txn(ctx, e, r).await),
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(transactions::describe(ctx, e, r).await)
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(transactions::list(ctx, e, r).await)
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(describe_producers::handle(ctx, e, r).await)
        }
        // The codec only decodes the APIs in SUPPORTED, so this is a bug, not client input.
        _ => return Outcome::Close("request of an api without a handler"),
    };
    let mut response = response;
    error_messages::null_empty_messages(&mut response);
    Outcome::Respond(Box::new(response))
}
