//! Metadata store for Magnetar: what Pulsar keeps in ZooKeeper or etcd (tenants, namespaces,
//! topic metadata, policies, ownership), behind one trait so the broker does not care which
//! engine holds it.
//!
//! # What this crate owns
//! - [`MetadataStore`]: a versioned key-value store over path-shaped keys with compare-and-set
//!   ([`Expect`]), multi-key transactions ([`Txn`]), sessions ([`Session`]) with keys bound to
//!   them, child listing and prefix watches. It is dyn-compatible and used as
//!   `Arc<dyn MetadataStore>`.
//! - [`MemoryStore`]: a `BTreeMap` behind a mutex, for tests and in-process cluster tests.
//! - [`RedbStore`]: an embedded on-disk store (redb) for standalone nodes; every commit is
//!   durable before the call returns.
//! - `EtcdStore` (feature `etcd`): the store on an etcd v3 cluster, for cluster mode.
//! - [`record`]: the stored record format (`[format_version u8][version u64 BE][value]`) of
//!   the redb store, so an unknown format is an error, not a panic.
//! - [`conformance`]: one suite that every backend must pass, run from `tests/conformance.rs`
//!   (memory, redb) and `tests/etcd.rs` (a real etcd).
//! - `testkit` (feature `etcd`): starts a real etcd for tests, here and in the crates above.
//!
//! # What it must not depend on
//! Nothing of Magnetar and no wire protocol: no Kafka or Pulsar types, no broker names or
//! policies. Values are opaque bytes; the broker decides what they mean. Keys are plain paths.
//!
//! # Keys, values, versions
//! Keys are paths like `/admin/tenants/public` (see [`validate_key`]): they start with `/`, have
//! no empty, `.` or `..` segment, no trailing `/`, no control characters and are at most
//! [`KEY_LENGTH_BYTES_MAX`] bytes. Values are at most [`VALUE_SIZE_BYTES_MAX`] bytes. Each key
//! has a modification version: 1 on create, +1 per put. Like ZooKeeper, a key that is deleted
//! and created again starts at version 1 again, so a caller that holds a version across a
//! delete can see it match again (the ABA case); callers that care keep a generation inside the
//! value.
//!
//! # Transactions
//! [`MetadataStore::txn`] takes compares (a key absent, or at a version) and operations (put,
//! put bound to a session, delete), at most [`TXN_OPS_MAX`] of each, one operation per key and
//! at most [`TXN_SIZE_BYTES_MAX`] bytes of keys and values (etcd's limits, so a transaction
//! that one store accepts, every store accepts).
//! When every compare holds all operations commit at once (one etcd revision, one redb commit)
//! and the outcome gives each operation's version; otherwise nothing is applied and the error
//! names the first compare that failed, with the version it found. Keys and values are checked
//! before anything is sent. The broker's writes that must stop once it lost ownership compare
//! an epoch key (fencing): correctness rests on these compares, never on timing.
//!
//! # Sessions
//! [`MetadataStore::open_session`] opens a [`Session`] (an etcd lease; in the memory and redb
//! stores, a deadline on tokio's clock in this process) that a keep-alive task refreshes every
//! third of its TTL. Keys put with [`TxnOp::PutInSession`] are bound to it and deleted when it
//! ends: at once on [`Session::close`], or when the store lets it expire (watchers see them
//! deleted); a put into an ended session fails with [`MetadataError::SessionExpired`]. The
//! session's [`SessionState`] says what its owner may assume: `Fenced` when no refresh has
//! succeeded for the TTL minus [`fence_margin`] on this process's monotonic clock (the store
//! may have ended it; a later successful refresh makes it `Live` again), `Expired` when the
//! store said it is gone, `Closed` after `close`. The redb store records bound keys in its
//! file and deletes those of an earlier process when it opens.
//!
//! # Watches
//! [`MetadataStore::watch`] returns a [`Watch`] over a bounded broadcast buffer of
//! [`WATCH_BUFFER_EVENTS`] events. A watcher that falls behind gets one
//! [`WatchError::Lagged`] telling how many events it missed, then continues with the oldest
//! retained event; after a lag it must re-read what it cares about (get or list), because events
//! are notifications, not a replication log. Events are sent in commit order; a transaction
//! sends one event per key it changed.

pub mod conformance;
mod error;
#[cfg(feature = "etcd")]
mod etcd_store;
mod key;
mod memory;
pub mod record;
mod redb_store;
mod session;
#[cfg(feature = "etcd")]
pub mod testkit;
mod txn;
mod watch;

