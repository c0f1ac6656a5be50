//! `magnetar standalone`: every layer in one process, with embedded metadata (redb) and local
//! ledgers under the data directory.

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use magnetar_admin::Readiness;
use magnetar_auth::tls::TlsServer;
use magnetar_auth::Authenticator;
use magnetar_broker::{
    Broker, BrokerConfig, FsyncPolicy, LedgerConfig, NamespaceName, SystemClock,
};
use magnetar_coordinator::GroupCoordinator;
use magnetar_metadata::RedbStore;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, FlagOverrides, KafkaListener};
use crate::StandaloneArgs;

/// Stack of each runtime worker thread.
const WORKER_STACK_BYTES: usize = 8 * 1024 * 1024;

/// How long in-flight work may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Which command started the process.
pub(crate) enum Mode {
    /// `magnetar standalone`: cluster mode only if the config asks for it.
    Standalone,
    /// `magnetar broker`: cluster mode required, with this metadata store if given.
    Cluster { metadata_store: Option<String> },
}

pub(crate) fn main(args: StandaloneArgs, mode: Mode) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("MAGNETAR_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let flags = FlagOverrides {
        data_dir: args.data_dir,
        bind: args.bind,
        kafka_port: args.kafka_port,
        pulsar_port: args.pulsar_port,
        http_port: args.http_port,
        schema_registry_port: args.schema_registry_port,
        advertised_host: args.advertised_host,
        object_store: args.object_store,
        metadata_store: match &mode {
            Mode::Cluster { metadata_store } => metadata_store.clone(),
            Mode::Standalone => None,
        },
    };
    let loaded = match Config::load(args.config.as_deref(), std::env::vars(), &flags) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("magnetar: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if matches!(mode, Mode::Cluster { .. }) && !loaded.config.cluster.enabled() {
        eprintln!("magnetar: configuration error: `magnetar broker` needs a metadata store: --metadata-store etcd:http://host:2379 (or [cluster] metadata_store / metadataStoreUrl); for one process with embedded storage use `magnetar standalone`");
        return ExitCode::from(2);
    }
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Headroom for deep request futures (debug builds lay them out generously); only
        // reserved address space until touched.
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("magnetar: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(loaded.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("magnetar: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Locks the data directory so a second broker cannot open it.
fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    let path = dir.join("magnetar.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("data dir {} is not writable", dir.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(anyhow!(
            "data dir {} is in use by another magnetar process (lock {})",
            dir.display(),
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(anyhow!("cannot lock {}: {e}", path.display())),
    }
}

async fn bind(name: &str, host: &str, port: u16) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind((host, port))
        .await
        .with_context(|| format!("cannot listen for {name} on {host}:{port}"))?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

fn ledger_config(config: &Config) -> LedgerConfig {
    let fsync = match config.storage.fsync.as_str() {
        "always" => FsyncPolicy::Always,
        "interval" => FsyncPolicy::Interval {
            interval_ms: config.storage.fsync_interval_ms,
        },
        _ => FsyncPolicy::Os,
    };
    LedgerConfig {
        segment_bytes: config.storage.segment_bytes,
        segment_ms: config.storage.segment_ms,
        index_interval_bytes: config.storage.index_interval_bytes,
        entry_bytes_max: config.storage.entry_bytes_max,
        fsync,
        cursor_persist_interval_ms: config.pulsar.cursor_persist_interval_ms,
        recovery_checkpoint_bytes: config.storage.recovery_checkpoint_bytes,
    }
}

/// The four steps of a standalone node: bind every socket, wire the layers over them, serve
/// until a signal or a failed task, then shut down in order.
async fn run(config: Config) -> anyhow::Result<()> {
    let _lock = lock_data_dir(&config.server.data_dir)?;
    let bound = bind_listeners(&config).await?;
    let wired = wire(&config, &bound).await?;
    let mut serving = serve(&config, bound, &wired)?;
    let failure = serving.until_stop().await;
    shutdown(serving, wired, failure).await
}

