//! The records of `__transaction_state`: Kafka's `TransactionLogKey` (version 0) and
//! `TransactionLogValue` (version 0, non-flexible), hand-written like the group records, so a
//! Kafka tool reading the topic decodes them; plus one Magnetar record type (key version
//! [`PENDING_OFFSETS_KEY_VERSION`]) holding the offsets a transaction will commit for a group
//! (Kafka keeps those in `__consumer_offsets` as transactional records; here they stay with the
//! transaction until it completes, and are committed through the group coordinator then).
//!
//! TransactionLogValue v0 (big-endian): producer id i64, producer epoch i16, transaction
//! timeout ms i32, status i8, partitions (nullable array i32: topic string, partition ids array
//! of i32), last update timestamp i64, start timestamp i64.

use crate::record::{put_count, put_i16, put_i32, put_i64, put_string, CodecError, Reader};

use super::{PendingOffset, TxnStatus};

/// Kafka's key version of a transaction's metadata.
pub const METADATA_KEY_VERSION: i16 = 0;
/// Magnetar's key version of a transaction's pending group offsets (Kafka has none this high).
pub const PENDING_OFFSETS_KEY_VERSION: i16 = 0x4d47;

/// A transaction's metadata as stored (Kafka's TransactionLogValue).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnLogValue {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub status: TxnStatus,
    /// (topic, partitions), topics as full names.
    pub partitions: Vec<(String, Vec<i32>)>,
    pub last_update_ms: i64,
    pub start_ms: i64,
}

/// One record of the transaction log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnRecord {
    /// `None`: the transactional id expired (a tombstone).
    Metadata {
        transactional_id: String,
        value: Option<TxnLogValue>,
    },
    /// The offsets the open transaction commits for `group` (`None`: cleared).
    PendingOffsets {
        transactional_id: String,
        group: String,
        value: Option<(i64, i16, Vec<PendingOffset>)>,
    },
}

impl TxnRecord {
    pub fn transactional_id(&self) -> &str {
        match self {
            TxnRecord::Metadata {
                transactional_id, ..
            }
            | TxnRecord::PendingOffsets {
                transactional_id, ..
            } => transactional_id,
        }
    }

    pub fn encode_key(&self) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(64);
        match self {
            TxnRecord::Metadata {
                transactional_id, ..
            } => {
                put_i16(&mut out, METADATA_KEY_VERSION);
                put_string(&mut out, transactional_id)?;
            }
            TxnRecord::PendingOffsets {
                transactional_id,
                group,
                ..
            } => {
                put_i16(&mut out, PENDING_OFFSETS_KEY_VERSION);
                put_string(&mut out, transactional_id)?;
                put_string(&mut out, group)?;
            }
        }
        Ok(out)
    }

    pub fn encode_value(&self) -> Result<Option<Vec<u8>>, CodecError> {
        let mut out = Vec::with_capacity(128);
        match self {
            TxnRecord::Metadata { value: None, .. }
            | TxnRecord::PendingOffsets { value: None, .. } => return Ok(None),
            TxnRecord::Metadata { value: Some(v), .. } => {
                put_i16(&mut out, 0);
                put_i64(&mut out, v.producer_id);
                put_i16(&mut out, v.producer_epoch);
                put_i32(&mut out, v.timeout_ms);
                out.push(v.status.id() as u8);
                put_count(&mut out, v.partitions.len())?;
                for (topic, partitions) in &v.partitions {
                    put_string(&mut out, topic)?;
                    put_count(&mut out, partitions.len())?;
                    for p in partitions {
                        put_i32(&mut out, *p);
                    }
                }
                put_i64(&mut out, v.last_update_ms);
                put_i64(&mut out, v.start_ms);
            }
            TxnRecord::PendingOffsets {
                value: Some((producer_id, epoch, offsets)),
                ..
            } => {
                put_i16(&mut out, 0);
                put_i64(&mut out, *producer_id);
                put_i16(&mut out, *epoch);
                put_count(&mut out, offsets.len())?;
                for o in offsets {
                    put_string(&mut out, &o.topic)?;
                    put_i32(&mut out, o.partition);
                    put_i64(&mut out, o.offset);
                    put_i32(&mut out, o.leader_epoch);
                    put_string(&mut out, &o.metadata)?;
                }
            }
        }
        Ok(Some(out))
    }

    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<TxnRecord, CodecError> {
        let mut k = Reader::new(key);
        let version = k.i16()?;
        let transactional_id = k.string()?;
        match version {
            METADATA_KEY_VERSION => {
                k.finish("transaction log key")?;
                let value = value.map(decode_metadata).transpose()?;
                Ok(TxnRecord::Metadata {
                    transactional_id,
                    value,
                })
            }
            PENDING_OFFSETS_KEY_VERSION => {
                let group = k.string()?;
                k.finish("pending offsets key")?;
                let value = value.map(decode_offsets).transpose()?;
                Ok(TxnRecord::PendingOffsets {
                    transactional_id,
                    group,
                    value,
                })
            }
            other => Err(CodecError(format!(
                "unknown transaction log key version {other}"
            ))),
        }
    }
}

