//! Backlog quotas, the storage quota and message TTL, checked by one
//! broker task ([`policy_loop`]) over the loaded topics and again when a
//! producer is created.
//!
//! - A backlog quota (`destination_storage`: bytes behind the slowest
//!   durable subscription; `message_age`: age of its oldest unacknowledged
//!   message) that is exceeded either blocks producers
//!   (`producer_request_hold`, `producer_exception`) or moves the slowest
//!   cursors forward until the topic is within it
//!   (`consumer_backlog_eviction`).
//! - The storage quota counts a namespace's bytes on both tiers; once used
//!   up it blocks the namespace's producers the same way.
//! - Blocking is what Pulsar does: the producers are closed, and a
//!   producer created (or re-created by its client) while the quota is
//!   exceeded is refused with `ProducerBlockedQuotaExceededError` (hold:
//!   clients retry, their sends wait and time out) or
//!   `ProducerBlockedQuotaExceededException` (their sends fail at once).
//!   Data already acknowledged is never dropped.
//! - Message TTL acknowledges, on every subscription, what was published
//!   longer ago than the TTL.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use strata_common::metadata;
use strata_common::names::NamespaceName;
use strata_managed_ledger::{LedgerInfo, ManagedLedgerInfo, Position};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::BacklogLimit;
use crate::error::{BrokerError, Result};
use crate::resources::BacklogQuotaPolicy;
use crate::service::BrokerService;
use crate::stats::now_ms;
use crate::topic::Topic;

/// Why a topic's producers are blocked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaBlock {
    /// `ProducerRequestHold` or `ProducerException`.
    pub policy: BacklogQuotaPolicy,
    pub reason: String,
}

impl QuotaBlock {
    /// The error a producer gets while blocked.
    pub fn error(&self) -> BrokerError {
        match self.policy {
            BacklogQuotaPolicy::ProducerException => {
                BrokerError::QuotaExceededException(self.reason.clone())
            }
            _ => BrokerError::QuotaExceededHold(self.reason.clone()),
        }
    }
}

/// What a topic's backlog is, against its quotas.
#[derive(Debug, Default)]
struct Backlog {
    /// Bytes behind the slowest durable subscription.
    bytes: u64,
    /// Age of the oldest unacknowledged message (when an age quota is set).
    age: Option<Duration>,
}

/// Checks quotas every `backlog_quota_check_interval` and TTLs every
/// `message_expiry_check_interval`, until `cancel`.
pub async fn policy_loop(service: Weak<BrokerService>, cancel: CancellationToken) {
    let (quota_every, ttl_every) = match service.upgrade() {
        Some(s) => (
            s.config.backlog_quota_check_interval,
            s.config.message_expiry_check_interval,
        ),
        None => return,
    };
    let mut quota_tick = tokio::time::interval(quota_every.max(Duration::from_millis(100)));
    let mut ttl_tick = tokio::time::interval(ttl_every.max(Duration::from_millis(100)));
    quota_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ttl_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let quota = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = quota_tick.tick() => true,
            _ = ttl_tick.tick() => false,
        };
        let Some(service) = service.upgrade() else {
            return;
        };
        if quota {
            service.check_storage_quotas().await;
            for topic in service.loaded_topics() {
                if let Err(e) = service.check_backlog_quota(&topic).await {
                    debug!(topic = %topic.name, error = %e, "backlog quota check failed");
                }
            }
        } else {
            for topic in service.loaded_topics() {
                if let Err(e) = service.expire_by_ttl(&topic).await {
                    debug!(topic = %topic.name, error = %e, "message TTL check failed");
                }
            }
        }
    }
}

