//! Subscriptions: a named cursor on one partition with its consumers, its dispatch rules and
//! its redelivery, owned here in the core so that every caller (a front end's consumers, the
//! admin API, message TTL) goes through one owner. A front end turns what this module hands out
//! into its own frames; nothing here is a wire type.
//!
//! - A **durable** subscription is a storage cursor; its live state is found through the
//!   partition's registry ([`crate::PartitionLog::open_subscription`],
//!   [`crate::PartitionLog::subscription`]), so the admin API and the consumers of a front end
//!   share one object while either uses it. A **non-durable** one (a reader) keeps its cursor in
//!   memory and is private to its consumer ([`crate::PartitionLog::open_reader`]).
//! - Consumers join with [`Subscription::add_consumer`]; the first one returns a [`Dispatcher`]
//!   that the front end runs on its own task set. The dispatcher reads entries and hands each,
//!   prepared by the front end's [`EntryCodec`], to one consumer's [`ConsumerSink`] while the
//!   consumer has permits ([`Subscription::add_permits`]) and fewer unacknowledged messages than
//!   the limit. The selection rules per [`SubscriptionType`] are in [`dispatch`].
//! - Acknowledgements ([`Subscription::ack`], [`Subscription::ack_cumulative`]) are written to
//!   the storage cursor first (durable), then applied in memory; redelivery
//!   ([`Subscription::redeliver`]) gives in-flight entries back to the dispatcher; the cursor is
//!   moved by [`Subscription::reset`], [`Subscription::reset_to_time`], [`Subscription::skip`]
//!   and [`Subscription::clear_backlog`], whether or not consumers are attached (a reset
//!   forgets what is in flight and the dispatcher continues from the new position).
//! - [`position`] is the one rule between a client's (ledger id, entry id, batch index) and a
//!   message index.
//!
//! An entry that cannot be served (the codec refuses it, or an operator marked it skipped, see
//! [`crate::skipped`]) is acknowledged and passed, so it never holds back the mark-delete
//! position; an entry corrupt on disk stops the dispatcher at it (retried) until an operator
//! marks it skipped. Both are reported to the codec ([`EntryCodec::unreadable`]).
//!
//! Delayed delivery (an entry held back until its time on Shared and Key_Shared subscriptions,
//! when the codec asks for it) is in [`delayed`].

pub mod delayed;
pub mod dispatch;
pub mod key_shared;
pub mod position;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use magnetar_storage::{CursorStart, CursorState, Entry};
use tokio::sync::{watch, Notify};

use crate::error::Result;
use crate::partition::PartitionLog;

pub use delayed::DelayedDelivery;
use delayed::DelayedTracker;
pub use dispatch::Dispatcher;
use key_shared::{KeySelector, KeySharedMode};

/// How a subscription shares its entries among its consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionType {
    /// One consumer; another is refused.
    Exclusive,
    /// Round-robin over the consumers with permits.
    Shared,
    /// One active consumer (sorted by priority then name; the active one is
    /// `partition % consumers`), the others on standby.
    Failover,
    /// By the entry's key: each consumer owns a slice of the key hash range.
    KeyShared,
}

/// A consumer of a subscription: the front end's connection id and its consumer id on it.
pub type ConsumerKey = (u64, u64);

/// Most Key_Shared STICKY entries parked for want of a consumer declaring their key's slot.
pub const UNCOVERED_MAX: usize = 10_000;

/// A boxed future a sink returns for one delivery.
pub type DeliveryFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One entry handed to one consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub consumer: ConsumerKey,
    /// The entry's header (first index, message count, publish time, ...).
    pub header: magnetar_storage::EntryHeader,
    /// The entry's bytes as the codec prepared them.
    pub body: Bytes,
    /// How many times this entry was given back for redelivery before.
    pub redelivery_count: u32,
    /// Positions inside the entry already acknowledged (empty when none is).
    pub acked_positions: Vec<u32>,
}

/// A front end's side of one consumer.
pub trait ConsumerSink: Send + Sync {
    /// Sends one entry to the consumer; the future completes once it is queued (a closed
    /// connection drops it: its consumer's removal redelivers the entry).
    fn deliver(&self, delivery: Delivery) -> DeliveryFuture;
    /// Failover: whether this consumer is now the active one. Advisory, must not block.
    fn active_changed(&self, active: bool);
    /// The subscription detached this consumer ([`Subscription::close`]): tell the client.
    fn closed(&self) -> DeliveryFuture;
}

