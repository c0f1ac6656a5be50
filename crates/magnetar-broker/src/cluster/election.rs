//! Leader election, the same way a bundle is claimed: one transaction creates the leader key
//! bound to the candidate's session and bumps a persistent leader epoch. The leader's own
//! writes (cleanup after dead brokers) compare the leader epoch key at the version its election
//! set ([`Fence`]), so a deposed leader cannot write: no timing is assumed.

use std::sync::Arc;

use magnetar_metadata::{EventKind, Expect, MetadataError, MetadataStore, Txn, TxnOp, WatchError};
use serde::{Deserialize, Serialize};

use super::registry::{parse_decimal, to_json};
use super::{Fence, NodeId, Registration};
use crate::error::Error;

/// The value of the leader key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    pub node_id: NodeId,
    pub epoch: u64,
    pub session: u64,
}

/// One broker's candidacy.
pub struct LeaderElection {
    store: Arc<dyn MetadataStore>,
    registration: Registration,
}

impl LeaderElection {
    pub fn new(store: Arc<dyn MetadataStore>, registration: Registration) -> Self {
        LeaderElection {
            store,
            registration,
        }
    }

    /// The leader now, if any.
    pub async fn leader(&self) -> Result<Option<LeaderRecord>, Error> {
        let key = self.registration.keys.leader();
        match self.store.get(&key).await? {
            Some(found) => Ok(Some(decode(&key, &found.value)?)),
            None => Ok(None),
        }
    }

    /// Tries once to become leader: the fence of the leadership when this broker is leader
    /// (now or already), `None` when another broker is.
    pub async fn campaign(&self) -> Result<Option<Fence>, Error> {
        let keys = &self.registration.keys;
        let (leader_key, epoch_key) = (keys.leader(), keys.leader_epoch());
        let session = self.registration.session.id();
        if let Some(found) = self.store.get(&leader_key).await? {
            let record = decode(&leader_key, &found.value)?;
            if record.session != session.0 {
                return Ok(None);
            }
            return Ok(self.store.get(&epoch_key).await?.and_then(|epoch| {
                (parse_decimal(&epoch_key, &epoch.value).ok() == Some(record.epoch)).then(|| {
                    Fence {
                        key: epoch_key.clone(),
                        version: epoch.version,
                        epoch: record.epoch,
                    }
                })
            }));
        }
        let (epoch, expect) = match self.store.get(&epoch_key).await? {
            Some(found) => (
                parse_decimal(&epoch_key, &found.value)?,
                Expect::Version(found.version),
            ),
            None => (0, Expect::Absent),
        };
        let record = LeaderRecord {
            node_id: self.registration.node_id,
            epoch: epoch + 1,
            session: session.0,
        };
        let txn = Txn::new()
            .when(&leader_key, Expect::Absent)
            .when(&epoch_key, expect)
            .then(TxnOp::put_in_session(
                &leader_key,
                to_json(&record)?,
                session,
            ))
            .then(TxnOp::put(&epoch_key, record.epoch.to_string()));
        match self.store.txn(txn).await {
            Ok(outcome) => Ok(outcome
                .versions
                .get(1)
                .copied()
                .flatten()
                .map(|version| Fence {
                    key: epoch_key,
                    version,
                    epoch: record.epoch,
                })),
            Err(MetadataError::BadVersion { .. } | MetadataError::SessionExpired { .. }) => {
                Ok(None)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Campaigns until this broker is leader: after each lost attempt it waits for the leader
    /// key to be deleted (its session ended or it resigned). Bound it with a timeout.
    pub async fn wait_for_leadership(&self) -> Result<Fence, Error> {
        let leader_key = self.registration.keys.leader();
        loop {
            let mut watch = self.store.watch(&leader_key)?;
            if let Some(fence) = self.campaign().await? {
                return Ok(fence);
            }
            loop {
                match watch.recv().await {
                    Ok(event) if event.kind == EventKind::Deleted => break,
                    Ok(_) => {}
                    Err(WatchError::Lagged { .. }) => break,
                    Err(WatchError::Closed) => return Err(Error::ShuttingDown),
                }
            }
        }
    }

    /// Gives the leadership up if this broker holds it. Whether it did.
    pub async fn resign(&self) -> Result<bool, Error> {
        let leader_key = self.registration.keys.leader();
        let Some(found) = self.store.get(&leader_key).await? else {
            return Ok(false);
        };
        if decode(&leader_key, &found.value)?.session != self.registration.session.id().0 {
            return Ok(false);
        }
        let txn = Txn::new()
            .when(&leader_key, Expect::Version(found.version))
            .then(TxnOp::delete(&leader_key));
        match self.store.txn(txn).await {
            Ok(_) => Ok(true),
            Err(MetadataError::BadVersion { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

fn decode(key: &str, value: &[u8]) -> Result<LeaderRecord, Error> {
    serde_json::from_slice(value)
        .map_err(|err| Error::Metadata(format!("leader key {key} cannot be read: {err}")))
}
