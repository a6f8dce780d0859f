//! `strata perf bookie`: append throughput and latency through the ledger
//! client against bookies on DIR, next to the disk's own raw sequential
//! write + fdatasync figures measured in the same run on the same directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use futures::FutureExt;
use serde::Serialize;
use strata_bookie::{Bookie, BookieConfig};
use strata_common::metadata::{MemoryStore, MetadataStore};
use strata_common::stages;
use strata_ledger::{ClientConfig, LedgerClient};
use tokio::sync::mpsc;

use super::cpu::{self, MachineClock, MachineCpu, STEAL_WARNING};
use super::floor::{FloorPlan, paced_group_commit};
use super::raw::measure_both;
use super::report::{self, Latency, Machine};

#[derive(Args, Clone, Debug)]
pub struct BookiePerfArgs {
    /// Directory on the disk to measure (bookie data and the raw test file go here).
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value_t = 1024)]
    pub entry_size: usize,
    #[arg(long, default_value_t = 1)]
    pub ensemble: u32,
    #[arg(long, default_value_t = 1)]
    pub write_quorum: u32,
    #[arg(long, default_value_t = 1)]
    pub ack_quorum: u32,
    /// Payload bytes in flight (unacknowledged) at most (default: the
    /// ledger client's own, 64 MiB, which the broker runs with).
    #[arg(long)]
    pub window_bytes: Option<usize>,
    /// Entries per second to offer (0: as fast as the window allows). With a
    /// rate, latency is measured from each entry's scheduled send time, so a
    /// stall that delays later sends is counted (coordinated omission).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Without --rate: after the run at full speed, run again on fresh
    /// bookies paced at this share of the peak it reached, and report that
    /// run's latency as `add_latency_ms` (0: no second run; the latency is
    /// then the saturated run's, which mostly measures the window's queue).
    #[arg(long, default_value_t = 0.5)]
    pub latency_at: f64,
    /// How long the latency run lasts (default: --duration).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub latency_duration: Option<Duration>,
    /// Scheduling of the load generator (the thread that paces entries and
    /// hands them to the ledger client) in paced runs: `realtime` asks for
    /// `SCHED_FIFO` 1 so that on a small machine the generator's own
    /// scheduling delays are not charged to the bookie (falls back to
    /// normal, with a warning, when refused). Not the default: on a VM whose
    /// host caps its CPU it made the hypervisor pause the whole VM (see the
    /// report's `machine_cpu.steal_share`).
    #[arg(long, value_enum, default_value_t = SenderPriority::Normal)]
    pub sender_priority: SenderPriority,
    /// Paced runs: the sender's shortest sleep in µs; entries due within
    /// one tick leave together (see `perf::pacer`).
    #[arg(long, default_value_t = super::pacer::DEFAULT_TICK_US)]
    pub pace_tick_us: u64,
    /// Bookie settings (TOML, as for `strata bookie --config`); `listen` and
    /// `data_dir` are set by the benchmark.
    #[arg(long)]
    pub bookie_config: Option<PathBuf>,
    /// How the ledger client reaches the bookies: `grpc` (as a remote
    /// bookie, over loopback) or `local` (handed over in-process, as the
    /// standalone does with its own bookie).
    #[arg(long, value_enum, default_value_t = Transport::Grpc)]
    pub transport: Transport,
    /// How long the raw disk baseline runs.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub raw_duration: Duration,
    /// Steady state of a bookie with retention: append to ledgers of
    /// RETAIN/4 MB each (at least 16 MB) and delete the oldest once more than
    /// this many MB are kept, so that garbage collection frees journal files
    /// and new ones are made from them (0: one ledger, nothing deleted).
    /// Without `--bookie-config`, the bookies then keep up to 64 released
    /// journal files and reuse one after one second.
    #[arg(long, default_value_t = 0)]
    pub retain_mb: u64,
    /// Trace every 16th entry of the paced run through the ledger client
    /// and the bookie (queued, taken by the request body, received, stored,
    /// durable, answered, answer received, acknowledged) and report where
    /// the time went, step by step and for the slowest 1 % (see
    /// `strata_common::stages`). Not with `--retain-mb` (entries are told
    /// apart by id).
    #[arg(long, conflicts_with = "retain_mb")]
    pub stages: bool,
    /// After the paced run, run the smallest possible group commit (one
    /// thread paces and copies entries, one writes and fdatasyncs each
    /// gathered batch) at the same rate and entry size on the same
    /// directory, and report its latency next to the bookie's: the paced
    /// latency this disk and machine allow at all (see `perf::floor`).
    #[arg(long)]
    pub floor: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SenderPriority {
    Realtime,
    Normal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Grpc,
    Local,
}

