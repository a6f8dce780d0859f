//! The records the offloader keeps in the metadata store (see [`crate::keys`]).
//!
//! A ledger's offload record is written **before** any object is uploaded
//! (state `uploading`, with the upload's uuid and object base), so every
//! object Strata writes is referred to by a record from the moment it
//! exists; reconciliation deletes only objects no record refers to. The
//! record turns `complete` only after the objects were read back and
//! verified; only then do reads use them and may the bookies' copy go.

use serde::{Deserialize, Serialize};

use crate::upload::OffloadedObjects;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffloadState {
    /// Objects are being written; they may be partial. Never read.
    Uploading,
    /// Uploaded, read back and verified.
    Complete,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffloadRecord {
    pub managed_ledger: String,
    pub ledger_id: u64,
    pub state: OffloadState,
    /// The object store (canonical URL, no secrets) holding the objects.
    pub store_url: String,
    /// Object path of the ledger's directory: `…/{ledger}-{uuid}`.
    pub base: String,
    pub uuid: String,
    /// Who wrote it (offloader id).
    pub offloader: String,
    pub started_ms: u64,
    /// Filled in when the upload is verified.
    #[serde(default)]
    pub objects: Option<OffloadedObjects>,
    #[serde(default)]
    pub completed_ms: Option<u64>,
    /// When the bookies' copy was deleted (after the deletion lag).
    #[serde(default)]
    pub bookie_deleted_ms: Option<u64>,
    /// When the objects were last re-verified by a scrub.
    #[serde(default)]
    pub scrubbed_ms: Option<u64>,
}

impl OffloadRecord {
    pub fn is_complete(&self) -> bool {
        self.state == OffloadState::Complete && self.objects.is_some()
    }

    /// Bytes this ledger holds on bookies (0 once their copy is deleted).
    pub fn hot_bytes(&self, payload_bytes: u64) -> u64 {
        if self.bookie_deleted_ms.is_some() {
            0
        } else {
            payload_bytes
        }
    }

    /// Bytes of objects in the store.
    pub fn cold_bytes(&self) -> u64 {
        self.objects
            .as_ref()
            .map_or(0, |o| o.data_size + o.index_size)
    }
}

/// A manual offload request (`PUT …/offload`): offload every ledger before
/// `ledger_id` (the ledger holding the message id given).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffloadRequest {
    pub ledger_id: u64,
    pub entry_id: u64,
    pub requested_ms: u64,
}

/// Pulsar's `LongRunningProcessStatus.Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    NotRun,
    Running,
    Success,
    Error,
}

/// The last manual offload run of a topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffloadStatus {
    pub status: RunStatus,
    #[serde(default)]
    pub last_error: String,
    /// The request this is about.
    pub request: OffloadRequest,
    /// Ledgers to offload in this run and done so far.
    #[serde(default)]
    pub ledgers_total: u64,
    #[serde(default)]
    pub ledgers_done: u64,
    /// Payload bytes to offload in this run and uploaded so far.
    #[serde(default)]
    pub bytes_total: u64,
    #[serde(default)]
    pub bytes_done: u64,
    pub updated_ms: u64,
}
