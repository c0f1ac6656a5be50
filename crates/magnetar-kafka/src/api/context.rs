//! What a handler works with: the listener's shared state and the connection's session
//! ([`Context`]), and the envelope of the request being served ([`Envelope`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use magnetar_broker::permissions::AccessCache;
use magnetar_broker::{
    Access, Broker, Error, NamespaceName, TopicMetadata, TopicName, INTERNAL_NAMESPACE,
};
use magnetar_coordinator::GroupCoordinator;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::frame::RequestHeader;
use crate::KafkaConfig;

/// One request's envelope, given to every handler beside its body: the header (API version,
/// client id, correlation id) and the address of the client that sent it.
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a> {
    pub header: &'a RequestHeader,
    pub peer: SocketAddr,
}

impl Envelope<'_> {
    /// The request's API version.
    pub fn version(&self) -> i16 {
        self.header.api_version
    }
}

/// Shared by every connection of a listener; a connection that authenticated gets its own copy
/// carrying its [`Session`] (clones share the topic-id table).
#[derive(Clone)]
pub struct Context {
    pub broker: Arc<Broker>,
    pub config: KafkaConfig,
    pub shutdown: CancellationToken,
    /// The group coordinator (consumer groups). Always running while the listener serves:
    /// [`crate::serve`] starts it first and stops it last.
    pub coordinator: Arc<GroupCoordinator>,
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
    /// The client's address: ACL rules of one host apply to it. Set by the connection.
    pub host: Option<std::net::IpAddr>,
}

impl Context {
    pub fn new(
        broker: Arc<Broker>,
        config: KafkaConfig,
        coordinator: Arc<GroupCoordinator>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            broker,
            shutdown,
            coordinator,
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
        let access = match session.host {
            Some(host) => AccessCache::for_host(host),
            None => AccessCache::default(),
        };
        Self {
            session,
            access: Arc::new(tokio::sync::Mutex::new(access)),
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
    /// Kafka's TRANSACTIONAL_ID resource: refused by a DENY rule on the id (deny overrides);
    /// allowed by an ALLOW rule on it (LITERAL or PREFIXED, as CreateAcls stores them) or by the
    /// produce permission on the client's default namespace (a namespace-level grant: a grant
    /// on one topic does not cover it).
    pub async fn authorize_transactional_id(&self, transactional_id: &str) -> Result<(), i16> {
        if !self.broker.authorization_enabled() {
            return Ok(());
        }
        let refused = kafka_protocol::ResponseError::TransactionalIdAuthorizationFailed.code();
        let (role, host, namespace) = (
            self.role(),
            self.session.host,
            self.default_namespace().clone(),
        );
        let wanted = magnetar_broker::RuleAction::Produce;
        let denied = self
            .broker
            .transactional_id_denied(role, host, &namespace, transactional_id, wanted)
            .await
            .unwrap_or(true);
        let allowed = !denied
            && (self
                .broker
                .check_transactional_id(role, host, &namespace, transactional_id, wanted)
                .await
                .unwrap_or(false)
                || match TopicName::new(namespace.clone(), "__transactional_id") {
                    // No topic has this name (`__` names are internal); it stands for "any
                    // topic of the namespace", so only namespace-wide produce grants allow it.
                    Ok(topic) => self.decide(&topic, &Access::Produce, false).await,
                    Err(_) => false,
                });
        if allowed {
            Ok(())
        } else {
            tracing::warn!(
                role = role.unwrap_or("<none>"),
                transactional_id,
                namespace = %namespace,
                "kafka transactional id refused: a deny rule, or no allow rule and no produce permission on the namespace"
            );
            Err(refused)
        }
    }

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

    pub(crate) fn default_namespace(&self) -> &magnetar_broker::NamespaceName {
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

#[cfg(test)]
mod tests {
    use super::*;

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
