//! `strata admin topics ...`: `/admin/v2/persistent/{tenant}/{ns}[/{topic}]`.

use clap::Subcommand;
use serde_json::json;

use super::http::AdminError;
use super::offload;
use super::{
    Ctx, api_path, namespace_arg, render_fields, render_names, stats, topic_arg, topic_path,
};

#[derive(Subcommand, Debug)]
pub enum TopicsCommand {
    /// List the topics of a namespace (partitions included).
    List {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// List the partitioned topics of a namespace.
    ListPartitioned {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Create a non-partitioned topic.
    Create {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
    },
    /// Delete a non-partitioned topic (--force: even with producers,
    /// consumers or subscriptions).
    Delete {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
        /// Even when it is in use.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Create a partitioned topic.
    CreatePartitioned {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
        /// Number of partitions (at least 1).
        #[arg(short = 'p', long, allow_negative_numbers = true)]
        partitions: i64,
    },
    /// Raise the number of partitions of a partitioned topic.
    UpdatePartitions {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
        /// Number of partitions (at least 1).
        #[arg(short = 'p', long, allow_negative_numbers = true)]
        partitions: i64,
    },
    /// Show the number of partitions of a topic (0: not partitioned).
    GetPartitions {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
    },
    /// Delete a partitioned topic and its partitions.
    DeletePartitioned {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
        /// Even when it is in use.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Rates, counters, publishers and subscriptions of a topic.
    Stats {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
    },
    /// Stats of a partitioned topic, summed over its partitions.
    PartitionedStats {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
        /// Also show each partition.
        #[arg(long)]
        per_partition: bool,
    },
    /// Storage view of a topic: its ledgers and cursors.
    InternalStats {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
    },
    /// The id of the last message written to a topic.
    LastMessageId {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
    },
    /// Offload a topic's closed ledgers to the cold tier.
    Offload {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
        /// Keep the newest this-many bytes on bookies (e.g. 10M; default: offload every closed ledger).
        #[arg(short = 's', long)]
        size_threshold: Option<String>,
        /// Wait for the offload to finish, with a progress bar.
        #[arg(short = 'w', long)]
        wait: bool,
    },
    /// Status of a topic's last offload.
    OffloadStatus {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
        /// Follow a running offload to its end, with a progress bar.
        #[arg(short = 'w', long)]
        wait: bool,
    },
    /// Re-verify every cold object of a topic (sizes and checksums); exits 1 if one is bad.
    Scrub {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
    },
    /// Bytes a topic holds on bookies and in the cold tier.
    Usage {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
    },
}

pub async fn run(ctx: &Ctx, cmd: TopicsCommand) -> Result<(), AdminError> {
    let c = &ctx.client;
    match cmd {
        TopicsCommand::List { namespace } => {
            let ns = namespace_arg(&namespace)?;
            let body = c
                .get(&api_path(&["persistent", &ns.tenant, &ns.namespace]), &[])
                .await?;
            ctx.show(body, render_names);
        }
        TopicsCommand::ListPartitioned { namespace } => {
            let ns = namespace_arg(&namespace)?;
            let path = api_path(&["persistent", &ns.tenant, &ns.namespace, "partitioned"]);
            let body = c.get(&path, &[]).await?;
            ctx.show(body, render_names);
        }
        TopicsCommand::Create { topic } => {
            let t = topic_arg(&topic)?;
            let body = c.put(&topic_path(&t, &[]), None).await?;
            ctx.done(body, format_args!("created topic {t}"));
        }
        TopicsCommand::Delete { topic, force } => {
            let t = topic_arg(&topic)?;
            let body = c.delete(&topic_path(&t, &[]), force).await?;
            ctx.done(body, format_args!("deleted topic {t}"));
        }
        TopicsCommand::CreatePartitioned { topic, partitions } => {
            let t = topic_arg(&topic)?;
            let path = topic_path(&t, &["partitions"]);
            let body = c.put(&path, Some(&json!(partitions))).await?;
            ctx.done(
                body,
                format_args!("created partitioned topic {t} with {partitions} partitions"),
            );
        }
        TopicsCommand::UpdatePartitions { topic, partitions } => {
            let t = topic_arg(&topic)?;
            let path = topic_path(&t, &["partitions"]);
            let body = c.post(&path, Some(&json!(partitions))).await?;
            ctx.done(
                body,
                format_args!("updated partitioned topic {t} to {partitions} partitions"),
            );
        }
        TopicsCommand::GetPartitions { topic } => {
            let t = topic_arg(&topic)?;
            let body = c.get(&topic_path(&t, &["partitions"]), &[]).await?;
            ctx.show(body, render_fields);
        }
        TopicsCommand::DeletePartitioned { topic, force } => {
            let t = topic_arg(&topic)?;
            let body = c.delete(&topic_path(&t, &["partitions"]), force).await?;
            ctx.done(body, format_args!("deleted partitioned topic {t}"));
        }
        TopicsCommand::Stats { topic } => {
            let t = topic_arg(&topic)?;
            let body = c.get(&topic_path(&t, &["stats"]), &[]).await?;
            ctx.show(body, stats::render_topic_stats);
        }
        TopicsCommand::PartitionedStats {
            topic,
            per_partition,
        } => {
            let t = topic_arg(&topic)?;
            let flag = if per_partition { "true" } else { "false" };
            let path = topic_path(&t, &["partitioned-stats"]);
            let body = c.get(&path, &[("perPartition", flag)]).await?;
            ctx.show(body, stats::render_partitioned_stats);
        }
        TopicsCommand::InternalStats { topic } => {
            let t = topic_arg(&topic)?;
            let body = c.get(&topic_path(&t, &["internalStats"]), &[]).await?;
            ctx.show(body, stats::render_internal_stats);
        }
        TopicsCommand::LastMessageId { topic } => {
            let t = topic_arg(&topic)?;
            let body = c.get(&topic_path(&t, &["lastMessageId"]), &[]).await?;
            ctx.show(body, render_fields);
        }
        TopicsCommand::Offload {
            topic,
            size_threshold,
            wait,
        } => offload::offload(ctx, &topic_arg(&topic)?, size_threshold.as_deref(), wait).await?,
        TopicsCommand::OffloadStatus { topic, wait } => {
            offload::status(ctx, &topic_arg(&topic)?, wait).await?
        }
        TopicsCommand::Scrub { topic } => offload::scrub(ctx, &topic_arg(&topic)?).await?,
        TopicsCommand::Usage { topic } => {
            let t = topic_arg(&topic)?;
            let body = c.get(&topic_path(&t, &["usage"]), &[]).await?;
            ctx.show(body, render_fields);
        }
    }
    Ok(())
}
