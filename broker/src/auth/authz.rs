//! Authorization: whether a role may do what a request needs.
//!
//! As Pulsar's `PulsarAuthorizationProvider`: superusers may do everything;
//! a tenant's admin roles may do everything inside the tenant; other roles
//! only what a grant on the namespace (or on the topic) allows: `produce`
//! to publish, `consume` to subscribe, either to look a topic up, list the
//! namespace's topics and read topic stats. Tenants and clusters are for
//! superusers only. A role with nothing in a tenant learns nothing about it:
//! a missing tenant or namespace is a denial, like an existing one.

use std::fmt;

use strata_common::names::{NamespaceName, TopicName};

use super::AuthAction;
use crate::error::{BrokerError, Result};
use crate::service::BrokerService;

/// What a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token (health check, metrics).
    Open,
    /// Any authenticated role (e.g. an unknown path, answered 404).
    Authenticated,
    /// Superusers only (tenants, clusters).
    Superuser,
    /// The tenant's admin roles.
    TenantAdmin(String),
    /// The tenant's admin roles, or a role granted `need` on the namespace
    /// (or on `topic`).
    Namespace {
        ns: NamespaceName,
        topic: Option<TopicName>,
        need: Need,
    },
}

/// The grant a namespace-level request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// `produce` or `consume` (lookups, topic lists, stats).
    Lookup,
    Produce,
    Consume,
}

/// What was refused, for the denial metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Produce,
    Consume,
    Lookup,
    PartitionedMetadata,
    TopicsOfNamespace,
    Admin,
}

impl Operation {
    pub const ALL: [Operation; 6] = [
        Operation::Produce,
        Operation::Consume,
        Operation::Lookup,
        Operation::PartitionedMetadata,
        Operation::TopicsOfNamespace,
        Operation::Admin,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Operation::Produce => "produce",
            Operation::Consume => "consume",
            Operation::Lookup => "lookup",
            Operation::PartitionedMetadata => "partitioned_metadata",
            Operation::TopicsOfNamespace => "topics_of_namespace",
            Operation::Admin => "admin",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Open | Access::Authenticated => write!(f, "access this"),
            Access::Superuser => write!(f, "do this (superusers only)"),
            Access::TenantAdmin(t) => write!(f, "administer tenant {t}"),
            Access::Namespace { ns, topic, need } => {
                let verb = match need {
                    Need::Lookup => "look up or read",
                    Need::Produce => "produce to",
                    Need::Consume => "consume from",
                };
                match topic {
                    Some(t) => write!(f, "{verb} {t}"),
                    None => write!(f, "{verb} namespace {ns}"),
                }
            }
        }
    }
}

impl BrokerService {
    /// Whether `role` has `access`. Failures to read the records are
    /// errors, not denials.
    pub async fn is_allowed(&self, role: &str, access: &Access) -> Result<bool> {
        if self.auth.is_superuser(role) {
            return Ok(true);
        }
        match access {
            Access::Open | Access::Authenticated => Ok(true),
            Access::Superuser => Ok(false),
            Access::TenantAdmin(tenant) => self.is_tenant_admin(role, tenant).await,
            Access::Namespace { ns, topic, need } => {
                if self.is_tenant_admin(role, &ns.tenant).await? {
                    return Ok(true);
                }
                let policies = match self.get_policies(ns).await {
                    Ok(p) => p,
                    Err(BrokerError::NamespaceNotFound(_)) => return Ok(false),
                    Err(e) => return Err(e),
                };
                // Grants on a partitioned topic cover its partitions.
                let topic = topic.as_ref().map(|t| t.base().to_string());
                let allows = |a| policies.auth_policies.allows(role, topic.as_deref(), a);
                Ok(match need {
                    Need::Produce => allows(AuthAction::Produce),
                    Need::Consume => allows(AuthAction::Consume),
                    Need::Lookup => allows(AuthAction::Produce) || allows(AuthAction::Consume),
                })
            }
        }
    }

    async fn is_tenant_admin(&self, role: &str, tenant: &str) -> Result<bool> {
        match self.get_tenant(tenant).await {
            Ok(info) => Ok(info.admin_roles.iter().any(|r| r == role)),
            Err(BrokerError::TenantNotFound(_) | BrokerError::InvalidArgument(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks a request when authorization is on: a denial is counted
    /// under `op` and becomes [`BrokerError::NotAuthorized`].
    pub async fn authorize(
        &self,
        role: Option<&str>,
        access: &Access,
        op: Operation,
    ) -> Result<()> {
        if !self.auth.authorization_enabled() {
            return Ok(());
        }
        let allowed = match role {
            Some(role) => self.is_allowed(role, access).await?,
            None => false,
        };
        if allowed {
            return Ok(());
        }
        self.metrics.auth.denied(op);
        Err(BrokerError::NotAuthorized(format!(
            "role {:?} is not authorized to {access}",
            role.unwrap_or_default()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_say_what_was_refused() {
        let ns = NamespaceName::parse("acme/prod").unwrap();
        let topic = TopicName::parse("persistent://acme/prod/orders").unwrap();
        let a = Access::Namespace {
            ns: ns.clone(),
            topic: Some(topic),
            need: Need::Produce,
        };
        assert_eq!(a.to_string(), "produce to persistent://acme/prod/orders");
        let a = Access::Namespace {
            ns,
            topic: None,
            need: Need::Lookup,
        };
        assert_eq!(a.to_string(), "look up or read namespace acme/prod");
        assert_eq!(
            Access::TenantAdmin("acme".into()).to_string(),
            "administer tenant acme"
        );
        let labels: Vec<_> = Operation::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(labels.len(), 6);
        for (i, op) in Operation::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i);
        }
    }
}
