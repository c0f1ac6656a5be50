//! The protocol-neutral broker core.
//!
//! Owns: the Pulsar naming model ([`names`]), tenants, namespaces and topics in the metadata store
//! ([`Broker`], [`resources`]), the open partitions over managed ledgers ([`PartitionLog`]),
//! idempotent-producer state ([`producer_state`]), subscriptions with their consumers, dispatch
//! rules, redelivery and cursor moves ([`subscription`]), and THE domain [`Error`] that each front end
//! maps to its own wire codes.
//! The ownership core of cluster mode ([`cluster`]: bundles, broker registry, bundle claims
//! and fences) is here too, not yet used by the front ends.
//!
//! Must not depend on: any wire protocol (no `kafka-protocol`, no Pulsar protobuf, no HTTP).
//! Words like "offset" (Kafka) and "MessageId" (Pulsar) do not appear here: the core speaks
//! message indexes, topic partitions and positions.

pub mod broker;
pub mod cluster;
pub mod compaction;
pub mod error;
pub(crate) mod ledger;
pub mod names;
pub mod partition;
pub mod permissions;
pub mod producer_state;
pub mod publish_rate;
pub mod registry;
pub mod resources;
pub mod skipped;
pub mod subscription;
pub mod tiering;

pub use broker::{
    effective_retention, AutoCreator, Broker, BrokerConfig, LedgerCleanup, RetentionSummary,
    SchemaFraming, SegmentStoreFactory, INTERNAL_NAMESPACE,
};
pub use error::{Error, Result};
pub use names::{NamespaceName, TenantName, TopicName, TopicPartition};
pub use partition::{
    AppendOutcome, AppendRequest, Appending, OffloadStatus, PartitionLog, PartitionTraffic,
    ProducerStateOpen,
};
pub use permissions::{
    Access, AclRule, AuthAction, AuthPolicies, DeniedAction, Denies, Grants, RuleAction,
    RulePattern, RuleResource,
};
pub use producer_state::{
    named_producer_batch, named_producer_id, AbortedTxn, ProducerBatch, ProducerView,
};
pub use publish_rate::PublishRate;
pub use resources::{AutoTopicCreation, NamespacePolicies, TenantInfo, TopicMetadata};
pub use subscription::position::Position;
pub use subscription::{
    Consumer, ConsumerKey, ConsumerSink, DelayedDelivery, Delivery, DeliveryFuture, Dispatcher,
    EntryCodec, PreparedEntry, Subscription, SubscriptionType,
};

/// The metadata store, for the crates above the broker that keep records of their own (the SCRAM
/// credentials of magnetar-auth) without depending on magnetar-metadata.
pub use magnetar_metadata::{
    Expect, MetadataError, MetadataStore, SessionState as MetadataSessionState,
};

/// Storage types the front ends need to see, re-exported so they depend on the broker only.
pub use magnetar_storage::{
    Clock, CursorStart, CursorState, Entry, EntryHeader, FsyncPolicy, HistogramSnapshot,
    LatencyHistogram, LedgerConfig, LedgerStats, ManualClock, PayloadFormat, RecoveryReport,
    SystemClock, TxnMark, LATENCY_BUCKETS_US,
};
