//! `strata admin namespaces ...`: `/admin/v2/namespaces/{tenant}[/{ns}]`.
//! Policy flags of `create` become Pulsar's Policies JSON
//! (`retention_policies`, `message_ttl_in_seconds`, `replication_clusters`).

use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::http::AdminError;
use super::{Ctx, api_path, namespace_arg, namespace_path, parse, render_fields, render_names};
use super::{offload, permissions};

#[derive(Subcommand, Debug)]
pub enum NamespacesCommand {
    /// List the namespaces of a tenant.
    List {
        /// The tenant.
        tenant: String,
    },
    /// Create a namespace (tenant/namespace), optionally with policies.
    Create {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        #[command(flatten)]
        policies: PolicyArgs,
    },
    /// Show a namespace's policies.
    Get {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Delete a namespace (it must have no topics unless --force).
    Delete {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        /// Delete its topics too.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// List the topics of a namespace.
    Topics {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    #[command(flatten)]
    Permissions(permissions::PermissionsCommand),
    /// Set where and when the namespace's topics are offloaded.
    SetOffloadPolicies {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        #[command(flatten)]
        policies: offload::PolicyArgs,
    },
    /// Show the namespace's offload policies.
    GetOffloadPolicies {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Remove the namespace's offload policies.
    RemoveOffloadPolicies {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Set how long and how much consumed data is kept (both tiers).
    SetRetention {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        /// Keep consumed data this long after its ledger closed (e.g. 3d; -1: forever).
        #[arg(long, allow_negative_numbers = true)]
        time: String,
        /// Keep at most this much (e.g. 10G; -1: no limit).
        #[arg(long, allow_negative_numbers = true)]
        size: String,
    },
    /// Bytes on bookies and in the cold tier, and cold requests, of a namespace.
    Usage {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
}

/// Policies that can be given at creation.
#[derive(clap::Args, Debug, Default)]
pub struct PolicyArgs {
    /// How long acknowledged messages are kept: 30m, 12h, 7d... or -1
    /// (forever, the default when only --retention-size is given).
    #[arg(long, allow_hyphen_values = true)]
    pub retention_time: Option<String>,
    /// How much acknowledged data is kept: 500M, 10G... or -1 (no limit,
    /// the default when only --retention-time is given).
    #[arg(long, allow_hyphen_values = true)]
    pub retention_size: Option<String>,
    /// Messages older than this are acknowledged automatically: 1h, 2d...
    #[arg(long)]
    pub message_ttl: Option<String>,
    /// Clusters the namespace is replicated to (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub clusters: Option<Vec<String>>,
}

impl PolicyArgs {
    /// The Policies JSON, or `None` when no flag was given (the server
    /// then applies its defaults).
    pub fn to_json(&self) -> Result<Option<Value>, AdminError> {
        let mut p = Map::new();
        if self.retention_time.is_some() || self.retention_size.is_some() {
            let time = self.retention_time.as_deref().unwrap_or("-1");
            let size = self.retention_size.as_deref().unwrap_or("-1");
            p.insert(
                "retention_policies".into(),
                json!({
                    "retentionTimeInMinutes": parse::retention_minutes(time)?,
                    "retentionSizeInMB": parse::retention_megabytes(size)?,
                }),
            );
        }
        if let Some(ttl) = &self.message_ttl {
            p.insert(
                "message_ttl_in_seconds".into(),
                json!(parse::ttl_seconds(ttl)?),
            );
        }
        if let Some(clusters) = &self.clusters {
            p.insert("replication_clusters".into(), json!(clusters));
        }
        Ok((!p.is_empty()).then_some(Value::Object(p)))
    }
}

pub async fn run(ctx: &Ctx, cmd: NamespacesCommand) -> Result<(), AdminError> {
    match cmd {
        NamespacesCommand::List { tenant } => {
            let body = ctx
                .client
                .get(&api_path(&["namespaces", &tenant]), &[])
                .await?;
            ctx.show(body, render_names);
        }
        NamespacesCommand::Create {
            namespace,
            policies,
        } => {
            let ns = namespace_arg(&namespace)?;
            let policies = policies.to_json()?;
            let body = ctx
                .client
                .put(&namespace_path(&ns, &[]), policies.as_ref())
                .await?;
            ctx.done(body, format_args!("created namespace {ns}"));
        }
        NamespacesCommand::Get { namespace } => {
            let ns = namespace_arg(&namespace)?;
            let body = ctx.client.get(&namespace_path(&ns, &[]), &[]).await?;
            ctx.show(body, render_fields);
        }
        NamespacesCommand::Delete { namespace, force } => {
            let ns = namespace_arg(&namespace)?;
            let body = ctx.client.delete(&namespace_path(&ns, &[]), force).await?;
            ctx.done(body, format_args!("deleted namespace {ns}"));
        }
        NamespacesCommand::Topics { namespace } => {
            let ns = namespace_arg(&namespace)?;
            let body = ctx
                .client
                .get(&namespace_path(&ns, &["topics"]), &[])
                .await?;
            ctx.show(body, render_names);
        }
        NamespacesCommand::Permissions(cmd) => permissions::run(ctx, cmd).await?,
        NamespacesCommand::SetOffloadPolicies {
            namespace,
            policies,
        } => offload::set_policies(ctx, &namespace_arg(&namespace)?, &policies).await?,
        NamespacesCommand::GetOffloadPolicies { namespace } => {
            let ns = namespace_arg(&namespace)?;
            let path = namespace_path(&ns, &["offloadPolicies"]);
            let body = ctx.client.get(&path, &[]).await?;
            ctx.show(body, render_fields);
        }
        NamespacesCommand::RemoveOffloadPolicies { namespace } => {
            let ns = namespace_arg(&namespace)?;
            let path = namespace_path(&ns, &["offloadPolicies"]);
            let body = ctx.client.delete(&path, false).await?;
            ctx.done(body, format_args!("removed the offload policies of {ns}"));
        }
        NamespacesCommand::SetRetention {
            namespace,
            time,
            size,
        } => {
            let ns = namespace_arg(&namespace)?;
            let body = json!({
                "retentionTimeInMinutes": parse::retention_minutes(&time)?,
                "retentionSizeInMB": parse::retention_megabytes(&size)?,
            });
            let path = namespace_path(&ns, &["retention"]);
            let answer = ctx.client.post(&path, Some(&body)).await?;
            ctx.done(answer, format_args!("set the retention of {ns}"));
        }
        NamespacesCommand::Usage { namespace } => {
            let ns = namespace_arg(&namespace)?;
            let body = ctx
                .client
                .get(&namespace_path(&ns, &["usage"]), &[])
                .await?;
            ctx.show(body, render_fields);
        }
    }
    Ok(())
}
