//! The Kafka transaction coordinator (KIP-98): transactional ids, their producer ids and
//! epochs, the partitions and group offsets of each open transaction, and the two-phase
//! completion that writes commit/abort markers into every partition of a transaction.
//!
//! Shape: a pure state machine per partition of `public/__kafka/__transaction_state`
//! ([`machine::TxnStateMachine`]) deciding which record to write, and this runtime that appends
//! the record, applies it once durable, loads each partition by replay at start, completes
//! transactions that a stopped broker left prepared, aborts timed-out transactions and expires
//! idle ids on a timer. A transactional id lives on partition `abs(hash) % partitions` with
//! Kafka's hash ([`crate::partition_for_group`]), so Kafka's placement holds.
//!
//! Completion: EndTxn writes PrepareCommit/PrepareAbort (the decision, durable), then writes a
//! marker (a control batch with the producer id and epoch) into every data partition of the
//! transaction, then, for a commit, commits the transaction's group offsets through the group
//! coordinator, then writes CompleteCommit/CompleteAbort. A failure after the decision is
//! retried in the background until it succeeds (the decision stands); requests for that id
//! get `CONCURRENT_TRANSACTIONS` meanwhile. A broker that stops in between completes the
//! transaction when the partition loads again.

pub mod machine;
pub mod record;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex as StdMutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use magnetar_broker::{
    AppendRequest, Broker, Clock, Error as BrokerError, NamespaceName, PartitionLog, PayloadFormat,
    ProducerBatch, TopicName, TopicPartition, TxnMark, INTERNAL_NAMESPACE,
};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::batch::{decode_batch, encode_batch, encode_control_batch, RawRecord};
use crate::config::CoordinatorConfig;
use crate::error::CoordinatorError;
use crate::runtime::{GroupCoordinator, OFFSETS_TOPIC};
use crate::{partition_for_group, CommitPartition, CommitTopic};

use machine::{EndStep, InitStep, TxnLimits, TxnStateMachine};
use record::TxnRecord;

/// The internal topic's local name.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Bytes read per step when loading a partition.
const LOAD_READ_BYTES: usize = 4 << 20;
/// How long EndTxn waits for the markers before answering anyway (the decision is durable;
/// completion goes on in the background).
const COMPLETE_WAIT: Duration = Duration::from_secs(30);
/// Pause between attempts of a completion that failed.
const COMPLETE_RETRY: Duration = Duration::from_millis(500);
/// Compact a partition's log when it holds more records than this...
const COMPACT_RECORDS_MIN: u64 = 10_000;
/// ...and more than this many per live transactional id.
const COMPACT_RATIO: u64 = 4;

/// Kafka's transaction states, with the ids of TransactionLogValue's status field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxnStatus {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnStatus {
    pub fn id(self) -> i8 {
        match self {
            TxnStatus::Empty => 0,
            TxnStatus::Ongoing => 1,
            TxnStatus::PrepareCommit => 2,
            TxnStatus::PrepareAbort => 3,
            TxnStatus::CompleteCommit => 4,
            TxnStatus::CompleteAbort => 5,
            TxnStatus::Dead => 6,
            TxnStatus::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<Self> {
        Some(match id {
            0 => TxnStatus::Empty,
            1 => TxnStatus::Ongoing,
            2 => TxnStatus::PrepareCommit,
            3 => TxnStatus::PrepareAbort,
            4 => TxnStatus::CompleteCommit,
            5 => TxnStatus::CompleteAbort,
            6 => TxnStatus::Dead,
            7 => TxnStatus::PrepareEpochFence,
            _ => return None,
        })
    }

    /// Kafka's name (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnStatus::Empty => "Empty",
            TxnStatus::Ongoing => "Ongoing",
            TxnStatus::PrepareCommit => "PrepareCommit",
            TxnStatus::PrepareAbort => "PrepareAbort",
            TxnStatus::CompleteCommit => "CompleteCommit",
            TxnStatus::CompleteAbort => "CompleteAbort",
            TxnStatus::Dead => "Dead",
            TxnStatus::PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

/// An offset a transaction commits for a group when it commits (TxnOffsetCommit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOffset {
    /// As the client named it (the group coordinator keys offsets by that name).
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// One transactional id's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub status: TxnStatus,
    /// (full topic name, partition) of the open transaction; the group offsets partitions
    /// added by AddOffsetsToTxn are here too, under the offsets topic's full name.
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    /// When the open transaction started (-1: none).
    pub start_ms: i64,
    /// group -> offsets to commit with the transaction.
    pub pending_offsets: BTreeMap<String, Vec<PendingOffset>>,
}

/// The transaction coordinator of this broker: owns every partition of `__transaction_state`.
pub struct TransactionCoordinator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TransactionCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionCoordinator")
            .field("partitions", &self.inner.slots.len())
            .finish_non_exhaustive()
    }
}

