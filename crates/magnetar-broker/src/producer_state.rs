//! Idempotent producers: per (producer id, partition) epoch and sequence tracking. A pure state
//! machine; the partition calls `check` and `record` under its append lock. On open it loads the
//! newest valid snapshot (see [`encode_snapshot`]; the ledger stores it as an opaque blob named
//! by the index it covers) and replays only the entry headers after it, or all of them when
//! there is no usable snapshot.

use std::collections::{HashMap, VecDeque};

use magnetar_storage::TxnMark;

use crate::error::Error;

/// How many recent batches per producer are remembered for duplicate detection (Kafka keeps 5,
/// matching `max.in.flight.requests.per.connection` <= 5 for idempotent producers).
pub const BATCHES_REMEMBERED: usize = 5;

/// The epoch that marks a *named* producer's batch (a Pulsar producer, deduplicated by its name
/// and sequence ids by the front end) instead of an idempotent Kafka producer (whose epochs are
/// never negative). Its `producer_id` is [`named_producer_id`] of the name; the sequence fields
/// are unused. Stored in the entry header like Kafka producer info, so the last entry of each
/// named producer is found again from headers alone when a partition opens.
pub const NAMED_PRODUCER_EPOCH: i16 = i16::MIN;

/// A stable id for a producer name (FNV-1a 64, sign bit cleared so it is never the header's
/// "no producer" value -1). Collisions are possible in principle; the front end compares the
/// name stored in the entry before trusting a match.
pub fn named_producer_id(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h & i64::MAX as u64) as i64
}

/// A named producer's batch, for [`crate::AppendRequest::producer`].
pub fn named_producer_batch(name: &str, message_count: u32) -> ProducerBatch {
    ProducerBatch {
        producer_id: named_producer_id(name),
        epoch: NAMED_PRODUCER_EPOCH,
        first_sequence: 0,
        message_count,
        txn: TxnMark::None,
    }
}

/// A batch of messages from an idempotent producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_sequence: i32,
    pub message_count: u32,
    /// Transactional data, a transaction marker, or neither.
    pub txn: TxnMark,
}

impl ProducerBatch {
    /// A named (Pulsar) producer's batch rather than an idempotent Kafka producer's.
    pub fn is_named(&self) -> bool {
        self.epoch == NAMED_PRODUCER_EPOCH
    }

    pub fn last_sequence(&self) -> i32 {
        add_sequence(self.first_sequence, self.message_count.saturating_sub(1))
    }
}

/// Sequences wrap from `i32::MAX` to 0, as in Kafka.
fn add_sequence(sequence: i32, count: u32) -> i32 {
    ((sequence as i64 + count as i64) % (i32::MAX as i64 + 1)) as i32
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BatchRecord {
    first_sequence: i32,
    last_sequence: i32,
    first_index: u64,
}

#[derive(Debug)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchRecord>,
    last_used: u64,
    /// The max timestamp of the producer's last batch (-1: unknown; Kafka's `lastTimestamp`).
    last_timestamp_ms: i64,
}

/// One producer of a partition as DescribeProducers shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerView {
    pub producer_id: i64,
    pub epoch: i16,
    /// The last sequence appended (-1: none since the epoch began).
    pub last_sequence: i32,
    /// The max timestamp of its last batch (-1: unknown).
    pub last_timestamp_ms: i64,
    /// The first index of its open transaction in this partition, if one is open.
    pub txn_start_index: Option<u64>,
}

/// What `check` decided for a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Accept,
    /// Already appended at this first index: acknowledge again without appending.
    Duplicate { first_index: u64 },
}

/// The table for one partition, bounded by `producers_max` (least recently used evicted).
#[derive(Debug)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    producers_max: usize,
    tick: u64,
}

