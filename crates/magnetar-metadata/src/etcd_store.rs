//! [`EtcdStore`]: the metadata store on an etcd v3 cluster (feature `etcd`), for brokers that
//! share their metadata (cluster mode). etcd does the replication and consensus; this is a
//! client.
//!
//! - Keys are stored under a root prefix (`/magnetar` by default, so several clusters or other
//!   users can share one etcd) as given: `<root><key>`.
//! - Versions are etcd's per-key `version` (1 at create, +1 per put, gone at delete): exactly
//!   this crate's rule. A conditional put or delete is one etcd transaction comparing that
//!   version (0 for absent); the transaction's other branch reads the key, so a refusal says
//!   what was there.
//! - Watches: one etcd watch over the whole root, started at open at the revision read then,
//!   feeds a broadcast hub; each [`Watch`] filters by prefix and skips events of revisions
//!   it could already have seen when it started (the store tracks the highest revision its own
//!   calls and the watch stream have seen). A broken stream resumes at the next revision; one
//!   that fell behind a compaction resumes at the compaction revision (the lost events are
//!   logged: watchers re-read on reconnect, as after a `Lagged`).
//! - Transactions are one etcd `Txn`; the failure branch reads the compared keys (keys only)
//!   so the error names the first failing compare. Sessions are leases: granted in whole
//!   seconds (rounded up; etcd may raise a TTL to its minimum), kept alive over one
//!   keep-alive stream, revoked on close; a bound key is a put `with_lease`, and etcd's "lease
//!   not found" is [`MetadataError::SessionExpired`].
//! - Every call has a deadline ([`EtcdOptions::request_timeout`]): an unreachable etcd is a
//!   [`MetadataError::Storage`] error naming it, not a hang.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, GetResponse,
    KvClient, LeaseClient, LeaseKeepAliveStream, LeaseKeeper, PutOptions, SortOrder, SortTarget,
    Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::time::Instant;

use crate::session::{validate_ttl, Lease};
use crate::watch::EventHub;
use crate::{
    validate_key, validate_path, validate_value, Event, EventKind, Expect, MetadataError,
    MetadataStore, Session, SessionId, Txn as MetaTxn, TxnOp as MetaTxnOp, TxnOutcome, Versioned,
    Watch, KEY_LENGTH_BYTES_MAX, TXN_OPS_MAX, VALUE_SIZE_BYTES_MAX, WATCH_BUFFER_EVENTS,
};

/// Keys read per page when listing.
const LIST_PAGE_KEYS: i64 = 1000;
/// Most keys a listing reads beneath one path (a bound, far above any real namespace).
const LIST_KEYS_MAX: usize = 1_000_000;

/// How to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// `http://host:port` endpoints of the etcd cluster.
    pub endpoints: Vec<String>,
    /// The prefix every key is stored under (no trailing `/`; empty: none).
    pub root: String,
    /// Deadline of every request, and of connecting.
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            root: "/magnetar".into(),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// A [`MetadataStore`] on etcd.
pub struct EtcdStore {
    kv: KvClient,
    lease: LeaseClient,
    options: EtcdOptions,
    shared: Arc<Shared>,
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Shared {
    events: Mutex<EventHub>,
    /// The highest etcd revision any call or the watch stream has seen.
    revision: AtomicU64,
    /// The highest revision the watch stream has delivered.
    delivered: AtomicU64,
    /// The revision of this store's last put or delete.
    committed: AtomicU64,
    closed: AtomicBool,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("options", &self.options)
            .finish()
    }
}

fn storage(what: &str, e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Storage(format!("etcd {what}: {e}"))
}

