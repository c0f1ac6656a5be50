//! [`WalWriter`]: one per broker; batches every ledger's entries into WAL objects, PUTs them,
//! commits their range records, then acknowledges.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use magnetar_metadata::{Expect, MetadataError, MetadataStore, Txn, TxnOp};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::ledger::LedgerInner;
use super::records::{self, RangeRecord};
use super::{WalConfig, LEDGERS_PER_TXN};
use crate::{Clock, LatencyHistogram, StorageError};

/// Counters of a [`WalWriter`], for metrics.
#[derive(Debug, Default)]
pub struct WalCounters {
    /// WAL objects written.
    pub objects: AtomicU64,
    /// Bytes of WAL objects written.
    pub bytes: AtomicU64,
    /// PUT attempts that failed or timed out (and were retried or gave up).
    pub put_failures: AtomicU64,
    /// Metadata commits (transactions) that succeeded.
    pub commits: AtomicU64,
    /// Commit attempts that failed for a reason other than a lost fence.
    pub commit_failures: AtomicU64,
    /// Ledger chunks refused because the writer lost the ledger's fence.
    pub fenced: AtomicU64,
    /// Appends failed after the commit timeout.
    pub timed_out: AtomicU64,
    /// From the start of a flush (PUT) to the end of its commit.
    pub commit_latency: LatencyHistogram,
    /// Segments sealed, and seals that failed (retried at the next commit).
    pub seals: AtomicU64,
    pub seal_failures: AtomicU64,
    /// Bytes moved from WAL objects into segment objects.
    pub sealed_bytes: AtomicU64,
    /// Objects deleted by garbage collection: WAL objects no chunk refers to any more (sealed
    /// or never committed), and segment objects no record names (a seal that did not commit).
    pub collected_wal_objects: AtomicU64,
    pub collected_segment_objects: AtomicU64,
    /// Ledgers opened (each one a takeover: the epoch is bumped), and how long each took: the
    /// epoch bump, loading the records and checking them.
    pub takeovers: AtomicU64,
    pub takeover_latency: LatencyHistogram,
}

/// An entry accepted by a ledger and waiting for its object.
pub(crate) struct Pending {
    pub(crate) ledger: Arc<LedgerInner>,
    pub(crate) first_index: u64,
    pub(crate) end_index: u64,
    pub(crate) max_timestamp_ms: i64,
    pub(crate) bytes: Vec<u8>,
    pub(crate) done: oneshot::Sender<Result<u64, StorageError>>,
}

pub(crate) struct WriterShared {
    pub(crate) name: String,
    /// Where the ledgers' records live in the metadata store.
    pub(crate) root: String,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) metadata: Arc<dyn MetadataStore>,
    pub(crate) config: WalConfig,
    pub(crate) clock: Arc<dyn Clock>,
    queue: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
    /// Bytes accepted and not yet committed or failed.
    pub(crate) pending_bytes: AtomicU64,
    pub(crate) counters: Arc<WalCounters>,
}

