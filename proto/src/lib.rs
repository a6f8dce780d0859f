//! Strata wire formats. `bookie` is the bookie gRPC API used by the ledger client.

pub mod bookie {
    #![allow(clippy::all)]
    tonic::include_proto!("strata.bookie.v1");
}

/// The CRC32C every entry carries, computed by the writer and checked by the
/// bookie on add and by the reader on read. It covers the entry's identity and
/// position as well as its bytes, so a misplaced entry fails the check too.
pub fn entry_crc32c(ledger_id: u64, entry_id: u64, cumulative_length: u64, payload: &[u8]) -> u32 {
    let mut header = [0u8; 24];
    header[..8].copy_from_slice(&ledger_id.to_be_bytes());
    header[8..16].copy_from_slice(&entry_id.to_be_bytes());
    header[16..].copy_from_slice(&cumulative_length.to_be_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&header), payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_crc_covers_identity_and_bytes() {
        let base = entry_crc32c(1, 2, 3, b"abc");
        assert_ne!(base, entry_crc32c(9, 2, 3, b"abc"));
        assert_ne!(base, entry_crc32c(1, 9, 3, b"abc"));
        assert_ne!(base, entry_crc32c(1, 2, 9, b"abc"));
        assert_ne!(base, entry_crc32c(1, 2, 3, b"abd"));
        assert_eq!(base, entry_crc32c(1, 2, 3, b"abc"));
    }
}
