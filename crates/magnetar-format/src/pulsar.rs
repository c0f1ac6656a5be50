//! Pulsar-format entries read as Kafka record batches, for the Kafka fetch path.
//!
//! A Pulsar entry payload is `[metadata_size u32][MessageMetadata][payload]`, the payload
//! compressed as a whole (LZ4 block, ZLIB, ZSTD or SNAPPY) and, for a batch, a sequence of
//! `[size u32][SingleMessageMetadata][value]`. The few protobuf fields needed are read by hand
//! here (this crate must not depend on `prost`); unknown fields are skipped.

use std::io::Read;

use bytes::Bytes;

use crate::kafka::{FormatError, Record, DECOMPRESSED_BYTES_MAX};
use crate::{from_pulsar_message, PulsarMessage};

/// The fields of `MessageMetadata` / `SingleMessageMetadata` the conversion uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub publish_time_ms: u64,
    pub properties: Vec<(String, String)>,
    pub partition_key: Option<String>,
    pub partition_key_b64: bool,
    pub compression: u64,
    pub uncompressed_size: u64,
    pub num_messages_in_batch: Option<u64>,
    pub event_time_ms: u64,
    pub null_value: bool,
    pub payload_size: u64,
    /// `encryption_keys` are present: the payload is encrypted, opaque to the broker.
    pub encrypted: bool,
    /// `num_chunks_from_msg`: a chunk carries a slice of a message compressed as a whole.
    pub num_chunks_from_msg: u64,
    /// `compacted_out` (single messages of a batch): removed by log compaction.
    pub compacted_out: bool,
    /// `schema_version`: the producer's schema version on the topic (8 bytes big-endian).
    pub schema_version: Option<Vec<u8>>,
}

fn err<T>(msg: impl Into<String>) -> Result<T, FormatError> {
    Err(FormatError(msg.into()))
}

fn varint(cur: &mut &[u8]) -> Result<u64, FormatError> {
    let mut v = 0u64;
    for i in 0..10 {
        let Some((&b, rest)) = cur.split_first() else {
            return err("truncated protobuf varint");
        };
        *cur = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    err("protobuf varint longer than 10 bytes")
}

fn take<'a>(cur: &mut &'a [u8], len: u64) -> Result<&'a [u8], FormatError> {
    if len > cur.len() as u64 {
        return err("protobuf field exceeds the message");
    }
    let (v, rest) = cur.split_at(len as usize);
    *cur = rest;
    Ok(v)
}

/// Calls `f(field, wire_type, varint_value, bytes)` for each field.
fn walk(
    mut cur: &[u8],
    mut f: impl FnMut(u64, u64, &[u8]) -> Result<(), FormatError>,
) -> Result<(), FormatError> {
    while !cur.is_empty() {
        let key = varint(&mut cur)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = varint(&mut cur)?;
                f(field, v, &[])?;
            }
            1 => {
                take(&mut cur, 8)?;
            }
            2 => {
                let len = varint(&mut cur)?;
                let bytes = take(&mut cur, len)?;
                f(field, u64::MAX, bytes)?;
            }
            5 => {
                take(&mut cur, 4)?;
            }
            other => return err(format!("protobuf wire type {other} is not supported")),
        }
    }
    Ok(())
}

fn string(bytes: &[u8]) -> Result<String, FormatError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| FormatError("protobuf string is not UTF-8".into()))
}

