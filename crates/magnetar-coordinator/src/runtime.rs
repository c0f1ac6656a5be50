//! The async runtime around the state machines: one [`GroupStateMachine`] per partition of
//! `__consumer_offsets`, behind a mutex, loaded by replaying the partition's log; a writer task
//! per loaded partition that appends the records of each operation (merging what queued up into
//! one Kafka batch, one append, one durability wait); parked JoinGroup/SyncGroup requests as
//! oneshot channels answered when the rebalance completes; a timer task that fires deadlines;
//! and compaction by snapshot.
//!
//! Ordering: an operation runs under its partition's lock and queues its records to the writer
//! before the lock is released, so the log order is the order in which the state changed, and
//! replaying the log reproduces the state. Responses (and the parked responses an operation
//! completes) are sent once the records are durable. An operation that writes nothing, and a
//! read (OffsetFetch, DescribeGroups), still waits for the records queued before it: the state
//! machine changes state before its records are durable, so without that wait a later request
//! could see (and hand out) a state that is not durable yet. Kafka gets the same order by
//! moving a group to Stable only in the callback of its append; here a follower's SyncGroup that
//! arrives while the leader's assignment is being written is answered only once it is durable,
//! never before the leader's own answer is released. When an append fails the partition is
//! unloaded (its in-memory state may be ahead of the log) and reloaded on next use; waiting
//! requests get `NotCoordinator` and retry.
//!
//! Compaction: when a partition's log holds more than `compaction_records_min` records and more
//! than `compaction_ratio` records per live key, the live state is written as fresh records (a
//! snapshot: the last group metadata of each group and every committed offset) and the log
//! start is moved to the snapshot's first index with `truncate_before`. Tombstones are not needed
//! in the snapshot: everything before it is gone. The offsets topic is created with
//! `retention.ms=-1` and `retention.bytes=-1` so the broker's retention pass never deletes
//! committed offsets; this compaction replaces it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use magnetar_broker::{
    AppendRequest, Broker, Clock, Error as BrokerError, NamespaceName, PartitionLog, PayloadFormat,
    TopicName, TopicPartition, INTERNAL_NAMESPACE,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::*;
use crate::batch::{decode_batch, encode_batch, RawRecord};
use crate::config::CoordinatorConfig;
use crate::error::CoordinatorError;
use crate::group::GroupState;
use crate::machine::{Completion, GroupStateMachine, JoinOutcome, SyncOutcome};
use crate::partition_for_group;
use crate::record::{CoordinatorRecord, DecodedRecord};

/// The internal topic's local name.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Bytes read per step when loading a partition.
const LOAD_READ_BYTES: usize = 4 << 20;
/// Encoded bytes merged into one appended batch before it is cut (one job may exceed it).
const WRITE_BATCH_BYTES_MAX: usize = 1 << 20;

/// The group coordinator of this broker: owns every partition of `__consumer_offsets`.
pub struct GroupCoordinator {
    inner: Arc<Inner>,
    /// The transaction coordinator, started with this one when `__transaction_state` exists
    /// (so transactions a stopped broker left prepared complete at once), else on the first
    /// transactional request.
    transactions: tokio::sync::OnceCell<Arc<crate::txn::TransactionCoordinator>>,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator")
            .field("partitions", &self.inner.slots.len())
            .finish_non_exhaustive()
    }
}

struct Inner {
    broker: Arc<Broker>,
    clock: Arc<dyn Clock>,
    config: CoordinatorConfig,
    topic: TopicName,
    slots: Vec<Slot>,
    tasks: Mutex<JoinSet<()>>,
    shutdown: CancellationToken,
    /// Every append holds it shared; [`GroupCoordinator::hold_writes`] takes it exclusively.
    write_gate: Arc<tokio::sync::RwLock<()>>,
}

struct Slot {
    partition: u32,
    state: Mutex<SlotState>,
    /// Bumped whenever the slot becomes loaded, so waiting requests wake up.
    loaded: watch::Sender<u64>,
}

enum SlotState {
    Unloaded,
    Loading,
    Loaded(Box<Loaded>),
    Closed,
}

struct Loaded {
    /// Distinguishes loads, so a writer of an earlier load cannot unload a newer one.
    load_id: u64,
    machine: GroupStateMachine,
    log: Arc<PartitionLog>,
    writer: mpsc::Sender<WriteJob>,
    joins: HashMap<(String, String), oneshot::Sender<JoinGroupResponse>>,
    syncs: HashMap<(String, String), oneshot::Sender<SyncGroupResponse>>,
    compacting: bool,
    /// Write jobs queued to `writer` so far, and (from the writer) how many of them are done;
    /// a response that writes nothing waits until the jobs queued before it are done.
    queued_jobs: u64,
    done_jobs: watch::Receiver<u64>,
}

impl Loaded {
    /// The job count to wait for before answering, if a queued job is not done yet.
    fn pending_writes(&self) -> Option<(u64, watch::Receiver<u64>)> {
        (*self.done_jobs.borrow() < self.queued_jobs)
            .then(|| (self.queued_jobs, self.done_jobs.clone()))
    }
}

/// The records of one operation, and what to answer once they are durable.
struct WriteJob {
    records: Vec<CoordinatorRecord>,
    /// The index of the batch holding the first record, or why the write failed.
    done: Option<oneshot::Sender<Result<u64, CoordinatorError>>>,
    deliveries: Vec<Delivery>,
}

enum Delivery {
    Join(oneshot::Sender<JoinGroupResponse>, JoinGroupResponse),
    Sync(oneshot::Sender<SyncGroupResponse>, SyncGroupResponse),
}

