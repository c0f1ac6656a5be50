//! The ownership core of cluster mode: broker registration with stable node ids, the live set,
//! and ownership of namespace bundles through metadata-store transactions (issue #17).
//!
//! Protocol-neutral and not wired into the Kafka or Pulsar front ends yet: nothing redirects a
//! client to the owner and no front end fails over on a fence. See `docs/cluster.md`.
//!
//! # Model
//! - A namespace is split into bundles ([`Bundle`], [`BundleRange`]): equal ranges of the
//!   32-bit CRC-32 of the topic partition's full name, as Pulsar does (default 4 bundles).
//! - A broker opens a session ([`magnetar_metadata::Session`]), gets a stable [`NodeId`]
//!   (the same broker name always gets the same id) and registers its listeners under a key
//!   bound to its session ([`BrokerRegistry`]). Every broker follows the live set
//!   ([`LiveBrokers`]).
//! - A broker owns a bundle by one transaction ([`Ownership::claim`]): the owner key must be
//!   absent and the epoch key at the version read; it creates the owner key bound to its session
//!   and bumps the epoch. The epoch key and its version are the [`Fence`] the data path
//!   compares in its own transactions, so a broker that lost its session or its bundle cannot
//!   commit: correctness rests on those compares, never on timing.
//! - Who claims an unowned bundle: the live broker with the highest rendezvous weight
//!   ([`assigned_node`]) for that bundle. The others wait; when the chosen broker dies, its
//!   session ends, its owner and live keys vanish and the next one by weight claims.
//!
//! # Keys (under `/cluster/<cluster>`)
//! | key | bound to a session | value |
//! |---|---|---|
//! | `/cluster/<c>/node-id-next` | no | next node id to give out (decimal) |
//! | `/cluster/<c>/node-ids/<broker-name>` | no | the broker's node id (decimal) |
//! | `/cluster/<c>/brokers/<node-id>` | yes | JSON [`BrokerRecord`]: node id, session, listeners |
//! | `/cluster/<c>/bundles/<tenant>/<namespace>/<range>/owner` | yes | JSON [`OwnerRecord`]: node id, epoch, session |
//! | `/cluster/<c>/bundles/<tenant>/<namespace>/<range>/epoch` | no | the bundle's epoch (decimal), bumped by each claim |
//! | `/cluster/<c>/leader` | yes | JSON [`LeaderRecord`] of the elected leader |
//! | `/cluster/<c>/leader-epoch` | no | the leader epoch (decimal), bumped by each election |
//!
//! `<range>` is Pulsar's bundle name, `0x00000000_0x40000000`.

mod bundle;
mod election;
mod member;
mod ownership;
mod registry;
mod view;

#[cfg(test)]
mod tests;

use std::fmt;

pub use bundle::{
    bundle_ranges, crc32_ieee, range_index, topic_hash, Bundle, BundleRange, BUNDLE_COUNT_DEFAULT,
    BUNDLE_COUNT_MAX,
};
pub use election::{LeaderElection, LeaderRecord};
pub use member::{ClusterMember, MemberConfig, PartitionOwner};
pub use ownership::{
    assigned_node, rendezvous_weight, ClaimOutcome, Fence, OwnerRecord, Ownership, OwnershipMetrics,
};
pub use registry::{
    BrokerInfo, BrokerRecord, BrokerRegistry, ListenerUrls, LiveBrokers, Registration,
};

use crate::error::Error;
use crate::names::NamespaceName;

/// A broker's stable integer id in its cluster (the Kafka broker id). Ids are given out from 0
/// and stay below `i32::MAX`, so they fit Kafka's `int32` node ids.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The metadata keys of one cluster (see the table in the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterKeys {
    root: String,
}

/// Checks one path segment we build keys from (cluster and broker names).
fn check_key_segment(kind: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() || value.contains('/') || value == "." || value == ".." {
        return Err(Error::InvalidName(format!(
            "{kind} name '{value}' must be a non-empty path segment without '/'"
        )));
    }
    magnetar_metadata::validate_key(&format!("/{value}"))
        .map_err(|err| Error::InvalidName(format!("{kind} name '{value}': {err}")))
}

impl ClusterKeys {
    pub fn new(cluster: &str) -> Result<Self, Error> {
        check_key_segment("cluster", cluster)?;
        Ok(ClusterKeys {
            root: format!("/cluster/{cluster}"),
        })
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn node_id_next(&self) -> String {
        format!("{}/node-id-next", self.root)
    }

    pub fn node_ids(&self) -> String {
        format!("{}/node-ids", self.root)
    }

    pub fn node_id(&self, broker_name: &str) -> String {
        format!("{}/node-ids/{broker_name}", self.root)
    }

    pub fn brokers(&self) -> String {
        format!("{}/brokers", self.root)
    }

    pub fn broker(&self, node_id: NodeId) -> String {
        format!("{}/brokers/{node_id}", self.root)
    }

    pub fn bundles(&self) -> String {
        format!("{}/bundles", self.root)
    }

    pub fn bundle(&self, bundle: &Bundle) -> String {
        format!(
            "{}/bundles/{}/{}/{}",
            self.root, bundle.namespace.tenant, bundle.namespace.namespace, bundle.range
        )
    }

    /// The session-bound owner key of a bundle.
    pub fn owner(&self, bundle: &Bundle) -> String {
        format!("{}/owner", self.bundle(bundle))
    }

    /// The persistent epoch key of a bundle: with its version, the data path's fence.
    pub fn epoch(&self, bundle: &Bundle) -> String {
        format!("{}/epoch", self.bundle(bundle))
    }

    pub fn leader(&self) -> String {
        format!("{}/leader", self.root)
    }

    /// The persistent epoch of the leadership: the fence of the leader's own writes.
    pub fn leader_epoch(&self) -> String {
        format!("{}/leader-epoch", self.root)
    }

    /// The node id of a live key `/cluster/<c>/brokers/<id>`.
    pub fn parse_broker(&self, key: &str) -> Option<NodeId> {
        let id = key.strip_prefix(&self.brokers())?.strip_prefix('/')?;
        id.parse().ok().map(NodeId)
    }

    /// The bundle of an owner key `/cluster/<c>/bundles/<tenant>/<ns>/<range>/owner`.
    pub fn parse_owner(&self, key: &str) -> Option<Bundle> {
        let rest = key.strip_prefix(&self.bundles())?.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let (tenant, namespace, range, leaf) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if leaf != "owner" || parts.next().is_some() {
            return None;
        }
        Some(Bundle {
            namespace: NamespaceName::new(tenant, namespace).ok()?,
            range: BundleRange::parse(range).ok()?,
        })
    }
}
