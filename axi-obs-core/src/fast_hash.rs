//! The Fx hash (as in rustc and Firefox): a multiply-rotate hash, much cheaper than SipHash for
//! small keys: integers, addresses, label sets, route paths. One copy for the workspace: the
//! JSON writer's per-callsite key cache here, axi-obs-axum's handle caches and route table,
//! axi-obs-alert's PromQL evaluator. Not resistant to chosen collisions, like Prometheus's own
//! xxhash-based signatures; what is interned from requests is capped.

use std::hash::Hasher;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The hasher.
#[derive(Clone, Copy, Debug, Default)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

/// The first 8 bytes of `b` (at least 8) as a little-endian word.
#[inline]
fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

/// The first 4 bytes of `b` (at least 4) as a little-endian word.
#[inline]
fn half(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u32::from_le_bytes(w)
}

impl Hasher for FxHasher {
    /// Keys here are mostly short (route templates, label values, JSON keys): up to 16 bytes
    /// are read as at most two overlapping words, without a loop or a padded copy of the
    /// tail. The length is mixed in last, so keys that the overlap reads alike (`"aaaaaaaa"`
    /// and `"aaaaaaaaa"`) still differ.
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let len = bytes.len();
        if len > 16 {
            let mut chunks = bytes.chunks_exact(8);
            for c in &mut chunks {
                self.add(word(c));
            }
            if !chunks.remainder().is_empty() {
                self.add(word(&bytes[len - 8..]));
            }
        } else if len >= 8 {
            self.add(word(&bytes[..8]));
            self.add(word(&bytes[len - 8..]));
        } else if len >= 4 {
            self.add(u64::from(half(&bytes[..4])) << 32 | u64::from(half(&bytes[len - 4..])));
        } else if len > 0 {
            self.add(
                u64::from(bytes[0]) << 16
                    | u64::from(bytes[len / 2]) << 8
                    | u64::from(bytes[len - 1]),
            );
        }
        self.add(len as u64);
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    /// Folded so the low bits that pick a bucket depend on every bit of the key (addresses are
    /// aligned, their low bits zero). The fold is a bijection: it adds no collisions.
    fn finish(&self) -> u64 {
        self.hash ^ (self.hash >> 32)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::Hasher;

    use super::FxHasher;

    fn hash(bytes: &[u8]) -> u64 {
        let mut h = FxHasher::default();
        h.write(bytes);
        h.finish()
    }

    #[test]
    fn every_byte_and_the_length_count() {
        // Each length on both sides of the short paths (0, 1..=3, 4..=7, 8..=16, longer).
        for len in 0..=40usize {
            let key: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let base = hash(&key);
            assert_eq!(base, hash(&key.clone()), "deterministic, len {len}");
            for i in 0..len {
                let mut changed = key.clone();
                changed[i] ^= 0x20;
                assert_ne!(hash(&changed), base, "byte {i} of {len} is read");
            }
            let mut longer = key.clone();
            longer.push(key.last().copied().unwrap_or(b'a'));
            assert_ne!(hash(&longer), base, "length {len} vs {}", len + 1);
        }
        // Keys the overlapping reads see alike.
        assert_ne!(hash(b"aaaaaaaa"), hash(b"aaaaaaaaa"));
        assert_ne!(hash(b"aaaa"), hash(b"aaaaa"));
        assert_ne!(hash(b"a"), hash(b"aa"));
    }
}
