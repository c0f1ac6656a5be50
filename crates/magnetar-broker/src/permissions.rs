//! Authorization with Pulsar's model: superuser roles, tenant admin roles, and per-namespace and
//! per-topic permissions (`produce`, `consume`, ...) granted to roles, plus subscription
//! permissions restricting which roles may consume with a given subscription (Kafka groups map to
//! subscriptions of the topic's namespace).
//!
//! Permissions live in the namespace's policies (`auth_policies`, Pulsar's shape: namespace-wide
//! grants, grants per topic keyed by the topic's full name, roles per subscription), so they are
//! versioned and compare-and-set like every other policy. The decision itself
//! ([`Broker::authorize`]) is what Pulsar's default provider decides:
//! - a superuser may do everything; a tenant's admin roles may do everything in that tenant;
//! - `Produce` needs the `produce` action on the namespace or the topic;
//! - `Consume` needs `consume`, and, when the subscription has roles listed, the role among them
//!   (a subscription with no list is open to every role that may consume);
//! - `Lookup` (metadata, offsets, stats) needs `produce` or `consume`;
//! - `Admin` (create/delete topics, partitions, configs) needs a tenant admin role.
//!
//! Deny rules (Kafka's `DENY` ACLs) sit beside the grants in the same policies: a role refused
//! `produce`, `consume`, `lookup` or `all` on the namespace or a topic, or refused a
//! subscription (Kafka group). As in Kafka, a deny overrides every allow, tenant admin roles
//! included; only superusers bypass it. It is protocol-neutral: a deny on a topic refuses the
//! role's Kafka Produce and its Pulsar PRODUCER alike.
//!
//! Front ends cache decisions per connection; [`Broker::permissions_version`] changes whenever a
//! policy or a tenant's admin roles change, which invalidates those caches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::names::{NamespaceName, TenantName, TopicName};

/// Pulsar's `AuthAction`. Only `produce` and `consume` gate anything here; the others are
/// accepted and stored so grants written for Pulsar keep their meaning when read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthAction {
    Produce,
    Consume,
    Functions,
    Sources,
    Sinks,
    Packages,
}

impl AuthAction {
    pub const ALL: [AuthAction; 6] = [
        AuthAction::Produce,
        AuthAction::Consume,
        AuthAction::Functions,
        AuthAction::Sources,
        AuthAction::Sinks,
        AuthAction::Packages,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthAction::Produce => "produce",
            AuthAction::Consume => "consume",
            AuthAction::Functions => "functions",
            AuthAction::Sources => "sources",
            AuthAction::Sinks => "sinks",
            AuthAction::Packages => "packages",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "unknown action '{s}' (one of produce, consume, functions, sources, sinks, \
                     packages)"
                ))
            })
    }
}

/// Roles and their actions.
pub type Grants = BTreeMap<String, BTreeSet<AuthAction>>;

/// What a deny rule refuses. `Lookup` is metadata, offsets and stats (Kafka's `DESCRIBE`);
/// `All` refuses every access to the topic, administration included (Kafka's `ALL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeniedAction {
    Produce,
    Consume,
    Lookup,
    All,
}

impl DeniedAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DeniedAction::Produce => "produce",
            DeniedAction::Consume => "consume",
            DeniedAction::Lookup => "lookup",
            DeniedAction::All => "all",
        }
    }
}

/// Roles and what they are refused.
pub type Denies = BTreeMap<String, BTreeSet<DeniedAction>>;

/// How the admin API's permission listings mark deny rules: the key `deny:<role>` (or
/// `deny:<subscription>`) beside the grants. Roles may not start with it.
pub const DENY_PREFIX: &str = "deny:";

/// The role a deny rule names to refuse every role (Kafka's `User:*`), superusers excepted.
/// Grants to `*` keep Pulsar's meaning: a role literally named `*`.
pub const EVERY_ROLE: &str = "*";

