//! The MessageId mapping: Pulsar's `(ledgerId, entryId, batchIndex)` over Magnetar's continuous
//! message index. "MessageId" is a Pulsar word and stays in this crate.
//!
//! - `ledgerId` is [`LEDGER_ID`], a constant: a partition's message index is continuous over all
//!   its segments, so no segment number is needed to order or find a message.
//! - `entryId` is the **first message index of the entry** (one entry = one producer batch).
//!   Entry ids are therefore increasing but not contiguous (an entry of 10 messages is followed
//!   by the entry `entryId + 10`), which Pulsar clients never assume.
//! - `batchIndex` is the position inside the entry, so message `entryId + batchIndex` is the
//!   message index, which is also the Kafka offset of that message.
//! - `partition` is the partition number of a partitioned topic, `-1` otherwise.
//!
//! Pulsar's special ids: `earliest` is `(-1, -1)` (as u64: all ones) and `latest` is
//! `(i64::MAX, i64::MAX)`; both are recognised by [`StartPosition::of`].

use crate::proto::MessageIdData;

/// The ledger id of every message id this broker hands out.
pub const LEDGER_ID: u64 = 0;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    Earliest,
    Latest,
    /// An entry (its first message index) and, for batch message ids, a position inside it.
    Message {
        entry_index: u64,
        batch_index: Option<u32>,
    },
}

impl StartPosition {
    pub fn of(id: &MessageIdData) -> Self {
        let ledger = id.ledger_id as i64;
        let entry = id.entry_id as i64;
        if ledger < 0 || entry < 0 {
            return StartPosition::Earliest;
        }
        if ledger == i64::MAX || entry == i64::MAX || id.ledger_id > LEDGER_ID {
            return StartPosition::Latest;
        }
        let batch_index = id.batch_index.filter(|b| *b >= 0).map(|b| b as u32);
        StartPosition::Message {
            entry_index: id.entry_id,
            batch_index,
        }
    }
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
        assert_eq!(StartPosition::of(&earliest), StartPosition::Earliest);
        let latest = MessageIdData {
            ledger_id: i64::MAX as u64,
            entry_id: i64::MAX as u64,
            ..Default::default()
        };
        assert_eq!(StartPosition::of(&latest), StartPosition::Latest);
        let id = message_id(2, 40, Some(3));
        assert_eq!(
            StartPosition::of(&id),
            StartPosition::Message {
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
