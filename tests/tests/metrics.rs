//! The Prometheus `/metrics` pages of real processes, scraped over plain
//! HTTP and parsed here with a strict reader of the text format (0.0.4):
//!
//! - `strata standalone` after traffic from the official Python client
//!   (`tests/python/metrics_traffic.py`): the bookie, ledger-client and
//!   broker counters and histograms grew by what the script did;
//! - `strata bookie --metrics-listen` after appends and reads through the
//!   ledger client: its own page, with the bookie's counters exact.
//!
//! Every page must be valid: each family's `# HELP` and `# TYPE` once and
//! before its samples, every sample inside its family, labels well formed,
//! histogram buckets cumulative and ending in `+Inf` equal to `_count`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use strata_tests::bookie::BookieProcess;
use strata_tests::fault::{args, bounded, client, fast_config, seed, start_etcd};
use strata_tests::python;
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------
// Plain HTTP
// ---------------------------------------------------------------------------

/// GETs `http://host:port/path` with HTTP/1.0 (so the body is never
/// chunked) and returns the body; panics unless the status is 200.
async fn http_get(url: &str) -> String {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http URL: {url}"));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(authority)
        .await
        .unwrap_or_else(|e| panic!("connect to {authority}: {e}"));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("GET {url}: no complete answer in 30 s"))
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let text = String::from_utf8(raw).expect("the page is UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {url}: no end of headers in {text:?}"));
    let status = head.lines().next().unwrap_or_default();
    assert!(
        status.split_whitespace().nth(1) == Some("200"),
        "GET {url}: {status}\n{body}"
    );
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain"),
        "GET {url}: content type {content_type:?}"
    );
    body.to_string()
}

// ---------------------------------------------------------------------------
// A strict parser of the Prometheus text format
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

#[derive(Debug)]
struct Family {
    kind: String,
    samples: Vec<Sample>,
}

/// A parsed page: families by name.
#[derive(Debug)]
struct Scrape {
    families: BTreeMap<String, Family>,
}

fn valid_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|e| format!("bad value {v:?}: {e}")),
    }
}

