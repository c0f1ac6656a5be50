//! The KoP/Pulsar key names Magnetar accepts (in a TOML file's top level or a properties file),
//! the key each one sets, and the conversions of the values whose form differs from their key's:
//! a rate that becomes an interval, and KoP's listener strings resolved into bind address, ports
//! and security protocols.

use toml::{Table, Value};

use super::kafka::parse_listeners;
use super::{err, set, ConfigError};

/// A KoP/Pulsar key name and where it lands. Documented in the README's alias table.
pub struct Alias {
    pub name: &'static str,
    pub section: &'static str,
    pub key: &'static str,
}

/// KoP and Pulsar keys accepted in a TOML file (top level) or a properties file.
pub const ALIASES: &[Alias] = &[
    // Pulsar's metadata store URL: `etcd:http://...` turns cluster mode on; `zk:...` is refused
    // with a message (ZooKeeper is not supported).
    Alias {
        name: "metadataStoreUrl",
        section: "cluster",
        key: "metadata_store",
    },
    // Pulsar's configuration store (tenants, namespaces): one etcd holds both here.
    Alias {
        name: "configurationMetadataStoreUrl",
        section: "cluster",
        key: "metadata_store",
    },
    Alias {
        name: "metadataStoreSessionTimeoutMillis",
        section: "cluster",
        key: "session_ttl_ms",
    },
    Alias {
        name: "defaultNumberOfNamespaceBundles",
        section: "cluster",
        key: "bundles_per_namespace",
    },
    Alias {
        name: "loadBalancerEnabled",
        section: "cluster",
        key: "load_balancer_enabled",
    },
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
        name: "advertisedListeners",
        section: "pulsar",
        key: "advertised_listeners",
    },
    Alias {
        name: "internalListenerName",
        section: "pulsar",
        key: "internal_listener_name",
    },
    // KoP's broker.conf key set the type for both protocols; it still does.
    Alias {
        name: "allowAutoTopicCreationType",
        section: "pulsar",
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
        name: "delayedDeliveryEnabled",
        section: "pulsar",
        key: "delayed_delivery_enabled",
    },
    Alias {
        name: "delayedDeliveryTickTimeMillis",
        section: "pulsar",
        key: "delayed_delivery_tick_ms",
    },
    Alias {
        name: "webServicePort",
        section: "http",
        key: "port",
    },
    Alias {
        name: "kopSchemaRegistryEnable",
        section: "schema_registry",
        key: "enabled",
    },
    Alias {
        name: "kopSchemaRegistryPort",
        section: "schema_registry",
        key: "port",
    },
    Alias {
        name: "schemaCompatibilityStrategy",
        section: "schema_registry",
        key: "compatibility",
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
        name: "kafkaTxnLogTopicNumPartitions",
        section: "transactions",
        key: "state_log_num_partitions",
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
    Alias {
        name: "basicAuthConf",
        section: "auth",
        key: "basic_auth_conf",
    },
    Alias {
        name: "anonymousUserRole",
        section: "auth",
        key: "anonymous_role",
    },
    // Pulsar's tiered-storage keys (`managedLedgerOffload*`): the driver and bucket together
    // become `storage.object_store` (see `apply_offload_keys`).
    Alias {
        name: "managedLedgerOffloadDriver",
        section: "storage",
        key: OFFLOAD_DRIVER,
    },
    Alias {
        name: "s3ManagedLedgerOffloadBucket",
        section: "storage",
        key: OFFLOAD_BUCKET,
    },
    Alias {
        name: "gcsManagedLedgerOffloadBucket",
        section: "storage",
        key: OFFLOAD_BUCKET,
    },
    Alias {
        name: "managedLedgerOffloadBucket",
        section: "storage",
        key: OFFLOAD_BUCKET,
    },
    Alias {
        name: "s3ManagedLedgerOffloadRegion",
        section: "storage",
        key: "object_store_region",
    },
    Alias {
        name: "gcsManagedLedgerOffloadRegion",
        section: "storage",
        key: "object_store_region",
    },
    Alias {
        name: "managedLedgerOffloadRegion",
        section: "storage",
        key: "object_store_region",
    },
    Alias {
        name: "s3ManagedLedgerOffloadServiceEndpoint",
        section: "storage",
        key: "object_store_endpoint",
    },
    Alias {
        name: "managedLedgerOffloadServiceEndpoint",
        section: "storage",
        key: "object_store_endpoint",
    },
    Alias {
        name: "managedLedgerOffloadThresholdInBytes",
        section: "storage",
        key: "local_retention_bytes",
    },
    Alias {
        name: "managedLedgerOffloadDeletionLagMs",
        section: "storage",
        key: "local_retention_ms",
    },
];
pub(super) fn alias(name: &str) -> Option<&'static Alias> {
    ALIASES.iter().find(|a| a.name == name)
}

