//! `strata perf`: benchmarks. Each one measures the raw disk in the same
//! run (see `raw`) and reports its results as ratios to it as well.
//!
//! - `bookie`: appends through the ledger client to in-process bookies;
//! - `produce`, `consume`, `e2e`: an OpenMessaging-Benchmark-style workload
//!   against a Pulsar service through `strata-client`;
//! - `topics`: broker memory per idle topic;
//! - `tenants`: a quiet tenant's publish latency with and without a noisy
//!   neighbour held by its namespace's rate limit and backlog quota.

mod admin;
mod bookie;
mod cold;
mod connect;
mod cpu;
mod evidence;
mod flood;
mod floor;
mod pacer;
mod priority;
mod raw;
mod relay;
mod report;
mod tenants;
mod topics;
mod workers;
mod workload;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum PerfCommand {
    /// Append through the ledger client to bookies on DIR, with fsync on.
    Bookie(Box<bookie::BookiePerfArgs>),
    /// Publish to topics; report throughput and publish latency.
    Produce(Box<workload::WorkloadArgs>),
    /// Consume from topics; report throughput (and end-to-end latency from the payloads' timestamps).
    Consume(Box<workload::WorkloadArgs>),
    /// Publish and consume at once; report throughput, publish and end-to-end latency.
    E2e(Box<workload::WorkloadArgs>),
    /// Load many idle topics; report broker memory per topic.
    Topics(Box<topics::TopicsArgs>),
    /// A quiet tenant's publish latency alone and next to a noisy tenant
    /// flooding past its rate limit and backlog quota.
    Tenants(Box<tenants::TenantsArgs>),
    /// Write, offload and read back from the cold tier; compare with raw GETs.
    ColdRead(Box<cold::ColdReadArgs>),
}

pub async fn run(cmd: PerfCommand) -> anyhow::Result<()> {
    match cmd {
        PerfCommand::Bookie(args) => bookie::run(*args).await,
        PerfCommand::Produce(args) => workload::run(workload::Mode::Produce, *args).await,
        PerfCommand::Consume(args) => workload::run(workload::Mode::Consume, *args).await,
        PerfCommand::E2e(args) => workload::run(workload::Mode::EndToEnd, *args).await,
        PerfCommand::Topics(args) => topics::run(*args).await,
        PerfCommand::Tenants(args) => tenants::run(*args).await,
        PerfCommand::ColdRead(args) => cold::run(*args).await,
    }
}
