//! Tiered segments (issue #16, mode 1): sealed segments offloaded to object storage.
//!
//! [`TieredSegmentStore`] is a [`SegmentStore`]: the active segment and every segment not yet
//! offloaded live in a [`LocalSegmentStore`] as before (same fsync policies, same
//! acknowledgement); [`TieredSegmentStore::offload`] uploads a **sealed** segment as one
//! immutable object `<prefix>/<base, 20 digits>.seg` (multipart above [`MULTIPART_BYTES`]),
//! checks the uploaded length, uploads its index file beside it, and only then lets readers
//! move to the remote copy and deletes the local one. Reads of an offloaded segment are range
//! GETs of aligned blocks ([`TieringConfig::block_bytes`]) through a bounded LRU
//! [`BlockCache`], each miss also fetching the next [`TieringConfig::readahead_blocks`]
//! blocks in the same request. The ledger cannot tell where a segment lives: entry bytes and
//! CRCs are the same, and every read checks them.
//!
//! Segment files handed out by [`SegmentStore::open`]/[`SegmentStore::create`] switch from the
//! local file to the remote object in place when their segment is offloaded, so a ledger that
//! holds them frees the disk without reopening.
//!
//! Every method blocks, like every `SegmentStore`'s; object-store calls run on the tokio
//! runtime given at construction (see `wait` for the contexts that allows).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::runtime::Handle;

use crate::index_file::index_file_name;
use crate::segment_store::{
    segment_file_name, LocalSegmentStore, OffloadOutcome, SegmentFile, SegmentStore, SEGMENT_SUFFIX,
};
use crate::StorageError;

/// Segments of at least this many bytes are uploaded in parts of this size.
pub const MULTIPART_BYTES: usize = 8 << 20;

/// How offloaded segments are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TieringConfig {
    /// Size of the aligned blocks fetched by range GETs and cached.
    pub block_bytes: u64,
    /// Blocks fetched after a missed one in the same GET (sequential read-ahead).
    pub readahead_blocks: u64,
    /// Bytes the block cache holds at most (shared by every segment of the store).
    pub cache_bytes: u64,
}

impl Default for TieringConfig {
    fn default() -> Self {
        TieringConfig {
            block_bytes: 1 << 20,
            readahead_blocks: 3,
            cache_bytes: 64 << 20,
        }
    }
}

impl TieringConfig {
    pub fn validate(&self) -> Result<(), StorageError> {
        let bad = |reason: String| Err(StorageError::InvalidConfig { reason });
        if !(4 << 10..=64 << 20).contains(&self.block_bytes) {
            return bad(format!(
                "tiering block_bytes {} not in [4 KiB, 64 MiB]",
                self.block_bytes
            ));
        }
        if self.readahead_blocks > 64 {
            return bad(format!(
                "tiering readahead_blocks {} above 64",
                self.readahead_blocks
            ));
        }
        if self.cache_bytes < self.block_bytes * (self.readahead_blocks + 1) {
            return bad(format!(
                "tiering cache_bytes {} cannot hold one read ({} blocks of {} bytes)",
                self.cache_bytes,
                self.readahead_blocks + 1,
                self.block_bytes
            ));
        }
        Ok(())
    }
}

/// Counters of a tiered store (exported as metrics by the broker).
#[derive(Debug, Default)]
pub struct TieringCounters {
    pub uploads: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub upload_failures: AtomicU64,
    pub gets: AtomicU64,
    pub get_bytes: AtomicU64,
    pub get_failures: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Time of each successful offload: the segment's upload, its HEAD check and its index.
    pub upload_latency: crate::LatencyHistogram,
}

/// A sealed segment on local disk (see [`TieredSegmentStore::local_sealed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSegment {
    pub base: u64,
    pub bytes: u64,
    /// Last write of the file, ms since the epoch.
    pub modified_ms: i64,
    /// Its index file was written (the ledger writes it right after sealing).
    pub has_index: bool,
}

