//! Runs the conformance suite against every backend in this crate, one fresh store per check.

use std::sync::Arc;
use std::time::Duration;

use magnetar_metadata::{
    conformance, EventKind, MemoryStore, MetadataError, MetadataStore, RedbStore, Session,
    SessionState, Txn, TxnOp,
};
use tempfile::TempDir;

/// A fresh redb store in a temporary directory that lives as long as the store.
async fn redb_store() -> (TempDir, RedbStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = RedbStore::open(&dir.path().join("metadata.redb"))
        .await
        .expect("open redb store");
    (dir, store)
}

macro_rules! conformance_tests {
    ($($check:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let store: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
                    conformance::$check(store.as_ref()).await;
                }
            )*
        }
        mod redb {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let (_dir, store) = redb_store().await;
                    let store: Arc<dyn MetadataStore> = Arc::new(store);
                    conformance::$check(store.as_ref()).await;
                    store.close().await.expect("close");
                }
            )*
        }
    };
}

conformance_tests!(
    put_get_and_versions,
    compare_and_set,
    concurrent_creators_one_wins,
    concurrent_increments_lose_nothing,
    delete_with_expectations,
    list_children_sorted_and_nested,
    watch_sees_changes_under_prefix_only,
    invalid_keys_rejected,
    value_size_limit,
    txn_applies_all_or_nothing,
    txn_watch_sees_each_change,
    txn_limits,
    txn_large_values,
    txn_epoch_fencing,
    session_bound_keys_vanish_on_close,
    session_expiry_deletes_bound_keys,
    close_ends_everything,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_runs_all_checks_on_one_store() {
    conformance::run_all(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_runs_all_checks_on_one_store() {
    let (_dir, store) = redb_store().await;
    conformance::run_all(&store).await;
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_reopen_keeps_data_and_versions() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("metadata.redb");
    let store = RedbStore::open(&path).await.expect("open");
    conformance::write_before_reopen(&store).await;
    store.close().await.expect("close");
    drop(store);
    let store = RedbStore::open(&path).await.expect("reopen");
    conformance::check_after_reopen(&store).await;
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_reopen_after_drop_without_close() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("metadata.redb");
    {
        let store = RedbStore::open(&path).await.expect("open");
        conformance::write_before_reopen(&store).await;
    }
    let store = RedbStore::open(&path).await.expect("reopen");
    conformance::check_after_reopen(&store).await;
    store.close().await.expect("close");
}

/// The store ends a session behind its owner's back (the test hook, as a lost lease would):
/// its keys go at once, watchers see them deleted, and the keep-alive's next refresh finds
/// the session gone (`Expired`).
async fn check_lost_session(store: &dyn MetadataStore, session: &Session) {
    let mut watch = store.watch("/lost").expect("watch");
    let txn = Txn::new()
        .then(TxnOp::put_in_session("/lost/owner", "me", session.id()))
        .then(TxnOp::put("/lost/plain", "p"));
    store.txn(txn).await.expect("txn");
    assert_eq!(watch.recv().await.unwrap().kind, EventKind::Created);
    assert_eq!(watch.recv().await.unwrap().kind, EventKind::Created);
    assert_eq!(session.current_state(), SessionState::Live);
}

async fn check_after_loss(store: &dyn MetadataStore, session: &Session) {
    assert_eq!(store.get("/lost/owner").await, Ok(None));
    assert!(store.get("/lost/plain").await.unwrap().is_some());
    conformance::wait_for_state(session, SessionState::Expired, Duration::from_secs(10)).await;
    assert_eq!(
        store
            .txn(Txn::new().then(TxnOp::put_in_session("/lost/late", "x", session.id())))
            .await,
        Err(MetadataError::SessionExpired {
            session: session.id()
        })
    );
    session.close().await.expect("close");
    assert_eq!(session.current_state(), SessionState::Expired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_session_lost_by_the_store_is_expired() {
    let store = MemoryStore::new();
    let session = store.open_session(Duration::from_secs(1)).await.unwrap();
    let mut watch = store.watch("/lost/owner").unwrap();
    check_lost_session(&store, &session).await;
    assert!(store.expire_session(session.id()));
    assert!(!store.expire_session(session.id()));
    watch.recv().await.unwrap();
    assert_eq!(watch.recv().await.unwrap().kind, EventKind::Deleted);
    check_after_loss(&store, &session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_session_lost_by_the_store_is_expired() {
    let (_dir, store) = redb_store().await;
    let session = store.open_session(Duration::from_secs(1)).await.unwrap();
    let mut watch = store.watch("/lost/owner").unwrap();
    check_lost_session(&store, &session).await;
    assert_eq!(store.expire_session(session.id()).await, Ok(true));
    assert_eq!(store.expire_session(session.id()).await, Ok(false));
    watch.recv().await.unwrap();
    assert_eq!(watch.recv().await.unwrap().kind, EventKind::Deleted);
    check_after_loss(&store, &session).await;
    store.close().await.unwrap();
}

/// Sessions live in one process: keys bound by a process that ended (closed or dropped its
/// store with sessions open) are deleted when the file is opened again; other keys stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_reopen_deletes_keys_of_dead_sessions() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("metadata.redb");
    for close in [true, false] {
        let store = RedbStore::open(&path).await.expect("open");
        let session = store.open_session(Duration::from_secs(60)).await.unwrap();
        let txn = Txn::new()
            .then(TxnOp::put_in_session("/dead/owner", "me", session.id()))
            .then(TxnOp::put("/dead/plain", "p"));
        store.txn(txn).await.expect("txn");
        if close {
            store.close().await.expect("close");
        }
        drop(store);
        let store = RedbStore::open(&path).await.expect("reopen");
        assert_eq!(store.get("/dead/owner").await, Ok(None));
        assert!(store.get("/dead/plain").await.unwrap().is_some());
        assert_eq!(
            store
                .txn(Txn::new().then(TxnOp::put_in_session("/dead/x", "x", session.id())))
                .await,
            Err(MetadataError::SessionExpired {
                session: session.id()
            }),
            "a session of the earlier process is unknown"
        );
        store.close().await.expect("close");
        drop(session);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_txn_epoch_fencing_across_tasks() {
    conformance::txn_epoch_fencing_across_tasks(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redb_txn_epoch_fencing_across_tasks() {
    let (_dir, store) = redb_store().await;
    let store = Arc::new(store);
    conformance::txn_epoch_fencing_across_tasks(store.clone()).await;
    store.close().await.unwrap();
}
