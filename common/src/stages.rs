//! Where an append's time goes, entry by entry: an opt-in tracer for
//! `strata perf bookie --stages`.
//!
//! The ledger client, the bookie and the benchmark run in one process there,
//! so one clock serves all of them: each marks the moment a sampled entry
//! passes one of the [`Stage`]s, and the benchmark reads the marks back at
//! the end of its run. A latency tail can then be pinned on the stage that
//! made it (the request's way in, the journal, the response's way back),
//! which the components' own histograms cannot do, since none of them sees
//! the time between them.
//!
//! Off (the only state outside the benchmark) a mark costs one atomic load.
//! On, every [`SAMPLE_EVERY`]th entry id is traced, into a table allocated
//! by [`enable`]; entries are told apart by id alone, so the tracer is for
//! runs that write one ledger at a time.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The points an add passes, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Stage {
    /// The ledger client queued the entry for a bookie.
    Queued,
    /// The add stream's request body took it (gRPC only).
    InBody,
    /// The bookie's add stream received it (gRPC only).
    Received,
    /// The bookie's storage started adding it.
    Storing,
    /// Its journal record was durable.
    Durable,
    /// The bookie's add stream answered it (gRPC only).
    Answered,
    /// The ledger client received the answer (gRPC only).
    AnswerReceived,
    /// The writer acknowledged the entry to its caller.
    Acknowledged,
}

/// How many stages there are.
pub const STAGES: usize = 8;

/// Names of the stages, by index.
pub const STAGE_NAMES: [&str; STAGES] = [
    "queued",
    "in_body",
    "received",
    "storing",
    "durable",
    "answered",
    "answer_received",
    "acknowledged",
];

/// One entry in this many is traced.
pub const SAMPLE_EVERY: u64 = 16;

struct Table {
    start: Instant,
    /// `slots × STAGES` nanoseconds since `start`, plus one (0: not passed).
    marks: Box<[AtomicU64]>,
    /// The entry id each slot holds.
    ids: Box<[AtomicU64]>,
}

static TABLE: OnceLock<Table> = OnceLock::new();

/// Turns the tracer on for this process, with room for `entries` sampled
/// entries (a slot is reused, and its older entry lost, past that). Only
/// the first call counts.
pub fn enable(entries: usize) {
    let slots = entries.max(1);
    TABLE.get_or_init(|| Table {
        start: Instant::now(),
        marks: (0..slots * STAGES).map(|_| AtomicU64::new(0)).collect(),
        ids: (0..slots).map(|_| AtomicU64::new(0)).collect(),
    });
}

/// Records that entry `entry_id` passed `stage` now (if the tracer is on
/// and the entry is sampled).
#[inline]
pub fn mark(entry_id: u64, stage: Stage) {
    let Some(t) = TABLE.get() else {
        return;
    };
    if !entry_id.is_multiple_of(SAMPLE_EVERY) {
        return;
    }
    let slots = t.ids.len();
    let slot = (entry_id / SAMPLE_EVERY) as usize % slots;
    let row = &t.marks[slot * STAGES..(slot + 1) * STAGES];
    if stage == Stage::Queued {
        for m in row {
            m.store(0, Ordering::Relaxed);
        }
        t.ids[slot].store(entry_id, Ordering::Relaxed);
    }
    let ns = t.start.elapsed().as_nanos() as u64 + 1;
    row[stage as usize].store(ns, Ordering::Relaxed);
}

/// Marks a whole batch of entries.
pub fn mark_all(entry_ids: impl IntoIterator<Item = u64>, stage: Stage) {
    if TABLE.get().is_none() {
        return;
    }
    for id in entry_ids {
        mark(id, stage);
    }
}

/// One traced entry: when it passed each stage, in nanoseconds on a common
/// clock (`None`: not passed, or not on this entry's path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub entry_id: u64,
    pub at: [Option<u64>; STAGES],
}

/// Every traced entry that was queued, and clears the table.
pub fn take() -> Vec<Trace> {
    let Some(t) = TABLE.get() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (slot, id) in t.ids.iter().enumerate() {
        let row = &t.marks[slot * STAGES..(slot + 1) * STAGES];
        let mut at = [None; STAGES];
        for (a, m) in at.iter_mut().zip(row) {
            let v = m.swap(0, Ordering::Relaxed);
            *a = (v != 0).then_some(v);
        }
        if at[Stage::Queued as usize].is_some() {
            out.push(Trace {
                entry_id: id.load(Ordering::Relaxed),
                at,
            });
        }
    }
    out.sort_by_key(|t| t.entry_id);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the tracer is process-wide, and tests share the process.
    #[test]
    fn sampled_entries_are_traced_through_the_stages_they_pass() {
        mark(0, Stage::Queued);
        assert!(take().is_empty(), "off until enabled");
        enable(8);
        for id in 0..64u64 {
            mark(id, Stage::Queued);
            mark(id, Stage::Storing);
        }
        mark_all([0, 16, 17], Stage::Acknowledged);
        let traces = take();
        let ids: Vec<u64> = traces.iter().map(|t| t.entry_id).collect();
        assert_eq!(ids, vec![0, 16, 32, 48]);
        let first = &traces[0];
        let queued = first.at[Stage::Queued as usize].unwrap();
        let storing = first.at[Stage::Storing as usize].unwrap();
        let acked = first.at[Stage::Acknowledged as usize].unwrap();
        assert!(queued <= storing && storing <= acked);
        assert_eq!(first.at[Stage::Received as usize], None);
        assert_eq!(traces[2].at[Stage::Acknowledged as usize], None);
        assert!(take().is_empty(), "taking clears the table");
    }
}
