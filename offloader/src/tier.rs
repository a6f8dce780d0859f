//! The cold tier as the broker uses it: [`Tier`] implements the managed
//! ledger's [`ColdTier`] over the offload records and the tiered reader, and
//! answers admin questions (usage, scrub, offload requests and status).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use parking_lot::Mutex;
use serde::Serialize;
use strata_common::metadata::{self, Expect, MetadataStore};
use strata_common::metrics::Counter;
use strata_managed_ledger::keys as ml_keys;
use strata_managed_ledger::{ColdError, ColdLedger, ColdTier, LedgerInfo, ManagedLedgerInfo};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::{OffloadError, Result};
use crate::keys;
use crate::reader::{ColdLedger as ColdCopy, TieredReader};
use crate::records::{OffloadRecord, OffloadRequest, OffloadStatus};
use crate::registry::{StoreRegistry, Usage, namespace_of};
use crate::service::{now_ms, records_of};
use crate::upload;

pub struct Tier {
    meta: Arc<dyn MetadataStore>,
    stores: Arc<StoreRegistry>,
    reader: Arc<TieredReader>,
    usage: Arc<Usage>,
    /// Cold copies deleted (retention, topic deletion).
    pub copies_deleted: Counter,
    /// Both tiers' use per namespace, refreshed in the background
    /// for `/metrics` (see [`Tier::spawn_storage_refresh`]).
    storage: Mutex<BTreeMap<String, TopicUsage>>,
}

fn cold_error(e: OffloadError) -> ColdError {
    ColdError::new(e.is_corrupt(), e.to_string())
}

struct Copy(Arc<ColdCopy>);

#[async_trait]
impl ColdLedger for Copy {
    async fn read(
        &self,
        first: u64,
        last: u64,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, ColdError> {
        let started = std::time::Instant::now();
        let read = self.0.read(first, last, max_bytes).await;
        debug!(first, last, elapsed = ?started.elapsed(), "cold read");
        read.map_err(cold_error)
    }
}

#[async_trait]
impl ColdTier for Tier {
    async fn open(
        &self,
        name: &str,
        ledger_id: u64,
    ) -> Result<Option<Arc<dyn ColdLedger>>, ColdError> {
        let found =
            metadata::get_json::<OffloadRecord>(self.meta.as_ref(), &keys::record(name, ledger_id))
                .await
                .map_err(|e| ColdError::new(false, e.to_string()))?;
        let Some((record, _)) = found else {
            return Ok(None);
        };
        let Some(objects) = record.objects.as_ref().filter(|_| record.is_complete()) else {
            return Ok(None);
        };
        let started = std::time::Instant::now();
        let store = self
            .stores
            .get(Some(&record.store_url))
            .await
            .map_err(cold_error)?;
        let copy = self
            .reader
            .open(store.store().clone(), objects, self.usage.sink_for(name))
            .await
            .map_err(cold_error)?;
        debug!(managed_ledger = name, ledger_id, elapsed = ?started.elapsed(), "opened a cold copy");
        Ok(Some(Arc::new(Copy(copy))))
    }

    async fn delete(&self, name: &str, ledger_id: u64) -> Result<(), ColdError> {
        self.delete_copy(name, ledger_id).await.map_err(cold_error)
    }
}

/// A topic's use of both tiers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicUsage {
    /// Payload bytes of ledgers the bookies hold.
    pub hot_bytes: u64,
    /// Object bytes (data and index) in the cold tier.
    pub cold_bytes: u64,
    /// Ledgers with a verified cold copy.
    pub offloaded_ledgers: u64,
    /// Of those, the ones whose bookie copy is deleted.
    pub cold_only_ledgers: u64,
}

