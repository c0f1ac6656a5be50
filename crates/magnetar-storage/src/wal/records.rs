//! What the shared WAL keeps in the metadata store, and where.
//!
//! Keys, under the root and ledger name given by the caller:
//! - `<root>/<ledger>/epoch`: [`EpochRecord`], bumped by every new writer (the fence).
//! - `<root>/<ledger>/ranges/<first index, 20 digits>`: [`RangeRecord`], one per committed
//!   chunk; zero-padded so the listing order is the index order.
//!
//! Values are JSON with a format version, so a later layout is told apart and an unknown one is
//! an error, not a guess.

use serde::{Deserialize, Serialize};

use crate::StorageError;

const FORMAT_VERSION: u32 = 1;

/// The current writer of a ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub format: u32,
    /// 1 for the first writer, +1 per takeover.
    pub epoch: u64,
    /// The writer's name (for operators; the fence is the key's version).
    pub writer: String,
}

/// One committed chunk of a ledger inside a WAL object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRecord {
    pub format: u32,
    /// Object path, relative to the store's root.
    pub object: String,
    /// Byte offset of the chunk in the object.
    pub offset: u64,
    /// Byte length of the chunk.
    pub len: u64,
    /// First message index of the chunk.
    pub first_index: u64,
    /// The index after its last message.
    pub end_index: u64,
    /// Entries in the chunk.
    pub entries: u32,
    /// The epoch of the writer that committed it.
    pub epoch: u64,
    /// Largest event timestamp in the chunk (for time lookups without reading it).
    pub max_timestamp_ms: i64,
}

impl EpochRecord {
    pub fn new(epoch: u64, writer: &str) -> Self {
        EpochRecord {
            format: FORMAT_VERSION,
            epoch,
            writer: writer.to_string(),
        }
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> bytes::Bytes {
    // Serializing these plain structs cannot fail.
    bytes::Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

pub(crate) fn decode<T: for<'de> Deserialize<'de> + HasFormat>(
    key: &str,
    bytes: &[u8],
) -> Result<T, StorageError> {
    let value: T = serde_json::from_slice(bytes).map_err(|e| StorageError::Metadata {
        reason: format!("record at {key} does not parse: {e}"),
    })?;
    if value.format() != FORMAT_VERSION {
        return Err(StorageError::Metadata {
            reason: format!(
                "record at {key} has unknown format {} (this build knows {FORMAT_VERSION})",
                value.format()
            ),
        });
    }
    Ok(value)
}

pub(crate) trait HasFormat {
    fn format(&self) -> u32;
}

impl HasFormat for EpochRecord {
    fn format(&self) -> u32 {
        self.format
    }
}

impl HasFormat for RangeRecord {
    fn format(&self) -> u32 {
        self.format
    }
}

impl RangeRecord {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        object: &str,
        offset: u64,
        len: u64,
        first_index: u64,
        end_index: u64,
        entries: u32,
        epoch: u64,
        max_timestamp_ms: i64,
    ) -> Self {
        RangeRecord {
            format: FORMAT_VERSION,
            object: object.to_string(),
            offset,
            len,
            first_index,
            end_index,
            entries,
            epoch,
            max_timestamp_ms,
        }
    }
}

/// `<root>/<ledger>/epoch`.
pub(crate) fn epoch_key(root: &str, ledger: &str) -> String {
    format!("{root}/{ledger}/epoch")
}

/// `<root>/<ledger>/ranges`.
pub(crate) fn ranges_path(root: &str, ledger: &str) -> String {
    format!("{root}/{ledger}/ranges")
}

/// `<root>/<ledger>/ranges/<first index>`.
pub(crate) fn range_key(root: &str, ledger: &str, first_index: u64) -> String {
    format!("{root}/{ledger}/ranges/{first_index:020}")
}
