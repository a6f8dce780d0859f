//! `strata perf tenants`: the noisy-neighbour benchmark. Two tenants share
//! one broker:
//!
//! - the quiet tenant (`perf-quiet-{id}/ns`) publishes at a fixed, paced
//!   rate with a consumer, as `strata perf e2e` does (coordinated-omission
//!   corrected publish latency, HdrHistogram);
//! - the noisy tenant (`perf-noisy-{id}/ns`) has a publish rate limit and a
//!   backlog quota, and a subscription that never consumes; its producers
//!   (each on its own connection) send as fast as they can, past the rate
//!   limit and, once the backlog outgrows the quota, past the quota.
//!
//! Phase 1 runs the quiet tenant alone (the baseline), phase 2 runs it with
//! the noisy one; both have the same warm-up and duration. `--rounds N`
//! repeats the pair (alone, with, alone, with...; a new noisy topic each
//! round, so its backlog quota starts empty) and merges the histograms of
//! each kind, which evens out a shared machine's bursts of other load. The
//! report gives the quiet tenant's publish latency alone and with the noisy
//! tenant, the ratio of the p99s (target: below 1.2), the noisy tenant's
//! achieved rate against its limit, the broker's throttle and quota
//! counters, the journal's fsync times (the physical floor, when the bookie
//! shares the broker's process), and who used the CPU: the noisy producers
//! run on their own runtime (threads named `perf-noisy`), so their cost on
//! a small machine is told apart from the broker's, the quiet client's and
//! other processes'.
//!
//! The broker checks backlog quotas every `--backlog-quota-check-interval`
//! (60 s by default, as in Pulsar): give it a short one (e.g. `1s`) for the
//! quota to bite within a phase.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use hyper::Method;
use serde_json::json;
use strata_client::{ClientOptions, ConsumerOptions, ProducerOptions};
use tracing::warn;

mod summary;

use self::summary::{NoisySetup, PhaseReport, QuietSetup, TenantsReport};
use super::admin;
use super::cpu::CpuSnapshot;
use super::evidence::BrokerReading;
use super::flood::{self, FloodPlan};
use super::raw::RawArgs;
use super::report::Latency;
use super::workers::{Errors, Timeline};
use super::workload::{self, Mode, PositionArg, WorkloadArgs};

/// The quiet tenant's p99 with the noisy one over its p99 alone, at most.
const TARGET_P99_RATIO: f64 = 1.2;
/// Name prefix of the noisy producers' runtime threads.
const NOISY_THREADS: &str = "perf-noisy";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum QuotaPolicyArg {
    /// `producer_request_hold`: blocked producers are closed and refused until the backlog shrinks.
    Hold,
    /// `producer_exception`: blocked producers fail at once.
    Exception,
}

