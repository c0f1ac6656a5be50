//! Tiered segments on a real S3-protocol server: moto's (`moto[server]` from PyPI, installed by
//! `.ci/run` from tests/python/requirements.txt), started on a free loopback port by the test.
//! The store is opened the way the binary opens it (`magnetar::remote_store`): a sealed segment
//! above the multipart threshold goes up in parts, offloaded ranges are read back by range GETs
//! through the block cache, a reopened store finds its segments by listing, a flipped byte is a
//! CRC error, and a missing bucket is an error that keeps the local copy.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use magnetar::remote_store::{open, StoreOverrides, StoreUrl};
use magnetar_storage::tiered::{
    TieredSegmentStore, TieringConfig, TieringCounters, MULTIPART_BYTES,
};
use magnetar_storage::*;
use magnetar_testkit::storage::{self, offload_sealed, read_payloads, tiered_store};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// `moto_server` on 127.0.0.1, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "moto_server not found: pip install 'moto[server]' (tests/python/requirements.txt)",
            );
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while moto.request("GET", "/").is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer in 60 s"
            );
            assert!(
                moto.child.try_wait().unwrap().is_none(),
                "moto_server exited"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        moto
    }

    /// One plain HTTP/1.1 request (moto checks no signatures); the status code.
    fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        out.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status line in {out:?}")))
    }

    fn create_bucket(&self, name: &str) {
        assert_eq!(self.request("PUT", &format!("/{name}")).unwrap(), 200);
    }

    fn store(&self, url: &str) -> Arc<dyn ObjectStore> {
        set_test_credentials();
        open(
            &StoreUrl::parse(url).unwrap(),
            &StoreOverrides {
                endpoint: self.endpoint.clone(),
                region: "us-east-1".into(),
                ..StoreOverrides::default()
            },
        )
        .unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The S3 builder reads credentials from the environment (moto checks none, the client wants
/// some; without them it would ask an instance-metadata endpoint).
fn set_test_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            #[allow(unsafe_code, reason = "test set-up; nothing else in this binary reads or writes AWS_* variables concurrently")]
            // SAFETY: runs once, and no other thread reads these variables while it does.
            unsafe {
                std::env::set_var(key, "testing")
            };
        }
    });
}

const ENTRY_BYTES: usize = 256 << 10;

