//! [`MemoryStore`]: the whole store in a `BTreeMap` behind a mutex.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::key::list_children_with;
use crate::session::{next_local_session_id, validate_ttl, Lease};
use crate::watch::EventHub;
use crate::{
    validate_key, validate_path, validate_value, Event, EventKind, Expect, MetadataError,
    MetadataStore, Session, SessionId, Txn, TxnOp, TxnOutcome, Versioned, Watch,
    WATCH_BUFFER_EVENTS,
};

/// An in-memory [`MetadataStore`] for tests and in-process cluster tests. Nothing survives a
/// drop. The mutex is never held across an `.await`, so a plain `std` mutex is right here.
///
/// Sessions run on tokio's clock (`tokio::time::Instant`), so a test with paused time drives
/// their expiry; [`MemoryStore::expire_session`] ends one at once, as a lost lease would.
#[derive(Debug)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    entries: BTreeMap<String, Versioned>,
    events: EventHub,
    closed: bool,
    sessions: BTreeMap<u64, SessionRecord>,
    /// Key -> the session it is bound to.
    bound: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct SessionRecord {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
    /// Ends the session at its deadline even when nobody calls the store.
    reaper: Option<JoinHandle<()>>,
}

impl State {
    /// Forgets that `key` is bound to a session.
    fn unbind(&mut self, key: &str) {
        if let Some(id) = self.bound.remove(key) {
            if let Some(session) = self.sessions.get_mut(&id) {
                session.keys.remove(key);
            }
        }
    }

    /// Ends session `id`: deletes its keys (with events). Whether it existed.
    fn end_session(&mut self, id: u64) -> bool {
        let Some(session) = self.sessions.remove(&id) else {
            return false;
        };
        if let Some(reaper) = session.reaper {
            reaper.abort();
        }
        for key in session.keys {
            self.bound.remove(&key);
            if let Some(entry) = self.entries.remove(&key) {
                self.events.send(Event {
                    key,
                    kind: EventKind::Deleted,
                    version: entry.version,
                });
            }
        }
        true
    }

    /// Ends every session whose deadline has passed.
    fn expire_due(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, session)| session.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.end_session(id);
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_watch_buffer_events(WATCH_BUFFER_EVENTS)
    }

    /// A store whose watches buffer `buffer_events` events before they lag (tests use a small
    /// buffer to see [`crate::WatchError::Lagged`]).
    pub fn with_watch_buffer_events(buffer_events: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                entries: BTreeMap::new(),
                events: EventHub::new(buffer_events),
                closed: false,
                sessions: BTreeMap::new(),
                bound: BTreeMap::new(),
            })),
        }
    }

    /// Locks the state of an open store, first ending the sessions whose deadline passed.
    fn open_state(&self) -> Result<MutexGuard<'_, State>, MetadataError> {
        lock_open(&self.state)
    }

    /// Test hook: ends session `id` now, as if its lease were lost (its keys are deleted and
    /// its keep-alive then finds it gone). Whether the session existed.
    pub fn expire_session(&self, id: SessionId) -> bool {
        match self.open_state() {
            Ok(mut state) => state.end_session(id.0),
            Err(_) => false,
        }
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for session in state.sessions.values_mut() {
            if let Some(reaper) = session.reaper.take() {
                reaper.abort();
            }
        }
    }
}

fn lock_open(state: &Mutex<State>) -> Result<MutexGuard<'_, State>, MetadataError> {
    // A panic while the lock was held cannot leave the map half-written (every change is
    // one insert or remove), so a poisoned lock is still usable.
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    if state.closed {
        return Err(MetadataError::Closed);
    }
    state.expire_due(Instant::now());
    Ok(state)
}

/// Sleeps until session `id`'s deadline, again while it is refreshed, and ends it once due.
async fn reap(state: Weak<Mutex<State>>, id: u64) {
    loop {
        let deadline = {
            let Some(state) = state.upgrade() else { return };
            let Ok(state) = lock_open(&state) else { return };
            match state.sessions.get(&id) {
                Some(session) => session.deadline,
                None => return,
            }
        };
        tokio::time::sleep_until(deadline).await;
    }
}

/// The store's side of a memory session.
struct MemoryLease {
    state: Weak<Mutex<State>>,
    id: u64,
}

