//! The broker's own latency histograms, read from its Prometheus `/metrics` at the start and
//! the end of the measured phase (`--broker-metrics URL`): the storage's fdatasync latency and
//! the broker's append (produce-to-durable) latency over exactly the run's test phase, so a
//! publish p99 can be set against the fsync p99 the disk gave in the same run.

use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The storage's fdatasync latency histogram.
pub const FSYNC_METRIC: &str = "magnetar_storage_fsync_latency_seconds";
/// The broker's append latency (append call to durable under the fsync policy).
pub const APPEND_METRIC: &str = "magnetar_broker_append_latency_seconds";
/// The histograms taken from the broker.
pub const FAMILIES: [&str; 2] = [FSYNC_METRIC, APPEND_METRIC];

/// Longest a scrape may take (the broker's admin listener answers in milliseconds).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `/metrics` body read.
const BODY_BYTES_MAX: u64 = 16 << 20;

/// A Prometheus histogram as scraped: cumulative counts per upper bound (seconds), sum, count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scraped {
    pub buckets: Vec<(f64, u64)>,
    pub sum_s: f64,
    pub count: u64,
}

/// Quantiles of a histogram delta, estimated from its buckets (linear inside the bucket, as
/// Prometheus' `histogram_quantile`): as exact as the bucket bounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrokerHistogram {
    /// Metric family it came from.
    pub metric: String,
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Per bucket: upper bound in ms (`None` for +Inf, which JSON cannot hold) and the
    /// observations in it during the test phase (not cumulative).
    pub buckets: Vec<(Option<f64>, u64)>,
}

/// GETs `url` (plain `http://`) and returns the body.
pub fn fetch(url: &str) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime for the metrics scrape")?;
    // reqwest is built without a default TLS provider in this workspace; install ring's
    // (idempotent: a second install is refused and ignored), so building the client never panics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(SCRAPE_TIMEOUT)
            .build()
            .context("cannot build an HTTP client")?;
        let response = client
            .get(url)
            .send()
            .await
            .with_context(|| format!("cannot GET {url}"))?;
        if !response.status().is_success() {
            bail!("GET {url}: HTTP {}", response.status());
        }
        if response.content_length().unwrap_or(0) > BODY_BYTES_MAX {
            bail!("GET {url}: body over {BODY_BYTES_MAX} bytes");
        }
        let body = response.bytes().await.context("reading /metrics")?;
        if body.len() as u64 > BODY_BYTES_MAX {
            bail!("GET {url}: body over {BODY_BYTES_MAX} bytes");
        }
        String::from_utf8(body.to_vec()).context("/metrics is not UTF-8")
    })
}

/// The unlabelled histogram `family` in Prometheus text `text`; `None` when absent.
pub fn parse(text: &str, family: &str) -> Option<Scraped> {
    let bucket_prefix = format!("{family}_bucket{{");
    let mut out = Scraped::default();
    let mut seen = false;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if let Some(labels) = name.strip_prefix(&bucket_prefix) {
            let Some(le) = labels
                .split(',')
                .find_map(|l| l.trim_end_matches('}').strip_prefix("le="))
            else {
                continue;
            };
            let le = le.trim_matches('"');
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse() {
                    Ok(b) => b,
                    Err(_) => continue,
                }
            };
            if let Ok(n) = value.parse::<f64>() {
                out.buckets.push((bound, n as u64));
                seen = true;
            }
        } else if name == format!("{family}_sum") {
            out.sum_s = value.parse().unwrap_or(0.0);
        } else if name == format!("{family}_count") {
            out.count = value.parse::<f64>().map(|v| v as u64).unwrap_or(0);
        }
    }
    out.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    seen.then_some(out)
}

/// What happened between two scrapes of one histogram.
pub fn delta(before: &Scraped, after: &Scraped, metric: &str) -> BrokerHistogram {
    let cumulative: Vec<(f64, u64)> = after
        .buckets
        .iter()
        .map(|(bound, n)| {
            let was = before
                .buckets
                .iter()
                .find(|(b, _)| b == bound)
                .map_or(0, |(_, n)| *n);
            (*bound, n.saturating_sub(was))
        })
        .collect();
    let count = after.count.saturating_sub(before.count);
    let sum_s = (after.sum_s - before.sum_s).max(0.0);
    let mut per_bucket = Vec::with_capacity(cumulative.len());
    let mut below = 0;
    for (bound, c) in &cumulative {
        let bound_ms = bound.is_finite().then_some(bound * 1e3);
        per_bucket.push((bound_ms, c.saturating_sub(below)));
        below = (*c).max(below);
    }
    BrokerHistogram {
        metric: metric.to_string(),
        count,
        mean_ms: if count > 0 {
            sum_s * 1e3 / count as f64
        } else {
            0.0
        },
        p50_ms: quantile(&cumulative, 0.5) * 1e3,
        p99_ms: quantile(&cumulative, 0.99) * 1e3,
        p999_ms: quantile(&cumulative, 0.999) * 1e3,
        buckets: per_bucket,
    }
}

