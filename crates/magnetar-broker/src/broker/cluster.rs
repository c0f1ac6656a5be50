//! Joining a cluster: the tasks that keep this broker's partitions, bundle assignment and topic
//! cache in step with the cluster (bundles gained and lost, namespaces created elsewhere, topics
//! changed by other brokers). Wiring across the services, so functions over the broker rather
//! than a service of its own; the ownership itself is [`crate::cluster`]'s.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::config::INTERNAL_NAMESPACE;
use super::Broker;
use crate::cluster::{Bundle, ClusterMember};
use crate::error::{Error, Result};
use crate::names::{NamespaceName, TenantName, TopicPartition};

/// Partitions opened at once when a broker gains bundles (cluster mode).
const OPEN_CONCURRENCY: usize = 8;

/// Cluster mode: serve only the partitions whose bundle `member` owns, with their ledgers on
/// its shared WAL. Call once, before the front ends serve. Starts two tasks: one closes the
/// open partitions of every bundle this broker stops owning (their next request is answered
/// "not the owner", and the new owner's open fences anything still in flight here); one
/// drops cached topic metadata whenever another broker changes a topic.
pub(super) async fn join(broker: &Arc<Broker>, member: Arc<ClusterMember>) -> Result<()> {
    if !broker.partitions.set_cluster(member.clone()) {
        return Err(Error::InvalidRequest(
            "the broker is already in a cluster".into(),
        ));
    }
    for namespace in [
        broker.config.default_namespace.clone(),
        NamespaceName::new(INTERNAL_NAMESPACE.0, INTERNAL_NAMESPACE.1)?,
    ] {
        member.add_namespace(&namespace);
    }

    // Every broker takes part in assigning the bundles of every namespace (a namespace
    // only some brokers knew would leave its bundles of the others unowned): the existing
    // ones now, new ones as the store announces them.
    let weak = Arc::downgrade(broker);
    let mut namespaces = broker.records.store().watch("/admin/policies")?;
    tokio::spawn(async move {
        loop {
            let event = namespaces.recv().await;
            let Some(broker) = weak.upgrade() else { return };
            let Some(member) = broker.partitions.cluster() else {
                return;
            };
            match event {
                Ok(event) => {
                    let parts: Vec<&str> = event
                        .key
                        .trim_start_matches("/admin/policies/")
                        .split('/')
                        .collect();
                    if let [tenant, namespace] = parts.as_slice() {
                        if let Ok(ns) = NamespaceName::new(tenant, namespace) {
                            member.add_namespace(&ns);
                        }
                    }
                }
                Err(magnetar_metadata::WatchError::Lagged { .. }) => {
                    add_all_namespaces(&broker, member).await
                }
                Err(magnetar_metadata::WatchError::Closed) => return,
            }
        }
    });
    // After the watch started, so no namespace falls between the two.
    add_all_namespaces(broker, &member).await;
    // A release (unload, rebalancing, shutdown) closes the bundle's partitions before its
    // owner key goes: in-flight appends finish, snapshots are written, producers and
    // consumers are told, and only then may another broker claim it.
    let weak = Arc::downgrade(broker);
    member
        .ownership()
        .set_drain(Arc::new(move |bundle: Bundle| {
            let weak = weak.clone();
            Box::pin(async move {
                if let Some(broker) = weak.upgrade() {
                    broker.partitions.close_bundle_of_cluster(&bundle).await;
                }
            })
        }));
    let weak = Arc::downgrade(broker);
    let mut owned = member.ownership().owned();
    tokio::spawn(async move {
        let mut before = BTreeSet::new();
        loop {
            let current: BTreeSet<_> = owned.borrow_and_update().keys().cloned().collect();
            let Some(broker) = weak.upgrade() else { return };
            broker.partitions.close_unowned(&current).await;
            // Bundles just gained (claimed from a dead broker, or adopted again): open their
            // partitions now, several at once, rather than one by one as clients come back.
            let gained: Vec<_> = current.difference(&before).cloned().collect();
            if !gained.is_empty() {
                let warm = broker.clone();
                tokio::spawn(async move { open_bundles(warm, gained).await });
            }
            before = current;
            drop(broker);
            if owned.changed().await.is_err() {
                return;
            }
        }
    });
    let weak = Arc::downgrade(broker);
    let mut watch = broker.records.store().watch("/admin/topics")?;
    tokio::spawn(async move {
        loop {
            let result = watch.recv().await;
            let Some(broker) = weak.upgrade() else { return };
            match result {
                Ok(event) => broker.topics.cache().invalidate_key(&event.key),
                Err(magnetar_metadata::WatchError::Lagged { .. }) => broker.topics.cache().clear(),
                Err(magnetar_metadata::WatchError::Closed) => return,
            }
        }
    });
    // Cached topics carry their namespace's topic config defaults: a namespace policy written
    // by another broker drops them all (policy writes are rare).
    let weak = Arc::downgrade(broker);
    let mut watch = broker
        .records
        .store()
        .watch(crate::resources::TENANTS_PATH)?;
    tokio::spawn(async move {
        loop {
            let result = watch.recv().await;
            let Some(broker) = weak.upgrade() else { return };
            match result {
                Ok(_) | Err(magnetar_metadata::WatchError::Lagged { .. }) => {
                    broker.topics.cache().clear()
                }
                Err(magnetar_metadata::WatchError::Closed) => return,
            }
        }
    });
    Ok(())
}

