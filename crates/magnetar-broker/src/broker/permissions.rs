//! The permissions service: the authorization decisions that need the broker's state
//! (superuser roles, tenants' admin roles, the `authorization_enabled` switch) over the model in
//! [`crate::permissions`], and the grant, revoke and deny operations, which write the namespace
//! policies. See [`crate::permissions`] for the rules.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::namespaces::Namespaces;
use super::tenants::Tenants;
use crate::error::{Error, Result};
use crate::names::{NamespaceName, TenantName, TopicName};
use crate::permissions::{
    check_role, permission_key, Access, AclRule, AuthAction, AuthPolicies, DeniedAction, Grants,
    RuleAction, RuleResource, ROLES_MAX, ROLE_BYTES_MAX,
};

/// A counter that moves whenever a permission may have changed (a namespace's policies, a
/// tenant's admin roles); the front ends' per-connection caches compare it. Shared by the
/// services that write what it covers. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct PermissionsVersion(Arc<AtomicU64>);

impl PermissionsVersion {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    pub(crate) fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// The permissions service.
pub(crate) struct Permissions {
    superuser_roles: Vec<String>,
    enabled: bool,
    version: PermissionsVersion,
    tenants: Tenants,
    namespaces: Namespaces,
}

impl Permissions {
    pub(crate) fn new(
        superuser_roles: Vec<String>,
        enabled: bool,
        version: PermissionsVersion,
        tenants: Tenants,
        namespaces: Namespaces,
    ) -> Self {
        Self {
            superuser_roles,
            enabled,
            version,
            tenants,
            namespaces,
        }
    }

    /// Changes whenever a policy or a tenant's admin roles change: a cached decision taken
    /// under another version is stale.
    pub(crate) fn version(&self) -> u64 {
        self.version.get()
    }

    pub(crate) fn is_superuser(&self, role: &str) -> bool {
        self.superuser_roles.iter().any(|r| r == role)
    }

    /// Superuser, or one of the tenant's admin roles.
    pub(crate) async fn is_tenant_admin(&self, role: &str, tenant: &TenantName) -> Result<bool> {
        if self.is_superuser(role) {
            return Ok(true);
        }
        Ok(self
            .tenants
            .get(tenant)
            .await?
            .is_some_and(|info| info.admin_roles.iter().any(|r| r == role)))
    }

    /// Is authorization on (Pulsar's `authorizationEnabled`)?
    pub(crate) fn authorization_enabled(&self) -> bool {
        self.enabled
    }

    /// The front ends' check: with authorization off everything is allowed; with it on, a
    /// client without a role (unauthenticated) is refused everything, and a role gets what
    /// [`Self::authorize`] decides.
    pub(crate) async fn check_access(
        &self,
        role: Option<&str>,
        topic: &TopicName,
        access: &Access,
    ) -> Result<bool> {
        self.check_access_from(role, None, topic, access).await
    }

    /// [`Self::check_access`] for a client connected from `host` (rules of one host apply).
    pub(crate) async fn check_access_from(
        &self,
        role: Option<&str>,
        host: Option<IpAddr>,
        topic: &TopicName,
        access: &Access,
    ) -> Result<bool> {
        if !self.authorization_enabled() {
            return Ok(true);
        }
        match role {
            None => Ok(false),
            Some(role) => self.authorize_from(role, host, topic, access).await,
        }
    }

