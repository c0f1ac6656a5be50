//! One partition's log: a managed ledger plus the idempotent-producer table, with appends
//! serialised so that sequence checks and index assignment happen atomically.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use magnetar_storage::{
    Clock, Entry, EntryHeader, LatencyHistogram, LedgerStats, NewEntry, PayloadFormat, ProducerInfo,
};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::ledger::{Ledger, Pending};
use crate::names::TopicPartition;
use crate::producer_state::{
    decode_snapshot, encode_snapshot, AbortedTxn, ProducerBatch, ProducerStateTable, SequenceCheck,
    TxnTable, NAMED_PRODUCER_EPOCH,
};
use crate::publish_rate::{PublishLimiter, PublishRate};

/// Entry headers read per step when rebuilding the producer table.
const HEADER_SCAN_CHUNK: usize = 10_000;
/// How long a producer-state snapshot taken at a segment roll waits for the entries it covers
/// to become durable before it is given up (the next roll or a clean close writes another).
const SNAPSHOT_DURABLE_WAIT_MS: u64 = 30_000;

/// One producer batch to append.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    pub payload: Bytes,
    pub message_count: u32,
    pub max_timestamp_ms: i64,
    pub format: PayloadFormat,
    pub producer: Option<ProducerBatch>,
    /// Where to write the assigned first index into the payload, as a big-endian u64, so the
    /// stored bytes are what a reader is served (a Kafka batch's base offset lives at 0). The
    /// ledger writes it while encoding the entry into its write buffer (no extra copy).
    pub first_index_at: Option<usize>,
}

/// An append whose first index is assigned and whose bytes are queued to the ledger's
/// group-commit writer (phase one, [`PartitionLog::enqueue`]); [`Appending::durable`] waits until
/// it is durable under the fsync policy (phase two). Indexes follow the order of `enqueue` calls,
/// so a front end enqueues in request order and may wait for many appends together: appends
/// queued before the writer's next round share its write and fsync.
#[must_use = "an append is acknowledged only once durable"]
#[derive(Debug)]
pub struct Appending {
    first_index: u64,
    /// `None`: an idempotent retry of a batch already in the log; nothing new is written.
    pending: Option<Pending>,
    ledger: Arc<Ledger>,
    traffic: Arc<PartitionTraffic>,
    started: Instant,
    bytes: u64,
    messages: u32,
}

impl Appending {
    /// The index assigned to the batch's first message (the original's for a duplicate).
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// Whether the batch had been appended before (idempotent retry).
    pub fn is_duplicate(&self) -> bool {
        self.pending.is_none()
    }

