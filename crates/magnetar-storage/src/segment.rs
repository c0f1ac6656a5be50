//! In-memory view of one segment and the blocking scan over its entries.

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;

use crate::entry::{crc_matches, decode_header, EntryHeader, ENTRY_HEADER_LEN};
use crate::index::{IndexPoint, SparseIndex};
use crate::segment_store::SegmentFile;
use crate::StorageError;

/// Bytes read per I/O call while scanning (recovery, header scans, large reads).
pub(crate) const SCAN_CHUNK_BYTES: u64 = 1 << 20;
/// The smallest chunk of a read sized to what its caller asked for.
pub(crate) const READ_CHUNK_BYTES_MIN: u64 = 64 << 10;

/// What the ledger knows about one segment.
#[derive(Clone)]
pub(crate) struct SegmentInfo {
    pub base_index: u64,
    pub file: Arc<dyn SegmentFile>,
    /// Readable bytes: entries at or beyond this are not visible to readers.
    pub bytes: u64,
    /// Index after the last entry.
    pub end_index: u64,
    pub entries: u64,
    /// File offset of the last entry (meaningful once `entries > 0`).
    pub last_entry_offset: u64,
    pub index: SparseIndex,
    pub first_publish_ms: Option<i64>,
    pub last_publish_ms: Option<i64>,
    /// Where a sealed segment stopped decoding on open; reads reaching it fail.
    pub corrupt_at: Option<u64>,
    /// Rewritten by log compaction: its entries may leave gaps in the index (before, between
    /// and after them; `end_index` is then the next segment's base, not the last entry's end).
    pub compacted: bool,
}

impl SegmentInfo {
    pub(crate) fn new(
        base_index: u64,
        file: Arc<dyn SegmentFile>,
        index_interval_bytes: u32,
    ) -> Self {
        SegmentInfo {
            base_index,
            file,
            bytes: 0,
            end_index: base_index,
            entries: 0,
            last_entry_offset: 0,
            index: SparseIndex::new(index_interval_bytes),
            first_publish_ms: None,
            last_publish_ms: None,
            corrupt_at: None,
            compacted: false,
        }
    }

    /// Records an entry written at `file_offset`; entries must come in order.
    pub(crate) fn on_append(&mut self, header: &EntryHeader, file_offset: u64) {
        let len = header.encoded_len();
        self.index.on_append(
            header.first_index,
            file_offset,
            len,
            header.max_timestamp_ms,
        );
        self.bytes = file_offset + len;
        self.end_index = header.end_index();
        self.entries += 1;
        self.last_entry_offset = file_offset;
        self.first_publish_ms.get_or_insert(header.publish_time_ms);
        self.last_publish_ms = Some(header.publish_time_ms);
    }

    /// Where to start scanning for `index`.
    pub(crate) fn start_point(&self, index: u64) -> IndexPoint {
        self.index.lookup_index(index).unwrap_or(IndexPoint {
            first_index: self.base_index,
            file_offset: 0,
            max_timestamp_before_ms: i64::MIN,
        })
    }
}

/// Reads a segment in large chunks so a scan costs few system calls.
struct ChunkReader<'a> {
    file: &'a dyn SegmentFile,
    limit: u64,
    /// Bytes read per I/O call (more when one entry is larger).
    chunk_bytes: u64,
    buf: Bytes,
    buf_start: u64,
}

impl ChunkReader<'_> {
    /// `len` bytes at `pos`, or `None` if they extend beyond the limit.
    fn get(&mut self, pos: u64, len: u64) -> Result<Option<Bytes>, StorageError> {
        if pos.checked_add(len).is_none_or(|end| end > self.limit) {
            return Ok(None);
        }
        let buf_end = self.buf_start + self.buf.len() as u64;
        if pos < self.buf_start || pos + len > buf_end {
            let size = len.max(self.chunk_bytes).min(self.limit - pos);
            let size = usize::try_from(size).map_err(|_| StorageError::InvalidEntry {
                reason: "read size overflows usize".to_string(),
            })?;
            self.buf = Bytes::from(self.file.read_vec_at(pos, size)?);
            self.buf_start = pos;
        }
        let at = (pos - self.buf_start) as usize;
        Ok(Some(self.buf.slice(at..at + len as usize)))
    }
}

