//! `strata`: the one Strata binary.

mod admin;
mod auth;
mod client_args;
mod cold;
mod limits_args;
mod metrics_http;
mod offloader;
mod perf;
mod standalone;
mod tls;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strata_bookie::{Bookie, BookieArgs};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: Pulsar-compatible streaming with tiered storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker and a bookie in one process (development, single node).
    Standalone(Box<standalone::StandaloneArgs>),
    /// Run a bookie (storage node).
    Bookie(Box<BookieArgs>),
    /// Run the offload service alone (moves aged ledgers to object storage).
    Offloader(Box<offloader::OffloaderArgs>),
    /// Benchmarks.
    #[command(subcommand)]
    Perf(perf::PerfCommand),
    /// Administer a broker through its admin REST API (like pulsar-admin).
    Admin(Box<admin::AdminArgs>),
}

/// Tells glibc's allocator to keep large freed chunks for reuse. The read
/// and write paths allocate a buffer per frame, entry or GET (64 KiB to a few
/// MiB); by default glibc maps chunks above a threshold of its own and trims
/// the heap's free top past twice that, so such buffers keep going back to
/// the kernel and each new one costs a page fault and zeroing per 4 KiB page
/// (measured: about a tenth of a consumer's CPU). Chunks up to 32 MiB now
/// come from the heap, which is trimmed only past 128 MiB free at its top.
fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

fn main() -> ExitCode {
    keep_freed_buffers();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("STRATA_LOG")
                // rustls warns for every client that sends an IP address
                // as SNI (the C++ client does); failed handshakes are
                // logged by the broker.
                .unwrap_or_else(|_| EnvFilter::new("info,rustls=error")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    // A client command: its own small runtime and plain error output.
    let command = match cli.command {
        Command::Admin(args) => return admin::main(*args),
        other => other,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Standalone(args) => standalone::run(*args).await,
            Command::Bookie(args) => run_bookie(*args).await,
            Command::Offloader(args) => offloader::run(*args).await,
            Command::Perf(cmd) => perf::run(cmd).await,
            Command::Admin(_) => unreachable!("handled before the runtime starts"),
        }
    });
    // Bounded: foyer 0.22 can deadlock while the runtime drops its tasks (a
    // disk-cache reclaim spawned during shutdown is dropped at once, and its
    // drop takes a lock its spawner still holds). Everything that matters
    // was closed and flushed before block_on returned.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_bookie(args: BookieArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    let metrics_listen = config.metrics_listen.clone();
    let bookie = Bookie::start(config).await?;
    let metrics = match &metrics_listen {
        Some(listen) => {
            match metrics_http::MetricsServer::start(listen, vec![bookie.metrics_source()]).await {
                Ok(server) => {
                    println!("bookie metrics URL: http://{}/metrics", server.address);
                    Some(server)
                }
                Err(e) => {
                    // Close the journal and deregister before reporting.
                    bookie.shutdown().await?;
                    return Err(e);
                }
            }
        }
        None => None,
    };
    // Tests and scripts wait for this line to know the bookie is serving.
    println!(
        "bookie listening on {} (id {})",
        bookie.address, bookie.bookie_id
    );
    shutdown_signal().await;
    info!("shutting down");
    if let Some(m) = metrics {
        m.stop().await;
    }
    bookie.shutdown().await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the process");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
