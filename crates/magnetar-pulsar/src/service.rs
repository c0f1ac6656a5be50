//! State shared by all Pulsar connections of one broker: producer registrations (for access
//! modes), readers' seek positions, name generation, and the tasks they own (the subscriptions
//! themselves live in the broker, per partition).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use magnetar_broker::names::partition_of;
use magnetar_broker::{AutoCreator, Broker, Error, TopicName, TopicPartition};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::convert::EntryCache;
use crate::dedup::DedupTable;
use crate::producers::ProducerRegistry;
use crate::PulsarConfig;

/// Where a Pulsar topic name lands: a partition, and the partition number Pulsar shows in
/// message ids (`-1` for a non-partitioned topic).
#[derive(Debug, Clone)]
pub struct ResolvedTopic {
    pub partition: TopicPartition,
    pub id_partition: i32,
}

pub struct Service {
    pub broker: Arc<Broker>,
    pub config: PulsarConfig,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// Kafka entries converted for Pulsar consumers.
    pub cache: Arc<EntryCache>,
    /// Request counters (exported when `config.metrics` is set).
    pub metrics: Arc<magnetar_metrics::ProtocolMetrics>,
    /// Producer registrations and access modes.
    pub(crate) producers: ProducerRegistry,
    /// Non-durable subscriptions (readers) a SEEK reset: the position their consumer's
    /// reconnect resumes from (see [`Service::take_reseek`]).
    reseeks: Mutex<HashMap<(TopicPartition, String), (u64, std::time::Instant)>>,
    next_name: AtomicU64,
    /// Part of generated producer names, so they differ from those of earlier runs (a name
    /// carries deduplication state across restarts).
    name_nonce: u64,
    next_connection: AtomicU64,
    /// Deduplication state per partition, for partitions that had a deduplicated producer.
    dedup: Mutex<HashMap<TopicPartition, Arc<Mutex<DedupTable>>>>,
    /// The schema registry (shared with the admin API when the binary passes one in).
    pub schemas: Arc<magnetar_schema::SchemaStore>,
}

/// How long a reader's seek position waits for its reconnect.
const RESEEK_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// Seek positions kept at once.
const RESEEKS_MAX: usize = 10_000;

impl Service {
    pub fn new(broker: Arc<Broker>, config: PulsarConfig, shutdown: CancellationToken) -> Self {
        let cache = Arc::new(EntryCache::new(config.conversion_cache_bytes));
        let schemas = config.schemas.clone().unwrap_or_else(|| {
            Arc::new(magnetar_schema::SchemaStore::new(
                broker.clone(),
                magnetar_schema::SchemaConfig::default(),
            ))
        });
        Self {
            schemas,
            broker,
            config,
            shutdown,
            tasks: TaskTracker::new(),
            cache,
            metrics: crate::metrics::protocol_metrics(),
            producers: ProducerRegistry::default(),
            reseeks: Mutex::new(HashMap::new()),
            next_name: AtomicU64::new(0),
            name_nonce: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            dedup: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
        }
    }