impl ProducerStateTable {
    pub fn new(producers_max: usize) -> Self {
        Self {
            producers: HashMap::new(),
            producers_max: producers_max.max(1),
            tick: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn check(&self, batch: &ProducerBatch) -> Result<SequenceCheck, Error> {
        let last_sequence = batch.last_sequence();
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            return if batch.first_sequence == 0 {
                Ok(SequenceCheck::Accept)
            } else {
                Err(Error::OutOfOrderSequence {
                    producer_id: batch.producer_id,
                    expected: 0,
                    received: batch.first_sequence,
                })
            };
        };
        if batch.epoch < entry.epoch {
            return Err(Error::InvalidProducerEpoch {
                producer_id: batch.producer_id,
                current: entry.epoch,
                received: batch.epoch,
            });
        }
        if batch.epoch > entry.epoch {
            return if batch.first_sequence == 0 {
                Ok(SequenceCheck::Accept)
            } else {
                Err(Error::OutOfOrderSequence {
                    producer_id: batch.producer_id,
                    expected: 0,
                    received: batch.first_sequence,
                })
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == batch.first_sequence && b.last_sequence == last_sequence)
        {
            return Ok(SequenceCheck::Duplicate {
                first_index: dup.first_index,
            });
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| add_sequence(b.last_sequence, 1));
        if batch.first_sequence != expected {
            return Err(Error::OutOfOrderSequence {
                producer_id: batch.producer_id,
                expected,
                received: batch.first_sequence,
            });
        }
        Ok(SequenceCheck::Accept)
    }

    /// Checks a transaction marker written with `epoch` for `producer_id`: a marker of an
    /// older epoch than the partition has seen is refused (a zombie coordinator's write).
    pub fn check_marker(&self, producer_id: i64, epoch: i16) -> Result<(), Error> {
        match self.producers.get(&producer_id) {
            Some(entry) if epoch < entry.epoch => Err(Error::InvalidProducerEpoch {
                producer_id,
                current: entry.epoch,
                received: epoch,
            }),
            _ => Ok(()),
        }
    }

    /// Records a transaction marker: a marker of a newer epoch (the coordinator bumped it to
    /// fence a zombie) moves the producer to that epoch, so batches of the old one are refused.
    pub fn record_marker(&mut self, producer_id: i64, epoch: i16) {
        if let Some(entry) = self.producers.get_mut(&producer_id) {
            if epoch > entry.epoch {
                entry.epoch = epoch;
                entry.batches.clear();
            }
        }
    }

    /// Adds a producer from a snapshot as the most recently used (snapshots list producers
    /// least recently used first), evicting as `record` does.
    fn restore(
        &mut self,
        producer_id: i64,
        epoch: i16,
        batches: VecDeque<BatchRecord>,
        last_timestamp_ms: i64,
    ) {
        self.tick += 1;
        if !self.producers.contains_key(&producer_id) && self.producers.len() >= self.producers_max
        {
            if let Some(oldest) = self
                .producers
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(id, _)| *id)
            {
                self.producers.remove(&oldest);
            }
        }
        self.producers.insert(
            producer_id,
            ProducerEntry {
                epoch,
                batches,
                last_used: self.tick,
                last_timestamp_ms,
            },
        );
    }

    /// The producers remembered, by producer id.
    pub fn producers(&self) -> Vec<ProducerView> {
        let mut out: Vec<ProducerView> = self
            .producers
            .iter()
            .map(|(id, e)| ProducerView {
                producer_id: *id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_sequence),
                last_timestamp_ms: e.last_timestamp_ms,
                txn_start_index: None,
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Records an appended batch whose max timestamp is `timestamp_ms` (also used when
    /// replaying entry headers on open).
    pub fn record(&mut self, batch: &ProducerBatch, first_index: u64, timestamp_ms: i64) {
        self.tick += 1;
        let tick = self.tick;
        if !self.producers.contains_key(&batch.producer_id)
            && self.producers.len() >= self.producers_max
        {
            if let Some(oldest) = self
                .producers
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(id, _)| *id)
            {
                self.producers.remove(&oldest);
            }
        }
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: batch.epoch,
                batches: VecDeque::with_capacity(BATCHES_REMEMBERED),
                last_used: tick,
                last_timestamp_ms: -1,
            });
        if batch.epoch != entry.epoch {
            entry.epoch = batch.epoch;
            entry.batches.clear();
        }
        entry.last_used = tick;
        entry.last_timestamp_ms = timestamp_ms;
        if entry.batches.len() == BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchRecord {
            first_sequence: batch.first_sequence,
            last_sequence: batch.last_sequence(),
            first_index,
        });
    }
}

/// A transaction aborted in this partition: Kafka's aborted-transaction index entry.
pub use magnetar_storage::entry::AbortedTxn;

