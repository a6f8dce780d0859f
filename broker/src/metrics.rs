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
