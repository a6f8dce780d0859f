//! Per-topic statistics: counters kept on the hot path ([`Meter`]), the
//! Pulsar-shaped JSON documents the admin API serves (`stats`,
//! `partitioned-stats`, `internalStats`), and the broker's Prometheus
//! metrics ([`TopicMetrics`]).

mod internal;
mod meter;
mod prometheus;
mod topic_stats;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

pub use internal::{CursorInternalStats, InternalStats, LedgerInternalStats, internal_stats};
pub use meter::{Meter, MeterReading};
pub use prometheus::TopicMetrics;
pub(crate) use topic_stats::backlog_of;
pub use topic_stats::{
    ConsumerStats, PartitionedMetadata, PublisherStats, SubscriptionStats, TopicStats, topic_stats,
};

use crate::service::BrokerService;

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `2024-05-01T12:34:56.789Z` for ms since the Unix epoch (how Pulsar
/// spells `connectedSince` and ledger timestamps).
pub fn format_timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Samples every loaded topic's meters each `interval` until cancelled, so
/// that rates describe the last interval.
pub async fn sample_loop(
    service: std::sync::Weak<BrokerService>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let Some(service) = service.upgrade() else {
            return;
        };
        let now = Instant::now();
        for t in service.loaded_topics() {
            t.sample_stats(now);
        }
        drop::<Arc<BrokerService>>(service);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_utc_iso8601() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(951_782_400_123),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            format_timestamp(1_714_566_896_789),
            "2024-05-01T12:34:56.789Z"
        );
    }
}
