//! The Kafka group coordinator: consumer groups and their committed offsets.
//!
//! Owns: the group coordinator's logic in Kafka's own terms (groups, members, generations,
//! protocols, assignments as opaque bytes chosen by the leader, committed offsets) as a pure
//! state machine ([`GroupStateMachine`]) whose handlers return a response, the records to append
//! and the parked requests they complete, with [`GroupStateMachine::replay`] applying records both
//! while serving and when loading; Kafka's own record schemas of `__consumer_offsets`
//! ([`record`], hand-written) wrapped as Kafka record batches ([`batch`]); and the async runtime
//! ([`GroupCoordinator`]) that persists the records in the internal partitioned topic
//! `persistent://public/__kafka/__consumer_offsets`, loads each partition by replay, fires
//! deadlines with a timer, and compacts by snapshot.
//!
//! Must not depend on: `kafka-protocol` or any other wire crate, nor the front ends. Requests and
//! responses are the plain structs of [`api`]; errors are [`CoordinatorError`], which the Kafka
//! front end maps to error codes in one exhaustive `match`. Storage is reached through
//! magnetar-broker (`Broker`, `PartitionLog`) only.
//!
//! Main types: [`GroupCoordinator`] (async API: join, sync, heartbeat, leave, commit, fetch,
//! describe, list, delete groups, delete offsets, views and lag for the admin API),
//! [`GroupStateMachine`] (one offsets partition), [`CoordinatorConfig`], [`CoordinatorError`],
//! [`GroupState`], [`CoordinatorRecord`], and [`partition_for_group`] (Kafka's placement of a
//! group on an offsets partition).

pub mod api;
pub mod batch;
pub mod config;
pub mod error;
pub mod group;
pub mod machine;
pub mod record;
pub mod runtime;
pub mod txn;

pub use api::*;
pub use config::CoordinatorConfig;
pub use error::CoordinatorError;
pub use group::{CommittedOffset, GroupState};
pub use machine::{Completion, GroupStateMachine, JoinOutcome, Output, SyncOutcome};
pub use record::{CoordinatorRecord, DecodedRecord};
pub use runtime::{CompactionStats, GroupCoordinator, LoadStats, OFFSETS_TOPIC};
pub use txn::{
    PendingOffset, TransactionCoordinator, TxnMetadata, TxnStatus, TRANSACTION_STATE_TOPIC,
};

/// Java's `String.hashCode` over UTF-16 code units, as Kafka computes it.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The partition of `__consumer_offsets` holding `group_id`: Kafka's
/// `Utils.abs(groupId.hashCode()) % partitions` (with `Utils.abs(i32::MIN) = 0`), so Kafka tools
/// and Magnetar agree on where a group lives.
pub fn partition_for_group(group_id: &str, partitions: u32) -> u32 {
    let hash = java_string_hash(group_id);
    let abs = if hash == i32::MIN {
        0
    } else {
        hash.unsigned_abs()
    };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_known_values() {
        // Values of "x".hashCode() in Java.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        // Overflows wrap like Java ints; "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for_group("polygenelubricants", 50), 0);
        // Non-BMP characters count as two UTF-16 units.
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn partition_is_abs_hash_modulo_count() {
        assert_eq!(partition_for_group("my-group", 50), 12);
        let negative = "console-consumer-12345";
        let h = java_string_hash(negative);
        assert_eq!(partition_for_group(negative, 50), h.unsigned_abs() % 50);
        assert_eq!(partition_for_group("anything", 1), 0);
    }
}
