//! The key layout of the metadata store. Every key Strata writes is built here.

/// Root of every Strata key.
pub const ROOT: &str = "/strata";

/// Prefix of bookie registrations (session-bound keys).
pub const BOOKIES: &str = "/strata/bookies/";

/// Registration key of one bookie.
pub fn bookie(bookie_id: &str) -> String {
    format!("{BOOKIES}{bookie_id}")
}

/// Prefix of ledger metadata records.
pub const LEDGERS: &str = "/strata/ledgers/";

/// Metadata key of one ledger; zero-padded so keys sort by id.
pub fn ledger(ledger_id: u64) -> String {
    format!("{LEDGERS}{ledger_id:020}")
}

/// The ledger-id allocator: holds the next id to hand out.
pub const LEDGER_ID_COUNTER: &str = "/strata/ledger-id-next";

/// Parses the id back out of a [`ledger`] key.
pub fn ledger_id_of(key: &str) -> Option<u64> {
    key.strip_prefix(LEDGERS)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_keys_sort_by_id_and_round_trip() {
        assert!(ledger(9) < ledger(10));
        assert_eq!(ledger_id_of(&ledger(123456)), Some(123456));
        assert_eq!(ledger_id_of("/strata/ledgers/x"), None);
    }
}
