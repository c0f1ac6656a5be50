//! A subscription on one partition: its consumers, its cursor (durable in the storage layer, or
//! in memory for readers) and the dispatcher task that reads entries and sends them to
//! consumers with permits.
//!
//! Dispatch rules: Exclusive and Failover send to one active consumer (Failover: sorted by
//! priority then name, the active one is `partition % consumers`); Shared sends each entry to the
//! next consumer with permits (round-robin); Key_Shared sends an entry to the consumer whose hash
//! slice holds its sticky key (Pulsar's auto-split ranges, see [`crate::key_shared`]; the key of
//! the entry, or of its first message: with batching, a batch goes whole to one consumer).
//! Entries a consumer was sent but did not acknowledge go back to the others when it leaves or
//! asks for redelivery.
//!
//! Key_Shared keeps each key in order across changes of consumers, as Pulsar does: a consumer
//! that leaves gives its slice to a neighbour and its unacknowledged entries are redelivered
//! (before anything newer is read); a consumer that joins takes part of a slice from a consumer
//! that may still hold unacknowledged messages of those keys, so it receives only entries read
//! before it joined until everything up to its join point is acknowledged (the
//! `joined_at` rule: Pulsar's "recently joined consumers").
//!
//! An entry that cannot be served (a Kafka batch the conversion refuses, or an entry an operator
//! marked skipped, see `magnetar_broker::skipped`) is acknowledged and passed, so it never holds
//! back the mark-delete position: Kafka's default `skip` policy, applied to Pulsar consumers. It
//! is counted in `magnetar_server_unreadable_entries_total{protocol="pulsar"}` and logged with
//! its index (at most one line per subscription every 10 s). An entry corrupt on disk stops the
//! dispatcher at it (retried, counted, logged the same way) until an operator marks it skipped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use magnetar_broker::{Broker, CursorState, Entry, PartitionLog, PayloadFormat, TopicPartition};
use magnetar_metrics::ProtocolMetrics;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::convert::EntryCache;
use crate::frame;
use crate::key_shared::HashRanges;
use crate::message_id::{message_id, unacked_set};
use crate::proto::{
    base_command::Type, BaseCommand, BrokerEntryMetadata, CommandActiveConsumerChange,
    CommandMessage,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    Exclusive,
    Shared,
    Failover,
    KeyShared,
}

/// Bytes read per dispatcher step.
const READ_BYTES_MAX: usize = 1024 * 1024;
const READ_ENTRIES_MAX: usize = 64;

#[derive(Debug)]
pub struct ConsumerSlot {
    pub connection: u64,
    pub consumer_id: u64,
    pub name: String,
    pub priority: i32,
    pub permits: u64,
    /// Messages sent to this consumer and not acknowledged; dispatch to it stops at
    /// [`Subscription::unacked_max`] (Pulsar's `maxUnackedMessagesPerConsumer`).
    pub unacked: u64,
    pub tx: mpsc::Sender<Bytes>,
    pub broker_entry_metadata: bool,
    /// Key_Shared: the read index when this consumer joined, while entries before it are not all
    /// acknowledged; entries at or after it are held back from this consumer until then.
    pub joined_at: Option<u64>,
}

type ConsumerKey = (u64, u64);

#[derive(Debug)]
struct Pending {
    consumer: ConsumerKey,
    count: u32,
}

#[derive(Debug)]
struct State {
    consumers: Vec<ConsumerSlot>,
    cursor: CursorState,
    read_index: u64,
    redeliver: BTreeSet<u64>,
    pending: BTreeMap<u64, Pending>,
    redelivery_counts: HashMap<u64, u32>,
    next_shared: usize,
    /// Key_Shared hash slices.
    ranges: HashRanges<ConsumerKey>,
}

