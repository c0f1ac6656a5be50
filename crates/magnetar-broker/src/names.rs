//! The Pulsar naming model: tenants, namespaces, topics and partitions, and the three name forms a
//! Kafka client may use (`t`, `tenant/ns/t`, `persistent://tenant/ns/t`).

use std::fmt;

use crate::error::Error;

/// Longest tenant, namespace or topic name we accept (Kafka's own topic limit is 249).
pub const NAME_LENGTH_MAX: usize = 249;

/// The suffix Pulsar gives each partition of a partitioned topic.
pub const PARTITION_SUFFIX: &str = "-partition-";

fn check_segment(kind: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::InvalidName(format!("{kind} name is empty")));
    }
    if value.len() > NAME_LENGTH_MAX {
        return Err(Error::InvalidName(format!(
            "{kind} name '{value}' is longer than {NAME_LENGTH_MAX} characters"
        )));
    }
    if value == "." || value == ".." {
        return Err(Error::InvalidName(format!(
            "{kind} name '{value}' is not allowed"
        )));
    }
    // Pulsar's rule for tenant and namespace names is `[-=:.\w]+`; we apply it to topic names
    // too, which also keeps every name safe as a file name.
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | ':')))
    {
        return Err(Error::InvalidName(format!(
            "{kind} name '{value}' contains '{bad}'; allowed are letters, digits and - _ . = :"
        )));
    }
    Ok(())
}

/// A tenant, e.g. `public`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantName(pub(crate) String);

impl TenantName {
    pub fn new(name: &str) -> Result<Self, Error> {
        check_segment("tenant", name)?;
        Ok(Self(name.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A namespace inside a tenant, e.g. `public/default`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceName {
    pub tenant: TenantName,
    pub namespace: String,
}

impl NamespaceName {
    pub fn new(tenant: &str, namespace: &str) -> Result<Self, Error> {
        check_segment("namespace", namespace)?;
        Ok(Self {
            tenant: TenantName::new(tenant)?,
            namespace: namespace.to_string(),
        })
    }

    /// Parses `tenant/namespace`.
    pub fn parse(name: &str) -> Result<Self, Error> {
        match name.split_once('/') {
            Some((tenant, namespace)) if !namespace.contains('/') => Self::new(tenant, namespace),
            _ => Err(Error::InvalidName(format!(
                "namespace '{name}' is not of the form tenant/namespace"
            ))),
        }
    }
}

impl fmt::Display for NamespaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.namespace)
    }
}

/// A persistent topic: `persistent://tenant/namespace/local`. A partitioned topic's partitions are
/// the topics `local-partition-N`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName {
    pub namespace: NamespaceName,
    pub local: String,
}

impl TopicName {
    pub fn new(namespace: NamespaceName, local: &str) -> Result<Self, Error> {
        check_segment("topic", local)?;
        Ok(Self {
            namespace,
            local: local.to_string(),
        })
    }

    /// Parses any of the three forms a client may use; a bare name lands in `default_namespace`.
    /// Names ending in `-partition-N` are rejected: that suffix belongs to partitions.
    pub fn parse(name: &str, default_namespace: &NamespaceName) -> Result<Self, Error> {
        let topic = if let Some(rest) = name.strip_prefix("persistent://") {
            Self::parse_full(name, rest)?
        } else if name.starts_with("non-persistent://") {
            // Not a malformed name but an unsupported feature: refused as a request, which Pulsar
            // clients do not retry (an invalid name they retry until their operation timeout).
            return Err(Error::InvalidRequest(format!(
                "topic '{name}': non-persistent topics are not supported; use persistent://"
            )));
        } else if name.contains("://") {
            return Err(Error::InvalidName(format!(
                "topic '{name}': only the persistent:// domain is supported"
            )));
        } else if name.contains('/') {
            Self::parse_full(name, name)?
        } else {
            Self::new(default_namespace.clone(), name)?
        };
        if partition_of(&topic.local).is_some() {
            return Err(Error::InvalidName(format!(
                "topic '{name}' ends in '{PARTITION_SUFFIX}N', which names a partition, not a topic"
            )));
        }
        Ok(topic)
    }

    fn parse_full(original: &str, path: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            [tenant, namespace, local] => Self::new(NamespaceName::new(tenant, namespace)?, local),
            _ => Err(Error::InvalidName(format!(
                "topic '{original}' is neither 'topic', 'tenant/namespace/topic' nor 'persistent://tenant/namespace/topic'"
            ))),
        }
    }

    /// The name of partition `index` (`local-partition-N`), or of the topic itself when it is not
    /// partitioned (`None`).
    pub fn ledger_name(&self, partition: Option<u32>) -> String {
        match partition {
            Some(index) => format!("{}{PARTITION_SUFFIX}{index}", self.local),
            None => self.local.clone(),
        }
    }

    /// The short form a client that used `default_namespace` would use.
    pub fn short_name(&self, default_namespace: &NamespaceName) -> String {
        if &self.namespace == default_namespace {
            self.local.clone()
        } else {
            format!("{}/{}", self.namespace, self.local)
        }
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "persistent://{}/{}", self.namespace, self.local)
    }
}

/// `Some(n)` when `local` ends in `-partition-n`.
pub fn partition_of(local: &str) -> Option<u32> {
    let at = local.rfind(PARTITION_SUFFIX)?;
    let digits = &local[at + PARTITION_SUFFIX.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One partition of a topic. A non-partitioned topic has the single partition 0 as seen by Kafka.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: TopicName,
    pub partition: u32,
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{PARTITION_SUFFIX}{}", self.topic, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_ns() -> NamespaceName {
        NamespaceName::new("public", "default").unwrap()
    }

    #[test]
    fn three_forms_name_the_same_topic() {
        let a = TopicName::parse("orders", &default_ns()).unwrap();
        let b = TopicName::parse("public/default/orders", &default_ns()).unwrap();
        let c = TopicName::parse("persistent://public/default/orders", &default_ns()).unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.to_string(), "persistent://public/default/orders");
        assert_eq!(a.short_name(&default_ns()), "orders");
    }

    #[test]
    fn other_namespace_keeps_its_path() {
        let t = TopicName::parse("acme/sales/orders", &default_ns()).unwrap();
        assert_eq!(t.namespace.to_string(), "acme/sales");
        assert_eq!(t.short_name(&default_ns()), "acme/sales/orders");
        assert_eq!(t.ledger_name(Some(3)), "orders-partition-3");
        assert_eq!(t.ledger_name(None), "orders");
    }

    #[test]
    fn non_persistent_topics_are_refused_as_unsupported() {
        let err = TopicName::parse("non-persistent://public/default/x", &default_ns()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidRequest(m) if m.contains("not supported")),
            "{err}"
        );
    }

    #[test]
    fn bad_names_are_rejected_with_a_reason() {
        for bad in [
            "",
            "a/b",
            "a/b/c/d",
            "other://public/default/x",
            "has space",
            "x-partition-3",
            "public/default/..",
            &"x".repeat(NAME_LENGTH_MAX + 1),
        ] {
            let err = TopicName::parse(bad, &default_ns()).unwrap_err();
            assert!(matches!(err, Error::InvalidName(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn partition_suffix() {
        assert_eq!(partition_of("t-partition-12"), Some(12));
        assert_eq!(partition_of("t-partition-"), None);
        assert_eq!(partition_of("t-partition-x"), None);
        assert_eq!(partition_of("t"), None);
    }
}