    /// Waits until the entry is durable under the ledger's fsync policy.
    pub async fn durable(self) -> Result<AppendOutcome> {
        let Some(pending) = self.pending else {
            return Ok(AppendOutcome {
                first_index: self.first_index,
                log_start_index: self.ledger.start_index(),
                duplicate: true,
            });
        };
        pending.wait().await?;
        let traffic = &self.traffic;
        traffic.append_latency.observe(self.started.elapsed());
        traffic.bytes_in.fetch_add(self.bytes, Ordering::Relaxed);
        traffic
            .messages_in
            .fetch_add(u64::from(self.messages), Ordering::Relaxed);
        Ok(AppendOutcome {
            first_index: self.first_index,
            log_start_index: self.ledger.start_index(),
            duplicate: false,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    pub first_index: u64,
    pub log_start_index: u64,
    /// The batch had been appended before (idempotent retry); nothing new was written.
    pub duplicate: bool,
}

pub struct PartitionLog {
    name: TopicPartition,
    ledger: Arc<Ledger>,
    producers: Mutex<ProducerStateTable>,
    /// Open and aborted transactions; changed only under the `producers` lock, so their order
    /// is the log's.
    txns: Mutex<TxnTable>,
    /// The first index of the oldest open transaction (`u64::MAX`: none), for a lock-free last
    /// stable offset on the fetch path.
    first_open_txn: AtomicU64,
    /// The live subscriptions of this partition (see [`crate::subscription`]).
    pub(crate) subscriptions: Mutex<crate::subscription::Registry>,
    /// Named producers (see [`crate::producer_state::NAMED_PRODUCER_EPOCH`]): id -> first index
    /// of its last entry. Bounded like the producer table.
    named: Mutex<NamedProducers>,
    /// The namespace's publish rate, applied to producers of both protocols.
    publish_limiter: Mutex<PublishLimiter>,
    traffic: Arc<PartitionTraffic>,
    /// The ledger's snapshot points (rolls and recovery checkpoints) when the last
    /// producer-state snapshot was taken: one is taken at the first append after each.
    snapshot_rolls: AtomicU64,
    /// How the producer table was rebuilt on open.
    open_report: ProducerStateOpen,
    /// The last operator-requested offload (see [`PartitionLog::start_offload`]).
    offload: Arc<Mutex<OffloadStatus>>,
    /// The epoch this broker serves the partition under: 0 standalone; in cluster mode the
    /// epoch of its bundle's claim (Kafka's leader epoch).
    leader_epoch: u64,
    /// Set when [`PartitionLog::close`] starts (see [`PartitionLog::closed`]).
    closing: watch::Sender<bool>,
}

/// The state of an operator-requested offload of a partition (Pulsar's
/// `OffloadProcessStatus`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OffloadStatus {
    #[default]
    NotRun,
    Running,
    /// Done; the first message index still only on local disk.
    Success {
        first_local_index: u64,
    },
    Error(String),
}

/// How a partition rebuilt its producer state on open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProducerStateOpen {
    /// The index of the snapshot loaded, if one was usable.
    pub snapshot_index: Option<u64>,
    /// Snapshots found unusable (each logged as a warning).
    pub snapshots_rejected: u64,
    /// Entry headers replayed from the log.
    pub headers_replayed: u64,
}

/// Last entry per named producer, bounded (the producer whose last entry is oldest goes first).
#[derive(Debug, Default)]
struct NamedProducers {
    last_entry: HashMap<i64, u64>,
    producers_max: usize,
}

impl NamedProducers {
    fn record(&mut self, producer_id: i64, first_index: u64) {
        if !self.last_entry.contains_key(&producer_id)
            && self.last_entry.len() >= self.producers_max.max(1)
        {
            if let Some(oldest) = self
                .last_entry
                .iter()
                .min_by_key(|(_, index)| **index)
                .map(|(id, _)| *id)
            {
                self.last_entry.remove(&oldest);
            }
        }
        self.last_entry.insert(producer_id, first_index);
    }
}

/// Traffic through one partition since it was opened, in plain atomics on the partition itself
/// so recording costs no lookup and no lock; the metrics exporter reads them at scrape time.
/// "In" counts durable appends from every protocol (duplicates excluded); "out" is recorded by
/// the front ends for what they send to consumers.
#[derive(Debug, Default)]
pub struct PartitionTraffic {
    pub bytes_in: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub messages_out: AtomicU64,
    /// From the append call to the entry being durable (under the fsync policy).
    pub append_latency: LatencyHistogram,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PartitionLog {
    /// Wraps an opened ledger and rebuilds the producer table: from the newest valid snapshot
    /// plus the entry headers after it, or from every header when no snapshot is usable.
    pub(crate) async fn new(
        name: TopicPartition,
        ledger: Ledger,
        producers_max: usize,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let mut table = ProducerStateTable::new(producers_max);
        let mut named = NamedProducers {
            last_entry: HashMap::new(),
            producers_max,
        };
        let mut txns = TxnTable::default();
        let mut report = ProducerStateOpen::default();
        let mut next = ledger.start_index();
        for (index, blob) in ledger.snapshots().await? {
            match decode_snapshot(&blob, producers_max) {
                Ok((t, n, x)) => {
                    table = t;
                    txns = x;
                    for (id, first_index) in n {
                        named.record(id, first_index);
                    }
                    report.snapshot_index = Some(index);
                    next = next.max(index);
                    break;
                }
                Err(reason) => {
                    report.snapshots_rejected += 1;
                    tracing::warn!(partition = %name, snapshot_index = index, reason = %reason, "producer snapshot unusable, trying an older one or the log");
                }
            }
        }
        // Headers only, in bounded chunks, from the snapshot's index on.
        while next < ledger.end_index() {
            let headers = ledger.scan_headers(next, HEADER_SCAN_CHUNK).await?;
            let Some(last) = headers.last() else { break };
            next = last.first_index + u64::from(last.message_count.max(1));
            report.headers_replayed += headers.len() as u64;
            for header in headers {
                if let Some(p) = header.producer {
                    if p.epoch == NAMED_PRODUCER_EPOCH {
                        named.record(p.producer_id, header.first_index);
                        continue;
                    }
                    txns.record(p.producer_id, p.txn, header.first_index);
                    if p.txn.is_marker() {
                        table.record_marker(p.producer_id, p.epoch);
                        continue;
                    }
                    table.record(
                        &ProducerBatch {
                            producer_id: p.producer_id,
                            epoch: p.epoch,
                            first_sequence: p.base_sequence,
                            message_count: header.message_count,
                            txn: p.txn,
                        },
                        header.first_index,
                        header.max_timestamp_ms,
                    );
                }
            }
        }
        txns.forget_before(ledger.start_index());
        Ok(Self {
            name,
            snapshot_rolls: AtomicU64::new(ledger.snapshot_points()),
            ledger: Arc::new(ledger),
            producers: Mutex::new(table),
            first_open_txn: AtomicU64::new(txns.first_open().unwrap_or(u64::MAX)),
            txns: Mutex::new(txns),
            subscriptions: Mutex::default(),
            named: Mutex::new(named),
            publish_limiter: Mutex::new(PublishLimiter::unlimited(clock)),
            traffic: Arc::default(),
            open_report: report,
            offload: Arc::new(Mutex::new(OffloadStatus::default())),
            leader_epoch: 0,
            closing: watch::channel(false).0,
        })
    }

    /// Resolves once the partition starts closing (unloaded, moved to another broker, deleted,
    /// or replaced after a failed write): the front ends close their producers on it then, so
    /// clients reconnect to wherever it is served next.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closing = self.closing.subscribe();
        async move {
            let _ = closing.wait_for(|closing| *closing).await;
        }
    }