/// Every socket of the node, bound before anything opens, so a busy port fails first.
struct Bound {
    kafka: (TcpListener, SocketAddr),
    /// The additional Kafka listeners, each with its entry of the config.
    kafka_additional: Vec<(KafkaListener, (TcpListener, SocketAddr))>,
    pulsar: (TcpListener, SocketAddr),
    http: (TcpListener, SocketAddr),
    /// The certificate every TLS listener shares, when a listener needs it.
    tls: Option<Arc<TlsServer>>,
    /// Pulsar's TLS port and the HTTPS port, with `tls.enabled`.
    pulsar_tls: Option<(TcpListener, SocketAddr)>,
    https: Option<(TcpListener, SocketAddr)>,
    /// The Confluent Schema Registry API, with `schema_registry.enabled`.
    schema_registry: Option<(TcpListener, SocketAddr)>,
}

/// Binds the listeners (and reads the TLS files, which decide the TLS ports).
async fn bind_listeners(config: &Config) -> anyhow::Result<Bound> {
    let bind_host = config.server.bind.as_str();
    let kafka = bind("kafka", bind_host, config.kafka.port).await?;
    let pulsar = bind("pulsar", bind_host, config.pulsar.port).await?;
    let http = bind("http", bind_host, config.http.port).await?;
    // Validated at load; read again here (a file could have changed since).
    let additional = config.kafka.additional()?;
    let mut kafka_additional = Vec::with_capacity(additional.len());
    for l in additional {
        let host = if l.host.is_empty() {
            bind_host
        } else {
            l.host.as_str()
        };
        let bound = bind("kafka", host, l.port).await?;
        kafka_additional.push((l, bound));
    }
    let tls = if config.tls.needed(&config.kafka.protocols()) {
        Some(config.tls.server(&[]).context("TLS")?)
    } else {
        None
    };
    let (pulsar_tls, https) = match (&tls, config.tls.enabled) {
        (Some(_), true) => (
            Some(bind("pulsar TLS", bind_host, config.tls.pulsar_port).await?),
            Some(bind("https", bind_host, config.tls.https_port).await?),
        ),
        _ => (None, None),
    };
    let schema_registry = match config.schema_registry.enabled {
        true => Some(bind("schema registry", bind_host, config.schema_registry.port).await?),
        false => None,
    };
    Ok(Bound {
        schema_registry,
        kafka,
        kafka_additional,
        pulsar,
        http,
        tls,
        pulsar_tls,
        https,
    })
}

/// The layers of the node, opened and connected, ready for the front ends.
struct Wired {
    broker: Arc<Broker>,
    /// Tiered storage, when `storage.object_store` is set (standalone).
    tiered: Option<Tiered>,
    /// Cluster mode: this broker's membership.
    cluster: Option<Arc<magnetar_broker::cluster::ClusterMember>>,
    coordinator: Arc<GroupCoordinator>,
    authenticator: Option<Arc<Authenticator>>,
    /// The primary Kafka listener's settings; the additional listeners start from it.
    kafka_config: magnetar_kafka::KafkaConfig,
    pulsar_config: magnetar_pulsar::PulsarConfig,
    /// What the HTTP and HTTPS ports serve (with the readiness flag `serve` sets).
    admin: magnetar_admin::AdminServices,
    http_limits: magnetar_admin::HttpLimits,
    /// The schema registry the Pulsar front end, the admin API and the registry API share.
    schemas: Arc<magnetar_schema::SchemaStore>,
}