impl Delivery {
    fn send(self) {
        // A receiver that is gone (the client disconnected) is not an error.
        match self {
            Delivery::Join(tx, r) => drop(tx.send(r)),
            Delivery::Sync(tx, r) => drop(tx.send(r)),
        }
    }

    fn fail(self, error: CoordinatorError) {
        match self {
            Delivery::Join(tx, r) => drop(tx.send(JoinGroupResponse::error(error, &r.member_id))),
            Delivery::Sync(tx, _) => drop(tx.send(SyncGroupResponse::error(error))),
        }
    }
}

/// What an operation's answer waits for.
enum Wait {
    /// Its own records.
    Own(oneshot::Receiver<Result<u64, CoordinatorError>>),
    /// It wrote nothing: the jobs queued before it (their count), then it sends these.
    Earlier(u64, watch::Receiver<u64>, Vec<Delivery>),
}

/// What loading a partition found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadStats {
    pub partition: u32,
    pub records: u64,
    pub batches: u64,
    pub groups: usize,
    pub duration: Duration,
}

/// What a compaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionStats {
    pub partition: u32,
    pub records_before: u64,
    pub records_written: u64,
    pub new_start_index: u64,
}

fn lock(state: &Mutex<SlotState>) -> MutexGuard<'_, SlotState> {
    // A panic while holding the lock would be a bug; the state is still the best we have.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GroupCoordinator {
    /// Creates `__consumer_offsets` if needed, starts the timer and loads every partition in
    /// the background (requests for a partition still loading wait up to `load_wait_ms`).
    pub async fn start(
        broker: Arc<Broker>,
        config: CoordinatorConfig,
    ) -> Result<Arc<Self>, BrokerError> {
        config
            .validate()
            .map_err(|reason| BrokerError::InvalidConfig {
                key: "coordinator".into(),
                reason,
            })?;
        let namespace = NamespaceName::new(INTERNAL_NAMESPACE.0, INTERNAL_NAMESPACE.1)?;
        let topic = TopicName::new(namespace, OFFSETS_TOPIC)?;
        let metadata = match broker.topic(&topic).await? {
            // The stored partition count wins: group placement hashes over it, so changing it
            // would move every group away from its committed offsets.
            Some(existing) => {
                if existing.partition_count() != config.offsets_topic_num_partitions {
                    tracing::warn!(
                        stored = existing.partition_count(),
                        configured = config.offsets_topic_num_partitions,
                        "offsets_topic_num_partitions differs from the existing __consumer_offsets topic; the stored partition count is kept"
                    );
                }
                existing
            }
            None => {
                // Infinite retention on the topic itself: namespace retention must never delete
                // committed offsets; the coordinator's own compaction bounds the log.
                let configs = [
                    ("cleanup.policy".to_string(), "compact".to_string()),
                    ("retention.ms".to_string(), "-1".to_string()),
                    ("retention.bytes".to_string(), "-1".to_string()),
                ]
                .into();
                match broker
                    .create_topic(&topic, Some(config.offsets_topic_num_partitions), configs)
                    .await
                {
                    Ok(created) => created,
                    Err(BrokerError::TopicAlreadyExists { .. }) => broker
                        .topic(&topic)
                        .await?
                        .ok_or_else(|| BrokerError::TopicNotFound {
                            topic: topic.to_string(),
                        })?,
                    Err(e) => return Err(e),
                }
            }
        };
        let slots = (0..metadata.partition_count())
            .map(|partition| Slot {
                partition,
                state: Mutex::new(SlotState::Unloaded),
                loaded: watch::channel(0).0,
            })
            .collect();
        let inner = Arc::new(Inner {
            clock: broker.clock().clone(),
            broker,
            config,
            topic,
            slots,
            tasks: Mutex::new(JoinSet::new()),
            shutdown: CancellationToken::new(),
            write_gate: Arc::new(tokio::sync::RwLock::new(())),
        });
        let coordinator = Arc::new(Self {
            inner,
            transactions: tokio::sync::OnceCell::new(),
        });
        let timer = coordinator.inner.clone();
        coordinator.inner.spawn(timer_loop(timer));
        let txn_topic = TopicName::new(
            coordinator.inner.topic.namespace.clone(),
            crate::txn::TRANSACTION_STATE_TOPIC,
        )?;
        if coordinator.inner.broker.topic(&txn_topic).await?.is_some() {
            // Failing here is logged by `transactions`; the next transactional request retries.
            let _ = coordinator.transactions().await;
        }
        let loader = coordinator.inner.clone();
        coordinator.inner.spawn(async move {
            for slot in &loader.slots {
                if loader.shutdown.is_cancelled() {
                    break;
                }
                // Cluster mode: the partitions of other brokers load there; one this broker
                // gains later loads on its first request.
                if loader
                    .broker
                    .check_owner(&loader.topic, Some(slot.partition))
                    .is_err()
                {
                    continue;
                }
                if let Err(e) = loader.load_if_unloaded(slot.partition).await {
                    tracing::warn!(partition = slot.partition, error = %e, "loading offsets partition failed");
                }
            }
        });
        Ok(coordinator)
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.inner.config
    }

    /// `__consumer_offsets`' full name.
    pub fn topic(&self) -> &TopicName {
        &self.inner.topic
    }

    /// The partitions of `__consumer_offsets`.
    pub fn partition_count(&self) -> u32 {
        self.inner.slots.len() as u32
    }

    /// The offsets partition that holds `group_id` (Kafka's placement, see
    /// [`partition_for_group`]). The coordinator of a group is the owner of this partition.
    pub fn partition_for(&self, group_id: &str) -> u32 {
        partition_for_group(group_id, self.partition_count())
    }

    /// How many partitions of `__consumer_offsets` are loaded and serving.
    pub fn loaded_partitions(&self) -> usize {
        self.inner
            .slots
            .iter()
            .filter(|slot| matches!(&*lock(&slot.state), SlotState::Loaded(_)))
            .count()
    }

    /// Loads (or reloads) one partition now and reports what it read.
    pub async fn load_partition(&self, partition: u32) -> Result<LoadStats, CoordinatorError> {
        self.inner.load(partition).await
    }

    pub async fn join_group(&self, req: JoinGroupRequest) -> JoinGroupResponse {
        let member_id = req.member_id.clone();
        let group_id = req.group_id.clone();
        let run = self.inner.run(&group_id, true, |loaded, now| {
            let out = loaded.machine.join_group(req, now);
            let waiter = match out.response {
                JoinOutcome::Done(response) => Err(response),
                JoinOutcome::Parked { member_id } => {
                    let (tx, rx) = oneshot::channel();
                    let key = (group_id.clone(), member_id.clone());
                    if let Some(old) = loaded.joins.insert(key, tx) {
                        // A newer JoinGroup of the same member replaces a parked one.
                        drop(old.send(JoinGroupResponse::error(
                            CoordinatorError::RebalanceInProgress,
                            &member_id,
                        )));
                    }
                    Ok(rx)
                }
            };
            (waiter, out.records, out.completions)
        });
        match run.await {
            Err(e) => JoinGroupResponse::error(e, &member_id),
            Ok(Err(response)) => response,
            Ok(Ok(rx)) => rx.await.unwrap_or_else(|_| {
                JoinGroupResponse::error(CoordinatorError::CoordinatorNotAvailable, &member_id)
            }),
        }
    }

    pub async fn sync_group(&self, req: SyncGroupRequest) -> SyncGroupResponse {
        let group_id = req.group_id.clone();
        let member_id = req.member_id.clone();
        let run = self.inner.run(&group_id, true, |loaded, now| {
            let out = loaded.machine.sync_group(req, now);
            let waiter = match out.response {
                SyncOutcome::Done(response) => Err(response),
                SyncOutcome::Parked => {
                    let (tx, rx) = oneshot::channel();
                    if let Some(old) = loaded
                        .syncs
                        .insert((group_id.clone(), member_id.clone()), tx)
                    {
                        drop(old.send(SyncGroupResponse::error(
                            CoordinatorError::RebalanceInProgress,
                        )));
                    }
                    Ok(rx)
                }
            };
            (waiter, out.records, out.completions)
        });
        match run.await {
            Err(e) => SyncGroupResponse::error(e),
            Ok(Err(response)) => response,
            Ok(Ok(rx)) => rx.await.unwrap_or_else(|_| {
                SyncGroupResponse::error(CoordinatorError::CoordinatorNotAvailable)
            }),
        }
    }

    pub async fn heartbeat(&self, req: HeartbeatRequest) -> Result<(), CoordinatorError> {
        let group_id = req.group_id.clone();
        self.inner
            .run(&group_id, false, |loaded, now| {
                let out = loaded.machine.heartbeat(req, now);
                (out.response, out.records, out.completions)
            })
            .await?
    }

    pub async fn leave_group(&self, req: LeaveGroupRequest) -> LeaveGroupResponse {
        let group_id = req.group_id.clone();
        let result = self
            .inner
            .run(&group_id, true, |loaded, now| {
                let out = loaded.machine.leave_group(req, now);
                (out.response, out.records, out.completions)
            })
            .await;
        result.unwrap_or_else(|e| LeaveGroupResponse {
            error: Some(e),
            members: Vec::new(),
        })
    }

    pub async fn commit_offsets(&self, req: OffsetCommitRequest) -> OffsetCommitResponse {
        let group_id = req.group_id.clone();
        let all = |req: &OffsetCommitRequest, e| OffsetCommitResponse {
            topics: req
                .topics
                .iter()
                .map(|t| TopicResults {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| PartitionResult {
                            partition: p.partition,
                            error: Some(e),
                        })
                        .collect(),
                })
                .collect(),
        };
        let skeleton = all(&req, CoordinatorError::CoordinatorNotAvailable);
        let result = self
            .inner
            .run(&group_id, true, |loaded, now| {
                let out = loaded.machine.commit_offsets(req, now);
                (out.response, out.records, out.completions)
            })
            .await;
        result.unwrap_or_else(|e| {
            let mut response = skeleton;
            for t in &mut response.topics {
                for p in &mut t.partitions {
                    p.error = Some(e);
                }
            }
            response
        })
    }

    /// Commits the offsets of a committed transaction for `group_id` (see
    /// [`GroupStateMachine::commit_transaction_offsets`]); the first error of any partition.
    pub async fn commit_transaction_offsets(
        &self,
        group_id: &str,
        topics: Vec<CommitTopic>,
    ) -> Result<(), CoordinatorError> {
        let req = OffsetCommitRequest {
            group_id: group_id.to_string(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            topics,
        };
        let response = self
            .inner
            .run(group_id, true, |loaded, now| {
                let out = loaded.machine.commit_transaction_offsets(req, now);
                (out.response, out.records, out.completions)
            })
            .await?;
        match response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find_map(|p| p.error)
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub async fn fetch_offsets(&self, req: OffsetFetchRequest) -> OffsetFetchResponse {
        match self
            .inner
            .read(&req.group_id, |m| m.fetch_offsets(&req))
            .await
        {
            Ok(response) => response,
            Err(e) => OffsetFetchResponse {
                error: Some(e),
                topics: Vec::new(),
            },
        }
    }

    pub async fn describe_groups(&self, group_ids: &[String]) -> Vec<DescribedGroup> {
        let mut out = Vec::with_capacity(group_ids.len());
        for id in group_ids {
            let described = self.inner.read(id, |m| m.describe_group(id)).await;
            out.push(described.unwrap_or_else(|e| DescribedGroup {
                group_id: id.clone(),
                error: Some(e),
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol_data: String::new(),
                members: Vec::new(),
            }));
        }
        out
    }

    /// Groups of every partition whose state is in `states` (all when empty). While any
    /// partition is loading the answer would be partial, so it is `CoordinatorLoadInProgress`.
    /// In cluster mode, the groups this broker coordinates (Kafka's ListGroups answers per
    /// broker; admin clients ask every broker).
    pub async fn list_groups(
        &self,
        states: &[GroupState],
    ) -> Result<Vec<ListedGroup>, CoordinatorError> {
        let mut groups = Vec::new();
        for slot in &self.inner.slots {
            match self.inner.wait_loaded(slot).await {
                Ok(()) => {}
                Err(CoordinatorError::NotCoordinator) if self.inner.broker.cluster().is_some() => {
                    continue
                }
                Err(e) => return Err(e),
            }
            match &*lock(&slot.state) {
                SlotState::Loaded(loaded) => groups.extend(loaded.machine.list_groups(states)),
                SlotState::Closed => return Err(CoordinatorError::CoordinatorNotAvailable),
                SlotState::Unloaded | SlotState::Loading => {
                    return Err(CoordinatorError::CoordinatorLoadInProgress)
                }
            }
        }
        Ok(groups)
    }

    pub async fn delete_groups(
        &self,
        group_ids: &[String],
    ) -> Vec<(String, Option<CoordinatorError>)> {
        let mut out = Vec::with_capacity(group_ids.len());
        for id in group_ids {
            let ids = [id.clone()];
            let result = self
                .inner
                .run(id, true, |loaded, _now| {
                    let o = loaded.machine.delete_groups(&ids);
                    (o.response, o.records, o.completions)
                })
                .await;
            match result {
                Ok(mut results) => out.push(
                    results
                        .pop()
                        .unwrap_or((id.clone(), Some(CoordinatorError::Internal))),
                ),
                Err(e) => out.push((id.clone(), Some(e))),
            }
        }
        out
    }

    pub async fn delete_offsets(&self, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
        let group_id = req.group_id.clone();
        let result = self
            .inner
            .run(&group_id, true, |loaded, _now| {
                let out = loaded.machine.delete_offsets(&req);
                (out.response, out.records, out.completions)
            })
            .await;
        result.unwrap_or_else(|e| OffsetDeleteResponse {
            error: Some(e),
            topics: Vec::new(),
        })
    }

    /// A group's members, assignments and committed offsets, for the admin API.
    pub async fn group_view(&self, group_id: &str) -> Result<Option<GroupView>, CoordinatorError> {
        self.inner.read(group_id, |m| m.group_view(group_id)).await
    }

    /// Committed offsets of a group beside each partition's log end (the lag). Topic names are
    /// the ones the group committed, resolved like a Kafka client's names.
    pub async fn group_lag(&self, group_id: &str) -> Result<Vec<PartitionLag>, CoordinatorError> {
        let Some(view) = self.group_view(group_id).await? else {
            return Ok(Vec::new());
        };
        let mut ends = HashMap::new();
        for o in &view.offsets {
            let end = async {
                let topic = self.inner.broker.parse_topic(&o.topic).ok()?;
                let partition = u32::try_from(o.partition).ok()?;
                let log = self
                    .inner
                    .broker
                    .partition(&TopicPartition { topic, partition })
                    .await
                    .ok()?;
                i64::try_from(log.end_index()).ok()
            }
            .await;
            ends.insert((o.topic.clone(), o.partition), end);
        }
        Ok(view.lag(|t, p| ends.get(&(t.to_string(), p)).copied().flatten()))
    }

    /// Fires due deadlines of every loaded partition now (the timer does this every
    /// `timer_tick_ms`; tests with a manual clock call it after moving the clock).
    pub async fn tick_now(&self) {
        self.inner.tick_all().await;
    }

    /// Stalls every append (after the appends under way) until the guard is dropped: for tests
    /// that need a state change whose records are not durable yet.
    #[doc(hidden)]
    pub async fn hold_writes(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.inner.write_gate.clone().write_owned().await
    }

    /// Compacts one partition now if it has anything to snapshot (see the module docs).
    pub async fn compact(
        &self,
        partition: u32,
    ) -> Result<Option<CompactionStats>, CoordinatorError> {
        self.inner.compact(partition, true).await
    }

    /// Stops the timer and loads, unloads every partition (parked requests get
    /// `CoordinatorNotAvailable`), lets each writer append what was queued, and waits for every
    /// task. Call before the broker shuts down.
    /// The transaction coordinator, started (creating `__transaction_state`) on first use.
    pub async fn transactions(
        self: &Arc<Self>,
    ) -> Result<Arc<crate::txn::TransactionCoordinator>, CoordinatorError> {
        self.transactions
            .get_or_try_init(|| async {
                let txn = crate::txn::TransactionCoordinator::start(
                    self.inner.broker.clone(),
                    self.inner.config.clone(),
                )
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "cannot start the transaction coordinator");
                    CoordinatorError::CoordinatorNotAvailable
                })?;
                txn.set_group_coordinator(self);
                Ok(txn)
            })
            .await
            .cloned()
    }

    /// The transaction coordinator if it is running.
    pub fn transactions_if_started(&self) -> Option<&Arc<crate::txn::TransactionCoordinator>> {
        self.transactions.get()
    }

    pub async fn shutdown(&self) {
        // Transactions first: their completions commit offsets through this coordinator.
        if let Some(txn) = self.transactions.get() {
            txn.shutdown().await;
        }
        self.inner.shutdown.cancel();
        for slot in &self.inner.slots {
            let previous = std::mem::replace(&mut *lock(&slot.state), SlotState::Closed);
            drop(previous);
        }
        let mut tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        while tasks.join_next().await.is_some() {}
    }
}

