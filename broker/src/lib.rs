//! The Strata broker: the Pulsar binary protocol over managed ledgers.
//!
//! [`Broker::start`] binds the protocol listener (and the `pulsar+ssl://`
//! one when configured, see [`tls`]) and serves clients until
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
pub mod tls;
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

use crate::connection::Transport;
use crate::ownership::{BundleOwner, Ownership};
use crate::tls::TlsAcceptor;

pub struct Broker {
    pub service: Arc<BrokerService>,
    /// The address the listener is bound to.
    pub address: SocketAddr,
    /// The address the TLS listener is bound to, when there is one.
    pub address_tls: Option<SocketAddr>,
    cancel: CancellationToken,
    accept: Vec<JoinHandle<()>>,
}

impl Broker {
    pub async fn start(
        config: BrokerConfig,
        store: Arc<dyn MetadataStore>,
        client: LedgerClient,
        cold: Option<Arc<strata_offloader::tier::Tier>>,
    ) -> anyhow::Result<Broker> {
        // The TLS files are read first: a bad one stops the start-up with
        // an error naming it.
        let tls = match (&config.listen_tls, &config.tls) {
            (None, _) => None,
            (Some(_), None) => anyhow::bail!(
                "the broker TLS port needs a certificate and a key (--tls-cert-file, --tls-key-file)"
            ),
            (Some(listen), Some(tls)) => Some((listen.clone(), TlsAcceptor::new(tls, &[])?)),
        };
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind the broker port {}: {e}", config.listen))?;
        let address = listener.local_addr()?;
        let tls = match tls {
            Some((listen, acceptor)) => {
                let l = TcpListener::bind(&listen).await.map_err(|e| {
                    anyhow::anyhow!("cannot bind the broker TLS port {listen}: {e}")
                })?;
                Some((l, acceptor))
            }
            None => None,
        };
        let address_tls = match &tls {
            Some((l, _)) => Some(l.local_addr()?),
            None => None,
        };
        let host = match &config.advertised_host {
            Some(h) => h.clone(),
            None if address.ip().is_unspecified() => "127.0.0.1".to_string(),
            None => address.ip().to_string(),
        };
        let service_url = format!("pulsar://{host}:{}", address.port());
        let service_url_tls = address_tls.map(|a| format!("pulsar+ssl://{host}:{}", a.port()));
        let broker_id = format!("{host}:{}", address.port());
        let session = store.session(config.session_ttl).await?;
        let ownership = Ownership::new(
            store.clone(),
            session,
            BundleOwner {
                broker_id: broker_id.clone(),
                service_url: service_url.clone(),
                service_url_tls: service_url_tls.clone(),
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
        auth::check_tls_provider(&config.auth, config.tls.as_ref())?;
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
        let mut accept = vec![tokio::spawn(accept_loop(
            listener,
            service.clone(),
            cancel.clone(),
        ))];
        info!(%address, url = %service.service_url, "broker listening");
        if let Some((listener, acceptor)) = tls {
            accept.push(tokio::spawn(accept_loop_tls(
                listener,
                acceptor,
                service.clone(),
                cancel.clone(),
            )));
            if let (Some(address), Some(url)) = (address_tls, &service.service_url_tls) {
                info!(%address, %url, "broker listening (TLS)");
            }
        }
        Ok(Broker {
            service,
            address,
            address_tls,
            cancel,
            accept,
        })
    }

    pub fn service_url(&self) -> &str {
        &self.service.service_url
    }

    /// `pulsar+ssl://host:port`, when the broker has a TLS listener.
    pub fn service_url_tls(&self) -> Option<&str> {
        self.service.service_url_tls.as_deref()
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
        for accept in self.accept {
            let _ = accept.await;
        }
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
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection::serve(
                    service.clone(),
                    stream,
                    peer,
                    Transport::default(),
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

/// The `pulsar+ssl://` listener: each connection's handshake runs in that
/// connection's own task (bounded by the handshake timeout), so a client
/// that fails or stalls it holds up nobody.
async fn accept_loop_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
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
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let service = service.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    let stream = tokio::select! {
                        s = acceptor.accept(stream) => s,
                        _ = cancel.cancelled() => return,
                    };
                    let stream = match stream {
                        Ok(s) => s,
                        Err(e) => {
                            info!(%peer, error = %e, "TLS handshake failed on the broker TLS port");
                            return;
                        }
                    };
                    let transport = Transport {
                        tls: true,
                        peer_cert_role: tls::peer_cert_role(stream.get_ref().1),
                    };
                    connection::serve(service, stream, peer, transport, cancel).await;
                });
            }
            Err(e) => {
                warn!(error = %e, "accept failed on the broker TLS port");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
