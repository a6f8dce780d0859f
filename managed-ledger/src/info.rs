//! The per-topic info record: which ledgers make up the managed ledger, in
//! order, with their entry counts and sizes, and the topic's properties.
//!
//! Invariants:
//! - ledgers are listed oldest first, ids strictly increasing;
//! - a ledger with `closed == false` may hold more entries than recorded (it
//!   is, or was when its owner died, being written); whoever opens the
//!   managed ledger next recovers it and records its final count;
//! - every change is a compare-and-set on the record's version: losing one
//!   means another owner took the managed ledger over.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One ledger of a managed ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerInfo {
    pub ledger_id: u64,
    /// Entries (ids `0..entries`); for an open ledger those confirmed so far.
    pub entries: u64,
    /// Payload bytes of those entries.
    pub size_bytes: u64,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// True once the count above is final.
    #[serde(default)]
    pub closed: bool,
    /// When it was closed, ms since the Unix epoch (retention counts from it).
    #[serde(default)]
    pub closed_ms: Option<u64>,
}

/// The record stored at [`crate::keys::managed_ledger`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedLedgerInfo {
    #[serde(default)]
    pub ledgers: Vec<LedgerInfo>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl ManagedLedgerInfo {
    /// Checks what the rest of the crate relies on, so a damaged record is
    /// an error rather than a panic or a misread.
    pub fn validate(&self) -> Result<(), String> {
        if self
            .ledgers
            .windows(2)
            .any(|w| w[0].ledger_id >= w[1].ledger_id)
        {
            return Err("ledger ids are not strictly increasing".into());
        }
        if self.ledgers.iter().any(|l| l.ledger_id == 0) {
            return Err("ledger id 0".into());
        }
        Ok(())
    }

    pub fn ledger_mut(&mut self, ledger_id: u64) -> Option<&mut LedgerInfo> {
        self.ledgers.iter_mut().find(|l| l.ledger_id == ledger_id)
    }
}
