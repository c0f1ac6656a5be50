//! The hot-path cost of metrics: recording one request (count + latency histogram), one error
//! code, and one partition's traffic atomics, single-threaded and from 2 threads on one API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use magnetar_broker::LatencyHistogram;
use magnetar_metrics::ProtocolMetrics;

fn metrics() -> Arc<ProtocolMetrics> {
    let apis: Vec<(usize, String)> = (0..70).map(|i| (i, format!("Api{i}"))).collect();
    let apis: Vec<(usize, &str)> = apis.iter().map(|(i, n)| (*i, n.as_str())).collect();
    Arc::new(ProtocolMetrics::new("kafka", &apis, |c| c.to_string()))
}

fn record(c: &mut Criterion) {
    let m = metrics();
    let mut g = c.benchmark_group("metrics");
    g.bench_function("request (count + latency)", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = i.wrapping_add(7919);
            m.record(0, Duration::from_micros(i % 20_000));
        })
    });
    g.bench_function("error code", |b| b.iter(|| m.record_error(1, 3)));
    let h = LatencyHistogram::new();
    g.bench_function("latency histogram observe", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = i.wrapping_add(7919);
            h.observe_us(i % 20_000);
        })
    });
    let (bytes, messages) = (AtomicU64::new(0), AtomicU64::new(0));
    g.bench_function("partition traffic (2 atomics)", |b| {
        b.iter(|| {
            bytes.fetch_add(1000, Ordering::Relaxed);
            messages.fetch_add(10, Ordering::Relaxed);
        })
    });
    g.bench_function("request, 2 threads on one API", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let m = m.clone();
                    s.spawn(move || {
                        for i in 0..iters {
                            m.record(0, Duration::from_micros(i % 20_000));
                        }
                    });
                }
            });
            start.elapsed() / 2
        })
    });
    g.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
