//! `strata perf produce | consume | e2e`: an OpenMessaging-Benchmark-style
//! workload against a Pulsar service URL through `strata-client`.
//!
//! Topics are `{prefix}-{i}`; with `--partitions` they are created
//! partitioned through the admin REST API when `--admin-url` is given (and
//! must exist partitioned otherwise). Consumers subscribe before producers
//! start. The run warms up for `--warmup` (sent and received, not measured),
//! measures for `--duration`, then waits for the outstanding receipts and,
//! in e2e, until every message of the run has been consumed (at most
//! `--drain-timeout`). The raw disk baseline runs first, on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;
use strata_client::{
    Client, ClientOptions, ConsumerOptions, InitialPosition, ProducerOptions, SubscriptionType,
};
use tokio_util::sync::CancellationToken;

use super::admin;
use super::connect::{self, ConnectArgs};
use super::cpu::{CpuSnapshot, CpuUse};
use super::raw::{RawArgs, RawDisk};
use super::report::{self, Latency, Machine};
use super::workers::{
    self, ConsumerPlan, ConsumerStats, Errors, ProducerPlan, ProducerStats, Timeline,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Produce,
    Consume,
    EndToEnd,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::EndToEnd => "e2e",
        }
    }
    fn produces(self) -> bool {
        self != Mode::Consume
    }
    fn consumes(self) -> bool {
        self != Mode::Produce
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SubTypeArg {
    Exclusive,
    Shared,
    Failover,
    KeyShared,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PositionArg {
    Latest,
    Earliest,
}

#[derive(Args, Clone, Debug)]
pub struct WorkloadArgs {
    /// Pulsar service URL.
    #[arg(long, default_value = "pulsar://127.0.0.1:6650")]
    pub url: String,
    /// Admin URL (http://host:port), to create partitioned topics.
    #[arg(long)]
    pub admin_url: Option<String>,
    /// Number of topics.
    #[arg(long, default_value_t = 1)]
    pub topics: usize,
    /// Partitions per topic (0: not partitioned).
    #[arg(long, default_value_t = 0)]
    pub partitions: u32,
    /// Topics are named `{prefix}-{i}`.
    #[arg(long, default_value = "persistent://public/default/perf")]
    pub topic_prefix: String,
    /// Payload bytes per message (at least 8: the send timestamp).
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Messages per second over all producers; 0 or absent: as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Messages per batch at most; 0 or 1: no batching.
    #[arg(long, default_value_t = 1000)]
    pub batch: u32,
    /// Payload bytes per batch at most.
    #[arg(long, default_value_t = 128 << 10)]
    pub batch_bytes: usize,
    /// A batch is sent at the latest this long after its first message.
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
    pub batch_delay: Duration,
    #[arg(long, default_value_t = 1)]
    pub producers_per_topic: usize,
    /// Consumers per topic (per partition for a partitioned topic).
    #[arg(long, default_value_t = 1)]
    pub consumers_per_topic: usize,
    /// Unacknowledged messages per producer (per partition) at most (0: no
    /// limit but --memory-limit-mb). As in the OpenMessaging Benchmark's
    /// Pulsar driver (`pendingQueueSize: 0`), none by default.
    #[arg(long, default_value_t = 0)]
    pub max_pending: u32,
    /// Unacknowledged payload MiB over all producers at most (the client's
    /// memory limit; 0: none). 64, the Java client's default.
    #[arg(long, default_value_t = 64)]
    pub memory_limit_mb: usize,
    /// With --rate: the pacer's shortest sleep in µs; sends due within one
    /// tick leave together (see `perf::pacer`).
    #[arg(long, default_value_t = super::pacer::DEFAULT_TICK_US)]
    pub pace_tick_us: u64,
    /// Messages a consumer lets the broker send ahead.
    #[arg(long, default_value_t = 1000)]
    pub receiver_queue: u32,
    /// TCP connections per broker.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Measured time.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Time before the measurement (messages flow, nothing is counted).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Longest wait after the run for receipts and (e2e) the last messages.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Subscription name. Default: `perf-sub` for consume; for e2e a new
    /// one per run, deleted at the end.
    #[arg(long)]
    pub subscription: Option<String>,
    /// Default: exclusive with one consumer per topic, shared with more.
    #[arg(long, value_enum)]
    pub subscription_type: Option<SubTypeArg>,
    /// Where a new subscription starts.
    #[arg(long, value_enum, default_value = "latest")]
    pub initial_position: PositionArg,
    /// Also report the publish latency of each second of the window.
    #[arg(long)]
    pub latency_series: bool,
    #[command(flatten)]
    pub raw: RawArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug)]
pub struct Throughput {
    pub messages: u64,
    pub msg_per_sec: f64,
    pub mb_per_sec: f64,
}

#[derive(Serialize, Debug)]
pub struct Ratios {
    /// Payload MB/s (published, or consumed for `consume`) over the raw
    /// write + fdatasync MB/s.
    pub throughput_to_raw: f64,
    pub publish_p99_to_raw_p99: Option<f64>,
    pub end_to_end_p99_to_raw_p99: Option<f64>,
}

#[derive(Serialize, Debug)]
pub struct WorkloadReport {
    pub command: &'static str,
    pub url: String,
    pub topics: usize,
    pub partitions: u32,
    pub topic_prefix: String,
    pub message_size: usize,
    /// Offered msg/s over all producers (0: as fast as possible).
    pub rate: f64,
    pub batch_max_messages: u32,
    pub batch_max_bytes: usize,
    pub batch_delay_ms: f64,
    pub producers_per_topic: usize,
    pub consumers_per_topic: usize,
    pub max_pending: u32,
    pub memory_limit_mb: usize,
    pub subscription: Option<String>,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    /// Messages acknowledged by the broker over the whole run (warm-up included).
    pub produced: u64,
    /// Messages of this run received (e2e), or all messages received (consume).
    pub consumed: u64,
    pub publish: Option<Throughput>,
    /// Scheduled send time to receipt, for messages sent in the window.
    pub publish_latency_ms: Option<Latency>,
    /// The same per second of the window (`--latency-series`; 2 significant digits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_latency_by_second_ms: Option<Vec<Latency>>,
    /// The histograms behind `publish_latency_ms` and
    /// `publish_latency_by_second_ms` (µs), for callers that merge runs.
    #[serde(skip)]
    pub publish_histogram: Option<hdrhistogram::Histogram<u64>>,
    #[serde(skip)]
    pub publish_histograms_by_second: Vec<hdrhistogram::Histogram<u64>>,
    pub consume: Option<Throughput>,
    /// Scheduled send time (the payload's first 8 bytes) to reception.
    pub end_to_end_latency_ms: Option<Latency>,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub raw: Option<RawDisk>,
    pub ratios: Option<Ratios>,
    /// CPU use over the measured window (the broker's with `--admin-url`),
    /// and the broker's CPU per MB published: steadier from run to run than
    /// throughput on a shared machine, so the figure to compare code by.
    pub cpu: Option<CpuUse>,
    pub broker_cpu_ms_per_mb: Option<f64>,
    pub machine: Machine,
}

/// Receipts one producer can await at once: its window, or as many
/// messages as fit in the client's memory limit (the collector's queue is
/// sized by it; bounded even with neither limit).
fn in_flight_bound(max_pending: u32, memory_limit_mb: usize, size: usize) -> usize {
    let by_count = match max_pending {
        0 => usize::MAX,
        n => n as usize,
    };
    let by_memory = match memory_limit_mb {
        0 => usize::MAX,
        mb => ((mb << 20) / size.max(1)).max(1),
    };
    by_count.min(by_memory).min(1 << 20)
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn throughput(messages: u64, bytes: u64, secs: f64) -> Throughput {
    Throughput {
        messages,
        msg_per_sec: messages as f64 / secs,
        mb_per_sec: bytes as f64 / secs / 1e6,
    }
}

pub async fn run(mode: Mode, args: WorkloadArgs) -> anyhow::Result<()> {
    let report = run_workload(mode, &args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
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

fn print_report(r: &WorkloadReport) {
    if let (Some(p), Some(l)) = (&r.publish, &r.publish_latency_ms) {
        println!(
            "publish: {:.0} msg/s  {:.1} MB/s  latency ms {}",
            p.msg_per_sec,
            p.mb_per_sec,
            l.line()
        );
    }
    if let Some(c) = &r.consume {
        println!(
            "consume: {:.0} msg/s  {:.1} MB/s",
            c.msg_per_sec, c.mb_per_sec
        );
    }
    if let Some(l) = &r.end_to_end_latency_ms {
        println!("end to end latency ms {}", l.line());
    }
    println!(
        "produced {}  consumed {}  errors {}",
        r.produced, r.consumed, r.errors
    );
    if let (Some(raw), Some(ratios)) = (&r.raw, &r.ratios) {
        println!(
            "raw 1 MiB write+fdatasync (O_DIRECT, appending): {:.1} MB/s  p99 {:.2} ms   throughput ratio {:.2}  publish p99 ratio {}",
            raw.fdatasync_mb_per_sec,
            raw.fdatasync_latency_ms.p99,
            ratios.throughput_to_raw,
            ratios
                .publish_p99_to_raw_p99
                .map_or("-".to_string(), |v| format!("{v:.2}"))
        );
        println!(
            "  (through the page cache instead: {:.1} MB/s  p99 {:.2} ms)",
            raw.buffered_fdatasync_mb_per_sec, raw.buffered_fdatasync_latency_ms.p99
        );
        println!(
            "  (over blocks written before: {:.1} MB/s  p99 {:.2} ms)",
            raw.overwrite_fdatasync_mb_per_sec, raw.overwrite_fdatasync_latency_ms.p99
        );
    }
    if let Some(cpu) = &r.cpu {
        println!("cpu over the window: {}", cpu.line());
    }
    if let Some(ms) = r.broker_cpu_ms_per_mb {
        println!("broker CPU per MB published: {ms:.2} ms");
    }
}

pub(super) async fn run_workload(
    mode: Mode,
    args: &WorkloadArgs,
) -> anyhow::Result<WorkloadReport> {
    if args.size < 8 {
        bail!("--size must be at least 8 (the payload carries the send time)");
    }
    if args.topics == 0 {
        bail!("--topics must be at least 1");
    }
    if mode.produces() && args.producers_per_topic == 0 {
        bail!("--producers-per-topic must be at least 1");
    }
    if mode.consumes() && args.consumers_per_topic == 0 {
        bail!("--consumers-per-topic must be at least 1");
    }
    let options = args.connect.client_options(
        &args.url,
        ClientOptions {
            connections_per_broker: args.connections.max(1),
            memory_limit_bytes: args.memory_limit_mb << 20,
            ..ClientOptions::default()
        },
    )?;
    let raw = args.raw.measure().await?;

    let client = connect::connect(&args.url, options).await?;
    let topics: Vec<String> = (0..args.topics)
        .map(|i| format!("{}-{i}", args.topic_prefix))
        .collect();
    let partitions = prepare_topics(&client, args, &topics).await?;

    // Consumers first, so they see everything the run sends.
    let (subscription, made_up) = match (&args.subscription, mode) {
        (Some(s), _) => (Some(s.clone()), false),
        (None, Mode::EndToEnd) => (Some(format!("perf-e2e-{}", unix_millis())), true),
        (None, Mode::Consume) => (Some("perf-sub".to_string()), false),
        (None, Mode::Produce) => (None, false),
    };
    let consumer_opts = ConsumerOptions {
        subscription_type: match args.subscription_type {
            Some(SubTypeArg::Exclusive) => SubscriptionType::Exclusive,
            Some(SubTypeArg::Shared) => SubscriptionType::Shared,
            Some(SubTypeArg::Failover) => SubscriptionType::Failover,
            Some(SubTypeArg::KeyShared) => SubscriptionType::KeyShared,
            None if args.consumers_per_topic > 1 => SubscriptionType::Shared,
            None => SubscriptionType::Exclusive,
        },
        initial_position: match args.initial_position {
            PositionArg::Latest => InitialPosition::Latest,
            PositionArg::Earliest => InitialPosition::Earliest,
        },
        receiver_queue_size: args.receiver_queue,
        name: None,
    };
    let consumer_topics: Vec<String> = topics
        .iter()
        .flat_map(|t| {
            if partitions == 0 {
                vec![t.clone()]
            } else {
                (0..partitions)
                    .map(|i| format!("{t}-partition-{i}"))
                    .collect()
            }
        })
        .collect();
    let mut consumers = Vec::new();
    if let (true, Some(sub)) = (mode.consumes(), &subscription) {
        for t in &consumer_topics {
            for _ in 0..args.consumers_per_topic {
                let c = client
                    .subscribe(t, sub, consumer_opts.clone())
                    .await
                    .with_context(|| format!("subscribe {sub} on {t}"))?;
                consumers.push(c);
            }
        }
    }
    let mut producers = Vec::new();
    if mode.produces() {
        let opts = ProducerOptions {
            name: None,
            batch_max_messages: args.batch,
            batch_max_bytes: args.batch_bytes,
            batch_max_delay: args.batch_delay,
            max_pending_messages: args.max_pending,
        };
        for t in &topics {
            for _ in 0..args.producers_per_topic {
                let p = client
                    .create_producer(t, opts.clone())
                    .await
                    .with_context(|| format!("create a producer on {t}"))?;
                producers.push(p);
            }
        }
    }

    let t = Timeline::new(args.warmup, args.duration, args.drain_timeout);
    // CPU over exactly the measured window.
    let cpu_task = {
        let admin_url = args.admin_url.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(t.measure_start.into()).await;
            let start = CpuSnapshot::take(admin_url.as_deref(), None).await;
            tokio::time::sleep_until(t.end.into()).await;
            start.until(&CpuSnapshot::take(admin_url.as_deref(), None).await)
        })
    };
    let produced = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let consumer_plan = ConsumerPlan {
        only_this_run: mode == Mode::EndToEnd,
    };
    let consumer_tasks: Vec<_> = consumers
        .into_iter()
        .map(|c| {
            tokio::spawn(workers::consume(
                c,
                consumer_plan,
                t,
                consumed.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let n = producers.len().max(1);
    let producer_tasks: Vec<_> = producers
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let plan = ProducerPlan {
                size: args.size,
                rate: (args.rate > 0.0).then(|| args.rate / n as f64),
                phase: i as f64 / n as f64,
                series: args.latency_series,
                max_pending: in_flight_bound(args.max_pending, args.memory_limit_mb, args.size),
                pace_tick: Duration::from_micros(args.pace_tick_us.max(1)),
            };
            tokio::spawn(workers::produce(p, plan, t, produced.clone()))
        })
        .collect();

    let mut errors = Errors::default();
    let mut publish_hist = report::histogram();
    let mut by_second = Vec::new();
    let mut published_window = 0u64;
    for task in producer_tasks {
        match task.await {
            Ok(s) => {
                for (i, h) in s.by_second.iter().enumerate() {
                    if by_second.len() <= i {
                        by_second.resize_with(i + 1, report::coarse_histogram);
                    }
                    let _ = by_second[i].add(h);
                }
                merge_producer(&mut publish_hist, &mut published_window, &mut errors, s)
            }
            Err(e) => errors.add(format!("producer task failed: {e}")),
        }
    }
    match mode {
        Mode::Consume => tokio::time::sleep_until(t.end.into()).await,
        Mode::EndToEnd => {
            // Every acknowledged message of the run should arrive.
            let target = produced.load(Ordering::Relaxed);
            while consumed.load(Ordering::Relaxed) < target && Instant::now() < t.drain_deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Mode::Produce => {}
    }
    stop.cancel();
    let mut e2e_hist = report::histogram();
    let (mut consumed_window, mut consumed_bytes) = (0u64, 0u64);
    for task in consumer_tasks {
        match task.await {
            Ok(ConsumerStats {
                window,
                window_bytes,
                latency,
                errors: e,
                ..
            }) => {
                consumed_window += window;
                consumed_bytes += window_bytes;
                let _ = e2e_hist.add(&latency);
                errors.merge(e);
            }
            Err(e) => errors.add(format!("consumer task failed: {e}")),
        }
    }
    if let (true, Some(sub)) = (made_up, &subscription) {
        for topic in &consumer_topics {
            if let Err(e) = delete_subscription(&client, topic, sub, &consumer_opts).await {
                errors.add(format!("delete subscription {sub} on {topic}: {e}"));
            }
        }
    }
    client.close().await;

    let secs = args.duration.as_secs_f64().max(1e-3);
    let publish = mode
        .produces()
        .then(|| throughput(published_window, published_window * args.size as u64, secs));
    let publish_latency_ms = mode.produces().then(|| Latency::from(&publish_hist));
    let publish_latency_by_second_ms = (mode.produces() && args.latency_series)
        .then(|| by_second.iter().map(Latency::from).collect());
    let consume = mode
        .consumes()
        .then(|| throughput(consumed_window, consumed_bytes, secs));
    let end_to_end_latency_ms = mode.consumes().then(|| Latency::from(&e2e_hist));
    let ratios = raw.as_ref().map(|r| {
        let mbps = publish
            .as_ref()
            .or(consume.as_ref())
            .map_or(0.0, |t| t.mb_per_sec);
        let raw_p99 = r.fdatasync_latency_ms.p99.max(1e-6);
        Ratios {
            throughput_to_raw: mbps / r.fdatasync_mb_per_sec.max(1e-9),
            publish_p99_to_raw_p99: publish_latency_ms.map(|l| l.p99 / raw_p99),
            end_to_end_p99_to_raw_p99: end_to_end_latency_ms.map(|l| l.p99 / raw_p99),
        }
    });
    let cpu = cpu_task.await.ok();
    let broker_cpu_ms_per_mb = cpu.and_then(|c| c.broker_cores).and_then(|cores| {
        let mbps = publish.as_ref().or(consume.as_ref())?.mb_per_sec;
        (mbps > 0.0).then(|| cores * 1000.0 / mbps)
    });
    Ok(WorkloadReport {
        command: mode.name(),
        url: args.url.clone(),
        topics: args.topics,
        partitions,
        topic_prefix: args.topic_prefix.clone(),
        message_size: args.size,
        rate: args.rate.max(0.0),
        batch_max_messages: args.batch,
        batch_max_bytes: args.batch_bytes,
        batch_delay_ms: args.batch_delay.as_secs_f64() * 1000.0,
        producers_per_topic: if mode.produces() {
            args.producers_per_topic
        } else {
            0
        },
        consumers_per_topic: if mode.consumes() {
            args.consumers_per_topic
        } else {
            0
        },
        max_pending: args.max_pending,
        memory_limit_mb: args.memory_limit_mb,
        subscription,
        warmup_secs: args.warmup.as_secs_f64(),
        duration_secs: secs,
        produced: produced.load(Ordering::Relaxed),
        consumed: consumed.load(Ordering::Relaxed),
        publish,
        publish_latency_ms,
        publish_latency_by_second_ms,
        publish_histogram: mode.produces().then_some(publish_hist),
        publish_histograms_by_second: by_second,
        consume,
        end_to_end_latency_ms,
        errors: errors.count,
        error_samples: errors.samples,
        raw,
        ratios,
        cpu,
        broker_cpu_ms_per_mb,
        machine: Machine::describe(),
    })
}

fn merge_producer(
    hist: &mut hdrhistogram::Histogram<u64>,
    window: &mut u64,
    errors: &mut Errors,
    s: ProducerStats,
) {
    let _ = hist.add(&s.latency);
    *window += s.window;
    errors.merge(s.errors);
}

/// Creates partitioned topics when asked (and possible) and returns the
/// partition count every topic has.
async fn prepare_topics(
    client: &Client,
    args: &WorkloadArgs,
    topics: &[String],
) -> anyhow::Result<u32> {
    if args.partitions > 0
        && let Some(admin_url) = &args.admin_url
    {
        let token = args.connect.admin_token()?;
        for t in topics {
            admin::create_partitioned_topic(admin_url, t, args.partitions, token.as_deref())
                .await
                .with_context(|| format!("create {t} with {} partitions", args.partitions))?;
        }
    }
    let mut found = None;
    for t in topics {
        let p = client
            .partitions(t)
            .await
            .with_context(|| format!("partitioned metadata of {t}"))?;
        if args.partitions > 0 && p != args.partitions {
            bail!(
                "{t} has {p} partitions, not {}: give --admin-url to create it, or create it beforehand",
                args.partitions
            );
        }
        match found {
            None => found = Some(p),
            Some(q) if q != p => bail!("topics differ in partitions ({q} and {p} on {t})"),
            Some(_) => {}
        }
    }
    Ok(found.unwrap_or(0))
}

/// Removes a subscription made up for this run.
async fn delete_subscription(
    client: &Client,
    topic: &str,
    sub: &str,
    opts: &ConsumerOptions,
) -> strata_client::Result<()> {
    let c = client.subscribe(topic, sub, opts.clone()).await?;
    c.unsubscribe().await
}
