//! One broker in this process, as the in-process integration tests start it: a memory metadata
//! store, a temporary data dir, the clock the test chooses, and its Kafka and Pulsar listeners
//! on 127.0.0.1:0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use magnetar_broker::{Broker, BrokerConfig, Clock, SystemClock};
use magnetar_kafka::KafkaConfig;
use magnetar_metadata::MemoryStore;
use magnetar_pulsar::PulsarConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a listener may take to stop after its shutdown token is cancelled.
const STOP_WAIT: Duration = Duration::from_secs(20);

/// The kit's broker settings: a small cluster named `test`, limits that tests do not reach,
/// service URLs on port 0 (nothing serves them). `configure` of [`BrokerBuilder::config`]
/// changes them.
pub fn test_config(dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        cluster_name: "test".into(),
        partitions_max: 128,
        producers_per_partition_max: 100,
        service_url: "http://127.0.0.1:0".into(),
        broker_service_url: "pulsar://127.0.0.1:0".into(),
        ..BrokerConfig::for_data_dir(dir.to_path_buf())
    }
}

/// How a [`TestBroker`] is opened.
pub struct BrokerBuilder {
    config: Box<dyn FnOnce(&mut BrokerConfig)>,
    clock: Arc<dyn Clock>,
    store: Arc<MemoryStore>,
}

impl BrokerBuilder {
    /// Changes the broker settings (the kit's [`test_config`] is the start).
    pub fn config(mut self, configure: impl FnOnce(&mut BrokerConfig) + 'static) -> Self {
        let before = self.config;
        self.config = Box::new(move |c| {
            before(c);
            configure(c);
        });
        self
    }

    /// The broker's clock (the system clock unless set; a `ManualClock` lets the test drive
    /// segment age, retention, TTLs and the publish rate).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// A metadata store shared with something else (another broker, the test itself).
    pub fn store(mut self, store: Arc<MemoryStore>) -> Self {
        self.store = store;
        self
    }

    pub async fn open(self) -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        (self.config)(&mut config);
        let broker = Broker::open(config, self.store.clone(), self.clock.clone())
            .await
            .expect("broker opens");
        TestBroker {
            broker,
            store: self.store,
            clock: self.clock,
            shutdown: CancellationToken::new(),
            listeners: Vec::new(),
            dir,
        }
    }
}

/// A broker in this process; see the [module docs](self).
pub struct TestBroker {
    pub broker: Arc<Broker>,
    pub store: Arc<MemoryStore>,
    pub clock: Arc<dyn Clock>,
    /// Cancelled by [`TestBroker::stop`]; stops every listener started here.
    pub shutdown: CancellationToken,
    listeners: Vec<(&'static str, JoinHandle<std::io::Result<()>>)>,
    dir: tempfile::TempDir,
}

impl TestBroker {
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder {
            config: Box::new(|_| {}),
            clock: Arc::new(SystemClock),
            store: Arc::new(MemoryStore::new()),
        }
    }

    /// A broker with the kit's settings and the system clock.
    pub async fn start() -> TestBroker {
        Self::builder().open().await
    }

    /// The broker's data dir (removed when this is dropped).
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Starts the Kafka listener on 127.0.0.1:0 (advertising that address) with the kit's
    /// limits, changed by `configure`; returns its address.
    pub async fn serve_kafka(&mut self, configure: impl FnOnce(&mut KafkaConfig)) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let mut kafka = KafkaConfig {
            advertised_host: "127.0.0.1".into(),
            advertised_port: addr.port(),
            max_request_bytes: 1 << 20,
            connections_max: 64,
            ..KafkaConfig::default()
        };
        configure(&mut kafka);
        let task = tokio::spawn(magnetar_kafka::serve(
            listener,
            self.broker.clone(),
            kafka,
            self.shutdown.clone(),
        ));
        self.listeners.push(("kafka", task));
        addr
    }

    /// Starts the Pulsar listener on 127.0.0.1:0 with `config`; returns its address.
    pub async fn serve_pulsar(&mut self, config: PulsarConfig) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(magnetar_pulsar::serve_with(
            listener,
            self.broker.clone(),
            config,
            self.shutdown.clone(),
        ));
        self.listeners.push(("pulsar", task));
        addr
    }

    /// Stops the listeners (bounded) and asserts they ended cleanly. The broker itself is not
    /// shut down (see [`TestBroker::shutdown`]).
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        for (protocol, task) in self.listeners.drain(..) {
            tokio::time::timeout(STOP_WAIT, task)
                .await
                .unwrap_or_else(|_| panic!("the {protocol} listener did not stop"))
                .expect("listener task")
                .unwrap_or_else(|e| panic!("the {protocol} listener failed: {e}"));
        }
    }

    /// Stops the listeners, then shuts the broker down (flushes and closes its ledgers).
    pub async fn shutdown(mut self) {
        self.stop().await;
        self.broker.shutdown().await.expect("broker shuts down");
    }
}