    /// May `role` administer `tenant` (superuser or one of its admin roles)? Always with
    /// authorization off; never for a client without a role.
    pub(crate) async fn check_tenant_admin(
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
    pub(crate) fn check_superuser(&self, role: Option<&str>) -> bool {
        !self.authorization_enabled() || role.is_some_and(|r| self.is_superuser(r))
    }

    /// May `role` use the Kafka group `group`, whose permissions live in `namespace` (the
    /// client's namespace)? Tenant admins may; others per [`AuthPolicies::allows_group`].
    pub(crate) async fn authorize_group(
        &self,
        role: &str,
        namespace: &NamespaceName,
        group: &str,
    ) -> Result<bool> {
        self.authorize_group_from(role, None, namespace, group)
            .await
    }

    /// [`Self::authorize_group`] for a client connected from `host`.
    pub(crate) async fn authorize_group_from(
        &self,
        role: &str,
        host: Option<IpAddr>,
        namespace: &NamespaceName,
        group: &str,
    ) -> Result<bool> {
        if self.is_superuser(role) {
            return Ok(true);
        }
        let policies = self.namespaces.policies(namespace).await?;
        if policies
            .as_ref()
            .is_some_and(|p| p.auth_policies.denies_group_from(role, host, group))
        {
            return Ok(false);
        }
        if self.is_tenant_admin(role, &namespace.tenant).await? {
            return Ok(true);
        }
        Ok(policies.is_some_and(|p| p.auth_policies.allows_group_from(role, host, group)))
    }

    /// [`Self::authorize_group`] behind the authorization switch, as [`Self::check_access`].
    pub(crate) async fn check_group(
        &self,
        role: Option<&str>,
        namespace: &NamespaceName,
        group: &str,
    ) -> Result<bool> {
        self.check_group_from(role, None, namespace, group).await
    }

    /// [`Self::check_group`] for a client connected from `host`.
    pub(crate) async fn check_group_from(
        &self,
        role: Option<&str>,
        host: Option<IpAddr>,
        namespace: &NamespaceName,
        group: &str,
    ) -> Result<bool> {
        if !self.authorization_enabled() {
            return Ok(true);
        }
        match role {
            None => Ok(false),
            Some(role) => {
                self.authorize_group_from(role, host, namespace, group)
                    .await
            }
        }
    }

    /// Whether a DENY rule refuses `role` from `host` the transactional id `id` of `namespace`
    /// (deny overrides any allow, including the namespace produce permission Kafka transactional
    /// ids are mapped onto). Superusers are never refused.
    pub(crate) async fn transactional_id_denied(
        &self,
        role: Option<&str>,
        host: Option<IpAddr>,
        namespace: &NamespaceName,
        id: &str,
        wanted: RuleAction,
    ) -> Result<bool> {
        let Some(role) = role.filter(|_| self.authorization_enabled()) else {
            return Ok(false);
        };
        if self.is_superuser(role) {
            return Ok(false);
        }
        let Some(policies) = self.namespaces.policies(namespace).await? else {
            return Ok(false);
        };
        Ok(policies.auth_policies.rule_decides(
            RuleResource::TransactionalId,
            id,
            role,
            host,
            wanted,
            true,
        ))
    }

    /// May `role` from `host` use the Kafka transactional id `id` of `namespace` (the client's
    /// namespace) for `wanted`? Always with authorization off; never without a role; superusers
    /// always; tenant admins unless a deny rule refuses them; other roles per
    /// [`AuthPolicies::allows_transactional_id`] (an allow rule is needed, as in Kafka).
    pub(crate) async fn check_transactional_id(
        &self,
        role: Option<&str>,
        host: Option<IpAddr>,
        namespace: &NamespaceName,
        id: &str,
        wanted: RuleAction,
    ) -> Result<bool> {
        if !self.authorization_enabled() {
            return Ok(true);
        }
        let Some(role) = role else {
            return Ok(false);
        };
        if self.is_superuser(role) {
            return Ok(true);
        }
        let Some(policies) = self.namespaces.policies(namespace).await? else {
            return self.is_tenant_admin(role, &namespace.tenant).await;
        };
        let auth = &policies.auth_policies;
        if auth.rule_decides(RuleResource::TransactionalId, id, role, host, wanted, true) {
            return Ok(false);
        }
        Ok(self.is_tenant_admin(role, &namespace.tenant).await?
            || auth.allows_transactional_id(role, host, id, wanted))
    }

    /// May `role` do `access` on `topic`? (See the module documentation for the rules.) An
    /// unknown namespace grants nothing but to superusers and tenant admins. A deny rule
    /// refuses tenant admins too (Kafka: deny overrides allow); superusers bypass it.
    pub(crate) async fn authorize(
        &self,
        role: &str,
        topic: &TopicName,
        access: &Access,
    ) -> Result<bool> {
        self.authorize_from(role, None, topic, access).await
    }

    /// [`Self::authorize`] for a client connected from `host` (`None`: not known; only rules
    /// of every host apply).
    pub(crate) async fn authorize_from(
        &self,
        role: &str,
        host: Option<IpAddr>,
        topic: &TopicName,
        access: &Access,
    ) -> Result<bool> {
        if self.is_superuser(role) {
            return Ok(true);
        }
        let policies = self.namespaces.policies(&topic.namespace).await?;
        if policies
            .as_ref()
            .is_some_and(|p| p.auth_policies.denies_from(topic, role, host, access))
        {
            return Ok(false);
        }
        if self.is_tenant_admin(role, &topic.namespace.tenant).await? {
            return Ok(true);
        }
        Ok(policies.is_some_and(|p| p.auth_policies.allows_from(topic, role, host, access)))
    }

    pub(crate) async fn namespace_permissions(&self, namespace: &NamespaceName) -> Result<Grants> {
        Ok(self
            .namespaces
            .existing_policies(namespace)
            .await?
            .auth_policies
            .namespace_auth)
    }

    /// Grants `actions` to `role` on every topic of the namespace (replacing its earlier grant).
    pub(crate) async fn grant_namespace_permission(
        &self,
        namespace: &NamespaceName,
        role: &str,
        actions: BTreeSet<AuthAction>,
    ) -> Result<()> {
        check_role(role)?;
        let mut full = false;
        self.namespaces
            .update(namespace, |p| {
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

    pub(crate) async fn revoke_namespace_permission(
        &self,
        namespace: &NamespaceName,
        role: &str,
    ) -> Result<()> {
        self.namespaces
            .update(namespace, |p| {
                p.auth_policies.namespace_auth.remove(role);
            })
            .await?;
        Ok(())
    }

    /// The grants that apply to a topic: its namespace's merged with its own.
    pub(crate) async fn topic_permissions(&self, topic: &TopicName) -> Result<Grants> {
        Ok(self
            .namespaces
            .existing_policies(&topic.namespace)
            .await?
            .auth_policies
            .topic_grants(topic))
    }

    pub(crate) async fn grant_topic_permission(
        &self,
        topic: &TopicName,
        role: &str,
        actions: BTreeSet<AuthAction>,
    ) -> Result<()> {
        check_role(role)?;
        let key = permission_key(topic);
        let mut full = false;
        self.namespaces
            .update(&topic.namespace, |p| {
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

    pub(crate) async fn revoke_topic_permission(
        &self,
        topic: &TopicName,
        role: &str,
    ) -> Result<()> {
        let key = permission_key(topic);
        self.namespaces
            .update(&topic.namespace, |p| {
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
    pub(crate) async fn grant_subscription_permission(
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
        self.namespaces
            .update(namespace, |p| {
                p.auth_policies
                    .subscription_auth_roles
                    .entry(subscription.to_string())
                    .or_default()
                    .extend(roles.iter().cloned());
            })
            .await?;
        Ok(())
    }

    pub(crate) async fn revoke_subscription_permission(
        &self,
        namespace: &NamespaceName,
        subscription: &str,
        role: &str,
    ) -> Result<()> {
        self.namespaces
            .update(namespace, |p| {
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
    pub(crate) async fn change_denies(
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
        self.namespaces
            .update(namespace, |p| {
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
    pub(crate) async fn change_subscription_deny(
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
        self.namespaces
            .update(namespace, |p| {
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

    /// Adds (`add`) or removes a rule of the namespace (a prefixed, host-bound or
    /// transactional-id Kafka ACL). Adding a rule already there, or removing one that is not, is
    /// no change.
    pub(crate) async fn change_acl_rule(
        &self,
        namespace: &NamespaceName,
        rule: &AclRule,
        add: bool,
    ) -> Result<()> {
        if add {
            rule.check()?;
        }
        let mut full = false;
        self.namespaces
            .update(namespace, |p| {
                let rules = &mut p.auth_policies.acl_rules;
                if !add {
                    rules.remove(rule);
                } else if rules.len() >= ROLES_MAX && !rules.contains(rule) {
                    full = true;
                } else {
                    rules.insert(rule.clone());
                }
            })
            .await?;
        if full {
            return Err(Error::InvalidRequest(format!(
                "namespace '{namespace}' already has {ROLES_MAX} ACL rules"
            )));
        }
        Ok(())
    }

    /// The namespace's permissions: Pulsar's auth policies, grants and deny rules.
    pub(crate) async fn auth_policies(&self, namespace: &NamespaceName) -> Result<AuthPolicies> {
        Ok(self
            .namespaces
            .existing_policies(namespace)
            .await?
            .auth_policies)
    }

    /// Subscription -> roles of the namespace.
    pub(crate) async fn subscription_permissions(
        &self,
        namespace: &NamespaceName,
    ) -> Result<BTreeMap<String, BTreeSet<String>>> {
        Ok(self
            .namespaces
            .existing_policies(namespace)
            .await?
            .auth_policies
            .subscription_auth_roles)
    }
}
