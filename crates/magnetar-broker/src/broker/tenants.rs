//! Tenants: their records (`TenantInfo`: admin roles, allowed clusters) in the metadata store.

use magnetar_metadata::{Expect, MetadataError};

use super::permissions::PermissionsVersion;
use super::records::Records;
use crate::error::{Error, Result};
use crate::names::TenantName;
use crate::resources::{tenant_key, TenantInfo, FORMAT_VERSION, TENANTS_PATH};

/// The tenants service. A tenant's admin roles are permissions, so every write moves the
/// permissions version. Cheap to clone (a handle on the store).
#[derive(Clone)]
pub(crate) struct Tenants {
    records: Records,
    permissions: PermissionsVersion,
}

impl Tenants {
    pub(crate) fn new(records: Records, permissions: PermissionsVersion) -> Self {
        Self {
            records,
            permissions,
        }
    }

    pub(crate) async fn list(&self) -> Result<Vec<String>> {
        Ok(self.records.store().list_children(TENANTS_PATH).await?)
    }

    pub(crate) async fn get(&self, tenant: &TenantName) -> Result<Option<TenantInfo>> {
        Ok(self.records.get(&tenant_key(tenant)).await?.map(|(v, _)| v))
    }

    /// Creates the tenant; `false` when it exists (bootstrap keeps what is there).
    pub(crate) async fn create_if_absent(
        &self,
        tenant: &TenantName,
        mut info: TenantInfo,
    ) -> Result<bool> {
        info.format_version = FORMAT_VERSION;
        self.records.put_if_absent(&tenant_key(tenant), &info).await
    }

    pub(crate) async fn create(&self, tenant: &TenantName, info: TenantInfo) -> Result<()> {
        if !self.create_if_absent(tenant, info).await? {
            return Err(Error::TenantAlreadyExists {
                tenant: tenant.to_string(),
            });
        }
        Ok(())
    }

    /// Deletes a tenant that has no namespace left.
    pub(crate) async fn delete(&self, tenant: &TenantName) -> Result<()> {
        let key = tenant_key(tenant);
        let store = self.records.store();
        if store.exists(&key).await? && !store.list_children(&key).await?.is_empty() {
            return Err(Error::TenantNotEmpty {
                tenant: tenant.to_string(),
            });
        }
        match store.delete(&key, Expect::Any).await {
            Ok(()) => {
                self.permissions.bump();
                Ok(())
            }
            Err(MetadataError::NotFound { .. }) => Err(Error::TenantNotFound {
                tenant: tenant.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a tenant's info (Pulsar's "update tenant").
    pub(crate) async fn update(&self, tenant: &TenantName, mut info: TenantInfo) -> Result<()> {
        let key = tenant_key(tenant);
        let Some((_, version)) = self.records.get::<TenantInfo>(&key).await? else {
            return Err(Error::TenantNotFound {
                tenant: tenant.to_string(),
            });
        };
        info.format_version = FORMAT_VERSION;
        match self
            .records
            .put(&key, &info, Expect::Version(version))
            .await?
        {
            Ok(_) => {
                self.permissions.bump();
                Ok(())
            }
            Err(MetadataError::BadVersion { .. }) => Err(Error::ConcurrentUpdate {
                what: format!("tenant '{tenant}'"),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use magnetar_metadata::MemoryStore;
    use magnetar_storage::SystemClock;

    use crate::{Broker, BrokerConfig, Error, TenantName};

    #[tokio::test]
    async fn tenant_errors_name_the_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(
            BrokerConfig::for_data_dir(dir.path()),
            Arc::new(MemoryStore::new()),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let public = TenantName::new("public").unwrap();
        assert!(matches!(
            broker.delete_tenant(&public).await,
            Err(Error::TenantNotEmpty { tenant }) if tenant == "public"
        ));
        assert!(matches!(
            broker.create_tenant(&public, Default::default()).await,
            Err(Error::TenantAlreadyExists { tenant }) if tenant == "public"
        ));
        let missing = TenantName::new("nosuch").unwrap();
        assert!(matches!(
            broker.delete_tenant(&missing).await,
            Err(Error::TenantNotFound { tenant }) if tenant == "nosuch"
        ));
        assert!(matches!(
            broker.list_namespaces(&missing).await,
            Err(Error::TenantNotFound { tenant }) if tenant == "nosuch"
        ));
    }
}
