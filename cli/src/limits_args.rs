//! The broker-wide limits of `strata standalone` (Pulsar's broker.conf
//! names in kebab-case) and how often quotas and TTLs are checked. A
//! namespace's policies override each limit; 0 is no limit.

use std::time::Duration;

use clap::Args;
use strata_broker::BrokerConfig;
use strata_broker::config::Limits;

#[derive(Args, Debug, Clone)]
pub struct LimitsArgs {
    /// Producers a topic may have (maxProducersPerTopic; 0: no limit).
    #[arg(long, env = "STRATA_MAX_PRODUCERS_PER_TOPIC", default_value_t = 0)]
    pub max_producers_per_topic: u32,
    /// Consumers a topic may have (maxConsumersPerTopic; 0: no limit).
    #[arg(long, env = "STRATA_MAX_CONSUMERS_PER_TOPIC", default_value_t = 0)]
    pub max_consumers_per_topic: u32,
    /// Consumers a subscription may have (maxConsumersPerSubscription; 0: no limit).
    #[arg(
        long,
        env = "STRATA_MAX_CONSUMERS_PER_SUBSCRIPTION",
        default_value_t = 0
    )]
    pub max_consumers_per_subscription: u32,
    /// Unacknowledged messages a Shared / Key_Shared subscription may have
    /// before it gets nothing more (maxUnackedMessagesPerSubscription; 0: no limit).
    #[arg(
        long,
        env = "STRATA_MAX_UNACKED_MESSAGES_PER_SUBSCRIPTION",
        default_value_t = 0
    )]
    pub max_unacked_messages_per_subscription: u32,
    /// Subscriptions a topic may have (maxSubscriptionsPerTopic; 0: no limit).
    #[arg(long, env = "STRATA_MAX_SUBSCRIPTIONS_PER_TOPIC", default_value_t = 0)]
    pub max_subscriptions_per_topic: u32,
    /// Topics a namespace may have, each partition counting one
    /// (maxTopicsPerNamespace; 0: no limit).
    #[arg(long, env = "STRATA_MAX_TOPICS_PER_NAMESPACE", default_value_t = 0)]
    pub max_topics_per_namespace: u32,
    /// Namespaces a tenant may have; creating one more is refused with 412
    /// (maxNamespacesPerTenant; 0: no limit).
    #[arg(long, env = "STRATA_MAX_NAMESPACES_PER_TENANT", default_value_t = 0)]
    pub max_namespaces_per_tenant: u32,
    /// How often each topic checks its backlog quotas and its namespace's
    /// storage quota (backlogQuotaCheckIntervalInSeconds).
    #[arg(long, env = "STRATA_BACKLOG_QUOTA_CHECK_INTERVAL", default_value = "60s",
          value_parser = positive_duration)]
    pub backlog_quota_check_interval: Duration,
    /// How often each topic expires messages older than its namespace's
    /// message TTL (messageExpiryCheckIntervalInMinutes).
    #[arg(long, env = "STRATA_MESSAGE_EXPIRY_CHECK_INTERVAL", default_value = "5m",
          value_parser = positive_duration)]
    pub message_expiry_check_interval: Duration,
}

impl LimitsArgs {
    /// `config` with these limits and intervals.
    pub fn apply(&self, config: BrokerConfig) -> BrokerConfig {
        BrokerConfig {
            limits: Limits {
                max_producers_per_topic: self.max_producers_per_topic,
                max_consumers_per_topic: self.max_consumers_per_topic,
                max_consumers_per_subscription: self.max_consumers_per_subscription,
                max_unacked_messages_per_subscription: self.max_unacked_messages_per_subscription,
                max_subscriptions_per_topic: self.max_subscriptions_per_topic,
                max_topics_per_namespace: self.max_topics_per_namespace,
                max_namespaces_per_tenant: self.max_namespaces_per_tenant,
            },
            backlog_quota_check_interval: self.backlog_quota_check_interval,
            message_expiry_check_interval: self.message_expiry_check_interval,
            ..config
        }
    }
}

/// A humantime duration (`30s`, `5m`) that is not zero: a zero interval
/// would make a check loop spin.
fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: LimitsArgs,
    }

    fn parse(args: &[&str]) -> Result<LimitsArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("standalone").chain(args.iter().copied()))
            .map(|c| c.limits)
    }

    #[test]
    fn flags_fill_the_broker_config() {
        let config = parse(&[
            "--max-producers-per-topic",
            "3",
            "--max-consumers-per-topic",
            "4",
            "--max-consumers-per-subscription",
            "5",
            "--max-unacked-messages-per-subscription",
            "6",
            "--max-subscriptions-per-topic",
            "7",
            "--max-topics-per-namespace",
            "8",
            "--max-namespaces-per-tenant",
            "9",
            "--backlog-quota-check-interval",
            "10s",
            "--message-expiry-check-interval",
            "1m 30s",
        ])
        .unwrap()
        .apply(BrokerConfig::default());
        let l = &config.limits;
        assert_eq!(
            [
                l.max_producers_per_topic,
                l.max_consumers_per_topic,
                l.max_consumers_per_subscription,
                l.max_unacked_messages_per_subscription,
                l.max_subscriptions_per_topic,
                l.max_topics_per_namespace,
                l.max_namespaces_per_tenant,
            ],
            [3, 4, 5, 6, 7, 8, 9]
        );
        assert_eq!(config.backlog_quota_check_interval, Duration::from_secs(10));
        assert_eq!(
            config.message_expiry_check_interval,
            Duration::from_secs(90)
        );
        // What the flags do not own is left alone.
        assert_eq!(
            config.max_message_size,
            BrokerConfig::default().max_message_size
        );
    }

    #[test]
    fn defaults_and_bad_values() {
        // Only when the environment does not override the defaults.
        if std::env::vars().all(|(k, _)| !k.starts_with("STRATA_MAX_") && !k.ends_with("_INTERVAL"))
        {
            let config = parse(&[]).unwrap().apply(BrokerConfig::default());
            assert_eq!(config.limits.max_namespaces_per_tenant, 0);
            assert_eq!(config.backlog_quota_check_interval, Duration::from_secs(60));
            assert_eq!(
                config.message_expiry_check_interval,
                Duration::from_secs(300)
            );
        }
        assert!(parse(&["--max-producers-per-topic", "-1"]).is_err());
        assert!(parse(&["--max-namespaces-per-tenant", "many"]).is_err());
        assert!(parse(&["--backlog-quota-check-interval", "0s"]).is_err());
        assert!(parse(&["--message-expiry-check-interval", "soon"]).is_err());
    }
}
