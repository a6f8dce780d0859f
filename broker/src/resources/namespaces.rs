//! Namespace records (their policies): list, get, create, update, delete.

use strata_common::metadata::{Expect, PutOptions};
use strata_common::names::{NamespaceName, TopicName};
use strata_common::paths;

use super::{CLUSTER, Policies, TenantInfo, check_tenant_name, read, write};
use crate::error::{BrokerError, Result};
use crate::service::BrokerService;

/// Attempts of a read-modify-write of policies before giving up.
const UPDATE_ATTEMPTS: usize = 5;

impl BrokerService {
    /// The namespaces of a tenant, as `tenant/ns`, sorted.
    pub async fn list_namespaces(&self, tenant: &str) -> Result<Vec<String>> {
        check_tenant_name(tenant)?;
        if !self.tenant_exists(tenant).await? {
            return Err(BrokerError::TenantNotFound(tenant.to_string()));
        }
        let prefix = format!("{}{tenant}/", paths::NAMESPACES);
        let kvs = self.store.list(&prefix).await?;
        Ok(kvs
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(&prefix))
            .filter(|ns| !ns.contains('/'))
            .map(|ns| format!("{tenant}/{ns}"))
            .collect())
    }

    pub async fn namespace_exists(&self, ns: &NamespaceName) -> Result<bool> {
        Ok(self
            .store
            .get(&paths::namespace(&ns.tenant, &ns.namespace))
            .await?
            .is_some())
    }

    /// A namespace's policies; [`BrokerError::NamespaceNotFound`] if it does not exist.
    pub async fn get_policies(&self, ns: &NamespaceName) -> Result<Policies> {
        read::<Policies>(self, &paths::namespace(&ns.tenant, &ns.namespace))
            .await?
            .map(|(p, _)| p)
            .ok_or_else(|| BrokerError::NamespaceNotFound(ns.to_string()))
    }

    /// Creates a namespace with `policies` (validated; no replication
    /// clusters means this cluster).
    pub async fn create_namespace(&self, ns: &NamespaceName, mut policies: Policies) -> Result<()> {
        policies.validate()?;
        if policies.replication_clusters.is_empty() {
            policies.replication_clusters = vec![CLUSTER.to_string()];
        }
        if !self.tenant_exists(&ns.tenant).await? {
            return Err(BrokerError::TenantNotFound(ns.tenant.clone()));
        }
        self.check_namespaces_per_tenant(&ns.tenant, 0).await?;
        let key = paths::namespace(&ns.tenant, &ns.namespace);
        if !write(self, &key, &policies, Expect::Absent).await? {
            return Err(BrokerError::AlreadyExists(format!("namespace {ns}")));
        }
        // The tenant may have been deleted between the check and the write.
        if !self.tenant_exists(&ns.tenant).await? {
            self.store.delete(&key, Expect::Any).await?;
            return Err(BrokerError::TenantNotFound(ns.tenant.clone()));
        }
        // Concurrent creates may all have passed the check: whichever finds
        // the tenant over its limit after writing takes its own back, so
        // the limit holds (at worst both fail, and a retry succeeds).
        if let Err(e) = self.check_namespaces_per_tenant(&ns.tenant, 1).await {
            self.store.delete(&key, Expect::Any).await?;
            return Err(e);
        }
        Ok(())
    }

    /// Refuses a new namespace of `tenant` beyond the broker's
    /// `max_namespaces_per_tenant` (Pulsar's maxNamespacesPerTenant; 0: no
    /// limit) with [`BrokerError::PreconditionFailed`], as Pulsar does.
    /// `written`: 1 once the new one is stored (it is then not counted).
    async fn check_namespaces_per_tenant(&self, tenant: &str, written: usize) -> Result<()> {
        let max = self.config.limits.max_namespaces_per_tenant as usize;
        if max == 0 {
            return Ok(());
        }
        let existing = self
            .list_namespaces(tenant)
            .await?
            .len()
            .saturating_sub(written);
        if existing >= max {
            return Err(BrokerError::PreconditionFailed(format!(
                "Exceed the maximum number of namespace in tenant :{tenant} \
                 (maxNamespacesPerTenant is {max})"
            )));
        }
        Ok(())
    }

    /// Changes a namespace's policies with `change` (compare-and-set,
    /// retried if another update came in between).
    pub async fn update_policies<F>(&self, ns: &NamespaceName, mut change: F) -> Result<Policies>
    where
        F: FnMut(&mut Policies) -> Result<()>,
    {
        let key = paths::namespace(&ns.tenant, &ns.namespace);
        for _ in 0..UPDATE_ATTEMPTS {
            let Some((mut policies, version)) = read::<Policies>(self, &key).await? else {
                return Err(BrokerError::NamespaceNotFound(ns.to_string()));
            };
            change(&mut policies)?;
            policies.validate()?;
            if write(self, &key, &policies, Expect::Version(version)).await? {
                self.apply_policies(ns, &policies);
                return Ok(policies);
            }
        }
        Err(BrokerError::Conflict(format!(
            "the policies of {ns} keep changing concurrently; try again"
        )))
    }

    /// Deletes a namespace. One that still has topics is refused
    /// ([`BrokerError::Conflict`]) unless `force`, which deletes them
    /// (disconnecting their clients) first.
    pub async fn delete_namespace(&self, ns: &NamespaceName, force: bool) -> Result<()> {
        if !self.namespace_exists(ns).await? {
            return Err(BrokerError::NamespaceNotFound(ns.to_string()));
        }
        let partitioned = self.list_partitioned_topics(ns).await?;
        let plain: Vec<String> = self
            .list_managed_topics(ns)
            .await?
            .into_iter()
            .filter(|t| {
                // Partitions go with their partitioned topic.
                TopicName::parse(t)
                    .map(|n| {
                        n.partition().is_none() || !partitioned.contains(&n.base().to_string())
                    })
                    .unwrap_or(true)
            })
            .collect();
        if (!partitioned.is_empty() || !plain.is_empty()) && !force {
            let mut all = partitioned.clone();
            all.extend(plain.iter().cloned());
            return Err(BrokerError::Conflict(format!(
                "namespace {ns} still has topics: {}",
                all.join(", ")
            )));
        }
        for t in &partitioned {
            let name = TopicName::parse(t)?;
            match self.delete_partitioned_topic(&name, true).await {
                Ok(()) | Err(BrokerError::TopicNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for t in &plain {
            let name = TopicName::parse(t)?;
            match self.delete_topic(&name, true).await {
                Ok(()) | Err(BrokerError::TopicNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.store
            .delete(&paths::namespace(&ns.tenant, &ns.namespace), Expect::Any)
            .await?;
        Ok(())
    }

    /// Creates a tenant and namespace if they do not exist (the standalone's
    /// `public/default`).
    pub async fn ensure_namespace(&self, ns: &NamespaceName) -> Result<()> {
        let put_absent = |key: String, value: Vec<u8>| async move {
            match self
                .store
                .put(&key, value.into(), PutOptions::expect(Expect::Absent))
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.is_bad_version() => Ok(()),
                Err(e) => Err(BrokerError::from(e)),
            }
        };
        let tenant = TenantInfo {
            admin_roles: vec![],
            allowed_clusters: vec![CLUSTER.into()],
        };
        let policies = Policies {
            replication_clusters: vec![CLUSTER.into()],
            ..Policies::default()
        };
        let json = |v: serde_json::Result<Vec<u8>>| {
            v.map_err(|e| BrokerError::Unknown(format!("cannot encode a record: {e}")))
        };
        put_absent(
            paths::tenant(&ns.tenant),
            json(serde_json::to_vec(&tenant))?,
        )
        .await?;
        put_absent(
            paths::namespace(&ns.tenant, &ns.namespace),
            json(serde_json::to_vec(&policies))?,
        )
        .await
    }
}
