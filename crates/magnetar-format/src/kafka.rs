//! A small hand-written codec for Kafka record batches (magic v2): varints, records, headers,
//! and decompression of gzip, snappy (raw and xerial-framed), lz4 (frame format) and zstd.
//! Every length read from the batch is checked against the bytes left before anything is
//! allocated for it, and decompressed output is capped, so bad input gives an error, never a
//! panic or an unbounded allocation.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::io::Read;

/// Size of the v2 batch header, up to and including the record count.
pub const BATCH_HEADER_LEN: usize = 61;
/// Offset of the CRC32C field; the CRC covers everything after it.
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
/// Decompressed records of one batch may not exceed this.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Records in one batch may not exceed this.
pub const RECORDS_MAX: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kafka record batch: {}", self.0)
    }
}

impl std::error::Error for FormatError {}

fn err<T>(msg: impl Into<String>) -> Result<T, FormatError> {
    Err(FormatError(msg.into()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec of a batch's attributes (bits 0-2); `None` for an unknown codec id (5-7).
    pub fn from_id(id: i16) -> Option<Self> {
        Self::from_attributes(id).ok()
    }

    fn from_attributes(attributes: i16) -> Result<Self, FormatError> {
        Ok(match attributes & 0x07 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return err(format!("unknown compression codec {other}")),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset_delta: i32,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records: Vec<Record>,
}

impl Batch {
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes).unwrap_or(Compression::None)
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
    /// LogAppendTime: every record's timestamp is the batch's max timestamp.
    pub fn log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }
}

/// Decodes one v2 batch (the first in `data`), checking its CRC and decompressing its records.
pub fn decode_batch(data: &[u8]) -> Result<Batch, FormatError> {
    if data.len() < BATCH_HEADER_LEN {
        return err(format!(
            "{} bytes is shorter than a batch header",
            data.len()
        ));
    }
    let mut b = data;
    let base_offset = b.get_i64();
    let batch_length = b.get_i32();
    if batch_length < (BATCH_HEADER_LEN - 12) as i32 || batch_length as usize > data.len() - 12 {
        return err(format!(
            "batch length {batch_length} does not fit the {} bytes given",
            data.len()
        ));
    }
    let end = 12 + batch_length as usize;
    let partition_leader_epoch = b.get_i32();
    let magic = b.get_i8();
    if magic != 2 {
        return err(format!("magic {magic} is not 2"));
    }
    let crc = b.get_u32();
    if crc32c::crc32c(&data[ATTRIBUTES_OFFSET..end]) != crc {
        return err("crc mismatch");
    }
    let attributes = b.get_i16();
    let last_offset_delta = b.get_i32();
    let base_timestamp_ms = b.get_i64();
    let max_timestamp_ms = b.get_i64();
    let producer_id = b.get_i64();
    let producer_epoch = b.get_i16();
    let base_sequence = b.get_i32();
    let count = b.get_i32();
    if count < 0 || count as usize > RECORDS_MAX {
        return err(format!("record count {count} is out of range"));
    }
    let body = &data[BATCH_HEADER_LEN..end];
    let compression = Compression::from_attributes(attributes)?;
    let decompressed;
    let records_bytes: &[u8] = match compression {
        Compression::None => body,
        other => {
            decompressed = decompress(other, body)?;
            &decompressed
        }
    };
    let mut cur = records_bytes;
    // Each record takes at least 7 bytes, so the count can be checked before allocating.
    if count as usize > cur.len() / 7 + 1 {
        return err(format!(
            "record count {count} exceeds what {} bytes can hold",
            cur.len()
        ));
    }
    let mut records = Vec::with_capacity(count as usize);
    for _ in 0..count {
        records.push(decode_record(&mut cur, base_timestamp_ms)?);
    }
    let mut batch = Batch {
        base_offset,
        partition_leader_epoch,
        attributes,
        last_offset_delta,
        base_timestamp_ms,
        max_timestamp_ms,
        producer_id,
        producer_epoch,
        base_sequence,
        records,
    };
    if batch.log_append_time() {
        for r in &mut batch.records {
            r.timestamp_ms = max_timestamp_ms;
        }
    }
    Ok(batch)
}

fn decode_record(cur: &mut &[u8], base_timestamp_ms: i64) -> Result<Record, FormatError> {
    let length = read_varint(cur)?;
    if length < 0 || length as usize > cur.len() {
        return err(format!(
            "record length {length} exceeds the {} bytes left",
            cur.len()
        ));
    }
    let (mut r, rest) = cur.split_at(length as usize);
    *cur = rest;
    if r.is_empty() {
        return err("empty record");
    }
    let _attributes = r.get_i8();
    let timestamp_delta = read_varlong(&mut r)?;
    let offset_delta = read_varint(&mut r)?;
    let key = read_bytes(&mut r, "key")?;
    let value = read_bytes(&mut r, "value")?;
    let header_count = read_varint(&mut r)?;
    if header_count < 0 || header_count as usize > r.len() {
        return err(format!("header count {header_count} is out of range"));
    }
    let mut headers = Vec::with_capacity(header_count as usize);
    for _ in 0..header_count {
        let key = read_bytes(&mut r, "header key")?.unwrap_or_default();
        // As Kafka reads a header key (`Utils.utf8`: Java's decoder replaces malformed UTF-8
        // with U+FFFD): produce validation accepts such a key, so reading it must not fail.
        let key = String::from_utf8_lossy(&key).into_owned();
        let value = read_bytes(&mut r, "header value")?;
        headers.push(Header { key, value });
    }
    Ok(Record {
        offset_delta,
        timestamp_ms: base_timestamp_ms.wrapping_add(timestamp_delta),
        key,
        value,
        headers,
    })
}

fn read_bytes(cur: &mut &[u8], what: &str) -> Result<Option<Bytes>, FormatError> {
    let len = read_varint(cur)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if len > cur.len() {
        return err(format!(
            "{what} length {len} exceeds the {} bytes left",
            cur.len()
        ));
    }
    let (v, rest) = cur.split_at(len);
    *cur = rest;
    Ok(Some(Bytes::copy_from_slice(v)))
}

pub fn read_varlong(cur: &mut &[u8]) -> Result<i64, FormatError> {
    let mut raw: u64 = 0;
    for i in 0..10 {
        let Some((&byte, rest)) = cur.split_first() else {
            return err("truncated varint");
        };
        *cur = rest;
        if i == 9 && byte > 0x01 {
            // The 10th byte holds bit 63 only: more would be shifted out silently.
            return err("varlong does not fit 64 bits");
        }
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    err("varint longer than 10 bytes")
}

pub fn read_varint(cur: &mut &[u8]) -> Result<i32, FormatError> {
    let v = read_varlong(cur)?;
    i32::try_from(v).map_err(|_| FormatError(format!("varint {v} does not fit 32 bits")))
}

pub fn write_varlong(out: &mut BytesMut, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        out.put_u8((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.put_u8(raw as u8);
}

fn write_bytes(out: &mut BytesMut, v: Option<&[u8]>) {
    match v {
        None => write_varlong(out, -1),
        Some(b) => {
            write_varlong(out, b.len() as i64);
            out.put_slice(b);
        }
    }
}

fn decompress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    records_reader(codec, data, DECOMPRESSED_BYTES_MAX)
        .read_to_end(&mut out)
        .map_err(|e| match DecompressedTooLarge::of(&e) {
            Some(too_large) => FormatError(too_large.to_string()),
            None => FormatError(format!("{codec:?} decompression failed: {e}")),
        })?;
    Ok(out)
}

/// The error inside an [`std::io::Error`] from a [`records_reader`] whose output passed its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecompressedTooLarge {
    pub bytes_max: usize,
}

impl std::fmt::Display for DecompressedTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "records decompress to more than {} bytes",
            self.bytes_max
        )
    }
}

