//! Produce validation: a record batch is checked the way Kafka's broker-side log validator
//! checks it before it is stored, because a batch is stored as the exact bytes a fetch returns
//! and its header's counts move the partition's offsets. A batch whose header lies about its
//! records (a record count of 2^31 over one record, a record length past the batch, a header
//! count of -1, a codec id of 7, a body that does not decompress, a gzip bomb) is refused here,
//! before anything is appended.
//!
//! Sans-io and pure: [`validate_batch`] is a function of the batch bytes and [`Limits`], so a
//! fuzz target can call it. Compressed records are read through a streaming decoder whose
//! output is capped ([`Limits::decompressed_bytes_max`]); the decompressed batch is never held
//! whole (one record at a time), and the stored bytes stay the bytes produced (never
//! re-compressed).
//!
//! What is checked, with the error Kafka answers:
//! - header: length, CRC32C -> `CORRUPT_MESSAGE`; magic 0/1 (message format v0/v1, which
//!   Produce v3+ never carries) -> `INVALID_RECORD`, as Kafka 4 answers; codec id 5-7 ->
//!   `UNSUPPORTED_COMPRESSION_TYPE`;
//! - batch (Kafka's `validateBatch`): record count > 0 and equal to `lastOffsetDelta + 1`, no
//!   control batch from a client, a base sequence >= 0 when a producer id is set ->
//!   `INVALID_RECORD`;
//! - records: exactly `record count` records, each with its length, varints (at most 5 bytes for
//!   32-bit fields, 10 for 64-bit), key/value/header lengths inside the record and the record
//!   consumed exactly, a non-negative header count, offset deltas `0..n` unless the entry format
//!   re-encodes the batch (stored as produced, its records' offsets must be the ones the header
//!   assigns: Kafka rewrites such batches, Magnetar never rewrites a stored batch), nothing after
//!   the last record -> `INVALID_RECORD` (Kafka's `InvalidRecordException` from its record
//!   iterator); a body the codec cannot decode -> `CORRUPT_MESSAGE`; decompressed records past
//!   the cap -> `MESSAGE_TOO_LARGE`;
//! - each record on its own (Kafka's `validateRecord`, KIP-467): a record without a key on a
//!   compacted topic -> `INVALID_RECORD` (`validateKey`); else a batch marked LogAppendTime by
//!   the client, or a CreateTime record outside `[now - before_max, now + after_max]` ->
//!   `INVALID_TIMESTAMP` (`validateTimestamp`). These do not stop the scan: every such record
//!   is listed ([`Refusal::Records`], the produce response's `record_errors`), because clients
//!   fail exactly the listed records and report the batch's others as failed by a different
//!   record (librdkafka's `_INVALID_DIFFERENT_RECORD`). `INVALID_TIMESTAMP` wins when both occur,
//!   as in Kafka's `processRecordErrors`.

use std::io::{BufRead, BufReader, Read};

use kafka_protocol::ResponseError;
use magnetar_format::kafka::{records_reader, Compression, DecompressedTooLarge};

use crate::batch::{self, BatchError, BatchHeader, HEADER_LEN};

/// What a batch is validated against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes the records of one batch may decompress to.
    pub decompressed_bytes_max: usize,
    /// Topic `message.timestamp.type`: LogAppendTime skips the CreateTime range check.
    pub log_append_time: bool,
    /// KIP-937 `message.timestamp.before.max.ms`: how far in the past a CreateTime timestamp
    /// may be (`i64::MAX`: no limit, Kafka's default).
    pub timestamp_before_max_ms: i64,
    /// KIP-937 `message.timestamp.after.max.ms`: how far in the future.
    pub timestamp_after_max_ms: i64,
    /// The broker's clock, for the timestamp range.
    pub now_ms: i64,
    /// Topic `cleanup.policy` includes `compact`: every record needs a key (Kafka's
    /// `validateKey`).
    pub key_required: bool,
    /// Whether the batch will be re-encoded with offset deltas `0..n` (entry formats
    /// `mixed_kafka` and `pulsar`, as Kafka rewrites such a compressed batch): then other
    /// deltas are accepted. Stored as produced (`kafka`), the deltas are what consumers read as
    /// offsets, so any other than `0..n` are refused.
    pub offset_deltas_rewritten: bool,
}

/// Default for [`Limits::decompressed_bytes_max`] (`kafka.validation_decompressed_bytes_max`).
pub const DECOMPRESSED_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            decompressed_bytes_max: DECOMPRESSED_BYTES_MAX_DEFAULT,
            log_append_time: false,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: i64::MAX,
            now_ms: 0,
            key_required: false,
            offset_deltas_rewritten: false,
        }
    }
}

/// A batch that passed: its header and what its records say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidatedBatch {
    pub header: BatchHeader,
    /// The largest record timestamp (the header's max timestamp is the client's claim; this is
    /// what the records hold, as Kafka computes it).
    pub max_timestamp_ms: i64,
    /// Bytes of the records after decompression.
    pub records_bytes: usize,
}

