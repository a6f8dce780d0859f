//! `strata admin brokers ...` and `strata admin clusters ...`.

use clap::Subcommand;

use super::http::AdminError;
use super::{Ctx, api_path, render_fields};

#[derive(Subcommand, Debug)]
pub enum BrokersCommand {
    /// Check that the broker serves (`ok`).
    Health,
}

#[derive(Subcommand, Debug)]
pub enum ClustersCommand {
    /// Show a cluster's record (service URLs).
    Get {
        #[arg(default_value = "standalone")]
        cluster: String,
    },
}

pub async fn run_brokers(ctx: &Ctx, cmd: BrokersCommand) -> Result<(), AdminError> {
    match cmd {
        BrokersCommand::Health => {
            let body = ctx
                .client
                .get(&api_path(&["brokers", "health"]), &[])
                .await?;
            ctx.show(body, render_fields);
        }
    }
    Ok(())
}

pub async fn run_clusters(ctx: &Ctx, cmd: ClustersCommand) -> Result<(), AdminError> {
    match cmd {
        ClustersCommand::Get { cluster } => {
            let body = ctx
                .client
                .get(&api_path(&["clusters", &cluster]), &[])
                .await?;
            ctx.show(body, render_fields);
        }
    }
    Ok(())
}