use async_trait::async_trait;
use bytes::Bytes;

pub use error::MetadataError;
#[cfg(feature = "etcd")]
pub use etcd_store::{EtcdOptions, EtcdStore};
pub use key::{validate_key, validate_path};
pub use memory::MemoryStore;
pub use redb_store::RedbStore;
pub use session::{
    fence_margin, RefreshObserver, Session, SessionId, SessionState, FENCE_MARGIN_MIN,
    SESSION_TTL_MAX, SESSION_TTL_MIN,
};
pub use txn::{Txn, TxnOp, TxnOutcome, TXN_OPS_MAX, TXN_SIZE_BYTES_MAX};
pub use watch::{Watch, WatchError};

/// Longest key accepted, in bytes. Paths in Pulsar's layout stay far below this; the bound keeps
/// a bad request from making the store hold or echo huge keys.
pub const KEY_LENGTH_BYTES_MAX: usize = 1024;

/// Largest value accepted, in bytes (1 MiB, ZooKeeper's default `jute.maxbuffer`). Metadata is
/// small; anything bigger belongs in the storage layer.
pub const VALUE_SIZE_BYTES_MAX: usize = 1024 * 1024;

/// Events a watch buffers before a slow watcher is told it lagged.
pub const WATCH_BUFFER_EVENTS: usize = 1024;

/// A value with its modification version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Bytes,
    /// 1 when the key is created, +1 per put.
    pub version: u64,
}

/// Precondition of a put or delete (compare-and-set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No precondition.
    Any,
    /// The key must not exist (create).
    Absent,
    /// The key must exist with exactly this version.
    Version(u64),
}

impl Expect {
    /// Checks a put against the current version of `key` (`None` when absent) and returns the
    /// version the put will store.
    pub(crate) fn check_put(self, key: &str, current: Option<u64>) -> Result<u64, MetadataError> {
        let ok = match self {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Version(version) => current == Some(version),
        };
        if !ok {
            return Err(self.bad_version(key, current));
        }
        match current {
            None => Ok(1),
            Some(version) => version
                .checked_add(1)
                .ok_or_else(|| MetadataError::Storage(format!("version of key {key} overflowed"))),
        }
    }

    /// Checks a delete against the current version of `key`. An absent key is always
    /// [`MetadataError::NotFound`], whatever the expectation.
    pub(crate) fn check_delete(
        self,
        key: &str,
        current: Option<u64>,
    ) -> Result<u64, MetadataError> {
        let Some(version) = current else {
            return Err(MetadataError::NotFound {
                key: key.to_string(),
            });
        };
        match self {
            Expect::Any => Ok(version),
            Expect::Version(expected) if expected == version => Ok(version),
            Expect::Absent | Expect::Version(_) => Err(self.bad_version(key, current)),
        }
    }

    fn bad_version(self, key: &str, actual: Option<u64>) -> MetadataError {
        MetadataError::BadVersion {
            key: key.to_string(),
            expected: match self {
                Expect::Version(version) => Some(version),
                Expect::Any | Expect::Absent => None,
            },
            actual,
        }
    }
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    Created,
    Modified,
    Deleted,
}

/// A change to one key, as seen by a [`Watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub key: String,
    pub kind: EventKind,
    /// The new version for `Created` and `Modified`; the last version the key had for
    /// `Deleted`.
    pub version: u64,
}

