//! The broker's own metrics (`strata_broker_*`) that are not per topic:
//! publish latency, client connections and lookups. One set per
//! [`crate::service::BrokerService`], rendered on `/metrics` through
//! [`MetricsSource`] (see [`crate::Broker::metrics_source`]).

use std::sync::Arc;

use strata_common::metrics::{Counter, Exposition, Gauge, Histogram, MetricsSource};

#[derive(Debug)]
pub struct BrokerMetrics {
    /// From a SEND frame decoded to its SEND_RECEIPT queued for the client:
    /// the persistence wait (ledger add on a quorum of bookies) plus the
    /// broker's own queueing. One observation per SEND (a batch is one).
    pub publish_latency: Histogram,
    /// SENDs answered with a SEND_ERROR.
    pub publish_errors: Counter,
    /// Client connections open now.
    pub connections: Gauge,
    /// Client connections accepted since start.
    pub connections_opened: Counter,
    /// LOOKUP requests answered.
    pub lookups: Counter,
    /// LOOKUP requests answered with a failure.
    pub lookup_errors: Counter,
    /// LOOKUP request to its answer queued.
    pub lookup_latency: Histogram,
    /// Times a connection stopped reading because a topic's publish rate
    /// was used up, and the milliseconds it paused.
    pub publish_throttled: Counter,
    pub publish_throttled_ms: Counter,
    /// Times a dispatcher paused for a dispatch rate.
    pub dispatch_throttled: Counter,
    /// Backlog quota checks that moved cursors forward (eviction policy).
    pub backlog_evictions: Counter,
    /// Topics whose producers a backlog quota blocked.
    pub backlog_quota_blocks: Counter,
    /// Namespaces whose producers the storage quota blocked.
    pub storage_quota_blocks: Counter,
    /// Subscriptions whose messages the TTL expired (per check).
    pub ttl_expirations: Counter,
    /// Producers, consumers, subscriptions and topics refused by a limit.
    pub limit_rejections: Counter,
    /// Authentication failures and authorization denials.
    pub auth: crate::auth::AuthMetrics,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics {
            publish_latency: Histogram::latency(),
            publish_errors: Counter::default(),
            connections: Gauge::default(),
            connections_opened: Counter::default(),
            lookups: Counter::default(),
            lookup_errors: Counter::default(),
            lookup_latency: Histogram::latency(),
            publish_throttled: Counter::default(),
            publish_throttled_ms: Counter::default(),
            dispatch_throttled: Counter::default(),
            backlog_evictions: Counter::default(),
            backlog_quota_blocks: Counter::default(),
            storage_quota_blocks: Counter::default(),
            ttl_expirations: Counter::default(),
            limit_rejections: Counter::default(),
            auth: Default::default(),
        }
    }
}

impl BrokerMetrics {
    /// Counts a connection as open until the returned guard is dropped, so
    /// every way out of the connection task (error, close, panic unwinding)
    /// takes it off the gauge.
    pub(crate) fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.add(1);
        self.connections_opened.inc();
        ConnectionGuard(self.clone())
    }

    pub fn render(&self) -> String {
        let mut e = Exposition::default();
        MetricsSource::render(self, &mut e);
        e.finish()
    }
}

/// See [`BrokerMetrics::connection_opened`].
pub(crate) struct ConnectionGuard(Arc<BrokerMetrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.add(-1);
    }
}

impl MetricsSource for BrokerMetrics {
    fn render(&self, e: &mut Exposition) {
        e.histogram(
            "strata_broker_publish_latency_seconds",
            "SEND received to SEND_RECEIPT queued (persistence on a bookie quorum included).",
            &self.publish_latency,
        );
        e.counter(
            "strata_broker_publish_errors_total",
            "SENDs answered with SEND_ERROR.",
            self.publish_errors.get(),
        );
        e.gauge(
            "strata_broker_connections",
            "Client connections open.",
            self.connections.get(),
        );
        e.counter(
            "strata_broker_connections_opened_total",
            "Client connections accepted.",
            self.connections_opened.get(),
        );
        e.counter(
            "strata_broker_lookups_total",
            "Topic LOOKUP requests answered.",
            self.lookups.get(),
        );
        e.counter(
            "strata_broker_lookup_errors_total",
            "Topic LOOKUP requests answered with a failure.",
            self.lookup_errors.get(),
        );
        e.histogram(
            "strata_broker_lookup_latency_seconds",
            "Topic LOOKUP request to its answer queued.",
            &self.lookup_latency,
        );
        for (name, help, c) in [
            (
                "strata_broker_publish_throttled_total",
                "Times a connection stopped reading for a topic's publish rate.",
                &self.publish_throttled,
            ),
            (
                "strata_broker_dispatch_throttled_total",
                "Times a dispatcher paused for a dispatch rate.",
                &self.dispatch_throttled,
            ),
            (
                "strata_broker_backlog_evictions_total",
                "Backlog quota checks that moved cursors forward (consumer_backlog_eviction).",
                &self.backlog_evictions,
            ),
            (
                "strata_broker_backlog_quota_blocks_total",
                "Topics whose producers a backlog quota blocked.",
                &self.backlog_quota_blocks,
            ),
            (
                "strata_broker_storage_quota_blocks_total",
                "Namespaces whose producers the storage quota blocked.",
                &self.storage_quota_blocks,
            ),
            (
                "strata_broker_ttl_expirations_total",
                "Subscriptions whose messages the message TTL expired.",
                &self.ttl_expirations,
            ),
            (
                "strata_broker_limit_rejections_total",
                "Producers, consumers, subscriptions and topics refused by a namespace limit.",
                &self.limit_rejections,
            ),
        ] {
            e.counter(name, help, c.get());
        }
        e.counter(
            "strata_broker_publish_throttled_milliseconds_total",
            "Milliseconds connections paused reading for publish rates.",
            self.publish_throttled_ms.get(),
        );
        self.auth.render(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_guard_keeps_the_gauge_honest() {
        let m = Arc::new(BrokerMetrics::default());
        let a = m.connection_opened();
        let b = m.connection_opened();
        assert_eq!(m.connections.get(), 2);
        drop(a);
        assert_eq!(m.connections.get(), 1);
        drop(b);
        assert_eq!(m.connections.get(), 0);
        let text = m.render();
        assert!(
            text.lines().any(|l| l == "strata_broker_connections 0"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == "strata_broker_connections_opened_total 2"),
            "{text}"
        );
    }
}
