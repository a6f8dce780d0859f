//! LOOKUP, PARTITIONED_METADATA and GET_TOPICS_OF_NAMESPACE.
//!
//! Failures of the first two go inside their response (`response=Failed`),
//! never as ERROR: the C++ client ignores ERROR for lookups.

use std::sync::Arc;
use std::time::Instant;

use strata_common::names::{NamespaceName, TopicName};
use strata_proto::pulsar::{
    CommandGetTopicsOfNamespace, CommandLookupTopic, CommandPartitionedTopicMetadata,
    command_get_topics_of_namespace::Mode,
};

use super::{Conn, spawn};
use crate::auth::{Need, Operation};
use crate::commands;
use crate::error::BrokerError;
use crate::ownership::Owner;

impl Conn {
    pub(super) fn spawn_lookup(self: &Arc<Self>, cmd: CommandLookupTopic) {
        let started = Instant::now();
        spawn(self, |conn| async move {
            let result = async {
                let name = TopicName::parse(&cmd.topic)?;
                conn.authorize_topic(&name, Need::Lookup, Operation::Lookup)
                    .await?;
                conn.service.lookup(&name).await
            }
            .await;
            let metrics = &conn.service.metrics;
            metrics.lookups.inc();
            let reply = match result {
                Ok(Owner::Me) => commands::lookup_connect(
                    cmd.request_id,
                    conn.service.service_url.clone(),
                    conn.service.service_url_tls.clone(),
                ),
                Ok(Owner::Other(owner)) => commands::lookup_connect(
                    cmd.request_id,
                    owner.service_url,
                    owner.service_url_tls,
                ),
                Err(e) => {
                    metrics.lookup_errors.inc();
                    conn.service.log_client_error("lookup", &e);
                    commands::lookup_failed(cmd.request_id, &e)
                }
            };
            conn.handle.send(reply).await;
            metrics
                .lookup_latency
                .observe(started.elapsed().as_secs_f64());
        });
    }

    pub(super) fn spawn_partitioned_metadata(
        self: &Arc<Self>,
        cmd: CommandPartitionedTopicMetadata,
    ) {
        spawn(self, |conn| async move {
            let result = async {
                let name = TopicName::parse(&cmd.topic)?;
                conn.authorize_topic(&name, Need::Lookup, Operation::PartitionedMetadata)
                    .await?;
                if !conn.service.namespace_exists(&name.namespace).await? {
                    return Err(BrokerError::NamespaceNotFound(name.namespace.to_string()));
                }
                let auto_create = cmd.metadata_auto_creation_enabled.unwrap_or(true);
                conn.service.partitioned_metadata(&name, auto_create).await
            }
            .await;
            let reply = match result {
                Ok(n) => commands::partitioned_metadata(cmd.request_id, n),
                Err(e) => {
                    conn.service.log_client_error("partitioned metadata", &e);
                    commands::partitioned_metadata_failed(cmd.request_id, &e)
                }
            };
            conn.handle.send(reply).await;
        });
    }

    pub(super) fn spawn_topics_of_namespace(self: &Arc<Self>, cmd: CommandGetTopicsOfNamespace) {
        spawn(self, |conn| async move {
            let result = async {
                let ns = NamespaceName::parse(&cmd.namespace)
                    .map_err(|e| BrokerError::NotAllowed(e.to_string()))?;
                conn.authorize_namespace(&ns).await?;
                if !conn.service.namespace_exists(&ns).await? {
                    return Err(BrokerError::NamespaceNotFound(ns.to_string()));
                }
                let mode = cmd
                    .mode
                    .and_then(|m| Mode::try_from(m).ok())
                    .unwrap_or(Mode::Persistent);
                if mode == Mode::NonPersistent {
                    return Ok(Vec::new());
                }
                conn.service.topics_of_namespace(&ns).await
            }
            .await;
            match result {
                Ok(topics) => {
                    conn.handle
                        .send(commands::topics_of_namespace(cmd.request_id, topics))
                        .await
                }
                Err(e) => conn.reply_error("list topics", cmd.request_id, &e).await,
            }
        });
    }
}
