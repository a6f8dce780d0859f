//! What every `strata perf` report shares: latency percentiles from
//! HdrHistograms and the description of the machine the run was on.

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency histogram in microseconds, from 1 µs to 10 minutes.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// A smaller histogram (2 significant digits), for one per second of a run.
pub fn coarse_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 2).expect("static histogram bounds are valid")
}

/// Records `micros`, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    h.saturating_record(micros.max(1));
}

/// Percentiles in milliseconds.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    pub fn from(h: &Histogram<u64>) -> Self {
        let ms = |v: u64| v as f64 / 1000.0;
        Latency {
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
            self.p50, self.p99, self.p999, self.max
        )
    }
}

/// The machine a benchmark ran on, so numbers can be compared with care.
#[derive(Serialize, Debug, Clone)]
pub struct Machine {
    /// Logical CPUs (cores) this process may use.
    pub cores: usize,
    pub memory_bytes: u64,
    pub kernel: String,
    pub cpu_model: String,
    pub os: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let meminfo = read("/proc/meminfo");
        let memory_bytes = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name") || l.starts_with("Model"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            cpu_model,
            os: std::env::consts::OS.to_string(),
        }
    }
}