/// Pulsar's `AuthPolicies`, stored inside the namespace's policies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthPolicies {
    /// Grants on every topic of the namespace.
    #[serde(default)]
    pub namespace_auth: Grants,
    /// Grants on one topic, keyed by its full name (`persistent://t/ns/topic`, partitions share
    /// their topic's grants).
    #[serde(default)]
    pub destination_auth: BTreeMap<String, Grants>,
    /// Subscription (Kafka group) -> the roles allowed to consume with it.
    #[serde(default)]
    pub subscription_auth_roles: BTreeMap<String, BTreeSet<String>>,
    /// Refused on every topic of the namespace (overrides grants).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_deny: Denies,
    /// Refused on one topic, keyed like `destination_auth`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub destination_deny: BTreeMap<String, Denies>,
    /// Subscription (Kafka group) -> the roles refused it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subscription_deny_roles: BTreeMap<String, BTreeSet<String>>,
}

/// Most roles one grant map may hold, and longest role name: limits on what the admin API stores.
pub const ROLES_MAX: usize = 10_000;
pub const ROLE_BYTES_MAX: usize = 1024;

/// What a principal asks to do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Produce,
    /// Consume, with the subscription (Pulsar) or group (Kafka) used, if any.
    Consume {
        subscription: Option<String>,
    },
    Lookup,
    /// Administer the tenant's namespaces and topics.
    Admin,
}

impl AuthPolicies {
    fn has(&self, topic: &str, role: &str, action: AuthAction) -> bool {
        let granted = |g: &Grants| g.get(role).is_some_and(|a| a.contains(&action));
        granted(&self.namespace_auth) || self.destination_auth.get(topic).is_some_and(granted)
    }

    /// Is `role` refused `access` on `topic` by a deny rule (of the namespace, the topic, or the
    /// subscription used)?
    pub fn denies(&self, topic: &TopicName, role: &str, access: &Access) -> bool {
        let key = permission_key(topic);
        let refused = |action: DeniedAction| {
            let hit = |d: &Denies| {
                [role, EVERY_ROLE].iter().any(|r| {
                    d.get(*r)
                        .is_some_and(|a| a.contains(&action) || a.contains(&DeniedAction::All))
                })
            };
            hit(&self.namespace_deny) || self.destination_deny.get(&key).is_some_and(hit)
        };
        match access {
            Access::Produce => refused(DeniedAction::Produce),
            Access::Consume { subscription } => {
                refused(DeniedAction::Consume)
                    || subscription
                        .as_ref()
                        .is_some_and(|s| self.denies_group(role, s))
            }
            Access::Lookup => refused(DeniedAction::Lookup),
            Access::Admin => refused(DeniedAction::All),
        }
    }

    /// Is `role` refused the subscription (Kafka group) `group` by a deny rule (naming it or
    /// every role)?
    pub fn denies_group(&self, role: &str, group: &str) -> bool {
        self.subscription_deny_roles
            .get(group)
            .is_some_and(|roles| roles.contains(role) || roles.contains(EVERY_ROLE))
    }

    /// The deny rules that apply to a topic: its namespace's merged with its own.
    pub fn topic_denies(&self, topic: &TopicName) -> Denies {
        let mut merged = self.namespace_deny.clone();
        if let Some(own) = self.destination_deny.get(&permission_key(topic)) {
            for (role, actions) in own {
                merged
                    .entry(role.clone())
                    .or_default()
                    .extend(actions.iter().copied());
            }
        }
        merged
    }

    /// The decision for a role that is neither superuser nor tenant admin: a grant, and no deny.
    pub fn allows(&self, topic: &TopicName, role: &str, access: &Access) -> bool {
        if self.denies(topic, role, access) {
            return false;
        }
        let topic = permission_key(topic);
        match access {
            Access::Produce => self.has(&topic, role, AuthAction::Produce),
            Access::Consume { subscription } => {
                let subscription_ok = subscription
                    .as_ref()
                    .and_then(|s| self.subscription_auth_roles.get(s))
                    .is_none_or(|roles| roles.is_empty() || roles.contains(role));
                subscription_ok && self.has(&topic, role, AuthAction::Consume)
            }
            Access::Lookup => {
                self.has(&topic, role, AuthAction::Produce)
                    || self.has(&topic, role, AuthAction::Consume)
            }
            Access::Admin => false,
        }
    }