impl std::error::Error for DecompressedTooLarge {}

impl DecompressedTooLarge {
    /// The cap that `e` reports passing, if it is that error.
    pub fn of(e: &std::io::Error) -> Option<Self> {
        e.get_ref()?.downcast_ref::<Self>().copied()
    }

    fn io(bytes_max: usize) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, Self { bytes_max })
    }
}

/// A streaming reader of the records of a batch body compressed with `codec` (in Kafka's
/// framing of it: gzip members, snappy raw or xerial-framed, the LZ4 frame format, zstd
/// frames). Its output is capped: once more than `bytes_max` bytes would come out it fails with
/// [`DecompressedTooLarge`], and no codec buffer grows beyond the cap (a snappy block's declared
/// size is checked before its buffer is sized; the zstd window is limited to the cap), so a
/// decompression bomb costs CPU up to the cap and a bounded amount of memory.
pub fn records_reader<'a>(
    codec: Compression,
    body: &'a [u8],
    bytes_max: usize,
) -> Box<dyn Read + Send + 'a> {
    let capped = |inner: Box<dyn Read + Send + 'a>| -> Box<dyn Read + Send + 'a> {
        Box::new(Capped {
            inner,
            left: bytes_max,
            bytes_max,
        })
    };
    match codec {
        Compression::None => capped(Box::new(body)),
        // Java's GZIPInputStream reads concatenated members; so does this.
        Compression::Gzip => capped(Box::new(flate2::bufread::MultiGzDecoder::new(body))),
        Compression::Lz4 => capped(Box::new(lz4_flex::frame::FrameDecoder::new(body))),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(body) {
            Ok(mut decoder) => {
                // The window is what a frame makes the decoder allocate. One larger than the cap
                // is not needed by records that fit it, but at least 8 MiB (2^23) is allowed, the
                // most any non-ultra compression level uses when it does not know the size;
                // 2^27 is zstd's own default limit.
                let window_log = (usize::BITS - bytes_max.max(1).leading_zeros()).clamp(23, 27);
                match decoder.window_log_max(window_log) {
                    Ok(()) => capped(Box::new(decoder)),
                    Err(e) => Box::new(Failed(Some(e))),
                }
            }
            Err(e) => Box::new(Failed(Some(e))),
        },
        Compression::Snappy => capped(Box::new(SnappyReader::new(body, bytes_max))),
    }
}

