//! The noisy tenant of `strata perf tenants`: producers that send as fast
//! as they can, each on its own client (its own TCP connection, since the
//! broker throttles a publish rate by not reading the connection), and
//! carry on past the namespace's limits: a producer the broker closes (the
//! backlog quota was reached) is created again, and a creation refused by
//! the quota is retried after a short pause, as Pulsar clients do under
//! `producer_request_hold`.
//!
//! Acknowledgements are counted in 100 ms slots from the phase's start, so
//! the report can give the rate inside the measured window and the rate
//! while the quota had not yet blocked the tenant.

use std::time::{Duration, Instant};

use serde::Serialize;
use strata_client::{Client, ClientError, ClientOptions, ProducerOptions, SendFuture};
use strata_proto::pulsar::ServerError;
use tokio::sync::mpsc;

use super::workers::{Errors, Timeline};

/// Width of one acknowledgement slot.
const SLOT: Duration = Duration::from_millis(100);
/// Pause before creating a producer again after the broker refused one.
const RETRY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct FloodPlan {
    pub url: String,
    /// Credentials and TLS settings of each producer's client.
    pub client: ClientOptions,
    pub topic: String,
    pub producers: usize,
    pub size: usize,
    pub opts: ProducerOptions,
}

/// What the noisy producers achieved in one phase.
#[derive(Debug)]
pub struct FloodStats {
    /// Acknowledged messages per [`SLOT`] since the timeline's start.
    pub slots: Vec<u64>,
    /// Producer creations the broker refused for a quota.
    pub quota_refusals: u64,
    /// Producers the broker closed (it does so when a quota blocks them).
    pub producers_closed: u64,
    /// Sends that failed because their producer was closed or refused.
    pub failed_sends: u64,
    /// First sign of a quota block, since the timeline's start.
    pub first_block: Option<Duration>,
    /// Anything else that went wrong (a real error).
    pub errors: Errors,
}

impl FloodStats {
    fn new(t: &Timeline) -> FloodStats {
        let span = t.end.duration_since(t.start);
        FloodStats {
            slots: vec![0; span.as_millis().div_ceil(SLOT.as_millis()) as usize + 1],
            quota_refusals: 0,
            producers_closed: 0,
            failed_sends: 0,
            first_block: None,
            errors: Errors::default(),
        }
    }

    fn block_seen(&mut self, t: &Timeline) {
        let at = t.start.elapsed();
        self.first_block = Some(self.first_block.map_or(at, |b| b.min(at)));
    }

    fn merge(&mut self, o: FloodStats) {
        for (a, b) in self.slots.iter_mut().zip(o.slots) {
            *a += b;
        }
        self.quota_refusals += o.quota_refusals;
        self.producers_closed += o.producers_closed;
        self.failed_sends += o.failed_sends;
        self.first_block = match (self.first_block, o.first_block) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.errors.merge(o.errors);
    }
}

/// The noisy tenant's figures in the report.
#[derive(Serialize, Debug)]
pub struct FloodReport {
    pub producers: usize,
    /// The namespace's publish rate limit (msg/s) the topic is held to.
    pub rate_limit_msg_per_sec: f64,
    /// Messages acknowledged in the measured window.
    pub acked: u64,
    /// `acked` over the window.
    pub achieved_msg_per_sec: f64,
    /// The rate inside the window before the backlog quota blocked the
    /// tenant (the whole window if it never did); None if it was blocked
    /// before the window began.
    pub unblocked_msg_per_sec: Option<f64>,
    /// `unblocked_msg_per_sec` over the limit (1.0: sits at its limit).
    pub unblocked_to_limit: Option<f64>,
    pub mb_per_sec: f64,
    /// Seconds from the phase's start (warm-up included) to the first
    /// quota block seen by a producer; None: the quota was not reached.
    pub quota_blocked_after_secs: Option<f64>,
    pub quota_refusals: u64,
    pub producers_closed: u64,
    pub failed_sends: u64,
    /// Acknowledged messages per second of the window.
    pub acked_per_second: Vec<u64>,
}

