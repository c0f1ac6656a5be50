//! kill -9 test: a child process appends under `always` and prints every acknowledged index;
//! the parent kills it at a random moment, reopens the ledger and checks that every
//! acknowledged entry is present, intact and in order.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use magnetar_storage::*;

mod common;

const CHILD_DIR_ENV: &str = "MAGNETAR_STORAGE_CRASH_CHILD_DIR";
const CHILD_TEST_NAME: &str = "crash_child";

fn payload_for(index: u64) -> Bytes {
    let len = 20 + (index % 50) as usize * 40;
    let seed = format!("crash-{index}:");
    Bytes::from(seed.bytes().cycle().take(len).collect::<Vec<u8>>())
}

fn config() -> LedgerConfig {
    LedgerConfig {
        segment_bytes: 64 * 1024, // many rolls per round
        index_interval_bytes: 1024,
        fsync: FsyncPolicy::Always,
        // Several recovery checkpoints per segment, so kills land before, during and after
        // checkpoint writes and recoveries start from them.
        recovery_checkpoint_bytes: 8 * 1024,
        ..LedgerConfig::default()
    }
}

/// The child role: appends forever from several tasks, printing `ack <first> <count>`.
#[test]
#[ignore = "run only as the child of crash_kill9_never_loses_acknowledged_entries"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let ledger =
            ManagedLedger::open(std::path::Path::new(&dir), config(), Arc::new(SystemClock))
                .unwrap();
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let ledger = ledger.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let p = ledger
                        .append_with(|first| NewEntry {
                            payload: payload_for(first),
                            message_count: (first % 3) as u32 + 1,
                            max_timestamp_ms: first as i64,
                            format: PayloadFormat::Kafka,
                            producer: None,
                            first_index_at: None,
                        })
                        .unwrap();
                    let first = p.first_index();
                    p.wait().await.unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ack {first}").unwrap();
                    o.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
fn crash_kill9_never_loses_acknowledged_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut random = common::Random::from_clock();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut acked_total = 0usize;
    for round in 0..5 {
        let run_for = Duration::from_millis(random.between(150, 1_500));
        let lines = common::run_child_until_killed(
            CHILD_TEST_NAME,
            CHILD_DIR_ENV,
            dir.path(),
            run_for,
            round,
        );
        let acked: Vec<u64> = lines
            .iter()
            .filter_map(|line| line.strip_prefix("ack ")?.trim().parse().ok())
            .collect();
        acked_total += acked.len();
        eprintln!(
            "round {round}: {} acknowledged appends before SIGKILL",
            acked.len()
        );

        rt.block_on(async {
            let ledger = ManagedLedger::open(dir.path(), config(), Arc::new(SystemClock)).unwrap();
            let entries = ledger.read(0, usize::MAX, usize::MAX).await.unwrap();
            let mut next = 0;
            for e in &entries {
                assert_eq!(e.header.first_index, next, "indexes are continuous");
                assert_eq!(
                    e.payload,
                    payload_for(e.header.first_index),
                    "payload intact"
                );
                next = e.header.end_index();
            }
            assert_eq!(next, ledger.end_index());
            let present: std::collections::HashSet<u64> =
                entries.iter().map(|e| e.header.first_index).collect();
            for i in &acked {
                assert!(
                    present.contains(i),
                    "round {round}: acknowledged entry {i} lost"
                );
            }
            ledger.close().await.unwrap();
        });
    }
    assert!(
        acked_total > 0,
        "the child acknowledged nothing in 5 rounds"
    );
}