#[derive(Serialize, Debug)]
pub struct BookieReport {
    pub entry_size: usize,
    pub transport: Transport,
    /// Offered rate in entries/s (0: unpaced).
    pub rate: f64,
    pub window_bytes: usize,
    pub ensemble: u32,
    pub write_quorum: u32,
    pub ack_quorum: u32,
    /// `--retain-mb` (0: one ledger, nothing deleted).
    pub retain_mb: u64,
    /// Ledgers written and deleted during the run.
    pub ledgers: u64,
    pub ledgers_deleted: u64,
    pub duration_secs: f64,
    pub entries: u64,
    pub entries_per_sec: f64,
    pub mb_per_sec: f64,
    /// Add latency of the paced run: the latency run at `--latency-at` of
    /// the peak (see `latency_phase`), or the `--rate` run. Only with
    /// `--latency-at 0` is it the saturated run's.
    pub add_latency_ms: Latency,
    /// Add latency of the run at full speed: mostly the time an entry
    /// waits behind the window's worth of entries ahead of it.
    pub saturated_add_latency_ms: Option<Latency>,
    /// Paced runs: how late each append was handed to the ledger client
    /// after its scheduled time (the sender's wake-up, a full window, a busy
    /// runtime). It is part of `add_latency_ms`; a large p99 here means the
    /// tail was made before the entry reached any bookie.
    pub send_lateness_ms: Option<Latency>,
    /// Whether the paced run's sending thread ran at real-time priority
    /// (`--sender-priority`).
    pub sender_realtime: bool,
    /// The latency run, when there was one.
    pub latency_phase: Option<LatencyPhase>,
    /// `--floor`: the smallest group commit's latency at the paced run's
    /// rate and entry size, and the paced run's p99 as a multiple of its p99.
    pub floor: Option<FloorReport>,
    /// `--stages`: where the paced run's sampled entries spent their time.
    pub stages: Option<StagesReport>,
    pub raw_fdatasync_mb_per_sec: f64,
    pub raw_fdatasync_p99_ms: f64,
    pub raw_fdatasync_latency_ms: Latency,
    /// False when the filesystem refused `O_DIRECT` for the baseline.
    pub raw_direct_io: bool,
    /// The same loop through the page cache: context, not the baseline
    /// (see `perf::raw`).
    pub raw_buffered_fdatasync_mb_per_sec: f64,
    pub raw_buffered_fdatasync_p99_ms: f64,
    /// The baseline's loop over blocks written before: context, not the
    /// baseline (see `perf::raw`).
    pub raw_overwrite_fdatasync_mb_per_sec: f64,
    pub raw_overwrite_fdatasync_p99_ms: f64,
    pub ratio: f64,
    pub latency_ratio_p99: f64,
    /// CPU of this whole process (client and bookies) while appending, in
    /// cores and per entry: steadier from run to run than throughput on a
    /// shared machine, so the figure to compare code changes by.
    pub process_cpu_cores: f64,
    pub cpu_us_per_entry: f64,
    /// The whole machine meanwhile, with the hypervisor's share: latency
    /// figures taken while it took more than a few percent include pauses
    /// of the whole VM (see `perf::cpu::MachineCpu`).
    pub machine_cpu: Option<MachineCpu>,
    /// The same during the raw baseline.
    pub raw_machine_cpu: Option<MachineCpu>,
    /// What the bookies saw, from their own metrics (summed over bookies).
    pub bookie: BookieSide,
    pub machine: BookieMachine,
}

/// The paced run after the run at full speed.
#[derive(Serialize, Debug)]
pub struct LatencyPhase {
    /// `--latency-at`: its rate as a share of the peak entries/s.
    pub share_of_peak: f64,
    /// Offered entries/s.
    pub rate: f64,
    pub duration_secs: f64,
    pub entries: u64,
    pub entries_per_sec: f64,
    pub mb_per_sec: f64,
    pub process_cpu_cores: f64,
    pub machine_cpu: Option<MachineCpu>,
    pub bookie: BookieSide,
}

/// See `--stages`.
#[derive(Serialize, Debug)]
pub struct StagesReport {
    /// One entry in this many was traced.
    pub sample_every: u64,
    /// Traced entries that were acknowledged.
    pub entries: usize,
    /// Queued to acknowledged, over the traced entries.
    pub total_ms: StepLatency,
    /// Each step an entry takes on its path, in order (gRPC: all seven;
    /// in-process: queued, storing, durable, acknowledged).
    pub steps: Vec<StepLatency>,
}

#[derive(Serialize, Debug)]
pub struct StepLatency {
    pub from: &'static str,
    pub to: &'static str,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Mean time in this step of the entries whose total was at or above
    /// the total's p99: which step makes the tail.
    pub tail_mean_ms: f64,
}

/// One step's times over the traced entries, and their sum over the tail.
#[derive(Default)]
struct StepTimes {
    all: Vec<u64>,
    tail_sum: u64,
    tail_n: u64,
}

impl StepTimes {
    fn add(&mut self, ns: u64, in_tail: bool) {
        self.all.push(ns);
        if in_tail {
            self.tail_sum += ns;
            self.tail_n += 1;
        }
    }

    fn summary(mut self, from: usize, to: usize) -> StepLatency {
        self.all.sort_unstable();
        let ms = |ns: u64| ns as f64 / 1e6;
        StepLatency {
            from: stages::STAGE_NAMES[from],
            to: stages::STAGE_NAMES[to],
            p50_ms: ms(at_quantile(&self.all, 0.5)),
            p99_ms: ms(at_quantile(&self.all, 0.99)),
            max_ms: ms(self.all.last().copied().unwrap_or(0)),
            tail_mean_ms: ms(self.tail_sum) / self.tail_n.max(1) as f64,
        }
    }
}

/// The value at quantile `q` of sorted `v` (0 when empty).
fn at_quantile(v: &[u64], q: f64) -> u64 {
    match v.len() {
        0 => 0,
        n => v[((n as f64 * q) as usize).min(n - 1)],
    }
}

