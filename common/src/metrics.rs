//! Minimal Prometheus-style metrics: counters, gauges and fixed-bucket
//! histograms that are cheap to update from hot paths (atomics only) and
//! render in the Prometheus text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Latency buckets in seconds, 50 µs .. 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// Size buckets in bytes, 1 KiB .. 16 MiB.
pub const SIZE_BUCKETS: &[f64] = &[
    1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 524288.0, 1048576.0, 4194304.0, 16777216.0,
];

/// A histogram with fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in millionths of the unit, so it fits an atomic integer.
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
    pub fn latency() -> Self {
        Self::new(LATENCY_BUCKETS)
    }
    pub fn sizes() -> Self {
        Self::new(SIZE_BUCKETS)
    }
    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of observed values.
    pub fn sum(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Upper bound of the bucket holding quantile `q` (0..=1); `None` when
    /// empty, infinity when it falls past the last bound.
    pub fn quantile_upper_bound(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(self.bounds.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }
}

/// Something that adds its metrics to the `/metrics` page (the bookie, the
/// ledger client, the broker). The admin server renders every source it was
/// given, in order.
pub trait MetricsSource: Send + Sync {
    fn render(&self, out: &mut Exposition);
}

/// The standard `process_*` metrics of this process, read from `/proc/self`.
pub struct ProcessMetrics;

impl MetricsSource for ProcessMetrics {
    fn render(&self, out: &mut Exposition) {
        // statm: size resident shared text lib data dt, in pages.
        let page = 4096i64;
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
            let mut fields = statm
                .split_whitespace()
                .map(|f| f.parse::<i64>().unwrap_or(0));
            let virt = fields.next().unwrap_or(0);
            let resident = fields.next().unwrap_or(0);
            out.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                resident * page,
            );
            out.gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                virt * page,
            );
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            out.gauge(
                "process_open_fds",
                "Number of open file descriptors.",
                fds.count() as i64,
            );
        }
    }
}

/// Builds a Prometheus text exposition.
///
/// Samples are grouped by family: `# HELP` and `# TYPE` are written once
/// per family, and every sample of a family is written after them even when
/// callers interleave families (e.g. topic by topic), because the text
/// format requires each family's lines to be contiguous.
#[derive(Default)]
pub struct Exposition {
    families: Vec<Family>,
    index: std::collections::HashMap<String, usize>,
}

struct Family {
    header: String,
    samples: String,
}

impl Exposition {
    /// The sample buffer of family `name`, created with its header on first use.
    fn family(&mut self, name: &str, help: &str, kind: &str) -> &mut String {
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.families.push(Family {
                    header: format!(
                        "# HELP {name} {}\n# TYPE {name} {kind}\n",
                        escape_help(help)
                    ),
                    samples: String::new(),
                });
                self.index.insert(name.to_string(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        &mut self.families[i].samples
    }

    pub fn counter(&mut self, name: &str, help: &str, v: u64) {
        let _ = writeln!(self.family(name, help, "counter"), "{name} {v}");
    }
    pub fn gauge(&mut self, name: &str, help: &str, v: i64) {
        let _ = writeln!(self.family(name, help, "gauge"), "{name} {v}");
    }

    /// One labeled sample of counter family `name`.
    pub fn counter_with(&mut self, name: &str, help: &str, labels: &[(&str, &str)], v: u64) {
        let labels = render_labels(labels);
        let _ = writeln!(self.family(name, help, "counter"), "{name}{labels} {v}");
    }

    /// One labeled sample of gauge family `name` (rates are fractional, hence f64).
    pub fn gauge_with(&mut self, name: &str, help: &str, labels: &[(&str, &str)], v: f64) {
        let labels = render_labels(labels);
        let v = format_value(v);
        let _ = writeln!(self.family(name, help, "gauge"), "{name}{labels} {v}");
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.histogram_with(name, help, &[], h);
    }

    /// One labeled series of histogram family `name`.
    pub fn histogram_with(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        h: &Histogram,
    ) {
        let prefix: String = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\",", escape_label(v)))
            .collect();
        let plain = render_labels(labels);
        let out = self.family(name, help, "histogram");
        let mut cumulative = 0;
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulative += h.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{prefix}le=\"{bound}\"}} {cumulative}");
        }
        cumulative += h.counts[h.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{prefix}le=\"+Inf\"}} {cumulative}");
        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_sum{plain} {sum}\n{name}_count{plain} {cumulative}"
        );
    }

    pub fn finish(self) -> String {
        let mut out = String::new();
        for f in self.families {
            out.push_str(&f.header);
            out.push_str(&f.samples);
        }
        out
    }
}

/// `{k="v",...}`, or nothing without labels.
fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// Label values escape backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Help texts escape backslash and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as the text format spells it (`+Inf`, `-Inf`, `NaN`).
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let h = Histogram::latency();
        h.observe(0.0002);
        h.observe(0.003);
        h.observe(100.0);
        let mut e = Exposition::default();
        e.histogram("x_seconds", "test", &h);
        let text = e.finish();
        assert!(
            text.contains("x_seconds_bucket{le=\"0.00025\"} 1"),
            "{text}"
        );
        assert!(text.contains("x_seconds_bucket{le=\"0.005\"} 2"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 3"), "{text}");
        assert!(text.contains("x_seconds_count 3"), "{text}");
        assert_eq!(h.quantile_upper_bound(0.3), Some(0.00025));
        assert_eq!(h.quantile_upper_bound(0.6), Some(0.005));
        assert_eq!(h.quantile_upper_bound(1.0), Some(f64::INFINITY));
        assert_eq!(Histogram::latency().quantile_upper_bound(0.5), None);
    }

    #[test]
    fn labeled_families_are_grouped_with_one_header() {
        let mut e = Exposition::default();
        e.gauge_with("t_rate", "rate", &[("topic", "a")], 1.5);
        e.counter("c_total", "count", 3);
        e.gauge_with("t_rate", "rate", &[("topic", "b\"x\\y\nz")], f64::INFINITY);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP t_rate rate\n# TYPE t_rate gauge\nt_rate{topic=\"a\"} 1.5\n\
             t_rate{topic=\"b\\\"x\\\\y\\nz\"} +Inf\n\
             # HELP c_total count\n# TYPE c_total counter\nc_total 3\n"
        );
        let h = Histogram::latency();
        h.observe(0.001);
        let mut e = Exposition::default();
        e.histogram_with("h_seconds", "h", &[("op", "add")], &h);
        let text = e.finish();
        assert!(
            text.contains("h_seconds_bucket{op=\"add\",le=\"0.001\"} 1"),
            "{text}"
        );
        assert!(text.contains("h_seconds_count{op=\"add\"} 1"), "{text}");
        assert_eq!(text.matches("# TYPE").count(), 1);
    }
}
