//! Lower-case hex for ids: trace and span ids on log lines here, request ids in axi-obs-axum.
//!
//! Eight digits are made at once in one 64-bit word instead of a digit loop: a fraction of
//! the instructions, and no table to keep in cache. A log line inside a span writes 48 digits.

/// The 16 lower-case hex digits of `v`, most significant first.
#[inline]
pub fn hex16(v: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&hex8((v >> 32) as u32).to_be_bytes());
    out[8..].copy_from_slice(&hex8(v as u32).to_be_bytes());
    out
}

/// The 8 lower-case hex digits of `v` as one word, the most significant digit in the top byte
/// (a 128-bit version of this measured slower: x86-64 shifts it in halves).
#[inline]
fn hex8(v: u32) -> u64 {
    const fn every(byte: u8) -> u64 {
        u64::from_ne_bytes([byte; 8])
    }
    // Spread each nibble into its own byte.
    let mut x = u64::from(v);
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x << 4)) & every(0x0f);
    // 1 in each byte holding 10..=15: adding 6 carries those into bit 4, never across bytes.
    let letters = ((x + every(6)) >> 4) & every(1);
    x + every(b'0') + letters * u64::from(b'a' - b'0' - 10)
}

/// Appends a trace id (`N` = 16) or span id (`N` = 8) as lower-case hex: 2 `N` digits.
pub(crate) fn push_hex<const N: usize>(buf: &mut String, id: [u8; N]) {
    // Through one stack buffer and one copy; ids longer than 16 bytes are not made.
    let mut digits = [0u8; 32];
    let mut len = 0;
    for word in id.chunks(8) {
        let mut be = [0u8; 8];
        be[8 - word.len()..].copy_from_slice(word);
        let hex = hex16(u64::from_be_bytes(be));
        let n = 2 * word.len();
        if let Some(slot) = digits.get_mut(len..len + n) {
            slot.copy_from_slice(&hex[16 - n..]);
            len += n;
        }
    }
    // Hex digits are ASCII.
    buf.push_str(std::str::from_utf8(&digits[..len]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex16_matches_the_formatter() {
        let edges = [
            0,
            1,
            9,
            10,
            15,
            16,
            0x0a0b_0c0d_0e0f,
            0x9999_9999,
            u64::MAX,
            1 << 63,
        ];
        let mut x = 0x0123_4567_89ab_cdef_u64;
        let random = std::iter::repeat_with(move || {
            // splitmix64 steps: deterministic, every bit pattern class.
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        });
        for v in edges.into_iter().chain(random.take(10_000)) {
            assert_eq!(hex16(v), *format!("{v:016x}").as_bytes(), "{v:#x}");
        }
    }

    #[test]
    fn push_hex_writes_ids_and_other_lengths() {
        fn check<const N: usize>(id: [u8; N]) {
            let mut buf = String::from("x");
            push_hex(&mut buf, id);
            let want: String = id.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(buf, format!("x{want}"), "{N} bytes");
        }
        let bytes: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xa5);
        check(bytes);
        check::<8>(bytes[..8].try_into().unwrap());
        check::<3>(bytes[..3].try_into().unwrap());
        check::<11>(bytes[5..].try_into().unwrap());
        check([0u8; 0]);
    }
}
