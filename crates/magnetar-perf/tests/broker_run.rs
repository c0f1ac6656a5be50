//! Runs the tool against the real `magnetar` binary: a few seconds of light traffic, then checks
//! the JSON result (non-zero counts, ordered percentiles, broker sampled), the HTML report and
//! `compare`. The broker binary is found through `MAGNETAR_BIN` or next to this test in the
//! target directory; build it first with `cargo build -p magnetar` (scripts/test does).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use magnetar_perf::result::RunResult;

struct Broker {
    child: Child,
    kafka: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn broker_binary() -> PathBuf {
    let mut candidates = Vec::new();
    if let Ok(path) = std::env::var("MAGNETAR_BIN") {
        candidates.push(PathBuf::from(path));
    }
    // This test runs from <target>/<profile>/deps/.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            candidates.push(profile_dir.join("magnetar"));
            if let Some(target) = profile_dir.parent() {
                candidates.push(target.join("debug/magnetar"));
                candidates.push(target.join("release/magnetar"));
            }
        }
    }
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        candidates.push(Path::new(&dir).join("debug/magnetar"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/magnetar"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the magnetar binary is not built (looked at {candidates:?}); run `cargo build -p magnetar` first or set MAGNETAR_BIN"
            )
        })
}

fn start_broker(data_dir: &Path) -> Broker {
    let child = Command::new(broker_binary())
        .args(["standalone", "--data-dir"])
        .arg(data_dir)
        .args([
            "--bind",
            "127.0.0.1",
            "--kafka-port",
            "0",
            "--pulsar-port",
            "0",
            "--http-port",
            "0",
        ])
        .env("MAGNETAR_STORAGE__FSYNC", "os")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start magnetar");
    // Owned by the guard at once, so every path kills and waits for it.
    let mut broker = Broker {
        child,
        kafka: String::new(),
    };
    let stdout = broker.child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("magnetar printed no listening line in 20 s");
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
            if value["event"] == "listening" {
                broker.kafka = value["kafka"].as_str().expect("kafka address").to_string();
                return broker;
            }
        }
    }
}

fn run_tool(args: &[&str], timeout: Duration) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_magnetar-perf"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start magnetar-perf");
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("magnetar-perf did not finish in {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

const WORKLOAD: &str = "
name: integration
topics: 1
partitionsPerTopic: 2
keyDistributor: KEY_ROUND_ROBIN
messageSize: 128
subscriptionsPerTopic: 1
consumerPerSubscription: 1
producersPerTopic: 1
producerRate: 1000
warmupDurationSeconds: 0.5
testDurationSeconds: 3
";

#[test]
fn runs_a_tiny_workload_against_magnetar() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir.path().join("data"));
    let workload = dir.path().join("w.yaml");
    std::fs::write(&workload, WORKLOAD).unwrap();
    let output = dir.path().join("r.json");
    let report = dir.path().join("r.html");
    let pid = broker.child.id().to_string();
    let out = run_tool(
        &[
            "run",
            "--bootstrap-servers",
            &broker.kafka,
            "--workload",
            workload.to_str().unwrap(),
            "--pid",
            &pid,
            "--interval-s",
            "0.5",
            "--output",
            output.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("] pub "), "no progress lines:\n{stdout}");

    let r = RunResult::load(&output).unwrap();
    let s = &r.summary;
    // 1000 msg/s for 3 s; allow for a slow, loaded machine.
    assert!(s.publish.messages >= 1_000, "{:?}", s.publish);
    assert_eq!(s.publish.errors, 0, "{:?}", r.notes);
    assert!(s.consume.messages >= 1_000, "{:?}", s.consume);
    assert!(
        (s.publish.msg_per_s - 1000.0).abs() < 400.0,
        "{:?}",
        s.publish
    );
    for (name, p) in [
        ("publish", &s.publish_latency),
        ("e2e", &s.e2e_latency),
        ("send delay", &s.send_delay),
    ] {
        assert!(p.count > 0, "{name}: {p:?}");
        assert!(
            p.p50_ms <= p.p75_ms
                && p.p75_ms <= p.p95_ms
                && p.p95_ms <= p.p99_ms
                && p.p99_ms <= p.p99_9_ms
                && p.p99_9_ms <= p.max_ms,
            "{name}: {p:?}"
        );
        assert!(p.max_ms < 10_000.0, "{name}: {p:?}");
    }
    assert!(s.publish_latency.p50_ms > 0.0);
    assert!(s.e2e_latency.p50_ms >= s.publish_latency.p50_ms * 0.1);
    let broker_summary = r.broker.as_ref().expect("broker sampled");
    assert!(
        broker_summary.cpu_s > 0.0 && broker_summary.peak_rss_bytes > 0,
        "{broker_summary:?}"
    );
    assert!(r.intervals.len() >= 6, "{} intervals", r.intervals.len());

    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<svg") && html.contains("Latency distribution"));

    let compared = run_tool(
        &[
            "compare",
            output.to_str().unwrap(),
            output.to_str().unwrap(),
        ],
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&compared.stdout);
    assert!(
        compared.status.success() && text.contains("1.00x"),
        "{text}"
    );
}

#[test]
fn refuses_to_run_without_a_duration() {
    let dir = tempfile::tempdir().unwrap();
    let workload = dir.path().join("w.yaml");
    std::fs::write(
        &workload,
        WORKLOAD
            .replace("testDurationSeconds: 3", "")
            .replace("warmupDurationSeconds: 0.5", ""),
    )
    .unwrap();
    let out = run_tool(
        &[
            "run",
            "--bootstrap-servers",
            "127.0.0.1:1",
            "--workload",
            workload.to_str().unwrap(),
            "--output",
            dir.path().join("r.json").to_str().unwrap(),
        ],
        Duration::from_secs(10),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no test duration"));
}

#[test]
fn runs_against_librdkafkas_mock_cluster() {
    // The client-side ceiling: the same workload against librdkafka's in-process mock brokers.
    let dir = tempfile::tempdir().unwrap();
    let workload = dir.path().join("w.yaml");
    std::fs::write(&workload, WORKLOAD).unwrap();
    let output = dir.path().join("r.json");
    let out = run_tool(
        &[
            "run",
            "--mock-brokers",
            "2",
            "--workload",
            workload.to_str().unwrap(),
            "--quiet",
            "--output",
            output.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr:\n{stderr}");
    let r = RunResult::load(&output).unwrap();
    assert!(
        r.bootstrap_servers.contains("mock cluster of 2"),
        "{}",
        r.bootstrap_servers
    );
    assert!(
        r.summary.publish.messages >= 1_000,
        "{:?}",
        r.summary.publish
    );
    assert_eq!(r.summary.publish.errors, 0, "{:?}", r.notes);
    assert!(r.summary.consume.messages > 0, "{:?}", r.summary.consume);
    assert!(r.broker.is_none());

    // A broker address and the mock cluster exclude each other; so do out-of-range counts.
    for args in [
        &["--mock-brokers", "1", "--bootstrap-servers", "127.0.0.1:9"][..],
        &["--mock-brokers", "0"][..],
    ] {
        let mut all = vec!["run", "--workload", workload.to_str().unwrap()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--output", output.to_str().unwrap()]);
        let out = run_tool(&all, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
