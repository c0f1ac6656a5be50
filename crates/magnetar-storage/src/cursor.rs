//! Durable named cursors: a mark-delete index plus individually acknowledged ranges above it.
//!
//! The state transitions are pure ([`CursorState`] methods); the ledger persists the whole
//! cursor book as JSON in `cursors.json` (write to a temp file, fsync, rename, fsync the
//! directory) after every change and restores it on open.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::range_set::RangeSet;
use crate::segment_store::sync_dir;
use crate::StorageError;

/// File holding all cursors of a ledger.
pub const CURSORS_FILE_NAME: &str = "cursors.json";
const CURSORS_FORMAT_VERSION: u32 = 1;

/// Where a new cursor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorStart {
    /// At the ledger's start index.
    Earliest,
    /// At the ledger's end index: only new entries.
    Latest,
    /// At a given index (clamped into the ledger's range).
    Index(u64),
}

/// A cursor's acknowledgement state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CursorState {
    /// Every index below this one is acknowledged.
    pub mark_delete_index: u64,
    /// Acknowledged indexes at or above `mark_delete_index`.
    pub acked: RangeSet,
}

impl CursorState {
    pub fn new(mark_delete_index: u64) -> Self {
        CursorState {
            mark_delete_index,
            acked: RangeSet::new(),
        }
    }

    /// Acknowledges `range`; the mark-delete index advances over contiguous acks.
    pub fn ack(&mut self, range: Range<u64>) {
        if range.end <= self.mark_delete_index {
            return;
        }
        self.acked
            .insert(range.start.max(self.mark_delete_index)..range.end);
        self.mark_delete_index = self.acked.advance_mark(self.mark_delete_index);
    }

    /// Acknowledges everything up to and including `index`.
    pub fn ack_cumulative(&mut self, index: u64) {
        if index >= self.mark_delete_index {
            self.mark_delete_index = self.acked.advance_mark(index + 1);
        }
    }

    /// Moves the cursor to `index`, forgetting individual acks.
    pub fn reset(&mut self, index: u64) {
        self.mark_delete_index = index;
        self.acked.clear();
    }

    pub fn is_acked(&self, index: u64) -> bool {
        index < self.mark_delete_index || self.acked.contains(index)
    }

    /// Unacknowledged messages in `[start, end)`.
    pub fn backlog(&self, start: u64, end: u64) -> u64 {
        let from = self.mark_delete_index.max(start);
        if from >= end {
            return 0;
        }
        end - from - self.acked.count_in(from..end)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CursorFile {
    version: u32,
    cursors: BTreeMap<String, CursorState>,
}

/// Loads the cursor book; a missing file is an empty book.
pub(crate) fn load_cursors(dir: &Path) -> Result<BTreeMap<String, CursorState>, StorageError> {
    let path = dir.join(CURSORS_FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(StorageError::io("read cursors", &path, e)),
    };
    let file: CursorFile =
        serde_json::from_slice(&bytes).map_err(|e| StorageError::CorruptMetadata {
            path: path.clone(),
            reason: format!("does not parse: {e}"),
        })?;
    if file.version != CURSORS_FORMAT_VERSION {
        return Err(StorageError::CorruptMetadata {
            path,
            reason: format!("unknown version {}", file.version),
        });
    }
    Ok(file.cursors)
}

/// Serializes the cursor book for [`atomic_write`].
pub(crate) fn encode_cursors(cursors: &BTreeMap<String, CursorState>) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        version: u32,
        cursors: &'a BTreeMap<String, CursorState>,
    }
    serde_json::to_vec(&Out {
        version: CURSORS_FORMAT_VERSION,
        cursors,
    })
    .unwrap_or_default()
}

/// Replaces `dir/name` atomically and durably.
pub fn atomic_write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    use std::io::Write;
    let tmp: PathBuf = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f =
        std::fs::File::create(&tmp).map_err(|e| StorageError::io("create temp file", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| StorageError::io("write temp file", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename temp file", &path, e))?;
    sync_dir(dir)
}

/// A cursor name both kinds of ledger accept: not empty.
pub(crate) fn check_name(name: &str) -> Result<(), crate::StorageError> {
    if name.is_empty() {
        return Err(crate::StorageError::CursorInvalid {
            name: name.to_string(),
            reason: "empty name".to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn individual_acks_advance_mark_delete() {
        let mut c = CursorState::new(10);
        c.ack(12..13);
        assert_eq!(c.mark_delete_index, 10);
        assert_eq!(c.backlog(0, 20), 9);
        c.ack(10..12);
        assert_eq!(c.mark_delete_index, 13);
        assert!(c.acked.is_empty());
        c.ack(5..8);
        assert_eq!(c.mark_delete_index, 13);
        c.ack(15..17);
        c.ack_cumulative(14);
        assert_eq!(c.mark_delete_index, 17);
        assert_eq!(c.backlog(0, 20), 3);
        assert!(c.is_acked(16) && !c.is_acked(17));
        c.reset(3);
        assert_eq!(c.backlog(5, 20), 15);
    }

    #[test]
    fn book_round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_cursors(dir.path()).unwrap().is_empty());
        let mut book = BTreeMap::new();
        let mut c = CursorState::new(4);
        c.ack(7..9);
        book.insert("sub".to_string(), c);
        atomic_write(dir.path(), CURSORS_FILE_NAME, &encode_cursors(&book)).unwrap();
        assert_eq!(load_cursors(dir.path()).unwrap(), book);
        std::fs::write(dir.path().join(CURSORS_FILE_NAME), b"{nope").unwrap();
        assert!(matches!(
            load_cursors(dir.path()),
            Err(StorageError::CorruptMetadata { .. })
        ));
    }
}
