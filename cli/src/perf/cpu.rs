//! Who used the CPU during a benchmark window: the whole machine (from
//! `/proc/stat`), this process's threads split by name (so a benchmark can
//! run a load generator on its own named runtime and tell its cost apart
//! from the measured client's), and the broker (its
//! `process_cpu_seconds_total` on `/metrics`, when it is there).
//!
//! On a small shared machine the benchmark's own clients compete with the
//! broker for the same cores; these figures say how much.

use std::time::Instant;

use serde::Serialize;
use strata_common::metrics::cpu_seconds_of_stat;

use super::admin;

/// Aggregate CPU ticks of the machine since boot (first line of `/proc/stat`).
#[derive(Debug, Clone, Copy)]
struct MachineTicks {
    busy: u64,
    steal: u64,
    total: u64,
}

fn machine_ticks() -> Option<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]:
    // guest time is already counted in user and nice.
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    if v.len() < 4 {
        return None;
    }
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    let total: u64 = v.iter().sum();
    let idle = at(3) + at(4);
    Some(MachineTicks {
        busy: total.saturating_sub(idle),
        steal: at(7),
        total,
    })
}

/// The whole machine's CPU over a window, from two readings of `/proc/stat`.
///
/// `steal_share` is the hypervisor's: time a virtual CPU was ready to run
/// and the host ran something else. A VM under a host CPU quota is paused
/// whole once it has used its share of a period (all vCPUs and its disk
/// with them), so a latency figure taken while this is above a few percent
/// includes those pauses. On the 2-core VM of stop 30, paced `perf bookie`
/// runs whose load generator slept 200 µs at a time at real-time priority
/// lost ~13 % this way, in pauses of ~20 ms every 100 ms, and two busy cores
/// with the disk writing did too (see the README's benchmark section).
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct MachineCpu {
    /// CPU seconds per second the machine spent busy (every process and the
    /// kernel; stolen time not included), out of its cores.
    pub busy_cores: f64,
    /// Share of all CPU time taken by the hypervisor (0 to 1).
    pub steal_share: f64,
}

/// Hypervisor steal past which a report warns that its figures include
/// pauses of the whole VM (or, between two phases, that a ratio compares
/// unlike machines).
pub const STEAL_WARNING: f64 = 0.02;

/// "N cores busy, hypervisor steal S %", or why it is unknown.
pub fn describe(m: Option<MachineCpu>) -> String {
    match m {
        Some(m) => format!(
            "{:.2} cores busy, hypervisor steal {:.1} %",
            m.busy_cores,
            m.steal_share * 100.0
        ),
        None => "CPU unknown (no /proc/stat)".into(),
    }
}

/// A first reading of the machine's CPU counters; see [`MachineCpu`].
#[derive(Debug, Clone, Copy)]
pub struct MachineClock(Option<MachineTicks>);

impl MachineClock {
    pub fn start() -> MachineClock {
        MachineClock(machine_ticks())
    }

    /// The machine's CPU since [`MachineClock::start`] (none where
    /// `/proc/stat` cannot be read, or when no tick has passed).
    pub fn stop(&self) -> Option<MachineCpu> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        machine_cpu(self.0?, machine_ticks()?, cores)
    }
}

fn machine_cpu(a: MachineTicks, b: MachineTicks, cores: f64) -> Option<MachineCpu> {
    let total = b.total.checked_sub(a.total).filter(|t| *t > 0)? as f64;
    let steal = b.steal.saturating_sub(a.steal);
    Some(MachineCpu {
        busy_cores: b.busy.saturating_sub(a.busy).saturating_sub(steal) as f64 / total * cores,
        steal_share: steal as f64 / total,
    })
}

/// CPU seconds of this process's threads whose name starts with `prefix`,
/// and of all the others (all of them without a prefix).
fn thread_seconds(prefix: Option<&str>) -> (f64, f64) {
    let (mut matching, mut others) = (0.0, 0.0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0.0, 0.0);
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let Some(secs) = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| cpu_seconds_of_stat(&s))
        else {
            continue;
        };
        if prefix.is_some_and(|p| name.trim_end().starts_with(p)) {
            matching += secs;
        } else {
            others += secs;
        }
    }
    (matching, others)
}

/// CPU seconds this process has used so far (every thread).
pub fn process_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| cpu_seconds_of_stat(&s))
        .unwrap_or(0.0)
}

/// One reading of every CPU counter.
#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    at: Instant,
    machine: Option<MachineTicks>,
    broker_secs: Option<f64>,
    /// This process: (threads named with the load prefix, the others).
    own: (f64, f64),
}

