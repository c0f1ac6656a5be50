//! Delayed delivery (Pulsar's `deliver_at_time`, `delayedDeliveryEnabled`): on Shared and
//! Key_Shared subscriptions an entry whose messages are not due yet is held back in memory and
//! sent once its time has come; Exclusive and Failover ignore the delay, as Pulsar does. The
//! delay is per entry (a batch is delayed as a whole, by its metadata).
//!
//! The dispatcher reads past a held entry and keeps `(deliver_at, entry)` in a
//! [`DelayedTracker`]; when an entry is due (the broker's [`magnetar_storage::Clock`] at or past
//! its time: never early) it goes to the redelivery set, which the dispatcher serves first, in
//! index order. A held entry is not acknowledged, so the mark-delete position stays before it;
//! the messages after it may be acknowledged individually. The tracker is bounded
//! ([`DelayedDelivery::tracked_max`] entries per subscription): when it is full the dispatcher
//! stops reading (back-pressure, nothing is lost) until held entries fall due. While it holds
//! entries the dispatcher looks at the clock every [`DelayedDelivery::tick_ms`] (Pulsar's
//! `delayedDeliveryTickTimeMillis`), so a message is sent at most one tick after its time.
//! The tracker is memory only: after a restart the held entries are read again from the
//! cursor's mark-delete position and held again.

use std::collections::{BTreeSet, HashMap};

/// A front end's delayed-delivery settings ([`super::EntryCodec::delayed_delivery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayedDelivery {
    /// How often a dispatcher holding entries looks at the clock, in ms (at least 1).
    pub tick_ms: u64,
    /// Entries held per subscription; reading stops while this many are held.
    pub tracked_max: usize,
}

/// The held entries of one subscription: by due time, then by index.
#[derive(Debug, Default)]
pub(crate) struct DelayedTracker {
    by_time: BTreeSet<(i64, u64)>,
    by_entry: HashMap<u64, i64>,
}

impl DelayedTracker {
    pub(crate) fn len(&self) -> usize {
        self.by_entry.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_entry.is_empty()
    }

    /// Holds `entry` until `deliver_at_ms`; `false` (not held) when `tracked_max` entries are
    /// already held. An entry held already keeps its place.
    pub(crate) fn hold(&mut self, entry: u64, deliver_at_ms: i64, tracked_max: usize) -> bool {
        if self.by_entry.contains_key(&entry) {
            return true;
        }
        if self.by_entry.len() >= tracked_max {
            return false;
        }
        self.by_entry.insert(entry, deliver_at_ms);
        self.by_time.insert((deliver_at_ms, entry));
        true
    }

    /// Removes and returns the entries due at `now_ms`, in index order.
    pub(crate) fn take_due(&mut self, now_ms: i64) -> Vec<u64> {
        let mut due = Vec::new();
        while let Some(&(at, entry)) = self.by_time.first() {
            if at > now_ms {
                break;
            }
            self.by_time.pop_first();
            self.by_entry.remove(&entry);
            due.push(entry);
        }
        due.sort_unstable();
        due
    }

    /// Removes and returns every held entry, in index order.
    pub(crate) fn take_all(&mut self) -> Vec<u64> {
        self.take_due(i64::MAX)
    }

    /// Forgets held entries before `index` (acknowledged: the mark-delete position passed them).
    pub(crate) fn forget_before(&mut self, index: u64) {
        self.by_time.retain(|(_, e)| *e >= index);
        self.by_entry.retain(|e, _| *e >= index);
    }

    pub(crate) fn clear(&mut self) {
        self.by_time.clear();
        self.by_entry.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_due_entries_in_index_order_and_respects_the_bound() {
        let mut t = DelayedTracker::default();
        assert!(t.hold(10, 500, 3));
        assert!(t.hold(4, 700, 3));
        assert!(t.hold(7, 500, 3));
        assert!(t.hold(7, 900, 3), "already held: keeps its place");
        assert!(!t.hold(12, 100, 3), "full");
        assert_eq!(t.len(), 3);
        assert!(t.take_due(499).is_empty());
        assert_eq!(t.take_due(700), vec![4, 7, 10]);
        assert!(t.is_empty());
        assert!(t.hold(12, 100, 3));
        assert!(t.hold(20, 100, 3));
        t.forget_before(13);
        assert_eq!(t.take_all(), vec![20]);
        assert!(t.is_empty());
    }
}
