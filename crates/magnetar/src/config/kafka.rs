//! The `[kafka]` section: the Kafka listener(s), topic defaults and per-connection limits.

use serde::{Deserialize, Serialize};

use super::{err, one_of, range, Config, ConfigError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSection {
    pub port: u16,
    pub advertised_host: String,
    pub advertised_port: u16,
    pub tenant: String,
    pub namespace: String,
    pub allow_auto_topic_creation: bool,
    pub auto_topic_creation_type: String,
    pub default_num_partitions: u32,
    pub max_request_bytes: u64,
    pub connections_max: u32,
    /// Kafka's `connections.max.idle.ms`: a connection with nothing in flight is closed after
    /// this long without a request.
    pub connections_max_idle_ms: u64,
    /// A request frame that started arriving must be complete within this long.
    pub request_read_timeout_ms: u64,
    /// Requests read and not yet answered per connection (pipelining).
    pub max_inflight_requests_per_connection: u32,
    /// Bytes of requests read and responses not yet written per connection.
    pub max_inflight_bytes_per_connection: u64,
    pub message_bytes_max: u64,
    /// KoP's `entryFormat`: the storage format of new Kafka-produced entries.
    pub entry_format: String,
    pub max_read_entries_num: u32,
    /// `PLAINTEXT`, `SASL_PLAINTEXT`, `SSL` or `SASL_SSL` (from KoP's `kafkaListeners` prefix).
    pub security_protocol: String,
    /// Pulsar entries kept converted to record batches for Kafka consumers, in bytes.
    pub conversion_cache_bytes: u64,
    /// Most bytes the records of one produced batch may decompress to while it is validated.
    pub validation_decompressed_bytes_max: u64,
    /// What a Kafka fetch does with a stored entry it cannot serve: `skip` or `fail`.
    pub unreadable_entry_policy: String,
    /// More Kafka listeners, comma-separated `PROTOCOL://host:port` (KoP's `kafkaListeners`
    /// after its first entry), each with its own security protocol; an empty host binds
    /// `server.bind`.
    pub additional_listeners: String,
    /// The addresses the additional listeners advertise, `PROTOCOL://host:port` matched by
    /// protocol (KoP's `kafkaAdvertisedListeners` after the primary's entry); a listener without
    /// one advertises the advertised host and its own port.
    pub additional_advertised_listeners: String,
}

/// One Kafka listener besides the primary one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaListener {
    pub protocol: String,
    /// Empty: `server.bind`.
    pub host: String,
    pub port: u16,
    /// From `additional_advertised_listeners`, when it has this protocol.
    pub advertised: Option<(String, u16)>,
}

impl KafkaSection {
    /// The additional listeners (validated at load).
    pub fn additional(&self) -> Result<Vec<KafkaListener>, ConfigError> {
        let advertised = parse_listeners(
            "kafka.additional_advertised_listeners",
            &self.additional_advertised_listeners,
        )?;
        Ok(
            parse_listeners("kafka.additional_listeners", &self.additional_listeners)?
                .into_iter()
                .map(|(protocol, host, port)| KafkaListener {
                    advertised: advertised
                        .iter()
                        .find(|(p, _, _)| *p == protocol)
                        .map(|(_, h, p)| (h.clone(), *p)),
                    protocol,
                    host,
                    port,
                })
                .collect(),
        )
    }

    /// Every listener's security protocol, the primary's first.
    pub fn protocols(&self) -> Vec<String> {
        let mut all = vec![self.security_protocol.clone()];
        if let Ok(more) = self.additional() {
            all.extend(more.into_iter().map(|l| l.protocol));
        }
        all
    }
}

impl Default for KafkaSection {
    fn default() -> Self {
        Self {
            port: 9092,
            advertised_host: String::new(),
            advertised_port: 0,
            tenant: "public".into(),
            namespace: "default".into(),
            allow_auto_topic_creation: true,
            auto_topic_creation_type: "partitioned".into(),
            default_num_partitions: 1,
            max_request_bytes: 100 * 1024 * 1024,
            connections_max: 10_000,
            connections_max_idle_ms: 600_000,
            request_read_timeout_ms: 30_000,
            max_inflight_requests_per_connection: 32,
            max_inflight_bytes_per_connection: 100 * 1024 * 1024,
            message_bytes_max: 1_048_588,
            entry_format: "kafka".into(),
            max_read_entries_num: 5,
            security_protocol: "PLAINTEXT".into(),
            additional_listeners: String::new(),
            additional_advertised_listeners: String::new(),
            conversion_cache_bytes: 64 * 1024 * 1024,
            validation_decompressed_bytes_max: 64 * 1024 * 1024,
            unreadable_entry_policy: "skip".into(),
        }
    }
}

