//! Metadata-store keys of the cold tier.
//!
//! ```text
//! /strata/offload/ledgers/<enc(ml)>/<ledger:020>   one ledger's offload record (JSON, CAS)
//! /strata/offload/locks/<enc(ml)>                  who offloads a topic now (session key)
//! /strata/offload/requests/<enc(ml)>               a manual offload request (JSON)
//! /strata/offload/status/<enc(ml)>                 the last offload run of a topic (JSON)
//! ```
//!
//! `enc` is the managed-ledger key escaping (`/` → `%2F`), so one topic's
//! records never show up under another's prefix.

use strata_managed_ledger::keys::{decode, encode};

pub const LEDGERS: &str = "/strata/offload/ledgers/";
pub const LOCKS: &str = "/strata/offload/locks/";
pub const REQUESTS: &str = "/strata/offload/requests/";
pub const STATUS: &str = "/strata/offload/status/";

/// Prefix of the offload records of one managed ledger.
pub fn records_of(managed_ledger: &str) -> String {
    format!("{LEDGERS}{}/", encode(managed_ledger))
}

/// Offload record of one ledger; zero-padded so a topic's records sort by id.
pub fn record(managed_ledger: &str, ledger_id: u64) -> String {
    format!("{}{ledger_id:020}", records_of(managed_ledger))
}

/// (managed ledger, ledger id) of a [`record`] key.
pub fn parse_record(key: &str) -> Option<(String, u64)> {
    let rest = key.strip_prefix(LEDGERS)?;
    let (ml, id) = rest.split_once('/')?;
    Some((decode(ml)?, id.parse().ok()?))
}

pub fn lock(managed_ledger: &str) -> String {
    format!("{LOCKS}{}", encode(managed_ledger))
}

pub fn request(managed_ledger: &str) -> String {
    format!("{REQUESTS}{}", encode(managed_ledger))
}

pub fn status(managed_ledger: &str) -> String {
    format!("{STATUS}{}", encode(managed_ledger))
}

/// The managed ledger a request or status key is about.
pub fn managed_ledger_of(prefix: &str, key: &str) -> Option<String> {
    decode(key.strip_prefix(prefix)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_do_not_overlap() {
        let ml = "public/default/persistent/t";
        assert_eq!(parse_record(&record(ml, 42)), Some((ml.to_string(), 42)));
        assert!(record(ml, 9) < record(ml, 10));
        assert!(!record("a/b/persistent/tt", 1).starts_with(&records_of("a/b/persistent/t")));
        assert_eq!(
            managed_ledger_of(REQUESTS, &request(ml)).as_deref(),
            Some(ml)
        );
        assert_eq!(parse_record("/strata/offload/ledgers/x/notanumber"), None);
    }
}
