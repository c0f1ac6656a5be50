//! The transaction coordinator's state machine for one partition of `__transaction_state`:
//! pure, deciding from the current state (and the clock) which record to write. The runtime
//! appends that record and applies it with [`TxnStateMachine::replay`] once it is durable; the
//! same `replay` rebuilds the state when the partition is loaded. So the state never runs
//! ahead of the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::CoordinatorError;

use super::record::{TxnLogValue, TxnRecord};
use super::{PendingOffset, TxnMetadata, TxnStatus};

/// What InitProducerId does next.
#[derive(Debug, PartialEq, Eq)]
pub enum InitStep {
    /// Write this record; the answer is the producer id and epoch it holds.
    Write(TxnRecord),
    /// An open transaction must be aborted first (this PrepareAbort record fences its producer
    /// by bumping the epoch); then InitProducerId runs again.
    AbortFirst(TxnRecord),
}

/// What EndTxn does next.
#[derive(Debug, PartialEq, Eq)]
pub enum EndStep {
    /// Write this PrepareCommit/PrepareAbort record, then complete the transaction.
    Prepare(TxnRecord),
    /// A retry of an EndTxn that already completed the same way: answer success.
    AlreadyDone,
}

/// Limits the machine checks.
#[derive(Clone, Copy, Debug)]
pub struct TxnLimits {
    pub max_timeout_ms: i32,
    pub partitions_max: usize,
    pub id_expiration_ms: i64,
}

#[derive(Debug)]
pub struct TxnStateMachine {
    txns: HashMap<String, TxnMetadata>,
    limits: TxnLimits,
}

/// The longest transactional id accepted (a Kafka string).
const ID_BYTES_MAX: usize = i16::MAX as usize;

impl TxnStateMachine {
    pub fn new(limits: TxnLimits) -> Self {
        Self {
            txns: HashMap::new(),
            limits,
        }
    }

    pub fn get(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.txns.get(transactional_id)
    }

    pub fn all(&self) -> impl Iterator<Item = &TxnMetadata> {
        self.txns.values()
    }

    pub fn len(&self) -> usize {
        self.txns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// Whether InitProducerId for `id` needs a fresh producer id (unknown id, or the epoch is
    /// exhausted); the runtime allocates one and passes it in.
    pub fn needs_producer_id(&self, id: &str) -> bool {
        self.txns
            .get(id)
            .is_none_or(|m| m.producer_epoch >= i16::MAX - 1)
    }

    /// InitProducerId with a transactional id (KIP-98, KIP-360 for `expected`: the producer
    /// id and epoch a producer that re-initializes already holds, or `None`).
    pub fn init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fresh_producer_id: Option<i64>,
        now_ms: i64,
    ) -> Result<InitStep, CoordinatorError> {
        if id.is_empty() || id.len() > ID_BYTES_MAX {
            return Err(CoordinatorError::InvalidTransactionalId);
        }
        if timeout_ms <= 0 || timeout_ms > self.limits.max_timeout_ms {
            return Err(CoordinatorError::InvalidTransactionTimeout);
        }
        let fresh = |pid: Option<i64>| pid.ok_or(CoordinatorError::Internal);
        let Some(meta) = self.txns.get(id) else {
            let producer_id = fresh(fresh_producer_id)?;
            return Ok(InitStep::Write(TxnMetadata::new(
                id,
                producer_id,
                0,
                timeout_ms,
                now_ms,
            )
            .record()));
        };
        if let Some((pid, epoch)) = expected.filter(|(pid, _)| *pid >= 0) {
            if pid != meta.producer_id {
                return Err(CoordinatorError::InvalidProducerIdMapping);
            }
            if epoch != meta.producer_epoch {
                return Err(CoordinatorError::ProducerFenced);
            }
        }
        match meta.status {
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort | TxnStatus::PrepareEpochFence => {
                Err(CoordinatorError::ConcurrentTransactions)
            }
            TxnStatus::Ongoing => {
                // Fence the producer of the open transaction and abort it.
                let mut next = meta.clone();
                next.producer_epoch = meta.producer_epoch.saturating_add(1).min(i16::MAX - 1);
                next.status = TxnStatus::PrepareAbort;
                next.last_update_ms = now_ms;
                Ok(InitStep::AbortFirst(next.record()))
            }
            TxnStatus::Empty
            | TxnStatus::CompleteCommit
            | TxnStatus::CompleteAbort
            | TxnStatus::Dead => {
                let (producer_id, epoch) = if meta.producer_epoch >= i16::MAX - 1 {
                    (fresh(fresh_producer_id)?, 0)
                } else {
                    (meta.producer_id, meta.producer_epoch + 1)
                };
                Ok(InitStep::Write(
                    TxnMetadata::new(id, producer_id, epoch, timeout_ms, now_ms).record(),
                ))
            }
        }
    }

