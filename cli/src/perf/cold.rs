//! `strata perf cold-read`: how fast data comes back from the cold tier.
//!
//! Writes N MB to a fresh topic in namespace `public/strata-perf-cold`,
//! offloads all of it (deletion lag 0, so the bookies' copies go and reads
//! must use the cold tier), then reads it from earliest twice: with a cold
//! block cache and with a warm one. In the same run it measures what the
//! object store gives a plain `object_store` client on the same objects:
//! GET throughput with the reader's range size and parallelism, and the
//! latency of one small ranged GET. Reports the ratios the targets are
//! about: cold read / raw GET, warm / cold, first cold message / one ranged
//! GET, and offload MB/s.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use hyper::Method;
use object_store::ObjectStoreExt;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde::Serialize;
use serde_json::Value;
use strata_client::{Client, ClientOptions, ConsumerOptions, InitialPosition, ProducerOptions};
use strata_offloader::store::ColdStore;

use super::admin::http;
use super::connect::{self, ConnectArgs};
use super::cpu::{self, MachineClock, MachineCpu, STEAL_WARNING};
use super::relay;
use super::report::Machine;

const NAMESPACE: &str = "public/strata-perf-cold";

#[derive(Args, Debug)]
pub struct ColdReadArgs {
    /// Broker service URL.
    #[arg(long, default_value = "pulsar://127.0.0.1:6650")]
    pub url: String,
    /// Broker admin URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub admin_url: String,
    /// The broker's cold tier (as `strata standalone` prints it at start:
    /// `cold tier: URL`), for the raw baseline; credentials as the server's.
    #[arg(long, env = "STRATA_OBJECT_STORE")]
    pub object_store: String,
    /// Megabytes to write, offload and read back.
    #[arg(long, default_value_t = 256)]
    pub size_mb: u64,
    /// Message size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Topic name in public/strata-perf-cold (default: a fresh one, deleted
    /// with its cold objects when the benchmark ends).
    #[arg(long)]
    pub topic: Option<String>,
    /// Keep the fresh topic and its objects in the cold tier after the run.
    #[arg(long)]
    pub keep_topic: bool,
    /// Parallel GETs of the raw baseline (the tiered reader's default limit).
    #[arg(long, default_value_t = 16)]
    pub raw_concurrency: usize,
    /// Bytes per ranged GET of the raw baseline. The default 4 MiB ranges
    /// start at multiples of 4 MiB, so each covers whole chunks of stores
    /// that keep objects in 1 MiB chunks (Garage, MinIO): the cheapest GETs
    /// a client can ask of them.
    #[arg(long, default_value_t = 4 << 20)]
    pub raw_range_bytes: u64,
    /// Also measure the thinnest possible relay of the same objects (GET,
    /// send over loopback TCP, read and drop): the best cold read this
    /// machine allows, reported next to the real one.
    #[arg(long)]
    pub floor: bool,
    /// Further fresh topics of `--probe-mb` each, written and offloaded
    /// with the main one and read from earliest once each, after the main
    /// reads: the time to a cold ledger's first message is their median
    /// (one sample next to a median of 21 GETs would say more about the
    /// machine's worst pause than about the read). 0: the main cold read's
    /// first message only.
    #[arg(long, default_value_t = 5)]
    pub first_message_probes: usize,
    /// Megabytes written to each probe topic.
    #[arg(long, default_value_t = 8)]
    pub probe_mb: u64,
    /// Give up on any phase after this long.
    #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug)]
pub struct ColdReadReport {
    pub machine: Machine,
    pub topic: String,
    pub messages: u64,
    pub message_size: usize,
    pub data_bytes: u64,
    /// Bytes the offloader moved (from its status) and how fast.
    pub offloaded_bytes: u64,
    pub offload_secs: f64,
    pub offload_mb_per_sec: f64,
    pub cold_read_mb_per_sec: f64,
    /// The main cold read's first message, from subscribing.
    pub cold_first_message_ms: f64,
    /// Each probe topic's first message from cold, from subscribing.
    pub first_message_probes_ms: Vec<f64>,
    /// The median of the probes (the main read's first message without
    /// probes): what the first-message target is judged on.
    pub first_message_ms: f64,
    pub warm_read_mb_per_sec: f64,
    pub warm_first_message_ms: f64,
    /// Median of `raw_get_runs_mb_per_sec`.
    pub raw_get_mb_per_sec: f64,
    /// Each pass of the raw baseline over all the objects.
    pub raw_get_runs_mb_per_sec: Vec<f64>,
    pub raw_ranged_get_ms: f64,
    pub raw_objects: usize,
    pub raw_bytes: u64,
    /// cold read / raw GET (target ≥ 0.8).
    pub cold_vs_raw: f64,
    /// warm read / cold read (target ≥ 3).
    pub warm_vs_cold: f64,
    /// `first_message_ms` / one raw ranged GET (target < 2).
    pub first_message_vs_ranged_get: f64,
    /// With `--floor`: the thinnest relay of the same objects (GETs as the
    /// raw baseline, bytes sent on over a loopback socket to a reader that
    /// drops them), median of three passes; see `perf::relay`.
    pub floor_mb_per_sec: Option<f64>,
    /// cold read / floor: the share of this machine's best case reached.
    pub cold_vs_floor: Option<f64>,
    /// floor / raw GET: the highest cold/raw any broker could show here.
    pub floor_vs_raw: Option<f64>,
    /// The whole machine during each phase, with the hypervisor's share: a
    /// phase that lost more of the machine to it than the others was
    /// measured on a slower machine (see `perf::cpu::MachineCpu`).
    pub machine_cpu: ColdPhasesCpu,
}

/// [`MachineCpu`] of each timed phase of `perf cold-read`.
#[derive(Serialize, Debug, Default)]
pub struct ColdPhasesCpu {
    pub offload: Option<MachineCpu>,
    pub cold: Option<MachineCpu>,
    pub warm: Option<MachineCpu>,
    /// The three passes of the raw baseline together.
    pub raw: Option<MachineCpu>,
}

pub async fn run(args: ColdReadArgs) -> anyhow::Result<()> {
    let (local, fresh) = match &args.topic {
        Some(t) => (t.clone(), false),
        None => (format!("cold-{}", uuid::Uuid::new_v4().simple()), true),
    };
    let probes: Vec<String> = (0..args.first_message_probes)
        .map(|i| format!("cold-probe-{i}-{}", uuid::Uuid::new_v4().simple()))
        .collect();
    let measured = measure(&args, &local, &probes).await;
    // A run leaves --size-mb in the object store: fresh topics go, with
    // their cold objects, whether the run succeeded or not.
    if !args.keep_topic {
        let fresh = fresh.then_some(&local);
        for topic in fresh.into_iter().chain(&probes) {
            let path = format!("/admin/v2/persistent/{NAMESPACE}/{topic}?force=true");
            if let Err(e) = admin(&args, Method::DELETE, &path, None).await {
                tracing::warn!(%topic, error = %e, "could not delete the benchmark's topic; delete it (and so its cold objects) by hand");
            }
        }
    }
    let report = measured?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

fn mb(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs.max(1e-9)
}

async fn admin(
    args: &ColdReadArgs,
    method: Method,
    path: &str,
    body: Option<String>,
) -> anyhow::Result<Value> {
    let url = format!("{}{path}", args.admin_url.trim_end_matches('/'));
    let token = args.connect.admin_token()?;
    let (status, text) = http(method.clone(), &url, body, token.as_deref()).await?;
    if !status.is_success() {
        bail!("{method} {url} answered {status}: {}", text.trim());
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn measure(
    args: &ColdReadArgs,
    local: &str,
    probes: &[String],
) -> anyhow::Result<ColdReadReport> {
    let topic = topic_name(local);
    let tpath = topic_path(local);
    // Its own namespace, with no deletion lag.
    let ns_url = format!(
        "{}/admin/v2/namespaces/{NAMESPACE}",
        args.admin_url.trim_end_matches('/')
    );
    let token = args.connect.admin_token()?;
    let (status, text) = http(Method::PUT, &ns_url, Some("{}".into()), token.as_deref()).await?;
    if !status.is_success() && status.as_u16() != 409 {
        bail!("PUT {ns_url} answered {status}: {}", text.trim());
    }
    admin(
        args,
        Method::PUT,
        &format!("/admin/v2/namespaces/{NAMESPACE}/offloadDeletionLagMs"),
        Some("0".into()),
    )
    .await?;

    // 1. Write.
    let options = args
        .connect
        .client_options(&args.url, ClientOptions::default())?;
    let client = connect::connect(&args.url, options).await?;
    let messages = (args.size_mb * 1_000_000).div_ceil(args.size.max(1) as u64);
    let payload_len = args.size.max(16);
    write(&client, &topic, messages, payload_len).await?;
    let probe_messages = (args.probe_mb.min(args.size_mb) * 1_000_000)
        .div_ceil(payload_len as u64)
        .max(1);
    // Two ledgers each: loading a topic reads its last entry (to go on from
    // its broker index), which opens the last ledger's cold copy and
    // fetches its start. The probes read the first ledger, which nothing
    // has opened before their timed read.
    let first_half = probe_messages.div_ceil(2);
    for p in probes {
        write(&client, &topic_name(p), first_half, payload_len).await?;
        admin(
            args,
            Method::PUT,
            &format!("{}/unload", topic_path(p)),
            None,
        )
        .await?;
        write(
            &client,
            &topic_name(p),
            probe_messages - first_half,
            payload_len,
        )
        .await?;
    }
    let data_bytes = messages * payload_len as u64;

    // 2. Seal the ledger (unload), offload everything, wait for cold-only.
    let mut machine_cpu = ColdPhasesCpu::default();
    tracing::info!("offload starts");
    let clock = MachineClock::start();
    let (status, offload_secs) = offload(args, &tpath).await?;
    machine_cpu.offload = clock.stop();
    tracing::info!("offload ends");
    let offloaded_bytes = status["bytesTotal"].as_u64().unwrap_or(0);
    wait_cold_only(args, &tpath).await?;
    for p in probes {
        let path = topic_path(p);
        offload(args, &path).await?;
        wait_cold_only(args, &path).await?;
    }
    for path in std::iter::once(tpath.clone()).chain(probes.iter().map(|p| topic_path(p))) {
        // Drop the broker's entry cache of the topic, then load it again
        // before timing: what is measured is the read, not the topic's
        // load (recovery, a new ledger).
        admin(args, Method::PUT, &format!("{path}/unload"), None).await?;
        admin(args, Method::GET, &format!("{path}/stats"), None).await?;
    }

    // 3. Cold, then warm reads.
    settle_disks().await;
    tracing::info!("cold read starts");
    let clock = MachineClock::start();
    let (cold_secs, cold_first) = read_all(&client, &topic, "cold", messages, args.timeout).await?;
    machine_cpu.cold = clock.stop();
    tracing::info!("cold read ends");
    settle_disks().await;
    tracing::info!("warm read starts");
    let clock = MachineClock::start();
    let (warm_secs, warm_first) = read_all(&client, &topic, "warm", messages, args.timeout).await?;
    machine_cpu.warm = clock.stop();
    tracing::info!("warm read ends");
    let mut first_message_probes_ms = Vec::with_capacity(probes.len());
    for p in probes {
        wait_cold_reads_idle(args).await;
        let (_, first) = read_all(&client, &topic_name(p), "probe", 1, args.timeout).await?;
        first_message_probes_ms.push(first);
    }
    let first_message_ms = match first_message_probes_ms.len() {
        0 => cold_first,
        _ => median(&first_message_probes_ms),
    };
    client.close().await;

    // 4. The raw baseline on the same objects.
    let store = ColdStore::open(&args.object_store).await?;
    let dir = store.path(&format!("{NAMESPACE}/{local}"));
    let objects: Vec<_> = store
        .store()
        .list(Some(&dir))
        .try_collect::<Vec<_>>()
        .await
        .context("listing the topic's objects")?
        .into_iter()
        .filter(|o| o.location.filename() == Some("data"))
        .collect();
    if objects.is_empty() {
        bail!(
            "no data objects under {dir} in {}: is --object-store the broker's cold tier?",
            args.object_store
        );
    }
    let mut ranges = Vec::new();
    for o in &objects {
        let mut at = 0;
        while at < o.size {
            let end = (at + args.raw_range_bytes).min(o.size);
            ranges.push((o.location.clone(), at..end));
            at = end;
        }
    }
    let raw_bytes: u64 = objects.iter().map(|o| o.size).sum();
    // Three passes, the median taken: one pass of a loopback store varies
    // by ±15 % from run to run on a small machine.
    settle_disks().await;
    tracing::info!("raw read starts");
    let clock = MachineClock::start();
    let (raw, raw_runs) = median_of_three(|| async {
        let started = Instant::now();
        futures::stream::iter(ranges.clone())
            .map(|(p, r)| {
                let s = store.store().clone();
                async move { s.get_range(&p, r).await }
            })
            .buffer_unordered(args.raw_concurrency.max(1))
            .try_for_each(|_| async { Ok(()) })
            .await
            .context("raw GETs")?;
        Ok(mb(raw_bytes, started.elapsed().as_secs_f64()))
    })
    .await?;
    machine_cpu.raw = clock.stop();
    tracing::info!("raw read ends");
    let floor = if args.floor {
        settle_disks().await;
        tracing::info!("relay floor starts");
        let (floor, _) = median_of_three(|| {
            relay::relay_mb_per_sec(store.store().clone(), &ranges, args.raw_concurrency)
        })
        .await?;
        tracing::info!("relay floor ends");
        Some(floor)
    } else {
        None
    };
    let mut ranged = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        store
            .store()
            .get_range(&objects[0].location, 0..(64 << 10).min(objects[0].size))
            .await?;
        ranged.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let raw_ranged_get_ms = median(&ranged);

    let cold = mb(data_bytes, cold_secs);
    let warm = mb(data_bytes, warm_secs);
    Ok(ColdReadReport {
        machine: Machine::describe(),
        topic,
        messages,
        message_size: payload_len,
        data_bytes,
        offloaded_bytes,
        offload_secs,
        offload_mb_per_sec: mb(offloaded_bytes, offload_secs),
        cold_read_mb_per_sec: cold,
        cold_first_message_ms: cold_first,
        first_message_probes_ms,
        first_message_ms,
        warm_read_mb_per_sec: warm,
        warm_first_message_ms: warm_first,
        raw_get_mb_per_sec: raw,
        raw_get_runs_mb_per_sec: raw_runs,
        raw_ranged_get_ms,
        raw_objects: objects.len(),
        raw_bytes,
        cold_vs_raw: cold / raw.max(1e-9),
        warm_vs_cold: warm / cold.max(1e-9),
        first_message_vs_ranged_get: first_message_ms / raw_ranged_get_ms.max(1e-9),
        floor_mb_per_sec: floor,
        cold_vs_floor: floor.map(|f| cold / f.max(1e-9)),
        floor_vs_raw: floor.map(|f| f / raw.max(1e-9)),
        machine_cpu,
    })
}

/// Writes this machine's dirty pages out before a timed phase. An object
/// store on this machine (Garage in our tests) leaves what the offload
/// wrote in the page cache, and the kernel writes it back later: on the
/// development VM, 520 MB went to disk during the cold read, a second or
/// two after the offload that wrote them ended, and took disk time and
/// CPU from the read. Without a local store this costs one cheap syscall.
async fn settle_disks() {
    let started = Instant::now();
    // SAFETY: sync(2) takes no arguments and cannot fail.
    let _ = tokio::task::spawn_blocking(|| unsafe { libc::sync() }).await;
    tracing::debug!(
        secs = started.elapsed().as_secs_f64(),
        "dirty pages written back"
    );
}

fn topic_name(local: &str) -> String {
    format!("persistent://{NAMESPACE}/{local}")
}

fn topic_path(local: &str) -> String {
    format!("/admin/v2/persistent/{NAMESPACE}/{local}")
}

/// Writes `messages` of `len` bytes to `topic`: message `i` starts with `i`
/// (big-endian), the rest is noise.
async fn write(client: &Client, topic: &str, messages: u64, len: usize) -> anyhow::Result<()> {
    let producer = client
        .create_producer(
            topic,
            // Pulsar's default batching (1000 messages, 128 KiB): entries
            // of 128 KiB, as most producers write them.
            ProducerOptions {
                batch_max_delay: Duration::from_millis(5),
                ..ProducerOptions::default()
            },
        )
        .await?;
    let mut payload = vec![0u8; len];
    // Pseudo-random payloads, as real archives mostly are (compressed or
    // encrypted already): zeros would let the object store's own
    // compression (Garage's zstd, on by default) shrink what it stores, and
    // the reads would then measure its decompression.
    let mut noise = StdRng::seed_from_u64(0x5eed_c01d);
    let mut pending = futures::stream::FuturesOrdered::new();
    for i in 0..messages {
        payload[..8].copy_from_slice(&i.to_be_bytes());
        noise.fill_bytes(&mut payload[8..]);
        pending.push_back(producer.send(&payload).await?);
        if pending.len() >= 20_000 {
            pending.next().await.context("receipt")??;
        }
    }
    producer.flush().await?;
    while let Some(r) = pending.next().await {
        r?;
    }
    producer.close().await?;
    Ok(())
}

/// Seals the topic's ledger (unload) and offloads every ledger; returns
/// the offload's final status and the seconds from asking to success.
async fn offload(args: &ColdReadArgs, tpath: &str) -> anyhow::Result<(Value, f64)> {
    admin(args, Method::PUT, &format!("{tpath}/unload"), None).await?;
    let started = Instant::now();
    admin(
        args,
        Method::PUT,
        &format!("{tpath}/offload"),
        Some(format!(r#"{{"ledgerId":{},"entryId":0}}"#, i64::MAX)),
    )
    .await?;
    loop {
        let s = admin(args, Method::GET, &format!("{tpath}/offload"), None).await?;
        match s["status"].as_str() {
            Some("SUCCESS") => return Ok((s, started.elapsed().as_secs_f64())),
            Some("ERROR") => bail!("offload of {tpath} failed: {}", s["lastError"]),
            _ if started.elapsed() > args.timeout => {
                bail!("offload of {tpath} did not finish: {s}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits until the bookies' copies of the topic's offloaded ledgers are
/// deleted.
async fn wait_cold_only(args: &ColdReadArgs, tpath: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let u = admin(args, Method::GET, &format!("{tpath}/usage"), None).await?;
        let (done, only) = (
            u["offloadedLedgers"].as_u64().unwrap_or(0),
            u["coldOnlyLedgers"].as_u64().unwrap_or(0),
        );
        if done > 0 && only == done {
            return Ok(());
        }
        if started.elapsed() > args.timeout {
            bail!("the bookies' copies of {tpath} were not deleted: {u}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (at most 5 s) until the broker's tiered reader has no GET in
/// flight. A probe's consumer goes after one message, but the broker's
/// dispatcher has asked for more by then, and that read's GETs, and the
/// read-ahead behind them, run on: the next probe would share the store
/// with them, while the ranged GET it is compared with ran alone.
async fn wait_cold_reads_idle(args: &ColdReadArgs) {
    const NAME: &str = "strata_cold_reader_in_flight_requests";
    let started = Instant::now();
    // Two idle looks in a row: a read may be between two GETs.
    let mut idle = 0;
    while started.elapsed() < Duration::from_secs(5) {
        match super::admin::metric(&args.admin_url, NAME).await {
            Ok(n) if n > 0.0 => idle = 0,
            Ok(_) if idle == 1 => return,
            Ok(_) => idle += 1,
            Err(e) => {
                tracing::debug!(error = %e, "cannot tell whether cold reads are idle");
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!("cold GETs still running after 5 s; probing anyway");
}

/// Runs `pass` three times; returns the median and every pass.
async fn median_of_three<F, Fut>(mut pass: F) -> anyhow::Result<(f64, Vec<f64>)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<f64>>,
{
    let mut runs = Vec::with_capacity(3);
    for _ in 0..3 {
        runs.push(pass().await?);
    }
    Ok((median(&runs), runs))
}

/// The middle value (the upper of the two middle ones for an even count);
/// 0 for none.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

/// Reads `messages` from earliest with a new subscription; returns the
/// seconds from subscribing to the last message, and the milliseconds to
/// the first.
async fn read_all(
    client: &Client,
    topic: &str,
    name: &str,
    messages: u64,
    limit: Duration,
) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let mut consumer = client
        .subscribe(
            topic,
            &format!("perf-{name}-{}", uuid::Uuid::new_v4().simple()),
            ConsumerOptions {
                initial_position: InitialPosition::Earliest,
                receiver_queue_size: 5000,
                ..ConsumerOptions::default()
            },
        )
        .await?;
    let mut first_ms = 0.0;
    // One deadline for the phase: a timeout per message would read the clock
    // for each one, a cost of this benchmark rather than of the read.
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    for i in 0..messages {
        let m = tokio::select! {
            biased;
            m = consumer.receive() => m?,
            _ = &mut deadline => bail!("{name} read: message {i} did not come in {limit:?}"),
        };
        if i == 0 {
            first_ms = started.elapsed().as_secs_f64() * 1000.0;
        }
        let got = m
            .payload
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes);
        if got != Some(i) {
            bail!("{name} read: message {i} came as {got:?} (not this benchmark's message)");
        }
        if i % 1000 == 999 || i + 1 == messages {
            consumer.ack_cumulative(&m.id).await?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    consumer.close().await?;
    Ok((secs, first_ms))
}

fn print_text(r: &ColdReadReport) {
    println!(
        "topic {} — {} messages of {} B, {:.1} MB",
        r.topic,
        r.messages,
        r.message_size,
        r.data_bytes as f64 / 1e6
    );
    println!(
        "offload:     {:>9.1} MB/s  ({:.1} MB in {:.2} s)",
        r.offload_mb_per_sec,
        r.offloaded_bytes as f64 / 1e6,
        r.offload_secs
    );
    println!(
        "cold read:   {:>9.1} MB/s  first message {:.1} ms",
        r.cold_read_mb_per_sec, r.cold_first_message_ms
    );
    println!(
        "warm read:   {:>9.1} MB/s  first message {:.1} ms",
        r.warm_read_mb_per_sec, r.warm_first_message_ms
    );
    if !r.first_message_probes_ms.is_empty() {
        println!(
            "first message from cold: median {:.1} ms of {} probe topics ({:.1?})",
            r.first_message_ms,
            r.first_message_probes_ms.len(),
            r.first_message_probes_ms
        );
    }
    println!(
        "raw GET:     {:>9.1} MB/s  (median of {:.0?}; {} objects, {:.1} MB); one 64 KiB ranged GET {:.2} ms",
        r.raw_get_mb_per_sec,
        r.raw_get_runs_mb_per_sec,
        r.raw_objects,
        r.raw_bytes as f64 / 1e6,
        r.raw_ranged_get_ms
    );
    println!(
        "ratios: cold/raw {:.2} (target >= 0.8), warm/cold {:.2} (>= 3), first message / ranged GET {:.2} (< 2), offload {:.0} MB/s (>= 100)",
        r.cold_vs_raw, r.warm_vs_cold, r.first_message_vs_ranged_get, r.offload_mb_per_sec
    );
    let c = &r.machine_cpu;
    for (phase, m) in [
        ("offload", c.offload),
        ("cold read", c.cold),
        ("warm read", c.warm),
        ("raw GETs", c.raw),
    ] {
        println!("machine during the {phase}: {}", cpu::describe(m));
    }
    if let (Some(cold), Some(raw)) = (c.cold, c.raw)
        && (cold.steal_share - raw.steal_share).abs() >= STEAL_WARNING
    {
        println!(
            "the hypervisor took {:.1} % of the CPU during the cold read and {:.1} % during the raw GETs: cold/raw compares unlike machines",
            cold.steal_share * 100.0,
            raw.steal_share * 100.0
        );
    }
    if let (Some(f), Some(cf), Some(fr)) = (r.floor_mb_per_sec, r.cold_vs_floor, r.floor_vs_raw) {
        println!(
            "relay floor: {f:>9.1} MB/s  cold/floor {cf:.2}, floor/raw {fr:.2} (the highest cold/raw this machine allows)"
        );
    }
}
