//! One module per Kafka API, the table of what is served, and the dispatcher.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use magnetar_broker::permissions::AccessCache;
use magnetar_broker::{
    Access, Broker, Error, NamespaceName, TopicMetadata, TopicName, INTERNAL_NAMESPACE,
};
use magnetar_coordinator::GroupCoordinator;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::codec::Request;
use crate::KafkaConfig;

pub mod acls;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_replica_log_dirs;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
mod error_messages;
pub mod fetch;
pub mod find_coordinator;
mod group_common;
pub mod heartbeat;
mod hosted;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
mod replica_assignment;
pub mod sync_group;

/// Every API served, with the versions advertised in ApiVersions. Exactly these are decoded;
/// anything else closes the connection. (kafka-protocol 0.18 decodes CreateTopics from v2,
/// DeleteTopics from v1, DescribeConfigs from v1 and OffsetForLeaderEpoch from v2, so older
/// versions of those are not offered.)
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::AlterReplicaLogDirs, 1, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
];

/// Served only on a listener with SASL (`SASL_PLAINTEXT`, `SASL_SSL`) and advertised only there,
/// answered by the connection's SASL state ([`crate::sasl`]). The SCRAM credential and ACL APIs are
/// in [`SUPPORTED`]: Kafka serves them on every listener (their handlers decide who may use them).
pub const SASL_SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

pub fn supported(api_key: ApiKey) -> Option<(i16, i16)> {
    supported_on(api_key, false)
}

/// The versions served of `api_key`, with the SASL APIs when `sasl` is set.
pub fn supported_on(api_key: ApiKey, sasl: bool) -> Option<(i16, i16)> {
    let sasl_table: &[(ApiKey, i16, i16)] = if sasl { SASL_SUPPORTED } else { &[] };
    SUPPORTED
        .iter()
        .chain(sasl_table)
        .find(|(k, _, _)| *k == api_key)
        .map(|(_, min, max)| (*min, *max))
}

/// What the connection does after a request.
#[derive(Debug)]
pub enum Outcome {
    Respond(Box<ResponseKind>),
    /// Produce with acks=0.
    NoResponse,
    Close(&'static str),
}

/// Shared by every connection of a listener; a connection that authenticated gets its own copy
/// carrying its [`Session`] (clones share the topic-id table).
#[derive(Clone)]
pub struct Context {
    pub broker: Arc<Broker>,
    pub config: KafkaConfig,
    pub shutdown: CancellationToken,
    /// The group coordinator (consumer groups); `None` answers COORDINATOR_NOT_AVAILABLE.
    pub coordinator: Option<Arc<GroupCoordinator>>,
    /// Topic ids handed out in Metadata, for requests that address topics by id (Fetch v13+).
    topic_ids: Arc<Mutex<HashMap<Uuid, TopicName>>>,
    /// Pulsar-format entries converted to record batches, so a hot topic is converted once and
    /// not once per fetch (shared by every connection's context).
    pub conversions: Arc<magnetar_format::cache::ConversionCache>,
    /// Who the connection authenticated as; the default for an unauthenticated listener.
    pub session: Session,
    /// Request counters (exported when `config.metrics` is set).
    pub metrics: Arc<magnetar_metrics::ProtocolMetrics>,
    /// This connection's authorization decisions (a fresh cache per session).
    access: Arc<tokio::sync::Mutex<AccessCache>>,
}

/// The authenticated side of a connection.
#[derive(Clone, Debug, Default)]
pub struct Session {
    /// `None` on a listener without SASL.
    pub principal: Option<magnetar_auth::Principal>,
    /// Where bare topic names resolve for this client (KoP: the PLAIN username's tenant or
    /// tenant/namespace); `None` is the broker's default namespace.
    pub default_namespace: Option<magnetar_broker::NamespaceName>,
}

impl Context {
    pub fn new(broker: Arc<Broker>, config: KafkaConfig, shutdown: CancellationToken) -> Self {
        Self {
            broker,
            shutdown,
            coordinator: None,
            topic_ids: Arc::new(Mutex::new(HashMap::new())),
            session: Session::default(),
            access: Arc::default(),
            metrics: crate::metrics::protocol_metrics(),
            conversions: Arc::new(magnetar_format::cache::ConversionCache::new(
                config.conversion_cache_bytes,
            )),
            config,
        }
    }

