//! Bookie configuration: defaults ← TOML file (`--config`) ← `STRATA_BOOKIE_*`
//! environment variables ← command-line flags. `--print-config` shows the
//! effective result.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{BookieError, Result};

/// Where entries live once they leave the write cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StorageMode {
    /// Entries stay in the journal files that made them durable; the index
    /// points there, and garbage collection later compacts the live entries
    /// of old journal files into entry logs. Every byte is written once, so
    /// one disk gives its whole bandwidth to adds.
    #[default]
    Journal,
    /// BookKeeper's way: the write cache is copied into entry logs sorted by
    /// ledger and the journal is trimmed. Every byte is written twice; choose
    /// it when the journal has its own small, fast disk.
    EntryLog,
}

/// Every bookie setting, with its default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BookieConfig {
    /// Address the gRPC server listens on.
    pub listen: String,
    /// Address clients use to reach this bookie; also its id. Defaults to `listen`.
    pub advertised_address: Option<String>,
    /// Root of the bookie's files.
    pub data_dir: PathBuf,
    /// Journal directory (put it on its own disk for best latency). Default: DATA_DIR/journal.
    pub journal_dir: Option<PathBuf>,
    /// Entry logs and index. Default: DATA_DIR/ledgers.
    pub ledger_dir: Option<PathBuf>,
    /// Metadata store URL (`rocksdb:///path`, `etcd://host:port,...`).
    /// Default: an embedded RocksDB under DATA_DIR/metadata.
    pub metadata_url: Option<String>,
    /// Group commit: flush once this many bytes are pending...
    pub journal_group_bytes: usize,
    /// ...or once the oldest pending add has waited this long.
    #[serde(with = "humantime_serde")]
    pub journal_max_group_wait: Duration,
    /// Also flush as soon as no more adds are queued (no waiting at low load;
    /// under load the queue is rarely empty and batches still form).
    pub journal_flush_when_queue_empty: bool,
    /// Journal files are extended by this many bytes at a time (fallocate).
    pub journal_preallocate: u64,
    /// A journal file is closed and a new one started past this size.
    pub journal_max_file_size: u64,
    /// Journal files no longer needed are kept (up to this many) and reused
    /// for new ones, whose writes then overwrite blocks instead of
    /// allocating new ones (0: delete them). The pool is deleted when the
    /// disk reaches `disk_usage_threshold`, and kept empty while the bookie
    /// is read-only for lack of space.
    pub journal_reuse_files: usize,
    /// A released journal file waits this long before reuse, so that a read
    /// that found it just before its release still reads its old contents.
    #[serde(with = "humantime_serde")]
    pub journal_reuse_grace: Duration,
    /// Journal writes and fdatasyncs taking at least this long are counted
    /// (`strata_bookie_journal_slow_*_total`) and reported in a warning, at
    /// most every 10 s (0: not tracked).
    #[serde(with = "humantime_serde")]
    pub journal_slow_threshold: Duration,
    /// Where entries live after the write cache: `journal` (written once,
    /// the default) or `entry-log` (copied into entry logs).
    pub storage_mode: StorageMode,
    /// Bytes of entries held in memory before they must be flushed (indexed,
    /// or copied into entry logs). Entries the journal has not yet made
    /// durable cannot be flushed and count here, so at disk speed this must
    /// hold what the journal has in flight (~40 MB at 1 GB/s with 64 KiB
    /// entries on the development VM) with room to spare: adds wait for
    /// room when it is full.
    pub write_cache_bytes: usize,
    /// Capacity of the foyer read cache in bytes.
    pub read_cache_bytes: usize,
    /// An entry log is closed and a new one started past this size.
    pub entry_log_size_limit: u64,
    /// Write cache flush (checkpoint) period.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Garbage collection period.
    #[serde(with = "humantime_serde")]
    pub gc_interval: Duration,
    /// Entry logs whose live ratio falls below this are compacted.
    pub gc_live_ratio: f64,
    /// How often disk usage is checked and the registration refreshed.
    #[serde(with = "humantime_serde")]
    pub disk_check_interval: Duration,
    /// Above this used fraction of a disk the bookie turns read-only...
    pub disk_usage_threshold: f64,
    /// ...and it becomes writable again below this one.
    pub disk_usage_lwm: f64,
    /// The registration vanishes this long after the bookie stops renewing it.
    #[serde(with = "humantime_serde")]
    pub registration_ttl: Duration,
    /// Address of the Prometheus `/metrics` HTTP endpoint of a `strata
    /// bookie` process (e.g. `0.0.0.0:8000`; port 0 picks a free one). None:
    /// no endpoint. A bookie embedded in `strata standalone` ignores it: the
    /// standalone's admin port serves its metrics.
    pub metrics_listen: Option<String>,
}

