//! One benchmark run: create fresh topics, start consumers (manual partition assignment, own
//! positions; no consumer-group protocol needed) and fixed-rate producers on OS threads, report
//! every interval, and build the `RunResult`. Every loop here ends by a deadline.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::clock::{format_utc, Clock};
use crate::driver::Driver;
use crate::payload::{self, Header};
use crate::process::{self, ProcessSample};
use crate::result::{
    BacklogSummary, Distributions, Interval, Phase, ProcessSummary, RunResult, Summary, Throughput,
    MB,
};
use crate::schedule::RateSchedule;
use crate::scrape;
use crate::stats::{distribution, merge, Aggregate, Percentiles, SharedHistogram};
use crate::workload::{key_pool, KeyDistributor, Workload};

/// Longest wait for topic creation and metadata.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a producer's queued messages after its last send.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Poll timeout of consumers and the longest sleep of the reporter between checks.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// librdkafka log lines and client errors echoed to stderr, at most.
const CLIENT_LOG_LINES_MAX: u64 = 20;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The broker; unused with `mock_brokers`.
    pub bootstrap_servers: String,
    /// Run against librdkafka's in-process mock cluster of this many brokers instead of a
    /// broker: the same client and workload with no broker cost, the client-side ceiling.
    pub mock_brokers: Option<u32>,
    pub workload_path: PathBuf,
    pub driver_path: Option<PathBuf>,
    pub duration_s: Option<f64>,
    pub warmup_s: Option<f64>,
    pub interval_s: f64,
    pub pid: Option<u32>,
    /// The broker's Prometheus endpoint (`http://host:port/metrics`): its fsync and append
    /// histograms are scraped when the test phase starts and when it ends.
    pub broker_metrics: Option<String>,
    pub topic_prefix: String,
    pub quiet: bool,
}

/// State shared by producers, their delivery callbacks, consumers and the reporter.
struct Shared {
    clock: Clock,
    publish_latency: SharedHistogram,
    send_delay: SharedHistogram,
    /// CommitTransaction calls of transactional producers (whole run, taken at the end).
    commit_latency: SharedHistogram,
    e2e_latency: SharedHistogram,
    e2e_from_intended: SharedHistogram,
    published_messages: AtomicU64,
    published_bytes: AtomicU64,
    publish_errors: AtomicU64,
    consumed_messages: AtomicU64,
    consumed_bytes: AtomicU64,
    consume_errors: AtomicU64,
    foreign_messages: AtomicU64,
    stop_producers: AtomicBool,
    stop_consumers: AtomicBool,
    consumers_caught_up: AtomicUsize,
    client_log_lines: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn new(clock: Clock) -> Shared {
        Shared {
            clock,
            publish_latency: SharedHistogram::default(),
            send_delay: SharedHistogram::default(),
            commit_latency: SharedHistogram::default(),
            e2e_latency: SharedHistogram::default(),
            e2e_from_intended: SharedHistogram::default(),
            published_messages: AtomicU64::new(0),
            published_bytes: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            consumed_messages: AtomicU64::new(0),
            consumed_bytes: AtomicU64::new(0),
            consume_errors: AtomicU64::new(0),
            foreign_messages: AtomicU64::new(0),
            stop_producers: AtomicBool::new(false),
            stop_consumers: AtomicBool::new(false),
            consumers_caught_up: AtomicUsize::new(0),
            client_log_lines: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    fn note_error(&self, what: String) {
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(what);
        }
    }

    fn client_log(&self, line: String) {
        if self.client_log_lines.fetch_add(1, Ordering::Relaxed) < CLIENT_LOG_LINES_MAX {
            eprintln!("magnetar-perf: client: {line}");
        }
    }
}

/// rdkafka context: forwards client errors (a few) to stderr and, for producers, records
/// acknowledgements.
#[derive(Clone)]
struct PerfContext {
    shared: Arc<Shared>,
}

impl ClientContext for PerfContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            self.shared
                .client_log(format!("{level:?} {fac}: {message}"));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.shared.client_log(format!("error {error}: {reason}"));
    }
}

impl ConsumerContext for PerfContext {}

impl ProducerContext for PerfContext {
    /// The actual send time (ns of the run's clock).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        let now = self.shared.clock.now_ns();
        match result {
            Ok(message) => {
                self.shared
                    .publish_latency
                    .record_ns(now.saturating_sub(sent_ns as u64));
                self.shared
                    .published_messages
                    .fetch_add(1, Ordering::Relaxed);
                self.shared
                    .published_bytes
                    .fetch_add(message.payload_len() as u64, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.shared.publish_errors.fetch_add(1, Ordering::Relaxed);
                self.shared.note_error(format!("publish failed: {error}"));
            }
        }
    }
}

fn client_config(settings: &std::collections::BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in settings {
        config.set(k, v);
    }
    config
}