/// Why a batch is refused; [`Refusal::code`] is the Kafka error for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The batch's framing or CRC is broken, or its body cannot be decompressed.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    #[error("message format v{0} (magic {0}) is not supported: Produce v3 and later carry record batch v2 (magic 2) only")]
    UnsupportedMagic(i8),
    #[error("unknown compression codec id {0}")]
    UnsupportedCompression(i16),
    /// The batch's header disagrees with its records, or a record is malformed; `record` is the
    /// index of the record in the batch when one is to blame.
    #[error("invalid record batch: {message}")]
    InvalidRecord {
        record: Option<i32>,
        message: String,
    },
    /// Records refused one by one (a missing key on a compacted topic, a timestamp out of
    /// range): every one found, in order, at most [`RECORD_ERRORS_MAX`] listed.
    #[error("{}", records_message(.errors, *.total))]
    Records {
        errors: Vec<RecordError>,
        /// How many records were refused (more than `errors` holds past the limit).
        total: usize,
    },
    #[error("records decompress to more than {bytes_max} bytes")]
    TooLarge { bytes_max: usize },
}

impl Refusal {
    /// The Kafka error code answered for this refusal.
    pub fn code(&self) -> i16 {
        match self {
            Refusal::Corrupt(_) => ResponseError::CorruptMessage.code(),
            Refusal::UnsupportedMagic(_) => ResponseError::InvalidRecord.code(),
            Refusal::UnsupportedCompression(_) => ResponseError::UnsupportedCompressionType.code(),
            Refusal::InvalidRecord { .. } => ResponseError::InvalidRecord.code(),
            Refusal::Records { errors, .. } if errors.iter().any(|e| e.timestamp) => {
                ResponseError::InvalidTimestamp.code()
            }
            Refusal::Records { .. } => ResponseError::InvalidRecord.code(),
            Refusal::TooLarge { .. } => ResponseError::MessageTooLarge.code(),
        }
    }

    /// The records to blame with their messages (index in the batch), for the produce
    /// response's `record_errors` (KIP-467).
    pub fn record_errors(&self) -> Vec<(i32, String)> {
        match self {
            Refusal::InvalidRecord {
                record: Some(record),
                ..
            } => vec![(*record, self.to_string())],
            Refusal::Records { errors, .. } => errors
                .iter()
                .map(|e| (e.record, e.message.clone()))
                .collect(),
            Refusal::InvalidRecord { record: None, .. }
            | Refusal::Corrupt(_)
            | Refusal::UnsupportedMagic(_)
            | Refusal::UnsupportedCompression(_)
            | Refusal::TooLarge { .. } => Vec::new(),
        }
    }
}

/// Most record errors one refusal lists: a 64 MiB batch of tiny keyless records would
/// otherwise answer millions of messages. The records past it are counted, not listed (a client
/// reports them as failed by a different record).
pub const RECORD_ERRORS_MAX: usize = 1000;

/// One refused record (Kafka's `RecordError`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    /// Index of the record in its batch.
    pub record: i32,
    pub message: String,
    /// A timestamp error (`INVALID_TIMESTAMP`), else `INVALID_RECORD`.
    pub timestamp: bool,
}

/// The partition's `error_message` for refused records: their count and the first three, as
/// Kafka's `processRecordErrors` words it.
fn records_message(errors: &[RecordError], total: usize) -> String {
    let first: Vec<String> = errors
        .iter()
        .take(3)
        .map(|e| format!("record {}: {}", e.record, e.message))
        .collect();
    let reason = if errors.iter().any(|e| e.timestamp) {
        "invalid timestamp"
    } else {
        "invalid records"
    };
    format!(
        "{total} record(s) rejected due to {reason}; the first three at most: {}",
        first.join("; ")
    )
}

impl From<BatchError> for Refusal {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::UnsupportedMagic(magic) => Refusal::UnsupportedMagic(magic),
            BatchError::BadRecordCount(count) => Refusal::InvalidRecord {
                record: None,
                message: format!("invalid reported count for record batch: {count}"),
            },
            BatchError::Truncated { .. }
            | BatchError::BadLength(_)
            | BatchError::CrcMismatch { .. } => Refusal::Corrupt(e.to_string()),
        }
    }
}

fn invalid(record: Option<i32>, message: impl Into<String>) -> Refusal {
    Refusal::InvalidRecord {
        record,
        message: message.into(),
    }
}

