//! Topics: partitioned-topic records, listing, and admin creates, deletes
//! and unloads of topics.

use std::collections::BTreeSet;
use std::sync::Arc;

use strata_common::metadata::{Expect, Version};
use strata_common::names::{NamespaceName, PARTITION_SUFFIX, TopicName};
use strata_common::paths;
use strata_managed_ledger::ManagedLedgerError;

use super::{PartitionedTopicInfo, read, write};
use crate::config::AutoTopicCreationType;
use crate::error::{BrokerError, Result};
use crate::ownership::Owner;
use crate::service::{BrokerService, Creation};
use crate::topic::Topic;

fn partitioned_key(topic: &TopicName) -> String {
    paths::partitioned_topic(&topic.persistence_name())
}

impl BrokerService {
    /// Partition count of a partitioned topic; 0 for a topic that is not
    /// partitioned, or is itself a partition (as Pulsar answers).
    pub async fn partitions(&self, topic: &TopicName) -> Result<u32> {
        Ok(self
            .partitioned_info(topic)
            .await?
            .map_or(0, |(i, _)| i.partitions))
    }

    /// The partitioned-topic record of `topic`, if it is one.
    pub async fn partitioned_info(
        &self,
        topic: &TopicName,
    ) -> Result<Option<(PartitionedTopicInfo, Version)>> {
        if topic.partition().is_some() {
            return Ok(None);
        }
        read(self, &partitioned_key(topic)).await
    }

    /// Whether a (non-partitioned) topic or partition has a managed ledger.
    pub async fn topic_exists(&self, topic: &TopicName) -> Result<bool> {
        Ok(self.factory.exists(&topic.persistence_name()).await?)
    }

    /// Topics with a managed ledger in `ns`, fully qualified, sorted.
    pub async fn list_managed_topics(&self, ns: &NamespaceName) -> Result<Vec<String>> {
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

    /// Partitioned topics of `ns`, fully qualified, sorted.
    pub async fn list_partitioned_topics(&self, ns: &NamespaceName) -> Result<Vec<String>> {
        let prefix = paths::partitioned_topic(&format!("{ns}/persistent/"));
        let kvs = self.store.list(&prefix).await?;
        Ok(kvs
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(&prefix))
            .filter(|l| !l.contains('/'))
            .map(|l| format!("persistent://{ns}/{l}"))
            .collect())
    }

    /// Every topic of a namespace: those with a managed ledger and every
    /// partition of its partitioned topics (used or not yet), sorted.
    pub async fn topics_of_namespace(&self, ns: &NamespaceName) -> Result<Vec<String>> {
        let mut all: BTreeSet<String> = self.list_managed_topics(ns).await?.into_iter().collect();
        let prefix = paths::partitioned_topic(&format!("{ns}/persistent/"));
        for kv in self.store.list(&prefix).await? {
            let Some(local) = kv.key.strip_prefix(&prefix) else {
                continue;
            };
            let Ok(info) = serde_json::from_slice::<PartitionedTopicInfo>(&kv.value) else {
                tracing::warn!(key = %kv.key, "unreadable partitioned-topic record skipped");
                continue;
            };
            for i in 0..info.partitions {
                all.insert(format!("persistent://{ns}/{local}{PARTITION_SUFFIX}{i}"));
            }
        }
        Ok(all.into_iter().collect())
    }

    /// Refuses `adding` more topics in `ns` past its maximum (the
    /// namespace's `max_topics_per_namespace`, else the broker's; each
    /// partition counts as a topic).
    pub(crate) async fn check_max_topics(&self, ns: &NamespaceName, adding: u32) -> Result<()> {
        let policy = self.get_policies(ns).await?.max_topics_per_namespace;
        let max = crate::limits::pick(policy, self.config.limits.max_topics_per_namespace);
        if max == 0 || adding == 0 {
            return Ok(());
        }
        let have = self.topics_of_namespace(ns).await?.len();
        if have + adding as usize > max as usize {
            self.metrics.limit_rejections.inc();
            return Err(BrokerError::PreconditionFailed(format!(
                "namespace {ns} has {have} topics; {adding} more would exceed its maximum of {max}"
            )));
        }
        Ok(())
    }

