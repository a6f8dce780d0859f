//! `/admin/v2/namespaces/{tenant}/{namespace}/{policy}`: the quota and
//! limit policies of a namespace, one at a time, with Pulsar's paths and
//! bodies: `publishRate`, `dispatchRate`, `subscriptionDispatchRate`
//! (rates of this cluster), the `max*` limits (integer bodies), and
//! Strata's `storageQuota`.
//!
//! Every policy here has the same three verbs: GET answers the value or
//! `null` when it is not set, POST sets it, DELETE removes it (back to the
//! broker's default); 404 for an unknown tenant or namespace. A body is
//! checked before the namespace is looked at, so a bad one is a 400 naming
//! the field whatever the path. Each policy is one [`NsPolicy`] entry and
//! one generic set of handlers, not three handlers per policy.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AdminState;
use super::error::{ApiResult, P};
use crate::error::BrokerError;
use crate::resources::{
    CLUSTER, DispatchRate, Policies, PublishRate, StorageQuota, invalid_field, namespace_name,
    parse_integer, parse_json,
};

/// One policy of a namespace reachable at its own path.
pub struct NsPolicy<T: 'static> {
    /// The path segment after `{tenant}/{namespace}/` (Pulsar's).
    pub path: &'static str,
    /// The name errors give the value (the Policies field for an integer).
    pub field: &'static str,
    /// Turns a request body into a checked value; errors name `field`.
    pub parse: fn(&[u8], &'static str) -> Result<T, BrokerError>,
    /// The value as stored, `None` when not set.
    pub get: fn(&Policies) -> Option<T>,
    /// Stores (`Some`) or removes (`None`) the value.
    pub put: fn(&mut Policies, Option<T>),
}

/// A policy stored in an `Option` field of [`Policies`].
macro_rules! option_field {
    ($path:literal, $field:ident, $parse:expr) => {
        NsPolicy {
            path: $path,
            field: stringify!($field),
            parse: $parse,
            get: |p| p.$field.clone(),
            put: |p, v| p.$field = v,
        }
    };
}

/// A policy stored per cluster in a map of [`Policies`], under [`CLUSTER`]
/// (as Pulsar stores a rate under the broker's cluster name).
macro_rules! cluster_field {
    ($path:literal, $field:ident, $parse:expr) => {
        NsPolicy {
            path: $path,
            field: $path,
            parse: $parse,
            get: |p| p.$field.get(CLUSTER).cloned(),
            put: |p, v| match v {
                Some(v) => {
                    p.$field.insert(CLUSTER.to_string(), v);
                }
                None => {
                    p.$field.remove(CLUSTER);
                }
            },
        }
    };
}

pub static PUBLISH_RATE: NsPolicy<PublishRate> =
    cluster_field!("publishRate", publish_max_message_rate, checked_json);
pub static DISPATCH_RATE: NsPolicy<DispatchRate> =
    cluster_field!("dispatchRate", topic_dispatch_rate, checked_json);
pub static SUBSCRIPTION_DISPATCH_RATE: NsPolicy<DispatchRate> = cluster_field!(
    "subscriptionDispatchRate",
    subscription_dispatch_rate,
    checked_json
);
pub static STORAGE_QUOTA: NsPolicy<StorageQuota> =
    option_field!("storageQuota", storage_quota, checked_json);

/// The integer limits, with Pulsar's paths and Policies field names.
pub static INTEGER_LIMITS: [NsPolicy<i32>; 7] = [
    option_field!("maxProducersPerTopic", max_producers_per_topic, limit),
    option_field!("maxConsumersPerTopic", max_consumers_per_topic, limit),
    option_field!(
        "maxConsumersPerSubscription",
        max_consumers_per_subscription,
        limit
    ),
    option_field!(
        "maxUnackedMessagesPerConsumer",
        max_unacked_messages_per_consumer,
        limit
    ),
    option_field!(
        "maxUnackedMessagesPerSubscription",
        max_unacked_messages_per_subscription,
        limit
    ),
    option_field!(
        "maxSubscriptionsPerTopic",
        max_subscriptions_per_topic,
        limit
    ),
    option_field!("maxTopicsPerNamespace", max_topics_per_namespace, limit),
];