    /// This context for a connection that authenticated.
    pub fn with_session(&self, session: Session) -> Self {
        Self {
            session,
            access: Arc::default(),
            ..self.clone()
        }
    }

    /// The authenticated role, if any.
    pub fn role(&self) -> Option<&str> {
        self.session.principal.as_ref().map(|p| p.role.as_str())
    }

    /// May this connection's principal do `access` on `topic`? Always with authorization off. A
    /// refusal is logged once per connection, topic and access (when decided, not when answered
    /// from the cache); an error reading the permissions refuses.
    pub async fn allowed(&self, topic: &TopicName, access: &Access) -> bool {
        self.decide(topic, access, true).await
    }

    /// [`Context::allowed`] without logging a refusal: for filtering (which topics Metadata
    /// lists) and for probing (KIP-430 authorized operations), where a "no" is not an incident.
    pub async fn may(&self, topic: &TopicName, access: &Access) -> bool {
        self.decide(topic, access, false).await
    }

    async fn decide(&self, topic: &TopicName, access: &Access, log: bool) -> bool {
        if !self.broker.authorization_enabled() {
            return true;
        }
        let role = self.role();
        let mut cache = self.access.lock().await;
        // Boxed so the policy read's state does not grow every request's future.
        match Box::pin(cache.decide(&self.broker, role, topic, access)).await {
            Ok(decision) => {
                if log && !decision.allowed && !decision.cached {
                    tracing::warn!(
                        role = role.unwrap_or("<none>"),
                        topic = %topic,
                        access = ?access,
                        "kafka request refused: not authorized"
                    );
                }
                decision.allowed
            }
            Err(e) => {
                tracing::warn!(topic = %topic, error = %e, "kafka authorization failed: refusing");
                false
            }
        }
    }

    /// [`Context::allowed`] as a Kafka error: TOPIC_AUTHORIZATION_FAILED.
    pub async fn authorize(&self, topic: &TopicName, access: &Access) -> Result<(), i16> {
        if self.allowed(topic, access).await {
            Ok(())
        } else {
            Err(kafka_protocol::ResponseError::TopicAuthorizationFailed.code())
        }
    }

    /// [`Context::authorize`] with a message, for responses that carry one.
    pub async fn authorize_with_message(
        &self,
        topic: &TopicName,
        access: &Access,
    ) -> Result<(), (i16, String)> {
        self.authorize(topic, access).await.map_err(|code| {
            let what = match access {
                Access::Produce => "produce to",
                Access::Consume { .. } => "consume from",
                Access::Lookup => "look up",
                Access::Admin => "administer",
            };
            (
                code,
                format!(
                    "role '{}' is not authorized to {what} topic '{}'",
                    self.role().unwrap_or("<none>"),
                    self.short_name(topic)
                ),
            )
        })
    }

    /// May this principal use the consumer group `group` (client's name)? Decided in the
    /// client's namespace (its grants and subscription permissions); logged once when refused.
    pub async fn group_allowed(&self, group: &str) -> bool {
        self.decide_group(group, true).await
    }

    /// [`Context::group_allowed`] without logging a refusal (ListGroups filtering).
    pub async fn group_may(&self, group: &str) -> bool {
        self.decide_group(group, false).await
    }

    async fn decide_group(&self, group: &str, log: bool) -> bool {
        if !self.broker.authorization_enabled() {
            return true;
        }
        let role = self.role();
        let namespace = self.default_namespace().clone();
        let mut cache = self.access.lock().await;
        match Box::pin(cache.decide_group(&self.broker, role, &namespace, group)).await {
            Ok(decision) => {
                if log && !decision.allowed && !decision.cached {
                    tracing::warn!(
                        role = role.unwrap_or("<none>"),
                        group,
                        namespace = %namespace,
                        "kafka group request refused: not authorized"
                    );
                }
                decision.allowed
            }
            Err(e) => {
                tracing::warn!(group, error = %e, "kafka group authorization failed: refusing");
                false
            }
        }
    }

    /// [`Context::group_allowed`] as a Kafka error: GROUP_AUTHORIZATION_FAILED.
    pub async fn authorize_group(&self, group: &str) -> Result<(), i16> {
        if self.group_allowed(group).await {
            Ok(())
        } else {
            Err(kafka_protocol::ResponseError::GroupAuthorizationFailed.code())
        }
    }