fn payload(i: u64) -> Bytes {
    Bytes::from(
        (0..ENTRY_BYTES)
            .map(|k| (i as usize * 131 + k / 7) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn tiering() -> TieringConfig {
    TieringConfig {
        block_bytes: 1 << 20,
        readahead_blocks: 2,
        cache_bytes: 8 << 20,
    }
}

async fn tiered(
    dir: &std::path::Path,
    remote: Arc<dyn ObjectStore>,
) -> (Arc<TieredSegmentStore>, Arc<TieringCounters>) {
    tiered_store(dir, remote, "ledgers/t/0", tiering()).await
}

fn ledger(dir: &std::path::Path, store: Arc<TieredSegmentStore>) -> Arc<ManagedLedger> {
    let config = LedgerConfig {
        // Above the multipart threshold, so the sealed segment goes up in parts.
        segment_bytes: MULTIPART_BYTES as u64 + (1 << 20),
        index_interval_bytes: 64 << 10,
        fsync: FsyncPolicy::Os,
        ..LedgerConfig::default()
    };
    ManagedLedger::open_with_store(dir, config, Arc::new(SystemClock), store).unwrap()
}

async fn fill(ledger: &ManagedLedger, n: u64) {
    storage::fill(ledger, n, payload).await;
}

async fn read_all(ledger: &ManagedLedger) -> Result<Vec<Bytes>, StorageError> {
    read_payloads(ledger, 1 << 20, 100).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_tiered_to_s3_go_up_in_parts_and_read_back_by_range_gets() {
    let moto = Moto::start();
    moto.create_bucket("tier-it");
    let remote = moto.store("s3://tier-it/cluster");
    let dir = tempfile::tempdir().unwrap();
    let (store, counters) = tiered(dir.path(), remote.clone()).await;
    let log = ledger(dir.path(), store.clone());
    const N: u64 = 44;
    fill(&log, N).await;
    let expected: Vec<Bytes> = (0..N).map(payload).collect();

    let done = offload_sealed(&store).await.unwrap();
    assert_eq!(done, vec![0], "one sealed segment");
    let seg_len = *store.offloaded().get(&0).unwrap();
    assert!(seg_len > MULTIPART_BYTES as u64, "{seg_len}: multipart");
    // Through the raw bucket (no prefix store): the object sits under the URL's prefix.
    let raw = moto.store("s3://tier-it");
    let meta = raw
        .head(&ObjectPath::from(
            "cluster/ledgers/t/0/00000000000000000000.seg",
        ))
        .await
        .unwrap();
    assert_eq!(meta.size, seg_len);

    assert_eq!(read_all(&log).await.unwrap(), expected);
    let gets = counters.gets.load(Ordering::Relaxed);
    let get_bytes = counters.get_bytes.load(Ordering::Relaxed);
    assert!(
        gets >= 3,
        "range GETs of 1 MiB blocks with read-ahead: {gets}"
    );
    assert!(
        get_bytes >= seg_len && get_bytes < 2 * seg_len,
        "{get_bytes}"
    );

    // A reopened store finds the segment by listing the bucket.
    log.close().await.unwrap();
    drop((log, store));
    let (store, _) = tiered(dir.path(), remote.clone()).await;
    assert_eq!(store.offloaded().get(&0), Some(&seg_len));
    let log = ledger(dir.path(), store);
    assert_eq!(read_all(&log).await.unwrap(), expected);
    log.close().await.unwrap();
    drop(log);

    // A flipped byte in the object is a CRC error, never served.
    let path = ObjectPath::from("ledgers/t/0/00000000000000000000.seg");
    let mut bytes = remote
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    remote.put(&path, PutPayload::from(bytes)).await.unwrap();
    let (store, _) = tiered(dir.path(), remote.clone()).await;
    let log = ledger(dir.path(), store);
    let err = read_all(&log).await.unwrap_err();
    assert!(
        matches!(err, StorageError::Corrupt { segment: 0, .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_an_error_that_keeps_the_local_copy() {
    let moto = Moto::start();
    let remote = moto.store("s3://absent-bucket");
    let dir = tempfile::tempdir().unwrap();
    // Listing fails at open: the store opens from its (empty) local manifest.
    let (store, counters) = tiered(dir.path(), remote.clone()).await;
    let log = ledger(dir.path(), store.clone());
    fill(&log, 40).await;
    let err = offload_sealed(&store).await.unwrap_err();
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
    assert_eq!(counters.upload_failures.load(Ordering::Relaxed), 1);
    assert!(store.offloaded().is_empty());
    assert_eq!(
        read_all(&log).await.unwrap(),
        (0..40).map(payload).collect::<Vec<_>>()
    );
    // The bucket appears: the retry goes through.
    moto.create_bucket("absent-bucket");
    assert_eq!(offload_sealed(&store).await.unwrap(), vec![0]);
}

/// A TCP listener that accepts connections and never answers: a stalled object store.
fn stalled_endpoint() -> (
    String,
    std::thread::JoinHandle<()>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        // Bounded: at most 10 minutes, and stopped by the test.
        let deadline = Instant::now() + Duration::from_secs(600);
        while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
            match listener.accept() {
                Ok((conn, _)) => held.push(conn),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (format!("http://{addr}"), thread, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_store_fails_the_upload_within_its_bounds_and_keeps_the_local_copy() {
    set_test_credentials();
    let (endpoint, thread, stop) = stalled_endpoint();
    let remote = open(
        &StoreUrl::parse("s3://stalled").unwrap(),
        &StoreOverrides {
            endpoint,
            region: "us-east-1".into(),
            request_timeout: Duration::from_millis(300),
            retries: 1,
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Opening lists the prefix: it times out and the store opens from its (empty) manifest.
    let (store, counters) = tiered(dir.path(), remote).await;
    let log = ledger(dir.path(), store.clone());
    fill(&log, 40).await;
    let err = offload_sealed(&store).await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("timed out") || err.to_string().contains("timeout"),
        "{err}"
    );
    assert_eq!(counters.upload_failures.load(Ordering::Relaxed), 1);
    assert!(store.offloaded().is_empty());
    assert_eq!(
        read_all(&log).await.unwrap(),
        (0..40).map(payload).collect::<Vec<_>>()
    );
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
}

/// The shared WAL (cluster mode's data path) on S3: entries of several ledgers go up as one
/// create-only object per flush, a second writer takes a ledger over and reads it back by range
/// GETs, the first is fenced, and S3's conditional create refuses to overwrite a WAL object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_wal_writes_commits_and_takes_over_on_s3() {
    use magnetar_metadata::{MetadataStore, RedbStore};
    use magnetar_storage::wal::{SharedLedger, WalConfig, WalWriter};

    let moto = Moto::start();
    moto.create_bucket("wal");
    let store = moto.store("s3://wal/cluster-a");
    let dir = tempfile::tempdir().unwrap();
    let metadata: Arc<dyn MetadataStore> = Arc::new(
        RedbStore::open(&dir.path().join("meta.redb"))
            .await
            .unwrap(),
    );
    let config = WalConfig {
        flush_interval_ms: 20,
        commit_timeout_ms: 10_000,
        ..WalConfig::default()
    };
    let first = WalWriter::start(
        "b1",
        "/ml",
        store.clone(),
        metadata.clone(),
        config.clone(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let mut ledgers = Vec::new();
    for p in 0..3 {
        ledgers.push(
            SharedLedger::open(&first, &format!("public/default/t/p{p}"))
                .await
                .unwrap(),
        );
    }
    for round in 0..4u64 {
        let waits: Vec<_> = ledgers
            .iter()
            .map(|l| {
                l.append_with(|_| NewEntry {
                    payload: payload(round),
                    message_count: 1,
                    max_timestamp_ms: 0,
                    format: PayloadFormat::Kafka,
                    producer: None,
                    first_index_at: None,
                })
                .unwrap()
            })
            .collect();
        for w in waits {
            assert_eq!(w.wait().await.unwrap(), round);
        }
    }
    let objects = first.counters().objects.load(Ordering::Relaxed);
    assert!(
        (4..=8).contains(&objects),
        "one object per round of three ledgers, not one per entry: {objects}"
    );

    // S3's conditional create: a WAL object is never overwritten.
    let listing = store
        .list_with_delimiter(Some(&ObjectPath::from(format!("wal/{}", first.name()))))
        .await
        .unwrap();
    assert_eq!(listing.objects.len() as u64, objects);
    let one = listing.objects[0].location.clone();
    let overwrite = store
        .put_opts(
            &one,
            PutPayload::from_static(b"x"),
            object_store::PutOptions {
                mode: object_store::PutMode::Create,
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(overwrite, Err(object_store::Error::AlreadyExists { .. })),
        "{overwrite:?}"
    );

    let second =
        WalWriter::start("b2", "/ml", store, metadata, config, Arc::new(SystemClock)).unwrap();
    let taken = SharedLedger::open(&second, "public/default/t/p1")
        .await
        .unwrap();
    assert_eq!((taken.epoch(), taken.end_index()), (2, 4));
    let entries = taken.read(0, 64 << 20, 100).await.unwrap();
    assert_eq!(entries.len(), 4);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.payload, payload(i as u64));
    }
    let stale = ledgers[1]
        .append(NewEntry {
            payload: payload(9),
            message_count: 1,
            max_timestamp_ms: 0,
            format: PayloadFormat::Kafka,
            producer: None,
            first_index_at: None,
        })
        .await;
    assert!(
        matches!(stale, Err(StorageError::Fenced { .. })),
        "{stale:?}"
    );
    first.close().await;
    second.close().await;
}