/// `name{k="v",...} value` (the labels part optional).
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = r.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = r.find('=').ok_or("label without =")?;
            let key = &r[..eq];
            if !valid_label_name(key) {
                return Err(format!("bad label name {key:?}"));
            }
            r = r[eq + 1..]
                .strip_prefix('"')
                .ok_or_else(|| format!("label {key}: value not quoted"))?;
            let mut value = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("label {key}: bad escape {other:?}")),
                    },
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label {key}: unterminated value")),
                }
            };
            r = &r[end + 1..];
            if labels.iter().any(|(k, _)| k == key) {
                return Err(format!("label {key} twice"));
            }
            labels.push((key.to_string(), value));
            if let Some(after) = r.strip_prefix(',') {
                r = after;
            } else if !r.starts_with('}') {
                return Err(format!("expected , or }} after label {key}"));
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    // The format allows a timestamp after the value; we never write one.
    if value.contains(' ') {
        return Err(format!("unexpected text after the value: {value:?}"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value: parse_value(value)?,
    })
}

/// The labels of a sample without `le`, for grouping histogram series.
fn series_key(s: &Sample) -> Vec<(String, String)> {
    s.labels
        .iter()
        .filter(|(k, _)| k != "le")
        .cloned()
        .collect()
}

/// Checks one histogram family: per series, buckets with increasing `le`
/// and non-decreasing counts, the last `+Inf`, equal to `_count`, and a `_sum`.
fn check_histogram(name: &str, f: &Family) -> Result<(), String> {
    /// One labeled series: (le, cumulative count) buckets, `_count`, `_sum` seen.
    #[derive(Default)]
    struct Series {
        buckets: Vec<(f64, f64)>,
        count: Option<f64>,
        has_sum: bool,
    }
    let mut series: BTreeMap<Vec<(String, String)>, Series> = BTreeMap::new();
    for s in &f.samples {
        let entry = series.entry(series_key(s)).or_default();
        let suffix = &s.name[name.len()..];
        match suffix {
            "_bucket" => {
                let le = s
                    .labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .ok_or_else(|| format!("{} without le", s.name))?;
                entry.buckets.push((parse_value(&le.1)?, s.value));
            }
            "_count" => entry.count = Some(s.value),
            "_sum" => entry.has_sum = true,
            _ => unreachable!("filtered by the family check"),
        }
    }
    for (
        labels,
        Series {
            buckets,
            count,
            has_sum,
        },
    ) in series
    {
        let what = format!("{name}{labels:?}");
        if buckets.is_empty() || !has_sum {
            return Err(format!("{what}: buckets or _sum missing"));
        }
        for w in buckets.windows(2) {
            if w[1].0 <= w[0].0 || w[1].1 < w[0].1 {
                return Err(format!("{what}: buckets not cumulative: {buckets:?}"));
            }
        }
        let last = buckets[buckets.len() - 1];
        if last.0 != f64::INFINITY || Some(last.1) != count {
            return Err(format!(
                "{what}: last bucket {last:?} is not +Inf = _count {count:?}"
            ));
        }
    }
    Ok(())
}

/// Parses a page, rejecting anything a strict scraper would.
fn parse(text: &str) -> Result<Scrape, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut lines = text.lines().enumerate().peekable();
    if !text.ends_with('\n') {
        return Err("the page does not end with a line feed".into());
    }
    while let Some((n, line)) = lines.next() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !valid_metric_name(name) {
                return Err(at(format!("bad family name {name:?}")));
            }
            if families.contains_key(name) {
                return Err(at(format!("family {name} appears twice")));
            }
            let type_line = lines.next().map(|(_, l)| l).unwrap_or_default();
            let kind = type_line
                .strip_prefix(&format!("# TYPE {name} "))
                .ok_or_else(|| at(format!("HELP of {name} not followed by its TYPE")))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind:?}")));
            }
            families.insert(
                name.to_string(),
                Family {
                    kind: kind.to_string(),
                    samples: Vec::new(),
                },
            );
            current = Some(name.to_string());
        } else if line.starts_with('#') || line.is_empty() {
            return Err(at("unexpected comment or empty line".into()));
        } else {
            let sample = parse_sample(line).map_err(at)?;
            let family = current
                .as_deref()
                .ok_or_else(|| at("sample before any HELP/TYPE".into()))?;
            let f = families.get_mut(family).expect("current family exists");
            let belongs = match f.kind.as_str() {
                "histogram" => {
                    let suffix = sample.name.strip_prefix(family).unwrap_or("?");
                    let has_le = sample.labels.iter().any(|(k, _)| k == "le");
                    (suffix == "_bucket" && has_le)
                        || ((suffix == "_sum" || suffix == "_count") && !has_le)
                }
                _ => sample.name == family,
            };
            if !belongs {
                return Err(at(format!(
                    "sample outside its family {family} ({})",
                    f.kind
                )));
            }
            if f.kind == "counter" && (sample.value < 0.0 || sample.value.is_nan()) {
                return Err(at("negative counter".into()));
            }
            f.samples.push(sample);
        }
    }
    for (name, f) in &families {
        if f.samples.is_empty() {
            return Err(format!("family {name} has no samples"));
        }
        if f.kind == "histogram" {
            check_histogram(name, f)?;
        }
        let mut seen = HashSet::new();
        for s in &f.samples {
            if !seen.insert((s.name.clone(), s.labels.clone())) {
                return Err(format!("{} {:?} appears twice", s.name, s.labels));
            }
        }
    }
    Ok(Scrape { families })
}

impl Scrape {
    /// The value of the unlabeled sample `name` (a counter, a gauge, or a
    /// histogram's `_count`/`_sum`); panics if absent.
    fn value(&self, name: &str) -> f64 {
        self.labeled(name, &[])
    }

