//! Gorilla-style compressed chunks (Facebook's Gorilla paper, as Prometheus's XOR chunks):
//! timestamps as delta-of-delta, values XOR-ed with the previous one. Regular 15 s scrapes of
//! slowly changing values cost about 1-2 bytes per sample instead of 16.

use super::value::Point;

/// Samples per sealed chunk, as Prometheus's head chunks.
pub(crate) const CHUNK_SAMPLES: usize = 120;

/// An append-only bit stream.
#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full or there is none).
    used: u8,
}

impl BitWriter {
    fn push_bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.bytes.push(0);
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 0x80 >> self.used;
        }
        self.used = (self.used + 1) % 8;
    }

    /// Appends the low `n` bits of `value`, most significant first, a byte at a time.
    fn push_bits(&mut self, value: u64, n: u8) {
        let mut left = n;
        while left > 0 {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let free = 8 - self.used;
            let take = free.min(left);
            let part = ((value >> (left - take)) & ((1u64 << take) - 1)) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= part << (free - take);
            self.used = (self.used + take) % 8;
            left -= take;
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> bool {
        let b = self.bytes.get(self.pos / 8).copied().unwrap_or(0);
        let bit = (b >> (7 - self.pos % 8)) & 1 == 1;
        self.pos += 1;
        bit
    }

    /// Reads `n` bits, most significant first, a byte at a time.
    fn bits(&mut self, n: u8) -> u64 {
        let mut v = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.bytes.get(self.pos / 8).copied().unwrap_or(0);
            let offset = (self.pos % 8) as u8;
            let avail = 8 - offset;
            let take = avail.min(left);
            let part = (byte >> (avail - take)) & (((1u16 << take) - 1) as u8);
            v = (v << take) | u64::from(part);
            self.pos += usize::from(take);
            left -= take;
        }
        v
    }
}

/// A compressed run of points (oldest first, strictly increasing timestamps), appendable
/// until it holds [`CHUNK_SAMPLES`].
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    pub(crate) count: u16,
    w: BitWriter,
    prev_delta: i64,
    prev_v: u64,
    leading: u8,
    trailing: u8,
    /// The decoder's state after the middle point, so windows in the newer half (rules
    /// evaluating "now") skip decoding the older half.
    checkpoint: Option<Box<Checkpoint>>,
}

#[derive(Debug, Clone)]
struct Checkpoint {
    /// Points before the resume position.
    index: u16,
    /// Bit position after the checkpoint's point.
    pos: usize,
    t: i64,
    v: u64,
    delta: i64,
    leading: u8,
    trailing: u8,
}

/// Where the checkpoint is taken.
const CHECKPOINT_AT: u16 = (CHUNK_SAMPLES / 2) as u16;

/// Delta-of-delta buckets: (prefix bits, prefix length, value bits).
const DOD_BUCKETS: [(u64, u8, u8); 4] = [
    (0b10, 2, 14),
    (0b110, 3, 17),
    (0b1110, 4, 20),
    (0b1111, 4, 64),
];

impl Chunk {
    /// A chunk holding one point.
    pub(crate) fn new(first: Point) -> Chunk {
        let mut w = BitWriter::default();
        w.push_bits(first.t as u64, 64);
        w.push_bits(first.v.to_bits(), 64);
        Chunk {
            min_t: first.t,
            max_t: first.t,
            count: 1,
            w,
            prev_delta: 0,
            prev_v: first.v.to_bits(),
            leading: u8::MAX,
            trailing: 0,
            checkpoint: None,
        }
    }

    /// Whether it holds [`CHUNK_SAMPLES`] points.
    pub(crate) fn is_full(&self) -> bool {
        usize::from(self.count) >= CHUNK_SAMPLES
    }

    /// Releases spare capacity once the chunk is full.
    pub(crate) fn seal(&mut self) {
        self.w.bytes.shrink_to_fit();
    }

