//! The Strata bookie: the hot tier. It stores ledger entries durably on local
//! disk (journal with group commit, write cache, entry logs, RocksDB index,
//! foyer read cache), fences ledgers, reclaims the space of deleted ledgers,
//! watches its disks, registers itself in the metadata store, and serves all
//! of it over gRPC (`strata_proto::bookie`).
//!
//! Public API: [`BookieConfig`] / [`BookieArgs`] and [`Bookie::start`].

pub mod add_stream;
pub mod config;
pub mod disk;
pub mod entrylog;
pub mod error;
pub mod fileio;
pub mod index;
pub mod journal;
pub mod metrics;
pub mod remover;
pub mod service;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strata_common::cluster::{BookieRegistration, BookieState};
use strata_common::metadata::{self, MetadataStore, PutOptions, Session};
use strata_common::paths;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use config::{BookieArgs, BookieConfig};
pub use error::{BookieError, Result};

use crate::disk::DiskState;
use crate::metrics::Metrics;
use crate::service::BookieService;
use crate::storage::LedgerStorage;

/// HTTP/2 flow-control windows of bookie connections.
pub const HTTP2_STREAM_WINDOW: u32 = 8 << 20;
pub const HTTP2_CONNECTION_WINDOW: u32 = 16 << 20;

/// Largest gRPC message the bookie accepts or sends (a batch of adds, a read).
pub const MAX_MESSAGE_BYTES: usize = 80 << 20;

/// A running bookie. Dropping it without [`Bookie::shutdown`] stops the
/// background tasks but skips the final flush (the journal still has it all).
pub struct Bookie {
    pub address: SocketAddr,
    pub bookie_id: String,
    pub storage: Arc<LedgerStorage>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    session: Arc<dyn Session>,
    store: Arc<dyn MetadataStore>,
}

impl Bookie {
    /// Opens the storage (replaying the journal), starts serving and registers.
    pub async fn start(config: BookieConfig) -> Result<Bookie> {
        let store = metadata::open(&config.metadata_url()).await?;
        Self::start_with_store(config, store).await
    }

    /// Like [`Bookie::start`], with a metadata store the caller already opened
    /// (standalone and tests share one store between components).
    pub async fn start_with_store(
        config: BookieConfig,
        store: Arc<dyn MetadataStore>,
    ) -> Result<Bookie> {
        config.validate()?;
        let metrics = Arc::new(Metrics::default());
        let storage = {
            let config = config.clone();
            let metrics = metrics.clone();
            tokio::task::spawn_blocking(move || LedgerStorage::open(&config, metrics))
                .await
                .map_err(|e| BookieError::Config(format!("storage open task failed: {e}")))??
        };
        let storage = Arc::new(storage);
        let disk = Arc::new(DiskState::new(
            vec![config.journal_dir(), config.ledger_dir()],
            config.disk_usage_threshold,
            config.disk_usage_lwm,
        ));
        disk.check(&storage)
            .map_err(|e| BookieError::io("measure disk usage", e))?;

        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| BookieError::io("bind bookie listener", e))?;
        let address = listener
            .local_addr()
            .map_err(|e| BookieError::io("bookie listener address", e))?;
        // With port 0 the real port is only known now.
        let bookie_id = match &config.advertised_address {
            Some(a) => a.clone(),
            None => address.to_string(),
        };

        let session = store.session(config.registration_ttl).await?;
        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();

