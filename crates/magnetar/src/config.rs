//! Configuration: one TOML file (`version = 1`), then environment overrides
//! `MAGNETAR_<SECTION>__<KEY>`, then command-line flags. A Pulsar/KoP `broker.conf` or
//! `standalone.conf` properties file is accepted too: the keys Magnetar maps are applied and the
//! rest are listed in one warning line. Unknown keys and out-of-range values are errors that name
//! the key. Every default is in `config/magnetar.toml`, which a test compares with
//! [`Config::default`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub version: u32,
    pub server: ServerConfig,
    pub broker: BrokerSection,
    pub kafka: KafkaSection,
    pub pulsar: PulsarSection,
    pub http: HttpSection,
    pub storage: StorageSection,
    pub groups: GroupsSection,
    pub auth: AuthSection,
    pub tls: TlsSection,
}

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

/// Authentication (Pulsar's names are aliases). Lists are comma-separated strings so that the
/// environment and properties files can set them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    pub enabled: bool,
    pub providers: String,
    pub authorization_enabled: bool,
    pub superuser_roles: String,
    pub token_secret_key: String,
    pub token_public_key: String,
    pub token_auth_claim: String,
    pub sasl_allowed_mechanisms: String,
    pub failed_authentication_delay_ms: u64,
}

/// TLS (rustls): one certificate for every TLS listener. The Kafka listener uses it when
/// `kafka.security_protocol` is `SSL` or `SASL_SSL`; `enabled` adds the Pulsar TLS port and the
/// HTTPS port next to the plain ones. Paths are PEM files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// Pulsar's `tlsEnabled`; setting `brokerServicePortTls` or `webServicePortTls` in a file
    /// turns it on too, as in Pulsar.
    pub enabled: bool,
    /// Pulsar's `brokerServicePortTls` (0: a free port).
    pub pulsar_port: u16,
    /// Pulsar's `webServicePortTls` (0: a free port).
    pub https_port: u16,
    /// Pulsar's `tlsCertificateFilePath`: the certificate chain, leaf first.
    pub cert_chain_file: String,
    /// Pulsar's `tlsKeyFilePath`: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// Pulsar's `tlsTrustCertsFilePath`: CAs for client certificates (mTLS); empty: none asked.
    pub trust_certs_file: String,
    /// Pulsar's `tlsRequireTrustedClientCertOnConnect`: refuse clients without a trusted
    /// certificate. Needs `trust_certs_file`.
    pub require_client_cert: bool,
    /// Longest a TLS handshake may take after accept.
    pub handshake_timeout_ms: u64,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            enabled: false,
            pulsar_port: 6651,
            https_port: 8443,
            cert_chain_file: String::new(),
            key_file: String::new(),
            trust_certs_file: String::new(),
            require_client_cert: false,
            handshake_timeout_ms: 10_000,
        }
    }
}

impl TlsSection {
    /// Whether any listener needs the certificate.
    pub fn needed(&self, kafka_protocols: &[String]) -> bool {
        self.enabled
            || kafka_protocols
                .iter()
                .any(|p| matches!(p.as_str(), "SSL" | "SASL_SSL"))
    }

    /// Reads the PEM files into the server side every TLS listener shares.
    pub fn server(
        &self,
        alpn: &[&[u8]],
    ) -> Result<Arc<magnetar_auth::tls::TlsServer>, magnetar_auth::tls::TlsError> {
        let settings = magnetar_auth::tls::TlsSettings {
            cert_chain: PathBuf::from(&self.cert_chain_file),
            key: PathBuf::from(&self.key_file),
            trust_certs: (!self.trust_certs_file.is_empty())
                .then(|| PathBuf::from(&self.trust_certs_file)),
            require_client_cert: self.require_client_cert,
            handshake_timeout: std::time::Duration::from_millis(self.handshake_timeout_ms),
        };
        magnetar_auth::tls::TlsServer::load(&settings, alpn)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PulsarSection {
    pub port: u16,
    /// Pulsar's `maxMessageSize`: the largest SEND (one message or batch); announced to
    /// clients in CONNECTED. Frames may be 10 KiB larger (headers).
    pub message_bytes_max: u32,
    /// Pulsar's `keepAliveIntervalSeconds`: a PING after this much silence, a close after twice.
    pub keepalive_interval_s: u32,
    /// A connection that has not completed CONNECT (with authentication) this long after
    /// accept is closed.
    pub connect_timeout_ms: u64,
    pub connections_max: u32,
    pub producers_per_connection_max: u32,
    pub consumers_per_connection_max: u32,
    /// Encoded frames queued for one connection's socket.
    pub outbound_frames_max: u32,
    /// Pulsar's `maxPendingPublishRequestsPerConnection`: SENDs not yet durable per connection.
    pub pending_sends_max: u32,
    /// Pulsar's `maxUnackedMessagesPerConsumer`; `0` means unlimited, as in Pulsar.
    pub unacked_messages_per_consumer_max: u64,
    /// Send broker entry metadata to clients that announce support for it.
    pub broker_entry_metadata: bool,
    /// Pulsar's `brokerDeduplicationEnabled`.
    pub deduplication_enabled: bool,
    /// Pulsar's `brokerDeduplicationMaxNumberOfProducers`: names tracked per partition.
    pub deduplication_producers_max: u32,
    /// Kafka-format entries kept converted to Pulsar batches for Pulsar consumers, in bytes.
    pub conversion_cache_bytes: u64,
    /// A subscription's acknowledgements are written to its partition's cursor file at most
    /// once per this interval (`0`: on every acknowledgement); after a crash the last
    /// interval's acknowledgements are lost and those messages are delivered again.
    pub cursor_persist_interval_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    pub port: u16,
    /// `/metrics` exports per-partition series while at most this many partitions are open.
    pub metrics_partition_series_max: u32,
    /// A request's headers must be complete this long after their first byte.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight and no bytes of a next one is closed after this
    /// long.
    pub idle_timeout_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    pub fsync: String,
    pub fsync_interval_ms: u64,
    pub segment_bytes: u64,
    pub segment_ms: u64,
    pub index_interval_bytes: u32,
    pub entry_bytes_max: u32,
}

/// Kafka consumer-group coordinator settings (Kafka's broker configs of the same meaning).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsSection {
    /// `offsets.topic.num.partitions`: used only when `__consumer_offsets` is created.
    pub offsets_topic_num_partitions: u32,
    /// `offsets.retention.minutes`.
    pub offsets_retention_minutes: u64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: u32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: u32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: u32,
    /// `group.max.size`.
    pub max_size: u32,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: u32,
    /// Groups per `__consumer_offsets` partition (no Kafka equivalent).
    pub groups_per_partition_max: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: 1,
            server: ServerConfig::default(),
            broker: BrokerSection::default(),
            kafka: KafkaSection::default(),
            pulsar: PulsarSection::default(),
            http: HttpSection::default(),
            storage: StorageSection::default(),
            groups: GroupsSection::default(),
            auth: AuthSection::default(),
            tls: TlsSection::default(),
        }
    }
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

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            enabled: false,
            providers: "token".into(),
            authorization_enabled: false,
            superuser_roles: String::new(),
            token_secret_key: String::new(),
            token_public_key: String::new(),
            token_auth_claim: "sub".into(),
            sasl_allowed_mechanisms: "PLAIN,OAUTHBEARER,SCRAM-SHA-256,SCRAM-SHA-512".into(),
            failed_authentication_delay_ms: 300,
        }
    }
}

