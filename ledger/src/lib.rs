//! The replicated-ledger client: create, append, read, close, recover and
//! delete ledgers stored on bookies, with their metadata in the metadata
//! store. A ledger has one writer; readers read up to the last add confirmed;
//! recovery fences the ledger and seals it where its acknowledged data ends.
//!
//! ```text
//! let client = LedgerClient::new(store, ClientConfig::default());
//! let w = client.create(3, 2, 2).await?;      // E=3, Qw=2, Qa=2
//! w.append(Bytes::from("hello")).await?;      // -> entry id 0
//! w.close().await?;
//! let r = client.open(w.ledger_id()).await?;
//! let entries = r.read(0, 0).await?;
//! ```

mod add_body;
pub mod bookie_client;
pub mod error;
pub mod metadata;
pub mod metrics;
pub mod reader;
mod recovery;
pub mod writer;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rand::seq::SliceRandom;
use strata_common::cluster::{BookieRegistration, BookieState};
use strata_common::metadata::{Expect, MetadataStore};
use strata_common::paths;
use strata_proto::bookie::DeleteLedgerRequest;
use tracing::warn;

pub use error::{LedgerError, Result};
pub use metadata::{Fragment, LedgerMetadata, LedgerStatus};
pub use metrics::LedgerClientMetrics;
pub use reader::{LedgerEntry, LedgerReader};
pub use writer::LedgerWriter;

use crate::bookie_client::{BookiePool, status_error};

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// A bookie that has not confirmed an add within this time is replaced.
    pub add_timeout: Duration,
    /// Timeout of each read / fence / LAC request.
    pub request_timeout: Duration,
    /// An ensemble change that finds no replacement within this time fails the writer.
    pub ensemble_change_timeout: Duration,
    /// Payload bytes a writer may have unacknowledged before `enqueue` waits.
    pub max_outstanding_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            add_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            ensemble_change_timeout: Duration::from_secs(30),
            max_outstanding_bytes: 64 << 20,
        }
    }
}

/// What writers, readers and recovery share.
#[derive(Clone)]
pub(crate) struct ClientCtx {
    pub store: Arc<dyn MetadataStore>,
    pub pool: BookiePool,
    pub config: ClientConfig,
    pub metrics: Arc<LedgerClientMetrics>,
}

impl ClientCtx {
    /// Registered writable bookies not in `exclude`, shuffled.
    pub async fn writable_bookies(&self, exclude: &HashSet<String>) -> Result<Vec<String>> {
        let mut out: Vec<String> = list_bookies(self.store.as_ref())
            .await?
            .into_iter()
            .filter(|b| b.state == BookieState::Writable && !exclude.contains(&b.address))
            .map(|b| b.address)
            .collect();
        out.shuffle(&mut rand::rng());
        Ok(out)
    }
}

/// Every registered bookie (skipping unreadable registrations).
pub async fn list_bookies(store: &dyn MetadataStore) -> Result<Vec<BookieRegistration>> {
    let mut out = Vec::new();
    for kv in store.list(paths::BOOKIES).await? {
        match serde_json::from_slice::<BookieRegistration>(&kv.value) {
            Ok(r) => out.push(r),
            Err(e) => warn!(key = %kv.key, error = %e, "ignoring unreadable bookie registration"),
        }
    }
    Ok(out)
}

#[derive(Clone)]
pub struct LedgerClient {
    ctx: ClientCtx,
}

