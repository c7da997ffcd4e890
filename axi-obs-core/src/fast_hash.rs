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

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
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
