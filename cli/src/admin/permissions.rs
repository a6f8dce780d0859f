//! `strata admin namespaces permissions | grant-permission |
//! revoke-permission`: a namespace's grants, as `pulsar-admin` names them
//! (`/admin/v2/namespaces/{tenant}/{ns}/permissions[/{role}]`).

use clap::Subcommand;
use serde_json::{Value, json};

use super::http::AdminError;
use super::{Ctx, namespace_arg, namespace_path, table};

/// The actions a grant may hold (Pulsar's `AuthAction`).
const ACTIONS: [&str; 6] = [
    "produce",
    "consume",
    "functions",
    "sources",
    "sinks",
    "packages",
];

#[derive(Subcommand, Debug)]
pub enum PermissionsCommand {
    /// Show which roles may do what in a namespace.
    Permissions {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
    },
    /// Let a role produce and/or consume in a namespace (replaces its grant).
    GrantPermission {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        /// The role (a token's subject).
        #[arg(long)]
        role: String,
        /// What it may do, comma-separated: produce, consume.
        #[arg(long, value_delimiter = ',', required = true)]
        actions: Vec<String>,
    },
    /// Take a role's grant on a namespace away.
    RevokePermission {
        /// The namespace: TENANT/NAMESPACE.
        namespace: String,
        /// The role.
        #[arg(long)]
        role: String,
    },
}

fn actions_json(actions: &[String]) -> Result<Value, AdminError> {
    let mut out = Vec::new();
    for a in actions.iter().map(|a| a.trim().to_ascii_lowercase()) {
        if !ACTIONS.contains(&a.as_str()) {
            return Err(AdminError::Invalid(format!(
                "invalid action {a:?}: expected {}",
                ACTIONS.join(", ")
            )));
        }
        out.push(a);
    }
    Ok(json!(out))
}

/// `role  action,action` lines.
fn render(v: &Value) -> String {
    match v.as_object() {
        Some(grants) if grants.is_empty() => "no grants\n".to_string(),
        Some(grants) => {
            let rows: Vec<(String, String)> = grants
                .iter()
                .map(|(role, actions)| {
                    let list = actions
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|x| table::cell(Some(x)))
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_else(|| actions.to_string());
                    (role.clone(), list)
                })
                .collect();
            table::key_values(&rows)
        }
        None => format!("{v}\n"),
    }
}

pub async fn run(ctx: &Ctx, cmd: PermissionsCommand) -> Result<(), AdminError> {
    match cmd {
        PermissionsCommand::Permissions { namespace } => {
            let ns = namespace_arg(&namespace)?;
            let body = ctx
                .client
                .get(&namespace_path(&ns, &["permissions"]), &[])
                .await?;
            ctx.show(body, render);
        }
        PermissionsCommand::GrantPermission {
            namespace,
            role,
            actions,
        } => {
            let ns = namespace_arg(&namespace)?;
            let body = actions_json(&actions)?;
            let path = namespace_path(&ns, &["permissions", &role]);
            let answer = ctx.client.post(&path, Some(&body)).await?;
            ctx.done(
                answer,
                format_args!("granted {} on {ns} to {role}", actions.join(",")),
            );
        }
        PermissionsCommand::RevokePermission { namespace, role } => {
            let ns = namespace_arg(&namespace)?;
            let path = namespace_path(&ns, &["permissions", &role]);
            let answer = ctx.client.delete(&path, false).await?;
            ctx.done(answer, format_args!("revoked the grant of {role} on {ns}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_checked_and_lowercased() {
        assert_eq!(
            actions_json(&["Produce".into(), " consume".into()]).unwrap(),
            json!(["produce", "consume"])
        );
        assert!(actions_json(&["write".into()]).is_err());
        let text = render(&json!({"app": ["produce", "consume"], "reader": ["consume"]}));
        assert!(
            text.contains("app") && text.contains("produce,consume"),
            "{text}"
        );
        assert_eq!(render(&json!({})), "no grants\n");
    }
}
