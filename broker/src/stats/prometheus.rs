//! The broker's per-topic and per-namespace Prometheus metrics
//! (`strata_broker_topic_*{namespace,topic}`,
//! `strata_broker_namespace_*{namespace}`, `strata_broker_topics`), read
//! from the loaded topics' meters at scrape time.

use std::collections::BTreeMap;
use std::sync::Weak;

use strata_common::metrics::{Exposition, MetricsSource};

use super::topic_stats::backlog_of;
use crate::service::BrokerService;

/// The metrics source of a broker's topics; see the module docs.
pub struct TopicMetrics {
    service: Weak<BrokerService>,
}

impl TopicMetrics {
    pub fn new(service: Weak<BrokerService>) -> TopicMetrics {
        TopicMetrics { service }
    }
}

/// One topic's (or one namespace's summed) figures.
#[derive(Default, Clone, Copy)]
struct Figures {
    msg_rate_in: f64,
    msg_rate_out: f64,
    throughput_in: f64,
    throughput_out: f64,
    msg_in: u64,
    bytes_in: u64,
    msg_out: u64,
    bytes_out: u64,
    backlog: u64,
    storage: u64,
    producers: u64,
    subscriptions: u64,
    consumers: u64,
    topics: u64,
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.msg_rate_in += o.msg_rate_in;
        self.msg_rate_out += o.msg_rate_out;
        self.throughput_in += o.throughput_in;
        self.throughput_out += o.throughput_out;
        self.msg_in += o.msg_in;
        self.bytes_in += o.bytes_in;
        self.msg_out += o.msg_out;
        self.bytes_out += o.bytes_out;
        self.backlog += o.backlog;
        self.storage += o.storage;
        self.producers += o.producers;
        self.subscriptions += o.subscriptions;
        self.consumers += o.consumers;
        self.topics += o.topics;
    }

    /// Writes every family for one series, `scope` being `topic` or `namespace`.
    fn render(&self, out: &mut Exposition, scope: &str, labels: &[(&str, &str)]) {
        let g = |out: &mut Exposition, what: &str, help: &str, v: f64| {
            out.gauge_f64_with(
                &format!("strata_broker_{scope}_{what}"),
                &format!("{help} (per {scope})."),
                labels,
                v,
            )
        };
        let c = |out: &mut Exposition, what: &str, help: &str, v: u64| {
            out.counter_with(
                &format!("strata_broker_{scope}_{what}"),
                &format!("{help} (per {scope})."),
                labels,
                v,
            )
        };
        g(
            out,
            "msg_rate_in",
            "Messages published per second over the last stats interval",
            self.msg_rate_in,
        );
        g(
            out,
            "msg_rate_out",
            "Messages dispatched per second over the last stats interval",
            self.msg_rate_out,
        );
        g(
            out,
            "throughput_in",
            "Bytes published per second over the last stats interval",
            self.throughput_in,
        );
        g(
            out,
            "throughput_out",
            "Bytes dispatched per second over the last stats interval",
            self.throughput_out,
        );
        c(out, "msg_in_total", "Messages published", self.msg_in);
        c(out, "bytes_in_total", "Bytes published", self.bytes_in);
        c(out, "msg_out_total", "Messages dispatched", self.msg_out);
        c(out, "bytes_out_total", "Bytes dispatched", self.bytes_out);
        g(
            out,
            "msg_backlog",
            "Entries not yet acknowledged, summed over durable subscriptions",
            self.backlog as f64,
        );
        g(
            out,
            "storage_size",
            "Bytes stored in the managed ledger",
            self.storage as f64,
        );
        g(
            out,
            "producers",
            "Connected producers",
            self.producers as f64,
        );
        g(
            out,
            "subscriptions",
            "Subscriptions",
            self.subscriptions as f64,
        );
        g(
            out,
            "consumers",
            "Connected consumers",
            self.consumers as f64,
        );
    }
}

impl MetricsSource for TopicMetrics {
    fn render(&self, out: &mut Exposition) {
        let Some(service) = self.service.upgrade() else {
            return;
        };
        let mut topics = service.loaded_topics();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        let mut namespaces: BTreeMap<String, Figures> = BTreeMap::new();
        for t in &topics {
            let ml = t.ml.stats();
            let (i, o) = (t.msg_in.read(), t.shared.out.read());
            let subs = t.subscriptions();
            let f = Figures {
                msg_rate_in: i.msg_rate,
                msg_rate_out: o.msg_rate,
                throughput_in: i.byte_rate,
                throughput_out: o.byte_rate,
                msg_in: i.msgs,
                bytes_in: i.bytes,
                msg_out: o.msgs,
                bytes_out: o.bytes,
                backlog: subs
                    .iter()
                    .filter(|s| s.durable)
                    .map(|s| backlog_of(s, &ml.ledgers).0)
                    .sum(),
                storage: ml.size_bytes,
                producers: t.producers().len() as u64,
                subscriptions: subs.len() as u64,
                consumers: subs.iter().map(|s| s.consumers().len() as u64).sum(),
                topics: 1,
            };
            let ns = t.name.namespace.to_string();
            let topic = t.name.to_string();
            f.render(out, "topic", &[("namespace", &ns), ("topic", &topic)]);
            namespaces.entry(ns).or_default().add(&f);
        }
        for (ns, f) in &namespaces {
            f.render(out, "namespace", &[("namespace", ns)]);
            out.gauge_f64_with(
                "strata_broker_namespace_topics",
                "Topics loaded on this broker (per namespace).",
                &[("namespace", ns)],
                f.topics as f64,
            );
        }
        out.gauge(
            "strata_broker_topics",
            "Topics loaded on this broker.",
            topics.len() as i64,
        );
    }
}
