//! The per-connection cache of authorization decisions.

use std::net::IpAddr;

use super::Access;
use crate::broker::Broker;
use crate::error::Result;
use crate::names::{NamespaceName, TopicName};

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