/// Sums up the traces of the acknowledged entries.
fn stages_report(traces: &[stages::Trace]) -> StagesReport {
    use stages::Stage;
    // Each acknowledged entry's stages, in order: those it passed.
    let paths: Vec<Vec<(usize, u64)>> = traces
        .iter()
        .filter(|t| t.at[Stage::Acknowledged as usize].is_some())
        .map(|t| {
            t.at.iter()
                .enumerate()
                .filter_map(|(i, a)| a.map(|ns| (i, ns)))
                .collect()
        })
        .collect();
    // Queued (always traced) to acknowledged (the last stage).
    let total = |p: &[(usize, u64)]| p[p.len() - 1].1.saturating_sub(p[0].1);
    let mut totals: Vec<u64> = paths.iter().map(|p| total(p)).collect();
    totals.sort_unstable();
    let tail_from = at_quantile(&totals, 0.99);
    let mut whole = StepTimes::default();
    let mut steps: std::collections::BTreeMap<(usize, usize), StepTimes> =
        std::collections::BTreeMap::new();
    for p in &paths {
        let in_tail = total(p) >= tail_from;
        whole.add(total(p), in_tail);
        for w in p.windows(2) {
            let step = steps.entry((w[0].0, w[1].0)).or_default();
            step.add(w[1].1.saturating_sub(w[0].1), in_tail);
        }
    }
    StagesReport {
        sample_every: stages::SAMPLE_EVERY,
        entries: paths.len(),
        total_ms: whole.summary(Stage::Queued as usize, Stage::Acknowledged as usize),
        steps: steps
            .into_iter()
            .map(|((from, to), times)| times.summary(from, to))
            .collect(),
    }
}

/// See `perf::floor`.
#[derive(Serialize, Debug)]
pub struct FloorReport {
    pub rate: f64,
    pub entries: u64,
    /// Batches written and synced.
    pub batches: u64,
    pub add_latency_ms: Latency,
    /// Its p99 over the raw loop's p99.
    pub latency_ratio_p99: f64,
    /// The paced run's add p99 over this p99.
    pub bookie_p99_to_floor_p99: f64,
    pub machine_cpu: Option<MachineCpu>,
}

#[derive(Serialize, Debug, Clone)]
pub struct BookieSide {
    pub journal_syncs: u64,
    pub journal_avg_batch_bytes: f64,
    /// Upper bound of the histogram bucket holding the p99 fdatasync time.
    pub journal_fsync_p99_ms_bucket: f64,
    /// Rare slow syncs delay every add that arrives meanwhile, so the add
    /// p99 follows the sync p99.9 more than the sync p99.
    pub journal_fsync_p999_ms_bucket: f64,
    /// Upper bound of the bucket holding the p99 bookie-side add time
    /// (request received to journal durable).
    pub add_p99_ms_bucket: f64,
    pub journal_write_p99_ms_bucket: f64,
    pub journal_queue_p99_ms_bucket: f64,
    /// Adds that had to wait for write-cache room, and the p99 of that wait.
    pub write_cache_waits: u64,
    pub write_cache_wait_p99_ms_bucket: f64,
    pub flushes: u64,
    pub flush_p99_ms_bucket: f64,
    /// Batches written (one `pwrite` each; a sync covers one or more).
    pub journal_writes: u64,
    /// Requests the journal took (one per hand-over of adds from a client
    /// batch or stream message): entries ÷ requests is how well adds were
    /// batched on their way in.
    pub journal_requests: u64,
    /// Journal files made from released ones (see `--retain-mb`).
    pub journal_reused_files: u64,
    /// Journal writes and fdatasyncs that took `journal_slow_threshold`
    /// (100 ms unless `--bookie-config` says otherwise) or more: a disk that
    /// stalled during the run.
    pub journal_slow_writes: u64,
    pub journal_slow_syncs: u64,
    /// Means over the run, for where an add's time goes.
    pub add_avg_ms: f64,
    pub journal_queue_avg_ms: f64,
    pub journal_write_avg_ms: f64,
    pub journal_fsync_avg_ms: f64,
}

#[derive(Serialize, Debug)]
pub struct BookieMachine {
    #[serde(flatten)]
    pub machine: Machine,
    pub dir: String,
}

fn machine_line(m: Option<MachineCpu>) -> String {
    format!("machine {}", cpu::describe(m))
}

