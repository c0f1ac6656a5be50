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
//! Rules that Pulsar's grant maps cannot hold ([`AclRule`], made with Kafka's ACL APIs) sit
//! beside them too: a **prefixed** resource pattern (a rule on `orders-` applies to every topic,
//! group or transactional id whose name starts with it), a **host** (a rule for `10.0.0.1`
//! applies only to connections from that address; `*` to all), and transactional ids. They are
//! decided with the grants and deny rules above (an allow rule grants like a grant, a deny rule
//! refuses like a deny rule), on both protocols: the front ends pass the client's address
//! ([`AccessCache::for_host`]).
//!
//! Front ends cache decisions per connection; [`Broker::permissions_version`] changes whenever a
//! policy or a tenant's admin roles change, which invalidates those caches.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
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

/// The host of a rule that applies to connections from every address.
pub const EVERY_HOST: &str = "*";

/// The name of a literal rule that applies to every resource of its kind in the namespace.
pub const EVERY_NAME: &str = "*";

/// What an [`AclRule`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleResource {
    /// A topic of the namespace, by its local name.
    Topic,
    /// A subscription (Kafka group) of the namespace.
    Group,
    /// A Kafka transactional id of the namespace's clients.
    TransactionalId,
}

/// How an [`AclRule`]'s name matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RulePattern {
    /// The exact name, or every name when it is [`EVERY_NAME`].
    Literal,
    /// Every name that starts with it.
    Prefixed,
}

/// What an [`AclRule`] allows or refuses: `Produce` (Kafka `WRITE`), `Consume` (`READ`; a group
/// rule's only action besides `All`), `Lookup` (`DESCRIBE`: metadata, offsets; allowed by any
/// other allowed action), `All`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Produce,
    Consume,
    Lookup,
    All,
}

impl RuleAction {
    /// Does this action, allowed or refused, cover `wanted`? `All` covers everything; an allowed
    /// `Produce` or `Consume` also covers `Lookup` (`allow`), as a grant of either lets a role
    /// look the topic up.
    fn covers(self, wanted: RuleAction, allow: bool) -> bool {
        self == wanted
            || self == RuleAction::All
            || (allow && wanted == RuleAction::Lookup && self != RuleAction::Lookup)
    }

    /// The deny rule this action is when refused (topic listings).
    pub fn denied(self) -> DeniedAction {
        match self {
            RuleAction::Produce => DeniedAction::Produce,
            RuleAction::Consume => DeniedAction::Consume,
            RuleAction::Lookup => DeniedAction::Lookup,
            RuleAction::All => DeniedAction::All,
        }
    }

    /// The grants this action is when allowed (topic listings).
    pub fn granted(self) -> &'static [AuthAction] {
        match self {
            RuleAction::Produce => &[AuthAction::Produce],
            RuleAction::Consume => &[AuthAction::Consume],
            RuleAction::Lookup => &[],
            RuleAction::All => &[AuthAction::Produce, AuthAction::Consume],
        }
    }
}

/// A rule the grant maps cannot hold: a prefixed pattern, a host other than `*`, or a
/// transactional id. One rule is one Kafka ACL binding of the namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclRule {
    pub resource: RuleResource,
    pub pattern: RulePattern,
    /// A topic's local name (or its prefix), a group, a transactional id; with `Literal`,
    /// [`EVERY_NAME`] is every one of the namespace.
    pub name: String,
    /// A role; [`EVERY_ROLE`] (every role but superusers) only in deny rules.
    pub role: String,
    /// [`EVERY_HOST`] or an IP address (canonical text): the rule applies to connections from
    /// that address only.
    pub host: String,
    pub deny: bool,
    pub action: RuleAction,
}

impl AclRule {
    /// Does the rule name `name` (a resource of kind `resource`)?
    pub fn names(&self, resource: RuleResource, name: &str) -> bool {
        self.resource == resource
            && match self.pattern {
                RulePattern::Literal => self.name == name || self.name == EVERY_NAME,
                RulePattern::Prefixed => name.starts_with(self.name.as_str()),
            }
    }

    /// Does the rule apply to `role` connected from `host` (`None`: an address not known, which
    /// only rules for every host match)?
    pub fn applies_to(&self, role: &str, host: Option<IpAddr>) -> bool {
        (self.role == role || (self.deny && self.role == EVERY_ROLE))
            && (self.host == EVERY_HOST || host.is_some_and(|h| host_text(h) == self.host))
    }