    /// The coordinator's id of the client's group `group`: groups are kept per tenant (KoP's
    /// multi-tenant metadata), so two tenants' groups of one name are two groups. The broker's
    /// default tenant keeps plain ids (what clients without a tenant always used); any other
    /// tenant's groups, and default-tenant groups whose name has a `/`, are `tenant/group`.
    pub fn group_key(&self, group: &str) -> String {
        let tenant = &self.default_namespace().tenant;
        if *tenant == self.broker.config().default_namespace.tenant && !group.contains('/') {
            group.to_string()
        } else {
            format!("{}/{group}", tenant.as_str())
        }
    }

    /// The client's name of a coordinator group id, or `None` when the group belongs to another
    /// tenant (the inverse of [`Context::group_key`]).
    pub fn group_shown(&self, key: &str) -> Option<String> {
        let tenant = self.default_namespace().tenant.as_str();
        let (owner, name) = match key.split_once('/') {
            Some((owner, name)) => (owner, name),
            None => (self.broker.config().default_namespace.tenant.as_str(), key),
        };
        (owner == tenant).then(|| name.to_string())
    }

    /// Superuser (or authorization off), without logging.
    pub fn is_superuser(&self) -> bool {
        self.broker.check_superuser(self.role())
    }

    /// May this principal do cluster-wide operations (superusers; everyone with authorization
    /// off)?
    pub fn cluster_allowed(&self) -> bool {
        let allowed = self.is_superuser();
        if !allowed {
            tracing::warn!(
                role = self.role().unwrap_or("<none>"),
                "kafka cluster operation refused: not a superuser"
            );
        }
        allowed
    }

    fn default_namespace(&self) -> &magnetar_broker::NamespaceName {
        self.session
            .default_namespace
            .as_ref()
            .unwrap_or(&self.broker.config().default_namespace)
    }

    /// A topic's Kafka topic id: derived from its full name and creation time, so it is stable
    /// across restarts and changes when a topic is deleted and created again.
    pub fn topic_id(&self, name: &TopicName, metadata: &TopicMetadata) -> Uuid {
        let id = derive_topic_id(name, metadata.created_ms);
        if let Ok(mut ids) = self.topic_ids.lock() {
            if ids.len() > 100_000 {
                ids.clear();
            }
            ids.entry(id).or_insert_with(|| name.clone());
        }
        id
    }

