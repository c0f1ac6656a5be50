//! [`AuthPolicies`], the permissions of one namespace as stored in its policies, and the rules
//! that decide from them: grants, deny rules and [`AclRule`]s together.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{
    permission_key, Access, AclRule, AuthAction, DeniedAction, Denies, Grants, RuleAction,
    RulePattern, RuleResource, EVERY_NAME, EVERY_ROLE,
};
use crate::names::TopicName;

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
    pub(crate) fn rule_decides(
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