/// Passes `inner` through, failing once more than `bytes_max` bytes came out in total.
struct Capped<R> {
    inner: R,
    left: usize,
    bytes_max: usize,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Ask for at most one byte past the cap, so passing it is seen without reading more.
        let want = buf.len().min(self.left.saturating_add(1));
        let n = self.inner.read(&mut buf[..want])?;
        if n > self.left {
            return Err(DecompressedTooLarge::io(self.bytes_max));
        }
        self.left -= n;
        Ok(n)
    }
}

/// A reader that fails with the error its codec gave when it was set up.
struct Failed(Option<std::io::Error>);

impl Read for Failed {
    fn read(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| std::io::Error::other("decoder setup failed")))
    }
}

const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
/// Magic, version and compatible version.
const XERIAL_HEADER_LEN: usize = 16;

/// Raw snappy, or the xerial framing the Java client uses (magic, two versions, then blocks of
/// `[len u32][raw snappy]`), decoded one block at a time.
struct SnappyReader<'a> {
    /// Blocks not decoded yet (the whole body for raw snappy).
    rest: &'a [u8],
    xerial: bool,
    block: Vec<u8>,
    at: usize,
    /// Bytes the blocks still to come may decode to.
    left: usize,
    bytes_max: usize,
}

impl<'a> SnappyReader<'a> {
    fn new(data: &'a [u8], bytes_max: usize) -> Self {
        let xerial = data.len() >= XERIAL_HEADER_LEN && data.starts_with(XERIAL_MAGIC);
        Self {
            rest: if xerial {
                &data[XERIAL_HEADER_LEN..]
            } else {
                data
            },
            xerial,
            block: Vec::new(),
            at: 0,
            left: bytes_max,
            bytes_max,
        }
    }

