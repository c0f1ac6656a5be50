//! Workload files in the shape of the OpenMessaging Benchmark (OMB): the same camelCase keys,
//! so an OMB workload runs unchanged, plus `warmupDurationSeconds`/`testDurationSeconds` for
//! the short runs a laptop or CI can afford.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// Bytes at the start of every payload that carry the benchmark's timestamps (see `payload`).
pub const PAYLOAD_HEADER_BYTES: usize = crate::payload::HEADER_BYTES;
/// Largest message the tool will build; larger ones belong to a different kind of benchmark.
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most partitions over all topics of one workload.
pub const PARTITIONS_MAX: u64 = 10_000;
/// Most producers over all topics (each one is an OS thread).
pub const PRODUCERS_MAX: u64 = 64;
/// Most consumers over all topics and subscriptions (each one is an OS thread).
pub const CONSUMERS_MAX: u64 = 256;
/// Longest warm-up or test phase: a benchmark, not a soak test.
pub const PHASE_SECONDS_MAX: f64 = 24.0 * 3600.0;

/// OMB keys that this tool reads.
const KNOWN_KEYS: &[&str] = &[
    "name",
    "topics",
    "partitionsPerTopic",
    "keyDistributor",
    "messageSize",
    "payloadFile",
    "useRandomizedPayloads",
    "subscriptionsPerTopic",
    "consumerPerSubscription",
    "producersPerTopic",
    "producerRate",
    "consumerBacklogSizeGB",
    "warmupDurationMinutes",
    "warmupDurationSeconds",
    "testDurationMinutes",
    "testDurationSeconds",
];

/// OMB keys that are accepted (so OMB files load) but have no effect here; each is named in a
/// warning when present.
const IGNORED_KEYS: &[&str] = &[
    "randomBytesRatio",
    "randomizedPayloadPoolSize",
    "acceptableBacklog",
    "producerPauseDuringDrain",
    "messageSizes",
];

/// How producers pick message keys (OMB's `keyDistributor`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyDistributor {
    /// No key: the client's partitioner spreads messages (librdkafka: sticky random).
    #[default]
    NoKey,
    /// Keys taken in turn from a fixed pool of 10,000.
    KeyRoundRobin,
    /// A key picked at random from the same pool for every message.
    RandomNano,
}

/// One workload, as written in the file (OMB field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub name: String,
    pub topics: u32,
    pub partitions_per_topic: u32,
    #[serde(default)]
    pub key_distributor: KeyDistributor,
    pub message_size: usize,
    /// Payload template, relative to the workload file; random bytes when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_file: Option<String>,
    #[serde(default)]
    pub use_randomized_payloads: bool,
    pub subscriptions_per_topic: u32,
    pub consumer_per_subscription: u32,
    pub producers_per_topic: u32,
    /// Messages per second over all producers; 0 means as fast as possible.
    pub producer_rate: f64,
    /// Backlog to build before consumers start (the catch-up workload); 0 means none.
    #[serde(default, rename = "consumerBacklogSizeGB")]
    pub consumer_backlog_size_gb: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_duration_minutes: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_duration_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_duration_minutes: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_duration_seconds: Option<f64>,
}

/// Warm-up and test phase lengths after the command line has had its say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phases {
    pub warmup: Duration,
    pub test: Duration,
}

impl Workload {
    /// Parses a workload; unknown keys are errors that name the key, OMB keys without an effect
    /// here are returned as warnings.
    pub fn parse(text: &str) -> anyhow::Result<(Workload, Vec<String>)> {
        let value: serde_norway::Value =
            serde_norway::from_str(text).context("workload is not valid yaml")?;
        let serde_norway::Value::Mapping(mut map) = value else {
            bail!("workload must be a yaml mapping");
        };
        let mut warnings = Vec::new();
        let keys: Vec<String> = map
            .keys()
            .map(|k| {
                k.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{k:?}"))
            })
            .collect();
        for key in keys {
            if IGNORED_KEYS.contains(&key.as_str()) {
                warnings.push(format!(
                    "workload key `{key}` is accepted but has no effect"
                ));
                map.remove(key.as_str());
            } else if !KNOWN_KEYS.contains(&key.as_str()) {
                bail!(
                    "unknown workload key `{key}` (known: {})",
                    KNOWN_KEYS.join(", ")
                );
            }
        }
        let workload: Workload = serde_norway::from_value(serde_norway::Value::Mapping(map))
            .context("invalid workload")?;
        workload.validate()?;
        Ok((workload, warnings))
    }

