//! Who leads what, as Kafka clients are told: standalone, this broker leads everything; in
//! cluster mode, a partition's leader is the broker owning its bundle and the broker list is the
//! live brokers with their advertised address for this listener's name (Kafka's rule: a client
//! keeps to the listener it bootstrapped from).

use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::protocol::StrBytes;
use magnetar_broker::cluster::PartitionOwner;
use magnetar_broker::{TopicMetadata, TopicName};

use super::Context;

/// A broker as clients reach it: node id, host, port.
pub(crate) type Node = (i32, String, i32);

/// `host:port` (the port last, so IPv6 hosts in brackets parse too).
fn split_address(address: &str) -> Option<(String, i32)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

/// This broker on this listener.
fn this_node(ctx: &Context) -> Node {
    (
        ctx.config.node_id,
        ctx.config.advertised_host.clone(),
        i32::from(ctx.config.advertised_port),
    )
}

/// The brokers a client may be sent to: this one, and in cluster mode every live broker that
/// advertises this listener's name.
pub(crate) fn nodes(ctx: &Context) -> Vec<Node> {
    let mut nodes = vec![this_node(ctx)];
    if let Some(member) = ctx.broker.cluster() {
        for (id, record) in member.live_brokers().iter() {
            let id = i32::from(*id);
            if id == ctx.config.node_id {
                continue;
            }
            if let Some((host, port)) = record
                .info
                .kafka_listeners
                .get(&ctx.config.listener_name)
                .and_then(|a| split_address(a))
            {
                nodes.push((id, host, port));
            }
        }
        nodes.sort_by_key(|n| n.0);
    }
    nodes
}

/// The Metadata response's broker list.
pub(crate) fn metadata_brokers(ctx: &Context) -> Vec<MetadataResponseBroker> {
    nodes(ctx)
        .into_iter()
        .map(|(id, host, port)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
        })
        .collect()
}

/// The leader of a partition of `name` and its leader epoch (0 standalone; in cluster mode the
/// epoch of the owner's bundle claim): `None` while nobody serves it (a claim under way, or its
/// owner just died), so the client asks again.
pub(crate) fn leader(
    ctx: &Context,
    name: &TopicName,
    metadata: &TopicMetadata,
    partition: u32,
) -> Option<(i32, i32)> {
    let Some(member) = ctx.broker.cluster() else {
        return Some((ctx.config.node_id, 0));
    };
    let (owner, epoch) = member
        .owner_and_epoch(name, metadata.ledger_partition(partition))
        .ok()?;
    let epoch = super::leader_epoch::wire(epoch);
    match owner {
        PartitionOwner::This => Some((ctx.config.node_id, epoch)),
        PartitionOwner::Other(node) => {
            let id = i32::from(node);
            member
                .live_brokers()
                .contains_key(&node)
                .then_some((id, epoch))
        }
        PartitionOwner::Unowned => None,
    }
}

/// The coordinator of a transactional id: the leader of its `__transaction_state` partition.
pub(crate) fn transaction_coordinator(
    ctx: &Context,
    txn: &magnetar_coordinator::TransactionCoordinator,
    transactional_id: &str,
) -> Option<Node> {
    let Some(member) = ctx.broker.cluster() else {
        return Some(this_node(ctx));
    };
    let partition = txn.partition_for(transactional_id);
    let id = match member.owner(txn.topic(), Some(partition)) {
        Ok(PartitionOwner::This) => ctx.config.node_id,
        Ok(PartitionOwner::Other(node)) => i32::from(node),
        Ok(PartitionOwner::Unowned) | Err(_) => return None,
    };
    nodes(ctx).into_iter().find(|n| n.0 == id)
}

/// The coordinator of a group: the leader of its `__consumer_offsets` partition, if a client
/// can reach it on this listener.
pub(crate) fn group_coordinator(ctx: &Context, group_id: &str) -> Option<Node> {
    let Some(member) = ctx.broker.cluster() else {
        return Some(this_node(ctx));
    };
    let partition = ctx.coordinator.partition_for(group_id);
    let id = match member.owner(ctx.coordinator.topic(), Some(partition)) {
        Ok(PartitionOwner::This) => ctx.config.node_id,
        Ok(PartitionOwner::Other(node)) => i32::from(node),
        Ok(PartitionOwner::Unowned) | Err(_) => return None,
    };
    nodes(ctx).into_iter().find(|n| n.0 == id)
}