impl Inner {
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        // Reap finished tasks so the set does not grow with history.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    fn slot(&self, group_id: &str) -> Result<&Slot, CoordinatorError> {
        let partition = partition_for_group(group_id, self.slots.len() as u32);
        self.slots
            .get(partition as usize)
            .ok_or(CoordinatorError::CoordinatorNotAvailable)
    }

    /// Waits (up to `load_wait_ms`) for `slot` to be loaded, starting the load if needed.
    async fn wait_loaded(self: &Arc<Self>, slot: &Slot) -> Result<(), CoordinatorError> {
        // Cluster mode: only the owner of the offsets partition coordinates its groups. A
        // partition whose bundle moved away is unloaded (its state here may be stale: the new
        // owner writes now), and the client looks the coordinator up again.
        if self
            .broker
            .check_owner(&self.topic, Some(slot.partition))
            .is_err()
        {
            self.unload(slot, None);
            return Err(CoordinatorError::NotCoordinator);
        }
        let mut rx = slot.loaded.subscribe();
        let start_load = {
            let mut state = lock(&slot.state);
            match &*state {
                SlotState::Loaded(_) => return Ok(()),
                SlotState::Closed => return Err(CoordinatorError::CoordinatorNotAvailable),
                SlotState::Loading => false,
                SlotState::Unloaded => {
                    *state = SlotState::Loading;
                    true
                }
            }
        };
        if start_load {
            let inner = self.clone();
            let partition = slot.partition;
            self.spawn(async move {
                if let Err(e) = inner.load_marked(partition).await {
                    tracing::warn!(partition, error = %e, "loading offsets partition failed");
                }
            });
        }
        let wait = Duration::from_millis(self.config.load_wait_ms);
        let loaded = tokio::time::timeout(wait, async {
            loop {
                if matches!(&*lock(&slot.state), SlotState::Loaded(_)) {
                    return true;
                }
                if matches!(&*lock(&slot.state), SlotState::Closed) || rx.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await;
        match loaded {
            Ok(true) => Ok(()),
            Ok(false) => Err(CoordinatorError::CoordinatorNotAvailable),
            Err(_) => Err(CoordinatorError::CoordinatorLoadInProgress),
        }
    }

    /// Runs a read-only query on the group's machine.
    async fn read<R>(
        self: &Arc<Self>,
        group_id: &str,
        query: impl FnOnce(&GroupStateMachine) -> R,
    ) -> Result<R, CoordinatorError> {
        let slot = self.slot(group_id)?;
        self.wait_loaded(slot).await?;
        let (result, pending) = match &*lock(&slot.state) {
            SlotState::Loaded(loaded) => (query(&loaded.machine), loaded.pending_writes()),
            SlotState::Closed => return Err(CoordinatorError::CoordinatorNotAvailable),
            SlotState::Unloaded | SlotState::Loading => {
                return Err(CoordinatorError::CoordinatorLoadInProgress)
            }
        };
        // What was read may include changes still being written (an offset just committed):
        // answer once they are durable, as Kafka shows offsets only after their append.
        if let Some((target, mut done_jobs)) = pending {
            if done_jobs.wait_for(|done| *done >= target).await.is_err() {
                return Err(CoordinatorError::NotCoordinator);
            }
        }
        Ok(result)
    }

    /// Runs one operation under the partition's lock, queues its records, and returns its
    /// response once they are durable. `writes`: the operation may emit records, so it needs
    /// room in the write queue (checked before the state changes).
    async fn run<R>(
        self: &Arc<Self>,
        group_id: &str,
        writes: bool,
        op: impl FnOnce(&mut Loaded, i64) -> (R, Vec<CoordinatorRecord>, Vec<Completion>),
    ) -> Result<R, CoordinatorError> {
        let slot = self.slot(group_id)?;
        self.wait_loaded(slot).await?;
        let (response, wait) = {
            let mut state = lock(&slot.state);
            let SlotState::Loaded(loaded) = &mut *state else {
                return Err(match &*state {
                    SlotState::Closed => CoordinatorError::CoordinatorNotAvailable,
                    _ => CoordinatorError::CoordinatorLoadInProgress,
                });
            };
            let writer = loaded.writer.clone();
            let permit = match writer.try_reserve() {
                Ok(permit) => Some(permit),
                Err(mpsc::error::TrySendError::Full(())) if writes => {
                    return Err(CoordinatorError::CoordinatorOverloaded)
                }
                Err(mpsc::error::TrySendError::Full(())) => None,
                Err(mpsc::error::TrySendError::Closed(())) => {
                    return Err(CoordinatorError::NotCoordinator)
                }
            };
            let now = self.clock.now_ms();
            let (response, records, completions) = op(loaded, now);
            let deliveries = resolve(loaded, completions);
            if records.is_empty() {
                // Nothing to write, but what this answer shows may rest on records queued
                // before it (see the module docs): wait for those first.
                let Some((target, done_jobs)) = loaded.pending_writes() else {
                    deliveries.into_iter().for_each(Delivery::send);
                    return Ok(response);
                };
                (response, Wait::Earlier(target, done_jobs, deliveries))
            } else {
                let Some(permit) = permit else {
                    // Unreachable: operations that write always reserve. Keep the log and the
                    // state together by unloading rather than dropping the records.
                    drop(state);
                    self.unload(slot, None);
                    return Err(CoordinatorError::NotCoordinator);
                };
                let (tx, rx) = oneshot::channel();
                loaded.queued_jobs += 1;
                permit.send(WriteJob {
                    records,
                    done: Some(tx),
                    deliveries,
                });
                (response, Wait::Own(rx))
            }
        };
        match wait {
            Wait::Own(done) => match done.await {
                Ok(Ok(_)) => Ok(response),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(CoordinatorError::NotCoordinator),
            },
            Wait::Earlier(target, mut done_jobs, deliveries) => {
                if done_jobs.wait_for(|done| *done >= target).await.is_ok() {
                    deliveries.into_iter().for_each(Delivery::send);
                    Ok(response)
                } else {
                    // The writer failed and unloaded the partition: what the answer shows
                    // may be lost.
                    for d in deliveries {
                        d.fail(CoordinatorError::NotCoordinator);
                    }
                    Err(CoordinatorError::NotCoordinator)
                }
            }
        }
    }

    /// Unloads a partition (all of it if `load_id` is `None`, else only that load).
    fn unload(&self, slot: &Slot, load_id: Option<u64>) {
        let mut state = lock(&slot.state);
        let matches = match &*state {
            SlotState::Loaded(l) => load_id.is_none_or(|id| id == l.load_id),
            _ => false,
        };
        if matches {
            *state = SlotState::Unloaded;
        }
    }

    /// Reloads a partition from its log. Only for an explicit reload: the in-memory state that
    /// records do not carry (KIP-394 pending members, a rebalance in progress, parked requests,
    /// which get COORDINATOR_NOT_AVAILABLE) is rebuilt from the last records. A partition another
    /// load is reading answers COORDINATOR_LOAD_IN_PROGRESS (two loads would race to install).
    async fn load(self: &Arc<Self>, partition: u32) -> Result<LoadStats, CoordinatorError> {
        let slot = self
            .slots
            .get(partition as usize)
            .ok_or(CoordinatorError::CoordinatorNotAvailable)?;
        {
            let mut state = lock(&slot.state);
            match &*state {
                SlotState::Closed => return Err(CoordinatorError::CoordinatorNotAvailable),
                SlotState::Loading => return Err(CoordinatorError::CoordinatorLoadInProgress),
                SlotState::Unloaded | SlotState::Loaded(_) => *state = SlotState::Loading,
            }
        }
        self.load_marked(partition).await
    }

    /// Loads a partition nobody has loaded or started loading yet; `None` if it was (the startup
    /// loader must not reload a partition a request already loaded lazily: that would throw
    /// away the live groups' in-memory state mid-rebalance).
    async fn load_if_unloaded(
        self: &Arc<Self>,
        partition: u32,
    ) -> Result<Option<LoadStats>, CoordinatorError> {
        let slot = self
            .slots
            .get(partition as usize)
            .ok_or(CoordinatorError::CoordinatorNotAvailable)?;
        {
            let mut state = lock(&slot.state);
            match &*state {
                SlotState::Unloaded => *state = SlotState::Loading,
                SlotState::Closed | SlotState::Loading | SlotState::Loaded(_) => return Ok(None),
            }
        }
        self.load_marked(partition).await.map(Some)
    }

    /// Loads a partition already marked `Loading`.
    async fn load_marked(self: &Arc<Self>, partition: u32) -> Result<LoadStats, CoordinatorError> {
        let slot = self
            .slots
            .get(partition as usize)
            .ok_or(CoordinatorError::CoordinatorNotAvailable)?;
        let result = self.read_partition(partition).await;
        let mut state = lock(&slot.state);
        if matches!(&*state, SlotState::Closed) {
            return Err(CoordinatorError::CoordinatorNotAvailable);
        }
        let (machine, log, stats) = match result {
            Ok(loaded) => loaded,
            Err(e) => {
                *state = SlotState::Unloaded;
                return Err(e);
            }
        };
        let load_id = *slot.loaded.borrow() + 1;
        let (writer, rx) = mpsc::channel(self.config.write_queue_max);
        let (done_jobs_tx, done_jobs) = watch::channel(0u64);
        *state = SlotState::Loaded(Box::new(Loaded {
            load_id,
            machine,
            log: log.clone(),
            writer,
            joins: HashMap::new(),
            syncs: HashMap::new(),
            compacting: false,
            queued_jobs: 0,
            done_jobs,
        }));
        drop(state);
        let inner = self.clone();
        self.spawn(write_loop(inner, partition, load_id, log, rx, done_jobs_tx));
        slot.loaded.send_replace(load_id);
        tracing::debug!(
            partition,
            records = stats.records,
            groups = stats.groups,
            duration_ms = stats.duration.as_millis() as u64,
            "loaded offsets partition"
        );
        Ok(stats)
    }

    async fn read_partition(
        &self,
        partition: u32,
    ) -> Result<(GroupStateMachine, Arc<PartitionLog>, LoadStats), CoordinatorError> {
        let started = std::time::Instant::now();
        let tp = TopicPartition {
            topic: self.topic.clone(),
            partition,
        };
        let log = self.broker.partition(&tp).await.map_err(|e| match e {
            // Cluster mode: another broker coordinates this partition's groups.
            BrokerError::NotOwner { .. } => {
                tracing::debug!(partition, error = %e, "offsets partition served elsewhere");
                CoordinatorError::NotCoordinator
            }
            e => {
                tracing::warn!(partition, error = %e, "cannot open offsets partition");
                CoordinatorError::CoordinatorNotAvailable
            }
        })?;
        let seed = self.clock.now_ms() as u64 ^ (u64::from(partition) << 48);
        let mut machine = GroupStateMachine::new(self.config.clone(), seed);
        let (mut records, mut batches) = (0u64, 0u64);
        let mut next = log.start_index();
        let end = log.end_index();
        while next < end {
            if self.shutdown.is_cancelled() {
                return Err(CoordinatorError::CoordinatorNotAvailable);
            }
            let entries = log.read(next, LOAD_READ_BYTES, 10_000).await.map_err(|e| {
                tracing::warn!(partition, error = %e, "cannot read offsets partition");
                CoordinatorError::CoordinatorNotAvailable
            })?;
            let Some(last) = entries.last() else { break };
            next = last.header.end_index();
            for entry in entries {
                if entry.header.format != PayloadFormat::Kafka {
                    tracing::warn!(
                        partition,
                        index = entry.header.first_index,
                        "skipping a non-Kafka entry in the offsets topic"
                    );
                    continue;
                }
                let batch = match decode_batch(&entry.payload) {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::error!(partition, index = entry.header.first_index, error = %e, "skipping an undecodable batch in the offsets topic");
                        continue;
                    }
                };
                batches += 1;
                for (key, value) in &batch.records {
                    match CoordinatorRecord::decode(key, value.as_deref()) {
                        Ok(DecodedRecord::Known(record)) => {
                            machine.replay(&record);
                            records += 1;
                        }
                        Ok(DecodedRecord::Unknown(version)) => {
                            tracing::debug!(
                                partition,
                                version,
                                "skipping a record of another coordinator"
                            );
                        }
                        Err(e) => {
                            tracing::error!(partition, index = entry.header.first_index, error = %e, "skipping an undecodable record in the offsets topic");
                        }
                    }
                }
            }
        }
        machine.finish_load(self.clock.now_ms());
        let stats = LoadStats {
            partition,
            records,
            batches,
            groups: machine.group_count(),
            duration: started.elapsed(),
        };
        Ok((machine, log, stats))
    }

    async fn tick_all(self: &Arc<Self>) {
        for slot in &self.slots {
            {
                let mut state = lock(&slot.state);
                let SlotState::Loaded(loaded) = &mut *state else {
                    continue;
                };
                // A full queue means the writer is behind: fire these deadlines next tick.
                let Ok(permit) = loaded.writer.clone().try_reserve_owned() else {
                    continue;
                };
                let out = loaded.machine.tick(self.clock.now_ms());
                let deliveries = resolve(loaded, out.completions);
                if out.records.is_empty() && loaded.pending_writes().is_none() {
                    deliveries.into_iter().for_each(Delivery::send);
                } else {
                    // With nothing to write, the empty job still orders these answers after
                    // the records queued before them (see the module docs).
                    loaded.queued_jobs += 1;
                    permit.send(WriteJob {
                        records: out.records,
                        done: None,
                        deliveries,
                    });
                }
            }
        }
    }

    /// Snapshot compaction of one partition; `force` skips the size threshold.
    async fn compact(
        self: &Arc<Self>,
        partition: u32,
        force: bool,
    ) -> Result<Option<CompactionStats>, CoordinatorError> {
        let slot = self
            .slots
            .get(partition as usize)
            .ok_or(CoordinatorError::CoordinatorNotAvailable)?;
        let (log, done, written, records_before) = {
            let mut state = lock(&slot.state);
            let SlotState::Loaded(loaded) = &mut *state else {
                return Ok(None);
            };
            if loaded.compacting {
                return Ok(None);
            }
            let records_before = loaded.log.end_index() - loaded.log.start_index();
            let threshold = self
                .config
                .compaction_records_min
                .max(self.config.compaction_ratio * loaded.machine.live_keys());
            if !force && records_before <= threshold {
                return Ok(None);
            }
            let records = loaded.machine.snapshot();
            if records.is_empty() {
                // Nothing live to write: the log is left as it is until something is.
                return Ok(None);
            }
            let writer = loaded.writer.clone();
            let Ok(permit) = writer.try_reserve() else {
                return Err(CoordinatorError::CoordinatorOverloaded);
            };
            loaded.compacting = true;
            let (tx, rx) = oneshot::channel();
            let written = records.len() as u64;
            loaded.queued_jobs += 1;
            permit.send(WriteJob {
                records,
                done: Some(tx),
                deliveries: Vec::new(),
            });
            (loaded.log.clone(), rx, written, records_before)
        };
        let result = match done.await {
            Ok(Ok(first_index)) => log
                .truncate_before(first_index)
                .await
                .map_err(|e| {
                    tracing::warn!(partition, error = %e, "cannot truncate the offsets partition");
                    CoordinatorError::CoordinatorNotAvailable
                })
                .map(|start| {
                    Some(CompactionStats {
                        partition,
                        records_before,
                        records_written: written,
                        new_start_index: start,
                    })
                }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(CoordinatorError::NotCoordinator),
        };
        if let SlotState::Loaded(loaded) = &mut *lock(&slot.state) {
            loaded.compacting = false;
        }
        if let Ok(Some(stats)) = &result {
            tracing::info!(
                partition,
                before = stats.records_before,
                written = stats.records_written,
                start = stats.new_start_index,
                "compacted offsets partition"
            );
        }
        result
    }
}

/// Takes the parked senders that `completions` answer.
fn resolve(loaded: &mut Loaded, completions: Vec<Completion>) -> Vec<Delivery> {
    completions
        .into_iter()
        .filter_map(|c| match c {
            Completion::Join {
                group_id,
                member_id,
                response,
            } => loaded
                .joins
                .remove(&(group_id, member_id))
                .map(|tx| Delivery::Join(tx, response)),
            Completion::Sync {
                group_id,
                member_id,
                response,
            } => loaded
                .syncs
                .remove(&(group_id, member_id))
                .map(|tx| Delivery::Sync(tx, response)),
        })
        .collect()
}

async fn timer_loop(inner: Arc<Inner>) {
    let period = Duration::from_millis(inner.config.timer_tick_ms);
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => break,
            _ = tokio::time::sleep(period) => {}
        }
        inner.tick_all().await;
        for slot in &inner.slots {
            if inner.shutdown.is_cancelled() {
                break;
            }
            if let Err(e) = inner.compact(slot.partition, false).await {
                tracing::debug!(partition = slot.partition, error = %e, "compaction did not run");
            }
        }
    }
}

