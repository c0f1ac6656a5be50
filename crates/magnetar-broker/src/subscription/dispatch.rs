//! The dispatcher of a subscription: reads entries from the cursor's read position (or the
//! redelivery set first) and hands each to one consumer with permits.
//!
//! Selection per [`SubscriptionType`]: Exclusive and Failover send to one active consumer
//! (Failover: sorted by priority then name, the active one is `partition % consumers`); Shared
//! sends each entry to the next consumer with permits (round-robin); Key_Shared sends an entry
//! to the consumer whose hash slice holds its key slot (see [`super::key_shared`]; a batch goes
//! whole to one consumer). Entries a consumer was sent but did not acknowledge go back to the
//! others when it leaves or asks for redelivery.
//!
//! Key_Shared keeps each key in order across changes of consumers, as Pulsar does: a consumer
//! that leaves gives its slice to a neighbour and its unacknowledged entries are redelivered
//! (before anything newer is read); a consumer that joins takes part of a slice from a consumer
//! that may still hold unacknowledged messages of those keys, so it receives only entries read
//! before it joined until everything up to its join point is acknowledged (the `joined_at`
//! rule: Pulsar's "recently joined consumers").
//!
//! Delayed delivery (Shared and Key_Shared, when the codec turns it on): an entry not due yet
//! is held in the subscription's tracker instead of being sent, and goes to the redelivery set
//! once due (see [`super::delayed`]).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use magnetar_storage::Entry;
use tokio::sync::watch;

use super::{DelayedDelivery, EntryCodec, Pending, State, Subscription, SubscriptionType};
use crate::broker::Broker;
use crate::error::{Error, Result};

/// Bytes read per dispatcher step.
const READ_BYTES_MAX: usize = 1024 * 1024;
/// Entries read per dispatcher step.
const READ_ENTRIES_MAX: usize = 64;
/// How long a dispatcher that could send nothing waits before looking again (it is woken
/// earlier by a flow, an ack or a change of consumers).
const IDLE_RETRY: Duration = Duration::from_secs(1);
/// How long a dispatcher waits after a failed read.
const ERROR_RETRY: Duration = Duration::from_millis(200);

/// What the dispatcher does next.
enum Step {
    Redeliver(Vec<u64>),
    Read(u64),
    Wait,
}

/// The task that sends a subscription's entries to its consumers; returned by the first
/// [`Subscription::add_consumer`], run by the front end ([`Dispatcher::run`]) until the last
/// consumer leaves.
pub struct Dispatcher {
    sub: Arc<Subscription>,
    codec: Arc<dyn EntryCodec>,
    unacked_max: u64,
    /// The codec's delayed-delivery settings, read once.
    delayed: Option<DelayedDelivery>,
    stopped: watch::Receiver<()>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("subscription", &self.sub)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    pub(super) fn new(
        sub: Arc<Subscription>,
        codec: Arc<dyn EntryCodec>,
        unacked_max: u64,
        stopped: watch::Receiver<()>,
    ) -> Self {
        let delayed = codec.delayed_delivery().map(|d| DelayedDelivery {
            tick_ms: d.tick_ms.max(1),
            tracked_max: d.tracked_max,
        });
        Self {
            sub,
            codec,
            unacked_max,
            delayed,
            stopped,
        }
    }

