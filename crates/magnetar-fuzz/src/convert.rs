//! The Kafka <-> Pulsar entry conversions of magnetar-format: Kafka batches read by Pulsar
//! consumers or stored as Pulsar entries ([`kafka_to_pulsar`]), Pulsar entries read by Kafka
//! consumers ([`pulsar_to_kafka`]).

use magnetar_format::kafka::{decode_batch, Record};
use magnetar_format::pulsar::{
    check_entry, entry_messages, entry_to_kafka_batch, kafka_batch_to_entry,
};
use magnetar_format::{from_pulsar_message, B64_MARKER, NULL_MARKER};
use magnetar_kafka::validate::{validate_batch, Limits};

/// Input: a flags byte (bit 0: keep the length and CRC as given), then one Kafka record batch.
///
/// Properties of a batch that decodes: it converts; the entry passes the SEND path's own check
/// with the batch's record count; read back, every record keeps its key, value and headers
/// (the documented lossless mapping; see [`mapping_is_lossless`] for where it is not) and its
/// timestamp when positive; the entry is at most a linear function of the records' sizes.
pub fn kafka_to_pulsar(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if flags & 1 == 0 {
        crate::fix_kafka_batch(&mut bytes);
    }
    let Ok(batch) = decode_batch(&bytes) else {
        return;
    };
    let body = kafka_batch_to_entry(&bytes, "kafka", 7, 1_000)
        .unwrap_or_else(|e| panic!("a decoded batch does not convert: {e}"));
    let count = batch.records.len() as u64;
    if count > 0 {
        check_entry(&body, count, usize::MAX)
            .unwrap_or_else(|e| panic!("a converted entry fails the SEND check: {e}"));
    }
    let bound: usize = 64 + batch.records.iter().map(record_bound).sum::<usize>();
    assert!(
        body.len() <= bound,
        "entry of {} bytes for records bounded by {bound}",
        body.len()
    );
    let messages = entry_messages(&body).expect("a converted entry reads");
    assert_eq!(messages.len(), batch.records.len(), "message count");
    for (i, (m, r)) in messages.iter().zip(&batch.records).enumerate() {
        let back = from_pulsar_message(m, i as i32);
        assert_eq!(back.key, r.key, "key of record {i}");
        assert_eq!(back.value, r.value, "value of record {i}");
        if mapping_is_lossless(r) {
            assert_eq!(back.headers, r.headers, "headers of record {i}");
        }
        if r.timestamp_ms > 0 {
            assert_eq!(back.timestamp_ms, r.timestamp_ms, "timestamp of record {i}");
        }
    }
}

/// Largest encoding of one record in a Pulsar batch: its single-message metadata (varints and
/// tags), a base64 key (4/3) and, per header, the property and a marker property.
fn record_bound(r: &Record) -> usize {
    let b64 = |n: usize| n.div_ceil(3) * 4;
    let key = r.key.as_ref().map_or(0, |k| b64(k.len()));
    let value = r.value.as_ref().map_or(0, |v| v.len());
    let headers: usize = r
        .headers
        .iter()
        .map(|h| {
            let v = h.value.as_ref().map_or(0, |v| b64(v.len()));
            2 * h.key.len() + v + NULL_MARKER.len().max(B64_MARKER.len()) + 40
        })
        .sum();
    64 + key + value + headers
}

/// The mapping keeps headers when no header key starts with a marker prefix and no key occurs
/// twice (a marker names a key, so it cannot tell two headers of that key apart).
pub fn mapping_is_lossless(r: &Record) -> bool {
    let marker = |k: &str| k.starts_with(B64_MARKER) || k.starts_with(NULL_MARKER);
    r.headers
        .iter()
        .enumerate()
        .all(|(i, h)| !marker(&h.key) && !r.headers[..i].iter().any(|other| other.key == h.key))
}

/// Input: eight bytes of base offset, then a Pulsar entry body.
///
/// Properties of a body that converts: the batch decodes to the entry's messages, one record
/// each but for the `compacted_out` ones, each with its position as offset delta at the given
/// base offset, the batch ending at the last message; when it has records it passes the
/// produce validator (what Kafka consumers receive is a batch a Kafka broker would accept).
pub fn pulsar_to_kafka(data: &[u8]) {
    let Some((base, body)) = data.split_first_chunk::<8>() else {
        return;
    };
    let base_offset = u64::from_be_bytes(*base) >> 2; // at most i64::MAX / 2
    let Ok(batch_bytes) = entry_to_kafka_batch(body, base_offset) else {
        return;
    };
    let messages = entry_messages(body).expect("a converted entry reads");
    let batch = decode_batch(&batch_bytes)
        .unwrap_or_else(|e| panic!("a converted batch does not decode: {e}"));
    assert_eq!(batch.base_offset as u64, base_offset);
    // Messages log compaction marked `compacted_out` are left out; the others keep their
    // position as offset delta, and the batch ends at the entry's last message.
    let kept: Vec<usize> = (0..messages.len())
        .filter(|i| !messages[*i].compacted_out)
        .collect();
    assert_eq!(batch.records.len(), kept.len(), "record count");
    for (r, &i) in batch.records.iter().zip(&kept) {
        assert_eq!(r.offset_delta as usize, i, "offset delta");
        assert_eq!(r.value.is_none(), messages[i].null_value, "null value");
    }
    if !messages.is_empty() {
        assert_eq!(
            batch.last_offset_delta as usize,
            messages.len() - 1,
            "last offset delta"
        );
    }
    // A batch with compacted-out messages has gaps, as a compacted Kafka batch does: readers
    // take it, a produce would not (the validator checks the count against the offset range).
    if !batch.records.is_empty() && kept.len() == messages.len() {
        let limits = Limits {
            decompressed_bytes_max: usize::MAX,
            ..Limits::default()
        };
        validate_batch(&batch_bytes, &limits)
            .unwrap_or_else(|e| panic!("a converted batch fails produce validation: {e}"));
    }
}