    /// Reads and parses a workload file.
    pub fn load(path: &Path) -> anyhow::Result<(Workload, Vec<String>)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read workload {}", path.display()))?;
        Workload::parse(&text).with_context(|| format!("in workload {}", path.display()))
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.topics == 0 || self.partitions_per_topic == 0 {
            bail!("topics and partitionsPerTopic must be at least 1");
        }
        let partitions = u64::from(self.topics) * u64::from(self.partitions_per_topic);
        if partitions > PARTITIONS_MAX {
            bail!("{partitions} partitions in all; at most {PARTITIONS_MAX}");
        }
        if self.message_size < PAYLOAD_HEADER_BYTES || self.message_size > MESSAGE_BYTES_MAX {
            bail!(
                "messageSize must be in {PAYLOAD_HEADER_BYTES}..={MESSAGE_BYTES_MAX} (the first {PAYLOAD_HEADER_BYTES} bytes carry timestamps)"
            );
        }
        if self.producers_per_topic == 0 {
            bail!("producersPerTopic must be at least 1");
        }
        if self.producer_count() > PRODUCERS_MAX {
            bail!(
                "{} producers in all; at most {PRODUCERS_MAX}",
                self.producer_count()
            );
        }
        if self.consumer_count() > CONSUMERS_MAX {
            bail!(
                "{} consumers in all; at most {CONSUMERS_MAX}",
                self.consumer_count()
            );
        }
        if (self.subscriptions_per_topic == 0) != (self.consumer_per_subscription == 0) {
            bail!("subscriptionsPerTopic and consumerPerSubscription must both be 0 or both be at least 1");
        }
        if !self.producer_rate.is_finite() || self.producer_rate < 0.0 {
            bail!("producerRate must be a number >= 0 (0 means as fast as possible)");
        }
        if !self.consumer_backlog_size_gb.is_finite() || self.consumer_backlog_size_gb < 0.0 {
            bail!("consumerBacklogSizeGB must be a number >= 0");
        }
        if self.consumer_backlog_size_gb > 0.0 && self.consumer_count() == 0 {
            bail!("a backlog workload needs consumers to drain it");
        }
        if self.warmup_duration_minutes.is_some() && self.warmup_duration_seconds.is_some() {
            bail!("give warmupDurationMinutes or warmupDurationSeconds, not both");
        }
        if self.test_duration_minutes.is_some() && self.test_duration_seconds.is_some() {
            bail!("give testDurationMinutes or testDurationSeconds, not both");
        }
        Ok(())
    }

    pub fn producer_count(&self) -> u64 {
        u64::from(self.topics) * u64::from(self.producers_per_topic)
    }

    pub fn consumer_count(&self) -> u64 {
        u64::from(self.topics)
            * u64::from(self.subscriptions_per_topic)
            * u64::from(self.consumer_per_subscription)
    }

    /// Rate of one producer in messages per second; 0 means as fast as possible.
    pub fn rate_per_producer(&self) -> f64 {
        self.producer_rate / self.producer_count() as f64
    }

    /// Backlog size in bytes, `None` for a workload without a backlog phase.
    pub fn backlog_bytes(&self) -> Option<u64> {
        (self.consumer_backlog_size_gb > 0.0)
            .then_some((self.consumer_backlog_size_gb * 1024.0 * 1024.0 * 1024.0) as u64)
    }

    /// Phase lengths: the command line wins over the file; a run without a test duration is
    /// refused, so every run ends by itself.
    pub fn phases(&self, warmup_s: Option<f64>, test_s: Option<f64>) -> anyhow::Result<Phases> {
        let file_test = self
            .test_duration_seconds
            .or(self.test_duration_minutes.map(|m| m * 60.0));
        let file_warmup = self
            .warmup_duration_seconds
            .or(self.warmup_duration_minutes.map(|m| m * 60.0));
        let Some(test) = test_s.or(file_test) else {
            bail!("no test duration: give --duration-s or testDurationSeconds/testDurationMinutes in the workload");
        };
        let warmup = warmup_s.or(file_warmup).unwrap_or(0.0);
        if !test.is_finite() || test <= 0.0 || test > PHASE_SECONDS_MAX {
            bail!("test duration must be in (0, {PHASE_SECONDS_MAX}] seconds, got {test}");
        }
        if !warmup.is_finite() || !(0.0..=PHASE_SECONDS_MAX).contains(&warmup) {
            bail!("warm-up duration must be in [0, {PHASE_SECONDS_MAX}] seconds, got {warmup}");
        }
        Ok(Phases {
            warmup: Duration::from_secs_f64(warmup),
            test: Duration::from_secs_f64(test),
        })
    }
}

/// Key pool shared by the key distributors, so runs are comparable.
pub fn key_pool() -> Vec<String> {
    (0..10_000u32)
        .map(|i| format!("key-{:07x}", i.wrapping_mul(2_654_435_761)))
        .collect()
}

