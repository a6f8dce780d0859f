//! `strata admin tenants ...`: `/admin/v2/tenants`, with Pulsar's
//! TenantInfo `{"adminRoles": [...], "allowedClusters": [...]}`.

use clap::Subcommand;
use serde_json::{Value, json};

use super::http::AdminError;
use super::{Ctx, api_path, render_fields, render_names};

#[derive(Subcommand, Debug)]
pub enum TenantsCommand {
    /// List the tenants.
    List,
    /// Show a tenant's admin roles and allowed clusters.
    Get {
        /// The tenant.
        tenant: String,
    },
    /// Create a tenant.
    Create {
        /// The tenant.
        tenant: String,
        /// Roles that administer the tenant (comma-separated).
        #[arg(short = 'r', long, value_delimiter = ',')]
        admin_roles: Vec<String>,
        /// Clusters the tenant may use (comma-separated; default: every
        /// cluster the server knows).
        #[arg(short = 'c', long, value_delimiter = ',')]
        allowed_clusters: Option<Vec<String>>,
    },
    /// Change a tenant's admin roles or allowed clusters (what is not
    /// given stays as it is).
    Update {
        /// The tenant.
        tenant: String,
        #[arg(short = 'r', long, value_delimiter = ',')]
        admin_roles: Option<Vec<String>>,
        #[arg(short = 'c', long, value_delimiter = ',')]
        allowed_clusters: Option<Vec<String>>,
    },
    /// Delete a tenant (it must have no namespaces unless --force).
    Delete {
        /// The tenant.
        tenant: String,
        /// Delete its namespaces and topics too.
        #[arg(short = 'f', long)]
        force: bool,
    },
}

fn tenant_path(tenant: &str) -> Vec<String> {
    api_path(&["tenants", tenant])
}

pub async fn run(ctx: &Ctx, cmd: TenantsCommand) -> Result<(), AdminError> {
    match cmd {
        TenantsCommand::List => {
            let body = ctx.client.get(&api_path(&["tenants"]), &[]).await?;
            ctx.show(body, render_names);
        }
        TenantsCommand::Get { tenant } => {
            let body = ctx.client.get(&tenant_path(&tenant), &[]).await?;
            ctx.show(body, render_fields);
        }
        TenantsCommand::Create {
            tenant,
            admin_roles,
            allowed_clusters,
        } => {
            let clusters = match allowed_clusters {
                Some(c) => c,
                None => all_clusters(ctx).await?,
            };
            let info = tenant_info(&admin_roles, &clusters);
            let body = ctx.client.put(&tenant_path(&tenant), Some(&info)).await?;
            ctx.done(body, format_args!("created tenant {tenant}"));
        }
        TenantsCommand::Update {
            tenant,
            admin_roles,
            allowed_clusters,
        } => {
            let path = tenant_path(&tenant);
            let current = ctx.client.get_json(&path).await?;
            let roles = admin_roles.unwrap_or_else(|| strings(&current, "adminRoles"));
            let clusters = allowed_clusters.unwrap_or_else(|| strings(&current, "allowedClusters"));
            let info = tenant_info(&roles, &clusters);
            let body = ctx.client.post(&path, Some(&info)).await?;
            ctx.done(body, format_args!("updated tenant {tenant}"));
        }
        TenantsCommand::Delete { tenant, force } => {
            let body = ctx.client.delete(&tenant_path(&tenant), force).await?;
            ctx.done(body, format_args!("deleted tenant {tenant}"));
        }
    }
    Ok(())
}

fn tenant_info(roles: &[String], clusters: &[String]) -> Value {
    json!({ "adminRoles": roles, "allowedClusters": clusters })
}

/// The strings of `v[field]` (an array), or none.
fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Every cluster the server knows (`GET /admin/v2/clusters`), the default
/// of `--allowed-clusters` as in pulsar-admin.
async fn all_clusters(ctx: &Ctx) -> Result<Vec<String>, AdminError> {
    let clusters = ctx.client.get_json(&api_path(&["clusters"])).await?;
    match clusters.as_array() {
        Some(a) => Ok(a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()),
        None => Err(AdminError::Invalid(format!(
            "the server's cluster list is not a list ({clusters}); give --allowed-clusters"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_info_json_uses_pulsar_field_names() {
        let info = tenant_info(&["admin".into()], &["standalone".into()]);
        assert_eq!(
            info,
            json!({"adminRoles": ["admin"], "allowedClusters": ["standalone"]})
        );
        assert_eq!(strings(&info, "allowedClusters"), ["standalone"]);
        assert!(strings(&info, "missing").is_empty());
    }
}