impl QuotaPolicyArg {
    fn pulsar_name(self) -> &'static str {
        match self {
            QuotaPolicyArg::Hold => "producer_request_hold",
            QuotaPolicyArg::Exception => "producer_exception",
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct TenantsArgs {
    /// Pulsar service URL.
    #[arg(long, default_value = "pulsar://127.0.0.1:6650")]
    pub url: String,
    /// Admin URL of the same broker (tenants, policies, `/metrics`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub admin_url: String,
    /// The quiet tenant's paced rate, msg/s.
    #[arg(long, default_value_t = 2000.0)]
    pub quiet_rate: f64,
    /// Noisy producers, each on its own connection.
    #[arg(long, default_value_t = 4)]
    pub noisy_producers: usize,
    /// The noisy namespace's publish rate limit per topic, msg/s.
    #[arg(long, default_value_t = 5000)]
    pub noisy_rate_limit: i64,
    /// The noisy namespace's publish rate limit per topic, bytes/s (-1: none).
    #[arg(long, default_value_t = -1)]
    pub noisy_byte_rate_limit: i64,
    /// The noisy namespace's backlog quota (destination_storage), e.g. 64M.
    #[arg(long, default_value = "64M", value_parser = parse_bytes)]
    pub noisy_backlog_quota: u64,
    /// What the backlog quota does once exceeded.
    #[arg(long, value_enum, default_value = "hold")]
    pub noisy_quota_policy: QuotaPolicyArg,
    /// Threads of the noisy producers' own runtime.
    #[arg(long, default_value_t = 1)]
    pub noisy_threads: usize,
    /// Unacknowledged messages per noisy producer at most.
    #[arg(long, default_value_t = 1000)]
    pub noisy_max_pending: u32,
    /// Payload bytes per message, both tenants (at least 8).
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Messages per batch at most, both tenants; 0 or 1: no batching.
    #[arg(long, default_value_t = 1000)]
    pub batch: u32,
    /// A batch is sent at the latest this long after its first message.
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
    pub batch_delay: Duration,
    /// Measured time of each phase.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Time before each phase's measurement.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Pairs of phases (alone, then with the noisy tenant) to run and merge.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Pause between the phases (lets the broker settle).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub pause: Duration,
    /// Tenants are `perf-quiet-{id}` and `perf-noisy-{id}`. Default: the time.
    #[arg(long)]
    pub id: Option<String>,
    #[command(flatten)]
    pub connect: super::connect::ConnectArgs,
    /// Keep the two tenants (and their data) after the run.
    #[arg(long)]
    pub keep: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `64M`, `512K`, `1G` (powers of 1024) or plain bytes.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 64M"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

pub async fn run(args: TenantsArgs) -> anyhow::Result<()> {
    let report = run_tenants(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        summary::print_report(&report);
    }
    if report.errors > 0 {
        bail!(
            "{} errors during the run, e.g. {:?}",
            report.errors,
            report.error_samples
        );
    }
    Ok(())
}

async fn run_tenants(args: &TenantsArgs) -> anyhow::Result<TenantsReport> {
    if args.size < 8 {
        bail!("--size must be at least 8 (the payload carries the send time)");
    }
    if args.quiet_rate <= 0.0 {
        bail!("--quiet-rate must be positive: the quiet tenant is paced");
    }
    if args.noisy_producers == 0 || args.noisy_threads == 0 || args.rounds == 0 {
        bail!("--noisy-producers, --noisy-threads and --rounds must be at least 1");
    }
    let id = args.id.clone().unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
            .to_string()
    });
    let (quiet_tenant, noisy_tenant) = (format!("perf-quiet-{id}"), format!("perf-noisy-{id}"));
    let quiet = QuietSetup {
        namespace: format!("{quiet_tenant}/ns"),
        topic: format!("persistent://{quiet_tenant}/ns/quiet-0"),
        rate: args.quiet_rate,
    };
    let noisy = NoisySetup {
        namespace: format!("{noisy_tenant}/ns"),
        topic_prefix: format!("persistent://{noisy_tenant}/ns/flood"),
        producers: args.noisy_producers,
        publish_rate_msg_per_sec: args.noisy_rate_limit,
        publish_rate_bytes_per_sec: args.noisy_byte_rate_limit,
        backlog_quota_bytes: args.noisy_backlog_quota,
        backlog_quota_policy: args.noisy_quota_policy.pulsar_name(),
        idle_subscription: "never-consumes".to_string(),
    };
    set_up(args, &quiet, &noisy).await?;
    let result = run_phases(args, &quiet, &noisy).await;
    if !args.keep {
        for t in [&quiet_tenant, &noisy_tenant] {
            let url = format!("{}/admin/v2/tenants/{t}?force=true", base(&args.admin_url));
            let token = args.connect.admin_token().ok().flatten();
            if let Err(e) = admin::call(Method::DELETE, &url, None, token.as_deref()).await {
                warn!(tenant = %t, error = %e, "could not delete the benchmark's tenant");
            }
        }
    }
    let (phases, errors) = result?;
    Ok(summary::summarize(args, quiet, noisy, phases, errors))
}

fn base(admin_url: &str) -> &str {
    admin_url.trim_end_matches('/')
}

/// Creates both tenants and namespaces, the noisy namespace's limits, and
/// the noisy topic's subscription that never consumes.
async fn set_up(args: &TenantsArgs, quiet: &QuietSetup, noisy: &NoisySetup) -> anyhow::Result<()> {
    let admin = base(&args.admin_url);
    let token = args.connect.admin_token()?;
    let token = token.as_deref();
    let tenant_body = json!({"adminRoles": [], "allowedClusters": ["standalone"]}).to_string();
    for ns in [&quiet.namespace, &noisy.namespace] {
        let tenant = ns.split('/').next().unwrap_or_default();
        admin::call(
            Method::PUT,
            &format!("{admin}/admin/v2/tenants/{tenant}"),
            Some(tenant_body.clone()),
            token,
        )
        .await
        .with_context(|| format!("create tenant {tenant}"))?;
        admin::call(
            Method::PUT,
            &format!("{admin}/admin/v2/namespaces/{ns}"),
            None,
            token,
        )
        .await
        .with_context(|| format!("create namespace {ns}"))?;
    }
    let ns = &noisy.namespace;
    admin::call(
        Method::POST,
        &format!("{admin}/admin/v2/namespaces/{ns}/publishRate"),
        Some(
            json!({
                "publishThrottlingRateInMsg": noisy.publish_rate_msg_per_sec,
                "publishThrottlingRateInByte": noisy.publish_rate_bytes_per_sec,
            })
            .to_string(),
        ),
        token,
    )
    .await
    .with_context(|| format!("set the publish rate of {ns}"))?;
    admin::call(
        Method::POST,
        &format!(
            "{admin}/admin/v2/namespaces/{ns}/backlogQuota?backlogQuotaType=destination_storage"
        ),
        Some(
            json!({
                "limitSize": noisy.backlog_quota_bytes,
                "limitTime": -1,
                "policy": noisy.backlog_quota_policy,
            })
            .to_string(),
        ),
        token,
    )
    .await
    .with_context(|| format!("set the backlog quota of {ns}"))?;
    // On each round's noisy topic, a durable subscription left without a
    // consumer: the backlog grows.
    let options = args
        .connect
        .client_options(&args.url, ClientOptions::default())?;
    let client = super::connect::connect(&args.url, options).await?;
    for round in 1..=args.rounds {
        let topic = format!("{}-{round}", noisy.topic_prefix);
        let sub = &noisy.idle_subscription;
        let consumer = client
            .subscribe(&topic, sub, ConsumerOptions::default())
            .await
            .with_context(|| format!("subscribe {sub} on {topic}"))?;
        consumer.close().await?;
    }
    // The quiet topic exists before phase 1, so the baseline does not pay
    // for its creation.
    let producer = client
        .create_producer(&quiet.topic, ProducerOptions::default())
        .await
        .with_context(|| format!("create a producer on {}", quiet.topic))?;
    producer.close().await?;
    client.close().await;
    Ok(())
}

async fn run_phases(
    args: &TenantsArgs,
    quiet: &QuietSetup,
    noisy: &NoisySetup,
) -> anyhow::Result<(Vec<PhaseReport>, Errors)> {
    // The noisy producers' own runtime: their CPU is counted apart.
    let noisy_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.noisy_threads)
        .thread_name(NOISY_THREADS)
        .enable_all()
        .build()
        .context("start the noisy producers' runtime")?;
    let mut errors = Errors::default();
    let mut phases = Vec::new();
    let result = async {
        for round in 1..=args.rounds {
            if round > 1 {
                tokio::time::sleep(args.pause).await;
            }
            let alone = run_phase(args, round, quiet, None, &mut errors).await?;
            let alone_p99 = alone.quiet_publish_latency_ms.p99;
            phases.push(alone);
            tokio::time::sleep(args.pause).await;
            let plan = FloodPlan {
                url: args.url.clone(),
                client: args
                    .connect
                    .client_options(&args.url, ClientOptions::default())?,
                topic: format!("{}-{round}", noisy.topic_prefix),
                producers: args.noisy_producers,
                size: args.size,
                opts: ProducerOptions {
                    name: None,
                    batch_max_messages: args.batch,
                    batch_max_bytes: 128 << 10,
                    batch_max_delay: args.batch_delay,
                    max_pending_messages: args.noisy_max_pending,
                },
            };
            let mut with =
                run_phase(args, round, quiet, Some((&noisy_rt, plan)), &mut errors).await?;
            with.p99_to_alone = Some(with.quiet_publish_latency_ms.p99 / alone_p99.max(1e-6));
            phases.push(with);
        }
        anyhow::Ok(())
    }
    .await;
    // A runtime cannot be dropped from async code.
    noisy_rt.shutdown_background();
    result?;
    Ok((phases, errors))
}