/// Opens the broker over local segments, or over tiered ones with the offloader running when
/// `storage.object_store` is set.
async fn open_broker(
    config: &Config,
    broker_config: BrokerConfig,
    metadata: RedbStore,
) -> anyhow::Result<(Arc<Broker>, Option<Tiered>)> {
    if config.storage.object_store.is_empty() {
        let broker = Broker::open(broker_config, Arc::new(metadata), Arc::new(SystemClock))
            .await
            .context("cannot open the broker")?;
        return Ok((broker, None));
    }
    let remote = magnetar::remote_store::open_configured(config)?;
    let bound = |v: i64| u64::try_from(v).ok();
    let settings = magnetar_broker::tiering::TieringSettings {
        data_dir: config.server.data_dir.clone(),
        root: "ledgers".into(),
        read: magnetar_storage::tiered::TieringConfig {
            block_bytes: config.storage.tier_block_bytes,
            readahead_blocks: 3,
            cache_bytes: config.storage.tier_cache_bytes,
        },
        local_retention_bytes: bound(config.storage.local_retention_bytes),
        local_retention_ms: bound(config.storage.local_retention_ms),
    };
    let tiering = magnetar_broker::tiering::Tiering::new(
        settings,
        remote,
        Arc::new(SystemClock),
        tokio::runtime::Handle::current(),
    )
    .context("cannot set up tiered storage")?;
    let broker = Broker::open_with_segment_stores(
        broker_config,
        Arc::new(metadata),
        Arc::new(SystemClock),
        tiering.factory(),
    )
    .await
    .context("cannot open the broker")?;
    broker.set_ledger_cleanup(Some(tiering.ledger_cleanup()));
    let offloader =
        tiering.spawn_offloader(Duration::from_millis(config.storage.offload_interval_ms));
    tracing::info!(object_store = %config.storage.object_store, "tiered storage on: sealed segments beyond the local retention are offloaded");
    Ok((broker, Some(Tiered { tiering, offloader })))
}

/// Tiered storage when it is on: its counters (metrics) and the offload task (stopped at
/// shutdown).
struct Tiered {
    tiering: Arc<magnetar_broker::tiering::Tiering>,
    offloader: tokio::task::JoinHandle<()>,
}

