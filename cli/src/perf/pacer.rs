//! Paced sends with sub-millisecond precision.
//!
//! tokio's timers tick in whole milliseconds: a loop that sleeps until each
//! send is due wakes up to a millisecond late and then sends a burst, and
//! since paced latencies are measured from each send's scheduled time (so a
//! stalled system is charged for the sends it delayed), that lateness, the
//! benchmark's own, was added to every latency (~0.6 ms at the median of a
//! 500 k msg/s run). A pacer thread, which sleeps with the OS's precision,
//! releases each send as it falls due instead.
//!
//! Its wake-ups cost CPU next to the system measured: on a 2-core machine,
//! a 200 µs tick gave a ~0.5 ms lower median but a 2–3 ms higher p99 than a
//! 1 ms tick at 500 k msg/s, and on the VM of stop 30 a 200 µs tick at
//! real-time priority (as `perf bookie` paced) made the hypervisor take
//! ~13 % of the machine's CPU, in pauses of the whole VM that every latency
//! then included (see `perf::cpu::MachineCpu`). The default is 1 ms;
//! `--pace-tick-us` chooses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// The pacer's default tick, in µs (`--pace-tick-us`): its shortest sleep.
/// At high rates it releases the sends due over one tick at once.
pub const DEFAULT_TICK_US: u64 = 1000;

/// The pacer's longest sleep: how soon it notices it was dropped at low rates.
const MAX_SLEEP: Duration = Duration::from_millis(20);

