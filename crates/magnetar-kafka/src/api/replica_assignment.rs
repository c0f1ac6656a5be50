//! Replica assignments in CreateTopics and CreatePartitions, checked as Kafka checks them.
//!
//! This broker holds the one copy of every partition, so the only valid replica list is this
//! broker's node id. An assignment naming another broker, an empty or duplicated list, or a
//! count that does not match the partitions being created is refused with
//! INVALID_REPLICA_ASSIGNMENT and a message saying which, rather than silently ignored: a tool
//! that places replicas on purpose must learn that the placement did not happen.

use kafka_protocol::messages::BrokerId;

/// Checks one partition's replica list; `index` names the partition in the message.
pub(super) fn check_replicas(
    node_id: i32,
    index: usize,
    replicas: &[BrokerId],
) -> Result<(), String> {
    if replicas.is_empty() {
        return Err(format!("partition {index} has an empty replica assignment"));
    }
    for (i, broker) in replicas.iter().enumerate() {
        if replicas[..i].contains(broker) {
            return Err(format!(
                "partition {index} names broker {} more than once",
                broker.0
            ));
        }
        if broker.0 != node_id {
            return Err(format!(
                "partition {index} is assigned to broker {}, which does not exist (this cluster \
                 has broker {node_id})",
                broker.0
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_broker_once() {
        assert!(check_replicas(0, 0, &[BrokerId(0)]).is_ok());
        assert!(check_replicas(0, 0, &[]).unwrap_err().contains("empty"));
        assert!(check_replicas(0, 1, &[BrokerId(0), BrokerId(0)])
            .unwrap_err()
            .contains("more than once"));
        assert!(check_replicas(0, 2, &[BrokerId(7)])
            .unwrap_err()
            .contains("broker 7"));
    }
}
