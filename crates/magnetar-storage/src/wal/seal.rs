//! Sealing a ledger's committed chunks into a segment object, and collecting objects nothing
//! refers to any more.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use magnetar_metadata::{Expect, MetadataError, Txn, TxnOp};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use tokio::time::Instant;

use super::ledger::{decode_chunk, ChunkRef, LedgerInner, SegmentMeta};
use super::records::{self, ChunkPoint, SegmentRecord, SnapshotRecord};
use super::writer::put_verified;
use super::{WalWriter, SEAL_CHUNKS_MAX};
use crate::StorageError;

/// Objects one garbage-collection pass looks at, at most.
const GC_OBJECTS_MAX: usize = 100_000;

/// Starts a seal of `ledger` in the background when it has enough unsealed chunks and none is
/// running.
pub(crate) fn maybe_seal(ledger: &Arc<LedgerInner>) {
    let (count, bytes) = {
        let c = ledger.committed.lock().unwrap_or_else(|e| e.into_inner());
        (c.unsealed, c.unsealed_bytes)
    };
    let config = &ledger.writer.config;
    if count < SEAL_CHUNKS_MAX as u64 && bytes < config.seal_bytes {
        return;
    }
    if ledger.sealing.swap(true, Ordering::AcqRel) {
        return;
    }
    let ledger = ledger.clone();
    tokio::spawn(async move {
        let result = seal_once(&ledger).await;
        ledger.sealing.store(false, Ordering::Release);
        let counters = &ledger.writer.counters;
        match result {
            Ok(Some(bytes)) => {
                counters.seals.fetch_add(1, Ordering::Relaxed);
                counters.sealed_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Ok(None) => {}
            Err(e) => {
                counters.seal_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(ledger = %ledger.name, error = %e, "seal failed; retried later");
            }
        }
    });
}

/// Seals the oldest unsealed chunks of `ledger` (at most [`SEAL_CHUNKS_MAX`], at most about
/// `seal_bytes`) into one segment object. Returns the bytes sealed, `None` when there was
/// nothing to seal.
pub(crate) async fn seal_once(ledger: &Arc<LedgerInner>) -> Result<Option<u64>, StorageError> {
    let writer = &ledger.writer;
    let picked: Vec<ChunkRef> = {
        let c = ledger.committed.lock().unwrap_or_else(|e| e.into_inner());
        let mut bytes = 0u64;
        let mut picked = Vec::new();
        for chunk in c.chunks.values().filter(|c| c.segment.is_none()) {
            if picked.len() >= SEAL_CHUNKS_MAX
                || (!picked.is_empty() && bytes + chunk.len > writer.config.seal_bytes)
            {
                break;
            }
            bytes += chunk.len;
            picked.push(chunk.clone());
        }
        picked
    };
    let (Some(first), Some(last)) = (picked.first(), picked.last()) else {
        return Ok(None);
    };
    let (first_index, end_index) = (first.first_index, last.end_index);
    let deadline = Instant::now() + Duration::from_millis(writer.config.commit_timeout_ms);

    // Copy the chunks, every entry CRC-checked: a damaged chunk is never sealed.
    let mut body = Vec::new();
    let mut points = Vec::with_capacity(picked.len());
    let mut max_timestamp_ms = i64::MIN;
    let mut last_publish_ms = None;
    for chunk in &picked {
        let bytes = ledger.chunk_bytes(chunk).await?;
        let mut chunk_max_ms = i64::MIN;
        for entry in decode_chunk(&ledger.name, chunk, &bytes)? {
            chunk_max_ms = chunk_max_ms.max(entry.header.max_timestamp_ms);
            last_publish_ms = Some(entry.header.publish_time_ms);
        }
        max_timestamp_ms = max_timestamp_ms.max(chunk_max_ms);
        points.push(ChunkPoint {
            first_index: chunk.first_index,
            offset: body.len() as u64,
            entries: chunk.entries,
            max_timestamp_ms: Some(chunk_max_ms),
        });
        body.extend_from_slice(&bytes);
    }
    let object = records::segment_object(&ledger.name, first_index, end_index, ledger.epoch);
    let body = Bytes::from(body);
    put_verified(writer, &object, body.clone(), deadline).await?;

    let record = SegmentRecord::new(
        &object,
        body.len() as u64,
        first_index,
        end_index,
        ledger.epoch,
        max_timestamp_ms,
        last_publish_ms,
        points,
    );
    let segment_key = records::segment_key(&ledger.root, &ledger.name, first_index);
    let mut txn = ledger
        .fenced(Txn::new())
        .when(segment_key.clone(), Expect::Absent)
        .then(TxnOp::put(segment_key, records::encode(&record)));
    for chunk in &picked {
        let range_key = ledger.range_key(chunk.first_index);
        txn = txn
            .when(range_key.clone(), Expect::Version(1))
            .then(TxnOp::delete(range_key));
        if let Some(reference) = records::wal_ref_key(&ledger.root, &chunk.object, &ledger.name) {
            txn = txn.then(TxnOp::delete(reference));
        }
    }
    let outcome = tokio::time::timeout_at(deadline, writer.metadata.txn(txn)).await;
    match outcome {
        Ok(Ok(_)) => {}
        Ok(Err(MetadataError::BadVersion { key, .. })) if ledger.is_fence_key(&key) => {
            let reason = ledger.fence_reason(&key);
            ledger.fence(&format!("{reason} (seen while sealing)"));
            return Err(StorageError::Fenced {
                ledger: ledger.name.clone(),
                reason: reason.into(),
            });
        }
        // The segment object stays as an orphan for the garbage collector; the chunks stay
        // where they are and a later seal tries again.
        Ok(Err(e)) => {
            return Err(StorageError::Metadata {
                reason: format!("seal of {object} not recorded: {e}"),
            })
        }
        Err(_) => {
            return Err(StorageError::Metadata {
                reason: format!("seal of {object} not confirmed before the commit timeout"),
            })
        }
    }
    let len = body.len() as u64;
    {
        let mut c = ledger.committed.lock().unwrap_or_else(|e| e.into_inner());
        c.segments
            .insert(record.first_index, SegmentMeta::of(&record));
        for chunk in ChunkRef::of_segment(&record) {
            // The cached bytes of a sealed chunk are the segment's bytes too.
            if let Some((object, _)) = c.cache.get_mut(&chunk.first_index) {
                *object = record.object.clone();
            }
            if let Some(old) = c.chunks.insert(chunk.first_index, chunk) {
                if old.segment.is_none() {
                    c.unsealed = c.unsealed.saturating_sub(1);
                    c.unsealed_bytes = c.unsealed_bytes.saturating_sub(old.len);
                }
            }
        }
    }
    ledger.features.seals.fetch_add(1, Ordering::AcqRel);
    tracing::debug!(ledger = %ledger.name, first_index, end_index, len, "sealed");
    Ok(Some(len))
}

/// What one [`collect_garbage`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcOutcome {
    pub wal_objects_deleted: u64,
    pub segment_objects_deleted: u64,
    /// Snapshot objects no snapshot record names (replaced, dropped by retention, or never
    /// recorded).
    pub snapshot_objects_deleted: u64,
    /// Objects still referred to, or younger than the grace period.
    pub kept: u64,
}