/// Splits a comma-separated list, dropping blanks.
pub fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl AuthSection {
    /// The settings magnetar-auth takes.
    pub fn auth_config(&self) -> magnetar_auth::AuthConfig {
        let key = |k: &str| (!k.is_empty()).then(|| k.to_string());
        magnetar_auth::AuthConfig {
            enabled: self.enabled,
            token_secret_key: key(&self.token_secret_key),
            token_public_key: key(&self.token_public_key),
            token_auth_claim: self.token_auth_claim.clone(),
            mechanisms: list(&self.sasl_allowed_mechanisms)
                .iter()
                .filter_map(|m| magnetar_auth::Mechanism::from_name(m))
                .collect(),
            superuser_roles: list(&self.superuser_roles),
        }
    }
}

impl Default for PulsarSection {
    fn default() -> Self {
        // The listener's own defaults, so the two cannot drift apart.
        let c = magnetar_pulsar::PulsarConfig::default();
        let u32_of = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Self {
            port: 6650,
            message_bytes_max: u32_of(c.message_size_max_bytes),
            keepalive_interval_s: u32::try_from(c.keepalive_interval_s).unwrap_or(u32::MAX),
            connect_timeout_ms: c.connect_timeout_ms,
            connections_max: u32_of(c.connections_max),
            producers_per_connection_max: u32_of(c.producers_per_connection_max),
            consumers_per_connection_max: u32_of(c.consumers_per_connection_max),
            outbound_frames_max: u32_of(c.outbound_frames_max),
            pending_sends_max: u32_of(c.pending_sends_max),
            unacked_messages_per_consumer_max: c.unacked_messages_per_consumer_max,
            broker_entry_metadata: c.broker_entry_metadata,
            deduplication_enabled: c.deduplication_enabled,
            deduplication_producers_max: u32_of(c.deduplication_producers_max),
            conversion_cache_bytes: c.conversion_cache_bytes as u64,
            cursor_persist_interval_ms: magnetar_broker::LedgerConfig::default()
                .cursor_persist_interval_ms,
        }
    }
}

impl PulsarSection {
    /// The Pulsar listener's limits. Call after [`Config::validate`].
    pub fn listener_config(&self) -> magnetar_pulsar::PulsarConfig {
        let message = self.message_bytes_max as usize;
        magnetar_pulsar::PulsarConfig {
            frame_size_max_bytes: message + magnetar_pulsar::frame::FRAME_PADDING_BYTES,
            message_size_max_bytes: message,
            connections_max: self.connections_max as usize,
            producers_per_connection_max: self.producers_per_connection_max as usize,
            consumers_per_connection_max: self.consumers_per_connection_max as usize,
            outbound_frames_max: self.outbound_frames_max as usize,
            pending_sends_max: self.pending_sends_max as usize,
            unacked_messages_per_consumer_max: match self.unacked_messages_per_consumer_max {
                0 => u64::MAX,
                n => n,
            },
            keepalive_interval_s: self.keepalive_interval_s.into(),
            connect_timeout_ms: self.connect_timeout_ms,
            broker_entry_metadata: self.broker_entry_metadata,
            deduplication_enabled: self.deduplication_enabled,
            deduplication_producers_max: self.deduplication_producers_max as usize,
            conversion_cache_bytes: usize::try_from(self.conversion_cache_bytes)
                .unwrap_or(usize::MAX),
            authenticator: None,
            broker_service_url_tls: String::new(),
            // Set by the binary, which owns the metrics registry.
            metrics: None,
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            port: 8080,
            metrics_partition_series_max: 1000,
            header_read_timeout_ms: 30_000,
            idle_timeout_ms: 120_000,
        }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            fsync: "always".into(),
            fsync_interval_ms: 1000,
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            entry_bytes_max: 16 * 1024 * 1024,
        }
    }
}

impl Default for GroupsSection {
    fn default() -> Self {
        // The coordinator's own defaults (Kafka's), so the two cannot drift apart.
        let c = magnetar_coordinator::CoordinatorConfig::default();
        Self {
            offsets_topic_num_partitions: c.offsets_topic_num_partitions,
            offsets_retention_minutes: (c.offsets_retention_ms / 60_000).unsigned_abs(),
            offsets_retention_check_interval_ms: c
                .offsets_retention_check_interval_ms
                .unsigned_abs(),
            min_session_timeout_ms: c.group_min_session_timeout_ms.unsigned_abs(),
            max_session_timeout_ms: c.group_max_session_timeout_ms.unsigned_abs(),
            initial_rebalance_delay_ms: c.group_initial_rebalance_delay_ms.unsigned_abs(),
            max_size: u32::try_from(c.group_max_size).unwrap_or(u32::MAX),
            offset_metadata_max_bytes: u32::try_from(c.offset_metadata_max_bytes)
                .unwrap_or(u32::MAX),
            groups_per_partition_max: u32::try_from(c.groups_per_partition_max).unwrap_or(u32::MAX),
        }
    }
}

impl GroupsSection {
    /// The coordinator's settings: these keys over the coordinator's defaults for the rest.
    /// Call after [`Config::validate`] (the ranges keep every value within the target type).
    pub fn coordinator_config(&self) -> magnetar_coordinator::CoordinatorConfig {
        let clamp_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        magnetar_coordinator::CoordinatorConfig {
            offsets_topic_num_partitions: self.offsets_topic_num_partitions,
            group_min_session_timeout_ms: clamp_i32(self.min_session_timeout_ms),
            group_max_session_timeout_ms: clamp_i32(self.max_session_timeout_ms),
            group_initial_rebalance_delay_ms: clamp_i32(self.initial_rebalance_delay_ms),
            group_max_size: self.max_size as usize,
            offset_metadata_max_bytes: self.offset_metadata_max_bytes as usize,
            offsets_retention_ms: i64::try_from(self.offsets_retention_minutes)
                .unwrap_or(i64::MAX / 60_000)
                .saturating_mul(60_000),
            offsets_retention_check_interval_ms: i64::try_from(
                self.offsets_retention_check_interval_ms,
            )
            .unwrap_or(i64::MAX),
            groups_per_partition_max: self.groups_per_partition_max as usize,
            ..Default::default()
        }
    }
}

/// A KoP/Pulsar key name and where it lands. Documented in the README's alias table.
pub struct Alias {
    pub name: &'static str,
    pub section: &'static str,
    pub key: &'static str,
}

