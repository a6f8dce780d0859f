//! `strata admin`: a command-line client of the broker's Pulsar-compatible
//! admin REST API (`/admin/v2/...`), shaped like `pulsar-admin`.
//!
//! `strata admin [--admin-url URL] [--json] <group> <verb> ...`. An
//! `https://` URL is verified against `--tls-trust-certs-file` (see
//! `crate::client_args`); a token goes as `Authorization: Bearer`, a client
//! certificate (`--tls-cert-file`) in the handshake. Each group
//! has its own module (tenants, namespaces, topics, subscriptions, brokers
//! and clusters); [`http`] talks to the server, [`table`] renders the
//! default output, [`parse`] turns flags into request fields. The output
//! of a read is a readable table, or with `--json` the server's JSON
//! (pretty-printed); a change prints one line saying what was done. An
//! error answer prints `error: <status>: <reason>` on stderr and the
//! process exits with status 1.

mod cluster;
mod http;
mod limits;
mod namespaces;
mod offload;
mod parse;
mod permissions;
mod stats;
mod subscriptions;
mod table;
mod tenants;
mod tokens;
mod topics;

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;
use strata_common::names::{NamespaceName, TopicName};

use self::http::{AdminClient, AdminError, Body};

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Admin REST endpoint of a broker: http://host:port or
    /// https://host:port (its HTTPS port, see the --tls-* flags).
    #[arg(
        long,
        visible_alias = "url",
        env = "STRATA_ADMIN_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub admin_url: String,
    /// Print the server's JSON (pretty-printed) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// A token (JWT) to send as `Authorization: Bearer`, for brokers with
    /// authentication on.
    #[arg(
        long,
        env = "STRATA_ADMIN_TOKEN",
        global = true,
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// A file holding the token (also `file:///path`).
    #[arg(long, env = "STRATA_ADMIN_TOKEN_FILE", global = true)]
    pub token_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub tls: crate::client_args::TlsClientArgs,
    #[command(subcommand)]
    pub group: Group,
}

#[derive(Subcommand, Debug)]
pub enum Group {
    /// Tenants: admin roles and allowed clusters.
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// Namespaces (tenant/namespace) and their policies.
    #[command(subcommand)]
    Namespaces(namespaces::NamespacesCommand),
    /// Persistent topics, partitioned or not, and their stats.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Subscriptions of a topic and their cursors.
    #[command(subcommand)]
    Subscriptions(subscriptions::SubscriptionsCommand),
    /// Broker health.
    #[command(subcommand)]
    Brokers(cluster::BrokersCommand),
    /// Cluster records.
    #[command(subcommand)]
    Clusters(cluster::ClustersCommand),
    /// Keys and tokens of the token authentication (works offline).
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
}

/// Runs one admin command on its own small runtime and turns an error into
/// `error: ...` on stderr and exit status 1.
pub fn main(args: AdminArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The token of `--token` or `--token-file`, if any.
fn token(args: &AdminArgs) -> Result<Option<String>, AdminError> {
    crate::client_args::read_token(args.token.as_deref(), args.token_file.as_deref())
        .map_err(AdminError::Invalid)
}

async fn run(args: AdminArgs) -> Result<(), AdminError> {
    if let Group::Tokens(cmd) = args.group {
        return tokens::run(cmd);
    }
    // The TLS flags matter for https:// only (and warn only there).
    let tls = if http::is_https(&args.admin_url) {
        Some(args.tls.options().map_err(AdminError::Invalid)?)
    } else {
        None
    };
    let ctx = Ctx {
        client: AdminClient::with_tls(&args.admin_url, tls.as_ref())?.with_token(token(&args)?),
        json: args.json,
    };
    match args.group {
        Group::Tenants(cmd) => tenants::run(&ctx, cmd).await,
        Group::Namespaces(cmd) => namespaces::run(&ctx, cmd).await,
        Group::Topics(cmd) => topics::run(&ctx, cmd).await,
        Group::Subscriptions(cmd) => subscriptions::run(&ctx, cmd).await,
        Group::Brokers(cmd) => cluster::run_brokers(&ctx, cmd).await,
        Group::Clusters(cmd) => cluster::run_clusters(&ctx, cmd).await,
        Group::Tokens(_) => unreachable!("handled before the client is made"),
    }
}

/// What every command needs: the client and the output mode.
pub struct Ctx {
    client: AdminClient,
    json: bool,
}

impl Ctx {
    /// Prints the answer of a read: with `--json` the JSON as the server
    /// sent it (pretty), else `render`'s text. Text answers print as they
    /// are.
    fn show(&self, body: Body, render: impl FnOnce(&Value) -> String) {
        match body {
            Body::Empty => {}
            Body::Text(t) => out(&format!("{}\n", t.trim_end())),
            Body::Json(v) if self.json => out(&pretty(&v)),
            Body::Json(v) => out(&render(&v)),
        }
    }

    /// Prints the outcome of a change: with `--json` whatever JSON the
    /// server answered (nothing if it answered nothing), else `message`.
    fn done(&self, body: Body, message: impl std::fmt::Display) {
        if self.json {
            match body {
                Body::Empty => {}
                Body::Json(v) => out(&pretty(&v)),
                Body::Text(t) => out(&format!("{}\n", t.trim_end())),
            }
        } else {
            out(&format!("{message}\n"));
        }
    }
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

/// Writes to stdout; a closed pipe (`strata admin ... | head`) is not an
/// error worth a panic.
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// A list of names (tenants, namespaces, topics, subscriptions), one per
/// line; anything else as JSON.
fn render_names(v: &Value) -> String {
    match v.as_array() {
        Some(items) => items
            .iter()
            .map(|i| format!("{}\n", table::cell(Some(i))))
            .collect(),
        None => pretty(v),
    }
}

/// Any JSON object as `field  value` lines, nested fields dotted.
fn render_fields(v: &Value) -> String {
    if v.is_object() {
        table::key_values(&table::flatten(v))
    } else {
        format!("{}\n", table::cell(Some(v)))
    }
}

const API: [&str; 2] = ["admin", "v2"];

/// `/admin/v2/<rest...>`.
fn api_path(rest: &[&str]) -> Vec<String> {
    API.iter().chain(rest).map(|s| s.to_string()).collect()
}

/// `/admin/v2/namespaces/{tenant}/{namespace}/<rest...>`.
fn namespace_path(ns: &NamespaceName, rest: &[&str]) -> Vec<String> {
    let mut p = api_path(&["namespaces", &ns.tenant, &ns.namespace]);
    p.extend(rest.iter().map(|s| s.to_string()));
    p
}

/// `/admin/v2/persistent/{tenant}/{namespace}/{topic}/<rest...>`.
fn topic_path(topic: &TopicName, rest: &[&str]) -> Vec<String> {
    let ns = &topic.namespace;
    let mut p = api_path(&["persistent", &ns.tenant, &ns.namespace, &topic.local]);
    p.extend(rest.iter().map(|s| s.to_string()));
    p
}

/// A topic as the user typed it: `my-topic` (in public/default),
/// `tenant/ns/my-topic` or `persistent://tenant/ns/my-topic`.
fn topic_arg(s: &str) -> Result<TopicName, AdminError> {
    Ok(TopicName::parse(s)?)
}

fn namespace_arg(s: &str) -> Result<NamespaceName, AdminError> {
    Ok(NamespaceName::parse(s)?)
}

#[cfg(test)]
mod tests;
