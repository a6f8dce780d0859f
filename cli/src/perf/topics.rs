//! `strata perf topics`: broker memory per idle topic. It loads N topics by
//! creating a producer on each (a bounded number at a time) and closing it
//! again, so the topics stay loaded with no traffic, and reads the broker's
//! `process_resident_memory_bytes` from the admin `/metrics` before and
//! after.

use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use serde::Serialize;
use strata_client::{ClientOptions, ProducerOptions};

use super::admin;
use super::connect::{self, ConnectArgs};
use super::report::Machine;
use super::workers::Errors;

const RSS_METRIC: &str = "process_resident_memory_bytes";

#[derive(Args, Clone, Debug)]
pub struct TopicsArgs {
    /// Pulsar service URL.
    #[arg(long, default_value = "pulsar://127.0.0.1:6650")]
    pub url: String,
    /// Admin URL of the same broker (its `/metrics` gives the memory).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub admin_url: String,
    /// Topics to load.
    #[arg(long, default_value_t = 10_000)]
    pub topics: usize,
    /// Producers being created at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Topics are named `{prefix}-{i}`. Default: a new prefix per run.
    #[arg(long)]
    pub topic_prefix: Option<String>,
    /// Wait after loading before the second reading (lets background work settle).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug)]
pub struct TopicsReport {
    pub topics: usize,
    pub loaded: u64,
    pub topic_prefix: String,
    pub load_secs: f64,
    pub topics_per_sec: f64,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    /// (after − before) / loaded.
    pub bytes_per_topic: f64,
    pub kib_per_topic: f64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub machine: Machine,
}

pub async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let report = load_topics(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} idle topics loaded in {:.1} s: broker RSS {:.1} MiB -> {:.1} MiB, {:.1} KiB per topic",
            report.loaded,
            report.load_secs,
            report.rss_before_bytes as f64 / 1048576.0,
            report.rss_after_bytes as f64 / 1048576.0,
            report.kib_per_topic
        );
    }
    if report.errors > 0 {
        anyhow::bail!(
            "{} topics failed to load, e.g. {:?}",
            report.errors,
            report.error_samples
        );
    }
    Ok(())
}

async fn load_topics(args: &TopicsArgs) -> anyhow::Result<TopicsReport> {
    let prefix = args.topic_prefix.clone().unwrap_or_else(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("persistent://public/default/idle-{ms}")
    });
    let options = args
        .connect
        .client_options(&args.url, ClientOptions::default())?;
    let client = connect::connect(&args.url, options).await?;
    let before = admin::metric(&args.admin_url, RSS_METRIC).await? as u64;
    let started = Instant::now();
    let opts = ProducerOptions {
        batch_max_messages: 0,
        max_pending_messages: 1,
        ..ProducerOptions::default()
    };
    let results: Vec<Result<(), String>> = futures::stream::iter(0..args.topics)
        .map(|i| {
            let client = client.clone();
            let opts = opts.clone();
            let topic = format!("{prefix}-{i}");
            async move {
                let p = client
                    .create_producer(&topic, opts)
                    .await
                    .map_err(|e| format!("producer on {topic}: {e}"))?;
                p.close()
                    .await
                    .map_err(|e| format!("close producer on {topic}: {e}"))
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let load_secs = started.elapsed().as_secs_f64();
    let mut errors = Errors::default();
    let mut loaded = 0u64;
    for r in results {
        match r {
            Ok(()) => loaded += 1,
            Err(e) => errors.add(e),
        }
    }
    client.close().await;
    tokio::time::sleep(args.settle).await;
    let after = admin::metric(&args.admin_url, RSS_METRIC).await? as u64;
    let bytes_per_topic = (after as f64 - before as f64) / loaded.max(1) as f64;
    Ok(TopicsReport {
        topics: args.topics,
        loaded,
        topic_prefix: prefix,
        load_secs,
        topics_per_sec: loaded as f64 / load_secs.max(1e-9),
        rss_before_bytes: before,
        rss_after_bytes: after,
        bytes_per_topic,
        kib_per_topic: bytes_per_topic / 1024.0,
        errors: errors.count,
        error_samples: errors.samples,
        machine: Machine::describe(),
    })
}