/// Opens the metadata store and the broker, then builds authentication, metrics, the front
/// ends' settings and the group coordinator over them.
async fn wire(config: &Config, bound: &Bound) -> anyhow::Result<Wired> {
    let kafka_addr = bound.kafka.1;
    let pulsar_tls_addr = bound.pulsar_tls.as_ref().map(|(_, addr)| *addr);
    let advertised_host = match (
        &config.kafka.advertised_host,
        &config.server.advertised_host,
    ) {
        (k, _) if !k.is_empty() => k.clone(),
        (_, s) if !s.is_empty() => s.clone(),
        _ if kafka_addr.ip().is_unspecified() => {
            tracing::warn!("binding to {} with no advertised host: advertising 'localhost'; set --advertised-host", kafka_addr.ip());
            "localhost".to_string()
        }
        _ => kafka_addr.ip().to_string(),
    };
    let advertised_port = match config.kafka.advertised_port {
        0 => kafka_addr.port(),
        port => port,
    };

    // The TLS URLs Pulsar's HTTP lookup hands out beside the plain ones.
    let lookup_urls = magnetar_admin::LookupUrls {
        broker_service_url_tls: pulsar_tls_addr
            .map(|addr| format!("pulsar+ssl://{advertised_host}:{}", addr.port())),
        web_service_url_tls: bound
            .https
            .as_ref()
            .map(|(_, addr)| format!("https://{advertised_host}:{}", addr.port())),
    };
    let broker_config = BrokerConfig {
        cluster_name: config.broker.cluster_name.clone(),
        data_dir: config.server.data_dir.clone(),
        default_namespace: NamespaceName::new(&config.kafka.tenant, &config.kafka.namespace)?,
        allow_auto_topic_creation: config.kafka.allow_auto_topic_creation,
        auto_topic_creation_partitioned: config.kafka.auto_topic_creation_type == "partitioned",
        pulsar_auto_topic_creation_partitioned: config.pulsar.auto_topic_creation_type
            == "partitioned",
        default_num_partitions: config.kafka.default_num_partitions,
        partitions_max: config.broker.partitions_max,
        producers_per_partition_max: config.broker.producers_per_partition_max as usize,
        ledger: ledger_config(config),
        service_url: format!("http://{advertised_host}:{}", bound.http.1.port()),
        broker_service_url: format!("pulsar://{advertised_host}:{}", bound.pulsar.1.port()),
        superuser_roles: crate::config::list(&config.auth.superuser_roles),
        authorization_enabled: config.auth.authorization_enabled,
    };
    let (broker, tiering, cluster) = if config.cluster.enabled() {
        let mut kafka = std::collections::BTreeMap::new();
        kafka.insert(
            config.kafka.security_protocol.clone(),
            format!("{advertised_host}:{advertised_port}"),
        );
        for (l, (_, addr)) in &bound.kafka_additional {
            let (host, port) = l
                .advertised
                .clone()
                .unwrap_or_else(|| (advertised_host.clone(), addr.port()));
            kafka.insert(l.protocol.clone(), format!("{host}:{port}"));
        }
        let advertised = crate::cluster_mode::Advertised {
            kafka,
            pulsar: broker_config.broker_service_url.clone(),
            http: broker_config.service_url.clone(),
            pulsar_tls: lookup_urls.broker_service_url_tls.clone(),
            http_tls: lookup_urls.web_service_url_tls.clone(),
            kafka_primary: (advertised_host.clone(), advertised_port),
        };
        let (broker, member) = crate::cluster_mode::open(config, broker_config, advertised).await?;
        (broker, None, Some(member))
    } else {
        let metadata_path = config.server.data_dir.join("metadata.redb");
        let metadata = RedbStore::open(&metadata_path)
            .await
            .context("cannot open the metadata store")?;
        let (broker, tiering) = open_broker(config, broker_config, metadata).await?;
        (broker, tiering, None)
    };
    // Log compaction: local ledgers (tiered ones included) and, in cluster mode, the shared
    // ledgers of the partitions this broker owns.
    if config.cleaner.enabled {
        broker.set_compaction(
            Arc::new(magnetar_format::compaction::EntryCompaction),
            magnetar_broker::compaction::CleanerLimits {
                dedupe_buffer_bytes: config.cleaner.dedupe_buffer_bytes,
                io_bytes_per_second: (config.cleaner.io_max_bytes_per_second > 0)
                    .then_some(config.cleaner.io_max_bytes_per_second),
                ..magnetar_broker::compaction::CleanerLimits::default()
            },
        );
    }

    let authenticator = if config.auth.enabled {
        Some(Arc::new(
            Authenticator::new(&config.auth.auth_config(), broker.clone())
                .context("cannot set up authentication")?,
        ))
    } else {
        None
    };
    if authenticator.is_some() && !config.kafka.protocols().iter().any(|p| is_sasl(p)) {
        tracing::warn!(protocol = %config.kafka.security_protocol, "authentication is enabled but the Kafka listener has no SASL: Kafka clients are not authenticated by token or SCRAM (use kafkaListeners=SASL_PLAINTEXT://... or SASL_SSL://...)");
    }
    let metrics = magnetar_metrics::Metrics::new(
        broker.clone(),
        magnetar_metrics::MetricsSettings {
            partition_series_max: config.http.metrics_partition_series_max as usize,
        },
    );
    metrics.set_tiering(tiering.as_ref().map(|t| t.tiering.clone()));
    let pulsar_config = magnetar_pulsar::PulsarConfig {
        authenticator: authenticator.clone(),
        broker_service_url_tls: pulsar_tls_addr
            .map(|addr| format!("pulsar+ssl://{}:{}", advertised_host, addr.port()))
            .unwrap_or_default(),
        metrics: Some(metrics.clone()),
        ..config.pulsar.listener_config()
    };
    let mut kafka_config = kafka_config(
        config,
        advertised_host,
        advertised_port,
        authenticator.clone(),
        bound.tls.clone(),
        metrics.clone(),
    );
    // Kafka's `listeners` / `advertised.listeners`, as DescribeConfigs shows them.
    let protocol = &config.kafka.security_protocol;
    let mut listeners = vec![format!("{protocol}://{kafka_addr}")];
    let mut advertised = vec![format!(
        "{protocol}://{}:{}",
        kafka_config.advertised_host, kafka_config.advertised_port
    )];
    for (l, (_, addr)) in &bound.kafka_additional {
        listeners.push(format!("{}://{addr}", l.protocol));
        let (host, port) = l
            .advertised
            .clone()
            .unwrap_or_else(|| (kafka_config.advertised_host.clone(), addr.port()));
        advertised.push(format!("{}://{host}:{port}", l.protocol));
    }
    if let Some(member) = &cluster {
        kafka_config.node_id = i32::from(member.node_id());
    }
    kafka_config.listeners = listeners.join(",");
    kafka_config.advertised_listeners = advertised.join(",");
    // Started here, not inside the Kafka front end, so the admin API shares it (groups, lag).
    let coordinator =
        GroupCoordinator::start(broker.clone(), kafka_config.group_coordinator.clone())
            .await
            .context("cannot start the group coordinator")?;
    let schemas = Arc::new(magnetar_schema::SchemaStore::new(
        broker.clone(),
        config.schema_registry.store_config(),
    ));
    metrics.set_schema_store(Some(schemas.clone()));
    // Pulsar records with a schema version reach Kafka consumers framed for Confluent's
    // deserializers (README, schema registry interop).
    broker.set_schema_framing(Some(schemas.framing()));
    let pulsar_config = magnetar_pulsar::PulsarConfig {
        schemas: Some(schemas.clone()),
        ..pulsar_config
    };
    let admin = magnetar_admin::AdminServices {
        schemas: Some(schemas.clone()),
        broker: broker.clone(),
        readiness: Readiness::default(),
        coordinator: Some(coordinator.clone()),
        metrics: Some(metrics),
        authenticator: authenticator.clone(),
        lookup: lookup_urls,
    };
    let http_limits = magnetar_admin::HttpLimits {
        header_read_timeout_ms: config.http.header_read_timeout_ms,
        idle_timeout_ms: config.http.idle_timeout_ms,
    };
    Ok(Wired {
        broker,
        tiered: tiering,
        cluster,
        coordinator,
        authenticator,
        kafka_config,
        pulsar_config,
        admin,
        http_limits,
        schemas,
    })
}

