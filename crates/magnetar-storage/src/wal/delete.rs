//! Deleting a shared ledger (its topic was deleted): its records go, so a topic created again
//! under the same name starts empty, and the objects they named become garbage for
//! [`super::collect_garbage`].

use magnetar_metadata::{Expect, MetadataError, MetadataStore};

use super::ledger::metadata_error;
use super::records::{self, RangeRecord};
use super::{SharedLedger, WalWriter};
use crate::StorageError;

/// Keys visited by one delete at most (a bound on a corrupt or adversarial tree).
const DELETE_KEYS_MAX: usize = 1_000_000;

impl SharedLedger {
    /// Deletes every record of ledger `name`: first its epoch key, which fences any writer still
    /// holding it (its next commit compares that key), then the references its unsealed chunks
    /// hold on WAL objects, then everything else under the ledger (ranges, segments, cursors,
    /// start, snapshots). Idempotent; returns how many keys were deleted.
    pub async fn delete(writer: &WalWriter, name: &str) -> Result<u64, StorageError> {
        let shared = &writer.shared;
        let (root, metadata) = (shared.root.as_str(), shared.metadata.as_ref());
        let mut deleted = 0u64;
        let gone = |r: Result<(), MetadataError>| match r {
            Ok(()) => Ok(true),
            Err(MetadataError::NotFound { .. }) => Ok(false),
            Err(e) => Err(metadata_error("delete", e)),
        };
        if gone(
            metadata
                .delete(&records::epoch_key(root, name), Expect::Any)
                .await,
        )? {
            deleted += 1;
        }
        let ranges = records::ranges_path(root, name);
        for child in metadata
            .list_children(&ranges)
            .await
            .map_err(|e| metadata_error("list", e))?
        {
            let key = format!("{ranges}/{child}");
            let Some(found) = metadata
                .get(&key)
                .await
                .map_err(|e| metadata_error("get", e))?
            else {
                continue;
            };
            if let Ok(range) = records::decode::<RangeRecord>(&key, &found.value) {
                if let Some(reference) = records::wal_ref_key(root, &range.object, name) {
                    if gone(metadata.delete(&reference, Expect::Any).await)? {
                        deleted += 1;
                    }
                }
            }
        }
        deleted += delete_tree(metadata, &format!("{root}/{name}")).await?;
        Ok(deleted)
    }
}

/// Deletes every key at or beneath `path`, depth first.
async fn delete_tree(metadata: &dyn MetadataStore, path: &str) -> Result<u64, StorageError> {
    let mut deleted = 0u64;
    let mut stack = vec![path.to_string()];
    let mut visited = 0usize;
    while let Some(at) = stack.pop() {
        visited += 1;
        if visited > DELETE_KEYS_MAX {
            return Err(StorageError::Metadata {
                reason: format!("more than {DELETE_KEYS_MAX} keys under {path}"),
            });
        }
        for child in metadata
            .list_children(&at)
            .await
            .map_err(|e| metadata_error("list", e))?
        {
            stack.push(format!("{at}/{child}"));
        }
        match metadata.delete(&at, Expect::Any).await {
            Ok(()) => deleted += 1,
            Err(MetadataError::NotFound { .. }) => {}
            Err(e) => return Err(metadata_error("delete", e)),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use magnetar_metadata::{MemoryStore, MetadataStore};
    use object_store::memory::InMemory;

    use super::super::{collect_garbage, SharedLedger, WalConfig, WalWriter};
    use crate::{ManualClock, NewEntry, PayloadFormat, StorageError};

    fn entry(text: &str) -> NewEntry {
        NewEntry {
            payload: Bytes::from(text.to_string()),
            message_count: 1,
            max_timestamp_ms: 1000,
            format: PayloadFormat::Kafka,
            producer: None,
            first_index_at: None,
        }
    }

    #[tokio::test]
    async fn a_deleted_ledger_starts_empty_fences_its_writer_and_leaves_garbage() {
        let objects = Arc::new(InMemory::new());
        let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(1_000_000));
        let config = WalConfig {
            flush_interval_ms: 5,
            commit_timeout_ms: 500,
            gc_grace_ms: 1_000,
            ..WalConfig::default()
        };
        let writer = WalWriter::start(
            "w1",
            "/ledgers",
            objects.clone(),
            metadata.clone(),
            config,
            clock.clone(),
        )
        .expect("writer");
        let old = SharedLedger::open(&writer, "t/ns/persistent/a")
            .await
            .unwrap();
        let other = SharedLedger::open(&writer, "t/ns/persistent/b")
            .await
            .unwrap();
        for i in 0..3 {
            old.append(entry(&format!("a{i}"))).await.unwrap();
        }
        other.append(entry("b0")).await.unwrap();

        let deleted = SharedLedger::delete(&writer, "t/ns/persistent/a")
            .await
            .unwrap();
        assert!(
            deleted >= 4,
            "epoch, ranges and references deleted: {deleted}"
        );
        assert_eq!(
            SharedLedger::delete(&writer, "t/ns/persistent/a")
                .await
                .unwrap(),
            0,
            "idempotent"
        );
        // The writer that still holds the deleted ledger cannot commit any more.
        let refused = old.append(entry("late")).await;
        assert!(
            matches!(
                refused,
                Err(StorageError::Fenced { .. } | StorageError::Failed { .. })
            ),
            "{refused:?}"
        );
        // Opened again, it is empty; the other ledger is untouched.
        let again = SharedLedger::open(&writer, "t/ns/persistent/a")
            .await
            .unwrap();
        assert_eq!((again.start_index(), again.end_index()), (0, 0));
        again.append(entry("new")).await.unwrap();
        let read = again.read(0, usize::MAX, 10).await.unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].payload, Bytes::from("new"));
        let b = SharedLedger::open(&writer, "t/ns/persistent/b")
            .await
            .unwrap();
        assert_eq!(b.end_index(), 1);
        // Past the grace period, the objects only the deleted ledger named are collected; the
        // other ledgers' data stays readable.
        clock.advance_ms(10_000);
        collect_garbage(&writer).await.unwrap();
        assert_eq!(b.read(0, usize::MAX, 10).await.unwrap().len(), 1);
        assert_eq!(again.read(0, usize::MAX, 10).await.unwrap().len(), 1);
    }
}
