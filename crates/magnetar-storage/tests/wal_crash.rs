//! kill -9 test of the shared WAL: a child process appends to four ledgers through one
//! `WalWriter` (objects in a `LocalFileSystem` store, records in a `RedbStore`, sealing small
//! so seals run all the time) and prints every acknowledged index; the parent kills it at a
//! random moment (before a PUT, between PUT and commit, mid-seal: wherever it is), takes every
//! ledger over with a new writer, collects garbage, and checks that every acknowledged entry is
//! there, intact, at its index, with continuous indexes.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use magnetar_metadata::{MetadataStore, RedbStore};
use magnetar_storage::wal::{collect_garbage, SharedLedger, WalConfig, WalWriter};
use magnetar_storage::*;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;

mod common;

const CHILD_DIR_ENV: &str = "MAGNETAR_WAL_CRASH_CHILD_DIR";
const CHILD_TEST_NAME: &str = "wal_crash_child";
const LEDGERS: usize = 4;
const ROOT: &str = "/ml";

fn payload_for(ledger: usize, index: u64) -> Bytes {
    let len = 20 + (index % 50) as usize * 40;
    let seed = format!("wal-{ledger}-{index}:");
    Bytes::from(seed.bytes().cycle().take(len).collect::<Vec<u8>>())
}

fn config() -> WalConfig {
    WalConfig {
        flush_interval_ms: 5,
        commit_timeout_ms: 2_000,
        seal_bytes: 16 * 1024,
        gc_grace_ms: 4_000,
        ..WalConfig::default()
    }
}

async fn stores(dir: &std::path::Path) -> (Arc<dyn ObjectStore>, Arc<dyn MetadataStore>) {
    let objects = dir.join("objects");
    std::fs::create_dir_all(&objects).unwrap();
    let store = LocalFileSystem::new_with_prefix(&objects).unwrap();
    let metadata = RedbStore::open(&dir.join("meta.redb")).await.unwrap();
    (Arc::new(store), Arc::new(metadata))
}

fn name(ledger: usize) -> String {
    format!("t/p{ledger}")
}

/// The child role: appends forever to every ledger from several tasks, printing
/// `ack <ledger> <first>`.
#[test]
#[ignore = "run only as the child of wal_kill9_never_loses_acknowledged_entries"]
fn wal_crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (store, metadata) = stores(std::path::Path::new(&dir)).await;
        let writer = WalWriter::start(
            "child",
            ROOT,
            store,
            metadata,
            config(),
            Arc::new(SystemClock),
        )
        .unwrap();
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for l in 0..LEDGERS {
            let ledger = SharedLedger::open(&writer, &name(l)).await.unwrap();
            for _ in 0..2 {
                let ledger = ledger.clone();
                let out = out.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        let Ok(p) = ledger.append_with(|first| NewEntry {
                            payload: payload_for(l, first),
                            message_count: (first % 3) as u32 + 1,
                            max_timestamp_ms: first as i64,
                            format: PayloadFormat::Kafka,
                            producer: None,
                            first_index_at: None,
                        }) else {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            continue;
                        };
                        let first = p.first_index();
                        if p.wait().await.is_ok() {
                            let mut o = out.lock().unwrap();
                            writeln!(o, "ack {l} {first}").unwrap();
                            o.flush().unwrap();
                        }
                    }
                }));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
fn wal_kill9_never_loses_acknowledged_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut random = common::Random::from_clock();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut acked_total = 0usize;
    for round in 0..4 {
        let run_for = Duration::from_millis(random.between(300, 1_500));
        let lines = common::run_child_until_killed(
            CHILD_TEST_NAME,
            CHILD_DIR_ENV,
            dir.path(),
            run_for,
            round,
        );
        let mut acked = vec![Vec::new(); LEDGERS];
        for line in &lines {
            let mut parts = line.strip_prefix("ack ").unwrap_or("").split(' ');
            if let (Some(Ok(l)), Some(Ok(i))) = (
                parts.next().map(str::parse::<usize>),
                parts.next().map(str::parse::<u64>),
            ) {
                if l < LEDGERS {
                    acked[l].push(i);
                }
            }
        }
        let count: usize = acked.iter().map(Vec::len).sum();
        acked_total += count;
        eprintln!("round {round}: {count} acknowledged appends before SIGKILL");

        rt.block_on(async {
            let (store, metadata) = stores(dir.path()).await;
            // The collector's clock runs an hour ahead: the child is dead, so nothing can be
            // in flight, and every unreferenced object is collected.
            let ahead = ManualClock::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64
                    + 3_600_000,
            );
            let writer = WalWriter::start(
                "parent",
                ROOT,
                store,
                metadata.clone(),
                config(),
                Arc::new(ahead),
            )
            .unwrap();
            let mut ledgers = Vec::new();
            for l in 0..LEDGERS {
                ledgers.push(SharedLedger::open(&writer, &name(l)).await.unwrap());
            }
            let gc = collect_garbage(&writer).await.unwrap();
            eprintln!("round {round}: {gc:?}");
            for (l, ledger) in ledgers.iter().enumerate() {
                let entries = ledger.read(0, usize::MAX, usize::MAX).await.unwrap();
                let mut next = 0;
                for e in &entries {
                    assert_eq!(e.header.first_index, next, "indexes are continuous");
                    assert_eq!(e.payload, payload_for(l, next), "payload intact");
                    next = e.header.end_index();
                }
                assert_eq!(next, ledger.end_index());
                let present: std::collections::HashSet<u64> =
                    entries.iter().map(|e| e.header.first_index).collect();
                for i in &acked[l] {
                    assert!(
                        present.contains(i),
                        "round {round}: acknowledged entry {i} of ledger {l} lost"
                    );
                }
            }
            writer.close().await;
            metadata.close().await.unwrap();
        });
    }
    assert!(
        acked_total > 0,
        "the child acknowledged nothing in 4 rounds"
    );
}