/// KoP and Pulsar keys accepted in a TOML file (top level) or a properties file.
pub const ALIASES: &[Alias] = &[
    Alias {
        name: "kafkaListeners",
        section: "kafka",
        key: "listeners",
    },
    Alias {
        name: "kafkaAdvertisedListeners",
        section: "kafka",
        key: "advertised_listeners",
    },
    Alias {
        name: "kafkaTenant",
        section: "kafka",
        key: "tenant",
    },
    Alias {
        name: "kafkaNamespace",
        section: "kafka",
        key: "namespace",
    },
    Alias {
        name: "allowAutoTopicCreation",
        section: "kafka",
        key: "allow_auto_topic_creation",
    },
    Alias {
        name: "allowAutoTopicCreationType",
        section: "kafka",
        key: "auto_topic_creation_type",
    },
    Alias {
        name: "defaultNumPartitions",
        section: "kafka",
        key: "default_num_partitions",
    },
    Alias {
        name: "entryFormat",
        section: "kafka",
        key: "entry_format",
    },
    Alias {
        name: "maxReadEntriesNum",
        section: "kafka",
        key: "max_read_entries_num",
    },
    Alias {
        name: "brokerServicePort",
        section: "pulsar",
        key: "port",
    },
    Alias {
        name: "maxMessageSize",
        section: "pulsar",
        key: "message_bytes_max",
    },
    Alias {
        name: MARK_DELETE_RATE_LIMIT,
        section: "pulsar",
        key: "cursor_persist_interval_ms",
    },
    Alias {
        name: "keepAliveIntervalSeconds",
        section: "pulsar",
        key: "keepalive_interval_s",
    },
    Alias {
        name: "maxPendingPublishRequestsPerConnection",
        section: "pulsar",
        key: "pending_sends_max",
    },
    Alias {
        name: "maxUnackedMessagesPerConsumer",
        section: "pulsar",
        key: "unacked_messages_per_consumer_max",
    },
    Alias {
        name: "brokerDeduplicationEnabled",
        section: "pulsar",
        key: "deduplication_enabled",
    },
    Alias {
        name: "brokerDeduplicationMaxNumberOfProducers",
        section: "pulsar",
        key: "deduplication_producers_max",
    },
    Alias {
        name: "webServicePort",
        section: "http",
        key: "port",
    },
    Alias {
        name: "tlsEnabled",
        section: "tls",
        key: "enabled",
    },
    Alias {
        name: "brokerServicePortTls",
        section: "tls",
        key: "pulsar_port",
    },
    Alias {
        name: "webServicePortTls",
        section: "tls",
        key: "https_port",
    },
    Alias {
        name: "tlsCertificateFilePath",
        section: "tls",
        key: "cert_chain_file",
    },
    Alias {
        name: "tlsKeyFilePath",
        section: "tls",
        key: "key_file",
    },
    Alias {
        name: "tlsTrustCertsFilePath",
        section: "tls",
        key: "trust_certs_file",
    },
    Alias {
        name: "tlsRequireTrustedClientCertOnConnect",
        section: "tls",
        key: "require_client_cert",
    },
    Alias {
        name: "tlsHandshakeTimeoutMs",
        section: "tls",
        key: "handshake_timeout_ms",
    },
    Alias {
        name: "bindAddress",
        section: "server",
        key: "bind",
    },
    Alias {
        name: "advertisedAddress",
        section: "server",
        key: "advertised_host",
    },
    Alias {
        name: "clusterName",
        section: "broker",
        key: "cluster_name",
    },
    Alias {
        name: "offsetsTopicNumPartitions",
        section: "groups",
        key: "offsets_topic_num_partitions",
    },
    Alias {
        name: "offsetsRetentionMinutes",
        section: "groups",
        key: "offsets_retention_minutes",
    },
    Alias {
        name: "offsetsRetentionCheckIntervalMs",
        section: "groups",
        key: "offsets_retention_check_interval_ms",
    },
    Alias {
        name: "groupMinSessionTimeoutMs",
        section: "groups",
        key: "min_session_timeout_ms",
    },
    Alias {
        name: "groupMaxSessionTimeoutMs",
        section: "groups",
        key: "max_session_timeout_ms",
    },
    Alias {
        name: "groupInitialRebalanceDelayMs",
        section: "groups",
        key: "initial_rebalance_delay_ms",
    },
    Alias {
        name: "offsetMetadataMaxSize",
        section: "groups",
        key: "offset_metadata_max_bytes",
    },
    Alias {
        name: "authenticationEnabled",
        section: "auth",
        key: "enabled",
    },
    Alias {
        name: "authenticationProviders",
        section: "auth",
        key: "providers",
    },
    Alias {
        name: "authorizationEnabled",
        section: "auth",
        key: "authorization_enabled",
    },
    Alias {
        name: "superUserRoles",
        section: "auth",
        key: "superuser_roles",
    },
    Alias {
        name: "tokenSecretKey",
        section: "auth",
        key: "token_secret_key",
    },
    Alias {
        name: "tokenPublicKey",
        section: "auth",
        key: "token_public_key",
    },
    Alias {
        name: "tokenAuthClaim",
        section: "auth",
        key: "token_auth_claim",
    },
    Alias {
        name: "saslAllowedMechanisms",
        section: "auth",
        key: "sasl_allowed_mechanisms",
    },
    Alias {
        name: "failedAuthenticationDelayMs",
        section: "auth",
        key: "failed_authentication_delay_ms",
    },
];

/// Overrides from command-line flags (applied last).
#[derive(Clone, Debug, Default)]
pub struct FlagOverrides {
    pub data_dir: Option<PathBuf>,
    pub bind: Option<String>,
    pub kafka_port: Option<u16>,
    pub pulsar_port: Option<u16>,
    pub http_port: Option<u16>,
    pub advertised_host: Option<String>,
}

/// The loaded configuration and what a user should be told about it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn err(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