/// Whether no record at `key` names the object `path` (a record naming another object, e.g. a
/// newer owner's, counts as not naming it; a record that does not decode keeps the object).
async fn unrecorded<T>(
    shared: &super::writer::WriterShared,
    key: &str,
    path: &str,
    object: impl Fn(&T) -> &String,
) -> Result<bool, StorageError>
where
    T: for<'de> serde::Deserialize<'de> + records::HasFormat,
{
    match shared.metadata.get(key).await {
        Ok(Some(found)) => Ok(match records::decode::<T>(key, &found.value) {
            Ok(record) => object(&record) != path,
            Err(_) => false,
        }),
        Ok(None) => Ok(true),
        Err(e) => Err(StorageError::Metadata {
            reason: format!("gc: {e}"),
        }),
    }
}

/// Deletes, among objects older than the writer's [`WalConfig::gc_grace_ms`](super::WalConfig),
/// the WAL objects that no unsealed chunk refers to (all sealed, or never committed) and the
/// segment objects that no segment record names (a seal that was not recorded, or a segment
/// retention dropped) and the snapshot objects no snapshot record names. Safe to run
/// from any broker at any time, and to interrupt: it only deletes what nothing refers to.
pub async fn collect_garbage(writer: &WalWriter) -> Result<GcOutcome, StorageError> {
    let shared = &writer.shared;
    let now_ms = shared.clock.now_ms();
    let grace = i64::try_from(shared.config.gc_grace_ms).unwrap_or(i64::MAX);
    let mut outcome = GcOutcome::default();
    let list_error = |e: object_store::Error| StorageError::ObjectStore {
        op: "list",
        reason: e.to_string(),
    };
    for prefix in ["wal", "segments", "snapshots"] {
        let mut listing = shared.store.list(Some(&ObjectPath::from(prefix)));
        let mut seen = 0usize;
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(list_error)?;
            seen += 1;
            if seen > GC_OBJECTS_MAX {
                break;
            }
            if now_ms.saturating_sub(meta.last_modified.timestamp_millis()) < grace {
                outcome.kept += 1;
                continue;
            }
            let path = meta.location.to_string();
            let garbage = if prefix == "wal" {
                match records::parse_wal_object(&path) {
                    Some((writer_name, seq)) => shared
                        .metadata
                        .list_children(&records::wal_refs_path(&shared.root, writer_name, seq))
                        .await
                        .map_err(|e| StorageError::Metadata {
                            reason: format!("gc: {e}"),
                        })?
                        .is_empty(),
                    None => false,
                }
            } else if prefix == "snapshots" {
                match records::parse_snapshot_object(&path) {
                    Some((ledger, index)) => {
                        let key = records::snapshot_key(&shared.root, ledger, index);
                        unrecorded::<SnapshotRecord>(shared, &key, &path, |r| &r.object).await?
                    }
                    None => false,
                }
            } else {
                match records::parse_segment_object(&path) {
                    Some((ledger, first)) => {
                        let key = records::segment_key(&shared.root, ledger, first);
                        unrecorded::<SegmentRecord>(shared, &key, &path, |r| &r.object).await?
                    }
                    None => false,
                }
            };
            if !garbage {
                outcome.kept += 1;
                continue;
            }
            match shared.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(StorageError::ObjectStore {
                        op: "delete",
                        reason: format!("{path}: {e}"),
                    })
                }
            }
            if prefix == "wal" {
                outcome.wal_objects_deleted += 1;
                shared
                    .counters
                    .collected_wal_objects
                    .fetch_add(1, Ordering::Relaxed);
            } else if prefix == "snapshots" {
                outcome.snapshot_objects_deleted += 1;
            } else {
                outcome.segment_objects_deleted += 1;
                shared
                    .counters
                    .collected_segment_objects
                    .fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(object = %path, "collected");
        }
    }
    Ok(outcome)
}