impl Default for BookieConfig {
    fn default() -> Self {
        BookieConfig {
            listen: "127.0.0.1:3181".into(),
            advertised_address: None,
            data_dir: PathBuf::from("./data/bookie"),
            journal_dir: None,
            ledger_dir: None,
            metadata_url: None,
            journal_group_bytes: 512 << 10,
            journal_max_group_wait: Duration::from_millis(1),
            journal_flush_when_queue_empty: true,
            journal_preallocate: 16 << 20,
            journal_max_file_size: 128 << 20,
            journal_reuse_files: 8,
            journal_reuse_grace: crate::journal::REUSE_GRACE,
            journal_slow_threshold: crate::journal::SLOW_THRESHOLD,
            storage_mode: StorageMode::Journal,
            write_cache_bytes: 256 << 20,
            read_cache_bytes: 64 << 20,
            entry_log_size_limit: 256 << 20,
            flush_interval: Duration::from_secs(1),
            gc_interval: Duration::from_secs(60),
            gc_live_ratio: 0.5,
            disk_check_interval: Duration::from_secs(5),
            disk_usage_threshold: 0.95,
            disk_usage_lwm: 0.90,
            registration_ttl: Duration::from_secs(10),
            metrics_listen: None,
        }
    }
}

impl BookieConfig {
    pub fn journal_dir(&self) -> PathBuf {
        self.journal_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("journal"))
    }

    pub fn ledger_dir(&self) -> PathBuf {
        self.ledger_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("ledgers"))
    }

    pub fn metadata_url(&self) -> String {
        self.metadata_url
            .clone()
            .unwrap_or_else(|| format!("rocksdb://{}", self.data_dir.join("metadata").display()))
    }

    /// The bookie's id and the address clients dial.
    pub fn bookie_id(&self) -> String {
        self.advertised_address
            .clone()
            .unwrap_or_else(|| self.listen.clone())
    }

    pub fn from_file(path: &Path) -> Result<BookieConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BookieError::Config(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| BookieError::Config(format!("{}: {e}", path.display())))
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BookieError::Config(m));
        if !(0.0..=1.0).contains(&self.disk_usage_threshold)
            || !(0.0..=1.0).contains(&self.disk_usage_lwm)
        {
            return bad("disk_usage_threshold and disk_usage_lwm are fractions in 0..=1".into());
        }
        if self.disk_usage_lwm > self.disk_usage_threshold {
            return bad(format!(
                "disk_usage_lwm ({}) must not exceed disk_usage_threshold ({})",
                self.disk_usage_lwm, self.disk_usage_threshold
            ));
        }
        if !(0.0..=1.0).contains(&self.gc_live_ratio) {
            return bad("gc_live_ratio is a fraction in 0..=1".into());
        }
        if self.write_cache_bytes < 1 << 20 {
            return bad("write_cache_bytes must be at least 1 MiB".into());
        }
        if self.journal_group_bytes == 0 {
            return bad("journal_group_bytes must be positive".into());
        }
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }
}

