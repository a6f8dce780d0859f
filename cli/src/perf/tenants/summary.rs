//! The report of `strata perf tenants`: one entry per phase, and the
//! summary merged over rounds (the quiet tenant's histograms alone, with
//! the noisy tenant, and with it split into the seconds it flooded and the
//! seconds its backlog quota blocked it).

use hdrhistogram::Histogram;
use serde::Serialize;

use super::super::cpu::CpuUse;
use super::super::evidence::{BrokerCounters, JournalFsync};
use super::super::flood::FloodReport;
use super::super::report::{self, Latency, Machine};
use super::super::workers::Errors;
use super::super::workload::Throughput;
use super::{TARGET_P99_RATIO, TenantsArgs};

/// One phase: the quiet tenant's figures, the noisy one's (phase 2), and
/// the broker's counters and the CPU use over it.
#[derive(Serialize, Debug)]
pub struct PhaseReport {
    /// From 1.
    pub round: usize,
    pub name: &'static str,
    /// Messages the quiet tenant had acknowledged (warm-up included) and consumed.
    pub quiet_produced: u64,
    pub quiet_consumed: u64,
    pub quiet_publish: Throughput,
    /// Scheduled send time to receipt, for the window's messages.
    pub quiet_publish_latency_ms: Latency,
    /// The same per second of the window (2 significant digits), to line
    /// up with the noisy tenant's `acked_per_second`.
    pub quiet_publish_latency_by_second_ms: Vec<Latency>,
    pub quiet_end_to_end_latency_ms: Latency,
    /// With the noisy tenant: this p99 over the same round's p99 alone.
    pub p99_to_alone: Option<f64>,
    /// With the noisy tenant: the quiet tenant's publish latency in the
    /// window's whole seconds before the noisy tenant's backlog quota
    /// blocked it (it flooded at its rate limit), and after (its producers
    /// were refused and retried); the second of the block is in neither.
    /// 2 significant digits.
    pub quiet_while_flooding_latency_ms: Option<Latency>,
    pub quiet_while_blocked_latency_ms: Option<Latency>,
    pub noisy: Option<FloodReport>,
    /// Counter increases over the whole phase (warm-up included).
    pub broker: BrokerCounters,
    /// Journal fsyncs over the whole phase (None: the broker's `/metrics`
    /// has no journal, e.g. its bookies run elsewhere).
    pub journal_fsync: Option<JournalFsync>,
    /// CPU use over the measured window.
    pub cpu: CpuUse,
    /// The quiet tenant's publish histogram, merged over rounds.
    #[serde(skip)]
    pub(super) quiet_histogram: Histogram<u64>,
    #[serde(skip)]
    pub(super) flooding_histogram: Option<Histogram<u64>>,
    #[serde(skip)]
    pub(super) blocked_histogram: Option<Histogram<u64>>,
}

#[derive(Serialize, Debug)]
pub struct QuietSetup {
    pub namespace: String,
    pub topic: String,
    pub rate: f64,
}

#[derive(Serialize, Debug)]
pub struct NoisySetup {
    pub namespace: String,
    /// One topic per round: `{topic_prefix}-{round}`.
    pub topic_prefix: String,
    pub producers: usize,
    pub publish_rate_msg_per_sec: i64,
    pub publish_rate_bytes_per_sec: i64,
    pub backlog_quota_bytes: u64,
    pub backlog_quota_policy: &'static str,
    /// The subscription that never consumes, so the backlog grows.
    pub idle_subscription: String,
}

#[derive(Serialize, Debug)]
pub struct TenantsReport {
    pub command: &'static str,
    pub url: String,
    pub admin_url: String,
    pub message_size: usize,
    pub batch_max_messages: u32,
    pub batch_delay_ms: f64,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    pub rounds: usize,
    pub quiet: QuietSetup,
    pub noisy: NoisySetup,
    /// The quiet tenant's publish latency over every round's window, alone
    /// and with the noisy tenant.
    pub quiet_alone_latency_ms: Latency,
    pub quiet_with_noisy_latency_ms: Latency,
    /// Quiet publish p99 with the noisy tenant over without.
    pub p99_ratio: f64,
    pub p999_ratio: f64,
    pub target_p99_ratio: f64,
    pub target_met: bool,
    /// The phases with the noisy tenant split as in each phase's
    /// `quiet_while_flooding_latency_ms` / `..._blocked_...`, merged over
    /// rounds, and their p99 over the p99 alone.
    pub quiet_while_flooding_latency_ms: Option<Latency>,
    pub quiet_while_blocked_latency_ms: Option<Latency>,
    pub p99_ratio_while_flooding: Option<f64>,
    pub p99_ratio_while_blocked: Option<f64>,
    /// The noisy tenant's rates, averaged over rounds (see each phase's `noisy`).
    pub noisy_achieved_msg_per_sec: f64,
    pub noisy_unblocked_msg_per_sec: Option<f64>,
    pub noisy_unblocked_to_limit: Option<f64>,
    /// Broker counters summed over the phases of each kind.
    pub broker_alone: BrokerCounters,
    pub broker_with_noisy: BrokerCounters,
    /// Every phase in the order run.
    pub phases: Vec<PhaseReport>,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub machine: Machine,
}