/// A bounded LRU cache of blocks of remote objects, keyed by (object id, block number).
#[derive(Debug)]
pub struct BlockCache {
    max_bytes: u64,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    blocks: HashMap<(u64, u64), (Bytes, u64)>,
    /// Use tick -> key, oldest first.
    lru: BTreeMap<u64, (u64, u64)>,
    tick: u64,
    bytes: u64,
}

impl BlockCache {
    pub fn new(max_bytes: u64) -> Self {
        BlockCache {
            max_bytes,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn get(&self, key: (u64, u64)) -> Option<Bytes> {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        c.tick += 1;
        let tick = c.tick;
        let (bytes, old) = {
            let (bytes, at) = c.blocks.get_mut(&key)?;
            let old = std::mem::replace(at, tick);
            (bytes.clone(), old)
        };
        c.lru.remove(&old);
        c.lru.insert(tick, key);
        Some(bytes)
    }

    fn insert(&self, key: (u64, u64), bytes: Bytes) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        c.tick += 1;
        let tick = c.tick;
        c.bytes += bytes.len() as u64;
        if let Some((old, at)) = c.blocks.insert(key, (bytes, tick)) {
            c.bytes -= old.len() as u64;
            c.lru.remove(&at);
        }
        c.lru.insert(tick, key);
        while c.bytes > self.max_bytes {
            let Some((_, victim)) = c.lru.pop_first() else {
                break;
            };
            if let Some((b, _)) = c.blocks.remove(&victim) {
                c.bytes -= b.len() as u64;
            }
        }
    }

    /// Bytes cached now.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

/// Segments in a local directory, sealed ones offloaded to an object store.
pub struct TieredSegmentStore {
    local: LocalSegmentStore,
    dir: std::path::PathBuf,
    remote: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    runtime: Handle,
    config: TieringConfig,
    cache: Arc<BlockCache>,
    counters: Arc<TieringCounters>,
    /// Offloaded segments: base index -> length in bytes.
    offloaded: Mutex<BTreeMap<u64, u64>>,
    /// Segment files handed out, so an offload can move them to the remote copy.
    handed_out: Mutex<HashMap<u64, Vec<Weak<TieredFile>>>>,
    /// Staged (compaction) segment files, handed out once committed: an offload of the segment
    /// they replace must not switch them to that segment's object.
    staged: Mutex<HashMap<u64, Weak<TieredFile>>>,
    next_object_id: AtomicU64,
    /// One offload at a time (the periodic pass and an operator's request may meet).
    offloading: Mutex<()>,
}

impl std::fmt::Debug for TieredSegmentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredSegmentStore")
            .field("dir", &self.dir)
            .field("remote", &self.remote.to_string())
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Runs an object-store call (any future) to completion from synchronous code: on a blocking thread
/// directly, on a multi-threaded runtime's worker through `block_in_place`, and on a
/// current-thread runtime from a helper thread (which only works for stores that do not need
/// that runtime's I/O driver, such as `InMemory` and `LocalFileSystem`).
pub fn wait<F>(runtime: &Handle, fut: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => runtime.block_on(fut),
        Ok(tokio::runtime::RuntimeFlavor::CurrentThread) => std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(fut))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }),
        Ok(_) => tokio::task::block_in_place(|| runtime.block_on(fut)),
    }
}

/// The file in a ledger directory that records its offloaded segments, a line `base length`
/// each, rewritten atomically after every offload and delete.
pub const MANIFEST_FILE_NAME: &str = "offloaded-segments";

/// Most lines a manifest may have (a guard against a corrupt file, not a real bound).
const MANIFEST_LINES_MAX: usize = 10_000_000;

fn read_manifest(dir: &Path) -> Result<BTreeMap<u64, u64>, StorageError> {
    let path = dir.join(MANIFEST_FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(StorageError::io("read offload manifest", &path, e)),
    };
    let bad = |reason: String| StorageError::CorruptMetadata {
        path: path.clone(),
        reason,
    };
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate().take(MANIFEST_LINES_MAX) {
        let mut parts = line.split(' ');
        let (Some(base), Some(len), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(format!("line {}: expected 'base length'", n + 1)));
        };
        let (Ok(base), Ok(len)) = (base.parse::<u64>(), len.parse::<u64>()) else {
            return Err(bad(format!("line {}: not two numbers", n + 1)));
        };
        out.insert(base, len);
    }
    Ok(out)
}