/// Appends the jobs of one loaded partition in order, merging what is queued into one batch.
async fn write_loop(
    inner: Arc<Inner>,
    partition: u32,
    load_id: u64,
    log: Arc<PartitionLog>,
    mut rx: mpsc::Receiver<WriteJob>,
    done_jobs: watch::Sender<u64>,
) {
    let records_max = inner.config.write_batch_records_max;
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut count = jobs[0].records.len();
        while count < records_max {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.records.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let gate = inner.write_gate.read().await;
        let appended = append_jobs(&inner, &log, &jobs).await;
        drop(gate);
        match appended {
            Ok(first_indexes) => {
                // Counted before anyone is answered: whoever learns of these records from an
                // answer and asks again finds them done.
                done_jobs.send_modify(|done| *done += jobs.len() as u64);
                for (job, first_index) in jobs.into_iter().zip(first_indexes) {
                    if let Some(done) = job.done {
                        let _ = done.send(Ok(first_index));
                    }
                    job.deliveries.into_iter().for_each(Delivery::send);
                }
            }
            Err(e) => {
                tracing::error!(partition, error = %e, "appending to the offsets partition failed; unloading it");
                let fail = |job: WriteJob| {
                    if let Some(done) = job.done {
                        let _ = done.send(Err(CoordinatorError::NotCoordinator));
                    }
                    for d in job.deliveries {
                        d.fail(CoordinatorError::NotCoordinator);
                    }
                };
                jobs.into_iter().for_each(fail);
                if let Some(slot) = inner.slots.get(partition as usize) {
                    inner.unload(slot, Some(load_id));
                }
                // The sender went with the unloaded state: fail what is still queued.
                rx.close();
                while let Some(job) = rx.recv().await {
                    fail(job);
                }
                return;
            }
        }
    }
}

