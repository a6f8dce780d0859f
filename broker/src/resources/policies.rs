//! Namespace policies, stored as the namespace record, with Pulsar's JSON
//! field names (`Policies`). They are stored and returned here; enforcing
//! them (retention, TTL, backlog quotas, rates) is the job of the parts that
//! apply them. Fields Strata does not know are ignored.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use strata_offloader::policy::OffloadPolicies;

use crate::auth::AuthPolicies;
use crate::error::BrokerError;

/// The cluster a standalone broker belongs to.
pub const CLUSTER: &str = "standalone";

/// A tenant record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantInfo {
    #[serde(default, rename = "adminRoles")]
    pub admin_roles: Vec<String>,
    #[serde(default, rename = "allowedClusters")]
    pub allowed_clusters: Vec<String>,
}

/// A partitioned topic record (its partition count).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionedTopicInfo {
    pub partitions: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicies {
    /// -1: forever.
    #[serde(default)]
    pub retention_time_in_minutes: i32,
    /// -1: unbounded.
    #[serde(default, rename = "retentionSizeInMB")]
    pub retention_size_in_mb: i64,
}

/// What happens when a backlog quota is exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BacklogQuotaPolicy {
    ProducerRequestHold,
    ProducerException,
    ConsumerBacklogEviction,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BacklogQuota {
    /// Bytes of backlog allowed (-1: no limit).
    #[serde(default = "minus_one")]
    pub limit_size: i64,
    /// Age in seconds of the oldest unacknowledged message allowed (-1: no limit).
    #[serde(default = "minus_one_i32")]
    pub limit_time: i32,
    pub policy: BacklogQuotaPolicy,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishRate {
    #[serde(default)]
    pub publish_throttling_rate_in_msg: i32,
    #[serde(default)]
    pub publish_throttling_rate_in_byte: i64,
}

/// A dispatch rate limit (Pulsar's `DispatchRateImpl`): at most this many
/// messages and bytes per `ratePeriodInSecond` seconds; a value <= 0 is no
/// limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchRate {
    #[serde(default = "minus_one_i32")]
    pub dispatch_throttling_rate_in_msg: i32,
    #[serde(default = "minus_one")]
    pub dispatch_throttling_rate_in_byte: i64,
    /// Stored for compatibility; Strata does not scale by the publish rate.
    #[serde(default)]
    pub relative_to_publish_rate: bool,
    #[serde(default = "one_i32")]
    pub rate_period_in_second: i32,
}

impl Default for DispatchRate {
    fn default() -> Self {
        DispatchRate {
            dispatch_throttling_rate_in_msg: -1,
            dispatch_throttling_rate_in_byte: -1,
            relative_to_publish_rate: false,
            rate_period_in_second: 1,
        }
    }
}

/// Strata's storage quota: bytes a namespace may keep over both tiers (hot
/// on bookies plus cold in object storage), and what producers meet once
/// it is used up (`producer_request_hold` or `producer_exception`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageQuota {
    /// Bytes allowed (-1: no limit).
    #[serde(default = "minus_one")]
    pub limit_size: i64,
    pub policy: BacklogQuotaPolicy,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersistencePolicies {
    #[serde(default)]
    pub bookkeeper_ensemble: i32,
    #[serde(default)]
    pub bookkeeper_write_quorum: i32,
    #[serde(default)]
    pub bookkeeper_ack_quorum: i32,
    #[serde(default)]
    pub managed_ledger_max_mark_delete_rate: f64,
}

fn minus_one() -> i64 {
    -1
}

fn minus_one_i32() -> i32 {
    -1
}

fn one_i32() -> i32 {
    1
}