/// Every key a KoP/Pulsar name sets (one, or several for a key that covered both protocols).
pub(super) fn aliases(name: &str) -> impl Iterator<Item = &'static Alias> + '_ {
    ALIASES.iter().filter(move |a| a.name == name)
}

/// Pulsar's `managedLedgerDefaultMarkDeleteRateLimit`: mark-delete writes per second per cursor
/// (default 1.0; 0 means no limit). Magnetar keeps the interval between writes instead.
pub(super) const MARK_DELETE_RATE_LIMIT: &str = "managedLedgerDefaultMarkDeleteRateLimit";

/// The value an alias sets, for the aliases whose unit differs from their key's: a rate becomes
/// an interval. Others pass unchanged.
pub(super) fn alias_value(name: &str, raw: &str) -> Result<String, String> {
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

/// Where Pulsar's `managedLedgerOffloadDriver` lands until [`apply_offload_keys`] resolves it.
pub(super) const OFFLOAD_DRIVER: &str = "offload_driver";
/// Where Pulsar's `*ManagedLedgerOffloadBucket` lands until [`apply_offload_keys`] resolves it.
pub(super) const OFFLOAD_BUCKET: &str = "offload_bucket";

/// Resolves Pulsar's offload driver and bucket into `storage.object_store` (`aws-s3`/`S3` ->
/// `s3://bucket`, `google-cloud-storage` -> `gs://bucket`, `azureblob` -> `az://container`).
/// An explicit `object_store` wins over them.
pub(super) fn apply_offload_keys(root: &mut Table) -> Result<(), ConfigError> {
    let Some(Value::Table(storage)) = root.get_mut("storage") else {
        return Ok(());
    };
    let driver = storage.remove(OFFLOAD_DRIVER);
    let bucket = storage.remove(OFFLOAD_BUCKET);
    let text = |v: Option<Value>| match v {
        Some(Value::String(s)) => s.trim().to_string(),
        _ => String::new(),
    };
    let (driver, bucket) = (text(driver), text(bucket));
    if driver.is_empty() {
        if !bucket.is_empty() {
            return Err(err(format!(
                "an offload bucket ('{bucket}') needs managedLedgerOffloadDriver (aws-s3, google-cloud-storage or azureblob)"
            )));
        }
        return Ok(());
    }
    let scheme = match driver.to_ascii_lowercase().as_str() {
        "aws-s3" | "s3" => "s3",
        "google-cloud-storage" => "gs",
        "azureblob" => "az",
        _ => {
            return Err(err(format!(
                "managedLedgerOffloadDriver = \"{driver}\" is not supported (aws-s3, S3, google-cloud-storage, azureblob; for a directory set storage.object_store = \"file:///path\")"
            )))
        }
    };
    if bucket.is_empty() {
        return Err(err(format!(
            "managedLedgerOffloadDriver = \"{driver}\" needs a bucket (s3ManagedLedgerOffloadBucket, gcsManagedLedgerOffloadBucket or managedLedgerOffloadBucket)"
        )));
    }
    let explicit = matches!(storage.get("object_store"), Some(Value::String(s)) if !s.is_empty());
    if !explicit {
        storage.insert(
            "object_store".into(),
            Value::String(format!("{scheme}://{bucket}")),
        );
    }
    Ok(())
}

/// Resolves KoP's `kafkaListeners` / `kafkaAdvertisedListeners` into bind address and ports.
pub(super) fn apply_listener_keys(root: &mut Table) -> Result<(), ConfigError> {
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