impl FloodStats {
    pub fn report(&self, t: &Timeline, producers: usize, size: usize, limit: f64) -> FloodReport {
        let slot_of =
            |i: Instant| (i.duration_since(t.start).as_millis() / SLOT.as_millis()) as usize;
        let (from, to) = (slot_of(t.measure_start), slot_of(t.end));
        let sum = |a: usize, b: usize| -> u64 {
            self.slots[a.min(b)..b.min(self.slots.len())].iter().sum()
        };
        let window_secs = t
            .end
            .duration_since(t.measure_start)
            .as_secs_f64()
            .max(1e-3);
        let acked = sum(from, to);
        let unblocked_end = self
            .first_block
            .map_or(to, |b| (b.as_millis() / SLOT.as_millis()) as usize)
            .min(to);
        let unblocked_msg_per_sec = (unblocked_end > from).then(|| {
            let secs = (unblocked_end - from) as f64 * SLOT.as_secs_f64();
            sum(from, unblocked_end) as f64 / secs
        });
        let per_second = (1000 / SLOT.as_millis()) as usize;
        FloodReport {
            producers,
            rate_limit_msg_per_sec: limit,
            acked,
            achieved_msg_per_sec: acked as f64 / window_secs,
            unblocked_msg_per_sec,
            unblocked_to_limit: unblocked_msg_per_sec
                .filter(|_| limit > 0.0)
                .map(|r| r / limit),
            mb_per_sec: acked as f64 * size as f64 / window_secs / 1e6,
            quota_blocked_after_secs: self.first_block.map(|d| d.as_secs_f64()),
            quota_refusals: self.quota_refusals,
            producers_closed: self.producers_closed,
            failed_sends: self.failed_sends,
            acked_per_second: self.slots[from.min(to)..to.min(self.slots.len())]
                .chunks(per_second)
                .map(|c| c.iter().sum())
                .collect(),
        }
    }
}

/// A refusal or a closure caused by a quota (or a closed producer, which
/// is how the broker applies one to a producer already open).
fn is_block(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::ProducerClosed(_)
            | ClientError::Server {
                code: ServerError::ProducerBlockedQuotaExceededError
                    | ServerError::ProducerBlockedQuotaExceededException,
                ..
            }
    )
}

/// Floods `plan.topic` from `plan.producers` clients until the end of the
/// timeline `t` (its start is now).
pub async fn run(plan: FloodPlan, t: Timeline) -> FloodStats {
    let tasks: Vec<_> = (0..plan.producers.max(1))
        .map(|_| tokio::spawn(flood_one(plan.clone(), t)))
        .collect();
    let mut total = FloodStats::new(&t);
    for task in tasks {
        match task.await {
            Ok(s) => total.merge(s),
            Err(e) => total.errors.add(format!("noisy producer task failed: {e}")),
        }
    }
    total
}