    /// Decodes the next block; false at the end.
    fn next_block(&mut self) -> std::io::Result<bool> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        if self.rest.is_empty() {
            return Ok(false);
        }
        let compressed = if self.xerial {
            if self.rest.len() < 4 {
                return Err(bad("truncated xerial snappy block".into()));
            }
            let len = (&self.rest[..4]).get_u32() as usize;
            let Some(block) = self.rest.get(4..4 + len) else {
                return Err(bad("xerial snappy block exceeds the data".into()));
            };
            self.rest = &self.rest[4 + len..];
            block
        } else {
            std::mem::take(&mut self.rest)
        };
        let len = snap::raw::decompress_len(compressed).map_err(|e| bad(format!("snappy: {e}")))?;
        if len > self.left {
            return Err(DecompressedTooLarge::io(self.bytes_max));
        }
        self.left -= len;
        self.block.clear();
        self.block.resize(len, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(|e| bad(format!("snappy: {e}")))?;
        self.at = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Bytes of `v` as a zigzag varint.
fn varlong_len(v: i64) -> usize {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while raw >= 0x80 {
        raw >>= 7;
        n += 1;
    }
    n
}

/// Bytes of a nullable length-prefixed field.
fn bytes_len(v: Option<&[u8]>) -> usize {
    match v {
        None => varlong_len(-1),
        Some(b) => varlong_len(b.len() as i64) + b.len(),
    }
}

/// Bytes of a record after its length prefix, at offset delta `delta`.
fn record_len(r: &Record, delta: i64, base_timestamp: i64) -> usize {
    1 + varlong_len(r.timestamp_ms.wrapping_sub(base_timestamp))
        + varlong_len(delta)
        + bytes_len(r.key.as_deref())
        + bytes_len(r.value.as_deref())
        + varlong_len(r.headers.len() as i64)
        + r.headers
            .iter()
            .map(|h| bytes_len(Some(h.key.as_bytes())) + bytes_len(h.value.as_deref()))
            .sum::<usize>()
}

/// The header fields [`write_batch`] writes (the length and CRC it computes).
struct BatchFields {
    base_offset: i64,
    partition_leader_epoch: i32,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

/// Writes an uncompressed v2 batch of `records`, record `i` at offset delta `delta(i, r)`.
/// Record sizes are computed first, so every record is written once, straight into a buffer of
/// the exact size.
fn write_batch(
    f: &BatchFields,
    records: &[Record],
    delta: impl Fn(usize, &Record) -> i64,
) -> Bytes {
    let body_len: usize = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let len = record_len(r, delta(i, r), f.base_timestamp);
            varlong_len(len as i64) + len
        })
        .sum();
    let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + body_len);
    out.put_i64(f.base_offset);
    out.put_i32((BATCH_HEADER_LEN - 12 + body_len) as i32);
    out.put_i32(f.partition_leader_epoch);
    out.put_i8(2);
    out.put_u32(0); // crc, below
    out.put_i16(f.attributes);
    out.put_i32(f.last_offset_delta);
    out.put_i64(f.base_timestamp);
    out.put_i64(f.max_timestamp);
    out.put_i64(f.producer_id);
    out.put_i16(f.producer_epoch);
    out.put_i32(f.base_sequence);
    out.put_i32(records.len() as i32);
    for (i, r) in records.iter().enumerate() {
        let delta = delta(i, r);
        write_varlong(&mut out, record_len(r, delta, f.base_timestamp) as i64);
        out.put_i8(0);
        write_varlong(&mut out, r.timestamp_ms.wrapping_sub(f.base_timestamp));
        write_varlong(&mut out, delta);
        write_bytes(&mut out, r.key.as_deref());
        write_bytes(&mut out, r.value.as_deref());
        write_varlong(&mut out, r.headers.len() as i64);
        for h in &r.headers {
            write_bytes(&mut out, Some(h.key.as_bytes()));
            write_bytes(&mut out, h.value.as_deref());
        }
    }
    debug_assert_eq!(out.len(), BATCH_HEADER_LEN + body_len);
    let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

/// Encodes an uncompressed v2 batch (CreateTime) at `base_offset` whose records keep their own
/// `offset_delta` (gaps allowed) and which ends at `last_offset_delta`.
pub fn encode_batch_with_deltas(
    base_offset: i64,
    records: &[Record],
    last_offset_delta: i32,
) -> Bytes {
    let fields = BatchFields {
        base_offset,
        partition_leader_epoch: -1,
        attributes: 0,
        last_offset_delta,
        base_timestamp: records.iter().map(|r| r.timestamp_ms).min().unwrap_or(0),
        max_timestamp: records.iter().map(|r| r.timestamp_ms).max().unwrap_or(0),
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
    write_batch(&fields, records, |_, r| i64::from(r.offset_delta))
}

/// Encodes an uncompressed v2 batch (CreateTime) at `base_offset`; record offset deltas are
/// their positions and timestamps are absolute in `records`.
pub fn encode_batch(base_offset: i64, records: &[Record]) -> Bytes {
    let fields = BatchFields {
        base_offset,
        partition_leader_epoch: -1,
        attributes: 0, // no compression, CreateTime
        last_offset_delta: records.len().saturating_sub(1) as i32,
        base_timestamp: records.iter().map(|r| r.timestamp_ms).min().unwrap_or(0),
        max_timestamp: records.iter().map(|r| r.timestamp_ms).max().unwrap_or(0),
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
    write_batch(&fields, records, |i, _| i as i64)
}

/// Re-encodes `batch` with only `records` (a subset of its records, in order), keeping what log
/// compaction must keep (as Kafka's cleaner does): the base offset, every record's offset delta,
/// the last offset delta (so the batch still ends where it ended), the producer id, epoch and
/// base sequence, the partition leader epoch, the attributes (transactional, control, timestamp
/// type) and the codec: the kept records are compressed again with the batch's own codec (snappy
/// as raw snappy, as librdkafka writes it; lz4 as an LZ4 frame). With no records it is an empty,
/// uncompressed batch that carries the producer's information.
pub fn encode_batch_subset(batch: &Batch, records: &[Record]) -> Result<Bytes, FormatError> {
    let base_timestamp = records
        .iter()
        .map(|r| r.timestamp_ms)
        .min()
        .unwrap_or(batch.base_timestamp_ms);
    let max_timestamp = if batch.log_append_time() || records.is_empty() {
        batch.max_timestamp_ms
    } else {
        records
            .iter()
            .map(|r| r.timestamp_ms)
            .max()
            .unwrap_or(batch.max_timestamp_ms)
    };
    let fields = BatchFields {
        base_offset: batch.base_offset,
        partition_leader_epoch: batch.partition_leader_epoch,
        attributes: batch.attributes & !0x07,
        last_offset_delta: batch.last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id: batch.producer_id,
        producer_epoch: batch.producer_epoch,
        base_sequence: batch.base_sequence,
    };
    let plain = write_batch(&fields, records, |_, r| i64::from(r.offset_delta));
    let codec = batch.compression();
    if codec == Compression::None || records.is_empty() {
        return Ok(plain);
    }
    let body = compress(codec, &plain[BATCH_HEADER_LEN..])?;
    let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + body.len());
    out.extend_from_slice(&plain[..BATCH_HEADER_LEN]);
    out.extend_from_slice(&body);
    let length = i32::try_from(out.len() - 12)
        .map_err(|_| FormatError("a recompressed batch is too large".to_string()))?;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&batch.attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

/// Compresses a batch's records section with `codec` (what [`records_reader`] reads back).
pub(crate) fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, FormatError> {
    use std::io::Write;
    let failed = |e: std::io::Error| FormatError(format!("{codec:?} compression failed: {e}"));
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(data).map_err(failed)?;
            enc.finish().map_err(failed)
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(|e| FormatError(format!("Snappy compression failed: {e}"))),
        Compression::Lz4 => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(data).map_err(failed)?;
            enc.finish()
                .map_err(|e| FormatError(format!("Lz4 compression failed: {e}")))
        }
        Compression::Zstd => zstd::bulk::compress(data, 3).map_err(failed),
    }
}

/// A record batch with no records covering offsets `base_offset..base_offset + message_count`
/// (what Kafka's log compaction leaves when it removes every record of a batch): a consumer
/// takes its next offset from the batch's last offset, so it moves past the range.
pub fn empty_batch(base_offset: i64, message_count: u32) -> Bytes {
    let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN);
    out.put_i64(base_offset);
    out.put_i32((BATCH_HEADER_LEN - 12) as i32);
    out.put_i32(-1); // partition leader epoch
    out.put_i8(2);
    out.put_u32(0); // crc, below
    out.put_i16(0);
    out.put_i32(i32::try_from(message_count.max(1) - 1).unwrap_or(i32::MAX));
    out.put_i64(-1);
    out.put_i64(-1);
    out.put_i64(-1);
    out.put_i16(-1);
    out.put_i32(-1);
    out.put_i32(0);
    let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Found by the fuzz target `kafka_batch` (fuzz/regressions/kafka_batch): a batch whose
    /// header key is not UTF-8 passed produce validation (as in Kafka) and was stored, but this
    /// decoder refused it, so Pulsar consumers and conversions of that entry failed.
    #[test]
    fn header_key_not_utf8_decodes_lossily() {
        let mut batch = encode_batch(
            0,
            &[Record {
                offset_delta: 0,
                timestamp_ms: 1,
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: vec![Header {
                    key: "kX".into(),
                    value: None,
                }],
            }],
        )
        .to_vec();
        let at = batch
            .windows(2)
            .position(|w| w == b"kX")
            .expect("header key")
            + 1;
        batch[at] = 0xff;
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
        batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        let decoded = decode_batch(&batch).expect("decodes");
        assert_eq!(decoded.records[0].headers[0].key, "k\u{fffd}");
    }