impl Config {
    /// Loads defaults <- file <- environment <- flags, then validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &FlagOverrides,
    ) -> Result<Loaded, ConfigError> {
        let defaults =
            Table::try_from(Config::default()).map_err(|e| err(format!("defaults: {e}")))?;
        let mut warnings = Vec::new();
        let mut root = match file {
            None => Table::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| err(format!("cannot read config file {}: {e}", path.display())))?;
                if path.extension().is_some_and(|e| e == "toml") {
                    parse_toml(path, &text, &defaults)?
                } else {
                    let (table, unused) = parse_properties(path, &text, &defaults)?;
                    if !unused.is_empty() {
                        warnings.push(format!(
                            "{}: {} keys are not used by magnetar: {}",
                            path.display(),
                            unused.len(),
                            unused.join(", ")
                        ));
                    }
                    table
                }
            }
        };
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix("MAGNETAR_") else {
                continue;
            };
            // Variables of the process itself, not config keys.
            if matches!(rest, "BIN" | "LOG") {
                continue;
            }
            let Some((section, key)) = rest.split_once("__") else {
                return Err(err(format!(
                    "environment variable {name} is not of the form MAGNETAR_<SECTION>__<KEY>"
                )));
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let value = typed_value(&defaults, &section, &key, &raw)
                .map_err(|reason| err(format!("{name}: {reason}")))?;
            set(&mut root, &section, &key, value);
        }
        let flag_values: [(&str, &str, Option<Value>); 6] = [
            (
                "server",
                "data_dir",
                flags
                    .data_dir
                    .as_ref()
                    .map(|p| Value::String(p.display().to_string())),
            ),
            ("server", "bind", flags.bind.clone().map(Value::String)),
            (
                "server",
                "advertised_host",
                flags.advertised_host.clone().map(Value::String),
            ),
            (
                "kafka",
                "port",
                flags.kafka_port.map(|p| Value::Integer(p.into())),
            ),
            (
                "pulsar",
                "port",
                flags.pulsar_port.map(|p| Value::Integer(p.into())),
            ),
            (
                "http",
                "port",
                flags.http_port.map(|p| Value::Integer(p.into())),
            ),
        ];
        for (section, key, value) in flag_values {
            if let Some(value) = value {
                set(&mut root, section, key, value);
            }
        }
        apply_listener_keys(&mut root)?;
        let config: Config = Value::Table(root)
            .try_into()
            .map_err(|e: toml::de::Error| err(format!("config: {}", e.message())))?;
        config.validate()?;
        Ok(Loaded { config, warnings })
    }

    /// Range checks: each error names the key and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
            if value < min || value > max {
                return Err(err(format!(
                    "{key} = {value} is outside the allowed range [{min}, {max}]"
                )));
            }
            Ok(())
        }
        fn one_of(key: &str, value: &str, allowed: &[&str]) -> Result<(), ConfigError> {
            if !allowed.contains(&value) {
                return Err(err(format!(
                    "{key} = \"{value}\" is not one of {}",
                    allowed.join(", ")
                )));
            }
            Ok(())
        }
        if self.version != 1 {
            return Err(err(format!(
                "version = {} is not supported; this magnetar reads version = 1",
                self.version
            )));
        }
        if self.server.bind.parse::<std::net::IpAddr>().is_err() {
            return Err(err(format!(
                "server.bind = \"{}\" is not an IP address",
                self.server.bind
            )));
        }
        if self.server.data_dir.as_os_str().is_empty() {
            return Err(err("server.data_dir is empty"));
        }
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
        self.validate_auth()?;
        self.validate_tls()?;
        one_of(
            "storage.fsync",
            &self.storage.fsync,
            &["always", "interval", "os"],
        )?;
        range(
            "storage.fsync_interval_ms",
            self.storage.fsync_interval_ms,
            1,
            3_600_000,
        )?;
        range(
            "storage.segment_bytes",
            self.storage.segment_bytes,
            64 * 1024,
            1 << 40,
        )?;
        range(
            "storage.segment_ms",
            self.storage.segment_ms,
            1000,
            365 * 24 * 3_600_000,
        )?;
        range(
            "storage.index_interval_bytes",
            self.storage.index_interval_bytes.into(),
            64,
            16 * 1024 * 1024,
        )?;
        range(
            "storage.entry_bytes_max",
            self.storage.entry_bytes_max.into(),
            1024,
            1024 * 1024 * 1024,
        )?;
        let p = &self.pulsar;
        range(
            "pulsar.message_bytes_max",
            p.message_bytes_max.into(),
            1024,
            self.storage.entry_bytes_max.into(),
        )?;
        range(
            "pulsar.keepalive_interval_s",
            p.keepalive_interval_s.into(),
            1,
            3600,
        )?;
        range(
            "pulsar.connect_timeout_ms",
            p.connect_timeout_ms,
            100,
            3_600_000,
        )?;
        range(
            "pulsar.connections_max",
            p.connections_max.into(),
            1,
            1_000_000,
        )?;
        range(
            "pulsar.producers_per_connection_max",
            p.producers_per_connection_max.into(),
            1,
            1_000_000,
        )?;
        range(
            "pulsar.consumers_per_connection_max",
            p.consumers_per_connection_max.into(),
            1,
            1_000_000,
        )?;
        range(
            "pulsar.outbound_frames_max",
            p.outbound_frames_max.into(),
            16,
            1_000_000,
        )?;
        range(
            "pulsar.pending_sends_max",
            p.pending_sends_max.into(),
            1,
            1_000_000,
        )?;
        range(
            "pulsar.unacked_messages_per_consumer_max",
            p.unacked_messages_per_consumer_max,
            0,
            1_000_000_000,
        )?;
        range(
            "pulsar.deduplication_producers_max",
            p.deduplication_producers_max.into(),
            1,
            1_000_000,
        )?;
        range(
            "pulsar.conversion_cache_bytes",
            p.conversion_cache_bytes,
            0,
            1 << 40,
        )?;
        range(
            "pulsar.cursor_persist_interval_ms",
            p.cursor_persist_interval_ms,
            0,
            3_600_000,
        )?;
        let g = &self.groups;
        range(
            "groups.offsets_topic_num_partitions",
            g.offsets_topic_num_partitions.into(),
            1,
            self.broker.partitions_max.min(1000).into(),
        )?;
        // Up to 100 years, so the value in ms stays far inside an i64.
        range(
            "groups.offsets_retention_minutes",
            g.offsets_retention_minutes,
            1,
            100 * 365 * 24 * 60,
        )?;
        range(
            "groups.offsets_retention_check_interval_ms",
            g.offsets_retention_check_interval_ms,
            1000,
            86_400_000,
        )?;
        range(
            "groups.min_session_timeout_ms",
            g.min_session_timeout_ms.into(),
            1,
            g.max_session_timeout_ms.into(),
        )?;
        range(
            "groups.max_session_timeout_ms",
            g.max_session_timeout_ms.into(),
            1,
            3_600_000,
        )?;
        range(
            "groups.initial_rebalance_delay_ms",
            g.initial_rebalance_delay_ms.into(),
            0,
            300_000,
        )?;
        range("groups.max_size", g.max_size.into(), 1, 1_000_000)?;
        range(
            "groups.offset_metadata_max_bytes",
            g.offset_metadata_max_bytes.into(),
            0,
            i16::MAX as u64,
        )?;
        range(
            "groups.groups_per_partition_max",
            g.groups_per_partition_max.into(),
            1,
            10_000_000,
        )?;
        range(
            "http.metrics_partition_series_max",
            self.http.metrics_partition_series_max.into(),
            0,
            1_000_000,
        )?;
        range(
            "http.header_read_timeout_ms",
            self.http.header_read_timeout_ms,
            100,
            3_600_000,
        )?;
        range(
            "http.idle_timeout_ms",
            self.http.idle_timeout_ms,
            100,
            86_400_000,
        )?;
        Ok(())
    }
}

impl Config {
    fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        for provider in list(&auth.providers) {
            // Pulsar names providers by class; the token provider is the one built.
            if provider != "token" && !provider.ends_with("AuthenticationProviderToken") {
                return Err(err(format!(
                    "auth.providers: '{provider}' is not supported; only token authentication (AuthenticationProviderToken) is built"
                )));
            }
        }
        if auth.authorization_enabled && !auth.enabled {
            return Err(err(
                "auth.authorization_enabled = true needs auth.enabled = true (authenticationEnabled): without authentication every client is anonymous and would be refused everything",
            ));
        }
        for mechanism in list(&auth.sasl_allowed_mechanisms) {
            if magnetar_auth::Mechanism::from_name(&mechanism).is_none() {
                return Err(err(format!(
                    "auth.sasl_allowed_mechanisms: '{mechanism}' is not one of PLAIN, OAUTHBEARER, SCRAM-SHA-256, SCRAM-SHA-512"
                )));
            }
        }
        if auth.token_auth_claim.is_empty() {
            return Err(err("auth.token_auth_claim is empty"));
        }
        if auth.failed_authentication_delay_ms > 60_000 {
            return Err(err(format!(
                "auth.failed_authentication_delay_ms = {} is outside the allowed range [0, 60000]",
                auth.failed_authentication_delay_ms
            )));
        }
        if let Some(sasl) = self
            .kafka
            .protocols()
            .into_iter()
            .find(|p| matches!(p.as_str(), "SASL_PLAINTEXT" | "SASL_SSL"))
        {
            if !auth.enabled {
                return Err(err(format!(
                    "a {sasl} Kafka listener needs auth.enabled = true (authenticationEnabled)"
                )));
            }
        }
        if !auth.enabled {
            return Ok(());
        }
        let config = auth.auth_config();
        if config.mechanisms.is_empty() {
            return Err(err(
                "auth.enabled = true but auth.sasl_allowed_mechanisms is empty",
            ));
        }
        let needs_token = config.mechanisms.iter().any(|m| {
            matches!(
                m,
                magnetar_auth::Mechanism::Plain | magnetar_auth::Mechanism::OAuthBearer
            )
        });
        // Read and parse the key now, so a bad key stops startup with a config error.
        match (&config.token_secret_key, &config.token_public_key) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "auth.token_secret_key and auth.token_public_key are both set; set one",
                ))
            }
            (Some(url), None) => magnetar_auth::key::read_key(url)
                .and_then(|k| magnetar_auth::TokenValidator::from_secret_key(&k, "sub"))
                .map(|_| ())
                .map_err(|e| err(format!("auth.token_secret_key (tokenSecretKey): {e}")))?,
            (None, Some(url)) => magnetar_auth::key::read_key(url)
                .and_then(|k| magnetar_auth::TokenValidator::from_public_key(&k, "sub"))
                .map(|_| ())
                .map_err(|e| err(format!("auth.token_public_key (tokenPublicKey): {e}")))?,
            (None, None) if needs_token => {
                return Err(err(
                    "auth.enabled = true with PLAIN or OAUTHBEARER allowed needs auth.token_secret_key (tokenSecretKey) or auth.token_public_key (tokenPublicKey)",
                ))
            }
            (None, None) => {}
        }
        Ok(())
    }
}