/// Counts since the coordinator started (exported as metrics).
#[derive(Debug, Default)]
pub struct TxnCounters {
    pub commits: std::sync::atomic::AtomicU64,
    pub aborts: std::sync::atomic::AtomicU64,
    /// Aborts because a transaction outlived its timeout (also counted in `aborts`).
    pub timed_out: std::sync::atomic::AtomicU64,
}

struct Inner {
    counters: TxnCounters,
    /// This `Inner` (it always lives in an `Arc`), for tasks spawned from `&self`.
    me: Weak<Inner>,
    broker: Arc<Broker>,
    clock: Arc<dyn Clock>,
    config: CoordinatorConfig,
    topic: TopicName,
    offsets_topic: String,
    slots: Vec<Mutex<Slot>>,
    groups: OnceLock<Weak<GroupCoordinator>>,
    shutdown: CancellationToken,
    tasks: StdMutex<JoinSet<()>>,
}

#[derive(Default)]
struct Slot {
    loaded: Option<Loaded>,
}

struct Loaded {
    machine: TxnStateMachine,
    log: Arc<PartitionLog>,
    /// Records in the log since its start (for compaction).
    records: u64,
}

/// A transaction's state for the admin API and DescribeTransactions.
pub type TxnView = TxnMetadata;

impl TransactionCoordinator {
    /// Creates `__transaction_state` if needed, loads every partition in the background
    /// (completing the transactions left prepared), and starts the timeout timer.
    pub async fn start(
        broker: Arc<Broker>,
        config: CoordinatorConfig,
    ) -> Result<Arc<Self>, BrokerError> {
        let namespace = NamespaceName::new(INTERNAL_NAMESPACE.0, INTERNAL_NAMESPACE.1)?;
        let topic = TopicName::new(namespace.clone(), TRANSACTION_STATE_TOPIC)?;
        let offsets_topic = TopicName::new(namespace, OFFSETS_TOPIC)?.to_string();
        let partitions = match broker.topic(&topic).await? {
            Some(metadata) => metadata.partition_count().max(1),
            None => {
                let count = config.transaction_state_log_num_partitions;
                // The coordinator compacts its own log; namespace retention must never delete
                // transaction state.
                let configs = [
                    ("retention.ms".to_string(), "-1".to_string()),
                    ("retention.bytes".to_string(), "-1".to_string()),
                ]
                .into();
                match broker.create_topic(&topic, Some(count), configs).await {
                    Ok(m) => m.partition_count().max(1),
                    Err(BrokerError::TopicAlreadyExists { .. }) => broker
                        .topic(&topic)
                        .await?
                        .map_or(count, |m| m.partition_count().max(1)),
                    Err(e) => return Err(e),
                }
            }
        };
        let inner = Arc::new_cyclic(|me| Inner {
            counters: TxnCounters::default(),
            me: me.clone(),
            clock: broker.clock().clone(),
            broker,
            config,
            topic,
            offsets_topic,
            slots: (0..partitions).map(|_| Mutex::default()).collect(),
            groups: OnceLock::new(),
            shutdown: CancellationToken::new(),
            tasks: StdMutex::new(JoinSet::new()),
        });
        let coordinator = Arc::new(Self { inner });
        let loader = coordinator.inner.clone();
        coordinator.inner.spawn(async move {
            for partition in 0..partitions {
                if loader.shutdown.is_cancelled() {
                    break;
                }
                if loader.broker.check_owner(&loader.topic, Some(partition)).is_err() {
                    continue;
                }
                if let Err(e) = loader.ensure_loaded(partition).await {
                    tracing::warn!(partition, error = %e, "transaction state partition not loaded; retried on first use");
                }
            }
        });
        let timer = coordinator.inner.clone();
        coordinator
            .inner
            .spawn(async move { timer.run_timer().await });
        Ok(coordinator)
    }

