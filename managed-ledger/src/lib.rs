//! Managed ledgers: a topic's chain of ledgers, its entry cache and its cursors.
//!
//! A [`ManagedLedger`] is the storage of one topic: an ordered chain of
//! ledgers of which only the newest is written, listed in a per-topic info
//! record in the metadata store ([`keys`] has the layout). A
//! [`ManagedCursor`] is a subscription's (durable) or a reader's
//! (non-durable) progress through it. A [`ManagedLedgerFactory`] owns the
//! entry cache its managed ledgers share and hands out one instance per
//! name.
//!
//! Positions and their invariants:
//! - a [`Position`] is (ledger id, entry id); ledger ids grow, so the
//!   derived order is log order; [`Position::EARLIEST`] precedes all;
//! - `last_confirmed`: the newest entry whose add was acknowledged with
//!   every earlier entry acknowledged too; readers never go past it;
//! - a cursor's mark-delete position: every entry at or before it is
//!   acknowledged; its individually acknowledged entries are all after it;
//! - a cursor's read position: the next entry it hands out, never at or
//!   before the mark-delete position.
//!
//! Ownership: whoever opens a managed ledger recovers (fences) the ledgers
//! its previous owner left open; every change of the info record and of a
//! cursor record is a compare-and-set, and losing one — or a ledger writer
//! finding itself fenced — fences this instance: it stops writing and its
//! operations fail with [`ManagedLedgerError::Fenced`].
//!
//! ```text
//! let factory = ManagedLedgerFactory::new(client, ManagedLedgerConfig::default(), 64 << 20);
//! let ml = factory.open("public/default/persistent/t").await?;
//! let pos = ml.add_entry(Bytes::from("m")).await?.await?;
//! let sub = ml.open_cursor("sub", InitialPosition::Earliest).await?;
//! let entries = sub.read_entries(100, 1 << 20).await?;
//! sub.ack(&[entries[0].position]);
//! ```

mod cache;
pub mod cold;
mod config;
mod core;
pub mod cursor;
mod cursor_state;
mod error;
mod factory;
pub mod info;
pub mod keys;
pub mod ledger;
mod position;
pub mod range_set;
mod read;
mod view;
mod write;

pub use cache::CacheStats;
pub use cold::{ColdError, ColdLedger, ColdTier};
pub use config::ManagedLedgerConfig;
pub use cursor::ManagedCursor;
pub use cursor_state::{BatchAck, CursorRecord, MAX_PERSISTED_RANGES};
pub use error::{ManagedLedgerError, Result};
pub use factory::ManagedLedgerFactory;
pub use info::{LedgerInfo, ManagedLedgerInfo};
pub use ledger::{AddFuture, ManagedLedger, ManagedLedgerStats};
pub use position::{Entry, InitialPosition, Position};
