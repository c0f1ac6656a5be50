//! [`RedbStore`]: the store in one embedded redb file, for standalone nodes.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::key::list_children_with;
use crate::session::{next_local_session_id, validate_ttl, Lease};
use crate::watch::EventHub;
use crate::{
    record, validate_key, validate_path, validate_value, Event, EventKind, Expect, MetadataError,
    MetadataStore, Session, SessionId, Txn, TxnOp, TxnOutcome, Versioned, Watch,
    WATCH_BUFFER_EVENTS,
};

/// Key -> [`record`] bytes.
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

/// Key bound to a session -> the session. Sessions live in one process, so the bindings left
/// in the file by an earlier process are of dead sessions: [`RedbStore::open`] deletes those
/// keys.
const SESSION_KEYS: TableDefinition<&str, u64> = TableDefinition::new("session_keys");

/// Page cache of the database. Metadata is small; redb's default (1 GiB) is meant for data.
const CACHE_SIZE_BYTES: usize = 64 * 1024 * 1024;

/// An on-disk [`MetadataStore`] in one redb file.
///
/// Every redb call blocks (and every commit fsyncs), so each operation runs on tokio's blocking
/// pool with `spawn_blocking`. A put or delete returns after its commit is durable
/// (`Durability::Immediate`). A put or delete whose future is dropped may still commit, as with
/// any remote store.
///
/// Sessions are kept in this process on tokio's clock, like [`crate::MemoryStore`]'s; the
/// keys bound to them are recorded in the file, so keys bound by a process that ended are
/// deleted when the file is opened again.
pub struct RedbStore {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    /// `None` after close. Operations hold the read side while they run, so close (the write
    /// side) waits for them and then releases the file.
    database: RwLock<Option<Database>>,
    /// Held from the start of a write transaction until its event is sent, so events leave in
    /// commit order. redb serializes writers anyway; this adds only the send.
    write_order: Mutex<()>,
    events: Mutex<EventHub>,
    closed: AtomicBool,
    sessions: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    live: HashMap<u64, SessionRecord>,
}

struct SessionRecord {
    ttl: Duration,
    deadline: Instant,
    /// Ends the session at its deadline even when nobody calls the store.
    reaper: JoinHandle<()>,
}

impl RedbStore {
    /// Opens the database at `path`, creating the file when it does not exist.
    ///
    /// The open checks every page checksum (redb's integrity check), so a file damaged outside
    /// redb fails with [`MetadataError::Storage`] instead of panicking later; metadata files are
    /// small enough for this to be cheap. The file is locked: a second open of the same path
    /// fails until the first store is closed or dropped.
    pub async fn open(path: &Path) -> Result<Self, MetadataError> {
        let path = path.to_path_buf();
        let database = tokio::task::spawn_blocking({
            let path = path.clone();
            move || open_database(&path)
        })
        .await
        .map_err(task_failed)??;
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                database: RwLock::new(Some(database)),
                write_order: Mutex::new(()),
                events: Mutex::new(EventHub::new(WATCH_BUFFER_EVENTS)),
                closed: AtomicBool::new(false),
                sessions: Mutex::new(Sessions {
                    live: HashMap::new(),
                }),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Runs `work` against the open database on the blocking pool, first ending the sessions
    /// whose deadline passed.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Shared, &Database) -> Result<T, MetadataError> + Send + 'static,
    ) -> Result<T, MetadataError> {
        let shared = Arc::clone(&self.shared);
        let now = Instant::now();
        tokio::task::spawn_blocking(move || {
            let database = shared.database.read().unwrap_or_else(|e| e.into_inner());
            let database = database.as_ref().ok_or(MetadataError::Closed)?;
            shared.end_due_sessions(database, now)?;
            work(&shared, database)
        })
        .await
        .map_err(task_failed)?
    }

    /// Test hook: ends session `id` now, as if its lease were lost (its keys are deleted and
    /// its keep-alive then finds it gone). Whether the session existed.
    pub async fn expire_session(&self, id: SessionId) -> Result<bool, MetadataError> {
        let existed = self.shared.forget_session(id.0);
        self.run(move |shared, database| shared.end_sessions(database, &[id.0]))
            .await?;
        Ok(existed)
    }
}

