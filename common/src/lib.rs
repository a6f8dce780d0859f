//! Shared pieces of Strata: metadata store, key layout, small helpers.

pub mod cluster;
pub mod dirlock;
pub mod metadata;
pub mod metrics;
pub mod names;
pub mod paths;
pub mod stages;
pub mod sysmem;
