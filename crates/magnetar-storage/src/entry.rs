//! Entries and their on-disk codec.
//!
//! One entry is one producer batch: a fixed 54-byte header followed by the opaque payload.
//! All integers are little-endian.
//!
//! | offset | size | field                                                    |
//! |-------:|-----:|----------------------------------------------------------|
//! |      0 |    1 | magic `0xE5`                                             |
//! |      1 |    1 | format version, currently `1`                            |
//! |      2 |    1 | payload format tag: `0` = Kafka, `1` = Pulsar            |
//! |      3 |    1 | transaction mark ([`TxnMark`]): `0` none, `1` transactional  |
//! |        |      | data, `2` commit marker, `3` abort marker; `0` without producer |
//! |      4 |    8 | first message index (u64)                                |
//! |     12 |    4 | message count (u32, at least 1)                          |
//! |     16 |    8 | broker publish time ms (i64)                             |
//! |     24 |    8 | max event timestamp ms (i64)                             |
//! |     32 |    8 | producer id (i64, `-1` = no producer)                    |
//! |     40 |    2 | producer epoch (i16)                                     |
//! |     42 |    4 | base sequence (i32)                                      |
//! |     46 |    4 | payload length (u32)                                     |
//! |     50 |    4 | CRC32C over bytes `0..50` of the header and the payload  |
//! |     54 |    n | payload                                                  |
//!
//! A reader that meets an unknown version stops with [`crate::StorageError::Corrupt`], so the
//! format can evolve by bumping the version byte.

use bytes::Bytes;

/// First byte of every entry.
pub const ENTRY_MAGIC: u8 = 0xE5;
/// Current entry format version.
pub const ENTRY_VERSION: u8 = 1;
/// Size of the fixed entry header in bytes.
pub const ENTRY_HEADER_LEN: usize = 54;
const CRC_OFFSET: usize = 50;

/// How the payload bytes are encoded; decided per entry, so mixed topics work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    Kafka,
    Pulsar,
}

impl PayloadFormat {
    fn tag(self) -> u8 {
        match self {
            PayloadFormat::Kafka => 0,
            PayloadFormat::Pulsar => 1,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(PayloadFormat::Kafka),
            1 => Some(PayloadFormat::Pulsar),
            _ => None,
        }
    }
}

/// Idempotent-producer identity carried by an entry, kept so producer state can be rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerInfo {
    pub producer_id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
    /// Whether the entry belongs to a transaction, or is a transaction's marker.
    pub txn: TxnMark,
}

/// What an entry is to a transaction (Kafka's transactional and control batch attributes),
/// kept in the header so a partition rebuilds its open transactions, last stable offset and
/// aborted transactions from headers alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TxnMark {
    /// Not transactional.
    #[default]
    None,
    /// Data written inside the producer's open transaction.
    Data,
    /// The marker that commits the producer's open transaction (a control batch).
    Commit,
    /// The marker that aborts the producer's open transaction (a control batch).
    Abort,
}

impl TxnMark {
    fn tag(self) -> u8 {
        match self {
            TxnMark::None => 0,
            TxnMark::Data => 1,
            TxnMark::Commit => 2,
            TxnMark::Abort => 3,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            0 => TxnMark::None,
            1 => TxnMark::Data,
            2 => TxnMark::Commit,
            3 => TxnMark::Abort,
            _ => return None,
        })
    }

    /// A commit or abort marker (a control batch), not data.
    pub fn is_marker(self) -> bool {
        matches!(self, TxnMark::Commit | TxnMark::Abort)
    }
}

/// A transaction aborted in a partition (Kafka's aborted-transaction index entry): the data
/// entries of `producer_id` from `first_index` up to its abort marker at `last_index` are
/// aborted. `read_committed` readers skip them and compaction drops them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// The index of the transaction's first entry in the partition.
    pub first_index: u64,
    /// The index of its abort marker.
    pub last_index: u64,
}

