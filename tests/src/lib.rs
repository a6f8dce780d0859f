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

/// This crate's directory: where cargo or nextest says it is when the test
/// runs, else where it was when the test was built. cargo does not rebuild
/// a workspace that only moved, so a test binary in a shared target
/// directory may come from a build of another checkout, whose compiled-in
/// `CARGO_MANIFEST_DIR` names that checkout.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}
