//! Authorization with Pulsar's model: superuser roles, tenant admin roles, and per-namespace and
//! per-topic permissions (`produce`, `consume`, ...) granted to roles, plus subscription
//! permissions restricting which roles may consume with a given subscription (Kafka groups map to
//! subscriptions of the topic's namespace).
//!
//! Permissions live in the namespace's policies (`auth_policies`, Pulsar's shape: namespace-wide
//! grants, grants per topic keyed by the topic's full name, roles per subscription), so they are
//! versioned and compare-and-set like every other policy. The decision itself
//! ([`Broker::authorize`](crate::Broker::authorize)) is what Pulsar's default provider decides:
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
//! Front ends cache decisions per connection; [`Broker::permissions_version`](crate::Broker::permissions_version) changes whenever a
//! policy or a tenant's admin roles change, which invalidates those caches.

//!
//! Files: this one has the actions, the limits and [`Access`]; `rules.rs` the Kafka ACL rules
//! ([`AclRule`]: patterns, hosts, transactional ids); `policies.rs` [`AuthPolicies`] and the
//! decisions taken from it; `cache.rs` the per-connection [`AccessCache`]. The decisions that
//! need the broker's state (superusers, tenant admins, the authorization switch) and the
//! grant/revoke operations are the broker's permissions service (`broker/permissions.rs`),
//! reached through [`Broker`](crate::Broker).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names::TopicName;

mod cache;
mod policies;
mod rules;
#[cfg(test)]
mod tests;

pub use cache::{AccessCache, Decision, ACCESS_CACHE_MAX};
pub use policies::AuthPolicies;
pub use rules::{host_text, parse_host, AclRule, RuleAction, RulePattern, RuleResource};

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
