//! `strata admin topics offload | offload-status | scrub | usage` and the
//! namespace offload policies.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use serde_json::{Map, Value, json};
use strata_common::names::{NamespaceName, TopicName};

use super::http::{AdminError, Body};
use super::{Ctx, namespace_path, parse, render_fields, table, topic_path};

/// Seconds between status polls while waiting for an offload.
const POLL: Duration = Duration::from_millis(500);

/// Starts an offload of every closed ledger of `topic` except the newest
/// `size_threshold` bytes (Pulsar's `topics offload -s`), then optionally
/// waits for it with a progress bar.
pub async fn offload(
    ctx: &Ctx,
    t: &TopicName,
    size_threshold: Option<&str>,
    wait: bool,
) -> Result<(), AdminError> {
    let keep = match size_threshold {
        Some(s) => parse::size_bytes("size threshold", s)?,
        None => 0,
    };
    let stats = ctx
        .client
        .get_json(&topic_path(t, &["internalStats"]))
        .await?;
    let ledgers: Vec<(u64, u64)> = stats["ledgers"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .filter_map(|l| Some((l["ledgerId"].as_u64()?, l["size"].as_u64().unwrap_or(0))))
                .collect()
        })
        .unwrap_or_default();
    // The newest ledger to keep: walk back from the newest until `keep` bytes.
    let mut kept = 0u64;
    let mut first_kept = None;
    for (id, size) in ledgers.iter().rev() {
        first_kept = Some(*id);
        kept += size;
        if kept > keep {
            break;
        }
    }
    let Some(before) = first_kept else {
        return Err(AdminError::Invalid(format!(
            "{t} has no ledgers to offload"
        )));
    };
    let body = json!({"ledgerId": before, "entryId": 0, "partitionIndex": -1});
    let answer = ctx
        .client
        .put(&topic_path(t, &["offload"]), Some(&body))
        .await?;
    ctx.done(
        answer,
        format_args!("offload of {t} requested (ledgers before {before})"),
    );
    if wait {
        wait_for(ctx, t).await?;
    }
    Ok(())
}

/// Shows the status of the topic's last offload; with `wait`, follows it
/// to the end with a progress bar.
pub async fn status(ctx: &Ctx, t: &TopicName, wait: bool) -> Result<(), AdminError> {
    if wait {
        return wait_for(ctx, t).await;
    }
    let body = ctx.client.get(&topic_path(t, &["offload"]), &[]).await?;
    ctx.show(body, render_fields);
    Ok(())
}

async fn wait_for(ctx: &Ctx, t: &TopicName) -> Result<(), AdminError> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    loop {
        let s = ctx.client.get_json(&topic_path(t, &["offload"])).await?;
        let status = s["status"].as_str().unwrap_or("").to_string();
        if !ctx.json {
            progress(&s, tty);
        }
        match status.as_str() {
            "RUNNING" => tokio::time::sleep(POLL).await,
            "SUCCESS" | "NOT_RUN" => {
                if ctx.json {
                    ctx.show(Body::Json(s), render_fields);
                } else {
                    eprintln!();
                    println!("offload of {t}: {status}");
                }
                return Ok(());
            }
            _ => {
                if ctx.json {
                    ctx.show(Body::Json(s.clone()), render_fields);
                }
                return Err(AdminError::Invalid(format!(
                    "offload of {t} failed: {}",
                    s["lastError"].as_str().unwrap_or("unknown error")
                )));
            }
        }
    }
}

/// One progress line on stderr (redrawn in place on a terminal).
fn progress(s: &Value, tty: bool) {
    const WIDTH: u64 = 30;
    let total = s["bytesTotal"].as_u64().unwrap_or(0);
    let done = s["bytesDone"].as_u64().unwrap_or(0).min(total);
    let filled = done.saturating_mul(WIDTH).checked_div(total).unwrap_or(0);
    let pct = (done.saturating_mul(100)).checked_div(total).unwrap_or(0);
    let line = format!(
        "[{}{}] {pct:>3}%  {:.1}/{:.1} MB  {}/{} ledgers  {}",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize),
        done as f64 / 1e6,
        total as f64 / 1e6,
        s["ledgersDone"].as_u64().unwrap_or(0),
        s["ledgersTotal"].as_u64().unwrap_or(0),
        s["status"].as_str().unwrap_or(""),
    );
    let mut err = std::io::stderr().lock();
    let _ = if tty {
        write!(err, "\r{line}")
    } else {
        writeln!(err, "{line}")
    };
    let _ = err.flush();
}

