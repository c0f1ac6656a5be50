//! The JSON result of a run, and `compare`: two results side by side with ratios.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::driver::Driver;
use crate::scrape::{BrokerHistogram, APPEND_METRIC, FSYNC_METRIC};
use crate::stats::Percentiles;
use crate::workload::Workload;

/// `MB` in this tool (and in OMB's figures) is 2^20 bytes.
pub const MB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Traffic flows; figures are not aggregated.
    Warmup,
    /// The measured phase of a live workload.
    Test,
    /// Producers build the backlog (publish figures are aggregated).
    Backlog,
    /// Fresh consumers read the backlog from the beginning (consume figures are aggregated).
    Drain,
}

impl Phase {
    pub fn measures_publish(self) -> bool {
        matches!(self, Phase::Test | Phase::Backlog)
    }
    pub fn measures_consume(self) -> bool {
        matches!(self, Phase::Test | Phase::Drain)
    }
    pub fn name(self) -> &'static str {
        match self {
            Phase::Warmup => "warmup",
            Phase::Test => "test",
            Phase::Backlog => "backlog",
            Phase::Drain => "drain",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub messages: u64,
    pub bytes: u64,
    pub duration_s: f64,
    pub msg_per_s: f64,
    pub mb_per_s: f64,
    pub errors: u64,
}

impl Throughput {
    pub fn new(messages: u64, bytes: u64, duration_s: f64, errors: u64) -> Throughput {
        let rate = |v: f64| {
            if duration_s > 0.0 {
                v / duration_s
            } else {
                0.0
            }
        };
        Throughput {
            messages,
            bytes,
            duration_s,
            msg_per_s: rate(messages as f64),
            mb_per_s: rate(bytes as f64) / MB,
            errors,
        }
    }
}

/// One reporting interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Seconds from the start of traffic to the end of this interval.
    pub end_s: f64,
    pub duration_s: f64,
    pub phase: Phase,
    pub publish: Throughput,
    pub consume: Throughput,
    pub publish_latency: Percentiles,
    pub send_delay: Percentiles,
    pub e2e_latency: Percentiles,
    /// Acknowledged minus consumed messages (per subscription) at the end of the interval.
    pub backlog_messages: i64,
    pub broker_cpu_pct: Option<f64>,
    pub broker_rss_bytes: Option<u64>,
}

/// `(percentile, ms)` points of the whole-run histograms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Distributions {
    pub publish_latency: Vec<(f64, f64)>,
    pub send_delay: Vec<(f64, f64)>,
    pub e2e_latency: Vec<(f64, f64)>,
    pub e2e_from_intended: Vec<(f64, f64)>,
}