    /// The topic with this id, looking through every topic when it was not handed out here.
    pub async fn topic_by_id(&self, id: Uuid) -> Result<Option<TopicName>, Error> {
        if let Some(name) = self
            .topic_ids
            .lock()
            .ok()
            .and_then(|ids| ids.get(&id).cloned())
        {
            return Ok(Some(name));
        }
        for (name, metadata) in self.broker.list_all_topics(true).await? {
            if self.topic_id(&name, &metadata) == id {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    /// Parses a topic name as a client wrote it; the client keeps seeing the name it used.
    pub fn parse_topic(&self, name: &str) -> Result<TopicName, Error> {
        // Kafka's name of the group coordinator's log: the broker's internal topic, wherever
        // the default namespace is.
        if name == OFFSETS_TOPIC {
            return TopicName::new(
                NamespaceName::new(INTERNAL_NAMESPACE.0, INTERNAL_NAMESPACE.1)?,
                OFFSETS_TOPIC,
            );
        }
        TopicName::parse(name, self.default_namespace())
    }

    /// [`Context::parse_topic`] for requests that write, create, delete or alter a topic: the
    /// broker's internal topics are refused (INVALID_TOPIC_EXCEPTION, as Kafka refuses appends
    /// to `__consumer_offsets`).
    pub fn parse_writable_topic(&self, name: &str) -> Result<TopicName, Error> {
        let topic = self.parse_topic(name)?;
        if is_internal(&topic) {
            return Err(Error::InvalidName(format!(
                "topic '{name}' is internal to the broker: clients may read it but not write, create, delete or alter it"
            )));
        }
        Ok(topic)
    }

    /// The short name of a topic for listings (bare for the default namespace;
    /// `__consumer_offsets` for the internal offsets topic).
    pub fn short_name(&self, name: &TopicName) -> String {
        if is_internal(name) && name.local == OFFSETS_TOPIC {
            return OFFSETS_TOPIC.to_string();
        }
        name.short_name(self.default_namespace())
    }
}

/// Kafka's name of the offsets topic (`persistent://public/__kafka/__consumer_offsets` here).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Whether a topic lives in the broker's internal namespace.
pub fn is_internal(name: &TopicName) -> bool {
    name.namespace.tenant.as_str() == INTERNAL_NAMESPACE.0
        && name.namespace.namespace == INTERNAL_NAMESPACE.1
}

fn derive_topic_id(name: &TopicName, created_ms: i64) -> Uuid {
    fn fnv1a(seed: u64, data: &[u8]) -> u64 {
        data.iter().fold(seed, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }
    let key = format!("{name}\u{0}{created_ms}");
    let high = fnv1a(0xcbf2_9ce4_8422_2325, key.as_bytes());
    let low = fnv1a(0x6c62_272e_07bb_0142, key.as_bytes());
    // Version 8 (custom) UUID with the RFC 4122 variant; never the nil id.
    let raw = (u128::from(high) << 64 | u128::from(low)) & !(0xf << 76) & !(0x3 << 62);
    Uuid::from_u128(raw | (0x8 << 76) | (0x2 << 62))
}

/// Hands a decoded request to its API module.
pub async fn handle(ctx: &Context, peer: SocketAddr, request: Request) -> Outcome {
    let header = request.header;
    let v = header.api_version;
    let respond = |mut r: ResponseKind| {
        error_messages::null_empty_messages(&mut r);
        Outcome::Respond(Box::new(r))
    };
    match request.body {
        RequestKind::ApiVersions(r) => respond(ResponseKind::ApiVersions(api_versions::handle(
            ctx, &header, r,
        ))),
        RequestKind::Metadata(r) => respond(ResponseKind::Metadata(
            metadata::handle(ctx, &header, r).await,
        )),
        RequestKind::Produce(r) => match produce::handle(ctx, &header, r).await {
            Some(response) => respond(ResponseKind::Produce(response)),
            None => Outcome::NoResponse,
        },
        RequestKind::Fetch(r) => respond(ResponseKind::Fetch(fetch::handle(ctx, &header, r).await)),
        RequestKind::ListOffsets(r) => respond(ResponseKind::ListOffsets(
            list_offsets::handle(ctx, v, r).await,
        )),
        RequestKind::OffsetForLeaderEpoch(r) => respond(ResponseKind::OffsetForLeaderEpoch(
            offset_for_leader_epoch::handle(ctx, r).await,
        )),
        RequestKind::InitProducerId(r) => respond(ResponseKind::InitProducerId(
            init_producer_id::handle(ctx, &header, r).await,
        )),
        RequestKind::CreateTopics(r) => respond(ResponseKind::CreateTopics(
            create_topics::handle(ctx, v, r).await,
        )),
        RequestKind::DeleteTopics(r) => respond(ResponseKind::DeleteTopics(
            delete_topics::handle(ctx, v, r).await,
        )),
        RequestKind::CreatePartitions(r) => respond(ResponseKind::CreatePartitions(
            create_partitions::handle(ctx, r).await,
        )),
        RequestKind::DescribeConfigs(r) => respond(ResponseKind::DescribeConfigs(
            describe_configs::handle(ctx, v, r).await,
        )),
        RequestKind::AlterConfigs(r) => respond(ResponseKind::AlterConfigs(
            alter_configs::handle(ctx, r).await,
        )),
        RequestKind::IncrementalAlterConfigs(r) => respond(ResponseKind::IncrementalAlterConfigs(
            incremental_alter_configs::handle(ctx, r).await,
        )),
        RequestKind::DeleteRecords(r) => respond(ResponseKind::DeleteRecords(
            delete_records::handle(ctx, r).await,
        )),
        RequestKind::DescribeCluster(r) => respond(ResponseKind::DescribeCluster(
            describe_cluster::handle(ctx, r),
        )),
        RequestKind::FindCoordinator(r) => respond(ResponseKind::FindCoordinator(
            find_coordinator::handle(ctx, v, r),
        )),
        RequestKind::JoinGroup(r) => respond(ResponseKind::JoinGroup(
            join_group::handle(ctx, &header, format!("/{}", peer.ip()), r).await,
        )),
        RequestKind::SyncGroup(r) => {
            respond(ResponseKind::SyncGroup(sync_group::handle(ctx, v, r).await))
        }
        RequestKind::Heartbeat(r) => {
            respond(ResponseKind::Heartbeat(heartbeat::handle(ctx, r).await))
        }
        RequestKind::LeaveGroup(r) => respond(ResponseKind::LeaveGroup(
            leave_group::handle(ctx, v, r).await,
        )),
        RequestKind::OffsetCommit(r) => respond(ResponseKind::OffsetCommit(
            offset_commit::handle(ctx, r).await,
        )),
        RequestKind::OffsetFetch(r) => respond(ResponseKind::OffsetFetch(
            offset_fetch::handle(ctx, v, r).await,
        )),
        RequestKind::DescribeGroups(r) => respond(ResponseKind::DescribeGroups(
            describe_groups::handle(ctx, v, r).await,
        )),
        RequestKind::ListGroups(r) => respond(ResponseKind::ListGroups(
            list_groups::handle(ctx, v, r).await,
        )),
        RequestKind::DeleteGroups(r) => respond(ResponseKind::DeleteGroups(
            delete_groups::handle(ctx, r).await,
        )),
        RequestKind::OffsetDelete(r) => respond(ResponseKind::OffsetDelete(
            offset_delete::handle(ctx, r).await,
        )),
        RequestKind::DescribeUserScramCredentials(r) => {
            respond(ResponseKind::DescribeUserScramCredentials(
                describe_user_scram_credentials::handle(ctx, r).await,
            ))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            respond(ResponseKind::AlterUserScramCredentials(
                alter_user_scram_credentials::handle(ctx, r).await,
            ))
        }
        RequestKind::DescribeAcls(r) => {
            respond(ResponseKind::DescribeAcls(acls::describe(ctx, r).await))
        }
        RequestKind::CreateAcls(r) => respond(ResponseKind::CreateAcls(acls::create(ctx, r).await)),
        RequestKind::DeleteAcls(r) => respond(ResponseKind::DeleteAcls(acls::delete(ctx, r).await)),
        RequestKind::DescribeLogDirs(r) => respond(ResponseKind::DescribeLogDirs(
            describe_log_dirs::handle(ctx, v, r).await,
        )),
        RequestKind::AlterReplicaLogDirs(r) => respond(ResponseKind::AlterReplicaLogDirs(
            alter_replica_log_dirs::handle(ctx, r).await,
        )),
        RequestKind::ElectLeaders(r) => respond(ResponseKind::ElectLeaders(
            elect_leaders::handle(ctx, v, r).await,
        )),
        RequestKind::AlterPartitionReassignments(r) => {
            respond(ResponseKind::AlterPartitionReassignments(
                alter_partition_reassignments::handle(ctx, r).await,
            ))
        }
        RequestKind::ListPartitionReassignments(r) => respond(
            ResponseKind::ListPartitionReassignments(list_partition_reassignments::handle(ctx, r)),
        ),
        // The codec only decodes the APIs in SUPPORTED, so this is a bug, not client input.
        _ => Outcome::Close("request of an api without a handler"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_versions_are_decodable_by_the_crate() {
        for (api, min, max) in SUPPORTED.iter().chain(SASL_SUPPORTED) {
            let range = api.valid_versions();
            assert!(range.min <= *min && *max <= range.max, "{api:?}");
            assert!(
                crate::guard::schema(*api).is_some(),
                "{api:?} has no guard schema"
            );
        }
    }

    #[test]
    fn topic_ids_are_stable_and_distinct() {
        let ns = magnetar_broker::NamespaceName::new("public", "default").unwrap();
        let a = TopicName::new(ns.clone(), "a").unwrap();
        let b = TopicName::new(ns, "b").unwrap();
        assert_eq!(derive_topic_id(&a, 1), derive_topic_id(&a, 1));
        assert_ne!(derive_topic_id(&a, 1), derive_topic_id(&a, 2));
        assert_ne!(derive_topic_id(&a, 1), derive_topic_id(&b, 1));
        assert!(!derive_topic_id(&a, 1).is_nil());
    }
}