    /// Sets the epoch the partition is served under (see [`PartitionLog::leader_epoch`]).
    pub(crate) fn with_leader_epoch(mut self, epoch: u64) -> Self {
        self.leader_epoch = epoch;
        self
    }

    /// The epoch this broker serves the partition under: 0 standalone; in cluster mode the
    /// epoch of the bundle claim it was opened under (every claim bumps it, so a partition that
    /// moved is served under a higher epoch). Kafka's leader epoch.
    pub fn leader_epoch(&self) -> u64 {
        self.leader_epoch
    }

    /// How the producer table was rebuilt when this partition was opened.
    pub fn producer_state_open(&self) -> ProducerStateOpen {
        self.open_report
    }

    /// The producer table and named producers as a snapshot blob; called with the producer
    /// lock held, so it covers exactly the entries enqueued so far.
    fn snapshot_blob(&self, producers: &ProducerStateTable) -> Bytes {
        let named = self
            .named
            .lock()
            .map(|n| n.last_entry.clone())
            .unwrap_or_default();
        let mut txns = self.txns();
        txns.forget_before(self.ledger.start_index());
        Bytes::from(encode_snapshot(producers, &named, &txns))
    }

    fn txns(&self) -> std::sync::MutexGuard<'_, TxnTable> {
        self.txns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kafka's last stable offset: the first index of the oldest open transaction, or the
    /// readable end when none is open; never below the log start (DeleteRecords may move the
    /// start past an open transaction's first entry, as Kafka allows up to the high watermark;
    /// the transaction stays open). `read_committed` readers read below it only.
    pub fn last_stable_index(&self) -> u64 {
        self.first_open_txn
            .load(Ordering::Acquire)
            .min(self.ledger.end_index())
            .max(self.ledger.start_index())
    }

    /// What compaction must know of this partition's transactions: nothing at or after the
    /// last stable offset is compacted, and aborted transactions' data is dropped.
    pub fn txn_view(&self) -> magnetar_storage::TxnView {
        let stable_end = self.last_stable_index();
        magnetar_storage::TxnView {
            stable_end,
            aborted: self.txns().aborted_in(0, stable_end),
        }
    }

    /// Retention by time and size (see the ledger's), never past the last stable offset: the
    /// segments holding an open transaction's data stay until it is decided (a hanging
    /// transaction is aborted by its timeout, so this is bounded).
    pub async fn apply_retention(
        &self,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
    ) -> Result<magnetar_storage::RetentionOutcome> {
        Ok(self
            .ledger
            .apply_retention_until(retention_ms, retention_bytes, self.last_stable_index())
            .await?)
    }

    /// The aborted transactions a `read_committed` read of `[from, to)` must skip.
    pub fn aborted_transactions(&self, from: u64, to: u64) -> Vec<AbortedTxn> {
        self.txns().aborted_in(from, to)
    }