/// The quiet tenant's workload: one paced producer and one consumer on
/// one topic, as `strata perf e2e` runs it.
fn quiet_workload(args: &TenantsArgs, quiet: &QuietSetup) -> WorkloadArgs {
    let prefix = quiet.topic.trim_end_matches("-0").to_string();
    WorkloadArgs {
        url: args.url.clone(),
        admin_url: None,
        topics: 1,
        partitions: 0,
        topic_prefix: prefix,
        size: args.size,
        rate: args.quiet_rate,
        batch: args.batch,
        batch_bytes: 128 << 10,
        batch_delay: args.batch_delay,
        producers_per_topic: 1,
        consumers_per_topic: 1,
        max_pending: 10_000,
        memory_limit_mb: 64,
        pace_tick_us: super::pacer::DEFAULT_TICK_US,
        receiver_queue: 1000,
        connections: 1,
        duration: args.duration,
        warmup: args.warmup,
        drain_timeout: Duration::from_secs(60),
        subscription: None,
        subscription_type: None,
        initial_position: PositionArg::Latest,
        raw: RawArgs {
            raw_dir: ".".into(),
            raw_duration: Duration::ZERO,
            no_raw: true,
        },
        latency_series: true,
        connect: args.connect.clone(),
        json: false,
    }
}