/// `histogram_quantile` over cumulative buckets (seconds): linear inside the bucket holding the
/// rank; the last finite bound when the rank falls in +Inf; 0 when empty.
pub fn quantile(cumulative: &[(f64, u64)], q: f64) -> f64 {
    let Some(&(_, total)) = cumulative.last() else {
        return 0.0;
    };
    if total == 0 {
        return 0.0;
    }
    let rank = q * total as f64;
    let mut lower_bound = 0.0;
    let mut lower_count = 0u64;
    for &(bound, c) in cumulative {
        if c as f64 >= rank {
            if bound.is_infinite() {
                return lower_bound;
            }
            let in_bucket = (c - lower_count) as f64;
            if in_bucket <= 0.0 {
                return bound;
            }
            return lower_bound + (bound - lower_bound) * (rank - lower_count as f64) / in_bucket;
        }
        lower_bound = bound;
        lower_count = c;
    }
    lower_bound
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# HELP magnetar_storage_fsync_latency_seconds x
# TYPE magnetar_storage_fsync_latency_seconds histogram
magnetar_storage_fsync_latency_seconds_sum 0.5
magnetar_storage_fsync_latency_seconds_count 10
magnetar_storage_fsync_latency_seconds_bucket{le="0.001"} 10
magnetar_storage_fsync_latency_seconds_bucket{le="0.002"} 10
magnetar_storage_fsync_latency_seconds_bucket{le="0.01"} 10
magnetar_storage_fsync_latency_seconds_bucket{le="+Inf"} 10
"#;
    const AFTER: &str = r#"magnetar_storage_fsync_latency_seconds_sum 1.7
magnetar_storage_fsync_latency_seconds_count 1010
magnetar_storage_fsync_latency_seconds_bucket{le="0.001"} 910
magnetar_storage_fsync_latency_seconds_bucket{le="0.002"} 1000
magnetar_storage_fsync_latency_seconds_bucket{le="0.01"} 1010
magnetar_storage_fsync_latency_seconds_bucket{le="+Inf"} 1010
magnetar_broker_append_latency_seconds_bucket{le="0.001"} 3
"#;

    #[test]
    fn the_test_phase_is_the_difference_of_two_scrapes() {
        let family = FAMILIES[0];
        let before = parse(BEFORE, family).unwrap();
        let after = parse(AFTER, family).unwrap();
        assert_eq!(after.buckets.len(), 4);
        let d = delta(&before, &after, family);
        assert_eq!(d.count, 1000);
        assert!((d.mean_ms - 1.2).abs() < 1e-9, "{}", d.mean_ms);
        // 900 at or below 1 ms, 90 in (1, 2], 10 in (2, 10].
        assert_eq!(
            d.buckets,
            vec![
                (Some(1.0), 900),
                (Some(2.0), 90),
                (Some(10.0), 10),
                (None, 0)
            ]
        );
        assert!((d.p50_ms - 0.5 / 0.9 * 1.0).abs() < 1e-9, "{}", d.p50_ms);
        // rank 990 is the last of the (1, 2] bucket.
        assert!((d.p99_ms - 2.0).abs() < 1e-9, "{}", d.p99_ms);
        // rank 999 is 9/10 into (2, 10].
        assert!((d.p999_ms - 9.2).abs() < 1e-9, "{}", d.p999_ms);
        assert!(parse(AFTER, "magnetar_nothing").is_none());
        // The result survives JSON (an infinite bound would come back as null and fail).
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<BrokerHistogram>(&json).unwrap(), d);
    }

    #[test]
    fn quantiles_of_edge_cases() {
        assert_eq!(quantile(&[], 0.99), 0.0);
        assert_eq!(quantile(&[(0.001, 0), (f64::INFINITY, 0)], 0.99), 0.0);
        // Everything above the last finite bound: the bound is all that is known.
        assert_eq!(quantile(&[(0.001, 0), (f64::INFINITY, 5)], 0.5), 0.001);
    }
}
