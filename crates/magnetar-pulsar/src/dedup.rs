//! Producer deduplication by name and sequence id (Pulsar's `brokerDeduplicationEnabled`, or a
//! namespace's `deduplicationEnabled`).
//!
//! Per partition, per producer name: the highest sequence id pushed (appended or being
//! appended) and the last [`SENT_REMEMBERED`] SENDs with their outcome. A SEND whose sequence id
//! is at or below the highest pushed is a duplicate: it is not appended; its receipt carries the
//! original message id once the original append is durable (a shared future, so a resend that
//! races the original gets the same answer), or Pulsar's `-1:-1` when the original is older than
//! what is remembered.
//!
//! Restart: every Pulsar entry is tagged in its storage header as a *named* producer's
//! (`magnetar_broker::named_producer_batch`), so the partition knows each name's last entry from
//! headers alone; when a producer with that name attaches, that one entry is read and its
//! `MessageMetadata` (producer name, sequence id, highest sequence id) restores the state. The
//! PRODUCER_SUCCESS then carries `last_sequence_id`, which clients continue from.
//!
//! A name is held by one producer at a time on a partition while deduplication is on (as Pulsar
//! does), so the SENDs of a name come from one connection, in order.

use std::collections::{HashMap, VecDeque};

use futures_util::future::{BoxFuture, Shared};
use futures_util::FutureExt;

use crate::proto::ServerError;

/// SENDs remembered per producer name, for answering resends with the original message id.
pub const SENT_REMEMBERED: usize = 256;

/// The first message index of an append, or why it failed.
pub type Outcome = Result<u64, (ServerError, String)>;
pub type SharedOutcome = Shared<BoxFuture<'static, Outcome>>;

/// An outcome known already (restored from the log).
pub fn ready(outcome: Outcome) -> SharedOutcome {
    futures_util::future::ready(outcome).boxed().shared()
}

struct Sent {
    lowest: u64,
    highest: u64,
    outcome: SharedOutcome,
}

#[derive(Default)]
struct NamedProducer {
    /// Highest sequence id appended or being appended; -1 before the first.
    last_pushed: i64,
    sent: VecDeque<Sent>,
    /// Registration of the producer holding the name.
    owner: Option<u64>,
    last_used: u64,
}

/// What a SEND is.
pub enum Check {
    Accept,
    /// Appended before: the original's outcome, if still remembered.
    Duplicate(Option<SharedOutcome>),
}

/// One partition's table, bounded by `producers_max` names (least recently used out first,
/// never a name that is attached).
pub struct DedupTable {
    producers: HashMap<String, NamedProducer>,
    producers_max: usize,
    tick: u64,
}

/// What the log says about a name: its last entry's sequence ids and first index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub lowest: u64,
    pub highest: u64,
    pub first_index: u64,
}

impl DedupTable {
    pub fn new(producers_max: usize) -> Self {
        Self {
            producers: HashMap::new(),
            producers_max: producers_max.max(1),
            tick: 0,
        }
    }

    /// Whether the table has state for `name` (otherwise the caller restores it from the log).
    pub fn knows(&self, name: &str) -> bool {
        self.producers.contains_key(name)
    }

    /// Attaches producer `registration` under `name`, restoring its state from `restored` when the
    /// table had none; returns the last sequence id (for PRODUCER_SUCCESS) or why the name is
    /// taken.
    pub fn attach(
        &mut self,
        name: &str,
        registration: u64,
        restored: Option<Restored>,
    ) -> Result<i64, String> {
        self.tick += 1;
        let tick = self.tick;
        if !self.producers.contains_key(name) && self.producers.len() >= self.producers_max {
            let idle = self
                .producers
                .iter()
                .filter(|(_, p)| p.owner.is_none())
                .min_by_key(|(_, p)| p.last_used)
                .map(|(n, _)| n.clone());
            match idle {
                Some(n) => {
                    self.producers.remove(&n);
                }
                None => {
                    return Err(format!(
                        "{} named producers are attached to this partition, the limit",
                        self.producers.len()
                    ))
                }
            }
        }
        let p = self.producers.entry(name.to_string()).or_insert_with(|| {
            let mut p = NamedProducer {
                last_pushed: -1,
                ..Default::default()
            };
            if let Some(r) = restored {
                p.last_pushed = r.highest.min(i64::MAX as u64) as i64;
                p.sent.push_back(Sent {
                    lowest: r.lowest,
                    highest: r.highest,
                    outcome: ready(Ok(r.first_index)),
                });
            }
            p
        });
        match p.owner {
            Some(other) if other != registration => Err(format!(
                "producer with name '{name}' is already connected to this topic"
            )),
            _ => {
                p.owner = Some(registration);
                p.last_used = tick;
                Ok(p.last_pushed)
            }
        }
    }