impl AbortedTxn {
    /// Whether `header` is a data entry of this aborted transaction.
    pub fn covers(&self, header: &EntryHeader) -> bool {
        header.producer.is_some_and(|p| {
            p.txn == TxnMark::Data
                && p.producer_id == self.producer_id
                && header.first_index >= self.first_index
                && header.first_index < self.last_index
        })
    }
}

/// What a caller hands to the ledger; the ledger adds the index and publish time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub payload: Bytes,
    pub message_count: u32,
    pub max_timestamp_ms: i64,
    pub format: PayloadFormat,
    pub producer: Option<ProducerInfo>,
    /// Where the ledger writes the entry's first index into the payload (big-endian u64) while
    /// encoding it, so the stored bytes are what a reader is served with no extra copy (a Kafka
    /// batch's base offset lives at 0). The payload must hold 8 bytes there.
    pub first_index_at: Option<usize>,
}

impl NewEntry {
    /// Checks the entry before it is given `first_index`: payload at most `entry_bytes_max`
    /// bytes, at least one message, room for the index at `first_index_at`, no index overflow.
    /// Returns the index after its last message.
    pub(crate) fn check(
        &self,
        first_index: u64,
        entry_bytes_max: u32,
    ) -> Result<u64, crate::StorageError> {
        use crate::StorageError;
        let size = self.payload.len() as u64;
        if size > u64::from(entry_bytes_max) {
            return Err(StorageError::EntryTooLarge {
                size,
                max: u64::from(entry_bytes_max),
            });
        }
        if self.message_count == 0 {
            return Err(StorageError::InvalidEntry {
                reason: "message count is 0".to_string(),
            });
        }
        if let Some(at) = self.first_index_at {
            if self.payload.len() < at.saturating_add(8) {
                return Err(StorageError::InvalidEntry {
                    reason: format!("payload of {size} bytes has no room for the index at {at}"),
                });
            }
        }
        first_index
            .checked_add(u64::from(self.message_count))
            .ok_or_else(|| StorageError::InvalidEntry {
                reason: "message index overflows".to_string(),
            })
    }

    /// The header the entry is stored with at `first_index`, published at `publish_time_ms`.
    pub(crate) fn header(&self, first_index: u64, publish_time_ms: i64) -> EntryHeader {
        EntryHeader {
            first_index,
            message_count: self.message_count,
            publish_time_ms,
            max_timestamp_ms: self.max_timestamp_ms,
            format: self.format,
            producer: self.producer,
            payload_len: self.payload.len() as u32,
        }
    }
}

/// The decoded header of a stored entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader {
    pub first_index: u64,
    pub message_count: u32,
    pub publish_time_ms: i64,
    pub max_timestamp_ms: i64,
    pub format: PayloadFormat,
    pub producer: Option<ProducerInfo>,
    pub payload_len: u32,
}

impl EntryHeader {
    /// The index after the last message of this entry.
    pub fn end_index(&self) -> u64 {
        self.first_index + u64::from(self.message_count)
    }

    /// Encoded size of the entry (header and payload) in bytes.
    pub fn encoded_len(&self) -> u64 {
        ENTRY_HEADER_LEN as u64 + u64::from(self.payload_len)
    }

    /// Whether `index` is one of this entry's messages.
    pub fn contains(&self, index: u64) -> bool {
        index >= self.first_index && index < self.end_index()
    }
}

/// A stored entry: header plus the exact payload bytes given at append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub header: EntryHeader,
    pub payload: Bytes,
}

/// Appends the encoded entry to `out`.
pub fn encode_entry(header: &EntryHeader, payload: &[u8], out: &mut Vec<u8>) {
    encode_entry_with_index(header, payload, None, out);
}