/// Command-line flags and `STRATA_BOOKIE_*` variables; each overrides the
/// config file's value when given.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct BookieArgs {
    /// TOML config file.
    #[arg(long, env = "STRATA_BOOKIE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Address the gRPC server listens on [default: 127.0.0.1:3181].
    #[arg(long, env = "STRATA_BOOKIE_LISTEN")]
    pub listen: Option<String>,
    /// Address clients use to reach this bookie; also its id [default: the listen address].
    #[arg(long, env = "STRATA_BOOKIE_ADVERTISED_ADDRESS")]
    pub advertised_address: Option<String>,
    /// Root of the bookie's files [default: ./data/bookie].
    #[arg(long, env = "STRATA_BOOKIE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Journal directory [default: DATA_DIR/journal].
    #[arg(long, env = "STRATA_BOOKIE_JOURNAL_DIR")]
    pub journal_dir: Option<PathBuf>,
    /// Entry logs and index directory [default: DATA_DIR/ledgers].
    #[arg(long, env = "STRATA_BOOKIE_LEDGER_DIR")]
    pub ledger_dir: Option<PathBuf>,
    /// Metadata store: rocksdb:///path or etcd://host:port,... [default: rocksdb under DATA_DIR/metadata].
    #[arg(long, env = "STRATA_METADATA_URL")]
    pub metadata_url: Option<String>,
    /// Group commit: stop waiting for more adds once this many bytes are pending [default: 524288].
    #[arg(long, env = "STRATA_BOOKIE_JOURNAL_GROUP_BYTES")]
    pub journal_group_bytes: Option<usize>,
    /// Group commit: longest wait for more adds after the first, e.g. "1ms" [default: 1ms].
    #[arg(long, env = "STRATA_BOOKIE_JOURNAL_MAX_GROUP_WAIT", value_parser = humantime::parse_duration)]
    pub journal_max_group_wait: Option<Duration>,
    /// Group commit: also flush as soon as no more adds are queued [default: true].
    #[arg(long, env = "STRATA_BOOKIE_JOURNAL_FLUSH_WHEN_QUEUE_EMPTY")]
    pub journal_flush_when_queue_empty: Option<bool>,
    /// Journal files grow by this many bytes at a time [default: 16 MiB].
    #[arg(long, env = "STRATA_BOOKIE_JOURNAL_PREALLOCATE")]
    pub journal_preallocate: Option<u64>,
    /// Start a new journal file past this size [default: 128 MiB].
    #[arg(long, env = "STRATA_BOOKIE_JOURNAL_MAX_FILE_SIZE")]
    pub journal_max_file_size: Option<u64>,
    /// Keep up to this many released journal files for reuse (0: delete them) [default: 8].
    #[arg(long, env = "STRATA_BOOKIE_JOURNAL_REUSE_FILES")]
    pub journal_reuse_files: Option<usize>,
    /// A released journal file waits this long before reuse, e.g. "2s" [default: 2s].
    #[arg(long, env = "STRATA_BOOKIE_JOURNAL_REUSE_GRACE", value_parser = humantime::parse_duration)]
    pub journal_reuse_grace: Option<Duration>,
    /// Journal writes and fdatasyncs taking this long or more are counted and reported, e.g. "100ms" (0s: off) [default: 100ms].
    #[arg(long, env = "STRATA_BOOKIE_JOURNAL_SLOW_THRESHOLD", value_parser = humantime::parse_duration)]
    pub journal_slow_threshold: Option<Duration>,
    /// Where entries live after the write cache: journal (written once) or entry-log (copied, for a journal on its own disk) [default: journal].
    #[arg(long, env = "STRATA_BOOKIE_STORAGE_MODE", value_enum)]
    pub storage_mode: Option<StorageMode>,
    /// Bytes of entries held in memory before they must be flushed [default: 256 MiB].
    #[arg(long, env = "STRATA_BOOKIE_WRITE_CACHE_BYTES")]
    pub write_cache_bytes: Option<usize>,
    /// Capacity of the foyer read cache in bytes [default: 64 MiB].
    #[arg(long, env = "STRATA_BOOKIE_READ_CACHE_BYTES")]
    pub read_cache_bytes: Option<usize>,
    /// Start a new entry log past this size [default: 256 MiB].
    #[arg(long, env = "STRATA_BOOKIE_ENTRY_LOG_SIZE_LIMIT")]
    pub entry_log_size_limit: Option<u64>,
    /// Write-cache flush (checkpoint) period [default: 1s].
    #[arg(long, env = "STRATA_BOOKIE_FLUSH_INTERVAL", value_parser = humantime::parse_duration)]
    pub flush_interval: Option<Duration>,
    /// Garbage-collection period [default: 60s].
    #[arg(long, env = "STRATA_BOOKIE_GC_INTERVAL", value_parser = humantime::parse_duration)]
    pub gc_interval: Option<Duration>,
    /// Compact entry logs whose live fraction is below this [default: 0.5].
    #[arg(long, env = "STRATA_BOOKIE_GC_LIVE_RATIO")]
    pub gc_live_ratio: Option<f64>,
    /// Disk-usage check and registration refresh period [default: 5s].
    #[arg(long, env = "STRATA_BOOKIE_DISK_CHECK_INTERVAL", value_parser = humantime::parse_duration)]
    pub disk_check_interval: Option<Duration>,
    /// Turn read-only above this used fraction of a disk [default: 0.95].
    #[arg(long, env = "STRATA_BOOKIE_DISK_USAGE_THRESHOLD")]
    pub disk_usage_threshold: Option<f64>,
    /// Become writable again below this used fraction [default: 0.90].
    #[arg(long, env = "STRATA_BOOKIE_DISK_USAGE_LWM")]
    pub disk_usage_lwm: Option<f64>,
    /// The registration vanishes this long after the bookie stops renewing it [default: 10s].
    #[arg(long, env = "STRATA_BOOKIE_REGISTRATION_TTL", value_parser = humantime::parse_duration)]
    pub registration_ttl: Option<Duration>,
    /// Serve Prometheus metrics over HTTP on this address, e.g. 0.0.0.0:8000 [default: none].
    #[arg(long, env = "STRATA_BOOKIE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

