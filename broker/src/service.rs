//! The broker service: loaded topics, namespaces and ownership.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strata_common::metadata::{Expect, MetadataStore, PutOptions};
use strata_common::names::{NamespaceName, TopicName};
use strata_common::paths;
use strata_managed_ledger::ManagedLedgerFactory;
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::config::{AutoTopicCreationType, BrokerConfig};
use crate::error::{BrokerError, Result};
use crate::metrics::BrokerMetrics;
use crate::ownership::{Owner, Ownership};
use crate::topic::Topic;

/// A tenant record (policies grow with the multi-tenancy work).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TenantInfo {
    #[serde(default, rename = "adminRoles")]
    pub admin_roles: Vec<String>,
    #[serde(default, rename = "allowedClusters")]
    pub allowed_clusters: Vec<String>,
}

/// A namespace record (its policies).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NamespacePolicies {}

/// A partitioned topic record.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PartitionedTopicInfo {
    pub partitions: u32,
}

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
    pub metrics: Arc<BrokerMetrics>,
}

impl BrokerService {
    pub fn new(
        config: Arc<BrokerConfig>,
        store: Arc<dyn MetadataStore>,
        factory: ManagedLedgerFactory,
        ownership: Ownership,
        service_url: String,
        broker_id: String,
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
            metrics: Arc::default(),
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A producer name unique within this broker's lifetime.
    pub fn generate_producer_name(&self) -> String {
        let n = self.next_producer_name.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.broker_id)
    }

    /// Creates a tenant and namespace if they do not exist.
    pub async fn ensure_namespace(&self, ns: &NamespaceName) -> Result<()> {
        let put_absent = |key: String, value: Vec<u8>| async move {
            match self
                .store
                .put(&key, value.into(), PutOptions::expect(Expect::Absent))
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.is_bad_version() => Ok(()),
                Err(e) => Err(BrokerError::from(e)),
            }
        };
        let tenant = TenantInfo {
            admin_roles: vec![],
            allowed_clusters: vec!["standalone".into()],
        };
        put_absent(
            paths::tenant(&ns.tenant),
            serde_json::to_vec(&tenant).expect("serializable"),
        )
        .await?;
        put_absent(
            paths::namespace(&ns.tenant, &ns.namespace),
            serde_json::to_vec(&NamespacePolicies::default()).expect("serializable"),
        )
        .await
    }

    pub async fn namespace_exists(&self, ns: &NamespaceName) -> Result<bool> {
        Ok(self
            .store
            .get(&paths::namespace(&ns.tenant, &ns.namespace))
            .await?
            .is_some())
    }

    /// Partition count of a partitioned topic (0: not partitioned).
    pub async fn partitions(&self, topic: &TopicName) -> Result<u32> {
        let key = paths::partitioned_topic(&topic.base().persistence_name());
        match self.store.get(&key).await? {
            None => Ok(0),
            Some(v) => serde_json::from_slice::<PartitionedTopicInfo>(&v.value)
                .map(|i| i.partitions)
                .map_err(|e| BrokerError::Metadata(format!("unreadable record {key}: {e}"))),
        }
    }

    /// Partition count answered to a client's PARTITIONED_METADATA. A topic
    /// that does not exist yet becomes a partitioned topic here when auto
    /// creation is on, of the partitioned type, and the client allows it.
    pub async fn partitioned_metadata(&self, topic: &TopicName, auto_create: bool) -> Result<u32> {
        let n = self.partitions(topic).await?;
        if n > 0
            || topic.partition().is_some()
            || !auto_create
            || !self.config.allow_auto_topic_creation
            || self.config.auto_topic_creation_type != AutoTopicCreationType::Partitioned
            || self.factory.exists(&topic.persistence_name()).await?
        {
            return Ok(n);
        }
        let partitions = self.config.default_num_partitions.max(1);
        let key = paths::partitioned_topic(&topic.persistence_name());
        let record = serde_json::to_vec(&PartitionedTopicInfo { partitions }).expect("serializable");
        match self
            .store
            .put(&key, record.into(), PutOptions::expect(Expect::Absent))
            .await
        {
            Ok(_) => {
                info!(topic = %topic, partitions, "created partitioned topic on first use");
                Ok(partitions)
            }
            // Created concurrently: answer what is there.
            Err(e) if e.is_bad_version() => self.partitions(topic).await,
            Err(e) => Err(e.into()),
        }
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
        let slot = self
            .topics
            .lock()
            .entry(name.clone())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let result = slot
            .get_or_try_init(|| async { self.load_topic(name, create).await })
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

    async fn load_topic(&self, name: &TopicName, create: bool) -> Result<Arc<Topic>> {
        match self.lookup(name).await? {
            Owner::Me => {}
            Owner::Other(url) => {
                return Err(BrokerError::ServiceNotReady(format!(
                    "{name} is served by {url}"
                )));
            }
        }
        let ml_name = name.persistence_name();
        let mut may_create = create && self.config.allow_auto_topic_creation;
        if may_create && let Some(index) = name.partition() {
            // A partition exists only as part of its partitioned topic.
            let partitions = self.partitions(name).await?;
            if index >= partitions {
                may_create = false;
            }
        } else if may_create && self.partitions(name).await? > 0 {
            return Err(BrokerError::NotAllowed(format!(
                "{name} is a partitioned topic: use its partitions"
            )));
        }
        if !may_create && !self.factory.exists(&ml_name).await? {
            return Err(BrokerError::TopicNotFound(name.to_string()));
        }
        let ml = self.factory.open(&ml_name).await?;
        Topic::load(name.clone(), ml, self.config.dispatch_batch_entries).await
    }

    /// Every persistent topic of a namespace, fully qualified.
    pub async fn topics_of_namespace(&self, ns: &NamespaceName) -> Result<Vec<String>> {
        let prefix = format!("{ns}/persistent/");
        let names = self.factory.list(&prefix).await?;
        Ok(names
            .into_iter()
            .filter_map(|n| {
                n.strip_prefix(&prefix)
                    .map(|l| format!("persistent://{ns}/{l}"))
            })
            .collect())
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
