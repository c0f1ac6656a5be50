//! The `[server]` section (bind address, advertised host, data directory) and the `[broker]`
//! section (cluster name and the broker's own limits).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{err, range, Config, ConfigError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub bind: String,
    pub advertised_host: String,
    pub data_dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSection {
    pub cluster_name: String,
    pub partitions_max: u32,
    pub producers_per_partition_max: u32,
    pub retention_check_interval_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            advertised_host: String::new(),
            data_dir: "./data".into(),
        }
    }
}

impl Default for BrokerSection {
    fn default() -> Self {
        Self {
            cluster_name: "standalone".into(),
            partitions_max: 4096,
            producers_per_partition_max: 10_000,
            retention_check_interval_ms: 300_000,
        }
    }
}

impl Config {
    /// `[server]`: the bind address parses, the data directory is set.
    pub(super) fn validate_server(&self) -> Result<(), ConfigError> {
        if self.server.bind.parse::<std::net::IpAddr>().is_err() {
            return Err(err(format!(
                "server.bind = \"{}\" is not an IP address",
                self.server.bind
            )));
        }
        if self.server.data_dir.as_os_str().is_empty() {
            return Err(err("server.data_dir is empty"));
        }
        Ok(())
    }
}

impl Config {
    /// `[broker]` ranges.
    pub(super) fn validate_broker(&self) -> Result<(), ConfigError> {
        range(
            "broker.partitions_max",
            self.broker.partitions_max.into(),
            1,
            1_000_000,
        )?;
        range(
            "broker.producers_per_partition_max",
            self.broker.producers_per_partition_max.into(),
            1,
            10_000_000,
        )?;
        range(
            "broker.retention_check_interval_ms",
            self.broker.retention_check_interval_ms,
            1000,
            86_400_000,
        )?;
        Ok(())
    }
}
