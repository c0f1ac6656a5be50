//! Runs the conformance suite against every backend in this crate, one fresh store per check.

use std::sync::Arc;

use magnetar_metadata::{conformance, MemoryStore, MetadataStore, RedbStore};
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
