//! Tenants, namespaces, partitioned topics and the admin operations on
//! topics and subscriptions: the service layer under both the admin REST
//! API and the protocol path (PARTITIONED_METADATA, lookups, topic lists).
//!
//! Records (keys in `strata_common::paths`):
//! - `/strata/tenants/{tenant}`: [`TenantInfo`];
//! - `/strata/namespaces/{tenant}/{ns}`: [`Policies`];
//! - `/strata/partitioned-topics/{tenant}/{ns}/persistent/{topic}`:
//!   [`PartitionedTopicInfo`]; its partitions are the topics
//!   `{topic}-partition-{i}`, each with its own managed ledger once used.
//!
//! Every create is a compare-and-set on an absent key and every update one
//! on the version read, so of two concurrent creates one gets
//! [`BrokerError::AlreadyExists`]. Topics have no record of their own
//! besides their managed ledger; their creates and deletes are serialized
//! on the owning broker instead.

mod namespaces;
mod offload;
mod policies;
mod subscriptions;
mod tenants;
mod topics;

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_common::metadata::{self, Expect, MetadataError, Version};
use strata_common::names::NamespaceName;

pub(crate) use offload::offload_error;
pub use offload::{FirstUnoffloaded, NamespaceUsage, OffloadProcessStatus};
pub use policies::{
    BacklogQuota, BacklogQuotaPolicy, CLUSTER, DispatchRate, MAX_PARTITIONS, OffloadPolicies,
    PartitionedTopicInfo, PersistencePolicies, Policies, PublishRate, RetentionPolicies,
    StorageQuota, TenantInfo, invalid_field, parse_integer, parse_json, parse_partitions,
};
pub use subscriptions::{MessageIdBody, StartAt};

use crate::error::{BrokerError, Result};
use crate::service::BrokerService;

/// Reads a JSON record with its version; `None` if absent.
async fn read<T: DeserializeOwned>(
    service: &BrokerService,
    key: &str,
) -> Result<Option<(T, Version)>> {
    metadata::get_json(service.store.as_ref(), key)
        .await
        .map_err(BrokerError::from)
}

/// Writes a JSON record if `expect` holds; `Ok(false)` if it did not.
async fn write<T: Serialize>(
    service: &BrokerService,
    key: &str,
    value: &T,
    expect: Expect,
) -> Result<bool> {
    match metadata::put_json(service.store.as_ref(), key, value, expect).await {
        Ok(_) => Ok(true),
        Err(MetadataError::BadVersion { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Checks a tenant name (Pulsar's character set).
pub fn check_tenant_name(tenant: &str) -> Result<()> {
    NamespaceName::parse(&format!("{tenant}/x"))
        .map(|_| ())
        .map_err(|e| {
            BrokerError::InvalidArgument(format!("invalid tenant name {tenant:?}: {}", e.reason))
        })
}

/// Parses `tenant/namespace` from its two path parts.
pub fn namespace_name(tenant: &str, namespace: &str) -> Result<NamespaceName> {
    NamespaceName::parse(&format!("{tenant}/{namespace}")).map_err(|e| {
        BrokerError::InvalidArgument(format!(
            "invalid namespace name {tenant}/{namespace}: {}",
            e.reason
        ))
    })
}