        let service = BookieService {
            storage: storage.clone(),
            disk: disk.clone(),
            bookie_id: bookie_id.clone(),
            shutdown: cancel.clone(),
        };
        let server = add_stream::BookieGrpc::new(service, MAX_MESSAGE_BYTES);
        {
            let cancel = cancel.clone();
            // `Server::tcp_nodelay` only applies to listeners tonic binds
            // itself; accepted sockets of our own listener need it set here,
            // or Nagle holds back the tail of multi-frame responses until
            // the peer's delayed ACK (~40 ms per read).
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            tasks.push(tokio::spawn(async move {
                let result = tonic::transport::Server::builder()
                    .tcp_nodelay(true)
                    .http2_keepalive_interval(Some(Duration::from_secs(10)))
                    // Adds stream in at disk speed: HTTP/2's 64 KiB default
                    // windows would cost a round trip per large entry.
                    .initial_stream_window_size(HTTP2_STREAM_WINDOW)
                    .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
                    .max_frame_size(strata_proto::HTTP2_MAX_FRAME_SIZE)
                    .add_service(server)
                    .serve_with_incoming_shutdown(incoming, cancel.cancelled())
                    .await;
                if let Err(e) = result {
                    error!(error = %e, "bookie gRPC server failed");
                }
            }));
        }
        tasks.push(spawn_flusher(
            storage.clone(),
            config.flush_interval,
            cancel.clone(),
        ));
        tasks.push(spawn_gc(
            storage.clone(),
            store.clone(),
            config.gc_interval,
            cancel.clone(),
        ));

        let mut registrar = Registrar {
            store: store.clone(),
            session: session.clone(),
            bookie_id: bookie_id.clone(),
            ttl: config.registration_ttl,
        };
        registrar.register(&storage, &disk).await?;
        tasks.push(tokio::spawn({
            let (storage, disk, cancel) = (storage.clone(), disk.clone(), cancel.clone());
            let interval = config.disk_check_interval;
            async move { registrar.run(storage, disk, interval, cancel).await }
        }));
        info!(%address, %bookie_id, "bookie started");
        Ok(Bookie {
            address,
            bookie_id,
            storage,
            cancel,
            tasks,
            session,
            store,
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.storage.metrics
    }

    /// The metrics as a `/metrics` source.
    pub fn metrics_source(&self) -> Arc<dyn strata_common::metrics::MetricsSource> {
        self.storage.metrics.clone()
    }

    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    /// Stops serving, flushes the write cache and unregisters.
    pub async fn shutdown(mut self) -> Result<()> {
        self.cancel.cancel();
        for t in std::mem::take(&mut self.tasks) {
            // Graceful shutdown waits for open connections; do not let a
            // client that keeps one open hold the bookie up forever.
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                warn!("a bookie task did not stop in 5 s; aborting it");
                abort.abort();
            }
        }
        if let Err(e) = self.session.close().await {
            warn!(error = %e, "could not remove the bookie registration");
        }
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || storage.shutdown())
            .await
            .map_err(|e| BookieError::Config(format!("shutdown task failed: {e}")))??;
        info!("bookie stopped");
        Ok(())
    }
}

impl Drop for Bookie {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Nice value of the flush thread: a flush is bulk work with slack (the
/// write cache absorbs it), adds are latency-bound; on a small machine the
/// flush's copying must not take CPU from the journal and the add path.
const FLUSH_THREAD_NICE: libc::c_int = 10;

/// Shortest time between two passes that release emptied files.
const RELEASE_EVERY: Duration = Duration::from_secs(1);

fn spawn_flusher(
    storage: Arc<LedgerStorage>,
    every: Duration,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    // Flushes run on one dedicated, lower-priority thread; this task only
    // decides when.
    let (tx, rx) = std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<Result<()>>>();
    let thread = {
        let storage = storage.clone();
        let spawned = std::thread::Builder::new()
            .name("flush".into())
            .spawn(move || {
                // SAFETY: setpriority on the calling thread (who = 0); no memory is passed.
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, 0, FLUSH_THREAD_NICE);
                }
                let mut released = std::time::Instant::now();
                while let Ok(done) = rx.recv() {
                    let flushed = storage.flush();
                    let ok = flushed.is_ok();
                    // Whoever waits for the flush is answered first.
                    let _ = done.send(flushed);
                    // Files emptied by deletions go back soon (journal files
                    // to the reuse pool), not at the next GC; at most once a
                    // second, as flushes come much faster under load.
                    if ok && released.elapsed() >= RELEASE_EVERY {
                        released = std::time::Instant::now();
                        if let Err(e) = storage.release_dead() {
                            warn!(error = %e, "releasing emptied files failed; GC will retry");
                        }
                    }
                }
            });
        match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                error!(error = %e, "cannot start the flush thread");
                None
            }
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
                _ = storage.flush_wanted() => {}
            }
            let (done, result) = tokio::sync::oneshot::channel();
            if tx.send(done).is_err() {
                error!("the flush thread is gone; the write cache is no longer flushed");
                break;
            }
            match result.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    error!(error = %e, "write cache flush failed; will retry");
                    if e.is_no_space() {
                        storage.set_read_only(Some(storage::ReadOnlyReason::Disk));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) => error!("flush thread panicked"),
            }
        }
        // Wait for the thread to end: it holds the storage, and the last
        // holder closes RocksDB. Left detached (and niced), it could close
        // it after the process began exiting, which aborts in RocksDB.
        drop(tx);
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    })
}

