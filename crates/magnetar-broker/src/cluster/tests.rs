//! Several brokers in one process, each with its own session on one store. Waits are on
//! watches and conditions, bounded by [`WAIT`]; nothing assumes an order from a sleep.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{join_all, select_all};
use magnetar_metadata::{
    Expect, MemoryStore, MetadataError, MetadataStore, RedbStore, SessionState, Txn, TxnOp,
};

use super::*;
use crate::names::{NamespaceName, TopicName};

/// Longest wait for a condition; far above what the in-process stores need.
const WAIT: Duration = Duration::from_secs(20);
const TTL: Duration = Duration::from_secs(30);

struct TestBroker {
    registration: Registration,
    ownership: Ownership,
}

impl TestBroker {
    async fn start(store: &Arc<dyn MetadataStore>, name: &str, ttl: Duration) -> TestBroker {
        Self::start_with(store, name, ttl, None).await
    }

    async fn start_with(
        store: &Arc<dyn MetadataStore>,
        name: &str,
        ttl: Duration,
        rebalance_delay: Option<Duration>,
    ) -> TestBroker {
        let keys = ClusterKeys::new("test").unwrap();
        let session = store.open_session(ttl).await.unwrap();
        let info = BrokerInfo {
            broker_name: name.to_string(),
            kafka_listeners: BTreeMap::from([("PLAINTEXT".to_string(), format!("{name}:9092"))]),
            pulsar: Some(format!("pulsar://{name}:6650")),
            http: Some(format!("http://{name}:8080")),
            ..BrokerInfo::default()
        };
        let registration = BrokerRegistry::register(store.as_ref(), &keys, &session, info)
            .await
            .unwrap();
        let live = LiveBrokers::start(Arc::clone(store), &keys).await.unwrap();
        let ownership = Ownership::start(
            Arc::clone(store),
            registration.clone(),
            live,
            BUNDLE_COUNT_DEFAULT,
            rebalance_delay,
        )
        .await
        .unwrap();
        TestBroker {
            registration,
            ownership,
        }
    }

    fn session_id(&self) -> u64 {
        self.registration.session.id().0
    }

    fn owned(&self) -> BTreeMap<Bundle, Fence> {
        self.ownership.owned().borrow().clone()
    }
}

fn namespaces() -> BTreeMap<NamespaceName, u32> {
    BTreeMap::from([
        (NamespaceName::new("public", "default").unwrap(), 4),
        (NamespaceName::new("t", "ns").unwrap(), 8),
    ])
}

fn all_bundles() -> Vec<Bundle> {
    namespaces()
        .iter()
        .flat_map(|(ns, count)| Bundle::all(ns, *count).unwrap())
        .collect()
}

/// Checks `check` after every change of the store under `/cluster` or of any broker's owned
/// set, until it holds or [`WAIT`] passes.
async fn wait_for<F, Fut>(
    what: &str,
    store: &Arc<dyn MetadataStore>,
    brokers: &[&TestBroker],
    mut check: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut watch = store.watch("/cluster").unwrap();
    let mut owned: Vec<_> = brokers.iter().map(|b| b.ownership.owned()).collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if check().await {
            return;
        }
        let owned_changed = async {
            if owned.is_empty() {
                std::future::pending::<()>().await;
            }
            let _ = select_all(owned.iter_mut().map(|rx| Box::pin(rx.changed()))).await;
        };
        tokio::select! {
            _ = watch.recv() => {}
            _ = owned_changed => {}
            _ = tokio::time::sleep_until(deadline) => panic!("not {what} within {WAIT:?}"),
        }
    }
}

/// Every bundle has an owner key naming one of `live`, that broker serves it under the epoch in
/// the key, and no other broker serves it.
async fn owned_by_exactly_one(
    store: &Arc<dyn MetadataStore>,
    live: &[&TestBroker],
    others: &[&TestBroker],
) -> bool {
    let keys = ClusterKeys::new("test").unwrap();
    for bundle in all_bundles() {
        let Ok(Some(found)) = store.get(&keys.owner(&bundle)).await else {
            return false;
        };
        let owner: OwnerRecord = serde_json::from_slice(&found.value).unwrap();
        let mut serving = 0;
        for broker in live.iter().chain(others) {
            if let Some(fence) = broker.owned().get(&bundle) {
                serving += 1;
                if broker.session_id() != owner.session || fence.epoch != owner.epoch {
                    return false;
                }
            }
        }
        if serving != 1 || !live.iter().any(|b| b.session_id() == owner.session) {
            return false;
        }
    }
    true
}

