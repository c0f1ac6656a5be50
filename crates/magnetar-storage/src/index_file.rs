//! The persisted index of a sealed segment, so opening a ledger need not read its segments.
//!
//! Written once when a segment is sealed (rolled), as a self-contained file beside the segment
//! (`<base index, 20 digits>.idx`, through the [`crate::SegmentStore`] so a remote store keeps
//! it with its segment). It is never trusted blindly: on open it is checked against the segment
//! and rebuilt from the segment's headers when anything disagrees.
//!
//! Layout, all integers little-endian:
//!
//! | offset | size | field                                                       |
//! |-------:|-----:|-------------------------------------------------------------|
//! |      0 |    4 | magic `MGIX`                                                |
//! |      4 |    1 | format version, currently `1`                               |
//! |      5 |    3 | reserved, `0`                                               |
//! |      8 |    8 | segment base index                                          |
//! |     16 |    8 | segment length in bytes                                     |
//! |     24 |    8 | end index (after the segment's last message)                |
//! |     32 |    8 | entry count                                                 |
//! |     40 |    8 | file offset of the last entry                               |
//! |     48 |    4 | CRC32C of the last entry, as stored in its header           |
//! |     52 |    4 | index interval bytes the points were taken with             |
//! |     56 |    8 | bytes since the last point                                  |
//! |     64 |    8 | first publish time ms                                       |
//! |     72 |    8 | last publish time ms                                        |
//! |     80 |    8 | max timestamp ms                                            |
//! |     88 |    8 | first index of the first entry holding the max timestamp    |
//! |     96 |    8 | file offset of that entry                                   |
//! |    104 |    4 | point count `n`                                             |
//! |    108 | 24 n | points: first index u64, file offset u64, max ts before i64 |
//! |    end |    4 | CRC32C of every byte before it                              |
//!
//! Why these checks: the body CRC catches a damaged index file; the segment length catches a
//! segment that was cut or grew since; the last entry's header (one 54-byte read: it must
//! decode, end exactly at the segment's length and at the recorded end index, and carry the
//! recorded CRC, which covers the last entry's header and payload) ties the index to this
//! segment's content rather than to any file of the same length. Checking costs one small read
//! instead of a scan of the whole segment. Damage in the middle of a sealed segment is not
//! looked for on open (nor was it before: sealed segments were never CRC-checked on open);
//! every read verifies the CRC of what it returns.

use crate::entry::{decode_header, ENTRY_HEADER_LEN};
use crate::index::{IndexPoint, SparseIndex};
use crate::segment::SegmentInfo;
use crate::segment_store::SegmentFile;

/// First four bytes of an index file.
pub const INDEX_MAGIC: &[u8; 4] = b"MGIX";
/// Current index file format version.
pub const INDEX_VERSION: u8 = 1;
/// Suffix of index file names; the stem is the segment's base index, zero-padded to 20 digits.
pub const INDEX_SUFFIX: &str = ".idx";
const FIXED_LEN: usize = 108;
const POINT_LEN: usize = 24;
const CRC_LEN: usize = 4;

/// File name of the index of the segment whose first entry has `base_index`.
pub fn index_file_name(base_index: u64) -> String {
    format!("{base_index:020}{INDEX_SUFFIX}")
}