    /// The open transactions: (producer id, first index), oldest first.
    pub fn open_transactions(&self) -> Vec<(i64, u64)> {
        self.txns().open()
    }

    /// Every index below this is in the compacted part of the log (0 for a ledger that is never
    /// compacted).
    pub fn compacted_below(&self) -> u64 {
        self.ledger.cleaned_through()
    }

    /// The idempotent and transactional producers this partition remembers (Kafka's
    /// DescribeProducers), by producer id, each with its open transaction's first index.
    /// Pulsar's named producers are not listed.
    pub fn producers(&self) -> Result<Vec<crate::ProducerView>> {
        let mut producers = self
            .producers
            .lock()
            .map_err(|_| Error::ShuttingDown)?
            .producers();
        let txns = self.txns();
        for p in &mut producers {
            p.txn_start_index = txns.open_of(p.producer_id);
        }
        Ok(producers)
    }

    /// Writes a snapshot covering entries below `index` once they are durable, in the
    /// background (the append that triggered it does not wait). Holds the ledger weakly, so a
    /// closed partition is not kept alive.
    fn snapshot_when_durable(&self, index: u64, blob: Bytes) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.ledger);
        let mut end = self.ledger.subscribe();
        let name = self.name.clone();
        runtime.spawn(async move {
            let wait = tokio::time::timeout(
                std::time::Duration::from_millis(SNAPSHOT_DURABLE_WAIT_MS),
                end.wait_for(|&e| e >= index),
            );
            if !matches!(wait.await, Ok(Ok(_))) {
                return;
            }
            let Some(ledger) = weak.upgrade() else { return };
            if let Err(e) = ledger.write_snapshot(index, blob).await {
                tracing::warn!(partition = %name, snapshot_index = index, error = %e, "producer snapshot not written");
            }
        });
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, PublishLimiter> {
        self.publish_limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the publish rate (the broker does, from the namespace policy).
    pub fn set_publish_rate(&self, rate: PublishRate) {
        self.limiter().set_rate(rate);
    }

    pub fn publish_rate(&self) -> PublishRate {
        self.limiter().rate()
    }

    /// Records a producer's append of `messages` and `bytes` against the publish rate and
    /// returns how long that producer should wait before its next append (zero when unlimited).
    /// Front ends call it once per appended batch.
    pub fn publish_delay(&self, messages: u64, bytes: u64) -> std::time::Duration {
        self.limiter().record(messages, bytes)
    }

    pub fn name(&self) -> &TopicPartition {
        &self.name
    }

    /// The ledger, inside the broker only: cursors are moved through subscriptions
    /// ([`crate::subscription`]) and everything else through this type's methods.
    pub(crate) fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The ledger's statistics (segments, bytes, indexes, fsyncs).
    pub fn stats(&self) -> LedgerStats {
        self.ledger.stats()
    }

    /// Starts offloading the sealed segments that end at or before `before_index` to object
    /// storage in the background; `Ok(false)` if an offload of this partition is already
    /// running. Refused when tiered storage is off.
    pub fn start_offload(&self, before_index: u64) -> Result<bool> {
        let Some(ledger) = self.ledger.local().filter(|l| l.can_offload()).cloned() else {
            return Err(Error::InvalidRequest(if self.ledger.is_shared() {
                "this partition's ledger is on the shared WAL: its data is in object storage already".into()
            } else {
                "tiered storage is off: set storage.object_store to offload".into()
            }));
        };
        {
            let mut status = self.offload.lock().unwrap_or_else(|e| e.into_inner());
            if *status == OffloadStatus::Running {
                return Ok(false);
            }
            *status = OffloadStatus::Running;
        }
        let status = self.offload.clone();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || {
            let done = match ledger.offload_before(before_index) {
                Some(Ok(outcome)) => {
                    tracing::info!(partition = %name, segments = outcome.segments, bytes = outcome.bytes, "offload done");
                    OffloadStatus::Success {
                        first_local_index: outcome.first_local_index,
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(partition = %name, error = %e, "offload failed; the local copies are kept");
                    OffloadStatus::Error(e.to_string())
                }
                None => OffloadStatus::Error("tiered storage is off".into()),
            };
            *status.lock().unwrap_or_else(|e| e.into_inner()) = done;
        });
        Ok(true)
    }

    /// The state of the last [`PartitionLog::start_offload`].
    pub fn offload_status(&self) -> OffloadStatus {
        self.offload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The ledger's directory (cursors, snapshots, local segments); `None` for a ledger on the
    /// shared WAL, which has no local files.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.ledger.local().map(|l| l.dir())
    }

    /// Whether the ledger is on the shared WAL (cluster mode).
    pub fn is_shared(&self) -> bool {
        self.ledger.is_shared()
    }

    /// Whether a write failed and the ledger refuses appends until it is reopened.
    pub fn is_failed(&self) -> bool {
        self.ledger.is_failed()
    }

    /// Up to `max_entries` entry headers from `from_index`, without reading payloads.
    pub async fn scan_headers(
        &self,
        from_index: u64,
        max_entries: usize,
    ) -> Result<Vec<EntryHeader>> {
        Ok(self.ledger.scan_headers(from_index, max_entries).await?)
    }

    pub fn traffic(&self) -> &PartitionTraffic {
        &self.traffic
    }

    /// Records what a front end sent to consumers from this partition.
    pub fn record_out(&self, bytes: u64, messages: u64) {
        self.traffic.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        self.traffic
            .messages_out
            .fetch_add(messages, Ordering::Relaxed);
    }

    /// Appends one batch and waits until it is durable: [`Self::enqueue`] then
    /// [`Appending::durable`].
    pub async fn append(&self, request: AppendRequest) -> Result<AppendOutcome> {
        self.enqueue(request)?.durable().await
    }

    /// Phase one of an append, without waiting: checks the producer's sequence, assigns the
    /// first index and queues the entry to the ledger's writer, atomically under this partition's
    /// producer lock (so sequence order and index order agree). Returns at once; an idempotent
    /// retry of a batch already in the log comes back as a duplicate with the original's index.
    pub fn enqueue(&self, request: AppendRequest) -> Result<Appending> {
        let started = Instant::now();
        let (bytes, messages) = (request.payload.len() as u64, request.message_count);
        if let Some(at) = request.first_index_at {
            if request.payload.len() < at.saturating_add(8) {
                return Err(Error::InvalidRequest(format!(
                    "payload of {} bytes has no room for an index at {at}",
                    request.payload.len()
                )));
            }
        }
        let appending = |first_index, pending| Appending {
            first_index,
            pending,
            ledger: self.ledger.clone(),
            traffic: self.traffic.clone(),
            started,
            bytes,
            messages,
        };
        let mut producers = self.producers.lock().map_err(|_| Error::ShuttingDown)?;
        if let Some(batch) = request.producer.as_ref().filter(|b| !b.is_named()) {
            if batch.txn.is_marker() {
                producers.check_marker(batch.producer_id, batch.epoch)?;
            } else if let SequenceCheck::Duplicate { first_index } = producers.check(batch)? {
                return Ok(appending(first_index, None));
            }
        }
        let AppendRequest {
            payload,
            message_count,
            max_timestamp_ms,
            format,
            producer,
            first_index_at,
        } = request;
        let pending = self.ledger.append_with(|_| NewEntry {
            payload,
            message_count,
            max_timestamp_ms,
            format,
            producer: producer.map(|p| ProducerInfo {
                producer_id: p.producer_id,
                epoch: p.epoch,
                base_sequence: p.first_sequence,
                txn: p.txn,
            }),
            first_index_at,
        })?;
        let first_index = pending.first_index();
        match &producer {
            Some(batch) if batch.is_named() => {
                if let Ok(mut named) = self.named.lock() {
                    named.record(batch.producer_id, first_index);
                }
            }
            Some(batch) => {
                if batch.txn != magnetar_storage::TxnMark::None {
                    let mut txns = self.txns();
                    txns.record(batch.producer_id, batch.txn, first_index);
                    self.first_open_txn
                        .store(txns.first_open().unwrap_or(u64::MAX), Ordering::Release);
                }
                if batch.txn.is_marker() {
                    producers.record_marker(batch.producer_id, batch.epoch);
                } else {
                    producers.record(batch, first_index, max_timestamp_ms);
                }
            }
            None => {}
        }
        // The first append after a segment roll (as Kafka does per roll) or a recovery checkpoint
        // of the active segment snapshots the producer state, so a crash recovery rebuilds it
        // from the tail only; it covers every entry up to and including this one.
        // (Both counters are read under the producer lock, so a plain load and store suffice.)
        let rolls = self.ledger.snapshot_points();
        if self.snapshot_rolls.load(Ordering::Relaxed) != rolls {
            self.snapshot_rolls.store(rolls, Ordering::Relaxed);
            let blob = self.snapshot_blob(&producers);
            drop(producers);
            self.snapshot_when_durable(first_index + u64::from(message_count.max(1)), blob);
        } else {
            drop(producers);
        }
        Ok(appending(first_index, Some(pending)))
    }

    /// The first index of the last entry appended by the named producer `producer_id`
    /// ([`crate::producer_state::named_producer_id`]), as far as this partition remembers.
    pub fn named_producer_last_entry(&self, producer_id: i64) -> Option<u64> {
        self.named
            .lock()
            .ok()
            .and_then(|n| n.last_entry.get(&producer_id).copied())
    }

    pub async fn read(
        &self,
        from_index: u64,
        max_bytes: usize,
        max_entries: usize,
    ) -> Result<Vec<Entry>> {
        Ok(self.ledger.read(from_index, max_bytes, max_entries).await?)
    }

    pub fn start_index(&self) -> u64 {
        self.ledger.start_index()
    }

    pub fn end_index(&self) -> u64 {
        self.ledger.end_index()
    }

    /// The readable end index, for long polls woken by appends.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.ledger.subscribe()
    }

