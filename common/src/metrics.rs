//! Minimal Prometheus-style metrics: counters, gauges and fixed-bucket
//! histograms that are cheap to update from hot paths (atomics only) and
//! render in the Prometheus text exposition format.

use std::collections::HashMap;
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
        if let Some(cpu) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| cpu_seconds_of_stat(&s))
        {
            out.counter_f64(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                cpu,
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

/// Clock ticks per second of the CPU times in `/proc/*/stat` (USER_HZ,
/// which Linux fixes at 100 for user space on every architecture).
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds from a `/proc/<pid>/stat` or
/// `/proc/<pid>/task/<tid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`:
/// utime and stime are fields 14 and 15.
pub fn cpu_seconds_of_stat(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// The kind of a metric family, as its `# TYPE` line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family: its `# HELP`/`# TYPE` header and its samples.
struct Family {
    name: String,
    kind: Kind,
    help: String,
    samples: String,
}

/// Builds a Prometheus text exposition (format 0.0.4).
///
/// Samples are grouped by family whatever the order of the calls, and each
/// family gets its `# HELP` and `# TYPE` lines once, before its samples: a
/// scraper rejects a page where a family's samples are split or its header
/// repeats, and the sources (one per topic, per bookie...) add samples of the
/// same family from many places.
#[derive(Default)]
pub struct Exposition {
    families: Vec<Family>,
    index: HashMap<String, usize>,
}

impl Exposition {
    pub fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.counter_with(name, help, &[], v);
    }

    pub fn gauge(&mut self, name: &str, help: &str, v: i64) {
        self.gauge_with(name, help, &[], v);
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.histogram_with(name, help, &[], h);
    }

    /// A counter sample with labels (`name{k="v",...} v`).
    pub fn counter_with(&mut self, name: &str, help: &str, labels: &[(&str, &str)], v: u64) {
        let out = self.family(name, help, Kind::Counter);
        sample(out, name, "", labels, None, &v.to_string());
    }

    /// A counter with a fractional value (CPU seconds).
    pub fn counter_f64(&mut self, name: &str, help: &str, v: f64) {
        let out = self.family(name, help, Kind::Counter);
        sample(out, name, "", &[], None, &v.to_string());
    }

    /// A gauge sample with labels.
    pub fn gauge_with(&mut self, name: &str, help: &str, labels: &[(&str, &str)], v: i64) {
        let out = self.family(name, help, Kind::Gauge);
        sample(out, name, "", labels, None, &v.to_string());
    }

    /// A gauge sample with labels and a fractional value (rates); `NaN`
    /// and infinities are spelled as the text format wants them.
    pub fn gauge_f64_with(&mut self, name: &str, help: &str, labels: &[(&str, &str)], v: f64) {
        let value = if v.is_nan() {
            "NaN".to_string()
        } else if v == f64::INFINITY {
            "+Inf".to_string()
        } else if v == f64::NEG_INFINITY {
            "-Inf".to_string()
        } else {
            v.to_string()
        };
        let out = self.family(name, help, Kind::Gauge);
        sample(out, name, "", labels, None, &value);
    }

    /// A histogram with labels: cumulative `_bucket` samples (each with its
    /// `le` label after the given ones), then `_sum` and `_count`.
    pub fn histogram_with(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        h: &Histogram,
    ) {
        let out = self.family(name, help, Kind::Histogram);
        let mut cumulative = 0;
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulative += h.counts[i].load(Ordering::Relaxed);
            let le = bound.to_string();
            sample(
                out,
                name,
                "_bucket",
                labels,
                Some(&le),
                &cumulative.to_string(),
            );
        }
        cumulative += h.counts[h.bounds.len()].load(Ordering::Relaxed);
        let total = cumulative.to_string();
        sample(out, name, "_bucket", labels, Some("+Inf"), &total);
        // `_count` is the +Inf bucket, not the separate counter, so the two
        // agree even while observations land during the render.
        sample(out, name, "_sum", labels, None, &h.sum().to_string());
        sample(out, name, "_count", labels, None, &total);
    }

    /// The sample buffer of family `name`, created with its header on first use.
    fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut String {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    kind,
                    help: escape_help(help),
                    samples: String::new(),
                });
                self.index.insert(name.to_string(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        let family = &mut self.families[i];
        debug_assert_eq!(
            family.kind, kind,
            "metric family {name} rendered as two different types"
        );
        &mut family.samples
    }

    pub fn finish(self) -> String {
        let mut out = String::new();
        for f in self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
            out.push_str(&f.samples);
        }
        out
    }
}