pub async fn run(args: BookiePerfArgs) -> anyhow::Result<()> {
    let report = bookie_perf(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &BookieReport) {
    let q = |l: &Latency| {
        format!(
            "p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
            l.p50, l.p99, l.p999, l.max
        )
    };
    println!(
        "entries/s {:.0}  MB/s {:.1}  (window {} MiB)",
        r.entries_per_sec,
        r.mb_per_sec,
        r.window_bytes >> 20
    );
    if let Some(l) = &r.saturated_add_latency_ms {
        println!("  add latency ms at full speed: {}", q(l));
    }
    match &r.latency_phase {
        Some(p) => {
            println!(
                "paced at {:.0} % of that ({:.0} entries/s): add latency ms {}",
                p.share_of_peak * 100.0,
                p.rate,
                q(&r.add_latency_ms)
            );
            println!(
                "  process {:.2} cores; {}",
                p.process_cpu_cores,
                machine_line(p.machine_cpu)
            );
        }
        None if r.rate > 0.0 => println!(
            "paced at {:.0} entries/s: add latency ms {}",
            r.rate,
            q(&r.add_latency_ms)
        ),
        None => {}
    }
    if let Some(f) = &r.floor {
        println!(
            "  the smallest group commit at that rate (--floor): add latency ms {}  p99 latency ratio {:.2}; the bookie's p99 is {:.2} × its; {}",
            q(&f.add_latency_ms),
            f.latency_ratio_p99,
            f.bookie_p99_to_floor_p99,
            machine_line(f.machine_cpu)
        );
    }
    if let Some(st) = &r.stages {
        println!(
            "  where the time went (every {}th entry, {} traced; tail: the slowest 1 %):",
            st.sample_every, st.entries
        );
        for s in std::iter::once(&st.total_ms).chain(&st.steps) {
            println!(
                "    {:>15} → {:<15} p50 {:.3}  p99 {:.3}  max {:.2}  tail mean {:.3} ms",
                s.from, s.to, s.p50_ms, s.p99_ms, s.max_ms, s.tail_mean_ms
            );
        }
    }
    if let Some(l) = &r.send_lateness_ms {
        println!(
            "  sends left late by ms: p50 {:.2} p99 {:.2} (load generator at {} priority)",
            l.p50,
            l.p99,
            if r.sender_realtime {
                "real-time"
            } else {
                "normal"
            }
        );
    }
    println!(
        "raw 1 MiB write+fdatasync (O_DIRECT, appending): MB/s {:.1}  p99 ms {:.2}   ratio {:.2}  p99 latency ratio {:.2}",
        r.raw_fdatasync_mb_per_sec, r.raw_fdatasync_p99_ms, r.ratio, r.latency_ratio_p99
    );
    println!(
        "  (through the page cache instead: MB/s {:.1}  p99 ms {:.2})",
        r.raw_buffered_fdatasync_mb_per_sec, r.raw_buffered_fdatasync_p99_ms
    );
    println!(
        "  (over blocks written before: MB/s {:.1}  p99 ms {:.2})",
        r.raw_overwrite_fdatasync_mb_per_sec, r.raw_overwrite_fdatasync_p99_ms
    );
    println!("  raw baseline: {}", machine_line(r.raw_machine_cpu));
    println!(
        "process CPU while appending: {:.2} cores, {:.2} µs per entry; {}",
        r.process_cpu_cores,
        r.cpu_us_per_entry,
        machine_line(r.machine_cpu)
    );
    let timed = r
        .latency_phase
        .as_ref()
        .map_or(r.machine_cpu, |p| p.machine_cpu);
    if let Some(m) = timed.filter(|m| m.steal_share >= STEAL_WARNING) {
        println!(
            "the hypervisor took {:.1} % of the CPU during the timed run: the latency figures include pauses of the whole VM",
            m.steal_share * 100.0
        );
    }
    if r.bookie.journal_slow_writes + r.bookie.journal_slow_syncs > 0 {
        println!(
            "the disk stalled: {} journal writes and {} fdatasyncs took journal_slow_threshold or more",
            r.bookie.journal_slow_writes, r.bookie.journal_slow_syncs
        );
    }
    if r.retain_mb > 0 {
        println!(
            "retention {} MB: {} ledgers written, {} deleted; {} journal files reused",
            r.retain_mb, r.ledgers, r.ledgers_deleted, r.bookie.journal_reused_files
        );
    }
}

pub async fn bookie_perf(args: &BookiePerfArgs) -> anyhow::Result<BookieReport> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("create {}", args.dir.display()))?;
    let raw_dir = args.dir.clone();
    let raw_duration = args.raw_duration;
    let raw_clock = MachineClock::start();
    let raw_disk =
        tokio::task::spawn_blocking(move || measure_both(&raw_dir, raw_duration)).await??;
    let raw_machine_cpu = raw_clock.stop();
    let window_bytes = args
        .window_bytes
        .unwrap_or(ClientConfig::default().max_outstanding_bytes)
        .max(args.entry_size);
    let realtime = args.sender_priority == SenderPriority::Realtime;

    // `--stages` traces the paced run: room for all of its sampled entries.
    let trace = |rate: f64, duration: Duration| {
        if args.stages {
            let entries = rate * duration.as_secs_f64() * 1.1 + 1024.0;
            stages::enable((entries / stages::SAMPLE_EVERY as f64) as usize);
        }
    };
    if args.rate > 0.0 {
        trace(args.rate, args.duration);
    }
    // The throughput phase: unpaced, or paced at --rate.
    let main = run_phase(
        args,
        Phase {
            rate: args.rate,
            duration: args.duration,
            window_bytes,
            realtime,
        },
    )
    .await?;
    // Then, after an unpaced run, latency at a share of the peak it found,
    // on fresh bookies again.
    let latency = if args.rate == 0.0 && args.latency_at > 0.0 {
        let rate = main.entries_per_sec() * args.latency_at;
        trace(rate, args.latency_duration.unwrap_or(args.duration));
        let phase = run_phase(
            args,
            Phase {
                rate,
                duration: args.latency_duration.unwrap_or(args.duration),
                window_bytes,
                realtime,
            },
        )
        .await?;
        Some(phase)
    } else {
        None
    };

    let raw_mbps = raw_disk.fdatasync_mb_per_sec;
    let raw = raw_disk.fdatasync_latency_ms;
    let mb_per_sec = main.mb_per_sec(args.entry_size);
    let timed = latency.as_ref().unwrap_or(&main);
    let add_latency_ms = Latency::from(&timed.hist);
    let floor = if args.floor && timed.rate > 0.0 {
        let plan = FloorPlan {
            entry_size: args.entry_size,
            rate: timed.rate,
            // The same schedule: the same entries, due at the same times.
            duration: timed.scheduled,
            tick: Duration::from_micros(args.pace_tick_us.max(1)),
            realtime: timed.realtime,
        };
        let dir = args.dir.clone();
        let clock = MachineClock::start();
        let f = tokio::task::spawn_blocking(move || paced_group_commit(&dir, plan)).await??;
        let machine_cpu = clock.stop();
        let latency = Latency::from(&f.hist);
        Some(FloorReport {
            rate: plan.rate,
            entries: f.entries,
            batches: f.batches,
            latency_ratio_p99: latency.p99 / raw.p99.max(1e-6),
            bookie_p99_to_floor_p99: add_latency_ms.p99 / latency.p99.max(1e-6),
            add_latency_ms: latency,
            machine_cpu,
        })
    } else {
        None
    };
    Ok(BookieReport {
        entry_size: args.entry_size,
        transport: args.transport,
        rate: args.rate,
        window_bytes,
        ensemble: args.ensemble,
        write_quorum: args.write_quorum,
        ack_quorum: args.ack_quorum,
        retain_mb: args.retain_mb,
        ledgers: main.ledgers,
        ledgers_deleted: main.ledgers_deleted,
        duration_secs: main.elapsed,
        entries: main.entries,
        entries_per_sec: main.entries_per_sec(),
        mb_per_sec,
        latency_ratio_p99: add_latency_ms.p99 / raw.p99.max(1e-6),
        process_cpu_cores: main.cpu_secs / main.elapsed.max(1e-9),
        cpu_us_per_entry: main.cpu_secs * 1e6 / (main.entries.max(1) as f64),
        machine_cpu: main.machine_cpu,
        raw_machine_cpu,
        add_latency_ms,
        saturated_add_latency_ms: (args.rate == 0.0).then(|| Latency::from(&main.hist)),
        send_lateness_ms: timed.lateness.as_ref().map(Latency::from),
        sender_realtime: timed.realtime,
        latency_phase: latency.as_ref().map(|l| LatencyPhase {
            share_of_peak: args.latency_at,
            rate: l.rate,
            duration_secs: l.elapsed,
            entries: l.entries,
            entries_per_sec: l.entries_per_sec(),
            mb_per_sec: l.mb_per_sec(args.entry_size),
            process_cpu_cores: l.cpu_secs / l.elapsed.max(1e-9),
            machine_cpu: l.machine_cpu,
            bookie: l.bookie.clone(),
        }),
        floor,
        stages: args.stages.then(|| stages_report(&timed.traces)),
        raw_fdatasync_mb_per_sec: raw_mbps,
        raw_fdatasync_p99_ms: raw.p99,
        raw_fdatasync_latency_ms: raw,
        raw_direct_io: raw_disk.direct_io,
        raw_buffered_fdatasync_mb_per_sec: raw_disk.buffered_fdatasync_mb_per_sec,
        raw_buffered_fdatasync_p99_ms: raw_disk.buffered_fdatasync_latency_ms.p99,
        raw_overwrite_fdatasync_mb_per_sec: raw_disk.overwrite_fdatasync_mb_per_sec,
        raw_overwrite_fdatasync_p99_ms: raw_disk.overwrite_fdatasync_latency_ms.p99,
        ratio: mb_per_sec / raw_mbps.max(1e-9),
        bookie: main.bookie,
        machine: BookieMachine {
            machine: Machine::describe(),
            dir: args.dir.display().to_string(),
        },
    })
}