    pub fn connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// A producer name unique in this broker's life and across its restarts, in Pulsar's
    /// `{cluster}-{broker}-{n}` shape (the middle part is this run's start time).
    pub fn producer_name(&self) -> String {
        let n = self.next_name.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}-{:x}-{n}",
            self.broker.config().cluster_name,
            self.name_nonce
        )
    }

    /// The deduplication table of a partition.
    pub fn dedup_table(&self, tp: &TopicPartition) -> Arc<Mutex<DedupTable>> {
        let mut all = self.dedup.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(tp.clone())
            .or_insert_with(|| {
                Arc::new(Mutex::new(DedupTable::new(
                    self.config.deduplication_producers_max,
                )))
            })
            .clone()
    }

    /// Whether SENDs to `topic` are deduplicated: the namespace policy, else the broker default.
    pub async fn deduplication_enabled(&self, topic: &TopicName) -> Result<bool, Error> {
        let policies = self.broker.namespace_policies(&topic.namespace).await?;
        Ok(policies
            .and_then(|p| p.deduplication_enabled)
            .unwrap_or(self.config.deduplication_enabled))
    }

    /// Resolves a Pulsar topic name (`persistent://t/ns/x`, `x-partition-N`, or a Kafka form) to
    /// one partition, creating the topic when auto-creation allows it.
    pub async fn resolve(&self, name: &str) -> Result<ResolvedTopic, Error> {
        let (base, partition) = split_partition(name);
        let topic = self.broker.parse_topic(base)?;
        match partition {
            Some(n) => {
                // A client may name a partition of a topic that does not exist yet.
                let metadata = self.broker.topic_or_create(&topic).await?;
                if !metadata.partitioned {
                    return Err(Error::TopicNotFound {
                        topic: format!("{name} (topic '{topic}' is not partitioned)"),
                    });
                }
                if n >= metadata.partitions {
                    return Err(Error::PartitionNotFound {
                        topic: topic.to_string(),
                        partition: n,
                    });
                }
                Ok(ResolvedTopic {
                    partition: TopicPartition {
                        topic,
                        partition: n,
                    },
                    id_partition: n as i32,
                })
            }
            None => {
                let metadata = self
                    .broker
                    .topic_or_create_for(&topic, AutoCreator::Pulsar)
                    .await?;
                if metadata.partitioned {
                    return Err(Error::InvalidRequest(format!(
                        "'{topic}' is a partitioned topic; use its partitions '{}'",
                        topic.ledger_name(Some(0))
                    )));
                }
                Ok(ResolvedTopic {
                    partition: TopicPartition {
                        topic,
                        partition: 0,
                    },
                    id_partition: -1,
                })
            }
        }
    }

    /// Records that a SEEK moved the non-durable subscription `key` to `index`. Pulsar keeps a
    /// reader's subscription across the reconnect a seek forces, so the reconnect resumes at the
    /// seek's position whatever start id the client sends (after a seek by time the client
    /// still sends its last received id). Entries are kept [`RESEEK_TTL`] and at most
    /// [`RESEEKS_MAX`] at once.
    pub(crate) fn record_reseek(&self, key: (TopicPartition, String), index: u64) {
        let now = std::time::Instant::now();
        let mut all = self.reseeks.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, (_, at)| now.saturating_duration_since(*at) < RESEEK_TTL);
        if all.len() < RESEEKS_MAX || all.contains_key(&key) {
            all.insert(key, (index, now));
        }
    }

    /// The position a SEEK left for the non-durable subscription `key`, once.
    pub(crate) fn take_reseek(&self, key: &(TopicPartition, String)) -> Option<u64> {
        let mut all = self.reseeks.lock().unwrap_or_else(|e| e.into_inner());
        let (index, at) = all.remove(key)?;
        (at.elapsed() < RESEEK_TTL).then_some(index)
    }

    /// Topic names of a namespace as Pulsar lists them: partitions of partitioned topics.
    pub async fn topics_of_namespace(&self, namespace: &str) -> Result<Vec<String>, Error> {
        let namespace = magnetar_broker::NamespaceName::parse(namespace)?;
        let mut names = Vec::new();
        for (topic, metadata) in self.broker.list_topics(&namespace).await? {
            if metadata.partitioned {
                for n in 0..metadata.partitions {
                    names.push(partition_name(&topic, n));
                }
            } else {
                names.push(topic.to_string());
            }
        }
        Ok(names)
    }
}

/// `persistent://t/ns/x-partition-3` -> (`persistent://t/ns/x`, Some(3)).
pub fn split_partition(name: &str) -> (&str, Option<u32>) {
    match partition_of(name) {
        Some(n) => {
            let suffix = format!("{}{n}", magnetar_broker::names::PARTITION_SUFFIX);
            match name.strip_suffix(&suffix) {
                Some(base) => (base, Some(n)),
                None => (name, None),
            }
        }
        None => (name, None),
    }
}

pub fn partition_name(topic: &TopicName, n: u32) -> String {
    format!("{topic}{}{n}", magnetar_broker::names::PARTITION_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_suffix_split() {
        assert_eq!(
            split_partition("persistent://a/b/t-partition-12"),
            ("persistent://a/b/t", Some(12))
        );
        assert_eq!(split_partition("t"), ("t", None));
        assert_eq!(
            split_partition("t-partition-007"),
            ("t-partition-007", None)
        );
    }
}