    fn labeled(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(k2, v2)| k2 == k && v2 == v))
            })
            .map(|s| s.value)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} on the page"))
    }

    fn has_family(&self, name: &str) -> bool {
        self.families.contains_key(name)
    }
}

/// Scrapes and parses; panics with the page if it is not valid.
async fn scrape(url: &str) -> Scrape {
    let text = http_get(url).await;
    parse(&text).unwrap_or_else(|e| panic!("invalid exposition from {url}: {e}\n{text}"))
}

/// The read path's bookkeeping: every entry lookup is a write-cache hit or
/// miss, and every write-cache miss a read-cache hit or miss.
fn check_cache_counters(m: &Scrape) {
    let lookups = m.value("strata_bookie_reads_total");
    let wc_hits = m.value("strata_bookie_write_cache_hits_total");
    let wc_misses = m.value("strata_bookie_write_cache_misses_total");
    let rc_hits = m.value("strata_bookie_read_cache_hits_total");
    let rc_misses = m.value("strata_bookie_read_cache_misses_total");
    assert_eq!(wc_hits + wc_misses, lookups, "write-cache hits + misses");
    assert_eq!(rc_hits + rc_misses, wc_misses, "read-cache hits + misses");
}

// ---------------------------------------------------------------------------
// The parser rejects what it must
// ---------------------------------------------------------------------------

#[test]
fn parser_rejects_invalid_pages() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"w\"} 1\n";
    let s = parse(good).unwrap();
    assert_eq!(s.labeled("a_total", &[("k", "v\"w")]), 1.0);
    for bad in [
        // Sample without a family, family twice, TYPE missing.
        "a_total 1\n",
        "# HELP a x\n# TYPE a gauge\na 1\n# HELP a x\n# TYPE a gauge\na 2\n",
        "# HELP a x\na 1\n",
        // Sample of another family under this one, bad label syntax.
        "# HELP a x\n# TYPE a gauge\nb 1\n",
        "# HELP a x\n# TYPE a gauge\na{k=v} 1\n",
        "# HELP a x\n# TYPE a gauge\na{k=\"v} 1\n",
        // Histogram buckets not cumulative, +Inf not equal to _count.
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
    ] {
        assert!(parse(bad).is_err(), "accepted:\n{bad}");
    }
}

// ---------------------------------------------------------------------------
// strata standalone
// ---------------------------------------------------------------------------

