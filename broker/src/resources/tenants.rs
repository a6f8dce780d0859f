//! Tenant records: list, get, create, update, delete.

use strata_common::metadata::Expect;
use strata_common::paths;

use super::{CLUSTER, TenantInfo, check_tenant_name, read, write};
use crate::error::{BrokerError, Result};
use crate::service::BrokerService;

fn check_clusters(info: &TenantInfo) -> Result<()> {
    match info.allowed_clusters.iter().find(|c| c.as_str() != CLUSTER) {
        Some(c) => Err(BrokerError::PreconditionFailed(format!(
            "invalid field 'allowedClusters': cluster {c:?} does not exist (this cluster is {CLUSTER:?})"
        ))),
        None => Ok(()),
    }
}

impl BrokerService {
    /// Every tenant, sorted.
    pub async fn list_tenants(&self) -> Result<Vec<String>> {
        let kvs = self.store.list(paths::TENANTS).await?;
        Ok(kvs
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(paths::TENANTS))
            .filter(|t| !t.contains('/'))
            .map(str::to_string)
            .collect())
    }

    pub async fn get_tenant(&self, tenant: &str) -> Result<TenantInfo> {
        check_tenant_name(tenant)?;
        read::<TenantInfo>(self, &paths::tenant(tenant))
            .await?
            .map(|(t, _)| t)
            .ok_or_else(|| BrokerError::TenantNotFound(tenant.to_string()))
    }

    pub async fn tenant_exists(&self, tenant: &str) -> Result<bool> {
        Ok(self.store.get(&paths::tenant(tenant)).await?.is_some())
    }

    /// Creates a tenant; [`BrokerError::AlreadyExists`] if it exists.
    pub async fn create_tenant(&self, tenant: &str, info: &TenantInfo) -> Result<()> {
        check_tenant_name(tenant)?;
        check_clusters(info)?;
        if write(self, &paths::tenant(tenant), info, Expect::Absent).await? {
            Ok(())
        } else {
            Err(BrokerError::AlreadyExists(format!("tenant {tenant}")))
        }
    }

    /// Replaces a tenant's record; [`BrokerError::TenantNotFound`] if it does not exist.
    pub async fn update_tenant(&self, tenant: &str, info: &TenantInfo) -> Result<()> {
        check_tenant_name(tenant)?;
        check_clusters(info)?;
        let key = paths::tenant(tenant);
        let Some((_, version)) = read::<TenantInfo>(self, &key).await? else {
            return Err(BrokerError::TenantNotFound(tenant.to_string()));
        };
        if write(self, &key, info, Expect::Version(version)).await? {
            Ok(())
        } else {
            Err(BrokerError::Conflict(format!(
                "tenant {tenant} was changed concurrently; try again"
            )))
        }
    }

    /// Deletes a tenant. One that still has namespaces is refused
    /// ([`BrokerError::Conflict`]) unless `force`, which deletes them and
    /// their topics first.
    pub async fn delete_tenant(&self, tenant: &str, force: bool) -> Result<()> {
        check_tenant_name(tenant)?;
        if !self.tenant_exists(tenant).await? {
            return Err(BrokerError::TenantNotFound(tenant.to_string()));
        }
        let namespaces = self.list_namespaces(tenant).await?;
        if !namespaces.is_empty() && !force {
            return Err(BrokerError::Conflict(format!(
                "tenant {tenant} still has namespaces: {}",
                namespaces.join(", ")
            )));
        }
        for ns in namespaces {
            let ns = strata_common::names::NamespaceName::parse(&ns)?;
            match self.delete_namespace(&ns, true).await {
                Ok(()) | Err(BrokerError::NamespaceNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.store
            .delete(&paths::tenant(tenant), Expect::Any)
            .await?;
        Ok(())
    }
}
