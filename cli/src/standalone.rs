//! `strata standalone`: a bookie, a broker and an offloader in one process,
//! with the embedded RocksDB metadata store and a local directory (or any
//! S3 store) as the cold tier, for development and single-node use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use strata_bookie::{Bookie, BookieConfig};
use strata_broker::admin::{AdminServer, AdminTls};
use strata_broker::config::AutoTopicCreationType;
use strata_broker::{Broker, BrokerConfig};
use strata_common::names::NamespaceName;
use strata_ledger::{ClientConfig, LedgerClient};
use strata_managed_ledger::ManagedLedgerConfig;
use strata_offloader::metrics::ColdMetrics;
use strata_offloader::registry::Usage;
use tokio_util::sync::CancellationToken;

use crate::cold;
use tracing::{info, warn};

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
    /// The embedded bookie's settings, as a `strata bookie --config` TOML
    /// file (journal, caches, disk-usage watermark, a journal_dir on its own
    /// disk...). Its address, data directory and metadata store are the
    /// standalone's and may not be set there.
    #[arg(long, env = "STRATA_BOOKIE_CONFIG")]
    pub bookie_config: Option<PathBuf>,
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
    /// A ledger rolls over after this many entries (Pulsar's
    /// managedLedgerMaxEntriesPerLedger)...
    #[arg(
        long,
        env = "STRATA_MANAGED_LEDGER_MAX_ENTRIES_PER_LEDGER",
        default_value_t = 50_000
    )]
    pub managed_ledger_max_entries_per_ledger: u64,
    /// ...or this many MiB (managedLedgerMaxSizePerLedgerMbytes)...
    #[arg(
        long,
        env = "STRATA_MANAGED_LEDGER_MAX_SIZE_PER_LEDGER_MB",
        default_value_t = 1024
    )]
    pub managed_ledger_max_size_per_ledger_mb: u64,
    /// ...but not before it is this old (managedLedgerMinLedgerRolloverTimeMinutes)...
    #[arg(long, env = "STRATA_MANAGED_LEDGER_MIN_LEDGER_ROLLOVER_TIME", default_value = "10s",
          value_parser = humantime::parse_duration)]
    pub managed_ledger_min_ledger_rollover_time: std::time::Duration,
    /// ...and at the latest once it is this old (managedLedgerMaxLedgerRolloverTimeMinutes).
    #[arg(long, env = "STRATA_MANAGED_LEDGER_MAX_LEDGER_ROLLOVER_TIME", default_value = "4h",
          value_parser = humantime::parse_duration)]
    pub managed_ledger_max_ledger_rollover_time: std::time::Duration,
    #[command(flatten)]
    pub cold: crate::cold::ColdArgs,
    #[command(flatten)]
    pub limits: crate::limits_args::LimitsArgs,
    #[command(flatten)]
    pub auth: crate::auth::AuthArgs,
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
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