/// The transactions of one partition: the open ones (producer id -> first index), which bound
/// the last stable offset, and the aborted ones, which `read_committed` readers skip. Updated
/// under the partition's producer lock from entry headers, so it is rebuilt from the log (or a
/// snapshot plus the headers after it) exactly as the producer table is.
#[derive(Debug, Default)]
pub struct TxnTable {
    open: HashMap<i64, u64>,
    /// Ordered by `last_index` (markers are appended in index order).
    aborted: VecDeque<AbortedTxn>,
}

impl TxnTable {
    /// Records an entry of `producer_id` at `first_index` with its transaction mark.
    pub fn record(&mut self, producer_id: i64, mark: TxnMark, first_index: u64) {
        match mark {
            TxnMark::None => {}
            TxnMark::Data => {
                self.open.entry(producer_id).or_insert(first_index);
            }
            TxnMark::Commit => {
                self.open.remove(&producer_id);
            }
            TxnMark::Abort => {
                if let Some(first) = self.open.remove(&producer_id) {
                    self.aborted.push_back(AbortedTxn {
                        producer_id,
                        first_index: first,
                        last_index: first_index,
                    });
                }
            }
        }
    }

    /// The first index of the oldest open transaction.
    pub fn first_open(&self) -> Option<u64> {
        self.open.values().min().copied()
    }

    /// The first index of `producer_id`'s open transaction.
    pub fn open_of(&self, producer_id: i64) -> Option<u64> {
        self.open.get(&producer_id).copied()
    }

    /// The open transactions: (producer id, first index), oldest first.
    pub fn open(&self) -> Vec<(i64, u64)> {
        let mut open: Vec<(i64, u64)> = self.open.iter().map(|(p, i)| (*p, *i)).collect();
        open.sort_by_key(|(p, i)| (*i, *p));
        open
    }

    /// The aborted transactions a read of `[from, to)` must know about (Kafka's
    /// `collectAbortedTransactions`): those whose marker is at or after `from` and whose first
    /// entry is before `to`.
    pub fn aborted_in(&self, from: u64, to: u64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_index < from);
        self.aborted
            .iter()
            .skip(start)
            .filter(|a| a.first_index < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions whose marker is before the log start (their entries are
    /// gone) and open ones that started there (retention removed them).
    pub fn forget_before(&mut self, start: u64) {
        while self.aborted.front().is_some_and(|a| a.last_index < start) {
            self.aborted.pop_front();
        }
    }

    pub fn aborted_len(&self) -> usize {
        self.aborted.len()
    }
}

/// Snapshot blob format version (see [`encode_snapshot`]); versions 1 (no transactions) and 2
/// (no producer timestamps) are still read.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 3;

/// Encodes the producer table, the named producers' last entries (producer id -> first
/// index of its last entry) and the transactions as a snapshot blob. Little-endian:
/// version u8; producer count u32; per producer, least recently used first: id i64, epoch i16,
/// (version 3) last timestamp i64, batch count u8, per batch: first sequence i32, last sequence i32, first index u64; named
/// count u32; per named producer: id i64, first index u64; (version 2) open transaction count
/// u32, per transaction: producer id i64, first index u64; aborted count u32, per aborted
/// transaction: producer id i64, first index u64, marker index u64. The ledger adds the CRC.
pub fn encode_snapshot(
    table: &ProducerStateTable,
    named: &HashMap<i64, u64>,
    txns: &TxnTable,
) -> Vec<u8> {
    let mut producers: Vec<(&i64, &ProducerEntry)> = table.producers.iter().collect();
    producers.sort_by_key(|(_, e)| e.last_used);
    let mut out = Vec::with_capacity(9 + producers.len() * 83 + named.len() * 16);
    out.push(SNAPSHOT_FORMAT_VERSION);
    out.extend_from_slice(&(producers.len() as u32).to_le_bytes());
    for (id, e) in producers {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&e.epoch.to_le_bytes());
        out.extend_from_slice(&e.last_timestamp_ms.to_le_bytes());
        out.push(e.batches.len() as u8);
        for b in &e.batches {
            out.extend_from_slice(&b.first_sequence.to_le_bytes());
            out.extend_from_slice(&b.last_sequence.to_le_bytes());
            out.extend_from_slice(&b.first_index.to_le_bytes());
        }
    }
    let mut named: Vec<(&i64, &u64)> = named.iter().collect();
    named.sort_by_key(|(_, index)| **index);
    out.extend_from_slice(&(named.len() as u32).to_le_bytes());
    for (id, index) in named {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&index.to_le_bytes());
    }
    let open = txns.open();
    out.extend_from_slice(&(open.len() as u32).to_le_bytes());
    for (id, first) in open {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&first.to_le_bytes());
    }
    out.extend_from_slice(&(txns.aborted.len() as u32).to_le_bytes());
    for a in &txns.aborted {
        out.extend_from_slice(&a.producer_id.to_le_bytes());
        out.extend_from_slice(&a.first_index.to_le_bytes());
        out.extend_from_slice(&a.last_index.to_le_bytes());
    }
    out
}

