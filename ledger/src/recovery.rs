//! Ledger recovery: what a new owner does to an open ledger whose writer may
//! be dead (or merely partitioned away).
//!
//! 1. Mark the metadata IN_RECOVERY (compare-and-set), so the old writer's
//!    next metadata write fails.
//! 2. Fence the ledger on the bookies of its last fragment. Once at least
//!    E - Qa + 1 of them are fenced, no write set has Qa unfenced bookies
//!    left, so the old writer can never again get an add acknowledged.
//! 3. Starting after the highest LAC the bookies report, read forward. An
//!    entry is recoverable if any replica has it intact; it is known absent
//!    when Qw - Qa + 1 replicas of its write set lack it (then it cannot have
//!    been acknowledged). Anything undecidable fails the recovery, to be
//!    retried, rather than guessing.
//! 4. Re-replicate each recovered entry to its whole write set (recovery adds
//!    are allowed on fenced ledgers) and require Qa confirmations.
//! 5. Close the ledger at the last recovered entry with its length.

use std::collections::HashMap;

use futures::future::join_all;
use strata_common::metadata::Expect;
use strata_proto::bookie::{AddEntry, Entry, FenceRequest, ReadRequest, ReadResponse};
use tokio::sync::mpsc;
use tracing::info;

use crate::ClientCtx;
use crate::bookie_client::{AddOutcome, status_error};
use crate::error::{LedgerError, Result};
use crate::metadata::{self, LedgerMetadata, LedgerStatus};
use crate::metrics::BookieOp;
use crate::reader::{LedgerEntry, read_entries};

const BATCH: u64 = 256;