    /// May `role` use the subscription (Kafka group) `group` of this namespace? It needs
    /// `consume` somewhere in the namespace (on the namespace or on one of its topics), and, when
    /// the subscription has roles listed, to be among them. What it may then read is decided per
    /// topic (Fetch, OffsetCommit).
    pub fn allows_group(&self, role: &str, group: &str) -> bool {
        if self.denies_group(role, group) {
            return false;
        }
        let consumes = |g: &Grants| {
            g.get(role)
                .is_some_and(|a| a.contains(&AuthAction::Consume))
        };
        let subscription_ok = self
            .subscription_auth_roles
            .get(group)
            .is_none_or(|roles| roles.is_empty() || roles.contains(role));
        subscription_ok
            && (consumes(&self.namespace_auth) || self.destination_auth.values().any(consumes))
    }

    /// The grants on a topic as Pulsar's "get permissions on a topic" reports them: the
    /// namespace's grants merged with the topic's own.
    pub fn topic_grants(&self, topic: &TopicName) -> Grants {
        let mut merged = self.namespace_auth.clone();
        if let Some(own) = self.destination_auth.get(&permission_key(topic)) {
            for (role, actions) in own {
                merged
                    .entry(role.clone())
                    .or_default()
                    .extend(actions.iter().copied());
            }
        }
        merged
    }
}

/// Grants are kept per topic (a `TopicName` never names a partition: partitions share their
/// topic's grants), under the topic's full name as Pulsar keys them.
pub fn permission_key(topic: &TopicName) -> String {
    topic.to_string()
}

/// Checks a role name from the admin API.
pub fn check_role(role: &str) -> Result<()> {
    if role.is_empty() || role.len() > ROLE_BYTES_MAX || role.chars().any(char::is_control) {
        return Err(Error::InvalidRequest(format!(
            "invalid role name (1 to {ROLE_BYTES_MAX} bytes, no control characters)"
        )));
    }
    if role.starts_with(DENY_PREFIX) {
        return Err(Error::InvalidRequest(format!(
            "invalid role name: '{DENY_PREFIX}' marks deny rules in permission listings"
        )));
    }
    Ok(())
}

impl Broker {
    /// Changes whenever a policy or a tenant's admin roles change: a cached decision taken
    /// under another version is stale.
    pub fn permissions_version(&self) -> u64 {
        self.permissions_version.load(Ordering::Acquire)
    }

    pub(crate) fn permissions_changed(&self) {
        self.permissions_version.fetch_add(1, Ordering::AcqRel);
    }

    pub fn is_superuser(&self, role: &str) -> bool {
        self.config().superuser_roles.iter().any(|r| r == role)
    }

    /// Superuser, or one of the tenant's admin roles.
    pub async fn is_tenant_admin(&self, role: &str, tenant: &TenantName) -> Result<bool> {
        if self.is_superuser(role) {
            return Ok(true);
        }
        Ok(self
            .tenant(tenant)
            .await?
            .is_some_and(|info| info.admin_roles.iter().any(|r| r == role)))
    }

    /// Is authorization on (Pulsar's `authorizationEnabled`)?
    pub fn authorization_enabled(&self) -> bool {
        self.config().authorization_enabled
    }

    /// The front ends' check: with authorization off everything is allowed; with it on, a
    /// client without a role (unauthenticated) is refused everything, and a role gets what
    /// [`Broker::authorize`] decides.
    pub async fn check_access(
        &self,
        role: Option<&str>,
        topic: &TopicName,
        access: &Access,
    ) -> Result<bool> {
        if !self.authorization_enabled() {
            return Ok(true);
        }
        match role {
            None => Ok(false),
            Some(role) => self.authorize(role, topic, access).await,
        }
    }

