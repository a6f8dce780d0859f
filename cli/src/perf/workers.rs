//! The tasks of a Pulsar workload: paced producers with a receipt
//! collector each, and consumers that measure end-to-end latency.
//!
//! Every payload starts with the wall-clock time (µs since the Unix epoch,
//! big endian) at which the message was *scheduled* to be sent. With a
//! rate, a producer that falls behind keeps its schedule, so its latency
//! includes the time the message waited to go out (the coordinated-omission
//! correction); without one, the schedule is "now".

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use strata_client::{Consumer, Producer, SendFuture};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::pacer::Pacer;
use super::report;

/// Error messages kept for the report (the count is kept in full).
const ERROR_SAMPLES: usize = 5;

/// Maps instants to wall-clock microseconds with one reading of each clock,
/// so timestamps in payloads and on receipt are on the same scale.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_wall_us: u64,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            base: Instant::now(),
            base_wall_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
        }
    }

    pub fn wall_us(&self, t: Instant) -> u64 {
        match t.checked_duration_since(self.base) {
            Some(d) => self.base_wall_us + d.as_micros() as u64,
            None => self
                .base_wall_us
                .saturating_sub(self.base.duration_since(t).as_micros() as u64),
        }
    }
}

/// The run's timeline: warm-up from `start`, measured from `measure_start`
/// to `end`, then a drain until `drain_deadline` at most.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub clock: Clock,
    pub start: Instant,
    pub measure_start: Instant,
    pub end: Instant,
    pub drain_deadline: Instant,
}

impl Timeline {
    pub fn new(warmup: Duration, duration: Duration, drain: Duration) -> Timeline {
        let clock = Clock::new();
        let start = Instant::now();
        let measure_start = start + warmup;
        let end = measure_start + duration;
        Timeline {
            clock,
            start,
            measure_start,
            end,
            drain_deadline: end + drain,
        }
    }
}

/// Errors seen by one task.
#[derive(Debug, Default)]
pub struct Errors {
    pub count: u64,
    pub samples: Vec<String>,
}

impl Errors {
    pub fn add(&mut self, e: impl std::fmt::Display) {
        self.count += 1;
        if self.samples.len() < ERROR_SAMPLES {
            self.samples.push(e.to_string());
        }
    }

    pub fn merge(&mut self, other: Errors) {
        self.count += other.count;
        for s in other.samples {
            if self.samples.len() < ERROR_SAMPLES {
                self.samples.push(s);
            }
        }
    }
}

/// What one producer saw.
#[derive(Debug)]
pub struct ProducerStats {
    /// Messages acknowledged, warm-up included.
    pub acked: u64,
    /// Messages sent during the measured window and acknowledged.
    pub window: u64,
    /// Publish latency (µs) of the window's messages.
    pub latency: Histogram<u64>,
    /// The same per second of the window (by scheduled send time), when
    /// the plan asks for it.
    pub by_second: Vec<Histogram<u64>>,
    pub errors: Errors,
}

/// How one producer sends.
#[derive(Debug, Clone, Copy)]
pub struct ProducerPlan {
    pub size: usize,
    /// Messages per second for this producer (None: as fast as the window allows).
    pub rate: Option<f64>,
    /// This producer's place in the schedule, in [0, 1): producers sharing a
    /// rate are staggered rather than firing together.
    pub phase: f64,
    /// Also keep a latency histogram per second of the window.
    pub series: bool,
    /// The producer's pending-message limit: receipts awaited at most.
    pub max_pending: usize,
    /// The pacer's shortest sleep.
    pub pace_tick: Duration,
}