/// A namespace's policies (Pulsar's `Policies`; the subset Strata knows).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Policies {
    /// Who may produce / consume (Pulsar's `auth_policies`).
    #[serde(default)]
    pub auth_policies: AuthPolicies,
    #[serde(default)]
    pub replication_clusters: Vec<String>,
    /// Keys: `destination_storage` (size) and `message_age` (time).
    #[serde(default)]
    pub backlog_quota_map: BTreeMap<String, BacklogQuota>,
    /// Per cluster.
    #[serde(default, rename = "publishMaxMessageRate")]
    pub publish_max_message_rate: BTreeMap<String, PublishRate>,
    /// Per cluster: each topic's dispatch rate (the `dispatchRate` path).
    #[serde(default, rename = "topicDispatchRate")]
    pub topic_dispatch_rate: BTreeMap<String, DispatchRate>,
    /// Per cluster: each subscription's dispatch rate.
    #[serde(default, rename = "subscriptionDispatchRate")]
    pub subscription_dispatch_rate: BTreeMap<String, DispatchRate>,
    #[serde(default)]
    pub message_ttl_in_seconds: Option<i32>,
    #[serde(default)]
    pub retention_policies: Option<RetentionPolicies>,
    #[serde(default)]
    pub persistence: Option<PersistencePolicies>,
    #[serde(default, rename = "deduplicationEnabled")]
    pub deduplication_enabled: Option<bool>,
    #[serde(default)]
    pub max_producers_per_topic: Option<i32>,
    #[serde(default)]
    pub max_consumers_per_topic: Option<i32>,
    #[serde(default)]
    pub max_consumers_per_subscription: Option<i32>,
    #[serde(default)]
    pub max_unacked_messages_per_consumer: Option<i32>,
    #[serde(default)]
    pub max_unacked_messages_per_subscription: Option<i32>,
    #[serde(default)]
    pub max_subscriptions_per_topic: Option<i32>,
    #[serde(default)]
    pub max_topics_per_namespace: Option<i32>,
    /// Strata's quota over both tiers; see [`StorageQuota`].
    #[serde(default)]
    pub storage_quota: Option<StorageQuota>,
    /// Bytes of a topic kept on bookies before offloading (-1: never).
    #[serde(default = "minus_one")]
    pub offload_threshold: i64,
    #[serde(default)]
    pub offload_deletion_lag_ms: Option<i64>,
    /// Seconds after which a closed ledger is offloaded (-1: never).
    #[serde(default = "minus_one")]
    pub offload_threshold_in_seconds: i64,
    /// Pulsar's `OffloadPoliciesImpl`; its fields win over the three above.
    #[serde(default)]
    pub offload_policies: Option<OffloadPolicies>,
    #[serde(default)]
    pub deleted: bool,
}

impl Default for Policies {
    fn default() -> Self {
        Policies {
            auth_policies: AuthPolicies::default(),
            replication_clusters: Vec::new(),
            backlog_quota_map: BTreeMap::new(),
            publish_max_message_rate: BTreeMap::new(),
            topic_dispatch_rate: BTreeMap::new(),
            subscription_dispatch_rate: BTreeMap::new(),
            message_ttl_in_seconds: None,
            retention_policies: None,
            persistence: None,
            deduplication_enabled: None,
            max_producers_per_topic: None,
            max_consumers_per_topic: None,
            max_consumers_per_subscription: None,
            max_unacked_messages_per_consumer: None,
            max_unacked_messages_per_subscription: None,
            max_subscriptions_per_topic: None,
            max_topics_per_namespace: None,
            storage_quota: None,
            offload_threshold: -1,
            offload_deletion_lag_ms: None,
            offload_threshold_in_seconds: -1,
            offload_policies: None,
            deleted: false,
        }
    }
}

/// An `invalid field` error naming the field.
pub fn invalid_field(field: &str, reason: impl std::fmt::Display) -> BrokerError {
    BrokerError::InvalidArgument(format!("invalid field '{field}': {reason}"))
}

/// Parses a JSON request body; errors name the offending field (`a.b`).
pub fn parse_json<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, BrokerError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let whole = inner.is_syntax() || inner.is_eof();
        if whole || path.is_empty() || path == "." || path == "?" {
            BrokerError::InvalidArgument(format!("invalid {what}: {inner}"))
        } else {
            invalid_field(&path, inner)
        }
    })?;
    de.end()
        .map_err(|e| BrokerError::InvalidArgument(format!("invalid {what}: {e}")))?;
    Ok(value)
}

