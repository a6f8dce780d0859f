//! The admin HTTP server: Pulsar's `/admin/v2` REST API (clusters, tenants,
//! namespaces, persistent topics, subscriptions, stats) and the Prometheus
//! `/metrics` page, over HTTP and, when configured, HTTPS (Pulsar's
//! `webServicePortTls`): one router behind both ports.
//!
//! Handlers only parse requests and shape answers; what they do lives in
//! the service layer (`crate::resources`, `crate::stats`). Every failure is
//! an HTTP status with `{"reason": "..."}` ([`error::ApiError`]); user
//! mistakes are 4xx and name what was wrong. With authentication on, every
//! request but the health check and `/metrics` needs a token and a role
//! allowed to make it (`crate::auth::http`).

mod error;
mod limits;
mod namespaces;
mod offload;
mod permissions;
mod stats;
mod subscriptions;
mod tenants;
mod topics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use strata_common::metrics::{Exposition, MetricsSource, ProcessMetrics};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
use error::{ApiResult, P};

use crate::resources::CLUSTER;
use crate::service::BrokerService;
use crate::tls::{TlsAcceptor, TlsConfig, TlsConnectInfo, TlsListener};

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub service: Arc<BrokerService>,
    /// Rendered in order on `/metrics` (the broker's own, the bookie's, the ledger client's).
    pub metrics: Arc<Vec<Arc<dyn MetricsSource>>>,
    /// `http://host:port` of this admin server, as clients reach it.
    pub admin_url: Arc<str>,
    /// `https://host:port`, when it also serves HTTPS.
    pub admin_url_tls: Option<Arc<str>>,
}

pub struct AdminServer {
    pub address: SocketAddr,
    /// The HTTPS port's address, when there is one.
    pub address_tls: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

/// The admin server's HTTPS port: where it binds and its TLS settings.
pub struct AdminTls<'a> {
    pub listen: &'a str,
    pub config: &'a TlsConfig,
}

impl AdminServer {
    pub async fn start(
        listen: &str,
        service: Arc<BrokerService>,
        metrics: Vec<Arc<dyn MetricsSource>>,
        cancel: CancellationToken,
    ) -> anyhow::Result<AdminServer> {
        AdminServer::start_with_tls(listen, None, service, metrics, cancel).await
    }

    /// As [`AdminServer::start`], also serving HTTPS when `tls` is given.
    pub async fn start_with_tls(
        listen: &str,
        tls: Option<AdminTls<'_>>,
        service: Arc<BrokerService>,
        metrics: Vec<Arc<dyn MetricsSource>>,
        cancel: CancellationToken,
    ) -> anyhow::Result<AdminServer> {
        // The TLS files first: a bad one stops the start-up, naming it. Only
        // HTTP/1.1 is offered (the router speaks HTTP/1).
        let tls = match tls {
            Some(t) => Some((t.listen, TlsAcceptor::new(t.config, &[b"http/1.1"])?)),
            None => None,
        };
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind the admin port {listen}: {e}"))?;
        let address = listener.local_addr()?;
        let tls = match tls {
            Some((listen, acceptor)) => {
                let l = TcpListener::bind(listen).await.map_err(|e| {
                    anyhow::anyhow!("cannot bind the admin HTTPS port {listen}: {e}")
                })?;
                Some(TlsListener::new(
                    l,
                    acceptor,
                    "admin HTTPS",
                    cancel.clone(),
                )?)
            }
            None => None,
        };
        let address_tls = match &tls {
            Some(l) => Some(axum::serve::Listener::local_addr(l)?),
            None => None,
        };
        // The host clients use for the broker is the one they use for us.
        let host = service
            .service_url
            .trim_start_matches("pulsar://")
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| "127.0.0.1".into());
        let state = AdminState {
            service,
            metrics: Arc::new(metrics),
            admin_url: format!("http://{host}:{}", address.port()).into(),
            admin_url_tls: address_tls.map(|a| format!("https://{host}:{}", a.port()).into()),
        };
        let app = router(state);
        let mut tasks = Vec::new();
        if let Some(listener) = tls {
            // Requests over HTTPS carry their client certificate's role
            // (for the tls authentication provider).
            let app = app
                .clone()
                .into_make_service_with_connect_info::<TlsConnectInfo>();
            let cancel = cancel.clone();
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { cancel.cancelled().await })
                    .await;
            }));
        }
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { cancel.cancelled().await })
                .await;
        }));
        Ok(AdminServer {
            address,
            address_tls,
            tasks,
        })
    }

    pub async fn stop(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/v2/brokers/health", get(|| async { "ok" }))
        .route("/metrics", get(render_metrics))
        .route("/admin/v2/clusters", get(|| async { Json(vec![CLUSTER]) }))
        .route("/admin/v2/clusters/{cluster}", get(get_cluster))
        .merge(tenants::routes())
        .merge(namespaces::routes())
        .merge(limits::routes())
        .merge(topics::routes())
        .merge(stats::routes())
        .merge(subscriptions::routes())
        .merge(offload::routes())
        .merge(permissions::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::http::admin_guard,
        ))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "method {} is not allowed on {}",
        req.method(),
        req.uri().path()
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterData {
    service_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_url_tls: Option<String>,
    broker_service_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_service_url_tls: Option<String>,
}

async fn get_cluster(
    State(state): State<AdminState>,
    P(cluster): P<String>,
) -> ApiResult<Json<ClusterData>> {
    if cluster != CLUSTER {
        return Err(ApiError::NotFound(format!(
            "cluster {cluster} does not exist (this cluster is {CLUSTER})"
        )));
    }
    Ok(Json(ClusterData {
        service_url: state.admin_url.to_string(),
        service_url_tls: state.admin_url_tls.as_deref().map(str::to_string),
        broker_service_url: state.service.service_url.clone(),
        broker_service_url_tls: state.service.service_url_tls.clone(),
    }))
}

async fn render_metrics(State(state): State<AdminState>) -> axum::response::Response {
    // With many topics the page is large: build it off the reactor.
    let page = tokio::task::spawn_blocking(move || {
        let mut out = Exposition::default();
        ProcessMetrics.render(&mut out);
        for source in state.metrics.iter() {
            source.render(&mut out);
        }
        out.finish()
    })
    .await;
    match page {
        Ok(page) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering the metrics failed: {e}"),
        )
            .into_response(),
    }
}
