//! Shared-WAL produce latency at the storage layer (issue #16's benchmark): an open-loop load of
//! `--rate` entries per second (one 1 KiB message each by default) spread over `--partitions`
//! ledgers of one `WalWriter`, against an object store URL (S3 through the standard AWS
//! environment, `file://`, `memory://`) and a metadata store (`memory`, `redb:PATH`, or with
//! `--features etcd` `etcd:http://host:port`). Latency runs from each entry's scheduled send
//! time to its acknowledgement (after its object's PUT and commit), so a stall shows as the
//! delay it causes (no coordinated omission). Prints one JSON line.
//!
//! ```text
//! cargo run --release -p magnetar --features etcd --example wal_bench -- \
//!     --store s3://bench/wal --endpoint http://127.0.0.1:9000 --metadata etcd:http://127.0.0.1:2379 \
//!     --rate 5000 --seconds 10 --flush-ms 20
//! ```
//! `perf/wal/bench.sh` runs the matrix with moto and etcd on loopback.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use magnetar::remote_store::{open, StoreOverrides, StoreUrl};
use magnetar_metadata::{MemoryStore, MetadataStore, RedbStore};
use magnetar_storage::wal::{SharedLedger, WalConfig, WalWriter};
use magnetar_storage::{NewEntry, PayloadFormat, SystemClock};

struct Args {
    store: String,
    endpoint: String,
    metadata: String,
    rate: u64,
    seconds: u64,
    flush_ms: u64,
    partitions: usize,
    size: usize,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        store: "memory://".into(),
        endpoint: String::new(),
        metadata: "memory".into(),
        rate: 5000,
        seconds: 10,
        flush_ms: 20,
        partitions: 16,
        size: 1024,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--store" => args.store = value()?,
            "--endpoint" => args.endpoint = value()?,
            "--metadata" => args.metadata = value()?,
            "--rate" => args.rate = number(value()?)?.max(1),
            "--seconds" => args.seconds = number(value()?)?.clamp(1, 600),
            "--flush-ms" => args.flush_ms = number(value()?)?,
            "--partitions" => args.partitions = number(value()?)?.clamp(1, 1024) as usize,
            "--size" => args.size = number(value()?)?.clamp(1, 1 << 20) as usize,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

async fn metadata(spec: &str) -> Result<Arc<dyn MetadataStore>, String> {
    if spec == "memory" {
        return Ok(Arc::new(MemoryStore::new()));
    }
    if let Some(path) = spec.strip_prefix("redb:") {
        return Ok(Arc::new(
            RedbStore::open(std::path::Path::new(path))
                .await
                .map_err(|e| e.to_string())?,
        ));
    }
    #[cfg(feature = "etcd")]
    if let Some(endpoints) = spec.strip_prefix("etcd:") {
        let options = magnetar_metadata::EtcdOptions {
            endpoints: endpoints.split(',').map(str::to_string).collect(),
            root: format!("/wal-bench-{}", std::process::id()),
            ..magnetar_metadata::EtcdOptions::default()
        };
        return Ok(Arc::new(
            magnetar_metadata::EtcdStore::connect(options)
                .await
                .map_err(|e| e.to_string())?,
        ));
    }
    Err(format!("unknown metadata store {spec}"))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = parse()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = open(
        &StoreUrl::parse(&args.store).map_err(|e| e.to_string())?,
        &StoreOverrides {
            endpoint: args.endpoint.clone(),
            ..StoreOverrides::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let metadata = metadata(&args.metadata).await?;
    let config = WalConfig {
        flush_interval_ms: args.flush_ms,
        ..WalConfig::default()
    };
    let writer = WalWriter::start(
        "bench",
        "/bench",
        store,
        metadata,
        config,
        Arc::new(SystemClock),
    )
    .map_err(|e| e.to_string())?;
    let run = std::process::id();
    let mut ledgers = Vec::new();
    for p in 0..args.partitions {
        ledgers.push(
            SharedLedger::open(&writer, &format!("run-{run}/p{p}"))
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let payload = Bytes::from(vec![0x5au8; args.size]);
    let total = args.rate * args.seconds;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<u64, String>>();
    let start = Instant::now();
    let mut refused = 0u64;
    for i in 0..total {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / args.rate);
        tokio::time::sleep_until(due.into()).await;
        let ledger = &ledgers[(i as usize) % ledgers.len()];
        let entry = NewEntry {
            payload: payload.clone(),
            message_count: 1,
            max_timestamp_ms: 0,
            format: PayloadFormat::Kafka,
            producer: None,
            first_index_at: None,
        };
        match ledger.append_with(|_| entry) {
            Ok(pending) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let result = pending
                        .wait()
                        .await
                        .map(|_| due.elapsed().as_micros() as u64)
                        .map_err(|e| e.to_string());
                    let _ = tx.send(result);
                });
            }
            Err(_) => refused += 1,
        }
    }
    drop(tx);
    let sent_for = start.elapsed();
    let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
        .map_err(|e| e.to_string())?;
    let mut failed = 0u64;
    let mut first_error = None;
    while let Some(result) = rx.recv().await {
        match result {
            Ok(us) => {
                if std::env::var_os("WAL_BENCH_DEBUG").is_some() {
                    eprintln!("{us}");
                }
                histogram.saturating_record(us)
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let elapsed = start.elapsed();
    let counters = writer.counters();
    let objects = counters.objects.load(Ordering::Relaxed);
    let bytes = counters.bytes.load(Ordering::Relaxed);
    writer.close().await;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "store": args.store, "metadata": args.metadata.split(':').next(),
            "rate": args.rate, "seconds": args.seconds, "flush_ms": args.flush_ms,
            "partitions": args.partitions, "size": args.size,
            "acked": histogram.len(), "failed": failed, "refused": refused,
            "first_error": first_error,
            "achieved_per_s": histogram.len() as f64 / elapsed.as_secs_f64(),
            "send_seconds": sent_for.as_secs_f64(),
            "p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999), "max_ms": histogram.max() as f64 / 1000.0,
            "objects": objects, "puts_per_s": objects as f64 / elapsed.as_secs_f64(),
            "bytes_per_put": bytes.checked_div(objects).unwrap_or(0),
            "commits": counters.commits.load(Ordering::Relaxed),
        })
    );
    Ok(())
}