fn write_manifest(dir: &Path, offloaded: &BTreeMap<u64, u64>) -> Result<(), StorageError> {
    let text: String = offloaded
        .iter()
        .map(|(base, len)| format!("{base} {len}\n"))
        .collect();
    crate::cursor::atomic_write(dir, MANIFEST_FILE_NAME, text.as_bytes())
}

/// The segment objects under `prefix`: base index -> length.
async fn list_offloaded(
    remote: &dyn ObjectStore,
    prefix: &ObjectPath,
) -> Result<BTreeMap<u64, u64>, StorageError> {
    let listed: Vec<_> = remote
        .list(Some(prefix))
        .collect::<Vec<object_store::Result<object_store::ObjectMeta>>>()
        .await;
    let mut offloaded = BTreeMap::new();
    for meta in listed {
        let meta = meta.map_err(|e| remote_err("list objects", prefix, e))?;
        let Some(name) = meta.location.filename() else {
            continue;
        };
        if let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) {
            if let (20, Ok(base)) = (stem.len(), stem.parse::<u64>()) {
                offloaded.insert(base, meta.size);
            }
        }
    }
    Ok(offloaded)
}

fn remote_err(op: &'static str, path: &ObjectPath, e: object_store::Error) -> StorageError {
    StorageError::io(
        op,
        format!("object {path}"),
        std::io::Error::other(e.to_string()),
    )
}

impl TieredSegmentStore {
    /// Opens the store over `dir` and the objects under `prefix` (one ledger's); lists the
    /// offloaded segments. `cache` may be shared by the stores of many ledgers. Async (unlike
    /// the store's methods): call it from a task, then hand the store to a ledger.
    pub async fn new(
        dir: &Path,
        remote: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
        config: TieringConfig,
        cache: Arc<BlockCache>,
        counters: Arc<TieringCounters>,
        runtime: Handle,
    ) -> Result<Self, StorageError> {
        config.validate()?;
        let local = LocalSegmentStore::new(dir)?;
        let manifest = read_manifest(dir)?;
        let has_manifest = dir.join(MANIFEST_FILE_NAME).exists();
        let offloaded = match list_offloaded(remote.as_ref(), &prefix).await {
            Ok(listed) => {
                for (base, len) in &manifest {
                    if listed.get(base) != Some(len) {
                        // Never skip: the entry stays and reads of it fail loudly.
                        tracing::error!(dir = %dir.display(), segment = base, listed = ?listed.get(base), recorded = len,
                            "an offloaded segment recorded in the manifest is missing or has another length in the object store");
                    }
                }
                // Once this directory has a manifest it is the record: an object it does not
                // name is an upload whose local copy is still the segment (a crash before the
                // manifest write) or a segment compaction replaced whose object was not
                // deleted, and is not adopted. Without a manifest every listed object is.
                let mut offloaded = manifest;
                for (base, len) in listed {
                    if !has_manifest {
                        offloaded.insert(base, len);
                    } else if let Some(recorded) = offloaded.get_mut(&base) {
                        *recorded = len;
                    } else {
                        tracing::warn!(dir = %dir.display(), segment = base,
                            "an object in the object store is not in the offload manifest; ignored");
                    }
                }
                offloaded
            }
            Err(e) => {
                // Unreachable store: what this directory offloaded is in its manifest; local
                // segments are served as usual and offloaded ones fail until it returns.
                tracing::warn!(dir = %dir.display(), error = %e, offloaded = manifest.len(),
                    "cannot list the object store; opening from the local manifest of offloaded segments");
                manifest
            }
        };
        Ok(TieredSegmentStore {
            local,
            dir: dir.to_path_buf(),
            remote,
            prefix,
            runtime,
            config,
            cache,
            counters,
            offloaded: Mutex::new(offloaded),
            handed_out: Mutex::new(HashMap::new()),
            staged: Mutex::new(HashMap::new()),
            next_object_id: AtomicU64::new(0),
            offloading: Mutex::new(()),
        })
    }

