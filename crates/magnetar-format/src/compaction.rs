//! The payload formats as log compaction sees them ([`EntryCompaction`], the broker's
//! [`CompactionCodec`]): the keyed records of an entry and the entry rewritten with some of them.
//!
//! - Kafka record batches: every record with its key (`None` for a key-less one, which is kept),
//!   a null value is a tombstone; control batches (transaction markers) are kept whole. A
//!   rewritten batch keeps its base offset, offset deltas, last offset delta, producer
//!   information and codec ([`kafka::encode_batch_subset`] compresses the kept records again).
//! - Pulsar entries: each message is a record keyed by its partition key (the base64-decoded
//!   bytes of a binary key, so a Kafka key and the Pulsar key it maps to are the same key); a
//!   null or empty value is a delete, as in Pulsar's compaction. A single message is kept or
//!   dropped whole; a batch keeps every message's place, the removed ones marked `compacted_out`
//!   with their values dropped, as Pulsar's compactor rewrites batches
//!   ([`crate::pulsar::compact_batch`]). Encrypted entries and chunks are kept whole.

use bytes::Bytes;
use magnetar_broker::compaction::{CompactionCodec, CompactionRecord, EntryRecords};
use magnetar_broker::{EntryHeader, PayloadFormat};

use crate::kafka;

/// The [`CompactionCodec`] for both entry formats.
#[derive(Debug, Default, Clone, Copy)]
pub struct EntryCompaction;

impl CompactionCodec for EntryCompaction {
    fn records(&self, header: &EntryHeader, payload: &Bytes) -> Result<EntryRecords, String> {
        match header.format {
            PayloadFormat::Kafka => {
                let batch = kafka::decode_batch(payload).map_err(|e| e.to_string())?;
                if batch.is_control() {
                    return Ok(EntryRecords::KeepWhole);
                }
                let base = u64::try_from(batch.base_offset)
                    .map_err(|_| format!("negative base offset {}", batch.base_offset))?;
                let records = batch
                    .records
                    .into_iter()
                    .map(|r| CompactionRecord {
                        index: base.saturating_add(u64::from(r.offset_delta.max(0) as u32)),
                        tombstone: r.value.is_none(),
                        key: r.key,
                    })
                    .collect();
                Ok(EntryRecords::Records(records))
            }
            PayloadFormat::Pulsar => {
                let batched = match pulsar_batch_kind(payload) {
                    PulsarKind::Opaque => return Ok(EntryRecords::KeepWhole),
                    PulsarKind::Single => false,
                    PulsarKind::Batch => true,
                };
                let messages = crate::pulsar::entry_messages(payload).map_err(|e| e.to_string())?;
                if !batched && messages.len() != 1 {
                    return Ok(EntryRecords::KeepWhole);
                }
                let records = messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| CompactionRecord {
                        index: header.first_index + i as u64,
                        // A message compaction already removed stays as it is (kept, keyless).
                        key: (!m.compacted_out).then(|| pulsar_key(m)).flatten(),
                        tombstone: !m.compacted_out && (m.null_value || m.value.is_empty()),
                    })
                    .collect();
                Ok(EntryRecords::Records(records))
            }
        }
    }

    fn retain(
        &self,
        header: &EntryHeader,
        payload: &Bytes,
        keep: &[bool],
    ) -> Result<Bytes, String> {
        match header.format {
            PayloadFormat::Kafka => {
                let batch = kafka::decode_batch(payload).map_err(|e| e.to_string())?;
                if keep.len() != batch.records.len() {
                    return Err(format!(
                        "{} keep flags for {} records",
                        keep.len(),
                        batch.records.len()
                    ));
                }
                let kept: Vec<kafka::Record> = batch
                    .records
                    .iter()
                    .zip(keep)
                    .filter(|(_, k)| **k)
                    .map(|(r, _)| r.clone())
                    .collect();
                kafka::encode_batch_subset(&batch, &kept).map_err(|e| e.to_string())
            }
            // A single message is kept or dropped whole (the last of its producer stays as is);
            // a batch keeps every message's place, the removed ones marked `compacted_out`.
            PayloadFormat::Pulsar => match pulsar_batch_kind(payload) {
                PulsarKind::Batch => {
                    crate::pulsar::compact_batch(payload, keep).map_err(|e| e.to_string())
                }
                PulsarKind::Single | PulsarKind::Opaque => Ok(payload.clone()),
            },
        }
    }
}

