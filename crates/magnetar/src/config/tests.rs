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
fn kop_auto_topic_creation_type_sets_both_protocols() {
    let c = load_str("broker.conf", "", &[]).unwrap().config;
    assert_eq!(
        (
            c.kafka.auto_topic_creation_type.as_str(),
            c.pulsar.auto_topic_creation_type.as_str()
        ),
        ("partitioned", "non-partitioned"),
        "each protocol's own default"
    );
    for (name, text) in [
        ("broker.conf", "allowAutoTopicCreationType=partitioned\n"),
        (
            "magnetar.toml",
            "version = 1\nallowAutoTopicCreationType = \"partitioned\"\n",
        ),
    ] {
        let c = load_str(name, text, &[]).unwrap().config;
        assert_eq!(c.kafka.auto_topic_creation_type, "partitioned", "{name}");
        assert_eq!(c.pulsar.auto_topic_creation_type, "partitioned", "{name}");
    }
    let bad = load_str(
        "magnetar.toml",
        "version = 1\n[pulsar]\nauto_topic_creation_type = \"sometimes\"\n",
        &[],
    );
    assert!(bad.is_err());
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
    assert_eq!(c.pulsar.auto_topic_creation_type, "non-partitioned");
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].contains("managedLedgerDefaultEnsembleSize"));
    assert!(loaded.warnings[0].contains("zookeeperServers"));
}

#[test]
fn kop_keys_in_toml_and_listener_errors() {
    let loaded = load_str(
        "m.toml",
        "version = 1\nkafkaListeners = \"PLAINTEXT://0.0.0.0:9999\"\ndefaultNumPartitions = 4\n",
        &[],
    )
    .unwrap();
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
                brokerDeduplicationEnabled=true\nbrokerDeduplicationMaxNumberOfProducers=9\n\
                delayedDeliveryEnabled=false\ndelayedDeliveryTickTimeMillis=250\n";
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
    assert!(!c.delayed_delivery_enabled);
    assert_eq!(c.delayed_delivery_tick_ms, 250);
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
fn pulsar_basic_provider_and_anonymous_role_keys() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("htpasswd");
    std::fs::write(&users, "alice:$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/\n").unwrap();
    let text = format!(
        "authenticationEnabled=true\n\
         authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderBasic\n\
         basicAuthConf={}\nanonymousUserRole=guest\nsaslAllowedMechanisms=SCRAM-SHA-256\n",
        users.display()
    );
    let c = load_str("broker.conf", &text, &[]).unwrap().config;
    assert!(c.auth.basic_enabled());
    assert_eq!(c.auth.anonymous_role, "guest");
    let auth = c.auth.auth_config();
    assert_eq!(auth.anonymous_role.as_deref(), Some("guest"));
    assert_eq!(
        auth.basic_auth_conf.as_deref(),
        Some(users.to_str().unwrap())
    );
    // A file with a DES crypt hash is refused at startup, naming the key and the user.
    std::fs::write(&users, "bob:abJnggxhB/yWI\n").unwrap();
    let e = load_str("broker.conf", &text, &[]).unwrap_err().to_string();
    assert!(e.contains("basicAuthConf") && e.contains("'bob'"), "{e}");
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
        (
            "authenticationEnabled=true\nauthenticationProviders=basic\nsaslAllowedMechanisms=SCRAM-SHA-256\n",
            "basicAuthConf",
        ),
        (
            "authenticationEnabled=true\nauthenticationProviders=basic\nsaslAllowedMechanisms=SCRAM-SHA-256\nbasicAuthConf=/does/not/exist\n",
            "basicAuthConf",
        ),
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

#[test]
fn pulsar_offload_keys_set_the_object_store() {
    let text = "managedLedgerOffloadDriver=aws-s3\ns3ManagedLedgerOffloadBucket=pulsar-topic-offload\n\
                s3ManagedLedgerOffloadRegion=eu-west-1\n\
                s3ManagedLedgerOffloadServiceEndpoint=http://127.0.0.1:9000\n\
                managedLedgerOffloadThresholdInBytes=1073741824\nmanagedLedgerOffloadDeletionLagMs=600000\n";
    let s = load_str("broker.conf", text, &[]).unwrap().config.storage;
    assert_eq!(s.object_store, "s3://pulsar-topic-offload");
    assert_eq!(s.object_store_region, "eu-west-1");
    assert_eq!(s.object_store_endpoint, "http://127.0.0.1:9000");
    assert_eq!(s.local_retention_bytes, 1 << 30);
    assert_eq!(s.local_retention_ms, 600_000);
    let gcs = "version = 1\nmanagedLedgerOffloadDriver = \"google-cloud-storage\"\n\
               gcsManagedLedgerOffloadBucket = \"b-1\"\n";
    let s = load_str("m.toml", gcs, &[]).unwrap().config.storage;
    assert_eq!(s.object_store, "gs://b-1");
    // An explicit object_store wins over the driver and bucket.
    let both =
        "version = 1\nmanagedLedgerOffloadDriver = \"S3\"\nmanagedLedgerOffloadBucket = \"x-1\"\n\
                [storage]\nobject_store = \"s3://other/p\"\n";
    let s = load_str("m.toml", both, &[]).unwrap().config.storage;
    assert_eq!(s.object_store, "s3://other/p");
    for (bad, says) in [
        ("managedLedgerOffloadDriver=aws-s3\n", "needs a bucket"),
        (
            "s3ManagedLedgerOffloadBucket=b-1\n",
            "needs managedLedgerOffloadDriver",
        ),
        (
            "managedLedgerOffloadDriver=aliyun-oss\nmanagedLedgerOffloadBucket=b-1\n",
            "not supported",
        ),
        (
            "managedLedgerOffloadDriver=aws-s3\nmanagedLedgerOffloadBucket=B_1\n",
            "bucket name",
        ),
    ] {
        let e = load_str("broker.conf", bad, &[]).unwrap_err();
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }
}