/// A decoded snapshot: the producer table, the named producers' last entries (oldest first)
/// and the transactions.
pub type DecodedSnapshot = (ProducerStateTable, Vec<(i64, u64)>, TxnTable);

/// Decodes a snapshot blob into a table bounded by `producers_max`, the named producers'
/// last entries (oldest first) and the transactions. `Err` says why the blob is unusable.
pub fn decode_snapshot(bytes: &[u8], producers_max: usize) -> Result<DecodedSnapshot, String> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u8()?;
    if !(1..=SNAPSHOT_FORMAT_VERSION).contains(&version) {
        return Err(format!("unsupported producer snapshot version {version}"));
    }
    let mut table = ProducerStateTable::new(producers_max);
    let count = r.u32()?;
    for _ in 0..count {
        let id = r.u64()? as i64;
        let epoch = r.u16()? as i16;
        let last_timestamp_ms = if version >= 3 { r.u64()? as i64 } else { -1 };
        let n = usize::from(r.u8()?);
        // No batches: a producer whose epoch a transaction marker bumped (it starts again at 0).
        if n > BATCHES_REMEMBERED {
            return Err(format!("producer {id} has {n} batches"));
        }
        let mut batches = VecDeque::with_capacity(BATCHES_REMEMBERED);
        for _ in 0..n {
            batches.push_back(BatchRecord {
                first_sequence: r.u32()? as i32,
                last_sequence: r.u32()? as i32,
                first_index: r.u64()?,
            });
        }
        table.restore(id, epoch, batches, last_timestamp_ms);
    }
    let named_count = r.u32()?;
    let mut named = Vec::new();
    for _ in 0..named_count {
        named.push((r.u64()? as i64, r.u64()?));
    }
    let mut txns = TxnTable::default();
    if version >= 2 {
        let open = r.u32()?;
        for _ in 0..open {
            let (id, first) = (r.u64()? as i64, r.u64()?);
            txns.open.insert(id, first);
        }
        let aborted = r.u32()?;
        for _ in 0..aborted {
            let a = AbortedTxn {
                producer_id: r.u64()? as i64,
                first_index: r.u64()?,
                last_index: r.u64()?,
            };
            if txns
                .aborted
                .back()
                .is_some_and(|b| b.last_index > a.last_index)
                || a.first_index > a.last_index
            {
                return Err("aborted transactions out of order".to_string());
            }
            txns.aborted.push_back(a);
        }
    }
    if r.at != bytes.len() {
        return Err(format!(
            "{} bytes after the producer snapshot",
            bytes.len() - r.at
        ));
    }
    Ok((table, named, txns))
}