    pub fn detach(&mut self, name: &str, registration: u64) {
        if let Some(p) = self.producers.get_mut(name) {
            if p.owner == Some(registration) {
                p.owner = None;
            }
        }
    }

    pub fn check(&self, name: &str, lowest: u64) -> Check {
        let Some(p) = self.producers.get(name) else {
            return Check::Accept;
        };
        if p.last_pushed < 0 || lowest > p.last_pushed as u64 {
            return Check::Accept;
        }
        let original = p
            .sent
            .iter()
            .rev()
            .find(|s| s.lowest <= lowest && lowest <= s.highest)
            .map(|s| s.outcome.clone());
        Check::Duplicate(original)
    }

    /// Records an accepted SEND whose append is under way.
    pub fn pushed(&mut self, name: &str, lowest: u64, highest: u64, outcome: SharedOutcome) {
        let Some(p) = self.producers.get_mut(name) else {
            return;
        };
        p.last_pushed = p.last_pushed.max(highest.min(i64::MAX as u64) as i64);
        if p.sent.len() == SENT_REMEMBERED {
            p.sent.pop_front();
        }
        p.sent.push_back(Sent {
            lowest,
            highest,
            outcome,
        });
    }

    /// An append failed: forget it and everything sent after it, so the client's resends are
    /// appended (Pulsar resets the producer's state the same way).
    pub fn failed(&mut self, name: &str, lowest: u64) {
        let Some(p) = self.producers.get_mut(name) else {
            return;
        };
        p.sent.retain(|s| s.lowest < lowest);
        p.last_pushed = p
            .sent
            .back()
            .map_or(-1, |s| s.highest.min(i64::MAX as u64) as i64)
            .min(lowest as i64 - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome_of(check: Check) -> Option<Outcome> {
        match check {
            Check::Accept => None,
            Check::Duplicate(o) => Some(o.and_then(|o| o.now_or_never()).unwrap_or(Ok(u64::MAX))),
        }
    }

    #[test]
    fn resends_are_duplicates_with_the_original_outcome() {
        let mut t = DedupTable::new(10);
        assert_eq!(t.attach("p", 1, None), Ok(-1));
        assert!(matches!(t.check("p", 0), Check::Accept));
        t.pushed("p", 0, 0, ready(Ok(100)));
        t.pushed("p", 1, 3, ready(Ok(101)));
        assert_eq!(outcome_of(t.check("p", 0)), Some(Ok(100)));
        assert_eq!(outcome_of(t.check("p", 2)), Some(Ok(101)));
        assert!(matches!(t.check("p", 4), Check::Accept));
        // A second producer cannot take the name; after detaching, it can.
        assert!(t.attach("p", 2, None).is_err());
        t.detach("p", 1);
        assert_eq!(t.attach("p", 2, None), Ok(3));
    }

    #[test]
    fn restored_state_and_failures() {
        let mut t = DedupTable::new(10);
        let restored = Restored {
            lowest: 7,
            highest: 9,
            first_index: 40,
        };
        assert!(!t.knows("p"));
        assert_eq!(t.attach("p", 1, Some(restored)), Ok(9));
        assert_eq!(outcome_of(t.check("p", 8)), Some(Ok(40)));
        // Older than remembered: a duplicate without an original id.
        assert!(matches!(t.check("p", 2), Check::Duplicate(None)));
        t.pushed("p", 10, 10, ready(Ok(41)));
        t.pushed("p", 11, 11, ready(Ok(42)));
        t.failed("p", 10);
        assert!(matches!(t.check("p", 10), Check::Accept));
        assert!(matches!(t.check("p", 9), Check::Duplicate(Some(_))));
    }

    #[test]
    fn table_is_bounded_and_keeps_attached_names() {
        let mut t = DedupTable::new(2);
        t.attach("a", 1, None).unwrap();
        t.attach("b", 2, None).unwrap();
        assert!(t.attach("c", 3, None).is_err());
        t.detach("a", 1);
        t.attach("c", 3, None).unwrap();
        assert!(!t.knows("a"));
        assert!(t.knows("b") && t.knows("c"));
    }
}