/// One timed run of appends.
struct Phase {
    /// Entries/s (0: as fast as the window allows).
    rate: f64,
    duration: Duration,
    window_bytes: usize,
    /// Paced runs: the sending thread asks for real-time scheduling (see
    /// `perf::priority`).
    realtime: bool,
}

/// What one phase measured.
struct PhaseOutcome {
    rate: f64,
    hist: hdrhistogram::Histogram<u64>,
    lateness: Option<hdrhistogram::Histogram<u64>>,
    /// Whether the sending thread ran at real-time priority.
    realtime: bool,
    entries: u64,
    elapsed: f64,
    /// The stretch entries were due in (`elapsed` also holds a late
    /// sender's catching up and the wait for the last acknowledgements).
    scheduled: Duration,
    cpu_secs: f64,
    machine_cpu: Option<MachineCpu>,
    ledgers: u64,
    ledgers_deleted: u64,
    bookie: BookieSide,
    /// `--stages`: the run's traced entries.
    traces: Vec<stages::Trace>,
}

impl PhaseOutcome {
    fn entries_per_sec(&self) -> f64 {
        self.entries as f64 / self.elapsed.max(1e-9)
    }

    fn mb_per_sec(&self, entry_size: usize) -> f64 {
        self.entries_per_sec() * entry_size as f64 / 1e6
    }
}