/// An entry as the front end serves it.
#[derive(Debug, Clone)]
pub struct PreparedEntry {
    pub body: Bytes,
    /// The entry's slot in `0..key_shared::HASH_RANGE_SIZE` (asked for Key_Shared only).
    pub key_slot: u32,
}

/// How a front end serves stored entries to its consumers.
pub trait EntryCodec: Send + Sync {
    /// The entry's bytes for the consumers (and its key slot when `key_slot` is set), or why it
    /// cannot be served.
    fn prepare(&self, entry: &Entry, key_slot: bool) -> std::result::Result<PreparedEntry, String>;
    /// An entry at `index` cannot be served (counted and logged by the front end).
    fn unreadable(&self, index: u64, error: &str);
    /// Delayed delivery for this subscription's Shared and Key_Shared consumers (see
    /// [`delayed`]); `None` (the default) turns it off.
    fn delayed_delivery(&self) -> Option<DelayedDelivery> {
        None
    }
    /// When the messages of `entry` (served as `prepared`) are due, in ms since the epoch;
    /// `None` when they are due at once. Asked only while [`Self::delayed_delivery`] is on and
    /// the subscription is Shared or Key_Shared.
    fn deliver_at_ms(&self, _entry: &Entry, _prepared: &PreparedEntry) -> Option<i64> {
        None
    }
    /// The positions in `entry` that are not messages any more (log compaction removed them
    /// from their batch): acknowledged by the dispatcher and shown acknowledged to consumers.
    /// Asked only for entries in the compacted part of the log.
    fn hidden_positions(&self, _entry: &Entry, _prepared: &PreparedEntry) -> Vec<u32> {
        Vec::new()
    }
}

/// A consumer joining a subscription.
pub struct Consumer {
    pub key: ConsumerKey,
    pub name: String,
    /// Failover order: lower first.
    pub priority: i32,
    /// Key_Shared only: how it takes its part of the hash range.
    pub key_shared: KeySharedMode,
    pub sink: Arc<dyn ConsumerSink>,
}