fn is_sasl(protocol: &str) -> bool {
    matches!(protocol, "SASL_PLAINTEXT" | "SASL_SSL")
}

fn is_tls(protocol: &str) -> bool {
    matches!(protocol, "SSL" | "SASL_SSL")
}

/// The primary Kafka listener's settings.
fn kafka_config(
    config: &Config,
    advertised_host: String,
    advertised_port: u16,
    authenticator: Option<Arc<Authenticator>>,
    tls: Option<Arc<TlsServer>>,
    metrics: Arc<magnetar_metrics::Metrics>,
) -> magnetar_kafka::KafkaConfig {
    let kafka_sasl = is_sasl(&config.kafka.security_protocol);
    let kafka_tls = is_tls(&config.kafka.security_protocol);
    magnetar_kafka::KafkaConfig {
        advertised_host,
        advertised_port,
        node_id: 0,
        cluster_id: format!("magnetar-{}", config.broker.cluster_name),
        max_request_bytes: config.kafka.max_request_bytes as usize,
        connections_max: config.kafka.connections_max as usize,
        connections_max_idle_ms: config.kafka.connections_max_idle_ms,
        request_read_timeout_ms: config.kafka.request_read_timeout_ms,
        max_inflight_requests_per_connection: config.kafka.max_inflight_requests_per_connection
            as usize,
        max_inflight_bytes_per_connection: usize::try_from(
            config.kafka.max_inflight_bytes_per_connection,
        )
        .unwrap_or(usize::MAX),
        message_bytes_max: config.kafka.message_bytes_max as usize,
        group_coordinator: config
            .transactions
            .apply(config.groups.coordinator_config()),
        authentication_enabled: authenticator.is_some(),
        authenticator: authenticator.filter(|_| kafka_sasl),
        tls: tls.filter(|_| kafka_tls),
        failed_authentication_delay_ms: config.auth.failed_authentication_delay_ms,
        metrics: Some(metrics),
        // Validated at load: one of the three names.
        entry_format: magnetar_kafka::EntryFormat::parse(&config.kafka.entry_format)
            .unwrap_or_default(),
        conversion_cache_bytes: usize::try_from(config.kafka.conversion_cache_bytes)
            .unwrap_or(usize::MAX),
        // Validated at load: at most 1 GiB.
        validation_decompressed_bytes_max: usize::try_from(
            config.kafka.validation_decompressed_bytes_max,
        )
        .unwrap_or(usize::MAX),
        listeners: String::new(),
        advertised_listeners: String::new(),
        listener_name: config.kafka.security_protocol.clone(),
        // Validated at load: "skip" or "fail".
        unreadable_entry_policy: magnetar_kafka::UnreadableEntryPolicy::parse(
            &config.kafka.unreadable_entry_policy,
        )
        .unwrap_or_default(),
    }
}

