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
        let machine = match (self.machine, later.machine) {
            (Some(a), Some(b)) if b.total > a.total => Some((
                (b.busy - a.busy) as f64 / (b.total - a.total) as f64,
                (b.steal - a.steal) as f64 / (b.total - a.total) as f64,
            )),
            _ => None,
        };
        let broker_cores = match (self.broker_secs, later.broker_secs) {
            (Some(a), Some(b)) => Some((b - a).max(0.0) / secs),
            _ => None,
        };
        let client_cores = (later.own.1 - self.own.1).max(0.0) / secs;
        let load_cores = (later.own.0 - self.own.0).max(0.0) / secs;
        let machine_cores_busy = machine.map(|(busy, _)| busy * cores);
        CpuUse {
            secs,
            machine_busy: machine.map(|(busy, _)| busy),
            machine_cores_busy,
            machine_steal: machine.map(|(_, steal)| steal),
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
    /// Busy share of all the machine's cores (0 to 1), every process included.
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