async fn flood_one(plan: FloodPlan, t: Timeline) -> FloodStats {
    let mut stats = FloodStats::new(&t);
    let client = match Client::connect(&plan.url, plan.client.clone()).await {
        Ok(c) => c,
        Err(e) => {
            stats
                .errors
                .add(format!("noisy client: connect to {}: {e}", plan.url));
            return stats;
        }
    };
    let (tx, rx) = mpsc::channel::<SendFuture>(4096);
    let collector = tokio::spawn(collect(rx, t));
    let payload: Vec<u8> = (0..plan.size).map(|i| (i % 251) as u8).collect();
    let mut producer = None;
    while Instant::now() < t.end {
        let Some(p) = &producer else {
            match tokio::time::timeout_at(
                t.end.into(),
                client.create_producer(&plan.topic, plan.opts.clone()),
            )
            .await
            {
                Err(_) => break,
                Ok(Ok(p)) => producer = Some(p),
                Ok(Err(e)) if is_block(&e) => {
                    stats.quota_refusals += 1;
                    stats.block_seen(&t);
                    let pause = RETRY.min(t.end.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                }
                Ok(Err(e)) => {
                    stats
                        .errors
                        .add(format!("noisy producer on {}: {e}", plan.topic));
                    break;
                }
            }
            continue;
        };
        match tokio::time::timeout_at(t.end.into(), p.send(&payload)).await {
            Err(_) => break,
            Ok(Ok(fut)) => {
                if tx.send(fut).await.is_err() {
                    break;
                }
            }
            Ok(Err(e)) if is_block(&e) => {
                stats.producers_closed += 1;
                stats.block_seen(&t);
                producer = None;
            }
            Ok(Err(e)) => {
                stats
                    .errors
                    .add(format!("noisy send on {}: {e}", plan.topic));
                break;
            }
        }
    }
    // What is still queued behind the throttle is not waited for: the
    // phase is over. Dropping the client closes its connection.
    drop(producer);
    drop(tx);
    match collector.await {
        Ok(c) => {
            stats.slots = c.slots;
            stats.failed_sends = c.failed_sends;
            if let Some(b) = c.first_block {
                stats.first_block = Some(stats.first_block.map_or(b, |a| a.min(b)));
            }
            stats.errors.merge(c.errors);
        }
        Err(e) => stats
            .errors
            .add(format!("noisy receipt collector failed: {e}")),
    }
    client.close().await;
    stats
}

/// Counts receipts into their slots until the end of the timeline.
async fn collect(mut rx: mpsc::Receiver<SendFuture>, t: Timeline) -> FloodStats {
    let mut stats = FloodStats::new(&t);
    loop {
        let fut = match tokio::time::timeout_at(t.end.into(), rx.recv()).await {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => break,
        };
        match tokio::time::timeout_at(t.end.into(), fut).await {
            Err(_) => break,
            Ok(Ok(_)) => {
                let slot = (t.start.elapsed().as_millis() / SLOT.as_millis()) as usize;
                if let Some(s) = stats.slots.get_mut(slot) {
                    *s += 1;
                }
            }
            Ok(Err(e)) if is_block(&e) => {
                stats.failed_sends += 1;
                stats.block_seen(&t);
            }
            Ok(Err(e)) => {
                stats.failed_sends += 1;
                stats.errors.add(format!("noisy send failed: {e}"));
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_from_slots() {
        let t = Timeline::new(
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::ZERO,
        );
        let mut s = FloodStats::new(&t);
        // 50 acks per slot (500 msg/s) throughout, blocked at 2.0 s.
        for slot in s.slots.iter_mut().take(30) {
            *slot = 50;
        }
        s.first_block = Some(Duration::from_secs(2));
        let r = s.report(&t, 4, 1000, 500.0);
        assert_eq!(r.acked, 50 * 20);
        assert!((r.achieved_msg_per_sec - 500.0).abs() < 1.0, "{r:?}");
        let unblocked = r.unblocked_msg_per_sec.unwrap();
        assert!((unblocked - 500.0).abs() < 1.0, "{r:?}");
        assert!((r.unblocked_to_limit.unwrap() - 1.0).abs() < 0.01);
        assert_eq!(r.acked_per_second[0], 500);
        assert_eq!(r.quota_blocked_after_secs, Some(2.0));
        // Blocked during the warm-up: no unblocked rate in the window.
        s.first_block = Some(Duration::from_millis(500));
        assert!(s.report(&t, 4, 1000, 500.0).unblocked_msg_per_sec.is_none());
    }

    #[test]
    fn quota_errors_are_blocks() {
        assert!(is_block(&ClientError::ProducerClosed("p".into())));
        assert!(is_block(&ClientError::Server {
            code: ServerError::ProducerBlockedQuotaExceededError,
            message: String::new(),
        }));
        assert!(!is_block(&ClientError::Disconnected("x".into())));
    }
}