    /// Lets completions commit group offsets (set once by the group coordinator's owner).
    pub fn set_group_coordinator(&self, groups: &Arc<GroupCoordinator>) {
        let _ = self.inner.groups.set(Arc::downgrade(groups));
    }

    pub fn topic(&self) -> &TopicName {
        &self.inner.topic
    }

    pub fn partition_count(&self) -> u32 {
        self.inner.slots.len() as u32
    }

    /// The partition of `__transaction_state` holding `transactional_id`.
    pub fn partition_for(&self, transactional_id: &str) -> u32 {
        partition_for_group(transactional_id, self.partition_count())
    }

    /// The full name under which a group's offsets partition is added to a transaction.
    pub fn offsets_topic(&self) -> &str {
        &self.inner.offsets_topic
    }

    /// InitProducerId with a transactional id: the producer id and epoch to use. An open
    /// transaction of the id is aborted first (its producer fenced).
    pub async fn init_producer_id(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), CoordinatorError> {
        let inner = &self.inner;
        // At most a few rounds: one abort of an open transaction, then the init.
        for _ in 0..3 {
            let partition = self.partition_for(transactional_id);
            let fresh = {
                let slot = inner.loaded_slot(partition).await?;
                let needs = slot
                    .loaded
                    .as_ref()
                    .is_some_and(|l| l.machine.needs_producer_id(transactional_id));
                drop(slot);
                if needs {
                    Some(
                        inner
                            .broker
                            .allocate_producer_id()
                            .await
                            .map_err(|_| CoordinatorError::CoordinatorNotAvailable)?,
                    )
                } else {
                    None
                }
            };
            let mut slot = inner.loaded_slot(partition).await?;
            let now = inner.clock.now_ms();
            let loaded = slot
                .loaded
                .as_mut()
                .ok_or(CoordinatorError::NotCoordinator)?;
            let step =
                loaded
                    .machine
                    .init_producer_id(transactional_id, timeout_ms, expected, fresh, now);
            match step {
                Ok(InitStep::Write(record)) => {
                    inner.write(&mut slot, partition, vec![record]).await?;
                    let meta = slot
                        .loaded
                        .as_ref()
                        .and_then(|l| l.machine.get(transactional_id))
                        .ok_or(CoordinatorError::Internal)?;
                    return Ok((meta.producer_id, meta.producer_epoch));
                }
                // A fresh producer id was needed after all (the state changed in between).
                Err(CoordinatorError::Internal) if fresh.is_none() => continue,
                Err(e) => return Err(e),
                Ok(InitStep::AbortFirst(record)) => {
                    let producer = producer_of(&record);
                    inner.write(&mut slot, partition, vec![record]).await?;
                    drop(slot);
                    inner
                        .clone()
                        .complete_and_wait(partition, transactional_id.to_string(), producer)
                        .await;
                }
            }
        }
        Err(CoordinatorError::ConcurrentTransactions)
    }