/// Bounds-checked little-endian reads (a snapshot is disk input: no panics on bad bytes).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.at.checked_add(N).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!("producer snapshot truncated at byte {}", self.at));
        };
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.at..end]);
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(epoch: i16, first_sequence: i32, message_count: u32) -> ProducerBatch {
        ProducerBatch {
            producer_id: 7,
            epoch,
            first_sequence,
            message_count,
            txn: TxnMark::None,
        }
    }

    #[test]
    fn in_order_batches_are_accepted_and_duplicates_found() {
        let mut table = ProducerStateTable::new(10);
        assert_eq!(table.check(&batch(0, 0, 3)).unwrap(), SequenceCheck::Accept);
        table.record(&batch(0, 0, 3), 100, -1);
        assert_eq!(table.check(&batch(0, 3, 2)).unwrap(), SequenceCheck::Accept);
        table.record(&batch(0, 3, 2), 103, -1);
        assert_eq!(
            table.check(&batch(0, 0, 3)).unwrap(),
            SequenceCheck::Duplicate { first_index: 100 }
        );
        assert_eq!(
            table.check(&batch(0, 3, 2)).unwrap(),
            SequenceCheck::Duplicate { first_index: 103 }
        );
    }

    #[test]
    fn gaps_and_old_epochs_are_refused() {
        let mut table = ProducerStateTable::new(10);
        table.record(&batch(1, 0, 3), 0, -1);
        assert!(matches!(
            table.check(&batch(1, 5, 1)),
            Err(Error::OutOfOrderSequence {
                expected: 3,
                received: 5,
                ..
            })
        ));
        assert!(matches!(
            table.check(&batch(0, 3, 1)),
            Err(Error::InvalidProducerEpoch { current: 1, .. })
        ));
        // A new epoch starts again at 0.
        assert_eq!(table.check(&batch(2, 0, 1)).unwrap(), SequenceCheck::Accept);
        assert!(table.check(&batch(2, 4, 1)).is_err());
        // An unknown producer must start at 0.
        let fresh = ProducerBatch {
            producer_id: 8,
            epoch: 0,
            first_sequence: 9,
            message_count: 1,
            txn: TxnMark::None,
        };
        assert!(table.check(&fresh).is_err());
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut table = ProducerStateTable::new(10);
        let b = batch(0, 0, 1);
        table.record(&b, 0, -1);
        let near = batch(0, 1, 1);
        table.record(&near, 1, -1);
        let mut last = ProducerBatch {
            first_sequence: i32::MAX - 1,
            ..batch(0, 0, 2)
        };
        assert_eq!(last.last_sequence(), i32::MAX);
        // Pretend the producer got here legitimately.
        table.producers.get_mut(&7).unwrap().batches.clear();
        table.record(&last, 2, -1);
        last = batch(0, 0, 1);
        assert_eq!(table.check(&last).unwrap(), SequenceCheck::Accept);
    }

    #[test]
    fn table_is_bounded() {
        let mut table = ProducerStateTable::new(2);
        for id in 0..5 {
            table.record(
                &ProducerBatch {
                    producer_id: id,
                    epoch: 0,
                    first_sequence: 0,
                    message_count: 1,
                    txn: TxnMark::None,
                },
                0,
                -1,
            );
        }
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn snapshot_round_trips_and_keeps_detecting_duplicates() {
        let mut table = ProducerStateTable::new(3);
        for seq in 0..7 {
            table.record(&batch(0, seq * 2, 2), 100 + seq as u64 * 2, -1);
        }
        let other = ProducerBatch {
            producer_id: 9,
            epoch: 4,
            first_sequence: 0,
            message_count: 1,
            txn: TxnMark::None,
        };
        table.record(&other, 200, 1_234);
        let named: HashMap<i64, u64> = [(named_producer_id("p"), 150)].into();
        let mut txns = TxnTable::default();
        txns.record(9, TxnMark::Data, 180);
        txns.record(9, TxnMark::Abort, 190);
        txns.record(7, TxnMark::Data, 195);
        let blob = encode_snapshot(&table, &named, &txns);
        let (restored, named_back, txns_back) = decode_snapshot(&blob, 3).unwrap();
        assert_eq!(txns_back.open(), vec![(7, 195)]);
        assert_eq!(
            txns_back.aborted_in(0, u64::MAX),
            txns.aborted_in(0, u64::MAX)
        );
        assert_eq!(named_back, vec![(named_producer_id("p"), 150)]);
        assert_eq!(restored.len(), 2);
        assert_eq!(
            restored.producers(),
            table.producers(),
            "epochs, last sequences and timestamps survive"
        );
        assert_eq!(restored.producers()[1].last_timestamp_ms, 1_234);
        // The remembered window survives: the last five batches are duplicates, the one
        // before them was forgotten, and the next sequence is what it was.
        for seq in 2..7 {
            assert_eq!(
                restored.check(&batch(0, seq * 2, 2)).unwrap(),
                SequenceCheck::Duplicate {
                    first_index: 100 + seq as u64 * 2
                }
            );
        }
        assert!(restored.check(&batch(0, 2, 2)).is_err());
        assert_eq!(
            restored.check(&batch(0, 14, 1)).unwrap(),
            SequenceCheck::Accept
        );
        assert!(matches!(
            restored.check(&ProducerBatch { epoch: 3, ..other }),
            Err(Error::InvalidProducerEpoch { current: 4, .. })
        ));
        // Least recently used order survives too: producer 7 is evicted first.
        let mut restored = restored;
        restored.record(
            &ProducerBatch {
                producer_id: 11,
                ..other
            },
            300,
            -1,
        );
        restored.record(
            &ProducerBatch {
                producer_id: 12,
                ..other
            },
            301,
            -1,
        );
        assert!(restored.check(&batch(0, 12, 2)).is_err(), "7 was evicted");
    }

    #[test]
    fn damaged_snapshots_are_refused_without_panicking() {
        let mut table = ProducerStateTable::new(10);
        table.record(&batch(0, 0, 3), 5, -1);
        let blob = encode_snapshot(&table, &HashMap::new(), &TxnTable::default());
        for cut in 0..blob.len() {
            assert!(decode_snapshot(&blob[..cut], 10).is_err(), "cut at {cut}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(decode_snapshot(&longer, 10).is_err());
        let mut version = blob.clone();
        version[0] = 0;
        assert!(decode_snapshot(&version, 10)
            .unwrap_err()
            .contains("version 0"));
    }

    #[test]
    fn transactions_bound_the_stable_offset_and_aborts_are_indexed() {
        let mut txns = TxnTable::default();
        assert_eq!(txns.first_open(), None);
        txns.record(1, TxnMark::Data, 10);
        txns.record(2, TxnMark::Data, 12);
        txns.record(1, TxnMark::Data, 14); // a later batch of the same transaction
        assert_eq!(txns.first_open(), Some(10));
        txns.record(1, TxnMark::Commit, 15);
        assert_eq!(txns.first_open(), Some(12));
        txns.record(2, TxnMark::Abort, 16);
        assert_eq!(txns.first_open(), None);
        let aborted = AbortedTxn {
            producer_id: 2,
            first_index: 12,
            last_index: 16,
        };
        assert_eq!(txns.aborted_in(0, 13), vec![aborted]);
        assert_eq!(txns.aborted_in(16, 100), vec![aborted]);
        assert!(
            txns.aborted_in(17, 100).is_empty(),
            "marker before the read"
        );
        assert!(txns.aborted_in(0, 12).is_empty(), "starts after the read");
        // A marker without data in this partition (the coordinator writes markers to every
        // partition it was told about) changes nothing.
        txns.record(3, TxnMark::Abort, 17);
        assert_eq!(txns.aborted_len(), 1);
        txns.forget_before(17);
        assert_eq!(txns.aborted_len(), 0);
    }

    #[test]
    fn a_marker_of_a_newer_epoch_fences_the_old_one() {
        let mut table = ProducerStateTable::new(10);
        table.record(&batch(0, 0, 3), 0, -1);
        assert!(table.check_marker(7, 0).is_ok());
        table.record_marker(7, 1);
        assert!(matches!(
            table.check(&batch(0, 3, 1)),
            Err(Error::InvalidProducerEpoch { current: 1, .. })
        ));
        assert!(table.check_marker(7, 0).is_err());
        assert_eq!(table.check(&batch(1, 0, 1)).unwrap(), SequenceCheck::Accept);
    }

    #[test]
    fn version_one_and_two_snapshots_still_load() {
        let mut table = ProducerStateTable::new(10);
        table.record(&batch(0, 0, 3), 5, 77);
        let v3 = encode_snapshot(&table, &HashMap::new(), &TxnTable::default());
        // One producer: version, count, id, epoch, then (version 3 only) its timestamp.
        let mut v2 = v3.clone();
        v2.drain(15..23);
        v2[0] = 2;
        let mut v1 = v2.clone();
        v1[0] = 1;
        v1.truncate(v1.len() - 8); // no transaction counts in version 1
        for blob in [v1, v2] {
            let (restored, _, txns) = decode_snapshot(&blob, 10).unwrap();
            assert_eq!(restored.len(), 1);
            assert_eq!(restored.producers()[0].last_timestamp_ms, -1, "unknown");
            assert_eq!(restored.producers()[0].last_sequence, 2);
            assert_eq!(txns.first_open(), None);
        }
        let (restored, _, _) = decode_snapshot(&v3, 10).unwrap();
        assert_eq!(restored.producers()[0].last_timestamp_ms, 77);
    }
}
