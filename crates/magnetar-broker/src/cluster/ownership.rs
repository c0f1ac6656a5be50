//! Ownership of namespace bundles: claims and releases as transactions, who should claim an
//! unowned bundle (rendezvous hashing over the live set), and the owned set the data path
//! follows.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use magnetar_metadata::{Expect, MetadataError, MetadataStore, SessionState, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::registry::{parse_decimal, to_json, AbortOnDrop, BrokerRegistry};
use super::view::spawn_view;
use super::{Bundle, ClusterKeys, LiveBrokers, NodeId, Registration};
use crate::error::Error;
use crate::names::{NamespaceName, TopicName};

/// The value of a bundle's owner key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    pub node_id: NodeId,
    /// The epoch the claim set.
    pub epoch: u64,
    /// The owner's session (its store's id).
    pub session: u64,
}

/// What the data path compares to commit for a bundle: the epoch key at `version`. Any later
/// claim bumps the key, so a commit made with a stale fence fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub key: String,
    pub version: u64,
    /// The bundle's epoch: the ledgers' writer epoch and the Kafka leader epoch.
    pub epoch: u64,
}

/// What [`Ownership::claim`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This broker owns the bundle now, under this fence.
    Claimed(Fence),
    /// The bundle has an owner (maybe this broker under a fence it holds already).
    OwnedBy(OwnerRecord),
    /// Another claim or release changed the keys between the read and the transaction; nothing
    /// was applied.
    Raced,
    /// The store no longer has this broker's session (or it is not live): nothing was applied.
    SessionLost,
}

/// Counters of a broker's ownership, as plain atomics for the metrics endpoint.
#[derive(Debug, Default)]
pub struct OwnershipMetrics {
    /// Bundles owned now.
    pub owned_bundles: AtomicU64,
    /// Claims that committed.
    pub claims: AtomicU64,
    /// Claims refused by a compare or by the session.
    pub claim_failures: AtomicU64,
    /// Times this broker dropped bundles because its session was fenced or ended or another
    /// broker's claim replaced its own.
    pub fence_events: AtomicU64,
    /// Bundles released.
    pub releases: AtomicU64,
    /// Bundles released to hand them to the broker the rendezvous rule gives them (a subset
    /// of `releases`).
    pub rebalanced: AtomicU64,
}

