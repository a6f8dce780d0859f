//! The Strata offloader: moves closed ledgers to object storage and reads them back.
//!
//! Not built yet: this crate is filled in by the tiered-storage issue. It exists so the
//! workspace already has the layout of DESIGN.md.