#[async_trait]
impl Lease for MemoryLease {
    async fn refresh(&self) -> Result<bool, MetadataError> {
        let state = self.state.upgrade().ok_or(MetadataError::Closed)?;
        let mut state = lock_open(&state)?;
        Ok(match state.sessions.get_mut(&self.id) {
            Some(session) => {
                session.deadline = Instant::now() + session.ttl;
                true
            }
            None => false,
        })
    }

    async fn revoke(&self) -> Result<(), MetadataError> {
        if let Some(state) = self.state.upgrade() {
            if let Ok(mut state) = lock_open(&state) {
                state.end_session(self.id);
            }
        }
        Ok(())
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
        state.unbind(key);
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
        state.unbind(key);
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
        if let Some(session) = txn
            .sessions()
            .find(|session| !state.sessions.contains_key(&session.0))
        {
            return Err(MetadataError::SessionExpired { session });
        }
        // Versions are computed before anything changes, so a failure (an overflow) leaves the
        // map untouched.
        let mut versions = Vec::with_capacity(txn.ops.len());
        for op in &txn.ops {
            let current = state.entries.get(op.key()).map(|e| e.version);
            versions.push(match op {
                TxnOp::Put { key, .. } | TxnOp::PutInSession { key, .. } => {
                    Some(Expect::Any.check_put(key, current)?)
                }
                TxnOp::Delete { .. } => current,
            });
        }
        for (op, version) in txn.ops.into_iter().zip(versions.iter().copied()) {
            let bound_to = match &op {
                TxnOp::PutInSession { session, .. } => Some(*session),
                TxnOp::Put { .. } | TxnOp::Delete { .. } => None,
            };
            match op {
                TxnOp::Put { key, value } | TxnOp::PutInSession { key, value, .. } => {
                    state.unbind(&key);
                    if let Some(session) = bound_to {
                        if let Some(record) = state.sessions.get_mut(&session.0) {
                            record.keys.insert(key.clone());
                        }
                        state.bound.insert(key.clone(), session.0);
                    }
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
                        state.unbind(&key);
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

    async fn open_session(&self, ttl: Duration) -> Result<Session, MetadataError> {
        validate_ttl(ttl)?;
        let now = Instant::now();
        let id = {
            let mut state = self.open_state()?;
            let id = next_local_session_id();
            let reaper = tokio::spawn(reap(Arc::downgrade(&self.state), id));
            state.sessions.insert(
                id,
                SessionRecord {
                    ttl,
                    deadline: now + ttl,
                    keys: BTreeSet::new(),
                    reaper: Some(reaper),
                },
            );
            id
        };
        let lease = Arc::new(MemoryLease {
            state: Arc::downgrade(&self.state),
            id,
        });
        Ok(Session::start(SessionId(id), ttl, lease, now))
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
        for session in std::mem::take(&mut state.sessions).into_values() {
            if let Some(reaper) = session.reaper {
                reaper.abort();
            }
        }
        state.bound.clear();
        state.entries.clear();
        state.events.close();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SessionState, WatchError};

    /// Sessions run on tokio's clock: with time paused, a session that is not refreshed
    /// fences itself at `ttl - margin` and its key goes at `ttl`; a refreshed one lives on.
    #[tokio::test(start_paused = true)]
    async fn sessions_run_on_tokio_time() {
        let store = MemoryStore::new();
        let ttl = Duration::from_secs(10);
        let kept = store.open_session(ttl).await.unwrap();
        let lost = store.open_session(ttl).await.unwrap();
        let txn = Txn::new()
            .then(TxnOp::put_in_session("/s/kept", "k", kept.id()))
            .then(TxnOp::put_in_session("/s/lost", "l", lost.id()));
        store.txn(txn).await.unwrap();
        let mut watch = store.watch("/s").unwrap();
        lost.stop_keep_alive_for_test();
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(lost.current_state(), SessionState::Fenced);
        assert!(store.exists("/s/lost").await.unwrap());
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The reaper deleted it at the deadline, without any call to the store.
        assert_eq!(
            watch.try_recv(),
            Ok(Some(Event {
                key: "/s/lost".into(),
                kind: EventKind::Deleted,
                version: 1
            }))
        );
        assert!(!store.exists("/s/lost").await.unwrap());
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(kept.current_state(), SessionState::Live);
        assert!(store.exists("/s/kept").await.unwrap());
        kept.close().await.unwrap();
        assert!(!store.exists("/s/kept").await.unwrap());
    }

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
