//! Multi-key transactions: compares on the version or absence of keys, then puts and deletes
//! that are applied all together or not at all (etcd's `Txn`, ZooKeeper's `multi`).

use bytes::Bytes;

use crate::{validate_key, validate_value, Expect, MetadataError, SessionId, VALUE_SIZE_BYTES_MAX};

/// Most compares, and most operations, one transaction may hold (etcd's default
/// `--max-txn-ops`, so a transaction that passes here also passes there).
pub const TXN_OPS_MAX: usize = 128;

/// Most bytes of keys and values one transaction may carry (compared keys, operated keys and
/// put values together): 1.25 MiB, so that with etcd's framing it stays under etcd's default
/// `--max-request-bytes` (1.5 MiB) while a single value of [`VALUE_SIZE_BYTES_MAX`] still fits.
pub const TXN_SIZE_BYTES_MAX: usize = VALUE_SIZE_BYTES_MAX + 256 * 1024;

/// A change made by a transaction whose compares all held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Stores `value` at `key` (created at version 1, or the next version).
    Put { key: String, value: Bytes },
    /// Stores `value` at `key` bound to `session`: the key is deleted when the session ends
    /// (closed or expired). A later put without a session unbinds it. Fails with
    /// [`MetadataError::SessionExpired`] (nothing applied) when the compares hold but the
    /// store no longer has the session.
    PutInSession {
        key: String,
        value: Bytes,
        session: SessionId,
    },
    /// Removes `key`; removing an absent key is not an error (there is nothing to remove). To
    /// require the key, compare it.
    Delete { key: String },
}

impl TxnOp {
    pub fn put(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        TxnOp::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    pub fn put_in_session(
        key: impl Into<String>,
        value: impl Into<Bytes>,
        session: SessionId,
    ) -> Self {
        TxnOp::PutInSession {
            key: key.into(),
            value: value.into(),
            session,
        }
    }

    pub fn delete(key: impl Into<String>) -> Self {
        TxnOp::Delete { key: key.into() }
    }

    pub fn key(&self) -> &str {
        match self {
            TxnOp::Put { key, .. } | TxnOp::PutInSession { key, .. } | TxnOp::Delete { key } => key,
        }
    }
}

/// A transaction: every compare must hold, then every operation is applied atomically (one
/// commit, one revision on etcd). When a compare fails nothing is applied and the call returns
/// [`MetadataError::BadVersion`] for the first compare (in order) that failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// `(key, expectation)`: `Expect::Absent` (the key must not exist) or `Expect::Version(n)`
    /// (it must exist at version `n`). `Expect::Any` compares nothing.
    pub compares: Vec<(String, Expect)>,
    /// At most one operation per key.
    pub ops: Vec<TxnOp>,
}

impl Txn {
    pub fn new() -> Self {
        Txn::default()
    }

    /// Adds a compare.
    pub fn when(mut self, key: impl Into<String>, expect: Expect) -> Self {
        self.compares.push((key.into(), expect));
        self
    }

    /// Adds an operation.
    pub fn then(mut self, op: TxnOp) -> Self {
        self.ops.push(op);
        self
    }

    /// Checks keys, values, the size limits and that no key has two operations.
    pub(crate) fn validate(&self) -> Result<(), MetadataError> {
        if self.compares.len() > TXN_OPS_MAX || self.ops.len() > TXN_OPS_MAX {
            return Err(MetadataError::TxnTooLarge {
                compares: self.compares.len(),
                ops: self.ops.len(),
                max: TXN_OPS_MAX,
            });
        }
        let size_bytes = self.size_bytes();
        if size_bytes > TXN_SIZE_BYTES_MAX {
            return Err(MetadataError::TxnSizeTooLarge {
                size_bytes,
                max_bytes: TXN_SIZE_BYTES_MAX,
            });
        }
        for (key, _) in &self.compares {
            validate_key(key)?;
        }
        let mut keys = std::collections::BTreeSet::new();
        for op in &self.ops {
            validate_key(op.key())?;
            if let TxnOp::Put { key, value } | TxnOp::PutInSession { key, value, .. } = op {
                validate_value(key, value)?;
            }
            if !keys.insert(op.key()) {
                return Err(MetadataError::InvalidKey {
                    key: op.key().to_string(),
                    reason: "a transaction has more than one operation on this key".into(),
                });
            }
        }
        Ok(())
    }

    /// Bytes of the compared keys, operated keys and put values.
    pub fn size_bytes(&self) -> usize {
        let compared: usize = self.compares.iter().map(|(key, _)| key.len()).sum();
        let operated: usize = self
            .ops
            .iter()
            .map(|op| match op {
                TxnOp::Put { key, value } | TxnOp::PutInSession { key, value, .. } => {
                    key.len() + value.len()
                }
                TxnOp::Delete { key } => key.len(),
            })
            .sum();
        compared + operated
    }

    /// The sessions the operations bind keys to, in operation order.
    pub(crate) fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.ops.iter().filter_map(|op| match op {
            TxnOp::PutInSession { session, .. } => Some(*session),
            TxnOp::Put { .. } | TxnOp::Delete { .. } => None,
        })
    }

    /// The first compare that does not hold, given each compared key's current version.
    pub(crate) fn first_failure(
        &self,
        mut current: impl FnMut(&str) -> Result<Option<u64>, MetadataError>,
    ) -> Result<Option<MetadataError>, MetadataError> {
        for (key, expect) in &self.compares {
            let version = current(key)?;
            let holds = match expect {
                Expect::Any => true,
                Expect::Absent => version.is_none(),
                Expect::Version(v) => version == Some(*v),
            };
            if !holds {
                return Ok(Some(MetadataError::BadVersion {
                    key: key.clone(),
                    expected: match expect {
                        Expect::Version(v) => Some(*v),
                        Expect::Any | Expect::Absent => None,
                    },
                    actual: version,
                }));
            }
        }
        Ok(None)
    }
}

/// What a committed transaction did: per operation, in order, the version a put stored, or for
/// a delete the version the key had (`None` when it was already absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOutcome {
    pub versions: Vec<Option<u64>>,
}
