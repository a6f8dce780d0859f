//! Ledger-client errors.

use strata_common::metadata::MetadataError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger fenced: ledger_id={0} (another client recovered it)")]
    Fenced(u64),
    #[error("ledger closed: ledger_id={0}")]
    Closed(u64),
    #[error("no such ledger: ledger_id={0}")]
    NoSuchLedger(u64),
    #[error("no such entry: ledger_id={0} entry_id={1}")]
    NoSuchEntry(u64, u64),
    #[error("not enough writable bookies: need {needed}, have {available}")]
    NotEnoughBookies { needed: usize, available: usize },
    #[error(
        "invalid quorum: ensemble={e} write_quorum={qw} ack_quorum={qa} (need e >= qw >= qa >= 1)"
    )]
    InvalidQuorum { e: u32, qw: u32, qa: u32 },
    #[error("bookie {bookie} unavailable: {reason}")]
    BookieUnavailable { bookie: String, reason: String },
    #[error("bookie {bookie} rejected the request: {reason}")]
    BookieError { bookie: String, reason: String },
    #[error("checksum mismatch reading ledger_id={ledger_id} entry_id={entry_id} from {bookie}")]
    Checksum {
        ledger_id: u64,
        entry_id: u64,
        bookie: String,
    },
    #[error("ledger recovery failed: ledger_id={ledger_id}: {reason}")]
    Recovery { ledger_id: u64, reason: String },
    #[error("entry of {size} bytes exceeds the {max} byte limit")]
    EntryTooLarge { size: usize, max: usize },
    #[error("metadata store: {0}")]
    Metadata(String),
    #[error("writer failed earlier: {0}")]
    WriterFailed(String),
    #[error("operation timed out: {0}")]
    Timeout(String),
}

impl From<MetadataError> for LedgerError {
    fn from(e: MetadataError) -> Self {
        LedgerError::Metadata(e.to_string())
    }
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;
