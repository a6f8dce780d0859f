//! Errors of the cold tier.

use thiserror::Error;

pub type Result<T, E = OffloadError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum OffloadError {
    /// A store URL or setting that cannot work; the text says what to fix.
    #[error("invalid object store configuration: {0}")]
    Config(String),
    /// The start-up probe failed at one step (put, get, ranged get,
    /// multipart, delete).
    #[error("object store probe failed at {step}: {reason}")]
    Probe { step: &'static str, reason: String },
    /// The object store refused or failed a request (after retries).
    #[error("object store {op} {key}: {source}")]
    Store {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// Stored bytes do not match what was written: a checksum, a size or
    /// the structure of an object is wrong. Never served as data.
    #[error("corrupt cold data in {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The entries asked for are not in this offloaded ledger.
    #[error("entries {first}..={last} are not in offloaded ledger {ledger_id}")]
    NoSuchEntries {
        ledger_id: u64,
        first: u64,
        last: u64,
    },
    /// Reading the ledger from bookies for an upload failed.
    #[error("reading ledger {ledger_id} from bookies: {reason}")]
    Source { ledger_id: u64, reason: String },
    /// The caller handed the uploader something that is not a whole
    /// ledger (ids out of order, a count that does not match the header).
    #[error("invalid upload input: {0}")]
    Input(String),
    #[error("metadata store: {0}")]
    Metadata(#[from] strata_common::metadata::MetadataError),
    #[error("{0}")]
    Other(String),
}

impl OffloadError {
    pub fn store(
        op: &'static str,
        key: impl std::fmt::Display,
        source: object_store::Error,
    ) -> Self {
        OffloadError::Store {
            op,
            key: key.to_string(),
            source,
        }
    }

    pub fn corrupt(key: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        OffloadError::Corrupt {
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// True for data that failed verification (as opposed to a failed request).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, OffloadError::Corrupt { .. })
    }
}