impl WriterShared {
    /// Queues an entry for the next object; the caller holds its ledger's append lock, so a
    /// ledger's entries queue in index order.
    pub(crate) fn enqueue(&self, pending: Pending) -> Result<(), StorageError> {
        let size = pending.bytes.len() as u64;
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = queue.as_ref() else {
            return Err(StorageError::Closed);
        };
        self.pending_bytes.fetch_add(size, Ordering::AcqRel);
        if sender.send(pending).is_err() {
            self.pending_bytes.fetch_sub(size, Ordering::AcqRel);
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    /// Refuses more when the writer already holds its limit of uncommitted bytes.
    pub(crate) fn check_room(&self) -> Result<(), StorageError> {
        let queued = self.pending_bytes.load(Ordering::Acquire);
        if queued >= self.config.pending_bytes_max {
            return Err(StorageError::QueueFull {
                queued_bytes: queued,
                max_bytes: self.config.pending_bytes_max,
            });
        }
        Ok(())
    }
}

/// See the [module docs](super).
pub struct WalWriter {
    pub(crate) shared: Arc<WriterShared>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for WalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalWriter")
            .field("name", &self.shared.name)
            .finish()
    }
}

impl WalWriter {
    /// Starts a writer named `<name>-<nonce>` (the nonce makes every process's object names
    /// its own) whose ledgers keep their records under `root` (a metadata key path, such as
    /// `/managed-ledgers`). Needs a tokio runtime.
    pub fn start(
        name: &str,
        root: &str,
        store: Arc<dyn ObjectStore>,
        metadata: Arc<dyn MetadataStore>,
        config: WalConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<WalWriter, StorageError> {
        config.validate()?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(StorageError::InvalidConfig {
                reason: format!("wal writer name {name:?} must be non-empty [A-Za-z0-9-]"),
            });
        }
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 40);
        magnetar_metadata::validate_key(root).map_err(|e| StorageError::InvalidConfig {
            reason: format!("wal root {root:?}: {e}"),
        })?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(WriterShared {
            name: format!("{name}-{nonce:016x}"),
            root: root.to_string(),
            store,
            metadata,
            config,
            clock,
            queue: Mutex::new(Some(sender)),
            pending_bytes: AtomicU64::new(0),
            counters: Arc::new(WalCounters::default()),
        });
        let handle = tokio::runtime::Handle::try_current().map_err(|_| StorageError::NoRuntime)?;
        let task = handle.spawn(run(shared.clone(), receiver));
        Ok(WalWriter {
            shared,
            task: Mutex::new(Some(task)),
        })
    }

    /// The writer's unique name (the directory of its objects: `wal/<name>/`).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn counters(&self) -> &Arc<WalCounters> {
        &self.shared.counters
    }

    /// Bytes accepted and not yet committed or failed.
    pub fn pending_bytes(&self) -> u64 {
        self.shared.pending_bytes.load(Ordering::Acquire)
    }

    /// Stops accepting entries, writes and commits what is queued, and returns when done.
    pub async fn close(&self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Stops at once without writing what is queued: what a killed process leaves behind
    /// (tests).
    #[doc(hidden)]
    pub fn abort(&self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

impl Drop for WalWriter {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

/// WAL objects being PUT at once; their commits still run one at a time in sequence order,
/// so a ledger's chunks are committed in index order.
pub(super) const PUTS_IN_FLIGHT: usize = 4;

/// A spawned task aborted when this handle is dropped (an aborted writer leaves nothing
/// running, as a killed process would).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run(shared: Arc<WriterShared>, mut receiver: mpsc::UnboundedReceiver<Pending>) {
    let interval = Duration::from_millis(shared.config.flush_interval_ms);
    let (commits, to_commit) = mpsc::channel(PUTS_IN_FLIGHT);
    let mut committer = AbortOnDrop(tokio::spawn(commit_loop(shared.clone(), to_commit)));
    let mut seq: u64 = 0;
    while let Some(first) = receiver.recv().await {
        let deadline = Instant::now() + interval;
        let mut bytes = first.bytes.len() as u64;
        let mut batch = vec![first];
        while bytes < shared.config.object_bytes_max {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(pending)) => {
                    bytes += pending.bytes.len() as u64;
                    batch.push(pending);
                }
                Ok(None) | Err(_) => break,
            }
        }
        seq += 1;
        let Some(prepared) = prepare(&shared, seq, batch) else {
            continue;
        };
        let put = {
            let shared = shared.clone();
            let (object, body, deadline) = (
                prepared.object.clone(),
                prepared.body.clone(),
                prepared.deadline,
            );
            AbortOnDrop(tokio::spawn(async move {
                put_verified(&shared, &object, body, deadline).await
            }))
        };
        if commits.send((prepared, put)).await.is_err() {
            break;
        }
    }
    drop(commits);
    let _ = (&mut committer.0).await;
}

/// One ledger's entries in a batch.
struct Chunk {
    ledger: Arc<LedgerInner>,
    pendings: Vec<Pending>,
    record: RangeRecord,
}

/// A batch laid out as one object, its PUT started.
struct Prepared {
    object: String,
    body: Bytes,
    chunks: Vec<Chunk>,
    batch_bytes: u64,
    started: Instant,
    deadline: Instant,
}

