//! Tiered segments (issue #16, mode 1) on `object_store`'s `InMemory` and `LocalFileSystem`:
//! the store conforms to the segment-store contract; a ledger whose sealed segments were
//! offloaded serves every entry from object storage, reopens from the remote segments and
//! their index files, and never serves bytes that fail their CRC; a failing object store
//! leaves the local copy in place.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use magnetar_storage::tiered::{TieredSegmentStore, TieringConfig, TieringCounters};
use magnetar_storage::*;
use magnetar_testkit::storage::{self, offload_sealed, read_payloads, tiered_store};
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

const SEGMENT_BYTES: u64 = 8 << 10;

fn config() -> LedgerConfig {
    LedgerConfig {
        segment_bytes: SEGMENT_BYTES,
        index_interval_bytes: 512,
        ..LedgerConfig::default()
    }
}

fn tiering() -> TieringConfig {
    TieringConfig {
        block_bytes: 4 << 10,
        readahead_blocks: 1,
        cache_bytes: 16 << 10,
    }
}

async fn store(
    dir: &std::path::Path,
    remote: Arc<dyn ObjectStore>,
) -> (Arc<TieredSegmentStore>, Arc<TieringCounters>) {
    tiered_store(dir, remote, "ledgers/public/default/t/0", tiering()).await
}