    /// How listings in Pulsar's shape show the rule's role: `role`, or `role@host` for a rule of
    /// one host.
    pub fn shown_role(&self) -> String {
        if self.host == EVERY_HOST {
            self.role.clone()
        } else {
            format!("{}@{}", self.role, self.host)
        }
    }

    /// How listings in Pulsar's shape show the rule's name: `name`, or `name*` for a prefix.
    pub fn shown_name(&self) -> String {
        match self.pattern {
            RulePattern::Literal => self.name.clone(),
            RulePattern::Prefixed => format!("{}*", self.name),
        }
    }

    /// Checks a rule before it is stored.
    pub fn check(&self) -> Result<()> {
        check_role(&self.role)?;
        if self.name.is_empty()
            || self.name.len() > ROLE_BYTES_MAX
            || self.name.chars().any(char::is_control)
        {
            return Err(Error::InvalidRequest(format!(
                "invalid resource name (1 to {ROLE_BYTES_MAX} bytes, no control characters)"
            )));
        }
        if self.host != EVERY_HOST && parse_host(&self.host)? != self.host {
            return Err(Error::InvalidRequest(format!(
                "host '{}' is not in canonical form",
                self.host
            )));
        }
        if !self.deny && self.role == EVERY_ROLE {
            return Err(Error::InvalidRequest(
                "an allow rule names a role: '*' (every role) only refuses".into(),
            ));
        }
        Ok(())
    }
}

/// An address as rules name it: IPv4-mapped IPv6 addresses as IPv4.
pub fn host_text(host: IpAddr) -> String {
    host.to_canonical().to_string()
}