/// The store's side of a redb session.
struct RedbLease {
    shared: Weak<Shared>,
    id: u64,
}

#[async_trait]
impl Lease for RedbLease {
    async fn refresh(&self) -> Result<bool, MetadataError> {
        let shared = self.shared.upgrade().ok_or(MetadataError::Closed)?;
        if shared.closed.load(Ordering::Acquire) {
            return Err(MetadataError::Closed);
        }
        let now = Instant::now();
        let mut sessions = shared.sessions.lock().unwrap_or_else(|e| e.into_inner());
        Ok(match sessions.live.get_mut(&self.id) {
            Some(session) if session.deadline > now => {
                session.deadline = now + session.ttl;
                true
            }
            // Due: the next operation or the reaper deletes its keys.
            Some(_) | None => false,
        })
    }

    async fn revoke(&self) -> Result<(), MetadataError> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        shared.forget_session(self.id);
        let id = self.id;
        tokio::task::spawn_blocking(move || {
            let database = shared.database.read().unwrap_or_else(|e| e.into_inner());
            match database.as_ref() {
                Some(database) => shared.end_sessions(database, &[id]),
                None => Ok(()),
            }
        })
        .await
        .map_err(task_failed)?
    }
}

/// Sleeps until session `id`'s deadline, again while it is refreshed, and ends it once due.
async fn reap(shared: Weak<Shared>, id: u64) {
    loop {
        let deadline = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let sessions = shared.sessions.lock().unwrap_or_else(|e| e.into_inner());
            match sessions.live.get(&id) {
                Some(session) => session.deadline,
                None => return,
            }
        };
        tokio::time::sleep_until(deadline).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        let ended = tokio::task::spawn_blocking(move || {
            let database = shared.database.read().unwrap_or_else(|e| e.into_inner());
            match database.as_ref() {
                Some(database) => shared.end_due_sessions(database, now),
                None => Ok(()),
            }
        })
        .await;
        match ended {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, session = id, "ending a session failed"),
            Err(e) => tracing::warn!(error = %e, session = id, "ending a session failed"),
        }
    }
}

fn open_database(path: &Path) -> Result<Database, MetadataError> {
    let database = Database::builder()
        .set_cache_size(CACHE_SIZE_BYTES)
        .set_check_integrity_on_open(true)
        .create(path)
        .map_err(|e| MetadataError::Storage(format!("cannot open {}: {e}", path.display())))?;
    // Create the tables up front so that reads never meet a missing table, and delete the
    // keys bound to sessions of an earlier process (they are dead).
    let mut transaction = database.begin_write().map_err(storage)?;
    transaction
        .set_durability(Durability::Immediate)
        .map_err(storage)?;
    let orphans = {
        let mut entries = transaction.open_table(ENTRIES).map_err(storage)?;
        let mut bindings = transaction.open_table(SESSION_KEYS).map_err(storage)?;
        let mut orphans = 0usize;
        for binding in bindings.iter().map_err(storage)? {
            let (key, _) = binding.map_err(storage)?;
            entries.remove(key.value()).map_err(storage)?;
            orphans += 1;
        }
        bindings.retain(|_, _| false).map_err(storage)?;
        orphans
    };
    transaction.commit().map_err(storage)?;
    if orphans > 0 {
        tracing::info!(
            path = %path.display(),
            keys = orphans,
            "deleted keys bound to sessions of an earlier process"
        );
    }
    Ok(database)
}

