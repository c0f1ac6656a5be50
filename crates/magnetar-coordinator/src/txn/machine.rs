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
            return Ok(InitStep::Write(
                TxnMetadata::new(id, producer_id, 0, timeout_ms, now_ms).record(),
            ));
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
            // Fence the producer of the open transaction and abort it.
            TxnStatus::Ongoing => Ok(InitStep::AbortFirst(meta.fenced_abort(now_ms))),
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
        out.into_iter().map(|m| m.fenced_abort(now_ms)).collect()
    }

    /// An operator's forced abort of `id`'s open transaction (its producer fenced).
    pub fn force_abort(&self, id: &str, now_ms: i64) -> Result<TxnRecord, CoordinatorError> {
        let meta = self
            .txns
            .get(id)
            .ok_or(CoordinatorError::InvalidProducerIdMapping)?;
        if meta.status != TxnStatus::Ongoing {
            return Err(CoordinatorError::InvalidTxnState);
        }
        Ok(meta.fenced_abort(now_ms))
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

    /// The PrepareAbort record that aborts this open transaction and fences its producer (the
    /// epoch bumped, so the markers refuse the old epoch in every partition).
    fn fenced_abort(&self, now_ms: i64) -> TxnRecord {
        let mut next = self.clone();
        next.producer_epoch = self.producer_epoch.saturating_add(1).min(i16::MAX - 1);
        next.status = TxnStatus::PrepareAbort;
        next.last_update_ms = now_ms;
        next.record()
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

#[cfg(test)]
mod tests {
    //! A model test of the state machine: random interleavings of init, add, offset commits,
    //! commit, abort, timeouts, completions and stale (zombie) producers, with the runtime's
    //! rule that a record is applied once written. Invariants after every step: replaying the
    //! log from scratch gives the same state; a producer's epoch never goes back; only the
    //! current producer of an id may act; partitions are held only by open or prepared
    //! transactions; verification accepts exactly the current producer's added partitions.
    use super::*;
    use proptest::prelude::*;

    const IDS: [&str; 3] = ["a", "b", "c"];

    #[derive(Clone, Debug)]
    enum Op {
        Init(usize),
        Add(usize, i32, bool),
        Offsets(usize, bool),
        End(usize, bool, bool),
        Complete(usize),
        Tick(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3usize).prop_map(Op::Init),
            (0..3usize, 0..4i32, any::<bool>()).prop_map(|(i, p, z)| Op::Add(i, p, z)),
            (0..3usize, any::<bool>()).prop_map(|(i, z)| Op::Offsets(i, z)),
            (0..3usize, any::<bool>(), any::<bool>()).prop_map(|(i, c, z)| Op::End(i, c, z)),
            (0..3usize).prop_map(Op::Complete),
            (0..3_000i64).prop_map(Op::Tick),
        ]
    }

    fn limits() -> TxnLimits {
        TxnLimits {
            max_timeout_ms: 10_000,
            partitions_max: 3,
            id_expiration_ms: 1_000_000,
        }
    }

    struct World {
        machine: TxnStateMachine,
        log: Vec<TxnRecord>,
        now: i64,
        next_pid: i64,
        /// The producer each id's client last got from InitProducerId.
        clients: [Option<(i64, i16)>; 3],
        /// Producers fenced so far (zombies).
        zombies: [Option<(i64, i16)>; 3],
    }

    impl World {
        fn write(&mut self, record: TxnRecord) {
            self.machine.replay(&record);
            self.log.push(record);
        }

        fn complete(&mut self, id: &str) {
            if let Some(m) = self.machine.get(id) {
                if let Some(r) =
                    self.machine
                        .complete(id, (m.producer_id, m.producer_epoch), self.now)
                {
                    self.write(r);
                }
            }
        }

        fn producer(&self, i: usize, zombie: bool) -> Option<(i64, i16)> {
            if zombie {
                self.zombies[i]
            } else {
                self.clients[i]
            }
        }
    }

    proptest! {
        #[test]
        fn interleavings_keep_the_invariants(ops in proptest::collection::vec(op(), 1..80)) {
            let mut w = World {
                machine: TxnStateMachine::new(limits()),
                log: Vec::new(),
                now: 1_000,
                next_pid: 100,
                clients: [None; 3],
                zombies: [None; 3],
            };
            let mut last_epoch: HashMap<&str, (i64, i16)> = HashMap::new();
            for op in ops {
                match op {
                    Op::Init(i) => {
                        let id = IDS[i];
                        for _ in 0..3 {
                            let fresh = w.machine.needs_producer_id(id).then(|| {
                                w.next_pid += 1;
                                w.next_pid
                            });
                            match w.machine.init_producer_id(id, 5_000, None, fresh, w.now) {
                                Ok(InitStep::Write(r)) => {
                                    w.write(r);
                                    let m = w.machine.get(id).unwrap();
                                    w.zombies[i] = w.clients[i];
                                    w.clients[i] = Some((m.producer_id, m.producer_epoch));
                                    break;
                                }
                                Ok(InitStep::AbortFirst(r)) => {
                                    w.write(r);
                                    w.complete(id);
                                }
                                Err(e) => {
                                    prop_assert_eq!(e, CoordinatorError::ConcurrentTransactions);
                                    w.complete(id);
                                }
                            }
                        }
                    }
                    Op::Add(i, p, zombie) => {
                        let Some(producer) = w.producer(i, zombie) else { continue };
                        let parts = [(format!("t{p}"), p)];
                        match w.machine.add_partitions(IDS[i], producer, &parts, w.now) {
                            Ok(Some(r)) => w.write(r),
                            Ok(None) => {}
                            Err(_) => {}
                        }
                    }
                    Op::Offsets(i, zombie) => {
                        let Some(producer) = w.producer(i, zombie) else { continue };
                        let offsets = vec![PendingOffset {
                            topic: "in".into(),
                            partition: 0,
                            offset: w.now,
                            leader_epoch: -1,
                            metadata: String::new(),
                        }];
                        if let Ok(r) = w.machine.txn_offset_commit(IDS[i], producer, "g", offsets) {
                            w.write(r);
                        }
                    }
                    Op::End(i, commit, zombie) => {
                        let Some(producer) = w.producer(i, zombie) else { continue };
                        if let Ok(EndStep::Prepare(r)) = w.machine.end_txn(IDS[i], producer, commit, w.now) {
                            w.write(r);
                        }
                    }
                    Op::Complete(i) => w.complete(IDS[i]),
                    Op::Tick(ms) => {
                        w.now += ms;
                        for r in w.machine.timed_out(w.now) {
                            let id = r.transactional_id().to_string();
                            w.write(r);
                            w.complete(&id);
                        }
                    }
                }
                // Replaying the log from scratch gives the same state.
                let mut replayed = TxnStateMachine::new(limits());
                for r in &w.log {
                    replayed.replay(r);
                }
                prop_assert_eq!(replayed.txns.clone(), w.machine.txns.clone());
                for (i, id) in IDS.iter().enumerate() {
                    let Some(m) = w.machine.get(id) else { continue };
                    // The epoch of one producer id never goes back.
                    if let Some((pid, epoch)) = last_epoch.get(id) {
                        if *pid == m.producer_id {
                            prop_assert!(m.producer_epoch >= *epoch);
                        }
                    }
                    last_epoch.insert(id, (m.producer_id, m.producer_epoch));
                    // Only open or prepared transactions hold partitions or offsets.
                    if !matches!(m.status, TxnStatus::Ongoing | TxnStatus::PrepareCommit | TxnStatus::PrepareAbort) {
                        prop_assert!(m.partitions.is_empty());
                        prop_assert!(m.pending_offsets.is_empty());
                    }
                    prop_assert!(m.partitions.len() <= limits().partitions_max);
                    // A fenced producer can never act.
                    if let Some(z) = w.zombies[i].filter(|z| *z != (m.producer_id, m.producer_epoch)) {
                        prop_assert!(w.machine.add_partitions(id, z, &[("t0".into(), 0)], w.now).is_err());
                        prop_assert!(w.machine.end_txn(id, z, true, w.now).is_err());
                        prop_assert!(w.machine.verify(id, z, "t0", 0).is_err());
                    }
                    // Verification: exactly the current producer's added partitions.
                    let current = (m.producer_id, m.producer_epoch);
                    for p in 0..4 {
                        let topic = format!("t{p}");
                        let expected = m.status == TxnStatus::Ongoing
                            && m.partitions.contains(&(topic.clone(), p));
                        prop_assert_eq!(w.machine.verify(id, current, &topic, p).is_ok(), expected);
                    }
                }
            }
        }
    }

    #[test]
    fn bad_requests_get_kafkas_errors_and_write_nothing() {
        let mut m = TxnStateMachine::new(limits());
        // EndTxn, AddPartitions, TxnOffsetCommit for an unknown id.
        assert_eq!(
            m.end_txn("x", (1, 0), true, 0),
            Err(CoordinatorError::InvalidProducerIdMapping)
        );
        assert_eq!(
            m.add_partitions("x", (1, 0), &[("t".into(), 0)], 0),
            Err(CoordinatorError::InvalidProducerIdMapping)
        );
        assert_eq!(
            m.init_producer_id("x", 20_000, None, Some(1), 0),
            Err(CoordinatorError::InvalidTransactionTimeout)
        );
        assert_eq!(
            m.init_producer_id("", 1_000, None, Some(1), 0),
            Err(CoordinatorError::InvalidTransactionalId)
        );
        let Ok(InitStep::Write(r)) = m.init_producer_id("x", 1_000, None, Some(1), 0) else {
            panic!("init");
        };
        m.replay(&r);
        // EndTxn(commit) without a transaction; abort is a harmless no-op.
        assert_eq!(
            m.end_txn("x", (1, 0), true, 0),
            Err(CoordinatorError::InvalidTxnState)
        );
        assert_eq!(m.end_txn("x", (1, 0), false, 0), Ok(EndStep::AlreadyDone));
        // The wrong epoch is fenced; the wrong producer id is a mapping error.
        assert_eq!(
            m.add_partitions("x", (1, 1), &[("t".into(), 0)], 0),
            Err(CoordinatorError::ProducerFenced)
        );
        assert_eq!(
            m.add_partitions("x", (2, 0), &[("t".into(), 0)], 0),
            Err(CoordinatorError::InvalidProducerIdMapping)
        );
        // Offsets outside a transaction.
        assert_eq!(
            m.txn_offset_commit("x", (1, 0), "g", Vec::new()),
            Err(CoordinatorError::InvalidTxnState)
        );
        // Too many partitions at once.
        let many: Vec<(String, i32)> = (0..10).map(|p| ("t".to_string(), p)).collect();
        assert_eq!(
            m.add_partitions("x", (1, 0), &many, 0),
            Err(CoordinatorError::TransactionLimitExceeded)
        );
        assert_eq!(m.get("x").map(|t| t.status), Some(TxnStatus::Empty));
    }
}