/// Writes one sample line: `name+suffix{labels,le="..."} value`.
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<&str>,
    value: &str,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
        for (i, (k, v)) in all.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Label values may hold anything (topic names come from clients): the
/// format escapes backslash, double quote and line feed.
fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes backslash and line feed.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_from_proc_stat() {
        // utime 250 ticks, stime 50 ticks; a command name with ") (" in it.
        let stat = "4242 (tokio-rt) (x)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 8 0";
        assert_eq!(cpu_seconds_of_stat(stat), Some(3.0));
        assert_eq!(cpu_seconds_of_stat("garbage"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(cpu_seconds_of_stat(&own).is_some());
        let mut out = Exposition::default();
        ProcessMetrics.render(&mut out);
        let text = out.finish();
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter"),
            "{text}"
        );
    }

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
    fn label_values_and_help_are_escaped() {
        let mut e = Exposition::default();
        e.counter_with(
            "t_total",
            "a \\ help\nwith a line feed",
            &[("topic", "a\"b\\c\nd"), ("kind", "plain")],
            7,
        );
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP t_total a \\\\ help\\nwith a line feed\n\
             # TYPE t_total counter\n\
             t_total{topic=\"a\\\"b\\\\c\\nd\",kind=\"plain\"} 7\n"
        );
    }
    #[test]
    fn labeled_histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[1.0, 2.0, 5.0]);
        for v in [0.5, 1.5, 1.5, 4.0, 9.0] {
            h.observe(v);
        }
        let mut e = Exposition::default();
        e.histogram_with("lat_seconds", "latency", &[("op", "add")], &h);
        let text = e.finish();
        let want = [
            "# HELP lat_seconds latency",
            "# TYPE lat_seconds histogram",
            "lat_seconds_bucket{op=\"add\",le=\"1\"} 1",
            "lat_seconds_bucket{op=\"add\",le=\"2\"} 3",
            "lat_seconds_bucket{op=\"add\",le=\"5\"} 4",
            "lat_seconds_bucket{op=\"add\",le=\"+Inf\"} 5",
            "lat_seconds_sum{op=\"add\"} 16.5",
            "lat_seconds_count{op=\"add\"} 5",
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), want, "{text}");
    }

    #[test]
    fn families_are_grouped_with_one_header() {
        let mut e = Exposition::default();
        e.counter_with("a_total", "first", &[("k", "1")], 1);
        e.gauge("b", "other", -3);
        e.counter_with("a_total", "ignored second help", &[("k", "2")], 2);
        let text = e.finish();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "# HELP a_total first",
                "# TYPE a_total counter",
                "a_total{k=\"1\"} 1",
                "a_total{k=\"2\"} 2",
                "# HELP b other",
                "# TYPE b gauge",
                "b -3",
            ],
            "{text}"
        );
    }

    #[test]
    fn fractional_gauges() {
        let mut e = Exposition::default();
        e.gauge_f64_with("r", "rate", &[("t", "a")], 1.5);
        e.gauge_f64_with("r", "rate", &[("t", "b")], f64::INFINITY);
        e.gauge_f64_with("r", "rate", &[("t", "c")], 0.0);
        let text = e.finish();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "# HELP r rate",
                "# TYPE r gauge",
                "r{t=\"a\"} 1.5",
                "r{t=\"b\"} +Inf",
                "r{t=\"c\"} 0",
            ],
            "{text}"
        );
    }
}
