//! CRC32C: reading bytes ([`crc32c`], [`crc32c_append`]), and the CRC of a
//! concatenation from the CRCs of its parts, without reading the bytes again
//! ([`combine`]).
//!
//! Reading uses two implementations. From [`FOLD_FROM`] bytes on, crc-fast's
//! (the CRC32 instruction on three streams fused with carry-less multiply
//! folding): on the development VM ~1.4× the `crc32c` crate's speed at
//! 1 KiB and ~2× at 64 KiB. Below that the `crc32c` crate's, whose fixed cost
//! per call is lower. Every entry's payload is read once by its writer and
//! once by each bookie, and every Pulsar frame by its sender and receiver.
//!
//! Combining:
//!
//! A CRC is the remainder of the message (as a polynomial over GF(2)) modulo
//! the CRC polynomial, so appending `n` bytes to `a` multiplies `a`'s
//! remainder by `x^(8n)`. With the usual pre- and post-inversion the two
//! inversions cancel out, and
//!
//! ```text
//! crc(a || b) = crc(a) · x^(8·len(b))  mod P   xor   crc(b)
//! ```
//!
//! `x^(8n) mod P` is built from a table of `x^(2^k) mod P` in one product
//! per set bit of `n`. Each product is 32 shift-and-xor steps, so combining
//! costs well under a microsecond for any length, where reading 1 MiB again
//! costs tens of microseconds. `crc32c::crc32c_combine` gives the same
//! result with the older matrix method, ~20× slower.
//!
//! Everything here is in the reflected bit order CRC32C uses: bit 31 holds
//! the coefficient of `x^0`.

/// Inputs at least this long are read by crc-fast (see the module docs).
pub const FOLD_FROM: usize = 256;

/// The CRC32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    if data.len() >= FOLD_FROM {
        crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
    } else {
        ::crc32c::crc32c(data)
    }
}

/// The CRC32C of `a || data`, given `crc` = the CRC32C of `a`.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    if data.len() >= FOLD_FROM {
        // crc-fast's state is the register before the final inversion.
        let mut d = crc_fast::Digest::new_with_init_state(
            crc_fast::CrcAlgorithm::Crc32Iscsi,
            u64::from(!crc),
        );
        d.update(data);
        d.finalize() as u32
    } else {
        ::crc32c::crc32c_append(crc, data)
    }
}

/// The CRC32C (Castagnoli) polynomial, reflected.
const POLY: u32 = 0x82F6_3B78;

/// `a · b mod P`.
const fn mul(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = 1u32 << 31;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        // b · x
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        bit >>= 1;
    }
    product
}

/// `x^(2^k) mod P` for k in 0..64.
const POWERS: [u32; 64] = {
    let mut t = [0u32; 64];
    // x^1
    t[0] = 1 << 30;
    let mut k = 1;
    while k < 64 {
        t[k] = mul(t[k - 1], t[k - 1]);
        k += 1;
    }
    t
};

/// `x^(8·n) mod P`: what appending `n` bytes multiplies a remainder by.
fn shift_bytes(n: u64) -> u32 {
    // x^0
    let mut p = 1u32 << 31;
    // x^(8n) = product of x^(2^(k+3)) over the set bits k of n.
    let mut k = 3;
    let mut n = n;
    while n != 0 {
        if n & 1 != 0 {
            p = mul(POWERS[k % 64], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// The CRC32C of `a || b` from `crc1 = crc32c(a)`, `crc2 = crc32c(b)` and
/// `len2 = b.len()`.
pub fn combine(crc1: u32, crc2: u32, len2: u64) -> u32 {
    if len2 == 0 {
        return crc1;
    }
    mul(shift_bytes(len2), crc1) ^ crc2
}

/// `crc` extended by `bytes`: combined from `known = crc32c(bytes)` when
/// the caller has it, read from `bytes` otherwise. `known` must be right.
pub fn append(crc: u32, bytes: &[u8], known: Option<u32>) -> u32 {
    match known {
        Some(k) => combine(crc, k, bytes.len() as u64),
        None => crc32c_append(crc, bytes),
    }
}

/// Below this many bytes reading them again is as cheap as a combine:
/// callers that could combine may as well compute directly.
pub const COMBINE_WORTH_IT: usize = 8 << 10;

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that differ with the offset and the seed.
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        (0..n as u64)
            .map(|i| ((i ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
            .collect()
    }

    #[test]
    fn combining_equals_reading_the_concatenation() {
        let lengths = [
            0usize,
            1,
            2,
            3,
            7,
            8,
            9,
            63,
            64,
            65,
            1000,
            1024,
            4095,
            4096,
            65_536,
            65_537,
            1 << 20,
            3 << 20,
        ];
        for (i, &la) in lengths.iter().enumerate() {
            for (j, &lb) in lengths.iter().enumerate() {
                if la + lb > 4 << 20 {
                    continue;
                }
                let a = bytes(la, i as u64 + 1);
                let b = bytes(lb, 100 + j as u64);
                let whole = crc32c::crc32c_append(crc32c::crc32c(&a), &b);
                let combined = combine(crc32c::crc32c(&a), crc32c::crc32c(&b), lb as u64);
                assert_eq!(combined, whole, "len a {la}, len b {lb}");
            }
        }
    }

    /// Both readers give the `crc32c` crate's CRCs, for every length
    /// around the switch and the folding's block sizes, from any start.
    #[test]
    fn reading_agrees_with_the_crc32c_crate() {
        let mut lengths: Vec<usize> = (0..600).collect();
        lengths.extend([1023, 1024, 1025, 4096, 65_535, 65_536, 65_537, 1 << 20]);
        for &n in &lengths {
            let data = bytes(n + 3, n as u64);
            // Unaligned starts too.
            for skew in [0, 1, 3] {
                let d = &data[skew..skew + n];
                assert_eq!(crc32c(d), ::crc32c::crc32c(d), "length {n} skew {skew}");
                for init in [0, 1, 0xdead_beef, u32::MAX] {
                    assert_eq!(
                        crc32c_append(init, d),
                        ::crc32c::crc32c_append(init, d),
                        "length {n} skew {skew} from {init:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn append_reads_or_combines_alike() {
        let (a, b) = (bytes(300, 1), bytes(20_000, 2));
        let whole = crc32c::crc32c_append(crc32c::crc32c(&a), &b);
        let head = crc32c::crc32c(&a);
        assert_eq!(append(head, &b, None), whole);
        assert_eq!(append(head, &b, Some(crc32c::crc32c(&b))), whole);
    }

    #[test]
    fn agrees_with_the_crc32c_crates_combine() {
        for n in [1usize, 17, 1 << 10, (1 << 16) + 3, 5 << 20] {
            let (c1, c2) = (0xDEAD_BEEF, 0x0123_4567);
            assert_eq!(combine(c1, c2, n as u64), crc32c::crc32c_combine(c1, c2, n));
        }
    }

    #[test]
    fn a_wrong_part_gives_a_wrong_whole() {
        let a = bytes(5000, 7);
        let b = bytes(70_000, 8);
        let whole = crc32c::crc32c_append(crc32c::crc32c(&a), &b);
        let good = crc32c::crc32c(&b);
        assert_ne!(combine(crc32c::crc32c(&a), good ^ 1, b.len() as u64), whole);
        assert_ne!(combine(crc32c::crc32c(&a), good, b.len() as u64 + 1), whole);
    }
}
