//! Namespaces: their policies (`NamespacePolicies`: retention, TTL, rates, limits, auto-creation,
//! permissions) in the metadata store.

use magnetar_metadata::{Expect, MetadataError};

use super::permissions::PermissionsVersion;
use super::records::Records;
use crate::error::{Error, Result};
use crate::names::{NamespaceName, TenantName, TopicName};
use crate::resources::{namespace_key, tenant_key, topics_path, NamespacePolicies, FORMAT_VERSION};

/// The namespaces service. Permissions live in the policies, so every write moves the
/// permissions version. Cheap to clone (a handle on the store).
#[derive(Clone)]
pub(crate) struct Namespaces {
    records: Records,
    permissions: PermissionsVersion,
}

impl Namespaces {
    pub(crate) fn new(records: Records, permissions: PermissionsVersion) -> Self {
        Self {
            records,
            permissions,
        }
    }

    pub(crate) async fn list(&self, tenant: &TenantName) -> Result<Vec<NamespaceName>> {
        let store = self.records.store();
        if !store.exists(&tenant_key(tenant)).await? {
            return Err(Error::TenantNotFound {
                tenant: tenant.to_string(),
            });
        }
        store
            .list_children(&tenant_key(tenant))
            .await?
            .into_iter()
            .map(|ns| NamespaceName::new(tenant.as_str(), &ns))
            .collect()
    }

    pub(crate) async fn policies(
        &self,
        namespace: &NamespaceName,
    ) -> Result<Option<NamespacePolicies>> {
        Ok(self
            .records
            .get(&namespace_key(namespace))
            .await?
            .map(|(v, _)| v))
    }

    /// A namespace's policies, or `NamespaceNotFound`.
    pub(crate) async fn existing_policies(
        &self,
        namespace: &NamespaceName,
    ) -> Result<NamespacePolicies> {
        self.policies(namespace)
            .await?
            .ok_or_else(|| Error::NamespaceNotFound {
                namespace: namespace.to_string(),
            })
    }

    /// Creates the namespace; `false` when it exists (bootstrap keeps what is there).
    pub(crate) async fn create_if_absent(
        &self,
        namespace: &NamespaceName,
        mut policies: NamespacePolicies,
    ) -> Result<bool> {
        policies.format_version = FORMAT_VERSION;
        self.records
            .put_if_absent(&namespace_key(namespace), &policies)
            .await
    }

    pub(crate) async fn create(
        &self,
        namespace: &NamespaceName,
        policies: NamespacePolicies,
    ) -> Result<()> {
        if !self
            .records
            .store()
            .exists(&tenant_key(&namespace.tenant))
            .await?
        {
            return Err(Error::TenantNotFound {
                tenant: namespace.tenant.to_string(),
            });
        }
        if !self.create_if_absent(namespace, policies).await? {
            return Err(Error::NamespaceAlreadyExists {
                namespace: namespace.to_string(),
            });
        }
        Ok(())
    }

    /// Deletes a namespace that has no topic left.
    pub(crate) async fn delete(&self, namespace: &NamespaceName) -> Result<()> {
        let store = self.records.store();
        if !store
            .list_children(&topics_path(namespace))
            .await?
            .is_empty()
        {
            return Err(Error::NamespaceNotEmpty {
                namespace: namespace.to_string(),
            });
        }
        match store.delete(&namespace_key(namespace), Expect::Any).await {
            Ok(()) => {
                self.permissions.bump();
                Ok(())
            }
            Err(MetadataError::NotFound { .. }) => Err(Error::NamespaceNotFound {
                namespace: namespace.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies `change` to a namespace's policies with compare-and-set, retrying on conflicts.
    pub(crate) async fn update(
        &self,
        namespace: &NamespaceName,
        mut change: impl FnMut(&mut NamespacePolicies),
    ) -> Result<NamespacePolicies> {
        let key = namespace_key(namespace);
        for _ in 0..16 {
            let Some((mut policies, version)) = self.records.get::<NamespacePolicies>(&key).await?
            else {
                return Err(Error::NamespaceNotFound {
                    namespace: namespace.to_string(),
                });
            };
            change(&mut policies);
            match self
                .records
                .put(&key, &policies, Expect::Version(version))
                .await?
            {
                Ok(_) => {
                    self.permissions.bump();
                    return Ok(policies);
                }
                Err(MetadataError::BadVersion { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::ConcurrentUpdate {
            what: format!("namespace '{namespace}'"),
        })
    }

    /// Producers and consumers allowed per topic partition by the namespace policy (`None`:
    /// unlimited).
    pub(crate) async fn topic_limits(
        &self,
        topic: &TopicName,
    ) -> Result<(Option<u32>, Option<u32>)> {
        let policies = self.policies(&topic.namespace).await?;
        Ok(policies.map_or((None, None), |p| {
            (p.max_producers_per_topic, p.max_consumers_per_topic)
        }))
    }
}