/// Applies namespace policies changed anywhere in the cluster (another
/// broker's admin API, a tool writing the metadata store) to this broker's
/// loaded topics, until `cancel`.
pub async fn policy_watch(service: Weak<BrokerService>, cancel: CancellationToken) {
    use futures::StreamExt;
    use strata_common::metadata::WatchEvent;
    use strata_common::paths;
    loop {
        let Some(store) = service.upgrade().map(|s| s.store.clone()) else {
            return;
        };
        let mut events = match store.watch(paths::NAMESPACES).await {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "namespace policy watch failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let ev = tokio::select! {
                _ = cancel.cancelled() => return,
                ev = events.next() => ev,
            };
            let Some(service) = service.upgrade() else {
                return;
            };
            match ev {
                Some(Ok(WatchEvent::Put { key, value, .. })) => {
                    let Some(Ok(ns)) = key
                        .strip_prefix(paths::NAMESPACES)
                        .map(NamespaceName::parse)
                    else {
                        continue;
                    };
                    match serde_json::from_slice::<crate::resources::Policies>(&value) {
                        Ok(p) => service.apply_policies(&ns, &p),
                        Err(e) => {
                            warn!(namespace = %ns, error = %e, "unreadable namespace policies")
                        }
                    }
                }
                Some(Ok(WatchEvent::Delete { .. })) => {}
                // Lost events or a broken stream: re-read every namespace of a loaded topic.
                Some(Ok(WatchEvent::Lagged)) | Some(Err(_)) | None => {
                    let mut seen = std::collections::HashSet::new();
                    for t in service.loaded_topics() {
                        let ns = t.name.namespace.clone();
                        if seen.insert(ns.to_string())
                            && let Ok(p) = service.get_policies(&ns).await
                        {
                            service.apply_policies(&ns, &p);
                        }
                    }
                    if !matches!(ev, Some(Ok(WatchEvent::Lagged))) {
                        break;
                    }
                }
            }
        }
    }
}

impl BrokerService {
    /// Refuses a new producer on a topic whose quota is exceeded (checked
    /// afresh, so a quota freed since the last check lets it in).
    pub(crate) async fn admit_producer_quota(&self, topic: &Arc<Topic>) -> Result<()> {
        if self.storage_block(&topic.name.namespace).is_some() {
            self.check_storage_quota(&topic.name.namespace).await?;
            if let Some(b) = self.storage_block(&topic.name.namespace) {
                return Err(b.error());
            }
        }
        self.check_backlog_quota(topic).await?;
        match topic.quota_block() {
            Some(b) => Err(b.error()),
            None => Ok(()),
        }
    }

    fn storage_block(&self, ns: &NamespaceName) -> Option<QuotaBlock> {
        self.storage_blocks.lock().get(ns).cloned()
    }

    /// Evaluates one topic's backlog quotas: evicts or blocks as the
    /// policies say, and lifts a block that no longer holds.
    pub(crate) async fn check_backlog_quota(&self, topic: &Arc<Topic>) -> Result<()> {
        let limits = topic.limits();
        if limits.backlog_size.is_none() && limits.backlog_age.is_none() {
            topic.set_quota_block(None);
            return Ok(());
        }
        let backlog = measure(topic, limits.backlog_age.is_some()).await?;
        let mut block = None;
        if let Some(q) = limits.backlog_size
            && backlog.bytes > q.limit
        {
            let reason = format!(
                "backlog of {} is {} bytes, over its quota of {} bytes",
                topic.name, backlog.bytes, q.limit
            );
            match q.policy {
                BacklogQuotaPolicy::ConsumerBacklogEviction => {
                    evict_for_size(topic, q.limit);
                    self.metrics.backlog_evictions.inc();
                    info!(topic = %topic.name, %reason, "evicting the oldest backlog");
                }
                policy => block = Some(QuotaBlock { policy, reason }),
            }
        }
        if let Some(BacklogLimit { limit, policy }) = limits.backlog_age
            && let Some(age) = backlog.age
            && age > limit
        {
            let reason = format!(
                "oldest unacknowledged message of {} is {}s old, over its quota of {}s",
                topic.name,
                age.as_secs(),
                limit.as_secs()
            );
            match policy {
                BacklogQuotaPolicy::ConsumerBacklogEviction => {
                    let cutoff = now_ms().saturating_sub(limit.as_millis() as u64);
                    for s in topic.subscriptions().iter().filter(|s| s.durable) {
                        crate::resources::expire_before(topic, s, cutoff).await?;
                    }
                    self.metrics.backlog_evictions.inc();
                    info!(topic = %topic.name, %reason, "evicting messages past the age quota");
                }
                policy => {
                    if block.is_none() {
                        block = Some(QuotaBlock { policy, reason })
                    }
                }
            }
        }
        if block.is_some() && topic.quota_block().is_none() {
            self.metrics.backlog_quota_blocks.inc();
        }
        topic.set_quota_block(block);
        Ok(())
    }

