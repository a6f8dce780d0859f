//! Reading ledgers: entries come from their write set, one replica at a time;
//! an entry a replica does not have, or returns with a bad checksum, is asked
//! of the next replica. Contiguous runs go out as one ranged read.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bytes::Bytes;
use futures::future::join_all;
use strata_proto::bookie::{Entry, ReadLacRequest, ReadRequest};
use tracing::warn;

use crate::ClientCtx;
use crate::bookie_client::status_error;
use crate::error::{LedgerError, Result};
use crate::metadata::{self, LedgerMetadata};
use crate::metrics::BookieOp;

/// Byte budget of one read request.
const READ_BYTES: u64 = 8 << 20;

/// One entry read back, checksum verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub entry_id: u64,
    pub payload: Bytes,
    pub cumulative_length: u64,
}

/// Reads one ledger. For an open ledger only entries up to the last add
/// confirmed are readable; [`LedgerReader::refresh_lac`] learns newer ones.
pub struct LedgerReader {
    ctx: ClientCtx,
    md: LedgerMetadata,
    lac: i64,
}

impl LedgerReader {
    pub(crate) fn new(ctx: ClientCtx, md: LedgerMetadata, lac: i64) -> Self {
        LedgerReader { ctx, md, lac }
    }

    pub fn ledger_id(&self) -> u64 {
        self.md.ledger_id
    }

    pub fn metadata(&self) -> &LedgerMetadata {
        &self.md
    }

    /// Highest readable entry id (-1: none).
    pub fn last_readable(&self) -> i64 {
        if self.md.is_closed() {
            self.md.last_entry_id
        } else {
            self.lac
        }
    }

    /// Re-reads the metadata and asks the bookies for their LAC.
    pub async fn refresh_lac(&mut self) -> Result<i64> {
        let (md, _) = metadata::read(self.ctx.store.as_ref(), self.md.ledger_id).await?;
        self.md = md;
        if !self.md.is_closed() {
            let lac = read_lac(&self.ctx, &self.md).await?;
            self.lac = self.lac.max(lac);
        }
        Ok(self.last_readable())
    }

    /// Reads entries `first..=last`, which must be readable.
    pub async fn read(&self, first: u64, last: u64) -> Result<Vec<LedgerEntry>> {
        let readable = self.last_readable();
        if first > last || last as i64 > readable {
            return Err(LedgerError::NoSuchEntry(self.md.ledger_id, last));
        }
        let started = Instant::now();
        let result = read_entries(&self.ctx, &self.md, first, last).await;
        let m = &self.ctx.metrics;
        m.read_latency.observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(entries) => {
                m.read_entries.inc_by(entries.len() as u64);
                m.read_bytes
                    .inc_by(entries.iter().map(|e| e.payload.len() as u64).sum());
            }
            Err(_) => m.read_errors.inc(),
        }
        result
    }
}

/// The highest LAC any bookie of the last fragment reports. Any reported
/// value was the writer's confirmed LAC at some point, so the maximum is safe.
pub(crate) async fn read_lac(ctx: &ClientCtx, md: &LedgerMetadata) -> Result<i64> {
    let asks = md.last_fragment().bookies.iter().map(|b| async move {
        let conn = ctx.pool.get(b)?;
        let mut rpc = conn.rpc.clone();
        rpc.read_lac(ReadLacRequest {
            ledger_id: md.ledger_id,
        })
        .await
        .map(|r| r.into_inner().lac)
        .map_err(|s| status_error(b, s))
    });
    let mut best: Option<i64> = None;
    let mut last_err = None;
    for r in join_all(asks).await {
        match r {
            Ok(lac) => best = Some(best.map_or(lac, |b: i64| b.max(lac))),
            Err(e) => {
                ctx.metrics.bookie_error(BookieOp::ReadLac);
                last_err = Some(e);
            }
        }
    }
    // Entries before the last fragment were confirmed when it was created.
    let floor = md.last_fragment().first_entry as i64 - 1;
    match (best, last_err) {
        (Some(l), _) => Ok(l.max(floor)),
        (None, Some(e)) if floor < 0 => Err(e),
        _ => Ok(floor),
    }
}