    /// Dispatches until the subscription's last consumer leaves (or the caller drops the
    /// future). `broker` answers which entries an operator marked skipped.
    pub async fn run(mut self, broker: Arc<Broker>) {
        let mut end_watch = self.sub.log.subscribe();
        loop {
            if self.is_stopped() {
                break;
            }
            let now_ms = broker.clock().now_ms();
            let result = match self.next_step(now_ms) {
                Step::Wait => {
                    let tick = self.tick();
                    tokio::select! {
                        _ = self.stopped.changed() => break,
                        _ = self.sub.wake.notified() => {}
                        _ = tokio::time::sleep(tick.unwrap_or_default()), if tick.is_some() => {}
                        changed = end_watch.changed() => {
                            if changed.is_err() {
                                // The ledger closed; wait to be stopped.
                                let _ = self.stopped.changed().await;
                                break;
                            }
                        }
                    }
                    continue;
                }
                Step::Redeliver(entries) => self.dispatch_redelivery(&broker, entries).await,
                Step::Read(from) => self.dispatch_from(&broker, from).await,
            };
            match result {
                Ok(true) => {}
                // Nothing could be sent: the consumer the next entry belongs to (the active one,
                // or the owner of its key) has no permits. Wait for a flow, an ack or a change of
                // consumers rather than reading the same entries again.
                Ok(false) => {
                    let wait = self.tick().map_or(IDLE_RETRY, |t| t.min(IDLE_RETRY));
                    tokio::select! {
                        _ = self.stopped.changed() => break,
                        _ = self.sub.wake.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(subscription = %self.sub.name, partition = %self.sub.log.name(), error = %e, "dispatch failed; retrying");
                    tokio::select! {
                        _ = self.stopped.changed() => break,
                        _ = tokio::time::sleep(ERROR_RETRY) => {}
                    }
                }
            }
        }
        // A dispatcher started for new consumers may be waiting on the same wake-up.
        self.sub.wake.notify_one();
    }

    /// Whether the subscription dropped this dispatcher's stop handle.
    fn is_stopped(&self) -> bool {
        self.stopped.has_changed().is_err()
    }

    fn eligible(&self, c: &super::ConsumerSlot) -> bool {
        c.permits > 0 && c.unacked < self.unacked_max
    }

    /// The delayed-delivery settings when they apply to a subscription of `kind` (Shared and
    /// Key_Shared only; Exclusive and Failover ignore the delay, as Pulsar does).
    fn delay_for(&self, kind: Option<SubscriptionType>) -> Option<DelayedDelivery> {
        match kind {
            Some(SubscriptionType::Shared | SubscriptionType::KeyShared) => self.delayed,
            _ => None,
        }
    }

    /// How long to wait before looking at the clock again, while entries are held.
    fn tick(&self) -> Option<Duration> {
        let d = self.delayed?;
        let holding = !self.sub.lock().delayed.is_empty();
        holding.then(|| Duration::from_millis(d.tick_ms))
    }

    fn next_step(&self, now_ms: i64) -> Step {
        let log = &self.sub.log;
        let mut s = self.sub.lock();
        if !s.delayed.is_empty() {
            // Due entries (all of them once the delay no longer applies) are sent before
            // anything newer is read.
            let due = match self.delay_for(s.kind) {
                Some(_) => s.delayed.take_due(now_ms),
                None => s.delayed.take_all(),
            };
            s.redeliver.extend(due);
        }
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
        let start = log.start_index();
        if s.read_index < start {
            s.read_index = start;
        }
        if s.read_index < s.cursor.mark_delete_index {
            s.read_index = s.cursor.mark_delete_index;
        }
        // Up to the last stable offset: records of an open transaction wait for its marker.
        if s.read_index < log.last_stable_index() {
            Step::Read(s.read_index)
        } else {
            Step::Wait
        }
    }

    /// Redelivers entries; `Ok(false)` when none could be sent.
    async fn dispatch_redelivery(&self, broker: &Arc<Broker>, entries: Vec<u64>) -> Result<bool> {
        let log = &self.sub.log;
        let mut read = Vec::with_capacity(entries.len());
        for e in &entries {
            if *e < log.start_index() {
                continue;
            }
            match log.read(*e, READ_BYTES_MAX, 1).await {
                Ok(mut got) if !got.is_empty() => read.push(got.swap_remove(0)),
                Ok(_) => {}
                Err(Error::IndexOutOfRange { .. }) => {}
                Err(err) => {
                    self.sub.lock().redeliver.extend(entries.iter().copied());
                    return Err(err);
                }
            }
        }
        let dropped = read.len() < entries.len();
        let read_count = read.len();
        let unsent = self.send_entries(broker, read).await;
        let progress = dropped || unsent.len() < read_count;
        if !unsent.is_empty() {
            self.sub.lock().redeliver.extend(unsent);
        }
        Ok(progress)
    }

    /// Sends entries from `from`; `Ok(false)` when none could be sent.
    async fn dispatch_from(&self, broker: &Arc<Broker>, from: u64) -> Result<bool> {
        let log = &self.sub.log;
        let entries = match log.read(from, READ_BYTES_MAX, READ_ENTRIES_MAX).await {
            Ok(entries) => entries,
            Err(Error::IndexOutOfRange { start, .. }) => {
                let mut s = self.sub.lock();
                if s.read_index < start {
                    s.read_index = start;
                }
                return Ok(true);
            }
            Err(e @ Error::CorruptData(_)) => {
                let Some(range) = broker.skipped_entry(log.name(), from).await else {
                    self.codec.unreadable(from, &e.to_string());
                    return Err(e);
                };
                self.sub.ack(vec![range.clone()]).await?;
                let mut s = self.sub.lock();
                if s.read_index == from {
                    s.read_index = range.end;
                }
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        // Nothing at or past the last stable offset (an open transaction's records wait).
        let stable = log.last_stable_index();
        let mut entries: Vec<Entry> = entries
            .into_iter()
            .take_while(|e| e.header.first_index < stable)
            .collect();
        let Some(last) = entries.last() else {
            return Ok(false);
        };
        let end = last.header.end_index();
        // Transaction markers and the records of aborted transactions are never delivered.
        let aborted = log.aborted_transactions(from, end);
        entries.retain(|e| !hidden_by_transactions(e, &aborted));
        // A compacted log has gaps between entries (indexes whose records compaction removed),
        // and the hidden transactional entries are gaps too: nothing is ever delivered there, so
        // they count as acknowledged, or the mark-delete position would stop at the first gap.
        let mut gaps = Vec::new();
        let mut expected = from;
        for e in &entries {
            if e.header.first_index > expected {
                gaps.push(expected..e.header.first_index);
            }
            expected = expected.max(e.header.end_index());
        }
        if expected < end {
            gaps.push(expected..end);
        }
        if !gaps.is_empty() {
            self.sub.ack(gaps).await?;
        }
        {
            // Another step (a reset) may have moved the read index meanwhile.
            let mut s = self.sub.lock();
            if s.read_index != from {
                return Ok(true);
            }
            s.read_index = end;
        }
        let read_count = entries.len();
        let unsent = self.send_entries(broker, entries).await;
        if let Some(first_unsent) = unsent.first() {
            let mut s = self.sub.lock();
            if s.read_index == end {
                s.read_index = *first_unsent;
            }
        }
        Ok(unsent.len() < read_count)
    }

    /// Sends entries in order to consumers with permits; returns the first indexes of entries
    /// that could not be sent (no consumer had permits), in order.
    async fn send_entries(&self, broker: &Arc<Broker>, entries: Vec<Entry>) -> Vec<u64> {
        let sub = &self.sub;
        let now_ms = broker.clock().now_ms();
        let mut deliveries = Vec::new();
        let mut unsent = Vec::new();
        let mut passed: Vec<Range<u64>> = Vec::new();
        for entry in entries {
            let first = entry.header.first_index;
            let count = entry.header.message_count.max(1);
            let kind = sub.kind();
            let key_shared = kind == Some(SubscriptionType::KeyShared);
            let prepared = match self.codec.prepare(&entry, key_shared) {
                Ok(prepared) => prepared,
                Err(e) => {
                    if broker.skipped_entry(sub.log.name(), first).await.is_none() {
                        self.codec.unreadable(first, &e);
                    }
                    passed.push(first..first + u64::from(count));
                    continue;
                }
            };
            // Messages log compaction removed from a batch are acknowledged here (so the
            // backlog drains past them) and shown acknowledged in the delivery.
            let hidden = if first < sub.log.compacted_below() {
                self.codec.hidden_positions(&entry, &prepared)
            } else {
                Vec::new()
            };
            if hidden.len() >= count as usize {
                passed.push(first..first + u64::from(count));
                continue;
            }
            passed.extend(
                hidden
                    .iter()
                    .map(|i| first + u64::from(*i)..first + u64::from(*i) + 1),
            );
            let mut s = sub.lock();
            if !unsent.is_empty() {
                unsent.push(first);
                continue;
            }
            if (first..first + u64::from(count)).all(|i| s.cursor.is_acked(i)) {
                continue;
            }
            if let Some(delay) = self.delay_for(kind) {
                let deliver_at = self.codec.deliver_at_ms(&entry, &prepared);
                if let Some(at) = deliver_at.filter(|at| *at > now_ms) {
                    // Held until due; when the tracker is full, reading stops here.
                    if !s.delayed.hold(first, at, delay.tracked_max) {
                        unsent.push(first);
                    }
                    continue;
                }
            }
            if key_shared
                && !s.consumers.is_empty()
                && s.ranges.may_leave_slots_uncovered()
                && s.ranges.select(prepared.key_slot).is_none()
            {
                // STICKY: no consumer declared this key's slot. The entry is parked until the
                // consumers change while the entries behind it go on; when too many are parked,
                // reading stops here.
                if s.uncovered.len() >= super::UNCOVERED_MAX {
                    unsent.push(first);
                } else {
                    s.uncovered.insert(first);
                }
                continue;
            }
            let Some(slot) = self.choose(&mut s, prepared.key_slot, first) else {
                unsent.push(first);
                continue;
            };
            let consumer = &mut s.consumers[slot];
            consumer.permits = consumer.permits.saturating_sub(u64::from(count));
            consumer.unacked += u64::from(count);
            let key = consumer.key;
            let sink = consumer.sink.clone();
            let redelivery_count = s.redelivery_counts.get(&first).copied().unwrap_or(0);
            let acked_positions: Vec<u32> = (0..count)
                .filter(|i| {
                    s.cursor.is_acked(first + u64::from(*i)) || hidden.binary_search(i).is_ok()
                })
                .collect();
            s.pending.insert(
                first,
                Pending {
                    consumer: key,
                    count,
                },
            );
            drop(s);
            sub.log
                .record_out(prepared.body.len() as u64, u64::from(count));
            deliveries.push(sink.deliver(super::Delivery {
                consumer: key,
                header: entry.header,
                body: prepared.body,
                redelivery_count,
                acked_positions,
            }));
        }
        for delivery in deliveries {
            delivery.await;
        }
        if !passed.is_empty() {
            // Acknowledged so the mark-delete position moves past them.
            if let Err(e) = sub.ack(passed).await {
                tracing::warn!(subscription = %sub.name, partition = %sub.log.name(), error = %e, "cannot acknowledge unreadable entries");
            }
        }
        unsent
    }

    /// The consumer to send the next entry (first index `entry`) to, if one has permits.
    fn choose(&self, s: &mut State, key_slot: u32, entry: u64) -> Option<usize> {
        let n = s.consumers.len();
        if n == 0 {
            return None;
        }
        match s.kind? {
            SubscriptionType::Exclusive => self.eligible(&s.consumers[0]).then_some(0),
            SubscriptionType::Failover => {
                let active = self.sub.failover_active(n);
                self.eligible(&s.consumers[active]).then_some(active)
            }
            SubscriptionType::KeyShared => {
                let owner = s.ranges.select(key_slot)?;
                let slot = s.consumers.iter().position(|c| c.key == owner)?;
                let c = &s.consumers[slot];
                // A recently joined consumer waits for the older messages of its keys to be
                // acknowledged by their previous owner.
                let held = c
                    .joined_at
                    .is_some_and(|j| entry >= j && s.cursor.mark_delete_index < j);
                (self.eligible(c) && !held).then_some(slot)
            }
            SubscriptionType::Shared => {
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

/// Whether a read must not deliver `entry`: a transaction marker, or a record batch of an
/// aborted transaction (`aborted` covers the read).
fn hidden_by_transactions(entry: &Entry, aborted: &[crate::AbortedTxn]) -> bool {
    match entry.header.producer.map(|p| p.txn) {
        None | Some(magnetar_storage::TxnMark::None) => false,
        Some(magnetar_storage::TxnMark::Commit | magnetar_storage::TxnMark::Abort) => true,
        Some(magnetar_storage::TxnMark::Data) => aborted.iter().any(|a| a.covers(&entry.header)),
    }
}
