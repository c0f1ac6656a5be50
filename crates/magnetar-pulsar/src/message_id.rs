//! MessageId on the wire: Pulsar's `MessageIdData` over the broker's one rule between a
//! position `(ledgerId, entryId, batchIndex)` and a message index
//! (`magnetar_broker::subscription::position`: ledger id 0, entry id = the entry's first message
//! index, batch index = position in the entry, so `entryId + batchIndex` is the message index,
//! which is also the Kafka offset; `(-1, -1)` is earliest, `(i64::MAX, i64::MAX)` latest).
//! "MessageId" is a Pulsar word and stays in this crate; `partition` is the partition number of
//! a partitioned topic, `-1` otherwise.

pub use magnetar_broker::subscription::position::LEDGER_ID;
use magnetar_broker::Position;

use crate::proto::MessageIdData;

/// A message id for entry `entry_index` (its first message index), message `batch_index`.
pub fn message_id(partition: i32, entry_index: u64, batch_index: Option<i32>) -> MessageIdData {
    MessageIdData {
        ledger_id: LEDGER_ID,
        entry_id: entry_index,
        partition: Some(partition),
        batch_index,
        ..Default::default()
    }
}

/// Where a client-supplied message id points.
pub fn position(id: &MessageIdData) -> Position {
    Position::of(id.ledger_id, id.entry_id, id.batch_index)
}

/// The message indexes a batch-index ack set leaves unacknowledged... inverted: Pulsar's
/// `ack_set` is a bitset of the batch where a **set** bit means "not acknowledged yet".
/// Returns the batch positions that are acknowledged.
pub fn acked_positions(ack_set: &[i64], batch_size: u32) -> Vec<u32> {
    (0..batch_size)
        .filter(|i| {
            let word = (*i / 64) as usize;
            let bit = i % 64;
            match ack_set.get(word) {
                Some(w) => (*w as u64) & (1u64 << bit) == 0,
                None => false,
            }
        })
        .collect()
}

/// The `ack_set` to send with a partly acknowledged entry: set bits are still to be delivered.
pub fn unacked_set(batch_size: u32, is_acked: impl Fn(u32) -> bool) -> Vec<i64> {
    let words = batch_size.div_ceil(64) as usize;
    let mut set = vec![0u64; words];
    for i in 0..batch_size {
        if !is_acked(i) {
            set[(i / 64) as usize] |= 1u64 << (i % 64);
        }
    }
    set.into_iter().map(|w| w as i64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_ids() {
        let earliest = MessageIdData {
            ledger_id: u64::MAX,
            entry_id: u64::MAX,
            ..Default::default()
        };
        assert_eq!(position(&earliest), Position::Earliest);
        let latest = MessageIdData {
            ledger_id: i64::MAX as u64,
            entry_id: i64::MAX as u64,
            ..Default::default()
        };
        assert_eq!(position(&latest), Position::Latest);
        let id = message_id(2, 40, Some(3));
        assert_eq!(
            position(&id),
            Position::Message {
                entry_index: 40,
                batch_index: Some(3)
            }
        );
    }

    #[test]
    fn ack_sets_round_trip() {
        let acked = |i: u32| i.is_multiple_of(3);
        let set = unacked_set(70, acked);
        let positions = acked_positions(&set, 70);
        assert_eq!(positions, (0..70).filter(|i| acked(*i)).collect::<Vec<_>>());
    }
}