    /// May `role` administer `tenant` (superuser or one of its admin roles)? Always with
    /// authorization off; never for a client without a role.
    pub async fn check_tenant_admin(
        &self,
        role: Option<&str>,
        tenant: &TenantName,
    ) -> Result<bool> {
        if !self.authorization_enabled() {
            return Ok(true);
        }
        match role {
            None => Ok(false),
            Some(role) => self.is_tenant_admin(role, tenant).await,
        }
    }

    /// May `role` do cluster-wide operations (superusers only)? Always with authorization off.
    pub fn check_superuser(&self, role: Option<&str>) -> bool {
        !self.authorization_enabled() || role.is_some_and(|r| self.is_superuser(r))
    }

    /// May `role` use the Kafka group `group`, whose permissions live in `namespace` (the
    /// client's namespace)? Tenant admins may; others per [`AuthPolicies::allows_group`].
    pub async fn authorize_group(
        &self,
        role: &str,
        namespace: &NamespaceName,
        group: &str,
    ) -> Result<bool> {
        if self.is_superuser(role) {
            return Ok(true);
        }
        let policies = self.namespace_policies(namespace).await?;
        if policies
            .as_ref()
            .is_some_and(|p| p.auth_policies.denies_group(role, group))
        {
            return Ok(false);
        }
        if self.is_tenant_admin(role, &namespace.tenant).await? {
            return Ok(true);
        }
        Ok(policies.is_some_and(|p| p.auth_policies.allows_group(role, group)))
    }

    /// [`Broker::authorize_group`] behind the authorization switch, as [`Broker::check_access`].
    pub async fn check_group(
        &self,
        role: Option<&str>,
        namespace: &NamespaceName,
        group: &str,
    ) -> Result<bool> {
        if !self.authorization_enabled() {
            return Ok(true);
        }
        match role {
            None => Ok(false),
            Some(role) => self.authorize_group(role, namespace, group).await,
        }
    }

    /// May `role` do `access` on `topic`? (See the module documentation for the rules.) An
    /// unknown namespace grants nothing but to superusers and tenant admins. A deny rule
    /// refuses tenant admins too (Kafka: deny overrides allow); superusers bypass it.
    pub async fn authorize(&self, role: &str, topic: &TopicName, access: &Access) -> Result<bool> {
        if self.is_superuser(role) {
            return Ok(true);
        }
        let policies = self.namespace_policies(&topic.namespace).await?;
        if policies
            .as_ref()
            .is_some_and(|p| p.auth_policies.denies(topic, role, access))
        {
            return Ok(false);
        }
        if self.is_tenant_admin(role, &topic.namespace.tenant).await? {
            return Ok(true);
        }
        Ok(policies.is_some_and(|p| p.auth_policies.allows(topic, role, access)))
    }

    pub async fn namespace_permissions(&self, namespace: &NamespaceName) -> Result<Grants> {
        self.namespace_policies(namespace)
            .await?
            .map(|p| p.auth_policies.namespace_auth)
            .ok_or_else(|| Error::NamespaceNotFound(namespace.to_string()))
    }

    /// Grants `actions` to `role` on every topic of the namespace (replacing its earlier grant).
    pub async fn grant_namespace_permission(
        &self,
        namespace: &NamespaceName,
        role: &str,
        actions: BTreeSet<AuthAction>,
    ) -> Result<()> {
        check_role(role)?;
        let mut full = false;
        self.update_namespace_policies(namespace, |p| {
            let grants = &mut p.auth_policies.namespace_auth;
            full = grants.len() >= ROLES_MAX && !grants.contains_key(role);
            if !full {
                grants.insert(role.to_string(), actions.clone());
            }
        })
        .await?;
        if full {
            return Err(Error::InvalidRequest(format!(
                "namespace '{namespace}' already has {ROLES_MAX} roles"
            )));
        }
        Ok(())
    }