pub(crate) async fn recover(ctx: &ClientCtx, ledger_id: u64) -> Result<LedgerMetadata> {
    let store = ctx.store.as_ref();
    let err = |reason: String| LedgerError::Recovery { ledger_id, reason };
    loop {
        let (mut md, version) = metadata::read(store, ledger_id).await?;
        if md.is_closed() {
            return Ok(md);
        }
        let mut version = version;
        if md.status == LedgerStatus::Open {
            md.status = LedgerStatus::InRecovery;
            match metadata::write(store, &md, Expect::Version(version)).await {
                Ok(v) => version = v,
                Err(e) if e.is_bad_version() => continue,
                Err(e) => return Err(e.into()),
            }
        }

        // Fence.
        let bookies = md.last_fragment().bookies.clone();
        let fences = bookies.iter().map(|b| async move {
            let conn = ctx.pool.get(b)?;
            let mut rpc = conn.rpc.clone();
            rpc.fence(FenceRequest { ledger_id })
                .await
                .map(|r| r.into_inner())
                .map_err(|s| status_error(b, s))
        });
        let mut fenced = 0usize;
        let mut lac = md.last_fragment().first_entry as i64 - 1;
        let mut failures = Vec::new();
        for (b, r) in bookies.iter().zip(join_all(fences).await) {
            match r {
                Ok(resp) => {
                    fenced += 1;
                    lac = lac.max(resp.lac);
                }
                Err(e) => {
                    ctx.metrics.bookie_error(BookieOp::Fence);
                    failures.push(format!("{b}: {e}"));
                }
            }
        }
        let e = md.ensemble_size as usize;
        let qa = md.ack_quorum as usize;
        if fenced <= e - qa {
            return Err(err(format!(
                "fenced {fenced} of {e} bookies, need {}: {}",
                e - qa + 1,
                failures.join("; ")
            )));
        }

        // Read forward from LAC+1 until an entry is known absent.
        let mut recovered: Vec<LedgerEntry> = Vec::new();
        let mut next = (lac + 1) as u64;
        'scan: loop {
            let mut found = probe(ctx, &md, next, next + BATCH - 1).await?;
            for id in next..next + BATCH {
                match found.remove(&id) {
                    Some(Probe::Present(entry)) => recovered.push(entry),
                    Some(Probe::Absent) => break 'scan,
                    Some(Probe::Unknown(why)) => {
                        return Err(err(format!(
                            "cannot decide whether entry {id} exists: {why}"
                        )));
                    }
                    None => return Err(err(format!("no answer for entry {id}"))),
                }
            }
            next += BATCH;
        }

        // Re-replicate what lies past the LAC.
        rereplicate(ctx, &md, &recovered).await?;

        // Length of the last entry: from the recovered tail, or read it.
        let (last_entry_id, length) = match recovered.last() {
            Some(e) => (e.entry_id as i64, e.cumulative_length),
            None if lac >= 0 => {
                let e = read_entries(ctx, &md, lac as u64, lac as u64).await?;
                (lac, e.first().map_or(0, |e| e.cumulative_length))
            }
            None => (-1, 0),
        };
        md.status = LedgerStatus::Closed;
        md.last_entry_id = last_entry_id;
        md.length = length;
        md.closed_at_ms = Some(metadata::now_ms());
        match metadata::write(store, &md, Expect::Version(version)).await {
            Ok(_) => {
                ctx.metrics.ledgers_recovered.inc();
                info!(
                    ledger_id,
                    last_entry_id, length, "ledger recovered and closed"
                );
                return Ok(md);
            }
            // Another recoverer got there first: take its result.
            Err(e) if e.is_bad_version() => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

enum Probe {
    Present(LedgerEntry),
    Absent,
    Unknown(String),
}

/// Asks every bookie of the last fragment for `first..=last` and decides,
/// per entry, whether it exists.
async fn probe(
    ctx: &ClientCtx,
    md: &LedgerMetadata,
    first: u64,
    last: u64,
) -> Result<HashMap<u64, Probe>> {
    let bookies = md.last_fragment().bookies.clone();
    let asks = bookies.iter().map(|b| async move {
        let mut ids: Vec<u64> = (first..=last)
            .filter(|id| md.write_set(*id).contains(b))
            .collect();
        let conn = ctx.pool.get(b)?;
        let mut rpc = conn.rpc.clone();
        let mut merged = ReadResponse::default();
        // A reply stops at the byte budget: ask again for what it left out.
        while !ids.is_empty() {
            let resp = rpc
                .read_entries(ReadRequest {
                    ledger_id: md.ledger_id,
                    entry_ids: ids.clone(),
                    max_bytes: 64 << 20,
                    ..Default::default()
                })
                .await;
            let resp = match resp {
                Ok(r) => r.into_inner(),
                // The bookie never saw the ledger: it has none of its entries.
                Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
                Err(s) => {
                    ctx.metrics.bookie_error(BookieOp::Read);
                    return Err(status_error(b, s));
                }
            };
            let before = ids.len();
            ids.retain(|id| {
                !resp.missing.contains(id) && !resp.entries.iter().any(|e| e.entry_id == *id)
            });
            merged.missing.extend(resp.missing);
            merged.entries.extend(resp.entries);
            if ids.len() == before {
                break;
            }
        }
        Ok(Some(merged))
    });
    let answers: Vec<_> = join_all(asks).await;
    let qw = md.write_quorum as usize;
    let qa = md.ack_quorum as usize;
    let mut out = HashMap::new();
    for id in first..=last {
        let write_set = md.write_set(id);
        let mut absent = 0;
        let mut errors = Vec::new();
        let mut present = None;
        for (b, answer) in bookies.iter().zip(&answers) {
            if !write_set.contains(b) {
                continue;
            }
            match answer {
                Err(e) => errors.push(e.to_string()),
                Ok(None) => absent += 1,
                Ok(Some(resp)) => {
                    if let Some(e) = resp.entries.iter().find(|e| e.entry_id == id) {
                        let crc = strata_proto::entry_crc32c(
                            md.ledger_id,
                            id,
                            e.cumulative_length,
                            &e.payload,
                        );
                        if crc == e.crc32c && present.is_none() {
                            present = Some(LedgerEntry {
                                entry_id: id,
                                payload: e.payload.clone(),
                                cumulative_length: e.cumulative_length,
                            });
                        } else if crc != e.crc32c {
                            absent += 1;
                        }
                    } else if resp.missing.contains(&id) {
                        absent += 1;
                    } else {
                        errors.push(format!("{b} did not answer for entry {id} (byte budget)"));
                    }
                }
            }
        }
        let verdict = match present {
            Some(e) => Probe::Present(e),
            None if absent > qw - qa => Probe::Absent,
            None => Probe::Unknown(errors.join("; ")),
        };
        out.insert(id, verdict);
    }
    Ok(out)
}

/// Writes recovered entries to their whole write set; each needs Qa acks.
async fn rereplicate(ctx: &ClientCtx, md: &LedgerMetadata, entries: &[LedgerEntry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    for e in entries {
        for b in md.write_set(e.entry_id) {
            let conn = ctx.pool.get(&b)?;
            conn.add(
                AddEntry {
                    entry: Some(Entry {
                        ledger_id: md.ledger_id,
                        entry_id: e.entry_id,
                        cumulative_length: e.cumulative_length,
                        crc32c: strata_proto::entry_crc32c(
                            md.ledger_id,
                            e.entry_id,
                            e.cumulative_length,
                            &e.payload,
                        ),
                        payload: e.payload.clone(),
                    }),
                    lac: -1,
                    recovery: true,
                },
                tx.clone(),
            );
        }
    }
    drop(tx);
    let mut acks: HashMap<u64, usize> = HashMap::new();
    let mut failures = Vec::new();
    let expected = entries.len() * md.write_quorum as usize;
    let mut seen = 0;
    let deadline = tokio::time::sleep(ctx.config.add_timeout);
    tokio::pin!(deadline);
    while seen < expected {
        tokio::select! {
            ack = rx.recv() => {
                let Some(ack) = ack else { break };
                seen += 1;
                match ack.outcome {
                    AddOutcome::Ok => *acks.entry(ack.entry_id).or_default() += 1,
                    AddOutcome::Fenced => failures.push(format!("{}: fenced", ack.bookie)),
                    AddOutcome::Failed(r) => {
                        ctx.metrics.bookie_error(BookieOp::Add);
                        failures.push(format!("{}: {r}", ack.bookie));
                    }
                }
            }
            _ = &mut deadline => break,
        }
    }
    let qa = md.ack_quorum as usize;
    if let Some(e) = entries
        .iter()
        .find(|e| acks.get(&e.entry_id).copied().unwrap_or(0) < qa)
    {
        return Err(LedgerError::Recovery {
            ledger_id: md.ledger_id,
            reason: format!(
                "entry {} re-replicated to fewer than {qa} bookies: {}",
                e.entry_id,
                failures.join("; ")
            ),
        });
    }
    Ok(())
}