    fn object(&self, name: &str) -> ObjectPath {
        self.prefix.clone().join(name)
    }

    fn local_exists(&self, base: u64) -> bool {
        self.dir.join(segment_file_name(base)).exists()
    }

    /// Opens the store from synchronous code (a blocking thread, as a segment-store factory
    /// runs): [`TieredSegmentStore::new`] run to completion on `runtime`.
    pub fn open_blocking(
        dir: &Path,
        remote: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
        config: TieringConfig,
        cache: Arc<BlockCache>,
        counters: Arc<TieringCounters>,
        runtime: Handle,
    ) -> Result<Self, StorageError> {
        let handle = runtime.clone();
        wait(
            &handle,
            Self::new(dir, remote, prefix, config, cache, counters, runtime),
        )
    }

    /// Sealed segments still on local disk (every local one but the newest, which may be
    /// active): base index, length, and the time of the file's last write.
    pub fn local_sealed(&self) -> Result<Vec<LocalSegment>, StorageError> {
        let mut bases = self.local.list()?;
        let newest = bases
            .last()
            .copied()
            .max(self.offloaded().keys().last().copied());
        bases.retain(|b| Some(*b) != newest);
        let mut out = Vec::with_capacity(bases.len());
        for base in bases {
            let path = self.dir.join(segment_file_name(base));
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                // Deleted meanwhile (retention).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io("stat segment", &path, e)),
            };
            let modified_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            out.push(LocalSegment {
                base,
                bytes: meta.len(),
                modified_ms,
                has_index: self.dir.join(index_file_name(base)).exists(),
            });
        }
        Ok(out)
    }

    /// Offloaded segments with their lengths.
    pub fn offloaded(&self) -> BTreeMap<u64, u64> {
        self.offloaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn counters(&self) -> &Arc<TieringCounters> {
        &self.counters
    }

    /// Uploads sealed segment `base` (and its index file, if any) and, once the object's length
    /// is verified, moves its readers to the object and deletes the local copy. The caller
    /// guarantees the segment is sealed (never appended to again). `Ok(false)` if it was
    /// already offloaded. A failure leaves the local copy in place; calling again retries the
    /// whole upload under the same names.
    pub fn offload(&self, base: u64) -> Result<bool, StorageError> {
        let _one_at_a_time = self.offloading.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_offloaded(base) {
            // Uploaded, but the local copy is still here: the process died between the upload
            // and the local delete. The object's length was listed at open; delete the copy
            // if it matches (else keep it and say so: never delete the only good copy).
            if !self.local_exists(base) {
                return Ok(false);
            }
            let remote_len = self.offloaded().get(&base).copied();
            let local_len = self.local.open(base)?.len();
            if remote_len != Some(local_len) {
                return Err(StorageError::io(
                    "check offloaded segment",
                    self.dir.join(segment_file_name(base)),
                    std::io::Error::other(format!(
                        "the object has {remote_len:?} bytes, the local copy {local_len}; keeping both"
                    )),
                ));
            }
            self.switch_to_remote(base, local_len);
            self.delete_local_copy(base)?;
            return Ok(true);
        }
        let file = self.local.open(base)?;
        let len = file.len();
        let seg_path = self.object(&segment_file_name(base));
        let started = std::time::Instant::now();
        let uploaded = self.upload(&seg_path, file.as_ref(), len);
        let uploaded = uploaded.and_then(|()| {
            let meta = wait(&self.runtime, self.remote.head(&seg_path))
                .map_err(|e| remote_err("check uploaded segment", &seg_path, e))?;
            if meta.size != len {
                return Err(StorageError::io(
                    "check uploaded segment",
                    format!("object {seg_path}"),
                    std::io::Error::other(format!(
                        "uploaded object has {} bytes, the segment {len}",
                        meta.size
                    )),
                ));
            }
            if let Some(index) = self.local.read_index(base, u64::MAX - 1)? {
                let idx_path = self.object(&index_file_name(base));
                wait(
                    &self.runtime,
                    self.remote.put(&idx_path, PutPayload::from(index)),
                )
                .map_err(|e| remote_err("upload segment index", &idx_path, e))?;
            }
            Ok(())
        });
        if let Err(e) = uploaded {
            self.counters
                .upload_failures
                .fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        self.counters.uploads.fetch_add(1, Ordering::Relaxed);
        self.counters.upload_bytes.fetch_add(len, Ordering::Relaxed);
        self.counters.upload_latency.observe(started.elapsed());
        {
            let mut offloaded = self.offloaded.lock().unwrap_or_else(|e| e.into_inner());
            offloaded.insert(base, len);
            // Recorded durably before the local copy goes, so a restart with the object store
            // unreachable still knows where the segment is.
            write_manifest(&self.dir, &offloaded)?;
        }
        // Readers move to the object before the local file goes.
        self.switch_to_remote(base, len);
        drop(file);
        self.delete_local_copy(base)?;
        Ok(true)
    }

    /// Deletes the local copy of offloaded segment `base` durably, keeping its index file: the
    /// ledger opens from local index files even while the object store is unreachable (they
    /// are small: about 16 bytes per `index_interval_bytes` of segment).
    fn delete_local_copy(&self, base: u64) -> Result<(), StorageError> {
        let path = self.dir.join(segment_file_name(base));
        std::fs::remove_file(&path).map_err(|e| StorageError::io("delete segment", &path, e))?;
        crate::segment_store::sync_dir(&self.dir)
    }

    /// Points every handed-out file of segment `base` at its object.
    fn switch_to_remote(&self, base: u64, len: u64) {
        let handed: Vec<_> = self
            .handed_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&base)
            .map(|all| all.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        for f in handed {
            *f.backing.write().unwrap_or_else(|e| e.into_inner()) =
                Backing::Remote(self.remote_segment(base, len));
        }
    }

    fn upload(
        &self,
        path: &ObjectPath,
        file: &dyn SegmentFile,
        len: u64,
    ) -> Result<(), StorageError> {
        let chunk = |at: u64, n: usize| file.read_vec_at(at, n);
        if len < MULTIPART_BYTES as u64 {
            let bytes = chunk(0, len as usize)?;
            return wait(
                &self.runtime,
                self.remote.put(path, PutPayload::from(bytes)),
            )
            .map(|_| ())
            .map_err(|e| remote_err("upload segment", path, e));
        }
        let upload = wait(&self.runtime, self.remote.put_multipart(path))
            .map_err(|e| remote_err("start multipart upload", path, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_BYTES);
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(MULTIPART_BYTES as u64) as usize;
            let bytes = match chunk(at, n) {
                Ok(b) => b,
                Err(e) => {
                    let _ = wait(&self.runtime, writer.abort());
                    return Err(e);
                }
            };
            if let Err(e) = wait(&self.runtime, writer.wait_for_capacity(4)) {
                let _ = wait(&self.runtime, writer.abort());
                return Err(remote_err("upload segment part", path, e));
            }
            writer.write(&bytes);
            at += n as u64;
        }
        wait(&self.runtime, writer.finish())
            .map(|_| ())
            .map_err(|e| remote_err("finish multipart upload", path, e))
    }

    /// Drops `base` from the offloaded segments and the manifest (durably); whether it was one.
    fn forget_offloaded(&self, base: u64) -> Result<bool, StorageError> {
        let mut offloaded = self.offloaded.lock().unwrap_or_else(|e| e.into_inner());
        if offloaded.remove(&base).is_none() {
            return Ok(false);
        }
        write_manifest(&self.dir, &offloaded)?;
        Ok(true)
    }

    /// Deletes the segment and index objects of `base`, logging what fails.
    fn delete_objects_quietly(&self, base: u64) {
        if let Err(e) = self.delete_objects(base) {
            tracing::warn!(error = %e, "an object of a compacted-away segment was not deleted; it is not read again");
        }
    }

    /// Deletes the segment and index objects of `base` (absent ones are fine).
    fn delete_objects(&self, base: u64) -> Result<(), StorageError> {
        for name in [segment_file_name(base), index_file_name(base)] {
            let path = self.object(&name);
            match wait(&self.runtime, self.remote.delete(&path)) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(remote_err("delete object", &path, e)),
            }
        }
        Ok(())
    }

    /// Deletes the local files of `base`: the segment and its index when the segment is here
    /// (or `must_exist`: then a missing one is an error), else only the index an offloaded
    /// segment keeps locally.
    fn delete_local_files(&self, base: u64, must_exist: bool) -> Result<(), StorageError> {
        if must_exist || self.local_exists(base) {
            return self.local.delete(base);
        }
        let index = self.dir.join(index_file_name(base));
        match std::fs::remove_file(&index) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("delete segment index", &index, e)),
        }
    }

    fn is_offloaded(&self, base: u64) -> bool {
        self.offloaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&base)
    }

    fn remote_segment(&self, base: u64, len: u64) -> RemoteSegment {
        RemoteSegment {
            remote: self.remote.clone(),
            path: self.object(&segment_file_name(base)),
            len,
            id: self.next_object_id.fetch_add(1, Ordering::Relaxed),
            cache: self.cache.clone(),
            counters: self.counters.clone(),
            config: self.config,
            runtime: self.runtime.clone(),
        }
    }

    fn hand_out(&self, base: u64, backing: Backing) -> Arc<dyn SegmentFile> {
        let file = Arc::new(TieredFile {
            backing: RwLock::new(backing),
        });
        let mut handed = self.handed_out.lock().unwrap_or_else(|e| e.into_inner());
        handed.retain(|_, all| {
            all.retain(|w| w.strong_count() > 0);
            !all.is_empty()
        });
        handed.entry(base).or_default().push(Arc::downgrade(&file));
        file
    }
}