/// The name of a task and how it ended.
type TaskResult = (&'static str, std::io::Result<()>);

/// The running node: its tasks and how to stop them.
struct Serving {
    tasks: JoinSet<TaskResult>,
    shutdown: CancellationToken,
    readiness: Readiness,
    signals: ShutdownSignals,
}

/// Starts every front end and the retention schedule on their sockets, then prints the
/// listening line and reports ready.
fn serve(config: &Config, bound: Bound, wired: &Wired) -> anyhow::Result<Serving> {
    let shutdown = CancellationToken::new();
    let readiness = wired.admin.readiness.clone();
    let mut tasks = JoinSet::new();
    let kafka_addr = bound.kafka.1;
    let pulsar_addr = bound.pulsar.1;
    let http_addr = bound.http.1;
    let pulsar_tls_addr = bound.pulsar_tls.as_ref().map(|(_, addr)| *addr);
    let https_addr = bound.https.as_ref().map(|(_, addr)| *addr);
    let registry_addr = bound.schema_registry.as_ref().map(|(_, addr)| *addr);
    if let Some((listener, _)) = bound.schema_registry {
        let services = magnetar_admin::RegistryServices {
            schemas: wired.schemas.clone(),
            authenticator: wired.authenticator.clone(),
            authorization: config.auth.authorization_enabled,
        };
        let metrics = wired.admin.metrics.clone();
        let (limits, shutdown) = (wired.http_limits, shutdown.clone());
        tasks.spawn(async move {
            (
                "schema registry",
                magnetar_admin::serve_registry(listener, services, limits, metrics, shutdown).await,
            )
        });
    }
    let kafka_listeners = spawn_kafka(
        config,
        bound.kafka,
        bound.kafka_additional,
        wired,
        bound.tls.clone(),
        &shutdown,
        &mut tasks,
    );
    tasks.spawn({
        let (broker, shutdown) = (wired.broker.clone(), shutdown.clone());
        let pulsar_config = wired.pulsar_config.clone();
        let mut listeners = vec![(bound.pulsar.0, None)];
        if let (Some((listener, _)), Some(tls)) = (bound.pulsar_tls, bound.tls.clone()) {
            listeners.push((listener, Some(tls)));
        }
        async move {
            (
                "pulsar",
                magnetar_pulsar::serve_listeners(listeners, broker, pulsar_config, shutdown).await,
            )
        }
    });
    tasks.spawn({
        let services = wired.admin.clone();
        let (limits, shutdown) = (wired.http_limits, shutdown.clone());
        async move {
            (
                "http",
                magnetar_admin::serve(bound.http.0, services, limits, shutdown).await,
            )
        }
    });
    if let (Some((listener, _)), Some(tls)) = (bound.https, bound.tls) {
        let services = wired.admin.clone();
        let (limits, shutdown) = (wired.http_limits, shutdown.clone());
        tasks.spawn(async move {
            (
                "https",
                magnetar_admin::serve_tls(listener, tls, services, limits, shutdown).await,
            )
        });
    }
    tasks.spawn({
        let (broker, shutdown) = (wired.broker.clone(), shutdown.clone());
        let interval = Duration::from_millis(config.broker.retention_check_interval_ms);
        async move { ("retention", run_retention(broker, interval, shutdown).await) }
    });
    if config.cleaner.enabled {
        let (broker, shutdown) = (wired.broker.clone(), shutdown.clone());
        let interval = Duration::from_millis(config.cleaner.check_interval_ms);
        tasks.spawn(async move { ("cleaner", run_cleaner(broker, interval, shutdown).await) });
    }
    if let Some(member) = wired.cluster.clone() {
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            (
                "cluster session",
                crate::cluster_mode::watch_session(member, shutdown).await,
            )
        });
    }
    if let Some(member) = wired.cluster.clone() {
        let shutdown = shutdown.clone();
        let interval = Duration::from_millis(config.cluster.wal_gc_interval_ms);
        tasks.spawn(async move {
            (
                "object gc",
                crate::cluster_mode::run_gc(member, interval, shutdown).await,
            )
        });
    }

    let signals = ShutdownSignals::register()?;
    // The one machine-readable line test harnesses wait for (logs go to stderr).
    let mut listening = serde_json::json!({
        "event": "listening",
        "kafka": kafka_addr.to_string(),
        "kafka_security_protocol": config.kafka.security_protocol,
        "kafka_listeners": kafka_listeners,
        "pulsar": pulsar_addr.to_string(),
        "http": http_addr.to_string(),
    });
    if let (Some(pulsar_tls), Some(https)) = (pulsar_tls_addr, https_addr) {
        listening["pulsar_tls"] = pulsar_tls.to_string().into();
        listening["https"] = https.to_string().into();
    }
    if let Some(registry) = registry_addr {
        listening["schema_registry"] = registry.to_string().into();
    }
    println!("{listening}");
    readiness.set_ready(true);
    tracing::info!(%kafka_addr, %pulsar_addr, %http_addr, data_dir = %config.server.data_dir.display(), "magnetar standalone is ready");
    Ok(Serving {
        tasks,
        shutdown,
        readiness,
        signals,
    })
}