    /// Checks that `producer` (id, epoch) is the current producer of `id`.
    fn current(&self, id: &str, producer: (i64, i16)) -> Result<&TxnMetadata, CoordinatorError> {
        let meta = self
            .txns
            .get(id)
            .ok_or(CoordinatorError::InvalidProducerIdMapping)?;
        if meta.producer_id != producer.0 {
            return Err(CoordinatorError::InvalidProducerIdMapping);
        }
        if producer.1 != meta.producer_epoch {
            return Err(CoordinatorError::ProducerFenced);
        }
        Ok(meta)
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition): `None`
    /// when every partition is already in the open transaction (nothing to write).
    pub fn add_partitions(
        &self,
        id: &str,
        producer: (i64, i16),
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Result<Option<TxnRecord>, CoordinatorError> {
        let meta = self.current(id, producer)?;
        match meta.status {
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort | TxnStatus::PrepareEpochFence => {
                return Err(CoordinatorError::ConcurrentTransactions)
            }
            TxnStatus::Dead => return Err(CoordinatorError::InvalidTxnState),
            _ => {}
        }
        let ongoing = meta.status == TxnStatus::Ongoing;
        if ongoing
            && partitions
                .iter()
                .all(|p| meta.partitions.contains(&(p.0.clone(), p.1)))
        {
            return Ok(None);
        }
        let mut next = meta.clone();
        if !ongoing {
            next.partitions.clear();
            next.pending_offsets.clear();
            next.start_ms = now_ms;
        }
        next.partitions.extend(partitions.iter().cloned());
        if next.partitions.len() > self.limits.partitions_max {
            return Err(CoordinatorError::TransactionLimitExceeded);
        }
        next.status = TxnStatus::Ongoing;
        next.last_update_ms = now_ms;
        Ok(Some(next.record()))
    }

    /// TxnOffsetCommit: the offsets `group` commits when the transaction commits (merged with
    /// those sent before, per partition).
    pub fn txn_offset_commit(
        &self,
        id: &str,
        producer: (i64, i16),
        group: &str,
        offsets: Vec<PendingOffset>,
    ) -> Result<TxnRecord, CoordinatorError> {
        let meta = self.current(id, producer)?;
        if meta.status != TxnStatus::Ongoing {
            return Err(CoordinatorError::InvalidTxnState);
        }
        let mut merged: BTreeMap<(String, i32), PendingOffset> = meta
            .pending_offsets
            .get(group)
            .into_iter()
            .flatten()
            .map(|o| ((o.topic.clone(), o.partition), o.clone()))
            .collect();
        for o in offsets {
            merged.insert((o.topic.clone(), o.partition), o);
        }
        if merged.len() > self.limits.partitions_max {
            return Err(CoordinatorError::TransactionLimitExceeded);
        }
        Ok(TxnRecord::PendingOffsets {
            transactional_id: id.to_string(),
            group: group.to_string(),
            value: Some((
                meta.producer_id,
                meta.producer_epoch,
                merged.into_values().collect(),
            )),
        })
    }

    /// EndTxn.
    pub fn end_txn(
        &self,
        id: &str,
        producer: (i64, i16),
        commit: bool,
        now_ms: i64,
    ) -> Result<EndStep, CoordinatorError> {
        let meta = self.current(id, producer)?;
        match (meta.status, commit) {
            (TxnStatus::Ongoing, _) => {
                let mut next = meta.clone();
                next.status = if commit {
                    TxnStatus::PrepareCommit
                } else {
                    TxnStatus::PrepareAbort
                };
                next.last_update_ms = now_ms;
                Ok(EndStep::Prepare(next.record()))
            }
            (TxnStatus::CompleteCommit, true) | (TxnStatus::CompleteAbort, false) => {
                Ok(EndStep::AlreadyDone)
            }
            (TxnStatus::PrepareCommit, true) | (TxnStatus::PrepareAbort, false) => {
                Err(CoordinatorError::ConcurrentTransactions)
            }
            // An abort with nothing open is harmless (librdkafka aborts after an error before
            // any partition was added); Kafka answers it the same way since KIP-360.
            (TxnStatus::Empty, false) => Ok(EndStep::AlreadyDone),
            _ => Err(CoordinatorError::InvalidTxnState),
        }
    }

    /// The record completing a prepared transaction (PrepareCommit -> CompleteCommit,
    /// PrepareAbort -> CompleteAbort), if `id` is still prepared by `producer`.
    pub fn complete(&self, id: &str, producer: (i64, i16), now_ms: i64) -> Option<TxnRecord> {
        let meta = self.txns.get(id)?;
        if (meta.producer_id, meta.producer_epoch) != producer {
            return None;
        }
        let status = match meta.status {
            TxnStatus::PrepareCommit => TxnStatus::CompleteCommit,
            TxnStatus::PrepareAbort => TxnStatus::CompleteAbort,
            _ => return None,
        };
        let mut next = meta.clone();
        next.status = status;
        next.last_update_ms = now_ms;
        next.partitions.clear();
        next.pending_offsets.clear();
        Some(next.record())
    }

    /// Aborts of open transactions older than their timeout: PrepareAbort records with the
    /// epoch bumped (the producer is fenced, as Kafka does on a timeout).
    pub fn timed_out(&self, now_ms: i64) -> Vec<TxnRecord> {
        let mut out: Vec<&TxnMetadata> = self
            .txns
            .values()
            .filter(|m| {
                m.status == TxnStatus::Ongoing
                    && now_ms.saturating_sub(m.start_ms) > i64::from(m.timeout_ms)
            })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out.into_iter()
            .map(|m| {
                let mut next = m.clone();
                next.producer_epoch = m.producer_epoch.saturating_add(1).min(i16::MAX - 1);
                next.status = TxnStatus::PrepareAbort;
                next.last_update_ms = now_ms;
                next.record()
            })
            .collect()
    }

    /// Tombstones of transactional ids idle (nothing open) for longer than
    /// `transactional.id.expiration.ms`.
    pub fn expired(&self, now_ms: i64) -> Vec<TxnRecord> {
        let mut ids: Vec<&str> = self
            .txns
            .values()
            .filter(|m| {
                matches!(
                    m.status,
                    TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort
                ) && now_ms.saturating_sub(m.last_update_ms) > self.limits.id_expiration_ms
            })
            .map(|m| m.transactional_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| TxnRecord::Metadata {
                transactional_id: id.to_string(),
                value: None,
            })
            .collect()
    }

    /// The transactions left prepared (the broker stopped before completing them): the
    /// runtime completes each after loading.
    pub fn prepared(&self) -> Vec<(String, (i64, i16))> {
        let mut out: Vec<(String, (i64, i16))> = self
            .txns
            .values()
            .filter(|m| matches!(m.status, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort))
            .map(|m| {
                (
                    m.transactional_id.clone(),
                    (m.producer_id, m.producer_epoch),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Whether a transactional produce to `partition` (a full topic name and index) by
    /// `producer` belongs to an open transaction that added that partition (KIP-890's
    /// verification, done in-process).
    pub fn verify(
        &self,
        id: &str,
        producer: (i64, i16),
        topic: &str,
        partition: i32,
    ) -> Result<(), CoordinatorError> {
        let meta = self.current(id, producer)?;
        if meta.status != TxnStatus::Ongoing
            || !meta.partitions.contains(&(topic.to_string(), partition))
        {
            return Err(CoordinatorError::InvalidTxnState);
        }
        Ok(())
    }

    /// The live state as records (a snapshot: replaying them alone rebuilds this state).
    pub fn snapshot(&self) -> Vec<TxnRecord> {
        let mut ids: Vec<&String> = self.txns.keys().collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            let meta = &self.txns[id];
            out.push(meta.record());
            for (group, offsets) in &meta.pending_offsets {
                out.push(TxnRecord::PendingOffsets {
                    transactional_id: id.clone(),
                    group: group.clone(),
                    value: Some((meta.producer_id, meta.producer_epoch, offsets.clone())),
                });
            }
        }
        out
    }

    /// Applies a durable record (while serving and while loading).
    pub fn replay(&mut self, record: &TxnRecord) {
        match record {
            TxnRecord::Metadata {
                transactional_id,
                value: None,
            } => {
                self.txns.remove(transactional_id);
            }
            TxnRecord::Metadata {
                transactional_id,
                value: Some(v),
            } => {
                let pending = match self.txns.remove(transactional_id) {
                    Some(old)
                        if v.status == TxnStatus::Ongoing
                            || matches!(
                                v.status,
                                TxnStatus::PrepareCommit | TxnStatus::PrepareAbort
                            ) =>
                    {
                        old.pending_offsets
                    }
                    _ => BTreeMap::new(),
                };
                let mut meta = TxnMetadata::from_value(transactional_id, v);
                meta.pending_offsets = pending;
                self.txns.insert(transactional_id.clone(), meta);
            }
            TxnRecord::PendingOffsets {
                transactional_id,
                group,
                value,
            } => {
                let Some(meta) = self.txns.get_mut(transactional_id) else {
                    return;
                };
                match value {
                    Some((pid, epoch, offsets))
                        if (*pid, *epoch) == (meta.producer_id, meta.producer_epoch) =>
                    {
                        meta.pending_offsets.insert(group.clone(), offsets.clone());
                    }
                    Some(_) => {}
                    None => {
                        meta.pending_offsets.remove(group);
                    }
                }
            }
        }
    }
}

impl TxnMetadata {
    fn new(id: &str, producer_id: i64, epoch: i16, timeout_ms: i32, now_ms: i64) -> Self {
        Self {
            transactional_id: id.to_string(),
            producer_id,
            producer_epoch: epoch,
            timeout_ms,
            status: TxnStatus::Empty,
            partitions: BTreeSet::new(),
            last_update_ms: now_ms,
            start_ms: -1,
            pending_offsets: BTreeMap::new(),
        }
    }

    fn from_value(id: &str, v: &TxnLogValue) -> Self {
        Self {
            transactional_id: id.to_string(),
            producer_id: v.producer_id,
            producer_epoch: v.producer_epoch,
            timeout_ms: v.timeout_ms,
            status: v.status,
            partitions: v
                .partitions
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                .collect(),
            last_update_ms: v.last_update_ms,
            start_ms: v.start_ms,
            pending_offsets: BTreeMap::new(),
        }
    }

    /// The metadata record of this state.
    pub fn record(&self) -> TxnRecord {
        let mut partitions: Vec<(String, Vec<i32>)> = Vec::new();
        for (topic, p) in &self.partitions {
            match partitions.last_mut() {
                Some((t, ps)) if t == topic => ps.push(*p),
                _ => partitions.push((topic.clone(), vec![*p])),
            }
        }
        TxnRecord::Metadata {
            transactional_id: self.transactional_id.clone(),
            value: Some(TxnLogValue {
                producer_id: self.producer_id,
                producer_epoch: self.producer_epoch,
                timeout_ms: self.timeout_ms,
                status: self.status,
                partitions,
                last_update_ms: self.last_update_ms,
                start_ms: self.start_ms,
            }),
        }
    }
}