/// Sends until the end of the timeline; returns once every receipt is in
/// (or the drain deadline passed) and the producer is closed.
pub async fn produce(
    producer: Producer,
    plan: ProducerPlan,
    t: Timeline,
    produced: Arc<AtomicU64>,
) -> ProducerStats {
    // Room for every receipt the producer may have pending, so that its
    // own limit, not this queue, bounds what is in flight.
    let (tx, rx) = mpsc::channel::<(Instant, bool, SendFuture)>(plan.max_pending.max(1));
    // A failed send ends this producer's run: what follows would only
    // measure how fast the broker refuses.
    let failed = CancellationToken::new();
    let collector = tokio::spawn(collect(rx, t, plan.series, produced, failed.clone()));
    let mut payload: Vec<u8> = (0..plan.size.max(8)).map(|i| (i % 251) as u8).collect();
    let mut errors = Errors::default();
    let mut pacer = None;
    if let Some(rate) = plan.rate {
        match Pacer::start(t.start, rate, plan.phase, t.end, plan.pace_tick) {
            Ok(p) => pacer = Some(p),
            Err(e) => {
                // Unpaced sends would measure something else: send nothing.
                errors.add(format!("cannot start the pacer thread: {e}"));
                failed.cancel();
            }
        }
    }
    while !failed.is_cancelled() {
        let scheduled = match &mut pacer {
            // The pacer releases nothing due at or after the end.
            Some(p) => match p.next().await {
                Some(due) if due < t.end => due,
                _ => break,
            },
            None => {
                // One clock read serves both the deadline and the latency.
                let now = Instant::now();
                if now >= t.end {
                    break;
                }
                now
            }
        };
        payload[..8].copy_from_slice(&t.clock.wall_us(scheduled).to_be_bytes());
        // Counted by when it was due, as its latency is (and without a
        // second clock read per message at a million messages a second).
        let counted = scheduled >= t.measure_start;
        match producer.send(&payload).await {
            Ok(fut) => {
                if tx.send((scheduled, counted, fut)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                errors.add(format!("send on {}: {e}", producer.topic()));
                break;
            }
        }
    }
    drop(pacer);
    if let Err(e) = producer.flush().await {
        errors.add(format!("flush on {}: {e}", producer.topic()));
    }
    drop(tx);
    let mut stats = match collector.await {
        Ok(s) => s,
        Err(e) => ProducerStats {
            acked: 0,
            window: 0,
            latency: report::histogram(),
            by_second: Vec::new(),
            errors: {
                let mut e2 = Errors::default();
                e2.add(format!("receipt collector failed: {e}"));
                e2
            },
        },
    };
    stats.errors.merge(errors);
    if stats.errors.count == 0 {
        let topic = producer.topic().to_string();
        match tokio::time::timeout(Duration::from_secs(30), producer.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => stats.errors.add(format!("close producer on {topic}: {e}")),
            Err(_) => stats
                .errors
                .add(format!("close producer on {topic}: timed out")),
        }
    }
    stats
}

/// Awaits the receipts in send order (they complete in that order).
async fn collect(
    mut rx: mpsc::Receiver<(Instant, bool, SendFuture)>,
    t: Timeline,
    series: bool,
    produced: Arc<AtomicU64>,
    failed: CancellationToken,
) -> ProducerStats {
    let mut stats = ProducerStats {
        acked: 0,
        window: 0,
        latency: report::histogram(),
        by_second: Vec::new(),
        errors: Errors::default(),
    };
    while let Some((scheduled, counted, fut)) = rx.recv().await {
        match tokio::time::timeout_at(t.drain_deadline.into(), fut).await {
            Ok(Ok(_)) => {
                let micros = scheduled.elapsed().as_micros() as u64;
                produced.fetch_add(1, Ordering::Relaxed);
                stats.acked += 1;
                if counted {
                    stats.window += 1;
                    report::record(&mut stats.latency, micros);
                    if series {
                        let second = scheduled.saturating_duration_since(t.measure_start);
                        let i = second.as_secs() as usize;
                        if stats.by_second.len() <= i {
                            stats.by_second.resize_with(i + 1, report::coarse_histogram);
                        }
                        report::record(&mut stats.by_second[i], micros);
                    }
                }
            }
            Ok(Err(e)) => {
                stats.errors.add(format!("send failed: {e}"));
                failed.cancel();
            }
            Err(_) => {
                stats
                    .errors
                    .add("no receipt before the drain deadline".to_string());
                failed.cancel();
            }
        }
    }
    stats
}

/// What one consumer saw.
#[derive(Debug)]
pub struct ConsumerStats {
    /// Messages counted as this run's (see [`ConsumerPlan::only_this_run`]).
    pub received: u64,
    /// Messages received during the measured window, and their payload bytes.
    pub window: u64,
    pub window_bytes: u64,
    /// End-to-end latency (µs): scheduled send time to receipt here.
    pub latency: Histogram<u64>,
    pub errors: Errors,
}

#[derive(Debug, Clone, Copy)]
pub struct ConsumerPlan {
    /// Count only messages sent by this run (timestamps at or after its
    /// start) and time those sent in the window; otherwise count every
    /// message and time those received in the window.
    pub only_this_run: bool,
}

/// Receives and acknowledges until `stop`, then closes the consumer.
pub async fn consume(
    mut consumer: Consumer,
    plan: ConsumerPlan,
    t: Timeline,
    consumed: Arc<AtomicU64>,
    stop: CancellationToken,
) -> ConsumerStats {
    let mut stats = ConsumerStats {
        received: 0,
        window: 0,
        window_bytes: 0,
        latency: report::histogram(),
        errors: Errors::default(),
    };
    let run_start = t.clock.wall_us(t.start);
    let (window_start, window_end) = (t.clock.wall_us(t.measure_start), t.clock.wall_us(t.end));
    loop {
        let m = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            m = consumer.receive() => m,
        };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                stats
                    .errors
                    .add(format!("receive on {}: {e}", consumer.topic()));
                break;
            }
        };
        let now = Instant::now();
        let now_us = t.clock.wall_us(now);
        let sent_us = (m.payload.len() >= 8).then(|| {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&m.payload[..8]);
            u64::from_be_bytes(ts)
        });
        // A timestamp from the future (beyond clock noise) is not ours.
        let plausible = sent_us.filter(|s| *s > 0 && *s <= now_us + 1_000_000);
        let in_window = now >= t.measure_start && now < t.end;
        if in_window {
            stats.window += 1;
            stats.window_bytes += m.payload.len() as u64;
        }
        if plan.only_this_run {
            if let Some(s) = plausible.filter(|s| *s >= run_start) {
                stats.received += 1;
                consumed.fetch_add(1, Ordering::Relaxed);
                if s >= window_start && s < window_end {
                    report::record(&mut stats.latency, now_us.saturating_sub(s));
                }
            }
        } else {
            stats.received += 1;
            consumed.fetch_add(1, Ordering::Relaxed);
            if let Some(s) = plausible.filter(|_| in_window) {
                report::record(&mut stats.latency, now_us.saturating_sub(s));
            }
        }
        if let Err(e) = consumer.ack(&m.id).await {
            stats
                .errors
                .add(format!("ack on {}: {e}", consumer.topic()));
            break;
        }
    }
    let topic = consumer.topic().to_string();
    match tokio::time::timeout(Duration::from_secs(30), consumer.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => stats
            .errors
            .add(format!("closing consumer on {topic}: {e}")),
        Err(_) => stats
            .errors
            .add(format!("closing consumer on {topic}: timed out")),
    }
    stats
}
