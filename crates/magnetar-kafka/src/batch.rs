//! Kafka record batches (magic 2): the 61-byte header is parsed and its CRC32C verified here.
//! Produce then validates every record ([`crate::validate`], compressed records streamed through
//! a capped decoder, never re-compressed); fetch serves stored batches without reading records.
//! ListOffsets by timestamp looks at records, and only in uncompressed batches.
//!
//! Header layout (big-endian):
//! ```text
//!  0 base offset i64 | 8 batch length i32 | 12 partition leader epoch i32 | 16 magic i8
//! 17 crc u32 (CRC32C of bytes 21..end) | 21 attributes i16 | 23 last offset delta i32
//! 27 base timestamp i64 | 35 max timestamp i64 | 43 producer id i64 | 51 producer epoch i16
//! 53 base sequence i32 | 57 record count i32 | 61 records
//! ```

use bytes::Bytes;

pub const HEADER_LEN: usize = 61;
/// Bytes before the batch length field is counted from (base offset and the length itself).
pub const LOG_OVERHEAD: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;

/// The fields of a batch header the broker uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Size of the whole batch in bytes, [`LOG_OVERHEAD`] included.
    pub size: usize,
    pub magic: i8,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    pub fn compression(&self) -> i16 {
        self.attributes & 0x07
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch truncated: {have} of {need} bytes")]
    Truncated { have: usize, need: usize },
    #[error("record batch magic {0} is not supported (only magic 2)")]
    UnsupportedMagic(i8),
    #[error("record batch length {0} is invalid")]
    BadLength(i32),
    #[error("record batch crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record batch has {0} records")]
    BadRecordCount(i32),
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Parses the header of the batch at the front of `buf` (which may hold more batches) without
/// checking the CRC. The magic is checked before anything else past the length, so old formats
/// get a clear error.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < MAGIC_AT + 1 {
        return Err(BatchError::Truncated {
            have: buf.len(),
            need: HEADER_LEN,
        });
    }
    let magic = buf[MAGIC_AT] as i8;
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    if buf.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            have: buf.len(),
            need: HEADER_LEN,
        });
    }
    let length = i32_at(buf, 8);
    if length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(BatchError::BadLength(length));
    }
    let size = length as usize + LOG_OVERHEAD;
    let record_count = i32_at(buf, 57);
    if record_count <= 0 {
        return Err(BatchError::BadRecordCount(record_count));
    }
    Ok(BatchHeader {
        base_offset: i64_at(buf, 0),
        size,
        magic,
        attributes: i16_at(buf, ATTRIBUTES_AT),
        last_offset_delta: i32_at(buf, 23),
        base_timestamp: i64_at(buf, 27),
        max_timestamp: i64_at(buf, 35),
        producer_id: i64_at(buf, 43),
        producer_epoch: i16_at(buf, 51),
        base_sequence: i32_at(buf, 53),
        record_count,
    })
}

/// Checks the CRC32C of a whole batch (`batch.len() == header.size`).
pub fn verify_crc(batch: &[u8]) -> Result<(), BatchError> {
    if batch.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            have: batch.len(),
            need: HEADER_LEN,
        });
    }
    let stored = i32_at(batch, CRC_AT) as u32;
    let computed = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    if stored != computed {
        return Err(BatchError::CrcMismatch { stored, computed });
    }
    Ok(())
}

/// The timestamp-type bit of the attributes (1 = LogAppendTime).
const LOG_APPEND_TIME_BIT: i16 = 0x08;
const MAX_TIMESTAMP_AT: usize = 35;

/// A topic with `message.timestamp.type=LogAppendTime`: marks the batch LogAppendTime, sets its
/// max timestamp to `now_ms` and recomputes its CRC, as Kafka's broker does (the records'
/// own timestamps are kept; consumers use the batch's max timestamp for every record). Copies
/// the batch once; a batch shorter than a header is returned unchanged (validated before).
pub fn stamp_log_append_time(batch: Bytes, now_ms: i64) -> Bytes {
    if batch.len() < HEADER_LEN {
        return batch;
    }
    let mut out = bytes::BytesMut::from(&batch[..]);
    let attributes = i16::from_be_bytes([out[ATTRIBUTES_AT], out[ATTRIBUTES_AT + 1]]);
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2]
        .copy_from_slice(&(attributes | LOG_APPEND_TIME_BIT).to_be_bytes());
    out[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

/// Splits a produce request's records field into its batches, each parsed and CRC-checked.
pub fn split(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut batches = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let rest = &records[at..];
        let header = parse_header(rest)?;
        if rest.len() < header.size {
            return Err(BatchError::Truncated {
                have: rest.len(),
                need: header.size,
            });
        }
        let batch = records.slice(at..at + header.size);
        verify_crc(&batch)?;
        batches.push((header, batch));
        at += header.size;
    }
    Ok(batches)
}

