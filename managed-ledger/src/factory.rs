//! The managed-ledger factory: one per broker. It owns the entry cache all
//! its managed ledgers share and keeps at most one open instance per name
//! (concurrent opens of one name wait for the same instance).

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use parking_lot::Mutex;
use strata_common::metadata::{self, Expect};
use strata_ledger::{LedgerClient, LedgerError};
use tokio::sync::OnceCell;
use tracing::warn;

use crate::cache::{CacheStats, EntryCache};
use crate::cold::ColdTier;
use crate::config::ManagedLedgerConfig;
use crate::error::{ManagedLedgerError, Result};
use crate::info::ManagedLedgerInfo;
use crate::keys;
use crate::ledger::ManagedLedger;

type Slot = Arc<OnceCell<Arc<ManagedLedger>>>;

struct Inner {
    client: LedgerClient,
    config: ManagedLedgerConfig,
    cache: Arc<EntryCache>,
    open: Mutex<HashMap<String, Slot>>,
    cold: Option<Arc<dyn ColdTier>>,
}

#[derive(Clone)]
pub struct ManagedLedgerFactory {
    inner: Arc<Inner>,
}

impl ManagedLedgerFactory {
    /// A factory whose managed ledgers use `config` unless opened with
    /// their own, and share an entry cache of `cache_bytes`.
    pub fn new(client: LedgerClient, config: ManagedLedgerConfig, cache_bytes: usize) -> Self {
        Self::build(client, config, cache_bytes, None)
    }

    /// The same, with a cold tier: closed ledgers with a verified copy in
    /// object storage are read from it, and deleting a ledger deletes that
    /// copy too.
    pub fn with_cold_tier(
        client: LedgerClient,
        config: ManagedLedgerConfig,
        cache_bytes: usize,
        cold: Arc<dyn ColdTier>,
    ) -> Self {
        Self::build(client, config, cache_bytes, Some(cold))
    }

    fn build(
        client: LedgerClient,
        config: ManagedLedgerConfig,
        cache_bytes: usize,
        cold: Option<Arc<dyn ColdTier>>,
    ) -> Self {
        ManagedLedgerFactory {
            inner: Arc::new(Inner {
                client,
                config,
                cache: Arc::new(EntryCache::new(cache_bytes)),
                open: Mutex::new(HashMap::new()),
                cold,
            }),
        }
    }

    /// Opens a managed ledger (creating it if new) with the factory's
    /// configuration; see [`ManagedLedgerFactory::open_with_config`].
    pub async fn open(&self, name: &str) -> Result<Arc<ManagedLedger>> {
        self.open_with_config(name, self.inner.config.clone()).await
    }

    /// Opens a managed ledger with its own configuration. If this factory
    /// has it open already, returns that instance (whose configuration
    /// stays; see [`ManagedLedger::set_config`]). Opening recovers the
    /// ledgers the previous owner left open, which fences that owner: call
    /// it only for topics this broker owns (a fenced or closed instance is
    /// replaced by a fresh one, which would take the topic back).
    pub async fn open_with_config(
        &self,
        name: &str,
        config: ManagedLedgerConfig,
    ) -> Result<Arc<ManagedLedger>> {
        keys::validate_name(name).map_err(|r| ManagedLedgerError::InvalidName(name.into(), r))?;
        config
            .validate()
            .map_err(ManagedLedgerError::InvalidConfig)?;
        loop {
            let slot = self
                .inner
                .open
                .lock()
                .entry(name.to_string())
                .or_default()
                .clone();
            let ml = slot
                .get_or_try_init(|| {
                    ManagedLedger::open(
                        name,
                        self.inner.client.clone(),
                        self.inner.cache.clone(),
                        config.clone(),
                        self.inner.cold.clone(),
                    )
                })
                .await?
                .clone();
            if !ml.is_closed() {
                return Ok(ml);
            }
            // Closed or fenced: replace it with a fresh instance.
            let mut open = self.inner.open.lock();
            if open.get(name).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                open.remove(name);
            }
        }
    }

    /// The open instance of `name`, if this factory has one.
    pub fn get(&self, name: &str) -> Option<Arc<ManagedLedger>> {
        let open = self.inner.open.lock();
        open.get(name)?.get().filter(|ml| !ml.is_closed()).cloned()
    }

    /// Whether a managed ledger of that name exists in the metadata store.
    pub async fn exists(&self, name: &str) -> Result<bool> {
        let store = self.inner.client.store();
        Ok(store.get(&keys::managed_ledger(name)).await?.is_some())
    }

    /// Deletes a managed ledger: closes it here if open, then deletes its
    /// cursors, its ledgers and its info record.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let slot = self.inner.open.lock().remove(name);
        if let Some(ml) = slot.as_ref().and_then(|s| s.get())
            && let Err(e) = ml.close().await
        {
            warn!(managed_ledger = name, error = %e, "close before delete failed");
        }
        let store = self.inner.client.store();
        let key = keys::managed_ledger(name);
        let Some((info, version)) =
            metadata::get_json::<ManagedLedgerInfo>(store.as_ref(), &key).await?
        else {
            return Err(ManagedLedgerError::NotFound(name.to_string()));
        };
        for kv in store.list(&keys::cursors_of(name)).await? {
            store.delete(&kv.key, Expect::Any).await?;
        }
        for l in &info.ledgers {
            match self.inner.client.delete(l.ledger_id).await {
                Ok(()) | Err(LedgerError::NoSuchLedger(_)) => {}
                Err(e) => return Err(e.into()),
            }
            self.inner.cache.invalidate_ledger(l.ledger_id);
            if let Some(cold) = &self.inner.cold {
                cold.delete(name, l.ledger_id)
                    .await
                    .map_err(|error| ManagedLedgerError::Cold {
                        ledger_id: l.ledger_id,
                        error,
                    })?;
            }
        }
        match store.delete(&key, Expect::Version(version)).await {
            Ok(()) => Ok(()),
            // Someone opened it meanwhile and added a ledger.
            Err(e) if e.is_bad_version() => Err(ManagedLedgerError::Fenced(name.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Names of the managed ledgers whose names start with `prefix` (e.g.
    /// `"public/default/persistent/"`), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let store = self.inner.client.store();
        let kvs = store.list(&keys::managed_ledger_prefix(prefix)).await?;
        Ok(kvs
            .iter()
            .filter_map(|kv| keys::managed_ledger_name(&kv.key))
            .collect())
    }

    /// Closes every open managed ledger (broker shutdown): seals their
    /// ledgers and persists their cursors. Errors are logged.
    pub async fn close_all(&self) {
        let slots: Vec<(String, Slot)> = self.inner.open.lock().drain().collect();
        let closes = slots.into_iter().filter_map(|(name, slot)| {
            let ml = slot.get()?.clone();
            Some(async move {
                if let Err(e) = ml.close().await {
                    warn!(managed_ledger = %name, error = %e, "close failed");
                }
            })
        });
        join_all(closes).await;
    }

    /// Counters of the shared entry cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }
}
