//! `strata offloader`: the offload service on its own, next to brokers and
//! bookies that share its metadata store (etcd). Several may run: they
//! share the topics through lock keys in the metadata store.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use strata_ledger::{ClientConfig, LedgerClient};
use strata_offloader::metrics::ColdMetrics;
use strata_offloader::registry::Usage;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cold::{self, ColdArgs};
use crate::metrics_http::MetricsServer;

#[derive(Args, Debug)]
pub struct OffloaderArgs {
    /// The cluster's metadata store (`etcd://host:2379,...`).
    #[arg(long, env = "STRATA_METADATA_URL")]
    pub metadata_url: String,
    /// Name of this offloader in records and locks (default: random).
    #[arg(long, env = "STRATA_OFFLOADER_ID")]
    pub id: Option<String>,
    /// Serve Prometheus metrics on this address (`host:port`).
    #[arg(long, env = "STRATA_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    #[command(flatten)]
    pub cold: ColdArgs,
}

pub async fn run(args: OffloaderArgs) -> anyhow::Result<()> {
    let url = args.cold.object_store.clone().context(
        "--object-store is required (e.g. s3://bucket/prefix?endpoint=http://127.0.0.1:9000)",
    )?;
    let meta = strata_common::metadata::open(&args.metadata_url)
        .await
        .with_context(|| format!("opening the metadata store {}", args.metadata_url))?;
    let client = LedgerClient::new(meta.clone(), ClientConfig::default());
    let stores = cold::open_stores(&url, &args.cold).await?;
    let usage = Usage::new();
    let cancel = CancellationToken::new();
    let offloader = cold::start_offloader(
        &args.cold,
        args.id.clone(),
        meta,
        client.clone(),
        stores,
        usage.clone(),
        cancel.clone(),
    )
    .await?;
    let metrics = match &args.metrics_listen {
        Some(listen) => {
            let sources: Vec<Arc<dyn strata_common::metrics::MetricsSource>> = vec![
                Arc::new(ColdMetrics {
                    offloader: Some(offloader.metrics()),
                    usage,
                    tier: None,
                }),
                client.metrics_source(),
                Arc::new(strata_common::metrics::ProcessMetrics),
            ];
            let server = MetricsServer::start(listen, sources).await?;
            println!("offloader metrics URL: http://{}/metrics", server.address);
            Some(server)
        }
        None => None,
    };
    // Tests and scripts wait for this line.
    println!("offloader running (store {url})");
    crate::shutdown_signal().await;
    info!("shutting down");
    cancel.cancel();
    if let Some(m) = metrics {
        m.stop().await;
    }
    Ok(())
}