const MESSAGES: u64 = 200;
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_metrics_grow_with_python_client_traffic() {
    let name = "standalone_metrics";
    bounded(name, SCRIPT_LIMIT + Duration::from_secs(90), async {
        let dir = TempDir::new().unwrap();
        let mut s = StandaloneProcess::start_in(&dir).await;
        let url = format!("{}/metrics", s.admin_url());
        let before = scrape(&url).await;

        let messages = MESSAGES.to_string();
        let timeout = (SCRIPT_LIMIT.as_secs() - 15).to_string();
        let seed = seed(name, 0x5EED_3E7C).to_string();
        let run = python::run(
            "metrics_traffic.py",
            &[
                "--service-url",
                s.service_url(),
                "--timeout",
                &timeout,
                "--seed",
                &seed,
                "--messages",
                &messages,
            ],
            SCRIPT_LIMIT,
        )
        .await;
        assert!(run.success(), "{}\n{}", run.report(), s.log_tail());

        let after = scrape(&url).await;
        let grew = |name: &str| after.value(name) - before.value(name);
        let n = MESSAGES as f64;

        // Bookie: every message is one entry, made durable by the journal.
        assert!(grew("strata_bookie_journal_fsync_seconds_count") >= 1.0);
        assert!(grew("strata_bookie_add_seconds_count") >= n);
        assert!(grew("strata_bookie_adds_total") >= n);
        check_cache_counters(&after);

        // Ledger client: the same entries, acknowledged by a quorum.
        assert!(grew("strata_ledger_client_adds_total") >= n);
        assert!(grew("strata_ledger_client_add_latency_seconds_count") >= n);
        assert!(grew("strata_ledger_client_add_bytes_total") >= n);
        assert!(after.value("strata_ledger_client_ledgers_created_total") >= 1.0);
        assert_eq!(
            after.labeled("strata_ledger_client_bookie_errors_total", &[("op", "add")]),
            0.0
        );

        // Broker: one SEND per message (no batching), each receipted.
        assert!(grew("strata_broker_publish_latency_seconds_count") >= n);
        assert!(after.value("strata_broker_publish_latency_seconds_sum") > 0.0);
        assert_eq!(grew("strata_broker_publish_errors_total"), 0.0);
        assert!(grew("strata_broker_lookups_total") >= 1.0);
        assert!(grew("strata_broker_connections_opened_total") >= 1.0);
        assert!(after.value("strata_broker_connections") >= 0.0);

        assert!(after.value("process_resident_memory_bytes") > 0.0);
        assert!(after.value("process_open_fds") > 0.0);
        assert!(after.value("process_cpu_seconds_total") > 0.0);
        s.stop_cleanly().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// strata bookie --metrics-listen
// ---------------------------------------------------------------------------

const METRICS_URL_PREFIX: &str = "bookie metrics URL: ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookie_process_serves_its_own_metrics() {
    bounded("bookie_metrics", Duration::from_secs(120), async {
        let etcd = start_etcd().await;
        let dir = TempDir::new().unwrap();
        let mut bookie = BookieProcess::start(
            dir.path().join("b0"),
            &etcd.url(),
            &args(&["--metrics-listen", "127.0.0.1:0"]),
        )
        .await;
        let log = bookie.log();
        let url = log
            .lines()
            .find_map(|l| l.split_once(METRICS_URL_PREFIX).map(|(_, u)| u.trim()))
            .unwrap_or_else(|| panic!("no {METRICS_URL_PREFIX:?} line in the log:\n{log}"))
            .to_string();
        let before = scrape(&url).await;
        assert_eq!(before.value("strata_bookie_adds_total"), 0.0);

        let c = client(&etcd.url(), fast_config()).await;
        let w = c.create(1, 1, 1).await.expect("create a ledger");
        const ENTRIES: u64 = 50;
        for i in 0..ENTRIES {
            w.append(Bytes::from(format!("entry {i}")))
                .await
                .expect("append");
        }
        w.close().await.expect("close");
        let r = c.open(w.ledger_id()).await.expect("open");
        assert_eq!(r.read(0, ENTRIES - 1).await.expect("read").len(), 50);

        // The client's view, in this process.
        assert_eq!(c.metrics().adds.get(), ENTRIES);
        assert_eq!(c.metrics().read_entries.get(), ENTRIES);

        // The bookie's, over HTTP: every add counted once its fsync returned.
        let n = ENTRIES as f64;
        let m = scrape(&url).await;
        assert_eq!(m.value("strata_bookie_adds_total"), n);
        assert_eq!(m.value("strata_bookie_add_seconds_count"), n);
        assert_eq!(m.value("strata_bookie_add_errors_total"), 0.0);
        assert!(m.value("strata_bookie_journal_fsync_seconds_count") >= 1.0);
        assert!(m.value("strata_bookie_journal_bytes_total") > 0.0);
        assert!(m.value("strata_bookie_reads_total") >= n);
        assert!(m.value("strata_bookie_read_seconds_count") >= 1.0);
        check_cache_counters(&m);
        assert!(m.value("process_resident_memory_bytes") > 0.0);
        assert!(
            !m.has_family("strata_broker_publish_latency_seconds"),
            "a bookie process has no broker metrics"
        );

        // SIGTERM stops the metrics server along with the bookie, cleanly.
        let status = bookie.stop().await;
        assert!(status.success(), "{status}\n{}", bookie.log_tail());
    })
    .await;
}