    /// [`BrokerService::topics_of_namespace`] of an existing namespace.
    pub async fn list_topics(&self, ns: &NamespaceName) -> Result<Vec<String>> {
        if !self.namespace_exists(ns).await? {
            return Err(BrokerError::NamespaceNotFound(ns.to_string()));
        }
        self.topics_of_namespace(ns).await
    }

    /// Creates a partitioned topic of `partitions` partitions (their
    /// managed ledgers are created on first use).
    pub async fn create_partitioned_topic(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        if topic.local.contains(PARTITION_SUFFIX) {
            return Err(BrokerError::InvalidArgument(format!(
                "invalid topic name {topic}: a partitioned topic's name may not contain {PARTITION_SUFFIX:?}"
            )));
        }
        if !self.namespace_exists(&topic.namespace).await? {
            return Err(BrokerError::NamespaceNotFound(topic.namespace.to_string()));
        }
        let _admin = self.admin_lock.lock().await;
        if self.topic_exists(topic).await? {
            return Err(BrokerError::AlreadyExists(format!(
                "topic {topic} (as a non-partitioned topic)"
            )));
        }
        if self.partitions(topic).await? == 0 {
            self.check_max_topics(&topic.namespace, partitions).await?;
        }
        let info = PartitionedTopicInfo { partitions };
        if write(self, &partitioned_key(topic), &info, Expect::Absent).await? {
            Ok(())
        } else {
            Err(BrokerError::AlreadyExists(format!(
                "partitioned topic {topic}"
            )))
        }
    }

    /// Partition count answered to a client's PARTITIONED_METADATA. A topic
    /// that does not exist yet becomes a partitioned topic of
    /// `default_num_partitions` here when auto creation is on, of the
    /// partitioned type, and the client allows it.
    pub async fn partitioned_metadata(&self, topic: &TopicName, auto_create: bool) -> Result<u32> {
        let n = self.partitions(topic).await?;
        if n > 0
            || topic.partition().is_some()
            || !auto_create
            || !self.config.allow_auto_topic_creation
            || self.config.auto_topic_creation_type != AutoTopicCreationType::Partitioned
            || self.topic_exists(topic).await?
        {
            return Ok(n);
        }
        let partitions = self.config.default_num_partitions.max(1);
        self.check_max_topics(&topic.namespace, partitions).await?;
        let info = PartitionedTopicInfo { partitions };
        if write(self, &partitioned_key(topic), &info, Expect::Absent).await? {
            tracing::info!(topic = %topic, partitions, "created a partitioned topic on first use");
            Ok(partitions)
        } else {
            // Created concurrently: answer what is there.
            self.partitions(topic).await
        }
    }

    /// Raises a partitioned topic's partition count (it never shrinks).
    pub async fn update_partitions(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        let Some((info, version)) = self.partitioned_info(topic).await? else {
            return Err(BrokerError::TopicNotFound(format!(
                "partitioned topic {topic}"
            )));
        };
        if partitions <= info.partitions {
            return Err(BrokerError::Conflict(format!(
                "{topic} has {} partitions; the count can only grow, so {partitions} is refused",
                info.partitions
            )));
        }
        self.check_max_topics(&topic.namespace, partitions - info.partitions)
            .await?;
        let new = PartitionedTopicInfo { partitions };
        if write(
            self,
            &partitioned_key(topic),
            &new,
            Expect::Version(version),
        )
        .await?
        {
            Ok(())
        } else {
            Err(BrokerError::Conflict(format!(
                "the partitions of {topic} were changed concurrently; try again"
            )))
        }
    }

