//! The admin HTTP server (Pulsar's `/admin/v2` paths) and the Prometheus
//! `/metrics` page.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use strata_common::metrics::{Exposition, MetricsSource, ProcessMetrics};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::service::BrokerService;

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub service: Arc<BrokerService>,
    /// Rendered in order on `/metrics` (the broker's own, the bookie's, the ledger client's).
    pub metrics: Arc<Vec<Arc<dyn MetricsSource>>>,
}

pub struct AdminServer {
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl AdminServer {
    pub async fn start(
        listen: &str,
        service: Arc<BrokerService>,
        metrics: Vec<Arc<dyn MetricsSource>>,
        cancel: CancellationToken,
    ) -> anyhow::Result<AdminServer> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind the admin port {listen}: {e}"))?;
        let address = listener.local_addr()?;
        let state = AdminState {
            service,
            metrics: Arc::new(metrics),
        };
        let app = Router::new()
            .route("/admin/v2/brokers/health", get(|| async { "ok" }))
            .route("/metrics", get(render_metrics))
            .with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { cancel.cancelled().await })
                .await;
        });
        Ok(AdminServer { address, task })
    }

    pub async fn stop(self) {
        let _ = self.task.await;
    }
}

async fn render_metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let mut out = Exposition::default();
    ProcessMetrics.render(&mut out);
    for source in state.metrics.iter() {
        source.render(&mut out);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out.finish(),
    )
}
