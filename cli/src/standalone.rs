//! `strata standalone`: a bookie and a broker in one process, with the
//! embedded RocksDB metadata store, for development and single-node use.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use strata_bookie::{Bookie, BookieConfig};
use strata_broker::admin::AdminServer;
use strata_broker::config::AutoTopicCreationType;
use strata_broker::{Broker, BrokerConfig};
use strata_common::names::NamespaceName;
use strata_ledger::{ClientConfig, LedgerClient};
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Args, Debug)]
pub struct StandaloneArgs {
    /// Where everything is kept (metadata, journal, entry logs).
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address the broker and admin ports bind.
    #[arg(long, env = "STRATA_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: String,
    /// Host name clients are told to connect to.
    #[arg(long, env = "STRATA_ADVERTISED_ADDRESS", default_value = "127.0.0.1")]
    pub advertised_address: String,
    /// Pulsar protocol port (0: any free port).
    #[arg(long, env = "STRATA_BROKER_PORT", default_value_t = 6650)]
    pub broker_port: u16,
    /// Admin HTTP port (0: any free port).
    #[arg(long, env = "STRATA_ADMIN_PORT", default_value_t = 8080)]
    pub admin_port: u16,
    /// Port of the embedded bookie on 127.0.0.1. Ledgers name their bookie
    /// by address, so the port chosen at the first start is remembered in
    /// the data directory and reused; give it only to move it.
    #[arg(long, env = "STRATA_BOOKIE_PORT")]
    pub bookie_port: Option<u16>,
    /// What a topic used for the first time becomes: one topic
    /// (`non-partitioned`) or a partitioned topic (`partitioned`) of
    /// --default-num-partitions partitions.
    #[arg(
        long,
        env = "STRATA_AUTO_TOPIC_CREATION_TYPE",
        default_value = "non-partitioned"
    )]
    pub auto_topic_creation_type: AutoTopicCreationArg,
    /// Partitions of a partitioned topic created on first use.
    #[arg(long, env = "STRATA_DEFAULT_NUM_PARTITIONS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub default_num_partitions: u32,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum AutoTopicCreationArg {
    NonPartitioned,
    Partitioned,
}

const BOOKIE_PORT_FILE: &str = "bookie.port";

fn remembered_port(dir: &Path) -> anyhow::Result<Option<u16>> {
    let path = dir.join(BOOKIE_PORT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim().parse().with_context(|| {
            format!("{} does not hold a port number", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let metadata_dir = dir.join("metadata");
    let store = strata_common::metadata::open(&format!("rocksdb://{}", metadata_dir.display()))
        .await
        .context("opening the metadata store")?;

    let bookie_port = match args.bookie_port {
        Some(p) => p,
        None => remembered_port(dir)?.unwrap_or(0),
    };
    let bookie = Bookie::start_with_store(
        BookieConfig {
            listen: format!("127.0.0.1:{bookie_port}"),
            data_dir: dir.join("bookie"),
            ..BookieConfig::default()
        },
        store.clone(),
    )
    .await
    .context("starting the bookie")?;
    std::fs::write(
        dir.join(BOOKIE_PORT_FILE),
        bookie.address.port().to_string(),
    )
    .context("remembering the bookie port")?;

    let client = LedgerClient::new(store.clone(), ClientConfig::default());
    let ledger_metrics = client.metrics_source();
    let broker = Broker::start(
        BrokerConfig {
            listen: format!("{}:{}", args.bind_address, args.broker_port),
            advertised_host: Some(args.advertised_address.clone()),
            auto_topic_creation_type: match args.auto_topic_creation_type {
                AutoTopicCreationArg::NonPartitioned => AutoTopicCreationType::NonPartitioned,
                AutoTopicCreationArg::Partitioned => AutoTopicCreationType::Partitioned,
            },
            default_num_partitions: args.default_num_partitions,
            ..BrokerConfig::default()
        },
        store.clone(),
        client,
    )
    .await?;
    let public = NamespaceName::parse("public/default").expect("valid name");
    broker
        .service
        .ensure_namespace(&public)
        .await
        .context("creating public/default")?;
    let admin_cancel = CancellationToken::new();
    let admin = AdminServer::start(
        &format!("{}:{}", args.bind_address, args.admin_port),
        broker.service.clone(),
        vec![
            broker.metrics_source(),
            ledger_metrics,
            bookie.metrics_source(),
            broker.topic_metrics(),
        ],
        admin_cancel.clone(),
    )
    .await?;

    // Tests and scripts wait for these lines.
    println!("service URL: {}", broker.service_url());
    println!(
        "admin URL: http://{}:{}",
        args.advertised_address,
        admin.address.port()
    );
    println!("strata standalone ready");

    crate::shutdown_signal().await;
    info!("shutting down");
    admin_cancel.cancel();
    admin.stop().await;
    broker.shutdown().await;
    bookie.shutdown().await?;
    info!("stopped");
    Ok(())
}
