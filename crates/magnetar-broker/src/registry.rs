//! The open partitions, without a broker-wide lock.
//!
//! Why: every produce and fetch looks its partition up here, and opening a partition reads its
//! files (ledger recovery, the producer-state rebuild). A request for one partition must never
//! wait for another partition's open, nor for a lock over all partitions. So the map is split
//! into shards behind std `RwLock`s that are held only for a lookup or an insert (never across an
//! `.await` or any I/O), and each partition has its own open-once cell ([`Slot`]): the first
//! caller opens the ledger, later callers of *that* partition wait for the same open, callers of
//! other partitions do not wait at all.
//!
//! Reopen policy for a failed ledger (a write failed, e.g. the disk was full; the ledger then
//! refuses appends because indexes it handed out can no longer be honoured):
//! - the failed log is answered as it is (its appends fail at once with the storage error) until
//!   someone asks for the partition again;
//! - then the broker replaces the partition's slot with a new one that closes the failed log and
//!   opens the ledger again (recovery truncates a torn tail); callers holding the old log get
//!   errors and look the partition up again;
//! - a partition is reopened at most once per [`REOPEN_BACKOFF`]: a slot created by a reopen
//!   keeps answering its log, failed or not, until the backoff since that reopen has passed, so a
//!   full disk does not turn every request into a recovery;
//! - the replacement is a compare-and-swap on the slot, so concurrent requests for a failed
//!   partition cause one reopen, and nothing else (no other partition, no global state) is
//!   touched.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::names::TopicName;
use crate::partition::PartitionLog;

/// A partition's ledger: the topic and its ledger partition (`None` for a non-partitioned topic).
pub(crate) type LedgerKey = (TopicName, Option<u32>);

/// Shortest time between two reopenings of a partition whose ledger keeps failing writes.
pub const REOPEN_BACKOFF: Duration = Duration::from_secs(1);

/// Shards of the map; a power of two well above the number of cores, so lookups of different
/// partitions rarely meet on one lock (and those locks are held for a hash lookup only).
const SHARDS: usize = 32;

/// One partition's open-once cell.
pub(crate) struct Slot {
    log: OnceCell<Arc<PartitionLog>>,
    /// When this slot was created to replace a failed log (`None`: the first open).
    reopened_at: Option<Instant>,
    /// The failed log this slot replaces; the open closes it first.
    replaces: Mutex<Option<Arc<PartitionLog>>>,
}

impl Slot {
    fn new(reopened_at: Option<Instant>, replaces: Option<Arc<PartitionLog>>) -> Self {
        Slot {
            log: OnceCell::new(),
            reopened_at,
            replaces: Mutex::new(replaces),
        }
    }

    /// The open log, or `open`'s result when this caller is the first; callers of one slot share
    /// one open. A failed open leaves the slot empty for the next caller to try again.
    pub(crate) async fn get_or_open<F, Fut, E>(&self, open: F) -> Result<Arc<PartitionLog>, E>
    where
        F: FnOnce(Option<Arc<PartitionLog>>) -> Fut,
        Fut: std::future::Future<Output = Result<Arc<PartitionLog>, E>>,
    {
        self.log
            .get_or_try_init(|| {
                let replaces = self
                    .replaces
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                open(replaces)
            })
            .await
            .cloned()
    }

    /// Whether the slot's log may be reopened now (see the module docs).
    pub(crate) fn reopen_allowed(&self, now: Instant) -> bool {
        self.reopened_at
            .is_none_or(|at| now.saturating_duration_since(at) >= REOPEN_BACKOFF)
    }

    /// The log once any open in progress has finished; `None` if the slot holds none.
    pub(crate) async fn settled(&self) -> Option<Arc<PartitionLog>> {
        self.log
            .get_or_try_init(|| async { Err(()) })
            .await
            .ok()
            .cloned()
    }

    fn opened(&self) -> Option<Arc<PartitionLog>> {
        self.log.get().cloned()
    }
}

/// One shard of the map.
type Shard = RwLock<HashMap<LedgerKey, Arc<Slot>>>;

pub(crate) struct PartitionRegistry {
    shards: Box<[Shard]>,
    hasher: RandomState,
}

impl Default for PartitionRegistry {
    fn default() -> Self {
        PartitionRegistry {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl PartitionRegistry {
    fn shard(&self, key: &LedgerKey) -> &Shard {
        let at = self.hasher.hash_one(key) as usize % self.shards.len();
        &self.shards[at]
    }

    /// The slot of `key`, created empty when absent.
    pub(crate) fn slot(&self, key: &LedgerKey) -> Arc<Slot> {
        let shard = self.shard(key);
        if let Some(slot) = shard.read().unwrap_or_else(|e| e.into_inner()).get(key) {
            return slot.clone();
        }
        shard
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Slot::new(None, None)))
            .clone()
    }

    /// Replaces `failed` with a slot that reopens the ledger, if `failed` is still the current
    /// slot of `key`; returns the current slot either way (another caller may have replaced it).
    pub(crate) fn replace(&self, key: &LedgerKey, failed: &Arc<Slot>, now: Instant) -> Arc<Slot> {
        let mut shard = self.shard(key).write().unwrap_or_else(|e| e.into_inner());
        match shard.get(key) {
            Some(current) if !Arc::ptr_eq(current, failed) => current.clone(),
            _ => {
                let slot = Arc::new(Slot::new(Some(now), failed.opened()));
                shard.insert(key.clone(), slot.clone());
                slot
            }
        }
    }

    /// Removes and returns every slot of `topic`.
    pub(crate) fn remove_topic(&self, topic: &TopicName) -> Vec<Arc<Slot>> {
        let mut removed = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(|e| e.into_inner());
            shard.retain(|(t, _), slot| {
                if t == topic {
                    removed.push(slot.clone());
                    false
                } else {
                    true
                }
            });
        }
        removed
    }

    /// Removes and returns the slots whose key `pred` selects.
    pub(crate) fn remove_where(&self, pred: impl Fn(&LedgerKey) -> bool) -> Vec<Arc<Slot>> {
        let mut removed = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(|e| e.into_inner());
            shard.retain(|key, slot| {
                if pred(key) {
                    removed.push(slot.clone());
                    false
                } else {
                    true
                }
            });
        }
        removed
    }

    /// Removes and returns every slot.
    pub(crate) fn drain(&self) -> Vec<Arc<Slot>> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(|e| e.into_inner());
            all.extend(shard.drain().map(|(_, slot)| slot));
        }
        all
    }

    /// The partitions whose open has finished.
    pub(crate) fn open_logs(&self) -> Vec<Arc<PartitionLog>> {
        let mut logs = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            logs.extend(shard.values().filter_map(|slot| slot.opened()));
        }
        logs
    }
}