/// What one producer thread needs.
struct ProducerPlan {
    topic: String,
    rate_per_s: f64,
    template: Vec<u8>,
    keys: KeyDistributor,
    seed: u64,
    /// Commit a transaction every so many records / milliseconds (transactional producers).
    transactions: Option<crate::driver::TransactionCommit>,
}

/// Commits the open transaction (recording how long it took) and, unless `last`, begins the
/// next; `false` when the producer cannot go on.
fn commit_transaction(
    shared: &Shared,
    producer: &ThreadedProducer<PerfContext>,
    last: bool,
) -> bool {
    let started = shared.clock.now_ns();
    if let Err(error) = producer.commit_transaction(FLUSH_TIMEOUT) {
        shared.publish_errors.fetch_add(1, Ordering::Relaxed);
        shared.note_error(format!("commit failed: {error}"));
        return false;
    }
    shared
        .commit_latency
        .record_ns(shared.clock.now_ns().saturating_sub(started));
    if last {
        return true;
    }
    if let Err(error) = producer.begin_transaction() {
        shared.note_error(format!("begin transaction failed: {error}"));
        return false;
    }
    true
}

fn producer_loop(
    shared: Arc<Shared>,
    producer: ThreadedProducer<PerfContext>,
    plan: ProducerPlan,
    start_ns: u64,
    deadline_ns: u64,
) {
    let schedule = RateSchedule::new(start_ns, plan.rate_per_s);
    let pool = key_pool();
    let mut rng = payload::SplitMix64::new(plan.seed);
    let mut buf = plan.template;
    let mut seq: u64 = 0;
    // Transactions: records and start time of the open one.
    let mut in_txn: u64 = 0;
    let mut txn_started = shared.clock.now_ns();
    'messages: loop {
        if let Some(t) = plan.transactions {
            let age_ms = shared.clock.now_ns().saturating_sub(txn_started) / 1_000_000;
            if in_txn > 0 && (in_txn >= t.records || age_ms >= t.interval_ms) {
                if !commit_transaction(&shared, &producer, false) {
                    break;
                }
                in_txn = 0;
                txn_started = shared.clock.now_ns();
            }
        }
        if shared.stop_producers.load(Ordering::Relaxed) {
            break;
        }
        let now = shared.clock.now_ns();
        if now >= deadline_ns {
            break;
        }
        let wait = schedule.wait_ns(seq, now);
        if wait > 0 {
            let wait = wait
                .min(deadline_ns - now)
                .min(POLL_INTERVAL.as_nanos() as u64);
            std::thread::sleep(Duration::from_nanos(wait));
            continue;
        }
        let key = match plan.keys {
            KeyDistributor::NoKey => None,
            KeyDistributor::KeyRoundRobin => {
                Some(pool[(seq % pool.len() as u64) as usize].as_str())
            }
            KeyDistributor::RandomNano => {
                Some(pool[(rng.next_u64() % pool.len() as u64) as usize].as_str())
            }
        };
        loop {
            let sent_ns = shared.clock.now_ns();
            let intended_ns = schedule.intended_ns(seq).unwrap_or(sent_ns);
            payload::write_header(
                &mut buf,
                Header {
                    intended_ns,
                    sent_ns,
                },
            );
            let mut record =
                BaseRecord::<str, [u8], usize>::with_opaque_to(&plan.topic, sent_ns as usize)
                    .payload(&buf[..]);
            if let Some(key) = key {
                record = record.key(key);
            }
            match producer.send(record) {
                Ok(()) => {
                    if !schedule.is_unlimited() {
                        shared.send_delay.record_ns(sent_ns - intended_ns);
                    }
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // The client's queue is full: wait for acknowledgements. The message
                    // stays due at its slot, so the wait shows up as send delay.
                    if shared.clock.now_ns() >= deadline_ns
                        || shared.stop_producers.load(Ordering::Relaxed)
                    {
                        break 'messages;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((error, _)) => {
                    shared.publish_errors.fetch_add(1, Ordering::Relaxed);
                    shared.note_error(format!("send failed: {error}"));
                    break;
                }
            }
        }
        seq += 1;
        in_txn += 1;
    }
    if plan.transactions.is_some() {
        commit_transaction(&shared, &producer, true);
    } else if let Err(error) = producer.flush(FLUSH_TIMEOUT) {
        shared.note_error(format!("flush failed: {error}"));
    }
}

/// What one consumer thread reads: `(topic, partition)` pairs, and for the backlog drain the
/// offset each must reach.
struct ConsumerPlan {
    group_id: String,
    partitions: Vec<(String, i32)>,
    targets: Option<HashMap<(String, i32), i64>>,
}

