//! Driver files in the shape of OMB's Kafka driver (`driver-kafka/*.yaml`): client properties
//! as embedded `key=value` blocks, passed to librdkafka unchanged (librdkafka rejects a key it
//! does not know, naming it).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::workload::parse_properties;

/// The default driver: OMB's `driver-kafka/kafka-latency.yaml` client settings (acks=all,
/// linger.ms=1, batch.size=131072; consumers from the earliest offset without auto-commit), with
/// a replication factor of 1 and no `min.insync.replicas` so it runs against a single broker.
/// `perf/drivers/kafka-latency.yaml` is the same file (a test checks it).
pub const DEFAULT_DRIVER_YAML: &str = r#"name: Kafka latency (OMB kafka-latency.yaml, single broker)
replicationFactor: 1
topicConfig: ""
commonConfig: ""
producerConfig: |
  acks=all
  linger.ms=1
  batch.size=131072
consumerConfig: |
  auto.offset.reset=earliest
  enable.auto.commit=false
  max.partition.fetch.bytes=10485760
"#;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DriverFile {
    name: String,
    /// OMB's driver class; accepted so OMB files load, not used.
    #[serde(default)]
    #[allow(dead_code)]
    driver_class: Option<String>,
    #[serde(default = "one")]
    replication_factor: i32,
    /// OMB deletes old benchmark topics; this tool always creates fresh ones.
    #[serde(default)]
    #[allow(dead_code)]
    reset: Option<bool>,
    #[serde(default)]
    topic_config: String,
    #[serde(default)]
    common_config: String,
    #[serde(default)]
    producer_config: String,
    #[serde(default)]
    consumer_config: String,
    /// Magnetar's extension: transactional producers committing every this many records...
    #[serde(default)]
    transaction_commit_records: Option<u64>,
    /// ...or every this many milliseconds, whichever comes first.
    #[serde(default)]
    transaction_commit_interval_ms: Option<u64>,
}

/// Transactional producers: each gets its own `transactional.id` and commits a transaction
/// every `records` records or `interval_ms` milliseconds (the first reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionCommit {
    pub records: u64,
    pub interval_ms: u64,
}

fn one() -> i32 {
    1
}

/// Client settings for one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Driver {
    pub name: String,
    pub replication_factor: i32,
    pub topic_config: BTreeMap<String, String>,
    pub common_config: BTreeMap<String, String>,
    pub producer_config: BTreeMap<String, String>,
    pub consumer_config: BTreeMap<String, String>,
    /// Transactional producers when set (driver keys `transactionCommitRecords`,
    /// `transactionCommitIntervalMs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions: Option<TransactionCommit>,
}

impl Driver {
    pub fn parse(text: &str) -> anyhow::Result<Driver> {
        let file: DriverFile = serde_norway::from_str(text).context("invalid driver file")?;
        if !(1..=16).contains(&file.replication_factor) {
            bail!("replicationFactor must be in 1..=16");
        }
        let driver = Driver {
            name: file.name,
            replication_factor: file.replication_factor,
            topic_config: parse_properties(&file.topic_config).context("in topicConfig")?,
            common_config: parse_properties(&file.common_config).context("in commonConfig")?,
            producer_config: parse_properties(&file.producer_config)
                .context("in producerConfig")?,
            consumer_config: parse_properties(&file.consumer_config)
                .context("in consumerConfig")?,
            transactions: match (
                file.transaction_commit_records,
                file.transaction_commit_interval_ms,
            ) {
                (None, None) => None,
                (records, interval_ms) => Some(TransactionCommit {
                    records: records.unwrap_or(u64::MAX).max(1),
                    interval_ms: interval_ms.unwrap_or(u64::MAX).max(1),
                }),
            },
        };
        if driver.transactions.is_some() && driver.producer_config.contains_key("transactional.id")
        {
            bail!("producerConfig: transactional.id is set by the tool (one per producer)");
        }
        if driver.consumer_config.contains_key("group.id") {
            bail!("consumerConfig: group.id is set by the tool (one group per subscription)");
        }
        Ok(driver)
    }

    pub fn load(path: &Path) -> anyhow::Result<Driver> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read driver {}", path.display()))?;
        Driver::parse(&text).with_context(|| format!("in driver {}", path.display()))
    }

    pub fn default_latency() -> Driver {
        Driver::parse(DEFAULT_DRIVER_YAML).expect("built-in driver parses")
    }

    /// librdkafka settings of the admin client: common settings and the bootstrap servers.
    pub fn common_settings(&self, bootstrap_servers: &str) -> BTreeMap<String, String> {
        let mut out = self.common_config.clone();
        out.insert("bootstrap.servers".into(), bootstrap_servers.into());
        out
    }

    /// librdkafka settings of a producer: common, then producer, then the bootstrap servers.
    pub fn producer_settings(&self, bootstrap_servers: &str) -> BTreeMap<String, String> {
        let mut out = self.common_config.clone();
        out.extend(self.producer_config.clone());
        out.insert("bootstrap.servers".into(), bootstrap_servers.into());
        out
    }

    /// librdkafka settings of a consumer: common, then consumer, then the bootstrap servers.
    pub fn consumer_settings(&self, bootstrap_servers: &str) -> BTreeMap<String, String> {
        let mut out = self.common_config.clone();
        out.extend(self.consumer_config.clone());
        out.insert("bootstrap.servers".into(), bootstrap_servers.into());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_omb_latency_profile() {
        let d = Driver::default_latency();
        assert_eq!(d.replication_factor, 1);
        assert_eq!(d.producer_config["acks"], "all");
        assert_eq!(d.producer_config["linger.ms"], "1");
        assert_eq!(d.producer_config["batch.size"], "131072");
        assert_eq!(d.consumer_config["auto.offset.reset"], "earliest");
        assert_eq!(d.consumer_config["enable.auto.commit"], "false");
        assert!(d.topic_config.is_empty());
    }

    #[test]
    fn shipped_default_matches_the_built_in_one() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../perf/drivers/kafka-latency.yaml");
        assert_eq!(Driver::load(&path).unwrap(), Driver::default_latency());
    }

    #[test]
    fn shipped_drivers_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../perf/drivers");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            Driver::load(&path).unwrap();
        }
    }

    #[test]
    fn parses_an_omb_driver_file() {
        let d = Driver::parse(
            r#"
name: Kafka
driverClass: io.openmessaging.benchmark.driver.kafka.KafkaBenchmarkDriver
replicationFactor: 3
reset: true
topicConfig: |
  min.insync.replicas=2
commonConfig: |
  bootstrap.servers=localhost:9092
producerConfig: |
  acks=all
  linger.ms=1
  batch.size=131072
  compression.type=lz4
  enable.idempotence=true
consumerConfig: |
  auto.offset.reset=earliest
"#,
        )
        .unwrap();
        assert_eq!(d.replication_factor, 3);
        assert_eq!(d.topic_config["min.insync.replicas"], "2");
        let p = d.producer_settings("127.0.0.1:1");
        assert_eq!(p["bootstrap.servers"], "127.0.0.1:1");
        assert_eq!(p["compression.type"], "lz4");
        assert_eq!(p["enable.idempotence"], "true");
    }

    #[test]
    fn rejects_unknown_keys_and_group_id() {
        assert!(Driver::parse("name: x\nproducerConfg: |\n  acks=1\n").is_err());
        assert!(Driver::parse("name: x\nconsumerConfig: |\n  group.id=g\n").is_err());
        assert!(Driver::parse("name: x\nreplicationFactor: 0\n").is_err());
    }
}