/// Validates one whole record batch (`batch` is exactly one batch). Nothing is allocated in
/// proportion to any count or length the batch declares: uncompressed records are read in
/// place, compressed ones one record at a time from a decoder capped at
/// [`Limits::decompressed_bytes_max`].
pub fn validate_batch(batch: &[u8], limits: &Limits) -> Result<ValidatedBatch, Refusal> {
    let header = batch::parse_header(batch)?;
    if header.size != batch.len() {
        return Err(Refusal::Corrupt(format!(
            "batch length says {} bytes, {} given",
            header.size,
            batch.len()
        )));
    }
    batch::verify_crc(batch)?;
    let codec = header.compression();
    let Some(compression) = Compression::from_id(codec) else {
        return Err(Refusal::UnsupportedCompression(codec));
    };
    // Kafka's validateBatch, for appends from clients.
    let count = header.record_count;
    if i64::from(header.last_offset_delta) + 1 != i64::from(count) {
        return Err(invalid(
            None,
            format!(
                "inconsistent batch offset range [0, {}] and count of records {count}",
                header.last_offset_delta
            ),
        ));
    }
    if header.is_control() {
        return Err(invalid(
            None,
            "clients are not allowed to write control records",
        ));
    }
    if header.producer_id >= 0 && header.base_sequence < 0 {
        return Err(invalid(
            None,
            format!(
                "invalid sequence number {} in record batch with producer id {}",
                header.base_sequence, header.producer_id
            ),
        ));
    }
    let body = &batch[HEADER_LEN..];
    let mut check = Check {
        header,
        limits,
        max_timestamp_ms: -1,
        records_bytes: 0,
        record_errors: Vec::new(),
        record_errors_total: 0,
    };
    match compression {
        Compression::None => {
            if body.len() > limits.decompressed_bytes_max {
                return Err(Refusal::TooLarge {
                    bytes_max: limits.decompressed_bytes_max,
                });
            }
            check.slice(body)?;
        }
        other => {
            let reader = records_reader(other, body, limits.decompressed_bytes_max);
            check.stream(BufReader::with_capacity(16 * 1024, reader))?;
        }
    }
    if check.record_errors_total > 0 {
        return Err(Refusal::Records {
            errors: check.record_errors,
            total: check.record_errors_total,
        });
    }
    Ok(ValidatedBatch {
        header,
        max_timestamp_ms: check.max_timestamp_ms,
        records_bytes: check.records_bytes,
    })
}

struct Check<'l> {
    header: BatchHeader,
    limits: &'l Limits,
    max_timestamp_ms: i64,
    records_bytes: usize,
    /// Records refused so far (the scan goes on: every one is reported).
    record_errors: Vec<RecordError>,
    record_errors_total: usize,
}

impl Check<'_> {
    /// Uncompressed records, read in place.
    fn slice(&mut self, mut body: &[u8]) -> Result<(), Refusal> {
        for i in 0..self.header.record_count {
            let length = varint(&mut body).map_err(|m| invalid(Some(i), m))?;
            let length = record_length(length, body.len(), i)?;
            let (record, rest) = body.split_at(length);
            body = rest;
            self.record(i, record)?;
            self.records_bytes += length;
        }
        if !body.is_empty() {
            return Err(invalid(
                None,
                format!(
                    "incorrect declared batch size, {} bytes remain after the last record",
                    body.len()
                ),
            ));
        }
        Ok(())
    }

    /// Decompressed records, one at a time through a reused buffer.
    fn stream(&mut self, mut reader: impl BufRead) -> Result<(), Refusal> {
        let bytes_max = self.limits.decompressed_bytes_max;
        let mut record = Vec::new();
        for i in 0..self.header.record_count {
            let length = read_varint(&mut reader).map_err(|e| e.refusal(Some(i)))?;
            let left = bytes_max - self.records_bytes;
            if usize::try_from(length).is_ok_and(|n| n > left) {
                // Past the cap, if the records are really there (a bomb), else a lying length:
                // read on (into nothing) to tell which.
                let more = std::io::copy(
                    &mut (&mut reader).take(left as u64 + 1),
                    &mut std::io::sink(),
                )
                .map_err(|e| io_refusal(&e))?;
                if more > left as u64 {
                    return Err(Refusal::TooLarge { bytes_max });
                }
            }
            let length = record_length(length, left, i)?;
            record.clear();
            let got = (&mut reader)
                .take(length as u64)
                .read_to_end(&mut record)
                .map_err(|e| io_refusal(&e))?;
            if got != length {
                return Err(invalid(
                    Some(i),
                    "incorrect declared batch size, premature end of records",
                ));
            }
            self.record(i, &record)?;
            self.records_bytes += length;
        }
        let mut one = [0u8; 1];
        match reader.read(&mut one) {
            Ok(0) => Ok(()),
            Ok(_) => Err(invalid(
                None,
                "incorrect declared batch size, records remain after the last record",
            )),
            Err(e) => Err(io_refusal(&e)),
        }
    }

    /// One record's body (after its length): Kafka's `DefaultRecord.readFrom` checks, plus
    /// offset deltas in order and the timestamp policy.
    fn record(&mut self, i: i32, mut r: &[u8]) -> Result<(), Refusal> {
        let bad = |m: String| invalid(Some(i), m);
        let Some((_attributes, rest)) = r.split_first() else {
            return Err(bad("empty record".into()));
        };
        r = rest;
        let timestamp_delta = varlong(&mut r).map_err(bad)?;
        let offset_delta = varint(&mut r).map_err(bad)?;
        if offset_delta != i && !self.limits.offset_deltas_rewritten {
            return Err(bad(format!(
                "record {i} has offset delta {offset_delta}; deltas must be 0..{}",
                self.header.record_count
            )));
        }
        let key_null = skip_bytes(&mut r, "key", true).map_err(bad)?;
        skip_bytes(&mut r, "value", true).map_err(bad)?;
        let headers = varint(&mut r).map_err(bad)?;
        if headers < 0 {
            return Err(bad(format!("invalid negative header count {headers}")));
        }
        for _ in 0..headers {
            skip_bytes(&mut r, "header key", false).map_err(bad)?;
            skip_bytes(&mut r, "header value", true).map_err(bad)?;
        }
        if !r.is_empty() {
            return Err(bad(format!(
                "invalid record size: {} bytes remain after its last header",
                r.len()
            )));
        }
        let Some(timestamp) = self.header.base_timestamp.checked_add(timestamp_delta) else {
            return Err(bad(format!(
                "timestamp delta {timestamp_delta} overflows the base timestamp"
            )));
        };
        // Kafka's validateRecord: the key first, then the timestamp; one error per record.
        let error = if key_null && self.limits.key_required {
            Some(RecordError {
                record: i,
                message: "compacted topic cannot accept a record without a key".into(),
                timestamp: false,
            })
        } else {
            self.timestamp(i, timestamp)
        };
        if let Some(error) = error {
            self.record_errors_total += 1;
            if self.record_errors.len() < RECORD_ERRORS_MAX {
                self.record_errors.push(error);
            }
        }
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp);
        Ok(())
    }

    /// Kafka's `validateTimestamp`.
    fn timestamp(&self, i: i32, timestamp: i64) -> Option<RecordError> {
        let limits = self.limits;
        let refused = |message: String| {
            Some(RecordError {
                record: i,
                message,
                timestamp: true,
            })
        };
        if !limits.log_append_time && timestamp != -1 {
            let earliest = limits.now_ms.saturating_sub(limits.timestamp_before_max_ms);
            let latest = limits.now_ms.saturating_add(limits.timestamp_after_max_ms);
            if timestamp < earliest || timestamp > latest {
                return refused(format!(
                    "timestamp {timestamp} of record {i} is out of range; it should be within [{earliest}, {latest}]"
                ));
            }
        }
        if self.header.attributes & 0x08 != 0 {
            return refused("producer should not set timestamp type to LogAppendTime".into());
        }
        None
    }
}