impl EtcdStore {
    /// Connects to etcd and starts the watch feeding every [`Watch`].
    pub async fn connect(options: EtcdOptions) -> Result<Self, MetadataError> {
        let connect = ConnectOptions::new()
            .with_connect_timeout(options.request_timeout)
            .with_timeout(options.request_timeout)
            .with_keep_alive(Duration::from_secs(10), options.request_timeout);
        let client = tokio::time::timeout(
            options.request_timeout * 2,
            Client::connect(options.endpoints.clone(), Some(connect)),
        )
        .await
        .map_err(|_| storage("connect", format!("no answer from {:?}", options.endpoints)))?
        .map_err(|e| storage("connect", e))?;
        // A transaction's reply carries the previous record of every key it changed (etcd has
        // no keys-only `prev_kv`): up to `TXN_OPS_MAX` values of `VALUE_SIZE_BYTES_MAX` bytes,
        // far above tonic's default 4 MiB limit. Without this, such a transaction would commit
        // and then fail to decode its reply.
        let reply_bytes_max = TXN_OPS_MAX
            * (VALUE_SIZE_BYTES_MAX + KEY_LENGTH_BYTES_MAX + options.root.len() + 256)
            + 64 * 1024;
        let mut kv = client
            .kv_client()
            .max_decoding_message_size(reply_bytes_max);
        // The revision now: the watch starts just after it.
        let now = kv
            .get(
                options.root.clone() + "/",
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .map_err(|e| storage("get revision", e))?;
        let revision = now.header().map_or(0, |h| h.revision()).max(0) as u64;
        let shared = Arc::new(Shared {
            events: Mutex::new(EventHub::new(WATCH_BUFFER_EVENTS)),
            revision: AtomicU64::new(revision),
            delivered: AtomicU64::new(revision),
            committed: AtomicU64::new(revision),
            closed: AtomicBool::new(false),
        });
        let lease = client.lease_client();
        let watcher = tokio::spawn(run_watch(
            client,
            options.root.clone(),
            revision + 1,
            shared.clone(),
        ));
        Ok(EtcdStore {
            kv,
            lease,
            options,
            shared,
            watcher: Mutex::new(Some(watcher)),
        })
    }

    fn check_open(&self) -> Result<(), MetadataError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(MetadataError::Closed);
        }
        Ok(())
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.options.root)
    }

    fn committed(&self, header_revision: Option<i64>) {
        if let Some(r) = header_revision {
            self.shared
                .committed
                .fetch_max(r.max(0) as u64, Ordering::AcqRel);
        }
    }

    fn saw(&self, header_revision: Option<i64>) {
        if let Some(r) = header_revision {
            self.shared
                .revision
                .fetch_max(r.max(0) as u64, Ordering::AcqRel);
        }
    }

    async fn bounded<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, MetadataError> {
        match tokio::time::timeout(self.options.request_timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(storage(what, e)),
            Err(_) => Err(storage(
                what,
                format!(
                    "no answer within {} ms",
                    self.options.request_timeout.as_millis()
                ),
            )),
        }
    }

    /// The version of the first kv of a get response (absent: `None`).
    fn version_of(resp: &GetResponse) -> Option<u64> {
        resp.kvs().first().map(|kv| kv.version().max(0) as u64)
    }
}

/// The version `expect` compares (0: absent), or `None` for no comparison.
fn compared_version(expect: Expect) -> Option<i64> {
    match expect {
        Expect::Any => None,
        Expect::Absent => Some(0),
        Expect::Version(v) => Some(i64::try_from(v).unwrap_or(i64::MAX)),
    }
}

fn get_of(responses: &[TxnOpResponse]) -> Option<&GetResponse> {
    responses.iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => Some(g),
        TxnOpResponse::Put(_) | TxnOpResponse::Delete(_) | TxnOpResponse::Txn(_) => None,
    })
}

