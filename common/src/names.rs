//! Names of namespaces and topics, as Pulsar clients spell them.
//!
//! A topic is `persistent://tenant/namespace/local-name`; clients may also send
//! `tenant/namespace/local-name` or just `local-name` (which lives in
//! `public/default`). A partition of a partitioned topic is the topic whose
//! local name ends in `-partition-N`.

use std::fmt;

/// Suffix that names one partition of a partitioned topic.
pub const PARTITION_SUFFIX: &str = "-partition-";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name {name:?}: {reason}")]
pub struct NameError {
    pub name: String,
    pub reason: String,
}

fn invalid(name: &str, reason: impl Into<String>) -> NameError {
    NameError {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Tenants and namespaces use Pulsar's character set: letters, digits and `-=:._`.
fn check_entity(full: &str, what: &str, s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(invalid(full, format!("empty {what}")));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-=:._".contains(*c)))
    {
        return Err(invalid(full, format!("{what} contains {c:?}")));
    }
    Ok(())
}

/// `tenant/namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceName {
    pub tenant: String,
    pub namespace: String,
}

impl NamespaceName {
    pub fn parse(s: &str) -> Result<NamespaceName, NameError> {
        let mut parts = s.split('/');
        let (Some(tenant), Some(namespace), None) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(s, "expected tenant/namespace"));
        };
        check_entity(s, "tenant", tenant)?;
        check_entity(s, "namespace", namespace)?;
        Ok(NamespaceName {
            tenant: tenant.to_string(),
            namespace: namespace.to_string(),
        })
    }
}

impl fmt::Display for NamespaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.namespace)
    }
}

/// A fully qualified persistent topic name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName {
    pub namespace: NamespaceName,
    /// The local name, including any `-partition-N` suffix.
    pub local: String,
}

impl TopicName {
    /// Parses any spelling a Pulsar client may send.
    pub fn parse(s: &str) -> Result<TopicName, NameError> {
        let rest = if let Some(rest) = s.strip_prefix("persistent://") {
            rest
        } else if s.starts_with("non-persistent://") {
            return Err(invalid(s, "non-persistent topics are not supported"));
        } else if s.contains("://") {
            return Err(invalid(s, "unknown topic domain"));
        } else if !s.contains('/') {
            return Self::from_parts(s, "public", "default", s);
        } else {
            s
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [tenant, namespace, local] => Self::from_parts(s, tenant, namespace, local),
            [_, _, _, _, ..] => Err(invalid(
                s,
                "expected tenant/namespace/topic (cluster-scoped v1 names are not supported)",
            )),
            _ => Err(invalid(s, "expected tenant/namespace/topic")),
        }
    }

    fn from_parts(
        full: &str,
        tenant: &str,
        namespace: &str,
        local: &str,
    ) -> Result<TopicName, NameError> {
        check_entity(full, "tenant", tenant)?;
        check_entity(full, "namespace", namespace)?;
        if local.is_empty() {
            return Err(invalid(full, "empty topic name"));
        }
        if local.chars().any(|c| c.is_control()) {
            return Err(invalid(full, "topic name contains a control character"));
        }
        Ok(TopicName {
            namespace: NamespaceName {
                tenant: tenant.to_string(),
                namespace: namespace.to_string(),
            },
            local: local.to_string(),
        })
    }

    /// The partition index when this topic is one partition of a partitioned topic.
    pub fn partition(&self) -> Option<u32> {
        let (_, n) = self.local.rsplit_once(PARTITION_SUFFIX)?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse().ok()
    }

    /// The partitioned topic this partition belongs to (itself otherwise).
    pub fn base(&self) -> TopicName {
        match self.partition() {
            Some(_) => {
                let (base, _) = self.local.rsplit_once(PARTITION_SUFFIX).unwrap_or_default();
                TopicName {
                    namespace: self.namespace.clone(),
                    local: base.to_string(),
                }
            }
            None => self.clone(),
        }
    }

    /// Partition `i` of this (partitioned) topic.
    pub fn partition_topic(&self, i: u32) -> TopicName {
        TopicName {
            namespace: self.namespace.clone(),
            local: format!("{}{PARTITION_SUFFIX}{i}", self.local),
        }
    }

    /// The key of this topic's data in storage: `tenant/namespace/persistent/local`.
    pub fn persistence_name(&self) -> String {
        format!("{}/persistent/{}", self.namespace, self.local)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "persistent://{}/{}", self.namespace, self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_expand_to_public_default() {
        let t = TopicName::parse("orders").unwrap();
        assert_eq!(t.to_string(), "persistent://public/default/orders");
        let t = TopicName::parse("acme/prod/orders").unwrap();
        assert_eq!(t.to_string(), "persistent://acme/prod/orders");
        let t = TopicName::parse("persistent://acme/prod/orders").unwrap();
        assert_eq!(t.persistence_name(), "acme/prod/persistent/orders");
    }

    #[test]
    fn partitions_parse_and_round_trip() {
        let t = TopicName::parse("persistent://a/b/t-partition-3").unwrap();
        assert_eq!(t.partition(), Some(3));
        assert_eq!(t.base().local, "t");
        assert_eq!(t.base().partition_topic(3), t);
        assert_eq!(TopicName::parse("t-partition-x").unwrap().partition(), None);
    }

    #[test]
    fn bad_names_are_rejected_with_a_reason() {
        for bad in [
            "",
            "persistent://a/b",
            "persistent://a/b/",
            "persistent://a/cluster/b/c",
            "non-persistent://a/b/c",
            "http://a/b/c",
            "a b/ns/t",
            "a//t",
            "t\u{0}x",
        ] {
            assert!(TopicName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(NamespaceName::parse("public/default").is_ok());
        assert!(NamespaceName::parse("public").is_err());
    }
}
