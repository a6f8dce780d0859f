//! The cold tier as the admin API sees it: manual offloads and their
//! status, scrubs, and both tiers' usage per topic and namespace.

use serde::Serialize;
use strata_common::metadata;
use strata_common::names::{NamespaceName, TopicName};
use strata_managed_ledger::{ManagedLedgerInfo, keys as ml_keys};
use strata_offloader::IoCounts;
use strata_offloader::records::RunStatus;
use strata_offloader::tier::{ScrubResult, Tier, TopicUsage};

use super::MessageIdBody;
use crate::error::{BrokerError, Result};
use crate::service::BrokerService;

/// Pulsar's `OffloadProcessStatus`, with Strata's progress fields.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OffloadProcessStatus {
    pub status: RunStatus,
    pub last_error: String,
    pub first_unoffloaded_message: FirstUnoffloaded,
    pub ledgers_total: u64,
    pub ledgers_done: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FirstUnoffloaded {
    pub ledger_id: i64,
    pub entry_id: i64,
    pub partition_index: i32,
    pub batch_index: i32,
}

/// Both tiers' use by a namespace, and its traffic to the object store
/// (counted by this process since it started).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceUsage {
    pub topics: u64,
    #[serde(flatten)]
    pub storage: TopicUsage,
    pub cold_requests: IoCounts,
}

impl BrokerService {
    fn tier(&self) -> Result<&Tier> {
        self.cold.as_deref().ok_or_else(|| {
            BrokerError::PreconditionFailed(
                "this broker has no cold tier (start it with --object-store)".into(),
            )
        })
    }

    /// Asks the offloader to offload every ledger of `topic` before the one
    /// holding `id` (Pulsar's `PUT …/offload`).
    pub async fn trigger_offload(&self, topic: &TopicName, id: &MessageIdBody) -> Result<()> {
        let t = self.admin_topic(topic, false).await?;
        let tier = self.tier()?;
        if id.ledger_id <= 0 || id.entry_id < 0 {
            return Err(BrokerError::InvalidArgument(format!(
                "invalid message id {}:{}: expected ledgerId > 0 and entryId >= 0",
                id.ledger_id, id.entry_id
            )));
        }
        let name = t.ml.name().to_string();
        if tier.offload_running(&name).await.map_err(offload_error)? {
            return Err(BrokerError::Conflict(format!(
                "an offload of {topic} is already running"
            )));
        }
        tier.request_offload(&name, id.ledger_id as u64, id.entry_id as u64)
            .await
            .map_err(offload_error)
    }

    /// Pulsar's `GET …/offload`.
    pub async fn offload_status(&self, topic: &TopicName) -> Result<OffloadProcessStatus> {
        let t = self.admin_topic(topic, false).await?;
        let tier = self.tier()?;
        let name = t.ml.name().to_string();
        let (request, status) = tier.offload_status(&name).await.map_err(offload_error)?;
        let offloaded = tier.offloaded_ledgers(&name).await.map_err(offload_error)?;
        let ledgers = t.ml.stats().ledgers;
        let first = ledgers
            .iter()
            .find(|l| !offloaded.contains(&l.ledger_id))
            .map_or((-1, -1), |l| (l.ledger_id as i64, 0));
        let mut out = OffloadProcessStatus {
            status: RunStatus::NotRun,
            last_error: String::new(),
            first_unoffloaded_message: FirstUnoffloaded {
                ledger_id: first.0,
                entry_id: first.1,
                partition_index: t.partition(),
                batch_index: -1,
            },
            ledgers_total: 0,
            ledgers_done: 0,
            bytes_total: 0,
            bytes_done: 0,
        };
        match (request, status) {
            // Queued, or a newer request than the last run.
            (Some(req), s) if s.as_ref().is_none_or(|s| s.request != req) => {
                out.status = RunStatus::Running;
            }
            (_, Some(s)) => {
                out.status = s.status;
                out.last_error = s.last_error;
                out.ledgers_total = s.ledgers_total;
                out.ledgers_done = s.ledgers_done;
                out.bytes_total = s.bytes_total;
                out.bytes_done = s.bytes_done;
            }
            (_, None) => {}
        }
        Ok(out)
    }

    /// Re-verifies every cold copy of a topic.
    pub async fn scrub(&self, topic: &TopicName) -> Result<Vec<ScrubResult>> {
        let t = self.admin_topic(topic, false).await?;
        self.tier()?.scrub(t.ml.name()).await.map_err(offload_error)
    }

    /// Both tiers' bytes of a topic.
    pub async fn topic_usage(&self, topic: &TopicName) -> Result<TopicUsage> {
        let t = self.admin_topic(topic, false).await?;
        let ledgers = t.ml.stats().ledgers;
        match &self.cold {
            Some(tier) => tier
                .topic_usage(t.ml.name(), &ledgers)
                .await
                .map_err(offload_error),
            None => Ok(TopicUsage {
                hot_bytes: ledgers.iter().map(|l| l.size_bytes).sum(),
                ..TopicUsage::default()
            }),
        }
    }

    /// Both tiers' bytes of every topic of a namespace (from the stored
    /// records; topics are not loaded), and its cold traffic.
    pub async fn namespace_usage(&self, ns: &NamespaceName) -> Result<NamespaceUsage> {
        if !self.namespace_exists(ns).await? {
            return Err(BrokerError::NamespaceNotFound(ns.to_string()));
        }
        let mut out = NamespaceUsage::default();
        for name in self.factory.list(&format!("{ns}/persistent/")).await? {
            let Some((info, _)) = metadata::get_json::<ManagedLedgerInfo>(
                self.store.as_ref(),
                &ml_keys::managed_ledger(&name),
            )
            .await?
            else {
                continue;
            };
            out.topics += 1;
            let u = match &self.cold {
                Some(tier) => tier
                    .topic_usage(&name, &info.ledgers)
                    .await
                    .map_err(offload_error)?,
                None => TopicUsage {
                    hot_bytes: info.ledgers.iter().map(|l| l.size_bytes).sum(),
                    ..TopicUsage::default()
                },
            };
            out.storage.add(&u);
        }
        if let Some(tier) = &self.cold {
            out.cold_requests = tier.usage().namespace(&ns.to_string()).snapshot();
        }
        Ok(out)
    }
}

pub(crate) fn offload_error(e: strata_offloader::OffloadError) -> BrokerError {
    match e {
        strata_offloader::OffloadError::Metadata(m) => m.into(),
        e => BrokerError::Unknown(e.to_string()),
    }
}
