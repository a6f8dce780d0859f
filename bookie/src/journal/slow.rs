//! Slow journal I/O, reported without flooding the log.
//!
//! A journal write or fdatasync that takes long delays every add waiting on
//! it, and the add latency histograms show that it happened but not when.
//! Each slow operation is counted (`strata_bookie_journal_slow_*_total`),
//! and the journal thread logs a warning with its timestamp, at most once
//! per [`REPORT_EVERY`]: how many operations of the interval were slow, out
//! of how many, and the longest. A disk that stalls for a moment then shows
//! up in the log next to the client's latency spike.

use std::time::{Duration, Instant};

use tracing::warn;

use strata_common::metrics::{Counter, Histogram};

/// Default `journal_slow_threshold`.
pub const SLOW_THRESHOLD: Duration = Duration::from_millis(100);

/// Shortest time between two warnings of one tracker.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// What one report says.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub slow: u64,
    pub total: u64,
    pub longest: Duration,
    pub over: Duration,
}

/// Times one kind of operation (`what`: "write" or "fdatasync").
pub struct SlowIo {
    what: &'static str,
    threshold: Duration,
    since: Instant,
    total: u64,
    slow: u64,
    longest: Duration,
    last_report: Option<Instant>,
}

impl SlowIo {
    /// `threshold` zero turns the tracking off.
    pub fn new(what: &'static str, threshold: Duration) -> SlowIo {
        SlowIo {
            what,
            threshold,
            since: Instant::now(),
            total: 0,
            slow: 0,
            longest: Duration::ZERO,
            last_report: None,
        }
    }

    /// Runs `op` on journal file `seq`, recording how long it took in
    /// `seconds` and here (see [`SlowIo::observe`]).
    pub fn time<T>(
        &mut self,
        seconds: &Histogram,
        slow_ops: &Counter,
        seq: u64,
        op: impl FnOnce() -> T,
    ) -> T {
        let started = Instant::now();
        let out = op();
        let took = started.elapsed();
        seconds.observe(took.as_secs_f64());
        self.observe(took, slow_ops, seq);
        out
    }

    /// Records one operation that took `took` (counting it in `slow_ops`
    /// if slow) on journal file `seq`, and logs a report when one is due.
    pub fn observe(&mut self, took: Duration, slow_ops: &Counter, seq: u64) {
        if let Some(r) = self.note(took, Instant::now, slow_ops) {
            warn!(
                op = self.what,
                slow = r.slow,
                of = r.total,
                over_secs = r.over.as_secs_f64(),
                longest_ms = r.longest.as_secs_f64() * 1e3,
                threshold_ms = self.threshold.as_secs_f64() * 1e3,
                journal_file = seq,
                "slow journal {}: the disk held up the adds waiting on it",
                self.what
            );
        }
    }

    /// The bookkeeping of [`SlowIo::observe`], with the clock passed in
    /// (read only for a slow operation: the common case stays off it):
    /// returns the report to log, if one is due.
    pub fn note(
        &mut self,
        took: Duration,
        now: impl FnOnce() -> Instant,
        slow_ops: &Counter,
    ) -> Option<Report> {
        if self.threshold.is_zero() {
            return None;
        }
        self.total += 1;
        if took < self.threshold {
            return None;
        }
        self.slow += 1;
        slow_ops.inc();
        self.longest = self.longest.max(took);
        let now = now();
        if self
            .last_report
            .is_some_and(|at| now.saturating_duration_since(at) < REPORT_EVERY)
        {
            return None;
        }
        let report = Report {
            slow: self.slow,
            total: self.total,
            longest: self.longest,
            over: now.saturating_duration_since(self.since),
        };
        self.last_report = Some(now);
        self.since = now;
        self.total = 0;
        self.slow = 0;
        self.longest = Duration::ZERO;
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn slow_operations_are_counted_and_reported_at_most_every_interval() {
        let counter = Counter::default();
        let mut s = SlowIo::new("fdatasync", 100 * MS);
        let t0 = Instant::now();
        assert_eq!(s.note(5 * MS, || t0, &counter), None);
        // The first slow one is reported at once, with what came before it.
        let first = s
            .note(150 * MS, || t0 + MS, &counter)
            .expect("first slow op reported");
        assert_eq!((first.slow, first.total, first.longest), (1, 2, 150 * MS));
        // Within the interval: counted, not reported.
        assert_eq!(s.note(300 * MS, || t0 + 2 * MS, &counter), None);
        assert_eq!(s.note(120 * MS, || t0 + 3 * MS, &counter), None);
        assert_eq!(s.note(MS, || t0 + 4 * MS, &counter), None);
        assert_eq!(counter.get(), 3);
        // Past it: the next slow one reports the whole interval.
        let next = s
            .note(110 * MS, || t0 + MS + REPORT_EVERY, &counter)
            .expect("reported again after the interval");
        assert_eq!((next.slow, next.total, next.longest), (3, 4, 300 * MS));
        assert_eq!(next.over, REPORT_EVERY);
        assert_eq!(counter.get(), 4);
    }

    #[test]
    fn a_zero_threshold_turns_tracking_off() {
        let counter = Counter::default();
        let mut s = SlowIo::new("write", Duration::ZERO);
        assert_eq!(s.note(Duration::from_secs(5), Instant::now, &counter), None);
        assert_eq!(counter.get(), 0);
    }
}
