//! Storage test doubles and helpers shared by the storage, broker and binary tests: local
//! segments with hooks that hold, fail or count calls, and the tiered-storage steps (open a
//! tiered store, fill a ledger, read every payload back, offload the sealed segments).

use std::sync::Arc;

use bytes::Bytes;
use magnetar_storage::tiered::{BlockCache, TieredSegmentStore, TieringConfig, TieringCounters};
use magnetar_storage::{
    LocalSegmentStore, ManagedLedger, NewEntry, PayloadFormat, SegmentFile, SegmentStore,
    StorageError,
};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;

/// What a [`HookedSegmentStore`] asks before it forwards a call to its local segments.
pub trait SegmentHooks: Send + Sync + 'static {
    /// Before `list` (the first thing a ledger open does); an error is returned instead.
    fn before_list(&self) -> Result<(), StorageError> {
        Ok(())
    }
    /// Before a read of `len` bytes from the segment at `base_index`.
    fn before_read(&self, _base_index: u64, _len: usize) {}
    /// Before an append to the segment at `base_index`; an error is returned instead.
    fn before_append(&self, _base_index: u64) -> Result<(), StorageError> {
        Ok(())
    }
}

/// Local segments (a [`LocalSegmentStore`]) whose calls go through `hooks` first. Only the
/// required methods are forwarded: compaction staging and offload keep the trait's defaults.
pub struct HookedSegmentStore<H> {
    inner: LocalSegmentStore,
    hooks: Arc<H>,
}

struct HookedFile<H> {
    inner: Arc<dyn SegmentFile>,
    base_index: u64,
    hooks: Arc<H>,
}

impl<H: SegmentHooks> HookedSegmentStore<H> {
    pub fn new(dir: &std::path::Path, hooks: Arc<H>) -> Result<Self, StorageError> {
        Ok(HookedSegmentStore {
            inner: LocalSegmentStore::new(dir)?,
            hooks,
        })
    }

    fn wrap(&self, inner: Arc<dyn SegmentFile>, base_index: u64) -> Arc<dyn SegmentFile> {
        Arc::new(HookedFile {
            inner,
            base_index,
            hooks: self.hooks.clone(),
        })
    }
}

impl<H: SegmentHooks> SegmentStore for HookedSegmentStore<H> {
    fn list(&self) -> Result<Vec<u64>, StorageError> {
        self.hooks.before_list()?;
        self.inner.list()
    }
    fn create(&self, base_index: u64) -> Result<Arc<dyn SegmentFile>, StorageError> {
        Ok(self.wrap(self.inner.create(base_index)?, base_index))
    }
    fn open(&self, base_index: u64) -> Result<Arc<dyn SegmentFile>, StorageError> {
        Ok(self.wrap(self.inner.open(base_index)?, base_index))
    }
    fn delete(&self, base_index: u64) -> Result<(), StorageError> {
        self.inner.delete(base_index)
    }
    fn write_index(&self, base_index: u64, bytes: &[u8], sync: bool) -> Result<(), StorageError> {
        self.inner.write_index(base_index, bytes, sync)
    }
    fn read_index(&self, base_index: u64, max_bytes: u64) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.read_index(base_index, max_bytes)
    }
}

impl<H: SegmentHooks> SegmentFile for HookedFile<H> {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_exact_at(&self, file_offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        self.hooks.before_read(self.base_index, buf.len());
        self.inner.read_exact_at(file_offset, buf)
    }
    fn append(&self, data: &[u8]) -> Result<(), StorageError> {
        self.hooks.before_append(self.base_index)?;
        self.inner.append(data)
    }
    fn sync(&self) -> Result<(), StorageError> {
        self.inner.sync()
    }
    fn truncate(&self, len: u64) -> Result<(), StorageError> {
        self.inner.truncate(len)
    }
}

/// A tiered segment store over `remote` under `prefix`, with its own block cache of
/// `tiering.cache_bytes`; returns it with its counters.
pub async fn tiered_store(
    dir: &std::path::Path,
    remote: Arc<dyn ObjectStore>,
    prefix: &str,
    tiering: TieringConfig,
) -> (Arc<TieredSegmentStore>, Arc<TieringCounters>) {
    let counters = Arc::new(TieringCounters::default());
    let cache = Arc::new(BlockCache::new(tiering.cache_bytes));
    let store = TieredSegmentStore::new(
        dir,
        remote,
        ObjectPath::from(prefix),
        tiering,
        cache,
        counters.clone(),
        tokio::runtime::Handle::current(),
    )
    .await
    .expect("tiered store opens");
    (Arc::new(store), counters)
}

/// Appends `n` Kafka-format entries of one message each (`payload(i)`, max timestamp
/// `1000 + i`), waiting for each to be durable.
pub async fn fill(ledger: &ManagedLedger, n: u64, payload: impl Fn(u64) -> Bytes) {
    for i in 0..n {
        ledger
            .append_with(|_| NewEntry {
                payload: payload(i),
                message_count: 1,
                max_timestamp_ms: 1_000 + i as i64,
                format: PayloadFormat::Kafka,
                producer: None,
                first_index_at: None,
            })
            .expect("append queued")
            .wait()
            .await
            .expect("append durable");
    }
}

/// Every payload from the ledger's start to its end, read `max_bytes`/`max_entries` at a time.
pub async fn read_payloads(
    ledger: &ManagedLedger,
    max_bytes: usize,
    max_entries: usize,
) -> Result<Vec<Bytes>, StorageError> {
    let mut out = Vec::new();
    let mut at = ledger.start_index();
    while at < ledger.end_index() {
        let got = ledger.read(at, max_bytes, max_entries).await?;
        out.extend(got.iter().map(|e| e.payload.clone()));
        at = got
            .last()
            .expect("a read below the end returns entries")
            .header
            .end_index();
    }
    Ok(out)
}

/// Offloads every sealed segment (all but the last) on a blocking thread; returns the bases
/// offloaded.
pub async fn offload_sealed(store: &Arc<TieredSegmentStore>) -> Result<Vec<u64>, StorageError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let bases = store.list()?;
        let mut done = Vec::new();
        for base in &bases[..bases.len().saturating_sub(1)] {
            if store.offload(*base)? {
                done.push(*base);
            }
        }
        Ok(done)
    })
    .await
    .expect("offload task")
}
