//! The ledger client's metrics (`strata_ledger_client_*`): what the broker
//! sees of its bookies. The bookie's own histograms say how long a bookie
//! took; these say how long the writer waited for a quorum, which includes
//! the network, the slowest bookie of the ack quorum and ensemble changes.
//!
//! One set per [`crate::LedgerClient`] (shared by its clones, writers and
//! readers), rendered on `/metrics` through [`MetricsSource`].

use strata_common::metrics::{Counter, Exposition, Histogram, MetricsSource};

/// Which request to a bookie failed.
#[derive(Clone, Copy, Debug)]
pub enum BookieOp {
    /// An add the bookie refused, failed or did not answer in time.
    Add,
    /// A read (other than "no such entry", which is an answer).
    Read,
    /// A fence during recovery.
    Fence,
    /// A last-add-confirmed request.
    ReadLac,
}

#[derive(Debug)]
pub struct LedgerClientMetrics {
    /// From `enqueue` to the acknowledgement to the caller (quorum reached
    /// and every earlier entry acknowledged).
    pub add_latency: Histogram,
    /// Entries acknowledged to callers.
    pub adds: Counter,
    /// Payload bytes of the entries acknowledged.
    pub add_bytes: Counter,
    /// Queued entries that failed (writer fenced, out of bookies, closed).
    pub add_errors: Counter,
    /// One [`crate::LedgerReader::read`] call, all replicas tried included.
    pub read_latency: Histogram,
    /// Entries returned to readers.
    pub read_entries: Counter,
    /// Payload bytes returned to readers.
    pub read_bytes: Counter,
    /// Read calls that failed.
    pub read_errors: Counter,
    /// Ensemble changes written to the ledger metadata.
    pub ensemble_changes: Counter,
    bookie_add_errors: Counter,
    bookie_read_errors: Counter,
    bookie_fence_errors: Counter,
    bookie_lac_errors: Counter,
    pub ledgers_created: Counter,
    pub ledgers_opened: Counter,
    /// Ledgers this client recovered and closed (fencing out their writer).
    pub ledgers_recovered: Counter,
    pub ledgers_deleted: Counter,
}

impl Default for LedgerClientMetrics {
    fn default() -> Self {
        LedgerClientMetrics {
            add_latency: Histogram::latency(),
            adds: Counter::default(),
            add_bytes: Counter::default(),
            add_errors: Counter::default(),
            read_latency: Histogram::latency(),
            read_entries: Counter::default(),
            read_bytes: Counter::default(),
            read_errors: Counter::default(),
            ensemble_changes: Counter::default(),
            bookie_add_errors: Counter::default(),
            bookie_read_errors: Counter::default(),
            bookie_fence_errors: Counter::default(),
            bookie_lac_errors: Counter::default(),
            ledgers_created: Counter::default(),
            ledgers_opened: Counter::default(),
            ledgers_recovered: Counter::default(),
            ledgers_deleted: Counter::default(),
        }
    }
}

impl LedgerClientMetrics {
    /// Counts one failed request to a bookie.
    pub fn bookie_error(&self, op: BookieOp) {
        self.bookie_errors(op).inc();
    }

    /// Failed requests to bookies of kind `op` so far.
    pub fn bookie_error_count(&self, op: BookieOp) -> u64 {
        self.bookie_errors(op).get()
    }

    fn bookie_errors(&self, op: BookieOp) -> &Counter {
        match op {
            BookieOp::Add => &self.bookie_add_errors,
            BookieOp::Read => &self.bookie_read_errors,
            BookieOp::Fence => &self.bookie_fence_errors,
            BookieOp::ReadLac => &self.bookie_lac_errors,
        }
    }

    pub fn render(&self) -> String {
        let mut e = Exposition::default();
        MetricsSource::render(self, &mut e);
        e.finish()
    }
}

impl MetricsSource for LedgerClientMetrics {
    fn render(&self, e: &mut Exposition) {
        e.histogram(
            "strata_ledger_client_add_latency_seconds",
            "Add latency seen by the ledger writer: enqueue to quorum acknowledgement.",
            &self.add_latency,
        );
        e.counter(
            "strata_ledger_client_adds_total",
            "Entries acknowledged to ledger writers.",
            self.adds.get(),
        );
        e.counter(
            "strata_ledger_client_add_bytes_total",
            "Payload bytes of the entries acknowledged to ledger writers.",
            self.add_bytes.get(),
        );
        e.counter(
            "strata_ledger_client_add_errors_total",
            "Queued entries whose add failed (writer fenced, closed or out of bookies).",
            self.add_errors.get(),
        );
        e.histogram(
            "strata_ledger_client_read_latency_seconds",
            "Ledger read latency seen by the reader, replica failover included.",
            &self.read_latency,
        );
        e.counter(
            "strata_ledger_client_read_entries_total",
            "Entries returned to ledger readers.",
            self.read_entries.get(),
        );
        e.counter(
            "strata_ledger_client_read_bytes_total",
            "Payload bytes returned to ledger readers.",
            self.read_bytes.get(),
        );
        e.counter(
            "strata_ledger_client_read_errors_total",
            "Ledger reads that failed.",
            self.read_errors.get(),
        );
        e.counter(
            "strata_ledger_client_ensemble_changes_total",
            "Ensemble changes (a failed or slow bookie replaced in an open ledger).",
            self.ensemble_changes.get(),
        );
        for (op, c) in [
            ("add", &self.bookie_add_errors),
            ("read", &self.bookie_read_errors),
            ("fence", &self.bookie_fence_errors),
            ("read_lac", &self.bookie_lac_errors),
        ] {
            e.counter_with(
                "strata_ledger_client_bookie_errors_total",
                "Requests to a bookie that failed or timed out, by request.",
                &[("op", op)],
                c.get(),
            );
        }
        e.counter(
            "strata_ledger_client_ledgers_created_total",
            "Ledgers created.",
            self.ledgers_created.get(),
        );
        e.counter(
            "strata_ledger_client_ledgers_opened_total",
            "Ledgers opened for reading (plain or with recovery).",
            self.ledgers_opened.get(),
        );
        e.counter(
            "strata_ledger_client_ledgers_recovered_total",
            "Open ledgers recovered and closed by this client.",
            self.ledgers_recovered.get(),
        );
        e.counter(
            "strata_ledger_client_ledgers_deleted_total",
            "Ledgers deleted.",
            self.ledgers_deleted.get(),
        );
    }
}