    /// Appends a point newer than `max_t`.
    pub(crate) fn push(&mut self, p: Point) {
        let w = &mut self.w;
        let delta = p.t - self.max_t;
        let dod = delta.wrapping_sub(self.prev_delta);
        if dod == 0 {
            w.push_bit(false);
        } else {
            let (prefix, plen, bits) = DOD_BUCKETS
                .iter()
                .copied()
                .find(|&(_, _, bits)| bits == 64 || fits(dod, bits))
                .unwrap_or(DOD_BUCKETS[3]);
            w.push_bits(prefix, plen);
            let mask = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            w.push_bits(dod as u64 & mask, bits);
        }
        self.prev_delta = delta;
        self.max_t = p.t;

        let v = p.v.to_bits();
        let xor = v ^ self.prev_v;
        if xor == 0 {
            w.push_bit(false);
        } else {
            w.push_bit(true);
            let lz = (xor.leading_zeros() as u8).min(31);
            let tz = xor.trailing_zeros() as u8;
            if self.leading != u8::MAX && lz >= self.leading && tz >= self.trailing {
                w.push_bit(false);
                let sig = 64 - self.leading - self.trailing;
                w.push_bits(xor >> self.trailing, sig);
            } else {
                w.push_bit(true);
                self.leading = lz;
                self.trailing = tz;
                let sig = 64 - lz - tz;
                w.push_bits(u64::from(lz), 5);
                // 64 significant bits are written as 0 (6 bits cannot hold 64).
                w.push_bits(u64::from(sig) & 0x3f, 6);
                w.push_bits(xor >> tz, sig);
            }
        }
        self.prev_v = v;
        self.count += 1;
        if self.count == CHECKPOINT_AT {
            let bits = self.w.bytes.len() * 8 - usize::from((8 - self.w.used) % 8);
            let known = self.leading != u8::MAX;
            self.checkpoint = Some(Box::new(Checkpoint {
                index: self.count,
                pos: bits,
                t: self.max_t,
                v: self.prev_v,
                delta: self.prev_delta,
                leading: if known { self.leading } else { 0 },
                trailing: if known { self.trailing } else { 0 },
            }));
        }
    }

    /// Compresses `points` (at least one, timestamps strictly increasing).
    #[cfg(test)]
    pub(crate) fn encode(points: &[Point]) -> Chunk {
        let mut c = Chunk::new(points[0]);
        for p in &points[1..] {
            c.push(*p);
        }
        c
    }

    /// Appends the points with `start < t <= end` to `out`.
    pub(crate) fn decode_into(&self, start: i64, end: i64, out: &mut Vec<Point>) {
        let mut r = BitReader {
            bytes: &self.w.bytes,
            pos: 0,
        };
        let emit = |t: i64, v: u64, out: &mut Vec<Point>| {
            if t > start && t <= end {
                out.push(Point {
                    t,
                    v: f64::from_bits(v),
                });
            }
        };
        let (mut t, mut v, mut delta, mut leading, mut trailing, first);
        match &self.checkpoint {
            // Nothing up to the checkpoint is in the window: resume there.
            Some(cp) if cp.t <= start => {
                r.pos = cp.pos;
                (t, v, delta, leading, trailing) = (cp.t, cp.v, cp.delta, cp.leading, cp.trailing);
                first = cp.index;
            }
            _ => {
                t = r.bits(64) as i64;
                v = r.bits(64);
                (delta, leading, trailing) = (0, 0, 0);
                emit(t, v, out);
                first = 1;
            }
        }
        for _ in first..self.count {
            if t > end {
                break;
            }
            let dod = if !r.bit() {
                0
            } else {
                let mut bucket = 0;
                while bucket < 3 && r.bit() {
                    bucket += 1;
                }
                let bits = DOD_BUCKETS[bucket].2;
                let raw = r.bits(bits);
                if bits == 64 {
                    raw as i64
                } else {
                    sign_extend(raw, bits)
                }
            };
            delta = delta.wrapping_add(dod);
            t += delta;
            if r.bit() {
                if r.bit() {
                    leading = r.bits(5) as u8;
                    let mut sig = r.bits(6) as u8;
                    if sig == 0 {
                        sig = 64;
                    }
                    trailing = 64 - leading - sig;
                }
                let sig = 64 - leading - trailing;
                v ^= r.bits(sig) << trailing;
            }
            emit(t, v, out);
        }
    }