    fn record(i: i64) -> Record {
        Record {
            offset_delta: i as i32,
            timestamp_ms: 1_700_000_000_000 + i,
            key: (i % 2 == 0).then(|| Bytes::from(vec![0xff, i as u8])),
            value: (i % 3 != 0).then(|| Bytes::from(format!("v{i}"))),
            headers: vec![
                Header {
                    key: "h".into(),
                    value: Some(Bytes::from_static(&[0xc3, 0x28])),
                },
                Header {
                    key: "n".into(),
                    value: None,
                },
            ],
        }
    }

    #[test]
    fn encode_batch_sizes_multi_byte_lengths_exactly() {
        // lengths around the 1-, 2- and 3-byte varint boundaries, far-apart timestamps
        let records: Vec<Record> = [0usize, 1, 63, 64, 127, 128, 8191, 8192, 70_000]
            .iter()
            .enumerate()
            .map(|(i, &n)| Record {
                offset_delta: i as i32,
                timestamp_ms: if i % 2 == 0 { 1_700_000_000_000 } else { 5 },
                key: (n > 0).then(|| Bytes::from(vec![b'k'; n / 2])),
                value: Some(Bytes::from(vec![i as u8; n])),
                headers: vec![Header {
                    key: "h".repeat(n % 200),
                    value: (i % 3 != 0).then(|| Bytes::from(vec![7u8; n / 3])),
                }],
            })
            .collect();
        let bytes = encode_batch(9, &records);
        let length = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        assert_eq!(length as usize, bytes.len() - 12);
        let batch = decode_batch(&bytes).unwrap();
        assert_eq!(batch.base_offset, 9);
        assert_eq!(batch.records, records);
        assert_eq!(batch.last_offset_delta, records.len() as i32 - 1);
        assert_eq!(batch.max_timestamp_ms, 1_700_000_000_000);
    }