fn consumer_loop(
    shared: Arc<Shared>,
    consumer: BaseConsumer<PerfContext>,
    plan: ConsumerPlan,
    deadline_ns: u64,
) {
    let mut positions: HashMap<String, HashMap<i32, i64>> = HashMap::new();
    let mut caught_up = false;
    let check_caught_up = |positions: &HashMap<String, HashMap<i32, i64>>| -> bool {
        let Some(targets) = &plan.targets else {
            return false;
        };
        plan.partitions.iter().all(|(topic, partition)| {
            let target = targets
                .get(&(topic.clone(), *partition))
                .copied()
                .unwrap_or(0);
            let position = positions
                .get(topic)
                .and_then(|p| p.get(partition))
                .copied()
                .unwrap_or(0);
            position >= target
        })
    };
    if check_caught_up(&positions) && plan.targets.is_some() {
        caught_up = true;
        shared.consumers_caught_up.fetch_add(1, Ordering::Relaxed);
    }
    let mut last_check_ns = 0u64;
    while !shared.stop_consumers.load(Ordering::Relaxed) && shared.clock.now_ns() < deadline_ns {
        match consumer.poll(POLL_INTERVAL) {
            Some(Ok(message)) => {
                let now = shared.clock.now_ns();
                let bytes = message.payload_len() as u64;
                match message.payload().and_then(payload::read_header) {
                    Some(header) => {
                        shared
                            .e2e_latency
                            .record_ns(now.saturating_sub(header.sent_ns));
                        shared
                            .e2e_from_intended
                            .record_ns(now.saturating_sub(header.intended_ns));
                    }
                    None => {
                        shared.foreign_messages.fetch_add(1, Ordering::Relaxed);
                    }
                }
                shared.consumed_messages.fetch_add(1, Ordering::Relaxed);
                shared.consumed_bytes.fetch_add(bytes, Ordering::Relaxed);
                let topic = message.topic();
                let next = message.offset() + 1;
                match positions.get_mut(topic) {
                    Some(p) => {
                        p.insert(message.partition(), next);
                    }
                    None => {
                        positions.insert(
                            topic.to_string(),
                            HashMap::from([(message.partition(), next)]),
                        );
                    }
                }
            }
            // End-of-partition events are not errors; librdkafka only sends them when asked.
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(error)) => {
                shared.consume_errors.fetch_add(1, Ordering::Relaxed);
                shared.client_log(format!("consumer {}: {error}", plan.group_id));
            }
            None => {}
        }
        let now = shared.clock.now_ns();
        if !caught_up && plan.targets.is_some() && now - last_check_ns > 10_000_000 {
            last_check_ns = now;
            if check_caught_up(&positions) {
                caught_up = true;
                shared.consumers_caught_up.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Counter values at one tick, for deltas.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    published_messages: u64,
    published_bytes: u64,
    publish_errors: u64,
    consumed_messages: u64,
    consumed_bytes: u64,
    consume_errors: u64,
}

impl Counters {
    fn read(shared: &Shared) -> Counters {
        Counters {
            published_messages: shared.published_messages.load(Ordering::Relaxed),
            published_bytes: shared.published_bytes.load(Ordering::Relaxed),
            publish_errors: shared.publish_errors.load(Ordering::Relaxed),
            consumed_messages: shared.consumed_messages.load(Ordering::Relaxed),
            consumed_bytes: shared.consumed_bytes.load(Ordering::Relaxed),
            consume_errors: shared.consume_errors.load(Ordering::Relaxed),
        }
    }
}

/// Builds intervals and the whole-run aggregates.
struct Reporter {
    shared: Arc<Shared>,
    start_ns: u64,
    last_tick_ns: u64,
    last: Counters,
    pid: Option<u32>,
    subscriptions: u64,
    broker_first: Option<ProcessSample>,
    broker_last: Option<ProcessSample>,
    broker_measured_cpu_s: f64,
    broker_peak_rss: u64,
    tool_first: Option<ProcessSample>,
    tool_last: Option<ProcessSample>,
    tool_measured_cpu_s: f64,
    tool_peak_rss: u64,
    measured_s: f64,
    aggregate: Aggregate,
    publish_total: (u64, u64, f64, u64),
    consume_total: (u64, u64, f64, u64),
    intervals: Vec<Interval>,
    quiet: bool,
    broker_error_noted: bool,
}

impl Reporter {
    fn new(shared: Arc<Shared>, pid: Option<u32>, subscriptions: u64, quiet: bool) -> Reporter {
        let now = shared.clock.now_ns();
        let broker_last = pid.and_then(|pid| process::sample(Some(pid)).ok());
        let tool_last = process::sample(None).ok();
        Reporter {
            start_ns: now,
            last_tick_ns: now,
            last: Counters::read(&shared),
            shared,
            pid,
            subscriptions,
            broker_peak_rss: broker_last.map_or(0, |s| s.rss_bytes),
            broker_first: broker_last,
            broker_last,
            broker_measured_cpu_s: 0.0,
            tool_peak_rss: tool_last.map_or(0, |s| s.rss_bytes),
            tool_first: tool_last,
            tool_last,
            tool_measured_cpu_s: 0.0,
            measured_s: 0.0,
            aggregate: Aggregate::default(),
            publish_total: (0, 0, 0.0, 0),
            consume_total: (0, 0, 0.0, 0),
            intervals: Vec::new(),
            quiet,
            broker_error_noted: false,
        }
    }

    /// Closes the current interval (now) as part of `phase`.
    fn tick(&mut self, phase: Phase) {
        let now = self.shared.clock.now_ns();
        let duration_s = (now - self.last_tick_ns) as f64 / 1e9;
        if duration_s <= 0.0 {
            return;
        }
        self.last_tick_ns = now;
        let counters = Counters::read(&self.shared);
        let last = std::mem::replace(&mut self.last, counters);
        let publish = Throughput::new(
            counters.published_messages - last.published_messages,
            counters.published_bytes - last.published_bytes,
            duration_s,
            counters.publish_errors - last.publish_errors,
        );
        let consume = Throughput::new(
            counters.consumed_messages - last.consumed_messages,
            counters.consumed_bytes - last.consumed_bytes,
            duration_s,
            counters.consume_errors - last.consume_errors,
        );
        let publish_latency = self.shared.publish_latency.take();
        let send_delay = self.shared.send_delay.take();
        let e2e_latency = self.shared.e2e_latency.take();
        let e2e_from_intended = self.shared.e2e_from_intended.take();
        let measured = phase.measures_publish() || phase.measures_consume();
        if phase.measures_publish() {
            merge(&mut self.aggregate.publish_latency, &publish_latency);
            merge(&mut self.aggregate.send_delay, &send_delay);
            self.publish_total.0 += publish.messages;
            self.publish_total.1 += publish.bytes;
            self.publish_total.2 += duration_s;
            self.publish_total.3 += publish.errors;
        }
        if phase.measures_consume() {
            merge(&mut self.aggregate.e2e_latency, &e2e_latency);
            merge(&mut self.aggregate.e2e_from_intended, &e2e_from_intended);
            self.consume_total.0 += consume.messages;
            self.consume_total.1 += consume.bytes;
            self.consume_total.2 += duration_s;
            self.consume_total.3 += consume.errors;
        }
        if measured {
            self.measured_s += duration_s;
        }
        let (mut broker_cpu_pct, mut broker_rss_bytes) = (None, None);
        if let Some(pid) = self.pid {
            match process::sample(Some(pid)) {
                Ok(sample) => {
                    if let Some(prev) = self.broker_last {
                        let cpu = sample.cpu_s - prev.cpu_s;
                        broker_cpu_pct = Some(cpu / duration_s * 100.0);
                        if measured {
                            self.broker_measured_cpu_s += cpu;
                        }
                    }
                    broker_rss_bytes = Some(sample.rss_bytes);
                    self.broker_peak_rss = self.broker_peak_rss.max(sample.rss_bytes);
                    self.broker_last = Some(sample);
                }
                Err(error) if !self.broker_error_noted => {
                    self.broker_error_noted = true;
                    self.shared
                        .note_error(format!("broker sampling failed: {error:#}"));
                }
                Err(_) => {}
            }
        }
        if let Ok(sample) = process::sample(None) {
            if let (Some(prev), true) = (self.tool_last, measured) {
                self.tool_measured_cpu_s += sample.cpu_s - prev.cpu_s;
            }
            self.tool_peak_rss = self.tool_peak_rss.max(sample.rss_bytes);
            self.tool_last = Some(sample);
        }
        let backlog_messages = (counters.published_messages * self.subscriptions) as i64
            - counters.consumed_messages as i64;
        let interval = Interval {
            end_s: (now - self.start_ns) as f64 / 1e9,
            duration_s,
            phase,
            publish,
            consume,
            publish_latency: Percentiles::of(&publish_latency),
            send_delay: Percentiles::of(&send_delay),
            e2e_latency: Percentiles::of(&e2e_latency),
            backlog_messages,
            broker_cpu_pct,
            broker_rss_bytes,
        };
        if !self.quiet {
            println!("{}", progress_line(&interval));
        }
        self.intervals.push(interval);
    }

    fn process_summary(&self, broker: bool) -> ProcessSummary {
        let (pid, last, measured_cpu, peak) = if broker {
            (
                self.pid,
                self.broker_last,
                self.broker_measured_cpu_s,
                self.broker_peak_rss,
            )
        } else {
            (
                None,
                self.tool_last,
                self.tool_measured_cpu_s,
                self.tool_peak_rss,
            )
        };
        let first = if broker {
            self.broker_first
        } else {
            self.tool_first
        };
        ProcessSummary {
            pid,
            cpu_s: measured_cpu,
            cpu_pct: if self.measured_s > 0.0 {
                measured_cpu / self.measured_s * 100.0
            } else {
                0.0
            },
            cpu_s_total: match (first, last) {
                (Some(first), Some(last)) => last.cpu_s - first.cpu_s,
                _ => 0.0,
            },
            peak_rss_bytes: peak,
            vm_hwm_bytes: last.map_or(0, |s| s.peak_rss_bytes),
        }
    }
}

/// The live line printed at the end of every interval.
pub fn progress_line(i: &Interval) -> String {
    let lat = |p: &Percentiles| {
        if p.count == 0 {
            "-".to_string()
        } else {
            format!(
                "{:.2}/{:.2}/{:.2}/{:.1}",
                p.p50_ms, p.p99_ms, p.p99_9_ms, p.max_ms
            )
        }
    };
    let mut line = format!(
        "[{:>7.1}s {:<7}] pub {:>8.0} msg/s {:>7.2} MB/s | cons {:>8.0} msg/s | backlog {:>8} | pub ms p50/p99/p99.9/max {} | e2e {} | send delay {}",
        i.end_s,
        i.phase.name(),
        i.publish.msg_per_s,
        i.publish.mb_per_s,
        i.consume.msg_per_s,
        i.backlog_messages,
        lat(&i.publish_latency),
        lat(&i.e2e_latency),
        lat(&i.send_delay),
    );
    if i.publish.errors > 0 {
        line.push_str(&format!(" | pub errors {}", i.publish.errors));
    }
    if let (Some(cpu), Some(rss)) = (i.broker_cpu_pct, i.broker_rss_bytes) {
        line.push_str(&format!(
            " | broker cpu {cpu:.0}% rss {:.0} MB",
            rss as f64 / MB
        ));
    }
    line
}

fn create_topics(
    runtime: &tokio::runtime::Runtime,
    admin: &AdminClient<DefaultClientContext>,
    topics: &[String],
    partitions: u32,
    driver: &Driver,
) -> anyhow::Result<()> {
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            let mut topic = NewTopic::new(
                name,
                partitions as i32,
                TopicReplication::Fixed(driver.replication_factor),
            );
            for (k, v) in &driver.topic_config {
                topic = topic.set(k, v);
            }
            topic
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(SETUP_TIMEOUT));
    let results = runtime
        .block_on(async {
            tokio::time::timeout(
                SETUP_TIMEOUT + Duration::from_secs(5),
                admin.create_topics(new_topics.iter(), &options),
            )
            .await
        })
        .context("topic creation timed out")?
        .context("create topics failed")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("cannot create topic {topic}: {code}"),
        }
    }
    // Wait until metadata shows every partition with a leader.
    let deadline = std::time::Instant::now() + SETUP_TIMEOUT;
    for topic in topics {
        loop {
            let ready = admin
                .inner()
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .map(|m| {
                    m.topics().iter().any(|t| {
                        t.name() == topic
                            && t.error().is_none()
                            && t.partitions().len() == partitions as usize
                            && t.partitions().iter().all(|p| p.leader() >= 0)
                    })
                })
                .unwrap_or(false);
            if ready {
                break;
            }
            if std::time::Instant::now() >= deadline {
                bail!("topic {topic} has no leader for all {partitions} partitions after {SETUP_TIMEOUT:?}");
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
    Ok(())
}

/// Runs a workload and returns its result; prints a progress line per interval.
pub fn run(options: &RunOptions) -> anyhow::Result<RunResult> {
    let (workload, mut notes) = Workload::load(&options.workload_path)?;
    let driver = match &options.driver_path {
        Some(path) => Driver::load(path)?,
        None => Driver::default_latency(),
    };
    let phases = workload.phases(options.warmup_s, options.duration_s)?;
    if !(0.05..=3600.0).contains(&options.interval_s) {
        bail!("--interval-s must be in 0.05..=3600");
    }
    for note in &notes {
        eprintln!("magnetar-perf: warning: {note}");
    }
    let file_bytes = match &workload.payload_file {
        Some(file) => {
            let base = options
                .workload_path
                .parent()
                .map(PathBuf::from)
                .unwrap_or_default();
            let path = base.join(file);
            Some(
                std::fs::read(&path)
                    .with_context(|| format!("cannot read payloadFile {}", path.display()))?,
            )
        }
        None => None,
    };

    if let Some(pid) = options.pid {
        process::sample(Some(pid)).with_context(|| format!("--pid {pid}"))?;
    }
    if let Some(url) = &options.broker_metrics {
        // Fail before the run, not after it, when the endpoint is wrong.
        let text = scrape::fetch(url).with_context(|| format!("--broker-metrics {url}"))?;
        if scrape::parse(&text, scrape::FSYNC_METRIC).is_none() {
            bail!(
                "--broker-metrics {url}: no {} histogram there",
                scrape::FSYNC_METRIC
            );
        }
    }
    // Scrapes every broker histogram; a failure becomes a note, not a failed run.
    let scrape_all = |notes: &mut Vec<String>| -> Option<String> {
        let url = options.broker_metrics.as_ref()?;
        match scrape::fetch(url) {
            Ok(text) => Some(text),
            Err(error) => {
                notes.push(format!("broker metrics scrape failed: {error:#}"));
                None
            }
        }
    };

    // Timer slack of 1 µs, so the send schedule's sleeps end close to their due times.
    // SAFETY: prctl with PR_SET_TIMERSLACK takes one integer argument and touches no memory.
    #[allow(
        unsafe_code,
        reason = "libc::prctl sets the timer slack of the load generator"
    )]
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong);
    }

    let clock = Clock::new();
    let started_at = format_utc(clock.now_ns() / 1_000_000_000);
    let run_id = format!("{:08x}", (clock.now_ns() / 1_000) as u32);
    let topics: Vec<String> = (0..workload.topics)
        .map(|i| format!("{}-{run_id}-{i:04}", options.topic_prefix))
        .collect();
    let shared = Arc::new(Shared::new(clock));
    let context = PerfContext {
        shared: shared.clone(),
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("cannot start the tokio runtime")?;
    // The mock cluster lives until the run ends (dropped after the clients below).
    let mock = match options.mock_brokers {
        Some(n) if (1..=16).contains(&n) => {
            Some(MockCluster::new(n as i32).context("cannot start librdkafka's mock cluster")?)
        }
        Some(n) => bail!("--mock-brokers must be in 1..=16, not {n}"),
        None => None,
    };
    let bootstrap_servers = match &mock {
        Some(mock) => mock.bootstrap_servers(),
        None => options.bootstrap_servers.clone(),
    };
    let admin: AdminClient<DefaultClientContext> =
        client_config(&driver.common_settings(&bootstrap_servers))
            .create()
            .context("cannot create the admin client")?;
    match &mock {
        // The mock brokers do not serve CreateTopics; the cluster creates them directly.
        Some(mock) => {
            for topic in &topics {
                mock.create_topic(topic, workload.partitions_per_topic as i32, 1)
                    .with_context(|| format!("cannot create {topic} in the mock cluster"))?;
            }
        }
        None => create_topics(
            &runtime,
            &admin,
            &topics,
            workload.partitions_per_topic,
            &driver,
        )?,
    }
    if !options.quiet {
        println!(
            "magnetar-perf: {} ({}), {} topic(s) x {} partition(s), {} producer(s), {} consumer(s), rate {}, warm-up {:?}, test {:?}",
            workload.name,
            driver.name,
            workload.topics,
            workload.partitions_per_topic,
            workload.producer_count(),
            workload.consumer_count(),
            if workload.producer_rate == 0.0 { "max".to_string() } else { format!("{} msg/s", workload.producer_rate) },
            phases.warmup,
            phases.test,
        );
    }

    // Clients are created up front so a bad setting fails before any traffic.
    let producer_settings = driver.producer_settings(&bootstrap_servers);
    let mut producers = Vec::new();
    for (t, topic) in topics.iter().enumerate() {
        for p in 0..workload.producers_per_topic {
            let mut config = client_config(&producer_settings);
            if driver.transactions.is_some() {
                config.set(
                    "transactional.id",
                    format!("{}-{run_id}-txn-{t}-{p}", options.topic_prefix),
                );
            }
            let producer: ThreadedProducer<PerfContext> = config
                .create_with_context(context.clone())
                .context("cannot create a producer (check producerConfig)")?;
            if driver.transactions.is_some() {
                producer
                    .init_transactions(FLUSH_TIMEOUT)
                    .context("cannot initialize transactions")?;
                producer
                    .begin_transaction()
                    .context("cannot begin a transaction")?;
            }
            let seed = (t as u64) << 32 | u64::from(p);
            producers.push((
                producer,
                ProducerPlan {
                    topic: topic.clone(),
                    rate_per_s: workload.rate_per_producer(),
                    template: payload::template(workload.message_size, file_bytes.as_deref(), seed),
                    keys: workload.key_distributor,
                    seed,
                    transactions: driver.transactions,
                },
            ));
        }
    }
    let consumer_settings = driver.consumer_settings(&bootstrap_servers);
    let consumer_plans = |targets: Option<&HashMap<(String, i32), i64>>| {
        let mut plans = Vec::new();
        for topic in &topics {
            for s in 0..workload.subscriptions_per_topic {
                for c in 0..workload.consumer_per_subscription {
                    let partitions: Vec<(String, i32)> = (0..workload.partitions_per_topic)
                        .filter(|p| p % workload.consumer_per_subscription == c)
                        .map(|p| (topic.clone(), p as i32))
                        .collect();
                    plans.push(ConsumerPlan {
                        group_id: format!("{}-{run_id}-sub-{s:03}", options.topic_prefix),
                        targets: targets.map(|t| {
                            partitions
                                .iter()
                                .map(|k| (k.clone(), t.get(k).copied().unwrap_or(0)))
                                .collect()
                        }),
                        partitions,
                    });
                }
            }
        }
        plans
    };
    let start_consumers =
        |plans: Vec<ConsumerPlan>, deadline_ns: u64| -> anyhow::Result<Vec<JoinHandle<()>>> {
            let mut handles = Vec::new();
            for plan in plans {
                let mut config = client_config(&consumer_settings);
                // Manual assignment: librdkafka needs a group id to assign, but no group protocol
                // runs and nothing is committed.
                config.set("group.id", &plan.group_id);
                config.set("enable.auto.commit", "false");
                config.set("enable.auto.offset.store", "false");
                let consumer: BaseConsumer<PerfContext> = config
                    .create_with_context(context.clone())
                    .context("cannot create a consumer (check consumerConfig)")?;
                let mut list = TopicPartitionList::new();
                for (topic, partition) in &plan.partitions {
                    list.add_partition_offset(topic, *partition, Offset::Beginning)
                        .context("bad partition")?;
                }
                consumer.assign(&list).context("cannot assign partitions")?;
                let shared = shared.clone();
                handles.push(
                    std::thread::Builder::new()
                        .name("consumer".into())
                        .spawn(move || consumer_loop(shared, consumer, plan, deadline_ns))
                        .context("cannot start a consumer thread")?,
                );
            }
            Ok(handles)
        };

    let subscriptions = u64::from(workload.subscriptions_per_topic);
    let backlog_bytes = workload.backlog_bytes();
    let total_consumers = workload.consumer_count() as usize;
    let warmup_ns = phases.warmup.as_nanos() as u64;
    let test_ns = phases.test.as_nanos() as u64;
    let interval_ns = (options.interval_s * 1e9) as u64;

    let mut consumers = Vec::new();
    if backlog_bytes.is_none() && total_consumers > 0 {
        // Consumers first, reading from the start of the fresh topics, so nothing is missed.
        let deadline =
            shared.clock.now_ns() + warmup_ns + test_ns + SETUP_TIMEOUT.as_nanos() as u64;
        consumers = start_consumers(consumer_plans(None), deadline)?;
    }

    let mut reporter = Reporter::new(shared.clone(), options.pid, subscriptions, options.quiet);
    let start_ns = reporter.start_ns;
    let producer_deadline = start_ns + warmup_ns + test_ns;
    let mut producer_handles = Vec::new();
    for (producer, plan) in producers {
        let shared = shared.clone();
        producer_handles.push(
            std::thread::Builder::new()
                .name("producer".into())
                .spawn(move || producer_loop(shared, producer, plan, start_ns, producer_deadline))
                .context("cannot start a producer thread")?,
        );
    }

    // Runs intervals of `phase` until `end_ns` or until `done` says so; returns whether `done`
    // ended it.
    let run_phase =
        |reporter: &mut Reporter, phase: Phase, end_ns: u64, done: &dyn Fn() -> bool| {
            let mut next_tick = reporter.last_tick_ns + interval_ns;
            loop {
                let now = shared.clock.now_ns();
                if done() {
                    reporter.tick(phase);
                    return true;
                }
                if now >= end_ns {
                    reporter.tick(phase);
                    return false;
                }
                if now >= next_tick {
                    reporter.tick(phase);
                    next_tick += interval_ns;
                    continue;
                }
                let wait = next_tick.min(end_ns) - now;
                std::thread::sleep(Duration::from_nanos(wait).min(Duration::from_millis(20)));
            }
        };

    let never = || false;
    if warmup_ns > 0 {
        run_phase(&mut reporter, Phase::Warmup, start_ns + warmup_ns, &never);
    }
    let metrics_before = scrape_all(&mut notes);
    let mut backlog = None;
    let mut metrics_after = None;
    match backlog_bytes {
        None => {
            run_phase(
                &mut reporter,
                Phase::Test,
                start_ns + warmup_ns + test_ns,
                &never,
            );
            metrics_after = scrape_all(&mut notes);
            shared.stop_producers.store(true, Ordering::Relaxed);
            join_all(producer_handles, "producer");
            shared.stop_consumers.store(true, Ordering::Relaxed);
            join_all(consumers, "consumer");
        }
        Some(target_bytes) => {
            let build_start = shared.clock.now_ns();
            let reached = || shared.published_bytes.load(Ordering::Relaxed) >= target_bytes;
            let built = run_phase(
                &mut reporter,
                Phase::Backlog,
                build_start + test_ns,
                &reached,
            );
            shared.stop_producers.store(true, Ordering::Relaxed);
            join_all(producer_handles, "producer");
            let build_s = (shared.clock.now_ns() - build_start) as f64 / 1e9;
            if !built {
                notes.push(format!(
                    "backlog target of {target_bytes} bytes not reached within the test duration; drained what was built"
                ));
            }
            // Positions to reach: the high watermark of every partition.
            let mut targets = HashMap::new();
            let mut messages = 0u64;
            for topic in &topics {
                for p in 0..workload.partitions_per_topic as i32 {
                    let (low, high) = admin
                        .inner()
                        .fetch_watermarks(topic, p, SETUP_TIMEOUT)
                        .with_context(|| format!("cannot read the end offset of {topic}/{p}"))?;
                    messages += (high - low).max(0) as u64;
                    targets.insert((topic.clone(), p), high);
                }
            }
            let drain_start = shared.clock.now_ns();
            let deadline = drain_start + test_ns;
            reporter.tick(Phase::Backlog);
            consumers = start_consumers(consumer_plans(Some(&targets)), deadline)?;
            let consumed_before = shared.consumed_messages.load(Ordering::Relaxed);
            let caught_up =
                || shared.consumers_caught_up.load(Ordering::Relaxed) >= total_consumers;
            let drained = run_phase(&mut reporter, Phase::Drain, deadline, &caught_up);
            let drain_s = (shared.clock.now_ns() - drain_start) as f64 / 1e9;
            shared.stop_consumers.store(true, Ordering::Relaxed);
            join_all(consumers, "consumer");
            let consumed = shared.consumed_messages.load(Ordering::Relaxed) - consumed_before;
            let bytes = shared.published_bytes.load(Ordering::Relaxed);
            // Every subscription reads every message once.
            let per_subscription = consumed as f64 / subscriptions.max(1) as f64;
            backlog = Some(BacklogSummary {
                target_bytes,
                messages,
                bytes,
                build_s,
                drain_s,
                drained,
                drain_msg_per_s: per_subscription / drain_s.max(1e-9),
                drain_mb_per_s: per_subscription * workload.message_size as f64
                    / MB
                    / drain_s.max(1e-9),
            });
            if !drained {
                notes.push(
                    "consumers did not reach the end of the backlog within the test duration"
                        .into(),
                );
            }
        }
    }

    let foreign = shared.foreign_messages.load(Ordering::Relaxed);
    if foreign > 0 {
        notes.push(format!(
            "{foreign} consumed messages had no benchmark header"
        ));
    }
    if let Some(error) = shared
        .first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        notes.push(format!("first error: {error}"));
    }
    let a = &reporter.aggregate;
    let summary = Summary {
        publish: Throughput::new(
            reporter.publish_total.0,
            reporter.publish_total.1,
            reporter.publish_total.2,
            reporter.publish_total.3,
        ),
        consume: Throughput::new(
            reporter.consume_total.0,
            reporter.consume_total.1,
            reporter.consume_total.2,
            reporter.consume_total.3,
        ),
        publish_latency: Percentiles::of(&a.publish_latency),
        send_delay: Percentiles::of(&a.send_delay),
        e2e_latency: Percentiles::of(&a.e2e_latency),
        e2e_from_intended: Percentiles::of(&a.e2e_from_intended),
        commit_latency: driver
            .transactions
            .map(|_| Percentiles::of(&shared.commit_latency.take())),
        distributions: Distributions {
            publish_latency: distribution(&a.publish_latency),
            send_delay: distribution(&a.send_delay),
            e2e_latency: distribution(&a.e2e_latency),
            e2e_from_intended: distribution(&a.e2e_from_intended),
        },
    };
    if backlog_bytes.is_some() {
        metrics_after = scrape_all(&mut notes);
    }
    let broker_histograms = match (&metrics_before, &metrics_after) {
        (Some(before), Some(after)) => scrape::FAMILIES
            .iter()
            .filter_map(|family| {
                let b = scrape::parse(before, family)?;
                let a = scrape::parse(after, family)?;
                Some(scrape::delta(&b, &a, family))
            })
            .collect(),
        _ => Vec::new(),
    };
    let broker = options.pid.map(|_| reporter.process_summary(true));
    let tool_process = reporter.process_summary(false);
    Ok(RunResult {
        tool: "magnetar-perf".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_at,
        bootstrap_servers: match options.mock_brokers {
            Some(n) => format!("librdkafka mock cluster of {n} broker(s)"),
            None => options.bootstrap_servers.clone(),
        },
        workload_file: options.workload_path.display().to_string(),
        workload,
        driver,
        warmup_s: phases.warmup.as_secs_f64(),
        test_s: phases.test.as_secs_f64(),
        interval_s: options.interval_s,
        topics,
        summary,
        intervals: reporter.intervals,
        broker,
        tool_process,
        backlog,
        broker_histograms,
        notes,
    })
}

fn join_all(handles: Vec<JoinHandle<()>>, what: &str) {
    for handle in handles {
        if handle.join().is_err() {
            eprintln!("magnetar-perf: a {what} thread panicked");
        }
    }
}