/// Starts fresh bookies on `args.dir`, appends for `phase.duration`, and
/// removes the bookies' data again.
async fn run_phase(args: &BookiePerfArgs, phase: Phase) -> anyhow::Result<PhaseOutcome> {
    let store: Arc<dyn MetadataStore> = Arc::new(MemoryStore::new());
    let mut bookies = Vec::new();
    for i in 0..args.ensemble {
        let mut config = match &args.bookie_config {
            Some(path) => BookieConfig::from_file(path)?,
            // A pool large enough for what the benchmark writes while a
            // released file waits out its grace.
            None if args.retain_mb > 0 => BookieConfig {
                journal_reuse_grace: Duration::from_secs(1),
                journal_reuse_files: 64,
                ..BookieConfig::default()
            },
            None => BookieConfig::default(),
        };
        config.listen = "127.0.0.1:0".into();
        config.data_dir = args.dir.join(format!("perf-bookie-{i}"));
        let _ = std::fs::remove_dir_all(&config.data_dir);
        bookies.push(Bookie::start_with_store(config, store.clone()).await?);
    }
    let client = Arc::new(LedgerClient::new(
        store.clone(),
        ClientConfig {
            max_outstanding_bytes: phase.window_bytes,
            ..ClientConfig::default()
        },
    ));
    if args.transport == Transport::Local {
        for b in &bookies {
            client.register_local_bookie(
                &b.bookie_id,
                Arc::new(crate::standalone::EmbeddedBookie(b.storage.clone())),
            );
        }
    }
    // A bookie that turns read-only (its disk reached the usage watermark:
    // a benchmark at full speed writes GBs a second) stops the run at once
    // with the reason, rather than after the writer's ensemble-change
    // timeout with "not enough writable bookies".
    let mut refused = watch_read_only(&bookies);
    let at_start = refused.borrow().clone();
    if let Some(why) = at_start {
        drop((refused, client));
        let _ = stop_bookies(bookies, &args.dir).await;
        return Err(read_only_error(&why));
    }
    let create = || client.create(args.ensemble, args.write_quorum, args.ack_quorum);
    let mut writer = create().await?;
    let mut retention = Retention::new(client.clone(), args.retain_mb);
    let payload = Bytes::from(
        (0..args.entry_size)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>(),
    );

    // The futures travel unboxed: their type is inferred from the sends.
    let (tx, rx) = mpsc::unbounded_channel();
    let collector = tokio::spawn(collect(rx));
    let cpu_before = super::cpu::process_seconds();
    let machine_clock = MachineClock::start();
    let started = Instant::now();
    let end = started + phase.duration;
    // Paced, this thread (the command's own, never a runtime worker) is the
    // load generator: it sleeps until each send is due.
    let mut pacer = (phase.rate > 0.0).then(|| {
        super::pacer::InlinePacer::new(
            started,
            phase.rate,
            0.0,
            end,
            Duration::from_micros(args.pace_tick_us.max(1)),
        )
    });
    let mut lateness = pacer.is_some().then(report::histogram);
    let sender_realtime = if pacer.is_some()
        && phase.realtime
        && std::thread::current().name() == Some("main")
    {
        super::priority::Realtime::enter()
            .inspect_err(|e| {
                tracing::warn!(error = %e, "the sending thread runs at normal priority: real-time scheduling was refused");
            })
            .ok()
    } else {
        None
    };
    let realtime = sender_realtime.is_some();
    loop {
        let t = match &mut pacer {
            Some(p) => match p.next_blocking() {
                Some(due) => due,
                None => break,
            },
            None => {
                // One clock read per entry serves both the deadline and the latency.
                let now = Instant::now();
                if now >= end {
                    break;
                }
                now
            }
        };
        // A bookie that turned read-only ends the run, whether or not the
        // window is full: checked with one atomic load per entry, and
        // waited for only while the window holds the entry back.
        if refused.has_changed().unwrap_or(true) {
            break;
        }
        let fut = {
            let enqueue = writer.enqueue_timed(payload.clone(), None);
            tokio::pin!(enqueue);
            match enqueue.as_mut().now_or_never() {
                Some(fut) => fut?,
                None => tokio::select! {
                    biased;
                    _ = refused.changed() => break,
                    fut = enqueue => fut?,
                },
            }
        };
        if let Some(h) = &mut lateness {
            report::record(h, t.elapsed().as_micros() as u64);
        }
        if tx.send((t, fut)).is_err() {
            break;
        }
        if retention.wrote(payload.len() as u64) {
            let full = std::mem::replace(&mut writer, create().await?);
            retention.rolled(full);
        }
    }
    drop(sender_realtime);
    drop(tx);
    let midway = refused.borrow().clone();
    if let Some(why) = midway {
        // Entries still pending wait for the ensemble change: not for them.
        collector.abort();
        drop((writer, retention, client, refused));
        let _ = stop_bookies(bookies, &args.dir).await;
        return Err(read_only_error(&why));
    }
    let (hist, n, failed) = collector.await?;
    let elapsed = started.elapsed().as_secs_f64();
    let traces = stages::take();
    let cpu_secs = (super::cpu::process_seconds() - cpu_before).max(0.0);
    let machine_cpu = machine_clock.stop();
    if let Some(e) = failed {
        drop((writer, retention, client, refused));
        let _ = stop_bookies(bookies, &args.dir).await;
        anyhow::bail!("append failed during the benchmark: {e}");
    }
    writer.close().await?;
    let (ledgers, ledgers_deleted) = retention.finish().await?;
    let bookie = bookie_side(&bookies);
    // The read-only watcher holds the storages too.
    drop((writer, client, refused));
    stop_bookies(bookies, &args.dir).await?;
    Ok(PhaseOutcome {
        rate: phase.rate,
        hist,
        lateness,
        realtime,
        entries: n,
        elapsed,
        scheduled: phase.duration,
        cpu_secs,
        machine_cpu,
        ledgers,
        ledgers_deleted,
        bookie,
        traces,
    })
}