async fn run_phase(
    args: &TenantsArgs,
    round: usize,
    quiet: &QuietSetup,
    noisy: Option<(&tokio::runtime::Runtime, FloodPlan)>,
    errors: &mut Errors,
) -> anyhow::Result<PhaseReport> {
    let name = if noisy.is_some() {
        "with_noisy"
    } else {
        "alone"
    };
    let before = BrokerReading::read(&args.admin_url).await?;
    // The noisy tenant starts with the quiet one's warm-up and stops at
    // the end of its window.
    let flood = noisy.map(|(rt, plan)| {
        let producers = plan.producers;
        let t = Timeline::new(args.warmup, args.duration, Duration::ZERO);
        (rt.spawn(flood::run(plan, t)), t, producers)
    });
    let sample_cpu = async {
        tokio::time::sleep(args.warmup).await;
        let start = CpuSnapshot::take(Some(&args.admin_url), Some(NOISY_THREADS)).await;
        tokio::time::sleep(args.duration).await;
        start.until(&CpuSnapshot::take(Some(&args.admin_url), Some(NOISY_THREADS)).await)
    };
    let quiet_args = quiet_workload(args, quiet);
    let (report, cpu) = tokio::join!(
        workload::run_workload(Mode::EndToEnd, &quiet_args),
        sample_cpu
    );
    let report = report.with_context(|| format!("the quiet tenant's {name} phase {round}"))?;
    let sampled = report.error_samples.len() as u64;
    for e in report.error_samples {
        errors.add(format!("quiet ({name}, round {round}): {e}"));
    }
    errors.count += report.errors.saturating_sub(sampled);
    let noisy = match flood {
        Some((task, t, producers)) => {
            let stats = task.await.context("the noisy producers' task")?;
            let limit = args.noisy_rate_limit as f64;
            let r = stats.report(&t, producers, args.size, limit);
            errors.merge(stats.errors);
            Some(r)
        }
        None => None,
    };
    let after = BrokerReading::read(&args.admin_url).await?;
    let (flooding, blocked) = match &noisy {
        Some(n) => summary::split_by_block(
            &report.publish_histograms_by_second,
            n.quota_blocked_after_secs
                .map(|s| s - args.warmup.as_secs_f64()),
        ),
        None => (None, None),
    };
    let (Some(publish), Some(publish_latency), Some(e2e_latency), Some(histogram)) = (
        report.publish,
        report.publish_latency_ms,
        report.end_to_end_latency_ms,
        report.publish_histogram,
    ) else {
        bail!("the quiet tenant's {name} phase {round} measured nothing");
    };
    Ok(PhaseReport {
        round,
        name,
        quiet_produced: report.produced,
        quiet_consumed: report.consumed,
        quiet_publish: publish,
        quiet_publish_latency_ms: publish_latency,
        quiet_publish_latency_by_second_ms: report.publish_latency_by_second_ms.unwrap_or_default(),
        quiet_end_to_end_latency_ms: e2e_latency,
        p99_to_alone: None,
        quiet_while_flooding_latency_ms: flooding.as_ref().map(Latency::from),
        quiet_while_blocked_latency_ms: blocked.as_ref().map(Latency::from),
        noisy,
        broker: after.counters_since(&before),
        journal_fsync: after.fsync_since(&before),
        cpu,
        quiet_histogram: histogram,
        flooding_histogram: flooding,
        blocked_histogram: blocked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("512k"), Ok(512 << 10));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("12X").is_err());
        assert!(parse_bytes("M").is_err());
        assert!(parse_bytes("99999999999999G").is_err());
    }
}
