//! The Strata broker: Pulsar binary protocol, managed ledgers, cursors, dispatchers, admin REST.
//!
//! Not built yet: this crate is filled in by the broker-core issue. It exists so the
//! workspace already has the layout of DESIGN.md.
