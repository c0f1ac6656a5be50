//! Broker registration: a stable node id per broker name, and a live key bound to the broker's
//! session that every broker follows.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use magnetar_metadata::{Expect, MetadataError, MetadataStore, Session, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::view::spawn_view;
use super::{check_key_segment, ClusterKeys, NodeId};
use crate::error::Error;

/// Attempts at allocating a node id before giving up (each lost attempt means another broker
/// took an id at the same time, so this bounds contention, not time).
const NODE_ID_ATTEMPTS_MAX: usize = 64;

/// What a broker tells the others about itself: where clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// The broker's configured name (host:port or any stable name); its node id follows it.
    pub broker_name: String,
    /// Kafka advertised listeners by listener name, e.g. `PLAINTEXT -> host:9092`.
    pub kafka_listeners: BTreeMap<String, String>,
    /// Pulsar service address, `pulsar://host:6650`.
    pub pulsar: Option<String>,
    /// HTTP (admin) address, `http://host:8080`.
    pub http: Option<String>,
    /// Pulsar TLS service address, `pulsar+ssl://host:6651`, if that listener is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulsar_tls: Option<String>,
    /// HTTPS (admin) address, `https://host:8443`, if that listener is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_tls: Option<String>,
}

/// The value of a live key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub node_id: NodeId,
    /// The session the key is bound to (its store's id).
    pub session: u64,
    pub info: BrokerInfo,
}

/// A registered broker: its id, its live key and the session that holds it.
#[derive(Debug, Clone)]
pub struct Registration {
    pub node_id: NodeId,
    pub live_key: String,
    pub keys: ClusterKeys,
    pub session: Session,
    pub info: BrokerInfo,
}

/// Registration of brokers in a cluster.
pub struct BrokerRegistry;

impl BrokerRegistry {
    /// The node id of `broker_name`: the one it got before, or a new one taken from the counter
    /// `node-id-next` in one transaction (the name's key absent, the counter at the version
    /// read), so two brokers never get one id and a name never gets two.
    pub async fn node_id(
        store: &dyn MetadataStore,
        keys: &ClusterKeys,
        broker_name: &str,
    ) -> Result<NodeId, Error> {
        check_key_segment("broker", broker_name)?;
        let name_key = keys.node_id(broker_name);
        let next_key = keys.node_id_next();
        for _ in 0..NODE_ID_ATTEMPTS_MAX {
            if let Some(found) = store.get(&name_key).await? {
                return parse_decimal(&name_key, &found.value)
                    .and_then(node_id_from)
                    .map(NodeId);
            }
            let (next, expect) = match store.get(&next_key).await? {
                Some(found) => (
                    parse_decimal(&next_key, &found.value)?,
                    Expect::Version(found.version),
                ),
                None => (0, Expect::Absent),
            };
            let id = node_id_from(next)?;
            let txn = Txn::new()
                .when(&name_key, Expect::Absent)
                .when(&next_key, expect)
                .then(TxnOp::put(&name_key, id.to_string()))
                .then(TxnOp::put(&next_key, (u64::from(id) + 1).to_string()));
            match store.txn(txn).await {
                Ok(_) => return Ok(NodeId(id)),
                Err(MetadataError::BadVersion { .. }) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(Error::Metadata(format!(
            "no node id for broker '{broker_name}' after {NODE_ID_ATTEMPTS_MAX} contended attempts"
        )))
    }

    /// Gets the broker's node id and creates its live key bound to `session`. A live key still
    /// held by another session (the same broker name running elsewhere, or this broker's
    /// previous run whose session has not expired yet) is refused: retry once it expired.
    pub async fn register(
        store: &dyn MetadataStore,
        keys: &ClusterKeys,
        session: &Session,
        info: BrokerInfo,
    ) -> Result<Registration, Error> {
        let node_id = Self::node_id(store, keys, &info.broker_name).await?;
        let live_key = keys.broker(node_id);
        let record = BrokerRecord {
            node_id,
            session: session.id().0,
            info: info.clone(),
        };
        let txn = Txn::new()
            .when(&live_key, Expect::Absent)
            .then(TxnOp::put_in_session(
                &live_key,
                to_json(&record)?,
                session.id(),
            ));
        match store.txn(txn).await {
            Ok(_) => Ok(Registration {
                node_id,
                live_key,
                keys: keys.clone(),
                session: session.clone(),
                info,
            }),
            Err(MetadataError::BadVersion { .. }) => Err(Error::InvalidConfig {
                key: "brokerName".into(),
                reason: format!(
                    "broker '{}' (node {node_id}) is registered by another live session; \
                     it can register again once that session expired",
                    info.broker_name
                ),
            }),
            Err(err) => Err(err.into()),
        }
    }

    /// Removes the live key if it is still this registration's (so the others stop counting
    /// this broker at once). Whether it was removed.
    pub async fn deregister(
        store: &dyn MetadataStore,
        registration: &Registration,
    ) -> Result<bool, Error> {
        let Some(found) = store.get(&registration.live_key).await? else {
            return Ok(false);
        };
        let ours = serde_json::from_slice::<BrokerRecord>(&found.value)
            .map(|record| record.session == registration.session.id().0)
            .unwrap_or(false);
        if !ours {
            return Ok(false);
        }
        let txn = Txn::new()
            .when(&registration.live_key, Expect::Version(found.version))
            .then(TxnOp::delete(&registration.live_key));
        match store.txn(txn).await {
            Ok(_) => Ok(true),
            Err(MetadataError::BadVersion { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

/// The live brokers, as a watch on `/cluster/<c>/brokers` keeps them. Clones share one view;
/// its task stops when the last clone is dropped.
#[derive(Clone)]
pub struct LiveBrokers {
    receiver: watch::Receiver<Arc<BTreeMap<NodeId, BrokerRecord>>>,
    _task: Arc<AbortOnDrop>,
}

pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl LiveBrokers {
    /// Reads the live set and follows it.
    pub async fn start(store: Arc<dyn MetadataStore>, keys: &ClusterKeys) -> Result<Self, Error> {
        let parse_keys = keys.clone();
        let (receiver, task) = spawn_view(
            store,
            keys.brokers(),
            Arc::new(move |key: &str| parse_keys.parse_broker(key)),
            Arc::new(|value: &[u8]| serde_json::from_slice::<BrokerRecord>(value).ok()),
        )
        .await?;
        Ok(LiveBrokers {
            receiver,
            _task: Arc::new(AbortOnDrop(task)),
        })
    }

    /// The live set now.
    pub fn current(&self) -> Arc<BTreeMap<NodeId, BrokerRecord>> {
        Arc::clone(&self.receiver.borrow())
    }

    /// The live node ids now.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.receiver.borrow().keys().copied().collect()
    }

    /// Follows changes of the live set (each change is seen by `changed()`).
    pub fn changes(&self) -> watch::Receiver<Arc<BTreeMap<NodeId, BrokerRecord>>> {
        self.receiver.clone()
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Bytes, Error> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|err| Error::Metadata(format!("cannot encode a cluster record: {err}")))
}

pub(crate) fn parse_decimal(key: &str, value: &[u8]) -> Result<u64, Error> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| Error::Metadata(format!("key {key} does not hold a decimal number")))
}

fn node_id_from(value: u64) -> Result<u32, Error> {
    u32::try_from(value)
        .ok()
        .filter(|id| *id < i32::MAX as u32)
        .ok_or_else(|| Error::Metadata(format!("node id {value} is beyond the int32 range")))
}
