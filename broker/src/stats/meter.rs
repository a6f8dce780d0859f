//! Message and byte counters with a rate over the last sampling window.
//!
//! The hot path (publish, dispatch) only adds to two atomics. The broker's
//! stats task calls [`Meter::sample`] every `stats_interval`; the rate it
//! stores is what was counted since the previous sample divided by the time
//! between the two, so a rate describes the last window (as Pulsar's do),
//! not the whole life of the topic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

#[derive(Debug)]
pub struct Meter {
    msgs: AtomicU64,
    bytes: AtomicU64,
    window: Mutex<Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    at: Instant,
    msgs: u64,
    bytes: u64,
    msg_rate: f64,
    byte_rate: f64,
}

/// What a meter reports.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeterReading {
    /// Totals since the meter was created.
    pub msgs: u64,
    pub bytes: u64,
    /// Per second over the last window.
    pub msg_rate: f64,
    pub byte_rate: f64,
}

impl Default for Meter {
    fn default() -> Self {
        Meter::new()
    }
}

impl Meter {
    pub fn new() -> Meter {
        Meter {
            msgs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            window: Mutex::new(Window {
                at: Instant::now(),
                msgs: 0,
                bytes: 0,
                msg_rate: 0.0,
                byte_rate: 0.0,
            }),
        }
    }

    pub fn record(&self, msgs: u64, bytes: u64) {
        self.msgs.fetch_add(msgs, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Closes the current window at `now` and computes its rates.
    pub fn sample(&self, now: Instant) {
        let msgs = self.msgs.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let mut w = self.window.lock();
        let secs = now.saturating_duration_since(w.at).as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        w.msg_rate = msgs.saturating_sub(w.msgs) as f64 / secs;
        w.byte_rate = bytes.saturating_sub(w.bytes) as f64 / secs;
        w.at = now;
        w.msgs = msgs;
        w.bytes = bytes;
    }

    pub fn read(&self) -> MeterReading {
        let w = *self.window.lock();
        MeterReading {
            msgs: self.msgs.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            msg_rate: w.msg_rate,
            byte_rate: w.byte_rate,
        }
    }
}

impl MeterReading {
    /// Average message size over the last window (0 when idle).
    pub fn average_msg_size(&self) -> f64 {
        if self.msg_rate > 0.0 {
            self.byte_rate / self.msg_rate
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_cover_the_last_window_only() {
        let m = Meter::new();
        let t0 = m.window.lock().at;
        m.record(10, 1000);
        m.sample(t0 + Duration::from_secs(2));
        let r = m.read();
        assert_eq!((r.msgs, r.bytes), (10, 1000));
        assert_eq!((r.msg_rate, r.byte_rate), (5.0, 500.0));
        assert_eq!(r.average_msg_size(), 100.0);
        // Nothing in the next window: the rate drops, the totals stay.
        m.sample(t0 + Duration::from_secs(4));
        let r = m.read();
        assert_eq!((r.msgs, r.msg_rate, r.average_msg_size()), (10, 0.0, 0.0));
        // A sample at the same instant changes nothing.
        m.record(1, 1);
        m.sample(t0 + Duration::from_secs(4));
        assert_eq!(m.read().msg_rate, 0.0);
    }
}
