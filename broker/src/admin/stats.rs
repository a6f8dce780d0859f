//! Topic statistics: `…/{topic}/stats`, `…/partitioned-stats`
//! (`?perPartition=false` leaves out each partition's own stats; Pulsar's
//! default is to include them), `…/internalStats` and `…/lastMessageId`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use strata_common::names::TopicName;

use super::AdminState;
use super::error::{ApiError, ApiResult, P, Q, topic_name};
use crate::codec;
use crate::stats::{InternalStats, PartitionedMetadata, TopicStats, internal_stats, topic_stats};

type TopicPath = P<(String, String, String)>;

pub fn routes() -> Router<AdminState> {
    const T: &str = "/admin/v2/persistent/{tenant}/{namespace}/{topic}";
    Router::new()
        .route(&format!("{T}/stats"), get(stats))
        .route(&format!("{T}/partitioned-stats"), get(partitioned_stats))
        .route(&format!("{T}/internalStats"), get(internal))
        .route(&format!("{T}/lastMessageId"), get(last_message_id))
}

/// Refuses a partitioned topic's name where one topic is meant.
async fn single(s: &AdminState, name: &TopicName, use_instead: &str) -> ApiResult<()> {
    if s.service.partitions(name).await? > 0 {
        return Err(ApiError::MethodNotAllowed(format!(
            "{name} is a partitioned topic: {use_instead}"
        )));
    }
    Ok(())
}

async fn stats(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
) -> ApiResult<Json<TopicStats>> {
    let name = topic_name(&t, &ns, &topic)?;
    single(&s, &name, "use .../partitioned-stats").await?;
    let topic = s.service.admin_topic(&name, false).await?;
    let mut stats = topic_stats(&topic);
    if s.service.cold.is_some() {
        stats.offloaded_storage_size = s.service.topic_usage(&name).await?.cold_bytes;
    }
    Ok(Json(stats))
}

async fn partitioned_stats(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
    q: Q,
) -> ApiResult<Json<TopicStats>> {
    let name = topic_name(&t, &ns, &topic)?;
    let per_partition = q.flag("perPartition", true)?;
    let n = s.service.partitions(&name).await?;
    if n == 0 {
        return Err(ApiError::NotFound(format!(
            "partitioned topic {name} not found"
        )));
    }
    let mut total = TopicStats {
        metadata: Some(PartitionedMetadata { partitions: n }),
        ..TopicStats::default()
    };
    let mut parts = BTreeMap::new();
    for i in 0..n {
        let p = name.partition_topic(i);
        // A partition nobody used yet has no managed ledger: empty stats.
        let stats = if s.service.loaded_topic(&p).is_some() || s.service.topic_exists(&p).await? {
            let t = s.service.admin_topic(&p, true).await?;
            topic_stats(&t)
        } else {
            TopicStats::default()
        };
        total.add(&stats);
        if per_partition {
            parts.insert(p.to_string(), stats);
        }
    }
    if per_partition {
        total.partitions = Some(parts);
    }
    Ok(Json(total))
}

async fn internal(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
) -> ApiResult<Json<InternalStats>> {
    let name = topic_name(&t, &ns, &topic)?;
    single(&s, &name, "ask for the internal stats of each partition").await?;
    let topic = s.service.admin_topic(&name, false).await?;
    let mut stats = internal_stats(&topic).await;
    if let Some(tier) = &s.service.cold {
        let offloaded = tier
            .offloaded_ledgers(topic.ml.name())
            .await
            .map_err(crate::resources::offload_error)?;
        for l in &mut stats.ledgers {
            l.offloaded = offloaded.contains(&l.ledger_id);
        }
    }
    Ok(Json(stats))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageId {
    ledger_id: i64,
    entry_id: i64,
    partition_index: i32,
    batch_index: i32,
}

async fn last_message_id(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
) -> ApiResult<Json<MessageId>> {
    let name = topic_name(&t, &ns, &topic)?;
    single(&s, &name, "ask for the last message id of each partition").await?;
    let topic = s.service.admin_topic(&name, false).await?;
    let partition_index = topic.partition();
    let id = match topic.ml.last_confirmed() {
        None => MessageId {
            // As Pulsar: the current ledger, no entry.
            ledger_id: topic.ml.current_ledger().await.map_or(-1, |l| l as i64),
            entry_id: -1,
            partition_index,
            batch_index: -1,
        },
        Some(p) => {
            let entry = topic
                .ml
                .read_entry(p)
                .await
                .map_err(crate::error::BrokerError::from)?;
            let batch_index = codec::entry_metadata(&entry.data)
                .ok()
                .and_then(|m| m.num_messages_in_batch)
                .map(|n| n.max(1) - 1)
                .unwrap_or(-1);
            MessageId {
                ledger_id: p.ledger_id as i64,
                entry_id: p.entry_id as i64,
                partition_index,
                batch_index,
            }
        }
    };
    Ok(Json(id))
}