fn spawn_gc(
    storage: Arc<LedgerStorage>,
    store: Arc<dyn MetadataStore>,
    every: Duration,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = delete_orphans(&storage, store.as_ref()).await {
                warn!(error = %e, "could not compare local ledgers with the metadata store");
            }
            let s = storage.clone();
            match tokio::task::spawn_blocking(move || s.gc()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => error!(error = %e, "garbage collection failed; will retry"),
                Err(e) => error!(error = %e, "gc task panicked"),
            }
        }
    })
}

/// Deletes local ledgers whose metadata is gone: they were deleted while
/// this bookie could not be told (down or partitioned). Safe because a
/// ledger's metadata is written before its first entry is sent, so a ledger
/// with entries here and no metadata can only be a deleted one.
async fn delete_orphans(storage: &Arc<LedgerStorage>, store: &dyn MetadataStore) -> Result<usize> {
    let (local, _) = storage.list(0, usize::MAX);
    if local.is_empty() {
        return Ok(0);
    }
    let known: std::collections::HashSet<u64> = store
        .list(paths::LEDGERS)
        .await?
        .iter()
        .filter_map(|kv| paths::ledger_id_of(&kv.key))
        .collect();
    let orphans: Vec<u64> = local.into_iter().filter(|id| !known.contains(id)).collect();
    for id in &orphans {
        let (s, id) = (storage.clone(), *id);
        tokio::task::spawn_blocking(move || s.delete_blocking(id))
            .await
            .map_err(|e| BookieError::Config(format!("delete task failed: {e}")))??;
        info!(ledger_id = id, "deleted a ledger whose metadata is gone");
    }
    Ok(orphans.len())
}

/// Keeps the bookie's registration current (and re-creates it if the
/// session was lost, e.g. after a metadata-store outage).
struct Registrar {
    store: Arc<dyn MetadataStore>,
    session: Arc<dyn Session>,
    bookie_id: String,
    ttl: Duration,
}

impl Registrar {
    async fn register(&mut self, storage: &LedgerStorage, disk: &DiskState) -> Result<()> {
        if !self.session.is_alive() {
            self.session = self.store.session(self.ttl).await?;
        }
        let usage = disk.snapshot();
        let reg = BookieRegistration {
            bookie_id: self.bookie_id.clone(),
            address: self.bookie_id.clone(),
            state: if storage.read_only().is_some() {
                BookieState::ReadOnly
            } else {
                BookieState::Writable
            },
            total_bytes: usage.total_bytes,
            free_bytes: usage.free_bytes,
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let value = serde_json::to_vec(&reg)
            .map_err(|e| BookieError::Config(format!("registration encoding: {e}")))?;
        self.store
            .put(
                &paths::bookie(&self.bookie_id),
                value.into(),
                PutOptions {
                    session: Some(self.session.clone()),
                    ..Default::default()
                },
            )
            .await?;
        Ok(())
    }

    async fn run(
        mut self,
        storage: Arc<LedgerStorage>,
        disk: Arc<DiskState>,
        every: Duration,
        cancel: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let (s, d) = (storage.clone(), disk.clone());
            match tokio::task::spawn_blocking(move || d.check(&s)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(error = %e, "disk usage check failed"),
                Err(e) => warn!(error = %e, "disk check task panicked"),
            }
            if let Err(e) = self.register(&storage, &disk).await {
                warn!(error = %e, "bookie registration refresh failed; will retry");
            }
        }
    }
}

/// Helpers for this crate's unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    use std::path::Path;

    /// The names in `dir`, sorted.
    pub fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }
}