/// Gives every namespace in the store to the cluster's bundle assignment.
async fn add_all_namespaces(broker: &Broker, member: &ClusterMember) {
    let tenants = match broker.list_tenants().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list tenants for bundle assignment");
            return;
        }
    };
    for tenant in tenants {
        let Ok(tenant) = TenantName::new(&tenant) else {
            continue;
        };
        match broker.list_namespaces(&tenant).await {
            Ok(namespaces) => namespaces.iter().for_each(|ns| member.add_namespace(ns)),
            Err(e) => {
                tracing::warn!(%tenant, error = %e, "cannot list namespaces for bundle assignment")
            }
        }
    }
}

/// Opens every partition of `bundles` (cluster mode, when this broker gains them), at most
/// [`OPEN_CONCURRENCY`] at a time: a taken-over partition's ledger takeover and producer
/// state rebuild happen before clients ask, not in series as their retries arrive. Failures
/// are left to the next request (logged at debug).
async fn open_bundles(broker: Arc<Broker>, bundles: Vec<Bundle>) {
    use futures_util::StreamExt;
    let Some(member) = broker.partitions.cluster() else {
        return;
    };
    let count = member.bundles_per_namespace();
    let started = std::time::Instant::now();
    let mut partitions = Vec::new();
    let namespaces: BTreeSet<_> = bundles.iter().map(|b| b.namespace.clone()).collect();
    for namespace in namespaces {
        let topics = match broker.list_topics(&namespace).await {
            Ok(topics) => topics,
            Err(e) => {
                tracing::debug!(%namespace, error = %e, "listing topics to open a gained bundle");
                continue;
            }
        };
        for (topic, metadata) in topics {
            for p in 0..metadata.partition_count() {
                let bundle = Bundle::of_topic(&topic, metadata.ledger_partition(p), count);
                if bundle.is_ok_and(|b| bundles.contains(&b)) {
                    partitions.push(TopicPartition {
                        topic: topic.clone(),
                        partition: p,
                    });
                }
            }
        }
    }
    let total = partitions.len();
    futures_util::stream::iter(partitions)
        .for_each_concurrent(OPEN_CONCURRENCY, |tp| {
            let broker = broker.clone();
            async move {
                if let Err(e) = broker.partition(&tp).await {
                    tracing::debug!(partition = %tp, error = %e, "opening a gained partition");
                }
            }
        })
        .await;
    tracing::info!(
        bundles = bundles.len(),
        partitions = total,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "opened the partitions of gained bundles"
    );
}