/// Re-verifies a topic's cold objects; fails if any is bad.
pub async fn scrub(ctx: &Ctx, t: &TopicName) -> Result<(), AdminError> {
    let body = ctx
        .client
        .post(&topic_path(t, &["offload", "scrub"]), None)
        .await?;
    let bad = match &body {
        Body::Json(Value::Array(results)) => {
            results.iter().filter(|r| r["ok"] != json!(true)).count()
        }
        _ => 0,
    };
    ctx.show(body, |v| {
        let mut t = table::Table::new(&["LEDGER", "STATE", "ERROR"]);
        for r in v.as_array().into_iter().flatten() {
            let ok = r["ok"] == json!(true);
            t.row(vec![
                table::cell(Some(&r["ledgerId"])),
                if ok { "ok".into() } else { "BAD".into() },
                table::cell(r.get("error")),
            ]);
        }
        if t.is_empty() {
            return "no offloaded ledgers\n".into();
        }
        t.render()
    });
    if bad > 0 {
        return Err(AdminError::Invalid(format!(
            "{bad} cold copies of {t} failed verification"
        )));
    }
    Ok(())
}

/// The namespace offload settings `set-offload-policies` takes.
#[derive(Args, Debug)]
pub struct PolicyArgs {
    /// `aws-s3` (S3, MinIO, Garage) or `filesystem`; omit for the server's default store.
    #[arg(long)]
    pub driver: Option<String>,
    #[arg(long)]
    pub bucket: Option<String>,
    /// S3 endpoint, e.g. http://127.0.0.1:9000 (omit for AWS).
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    /// Key prefix inside the bucket.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Directory, for the filesystem driver.
    #[arg(long)]
    pub directory: Option<String>,
    /// Offload once a topic holds more than this on bookies (e.g. 10G; -1: never).
    #[arg(long, allow_negative_numbers = true)]
    pub threshold_size: Option<String>,
    /// Offload ledgers closed longer ago than this (e.g. 1h; -1: never).
    #[arg(long, allow_negative_numbers = true)]
    pub threshold_time: Option<String>,
    /// Delete the bookies' copy this long after an offload (e.g. 4h; -1: never).
    #[arg(long, allow_negative_numbers = true)]
    pub deletion_lag: Option<String>,
}

fn signed(
    what: &str,
    s: &str,
    parse: impl Fn(&str) -> Result<i64, AdminError>,
) -> Result<i64, AdminError> {
    if s.trim() == "-1" {
        return Ok(-1);
    }
    parse(s).map_err(|e| AdminError::Invalid(format!("{what}: {e}")))
}

pub fn size_setting(s: &str) -> Result<i64, AdminError> {
    signed("size", s, |s| Ok(parse::size_bytes("size", s)? as i64))
}

pub fn seconds_setting(s: &str) -> Result<i64, AdminError> {
    signed("time", s, |s| {
        Ok(parse::duration("time", s)?.as_secs() as i64)
    })
}

pub fn millis_setting(s: &str) -> Result<i64, AdminError> {
    signed("lag", s, |s| {
        Ok(parse::duration("lag", s)?.as_millis() as i64)
    })
}

pub async fn set_policies(ctx: &Ctx, ns: &NamespaceName, a: &PolicyArgs) -> Result<(), AdminError> {
    let mut p = Map::new();
    let mut put = |k: &str, v: Value| {
        p.insert(k.to_string(), v);
    };
    if let Some(d) = &a.driver {
        put("managedLedgerOffloadDriver", json!(d));
    }
    if let Some(b) = &a.bucket {
        put("managedLedgerOffloadBucket", json!(b));
    }
    if let Some(e) = &a.endpoint {
        put("managedLedgerOffloadServiceEndpoint", json!(e));
    }
    if let Some(r) = &a.region {
        put("managedLedgerOffloadRegion", json!(r));
    }
    if let Some(x) = &a.prefix {
        put("managedLedgerOffloadPrefix", json!(x));
    }
    if let Some(d) = &a.directory {
        put("fileSystemURI", json!(d));
    }
    if let Some(s) = &a.threshold_size {
        put(
            "managedLedgerOffloadThresholdInBytes",
            json!(size_setting(s)?),
        );
    }
    if let Some(s) = &a.threshold_time {
        put(
            "managedLedgerOffloadThresholdInSeconds",
            json!(seconds_setting(s)?),
        );
    }
    if let Some(s) = &a.deletion_lag {
        put(
            "managedLedgerOffloadDeletionLagInMillis",
            json!(millis_setting(s)?),
        );
    }
    let body = ctx
        .client
        .post(
            &namespace_path(ns, &["offloadPolicies"]),
            Some(&Value::Object(p)),
        )
        .await?;
    ctx.done(body, format_args!("set the offload policies of {ns}"));
    Ok(())
}