pub(super) fn summarize(
    args: &TenantsArgs,
    quiet: QuietSetup,
    noisy: NoisySetup,
    phases: Vec<PhaseReport>,
    errors: Errors,
) -> TenantsReport {
    let mut alone = report::histogram();
    let mut with = report::histogram();
    let (mut broker_alone, mut broker_with_noisy) = Default::default();
    let mut noisy_reports = Vec::new();
    let (mut flooding, mut blocked) = (None, None);
    for p in &phases {
        merge(&mut flooding, p.flooding_histogram.as_ref());
        merge(&mut blocked, p.blocked_histogram.as_ref());
        let (h, b): (_, &mut BrokerCounters) = match &p.noisy {
            None => (&mut alone, &mut broker_alone),
            Some(n) => {
                noisy_reports.push(n);
                (&mut with, &mut broker_with_noisy)
            }
        };
        let _ = h.add(&p.quiet_histogram);
        b.add(&p.broker);
    }
    let (alone, with) = (Latency::from(&alone), Latency::from(&with));
    let ratio = |with: f64, without: f64| with / without.max(1e-6);
    let flooding = flooding.as_ref().map(Latency::from);
    let blocked = blocked.as_ref().map(Latency::from);
    let p99_ratio = ratio(with.p99, alone.p99);
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let noisy_unblocked_msg_per_sec = mean(
        noisy_reports
            .iter()
            .filter_map(|n| n.unblocked_msg_per_sec)
            .collect(),
    );
    let limit = args.noisy_rate_limit as f64;
    TenantsReport {
        command: "tenants",
        url: args.url.clone(),
        admin_url: args.admin_url.clone(),
        message_size: args.size,
        batch_max_messages: args.batch,
        batch_delay_ms: args.batch_delay.as_secs_f64() * 1000.0,
        warmup_secs: args.warmup.as_secs_f64(),
        duration_secs: args.duration.as_secs_f64(),
        rounds: args.rounds,
        quiet,
        noisy,
        quiet_alone_latency_ms: alone,
        quiet_with_noisy_latency_ms: with,
        p99_ratio,
        p999_ratio: ratio(with.p999, alone.p999),
        target_p99_ratio: TARGET_P99_RATIO,
        target_met: p99_ratio < TARGET_P99_RATIO,
        quiet_while_flooding_latency_ms: flooding,
        quiet_while_blocked_latency_ms: blocked,
        p99_ratio_while_flooding: flooding.map(|l| ratio(l.p99, alone.p99)),
        p99_ratio_while_blocked: blocked.map(|l| ratio(l.p99, alone.p99)),
        noisy_achieved_msg_per_sec: mean(
            noisy_reports
                .iter()
                .map(|n| n.achieved_msg_per_sec)
                .collect(),
        )
        .unwrap_or(0.0),
        noisy_unblocked_msg_per_sec,
        noisy_unblocked_to_limit: noisy_unblocked_msg_per_sec
            .filter(|_| limit > 0.0)
            .map(|r| r / limit),
        broker_alone,
        broker_with_noisy,
        phases,
        errors: errors.count,
        error_samples: errors.samples,
        machine: Machine::describe(),
    }
}

fn merge(into: &mut Option<Histogram<u64>>, h: Option<&Histogram<u64>>) {
    if let Some(h) = h {
        let _ = into.get_or_insert_with(report::coarse_histogram).add(h);
    }
}

/// Merges a phase's per-second histograms (of its window) into the
/// seconds before `blocked_at` (seconds into the window; None: never
/// blocked) and those after; the second it falls in goes to neither.
pub(super) fn split_by_block(
    by_second: &[Histogram<u64>],
    blocked_at: Option<f64>,
) -> (Option<Histogram<u64>>, Option<Histogram<u64>>) {
    let (mut before, mut after) = (None, None);
    for (i, h) in by_second.iter().enumerate() {
        let (start, end) = (i as f64, i as f64 + 1.0);
        match blocked_at {
            None => merge(&mut before, Some(h)),
            Some(b) if end <= b => merge(&mut before, Some(h)),
            Some(b) if start >= b => merge(&mut after, Some(h)),
            Some(_) => {}
        }
    }
    (before, after)
}

