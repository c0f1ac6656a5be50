//! [`FaultyObjectStore`]: an [`ObjectStore`] wrapper that injects faults (failures, stalls,
//! latency, truncated reads) for the failure tests of the object-storage ledger. It forwards to
//! the wrapped store when no fault is armed; it is cheap to keep in production wiring but is
//! meant for tests.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use tokio::sync::watch;

/// Which operations a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    Put,
    Get,
    Delete,
    List,
}

/// Faults armed on a [`FaultyObjectStore`]; change them at any time through
/// [`FaultyObjectStore::faults`].
#[derive(Debug, Default)]
pub struct Faults {
    /// The next this-many PUTs fail (a 503-like generic error) before reaching the store.
    pub fail_puts: AtomicU64,
    /// The next this-many PUTs reach the store and then fail: the object exists but the caller
    /// is told it does not (a lost answer).
    pub fail_puts_after_write: AtomicU64,
    /// The next this-many GETs fail.
    pub fail_gets: AtomicU64,
    /// Ranged GETs answer one byte short (a truncated read).
    pub short_reads: AtomicBool,
    /// Extra latency before every call, in milliseconds.
    pub latency_ms: AtomicU64,
    stalled: Mutex<Vec<FaultOp>>,
    stall_release: Mutex<Option<watch::Sender<bool>>>,
}

/// See the module docs.
pub struct FaultyObjectStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
    /// PUTs that reached the wrapped store.
    pub puts: AtomicU64,
    /// GETs that reached the wrapped store.
    pub gets: AtomicU64,
}

impl fmt::Debug for FaultyObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyObjectStore")
            .field("inner", &self.inner.to_string())
            .finish()
    }
}

impl fmt::Display for FaultyObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

fn injected(op: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "faulty",
        source: format!("injected {op} failure (503 SlowDown)").into(),
    }
}

fn take_one(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

impl FaultyObjectStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyObjectStore {
            inner,
            faults: Arc::new(Faults::default()),
            puts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
        }
    }

    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// Makes every call of the given kinds wait until [`release`](Self::release) (a stalled
    /// endpoint: no answer, no error).
    pub fn stall(&self, ops: &[FaultOp]) {
        let mut release = self
            .faults
            .stall_release
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if release.is_none() {
            *release = Some(watch::channel(false).0);
        }
        *self
            .faults
            .stalled
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = ops.to_vec();
    }

    /// Lets stalled calls go on and stops stalling.
    pub fn release(&self) {
        self.faults
            .stalled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if let Some(sender) = self
            .faults
            .stall_release
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = sender.send(true);
        }
    }

    async fn before(&self, op: FaultOp) {
        let latency = self.faults.latency_ms.load(Ordering::Acquire);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let stalled = self
            .faults
            .stalled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&op);
        if stalled {
            let receiver = self
                .faults
                .stall_release
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|s| s.subscribe());
            if let Some(mut receiver) = receiver {
                let _ = receiver.wait_for(|released| *released).await;
            }
        }
    }
}

#[async_trait]
impl ObjectStore for FaultyObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.before(FaultOp::Put).await;
        if take_one(&self.faults.fail_puts) {
            return Err(injected("put"));
        }
        self.puts.fetch_add(1, Ordering::Relaxed);
        let result = self.inner.put_opts(location, payload, opts).await?;
        if take_one(&self.faults.fail_puts_after_write) {
            return Err(injected("put (after the write)"));
        }
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.before(FaultOp::Put).await;
        if take_one(&self.faults.fail_puts) {
            return Err(injected("multipart put"));
        }
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.before(FaultOp::Get).await;
        if take_one(&self.faults.fail_gets) {
            return Err(injected("get"));
        }
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.before(FaultOp::Get).await;
        if take_one(&self.faults.fail_gets) {
            return Err(injected("get"));
        }
        self.gets.fetch_add(1, Ordering::Relaxed);
        let mut parts = self.inner.get_ranges(location, ranges).await?;
        if self.faults.short_reads.load(Ordering::Acquire) {
            for part in &mut parts {
                if !part.is_empty() {
                    *part = part.slice(..part.len() - 1);
                }
            }
        }
        Ok(parts)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.before(FaultOp::List).await;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
