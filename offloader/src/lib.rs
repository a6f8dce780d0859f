//! The cold tier: moves closed ledgers to object storage and reads them back.
//!
//! - [`store`]: object stores chosen by URL (`file://DIR`,
//!   `s3://bucket/prefix?endpoint=…&region=…`), credentials from
//!   `aws-config`'s default chain, and the start-up probe;
//! - [`format`]: an offloaded ledger is a data object of CRC32C-checked
//!   blocks and an index object (format version, ledger metadata, one row
//!   per block);
//! - [`upload`]: writes a ledger's objects (multipart for large ones) and
//!   reads them back to verify them;
//! - [`reader`]: the tiered reader the broker uses: ranged GETs in parallel
//!   with read-ahead, a foyer hybrid block cache, a bound on concurrent
//!   requests, retries with backoff, checksums verified on every block;
//! - [`retry`]: per-request timeouts and retries with backoff;
//! - [`faulty`]: a fault-injecting object store wrapper for tests;
//! - [`stats`]: request and byte counters;
//! - [`service`]: the offload service (policies, locks, records, deletion
//!   lag, manual requests) and [`reconcile`] (orphaned objects);
//! - [`tier`]: the cold tier as the broker uses it (reads, deletes, usage,
//!   scrub, requests).

pub mod error;
pub mod faulty;
pub mod format;
pub mod keys;
pub mod metrics;
pub mod policy;
pub mod reader;
pub mod reconcile;
pub mod records;
pub mod registry;
pub mod retry;
pub mod service;
pub mod stats;
pub mod store;
pub mod tier;
pub mod upload;

pub use error::{OffloadError, Result};
pub use format::LedgerHeader;
pub use reader::{ColdLedger, ReaderConfig, ReaderStats, TieredReader};
pub use stats::{IoCounts, IoSink, IoStats};
pub use upload::{OffloadedObjects, UploadOptions, delete_objects, upload_ledger, verify};
