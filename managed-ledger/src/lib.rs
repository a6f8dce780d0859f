//! Managed ledgers: a topic's chain of ledgers, its entry cache and its cursors.
//!
//! A [`ManagedLedger`] is the storage of one topic: an ordered chain of
//! ledgers (only the newest one is written), recorded in a per-topic info
//! record in the metadata store. A [`ManagedCursor`] is a subscription's
//! progress through it. A [`ManagedLedgerFactory`] owns the entry cache that
//! all its managed ledgers share and hands out one instance per name.

mod config;
pub mod cursor;
mod error;
mod factory;
pub mod info;
pub mod keys;
pub mod ledger;
mod position;

pub use config::ManagedLedgerConfig;
pub use cursor::ManagedCursor;
pub use error::{ManagedLedgerError, Result};
pub use factory::ManagedLedgerFactory;
pub use info::{LedgerInfo, ManagedLedgerInfo, OffloadInfo};
pub use ledger::{AddFuture, ManagedLedger, ManagedLedgerStats};
pub use position::{Entry, InitialPosition, Position};