#[async_trait]
impl MetadataStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, MetadataError> {
        validate_key(key)?;
        self.check_open()?;
        let mut kv = self.kv.clone();
        let resp = self.bounded("get", kv.get(self.full(key), None)).await?;
        self.saw(resp.header().map(|h| h.revision()));
        Ok(resp.kvs().first().map(|kv| Versioned {
            value: Bytes::copy_from_slice(kv.value()),
            version: kv.version().max(0) as u64,
        }))
    }

    async fn put(&self, key: &str, value: Bytes, expect: Expect) -> Result<u64, MetadataError> {
        validate_key(key)?;
        validate_value(key, &value)?;
        self.check_open()?;
        let full = self.full(key);
        let mut txn = Txn::new();
        if let Some(v) = compared_version(expect) {
            txn = txn.when(vec![Compare::version(full.clone(), CompareOp::Equal, v)]);
        }
        let txn = txn
            .and_then(vec![
                TxnOp::put(full.clone(), value.to_vec(), None),
                TxnOp::get(full.clone(), None),
            ])
            .or_else(vec![TxnOp::get(full, None)]);
        let mut kv = self.kv.clone();
        let resp = self.bounded("put", kv.txn(txn)).await?;
        self.saw(resp.header().map(|h| h.revision()));
        let current = get_of(resp.op_responses().as_slice()).and_then(Self::version_of);
        if !resp.succeeded() {
            return Err(expect.check_put(key, current).err().unwrap_or_else(|| {
                storage("put", "the comparison failed but the version matches")
            }));
        }
        self.committed(resp.header().map(|h| h.revision()));
        current.ok_or_else(|| storage("put", "the key is gone right after its put"))
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<(), MetadataError> {
        validate_key(key)?;
        self.check_open()?;
        let full = self.full(key);
        // Absent keys are NotFound whatever the expectation: compare "exists" too.
        let mut compare = vec![Compare::version(full.clone(), CompareOp::Greater, 0)];
        match expect {
            Expect::Any => {}
            Expect::Absent => {
                compare.push(Compare::version(full.clone(), CompareOp::Equal, 0));
            }
            Expect::Version(_) => {
                if let Some(v) = compared_version(expect) {
                    compare.push(Compare::version(full.clone(), CompareOp::Equal, v));
                }
            }
        }
        let txn = Txn::new()
            .when(compare)
            .and_then(vec![TxnOp::delete(full.clone(), None)])
            .or_else(vec![TxnOp::get(full, None)]);
        let mut kv = self.kv.clone();
        let resp = self.bounded("delete", kv.txn(txn)).await?;
        self.saw(resp.header().map(|h| h.revision()));
        if resp.succeeded() {
            self.committed(resp.header().map(|h| h.revision()));
            return Ok(());
        }
        let current = get_of(resp.op_responses().as_slice()).and_then(Self::version_of);
        match expect.check_delete(key, current) {
            Err(e) => Err(e),
            Ok(_) => Err(storage(
                "delete",
                "the comparison failed but the version matches",
            )),
        }
    }

    async fn list_children(&self, path: &str) -> Result<Vec<String>, MetadataError> {
        validate_path(path)?;
        self.check_open()?;
        let dir = if path == "/" {
            format!("{}/", self.options.root)
        } else {
            format!("{}{path}/", self.options.root)
        };
        let range_end = prefix_end(dir.as_bytes());
        let mut children = std::collections::BTreeSet::new();
        let mut start = dir.clone().into_bytes();
        let mut read = 0usize;
        loop {
            let options = GetOptions::new()
                .with_range(range_end.clone())
                .with_keys_only()
                .with_sort(SortTarget::Key, SortOrder::Ascend)
                .with_limit(LIST_PAGE_KEYS);
            let mut kv = self.kv.clone();
            let resp = self
                .bounded("list", kv.get(start.clone(), Some(options)))
                .await?;
            self.saw(resp.header().map(|h| h.revision()));
            let kvs = resp.kvs();
            for item in kvs {
                let Ok(key) = std::str::from_utf8(item.key()) else {
                    continue;
                };
                if let Some(rest) = key.strip_prefix(dir.as_str()) {
                    let child = rest.split('/').next().unwrap_or(rest);
                    if !child.is_empty() {
                        children.insert(child.to_string());
                    }
                }
            }
            read += kvs.len();
            match kvs.last() {
                Some(last) if resp.more() && read < LIST_KEYS_MAX => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        Ok(children.into_iter().collect())
    }

    async fn exists(&self, key: &str) -> Result<bool, MetadataError> {
        Ok(self.get(key).await?.is_some())
    }

    async fn txn(&self, txn: MetaTxn) -> Result<TxnOutcome, MetadataError> {
        txn.validate()?;
        self.check_open()?;
        let compares: Vec<Compare> = txn
            .compares
            .iter()
            .filter_map(|(key, expect)| {
                compared_version(*expect)
                    .map(|v| Compare::version(self.full(key), CompareOp::Equal, v))
            })
            .collect();
        // Success: each op, returning the key's previous version (for deletes, and to tell a
        // create from a modify). Failure: a get of each compared key.
        let success: Vec<TxnOp> = txn
            .ops
            .iter()
            .map(|op| {
                let full = self.full(op.key());
                match op {
                    MetaTxnOp::Put { value, .. } => TxnOp::put(
                        full,
                        value.to_vec(),
                        Some(PutOptions::new().with_prev_key()),
                    ),
                    MetaTxnOp::PutInSession { value, session, .. } => TxnOp::put(
                        full,
                        value.to_vec(),
                        Some(
                            PutOptions::new()
                                .with_prev_key()
                                .with_lease(lease_id(*session)),
                        ),
                    ),
                    MetaTxnOp::Delete { .. } => {
                        TxnOp::delete(full, Some(DeleteOptions::new().with_prev_key()))
                    }
                }
            })
            .collect();
        // Keys only: the versions are what is needed, and 128 values of 1 MiB would not fit
        // in one reply.
        let failure: Vec<TxnOp> = txn
            .compares
            .iter()
            .map(|(key, _)| TxnOp::get(self.full(key), Some(GetOptions::new().with_keys_only())))
            .collect();
        let request = Txn::new().when(compares).and_then(success).or_else(failure);
        let mut kv = self.kv.clone();
        let resp = match self.bounded("txn", kv.txn(request)).await {
            Err(MetadataError::Storage(message)) if message.contains(LEASE_NOT_FOUND) => {
                return Err(self.expired_session_of(&txn).await);
            }
            other => other?,
        };
        self.saw(resp.header().map(|h| h.revision()));
        if !resp.succeeded() {
            let mut answers = resp.op_responses().into_iter().map(|r| match r {
                TxnOpResponse::Get(g) => Self::version_of(&g),
                TxnOpResponse::Put(_) | TxnOpResponse::Delete(_) | TxnOpResponse::Txn(_) => None,
            });
            let failure = txn.first_failure(|_| Ok(answers.next().flatten()))?;
            return Err(failure.unwrap_or_else(|| {
                storage("txn", "a comparison failed but every version matches")
            }));
        }
        self.committed(resp.header().map(|h| h.revision()));
        let versions = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Put(p) => {
                    Some(p.prev_key().map_or(1, |kv| kv.version().max(0) as u64 + 1))
                }
                TxnOpResponse::Delete(d) => {
                    d.prev_kvs().first().map(|kv| kv.version().max(0) as u64)
                }
                TxnOpResponse::Get(_) | TxnOpResponse::Txn(_) => None,
            })
            .collect();
        Ok(TxnOutcome { versions })
    }

    async fn open_session(&self, ttl: Duration) -> Result<Session, MetadataError> {
        validate_ttl(ttl)?;
        self.check_open()?;
        // etcd counts whole seconds (and raises a TTL below its minimum).
        let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let sent = Instant::now();
        let mut lease = self.lease.clone();
        let granted = self
            .bounded("lease grant", lease.grant(seconds.max(1) as i64, None))
            .await?;
        if !granted.error().is_empty() {
            return Err(storage("lease grant", granted.error()));
        }
        let ttl = Duration::from_secs(granted.ttl().max(1) as u64);
        let lease = Arc::new(EtcdLease {
            id: granted.id(),
            client: self.lease.clone(),
            store: Arc::downgrade(&self.shared),
            stream: tokio::sync::Mutex::new(None),
            request_timeout: self.options.request_timeout,
        });
        Ok(Session::start(
            SessionId(granted.id() as u64),
            ttl,
            lease,
            sent,
        ))
    }

    fn watch(&self, prefix: &str) -> Result<Watch, MetadataError> {
        validate_path(prefix)?;
        self.check_open()?;
        let from = self.shared.revision.load(Ordering::Acquire) + 1;
        self.shared
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .subscribe_from(prefix, from)
            .ok_or(MetadataError::Closed)
    }

    async fn close(&self) -> Result<(), MetadataError> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Events of what this store committed are delivered before the watches end (bounded).
        let target = self.shared.committed.load(Ordering::Acquire);
        let deadline = tokio::time::Instant::now() + self.options.request_timeout;
        while self.shared.delivered.load(Ordering::Acquire) < target
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(task) = self
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
        self.shared
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .close();
        Ok(())
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(task) = self
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// What etcd says about a put with a lease it no longer has.
const LEASE_NOT_FOUND: &str = "lease not found";

fn lease_id(session: SessionId) -> i64 {
    session.0 as i64
}

impl EtcdStore {
    /// The session to name when a transaction failed because one of its leases is gone: the
    /// first (in operation order) that etcd says has no time left.
    async fn expired_session_of(&self, txn: &MetaTxn) -> MetadataError {
        let mut first = None;
        for session in txn.sessions() {
            first.get_or_insert(session);
            let mut lease = self.lease.clone();
            let alive = self
                .bounded(
                    "lease time to live",
                    lease.time_to_live(lease_id(session), None),
                )
                .await
                .map(|answer| answer.ttl() > 0);
            if let Ok(false) = alive {
                return MetadataError::SessionExpired { session };
            }
        }
        match first {
            Some(session) => MetadataError::SessionExpired { session },
            None => storage("txn", "etcd found no lease, but none was given"),
        }
    }
}

/// etcd's side of a session: a lease kept alive over one keep-alive stream (opened again when
/// it breaks).
struct EtcdLease {
    id: i64,
    client: LeaseClient,
    /// Once the store is closed its sessions are no longer kept alive (they end when etcd's
    /// TTL runs out), like those of the other stores.
    store: std::sync::Weak<Shared>,
    /// `None` until opened and after a failure. Taken out while in use, so an attempt that is
    /// given up (its future dropped) never leaves a stream with an unread answer behind.
    stream: tokio::sync::Mutex<Option<(LeaseKeeper, LeaseKeepAliveStream)>>,
    request_timeout: Duration,
}

#[async_trait]
impl Lease for EtcdLease {
    async fn refresh(&self) -> Result<bool, MetadataError> {
        match self.store.upgrade() {
            Some(store) if !store.closed.load(Ordering::Acquire) => {}
            Some(_) | None => return Err(MetadataError::Closed),
        }
        let mut slot = self.stream.lock().await;
        let Some((mut keeper, mut stream)) = slot.take() else {
            // Opening the stream sends one keep-alive and checks its answer.
            let mut client = self.client.clone();
            return match client.keep_alive(self.id).await {
                Ok(opened) => {
                    *slot = Some(opened);
                    Ok(true)
                }
                Err(e) if e.to_string().contains(LEASE_NOT_FOUND) => Ok(false),
                Err(e) => Err(storage("lease keep-alive", e)),
            };
        };
        keeper
            .keep_alive()
            .await
            .map_err(|e| storage("lease keep-alive", e))?;
        match stream.message().await {
            // A TTL of 0 or less: the lease is gone.
            Ok(Some(answer)) if answer.ttl() <= 0 => Ok(false),
            Ok(Some(_)) => {
                *slot = Some((keeper, stream));
                Ok(true)
            }
            Ok(None) => Err(storage("lease keep-alive", "the stream ended")),
            Err(e) if e.to_string().contains(LEASE_NOT_FOUND) => Ok(false),
            Err(e) => Err(storage("lease keep-alive", e)),
        }
    }

    async fn revoke(&self) -> Result<(), MetadataError> {
        let mut client = self.client.clone();
        match tokio::time::timeout(self.request_timeout, client.revoke(self.id)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.to_string().contains(LEASE_NOT_FOUND) => Ok(()),
            Ok(Err(e)) => Err(storage("lease revoke", e)),
            Err(_) => Err(storage(
                "lease revoke",
                format!("no answer within {} ms", self.request_timeout.as_millis()),
            )),
        }
    }
}

/// The smallest key after every key starting with `prefix` (etcd's range end for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Follows every key under `root` from `start_revision` and sends the events to the hub. On a
/// broken stream it reconnects where it stopped; after a compaction it resumes from the
/// compaction revision (the lost events are logged).
///
/// The watch asks etcd to fragment large responses (the events of one revision, each with its
/// previous record, can be far larger than a gRPC message may be), so a stream can break in
/// the middle of a revision: the cursor is a revision and how many of its events were already
/// sent, and a resumed stream skips those.
async fn run_watch(client: Client, root: String, start_revision: u64, shared: Arc<Shared>) {
    // Every event of revisions below `cursor_revision`, and the first `cursor_events` of
    // `cursor_revision`, were sent.
    let mut cursor_revision = start_revision;
    let mut cursor_events = 0usize;
    let mut backoff = Duration::from_millis(100);
    while !shared.closed.load(Ordering::Acquire) {
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_fragment()
            .with_start_revision(i64::try_from(cursor_revision).unwrap_or(i64::MAX));
        let mut watch_client = client.watch_client();
        let mut stream = match watch_client.watch(root.clone() + "/", Some(options)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "etcd watch failed to start; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        // The revision of the last event this stream gave and how many it gave of it.
        let (mut stream_revision, mut stream_events) = (0u64, 0usize);
        loop {
            let resp = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "etcd watch stream broke; resuming");
                    break;
                }
            };
            backoff = Duration::from_millis(100);
            if resp.compact_revision() > 0 {
                // Events were compacted away before we read them: say so, resume from there.
                tracing::warn!(
                    compact_revision = resp.compact_revision(),
                    "etcd watch fell behind a compaction"
                );
                cursor_revision = resp.compact_revision().max(0) as u64;
                cursor_events = 0;
                break;
            }
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let revision = kv.mod_revision().max(0) as u64;
                if revision == stream_revision {
                    stream_events += 1;
                } else {
                    (stream_revision, stream_events) = (revision, 1);
                }
                let already_sent = revision < cursor_revision
                    || (revision == cursor_revision && stream_events <= cursor_events);
                if already_sent {
                    continue;
                }
                if revision == cursor_revision {
                    cursor_events += 1;
                } else {
                    (cursor_revision, cursor_events) = (revision, 1);
                }
                shared.revision.fetch_max(revision, Ordering::AcqRel);
                let Ok(full) = std::str::from_utf8(kv.key()) else {
                    continue;
                };
                let Some(key) = full.strip_prefix(root.as_str()) else {
                    continue;
                };
                let (kind, version) = match event.event_type() {
                    EventType::Put if kv.version() == 1 => (EventKind::Created, 1),
                    EventType::Put => (EventKind::Modified, kv.version().max(0) as u64),
                    EventType::Delete => (
                        EventKind::Deleted,
                        event.prev_kv().map_or(0, |p| p.version().max(0) as u64),
                    ),
                };
                shared
                    .events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .send_at(
                        revision,
                        Event {
                            key: key.to_string(),
                            kind,
                            version,
                        },
                    );
            }
            if let Some(h) = resp.header() {
                let r = h.revision().max(0) as u64;
                shared.delivered.fetch_max(r, Ordering::AcqRel);
                shared.revision.fetch_max(r, Ordering::AcqRel);
            }
        }
        tokio::time::sleep(backoff).await;
    }
}