impl LedgerClient {
    pub fn new(store: Arc<dyn MetadataStore>, config: ClientConfig) -> Self {
        LedgerClient {
            ctx: ClientCtx {
                store,
                pool: BookiePool::new(config.request_timeout),
                config,
                metrics: Arc::new(LedgerClientMetrics::default()),
            },
        }
    }

    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.ctx.store
    }

    /// Hands adds for bookie `address` straight to a bookie in this process
    /// (see [`bookie_client::LocalBookie`]).
    pub fn register_local_bookie(
        &self,
        address: &str,
        bookie: Arc<dyn bookie_client::LocalBookie>,
    ) {
        self.ctx.pool.register_local(address, bookie);
    }

    /// This client's metrics (shared by its clones, writers and readers).
    pub fn metrics(&self) -> &Arc<LedgerClientMetrics> {
        &self.ctx.metrics
    }

    /// The metrics as a `/metrics` source.
    pub fn metrics_source(&self) -> Arc<dyn strata_common::metrics::MetricsSource> {
        self.ctx.metrics.clone()
    }

    /// Creates a ledger on `ensemble` writable bookies; entries go to
    /// `write_quorum` of them and are acknowledged after `ack_quorum`.
    pub async fn create(
        &self,
        ensemble: u32,
        write_quorum: u32,
        ack_quorum: u32,
    ) -> Result<LedgerWriter> {
        self.create_with(ensemble, write_quorum, ack_quorum, BTreeMap::new())
            .await
    }

    /// [`LedgerClient::create`] with custom metadata stored alongside.
    pub async fn create_with(
        &self,
        ensemble: u32,
        write_quorum: u32,
        ack_quorum: u32,
        custom: BTreeMap<String, String>,
    ) -> Result<LedgerWriter> {
        if !(ensemble >= write_quorum && write_quorum >= ack_quorum && ack_quorum >= 1) {
            return Err(LedgerError::InvalidQuorum {
                e: ensemble,
                qw: write_quorum,
                qa: ack_quorum,
            });
        }
        let candidates = self.ctx.writable_bookies(&HashSet::new()).await?;
        if candidates.len() < ensemble as usize {
            return Err(LedgerError::NotEnoughBookies {
                needed: ensemble as usize,
                available: candidates.len(),
            });
        }
        let bookies: Vec<String> = candidates.into_iter().take(ensemble as usize).collect();
        let ledger_id = metadata::allocate_id(self.ctx.store.as_ref()).await?;
        let md = LedgerMetadata {
            ledger_id,
            ensemble_size: ensemble,
            write_quorum,
            ack_quorum,
            status: LedgerStatus::Open,
            last_entry_id: -1,
            length: 0,
            ensembles: vec![Fragment {
                first_entry: 0,
                bookies,
            }],
            created_at_ms: metadata::now_ms(),
            closed_at_ms: None,
            custom,
        };
        let version = metadata::write(self.ctx.store.as_ref(), &md, Expect::Absent).await?;
        self.ctx.metrics.ledgers_created.inc();
        Ok(LedgerWriter::start(self.ctx.clone(), md, version))
    }

    /// Opens a ledger for reading without disturbing its writer: a closed
    /// ledger is readable to its end, an open one up to its LAC.
    pub async fn open(&self, ledger_id: u64) -> Result<LedgerReader> {
        let (md, _) = metadata::read(self.ctx.store.as_ref(), ledger_id).await?;
        let lac = if md.is_closed() {
            md.last_entry_id
        } else {
            reader::read_lac(&self.ctx, &md).await?
        };
        self.ctx.metrics.ledgers_opened.inc();
        Ok(LedgerReader::new(self.ctx.clone(), md, lac))
    }

    /// Recovers a ledger (fencing out its writer) and opens it, closed.
    pub async fn open_and_recover(&self, ledger_id: u64) -> Result<LedgerReader> {
        let md = recovery::recover(&self.ctx, ledger_id).await?;
        let last = md.last_entry_id;
        self.ctx.metrics.ledgers_opened.inc();
        Ok(LedgerReader::new(self.ctx.clone(), md, last))
    }

    /// Reads a ledger's metadata.
    pub async fn metadata(&self, ledger_id: u64) -> Result<LedgerMetadata> {
        Ok(metadata::read(self.ctx.store.as_ref(), ledger_id).await?.0)
    }

    /// Deletes a ledger from every bookie that stores part of it, then its
    /// metadata. A bookie that is down keeps its copy until its garbage
    /// collector finds the ledger's metadata gone and deletes it too.
    pub async fn delete(&self, ledger_id: u64) -> Result<()> {
        let (md, version) = metadata::read(self.ctx.store.as_ref(), ledger_id).await?;
        let bookies: HashSet<String> = md
            .ensembles
            .iter()
            .flat_map(|f| f.bookies.iter().cloned())
            .collect();
        let deletes = bookies.iter().map(|b| async move {
            let conn = self.ctx.pool.get(b)?;
            let mut rpc = conn.rpc.clone();
            rpc.delete_ledger(DeleteLedgerRequest { ledger_id })
                .await
                .map_err(|s| status_error(b, s))
        });
        for r in join_all(deletes).await {
            // Not counted as a bookie error: deletion is best effort and the
            // bookie's garbage collector finishes it.
            if let Err(e) = r {
                warn!(ledger_id, error = %e, "could not delete ledger on a bookie");
            }
        }
        self.ctx
            .store
            .delete(&paths::ledger(ledger_id), Expect::Version(version))
            .await?;
        self.ctx.metrics.ledgers_deleted.inc();
        Ok(())
    }

    /// Registered bookies.
    pub async fn bookies(&self) -> Result<Vec<BookieRegistration>> {
        list_bookies(self.ctx.store.as_ref()).await
    }
}