    pub async fn revoke_namespace_permission(
        &self,
        namespace: &NamespaceName,
        role: &str,
    ) -> Result<()> {
        self.update_namespace_policies(namespace, |p| {
            p.auth_policies.namespace_auth.remove(role);
        })
        .await?;
        Ok(())
    }

    /// The grants that apply to a topic: its namespace's merged with its own.
    pub async fn topic_permissions(&self, topic: &TopicName) -> Result<Grants> {
        self.namespace_policies(&topic.namespace)
            .await?
            .map(|p| p.auth_policies.topic_grants(topic))
            .ok_or_else(|| Error::NamespaceNotFound(topic.namespace.to_string()))
    }

    pub async fn grant_topic_permission(
        &self,
        topic: &TopicName,
        role: &str,
        actions: BTreeSet<AuthAction>,
    ) -> Result<()> {
        check_role(role)?;
        let key = permission_key(topic);
        let mut full = false;
        self.update_namespace_policies(&topic.namespace, |p| {
            let topics = &mut p.auth_policies.destination_auth;
            full = topics.len() >= ROLES_MAX && !topics.contains_key(&key);
            if !full {
                topics
                    .entry(key.clone())
                    .or_default()
                    .insert(role.to_string(), actions.clone());
            }
        })
        .await?;
        if full {
            return Err(Error::InvalidRequest(format!(
                "namespace '{}' already has grants on {ROLES_MAX} topics",
                topic.namespace
            )));
        }
        Ok(())
    }

    pub async fn revoke_topic_permission(&self, topic: &TopicName, role: &str) -> Result<()> {
        let key = permission_key(topic);
        self.update_namespace_policies(&topic.namespace, |p| {
            let topics = &mut p.auth_policies.destination_auth;
            if let Some(grants) = topics.get_mut(&key) {
                grants.remove(role);
                if grants.is_empty() {
                    topics.remove(&key);
                }
            }
        })
        .await?;
        Ok(())
    }

    /// Restricts a subscription (Kafka group) of the namespace to `roles` (added to those
    /// already allowed).
    pub async fn grant_subscription_permission(
        &self,
        namespace: &NamespaceName,
        subscription: &str,
        roles: &BTreeSet<String>,
    ) -> Result<()> {
        if subscription.is_empty() || subscription.len() > ROLE_BYTES_MAX {
            return Err(Error::InvalidRequest("invalid subscription name".into()));
        }
        for role in roles {
            check_role(role)?;
        }
        if roles.is_empty() || roles.len() > ROLES_MAX {
            return Err(Error::InvalidRequest(format!(
                "give 1 to {ROLES_MAX} roles"
            )));
        }
        self.update_namespace_policies(namespace, |p| {
            p.auth_policies
                .subscription_auth_roles
                .entry(subscription.to_string())
                .or_default()
                .extend(roles.iter().cloned());
        })
        .await?;
        Ok(())
    }

    pub async fn revoke_subscription_permission(
        &self,
        namespace: &NamespaceName,
        subscription: &str,
        role: &str,
    ) -> Result<()> {
        self.update_namespace_policies(namespace, |p| {
            let subs = &mut p.auth_policies.subscription_auth_roles;
            if let Some(roles) = subs.get_mut(subscription) {
                roles.remove(role);
                if roles.is_empty() {
                    subs.remove(subscription);
                }
            }
        })
        .await?;
        Ok(())
    }

