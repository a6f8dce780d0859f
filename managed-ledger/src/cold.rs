//! The cold tier as the managed ledger sees it: a closed ledger may have a
//! verified copy in object storage (written by the offloader). Reads of such
//! a ledger go to that copy first, and to the bookies' copy when the cold
//! one fails and the bookies still have theirs; deleting a ledger (trim,
//! retention, topic deletion) deletes both copies.
//!
//! The managed ledger only knows these traits; `strata-offloader`
//! implements them over its metadata records and its tiered reader.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

/// A failure of the cold tier.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{reason}")]
pub struct ColdError {
    /// The stored data failed verification (checksum, size, structure): it
    /// is never served, and the failure is counted.
    pub corrupt: bool,
    pub reason: String,
}

impl ColdError {
    pub fn new(corrupt: bool, reason: impl Into<String>) -> Self {
        ColdError {
            corrupt,
            reason: reason.into(),
        }
    }
}

/// A readable, verified cold copy of one ledger.
#[async_trait]
pub trait ColdLedger: Send + Sync {
    /// Entries from `first` on, in order, up to `last` (all of them
    /// exist) or `max_bytes` of payload; at least entry `first`, and
    /// possibly fewer than asked (what the store had ready).
    async fn read(
        &self,
        first: u64,
        last: u64,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, ColdError>;
}

/// What the managed ledger needs of the cold tier.
#[async_trait]
pub trait ColdTier: Send + Sync {
    /// The cold copy of `ledger_id` of managed ledger `name`, if a complete,
    /// verified one exists.
    async fn open(
        &self,
        name: &str,
        ledger_id: u64,
    ) -> Result<Option<Arc<dyn ColdLedger>>, ColdError>;

    /// Deletes the cold copy of a ledger (objects, then its record); no
    /// copy is fine.
    async fn delete(&self, name: &str, ledger_id: u64) -> Result<(), ColdError>;
}