fn read_varlong(buf: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// The offset and timestamp of the first record with timestamp >= `target` (or, with
/// `target == None`, of the first record carrying the batch's max timestamp), read from an
/// uncompressed batch. `None` when the batch is compressed or malformed: callers then fall back
/// to the batch's own base offset and max timestamp.
pub fn find_record(batch: &[u8], target: Option<i64>) -> Option<(i64, i64)> {
    let header = parse_header(batch).ok()?;
    if header.compression() != 0 || header.attributes & 0x08 != 0 || batch.len() < header.size {
        return None;
    }
    let mut records = &batch[HEADER_LEN..header.size];
    for _ in 0..header.record_count {
        let length = usize::try_from(read_varlong(&mut records)?).ok()?;
        let body = records.get(..length)?;
        records = &records[length..];
        let mut fields = body.get(1..)?; // attributes
        let timestamp = header
            .base_timestamp
            .checked_add(read_varlong(&mut fields)?)?;
        let offset = header.base_offset.checked_add(read_varlong(&mut fields)?)?;
        let hit = match target {
            Some(t) => timestamp >= t,
            None => timestamp == header.max_timestamp,
        };
        if hit {
            return Some((offset, timestamp));
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use proptest::prelude::*;

    /// Encodes `count` records with timestamps `base_ts + i * 10` using kafka-protocol.
    pub(crate) fn encode_batch(
        count: i64,
        base_ts: i64,
        compression: Compression,
        producer: Option<(i64, i16, i32)>,
    ) -> Bytes {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: producer.map_or(-1, |p| p.0),
                producer_epoch: producer.map_or(-1, |p| p.1),
                timestamp_type: TimestampType::Creation,
                offset: i,
                // Sequences must advance with offsets for the encoder to keep records in one batch.
                sequence: producer.map_or(i as i32 - 1, |p| p.2 + i as i32),
                timestamp: base_ts + i * 10,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'v'; 20])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode");
        buf.freeze()
    }

    #[test]
    fn log_append_time_stamp_keeps_the_batch_valid() {
        let batch = encode_batch(3, 1000, Compression::Gzip, None);
        let stamped = stamp_log_append_time(batch.clone(), 777_000);
        verify_crc(&stamped).unwrap();
        let header = parse_header(&stamped).unwrap();
        assert_eq!(header.max_timestamp, 777_000);
        assert_eq!(header.attributes & LOG_APPEND_TIME_BIT, LOG_APPEND_TIME_BIT);
        assert_eq!(
            header.compression(),
            parse_header(&batch).unwrap().compression()
        );
        assert_eq!(header.base_timestamp, 1000, "record timestamps are kept");
        assert_eq!(
            stamped[HEADER_LEN..],
            batch[HEADER_LEN..],
            "records untouched"
        );
    }

    #[test]
    fn header_and_crc_of_a_real_batch() {
        let batch = encode_batch(5, 1000, Compression::None, Some((7, 1, 0)));
        let header = parse_header(&batch).unwrap();
        assert_eq!(header.size, batch.len());
        assert_eq!(header.record_count, 5);
        assert_eq!(header.last_offset_delta, 4);
        assert_eq!(header.max_timestamp, 1040);
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (7, 1, 0)
        );
        verify_crc(&batch).unwrap();
        let mut bad = batch.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            verify_crc(&bad),
            Err(BatchError::CrcMismatch { .. })
        ));
        // The base offset is outside the CRC: patching it keeps the batch valid.
        bad[last] ^= 1;
        bad[..8].copy_from_slice(&42i64.to_be_bytes());
        verify_crc(&bad).unwrap();
    }

    #[test]
    fn split_two_batches_and_refuse_garbage() {
        let a = encode_batch(2, 0, Compression::None, None);
        let b = encode_batch(3, 0, Compression::Gzip, None);
        let both = Bytes::from([a.to_vec(), b.to_vec()].concat());
        let parts = split(&both).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].0.compression(), 1);
        assert!(split(&both.slice(..both.len() - 1)).is_err());
        let mut old = a.to_vec();
        old[MAGIC_AT] = 1;
        assert_eq!(
            split(&Bytes::from(old)),
            Err(BatchError::UnsupportedMagic(1))
        );
    }

    #[test]
    fn find_record_by_timestamp() {
        let batch = encode_batch(5, 1000, Compression::None, None);
        assert_eq!(find_record(&batch, Some(1015)), Some((2, 1020)));
        assert_eq!(find_record(&batch, Some(0)), Some((0, 1000)));
        assert_eq!(find_record(&batch, Some(2000)), None);
        assert_eq!(find_record(&batch, None), Some((4, 1040)));
        let zipped = encode_batch(5, 1000, Compression::Gzip, None);
        assert_eq!(find_record(&zipped, Some(1015)), None);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let raw = Bytes::from(raw);
            let _ = split(&raw);
            let _ = find_record(&raw, Some(5));
            let _ = find_record(&raw, None);
        }
    }
}

/// The codec a topic's `compression.type` asks for: `None` for `producer` (store as produced),
/// else Kafka's codec id (0 for `uncompressed`).
pub fn target_codec(compression_type: &str) -> Option<i16> {
    match compression_type.trim() {
        "uncompressed" => Some(0),
        "gzip" => Some(1),
        "snappy" => Some(2),
        "lz4" => Some(3),
        "zstd" => Some(4),
        _ => None,
    }
}