async fn epochs(store: &Arc<dyn MetadataStore>) -> BTreeMap<Bundle, u64> {
    let keys = ClusterKeys::new("test").unwrap();
    let mut epochs = BTreeMap::new();
    for bundle in all_bundles() {
        let found = store.get(&keys.epoch(&bundle)).await.unwrap().unwrap();
        epochs.insert(
            bundle,
            std::str::from_utf8(&found.value).unwrap().parse().unwrap(),
        );
    }
    epochs
}

#[test]
fn keys_round_trip() {
    let keys = ClusterKeys::new("c1").unwrap();
    let bundle = Bundle::all(&NamespaceName::new("t", "ns").unwrap(), 4).unwrap()[1].clone();
    assert_eq!(
        keys.owner(&bundle),
        "/cluster/c1/bundles/t/ns/0x40000000_0x80000000/owner"
    );
    assert_eq!(keys.parse_owner(&keys.owner(&bundle)), Some(bundle.clone()));
    assert_eq!(keys.parse_owner(&keys.epoch(&bundle)), None);
    assert_eq!(keys.parse_broker(&keys.broker(NodeId(7))), Some(NodeId(7)));
    assert_eq!(keys.parse_broker("/cluster/c1/brokers/x"), None);
    assert!(ClusterKeys::new("a/b").is_err());
    assert!(ClusterKeys::new("").is_err());
}

#[test]
fn rendezvous_is_stable_and_moves_only_the_lost_node_bundles() {
    let ns = NamespaceName::new("t", "ns").unwrap();
    let bundles = Bundle::all(&ns, 64).unwrap();
    let nodes: Vec<NodeId> = (0..5).map(NodeId).collect();
    // Pinned: a change of the weight function would move bundles between releases.
    assert_eq!(
        rendezvous_weight(&bundles[0], NodeId(0)),
        rendezvous_weight(&bundles[0].clone(), NodeId(0))
    );
    let before: Vec<NodeId> = bundles
        .iter()
        .map(|b| assigned_node(b, nodes.iter().copied()).unwrap())
        .collect();
    let mut per_node = BTreeMap::<NodeId, usize>::new();
    for node in &before {
        *per_node.entry(*node).or_default() += 1;
    }
    assert_eq!(
        per_node.len(),
        5,
        "every node gets some of 64 bundles: {per_node:?}"
    );
    let without: Vec<NodeId> = nodes.iter().copied().filter(|n| *n != NodeId(2)).collect();
    for (bundle, owner) in bundles.iter().zip(&before) {
        let after = assigned_node(bundle, without.iter().copied()).unwrap();
        if *owner != NodeId(2) {
            assert_eq!(after, *owner, "{bundle} moved although its node stayed");
        }
    }
    assert_eq!(assigned_node(&bundles[0], []), None);
}

#[tokio::test]
async fn node_ids_are_stable_and_distinct() {
    let store: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let keys = ClusterKeys::new("test").unwrap();
    let names: Vec<String> = (0..8).map(|i| format!("broker-{i}")).collect();
    let ids = join_all(
        names
            .iter()
            .map(|name| BrokerRegistry::node_id(store.as_ref(), &keys, name)),
    )
    .await;
    let ids: BTreeSet<NodeId> = ids.into_iter().map(Result::unwrap).collect();
    assert_eq!(ids, (0..8).map(NodeId).collect(), "distinct ids from 0");
    for name in &names {
        let again = BrokerRegistry::node_id(store.as_ref(), &keys, name)
            .await
            .unwrap();
        let first = BrokerRegistry::node_id(store.as_ref(), &keys, name)
            .await
            .unwrap();
        assert_eq!(again, first);
    }
    assert!(BrokerRegistry::node_id(store.as_ref(), &keys, "a/b")
        .await
        .is_err());

    // Re-registration after the session ended keeps the id; a second live session is refused.
    let a = TestBroker::start(&store, "a", TTL).await;
    let session = store.open_session(TTL).await.unwrap();
    assert!(matches!(
        BrokerRegistry::register(store.as_ref(), &keys, &session, a.registration.info.clone())
            .await,
        Err(crate::Error::InvalidConfig { .. })
    ));
    let id = a.registration.node_id;
    a.registration.session.close().await.unwrap();
    let again =
        BrokerRegistry::register(store.as_ref(), &keys, &session, a.registration.info.clone())
            .await
            .unwrap();
    assert_eq!(again.node_id, id);
}