/// Starts the Kafka listeners (the additional ones first, then the primary) and returns the
/// address of each by security protocol, for the listening line.
fn spawn_kafka(
    config: &Config,
    (kafka_listener, kafka_addr): (TcpListener, SocketAddr),
    additional: Vec<(KafkaListener, (TcpListener, SocketAddr))>,
    wired: &Wired,
    tls: Option<Arc<TlsServer>>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<TaskResult>,
) -> serde_json::Map<String, serde_json::Value> {
    let kafka_config = &wired.kafka_config;
    // The additional Kafka listeners: the same broker and coordinator, each with its own
    // security protocol and advertised address (Metadata names the listener a client used).
    let mut kafka_listeners = serde_json::Map::new();
    kafka_listeners.insert(
        config.kafka.security_protocol.clone(),
        kafka_addr.to_string().into(),
    );
    for (l, (listener, addr)) in additional {
        let (host, port) = match &l.advertised {
            Some((host, port)) => (host.clone(), *port),
            None => (kafka_config.advertised_host.clone(), addr.port()),
        };
        let listener_config = magnetar_kafka::KafkaConfig {
            advertised_host: host,
            advertised_port: port,
            authenticator: wired.authenticator.clone().filter(|_| is_sasl(&l.protocol)),
            tls: tls.clone().filter(|_| is_tls(&l.protocol)),
            listener_name: l.protocol.clone(),
            ..kafka_config.clone()
        };
        kafka_listeners.insert(l.protocol.clone(), addr.to_string().into());
        tracing::info!(protocol = %l.protocol, address = %addr, "additional kafka listener");
        let (broker, shutdown, coordinator) = (
            wired.broker.clone(),
            shutdown.clone(),
            wired.coordinator.clone(),
        );
        tasks.spawn(async move {
            (
                "kafka",
                magnetar_kafka::serve_with_coordinator(
                    listener,
                    broker,
                    listener_config,
                    coordinator,
                    shutdown,
                )
                .await,
            )
        });
    }
    tasks.spawn({
        let (broker, shutdown, coordinator) = (
            wired.broker.clone(),
            shutdown.clone(),
            wired.coordinator.clone(),
        );
        let kafka_config = kafka_config.clone();
        async move {
            (
                "kafka",
                magnetar_kafka::serve_with_coordinator(
                    kafka_listener,
                    broker,
                    kafka_config,
                    coordinator,
                    shutdown,
                )
                .await,
            )
        }
    });
    kafka_listeners
}