pub fn routes() -> Router<AdminState> {
    let router = Router::new()
        .merge(policy_routes(&PUBLISH_RATE))
        .merge(policy_routes(&DISPATCH_RATE))
        .merge(policy_routes(&SUBSCRIPTION_DISPATCH_RATE))
        .merge(policy_routes(&STORAGE_QUOTA));
    INTEGER_LIMITS
        .iter()
        .fold(router, |r, p| r.merge(policy_routes(p)))
}

/// GET, POST and DELETE of one policy.
fn policy_routes<T>(policy: &'static NsPolicy<T>) -> Router<AdminState>
where
    T: Serialize + Clone + Send + Sync + 'static,
{
    Router::new().route(
        &format!(
            "/admin/v2/namespaces/{{tenant}}/{{namespace}}/{}",
            policy.path
        ),
        get(move |s: State<AdminState>, p: P<(String, String)>| get_policy(policy, s, p))
            .post(
                move |s: State<AdminState>, p: P<(String, String)>, body: Bytes| {
                    set_policy(policy, s, p, body)
                },
            )
            .delete(move |s: State<AdminState>, p: P<(String, String)>| {
                remove_policy(policy, s, p)
            }),
    )
}

async fn get_policy<T: Serialize>(
    policy: &'static NsPolicy<T>,
    State(s): State<AdminState>,
    P((t, ns)): P<(String, String)>,
) -> ApiResult<Json<Option<T>>> {
    let ns = namespace_name(&t, &ns)?;
    Ok(Json((policy.get)(&s.service.get_policies(&ns).await?)))
}

async fn set_policy<T: Clone>(
    policy: &'static NsPolicy<T>,
    State(s): State<AdminState>,
    P((t, ns)): P<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let ns = namespace_name(&t, &ns)?;
    let value = (policy.parse)(&body, policy.field)?;
    s.service
        .update_policies(&ns, |p| {
            (policy.put)(p, Some(value.clone()));
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_policy<T>(
    policy: &'static NsPolicy<T>,
    State(s): State<AdminState>,
    P((t, ns)): P<(String, String)>,
) -> ApiResult<StatusCode> {
    let ns = namespace_name(&t, &ns)?;
    s.service
        .update_policies(&ns, |p| {
            (policy.put)(p, None);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An integer limit: a JSON number or a string holding one, 0 or more.
fn limit(body: &[u8], field: &'static str) -> Result<i32, BrokerError> {
    let v = parse_integer(body, field)?;
    let v = i32::try_from(v).map_err(|_| invalid_field(field, format!("{v} is out of range")))?;
    if v < 0 {
        return Err(invalid_field(field, format!("must be >= 0, got {v}")));
    }
    Ok(v)
}

/// A policy body whose values are checked beyond their JSON types.
trait Checked {
    fn check(&self, field: &str) -> Result<(), BrokerError>;
}

impl Checked for PublishRate {
    fn check(&self, field: &str) -> Result<(), BrokerError> {
        self.validate(field)
    }
}

impl Checked for DispatchRate {
    fn check(&self, field: &str) -> Result<(), BrokerError> {
        self.validate(field)
    }
}

impl Checked for StorageQuota {
    fn check(&self, field: &str) -> Result<(), BrokerError> {
        self.validate(field)
    }
}

/// A JSON body, parsed and checked; errors name the body's field.
fn checked_json<T: DeserializeOwned + Checked>(
    body: &[u8],
    field: &'static str,
) -> Result<T, BrokerError> {
    let value: T = parse_json(body, field)?;
    value.check(field)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::BacklogQuotaPolicy;

    fn reason<T: std::fmt::Debug>(r: Result<T, BrokerError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn integer_limits_take_numbers_and_numeric_strings_and_refuse_negatives() {
        assert_eq!(limit(b"5", "max_producers_per_topic").unwrap(), 5);
        assert_eq!(limit(b" \"7\" ", "max_producers_per_topic").unwrap(), 7);
        assert_eq!(limit(b"0", "max_producers_per_topic").unwrap(), 0);
        assert_eq!(
            reason(limit(b"-1", "max_producers_per_topic")),
            "invalid field 'max_producers_per_topic': must be >= 0, got -1"
        );
        for bad in [&b"\"x\""[..], b"1.5", b"", b"null", b"[1]", b"4294967296"] {
            assert!(
                reason(limit(bad, "max_topics_per_namespace"))
                    .starts_with("invalid field 'max_topics_per_namespace'"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rate_and_quota_bodies_are_checked_and_name_the_field() {
        let r: PublishRate = checked_json(
            br#"{"publishThrottlingRateInMsg":10,"publishThrottlingRateInByte":1024}"#,
            "publishRate",
        )
        .unwrap();
        assert_eq!(
            (
                r.publish_throttling_rate_in_msg,
                r.publish_throttling_rate_in_byte
            ),
            (10, 1024)
        );
        let d: DispatchRate =
            checked_json(br#"{"dispatchThrottlingRateInMsg":5}"#, "dispatchRate").unwrap();
        assert_eq!(
            (d.dispatch_throttling_rate_in_byte, d.rate_period_in_second),
            (-1, 1)
        );
        let e = reason(checked_json::<DispatchRate>(
            br#"{"ratePeriodInSecond":0}"#,
            "dispatchRate",
        ));
        assert!(
            e.contains("ratePeriodInSecond") && e.contains(">= 1"),
            "{e}"
        );
        let e = reason(checked_json::<PublishRate>(
            br#"{"publishThrottlingRateInMsg":"fast"}"#,
            "publishRate",
        ));
        assert!(
            e.starts_with("invalid field 'publishThrottlingRateInMsg'"),
            "{e}"
        );
        let e = reason(checked_json::<PublishRate>(b"", "publishRate"));
        assert!(e.starts_with("invalid publishRate"), "{e}");

        let quota = |body: &[u8]| (STORAGE_QUOTA.parse)(body, STORAGE_QUOTA.field);
        let q = quota(br#"{"limitSize":1073741824,"policy":"producer_exception"}"#).unwrap();
        assert_eq!(q.policy, BacklogQuotaPolicy::ProducerException);
        let e = reason(quota(
            br#"{"limitSize":1,"policy":"consumer_backlog_eviction"}"#,
        ));
        assert!(e.starts_with("invalid field 'storage_quota.policy'"), "{e}");
        let e = reason(quota(br#"{"limitSize":1,"policy":"drop"}"#));
        assert!(e.starts_with("invalid field 'policy'"), "{e}");
    }

    #[test]
    fn cluster_policies_are_stored_under_this_cluster() {
        let mut p = Policies::default();
        (PUBLISH_RATE.put)(&mut p, Some(PublishRate::default()));
        assert!(p.publish_max_message_rate.contains_key(CLUSTER));
        assert_eq!((PUBLISH_RATE.get)(&p), Some(PublishRate::default()));
        (PUBLISH_RATE.put)(&mut p, None);
        assert!(p.publish_max_message_rate.is_empty());
        (SUBSCRIPTION_DISPATCH_RATE.put)(&mut p, Some(DispatchRate::default()));
        assert!(p.topic_dispatch_rate.is_empty());
        assert!(p.subscription_dispatch_rate.contains_key(CLUSTER));

        let paths: Vec<&str> = INTEGER_LIMITS.iter().map(|l| l.path).collect();
        assert_eq!(paths.len(), 7);
        for l in &INTEGER_LIMITS {
            (l.put)(&mut p, Some(3));
            assert_eq!((l.get)(&p), Some(3), "{}", l.path);
        }
        assert_eq!(p.max_unacked_messages_per_subscription, Some(3));
        // Each entry writes its own field.
        let json = serde_json::to_value(&p).unwrap();
        for l in &INTEGER_LIMITS {
            assert_eq!(json[l.field], 3, "{}", l.field);
        }
        p.validate().unwrap();
    }
}