    /// AddPartitionsToTxn: `partitions` as (full topic name, partition).
    pub async fn add_partitions(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        partitions: &[(String, i32)],
    ) -> Result<(), CoordinatorError> {
        let partition = self.partition_for(transactional_id);
        let mut slot = self.inner.loaded_slot(partition).await?;
        let now = self.inner.clock.now_ms();
        let loaded = slot
            .loaded
            .as_ref()
            .ok_or(CoordinatorError::NotCoordinator)?;
        if let Some(record) =
            loaded
                .machine
                .add_partitions(transactional_id, producer, partitions, now)?
        {
            self.inner.write(&mut slot, partition, vec![record]).await?;
        }
        Ok(())
    }

    /// AddOffsetsToTxn: adds the group's offsets partition to the transaction.
    pub async fn add_offsets(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        group_id: &str,
    ) -> Result<(), CoordinatorError> {
        let offsets_partitions = self
            .inner
            .groups
            .get()
            .and_then(Weak::upgrade)
            .map_or(self.inner.config.offsets_topic_num_partitions, |g| {
                g.partition_count()
            });
        let p = partition_for_group(group_id, offsets_partitions) as i32;
        self.add_partitions(
            transactional_id,
            producer,
            &[(self.inner.offsets_topic.clone(), p)],
        )
        .await
    }

    /// TxnOffsetCommit: offsets committed for `group_id` when the transaction commits.
    pub async fn txn_offset_commit(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        group_id: &str,
        offsets: Vec<PendingOffset>,
    ) -> Result<(), CoordinatorError> {
        let partition = self.partition_for(transactional_id);
        let mut slot = self.inner.loaded_slot(partition).await?;
        let loaded = slot
            .loaded
            .as_ref()
            .ok_or(CoordinatorError::NotCoordinator)?;
        let record =
            loaded
                .machine
                .txn_offset_commit(transactional_id, producer, group_id, offsets)?;
        self.inner.write(&mut slot, partition, vec![record]).await
    }

    /// EndTxn: commits or aborts the open transaction; returns once its markers are written
    /// (or, if that takes longer than 30 s, once the decision is durable).
    pub async fn end_txn(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        commit: bool,
    ) -> Result<(), CoordinatorError> {
        let partition = self.partition_for(transactional_id);
        let mut slot = self.inner.loaded_slot(partition).await?;
        let now = self.inner.clock.now_ms();
        let loaded = slot
            .loaded
            .as_ref()
            .ok_or(CoordinatorError::NotCoordinator)?;
        match loaded
            .machine
            .end_txn(transactional_id, producer, commit, now)?
        {
            EndStep::AlreadyDone => Ok(()),
            EndStep::Prepare(record) => {
                self.inner.write(&mut slot, partition, vec![record]).await?;
                drop(slot);
                self.inner
                    .clone()
                    .complete_and_wait(partition, transactional_id.to_string(), producer)
                    .await;
                Ok(())
            }
        }
    }

    /// Checks that a transactional produce to `tp` by `producer` belongs to the id's open
    /// transaction, which added that partition.
    pub async fn verify(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        tp: &TopicPartition,
    ) -> Result<(), CoordinatorError> {
        let partition = self.partition_for(transactional_id);
        let slot = self.inner.loaded_slot(partition).await?;
        let loaded = slot
            .loaded
            .as_ref()
            .ok_or(CoordinatorError::NotCoordinator)?;
        loaded.machine.verify(
            transactional_id,
            producer,
            &tp.topic.to_string(),
            tp.partition as i32,
        )
    }