/// Whole-run figures over the measured phases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub publish: Throughput,
    pub consume: Throughput,
    /// Send to acknowledgement.
    pub publish_latency: Percentiles,
    /// Intended send time (rate schedule) to actual send; empty at producerRate 0.
    pub send_delay: Percentiles,
    /// Actual send to receipt by a consumer (OMB's end-to-end latency).
    pub e2e_latency: Percentiles,
    /// Intended send time to receipt: end-to-end with coordinated omission corrected.
    pub e2e_from_intended: Percentiles,
    /// CommitTransaction calls, for transactional drivers (whole run, warm-up included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_latency: Option<Percentiles>,
    pub distributions: Distributions,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessSummary {
    pub pid: Option<u32>,
    /// CPU seconds during the measured phases.
    pub cpu_s: f64,
    /// Average CPU use during the measured phases (100 = one core).
    pub cpu_pct: f64,
    /// CPU seconds over the whole run, warm-up included.
    pub cpu_s_total: f64,
    /// Largest resident set size sampled during the run.
    pub peak_rss_bytes: u64,
    /// The kernel's peak resident set size of the process at the end (since it started).
    pub vm_hwm_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BacklogSummary {
    pub target_bytes: u64,
    /// Messages and bytes in the topics when the drain started (sum of high watermarks).
    pub messages: u64,
    pub bytes: u64,
    pub build_s: f64,
    pub drain_s: f64,
    /// Every consumer reached the high watermark of its partitions before the time limit.
    pub drained: bool,
    /// Messages read per second per subscription during the drain.
    pub drain_msg_per_s: f64,
    pub drain_mb_per_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub tool: String,
    pub version: String,
    pub started_at: String,
    pub bootstrap_servers: String,
    pub workload_file: String,
    pub workload: Workload,
    pub driver: Driver,
    pub warmup_s: f64,
    pub test_s: f64,
    pub interval_s: f64,
    pub topics: Vec<String>,
    pub summary: Summary,
    pub intervals: Vec<Interval>,
    pub broker: Option<ProcessSummary>,
    pub tool_process: ProcessSummary,
    pub backlog: Option<BacklogSummary>,
    /// The broker's own histograms over the test phase (`--broker-metrics`): fsync, append.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broker_histograms: Vec<BrokerHistogram>,
    pub notes: Vec<String>,
}

impl RunResult {
    pub fn load(path: &Path) -> anyhow::Result<RunResult> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a magnetar-perf result", path.display()))
    }

    /// The figures `compare` and the report's table show: (label, value, higher is better).
    pub fn headline(&self) -> Vec<(&'static str, Option<f64>, bool)> {
        let s = &self.summary;
        let lat = |p: &Percentiles, v: f64| (p.count > 0).then_some(v);
        let mut rows = vec![
            ("publish msg/s", Some(s.publish.msg_per_s), true),
            ("publish MB/s", Some(s.publish.mb_per_s), true),
            ("consume msg/s", Some(s.consume.msg_per_s), true),
            ("consume MB/s", Some(s.consume.mb_per_s), true),
            ("publish errors", Some(s.publish.errors as f64), false),
            (
                "publish latency p50 ms",
                lat(&s.publish_latency, s.publish_latency.p50_ms),
                false,
            ),
            (
                "publish latency p75 ms",
                lat(&s.publish_latency, s.publish_latency.p75_ms),
                false,
            ),
            (
                "publish latency p95 ms",
                lat(&s.publish_latency, s.publish_latency.p95_ms),
                false,
            ),
            (
                "publish latency p99 ms",
                lat(&s.publish_latency, s.publish_latency.p99_ms),
                false,
            ),
            (
                "publish latency p99.9 ms",
                lat(&s.publish_latency, s.publish_latency.p99_9_ms),
                false,
            ),
            (
                "publish latency max ms",
                lat(&s.publish_latency, s.publish_latency.max_ms),
                false,
            ),
            (
                "e2e latency p50 ms",
                lat(&s.e2e_latency, s.e2e_latency.p50_ms),
                false,
            ),
            (
                "e2e latency p75 ms",
                lat(&s.e2e_latency, s.e2e_latency.p75_ms),
                false,
            ),
            (
                "e2e latency p95 ms",
                lat(&s.e2e_latency, s.e2e_latency.p95_ms),
                false,
            ),
            (
                "e2e latency p99 ms",
                lat(&s.e2e_latency, s.e2e_latency.p99_ms),
                false,
            ),
            (
                "e2e latency p99.9 ms",
                lat(&s.e2e_latency, s.e2e_latency.p99_9_ms),
                false,
            ),
            (
                "e2e latency max ms",
                lat(&s.e2e_latency, s.e2e_latency.max_ms),
                false,
            ),
            (
                "send delay p50 ms",
                lat(&s.send_delay, s.send_delay.p50_ms),
                false,
            ),
            (
                "send delay p99 ms",
                lat(&s.send_delay, s.send_delay.p99_ms),
                false,
            ),
            (
                "send delay max ms",
                lat(&s.send_delay, s.send_delay.max_ms),
                false,
            ),
        ];
        if let Some(b) = &self.broker {
            rows.push(("broker CPU s", Some(b.cpu_s), false));
            rows.push(("broker CPU %", Some(b.cpu_pct), false));
            rows.push((
                "broker peak RSS MB",
                Some(b.peak_rss_bytes as f64 / MB),
                false,
            ));
        }
        for h in &self.broker_histograms {
            let (p50, p99) = match h.metric.as_str() {
                FSYNC_METRIC => ("broker fsync p50 ms", "broker fsync p99 ms"),
                APPEND_METRIC => ("broker append p50 ms", "broker append p99 ms"),
                _ => continue,
            };
            let known = h.count > 0;
            rows.push((p50, known.then_some(h.p50_ms), false));
            rows.push((p99, known.then_some(h.p99_ms), false));
        }
        if let Some(b) = &self.backlog {
            rows.push(("backlog MB", Some(b.bytes as f64 / MB), true));
            rows.push(("backlog drain s", Some(b.drain_s), false));
            rows.push(("backlog drain msg/s", Some(b.drain_msg_per_s), true));
            rows.push(("backlog drain MB/s", Some(b.drain_mb_per_s), true));
        }
        rows
    }
}