fn payload(i: u64) -> Bytes {
    Bytes::from(
        (0..300 + (i % 97) as usize)
            .map(|k| (i as usize * 31 + k) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// A ledger over `store` with the tests' small segments.
fn open_ledger(dir: &std::path::Path, store: Arc<TieredSegmentStore>) -> Arc<ManagedLedger> {
    ManagedLedger::open_with_store(dir, config(), Arc::new(SystemClock), store).unwrap()
}

async fn fill(ledger: &ManagedLedger, n: u64) {
    storage::fill(ledger, n, payload).await;
}

async fn all_payloads(ledger: &ManagedLedger) -> Result<Vec<Bytes>, StorageError> {
    read_payloads(ledger, 64 << 10, 1_000).await
}

fn local_segments(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_store_conforms_on_memory_and_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = store(dir.path(), Arc::new(InMemory::new())).await;
    tokio::task::spawn_blocking(move || segment_store_conformance(s.as_ref()))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let fs = object_store::local::LocalFileSystem::new_with_prefix(bucket.path()).unwrap();
    let (s, _) = store(dir.path(), Arc::new(fs)).await;
    tokio::task::spawn_blocking(move || segment_store_conformance(s.as_ref()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offloaded_segments_serve_every_entry_and_reopen_from_object_storage() {
    let dir = tempfile::tempdir().unwrap();
    let remote: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (tiered, counters) = store(dir.path(), remote.clone()).await;
    let ledger = open_ledger(dir.path(), tiered.clone());
    fill(&ledger, 200).await;
    let expected: Vec<Bytes> = (0..200).map(payload).collect();
    assert!(ledger.stats().segments.len() >= 6);

    let offloaded = offload_sealed(&tiered).await.unwrap();
    assert_eq!(offloaded.len(), ledger.stats().segments.len() - 1);
    assert_eq!(
        local_segments(dir.path()).len(),
        1,
        "only the active segment stays on disk"
    );
    assert!(offload_sealed(&tiered).await.unwrap().is_empty(), "once");
    // The open ledger reads the offloaded segments through the same file handles.
    assert_eq!(all_payloads(&ledger).await.unwrap(), expected);
    let gets = counters.gets.load(Ordering::Relaxed);
    assert!(gets > 0);
    assert!(
        counters.cache_hits.load(Ordering::Relaxed) > 0,
        "read-ahead blocks are served from the cache"
    );
    // Lookups by time cross offloaded segments.
    let found = ledger.find_by_timestamp(1_050).await.unwrap();
    assert_eq!(found.map(|h| h.first_index), Some(50));
    // Appends go on locally.
    fill(&ledger, 10).await;
    ledger.close().await.unwrap();
    drop(ledger);

    // Reopen with a new store over the same bucket: sealed segments come from their remote
    // index files, without reading the segments.
    let (tiered, _) = store(dir.path(), remote.clone()).await;
    let ledger = open_ledger(dir.path(), tiered.clone());
    let recovery = ledger.stats().recovery;
    assert!(recovery.index_rebuilds.is_empty(), "{recovery:?}");
    // Every segment opened from its index (the active one thanks to the clean close).
    assert_eq!(recovery.segments_scanned, 0, "{recovery:?}");
    assert_eq!(
        recovery.indexes_loaded as usize,
        ledger.stats().segments.len()
    );
    let mut expected = expected;
    expected.extend((0..10).map(payload));
    assert_eq!(all_payloads(&ledger).await.unwrap(), expected);

    // Retention deletes offloaded segments from the bucket.
    let end = ledger.end_index();
    ledger.truncate_before(end - 5).await.unwrap();
    let left = tokio::task::spawn_blocking(move || tiered.offloaded())
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    let objects: Vec<_> = futures_util::StreamExt::collect::<Vec<_>>(remote.list(None)).await;
    assert!(objects.is_empty(), "{objects:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_object_is_a_crc_error_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let remote: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (tiered, _) = store(dir.path(), remote.clone()).await;
    let ledger = open_ledger(dir.path(), tiered.clone());
    fill(&ledger, 60).await;
    let first = offload_sealed(&tiered).await.unwrap()[0];
    ledger.close().await.unwrap();
    drop(ledger);

    let path = ObjectPath::from(format!("ledgers/public/default/t/0/{first:020}.seg"));
    let mut bytes = remote
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    remote.put(&path, PutPayload::from(bytes)).await.unwrap();

    let (tiered, _) = store(dir.path(), remote.clone()).await;
    let ledger = open_ledger(dir.path(), tiered);
    let err = all_payloads(&ledger).await.unwrap_err();
    assert!(
        matches!(err, StorageError::Corrupt { segment, .. } if segment == first),
        "{err:?}"
    );
}

/// An object store that fails every call while `down` is set.
#[derive(Debug)]
struct Flaky {
    inner: InMemory,
    down: AtomicBool,
}

impl fmt::Display for Flaky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flaky({})", self.inner)
    }
}

impl Flaky {
    fn check(&self) -> object_store::Result<()> {
        if self.down.load(Ordering::Relaxed) {
            return Err(object_store::Error::Generic {
                store: "flaky",
                source: "503 SlowDown (injected)".into(),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ObjectStore for Flaky {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check()?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check()?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.check()?;
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.check()?;
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.check()?;
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.check()?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_keeps_the_local_copy_and_the_offload_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = Arc::new(Flaky {
        inner: InMemory::new(),
        down: AtomicBool::new(false),
    });
    let (tiered, counters) = store(dir.path(), flaky.clone()).await;
    let ledger = open_ledger(dir.path(), tiered.clone());
    fill(&ledger, 60).await;
    let expected: Vec<Bytes> = (0..60).map(payload).collect();
    let before = local_segments(dir.path());

    flaky.down.store(true, Ordering::Relaxed);
    let err = offload_sealed(&tiered).await.unwrap_err();
    assert!(err.to_string().contains("SlowDown"), "{err}");
    assert_eq!(counters.upload_failures.load(Ordering::Relaxed), 1);
    assert_eq!(local_segments(dir.path()), before, "local copies kept");
    assert_eq!(all_payloads(&ledger).await.unwrap(), expected);

    flaky.down.store(false, Ordering::Relaxed);
    let done = offload_sealed(&tiered).await.unwrap();
    assert_eq!(done.len(), before.len() - 1);
    assert_eq!(local_segments(dir.path()).len(), 1);

    // Reads of offloaded ranges fail while the store is down (an error, never wrong bytes),
    // and work again when it is back.
    let (fresh, _) = store(dir.path(), flaky.clone()).await;
    let reopened = {
        ledger.close().await.unwrap();
        drop(ledger);
        // Open reads remote index files: the store is up for that.
        let l = open_ledger(dir.path(), fresh);
        flaky.down.store(true, Ordering::Relaxed);
        l
    };
    let err = reopened.read(0, 1 << 10, 1).await.unwrap_err();
    assert!(err.to_string().contains("SlowDown"), "{err}");
    flaky.down.store(false, Ordering::Relaxed);
    assert_eq!(all_payloads(&reopened).await.unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_copy_left_by_a_crash_after_the_upload_is_deleted_by_the_next_offload() {
    let dir = tempfile::tempdir().unwrap();
    let remote: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (tiered, _) = store(dir.path(), remote.clone()).await;
    let ledger = open_ledger(dir.path(), tiered.clone());
    fill(&ledger, 60).await;
    let expected: Vec<Bytes> = (0..60).map(payload).collect();
    let done = offload_sealed(&tiered).await.unwrap();
    let victim = done[0];
    ledger.close().await.unwrap();
    drop((ledger, tiered));
    // The crash: the object is there, the local copy was not deleted.
    let path = ObjectPath::from(format!("ledgers/public/default/t/0/{victim:020}.seg"));
    let bytes = remote.get(&path).await.unwrap().bytes().await.unwrap();
    let local = dir
        .path()
        .join(magnetar_storage::segment_store::segment_file_name(victim));
    std::fs::write(&local, &bytes).unwrap();

    let (tiered, _) = store(dir.path(), remote.clone()).await;
    let ledger = open_ledger(dir.path(), tiered.clone());
    assert_eq!(all_payloads(&ledger).await.unwrap(), expected);
    let again = offload_sealed(&tiered).await.unwrap();
    assert_eq!(again, vec![victim], "the leftover copy is cleaned up");
    assert!(!local.exists());
    assert_eq!(all_payloads(&ledger).await.unwrap(), expected);

    // A leftover copy whose length differs from the object is kept, with an error.
    std::fs::write(&local, &bytes[..bytes.len() - 1]).unwrap();
    let err = offload_sealed(&tiered).await.unwrap_err();
    assert!(err.to_string().contains("keeping both"), "{err}");
    assert!(local.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_unreachable_at_open_opens_from_the_manifest_and_serves_the_local_tail() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = Arc::new(Flaky {
        inner: InMemory::new(),
        down: AtomicBool::new(false),
    });
    let (tiered, _) = store(dir.path(), flaky.clone()).await;
    let ledger = open_ledger(dir.path(), tiered.clone());
    fill(&ledger, 60).await;
    let expected: Vec<Bytes> = (0..60).map(payload).collect();
    let offloaded = offload_sealed(&tiered).await.unwrap();
    assert!(!offloaded.is_empty());
    let (start, end) = (ledger.start_index(), ledger.end_index());
    ledger.close().await.unwrap();
    drop((ledger, tiered));

    // Restart while the object store answers nothing: the ledger opens with the same bounds
    // (the offloaded segments come from the local manifest), the local tail is served, the
    // offloaded range is an error (never skipped), and everything reads once the store is back.
    flaky.down.store(true, Ordering::Relaxed);
    let (tiered, _) = store(dir.path(), flaky.clone()).await;
    assert_eq!(
        tiered.offloaded().keys().copied().collect::<Vec<_>>(),
        offloaded
    );
    let ledger = open_ledger(dir.path(), tiered);
    assert_eq!((ledger.start_index(), ledger.end_index()), (start, end));
    let tail = ledger.read(59, 64 << 10, 10).await.unwrap();
    assert_eq!(tail[0].payload, expected[59]);
    let err = ledger.read(0, 1 << 10, 1).await.unwrap_err();
    assert!(err.to_string().contains("SlowDown"), "{err}");
    flaky.down.store(false, Ordering::Relaxed);
    assert_eq!(all_payloads(&ledger).await.unwrap(), expected);
}