impl Shared {
    /// Removes session `id` from the live ones (its keys are still to be deleted). Whether it
    /// was live.
    fn forget_session(&self, id: u64) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.live.remove(&id) {
            Some(session) => {
                session.reaper.abort();
                true
            }
            None => false,
        }
    }

    /// Whether session `id` is live at `now`.
    fn session_live(&self, id: u64, now: Instant) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .live
            .get(&id)
            .is_some_and(|session| session.deadline > now)
    }

    /// Ends the sessions whose deadline passed at `now`: forgets them, then deletes their keys.
    fn end_due_sessions(&self, database: &Database, now: Instant) -> Result<(), MetadataError> {
        let due: Vec<u64> = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let due: Vec<u64> = sessions
                .live
                .iter()
                .filter(|(_, session)| session.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in &due {
                // Not aborted: the reaper may be the caller, and it stops by itself once the
                // session is gone.
                sessions.live.remove(id);
            }
            due
        };
        if due.is_empty() {
            return Ok(());
        }
        self.end_sessions(database, &due)
    }

    /// Deletes the keys bound to sessions `ids` (already forgotten) in one commit.
    fn end_sessions(&self, database: &Database, ids: &[u64]) -> Result<(), MetadataError> {
        let _order = self.write_order.lock().unwrap_or_else(|e| e.into_inner());
        let mut transaction = database.begin_write().map_err(storage)?;
        transaction
            .set_durability(Durability::Immediate)
            .map_err(storage)?;
        let mut events = Vec::new();
        {
            let mut entries = transaction.open_table(ENTRIES).map_err(storage)?;
            let mut bindings = transaction.open_table(SESSION_KEYS).map_err(storage)?;
            let mut keys = Vec::new();
            for binding in bindings.iter().map_err(storage)? {
                let (key, session) = binding.map_err(storage)?;
                if ids.contains(&session.value()) {
                    keys.push(key.value().to_string());
                }
            }
            for key in keys {
                bindings.remove(key.as_str()).map_err(storage)?;
                let version = current_version(&entries, &key)?;
                if let Some(version) = version {
                    entries.remove(key.as_str()).map_err(storage)?;
                    events.push(Event {
                        key,
                        kind: EventKind::Deleted,
                        version,
                    });
                }
            }
        }
        transaction.commit().map_err(storage)?;
        for event in events {
            self.send(event);
        }
        Ok(())
    }

    fn send(&self, event: Event) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(event);
    }
}

/// Reads the version stored at `key` inside a write transaction.
fn current_version(
    table: &redb::Table<&str, &[u8]>,
    key: &str,
) -> Result<Option<u64>, MetadataError> {
    let stored = table.get(key).map_err(storage)?;
    stored
        .map(|record| record::decode_version(key, record.value()))
        .transpose()
}