impl Serving {
    /// Waits for a shutdown signal or for a task to end (which no task should); returns the
    /// failure in the second case.
    async fn until_stop(&mut self) -> Option<String> {
        tokio::select! {
            signal = self.signals.recv() => {
                tracing::info!("received {signal}; shutting down");
                None
            }
            Some(done) = self.tasks.join_next() => {
                let message = match done {
                    Ok((name, Ok(()))) => format!("{name} task stopped unexpectedly"),
                    Ok((name, Err(e))) => format!("{name} task failed: {e}"),
                    Err(e) => format!("task failed: {e}"),
                };
                tracing::error!("{message}; shutting down");
                Some(message)
            }
        }
    }
}

/// Stops in order: not ready, stop accepting and drain the front ends (up to
/// [`SHUTDOWN_GRACE`]), then the coordinator, then the broker, which flushes storage.
async fn shutdown(serving: Serving, wired: Wired, failure: Option<String>) -> anyhow::Result<()> {
    let Serving {
        mut tasks,
        shutdown,
        readiness,
        signals: _,
    } = serving;
    readiness.set_ready(false);
    shutdown.cancel();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(done) = tasks.join_next().await {
            if let Ok((name, Err(e))) = done {
                tracing::warn!("{name} listener ended with: {e}");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("in-flight work did not finish within {SHUTDOWN_GRACE:?}; closing anyway");
        tasks.abort_all();
    }
    if let Some(tiered) = &wired.tiered {
        tiered.offloader.abort();
    }
    // After the listeners (no request uses it any more), before the broker closes the ledgers.
    wired.coordinator.shutdown().await;
    // Cluster mode: hand every bundle over now rather than when the session expires.
    if let Some(member) = &wired.cluster {
        match member.leave().await {
            Ok(released) => tracing::info!(released, "left the cluster"),
            Err(e) => {
                tracing::warn!(error = %e, "leaving the cluster failed; the session's expiry frees the bundles")
            }
        }
    }
    wired
        .broker
        .shutdown()
        .await
        .context("flushing storage on shutdown")?;
    tracing::info!("magnetar stopped");
    match failure {
        Some(message) => Err(anyhow!(message)),
        None => Ok(()),
    }
}

/// Applies retention every `interval` until shutdown. A failed pass is logged and retried at the
/// next tick: retention must not take the broker down.
async fn run_retention(
    broker: Arc<Broker>,
    interval: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticker.tick() => {
                match broker.enforce_retention().await {
                    Ok(summary) if summary.segments_deleted > 0 => tracing::info!(?summary, "retention pass"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "retention pass failed"),
                }
            }
        }
    }
}

/// Compacts the partitions of compacted topics that are due every `interval` until shutdown
/// (one partition at a time: one cleaner thread). A failed pass is logged and retried at the
/// next tick.
async fn run_cleaner(
    broker: Arc<Broker>,
    interval: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // The first pass one interval after startup, not during it.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticker.tick() => {
                let pass = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    pass = broker.enforce_compaction() => pass,
                };
                match pass {
                    Ok(summary) if summary.partitions_compacted > 0 || summary.failures > 0 => {
                        tracing::info!(?summary, "cleaner pass")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cleaner pass failed"),
                }
            }
        }
    }
}

/// SIGINT and SIGTERM, registered when created: create it before announcing readiness, so a
/// signal sent right after the listening line is handled, not the default "terminate".
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn register() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "ctrl-c"
        }
    }
}