impl Config {
    /// `[kafka]` ranges, names and listeners (one per security protocol, distinct ports).
    pub(super) fn validate_kafka(&self) -> Result<(), ConfigError> {
        one_of(
            "kafka.auto_topic_creation_type",
            &self.kafka.auto_topic_creation_type,
            &["partitioned", "non-partitioned"],
        )?;
        range(
            "kafka.default_num_partitions",
            self.kafka.default_num_partitions.into(),
            1,
            self.broker.partitions_max.into(),
        )?;
        range(
            "kafka.max_request_bytes",
            self.kafka.max_request_bytes,
            1024,
            1024 * 1024 * 1024,
        )?;
        range(
            "kafka.connections_max",
            self.kafka.connections_max.into(),
            1,
            1_000_000,
        )?;
        range(
            "kafka.connections_max_idle_ms",
            self.kafka.connections_max_idle_ms,
            1000,
            86_400_000,
        )?;
        range(
            "kafka.request_read_timeout_ms",
            self.kafka.request_read_timeout_ms,
            100,
            3_600_000,
        )?;
        range(
            "kafka.max_inflight_requests_per_connection",
            self.kafka.max_inflight_requests_per_connection.into(),
            1,
            10_000,
        )?;
        range(
            "kafka.max_inflight_bytes_per_connection",
            self.kafka.max_inflight_bytes_per_connection,
            1024,
            4 * 1024 * 1024 * 1024,
        )?;
        range(
            "kafka.message_bytes_max",
            self.kafka.message_bytes_max,
            1,
            self.storage.entry_bytes_max.into(),
        )?;
        one_of(
            "kafka.entry_format",
            &self.kafka.entry_format,
            &["kafka", "pulsar", "mixed_kafka"],
        )?;
        range(
            "kafka.conversion_cache_bytes",
            self.kafka.conversion_cache_bytes,
            0,
            1 << 40,
        )?;
        // At least the largest batch the broker takes, so an uncompressed batch always fits.
        range(
            "kafka.validation_decompressed_bytes_max",
            self.kafka.validation_decompressed_bytes_max,
            self.kafka.message_bytes_max,
            1 << 30,
        )?;
        one_of(
            "kafka.unreadable_entry_policy",
            &self.kafka.unreadable_entry_policy,
            &["skip", "fail"],
        )?;
        range(
            "kafka.max_read_entries_num",
            self.kafka.max_read_entries_num.into(),
            1,
            100_000,
        )?;
        magnetar_broker::NamespaceName::new(&self.kafka.tenant, &self.kafka.namespace)
            .map_err(|e| err(format!("kafka.tenant/kafka.namespace: {e}")))?;
        one_of(
            "kafka.security_protocol",
            &self.kafka.security_protocol,
            &["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"],
        )?;
        let additional = self.kafka.additional()?;
        let mut protocols = vec![self.kafka.security_protocol.as_str()];
        let mut ports = vec![self.kafka.port];
        for l in &additional {
            if protocols.contains(&l.protocol.as_str()) {
                return Err(err(format!(
                    "kafka listeners: two listeners with protocol {} (one listener per protocol)",
                    l.protocol
                )));
            }
            if l.port != 0 && ports.contains(&l.port) {
                return Err(err(format!(
                    "kafka listeners: port {} is used by two listeners",
                    l.port
                )));
            }
            protocols.push(&l.protocol);
            ports.push(l.port);
        }
        Ok(())
    }
}

/// Most Kafka listeners (one per security protocol).
const KAFKA_LISTENERS_MAX: usize = 4;

/// Comma-separated `PROTOCOL://host:port` listeners: (protocol, host, port) each.
pub(super) fn parse_listeners(
    key: &str,
    value: &str,
) -> Result<Vec<(String, String, u16)>, ConfigError> {
    let listeners: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if listeners.len() > KAFKA_LISTENERS_MAX {
        return Err(err(format!(
            "{key} = \"{value}\": at most {KAFKA_LISTENERS_MAX} listeners (one per protocol)"
        )));
    }
    listeners
        .iter()
        .map(|l| parse_listener(key, value, l))
        .collect()
}

/// One `PROTOCOL://host:port` listener of `value`: (protocol, host, port).
fn parse_listener(
    key: &str,
    value: &str,
    listener: &str,
) -> Result<(String, String, u16), ConfigError> {
    let (protocol, address) = match listener.split_once("://") {
        Some((p @ ("PLAINTEXT" | "SASL_PLAINTEXT" | "SSL" | "SASL_SSL"), address)) => {
            (p.to_string(), address)
        }
        _ => {
            return Err(err(format!(
                "{key} = \"{value}\": the listener must be PLAINTEXT://, SASL_PLAINTEXT://, SSL:// or SASL_SSL://"
            )))
        }
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(|| {
        err(format!(
            "{key} = \"{value}\": expected {protocol}://host:port"
        ))
    })?;
    let port = port
        .parse::<u16>()
        .map_err(|_| err(format!("{key} = \"{value}\": '{port}' is not a port")))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((protocol, host, port))
}
