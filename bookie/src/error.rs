//! Bookie errors, and how they map to gRPC statuses and add results.

use std::io;

use strata_proto::bookie::AddStatus;

#[derive(Debug, thiserror::Error)]
pub enum BookieError {
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),
    #[error("ledger fenced: ledger_id={0}")]
    Fenced(u64),
    #[error("ledger deleted: ledger_id={0}")]
    Deleted(u64),
    #[error("no such ledger: ledger_id={0}")]
    NoSuchLedger(u64),
    #[error("no such entry: ledger_id={0} entry_id={1}")]
    NoSuchEntry(u64, u64),
    #[error("bookie is read-only: {0}")]
    ReadOnly(String),
    #[error("checksum mismatch: ledger_id={ledger_id} entry_id={entry_id}: {what}")]
    Checksum {
        ledger_id: u64,
        entry_id: u64,
        what: &'static str,
    },
    #[error("corrupt {what}: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("journal failed: {0}")]
    JournalFailed(String),
    #[error("bookie is shutting down")]
    ShuttingDown,
    #[error("metadata store: {0}")]
    Metadata(#[from] strata_common::metadata::MetadataError),
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    DirInUse(#[from] strata_common::dirlock::DirLockError),
}

pub type Result<T, E = BookieError> = std::result::Result<T, E>;

impl BookieError {
    pub fn io(context: &'static str, source: io::Error) -> Self {
        BookieError::Io { context, source }
    }

    pub fn corrupt(what: &'static str, reason: impl Into<String>) -> Self {
        BookieError::Corrupt {
            what,
            reason: reason.into(),
        }
    }

    /// True if the error comes from a full disk.
    pub fn is_no_space(&self) -> bool {
        match self {
            BookieError::Io { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
            BookieError::JournalFailed(m) => m.contains("No space left"),
            _ => false,
        }
    }

    /// The per-entry status an add failure is reported with.
    pub fn add_status(&self) -> AddStatus {
        match self {
            BookieError::Fenced(_) => AddStatus::Fenced,
            BookieError::Deleted(_) => AddStatus::Deleted,
            BookieError::ReadOnly(_) | BookieError::ShuttingDown => AddStatus::ReadOnly,
            BookieError::Checksum { .. } => AddStatus::BadChecksum,
            BookieError::Invalid(_) => AddStatus::Invalid,
            _ => AddStatus::IoError,
        }
    }
}

impl From<BookieError> for tonic::Status {
    fn from(e: BookieError) -> Self {
        let msg = e.to_string();
        match e {
            BookieError::NoSuchLedger(_)
            | BookieError::NoSuchEntry(..)
            | BookieError::Deleted(_) => tonic::Status::not_found(msg),
            BookieError::Invalid(_) => tonic::Status::invalid_argument(msg),
            BookieError::Fenced(_) => tonic::Status::failed_precondition(msg),
            BookieError::ReadOnly(_) | BookieError::ShuttingDown => tonic::Status::unavailable(msg),
            BookieError::Checksum { .. } | BookieError::Corrupt { .. } => {
                tonic::Status::data_loss(msg)
            }
            _ => tonic::Status::internal(msg),
        }
    }
}
