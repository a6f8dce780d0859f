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

/// Prefix of tenant records: `/strata/tenants/{tenant}`.
pub const TENANTS: &str = "/strata/tenants/";

/// Record of one tenant.
pub fn tenant(tenant: &str) -> String {
    format!("{TENANTS}{tenant}")
}

/// Prefix of namespace records: `/strata/namespaces/{tenant}/{namespace}`.
pub const NAMESPACES: &str = "/strata/namespaces/";

/// Record (policies) of one namespace.
pub fn namespace(tenant: &str, namespace: &str) -> String {
    format!("{NAMESPACES}{tenant}/{namespace}")
}

/// Prefix of partitioned-topic records.
pub const PARTITIONED_TOPICS: &str = "/strata/partitioned-topics/";

/// Record of a partitioned topic (its partition count), by persistence name.
pub fn partitioned_topic(persistence_name: &str) -> String {
    format!("{PARTITIONED_TOPICS}{persistence_name}")
}

/// Prefix of bundle ownership keys (session-bound).
pub const OWNERSHIP: &str = "/strata/ownership/";

/// Ownership key of one namespace bundle.
pub fn bundle_owner(tenant: &str, namespace: &str, bundle: &str) -> String {
    format!("{OWNERSHIP}{tenant}/{namespace}/{bundle}")
}

/// Prefix of broker registrations (session-bound).
pub const BROKERS: &str = "/strata/brokers/";

/// Registration key of one broker.
pub fn broker(broker_id: &str) -> String {
    format!("{BROKERS}{broker_id}")
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