/// `key=value` lines (Java properties, as OMB's driver files embed them); `#` and `!` start
/// comments.
pub fn parse_properties(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(split) = line.find(['=', ':']) else {
            bail!("line {}: `{line}` is not key=value", number + 1);
        };
        let (key, value) = (line[..split].trim(), line[split + 1..].trim());
        if key.is_empty() {
            bail!("line {}: empty key", number + 1);
        }
        out.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OMB_1KB: &str = r#"
name: 1 topic / 1 partition / 1Kb

topics: 1
partitionsPerTopic: 1
keyDistributor: "NO_KEY"
messageSize: 1024
payloadFile: "payload/payload-1Kb.data"
subscriptionsPerTopic: 1
consumerPerSubscription: 1
producersPerTopic: 1
producerRate: 50000
consumerBacklogSizeGB: 0
testDurationMinutes: 15
"#;

    #[test]
    fn parses_an_omb_workload_unchanged() {
        let (w, warnings) = Workload::parse(OMB_1KB).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(w.topics, 1);
        assert_eq!(w.message_size, 1024);
        assert_eq!(w.key_distributor, KeyDistributor::NoKey);
        assert_eq!(w.payload_file.as_deref(), Some("payload/payload-1Kb.data"));
        assert_eq!(w.producer_rate, 50000.0);
        assert_eq!(w.backlog_bytes(), None);
        let p = w.phases(None, None).unwrap();
        assert_eq!(p.test, Duration::from_secs(900));
        assert_eq!(p.warmup, Duration::ZERO);
    }

    #[test]
    fn command_line_durations_win_and_seconds_are_accepted() {
        let text = OMB_1KB.replace(
            "testDurationMinutes: 15",
            "testDurationSeconds: 30\nwarmupDurationSeconds: 5",
        );
        let (w, _) = Workload::parse(&text).unwrap();
        let p = w.phases(None, None).unwrap();
        assert_eq!(
            (p.warmup, p.test),
            (Duration::from_secs(5), Duration::from_secs(30))
        );
        let p = w.phases(Some(1.0), Some(3.0)).unwrap();
        assert_eq!(
            (p.warmup, p.test),
            (Duration::from_secs(1), Duration::from_secs(3))
        );
    }

    #[test]
    fn refuses_to_run_without_a_duration() {
        let text = OMB_1KB.replace("testDurationMinutes: 15", "");
        let (w, _) = Workload::parse(&text).unwrap();
        let err = w.phases(None, None).unwrap_err().to_string();
        assert!(err.contains("no test duration"), "{err}");
        assert!(w.phases(None, Some(0.0)).is_err());
        assert!(w.phases(None, Some(f64::NAN)).is_err());
        assert!(w.phases(Some(-1.0), Some(1.0)).is_err());
    }

    #[test]
    fn unknown_keys_are_errors_and_omb_extras_are_warnings() {
        let err = Workload::parse(&format!("{OMB_1KB}\nproducerRat: 5\n")).unwrap_err();
        assert!(format!("{err:#}").contains("`producerRat`"), "{err:#}");
        let (_, warnings) =
            Workload::parse(&format!("{OMB_1KB}\nrandomBytesRatio: 0.5\n")).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("randomBytesRatio"));
    }

    #[test]
    fn rejects_out_of_range_values() {
        for (from, to) in [
            ("messageSize: 1024", "messageSize: 8"),
            ("topics: 1", "topics: 0"),
            ("producerRate: 50000", "producerRate: -1"),
            ("producersPerTopic: 1", "producersPerTopic: 65"),
            ("consumerPerSubscription: 1", "consumerPerSubscription: 0"),
            (
                "testDurationMinutes: 15",
                "testDurationMinutes: 15\ntestDurationSeconds: 3",
            ),
        ] {
            let text = OMB_1KB.replace(from, to);
            assert!(Workload::parse(&text).is_err(), "{to} accepted");
        }
    }

    #[test]
    fn backlog_and_rates() {
        let text = OMB_1KB
            .replace("consumerBacklogSizeGB: 0", "consumerBacklogSizeGB: 0.5")
            .replace("producersPerTopic: 1", "producersPerTopic: 4")
            .replace(
                "keyDistributor: \"NO_KEY\"",
                "keyDistributor: KEY_ROUND_ROBIN",
            );
        let (w, _) = Workload::parse(&text).unwrap();
        assert_eq!(w.backlog_bytes(), Some(512 * 1024 * 1024));
        assert_eq!(w.rate_per_producer(), 12500.0);
        assert_eq!(w.key_distributor, KeyDistributor::KeyRoundRobin);
    }

    #[test]
    fn properties() {
        let p = parse_properties("# c\nacks=all\n linger.ms = 1 \n\nbatch.size:131072\n").unwrap();
        assert_eq!(p["acks"], "all");
        assert_eq!(p["linger.ms"], "1");
        assert_eq!(p["batch.size"], "131072");
        assert!(parse_properties("novalue").is_err());
    }

    #[test]
    fn shipped_workloads_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../perf/workloads");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let (w, warnings) = Workload::load(&path).unwrap();
                assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
                w.phases(None, None).unwrap();
                count += 1;
            }
        }
        assert!(
            count >= 5,
            "expected the standard workloads in {}",
            dir.display()
        );
    }
}
