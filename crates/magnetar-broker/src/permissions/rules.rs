//! Kafka ACL rules the grant maps cannot hold: prefixed patterns, one host, transactional ids
//! ([`AclRule`]), and the host text rules store.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{
    check_role, AuthAction, DeniedAction, EVERY_HOST, EVERY_NAME, EVERY_ROLE, ROLE_BYTES_MAX,
};
use crate::error::{Error, Result};

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
    pub(crate) fn covers(self, wanted: RuleAction, allow: bool) -> bool {
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
