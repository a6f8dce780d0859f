//! The Strata broker: the Pulsar binary protocol over managed ledgers.
//!
//! [`Broker::start`] binds the protocol listener and serves clients until
//! [`Broker::shutdown`]. Topics are loaded on first use: their bundle's
//! ownership is taken in the metadata store, their managed ledger opened
//! (recovering the last ledger), their durable subscriptions restored.

pub mod admin;
pub mod auth;
pub use strata_proto::frame as codec;
mod commands;
pub mod config;
mod connection;
mod consumer;
pub mod error;
pub mod limits;
pub mod metrics;
mod outbound;
pub mod ownership;
pub mod resources;
pub mod service;
pub mod stats;
mod subscription;
mod topic;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strata_common::metadata::MetadataStore;
use strata_ledger::LedgerClient;
use strata_managed_ledger::ManagedLedgerFactory;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::BrokerConfig;
pub use error::BrokerError;
pub use service::BrokerService;

use crate::ownership::{BundleOwner, Ownership};

pub struct Broker {
    pub service: Arc<BrokerService>,
    /// The address the listener is bound to.
    pub address: SocketAddr,
    cancel: CancellationToken,
    accept: JoinHandle<()>,
}

impl Broker {
    pub async fn start(
        config: BrokerConfig,
        store: Arc<dyn MetadataStore>,
        client: LedgerClient,
        cold: Option<Arc<strata_offloader::tier::Tier>>,
    ) -> anyhow::Result<Broker> {
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind the broker port {}: {e}", config.listen))?;
        let address = listener.local_addr()?;
        let host = match &config.advertised_host {
            Some(h) => h.clone(),
            None if address.ip().is_unspecified() => "127.0.0.1".to_string(),
            None => address.ip().to_string(),
        };
        let service_url = format!("pulsar://{host}:{}", address.port());
        let broker_id = format!("{host}:{}", address.port());
        let session = store.session(config.session_ttl).await?;
        let ownership = Ownership::new(
            store.clone(),
            session,
            BundleOwner {
                broker_id: broker_id.clone(),
                service_url: service_url.clone(),
            },
            config.bundles_per_namespace,
        );
        let factory = match &cold {
            Some(tier) => ManagedLedgerFactory::with_cold_tier(
                client,
                config.managed_ledger.clone(),
                config.cache_bytes,
                tier.clone(),
            ),
            None => {
                ManagedLedgerFactory::new(client, config.managed_ledger.clone(), config.cache_bytes)
            }
        };
        let stats_interval = config.stats_interval;
        let auth = auth::AuthService::new(&config.auth)?;
        let service = Arc::new(
            BrokerService::new(
                Arc::new(config),
                store,
                factory,
                ownership,
                service_url,
                broker_id,
                cold,
            )
            .with_auth(auth),
        );
        let cancel = CancellationToken::new();
        tokio::spawn(stats::sample_loop(
            Arc::downgrade(&service),
            stats_interval,
            cancel.clone(),
        ));
        tokio::spawn(limits::policy_loop(
            Arc::downgrade(&service),
            cancel.clone(),
        ));
        tokio::spawn(limits::policy_watch(
            Arc::downgrade(&service),
            cancel.clone(),
        ));
        let accept = tokio::spawn(accept_loop(listener, service.clone(), cancel.clone()));
        info!(%address, url = %service.service_url, "broker listening");
        Ok(Broker {
            service,
            address,
            cancel,
            accept,
        })
    }

    pub fn service_url(&self) -> &str {
        &self.service.service_url
    }

    /// The broker's metrics (publish latency, connections, lookups) as a
    /// `/metrics` source.
    pub fn metrics_source(&self) -> Arc<dyn strata_common::metrics::MetricsSource> {
        self.service.metrics.clone()
    }

    /// The per-topic and per-namespace metrics (`strata_broker_topic_*`...)
    /// for the `/metrics` page.
    pub fn topic_metrics(&self) -> Arc<dyn strata_common::metrics::MetricsSource> {
        Arc::new(stats::TopicMetrics::new(Arc::downgrade(&self.service)))
    }

    /// Closes every connection, persists cursors and closes ledgers.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.accept.await;
        // Give connection tasks a moment to notice and clean up.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.service.shutdown().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    service: Arc<BrokerService>,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(connection::serve(
                    service.clone(),
                    stream,
                    peer,
                    cancel.clone(),
                ));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