impl BookieArgs {
    /// The effective config: file (or defaults) with these overrides applied.
    pub fn resolve(&self) -> Result<BookieConfig> {
        let mut c = match &self.config {
            Some(p) => BookieConfig::from_file(p)?,
            None => BookieConfig::default(),
        };
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = v.clone(); } )* };
        }
        macro_rules! over_opt {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = Some(v.clone()); } )* };
        }
        over!(
            listen,
            data_dir,
            journal_group_bytes,
            journal_max_group_wait,
            journal_flush_when_queue_empty,
            journal_preallocate,
            journal_max_file_size,
            journal_reuse_files,
            journal_reuse_grace,
            journal_slow_threshold,
            storage_mode,
            write_cache_bytes,
            read_cache_bytes,
            entry_log_size_limit,
            flush_interval,
            gc_interval,
            gc_live_ratio,
            disk_check_interval,
            disk_usage_threshold,
            disk_usage_lwm,
            registration_ttl
        );
        over_opt!(
            advertised_address,
            journal_dir,
            ledger_dir,
            metadata_url,
            metrics_listen
        );
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bookie.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:4000\"\njournal_max_group_wait = \"2ms\"\nwrite_cache_bytes = 8388608\nmetrics_listen = \"127.0.0.1:9100\"\njournal_slow_threshold = \"250ms\"\n",
        )
        .unwrap();
        let args = BookieArgs {
            config: Some(path.clone()),
            write_cache_bytes: Some(16 << 20),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.listen, "127.0.0.1:4000");
        assert_eq!(c.journal_max_group_wait, Duration::from_millis(2));
        assert_eq!(c.journal_slow_threshold, Duration::from_millis(250));
        assert_eq!(c.write_cache_bytes, 16 << 20);
        assert_eq!(c.bookie_id(), "127.0.0.1:4000");
        assert_eq!(c.metrics_listen.as_deref(), Some("127.0.0.1:9100"));
        assert_eq!(BookieConfig::default().metrics_listen, None);
        // The printed config parses back to the same values.
        let again: BookieConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(again.write_cache_bytes, c.write_cache_bytes);
        assert_eq!(again.journal_slow_threshold, c.journal_slow_threshold);
        assert_eq!(again.metrics_listen, c.metrics_listen);

        std::fs::write(&path, "no_such_setting = 1\n").unwrap();
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("no_such_setting"), "{err}");

        let bad = BookieArgs {
            disk_usage_lwm: Some(0.99),
            ..Default::default()
        };
        assert!(bad.resolve().is_err());
    }
}