/// Reads `first..=last`, failing over between replicas.
pub(crate) async fn read_entries(
    ctx: &ClientCtx,
    md: &LedgerMetadata,
    first: u64,
    last: u64,
) -> Result<Vec<LedgerEntry>> {
    let mut found: BTreeMap<u64, LedgerEntry> = BTreeMap::new();
    let mut remaining: BTreeSet<u64> = (first..=last).collect();
    let mut last_error: Option<LedgerError> = None;
    for replica in 0..md.write_quorum as usize {
        if remaining.is_empty() {
            break;
        }
        // Group what is left by the bookie holding this replica.
        let mut by_bookie: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for id in &remaining {
            let frag = md.fragment(*id);
            let e = frag.bookies.len();
            let bookie = if e == md.write_quorum as usize {
                // Every bookie has every entry: keep ranges on one bookie.
                frag.bookies[(first as usize + replica) % e].clone()
            } else {
                metadata::write_set(&frag.bookies, md.write_quorum, *id)[replica].clone()
            };
            by_bookie.entry(bookie).or_default().push(*id);
        }
        let reads = by_bookie.into_iter().map(|(bookie, ids)| async move {
            let r = read_from(ctx, md.ledger_id, &bookie, &ids).await;
            (bookie, r)
        });
        for (bookie, result) in join_all(reads).await {
            match result {
                Ok(entries) => {
                    for e in entries {
                        remaining.remove(&e.entry_id);
                        found.insert(e.entry_id, e);
                    }
                }
                Err(e) => {
                    ctx.metrics.bookie_error(BookieOp::Read);
                    warn!(ledger_id = md.ledger_id, %bookie, error = %e, "read failed; trying another replica");
                    last_error = Some(e);
                }
            }
        }
    }
    if let Some(missing) = remaining.first() {
        return Err(last_error.unwrap_or(LedgerError::NoSuchEntry(md.ledger_id, *missing)));
    }
    Ok(found.into_values().collect())
}

/// Reads the given ids from one bookie; returns those it had, verified.
/// Ids it lacks (or returns corrupt) are simply absent from the result.
async fn read_from(
    ctx: &ClientCtx,
    ledger_id: u64,
    bookie: &str,
    ids: &[u64],
) -> Result<Vec<LedgerEntry>> {
    let conn = ctx.pool.get(bookie)?;
    let mut out = Vec::with_capacity(ids.len());
    let mut rest: Vec<u64> = ids.to_vec();
    while let Some(&start) = rest.first() {
        let end = rest[rest.len() - 1];
        let req = if end - start + 1 == rest.len() as u64 {
            ReadRequest {
                ledger_id,
                first_entry: start,
                last_entry: end,
                entry_ids: Vec::new(),
                max_bytes: READ_BYTES,
            }
        } else {
            ReadRequest {
                ledger_id,
                entry_ids: rest.iter().take(4096).copied().collect(),
                max_bytes: READ_BYTES,
                ..Default::default()
            }
        };
        let resp = match conn.read_entries(req).await {
            Ok(r) => r,
            Err(s) if s.code() == tonic::Code::NotFound => {
                // This bookie lacks `start` (or the ledger): another replica may have it.
                rest.remove(0);
                continue;
            }
            Err(s) => return Err(status_error(bookie, s)),
        };
        let mut answered: BTreeSet<u64> = resp.missing.iter().copied().collect();
        for e in resp.entries {
            answered.insert(e.entry_id);
            match verify(ledger_id, bookie, e) {
                Ok(entry) => out.push(entry),
                Err(err) => warn!(%err, "discarding corrupt entry"),
            }
        }
        if answered.is_empty() {
            break;
        }
        rest.retain(|id| !answered.contains(id));
    }
    Ok(out)
}

fn verify(ledger_id: u64, bookie: &str, e: Entry) -> Result<LedgerEntry> {
    let crc = strata_proto::entry_crc32c(e.ledger_id, e.entry_id, e.cumulative_length, &e.payload);
    if e.ledger_id != ledger_id || crc != e.crc32c {
        return Err(LedgerError::Checksum {
            ledger_id,
            entry_id: e.entry_id,
            bookie: bookie.to_string(),
        });
    }
    Ok(LedgerEntry {
        entry_id: e.entry_id,
        payload: e.payload,
        cumulative_length: e.cumulative_length,
    })
}
