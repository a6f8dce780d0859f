//! A rate limiter over messages and bytes, changed live when a namespace's
//! policies change.
//!
//! It is a token bucket that may go into debt: [`RateLimiter::consume`]
//! always takes what was used (a batch is never split or refused) and says
//! how long the caller must pause before the next use, so the long-run rate
//! is the configured one whatever the batch sizes. The bucket holds at most
//! one period's worth, so an idle producer cannot save up a burst larger
//! than what the policy allows in one period.
//!
//! Callers pause by not reading: the publish path stops reading the
//! connection's socket, the dispatcher stops reading the cursor. Nothing
//! acknowledged is ever dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Limits per period; a value <= 0 is no limit on that dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub msgs: i64,
    pub bytes: i64,
    pub period: Duration,
}

impl Rate {
    pub const UNLIMITED: Rate = Rate {
        msgs: -1,
        bytes: -1,
        period: Duration::from_secs(1),
    };

    pub fn is_limited(&self) -> bool {
        self.msgs > 0 || self.bytes > 0
    }
}

#[derive(Debug)]
struct Bucket {
    rate: Rate,
    /// Tokens per second of each dimension (0: unlimited).
    msgs_per_sec: f64,
    bytes_per_sec: f64,
    msg_tokens: f64,
    byte_tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: Rate, now: Instant) -> Bucket {
        let secs = rate.period.as_secs_f64().max(1e-3);
        let per_sec = |v: i64| if v > 0 { v as f64 / secs } else { 0.0 };
        let msgs_per_sec = per_sec(rate.msgs);
        let bytes_per_sec = per_sec(rate.bytes);
        Bucket {
            rate,
            msgs_per_sec,
            bytes_per_sec,
            msg_tokens: msgs_per_sec * secs,
            byte_tokens: bytes_per_sec * secs,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let secs = self.rate.period.as_secs_f64().max(1e-3);
        self.msg_tokens = (self.msg_tokens + dt * self.msgs_per_sec).min(self.msgs_per_sec * secs);
        self.byte_tokens =
            (self.byte_tokens + dt * self.bytes_per_sec).min(self.bytes_per_sec * secs);
    }

    /// Time until neither dimension is in debt.
    fn delay(&self) -> Duration {
        let wait = |tokens: f64, per_sec: f64| {
            if per_sec > 0.0 && tokens < 0.0 {
                -tokens / per_sec
            } else {
                0.0
            }
        };
        let secs = wait(self.msg_tokens, self.msgs_per_sec)
            .max(wait(self.byte_tokens, self.bytes_per_sec));
        Duration::from_secs_f64(secs)
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    bucket: Mutex<Bucket>,
    /// Mirrors the rate's `is_limited`, so the publish and dispatch paths
    /// of unlimited topics take no lock.
    limited: AtomicBool,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(Rate::UNLIMITED)
    }
}

impl RateLimiter {
    pub fn new(rate: Rate) -> RateLimiter {
        RateLimiter {
            bucket: Mutex::new(Bucket::new(rate, Instant::now())),
            limited: AtomicBool::new(rate.is_limited()),
        }
    }

    /// Changes the rate; a changed rate starts from a full bucket.
    pub fn set(&self, rate: Rate) {
        let mut b = self.bucket.lock();
        if b.rate != rate {
            *b = Bucket::new(rate, Instant::now());
            self.limited.store(rate.is_limited(), Ordering::Release);
        }
    }

    pub fn rate(&self) -> Rate {
        self.bucket.lock().rate
    }

    pub fn is_limited(&self) -> bool {
        self.limited.load(Ordering::Acquire)
    }

    /// Takes `msgs` messages and `bytes` bytes; returns how long to pause
    /// before the next use (zero when within the rate).
    pub fn consume(&self, msgs: u64, bytes: u64) -> Duration {
        self.consume_at(msgs, bytes, Instant::now())
    }