fn bookie_side(bookies: &[Bookie]) -> BookieSide {
    let ms = |v: Option<f64>| v.map_or(0.0, |s| s * 1000.0);
    let mut side = BookieSide {
        journal_syncs: 0,
        journal_avg_batch_bytes: 0.0,
        journal_fsync_p99_ms_bucket: 0.0,
        journal_fsync_p999_ms_bucket: 0.0,
        add_p99_ms_bucket: 0.0,
        journal_write_p99_ms_bucket: 0.0,
        journal_queue_p99_ms_bucket: 0.0,
        write_cache_waits: 0,
        write_cache_wait_p99_ms_bucket: 0.0,
        flushes: 0,
        flush_p99_ms_bucket: 0.0,
        journal_writes: 0,
        journal_requests: 0,
        journal_reused_files: 0,
        journal_slow_writes: 0,
        journal_slow_syncs: 0,
        add_avg_ms: 0.0,
        journal_queue_avg_ms: 0.0,
        journal_write_avg_ms: 0.0,
        journal_fsync_avg_ms: 0.0,
    };
    // Sums and counts per histogram, for the means.
    let mut sums = [(0.0, 0u64); 4];
    let mut batch_bytes = 0.0;
    for b in bookies {
        let m = b.metrics();
        side.journal_syncs += m.journal_fsync_seconds.count();
        batch_bytes += m.journal_batch_bytes.sum();
        side.flushes += m.flushes.get();
        side.journal_slow_writes += m.journal_slow_writes.get();
        side.journal_slow_syncs += m.journal_slow_syncs.get();
        let p99 = |h: &strata_common::metrics::Histogram| ms(h.quantile_upper_bound(0.99));
        let worst = |into: &mut f64, v: f64| *into = into.max(v);
        worst(
            &mut side.journal_fsync_p99_ms_bucket,
            p99(&m.journal_fsync_seconds),
        );
        worst(&mut side.add_p99_ms_bucket, p99(&m.add_seconds));
        worst(
            &mut side.journal_fsync_p999_ms_bucket,
            ms(m.journal_fsync_seconds.quantile_upper_bound(0.999)),
        );
        worst(
            &mut side.journal_queue_p99_ms_bucket,
            p99(&m.journal_queue_seconds),
        );
        worst(
            &mut side.journal_write_p99_ms_bucket,
            p99(&m.journal_write_seconds),
        );
        worst(
            &mut side.write_cache_wait_p99_ms_bucket,
            p99(&m.write_cache_wait_seconds),
        );
        worst(&mut side.flush_p99_ms_bucket, p99(&m.flush_seconds));
        side.write_cache_waits += m.write_cache_wait_seconds.count();
        side.journal_writes += m.journal_write_seconds.count();
        side.journal_requests += m.journal_queue_seconds.count();
        side.journal_reused_files += m.journal_reused_files.get();
        for (acc, h) in sums.iter_mut().zip([
            &m.add_seconds,
            &m.journal_queue_seconds,
            &m.journal_write_seconds,
            &m.journal_fsync_seconds,
        ]) {
            acc.0 += h.sum();
            acc.1 += h.count();
        }
    }
    let mean_ms = |(sum, n): (f64, u64)| sum * 1000.0 / n.max(1) as f64;
    side.add_avg_ms = mean_ms(sums[0]);
    side.journal_queue_avg_ms = mean_ms(sums[1]);
    side.journal_write_avg_ms = mean_ms(sums[2]);
    side.journal_fsync_avg_ms = mean_ms(sums[3]);
    side.journal_avg_batch_bytes = batch_bytes / side.journal_writes.max(1) as f64;
    side
}

/// Says (with the reason) when one of `bookies` is read-only: at once if
/// one already is, else as soon as one turns read-only (checked every
/// 100 ms).
fn watch_read_only(bookies: &[Bookie]) -> tokio::sync::watch::Receiver<Option<String>> {
    let storages: Vec<_> = bookies
        .iter()
        .map(|b| (b.bookie_id.clone(), b.storage.clone()))
        .collect();
    let why = move || {
        storages.iter().find_map(|(id, storage)| {
            let reason = storage.read_only()?;
            Some(format!("bookie {id} is read-only ({reason:?})"))
        })
    };
    let (tx, rx) = tokio::sync::watch::channel(why());
    if rx.borrow().is_none() {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                if let Some(w) = why() {
                    let _ = tx.send(Some(w));
                    return;
                }
            }
        });
    }
    rx
}

fn read_only_error(why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{why}: the benchmark stopped. On a disk past the bookie's disk_usage_threshold \
         (95 % by default), free space or shorten --duration: at full speed a run writes \
         about mb_per_sec × duration MB"
    )
}