/// An array count that must fit in what is left (each item takes at least `item_min` bytes).
fn count(r: &mut Reader<'_>, item_min: usize) -> Result<usize, CodecError> {
    let n = r.i32()?;
    usize::try_from(n)
        .ok()
        .filter(|n| n.saturating_mul(item_min) <= r.remaining())
        .ok_or_else(|| CodecError(format!("array count {n} is not valid")))
}

fn decode_metadata(bytes: &[u8]) -> Result<TxnLogValue, CodecError> {
    let mut r = Reader::new(bytes);
    let version = r.i16()?;
    if version != 0 {
        return Err(CodecError(format!(
            "unsupported transaction log value version {version}"
        )));
    }
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let status_id = r.i8()?;
    let status = TxnStatus::from_id(status_id)
        .ok_or_else(|| CodecError(format!("unknown transaction status {status_id}")))?;
    let mut partitions = Vec::new();
    // A null array (-1) is an empty set.
    let raw = r.i32()?;
    if raw >= 0 {
        let n = usize::try_from(raw)
            .ok()
            .filter(|n| n.saturating_mul(6) <= r.remaining())
            .ok_or_else(|| CodecError(format!("array count {raw} is not valid")))?;
        for _ in 0..n {
            let topic = r.string()?;
            let m = count(&mut r, 4)?;
            let mut ids = Vec::with_capacity(m);
            for _ in 0..m {
                ids.push(r.i32()?);
            }
            partitions.push((topic, ids));
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    r.finish("transaction log value")?;
    Ok(TxnLogValue {
        producer_id,
        producer_epoch,
        timeout_ms,
        status,
        partitions,
        last_update_ms,
        start_ms,
    })
}

fn decode_offsets(bytes: &[u8]) -> Result<(i64, i16, Vec<PendingOffset>), CodecError> {
    let mut r = Reader::new(bytes);
    let version = r.i16()?;
    if version != 0 {
        return Err(CodecError(format!(
            "unsupported pending offsets version {version}"
        )));
    }
    let producer_id = r.i64()?;
    let epoch = r.i16()?;
    let n = count(&mut r, 20)?;
    let mut offsets = Vec::with_capacity(n);
    for _ in 0..n {
        offsets.push(PendingOffset {
            topic: r.string()?,
            partition: r.i32()?,
            offset: r.i64()?,
            leader_epoch: r.i32()?,
            metadata: r.string()?,
        });
    }
    r.finish("pending offsets value")?;
    Ok((producer_id, epoch, offsets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_an_error() {
        let records = [
            TxnRecord::Metadata {
                transactional_id: "tx-1".into(),
                value: Some(TxnLogValue {
                    producer_id: 42,
                    producer_epoch: 3,
                    timeout_ms: 60_000,
                    status: TxnStatus::Ongoing,
                    partitions: vec![("persistent://public/default/t".into(), vec![0, 3])],
                    last_update_ms: 1_000,
                    start_ms: 900,
                }),
            },
            TxnRecord::Metadata {
                transactional_id: "tx-1".into(),
                value: None,
            },
            TxnRecord::PendingOffsets {
                transactional_id: "tx-1".into(),
                group: "g".into(),
                value: Some((
                    42,
                    3,
                    vec![PendingOffset {
                        topic: "persistent://public/default/in".into(),
                        partition: 1,
                        offset: 77,
                        leader_epoch: -1,
                        metadata: String::new(),
                    }],
                )),
            },
        ];
        for record in records {
            let key = record.encode_key().unwrap();
            let value = record.encode_value().unwrap();
            assert_eq!(TxnRecord::decode(&key, value.as_deref()).unwrap(), record);
            if let Some(value) = value {
                for cut in 0..value.len() {
                    assert!(TxnRecord::decode(&key, Some(&value[..cut])).is_err());
                }
            }
            for cut in 0..key.len() {
                assert!(TxnRecord::decode(&key[..cut], None).is_err());
            }
        }
    }
}
