//! [`MemoryStore`]: the whole store in a `BTreeMap` behind a mutex.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use crate::key::list_children_with;
use crate::watch::EventHub;
use crate::{
    validate_key, validate_path, validate_value, Event, EventKind, Expect, MetadataError,
    MetadataStore, Txn, TxnOp, TxnOutcome, Versioned, Watch, WATCH_BUFFER_EVENTS,
};

/// An in-memory [`MetadataStore`] for tests and in-process cluster tests. Nothing survives a
/// drop. The mutex is never held across an `.await`, so a plain `std` mutex is right here.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    entries: BTreeMap<String, Versioned>,
    events: EventHub,
    closed: bool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_watch_buffer_events(WATCH_BUFFER_EVENTS)
    }

    /// A store whose watches buffer `buffer_events` events before they lag (tests use a small
    /// buffer to see [`crate::WatchError::Lagged`]).
    pub fn with_watch_buffer_events(buffer_events: usize) -> Self {
        Self {
            state: Mutex::new(State {
                entries: BTreeMap::new(),
                events: EventHub::new(buffer_events),
                closed: false,
            }),
        }
    }

    /// Locks the state of an open store.
    fn open_state(&self) -> Result<MutexGuard<'_, State>, MetadataError> {
        // A panic while the lock was held cannot leave the map half-written (every change is
        // one insert or remove), so a poisoned lock is still usable.
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.closed {
            return Err(MetadataError::Closed);
        }
        Ok(state)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl MetadataStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, MetadataError> {
        validate_key(key)?;
        Ok(self.open_state()?.entries.get(key).cloned())
    }

    async fn put(&self, key: &str, value: Bytes, expect: Expect) -> Result<u64, MetadataError> {
        validate_key(key)?;
        validate_value(key, &value)?;
        let mut state = self.open_state()?;
        let current = state.entries.get(key).map(|entry| entry.version);
        let version = expect.check_put(key, current)?;
        state
            .entries
            .insert(key.to_string(), Versioned { value, version });
        state.events.send(Event {
            key: key.to_string(),
            kind: if current.is_none() {
                EventKind::Created
            } else {
                EventKind::Modified
            },
            version,
        });
        Ok(version)
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<(), MetadataError> {
        validate_key(key)?;
        let mut state = self.open_state()?;
        let current = state.entries.get(key).map(|entry| entry.version);
        let version = expect.check_delete(key, current)?;
        state.entries.remove(key);
        state.events.send(Event {
            key: key.to_string(),
            kind: EventKind::Deleted,
            version,
        });
        Ok(())
    }

    async fn list_children(&self, path: &str) -> Result<Vec<String>, MetadataError> {
        validate_path(path)?;
        let state = self.open_state()?;
        list_children_with(path, |start, end| {
            Ok(state
                .entries
                .range::<str, _>((Bound::Included(start), Bound::Excluded(end)))
                .next()
                .map(|(key, _)| key.clone()))
        })
    }

    async fn exists(&self, key: &str) -> Result<bool, MetadataError> {
        validate_key(key)?;
        Ok(self.open_state()?.entries.contains_key(key))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, MetadataError> {
        txn.validate()?;
        let mut state = self.open_state()?;
        let failure = txn.first_failure(|key| Ok(state.entries.get(key).map(|e| e.version)))?;
        if let Some(failure) = failure {
            return Err(failure);
        }
        // Versions are computed before anything changes, so a failure (an overflow) leaves the
        // map untouched.
        let mut versions = Vec::with_capacity(txn.ops.len());
        for op in &txn.ops {
            let current = state.entries.get(op.key()).map(|e| e.version);
            versions.push(match op {
                TxnOp::Put { key, .. } => Some(Expect::Any.check_put(key, current)?),
                TxnOp::Delete { .. } => current,
            });
        }
        for (op, version) in txn.ops.into_iter().zip(versions.iter().copied()) {
            match op {
                TxnOp::Put { key, value } => {
                    let version = version.unwrap_or(1);
                    let kind = if version == 1 {
                        EventKind::Created
                    } else {
                        EventKind::Modified
                    };
                    state
                        .entries
                        .insert(key.clone(), Versioned { value, version });
                    state.events.send(Event { key, kind, version });
                }
                TxnOp::Delete { key } => {
                    if let Some(version) = version {
                        state.entries.remove(&key);
                        state.events.send(Event {
                            key,
                            kind: EventKind::Deleted,
                            version,
                        });
                    }
                }
            }
        }
        Ok(TxnOutcome { versions })
    }

    fn watch(&self, prefix: &str) -> Result<Watch, MetadataError> {
        validate_path(prefix)?;
        self.open_state()?
            .events
            .subscribe(prefix)
            .ok_or(MetadataError::Closed)
    }

    async fn close(&self) -> Result<(), MetadataError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.closed = true;
        state.entries.clear();
        state.events.close();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WatchError;

    #[tokio::test]
    async fn slow_watcher_is_told_it_lagged_then_continues() {
        let store = MemoryStore::with_watch_buffer_events(2);
        let mut watch = store.watch("/a").unwrap();
        for i in 0..5u8 {
            store
                .put("/a/k", Bytes::from(vec![i]), Expect::Any)
                .await
                .unwrap();
        }
        assert_eq!(
            watch.recv().await,
            Err(WatchError::Lagged { missed_events: 3 })
        );
        assert_eq!(watch.recv().await.unwrap().version, 4);
        assert_eq!(watch.recv().await.unwrap().version, 5);
        assert_eq!(watch.try_recv(), Ok(None));
    }
}