/// Groups a batch by ledger (in order of first appearance; a ledger's entries stay in index
/// order) into one object body. Entries of failed ledgers are failed here. `None` when
/// nothing is left to write.
fn prepare(shared: &WriterShared, seq: u64, batch: Vec<Pending>) -> Option<Prepared> {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(shared.config.commit_timeout_ms);
    let batch_bytes: u64 = batch.iter().map(|p| p.bytes.len() as u64).sum();
    let object = records::wal_object(&shared.name, seq);
    let mut order: Vec<Arc<LedgerInner>> = Vec::new();
    let mut groups: HashMap<usize, Vec<Pending>> = HashMap::new();
    for pending in batch {
        let key = Arc::as_ptr(&pending.ledger) as usize;
        if !groups.contains_key(&key) {
            order.push(pending.ledger.clone());
        }
        groups.entry(key).or_default().push(pending);
    }
    let mut body: Vec<u8> = Vec::with_capacity(batch_bytes as usize);
    let mut chunks: Vec<Chunk> = Vec::with_capacity(order.len());
    for ledger in order {
        let pendings = groups
            .remove(&(Arc::as_ptr(&ledger) as usize))
            .unwrap_or_default();
        if let Some(reason) = ledger.failed_reason() {
            fail_all(pendings, || StorageError::Failed {
                reason: reason.clone(),
            });
            continue;
        }
        let offset = body.len() as u64;
        let mut max_ts = i64::MIN;
        for p in &pendings {
            body.extend_from_slice(&p.bytes);
            max_ts = max_ts.max(p.max_timestamp_ms);
        }
        let first = pendings.first().map_or(0, |p| p.first_index);
        let end = pendings.last().map_or(0, |p| p.end_index);
        let record = RangeRecord::new(
            &object,
            offset,
            body.len() as u64 - offset,
            first,
            end,
            pendings.len() as u32,
            ledger.epoch,
            max_ts,
        );
        chunks.push(Chunk {
            ledger,
            pendings,
            record,
        });
    }
    if chunks.is_empty() {
        shared
            .pending_bytes
            .fetch_sub(batch_bytes, Ordering::AcqRel);
        return None;
    }
    Some(Prepared {
        object,
        body: Bytes::from(body),
        chunks,
        batch_bytes,
        started,
        deadline,
    })
}

/// Commits PUT objects in sequence order: waits for each PUT, drops the chunks of ledgers
/// that failed meanwhile (an earlier object's chunk of theirs was not committed, so a later
/// one must not be), commits the rest and acknowledges.
async fn commit_loop(
    shared: Arc<WriterShared>,
    mut to_commit: mpsc::Receiver<(Prepared, AbortOnDrop<Result<(), StorageError>>)>,
) {
    while let Some((prepared, mut put)) = to_commit.recv().await {
        let put_result = match (&mut put.0).await {
            Ok(result) => result,
            Err(e) => Err(StorageError::TaskFailed {
                reason: e.to_string(),
            }),
        };
        finish(&shared, prepared, put_result).await;
    }
}

async fn finish(shared: &WriterShared, prepared: Prepared, put: Result<(), StorageError>) {
    let Prepared {
        body,
        chunks,
        batch_bytes,
        started,
        deadline,
        ..
    } = prepared;
    if let Err(error) = put {
        shared
            .counters
            .timed_out
            .fetch_add(chunks.len() as u64, Ordering::Relaxed);
        for chunk in chunks {
            chunk.ledger.fail(&error.to_string());
            fail_all(chunk.pendings, || clone_error(&error));
        }
        shared
            .pending_bytes
            .fetch_sub(batch_bytes, Ordering::AcqRel);
        return;
    }
    shared.counters.objects.fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    let mut rest = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        match chunk.ledger.failed_reason() {
            Some(reason) => fail_all(chunk.pendings, || StorageError::Failed {
                reason: reason.clone(),
            }),
            None => rest.push(chunk),
        }
    }
    while !rest.is_empty() {
        let take = rest.len().min(LEDGERS_PER_TXN);
        let group: Vec<Chunk> = rest.drain(..take).collect();
        commit_group(shared, group, &body, deadline).await;
    }
    shared.counters.commit_latency.observe(started.elapsed());
    shared
        .pending_bytes
        .fetch_sub(batch_bytes, Ordering::AcqRel);
}