/// A number for a table: 3 significant digits below 1000, whole numbers above.
pub fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 10.0 {
        format!("{v:.2}")
    } else if v.abs() >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// `a` and `b` side by side; the ratio is b/a, marked `better`/`worse` beyond 5%.
pub fn compare(a: &RunResult, a_name: &str, b: &RunResult, b_name: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "a: {a_name}  ({}, {}, {})",
        a.workload.name, a.driver.name, a.started_at
    );
    let _ = writeln!(
        out,
        "b: {b_name}  ({}, {}, {})",
        b.workload.name, b.driver.name, b.started_at
    );
    if a.workload != b.workload {
        let _ = writeln!(out, "note: the workloads differ");
    }
    let _ = writeln!(out, "{:<26} {:>14} {:>14} {:>9}", "metric", "a", "b", "b/a");
    let rows_b = b.headline();
    for (label, va, higher_better) in a.headline() {
        let vb = rows_b.iter().find(|r| r.0 == label).and_then(|r| r.1);
        let cell = |v: Option<f64>| v.map_or("-".to_string(), fmt_num);
        let (ratio, verdict) = match (va, vb) {
            (Some(x), Some(y)) if x != 0.0 => {
                let r = y / x;
                let verdict = if (r - 1.0).abs() <= 0.05 {
                    ""
                } else if (r > 1.0) == higher_better {
                    "better"
                } else {
                    "worse"
                };
                (format!("{r:.2}x"), verdict)
            }
            _ => ("-".to_string(), ""),
        };
        let _ = writeln!(
            out,
            "{label:<26} {:>14} {:>14} {ratio:>9} {verdict}",
            cell(va),
            cell(vb)
        );
    }
    out
}