    fn consume_at(&self, msgs: u64, bytes: u64, now: Instant) -> Duration {
        if !self.is_limited() {
            return Duration::ZERO;
        }
        let mut b = self.bucket.lock();
        if !b.rate.is_limited() {
            return Duration::ZERO;
        }
        b.refill(now);
        if b.msgs_per_sec > 0.0 {
            b.msg_tokens -= msgs as f64;
        }
        if b.bytes_per_sec > 0.0 {
            b.byte_tokens -= bytes as f64;
        }
        b.delay()
    }

    /// How long until a use is within the rate (zero: now).
    pub fn delay(&self) -> Duration {
        self.delay_at(Instant::now())
    }

    fn delay_at(&self, now: Instant) -> Duration {
        if !self.is_limited() {
            return Duration::ZERO;
        }
        let mut b = self.bucket.lock();
        if !b.rate.is_limited() {
            return Duration::ZERO;
        }
        b.refill(now);
        b.delay()
    }

    /// Messages that may be taken now without debt (`u64::MAX`: no message
    /// limit); at least 1 once [`RateLimiter::delay`] is zero.
    pub fn available_msgs(&self) -> u64 {
        if !self.is_limited() {
            return u64::MAX;
        }
        let mut b = self.bucket.lock();
        if b.msgs_per_sec <= 0.0 {
            return u64::MAX;
        }
        b.refill(Instant::now());
        (b.msg_tokens.floor().max(0.0) as u64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(msgs: i64, bytes: i64) -> Rate {
        Rate {
            msgs,
            bytes,
            period: Duration::from_secs(1),
        }
    }

    #[test]
    fn unlimited_never_pauses() {
        let l = RateLimiter::default();
        assert_eq!(l.consume(1_000_000, 1 << 30), Duration::ZERO);
        assert_eq!(l.available_msgs(), u64::MAX);
        assert!(!l.is_limited());
    }

    #[test]
    fn debt_is_paid_back_at_the_configured_rate() {
        let l = RateLimiter::new(rate(100, -1));
        let t0 = l.bucket.lock().last;
        // One period's worth goes at once; more is debt.
        assert_eq!(l.consume_at(100, 0, t0), Duration::ZERO);
        let d = l.consume_at(50, 0, t0);
        assert!((d.as_secs_f64() - 0.5).abs() < 1e-6, "{d:?}");
        // Half a second later the debt is paid.
        assert_eq!(l.delay_at(t0 + Duration::from_millis(500)), Duration::ZERO);
        // A long idle time saves up one period's worth at most.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(l.consume_at(100, 0, later), Duration::ZERO);
        assert!(l.consume_at(1, 0, later) > Duration::ZERO);
    }

    #[test]
    fn the_slower_dimension_decides() {
        let l = RateLimiter::new(rate(1000, 1000));
        let t0 = l.bucket.lock().last;
        // 10 messages of 300 bytes: the byte budget is 2 s in debt.
        let d = l.consume_at(10, 3000, t0);
        assert!((d.as_secs_f64() - 2.0).abs() < 1e-6, "{d:?}");
    }

    #[test]
    fn a_long_run_holds_the_rate_whatever_the_batch_sizes() {
        let l = RateLimiter::new(rate(200, -1));
        let mut now = l.bucket.lock().last;
        let start = now;
        let mut sent = 0u64;
        let sizes = [1u64, 7, 50, 3, 120, 1, 1, 33];
        let mut i = 0;
        while now < start + Duration::from_secs(30) {
            let n = sizes[i % sizes.len()];
            i += 1;
            sent += n;
            now += l.consume_at(n, 0, now);
        }
        let secs = (now - start).as_secs_f64();
        // The first period's bucket is the only surplus.
        let rate = (sent as f64 - 200.0) / secs;
        assert!((rate - 200.0).abs() < 200.0 * 0.03, "{rate}");
    }

    #[test]
    fn a_new_rate_takes_effect_at_once() {
        let l = RateLimiter::new(rate(10, -1));
        let t0 = l.bucket.lock().last;
        assert!(l.consume_at(100, 0, t0) > Duration::from_secs(5));
        l.set(Rate::UNLIMITED);
        assert_eq!(l.delay(), Duration::ZERO);
        l.set(rate(1000, -1));
        assert_eq!(l.delay(), Duration::ZERO);
        assert_eq!(l.rate().msgs, 1000);
    }
}
