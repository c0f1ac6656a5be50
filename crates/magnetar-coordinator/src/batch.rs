//! Kafka record batches (magic 2) around coordinator records, hand-written for the same reason
//! as [`crate::record`]: the stored entries of `__consumer_offsets` ARE Kafka batches, so a
//! standard consumer of that topic decodes them.
//!
//! Layout (big-endian): base offset i64 (written by the log at append), batch length i32,
//! partition leader epoch i32, magic i8 = 2, CRC32C u32 over everything from the attributes to
//! the end, attributes i16 (0: uncompressed, create time, not transactional), last offset delta
//! i32, base timestamp i64, max timestamp i64, producer id i64 = -1, producer epoch i16 = -1,
//! base sequence i32 = -1, record count i32, then the records. A record is a zigzag varint
//! length, attributes i8, timestamp delta varlong, offset delta varint, key length varint and
//! key, value length varint (`-1` for a tombstone) and value, header count varint (0).

use bytes::Bytes;

use crate::record::{CodecError, Reader};

/// Bytes before the records.
pub const BATCH_HEADER_LEN: usize = 61;
const CRC_START: usize = 21;
const MAGIC: i8 = 2;
/// Attribute bits of a control batch (transaction markers); such batches hold no group data.
const CONTROL_FLAG: i16 = 1 << 5;
/// Attribute bit of a transactional batch.
const TRANSACTIONAL_FLAG: i16 = 1 << 4;
const COMPRESSION_MASK: i16 = 0x07;

/// One record's key and value (`None` for a tombstone).
pub type RawRecord = (Vec<u8>, Option<Vec<u8>>);

/// Encodes `records` as one uncompressed batch with base offset 0 (the log writes the real one).
pub fn encode_batch(records: &[RawRecord], timestamp_ms: i64) -> Vec<u8> {
    encode_batch_as(records, timestamp_ms, 0, -1, -1)
}

/// A transaction marker for `producer_id` at `producer_epoch`: Kafka's control batch
/// (transactional and control attributes, base sequence -1) holding one control record, key
/// `version 0, type` (0 abort, 1 commit) and value `version 0, coordinator epoch`.
pub fn encode_control_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&i16::from(commit).to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    encode_batch_as(
        &[(key, Some(value))],
        timestamp_ms,
        TRANSACTIONAL_FLAG | CONTROL_FLAG,
        producer_id,
        producer_epoch,
    )
}