impl Policies {
    /// Checks values JSON types cannot rule out.
    pub fn validate(&self) -> Result<(), BrokerError> {
        if let Some(ttl) = self.message_ttl_in_seconds
            && ttl < 0
        {
            return Err(invalid_field(
                "message_ttl_in_seconds",
                format!("must be >= 0, got {ttl}"),
            ));
        }
        if let Some(r) = &self.retention_policies {
            if r.retention_time_in_minutes < -1 {
                return Err(invalid_field(
                    "retention_policies.retentionTimeInMinutes",
                    format!("must be >= -1, got {}", r.retention_time_in_minutes),
                ));
            }
            if r.retention_size_in_mb < -1 {
                return Err(invalid_field(
                    "retention_policies.retentionSizeInMB",
                    format!("must be >= -1, got {}", r.retention_size_in_mb),
                ));
            }
        }
        for (k, q) in &self.backlog_quota_map {
            if k != "destination_storage" && k != "message_age" {
                return Err(invalid_field(
                    "backlog_quota_map",
                    format!("unknown quota type {k:?} (destination_storage, message_age)"),
                ));
            }
            if q.limit_size < -1 {
                return Err(invalid_field(
                    &format!("backlog_quota_map.{k}.limitSize"),
                    format!("must be >= -1, got {}", q.limit_size),
                ));
            }
            if q.limit_time < -1 {
                return Err(invalid_field(
                    &format!("backlog_quota_map.{k}.limitTime"),
                    format!("must be >= -1, got {}", q.limit_time),
                ));
            }
        }
        for (field, v) in [
            ("max_producers_per_topic", self.max_producers_per_topic),
            ("max_consumers_per_topic", self.max_consumers_per_topic),
            (
                "max_consumers_per_subscription",
                self.max_consumers_per_subscription,
            ),
            (
                "max_unacked_messages_per_consumer",
                self.max_unacked_messages_per_consumer,
            ),
            (
                "max_unacked_messages_per_subscription",
                self.max_unacked_messages_per_subscription,
            ),
            (
                "max_subscriptions_per_topic",
                self.max_subscriptions_per_topic,
            ),
            ("max_topics_per_namespace", self.max_topics_per_namespace),
        ] {
            if let Some(v) = v
                && v < 0
            {
                return Err(invalid_field(field, format!("must be >= 0, got {v}")));
            }
        }
        for (c, r) in &self.publish_max_message_rate {
            r.validate(&format!("publishMaxMessageRate.{c}"))?;
        }
        for (field, rates) in [
            ("topicDispatchRate", &self.topic_dispatch_rate),
            ("subscriptionDispatchRate", &self.subscription_dispatch_rate),
        ] {
            for (c, r) in rates {
                r.validate(&format!("{field}.{c}"))?;
            }
        }
        if let Some(q) = &self.storage_quota {
            q.validate("storage_quota")?;
        }
        for (field, v) in [
            ("offload_threshold", self.offload_threshold),
            (
                "offload_threshold_in_seconds",
                self.offload_threshold_in_seconds,
            ),
            (
                "offload_deletion_lag_ms",
                self.offload_deletion_lag_ms.unwrap_or(-1),
            ),
        ] {
            if v < -1 {
                return Err(invalid_field(field, format!("must be >= -1, got {v}")));
            }
        }
        if let Some(o) = &self.offload_policies {
            o.validate().map_err(|(field, reason)| {
                invalid_field(&format!("offload_policies.{field}"), reason)
            })?;
        }
        if let Some(c) = self
            .replication_clusters
            .iter()
            .find(|c| c.as_str() != CLUSTER)
        {
            return Err(invalid_field(
                "replication_clusters",
                format!("unknown cluster {c:?} (this cluster is {CLUSTER:?})"),
            ));
        }
        Ok(())
    }
}

impl PublishRate {
    /// Checks the values; errors name `field`.
    pub fn validate(&self, field: &str) -> Result<(), BrokerError> {
        if self.publish_throttling_rate_in_msg < -1 {
            return Err(invalid_field(
                &format!("{field}.publishThrottlingRateInMsg"),
                format!("must be >= -1, got {}", self.publish_throttling_rate_in_msg),
            ));
        }
        if self.publish_throttling_rate_in_byte < -1 {
            return Err(invalid_field(
                &format!("{field}.publishThrottlingRateInByte"),
                format!(
                    "must be >= -1, got {}",
                    self.publish_throttling_rate_in_byte
                ),
            ));
        }
        Ok(())
    }
}

impl DispatchRate {
    /// Checks the values; errors name `field`.
    pub fn validate(&self, field: &str) -> Result<(), BrokerError> {
        if self.dispatch_throttling_rate_in_msg < -1 {
            return Err(invalid_field(
                &format!("{field}.dispatchThrottlingRateInMsg"),
                format!(
                    "must be >= -1, got {}",
                    self.dispatch_throttling_rate_in_msg
                ),
            ));
        }
        if self.dispatch_throttling_rate_in_byte < -1 {
            return Err(invalid_field(
                &format!("{field}.dispatchThrottlingRateInByte"),
                format!(
                    "must be >= -1, got {}",
                    self.dispatch_throttling_rate_in_byte
                ),
            ));
        }
        if self.rate_period_in_second < 1 {
            return Err(invalid_field(
                &format!("{field}.ratePeriodInSecond"),
                format!("must be >= 1, got {}", self.rate_period_in_second),
            ));
        }
        Ok(())
    }
}

impl StorageQuota {
    /// Checks the values; errors name `field`.
    pub fn validate(&self, field: &str) -> Result<(), BrokerError> {
        if self.limit_size < -1 {
            return Err(invalid_field(
                &format!("{field}.limitSize"),
                format!("must be >= -1, got {}", self.limit_size),
            ));
        }
        if self.policy == BacklogQuotaPolicy::ConsumerBacklogEviction {
            return Err(invalid_field(
                &format!("{field}.policy"),
                "consumer_backlog_eviction does not apply to a storage quota \
                 (retained data is not backlog); use producer_request_hold or producer_exception",
            ));
        }
        Ok(())
    }
}

