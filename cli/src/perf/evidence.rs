//! What the broker's `/metrics` says happened during a benchmark phase:
//! the counters of its publish throttling and backlog quotas, and (when the
//! bookie runs in the same process, as in `strata standalone`) how long the
//! journal's fsyncs took, the physical floor under every publish latency.
//! Both are read at a phase's start and end and reported as differences.

use anyhow::Context;
use serde::Serialize;

use super::admin;

const FSYNC: &str = "strata_bookie_journal_fsync_seconds";

/// One reading of the page: the throttle and quota counters and the
/// journal fsync histogram.
#[derive(Debug, Clone, Default)]
pub struct BrokerReading {
    counters: BrokerCounters,
    /// Cumulative (upper bound in seconds, count) pairs, `+Inf` last; empty
    /// when the page has no journal histogram.
    fsync_buckets: Vec<(f64, f64)>,
    fsync_sum: f64,
}

/// The broker counters that show a namespace's limits at work.
#[derive(Serialize, Debug, Clone, Copy, Default)]
pub struct BrokerCounters {
    /// `strata_broker_publish_throttled_total`: times a connection paused for a publish rate.
    pub publish_throttled: f64,
    /// `strata_broker_publish_throttled_milliseconds_total`.
    pub publish_throttled_ms: f64,
    /// `strata_broker_backlog_quota_blocks_total`: topics a backlog quota blocked.
    pub backlog_quota_blocks: f64,
}

impl BrokerCounters {
    pub fn add(&mut self, o: &BrokerCounters) {
        self.publish_throttled += o.publish_throttled;
        self.publish_throttled_ms += o.publish_throttled_ms;
        self.backlog_quota_blocks += o.backlog_quota_blocks;
    }
}

/// Journal fsyncs between two readings. Percentiles are bucket upper
/// bounds, as precise as the broker's histogram.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct JournalFsync {
    pub fsyncs: u64,
    pub mean_ms: f64,
    /// Upper bound of the bucket holding the 99th percentile.
    pub p99_at_most_ms: f64,
    /// Upper bound of the bucket holding the slowest fsync (infinite: beyond the last bound).
    pub max_at_most_ms: f64,
    /// Fsyncs slower than 50 ms (the disk stalled; the first bucket bound
    /// at or above 50 ms).
    pub over_50ms: u64,
}

impl BrokerReading {
    pub async fn read(admin_url: &str) -> anyhow::Result<BrokerReading> {
        let page = admin::metrics_page(admin_url).await?;
        let get = |name: &str| {
            admin::parse_metric(&page, name)
                .with_context(|| format!("no sample {name} on {admin_url}/metrics"))
        };
        Ok(BrokerReading {
            counters: BrokerCounters {
                publish_throttled: get("strata_broker_publish_throttled_total")?,
                publish_throttled_ms: get("strata_broker_publish_throttled_milliseconds_total")?,
                backlog_quota_blocks: get("strata_broker_backlog_quota_blocks_total")?,
            },
            fsync_buckets: buckets(&page, FSYNC),
            fsync_sum: admin::parse_metric(&page, &format!("{FSYNC}_sum")).unwrap_or(0.0),
        })
    }

    /// Counter increases since `before`.
    pub fn counters_since(&self, before: &BrokerReading) -> BrokerCounters {
        let (a, b) = (&before.counters, &self.counters);
        BrokerCounters {
            publish_throttled: b.publish_throttled - a.publish_throttled,
            publish_throttled_ms: b.publish_throttled_ms - a.publish_throttled_ms,
            backlog_quota_blocks: b.backlog_quota_blocks - a.backlog_quota_blocks,
        }
    }

    /// The journal fsyncs since `before`; None without a journal histogram.
    pub fn fsync_since(&self, before: &BrokerReading) -> Option<JournalFsync> {
        if self.fsync_buckets.is_empty() || self.fsync_buckets.len() != before.fsync_buckets.len() {
            return None;
        }
        let diff: Vec<(f64, f64)> = self
            .fsync_buckets
            .iter()
            .zip(&before.fsync_buckets)
            .map(|((le, b), (_, a))| (*le, (b - a).max(0.0)))
            .collect();
        let total = diff.last().map_or(0.0, |d| d.1);
        let at_most = |rank: f64| {
            diff.iter()
                .find(|(_, c)| *c >= rank)
                .map_or(f64::INFINITY, |(le, _)| le * 1000.0)
        };
        let over_50ms = diff
            .iter()
            .find(|(le, _)| *le >= 0.05)
            .map_or(0.0, |(_, c)| total - c);
        Some(JournalFsync {
            fsyncs: total as u64,
            mean_ms: (self.fsync_sum - before.fsync_sum) * 1000.0 / total.max(1.0),
            p99_at_most_ms: if total > 0.0 {
                at_most((total * 0.99).ceil())
            } else {
                0.0
            },
            max_at_most_ms: if total > 0.0 { at_most(total) } else { 0.0 },
            over_50ms: over_50ms as u64,
        })
    }
}

/// The cumulative `_bucket{le="..."}` samples of the unlabelled histogram `name`.
fn buckets(page: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    page.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, value) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(counts: [u64; 4], sum: f64) -> String {
        format!(
            "{FSYNC}_bucket{{le=\"0.001\"}} {}\n{FSYNC}_bucket{{le=\"0.01\"}} {}\n\
             {FSYNC}_bucket{{le=\"0.1\"}} {}\n{FSYNC}_bucket{{le=\"+Inf\"}} {}\n\
             {FSYNC}_sum {sum}\n{FSYNC}_count {}\n",
            counts[0], counts[1], counts[2], counts[3], counts[3]
        )
    }

    fn reading(text: &str) -> BrokerReading {
        BrokerReading {
            counters: BrokerCounters::default(),
            fsync_buckets: buckets(text, FSYNC),
            fsync_sum: admin::parse_metric(text, &format!("{FSYNC}_sum")).unwrap_or(0.0),
        }
    }

    #[test]
    fn fsync_differences() {
        let a = reading(&page([10, 10, 10, 10], 0.005));
        // 200 more: 150 under 1 ms, 48 under 10 ms, 1 under 100 ms, 1 beyond.
        let b = reading(&page([160, 208, 209, 210], 1.005));
        let f = b.fsync_since(&a).unwrap();
        assert_eq!(f.fsyncs, 200);
        assert!((f.mean_ms - 5.0).abs() < 1e-9);
        assert_eq!(f.p99_at_most_ms, 10.0);
        assert!(f.max_at_most_ms.is_infinite());
        // No 50 ms bound here: the first bound above it (100 ms) counts.
        assert_eq!(f.over_50ms, 1);
        assert!(reading("nothing").fsync_since(&a).is_none());
        let none = a.fsync_since(&a).unwrap();
        assert_eq!((none.fsyncs, none.p99_at_most_ms), (0, 0.0));
    }
}