    /// How many [`PartitionLog::subscribe`] receivers are alive (long-polling fetches,
    /// dispatchers, snapshot writers waiting for an append): what a test waits on to know a
    /// long poll is in place, instead of sleeping.
    pub fn end_waiters(&self) -> usize {
        self.ledger.end_waiters()
    }

    pub async fn find_by_timestamp(&self, timestamp_ms: i64) -> Result<Option<EntryHeader>> {
        Ok(self.ledger.find_by_timestamp(timestamp_ms).await?)
    }

    /// The first index of the first entry whose newest timestamp is at or after
    /// `timestamp_ms`; the end index when there is none.
    pub async fn index_at_time(&self, timestamp_ms: i64) -> Result<u64> {
        Ok(match self.find_by_timestamp(timestamp_ms).await? {
            Some(header) => header.first_index,
            None => self.end_index(),
        })
    }

    /// The message index `start` stands for now, within the readable range.
    pub fn start_position(&self, start: magnetar_storage::CursorStart) -> u64 {
        let (first, end) = (self.start_index(), self.end_index());
        match start {
            magnetar_storage::CursorStart::Earliest => first,
            magnetar_storage::CursorStart::Latest => end,
            magnetar_storage::CursorStart::Index(i) => i.clamp(first, end),
        }
    }