    /// Every transactional id's state (loaded partitions only), sorted by id.
    pub async fn list(&self) -> Vec<TxnView> {
        let mut out = Vec::new();
        for slot in &self.inner.slots {
            let slot = slot.lock().await;
            if let Some(loaded) = &slot.loaded {
                out.extend(loaded.machine.all().cloned());
            }
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }

    /// Commits, aborts and timeouts since start.
    pub fn counters(&self) -> &TxnCounters {
        &self.inner.counters
    }

    /// Open transactions (Ongoing or completing) in the loaded partitions.
    pub async fn ongoing(&self) -> u64 {
        let mut n = 0;
        for slot in &self.inner.slots {
            let slot = slot.lock().await;
            if let Some(loaded) = &slot.loaded {
                n += loaded
                    .machine
                    .all()
                    .filter(|m| {
                        matches!(
                            m.status,
                            TxnStatus::Ongoing | TxnStatus::PrepareCommit | TxnStatus::PrepareAbort
                        )
                    })
                    .count() as u64;
            }
        }
        n
    }

    /// The partitions of `group` with offsets in an open or prepared transaction (KIP-447: a
    /// `require_stable` OffsetFetch answers UNSTABLE_OFFSET_COMMIT for them until it completes).
    pub async fn pending_offsets(&self, group: &str) -> BTreeSet<(String, i32)> {
        let mut out = BTreeSet::new();
        for slot in &self.inner.slots {
            let slot = slot.lock().await;
            let Some(loaded) = &slot.loaded else { continue };
            for meta in loaded.machine.all() {
                if let Some(offsets) = meta.pending_offsets.get(group) {
                    out.extend(offsets.iter().map(|o| (o.topic.clone(), o.partition)));
                }
            }
        }
        out
    }

    /// One transactional id's state.
    pub async fn describe(
        &self,
        transactional_id: &str,
    ) -> Result<Option<TxnView>, CoordinatorError> {
        let partition = self.partition_for(transactional_id);
        let slot = self.inner.loaded_slot(partition).await?;
        Ok(slot
            .loaded
            .as_ref()
            .and_then(|l| l.machine.get(transactional_id).cloned()))
    }

    /// An operator's forced abort of an open transaction (Kafka's `kafka-transactions.sh
    /// --abort`): the producer is fenced (epoch bumped) and the transaction aborted.
    pub async fn force_abort(&self, transactional_id: &str) -> Result<(), CoordinatorError> {
        let partition = self.partition_for(transactional_id);
        let mut slot = self.inner.loaded_slot(partition).await?;
        let now = self.inner.clock.now_ms();
        let loaded = slot
            .loaded
            .as_ref()
            .ok_or(CoordinatorError::NotCoordinator)?;
        let record = loaded.machine.force_abort(transactional_id, now)?;
        let producer = producer_of(&record);
        self.inner.write(&mut slot, partition, vec![record]).await?;
        drop(slot);
        self.inner
            .clone()
            .complete_and_wait(partition, transactional_id.to_string(), producer)
            .await;
        Ok(())
    }

    /// Runs the timeout and expiry pass now (tests; the timer runs it every
    /// `transaction_abort_check_interval_ms`).
    pub async fn tick_now(&self) {
        self.inner.clone().tick().await;
    }

    /// Stops the timer and background completions (what they did not finish is completed on
    /// the next load).
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let mut tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        while tasks.join_next().await.is_some() {}
    }
}

/// Records as (key, value) pairs for a batch.
fn encode_records(records: &[TxnRecord]) -> Result<Vec<RawRecord>, crate::record::CodecError> {
    records
        .iter()
        .map(|r| Ok((r.encode_key()?, r.encode_value()?)))
        .collect()
}

/// Appends `raw` as one Kafka batch of the transaction log and waits until it is durable.
async fn append_batch(
    log: &PartitionLog,
    raw: &[RawRecord],
    now_ms: i64,
) -> Result<(), BrokerError> {
    log.append(AppendRequest {
        payload: Bytes::from(encode_batch(raw, now_ms)),
        message_count: raw.len().max(1) as u32,
        max_timestamp_ms: now_ms,
        format: PayloadFormat::Kafka,
        producer: None,
        first_index_at: Some(0),
    })
    .await
    .map(drop)
}

fn producer_of(record: &TxnRecord) -> (i64, i16) {
    match record {
        TxnRecord::Metadata { value: Some(v), .. } => (v.producer_id, v.producer_epoch),
        TxnRecord::PendingOffsets {
            value: Some((p, e, _)),
            ..
        } => (*p, *e),
        _ => (-1, -1),
    }
}