/// A rule's host from a client (`*`, or an IPv4 or IPv6 address), in the canonical text rules
/// store. Host names are refused: rules match the connection's address.
pub fn parse_host(host: &str) -> Result<String> {
    if host == EVERY_HOST {
        return Ok(host.to_string());
    }
    host.parse::<IpAddr>().map(host_text).map_err(|_| {
        Error::InvalidRequest(format!(
            "host '{host}' is neither '*' nor an IP address (rules match the client's address)"
        ))
    })
}

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
    /// Prefixed, host-bound and transactional-id rules (Kafka ACLs the maps above cannot hold).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub acl_rules: BTreeSet<AclRule>,
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
    fn has(&self, topic: &TopicName, role: &str, host: Option<IpAddr>, action: AuthAction) -> bool {
        let key = permission_key(topic);
        let granted = |g: &Grants| g.get(role).is_some_and(|a| a.contains(&action));
        let wanted = match action {
            AuthAction::Produce => RuleAction::Produce,
            _ => RuleAction::Consume,
        };
        granted(&self.namespace_auth)
            || self.destination_auth.get(&key).is_some_and(granted)
            || self.rule_decides(RuleResource::Topic, &topic.local, role, host, wanted, false)
    }

    /// Is there a rule (a deny rule with `deny`, else an allow rule) on the resource `name` for
    /// `role` from `host` whose action covers `wanted`?
    fn rule_decides(
        &self,
        resource: RuleResource,
        name: &str,
        role: &str,
        host: Option<IpAddr>,
        wanted: RuleAction,
        deny: bool,
    ) -> bool {
        self.acl_rules.iter().any(|r| {
            r.deny == deny
                && r.names(resource, name)
                && r.applies_to(role, host)
                && r.action.covers(wanted, !deny)
        })
    }

    /// Is `role` refused `access` on `topic` by a deny rule (of the namespace, the topic, or the
    /// subscription used), from an address not known (rules of every host only)?
    pub fn denies(&self, topic: &TopicName, role: &str, access: &Access) -> bool {
        self.denies_from(topic, role, None, access)
    }

    /// [`AuthPolicies::denies`] for a client connected from `host`.
    pub fn denies_from(
        &self,
        topic: &TopicName,
        role: &str,
        host: Option<IpAddr>,
        access: &Access,
    ) -> bool {
        let key = permission_key(topic);
        let refused = |action: DeniedAction, wanted: RuleAction| {
            let hit = |d: &Denies| {
                [role, EVERY_ROLE].iter().any(|r| {
                    d.get(*r)
                        .is_some_and(|a| a.contains(&action) || a.contains(&DeniedAction::All))
                })
            };
            hit(&self.namespace_deny)
                || self.destination_deny.get(&key).is_some_and(hit)
                || self.rule_decides(RuleResource::Topic, &topic.local, role, host, wanted, true)
        };
        match access {
            Access::Produce => refused(DeniedAction::Produce, RuleAction::Produce),
            Access::Consume { subscription } => {
                refused(DeniedAction::Consume, RuleAction::Consume)
                    || subscription
                        .as_ref()
                        .is_some_and(|s| self.denies_group_from(role, host, s))
            }
            Access::Lookup => refused(DeniedAction::Lookup, RuleAction::Lookup),
            Access::Admin => refused(DeniedAction::All, RuleAction::All),
        }
    }

    /// Is `role` refused the subscription (Kafka group) `group` by a deny rule (naming it or
    /// every role)?
    pub fn denies_group(&self, role: &str, group: &str) -> bool {
        self.denies_group_from(role, None, group)
    }

    /// [`AuthPolicies::denies_group`] for a client connected from `host`.
    pub fn denies_group_from(&self, role: &str, host: Option<IpAddr>, group: &str) -> bool {
        self.subscription_deny_roles
            .get(group)
            .is_some_and(|roles| roles.contains(role) || roles.contains(EVERY_ROLE))
            || self.rule_decides(
                RuleResource::Group,
                group,
                role,
                host,
                RuleAction::Consume,
                true,
            )
    }

    /// May `role` from `host` use the subscription `group`, as far as its role list goes? A
    /// subscription with no roles listed (in the subscription permissions or by allow rules that
    /// name it) is open to every role that may consume.
    fn subscription_open(&self, group: &str, role: &str, host: Option<IpAddr>) -> bool {
        let listed = self
            .subscription_auth_roles
            .get(group)
            .filter(|roles| !roles.is_empty());
        let rules = || {
            self.acl_rules
                .iter()
                .filter(|r| !r.deny && r.names(RuleResource::Group, group))
        };
        if listed.is_none() && rules().next().is_none() {
            return true;
        }
        listed.is_some_and(|roles| roles.contains(role))
            || rules().any(|r| r.applies_to(role, host))
    }

    /// The deny rules that apply to a topic: its namespace's merged with its own and with the
    /// rules naming it (a rule of one host under `role@host`).
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
        for rule in self.topic_rules(topic, true) {
            merged
                .entry(rule.shown_role())
                .or_default()
                .insert(rule.action.denied());
        }
        merged
    }

    /// The rules (deny rules with `deny`, else allow rules) that name `topic`.
    fn topic_rules<'a>(
        &'a self,
        topic: &'a TopicName,
        deny: bool,
    ) -> impl Iterator<Item = &'a AclRule> + 'a {
        self.acl_rules
            .iter()
            .filter(move |r| r.deny == deny && r.names(RuleResource::Topic, &topic.local))
    }

    /// The decision for a role that is neither superuser nor tenant admin: a grant, and no deny.
    pub fn allows(&self, topic: &TopicName, role: &str, access: &Access) -> bool {
        self.allows_from(topic, role, None, access)
    }

    /// [`AuthPolicies::allows`] for a client connected from `host`.
    pub fn allows_from(
        &self,
        topic: &TopicName,
        role: &str,
        host: Option<IpAddr>,
        access: &Access,
    ) -> bool {
        if self.denies_from(topic, role, host, access) {
            return false;
        }
        match access {
            Access::Produce => self.has(topic, role, host, AuthAction::Produce),
            Access::Consume { subscription } => {
                let subscription_ok = subscription
                    .as_ref()
                    .is_none_or(|s| self.subscription_open(s, role, host));
                subscription_ok && self.has(topic, role, host, AuthAction::Consume)
            }
            Access::Lookup => {
                self.has(topic, role, host, AuthAction::Produce)
                    || self.has(topic, role, host, AuthAction::Consume)
                    || self.rule_decides(
                        RuleResource::Topic,
                        &topic.local,
                        role,
                        host,
                        RuleAction::Lookup,
                        false,
                    )
            }
            Access::Admin => false,
        }
    }

    /// May `role` use the subscription (Kafka group) `group` of this namespace? It needs
    /// `consume` somewhere in the namespace (on the namespace or on one of its topics), and, when
    /// the subscription has roles listed, to be among them. What it may then read is decided per
    /// topic (Fetch, OffsetCommit).
    pub fn allows_group(&self, role: &str, group: &str) -> bool {
        self.allows_group_from(role, None, group)
    }

    /// [`AuthPolicies::allows_group`] for a client connected from `host`.
    pub fn allows_group_from(&self, role: &str, host: Option<IpAddr>, group: &str) -> bool {
        if self.denies_group_from(role, host, group) {
            return false;
        }
        let consumes = |g: &Grants| {
            g.get(role)
                .is_some_and(|a| a.contains(&AuthAction::Consume))
        };
        let consumes_by_rule = self.acl_rules.iter().any(|r| {
            !r.deny
                && r.resource == RuleResource::Topic
                && r.applies_to(role, host)
                && r.action.covers(RuleAction::Consume, true)
        });
        self.subscription_open(group, role, host)
            && (consumes(&self.namespace_auth)
                || self.destination_auth.values().any(consumes)
                || consumes_by_rule)
    }

    /// May `role` from `host` use the transactional id `id` for `wanted` (`Produce`: Kafka
    /// `WRITE`, transactions; `Lookup`: `DESCRIBE`, finding its coordinator)? As in Kafka, only
    /// an allow rule naming it grants it, and a deny rule refuses it.
    pub fn allows_transactional_id(
        &self,
        role: &str,
        host: Option<IpAddr>,
        id: &str,
        wanted: RuleAction,
    ) -> bool {
        let resource = RuleResource::TransactionalId;
        !self.rule_decides(resource, id, role, host, wanted, true)
            && self.rule_decides(resource, id, role, host, wanted, false)
    }

    /// The grants on a topic as Pulsar's "get permissions on a topic" reports them: the
    /// namespace's grants merged with the topic's own and with the allow rules naming it (a rule
    /// of one host under `role@host`).
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
        for rule in self.topic_rules(topic, false) {
            merged
                .entry(rule.shown_role())
                .or_default()
                .extend(rule.action.granted().iter().copied());
        }
        merged
    }

    /// The topic rules of the namespace as Pulsar-shaped listings show them beside the namespace's
    /// grants: `role[@host][ on name*]` -> actions, grants and deny rules apart. A rule on one
    /// topic is shown with that topic's grants instead.
    pub fn namespace_rules(&self) -> (Grants, Denies) {
        let (mut grants, mut denies) = (Grants::new(), Denies::new());
        for rule in &self.acl_rules {
            if rule.resource != RuleResource::Topic
                || (rule.pattern == RulePattern::Literal && rule.name != EVERY_NAME)
            {
                continue;
            }
            let key = match rule.pattern {
                RulePattern::Literal => rule.shown_role(),
                RulePattern::Prefixed => format!("{} on {}", rule.shown_role(), rule.shown_name()),
            };
            if rule.deny {
                denies.entry(key).or_default().insert(rule.action.denied());
            } else {
                grants
                    .entry(key)
                    .or_default()
                    .extend(rule.action.granted().iter().copied());
            }
        }
        (grants, denies)
    }

    /// The group rules as the subscription listing shows them: subscription (`name*` for a
    /// prefix) -> roles (`role@host` for a rule of one host), allow rules and deny rules apart.
    pub fn subscription_rules(
        &self,
    ) -> (
        BTreeMap<String, BTreeSet<String>>,
        BTreeMap<String, BTreeSet<String>>,
    ) {
        let (mut allowed, mut denied) = (BTreeMap::new(), BTreeMap::new());
        for rule in self
            .acl_rules
            .iter()
            .filter(|r| r.resource == RuleResource::Group)
        {
            let map: &mut BTreeMap<String, BTreeSet<String>> =
                if rule.deny { &mut denied } else { &mut allowed };
            map.entry(rule.shown_name())
                .or_default()
                .insert(rule.shown_role());
        }
        (allowed, denied)
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
        self.check_access_from(role, None, topic, access).await
    }

    /// [`Broker::check_access`] for a client connected from `host` (rules of one host apply).
    pub async fn check_access_from(
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
        self.authorize_group_from(role, None, namespace, group)
            .await
    }

    /// [`Broker::authorize_group`] for a client connected from `host`.
    pub async fn authorize_group_from(
        &self,
        role: &str,
        host: Option<IpAddr>,
        namespace: &NamespaceName,
        group: &str,
    ) -> Result<bool> {
        if self.is_superuser(role) {
            return Ok(true);
        }
        let policies = self.namespace_policies(namespace).await?;
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

    /// [`Broker::authorize_group`] behind the authorization switch, as [`Broker::check_access`].
    pub async fn check_group(
        &self,
        role: Option<&str>,
        namespace: &NamespaceName,
        group: &str,
    ) -> Result<bool> {
        self.check_group_from(role, None, namespace, group).await
    }

    /// [`Broker::check_group`] for a client connected from `host`.
    pub async fn check_group_from(
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
    pub async fn transactional_id_denied(
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
        let Some(policies) = self.namespace_policies(namespace).await? else {
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
    pub async fn check_transactional_id(
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
        let Some(policies) = self.namespace_policies(namespace).await? else {
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
    pub async fn authorize(&self, role: &str, topic: &TopicName, access: &Access) -> Result<bool> {
        self.authorize_from(role, None, topic, access).await
    }

    /// [`Broker::authorize`] for a client connected from `host` (`None`: not known; only rules
    /// of every host apply).
    pub async fn authorize_from(
        &self,
        role: &str,
        host: Option<IpAddr>,
        topic: &TopicName,
        access: &Access,
    ) -> Result<bool> {
        if self.is_superuser(role) {
            return Ok(true);
        }
        let policies = self.namespace_policies(&topic.namespace).await?;
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

    /// Adds (`add`) or removes a rule of the namespace (a prefixed, host-bound or
    /// transactional-id Kafka ACL). Adding a rule already there, or removing one that is not, is
    /// no change.
    pub async fn change_acl_rule(
        &self,
        namespace: &NamespaceName,
        rule: &AclRule,
        add: bool,
    ) -> Result<()> {
        if add {
            rule.check()?;
        }
        let mut full = false;
        self.update_namespace_policies(namespace, |p| {
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

    fn rule(
        resource: RuleResource,
        pattern: RulePattern,
        name: &str,
        role: &str,
        host: &str,
        deny: bool,
        action: RuleAction,
    ) -> AclRule {
        AclRule {
            resource,
            pattern,
            name: name.into(),
            role: role.into(),
            host: host.into(),
            deny,
            action,
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_prefixed_rule_names_every_resource_starting_with_it() {
        use RulePattern::*;
        use RuleResource::*;
        let r = rule(
            Topic,
            Prefixed,
            "orders-",
            "app",
            "*",
            false,
            RuleAction::Produce,
        );
        assert!(r.names(Topic, "orders-eu") && r.names(Topic, "orders-"));
        assert!(!r.names(Topic, "orders") && !r.names(Topic, "xorders-eu"));
        assert!(
            !r.names(Group, "orders-eu"),
            "a topic rule does not name groups"
        );
        let literal = rule(Group, Literal, "g", "app", "*", false, RuleAction::Consume);
        assert!(literal.names(Group, "g") && !literal.names(Group, "g2"));
        let every = rule(
            Topic,
            Literal,
            EVERY_NAME,
            "app",
            "*",
            false,
            RuleAction::Consume,
        );
        assert!(every.names(Topic, "anything"));
        // A prefix '*' is the character, not a wildcard.
        let star = rule(Topic, Prefixed, "*", "app", "*", false, RuleAction::Consume);
        assert!(star.names(Topic, "*x") && !star.names(Topic, "x"));
    }

    #[test]
    fn a_rule_of_one_host_applies_to_connections_from_that_address_only() {
        let r = rule(
            RuleResource::Topic,
            RulePattern::Literal,
            "t",
            "app",
            "10.0.0.1",
            false,
            RuleAction::Consume,
        );
        assert!(r.applies_to("app", ip("10.0.0.1")));
        assert!(r.applies_to("app", ip("::ffff:10.0.0.1")), "IPv4-mapped");
        assert!(!r.applies_to("app", ip("10.0.0.2")));
        assert!(!r.applies_to("app", None), "an unknown address");
        assert!(!r.applies_to("other", ip("10.0.0.1")));
        let any_host = AclRule {
            host: EVERY_HOST.into(),
            ..r.clone()
        };
        assert!(any_host.applies_to("app", None) && any_host.applies_to("app", ip("::1")));
        // '*' as a role: deny rules only.
        let everyone = AclRule {
            role: EVERY_ROLE.into(),
            ..any_host.clone()
        };
        assert!(!everyone.applies_to("app", None) && everyone.check().is_err());
        let deny_everyone = AclRule {
            deny: true,
            ..everyone
        };
        assert!(deny_everyone.applies_to("app", None) && deny_everyone.check().is_ok());
        assert_eq!(parse_host("::FFFF:10.0.0.1").unwrap(), "10.0.0.1");
        assert_eq!(parse_host("*").unwrap(), "*");
        assert!(parse_host("broker.example.com").is_err());
        assert!(AclRule {
            host: "010.0.0.1".into(),
            ..any_host
        }
        .check()
        .is_err());
    }

    #[test]
    fn prefixed_and_host_rules_grant_and_deny_like_the_maps() {
        use RuleAction::*;
        let mut p = AuthPolicies::default();
        let t = |local: &str| topic(&format!("persistent://t/ns/{local}"));
        let consume = Access::Consume { subscription: None };
        let from = ip("127.0.0.1");
        let elsewhere = ip("10.1.1.1");
        p.acl_rules.insert(rule(
            RuleResource::Topic,
            RulePattern::Prefixed,
            "orders-",
            "app",
            "*",
            false,
            All,
        ));
        assert!(p.allows_from(&t("orders-eu"), "app", from, &Access::Produce));
        assert!(p.allows_from(&t("orders-eu"), "app", None, &consume));
        assert!(p.allows_from(&t("orders-eu"), "app", from, &Access::Lookup));
        assert!(!p.allows_from(&t("order"), "app", from, &Access::Lookup));
        assert!(!p.allows_from(&t("orders-eu"), "app", from, &Access::Admin));
        assert!(!p.allows_from(&t("orders-eu"), "other", from, &consume));
        // A deny of one host, on a longer prefix: refused from that address only.
        p.acl_rules.insert(rule(
            RuleResource::Topic,
            RulePattern::Prefixed,
            "orders-eu",
            "app",
            "127.0.0.1",
            true,
            Produce,
        ));
        assert!(!p.allows_from(&t("orders-eu-1"), "app", from, &Access::Produce));
        assert!(p.denies_from(&t("orders-eu-1"), "app", from, &Access::Produce));
        assert!(p.allows_from(&t("orders-eu-1"), "app", elsewhere, &Access::Produce));
        assert!(p.allows_from(&t("orders-eu-1"), "app", from, &consume));
        assert!(p.allows_from(&t("orders-us"), "app", from, &Access::Produce));
        // An allow of one host.
        p.acl_rules.insert(rule(
            RuleResource::Topic,
            RulePattern::Literal,
            "audit",
            "reader",
            "127.0.0.1",
            false,
            Consume,
        ));
        assert!(p.allows_from(&t("audit"), "reader", from, &consume));
        assert!(p.allows_from(&t("audit"), "reader", from, &Access::Lookup));
        assert!(!p.allows_from(&t("audit"), "reader", elsewhere, &consume));
        assert!(!p.allows_from(&t("audit"), "reader", from, &Access::Produce));
        // A deny of every role on a prefix beats a namespace grant.
        p.namespace_auth
            .insert("ns-user".into(), [AuthAction::Produce].into());
        p.acl_rules.insert(rule(
            RuleResource::Topic,
            RulePattern::Prefixed,
            "secret",
            EVERY_ROLE,
            "*",
            true,
            All,
        ));
        assert!(p.allows_from(&t("public"), "ns-user", from, &Access::Produce));
        assert!(!p.allows_from(&t("secret-1"), "ns-user", from, &Access::Produce));
        assert!(p.denies_from(&t("secret-1"), "app", None, &Access::Admin));
        // Listings: the rules that name a topic, `role@host` for one host.
        let grants = p.topic_grants(&t("orders-eu-1"));
        assert_eq!(
            grants["app"],
            [AuthAction::Produce, AuthAction::Consume].into()
        );
        let denies = p.topic_denies(&t("orders-eu-1"));
        assert_eq!(denies["app@127.0.0.1"], [DeniedAction::Produce].into());
        let (ns_grants, ns_denies) = p.namespace_rules();
        assert!(ns_grants.contains_key("app on orders-*"), "{ns_grants:?}");
        assert!(ns_denies.contains_key("* on secret*"), "{ns_denies:?}");
        assert!(!ns_grants.keys().any(|k| k.starts_with("reader")));
    }

    #[test]
    fn group_and_transactional_id_rules() {
        use RuleAction::*;
        let mut p = AuthPolicies::default();
        p.namespace_auth
            .insert("app".into(), [AuthAction::Consume].into());
        p.namespace_auth
            .insert("other".into(), [AuthAction::Consume].into());
        let from = ip("127.0.0.1");
        // An allow on a group prefix lists the role: other roles are closed out of those groups.
        p.acl_rules.insert(rule(
            RuleResource::Group,
            RulePattern::Prefixed,
            "billing-",
            "app",
            "*",
            false,
            Consume,
        ));
        assert!(p.allows_group_from("app", from, "billing-1"));
        assert!(!p.allows_group_from("other", from, "billing-1"));
        assert!(p.allows_group_from("other", from, "reports"));
        let with = |s: &str| Access::Consume {
            subscription: Some(s.into()),
        };
        let t = topic("persistent://t/ns/x");
        assert!(p.allows_from(&t, "app", from, &with("billing-1")));
        assert!(!p.allows_from(&t, "other", from, &with("billing-1")));
        // A deny of one host on a group prefix.
        p.acl_rules.insert(rule(
            RuleResource::Group,
            RulePattern::Prefixed,
            "billing-eu",
            "app",
            "127.0.0.1",
            true,
            All,
        ));
        assert!(!p.allows_group_from("app", from, "billing-eu-1"));
        assert!(p.allows_group_from("app", ip("10.0.0.9"), "billing-eu-1"));
        assert!(!p.allows_from(&t, "app", from, &with("billing-eu-1")));
        // Transactional ids: an allow rule is needed; WRITE covers DESCRIBE; a deny wins.
        assert!(!p.allows_transactional_id("app", from, "tx-1", Produce));
        p.acl_rules.insert(rule(
            RuleResource::TransactionalId,
            RulePattern::Prefixed,
            "tx-",
            "app",
            "*",
            false,
            Produce,
        ));
        assert!(p.allows_transactional_id("app", from, "tx-1", Produce));
        assert!(p.allows_transactional_id("app", from, "tx-1", Lookup));
        assert!(!p.allows_transactional_id("app", from, "ty-1", Produce));
        p.acl_rules.insert(rule(
            RuleResource::TransactionalId,
            RulePattern::Literal,
            "tx-9",
            EVERY_ROLE,
            "*",
            true,
            Produce,
        ));
        assert!(!p.allows_transactional_id("app", from, "tx-9", Produce));
        assert!(p.allows_transactional_id("app", from, "tx-9", Lookup));
        // A literal '*' names every group: a deny of every group for one role.
        p.acl_rules.insert(rule(
            RuleResource::Group,
            RulePattern::Literal,
            EVERY_NAME,
            "other",
            "*",
            true,
            Consume,
        ));
        assert!(!p.allows_group_from("other", from, "reports"));
        assert!(p.allows_group_from("app", from, "billing-1"));
        p.acl_rules.retain(|r| r.name != EVERY_NAME);
        let (allowed, denied) = p.subscription_rules();
        assert_eq!(allowed["billing-*"], ["app".to_string()].into());
        assert_eq!(denied["billing-eu*"], ["app@127.0.0.1".to_string()].into());
        // Rules round-trip through the stored JSON.
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<AuthPolicies>(&json).unwrap(), p);
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
    /// The connection's address: rules of one host apply to it (`None`: only rules of every
    /// host).
    host: Option<IpAddr>,
    version: u64,
    decisions: std::collections::HashMap<(TopicName, Access), bool>,
    groups: std::collections::HashMap<(NamespaceName, String), bool>,
}

/// Most decisions one connection keeps.
pub const ACCESS_CACHE_MAX: usize = 4096;

impl AccessCache {
    /// The cache of a connection from `host`.
    pub fn for_host(host: IpAddr) -> Self {
        Self {
            host: Some(host),
            ..Self::default()
        }
    }

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
        let allowed = broker
            .check_access_from(role, self.host, topic, access)
            .await?;
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
        let allowed = broker
            .check_group_from(role, self.host, namespace, group)
            .await?;
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
