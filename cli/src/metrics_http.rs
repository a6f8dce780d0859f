//! The Prometheus `/metrics` endpoint of a process without an admin server
//! (`strata bookie`): the `process_*` metrics, then each source in order.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use strata_common::metrics::{Exposition, MetricsSource, ProcessMetrics};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

type Sources = Arc<Vec<Arc<dyn MetricsSource>>>;

pub struct MetricsServer {
    /// The bound address (the port is real even if 0 was asked for).
    pub address: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl MetricsServer {
    pub async fn start(
        listen: &str,
        sources: Vec<Arc<dyn MetricsSource>>,
    ) -> anyhow::Result<MetricsServer> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot bind the metrics address {listen}"))?;
        let address = listener.local_addr()?;
        let app = Router::new()
            .route("/metrics", get(render))
            .with_state(Arc::new(sources));
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
            {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
        Ok(MetricsServer {
            address,
            cancel,
            task,
        })
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

async fn render(State(sources): State<Sources>) -> impl IntoResponse {
    let mut out = Exposition::default();
    ProcessMetrics.render(&mut out);
    for source in sources.iter() {
        source.render(&mut out);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out.finish(),
    )
}