impl SegmentStore for TieredSegmentStore {
    fn list(&self) -> Result<Vec<u64>, StorageError> {
        let mut bases = self.local.list()?;
        bases.extend(self.offloaded().keys());
        bases.sort_unstable();
        bases.dedup();
        Ok(bases)
    }

    fn create(&self, base_index: u64) -> Result<Arc<dyn SegmentFile>, StorageError> {
        if self.is_offloaded(base_index) {
            return Err(StorageError::io(
                "create segment",
                self.dir.join(segment_file_name(base_index)),
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        let file = self.local.create(base_index)?;
        Ok(self.hand_out(base_index, Backing::Local(file)))
    }

    fn open(&self, base_index: u64) -> Result<Arc<dyn SegmentFile>, StorageError> {
        let len = self.offloaded().get(&base_index).copied();
        let backing = match len {
            Some(len) => Backing::Remote(self.remote_segment(base_index, len)),
            None => Backing::Local(self.local.open(base_index)?),
        };
        Ok(self.hand_out(base_index, backing))
    }

    fn delete(&self, base_index: u64) -> Result<(), StorageError> {
        let remote = self.is_offloaded(base_index);
        if remote {
            self.delete_objects(base_index)?;
            self.forget_offloaded(base_index)?;
        }
        self.delete_local_files(base_index, !remote)
    }

    fn write_index(&self, base_index: u64, bytes: &[u8], sync: bool) -> Result<(), StorageError> {
        if self.is_offloaded(base_index) && !self.local_exists(base_index) {
            let path = self.object(&index_file_name(base_index));
            wait(
                &self.runtime,
                self.remote.put(&path, PutPayload::from(bytes.to_vec())),
            )
            .map_err(|e| remote_err("upload segment index", &path, e))?;
        }
        self.local.write_index(base_index, bytes, sync)
    }

    fn can_offload(&self) -> bool {
        true
    }

    /// Offloaded segments are compacted too: read through their objects, rewritten locally,
    /// swapped in as local segments (the offloader uploads them again on its next pass).
    fn can_compact(&self) -> bool {
        true
    }

    fn create_staged(&self, base_index: u64) -> Result<Arc<dyn SegmentFile>, StorageError> {
        let file = Arc::new(TieredFile {
            backing: RwLock::new(Backing::Local(self.local.create_staged(base_index)?)),
        });
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(base_index, Arc::downgrade(&file));
        Ok(file)
    }

    fn write_staged_index(&self, base_index: u64, bytes: &[u8]) -> Result<(), StorageError> {
        self.local.write_staged_index(base_index, bytes)
    }

    /// The staged copy becomes the local segment; an offloaded segment of that base leaves the
    /// manifest first (durably), then its objects are deleted on a best-effort basis (an object
    /// left behind is not adopted again: see [`TieredSegmentStore::new`]).
    fn commit_staged(&self, base_index: u64, has_index: bool) -> Result<(), StorageError> {
        let was_offloaded = self.forget_offloaded(base_index)?;
        self.local.commit_staged(base_index, has_index)?;
        let staged = self
            .staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&base_index);
        if let Some(file) = staged {
            self.handed_out
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(base_index, vec![file]);
        }
        if was_offloaded {
            self.delete_objects_quietly(base_index);
        }
        Ok(())
    }

    fn delete_replaced(&self, base_index: u64) -> Result<(), StorageError> {
        let was_offloaded = self.forget_offloaded(base_index)?;
        self.delete_local_files(base_index, false)?;
        if was_offloaded {
            self.delete_objects_quietly(base_index);
        }
        Ok(())
    }

    fn sync_staged(&self) -> Result<(), StorageError> {
        self.local.sync_staged()
    }

    fn discard_staged(&self) -> Result<(), StorageError> {
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.local.discard_staged()
    }

    fn offload_before(&self, before_index: u64) -> Option<Result<OffloadOutcome, StorageError>> {
        let run = || {
            let bases = self.list()?;
            let mut outcome = OffloadOutcome::default();
            // A segment ends where the next begins; the newest may be active and is never sealed.
            for pair in bases.windows(2) {
                let (base, next) = (pair[0], pair[1]);
                if next > before_index {
                    break;
                }
                if !self.local_exists(base) {
                    continue;
                }
                let bytes = self.local.open(base)?.len();
                if self.offload(base)? {
                    outcome.segments += 1;
                    outcome.bytes += bytes;
                }
            }
            outcome.first_local_index = bases
                .iter()
                .copied()
                .find(|b| self.local_exists(*b))
                .or(bases.last().copied())
                .unwrap_or(0);
            Ok(outcome)
        };
        Some(run())
    }

    fn read_index(&self, base_index: u64, max_bytes: u64) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(found) = self.local.read_index(base_index, max_bytes)? {
            return Ok(Some(found));
        }
        if !self.is_offloaded(base_index) {
            return Ok(None);
        }
        let path = self.object(&index_file_name(base_index));
        let meta = match wait(&self.runtime, self.remote.head(&path)) {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(remote_err("read segment index", &path, e)),
        };
        let end = meta.size.min(max_bytes.saturating_add(1));
        let bytes = wait(&self.runtime, self.remote.get_range(&path, 0..end))
            .map_err(|e| remote_err("read segment index", &path, e))?;
        Ok(Some(bytes.to_vec()))
    }
}

/// A segment handed out by a [`TieredSegmentStore`]: local until offloaded, then remote.
struct TieredFile {
    backing: RwLock<Backing>,
}

enum Backing {
    Local(Arc<dyn SegmentFile>),
    Remote(RemoteSegment),
}

impl TieredFile {
    fn with<T>(&self, f: impl FnOnce(&Backing) -> T) -> T {
        f(&self.backing.read().unwrap_or_else(|e| e.into_inner()))
    }
}

fn read_only(path: &ObjectPath) -> StorageError {
    StorageError::io(
        "write offloaded segment",
        format!("object {path}"),
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "an offloaded segment is immutable",
        ),
    )
}

