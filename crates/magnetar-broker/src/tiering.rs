//! Tiered storage for a broker with a local disk (issue #16, mode 1): every partition's segments
//! live in a [`TieredSegmentStore`], and a periodic pass offloads the sealed segments that fall
//! outside the local retention (`local_retention_bytes` per partition, counting its newest
//! sealed segments first, and `local_retention_ms` since a segment's last write) to object
//! storage. Consumers of both protocols read offloaded ranges through the store without
//! noticing.
//!
//! Each ledger directory holds a file [`PREFIX_FILE_NAME`] naming its object prefix
//! (`<root>/<ledger path>/<id>`, the id made when the directory first got a store), so a topic
//! deleted and created again under the same name never sees the old topic's objects.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use magnetar_storage::tiered::{BlockCache, TieredSegmentStore, TieringConfig, TieringCounters};
use magnetar_storage::{Clock, SegmentStore, StorageError};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use tokio::runtime::Handle;

use crate::broker::SegmentStoreFactory;

/// The file in a ledger directory that names its object prefix.
pub const PREFIX_FILE_NAME: &str = "object-prefix";

/// What to offload, and how offloaded segments are read.
#[derive(Debug, Clone)]
pub struct TieringSettings {
    /// The broker's data directory (ledgers live under `data_dir/ledgers`).
    pub data_dir: PathBuf,
    /// Prefix of every object this broker writes.
    pub root: String,
    pub read: TieringConfig,
    /// Sealed bytes a partition keeps on local disk (newest first); `None`: no byte bound.
    pub local_retention_bytes: Option<u64>,
    /// A sealed segment last written longer ago than this is offloaded; `None`: no age bound.
    pub local_retention_ms: Option<u64>,
}

/// What one offload pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OffloadReport {
    pub offloaded: u64,
    pub offloaded_bytes: u64,
    pub failures: u64,
}

/// The tiered stores of one broker and their offload policy.
pub struct Tiering {
    settings: TieringSettings,
    remote: Arc<dyn ObjectStore>,
    cache: Arc<BlockCache>,
    counters: Arc<TieringCounters>,
    clock: Arc<dyn Clock>,
    runtime: Handle,
    stores: Mutex<Vec<Weak<TieredSegmentStore>>>,
}

impl Tiering {
    pub fn new(
        settings: TieringSettings,
        remote: Arc<dyn ObjectStore>,
        clock: Arc<dyn Clock>,
        runtime: Handle,
    ) -> Result<Arc<Self>, StorageError> {
        settings.read.validate()?;
        Ok(Arc::new(Tiering {
            cache: Arc::new(BlockCache::new(settings.read.cache_bytes)),
            counters: Arc::new(TieringCounters::default()),
            settings,
            remote,
            clock,
            runtime,
            stores: Mutex::new(Vec::new()),
        }))
    }

    pub fn counters(&self) -> &Arc<TieringCounters> {
        &self.counters
    }

    /// Bytes in the block cache now.
    pub fn cache_bytes(&self) -> u64 {
        self.cache.bytes()
    }

    /// The segment-store factory for [`crate::Broker::open_with_segment_stores`]: a tiered
    /// store per ledger directory, remembered for the offload passes. The factory keeps this
    /// `Tiering` alive (the broker holds the factory; the offloader only a weak reference).
    pub fn factory(self: &Arc<Self>) -> SegmentStoreFactory {
        let tiering = self.clone();
        Arc::new(move |dir: &Path| {
            let prefix = tiering.prefix_for(dir)?;
            let store = Arc::new(TieredSegmentStore::open_blocking(
                dir,
                tiering.remote.clone(),
                prefix,
                tiering.settings.read,
                tiering.cache.clone(),
                tiering.counters.clone(),
                tiering.runtime.clone(),
            )?);
            let mut stores = tiering.stores.lock().unwrap_or_else(|e| e.into_inner());
            stores.retain(|w| w.strong_count() > 0);
            stores.push(Arc::downgrade(&store));
            Ok(store as Arc<dyn SegmentStore>)
        })
    }

    /// The cleanup for [`crate::Broker::set_ledger_cleanup`]: deletes every object under the
    /// prefix named in a deleted ledger directory's prefix file (none: nothing to do).
    pub fn ledger_cleanup(self: &Arc<Self>) -> crate::broker::LedgerCleanup {
        let tiering = self.clone();
        Arc::new(move |dir: &Path| tiering.delete_objects_of(dir))
    }

