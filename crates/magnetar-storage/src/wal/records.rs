//! What the shared WAL keeps in the metadata store, and where.
//!
//! Keys, under the writer's root:
//! - `<root>/<ledger>/epoch`: [`EpochRecord`], bumped by every new writer (the fence).
//! - `<root>/<ledger>/ranges/<first index, 20 digits>`: [`RangeRecord`], one per committed
//!   chunk not yet sealed; zero-padded so the listing order is the index order.
//! - `<root>/<ledger>/segments/<first index, 20 digits>`: [`SegmentRecord`], one per sealed
//!   segment object.
//! - `<root>/_wal/<writer>/<seq>/<ledger, %-encoded>`: empty; one per unsealed chunk of WAL
//!   object `wal/<writer>/<seq>.wal`, created with its range record and deleted when the chunk
//!   is sealed. An object with none left (and older than the grace period) is garbage.
//! - `<root>/<ledger>/start`: [`StartRecord`], the logical start (retention, truncation);
//!   absent until the start first moves.
//! - `<root>/<ledger>/cursors/<cursor name, %-encoded>`: [`CursorRecord`], one per cursor.
//! - `<root>/<ledger>/snapshots/<index, 20 digits>`: [`SnapshotRecord`], one per stored
//!   producer-state snapshot.
//! - `<root>/<ledger>/compaction`: [`CompactionRecord`], how far log compaction got; absent
//!   until a compaction first swaps segments in.
//!
//! Every write under `<root>/<ledger>` other than the epoch compares the epoch key at the
//! version its writer holds, in the same transaction.
//!
//! Objects: `wal/<writer>/<seq, 20 digits>.wal` (chunks of many ledgers),
//! `segments/<ledger>/<first>-<end>.e<epoch>.seg` (one ledger's entries, the same bytes as a
//! local segment file: entries back to back), `segments/<ledger>/<first>-<end>.e<epoch>.c<seq>.seg`
//! (a segment rewritten by log compaction: the same format, with gaps between indexes) and
//! `snapshots/<ledger>/<index>.e<epoch>-<crc32c, 8 hex>.snap` (a snapshot blob).
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

/// A sealed segment: one object holding a run of a ledger's former chunks back to back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRecord {
    pub format: u32,
    pub object: String,
    pub len: u64,
    pub first_index: u64,
    pub end_index: u64,
    pub epoch: u64,
    pub max_timestamp_ms: i64,
    /// Publish time of the segment's last entry (retention by time); absent in records written
    /// before it was kept, then read from the last chunk's headers when needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_publish_ms: Option<i64>,
    /// Where each former chunk starts: its first index, byte offset and entry count (the
    /// segment's sparse index).
    pub chunks: Vec<ChunkPoint>,
    /// Rewritten by log compaction: its entries may have gaps between their indexes (a chunk
    /// still covers its whole index range, possibly with fewer entries or none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compacted: bool,
}

/// One former chunk inside a [`SegmentRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPoint {
    pub first_index: u64,
    pub offset: u64,
    pub entries: u32,
    /// Largest event timestamp in the chunk (time lookups read only the chunk that matters);
    /// absent in records written before it was kept, then the segment's is the bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_timestamp_ms: Option<i64>,
}

impl HasFormat for SegmentRecord {
    fn format(&self) -> u32 {
        self.format
    }
}

impl SegmentRecord {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        object: &str,
        len: u64,
        first_index: u64,
        end_index: u64,
        epoch: u64,
        max_timestamp_ms: i64,
        last_publish_ms: Option<i64>,
        chunks: Vec<ChunkPoint>,
    ) -> Self {
        SegmentRecord {
            format: FORMAT_VERSION,
            object: object.to_string(),
            len,
            first_index,
            end_index,
            epoch,
            max_timestamp_ms,
            last_publish_ms,
            chunks,
            compacted: false,
        }
    }
}

/// How far log compaction got on a ledger: every index below `cleaned_through` is compacted
/// (the local ledger's checkpoint file). Written by the transaction that swaps the compacted
/// segments in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionRecord {
    pub format: u32,
    pub cleaned_through: u64,
}

impl CompactionRecord {
    pub fn new(cleaned_through: u64) -> Self {
        CompactionRecord {
            format: FORMAT_VERSION,
            cleaned_through,
        }
    }
}

impl HasFormat for CompactionRecord {
    fn format(&self) -> u32 {
        self.format
    }
}

/// `<root>/<ledger>/compaction`.
pub(crate) fn compaction_key(root: &str, ledger: &str) -> String {
    format!("{root}/{ledger}/compaction")
}

/// The logical start of a ledger: reads below it are refused; sealed segments wholly below it
/// are deleted with the transaction that moves it (or by a later retention pass).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRecord {
    pub format: u32,
    pub start_index: u64,
}

impl StartRecord {
    pub fn new(start_index: u64) -> Self {
        StartRecord {
            format: FORMAT_VERSION,
            start_index,
        }
    }
}

impl HasFormat for StartRecord {
    fn format(&self) -> u32 {
        self.format
    }
}

/// One cursor (subscription) of a ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorRecord {
    pub format: u32,
    /// The cursor's name (the key holds it %-encoded).
    pub name: String,
    pub state: crate::CursorState,
}

impl CursorRecord {
    pub fn new(name: &str, state: crate::CursorState) -> Self {
        CursorRecord {
            format: FORMAT_VERSION,
            name: name.to_string(),
            state,
        }
    }
}

impl HasFormat for CursorRecord {
    fn format(&self) -> u32 {
        self.format
    }
}

