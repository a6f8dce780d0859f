//! Namespace offload policies (Pulsar's JSON names) and which ledgers they
//! select.
//!
//! The namespace record holds `offload_threshold` (bytes kept on bookies,
//! -1 never, 0 as soon as possible), `offload_threshold_in_seconds` (age of
//! a closed ledger after which it goes, -1 never), `offload_deletion_lag_ms`
//! and `offload_policies` (Pulsar's `OffloadPoliciesImpl`, whose thresholds,
//! deletion lag and store win when set). The store fields select an object
//! store other than the server's default for the namespace.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_managed_ledger::ManagedLedgerInfo;

/// Pulsar's default deletion lag (`managedLedgerOffloadDeletionLagMs`): 4 hours.
pub const DEFAULT_DELETION_LAG: Duration = Duration::from_secs(4 * 3600);

/// Pulsar's `OffloadPoliciesImpl`, the fields Strata uses.
/// `managedLedgerOffloadPrefix` is Strata's: the key prefix in the bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffloadPolicies {
    /// `aws-s3`, `s3` or `filesystem`; unset: the server's default store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_ledger_offload_driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_ledger_offload_threshold_in_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_ledger_offload_threshold_in_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_ledger_offload_deletion_lag_in_millis: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_ledger_offload_bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_ledger_offload_service_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_ledger_offload_region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_managed_ledger_offload_bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_managed_ledger_offload_service_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_managed_ledger_offload_region: Option<String>,
    /// For the `filesystem` driver: the directory.
    #[serde(
        default,
        rename = "fileSystemURI",
        skip_serializing_if = "Option::is_none"
    )]
    pub file_system_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_ledger_offload_prefix: Option<String>,
    /// Anything else Pulsar's admin tools send, kept as given.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl OffloadPolicies {
    /// Checks the fields a broker relies on; the error names the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let f = |name: &str, reason: String| Err((name.to_string(), reason));
        if let Some(v) = self.managed_ledger_offload_threshold_in_bytes
            && v < -1
        {
            return f(
                "managedLedgerOffloadThresholdInBytes",
                format!("must be >= -1, got {v}"),
            );
        }
        if let Some(v) = self.managed_ledger_offload_threshold_in_seconds
            && v < -1
        {
            return f(
                "managedLedgerOffloadThresholdInSeconds",
                format!("must be >= -1, got {v}"),
            );
        }
        if let Some(v) = self.managed_ledger_offload_deletion_lag_in_millis
            && v < -1
        {
            return f(
                "managedLedgerOffloadDeletionLagInMillis",
                format!("must be >= -1, got {v}"),
            );
        }
        if let Err(e) = self.store_url() {
            return f("managedLedgerOffloadDriver", e);
        }
        Ok(())
    }

    /// The object store these policies name, as a store URL; `None`: the
    /// server's default store.
    pub fn store_url(&self) -> Result<Option<String>, String> {
        let Some(driver) = self.managed_ledger_offload_driver.as_deref() else {
            return Ok(None);
        };
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        match driver.to_ascii_lowercase().as_str() {
            "aws-s3" | "s3" => {
                let bucket = pick(
                    &self.s3_managed_ledger_offload_bucket,
                    &self.managed_ledger_offload_bucket,
                )
                .filter(|b| !b.is_empty())
                .ok_or_else(|| {
                    format!("driver {driver} needs a bucket (s3ManagedLedgerOffloadBucket)")
                })?;
                let mut url = format!("s3://{bucket}");
                if let Some(p) = self
                    .managed_ledger_offload_prefix
                    .as_deref()
                    .map(|p| p.trim_matches('/'))
                    .filter(|p| !p.is_empty())
                {
                    url.push('/');
                    url.push_str(p);
                }
                let mut query = Vec::new();
                if let Some(e) = pick(
                    &self.s3_managed_ledger_offload_service_endpoint,
                    &self.managed_ledger_offload_service_endpoint,
                )
                .filter(|e| !e.is_empty())
                {
                    query.push(format!("endpoint={e}"));
                }
                if let Some(r) = pick(
                    &self.s3_managed_ledger_offload_region,
                    &self.managed_ledger_offload_region,
                )
                .filter(|r| !r.is_empty())
                {
                    query.push(format!("region={r}"));
                }
                if !query.is_empty() {
                    url.push('?');
                    url.push_str(&query.join("&"));
                }
                Ok(Some(url))
            }
            "filesystem" => {
                let dir = self
                    .file_system_uri
                    .clone()
                    .filter(|d| !d.is_empty())
                    .ok_or_else(|| {
                        "driver filesystem needs fileSystemURI (a directory)".to_string()
                    })?;
                Ok(Some(if dir.starts_with("file://") {
                    dir
                } else {
                    format!("file://{dir}")
                }))
            }
            other => Err(format!(
                "unknown offload driver {other:?} (aws-s3, s3, filesystem)"
            )),
        }
    }
}