fn key_value(bytes: &[u8]) -> Result<(String, String), FormatError> {
    let (mut k, mut v) = (String::new(), String::new());
    walk(bytes, |field, _, b| {
        match field {
            1 => k = string(b)?,
            2 => v = string(b)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok((k, v))
}

/// Reads `MessageMetadata`.
pub fn message_metadata(bytes: &[u8]) -> Result<Metadata, FormatError> {
    let mut m = Metadata::default();
    walk(bytes, |field, v, b| {
        match field {
            3 => m.publish_time_ms = v,
            4 => m.properties.push(key_value(b)?),
            6 => m.partition_key = Some(string(b)?),
            8 => m.compression = v,
            9 => m.uncompressed_size = v,
            11 => m.num_messages_in_batch = Some(v),
            12 => m.event_time_ms = v,
            13 => m.encrypted = true,
            16 => m.schema_version = Some(b.to_vec()),
            17 => m.partition_key_b64 = v != 0,
            25 => m.null_value = v != 0,
            27 => m.num_chunks_from_msg = v,
            _ => {}
        }
        Ok(())
    })?;
    Ok(m)
}

/// Reads `SingleMessageMetadata`.
pub fn single_metadata(bytes: &[u8]) -> Result<Metadata, FormatError> {
    let mut m = Metadata::default();
    walk(bytes, |field, v, b| {
        match field {
            1 => m.properties.push(key_value(b)?),
            2 => m.partition_key = Some(string(b)?),
            3 => m.payload_size = v,
            4 => m.compacted_out = v != 0,
            5 => m.event_time_ms = v,
            6 => m.partition_key_b64 = v != 0,
            9 => m.null_value = v != 0,
            _ => {}
        }
        Ok(())
    })?;
    Ok(m)
}

fn be_u32(cur: &mut &[u8]) -> Result<usize, FormatError> {
    let b = take(cur, 4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// The uncompressed payload: borrowed when it is not compressed (no copy).
fn decompress(
    codec: u64,
    data: &[u8],
    size: usize,
) -> Result<std::borrow::Cow<'_, [u8]>, FormatError> {
    if size > DECOMPRESSED_BYTES_MAX {
        return err(format!("uncompressed size {size} exceeds the limit"));
    }
    if codec == 0 {
        return Ok(std::borrow::Cow::Borrowed(data));
    }
    decompress_owned(codec, data, size).map(std::borrow::Cow::Owned)
}

fn decompress_owned(codec: u64, data: &[u8], size: usize) -> Result<Vec<u8>, FormatError> {
    match codec {
        1 => lz4_flex::block::decompress(data, size).map_err(|e| FormatError(format!("lz4: {e}"))),
        2 => {
            let mut out = Vec::with_capacity(size);
            flate2::read::ZlibDecoder::new(data)
                .take(DECOMPRESSED_BYTES_MAX as u64)
                .read_to_end(&mut out)
                .map_err(|e| FormatError(format!("zlib: {e}")))?;
            Ok(out)
        }
        3 => {
            let mut out = Vec::with_capacity(size);
            zstd::stream::read::Decoder::new(data)
                .and_then(|d| d.take(DECOMPRESSED_BYTES_MAX as u64).read_to_end(&mut out))
                .map_err(|e| FormatError(format!("zstd: {e}")))?;
            Ok(out)
        }
        4 => {
            let len =
                snap::raw::decompress_len(data).map_err(|e| FormatError(format!("snappy: {e}")))?;
            if len > DECOMPRESSED_BYTES_MAX {
                return err("snappy payload exceeds the limit");
            }
            snap::raw::Decoder::new()
                .decompress_vec(data)
                .map_err(|e| FormatError(format!("snappy: {e}")))
        }
        other => err(format!("unknown pulsar compression {other}")),
    }
}

/// Checks a SEND's body before it is stored: the metadata parses, its codec is known, and its
/// payload holds what the metadata and the SEND's `num_messages` say: it decompresses (to at
/// most `bytes_max` bytes, and to `uncompressed_size` when compressed) and, for a batch, holds
/// `num_messages_in_batch` single messages, each with its metadata and its `payload_size` bytes.
/// An encrypted payload or a chunk (a slice of a message compressed as a whole) is opaque to
/// the broker: only its metadata and count are checked. Nothing is kept; the body is stored as
/// sent.
pub fn check_entry(body: &[u8], num_messages: u64, bytes_max: usize) -> Result<(), FormatError> {
    let mut cur = body;
    let size = be_u32(&mut cur)?;
    let metadata = message_metadata(take(&mut cur, size as u64)?)?;
    let count = metadata.num_messages_in_batch;
    if count.unwrap_or(1) != num_messages {
        return err(format!(
            "the send says {num_messages} messages and its metadata {}",
            count.unwrap_or(1)
        ));
    }
    if metadata.compression > 4 {
        return err(format!("unknown compression {}", metadata.compression));
    }
    if metadata.encrypted || metadata.num_chunks_from_msg > 1 {
        return Ok(());
    }
    let uncompressed_size = if metadata.compression == 0 {
        cur.len()
    } else {
        usize::try_from(metadata.uncompressed_size).unwrap_or(usize::MAX)
    };
    if uncompressed_size > bytes_max {
        return err(format!(
            "uncompressed size {uncompressed_size} exceeds the limit of {bytes_max} bytes"
        ));
    }
    let payload = decompress(metadata.compression, cur, uncompressed_size)?;
    if payload.len() != uncompressed_size {
        return err(format!(
            "payload decompresses to {} bytes, its metadata says {uncompressed_size}",
            payload.len()
        ));
    }
    let Some(count) = count else {
        return Ok(());
    };
    let mut cur = &payload[..];
    for i in 0..count {
        let missing =
            |e: FormatError| FormatError(format!("batch message {i} of {count}: {}", e.0));
        let size = be_u32(&mut cur).map_err(missing)?;
        let single =
            single_metadata(take(&mut cur, size as u64).map_err(missing)?).map_err(missing)?;
        take(&mut cur, single.payload_size).map_err(missing)?;
    }
    Ok(())
}

/// The messages of one Pulsar entry body, decompressed, in order.
pub fn entry_messages(body: &[u8]) -> Result<Vec<PulsarMessage>, FormatError> {
    let mut cur = body;
    let size = be_u32(&mut cur)?;
    let metadata = message_metadata(take(&mut cur, size as u64)?)?;
    // As in `check_entry` (and Pulsar): `uncompressed_size` means something only for a
    // compressed payload; an uncompressed one is its own size, whatever the field says.
    let uncompressed_size = if metadata.compression == 0 {
        cur.len()
    } else {
        usize::try_from(metadata.uncompressed_size).unwrap_or(usize::MAX)
    };
    let payload = decompress(metadata.compression, cur, uncompressed_size)?;
    let default_time = |t: u64| {
        if t != 0 {
            t as i64
        } else if metadata.event_time_ms != 0 {
            metadata.event_time_ms as i64
        } else {
            metadata.publish_time_ms as i64
        }
    };
    let Some(count) = metadata.num_messages_in_batch else {
        return Ok(vec![PulsarMessage {
            partition_key: metadata.partition_key.clone(),
            partition_key_b64: metadata.partition_key_b64,
            properties: metadata.properties.clone(),
            value: Bytes::from(payload.into_owned()),
            null_value: metadata.null_value,
            event_time_ms: default_time(0),
            compacted_out: false,
        }]);
    };
    let mut out = Vec::new();
    let mut cur = &payload[..];
    for _ in 0..count {
        let size = be_u32(&mut cur)?;
        let single = single_metadata(take(&mut cur, size as u64)?)?;
        let value = take(&mut cur, single.payload_size)?;
        out.push(PulsarMessage {
            partition_key: single.partition_key.clone(),
            partition_key_b64: single.partition_key_b64,
            properties: single.properties.clone(),
            value: Bytes::copy_from_slice(value),
            null_value: single.null_value,
            event_time_ms: default_time(single.event_time_ms),
            compacted_out: single.compacted_out,
        });
    }
    Ok(out)
}

/// A Pulsar entry as the record batch a Kafka fetch returns, at `base_offset` (the entry's
/// first message index). Event time, else publish time, becomes the record timestamp. Messages
/// log compaction removed from a batch (`compacted_out`) are left out, the others keep their
/// batch index as offset delta and the batch still ends at the entry's last index.
pub fn entry_to_kafka_batch(body: &[u8], base_offset: u64) -> Result<Bytes, FormatError> {
    entry_to_framed_kafka_batch(body, base_offset, None)
}

/// The entry's `schema_version` (read from its metadata only).
pub fn entry_schema_version(body: &[u8]) -> Result<Option<Vec<u8>>, FormatError> {
    let mut cur = body;
    let size = be_u32(&mut cur)?;
    Ok(message_metadata(take(&mut cur, size as u64)?)?.schema_version)
}

/// As [`entry_to_kafka_batch`], each non-null value framed for Confluent's deserializers when
/// `confluent_id` is given: magic byte 0 and the schema id (4 bytes big-endian) before it.
pub fn entry_to_framed_kafka_batch(
    body: &[u8],
    base_offset: u64,
    confluent_id: Option<u32>,
) -> Result<Bytes, FormatError> {
    let messages = entry_messages(body)?;
    let records: Vec<Record> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !m.compacted_out)
        .map(|(i, m)| {
            let mut record = from_pulsar_message(m, i as i32);
            if let (Some(id), Some(value)) = (confluent_id, &record.value) {
                let mut framed = Vec::with_capacity(value.len() + 5);
                framed.push(0);
                framed.extend_from_slice(&id.to_be_bytes());
                framed.extend_from_slice(value);
                record.value = Some(Bytes::from(framed));
            }
            record
        })
        .collect();
    let count = u32::try_from(messages.len()).unwrap_or(u32::MAX);
    if records.is_empty() {
        return Ok(crate::kafka::empty_batch(base_offset as i64, count));
    }
    Ok(crate::kafka::encode_batch_with_deltas(
        base_offset as i64,
        &records,
        count.saturating_sub(1) as i32,
    ))
}

/// The batch indexes of the messages log compaction removed from a batched entry (none for a
/// single message or an entry without such messages). Pulsar consumers get them as already
/// acknowledged in the MESSAGE's `ack_set`, so clients that do not read `compacted_out` skip
/// them too.
pub fn compacted_out_positions(body: &[u8]) -> Result<Vec<u32>, FormatError> {
    let mut cur = body;
    let size = be_u32(&mut cur)?;
    let metadata = message_metadata(take(&mut cur, size as u64)?)?;
    if metadata.num_messages_in_batch.is_none()
        || metadata.encrypted
        || metadata.num_chunks_from_msg > 1
    {
        return Ok(Vec::new());
    }
    Ok(entry_messages(body)?
        .iter()
        .enumerate()
        .filter(|(_, m)| m.compacted_out)
        .map(|(i, _)| i as u32)
        .collect())
}

/// A batched entry with the messages whose `keep` flag is clear marked `compacted_out` (their
/// values dropped, their metadata kept, so every message keeps its batch index, as Pulsar's
/// compactor rewrites batches), compressed again with the entry's codec. Protobuf's last value
/// wins for a repeated scalar field, so the single messages' `payload_size` and
/// `compacted_out`, and the entry's `uncompressed_size`, are appended, not rewritten.
pub fn compact_batch(body: &[u8], keep: &[bool]) -> Result<Bytes, FormatError> {
    let mut cur = body;
    let size = be_u32(&mut cur)?;
    let metadata_bytes = take(&mut cur, size as u64)?;
    let metadata = message_metadata(metadata_bytes)?;
    let Some(count) = metadata.num_messages_in_batch else {
        return err("not a batch");
    };
    if metadata.encrypted || metadata.num_chunks_from_msg > 1 {
        return err("an encrypted or chunked batch is opaque to the broker");
    }
    if keep.len() as u64 != count {
        return err(format!("{} keep flags for {count} messages", keep.len()));
    }
    let uncompressed_size = if metadata.compression == 0 {
        cur.len()
    } else {
        usize::try_from(metadata.uncompressed_size).unwrap_or(usize::MAX)
    };
    let payload = decompress(metadata.compression, cur, uncompressed_size)?;
    let mut singles = &payload[..];
    let mut out = Vec::with_capacity(payload.len());
    for kept in keep {
        let size = be_u32(&mut singles)?;
        let single_bytes = take(&mut singles, size as u64)?;
        let single = single_metadata(single_bytes)?;
        let value = take(&mut singles, single.payload_size)?;
        if *kept || single.compacted_out {
            out.extend_from_slice(&(size as u32).to_be_bytes());
            out.extend_from_slice(single_bytes);
            out.extend_from_slice(value);
            continue;
        }
        let mut rewritten = single_bytes.to_vec();
        put_uint(&mut rewritten, 3, 0);
        put_uint(&mut rewritten, 4, 1);
        let len = u32::try_from(rewritten.len())
            .map_err(|_| FormatError("single message metadata too large".to_string()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&rewritten);
    }
    let mut metadata_out = metadata_bytes.to_vec();
    let payload_out = if metadata.compression == 0 {
        out
    } else {
        put_uint(&mut metadata_out, 9, out.len() as u64);
        compress(metadata.compression, &out)?
    };
    let len = u32::try_from(metadata_out.len())
        .map_err(|_| FormatError("message metadata too large".to_string()))?;
    let mut entry = Vec::with_capacity(4 + metadata_out.len() + payload_out.len());
    entry.extend_from_slice(&len.to_be_bytes());
    entry.extend_from_slice(&metadata_out);
    entry.extend_from_slice(&payload_out);
    Ok(Bytes::from(entry))
}

/// Compresses a Pulsar payload with `codec` (what [`decompress`] reads back): LZ4 block, ZLIB,
/// ZSTD, raw snappy.
fn compress(codec: u64, data: &[u8]) -> Result<Vec<u8>, FormatError> {
    use std::io::Write;
    match codec {
        0 => Ok(data.to_vec()),
        1 => Ok(lz4_flex::block::compress(data)),
        2 => {
            let mut enc =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(data)
                .and_then(|()| enc.finish())
                .map_err(|e| FormatError(format!("zlib: {e}")))
        }
        3 => zstd::bulk::compress(data, 3).map_err(|e| FormatError(format!("zstd: {e}"))),
        4 => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(|e| FormatError(format!("snappy: {e}"))),
        other => err(format!("unknown pulsar compression {other}")),
    }
}

/// Protobuf writing, by hand (this crate does not depend on `prost`): only the field kinds the
/// Pulsar metadata uses.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_uint(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_properties(out: &mut Vec<u8>, field: u64, properties: &[(String, String)]) {
    for (k, v) in properties {
        let mut kv = Vec::with_capacity(k.len() + v.len() + 4);
        put_bytes(&mut kv, 1, k.as_bytes());
        put_bytes(&mut kv, 2, v.as_bytes());
        put_bytes(out, field, &kv);
    }
}

/// A Kafka record batch (any codec) as one uncompressed Pulsar batch entry body
/// (`[metadata_size u32][MessageMetadata][payload]`, the bytes a Pulsar SEND carries): key ->
/// partition key, headers -> properties, timestamp -> event time, a null value ->
/// `null_value` (see [`crate::to_pulsar_message`]). Used for Pulsar consumers reading Kafka
/// entries and for storing Kafka produce in the Pulsar format (`entryFormat=pulsar`).
pub fn kafka_batch_to_entry(
    batch_bytes: &[u8],
    producer_name: &str,
    sequence_id: u64,
    publish_time_ms: u64,
) -> Result<Bytes, FormatError> {
    let batch = crate::kafka::decode_batch(batch_bytes)?;
    // The metadata holds the payload's size, so it is written after the payload, into a gap
    // left in front of it that fits any size: the payload is written once and never moved.
    let mut meta = Vec::with_capacity(64);
    put_bytes(&mut meta, 1, producer_name.as_bytes());
    put_uint(&mut meta, 2, sequence_id);
    put_uint(&mut meta, 3, publish_time_ms);
    put_uint(&mut meta, 8, 0); // compression NONE
    let mut meta_tail = Vec::with_capacity(24);
    put_uint(&mut meta_tail, 11, batch.records.len() as u64);
    put_uint(&mut meta_tail, 12, batch.max_timestamp_ms.max(0) as u64);
    // size u32 + metadata + field 9 (1-byte tag, varint of at most 10 bytes)
    let gap = 4 + meta.len() + 11 + meta_tail.len();
    let mut body = Vec::with_capacity(gap + batch_bytes.len() + batch.records.len() * 16);
    body.resize(gap, 0);
    let mut single = Vec::with_capacity(64);
    for record in &batch.records {
        let m = crate::to_pulsar_message(record, &batch);
        single.clear();
        put_properties(&mut single, 1, &m.properties);
        if let Some(k) = &m.partition_key {
            put_bytes(&mut single, 2, k.as_bytes());
        }
        put_uint(&mut single, 3, m.value.len() as u64);
        put_uint(&mut single, 5, m.event_time_ms.max(0) as u64);
        if m.partition_key_b64 {
            put_uint(&mut single, 6, 1);
        }
        if m.null_value {
            put_uint(&mut single, 9, 1);
        }
        if m.partition_key.is_none() {
            put_uint(&mut single, 10, 1);
        }
        body.extend_from_slice(&(single.len() as u32).to_be_bytes());
        body.extend_from_slice(&single);
        body.extend_from_slice(&m.value);
    }
    put_uint(&mut meta, 9, (body.len() - gap) as u64);
    meta.extend_from_slice(&meta_tail);
    let start = gap - 4 - meta.len();
    body[start..start + 4].copy_from_slice(&(meta.len() as u32).to_be_bytes());
    body[start + 4..gap].copy_from_slice(&meta);
    Ok(Bytes::from(body).slice(start..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::encode_batch;

    fn field_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        out.push(((field << 3) | 2) as u8);
        out.push(b.len() as u8);
        out.extend_from_slice(b);
    }

    fn field_varint(out: &mut Vec<u8>, field: u64, v: u64) {
        out.push((field << 3) as u8);
        let mut v = v;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    #[test]
    fn batch_entry_to_kafka() {
        let mut payload = Vec::new();
        for i in 0..3u64 {
            let mut single = Vec::new();
            let mut kv = Vec::new();
            field_bytes(&mut kv, 1, b"p");
            field_bytes(&mut kv, 2, format!("v{i}").as_bytes());
            field_bytes(&mut single, 1, &kv);
            field_bytes(&mut single, 2, format!("k{i}").as_bytes());
            field_varint(&mut single, 3, 2);
            field_varint(&mut single, 5, 1000 + i);
            payload.extend_from_slice(&(single.len() as u32).to_be_bytes());
            payload.extend_from_slice(&single);
            payload.extend_from_slice(format!("m{i}").as_bytes());
        }
        let mut meta = Vec::new();
        field_bytes(&mut meta, 1, b"producer");
        field_varint(&mut meta, 2, 0);
        field_varint(&mut meta, 3, 500);
        field_varint(&mut meta, 11, 3);
        let mut body = (meta.len() as u32).to_be_bytes().to_vec();
        body.extend_from_slice(&meta);
        body.extend_from_slice(&payload);
        let batch = crate::kafka::decode_batch(&entry_to_kafka_batch(&body, 10).unwrap()).unwrap();
        assert_eq!(batch.base_offset, 10);
        assert_eq!(batch.records.len(), 3);
        assert_eq!(batch.records[1].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(batch.records[1].value.as_deref(), Some(&b"m1"[..]));
        assert_eq!(batch.records[1].timestamp_ms, 1001);
        assert_eq!(
            batch.records[2].headers[0].value.as_deref(),
            Some(&b"v2"[..])
        );
    }

    /// A Pulsar message with a schema version reaches Kafka framed for Confluent's
    /// deserializers when the caller names the id; a null value stays null.
    #[test]
    fn framed_entry_to_kafka() {
        let mut meta = Vec::new();
        field_bytes(&mut meta, 1, b"producer");
        field_varint(&mut meta, 2, 0);
        field_varint(&mut meta, 3, 500);
        // Fields above 15 take two-byte keys: the module's writers, not the one-byte helpers.
        put_bytes(&mut meta, 16, &2i64.to_be_bytes());
        let mut body = (meta.len() as u32).to_be_bytes().to_vec();
        body.extend_from_slice(&meta);
        body.extend_from_slice(b"avro");
        assert_eq!(
            entry_schema_version(&body).unwrap(),
            Some(2i64.to_be_bytes().to_vec())
        );
        let framed = entry_to_framed_kafka_batch(&body, 7, Some(0x0102_0304)).unwrap();
        let batch = crate::kafka::decode_batch(&framed).unwrap();
        assert_eq!(
            batch.records[0].value.as_deref(),
            Some(&[0u8, 1, 2, 3, 4, b'a', b'v', b'r', b'o'][..])
        );
        let plain = crate::kafka::decode_batch(&entry_to_kafka_batch(&body, 7).unwrap()).unwrap();
        assert_eq!(plain.records[0].value.as_deref(), Some(&b"avro"[..]));

        let mut meta = Vec::new();
        field_bytes(&mut meta, 1, b"producer");
        field_varint(&mut meta, 2, 0);
        field_varint(&mut meta, 3, 500);
        put_uint(&mut meta, 25, 1);
        let mut body = (meta.len() as u32).to_be_bytes().to_vec();
        body.extend_from_slice(&meta);
        assert_eq!(entry_schema_version(&body).unwrap(), None);
        let framed = entry_to_framed_kafka_batch(&body, 7, Some(9)).unwrap();
        let batch = crate::kafka::decode_batch(&framed).unwrap();
        assert_eq!(batch.records[0].value, None);
    }

    /// Found by the fuzz target `pulsar_entry` (fuzz/regressions/pulsar_entry): an uncompressed
    /// message whose metadata carries a bogus `uncompressed_size` passed `check_entry` (which,
    /// as Pulsar, ignores the field without compression) and was stored, but could not be read.
    #[test]
    fn uncompressed_size_is_ignored_without_compression() {
        let mut meta = Vec::new();
        field_bytes(&mut meta, 1, b"producer");
        field_varint(&mut meta, 2, 0);
        field_varint(&mut meta, 3, 500);
        field_varint(&mut meta, 9, u64::MAX);
        let mut body = (meta.len() as u32).to_be_bytes().to_vec();
        body.extend_from_slice(&meta);
        body.extend_from_slice(b"value");
        check_entry(&body, 1, DECOMPRESSED_BYTES_MAX).expect("checked");
        let messages = entry_messages(&body).expect("read");
        assert_eq!(messages.len(), 1);
        assert_eq!(&messages[0].value[..], b"value");
    }

    /// A batch entry of `present` single messages whose metadata says `claimed`, compressed
    /// with zlib when `zlib` (uncompressed size from `size_claim`, else the real one).
    fn pulsar_batch(claimed: u64, present: u64, zlib: bool, size_claim: Option<u64>) -> Vec<u8> {
        let mut payload = Vec::new();
        for i in 0..present {
            let mut single = Vec::new();
            field_varint(&mut single, 3, 2);
            payload.extend_from_slice(&(single.len() as u32).to_be_bytes());
            payload.extend_from_slice(&single);
            payload.extend_from_slice(format!("m{i}").as_bytes());
        }
        let mut meta = Vec::new();
        field_bytes(&mut meta, 1, b"producer");
        field_varint(&mut meta, 2, 0);
        field_varint(&mut meta, 3, 500);
        field_varint(&mut meta, 11, claimed);
        let data = if zlib {
            field_varint(&mut meta, 8, 2);
            field_varint(&mut meta, 9, size_claim.unwrap_or(payload.len() as u64));
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, &payload).unwrap();
            e.finish().unwrap()
        } else {
            payload
        };
        let mut body = (meta.len() as u32).to_be_bytes().to_vec();
        body.extend_from_slice(&meta);
        body.extend_from_slice(&data);
        body
    }

    #[test]
    fn send_bodies_are_checked_against_their_metadata() {
        let max = DECOMPRESSED_BYTES_MAX;
        for zlib in [false, true] {
            check_entry(&pulsar_batch(3, 3, zlib, None), 3, max).unwrap();
            // The SEND and the metadata disagree.
            assert!(check_entry(&pulsar_batch(3, 3, zlib, None), 4, max).is_err());
            // The metadata claims more messages than the payload holds (the lie).
            let e = check_entry(&pulsar_batch(1000, 3, zlib, None), 1000, max).unwrap_err();
            assert!(e.0.contains("batch message 3 of 1000"), "{e}");
        }
        // A wrong uncompressed size, one past the cap, garbage, an unknown codec.
        assert!(check_entry(&pulsar_batch(3, 3, true, Some(5)), 3, max).is_err());
        assert!(check_entry(&pulsar_batch(3, 3, true, Some(1 << 40)), 3, max).is_err());
        let mut garbage = pulsar_batch(3, 3, true, None);
        let n = garbage.len();
        garbage[n - 8..].copy_from_slice(b"garbage!");
        assert!(check_entry(&garbage, 3, max).is_err());
        let mut meta = Vec::new();
        field_bytes(&mut meta, 1, b"producer");
        field_varint(&mut meta, 8, 9);
        let mut unknown = (meta.len() as u32).to_be_bytes().to_vec();
        unknown.extend_from_slice(&meta);
        unknown.extend_from_slice(b"payload");
        assert!(check_entry(&unknown, 1, max).is_err());
        // A single message: count 1, payload opaque.
        let mut meta = Vec::new();
        field_bytes(&mut meta, 1, b"producer");
        let mut single = (meta.len() as u32).to_be_bytes().to_vec();
        single.extend_from_slice(&meta);
        single.extend_from_slice(b"payload");
        check_entry(&single, 1, max).unwrap();
        assert!(check_entry(&single, 2, max).is_err());
        // What kafka_batch_to_entry writes passes.
        let records: Vec<Record> = (0..4)
            .map(|i| Record {
                offset_delta: i,
                timestamp_ms: 5,
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: vec![],
            })
            .collect();
        let entry = kafka_batch_to_entry(&encode_batch(0, &records), "kafka", 0, 1).unwrap();
        check_entry(&entry, 4, max).unwrap();
    }

    #[test]
    fn kafka_batch_to_entry_sizes_its_metadata_for_any_payload() {
        // payload sizes whose varint takes 1, 2 and 3 bytes, and a long producer name
        for n in [1usize, 200, 20_000, 300_000] {
            let records: Vec<Record> = (0..3)
                .map(|i| Record {
                    offset_delta: i,
                    timestamp_ms: 1_700_000_000_000 + i64::from(i),
                    key: None,
                    value: Some(Bytes::from(vec![i as u8; n])),
                    headers: vec![],
                })
                .collect();
            let name = "p".repeat(n % 300);
            let body = kafka_batch_to_entry(&encode_batch(0, &records), &name, 7, 123).unwrap();
            let size = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
            let meta = message_metadata(&body[4..4 + size]).unwrap();
            assert_eq!(meta.uncompressed_size as usize, body.len() - 4 - size);
            assert_eq!(meta.num_messages_in_batch, Some(3));
            let back =
                crate::kafka::decode_batch(&entry_to_kafka_batch(&body, 5).unwrap()).unwrap();
            assert_eq!(back.records, records);
        }
    }

    #[test]
    fn kafka_batch_to_entry_and_back() {
        use crate::kafka::Header;
        let records = vec![
            Record {
                offset_delta: 0,
                timestamp_ms: 1_700_000_000_000,
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(b"v")),
                headers: vec![
                    Header {
                        key: "h".into(),
                        value: Some(Bytes::from_static(&[0xff, 0x00])),
                    },
                    Header {
                        key: "n".into(),
                        value: None,
                    },
                ],
            },
            Record {
                offset_delta: 1,
                timestamp_ms: 1_700_000_000_005,
                key: None,
                value: None,
                headers: vec![],
            },
            Record {
                offset_delta: 2,
                timestamp_ms: 1_700_000_000_001,
                key: Some(Bytes::from_static(&[0x80, 0x81])),
                value: Some(Bytes::new()),
                headers: vec![],
            },
        ];
        let kafka = encode_batch(0, &records);
        let body = kafka_batch_to_entry(&kafka, "kafka", 7, 123).unwrap();
        let back = crate::kafka::decode_batch(&entry_to_kafka_batch(&body, 40).unwrap()).unwrap();
        assert_eq!(back.base_offset, 40);
        assert_eq!(back.records, records);
        let messages = entry_messages(&body).unwrap();
        assert_eq!(messages[0].partition_key.as_deref(), Some("k"));
        assert!(messages[1].null_value);
        assert!(messages[2].partition_key_b64);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = entry_to_kafka_batch(&data, 0);
        }
    }
}