impl SegmentFile for TieredFile {
    fn is_remote(&self) -> bool {
        self.with(|b| matches!(b, Backing::Remote(_)))
    }

    fn len(&self) -> u64 {
        self.with(|b| match b {
            Backing::Local(f) => f.len(),
            Backing::Remote(r) => r.len,
        })
    }

    fn read_exact_at(&self, file_offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        self.with(|b| match b {
            Backing::Local(f) => f.read_exact_at(file_offset, buf),
            Backing::Remote(r) => r.read_exact_at(file_offset, buf),
        })
    }

    fn read_vec_at(&self, file_offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        self.with(|b| match b {
            Backing::Local(f) => f.read_vec_at(file_offset, len),
            Backing::Remote(r) => {
                let mut buf = vec![0u8; len];
                r.read_exact_at(file_offset, &mut buf)?;
                Ok(buf)
            }
        })
    }

    fn append(&self, data: &[u8]) -> Result<(), StorageError> {
        self.with(|b| match b {
            Backing::Local(f) => f.append(data),
            Backing::Remote(r) => Err(read_only(&r.path)),
        })
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.with(|b| match b {
            Backing::Local(f) => f.sync(),
            Backing::Remote(_) => Ok(()),
        })
    }

    fn truncate(&self, len: u64) -> Result<(), StorageError> {
        self.with(|b| match b {
            Backing::Local(f) => f.truncate(len),
            Backing::Remote(r) if len == r.len => Ok(()),
            Backing::Remote(r) => Err(read_only(&r.path)),
        })
    }
}

