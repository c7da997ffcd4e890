//! One stored series: every sample in Gorilla chunks, and its newest samples once more,
//! uncompressed, so windows ending "now" (what rules read) are lent instead of decoded.

use super::chunk::Chunk;
use super::value::{Labels, Point};

/// A series' labels and samples.
///
/// `chunks` hold every sample, oldest first; only the last chunk is still appended to.
/// `tail` holds the newest samples again, uncompressed: those newer than the newest sample
/// minus the tail span, plus the one sample at or before that bound (so any window of up to
/// the span that ends at the newest sample is answered from the tail alone). The memory for
/// time trade Prometheus's head also makes, bounded by the span.
#[derive(Debug, Clone)]
pub(crate) struct StoredSeries {
    pub(crate) labels: Labels,
    pub(crate) chunks: Vec<Chunk>,
    tail: Tail,
}

/// The uncompressed tail: contiguous (not a ring), so any window within it is one slice that
/// can be lent out. Samples leaving it only move `head`; the dead prefix is reclaimed when the
/// vector is full and it is at least an eighth of it, else the vector grows by a quarter.
#[derive(Debug, Clone, Default)]
struct Tail {
    points: Vec<Point>,
    /// Index of the oldest live point.
    head: usize,
}

impl Tail {
    fn live(&self) -> &[Point] {
        &self.points[self.head..]
    }

    fn pop_front(&mut self) {
        self.head += 1;
        if self.head >= self.points.len() {
            self.points.clear();
            self.head = 0;
        }
    }

    fn push_back(&mut self, p: Point) {
        let len = self.points.len();
        if len == self.points.capacity() {
            if self.head > 0 && self.head >= len / 8 {
                self.points.drain(..self.head);
                self.head = 0;
            } else {
                // Grow by a quarter, not double: a steady scrape interval settles the length,
                // and the spare capacity stays small.
                self.points.reserve_exact((len / 4).max(4));
            }
        }
        self.points.push(p);
    }

    fn clear(&mut self) {
        self.points.clear();
        self.head = 0;
    }

    fn capacity(&self) -> usize {
        self.points.capacity()
    }
}

impl StoredSeries {
    pub(crate) fn new(labels: Labels) -> Self {
        StoredSeries {
            labels,
            chunks: Vec::new(),
            tail: Tail::default(),
        }
    }

    /// The newest sample.
    pub(crate) fn newest(&self) -> Option<Point> {
        self.tail.live().last().copied()
    }

    /// Appends the points with `start < t <= end` to `out`, oldest first.
    pub(crate) fn points(&self, start: i64, end: i64, out: &mut Vec<Point>) {
        self.decode_before_tail(start, end, out);
        out.extend_from_slice(self.tail_window(start, end));
    }