fn record_length(length: i32, left: usize, i: i32) -> Result<usize, Refusal> {
    match usize::try_from(length) {
        Ok(n) if n <= left => Ok(n),
        _ => Err(invalid(
            Some(i),
            format!("invalid record size {length}, {left} bytes left in the batch"),
        )),
    }
}

fn io_refusal(e: &std::io::Error) -> Refusal {
    match DecompressedTooLarge::of(e) {
        Some(too_large) => Refusal::TooLarge {
            bytes_max: too_large.bytes_max,
        },
        None => Refusal::Corrupt(format!("records cannot be decompressed: {e}")),
    }
}

/// A zigzag varint of at most 5 bytes that fits 32 bits.
fn varint(r: &mut &[u8]) -> Result<i32, String> {
    let mut raw: u32 = 0;
    for i in 0..5 {
        let Some((&byte, rest)) = r.split_first() else {
            return Err("truncated varint".into());
        };
        *r = rest;
        if i == 4 && byte > 0x0f {
            return Err("varint does not fit 32 bits".into());
        }
        raw |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32));
        }
    }
    Err("varint longer than 5 bytes".into())
}

/// A zigzag varlong of at most 10 bytes that fits 64 bits (the record decoder's own reader).
fn varlong(r: &mut &[u8]) -> Result<i64, String> {
    magnetar_format::kafka::read_varlong(r).map_err(|e| e.0)
}

/// Skips a length-prefixed field; -1 is null where `nullable`. Returns whether it was null.
fn skip_bytes(r: &mut &[u8], what: &str, nullable: bool) -> Result<bool, String> {
    let len = varint(r)?;
    if len == -1 && nullable {
        return Ok(true);
    }
    match usize::try_from(len) {
        Ok(n) if n <= r.len() => {
            *r = &r[n..];
            Ok(false)
        }
        _ => Err(format!(
            "invalid {what} length {len}, {} bytes left in the record",
            r.len()
        )),
    }
}

enum StreamError {
    Io(std::io::Error),
    Varint(String),
}

impl StreamError {
    fn refusal(self, record: Option<i32>) -> Refusal {
        match self {
            StreamError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => invalid(
                record,
                "incorrect declared batch size, premature end of records",
            ),
            StreamError::Io(e) => io_refusal(&e),
            StreamError::Varint(m) => invalid(record, m),
        }
    }
}