#[tokio::test]
async fn node_ids_survive_a_redb_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let keys = ClusterKeys::new("test").unwrap();
    let store = RedbStore::open(&path).await.unwrap();
    let a = BrokerRegistry::node_id(&store, &keys, "a").await.unwrap();
    let b = BrokerRegistry::node_id(&store, &keys, "b").await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let store = RedbStore::open(&path).await.unwrap();
    assert_eq!(
        BrokerRegistry::node_id(&store, &keys, "b").await.unwrap(),
        b
    );
    assert_eq!(
        BrokerRegistry::node_id(&store, &keys, "a").await.unwrap(),
        a
    );
    assert_eq!(
        BrokerRegistry::node_id(&store, &keys, "c").await.unwrap(),
        NodeId(2)
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn live_brokers_follow_sessions() {
    let store: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let keys = ClusterKeys::new("test").unwrap();
    let a = TestBroker::start(&store, "a", TTL).await;
    let live = LiveBrokers::start(Arc::clone(&store), &keys).await.unwrap();
    assert_eq!(live.node_ids(), [a.registration.node_id]);
    assert_eq!(
        live.current()[&a.registration.node_id].info.kafka_listeners["PLAINTEXT"],
        "a:9092"
    );
    let mut changes = live.changes();
    let b = TestBroker::start(&store, "b", TTL).await;
    let both = [a.registration.node_id, b.registration.node_id];
    tokio::time::timeout(WAIT, changes.wait_for(|set| set.keys().eq(both.iter())))
        .await
        .unwrap()
        .unwrap();
    a.registration.session.close().await.unwrap();
    tokio::time::timeout(
        WAIT,
        changes.wait_for(|set| set.keys().eq([b.registration.node_id].iter())),
    )
    .await
    .unwrap()
    .unwrap();
}

#[tokio::test]
async fn live_brokers_read_again_after_a_lag() {
    // A watch buffer of 2 events: registering 20 brokers without yielding makes the view lag,
    // and only reading everything again gives it the whole set.
    let store: Arc<dyn MetadataStore> = Arc::new(MemoryStore::with_watch_buffer_events(2));
    let keys = ClusterKeys::new("test").unwrap();
    let live = LiveBrokers::start(Arc::clone(&store), &keys).await.unwrap();
    let mut sessions = Vec::new();
    for i in 0..20 {
        let session = store.open_session(TTL).await.unwrap();
        let info = BrokerInfo {
            broker_name: format!("b{i}"),
            ..BrokerInfo::default()
        };
        BrokerRegistry::register(store.as_ref(), &keys, &session, info)
            .await
            .unwrap();
        sessions.push(session);
    }
    let mut changes = live.changes();
    tokio::time::timeout(WAIT, changes.wait_for(|set| set.len() == 20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.node_ids(), (0..20).map(NodeId).collect::<Vec<_>>());
}

/// Three brokers share every bundle; one dies (its session ends in the store), the other two
/// take its bundles under higher epochs; its stale fences and claims are refused; then another
/// closes its session and the last one owns everything.
async fn ownership_survives_dead_brokers(
    store: Arc<dyn MetadataStore>,
    expire: impl AsyncFnOnce(&Arc<dyn MetadataStore>, &TestBroker),
) {
    let a = TestBroker::start(&store, "a", TTL).await;
    let b = TestBroker::start(&store, "b", TTL).await;
    let c = TestBroker::start(&store, "c", TTL).await;
    for broker in [&a, &b, &c] {
        broker.ownership.set_namespaces(namespaces()).unwrap();
    }
    let (live1, others1): (Vec<&TestBroker>, Vec<&TestBroker>) = (vec![&a, &b, &c], vec![]);
    wait_for("all bundles owned", &store, &[&a, &b, &c], || {
        owned_by_exactly_one(&store, &live1, &others1)
    })
    .await;
    let before = epochs(&store).await;
    assert!(before.values().all(|epoch| *epoch == 1), "{before:?}");
    let a_had = a.owned();
    assert!(!a_had.is_empty(), "rendezvous gave a some of 12 bundles");
    let (a_topic_bundle, _) = a
        .ownership
        .owner_of(
            &TopicName::new(NamespaceName::new("public", "default").unwrap(), "x").unwrap(),
            Some(0),
        )
        .unwrap();
    assert!(all_bundles().contains(&a_topic_bundle));

    expire(&store, &a).await;
    let (live2, others2): (Vec<&TestBroker>, Vec<&TestBroker>) = (vec![&b, &c], vec![&a]);
    wait_for("a's bundles taken over", &store, &[&a, &b, &c], || {
        owned_by_exactly_one(&store, &live2, &others2)
    })
    .await;
    let after = epochs(&store).await;
    for (bundle, epoch) in &after {
        let expected = if a_had.contains_key(bundle) { 2 } else { 1 };
        assert_eq!(*epoch, expected, "{bundle}");
    }
    assert!(a.owned().is_empty());
    assert!(a.ownership.metrics().fence_events.load(Ordering::Relaxed) >= 1);

    // A stale writer: a data-path transaction under a's old fence is refused.
    let (bundle, fence) = a_had.iter().next().unwrap();
    let stale = Txn::new()
        .when(&fence.key, Expect::Version(fence.version))
        .then(TxnOp::put(format!("/data/{}", bundle.range), "late"));
    assert!(matches!(
        store.txn(stale).await,
        Err(MetadataError::BadVersion { .. })
    ));
    // a cannot claim anything any more, even a bundle nobody owns.
    let spare = Bundle::all(&NamespaceName::new("spare", "ns").unwrap(), 1).unwrap()[0].clone();
    assert_eq!(
        a.ownership.claim(&spare).await.unwrap(),
        ClaimOutcome::SessionLost
    );
    assert_eq!(
        store
            .get(&ClusterKeys::new("test").unwrap().owner(&spare))
            .await
            .unwrap(),
        None
    );

    b.registration.session.close().await.unwrap();
    let (live3, others3): (Vec<&TestBroker>, Vec<&TestBroker>) = (vec![&c], vec![&a, &b]);
    wait_for("c owns everything", &store, &[&a, &b, &c], || {
        owned_by_exactly_one(&store, &live3, &others3)
    })
    .await;
    assert_eq!(c.owned().len(), all_bundles().len());
    let last = epochs(&store).await;
    for (bundle, epoch) in &last {
        assert!(*epoch >= after[bundle]);
    }
    assert_eq!(
        c.ownership.metrics().owned_bundles.load(Ordering::Relaxed),
        all_bundles().len() as u64
    );
}

#[tokio::test]
async fn memory_expired_broker_bundles_move_with_higher_epochs() {
    let memory = Arc::new(MemoryStore::new());
    let for_expiry = Arc::clone(&memory);
    ownership_survives_dead_brokers(memory, async move |_, a: &TestBroker| {
        assert!(for_expiry.expire_session(a.registration.session.id()));
    })
    .await;
}

#[tokio::test]
async fn memory_closed_broker_bundles_move_with_higher_epochs() {
    ownership_survives_dead_brokers(Arc::new(MemoryStore::new()), async |_, a: &TestBroker| {
        a.registration.session.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn redb_expired_broker_bundles_move_with_higher_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let redb = Arc::new(
        RedbStore::open(&dir.path().join("meta.redb"))
            .await
            .unwrap(),
    );
    let for_expiry = Arc::clone(&redb);
    ownership_survives_dead_brokers(redb, async move |_, a: &TestBroker| {
        assert!(for_expiry
            .expire_session(a.registration.session.id())
            .await
            .unwrap());
    })
    .await;
}

#[tokio::test]
async fn racing_claims_have_one_winner() {
    racing_claims(Arc::new(MemoryStore::new()), true).await;
}

/// Two brokers claim each of 32 bundles at once: exactly one wins each. With `all_race` (an
/// in-process store, where the claims interleave at their yield point) both read before either
/// commits, so every loser is refused by a compare; on etcd a loser may instead find the owner
/// key already there before its transaction.
async fn racing_claims(store: Arc<dyn MetadataStore>, all_race: bool) {
    let a = TestBroker::start(&store, "a", TTL).await;
    let b = TestBroker::start(&store, "b", TTL).await;
    let ns = NamespaceName::new("race", "ns").unwrap();
    for bundle in Bundle::all(&ns, 32).unwrap() {
        let (x, y) = tokio::join!(a.ownership.claim(&bundle), b.ownership.claim(&bundle));
        let outcomes = [x.unwrap(), y.unwrap()];
        let winners: Vec<&Fence> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                ClaimOutcome::Claimed(fence) => Some(fence),
                _ => None,
            })
            .collect();
        assert_eq!(winners.len(), 1, "{bundle}: {outcomes:?}");
        assert_eq!(winners[0].epoch, 1);
        let served = [&a, &b]
            .iter()
            .filter(|broker| broker.owned().contains_key(&bundle))
            .count();
        assert_eq!(served, 1, "{bundle}");
        // Claiming again is refused for both: the bundle has an owner.
        assert!(matches!(
            a.ownership.claim(&bundle).await.unwrap(),
            ClaimOutcome::OwnedBy(_)
        ));
    }
    let claims = a.ownership.metrics().claims.load(Ordering::Relaxed)
        + b.ownership.metrics().claims.load(Ordering::Relaxed);
    assert_eq!(claims, 32);
    let failures = a.ownership.metrics().claim_failures.load(Ordering::Relaxed)
        + b.ownership.metrics().claim_failures.load(Ordering::Relaxed);
    if all_race {
        assert_eq!(failures, 32, "each loser was refused by a compare");
    } else {
        assert!(failures <= 32);
    }
}

#[tokio::test]
async fn graceful_release_hands_over_at_once() {
    let store: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let a = TestBroker::start(&store, "a", TTL).await;
    let b = TestBroker::start(&store, "b", TTL).await;
    for broker in [&a, &b] {
        broker.ownership.set_namespaces(namespaces()).unwrap();
    }
    let (live4, others4): (Vec<&TestBroker>, Vec<&TestBroker>) = (vec![&a, &b], vec![]);
    wait_for("all bundles owned", &store, &[&a, &b], || {
        owned_by_exactly_one(&store, &live4, &others4)
    })
    .await;
    let a_had = a.owned();
    assert!(!a_had.is_empty());
    // release is only for our own bundles.
    let (b_bundle, _) = b.owned().into_iter().next().unwrap();
    assert!(!a.ownership.release(&b_bundle).await.unwrap());

    let released = a.ownership.release_all().await.unwrap();
    assert_eq!(released, a_had.len());
    assert!(a.owned().is_empty());
    // a's session is still live: b takes over because a left, not because a session expired.
    let (live5, others5): (Vec<&TestBroker>, Vec<&TestBroker>) = (vec![&b], vec![&a]);
    wait_for("b owns everything", &store, &[&a, &b], || {
        owned_by_exactly_one(&store, &live5, &others5)
    })
    .await;
    assert_eq!(a.registration.session.current_state(), SessionState::Live);
    // The cached owners (a watch on the owner keys) name b for every topic, on both brokers.
    let b_node = b.registration.node_id;
    for broker in [&a, &b] {
        let mut owners = broker.ownership.owners();
        tokio::time::timeout(
            WAIT,
            owners.wait_for(|owners| {
                all_bundles()
                    .iter()
                    .all(|bundle| owners.get(bundle).map(|o| o.node_id) == Some(b_node))
            }),
        )
        .await
        .unwrap()
        .unwrap();
        let topic = TopicName::new(NamespaceName::new("t", "ns").unwrap(), "orders").unwrap();
        let (bundle, owner) = broker.ownership.owner_of(&topic, Some(3)).unwrap();
        assert_eq!(bundle, Bundle::of_topic(&topic, Some(3), 8).unwrap());
        assert_eq!(owner.map(|o| o.node_id), Some(b_node));
    }
    for (bundle, fence) in &a_had {
        assert_eq!(b.ownership.fence(bundle).unwrap().epoch, fence.epoch + 1);
    }
    assert_eq!(
        a.ownership.metrics().releases.load(Ordering::Relaxed),
        a_had.len() as u64
    );
}

/// Every bundle is owned by the broker the rendezvous rule picks among `live`.
async fn owned_as_assigned(store: &Arc<dyn MetadataStore>, live: &[&TestBroker]) -> bool {
    let nodes: Vec<NodeId> = live.iter().map(|b| b.registration.node_id).collect();
    if !owned_by_exactly_one(store, live, &[]).await {
        return false;
    }
    all_bundles().iter().all(|bundle| {
        let target = assigned_node(bundle, nodes.iter().copied());
        live.iter()
            .find(|b| Some(b.registration.node_id) == target)
            .is_some_and(|b| b.owned().contains_key(bundle))
    })
}

#[tokio::test]
async fn a_broker_that_joins_is_handed_its_share_once_it_has_been_live_long_enough() {
    let store: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let delay = Some(Duration::from_millis(300));
    let a = TestBroker::start_with(&store, "a", TTL, delay).await;
    a.ownership.set_namespaces(namespaces()).unwrap();
    let (only_a, none): (Vec<&TestBroker>, Vec<&TestBroker>) = (vec![&a], vec![]);
    wait_for("a owns everything", &store, &[&a], || {
        owned_by_exactly_one(&store, &only_a, &none)
    })
    .await;
    let before = epochs(&store).await;

    let b = TestBroker::start_with(&store, "b", TTL, delay).await;
    b.ownership.set_namespaces(namespaces()).unwrap();
    let both = vec![&a, &b];
    wait_for(
        "bundles owned as the rule assigns them",
        &store,
        &[&a, &b],
        || owned_as_assigned(&store, &both),
    )
    .await;
    let moved = a.ownership.metrics().rebalanced.load(Ordering::Relaxed) as usize;
    assert!(
        moved > 0 && moved == b.owned().len(),
        "{moved} vs {:?}",
        b.owned()
    );
    assert_eq!(a.owned().len() + b.owned().len(), all_bundles().len());
    // Only the handed-over bundles were claimed again (one epoch each); a kept the others.
    let after = epochs(&store).await;
    for (bundle, epoch) in &after {
        let expected = before[bundle] + u64::from(b.owned().contains_key(bundle));
        assert_eq!(*epoch, expected, "{bundle}");
    }
}

#[tokio::test]
async fn fenced_session_stops_serving_before_the_store_ends_it() {
    let store: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let a = TestBroker::start(&store, "a", Duration::from_secs(2)).await;
    let ns = NamespaceName::new("fence", "ns").unwrap();
    let bundle = Bundle::all(&ns, 1).unwrap()[0].clone();
    assert!(matches!(
        a.ownership.claim(&bundle).await.unwrap(),
        ClaimOutcome::Claimed(_)
    ));
    let mut owned = a.ownership.owned();
    a.registration.session.stop_keep_alive_for_test();
    tokio::time::timeout(WAIT, owned.wait_for(|owned| owned.is_empty()))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(a.registration.session.current_state(), SessionState::Live);
    assert!(a.ownership.metrics().fence_events.load(Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn leader_election_fences_a_deposed_leader() {
    let store: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let a = TestBroker::start(&store, "a", TTL).await;
    let b = TestBroker::start(&store, "b", TTL).await;
    let a_election = LeaderElection::new(Arc::clone(&store), a.registration.clone());
    let b_election = LeaderElection::new(Arc::clone(&store), b.registration.clone());
    let (x, y) = tokio::join!(a_election.campaign(), b_election.campaign());
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(x.is_some() != y.is_some(), "{x:?} {y:?}");
    let (leader, leader_fence, follower) = match x {
        Some(fence) => (&a_election, fence, &b_election),
        None => (&b_election, y.unwrap(), &a_election),
    };
    assert_eq!(leader.campaign().await.unwrap(), Some(leader_fence.clone()));
    let waiting = follower.wait_for_leadership();
    let (resigned, won) = tokio::join!(leader.resign(), tokio::time::timeout(WAIT, waiting));
    assert!(resigned.unwrap());
    let new_fence = won.unwrap().unwrap();
    assert_eq!(new_fence.epoch, leader_fence.epoch + 1);
    let stale = Txn::new()
        .when(&leader_fence.key, Expect::Version(leader_fence.version))
        .then(TxnOp::put("/cleanup/x", "late"));
    assert!(matches!(
        store.txn(stale).await,
        Err(MetadataError::BadVersion { .. })
    ));
    assert_eq!(
        follower.leader().await.unwrap().map(|l| l.epoch),
        Some(new_fence.epoch)
    );
}

#[cfg(feature = "etcd")]
mod etcd {
    use super::*;
    use magnetar_metadata::testkit::Etcd;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn etcd_closed_broker_bundles_move_with_higher_epochs() {
        let etcd = Etcd::start();
        let store: Arc<dyn MetadataStore> = Arc::new(etcd.store("/magnetar").await);
        ownership_survives_dead_brokers(Arc::clone(&store), async |_, a: &TestBroker| {
            a.registration.session.close().await.unwrap();
        })
        .await;
        store.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn etcd_racing_claims_have_one_winner() {
        let etcd = Etcd::start();
        let store: Arc<dyn MetadataStore> = Arc::new(etcd.store("/magnetar").await);
        racing_claims(Arc::clone(&store), false).await;
        store.close().await.unwrap();
    }
}