/// The offload fields of a namespace record (other fields are ignored).
/// `Default` is what a record without them (or no record) means: no
/// offloading, as in Pulsar (thresholds -1).
#[derive(Clone, Debug, Deserialize)]
pub struct NamespaceOffload {
    #[serde(default = "minus_one")]
    pub offload_threshold: i64,
    #[serde(default = "minus_one")]
    pub offload_threshold_in_seconds: i64,
    #[serde(default)]
    pub offload_deletion_lag_ms: Option<i64>,
    #[serde(default)]
    pub offload_policies: Option<OffloadPolicies>,
}

fn minus_one() -> i64 {
    -1
}

/// Not derived: a derived `Default` would make the thresholds 0 ("offload
/// every closed ledger at once") for a namespace that has no record.
impl Default for NamespaceOffload {
    fn default() -> Self {
        NamespaceOffload {
            offload_threshold: minus_one(),
            offload_threshold_in_seconds: minus_one(),
            offload_deletion_lag_ms: None,
            offload_policies: None,
        }
    }
}

/// What a namespace's policies come to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    /// Keep this many bytes on bookies, offload older closed ledgers; `None`: off.
    pub threshold_bytes: Option<u64>,
    /// Offload closed ledgers closed longer ago than this; `None`: off.
    pub threshold_age: Option<Duration>,
    /// Delete the bookies' copy this long after the offload; `None`: never.
    pub deletion_lag: Option<Duration>,
    /// Store URL; `None`: the server's default.
    pub store_url: Option<String>,
}

impl NamespaceOffload {
    pub fn effective(&self) -> Effective {
        let p = self.offload_policies.clone().unwrap_or_default();
        let non_negative = |v: i64| (v >= 0).then_some(v as u64);
        let threshold_bytes = p
            .managed_ledger_offload_threshold_in_bytes
            .unwrap_or(self.offload_threshold);
        let threshold_secs = p
            .managed_ledger_offload_threshold_in_seconds
            .unwrap_or(self.offload_threshold_in_seconds);
        let lag = p
            .managed_ledger_offload_deletion_lag_in_millis
            .or(self.offload_deletion_lag_ms);
        Effective {
            threshold_bytes: non_negative(threshold_bytes),
            threshold_age: non_negative(threshold_secs).map(Duration::from_secs),
            deletion_lag: match lag {
                None => Some(DEFAULT_DELETION_LAG),
                Some(ms) => non_negative(ms).map(Duration::from_millis),
            },
            // Validated when set; a bad one falls back to the default store.
            store_url: p.store_url().ok().flatten(),
        }
    }
}

