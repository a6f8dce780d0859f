//! The broker service: loaded topics, namespaces and ownership.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use strata_common::metadata::MetadataStore;
use strata_common::names::NamespaceName;
use strata_common::names::TopicName;
use strata_managed_ledger::{ManagedLedgerConfig, ManagedLedgerFactory};
use strata_offloader::tier::Tier;
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::auth::AuthService;
use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::metrics::BrokerMetrics;
use crate::ownership::{Owner, Ownership};
use crate::topic::Topic;

pub use crate::resources::{PartitionedTopicInfo, Policies, TenantInfo};

/// The namespace record is its policies.
pub type NamespacePolicies = Policies;

type TopicSlot = Arc<OnceCell<Arc<Topic>>>;

pub struct BrokerService {
    pub config: Arc<BrokerConfig>,
    pub store: Arc<dyn MetadataStore>,
    pub factory: ManagedLedgerFactory,
    pub ownership: Ownership,
    /// `pulsar://host:port` of this broker.
    pub service_url: String,
    topics: Mutex<HashMap<TopicName, TopicSlot>>,
    next_conn_id: AtomicU64,
    next_producer_name: AtomicU64,
    pub broker_id: String,
    /// Serializes admin creates and deletes of topics on this broker (the
    /// owner of a topic is the only one that creates or deletes it), so
    /// that concurrent creates give one success and conflicts.
    pub(crate) admin_lock: tokio::sync::Mutex<()>,
    /// Topics being deleted: not loaded again until the delete is done, so
    /// a client that reconnects at once does not reopen (and fence) the
    /// managed ledger under the delete.
    deleting: Mutex<HashSet<TopicName>>,
    pub metrics: Arc<BrokerMetrics>,
    /// The cold tier (object storage), when configured.
    pub cold: Option<Arc<Tier>>,
    /// Token authentication and role authorization (see `crate::auth`).
    pub auth: Arc<AuthService>,
}

/// Keeps a topic from loading while it is being deleted; see
/// [`BrokerService::begin_delete`].
pub(crate) struct DeletingGuard<'a> {
    service: &'a BrokerService,
    name: TopicName,
}

impl Drop for DeletingGuard<'_> {
    fn drop(&mut self) {
        self.service.deleting.lock().remove(&self.name);
    }
}

/// May loading a topic create it?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Creation {
    /// No: it must exist.
    Never,
    /// As a client's first use: if auto-creation is on, or if it is a
    /// partition of an existing partitioned topic.
    Auto,
    /// Yes (an admin create).
    Always,
}

impl BrokerService {
    pub fn new(
        config: Arc<BrokerConfig>,
        store: Arc<dyn MetadataStore>,
        factory: ManagedLedgerFactory,
        ownership: Ownership,
        service_url: String,
        broker_id: String,
        cold: Option<Arc<Tier>>,
    ) -> Self {
        BrokerService {
            config,
            store,
            factory,
            ownership,
            service_url,
            topics: Mutex::new(HashMap::new()),
            next_conn_id: AtomicU64::new(1),
            next_producer_name: AtomicU64::new(0),
            broker_id,
            admin_lock: tokio::sync::Mutex::new(()),
            deleting: Mutex::new(HashSet::new()),
            metrics: Arc::default(),
            cold,
            auth: Arc::new(AuthService::disabled()),
        }
    }

    /// With these authentication and authorization settings.
    pub fn with_auth(mut self, auth: AuthService) -> Self {
        self.auth = Arc::new(auth);
        self
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A producer name unique within this broker's lifetime.
    pub fn generate_producer_name(&self) -> String {
        let n = self.next_producer_name.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.broker_id)
    }

    /// Who serves `topic`; takes ownership of its bundle when free.
    pub async fn lookup(&self, topic: &TopicName) -> Result<Owner> {
        if !self.namespace_exists(&topic.namespace).await? {
            return Err(BrokerError::NamespaceNotFound(topic.namespace.to_string()));
        }
        self.ownership.acquire(topic).await
    }

    /// The loaded topic, loading (and, if allowed, creating) it first.
    pub async fn topic(&self, name: &TopicName, create: bool) -> Result<Arc<Topic>> {
        let creation = if create {
            Creation::Auto
        } else {
            Creation::Never
        };
        self.topic_with(name, creation).await
    }

    /// The loaded topic, loading it first with the given creation rule.
    pub(crate) async fn topic_with(
        &self,
        name: &TopicName,
        creation: Creation,
    ) -> Result<Arc<Topic>> {
        let slot = self
            .topics
            .lock()
            .entry(name.clone())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let result = slot
            .get_or_try_init(|| async { self.load_topic(name, creation).await })
            .await
            .cloned();
        if result.is_err() {
            // Let a later call try again.
            let mut topics = self.topics.lock();
            if topics
                .get(name)
                .is_some_and(|s| Arc::ptr_eq(s, &slot) && !s.initialized())
            {
                topics.remove(name);
            }
        }
        result
    }