/// How a scan ended.
pub(crate) struct ScanEnd {
    /// File offset after the last entry accepted.
    pub pos: u64,
    /// Index after the last entry accepted.
    pub next_index: u64,
    /// Why the scan stopped before `limit`, if it hit bad data.
    pub bad: Option<String>,
    /// The visitor asked to stop.
    pub stopped: bool,
}

/// Visits entries from `start` up to `limit`, checking that each decodes, that indexes are
/// continuous from `start.first_index` (only increasing when `gaps`: a compacted segment) and, if `verify_crc`, that the CRC matches (the
/// read-side half of the paired invariants). The visitor gets the payload when
/// `verify_crc` is set. I/O failures are errors; bad data ends the scan with `bad`.
pub(crate) fn scan_entries(
    file: &dyn SegmentFile,
    start: IndexPoint,
    limit: u64,
    verify_crc: bool,
    gaps: bool,
    visit: impl FnMut(&EntryHeader, u64, Option<Bytes>) -> ControlFlow<()>,
) -> Result<ScanEnd, StorageError> {
    scan_entries_from(
        file,
        start,
        limit,
        verify_crc,
        gaps,
        0,
        SCAN_CHUNK_BYTES,
        visit,
    )
}

/// [`scan_entries`] for a read from index `from`: the entries that end at or before it are
/// passed by their headers alone (their payloads are neither read nor CRC-checked, and they are
/// not visited), so a reader positioned after a corrupt entry is not stopped by it. Reads from the
/// file `chunk_bytes` at a time (a consumer asking for 16 KiB does not cause 1 MiB reads).
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_entries_from(
    file: &dyn SegmentFile,
    start: IndexPoint,
    limit: u64,
    verify_crc: bool,
    gaps: bool,
    from: u64,
    chunk_bytes: u64,
    mut visit: impl FnMut(&EntryHeader, u64, Option<Bytes>) -> ControlFlow<()>,
) -> Result<ScanEnd, StorageError> {
    let mut reader = ChunkReader {
        file,
        limit,
        chunk_bytes: chunk_bytes.max(ENTRY_HEADER_LEN as u64),
        buf: Bytes::new(),
        buf_start: 0,
    };
    let mut pos = start.file_offset;
    let mut expected = start.first_index;
    let end = |pos, next_index, bad: Option<String>, stopped| ScanEnd {
        pos,
        next_index,
        bad,
        stopped,
    };
    while pos < limit {
        let Some(hbytes) = reader.get(pos, ENTRY_HEADER_LEN as u64)? else {
            return Ok(end(
                pos,
                expected,
                Some(format!("truncated header: {} bytes left", limit - pos)),
                false,
            ));
        };
        let (header, crc) = match decode_header(&hbytes) {
            Ok(h) => h,
            Err(reason) => return Ok(end(pos, expected, Some(reason), false)),
        };
        if header.first_index < expected || (header.first_index > expected && !gaps) {
            let reason = format!(
                "index order broken: expected {expected}, found {}",
                header.first_index
            );
            return Ok(end(pos, expected, Some(reason), false));
        }
        if header.end_index() <= from {
            if pos + header.encoded_len() > limit {
                let reason = format!("truncated payload: {} bytes declared", header.payload_len);
                return Ok(end(pos, expected, Some(reason), false));
            }
            pos += header.encoded_len();
            expected = header.end_index();
            continue;
        }
        let payload = if verify_crc {
            let Some(p) =
                reader.get(pos + ENTRY_HEADER_LEN as u64, u64::from(header.payload_len))?
            else {
                let reason = format!("truncated payload: {} bytes declared", header.payload_len);
                return Ok(end(pos, expected, Some(reason), false));
            };
            if !crc_matches(&hbytes, &p, crc) {
                return Ok(end(pos, expected, Some("crc mismatch".to_string()), false));
            }
            Some(p)
        } else {
            if pos + header.encoded_len() > limit {
                let reason = format!("truncated payload: {} bytes declared", header.payload_len);
                return Ok(end(pos, expected, Some(reason), false));
            }
            None
        };
        let flow = visit(&header, pos, payload);
        pos += header.encoded_len();
        expected = header.end_index();
        if flow.is_break() {
            return Ok(end(pos, expected, None, true));
        }
    }
    Ok(end(pos, expected, None, false))
}