/// What compaction can do with a Pulsar entry body.
enum PulsarKind {
    /// One message, kept or dropped whole.
    Single,
    /// A batch (`num_messages_in_batch` set), rewritten message by message.
    Batch,
    /// Encrypted or a chunk (opaque to the broker), or metadata that does not parse: kept.
    Opaque,
}

fn pulsar_batch_kind(body: &[u8]) -> PulsarKind {
    let Some(size) = body.get(..4) else {
        return PulsarKind::Opaque;
    };
    let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize;
    let Some(m) = body
        .get(4..4usize.saturating_add(size))
        .and_then(|m| crate::pulsar::message_metadata(m).ok())
    else {
        return PulsarKind::Opaque;
    };
    if m.encrypted || m.num_chunks_from_msg > 1 {
        PulsarKind::Opaque
    } else if m.num_messages_in_batch.is_some() {
        PulsarKind::Batch
    } else {
        PulsarKind::Single
    }
}

/// A Pulsar message's key as compaction compares it: the bytes of a base64 (binary) partition
/// key, so a Kafka key and the Pulsar key it maps to are the same key.
fn pulsar_key(m: &crate::PulsarMessage) -> Option<Bytes> {
    m.partition_key.as_ref().map(|k| {
        let decoded = if m.partition_key_b64 {
            crate::base64::decode(k)
        } else {
            None
        };
        Bytes::from(decoded.unwrap_or_else(|| k.as_bytes().to_vec()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::{decode_batch, encode_batch, Record};

    fn header(first_index: u64, count: u32) -> EntryHeader {
        EntryHeader {
            first_index,
            message_count: count,
            publish_time_ms: 0,
            max_timestamp_ms: 0,
            format: PayloadFormat::Kafka,
            producer: None,
            payload_len: 0,
        }
    }

    fn record(key: &str, value: Option<&str>) -> Record {
        Record {
            offset_delta: 0,
            timestamp_ms: 1_000,
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Vec::new(),
        }
    }

    #[test]
    fn kafka_batch_keeps_offsets_and_producer_of_the_kept_records() {
        let mut bytes = encode_batch(
            100,
            &[
                record("a", Some("1")),
                record("b", None),
                record("a", Some("2")),
            ],
        )
        .to_vec();
        // Give it a producer: id at 43, epoch at 51, base sequence at 53; fix the CRC.
        bytes[43..51].copy_from_slice(&7i64.to_be_bytes());
        bytes[51..53].copy_from_slice(&1i16.to_be_bytes());
        bytes[53..57].copy_from_slice(&40i32.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        let payload = Bytes::from(bytes);
        let h = header(100, 3);
        let EntryRecords::Records(records) = EntryCompaction.records(&h, &payload).unwrap() else {
            panic!("keyed records expected");
        };
        let indexes: Vec<u64> = records.iter().map(|r| r.index).collect();
        assert_eq!(indexes, vec![100, 101, 102]);
        assert!(records[1].tombstone && !records[0].tombstone);

        let out = EntryCompaction
            .retain(&h, &payload, &[false, false, true])
            .unwrap();
        let batch = decode_batch(&out).unwrap();
        assert_eq!(batch.base_offset, 100);
        assert_eq!(batch.last_offset_delta, 2, "the batch still ends at 102");
        assert_eq!(batch.records.len(), 1);
        assert_eq!(batch.records[0].offset_delta, 2);
        assert_eq!(batch.records[0].value.as_deref(), Some(&b"2"[..]));
        assert_eq!(
            (batch.producer_id, batch.producer_epoch, batch.base_sequence),
            (7, 1, 40)
        );

        let empty = EntryCompaction.retain(&h, &payload, &[false; 3]).unwrap();
        let batch = decode_batch(&empty).unwrap();
        assert!(batch.records.is_empty());
        assert_eq!((batch.last_offset_delta, batch.producer_id), (2, 7));
    }

    /// A partly kept compressed batch stays compressed with its own codec (as Kafka's cleaner
    /// writes it), and its kept records read back at their offsets.
    #[test]
    fn a_compressed_batch_is_compressed_again_with_its_codec() {
        use crate::kafka::{compress, Compression};
        let records: Vec<Record> = (0..6)
            .map(|i| Record {
                offset_delta: i,
                ..record(&format!("k{}", i % 3), Some(&"value-".repeat(40)))
            })
            .collect();
        for (codec, id) in [
            (Compression::Gzip, 1i16),
            (Compression::Snappy, 2),
            (Compression::Lz4, 3),
            (Compression::Zstd, 4),
        ] {
            let plain = encode_batch(50, &records);
            let body = compress(codec, &plain[crate::kafka::BATCH_HEADER_LEN..]).unwrap();
            let mut bytes = plain[..crate::kafka::BATCH_HEADER_LEN].to_vec();
            bytes.extend_from_slice(&body);
            let length = (bytes.len() - 12) as i32;
            bytes[8..12].copy_from_slice(&length.to_be_bytes());
            bytes[21..23].copy_from_slice(&id.to_be_bytes());
            let crc = crc32c::crc32c(&bytes[21..]);
            bytes[17..21].copy_from_slice(&crc.to_be_bytes());
            let payload = Bytes::from(bytes);
            let h = header(50, 6);
            let keep = [false, false, false, true, true, true];
            let out = EntryCompaction.retain(&h, &payload, &keep).unwrap();
            let batch = decode_batch(&out).unwrap();
            assert_eq!(batch.compression(), codec, "{codec:?}");
            assert_eq!(batch.records, records[3..].to_vec(), "{codec:?}");
            assert_eq!((batch.base_offset, batch.last_offset_delta), (50, 5));
            assert!(
                out.len() < encode_batch(50, &records[3..]).len(),
                "{codec:?}: compressed"
            );
        }
    }

    /// A Pulsar batch keeps every message's place: the removed ones are marked `compacted_out`,
    /// left out of the Kafka view (the others keep their offsets) and listed for the dispatcher.
    #[test]
    fn a_pulsar_batch_marks_removed_messages_compacted_out() {
        let kafka = encode_batch(
            0,
            &(0..4)
                .map(|i| Record {
                    offset_delta: i,
                    ..record(&format!("k{}", i % 2), Some(&format!("v{i}")))
                })
                .collect::<Vec<_>>(),
        );
        let body = crate::pulsar::kafka_batch_to_entry(&kafka, "p", 0, 1_000).unwrap();
        let h = EntryHeader {
            format: PayloadFormat::Pulsar,
            ..header(10, 4)
        };
        let EntryRecords::Records(records) = EntryCompaction.records(&h, &body).unwrap() else {
            panic!("a batch is compacted message by message");
        };
        let indexes: Vec<u64> = records.iter().map(|r| r.index).collect();
        assert_eq!(indexes, vec![10, 11, 12, 13]);
        assert_eq!(records[0].key.as_deref(), Some(&b"k0"[..]));
        let out = EntryCompaction
            .retain(&h, &body, &[false, false, true, true])
            .unwrap();
        let messages = crate::pulsar::entry_messages(&out).unwrap();
        let flags: Vec<bool> = messages.iter().map(|m| m.compacted_out).collect();
        assert_eq!(flags, vec![true, true, false, false]);
        assert!(messages[0].value.is_empty());
        assert_eq!(&messages[3].value[..], b"v3");
        assert_eq!(
            crate::pulsar::compacted_out_positions(&out).unwrap(),
            vec![0, 1]
        );
        let batch = decode_batch(&crate::pulsar::entry_to_kafka_batch(&out, 10).unwrap()).unwrap();
        let deltas: Vec<i32> = batch.records.iter().map(|r| r.offset_delta).collect();
        assert_eq!(deltas, vec![2, 3], "the kept records keep their offsets");
        assert_eq!((batch.base_offset, batch.last_offset_delta), (10, 3));
        // Compacting again keeps what is already compacted out.
        let EntryRecords::Records(again) = EntryCompaction.records(&h, &out).unwrap() else {
            panic!("records");
        };
        assert!(again[0].key.is_none() && !again[0].tombstone);
        let all_out = EntryCompaction
            .retain(&h, &out, &[true, true, false, true])
            .unwrap();
        assert_eq!(
            crate::pulsar::compacted_out_positions(&all_out).unwrap(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let h = header(0, 1);
        assert!(EntryCompaction
            .records(&h, &Bytes::from_static(b"nope"))
            .is_err());
        assert!(EntryCompaction
            .retain(&h, &Bytes::from_static(b"nope"), &[true])
            .is_err());
    }
}
