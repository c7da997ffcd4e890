//! HyperLogLog (Flajolet et al., 2007) with precision 14: 16 384 one-byte registers (16 KiB)
//! estimate the number of distinct values seen with a standard error of
//! 1.04 / √16384 ≈ 0.81 %, whatever their number. Small counts use linear counting, as the
//! paper recommends; the 64-bit hash needs no large-range correction.
//!
//! ```
//! use log_shipper::hll::HyperLogLog;
//!
//! let mut h = HyperLogLog::new();
//! for i in 0..10_000 {
//!     h.insert(format!("198.51.100.{i}").as_bytes());
//!     h.insert(format!("198.51.100.{i}").as_bytes()); // seen twice, counted once
//! }
//! let e = h.estimate();
//! assert!((e - 10_000.0).abs() < 300.0, "{e}");
//! ```

/// Bits of the hash that pick the register.
pub const PRECISION: u32 = 14;
const REGISTERS: usize = 1 << PRECISION;

/// A HyperLogLog sketch with [`PRECISION`] 14. See the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HyperLogLog {
    registers: Box<[u8]>,
}

impl Default for HyperLogLog {
    fn default() -> Self {
        Self::new()
    }
}

impl HyperLogLog {
    /// An empty sketch (16 KiB).
    pub fn new() -> Self {
        Self {
            registers: vec![0u8; REGISTERS].into_boxed_slice(),
        }
    }

    /// Adds a value.
    pub fn insert(&mut self, value: &[u8]) {
        self.insert_hash(hash64(value));
    }

    /// Adds a value by its 64-bit hash (which must be well mixed in every bit).
    pub fn insert_hash(&mut self, hash: u64) {
        let index = (hash >> (64 - PRECISION)) as usize;
        // The remaining 50 bits, with a guard bit so the rank is at most 51.
        let rest = (hash << PRECISION) | (1 << (PRECISION - 1));
        let rank = (rest.leading_zeros() + 1) as u8;
        let r = &mut self.registers[index];
        if rank > *r {
            *r = rank;
        }
    }

    /// Whether nothing was added since it was made or cleared.
    pub fn is_empty(&self) -> bool {
        self.registers.iter().all(|r| *r == 0)
    }

    /// Forgets everything (keeps the memory).
    pub fn clear(&mut self) {
        self.registers.fill(0);
    }

    /// Adds everything `other` saw (the sketch of the union).
    pub fn merge(&mut self, other: &HyperLogLog) {
        for (a, b) in self.registers.iter_mut().zip(other.registers.iter()) {
            *a = (*a).max(*b);
        }
    }

    /// The estimated number of distinct values added.
    pub fn estimate(&self) -> f64 {
        let m = REGISTERS as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let mut sum = 0.0;
        let mut zeros = 0usize;
        for r in self.registers.iter() {
            sum += 2f64.powi(-i32::from(*r));
            if *r == 0 {
                zeros += 1;
            }
        }
        let raw = alpha * m * m / sum;
        if raw <= 2.5 * m && zeros > 0 {
            // Linear counting.
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }
}

/// FNV-1a 64 of `bytes`, then the MurmurHash3 64-bit finalizer so that every output bit
/// depends on every input bit (FNV alone mixes the high bits, which pick the register,
/// poorly for short keys).
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relative_error(n: usize) -> f64 {
        let mut h = HyperLogLog::new();
        for i in 0..n {
            // Client addresses as nginx writes them.
            let v = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            h.insert(v.as_bytes());
        }
        (h.estimate() - n as f64).abs() / n as f64
    }

    #[test]
    fn estimates_100k_distinct_addresses_within_3_percent() {
        let e = relative_error(100_000);
        assert!(e < 0.03, "relative error {e}");
    }

    #[test]
    fn small_and_large_counts_are_close_too() {
        for n in [1, 10, 1_000, 20_000, 50_000, 1_000_000] {
            let e = relative_error(n);
            assert!(e < 0.03, "n = {n}: relative error {e}");
        }
    }

    #[test]
    fn repeats_merge_and_clear() {
        let mut a = HyperLogLog::new();
        assert!(a.is_empty());
        assert_eq!(a.estimate(), 0.0);
        for _ in 0..1000 {
            a.insert(b"203.0.113.7");
        }
        assert!((a.estimate() - 1.0).abs() < 0.01, "{}", a.estimate());
        let mut b = HyperLogLog::new();
        for i in 0..5000 {
            b.insert(format!("b{i}").as_bytes());
        }
        for i in 0..5000 {
            a.insert(format!("a{i}").as_bytes());
        }
        a.merge(&b);
        assert!(
            (a.estimate() - 10_001.0).abs() / 10_001.0 < 0.03,
            "{}",
            a.estimate()
        );
        a.clear();
        assert!(a.is_empty());
    }

    #[test]
    fn ranks_cover_the_whole_hash() {
        let mut h = HyperLogLog::new();
        // Index 0 and all remaining bits zero: the guard bit caps the rank at 51.
        h.insert_hash(0);
        assert_eq!(h.registers[0], 51);
        h.insert_hash(u64::MAX);
        assert_eq!(h.registers[REGISTERS - 1], 1);
    }
}
