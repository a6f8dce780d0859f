//! Namespace policies as they apply to one topic: the effective limits (a
//! namespace's value, else the broker's), the rate limiters, and the quota
//! state that blocks producers.
//!
//! A topic holds one [`TopicLimits`] behind a lock and swaps it whole when
//! the namespace's policies change ([`crate::service::BrokerService::apply_policies`]),
//! so every check sees one consistent set of limits and changes apply to
//! loaded topics without a restart.

mod quota;
pub mod rate;

use std::time::Duration;

pub use quota::{QuotaBlock, policy_loop, policy_watch};
pub use rate::{Rate, RateLimiter};

use crate::config::BrokerConfig;
use crate::resources::{BacklogQuotaPolicy, CLUSTER, Policies};

/// A backlog quota of one kind, as it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BacklogLimit<T> {
    pub limit: T,
    pub policy: BacklogQuotaPolicy,
}

/// The limits of one topic (0 or `None`: no limit).
#[derive(Clone, Debug, PartialEq)]
pub struct TopicLimits {
    pub max_producers: u32,
    pub max_consumers: u32,
    pub max_consumers_per_subscription: u32,
    pub max_unacked_per_consumer: u32,
    pub max_unacked_per_subscription: u32,
    pub max_subscriptions: u32,
    pub message_ttl: Option<Duration>,
    /// `destination_storage`: bytes of backlog of the slowest subscription.
    pub backlog_size: Option<BacklogLimit<u64>>,
    /// `message_age`: age of the oldest unacknowledged message.
    pub backlog_age: Option<BacklogLimit<Duration>>,
    pub publish_rate: Rate,
    pub dispatch_rate: Rate,
    pub subscription_dispatch_rate: Rate,
}

impl Default for TopicLimits {
    fn default() -> Self {
        TopicLimits::new(&BrokerConfig::default(), &Policies::default())
    }
}

/// A namespace value when set, else the broker's (a negative namespace
/// value is no limit).
pub(crate) fn pick(ns: Option<i32>, broker: u32) -> u32 {
    match ns {
        Some(v) => v.max(0) as u32,
        None => broker,
    }
}

impl TopicLimits {
    pub fn new(config: &BrokerConfig, p: &Policies) -> TopicLimits {
        let b = &config.limits;
        let publish_rate = p
            .publish_max_message_rate
            .get(CLUSTER)
            .map_or(Rate::UNLIMITED, |r| Rate {
                msgs: r.publish_throttling_rate_in_msg as i64,
                bytes: r.publish_throttling_rate_in_byte,
                period: Duration::from_secs(1),
            });
        let dispatch = |m: &std::collections::BTreeMap<String, crate::resources::DispatchRate>| {
            m.get(CLUSTER).map_or(Rate::UNLIMITED, |r| Rate {
                msgs: r.dispatch_throttling_rate_in_msg as i64,
                bytes: r.dispatch_throttling_rate_in_byte,
                period: Duration::from_secs(r.rate_period_in_second.max(1) as u64),
            })
        };
        let quota = |kind: &str| p.backlog_quota_map.get(kind);
        TopicLimits {
            max_producers: pick(p.max_producers_per_topic, b.max_producers_per_topic),
            max_consumers: pick(p.max_consumers_per_topic, b.max_consumers_per_topic),
            max_consumers_per_subscription: pick(
                p.max_consumers_per_subscription,
                b.max_consumers_per_subscription,
            ),
            max_unacked_per_consumer: pick(
                p.max_unacked_messages_per_consumer,
                config.max_unacked_messages_per_consumer,
            ),
            max_unacked_per_subscription: pick(
                p.max_unacked_messages_per_subscription,
                b.max_unacked_messages_per_subscription,
            ),
            max_subscriptions: pick(p.max_subscriptions_per_topic, b.max_subscriptions_per_topic),
            message_ttl: p
                .message_ttl_in_seconds
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(s as u64)),
            backlog_size: quota("destination_storage")
                .filter(|q| q.limit_size >= 0)
                .map(|q| BacklogLimit {
                    limit: q.limit_size as u64,
                    policy: q.policy,
                }),
            backlog_age: quota("message_age")
                .filter(|q| q.limit_time >= 0)
                .map(|q| BacklogLimit {
                    limit: Duration::from_secs(q.limit_time as u64),
                    policy: q.policy,
                }),
            publish_rate,
            dispatch_rate: dispatch(&p.topic_dispatch_rate),
            subscription_dispatch_rate: dispatch(&p.subscription_dispatch_rate),
        }
    }
}

/// "reached the limit" error text shared by the admission checks.
pub(crate) fn over(what: &str, limit: u32, topic: &impl std::fmt::Display) -> String {
    format!("{topic} reached its limit of {limit} {what}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{BacklogQuota, DispatchRate, PublishRate};

    #[test]
    fn namespace_values_override_the_broker_and_negative_means_none() {
        let mut config = BrokerConfig::default();
        config.limits.max_producers_per_topic = 10;
        config.limits.max_consumers_per_topic = 20;
        let p = Policies {
            max_producers_per_topic: Some(2),
            max_consumers_per_topic: Some(-1),
            message_ttl_in_seconds: Some(0),
            ..Policies::default()
        };
        let l = TopicLimits::new(&config, &p);
        assert_eq!(l.max_producers, 2);
        assert_eq!(l.max_consumers, 0);
        assert_eq!(l.max_unacked_per_consumer, 50_000);
        assert_eq!(l.message_ttl, None);
        assert!(!l.publish_rate.is_limited());
    }

    #[test]
    fn rates_and_quotas_come_from_this_cluster() {
        let mut p = Policies::default();
        p.publish_max_message_rate.insert(
            CLUSTER.into(),
            PublishRate {
                publish_throttling_rate_in_msg: 100,
                publish_throttling_rate_in_byte: -1,
            },
        );
        p.publish_max_message_rate.insert(
            "elsewhere".into(),
            PublishRate {
                publish_throttling_rate_in_msg: 1,
                publish_throttling_rate_in_byte: 1,
            },
        );
        p.subscription_dispatch_rate.insert(
            CLUSTER.into(),
            DispatchRate {
                dispatch_throttling_rate_in_msg: 50,
                rate_period_in_second: 2,
                ..DispatchRate::default()
            },
        );
        p.backlog_quota_map.insert(
            "message_age".into(),
            BacklogQuota {
                limit_size: -1,
                limit_time: 30,
                policy: BacklogQuotaPolicy::ConsumerBacklogEviction,
            },
        );
        let l = TopicLimits::new(&BrokerConfig::default(), &p);
        assert_eq!(l.publish_rate.msgs, 100);
        assert!(!l.dispatch_rate.is_limited());
        assert_eq!(l.subscription_dispatch_rate.msgs, 50);
        assert_eq!(l.subscription_dispatch_rate.period, Duration::from_secs(2));
        assert_eq!(l.backlog_size, None);
        assert_eq!(
            l.backlog_age,
            Some(BacklogLimit {
                limit: Duration::from_secs(30),
                policy: BacklogQuotaPolicy::ConsumerBacklogEviction
            })
        );
    }
}
