//! Managed ledger benchmarks: append throughput per fsync policy and concurrency, sequential
//! read, recovery (open) time, and the raw disk write bandwidth for comparison.
//!
//! `MAGNETAR_BENCH_FULL=1` makes the recovery ledger 1 GiB (default 128 MiB).
//! Quick run: `cargo bench -p magnetar-storage --bench ledger -- --warm-up-time 1 --measurement-time 3`

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use magnetar_storage::*;
use tokio::runtime::Runtime;

const RECOVERY_BYTES_DEFAULT: u64 = 128 << 20;
const RECOVERY_BYTES_FULL: u64 = 1 << 30;
const READ_LEDGER_BYTES: u64 = 64 << 20;
const APPENDS_PER_ITER: usize = 256;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn entry(size: usize) -> NewEntry {
    NewEntry {
        payload: Bytes::from(vec![0xAB; size]),
        message_count: 1,
        max_timestamp_ms: 0,
        format: PayloadFormat::Kafka,
        producer: None,
        first_index_at: None,
    }
}

fn config(fsync: FsyncPolicy) -> LedgerConfig {
    LedgerConfig {
        fsync,
        segment_bytes: 256 << 20,
        ..LedgerConfig::default()
    }
}

/// Plain sequential write + one fsync, in the directory the ledgers use.
fn raw_disk_bandwidth(dir: &std::path::Path) {
    let path = dir.join("raw-bandwidth.bin");
    let chunk = vec![0x5A; 1 << 20];
    let total: u64 = 256 << 20;
    let start = Instant::now();
    let mut f = std::fs::File::create(&path).expect("create");
    for _ in 0..(total >> 20) {
        f.write_all(&chunk).expect("write");
    }
    f.sync_all().expect("fsync");
    let secs = start.elapsed().as_secs_f64();
    let mib = (total >> 20) as f64;
    // fsync latency for small writes, the floor of `always` with one appender.
    let mut lat = Vec::new();
    let small = vec![1u8; 1024];
    for _ in 0..50 {
        let t = Instant::now();
        f.write_all(&small).expect("write");
        f.sync_data().expect("fdatasync");
        lat.push(t.elapsed());
    }
    lat.sort();
    drop(f);
    let _ = std::fs::remove_file(&path);
    println!(
        "raw disk: sequential write+fsync {:.0} MiB/s ({mib} MiB in {secs:.2} s); 1 KiB write+fdatasync median {:?}",
        mib / secs,
        lat[lat.len() / 2]
    );
}

fn bench_append(c: &mut Criterion) {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    raw_disk_bandwidth(tmp.path());
    let mut group = c.benchmark_group("append");
    group.sample_size(10);
    let cases: [(&str, FsyncPolicy, usize); 4] = [
        ("os/1", FsyncPolicy::Os, 1),
        ("os/64", FsyncPolicy::Os, 64),
        ("always/1", FsyncPolicy::Always, 1),
        ("always/64", FsyncPolicy::Always, 64),
    ];
    for size in [1024usize, 16 * 1024] {
        for (name, fsync, appenders) in cases {
            let dir = tmp
                .path()
                .join(format!("append-{size}-{}", name.replace('/', "-")));
            let ledger = {
                let _g = rt.enter();
                ManagedLedger::open(&dir, config(fsync), Arc::new(SystemClock)).expect("open")
            };
            // With one appender under `always` every append waits for its own fsync: fewer
            // per iteration keeps the run short.
            let per_iter = if appenders == 1 && fsync == FsyncPolicy::Always {
                32
            } else {
                APPENDS_PER_ITER
            };
            group.throughput(Throughput::Bytes((per_iter * size) as u64));
            group.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let mut tasks = Vec::new();
                            for _ in 0..appenders {
                                let ledger = ledger.clone();
                                let n = per_iter / appenders;
                                tasks.push(tokio::spawn(async move {
                                    for _ in 0..n {
                                        ledger.append(entry(size)).await.expect("append");
                                    }
                                }));
                            }
                            for t in tasks {
                                t.await.expect("task");
                            }
                        }
                        start.elapsed()
                    })
                })
            });
            let s = ledger.stats();
            if fsync == FsyncPolicy::Always {
                println!(
                    "append {name} {size} B: {} appends, {} fsyncs, {:.1} appends per fsync",
                    s.appends_synced,
                    s.fsyncs,
                    s.appends_synced as f64 / s.fsyncs.max(1) as f64
                );
            }
            rt.block_on(ledger.close()).expect("close");
            drop(ledger);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    group.finish();
}

/// Fills a ledger with `total` bytes of `size`-byte entries using concurrent `os` appends.
fn fill(rt: &Runtime, dir: &std::path::Path, total: u64, size: usize, segment_bytes: u64) {
    let cfg = LedgerConfig {
        segment_bytes,
        ..config(FsyncPolicy::Os)
    };
    rt.block_on(async {
        let ledger = ManagedLedger::open(dir, cfg, Arc::new(SystemClock)).expect("open");
        let n = total / size as u64;
        let mut pending = std::collections::VecDeque::new();
        for _ in 0..n {
            loop {
                match ledger.append_with(|_| entry(size)) {
                    Ok(p) => {
                        pending.push_back(p);
                        break;
                    }
                    Err(StorageError::QueueFull { .. }) => {
                        if let Some(p) = pending.pop_front() {
                            p.wait().await.expect("append");
                        }
                    }
                    Err(e) => panic!("append: {e}"),
                }
            }
            if pending.len() > 4096 {
                if let Some(p) = pending.pop_front() {
                    p.wait().await.expect("append");
                }
            }
        }
        for p in pending {
            p.wait().await.expect("append");
        }
        ledger.close().await.expect("close");
    });
}

fn bench_read(c: &mut Criterion) {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("read");
    fill(&rt, &dir, READ_LEDGER_BYTES, 16 * 1024, 32 << 20);
    let ledger = {
        let _g = rt.enter();
        ManagedLedger::open(&dir, config(FsyncPolicy::Os), Arc::new(SystemClock)).expect("open")
    };
    let total = ledger.stats().total_bytes;
    let mut group = c.benchmark_group("read");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(total));
    group.bench_function("sequential/16384", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut next = ledger.start_index();
                let end = ledger.end_index();
                while next < end {
                    let batch = ledger.read(next, 1 << 20, usize::MAX).await.expect("read");
                    next = batch.last().map_or(end, |e| e.header.end_index());
                }
            })
        })
    });
    group.finish();
}

fn bench_recovery(c: &mut Criterion) {
    let rt = runtime();
    let full = std::env::var("MAGNETAR_BENCH_FULL").is_ok_and(|v| v == "1");
    let bytes = if full {
        RECOVERY_BYTES_FULL
    } else {
        RECOVERY_BYTES_DEFAULT
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("recovery");
    let started = Instant::now();
    fill(&rt, &dir, bytes, 1024, bytes / 8);
    println!(
        "recovery ledger: {} MiB of 1 KiB entries in 8 segments, written in {:.1} s",
        bytes >> 20,
        started.elapsed().as_secs_f64()
    );
    let mut group = c.benchmark_group("recovery");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function(
        BenchmarkId::new("open", format!("{}MiB", bytes >> 20)),
        |b| {
            b.iter(|| {
                let _g = rt.enter();
                let ledger =
                    ManagedLedger::open(&dir, config(FsyncPolicy::Os), Arc::new(SystemClock))
                        .expect("open");
                assert!(ledger.end_index() > 0);
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench_append, bench_read, bench_recovery);
criterion_main!(benches);
