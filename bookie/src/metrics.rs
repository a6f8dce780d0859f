//! The bookie's metrics (`strata_bookie_*`).

use strata_common::metrics::{Counter, Exposition, Gauge, Histogram};

#[derive(Debug)]
pub struct Metrics {
    pub journal_fsync_seconds: Histogram,
    /// Time the journal thread spends writing a batch (pwrite), before its sync.
    pub journal_write_seconds: Histogram,
    /// Time a record waits in the journal queue before a batch takes it.
    pub journal_queue_seconds: Histogram,
    /// Time an add waits for room in the write cache.
    pub write_cache_wait_seconds: Histogram,
    pub journal_batch_bytes: Histogram,
    pub journal_bytes: Counter,
    pub add_seconds: Histogram,
    pub adds: Counter,
    pub add_errors: Counter,
    pub read_seconds: Histogram,
    pub reads: Counter,
    pub read_errors: Counter,
    pub write_cache_hits: Counter,
    pub read_cache_hits: Counter,
    pub read_cache_misses: Counter,
    pub write_cache_bytes: Gauge,
    pub flushes: Counter,
    pub flush_seconds: Histogram,
    pub compacted_logs: Counter,
    pub reclaimed_bytes: Counter,
    pub read_only: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            journal_fsync_seconds: Histogram::latency(),
            journal_write_seconds: Histogram::latency(),
            write_cache_wait_seconds: Histogram::latency(),
            journal_queue_seconds: Histogram::latency(),
            journal_batch_bytes: Histogram::sizes(),
            journal_bytes: Counter::default(),
            add_seconds: Histogram::latency(),
            adds: Counter::default(),
            add_errors: Counter::default(),
            read_seconds: Histogram::latency(),
            reads: Counter::default(),
            read_errors: Counter::default(),
            write_cache_hits: Counter::default(),
            read_cache_hits: Counter::default(),
            read_cache_misses: Counter::default(),
            write_cache_bytes: Gauge::default(),
            flushes: Counter::default(),
            flush_seconds: Histogram::latency(),
            compacted_logs: Counter::default(),
            reclaimed_bytes: Counter::default(),
            read_only: Gauge::default(),
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut e = Exposition::default();
        self.render_into(&mut e);
        e.finish()
    }

    pub fn render_into(&self, e: &mut Exposition) {
        e.histogram(
            "strata_bookie_journal_write_seconds",
            "Journal batch write (before its fdatasync).",
            &self.journal_write_seconds,
        );
        e.histogram(
            "strata_bookie_journal_queue_seconds",
            "Time records wait in the journal queue before a batch takes them.",
            &self.journal_queue_seconds,
        );
        e.histogram(
            "strata_bookie_write_cache_wait_seconds",
            "Time adds wait for room in the write cache.",
            &self.write_cache_wait_seconds,
        );
        e.histogram(
            "strata_bookie_journal_fsync_seconds",
            "Journal fdatasync latency.",
            &self.journal_fsync_seconds,
        );
        e.histogram(
            "strata_bookie_journal_batch_bytes",
            "Bytes per journal group commit.",
            &self.journal_batch_bytes,
        );
        e.counter(
            "strata_bookie_journal_bytes_total",
            "Bytes written to the journal.",
            self.journal_bytes.get(),
        );
        e.histogram(
            "strata_bookie_add_seconds",
            "Add latency, receipt to durable.",
            &self.add_seconds,
        );
        e.counter(
            "strata_bookie_adds_total",
            "Entries added.",
            self.adds.get(),
        );
        e.counter(
            "strata_bookie_add_errors_total",
            "Adds rejected or failed.",
            self.add_errors.get(),
        );
        e.histogram(
            "strata_bookie_read_seconds",
            "Read request latency.",
            &self.read_seconds,
        );
        e.counter(
            "strata_bookie_reads_total",
            "Entries read.",
            self.reads.get(),
        );
        e.counter(
            "strata_bookie_read_errors_total",
            "Reads failed.",
            self.read_errors.get(),
        );
        e.counter(
            "strata_bookie_write_cache_hits_total",
            "Reads served by the write cache.",
            self.write_cache_hits.get(),
        );
        e.counter(
            "strata_bookie_read_cache_hits_total",
            "Reads served by the foyer cache.",
            self.read_cache_hits.get(),
        );
        e.counter(
            "strata_bookie_read_cache_misses_total",
            "Reads that went to the entry logs.",
            self.read_cache_misses.get(),
        );
        e.gauge(
            "strata_bookie_write_cache_bytes",
            "Bytes held in the write cache.",
            self.write_cache_bytes.get(),
        );
        e.counter(
            "strata_bookie_flushes_total",
            "Write-cache flushes (checkpoints).",
            self.flushes.get(),
        );
        e.histogram(
            "strata_bookie_flush_seconds",
            "Write-cache flush duration.",
            &self.flush_seconds,
        );
        e.counter(
            "strata_bookie_compacted_entry_logs_total",
            "Entry logs compacted or removed.",
            self.compacted_logs.get(),
        );
        e.counter(
            "strata_bookie_reclaimed_bytes_total",
            "Disk bytes reclaimed by garbage collection.",
            self.reclaimed_bytes.get(),
        );
        e.gauge(
            "strata_bookie_read_only",
            "1 while the bookie refuses adds.",
            self.read_only.get(),
        );
    }
}

impl strata_common::metrics::MetricsSource for Metrics {
    fn render(&self, out: &mut Exposition) {
        self.render_into(out);
    }
}
