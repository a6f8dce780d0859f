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
    /// Batches written, synced and completed by the journal thread itself,
    /// with nothing else in flight (the rest go through the pipeline).
    pub journal_unpipelined_batches: Counter,
    /// Journal files made from pooled ones instead of new space.
    pub journal_reused_files: Counter,
    /// Released journal files waiting to be reused.
    pub journal_pooled_files: Gauge,
    /// Journal writes and fdatasyncs that took `journal_slow_threshold` or more.
    pub journal_slow_writes: Counter,
    pub journal_slow_syncs: Counter,
    pub add_seconds: Histogram,
    pub adds: Counter,
    pub add_errors: Counter,
    pub read_seconds: Histogram,
    pub reads: Counter,
    pub read_errors: Counter,
    pub write_cache_hits: Counter,
    pub write_cache_misses: Counter,
    pub read_cache_hits: Counter,
    pub read_cache_misses: Counter,
    /// Reads issued to entry logs and journal files (one per span).
    pub disk_reads: Counter,
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
            journal_unpipelined_batches: Counter::default(),
            journal_reused_files: Counter::default(),
            journal_pooled_files: Gauge::default(),
            journal_slow_writes: Counter::default(),
            journal_slow_syncs: Counter::default(),
            add_seconds: Histogram::latency(),
            adds: Counter::default(),
            add_errors: Counter::default(),
            read_seconds: Histogram::latency(),
            reads: Counter::default(),
            read_errors: Counter::default(),
            write_cache_hits: Counter::default(),
            write_cache_misses: Counter::default(),
            read_cache_hits: Counter::default(),
            read_cache_misses: Counter::default(),
            disk_reads: Counter::default(),
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
        e.counter(
            "strata_bookie_journal_unpipelined_batches_total",
            "Journal batches below the group size, written, synced and completed by the journal thread itself because nothing else was in flight.",
            self.journal_unpipelined_batches.get(),
        );
        e.counter(
            "strata_bookie_journal_reused_files_total",
            "Journal files made from released ones (their blocks are overwritten, not newly allocated).",
            self.journal_reused_files.get(),
        );
        e.gauge(
            "strata_bookie_journal_pooled_files",
            "Released journal files waiting to be reused.",
            self.journal_pooled_files.get(),
        );
        e.counter(
            "strata_bookie_journal_slow_writes_total",
            "Journal writes that took journal_slow_threshold or more.",
            self.journal_slow_writes.get(),
        );
        e.counter(
            "strata_bookie_journal_slow_syncs_total",
            "Journal fdatasyncs that took journal_slow_threshold or more.",
            self.journal_slow_syncs.get(),
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
            "Read request latency, receipt to reply (one request reads one or more entries).",
            &self.read_seconds,
        );
        e.counter(
            "strata_bookie_reads_total",
            "Entry lookups (each read request asks for one or more entries).",
            self.reads.get(),
        );
        e.counter(
            "strata_bookie_read_errors_total",
            "Reads failed.",
            self.read_errors.get(),
        );
        e.counter(
            "strata_bookie_write_cache_hits_total",
            "Entry lookups served by the write cache.",
            self.write_cache_hits.get(),
        );
        e.counter(
            "strata_bookie_write_cache_misses_total",
            "Entry lookups not in the write cache (then tried in the read cache).",
            self.write_cache_misses.get(),
        );
        e.counter(
            "strata_bookie_read_cache_hits_total",
            "Entry lookups served by the foyer read cache.",
            self.read_cache_hits.get(),
        );
        e.counter(
            "strata_bookie_read_cache_misses_total",
            "Entry lookups missing from the foyer read cache (then read from the entry logs).",
            self.read_cache_misses.get(),
        );
        e.counter(
            "strata_bookie_disk_reads_total",
            "Reads issued to entry logs and journal files; consecutive entries of a range read share one.",
            self.disk_reads.get(),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::BookieConfig;
    use crate::entrylog::StoredEntry;
    use crate::storage::{AddOp, LedgerStorage};

    fn add_op(ledger: u64, entry: u64) -> AddOp {
        let payload = Bytes::from(vec![7u8; 100]);
        let cum = (entry + 1) * 100;
        AddOp {
            entry: StoredEntry {
                ledger_id: ledger,
                entry_id: entry,
                cumulative_length: cum,
                crc32c: strata_proto::entry_crc32c(ledger, entry, cum, &payload),
                payload,
            },
            lac: entry as i64 - 1,
            recovery: false,
        }
    }

    /// Each tier of the read path counts its own hits and misses: a lookup
    /// is a write-cache hit, or a write-cache miss and then a read-cache hit
    /// or miss (the entry log).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_path_counts_hits_and_misses_per_tier() {
        let dir = tempfile::tempdir().unwrap();
        let config = BookieConfig {
            data_dir: dir.path().to_path_buf(),
            journal_preallocate: 1 << 20,
            write_cache_bytes: 4 << 20,
            ..BookieConfig::default()
        };
        let m = Arc::new(Metrics::default());
        let s = LedgerStorage::open(&config, m.clone()).unwrap();
        s.add(add_op(1, 0)).await.unwrap();
        assert_eq!(m.adds.get(), 1);
        assert_eq!(m.add_seconds.count(), 1);
        assert!(m.journal_fsync_seconds.count() >= 1);

        assert!(s.read_blocking(1, 0).unwrap().is_some());
        assert_eq!(m.write_cache_hits.get(), 1);
        assert_eq!(m.write_cache_misses.get(), 0);

        // Flushed out of the write cache: the first read goes to the entry
        // log (and fills the read cache), the second hits the read cache.
        tokio::task::block_in_place(|| s.flush()).unwrap();
        assert!(s.read_blocking(1, 0).unwrap().is_some());
        assert_eq!(m.write_cache_misses.get(), 1);
        assert_eq!(m.read_cache_misses.get(), 1);
        assert_eq!(m.read_cache_hits.get(), 0);
        assert!(s.read_blocking(1, 0).unwrap().is_some());
        assert_eq!(m.write_cache_misses.get(), 2);
        assert_eq!(m.read_cache_misses.get(), 1);
        assert_eq!(m.read_cache_hits.get(), 1);
        assert_eq!(m.reads.get(), 3);

        let text = m.render();
        for line in [
            "strata_bookie_write_cache_hits_total 1",
            "strata_bookie_write_cache_misses_total 2",
            "strata_bookie_read_cache_hits_total 1",
            "strata_bookie_read_cache_misses_total 1",
            "strata_bookie_add_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