/// The closed ledgers of `info` that `policy` (or a manual request up to,
/// but excluding, ledger `requested_before`) wants offloaded, oldest first.
/// The newest ledger (being written) never qualifies, nor empty ones.
pub fn candidates(
    info: &ManagedLedgerInfo,
    policy: &Effective,
    requested_before: Option<u64>,
    now_ms: u64,
) -> Vec<u64> {
    let newest = info.ledgers.last().map(|l| l.ledger_id);
    // Bytes of the ledgers newer than each one: size-threshold selection
    // keeps the newest `threshold_bytes` on bookies.
    let mut newer_bytes = 0u64;
    let mut out = Vec::new();
    for l in info.ledgers.iter().rev() {
        let keep_for_size = policy
            .threshold_bytes
            .is_none_or(|t| newer_bytes + l.size_bytes <= t && t > 0);
        newer_bytes += l.size_bytes;
        if Some(l.ledger_id) == newest || !l.closed || l.entries == 0 {
            continue;
        }
        let by_size = policy.threshold_bytes.is_some() && !keep_for_size;
        let by_age = policy.threshold_age.is_some_and(|age| {
            let closed = l.closed_ms.unwrap_or(l.created_ms);
            now_ms.saturating_sub(closed) >= age.as_millis() as u64
        });
        let by_request = requested_before.is_some_and(|before| l.ledger_id < before);
        if by_size || by_age || by_request {
            out.push(l.ledger_id);
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use strata_managed_ledger::LedgerInfo;

    use super::*;

    fn ledger(id: u64, size: u64, closed_ms: u64) -> LedgerInfo {
        LedgerInfo {
            ledger_id: id,
            entries: 10,
            size_bytes: size,
            created_ms: closed_ms,
            closed: true,
            closed_ms: Some(closed_ms),
        }
    }

    fn info() -> ManagedLedgerInfo {
        let mut current = ledger(4, 100, 0);
        current.closed = false;
        ManagedLedgerInfo {
            ledgers: vec![
                ledger(1, 100, 1_000),
                ledger(2, 100, 2_000),
                ledger(3, 100, 3_000),
                current,
            ],
            properties: Default::default(),
        }
    }

    fn policy(bytes: Option<u64>, age_ms: Option<u64>) -> Effective {
        Effective {
            threshold_bytes: bytes,
            threshold_age: age_ms.map(Duration::from_millis),
            deletion_lag: None,
            store_url: None,
        }
    }

    #[test]
    fn size_threshold_keeps_the_newest_bytes() {
        // Current ledger 100 + ledger 3 100 = 200 kept; 1 and 2 go.
        assert_eq!(
            candidates(&info(), &policy(Some(200), None), None, 0),
            vec![1, 2]
        );
        // 0: everything closed goes.
        assert_eq!(
            candidates(&info(), &policy(Some(0), None), None, 0),
            vec![1, 2, 3]
        );
        assert!(candidates(&info(), &policy(Some(10_000), None), None, 0).is_empty());
        assert!(candidates(&info(), &policy(None, None), None, 0).is_empty());
    }

    #[test]
    fn age_threshold_and_requests() {
        assert_eq!(
            candidates(&info(), &policy(None, Some(1_500)), None, 4_000),
            vec![1, 2]
        );
        assert_eq!(
            candidates(&info(), &policy(None, None), Some(3), 0),
            vec![1, 2]
        );
        // A request naming the current ledger takes every closed one.
        assert_eq!(
            candidates(&info(), &policy(None, None), Some(4), 0),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn policies_resolve_with_pulsar_precedence() {
        let ns: NamespaceOffload = serde_json::from_str(
            r#"{"offload_threshold": 1000, "offload_deletion_lag_ms": 5,
                "offload_policies": {"managedLedgerOffloadThresholdInSeconds": 60,
                  "managedLedgerOffloadDriver": "aws-s3", "s3ManagedLedgerOffloadBucket": "b",
                  "s3ManagedLedgerOffloadServiceEndpoint": "http://127.0.0.1:9000",
                  "managedLedgerOffloadRegion": "garage", "managedLedgerOffloadPrefix": "/p/"}}"#,
        )
        .unwrap();
        let e = ns.effective();
        assert_eq!(e.threshold_bytes, Some(1000));
        assert_eq!(e.threshold_age, Some(Duration::from_secs(60)));
        assert_eq!(e.deletion_lag, Some(Duration::from_millis(5)));
        assert_eq!(
            e.store_url.as_deref(),
            Some("s3://b/p?endpoint=http://127.0.0.1:9000&region=garage")
        );
        let off: NamespaceOffload = serde_json::from_str("{}").unwrap();
        // No record at all means the same as a record without the fields.
        assert_eq!(NamespaceOffload::default().effective(), off.effective());
        assert_eq!(
            off.effective(),
            Effective {
                threshold_bytes: None,
                threshold_age: None,
                deletion_lag: Some(DEFAULT_DELETION_LAG),
                store_url: None,
            }
        );
        let bad = OffloadPolicies {
            managed_ledger_offload_driver: Some("tape".into()),
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "managedLedgerOffloadDriver");
    }
}