    /// Adds (`add`) or removes deny rules of `role`: on every topic of the namespace, or on
    /// `topic` (which must be in `namespace`). A role left with nothing denied is dropped.
    pub async fn change_denies(
        &self,
        namespace: &NamespaceName,
        topic: Option<&TopicName>,
        role: &str,
        actions: &BTreeSet<DeniedAction>,
        add: bool,
    ) -> Result<()> {
        check_role(role)?;
        if let Some(t) = topic {
            if t.namespace != *namespace {
                return Err(Error::InvalidRequest(format!(
                    "topic '{t}' is not in namespace '{namespace}'"
                )));
            }
        }
        let key = topic.map(permission_key);
        let mut full = false;
        self.update_namespace_policies(namespace, |p| {
            let auth = &mut p.auth_policies;
            let denies = match &key {
                None => &mut auth.namespace_deny,
                Some(key) => {
                    if add
                        && !auth.destination_deny.contains_key(key)
                        && auth.destination_deny.len() >= ROLES_MAX
                    {
                        full = true;
                        return;
                    }
                    auth.destination_deny.entry(key.clone()).or_default()
                }
            };
            if add {
                if !denies.contains_key(role) && denies.len() >= ROLES_MAX {
                    full = true;
                } else {
                    denies
                        .entry(role.to_string())
                        .or_default()
                        .extend(actions.iter().copied());
                }
            } else if let Some(current) = denies.get_mut(role) {
                current.retain(|a| !actions.contains(a));
                if current.is_empty() {
                    denies.remove(role);
                }
            }
            if let Some(key) = &key {
                if auth.destination_deny.get(key).is_some_and(|d| d.is_empty()) {
                    auth.destination_deny.remove(key);
                }
            }
        })
        .await?;
        if full {
            return Err(Error::InvalidRequest(format!(
                "namespace '{namespace}' already has {ROLES_MAX} deny rules there"
            )));
        }
        Ok(())
    }

    /// Adds (`add`) or removes a deny rule refusing `role` the subscription (Kafka group).
    pub async fn change_subscription_deny(
        &self,
        namespace: &NamespaceName,
        subscription: &str,
        role: &str,
        add: bool,
    ) -> Result<()> {
        if subscription.is_empty() || subscription.len() > ROLE_BYTES_MAX {
            return Err(Error::InvalidRequest("invalid subscription name".into()));
        }
        check_role(role)?;
        let mut full = false;
        self.update_namespace_policies(namespace, |p| {
            let subs = &mut p.auth_policies.subscription_deny_roles;
            if add {
                full = (!subs.contains_key(subscription) && subs.len() >= ROLES_MAX)
                    || subs.get(subscription).is_some_and(|r| r.len() >= ROLES_MAX);
                if !full {
                    subs.entry(subscription.to_string())
                        .or_default()
                        .insert(role.to_string());
                }
            } else if let Some(roles) = subs.get_mut(subscription) {
                roles.remove(role);
                if roles.is_empty() {
                    subs.remove(subscription);
                }
            }
        })
        .await?;
        if full {
            return Err(Error::InvalidRequest(format!(
                "namespace '{namespace}' already has {ROLES_MAX} subscription deny rules"
            )));
        }
        Ok(())
    }

    /// The namespace's permissions: Pulsar's auth policies, grants and deny rules.
    pub async fn auth_policies(&self, namespace: &NamespaceName) -> Result<AuthPolicies> {
        self.namespace_policies(namespace)
            .await?
            .map(|p| p.auth_policies)
            .ok_or_else(|| Error::NamespaceNotFound(namespace.to_string()))
    }