/// A record length varint from a stream (the stream's end inside it is a premature end).
fn read_varint(reader: &mut impl BufRead) -> Result<i32, StreamError> {
    let mut bytes = [0u8; 5];
    for i in 0..5 {
        let mut one = [0u8; 1];
        reader.read_exact(&mut one).map_err(StreamError::Io)?;
        bytes[i] = one[0];
        if one[0] & 0x80 == 0 {
            return varint(&mut &bytes[..=i]).map_err(StreamError::Varint);
        }
    }
    Err(StreamError::Varint("varint longer than 5 bytes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::encode_batch;
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression as Codec, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use proptest::prelude::*;

    const CODECS: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    fn limits() -> Limits {
        Limits {
            now_ms: 1_000_000,
            ..Limits::default()
        }
    }

    /// Writes `crc32c(bytes[21..])` into the CRC field, as a lying client would.
    fn fix_crc(bytes: &mut [u8]) {
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    fn put_varint(out: &mut BytesMut, v: i64) {
        magnetar_format::kafka::write_varlong(out, v);
    }

    /// A batch with `count`/`last_offset_delta` as given in the header and `records` as the
    /// body, compressed with `codec` (raw bytes, so the body may be anything).
    fn raw_batch(count: i32, last_offset_delta: i32, codec: i16, body: &[u8]) -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_i64(0);
        b.put_i32((HEADER_LEN - 12 + body.len()) as i32);
        b.put_i32(0);
        b.put_i8(2);
        b.put_u32(0);
        b.put_i16(codec);
        b.put_i32(last_offset_delta);
        b.put_i64(1000);
        b.put_i64(1000);
        b.put_i64(-1);
        b.put_i16(-1);
        b.put_i32(-1);
        b.put_i32(count);
        b.put_slice(body);
        let mut v = b.to_vec();
        fix_crc(&mut v);
        v
    }

    /// One record's bytes (with its length prefix): offset delta `delta`, a 5-byte value.
    fn record(delta: i64) -> BytesMut {
        let mut body = BytesMut::new();
        body.put_i8(0);
        put_varint(&mut body, 0); // timestamp delta
        put_varint(&mut body, delta);
        put_varint(&mut body, -1); // null key
        put_varint(&mut body, 5);
        body.put_slice(b"value");
        put_varint(&mut body, 0); // headers
        let mut out = BytesMut::new();
        put_varint(&mut out, body.len() as i64);
        out.put_slice(&body);
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, data).unwrap();
        e.finish().unwrap()
    }

    fn assert_invalid(result: Result<ValidatedBatch, Refusal>, what: &str) -> Refusal {
        let refusal = result.expect_err(what);
        assert_eq!(
            refusal.code(),
            ResponseError::InvalidRecord.code(),
            "{what}: {refusal}"
        );
        refusal
    }

    /// A message set of format v1 (one magic 1 message, as a 0.10 client writes it) in a
    /// Produce v3+ request: INVALID_RECORD with the reason, as Kafka 4 answers.
    #[test]
    fn a_magic_1_message_set_is_an_invalid_record_with_the_reason() {
        let mut message = BytesMut::new();
        message.put_u32(0); // CRC (not read: the magic is checked first)
        message.put_i8(1); // magic
        message.put_i8(0); // attributes
        message.put_i64(1_700_000_000_000); // timestamp
        message.put_i32(-1); // null key
        message.put_i32(1);
        message.put_u8(b'v');
        let mut set = BytesMut::new();
        set.put_i64(0);
        set.put_i32(message.len() as i32);
        set.put_slice(&message);
        for magic in [0i8, 1] {
            set[16] = magic as u8;
            let refusal = validate_batch(&set, &limits()).unwrap_err();
            assert_eq!(refusal, Refusal::UnsupportedMagic(magic));
            assert_eq!(refusal.code(), ResponseError::InvalidRecord.code());
            assert!(refusal.to_string().contains("record batch v2"), "{refusal}");
        }
    }

    #[test]
    fn valid_batches_of_every_codec_pass() {
        for codec in CODECS {
            let batch = encode_batch(16, 1000, codec, Some((7, 1, 0)));
            let validated = validate_batch(&batch, &limits()).unwrap();
            assert_eq!(validated.header.record_count, 16, "{codec:?}");
            assert_eq!(validated.max_timestamp_ms, 1150, "{codec:?}");
            assert!(validated.records_bytes > 16 * 20, "{codec:?}");
        }
    }

    #[test]
    fn a_batch_lying_about_its_record_count_is_refused() {
        let one = record(0);
        // The batch: count 2^31 - 1 over one record (last offset delta 0).
        let lying = raw_batch(i32::MAX, 0, 0, &one);
        let refusal = assert_invalid(validate_batch(&lying, &limits()), "count");
        assert!(
            refusal.to_string().contains("count of records"),
            "{refusal}"
        );
        // The same with a consistent last offset delta: the records are not there.
        let lying = raw_batch(i32::MAX, i32::MAX - 1, 0, &one);
        assert_invalid(validate_batch(&lying, &limits()), "premature end");
        // And compressed.
        let lying = raw_batch(i32::MAX, i32::MAX - 1, 1, &gzip(&one));
        assert_invalid(validate_batch(&lying, &limits()), "premature end, gzip");
        // Fewer records claimed than present: bytes remain.
        let two = [record(0), record(1)].concat();
        assert_invalid(validate_batch(&raw_batch(1, 0, 0, &two), &limits()), "rest");
        assert_invalid(
            validate_batch(&raw_batch(1, 0, 1, &gzip(&two)), &limits()),
            "rest, gzip",
        );
        // Zero and negative counts.
        assert_invalid(validate_batch(&raw_batch(0, -1, 0, &[]), &limits()), "zero");
        assert_invalid(validate_batch(&raw_batch(-1, -2, 0, &[]), &limits()), "neg");
        // And the honest batch passes.
        assert!(validate_batch(&raw_batch(2, 1, 0, &two), &limits()).is_ok());
        assert!(validate_batch(&raw_batch(2, 1, 1, &gzip(&two)), &limits()).is_ok());
    }

    #[test]
    fn lying_lengths_and_counts_inside_records_are_refused() {
        let cases: Vec<(&str, BytesMut)> = vec![
            ("record length 0x7fffffff", {
                let mut b = BytesMut::new();
                put_varint(&mut b, 0x7fff_ffff);
                b.put_slice(&record(0)[1..]);
                b
            }),
            ("negative record length", {
                let mut b = BytesMut::new();
                put_varint(&mut b, -5);
                b
            }),
            ("key length 0x7ffffff0", {
                let mut body = BytesMut::new();
                body.put_i8(0);
                put_varint(&mut body, 0);
                put_varint(&mut body, 0);
                put_varint(&mut body, 0x7fff_fff0);
                body.put_slice(b"k");
                let mut b = BytesMut::new();
                put_varint(&mut b, body.len() as i64);
                b.put_slice(&body);
                b
            }),
            ("header count -1", {
                let mut body = BytesMut::new();
                body.put_i8(0);
                put_varint(&mut body, 0);
                put_varint(&mut body, 0);
                put_varint(&mut body, -1);
                put_varint(&mut body, -1);
                put_varint(&mut body, -1);
                let mut b = BytesMut::new();
                put_varint(&mut b, body.len() as i64);
                b.put_slice(&body);
                b
            }),
            ("header count past the record", {
                let mut body = BytesMut::new();
                body.put_i8(0);
                put_varint(&mut body, 0);
                put_varint(&mut body, 0);
                put_varint(&mut body, -1);
                put_varint(&mut body, -1);
                put_varint(&mut body, 1_000_000);
                let mut b = BytesMut::new();
                put_varint(&mut b, body.len() as i64);
                b.put_slice(&body);
                b
            }),
            ("bytes after the last header", {
                let mut b = record(0);
                b[0] += 2; // one-byte length: two more bytes
                b.put_slice(&[0, 0]);
                b
            }),
            ("offset delta out of order", record(3)),
            (
                "varint of 6 bytes",
                BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..]),
            ),
        ];
        for (what, body) in cases {
            let refusal =
                assert_invalid(validate_batch(&raw_batch(1, 0, 0, &body), &limits()), what);
            assert_eq!(
                refusal.record_errors().first().map(|e| e.0),
                Some(0),
                "{what}"
            );
            for codec in [1i16, 2, 3, 4] {
                let compressed = compress(codec, &body);
                assert_invalid(
                    validate_batch(&raw_batch(1, 0, codec, &compressed), &limits()),
                    &format!("{what}, codec {codec}"),
                );
            }
        }
    }

    fn compress(codec: i16, data: &[u8]) -> Vec<u8> {
        match codec {
            1 => gzip(data),
            2 => snap::raw::Encoder::new().compress_vec(data).unwrap(),
            3 => {
                let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
                std::io::Write::write_all(&mut e, data).unwrap();
                e.finish().unwrap()
            }
            4 => zstd::encode_all(data, 1).unwrap(),
            _ => data.to_vec(),
        }
    }

    #[test]
    fn other_offset_deltas_pass_only_where_the_batch_is_re_encoded() {
        let body = [record(0), record(5)].concat();
        let batch = raw_batch(2, 1, 0, &body);
        assert_invalid(validate_batch(&batch, &limits()), "kafka format");
        let rewritten = Limits {
            offset_deltas_rewritten: true,
            ..limits()
        };
        assert!(validate_batch(&batch, &rewritten).is_ok());
    }

    #[test]
    fn garbage_bodies_and_unknown_codecs_are_refused() {
        let garbage = b"this is not a compressed stream at all, not even close".repeat(3);
        for codec in [1i16, 2, 3, 4] {
            let refusal =
                validate_batch(&raw_batch(1, 0, codec, &garbage), &limits()).expect_err("garbage");
            assert_eq!(
                refusal.code(),
                ResponseError::CorruptMessage.code(),
                "codec {codec}: {refusal}"
            );
        }
        // xerial framing with a block length past the data
        let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        xerial.extend_from_slice(&1000u32.to_be_bytes());
        xerial.extend_from_slice(b"abc");
        let refusal = validate_batch(&raw_batch(1, 0, 2, &xerial), &limits()).unwrap_err();
        assert_eq!(refusal.code(), ResponseError::CorruptMessage.code());
        for codec in [5i16, 6, 7] {
            let refusal =
                validate_batch(&raw_batch(1, 0, codec, &record(0)), &limits()).unwrap_err();
            assert_eq!(refusal, Refusal::UnsupportedCompression(codec));
            assert_eq!(
                refusal.code(),
                ResponseError::UnsupportedCompressionType.code()
            );
        }
    }

    #[test]
    fn header_faults_are_refused() {
        let good = encode_batch(3, 1000, Codec::None, None).to_vec();
        let mut bad_crc = good.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        assert_eq!(
            validate_batch(&bad_crc, &limits()).unwrap_err().code(),
            ResponseError::CorruptMessage.code()
        );
        assert_eq!(
            validate_batch(&good[..good.len() - 1], &limits())
                .unwrap_err()
                .code(),
            ResponseError::CorruptMessage.code()
        );
        let mut control = good.clone();
        control[22] |= 0x20;
        fix_crc(&mut control);
        assert_invalid(validate_batch(&control, &limits()), "control");
        // producer id set, base sequence -1
        let mut no_sequence = encode_batch(3, 1000, Codec::None, Some((5, 0, 0))).to_vec();
        no_sequence[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        fix_crc(&mut no_sequence);
        assert_invalid(validate_batch(&no_sequence, &limits()), "sequence");
    }

    #[test]
    fn timestamps_follow_the_policy() {
        let batch = encode_batch(3, 1000, Codec::Lz4, None);
        let strict = Limits {
            now_ms: 1020,
            timestamp_before_max_ms: 10,
            timestamp_after_max_ms: 0,
            ..limits()
        };
        let records = |refusal: &Refusal| -> Vec<i32> {
            refusal.record_errors().iter().map(|e| e.0).collect()
        };
        // Every record out of range is listed, not only the first (1000 and 1010 < 1020).
        let refusal = validate_batch(
            &batch,
            &Limits {
                now_ms: 1030,
                ..strict
            },
        )
        .unwrap_err();
        assert_eq!(refusal.code(), ResponseError::InvalidTimestamp.code());
        assert_eq!(records(&refusal), vec![0, 1], "{refusal}");
        let refusal = validate_batch(&batch, &strict).unwrap_err();
        assert_eq!(records(&refusal), vec![0], "{refusal}");
        let refusal = validate_batch(
            &batch,
            &Limits {
                now_ms: 1010,
                ..strict
            },
        )
        .unwrap_err();
        assert_eq!(records(&refusal), vec![2], "{refusal}");
        assert!(validate_batch(
            &batch,
            &Limits {
                log_append_time: true,
                ..strict
            }
        )
        .is_ok());
        // A client may not mark its batch LogAppendTime.
        let mut append_time = batch.to_vec();
        append_time[22] |= 0x08;
        fix_crc(&mut append_time);
        assert_eq!(
            validate_batch(&append_time, &limits()).unwrap_err().code(),
            ResponseError::InvalidTimestamp.code()
        );
        // A delta that overflows the base timestamp.
        let mut body = BytesMut::new();
        body.put_i8(0);
        put_varint(&mut body, i64::MAX);
        put_varint(&mut body, 0);
        put_varint(&mut body, -1);
        put_varint(&mut body, -1);
        put_varint(&mut body, 0);
        let mut rec = BytesMut::new();
        put_varint(&mut rec, body.len() as i64);
        rec.put_slice(&body);
        assert_invalid(
            validate_batch(&raw_batch(1, 0, 0, &rec), &limits()),
            "overflow",
        );
    }

    /// One record's bytes (with its length prefix): offset delta `delta`, key `key` (None:
    /// null), a 5-byte value, timestamp delta `ts_delta`.
    fn keyed_record(delta: i64, key: Option<&[u8]>, ts_delta: i64) -> BytesMut {
        let mut body = BytesMut::new();
        body.put_i8(0);
        put_varint(&mut body, ts_delta);
        put_varint(&mut body, delta);
        match key {
            Some(key) => {
                put_varint(&mut body, key.len() as i64);
                body.put_slice(key);
            }
            None => put_varint(&mut body, -1),
        }
        put_varint(&mut body, 5);
        body.put_slice(b"value");
        put_varint(&mut body, 0);
        let mut out = BytesMut::new();
        put_varint(&mut out, body.len() as i64);
        out.put_slice(&body);
        out
    }

    #[test]
    fn a_compacted_topic_refuses_every_record_without_a_key() {
        // Records 0, 3 and 6 of 8 have no key.
        let body: Vec<u8> = (0..8)
            .flat_map(|i| keyed_record(i, (i % 3 != 0).then_some(&b"k"[..]), 0).to_vec())
            .collect();
        let compacted = Limits {
            key_required: true,
            ..limits()
        };
        for codec in [0i16, 1, 2, 3, 4] {
            let batch = raw_batch(8, 7, codec, &compress(codec, &body));
            assert!(validate_batch(&batch, &limits()).is_ok(), "codec {codec}");
            let refusal = validate_batch(&batch, &compacted).unwrap_err();
            assert_eq!(refusal.code(), ResponseError::InvalidRecord.code());
            let errors = refusal.record_errors();
            assert_eq!(
                errors.iter().map(|e| e.0).collect::<Vec<_>>(),
                vec![0, 3, 6],
                "codec {codec}: {refusal}"
            );
            assert!(errors[0].1.contains("without a key"), "{errors:?}");
            assert!(refusal.to_string().starts_with("3 record"), "{refusal}");
        }
        // A key error and a timestamp error in one batch: INVALID_TIMESTAMP, both listed, one
        // error per record (the key is checked first).
        let body = [
            keyed_record(0, None, 0),
            keyed_record(1, Some(b"k"), -500),
            keyed_record(2, None, -500),
        ]
        .concat();
        let strict = Limits {
            key_required: true,
            now_ms: 1000,
            timestamp_before_max_ms: 100,
            ..limits()
        };
        let refusal = validate_batch(&raw_batch(3, 2, 0, &body), &strict).unwrap_err();
        assert_eq!(refusal.code(), ResponseError::InvalidTimestamp.code());
        let errors = refusal.record_errors();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[2].1.contains("without a key"), "{errors:?}");
        assert!(errors[1].1.contains("out of range"), "{errors:?}");
    }

    #[test]
    fn record_errors_are_listed_up_to_the_limit() {
        let n = RECORD_ERRORS_MAX as i64 + 5;
        let body: Vec<u8> = (0..n)
            .flat_map(|i| keyed_record(i, None, 0).to_vec())
            .collect();
        let batch = raw_batch(n as i32, n as i32 - 1, 0, &body);
        let compacted = Limits {
            key_required: true,
            ..limits()
        };
        match validate_batch(&batch, &compacted).unwrap_err() {
            Refusal::Records { errors, total } => {
                assert_eq!(errors.len(), RECORD_ERRORS_MAX);
                assert_eq!(total, n as usize);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decompressed_size_is_capped_for_every_codec() {
        let records: Vec<u8> = (0..64).flat_map(|i| record(i).to_vec()).collect();
        let small = Limits {
            decompressed_bytes_max: records.len() - 1,
            ..limits()
        };
        for codec in [1i16, 2, 3, 4] {
            let batch = raw_batch(64, 63, codec, &compress(codec, &records));
            assert!(validate_batch(&batch, &limits()).is_ok(), "codec {codec}");
            let refusal = validate_batch(&batch, &small).unwrap_err();
            assert_eq!(
                refusal.code(),
                ResponseError::MessageTooLarge.code(),
                "codec {codec}: {refusal}"
            );
        }
        let plain = raw_batch(64, 63, 0, &records);
        assert_eq!(
            validate_batch(&plain, &small).unwrap_err().code(),
            ResponseError::MessageTooLarge.code()
        );
    }

    /// (key, value, headers, timestamp offset) of one generated record.
    type ArbRecord = (
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(String, Option<Vec<u8>>)>,
        i64,
    );

    fn arb_record() -> impl Strategy<Value = ArbRecord> {
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            proptest::collection::vec(
                (
                    "[a-z]{0,8}",
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                ),
                0..3,
            ),
            -1_000i64..1_000_000,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever kafka-protocol's encoder writes, with any codec, passes.
        #[test]
        fn encoded_batches_pass(
            records in proptest::collection::vec(arb_record(), 1..20),
            codec in 0usize..5,
            producer in proptest::option::of((0i64..1000, 0i16..10, 0i32..1000)),
        ) {
            let base_ts = 1_700_000_000_000i64;
            let records: Vec<Record> = records.into_iter().enumerate().map(|(i, (k, v, h, ts))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: producer.map_or(-1, |p| p.0),
                producer_epoch: producer.map_or(-1, |p| p.1),
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: producer.map_or(i as i32 - 1, |p| p.2 + i as i32),
                timestamp: base_ts + ts,
                key: k.map(Bytes::from),
                value: v.map(Bytes::from),
                headers: h.into_iter().map(|(k, v)| (StrBytes::from_string(k), v.map(Bytes::from))).collect(),
            }).collect();
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: CODECS[codec] }).unwrap();
            // The encoder may write more than one batch (it starts another when records differ
            // in ways one batch header cannot hold); each must pass.
            let mut count = 0;
            let mut max_timestamp = i64::MIN;
            for (_, batch) in crate::batch::split(&buf.freeze()).unwrap() {
                let validated = validate_batch(&batch, &limits());
                prop_assert!(validated.is_ok(), "{:?}", validated);
                let validated = validated.unwrap();
                count += validated.header.record_count as usize;
                max_timestamp = max_timestamp.max(validated.max_timestamp_ms);
            }
            prop_assert_eq!(count, records.len());
            prop_assert_eq!(max_timestamp, records.iter().map(|r| r.timestamp).max().unwrap());
        }

        /// Flipping any byte of a valid batch (CRC recomputed, so the records are what is
        /// tested) never panics; it passes or is refused.
        #[test]
        fn mutated_batches_never_panic(codec in 0usize..5, at in any::<usize>(), byte in any::<u8>()) {
            let mut batch = encode_batch(4, 1000, CODECS[codec], None).to_vec();
            let at = 21 + at % (batch.len() - 21);
            batch[at] = byte;
            fix_crc(&mut batch);
            let _ = validate_batch(&batch, &limits());
        }
    }
}
