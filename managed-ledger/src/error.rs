//! Errors of the managed ledger.

use std::sync::Arc;

use strata_common::metadata::MetadataError;
use strata_ledger::LedgerError;

use crate::Position;

/// Every error of this crate. `Clone`, because one failure of a ledger
/// writer fails every add pending on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ManagedLedgerError {
    /// Another owner took the managed ledger over (its info record or a
    /// ledger of ours was changed by someone else): stop writing.
    #[error("managed ledger fenced: name={0} (another owner took it over)")]
    Fenced(String),
    #[error("managed ledger closed: name={0}")]
    Closed(String),
    #[error("no such managed ledger: name={0}")]
    NotFound(String),
    #[error("no such cursor: managed_ledger={ledger} cursor={cursor}")]
    NoSuchCursor { ledger: String, cursor: String },
    #[error("invalid managed-ledger configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid name {0:?}: {1}")]
    InvalidName(String, String),
    #[error("no such entry: position={0}")]
    NoSuchEntry(Position),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("metadata store: {0}")]
    Metadata(#[source] Arc<MetadataError>),
    /// Reading a ledger's cold copy failed and the bookies have no copy to
    /// fall back on (`corrupt`: the data failed verification).
    #[error("cold storage: ledger={ledger_id}: {error}")]
    Cold {
        ledger_id: u64,
        error: crate::cold::ColdError,
    },
    #[error("corrupt metadata record: key={key}: {reason}")]
    Corrupt { key: String, reason: String },
}

impl From<MetadataError> for ManagedLedgerError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::Corrupt { key, reason } => ManagedLedgerError::Corrupt { key, reason },
            e => ManagedLedgerError::Metadata(Arc::new(e)),
        }
    }
}

impl ManagedLedgerError {
    /// True when another owner took the managed ledger over.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            ManagedLedgerError::Fenced(_) | ManagedLedgerError::Ledger(LedgerError::Fenced(_))
        )
    }
}

pub type Result<T, E = ManagedLedgerError> = std::result::Result<T, E>;