/// Encodes and appends the records of `jobs`, in batches of at most
/// `write_batch_records_max` records and about [`WRITE_BATCH_BYTES_MAX`] bytes; returns the
/// index of the batch holding each job's first record.
async fn append_jobs(
    inner: &Inner,
    log: &PartitionLog,
    jobs: &[WriteJob],
) -> Result<Vec<u64>, String> {
    let records_max = inner.config.write_batch_records_max;
    // Position (in all records of `jobs`) of each job's first record, and of each batch's.
    let mut job_starts = Vec::with_capacity(jobs.len());
    let mut batches: Vec<(usize, u64)> = Vec::new();
    let mut pending: Vec<RawRecord> = Vec::new();
    let (mut pending_bytes, mut pending_start, mut position) = (0usize, 0usize, 0usize);
    for job in jobs {
        job_starts.push(position);
        for record in &job.records {
            let key = record.encode_key().map_err(|e| e.to_string())?;
            let value = record.encode_value().map_err(|e| e.to_string())?;
            pending_bytes += key.len() + value.as_ref().map_or(0, Vec::len);
            pending.push((key, value));
            position += 1;
            if pending.len() >= records_max || pending_bytes >= WRITE_BATCH_BYTES_MAX {
                batches.push((pending_start, append_batch(inner, log, &pending).await?));
                pending.clear();
                pending_bytes = 0;
                pending_start = position;
            }
        }
    }
    if !pending.is_empty() {
        batches.push((pending_start, append_batch(inner, log, &pending).await?));
    }
    let end = log.end_index();
    Ok(job_starts
        .into_iter()
        .map(|start| {
            batches
                .iter()
                .rev()
                .find(|(first, _)| *first <= start)
                .map_or(end, |(_, index)| *index)
        })
        .collect())
}

async fn append_batch(
    inner: &Inner,
    log: &PartitionLog,
    records: &[RawRecord],
) -> Result<u64, String> {
    let now = inner.clock.now_ms();
    let payload = Bytes::from(encode_batch(records, now));
    let outcome = log
        .append(AppendRequest {
            payload,
            message_count: u32::try_from(records.len())
                .map_err(|_| "too many records".to_string())?,
            max_timestamp_ms: now,
            format: PayloadFormat::Kafka,
            producer: None,
            first_index_at: Some(0),
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(outcome.first_index)
}