    #[test]
    fn round_trip() {
        let records: Vec<Record> = (0..5).map(record).collect();
        let bytes = encode_batch(42, &records);
        let batch = decode_batch(&bytes).unwrap();
        assert_eq!(batch.base_offset, 42);
        assert_eq!(batch.records, records);
        assert_eq!(batch.max_timestamp_ms, 1_700_000_000_004);
    }

    #[test]
    fn empty_batch_covers_its_offsets() {
        let batch = empty_batch(40, 3);
        let decoded = decode_batch(&batch).unwrap();
        assert_eq!(decoded.base_offset, 40);
        assert_eq!(decoded.last_offset_delta, 2);
        assert!(decoded.records.is_empty());
    }

    #[test]
    fn capped_reader_stops_every_codec_at_its_cap() {
        let data = vec![7u8; 100_000];
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, &data).unwrap();
            e.finish().unwrap()
        };
        let lz4 = {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            std::io::Write::write_all(&mut e, &data).unwrap();
            e.finish().unwrap()
        };
        let snappy = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for chunk in data.chunks(32 * 1024) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            xerial.extend_from_slice(&(block.len() as u32).to_be_bytes());
            xerial.extend_from_slice(&block);
        }
        let zstd = zstd::encode_all(&data[..], 1).unwrap();
        for (codec, body) in [
            (Compression::Gzip, gz),
            (Compression::Snappy, snappy),
            (Compression::Snappy, xerial),
            (Compression::Lz4, lz4),
            (Compression::Zstd, zstd),
        ] {
            let mut out = Vec::new();
            records_reader(codec, &body, data.len())
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data, "{codec:?}");
            let e = records_reader(codec, &body, data.len() - 1)
                .read_to_end(&mut Vec::new())
                .unwrap_err();
            assert_eq!(
                DecompressedTooLarge::of(&e),
                Some(DecompressedTooLarge {
                    bytes_max: data.len() - 1
                }),
                "{codec:?}: {e}"
            );
        }
    }

    #[test]
    fn bad_crc_is_an_error() {
        let mut bytes = encode_batch(0, &[record(1)]).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(decode_batch(&bytes).is_err());
    }

    #[test]
    fn compressed_records_decode() {
        let plain = encode_batch(0, &(0..3).map(record).collect::<Vec<_>>());
        let records_bytes = &plain[BATCH_HEADER_LEN..];
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, records_bytes).unwrap();
            e.finish().unwrap()
        };
        let lz4 = {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            std::io::Write::write_all(&mut e, records_bytes).unwrap();
            e.finish().unwrap()
        };
        let snappy = snap::raw::Encoder::new()
            .compress_vec(records_bytes)
            .unwrap();
        let zstd = zstd::encode_all(records_bytes, 1).unwrap();
        for (codec, data) in [(1i16, gz), (2, snappy), (3, lz4), (4, zstd)] {
            let mut batch = BytesMut::from(&plain[..BATCH_HEADER_LEN]);
            batch.put_slice(&data);
            let len = (batch.len() - 12) as i32;
            batch[8..12].copy_from_slice(&len.to_be_bytes());
            batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&codec.to_be_bytes());
            let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
            batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
            let decoded = decode_batch(&batch).unwrap();
            assert_eq!(decoded.records.len(), 3, "codec {codec}");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_batch(&data);
        }

        #[test]
        fn varints_round_trip(v in any::<i64>()) {
            let mut out = BytesMut::new();
            write_varlong(&mut out, v);
            let mut cur = &out[..];
            prop_assert_eq!(read_varlong(&mut cur).unwrap(), v);
        }
    }

    #[test]
    fn a_varlong_past_64_bits_is_an_error() {
        let mut bytes = [0xffu8; 10];
        bytes[9] = 0x01;
        assert!(read_varlong(&mut &bytes[..]).is_ok());
        bytes[9] = 0x02;
        let e = read_varlong(&mut &bytes[..]).unwrap_err();
        assert!(e.0.contains("does not fit 64 bits"), "{}", e.0);
    }
}