/// A markdown table of several results, one row each, labelled by `names` (file stems).
pub fn markdown_table(results: &[(String, RunResult)]) -> String {
    let mut out = String::from(
        "| run | publish msg/s | MB/s | consume msg/s | publish p50 / p99 / p99.9 ms | e2e p50 / p99 / p99.9 ms | send delay p99 ms | broker fsync p50 / p99 ms | broker CPU s (avg %) | broker peak RSS MB |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let three = |p: &Percentiles| {
        if p.count == 0 {
            "-".to_string()
        } else {
            format!(
                "{} / {} / {}",
                fmt_num(p.p50_ms),
                fmt_num(p.p99_ms),
                fmt_num(p.p99_9_ms)
            )
        }
    };
    for (name, r) in results {
        let s = &r.summary;
        let (cpu, rss) = match &r.broker {
            Some(b) => (
                format!("{} ({}%)", fmt_num(b.cpu_s), fmt_num(b.cpu_pct)),
                fmt_num(b.peak_rss_bytes as f64 / MB),
            ),
            None => ("-".into(), "-".into()),
        };
        let fsync = r
            .broker_histograms
            .iter()
            .find(|h| h.metric == FSYNC_METRIC && h.count > 0)
            .map_or_else(
                || "-".to_string(),
                |h| format!("{} / {}", fmt_num(h.p50_ms), fmt_num(h.p99_ms)),
            );
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} | {fsync} | {cpu} | {rss} |",
            fmt_num(s.publish.msg_per_s),
            fmt_num(s.publish.mb_per_s),
            fmt_num(s.consume.msg_per_s),
            three(&s.publish_latency),
            three(&s.e2e_latency),
            if s.send_delay.count == 0 {
                "-".to_string()
            } else {
                fmt_num(s.send_delay.p99_ms)
            },
        );
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_result(rate: f64, p99: f64) -> RunResult {
        let (workload, _) = Workload::parse(
            "name: t\ntopics: 1\npartitionsPerTopic: 1\nmessageSize: 100\nsubscriptionsPerTopic: 1\nconsumerPerSubscription: 1\nproducersPerTopic: 1\nproducerRate: 1000\ntestDurationSeconds: 3\n",
        )
        .unwrap();
        let lat = Percentiles {
            count: 10,
            mean_ms: 1.0,
            p50_ms: 1.0,
            p75_ms: 1.5,
            p95_ms: 2.0,
            p99_ms: p99,
            p99_9_ms: p99 * 2.0,
            max_ms: p99 * 3.0,
        };
        RunResult {
            tool: "magnetar-perf".into(),
            version: "0".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            bootstrap_servers: "127.0.0.1:9092".into(),
            workload_file: "w.yaml".into(),
            workload,
            driver: Driver::default_latency(),
            warmup_s: 0.0,
            test_s: 3.0,
            interval_s: 1.0,
            topics: vec!["t".into()],
            summary: Summary {
                publish: Throughput::new((rate * 3.0) as u64, (rate * 300.0) as u64, 3.0, 0),
                consume: Throughput::new((rate * 3.0) as u64, (rate * 300.0) as u64, 3.0, 0),
                publish_latency: lat,
                e2e_latency: lat,
                ..Summary::default()
            },
            intervals: vec![],
            broker: Some(ProcessSummary {
                cpu_s: 1.0,
                ..ProcessSummary::default()
            }),
            tool_process: ProcessSummary::default(),
            backlog: None,
            broker_histograms: vec![],
            notes: vec![],
        }
    }

    #[test]
    fn throughput_rates() {
        let t = Throughput::new(1_000, 1_048_576, 2.0, 0);
        assert_eq!(t.msg_per_s, 500.0);
        assert_eq!(t.mb_per_s, 0.5);
        assert_eq!(Throughput::new(5, 5, 0.0, 0).msg_per_s, 0.0);
    }

    #[test]
    fn compare_shows_ratios_and_verdicts() {
        let a = sample_result(1_000.0, 4.0);
        let b = sample_result(2_000.0, 2.0);
        let text = compare(&a, "a.json", &b, "b.json");
        let line = |label: &str| {
            text.lines()
                .find(|l| l.starts_with(label))
                .unwrap_or_else(|| panic!("no {label} in\n{text}"))
                .to_string()
        };
        let publish = line("publish msg/s");
        assert!(
            publish.contains("1000") && publish.contains("2000"),
            "{publish}"
        );
        assert!(
            publish.contains("2.00x") && publish.ends_with("better"),
            "{publish}"
        );
        let p99 = line("publish latency p99 ms");
        assert!(p99.contains("0.50x") && p99.ends_with("better"), "{p99}");
        let cpu = line("broker CPU s");
        assert!(cpu.contains("1.00x") && !cpu.ends_with("better"), "{cpu}");
        // Empty histograms print as "-", not as zero latency.
        assert!(line("send delay p99 ms").contains(" - "), "{text}");
    }

    #[test]
    fn result_json_round_trip() {
        let a = sample_result(1_000.0, 4.0);
        let json = serde_json::to_string(&a).unwrap();
        let back: RunResult = serde_json::from_str(&json).unwrap();
        assert_eq!(a, back);
    }

    #[test]
    fn markdown_table_has_a_row_per_result() {
        let t = markdown_table(&[
            ("a".into(), sample_result(1_000.0, 4.0)),
            ("b".into(), sample_result(2_000.0, 2.0)),
        ]);
        assert_eq!(t.lines().count(), 4);
        assert!(
            t.contains("| a | 1000 |") && t.contains("| b | 2000 |"),
            "{t}"
        );
        assert!(t.contains("1.000 / 4.000 / 8.000"), "{t}");
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(fmt_num(50123.4), "50123");
        assert_eq!(fmt_num(123.45), "123.5");
        assert_eq!(fmt_num(1.23456), "1.235");
        assert_eq!(fmt_num(0.012345), "0.0123");
        assert_eq!(fmt_num(0.0), "0");
    }
}