    /// Subscription -> roles of the namespace.
    pub async fn subscription_permissions(
        &self,
        namespace: &NamespaceName,
    ) -> Result<BTreeMap<String, BTreeSet<String>>> {
        self.namespace_policies(namespace)
            .await?
            .map(|p| p.auth_policies.subscription_auth_roles)
            .ok_or_else(|| Error::NamespaceNotFound(namespace.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(s: &str) -> TopicName {
        TopicName::parse(s, &NamespaceName::new("public", "default").unwrap()).unwrap()
    }

    #[test]
    fn namespace_and_topic_grants_decide_produce_consume_lookup() {
        let mut p = AuthPolicies::default();
        p.namespace_auth
            .insert("reader".into(), [AuthAction::Consume].into());
        p.destination_auth.insert(
            "persistent://t/ns/orders".into(),
            [("writer".to_string(), [AuthAction::Produce].into())].into(),
        );
        let orders = topic("persistent://t/ns/orders");
        let other = topic("persistent://t/ns/other");
        let consume = Access::Consume { subscription: None };
        assert!(p.allows(&orders, "writer", &Access::Produce));
        assert!(!p.allows(&other, "writer", &Access::Produce));
        assert!(!p.allows(&orders, "writer", &consume));
        assert!(p.allows(&orders, "writer", &Access::Lookup));
        assert!(!p.allows(&other, "writer", &Access::Lookup));
        assert!(p.allows(&other, "reader", &consume));
        assert!(!p.allows(&other, "reader", &Access::Produce));
        assert!(!p.allows(&other, "nobody", &Access::Lookup));
        assert!(!p.allows(&other, "reader", &Access::Admin));
    }

    #[test]
    fn a_subscription_with_roles_is_closed_to_other_roles() {
        let mut p = AuthPolicies::default();
        for r in ["a", "b"] {
            p.namespace_auth
                .insert(r.into(), [AuthAction::Consume].into());
        }
        p.subscription_auth_roles
            .insert("g".into(), ["a".to_string()].into());
        let t = topic("persistent://t/ns/x");
        let with = |s: &str| Access::Consume {
            subscription: Some(s.into()),
        };
        assert!(p.allows(&t, "a", &with("g")));
        assert!(!p.allows(&t, "b", &with("g")));
        assert!(p.allows(&t, "b", &with("open")));
    }

    #[test]
    fn a_deny_overrides_the_grants_it_names() {
        let mut p = AuthPolicies::default();
        for r in ["a", "b"] {
            p.namespace_auth
                .insert(r.into(), [AuthAction::Produce, AuthAction::Consume].into());
        }
        p.destination_deny.insert(
            "persistent://t/ns/orders".into(),
            [("a".to_string(), [DeniedAction::Produce].into())].into(),
        );
        let orders = topic("persistent://t/ns/orders");
        let other = topic("persistent://t/ns/other");
        let consume = Access::Consume { subscription: None };
        assert!(!p.allows(&orders, "a", &Access::Produce));
        assert!(p.denies(&orders, "a", &Access::Produce));
        assert!(p.allows(&orders, "a", &consume));
        assert!(
            p.allows(&orders, "a", &Access::Lookup),
            "DESCRIBE is not denied"
        );
        assert!(p.allows(&other, "a", &Access::Produce));
        assert!(p.allows(&orders, "b", &Access::Produce));
        // `all` on the namespace refuses everything, administration included.
        p.namespace_deny
            .insert("b".into(), [DeniedAction::All].into());
        for access in [
            Access::Produce,
            consume.clone(),
            Access::Lookup,
            Access::Admin,
        ] {
            assert!(p.denies(&other, "b", &access), "{access:?}");
        }
        // A subscription deny refuses the group and consuming with it, not other groups.
        p.subscription_deny_roles
            .insert("g".into(), ["a".to_string()].into());
        assert!(!p.allows_group("a", "g"));
        assert!(p.allows_group("a", "h"));
        let with = |s: &str| Access::Consume {
            subscription: Some(s.into()),
        };
        assert!(!p.allows(&orders, "a", &with("g")));
        assert!(p.allows(&orders, "a", &with("h")));
        // `*` refuses every role.
        p.destination_deny.insert(
            "persistent://t/ns/other".into(),
            [(EVERY_ROLE.to_string(), [DeniedAction::Consume].into())].into(),
        );
        assert!(p.denies(&other, "a", &consume) && p.denies(&other, "anyone", &consume));
        assert!(!p.denies(&other, "a", &Access::Produce));
        p.subscription_deny_roles
            .insert("closed".into(), [EVERY_ROLE.to_string()].into());
        assert!(!p.allows_group("a", "closed") && p.allows_group("a", "h"));
        assert_eq!(
            p.topic_denies(&orders).keys().collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn policies_without_deny_rules_serialize_as_before() {
        let json = serde_json::to_string(&AuthPolicies::default()).unwrap();
        assert!(!json.contains("deny"), "{json}");
        let old = r#"{"namespace_auth":{},"destination_auth":{},"subscription_auth_roles":{}}"#;
        let p: AuthPolicies = serde_json::from_str(old).unwrap();
        assert!(p.namespace_deny.is_empty() && p.subscription_deny_roles.is_empty());
        assert!(check_role("deny:x").is_err());
    }

    #[test]
    fn actions_parse_and_serialize_as_pulsar_names() {
        assert_eq!(AuthAction::parse("consume").unwrap(), AuthAction::Consume);
        assert!(AuthAction::parse("write").is_err());
        let json = serde_json::to_string(&[AuthAction::Produce, AuthAction::Consume]).unwrap();
        assert_eq!(json, r#"["produce","consume"]"#);
        assert!(check_role("").is_err());
        assert!(check_role("app-1").is_ok());
    }
}

/// Decisions of one connection, so a hot path (every Produce or Fetch) does not read the
/// namespace policies each time. Dropped whole when [`Broker::permissions_version`] moves (a
/// grant, a revoke, a tenant's admin roles changed) and when it holds `ACCESS_CACHE_MAX` entries.
#[derive(Debug, Default)]
pub struct AccessCache {
    version: u64,
    decisions: std::collections::HashMap<(TopicName, Access), bool>,
    groups: std::collections::HashMap<(NamespaceName, String), bool>,
}

/// Most decisions one connection keeps.
pub const ACCESS_CACHE_MAX: usize = 4096;

impl AccessCache {
    /// [`Broker::check_access`], answered from the cache when the permissions have not changed
    /// since the decision was taken.
    pub async fn check(
        &mut self,
        broker: &Broker,
        role: Option<&str>,
        topic: &TopicName,
        access: &Access,
    ) -> Result<bool> {
        Ok(self.decide(broker, role, topic, access).await?.allowed)
    }

    /// [`AccessCache::check`], also saying whether the answer came from the cache (front ends
    /// log a refusal once, when it is decided, not on every request it applies to).
    pub async fn decide(
        &mut self,
        broker: &Broker,
        role: Option<&str>,
        topic: &TopicName,
        access: &Access,
    ) -> Result<Decision> {
        if !broker.authorization_enabled() {
            return Ok(Decision {
                allowed: true,
                cached: false,
            });
        }
        self.refresh(broker);
        let key = (topic.clone(), access.clone());
        if let Some(&allowed) = self.decisions.get(&key) {
            return Ok(Decision {
                allowed,
                cached: true,
            });
        }
        let allowed = broker.check_access(role, topic, access).await?;
        if self.decisions.len() >= ACCESS_CACHE_MAX {
            self.decisions.clear();
        }
        self.decisions.insert(key, allowed);
        Ok(Decision {
            allowed,
            cached: false,
        })
    }
}

impl AccessCache {
    /// Drops every decision when the permissions changed since they were taken. The version is
    /// read before deciding: a change racing a decision leaves it under the old version, so the
    /// next check decides again.
    fn refresh(&mut self, broker: &Broker) {
        let version = broker.permissions_version();
        if version != self.version {
            self.decisions.clear();
            self.groups.clear();
            self.version = version;
        }
    }

    /// [`Broker::check_group`], cached like topic decisions.
    pub async fn decide_group(
        &mut self,
        broker: &Broker,
        role: Option<&str>,
        namespace: &NamespaceName,
        group: &str,
    ) -> Result<Decision> {
        if !broker.authorization_enabled() {
            return Ok(Decision {
                allowed: true,
                cached: false,
            });
        }
        self.refresh(broker);
        let key = (namespace.clone(), group.to_string());
        if let Some(&allowed) = self.groups.get(&key) {
            return Ok(Decision {
                allowed,
                cached: true,
            });
        }
        let allowed = broker.check_group(role, namespace, group).await?;
        if self.groups.len() >= ACCESS_CACHE_MAX {
            self.groups.clear();
        }
        self.groups.insert(key, allowed);
        Ok(Decision {
            allowed,
            cached: false,
        })
    }
}

/// One answer of an [`AccessCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Answered from the cache (decided earlier on this connection).
    pub cached: bool,
}