/// Releases sends `k = 0, 1, 2, …` at `start + (k + phase) / rate`.
pub struct Pacer {
    start: Instant,
    rate: f64,
    phase: f64,
    next: u64,
    released: Arc<Semaphore>,
    /// Sends released in all, once the pacer has stopped (`u64::MAX` until then).
    total: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Pacer {
    /// Starts the pacer thread; it stops at `end` or when the pacer is
    /// dropped. It sleeps at least `tick` at a time.
    pub fn start(
        start: Instant,
        rate: f64,
        phase: f64,
        end: Instant,
        tick: Duration,
    ) -> std::io::Result<Pacer> {
        let released = Arc::new(Semaphore::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let total = Arc::new(AtomicU64::new(u64::MAX));
        {
            let (released, stop, total) = (released.clone(), stop.clone(), total.clone());
            // Not joined: it ends on its own within MAX_SLEEP of a stop, and
            // a join in `drop` would block the sender's runtime thread.
            std::thread::Builder::new()
                .name("perf-pacer".into())
                .spawn(move || {
                    let mut issued = 0u64;
                    while !stop.load(Ordering::Acquire) {
                        let now = Instant::now();
                        // Nothing falls due after the end.
                        let due =
                            due_by(now.min(end).saturating_duration_since(start), rate, phase);
                        if due > issued {
                            released.add_permits((due - issued) as usize);
                            issued = due;
                        }
                        if now >= end {
                            break;
                        }
                        let next = due_at(start, rate, phase, issued);
                        std::thread::sleep(
                            next.saturating_duration_since(now)
                                .clamp(tick, MAX_SLEEP.max(tick)),
                        );
                    }
                    // Wake the sender for good: past `total`, `next` ends.
                    total.store(issued, Ordering::Release);
                    released.add_permits(1 << 30);
                })?;
        }
        Ok(Pacer {
            start,
            rate,
            phase,
            next: 0,
            released,
            total,
            stop,
        })
    }

    /// Waits until the next send is due; returns its scheduled time, or
    /// `None` once the pacer has stopped.
    pub async fn next(&mut self) -> Option<Instant> {
        self.released.acquire().await.ok()?.forget();
        if self.next >= self.total.load(Ordering::Acquire) {
            return None;
        }
        let due = due_at(self.start, self.rate, self.phase, self.next);
        self.next += 1;
        Some(due)
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Releases sends as [`Pacer`] does, on the calling thread: it sleeps (at
/// least `tick` at a time) until the next send is due, then releases every
/// send due by the time it woke. For a load generator that has a thread of
/// its own, this saves the pacer thread's wake-up of the sender at every
/// tick: on the 2-core development VM, 1 KiB appends paced at 400 k/s took
/// 3.0–3.3 µs of CPU each this way against 3.5–3.9 with a pacer thread,
/// and their median latency was 0.2–0.4 ms lower.
pub struct InlinePacer {
    start: Instant,
    rate: f64,
    phase: f64,
    end: Instant,
    tick: Duration,
    next: u64,
    /// Sends due by the last wake-up.
    released: u64,
}

impl InlinePacer {
    pub fn new(start: Instant, rate: f64, phase: f64, end: Instant, tick: Duration) -> InlinePacer {
        InlinePacer {
            start,
            rate,
            phase,
            end,
            tick,
            next: 0,
            released: 0,
        }
    }

    /// Blocks the calling thread (never a runtime worker's) until the next
    /// send is due; returns its scheduled time, or `None` once the next
    /// would fall at or after the end.
    pub fn next_blocking(&mut self) -> Option<Instant> {
        let due = due_at(self.start, self.rate, self.phase, self.next);
        if due >= self.end {
            return None;
        }
        if self.next >= self.released {
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).max(self.tick));
            }
            let woke = Instant::now().min(self.end);
            self.released = due_by(
                woke.saturating_duration_since(self.start),
                self.rate,
                self.phase,
            );
        }
        self.next += 1;
        Some(due)
    }
}

/// When send `k` is due: `start + (k + phase) / rate`.
fn due_at(start: Instant, rate: f64, phase: f64, k: u64) -> Instant {
    start + Duration::from_secs_f64((k as f64 + phase) / rate)
}

/// How many sends are due `elapsed` after the start: those with
/// `(k + phase) / rate <= elapsed`.
fn due_by(elapsed: Duration, rate: f64, phase: f64) -> u64 {
    let x = elapsed.as_secs_f64() * rate - phase;
    if x < 0.0 { 0 } else { x.floor() as u64 + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_fall_due_at_their_times() {
        assert_eq!(due_by(Duration::ZERO, 1000.0, 0.0), 1);
        assert_eq!(due_by(Duration::ZERO, 1000.0, 0.5), 0);
        assert_eq!(due_by(Duration::from_micros(999), 1000.0, 0.0), 1);
        assert_eq!(due_by(Duration::from_millis(1), 1000.0, 0.0), 2);
        assert_eq!(due_by(Duration::from_millis(10), 1000.0, 0.5), 10);
    }

    /// The schedule both pacer tests run: 2,000 sends/s, each a quarter of
    /// an interval into it, for 200 ms starting 5 ms from now.
    const RATE: f64 = 2_000.0;
    const PHASE: f64 = 0.25;

    fn schedule() -> (Instant, Instant) {
        let start = Instant::now() + Duration::from_millis(5);
        (start, start + Duration::from_millis(200))
    }

    /// Finer than the default, so that sends at 2,000/s are released one
    /// by one.
    fn tick() -> Duration {
        Duration::from_micros(200)
    }

    /// A send released at `due` was not released before it.
    fn assert_not_early(due: Instant) {
        let now = Instant::now();
        assert!(
            now + Duration::from_micros(1) >= due,
            "released {:?} early",
            due - now
        );
    }

    /// Every send due before the end is released, none early, none after.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn releases_each_send_when_due_and_stops_at_the_end() {
        let (start, end) = schedule();
        let mut pacer = Pacer::start(start, RATE, PHASE, end, tick()).unwrap();
        let mut n = 0u64;
        while let Some(due) = pacer.next().await {
            assert_not_early(due);
            assert!(due <= end);
            n += 1;
        }
        // Due at (k + 0.25) / 2000 s for k = 0..=399.
        assert_eq!(n, 400);
    }

    /// The same schedule from the inline pacer, on the calling thread.
    #[test]
    fn the_inline_pacer_releases_each_send_when_due_and_stops_at_the_end() {
        let (start, end) = schedule();
        let mut pacer = InlinePacer::new(start, RATE, PHASE, end, tick());
        let mut n = 0u64;
        while let Some(due) = pacer.next_blocking() {
            assert_not_early(due);
            assert!(due < end);
            n += 1;
        }
        assert_eq!(n, 400);
    }
}