    fn delete_objects_of(&self, dir: &Path) -> Result<(), StorageError> {
        let file = dir.join(PREFIX_FILE_NAME);
        let prefix = match std::fs::read_to_string(&file) {
            Ok(s) if !s.trim().is_empty() => ObjectPath::from(s.trim()),
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("read object prefix", &file, e)),
        };
        let remote = self.remote.clone();
        let failed = |e: object_store::Error| {
            io(
                "delete objects",
                &file,
                std::io::Error::other(e.to_string()),
            )
        };
        let run = async move {
            use futures_util::StreamExt;
            let listed: Vec<_> = remote.list(Some(&prefix)).collect().await;
            for meta in listed {
                let meta = meta?;
                match object_store::ObjectStoreExt::delete(remote.as_ref(), &meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        magnetar_storage::tiered::wait(&self.runtime, run).map_err(failed)
    }

    /// The object prefix of the ledger in `dir`: read from its prefix file, or made and
    /// written (durably) the first time.
    fn prefix_for(&self, dir: &Path) -> Result<ObjectPath, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| io("create directory", dir, e))?;
        let file = dir.join(PREFIX_FILE_NAME);
        match std::fs::read_to_string(&file) {
            Ok(s) if !s.trim().is_empty() => return Ok(ObjectPath::from(s.trim())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("read object prefix", &file, e)),
        }
        let ledgers = self.settings.data_dir.join("ledgers");
        let relative = dir.strip_prefix(&ledgers).unwrap_or(dir);
        let mut parts: Vec<String> = vec![self.settings.root.clone()];
        parts.extend(
            relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned()),
        );
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        parts.push(format!(
            "{:x}-{:x}",
            self.clock.now_ms(),
            nonce & 0xffff_ffff
        ));
        let prefix = parts
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        magnetar_storage::cursor::atomic_write(dir, PREFIX_FILE_NAME, prefix.as_bytes())?;
        Ok(ObjectPath::from(prefix.as_str()))
    }

    /// One offload pass over every live store (blocking: run it on a blocking thread).
    pub fn offload_pass(&self) -> OffloadReport {
        let stores: Vec<_> = {
            let mut all = self.stores.lock().unwrap_or_else(|e| e.into_inner());
            all.retain(|w| w.strong_count() > 0);
            all.iter().filter_map(Weak::upgrade).collect()
        };
        let now = self.clock.now_ms();
        let mut report = OffloadReport::default();
        for store in stores {
            let sealed = match store.local_sealed() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(store = ?store, error = %e, "listing local segments for offload failed");
                    report.failures += 1;
                    continue;
                }
            };
            let mut kept_bytes = 0u64;
            // Newest first: the byte bound keeps the newest sealed segments local.
            for seg in sealed.iter().rev() {
                let too_old = self
                    .settings
                    .local_retention_ms
                    .is_some_and(|ms| now.saturating_sub(seg.modified_ms) > ms as i64);
                let too_many = self
                    .settings
                    .local_retention_bytes
                    .is_some_and(|max| kept_bytes + seg.bytes > max);
                // An empty sealed segment (compaction can leave one) holds nothing to keep local
                // and has no index to wait for.
                let empty = seg.bytes == 0;
                if !(too_old || too_many || empty) {
                    kept_bytes += seg.bytes;
                    continue;
                }
                if !seg.has_index && !empty && !too_old {
                    // Just sealed: its index file is being written; next pass.
                    kept_bytes += seg.bytes;
                    continue;
                }
                match store.offload(seg.base) {
                    Ok(true) => {
                        report.offloaded += 1;
                        report.offloaded_bytes += seg.bytes;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        report.failures += 1;
                        tracing::warn!(store = ?store, segment = seg.base, error = %e, "offload failed; the local copy is kept and the next pass retries");
                        // The store is probably unreachable: leave this ledger for now.
                        break;
                    }
                }
            }
        }
        report
    }

    /// Runs [`Tiering::offload_pass`] every `interval` until the returned task is aborted.
    pub fn spawn_offloader(
        self: &Arc<Self>,
        interval: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        self.runtime.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(tiering) = me.upgrade() else { break };
                let report = tokio::task::spawn_blocking(move || tiering.offload_pass()).await;
                match report {
                    Ok(r) if r.offloaded > 0 || r.failures > 0 => {
                        tracing::info!(
                            offloaded = r.offloaded,
                            bytes = r.offloaded_bytes,
                            failures = r.failures,
                            "offload pass"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "offload pass failed"),
                }
            }
        })
    }
}

fn io(op: &'static str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Io {
        op,
        path: path.to_path_buf(),
        source: e,
    }
}
