//! Records that describe cluster members in the metadata store.

use serde::{Deserialize, Serialize};

/// Whether a bookie takes adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookieState {
    Writable,
    ReadOnly,
}

/// A bookie's registration, held under `paths::bookie(id)` by its session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookieRegistration {
    pub bookie_id: String,
    /// `host:port` of its gRPC server.
    pub address: String,
    pub state: BookieState,
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub version: String,
}