/// One stored snapshot blob of a ledger (the broker's producer state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub format: u32,
    /// The snapshot covers every entry below this index.
    pub index: u64,
    pub object: String,
    pub len: u64,
    pub crc32c: u32,
    pub epoch: u64,
}

impl SnapshotRecord {
    pub fn new(index: u64, object: &str, len: u64, crc32c: u32, epoch: u64) -> Self {
        SnapshotRecord {
            format: FORMAT_VERSION,
            index,
            object: object.to_string(),
            len,
            crc32c,
            epoch,
        }
    }
}

impl HasFormat for SnapshotRecord {
    fn format(&self) -> u32 {
        self.format
    }
}

/// `<root>/<ledger>/segments`.
pub(crate) fn segments_path(root: &str, ledger: &str) -> String {
    format!("{root}/{ledger}/segments")
}

/// `<root>/<ledger>/segments/<first index>`.
pub(crate) fn segment_key(root: &str, ledger: &str, first_index: u64) -> String {
    format!("{root}/{ledger}/segments/{first_index:020}")
}

/// A ledger name as one key segment (`%` and `/` escaped).
fn encode_ledger(ledger: &str) -> String {
    ledger.replace('%', "%25").replace('/', "%2F")
}

/// `wal/<writer>/<seq>.wal`.
pub(crate) fn wal_object(writer: &str, seq: u64) -> String {
    format!("wal/{writer}/{seq:020}.wal")
}

/// The writer and sequence number of a WAL object path.
pub(crate) fn parse_wal_object(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("wal/")?;
    let (writer, file) = rest.split_once('/')?;
    let seq = file.strip_suffix(".wal")?;
    (!writer.is_empty() && !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()))
        .then_some((writer, seq))
}

/// `<root>/_wal/<writer>/<seq>`: the references to one WAL object.
pub(crate) fn wal_refs_path(root: &str, writer: &str, seq: &str) -> String {
    format!("{root}/_wal/{writer}/{seq}")
}

/// The reference a ledger's unsealed chunk holds on its WAL object (`object` as made by
/// [`wal_object`]).
pub(crate) fn wal_ref_key(root: &str, object: &str, ledger: &str) -> Option<String> {
    let (writer, seq) = parse_wal_object(object)?;
    Some(format!(
        "{}/{}",
        wal_refs_path(root, writer, seq),
        encode_ledger(ledger)
    ))
}

/// `segments/<ledger>/<first>-<end>.e<epoch>.seg`.
pub(crate) fn segment_object(ledger: &str, first: u64, end: u64, epoch: u64) -> String {
    format!("segments/{ledger}/{first:020}-{end:020}.e{epoch}.seg")
}

/// `segments/<ledger>/<first>-<end>.e<epoch>.c<seq>.seg`: a segment rewritten by log
/// compaction. `seq` counts the compaction passes of the writer at `epoch` (an epoch has one
/// writer, and every pass takes a new number), so the name never meets other bytes, whatever
/// earlier passes uploaded and did not record.
pub(crate) fn compacted_segment_object(
    ledger: &str,
    first: u64,
    end: u64,
    epoch: u64,
    seq: u64,
) -> String {
    format!("segments/{ledger}/{first:020}-{end:020}.e{epoch}.c{seq}.seg")
}

/// The ledger and first index of a segment object path (sealed or compacted).
pub(crate) fn parse_segment_object(path: &str) -> Option<(&str, u64)> {
    let rest = path.strip_prefix("segments/")?;
    let (ledger, file) = rest.rsplit_once('/')?;
    let (first, _) = file.split_once('-')?;
    let first = first.parse().ok()?;
    (!ledger.is_empty() && file.ends_with(".seg")).then_some((ledger, first))
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

/// `<root>/<ledger>/start`.
pub(crate) fn start_key(root: &str, ledger: &str) -> String {
    format!("{root}/{ledger}/start")
}

/// `<root>/<ledger>/cursors`.
pub(crate) fn cursors_path(root: &str, ledger: &str) -> String {
    format!("{root}/{ledger}/cursors")
}

/// `<root>/<ledger>/cursors/<name>`, the name %-encoded: every byte but ASCII letters,
/// digits, `-` and `_` becomes `%XX`, so any name is one valid key segment (never `.`).
pub(crate) fn cursor_key(root: &str, ledger: &str, name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{}/{encoded}", cursors_path(root, ledger))
}

/// `<root>/<ledger>/snapshots`.
pub(crate) fn snapshots_path(root: &str, ledger: &str) -> String {
    format!("{root}/{ledger}/snapshots")
}

/// `<root>/<ledger>/snapshots/<index>`.
pub(crate) fn snapshot_key(root: &str, ledger: &str, index: u64) -> String {
    format!("{root}/{ledger}/snapshots/{index:020}")
}

/// `snapshots/<ledger>/<index>.e<epoch>-<crc>.snap`: named with the epoch and the blob's CRC,
/// so a create-only PUT never meets other bytes under its name.
pub(crate) fn snapshot_object(ledger: &str, index: u64, epoch: u64, crc: u32) -> String {
    format!("snapshots/{ledger}/{index:020}.e{epoch}-{crc:08x}.snap")
}

/// The ledger and index of a snapshot object path.
pub(crate) fn parse_snapshot_object(path: &str) -> Option<(&str, u64)> {
    let rest = path.strip_prefix("snapshots/")?;
    let (ledger, file) = rest.rsplit_once('/')?;
    let (index, _) = file.split_once('.')?;
    let index = index.parse().ok()?;
    (!ledger.is_empty() && file.ends_with(".snap")).then_some((ledger, index))
}