impl CpuSnapshot {
    /// Reads the counters now; the broker's through its admin `/metrics`
    /// (none without an admin URL). Threads named with `load_thread_prefix`
    /// are the load generator's.
    pub async fn take(admin_url: Option<&str>, load_thread_prefix: Option<&str>) -> CpuSnapshot {
        let broker_secs = match admin_url {
            Some(url) => admin::metrics_page(url)
                .await
                .ok()
                .and_then(|page| admin::parse_metric(&page, "process_cpu_seconds_total")),
            None => None,
        };
        CpuSnapshot {
            at: Instant::now(),
            machine: machine_ticks(),
            broker_secs,
            own: thread_seconds(load_thread_prefix),
        }
    }

    /// The use between `self` and a later snapshot.
    pub fn until(&self, later: &CpuSnapshot) -> CpuUse {
        let secs = later.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let machine = self
            .machine
            .zip(later.machine)
            .and_then(|(a, b)| machine_cpu(a, b, cores));
        let broker_cores = match (self.broker_secs, later.broker_secs) {
            (Some(a), Some(b)) => Some((b - a).max(0.0) / secs),
            _ => None,
        };
        let client_cores = (later.own.1 - self.own.1).max(0.0) / secs;
        let load_cores = (later.own.0 - self.own.0).max(0.0) / secs;
        let machine_cores_busy = machine.map(|m| m.busy_cores);
        CpuUse {
            secs,
            machine_busy: machine.map(|m| m.busy_cores / cores),
            machine_cores_busy,
            machine_steal: machine.map(|m| m.steal_share),
            broker_cores,
            client_cores,
            load_cores,
            other_cores: machine_cores_busy
                .zip(broker_cores)
                .map(|(m, b)| (m - b - client_cores - load_cores).max(0.0)),
        }
    }
}

/// CPU use over a window; "cores" are CPU seconds per second.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct CpuUse {
    pub secs: f64,
    /// Busy share of all the machine's cores (0 to 1), every process
    /// included (see [`MachineCpu`]).
    pub machine_busy: Option<f64>,
    pub machine_cores_busy: Option<f64>,
    /// Share of the machine's time stolen by the hypervisor.
    pub machine_steal: Option<f64>,
    /// The broker process (absent when its `/metrics` has no
    /// `process_cpu_seconds_total`).
    pub broker_cores: Option<f64>,
    /// This benchmark's measured client (every thread but the load's).
    pub client_cores: f64,
    /// This benchmark's load generator (its own named threads).
    pub load_cores: f64,
    /// Everything else on the machine (other processes, the kernel's own
    /// work): machine − broker − client − load. Meaningful only when the
    /// broker runs on this machine.
    pub other_cores: Option<f64>,
}

impl CpuUse {
    pub fn line(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        format!(
            "machine {} cores busy (steal {} %): broker {}, client {:.2}, load {:.2}, others {}",
            opt(self.machine_cores_busy),
            opt(self.machine_steal.map(|s| s * 100.0)),
            opt(self.broker_cores),
            self.client_cores,
            self.load_cores,
            opt(self.other_cores)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_cpu_counts_busy_cores_and_the_hypervisors_share() {
        let a = MachineTicks {
            busy: 100,
            steal: 10,
            total: 1000,
        };
        // 200 ticks over 2 cores: 120 not idle, 20 of them stolen.
        let b = MachineTicks {
            busy: 220,
            steal: 30,
            total: 1200,
        };
        let m = machine_cpu(a, b, 2.0).unwrap();
        assert!((m.busy_cores - 1.0).abs() < 1e-9, "{m:?}");
        assert!((m.steal_share - 0.1).abs() < 1e-9, "{m:?}");
        assert_eq!(
            describe(Some(m)),
            "1.00 cores busy, hypervisor steal 10.0 %"
        );
        assert!(describe(None).contains("unknown"));
        // No tick in between: nothing to say.
        assert_eq!(machine_cpu(a, a, 2.0), None);
        let clock = MachineClock::start();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed().as_millis() < 30 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let m = clock.stop().expect("/proc/stat moved");
        assert!(
            m.busy_cores > 0.0 && (0.0..=1.0).contains(&m.steal_share),
            "{m:?}"
        );
    }

    #[test]
    fn readings_move_forward() {
        let m = machine_ticks().expect("/proc/stat");
        assert!(m.total >= m.busy && m.total > 0);
        let (named, others) = thread_seconds(Some("no-such-thread-prefix"));
        assert_eq!(named, 0.0);
        assert!(others >= 0.0);
        let a = CpuSnapshot {
            at: Instant::now(),
            machine: Some(m),
            broker_secs: Some(1.0),
            own: (0.0, others),
        };
        // Burn a little CPU so the process's own counter moves.
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed().as_millis() < 50 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = CpuSnapshot {
            at: Instant::now(),
            machine: machine_ticks(),
            broker_secs: Some(1.5),
            own: (0.0, thread_seconds(Some("no-such-thread-prefix")).1),
        };
        let u = a.until(&b);
        assert!(u.secs > 0.0);
        assert!(u.broker_cores.unwrap() > 0.0);
        assert!(u.machine_busy.is_none_or(|v| (0.0..=1.0).contains(&v)));
    }
}