    /// Deletes a partitioned topic and its partitions. With connected
    /// clients it is refused unless `force`, which disconnects them.
    pub async fn delete_partitioned_topic(&self, topic: &TopicName, force: bool) -> Result<()> {
        let Some((info, _)) = self.partitioned_info(topic).await? else {
            return Err(BrokerError::TopicNotFound(format!(
                "partitioned topic {topic}"
            )));
        };
        let _admin = self.admin_lock.lock().await;
        let parts: Vec<TopicName> = (0..info.partitions)
            .map(|i| topic.partition_topic(i))
            .collect();
        if !force
            && let Some(p) = parts
                .iter()
                .find(|p| self.loaded_topic(p).is_some_and(|t| t.has_clients()))
        {
            return Err(BrokerError::PreconditionFailed(format!(
                "partition {p} has connected producers or consumers; use force=true to disconnect them"
            )));
        }
        for p in &parts {
            match self.delete_topic_locked(p, true).await {
                Ok(()) | Err(BrokerError::TopicNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.store
            .delete(&partitioned_key(topic), Expect::Any)
            .await?;
        Ok(())
    }

    /// Creates a non-partitioned topic (its managed ledger) and loads it.
    pub async fn create_topic(&self, topic: &TopicName) -> Result<()> {
        if self.partitions(topic).await? > 0 {
            return Err(BrokerError::AlreadyExists(format!(
                "topic {topic} (as a partitioned topic)"
            )));
        }
        if !self.namespace_exists(&topic.namespace).await? {
            return Err(BrokerError::NamespaceNotFound(topic.namespace.to_string()));
        }
        let _admin = self.admin_lock.lock().await;
        if self.topic_exists(topic).await? {
            return Err(BrokerError::AlreadyExists(format!("topic {topic}")));
        }
        self.topic_with(topic, Creation::Always).await?;
        Ok(())
    }

    /// Deletes a non-partitioned topic (or one partition): its managed
    /// ledger, cursors and metadata. With connected clients it is refused
    /// unless `force`, which disconnects them.
    pub async fn delete_topic(&self, topic: &TopicName, force: bool) -> Result<()> {
        if self.partitions(topic).await? > 0 {
            return Err(BrokerError::Conflict(format!(
                "{topic} is a partitioned topic; delete it with DELETE .../partitions"
            )));
        }
        let _admin = self.admin_lock.lock().await;
        self.delete_topic_locked(topic, force).await
    }

    async fn delete_topic_locked(&self, topic: &TopicName, force: bool) -> Result<()> {
        let ml_name = topic.persistence_name();
        match self.loaded_topic(topic) {
            Some(t) if t.has_clients() && !force => {
                return Err(BrokerError::PreconditionFailed(format!(
                    "topic {topic} has connected producers or consumers; use force=true to disconnect them"
                )));
            }
            Some(_) => {}
            None => {
                if !self.factory.exists(&ml_name).await? {
                    return Err(BrokerError::TopicNotFound(topic.to_string()));
                }
            }
        }
        self.check_owner(topic).await?;
        let _deleting = self.begin_delete(topic);
        self.unload_topic(topic);
        match self.factory.delete(&ml_name).await {
            Ok(()) => Ok(()),
            Err(ManagedLedgerError::NotFound(_)) => {
                Err(BrokerError::TopicNotFound(topic.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Unloads a topic: clients are disconnected (they reconnect and load
    /// it again), cursors are saved and the managed ledger is closed.
    pub async fn unload(&self, topic: &TopicName) -> Result<()> {
        let targets = match self.partitions(topic).await? {
            0 => vec![topic.clone()],
            n => (0..n).map(|i| topic.partition_topic(i)).collect(),
        };
        let mut found = false;
        for t in &targets {
            if let Some(loaded) = self.unload_topic(t) {
                found = true;
                loaded.ml.close().await?;
            } else if self.topic_exists(t).await? {
                found = true;
            }
        }
        if found || targets.len() > 1 {
            Ok(())
        } else {
            Err(BrokerError::TopicNotFound(topic.to_string()))
        }
    }

    /// Errors unless this broker serves `topic` (taking its bundle if free).
    async fn check_owner(&self, topic: &TopicName) -> Result<()> {
        match self.lookup(topic).await? {
            Owner::Me => Ok(()),
            Owner::Other(url) => Err(BrokerError::ServiceNotReady(format!(
                "{topic} is served by {url}"
            ))),
        }
    }

    /// The loaded topic for an admin operation. `create` lets a partition
    /// of an existing partitioned topic be created on first use (as a
    /// client's first use would).
    pub async fn admin_topic(&self, topic: &TopicName, create: bool) -> Result<Arc<Topic>> {
        if let Some(t) = self.loaded_topic(topic) {
            return Ok(t);
        }
        let creation = if create && topic.partition().is_some() {
            Creation::Auto
        } else {
            Creation::Never
        };
        self.topic_with(topic, creation).await
    }
}
