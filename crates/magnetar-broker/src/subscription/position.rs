//! The one rule between a client's position `(ledger id, entry id, batch index)` (Pulsar
//! clients send it in their protocol, the admin API in JSON) and a partition's message index.
//! The front ends keep the wire shapes and call this.
//!
//! - The ledger id is always [`LEDGER_ID`]: a partition's message index is continuous over all
//!   its segments, so no segment number is needed to order or find a message.
//! - The entry id is the **first message index of the entry** (one entry = one producer batch);
//!   entry ids increase but are not contiguous.
//! - The batch index is the position inside the entry, so `entry id + batch index` is the
//!   message index.
//! - Earliest is `(-1, -1)` (any negative ledger or entry id; on the wire as u64: all ones) and
//!   latest is `(i64::MAX, i64::MAX)` (or any ledger id this broker never hands out).

use magnetar_storage::CursorStart;

/// The ledger id of every position this broker hands out.
pub const LEDGER_ID: u64 = 0;

/// Where a client's position points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Earliest,
    Latest,
    /// An entry (its first message index) and, when given, a message inside it.
    Message {
        entry_index: u64,
        batch_index: Option<u32>,
    },
}

impl Position {
    /// Reads a position given as the raw 64-bit ledger and entry ids (a negative id as its two's
    /// complement) and an optional batch index (negative: none).
    pub fn of(ledger_id: u64, entry_id: u64, batch_index: Option<i32>) -> Self {
        let ledger = ledger_id as i64;
        let entry = entry_id as i64;
        if ledger < 0 || entry < 0 {
            return Position::Earliest;
        }
        if ledger == i64::MAX || entry == i64::MAX || ledger_id > LEDGER_ID {
            return Position::Latest;
        }
        Position::Message {
            entry_index: entry_id,
            batch_index: batch_index.and_then(|b| u32::try_from(b).ok()),
        }
    }

    /// The message index this position names: the entry's first index plus the batch index.
    pub fn message_index(&self) -> Option<u64> {
        match self {
            Position::Message {
                entry_index,
                batch_index,
            } => Some(entry_index.saturating_add(u64::from(batch_index.unwrap_or(0)))),
            _ => None,
        }
    }

    /// Where a cursor starts for this position: at the message it names, or just after it when
    /// `excluded`.
    pub fn cursor_start(&self, excluded: bool) -> CursorStart {
        match self.message_index() {
            Some(index) => CursorStart::Index(index.saturating_add(u64::from(excluded))),
            None if *self == Position::Earliest => CursorStart::Earliest,
            None => CursorStart::Latest,
        }
    }

    /// Where a cursor starts at the **entry** of this position (a reader's start or a seek: the
    /// client itself drops the messages of the batch before, or at, the batch index it named).
    pub fn entry_start(&self) -> CursorStart {
        match self {
            Position::Earliest => CursorStart::Earliest,
            Position::Latest => CursorStart::Latest,
            Position::Message { entry_index, .. } => CursorStart::Index(*entry_index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_positions() {
        assert_eq!(Position::of(u64::MAX, u64::MAX, None), Position::Earliest);
        assert_eq!(Position::of(0, u64::MAX, None), Position::Earliest);
        let max = i64::MAX as u64;
        assert_eq!(Position::of(max, max, None), Position::Latest);
        assert_eq!(Position::of(7, 3, None), Position::Latest);
        assert_eq!(Position::Earliest.cursor_start(true), CursorStart::Earliest);
        assert_eq!(Position::Latest.entry_start(), CursorStart::Latest);
    }

    #[test]
    fn message_index_is_entry_plus_batch() {
        let p = Position::of(0, 40, Some(3));
        assert_eq!(
            p,
            Position::Message {
                entry_index: 40,
                batch_index: Some(3)
            }
        );
        assert_eq!(p.message_index(), Some(43));
        assert_eq!(p.cursor_start(false), CursorStart::Index(43));
        assert_eq!(p.cursor_start(true), CursorStart::Index(44));
        assert_eq!(p.entry_start(), CursorStart::Index(40));
        let whole = Position::of(0, 10, Some(-1));
        assert_eq!(whole.message_index(), Some(10));
        assert_eq!(whole.cursor_start(false), CursorStart::Index(10));
    }
}