pub(crate) fn clone_error(error: &StorageError) -> StorageError {
    match error {
        StorageError::ObjectStore { op, reason } => StorageError::ObjectStore {
            op,
            reason: reason.clone(),
        },
        StorageError::Metadata { reason } => StorageError::Metadata {
            reason: reason.clone(),
        },
        StorageError::Fenced { ledger, reason } => StorageError::Fenced {
            ledger: ledger.clone(),
            reason: reason.clone(),
        },
        other => StorageError::Failed {
            reason: other.to_string(),
        },
    }
}

fn fail_all(pendings: Vec<Pending>, error: impl Fn() -> StorageError) {
    for p in pendings {
        let _ = p.done.send(Err(error()));
    }
}

/// Backoff between retries: 50 ms doubling to 1 s, never past the deadline.
pub(crate) fn backoff(attempt: u32, deadline: Instant) -> Duration {
    let wait = Duration::from_millis(50u64 << attempt.min(4)).min(Duration::from_secs(1));
    wait.min(deadline.saturating_duration_since(Instant::now()))
}

/// PUTs the object create-only, retrying until `deadline`. A create that finds the object
/// already there (an earlier attempt whose answer was lost) reads it back and compares.
pub(crate) async fn put_verified(
    shared: &WriterShared,
    object: &str,
    body: Bytes,
    deadline: Instant,
) -> Result<(), StorageError> {
    let path = ObjectPath::from(object);
    let mut attempt = 0u32;
    loop {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let call = shared
            .store
            .put_opts(&path, PutPayload::from(body.clone()), options);
        let outcome = tokio::time::timeout_at(deadline, call).await;
        let reason = match outcome {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(object_store::Error::AlreadyExists { .. })) => {
                match tokio::time::timeout_at(deadline, shared.store.get(&path)).await {
                    Ok(Ok(found)) => match found.bytes().await {
                        Ok(bytes) if bytes == body => return Ok(()),
                        Ok(_) => {
                            return Err(StorageError::ObjectStore {
                                op: "put",
                                reason: format!("object {object} already exists with other bytes"),
                            })
                        }
                        Err(e) => e.to_string(),
                    },
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "no answer before the commit timeout".to_string(),
                }
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer before the commit timeout".to_string(),
        };
        shared.counters.put_failures.fetch_add(1, Ordering::Relaxed);
        if Instant::now() >= deadline {
            return Err(StorageError::ObjectStore {
                op: "put",
                reason: format!(
                    "{object}: {reason} (gave up after {} ms)",
                    shared.config.commit_timeout_ms
                ),
            });
        }
        tracing::warn!(object, %reason, attempt, "wal object put failed; retrying");
        tokio::time::sleep(backoff(attempt, deadline)).await;
        attempt += 1;
    }
}