/// Appends the encoded entry to `out`, writing `header.first_index` into the copied payload at
/// `first_index_at` (big-endian u64) before the CRC is computed: the payload is copied once and
/// hashed once. The caller has checked that the payload holds 8 bytes at `first_index_at`; if it
/// does not, the payload is stored as given.
pub fn encode_entry_with_index(
    header: &EntryHeader,
    payload: &[u8],
    first_index_at: Option<usize>,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.push(ENTRY_MAGIC);
    out.push(ENTRY_VERSION);
    out.push(header.format.tag());
    out.push(header.producer.map_or(0, |p| p.txn.tag()));
    out.extend_from_slice(&header.first_index.to_le_bytes());
    out.extend_from_slice(&header.message_count.to_le_bytes());
    out.extend_from_slice(&header.publish_time_ms.to_le_bytes());
    out.extend_from_slice(&header.max_timestamp_ms.to_le_bytes());
    let (pid, epoch, seq) = match header.producer {
        Some(p) => (p.producer_id, p.epoch, p.base_sequence),
        None => (-1i64, -1i16, -1i32),
    };
    out.extend_from_slice(&pid.to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&header.payload_len.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // the CRC, once the payload is in place
    out.extend_from_slice(payload);
    let body = start + ENTRY_HEADER_LEN;
    if let Some(at) = first_index_at {
        if let Some(slot) = out.get_mut(body + at..body + at + 8) {
            slot.copy_from_slice(&header.first_index.to_be_bytes());
        }
    }
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&out[start..start + CRC_OFFSET]),
        &out[body..],
    );
    out[start + CRC_OFFSET..body].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes and validates the fixed header. Returns the header and the stored CRC.
/// `buf` must hold at least [`ENTRY_HEADER_LEN`] bytes.
pub fn decode_header(buf: &[u8]) -> Result<(EntryHeader, u32), String> {
    let b = buf.get(..ENTRY_HEADER_LEN).ok_or_else(|| {
        format!(
            "header truncated: {} of {ENTRY_HEADER_LEN} bytes",
            buf.len()
        )
    })?;
    if b[0] != ENTRY_MAGIC {
        return Err(format!("bad magic byte {:#04x}", b[0]));
    }
    if b[1] != ENTRY_VERSION {
        return Err(format!("unknown entry version {}", b[1]));
    }
    let format =
        PayloadFormat::from_tag(b[2]).ok_or_else(|| format!("unknown payload format {}", b[2]))?;
    let txn =
        TxnMark::from_tag(b[3]).ok_or_else(|| format!("unknown transaction mark {}", b[3]))?;
    let u64_at = |o: usize| {
        u64::from_le_bytes([
            b[o],
            b[o + 1],
            b[o + 2],
            b[o + 3],
            b[o + 4],
            b[o + 5],
            b[o + 6],
            b[o + 7],
        ])
    };
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let first_index = u64_at(4);
    let message_count = u32_at(12);
    if message_count == 0 {
        return Err("message count is 0".to_string());
    }
    if first_index.checked_add(u64::from(message_count)).is_none() {
        return Err("message index overflows".to_string());
    }
    let producer_id = u64_at(32) as i64;
    let epoch = i16::from_le_bytes([b[40], b[41]]);
    let base_sequence = u32_at(42) as i32;
    if producer_id == -1 && txn != TxnMark::None {
        return Err(format!("transaction mark {} without a producer", b[3]));
    }
    let producer = (producer_id != -1).then_some(ProducerInfo {
        producer_id,
        epoch,
        base_sequence,
        txn,
    });
    let header = EntryHeader {
        first_index,
        message_count,
        publish_time_ms: u64_at(16) as i64,
        max_timestamp_ms: u64_at(24) as i64,
        format,
        producer,
        payload_len: u32_at(46),
    };
    Ok((header, u32_at(CRC_OFFSET)))
}