#[async_trait]
impl MetadataStore for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, MetadataError> {
        validate_key(key)?;
        let key = key.to_string();
        self.run(move |_, database| {
            let transaction = database.begin_read().map_err(storage)?;
            let table = transaction.open_table(ENTRIES).map_err(storage)?;
            let stored = table.get(key.as_str()).map_err(storage)?;
            stored
                .map(|record| record::decode(&key, record.value()))
                .transpose()
        })
        .await
    }

    async fn put(&self, key: &str, value: Bytes, expect: Expect) -> Result<u64, MetadataError> {
        validate_key(key)?;
        validate_value(key, &value)?;
        let key = key.to_string();
        self.run(move |shared, database| {
            let _order = shared.write_order.lock().unwrap_or_else(|e| e.into_inner());
            let mut transaction = database.begin_write().map_err(storage)?;
            transaction
                .set_durability(Durability::Immediate)
                .map_err(storage)?;
            let (current, version) = {
                let mut table = transaction.open_table(ENTRIES).map_err(storage)?;
                let current = current_version(&table, &key)?;
                let version = expect.check_put(&key, current)?;
                table
                    .insert(key.as_str(), record::encode(version, &value).as_slice())
                    .map_err(storage)?;
                // A put without a session unbinds the key.
                let mut bindings = transaction.open_table(SESSION_KEYS).map_err(storage)?;
                bindings.remove(key.as_str()).map_err(storage)?;
                (current, version)
            };
            transaction.commit().map_err(storage)?;
            shared.send(Event {
                kind: if current.is_none() {
                    EventKind::Created
                } else {
                    EventKind::Modified
                },
                key,
                version,
            });
            Ok(version)
        })
        .await
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<(), MetadataError> {
        validate_key(key)?;
        let key = key.to_string();
        self.run(move |shared, database| {
            let _order = shared.write_order.lock().unwrap_or_else(|e| e.into_inner());
            let mut transaction = database.begin_write().map_err(storage)?;
            transaction
                .set_durability(Durability::Immediate)
                .map_err(storage)?;
            let version = {
                let mut table = transaction.open_table(ENTRIES).map_err(storage)?;
                let current = current_version(&table, &key)?;
                let version = expect.check_delete(&key, current)?;
                table.remove(key.as_str()).map_err(storage)?;
                let mut bindings = transaction.open_table(SESSION_KEYS).map_err(storage)?;
                bindings.remove(key.as_str()).map_err(storage)?;
                version
            };
            transaction.commit().map_err(storage)?;
            shared.send(Event {
                key,
                kind: EventKind::Deleted,
                version,
            });
            Ok(())
        })
        .await
    }

    async fn list_children(&self, path: &str) -> Result<Vec<String>, MetadataError> {
        validate_path(path)?;
        let path = path.to_string();
        self.run(move |_, database| {
            let transaction = database.begin_read().map_err(storage)?;
            let table = transaction.open_table(ENTRIES).map_err(storage)?;
            list_children_with(&path, |start, end| {
                let mut range = table.range::<&str>(start..end).map_err(storage)?;
                match range.next() {
                    None => Ok(None),
                    Some(Err(e)) => Err(storage(e)),
                    Some(Ok((key, _))) => Ok(Some(key.value().to_string())),
                }
            })
        })
        .await
    }

    async fn exists(&self, key: &str) -> Result<bool, MetadataError> {
        validate_key(key)?;
        let key = key.to_string();
        self.run(move |_, database| {
            let transaction = database.begin_read().map_err(storage)?;
            let table = transaction.open_table(ENTRIES).map_err(storage)?;
            Ok(table.get(key.as_str()).map_err(storage)?.is_some())
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, MetadataError> {
        txn.validate()?;
        let now = Instant::now();
        self.run(move |shared, database| {
            let _order = shared.write_order.lock().unwrap_or_else(|e| e.into_inner());
            let mut transaction = database.begin_write().map_err(storage)?;
            transaction
                .set_durability(Durability::Immediate)
                .map_err(storage)?;
            let mut events = Vec::with_capacity(txn.ops.len());
            let mut versions = Vec::with_capacity(txn.ops.len());
            {
                let mut table = transaction.open_table(ENTRIES).map_err(storage)?;
                let mut bindings = transaction.open_table(SESSION_KEYS).map_err(storage)?;
                if let Some(failure) = txn.first_failure(|key| current_version(&table, key))? {
                    // Dropping the write transaction aborts it: nothing was written.
                    return Err(failure);
                }
                // Sessions end under `write_order` too, so one live here outlives this commit
                // or has its keys (these included) deleted after it.
                if let Some(session) = txn
                    .sessions()
                    .find(|session| !shared.session_live(session.0, now))
                {
                    return Err(MetadataError::SessionExpired { session });
                }
                for op in &txn.ops {
                    let current = current_version(&table, op.key())?;
                    match op {
                        TxnOp::Put { key, value } | TxnOp::PutInSession { key, value, .. } => {
                            let version = Expect::Any.check_put(key, current)?;
                            table
                                .insert(key.as_str(), record::encode(version, value).as_slice())
                                .map_err(storage)?;
                            match op {
                                TxnOp::PutInSession { session, .. } => {
                                    bindings.insert(key.as_str(), session.0).map_err(storage)?
                                }
                                TxnOp::Put { .. } | TxnOp::Delete { .. } => {
                                    bindings.remove(key.as_str()).map_err(storage)?
                                }
                            };
                            versions.push(Some(version));
                            events.push(Event {
                                key: key.clone(),
                                kind: if current.is_none() {
                                    EventKind::Created
                                } else {
                                    EventKind::Modified
                                },
                                version,
                            });
                        }
                        TxnOp::Delete { key } => {
                            versions.push(current);
                            if let Some(version) = current {
                                table.remove(key.as_str()).map_err(storage)?;
                                bindings.remove(key.as_str()).map_err(storage)?;
                                events.push(Event {
                                    key: key.clone(),
                                    kind: EventKind::Deleted,
                                    version,
                                });
                            }
                        }
                    }
                }
            }
            transaction.commit().map_err(storage)?;
            for event in events {
                shared.send(event);
            }
            Ok(TxnOutcome { versions })
        })
        .await
    }

    async fn open_session(&self, ttl: Duration) -> Result<Session, MetadataError> {
        validate_ttl(ttl)?;
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(MetadataError::Closed);
        }
        let now = Instant::now();
        let id = {
            let mut sessions = self
                .shared
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let id = next_local_session_id();
            let reaper = tokio::spawn(reap(Arc::downgrade(&self.shared), id));
            sessions.live.insert(
                id,
                SessionRecord {
                    ttl,
                    deadline: now + ttl,
                    reaper,
                },
            );
            id
        };
        let lease = Arc::new(RedbLease {
            shared: Arc::downgrade(&self.shared),
            id,
        });
        Ok(Session::start(SessionId(id), ttl, lease, now))
    }

    fn watch(&self, prefix: &str) -> Result<Watch, MetadataError> {
        validate_path(prefix)?;
        self.shared
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .subscribe(prefix)
            .ok_or(MetadataError::Closed)
    }

    async fn close(&self) -> Result<(), MetadataError> {
        self.shared.closed.store(true, Ordering::Release);
        // The keys bound to live sessions stay in the file; the next open deletes them.
        for (_, session) in self
            .shared
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .drain()
        {
            session.reaper.abort();
        }
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            // Waits for operations in flight (they hold the read side).
            let database = shared
                .database
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            shared
                .events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .close();
            match database {
                Some(database) => database.close().map_err(storage),
                None => Ok(()),
            }
        })
        .await
        .map_err(task_failed)?
    }
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

fn storage(error: impl fmt::Display) -> MetadataError {
    MetadataError::Storage(error.to_string())
}

fn task_failed(error: tokio::task::JoinError) -> MetadataError {
    MetadataError::Storage(format!("metadata task failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Overwrites the stored record of `key` with `bytes`, as damage or a newer release would.
    fn write_raw(path: &Path, key: &str, bytes: &[u8]) {
        let database = Database::create(path).unwrap();
        let transaction = database.begin_write().unwrap();
        {
            let mut table = transaction.open_table(ENTRIES).unwrap();
            table.insert(key, bytes).unwrap();
        }
        transaction.commit().unwrap();
        database.close().unwrap();
    }

    #[tokio::test]
    async fn unknown_format_and_short_records_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.redb");
        let store = RedbStore::open(&path).await.unwrap();
        store
            .put("/t/ok", Bytes::from_static(b"v"), Expect::Absent)
            .await
            .unwrap();
        store.close().await.unwrap();

        let mut future = record::encode(1, b"v");
        future[0] = 200;
        write_raw(&path, "/t/future", &future);
        write_raw(&path, "/t/short", &[record::RECORD_FORMAT_VERSION, 0, 1]);
        write_raw(&path, "/t/empty", &[]);

        let store = RedbStore::open(&path).await.unwrap();
        assert_eq!(
            store.get("/t/future").await,
            Err(MetadataError::UnsupportedFormat {
                key: "/t/future".into(),
                format_version: 200
            })
        );
        assert!(matches!(
            store.put("/t/future", Bytes::new(), Expect::Any).await,
            Err(MetadataError::UnsupportedFormat { .. })
        ));
        assert!(matches!(
            store.delete("/t/future", Expect::Any).await,
            Err(MetadataError::UnsupportedFormat { .. })
        ));
        assert!(matches!(
            store.get("/t/short").await,
            Err(MetadataError::CorruptRecord { .. })
        ));
        assert!(matches!(
            store.get("/t/empty").await,
            Err(MetadataError::CorruptRecord { .. })
        ));
        // The rest of the store still works.
        assert_eq!(store.get("/t/ok").await.unwrap().unwrap().version, 1);
        assert_eq!(
            store.list_children("/t").await.unwrap(),
            ["empty", "future", "ok", "short"]
        );
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn damaged_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.redb");
        std::fs::write(&path, b"this is not a redb file at all, just some text").unwrap();
        assert!(matches!(
            RedbStore::open(&path).await,
            Err(MetadataError::Storage(_))
        ));
    }

    #[tokio::test]
    async fn second_open_of_a_locked_file_fails_until_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.redb");
        let store = RedbStore::open(&path).await.unwrap();
        assert!(matches!(
            RedbStore::open(&path).await,
            Err(MetadataError::Storage(_))
        ));
        store.close().await.unwrap();
        RedbStore::open(&path).await.unwrap().close().await.unwrap();
    }
}