/// A bundle's rendezvous (highest random weight) weight for a node: FNV-1a 64 over the bundle's
/// name (`tenant/namespace/0x..._0x...`) and the node id (4 bytes, big-endian), finished with
/// the SplitMix64 mixer. Fixed here, so every broker of every release computes the same.
pub fn rendezvous_weight(bundle: &Bundle, node: NodeId) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let name = bundle.to_string();
    for byte in name.bytes().chain(node.0.to_be_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The node that should claim `bundle` when it is unowned: the one of `live` with the highest
/// [`rendezvous_weight`] (ties to the higher id). Removing a node only moves the bundles it was
/// chosen for.
pub fn assigned_node(bundle: &Bundle, live: impl IntoIterator<Item = NodeId>) -> Option<NodeId> {
    live.into_iter()
        .max_by_key(|node| (rendezvous_weight(bundle, *node), *node))
}

/// One broker's ownership: what it owns, claims and releases, and a task that claims the
/// unowned bundles of the namespaces it is given when the rendezvous rule picks this broker.
/// Dropping it stops its tasks (without releasing: the session does that when it ends).
pub struct Ownership {
    inner: Arc<Inner>,
    tasks: Mutex<Vec<AbortOnDrop>>,
}

struct Inner {
    store: Arc<dyn MetadataStore>,
    registration: Registration,
    keys: ClusterKeys,
    live: LiveBrokers,
    owners: watch::Receiver<Arc<BTreeMap<Bundle, OwnerRecord>>>,
    owned: watch::Sender<BTreeMap<Bundle, Fence>>,
    namespaces: watch::Sender<BTreeMap<NamespaceName, u32>>,
    bundle_count_default: u32,
    metrics: OwnershipMetrics,
    /// Rebalancing: how long a broker must have been live before the others hand it the
    /// bundles the rendezvous rule gives it (`None`: never hand over; bundles move only when
    /// their owner leaves or an operator unloads them).
    rebalance_delay: Option<std::time::Duration>,
    /// When this broker first saw each live broker (its own monotonic clock).
    first_seen: Mutex<BTreeMap<NodeId, tokio::time::Instant>>,
    /// Set by [`Ownership::release_all`]: claim nothing more.
    stopping: AtomicBool,
    /// Serialises the assignment passes with `release_all`.
    pass: tokio::sync::Mutex<()>,
    /// Run by a release between "stop serving" and deleting the owner key (see
    /// [`Ownership::set_drain`]).
    drain: std::sync::OnceLock<Drain>,
}

/// What a release waits for before giving a bundle up: the data path closing the bundle's
/// partitions (see [`Ownership::set_drain`]).
pub(super) type Drain = Arc<
    dyn Fn(Bundle) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync,
>;

/// Longest a release waits for its drain: past it the owner key goes anyway (the fence keeps
/// whatever is still in flight from committing after another broker's claim).
const DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(10);

impl Ownership {
    /// Follows the bundle owners and the session, and starts the assignment task. Owns nothing
    /// until [`Ownership::set_namespaces`] names namespaces (or [`Ownership::claim`] is called).
    pub async fn start(
        store: Arc<dyn MetadataStore>,
        registration: Registration,
        live: LiveBrokers,
        bundle_count_default: u32,
        rebalance_delay: Option<std::time::Duration>,
    ) -> Result<Self, Error> {
        super::bundle_ranges(bundle_count_default)?;
        let keys = registration.keys.clone();
        let parse_keys = keys.clone();
        let (owners, owners_task) = spawn_view(
            Arc::clone(&store),
            keys.bundles(),
            Arc::new(move |key: &str| parse_keys.parse_owner(key)),
            Arc::new(|value: &[u8]| serde_json::from_slice::<OwnerRecord>(value).ok()),
        )
        .await?;
        let inner = Arc::new(Inner {
            store,
            keys,
            live,
            owners,
            owned: watch::channel(BTreeMap::new()).0,
            namespaces: watch::channel(BTreeMap::new()).0,
            bundle_count_default,
            metrics: OwnershipMetrics::default(),
            rebalance_delay,
            first_seen: Mutex::default(),
            stopping: AtomicBool::new(false),
            pass: tokio::sync::Mutex::new(()),
            drain: std::sync::OnceLock::new(),
            registration,
        });
        let tasks = vec![
            AbortOnDrop(owners_task),
            AbortOnDrop(tokio::spawn(drop_on_fence(Arc::clone(&inner)))),
            AbortOnDrop(tokio::spawn(assign_loop(Arc::clone(&inner)))),
        ];
        Ok(Ownership {
            inner,
            tasks: Mutex::new(tasks),
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.registration.node_id
    }

    /// The namespaces whose bundles this broker takes part in assigning, with their bundle
    /// counts (every broker of a cluster must be given the same).
    pub fn set_namespaces(&self, namespaces: BTreeMap<NamespaceName, u32>) -> Result<(), Error> {
        for count in namespaces.values() {
            super::bundle_ranges(*count)?;
        }
        self.inner.namespaces.send_replace(namespaces);
        Ok(())
    }

    /// Adds a namespace with the default bundle count.
    pub fn add_namespace(&self, namespace: NamespaceName) {
        let count = self.inner.bundle_count_default;
        self.inner.namespaces.send_modify(|namespaces| {
            namespaces.entry(namespace).or_insert(count);
        });
    }

    /// Sets what a release runs after this broker stops serving the bundle and before its
    /// owner key is deleted (the broker closes the bundle's partitions: in-flight appends
    /// finish and clients are told before another broker may claim it), bounded by
    /// [`DRAIN_MAX`]. Set once; later calls are ignored.
    pub fn set_drain(&self, drain: Drain) {
        let _ = self.inner.drain.set(drain);
    }

    /// The bundles this broker owns with their fences; the data path serves exactly these and
    /// stops serving a bundle as soon as it leaves the map (session fenced or ended, released,
    /// or claimed by another broker).
    pub fn owned(&self) -> watch::Receiver<BTreeMap<Bundle, Fence>> {
        self.inner.owned.subscribe()
    }

    /// The fence of a bundle this broker owns.
    pub fn fence(&self, bundle: &Bundle) -> Option<Fence> {
        self.inner.owned.borrow().get(bundle).cloned()
    }

    /// The owner of `bundle` as the watch on owner keys last saw it.
    pub fn owner_of_bundle(&self, bundle: &Bundle) -> Option<OwnerRecord> {
        self.inner.owners.borrow().get(bundle).copied()
    }

    /// The bundle of a topic partition and its owner as last seen. The namespace's bundle count
    /// is the one given by [`Ownership::set_namespaces`], else the default.
    pub fn owner_of(
        &self,
        topic: &TopicName,
        partition: Option<u32>,
    ) -> Result<(Bundle, Option<OwnerRecord>), Error> {
        let count = self
            .inner
            .namespaces
            .borrow()
            .get(&topic.namespace)
            .copied()
            .unwrap_or(self.inner.bundle_count_default);
        let bundle = Bundle::of_topic(topic, partition, count)?;
        let owner = self.owner_of_bundle(&bundle);
        Ok((bundle, owner))
    }

    /// Follows the owners of all bundles (for redirection).
    pub fn owners(&self) -> watch::Receiver<Arc<BTreeMap<Bundle, OwnerRecord>>> {
        self.inner.owners.clone()
    }

    pub fn metrics(&self) -> &OwnershipMetrics {
        &self.inner.metrics
    }

    /// Claims `bundle` in one transaction: the owner key absent, the epoch key at the version
    /// read (or absent); create the owner key bound to this broker's session, epoch + 1.
    pub async fn claim(&self, bundle: &Bundle) -> Result<ClaimOutcome, Error> {
        self.inner.claim(bundle).await
    }

    /// Deletes the owner key of `bundle` if it is this broker's (its session in the value and
    /// the epoch key unchanged since, both compared). Whether it was released.
    pub async fn release(&self, bundle: &Bundle) -> Result<bool, Error> {
        self.inner.release(bundle).await
    }

    /// Graceful shutdown (SIGTERM): stops claiming, stops serving every bundle, removes this
    /// broker's live key and releases its bundles, so the others claim them at once. Returns
    /// how many bundles were released. The session stays open (close it after).
    pub async fn release_all(&self) -> Result<usize, Error> {
        let inner = &self.inner;
        inner.stopping.store(true, Ordering::Release);
        let _pass = inner.pass.lock().await;
        let mut bundles: Vec<Bundle> = inner.owned.borrow().keys().cloned().collect();
        let me = inner.registration.session.id().0;
        bundles.extend(
            inner
                .owners
                .borrow()
                .iter()
                .filter(|(_, owner)| owner.session == me)
                .map(|(bundle, _)| bundle.clone()),
        );
        bundles.sort();
        bundles.dedup();
        inner.set_owned(|owned| owned.clear());
        BrokerRegistry::deregister(inner.store.as_ref(), &inner.registration).await?;
        let mut released = 0;
        for bundle in &bundles {
            if inner.release(bundle).await? {
                released += 1;
            }
        }
        Ok(released)
    }

    /// Stops the tasks (the assignment task and the watches) without releasing anything.
    pub fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Release);
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Runs one assignment pass now (the task runs one on every change; tests and callers that
    /// just changed something may want one at once).
    pub async fn assign_now(&self) -> Result<(), Error> {
        self.inner.assign_pass().await.map(|_| ())
    }
}

impl Inner {
    fn session_id(&self) -> u64 {
        self.registration.session.id().0
    }

    /// Changes the owned map and the gauge.
    fn set_owned(&self, change: impl FnOnce(&mut BTreeMap<Bundle, Fence>)) {
        self.owned.send_if_modified(|owned| {
            let before = owned.clone();
            change(owned);
            self.metrics
                .owned_bundles
                .store(owned.len() as u64, Ordering::Relaxed);
            *owned != before
        });
    }

    async fn claim(&self, bundle: &Bundle) -> Result<ClaimOutcome, Error> {
        let owner_key = self.keys.owner(bundle);
        let epoch_key = self.keys.epoch(bundle);
        if self.registration.session.current_state() != SessionState::Live {
            self.metrics.claim_failures.fetch_add(1, Ordering::Relaxed);
            return Ok(ClaimOutcome::SessionLost);
        }
        if let Some(found) = self.store.get(&owner_key).await? {
            return Ok(ClaimOutcome::OwnedBy(decode_owner(
                &owner_key,
                &found.value,
            )?));
        }
        let (epoch, expect) = match self.store.get(&epoch_key).await? {
            Some(found) => (
                parse_decimal(&epoch_key, &found.value)?,
                Expect::Version(found.version),
            ),
            None => (0, Expect::Absent),
        };
        // Lets claims on one task interleave in tests, so that they race on the transaction
        // rather than one finishing before the other reads.
        #[cfg(test)]
        tokio::task::yield_now().await;
        let epoch = epoch + 1;
        let record = OwnerRecord {
            node_id: self.registration.node_id,
            epoch,
            session: self.session_id(),
        };
        let txn = Txn::new()
            .when(&owner_key, Expect::Absent)
            .when(&epoch_key, expect)
            .then(TxnOp::put_in_session(
                &owner_key,
                to_json(&record)?,
                self.registration.session.id(),
            ))
            .then(TxnOp::put(&epoch_key, epoch.to_string()));
        let outcome = match self.store.txn(txn).await {
            Ok(outcome) => outcome,
            Err(MetadataError::BadVersion { .. }) => {
                self.metrics.claim_failures.fetch_add(1, Ordering::Relaxed);
                return Ok(match self.store.get(&owner_key).await? {
                    Some(found) => ClaimOutcome::OwnedBy(decode_owner(&owner_key, &found.value)?),
                    None => ClaimOutcome::Raced,
                });
            }
            Err(MetadataError::SessionExpired { .. }) => {
                self.metrics.claim_failures.fetch_add(1, Ordering::Relaxed);
                return Ok(ClaimOutcome::SessionLost);
            }
            Err(err) => {
                self.metrics.claim_failures.fetch_add(1, Ordering::Relaxed);
                return Err(err.into());
            }
        };
        let version = outcome.versions.get(1).copied().flatten().ok_or_else(|| {
            Error::Metadata(format!("claim of {bundle}: no version for {epoch_key}"))
        })?;
        let fence = Fence {
            key: epoch_key,
            version,
            epoch,
        };
        self.metrics.claims.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%bundle, node = %record.node_id, epoch, "bundle claimed");
        self.set_owned(|owned| {
            owned.insert(bundle.clone(), fence.clone());
        });
        // The session may have been fenced while the claim was in flight: the fence task then
        // cleared the map before our insert, so check again after it.
        if self.registration.session.current_state() != SessionState::Live
            || self.stopping.load(Ordering::Acquire)
        {
            self.set_owned(|owned| {
                owned.remove(bundle);
            });
        }
        Ok(ClaimOutcome::Claimed(fence))
    }

    async fn release(&self, bundle: &Bundle) -> Result<bool, Error> {
        self.set_owned(|owned| {
            owned.remove(bundle);
        });
        if let Some(drain) = self.drain.get() {
            if tokio::time::timeout(DRAIN_MAX, drain(bundle.clone()))
                .await
                .is_err()
            {
                tracing::warn!(%bundle, "closing the bundle's partitions took too long; releasing it anyway");
            }
        }
        let owner_key = self.keys.owner(bundle);
        let epoch_key = self.keys.epoch(bundle);
        let Some(owner) = self.store.get(&owner_key).await? else {
            return Ok(false);
        };
        let record = decode_owner(&owner_key, &owner.value)?;
        if record.session != self.session_id() {
            return Ok(false);
        }
        let Some(epoch) = self.store.get(&epoch_key).await? else {
            return Ok(false);
        };
        if parse_decimal(&epoch_key, &epoch.value)? != record.epoch {
            return Ok(false);
        }
        let txn = Txn::new()
            .when(&owner_key, Expect::Version(owner.version))
            .when(&epoch_key, Expect::Version(epoch.version))
            .then(TxnOp::delete(&owner_key));
        match self.store.txn(txn).await {
            Ok(_) => {
                self.metrics.releases.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%bundle, "bundle released");
                Ok(true)
            }
            Err(MetadataError::BadVersion { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// One assignment pass: drop bundles whose owner key is no longer ours, adopt our own keys
    /// again after a fence passed, claim the unowned bundles the rendezvous rule gives us, and
    /// hand over the bundles it gives a broker that has been live long enough (rebalancing).
    /// Returns when a handover waits for a broker to have been live long enough.
    async fn assign_pass(&self) -> Result<Option<tokio::time::Instant>, Error> {
        let _pass = self.pass.lock().await;
        if self.stopping.load(Ordering::Acquire)
            || self.registration.session.current_state() != SessionState::Live
        {
            return Ok(None);
        }
        let me = self.session_id();
        let owners = Arc::clone(&self.owners.borrow());
        let owned = self.owned.borrow().clone();
        for (bundle, fence) in &owned {
            let seen_ours = owners
                .get(bundle)
                .is_some_and(|owner| owner.session == me && owner.epoch == fence.epoch);
            // The view may trail our own claim: ask the store before dropping.
            if !seen_ours && !self.still_ours(bundle, fence).await? {
                self.metrics.fence_events.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%bundle, "bundle no longer owned; stopped serving it");
                self.set_owned(|owned| {
                    owned.remove(bundle);
                });
            }
        }
        let namespaces = self.namespaces.borrow().clone();
        let live = self.live.node_ids();
        for (namespace, count) in &namespaces {
            for bundle in Bundle::all(namespace, *count)? {
                if self.stopping.load(Ordering::Acquire) {
                    return Ok(None);
                }
                if self.owned.borrow().contains_key(&bundle) {
                    continue;
                }
                match owners.get(&bundle) {
                    Some(owner) if owner.session == me => self.adopt(&bundle, owner).await?,
                    Some(_) => {}
                    None => {
                        if assigned_node(&bundle, live.iter().copied())
                            == Some(self.registration.node_id)
                        {
                            self.claim(&bundle).await?;
                        }
                    }
                }
            }
        }
        self.rebalance(&live).await
    }

    /// Releases the owned bundles the rendezvous rule gives another live broker that this
    /// broker has seen live for at least the rebalance delay (that broker claims them at once);
    /// returns when the next such handover becomes due. With the same live set everywhere, every
    /// bundle ends up where the rule puts it, and a broker that joins takes only its own share.
    async fn rebalance(&self, live: &[NodeId]) -> Result<Option<tokio::time::Instant>, Error> {
        let Some(delay) = self.rebalance_delay else {
            return Ok(None);
        };
        let now = tokio::time::Instant::now();
        let first_seen = {
            let mut seen = self.first_seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.retain(|node, _| live.contains(node));
            for node in live {
                seen.entry(*node).or_insert(now);
            }
            seen.clone()
        };
        let me = self.registration.node_id;
        if !live.contains(&me) {
            return Ok(None);
        }
        let owned: Vec<Bundle> = self.owned.borrow().keys().cloned().collect();
        let mut next_due = None;
        for bundle in owned {
            if self.stopping.load(Ordering::Acquire)
                || self.registration.session.current_state() != SessionState::Live
            {
                return Ok(None);
            }
            let Some(target) = assigned_node(&bundle, live.iter().copied()) else {
                continue;
            };
            if target == me {
                continue;
            }
            let due = first_seen.get(&target).map_or(now, |seen| *seen + delay);
            if due > now {
                next_due = Some(next_due.map_or(due, |d: tokio::time::Instant| d.min(due)));
                continue;
            }
            if self.release(&bundle).await? {
                self.metrics.rebalanced.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%bundle, to = %target, "bundle handed over (rebalance)");
            }
        }
        Ok(next_due)
    }

    /// Whether the store still has our owner key of `bundle` under `fence`.
    async fn still_ours(&self, bundle: &Bundle, fence: &Fence) -> Result<bool, Error> {
        let owner_key = self.keys.owner(bundle);
        let Some(found) = self.store.get(&owner_key).await? else {
            return Ok(false);
        };
        let record = decode_owner(&owner_key, &found.value)?;
        let epoch = self.store.get(&fence.key).await?;
        Ok(record.session == self.session_id()
            && record.epoch == fence.epoch
            && epoch.is_some_and(|epoch| epoch.version == fence.version))
    }

    /// Serves again a bundle whose owner key is still ours (the session came back from a
    /// fence before the store ended it), under the epoch key as it is now, if unchanged.
    async fn adopt(&self, bundle: &Bundle, owner: &OwnerRecord) -> Result<(), Error> {
        let epoch_key = self.keys.epoch(bundle);
        let Some(found) = self.store.get(&epoch_key).await? else {
            return Ok(());
        };
        if parse_decimal(&epoch_key, &found.value)? != owner.epoch {
            return Ok(());
        }
        let fence = Fence {
            key: epoch_key,
            version: found.version,
            epoch: owner.epoch,
        };
        if self.still_ours(bundle, &fence).await?
            && self.registration.session.current_state() == SessionState::Live
        {
            tracing::info!(%bundle, epoch = owner.epoch, "bundle served again after a fence");
            self.set_owned(|owned| {
                owned.insert(bundle.clone(), fence);
            });
        }
        Ok(())
    }
}

fn decode_owner(key: &str, value: &[u8]) -> Result<OwnerRecord, Error> {
    serde_json::from_slice(value)
        .map_err(|err| Error::Metadata(format!("owner key {key} cannot be read: {err}")))
}

/// Drops every owned bundle the moment the session is no longer live.
async fn drop_on_fence(inner: Arc<Inner>) {
    let mut state = inner.registration.session.state();
    loop {
        let now = *state.borrow_and_update();
        if now != SessionState::Live && !inner.owned.borrow().is_empty() {
            inner.metrics.fence_events.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(state = ?now, "session not live; stopped serving every bundle");
            inner.set_owned(|owned| owned.clear());
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}

/// How soon a failed assignment pass is retried.
const ASSIGN_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// A wake-up far enough away to never come first when no handover is due.
const ASSIGN_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Runs an assignment pass on every change of the live set, the owners, the namespaces or the
/// session state, and once per session TTL; a failed pass (etcd slow or unreachable) is retried
/// after [`ASSIGN_RETRY`] rather than a whole TTL, so bundles are served again soon after etcd
/// answers again.
async fn assign_loop(inner: Arc<Inner>) {
    let mut live = inner.live.changes();
    let mut owners = inner.owners.clone();
    let mut namespaces = inner.namespaces.subscribe();
    let mut state = inner.registration.session.state();
    let mut retry = tokio::time::interval(inner.registration.session.ttl());
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if inner.stopping.load(Ordering::Acquire) {
            return;
        }
        let (failed, due) = match inner.assign_pass().await {
            Ok(due) => (false, due),
            Err(err) => {
                tracing::warn!(%err, "bundle assignment pass failed; retrying soon");
                (true, None)
            }
        };
        let due = due.unwrap_or_else(|| tokio::time::Instant::now() + ASSIGN_IDLE);
        tokio::select! {
            changed = live.changed() => if changed.is_err() { return },
            changed = owners.changed() => if changed.is_err() { return },
            changed = namespaces.changed() => if changed.is_err() { return },
            changed = state.changed() => if changed.is_err() { return },
            _ = retry.tick() => {}
            _ = tokio::time::sleep(ASSIGN_RETRY), if failed => {}
            _ = tokio::time::sleep_until(due) => {}
        }
    }
}