    pub async fn max_timestamp_entry(&self) -> Result<Option<EntryHeader>> {
        Ok(self.ledger.max_timestamp_entry().await?)
    }

    /// Moves the log start to `index` (DeleteRecords); returns the new start.
    pub async fn truncate_before(&self, index: u64) -> Result<u64> {
        let (start, end) = (self.start_index(), self.end_index());
        if index > end {
            return Err(Error::IndexOutOfRange {
                requested: index,
                start,
                end,
            });
        }
        if index <= start {
            return Ok(start);
        }
        Ok(self.ledger.truncate_before(index).await?)
    }

    /// Closes the ledger (flushing queued appends), then snapshots the producer state at the
    /// end of the log so the next open replays nothing. No snapshot after a write failure: the
    /// table may then hold batches the log does not.
    pub async fn close(&self) -> Result<()> {
        self.closing.send_replace(true);
        // Consumers first: each gets CLOSE_CONSUMER (Pulsar) and reconnects through a lookup,
        // to this broker's reopened partition or to the partition's new owner.
        let live: Vec<_> = {
            let registry = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
            registry.all_live()
        };
        for subscription in live {
            subscription.close().await;
        }
        // Settled: every append handed out is in the log, or the snapshot is skipped. The
        // producer table holds batches from the moment they are queued; a snapshot taken while
        // one is still queued (and may yet fail) would make the next owner answer that batch's
        // retry as a duplicate at an offset the log never got.
        let settled = self.ledger.close().await?;
        if !settled || self.ledger.is_failed() {
            return Ok(());
        }
        let (index, blob) = {
            let producers = self.producers.lock().map_err(|_| Error::ShuttingDown)?;
            (self.ledger.end_index(), self.snapshot_blob(&producers))
        };
        if let Err(e) = self.ledger.write_snapshot(index, blob).await {
            tracing::warn!(partition = %self.name, snapshot_index = index, error = %e, "producer snapshot not written at close");
        }
        Ok(())
    }
}
