//! Kafka leader epochs. Standalone every partition is served under epoch 0; in cluster mode a
//! partition's leader epoch is the epoch of its bundle's claim, which every claim bumps, so a
//! partition that moved to another broker (or came back) is served under a higher epoch.
//!
//! A request that names the epoch the client believes current (`current_leader_epoch`: Fetch v9+,
//! ListOffsets v4+, OffsetForLeaderEpoch v2+) is checked as Kafka's leader checks it: an older
//! epoch is `FENCED_LEADER_EPOCH` (the client's metadata is stale: it refreshes), a newer one is
//! `UNKNOWN_LEADER_EPOCH` (this broker has not caught up: the client retries), -1 is not checked.
//!
//! The log itself never diverges between epochs (a new owner continues the shared ledger from its
//! last committed entry; nothing acknowledged is truncated), so the end offset of any epoch up to
//! the current one is at most the log end offset, and answering the log end offset for it never
//! makes a client truncate what it read.

use kafka_protocol::ResponseError;
use magnetar_broker::PartitionLog;

/// An epoch as the wire carries it (saturating: a bundle is not claimed 2^31 times).
pub(crate) fn wire(epoch: u64) -> i32 {
    i32::try_from(epoch).unwrap_or(i32::MAX)
}

/// Checks the client's `current_leader_epoch` against the epoch `log` is served under.
pub(crate) fn check(log: &PartitionLog, current_leader_epoch: i32) -> Result<(), i16> {
    if current_leader_epoch < 0 {
        return Ok(());
    }
    let served = wire(log.leader_epoch());
    match current_leader_epoch.cmp(&served) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(ResponseError::FencedLeaderEpoch.code()),
        std::cmp::Ordering::Greater => Err(ResponseError::UnknownLeaderEpoch.code()),
    }
}

/// OffsetForLeaderEpoch's answer for `requested` (see the module docs): the requested epoch
/// and the log end offset while it is not newer than the served epoch, else undefined (-1, -1)
/// as Kafka answers an epoch it has not seen.
pub(crate) fn end_offset_for(log: &PartitionLog, requested: i32) -> (i32, i64) {
    let served = wire(log.leader_epoch());
    if requested < 0 || requested > served {
        return (-1, -1);
    }
    (requested, log.end_index() as i64)
}