fn set(root: &mut Table, section: &str, key: &str, value: Value) {
    let entry = root
        .entry(section.to_string())
        .or_insert_with(|| Value::Table(Table::new()));
    if !entry.is_table() {
        *entry = Value::Table(Table::new());
    }
    if let Value::Table(t) = entry {
        t.insert(key.to_string(), value);
    }
}

/// Converts a string to the type the default of `section.key` has; unknown keys are errors.
fn typed_value(defaults: &Table, section: &str, key: &str, raw: &str) -> Result<Value, String> {
    // The listener strings are KoP-only inputs, resolved in `apply_listener_keys`.
    if section == "kafka" && (key == "listeners" || key == "advertised_listeners") {
        return Ok(Value::String(raw.to_string()));
    }
    let Some(Value::Table(s)) = defaults.get(section) else {
        let sections: Vec<&String> = defaults
            .iter()
            .filter(|(_, v)| v.is_table())
            .map(|(k, _)| k)
            .collect();
        return Err(format!(
            "unknown config section '{section}' (sections: {sections:?})"
        ));
    };
    let Some(default) = s.get(key) else {
        let keys: Vec<&String> = s.keys().collect();
        return Err(format!(
            "unknown config key '{section}.{key}' (keys of [{section}]: {keys:?})"
        ));
    };
    let raw = raw.trim();
    match default {
        Value::Integer(_) => raw
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("{section}.{key} = \"{raw}\" is not an integer")),
        Value::Boolean(_) => raw
            .parse::<bool>()
            .map(Value::Boolean)
            .map_err(|_| format!("{section}.{key} = \"{raw}\" is not true or false")),
        _ => Ok(Value::String(raw.to_string())),
    }
}

fn alias(name: &str) -> Option<&'static Alias> {
    ALIASES.iter().find(|a| a.name == name)
}

/// Pulsar's `managedLedgerDefaultMarkDeleteRateLimit`: mark-delete writes per second per cursor
/// (default 1.0; 0 means no limit). Magnetar keeps the interval between writes instead.
const MARK_DELETE_RATE_LIMIT: &str = "managedLedgerDefaultMarkDeleteRateLimit";

/// The value an alias sets, for the aliases whose unit differs from their key's: a rate becomes
/// an interval. Others pass unchanged.
fn alias_value(name: &str, raw: &str) -> Result<String, String> {
    match name {
        MARK_DELETE_RATE_LIMIT => {
            let rate: f64 = raw
                .trim()
                .parse()
                .map_err(|_| format!("'{raw}' is not a number of writes per second"))?;
            if !rate.is_finite() || rate < 0.0 {
                return Err(format!("'{raw}' is not a rate >= 0"));
            }
            if rate == 0.0 {
                return Ok("0".to_string());
            }
            // At most one write per hour (the key's upper bound), at least one per millisecond.
            Ok(((1000.0 / rate).round().clamp(0.0, 3_600_000.0) as u64).to_string())
        }
        _ => Ok(raw.to_string()),
    }
}

fn parse_toml(path: &Path, text: &str, defaults: &Table) -> Result<Table, ConfigError> {
    let mut table: Table =
        toml::from_str(text).map_err(|e| err(format!("{}: {}", path.display(), e.message())))?;
    if !table.contains_key("version") {
        return Err(err(format!("{}: missing 'version = 1'", path.display())));
    }
    // KoP keys at the top level move to their section.
    let top: Vec<String> = table
        .keys()
        .filter(|k| alias(k).is_some())
        .cloned()
        .collect();
    for name in top {
        if let (Some(a), Some(value)) = (alias(&name), table.remove(&name)) {
            let value = match value {
                Value::String(s) => {
                    let s = alias_value(&name, &s).map_err(|r| err(format!("{name}: {r}")))?;
                    typed_value(defaults, a.section, a.key, &s)
                        .map_err(|r| err(format!("{name}: {r}")))?
                }
                Value::Integer(_) | Value::Float(_) if name == MARK_DELETE_RATE_LIMIT => {
                    let s = alias_value(&name, &value.to_string())
                        .map_err(|r| err(format!("{name}: {r}")))?;
                    typed_value(defaults, a.section, a.key, &s)
                        .map_err(|r| err(format!("{name}: {r}")))?
                }
                other => other,
            };
            set(&mut table, a.section, a.key, value);
        }
    }
    Ok(table)
}

/// Parses `key=value` lines; returns the mapped keys as a table and the names not used.
fn parse_properties(
    path: &Path,
    text: &str,
    defaults: &Table,
) -> Result<(Table, Vec<String>), ConfigError> {
    let mut table = Table::new();
    let mut unused = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((name, value)) = line.split_once(['=', ':']) else {
            return Err(err(format!(
                "{}:{}: expected key=value, got '{line}'",
                path.display(),
                number + 1
            )));
        };
        let (name, value) = (name.trim(), value.trim());
        match alias(name) {
            // Pulsar files carry many keys with empty values: they mean "unset".
            Some(_) if value.is_empty() => {}
            Some(a) => {
                let value = alias_value(name, value)
                    .map_err(|r| err(format!("{}:{}: {name}: {r}", path.display(), number + 1)))?;
                let typed = typed_value(defaults, a.section, a.key, &value)
                    .map_err(|r| err(format!("{}:{}: {name}: {r}", path.display(), number + 1)))?;
                set(&mut table, a.section, a.key, typed);
            }
            None => unused.push(name.to_string()),
        }
    }
    table.insert("version".into(), Value::Integer(1));
    Ok((table, unused))
}

impl Config {
    /// TLS: the files are read and checked now, so a bad certificate or key stops startup with
    /// a config error.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let tls = &self.tls;
        if tls.handshake_timeout_ms == 0 || tls.handshake_timeout_ms > 300_000 {
            return Err(err(format!(
                "tls.handshake_timeout_ms = {} is outside the allowed range [1, 300000]",
                tls.handshake_timeout_ms
            )));
        }
        if tls.require_client_cert && tls.trust_certs_file.is_empty() {
            return Err(err(
                "tls.require_client_cert = true (tlsRequireTrustedClientCertOnConnect) needs tls.trust_certs_file (tlsTrustCertsFilePath)",
            ));
        }
        let protocols = self.kafka.protocols();
        if !tls.needed(&protocols) {
            return Ok(());
        }
        let why = if tls.enabled {
            "tls.enabled = true".to_string()
        } else {
            let tls_protocol = protocols
                .iter()
                .find(|p| matches!(p.as_str(), "SSL" | "SASL_SSL"))
                .cloned()
                .unwrap_or_default();
            format!("a {tls_protocol} Kafka listener")
        };
        if tls.cert_chain_file.is_empty() || tls.key_file.is_empty() {
            return Err(err(format!(
                "{why} needs tls.cert_chain_file (tlsCertificateFilePath) and tls.key_file (tlsKeyFilePath)"
            )));
        }
        tls.server(&[])
            .map(|_| ())
            .map_err(|e| err(format!("tls: {e}")))
    }
}