pub(super) fn print_report(r: &TenantsReport) {
    println!(
        "quiet {} at {:.0} msg/s; noisy {} with {} producers, publish rate limit {} msg/s, \
         backlog quota {:.1} MiB ({}); {} B messages, {:.0} s per phase after {:.0} s warm-up, {} round(s)",
        r.quiet.namespace,
        r.quiet.rate,
        r.noisy.namespace,
        r.noisy.producers,
        r.noisy.publish_rate_msg_per_sec,
        r.noisy.backlog_quota_bytes as f64 / 1048576.0,
        r.noisy.backlog_quota_policy,
        r.message_size,
        r.duration_secs,
        r.warmup_secs,
        r.rounds
    );
    println!(
        "{:<14} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>6} {:>9} {:>6} {:>9} {:>8}",
        "phase",
        "msg/s",
        "p50 ms",
        "p99",
        "p99.9",
        "max",
        "e2e p99",
        "ratio",
        "throttled",
        "blocks",
        "fsync p99",
        "fsync>50"
    );
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    for p in &r.phases {
        let l = &p.quiet_publish_latency_ms;
        println!(
            "{:<14} {:>7.0} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>6} {:>9.0} {:>6.0} {:>9} {:>8}",
            format!("{} {}", p.round, p.name),
            p.quiet_publish.msg_per_sec,
            l.p50,
            l.p99,
            l.p999,
            l.max,
            p.quiet_end_to_end_latency_ms.p99,
            opt(p.p99_to_alone),
            p.broker.publish_throttled,
            p.broker.backlog_quota_blocks,
            p.journal_fsync
                .map_or("-".to_string(), |f| format!("<={}", f.p99_at_most_ms)),
            p.journal_fsync
                .map_or("-".to_string(), |f| f.over_50ms.to_string()),
        );
    }
    for p in &r.phases {
        println!(
            "cpu {:<14} {}",
            format!("{} {}", p.round, p.name),
            p.cpu.line()
        );
    }
    for p in &r.phases {
        let series: Vec<String> = p
            .quiet_publish_latency_by_second_ms
            .iter()
            .map(|l| format!("{:.0}", l.p99))
            .collect();
        println!(
            "quiet p99 ms per second, {:<14} {}",
            format!("{} {}", p.round, p.name),
            series.join(" ")
        );
        if let Some(n) = &p.noisy {
            let series: Vec<String> = n.acked_per_second.iter().map(|c| c.to_string()).collect();
            println!("noisy msg/s per second,  {:<14} {}", "", series.join(" "));
            println!(
                "noisy: {:.0} msg/s over the window, {} msg/s before the quota blocked it (limit {:.0}); \
                 quota block after {} s; {} creations refused, {} producers closed, {} sends failed",
                n.achieved_msg_per_sec,
                n.unblocked_msg_per_sec
                    .map_or("-".to_string(), |v| format!("{v:.0}")),
                n.rate_limit_msg_per_sec,
                n.quota_blocked_after_secs
                    .map_or("-".to_string(), |s| format!("{s:.1}")),
                n.quota_refusals,
                n.producers_closed,
                n.failed_sends
            );
        }
    }
    println!(
        "quiet publish over all rounds: alone {}; with the noisy tenant {}",
        r.quiet_alone_latency_ms.line(),
        r.quiet_with_noisy_latency_ms.line()
    );
    let split = |l: Option<Latency>, r: Option<f64>| {
        l.map_or("-".to_string(), |l| {
            format!("{} (p99 ratio {:.2})", l.line(), r.unwrap_or(0.0))
        })
    };
    println!(
        "  while the noisy tenant flooded: {}; after its quota blocked it: {}",
        split(
            r.quiet_while_flooding_latency_ms,
            r.p99_ratio_while_flooding
        ),
        split(r.quiet_while_blocked_latency_ms, r.p99_ratio_while_blocked)
    );
    println!(
        "p99 with / without the noisy tenant: {:.2} (target < {:.1}: {}); p99.9 ratio {:.2}; \
         noisy tenant {} msg/s before its quota, {:.2} of its limit",
        r.p99_ratio,
        r.target_p99_ratio,
        if r.target_met { "met" } else { "missed" },
        r.p999_ratio,
        r.noisy_unblocked_msg_per_sec
            .map_or("-".to_string(), |v| format!("{v:.0}")),
        r.noisy_unblocked_to_limit.unwrap_or(0.0)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(ms: u64) -> Histogram<u64> {
        let mut h = report::coarse_histogram();
        report::record(&mut h, ms * 1000);
        h
    }

    #[test]
    fn seconds_split_at_the_block() {
        let s: Vec<_> = [1, 2, 3, 4].into_iter().map(second).collect();
        let max = |h: Option<Histogram<u64>>| h.map(|h| h.max() / 1000);
        let (a, b) = split_by_block(&s, Some(2.5));
        assert_eq!((a.as_ref().map(|h| h.len()), max(a)), (Some(2), Some(2)));
        assert_eq!((b.as_ref().map(|h| h.len()), max(b)), (Some(1), Some(4)));
        let (a, b) = split_by_block(&s, None);
        assert_eq!((a.map(|h| h.len()), b.is_none()), (Some(4), true));
        // Blocked in the warm-up: every second is after.
        let (a, b) = split_by_block(&s, Some(-1.0));
        assert_eq!((a.is_none(), b.map(|h| h.len())), (true, Some(4)));
        let (a, b) = split_by_block(&s, Some(2.0));
        assert_eq!((a.map(|h| h.len()), b.map(|h| h.len())), (Some(2), Some(2)));
    }
}