fn encode_batch_as(
    records: &[RawRecord],
    timestamp_ms: i64,
    attributes: i16,
    producer_id: i64,
    producer_epoch: i16,
) -> Vec<u8> {
    let body_len: usize = records
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 16)
        .sum();
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body_len);
    out.extend_from_slice(&0i64.to_be_bytes()); // base offset
    out.extend_from_slice(&0i32.to_be_bytes()); // batch length, patched below
    out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    out.push(MAGIC as u8);
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, patched below
    out.extend_from_slice(&attributes.to_be_bytes());
    let last_delta = i32::try_from(records.len().saturating_sub(1)).unwrap_or(i32::MAX);
    out.extend_from_slice(&last_delta.to_be_bytes());
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&producer_id.to_be_bytes());
    out.extend_from_slice(&producer_epoch.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    let count = i32::try_from(records.len()).unwrap_or(i32::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    let mut record = Vec::with_capacity(256);
    for (delta, (key, value)) in records.iter().enumerate() {
        record.clear();
        record.push(0); // attributes
        put_varlong(&mut record, 0); // timestamp delta
        put_varlong(&mut record, delta as i64);
        put_varlong(&mut record, key.len() as i64);
        record.extend_from_slice(key);
        match value {
            Some(v) => {
                put_varlong(&mut record, v.len() as i64);
                record.extend_from_slice(v);
            }
            None => put_varlong(&mut record, -1),
        }
        put_varlong(&mut record, 0); // headers
        put_varlong(&mut out, record.len() as i64);
        out.extend_from_slice(&record);
    }
    let batch_len = i32::try_from(out.len() - 12).unwrap_or(i32::MAX);
    out[8..12].copy_from_slice(&batch_len.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// A decoded batch: its base offset and its records (key, value) as slices of the input.
#[derive(Debug)]
pub struct DecodedBatch {
    pub base_offset: i64,
    pub records: Vec<(Bytes, Option<Bytes>)>,
}

/// Decodes one batch, checking magic, length and CRC. Control batches decode with no records.
pub fn decode_batch(payload: &Bytes) -> Result<DecodedBatch, CodecError> {
    let mut r = Reader::new(payload);
    let base_offset = r.i64()?;
    let batch_len = r.i32()?;
    if batch_len < 0 || batch_len as usize != payload.len() - 12 {
        return Err(CodecError(format!(
            "batch length {batch_len} does not match the {} bytes stored",
            payload.len().saturating_sub(12)
        )));
    }
    let _leader_epoch = r.i32()?;
    let magic = r.i8()?;
    if magic != MAGIC {
        return Err(CodecError(format!(
            "unsupported record batch magic {magic}"
        )));
    }
    let crc = r.u32()?;
    let actual = crc32c::crc32c(&payload[CRC_START..]);
    if crc != actual {
        return Err(CodecError(format!(
            "record batch crc {crc:#010x} does not match {actual:#010x}"
        )));
    }
    let attributes = r.i16()?;
    let _last_offset_delta = r.i32()?;
    let _base_timestamp = r.i64()?;
    let _max_timestamp = r.i64()?;
    let _producer_id = r.i64()?;
    let _producer_epoch = r.i16()?;
    let _base_sequence = r.i32()?;
    let count = r.i32()?;
    if attributes & CONTROL_FLAG != 0 {
        return Ok(DecodedBatch {
            base_offset,
            records: Vec::new(),
        });
    }
    if attributes & COMPRESSION_MASK != 0 {
        return Err(CodecError(format!(
            "compressed coordinator batches are not supported (attributes {attributes:#06x})"
        )));
    }
    if count < 0 || count as usize > r.remaining() {
        return Err(CodecError(format!("record count {count} is not valid")));
    }
    let mut records = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = varint_len(get_varlong(&mut r)?, r.remaining())?;
        let start = payload.len() - r.remaining();
        let mut rec = Reader::new(r.take(len)?);
        let _attributes = rec.i8()?;
        let _timestamp_delta = get_varlong(&mut rec)?;
        let _offset_delta = get_varlong(&mut rec)?;
        let key_len = get_varlong(&mut rec)?;
        let key_at = start + (len - rec.remaining());
        let key_len = varint_len(key_len, rec.remaining())?;
        rec.take(key_len)?;
        let key = payload.slice(key_at..key_at + key_len);
        let value_len = get_varlong(&mut rec)?;
        let value = if value_len < 0 {
            None
        } else {
            let value_at = start + (len - rec.remaining());
            let value_len = varint_len(value_len, rec.remaining())?;
            rec.take(value_len)?;
            Some(payload.slice(value_at..value_at + value_len))
        };
        // Headers are skipped: coordinator records carry none, but tolerate them.
        let headers = varint_len(get_varlong(&mut rec)?, rec.remaining())?;
        for _ in 0..headers {
            let k = varint_len(get_varlong(&mut rec)?, rec.remaining())?;
            rec.take(k)?;
            let v = get_varlong(&mut rec)?;
            if v >= 0 {
                let v = varint_len(v, rec.remaining())?;
                rec.take(v)?;
            }
        }
        records.push((key, value));
    }
    if r.remaining() != 0 {
        return Err(CodecError(format!(
            "record batch has {} trailing bytes",
            r.remaining()
        )));
    }
    Ok(DecodedBatch {
        base_offset,
        records,
    })
}

fn varint_len(len: i64, remaining: usize) -> Result<usize, CodecError> {
    usize::try_from(len)
        .ok()
        .filter(|l| *l <= remaining)
        .ok_or_else(|| CodecError(format!("length {len} exceeds the {remaining} bytes left")))
}

/// Appends a zigzag varlong (Kafka's varint and varlong share the encoding).
pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

pub(crate) fn get_varlong(r: &mut Reader<'_>) -> Result<i64, CodecError> {
    let mut z: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = r.i8()? as u8;
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(CodecError("varint is longer than 10 bytes".into()))
}
