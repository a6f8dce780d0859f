//! Metrics of the cold tier (`strata_offload_*`, `strata_cold_*`): the
//! offloader's work and, per namespace, the traffic to the object store.

use std::sync::Arc;

use strata_common::metrics::{Counter, Exposition, MetricsSource};

use crate::registry::Usage;
use crate::tier::Tier;

#[derive(Debug, Default)]
pub struct OffloaderMetrics {
    pub ledgers_offloaded: Counter,
    /// Object bytes written for ledgers that were verified.
    pub bytes_offloaded: Counter,
    /// Offload passes that failed (retried later).
    pub failures: Counter,
    pub bookie_copies_deleted: Counter,
    pub orphans_deleted: Counter,
    pub stale_records_deleted: Counter,
    pub reconcile_runs: Counter,
}

/// Renders the offloader's counters and the per-namespace cold traffic.
pub struct ColdMetrics {
    pub offloader: Option<Arc<OffloaderMetrics>>,
    pub usage: Arc<Usage>,
    /// The broker's side (retention deletes, storage per namespace).
    pub tier: Option<Arc<Tier>>,
}

impl MetricsSource for ColdMetrics {
    fn render(&self, out: &mut Exposition) {
        if let Some(m) = &self.offloader {
            out.counter(
                "strata_offload_ledgers_total",
                "Ledgers offloaded and verified.",
                m.ledgers_offloaded.get(),
            );
            out.counter(
                "strata_offload_bytes_total",
                "Object bytes written for verified offloads.",
                m.bytes_offloaded.get(),
            );
            out.counter(
                "strata_offload_failures_total",
                "Offload passes that failed (retried later).",
                m.failures.get(),
            );
            out.counter(
                "strata_offload_bookie_copies_deleted_total",
                "Bookie copies deleted after the deletion lag.",
                m.bookie_copies_deleted.get(),
            );
            out.counter(
                "strata_offload_orphans_deleted_total",
                "Unreferenced objects deleted by reconciliation.",
                m.orphans_deleted.get(),
            );
            out.counter(
                "strata_offload_stale_records_deleted_total",
                "Offload records of deleted ledgers removed by reconciliation.",
                m.stale_records_deleted.get(),
            );
            out.counter(
                "strata_offload_reconcile_runs_total",
                "Reconciliation passes.",
                m.reconcile_runs.get(),
            );
        }
        if let Some(t) = &self.tier {
            render_reader(out, &t.reader().stats());
            out.counter(
                "strata_cold_copies_deleted_total",
                "Cold copies deleted by retention or topic deletion.",
                t.copies_deleted.get(),
            );
            for (ns, u) in t.storage_by_namespace() {
                let (hot, cold) = (u.hot_bytes, u.cold_bytes);
                let labels = [("namespace", ns.as_str())];
                out.gauge_with(
                    "strata_namespace_hot_storage_bytes",
                    "Bytes a namespace holds on bookies.",
                    &labels,
                    hot as i64,
                );
                out.gauge_with(
                    "strata_namespace_cold_storage_bytes",
                    "Bytes a namespace holds in the cold tier.",
                    &labels,
                    cold as i64,
                );
            }
        }
        let namespaces = self.usage.namespaces();
        type Field = (&'static str, &'static str, fn(&crate::IoCounts) -> u64);
        const FIELDS: [Field; 7] = [
            (
                "strata_cold_put_requests_total",
                "PUT requests to the object store.",
                |c| c.put_requests,
            ),
            (
                "strata_cold_put_bytes_total",
                "Bytes written to the object store.",
                |c| c.put_bytes,
            ),
            (
                "strata_cold_get_requests_total",
                "GET and HEAD requests to the object store.",
                |c| c.get_requests,
            ),
            (
                "strata_cold_get_bytes_total",
                "Bytes read from the object store.",
                |c| c.get_bytes,
            ),
            (
                "strata_cold_delete_requests_total",
                "DELETE requests to the object store.",
                |c| c.delete_requests,
            ),
            (
                "strata_cold_retries_total",
                "Object-store requests retried.",
                |c| c.retries,
            ),
            (
                "strata_cold_corrupt_blocks_total",
                "Cold blocks that failed verification (never served).",
                |c| c.corrupt_blocks,
            ),
        ];
        let snaps: Vec<(String, crate::IoCounts)> = namespaces
            .iter()
            .map(|(n, s)| (n.clone(), s.snapshot()))
            .collect();
        for (name, help, get) in FIELDS {
            for (ns, c) in &snaps {
                out.counter_with(name, help, &[("namespace", ns)], get(c));
            }
        }
    }
}

/// The tiered reader's block cache and requests.
fn render_reader(out: &mut Exposition, s: &crate::ReaderStats) {
    let counters: [(&str, &str, u64); 12] = [
        (
            "strata_cold_cache_memory_hits_total",
            "Cold blocks reads found in the memory cache.",
            s.memory_hits,
        ),
        (
            "strata_cold_cache_disk_hits_total",
            "Cold blocks reads found in the local disk cache.",
            s.disk_hits,
        ),
        (
            "strata_cold_cache_misses_total",
            "Cold blocks reads had to fetch from the object store.",
            s.misses,
        ),
        (
            "strata_cold_cache_disk_writes_total",
            "Runs of blocks (or single blocks) written to the local disk cache.",
            s.disk_cache_writes,
        ),
        (
            "strata_cold_cache_disk_write_bytes_total",
            "Bytes written to the local disk cache.",
            s.disk_cache_write_bytes,
        ),
        (
            "strata_cold_read_ahead_blocks_total",
            "Cold blocks fetched ahead of sequential readers.",
            s.read_ahead_blocks,
        ),
        (
            "strata_cold_index_head_blocks_total",
            "First blocks of cold ledgers that came with the ledger's index.",
            s.index_head_blocks,
        ),
        (
            "strata_cold_read_ahead_hits_total",
            "Cold blocks reads took from what read-ahead held for them.",
            s.read_ahead_hits,
        ),
        (
            "strata_cold_reader_get_requests_total",
            "GETs of the tiered reader (index and data).",
            s.get_requests,
        ),
        (
            "strata_cold_reader_get_bytes_total",
            "Bytes the tiered reader fetched.",
            s.bytes_fetched,
        ),
        (
            "strata_cold_index_hits_total",
            "Ledger opens that found the index cached.",
            s.index_hits,
        ),
        (
            "strata_cold_index_misses_total",
            "Ledger opens that fetched the index.",
            s.index_misses,
        ),
    ];
    for (name, help, v) in counters {
        out.counter(name, help, v);
    }
    let gauges: [(&str, &str, u64); 3] = [
        (
            "strata_cold_reader_in_flight_requests",
            "GETs of the tiered reader running now.",
            s.in_flight_requests,
        ),
        (
            "strata_cold_cache_memory_bytes",
            "Bytes in the cold block cache's memory.",
            s.memory_cache_bytes,
        ),
        (
            "strata_cold_read_ahead_held_bytes",
            "Bytes fetched ahead of readers and not read yet.",
            s.read_ahead_held_bytes,
        ),
    ];
    for (name, help, v) in gauges {
        out.gauge(name, help, v as i64);
    }
}