    /// Bytes held by the compressed data and the header.
    pub(crate) fn bytes(&self) -> usize {
        self.w.bytes.capacity() + std::mem::size_of::<Chunk>()
    }
}

/// Whether `v` fits in a two's-complement field of `bits` bits.
fn fits(v: i64, bits: u8) -> bool {
    let min = -(1i64 << (bits - 1));
    let max = (1i64 << (bits - 1)) - 1;
    (min..=max).contains(&v)
}

fn sign_extend(raw: u64, bits: u8) -> i64 {
    let shift = 64 - u32::from(bits);
    ((raw << shift) as i64) >> shift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::value::stale_nan;

    fn roundtrip(points: &[Point]) {
        let c = Chunk::encode(points);
        let mut out = Vec::new();
        c.decode_into(i64::MIN, i64::MAX, &mut out);
        assert_eq!(out.len(), points.len());
        for (a, b) in out.iter().zip(points) {
            assert_eq!(a.t, b.t);
            assert_eq!(a.v.to_bits(), b.v.to_bits(), "{} vs {}", a.v, b.v);
        }
    }

    #[test]
    fn regular_scrapes_compress_well_and_round_trip() {
        let points: Vec<Point> = (0..120)
            .map(|i| Point {
                t: 1_700_000_000_000 + i * 15_000,
                v: (i * 3) as f64,
            })
            .collect();
        roundtrip(&points);
        let c = Chunk::encode(&points);
        assert!(c.w.bytes.len() < 120 * 3, "{} bytes", c.w.bytes.len());
    }

    #[test]
    fn odd_values_and_jittery_timestamps_round_trip() {
        let vals = [
            0.0,
            -0.0,
            f64::NAN,
            stale_nan(),
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-300,
            -123.456,
            f64::MAX,
            f64::MIN_POSITIVE,
            42.0,
            42.0,
        ];
        let mut t = -5_000_000i64;
        let mut points = Vec::new();
        for (i, v) in vals.iter().enumerate() {
            t += [1, 15_000, 14_999, 1 << 20, 1 << 40, 3][i % 6];
            points.push(Point { t, v: *v });
        }
        roundtrip(&points);
        roundtrip(&points[..1]);
    }

    #[test]
    fn resuming_at_the_checkpoint_gives_the_same_points() {
        let points: Vec<Point> = (0..120)
            .map(|i| Point {
                t: i * 15_000 + (i % 3),
                v: ((i * 7919) % 1000) as f64 / 7.0,
            })
            .collect();
        let c = Chunk::encode(&points);
        for start in [0, 59 * 15_000, 59 * 15_000 + 2, 60 * 15_000, 100 * 15_000] {
            let mut out = Vec::new();
            c.decode_into(start, i64::MAX, &mut out);
            let want: Vec<Point> = points.iter().copied().filter(|p| p.t > start).collect();
            assert_eq!(out, want, "start {start}");
        }
    }

    #[test]
    fn decoding_honours_the_window() {
        let points: Vec<Point> = (0..10)
            .map(|i| Point {
                t: i * 10,
                v: i as f64,
            })
            .collect();
        let c = Chunk::encode(&points);
        let mut out = Vec::new();
        c.decode_into(20, 50, &mut out);
        let ts: Vec<i64> = out.iter().map(|p| p.t).collect();
        assert_eq!(ts, [30, 40, 50]);
    }
}