impl Inner {
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    fn limits(&self) -> TxnLimits {
        TxnLimits {
            max_timeout_ms: self.config.transaction_max_timeout_ms,
            partitions_max: self.config.transaction_partitions_max,
            id_expiration_ms: self.config.transactional_id_expiration_ms,
        }
    }

    fn partition(&self, partition: u32) -> TopicPartition {
        TopicPartition {
            topic: self.topic.clone(),
            partition,
        }
    }

    /// The slot of `partition`, locked and loaded (loading it if needed).
    async fn loaded_slot(
        &self,
        partition: u32,
    ) -> Result<tokio::sync::MutexGuard<'_, Slot>, CoordinatorError> {
        if self.shutdown.is_cancelled() {
            return Err(CoordinatorError::CoordinatorNotAvailable);
        }
        let slot = self
            .slots
            .get(partition as usize)
            .ok_or(CoordinatorError::Internal)?;
        let mut guard = slot.lock().await;
        // Cluster mode: a partition owned by another broker is served there.
        if self
            .broker
            .check_owner(&self.topic, Some(partition))
            .is_err()
        {
            guard.loaded = None;
            return Err(CoordinatorError::NotCoordinator);
        }
        if guard.loaded.as_ref().is_some_and(|l| l.log.is_failed()) {
            guard.loaded = None;
        }
        if guard.loaded.is_none() {
            let loaded = self.load(partition).await.map_err(|e| {
                tracing::warn!(partition, error = %e, "cannot load a transaction state partition");
                CoordinatorError::CoordinatorLoadInProgress
            })?;
            let prepared = loaded.machine.prepared();
            guard.loaded = Some(loaded);
            // Completions left by a stopped broker (or a failed write) resume now.
            for (id, producer) in prepared {
                self.spawn_completion(partition, id, producer);
            }
        }
        Ok(guard)
    }

    async fn ensure_loaded(&self, partition: u32) -> Result<(), CoordinatorError> {
        self.loaded_slot(partition).await.map(drop)
    }

    async fn load(&self, partition: u32) -> Result<Loaded, String> {
        let log = self
            .broker
            .partition(&self.partition(partition))
            .await
            .map_err(|e| e.to_string())?;
        let mut machine = TxnStateMachine::new(self.limits());
        let mut records = 0u64;
        let mut next = log.start_index();
        while next < log.end_index() {
            let entries = log
                .read(next, LOAD_READ_BYTES, 10_000)
                .await
                .map_err(|e| e.to_string())?;
            let Some(last) = entries.last() else { break };
            next = last.header.end_index();
            for entry in entries {
                let batch = decode_batch(&entry.payload).map_err(|e| {
                    format!(
                        "entry {} does not decode: {}",
                        entry.header.first_index, e.0
                    )
                })?;
                for (key, value) in batch.records {
                    let record = TxnRecord::decode(&key, value.as_deref()).map_err(|e| {
                        format!("record in entry {}: {}", entry.header.first_index, e.0)
                    })?;
                    machine.replay(&record);
                    records += 1;
                }
            }
        }
        tracing::debug!(
            partition,
            records,
            ids = machine.len(),
            "transaction state partition loaded"
        );
        Ok(Loaded {
            machine,
            log,
            records,
        })
    }

    /// Appends `records` as one batch, waits until durable, then applies them. On failure
    /// the partition is unloaded (reloaded from its log on next use).
    async fn write(
        &self,
        slot: &mut Slot,
        partition: u32,
        records: Vec<TxnRecord>,
    ) -> Result<(), CoordinatorError> {
        let loaded = slot
            .loaded
            .as_mut()
            .ok_or(CoordinatorError::NotCoordinator)?;
        // A record that does not encode is one over a Kafka string or array limit.
        let raw =
            encode_records(&records).map_err(|_| CoordinatorError::TransactionLimitExceeded)?;
        if let Err(e) = append_batch(&loaded.log, &raw, self.clock.now_ms()).await {
            tracing::warn!(partition, error = %e, "transaction state write failed; the partition reloads from its log");
            slot.loaded = None;
            return Err(CoordinatorError::NotCoordinator);
        }
        for r in &records {
            loaded.machine.replay(r);
        }
        loaded.records += records.len() as u64;
        if loaded.records > COMPACT_RECORDS_MIN
            && loaded.records > COMPACT_RATIO * (loaded.machine.len() as u64).max(1)
        {
            self.compact(slot, partition).await;
        }
        Ok(())
    }

    /// Writes the live state as fresh records and moves the log start to them.
    async fn compact(&self, slot: &mut Slot, partition: u32) {
        let Some(loaded) = slot.loaded.as_mut() else {
            return;
        };
        let Ok(raw) = encode_records(&loaded.machine.snapshot()) else {
            return;
        };
        let start = loaded.log.end_index();
        let now = self.clock.now_ms();
        for chunk in raw.chunks(1_000) {
            if let Err(e) = append_batch(&loaded.log, chunk, now).await {
                tracing::warn!(partition, error = %e, "transaction state compaction failed");
                return;
            }
        }
        match loaded.log.truncate_before(start).await {
            Ok(_) => loaded.records = raw.len() as u64,
            Err(e) => {
                tracing::warn!(partition, error = %e, "transaction state compaction left the old records")
            }
        }
    }

    fn spawn_completion(&self, partition: u32, id: String, producer: (i64, i16)) {
        let Some(inner) = self.me.upgrade() else {
            return;
        };
        self.spawn(async move {
            inner.complete_until_done(partition, id, producer).await;
        });
    }

    /// Completes a prepared transaction in the background and waits for it, at most
    /// [`COMPLETE_WAIT`] (it goes on afterwards; the decision is durable).
    async fn complete_and_wait(self: Arc<Self>, partition: u32, id: String, producer: (i64, i16)) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let inner = self.clone();
        self.spawn(async move {
            inner.complete_until_done(partition, id, producer).await;
            let _ = tx.send(());
        });
        let _ = tokio::time::timeout(COMPLETE_WAIT, rx).await;
    }

    /// Retries [`Inner::complete_once`] until it succeeds, the transaction is no longer
    /// prepared by `producer`, or the coordinator shuts down.
    async fn complete_until_done(&self, partition: u32, id: String, producer: (i64, i16)) {
        loop {
            match self.complete_once(partition, &id, producer).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(transactional_id = %id, error = %e, "completing a transaction failed; retrying");
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(COMPLETE_RETRY) => {}
            }
        }
    }

    /// Writes the markers (and, for a commit, the group offsets) of a prepared transaction,
    /// then its Complete record.
    async fn complete_once(
        &self,
        partition: u32,
        id: &str,
        producer: (i64, i16),
    ) -> Result<(), String> {
        let meta = {
            let slot = self
                .loaded_slot(partition)
                .await
                .map_err(|e| e.to_string())?;
            let Some(meta) = slot.loaded.as_ref().and_then(|l| l.machine.get(id)) else {
                return Ok(());
            };
            if (meta.producer_id, meta.producer_epoch) != producer
                || !matches!(
                    meta.status,
                    TxnStatus::PrepareCommit | TxnStatus::PrepareAbort
                )
            {
                return Ok(());
            }
            meta.clone()
        };
        let commit = meta.status == TxnStatus::PrepareCommit;
        let now = self.clock.now_ms();
        let marker = Bytes::from(encode_control_batch(
            meta.producer_id,
            meta.producer_epoch,
            commit,
            0,
            now,
        ));
        let mut pending = Vec::new();
        for (topic, p) in &meta.partitions {
            if *topic == self.offsets_topic {
                continue;
            }
            let Ok(name) = TopicName::parse(topic, &self.topic.namespace) else {
                continue;
            };
            let Ok(index) = u32::try_from(*p) else {
                continue;
            };
            let tp = TopicPartition {
                topic: name,
                partition: index,
            };
            let log = match self.broker.partition(&tp).await {
                Ok(log) => log,
                // A topic deleted while the transaction was open has nothing to mark.
                Err(BrokerError::TopicNotFound { .. } | BrokerError::PartitionNotFound { .. }) => {
                    continue
                }
                Err(e) => return Err(format!("{tp}: {e}")),
            };
            let appending = log
                .enqueue(AppendRequest {
                    payload: marker.clone(),
                    message_count: 1,
                    max_timestamp_ms: now,
                    format: PayloadFormat::Kafka,
                    producer: Some(ProducerBatch {
                        producer_id: meta.producer_id,
                        epoch: meta.producer_epoch,
                        first_sequence: -1,
                        message_count: 1,
                        txn: if commit {
                            TxnMark::Commit
                        } else {
                            TxnMark::Abort
                        },
                    }),
                    first_index_at: Some(0),
                })
                .map_err(|e| format!("{tp}: {e}"))?;
            pending.push((tp, appending));
        }
        for (tp, appending) in pending {
            appending
                .durable()
                .await
                .map_err(|e| format!("marker in {tp}: {e}"))?;
        }
        if commit && !meta.pending_offsets.is_empty() {
            let groups = self
                .groups
                .get()
                .and_then(Weak::upgrade)
                .ok_or_else(|| "the group coordinator is not running".to_string())?;
            for (group, offsets) in &meta.pending_offsets {
                let mut topics: BTreeMap<&str, Vec<CommitPartition>> = BTreeMap::new();
                for o in offsets {
                    topics.entry(&o.topic).or_default().push(CommitPartition {
                        partition: o.partition,
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: Some(o.metadata.clone()),
                        commit_timestamp_ms: None,
                    });
                }
                let topics = topics
                    .into_iter()
                    .map(|(name, partitions)| CommitTopic {
                        name: name.to_string(),
                        partitions,
                    })
                    .collect();
                groups
                    .commit_transaction_offsets(group, topics)
                    .await
                    .map_err(|e| format!("offsets of group {group}: {e}"))?;
            }
        }
        let mut slot = self
            .loaded_slot(partition)
            .await
            .map_err(|e| e.to_string())?;
        let now = self.clock.now_ms();
        let Some(record) = slot
            .loaded
            .as_ref()
            .and_then(|l| l.machine.complete(id, producer, now))
        else {
            return Ok(());
        };
        self.write(&mut slot, partition, vec![record])
            .await
            .map_err(|e| e.to_string())?;
        let counter = if commit {
            &self.counters.commits
        } else {
            &self.counters.aborts
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn run_timer(self: Arc<Self>) {
        let interval = Duration::from_millis(self.config.transaction_abort_check_interval_ms);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            self.clone().tick().await;
        }
    }

    /// Aborts timed-out transactions and expires idle ids in every loaded partition.
    async fn tick(self: Arc<Self>) {
        let now = self.clock.now_ms();
        for partition in 0..self.slots.len() as u32 {
            let Some(slot) = self.slots.get(partition as usize) else {
                continue;
            };
            let mut slot = slot.lock().await;
            let Some(loaded) = slot.loaded.as_ref() else {
                continue;
            };
            let aborts = loaded.machine.timed_out(now);
            let expired = loaded.machine.expired(now);
            for record in aborts {
                let id = record.transactional_id().to_string();
                let producer = producer_of(&record);
                tracing::info!(transactional_id = %id, "aborting a transaction past its timeout");
                self.counters
                    .timed_out
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if self.write(&mut slot, partition, vec![record]).await.is_ok() {
                    self.spawn_completion(partition, id, producer);
                }
            }
            if !expired.is_empty() && slot.loaded.is_some() {
                let _ = self.write(&mut slot, partition, expired).await;
            }
        }
    }
}