/// Resolves KoP's `kafkaListeners` / `kafkaAdvertisedListeners` into bind address and ports.
fn apply_listener_keys(root: &mut Table) -> Result<(), ConfigError> {
    // Pulsar turns its TLS ports on by setting them; `tlsEnabled` is deprecated there.
    if let Some(Value::Table(tls)) = root.get_mut("tls") {
        if !tls.contains_key("enabled")
            && (tls.contains_key("pulsar_port") || tls.contains_key("https_port"))
        {
            tls.insert("enabled".into(), Value::Boolean(true));
        }
    }
    let Some(Value::Table(kafka)) = root.get_mut("kafka") else {
        return Ok(());
    };
    let listeners = kafka.remove("listeners");
    let advertised = kafka.remove("advertised_listeners");
    let mut bind = None;
    let mut primary = None;
    let join = |rest: &[(String, String, u16)]| {
        rest.iter()
            .map(|(p, h, port)| format!("{p}://{h}:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    if let Some(Value::String(s)) = listeners {
        let all = parse_listeners("kafkaListeners", &s)?;
        let Some(((protocol, host, port), rest)) = all.split_first() else {
            return Err(err(format!(
                "kafkaListeners = \"{s}\": give at least one listener"
            )));
        };
        kafka.insert("port".into(), Value::Integer((*port).into()));
        kafka.insert("security_protocol".into(), Value::String(protocol.clone()));
        kafka.insert("additional_listeners".into(), Value::String(join(rest)));
        if !host.is_empty() {
            bind = Some(host.clone());
        }
        primary = Some(protocol.clone());
    }
    if let Some(Value::String(s)) = advertised {
        let mut all = parse_listeners("kafkaAdvertisedListeners", &s)?;
        // The entry of the primary listener's protocol (else the first) is the primary's.
        let at = primary
            .as_ref()
            .and_then(|p| all.iter().position(|(q, _, _)| q == p))
            .unwrap_or(0);
        if at < all.len() {
            let (_, host, port) = all.remove(at);
            kafka.insert("advertised_port".into(), Value::Integer(port.into()));
            kafka.insert("advertised_host".into(), Value::String(host));
        }
        kafka.insert(
            "additional_advertised_listeners".into(),
            Value::String(join(&all)),
        );
    }
    if let Some(host) = bind {
        set(root, "server", "bind", Value::String(host));
    }
    Ok(())
}

/// Most Kafka listeners (one per security protocol).
const KAFKA_LISTENERS_MAX: usize = 4;

/// Comma-separated `PROTOCOL://host:port` listeners: (protocol, host, port) each.
fn parse_listeners(key: &str, value: &str) -> Result<Vec<(String, String, u16)>, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(name: &str, text: &str, env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(Some(&path), env, &FlagOverrides::default())
    }

    #[test]
    fn example_file_equals_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/magnetar.toml");
        let loaded = Config::load(Some(&path), [], &FlagOverrides::default()).unwrap();
        assert_eq!(loaded.config, Config::default());
        // And every key of the defaults appears in the example file, uncommented.
        let text = std::fs::read_to_string(&path).unwrap();
        let example: Table = toml::from_str(&text).unwrap();
        let defaults = Table::try_from(Config::default()).unwrap();
        for (section, keys) in defaults
            .iter()
            .filter_map(|(k, v)| v.as_table().map(|t| (k, t)))
        {
            for key in keys.keys() {
                assert!(
                    example.get(section).and_then(|s| s.get(key)).is_some(),
                    "config/magnetar.toml lacks {section}.{key}"
                );
            }
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load_str("m.toml", "version = 1\n[storage]\nfsyn = \"os\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("fsyn"), "{e}");
        let e = load_str("m.toml", "version = 1\n[storag]\n", &[]).unwrap_err();
        assert!(e.to_string().contains("storag"), "{e}");
    }

    #[test]
    fn out_of_range_names_key_and_range() {
        let e = load_str(
            "m.toml",
            "version = 1\n[storage]\nfsync_interval_ms = 0\n",
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("storage.fsync_interval_ms")
                && e.to_string().contains("[1, 3600000]"),
            "{e}"
        );
        let e = load_str(
            "m.toml",
            "version = 1\n[storage]\nfsync = \"sometimes\"\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("storage.fsync"), "{e}");
        let e = load_str("m.toml", "version = 2\n", &[]).unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
        let e = load_str("m.toml", "[kafka]\nport = 1\n", &[]).unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(
            &path,
            "version = 1\n[storage]\nfsync = \"interval\"\n[kafka]\nport = 1000\n",
        )
        .unwrap();
        let env = [
            ("MAGNETAR_STORAGE__FSYNC".to_string(), "os".to_string()),
            ("MAGNETAR_KAFKA__PORT".to_string(), "2000".to_string()),
            (
                "MAGNETAR_KAFKA__ALLOW_AUTO_TOPIC_CREATION".to_string(),
                "false".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let flags = FlagOverrides {
            kafka_port: Some(3000),
            ..Default::default()
        };
        let config = Config::load(Some(&path), env, &flags).unwrap().config;
        assert_eq!(config.storage.fsync, "os");
        assert_eq!(config.kafka.port, 3000);
        assert!(!config.kafka.allow_auto_topic_creation);
    }

    #[test]
    fn bad_env_is_an_error_naming_the_variable() {
        let e = load_str("m.toml", "version = 1\n", &[("MAGNETAR_KAFKA__PROT", "1")]).unwrap_err();
        assert!(
            e.to_string().contains("MAGNETAR_KAFKA__PROT") && e.to_string().contains("kafka.prot"),
            "{e}"
        );
        let e = load_str("m.toml", "version = 1\n", &[("MAGNETAR_KAFKA__PORT", "x")]).unwrap_err();
        assert!(e.to_string().contains("not an integer"), "{e}");
    }

    #[test]
    fn mark_delete_rate_limit_becomes_the_cursor_persist_interval() {
        assert_eq!(alias_value(MARK_DELETE_RATE_LIMIT, "1.0").unwrap(), "1000");
        assert_eq!(alias_value(MARK_DELETE_RATE_LIMIT, "4").unwrap(), "250");
        assert_eq!(alias_value(MARK_DELETE_RATE_LIMIT, "0").unwrap(), "0");
        assert_eq!(
            alias_value(MARK_DELETE_RATE_LIMIT, "0.0001").unwrap(),
            "3600000"
        );
        assert!(alias_value(MARK_DELETE_RATE_LIMIT, "-1").is_err());
        assert!(alias_value(MARK_DELETE_RATE_LIMIT, "fast").is_err());
        assert_eq!(alias_value("maxMessageSize", "5").unwrap(), "5");
        let loaded = load_str(
            "broker.conf",
            "managedLedgerDefaultMarkDeleteRateLimit=2.0\n",
            &[],
        )
        .unwrap();
        assert_eq!(loaded.config.pulsar.cursor_persist_interval_ms, 500);
        let loaded = load_str(
            "magnetar.toml",
            "version = 1\nmanagedLedgerDefaultMarkDeleteRateLimit = 0.5\n",
            &[],
        )
        .unwrap();
        assert_eq!(loaded.config.pulsar.cursor_persist_interval_ms, 2000);
    }

    #[test]
    fn kop_properties_file_maps_known_keys_and_lists_the_rest() {
        let text = "# pulsar standalone\nkafkaListeners=PLAINTEXT://127.0.0.1:19092\nwebServicePort=18080\n\
                    brokerServicePort=16650\nkafkaTenant=acme\nkafkaNamespace=kafka\nallowAutoTopicCreationType=non-partitioned\n\
                    managedLedgerDefaultEnsembleSize=1\nzookeeperServers=\nkafkaAdvertisedListeners=\n";
        let loaded = load_str("standalone.conf", text, &[]).unwrap();
        let c = &loaded.config;
        assert_eq!(
            (c.kafka.port, c.http.port, c.pulsar.port),
            (19092, 18080, 16650)
        );
        assert_eq!(c.server.bind, "127.0.0.1");
        assert_eq!(
            (c.kafka.tenant.as_str(), c.kafka.namespace.as_str()),
            ("acme", "kafka")
        );
        assert_eq!(c.kafka.auto_topic_creation_type, "non-partitioned");
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].contains("managedLedgerDefaultEnsembleSize"));
        assert!(loaded.warnings[0].contains("zookeeperServers"));
    }

    #[test]
    fn kop_keys_in_toml_and_listener_errors() {
        let loaded = load_str("m.toml", "version = 1\nkafkaListeners = \"PLAINTEXT://0.0.0.0:9999\"\ndefaultNumPartitions = 4\n", &[]).unwrap();
        assert_eq!(loaded.config.kafka.port, 9999);
        assert_eq!(loaded.config.server.bind, "0.0.0.0");
        assert_eq!(loaded.config.kafka.default_num_partitions, 4);
        let e = load_str("b.conf", "kafkaListeners=SASL_SSH://127.0.0.1:9092\n", &[]).unwrap_err();
        assert!(e.to_string().contains("SASL_SSL://"), "{e}");
        let e = load_str("b.conf", "kafkaListeners=SSL://127.0.0.1:9092\n", &[]).unwrap_err();
        assert!(e.to_string().contains("tlsCertificateFilePath"), "{e}");
        let e = load_str(
            "b.conf",
            "kafkaListeners=SSL://127.0.0.1:9092\ntlsCertificateFilePath=/nonexistent/c.pem\ntlsKeyFilePath=/nonexistent/k.pem\n",
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot read TLS certificate file /nonexistent/c.pem"),
            "{e}"
        );
        let e = load_str("b.conf", "brokerServicePortTls=6651\n", &[]).unwrap_err();
        assert!(e.to_string().starts_with("tls.enabled = true needs"), "{e}");
        let e = load_str("b.conf", "tlsRequireTrustedClientCertOnConnect=true\n", &[]).unwrap_err();
        assert!(e.to_string().contains("tlsTrustCertsFilePath"), "{e}");
        let e = load_str("b.conf", "webServicePort=http\n", &[]).unwrap_err();
        assert!(e.to_string().contains("webServicePort"), "{e}");
    }
    #[test]
    fn connection_lifecycle_limits_env_and_ranges() {
        let loaded = load_str(
            "m.toml",
            "version = 1\n[kafka]\nconnections_max_idle_ms = 5000\n[http]\nidle_timeout_ms = 700\n",
            &[
                ("MAGNETAR_KAFKA__REQUEST_READ_TIMEOUT_MS", "1500"),
                ("MAGNETAR_KAFKA__MAX_INFLIGHT_REQUESTS_PER_CONNECTION", "5"),
                ("MAGNETAR_KAFKA__MAX_INFLIGHT_BYTES_PER_CONNECTION", "65536"),
                ("MAGNETAR_PULSAR__CONNECT_TIMEOUT_MS", "2500"),
                ("MAGNETAR_HTTP__HEADER_READ_TIMEOUT_MS", "900"),
            ],
        )
        .unwrap();
        let c = &loaded.config;
        assert_eq!(c.kafka.connections_max_idle_ms, 5000);
        assert_eq!(c.kafka.request_read_timeout_ms, 1500);
        assert_eq!(c.kafka.max_inflight_requests_per_connection, 5);
        assert_eq!(c.kafka.max_inflight_bytes_per_connection, 65536);
        assert_eq!(c.pulsar.listener_config().connect_timeout_ms, 2500);
        assert_eq!(
            (c.http.header_read_timeout_ms, c.http.idle_timeout_ms),
            (900, 700)
        );
        // The Kafka defaults are the listener's own.
        let (section, listener) = (
            KafkaSection::default(),
            magnetar_kafka::KafkaConfig::default(),
        );
        assert_eq!(
            section.connections_max_idle_ms,
            listener.connections_max_idle_ms
        );
        assert_eq!(
            section.request_read_timeout_ms,
            listener.request_read_timeout_ms
        );
        assert_eq!(
            section.max_inflight_requests_per_connection as usize,
            listener.max_inflight_requests_per_connection
        );
        assert_eq!(
            section.max_inflight_bytes_per_connection as usize,
            listener.max_inflight_bytes_per_connection
        );
        for (text, key) in [
            (
                "[kafka]\nconnections_max_idle_ms = 0\n",
                "kafka.connections_max_idle_ms",
            ),
            (
                "[kafka]\nrequest_read_timeout_ms = 0\n",
                "kafka.request_read_timeout_ms",
            ),
            (
                "[kafka]\nmax_inflight_requests_per_connection = 0\n",
                "kafka.max_inflight_requests_per_connection",
            ),
            (
                "[kafka]\nmax_inflight_bytes_per_connection = 10\n",
                "kafka.max_inflight_bytes_per_connection",
            ),
            (
                "[pulsar]\nconnect_timeout_ms = 0\n",
                "pulsar.connect_timeout_ms",
            ),
            (
                "[http]\nheader_read_timeout_ms = 0\n",
                "http.header_read_timeout_ms",
            ),
            ("[http]\nidle_timeout_ms = 0\n", "http.idle_timeout_ms"),
        ] {
            let e = load_str("m.toml", &format!("version = 1\n{text}"), &[]).unwrap_err();
            assert!(e.to_string().starts_with(key), "{key}: {e}");
        }
    }

    #[test]
    fn pulsar_section_aliases_env_ranges_and_listener_mapping() {
        let text = "maxMessageSize=1048576\nkeepAliveIntervalSeconds=10\n\
                    maxPendingPublishRequestsPerConnection=50\nmaxUnackedMessagesPerConsumer=0\n\
                    brokerDeduplicationEnabled=true\nbrokerDeduplicationMaxNumberOfProducers=9\n";
        let loaded = load_str(
            "broker.conf",
            text,
            &[("MAGNETAR_PULSAR__OUTBOUND_FRAMES_MAX", "64")],
        )
        .unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let c = loaded.config.pulsar.listener_config();
        assert_eq!(c.message_size_max_bytes, 1_048_576);
        assert_eq!(c.frame_size_max_bytes, 1_048_576 + 10 * 1024);
        assert_eq!(c.keepalive_interval_s, 10);
        assert_eq!(c.pending_sends_max, 50);
        assert_eq!(
            c.unacked_messages_per_consumer_max,
            u64::MAX,
            "0 is unlimited"
        );
        assert!(c.deduplication_enabled);
        assert_eq!(c.deduplication_producers_max, 9);
        assert_eq!(c.outbound_frames_max, 64);
        // The defaults map back onto the listener's own defaults.
        let (d, l) = (
            PulsarSection::default().listener_config(),
            magnetar_pulsar::PulsarConfig::default(),
        );
        assert_eq!(
            format!("{d:?}"),
            format!("{l:?}"),
            "[pulsar] defaults drifted from PulsarConfig::default()"
        );
        for (text, key) in [
            (
                "[pulsar]\nmessage_bytes_max = 10\n",
                "pulsar.message_bytes_max",
            ),
            (
                "[pulsar]\nmessage_bytes_max = 1073741824\n",
                "pulsar.message_bytes_max",
            ),
            (
                "[pulsar]\nkeepalive_interval_s = 0\n",
                "pulsar.keepalive_interval_s",
            ),
            (
                "[pulsar]\npending_sends_max = 0\n",
                "pulsar.pending_sends_max",
            ),
            ("[pulsar]\nbogus = 1\n", "bogus"),
        ] {
            let e = load_str("m.toml", &format!("version = 1\n{text}"), &[]).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn groups_section_env_aliases_ranges_and_coordinator_mapping() {
        let loaded = load_str(
            "m.toml",
            "version = 1\ngroupMinSessionTimeoutMs = 1000\n[groups]\nmax_size = 7\n",
            &[("MAGNETAR_GROUPS__INITIAL_REBALANCE_DELAY_MS", "0")],
        )
        .unwrap();
        let g = &loaded.config.groups;
        assert_eq!(
            (
                g.min_session_timeout_ms,
                g.max_size,
                g.initial_rebalance_delay_ms
            ),
            (1000, 7, 0)
        );
        let text = "offsetsTopicNumPartitions=8\noffsetsRetentionMinutes=60\n\
                    offsetsRetentionCheckIntervalMs=5000\ngroupMaxSessionTimeoutMs=60000\n\
                    groupInitialRebalanceDelayMs=100\noffsetMetadataMaxSize=16\n";
        let loaded = load_str("broker.conf", text, &[]).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let c = loaded.config.groups.coordinator_config();
        assert_eq!(c.offsets_topic_num_partitions, 8);
        assert_eq!(c.offsets_retention_ms, 3_600_000);
        assert_eq!(c.offsets_retention_check_interval_ms, 5000);
        assert_eq!(c.group_max_session_timeout_ms, 60_000);
        assert_eq!(c.group_initial_rebalance_delay_ms, 100);
        assert_eq!(c.offset_metadata_max_bytes, 16);
        c.validate().unwrap();
        // The defaults map back onto the coordinator's own defaults.
        assert_eq!(
            GroupsSection::default().coordinator_config(),
            magnetar_coordinator::CoordinatorConfig::default()
        );
        for (text, key) in [
            ("[groups]\nmax_size = 0\n", "groups.max_size"),
            (
                "[groups]\nmin_session_timeout_ms = 7000\nmax_session_timeout_ms = 6000\n",
                "groups.min_session_timeout_ms",
            ),
            (
                "[groups]\noffsets_topic_num_partitions = 0\n",
                "groups.offsets_topic_num_partitions",
            ),
            (
                "[groups]\noffset_metadata_max_bytes = 40000\n",
                "groups.offset_metadata_max_bytes",
            ),
        ] {
            let e = load_str("m.toml", &format!("version = 1\n{text}"), &[]).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn pulsar_auth_keys_and_sasl_listener() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("secret.key");
        std::fs::write(&key, [7u8; 32]).unwrap();
        let text = format!(
            "kafkaListeners=SASL_PLAINTEXT://127.0.0.1:19092\nauthenticationEnabled=true\n\
             authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderToken\n\
             authorizationEnabled=false\nsuperUserRoles=admin,ops\ntokenSecretKey=file://{}\n\
             tokenAuthClaim=role\nsaslAllowedMechanisms=PLAIN,SCRAM-SHA-256\nfailedAuthenticationDelayMs=50\n",
            key.display()
        );
        let c = load_str("broker.conf", &text, &[]).unwrap().config;
        assert_eq!(c.kafka.security_protocol, "SASL_PLAINTEXT");
        assert!(c.auth.enabled);
        assert_eq!(list(&c.auth.superuser_roles), ["admin", "ops"]);
        assert_eq!(c.auth.token_auth_claim, "role");
        assert_eq!(c.auth.failed_authentication_delay_ms, 50);
        let auth = c.auth.auth_config();
        assert_eq!(auth.mechanisms.len(), 2);
        // The same through the environment.
        let c = load_str(
            "m.toml",
            "version = 1\n",
            &[
                ("MAGNETAR_AUTH__ENABLED", "true"),
                (
                    "MAGNETAR_AUTH__TOKEN_SECRET_KEY",
                    "data:;base64,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                ),
                ("MAGNETAR_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ],
        )
        .unwrap()
        .config;
        assert!(c.auth.enabled);
    }

    #[test]
    fn auth_misconfigurations_are_named() {
        let cases: &[(&str, &str)] = &[
            ("authenticationEnabled=true\n", "tokenSecretKey"),
            (
                "kafkaListeners=SASL_PLAINTEXT://127.0.0.1:9092\n",
                "auth.enabled",
            ),
            (
                "authenticationEnabled=true\ntokenSecretKey=file:///does/not/exist\n",
                "tokenSecretKey",
            ),
            (
                "authenticationEnabled=true\ntokenSecretKey=data:;base64,AAEC\n",
                "32",
            ),
            (
                "authenticationEnabled=true\ntokenPublicKey=data:;base64,AAEC\n",
                "tokenPublicKey",
            ),
            ("authorizationEnabled=true\n", "authorization"),
            ("saslAllowedMechanisms=GSSAPI\n", "GSSAPI"),
            ("authenticationProviders=org.example.Ldap\n", "Ldap"),
        ];
        for (text, needle) in cases {
            let e = load_str("broker.conf", text, &[]).unwrap_err();
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
        // Several Kafka listeners, KoP style: the first is the primary, the others additional;
        // the advertised entry of the primary's protocol is the primary's.
        let c = load_str(
            "broker.conf",
            "authenticationEnabled=true\ntokenSecretKey=data:;base64,QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=\n\
             kafkaListeners=PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9093\n\
             kafkaAdvertisedListeners=SASL_PLAINTEXT://kafka.example:19093,PLAINTEXT://kafka.example:19092\n",
            &[],
        )
        .unwrap()
        .config;
        assert_eq!(c.kafka.security_protocol, "PLAINTEXT");
        assert_eq!(
            (c.kafka.advertised_host.as_str(), c.kafka.advertised_port),
            ("kafka.example", 19092)
        );
        let more = c.kafka.additional().unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].protocol, "SASL_PLAINTEXT");
        assert_eq!(more[0].port, 9093);
        assert_eq!(
            more[0].advertised,
            Some(("kafka.example".to_string(), 19093))
        );
        for (text, needle) in [
            (
                "kafkaListeners=PLAINTEXT://127.0.0.1:9092,PLAINTEXT://127.0.0.1:9093\n",
                "two listeners",
            ),
            (
                "kafkaListeners=PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9092\n",
                "port 9092",
            ),
            (
                "kafkaListeners=PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9093\n",
                "auth.enabled",
            ),
            (
                "kafkaListeners=PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093\n",
                "tls.cert_chain_file",
            ),
        ] {
            let e = load_str("broker.conf", text, &[]).unwrap_err();
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
        // SCRAM alone needs no token key.
        let c = load_str(
            "broker.conf",
            "authenticationEnabled=true\nsaslAllowedMechanisms=SCRAM-SHA-512\n",
            &[],
        );
        assert!(c.is_ok(), "{c:?}");
    }
}