/// An integer request body, as Pulsar's clients send it: a JSON number or
/// a JSON string holding one. Errors name `field`.
pub fn parse_integer(body: &[u8], field: &str) -> Result<i64, BrokerError> {
    let value: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    match &value {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(v)) => v.trim().parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        invalid_field(
            field,
            format!(
                "expected an integer, got {:?}",
                String::from_utf8_lossy(body).trim()
            ),
        )
    })
}

/// A partition count given as a JSON number or a JSON string (`4`, `"4"`).
pub fn parse_partitions(body: &[u8]) -> Result<u32, BrokerError> {
    let text = String::from_utf8_lossy(body);
    let bad = || {
        invalid_field(
            "partitions",
            format!("expected a positive integer, got {:?}", text.trim()),
        )
    };
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad())?;
    let n = match &value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n > 0 && n <= MAX_PARTITIONS as u64 => Ok(n as u32),
        Some(n) if n > MAX_PARTITIONS as u64 => Err(invalid_field(
            "partitions",
            format!("at most {MAX_PARTITIONS} partitions, got {n}"),
        )),
        _ => Err(bad()),
    }
}

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_accept_numbers_and_numeric_strings_only() {
        assert_eq!(parse_partitions(b"4").unwrap(), 4);
        assert_eq!(parse_partitions(b" \"12\" ").unwrap(), 12);
        for bad in [
            &b"0"[..],
            b"-1",
            b"\"abc\"",
            b"abc",
            b"",
            b"1.5",
            b"[1]",
            b"null",
        ] {
            let e = parse_partitions(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("invalid field 'partitions': expected a positive integer"),
                "{e}"
            );
        }
        assert_eq!(
            parse_partitions(b"\"abc\"").unwrap_err().to_string(),
            "invalid field 'partitions': expected a positive integer, got \"\\\"abc\\\"\""
        );
        assert!(
            parse_partitions(b"100000")
                .unwrap_err()
                .to_string()
                .contains("at most")
        );
    }

    #[test]
    fn policies_parse_with_pulsar_names_and_name_bad_fields() {
        let p: Policies = parse_json(
            br#"{"retention_policies":{"retentionTimeInMinutes":60,"retentionSizeInMB":100},
                 "message_ttl_in_seconds":30,
                 "backlog_quota_map":{"destination_storage":{"limitSize":1024,"policy":"producer_exception"}},
                 "publishMaxMessageRate":{"standalone":{"publishThrottlingRateInMsg":10}},
                 "some_future_field":{"x":1}}"#,
            "policies",
        )
        .unwrap();
        p.validate().unwrap();
        assert_eq!(p.message_ttl_in_seconds, Some(30));
        let r = p.retention_policies.as_ref().unwrap();
        assert_eq!(
            (r.retention_time_in_minutes, r.retention_size_in_mb),
            (60, 100)
        );
        let q = &p.backlog_quota_map["destination_storage"];
        assert_eq!((q.limit_size, q.limit_time), (1024, -1));
        assert_eq!(q.policy, BacklogQuotaPolicy::ProducerException);
        assert_eq!(
            p.publish_max_message_rate["standalone"].publish_throttling_rate_in_msg,
            10
        );
        // Round trip keeps the names.
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["retention_policies"]["retentionSizeInMB"], 100);
        assert_eq!(json["offload_threshold"], -1);
        // An empty record (as the broker first wrote them) is the default.
        assert_eq!(
            parse_json::<Policies>(b"{}", "policies").unwrap(),
            Policies::default()
        );

        let e = parse_json::<Policies>(
            br#"{"retention_policies":{"retentionTimeInMinutes":"soon"}}"#,
            "policies",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("invalid field 'retention_policies.retentionTimeInMinutes'"),
            "{e}"
        );
        let e = parse_json::<Policies>(
            br#"{"backlog_quota_map":{"destination_storage":{"policy":"drop_everything"}}}"#,
            "policies",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("backlog_quota_map.destination_storage.policy"),
            "{e}"
        );
        let e = parse_json::<Policies>(b"{not json", "policies")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid policies"), "{e}");
        let bad: Policies = parse_json(br#"{"message_ttl_in_seconds":-5}"#, "policies").unwrap();
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "invalid field 'message_ttl_in_seconds': must be >= 0, got -5"
        );
        let bad: Policies =
            parse_json(br#"{"replication_clusters":["mars"]}"#, "policies").unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn tenant_info_uses_pulsar_names() {
        let t: TenantInfo = parse_json(
            br#"{"adminRoles":["ops"],"allowedClusters":["standalone"]}"#,
            "tenant info",
        )
        .unwrap();
        assert_eq!(t.admin_roles, vec!["ops"]);
        let e = parse_json::<TenantInfo>(br#"{"allowedClusters":"standalone"}"#, "tenant info")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid field 'allowedClusters'"), "{e}");
    }
}