/// Shuts the bookies down and removes their data once nothing holds their
/// storage any more (the ledger client's hand-over tasks let go of it
/// shortly after the client is dropped): only then is RocksDB closed and
/// the space of the deleted files given back, ready for the next run.
///
/// The last reference is dropped here, and the directories are removed only
/// once that drop has finished: a storage being dropped elsewhere still
/// writes files (RocksDB flushes and closes), and removing its directory
/// meanwhile could fail halfway and leave it behind.
async fn stop_bookies(bookies: Vec<Bookie>, dir: &std::path::Path) -> anyhow::Result<()> {
    let n = bookies.len() as u32;
    let storages: Vec<_> = bookies.iter().map(|b| b.storage.clone()).collect();
    let mut result = Ok(());
    for b in bookies {
        if let Err(e) = b.shutdown().await {
            result = result.and(Err(e.into()));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while storages.iter().any(|s| Arc::strong_count(s) > 1) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = tokio::task::spawn_blocking(move || drop(storages)).await;
    remove_bookie_dirs(dir, n);
    result
}

fn remove_bookie_dirs(dir: &std::path::Path, n: u32) {
    for i in 0..n {
        let _ = std::fs::remove_dir_all(dir.join(format!("perf-bookie-{i}")));
    }
}

/// Awaits the appends in order, recording each one's latency from its
/// start (or scheduled time) to its acknowledgement; stops at the first
/// failure.
async fn collect<F>(
    mut rx: mpsc::UnboundedReceiver<(Instant, F)>,
) -> (
    hdrhistogram::Histogram<u64>,
    u64,
    Option<strata_ledger::LedgerError>,
)
where
    F: std::future::Future<Output = strata_ledger::Result<(u64, Instant)>>,
{
    let mut h = report::histogram();
    let mut n = 0u64;
    while let Some((started, fut)) = rx.recv().await {
        match fut.await {
            // Timed at the acknowledgement, not when this task got to it.
            Ok((_, acked)) => {
                report::record(
                    &mut h,
                    acked.saturating_duration_since(started).as_micros() as u64,
                );
                n += 1;
            }
            Err(e) => return (h, n, Some(e)),
        }
    }
    (h, n, None)
}

/// `--retain-mb`: rolls the benchmark's ledger every quarter of the retained
/// size and deletes the oldest ledgers beyond it, as a topic with a size-based
/// retention does, so the bookies run in the steady state of a long-lived
/// bookie (journal files freed by garbage collection, then reused).
struct Retention {
    client: Arc<LedgerClient>,
    ledger_bytes: u64,
    keep: usize,
    written: u64,
    /// Closed (or closing) ledgers, oldest first.
    closed: std::collections::VecDeque<(u64, tokio::task::JoinHandle<()>)>,
    deletes: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    ledgers: u64,
}

impl Retention {
    fn new(client: Arc<LedgerClient>, retain_mb: u64) -> Retention {
        let ledger_mb = (retain_mb / 4).max(16);
        Retention {
            client,
            ledger_bytes: if retain_mb == 0 {
                u64::MAX
            } else {
                ledger_mb << 20
            },
            keep: (retain_mb / ledger_mb).max(1) as usize,
            written: 0,
            closed: Default::default(),
            deletes: Vec::new(),
            ledgers: 1,
        }
    }

    /// Counts an append; true when the ledger is full and must roll.
    fn wrote(&mut self, bytes: u64) -> bool {
        self.written += bytes;
        self.written >= self.ledger_bytes
    }

    /// Takes the full ledger: closed in the background (its adds complete
    /// first), deleted once newer ones hold the retained size.
    fn rolled(&mut self, full: strata_ledger::LedgerWriter) {
        self.written = 0;
        self.ledgers += 1;
        let id = full.ledger_id();
        let closing = tokio::spawn(async move {
            if let Err(e) = full.close().await {
                tracing::warn!(error = %e, "closing a full benchmark ledger failed");
            }
        });
        self.closed.push_back((id, closing));
        while self.closed.len() > self.keep {
            let (id, closing) = self.closed.pop_front().expect("non-empty");
            let client = self.client.clone();
            self.deletes.push(tokio::spawn(async move {
                let _ = closing.await;
                client.delete(id).await?;
                Ok(())
            }));
        }
    }

    /// Waits for the background closes and deletes; returns the ledgers
    /// written and deleted.
    async fn finish(self) -> anyhow::Result<(u64, u64)> {
        for (_, closing) in self.closed {
            let _ = closing.await;
        }
        let deleted = self.deletes.len() as u64;
        for d in self.deletes {
            d.await??;
        }
        Ok((self.ledgers, deleted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_common::stages::{STAGES, Stage, Trace};

    /// An entry that passed `at` (ms after 0, by stage; `None`: not on its
    /// path).
    fn trace(entry_id: u64, at: [Option<u64>; STAGES]) -> Trace {
        Trace {
            entry_id,
            at: at.map(|a| a.map(|ms| ms * 1_000_000)),
        }
    }

    #[test]
    fn the_stages_report_pins_the_tail_on_the_step_that_made_it() {
        // 99 in-process entries at 1 ms each step; one whose journal took
        // 50 ms; one never acknowledged, left out.
        let mut traces: Vec<Trace> = (0..99u64)
            .map(|i| {
                let t0 = i * 10;
                trace(
                    i,
                    [
                        Some(t0),
                        None,
                        None,
                        Some(t0 + 1),
                        Some(t0 + 2),
                        None,
                        None,
                        Some(t0 + 3),
                    ],
                )
            })
            .collect();
        traces.push(trace(
            99,
            [Some(0), None, None, Some(1), Some(51), None, None, Some(52)],
        ));
        traces.push(trace(
            100,
            [Some(0), None, None, Some(1), None, None, None, None],
        ));
        let r = stages_report(&traces);
        assert_eq!(r.entries, 100);
        let names: Vec<(&str, &str)> = r.steps.iter().map(|s| (s.from, s.to)).collect();
        assert_eq!(
            names,
            vec![
                ("queued", "storing"),
                ("storing", "durable"),
                ("durable", "acknowledged")
            ]
        );
        assert_eq!(r.total_ms.p50_ms, 3.0);
        assert_eq!(r.total_ms.max_ms, 52.0);
        // The slowest 1 % is the one entry, and its time was the journal's.
        assert_eq!(r.total_ms.tail_mean_ms, 52.0);
        let journal = &r.steps[1];
        assert_eq!((journal.p50_ms, journal.max_ms), (1.0, 50.0));
        assert_eq!(journal.tail_mean_ms, 50.0);
        assert_eq!(r.steps[0].tail_mean_ms, 1.0);
        assert_eq!(Stage::Storing as usize, 3);
    }
}