pub struct Subscription {
    pub name: String,
    pub kind: SubKind,
    pub durable: bool,
    pub partition: TopicPartition,
    pub id_partition: i32,
    pub log: Arc<PartitionLog>,
    pub unacked_max: u64,
    cache: Arc<EntryCache>,
    /// For skip marks and the unreadable-entry counter.
    broker: Arc<Broker>,
    metrics: Arc<ProtocolMetrics>,
    /// When an unreadable entry was last logged, and how many were not logged since.
    unreadable_log: Mutex<(Option<tokio::time::Instant>, u64)>,
    state: Mutex<State>,
    wake: Notify,
    pub cancel: CancellationToken,
}

/// At most one unreadable-entry line per subscription in this interval.
const UNREADABLE_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

/// What the dispatcher does next.
enum Step {
    Redeliver(Vec<u64>),
    Read(u64),
    Wait,
}

impl Subscription {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        kind: SubKind,
        durable: bool,
        partition: TopicPartition,
        id_partition: i32,
        log: Arc<PartitionLog>,
        cursor: CursorState,
        cache: Arc<EntryCache>,
        broker: Arc<Broker>,
        metrics: Arc<ProtocolMetrics>,
        unacked_max: u64,
        cancel: CancellationToken,
    ) -> Self {
        let read_index = cursor.mark_delete_index;
        Self {
            name,
            kind,
            durable,
            partition,
            id_partition,
            log,
            unacked_max,
            cache,
            broker,
            metrics,
            unreadable_log: Mutex::new((None, 0)),
            state: Mutex::new(State {
                consumers: Vec::new(),
                cursor,
                read_index,
                redeliver: BTreeSet::new(),
                pending: BTreeMap::new(),
                redelivery_counts: HashMap::new(),
                next_shared: 0,
                ranges: HashRanges::default(),
            }),
            wake: Notify::new(),
            cancel,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere; the state is still usable for dispatch.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a consumer; `Err` with a reason when the subscription type forbids it.
    pub fn add_consumer(&self, mut slot: ConsumerSlot, kind: SubKind) -> Result<(), String> {
        let mut s = self.lock();
        if kind != self.kind {
            return Err(format!(
                "subscription '{}' is {:?}; a {:?} consumer cannot join",
                self.name, self.kind, kind
            ));
        }
        if self.kind == SubKind::Exclusive && !s.consumers.is_empty() {
            return Err(format!(
                "exclusive subscription '{}' already has a consumer",
                self.name
            ));
        }
        if self.kind == SubKind::KeyShared {
            s.ranges.add((slot.connection, slot.consumer_id))?;
            slot.joined_at = (s.cursor.mark_delete_index < s.read_index).then_some(s.read_index);
        }
        s.consumers.push(slot);
        if self.kind == SubKind::Failover {
            s.consumers
                .sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        }
        self.notify_active(&s);
        // The active consumer may have changed: give everything in flight back.
        if self.kind == SubKind::Failover {
            let all: Vec<u64> = s.pending.keys().copied().collect();
            for e in all {
                release(&mut s, e);
                s.redeliver.insert(e);
            }
        }
        drop(s);
        self.wake.notify_one();
        Ok(())
    }

    /// Removes a consumer; returns how many are left. Its unacknowledged entries are redelivered.
    pub fn remove_consumer(&self, key: ConsumerKey) -> usize {
        let mut s = self.lock();
        s.consumers.retain(|c| (c.connection, c.consumer_id) != key);
        s.ranges.remove(key);
        let mine: Vec<u64> = s
            .pending
            .iter()
            .filter(|(_, p)| p.consumer == key || !self.per_consumer())
            .map(|(e, _)| *e)
            .collect();
        for e in mine {
            release(&mut s, e);
            s.redeliver.insert(e);
            *s.redelivery_counts.entry(e).or_default() += 1;
        }
        let left = s.consumers.len();
        self.notify_active(&s);
        drop(s);
        self.wake.notify_one();
        left
    }

    /// Tells every consumer of a Failover subscription whether it is the active one
    /// (ACTIVE_CONSUMER_CHANGE). Advisory: skipped for a consumer whose queue is full.
    fn notify_active(&self, s: &State) {
        if self.kind != SubKind::Failover || s.consumers.is_empty() {
            return;
        }
        let active = (self.id_partition.max(0) as usize) % s.consumers.len();
        for (i, c) in s.consumers.iter().enumerate() {
            let frame = frame::encode(&BaseCommand {
                r#type: Type::ActiveConsumerChange as i32,
                active_consumer_change: Some(CommandActiveConsumerChange {
                    consumer_id: c.consumer_id,
                    is_active: Some(i == active),
                }),
                ..Default::default()
            });
            let _ = c.tx.try_send(frame);
        }
    }

    pub fn consumer_count(&self) -> usize {
        self.lock().consumers.len()
    }

    pub fn add_permits(&self, key: ConsumerKey, permits: u32) {
        let mut s = self.lock();
        if let Some(c) = s
            .consumers
            .iter_mut()
            .find(|c| (c.connection, c.consumer_id) == key)
        {
            c.permits = c.permits.saturating_add(u64::from(permits));
        }
        drop(s);
        self.wake.notify_one();
    }

    pub fn cursor(&self) -> CursorState {
        self.lock().cursor.clone()
    }

    /// The message count of an entry this subscription sent, if it is still in flight.
    pub fn pending_count(&self, entry: u64) -> Option<u32> {
        self.lock().pending.get(&entry).map(|p| p.count)
    }

    /// Acknowledges message index ranges; persisted first for durable subscriptions.
    pub async fn ack(&self, ranges: Vec<Range<u64>>) -> Result<(), magnetar_broker::Error> {
        let end = self.log.end_index();
        let ranges: Vec<Range<u64>> = ranges
            .into_iter()
            .filter(|r| r.start < r.end && r.end <= end)
            .collect();
        if ranges.is_empty() {
            return Ok(());
        }
        if self.durable {
            self.log
                .ledger()
                .ack(&self.name, &ranges)
                .await
                .map_err(magnetar_broker::Error::from)?;
        }
        let mut s = self.lock();
        for r in ranges {
            s.cursor.ack(r);
        }
        self.forget_acked(&mut s);
        Ok(())
    }

    /// Acknowledges everything up to and including `index`.
    pub async fn ack_cumulative(&self, index: u64) -> Result<(), magnetar_broker::Error> {
        if index >= self.log.end_index() {
            return Ok(());
        }
        if self.durable {
            self.log
                .ledger()
                .ack_cumulative(&self.name, index)
                .await
                .map_err(magnetar_broker::Error::from)?;
        }
        let mut s = self.lock();
        s.cursor.ack_cumulative(index);
        self.forget_acked(&mut s);
        Ok(())
    }

    fn forget_acked(&self, s: &mut State) {
        let done: Vec<u64> = s
            .pending
            .iter()
            .filter(|(e, p)| (**e..**e + u64::from(p.count.max(1))).all(|i| s.cursor.is_acked(i)))
            .map(|(e, _)| *e)
            .collect();
        if !done.is_empty() {
            self.wake.notify_one();
        }
        for e in done {
            release(s, e);
            s.redelivery_counts.remove(&e);
        }
        let mark = s.cursor.mark_delete_index;
        for c in &mut s.consumers {
            if c.joined_at.is_some_and(|j| j <= mark) {
                c.joined_at = None;
                self.wake.notify_one();
            }
        }
        s.redeliver.retain(|e| *e >= mark);
        s.redelivery_counts.retain(|e, _| *e >= mark);
    }

    /// Sends the given entries again (or everything in flight to `consumer` when `entries` is
    /// empty).
    pub fn redeliver(&self, consumer: ConsumerKey, entries: &[u64]) {
        let mut s = self.lock();
        let chosen: Vec<u64> = if entries.is_empty() || !self.per_consumer() {
            s.pending
                .iter()
                .filter(|(_, p)| p.consumer == consumer || !self.per_consumer())
                .map(|(e, _)| *e)
                .collect()
        } else {
            entries
                .iter()
                .copied()
                .filter(|e| s.pending.get(e).is_some_and(|p| p.consumer == consumer))
                .collect()
        };
        for e in chosen {
            release(&mut s, e);
            s.redeliver.insert(e);
            *s.redelivery_counts.entry(e).or_default() += 1;
        }
        drop(s);
        self.wake.notify_one();
    }

    /// Moves the subscription to `index`: acknowledgements above it are forgotten and nothing
    /// in flight is redelivered (the consumers are disconnected by the caller, as Pulsar does).
    pub async fn reset(&self, index: u64) -> Result<(), magnetar_broker::Error> {
        let index = index.clamp(self.log.start_index(), self.log.end_index());
        if self.durable {
            self.log
                .ledger()
                .reset_cursor(&self.name, index)
                .await
                .map_err(magnetar_broker::Error::from)?;
        }
        let mut s = self.lock();
        s.cursor.reset(index);
        s.read_index = index;
        s.pending.clear();
        for c in &mut s.consumers {
            c.unacked = 0;
        }
        s.redeliver.clear();
        s.redelivery_counts.clear();
        drop(s);
        self.wake.notify_one();
        Ok(())
    }

    /// Consumers of this subscription (connection, consumer id, sender), for disconnecting.
    pub fn consumer_senders(&self) -> Vec<(ConsumerKey, mpsc::Sender<Bytes>)> {
        self.lock()
            .consumers
            .iter()
            .map(|c| ((c.connection, c.consumer_id), c.tx.clone()))
            .collect()
    }

    /// The dispatcher: runs until the subscription is cancelled.
    pub async fn run(self: Arc<Self>) {
        let mut end_watch = self.log.subscribe();
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let step = self.next_step();
            let result = match step {
                Step::Wait => {
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        _ = self.wake.notified() => {}
                        changed = end_watch.changed() => {
                            if changed.is_err() {
                                // The ledger closed; wait to be cancelled.
                                self.cancel.cancelled().await;
                                return;
                            }
                        }
                    }
                    continue;
                }
                Step::Redeliver(entries) => self.dispatch_redelivery(entries).await,
                Step::Read(from) => self.dispatch_from(from).await,
            };
            match result {
                Ok(true) => {}
                // Nothing could be sent: the consumer the next entry belongs to (the active one,
                // or the owner of its key) has no permits. Wait for a flow, an ack or a change of
                // consumers rather than reading the same entries again.
                Ok(false) => {
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(subscription = %self.name, partition = %self.partition, error = %e, "dispatch failed; retrying");
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    }

    fn next_step(&self) -> Step {
        let mut s = self.lock();
        if !s.consumers.iter().any(|c| self.eligible(c)) {
            return Step::Wait;
        }
        if !s.redeliver.is_empty() {
            let entries: Vec<u64> = s.redeliver.iter().take(READ_ENTRIES_MAX).copied().collect();
            for e in &entries {
                s.redeliver.remove(e);
            }
            return Step::Redeliver(entries);
        }
        let start = self.log.start_index();
        if s.read_index < start {
            s.read_index = start;
        }
        if s.read_index < s.cursor.mark_delete_index {
            s.read_index = s.cursor.mark_delete_index;
        }
        if s.read_index < self.log.end_index() {
            Step::Read(s.read_index)
        } else {
            Step::Wait
        }
    }

    /// Redelivers entries; `Ok(false)` when none could be sent.
    async fn dispatch_redelivery(&self, entries: Vec<u64>) -> Result<bool, magnetar_broker::Error> {
        let mut read = Vec::with_capacity(entries.len());
        for e in &entries {
            if *e < self.log.start_index() {
                continue;
            }
            match self.log.read(*e, READ_BYTES_MAX, 1).await {
                Ok(mut got) if !got.is_empty() => read.push(got.swap_remove(0)),
                Ok(_) => {}
                Err(magnetar_broker::Error::IndexOutOfRange { .. }) => {}
                Err(err) => {
                    let mut s = self.lock();
                    s.redeliver.extend(entries.iter().copied());
                    return Err(err);
                }
            }
        }
        let dropped = read.len() < entries.len();
        let read_count = read.len();
        let unsent = self.send_entries(read).await;
        let progress = dropped || unsent.len() < read_count;
        if !unsent.is_empty() {
            self.lock().redeliver.extend(unsent);
        }
        Ok(progress)
    }

    /// Sends entries from `from`; `Ok(false)` when none could be sent.
    async fn dispatch_from(&self, from: u64) -> Result<bool, magnetar_broker::Error> {
        let entries = match self.log.read(from, READ_BYTES_MAX, READ_ENTRIES_MAX).await {
            Ok(entries) => entries,
            Err(magnetar_broker::Error::IndexOutOfRange { start, .. }) => {
                let mut s = self.lock();
                if s.read_index < start {
                    s.read_index = start;
                }
                return Ok(true);
            }
            Err(e @ magnetar_broker::Error::CorruptData(_)) => {
                let Some(range) = self.broker.skipped_entry(&self.partition, from).await else {
                    self.unreadable(from, &e.to_string());
                    return Err(e);
                };
                self.ack(vec![range.clone()]).await?;
                let mut s = self.lock();
                if s.read_index == from {
                    s.read_index = range.end;
                }
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        let Some(last) = entries.last() else {
            return Ok(false);
        };
        let end = last.header.end_index();
        {
            // Another step (a seek) may have moved the read index meanwhile.
            let mut s = self.lock();
            if s.read_index != from {
                return Ok(true);
            }
            s.read_index = end;
        }
        let read_count = entries.len();
        let unsent = self.send_entries(entries).await;
        if let Some(first_unsent) = unsent.first() {
            let mut s = self.lock();
            if s.read_index == end {
                s.read_index = *first_unsent;
            }
        }
        Ok(unsent.len() < read_count)
    }

    /// Sends entries in order to consumers with permits; returns the first indexes of entries
    /// that could not be sent (no consumer had permits), in order.
    async fn send_entries(&self, entries: Vec<Entry>) -> Vec<u64> {
        let mut frames: Vec<(mpsc::Sender<Bytes>, Bytes)> = Vec::new();
        let mut unsent = Vec::new();
        let mut passed: Vec<Range<u64>> = Vec::new();
        for entry in entries {
            let first = entry.header.first_index;
            let count = entry.header.message_count.max(1);
            let body = match entry.header.format {
                PayloadFormat::Pulsar => entry.payload.clone(),
                PayloadFormat::Kafka => match self.cache.pulsar_body(&self.partition, &entry) {
                    Ok(body) => body,
                    Err(e) => {
                        if self
                            .broker
                            .skipped_entry(&self.partition, first)
                            .await
                            .is_none()
                        {
                            self.unreadable(first, &e.to_string());
                        }
                        passed.push(first..first + u64::from(count));
                        continue;
                    }
                },
            };
            let key = if self.kind == SubKind::KeyShared {
                crate::convert::entry_sticky_slot(&body)
            } else {
                0
            };
            let mut s = self.lock();
            if !unsent.is_empty() {
                unsent.push(first);
                continue;
            }
            if (first..first + u64::from(count)).all(|i| s.cursor.is_acked(i)) {
                continue;
            }
            let Some(slot) = self.choose(&mut s, key, first) else {
                unsent.push(first);
                continue;
            };
            let consumer = &mut s.consumers[slot];
            consumer.permits = consumer.permits.saturating_sub(u64::from(count));
            consumer.unacked += u64::from(count);
            let key = (consumer.connection, consumer.consumer_id);
            let consumer_id = consumer.consumer_id;
            let with_bem = consumer.broker_entry_metadata;
            let tx = consumer.tx.clone();
            let redelivery_count = s.redelivery_counts.get(&first).copied().unwrap_or(0);
            let partly_acked = (first..first + u64::from(count)).any(|i| s.cursor.is_acked(i));
            let ack_set = if partly_acked {
                unacked_set(count, |i| s.cursor.is_acked(first + u64::from(i)))
            } else {
                Vec::new()
            };
            s.pending.insert(
                first,
                Pending {
                    consumer: key,
                    count,
                },
            );
            drop(s);
            let command = BaseCommand {
                r#type: Type::Message as i32,
                message: Some(CommandMessage {
                    consumer_id,
                    message_id: message_id(self.id_partition, first, None),
                    redelivery_count: Some(redelivery_count),
                    ack_set,
                    consumer_epoch: None,
                }),
                ..Default::default()
            };
            let bem = with_bem.then(|| BrokerEntryMetadata {
                broker_timestamp: Some(entry.header.publish_time_ms.max(0) as u64),
                index: Some(entry.header.end_index().saturating_sub(1)),
            });
            self.log.record_out(body.len() as u64, u64::from(count));
            frames.push((
                tx,
                frame::encode_with_payload(&command, bem.as_ref(), &body),
            ));
        }
        for (tx, bytes) in frames {
            // A closed connection drops the frame; its consumer's removal redelivers the entry.
            let _ = tx.send(bytes).await;
        }
        if !passed.is_empty() {
            // Acknowledged so the mark-delete position moves past them.
            if let Err(e) = self.ack(passed).await {
                tracing::warn!(subscription = %self.name, partition = %self.partition, error = %e, "cannot acknowledge unreadable entries");
            }
        }
        unsent
    }

    /// Counts an entry this subscription cannot serve and logs it, rate-limited.
    fn unreadable(&self, index: u64, error: &str) {
        self.metrics.record_unreadable_entry();
        let now = tokio::time::Instant::now();
        let mut log = self
            .unreadable_log
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if log
            .0
            .is_some_and(|last| now.saturating_duration_since(last) < UNREADABLE_LOG_INTERVAL)
        {
            log.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut log.1);
        log.0 = Some(now);
        drop(log);
        tracing::warn!(
            subscription = %self.name,
            partition = %self.partition,
            index,
            error,
            suppressed,
            "stored entry cannot be served to pulsar consumers (a conversion failure is acknowledged and passed; a corrupt entry stops the dispatcher until an operator marks it skipped: PUT /admin/v2/persistent/{{tenant}}/{{namespace}}/{{topic}}/skippedEntries/{{index}})"
        );
    }

    /// Whether in-flight entries belong to one consumer (Shared, Key_Shared) rather than to the
    /// subscription's single active consumer (Exclusive, Failover).
    fn per_consumer(&self) -> bool {
        matches!(self.kind, SubKind::Shared | SubKind::KeyShared)
    }

    fn eligible(&self, c: &ConsumerSlot) -> bool {
        c.permits > 0 && c.unacked < self.unacked_max
    }

    /// The consumer to send the next entry (first index `entry`) to, if one has permits.
    fn choose(&self, s: &mut State, key_slot: u32, entry: u64) -> Option<usize> {
        let n = s.consumers.len();
        if n == 0 {
            return None;
        }
        match self.kind {
            SubKind::Exclusive => self.eligible(&s.consumers[0]).then_some(0),
            SubKind::Failover => {
                let active = (self.id_partition.max(0) as usize) % n;
                self.eligible(&s.consumers[active]).then_some(active)
            }
            SubKind::KeyShared => {
                let owner = s.ranges.select(key_slot)?;
                let slot = s
                    .consumers
                    .iter()
                    .position(|c| (c.connection, c.consumer_id) == owner)?;
                let c = &s.consumers[slot];
                // A recently joined consumer waits for the older messages of its keys to be
                // acknowledged by their previous owner.
                let held = c
                    .joined_at
                    .is_some_and(|j| entry >= j && s.cursor.mark_delete_index < j);
                (self.eligible(c) && !held).then_some(slot)
            }
            SubKind::Shared => {
                for step in 0..n {
                    let slot = (s.next_shared + step) % n;
                    if self.eligible(&s.consumers[slot]) {
                        s.next_shared = (slot + 1) % n;
                        return Some(slot);
                    }
                }
                None
            }
        }
    }
}

/// Forgets an in-flight entry, giving its messages back to its consumer's unacked budget.
fn release(s: &mut State, entry: u64) {
    if let Some(p) = s.pending.remove(&entry) {
        if let Some(c) = s
            .consumers
            .iter_mut()
            .find(|c| (c.connection, c.consumer_id) == p.consumer)
        {
            c.unacked = c.unacked.saturating_sub(u64::from(p.count));
        }
    }
}
