//! Test harness: starts real `strata` processes (and etcd) on ephemeral ports.

pub mod admin;
pub mod bookie;
pub mod etcd;
pub mod fault;
pub mod garage;
pub mod process;
pub mod python;
pub mod stall_proxy;
pub mod standalone;