/// An offloaded segment, read by aligned blocks through the cache.
struct RemoteSegment {
    remote: Arc<dyn ObjectStore>,
    path: ObjectPath,
    len: u64,
    /// Cache key of this object.
    id: u64,
    cache: Arc<BlockCache>,
    counters: Arc<TieringCounters>,
    config: TieringConfig,
    runtime: Handle,
}

impl RemoteSegment {
    fn read_exact_at(&self, file_offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let end = file_offset.saturating_add(buf.len() as u64);
        if end > self.len {
            return Err(StorageError::io(
                "read offloaded segment",
                format!("object {}", self.path),
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("read to {end} past the segment's {} bytes", self.len),
                ),
            ));
        }
        let bs = self.config.block_bytes;
        let mut at = file_offset;
        while at < end {
            let block = at / bs;
            let data = self.block(block)?;
            let from = (at - block * bs) as usize;
            let n = ((end - at) as usize).min(data.len().saturating_sub(from));
            if n == 0 {
                return Err(StorageError::io(
                    "read offloaded segment",
                    format!("object {}", self.path),
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short block"),
                ));
            }
            let out = (at - file_offset) as usize;
            buf[out..out + n].copy_from_slice(&data[from..from + n]);
            at += n as u64;
        }
        Ok(())
    }

    fn block(&self, block: u64) -> Result<Bytes, StorageError> {
        if let Some(b) = self.cache.get((self.id, block)) {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(b);
        }
        self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        let bs = self.config.block_bytes;
        let blocks = self.len.div_ceil(bs);
        let last = (block + self.config.readahead_blocks).min(blocks.saturating_sub(1));
        let range: Range<u64> = block * bs..((last + 1) * bs).min(self.len);
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        let bytes = match wait(
            &self.runtime,
            self.remote.get_range(&self.path, range.clone()),
        ) {
            Ok(b) => b,
            Err(e) => {
                self.counters.get_failures.fetch_add(1, Ordering::Relaxed);
                return Err(remote_err("read offloaded segment", &self.path, e));
            }
        };
        if bytes.len() as u64 != range.end - range.start {
            self.counters.get_failures.fetch_add(1, Ordering::Relaxed);
            return Err(StorageError::io(
                "read offloaded segment",
                format!("object {}", self.path),
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("range GET {range:?} returned {} bytes", bytes.len()),
                ),
            ));
        }
        self.counters
            .get_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let mut first = None;
        for (i, b) in (block..=last).enumerate() {
            let from = i * bs as usize;
            let to = (from + bs as usize).min(bytes.len());
            let piece = bytes.slice(from..to);
            if b == block {
                first = Some(piece.clone());
            }
            self.cache.insert((self.id, b), piece);
        }
        first.ok_or_else(|| {
            StorageError::io(
                "read offloaded segment",
                format!("object {}", self.path),
                std::io::Error::other("empty range"),
            )
        })
    }
}
