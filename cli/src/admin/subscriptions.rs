//! `strata admin subscriptions ...`: a topic's subscriptions under
//! `/admin/v2/persistent/{tenant}/{ns}/{topic}/subscription/{sub}`.

use std::time::SystemTime;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::http::AdminError;
use super::{Ctx, parse, render_names, topic_arg, topic_path};

#[derive(Subcommand, Debug)]
pub enum SubscriptionsCommand {
    /// List the subscriptions of a topic.
    List {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
    },
    /// Create a durable subscription.
    Create {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
        /// The subscription.
        #[arg(short = 's', long)]
        subscription: String,
        /// Where its cursor starts: LEDGER:ENTRY, earliest or latest
        /// (default: the server's, latest).
        #[arg(short = 'm', long)]
        message_id: Option<String>,
    },
    /// Delete a subscription (--force: even with connected consumers).
    Delete {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
        /// The subscription.
        #[arg(short = 's', long)]
        subscription: String,
        /// Even with connected consumers.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Move a subscription's cursor to a time or a message id.
    ResetCursor {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
        /// The subscription.
        #[arg(short = 's', long)]
        subscription: String,
        #[command(flatten)]
        target: ResetTarget,
    },
    /// Skip (acknowledge) the next messages of a subscription.
    Skip {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
        /// The subscription.
        #[arg(short = 's', long)]
        subscription: String,
        /// How many messages.
        #[arg(short = 'n', long, allow_negative_numbers = true)]
        count: i64,
    },
    /// Skip the whole backlog of a subscription.
    SkipAll {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
        /// The subscription.
        #[arg(short = 's', long)]
        subscription: String,
    },
    /// Acknowledge the messages of a subscription older than --seconds.
    Expire {
        /// The topic: NAME (in public/default), TENANT/NS/NAME or persistent://TENANT/NS/NAME.
        topic: String,
        /// The subscription.
        #[arg(short = 's', long)]
        subscription: String,
        /// Age in seconds above which messages are expired.
        #[arg(short = 't', long, allow_negative_numbers = true)]
        seconds: i64,
    },
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ResetTarget {
    /// A publish time: relative (10m: ten minutes ago) or RFC 3339
    /// (2024-05-01T12:00:00Z).
    #[arg(short = 't', long)]
    pub time: Option<String>,
    /// A message id: LEDGER:ENTRY, earliest or latest.
    #[arg(short = 'm', long)]
    pub message_id: Option<String>,
}

/// Pulsar's ResetCursorData / MessageIdImpl body.
fn message_id_body(s: &str) -> Result<Value, AdminError> {
    let (ledger, entry) = parse::message_id(s)?;
    Ok(json!({ "ledgerId": ledger, "entryId": entry }))
}

pub async fn run(ctx: &Ctx, cmd: SubscriptionsCommand) -> Result<(), AdminError> {
    let c = &ctx.client;
    match cmd {
        SubscriptionsCommand::List { topic } => {
            let t = topic_arg(&topic)?;
            let body = c.get(&topic_path(&t, &["subscriptions"]), &[]).await?;
            ctx.show(body, render_names);
        }
        SubscriptionsCommand::Create {
            topic,
            subscription,
            message_id,
        } => {
            let t = topic_arg(&topic)?;
            let start = message_id.as_deref().map(message_id_body).transpose()?;
            let path = topic_path(&t, &["subscription", &subscription]);
            let body = c.put(&path, start.as_ref()).await?;
            ctx.done(
                body,
                format_args!("created subscription {subscription} on {t}"),
            );
        }
        SubscriptionsCommand::Delete {
            topic,
            subscription,
            force,
        } => {
            let t = topic_arg(&topic)?;
            let path = topic_path(&t, &["subscription", &subscription]);
            let body = c.delete(&path, force).await?;
            ctx.done(
                body,
                format_args!("deleted subscription {subscription} on {t}"),
            );
        }
        SubscriptionsCommand::ResetCursor {
            topic,
            subscription,
            target,
        } => {
            let t = topic_arg(&topic)?;
            let (body, to) = match (target.time, target.message_id) {
                (Some(time), _) => {
                    let millis = parse::timestamp_millis(&time, SystemTime::now())?;
                    let ms = millis.to_string();
                    let path = topic_path(&t, &["subscription", &subscription, "resetcursor", &ms]);
                    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
                    let when = humantime::format_rfc3339_millis(at);
                    (c.post(&path, None).await?, format!("publish time {when}"))
                }
                (None, Some(id)) => {
                    let position = message_id_body(&id)?;
                    let path = topic_path(&t, &["subscription", &subscription, "resetcursor"]);
                    (
                        c.post(&path, Some(&position)).await?,
                        format!("message {id}"),
                    )
                }
                (None, None) => {
                    return Err(AdminError::Invalid(
                        "give --time or --message-id".to_string(),
                    ));
                }
            };
            ctx.done(
                body,
                format_args!("reset subscription {subscription} on {t} to {to}"),
            );
        }
        SubscriptionsCommand::Skip {
            topic,
            subscription,
            count,
        } => {
            let t = topic_arg(&topic)?;
            let n = count.to_string();
            let path = topic_path(&t, &["subscription", &subscription, "skip", &n]);
            let body = c.post(&path, None).await?;
            ctx.done(
                body,
                format_args!("skipped {count} messages of subscription {subscription} on {t}"),
            );
        }
        SubscriptionsCommand::SkipAll {
            topic,
            subscription,
        } => {
            let t = topic_arg(&topic)?;
            let path = topic_path(&t, &["subscription", &subscription, "skip_all"]);
            let body = c.post(&path, None).await?;
            ctx.done(
                body,
                format_args!("skipped the backlog of subscription {subscription} on {t}"),
            );
        }
        SubscriptionsCommand::Expire {
            topic,
            subscription,
            seconds,
        } => {
            let t = topic_arg(&topic)?;
            let s = seconds.to_string();
            let path = topic_path(&t, &["subscription", &subscription, "expireMessages", &s]);
            let body = c.post(&path, None).await?;
            ctx.done(
                body,
                format_args!(
                    "expired messages older than {seconds} s of subscription {subscription} on {t}"
                ),
            );
        }
    }
    Ok(())
}