/// Encodes the index of sealed segment `seg`; reads its last entry's header for the CRC.
/// Returns why not when the segment cannot have a trustworthy index (empty or corrupt).
pub(crate) fn encode_index(seg: &SegmentInfo) -> Result<Vec<u8>, String> {
    if seg.entries == 0 {
        return Err("segment is empty".to_string());
    }
    if seg.corrupt_at.is_some() {
        return Err("segment is corrupt".to_string());
    }
    let (last_crc, _) = read_last_header(seg.file.as_ref(), seg.last_entry_offset)?;
    let idx = &seg.index;
    let points = idx.points();
    let mut out = Vec::with_capacity(FIXED_LEN + points.len() * POINT_LEN + CRC_LEN);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&[INDEX_VERSION, 0, 0, 0]);
    out.extend_from_slice(&seg.base_index.to_le_bytes());
    out.extend_from_slice(&seg.bytes.to_le_bytes());
    out.extend_from_slice(&seg.end_index.to_le_bytes());
    out.extend_from_slice(&seg.entries.to_le_bytes());
    out.extend_from_slice(&seg.last_entry_offset.to_le_bytes());
    out.extend_from_slice(&last_crc.to_le_bytes());
    let interval = u32::try_from(idx.interval_bytes()).unwrap_or(u32::MAX);
    out.extend_from_slice(&interval.to_le_bytes());
    out.extend_from_slice(&idx.bytes_since_point().to_le_bytes());
    out.extend_from_slice(&seg.first_publish_ms.unwrap_or(i64::MIN).to_le_bytes());
    out.extend_from_slice(&seg.last_publish_ms.unwrap_or(i64::MIN).to_le_bytes());
    let (ts_index, ts_offset) = idx.max_timestamp_entry().unwrap_or((u64::MAX, u64::MAX));
    out.extend_from_slice(&idx.max_timestamp_ms().unwrap_or(i64::MIN).to_le_bytes());
    out.extend_from_slice(&ts_index.to_le_bytes());
    out.extend_from_slice(&ts_offset.to_le_bytes());
    let n = u32::try_from(points.len()).map_err(|_| "too many index points".to_string())?;
    out.extend_from_slice(&n.to_le_bytes());
    for p in points {
        out.extend_from_slice(&p.first_index.to_le_bytes());
        out.extend_from_slice(&p.file_offset.to_le_bytes());
        out.extend_from_slice(&p.max_timestamp_before_ms.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes `bytes` as the index of the segment `base_index` in `file` and checks it against the
/// segment (see the module docs). `Err` carries the reason, for the rebuild log line.
pub(crate) fn load_index(
    bytes: &[u8],
    base_index: u64,
    file: &std::sync::Arc<dyn SegmentFile>,
    index_interval_bytes: u32,
    compacted: bool,
) -> Result<SegmentInfo, String> {
    load_index_of(
        bytes,
        base_index,
        file,
        index_interval_bytes,
        compacted,
        false,
    )
}

/// [`load_index`] of a recovery checkpoint of the active segment: the index may cover only a
/// prefix of the segment (what was fsynced when it was written); the segment must be at least
/// that long and its entry at the recorded last offset must still carry the recorded CRC. The
/// returned info covers that prefix; the caller scans the rest.
pub(crate) fn load_prefix_index(
    bytes: &[u8],
    base_index: u64,
    file: &std::sync::Arc<dyn SegmentFile>,
    index_interval_bytes: u32,
) -> Result<SegmentInfo, String> {
    load_index_of(bytes, base_index, file, index_interval_bytes, false, true)
}

fn load_index_of(
    bytes: &[u8],
    base_index: u64,
    file: &std::sync::Arc<dyn SegmentFile>,
    index_interval_bytes: u32,
    compacted: bool,
    prefix: bool,
) -> Result<SegmentInfo, String> {
    if bytes.len() < FIXED_LEN + CRC_LEN {
        return Err(format!("truncated: {} bytes", bytes.len()));
    }
    if &bytes[..4] != INDEX_MAGIC {
        return Err("bad magic".to_string());
    }
    if bytes[4] != INDEX_VERSION {
        return Err(format!(
            "unsupported format version {} (expected {INDEX_VERSION})",
            bytes[4]
        ));
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let u32_at = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&bytes[at..at + 4]);
        u32::from_le_bytes(b)
    };
    let i64_at = |at: usize| u64_at(at) as i64;
    let n = u32_at(104) as usize;
    let expected_len = n
        .checked_mul(POINT_LEN)
        .and_then(|p| p.checked_add(FIXED_LEN + CRC_LEN));
    if expected_len != Some(bytes.len()) {
        return Err(format!("truncated: {} bytes for {n} points", bytes.len()));
    }
    let body_end = bytes.len() - CRC_LEN;
    if crc32c::crc32c(&bytes[..body_end]) != u32_at(body_end) {
        return Err("crc mismatch".to_string());
    }
    if bytes[5..8] != [0, 0, 0] {
        return Err("reserved bytes are not zero".to_string());
    }
    if u64_at(8) != base_index {
        return Err(format!("index is for segment {}", u64_at(8)));
    }
    let seg_len = u64_at(16);
    if seg_len != file.len() && !(prefix && seg_len < file.len()) {
        return Err(format!(
            "segment length differs: index says {seg_len}, segment has {}",
            file.len()
        ));
    }
    if u32_at(52) != index_interval_bytes.max(1) {
        return Err(format!(
            "index interval changed: index has {}, config has {index_interval_bytes}",
            u32_at(52)
        ));
    }
    let (end_index, entries, last_offset, last_crc) =
        (u64_at(24), u64_at(32), u64_at(40), u32_at(48));
    if entries == 0 || n == 0 {
        return Err("index of an empty segment".to_string());
    }
    // An offloaded segment was verified at upload (its length above; every entry's CRC is
    // checked on read): a GET here would make opening a ledger need the object store.
    if !file.is_remote() {
        let (crc, header) = read_last_header(file.as_ref(), last_offset)?;
        // A compacted segment may end with a gap (its end is the next segment's base).
        let end_matches = if compacted {
            header.end_index() <= end_index
        } else {
            header.end_index() == end_index
        };
        if crc != last_crc
            || !end_matches
            || last_offset.checked_add(header.encoded_len()) != Some(seg_len)
        {
            return Err("last entry of the segment differs from the index".to_string());
        }
    }
    let mut points = Vec::with_capacity(n);
    let mut prev: Option<IndexPoint> = None;
    for i in 0..n {
        let at = FIXED_LEN + i * POINT_LEN;
        let p = IndexPoint {
            first_index: u64_at(at),
            file_offset: u64_at(at + 8),
            max_timestamp_before_ms: i64_at(at + 16),
        };
        let ordered = prev.is_none_or(|q| {
            q.first_index < p.first_index
                && q.file_offset < p.file_offset
                && q.max_timestamp_before_ms <= p.max_timestamp_before_ms
        });
        if !ordered || p.file_offset > last_offset || p.first_index >= end_index {
            return Err(format!("index point {i} out of order or out of range"));
        }
        prev = Some(p);
        points.push(p);
    }
    let first_matches = if compacted {
        points[0].first_index >= base_index
    } else {
        points[0].first_index == base_index
    };
    if points[0].file_offset != 0 || !first_matches {
        return Err("first index point is not the segment's first entry".to_string());
    }
    let (ts_index, ts_offset) = (u64_at(88), u64_at(96));
    if ts_offset > last_offset || ts_index < base_index || ts_index >= end_index {
        return Err("max timestamp entry out of range".to_string());
    }
    let publish = |v: i64| (v != i64::MIN).then_some(v);
    let index = SparseIndex::from_parts(
        index_interval_bytes,
        u64_at(56),
        points,
        i64_at(80),
        Some((ts_index, ts_offset)),
    );
    let mut info = SegmentInfo::new(base_index, file.clone(), index_interval_bytes);
    info.bytes = seg_len;
    info.end_index = end_index;
    info.entries = entries;
    info.last_entry_offset = last_offset;
    info.index = index;
    info.first_publish_ms = publish(i64_at(64));
    info.last_publish_ms = publish(i64_at(72));
    info.compacted = compacted;
    Ok(info)
}

/// The CRC and header of the entry at `offset` (one header-sized read).
fn read_last_header(
    file: &dyn SegmentFile,
    offset: u64,
) -> Result<(u32, crate::EntryHeader), String> {
    let mut buf = [0u8; ENTRY_HEADER_LEN];
    file.read_exact_at(offset, &mut buf)
        .map_err(|e| format!("cannot read the last entry: {e}"))?;
    let (header, crc) =
        decode_header(&buf).map_err(|reason| format!("last entry does not decode: {reason}"))?;
    Ok((crc, header))
}