impl TopicUsage {
    /// Counts one ledger of `size_bytes` payload with its offload record.
    pub fn count(&mut self, size_bytes: u64, record: Option<&OffloadRecord>) {
        match record.filter(|r| r.is_complete()) {
            Some(r) => {
                self.offloaded_ledgers += 1;
                self.cold_bytes += r.cold_bytes();
                self.hot_bytes += r.hot_bytes(size_bytes);
                if r.bookie_deleted_ms.is_some() {
                    self.cold_only_ledgers += 1;
                }
            }
            None => self.hot_bytes += size_bytes,
        }
    }

    /// Adds another topic's use.
    pub fn add(&mut self, other: &TopicUsage) {
        self.hot_bytes += other.hot_bytes;
        self.cold_bytes += other.cold_bytes;
        self.offloaded_ledgers += other.offloaded_ledgers;
        self.cold_only_ledgers += other.cold_only_ledgers;
    }
}

/// One ledger's scrub outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScrubResult {
    pub ledger_id: u64,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Tier {
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        stores: Arc<StoreRegistry>,
        reader: Arc<TieredReader>,
        usage: Arc<Usage>,
    ) -> Arc<Tier> {
        Arc::new(Tier {
            meta,
            stores,
            reader,
            usage,
            copies_deleted: Counter::default(),
            storage: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }

    pub fn reader(&self) -> &Arc<TieredReader> {
        &self.reader
    }

    /// Deletes a ledger's cold copy: objects, then the record.
    pub async fn delete_copy(&self, name: &str, ledger_id: u64) -> Result<()> {
        let key = keys::record(name, ledger_id);
        let Some((record, version)) =
            metadata::get_json::<OffloadRecord>(self.meta.as_ref(), &key).await?
        else {
            return Ok(());
        };
        let store = self.stores.get(Some(&record.store_url)).await?;
        upload::delete_objects(
            store.store(),
            &Path::from(record.base.as_str()),
            &self.usage.sink_for(name),
        )
        .await?;
        match self.meta.delete(&key, Expect::Version(version)).await {
            Ok(()) => {}
            // Changed meanwhile (an offload restarted it): reconciliation
            // removes whatever it refers to once the ledger is gone.
            Err(e) if e.is_bad_version() => {}
            Err(e) => return Err(e.into()),
        }
        self.copies_deleted.inc();
        info!(managed_ledger = name, ledger_id, "deleted the cold copy");
        Ok(())
    }

    /// Both tiers' use per namespace as of the last refresh.
    pub fn storage_by_namespace(&self) -> BTreeMap<String, TopicUsage> {
        self.storage.lock().clone()
    }

    /// Recomputes both tiers' bytes per namespace from every topic's info
    /// record and every offload record (two prefix lists).
    pub async fn refresh_storage(&self) -> Result<()> {
        let mut records: HashMap<(String, u64), OffloadRecord> = HashMap::new();
        for kv in self.meta.list(keys::LEDGERS).await? {
            if let Ok(r) = serde_json::from_slice::<OffloadRecord>(&kv.value)
                && r.is_complete()
            {
                records.insert((r.managed_ledger.clone(), r.ledger_id), r);
            }
        }
        let mut out: BTreeMap<String, TopicUsage> = BTreeMap::new();
        for kv in self.meta.list(ml_keys::MANAGED_LEDGERS).await? {
            let (Some(name), Ok(info)) = (
                ml_keys::managed_ledger_name(&kv.key),
                serde_json::from_slice::<ManagedLedgerInfo>(&kv.value),
            ) else {
                continue;
            };
            let slot = out.entry(namespace_of(&name)).or_default();
            for l in &info.ledgers {
                slot.count(l.size_bytes, records.get(&(name.clone(), l.ledger_id)));
            }
        }
        *self.storage.lock() = out;
        Ok(())
    }

    /// Refreshes [`Tier::storage_by_namespace`] every `every` until cancelled.
    pub fn spawn_storage_refresh(self: &Arc<Self>, every: Duration, cancel: CancellationToken) {
        let tier = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some(tier) = tier.upgrade() else { return };
                if let Err(e) = tier.refresh_storage().await {
                    warn!(error = %e, "could not refresh storage usage");
                }
            }
        });
    }

    /// Both tiers' bytes of a topic, from its info record and offload records.
    pub async fn topic_usage(&self, name: &str, ledgers: &[LedgerInfo]) -> Result<TopicUsage> {
        let records = records_of(self.meta.as_ref(), name).await?;
        let mut u = TopicUsage::default();
        for l in ledgers {
            u.count(l.size_bytes, records.get(&l.ledger_id).map(|(r, _)| r));
        }
        Ok(u)
    }

    /// Ids of the ledgers of a topic with a complete cold copy.
    pub async fn offloaded_ledgers(&self, name: &str) -> Result<std::collections::HashSet<u64>> {
        Ok(records_of(self.meta.as_ref(), name)
            .await?
            .into_values()
            .filter(|(r, _)| r.is_complete())
            .map(|(r, _)| r.ledger_id)
            .collect())
    }

    /// The offload records of a topic, oldest ledger first.
    pub async fn records(&self, name: &str) -> Result<Vec<OffloadRecord>> {
        Ok(records_of(self.meta.as_ref(), name)
            .await?
            .into_values()
            .map(|(r, _)| r)
            .collect())
    }

    /// Re-verifies every complete cold copy of a topic (sizes, index
    /// checksum, every block's checksum).
    pub async fn scrub(&self, name: &str) -> Result<Vec<ScrubResult>> {
        let mut out = Vec::new();
        for (id, (mut record, version)) in records_of(self.meta.as_ref(), name).await? {
            let Some(objects) = record.objects.clone().filter(|_| record.is_complete()) else {
                continue;
            };
            let store = self.stores.get(Some(&record.store_url)).await?;
            let result = upload::verify(store.store(), &objects, &self.usage.sink_for(name)).await;
            match &result {
                Ok(()) => {
                    record.scrubbed_ms = Some(now_ms());
                    let _ = metadata::put_json(
                        self.meta.as_ref(),
                        &keys::record(name, id),
                        &record,
                        Expect::Version(version),
                    )
                    .await;
                }
                Err(e) => {
                    warn!(managed_ledger = name, ledger_id = id, error = %e, "scrub found a bad cold copy")
                }
            }
            out.push(ScrubResult {
                ledger_id: id,
                ok: result.is_ok(),
                error: result.err().map(|e| e.to_string()),
            });
        }
        Ok(out)
    }

    /// Records a manual offload request (the offloader picks it up).
    pub async fn request_offload(&self, name: &str, ledger_id: u64, entry_id: u64) -> Result<()> {
        let req = OffloadRequest {
            ledger_id,
            entry_id,
            requested_ms: now_ms(),
        };
        metadata::put_json(self.meta.as_ref(), &keys::request(name), &req, Expect::Any).await?;
        Ok(())
    }

    /// Whether an offload of the topic is queued or under way (a status
    /// left `RUNNING` by an offloader that died does not count).
    pub async fn offload_running(&self, name: &str) -> Result<bool> {
        let (req, status) = self.offload_status(name).await?;
        if req.is_some() {
            return Ok(true);
        }
        let running = status.is_some_and(|s| s.status == crate::records::RunStatus::Running);
        Ok(running && self.meta.get(&keys::lock(name)).await?.is_some())
    }

    /// The pending request and the last run's status of a topic.
    pub async fn offload_status(
        &self,
        name: &str,
    ) -> Result<(Option<OffloadRequest>, Option<OffloadStatus>)> {
        let meta = self.meta.as_ref();
        let req = metadata::get_json::<OffloadRequest>(meta, &keys::request(name))
            .await?
            .map(|(r, _)| r);
        let status = metadata::get_json::<OffloadStatus>(meta, &keys::status(name))
            .await?
            .map(|(s, _)| s);
        Ok((req, status))
    }
}
