//! The admin HTTP server (Pulsar's `/admin/v2` paths).
//!
//! For now it answers the health check; the admin API grows here.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct AdminServer {
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl AdminServer {
    pub async fn start(listen: &str, cancel: CancellationToken) -> anyhow::Result<AdminServer> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind the admin port {listen}: {e}"))?;
        let address = listener.local_addr()?;
        let app = Router::new().route("/admin/v2/brokers/health", get(|| async { "ok" }));
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