pub(crate) struct ConsumerSlot {
    key: ConsumerKey,
    name: String,
    priority: i32,
    permits: u64,
    /// Messages sent to this consumer and not acknowledged; dispatch to it stops at the
    /// subscription's `unacked_max` (Pulsar's `maxUnackedMessagesPerConsumer`).
    unacked: u64,
    sink: Arc<dyn ConsumerSink>,
    /// Key_Shared: the read index when this consumer joined, while entries before it are not all
    /// acknowledged; entries at or after it are held back from this consumer until then.
    joined_at: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct Pending {
    consumer: ConsumerKey,
    count: u32,
}

pub(crate) struct State {
    /// Set by the first consumer; cleared when the last one leaves.
    kind: Option<SubscriptionType>,
    consumers: Vec<ConsumerSlot>,
    cursor: CursorState,
    read_index: u64,
    redeliver: BTreeSet<u64>,
    /// Key_Shared STICKY: entries whose key slot no consumer declared, parked until the
    /// consumers change (at most [`UNCOVERED_MAX`]; reading stops while it is full).
    uncovered: BTreeSet<u64>,
    pending: BTreeMap<u64, Pending>,
    redelivery_counts: HashMap<u64, u32>,
    next_shared: usize,
    /// Key_Shared hash slices.
    ranges: KeySelector<ConsumerKey>,
    /// Entries read but held back until their delivery time.
    delayed: DelayedTracker,
    /// Held while a dispatcher runs; dropping it stops the dispatcher.
    dispatcher: Option<watch::Sender<()>>,
}

/// A subscription on one partition (see the module docs).
pub struct Subscription {
    name: String,
    durable: bool,
    log: Arc<PartitionLog>,
    state: Mutex<State>,
    wake: Notify,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .field("partition", self.log.name())
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    fn new(name: String, durable: bool, log: Arc<PartitionLog>, cursor: CursorState) -> Self {
        let read_index = cursor.mark_delete_index;
        Self {
            name,
            durable,
            log,
            state: Mutex::new(State {
                kind: None,
                consumers: Vec::new(),
                cursor,
                read_index,
                redeliver: BTreeSet::new(),
                uncovered: BTreeSet::new(),
                pending: BTreeMap::new(),
                redelivery_counts: HashMap::new(),
                next_shared: 0,
                ranges: KeySelector::default(),
                delayed: DelayedTracker::default(),
                dispatcher: None,
            }),
            wake: Notify::new(),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere; the state is still usable for dispatch.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_durable(&self) -> bool {
        self.durable
    }

    pub fn log(&self) -> &Arc<PartitionLog> {
        &self.log
    }

    /// The type the consumers chose, while any is attached.
    pub fn kind(&self) -> Option<SubscriptionType> {
        self.lock().kind
    }

    /// Adds a consumer; `Err` with a reason when the subscription's type forbids it. The first
    /// consumer (when no dispatcher runs) gets the [`Dispatcher`] to run, with `codec` and at
    /// most `unacked_max` unacknowledged messages per consumer.
    pub fn add_consumer(
        self: &Arc<Self>,
        consumer: Consumer,
        kind: SubscriptionType,
        codec: Arc<dyn EntryCodec>,
        unacked_max: u64,
    ) -> std::result::Result<Option<Dispatcher>, String> {
        let mut s = self.lock();
        match s.kind {
            Some(current) if current != kind => {
                return Err(format!(
                    "subscription '{}' is {current:?}; a {kind:?} consumer cannot join",
                    self.name
                ));
            }
            Some(SubscriptionType::Exclusive) if !s.consumers.is_empty() => {
                return Err(format!(
                    "exclusive subscription '{}' already has a consumer",
                    self.name
                ));
            }
            _ => {}
        }
        if s.consumers.iter().any(|c| c.key == consumer.key) {
            return Err(format!(
                "consumer {:?} is already attached to subscription '{}'",
                consumer.key, self.name
            ));
        }
        let mut joined_at = None;
        if kind == SubscriptionType::KeyShared {
            s.ranges.add(consumer.key, &consumer.key_shared)?;
            // Parked entries may belong to the newcomer's ranges now.
            let parked = std::mem::take(&mut s.uncovered);
            s.redeliver.extend(parked);
            joined_at = (s.cursor.mark_delete_index < s.read_index).then_some(s.read_index);
        }
        s.kind = Some(kind);
        s.consumers.push(ConsumerSlot {
            key: consumer.key,
            name: consumer.name,
            priority: consumer.priority,
            permits: 0,
            unacked: 0,
            sink: consumer.sink,
            joined_at,
        });
        if kind == SubscriptionType::Failover {
            s.consumers
                .sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
            // The active consumer may have changed: give everything in flight back.
            let all: Vec<u64> = s.pending.keys().copied().collect();
            for e in all {
                release(&mut s, e);
                s.redeliver.insert(e);
            }
        }
        self.notify_active(&s);
        let dispatcher = if s.dispatcher.is_none() {
            let (stop, stopped) = watch::channel(());
            s.dispatcher = Some(stop);
            Some(Dispatcher::new(self.clone(), codec, unacked_max, stopped))
        } else {
            None
        };
        drop(s);
        self.wake.notify_one();
        Ok(dispatcher)
    }

    /// Removes a consumer; returns how many are left. Its unacknowledged entries are
    /// redelivered. The last one leaving stops the dispatcher.
    pub fn remove_consumer(&self, key: ConsumerKey) -> usize {
        let mut s = self.lock();
        let before = s.consumers.len();
        s.consumers.retain(|c| c.key != key);
        if s.consumers.len() == before {
            return before;
        }
        s.ranges.remove(key);
        let per_consumer = per_consumer(s.kind);
        let mine: Vec<u64> = s
            .pending
            .iter()
            .filter(|(_, p)| p.consumer == key || !per_consumer)
            .map(|(e, _)| *e)
            .collect();
        for e in mine {
            release(&mut s, e);
            s.redeliver.insert(e);
            *s.redelivery_counts.entry(e).or_default() += 1;
        }
        let left = s.consumers.len();
        self.notify_active(&s);
        if left == 0 {
            s.kind = None;
            s.dispatcher = None;
        }
        drop(s);
        self.wake.notify_one();
        left
    }

    /// Detaches every consumer, tells each ([`ConsumerSink::closed`]) and stops the dispatcher
    /// (after a reset a client asked for, as Pulsar disconnects the consumers, or when the
    /// partition moves to another owner); returns the consumers detached so the front end can
    /// forget them. Their in-flight entries are redelivered to whoever attaches next.
    pub async fn close(&self) -> Vec<ConsumerKey> {
        let consumers: Vec<(ConsumerKey, Arc<dyn ConsumerSink>)> = self
            .lock()
            .consumers
            .iter()
            .map(|c| (c.key, c.sink.clone()))
            .collect();
        for (key, sink) in &consumers {
            self.remove_consumer(*key);
            sink.closed().await;
        }
        consumers.into_iter().map(|(key, _)| key).collect()
    }

    /// Tells every consumer of a Failover subscription whether it is the active one.
    fn notify_active(&self, s: &State) {
        if s.kind != Some(SubscriptionType::Failover) || s.consumers.is_empty() {
            return;
        }
        let active = self.failover_active(s.consumers.len());
        for (i, c) in s.consumers.iter().enumerate() {
            c.sink.active_changed(i == active);
        }
    }

    /// The position of the active Failover consumer among `n`.
    fn failover_active(&self, n: usize) -> usize {
        self.log.name().partition as usize % n.max(1)
    }

    pub fn consumer_count(&self) -> usize {
        self.lock().consumers.len()
    }

    /// Whether `key` is attached (a consumer the broker closed, when its partition closed, is
    /// not any more).
    pub fn has_consumer(&self, key: ConsumerKey) -> bool {
        self.lock().consumers.iter().any(|c| c.key == key)
    }

    /// The consumers attached (in dispatch order).
    pub fn consumers(&self) -> Vec<ConsumerKey> {
        self.lock().consumers.iter().map(|c| c.key).collect()
    }

    /// Gives a consumer `permits` more messages.
    pub fn add_permits(&self, key: ConsumerKey, permits: u32) {
        let mut s = self.lock();
        if let Some(c) = s.consumers.iter_mut().find(|c| c.key == key) {
            c.permits = c.permits.saturating_add(u64::from(permits));
        }
        drop(s);
        self.wake.notify_one();
    }

    pub fn cursor(&self) -> CursorState {
        self.lock().cursor.clone()
    }

    /// Entries held back for delayed delivery (see [`delayed`]).
    pub fn delayed_entries(&self) -> usize {
        self.lock().delayed.len()
    }

    /// Unacknowledged messages between the cursor and the partition's end.
    pub fn backlog(&self) -> u64 {
        self.lock()
            .cursor
            .backlog(self.log.start_index(), self.log.end_index())
    }

    /// The message count of entry `first_index` (its first message index): from the in-flight
    /// table, else from its header; `None` when no entry starts there.
    pub async fn entry_message_count(&self, first_index: u64) -> Option<u32> {
        if let Some(p) = self.lock().pending.get(&first_index) {
            return Some(p.count);
        }
        let entries = self.log.read(first_index, 1, 1).await.ok()?;
        let e = entries.first()?;
        (e.header.first_index == first_index).then_some(e.header.message_count.max(1))
    }

    /// Acknowledges message index ranges (those beyond the end are ignored); written to the
    /// storage cursor first for a durable subscription.
    pub async fn ack(&self, ranges: Vec<Range<u64>>) -> Result<()> {
        let end = self.log.end_index();
        let ranges: Vec<Range<u64>> = ranges
            .into_iter()
            .filter(|r| r.start < r.end && r.end <= end)
            .collect();
        if ranges.is_empty() {
            return Ok(());
        }
        if self.durable {
            self.log.ledger().ack(&self.name, &ranges).await?;
        }
        let mut s = self.lock();
        for r in ranges {
            s.cursor.ack(r);
        }
        self.forget_acked(&mut s);
        Ok(())
    }

    /// Acknowledges everything up to and including `index` (ignored at or beyond the end).
    pub async fn ack_cumulative(&self, index: u64) -> Result<()> {
        if index >= self.log.end_index() {
            return Ok(());
        }
        if self.durable {
            self.log.ledger().ack_cumulative(&self.name, index).await?;
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
        s.uncovered.retain(|e| *e >= mark);
        s.redelivery_counts.retain(|e, _| *e >= mark);
        s.delayed.forget_before(mark);
    }

    /// Sends the given entries (by first index) again, or everything in flight to `consumer`
    /// when `entries` is empty. For Exclusive and Failover, everything in flight.
    pub fn redeliver(&self, consumer: ConsumerKey, entries: &[u64]) {
        let mut s = self.lock();
        let per_consumer = per_consumer(s.kind);
        let chosen: Vec<u64> = if entries.is_empty() || !per_consumer {
            s.pending
                .iter()
                .filter(|(_, p)| p.consumer == consumer || !per_consumer)
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

    /// Moves the subscription to `index` (clamped into the partition): acknowledgements above
    /// it are forgotten, nothing in flight is redelivered, and the dispatcher continues from
    /// there. Returns the index used.
    pub async fn reset(&self, index: u64) -> Result<u64> {
        let index = index.clamp(self.log.start_index(), self.log.end_index());
        if self.durable {
            self.log.ledger().reset_cursor(&self.name, index).await?;
        }
        let mut s = self.lock();
        s.cursor.reset(index);
        s.read_index = index;
        s.pending.clear();
        for c in &mut s.consumers {
            c.unacked = 0;
        }
        s.redeliver.clear();
        s.uncovered.clear();
        s.redelivery_counts.clear();
        s.delayed.clear();
        drop(s);
        self.wake.notify_one();
        Ok(index)
    }

    /// Resets to the first entry whose newest timestamp is at or after `timestamp_ms` (the end
    /// when there is none). Returns the index used.
    pub async fn reset_to_time(&self, timestamp_ms: i64) -> Result<u64> {
        let index = self.log.index_at_time(timestamp_ms).await?;
        self.reset(index).await
    }

    /// Resets to where `start` stands in the partition now. Returns the index used.
    pub async fn reset_to(&self, start: CursorStart) -> Result<u64> {
        self.reset(self.log.start_position(start)).await
    }

    /// Acknowledges the first `count` unacknowledged messages (fewer when the backlog is
    /// smaller).
    pub async fn skip(&self, count: u64) -> Result<()> {
        let ranges = {
            let s = self.lock();
            unacked_ranges(
                &s.cursor,
                self.log.start_index(),
                self.log.end_index(),
                count,
            )
        };
        self.ack(ranges).await
    }

    /// Moves the cursor to the end: nothing is left to consume.
    pub async fn clear_backlog(&self) -> Result<()> {
        self.reset(self.log.end_index()).await.map(|_| ())
    }
}

/// The first `count` unacknowledged message indexes of `cursor` in `[start, end)`, as ranges.
fn unacked_ranges(cursor: &CursorState, start: u64, end: u64, count: u64) -> Vec<Range<u64>> {
    let mut ranges = Vec::new();
    let mut left = count;
    let mut at = cursor.mark_delete_index.max(start);
    let mut acked = cursor
        .acked
        .ranges()
        .map(|r| (r.start, r.end))
        .collect::<Vec<_>>()
        .into_iter()
        .chain(std::iter::once((end, end)));
    while left > 0 && at < end {
        let Some((acked_start, acked_end)) = acked.next() else {
            break;
        };
        if acked_end <= at {
            continue;
        }
        let gap_end = acked_start.clamp(at, end);
        let take = left.min(gap_end - at);
        if take > 0 {
            ranges.push(at..at + take);
            left -= take;
        }
        at = acked_end.max(at);
    }
    ranges
}

/// Whether in-flight entries belong to one consumer (Shared, Key_Shared) rather than to the
/// subscription's single active consumer (Exclusive, Failover).
fn per_consumer(kind: Option<SubscriptionType>) -> bool {
    matches!(
        kind,
        Some(SubscriptionType::Shared | SubscriptionType::KeyShared)
    )
}

/// Forgets an in-flight entry, giving its messages back to its consumer's unacked budget.
fn release(s: &mut State, entry: u64) {
    if let Some(p) = s.pending.remove(&entry) {
        if let Some(c) = s.consumers.iter_mut().find(|c| c.key == p.consumer) {
            c.unacked = c.unacked.saturating_sub(u64::from(p.count));
        }
    }
}

/// The live subscriptions of one partition: durable ones by name and readers, held weakly (a
/// subscription lives while a consumer or a caller holds it), so the admin API and a front end
/// find the same object.
#[derive(Default)]
pub(crate) struct Registry {
    durable: HashMap<String, Weak<Subscription>>,
    readers: Vec<Weak<Subscription>>,
}

impl Registry {
    /// Every live subscription, durable and readers.
    pub(crate) fn all_live(&self) -> Vec<Arc<Subscription>> {
        self.durable
            .values()
            .chain(self.readers.iter())
            .filter_map(Weak::upgrade)
            .collect()
    }

    fn live(&self, name: &str) -> Option<Arc<Subscription>> {
        self.durable.get(name).and_then(Weak::upgrade)
    }

    fn consumers_total(&self) -> usize {
        self.durable
            .values()
            .chain(self.readers.iter())
            .filter_map(Weak::upgrade)
            .map(|s| s.consumer_count())
            .sum()
    }

    fn prune(&mut self) {
        self.durable.retain(|_, s| s.strong_count() > 0);
        self.readers.retain(|s| s.strong_count() > 0);
    }
}

impl PartitionLog {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.subscriptions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The durable subscription `name`: the live one, else one over its storage cursor, which is
    /// created at `start` when it does not exist.
    pub async fn open_subscription(
        self: &Arc<Self>,
        name: &str,
        start: CursorStart,
    ) -> Result<Arc<Subscription>> {
        if let Some(live) = self.registry().live(name) {
            return Ok(live);
        }
        let cursor = self.ledger().open_cursor(name, start).await?;
        Ok(self.register(name, cursor))
    }

    /// The durable subscription `name` if its cursor exists (the live object when there is one).
    pub fn subscription(self: &Arc<Self>, name: &str) -> Option<Arc<Subscription>> {
        if let Some(live) = self.registry().live(name) {
            return Some(live);
        }
        let cursor = self.ledger().cursor(name)?;
        Some(self.register(name, cursor))
    }

    fn register(self: &Arc<Self>, name: &str, cursor: CursorState) -> Arc<Subscription> {
        let mut registry = self.registry();
        // Another caller may have opened it meanwhile: that one is the owner.
        if let Some(live) = registry.live(name) {
            return live;
        }
        registry.prune();
        let sub = Arc::new(Subscription::new(
            name.to_string(),
            true,
            self.clone(),
            cursor,
        ));
        registry
            .durable
            .insert(name.to_string(), Arc::downgrade(&sub));
        sub
    }

    /// A non-durable subscription (a reader) at `index` (clamped into the partition), private
    /// to its consumer.
    pub fn open_reader(self: &Arc<Self>, name: &str, index: u64) -> Arc<Subscription> {
        let index = index.clamp(self.start_index(), self.end_index());
        let sub = Arc::new(Subscription::new(
            name.to_string(),
            false,
            self.clone(),
            CursorState::new(index),
        ));
        let mut registry = self.registry();
        registry.prune();
        registry.readers.push(Arc::downgrade(&sub));
        sub
    }

    /// Creates the durable subscription `name` at `start`; `false` when it already exists.
    pub async fn create_subscription(&self, name: &str, start: CursorStart) -> Result<bool> {
        if self.ledger().cursor(name).is_some() {
            return Ok(false);
        }
        self.ledger().open_cursor(name, start).await?;
        Ok(true)
    }

    /// Deletes the durable subscription `name` (its cursor); `false` when it did not exist. A
    /// live subscription's consumers keep reading until they leave, their acknowledgements then
    /// fail (the caller checks for consumers first when that matters).
    pub async fn delete_subscription(&self, name: &str) -> Result<bool> {
        let deleted = self.ledger().delete_cursor(name).await?;
        self.registry().durable.remove(name);
        Ok(deleted)
    }

    /// The names of the durable subscriptions, in order.
    pub fn subscription_names(&self) -> Vec<String> {
        self.ledger()
            .cursors()
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// The durable subscriptions with their cursors, in name order (for stats).
    pub fn subscription_cursors(&self) -> Vec<(String, CursorState)> {
        self.ledger().cursors()
    }

    /// Whether the durable subscription `name` exists.
    pub fn has_subscription(&self, name: &str) -> bool {
        self.ledger().cursor(name).is_some()
    }

    /// Consumers attached to every subscription of this partition, readers included.
    pub fn consumers_total(&self) -> usize {
        self.registry().consumers_total()
    }

    /// The consumers attached to the durable subscription `name` (0 when it is not live).
    pub fn consumers_of(&self, name: &str) -> usize {
        self.registry().live(name).map_or(0, |s| s.consumer_count())
    }

    /// The entries the durable subscription `name` holds back for delayed delivery (0 when it
    /// is not live).
    pub fn delayed_entries_of(&self, name: &str) -> usize {
        self.registry()
            .live(name)
            .map_or(0, |s| s.delayed_entries())
    }
}