    async fn load_topic(&self, name: &TopicName, creation: Creation) -> Result<Arc<Topic>> {
        if self.deleting.lock().contains(name) {
            return Err(BrokerError::ServiceNotReady(format!(
                "{name} is being deleted"
            )));
        }
        match self.lookup(name).await? {
            Owner::Me => {}
            Owner::Other(url) => {
                return Err(BrokerError::ServiceNotReady(format!(
                    "{name} is served by {url}"
                )));
            }
        }
        let ml_name = name.persistence_name();
        if !self.factory.exists(&ml_name).await? {
            self.check_may_create(name, creation).await?;
        }
        let ml = self.factory.open(&ml_name).await?;
        let policies = self.get_policies(&name.namespace).await?;
        if let Err(e) = ml.set_config(self.managed_ledger_config(&policies)) {
            warn!(topic = %name, error = %e, "namespace policies give an invalid managed-ledger configuration; keeping the broker's");
        }
        Topic::load(name.clone(), ml, self.config.dispatch_batch_entries).await
    }

    /// The managed-ledger configuration of a topic under `policies`: the
    /// broker's, with the namespace's retention.
    pub fn managed_ledger_config(&self, policies: &Policies) -> ManagedLedgerConfig {
        let mut cfg = self.config.managed_ledger.clone();
        if let Some(r) = &policies.retention_policies {
            // Pulsar: -1 is unlimited; 0 keeps nothing once consumed.
            cfg.retention_time = (r.retention_time_in_minutes >= 0)
                .then(|| Duration::from_secs(r.retention_time_in_minutes as u64 * 60));
            cfg.retention_size_bytes =
                (r.retention_size_in_mb >= 0).then(|| r.retention_size_in_mb as u64 * 1024 * 1024);
        }
        cfg
    }

    /// Applies changed namespace policies to the namespace's loaded topics.
    pub(crate) fn apply_policies(&self, ns: &NamespaceName, policies: &Policies) {
        let cfg = self.managed_ledger_config(policies);
        for topic in self.loaded_topics() {
            if &topic.name.namespace != ns {
                continue;
            }
            match topic.ml.set_config(cfg.clone()) {
                Ok(()) => topic.ml.trim_soon(),
                Err(e) => {
                    warn!(topic = %topic.name, error = %e, "could not apply namespace policies")
                }
            }
        }
    }

    /// Whether a new topic may be created here; see [`Creation`].
    async fn check_may_create(&self, name: &TopicName, creation: Creation) -> Result<()> {
        if self.partitions(name).await? > 0 {
            // Its partitions hold the data; a topic of the same name would shadow them.
            return Err(BrokerError::OperationNotAllowed(format!(
                "{name} is a partitioned topic; use its partitions"
            )));
        }
        let allowed = match creation {
            Creation::Never => false,
            Creation::Always => true,
            Creation::Auto => match name.partition() {
                // A partition exists only within its partitioned topic's count.
                Some(index) => match self.partitions(&name.base()).await? {
                    0 => self.config.allow_auto_topic_creation,
                    partitions => index < partitions,
                },
                None => self.config.allow_auto_topic_creation,
            },
        };
        if allowed {
            Ok(())
        } else {
            Err(BrokerError::TopicNotFound(name.to_string()))
        }
    }

    /// The topic if it is loaded (no loading, no ownership change).
    pub fn loaded_topic(&self, name: &TopicName) -> Option<Arc<Topic>> {
        self.topics.lock().get(name)?.get().cloned()
    }

    /// Every loaded topic.
    pub fn loaded_topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .lock()
            .values()
            .filter_map(|s| s.get().cloned())
            .collect()
    }

    /// Takes a loaded topic out of service: its clients are told to go (they
    /// reconnect and load it again on their next use) and its subscription
    /// tasks stop. The managed ledger stays open; the caller closes or
    /// deletes it.
    pub(crate) fn unload_topic(&self, name: &TopicName) -> Option<Arc<Topic>> {
        let topic = {
            let mut topics = self.topics.lock();
            // A topic still loading is left alone: it is not serving yet.
            let topic = topics.get(name)?.get().cloned()?;
            topics.remove(name);
            topic
        };
        topic.shutdown();
        Some(topic)
    }

    /// Marks a topic as being deleted until the guard is dropped.
    pub(crate) fn begin_delete(&self, name: &TopicName) -> DeletingGuard<'_> {
        self.deleting.lock().insert(name.clone());
        DeletingGuard {
            service: self,
            name: name.clone(),
        }
    }

    /// Unloads every topic and closes their storage (clean shutdown).
    pub async fn shutdown(&self) {
        let topics: Vec<Arc<Topic>> = self
            .topics
            .lock()
            .drain()
            .filter_map(|(_, s)| s.get().cloned())
            .collect();
        for t in &topics {
            t.shutdown();
        }
        self.factory.close_all().await;
        self.ownership.release_all().await;
        info!(topics = topics.len(), "broker service stopped");
    }

    /// Logs a failure that is about to be reported to a client.
    pub fn log_client_error(&self, what: &str, e: &BrokerError) {
        match e {
            BrokerError::Persistence(_) | BrokerError::Metadata(_) | BrokerError::Unknown(_) => {
                warn!(error = %e, "{what} failed")
            }
            _ => tracing::debug!(error = %e, "{what} refused"),
        }
    }
}
