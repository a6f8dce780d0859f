//! Shared handles of the cold tier: the object stores in use (by URL) and
//! per-namespace traffic counters.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Result;
use crate::stats::{IoSink, IoStats};
use crate::store::ColdStore;

/// The object stores in use, opened once per URL. The default store is the
/// server's (`--object-store`); namespaces may name others in their
/// offload policies, and records remember the URL their objects are in.
pub struct StoreRegistry {
    default: ColdStore,
    open: tokio::sync::Mutex<HashMap<String, ColdStore>>,
}

impl StoreRegistry {
    pub fn new(default: ColdStore) -> Arc<StoreRegistry> {
        let mut open = HashMap::new();
        open.insert(default.url().to_string(), default.clone());
        Arc::new(StoreRegistry {
            default,
            open: tokio::sync::Mutex::new(open),
        })
    }

    pub fn default_store(&self) -> &ColdStore {
        &self.default
    }

    /// The store of `url` (`None`: the default), opening it on first use.
    pub async fn get(&self, url: Option<&str>) -> Result<ColdStore> {
        let Some(url) = url else {
            return Ok(self.default.clone());
        };
        let mut open = self.open.lock().await;
        if let Some(s) = open.get(url) {
            return Ok(s.clone());
        }
        let store = ColdStore::open_with(url, self.default.options().clone()).await?;
        open.insert(url.to_string(), store.clone());
        // Records hold the canonical form; make it find this store too.
        open.insert(store.url().to_string(), store.clone());
        Ok(store)
    }

    /// Every store opened so far (for reconciliation).
    pub async fn all(&self) -> Vec<ColdStore> {
        let open = self.open.lock().await;
        let mut seen = std::collections::HashSet::new();
        open.values()
            .filter(|s| seen.insert(s.url().to_string()))
            .cloned()
            .collect()
    }
}

/// Cold-tier traffic per namespace (`tenant/namespace`) and in total.
#[derive(Default)]
pub struct Usage {
    total: Arc<IoStats>,
    namespaces: Mutex<HashMap<String, Arc<IoStats>>>,
}

impl Usage {
    pub fn new() -> Arc<Usage> {
        Arc::new(Usage::default())
    }

    pub fn total(&self) -> &Arc<IoStats> {
        &self.total
    }

    /// The counters of a namespace.
    pub fn namespace(&self, namespace: &str) -> Arc<IoStats> {
        self.namespaces
            .lock()
            .entry(namespace.to_string())
            .or_default()
            .clone()
    }

    /// A sink that counts for the namespace of `managed_ledger` and in total.
    pub fn sink_for(&self, managed_ledger: &str) -> IoSink {
        IoSink(vec![
            self.namespace(&namespace_of(managed_ledger)),
            self.total.clone(),
        ])
    }

    /// (namespace, counters) of every namespace seen so far, sorted.
    pub fn namespaces(&self) -> Vec<(String, Arc<IoStats>)> {
        let mut v: Vec<_> = self
            .namespaces
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// `tenant/namespace` of a managed-ledger name (`tenant/namespace/persistent/topic`).
pub fn namespace_of(managed_ledger: &str) -> String {
    let mut parts = managed_ledger.splitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some(t), Some(n)) => format!("{t}/{n}"),
        _ => managed_ledger.to_string(),
    }
}

/// The object path (below the store's prefix) of one upload of a ledger:
/// `{tenant}/{namespace}/{topic}/{ledger}-{uuid}`.
pub fn object_base(managed_ledger: &str, ledger_id: u64, uuid: &str) -> String {
    // `tenant/namespace/persistent/topic` → `tenant/namespace/topic`.
    let mut parts: Vec<&str> = managed_ledger.splitn(4, '/').collect();
    if parts.len() == 4 && parts[2] == "persistent" {
        parts.remove(2);
    }
    format!("{}/{ledger_id}-{uuid}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            namespace_of("public/default/persistent/t"),
            "public/default"
        );
        assert_eq!(
            object_base("acme/logs/persistent/clicks-partition-0", 7, "u"),
            "acme/logs/clicks-partition-0/7-u"
        );
    }
}
