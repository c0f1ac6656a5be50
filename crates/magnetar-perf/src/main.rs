//! `magnetar-perf`: run an OMB-style workload against a Kafka-compatible broker, render a
//! result as HTML, or compare two results. See the crate docs (`lib.rs`) and `perf/README.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use magnetar_perf::result::{compare, RunResult};
use magnetar_perf::runner::{run, RunOptions};
use magnetar_perf::{report, result};

#[derive(Parser)]
#[command(
    name = "magnetar-perf",
    version,
    about = "OpenMessaging-Benchmark-style benchmark for Kafka-compatible brokers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workload and write its JSON result (and optionally an HTML report).
    Run {
        /// host:port of the broker.
        #[arg(long, required_unless_present = "mock_brokers")]
        bootstrap_servers: Option<String>,
        /// Instead of a broker, librdkafka's in-process mock cluster of N brokers (1..=16): the
        /// same client and workload with no broker cost, the client-side ceiling of the machine.
        #[arg(long, conflicts_with = "bootstrap_servers")]
        mock_brokers: Option<u32>,
        /// Workload YAML (OMB shape).
        #[arg(long)]
        workload: PathBuf,
        /// Driver YAML (OMB Kafka driver shape); OMB's kafka-latency settings when absent.
        #[arg(long)]
        driver: Option<PathBuf>,
        /// Test phase length in seconds; overrides the workload's test duration.
        #[arg(long)]
        duration_s: Option<f64>,
        /// Warm-up length in seconds; overrides the workload's warm-up duration.
        #[arg(long)]
        warmup_s: Option<f64>,
        /// Broker process to sample for CPU seconds and resident memory (/proc).
        #[arg(long)]
        pid: Option<u32>,
        /// The broker's Prometheus endpoint (e.g. http://127.0.0.1:8080/metrics): its fsync
        /// and append latency histograms over the test phase go into the result.
        #[arg(long)]
        broker_metrics: Option<String>,
        /// Reporting interval in seconds.
        #[arg(long, default_value_t = 1.0)]
        interval_s: f64,
        /// Prefix of the topics the run creates (a fresh set per run).
        #[arg(long, default_value = "magnetar-perf")]
        topic_prefix: String,
        /// JSON result file.
        #[arg(long)]
        output: PathBuf,
        /// HTML report file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// No progress lines.
        #[arg(long)]
        quiet: bool,
    },
    /// Print two results side by side with ratios (b/a).
    Compare { a: PathBuf, b: PathBuf },
    /// Print a markdown table of results, one row per file.
    Table { results: Vec<PathBuf> },
    /// Render the HTML report of a JSON result.
    Report { result: PathBuf, html: PathBuf },
}

fn main() -> ExitCode {
    match main_result() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("magnetar-perf: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn main_result() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            bootstrap_servers,
            mock_brokers,
            workload,
            driver,
            duration_s,
            warmup_s,
            pid,
            broker_metrics,
            interval_s,
            topic_prefix,
            output,
            report: report_path,
            quiet,
        } => {
            let command_line = std::env::args().collect::<Vec<_>>().join(" ");
            let options = RunOptions {
                bootstrap_servers: bootstrap_servers.unwrap_or_default(),
                mock_brokers,
                workload_path: workload,
                driver_path: driver,
                duration_s,
                warmup_s,
                interval_s,
                pid,
                broker_metrics,
                topic_prefix,
                quiet,
            };
            let result = run(&options)?;
            let json = serde_json::to_string_pretty(&result).context("cannot encode the result")?;
            std::fs::write(&output, json + "\n")
                .with_context(|| format!("cannot write {}", output.display()))?;
            if let Some(path) = report_path {
                std::fs::write(&path, report::html(&result, Some(&command_line)))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            print_summary(&result);
            println!("magnetar-perf: result written to {}", output.display());
            Ok(())
        }
        Command::Compare { a, b } => {
            let ra = RunResult::load(&a)?;
            let rb = RunResult::load(&b)?;
            print!(
                "{}",
                compare(&ra, &a.display().to_string(), &rb, &b.display().to_string())
            );
            Ok(())
        }
        Command::Table { results } => {
            let mut loaded = Vec::new();
            for path in results {
                let name = path.file_stem().map_or_else(
                    || path.display().to_string(),
                    |s| s.to_string_lossy().into_owned(),
                );
                loaded.push((name, RunResult::load(&path)?));
            }
            print!("{}", result::markdown_table(&loaded));
            Ok(())
        }
        Command::Report { result, html } => {
            let r = RunResult::load(&result)?;
            std::fs::write(&html, report::html(&r, None))
                .with_context(|| format!("cannot write {}", html.display()))?;
            Ok(())
        }
    }
}

fn print_summary(r: &RunResult) {
    let s = &r.summary;
    let p = |x: &magnetar_perf::stats::Percentiles| {
        if x.count == 0 {
            "-".to_string()
        } else {
            format!(
                "p50 {} p75 {} p95 {} p99 {} p99.9 {} max {}",
                result::fmt_num(x.p50_ms),
                result::fmt_num(x.p75_ms),
                result::fmt_num(x.p95_ms),
                result::fmt_num(x.p99_ms),
                result::fmt_num(x.p99_9_ms),
                result::fmt_num(x.max_ms)
            )
        }
    };
    println!("== {} ==", r.workload.name);
    println!(
        "publish {} msg/s {} MB/s ({} messages, {} errors); consume {} msg/s {} MB/s",
        result::fmt_num(s.publish.msg_per_s),
        result::fmt_num(s.publish.mb_per_s),
        s.publish.messages,
        s.publish.errors,
        result::fmt_num(s.consume.msg_per_s),
        result::fmt_num(s.consume.mb_per_s)
    );
    println!("publish latency ms:   {}", p(&s.publish_latency));
    println!("end-to-end ms:        {}", p(&s.e2e_latency));
    println!("e2e from intended ms: {}", p(&s.e2e_from_intended));
    println!("send delay ms:        {}", p(&s.send_delay));
    if let Some(commit) = &s.commit_latency {
        println!("txn commit ms:        {}", p(commit));
    }
    if let Some(b) = &r.broker {
        println!(
            "broker: {} CPU s ({}% of a core), peak RSS {} MB",
            result::fmt_num(b.cpu_s),
            result::fmt_num(b.cpu_pct),
            result::fmt_num(b.peak_rss_bytes as f64 / result::MB)
        );
    }
    if let Some(b) = &r.backlog {
        println!(
            "backlog: {} messages drained in {} s ({}): {} msg/s, {} MB/s",
            b.messages,
            result::fmt_num(b.drain_s),
            if b.drained { "complete" } else { "incomplete" },
            result::fmt_num(b.drain_msg_per_s),
            result::fmt_num(b.drain_mb_per_s)
        );
    }
    for note in &r.notes {
        println!("note: {note}");
    }
}