/// A versioned metadata store over path-shaped keys.
///
/// Every operation validates its key first ([`MetadataError::InvalidKey`]) and returns
/// [`MetadataError::Closed`] after [`close`](MetadataStore::close). Operations on one store are
/// linearizable: a put or delete that returned is seen by every later call.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// The value and version of `key`, or `None` when it does not exist.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, MetadataError>;

    /// Stores `value` at `key` if `expect` holds and returns the new version (1 on create).
    ///
    /// Fails with [`MetadataError::BadVersion`] when `Expect::Absent` meets an existing key or
    /// `Expect::Version(n)` meets another version or no key, and with
    /// [`MetadataError::ValueTooLarge`] above [`VALUE_SIZE_BYTES_MAX`].
    async fn put(&self, key: &str, value: Bytes, expect: Expect) -> Result<u64, MetadataError>;

    /// Removes `key` if `expect` holds.
    ///
    /// An absent key is [`MetadataError::NotFound`] for every expectation (also `Expect::Any`),
    /// so a caller learns that someone else deleted it first. `Expect::Version(n)` on another
    /// version and `Expect::Absent` on an existing key are [`MetadataError::BadVersion`].
    /// Keys beneath `key` are not touched.
    async fn delete(&self, key: &str, expect: Expect) -> Result<(), MetadataError>;

    /// Names (not full keys) of the direct children of `path`, sorted bytewise and without
    /// duplicates. `path` is a key or `/` (the root). A child exists when any key lies beneath
    /// it, like a ZooKeeper path whose parent nodes are implied: with only `/a/b/c` stored,
    /// `list_children("/a")` is `["b"]`. A path with no children gives an empty list.
    async fn list_children(&self, path: &str) -> Result<Vec<String>, MetadataError>;

    /// Whether `key` itself exists (a key that only has keys beneath it does not).
    async fn exists(&self, key: &str) -> Result<bool, MetadataError>;

    /// Applies a multi-key [`Txn`]: when every compare holds, all its operations in one atomic
    /// commit (watchers see each changed key's event); otherwise nothing, and
    /// [`MetadataError::BadVersion`] names the first compare that failed. More than
    /// [`TXN_OPS_MAX`] compares or operations is [`MetadataError::TxnTooLarge`], more than
    /// [`TXN_SIZE_BYTES_MAX`] bytes of keys and values [`MetadataError::TxnSizeTooLarge`]; two
    /// operations on one key is [`MetadataError::InvalidKey`].
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, MetadataError>;

    /// Opens a session of `ttl` (at least [`SESSION_TTL_MIN`], at most [`SESSION_TTL_MAX`];
    /// a store may round it up, see [`Session::ttl`]) and starts its keep-alive. Keys put with
    /// [`TxnOp::PutInSession`] are deleted when it ends. Needs a tokio runtime.
    async fn open_session(&self, ttl: std::time::Duration) -> Result<Session, MetadataError>;

    /// Watches every key equal to `prefix` or beneath it (`/` watches all keys). Only changes
    /// committed after this call are reported. The watch ends with [`WatchError::Closed`] when
    /// the store closes.
    fn watch(&self, prefix: &str) -> Result<Watch, MetadataError>;

    /// Closes the store: waits for operations in flight, flushes, releases files and ends every
    /// watch. Later calls fail with [`MetadataError::Closed`]; closing again is `Ok`.
    async fn close(&self) -> Result<(), MetadataError>;
}

/// Checks the size of a value about to be stored at `key`.
pub(crate) fn validate_value(key: &str, value: &[u8]) -> Result<(), MetadataError> {
    if value.len() > VALUE_SIZE_BYTES_MAX {
        return Err(MetadataError::ValueTooLarge {
            key: key.to_string(),
            size: value.len(),
            max: VALUE_SIZE_BYTES_MAX,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_expectations() {
        assert_eq!(Expect::Any.check_put("/k", None), Ok(1));
        assert_eq!(Expect::Any.check_put("/k", Some(4)), Ok(5));
        assert_eq!(Expect::Absent.check_put("/k", None), Ok(1));
        assert_eq!(Expect::Version(4).check_put("/k", Some(4)), Ok(5));
        assert_eq!(
            Expect::Absent.check_put("/k", Some(2)),
            Err(MetadataError::BadVersion {
                key: "/k".into(),
                expected: None,
                actual: Some(2)
            })
        );
        assert_eq!(
            Expect::Version(1).check_put("/k", None),
            Err(MetadataError::BadVersion {
                key: "/k".into(),
                expected: Some(1),
                actual: None
            })
        );
        assert!(matches!(
            Expect::Any.check_put("/k", Some(u64::MAX)),
            Err(MetadataError::Storage(_))
        ));
    }

    #[test]
    fn delete_expectations() {
        for expect in [Expect::Any, Expect::Absent, Expect::Version(1)] {
            assert_eq!(
                expect.check_delete("/k", None),
                Err(MetadataError::NotFound { key: "/k".into() })
            );
        }
        assert_eq!(Expect::Any.check_delete("/k", Some(3)), Ok(3));
        assert_eq!(Expect::Version(3).check_delete("/k", Some(3)), Ok(3));
        assert!(matches!(
            Expect::Version(2).check_delete("/k", Some(3)),
            Err(MetadataError::BadVersion { .. })
        ));
        assert!(matches!(
            Expect::Absent.check_delete("/k", Some(3)),
            Err(MetadataError::BadVersion { .. })
        ));
    }
}
