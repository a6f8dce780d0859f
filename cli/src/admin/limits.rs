//! `strata admin namespaces ...` for a namespace's quotas and limits:
//! publish and dispatch rates, backlog quotas, message TTL, the `max-*`
//! limits and the storage quota, each over its own Pulsar path under
//! `/admin/v2/namespaces/{tenant}/{ns}/`.
//!
//! The seven integer limits share one command shape instead of 21 verbs:
//! `set-limit NS max-producers-per-topic 5`, `get-limit NS NAME`,
//! `remove-limit NS NAME`, and `get-limits NS` for all of them. A limit of
//! 0 means no limit; a removed one falls back to the broker's default.
//! A read of a policy that is not set prints `not set` (JSON: `null`).

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::http::{AdminError, Body};
use super::table::{self, Table};
use super::{Ctx, namespace_arg, namespace_path, parse, render_fields};

#[derive(Subcommand, Debug)]
pub enum LimitsCommand {
    /// Limit what each producer of the namespace's topics may publish.
    SetPublishRate {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        #[command(flatten)]
        rate: PublishRateArgs,
    },
    /// Show the namespace's publish rate.
    GetPublishRate {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Remove the namespace's publish rate.
    RemovePublishRate {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Limit what each topic of the namespace dispatches to its consumers.
    SetDispatchRate {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        #[command(flatten)]
        rate: DispatchRateArgs,
    },
    /// Show the namespace's dispatch rate per topic.
    GetDispatchRate {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Remove the namespace's dispatch rate per topic.
    RemoveDispatchRate {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Limit what each subscription of the namespace's topics is dispatched.
    SetSubscriptionDispatchRate {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        #[command(flatten)]
        rate: DispatchRateArgs,
    },
    /// Show the namespace's dispatch rate per subscription.
    GetSubscriptionDispatchRate {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Remove the namespace's dispatch rate per subscription.
    RemoveSubscriptionDispatchRate {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Set a backlog quota: how much (size) or how old (time) a topic's
    /// backlog may grow, and what happens then.
    SetBacklogQuota {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        /// Backlog size allowed: 500M, 10G... or -1 (no limit). Needed
        /// for --type destination_storage.
        #[arg(long, allow_hyphen_values = true)]
        limit_size: Option<String>,
        /// Age of the oldest unacknowledged message allowed: 30m, 1h...
        /// or -1 (no limit). Needed for --type message_age.
        #[arg(long, allow_hyphen_values = true)]
        limit_time: Option<String>,
        /// What happens once the quota is exceeded.
        #[arg(long)]
        policy: BacklogPolicy,
        /// Which quota: by size or by age.
        #[arg(long = "type", default_value = "destination_storage")]
        kind: QuotaType,
    },
    /// Show the namespace's backlog quotas.
    GetBacklogQuotas {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Remove one of the namespace's backlog quotas.
    RemoveBacklogQuota {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        /// Which quota: by size or by age.
        #[arg(long = "type", default_value = "destination_storage")]
        kind: QuotaType,
    },
    /// Acknowledge messages automatically once they are older than this.
    SetMessageTtl {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        /// The time to live: 30s, 10m, 1h, 2d... (0: none).
        #[arg(long)]
        ttl: String,
    },
    /// Show the namespace's message TTL, in seconds.
    GetMessageTtl {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Remove the namespace's message TTL.
    RemoveMessageTtl {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Set one of the namespace's limits (0: no limit).
    SetLimit {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        /// Which limit.
        limit: LimitName,
        /// Its value: 0 or more.
        value: u32,
    },
    /// Show one of the namespace's limits.
    GetLimit {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        /// Which limit.
        limit: LimitName,
    },
    /// Show all of the namespace's limits (`-`: the broker's default).
    GetLimits {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Remove one of the namespace's limits (back to the broker's default).
    RemoveLimit {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        /// Which limit.
        limit: LimitName,
    },
    /// Set how much the namespace may store over both tiers (bookies and
    /// object storage), and what producers meet beyond it.
    SetStorageQuota {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        /// Bytes allowed: 500M, 10G, 1T... or -1 (no limit).
        #[arg(long, allow_hyphen_values = true)]
        limit: String,
        /// What producers meet once the quota is used up.
        #[arg(long)]
        policy: StoragePolicy,
    },
    /// Show the namespace's storage quota.
    GetStorageQuota {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Remove the namespace's storage quota.
    RemoveStorageQuota {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
}

/// Pulsar's PublishRate.
#[derive(Args, Debug)]
pub struct PublishRateArgs {
    /// Messages per second each producer may publish (-1: no limit).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-1..))]
    pub msg_rate: i32,
    /// Bytes per second each producer may publish: 1M, 512k... (-1: no limit).
    #[arg(long, default_value = "-1", allow_hyphen_values = true)]
    pub byte_rate: String,
}

/// Pulsar's DispatchRate.
#[derive(Args, Debug)]
pub struct DispatchRateArgs {
    /// Messages dispatched per period (-1: no limit).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-1..))]
    pub msg_rate: i32,
    /// Bytes dispatched per period: 1M, 512k... (-1: no limit).
    #[arg(long, default_value = "-1", allow_hyphen_values = true)]
    pub byte_rate: String,
    /// The period the rates are counted over, in seconds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub period: i32,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
pub enum BacklogPolicy {
    /// Producers wait until the backlog shrinks, then time out.
    #[value(alias = "producer-request-hold")]
    ProducerRequestHold,
    /// Producers are refused at once.
    #[value(alias = "producer-exception")]
    ProducerException,
    /// The slowest subscriptions are moved forward.
    #[value(alias = "consumer-backlog-eviction")]
    ConsumerBacklogEviction,
}

/// The storage quota's policies: retained data is not backlog, so there is
/// nothing to evict.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
pub enum StoragePolicy {
    /// Producers wait until space is freed, then time out.
    #[value(alias = "producer-request-hold")]
    ProducerRequestHold,
    /// Producers are refused at once.
    #[value(alias = "producer-exception")]
    ProducerException,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
pub enum QuotaType {
    /// By backlog size.
    #[value(alias = "destination-storage")]
    DestinationStorage,
    /// By the age of the oldest unacknowledged message.
    #[value(alias = "message-age")]
    MessageAge,
}

/// The integer limits of a namespace (Pulsar's names in kebab-case).
// The variants are the command-line values, so they keep Pulsar's `max` prefix.
#[allow(clippy::enum_variant_names)]
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitName {
    #[value(name = "max-producers-per-topic")]
    ProducersPerTopic,
    #[value(name = "max-consumers-per-topic")]
    ConsumersPerTopic,
    #[value(name = "max-consumers-per-subscription")]
    ConsumersPerSubscription,
    #[value(name = "max-unacked-messages-per-consumer")]
    UnackedMessagesPerConsumer,
    #[value(name = "max-unacked-messages-per-subscription")]
    UnackedMessagesPerSubscription,
    #[value(name = "max-subscriptions-per-topic")]
    SubscriptionsPerTopic,
    #[value(name = "max-topics-per-namespace")]
    TopicsPerNamespace,
}

impl LimitName {
    /// The REST path segment and the Policies field name.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            LimitName::ProducersPerTopic => ("maxProducersPerTopic", "max_producers_per_topic"),
            LimitName::ConsumersPerTopic => ("maxConsumersPerTopic", "max_consumers_per_topic"),
            LimitName::ConsumersPerSubscription => (
                "maxConsumersPerSubscription",
                "max_consumers_per_subscription",
            ),
            LimitName::UnackedMessagesPerConsumer => (
                "maxUnackedMessagesPerConsumer",
                "max_unacked_messages_per_consumer",
            ),
            LimitName::UnackedMessagesPerSubscription => (
                "maxUnackedMessagesPerSubscription",
                "max_unacked_messages_per_subscription",
            ),
            LimitName::SubscriptionsPerTopic => {
                ("maxSubscriptionsPerTopic", "max_subscriptions_per_topic")
            }
            LimitName::TopicsPerNamespace => ("maxTopicsPerNamespace", "max_topics_per_namespace"),
        }
    }

    /// As typed on the command line.
    fn flag(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// A ValueEnum's name as the server spells it (the command-line name).
fn wire_name(v: impl ValueEnum) -> String {
    v.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

pub async fn run(ctx: &Ctx, cmd: LimitsCommand) -> Result<(), AdminError> {
    use LimitsCommand as C;
    match cmd {
        C::SetPublishRate { namespace, rate } => {
            let body = json!({
                "publishThrottlingRateInMsg": rate.msg_rate,
                "publishThrottlingRateInByte": bytes_or_unlimited("byte rate", &rate.byte_rate)?,
            });
            set(ctx, &namespace, "publishRate", &body, "the publish rate").await?;
        }
        C::GetPublishRate { namespace } => show(ctx, &namespace, "publishRate").await?,
        C::RemovePublishRate { namespace } => {
            remove(ctx, &namespace, "publishRate", "the publish rate").await?
        }
        C::SetDispatchRate { namespace, rate } => {
            let body = rate.to_json()?;
            set(ctx, &namespace, "dispatchRate", &body, "the dispatch rate").await?;
        }
        C::GetDispatchRate { namespace } => show(ctx, &namespace, "dispatchRate").await?,
        C::RemoveDispatchRate { namespace } => {
            remove(ctx, &namespace, "dispatchRate", "the dispatch rate").await?
        }
        C::SetSubscriptionDispatchRate { namespace, rate } => {
            let body = rate.to_json()?;
            let what = "the subscription dispatch rate";
            set(ctx, &namespace, "subscriptionDispatchRate", &body, what).await?;
        }
        C::GetSubscriptionDispatchRate { namespace } => {
            show(ctx, &namespace, "subscriptionDispatchRate").await?
        }
        C::RemoveSubscriptionDispatchRate { namespace } => {
            let what = "the subscription dispatch rate";
            remove(ctx, &namespace, "subscriptionDispatchRate", what).await?
        }
        C::SetBacklogQuota {
            namespace,
            limit_size,
            limit_time,
            policy,
            kind,
        } => {
            let ns = namespace_arg(&namespace)?;
            let body = backlog_quota(limit_size.as_deref(), limit_time.as_deref(), policy, kind)?;
            let kind = wire_name(kind);
            let path = namespace_path(&ns, &["backlogQuota"]);
            let query = [("backlogQuotaType", kind.as_str())];
            let answer = ctx
                .client
                .request(Method::POST, &path, &query, Some(&body))
                .await?;
            ctx.done(answer, format_args!("set the {kind} backlog quota of {ns}"));
        }
        C::GetBacklogQuotas { namespace } => {
            let ns = namespace_arg(&namespace)?;
            let path = namespace_path(&ns, &["backlogQuotaMap"]);
            let body = ctx.client.get(&path, &[]).await?;
            ctx.show(body, render_quotas);
        }
        C::RemoveBacklogQuota { namespace, kind } => {
            let ns = namespace_arg(&namespace)?;
            let kind = wire_name(kind);
            let path = namespace_path(&ns, &["backlogQuota"]);
            let query = [("backlogQuotaType", kind.as_str())];
            let answer = ctx
                .client
                .request(Method::DELETE, &path, &query, None)
                .await?;
            ctx.done(
                answer,
                format_args!("removed the {kind} backlog quota of {ns}"),
            );
        }
        C::SetMessageTtl { namespace, ttl } => {
            let body = json!(parse::ttl_seconds(&ttl)?);
            set(ctx, &namespace, "messageTTL", &body, "the message TTL").await?;
        }
        C::GetMessageTtl { namespace } => show(ctx, &namespace, "messageTTL").await?,
        C::RemoveMessageTtl { namespace } => {
            remove(ctx, &namespace, "messageTTL", "the message TTL").await?
        }
        C::SetLimit {
            namespace,
            limit,
            value,
        } => {
            let ns = namespace_arg(&namespace)?;
            let path = namespace_path(&ns, &[limit.names().0]);
            let answer = ctx.client.post(&path, Some(&json!(value))).await?;
            ctx.done(
                answer,
                format_args!("set {} of {ns} to {value}", limit.flag()),
            );
        }
        C::GetLimit { namespace, limit } => show(ctx, &namespace, limit.names().0).await?,
        C::GetLimits { namespace } => {
            let ns = namespace_arg(&namespace)?;
            let policies = ctx.client.get_json(&namespace_path(&ns, &[])).await?;
            ctx.show(Body::Json(limits_of(&policies)), render_limits);
        }
        C::RemoveLimit { namespace, limit } => {
            let what = limit.flag();
            remove(ctx, &namespace, limit.names().0, &what).await?
        }
        C::SetStorageQuota {
            namespace,
            limit,
            policy,
        } => {
            let body = json!({
                "limitSize": bytes_or_unlimited("storage quota", &limit)?,
                "policy": wire_name(policy),
            });
            set(ctx, &namespace, "storageQuota", &body, "the storage quota").await?;
        }
        C::GetStorageQuota { namespace } => show(ctx, &namespace, "storageQuota").await?,
        C::RemoveStorageQuota { namespace } => {
            remove(ctx, &namespace, "storageQuota", "the storage quota").await?
        }
    }
    Ok(())
}

/// POSTs `body` to the namespace's `policy` path.
async fn set(
    ctx: &Ctx,
    namespace: &str,
    policy: &str,
    body: &Value,
    what: &str,
) -> Result<(), AdminError> {
    let ns = namespace_arg(namespace)?;
    let answer = ctx
        .client
        .post(&namespace_path(&ns, &[policy]), Some(body))
        .await?;
    ctx.done(answer, format_args!("set {what} of {ns}"));
    Ok(())
}

/// GETs the namespace's `policy` path and prints it.
async fn show(ctx: &Ctx, namespace: &str, policy: &str) -> Result<(), AdminError> {
    let ns = namespace_arg(namespace)?;
    let body = ctx.client.get(&namespace_path(&ns, &[policy]), &[]).await?;
    ctx.show(body, render_policy);
    Ok(())
}

/// DELETEs the namespace's `policy` path.
async fn remove(ctx: &Ctx, namespace: &str, policy: &str, what: &str) -> Result<(), AdminError> {
    let ns = namespace_arg(namespace)?;
    let answer = ctx
        .client
        .delete(&namespace_path(&ns, &[policy]), false)
        .await?;
    ctx.done(answer, format_args!("removed {what} of {ns}"));
    Ok(())
}

impl DispatchRateArgs {
    fn to_json(&self) -> Result<Value, AdminError> {
        Ok(json!({
            "dispatchThrottlingRateInMsg": self.msg_rate,
            "dispatchThrottlingRateInByte": bytes_or_unlimited("byte rate", &self.byte_rate)?,
            "ratePeriodInSecond": self.period,
            "relativeToPublishRate": false,
        }))
    }
}

/// A size in bytes (`10M`, `1G`, `4096`) or `-1` (no limit).
fn bytes_or_unlimited(what: &str, s: &str) -> Result<i64, AdminError> {
    if s.trim() == "-1" {
        return Ok(-1);
    }
    let bytes = parse::size_bytes(what, s)?;
    i64::try_from(bytes)
        .map_err(|_| AdminError::Invalid(format!("invalid {what} {s:?}: too large")))
}

/// A time in whole seconds (`30m`, `1h`, `90`) or `-1` (no limit).
fn seconds_or_unlimited(what: &str, s: &str) -> Result<i64, AdminError> {
    if s.trim() == "-1" {
        return Ok(-1);
    }
    let d = parse::duration(what, s)?;
    if d.subsec_nanos() != 0 {
        return Err(AdminError::Invalid(format!(
            "invalid {what} {s:?}: the unit is one second"
        )));
    }
    i64::try_from(d.as_secs())
        .ok()
        .filter(|s| *s <= i64::from(i32::MAX))
        .ok_or_else(|| AdminError::Invalid(format!("invalid {what} {s:?}: too large")))
}

/// Pulsar's BacklogQuota body; the limit that the quota's type uses must
/// be given.
fn backlog_quota(
    limit_size: Option<&str>,
    limit_time: Option<&str>,
    policy: BacklogPolicy,
    kind: QuotaType,
) -> Result<Value, AdminError> {
    let needed = match kind {
        QuotaType::DestinationStorage if limit_size.is_none() => Some("--limit-size"),
        QuotaType::MessageAge if limit_time.is_none() => Some("--limit-time"),
        _ => None,
    };
    if let Some(flag) = needed {
        return Err(AdminError::Invalid(format!(
            "a {} backlog quota needs {flag}",
            wire_name(kind)
        )));
    }
    Ok(json!({
        "limitSize": bytes_or_unlimited("limit size", limit_size.unwrap_or("-1"))?,
        "limitTime": seconds_or_unlimited("limit time", limit_time.unwrap_or("-1"))?,
        "policy": wire_name(policy),
    }))
}

/// The seven limits of a namespace's policies, by Policies field name
/// (`null`: not set).
fn limits_of(policies: &Value) -> Value {
    let mut out = Map::new();
    for limit in LimitName::value_variants() {
        let field = limit.names().1;
        out.insert(
            field.to_string(),
            policies.get(field).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(out)
}

fn render_limits(v: &Value) -> String {
    let mut t = Table::new(&["LIMIT", "VALUE"]);
    for limit in LimitName::value_variants() {
        t.row(vec![limit.flag(), table::cell(v.get(limit.names().1))]);
    }
    t.render()
}

/// One policy: `not set`, a bare value, or an object's fields.
fn render_policy(v: &Value) -> String {
    match v {
        Value::Null => "not set\n".to_string(),
        other => render_fields(other),
    }
}

fn render_quotas(v: &Value) -> String {
    let mut t = Table::new(&["TYPE", "LIMIT_SIZE", "LIMIT_TIME", "POLICY"]);
    if let Some(map) = v.as_object() {
        for (kind, q) in map {
            t.row(vec![
                kind.clone(),
                table::cell(q.get("limitSize")),
                table::cell(q.get("limitTime")),
                table::cell(q.get("policy")),
            ]);
        }
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_take_minus_one_for_no_limit() {
        assert_eq!(bytes_or_unlimited("x", "-1").unwrap(), -1);
        assert_eq!(bytes_or_unlimited("x", "10M").unwrap(), 10 << 20);
        assert_eq!(bytes_or_unlimited("x", "4096").unwrap(), 4096);
        assert!(bytes_or_unlimited("x", "-2").is_err());
        assert!(bytes_or_unlimited("x", "lots").is_err());
        assert_eq!(seconds_or_unlimited("x", "-1").unwrap(), -1);
        assert_eq!(seconds_or_unlimited("x", "1h").unwrap(), 3600);
        assert_eq!(seconds_or_unlimited("x", "90").unwrap(), 90);
        assert!(seconds_or_unlimited("x", "1500ms").is_err());
        assert!(seconds_or_unlimited("x", "100y").is_err());
        assert!(seconds_or_unlimited("x", "-5").is_err());
    }

    #[test]
    fn backlog_quota_bodies_use_pulsar_names() {
        let q = backlog_quota(
            Some("10M"),
            None,
            BacklogPolicy::ProducerRequestHold,
            QuotaType::DestinationStorage,
        )
        .unwrap();
        assert_eq!(
            q,
            json!({"limitSize": 10 << 20, "limitTime": -1, "policy": "producer_request_hold"})
        );
        let q = backlog_quota(
            None,
            Some("1h"),
            BacklogPolicy::ConsumerBacklogEviction,
            QuotaType::MessageAge,
        )
        .unwrap();
        assert_eq!(q["limitTime"], 3600);
        assert_eq!(q["policy"], "consumer_backlog_eviction");
        let e = backlog_quota(
            None,
            Some("1h"),
            BacklogPolicy::ProducerException,
            QuotaType::DestinationStorage,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "a destination_storage backlog quota needs --limit-size"
        );
        assert_eq!(wire_name(QuotaType::MessageAge), "message_age");
        assert_eq!(
            wire_name(StoragePolicy::ProducerException),
            "producer_exception"
        );
    }

    #[test]
    fn limits_are_read_from_the_policies_and_rendered() {
        let policies = json!({"max_producers_per_topic": 5, "max_topics_per_namespace": 0});
        let limits = limits_of(&policies);
        assert_eq!(limits["max_producers_per_topic"], 5);
        assert_eq!(limits["max_consumers_per_topic"], Value::Null);
        assert_eq!(limits.as_object().unwrap().len(), 7);
        let text = render_limits(&limits);
        assert!(text.starts_with("LIMIT "), "{text}");
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["max-producers-per-topic", "5"]),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["max-consumers-per-topic", "-"]),
            "{text}"
        );
        assert_eq!(
            LimitName::UnackedMessagesPerConsumer.flag(),
            "max-unacked-messages-per-consumer"
        );
        assert_eq!(render_policy(&Value::Null), "not set\n");
        assert_eq!(render_policy(&json!(60)), "60\n");
    }
}