/// Levels of `compression.gzip.level` / `compression.zstd.level` (lz4 has one level here).
#[derive(Debug, Clone, Copy)]
pub struct Levels {
    /// -1: the codec's default.
    pub gzip: i32,
    pub zstd: i32,
}

const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_BLOCK_LEN: usize = 32 * 1024;

fn compress(codec: i16, data: &[u8], levels: Levels) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    Ok(match codec {
        1 => {
            let level = u32::try_from(levels.gzip)
                .map(flate2::Compression::new)
                .unwrap_or_default();
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(data)?;
            e.finish()?
        }
        // The xerial framing the Java client writes (every client reads it).
        2 => {
            let mut out = Vec::with_capacity(data.len() / 2 + 16);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(XERIAL_BLOCK_LEN) {
                let compressed = encoder.compress_vec(block).map_err(std::io::Error::other)?;
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            out
        }
        3 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(data)?;
            e.finish().map_err(std::io::Error::other)?
        }
        4 => zstd::encode_all(data, levels.zstd)?,
        _ => data.to_vec(),
    })
}

/// Kafka's `compression.type` other than `producer`: a batch whose codec is not `codec` is
/// decoded and written again with it (offset deltas renumbered from 0, as Kafka does when it
/// recompresses); its producer id, epoch, sequence, leader epoch, transactional and timestamp-type
/// bits are kept. A batch already in `codec`, or a control batch, is returned as is. Runs after
/// validation, so the batch is well formed and within the decompression cap.
pub fn recompress(
    batch: Bytes,
    codec: i16,
    levels: Levels,
) -> Result<Bytes, magnetar_format::kafka::FormatError> {
    let header =
        parse_header(&batch).map_err(|e| magnetar_format::kafka::FormatError(e.to_string()))?;
    if header.compression() == codec || header.attributes & 0x20 != 0 {
        return Ok(batch);
    }
    let decoded = magnetar_format::kafka::decode_batch(&batch)?;
    let plain = magnetar_format::kafka::encode_batch(0, &decoded.records);
    let records = &plain[HEADER_LEN..];
    let body = compress(codec, records, levels)
        .map_err(|e| magnetar_format::kafka::FormatError(format!("compressing: {e}")))?;
    let mut out = bytes::BytesMut::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&decoded.base_offset.to_be_bytes());
    out.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
    out.extend_from_slice(&decoded.partition_leader_epoch.to_be_bytes());
    out.extend_from_slice(&[2]);
    out.extend_from_slice(&[0; 4]); // crc, below
    out.extend_from_slice(&((decoded.attributes & !0x07) | codec).to_be_bytes());
    // From the plain batch: last offset delta, base and max timestamp as re-encoded.
    out.extend_from_slice(&plain[23..43]);
    out.extend_from_slice(&decoded.producer_id.to_be_bytes());
    out.extend_from_slice(&decoded.producer_epoch.to_be_bytes());
    out.extend_from_slice(&decoded.base_sequence.to_be_bytes());
    out.extend_from_slice(&(decoded.records.len() as i32).to_be_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

#[cfg(test)]
mod recompress_tests {
    use super::*;
    use magnetar_format::kafka::{decode_batch, encode_batch, Record};

    #[test]
    fn recompress_keeps_records_and_producer_fields_for_every_codec() {
        let records: Vec<Record> = (0..100)
            .map(|i| Record {
                offset_delta: i,
                timestamp_ms: 1_700_000_000_000 + i64::from(i),
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'v'; 500])),
                headers: vec![],
            })
            .collect();
        let mut plain = bytes::BytesMut::from(&encode_batch(0, &records)[..]);
        // An idempotent producer's batch: id 7, epoch 1, sequence 42.
        plain[43..51].copy_from_slice(&7i64.to_be_bytes());
        plain[51..53].copy_from_slice(&1i16.to_be_bytes());
        plain[53..57].copy_from_slice(&42i32.to_be_bytes());
        let crc = crc32c::crc32c(&plain[ATTRIBUTES_AT..]);
        plain[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        let plain = plain.freeze();
        let levels = Levels { gzip: -1, zstd: 3 };
        for codec in 1..=4 {
            let out = recompress(plain.clone(), codec, levels).unwrap();
            let header = parse_header(&out).unwrap();
            verify_crc(&out).unwrap();
            assert_eq!(header.compression(), codec);
            assert_eq!(header.size, out.len());
            assert!(out.len() < plain.len(), "codec {codec} did not compress");
            let decoded = decode_batch(&out).unwrap();
            assert_eq!(decoded.records, records, "codec {codec}");
            assert_eq!(
                (
                    decoded.producer_id,
                    decoded.producer_epoch,
                    decoded.base_sequence
                ),
                (7, 1, 42)
            );
            // And back to uncompressed.
            let back = recompress(out.clone(), 0, levels).unwrap();
            assert_eq!(decode_batch(&back).unwrap().records, records);
            assert_eq!(parse_header(&back).unwrap().compression(), 0);
            // Already in the codec: untouched.
            assert_eq!(recompress(out.clone(), codec, levels).unwrap(), out);
        }
    }
}