/// Commits the range records of up to [`LEDGERS_PER_TXN`] chunks in one transaction, dropping
/// chunks whose fence is lost and retrying the others until `deadline`; then acknowledges.
async fn commit_group(
    shared: &WriterShared,
    mut group: Vec<Chunk>,
    body: &Bytes,
    deadline: Instant,
) {
    let mut attempt = 0u32;
    let mut committed: Vec<Chunk> = Vec::new();
    while !group.is_empty() {
        let mut txn = Txn::new();
        // The chunks of one bundle share its owner fence: compared once per transaction.
        let mut owner_fences = std::collections::BTreeSet::new();
        for chunk in &group {
            let range_key = chunk.ledger.range_key(chunk.record.first_index);
            if let Some(reference) =
                records::wal_ref_key(&shared.root, &chunk.record.object, &chunk.ledger.name)
            {
                txn = txn.then(TxnOp::put(reference, Bytes::new()));
            }
            if let Some(owner) = &chunk.ledger.owner_fence {
                owner_fences.insert((owner.key.clone(), owner.version));
            }
            txn = txn
                .when(
                    chunk.ledger.fence_key.clone(),
                    Expect::Version(chunk.ledger.fence_version),
                )
                .when(range_key.clone(), Expect::Absent)
                .then(TxnOp::put(range_key, records::encode(&chunk.record)));
        }
        for (key, version) in owner_fences {
            txn = txn.when(key, Expect::Version(version));
        }
        let outcome = tokio::time::timeout_at(deadline, shared.metadata.txn(txn)).await;
        let error =
            match outcome {
                Ok(Ok(_)) => {
                    shared.counters.commits.fetch_add(1, Ordering::Relaxed);
                    committed.append(&mut group);
                    break;
                }
                Ok(Err(MetadataError::BadVersion { key, .. })) => {
                    // Which chunk's compare failed: its fence (lost), or its range key (already
                    // there: ours after a lost answer, or someone else's).
                    // A fence (the ledger's or its owner's) refuses every chunk under it: fence
                    // them all at once rather than one per round trip.
                    if group.iter().any(|c| c.ledger.is_fence_key(&key)) {
                        let (lost, kept): (Vec<Chunk>, Vec<Chunk>) =
                            group.into_iter().partition(|c| c.ledger.is_fence_key(&key));
                        group = kept;
                        for chunk in lost {
                            let reason = chunk.ledger.fence_reason(&key);
                            fence_chunk(shared, chunk, reason);
                        }
                        continue;
                    }
                    let Some(at) = group
                        .iter()
                        .position(|c| c.ledger.range_key(c.record.first_index) == key)
                    else {
                        fail_group(
                            shared,
                            group,
                            &StorageError::Metadata {
                                reason: format!("commit refused on an unexpected key {key}"),
                            },
                        );
                        break;
                    };
                    let chunk = group.remove(at);
                    {
                        match shared.metadata.get(&key).await {
                            Ok(Some(found)) => {
                                match records::decode::<RangeRecord>(&key, &found.value) {
                                    Ok(record) if record == chunk.record => committed.push(chunk),
                                    Ok(_) | Err(_) => fence_chunk(
                                        shared,
                                        chunk,
                                        "another writer committed at this index",
                                    ),
                                }
                            }
                            Ok(None) | Err(_) => {
                                // Unknown: put it back and retry the whole group.
                                group.insert(at, chunk);
                                shared
                                    .counters
                                    .commit_failures
                                    .fetch_add(1, Ordering::Relaxed);
                                if Instant::now() >= deadline {
                                    fail_group(shared, group, &StorageError::Metadata {
                                    reason: "commit refused and its record could not be read back"
                                        .into(),
                                });
                                    break;
                                }
                                tokio::time::sleep(backoff(attempt, deadline)).await;
                                attempt += 1;
                            }
                        }
                    }
                    continue;
                }
                Ok(Err(e @ (MetadataError::Storage(_) | MetadataError::Closed))) => e.to_string(),
                Ok(Err(e)) => {
                    fail_group(
                        shared,
                        group,
                        &StorageError::Metadata {
                            reason: format!("commit refused: {e}"),
                        },
                    );
                    break;
                }
                Err(_) => "no answer before the commit timeout".to_string(),
            };
        shared
            .counters
            .commit_failures
            .fetch_add(1, Ordering::Relaxed);
        if Instant::now() >= deadline {
            shared
                .counters
                .timed_out
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            fail_group(
                shared,
                group,
                &StorageError::Metadata {
                    reason: format!(
                        "commit not confirmed within {} ms: {error}",
                        shared.config.commit_timeout_ms
                    ),
                },
            );
            break;
        }
        tracing::warn!(%error, attempt, "wal commit failed; retrying");
        tokio::time::sleep(backoff(attempt, deadline)).await;
        attempt += 1;
    }
    for chunk in committed {
        let range = chunk.record.offset as usize..(chunk.record.offset + chunk.record.len) as usize;
        chunk.ledger.on_committed(chunk.record, body.slice(range));
        for p in chunk.pendings {
            let _ = p.done.send(Ok(p.first_index));
        }
        super::seal::maybe_seal(&chunk.ledger);
    }
}

fn fence_chunk(shared: &WriterShared, chunk: Chunk, reason: &str) {
    shared.counters.fenced.fetch_add(1, Ordering::Relaxed);
    let error = StorageError::Fenced {
        ledger: chunk.ledger.name.clone(),
        reason: reason.to_string(),
    };
    chunk.ledger.fence(reason);
    fail_all(chunk.pendings, || clone_error(&error));
}

fn fail_group(_shared: &WriterShared, group: Vec<Chunk>, error: &StorageError) {
    for chunk in group {
        chunk.ledger.fail(&error.to_string());
        fail_all(chunk.pendings, || clone_error(error));
    }
}
