//! Reconciliation: objects in the stores that no offload record refers to
//! (an upload abandoned by a crash whose record was lost, a delete that
//! failed half-way) are deleted once older than the grace period, and
//! records of ledgers their topic no longer has (retention deleted the
//! ledger but not its cold copy) are deleted with their objects.

use std::collections::HashSet;

use futures::TryStreamExt;
use object_store::path::Path;
use strata_common::metadata::{self, Expect};
use strata_managed_ledger::ManagedLedgerInfo;
use strata_managed_ledger::keys as ml_keys;
use tracing::{info, warn};

use crate::error::{OffloadError, Result};
use crate::keys;
use crate::records::OffloadRecord;
use crate::service::{Offloader, now_ms};
use crate::upload;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    /// Objects listed in the stores.
    pub objects: u64,
    /// Objects no record refers to, deleted.
    pub orphans_deleted: u64,
    /// Unreferenced objects left because they are younger than the grace.
    pub orphans_in_grace: u64,
    /// Records of ledgers their topic no longer has, deleted with their objects.
    pub stale_records_deleted: u64,
}

/// Is `p` `…/{ledger}-{uuid}/{data|index}`? Returns the `…/{ledger}-{uuid}` part.
fn upload_base(p: &Path) -> Option<Path> {
    let parts: Vec<_> = p.parts().collect();
    let (last, dir) = match parts.as_slice() {
        [.., dir, last] => (last.as_ref(), dir.as_ref()),
        _ => return None,
    };
    if last != "data" && last != "index" {
        return None;
    }
    let (ledger, uuid) = dir.split_once('-')?;
    if ledger.parse::<u64>().is_err() || uuid::Uuid::parse_str(uuid).is_err() {
        return None;
    }
    Some(Path::from_iter(parts[..parts.len() - 1].iter().cloned()))
}

impl Offloader {
    /// One reconciliation pass over every store this offloader has used.
    pub async fn reconcile(&self) -> Result<ReconcileReport> {
        let inner = &self.inner;
        let meta = inner.meta.as_ref();
        let mut report = ReconcileReport::default();

        // Records whose ledger is gone from its topic.
        let mut referenced: HashSet<(String, String)> = HashSet::new();
        let mut infos: std::collections::HashMap<String, Option<ManagedLedgerInfo>> =
            Default::default();
        for kv in meta.list(keys::LEDGERS).await? {
            let Ok(record) = serde_json::from_slice::<OffloadRecord>(&kv.value) else {
                continue;
            };
            if !infos.contains_key(&record.managed_ledger) {
                let info = metadata::get_json::<ManagedLedgerInfo>(
                    meta,
                    &ml_keys::managed_ledger(&record.managed_ledger),
                )
                .await?
                .map(|(i, _)| i);
                infos.insert(record.managed_ledger.clone(), info);
            }
            let present = infos[&record.managed_ledger]
                .as_ref()
                .is_some_and(|i| i.ledgers.iter().any(|l| l.ledger_id == record.ledger_id));
            if present {
                referenced.insert((record.store_url.clone(), record.base.clone()));
                continue;
            }
            // Objects first, then the record: the other order would leave
            // objects that only the orphan sweep finds.
            if let Ok(store) = inner.stores.get(Some(&record.store_url)).await {
                let io = inner.usage.sink_for(&record.managed_ledger);
                if let Err(e) =
                    upload::delete_objects(store.store(), &Path::from(record.base.as_str()), &io)
                        .await
                {
                    warn!(base = %record.base, error = %e, "could not delete a stale record's objects");
                    referenced.insert((record.store_url.clone(), record.base.clone()));
                    continue;
                }
            }
            match meta.delete(&kv.key, Expect::Version(kv.version)).await {
                Ok(()) => report.stale_records_deleted += 1,
                Err(e) => {
                    warn!(key = %kv.key, error = %e, "could not delete a stale offload record")
                }
            }
        }

        // Objects no record refers to.
        let grace_ms = inner.cfg.orphan_grace.as_millis() as i64;
        let now = now_ms() as i64;
        for store in inner.stores.all().await {
            let mut orphans: HashSet<Path> = HashSet::new();
            let mut listing = store.store().list(Some(store.prefix()));
            while let Some(obj) = listing
                .try_next()
                .await
                .map_err(|e| OffloadError::store("list", store.prefix(), e))?
            {
                report.objects += 1;
                let Some(base) = upload_base(&obj.location) else {
                    continue;
                };
                if referenced.contains(&(store.url().to_string(), base.to_string())) {
                    continue;
                }
                if now - obj.last_modified.timestamp_millis() < grace_ms {
                    report.orphans_in_grace += 1;
                    continue;
                }
                orphans.insert(base);
            }
            for base in orphans {
                // Re-check: an upload may have started since the listing.
                if self.is_referenced(store.url(), &base).await? {
                    continue;
                }
                // Whose they were is unknown: counted in the total only.
                let io = crate::IoSink(vec![inner.usage.total().clone()]);
                match upload::delete_objects(store.store(), &base, &io).await {
                    Ok(()) => {
                        report.orphans_deleted += 1;
                        info!(store = %store.url(), base = %base, "deleted orphaned objects");
                    }
                    Err(e) => warn!(base = %base, error = %e, "could not delete orphaned objects"),
                }
            }
        }
        inner.metrics.orphans_deleted.inc_by(report.orphans_deleted);
        inner
            .metrics
            .stale_records_deleted
            .inc_by(report.stale_records_deleted);
        inner.metrics.reconcile_runs.inc();
        Ok(report)
    }

    async fn is_referenced(&self, store_url: &str, base: &Path) -> Result<bool> {
        let base = base.to_string();
        Ok(self
            .inner
            .meta
            .list(keys::LEDGERS)
            .await?
            .iter()
            .filter_map(|kv| serde_json::from_slice::<OffloadRecord>(&kv.value).ok())
            .any(|r| r.store_url == store_url && r.base == base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_upload_objects_only() {
        let u = "0b8e3f2c-7d4e-4c4e-9a0e-1f2d3c4b5a69";
        let p = Path::from(format!("pre/t/ns/topic/12-{u}/data"));
        assert_eq!(
            upload_base(&p),
            Some(Path::from(format!("pre/t/ns/topic/12-{u}")))
        );
        assert!(upload_base(&Path::from(format!("pre/t/ns/topic/12-{u}/other"))).is_none());
        assert!(upload_base(&Path::from("pre/t/ns/topic/x-y/data")).is_none());
        assert!(upload_base(&Path::from("data")).is_none());
    }
}