/// The embedded bookie's settings: `path`'s, or the defaults. The settings
/// the standalone decides itself are refused rather than silently replaced.
fn embedded_bookie_config(path: Option<&Path>) -> anyhow::Result<BookieConfig> {
    let Some(path) = path else {
        return Ok(BookieConfig::default());
    };
    let config = BookieConfig::from_file(path)?;
    let default = BookieConfig::default();
    let theirs = [
        ("listen", config.listen != default.listen, "--bookie-port"),
        (
            "advertised_address",
            config.advertised_address.is_some(),
            "--bookie-port",
        ),
        (
            "data_dir",
            config.data_dir != default.data_dir,
            "--data-dir",
        ),
        (
            "metadata_url",
            config.metadata_url.is_some(),
            "DATA_DIR/metadata",
        ),
    ];
    if let Some((key, _, instead)) = theirs.iter().find(|(_, set, _)| *set) {
        anyhow::bail!(
            "{}: `{key}` is the standalone's to set (from {instead}), not the bookie config's",
            path.display()
        );
    }
    Ok(config)
}

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    // Bad auth or TLS settings stop the start before anything is opened.
    let auth = args.auth.to_config();
    strata_broker::auth::AuthService::new(&auth).context("authentication settings")?;
    let tls = args.tls.config()?;
    strata_broker::auth::check_tls_provider(&auth, tls.as_ref())
        .context("authentication settings")?;
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    // Held until the process ends: a second standalone on this directory
    // stops here, before it opens anything.
    let _lock = strata_common::dirlock::DirLock::acquire(dir, "data")?;
    let metadata_dir = dir.join("metadata");
    let store = strata_common::metadata::open(&format!("rocksdb://{}", metadata_dir.display()))
        .await
        .context("opening the metadata store")?;

    let bookie_port = match args.bookie_port {
        Some(p) => p,
        None => remembered_port(dir)?.unwrap_or(0),
    };
    let bookie_config = embedded_bookie_config(args.bookie_config.as_deref())?;
    let bookie = Bookie::start_with_store(
        BookieConfig {
            listen: format!("127.0.0.1:{bookie_port}"),
            data_dir: dir.join("bookie"),
            ..bookie_config
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
    client.register_local_bookie(
        &bookie.bookie_id,
        Arc::new(EmbeddedBookie(bookie.storage.clone())),
    );
    let ledger_metrics = client.metrics_source();

    // The cold tier: a local directory unless told otherwise.
    let cold_url = match &args.cold.object_store {
        Some(url) => url.clone(),
        None => {
            let dir =
                std::path::absolute(dir.join("cold")).context("locating the data directory")?;
            format!("file://{}", dir.display())
        }
    };
    let stores = cold::open_stores(&cold_url, &args.cold).await?;
    let usage = Usage::new();
    let cache_dir = dir.join("cold-cache");
    let cache_disk = args.cold.cold_cache_disk_bytes(&cache_dir);
    let tier = cold::start_tier(
        &args.cold,
        store.clone(),
        stores.clone(),
        usage.clone(),
        &cache_dir,
        cache_disk,
    )
    .await?;
    let offload_cancel = CancellationToken::new();
    let offloader = cold::start_offloader(
        &args.cold,
        None,
        store.clone(),
        client.clone(),
        stores,
        usage.clone(),
        offload_cancel.clone(),
    )
    .await?;
    tier.spawn_storage_refresh(std::time::Duration::from_secs(15), offload_cancel.clone());
    let cold_metrics = Arc::new(ColdMetrics {
        offloader: Some(offloader.metrics()),
        usage,
        tier: Some(tier.clone()),
    });
    let broker = Broker::start(
        BrokerConfig {
            listen: format!("{}:{}", args.bind_address, args.broker_port),
            listen_tls: args
                .tls
                .broker_port_tls
                .map(|p| format!("{}:{p}", args.bind_address)),
            tls: tls.clone(),
            advertised_host: Some(args.advertised_address.clone()),
            auth: args.auth.to_config(),
            auto_topic_creation_type: match args.auto_topic_creation_type {
                AutoTopicCreationArg::NonPartitioned => AutoTopicCreationType::NonPartitioned,
                AutoTopicCreationArg::Partitioned => AutoTopicCreationType::Partitioned,
            },
            default_num_partitions: args.default_num_partitions,
            managed_ledger: ManagedLedgerConfig {
                max_entries_per_ledger: args.managed_ledger_max_entries_per_ledger,
                max_ledger_size_bytes: args.managed_ledger_max_size_per_ledger_mb << 20,
                min_ledger_age_for_rollover: args.managed_ledger_min_ledger_rollover_time,
                max_ledger_age: args.managed_ledger_max_ledger_rollover_time,
                ..ManagedLedgerConfig::default()
            },
            ..args.limits.apply(BrokerConfig::default())
        },
        store.clone(),
        client,
        Some(tier.clone()),
    )
    .await?;
    let public = NamespaceName::parse("public/default").expect("valid name");
    broker
        .service
        .ensure_namespace(&public)
        .await
        .context("creating public/default")?;
    let admin_cancel = CancellationToken::new();
    let admin_listen_tls = args
        .tls
        .admin_port_tls
        .map(|p| format!("{}:{p}", args.bind_address));
    let admin = AdminServer::start_with_tls(
        &format!("{}:{}", args.bind_address, args.admin_port),
        match (&admin_listen_tls, &tls) {
            (Some(listen), Some(config)) => Some(AdminTls { listen, config }),
            _ => None,
        },
        broker.service.clone(),
        vec![
            broker.metrics_source(),
            ledger_metrics,
            bookie.metrics_source(),
            broker.topic_metrics(),
            cold_metrics,
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
    if let Some(url) = broker.service_url_tls() {
        println!("service URL TLS: {url}");
    }
    if let Some(address) = admin.address_tls {
        println!(
            "admin URL TLS: https://{}:{}",
            args.advertised_address,
            address.port()
        );
    }
    println!("cold tier: {cold_url}");
    println!(
        "cold cache: {} MiB memory, {}",
        args.cold.cold_cache_memory_bytes() >> 20,
        match cache_disk {
            0 => "no disk".to_string(),
            b => format!("{} MiB disk", b >> 20),
        }
    );
    println!("strata standalone ready");

    crate::shutdown_signal().await;
    info!("shutting down");
    admin_cancel.cancel();
    admin.stop().await;
    offload_cancel.cancel();
    broker.shutdown().await;
    // What the cold cache holds in memory goes to its disk tier, so a
    // restart reads it from there instead of the object store.
    if let Err(e) = tier.reader().close().await {
        warn!(error = %e, "closing the cold block cache");
    }
    bookie.shutdown().await?;
    info!("stopped");
    Ok(())
}

/// The standalone's own bookie, taking the ledger client's adds in-process.
pub(crate) struct EmbeddedBookie(pub(crate) Arc<strata_bookie::storage::LedgerStorage>);

impl strata_ledger::bookie_client::LocalBookie for EmbeddedBookie {
    fn add(
        &self,
        adds: Vec<strata_proto::bookie::AddEntry>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Vec<strata_proto::bookie::AddResult>> + Send>,
    > {
        let storage = self.0.clone();
        Box::pin(async move { strata_bookie::service::add_many(&storage, adds).await })
    }

    fn read(
        &self,
        req: strata_proto::bookie::ReadRequest,
    ) -> strata_ledger::bookie_client::LocalRead {
        let storage = self.0.clone();
        Box::pin(async move { strata_bookie::service::read_entries(&storage, req).await })
    }
}