/// Checks the stored CRC against the header bytes and payload.
pub fn crc_matches(header_bytes: &[u8], payload: &[u8], stored_crc: u32) -> bool {
    match header_bytes.get(..CRC_OFFSET) {
        Some(h) => crc32c::crc32c_append(crc32c::crc32c(h), payload) == stored_crc,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_header() -> impl Strategy<Value = (EntryHeader, Vec<u8>)> {
        (
            0u64..u64::MAX / 2,
            1u32..10_000,
            any::<i64>(),
            any::<i64>(),
            prop_oneof![Just(PayloadFormat::Kafka), Just(PayloadFormat::Pulsar)],
            proptest::option::of((0i64..i64::MAX, any::<i16>(), any::<i32>())),
            proptest::collection::vec(any::<u8>(), 0..512),
        )
            .prop_map(
                |(first_index, message_count, p, m, format, producer, payload)| {
                    (
                        EntryHeader {
                            first_index,
                            message_count,
                            publish_time_ms: p,
                            max_timestamp_ms: m,
                            format,
                            producer: producer.map(|(producer_id, epoch, base_sequence)| {
                                ProducerInfo {
                                    producer_id,
                                    epoch,
                                    base_sequence,
                                    txn: TxnMark::from_tag((base_sequence as u8) & 3)
                                        .unwrap_or_default(),
                                }
                            }),
                            payload_len: payload.len() as u32,
                        },
                        payload,
                    )
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip((header, payload) in arb_header()) {
            let mut buf = Vec::new();
            encode_entry(&header, &payload, &mut buf);
            prop_assert_eq!(buf.len() as u64, header.encoded_len());
            let (decoded, crc) = decode_header(&buf).unwrap();
            prop_assert_eq!(decoded, header);
            prop_assert!(crc_matches(&buf[..ENTRY_HEADER_LEN], &buf[ENTRY_HEADER_LEN..], crc));
        }

        #[test]
        fn any_flipped_bit_is_detected((header, payload) in arb_header(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut buf = Vec::new();
            encode_entry(&header, &payload, &mut buf);
            let i = pos.index(buf.len());
            buf[i] ^= 1 << bit;
            let ok = match decode_header(&buf) {
                Ok((h, crc)) => h.payload_len as usize == buf.len() - ENTRY_HEADER_LEN
                    && crc_matches(&buf[..ENTRY_HEADER_LEN], &buf[ENTRY_HEADER_LEN..], crc),
                Err(_) => false,
            };
            prop_assert!(!ok, "flip at byte {} bit {} not detected", i, bit);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode_header(&bytes);
        }
    }

    #[test]
    fn index_is_written_into_the_payload_under_the_crc() {
        let header = EntryHeader {
            first_index: 0x0102_0304_0506_0708,
            message_count: 1,
            publish_time_ms: 0,
            max_timestamp_ms: 0,
            format: PayloadFormat::Kafka,
            producer: None,
            payload_len: 12,
        };
        let mut buf = vec![9u8; 3]; // something before: encoding appends
        encode_entry_with_index(&header, &[0xAA; 12], Some(2), &mut buf);
        let entry = &buf[3..];
        let payload = &entry[ENTRY_HEADER_LEN..];
        assert_eq!(&payload[..2], &[0xAA, 0xAA]);
        assert_eq!(&payload[2..10], &header.first_index.to_be_bytes());
        assert_eq!(&payload[10..], &[0xAA, 0xAA]);
        let (decoded, crc) = decode_header(entry).unwrap();
        assert_eq!(decoded, header);
        assert!(crc_matches(&entry[..ENTRY_HEADER_LEN], payload, crc));
        // The same bytes as encoding the patched payload without an index position.
        let mut patched = vec![0xAA; 12];
        patched[2..10].copy_from_slice(&header.first_index.to_be_bytes());
        let mut plain = Vec::new();
        encode_entry(&header, &patched, &mut plain);
        assert_eq!(plain, entry);
    }

    #[test]
    fn rejects_unknown_version() {
        let header = EntryHeader {
            first_index: 0,
            message_count: 1,
            publish_time_ms: 0,
            max_timestamp_ms: 0,
            format: PayloadFormat::Kafka,
            producer: None,
            payload_len: 0,
        };
        let mut buf = Vec::new();
        encode_entry(&header, &[], &mut buf);
        buf[1] = 2;
        assert!(decode_header(&buf).unwrap_err().contains("version"));
    }
}