    /// The points with `start < t <= end`, oldest first: borrowed from the tail when the
    /// window lies within it (windows of up to the tail's span ending at or after the newest
    /// sample, what rules read), else decoded and copied into `scratch`.
    pub(crate) fn window<'a>(
        &'a self,
        start: i64,
        end: i64,
        scratch: &'a mut Vec<Point>,
    ) -> &'a [Point] {
        if start < self.chunk_end(end) {
            scratch.clear();
            self.points(start, end, scratch);
            return scratch;
        }
        self.tail_window(start, end)
    }

    /// The end of the part of `(start, end]` held only in the chunks (older than the tail).
    fn chunk_end(&self, end: i64) -> i64 {
        let tail_from = self.tail.live().first().map_or(i64::MAX, |p| p.t);
        end.min(tail_from.saturating_sub(1))
    }

    /// Decodes the points with `start < t <= end` older than the tail into `out`.
    fn decode_before_tail(&self, start: i64, end: i64, out: &mut Vec<Point>) {
        let chunk_end = self.chunk_end(end);
        if start < chunk_end {
            for c in &self.chunks {
                if c.min_t > chunk_end {
                    break;
                }
                if c.max_t > start {
                    c.decode_into(start, chunk_end, out);
                }
            }
        }
    }

    /// The tail's points with `start < t <= end`.
    fn tail_window(&self, start: i64, end: i64) -> &[Point] {
        let tail = self.tail.live();
        // Windows usually end at or after the newest sample; walking back from the end
        // touches only the points read (no binary search over cold memory).
        let hi = match tail.last() {
            Some(p) if p.t <= end => tail.len(),
            _ => tail.partition_point(|p| p.t <= end),
        };
        let mut lo = hi;
        while lo > 0 && tail[lo - 1].t > start {
            lo -= 1;
        }
        &tail[lo..hi]
    }

    /// The newest point with `start < t <= end`.
    pub(crate) fn latest(&self, start: i64, end: i64) -> Option<Point> {
        let newest = self.newest()?;
        // Evaluating at or after the newest sample (the usual case for rules).
        if newest.t <= end {
            return (newest.t > start).then_some(newest);
        }
        let tail = self.tail.live();
        let tail_from = tail.first().map_or(i64::MAX, |p| p.t);
        if tail_from <= end {
            let i = tail.partition_point(|p| p.t <= end);
            // `i >= 1`: the front is at or before `end`.
            return tail.get(i.checked_sub(1)?).filter(|p| p.t > start).copied();
        }
        let mut points = Vec::new();
        self.points(start, end, &mut points);
        points.last().copied()
    }

    /// Appends a point; `tail_ms` is the span of the uncompressed tail.
    pub(crate) fn append(&mut self, t: i64, v: f64, tail_ms: i64) {
        let p = Point { t, v };
        if self.chunks.last().is_some_and(|c| t <= c.max_t) {
            return self.insert_out_of_order(p, tail_ms);
        }
        self.push_chunked(p);
        self.push_tail(p, tail_ms);
    }

    /// Appends a point newer than every stored one to the chunks, sealing a full last chunk
    /// and starting the next.
    fn push_chunked(&mut self, p: Point) {
        match self.chunks.last_mut() {
            Some(c) if !c.is_full() => c.push(p),
            Some(c) => {
                c.seal();
                self.chunks.push(Chunk::new(p));
            }
            None => self.chunks.push(Chunk::new(p)),
        }
    }

    fn push_tail(&mut self, p: Point, tail_ms: i64) {
        let bound = p.t.saturating_sub(tail_ms);
        while self.tail.live().get(1).is_some_and(|q| q.t <= bound) {
            self.tail.pop_front();
        }
        self.tail.push_back(p);
    }

    /// Rare (test data loaded out of order): rebuild the series' chunks and tail.
    fn insert_out_of_order(&mut self, p: Point, tail_ms: i64) {
        let mut all = Vec::new();
        self.points(i64::MIN, i64::MAX, &mut all);
        match all.binary_search_by_key(&p.t, |q| q.t) {
            Ok(i) => all[i].v = p.v,
            Err(i) => all.insert(i, p),
        }
        self.chunks.clear();
        self.tail.clear();
        for q in all {
            self.push_chunked(q);
            self.push_tail(q, tail_ms);
        }
    }

    /// Drops whole chunks whose newest sample is older than `t`, and the tail's samples
    /// older than what the chunks still hold. Returns whether anything is left.
    pub(crate) fn drop_before(&mut self, t: i64) -> bool {
        self.chunks.retain(|c| c.max_t >= t);
        match self.chunks.first() {
            Some(c) => {
                while self.tail.live().first().is_some_and(|p| p.t < c.min_t) {
                    self.tail.pop_front();
                }
                true
            }
            None => {
                self.tail = Tail::default();
                false
            }
        }
    }

    pub(crate) fn samples(&self) -> usize {
        self.chunks.iter().map(|c| usize::from(c.count)).sum()
    }

    /// Bytes of sample data: the chunks with their headers and the tail's capacity.
    pub(crate) fn sample_bytes(&self) -> usize {
        self.chunks.iter().map(Chunk::bytes).sum::<usize>()
            + self.tail.capacity() * std::mem::size_of::<Point>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::value::{is_stale, stale_nan};

    fn series(ts: impl IntoIterator<Item = i64>, tail_ms: i64) -> StoredSeries {
        let mut s = StoredSeries::new(Labels::new());
        for t in ts {
            s.append(t, t as f64, tail_ms);
        }
        s
    }

    fn window(s: &StoredSeries, start: i64, end: i64) -> Vec<i64> {
        let mut out = Vec::new();
        s.points(start, end, &mut out);
        out.iter().map(|p| p.t).collect()
    }

    #[test]
    fn tail_keeps_one_sample_at_or_before_its_span() {
        let s = series((0..1000).map(|i| i * 10), 100);
        let ts: Vec<i64> = s.tail.live().iter().map(|p| p.t).collect();
        assert_eq!(ts, (989..1000).map(|i| i * 10).collect::<Vec<_>>());
        assert!(s.tail.capacity() < 20, "{}", s.tail.capacity());
    }

    #[test]
    fn windows_across_chunks_and_tail_match_a_plain_scan() {
        // 3 chunks of 120 and a partial one; the tail covers the newest 50.
        let ts: Vec<i64> = (0..400).map(|i| i * 10 + (i % 3)).collect();
        let s = series(ts.iter().copied(), 490);
        for start in [-1, 0, 5, 1000, 1190, 1200, 3480, 3500, 3510, 3990, 4000] {
            for end in [
                start,
                start + 1,
                start + 9,
                start + 300,
                3509,
                3520,
                i64::MAX,
            ] {
                let want: Vec<i64> = ts
                    .iter()
                    .copied()
                    .filter(|t| *t > start && *t <= end)
                    .collect();
                assert_eq!(window(&s, start, end), want, "({start}, {end}]");
                let latest = s.latest(start, end).map(|p| p.t);
                assert_eq!(latest, want.last().copied(), "latest ({start}, {end}]");
            }
        }
    }

    #[test]
    fn borrowed_windows_equal_materialised_ones() {
        // 3 chunks of 120 and a partial one; the tail covers the newest 50 samples, so
        // windows start in the chunks, at the chunk/tail boundary and within the tail.
        let ts: Vec<i64> = (0..400).map(|i| i * 10 + (i % 3)).collect();
        let s = series(ts.iter().copied(), 490);
        let tail_from = s.tail.live()[0].t;
        let mut scratch = Vec::new();
        for start in [
            -1,
            1190,
            tail_from - 11,
            tail_from - 1,
            tail_from,
            3700,
            3990,
            4000,
        ] {
            for end in [
                start,
                start + 1,
                start + 300,
                tail_from,
                3995,
                3999,
                i64::MAX,
            ] {
                let mut want = Vec::new();
                s.points(start, end, &mut want);
                let got = s.window(start, end, &mut scratch);
                assert_eq!(got, &want[..], "({start}, {end}]");
            }
        }
        // Within the tail the window is lent, not copied.
        scratch.clear();
        let got = s.window(3700, 3999, &mut scratch);
        assert_eq!(got.len(), 30);
        assert!(scratch.is_empty());
        // Empty windows: before every sample, after the newest, and empty series.
        assert!(s.window(-100, -1, &mut scratch).is_empty());
        assert!(s.window(3999, 5000, &mut scratch).is_empty());
        assert!(series([], 490).window(0, 100, &mut scratch).is_empty());
    }

    #[test]
    fn borrowed_windows_keep_staleness_markers() {
        let mut s = StoredSeries::new(Labels::new());
        for t in 0..10 {
            let v = if t == 7 { stale_nan() } else { t as f64 };
            s.append(t * 10, v, 1_000);
        }
        let mut scratch = Vec::new();
        let w = s.window(40, 90, &mut scratch);
        let ts: Vec<i64> = w.iter().map(|p| p.t).collect();
        assert_eq!(ts, [50, 60, 70, 80, 90]);
        assert!(is_stale(w[2].v));
    }

    #[test]
    fn the_tail_reclaims_its_dead_prefix() {
        let mut s = StoredSeries::new(Labels::new());
        for i in 0..10_000 {
            s.append(i * 10, i as f64, 400);
            let live = s.tail.live();
            assert_eq!(live.last().map(|p| p.t), Some(i * 10));
            assert!(live.len() <= 42);
        }
        // 41 live samples; at most about an eighth dead, plus a quarter of growth.
        assert!(s.tail.capacity() <= 60, "{}", s.tail.capacity());
    }

    #[test]
    fn out_of_order_points_rebuild_the_tail() {
        let mut s = series([10, 20, 40], 1_000);
        s.append(30, -1.0, 1_000);
        s.append(20, -2.0, 1_000);
        let mut out = Vec::new();
        s.points(0, 100, &mut out);
        let got: Vec<(i64, f64)> = out.iter().map(|p| (p.t, p.v)).collect();
        assert_eq!(got, [(10, 10.0), (20, -2.0), (30, -1.0), (40, 40.0)]);
        assert_eq!(s.tail.live().len(), 4);
    }

    #[test]
    fn dropping_chunks_trims_the_tail() {
        let mut s = series((0..300).map(|i| i * 10), 10_000);
        assert!(s.drop_before(1500));
        assert_eq!(s.chunks.len(), 2);
        assert_eq!(window(&s, -1, 1190), Vec::<i64>::new());
        assert_eq!(window(&s, -1, 1210), [1200, 1210]);
        assert!(!s.drop_before(1_000_000));
        assert_eq!(s.newest(), None);
    }
}