    /// Checks the storage quota of every namespace with loaded topics.
    async fn check_storage_quotas(&self) {
        let mut namespaces: Vec<NamespaceName> = self
            .loaded_topics()
            .iter()
            .map(|t| t.name.namespace.clone())
            .collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        // Namespaces blocked earlier but with no topic loaded now are
        // re-checked too, so their block does not outlive the quota.
        let blocked: Vec<NamespaceName> = self.storage_blocks.lock().keys().cloned().collect();
        for ns in blocked {
            if !namespaces.contains(&ns) {
                namespaces.push(ns);
            }
        }
        for ns in namespaces {
            if let Err(e) = self.check_storage_quota(&ns).await {
                debug!(namespace = %ns, error = %e, "storage quota check failed");
            }
        }
    }

    /// Evaluates one namespace's storage quota (hot + cold bytes).
    pub(crate) async fn check_storage_quota(&self, ns: &NamespaceName) -> Result<()> {
        let quota = match self.get_policies(ns).await {
            Ok(p) => p.storage_quota.filter(|q| q.limit_size >= 0),
            Err(BrokerError::NamespaceNotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let Some(quota) = quota else {
            self.set_storage_block(ns, None);
            return Ok(());
        };
        let used = self.namespace_storage_bytes(ns).await?;
        let block = (used > quota.limit_size as u64).then(|| QuotaBlock {
            policy: quota.policy,
            reason: format!(
                "namespace {ns} stores {used} bytes (both tiers), over its storage quota of {} bytes",
                quota.limit_size
            ),
        });
        self.set_storage_block(ns, block);
        Ok(())
    }

    fn set_storage_block(&self, ns: &NamespaceName, block: Option<QuotaBlock>) {
        let changed = {
            let mut blocks = self.storage_blocks.lock();
            match &block {
                Some(b) => blocks.insert(ns.clone(), b.clone()).is_none(),
                None => blocks.remove(ns).is_some(),
            }
        };
        if !changed {
            return;
        }
        match &block {
            Some(b) => {
                warn!(namespace = %ns, reason = %b.reason, policy = ?b.policy, "storage quota exceeded; producers blocked");
                self.metrics.storage_quota_blocks.inc();
                for t in self.loaded_topics() {
                    if &t.name.namespace == ns {
                        t.close_producers();
                    }
                }
            }
            None => info!(namespace = %ns, "storage quota no longer exceeded"),
        }
    }

    /// Bytes a namespace keeps on both tiers: loaded topics from their live
    /// view, others from their stored records.
    pub(crate) async fn namespace_storage_bytes(&self, ns: &NamespaceName) -> Result<u64> {
        let loaded: HashMap<String, Arc<Topic>> = self
            .loaded_topics()
            .into_iter()
            .filter(|t| &t.name.namespace == ns)
            .map(|t| (t.ml.name().to_string(), t))
            .collect();
        let mut total = 0;
        for name in self.factory.list(&format!("{ns}/persistent/")).await? {
            let ledgers: Vec<LedgerInfo> = match loaded.get(&name) {
                Some(t) => t.ml.stats().ledgers,
                None => match metadata::get_json::<ManagedLedgerInfo>(
                    self.store.as_ref(),
                    &strata_managed_ledger::keys::managed_ledger(&name),
                )
                .await?
                {
                    Some((info, _)) => info.ledgers,
                    None => continue,
                },
            };
            total += match &self.cold {
                Some(tier) => {
                    let u = tier
                        .topic_usage(&name, &ledgers)
                        .await
                        .map_err(crate::resources::offload_error)?;
                    u.hot_bytes + u.cold_bytes
                }
                None => ledgers.iter().map(|l| l.size_bytes).sum(),
            };
        }
        Ok(total)
    }

    /// Acknowledges, on every subscription of `topic`, what is older than
    /// the namespace's message TTL.
    pub(crate) async fn expire_by_ttl(&self, topic: &Arc<Topic>) -> Result<()> {
        let Some(ttl) = topic.limits().message_ttl else {
            return Ok(());
        };
        let cutoff = now_ms().saturating_sub(ttl.as_millis() as u64);
        for s in topic.subscriptions() {
            if s.cursor.backlog() == 0 {
                continue;
            }
            if crate::resources::expire_before(topic, &s, cutoff).await? {
                self.metrics.ttl_expirations.inc();
            }
        }
        Ok(())
    }
}

/// The topic's backlog: bytes behind its slowest durable subscription and,
/// if `with_age`, the age of the oldest message that subscription has not
/// acknowledged.
async fn measure(topic: &Topic, with_age: bool) -> Result<Backlog> {
    let ledgers = topic.ml.stats().ledgers;
    let mut out = Backlog::default();
    let mut slowest: Option<Position> = None;
    for s in topic.subscriptions().iter().filter(|s| s.durable) {
        let (_, bytes) = crate::stats::backlog_of(s, &ledgers);
        out.bytes = out.bytes.max(bytes);
        if s.cursor.backlog() > 0 {
            let md = s.cursor.mark_delete_position();
            slowest = Some(slowest.map_or(md, |p| p.min(md)));
        }
    }
    if with_age && let Some(md) = slowest {
        let first = topic.ml.next_position(md);
        match topic.ml.read_entry(first).await {
            Ok(e) => {
                let t = crate::resources::entry_time(&e);
                out.age = Some(Duration::from_millis(now_ms().saturating_sub(t)));
            }
            Err(e) => {
                debug!(topic = %topic.name, position = %first, error = %e, "cannot read the oldest backlog entry")
            }
        }
    }
    Ok(out)
}

/// Moves every durable subscription whose backlog is over `limit` bytes
/// forward, to where what is left fits.
fn evict_for_size(topic: &Topic, limit: u64) {
    let ledgers = topic.ml.stats().ledgers;
    let Some(target) = keep_last_bytes(&ledgers, limit) else {
        return;
    };
    for s in topic.subscriptions().iter().filter(|s| s.durable) {
        if s.cursor.mark_delete_position() < target {
            s.admin_ack_through(target);
        }
    }
}

/// The position through which everything must be acknowledged so that at
/// most `limit` bytes remain after it (entries sized by their ledger's
/// average); `None` when everything fits.
fn keep_last_bytes(ledgers: &[LedgerInfo], limit: u64) -> Option<Position> {
    let mut kept = 0u64;
    for (i, l) in ledgers.iter().enumerate().rev() {
        if l.entries == 0 {
            continue;
        }
        if kept + l.size_bytes <= limit {
            kept += l.size_bytes;
            continue;
        }
        // Keep the newest entries of this ledger that still fit.
        let avg = (l.size_bytes / l.entries).max(1);
        let fit = ((limit - kept) / avg).min(l.entries);
        if fit < l.entries {
            return Some(Position::new(l.ledger_id, l.entries - fit - 1));
        }
        // All its entries fit by the average: everything before it goes.
        return ledgers[..i]
            .iter()
            .rev()
            .find(|p| p.entries > 0)
            .map(|p| Position::new(p.ledger_id, p.entries - 1));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(id: u64, entries: u64, size: u64) -> LedgerInfo {
        LedgerInfo {
            ledger_id: id,
            entries,
            size_bytes: size,
            created_ms: 0,
            closed: true,
            closed_ms: None,
        }
    }

    #[test]
    fn eviction_keeps_the_newest_bytes_that_fit() {
        let ledgers = [ledger(1, 10, 1000), ledger(2, 10, 1000)];
        assert_eq!(keep_last_bytes(&ledgers, 5000), None);
        assert_eq!(keep_last_bytes(&ledgers, 2000), None);
        // 1500 bytes: all of ledger 2 and the last 5 entries of ledger 1.
        assert_eq!(keep_last_bytes(&ledgers, 1500), Some(Position::new(1, 4)));
        // 500 bytes: the last 5 entries of ledger 2.
        assert_eq!(keep_last_bytes(&ledgers, 500), Some(Position::new(2, 4)));
        // Nothing fits: through the last entry.
        assert_eq!(keep_last_bytes(&ledgers, 0), Some(Position::new(2, 9)));
        // A ledger that fits exactly up to its start: through the previous ledger.
        assert_eq!(keep_last_bytes(&ledgers, 1000), Some(Position::new(1, 9)));
    }
}
