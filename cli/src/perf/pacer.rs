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
//! 1 ms tick (the old behaviour) at 500 k msg/s. `--pace-tick-us` chooses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// The pacer's default tick, in µs (`--pace-tick-us`): its shortest sleep.
/// At high rates it releases the sends due over one tick at once.
pub const DEFAULT_TICK_US: u64 = 200;

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
    realtime: bool,
}

impl Pacer {
    /// Starts the pacer thread; it stops at `end` or when the pacer is
    /// dropped. It sleeps at least `tick` at a time. With `realtime`, the
    /// thread asks for real-time scheduling (see `perf::priority`); a
    /// refusal is logged and the pacer runs at normal priority.
    pub fn start(
        start: Instant,
        rate: f64,
        phase: f64,
        end: Instant,
        tick: Duration,
        realtime: bool,
    ) -> std::io::Result<Pacer> {
        let released = Arc::new(Semaphore::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let total = Arc::new(AtomicU64::new(u64::MAX));
        let (priority_tx, priority_rx) = std::sync::mpsc::channel();
        {
            let (released, stop, total) = (released.clone(), stop.clone(), total.clone());
            // Not joined: it ends on its own within MAX_SLEEP of a stop, and
            // a join in `drop` would block the sender's runtime thread.
            std::thread::Builder::new()
                .name("perf-pacer".into())
                .spawn(move || {
                    let priority = realtime.then(super::priority::realtime);
                    let _ = priority_tx.send(priority);
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
                        let next = start + Duration::from_secs_f64((issued as f64 + phase) / rate);
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
        let realtime = match priority_rx.recv() {
            Ok(Some(Ok(()))) => true,
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, "the pacer runs at normal priority: real-time scheduling was refused");
                false
            }
            _ => false,
        };
        Ok(Pacer {
            start,
            rate,
            phase,
            next: 0,
            released,
            total,
            stop,
            realtime,
        })
    }

    /// Whether the pacer thread runs at real-time priority.
    pub fn realtime(&self) -> bool {
        self.realtime
    }

    /// Waits until the next send is due; returns its scheduled time, or
    /// `None` once the pacer has stopped.
    pub async fn next(&mut self) -> Option<Instant> {
        self.released.acquire().await.ok()?.forget();
        if self.next >= self.total.load(Ordering::Acquire) {
            return None;
        }
        let due = self.start + Duration::from_secs_f64((self.next as f64 + self.phase) / self.rate);
        self.next += 1;
        Some(due)
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
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

    /// Every send due before the end is released, none early, none after.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn releases_each_send_when_due_and_stops_at_the_end() {
        let start = Instant::now() + Duration::from_millis(5);
        let end = start + Duration::from_millis(200);
        let mut pacer = Pacer::start(
            start,
            2_000.0,
            0.25,
            end,
            Duration::from_micros(DEFAULT_TICK_US),
            false,
        )
        .unwrap();
        let mut n = 0u64;
        while let Some(due) = pacer.next().await {
            let now = Instant::now();
            assert!(
                now + Duration::from_micros(1) >= due,
                "released {:?} early",
                due - now
            );
            assert!(due <= end);
            n += 1;
        }
        // Due at (k + 0.25) / 2000 s for k = 0..=399.
        assert_eq!(n, 400);
    }
}
